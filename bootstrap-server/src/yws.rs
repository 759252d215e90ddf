//! `/yws/{room}?token=T`: the y-websocket protocol, for stock Yjs clients and our own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info_span, Instrument};

use crate::hub::{HubCmd, Outbound, CONN_QUEUE};
use crate::limit::RateLimiter;
use crate::metrics::{dec, inc};
use crate::node::Node;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

pub(crate) async fn upgrade(
    State(node): State<Node>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = node.cfg().max_message;
    let auth = node.authorize(&room, q.get("token").map(String::as_str));
    // Small per-connection buffers (tungstenite defaults to 128 KiB each way): an interview
    // room's frames are keystrokes, and idle connections should cost next to nothing. Reads
    // go 2 KiB at a time (a big sync message just takes more reads); writes are not
    // buffered (every frame is flushed at once anyway).
    ws.max_message_size(max).max_frame_size(max).read_buffer_size(2 * 1024).write_buffer_size(0).on_upgrade(
        move |socket| async move {
            let conn = next_conn_id();
            let span = info_span!("yws", conn, room = %room.get(..12).unwrap_or(&room));
            match auth {
                Ok((id, grant)) => {
                    serve(node, socket, conn, id, grant.role, q.get("token").cloned()).instrument(span).await
                }
                Err(e) => refuse(socket, &e.message()).instrument(span).await,
            }
        },
    )
}

/// Tells a client why it may not join (the y-protocols auth message, then a close frame).
async fn refuse(mut socket: WebSocket, reason: &str) {
    debug!(reason, "refused");
    let deny = arena_core::sync::ywire::encode_frame(&[yrs::sync::Message::Auth(Some(format!(
        "permission denied: {reason}"
    )))]);
    let _ = socket.send(Message::Binary(deny.into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 4403,
            reason: reason.chars().take(120).collect::<String>().into(),
        })))
        .await;
}

async fn serve(
    node: Node,
    mut socket: WebSocket,
    conn: u64,
    room: arena_core::RoomId,
    role: arena_core::Role,
    token: Option<String>,
) {
    let m = &node.inner.metrics;
    let hub = match node.hub(&room, token.as_deref()).await {
        Ok(h) => h,
        Err(e) => return refuse(socket, &e.to_string()).await,
    };
    inc(&m.connections_total, 1);
    inc(&m.connections_active, 1);
    let (tx, mut rx) = mpsc::channel(CONN_QUEUE);
    let (reply, start) = oneshot::channel();
    if hub.send(HubCmd::Attach { conn, role, token: token.clone(), tx, reply }).await.is_err() {
        dec(&m.connections_active);
        return refuse(socket, "room unavailable, retry").await;
    }
    debug!(%role, "attached");
    if let Ok(start) = start.await {
        for frame in start {
            let _ = socket.send(Message::Binary(frame.into())).await;
        }
    }
    let mut limiter = RateLimiter::new(node.cfg().rate_limit);
    let shutdown = node.inner.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                let _ = socket.send(Message::Close(Some(CloseFrame { code: 1001, reason: "server shutting down".into() }))).await;
                break;
            }
            out = rx.recv() => match out {
                Some(Outbound::Binary(b)) => {
                    if socket.send(Message::Binary(b.into())).await.is_err() { break; }
                }
                Some(Outbound::Close(reason)) => {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 4400, reason: reason.chars().take(120).collect::<String>().into() }))).await;
                    break;
                }
                None => break,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if !limiter.allow() {
                        inc(&m.rate_limited, 1);
                        let _ = socket.send(Message::Close(Some(CloseFrame { code: 4429, reason: "rate limit exceeded".into() }))).await;
                        break;
                    }
                    if hub.send(HubCmd::Frame { conn, bytes: b.to_vec() }).await.is_err() { break; }
                }
                Some(Ok(Message::Text(_))) => {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1003, reason: "y-websocket speaks binary frames".into() }))).await;
                    break;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = hub.send(HubCmd::Detach { conn }).await;
    dec(&m.connections_active);
    debug!("detached");
}
