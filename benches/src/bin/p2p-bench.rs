//! Performance of the native peer (arena-node) on loopback, in one process: edit-to-remote
//! latency between 2, 4 and 8 peers, envelope throughput to one receiver, and the catch-up
//! time of a late joiner to a large room. Prints a Markdown table.
//!
//! `cargo build --release -p arena-benches --bin p2p-bench && target/release/p2p-bench`
//!
//! Environment: `ARENA_TRACES_DIR` (the traces), `P2P_BENCH_ROOM` (the late-joiner trace,
//! default `automerge-paper`), `P2P_BENCH_QUICK=1` (shorter runs), `P2P_BENCH_ONLY` (a
//! comma list of `latency`, `relay`, `throughput`, `late`, `recorder`; default all).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arena_benches::{load_trace, Patch};
use arena_core::{Identity, Invite, PeerKey, Role, RoomId};
use arena_node::{now_ms, JoinSpec, Node, NodeConfig, NodeEvent, NodeHandle};
use libp2p::Multiaddr;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(120);

struct BenchRoom {
    key: Identity,
    id: RoomId,
}

impl BenchRoom {
    fn new(name: &str) -> Self {
        let key = Identity::from_passphrase(name);
        BenchRoom { id: key.public(), key }
    }
    fn token(&self, role: Role, nonce: u64) -> String {
        Invite::issue(&self.key, role, now_ms() / 1000 + 3600, 0, nonce).to_token()
    }
}

struct Peer {
    handle: NodeHandle,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<arena_node::Result<()>>,
    addr: Multiaddr,
}

/// [`arena_testkit::wait_for`] with this bench's longer timeout.
async fn wait_for<T, F, Fut>(what: &str, f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    arena_testkit::wait_for(TIMEOUT, what, f).await
}

impl Peer {
    async fn start(name: &str, data_dir: Option<std::path::PathBuf>) -> Result<Peer> {
        Self::start_with(name, data_dir, |_| {}).await
    }

    async fn start_with(
        name: &str,
        data_dir: Option<std::path::PathBuf>,
        tweak: impl FnOnce(&mut NodeConfig),
    ) -> Result<Peer> {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&arena_node::random_seed()?);
        let mut cfg = NodeConfig::new(Identity::from_seed(seed));
        cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
        cfg.data_dir = data_dir;
        tweak(&mut cfg);
        let shutdown = CancellationToken::new();
        let (handle, task) = Node::spawn(cfg, shutdown.clone()).with_context(|| format!("starting {name}"))?;
        let h = handle.clone();
        let addrs = wait_for("listening", || {
            let h = h.clone();
            async move {
                let a = h.listen_addrs().await?;
                Ok((!a.is_empty()).then_some(a))
            }
        })
        .await?;
        let addr = addrs[0].clone().with(libp2p::multiaddr::Protocol::P2p(handle.peer_id()));
        Ok(Peer { handle, shutdown, task, addr })
    }

    async fn join(&self, room: &BenchRoom, role: Role, nonce: u64) -> Result<()> {
        self.handle
            .join(JoinSpec {
                room: room.id,
                token: Some(room.token(role, nonce)),
                name: format!("p{nonce}"),
                recording: None,
            })
            .await?;
        Ok(())
    }

    async fn connected(&self) -> Result<usize> {
        Ok(self.handle.stats().await?.connected.len())
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

/// `n` peers, full mesh of direct TCP connections, all in `room` and seeing each other's
/// subscriptions.
async fn swarm_of(n: usize, room: &BenchRoom) -> Result<Vec<Peer>> {
    let mut peers = Vec::new();
    for i in 0..n {
        peers.push(Peer::start(&format!("peer{i}"), None).await?);
    }
    for i in 0..n {
        for j in 0..i {
            peers[i].handle.dial(peers[j].addr.clone()).await?;
        }
    }
    for p in &peers {
        wait_for("full mesh", || async { Ok((p.connected().await? >= n - 1).then_some(())) }).await?;
    }
    for (i, p) in peers.iter().enumerate() {
        p.join(room, if i == 0 { Role::Host } else { Role::Candidate }, i as u64).await?;
    }
    for p in &peers {
        wait_for("gossip subscriptions", || async {
            let s = p.handle.stats().await?;
            Ok(s.rooms.get(&room.id).filter(|r| r.gossip_peers.len() >= n - 1).map(|_| ()))
        })
        .await?;
    }
    Ok(peers)
}

/// Records when each envelope of `author` arrives (Applied with `from: Some`) at `peer`.
fn record_arrivals(
    peer: &NodeHandle,
    room: RoomId,
    author: PeerKey,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<(Vec<(u64, Instant)>, u64)> {
    let mut rx = peer.subscribe();
    tokio::spawn(async move {
        let mut got = Vec::new();
        let mut lagged = 0u64;
        loop {
            let ev = tokio::select! {
                _ = stop.cancelled() => break,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(NodeEvent::Applied { room: r, envelopes, from: Some(_) }) if r == room => {
                    let t = Instant::now();
                    got.extend(envelopes.iter().filter(|e| e.author == author).map(|e| (e.seq, t)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => lagged += n,
                Err(RecvError::Closed) => break,
            }
        }
        (got, lagged)
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

struct Row {
    what: String,
    result: String,
    target: String,
    met: String,
}

/// One peer edits at `rate`/s for `secs`; every other peer records arrivals.
async fn latency(n: usize, rate: u32, secs: f64, patches: &[Patch]) -> Result<Row> {
    let room = BenchRoom::new(&format!("p2p-bench latency {n}"));
    let peers = swarm_of(n, &room).await?;
    let (result, p99) = measure_latency(&peers, &room, rate, secs, patches).await?;
    for p in peers {
        p.stop().await?;
    }
    Ok(Row {
        what: format!(
            "edit → remote Applied, {n} peers (full mesh, direct TCP), {rate} edits/s × {secs} s, {} receivers",
            n - 1
        ),
        result,
        target: "p99 ≤ 5 ms".into(),
        met: if p99 <= Duration::from_millis(5) { "**yes**".into() } else { "**no**".into() },
    })
}

/// Two peers that reach each other only through a relay (a third node in server mode):
/// A listens through it, B dials A's `/p2p-circuit` address.
async fn relay_latency(rate: u32, secs: f64, patches: &[Patch]) -> Result<Row> {
    let room = BenchRoom::new("p2p-bench relay");
    let relay =
        Peer::start_with("relay", None, |cfg| cfg.behaviour = arena_node::behaviour::BehaviourConfig::server()).await?;
    let relay_addr = relay.addr.clone();
    // No hole punching: on loopback dcutr would at once upgrade to a direct connection.
    let a = Peer::start_with("A", None, move |cfg| {
        cfg.bootstrap = vec![relay_addr];
        cfg.use_relay = true;
        cfg.behaviour.hole_punching = false;
    })
    .await?;
    a.join(&room, Role::Host, 0).await?;
    let circuit = wait_for("A listens through the relay", || async {
        let addrs = a.handle.listen_addrs().await?;
        Ok(addrs.into_iter().find(|x| x.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))))
    })
    .await?;
    let b = Peer::start_with("B", None, |cfg| cfg.behaviour.hole_punching = false).await?;
    b.join(&room, Role::Candidate, 1).await?;
    b.handle.dial(circuit).await?;
    wait_for("gossip over the relay", || async {
        let s = b.handle.stats().await?;
        Ok(s.rooms.get(&room.id).filter(|r| !r.gossip_peers.is_empty()).map(|_| ()))
    })
    .await?;
    let peers = vec![a, b];
    let (result, _) = measure_latency(&peers, &room, rate, secs, patches).await?;
    for p in peers {
        p.stop().await?;
    }
    relay.stop().await?;
    Ok(Row {
        what: format!(
            "edit → remote Applied, 2 peers through a relay (circuit v2 on loopback), {rate} edits/s × {secs} s"
        ),
        result,
        target: "—".into(),
        met: "—".into(),
    })
}

/// Disk bytes a recorder writes per minute of typing: A types `rate` keystrokes/s (a real
/// trace's patches) for `secs`, B is connected, the recorder R (observer) records.
async fn recorder_bytes(rate: u32, secs: f64, patches: &[Patch]) -> Result<Row> {
    let room = BenchRoom::new("p2p-bench recorder");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.arena");
    let peers = swarm_of(2, &room).await?;
    let r = Peer::start("R", None).await?;
    for p in &peers {
        r.handle.dial(p.addr.clone()).await?;
    }
    wait_for("recorder connected", || async { Ok((r.connected().await? >= 2).then_some(())) }).await?;
    r.handle
        .join(JoinSpec {
            room: room.id,
            token: Some(room.token(Role::Observer, 9)),
            name: "recorder".into(),
            recording: Some(path.clone()),
        })
        .await?;
    let editor = &peers[0].handle;
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    wait_for("recorder caught up", || async {
        Ok((r.handle.code(room.id).await? == editor.code(room.id).await?).then_some(()))
    })
    .await?;
    let before = size();
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut tick = tokio::time::interval(period);
    let total = (f64::from(rate) * secs) as usize;
    for p in patches.iter().take(total) {
        tick.tick().await;
        editor.splice(room.id, p.pos, p.del, &p.ins).await?;
    }
    let target = editor.code(room.id).await?;
    wait_for("recorder has every keystroke", || async { Ok((r.handle.code(room.id).await? == target).then_some(())) })
        .await?;
    let elapsed = start.elapsed();
    let grown = size().saturating_sub(before);
    r.stop().await?;
    for p in peers {
        p.stop().await?;
    }
    let per_min = grown as f64 / elapsed.as_secs_f64() * 60.0;
    Ok(Row {
        what: format!(
            "recorder disk bytes per minute, {rate} keystrokes/s (rustcode patches, one envelope each) for {secs} s, libp2p (no awareness)"
        ),
        result: format!(
            "**{:.0} KiB/min** ({grown} bytes for {total} keystrokes = {:.0} B each)",
            per_min / 1024.0,
            grown as f64 / total.max(1) as f64
        ),
        target: "—".into(),
        met: "—".into(),
    })
}

/// Latency from `peers[0]`'s edits to every other peer's Applied event: (summary, p99).
async fn measure_latency(
    peers: &[Peer],
    room: &BenchRoom,
    rate: u32,
    secs: f64,
    patches: &[Patch],
) -> Result<(String, Duration)> {
    let n = peers.len();
    let editor = &peers[0].handle;
    // Warm-up: let gossipsub build its mesh (heartbeats) and the first messages through.
    for p in patches.iter().take(20) {
        editor.splice(room.id, p.pos, p.del, &p.ins).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stop = CancellationToken::new();
    let author = editor.key();
    let recorders: Vec<_> =
        peers[1..].iter().map(|p| record_arrivals(&p.handle, room.id, author, stop.clone())).collect();
    let total = (f64::from(rate) * secs) as usize;
    let mut sent: HashMap<u64, Instant> = HashMap::with_capacity(total);
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for p in patches.iter().skip(20).take(total) {
        tick.tick().await;
        let t = Instant::now();
        if let Some(env) = editor.splice(room.id, p.pos, p.del, &p.ins).await? {
            sent.insert(env.seq, t);
        }
    }
    let want = sent.len() * (n - 1);
    let sent = Arc::new(sent);
    // Wait until every receiver saw every measured envelope (or a timeout).
    let deadline = Instant::now() + Duration::from_secs(10);
    let target_code = editor.code(room.id).await?;
    for p in &peers[1..] {
        while p.handle.code(room.id).await? != target_code && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.cancel();
    let mut lat = Vec::with_capacity(want);
    let mut lagged = 0;
    for r in recorders {
        let (got, l) = r.await?;
        lagged += l;
        for (seq, t) in got {
            if let Some(t0) = sent.get(&seq) {
                lat.push(t.saturating_duration_since(*t0));
            }
        }
    }
    let seen = lat.len();
    lat.sort();
    let (p50, p99, max) = (pct(&lat, 0.5), pct(&lat, 0.99), lat.last().copied().unwrap_or_default());
    let note = if seen == want && lagged == 0 {
        String::new()
    } else {
        format!(" ({seen} of {want} arrivals seen as events, {lagged} events lagged)")
    };
    Ok((format!("p50 {} · p99 {} · max {} ({} envelopes){note}", ms(p50), ms(p99), ms(max), sent.len()), p99))
}

/// One peer edits as fast as it can (one awaited `splice` after another) for `secs`; one
/// receiver counts what it applies.
async fn throughput(secs: f64, patches: &[Patch]) -> Result<Row> {
    let room = BenchRoom::new("p2p-bench throughput");
    let peers = swarm_of(2, &room).await?;
    let editor = &peers[0].handle;
    editor.splice(room.id, 0, 0, "warm-up\n").await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stop = CancellationToken::new();
    let rec = record_arrivals(&peers[1].handle, room.id, editor.key(), stop.clone());
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut n = 0usize;
    let mut last_seq = 0;
    for p in patches.iter().cycle() {
        if start.elapsed() >= limit {
            break;
        }
        // Past the end of the trace, keep typing at the end of the document.
        let env = if n < patches.len() {
            editor.splice(room.id, p.pos, p.del, &p.ins).await?
        } else {
            let len = editor.with_room(room.id, |r, _| r.doc().code_len()).await?;
            editor.splice(room.id, len, 0, "x").await?
        };
        if let Some(e) = env {
            last_seq = e.seq;
            n += 1;
        }
    }
    let send_time = start.elapsed();
    // Wait for the receiver to hold the last one.
    let target = editor.code(room.id).await?;
    let b = &peers[1].handle;
    wait_for("throughput receiver", || {
        let target = &target;
        async move { Ok((b.code(room.id).await? == *target).then_some(())) }
    })
    .await?;
    stop.cancel();
    let (got, lagged) = rec.await?;
    let last = got.iter().filter(|(s, _)| *s <= last_seq).map(|(_, t)| *t).max().unwrap_or(start);
    let recv_time = last.saturating_duration_since(start);
    let applied = got.iter().filter(|(s, _)| *s <= last_seq).count();
    for p in peers {
        p.stop().await?;
    }
    let lag = if lagged > 0 { format!(" ({lagged} events lagged: counted by code equality)") } else { String::new() };
    Ok(Row {
        what: format!("envelope throughput, 2 peers, editor back-to-back `splice` for {secs} s (rustcode patches)"),
        result: format!(
            "sent {n} envelopes in {:.2} s = **{:.0} env/s**; receiver applied {applied} by {:.2} s = **{:.0} env/s**{lag}",
            send_time.as_secs_f64(),
            n as f64 / send_time.as_secs_f64(),
            recv_time.as_secs_f64(),
            applied as f64 / recv_time.as_secs_f64().max(1e-9),
        ),
        target: "—".into(),
        met: "—".into(),
    })
}

/// Builds the room of `trace` on A, then B joins (already connected to A) and catches up.
async fn late_joiner(trace_name: &str, sled_b: bool) -> Result<(Row, String)> {
    let trace = load_trace(trace_name)?;
    let room = BenchRoom::new(&format!("p2p-bench late joiner {trace_name} {sled_b}"));
    let a = Peer::start("A", None).await?;
    a.join(&room, Role::Host, 1).await?;
    let build = Instant::now();
    for chunk in trace.patches.chunks(2000) {
        let chunk = chunk.to_vec();
        a.handle
            .with_room(room.id, move |r, now| -> arena_core::Result<()> {
                for p in &chunk {
                    r.edit(now, |e| e.splice_code(p.pos, p.del, &p.ins))?;
                }
                Ok(())
            })
            .await??;
    }
    let build_time = build.elapsed();
    let a_code = a.handle.code(room.id).await?;
    let a_log = a.handle.stats().await?.rooms[&room.id].log_len;
    if trace.is_complete() && a_code != trace.end {
        bail!("room A does not end with the trace's end content");
    }
    let dir = tempfile::tempdir()?;
    let b = Peer::start("B", sled_b.then(|| dir.path().to_path_buf())).await?;
    b.handle.dial(a.addr.clone()).await?;
    wait_for("B connected", || async { Ok((b.connected().await? >= 1).then_some(())) }).await?;
    let mut rx = b.handle.subscribe();
    let want_len = a.handle.with_room(room.id, |r, _| r.doc().code_len()).await?;
    let start = Instant::now();
    b.join(&room, Role::Candidate, 2).await?;
    let joined = start.elapsed();
    let deadline = start + TIMEOUT;
    loop {
        // Check after each burst of events (or every 50 ms).
        match tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {
                while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) = rx.try_recv() {}
            }
            Ok(Err(RecvError::Closed)) => bail!("B stopped"),
            Err(_) => {}
        }
        let len = b.handle.with_room(room.id, |r, _| r.doc().code_len()).await?;
        if len == want_len && b.handle.code(room.id).await? == a_code {
            break;
        }
        if Instant::now() > deadline {
            bail!("late joiner did not catch up within {TIMEOUT:?}");
        }
    }
    let catch_up = start.elapsed();
    let b_log = b.handle.stats().await?.rooms[&room.id].log_len;
    a.stop().await?;
    b.stop().await?;
    let store = if sled_b { "B on sled (data dir)" } else { "B in memory" };
    let row = Row {
        what: format!(
            "late joiner catch-up, {trace_name} room ({a_log} log entries on A, {} patches), {store}: `join` → B's code == A's",
            trace.patches.len()
        ),
        result: format!("**{:.0} ms** (join returned after {:.1} ms; B's log {b_log})", catch_up.as_secs_f64() * 1e3, joined.as_secs_f64() * 1e3),
        target: "≤ 500 ms".into(),
        met: if catch_up <= Duration::from_millis(500) { "**yes**".into() } else { "**no**".into() },
    };
    Ok((row, format!("building the {trace_name} room on A for the {store} run (A in memory, `with_room` batches of 2000 `Room::edit`s): {:.1} s", build_time.as_secs_f64())))
}

fn main() -> Result<()> {
    let quick = std::env::var_os("P2P_BENCH_QUICK").is_some();
    let late = std::env::var("P2P_BENCH_ROOM").unwrap_or_else(|_| "automerge-paper".into());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let typing = load_trace("rustcode")?.patches;
        let mut rows = Vec::new();
        let mut notes = Vec::new();
        let secs = if quick { 2.0 } else { 5.0 };
        let only = std::env::var("P2P_BENCH_ONLY").unwrap_or_default();
        let run = |what: &str| only.is_empty() || only.split(',').any(|w| w.trim() == what);
        if run("latency") {
            for n in [2, 4, 8] {
                eprintln!("latency, {n} peers...");
                rows.push(latency(n, 50, secs, &typing).await?);
            }
        }
        if run("relay") {
            eprintln!("latency through a relay...");
            rows.push(relay_latency(50, secs, &typing).await?);
        }
        if run("throughput") {
            eprintln!("throughput...");
            rows.push(throughput(if quick { 1.0 } else { 3.0 }, &typing).await?);
        }
        if run("late") {
            for sled in [false, true] {
                eprintln!("late joiner ({late}, sled B: {sled})...");
                let (row, note) = late_joiner(&late, sled).await?;
                rows.push(row);
                notes.push(note);
            }
        }
        if run("recorder") {
            eprintln!("recorder bytes per minute...");
            rows.push(recorder_bytes(5, if quick { 6.0 } else { 24.0 }, &typing).await?);
        }
        println!("| measurement | result | target | met |");
        println!("|---|---|---|---|");
        for r in &rows {
            println!("| {} | {} | {} | {} |", r.what, r.result, r.target, r.met);
        }
        println!();
        for n in notes {
            println!("- {n}");
        }
        Ok(())
    })
}
