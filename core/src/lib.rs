//! arena-core: InterviewArena's room document, trust model, sans-IO sync and history.
//!
//! - [`RoomDoc`]: one yrs document per room (UTF-16 offsets, no GC) with typed access to
//!   its roots (`code`, `meta`, `participants`, `votes`, `analysis`, `runs`, `versions`,
//!   and the extra files: the `files` map and a `files/<name>` text per file).
//! - Trust: [`Identity`]/[`PeerKey`] (Ed25519), key-bound [`Invite`]s, [`Grant`]s and
//!   [`Admission`]s, the room's write rules, signed and hash-chained update [`Envelope`]s checked by the
//!   [`Ledger`], signed [`Checkpoint`]s, signed votes and the [`vote::Consensus`] rule.
//! - Sync, sans-IO: [`sync::ywire`] speaks y-protocols (y-websocket, y-webrtc) byte for
//!   byte; [`sync::wire`] is the envelope protocol (live, catch-up by envelope vector,
//!   chunking); [`sync::client`] is a signing peer's side of a bootstrap node's `/yws`
//!   socket (what the WASM package runs), with presence and editor-ready code changes
//!   ([`CodeWatch`]).
//! - [`Room`]: one replica (document + ledger + [`Store`]); history with versions, time
//!   travel ([`Cut`]), diff and restore ([`history`]).
//!
//! Feature `store` (default): [`SledDb`]/[`SledStore`], the sled-backed store. Without it the
//! crate builds for `wasm32-unknown-unknown`, where Ed25519 signs with a basepoint table built
//! at runtime instead of ed25519-dalek's static ones (feature `wasm-fast-signing` brings those
//! back: 36 KiB more in a gzipped WASM module, verifying one signature ~10% faster).
//!
//! ```
//! use arena_core::{Identity, MemoryStore, Room, RoomConfig, Role, Invite, records::Meta};
//! # fn main() -> arena_core::Result<()> {
//! let room_key = Identity::from_passphrase("room key");
//! let mut host = Room::create(&room_key, Identity::from_passphrase("host"), 0, MemoryStore::new(), Meta::default(), 1_000)?;
//! let env = host.edit(1_001, |e| e.splice_code(0, 0, "print('hi')"))?.expect("an edit");
//!
//! // The candidate joins with an invite token and catches up from the host.
//! let token = Invite::issue(&room_key, Role::Candidate, 10_000, 0, 1).to_token();
//! let mut cand = Room::open(host.id(), Identity::from_passphrase("cand"), 0, MemoryStore::new(), RoomConfig::default(), 2_000)?;
//! let (admission, _) = cand.join(&token, "Ada", 2_000)?;
//! host.admit(&admission, Some(2_000))?;
//! let arena_core::sync::wire::Wire::Want(have) = cand.want() else { unreachable!() };
//! for msg in host.answer(&have)? {
//!     cand.handle(msg, 2_001)?;
//! }
//! assert_eq!(cand.doc().code(), "print('hi')");
//! # let _ = env; Ok(()) }
//! ```

mod checkpoint;
mod codec;
mod delegation;
mod doc;
mod envelope;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod grant;
pub mod history;
mod identity;
mod json;
mod ledger;
pub mod records;
mod revocation;
mod room;
mod store;
pub mod sync;
pub mod vote;

pub use checkpoint::Checkpoint;
pub use delegation::Delegation;
pub use doc::{
    check_file_name, check_update, decode_state_vector, decode_update, CodeWatch, Edit, MetaValue, RoomDoc,
    MAX_CLIENT_ID, MAX_FILES, MAX_FILE_NAME,
};
pub use envelope::{Envelope, MAX_UPDATE};
pub use error::{CoreError, Result};
pub use grant::{Admission, Grant, Invite, ReadKey, Role, RoomId, FLAG_PROXY};
pub use identity::{Hash, Identity, PeerKey};
pub use ledger::{ChainHead, Checked, Ledger, Member};
pub use revocation::Revocation;
pub use room::versions::Cut;
pub use room::{Receipt, Room, RoomConfig, CHECKPOINT_ENTRY_BYTES, CLOCK_SKEW_MS};
pub use store::{LogEntry, MemoryStore, Store};
#[cfg(feature = "store")]
pub use store::{SledDb, SledStore};
