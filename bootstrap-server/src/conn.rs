//! What every `/yws` connection shares, whether its room's actor serves it inline or a
//! session task of its own does: its id, what it receives ([`Outbound`], queued by weight),
//! and the handling of one client message ([`incoming`]) and of its deadlines
//! ([`keep_deadlines`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Context;

use tracing::debug;

use crate::chan;
use crate::limit::RateLimiter;
use crate::metrics::{inc, Metrics};
use crate::ws::{Deadlines, Msg, WebSocket, WsError};

/// Frames, and their bytes, queued per connection before it counts as too slow and is
/// dropped (it reconnects and resyncs). Frames are small (a keystroke's update is ~30
/// bytes) and shared by every recipient, so the count allows a client that falls behind
/// for a moment on a busy machine (4,096 frames: ~1 s of a busy room) without keeping
/// megabytes for it; the bytes bound what large frames a slow client can pin.
pub(crate) const CONN_QUEUE: usize = 4096;
pub(crate) const CONN_QUEUE_BYTES: usize = 4 << 20;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A connection id, unique in the process (`/yws` and `/signal` share the sequence).
pub(crate) fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// What a connection receives.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Shared by every recipient of the frame (a reference count, not a copy each).
    Binary(bytes::Bytes),
    /// A close code and reason. Boxed `str` (not `String`): the enum then fits in `Bytes`'s
    /// 32 bytes.
    Close(u16, Box<str>),
}

/// A connection's outbound queue weighs its frames by their bytes, at most
/// [`CONN_QUEUE_BYTES`] together.
pub(crate) struct FrameBytes;

impl chan::Weigh<Outbound> for FrameBytes {
    const MAX_BYTES: usize = CONN_QUEUE_BYTES;
    fn weigh(frame: &Outbound) -> usize {
        match frame {
            Outbound::Binary(b) => b.len(),
            Outbound::Close(_, r) => r.len(),
        }
    }
}

/// What a client's WebSocket message asks of its connection.
pub(crate) enum Incoming {
    /// A y-protocols frame for the room.
    Frame(Vec<u8>),
    /// Close the connection with this code and reason.
    Close(u16, String),
    /// Nothing more (a ping, answered on the socket).
    Answered,
}

/// The connection's side of a client's message, the same whether the room serves the
/// connection itself (the room actor's inline connection) or a session task does: the rate
/// limit, binary frames only, pings answered, the client's close echoed (RFC 6455 §5.5.1),
/// bad WebSocket input closed with the RFC's code.
pub(crate) fn incoming(
    socket: &mut WebSocket,
    limiter: &mut RateLimiter,
    metrics: &Metrics,
    msg: Result<Msg, WsError>,
) -> Incoming {
    match msg {
        Ok(Msg::Binary(_)) if !limiter.allow() => {
            inc(&metrics.rate_limited, 1);
            Incoming::Close(4429, "rate limit exceeded".into())
        }
        Ok(Msg::Binary(bytes)) => Incoming::Frame(bytes),
        Ok(Msg::Text(_)) => Incoming::Close(1003, "y-websocket speaks binary frames".into()),
        Ok(Msg::Ping(p)) => {
            socket.start_frame(10, p.into());
            Incoming::Answered
        }
        Ok(Msg::Close(c)) => Incoming::Close(c.map_or(1000, |(code, _)| code), String::new()),
        Err(e) => {
            debug!(error = %e, "bad WebSocket input");
            Incoming::Close(e.close_code(), e.to_string())
        }
    }
}

/// Keeps a connection's deadlines (see [`Deadlines`]); called once a poll has
/// read and written what it could (what it read may have begun a message; a write may be
/// pending on a client that reads nothing). `Some(true)`: a ping was queued, write it.
/// `None`: its client missed a deadline; the close that says why is queued and written if
/// the socket takes it at once (a half-open connection never would), and the caller drops
/// the connection now.
pub(crate) fn keep_deadlines(
    socket: &mut WebSocket,
    metrics: &Metrics,
    deadlines: &Deadlines,
    cx: &mut Context<'_>,
) -> Option<bool> {
    match socket.poll_deadlines(cx, deadlines) {
        Ok(pinged) => {
            if pinged {
                inc(&metrics.ws_pings, 1);
            }
            Some(pinged)
        }
        Err(e) => {
            inc(&metrics.connections_timed_out, 1);
            debug!(error = %e, "timed out");
            socket.discard_unstarted();
            socket.start_close(e.close_code(), &e.to_string());
            let _ = socket.poll_write_out(cx);
            None
        }
    }
}
