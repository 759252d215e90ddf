//! The server side of RFC 6455 WebSocket for `/yws`, written for idle connections.
//!
//! A y-websocket client sits idle most of an interview, and a node holds thousands of them.
//! tungstenite (behind axum's `WebSocket`) keeps a read buffer per connection that grows to
//! the largest message seen and never shrinks (~2–4 KiB per idle connection after the first
//! sync message, the largest item in an idle room's footprint). Here a connection holds no
//! buffer while idle: reads go into a buffer on the stack of the poll that found the socket
//! readable, whole frames are decoded from it at once, and only the tail of a frame that
//! has not fully arrived is kept (on the heap, until the rest comes). Writes go straight to
//! the socket (header and payload in one vectored write).
//!
//! What is implemented: the HTTP/1.1 upgrade handshake (RFC 6455 §4.2), client frames
//! (masked, §5.3), fragmented messages (§5.4), ping/pong, close with code and reason (§5.5),
//! UTF-8 checked text, and the failures §7.4 names (1002 protocol error, 1007 invalid
//! UTF-8, 1009 too big). No extensions and no subprotocols are negotiated. Deadlines (a
//! message must come whole in time, a quiet client is pinged and dropped when nothing comes
//! back) are in [`deadline`], with no timer per connection; the handshake in [`handshake`],
//! the frame decoder in [`frame`].

use std::collections::VecDeque;
use std::future::poll_fn;
#[cfg(test)]
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

mod deadline;
mod frame;
mod handshake;

pub(crate) use deadline::Deadlines;
pub(crate) use frame::FrameReader;
pub(crate) use handshake::{valid_key, Upgrade, BAD_KEY};

/// Bytes read from the socket per read call (on the stack, not kept).
const READ_CHUNK: usize = 4096;

/// Close code for a client that missed a deadline (no RFC code fits; 4xxx after HTTP's
/// 408 Request Timeout, as the node's other codes follow HTTP's).
pub(crate) const CLOSE_TIMED_OUT: u16 = 4408;

/// A message from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Msg {
    Binary(Vec<u8>),
    Text(String),
    Ping(Vec<u8>),
    /// The client's close frame: its code and reason, if it gave one.
    Close(Option<(u16, String)>),
}

/// Why a connection's input was refused; `close_code` is what to tell the client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("message of {0} bytes exceeds the limit")]
    TooBig(u64),
    #[error("text message is not UTF-8")]
    NotUtf8,
    #[error("a message did not arrive whole within {0} ms")]
    ReadTimeout(u32),
    #[error("nothing came within {0} ms, not even the answer to a ping")]
    IdleTimeout(u32),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl WsError {
    /// The close code RFC 6455 §7.4.1 gives this failure.
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::TooBig(_) => 1009,
            WsError::NotUtf8 => 1007,
            WsError::ReadTimeout(_) | WsError::IdleTimeout(_) => CLOSE_TIMED_OUT,
            WsError::Io(_) => 1011,
        }
    }
}

/// A server frame header (unmasked) for a payload of `len` bytes; returns its length.
fn header_for(buf: &mut [u8; 10], opcode: u8, len: usize) -> usize {
    buf[0] = 0x80 | opcode;
    if len < 126 {
        buf[1] = len as u8;
        2
    } else if let Ok(l) = u16::try_from(len) {
        buf[1] = 126;
        buf[2..4].copy_from_slice(&l.to_be_bytes());
        4
    } else {
        buf[1] = 127;
        buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// `reason` cut to what fits a close frame (123 bytes), on a character boundary.
fn close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// An upgraded connection.
pub(crate) struct WebSocket<S = TokioIo<Upgraded>> {
    io: S,
    reader: FrameReader,
    /// Decoded messages not handed out yet (empty, with no memory, while idle).
    queued: VecDeque<Msg>,
    eof: bool,
    /// A ping went out since input last came (see [`deadline`]).
    pinged: bool,
    /// The last write found the socket full.
    blocked: bool,
    /// The deadline tick the node's wheel wakes it at, in 32 bits; 0: none.
    armed: u32,
    /// Frames not written yet, the first maybe in part; up to [`GATHER`] go out in one
    /// vectored write. No memory while idle (one queue, not a first frame held inline: 56
    /// bytes less in every idle connection's task, which then fits tokio's next smaller cell).
    out: VecDeque<Outgoing>,
}

/// At most this many frames go into one vectored write (two slices each).
pub(crate) const GATHER: usize = 16;

/// A frame on its way out: header and payload, and how much of each is written.
struct Outgoing {
    header: [u8; 10],
    header_len: u8,
    header_pos: u8,
    payload: bytes::Bytes,
    payload_pos: usize,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").field("queued", &self.queued.len()).field("eof", &self.eof).finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// A connection over `io` (already upgraded), refusing messages over `max` bytes.
    pub(crate) fn new(io: S, max: usize) -> Self {
        WebSocket {
            io,
            reader: FrameReader::new(max),
            queued: VecDeque::new(),
            eof: false,
            pinged: false,
            blocked: false,
            armed: 0,
            out: VecDeque::new(),
        }
    }

    /// The next message; `None` when the client went away. Cancel-safe: dropping the future
    /// loses nothing (what was read is decoded in the same poll). (The node polls
    /// [`Self::poll_recv`] from its own future.)
    #[cfg(test)]
    pub(crate) fn recv(&mut self) -> impl Future<Output = Option<Result<Msg, WsError>>> + '_ {
        poll_fn(move |cx| self.poll_recv(cx))
    }

    /// `recv` for hand-written futures.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Msg, WsError>>> {
        loop {
            if let Some(m) = self.queued.pop_front() {
                if self.queued.is_empty() {
                    self.queued = VecDeque::new();
                }
                return Poll::Ready(Some(Ok(m)));
            }
            if self.eof {
                return Poll::Ready(None);
            }
            // On this poll's stack: nothing is kept between reads.
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    self.eof = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Ok(())) if rb.filled().is_empty() => self.eof = true,
                Poll::Ready(Ok(())) => {
                    if let Err(e) = self.reader.feed(rb.filled(), &mut self.queued) {
                        self.eof = true;
                        self.queued.clear();
                        return Poll::Ready(Some(Err(e)));
                    }
                    // Something came (a pong, say): the idle clock restarted.
                    if !self.reader.in_progress() {
                        self.pinged = false;
                    }
                }
            }
        }
    }

    /// Sends a binary message.
    pub(crate) async fn send_binary(&mut self, payload: impl Into<bytes::Bytes>) -> io::Result<()> {
        self.start_frame(2, payload.into());
        poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Sends a close frame (the reason is cut to 123 bytes). The caller then drops the
    /// connection, which closes the socket.
    pub(crate) async fn send_close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.start_close(code, reason);
        poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Queues a close frame; [`Self::poll_write_out`] writes it.
    pub(crate) fn start_close(&mut self, code: u16, reason: &str) {
        let reason = close_reason(reason);
        let mut p = Vec::with_capacity(2 + reason.len());
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(reason.as_bytes());
        self.start_frame(8, p.into());
    }

    /// Queues one frame behind any not written yet; [`Self::poll_write_out`] writes them,
    /// in order.
    pub(crate) fn start_frame(&mut self, opcode: u8, payload: bytes::Bytes) {
        let mut header = [0u8; 10];
        let header_len = header_for(&mut header, opcode, payload.len()) as u8;
        self.out.push_back(Outgoing { header, header_len, header_pos: 0, payload, payload_pos: 0 });
    }

    /// Frames queued and not written yet.
    pub(crate) fn queued_out(&self) -> usize {
        self.out.len()
    }

    /// Bytes of payload queued and not written yet (walks the queue: call it now and then,
    /// not per frame).
    pub(crate) fn queued_out_bytes(&self) -> usize {
        self.out.iter().map(|o| o.payload.len() - o.payload_pos).sum()
    }

    /// Drops every queued frame not started yet (a frame half written stays: the stream
    /// would be corrupt without its end), so that what is queued next goes out first.
    pub(crate) fn discard_unstarted(&mut self) {
        let started = self.out.front().is_some_and(|o| o.header_pos > 0);
        self.out.truncate(usize::from(started));
    }

    /// Writes the queued frames (headers and payloads, up to [`GATHER`] frames per vectored
    /// write); ready at once when nothing is queued.
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.out.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let WebSocket { io, out, reader, pinged, blocked, .. } = self;
        while !out.is_empty() {
            let mut bufs = [IoSlice::new(&[]); 2 * GATHER];
            let mut k = 0;
            for o in out.iter().take(GATHER) {
                bufs[k] = IoSlice::new(&o.header[usize::from(o.header_pos)..usize::from(o.header_len)]);
                bufs[k + 1] = IoSlice::new(&o.payload[o.payload_pos..]);
                k += 2;
            }
            let mut n = match Pin::new(&mut *io).poll_write_vectored(cx, &bufs[..k]) {
                Poll::Pending => {
                    *blocked = true;
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    *out = VecDeque::new();
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(0)) => {
                    *out = VecDeque::new();
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => n,
            };
            // The socket was full and took more: the client is reading what it was sent.
            // That is life too (it is not read meanwhile, and may be on a slow link taking
            // in a large state), where a write into a socket with room proves nothing.
            if std::mem::take(blocked) {
                reader.heard();
                *pinged = false;
            }
            // Advance through the frames the write covered; a frame fully out makes room
            // for the next.
            while let Some(o) = out.front_mut() {
                let h = usize::from(o.header_len - o.header_pos).min(n);
                o.header_pos += h as u8;
                n -= h;
                let p = (o.payload.len() - o.payload_pos).min(n);
                o.payload_pos += p;
                n -= p;
                if o.header_pos == o.header_len && o.payload_pos == o.payload.len() {
                    out.pop_front();
                } else {
                    break;
                }
            }
        }
        // Nothing queued: an idle connection keeps no buffer.
        *out = VecDeque::new();
        Pin::new(&mut *io).poll_flush(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod tests {
    use super::frame::tests::frame;
    use super::*;

    #[test]
    fn an_idle_connection_keeps_its_deadlines_in_what_was_padding() {
        // The room's inline connection's box stays in the allocator's 192-byte class.
        assert_eq!(std::mem::size_of::<WebSocket>(), 160);
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        let mut b = [0u8; 10];
        assert_eq!((header_for(&mut b, 2, 125), b[1]), (2, 125));
        assert_eq!((header_for(&mut b, 2, 126), b[1], &b[2..4]), (4, 126, &[0u8, 126][..]));
        assert_eq!((header_for(&mut b, 2, 70_000), b[1]), (10, 127));
        assert_eq!(close_reason(&"é".repeat(100)).len(), 122, "cut on a character boundary");
    }

    #[tokio::test]
    async fn a_connection_reads_frames_and_writes_unmasked_ones() {
        let (client, server) = tokio::io::duplex(64);
        let mut ws = WebSocket::new(server, 1 << 16);
        let (mut cr, mut cw) = tokio::io::split(client);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut s = frame(true, 2, &[7u8; 300], [1, 2, 3, 4]);
            s.extend(frame(true, 9, b"hi", [4; 4]));
            cw.write_all(&s).await.unwrap();
            cw.shutdown().await.unwrap();
        });
        assert_eq!(ws.recv().await.unwrap().unwrap(), Msg::Binary(vec![7; 300]));
        assert_eq!(ws.recv().await.unwrap().unwrap(), Msg::Ping(b"hi".to_vec()));
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut got = Vec::new();
            cr.read_to_end(&mut got).await.unwrap();
            got
        });
        ws.send_binary(vec![5u8; 200]).await.unwrap();
        ws.send_close(4400, "done").await.unwrap();
        assert!(ws.recv().await.is_none(), "the client's end of stream");
        drop(ws);
        writer.await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(&got[..4], &[0x82, 126, 0, 200]);
        assert_eq!(&got[4..204], &[5u8; 200][..]);
        assert_eq!(&got[204..], &[0x88, 6, 0x11, 0x30, b'd', b'o', b'n', b'e'][..]);
    }

    /// Server frames (unmasked, FIN set) back into (opcode, payload).
    fn server_frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            assert_eq!(b[0] & 0xF0, 0x80, "FIN, no RSV bits");
            assert_eq!(b[1] & 0x80, 0, "a server does not mask");
            let (len, at) = match b[1] & 0x7F {
                126 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
                127 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
                n => (usize::from(n), 2),
            };
            out.push((b[0] & 0x0F, b[at..at + len].to_vec()));
            b = &b[at + len..];
        }
        out
    }

    #[tokio::test]
    async fn queued_frames_go_out_in_order_through_partial_vectored_writes() {
        // A 7-byte pipe: every write is partial, and it ends inside headers and payloads.
        let (client, server) = tokio::io::duplex(7);
        let mut ws = WebSocket::new(server, 1 << 20);
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut client = client;
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        // More frames than one vectored write takes, of every length form.
        let sizes = [0usize, 1, 125, 126, 300, 65_535, 65_536, 3, 70_000];
        let mut want = Vec::new();
        for i in 0..(2 * GATHER + 3) {
            let payload: Vec<u8> = (0..sizes[i % sizes.len()]).map(|j| (i * 7 + j) as u8).collect();
            want.push((2u8, payload.clone()));
            ws.start_frame(2, payload.into());
        }
        assert_eq!(ws.queued_out(), 2 * GATHER + 3);
        ws.start_close(1000, "bye");
        want.push((8, [&1000u16.to_be_bytes()[..], b"bye"].concat()));
        poll_fn(|cx| ws.poll_write_out(cx)).await.unwrap();
        assert_eq!(ws.queued_out(), 0);
        assert_eq!(ws.out.capacity(), 0, "nothing kept once written");
        drop(ws);
        assert_eq!(server_frames(&reader.await.unwrap()), want);
    }

    /// A client that drains a full socket shows life (the idle deadline counts from it); a
    /// write into a socket with room does not (a ping into a half-open connection's buffer
    /// would otherwise keep it alive).
    #[tokio::test]
    async fn a_full_socket_that_drains_counts_as_life_and_a_write_with_room_does_not() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(64);
        let mut ws = WebSocket::new(server, 1 << 20);
        let stale = |ws: &mut WebSocket<_>| {
            ws.reader.since = ws.reader.since.wrapping_sub(1 << 20);
            ws.reader.since
        };
        let mark = stale(&mut ws);
        ws.start_frame(9, bytes::Bytes::new());
        poll_fn(|cx| ws.poll_write_out(cx)).await.unwrap();
        assert_eq!(ws.reader.since, mark, "a write with room");
        ws.start_frame(2, vec![1u8; 1000].into());
        assert!(poll_fn(|cx| Poll::Ready(ws.poll_write_out(cx).is_pending())).await, "the pipe is full");
        // The pipe holds 64 bytes: read them, and the next write goes on.
        let mut got = vec![0u8; 64];
        client.read_exact(&mut got).await.unwrap();
        assert!(poll_fn(|cx| Poll::Ready(ws.poll_write_out(cx).is_pending())).await);
        assert_ne!(ws.reader.since, mark, "the client drained it");
    }

    /// A client dropped for reading too slowly gets its close frame next: the frames not
    /// started are dropped, the one half written is finished (the stream stays valid).
    #[tokio::test]
    async fn discarding_unstarted_frames_keeps_the_one_half_written() {
        let (client, server) = tokio::io::duplex(64);
        let mut ws = WebSocket::new(server, 1 << 20);
        for i in 0..3u8 {
            ws.start_frame(2, vec![i; 1000].into());
        }
        // The pipe takes 64 bytes: the first frame is half out.
        assert!(poll_fn(|cx| Poll::Ready(ws.poll_write_out(cx).is_pending())).await);
        assert!(ws.queued_out_bytes() > 1900, "{}", ws.queued_out_bytes());
        ws.discard_unstarted();
        assert_eq!(ws.queued_out(), 1);
        ws.start_close(4400, "too slow");
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut client = client;
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        poll_fn(|cx| ws.poll_write_out(cx)).await.unwrap();
        drop(ws);
        let frames = server_frames(&reader.await.unwrap());
        assert_eq!(frames.len(), 2, "{:?}", frames.iter().map(|f| f.0).collect::<Vec<_>>());
        assert_eq!(frames[0], (2, vec![0u8; 1000]));
        assert_eq!(frames[1].0, 8);
        // With nothing half written, every queued frame goes.
        let (_c, server) = tokio::io::duplex(64);
        let mut ws = WebSocket::new(server, 1 << 20);
        ws.start_frame(2, vec![1u8; 10].into());
        ws.discard_unstarted();
        assert_eq!(ws.queued_out(), 0);
    }
}
