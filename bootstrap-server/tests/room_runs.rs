//! Runs in a room (`POST /api/rooms/{room}/runs`), with a real node, real bubblewrap and
//! python: the run streams into the room's `runs` (a native peer sees it while it runs),
//! its final record replaces the live ones, a successful run makes a version; who may run;
//! and what a candidate could try (a flood of runs, endless output).

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use arena_core::records::{RunRecord, RunStatus, VersionCause};
use serde_json::{json, Value};
use support::{create_room, http, wait_for, ArenaPeer, CreatedRoom, Server};

const WAIT: Duration = Duration::from_secs(60);
/// Each stream a run keeps in the document (`runs::DOC_OUTPUT_CAP`).
const DOC_CAP: usize = 32 * 1024;

static NEXT_UID: AtomicU32 = AtomicU32::new(63_000);

/// A node whose runs stop after `run_timeout_ms`: short only where a test waits for the
/// timeout of a program that never ends, generous elsewhere (a loaded machine is slow).
async fn node_with(
    backend: arena_bootstrap::exec::Backend,
    run_timeout_ms: u64,
) -> Result<(Server, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.no_p2p = true;
    cfg.exec.exec_backend = backend;
    cfg.exec.exec_uid = NEXT_UID.fetch_add(16, Ordering::SeqCst);
    cfg.exec.exec_run_timeout_ms = run_timeout_ms;
    Ok((Server::start_with(cfg).await?, dir))
}

async fn node(backend: arena_bootstrap::exec::Backend) -> Result<(Server, tempfile::TempDir)> {
    node_with(backend, 60_000).await
}

async fn local_node() -> Result<(Server, tempfile::TempDir)> {
    node(arena_bootstrap::exec::Backend::Local).await
}

/// `POST /api/rooms/{room}/runs` with `token` (none: no header) and `body`; (status, JSON).
async fn post_run(
    addr: std::net::SocketAddr,
    room: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> Result<(u16, Value)> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let headers = format!("Host: {addr}\r\n{auth}Content-Type: {content_type}\r\n");
    let (status, body) = support::http_with(addr, "POST", &format!("/api/rooms/{room}/runs"), &headers, body).await?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

async fn run(addr: std::net::SocketAddr, room: &str, token: &str, body: Value) -> Result<(u16, Value)> {
    post_run(addr, room, Some(token), "application/json", &body.to_string()).await
}

/// A room whose code is `code`, and the host's peer that typed it.
async fn room_with_code(addr: std::net::SocketAddr, code: &str) -> Result<(CreatedRoom, ArenaPeer)> {
    let r = create_room(addr).await?;
    let mut host = ArenaPeer::connect(addr, &r.room, &r.host, "host").await?;
    host.pump(Duration::from_millis(50)).await?;
    host.type_text(0, code).await?;
    let want = code.encode_utf16().count() as u64;
    wait_for(WAIT, "the node has the code", || async {
        let (_, body) = http(addr, "GET", &format!("/api/rooms/{}?token={}", r.room, r.host), "").await?;
        let v: Value = serde_json::from_str(&body)?;
        Ok((v["codeLength"].as_u64() == Some(want)).then_some(()))
    })
    .await?;
    Ok((r, host))
}

/// Reads what the node sends `peer` until `f` finds what it waits for (or `WAIT` passes).
async fn pump_until<T>(peer: &mut ArenaPeer, what: &str, f: impl Fn(&ArenaPeer) -> Option<T>) -> Result<T> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        peer.pump(Duration::from_millis(20)).await?;
        if let Some(v) = f(peer) {
            return Ok(v);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{what}: not seen within {WAIT:?}");
    }
}

fn record_of(runs: &[RunRecord], id: &str) -> Vec<RunRecord> {
    runs.iter().filter(|r| r.id == id).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosts_run_streams_into_the_room_and_makes_a_version() -> Result<()> {
    let (server, _dir) = local_node().await?;
    let code = "import time\nfor i in range(8):\n    print('line', i, flush=True)\n    time.sleep(0.3)\n";
    let (r, host) = room_with_code(server.addr, code).await?;
    let mut watcher = ArenaPeer::connect(server.addr, &r.room, &r.candidate, "candidate").await?;
    let (addr, room, token) = (server.addr, r.room.clone(), r.host.clone());
    let call = tokio::spawn(async move { run(addr, &room, &token, json!({})).await });
    // The candidate's replica sees the run while it runs: a `running` record with output.
    let mut live_id = String::new();
    for _ in 0..600 {
        watcher.pump(Duration::from_millis(50)).await?;
        let runs = watcher.room().doc().runs();
        if let Some(live) = runs.iter().find(|r| r.status == RunStatus::Running && r.stdout.contains("line 0")) {
            live_id = live.id.clone();
            break;
        }
    }
    assert!(!live_id.is_empty(), "no live output seen: {:?}", watcher.room().doc().runs());
    let (status, answer) = call.await??;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], live_id.as_str());
    assert_eq!(answer["status"], "finished");
    assert_eq!(answer["exitCode"], 0);
    let expected: String = (0..8).map(|i| format!("line {i}\n")).collect();
    assert_eq!(answer["stdout"], expected.as_str());
    let version = answer["version"].as_str().context("a version id")?.to_owned();
    // Then the final record alone, and the version, on the watcher's replica.
    let (records, v) = pump_until(&mut watcher, "the final record and the version", |w| {
        let doc = w.room().doc();
        let records = record_of(&doc.runs(), &live_id);
        let v = doc.versions().into_iter().find(|v| v.id == version)?;
        (records.len() == 1 && records[0].status == RunStatus::Finished).then_some((records, v))
    })
    .await?;
    assert_eq!(records[0].stdout, expected);
    assert_eq!((v.cause, v.label.as_str()), (VersionCause::Run, format!("run {live_id}").as_str()));
    drop(host);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_may_run_an_observer_and_a_stranger_may_not() -> Result<()> {
    let (server, _dir) = local_node().await?;
    let (r, _host) =
        room_with_code(server.addr, "import sys\nprint('got', sys.stdin.read().strip(), sys.argv[1:])\n").await?;
    let (status, v) = run(server.addr, &r.room, &r.candidate, json!({ "stdin": "42\n", "args": ["a"] })).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stdout"], "got 42 ['a']\n");
    assert_eq!(v["by"].as_str().map(str::len), Some(64), "{v}");
    // A language override: the same code as bash fails to parse, and makes no version.
    let (status, v) = run(server.addr, &r.room, &r.candidate, json!({ "language": "bash" })).await?;
    assert_eq!((status, v["language"].as_str()), (200, Some("bash")), "{v}");
    assert!(v["version"].is_null(), "{v}");
    let (status, v) = run(server.addr, &r.room, &r.observer, json!({})).await?;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().is_some_and(|m| m.contains("observer")), "{v}");
    let (status, _) = post_run(server.addr, &r.room, None, "application/json", "{}").await?;
    assert_eq!(status, 401);
    let (status, _) = post_run(server.addr, &r.room, Some("not-a-token"), "application/json", "{}").await?;
    assert_eq!(status, 403);
    // Another room's token is not this room's.
    let other = create_room(server.addr).await?;
    let (status, _) = run(server.addr, &r.room, &other.host, json!({})).await?;
    assert_eq!(status, 403);
    // Bad bodies: 415 without JSON, 400 for what does not parse or is too much.
    let (status, _) = post_run(server.addr, &r.room, Some(&r.host), "text/plain", "{}").await?;
    assert_eq!(status, 415);
    for body in [r#"{"stdin": 5}"#, r#"{"nope": 1}"#, "[", r#"{"language": ""}"#] {
        let (status, v) = post_run(server.addr, &r.room, Some(&r.host), "application/json", body).await?;
        assert_eq!(status, 400, "{body}: {v}");
    }
    let args: Vec<String> = (0..65).map(|i| i.to_string()).collect();
    let (status, _) = run(server.addr, &r.room, &r.host, json!({ "args": args })).await?;
    assert_eq!(status, 400);
    // An unknown language: 400, and the room says why too.
    let (status, v) = run(server.addr, &r.room, &r.host, json!({ "language": "cobol" })).await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().is_some_and(|m| m.contains("cobol")), "{v}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_program_records_its_status_and_makes_no_version() -> Result<()> {
    let (server, _dir) = local_node().await?;
    let (r, mut host) = room_with_code(server.addr, "import sys\nprint('partial')\nsys.exit(3)\n").await?;
    let (status, v) = run(server.addr, &r.room, &r.host, json!({})).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["status"].as_str(), v["exitCode"].as_i64()), (Some("finished"), Some(3)), "{v}");
    assert_eq!(v["stdout"], "partial\n");
    assert!(v["version"].is_null(), "{v}");
    let id = v["id"].as_str().context("id")?.to_owned();
    pump_until(&mut host, "the final record", |h| {
        let records = record_of(&h.room().doc().runs(), &id);
        (records.len() == 1 && records[0].status == RunStatus::Finished).then_some(())
    })
    .await?;
    assert!(host.room().doc().versions().is_empty(), "{:?}", host.room().doc().versions());
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_output_is_capped_in_the_document_and_times_out_and_the_node_stays_healthy() -> Result<()> {
    let (server, _dir) = node_with(arena_bootstrap::exec::Backend::Local, 3_000).await?;
    let (r, mut host) = room_with_code(
        server.addr,
        "import sys\nwhile True:\n    sys.stdout.write('x' * 4096 + '\\n')\n    sys.stderr.write('e' * 100)\n",
    )
    .await?;
    let (status, v) = run(server.addr, &r.room, &r.candidate, json!({})).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "timed_out", "{v}");
    let stdout = v["stdout"].as_str().context("stdout")?;
    assert!(stdout.len() <= DOC_CAP + 64 && stdout.ends_with("[output truncated]\n"), "{}", stdout.len());
    let stderr = v["stderr"].as_str().context("stderr")?;
    assert!(
        stderr.len() <= DOC_CAP + 256 && stderr.contains("time limit"),
        "{}",
        &stderr[stderr.len().saturating_sub(200)..]
    );
    assert!(v["version"].is_null());
    let id = v["id"].as_str().context("id")?.to_owned();
    // The room holds the final record alone; its live records, all of them together,
    // never held more than the cap either (the document's size says so).
    pump_until(&mut host, "the final record", |h| {
        let records = record_of(&h.room().doc().runs(), &id);
        (records.len() == 1 && records[0].status == RunStatus::TimedOut).then_some(())
    })
    .await?;
    let size = host.room().doc().encode_state().len();
    assert!(size < 8 * DOC_CAP, "the document grew to {size} bytes");
    // Still healthy: another run works.
    let (status, v) = run(server.addr, &r.room, &r.host, json!({ "language": "bash" })).await?;
    assert_eq!(status, 200, "{v}");
    let (status, body) = http(server.addr, "GET", "/health", "").await?;
    assert_eq!(status, 200, "{body}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_runs_one_program_at_a_time_and_a_few_a_minute() -> Result<()> {
    let (server, _dir) = local_node().await?;
    let (r, mut host) = room_with_code(server.addr, "import time\nprint('start', flush=True)\ntime.sleep(8)\n").await?;
    let (addr, room, token) = (server.addr, r.room.clone(), r.host.clone());
    let first = tokio::spawn(async move { run(addr, &room, &token, json!({})).await });
    pump_until(&mut host, "the first run is running", |h| {
        h.room().doc().runs().iter().any(|r| r.status == RunStatus::Running).then_some(())
    })
    .await?;
    // A second run while the first goes on (it sleeps 8 s: room for a loaded machine), by
    // either member: refused, nothing written.
    for token in [&r.candidate, &r.host] {
        let (status, v) = run(server.addr, &r.room, token, json!({})).await?;
        assert_eq!(status, 429, "{v}");
    }
    let (status, v) = first.await??;
    assert_eq!((status, v["status"].as_str()), (200, Some("finished")), "{v}");
    // Another room is not held up by this one.
    let (other, _h) = room_with_code(server.addr, "print(1)\n").await?;
    let (status, _) = run(server.addr, &other.room, &other.host, json!({})).await?;
    assert_eq!(status, 200);
    // A minute's allowance (the first run counted), then 429 until the minute is over.
    let mut ok = 1;
    loop {
        let (status, v) = run(server.addr, &r.room, &r.candidate, json!({ "language": "bash" })).await?;
        match status {
            200 => ok += 1,
            429 => break,
            _ => anyhow::bail!("{status} {v}"),
        }
        anyhow::ensure!(ok <= 20, "more than 20 runs in a minute");
    }
    assert_eq!(ok, 20);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_executor_a_run_is_refused_with_a_reason() -> Result<()> {
    let (server, _dir) = node(arena_bootstrap::exec::Backend::Off).await?;
    let r = create_room(server.addr).await?;
    let (status, v) = run(server.addr, &r.room, &r.host, json!({})).await?;
    assert_eq!(status, 503, "{v}");
    assert!(v["error"].as_str().is_some_and(|m| m.contains("--exec-backend off")), "{v}");
    // The observer is refused before that.
    let (status, _) = run(server.addr, &r.room, &r.observer, json!({})).await?;
    assert_eq!(status, 403);
    server.stop().await
}

/// A room with `code` and extra `files` (added by the host), once the node has them all.
async fn room_with_files(
    addr: std::net::SocketAddr,
    code: &str,
    files: &[(&str, &str)],
) -> Result<(CreatedRoom, ArenaPeer)> {
    let (r, mut host) = room_with_code(addr, code).await?;
    for (name, text) in files {
        host.add_file(name, text).await?;
    }
    let want: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    wait_for(WAIT, "the node has the files", || async {
        let (_, body) = http(addr, "GET", &format!("/api/rooms/{}?token={}", r.room, r.host), "").await?;
        let v: Value = serde_json::from_str(&body)?;
        let have: Vec<&str> = v["files"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        Ok((have.len() == want.len() && want.iter().all(|w| have.contains(w))).then_some(()))
    })
    .await?;
    Ok((r, host))
}

/// A run sends every file of the room: a python main importing a helper module from a
/// second file prints the helper's output; a C main including a header of the room builds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_sends_every_file_of_the_room() -> Result<()> {
    let (server, _dir) = local_node().await?;
    let (r, _host) = room_with_files(
        server.addr,
        "from helper import greet\nfrom pkg_util import twice\nprint(greet('room'), twice(21))\n",
        &[
            ("helper.py", "def greet(who):\n    return 'hello from helper, ' + who\n"),
            ("pkg_util.py", "def twice(n):\n    return 2 * n\n"),
        ],
    )
    .await?;
    let (status, v) = run(server.addr, &r.room, &r.candidate, json!({})).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stdout"], "hello from helper, room 42\n", "{v}");
    assert!(v["version"].is_string(), "a successful multi-file run makes a version: {v}");

    let (r, _host) = room_with_files(
        server.addr,
        "#include <stdio.h>\n#include \"util.h\"\nint main(void) { printf(\"%d\\n\", SQUARE(7) + add(1, 2)); return 0; }\n",
        &[
            ("util.h", "#define SQUARE(x) ((x) * (x))\nint add(int a, int b);\n"),
            ("util.c", "#include \"util.h\"\nint add(int a, int b) { return a + b; }\n"),
        ],
    )
    .await?;
    let (status, v) = run(server.addr, &r.room, &r.host, json!({ "language": "c" })).await?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stdout"], "52\n", "{v}");
    assert_eq!(v["exitCode"], 0, "{v}");

    // A file named like the main file: refused with a message that says so, nothing run.
    let (r, _host) = room_with_files(server.addr, "print('main')\n", &[("main.py", "print('other')\n")]).await?;
    let (status, v) = run(server.addr, &r.room, &r.host, json!({})).await?;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().is_some_and(|m| m.contains("main.py") && m.contains("twice")), "{v}");
    server.stop().await
}
