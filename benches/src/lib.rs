//! Shared helpers for the benchmarks: loading the editing traces, converting their
//! code-point positions to the UTF-16 units the room document counts in, and replaying them
//! through the room (arena-core), raw yrs and automerge the same way an editor would: one
//! transaction (and for the room, one signed envelope) per patch.
//!
//! The traces are read from `$ARENA_TRACES_DIR`, by default the workspace's
//! `../shared/data/traces`. They are never copied into the repository.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use arena_core::records::{Meta, VersionCause};
use arena_core::sync::wire::Wire;
use arena_core::{Admission, Envelope, Identity, Invite, MemoryStore, Role, Room, RoomConfig, RoomId, Store};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, TextEncoding};
use yrs::updates::decoder::Decode;
#[cfg(test)]
use yrs::Snapshot;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact, Update};

pub use arena_testkit::traces::{
    apply_utf16, load_trace, load_trace_from, traces_dir, Patch, Trace, Utf16Converter, SEQUENTIAL,
};
pub use automerge;
pub use yrs;

// ---------------------------------------------------------------------------------------
// Raw yrs, configured like the room document (UTF-16 offsets, no GC).

/// A bare yrs document configured like `RoomDoc` (UTF-16 offsets, `skip_gc`), with its
/// `code` text.
pub fn yrs_doc(client_id: u64) -> (Doc, TextRef) {
    let mut opts = Options::with_client_id(yrs::ClientID::new(client_id));
    opts.offset_kind = OffsetKind::Utf16;
    opts.skip_gc = true;
    let doc = Doc::with_options(opts);
    let text = doc.get_or_insert_text("code");
    (doc, text)
}

/// One patch as one raw yrs transaction; returns the transaction's v1 update when `encode`.
#[inline]
pub fn yrs_splice(doc: &Doc, text: &TextRef, p: &Patch, encode: bool) -> Option<Vec<u8>> {
    let mut txn = doc.transact_mut();
    if p.del > 0 {
        text.remove_range(&mut txn, p.pos, p.del);
    }
    if !p.ins.is_empty() {
        text.insert(&mut txn, p.pos, &p.ins);
    }
    encode.then(|| txn.encode_update_v1())
}

/// Replays the trace on raw yrs, one transaction per patch; collects the updates when
/// `encode` (what an editor sends).
pub fn yrs_local(patches: &[Patch], encode: bool) -> (Doc, TextRef, Vec<Vec<u8>>) {
    let (doc, text) = yrs_doc(1);
    let mut updates = Vec::with_capacity(if encode { patches.len() } else { 0 });
    for p in patches {
        if let Some(u) = yrs_splice(&doc, &text, p, encode) {
            updates.push(u);
        }
    }
    (doc, text, updates)
}

/// Replays the trace on raw yrs like an editor that sends each transaction's update and
/// forgets it: one transaction per patch, `encode_update_v1`, the update dropped. Returns
/// the total update bytes. (Keeping every update alive, as [`yrs_local`] does, costs
/// noticeably more: 40,000 small live allocations push yrs's block list out of cache.)
pub fn yrs_local_send(patches: &[Patch]) -> (Doc, TextRef, usize) {
    let (doc, text) = yrs_doc(1);
    let mut bytes = 0;
    for p in patches {
        if let Some(u) = yrs_splice(&doc, &text, p, true) {
            bytes += std::hint::black_box(u).len();
        }
    }
    (doc, text, bytes)
}

/// Like [`yrs_local`] (with updates), and takes a snapshot after each patch count in
/// `marks` (for time travel; the document keeps deleted content because of `skip_gc`).
pub fn yrs_local_marked(patches: &[Patch], marks: &[usize]) -> (Doc, TextRef, Vec<Vec<u8>>, Vec<yrs::Snapshot>) {
    let (doc, text) = yrs_doc(1);
    let mut updates = Vec::with_capacity(patches.len());
    let mut snaps = Vec::new();
    for (i, p) in patches.iter().enumerate() {
        if let Some(u) = yrs_splice(&doc, &text, p, true) {
            updates.push(u);
        }
        if marks.contains(&(i + 1)) {
            snaps.push(doc.transact().snapshot());
        }
    }
    (doc, text, updates, snaps)
}

/// Applies per-patch updates on a fresh replica, one transaction per update (live).
pub fn yrs_apply_each(updates: &[Vec<u8>]) -> Result<(Doc, TextRef)> {
    let (doc, text) = yrs_doc(2);
    for u in updates {
        let u = Update::decode_v1(u)?;
        doc.transact_mut().apply_update(u)?;
    }
    Ok((doc, text))
}

/// Applies per-patch updates on a fresh replica in transactions of `batch` updates (what
/// `Room::receive` does with a batch of envelopes).
pub fn yrs_apply_batched(updates: &[Vec<u8>], batch: usize) -> Result<(Doc, TextRef)> {
    let (doc, text) = yrs_doc(2);
    for chunk in updates.chunks(batch.max(1)) {
        let mut txn = doc.transact_mut();
        for u in chunk {
            txn.apply_update(Update::decode_v1(u)?)?;
        }
    }
    Ok((doc, text))
}

/// The text of a yrs document's `code`.
pub fn yrs_text(doc: &Doc, text: &TextRef) -> String {
    text.get_string(&doc.transact())
}

/// The full state of a yrs document as one v1 update.
pub fn yrs_state(doc: &Doc) -> Vec<u8> {
    doc.transact().encode_state_as_update_v1(&StateVector::default())
}

/// The full state as one v2 update.
pub fn yrs_state_v2(doc: &Doc) -> Vec<u8> {
    doc.transact().encode_state_as_update_v2(&StateVector::default())
}

/// Loads a state (v1) into a fresh document: raw yrs's cold load.
pub fn yrs_load(state: &[u8]) -> Result<(Doc, TextRef)> {
    let (doc, text) = yrs_doc(3);
    doc.transact_mut().apply_update(Update::decode_v1(state)?)?;
    Ok((doc, text))
}

/// Raw yrs time travel, the Yjs way (`ytext.toDelta(snapshot)`): the text at a snapshot of
/// a `skip_gc` document, read in place with `Text::diff_range` (which splits blocks at the
/// snapshot's boundaries, so it needs a write transaction, but changes no content).
pub fn yrs_text_at(doc: &Doc, text: &TextRef, snapshot: &yrs::Snapshot) -> String {
    let mut txn = doc.transact_mut();
    let diff = text.diff_range(&mut txn, Some(snapshot), None, |_| ());
    let mut s = String::new();
    for d in diff {
        if let yrs::Out::Any(yrs::Any::String(chunk)) = d.insert {
            s.push_str(&chunk);
        }
    }
    s
}

/// Raw yrs time travel by state: encode the document as of a snapshot
/// (`encode_state_from_snapshot`), load that into a fresh document, read the text.
pub fn yrs_state_at(doc: &Doc, snapshot: &yrs::Snapshot) -> Result<String> {
    let mut enc = yrs::updates::encoder::EncoderV1::new();
    doc.transact().encode_state_from_snapshot(snapshot, &mut enc)?;
    let bytes = yrs::updates::encoder::Encoder::to_vec(enc);
    let (d, t) = yrs_load(&bytes)?;
    Ok(yrs_text(&d, &t))
}

// ---------------------------------------------------------------------------------------
// Automerge, counting in UTF-16 units too.

/// A fresh automerge document (UTF-16 code units) with a `code` text object.
pub fn automerge_doc() -> Result<(AutoCommit, automerge::ObjId)> {
    let mut doc = AutoCommit::new_with_encoding(TextEncoding::Utf16CodeUnit);
    let text = doc.put_object(automerge::ROOT, "code", ObjType::Text)?;
    doc.commit();
    Ok((doc, text))
}

/// Replays the patches on automerge with a commit per patch.
pub fn automerge_local(patches: &[Patch]) -> Result<(AutoCommit, automerge::ObjId)> {
    let (mut doc, text) = automerge_doc()?;
    for p in patches {
        doc.splice_text(&text, p.pos as usize, p.del as isize, &p.ins)?;
        doc.commit();
    }
    Ok((doc, text))
}

/// Like [`automerge_local`], and records the heads after each patch count in `marks` that
/// the patches reach.
pub fn automerge_local_marked(
    patches: &[Patch],
    marks: &[usize],
) -> Result<(AutoCommit, automerge::ObjId, Vec<Vec<automerge::ChangeHash>>)> {
    let (mut doc, text) = automerge_doc()?;
    let mut heads = Vec::new();
    for (i, p) in patches.iter().enumerate() {
        doc.splice_text(&text, p.pos as usize, p.del as isize, &p.ins)?;
        doc.commit();
        if marks.contains(&(i + 1)) {
            heads.push(doc.get_heads());
        }
    }
    Ok((doc, text, heads))
}

/// Every change of an automerge document, in order (what a peer would receive).
pub fn automerge_changes(doc: &mut AutoCommit) -> Vec<automerge::Change> {
    doc.get_changes(&[])
}

/// Applies changes on a fresh replica, `batch` changes per `apply_changes` call.
pub fn automerge_apply(changes: &[automerge::Change], batch: usize) -> Result<AutoCommit> {
    let mut doc = AutoCommit::new_with_encoding(TextEncoding::Utf16CodeUnit);
    for chunk in changes.chunks(batch.max(1)) {
        doc.apply_changes(chunk.iter().cloned())?;
    }
    Ok(doc)
}

/// The `code` text of an automerge document (found by name, for received replicas).
pub fn automerge_text(doc: &AutoCommit) -> Result<String> {
    let Some((_, id)) = doc.get(automerge::ROOT, "code")? else { bail!("no code object") };
    Ok(doc.text(&id)?)
}

// ---------------------------------------------------------------------------------------
// The room (arena-core).

/// Time of the first envelope in the benchmark rooms (unix ms).
pub const T0: u64 = 1_700_000_000_000;

/// The identities of a benchmark room.
#[derive(Debug)]
pub struct Cast {
    /// The room key.
    pub room_key: Identity,
    /// The host, who types the trace.
    pub host: Identity,
    /// A second replica that receives.
    pub peer: Identity,
}

impl Default for Cast {
    fn default() -> Self {
        Cast {
            room_key: Identity::from_passphrase("bench room"),
            host: Identity::from_passphrase("bench host"),
            peer: Identity::from_passphrase("bench peer"),
        }
    }
}

/// Creates a room on `store` with the host admitted (its first envelope holds the meta).
pub fn arena_room<S: Store>(cast: &Cast, store: S) -> Result<Room<S>> {
    let meta = Meta { language: "text".into(), title: "bench".into(), ..Meta::default() };
    Ok(Room::create(&cast.room_key, cast.host.clone(), 0, store, meta, T0)?)
}

/// Like [`arena_room`] with a chosen configuration (what `Room::create` does, spelled out).
pub fn arena_room_with<S: Store>(cast: &Cast, store: S, cfg: RoomConfig) -> Result<Room<S>> {
    let invite = Invite::issue(&cast.room_key, Role::Host, T0 / 1000 + 365 * 86_400, 0, T0);
    let adm = Admission::sign(&cast.host, &invite, "host", T0);
    let mut room = Room::open(cast.room_key.public(), cast.host.clone(), 0, store, cfg, T0)?;
    room.admit(&adm, Some(T0))?;
    let meta = Meta { language: "text".into(), title: "bench".into(), created_at: T0, ..Meta::default() };
    room.edit(T0, |e| e.set_meta_record(&meta))?;
    Ok(room)
}

/// A configuration that never checkpoints (to isolate the checkpoints' share).
pub fn no_checkpoints() -> RoomConfig {
    RoomConfig { checkpoint_every: u64::MAX / 2, checkpoint_interval_ms: u64::MAX / 2, ..RoomConfig::default() }
}

/// Types the patches into the room, one `Room::edit` (transaction + signed envelope + log
/// append) per patch, one simulated millisecond apart. Returns the envelopes when `keep`.
pub fn arena_local<S: Store>(room: &mut Room<S>, patches: &[Patch], t0: u64, keep: bool) -> Result<Vec<Envelope>> {
    let mut out = Vec::with_capacity(if keep { patches.len() } else { 0 });
    for (i, p) in patches.iter().enumerate() {
        let env = room.edit(t0 + i as u64, |e| e.splice_code(p.pos, p.del, &p.ins))?;
        if keep {
            if let Some(env) = env {
                out.push(env);
            }
        }
    }
    Ok(out)
}

/// Like [`arena_local`], and makes a version after each patch index in `versions_at`.
/// Returns the version ids, with the log length at each.
pub fn arena_local_with_versions<S: Store>(
    room: &mut Room<S>,
    patches: &[Patch],
    t0: u64,
    versions_at: &[usize],
) -> Result<Vec<(String, u64)>> {
    let mut ids = Vec::new();
    for (i, p) in patches.iter().enumerate() {
        let now = t0 + i as u64;
        room.edit(now, |e| e.splice_code(p.pos, p.del, &p.ins))?;
        if versions_at.contains(&(i + 1)) {
            let v = room.create_version(&format!("after patch {}", i + 1), VersionCause::Manual, now)?;
            ids.push((v.id, room.store().log_len()));
        }
    }
    Ok(ids)
}

/// A second replica of `room_id` that knows the host's admission and nothing else.
pub fn arena_peer<S: Store>(
    cast: &Cast,
    room_id: RoomId,
    admissions: &[arena_core::Admission],
    store: S,
) -> Result<Room<S>> {
    let mut peer = Room::open(room_id, cast.peer.clone(), 0, store, RoomConfig::default(), T0)?;
    for a in admissions {
        peer.admit(a, None)?;
    }
    Ok(peer)
}

/// Everything a replica needs to receive a recorded room: its id, the admissions and the
/// envelopes in log order (the meta envelope first).
#[derive(Clone, Debug)]
pub struct Recording {
    /// The room.
    pub room: RoomId,
    /// Admissions to hand the receiver.
    pub admissions: Vec<arena_core::Admission>,
    /// Every envelope in log order.
    pub envelopes: Vec<Envelope>,
}

impl Recording {
    /// The envelopes in their wire form (what arrives from the network).
    pub fn wire(&self) -> Vec<Vec<u8>> {
        self.envelopes.iter().map(Envelope::encode).collect()
    }
}

/// Types the trace in an in-memory room and records every envelope.
pub fn record(cast: &Cast, patches: &[Patch]) -> Result<(Room<MemoryStore>, Recording)> {
    let mut room = arena_room(cast, MemoryStore::new())?;
    arena_local(&mut room, patches, T0 + 1, false)?;
    let envelopes = room.store().log_range(0, u64::MAX)?.into_iter().map(|e| e.envelope).collect();
    let rec = Recording { room: room.id(), admissions: room.ledger().admissions(), envelopes };
    Ok((room, rec))
}

/// Receives the wire envelopes on a fresh in-memory replica, `batch` per `Room::receive`
/// call (decode + check + batch verify + apply + log). Fails if any is not applied.
pub fn arena_receive(cast: &Cast, rec: &Recording, wire: &[Vec<u8>], batch: usize) -> Result<Room<MemoryStore>> {
    let mut peer = arena_peer(cast, rec.room, &rec.admissions, MemoryStore::new())?;
    receive_into(&mut peer, rec.room, wire, batch)?;
    Ok(peer)
}

/// Feeds wire envelopes into `peer`, `batch` per call.
pub fn receive_into<S: Store>(peer: &mut Room<S>, room: RoomId, wire: &[Vec<u8>], batch: usize) -> Result<()> {
    for (i, chunk) in wire.chunks(batch.max(1)).enumerate() {
        let envs = chunk.iter().map(|b| Envelope::decode(b, room)).collect::<arena_core::Result<Vec<_>>>()?;
        let n = envs.len();
        let r = peer.receive(envs, T0 + i as u64)?;
        ensure!(
            r.applied.len() == n && r.rejected.is_empty(),
            "batch {i}: {} of {n} applied, {:?}",
            r.applied.len(),
            r.rejected.first()
        );
    }
    Ok(())
}

/// Catch-up the way a late joiner does it: a `Want`, the host's answer, handled.
pub fn arena_catch_up<S: Store, T: Store>(host: &Room<S>, peer: &mut Room<T>) -> Result<()> {
    let Wire::Want(have) = peer.want() else { bail!("want() did not return a Want") };
    for msg in host.answer(&have)? {
        peer.handle(msg, T0)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Timing helpers.

/// On-CPU time of the calling thread so far (`CLOCK_THREAD_CPUTIME_ID`), where the OS
/// provides it.
#[cfg(unix)]
pub fn thread_cpu_time() -> Option<Duration> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(Duration::new(u64::try_from(t.tv_sec).ok()?, u32::try_from(t.tv_nsec).ok()?))
}

/// On-CPU time of the calling thread: not available here.
#[cfg(not(unix))]
pub fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Which clock [`time`] and [`median_of`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Wall-clock time (`Instant`).
    Wall,
    /// On-CPU time of the benchmark thread: what the work costs on one core, not inflated
    /// by other processes sharing the machine (but not counting helper threads, e.g. sled's
    /// flusher).
    ThreadCpu,
}

static CLOCK: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Chooses the clock for [`time`] and [`median_of`]; falls back to wall-clock time when the
/// thread's CPU time cannot be read. Returns the clock in use.
pub fn use_clock(clock: Clock) -> Clock {
    let c = if clock == Clock::ThreadCpu && thread_cpu_time().is_some() { Clock::ThreadCpu } else { Clock::Wall };
    CLOCK.store(u8::from(c == Clock::ThreadCpu), std::sync::atomic::Ordering::Relaxed);
    c
}

/// The clock in use.
pub fn clock() -> Clock {
    if CLOCK.load(std::sync::atomic::Ordering::Relaxed) == 1 {
        Clock::ThreadCpu
    } else {
        Clock::Wall
    }
}

/// A start point on the clock in use.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Stopwatch {
    /// Starts now.
    pub fn start() -> Self {
        let cpu = if clock() == Clock::ThreadCpu { thread_cpu_time() } else { None };
        Stopwatch { wall: Instant::now(), cpu }
    }

    /// Time since the start on the clock in use.
    pub fn elapsed(&self) -> Duration {
        match (self.cpu, thread_cpu_time()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => self.wall.elapsed(),
        }
    }

    /// Wall-clock time since the start.
    pub fn wall(&self) -> Duration {
        self.wall.elapsed()
    }
}

/// Times `f` once (on the clock in use, see [`use_clock`]).
pub fn time<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Stopwatch::start();
    let r = f();
    (r, t.elapsed())
}

/// The median of `n` runs of `f` (each gets a fresh input from `setup`, not timed).
pub fn median_of<I, R>(n: usize, mut setup: impl FnMut() -> I, mut f: impl FnMut(I) -> R) -> Duration {
    let mut v: Vec<Duration> = (0..n.max(1))
        .map(|_| {
            let input = setup();
            let t = Stopwatch::start();
            let r = f(input);
            let d = t.elapsed();
            drop(r);
            d
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

/// Total size of the files under `dir` (a sled database on disk).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Resident memory of a process (`"self"` or a pid), from `/proc/{pid}/status`; `None`
/// when it cannot be read (the process is gone, or this is not Linux).
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn utf16_conversion_matches_a_naive_replay() {
        // Code-point splices over text with astral characters (emoji: 2 UTF-16 units).
        let start = "a😀b";
        let ops: &[(usize, usize, &str)] =
            &[(1, 0, "🎉x"), (0, 1, ""), (2, 2, "é😀😀"), (5, 0, "end"), (0, 3, "Z"), (1, 2, ""), (0, 0, "")];
        let mut chars: Vec<char> = start.chars().collect();
        let mut conv = Utf16Converter::new(start);
        let mut patches = Vec::new();
        for &(pos, del, ins) in ops {
            chars.splice(pos..pos + del, ins.chars());
            patches.push(conv.convert(pos, del, ins).unwrap());
            assert_eq!(conv.len_chars(), chars.len());
        }
        let expected: String = chars.into_iter().collect();
        assert_eq!(apply_utf16(start, &patches), expected);
        assert_eq!(patches[0], Patch { pos: 1, del: 0, ins: "🎉x".into() });
        assert_eq!(patches[2], Patch { pos: 3, del: 3, ins: "é😀😀".into() });
        assert!(conv.convert(100, 0, "").is_err());
    }

    #[test]
    fn yrs_automerge_and_room_agree_on_a_small_trace() {
        let patches = vec![
            Patch { pos: 0, del: 0, ins: "hello 😀 world".into() },
            Patch { pos: 6, del: 2, ins: "🎉🎉".into() },
            Patch { pos: 0, del: 1, ins: "H".into() },
        ];
        let expected = apply_utf16("", &patches);
        let (doc, text, updates) = yrs_local(&patches, true);
        assert_eq!(yrs_text(&doc, &text), expected);
        let (d2, t2) = yrs_apply_each(&updates).unwrap();
        assert_eq!(yrs_text(&d2, &t2), expected);
        let (mut am, _) = automerge_local(&patches).unwrap();
        assert_eq!(automerge_text(&am).unwrap(), expected);
        let changes = automerge_changes(&mut am);
        assert_eq!(automerge_text(&automerge_apply(&changes, 2).unwrap()).unwrap(), expected);
        let cast = Cast::default();
        let (room, rec) = record(&cast, &patches).unwrap();
        assert_eq!(room.doc().code(), expected);
        let peer = arena_receive(&cast, &rec, &rec.wire(), 2).unwrap();
        assert_eq!(peer.doc().code(), expected);
    }

    #[test]
    fn yrs_time_travel_by_snapshot() {
        let mut patches = Vec::new();
        for i in 0..200u32 {
            patches.push(Patch { pos: (i * 7) % (i + 1), del: u32::from(i % 3 == 0 && i > 0), ins: format!("x{i}") });
        }
        let mut marks = vec![50usize, 120, 200];
        let (doc, text, _, snaps) = yrs_local_marked(&patches, &marks);
        for (m, snap) in marks.drain(..).zip(&snaps) {
            let expected = apply_utf16("", &patches[..m]);
            assert_eq!(yrs_text_at(&doc, &text, snap), expected, "diff_range at {m}");
            match yrs_state_at(&doc, snap) {
                Ok(t) => assert_eq!(t, expected, "state at {m}"),
                Err(e) => eprintln!("encode_state_from_snapshot at {m}: {e}"),
            }
        }
        let _: Option<Snapshot> = None;
    }

    #[test]
    fn thread_cpu_clock_counts_work_not_sleep() {
        if use_clock(Clock::ThreadCpu) == Clock::Wall {
            return;
        }
        let (_, slept) = time(|| std::thread::sleep(Duration::from_millis(50)));
        let (x, spun) = time(|| (0..20_000_000u64).fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b)));
        std::hint::black_box(x);
        assert!(slept < Duration::from_millis(20), "sleep counted: {slept:?}");
        assert!(spun > Duration::from_millis(1), "spin not counted: {spun:?}");
        use_clock(Clock::Wall);
    }

    #[test]
    fn traces_load_when_present() {
        if !traces_dir().join("sveltecomponent.json.gz").exists() {
            eprintln!("traces not found in {}; skipped", traces_dir().display());
            return;
        }
        let t = load_trace("sveltecomponent").unwrap();
        assert_eq!(t.patches.len(), 19_749);
        let (doc, text, _) = yrs_local(&t.patches, false);
        assert_eq!(yrs_text(&doc, &text), t.end);
    }
}
