//! Sans-IO sync: bytes in, messages out. [`ywire`] speaks y-protocols (what stock Yjs
//! clients speak); [`wire`] is our envelope protocol with catch-up and chunking.

pub mod wire;
pub mod ywire;
