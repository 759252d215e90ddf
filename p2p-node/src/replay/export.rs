//! Exports of a recorded session: JSON, and a self-contained HTML player (no network
//! needed to open it) with a scrubber over the code timeline, runs and votes.

use super::Timeline;

/// The timeline as pretty JSON.
pub fn export_json(t: &Timeline) -> String {
    serde_json::to_string_pretty(t).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

const PLAYER: &str = include_str!("player.html");

/// A single HTML file that plays the session back.
pub fn export_html(t: &Timeline) -> String {
    let data = serde_json::to_string(t).unwrap_or_else(|_| "null".into());
    // Inside <script>, "</script" ends the element and "<!--" changes how it is parsed:
    // escape every "<" (it only occurs inside JSON strings, where "\u003c" means the same).
    let data = data.replace('<', "\\u003c");
    PLAYER.replace("/*TIMELINE*/null", &data)
}
