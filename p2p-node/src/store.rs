//! The store behind a node's room replicas: sled (a data dir), memory (no data dir), or a
//! recording file (the headless recorder).

use arena_core::{Admission, Checkpoint, Envelope, LogEntry, MemoryStore, PeerKey, SledStore, Store};

use crate::recording::RecordingStore;

/// One of the stores a node can keep a room in.
#[derive(Debug)]
pub enum NodeStore {
    /// sled in the node's data dir: survives restarts.
    Sled(SledStore),
    /// Memory only.
    Memory(MemoryStore),
    /// An append-only, tamper-evident recording file.
    Recording(Box<RecordingStore>),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            NodeStore::Sled($s) => $e,
            NodeStore::Memory($s) => $e,
            NodeStore::Recording($s) => $e,
        }
    };
}

impl Store for NodeStore {
    fn append(&mut self, envelope: &Envelope, received_ms: u64) -> arena_core::Result<u64> {
        each!(self, s => s.append(envelope, received_ms))
    }
    fn flush(&mut self) -> arena_core::Result<()> {
        each!(self, s => s.flush())
    }
    fn log_len(&self) -> u64 {
        each!(self, s => s.log_len())
    }
    fn log_range(&self, from: u64, to: u64) -> arena_core::Result<Vec<LogEntry>> {
        each!(self, s => s.log_range(from, to))
    }
    fn author_envelopes(&self, author: &PeerKey, from_seq: u64, limit: usize) -> arena_core::Result<Vec<Envelope>> {
        each!(self, s => s.author_envelopes(author, from_seq, limit))
    }
    fn index_of(&self, author: &PeerKey, seq: u64) -> arena_core::Result<Option<u64>> {
        each!(self, s => s.index_of(author, seq))
    }
    fn put_admission(&mut self, admission: &Admission) -> arena_core::Result<()> {
        each!(self, s => s.put_admission(admission))
    }
    fn admissions(&self) -> arena_core::Result<Vec<Admission>> {
        each!(self, s => s.admissions())
    }
    fn put_revocation(&mut self, revocation: &arena_core::Revocation) -> arena_core::Result<()> {
        each!(self, s => s.put_revocation(revocation))
    }
    fn revocations(&self) -> arena_core::Result<Vec<arena_core::Revocation>> {
        each!(self, s => s.revocations())
    }
    fn put_delegation(&mut self, delegation: &arena_core::Delegation) -> arena_core::Result<()> {
        each!(self, s => s.put_delegation(delegation))
    }
    fn delegations(&self) -> arena_core::Result<Vec<arena_core::Delegation>> {
        each!(self, s => s.delegations())
    }
    fn put_checkpoint(&mut self, log_index: u64, checkpoint: &Checkpoint) -> arena_core::Result<()> {
        each!(self, s => s.put_checkpoint(log_index, checkpoint))
    }
    fn checkpoints(&self) -> arena_core::Result<Vec<(u64, u64)>> {
        each!(self, s => s.checkpoints())
    }
    fn checkpoint(&self, log_index: u64) -> arena_core::Result<Option<Checkpoint>> {
        each!(self, s => s.checkpoint(log_index))
    }
}
