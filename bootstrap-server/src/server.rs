//! The top: [`run`] opens the registry, starts the libp2p side, the expiry and deadline
//! tasks and the HTTP server, and at shutdown stops and awaits them all.

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::BootstrapError;
use crate::registry::Registry;
use crate::{exec, http, live, p2p, users};

/// A line on stdout for whoever started us (scripts parse it); a closed stdout is not an
/// error worth dying for.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Serves the node on `listener` until `shutdown` is cancelled; then closes connections,
/// flushes every room and returns.
pub async fn run(mut cfg: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), BootstrapError> {
    let addr = listener.local_addr()?;
    // The address actually bound (port 0 resolved): whether it is loopback decides who may
    // create rooms without the operator token.
    cfg.http_addr = addr;
    let public_url = cfg.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let hidden = vec![cfg.data_dir.canonicalize().unwrap_or_else(|_| cfg.data_dir.clone())];
    let executor = exec::build(&cfg.exec, hidden).await.map_err(|e| BootstrapError::Config(e.to_string()))?;
    let node = Registry::open(cfg, public_url.trim_end_matches('/').to_owned(), shutdown.clone())?;
    say(&format!("listening on http://{addr}"));
    tracing::info!(node = %node.public_key(), data_dir = %node.cfg().data_dir.display(), "bootstrap node started");
    let (p2p, p2p_tasks) = if node.cfg().no_p2p {
        (None, Vec::new())
    } else {
        let started = p2p::start(&node).await?;
        for a in &started.addrs {
            say(&format!("libp2p {a}"));
        }
        (Some(started.p2p), started.tasks)
    };
    let expiry = {
        let env = node.env().clone();
        let (live, metrics) = (env.live.clone(), env.metrics.clone());
        tokio::spawn(live::run(live, metrics, shutdown.clone(), move |room, conn, reason| {
            env.rooms.close_conn(room, conn, reason)
        }))
    };
    let deadlines = tokio::spawn({
        let (env, stop) = (node.env().clone(), shutdown.clone());
        async move { env.deadlines.run(stop).await }
    });
    let users = users::Users::open(&node)?;
    let user_workers = users.spawn_workers(&shutdown);
    let app = http::router(node.clone(), p2p, executor, users);
    let stopper = {
        let (node, stop) = (node.clone(), shutdown.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            node.stop_rooms().await;
        })
    };
    let stop = shutdown.clone();
    // TCP_NODELAY on every accepted connection: the traffic is small interactive frames, and
    // with Nagle's algorithm a second small write to a client waits for the ACK of the first,
    // which the client may delay until it sends something itself. (Node's `ws`, under
    // y-websocket and Hocuspocus, sets it too, as browsers do for their WebSockets.)
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    // With each connection's peer address, for the per-IP limits.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await?;
    shutdown.cancel();
    let _ = stopper.await;
    node.join_all().await;
    let _ = expiry.await;
    let _ = deadlines.await;
    for t in user_workers {
        let _ = t.await;
    }
    for t in p2p_tasks {
        let _ = t.await;
    }
    tracing::info!("stopped; sled flushed");
    Ok(())
}
