//! The sled implementation of [`Store`].
//!
//! One sled database per data dir, and four trees shared by every room, each key starting
//! with the room's 32-byte id: `log` (room ‖ index → received time + envelope), `authors`
//! (room ‖ author ‖ seq → index), `admissions` (room ‖ member → admission) and
//! `checkpoints` (room ‖ index → checkpoint). sled keeps every tree it ever opened in
//! memory for the life of the process (~6 KiB each with its root node), so trees per room
//! would make every room a node has served cost memory until it restarts.
//!
//! Data dirs written before this layout had four trees per room (`{room hex}/log`, ...,
//! with the same keys minus the room prefix); [`SledDb::open`] moves them into the shared
//! trees (prefixing each key) and drops them.

use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::envelope::Envelope;
use crate::error::{CoreError, Result};
use crate::grant::{Admission, RoomId};
use crate::identity::PeerKey;
use crate::store::{LogEntry, Store};

const TREES: [&str; 4] = ["log", "authors", "admissions", "checkpoints"];

/// An open sled database holding any number of rooms.
#[derive(Clone, Debug)]
pub struct SledDb {
    db: sled::Db,
    path: PathBuf,
    /// The shared trees, in [`TREES`] order.
    trees: [sled::Tree; 4],
}

impl SledDb {
    /// Opens (or creates) the database in `dir`, moving rooms kept in the old layout (four
    /// trees per room) into the shared trees.
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
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| CoreError::Store(format!("cannot open sled database in {}: {e}", path.display())))?;
        let err = |what: &str, e: sled::Error| CoreError::Store(format!("{} ({what}): {e}", path.display()));
        let open = |name: &str| db.open_tree(name).map_err(|e| err(name, e));
        let trees = [open(TREES[0])?, open(TREES[1])?, open(TREES[2])?, open(TREES[3])?];
        let out = SledDb { db, path, trees };
        out.migrate()?;
        Ok(out)
    }

    /// Moves every room still in per-room trees (`{room hex}/{tree}`) into the shared
    /// trees: copies its entries with the room prefixed, flushes, then drops the old tree.
    /// Idempotent, so an interrupted move is finished by the next open.
    fn migrate(&self) -> Result<()> {
        let mut dropped = false;
        for name in self.db.tree_names() {
            let Some((room, which)) = std::str::from_utf8(&name).ok().and_then(|n| n.split_once('/')) else {
                continue;
            };
            let (Some(i), Ok(room)) = (TREES.iter().position(|t| *t == which), PeerKey::from_hex(room)) else {
                continue;
            };
            let old = self.db.open_tree(&name).map_err(|e| self.err("old tree", e))?;
            let mut batch = sled::Batch::default();
            for kv in old.iter() {
                let (k, v) = kv.map_err(|e| self.err("old tree", e))?;
                batch.insert([&room.0[..], &k].concat(), v);
            }
            self.trees[i].apply_batch(batch).map_err(|e| self.err(which, e))?;
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

    /// The store of one room.
    pub fn room(&self, room: &RoomId) -> Result<SledStore> {
        let [log, authors, admissions, checkpoints] = self.trees.clone();
        let mut store = SledStore { log, authors, admissions, checkpoints, db: self.clone(), room: *room, log_len: 0 };
        store.log_len = match store.log.scan_prefix(room.0).next_back() {
            Some(kv) => {
                let (k, _) = kv.map_err(|e| self.err("log", e))?;
                store.index(&k)? + 1
            }
            None => 0,
        };
        Ok(store)
    }

    /// Rooms that have a log here.
    pub fn rooms(&self) -> Vec<RoomId> {
        let mut out = Vec::new();
        let mut from = Vec::new();
        // One seek per room: the first key at or after `from`, then past that room's keys.
        while let Some(Ok((k, _))) = self.trees[0].range(from.as_slice()..).next() {
            let Some(id) = k.get(..32) else { break };
            let mut id_arr = [0u8; 32];
            id_arr.copy_from_slice(id);
            out.push(PeerKey(id_arr));
            match successor(id) {
                Some(next) => from = next,
                None => break,
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

    fn err(&self, what: &str, e: impl std::fmt::Display) -> CoreError {
        CoreError::Store(format!("{} ({what}): {e}", self.path.display()))
    }
}

/// The smallest byte string greater than every string starting with `prefix`.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
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

    /// `room ‖ index`: a key of `log` and of `checkpoints`.
    fn indexed(&self, index: u64) -> [u8; 40] {
        let mut k = [0u8; 40];
        k[..32].copy_from_slice(&self.room.0);
        k[32..].copy_from_slice(&index.to_be_bytes());
        k
    }

    /// The index in a `log` or `checkpoints` key.
    fn index(&self, key: &[u8]) -> Result<u64> {
        key.strip_prefix(&self.room.0[..])
            .ok_or("key of another room")
            .and_then(be_u64)
            .map_err(|e| self.err("log key", e))
    }

    fn author_key(&self, author: &PeerKey, seq: u64) -> [u8; 72] {
        let mut k = [0u8; 72];
        k[..32].copy_from_slice(&self.room.0);
        k[32..64].copy_from_slice(&author.0);
        k[64..].copy_from_slice(&seq.to_be_bytes());
        k
    }

    fn entry(&self, key: &[u8], value: &[u8]) -> Result<LogEntry> {
        let index = self.index(key)?;
        if value.len() < 8 {
            return Err(self.err("log entry", "truncated"));
        }
        let received_ms = be_u64(&value[..8]).map_err(|e| self.err("log entry", e))?;
        let envelope =
            Envelope::decode(&value[8..], self.room).map_err(|e| self.err(&format!("log entry {index}"), e))?;
        Ok(LogEntry { index, received_ms, envelope })
    }
}

impl Store for SledStore {
    fn append(&mut self, envelope: &Envelope, received_ms: u64) -> Result<u64> {
        let index = self.log_len;
        let mut value = Vec::with_capacity(envelope.update.len() + 160);
        value.extend_from_slice(&received_ms.to_be_bytes());
        value.extend_from_slice(&envelope.encode());
        self.log.insert(self.indexed(index), value).map_err(|e| self.err("log", e))?;
        self.authors
            .insert(self.author_key(&envelope.author, envelope.seq), &index.to_be_bytes())
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
        for kv in self.log.range(self.indexed(from)..self.indexed(to)) {
            let (k, v) = kv.map_err(|e| self.err("log", e))?;
            out.push(self.entry(&k, &v)?);
        }
        Ok(out)
    }

    fn author_envelopes(&self, author: &PeerKey, from_seq: u64, limit: usize) -> Result<Vec<Envelope>> {
        let mut out = Vec::new();
        for kv in self.authors.range(self.author_key(author, from_seq)..=self.author_key(author, u64::MAX)).take(limit)
        {
            let (_, idx) = kv.map_err(|e| self.err("authors", e))?;
            let key = self.indexed(be_u64(&idx).map_err(|e| self.err("authors", e))?);
            let v = self
                .log
                .get(key)
                .map_err(|e| self.err("log", e))?
                .ok_or_else(|| self.err("authors", "points past the log"))?;
            out.push(self.entry(&key, &v)?.envelope);
        }
        Ok(out)
    }

    fn index_of(&self, author: &PeerKey, seq: u64) -> Result<Option<u64>> {
        match self.authors.get(self.author_key(author, seq)).map_err(|e| self.err("authors", e))? {
            Some(v) => Ok(Some(be_u64(&v).map_err(|e| self.err("authors", e))?)),
            None => Ok(None),
        }
    }

    fn put_admission(&mut self, admission: &Admission) -> Result<()> {
        self.admissions
            .insert([&self.room.0[..], &admission.member.0].concat(), admission.encode())
            .map_err(|e| self.err("admissions", e))?;
        Ok(())
    }

    fn admissions(&self) -> Result<Vec<Admission>> {
        self.admissions
            .scan_prefix(self.room.0)
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.err("admissions", e))?;
                Admission::decode(&v).map_err(|e| self.err("admissions", e))
            })
            .collect()
    }

    fn put_checkpoint(&mut self, log_index: u64, checkpoint: &Checkpoint) -> Result<()> {
        self.checkpoints
            .insert(self.indexed(log_index), checkpoint.encode())
            .map_err(|e| self.err("checkpoints", e))?;
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<(u64, u64)>> {
        self.checkpoints
            .scan_prefix(self.room.0)
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.err("checkpoints", e))?;
                let idx = self.index(&k)?;
                let at_ms = Checkpoint::peek_at_ms(&v).map_err(|e| self.err("checkpoints", e))?;
                Ok((idx, at_ms))
            })
            .collect()
    }

    fn checkpoint(&self, log_index: u64) -> Result<Option<Checkpoint>> {
        match self.checkpoints.get(self.indexed(log_index)).map_err(|e| self.err("checkpoints", e))? {
            Some(v) => Checkpoint::decode(&v, self.room).map(Some).map_err(|e| self.err("checkpoints", e)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::{Grant, Role};
    use crate::identity::Identity;

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
            .map(|seq| Envelope::seal(room, author, seq, [0; 32], 1, format!("{text}{seq}").into_bytes()))
            .collect();
        for (i, e) in envs.iter().enumerate() {
            store.append(e, 1000 + i as u64).unwrap();
        }
        let grant = Grant::issue(room_key, Role::Candidate, u64::MAX / 2, 0, 1);
        store.put_admission(&Admission::sign(author, grant, text, 5)).unwrap();
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

    /// A data dir written with four trees per room opens with every entry in place, and the
    /// old trees gone.
    #[test]
    fn the_old_layout_is_moved_into_the_shared_trees() {
        let dir = tempfile::tempdir().unwrap();
        let (ka, author) = (Identity::from_passphrase("old room"), Identity::from_passphrase("w"));
        let room = ka.public();
        // What the old layout wrote: the same keys, without the room prefix.
        let envs = {
            let db = SledDb::open(dir.path()).unwrap();
            let mut s = db.room(&room).unwrap();
            let envs = fill(&mut s, &ka, &author, "old");
            for (i, name) in TREES.iter().enumerate() {
                let old = db.db.open_tree(format!("{}/{name}", room.to_hex())).unwrap();
                for kv in db.trees[i].iter() {
                    let (k, v) = kv.unwrap();
                    old.insert(&k[32..], v).unwrap();
                }
                db.trees[i].clear().unwrap();
            }
            db.flush().unwrap();
            envs
        };
        for _ in 0..2 {
            let db = reopen(dir.path());
            assert!(db.db.tree_names().iter().all(|n| !n.ends_with(b"/log")), "old trees left");
            assert_eq!(db.rooms(), vec![room]);
            check(&db.room(&room).unwrap(), &author, &envs, "old");
        }
    }

    #[test]
    fn successor_skips_past_a_prefix() {
        assert_eq!(successor(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(successor(&[1, 255]), Some(vec![2]));
        assert_eq!(successor(&[255, 255]), None);
    }
}
