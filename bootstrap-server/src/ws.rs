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
//! back) are in [`deadline`], with no timer per connection.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

mod deadline;

pub(crate) use deadline::Deadlines;

use crate::clock;

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

/// Decodes client frames into messages. Holds memory only while a frame or a fragmented
/// message is incomplete.
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// The start of a frame whose end has not arrived.
    partial: Vec<u8>,
    /// A fragmented message being put together: its opcode and what came so far.
    /// Boxed: 8 bytes in every idle connection's task instead of 32.
    fragments: Option<Box<(u8, Vec<u8>)>>,
    /// 32 bits (messages are at most 4 GiB), beside `since` in what one `usize` took.
    max: u32,
    /// When (the clock's milliseconds, wrapping) the message in progress began or, with
    /// none in progress, when input last came: what the connection's deadlines count from.
    since: u32,
}

/// One frame, unmasked.
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl FrameReader {
    /// Messages (and frames) larger than `max` bytes are refused.
    pub(crate) fn new(max: usize) -> Self {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        FrameReader { partial: Vec::new(), fragments: None, max, since: clock::elapsed_ms() as u32 }
    }

    /// A message has begun and is not whole yet (a frame cut short, or a fragmented
    /// message not ended).
    fn in_progress(&self) -> bool {
        !self.partial.is_empty() || self.fragments.is_some()
    }

    /// The client showed life: the idle clock restarts (a message in progress keeps its
    /// read deadline).
    fn heard(&mut self) {
        if !self.in_progress() {
            self.since = clock::elapsed_ms() as u32;
        }
    }

    /// Decodes what `data` completes, appending the messages to `out`.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut VecDeque<Msg>) -> Result<(), WsError> {
        let before = self.in_progress();
        let ended = if self.partial.is_empty() {
            let (used, ended) = self.decode_all(data, out)?;
            if used < data.len() {
                self.partial = data[used..].to_vec();
            }
            ended
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let (used, ended) = self.decode_all(&buf, out)?;
            if used < buf.len() {
                if used > 0 {
                    buf.drain(..used);
                    buf.shrink_to_fit();
                }
                self.partial = buf;
            }
            ended
        };
        // The clock restarts unless the same message is still in progress: a client cannot
        // keep one open by trickling its bytes (nor a fragmented one by its control frames).
        if !before || ended || !self.in_progress() {
            self.since = clock::elapsed_ms() as u32;
        }
        Ok(())
    }

    /// Decodes every whole frame at the start of `buf`; returns how many bytes they took and
    /// whether a data message ended among them.
    fn decode_all(&mut self, buf: &[u8], out: &mut VecDeque<Msg>) -> Result<(usize, bool), WsError> {
        let (mut pos, mut ended) = (0, false);
        while let Some((frame, used)) = self.decode_frame(&buf[pos..])? {
            pos += used;
            if let Some(m) = self.message(frame)? {
                ended |= matches!(m, Msg::Binary(_) | Msg::Text(_));
                out.push_back(m);
            }
        }
        Ok((pos, ended))
    }

    /// One frame from the start of `buf`, or `None` if it has not all arrived. The header is
    /// checked as soon as it is complete, so an oversized frame is refused before its
    /// payload is waited for.
    fn decode_frame(&self, buf: &[u8]) -> Result<Option<(Frame, usize)>, WsError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set without an extension"));
        }
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
        if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            return Err(WsError::Protocol("unknown opcode"));
        }
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let (len, at) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    let len = u64::from_be_bytes(a);
                    if len >> 63 != 0 {
                        return Err(WsError::Protocol("frame length has its top bit set"));
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if opcode >= 8 && (!fin || len > 125) {
            return Err(WsError::Protocol("control frames must be whole and at most 125 bytes"));
        }
        // A continuation adds to the message so far; control frames between fragments don't.
        let so_far = match self.fragments.as_deref() {
            Some((_, f)) if opcode == 0 => f.len() as u64,
            _ => 0,
        };
        if len.saturating_add(so_far) > u64::from(self.max) {
            return Err(WsError::TooBig(len.saturating_add(so_far)));
        }
        let len = len as usize; // ≤ max, a u32
        let Some(mask) = buf.get(at..at + 4) else { return Ok(None) };
        let start = at + 4;
        let Some(body) = buf.get(start..start + len) else { return Ok(None) };
        let payload = body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        Ok(Some((Frame { fin, opcode, payload }, start + len)))
    }

    /// What a frame adds up to (a message, or nothing yet).
    fn message(&mut self, f: Frame) -> Result<Option<Msg>, WsError> {
        match f.opcode {
            8 => Ok(Some(Msg::Close(close_payload(&f.payload)?))),
            9 => Ok(Some(Msg::Ping(f.payload))),
            10 => Ok(None),
            0 => {
                let Some((_, so_far)) = self.fragments.as_deref_mut() else {
                    return Err(WsError::Protocol("continuation frame without a message to continue"));
                };
                so_far.extend_from_slice(&f.payload);
                if !f.fin {
                    return Ok(None);
                }
                let Some((opcode, whole)) = self.fragments.take().map(|b| *b) else { return Ok(None) };
                data_message(opcode, whole).map(Some)
            }
            opcode => {
                if self.fragments.is_some() {
                    return Err(WsError::Protocol("new message before the fragmented one ended"));
                }
                if f.fin {
                    data_message(opcode, f.payload).map(Some)
                } else {
                    self.fragments = Some(Box::new((opcode, f.payload)));
                    Ok(None)
                }
            }
        }
    }
}

fn data_message(opcode: u8, payload: Vec<u8>) -> Result<Msg, WsError> {
    if opcode == 1 {
        String::from_utf8(payload).map(Msg::Text).map_err(|_| WsError::NotUtf8)
    } else {
        Ok(Msg::Binary(payload))
    }
}

fn close_payload(p: &[u8]) -> Result<Option<(u16, String)>, WsError> {
    match p {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("close frame with a one-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            // §7.4 and IANA's registry since: codes a peer may send (1012 service restart,
            // 1013 try again later, 1014 bad gateway were added after the RFC).
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(WsError::Protocol("close code not allowed on the wire"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::NotUtf8)?;
            Ok(Some((code, reason.to_owned())))
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

/// The extractor for a WebSocket upgrade request (RFC 6455 §4.2.1); refuses anything else
/// with 400 (426 for a wrong version, with the version we speak).
#[derive(Debug)]
pub(crate) struct Upgrade {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let bad = |why: &'static str| (StatusCode::BAD_REQUEST, why).into_response();
        if parts.method != Method::GET {
            return Err((StatusCode::METHOD_NOT_ALLOWED, "a WebSocket upgrade is a GET").into_response());
        }
        let h = &parts.headers;
        if !has_token(h, header::CONNECTION, "upgrade") || !has_token(h, header::UPGRADE, "websocket") {
            return Err(bad("expected a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)"));
        }
        if h.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
            return Err((
                StatusCode::UPGRADE_REQUIRED,
                [(header::SEC_WEBSOCKET_VERSION, "13")],
                "WebSocket version 13 only",
            )
                .into_response());
        }
        let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else { return Err(bad("Sec-WebSocket-Key is missing")) };
        if !valid_key(key) {
            return Err(bad(BAD_KEY));
        }
        let accept = accept_key(key.as_bytes());
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(bad("this connection cannot be upgraded"));
        };
        Ok(Upgrade { accept, on_upgrade })
    }
}

impl Upgrade {
    /// Answers 101 and runs `serve` on the connection once hyper hands it over.
    pub(crate) fn on_upgrade<F, Fut>(self, max_message: usize, serve: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(io) => serve(WebSocket::new(TokioIo::new(io), max_message)).await,
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, self.accept),
            ],
        )
            .into_response()
    }
}

/// Whether a comma-separated header has `token` (case-insensitive), as `Connection:
/// keep-alive, Upgrade` does.
fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Why a handshake whose key fails [`valid_key`] is refused.
pub(crate) const BAD_KEY: &str = "Sec-WebSocket-Key must be 16 bytes in base64 (24 characters)";

/// Whether a `Sec-WebSocket-Key` is what §4.2.1 asks for: 16 bytes in (padded) base64.
pub(crate) fn valid_key(key: &HeaderValue) -> bool {
    use base64::Engine as _;
    let mut raw = [0u8; 18];
    let key = key.as_bytes();
    key.len() == 24 && matches!(base64::engine::general_purpose::STANDARD.decode_slice(key, &mut raw), Ok(16))
}

/// `Sec-WebSocket-Accept` for a client's key (§4.2.2).
fn accept_key(key: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let b64 = base64::engine::general_purpose::STANDARD.encode(h.finalize());
    // Base64 is always a valid header value.
    HeaderValue::from_str(&b64).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// A client frame: masked with `mask`.
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => v.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(0x80 | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    }

    fn decode(bytes: &[u8], max: usize) -> Result<Vec<Msg>, WsError> {
        let mut r = FrameReader::new(max);
        let mut out = VecDeque::new();
        r.feed(bytes, &mut out)?;
        Ok(out.into())
    }

    #[test]
    fn an_idle_connection_keeps_its_deadlines_in_what_was_padding() {
        assert_eq!(std::mem::size_of::<FrameReader>(), 40);
        assert_eq!(std::mem::size_of::<WebSocket>(), 160);
    }

    #[test]
    fn the_rfc_example_key_gets_the_rfc_accept_value() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_key_is_16_bytes_of_padded_base64() {
        let ok = |k: &str| valid_key(&HeaderValue::from_str(k).unwrap());
        assert!(ok("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(ok("AAAAAAAAAAAAAAAAAAAAAA=="));
        for bad in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",
            "AAAAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
            "!!!!!!!!!!!!!!!!!!!!!!==",
            "AAAAAAAAAAAAAAAAAAAAAA==AAAA",
            "AAAAAAAAAAAAAAAAAAAAAB==",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn every_length_encoding_round_trips_split_at_every_byte() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        let mut stream = Vec::new();
        let sizes = [0usize, 1, 125, 126, 127, 65_535, 65_536, 70_000];
        for &n in &sizes {
            stream.extend(frame(true, 2, &big[..n], [1, 2, 3, 4]));
        }
        stream.extend(frame(true, 1, "héllo".as_bytes(), [9, 8, 7, 6]));
        let want: Vec<Msg> =
            sizes.iter().map(|&n| Msg::Binary(big[..n].to_vec())).chain([Msg::Text("héllo".into())]).collect();
        assert_eq!(decode(&stream, 1 << 20).unwrap(), want);
        // Arriving in pieces of every size, the same messages, and nothing kept at the end.
        for step in [1usize, 2, 3, 7, 100, 4096] {
            let mut r = FrameReader::new(1 << 20);
            let mut out = VecDeque::new();
            for piece in stream.chunks(step) {
                r.feed(piece, &mut out).unwrap();
            }
            assert_eq!(Vec::from(out), want, "pieces of {step}");
            assert_eq!(r.partial.capacity(), 0, "no buffer kept once every frame is whole");
        }
    }

    /// What the deadlines count from: the start of the message in progress (bytes trickling
    /// in, or control frames between fragments, do not move it), else the last input.
    #[test]
    fn the_deadline_clock_runs_from_a_messages_first_byte_until_it_is_whole() {
        let mut r = FrameReader::new(1 << 10);
        let mut out = VecDeque::new();
        let stale = |r: &mut FrameReader| {
            r.since = r.since.wrapping_add(1 << 30);
            r.since
        };
        let f = frame(true, 2, &[9; 40], [1; 4]);
        let mark = stale(&mut r);
        r.feed(&f[..10], &mut out).unwrap();
        assert_ne!(r.since, mark, "a message began");
        let mark = stale(&mut r);
        for b in &f[10..f.len() - 1] {
            r.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(r.since, mark, "its bytes trickling in");
        r.feed(&f[f.len() - 1..], &mut out).unwrap();
        assert_ne!(r.since, mark, "it is whole");
        assert!(!r.in_progress());
        // A fragmented message: its first fragment starts the clock; a ping between its
        // fragments does not move it; the last ends it.
        r.feed(&frame(false, 2, b"ab", [2; 4]), &mut out).unwrap();
        assert!(r.in_progress());
        let mark = stale(&mut r);
        r.feed(&frame(true, 9, b"p", [3; 4]), &mut out).unwrap();
        r.feed(&frame(false, 0, b"cd", [3; 4]), &mut out).unwrap();
        assert_eq!(r.since, mark);
        // A message ends and the next begins in one read: the clock restarts for the next.
        let mut tail = frame(true, 0, b"e", [4; 4]);
        tail.extend_from_slice(&f[..5]);
        r.feed(&tail, &mut out).unwrap();
        assert!(r.in_progress());
        assert_ne!(r.since, mark);
        // Idle: any input (a pong) restarts it.
        let mut r = FrameReader::new(1 << 10);
        let mark = stale(&mut r);
        r.feed(&frame(true, 10, b"", [5; 4]), &mut out).unwrap();
        assert_ne!(r.since, mark);
    }

    #[test]
    fn fragments_make_one_message_with_control_frames_between_them() {
        let mut s = frame(false, 2, b"ab", [0; 4]);
        s.extend(frame(true, 9, b"p", [5; 4]));
        s.extend(frame(false, 0, b"cd", [7; 4]));
        s.extend(frame(true, 0, b"e", [3; 4]));
        assert_eq!(decode(&s, 100).unwrap(), vec![Msg::Ping(b"p".to_vec()), Msg::Binary(b"abcde".to_vec())]);
    }

    #[test]
    fn close_frames_carry_their_code_and_reason() {
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(b"bye");
        assert_eq!(decode(&frame(true, 8, &p, [1; 4]), 100).unwrap(), vec![Msg::Close(Some((1000, "bye".into())))]);
        assert_eq!(decode(&frame(true, 8, &[], [1; 4]), 100).unwrap(), vec![Msg::Close(None)]);
        for code in [1012u16, 1013, 1014, 3000, 4999] {
            let got = decode(&frame(true, 8, &code.to_be_bytes(), [1; 4]), 100).unwrap();
            assert_eq!(got, vec![Msg::Close(Some((code, String::new())))]);
        }
        for code in [1004u16, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(decode(&frame(true, 8, &code.to_be_bytes(), [1; 4]), 100).is_err(), "{code}");
        }
    }

    #[test]
    fn protocol_violations_are_refused_with_the_right_code() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (
                {
                    let mut f = frame(true, 2, b"x", [1; 4]);
                    f[1] &= 0x7F;
                    f.drain(2..6);
                    f
                },
                1002,
            ), // unmasked
            (
                {
                    let mut f = frame(true, 2, b"x", [1; 4]);
                    f[0] |= 0x40;
                    f
                },
                1002,
            ), // RSV1
            (frame(true, 3, b"x", [1; 4]), 1002),      // unknown opcode
            (frame(false, 9, b"x", [1; 4]), 1002),     // fragmented ping
            (frame(true, 9, &[0; 126], [1; 4]), 1002), // long ping
            (frame(true, 0, b"x", [1; 4]), 1002),      // lone continuation
            (
                {
                    let mut f = frame(false, 2, b"x", [1; 4]);
                    f.extend(frame(true, 2, b"y", [1; 4]));
                    f
                },
                1002,
            ),
            (frame(true, 8, &[3], [1; 4]), 1002),                   // one-byte close
            (frame(true, 8, &1005u16.to_be_bytes(), [1; 4]), 1002), // reserved code
            (frame(true, 1, &[0xFF, 0xFE], [1; 4]), 1007),          // not UTF-8
            (
                {
                    let mut f = frame(false, 1, &[0xC3], [1; 4]);
                    f.extend(frame(true, 0, &[0x28], [1; 4]));
                    f
                },
                1007,
            ),
            (frame(true, 2, &[0; 101], [1; 4]), 1009), // over the limit
            (
                {
                    let mut f = frame(false, 2, &[0; 60], [1; 4]);
                    f.extend(frame(true, 0, &[0; 60], [1; 4]));
                    f
                },
                1009,
            ),
        ];
        for (i, (bytes, code)) in cases.iter().enumerate() {
            let e = decode(bytes, 100).expect_err(&format!("case {i} must be refused"));
            assert_eq!(e.close_code(), *code, "case {i}: {e}");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_alone() {
        // Only the header of a 1 GiB frame: refused at once, not buffered while it "arrives".
        let mut h = vec![0x82, 0x80 | 127];
        h.extend_from_slice(&(1u64 << 30).to_be_bytes());
        assert!(matches!(decode(&h, 1 << 20), Err(WsError::TooBig(_))));
        let mut h = vec![0x82, 0x80 | 127];
        h.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(decode(&h, 1 << 20), Err(WsError::Protocol(_))));
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
