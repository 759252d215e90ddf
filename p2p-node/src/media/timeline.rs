//! The call's timeline sidecar, `media/timeline.jsonl`: one JSON object per line, each with
//! `"ev"` (what happened) and `"at_ms"` (the recorder's wall-clock, unix milliseconds).
//!
//! - `peer`: a call peer said hello, left, failed or timed out (`event`, `peer`, `role`,
//!   `name`, `join`: how many times it joined so far).
//! - `track`: a media file started: `file`, `peer`, `join`, `kind` (audio|video), `codec`,
//!   `clock_rate`, `ssrc`, `first_rtp` (the RTP timestamp at file time 0) and `first_seq`;
//!   `at_ms` is the local receive time of the track's first packet.
//! - `sr`: an RTCP sender report for a file: `ntp_ms` (the sender's wall-clock, unix ms),
//!   `rtp` (its RTP timestamp) and `media_ms` (that RTP time as file time, milliseconds):
//!   file time `media_ms` was wall-clock `ntp_ms` for the sender.
//! - `gap`: packets `from_seq..to_seq` (extended sequence numbers) never arrived: `lost`
//!   packets between file times `media_from_ms` and `media_to_ms` (the packets either
//!   side). The file keeps the hole: its timestamps are the RTP time.
//! - `dropped`: video frames not written (`broken`: a packet missing; `waiting`: after a
//!   broken frame, until the next keyframe), counted since the last such line.
//! - `skipped`: a track with a codec this recorder does not write (`codec`, `kind`).
//! - `end`: a media file closed: `file`, `reason`, `packets`, `lost`, `late`, `frames`,
//!   `media_end_ms`.
//! - `error`: something a peer sent that was refused (`peer` when known, `reason`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

/// The sidecar's file name inside `media/`.
pub const TIMELINE_FILE: &str = "timeline.jsonl";

/// Appends timeline lines; shared by the call's tasks.
#[derive(Debug)]
pub(crate) struct Timeline {
    path: PathBuf,
    out: Mutex<Option<BufWriter<File>>>,
}

impl Timeline {
    /// Opens (appends to) the sidecar in `media_dir`.
    pub(crate) fn open(media_dir: &Path) -> std::io::Result<Self> {
        let path = media_dir.join(TIMELINE_FILE);
        let mut o = std::fs::OpenOptions::new();
        o.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let f = o.open(&path)?;
        Ok(Timeline { path, out: Mutex::new(Some(BufWriter::new(f))) })
    }

    /// Writes one line; `ev` names it and `at_ms` is added when `fields` has none.
    pub(crate) fn event(&self, ev: &str, mut fields: Value) {
        if let Some(o) = fields.as_object_mut() {
            o.insert("ev".into(), ev.into());
            o.entry("at_ms").or_insert_with(|| crate::now_ms().into());
        }
        let line = fields.to_string();
        let Ok(mut g) = self.out.lock() else { return };
        if let Some(w) = g.as_mut() {
            if let Err(e) = w.write_all(line.as_bytes()).and_then(|()| w.write_all(b"\n")).and_then(|()| w.flush()) {
                tracing::warn!(path = %self.path.display(), error = %e, "writing the call's timeline");
            }
        }
    }

    /// Closes it (later events are dropped); returns its path.
    pub(crate) fn close(&self) -> std::io::Result<PathBuf> {
        let w = self.out.lock().ok().and_then(|mut g| g.take());
        if let Some(mut w) = w {
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        Ok(self.path.clone())
    }
}

/// Unix milliseconds from a 64-bit NTP timestamp (seconds since 1900 in the high half).
pub(crate) fn ntp_to_unix_ms(ntp: u64) -> i64 {
    const NTP_UNIX_OFFSET: i64 = 2_208_988_800;
    let secs = (ntp >> 32) as i64 - NTP_UNIX_OFFSET;
    let frac_ms = ((ntp & 0xffff_ffff) * 1000) >> 32;
    secs * 1000 + frac_ms as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_times() {
        assert_eq!(ntp_to_unix_ms(2_208_988_800u64 << 32), 0);
        assert_eq!(ntp_to_unix_ms(((2_208_988_801u64) << 32) | 0x8000_0000), 1500);
    }

    #[test]
    fn lines_are_json_with_a_time() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let t = Timeline::open(dir.path())?;
        t.event("peer", serde_json::json!({"peer": "a\nb\"c"}));
        t.event("gap", serde_json::json!({"at_ms": 5}));
        let p = t.close()?;
        t.event("late", serde_json::json!({}));
        let text = std::fs::read_to_string(p)?;
        let lines: Vec<Value> = text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["peer"], "a\nb\"c");
        assert!(lines[0]["at_ms"].as_u64().is_some_and(|t| t > 0));
        assert_eq!(lines[1]["at_ms"], 5);
        Ok(())
    }
}
