//! Replays the real editing traces (see `shared/data/traces/README.md`) through rooms: one
//! signed envelope per trace transaction on the writing replica, a second replica that
//! receives every envelope in batches, and both must end with the trace's `endContent`.
//! The concurrent trace forks one replica per agent and delivers exactly the envelopes each
//! transaction's `parents` name before applying it, then merges.
//!
//! The traces live outside the repository: `ARENA_TRACES_DIR`, or `shared/data/traces` next
//! to the workspace. Without them every test here prints `SKIPPED` and passes.

mod support;

use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use arena_core::{Edit, Envelope, MemoryStore, Role, Room, Store};

use arena_testkit::traces::{self, char_to_utf16, traces_dir, RawFile, RawFileTxn};
use support::{party, sync_all, T0};

type Trace = RawFile;
type Txn = RawFileTxn;

const KNOWN: &[&str] =
    &["automerge-paper.json.gz", "rustcode.json.gz", "sveltecomponent.json.gz", "friendsforever.concurrent.json.gz"];

/// The trace `name`, or None (after a loud note) when the traces are not here.
fn load(name: &str) -> Result<Option<Trace>> {
    traces::find(name).map(|path| traces::read_raw(&path)).transpose()
}

/// Positions in code points → UTF-16 units, for the RoomDoc. While the document has seen no
/// character outside the BMP the two agree, so the (linear) conversion only runs after one.
#[derive(Default)]
struct Units {
    astral: bool,
}

impl Units {
    fn note(&mut self, text: &str) {
        self.astral |= text.chars().any(|c| c.len_utf16() == 2);
    }

    fn splice(&mut self, e: &mut Edit<'_, '_>, pos: usize, del: usize, ins: &str) -> Result<()> {
        let (p16, d16) = if self.astral {
            let code = e.code();
            let p = char_to_utf16(&code, pos);
            (p, char_to_utf16(&code, pos + del) - p)
        } else {
            (pos, del)
        };
        e.splice_code(u32::try_from(p16)?, u32::try_from(d16)?, ins);
        self.note(ins);
        Ok(())
    }
}

/// One edit per transaction; returns its envelope (None when the transaction changed nothing).
fn apply_txn(room: &mut Room<MemoryStore>, units: &mut Units, txn: &Txn, now: u64) -> Result<Option<Envelope>> {
    let mut failed = None;
    let env = room.edit(now, |e| {
        for (pos, del, ins) in &txn.patches {
            if let Err(err) = units.splice(e, *pos, *del, ins) {
                failed = Some(err);
                return;
            }
        }
    })?;
    if let Some(err) = failed {
        return Err(err);
    }
    Ok(env)
}

/// A sequential trace: the host writes, an observer replica receives everything in batches.
fn replay_sequential(name: &str, trace: &Trace) -> Result<()> {
    ensure!(trace.kind.as_deref().unwrap_or("sequential") != "concurrent", "{name} is concurrent");
    let started = Instant::now();
    let p = party(name, &[Role::Observer], T0)?;
    let [mut host, mut replica]: [Room<MemoryStore>; 2] =
        p.rooms.try_into().map_err(|_| anyhow::anyhow!("party of two expected"))?;
    let mut units = Units::default();
    let mut now = T0;
    if !trace.start_content.is_empty() {
        units.note(&trace.start_content);
        host.edit(now, |e| e.splice_code(0, 0, &trace.start_content))?;
    }
    let mut written = 0usize;
    for (i, txn) in trace.txns.iter().enumerate() {
        now += 1;
        if apply_txn(&mut host, &mut units, txn, now).with_context(|| format!("{name} txn {i}"))?.is_some() {
            written += 1;
        }
    }
    let wrote = started.elapsed();
    ensure!(host.doc().code() == trace.end_content, "{name}: the writer's text is not endContent");

    // Everything the host logged (its metadata, then one envelope per transaction).
    let log: Vec<Envelope> = host.store().log_range(0, u64::MAX)?.into_iter().map(|e| e.envelope).collect();
    let extra = usize::from(!trace.start_content.is_empty()) + 1;
    ensure!(log.len() == written + extra, "{name}: {} envelopes logged for {written} edits", log.len());
    let sizes = [1usize, 7, 64, 500, 4096];
    let mut rest = &log[..];
    let mut k = 0;
    while !rest.is_empty() {
        let n = sizes[k % sizes.len()].min(rest.len());
        k += 1;
        now += 1;
        let r = replica.receive(rest[..n].to_vec(), now)?;
        ensure!(r.rejected.is_empty(), "{name}: envelopes refused: {:?}", r.rejected);
        ensure!(r.applied.len() == n && r.duplicates == 0 && r.buffered == 0, "{name}: batch of {n} not applied whole");
        rest = &rest[n..];
    }
    ensure!(replica.doc().code() == trace.end_content, "{name}: the receiving replica's text is not endContent");
    ensure!(replica.doc().state_vector() == host.doc().state_vector(), "{name}: state vectors differ");
    ensure!(replica.envelope_vector() == host.envelope_vector(), "{name}: envelope vectors differ");
    ensure!(replica.doc().canonical_state() == host.doc().canonical_state(), "{name}: canonical states differ");
    eprintln!(
        "{name}: {} txns, {} envelopes, {} chars; written in {:.1?}, total {:.1?}",
        trace.txns.len(),
        log.len(),
        trace.end_content.chars().count(),
        wrote,
        started.elapsed()
    );
    Ok(())
}

/// A concurrent trace: one replica per agent. Before an agent applies a transaction it
/// receives exactly the other agents' envelopes its `parents` (transitively) include, so
/// the positions refer to the document they were recorded against. Then everything merges.
fn replay_concurrent(name: &str, trace: &Trace) -> Result<()> {
    let started = Instant::now();
    let agents = trace.num_agents.max(1 + trace.txns.iter().map(|t| t.agent).max().unwrap_or(0));
    let mut p = party(name, &vec![Role::Candidate; agents - 1], T0)?;
    p.connect(T0)?;
    let mut rooms = p.rooms;
    let mut units: Vec<Units> = (0..agents).map(|_| Units::default()).collect();
    if !trace.start_content.is_empty() {
        units.iter_mut().for_each(|u| u.note(&trace.start_content));
        let env = rooms[0].edit(T0, |e| e.splice_code(0, 0, &trace.start_content))?;
        for r in rooms.iter_mut().skip(1) {
            r.receive(env.iter().cloned().collect(), T0)?;
        }
    }
    // Per agent, the code envelopes it wrote, in order; per transaction, how many of each
    // agent's envelopes its history includes (itself included).
    let mut own: Vec<Vec<Envelope>> = vec![Vec::new(); agents];
    let mut delivered = vec![vec![0usize; agents]; agents];
    let mut frontier: Vec<Vec<usize>> = Vec::with_capacity(trace.txns.len());
    let mut now = T0;
    for (i, txn) in trace.txns.iter().enumerate() {
        let a = txn.agent;
        let mut need = vec![0usize; agents];
        for &parent in &txn.parents {
            let f = frontier.get(parent).with_context(|| format!("txn {i}: parent {parent} is not earlier"))?;
            for (n, &c) in need.iter_mut().zip(f) {
                *n = (*n).max(c);
            }
        }
        ensure!(need[a] == own[a].len(), "txn {i}: agent {a} would lose its own edits (parents {:?})", txn.parents);
        now += 1;
        for b in (0..agents).filter(|&b| b != a) {
            let have = delivered[a][b];
            ensure!(have <= need[b], "txn {i}: agent {a} already saw more of agent {b} than its parents");
            if have < need[b] {
                let r = rooms[a].receive(own[b][have..need[b]].to_vec(), now)?;
                ensure!(r.rejected.is_empty() && r.applied.len() == need[b] - have, "txn {i}: merge refused");
                delivered[a][b] = need[b];
            }
        }
        if let Some(env) =
            apply_txn(&mut rooms[a], &mut units[a], txn, now).with_context(|| format!("{name} txn {i}"))?
        {
            own[a].push(env);
        }
        need[a] = own[a].len();
        frontier.push(need);
        // Merged content is what later positions of this agent count against.
        for b in 0..agents {
            if delivered[a][b] > 0 {
                units[a].astral |= units[b].astral;
            }
        }
    }
    sync_all(&mut rooms, now + 1)?;
    for (i, r) in rooms.iter().enumerate() {
        ensure!(r.doc().code() == trace.end_content, "{name}: agent {i}'s merged text is not endContent");
    }
    let canonical = rooms[0].doc().canonical_state();
    for (i, r) in rooms.iter().enumerate().skip(1) {
        ensure!(r.doc().canonical_state() == canonical, "{name}: agent {i}'s canonical state differs");
        ensure!(r.doc().state_vector() == rooms[0].doc().state_vector(), "{name}: agent {i}'s state vector differs");
    }
    let merges = trace.txns.iter().filter(|t| t.parents.len() > 1).count();
    eprintln!(
        "{name}: {} txns by {agents} agents, {merges} merges, {} chars, total {:.1?}",
        trace.txns.len(),
        trace.end_content.chars().count(),
        started.elapsed()
    );
    Ok(())
}

fn replay(name: &str, trace: &Trace) -> Result<()> {
    match trace.kind.as_deref() {
        Some("concurrent") => replay_concurrent(name, trace),
        None | Some("sequential") => replay_sequential(name, trace),
        Some(other) => bail!("{name}: unknown trace kind {other:?}"),
    }
}

fn replay_named(name: &str) -> Result<()> {
    match load(name)? {
        Some(trace) => replay(name, &trace),
        None => Ok(()),
    }
}

#[test]
fn automerge_paper() -> Result<()> {
    replay_named("automerge-paper.json.gz")
}

#[test]
fn rustcode() -> Result<()> {
    replay_named("rustcode.json.gz")
}

#[test]
fn sveltecomponent() -> Result<()> {
    replay_named("sveltecomponent.json.gz")
}

#[test]
fn friendsforever_concurrent() -> Result<()> {
    let Some(trace) = load("friendsforever.concurrent.json.gz")? else { return Ok(()) };
    ensure!(trace.kind.as_deref() == Some("concurrent"), "friendsforever is not marked concurrent");
    replay("friendsforever", &trace)
}

/// Traces added to the directory later are replayed too.
#[test]
fn any_other_trace_in_the_dir() -> Result<()> {
    let dir = traces_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("SKIPPED: traces not found at {}", dir.display());
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.ends_with(".json.gz") && !KNOWN.contains(&name.as_str()) {
            replay(&name, &traces::read_raw(&path)?)?;
        }
    }
    Ok(())
}
