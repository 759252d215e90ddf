//! The sled implementation of [`Store`].
//!
//! One sled database per data dir, and four trees shared by every room: `room-log` (room ‖
//! index → received time + envelope), `room-authors` (room ‖ author ‖ seq → index),
//! `room-admissions` (room ‖ member → admission) and `room-checkpoints` (room ‖ index →
//! checkpoint), where "room" is the room's **number** on this node: 8 bytes, big-endian,
//! handed out in the order rooms first write (`room-numbers` maps a room's id to it, followed
//! by the application's own record of the room: [`SledDb::set_room_record`]). sled
//! keeps every tree it ever opened in memory for the life of the process (~6 KiB each with
//! its root node), so trees per room would make every room a node has served cost memory
//! until it restarts.
//!
//! Why numbers and not the 32-byte ids (random keys): with the id first, a room's entries
//! sat in as many random leaves as it had entries, each shared with other rooms' entries,
//! so creating or waking one room paged in (and later out) leaves of unrelated, mostly idle
//! rooms. With its number first, a room's entries are next to each other, new rooms append
//! at the end of each tree, and pages of idle rooms stay on disk: the store probe
//! (`benches/src/bin/store-probe.rs`) measures the difference.
//!
//! Older data dirs are moved into this layout by [`SledDb::open`]: four trees per room
//! (`{room hex}/log`, ..., keys without a room prefix), and the shared trees keyed by room
//! id (`log`, `authors`, `admissions`, `checkpoints`). Each is copied, flushed, then dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::delegation::Delegation;
use crate::envelope::Envelope;
use crate::error::{CoreError, Result};
use crate::grant::{Admission, RoomId};
use crate::identity::PeerKey;
use crate::revocation::Revocation;
use crate::store::{LogEntry, Store};

const TREES: [&str; 4] = ["room-log", "room-authors", "room-admissions", "room-checkpoints"];
/// Room id → its number here (8 bytes, big-endian) ‖ the application's record of the room.
const NUMBERS: &str = "room-numbers";
/// The trees of the layout before room numbers (keys start with the 32-byte room id), in
/// [`TREES`] order; also the names of the per-room trees before them (`{room hex}/log`).
const ID_TREES: [&str; 4] = ["log", "authors", "admissions", "checkpoints"];

/// An open sled database holding any number of rooms.
#[derive(Clone, Debug)]
pub struct SledDb {
    db: sled::Db,
    path: PathBuf,
    /// The shared trees, in [`TREES`] order.
    trees: [sled::Tree; 4],
    numbers: sled::Tree,
}

impl SledDb {
    /// Opens (or creates) the database in `dir`, moving rooms kept in an older layout into
    /// this one.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_cache(dir, 1 << 30)
    }

    /// [`Self::open`], waiting up to `wait` while the directory's lock is held: in the same
    /// process sled's flusher thread lets go of it only a moment after the last handle of
    /// an earlier open is dropped (up to its 1 s flush period). Any other error, or the lock
    /// still held after `wait`, fails as [`Self::open`] does.
    pub fn reopen(dir: impl AsRef<Path>, wait: std::time::Duration) -> Result<Self> {
        let until = std::time::Instant::now() + wait;
        loop {
            match Self::open(dir.as_ref()) {
                Err(e) if std::time::Instant::now() < until && e.to_string().contains("acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                res => return res,
            }
        }
    }

    /// [`Self::open`] with sled's page cache limited to `cache_bytes` (sled's default is 1 GiB).
    pub fn open_with_cache(dir: impl AsRef<Path>, cache_bytes: u64) -> Result<Self> {
        let path = dir.as_ref().to_path_buf();
        let db =
            sled::Config::new().path(&path).cache_capacity(cache_bytes).flush_every_ms(Some(1000)).open().map_err(
                |e| CoreError::Storage {
                    context: format!("cannot open sled database in {}", path.display()),
                    source: Box::new(e),
                },
            )?;
        let err = |what: &str, e: sled::Error| CoreError::Storage {
            context: format!("{} ({what})", path.display()),
            source: Box::new(e),
        };
        let open = |name: &str| db.open_tree(name).map_err(|e| err(name, e));
        let trees = [open(TREES[0])?, open(TREES[1])?, open(TREES[2])?, open(TREES[3])?];
        let numbers = open(NUMBERS)?;
        let out = SledDb { db, path, trees, numbers };
        out.migrate()?;
        Ok(out)
    }

    /// Moves every room still in an older layout into this one: per-room trees
    /// (`{room hex}/{tree}`) and the shared trees keyed by room id ([`ID_TREES`]). Each old
    /// tree is copied under the rooms' numbers, the copy flushed, then the old tree dropped.
    /// Idempotent (a number, once given, is kept; copying again writes the same entries),
    /// so an interrupted move is finished by the next open.
    fn migrate(&self) -> Result<()> {
        let mut numbers = HashMap::new();
        let mut dropped = false;
        for name in self.db.tree_names() {
            let Ok(name_str) = std::str::from_utf8(&name) else { continue };
            // (which tree, the room if the tree is one room's)
            let (i, room) = match name_str.split_once('/') {
                Some((room, which)) => match (ID_TREES.iter().position(|t| *t == which), PeerKey::from_hex(room)) {
                    (Some(i), Ok(room)) => (i, Some(room)),
                    _ => continue,
                },
                None => match ID_TREES.iter().position(|t| *t == name_str) {
                    Some(i) => (i, None),
                    None => continue,
                },
            };
            let old = self.db.open_tree(&name).map_err(|e| self.err("old tree", e))?;
            let mut batch = sled::Batch::default();
            for kv in old.iter() {
                let (k, v) = kv.map_err(|e| self.err("old tree", e))?;
                let (room, rest) = match room {
                    Some(r) => (r, &k[..]),
                    None => {
                        let Some((id, rest)) = k.split_first_chunk::<32>() else {
                            return Err(self.corrupt(name_str, "key shorter than a room id"));
                        };
                        (PeerKey(*id), rest)
                    }
                };
                let num = match numbers.get(&room) {
                    Some(n) => *n,
                    None => {
                        let n = self.give_number(&room)?;
                        numbers.insert(room, n);
                        n
                    }
                };
                batch.insert([&num[..], rest].concat(), v);
            }
            self.trees[i].apply_batch(batch).map_err(|e| self.err(TREES[i], e))?;
            // The copy is durable before its source goes.
            self.flush()?;
            self.db.drop_tree(&name).map_err(|e| self.err("old tree", e))?;
            dropped = true;
        }
        if dropped {
            self.flush()?;
        }
        Ok(())
    }

    /// The room's number here, if it has one.
    fn number(&self, room: &RoomId) -> Result<Option<[u8; 8]>> {
        match self.numbers.get(room.0).map_err(|e| self.err("room-numbers", e))? {
            Some(v) => self.read_number(&v).map(Some),
            None => Ok(None),
        }
    }

    /// The room's number, given one (the next of the database's ids) if it has none.
    /// Written before any entry under it, so no crash can keep an entry whose number is lost
    /// (sled recovers a prefix of its log).
    fn give_number(&self, room: &RoomId) -> Result<[u8; 8]> {
        if let Some(n) = self.number(room)? {
            return Ok(n);
        }
        let mine = self.db.generate_id().map_err(|e| self.err("room-numbers", e))?.to_be_bytes();
        // Another store of the same room may give it one at the same moment: the first wins.
        match self.numbers.compare_and_swap(room.0, None as Option<&[u8]>, Some(&mine[..])) {
            Ok(Ok(())) => Ok(mine),
            Ok(Err(cas)) => match cas.current {
                Some(v) => self.read_number(&v),
                None => Err(self.corrupt("room-numbers", "number vanished")),
            },
            Err(e) => Err(self.err("room-numbers", e)),
        }
    }

    /// The number at the start of a `room-numbers` value (the room's record follows it).
    fn read_number(&self, v: &[u8]) -> Result<[u8; 8]> {
        v.first_chunk::<8>().copied().ok_or_else(|| self.corrupt("room-numbers", "a value shorter than a room number"))
    }

    /// Stores the application's own record of a room (a bootstrap node keeps the room's key
    /// and creation time), opaque to the store, in the room's `room-numbers` entry, giving
    /// the room its number if it has none: so a room has one entry keyed by its random id,
    /// and creating or waking a room touches one leaf outside its own keys. Durable after
    /// [`SledDb::flush`]. An empty record reads back as none.
    pub fn set_room_record(&self, room: &RoomId, record: &[u8]) -> Result<()> {
        let mut current = self.numbers.get(room.0).map_err(|e| self.err("room-numbers", e))?;
        loop {
            let num = match &current {
                Some(v) => self.read_number(v)?,
                None => self.db.generate_id().map_err(|e| self.err("room-numbers", e))?.to_be_bytes(),
            };
            let new = [&num[..], record].concat();
            match self.numbers.compare_and_swap(room.0, current.as_ref(), Some(new)) {
                Ok(Ok(())) => return Ok(()),
                // Given a number (or a record) meanwhile: keep the number, write again.
                Ok(Err(cas)) => current = cas.current,
                Err(e) => return Err(self.err("room-numbers", e)),
            }
        }
    }

    /// The record [`Self::set_room_record`] stored, if any.
    pub fn room_record(&self, room: &RoomId) -> Result<Option<Vec<u8>>> {
        match self.numbers.get(room.0).map_err(|e| self.err("room-numbers", e))? {
            Some(v) => {
                self.read_number(&v)?;
                Ok((v.len() > 8).then(|| v[8..].to_vec()))
            }
            None => Ok(None),
        }
    }

    /// How many rooms have a record (one pass over `room-numbers`).
    pub fn room_records(&self) -> usize {
        self.numbers.iter().values().filter(|v| v.as_ref().is_ok_and(|v| v.len() > 8)).count()
    }

    /// Moves the entries of the side tree `tree`, each a record keyed by a room's 32-byte id
    /// (where an application kept its records before [`Self::set_room_record`]), into the
    /// rooms' records, flushes, and drops the tree. Returns how many it moved; none if the
    /// tree does not exist. Idempotent, so an interrupted move is finished by the next call.
    pub fn adopt_room_records(&self, tree: &str) -> Result<usize> {
        if !self.db.tree_names().iter().any(|n| n.as_ref() == tree.as_bytes()) {
            return Ok(0);
        }
        let old = self.db.open_tree(tree).map_err(|e| self.err(tree, e))?;
        let mut moved = 0;
        for kv in old.iter() {
            let (k, v) = kv.map_err(|e| self.err(tree, e))?;
            let id: [u8; 32] = k.as_ref().try_into().map_err(|_| self.corrupt(tree, "a key that is not a room id"))?;
            self.set_room_record(&PeerKey(id), &v)?;
            moved += 1;
        }
        // The copies are durable before their source goes.
        self.flush()?;
        drop(old);
        self.db.drop_tree(tree).map_err(|e| self.err(tree, e))?;
        self.flush()?;
        Ok(moved)
    }

    /// The store of one room. Opening it writes nothing: a room gets its number with its
    /// first entry.
    pub fn room(&self, room: &RoomId) -> Result<SledStore> {
        let [log, authors, admissions, checkpoints] = self.trees.clone();
        let num = self.number(room)?;
        let mut store =
            SledStore { log, authors, admissions, checkpoints, db: self.clone(), room: *room, num, log_len: 0 };
        store.log_len = match num.and_then(|n| store.log.scan_prefix(n).next_back()) {
            Some(kv) => {
                let (k, _) = kv.map_err(|e| self.err("log", e))?;
                store.index(&k)? + 1
            }
            None => 0,
        };
        Ok(store)
    }

    /// Rooms that have a log here, in id order.
    pub fn rooms(&self) -> Vec<RoomId> {
        let mut out = Vec::new();
        for kv in self.numbers.iter() {
            let Ok((id, value)) = kv else { break };
            let (Ok(id), Some(num)) = (<[u8; 32]>::try_from(&id[..]), value.first_chunk::<8>()) else { continue };
            if matches!(self.trees[0].scan_prefix(num).next(), Some(Ok(_))) {
                out.push(PeerKey(id));
            }
        }
        out
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

    /// sled (or a decoder of what it holds) failed.
    fn err(&self, what: &str, e: impl std::error::Error + Send + Sync + 'static) -> CoreError {
        CoreError::Storage { context: format!("{} ({what})", self.path.display()), source: Box::new(e) }
    }

    /// The database holds something this code did not write.
    fn corrupt(&self, what: &str, why: impl std::fmt::Display) -> CoreError {
        CoreError::Store(format!("{} ({what}): {why}", self.path.display()))
    }
}

fn be_u64(b: &[u8]) -> std::result::Result<u64, &'static str> {
    let arr: [u8; 8] = b.try_into().map_err(|_| "key is not 8 bytes")?;
    Ok(u64::from_be_bytes(arr))
}

/// One room's part of a [`SledDb`]'s shared trees.
#[derive(Debug)]
pub struct SledStore {
    db: SledDb,
    room: RoomId,
    /// The room's number, the first 8 bytes of its keys; None until its first entry.
    num: Option<[u8; 8]>,
    log: sled::Tree,
    authors: sled::Tree,
    admissions: sled::Tree,
    checkpoints: sled::Tree,
    log_len: u64,
}

impl SledStore {
    fn err(&self, what: &str, e: impl std::error::Error + Send + Sync + 'static) -> CoreError {
        self.db.err(&format!("room {} {what}", &self.room.to_hex()[..12]), e)
    }

    fn corrupt(&self, what: &str, why: impl std::fmt::Display) -> CoreError {
        self.db.corrupt(&format!("room {} {what}", &self.room.to_hex()[..12]), why)
    }

    /// The key prefix for a write: the room's number, given one now if it has none.
    fn writing(&mut self) -> Result<[u8; 8]> {
        if let Some(n) = self.num {
            return Ok(n);
        }
        let n = self.db.give_number(&self.room)?;
        self.num = Some(n);
        Ok(n)
    }

    /// `room ‖ index`: a key of `log` and of `checkpoints`.
    fn indexed(num: [u8; 8], index: u64) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&num);
        k[8..].copy_from_slice(&index.to_be_bytes());
        k
    }

    /// The index in a `log` or `checkpoints` key.
    fn index(&self, key: &[u8]) -> Result<u64> {
        self.num
            .and_then(|n| key.strip_prefix(&n[..]))
            .ok_or("key of another room")
            .and_then(be_u64)
            .map_err(|e| self.corrupt("log key", e))
    }

    fn author_key(num: [u8; 8], author: &PeerKey, seq: u64) -> [u8; 48] {
        let mut k = [0u8; 48];
        k[..8].copy_from_slice(&num);
        k[8..40].copy_from_slice(&author.0);
        k[40..].copy_from_slice(&seq.to_be_bytes());
        k
    }

    fn entry(&self, key: &[u8], value: &[u8]) -> Result<LogEntry> {
        let index = self.index(key)?;
        if value.len() < 8 {
            return Err(self.corrupt("log entry", "truncated"));
        }
        let received_ms = be_u64(&value[..8]).map_err(|e| self.corrupt("log entry", e))?;
        let envelope =
            Envelope::decode(&value[8..], self.room).map_err(|e| self.err(&format!("log entry {index}"), e))?;
        Ok(LogEntry { index, received_ms, envelope })
    }
}

impl Store for SledStore {
    fn append(&mut self, envelope: &Envelope, received_ms: u64) -> Result<u64> {
        let num = self.writing()?;
        let index = self.log_len;
        let mut value = Vec::with_capacity(envelope.update.len() + 160);
        value.extend_from_slice(&received_ms.to_be_bytes());
        value.extend_from_slice(&envelope.encode());
        self.log.insert(Self::indexed(num, index), value).map_err(|e| self.err("log", e))?;
        self.authors
            .insert(Self::author_key(num, &envelope.author, envelope.seq), &index.to_be_bytes())
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
        let Some(num) = self.num else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(to.min(self.log_len).saturating_sub(from) as usize);
        for kv in self.log.range(Self::indexed(num, from)..Self::indexed(num, to)) {
            let (k, v) = kv.map_err(|e| self.err("log", e))?;
            out.push(self.entry(&k, &v)?);
        }
        Ok(out)
    }

    fn author_envelopes(&self, author: &PeerKey, from_seq: u64, limit: usize) -> Result<Vec<Envelope>> {
        let Some(num) = self.num else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        let range = Self::author_key(num, author, from_seq)..=Self::author_key(num, author, u64::MAX);
        for kv in self.authors.range(range).take(limit) {
            let (_, idx) = kv.map_err(|e| self.err("authors", e))?;
            let key = Self::indexed(num, be_u64(&idx).map_err(|e| self.corrupt("authors", e))?);
            let v = self
                .log
                .get(key)
                .map_err(|e| self.err("log", e))?
                .ok_or_else(|| self.corrupt("authors", "points past the log"))?;
            out.push(self.entry(&key, &v)?.envelope);
        }
        Ok(out)
    }

    fn index_of(&self, author: &PeerKey, seq: u64) -> Result<Option<u64>> {
        let Some(num) = self.num else { return Ok(None) };
        match self.authors.get(Self::author_key(num, author, seq)).map_err(|e| self.err("authors", e))? {
            Some(v) => Ok(Some(be_u64(&v).map_err(|e| self.corrupt("authors", e))?)),
            None => Ok(None),
        }
    }

    fn put_admission(&mut self, admission: &Admission) -> Result<()> {
        let num = self.writing()?;
        self.admissions
            .insert([&num[..], &admission.member.0].concat(), admission.encode())
            .map_err(|e| self.err("admissions", e))?;
        Ok(())
    }

    fn admissions(&self) -> Result<Vec<Admission>> {
        let Some(num) = self.num else { return Ok(Vec::new()) };
        self.admissions
            .scan_prefix(num)
            .filter(|kv| kv.as_ref().map_or(true, |(k, _)| k.len() == 8 + 32))
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.err("admissions", e))?;
                Admission::decode(&v).map_err(|e| self.err("admissions", e))
            })
            .collect()
    }

    /// Kept beside the room's admissions, under `room ‖ 0xff ‖ target` (41 bytes, where an
    /// admission's key is 40): one tree fewer, and a room's trust records stay together.
    fn put_revocation(&mut self, revocation: &Revocation) -> Result<()> {
        let num = self.writing()?;
        let key = [&num[..], &[0xff], &revocation.target.0].concat();
        self.admissions.insert(key, revocation.encode()).map_err(|e| self.err("revocations", e))?;
        Ok(())
    }

    fn revocations(&self) -> Result<Vec<Revocation>> {
        let Some(num) = self.num else { return Ok(Vec::new()) };
        self.admissions
            .scan_prefix([&num[..], &[0xff]].concat())
            .filter(|kv| kv.as_ref().map_or(true, |(k, _)| k.len() == 8 + 1 + 32))
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.err("revocations", e))?;
                Revocation::decode(&v, self.room).map_err(|e| self.err("revocations", e))
            })
            .collect()
    }

    /// Kept beside the room's admissions too, under `room ‖ 0xfe ‖ invite key` (41 bytes).
    fn put_delegation(&mut self, delegation: &Delegation) -> Result<()> {
        let num = self.writing()?;
        let key = [&num[..], &[0xfe], &delegation.key().0].concat();
        self.admissions.insert(key, delegation.encode()).map_err(|e| self.err("delegations", e))?;
        Ok(())
    }

    fn delegations(&self) -> Result<Vec<Delegation>> {
        let Some(num) = self.num else { return Ok(Vec::new()) };
        self.admissions
            .scan_prefix([&num[..], &[0xfe]].concat())
            .filter(|kv| kv.as_ref().map_or(true, |(k, _)| k.len() == 8 + 1 + 32))
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.err("delegations", e))?;
                Delegation::decode(&v).map_err(|e| self.err("delegations", e))
            })
            .collect()
    }

    fn put_checkpoint(&mut self, log_index: u64, checkpoint: &Checkpoint) -> Result<()> {
        let num = self.writing()?;
        self.checkpoints
            .insert(Self::indexed(num, log_index), checkpoint.encode())
            .map_err(|e| self.err("checkpoints", e))?;
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<(u64, u64)>> {
        let Some(num) = self.num else { return Ok(Vec::new()) };
        self.checkpoints
            .scan_prefix(num)
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.err("checkpoints", e))?;
                let idx = self.index(&k)?;
                let at_ms = Checkpoint::peek_at_ms(&v).map_err(|e| self.err("checkpoints", e))?;
                Ok((idx, at_ms))
            })
            .collect()
    }

    fn checkpoint(&self, log_index: u64) -> Result<Option<Checkpoint>> {
        let Some(num) = self.num else { return Ok(None) };
        match self.checkpoints.get(Self::indexed(num, log_index)).map_err(|e| self.err("checkpoints", e))? {
            Some(v) => Checkpoint::decode(&v, self.room).map(Some).map_err(|e| self.err("checkpoints", e)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::{Invite, Role};
    use crate::identity::Identity;

    /// A database that cannot be opened is an error naming the path, with sled's error kept
    /// as its source.
    #[test]
    fn an_engine_failure_keeps_its_source() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x")?;
        let Err(err) = SledDb::open(&file) else { return Err("a file opened as a database".into()) };
        assert!(matches!(err, CoreError::Storage { .. }), "{err:?}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
        Ok(())
    }

    /// Opens the database again in this process (see [`SledDb::reopen`]).
    fn reopen(dir: &Path) -> SledDb {
        SledDb::reopen(dir, std::time::Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("reopening {}: {e}", dir.display()))
    }

    /// A room's worth of store content: two envelopes by one author, an admission, a
    /// checkpoint.
    fn fill(store: &mut SledStore, room_key: &Identity, author: &Identity, text: &str) -> Vec<Envelope> {
        let room = room_key.public();
        let envs: Vec<Envelope> = (0..2)
            .map(|seq| {
                // The second names a delegation (a v2 envelope): both forms read back.
                let via = (seq == 1).then(|| room_key.public());
                Envelope::seal_via(room, author, seq, [0; 32], 1, via, format!("{text}{seq}").into_bytes())
            })
            .collect();
        for (i, e) in envs.iter().enumerate() {
            store.append(e, 1000 + i as u64).unwrap();
        }
        let invite = Invite::issue(room_key, Role::Candidate, u64::MAX / 2, 0, 1);
        store.put_admission(&Admission::sign(author, &invite, text, 5)).unwrap();
        store.put_delegation(&crate::Delegation::sign(&invite)).unwrap();
        store.put_checkpoint(2, &Checkpoint::seal(room, Vec::new(), vec![1, 2], vec![3], 77, room_key)).unwrap();
        store.flush().unwrap();
        envs
    }

    fn check(store: &SledStore, author: &Identity, envs: &[Envelope], name: &str) {
        assert_eq!(store.log_len(), 2);
        let log = store.log_range(0, u64::MAX).unwrap();
        assert_eq!(log.iter().map(|e| &e.envelope).collect::<Vec<_>>(), envs.iter().collect::<Vec<_>>());
        assert_eq!(log.iter().map(|e| (e.index, e.received_ms)).collect::<Vec<_>>(), vec![(0, 1000), (1, 1001)]);
        assert_eq!(store.log_range(1, 2).unwrap().len(), 1);
        assert_eq!(store.author_envelopes(&author.public(), 1, 10).unwrap(), envs[1..].to_vec());
        assert_eq!(store.index_of(&author.public(), 1).unwrap(), Some(1));
        assert_eq!(store.index_of(&author.public(), 2).unwrap(), None);
        let adms = store.admissions().unwrap();
        assert_eq!(adms.len(), 1);
        assert_eq!(adms[0].name, name);
        let dels = store.delegations().unwrap();
        assert_eq!(dels.len(), 1);
        assert_eq!(dels[0].key(), adms[0].grant.invite);
        assert!(store.revocations().unwrap().is_empty());
        assert_eq!(store.checkpoints().unwrap(), vec![(2, 77)]);
        assert_eq!(store.checkpoint(2).unwrap().unwrap().state, vec![1, 2]);
        assert!(store.checkpoint(1).unwrap().is_none());
    }

    #[test]
    fn rooms_share_the_trees_without_seeing_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let (ka, kb, author) =
            (Identity::from_passphrase("room a"), Identity::from_passphrase("room b"), Identity::from_passphrase("w"));
        let (ea, eb) = {
            let db = SledDb::open(dir.path()).unwrap();
            assert!(db.rooms().is_empty());
            let ea = fill(&mut db.room(&ka.public()).unwrap(), &ka, &author, "in a");
            let eb = fill(&mut db.room(&kb.public()).unwrap(), &kb, &author, "in b");
            (ea, eb)
        };
        let db = reopen(dir.path());
        let mut want = vec![ka.public(), kb.public()];
        want.sort();
        assert_eq!(db.rooms(), want);
        check(&db.room(&ka.public()).unwrap(), &author, &ea, "in a");
        check(&db.room(&kb.public()).unwrap(), &author, &eb, "in b");
        // A room with nothing stored sees nothing of theirs.
        let empty = db.room(&Identity::from_passphrase("room c").public()).unwrap();
        assert_eq!((empty.log_len(), empty.admissions().unwrap().len()), (0, 0));
        assert!(empty.checkpoints().unwrap().is_empty());
        assert_eq!(db.rooms().len(), 2);
    }

    /// With a page cache far smaller than the data (`--store-cache-mb`), rooms read back
    /// whole: sled pages the rest out to disk and in again.
    #[test]
    fn a_small_page_cache_still_reads_every_room_back() {
        let dir = tempfile::tempdir().unwrap();
        let author = Identity::from_passphrase("w");
        let keys: Vec<Identity> = (0..300).map(|i| Identity::from_passphrase(&format!("room {i}"))).collect();
        // ~300 KB of entries (signatures, keys, checkpoints) through a 64 KiB cache.
        let db = SledDb::open_with_cache(dir.path(), 64 * 1024).unwrap();
        let envs: Vec<Vec<Envelope>> =
            keys.iter().map(|k| fill(&mut db.room(&k.public()).unwrap(), k, &author, "some name")).collect();
        for (k, e) in keys.iter().zip(&envs) {
            check(&db.room(&k.public()).unwrap(), &author, e, "some name");
        }
        assert_eq!(db.rooms().len(), 300);
    }

    /// Writes `db`'s rooms as an older layout stored them and empties this one: per room,
    /// four trees keyed without a room prefix (`per_room`), or the four shared trees keyed
    /// by room id.
    fn rewrite_as_old_layout(db: &SledDb, rooms: &[RoomId], per_room: bool) {
        for room in rooms {
            let num = db.number(room).unwrap().expect("a room with entries has a number");
            for (i, name) in ID_TREES.iter().enumerate() {
                let old = if per_room {
                    db.db.open_tree(format!("{}/{name}", room.to_hex())).unwrap()
                } else {
                    db.db.open_tree(name).unwrap()
                };
                for kv in db.trees[i].scan_prefix(num) {
                    let (k, v) = kv.unwrap();
                    let key = if per_room { k[8..].to_vec() } else { [&room.0[..], &k[8..]].concat() };
                    old.insert(key, v).unwrap();
                }
            }
        }
        for t in &db.trees {
            t.clear().unwrap();
        }
        db.numbers.clear().unwrap();
        db.flush().unwrap();
    }

    /// Data dirs of both older layouts open with every entry in place, under room numbers,
    /// and the old trees gone; opening again changes nothing.
    #[test]
    fn older_layouts_are_moved_into_room_numbers() {
        for per_room in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let author = Identity::from_passphrase("w");
            let keys = [Identity::from_passphrase("old room"), Identity::from_passphrase("other old room")];
            let rooms: Vec<RoomId> = keys.iter().map(|k| k.public()).collect();
            let envs: Vec<Vec<Envelope>> = {
                let db = SledDb::open(dir.path()).unwrap();
                let envs = keys.iter().map(|k| fill(&mut db.room(&k.public()).unwrap(), k, &author, "old")).collect();
                rewrite_as_old_layout(&db, &rooms, per_room);
                assert!(db.rooms().is_empty(), "the new layout was not emptied");
                envs
            };
            let mut numbers = Vec::new();
            for _ in 0..2 {
                let db = reopen(dir.path());
                let names = db.db.tree_names();
                assert!(
                    names.iter().all(|n| !n.ends_with(b"log") || n.as_ref() == b"room-log"),
                    "old trees left ({})",
                    if per_room { "per room" } else { "keyed by id" }
                );
                let mut want = rooms.clone();
                want.sort();
                assert_eq!(db.rooms(), want);
                for (k, e) in keys.iter().zip(&envs) {
                    check(&db.room(&k.public()).unwrap(), &author, e, "old");
                }
                let now: Vec<_> = rooms.iter().map(|r| db.number(r).unwrap().unwrap()).collect();
                assert_ne!(now[0], now[1]);
                if !numbers.is_empty() {
                    assert_eq!(numbers, now, "the second open gave other numbers");
                }
                numbers = now;
            }
        }
    }

    /// Opening a room's store writes nothing; its first entry gives it a number, kept across
    /// restarts, and a second store of the same room (opened before the number was given)
    /// writes under the same one.
    #[test]
    fn a_room_gets_its_number_with_its_first_entry_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let (k, author) = (Identity::from_passphrase("numbered"), Identity::from_passphrase("w"));
        let room = k.public();
        let env = Envelope::seal(room, &author, 0, [0; 32], 1, b"first".to_vec());
        let num = {
            let db = SledDb::open(dir.path()).unwrap();
            let mut first = db.room(&room).unwrap();
            let mut second = db.room(&room).unwrap();
            assert_eq!(db.number(&room).unwrap(), None, "opening a store gave a number");
            assert!(db.rooms().is_empty());
            first.append(&env, 5).unwrap();
            let invite = Invite::issue(&k, Role::Candidate, u64::MAX / 2, 0, 1);
            second.put_admission(&Admission::sign(&author, &invite, "late", 5)).unwrap();
            assert_eq!(first.num, second.num);
            second.flush().unwrap();
            first.num.unwrap()
        };
        let db = reopen(dir.path());
        assert_eq!(db.number(&room).unwrap(), Some(num));
        let store = db.room(&room).unwrap();
        assert_eq!(store.log_len(), 1);
        assert_eq!(store.admissions().unwrap().len(), 1);
        assert_eq!(db.rooms(), vec![room]);
        // A room numbered after a restart gets a number of its own.
        let after = Identity::from_passphrase("after").public();
        let mut other = db.room(&after).unwrap();
        other.append(&Envelope::seal(after, &author, 0, [0; 32], 1, b"x".to_vec()), 6).unwrap();
        assert_ne!(other.num, Some(num));
    }

    /// A room's record lives in its `room-numbers` entry: setting it gives the room a
    /// number its entries then use, setting it again keeps the number, and records kept in
    /// a side tree keyed by room id are adopted once.
    #[test]
    fn room_records_share_the_rooms_number_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (k, author) = (Identity::from_passphrase("recorded"), Identity::from_passphrase("w"));
        let room = k.public();
        let db = SledDb::open(dir.path()).unwrap();
        assert_eq!(db.room_record(&room).unwrap(), None);
        db.set_room_record(&room, b"first").unwrap();
        let num = db.number(&room).unwrap().expect("a record gives a number");
        let mut store = db.room(&room).unwrap();
        store.append(&Envelope::seal(room, &author, 0, [0; 32], 1, b"x".to_vec()), 1).unwrap();
        assert_eq!(store.num, Some(num));
        db.set_room_record(&room, b"second, longer").unwrap();
        assert_eq!(db.number(&room).unwrap(), Some(num));
        assert_eq!(db.room_record(&room).unwrap().as_deref(), Some(&b"second, longer"[..]));
        // A room numbered by its entries alone has no record.
        let plain = Identity::from_passphrase("plain").public();
        db.room(&plain).unwrap().append(&Envelope::seal(plain, &author, 0, [0; 32], 1, b"y".to_vec()), 1).unwrap();
        assert_eq!(db.room_record(&plain).unwrap(), None);
        assert_eq!((db.room_records(), db.rooms().len()), (1, 2));
        // Records a side tree kept: adopted, the tree dropped; a second call finds none.
        let old = [Identity::from_passphrase("old 1").public(), room];
        db.put("node/rooms", &old[0].0, b"adopted").unwrap();
        db.put("node/rooms", &old[1].0, b"from the side tree").unwrap();
        assert_eq!(db.adopt_room_records("node/rooms").unwrap(), 2);
        assert_eq!(db.adopt_room_records("node/rooms").unwrap(), 0);
        assert!(!db.db.tree_names().iter().any(|n| n.as_ref() == b"node/rooms"));
        assert_eq!(db.number(&room).unwrap(), Some(num), "adopting changed a number");
        drop((store, db));
        let db = reopen(dir.path());
        assert_eq!(db.room_record(&old[0]).unwrap().as_deref(), Some(&b"adopted"[..]));
        assert_eq!(db.room_record(&room).unwrap().as_deref(), Some(&b"from the side tree"[..]));
        assert_eq!(db.room(&room).unwrap().log_len(), 1);
        assert_eq!(db.room_records(), 2);
        // Bad input: a side-tree key that is not a room id, a number entry cut short.
        db.put("bad/rooms", b"short key", b"r").unwrap();
        assert!(db.adopt_room_records("bad/rooms").unwrap_err().to_string().contains("not a room id"));
        db.numbers.insert(room.0, &b"abc"[..]).unwrap();
        assert!(db.room(&room).unwrap_err().to_string().contains("shorter than a room number"));
        assert!(db.room_record(&room).is_err());
    }
}
