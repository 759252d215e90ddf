//! `/yws/{room}?token=T`: the y-websocket protocol, for stock Yjs clients and our own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures_util::future::Either;
use tokio::sync::oneshot;
use tracing::{debug, info_span, Instrument};

use crate::chan;
use crate::hub::{Attach, HubCmd, Outbound, CONN_QUEUE};
use crate::limit::RateLimiter;
use crate::metrics::{dec, inc};
use crate::node::Node;
use crate::ws::{Msg, Upgrade, WebSocket};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

pub(crate) async fn upgrade(
    State(node): State<Node>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ws: Upgrade,
) -> Response {
    let max = node.cfg().max_message;
    let token = q.get("token").cloned();
    let auth = node.authorize(&room, token.as_deref());
    let span = info_span!("yws", conn = tracing::field::Empty, room = %room.get(..12).unwrap_or(&room));
    // Our own WebSocket code (crate::ws): an idle connection keeps no read buffer.
    ws.on_upgrade(max, move |socket| {
        let conn = next_conn_id();
        span.record("conn", conn);
        let task = match auth {
            Ok((id, grant)) => Either::Left(serve(node, socket, conn, id, grant.role, token)),
            // Boxed: rare, and an inline `refuse` would widen every connection's task.
            Err(e) => Either::Right(Box::pin(refuse(socket, e.message()))),
        };
        task.instrument(span)
    })
}

/// Tells a client why it may not join (the y-protocols auth message, then a close frame).
async fn refuse(mut socket: WebSocket, reason: String) {
    let reason = reason.as_str();
    debug!(reason, "refused");
    let deny = arena_core::sync::ywire::encode_frame(&[yrs::sync::Message::Auth(Some(format!(
        "permission denied: {reason}"
    )))]);
    let _ = socket.send_binary(&deny).await;
    let _ = socket.send_close(4403, reason).await;
}

/// A plain fn returning an `async move` block rather than an `async fn`: an async fn's
/// state keeps its arguments twice (as captured and as moved-in locals), and this state is
/// what every connected client costs while it is idle.
#[allow(clippy::manual_async_fn, reason = "an async fn would keep its arguments twice")]
fn serve(
    node: Node,
    mut socket: WebSocket,
    conn: u64,
    room: arena_core::RoomId,
    role: arena_core::Role,
    token: Option<String>,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let m = &node.inner.metrics;
        // The one-time steps are boxed so that they do not widen the idle loop's state.
        let hub = match Box::pin(node.hub(&room, token.as_deref())).await {
            Ok(h) => h,
            Err(e) => return Box::pin(refuse(socket, e.to_string())).await,
        };
        inc(&m.connections_total, 1);
        inc(&m.connections_active, 1);
        let (tx, mut rx) = chan::channel(CONN_QUEUE);
        let (reply, start) = oneshot::channel();
        // Moved, not cloned: the room keeps the one copy (this task no longer needs it).
        let token = token.map(String::into_boxed_str);
        let attach = HubCmd::Attach(Box::new(Attach { conn, role, token, tx, reply }));
        if Box::pin(hub.send(attach)).await.is_err() {
            dec(&m.connections_active);
            return Box::pin(refuse(socket, "room unavailable, retry".into())).await;
        }
        debug!(%role, "attached");
        if let Ok(start) = start.await {
            for frame in start {
                let _ = socket.send_binary(&frame).await;
            }
        }
        let mut limiter = RateLimiter::new(node.cfg().rate_limit);
        loop {
            tokio::select! {
                biased;
                out = rx.recv() => match out {
                    Some(Outbound::Binary(b)) => {
                        if socket.send_binary(&b).await.is_err() { break; }
                    }
                    Some(Outbound::Close(code, reason)) => {
                        let _ = socket.send_close(code, &reason).await;
                        break;
                    }
                    None => break,
                },
                msg = socket.recv() => match msg {
                    Some(Ok(Msg::Binary(b))) => {
                        if !limiter.allow() {
                            inc(&m.rate_limited, 1);
                            let _ = socket.send_close(4429, "rate limit exceeded").await;
                            break;
                        }
                        if hub.send(HubCmd::Frame { conn, bytes: b }).await.is_err() { break; }
                    }
                    Some(Ok(Msg::Text(_))) => {
                        let _ = socket.send_close(1003, "y-websocket speaks binary frames").await;
                        break;
                    }
                    Some(Ok(Msg::Ping(p))) => {
                        if socket.send_pong(&p).await.is_err() { break; }
                    }
                    Some(Ok(Msg::Close(c))) => {
                        // Echo the client's code (§5.5.1), then close the socket.
                        let _ = socket.send_close(c.map_or(1000, |(code, _)| code), "").await;
                        break;
                    }
                    Some(Err(e)) => {
                        debug!(error = %e, "bad WebSocket input");
                        let _ = socket.send_close(e.close_code(), &e.to_string()).await;
                        break;
                    }
                    None => break,
                },
            }
        }
        let _ = hub.send(HubCmd::Detach { conn }).await;
        dec(&m.connections_active);
        debug!("detached");
    }
}
