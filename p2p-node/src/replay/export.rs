//! Exports of a recorded session: JSON, and a self-contained HTML player (no network
//! needed to open it) with a wall-clock scrubber over the code, marks for runs, votes,
//! analyses and versions, and the call's audio and video played in sync.
//!
//! The call's media is inlined in the HTML as base64 (a third larger than the files):
//! fine for an interview (an hour of a two-person call is some hundreds of MB at most);
//! the player decodes VP8 from IVF with WebCodecs and plays Ogg Opus in `<audio>`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::Timeline;
use crate::error::{NodeError, Result};
use crate::media::{MEDIA_DIR, TIMELINE_FILE};

/// The timeline as pretty JSON.
pub fn export_json(t: &Timeline) -> String {
    serde_json::to_string_pretty(t).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

const PLAYER: &str = include_str!("player.html");

/// The call's media for the player: the timeline sidecar's lines and each file, base64.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CallMedia {
    /// `media/timeline.jsonl`, one JSON value per line.
    pub events: Vec<serde_json::Value>,
    /// File name → its bytes as base64.
    pub files: BTreeMap<String, String>,
}

impl CallMedia {
    /// Reads the media files `t` vouches for from `dir/media` (call [`super::verify`]
    /// first: this only reads them; an unreadable one is left out with a warning).
    pub fn load(dir: &Path, t: &Timeline) -> Result<Self> {
        let dir = dir.join(MEDIA_DIR);
        let mut m = CallMedia::default();
        for f in &t.media {
            let path = dir.join(&f.file);
            // Missing only when exported unverified: the player says nothing of that file.
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %NodeError::io(&path, e), "leaving a media file out of the export");
                    continue;
                }
            };
            if f.file == TIMELINE_FILE {
                m.events =
                    String::from_utf8_lossy(&bytes).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            } else {
                m.files.insert(f.file.clone(), base64(&bytes));
            }
        }
        Ok(m)
    }
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Inside <script>, "</script" ends the element and "<!--" changes how it is parsed:
/// escape every "<" (it only occurs inside JSON strings, where "\u003c" means the same).
fn script_json(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into()).replace('<', "\\u003c")
}

/// A single HTML file that plays the session back (without the call's media).
pub fn export_html(t: &Timeline) -> String {
    export_html_with_media(t, &CallMedia::default())
}

/// A single HTML file that plays the session back with the call's audio and video.
pub fn export_html_with_media(t: &Timeline, media: &CallMedia) -> String {
    PLAYER.replacen("/*TIMELINE*/null", &script_json(t), 1).replacen("/*MEDIA*/null", &script_json(media), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }
}
