//! arena-web: InterviewArena in the browser. A thin wasm-bindgen wrapper of arena-core's
//! [`arena_core::sync::client::Client`] over a [`arena_core::MemoryStore`]: the room
//! document (the code and its extra files), signed envelopes, catch-up, presence, votes,
//! versions and diffs. The transport
//! (WebSocket to the bootstrap node's `/yws`, reconnect, offline edits) and the editor
//! adapters (textarea, CodeMirror 6, Monaco) are JavaScript, in `web-bindings/js/`;
//! `scripts/build-web.sh` builds both into the npm package `web-bindings/pkg/`.
//!
//! Every call that needs the time takes `nowMs` (`Date.now()`); keys come from seeds the
//! caller draws with `crypto.getRandomValues`. Frames to send come back as `Uint8Array`s,
//! code changes as `{pos, delete, insert}` splices in UTF-16 units, records as plain objects.
//!
//! The crate also builds natively (so the workspace tests cover it); only the wasm32 build is
//! useful.
//!
//! ```
//! # use arena_web::Room;
//! let room = Room::create(&[7; 32], &[1; 32], "Ada", "python", "demo", 1_000.0).unwrap();
//! assert_eq!(room.role(), "host");
//! assert_eq!(room.code(), "");
//! ```

mod files;
mod js;
mod room;

pub use room::{verify_signature, Room};
