//! `/yws/{room}?token=T`: the y-websocket protocol, for stock Yjs clients and our own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tracing::{debug, info_span, Instrument};

use crate::chan;
use crate::clock::now_ms;
use crate::conn::next_conn_id;
use crate::limit::{CapError, ConnCaps, RateLimiter, Slot};
use crate::metrics::{dec, inc};
use crate::registry::Registry;
use crate::room::{Attach, RoomCmd};
use crate::ws::{Upgrade, WebSocket};

/// The `/yws` handler's state: the registry, and the caps on open connections.
#[derive(Clone, Debug)]
struct Yws {
    registry: Registry,
    /// `/yws` connections open, per client IP, per invite link and in total.
    caps: Arc<ConnCaps>,
}

/// The `/yws/{room}` route.
pub(crate) fn routes<S>(registry: Registry) -> Router<S> {
    let cfg = registry.cfg();
    let caps = Arc::new(ConnCaps::new(cfg.yws_max_per_ip, cfg.yws_max_per_token, cfg.yws_max_connections));
    Router::new().route("/yws/{room}", get(upgrade)).with_state(Yws { registry, caps })
}

async fn upgrade(
    State(Yws { registry, caps }): State<Yws>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ws: Upgrade,
) -> Response {
    // Caps on open connections, per address, per invite link and in all, answered before
    // the upgrade.
    let refuse_cap = |e: CapError| {
        inc(&registry.metrics().connections_refused, 1);
        debug!(ip = %peer.ip(), ?e, "y-websocket connection refused");
        e.response("y-websocket")
    };
    let mut slot = match caps.acquire(peer.ip()) {
        Ok(s) => s,
        Err(e) => return refuse_cap(e),
    };
    let token = q.get("token").cloned();
    let auth = registry.authorize(&room, token.as_deref());
    if let Ok((_, grant)) = &auth {
        if let Err(e) = slot.hold_link(&grant.invite) {
            return refuse_cap(e);
        }
    }
    let max = registry.cfg().max_message;
    let span = info_span!("yws", conn = tracing::field::Empty, room = %room.get(..12).unwrap_or(&room));
    // Our own WebSocket code (crate::ws): an idle connection keeps no read buffer.
    // The setup runs in this task, which ends once the client's `Session` is spawned: its
    // size does not matter, so no boxing here.
    ws.on_upgrade(max, move |socket| {
        let conn = next_conn_id();
        span.record("conn", conn);
        async move {
            match auth {
                Ok((id, grant)) => serve(registry, socket, conn, id, grant, token, slot).await,
                Err(e) => refuse(socket, e.message()).await,
            }
        }
        .instrument(span)
    })
}

/// Tells a client why it may not join (the y-protocols auth message, then a close frame).
async fn refuse(mut socket: WebSocket, reason: String) {
    let reason = reason.as_str();
    debug!(reason, "refused");
    let deny = arena_core::sync::ywire::encode_frame(&[yrs::sync::Message::Auth(Some(format!(
        "permission denied: {reason}"
    )))]);
    let _ = socket.send_binary(deny).await;
    let _ = socket.send_close(4403, reason).await;
}

/// Joins the room and hands it the connection: the room queues the client's start frames
/// and serves it itself or from a session task of its own (see the `room` module). This
/// setup (and everything it holds) is gone by the time the client sits idle.
async fn serve(
    registry: Registry,
    socket: WebSocket,
    conn: u64,
    room: arena_core::RoomId,
    grant: arena_core::Grant,
    token: Option<String>,
    slot: Slot,
) {
    let role = grant.role;
    let actor = match registry.actor(&room, token.as_deref()).await {
        Ok(a) => a,
        Err(e) => return refuse(socket, e.to_string()).await,
    };
    let m = registry.metrics();
    inc(&m.connections_total, 1);
    inc(&m.connections_active, 1);
    // A writing stock client's delegation: the node signs its updates naming its grant,
    // so every replica holds them to its role (made here, off the room's task).
    let delegation = match (&token, role.may_write()) {
        (Some(t), true) => arena_core::Invite::from_token(t, &room, now_ms())
            .ok()
            .map(|inv| Box::new(arena_core::Delegation::sign(&inv))),
        _ => None,
    };
    let token = token.map(String::into_boxed_str);
    let limiter = RateLimiter::new(registry.cfg().rate_limit);
    let span = tracing::Span::current();
    // The room enters it in the node's live connections (closed when its invite expires).
    let (expiry, invite, grant) = (grant.expiry, grant.invite, crate::live::grant_id(&grant));
    let attach = RoomCmd::Attach(Box::new(Attach {
        conn,
        role,
        token,
        delegation,
        socket,
        limiter,
        queue: actor.clone(),
        span,
        expiry,
        grant,
        invite,
        slot,
    }));
    if let Err(chan::SendError(cmd)) = actor.send(attach).await {
        dec(&m.connections_active);
        if let RoomCmd::Attach(a) = cmd {
            refuse(a.socket, "room unavailable, retry".into()).await;
        }
        return;
    }
    debug!(%role, "attached");
}
