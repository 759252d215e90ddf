//! The `/arena/sync/1` request-response codec: length-prefixed frames of the envelope
//! protocol ([`arena_core::sync::wire`]).
//!
//! Request: the room id (32 bytes), then frames (u32 big-endian length + bytes), ended by a
//! zero length. Typically the requester's admissions and a `Want`.
//! Response: a status byte ([`SyncStatus`]), a "more" byte (1: the answer was cut at the
//! byte budget, ask again), then frames as above. Frames are chunks made by
//! [`arena_core::sync::wire::chunk`]; a fresh reassembler reads them.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use arena_core::RoomId;

/// Largest single frame (a chunk is at most [`arena_core::sync::wire::GOSSIP_CHUNK`]).
const MAX_FRAME: usize = 128 * 1024;
/// Largest request (admissions of a big roster and a `Want` of many authors).
pub const MAX_REQUEST: usize = 4 << 20;
/// Largest response; answers are cut below it and marked "more".
pub const MAX_RESPONSE: usize = 64 << 20;

/// A catch-up request for one room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    /// The room.
    pub room: RoomId,
    /// Chunks of envelope-protocol messages.
    pub frames: Vec<Vec<u8>>,
}

/// How a sync request went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncStatus {
    /// Answered.
    Ok = 0,
    /// The responder does not hold this room.
    UnknownRoom = 1,
    /// The request was refused (malformed, or the requester is not allowed).
    Refused = 2,
}

/// The answer to a [`SyncRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResponse {
    /// Outcome.
    pub status: SyncStatus,
    /// The answer was cut at the byte budget: ask again with the new envelope vector.
    pub more: bool,
    /// Chunks of envelope-protocol messages.
    pub frames: Vec<Vec<u8>>,
}

/// The codec. Stateless.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncCodec;

async fn read_frames<T: AsyncRead + Unpin + Send>(io: &mut T, budget: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut frames = Vec::new();
    let mut total = 0usize;
    loop {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return Ok(frames);
        }
        total += len + 4;
        if len > MAX_FRAME || total > budget {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("sync frame of {len} bytes over the limit"),
            ));
        }
        let mut buf = vec![0u8; len];
        io.read_exact(&mut buf).await?;
        frames.push(buf);
    }
}

async fn write_frames<T: AsyncWrite + Unpin + Send>(io: &mut T, frames: &[Vec<u8>]) -> io::Result<()> {
    for f in frames {
        let len = u32::try_from(f.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        io.write_all(&len.to_be_bytes()).await?;
        io.write_all(f).await?;
    }
    io.write_all(&0u32.to_be_bytes()).await?;
    io.close().await
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncRequest> {
        let mut room = [0u8; 32];
        io.read_exact(&mut room).await?;
        let frames = read_frames(io, MAX_REQUEST).await?;
        Ok(SyncRequest { room: arena_core::PeerKey(room), frames })
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncResponse> {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await?;
        let status = match head[0] {
            0 => SyncStatus::Ok,
            1 => SyncStatus::UnknownRoom,
            2 => SyncStatus::Refused,
            s => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("unknown sync status {s}"))),
        };
        let frames = read_frames(io, MAX_RESPONSE).await?;
        Ok(SyncResponse { status, more: head[1] != 0, frames })
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()> {
        io.write_all(&req.room.0).await?;
        write_frames(io, &req.frames).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncResponse,
    ) -> io::Result<()> {
        io.write_all(&[res.status as u8, u8::from(res.more)]).await?;
        write_frames(io, &res.frames).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec as _;

    #[test]
    fn round_trip_and_limits() {
        futures::executor::block_on(async {
            let p = StreamProtocol::new(super::super::SYNC_PROTOCOL);
            let req = SyncRequest { room: arena_core::PeerKey([7; 32]), frames: vec![vec![1, 2, 3], vec![4; 1000]] };
            let mut buf = Vec::new();
            SyncCodec.write_request(&p, &mut futures::io::Cursor::new(&mut buf), req.clone()).await.unwrap();
            let back = SyncCodec.read_request(&p, &mut futures::io::Cursor::new(&buf)).await.unwrap();
            assert_eq!(back, req);
            // Truncated input is an error, never a panic.
            for n in 0..buf.len() {
                assert!(SyncCodec.read_request(&p, &mut futures::io::Cursor::new(&buf[..n])).await.is_err());
            }
            let res = SyncResponse { status: SyncStatus::UnknownRoom, more: true, frames: vec![vec![9; 10]] };
            let mut buf = Vec::new();
            SyncCodec.write_response(&p, &mut futures::io::Cursor::new(&mut buf), res.clone()).await.unwrap();
            assert_eq!(SyncCodec.read_response(&p, &mut futures::io::Cursor::new(&buf)).await.unwrap(), res);
            // An oversized frame length is refused before allocating.
            let mut bad = vec![0u8; 32];
            bad.extend_from_slice(&(u32::MAX).to_be_bytes());
            assert!(SyncCodec.read_request(&p, &mut futures::io::Cursor::new(&bad)).await.is_err());
        });
    }
}
