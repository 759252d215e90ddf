//! `arena-compare`: replays the editing traces through the room (arena-core), raw yrs and
//! automerge in one process (long replays once, short measurements as the median of a few
//! runs) and prints a Markdown report against the issue's targets, with the per-stage
//! breakdowns behind them. A benchmark, not a test: run it in release. Times are the
//! benchmark thread's CPU time by default (the machine may be shared), see `--wall`.
//!
//! ```text
//! cargo run --release -p arena-benches --bin arena-compare            # all traces (a few minutes)
//! cargo run --release -p arena-benches --bin arena-compare -- --quick # small traces only
//! ```
//!
//! Options: `--quick` (sveltecomponent and rustcode only; history measured on rustcode),
//! `--automerge-prefix N` (automerge replays only the first N patches of automerge-paper),
//! `--repeat N` (runs of each short measurement, median reported; default 5), `--wall`
//! (report wall-clock time instead of the benchmark thread's CPU time).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use arena_benches::*;
use arena_core::{ChainHead, Checked, Cut, Envelope, Ledger, MemoryStore, Room, RoomConfig, RoomDoc, SledDb, Store};
use automerge::ReadDoc;
use yrs::updates::decoder::Decode;
use yrs::Transact;

struct Args {
    quick: bool,
    wall: bool,
    automerge_prefix: Option<usize>,
    repeat: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args { quick: false, wall: false, automerge_prefix: None, repeat: 5 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--wall" => a.wall = true,
            "--automerge-prefix" => a.automerge_prefix = Some(it.next().context("--automerge-prefix N")?.parse()?),
            "--repeat" => a.repeat = it.next().context("--repeat N")?.parse()?,
            "-h" | "--help" => {
                eprintln!("usage: arena-compare [--quick] [--wall] [--automerge-prefix N] [--repeat N]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------
// Formatting.

fn dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn per(d: Duration, n: usize) -> Duration {
    d / (n.max(1) as u32)
}

fn per_op(d: Duration, n: usize) -> String {
    let ns = d.as_nanos() as f64 / n.max(1) as f64;
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn rate(d: Duration, n: usize) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-12)
}

fn thousands(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate_str(d: Duration, n: usize) -> String {
    format!("{}/s", thousands(rate(d, n) as u64))
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MiB ({} B)", n as f64 / (1u64 << 20) as f64, thousands(n))
    } else if n >= 1 << 10 {
        format!("{:.1} KiB ({} B)", n as f64 / 1024.0, thousands(n))
    } else {
        format!("{n} B")
    }
}

/// "2.31 s · 8.90 µs/patch"
fn total_per(d: Duration, n: usize, unit: &str) -> String {
    format!("{} · {}/{unit}", dur(d), per_op(d, n))
}

/// "2.31 s · 112,000 env/s"
fn total_rate(d: Duration, n: usize, unit: &str) -> String {
    format!("{} · {} {unit}/s", dur(d), thousands(rate(d, n) as u64))
}

fn yes(ok: bool, detail: String) -> String {
    format!("{} ({detail})", if ok { "**yes**" } else { "**no**" })
}

#[derive(Default)]
struct Table {
    rows: Vec<[String; 6]>,
}

impl Table {
    fn row(
        &mut self,
        m: impl Into<String>,
        arena: impl Into<String>,
        yrs: impl Into<String>,
        am: impl Into<String>,
        target: impl Into<String>,
        met: impl Into<String>,
    ) {
        self.rows.push([m.into(), arena.into(), yrs.into(), am.into(), target.into(), met.into()]);
    }

    fn render(&self, out: &mut String) {
        out.push_str("| measurement | arena | raw yrs | automerge | target | met? |\n|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
    }
}

fn progress(msg: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    eprintln!("[arena-compare {:>7.1}s] {msg}", t.as_secs_f64());
}

/// Envelopes received one per call in the "live" row.
const LIVE: usize = 10_000;
/// automerge changes applied one per call in the "live" row.
const AM_LIVE: usize = 100;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median of `n` timed calls of `f` (each gets a fresh input from `setup`, untimed).
fn med<I, R>(n: usize, mut setup: impl FnMut() -> I, mut f: impl FnMut(I) -> R) -> Duration {
    median_of(n, &mut setup, &mut f)
}

/// Median of `n` calls of `f` on the clock in use, and the wall-clock median.
fn lat<R>(n: usize, mut f: impl FnMut() -> R) -> (Duration, Duration) {
    let (mut c, mut w) = (Vec::new(), Vec::new());
    for _ in 0..n.max(1) {
        let sw = Stopwatch::start();
        let r = f();
        c.push(sw.elapsed());
        w.push(sw.wall());
        drop(std::hint::black_box(r));
    }
    (median(c), median(w))
}

/// "4.1 ms" or "4.1 ms (wall 4.3 ms)" when the clock is the thread's CPU time.
fn lat_str((c, w): (Duration, Duration)) -> String {
    if clock() == Clock::Wall {
        dur(c)
    } else {
        format!("{} (wall {})", dur(c), dur(w))
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------

/// Results of one trace, kept for the summary.
struct TraceRun {
    name: String,
    n: usize,
    local_yrs: Duration,
    local_yrs_txn: Duration,
    local_room_mem: Duration,
    local_room_sled: Duration,
    recv_batch: Duration,
    recv_n: usize,
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let clock = use_clock(if args.wall { Clock::Wall } else { Clock::ThreadCpu });
    let started = Instant::now();
    let cpu0 = thread_cpu_time();
    let load_start = loadavg();
    let cast = Cast::default();
    let names: Vec<&str> = if args.quick { vec!["sveltecomponent", "rustcode"] } else { SEQUENTIAL.to_vec() };
    let history_name = *names.last().context("no traces")?;

    let mut out = String::new();
    let mut table = Table::default();
    let mut notes: Vec<String> = Vec::new();
    let mut runs = Vec::new();
    let mut sections = String::new();

    for name in &names {
        progress(&format!("loading {name}"));
        let trace = load_trace(name)?;
        let is_history = *name == history_name;
        let run = run_trace(&cast, &trace, is_history, &args, &mut table, &mut sections, &mut notes)?;
        runs.push(run);
    }

    progress("signatures");
    let crypto = crypto_section(&cast, &load_trace(names[names.len().min(2) - 1])?, &args)?;

    // ---- report
    let cmd = std::iter::once("cargo run --release -p arena-benches --bin arena-compare".to_owned())
        .chain({
            let rest: Vec<String> = std::env::args().skip(1).collect();
            if rest.is_empty() {
                None
            } else {
                Some(format!("-- {}", rest.join(" ")))
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let _ = writeln!(out, "## arena-compare results\n");
    let _ = writeln!(out, "Command: `{cmd}`  ");
    let _ = writeln!(
        out,
        "Machine: {} × {}, load average {} at start, {} at end; total run {} wall{}.  ",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model(),
        load_start,
        loadavg(),
        dur(started.elapsed()),
        match (cpu0, thread_cpu_time()) {
            (Some(a), Some(b)) => format!(", {} on the benchmark thread's CPU", dur(b.saturating_sub(a))),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "Clock: {}  ",
        match clock {
            Clock::ThreadCpu => "on-CPU time of the benchmark thread (`CLOCK_THREAD_CPUTIME_ID`), so other processes on the shared cores do not inflate the figures; \
                                sled's background flusher thread is not counted. Latency rows (cold load, time travel) also give the wall-clock median.",
            Clock::Wall => "wall-clock (`--wall`); figures include any interference from other processes.",
        }
    );
    let _ = writeln!(
        out,
        "Traces: {} (`$ARENA_TRACES_DIR` or ../shared/data/traces). One transaction per patch everywhere; the room also makes one signed envelope per patch. \
         Positions are UTF-16 units (yrs `OffsetKind::Utf16`, automerge `TextEncoding::Utf16CodeUnit`); yrs is configured like the room document (`skip_gc`). \
         Local replays: median of 3 round-robin passes for the two small traces, one pass for automerge-paper; other short measurements: median of {} runs. Single-threaded.\n",
        traces_dir().display(),
        args.repeat
    );
    let _ = writeln!(out, "### Summary against the targets\n");
    table.render(&mut out);
    out.push('\n');
    for n in &notes {
        let _ = writeln!(out, "- {n}");
    }
    out.push('\n');
    let _ = writeln!(out, "{crypto}");
    out.push_str(&sections);
    let _ = writeln!(out, "### Local path vs raw yrs, per trace\n");
    let _ = writeln!(out, "Ratios are against raw yrs with `encode_update_v1`, each update dropped after encoding (an editor produces the update, sends it and forgets it).\n");
    let _ = writeln!(out, "| trace | patches | raw yrs txn only | raw yrs txn + update | Room::edit (memory) | ratio | Room::edit (sled) | ratio | remote env/s (batches of 1000) |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let _ = writeln!(
            out,
            "| {} | {} | {}/patch | {}/patch | {}/patch | {:.2}× | {}/patch | {:.2}× | {} |",
            r.name,
            thousands(r.n as u64),
            per_op(r.local_yrs_txn, r.n),
            per_op(r.local_yrs, r.n),
            per_op(r.local_room_mem, r.n),
            r.local_room_mem.as_secs_f64() / r.local_yrs.as_secs_f64(),
            per_op(r.local_room_sled, r.n),
            r.local_room_sled.as_secs_f64() / r.local_yrs.as_secs_f64(),
            thousands(rate(r.recv_batch, r.recv_n) as u64),
        );
    }
    println!("{out}");
    progress(&format!("done in {}", dur(started.elapsed())));
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[allow(clippy::too_many_arguments)]
fn run_trace(
    cast: &Cast,
    trace: &Trace,
    is_history: bool,
    args: &Args,
    table: &mut Table,
    sections: &mut String,
    notes: &mut Vec<String>,
) -> Result<TraceRun> {
    let n = trace.patches.len();
    let name = trace.name.as_str();
    let label = format!("{name} ({} patches)", thousands(n as u64));
    // Time-travel points: after 10%, 50% and 90% of the patches (versions are made there).
    let marks: Vec<usize> = if is_history { vec![n / 10, n / 2, n * 9 / 10] } else { Vec::new() };

    // ---------------- local path
    // Short traces: 3 passes, round-robin (the machine may be busy), median of each.
    let passes = if n < 100_000 { 3 } else { 1 };
    let mut t_yrs_txn = Vec::new();
    let mut t_yrs_enc = Vec::new();
    let mut t_roomdoc = Vec::new();
    let mut t_room_mem = Vec::new();
    let mut t_room_nocp = Vec::new();
    let mut kept_room = None;
    for pass in 0..passes {
        progress(&format!(
            "{name}: local pass {}/{passes}: raw yrs, RoomDoc::edit, Room::edit (memory, with and without checkpoints)",
            pass + 1
        ));
        let (r, d) = time(|| yrs_local(&trace.patches, false));
        drop(r);
        t_yrs_txn.push(d);
        let (r, d) = time(|| yrs_local_send(&trace.patches));
        ensure!(yrs_text(&r.0, &r.1) == trace.end, "raw yrs replay of {name} diverged");
        drop(r);
        t_yrs_enc.push(d);
        let (rd, d) = time(|| {
            let d = RoomDoc::new(7);
            for p in &trace.patches {
                let _ = d.edit(|e| e.splice_code(p.pos, p.del, &p.ins));
            }
            d
        });
        t_roomdoc.push(d);
        ensure!(rd.code() == trace.end, "RoomDoc replay of {name} diverged");
        drop(rd);
        drop(kept_room.take());
        let mut room = arena_room(cast, MemoryStore::new())?;
        let (r, d) = time(|| arena_local(&mut room, &trace.patches, T0 + 1, false));
        r?;
        t_room_mem.push(d);
        ensure!(room.doc().code() == trace.end, "room replay of {name} diverged");
        kept_room = Some(room);
        let mut room = arena_room_with(cast, MemoryStore::new(), no_checkpoints())?;
        let (r, d) = time(|| arena_local(&mut room, &trace.patches, T0 + 1, false));
        r?;
        t_room_nocp.push(d);
    }
    let (yrs_txn, yrs_enc, roomdoc_t, room_mem, room_nocp) =
        (median(t_yrs_txn), median(t_yrs_enc), median(t_roomdoc), median(t_room_mem), median(t_room_nocp));
    progress(&format!("{name}: raw yrs, keeping every update and snapshots"));
    let ((ydoc, ytext, updates, snaps), yrs_keep) = time(|| yrs_local_marked(&trace.patches, &marks));
    ensure!(yrs_text(&ydoc, &ytext) == trace.end, "raw yrs replay of {name} diverged");
    let mut room = kept_room.context("no pass")?;
    let checkpoints_mem = room.store().checkpoints()?.len();
    let rec_envelopes: Vec<Envelope> = room.store().log_range(0, u64::MAX)?.into_iter().map(|e| e.envelope).collect();
    let rec = Recording { room: room.id(), admissions: room.ledger().admissions(), envelopes: rec_envelopes };
    let wire = rec.wire();
    let arena_state = room.doc().encode_state();
    let checkpoint_bytes = room.checkpoint(T0 + n as u64 + 1)?.encode().len();
    drop(room);

    progress(&format!("{name}: Room::edit, sled store, no checkpoints"));
    let dir0 = tempfile::tempdir()?;
    let db0 = SledDb::open(dir0.path())?;
    let mut room = arena_room_with(cast, db0.room(&cast.room_key.public())?, no_checkpoints())?;
    let (r, room_sled_nocp) = time(|| arena_local(&mut room, &trace.patches, T0 + 1, false));
    r?;
    drop((room, db0, dir0));

    progress(&format!("{name}: Room::edit, sled store"));
    let dir = tempfile::tempdir()?;
    let db = SledDb::open(dir.path())?;
    let room_id = cast.room_key.public();
    let mut sroom = arena_room(cast, db.room(&room_id)?)?;
    let (versions, room_sled) = time(|| arena_local_with_versions(&mut sroom, &trace.patches, T0 + 1, &marks));
    let versions = versions?;
    sroom.flush()?;
    ensure!(sroom.doc().code() == trace.end, "sled room replay of {name} diverged");

    // ---------------- automerge local
    let am_n = match args.automerge_prefix {
        Some(k) if name == "automerge-paper" => k.min(n),
        _ => n,
    };
    progress(&format!("{name}: automerge local ({am_n} patches)"));
    let am_marks: Vec<usize> = marks.iter().copied().filter(|m| *m <= am_n).collect();
    let (am, am_local) = time(|| automerge_local_marked(&trace.patches[..am_n], &am_marks));
    let (mut am_doc, am_text, am_heads) = am?;
    if am_n == n {
        ensure!(am_doc.text(&am_text)? == trace.end, "automerge replay of {name} diverged");
    }
    let am_label =
        |s: String| if am_n == n { s } else { format!("{s} (first {} patches only)", thousands(am_n as u64)) };
    let am_changes = automerge_changes(&mut am_doc);
    let am_save = am_doc.save();

    // ---------------- remote path
    progress(&format!("{name}: raw yrs remote"));
    let (r, yrs_apply_each_t) = time(|| yrs_apply_each(&updates));
    let (d2, t2) = r?;
    ensure!(yrs_text(&d2, &t2) == trace.end);
    drop((d2, t2));
    let (r, yrs_apply_b) = time(|| yrs_apply_batched(&updates, 1000));
    drop(r?);

    progress(&format!("{name}: Room::receive, batches of 1000"));
    let (peer, recv_batch) = time(|| arena_receive(cast, &rec, &wire, 1000));
    let peer = peer?;
    ensure!(peer.doc().code() == trace.end, "received room {name} diverged");
    drop(peer);
    // Live: the last envelopes one per call, onto a replica that already holds the rest.
    let live_n = LIVE.min(wire.len() - 1);
    let split = wire.len() - live_n;
    progress(&format!("{name}: Room::receive, last {live_n} one by one"));
    let mut peer = arena_peer(cast, rec.room, &rec.admissions, MemoryStore::new())?;
    receive_into(&mut peer, rec.room, &wire[..split], 1000)?;
    let (r, recv_one) = time(|| receive_into(&mut peer, rec.room, &wire[split..], 1));
    r?;
    ensure!(peer.doc().code() == trace.end, "received room {name} diverged (live)");
    drop(peer);
    let live_label = format!("last {} onto a replica holding the rest", thousands(live_n as u64));
    let y_split = updates.len() - live_n.min(updates.len());
    let (yd, yt) = yrs_apply_batched(&updates[..y_split], 1000)?;
    let (r, yrs_live) = time(|| -> Result<()> {
        for u in &updates[y_split..] {
            yd.transact_mut().apply_update(yrs::Update::decode_v1(u)?)?;
        }
        Ok(())
    });
    r?;
    ensure!(yrs_text(&yd, &yt) == trace.end);
    drop((yd, yt));

    progress(&format!("{name}: automerge remote"));
    let (r, am_apply_b) = time(|| automerge_apply(&am_changes, 1000));
    let r = r?;
    if am_n == n {
        ensure!(automerge_text(&r)? == trace.end, "automerge apply of {name} diverged");
    }
    drop(r);
    // automerge 0.7 walks the whole text for every applied change (quadratic one by one),
    // so only the last AM_LIVE changes, onto a replica holding the rest.
    let am_live_n = AM_LIVE.min(am_changes.len() - 1);
    let am_split = am_changes.len() - am_live_n;
    let mut am_peer = automerge_apply(&am_changes[..am_split], usize::MAX)?;
    let (r, am_apply_one) = time(|| am_changes[am_split..].iter().try_for_each(|c| am_peer.apply_changes([c.clone()])));
    r?;
    drop(am_peer);

    // ---------------- rows
    let envs = wire.len();
    let local_target = per(yrs_enc, n) * 2;
    table.row(
        format!("local, CRDT only: one txn per patch — {label}"),
        format!("RoomDoc::edit {}", total_per(roomdoc_t, n, "patch")),
        format!("txn + update {}; txn only {}", total_per(yrs_enc, n, "patch"), total_per(yrs_txn, n, "patch")),
        am_label(format!("splice + commit {}", total_per(am_local, am_n, "patch"))),
        "—",
        "—",
    );
    for (what, t) in [("memory store", room_mem), ("sled store", room_sled)] {
        let ratio = t.as_secs_f64() / yrs_enc.as_secs_f64();
        table.row(
            format!("local, edit + envelope + signature (Room::edit, {what}) — {label}"),
            total_per(t, n, "patch"),
            format!("{}/patch (txn + update)", per_op(yrs_enc, n)),
            "—",
            format!("≤ 2× raw yrs = {}/patch", per_op(local_target, 1)),
            yes(ratio <= 2.0, format!("{ratio:.2}×")),
        );
    }
    table.row(
        format!("remote, verify + apply, batches of 1000 (Room::receive from wire bytes) — {label}"),
        total_rate(recv_batch, envs, "env"),
        format!("decode + apply, 1000 per txn: {}", total_rate(yrs_apply_b, updates.len(), "upd")),
        am_label(format!("apply_changes ×1000: {}", total_rate(am_apply_b, am_changes.len(), "chg"))),
        "≥ 30,000 env/s",
        yes(rate(recv_batch, envs) >= 30_000.0, format!("{:.0} env/s", rate(recv_batch, envs))),
    );
    table.row(
        format!("remote, live: one envelope per receive ({live_label}) — {label}"),
        total_rate(recv_one, live_n, "env"),
        format!("one txn per update: {}", total_rate(yrs_live, updates.len() - y_split, "upd")),
        am_label(format!("apply_changes one by one, last {am_live_n}: {}", total_rate(am_apply_one, am_live_n, "chg"))),
        "—",
        "—",
    );
    let yrs_state_v1 = yrs_state(&ydoc);
    let yrs_state2 = yrs_state_v2(&ydoc);
    table.row(
        format!("checkpoint size (full state at the end) — {label}"),
        format!("{} state; {} as a signed checkpoint", bytes(arena_state.len() as u64), bytes(checkpoint_bytes as u64)),
        format!("{} v1; {} v2", bytes(yrs_state_v1.len() as u64), bytes(yrs_state2.len() as u64)),
        am_label(format!("{} `save()`", bytes(am_save.len() as u64))),
        "—",
        "—",
    );
    let wire_total: u64 = wire.iter().map(|w| w.len() as u64).sum();
    let upd_total: u64 = updates.iter().map(|u| u.len() as u64).sum();
    let am_total: u64 = am_changes.iter().map(|c| c.raw_bytes().len() as u64).sum();
    sroom.flush()?;
    db.flush()?;
    table.row(
        format!("history size: every envelope / update / change — {label}"),
        format!(
            "{} envelopes, {} on the wire; sled dir {} ({} checkpoints)",
            thousands(envs as u64),
            bytes(wire_total),
            bytes(dir_size(dir.path())),
            sroom.store().checkpoints()?.len()
        ),
        format!("{} updates, {}", thousands(updates.len() as u64), bytes(upd_total)),
        am_label(format!("{} changes, {}", thousands(am_changes.len() as u64), bytes(am_total))),
        "—",
        "—",
    );

    // ---------------- breakdowns for this trace
    let mut s = String::new();
    let _ = writeln!(s, "### Where the time goes — {label}\n");
    let _ = writeln!(s, "Local path, per patch (each stage timed alone over every envelope of the trace):\n");
    let _ = writeln!(s, "| stage | per patch | total |\n|---|---|---|");
    let stage = |s: &mut String, what: &str, d: Duration, k: usize| {
        let _ = writeln!(s, "| {what} | {} | {} |", per_op(d, k), dur(d));
    };
    stage(&mut s, "raw yrs: transaction only", yrs_txn, n);
    stage(&mut s, "raw yrs: transaction + `encode_update_v1`, update dropped (the baseline)", yrs_enc, n);
    stage(&mut s, "raw yrs: the same, every update kept in memory (cache pressure, see notes)", yrs_keep, n);
    stage(&mut s, "RoomDoc::edit (transaction + update)", roomdoc_t, n);
    let (_, seal_t) = time(|| {
        for e in &rec.envelopes {
            std::hint::black_box(Envelope::seal(e.room, &cast.host, e.seq, e.prev, e.session, e.update.clone()));
        }
    });
    stage(&mut s, "Envelope::seal (SHA-256 of the update + Ed25519 sign)", seal_t, envs);
    let (_, hash_t) = time(|| {
        for e in &rec.envelopes {
            std::hint::black_box(e.hash());
        }
    });
    stage(&mut s, "Envelope::hash (chain link; re-hashes the update)", hash_t, envs);
    let mut ms = MemoryStore::new();
    let (_, app_mem) = time(|| {
        for (i, e) in rec.envelopes.iter().enumerate() {
            let _ = ms.append(e, T0 + i as u64);
        }
    });
    drop(ms);
    stage(&mut s, "MemoryStore::append", app_mem, envs);
    let dir2 = tempfile::tempdir()?;
    let db2 = SledDb::open(dir2.path())?;
    let mut ss = db2.room(&rec.room)?;
    let (_, app_sled) = time(|| {
        for (i, e) in rec.envelopes.iter().enumerate() {
            let _ = ss.append(e, T0 + i as u64);
        }
    });
    drop((ss, db2, dir2));
    stage(&mut s, "SledStore::append (no flush)", app_sled, envs);
    stage(
        &mut s,
        &format!("checkpoints ({checkpoints_mem} of them): Room::edit minus Room::edit without checkpoints"),
        room_mem.saturating_sub(room_nocp),
        n,
    );
    stage(&mut s, "**Room::edit, memory store (total)**", room_mem, n);
    stage(&mut s, "Room::edit, sled store, without checkpoints", room_sled_nocp, n);
    stage(
        &mut s,
        "checkpoints written to sled: Room::edit on sled minus the same without checkpoints",
        room_sled.saturating_sub(room_sled_nocp),
        n,
    );
    stage(&mut s, "**Room::edit, sled store (total)**", room_sled, n);
    s.push('\n');

    // Remote stages.
    let _ = writeln!(s, "Remote path, per envelope:\n");
    let _ = writeln!(s, "| stage | per envelope | total |\n|---|---|---|");
    let (decoded, dec_t) =
        time(|| wire.iter().map(|b| Envelope::decode(b, rec.room)).collect::<arena_core::Result<Vec<_>>>());
    let decoded = decoded?;
    stage(&mut s, "Envelope::decode (wire bytes → envelope)", dec_t, envs);
    let mut ledger = Ledger::new(rec.room);
    for a in &rec.admissions {
        ledger.admit(a, None)?;
    }
    let (checked, check_t) = time(|| {
        decoded
            .iter()
            .map(|e| ledger.check(e, Some(ChainHead { next_seq: e.seq, last_hash: e.prev })))
            .collect::<arena_core::Result<Vec<Checked>>>()
    });
    let checked = checked?;
    stage(&mut s, "Ledger::check (role, chain, decode update, client ids, signed bytes + hash)", check_t, envs);
    let (r, one_t) = time(|| decoded.iter().zip(&checked).try_for_each(|(e, c)| ledger.verify_one(e, c)));
    r?;
    stage(&mut s, "Ed25519 verify, one by one (Ledger::verify_one)", one_t, envs);
    let refs: Vec<&Envelope> = decoded.iter().collect();
    let (r, batch_t) =
        time(|| refs.chunks(1000).zip(checked.chunks(1000)).try_for_each(|(e, c)| ledger.verify_batch(e, c)));
    r.map_err(|i| anyhow::anyhow!("batch verify failed at {i}"))?;
    stage(&mut s, "Ed25519 verify, batches of 1000 (Ledger::verify_batch)", batch_t, envs);
    stage(&mut s, "raw yrs: decode + apply, one transaction per update", yrs_apply_each_t, updates.len());
    stage(&mut s, "raw yrs: decode + apply, 1000 updates per transaction", yrs_apply_b, updates.len());
    stage(&mut s, "**Room::receive, batches of 1000 (total, from wire bytes)**", recv_batch, envs);
    stage(&mut s, "**Room::receive, one envelope per call (total)**", recv_one, live_n);
    s.push('\n');

    // ---------------- history: cold load and time travel
    if is_history {
        history(
            cast,
            trace,
            args,
            sroom,
            db,
            dir,
            &versions,
            &marks,
            &ydoc,
            &ytext,
            &snaps,
            &mut am_doc,
            &am_text,
            &am_heads,
            &am_save,
            &yrs_state_v1,
            table,
            &mut s,
            notes,
        )?;
    } else {
        drop(sroom);
    }
    sections.push_str(&s);
    Ok(TraceRun {
        name: name.to_owned(),
        n,
        local_yrs: yrs_enc,
        local_yrs_txn: yrs_txn,
        local_room_mem: room_mem,
        local_room_sled: room_sled,
        recv_batch,
        recv_n: envs,
    })
}

#[allow(clippy::too_many_arguments)]
fn history(
    cast: &Cast,
    trace: &Trace,
    args: &Args,
    sroom: Room<arena_core::SledStore>,
    db: SledDb,
    dir: tempfile::TempDir,
    versions: &[(String, u64)],
    marks: &[usize],
    ydoc: &yrs::Doc,
    ytext: &yrs::TextRef,
    snaps: &[yrs::Snapshot],
    am_doc: &mut automerge::AutoCommit,
    am_text: &automerge::ObjId,
    am_heads: &[Vec<automerge::ChangeHash>],
    am_save: &[u8],
    yrs_state_v1: &[u8],
    table: &mut Table,
    s: &mut String,
    notes: &mut Vec<String>,
) -> Result<()> {
    let name = trace.name.as_str();
    let reps = args.repeat;
    let room_id = sroom.id();
    let log_len = sroom.store().log_len();
    let cps = sroom.store().checkpoints()?;
    let label = format!("{name} room ({} envelopes, {} checkpoints, sled)", thousands(log_len), cps.len());
    let cfg = RoomConfig::default();

    // ---- time travel first (on the writer's own replica)
    progress(&format!("{name}: time travel"));
    let mut tt = Table::default();
    let mut worst_arena = (Duration::ZERO, Duration::ZERO);
    let mut worst_label = String::new();
    for (i, (id, idx)) in versions.iter().enumerate() {
        let mark = marks[i];
        let at_ver = lat(reps, || sroom.code_at(&Cut::Version(id.clone())));
        let at_idx = lat(reps, || sroom.code_at(&Cut::LogIndex(*idx)));
        let text = sroom.code_at(&Cut::Version(id.clone()))?;
        ensure!(text == sroom.code_at(&Cut::LogIndex(*idx))?, "version {id} and its log index disagree");
        let y = med(reps, || (), |_| yrs_text_at(ydoc, ytext, &snaps[i]));
        ensure!(yrs_text_at(ydoc, ytext, &snaps[i]) == text, "raw yrs snapshot at {mark} disagrees with the room");
        let y_state = match yrs_state_at(ydoc, &snaps[i]) {
            Ok(t) if t == text => dur(med(reps, || (), |_| yrs_state_at(ydoc, &snaps[i]))),
            Ok(_) => "wrong text".to_owned(),
            Err(e) => format!("fails: {e}"),
        };
        let am = am_heads.get(i).map(|h| {
            let t = med(reps, || (), |_| am_doc.text_at(am_text, h));
            (t, am_doc.text_at(am_text, h).map(|x| x == text).unwrap_or(false))
        });
        if let Some((_, same)) = am {
            ensure!(same, "automerge at {mark} disagrees with the room");
        }
        for (what, d) in [("Cut::Version", at_ver), ("Cut::LogIndex", at_idx)] {
            if d.0 > worst_arena.0 {
                worst_arena = d;
                worst_label = format!("{what} after patch {mark}");
            }
        }
        tt.row(
            format!("after patch {} ({}%), {} chars", thousands(mark as u64), mark * 100 / trace.patches.len(), thousands(text.chars().count() as u64)),
            format!("Version {}; LogIndex {}", lat_str(at_ver), lat_str(at_idx)),
            format!("diff_range(snapshot): {}; encode_state_from_snapshot + load (after diff_range split the blocks, see notes): {y_state}", dur(y)),
            am.map(|(t, _)| format!("text_at(heads): {}", dur(t))).unwrap_or_else(|| "— (prefix)".into()),
            "≤ 20 ms",
            yes(at_ver.0.max(at_idx.0) <= Duration::from_millis(20), dur(at_ver.0.max(at_idx.0))),
        );
    }
    // Worst case for a log cut: just before a checkpoint (the most envelopes to replay), near the end.
    let gaps: Vec<(u64, u64)> = cps.windows(2).map(|w| (w[0].0, w[1].0)).collect();
    // max_by_key keeps the last maximum: the latest of the widest gaps (the largest state).
    if let Some(&(a, b)) = gaps.iter().max_by_key(|(a, b)| b - a) {
        let idx = b - 1;
        let d = lat(reps, || sroom.code_at(&Cut::LogIndex(idx)));
        if d.0 > worst_arena.0 {
            worst_arena = d;
            worst_label = format!("LogIndex {idx}");
        }
        tt.row(
            format!("worst log cut: index {} ({} envelopes after checkpoint {a})", thousands(idx), idx - a),
            format!("LogIndex {}", lat_str(d)),
            "—",
            "—",
            "≤ 20 ms",
            yes(d.0 <= Duration::from_millis(20), dur(d.0)),
        );
    }
    let end_t = lat(reps, || sroom.code_at(&Cut::End));
    tt.row(
        "the end (Cut::End)",
        lat_str(end_t),
        "—",
        "—",
        "≤ 20 ms",
        yes(end_t.0 <= Duration::from_millis(20), dur(end_t.0)),
    );
    if end_t.0 > worst_arena.0 {
        worst_arena = end_t;
        worst_label = "Cut::End".into();
    }
    let ntimes = Duration::from_millis(20);
    let diff_t = med(reps, || (), |_| sroom.diff(&Cut::Version(versions[0].0.clone()), &Cut::End).map(|d| d.len()));
    table.row(
        format!("time travel, worst reconstruction — {label}"),
        format!("{} ({worst_label})", lat_str(worst_arena)),
        "see below",
        "see below",
        "≤ 20 ms",
        yes(worst_arena.0 <= ntimes, dur(worst_arena.0)),
    );

    // ---- cold load
    progress(&format!("{name}: cold load"));
    let end_text = sroom.doc().code();
    let (_, cp_list_t) = time(|| sroom.store().checkpoints());
    let last = cps.last().map(|c| c.0).unwrap_or(0);
    let (cp, cp_get_t) = time(|| sroom.store().checkpoint(last));
    let cp = cp?.context("last checkpoint")?;
    let (tail, tail_t) = time(|| sroom.store().log_range(last, u64::MAX));
    let tail_len = tail?.len();
    let apply_t = med(reps, || RoomDoc::new(9), |d| d.apply_v1(&cp.state));
    let (_, adm_t) = time(|| sroom.store().admissions());
    let cp_state_len = cp.state.len();
    drop(cp);
    // Close the writer; keep the database open (Room::open on an open SledDb).
    let store_dir = dir.path().to_path_buf();
    drop(sroom);
    let open_warm = {
        let (mut c, mut w) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let store = db.room(&room_id)?;
            let sw = Stopwatch::start();
            let r = Room::open(room_id, cast.host.clone(), 1, store, cfg.clone(), T0);
            c.push(sw.elapsed());
            w.push(sw.wall());
            ensure!(r?.doc().code() == end_text, "cold-loaded room differs");
        }
        (median(c), median(w))
    };
    let room_store_t = med(reps, || (), |_| db.room(&room_id).map(|s| s.log_len()));
    drop(db);
    // From a closed database: SledDb::open + Room::open (what a restarted process pays).
    let open_cold = {
        let (mut c, mut w) = (Vec::new(), Vec::new());
        for _ in 0..reps.min(3) {
            let sw = Stopwatch::start();
            let r = (|| -> Result<_> {
                let db = SledDb::open(&store_dir)?;
                let room = Room::open(room_id, cast.host.clone(), 1, db.room(&room_id)?, cfg.clone(), T0)?;
                Ok((db, room))
            })();
            c.push(sw.elapsed());
            w.push(sw.wall());
            let (db, room) = r?;
            ensure!(room.doc().code() == end_text, "cold-loaded room differs");
            drop(room);
            drop(db);
        }
        (median(c), median(w))
    };
    let yrs_load_t = med(reps, || (), |_| yrs_load(yrs_state_v1));
    let am_load_t = med(reps, || (), |_| automerge::AutoCommit::load(am_save));
    let am_full = am_heads.len() == marks.len();
    table.row(
        format!("cold load: Room::open on an open SledDb — {label}"),
        lat_str(open_warm),
        format!("load one v1 state ({}): {}", bytes(yrs_state_v1.len() as u64), dur(yrs_load_t)),
        if am_full {
            format!("AutoCommit::load ({}): {}", bytes(am_save.len() as u64), dur(am_load_t))
        } else {
            format!("AutoCommit::load of the prefix ({}): {}", bytes(am_save.len() as u64), dur(am_load_t))
        },
        "≤ 50 ms",
        yes(open_warm.0 <= Duration::from_millis(50), dur(open_warm.0)),
    );
    table.row(
        format!("cold load incl. SledDb::open (restarted process) — {label}"),
        lat_str(open_cold),
        "—",
        "—",
        "(≤ 50 ms)",
        yes(open_cold.0 <= Duration::from_millis(50), dur(open_cold.0)),
    );

    let _ = writeln!(s, "Time travel on the {label} (median of {reps}):\n");
    tt.render(s);
    let _ = writeln!(s, "\nLine diff from the first version to the end (`Room::diff`): {}.\n", dur(diff_t));
    let _ = writeln!(s, "Cold load of the {label}, stage by stage (each timed alone):\n");
    let _ = writeln!(s, "| stage | time |\n|---|---|");
    let _ = writeln!(s, "| SledDb::room (open the room's trees) | {} |", dur(room_store_t));
    let _ = writeln!(s, "| Store::admissions | {} |", dur(adm_t));
    let _ = writeln!(s, "| Store::checkpoints (list of {}) | {} |", cps.len(), dur(cp_list_t));
    let _ = writeln!(s, "| Store::checkpoint (decode the last, {}) | {} |", bytes(cp_state_len as u64), dur(cp_get_t));
    let _ = writeln!(s, "| RoomDoc::apply_v1 of its state | {} |", dur(apply_t));
    let _ = writeln!(s, "| Store::log_range after it ({tail_len} entries) | {} |", dur(tail_t));
    let _ = writeln!(s, "| **Room::open (total)** | {} |", lat_str(open_warm));
    let _ = writeln!(s, "| **SledDb::open + Room::open (total)** | {} |\n", lat_str(open_cold));
    if !am_full {
        notes.push(format!(
            "automerge replayed only a prefix of {name}: its time-travel and load figures are for that prefix."
        ));
    }
    Ok(())
}

fn crypto_section(cast: &Cast, trace: &Trace, args: &Args) -> Result<String> {
    let k = trace.patches.len().min(20_000);
    let (_, rec) = record(cast, &trace.patches[..k])?;
    let envs = &rec.envelopes;
    let n = envs.len();
    let mut ledger = Ledger::new(rec.room);
    for a in &rec.admissions {
        ledger.admit(a, None)?;
    }
    let checked: Vec<Checked> = envs
        .iter()
        .map(|e| ledger.check(e, Some(ChainHead { next_seq: e.seq, last_hash: e.prev })))
        .collect::<arena_core::Result<_>>()?;
    let msgs: Vec<Vec<u8>> = envs.iter().map(Envelope::signed_bytes).collect();
    let mut s = String::new();
    let _ = writeln!(s, "### Signing and verification alone\n");
    let _ = writeln!(
        s,
        "Over the first {} envelopes of {} (median of {} passes; Ed25519 via ed25519-dalek 2, `fast` + `batch`).\n",
        thousands(n as u64),
        trace.name,
        args.repeat
    );
    let _ = writeln!(s, "| operation | per envelope | per second |\n|---|---|---|");
    let mut line = |what: &str, d: Duration| {
        let _ = writeln!(s, "| {what} | {} | {} |", per_op(d, n), rate_str(d, n));
    };
    let r = args.repeat;
    line(
        "Ed25519 sign of the signed bytes (Identity::sign)",
        med(r, || (), |_| msgs.iter().map(|m| cast.host.sign(m)[0]).fold(0u8, |a, b| a ^ b)),
    );
    line(
        "Envelope::seal (SHA-256 of the update + sign)",
        med(
            r,
            || (),
            |_| {
                envs.iter()
                    .map(|e| {
                        Envelope::seal(e.room, &cast.host, e.seq, e.prev, e.session, e.update.clone()).signature[0]
                    })
                    .fold(0u8, |a, b| a ^ b)
            },
        ),
    );
    line(
        "Envelope::verify_signature (decompress key + verify)",
        med(r, || (), |_| envs.iter().filter(|e| e.verify_signature().is_ok()).count()),
    );
    line(
        "Ledger::verify_one (cached key, ZIP-215)",
        med(r, || (), |_| envs.iter().zip(&checked).filter(|(e, c)| ledger.verify_one(e, c).is_ok()).count()),
    );
    let refs: Vec<&Envelope> = envs.iter().collect();
    for b in [1usize, 16, 64, 256, 1024] {
        line(
            &format!("Ledger::verify_batch, batches of {b}"),
            med(
                r,
                || (),
                |_| refs.chunks(b).zip(checked.chunks(b)).filter(|(e, c)| ledger.verify_batch(e, c).is_ok()).count(),
            ),
        );
    }
    line(
        "Ledger::check (everything but the signature)",
        med(
            r,
            || (),
            |_| {
                envs.iter()
                    .filter(|e| ledger.check(e, Some(ChainHead { next_seq: e.seq, last_hash: e.prev })).is_ok())
                    .count()
            },
        ),
    );
    line("Envelope::hash", med(r, || (), |_| envs.iter().map(|e| e.hash()[0]).fold(0u8, |a, b| a ^ b)));
    Ok(s)
}
