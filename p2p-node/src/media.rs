//! Recording the call: `arena-node record` joins the room's call receive-only (through the
//! bootstrap node's `/signal`, the `arena-call-*` protocol) and writes each participant's
//! audio (Opus → Ogg) and video (VP8 → IVF) into `media/` beside the recording, one file
//! per participant, track and join (a participant who leaves and rejoins gets new files),
//! with the timeline sidecar `media/timeline.jsonl` ([`timeline`]): when each file's first
//! packet arrived, the senders' RTCP sender reports (RTP time ↔ their wall-clock), and
//! every gap (lost packets, a leave, a rejoin) as a gap.
//!
//! When a media file closes (the participant left, the call dropped, the recorder stops),
//! its size and SHA-256 go into the recording as a media record ([`MediaFile`]), covered by
//! the recorder's next seal; `verify` hashes the files again.
//!
//! What a peer controls is checked: signaling messages are parsed strictly and refused with
//! a log line and a timeline `error` line, never a crash; a codec this recorder does not
//! write is `skipped`; a peer that never connects times out.

mod call;
mod ivf;
mod ogg;
mod peer;
mod reorder;
mod signal;
pub mod timeline;
mod track;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arena_core::RoomId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use timeline::TIMELINE_FILE;

/// The media subdirectory of a recording directory.
pub const MEDIA_DIR: &str = "media";

/// One media file as the recording vouches for it: its name inside `media/`, its size and
/// its SHA-256 (hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFile {
    /// File name inside `media/` (no directories).
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
}

/// Whether `name` is a plain file name this recorder could have written: ASCII letters,
/// digits, `-`, `_` and `.`, not starting with a dot, at most 128 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl MediaFile {
    /// Hashes `media_dir/name`.
    pub fn of(media_dir: &Path, name: &str) -> std::io::Result<Self> {
        let mut f = std::fs::File::open(media_dir.join(name))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut bytes = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            bytes += n as u64;
        }
        Ok(MediaFile { file: name.to_owned(), bytes, sha256: hex(&h.finalize()) })
    }

    /// The record's body (JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a record's body, refusing names outside `media/`.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let m: MediaFile = serde_json::from_slice(b).map_err(|e| format!("media record: {e}"))?;
        if !valid_name(&m.file) {
            return Err(format!("media record names {:?}, not a file name inside media/", m.file));
        }
        if m.sha256.len() != 64 || !m.sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("media record for {}: the hash is not SHA-256 hex", m.file));
        }
        Ok(m)
    }

    /// Checks the file in `recording_dir/media/` against this record.
    pub fn check(&self, recording_dir: &Path) -> Result<(), String> {
        let dir = recording_dir.join(MEDIA_DIR);
        let now = MediaFile::of(&dir, &self.file).map_err(|e| format!("media file {}: {e}", self.file))?;
        if now.bytes != self.bytes {
            return Err(format!(
                "media file {} holds {} bytes, the recording vouches for {}: it was cut or extended",
                self.file, now.bytes, self.bytes
            ));
        }
        if !now.sha256.eq_ignore_ascii_case(&self.sha256) {
            return Err(format!("media file {} was altered (its SHA-256 differs from the sealed one)", self.file));
        }
        Ok(())
    }
}

/// Creates a new private file (owner-only), refusing to overwrite one.
pub(crate) fn create_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).read(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// How the recorder joins the call.
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// The bootstrap node, `http://host:port` (its `/signal` and `/api/ice`).
    pub base: String,
    /// The room (its id is the signaling topic).
    pub room: RoomId,
    /// The recorder's room token (an observer invite).
    pub token: String,
    /// Its display name in the call.
    pub name: String,
    /// The recording directory; media goes into its `media/`.
    pub dir: PathBuf,
    /// How long a peer may take from hello to a connected call before it is given up.
    pub connect_timeout: Duration,
    /// How often video senders are asked for a keyframe (so the player can seek).
    pub keyframe_every: Duration,
}

impl CallOptions {
    /// Defaults: 20 s to connect, a keyframe every 3 s.
    pub fn new(base: String, room: RoomId, token: String, name: String, dir: PathBuf) -> Self {
        CallOptions {
            base,
            room,
            token,
            name,
            dir,
            connect_timeout: Duration::from_secs(20),
            keyframe_every: Duration::from_secs(3),
        }
    }
}

/// Joins the call until `shutdown`; every media file closed (and at the end the timeline)
/// comes out of the receiver, to go into the recording. The task ends after the last one.
pub fn spawn(
    opts: CallOptions,
    shutdown: CancellationToken,
) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<MediaFile>) {
    let (tx, rx) = mpsc::channel(64);
    // DTLS needs a process-wide rustls provider; Err means one is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let task = tokio::spawn(async move {
        if let Err(e) = call::run(opts, tx, shutdown).await {
            tracing::warn!(error = %e, "recording the call stopped");
        }
    });
    (task, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_records() -> std::io::Result<()> {
        for bad in ["", "../x", "a/b", ".hidden", "a\0", "é.ogg", &"x".repeat(129)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name("p1-host-j2-t0-audio.ogg"));
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join(MEDIA_DIR))?;
        std::fs::write(dir.path().join(MEDIA_DIR).join("a.ogg"), b"abc")?;
        let m = MediaFile::of(&dir.path().join(MEDIA_DIR), "a.ogg")?;
        assert_eq!(m.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(MediaFile::decode(&m.encode()), Ok(m.clone()));
        assert_eq!(m.check(dir.path()), Ok(()));
        std::fs::write(dir.path().join(MEDIA_DIR).join("a.ogg"), b"abd")?;
        assert!(m.check(dir.path()).is_err_and(|e| e.contains("altered")));
        std::fs::write(dir.path().join(MEDIA_DIR).join("a.ogg"), b"ab")?;
        assert!(m.check(dir.path()).is_err_and(|e| e.contains("cut")));
        let evil = MediaFile { file: "../session.arena".into(), ..m };
        assert!(MediaFile::decode(&evil.encode()).is_err());
        assert!(MediaFile::decode(b"{}").is_err());
        Ok(())
    }
}
