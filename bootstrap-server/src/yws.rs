//! `/yws/{room}?token=T`: the y-websocket protocol, for stock Yjs clients and our own.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::response::Response;
use tracing::{debug, info_span, Instrument};

use crate::chan;
use crate::hub::{Attach, FrameBytes, HubCmd, Outbound};
use crate::limit::{CapError, RateLimiter, Slot};
use crate::metrics::{dec, inc};
use crate::node::Node;
use crate::ws::{Msg, Upgrade, WebSocket, GATHER};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

pub(crate) async fn upgrade(
    State(node): State<Node>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    ws: Upgrade,
) -> Response {
    // Caps on open connections, per address, per invite link and in all, answered before
    // the upgrade.
    let refuse_cap = |e: CapError| {
        inc(&node.inner.metrics.connections_refused, 1);
        debug!(ip = %peer.ip(), ?e, "y-websocket connection refused");
        e.response("y-websocket")
    };
    let mut slot = match node.inner.yws_caps.acquire(peer.ip()) {
        Ok(s) => s,
        Err(e) => return refuse_cap(e),
    };
    let token = q.get("token").cloned();
    let auth = node.authorize(&room, token.as_deref());
    if let Ok((_, grant)) = &auth {
        if let Err(e) = slot.hold_link(&grant.invite) {
            return refuse_cap(e);
        }
    }
    let max = node.cfg().max_message;
    let span = info_span!("yws", conn = tracing::field::Empty, room = %room.get(..12).unwrap_or(&room));
    // Our own WebSocket code (crate::ws): an idle connection keeps no read buffer.
    // The setup runs in this task, which ends once the client's `Session` is spawned: its
    // size does not matter, so no boxing here.
    ws.on_upgrade(max, move |socket| {
        let conn = next_conn_id();
        span.record("conn", conn);
        async move {
            match auth {
                Ok((id, grant)) => serve(node, socket, conn, id, grant, token, slot).await,
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
/// and serves it itself or from a [`Session`] of its own task (see `hub::Inline`). This
/// setup (and everything it holds) is gone by the time the client sits idle.
async fn serve(
    node: Node,
    socket: WebSocket,
    conn: u64,
    room: arena_core::RoomId,
    grant: arena_core::Grant,
    token: Option<String>,
    slot: Slot,
) {
    let role = grant.role;
    let hub = match node.hub(&room, token.as_deref()).await {
        Ok(h) => h,
        Err(e) => return refuse(socket, e.to_string()).await,
    };
    let m = &node.inner.metrics;
    inc(&m.connections_total, 1);
    inc(&m.connections_active, 1);
    // A writing stock client's delegation: the node signs its updates naming its grant,
    // so every replica holds them to its role (made here, off the room's task).
    let delegation = match (&token, role.may_write()) {
        (Some(t), true) => arena_core::Invite::from_token(t, &room, crate::node::now_ms() / 1000)
            .ok()
            .map(|inv| Box::new(arena_core::Delegation::sign(&inv))),
        _ => None,
    };
    let token = token.map(String::into_boxed_str);
    let limiter = RateLimiter::new(node.cfg().rate_limit);
    let span = tracing::Span::current();
    // The room enters it in the node's live connections (closed when its invite expires).
    let (expiry, invite, grant) = (grant.expiry, grant.invite, crate::live::grant_id(&grant));
    let attach = HubCmd::Attach(Box::new(Attach {
        conn,
        role,
        token,
        delegation,
        socket,
        limiter,
        hub: hub.clone(),
        span,
        expiry,
        grant,
        invite,
        slot,
    }));
    if let Err(chan::SendError(cmd)) = hub.send(attach).await {
        dec(&m.connections_active);
        if let HubCmd::Attach(a) = cmd {
            refuse(a.socket, "room unavailable, retry".into()).await;
        }
        return;
    }
    debug!(%role, "attached");
}

/// Serves a connection from a task of its own (the room's second and later connections).
pub(crate) fn spawn_session(
    node: Node,
    socket: WebSocket,
    hub: chan::Sender<HubCmd>,
    rx: chan::Receiver<Outbound, FrameBytes>,
    limiter: RateLimiter,
    conn: u64,
    span: tracing::Span,
) {
    let session = Session { socket, hub, rx, limiter, conn, node, sending: None, closing: false };
    // A span that logs nothing is not worth its 40 bytes in every idle client's task.
    if span.is_disabled() {
        tokio::spawn(session);
    } else {
        tokio::spawn(session.instrument(span));
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
/// connection itself (`hub::Inline`) or a [`Session`] does: the rate limit, binary frames
/// only, pings answered, the client's close echoed (RFC 6455 §5.5.1), bad WebSocket input
/// closed with the RFC's code.
pub(crate) fn incoming(
    socket: &mut WebSocket,
    limiter: &mut RateLimiter,
    node: &Node,
    msg: Result<Msg, crate::ws::WsError>,
) -> Incoming {
    match msg {
        Ok(Msg::Binary(_)) if !limiter.allow() => {
            inc(&node.inner.metrics.rate_limited, 1);
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

/// Keeps a connection's deadlines (see [`crate::ws::Deadlines`]); called once a poll has
/// read and written what it could (what it read may have begun a message; a write may be
/// pending on a client that reads nothing). `Some(true)`: a ping was queued, write it.
/// `None`: its client missed a deadline; the close that says why is queued and written if
/// the socket takes it at once (a half-open connection never would), and the caller drops
/// the connection now.
pub(crate) fn keep_deadlines(socket: &mut WebSocket, node: &Node, cx: &mut Context<'_>) -> Option<bool> {
    let m = &node.inner.metrics;
    match socket.poll_deadlines(cx, &node.inner.deadlines) {
        Ok(pinged) => {
            if pinged {
                inc(&m.ws_pings, 1);
            }
            Some(pinged)
        }
        Err(e) => {
            inc(&m.connections_timed_out, 1);
            debug!(error = %e, "timed out");
            socket.discard_unstarted();
            socket.start_close(e.close_code(), &e.to_string());
            let _ = socket.poll_write_out(cx);
            None
        }
    }
}

/// One connected client from its start frames on: a future written by hand, so that what an
/// idle client costs is these fields and nothing else (an `async` loop here kept ~760 bytes:
/// every `select!` branch and every await's state side by side).
struct Session {
    socket: WebSocket,
    hub: chan::Sender<HubCmd>,
    rx: chan::Receiver<Outbound, FrameBytes>,
    limiter: RateLimiter,
    conn: u64,
    node: Node,
    /// A frame for a room queue that was full (rare: boxed), waiting for room.
    sending: Option<Pin<Box<dyn Future<Output = bool> + Send>>>,
    /// A close frame is queued: end once it is written.
    closing: bool,
}

impl Session {
    fn close(&mut self, code: u16, reason: &str) {
        self.socket.start_close(code, reason);
        self.closing = true;
    }

    /// One step; `Ready(true)` when the session is over.
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        // A frame half written comes first: nothing else is started until it is out.
        match self.socket.poll_write_out(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(true),
            Poll::Ready(Ok(())) if self.closing => return Poll::Ready(true),
            Poll::Ready(Ok(())) => {}
        }
        if let Some(f) = self.sending.as_mut() {
            match f.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(false) => return Poll::Ready(true),
                Poll::Ready(true) => self.sending = None,
            }
        }
        // What the room sends first (backpressure: a client that does not read stops
        // being read, and the room drops it when its queue fills).
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Outbound::Binary(b))) => {
                self.socket.start_frame(2, b);
                // What else the room queued meanwhile goes out in the same write.
                while self.socket.queued_out() < GATHER {
                    match self.rx.try_recv() {
                        Ok(Outbound::Binary(b)) => self.socket.start_frame(2, b),
                        Ok(Outbound::Close(code, reason)) => {
                            self.close(code, &reason);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                return Poll::Ready(false);
            }
            Poll::Ready(Some(Outbound::Close(code, reason))) => {
                self.close(code, &reason);
                return Poll::Ready(false);
            }
            Poll::Ready(None) => return Poll::Ready(true),
            Poll::Pending => {}
        }
        let msg = match self.socket.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(true),
            Poll::Ready(Some(m)) => m,
        };
        match incoming(&mut self.socket, &mut self.limiter, &self.node, msg) {
            Incoming::Frame(bytes) => match self.hub.try_send(HubCmd::Frame { conn: self.conn, bytes }) {
                Ok(()) => {}
                Err(chan::TrySendError::Closed(_)) => return Poll::Ready(true),
                Err(chan::TrySendError::Full(cmd)) => {
                    let hub = self.hub.clone();
                    self.sending = Some(Box::pin(async move { hub.send(cmd).await.is_ok() }));
                }
            },
            Incoming::Close(code, reason) => self.close(code, &reason),
            Incoming::Answered => {}
        }
        Poll::Ready(false)
    }
}

impl Future for Session {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Every step either makes progress or returns Pending; the socket's reads and
        // writes count against tokio's cooperative budget, so a busy client yields too.
        loop {
            match self.step(cx) {
                Poll::Pending => {}
                Poll::Ready(true) => return Poll::Ready(()),
                Poll::Ready(false) => continue,
            }
            let this = &mut *self;
            match keep_deadlines(&mut this.socket, &this.node, cx) {
                None => return Poll::Ready(()),
                // A ping to write.
                Some(true) => {}
                Some(false) => return Poll::Pending,
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let detach = HubCmd::Detach { conn: self.conn };
        if let Err(chan::TrySendError::Full(detach)) = self.hub.try_send(detach) {
            // The room is busy: tell it from a task of its own rather than leave it
            // sending to a connection that is gone.
            let hub = self.hub.clone();
            tokio::spawn(async move {
                let _ = hub.send(detach).await;
            });
        }
        dec(&self.node.inner.metrics.connections_active);
        debug!("detached");
    }
}
