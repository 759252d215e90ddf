//! Load generator: many y-websocket clients over real sockets on 127.0.0.1 against
//! arena-bootstrap, the y-websocket reference server (`y-websocket@1.5.4` bin/server.js)
//! and `@hocuspocus/server@4.7.0` (its dialect: every message prefixed with the document
//! name, and an auth message first), each serving the same workload in the same run.
//!
//! For each server: a throughput ramp (rooms × clients, each client typing at a rising
//! rate; a step passes while p99 edit-to-remote latency ≤ --p99-ms and ≥ 95% of the edits
//! arrive and the server closes no connection; each step's clients are new, and they all
//! join and receive the room's document before anyone types), then memory per idle room
//! (RSS growth with N rooms each holding a small document and one idle client). Prints a
//! Markdown table.
//!
//! Run with: `cargo run --release -p arena-benches --bin loadgen` (after
//! `bash scripts/npm-install.sh` and `cargo build --release -p arena-bootstrap`).

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode as _;
use yrs::{Doc, GetString, Text, Transact};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Arena,
    YWebsocket,
    Hocuspocus,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Arena => "arena-bootstrap",
            Kind::YWebsocket => "y-websocket 1.5.4",
            Kind::Hocuspocus => "@hocuspocus/server 4.7.0",
        }
    }
}

struct Opts {
    rooms: usize,
    clients: usize,
    step_secs: u64,
    p99_ms: f64,
    /// A failed step is run again this many times before the ramp stops (one fsync or
    /// scheduler stall on this VM can spoil a whole 3 s step of any server).
    step_retries: usize,
    idle_rooms: usize,
    idle_only: bool,
    /// Seconds the idle clients stay before the second reading (arena evicts documents of
    /// rooms idle for 30 s by default).
    idle_wait_secs: u64,
    /// Fresh servers the idle reading is taken on; the median is reported (one server's
    /// reading varies up to 2x between runs on this 2-core box).
    idle_repeat: usize,
    /// Rate factor between steps.
    ramp: f64,
    /// Edits/s per client of the first step (`--from`, default 10; a higher start reaches
    /// a rate of interest at once, e.g. to profile the server there).
    from: f64,
    /// Where clients type: `end` of their own text (each at their own caret, as people do)
    /// or `start` (every insert at position 0 with no left neighbour: all of them conflict,
    /// the CRDT's worst case).
    at: String,
    kinds: Vec<Kind>,
}

fn parse_opts() -> Result<Opts> {
    let mut o = Opts {
        rooms: 20,
        clients: 2,
        step_secs: 3,
        p99_ms: 50.0,
        step_retries: 1,
        idle_rooms: 200,
        idle_only: false,
        idle_wait_secs: 35,
        idle_repeat: 1,
        ramp: 2.0,
        from: 10.0,
        at: "end".into(),
        kinds: vec![Kind::Arena, Kind::YWebsocket, Kind::Hocuspocus],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--rooms" => o.rooms = v.parse()?,
            "--clients" => o.clients = v.parse()?,
            "--step-secs" => o.step_secs = v.parse()?,
            "--p99-ms" => o.p99_ms = v.parse()?,
            "--step-retries" => o.step_retries = v.parse()?,
            "--idle-rooms" => o.idle_rooms = v.parse()?,
            "--idle-wait-secs" => o.idle_wait_secs = v.parse()?,
            "--idle-repeat" => o.idle_repeat = v.parse::<usize>()?.max(1),
            "--at" => {
                if v != "end" && v != "start" {
                    bail!("--at must be end or start");
                }
                o.at = v;
            }
            "--ramp" => {
                o.ramp = v.parse()?;
                if o.ramp <= 1.0 {
                    bail!("--ramp must be > 1");
                }
            }
            "--from" => {
                o.from = v.parse()?;
                if !(o.from > 0.0 && o.from <= 6000.0) {
                    bail!("--from must be in (0, 6000] edits/s per client");
                }
            }
            "--integrate" => {
                INTEGRATE.store(true, Ordering::Relaxed);
                i += 1;
                continue;
            }
            "--idle-only" => {
                o.idle_only = true;
                i += 1;
                continue;
            }
            "--servers" => {
                o.kinds = v
                    .split(',')
                    .map(|s| match s {
                        "arena" => Ok(Kind::Arena),
                        "yws" => Ok(Kind::YWebsocket),
                        "hocuspocus" => Ok(Kind::Hocuspocus),
                        _ => bail!("unknown server {s} (arena, yws, hocuspocus)"),
                    })
                    .collect::<Result<_>>()?
            }
            "--help" | "-h" => {
                println!("loadgen [--rooms 20] [--clients 2] [--step-secs 3] [--p99-ms 50] [--step-retries 1] [--idle-rooms 200] [--idle-wait-secs 35] [--idle-repeat 1] [--ramp 2] [--from 10] [--at end|start] [--integrate] [--idle-only] [--servers arena,yws,hocuspocus]\n(the arena server inherits ARENA_* variables, e.g. ARENA_NO_P2P=1)");
                std::process::exit(0);
            }
            a => bail!("unknown argument {a}"),
        }
        i += 2;
    }
    Ok(o)
}

fn workspace() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Servers get SIGTERM and up to 10 s to exit on their own (so a wrapper such as a heap
/// profiler writes its report), then `kill_on_drop`'s SIGKILL.
impl Drop for ServerProc {
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else { return };
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A server process under test.
struct ServerProc {
    child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ServerProc {
    async fn start(kind: Kind) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let js = workspace().join("benches/js");
        let mut cmd = match kind {
            Kind::Arena => {
                // LOADGEN_ARENA_BIN: another build (or a wrapper script, e.g. one that runs
                // the binary under heaptrack).
                let bin = std::env::var_os("LOADGEN_ARENA_BIN")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| workspace().join("target/release/arena-bootstrap"));
                if !bin.exists() {
                    bail!("{} missing: cargo build --release -p arena-bootstrap", bin.display());
                }
                let mut c = tokio::process::Command::new(bin);
                // Rooms are created through the API, thousands in a minute from one address,
                // and every client connects from 127.0.0.1: no per-address caps here.
                c.args(["--http-addr", &format!("127.0.0.1:{free}"), "--rate-limit", "100000"])
                    .args(["--room-create-per-minute", "100000000"])
                    .args(["--yws-max-per-ip", "10000000", "--yws-max-connections", "10000000", "--data-dir"])
                    .arg(dir.path());
                c.env("RUST_LOG", "warn");
                c
            }
            Kind::YWebsocket => {
                let mut c = tokio::process::Command::new("node");
                c.arg(workspace().join("node_modules/y-websocket-server/bin/server.js"))
                    .env("HOST", "127.0.0.1")
                    .env("PORT", free.to_string());
                c
            }
            Kind::Hocuspocus => {
                let mut c = tokio::process::Command::new("node");
                c.arg(js.join("hocuspocus.mjs")).env("PORT", free.to_string());
                c
            }
        };
        if kind != Kind::Arena && !workspace().join("node_modules/y-websocket-server").exists() {
            bail!("run `bash scripts/npm-install.sh` first (the repository's npm workspace)");
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true).spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await?.context("server said nothing")?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServerProc { child, port: free, _dir: dir })
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// (CPU seconds used so far, RSS bytes).
    fn usage(&self) -> (f64, u64) {
        let pid = self.pid();
        let pid = pid.to_string();
        (cpu_secs(&pid), arena_benches::rss_bytes(&pid).unwrap_or(0))
    }

    /// `arena_heap_live_bytes` from `/metrics`, when the server exports it (an arena
    /// server built with `--features heap-stats`).
    async fn heap_live(&self) -> Option<u64> {
        let body = http_request(self.port, "GET", "/metrics", "").await.ok()?;
        body.lines().find_map(|l| l.strip_prefix("arena_heap_live_bytes ")).and_then(|v| v.trim().parse().ok())
    }

    /// Room names and the URL path (with token) a client connects to.
    /// Rooms `first..first + n`: created through the API on arena, named on the others.
    async fn rooms(&self, kind: Kind, first: usize, n: usize) -> Result<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(n);
        for i in first..first + n {
            match kind {
                Kind::Arena => {
                    let body = http_post(self.port, "/api/rooms", "{}").await?;
                    let v: serde_json::Value = serde_json::from_str(&body)?;
                    let room = v["room"].as_str().context("room")?.to_owned();
                    let token = v["tokens"]["candidate"].as_str().context("token")?;
                    out.push((room.clone(), format!("/yws/{room}?token={token}")));
                }
                Kind::YWebsocket => out.push((format!("room-{i}"), format!("/room-{i}"))),
                Kind::Hocuspocus => out.push((format!("room-{i}"), "/".to_owned())),
            }
        }
        Ok(out)
    }
}

async fn http_post(port: u16, path: &str, body: &str) -> Result<String> {
    http_request(port, "POST", path, body).await
}

async fn http_request(port: u16, method: &str, path: &str, body: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    Ok(text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

fn var(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A y-protocols message, with Hocuspocus's document-name prefix when needed.
fn msg(kind: Kind, room: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + room.len() + 4);
    if kind == Kind::Hocuspocus {
        var(&mut m, room.len() as u64);
        m.extend_from_slice(room.as_bytes());
    }
    m.extend_from_slice(body);
    m
}

fn sync_msg(sub: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0, sub];
    var(&mut b, payload.len() as u64);
    b.extend_from_slice(payload);
    b
}

/// Shared results of one measurement step.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    delivered: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    /// Clients whose connection the server closed (or broke) during the step, and the
    /// first close reason it gave: a step with any fails.
    closed: AtomicU64,
    close_reason: Mutex<Option<String>>,
}

/// The y-protocols body of a frame (after Hocuspocus's document name).
fn body(kind: Kind, bytes: &[u8]) -> Option<&[u8]> {
    let mut b = bytes;
    if kind == Kind::Hocuspocus {
        let (len, rest) = varuint(b)?;
        b = rest.get(len..)?;
    }
    Some(b)
}

/// The body of a frame if it is a y-protocols sync message of sub-type `sub` (1: sync
/// step 2, 2: update).
fn sync_body(kind: Kind, bytes: &[u8], sub: u8) -> Option<&[u8]> {
    body(kind, bytes).filter(|b| b.len() > 2 && b[0] == 0 && b[1] == sub)
}

/// The body of a frame if it is a live sync update. Sync step 2 carries old content and
/// is not counted.
fn live_update(kind: Kind, bytes: &[u8]) -> Option<&[u8]> {
    sync_body(kind, bytes, 2)
}

/// Reads until the server's sync step 2 (the room's document) has arrived, and applies it
/// to `doc` when one is given.
async fn until_synced(kind: Kind, ws: &mut Ws, doc: Option<&Doc>) -> Result<()> {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Err(_) => bail!("no sync step 2 within 60 s"),
            Ok(None) => bail!("connection closed before sync step 2"),
            Ok(Some(m)) => {
                if let Message::Binary(b) = m? {
                    if let Some(body) = sync_body(kind, &b, 1) {
                        if let Some(doc) = doc {
                            let update = update_payload(body).context("sync step 2 without an update")?;
                            let update = yrs::Update::decode_v1(update).context("the server's sync step 2")?;
                            doc.transact_mut().apply_update(update).context("applying the server's sync step 2")?;
                        }
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// A lib0 variable-length unsigned integer at the start of `b`, and what follows it.
fn varuint(mut b: &[u8]) -> Option<(usize, &[u8])> {
    let (mut n, mut shift) = (0usize, 0);
    loop {
        let (&byte, rest) = b.split_first()?;
        b = rest;
        n |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((n, b));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// Finds markers `~CCCCCTTTTTTTTTTTT~` (client id, send time in µs since `t0`) in raw bytes.
fn scan(bytes: &[u8], me: u32, t0: Instant, tally: &Tally) {
    let now = t0.elapsed().as_micros() as u64;
    let mut found = Vec::new();
    let mut i = 0;
    while i + 19 <= bytes.len() {
        if bytes[i] == b'~' && bytes[i + 18] == b'~' && bytes[i + 1..i + 18].iter().all(u8::is_ascii_digit) {
            let s = std::str::from_utf8(&bytes[i + 1..i + 18]).unwrap_or("0");
            let client: u32 = s[..5].parse().unwrap_or(0);
            let t: u64 = s[5..].parse().unwrap_or(0);
            if client != me {
                found.push(now.saturating_sub(t));
            }
            i += 19;
        } else {
            i += 1;
        }
    }
    if !found.is_empty() {
        tally.delivered.fetch_add(found.len() as u64, Ordering::Relaxed);
        if let Ok(mut l) = tally.latencies_us.lock() {
            l.extend(found);
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn connect(kind: Kind, port: u16, room: &str, path: &str) -> Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}")).await?;
    if kind == Kind::Hocuspocus {
        // Auth (type 2), token sub-type 0, empty token.
        let mut auth = vec![2, 0];
        var(&mut auth, 0);
        ws.send(Message::Binary(msg(kind, room, &auth).into())).await?;
    }
    // Sync step 1 with an empty state vector.
    ws.send(Message::Binary(msg(kind, room, &sync_msg(0, &[0])).into())).await?;
    Ok(ws)
}

/// `--at start`: every client types at position 0.
static AT_START: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// `--integrate`: clients apply what they receive to their own document, as editors do (by
/// default they only scan it for markers, so their inserts never see each other's).
static INTEGRATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The yrs update inside a y-protocols sync "update" message (`0, 2, len, bytes`).
fn update_payload(msg: &[u8]) -> Option<&[u8]> {
    let (len, rest) = varuint(msg.get(2..)?)?;
    rest.get(..len)
}

/// What every client of a step shares.
struct StepRun {
    kind: Kind,
    port: u16,
    rate: f64,
    t0: Instant,
    secs: u64,
    start: tokio::sync::Barrier,
    tally: Arc<Tally>,
}

/// One client: types markers at `rate`/s until `stop`, and scans everything it receives.
async fn client(run: Arc<StepRun>, room: String, path: String, me: u32) -> Result<()> {
    let StepRun { kind, port, rate, t0, secs, .. } = *run;
    let (start, tally) = (&run.start, run.tally.clone());
    let mut ws = connect(kind, port, &room, &path).await?;
    // Every client of the step has joined and received the room's document before anyone
    // types: the step measures edits, not joins (a new client's sync step 2 of a document
    // grown over the ramp is megabytes).
    let doc = Doc::with_client_id(u64::from(me) + 1000);
    let text = doc.get_or_insert_text("code");
    let integrate = INTEGRATE.load(Ordering::Relaxed);
    // A client that applies what it receives starts from the document it joined, as a
    // stock client does: its inserts at the start then sit before the room's current first
    // character (a client typing into an empty copy of a long document would make the
    // server scan every item typed at the start before it, on every keystroke).
    until_synced(kind, &mut ws, integrate.then_some(&doc)).await?;
    tokio::time::timeout(Duration::from_secs(120), start.wait())
        .await
        .map_err(|_| anyhow::anyhow!("the step's other clients did not join within 120 s"))?;
    let until = Instant::now() + Duration::from_secs(secs);
    let (mut tx, mut rx) = ws.split();
    let reader_tally = tally.clone();
    // One transaction at a time on the document (the reader applies, the writer types).
    let lock = Arc::new(Mutex::new(()));
    let (reader_doc, reader_lock) = (doc.clone(), lock.clone());
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Close(Some(f)) = &m {
                if let Ok(mut r) = reader_tally.close_reason.lock() {
                    r.get_or_insert_with(|| format!("{} {}", u16::from(f.code), f.reason));
                }
            }
            if let Message::Binary(b) = m {
                if let Some(u) = live_update(kind, &b) {
                    scan(u, me, t0, &reader_tally);
                    if integrate {
                        if let Some(Ok(update)) = update_payload(u).map(yrs::Update::decode_v1) {
                            let _guard = reader_lock.lock().unwrap_or_else(|e| e.into_inner());
                            let _ = reader_doc.transact_mut().apply_update(update);
                        }
                    }
                }
            }
        }
    });
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now() + period.mul_f64(f64::from(me % 97) / 97.0);
    while next < until {
        tokio::time::sleep_until(next.into()).await;
        next += period;
        let marker = format!("~{me:05}{:012}~", t0.elapsed().as_micros());
        let update = {
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut txn = doc.transact_mut();
            let at = if AT_START.load(Ordering::Relaxed) { 0 } else { text.len(&txn) };
            text.insert(&mut txn, at, &marker);
            txn.encode_update_v1()
        };
        tally.sent.fetch_add(1, Ordering::Relaxed);
        if tx.send(Message::Binary(msg(kind, &room, &sync_msg(2, &update)).into())).await.is_err() {
            // The server closed or broke the connection (e.g. dropped a client too slow to
            // read): the step fails, the run goes on.
            tally.closed.fetch_add(1, Ordering::Relaxed);
            reader.abort();
            return Ok(());
        }
    }
    let _ = text.get_string(&doc.transact());
    // Let the last edits arrive, then close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = tx.close().await;
    reader.abort();
    Ok(())
}

/// CPU seconds a process (`self` or a pid) used so far, from /proc (user + system).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

struct Step {
    /// The load generator's own CPU (cores) over the step: it shares the machine.
    gen_cpu: f64,
    offered: f64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    ratio: f64,
    cpu: f64,
    /// Connections the server closed during the step, and its first reason.
    closed: u64,
    close_reason: Option<String>,
}

async fn step(
    kind: Kind,
    server: &ServerProc,
    rooms: &[(String, String)],
    clients: usize,
    rate: f64,
    secs: u64,
    first_client: u32,
) -> Result<Step> {
    let tally = Arc::new(Tally::default());
    let t0 = Instant::now();
    let run = Arc::new(StepRun {
        kind,
        port: server.port,
        rate,
        t0,
        secs,
        start: tokio::sync::Barrier::new(rooms.len() * clients),
        tally: tally.clone(),
    });
    let (cpu0, _) = server.usage();
    let gen0 = cpu_secs("self");
    let mut tasks = Vec::new();
    // Client ids must be new in every step: a server keeps the room's document between
    // steps, and an update under an old client id with clocks it already has is a
    // duplicate it rightly drops (that used to look like lost edits).
    let mut me = first_client;
    for (room, path) in rooms {
        for _ in 0..clients {
            tasks.push(tokio::spawn(client(run.clone(), room.clone(), path.clone(), me)));
            me += 1;
        }
    }
    for t in tasks {
        t.await??;
    }
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, _) = server.usage();
    let gen1 = cpu_secs("self");
    let mut l = std::mem::take(&mut *tally.latencies_us.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    l.sort_unstable();
    let pct =
        |p: f64| if l.is_empty() { f64::INFINITY } else { l[((l.len() - 1) as f64 * p) as usize] as f64 / 1000.0 };
    let sent = tally.sent.load(Ordering::Relaxed) as f64;
    let expected = sent * (clients as f64 - 1.0);
    let delivered = tally.delivered.load(Ordering::Relaxed) as f64;
    Ok(Step {
        offered: sent / secs as f64,
        delivered_per_s: delivered / secs as f64,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        ratio: if expected > 0.0 { delivered / expected } else { 0.0 },
        cpu: (cpu1 - cpu0) / wall,
        closed: tally.closed.load(Ordering::Relaxed),
        close_reason: tally.close_reason.lock().ok().and_then(|mut r| r.take()),
        gen_cpu: (gen1 - gen0) / wall,
    })
}

/// RSS per room with a ~1 KiB document and one idle client: right after joining, and once
/// it sat idle for `wait` seconds. Measured as a slope, so what the server allocated and
/// freed before (its start, the allocator's own caches) cancels out: half the rooms
/// join and sit idle (reading A), then the other half joins (reading B, right after joining)
/// and sits idle too (reading C): joined = (B - A) / (n/2), idle = (C - A) / (n/2). Each
/// half's rooms are created just before it joins, so that what creating a room keeps (on
/// arena: its records in sled's cache) is in the slope too.
async fn idle_memory(kind: Kind, n: usize, wait: u64) -> Result<(f64, f64)> {
    let server = ServerProc::start(kind).await?;
    let half = n.max(2) / 2;
    let mut conns = Vec::new();
    let body: String = "def solve(nums):\n    return sorted(nums)\n".repeat(25);
    let mut reading = Vec::new();
    for part in 0..2 {
        let chunk = server.rooms(kind, part * half, half).await?;
        for (i, (room, path)) in chunk.iter().enumerate() {
            let mut ws = connect(kind, server.port, room, path).await?;
            let doc = Doc::with_client_id(10_000 + (part * half + i) as u64);
            let text = doc.get_or_insert_text("code");
            let update = {
                let mut txn = doc.transact_mut();
                text.insert(&mut txn, 0, &body);
                txn.encode_update_v1()
            };
            ws.send(Message::Binary(msg(kind, room, &sync_msg(2, &update)).into())).await?;
            conns.push(ws);
        }
        // Read what the servers send (pings, awareness) and let them settle.
        drain(&mut conns, Duration::from_secs(2)).await;
        if part == 1 {
            reading.push((server.usage().1, server.heap_live().await));
        }
        drain(&mut conns, Duration::from_secs(wait)).await;
        reading.push((server.usage().1, server.heap_live().await));
    }
    drop(conns);
    let [a, b, c] = reading[..] else { bail!("readings: {reading:?}") };
    let per = |x: u64, a: u64| x.saturating_sub(a) as f64 / half as f64;
    if let (Some(ha), Some(hb), Some(hc)) = (a.1, b.1, c.1) {
        // Only an arena server built with `--features heap-stats` reports it.
        eprintln!(
            "  live heap per room (heap-stats): {:.1} KiB just joined, {:.1} KiB after {wait} s idle ({:.0} / {:.0} bytes)",
            per(hb, ha) / 1024.0,
            per(hc, ha) / 1024.0,
            per(hb, ha),
            per(hc, ha)
        );
    }
    Ok((per(b.0, a.0), per(c.0, a.0)))
}

/// Reads every connection for `d`.
async fn drain(conns: &mut [Ws], d: Duration) {
    let until = Instant::now() + d;
    loop {
        for ws in conns.iter_mut() {
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), ws.next()).await {}
        }
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200).min(until.saturating_duration_since(Instant::now()))).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = parse_opts()?;
    AT_START.store(o.at == "start", Ordering::Relaxed);
    let rates: Vec<f64> =
        std::iter::successors(Some(o.from), |r| Some(r * o.ramp)).take_while(|r| *r <= 6000.0).collect();
    let mut summary: Vec<(Kind, Option<Step>, (f64, f64))> = Vec::new();
    for &kind in &o.kinds {
        eprintln!("== {} ==", kind.name());
        let mut best: Option<Step> = None;
        // The ramp, on a server of its own (none with --idle-only).
        if !o.idle_only {
            let server = ServerProc::start(kind).await?;
            let rooms = server.rooms(kind, 0, o.rooms).await?;
            let mut run = 0usize;
            'ramp: for &rate in &rates {
                for attempt in 0..=o.step_retries {
                    let first_client = 1 + (run * o.rooms * o.clients) as u32;
                    run += 1;
                    let s = step(kind, &server, &rooms, o.clients, rate, o.step_secs, first_client).await?;
                    let ok = s.p99_ms <= o.p99_ms && s.ratio >= 0.95 && s.closed == 0;
                    if s.closed > 0 {
                        eprintln!(
                            "  the server closed {} connection(s): {}",
                            s.closed,
                            s.close_reason.as_deref().unwrap_or("no close frame")
                        );
                    }
                    eprintln!(
                    "  {:>6.0} edits/s offered → {:>8.0} deliveries/s, p50 {:>7.2} ms, p99 {:>8.2} ms, delivered {:>5.1}%, server CPU {:.2} cores (generator {:.2}) {}",
                    s.offered,
                    s.delivered_per_s,
                    s.p50_ms,
                    s.p99_ms,
                    s.ratio * 100.0,
                    s.cpu,
                    s.gen_cpu,
                    match (ok, attempt < o.step_retries) {
                        (true, _) => "ok",
                        (false, true) => "✗ (over the bound; once more)",
                        (false, false) => "✗ (over the bound)",
                    }
                );
                    if ok {
                        best = Some(s);
                        continue 'ramp;
                    }
                }
                break;
            }
            drop(server);
        }
        let mut joined = Vec::new();
        let mut idle = Vec::new();
        for _ in 0..o.idle_repeat {
            let (j, i) = idle_memory(kind, o.idle_rooms, o.idle_wait_secs).await?;
            eprintln!(
                "  idle room: {:.1} KiB RSS each just joined, {:.1} KiB after {} s idle ({} rooms; {:.0} / {:.0} bytes)",
                j / 1024.0,
                i / 1024.0,
                o.idle_wait_secs,
                o.idle_rooms,
                j,
                i
            );
            joined.push(j);
            idle.push(i);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let mem = (median(&mut joined), median(&mut idle));
        if o.idle_repeat > 1 {
            eprintln!("  idle room, median of {}: {:.1} / {:.1} KiB", o.idle_repeat, mem.0 / 1024.0, mem.1 / 1024.0);
        }
        summary.push((kind, best, mem));
    }
    println!("\nWorkload: {} rooms × {} clients, each client inserting a 19-byte marker at the {} of its own text{} at rate r (ramped ×{} every {} s); a step passes while p99 edit-to-remote latency ≤ {} ms and ≥ 95% of edits arrive (a failed step is run {} more time(s) before the ramp stops). Idle rooms: {} rooms with a ~1 KiB document and one idle client each, RSS growth per room right after joining and after {} s idle (median of {} fresh servers).\n", o.rooms, o.clients, o.at, if INTEGRATE.load(Ordering::Relaxed) { " (and applying what it receives)" } else { "" }, o.ramp, o.step_secs, o.p99_ms, o.step_retries, o.idle_rooms, o.idle_wait_secs, o.idle_repeat);
    println!("| server | max edits/s (offered) with p99 ≤ {} ms | deliveries/s | p50 ms | p99 ms | server CPU (cores) | RSS per idle room (joined / after {} s) |", o.p99_ms, o.idle_wait_secs);
    println!("|---|---|---|---|---|---|---|");
    for (kind, best, mem) in &summary {
        match best {
            Some(s) => println!(
                "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} / {:.1} KiB |",
                kind.name(),
                s.offered,
                s.delivered_per_s,
                s.p50_ms,
                s.p99_ms,
                s.cpu,
                mem.0 / 1024.0,
                mem.1 / 1024.0
            ),
            None => println!(
                "| {} | {} | | | | | {:.1} / {:.1} KiB |",
                kind.name(),
                if o.idle_only { "(not run: --idle-only)" } else { "(none passed)" },
                mem.0 / 1024.0,
                mem.1 / 1024.0
            ),
        }
    }
    Ok(())
}
