//! History on a room replica: versions, time travel, diff and restore; and the analyzer
//! votes, which live in the same document.

use std::collections::BTreeMap;

use yrs::Transact;

use super::Room;
use crate::checkpoint::Checkpoint;
use crate::doc::RoomDoc;
use crate::envelope::Envelope;
use crate::error::{CoreError, Result};
use crate::history::{line_diff, minimal_edits, DiffLine};
use crate::identity::{hex, PeerKey};
use crate::records::{AnalysisRecord, VersionCause, VersionMeta};
use crate::store::Store;
use crate::vote::{sign_vote, Consensus};

/// A point in a room's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Everything this replica has.
    End,
    /// The first `n` entries of this replica's log.
    LogIndex(u64),
    /// Everything this replica had received at this time (unix milliseconds).
    Time(u64),
    /// A version, by id (the same cut on every replica).
    Version(String),
}

impl<S: Store> Room<S> {
    /// Saves the current state as a version (with a checkpoint at its cut, so it
    /// reconstructs fast) and records its metadata in the document.
    pub fn create_version(&mut self, label: &str, cause: VersionCause, now_ms: u64) -> Result<VersionMeta> {
        self.seal_pending(now_ms)?;
        let mut heads = BTreeMap::new();
        for (k, h) in self.ledger.heads() {
            heads.insert(k.to_hex(), h.next_seq);
        }
        let n = self.doc.versions().len();
        let meta = VersionMeta {
            id: format!("v{}-{}", n + 1, &self.me.public().to_hex()[..8]),
            label: label.to_owned(),
            cause,
            at: now_ms,
            by: self.me.public().to_hex(),
            state_vector: hex(&self.doc.state_vector()),
            heads,
        };
        self.checkpoint(now_ms)?;
        self.edit(now_ms, |e| e.push_version(&meta))?;
        Ok(meta)
    }

    /// The version with this id.
    pub fn version(&self, id: &str) -> Result<VersionMeta> {
        self.doc.versions().into_iter().find(|v| v.id == id).ok_or_else(|| CoreError::NotFound(format!("version {id}")))
    }

    /// Reconstructs the document at `cut`: the nearest checkpoint at or before it, then the
    /// log entries up to it. Never merges piles of small updates. Deferred local edits are
    /// in it once sealed ([`Room::seal_pending`]).
    pub fn doc_at(&self, cut: &Cut) -> Result<RoomDoc> {
        let len = self.store.log_len();
        let (end, filter) = match cut {
            Cut::End => (len, None),
            Cut::LogIndex(i) => ((*i).min(len), None),
            Cut::Time(t) => (self.index_at_time(*t)?, None),
            Cut::Version(id) => {
                let v = self.version(id)?;
                let mut heads = BTreeMap::new();
                let mut end = 0;
                let mut missing = Vec::new();
                for (author, n) in &v.heads {
                    let key = PeerKey::from_hex(author)?;
                    if *n > 0 {
                        match self.store.index_of(&key, n - 1)? {
                            Some(i) => end = end.max(i + 1),
                            // Before our log starts (we joined from a checkpoint).
                            None if self.ledger.head(&key).next_seq >= *n => missing.push((key, *n)),
                            None => return Err(CoreError::NotFound(format!("envelopes of version {id}"))),
                        }
                    }
                    heads.insert(key, *n);
                }
                (end, Some((heads, missing)))
            }
        };
        let (filter, missing) = match filter {
            Some((heads, missing)) => (Some(heads), missing),
            None => (None, Vec::new()),
        };
        let within =
            |author: &PeerKey, n: u64| filter.as_ref().is_none_or(|f| n <= f.get(author).copied().unwrap_or(0));
        let doc = RoomDoc::new(0);
        let mut start = 0;
        let mut base: Option<Checkpoint> = None;
        for (idx, _) in self.store.checkpoints()?.into_iter().rev() {
            if idx > end {
                continue;
            }
            let cp: Checkpoint =
                self.store.checkpoint(idx)?.ok_or_else(|| CoreError::Store(format!("checkpoint {idx} vanished")))?;
            if cp.heads.iter().all(|(a, h)| within(a, h.next_seq)) {
                doc.apply_v1(&cp.state)?;
                start = idx;
                base = Some(cp);
                break;
            }
        }
        // Envelopes we never had (we started from a checkpoint after them) must be inside
        // the checkpoint we start from, or the answer would silently lack them.
        let covered = |a: &PeerKey, n: u64| {
            base.as_ref().is_some_and(|cp| cp.heads.iter().any(|(k, h)| k == a && h.next_seq >= n))
        };
        if let (Some((a, _)), Cut::Version(id)) = (missing.iter().find(|(a, n)| !covered(a, *n)), cut) {
            return Err(CoreError::NotFound(format!(
                "history of version {id}: this replica started from a later checkpoint and holds no envelopes of {a} \
                 before it"
            )));
        }
        // Envelopes the starting checkpoint holds already (history fetched after it sits
        // later in the log) are skipped.
        let mut base_heads = BTreeMap::new();
        for (a, h) in base.iter().flat_map(|cp| &cp.heads) {
            base_heads.insert(*a, h.next_seq);
        }
        let fresh = |e: &Envelope| e.seq >= base_heads.get(&e.author).copied().unwrap_or(0);
        let entries = self.store.log_range(start, end)?;
        let mut txn = doc.yrs().transact_mut();
        for e in entries.iter().map(|e| &e.envelope).filter(|e| within(&e.author, e.seq + 1) && fresh(e)) {
            let u = crate::doc::decode_update(&e.update)?;
            txn.apply_update(u).map_err(CoreError::Update)?;
        }
        drop(txn);
        Ok(doc)
    }

    /// The code at `cut`.
    pub fn code_at(&self, cut: &Cut) -> Result<String> {
        Ok(self.doc_at(cut)?.code())
    }

    /// Log entries received at or before `t`: binary search over receive times.
    fn index_at_time(&self, t: u64) -> Result<u64> {
        let (mut lo, mut hi) = (0, self.store.log_len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.store.log_range(mid, mid + 1)?.first().map(|e| e.received_ms).unwrap_or(u64::MAX);
            if at <= t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Line diff of the code between two cuts.
    pub fn diff(&self, from: &Cut, to: &Cut) -> Result<Vec<DiffLine>> {
        Ok(line_diff(&self.code_at(from)?, &self.code_at(to)?))
    }

    /// Line diffs of the extra files between two cuts, by name (sorted), over the files
    /// listed at either; a file listed at only one side diffs against an empty text.
    pub fn file_diffs(&self, from: &Cut, to: &Cut) -> Result<Vec<(String, Vec<DiffLine>)>> {
        let (old, new) = (self.doc_at(from)?.file_texts(), self.doc_at(to)?.file_texts());
        let mut names: Vec<&String> = old.iter().chain(&new).map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        fn text<'a>(files: &'a [(String, String)], name: &str) -> &'a str {
            files.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str()).unwrap_or_default()
        }
        Ok(names.into_iter().map(|n| (n.clone(), line_diff(text(&old, n), text(&new, n)))).collect())
    }

    /// Restores version `id` as a forward edit: the code and every extra file take their
    /// text at the version (the minimal splices from the current text), files listed then
    /// are listed again and files added since are unlisted. Then records a new version with
    /// cause `restore`. History is kept.
    pub fn restore(&mut self, id: &str, now_ms: u64) -> Result<(Option<Envelope>, VersionMeta)> {
        self.seal_pending(now_ms)?;
        let then = self.doc_at(&Cut::Version(id.to_owned()))?;
        let splices = minimal_edits(&self.doc.code(), &then.code());
        let files = then.file_texts();
        let mut failed: Result<()> = Ok(());
        let env = self.edit(now_ms, |e| {
            failed = (|| {
                for s in &splices {
                    e.splice_code(s.pos, s.delete, &s.insert);
                }
                // Unlist first: the version's files fit under the cap, ours and its may not.
                for name in e.files() {
                    if !files.iter().any(|(n, _)| *n == name) {
                        e.remove_file(&name)?;
                    }
                }
                for (name, target) in &files {
                    e.add_file(name, now_ms)?;
                    let current = e.file(name).unwrap_or_default();
                    for s in minimal_edits(&current, target) {
                        e.splice_file(name, s.pos, s.delete, &s.insert)?;
                    }
                }
                Ok(())
            })();
        })?;
        failed?;
        let v = self.create_version(&format!("restore of {id}"), VersionCause::Restore, now_ms)?;
        Ok((env, v))
    }

    /// The analyzer round votes count for: one past the highest round `analysis` answers.
    pub fn analyzer_round(&self) -> u64 {
        self.doc.analysis().iter().map(|a| a.round + 1).max().unwrap_or(0)
    }

    /// Signs and records our vote for the current analyzer round.
    pub fn vote(&mut self, enabled: bool, now_ms: u64) -> Result<Option<Envelope>> {
        let round = self.analyzer_round();
        let v = sign_vote(&self.id, &self.me, round, enabled);
        let key = self.me.public().to_hex();
        self.edit(now_ms, |e| e.set_vote(&key, &v))
    }

    /// Where the analyzer consensus stands, every vote's signature checked.
    pub fn consensus(&self) -> Consensus {
        Consensus::evaluate(&self.ledger, self.analyzer_round(), &self.doc.votes())
    }

    /// Writes an analyzer result for the current round as the room's node (the only writer
    /// of `analysis`), after checking again that consensus holds and that `trigger`, who
    /// asked for it, is a host. The next round starts with it.
    pub fn complete_round(
        &mut self,
        trigger: &PeerKey,
        backend: &str,
        findings: Vec<String>,
        now_ms: u64,
    ) -> Result<Option<Envelope>> {
        if !self.ledger.member(&self.me.public()).is_some_and(|m| m.proxy) {
            return Err(CoreError::NotAllowed("only the room's node writes analyzer results".into()));
        }
        let c = self.consensus();
        c.check_trigger(&self.ledger, trigger)?;
        let record = AnalysisRecord { round: c.round, backend: backend.to_owned(), findings, created_at: now_ms };
        self.edit(now_ms, |e| e.push_analysis(&record))
    }
}
