//! Persistence behind a trait: the envelope log, admissions and checkpoints of one room.
//!
//! The log is in local receive order (causal on this replica), indexed from 0; checkpoints
//! are keyed by the log index they cover up to. [`MemoryStore`] is for the browser and
//! tests; [`SledStore`] (feature `store`) for native peers and the bootstrap node.
//!
//! Flush policy: [`Store::append`] is not durable on its own. A replica acknowledges an
//! envelope (to its author, a recorder, a client) only after [`Store::flush`] returned, and
//! `flush` writes and fsyncs everything appended before it. Batching several appends per
//! flush (group commit) is how the node stays fast; a kill -9 loses nothing acknowledged.

#[cfg(feature = "store")]
mod sled_store;

use crate::checkpoint::Checkpoint;
use crate::delegation::Delegation;
use crate::envelope::Envelope;
use crate::error::{CoreError, Result};
use crate::grant::Admission;
use crate::identity::PeerKey;
use crate::revocation::Revocation;

#[cfg(feature = "store")]
pub use sled_store::{SledDb, SledStore};

/// One entry of the envelope log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in this replica's log.
    pub index: u64,
    /// When this replica received (or wrote) it, unix milliseconds.
    pub received_ms: u64,
    /// The envelope.
    pub envelope: Envelope,
}

/// Where a room's history is kept.
pub trait Store {
    /// Appends an envelope to the log; returns its index. Durable after [`Store::flush`].
    fn append(&mut self, envelope: &Envelope, received_ms: u64) -> Result<u64>;
    /// Makes everything appended so far durable.
    fn flush(&mut self) -> Result<()>;
    /// Number of log entries.
    fn log_len(&self) -> u64;
    /// Log entries with `from <= index < to`.
    fn log_range(&self, from: u64, to: u64) -> Result<Vec<LogEntry>>;
    /// The author's envelopes with `seq >= from_seq`, in order, at most `limit`.
    fn author_envelopes(&self, author: &PeerKey, from_seq: u64, limit: usize) -> Result<Vec<Envelope>>;
    /// The log index of the author's envelope `seq`.
    fn index_of(&self, author: &PeerKey, seq: u64) -> Result<Option<u64>>;
    /// Stores an admission.
    fn put_admission(&mut self, admission: &Admission) -> Result<()>;
    /// Every stored admission.
    fn admissions(&self) -> Result<Vec<Admission>>;
    /// Stores a checkpoint covering the log up to (excluding) `log_index`.
    fn put_checkpoint(&mut self, log_index: u64, checkpoint: &Checkpoint) -> Result<()>;
    /// Stores a revocation (after the ledger accepted it). A store that cannot keep one
    /// says so: a revocation lost on reopen would let a removed member back in.
    fn put_revocation(&mut self, revocation: &Revocation) -> Result<()> {
        let _ = revocation;
        Err(CoreError::Store("this store keeps no revocations".into()))
    }
    /// Every stored revocation.
    fn revocations(&self) -> Result<Vec<Revocation>> {
        Ok(Vec::new())
    }
    /// Stores a stock client's delegation (after the ledger accepted it). A store that cannot
    /// keep one says so: without it a reopened replica could not hand late joiners what
    /// its log's `via` envelopes name.
    fn put_delegation(&mut self, delegation: &Delegation) -> Result<()> {
        let _ = delegation;
        Err(CoreError::Store("this store keeps no delegations".into()))
    }
    /// Every stored delegation.
    fn delegations(&self) -> Result<Vec<Delegation>> {
        Ok(Vec::new())
    }
    /// `(log_index, at_ms)` of every checkpoint, ascending.
    fn checkpoints(&self) -> Result<Vec<(u64, u64)>>;
    /// The checkpoint stored at `log_index`.
    fn checkpoint(&self, log_index: u64) -> Result<Option<Checkpoint>>;
}

/// An in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    log: Vec<LogEntry>,
    by_author: std::collections::HashMap<PeerKey, Vec<u64>>,
    admissions: Vec<Admission>,
    revocations: Vec<Revocation>,
    delegations: Vec<Delegation>,
    /// By log index, ascending (a sorted `Vec`: smaller in the WASM module than a map).
    checkpoints: Vec<(u64, Checkpoint)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn append(&mut self, envelope: &Envelope, received_ms: u64) -> Result<u64> {
        let index = self.log.len() as u64;
        let v = self.by_author.entry(envelope.author).or_default();
        // Kept in seq order: history fetched later (backfill) is appended below the rest.
        let log = &self.log;
        let at = v.partition_point(|&i| log[i as usize].envelope.seq < envelope.seq);
        v.insert(at, index);
        self.log.push(LogEntry { index, received_ms, envelope: envelope.clone() });
        Ok(index)
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn log_len(&self) -> u64 {
        self.log.len() as u64
    }

    fn log_range(&self, from: u64, to: u64) -> Result<Vec<LogEntry>> {
        let to = (to as usize).min(self.log.len());
        let from = (from as usize).min(to);
        Ok(self.log[from..to].to_vec())
    }

    fn author_envelopes(&self, author: &PeerKey, from_seq: u64, limit: usize) -> Result<Vec<Envelope>> {
        let Some(idx) = self.by_author.get(author) else { return Ok(Vec::new()) };
        let start = idx.partition_point(|&i| self.log[i as usize].envelope.seq < from_seq);
        Ok(idx[start..].iter().take(limit).map(|&i| self.log[i as usize].envelope.clone()).collect())
    }

    fn index_of(&self, author: &PeerKey, seq: u64) -> Result<Option<u64>> {
        let Some(v) = self.by_author.get(author) else { return Ok(None) };
        let at = v.partition_point(|&i| self.log[i as usize].envelope.seq < seq);
        Ok(v.get(at).copied().filter(|&i| self.log[i as usize].envelope.seq == seq))
    }

    fn put_admission(&mut self, admission: &Admission) -> Result<()> {
        self.admissions.retain(|a| a.member != admission.member);
        self.admissions.push(admission.clone());
        Ok(())
    }

    fn admissions(&self) -> Result<Vec<Admission>> {
        Ok(self.admissions.clone())
    }

    fn put_revocation(&mut self, revocation: &Revocation) -> Result<()> {
        self.revocations.push(revocation.clone());
        Ok(())
    }

    fn revocations(&self) -> Result<Vec<Revocation>> {
        Ok(self.revocations.clone())
    }

    fn put_delegation(&mut self, delegation: &Delegation) -> Result<()> {
        self.delegations.retain(|d| d.key() != delegation.key());
        self.delegations.push(delegation.clone());
        Ok(())
    }

    fn delegations(&self) -> Result<Vec<Delegation>> {
        Ok(self.delegations.clone())
    }

    fn put_checkpoint(&mut self, log_index: u64, checkpoint: &Checkpoint) -> Result<()> {
        match self.checkpoints.binary_search_by_key(&log_index, |(i, _)| *i) {
            Ok(i) => self.checkpoints[i].1 = checkpoint.clone(),
            Err(i) => self.checkpoints.insert(i, (log_index, checkpoint.clone())),
        }
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<(u64, u64)>> {
        Ok(self.checkpoints.iter().map(|(i, c)| (*i, c.at_ms)).collect())
    }

    fn checkpoint(&self, log_index: u64) -> Result<Option<Checkpoint>> {
        let found = self.checkpoints.binary_search_by_key(&log_index, |(i, _)| *i).ok();
        Ok(found.map(|i| self.checkpoints[i].1.clone()))
    }
}
