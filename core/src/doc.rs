//! The room document: one yrs `Doc` with UTF-16 offsets and no garbage collection, and
//! typed access to its roots. No other code touches a root by its string name.

use serde::Serialize;
use yrs::encoding::write::Write;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{
    Any, Array, ArrayRef, Doc, GetString, Map, MapRef, OffsetKind, Options, Out, ReadTxn, StateVector, Text, TextRef,
    Transact, TransactionMut, Update, WriteTxn,
};

use crate::error::{CoreError, Result};
use crate::json::Json;
use crate::records::{AnalysisRecord, FromJson, Meta, Participant, RunRecord, VersionMeta, VoteRecord};

pub(crate) mod files;
pub(crate) mod strict;
mod watch;
pub use files::{check_file_name, MAX_FILES, MAX_FILE_NAME};
pub use strict::{check_update, decode_state_vector, decode_update, MAX_CLIENT_ID};
pub use watch::CodeWatch;

/// The origin of local transactions an editor already shows ([`RoomDoc::edit_shown`]).
pub(crate) const SHOWN_ORIGIN: &str = "arena/shown";

/// Root names: part of the wire contract with stock Yjs clients. Only this crate's typed
/// accessors use them (DESIGN.md: no other crate touches a root by its name).
pub(crate) mod roots {
    /// Text: the code buffer.
    pub(crate) const CODE: &str = "code";
    /// Map: room settings.
    pub(crate) const META: &str = "meta";
    /// Map: peer hex → participant.
    pub(crate) const PARTICIPANTS: &str = "participants";
    /// Map: peer hex → signed vote.
    pub(crate) const VOTES: &str = "votes";
    /// Array: analyzer results.
    pub(crate) const ANALYSIS: &str = "analysis";
    /// Array: run records.
    pub(crate) const RUNS: &str = "runs";
    /// Array: version metadata.
    pub(crate) const VERSIONS: &str = "versions";
    /// Map: file name → entry, the extra files (each a text root `files/<name>`).
    pub(crate) const FILES: &str = "files";
}

/// The shared document of a room.
#[derive(Debug)]
pub struct RoomDoc {
    doc: Doc,
    code: TextRef,
    meta: MapRef,
    participants: MapRef,
    votes: MapRef,
    analysis: ArrayRef,
    runs: ArrayRef,
    versions: ArrayRef,
    files: MapRef,
}

impl RoomDoc {
    /// A fresh replica writing under yrs client id `client_id`.
    pub fn new(client_id: u64) -> Self {
        let mut opts = Options::with_client_id(yrs::ClientID::new(client_id & ((1 << 53) - 1)));
        opts.offset_kind = OffsetKind::Utf16;
        opts.skip_gc = true;
        let doc = Doc::with_options(opts);
        RoomDoc {
            code: doc.get_or_insert_text(roots::CODE),
            meta: doc.get_or_insert_map(roots::META),
            participants: doc.get_or_insert_map(roots::PARTICIPANTS),
            votes: doc.get_or_insert_map(roots::VOTES),
            analysis: doc.get_or_insert_array(roots::ANALYSIS),
            runs: doc.get_or_insert_array(roots::RUNS),
            versions: doc.get_or_insert_array(roots::VERSIONS),
            files: doc.get_or_insert_map(roots::FILES),
            doc,
        }
    }

    /// The underlying yrs document, for this crate's y-protocols session and the room.
    pub(crate) fn yrs(&self) -> &Doc {
        &self.doc
    }

    /// The underlying yrs document: an escape hatch for tests, benches and interop checks
    /// only. It bypasses the room's schema and write rules (a write through it is not judged,
    /// signed or logged); everything else goes through the typed accessors.
    pub fn raw_yrs_doc(&self) -> &Doc {
        &self.doc
    }

    /// This replica's client id.
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// Applies a decoded remote update.
    pub fn apply(&self, update: Update) -> Result<()> {
        let mut txn = self.doc.transact_mut();
        txn.apply_update(update).map_err(CoreError::Update)
    }

    /// Decodes and applies a v1 update.
    pub fn apply_v1(&self, update: &[u8]) -> Result<()> {
        self.apply(decode_update(update)?)
    }

    /// The whole state as one v1 update (a checkpoint's payload). Not canonical: two replicas
    /// with the same state may encode it differently, see [`RoomDoc::canonical_state`].
    pub fn encode_state(&self) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(&StateVector::default())
    }

    /// The whole state as one v1 update in a canonical byte order: yrs writes the delete
    /// set in hash-map order, so two replicas with the same state can encode it differently;
    /// here its clients are sorted (descending, like the struct section). Replicas that
    /// converged have byte-identical canonical states.
    ///
    /// The items are canonical too: yrs encodes them as this replica's store happens to hold
    /// them, split wherever a concurrent insert or a piecewise delete once landed, so
    /// neighbours that merged on one replica can stay apart on another (seen in the
    /// convergence tests: same state vector, different lengths). Loading the state into a
    /// fresh document in one transaction lets yrs squash every mergeable neighbour (the rule
    /// is associative and depends only on the items), which leaves one form per state. Costs
    /// a full load: for checks and digests, not for every keystroke.
    pub fn canonical_state(&self) -> Vec<u8> {
        let full = self.encode_state();
        let fresh = RoomDoc::new(0);
        let full = match fresh.apply_v1(&full) {
            Ok(()) => fresh.encode_state(),
            Err(_) => full,
        };
        let Ok(update) = Update::decode_v1(&full) else { return full };
        let ds = update.delete_set();
        let ds_len = ds.encode_v1().len();
        let Some(blocks) = full.len().checked_sub(ds_len).map(|n| &full[..n]) else { return full };
        let mut clients: Vec<_> = ds.iter().collect();
        clients.sort_by(|a, b| b.0.cmp(a.0));
        let mut out = crate::codec::Writer::with_capacity(full.len());
        out.fixed(blocks).var(clients.len() as u64);
        for (client, ranges) in clients {
            let ranges: Vec<_> = ranges.iter().collect();
            out.var(client.get()).var(ranges.len() as u64);
            for r in ranges {
                out.var(u64::from(r.start)).var(u64::from(r.end - r.start));
            }
        }
        out.finish()
    }

    /// What a peer with state vector `sv` (v1 bytes) is missing.
    pub fn encode_diff(&self, sv: &[u8]) -> Result<Vec<u8>> {
        let sv = decode_state_vector(sv)?;
        Ok(self.doc.transact().encode_state_as_update_v1(&sv))
    }

    /// The state vector, v1 bytes, clients in ascending order so that equal states give equal
    /// bytes (yrs writes them in hash-map order, which depends on the replica's history).
    pub fn state_vector(&self) -> Vec<u8> {
        let sv = self.doc.transact().state_vector();
        let mut clients: Vec<(u64, u32)> = sv.iter().map(|(c, clock)| (c.get(), *clock)).collect();
        clients.sort_unstable();
        let mut enc = EncoderV1::new();
        enc.write_var(clients.len());
        for (client, clock) in clients {
            enc.write_var(client);
            enc.write_var(clock);
        }
        enc.to_vec()
    }

    /// Whether updates are waiting for missing predecessors.
    pub fn has_pending(&self) -> bool {
        let txn = self.doc.transact();
        txn.store().pending_update().is_some() || txn.store().pending_ds().is_some()
    }

    /// The code buffer's text.
    pub fn code(&self) -> String {
        self.code.get_string(&self.doc.transact())
    }

    /// The code buffer's length in UTF-16 units.
    pub fn code_len(&self) -> u32 {
        self.code.len(&self.doc.transact())
    }

    /// The extra files' names, sorted: the keys of `files` that are valid file names (a stock
    /// client may write any entry there; the room's gate refuses other keys).
    pub fn files(&self) -> Vec<String> {
        file_names(&self.files, &self.doc.transact())
    }

    /// The text of file `name`; `None` when `files` does not list it.
    pub fn file(&self, name: &str) -> Option<String> {
        let txn = self.doc.transact();
        file_text(&self.files, &txn, name)
    }

    /// Every listed file with its text, sorted by name.
    pub fn file_texts(&self) -> Vec<(String, String)> {
        let txn = self.doc.transact();
        file_names(&self.files, &txn)
            .into_iter()
            .map(|n| {
                let text = file_text(&self.files, &txn, &n).unwrap_or_default();
                (n, text)
            })
            .collect()
    }

    /// Runs `f` in one local transaction and returns that transaction's v1 update (empty
    /// when nothing changed).
    pub fn edit<R>(&self, f: impl FnOnce(&mut Edit<'_, '_>) -> R) -> (R, Vec<u8>) {
        self.edit_txn(self.doc.transact_mut(), f)
    }

    /// Like [`RoomDoc::edit`], for a change an editor already shows: a [`CodeWatch`] does
    /// not report it back (its splices are not even computed).
    pub fn edit_shown<R>(&self, f: impl FnOnce(&mut Edit<'_, '_>) -> R) -> (R, Vec<u8>) {
        self.edit_txn(self.doc.transact_mut_with(SHOWN_ORIGIN), f)
    }

    fn edit_txn<R>(&self, mut txn: TransactionMut<'_>, f: impl FnOnce(&mut Edit<'_, '_>) -> R) -> (R, Vec<u8>) {
        let r = f(&mut Edit { txn: &mut txn, doc: self });
        let update = if txn.before_state() == txn.after_state() && txn.delete_set().is_empty() {
            Vec::new()
        } else {
            txn.encode_update_v1()
        };
        // A peer may delete ids before they exist, even ids this replica has yet to write;
        // yrs keeps such deletions pending and retries them only when a remote update comes
        // in. Every other replica applies them as soon as our items arrive, so apply them
        // now too: otherwise our own view shows text that the state we encode (and every
        // peer) has deleted, until the next remote update. In a transaction of its own, so a
        // watcher reports what it deletes even after an edit the editor already shows.
        let retry = txn.store().pending_ds().is_some();
        drop(txn);
        if retry {
            if let Err(e) = self.doc.transact_mut().apply_update(Update::new()) {
                debug_assert!(false, "retrying pending deletions failed: {e}");
            }
        }
        (r, update)
    }

    /// `meta` as a typed record (missing fields take defaults; a field of the wrong type
    /// makes it all defaults).
    pub fn meta(&self) -> Meta {
        let txn = self.doc.transact();
        // Only the keys `Meta` reads: anything else a host stores there (a 4 MiB buffer)
        // is not converted. A known key too large to convert reads as null (the record
        // then fails, as for any value of the wrong type).
        let fields = Meta::KEYS
            .iter()
            .filter_map(|k| match self.meta.get(&txn, k)? {
                Out::Any(any) => Some(((*k).to_owned(), Json::from_any(&any).unwrap_or(Json::Null))),
                _ => None,
            })
            .collect();
        Meta::from_json(&Json::Obj(fields)).unwrap_or_default()
    }

    /// `participants`, sorted by key. Malformed entries (from stock clients) are skipped.
    pub fn participants(&self) -> Vec<(String, Participant)> {
        map_entries(&self.doc, &self.participants)
    }

    /// `votes`, sorted by voter.
    pub fn votes(&self) -> Vec<(String, VoteRecord)> {
        map_entries(&self.doc, &self.votes)
    }

    /// `analysis`, in document order.
    pub fn analysis(&self) -> Vec<AnalysisRecord> {
        array_entries(&self.doc, &self.analysis)
    }

    /// `runs`, in document order.
    pub fn runs(&self) -> Vec<RunRecord> {
        array_entries(&self.doc, &self.runs)
    }

    /// `versions`, in document order.
    pub fn versions(&self) -> Vec<VersionMeta> {
        array_entries(&self.doc, &self.versions)
    }
}

fn file_names<T: ReadTxn>(files: &MapRef, txn: &T) -> Vec<String> {
    let mut names: Vec<String> =
        files.keys(txn).filter(|k| files::check_file_name(k).is_ok()).map(str::to_owned).collect();
    names.sort();
    names
}

fn file_text<T: ReadTxn>(files: &MapRef, txn: &T, name: &str) -> Option<String> {
    if files::check_file_name(name).is_err() || !files.contains_key(txn, name) {
        return None;
    }
    Some(txn.get_text(files::root_of(name)).map(|t| t.get_string(txn)).unwrap_or_default())
}

fn decode_out<T: FromJson>(v: Out) -> Option<T> {
    match v {
        Out::Any(Any::String(json)) => T::from_json(&Json::parse(&json)?),
        // A stock Yjs client may write a plain object.
        Out::Any(any) => T::from_json(&Json::from_any(&any)?),
        _ => None,
    }
}

/// Records are stored as JSON text: yrs encodes an `Any::Map` in hash-map order, so a
/// map value would make converged replicas encode different bytes. A JSON string with a
/// fixed field order keeps the encoded state byte-identical everywhere.
fn record<T: Serialize>(value: &T) -> Any {
    match serde_json::to_string(value) {
        Ok(s) => Any::String(s.into()),
        Err(_) => Any::Null,
    }
}

fn map_entries<T: FromJson>(doc: &Doc, map: &MapRef) -> Vec<(String, T)> {
    let txn = doc.transact();
    let mut v: Vec<(String, T)> = map.iter(&txn).filter_map(|(k, v)| Some((k.to_owned(), decode_out(v)?))).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn array_entries<T: FromJson>(doc: &Doc, arr: &ArrayRef) -> Vec<T> {
    let txn = doc.transact();
    arr.iter(&txn).filter_map(decode_out).collect()
}

/// A JSON value as an `Any`, as yrs's serde bridge maps it (integers that fit an i64 as
/// integers, other numbers as floats; `Null` for the whole value when an integer does not
/// fit), without that bridge's code in the WASM module.
pub(crate) fn any_of(value: &serde_json::Value) -> Any {
    fn conv(v: &serde_json::Value) -> Option<Any> {
        use serde_json::Value as J;
        Some(match v {
            J::Null => Any::Null,
            J::Bool(b) => Any::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Any::from(i),
                None if n.is_u64() => return None,
                None => Any::from(n.as_f64()?),
            },
            J::String(s) => Any::from(s.as_str()),
            J::Array(a) => Any::Array(a.iter().map(conv).collect::<Option<Vec<_>>>()?.into()),
            J::Object(m) => Any::Map(
                m.iter()
                    .map(|(k, v)| Some((k.clone(), conv(v)?)))
                    .collect::<Option<std::collections::HashMap<_, _>>>()?
                    .into(),
            ),
        })
    }
    conv(value).unwrap_or(Any::Null)
}

/// A `meta` value read from JSON text, for [`Edit::set_meta_value`].
#[derive(Clone, Debug, PartialEq)]
pub struct MetaValue(Any);

impl MetaValue {
    /// Parses JSON text (serde_json's grammar; integers past i64 make the value null, as for
    /// [`Edit::set_meta`]).
    pub fn from_json(text: &str) -> Result<Self> {
        let value = Json::parse(text).ok_or_else(|| CoreError::malformed("meta value", "not JSON"))?;
        Ok(MetaValue(value.to_any()))
    }
}

/// A local transaction on the room document.
#[allow(missing_debug_implementations)]
pub struct Edit<'t, 'd> {
    txn: &'t mut TransactionMut<'d>,
    doc: &'t RoomDoc,
}

impl Edit<'_, '_> {
    /// Replaces `delete` UTF-16 units at `pos` with `insert` in the code buffer. Positions
    /// past the end are clamped, so a stale editor cannot make the call fail.
    pub fn splice_code(&mut self, pos: u32, delete: u32, insert: &str) {
        let len = self.doc.code.len(self.txn);
        let pos = pos.min(len);
        let delete = delete.min(len - pos);
        if delete > 0 {
            self.doc.code.remove_range(self.txn, pos, delete);
        }
        if !insert.is_empty() {
            self.doc.code.insert(self.txn, pos, insert);
        }
    }

    /// The code as this transaction sees it.
    pub fn code(&self) -> String {
        self.doc.code.get_string(self.txn)
    }

    /// Sets one `meta` field to a JSON value.
    pub fn set_meta(&mut self, key: &str, value: &serde_json::Value) {
        self.doc.meta.insert(self.txn, key, any_of(value));
    }

    /// Sets one `meta` field to a value parsed from JSON text: what [`Edit::set_meta`] sets
    /// for the same JSON, without `serde_json::Value` in the WASM module.
    pub fn set_meta_value(&mut self, key: &str, value: &MetaValue) {
        self.doc.meta.insert(self.txn, key, value.0.clone());
    }

    /// Sets one `meta` field to an integer (`Null` past i64, as [`Edit::set_meta`] would).
    pub(crate) fn set_meta_u64(&mut self, key: &str, n: u64) {
        self.doc.meta.insert(self.txn, key, i64::try_from(n).map_or(Any::Null, Any::from));
    }

    /// Sets the whole `meta` record: its fields in alphabetical order, as when it went through
    /// a `serde_json::Value` (the same update bytes).
    pub fn set_meta_record(&mut self, meta: &Meta) {
        self.set_meta_u64("analyzerRound", meta.analyzer_round);
        let roles: Vec<Any> = meta.analyzer_threshold.iter().map(|r| Any::from(r.as_str())).collect();
        self.doc.meta.insert(self.txn, "analyzerThreshold", Any::Array(roles.into()));
        self.set_meta_u64("createdAt", meta.created_at);
        for (key, text) in [("language", &meta.language), ("question", &meta.question), ("title", &meta.title)] {
            self.doc.meta.insert(self.txn, key, Any::from(text.as_str()));
        }
    }

    /// Adds or replaces a participant.
    pub fn set_participant(&mut self, peer: &str, p: &Participant) {
        self.doc.participants.insert(self.txn, peer, record(p));
    }

    /// Records a vote.
    pub fn set_vote(&mut self, voter: &str, v: &VoteRecord) {
        self.doc.votes.insert(self.txn, voter, record(v));
    }

    /// Removes every vote (after a round completes).
    pub fn clear_votes(&mut self) {
        self.doc.votes.clear(self.txn);
    }

    /// Appends an analyzer result.
    pub fn push_analysis(&mut self, a: &AnalysisRecord) {
        self.doc.analysis.push_back(self.txn, record(a));
    }

    /// Appends a run record.
    pub fn push_run(&mut self, r: &RunRecord) {
        self.doc.runs.push_back(self.txn, record(r));
    }

    /// Removes every record of the run `id` from `runs` (its `running` records, when its
    /// final record replaces them). Returns how many it removed.
    pub fn remove_run(&mut self, id: &str) -> usize {
        let at: Vec<u32> = self
            .doc
            .runs
            .iter(self.txn)
            .enumerate()
            .filter(|(_, v)| decode_out::<RunRecord>(v.clone()).is_some_and(|r| r.id == id))
            .map(|(i, _)| i as u32)
            .collect();
        for &i in at.iter().rev() {
            self.doc.runs.remove(self.txn, i);
        }
        at.len()
    }

    /// Appends version metadata.
    pub fn push_version(&mut self, v: &VersionMeta) {
        self.doc.versions.push_back(self.txn, record(v));
    }

    /// Lists file `name` (its text starts empty, or as it was if it was listed before).
    /// Returns whether it was new. Refused: a bad name, or [`MAX_FILES`] listed already.
    pub fn add_file(&mut self, name: &str, created_at: u64) -> Result<bool> {
        files::check_file_name(name)?;
        if self.doc.files.contains_key(self.txn, name) {
            return Ok(false);
        }
        if file_names(&self.doc.files, self.txn).len() >= MAX_FILES {
            return Err(CoreError::NotAllowed(format!("a room holds at most {MAX_FILES} files beside its code")));
        }
        // What `record` makes of a `FileEntry`, without a serde_json instantiation in the WASM
        // module (tested below).
        self.doc.files.insert(self.txn, name, Any::from(format!("{{\"createdAt\":{created_at}}}")));
        Ok(true)
    }

    /// Unlists file `name` and empties its text (history keeps it). Returns whether it was
    /// listed.
    pub fn remove_file(&mut self, name: &str) -> Result<bool> {
        files::check_file_name(name)?;
        if self.doc.files.remove(self.txn, name).is_none() {
            return Ok(false);
        }
        if let Some(text) = self.txn.get_text(files::root_of(name)) {
            let len = text.len(self.txn);
            if len > 0 {
                text.remove_range(self.txn, 0, len);
            }
        }
        Ok(true)
    }

    /// Replaces `delete` UTF-16 units at `pos` with `insert` in file `name`, clamped like
    /// [`Edit::splice_code`]. The file must be listed ([`Edit::add_file`]).
    pub fn splice_file(&mut self, name: &str, pos: u32, delete: u32, insert: &str) -> Result<()> {
        files::check_file_name(name)?;
        if !self.doc.files.contains_key(self.txn, name) {
            return Err(CoreError::NotFound(format!("file {name}")));
        }
        let text = self.txn.get_or_insert_text(files::root_of(name));
        let len = text.len(self.txn);
        let pos = pos.min(len);
        let delete = delete.min(len - pos);
        if delete > 0 {
            text.remove_range(self.txn, pos, delete);
        }
        if !insert.is_empty() {
            text.insert(self.txn, pos, insert);
        }
        Ok(())
    }

    /// The text of file `name` as this transaction sees it (`None`: not listed).
    pub fn file(&self, name: &str) -> Option<String> {
        file_text(&self.doc.files, self.txn, name)
    }

    /// The listed files' names as this transaction sees them, sorted.
    pub fn files(&self) -> Vec<String> {
        file_names(&self.doc.files, self.txn)
    }
}

#[cfg(test)]
mod any_tests {
    use super::*;
    use crate::grant::Role;

    /// A run's `running` records, then `remove_run` and its final record: one record left.
    #[test]
    fn remove_run_drops_every_record_of_that_run_only() {
        use crate::records::RunStatus;
        let run = |id: &str, status, out: &str| RunRecord {
            id: id.into(),
            by: "b".into(),
            language: "python".into(),
            status,
            stdout: out.into(),
            stderr: String::new(),
            exit_code: None,
            cpu_ms: 0,
            wall_ms: 0,
            at: 1,
        };
        let doc = RoomDoc::new(3);
        doc.edit(|e| {
            e.push_run(&run("r1", RunStatus::Finished, "old"));
            e.push_run(&run("r2", RunStatus::Running, "a"));
            e.push_run(&run("r2", RunStatus::Running, "b"));
        });
        assert_eq!(doc.runs().len(), 3);
        let (n, _) = doc.edit(|e| {
            let n = e.remove_run("r2");
            e.push_run(&run("r2", RunStatus::Finished, "ab"));
            n
        });
        assert_eq!(n, 2);
        let runs = doc.runs();
        assert_eq!(
            runs.iter().map(|r| (r.id.as_str(), r.stdout.as_str())).collect::<Vec<_>>(),
            [("r1", "old"), ("r2", "ab")]
        );
    }

    /// A file's entry is the JSON of a `FileEntry`, as `record` would write it.
    #[test]
    fn file_entry_as_a_record() {
        let doc = RoomDoc::new(3);
        let (added, _) = doc.edit(|e| e.add_file("a.py", u64::MAX));
        assert!(added.unwrap());
        let txn = doc.doc.transact();
        let entry = doc.files.get(&txn, "a.py").unwrap();
        assert_eq!(Out::Any(record(&crate::records::FileEntry { created_at: u64::MAX })), entry);
    }

    /// `set_meta_record` writes what it wrote through `serde_json::Value`, byte for byte.
    #[test]
    fn meta_record_as_through_a_value() {
        let meta = Meta {
            language: "python".into(),
            title: "Two sum — 二和".into(),
            question: "q".into(),
            analyzer_threshold: vec![Role::Host, Role::Candidate],
            analyzer_round: 2,
            created_at: u64::MAX,
        };
        let (ours, theirs) = (RoomDoc::new(7), RoomDoc::new(7));
        ours.edit(|e| e.set_meta_record(&meta));
        theirs.edit(|e| {
            let serde_json::Value::Object(m) = serde_json::to_value(&meta).unwrap() else { unreachable!() };
            for (k, v) in m {
                e.set_meta(&k, &v);
            }
        });
        assert_eq!(ours.encode_state(), theirs.encode_state());
        assert_eq!(ours.meta(), theirs.meta());
        let small = Meta { created_at: 5, ..meta };
        let doc = RoomDoc::new(9);
        doc.edit(|e| e.set_meta_record(&small));
        assert_eq!(doc.meta(), small);
        let (a, b) = (RoomDoc::new(8), RoomDoc::new(8));
        let value = MetaValue::from_json(r#"{"a": [1, 2.5, null, true, "x", {"b": []}]}"#).unwrap();
        a.edit(|e| e.set_meta_value("title", &value));
        b.edit(|e| e.set_meta("title", &serde_json::json!({"a": [1, 2.5, null, true, "x", {"b": []}]})));
        assert_eq!(a.encode_state(), b.encode_state());
        // Numbers as serde_json reads them, floats to the bit.
        let numbers = "[1e300, 0.1, 1.7976931348623157e308, 123456789012345678901234567890, -0, 3.0, 9223372036854775807, -9223372036854775808, 4.9e-324]";
        let value = MetaValue::from_json(numbers).unwrap();
        a.edit(|e| e.set_meta_value("n", &value));
        b.edit(|e| e.set_meta("n", &serde_json::from_str(numbers).unwrap()));
        assert_eq!(a.encode_state(), b.encode_state());
        let big = MetaValue::from_json("[1, 9223372036854775808]").unwrap();
        assert_eq!(big, MetaValue(Any::Null), "an integer past i64 nulls the value, as in set_meta");
        assert!(MetaValue::from_json("{").is_err());
        assert!(MetaValue::from_json("1e400").is_err());
    }

    #[test]
    fn any_of_maps_json_as_the_yrs_serde_bridge_does() {
        let cases = [
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!(3),
            serde_json::json!(-7),
            serde_json::json!(2.5),
            serde_json::json!(1e300),
            serde_json::json!(u64::MAX),
            serde_json::json!("x"),
            serde_json::json!({"a": [1, 2.5, null, true, "x", {"b": []}], "c": {}}),
            serde_json::json!([1, {"big": u64::MAX}]),
        ];
        for v in cases {
            let bridge = yrs::encoding::serde::to_any(&v).unwrap_or(yrs::Any::Null);
            assert_eq!(any_of(&v), bridge, "{v}");
        }
    }
}
