//! The sled implementation of [`Store`].
//!
//! One sled database per data dir; per room four trees named `{room}/log` (index →
//! received time + envelope), `{room}/authors` (author ‖ seq → index), `{room}/admissions`
//! and `{room}/checkpoints` (index → checkpoint).

use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::envelope::Envelope;
use crate::error::{CoreError, Result};
use crate::grant::{Admission, RoomId};
use crate::identity::PeerKey;
use crate::store::{LogEntry, Store};

/// An open sled database holding any number of rooms.
#[derive(Clone, Debug)]
pub struct SledDb {
    db: sled::Db,
    path: PathBuf,
}

impl SledDb {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().to_path_buf();
        let db = sled::Config::new()
            .path(&path)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| CoreError::Store(format!("cannot open sled database in {}: {e}", path.display())))?;
        Ok(SledDb { db, path })
    }

    /// The store of one room.
    pub fn room(&self, room: &RoomId) -> Result<SledStore> {
        let tree = |name: &str| {
            let full = format!("{}/{name}", room.to_hex());
            self.db.open_tree(&full).map_err(|e| self.err(&full, e))
        };
        let log = tree("log")?;
        let log_len = match log.last().map_err(|e| self.err("log", e))? {
            Some((k, _)) => be_u64(&k).map_err(|e| self.err("log key", e))? + 1,
            None => 0,
        };
        Ok(SledStore {
            log,
            authors: tree("authors")?,
            admissions: tree("admissions")?,
            checkpoints: tree("checkpoints")?,
            db: self.clone(),
            room: *room,
            log_len,
        })
    }

    /// Rooms that have a log here.
    pub fn rooms(&self) -> Vec<RoomId> {
        let mut v: Vec<RoomId> = self
            .db
            .tree_names()
            .iter()
            .filter_map(|n| std::str::from_utf8(n).ok()?.strip_suffix("/log").map(str::to_owned))
            .filter_map(|h| PeerKey::from_hex(&h).ok())
            .collect();
        v.sort();
        v
    }

    /// Stores `value` under `key` in the named side tree (node-level data: room keys,
    /// settings). Durable after [`SledDb::flush`].
    pub fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let t = self.db.open_tree(tree).map_err(|e| self.err(tree, e))?;
        t.insert(key, value).map_err(|e| self.err(tree, e))?;
        Ok(())
    }

    /// Reads `key` from the named side tree.
    pub fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let t = self.db.open_tree(tree).map_err(|e| self.err(tree, e))?;
        Ok(t.get(key).map_err(|e| self.err(tree, e))?.map(|v| v.to_vec()))
    }

    /// Number of entries in the named side tree.
    pub fn count(&self, tree: &str) -> Result<usize> {
        let t = self.db.open_tree(tree).map_err(|e| self.err(tree, e))?;
        Ok(t.len())
    }

    /// Flushes everything to disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| self.err("database", e))
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> CoreError {
        CoreError::Store(format!("{} ({what}): {e}", self.path.display()))
    }
}

fn be_u64(b: &[u8]) -> std::result::Result<u64, &'static str> {
    let arr: [u8; 8] = b.try_into().map_err(|_| "key is not 8 bytes")?;
    Ok(u64::from_be_bytes(arr))
}

/// One room's trees in a [`SledDb`].
#[derive(Debug)]
pub struct SledStore {
    db: SledDb,
    room: RoomId,
    log: sled::Tree,
    authors: sled::Tree,
    admissions: sled::Tree,
    checkpoints: sled::Tree,
    log_len: u64,
}

impl SledStore {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> CoreError {
        self.db.err(&format!("room {} {what}", &self.room.to_hex()[..12]), e)
    }

    fn entry(&self, key: &[u8], value: &[u8]) -> Result<LogEntry> {
        let index = be_u64(key).map_err(|e| self.err("log key", e))?;
        if value.len() < 8 {
            return Err(self.err("log entry", "truncated"));
        }
        let received_ms = be_u64(&value[..8]).map_err(|e| self.err("log entry", e))?;
        let envelope =
            Envelope::decode(&value[8..], self.room).map_err(|e| self.err(&format!("log entry {index}"), e))?;
        Ok(LogEntry { index, received_ms, envelope })
    }
}

fn author_key(author: &PeerKey, seq: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&author.0);
    k[32..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl Store for SledStore {
    fn append(&mut self, envelope: &Envelope, received_ms: u64) -> Result<u64> {
        let index = self.log_len;
        let mut value = Vec::with_capacity(envelope.update.len() + 160);
        value.extend_from_slice(&received_ms.to_be_bytes());
        value.extend_from_slice(&envelope.encode());
        self.log.insert(index.to_be_bytes(), value).map_err(|e| self.err("log", e))?;
        self.authors
            .insert(author_key(&envelope.author, envelope.seq), &index.to_be_bytes())
            .map_err(|e| self.err("authors", e))?;
        self.log_len += 1;
        Ok(index)
    }

    fn flush(&mut self) -> Result<()> {
        self.db.flush()
    }

    fn log_len(&self) -> u64 {
        self.log_len
    }

    fn log_range(&self, from: u64, to: u64) -> Result<Vec<LogEntry>> {
        let mut out = Vec::with_capacity(to.min(self.log_len).saturating_sub(from) as usize);
        for kv in self.log.range(from.to_be_bytes()..to.to_be_bytes()) {
            let (k, v) = kv.map_err(|e| self.err("log", e))?;
            out.push(self.entry(&k, &v)?);
        }
        Ok(out)
    }

    fn author_envelopes(&self, author: &PeerKey, from_seq: u64, limit: usize) -> Result<Vec<Envelope>> {
        let mut out = Vec::new();
        for kv in self.authors.range(author_key(author, from_seq)..=author_key(author, u64::MAX)).take(limit) {
            let (_, idx) = kv.map_err(|e| self.err("authors", e))?;
            let v = self
                .log
                .get(&idx)
                .map_err(|e| self.err("log", e))?
                .ok_or_else(|| self.err("authors", "points past the log"))?;
            out.push(self.entry(&idx, &v)?.envelope);
        }
        Ok(out)
    }

    fn index_of(&self, author: &PeerKey, seq: u64) -> Result<Option<u64>> {
        match self.authors.get(author_key(author, seq)).map_err(|e| self.err("authors", e))? {
            Some(v) => Ok(Some(be_u64(&v).map_err(|e| self.err("authors", e))?)),
            None => Ok(None),
        }
    }

    fn put_admission(&mut self, admission: &Admission) -> Result<()> {
        self.admissions.insert(admission.member.0, admission.encode()).map_err(|e| self.err("admissions", e))?;
        Ok(())
    }

    fn admissions(&self) -> Result<Vec<Admission>> {
        self.admissions
            .iter()
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.err("admissions", e))?;
                Admission::decode(&v).map_err(|e| self.err("admissions", e))
            })
            .collect()
    }

    fn put_checkpoint(&mut self, log_index: u64, checkpoint: &Checkpoint) -> Result<()> {
        self.checkpoints
            .insert(log_index.to_be_bytes(), checkpoint.encode())
            .map_err(|e| self.err("checkpoints", e))?;
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<(u64, u64)>> {
        self.checkpoints
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.err("checkpoints", e))?;
                let idx = be_u64(&k).map_err(|e| self.err("checkpoint key", e))?;
                let at_ms = Checkpoint::peek_at_ms(&v).map_err(|e| self.err("checkpoints", e))?;
                Ok((idx, at_ms))
            })
            .collect()
    }

    fn checkpoint(&self, log_index: u64) -> Result<Option<Checkpoint>> {
        match self.checkpoints.get(log_index.to_be_bytes()).map_err(|e| self.err("checkpoints", e))? {
            Some(v) => Checkpoint::decode(&v, self.room).map(Some).map_err(|e| self.err("checkpoints", e)),
            None => Ok(None),
        }
    }
}
