//! A room's second and later `/yws` connections, each served from a task of its own that
//! talks to the room's actor through its queue (the first is served by the actor itself).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tracing::{debug, Instrument};

use super::cmd::RoomCmd;
use super::env::{Env, RoomStore};
use crate::chan;
use crate::conn::{incoming, keep_deadlines, FrameBytes, Incoming, Outbound};
use crate::limit::RateLimiter;
use crate::metrics::dec;
use crate::ws::{WebSocket, GATHER};

/// Serves a connection from a task of its own (the room's second and later connections).
pub(super) fn spawn<S: RoomStore>(
    env: Arc<Env<S>>,
    socket: WebSocket,
    queue: chan::Sender<RoomCmd>,
    rx: chan::Receiver<Outbound, FrameBytes>,
    limiter: RateLimiter,
    conn: u64,
    span: tracing::Span,
) {
    let session = Session { socket, queue, rx, limiter, conn, env, sending: None, closing: false };
    // A span that logs nothing is not worth its 40 bytes in every idle client's task.
    if span.is_disabled() {
        tokio::spawn(session);
    } else {
        tokio::spawn(session.instrument(span));
    }
}

/// One connected client from its start frames on: a future written by hand, so that what an
/// idle client costs is these fields and nothing else (an `async` loop here kept ~760 bytes:
/// every `select!` branch and every await's state side by side).
struct Session<S: RoomStore> {
    socket: WebSocket,
    queue: chan::Sender<RoomCmd>,
    rx: chan::Receiver<Outbound, FrameBytes>,
    limiter: RateLimiter,
    conn: u64,
    env: Arc<Env<S>>,
    /// A frame for a room queue that was full (rare: boxed), waiting for room.
    sending: Option<Pin<Box<dyn Future<Output = bool> + Send>>>,
    /// A close frame is queued: end once it is written.
    closing: bool,
}

impl<S: RoomStore> Session<S> {
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
        match incoming(&mut self.socket, &mut self.limiter, &self.env.metrics, msg) {
            Incoming::Frame(bytes) => match self.queue.try_send(RoomCmd::Frame { conn: self.conn, bytes }) {
                Ok(()) => {}
                Err(chan::TrySendError::Closed(_)) => return Poll::Ready(true),
                Err(chan::TrySendError::Full(cmd)) => {
                    let queue = self.queue.clone();
                    self.sending = Some(Box::pin(async move { queue.send(cmd).await.is_ok() }));
                }
            },
            Incoming::Close(code, reason) => self.close(code, &reason),
            Incoming::Answered => {}
        }
        Poll::Ready(false)
    }
}

impl<S: RoomStore> Future for Session<S> {
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
            match keep_deadlines(&mut this.socket, &this.env.metrics, &this.env.deadlines, cx) {
                None => return Poll::Ready(()),
                // A ping to write.
                Some(true) => {}
                Some(false) => return Poll::Pending,
            }
        }
    }
}

impl<S: RoomStore> Drop for Session<S> {
    fn drop(&mut self) {
        let detach = RoomCmd::Detach { conn: self.conn };
        if let Err(chan::TrySendError::Full(detach)) = self.queue.try_send(detach) {
            // The room is busy: tell it from a task of its own rather than leave it
            // sending to a connection that is gone.
            let queue = self.queue.clone();
            tokio::spawn(async move {
                let _ = queue.send(detach).await;
            });
        }
        dec(&self.env.metrics.connections_active);
        debug!("detached");
    }
}
