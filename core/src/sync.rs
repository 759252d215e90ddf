//! Sans-IO sync: bytes in, messages out. [`ywire`] speaks y-protocols (what stock Yjs
//! clients speak); [`wire`] is our envelope protocol with catch-up and chunking; [`client`]
//! is a signing peer's side of a bootstrap node's `/yws` socket; [`presence`] holds a room's
//! awareness states (y-protocols rules, no document attached).

pub mod client;
pub mod presence;
pub mod wire;
pub mod ywire;
