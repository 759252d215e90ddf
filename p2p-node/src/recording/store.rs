//! [`RecordingStore`]: the recorder's [`Store`], writing the recording file as it goes.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arena_core::{Admission, Checkpoint, Envelope, Identity, LogEntry, MemoryStore, PeerKey, RoomId, Store};

use super::{chain_next, Header, Kind, Record, RecordingFile, Seal, Tally};
use crate::error::{NodeError, Result};

/// Least time between two seals.
const SEAL_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A [`Store`] that keeps the log in memory and appends every record to a recording file;
/// [`Store::flush`] seals (at most once a second) and fsyncs it; dropping it closes the
/// recording with a closing seal.
#[derive(Debug)]
pub struct RecordingStore {
    path: PathBuf,
    room: RoomId,
    identity: Identity,
    out: BufWriter<File>,
    chain: [u8; 32],
    /// What the file holds so far, for the seals.
    tally: Tally,
    /// Seals in the file so far.
    seals: u32,
    inner: MemoryStore,
    /// Records written since the last fsync.
    dirty: bool,
    /// Records written since the last seal.
    unsealed: bool,
    /// Whether the last record is a closing seal.
    closed: bool,
    last_seal: std::time::Instant,
    clock_ms: u64,
}

impl RecordingStore {
    /// Creates a new recording at `path`, or reopens one for the same room and recorder
    /// (reloading its log; a tail torn by a crash is cut off, anything altered is refused).
    pub fn open(path: impl AsRef<Path>, room: RoomId, identity: Identity, now_ms: u64) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bad = |reason: String| NodeError::Recording { path: path.display().to_string(), reason };
        let mut inner = MemoryStore::new();
        let mut tally = Tally::default();
        let mut seals = 0;
        let mut unsealed = false;
        let mut clock_ms = now_ms;
        let chain;
        if path.exists() {
            let file = RecordingFile::read(&path)?;
            if file.header.room != room || file.header.recorder != identity.public() {
                return Err(bad("recorded by another recorder or for another room".into()));
            }
            for r in &file.records {
                if !r.chain_ok {
                    return Err(bad(format!(
                        "record {} at byte {} was altered; run `arena-node verify`",
                        r.index, r.offset
                    )));
                }
                tally.record();
                match r.decode(room).map_err(|e| bad(format!("record {}: {e}", r.index)))? {
                    Record::Envelope { received_ms, envelope } => {
                        tally.envelope(&envelope, envelope.hash());
                        inner.append(&envelope, received_ms)?;
                    }
                    Record::Admission { admission, .. } => inner.put_admission(&admission)?,
                    Record::Revocation { revocation, .. } => inner.put_revocation(&revocation)?,
                    Record::Delegation { delegation, .. } => inner.put_delegation(&delegation)?,
                    Record::Seal(s) => {
                        if !file.seal_ok(r.index, &s) {
                            return Err(bad(format!(
                                "seal {} (record {}) does not verify; run `arena-node verify`",
                                s.number, r.index
                            )));
                        }
                        seals = s.number;
                        // Seals are dated in order even if the clock went back since.
                        clock_ms = clock_ms.max(s.at_ms);
                    }
                    Record::Awareness { .. } | Record::Media { .. } => {}
                }
            }
            chain = file.records.last().map_or_else(|| file.header.chain0(), |r| r.chain);
            unsealed = file.records.last().is_some_and(|r| r.kind != Kind::Seal as u8);
            if let Some((offset, len)) = file.torn_tail {
                tracing::warn!(path = %path.display(), offset, len, "cutting a torn tail off the recording");
                let f = OpenOptions::new().write(true).open(&path).map_err(|e| NodeError::io(&path, e))?;
                f.set_len(offset as u64).map_err(|e| NodeError::io(&path, e))?;
            }
        } else {
            let header = Header { room, recorder: identity.public(), started_ms: now_ms };
            // An interview is personal data (and until invites are key-bound its admissions
            // are invites): readable by its owner only until someone chooses to share it.
            let mut create = OpenOptions::new();
            create.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
            let mut f = create.open(&path).map_err(|e| NodeError::io(&path, e))?;
            f.write_all(&header.encode()).and_then(|()| f.sync_all()).map_err(|e| NodeError::io(&path, e))?;
            chain = header.chain0();
        }
        let file = OpenOptions::new().append(true).open(&path).map_err(|e| NodeError::io(&path, e))?;
        Ok(RecordingStore {
            path,
            room,
            identity,
            out: BufWriter::new(file),
            chain,
            tally,
            seals,
            inner,
            dirty: false,
            unsealed,
            closed: false,
            last_seal: std::time::Instant::now(),
            clock_ms,
        })
    }

    /// The recording file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, kind: Kind, at_ms: u64, body: &[u8]) -> arena_core::Result<()> {
        let mut payload = Vec::with_capacity(body.len() + 8);
        payload.extend_from_slice(&at_ms.to_be_bytes());
        payload.extend_from_slice(body);
        let kind = kind as u8;
        self.chain = chain_next(&self.chain, kind, &payload);
        let mut rec = Vec::with_capacity(payload.len() + 37);
        rec.push(kind);
        rec.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        rec.extend_from_slice(&payload);
        rec.extend_from_slice(&self.chain);
        self.out.write_all(&rec).map_err(|e| self.err(e))?;
        self.tally.record();
        self.clock_ms = self.clock_ms.max(at_ms);
        self.dirty = true;
        self.unsealed = kind != Kind::Seal as u8;
        self.closed = false;
        Ok(())
    }

    /// Seals what the file holds so far (a seal record) unless the last record is a seal;
    /// durable at the next flush.
    pub fn seal(&mut self) -> arena_core::Result<()> {
        if !self.unsealed {
            return Ok(());
        }
        self.write_seal(false)
    }

    /// Closes the recording: a closing seal, flushed and fsynced. Records appended after it
    /// (a recorder that goes on) need another closing seal.
    pub fn close(&mut self) -> arena_core::Result<()> {
        self.write_seal(true)?;
        self.dirty = true;
        self.flush()
    }

    fn write_seal(&mut self, closing: bool) -> arena_core::Result<()> {
        let mut seal = Seal {
            at_ms: self.clock_ms,
            number: self.seals + 1,
            closing,
            records: self.tally.records,
            authors: self.tally.authors(),
            signature: [0; 64],
        };
        seal.signature = self.identity.sign(&seal.signed_bytes(&self.room, &self.identity.public(), &self.chain));
        self.write(Kind::Seal, seal.at_ms, &seal.encode_body())?;
        self.seals = seal.number;
        self.last_seal = std::time::Instant::now();
        self.closed = closing;
        Ok(())
    }

    fn err(&self, e: std::io::Error) -> arena_core::CoreError {
        arena_core::CoreError::Storage { context: self.path.display().to_string(), source: Box::new(e) }
    }

    /// Records a closed media file (its size and hash), durable at the next flush and
    /// covered by the next seal.
    pub fn record_media(&mut self, at_ms: u64, file: &crate::media::MediaFile) -> arena_core::Result<()> {
        self.write(Kind::Media, at_ms, &file.encode())
    }

    /// Records an awareness change (JSON), durable at the next flush.
    pub fn record_awareness(&mut self, at_ms: u64, json: &str) -> arena_core::Result<()> {
        self.write(Kind::Awareness, at_ms, json.as_bytes())
    }
}

impl Drop for RecordingStore {
    /// Closes the recording (a closing seal), so a recording stopped cleanly says so; one
    /// whose recorder was killed ends without it and reads as incomplete.
    fn drop(&mut self) {
        if !self.closed {
            if let Err(e) = self.close() {
                tracing::warn!(path = %self.path.display(), error = %e, "closing the recording");
            }
        }
    }
}

impl Store for RecordingStore {
    fn append(&mut self, envelope: &Envelope, received_ms: u64) -> arena_core::Result<u64> {
        self.write(Kind::Envelope, received_ms, &envelope.encode())?;
        self.tally.envelope(envelope, envelope.hash());
        self.inner.append(envelope, received_ms)
    }

    /// Seals (at most once a second: the record chain covers what comes between) and
    /// fsyncs.
    fn flush(&mut self) -> arena_core::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if self.last_seal.elapsed() >= SEAL_EVERY {
            self.seal()?;
        }
        self.out.flush().map_err(|e| self.err(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.err(e))?;
        self.dirty = false;
        Ok(())
    }

    fn log_len(&self) -> u64 {
        self.inner.log_len()
    }
    fn log_range(&self, from: u64, to: u64) -> arena_core::Result<Vec<LogEntry>> {
        self.inner.log_range(from, to)
    }
    fn author_envelopes(&self, author: &PeerKey, from_seq: u64, limit: usize) -> arena_core::Result<Vec<Envelope>> {
        self.inner.author_envelopes(author, from_seq, limit)
    }
    fn index_of(&self, author: &PeerKey, seq: u64) -> arena_core::Result<Option<u64>> {
        self.inner.index_of(author, seq)
    }
    fn put_admission(&mut self, admission: &Admission) -> arena_core::Result<()> {
        let at = self.clock_ms.max(admission.at_ms);
        self.write(Kind::Admission, at, &admission.encode())?;
        self.inner.put_admission(admission)
    }
    fn admissions(&self) -> arena_core::Result<Vec<Admission>> {
        self.inner.admissions()
    }
    fn put_revocation(&mut self, revocation: &arena_core::Revocation) -> arena_core::Result<()> {
        let at = self.clock_ms.max(revocation.at_ms);
        self.write(Kind::Revocation, at, &revocation.encode())?;
        self.inner.put_revocation(revocation)
    }
    fn revocations(&self) -> arena_core::Result<Vec<arena_core::Revocation>> {
        self.inner.revocations()
    }
    fn put_checkpoint(&mut self, log_index: u64, checkpoint: &Checkpoint) -> arena_core::Result<()> {
        // Kept in memory only: the recording is the log itself, replayed on reopen.
        self.inner.put_checkpoint(log_index, checkpoint)
    }
    fn put_delegation(&mut self, delegation: &arena_core::Delegation) -> arena_core::Result<()> {
        self.write(Kind::Delegation, self.clock_ms, &delegation.encode())?;
        self.inner.put_delegation(delegation)
    }
    fn delegations(&self) -> arena_core::Result<Vec<arena_core::Delegation>> {
        self.inner.delegations()
    }
    fn checkpoints(&self) -> arena_core::Result<Vec<(u64, u64)>> {
        self.inner.checkpoints()
    }
    fn checkpoint(&self, log_index: u64) -> arena_core::Result<Option<Checkpoint>> {
        self.inner.checkpoint(log_index)
    }
}
