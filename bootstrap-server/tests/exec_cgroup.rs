//! Per-run cgroups of the local executor, against the machine's real cgroup filesystem:
//! `/health` says which are used; where they are, a memory hog of several processes is
//! stopped by the run's memory limit (not the per-process address-space rlimit), a fork
//! bomb by pids.max, a run's processes are in its cgroup while it runs and its cgroup is
//! gone after it, and a dead node's cgroups are removed by the next node. Where the node
//! cannot use cgroups (not root, no delegation) those tests say so loudly and check nothing
//! more.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use support::{processes_with, Server};

/// Each test node runs its slots as its own uids (tests run in parallel; exec.rs uses
/// 62,000 up).
static NEXT_UID: AtomicU32 = AtomicU32::new(63_000);

fn config(data: &Path) -> arena_bootstrap::Config {
    let mut cfg = arena_bootstrap::Config::for_tests(data);
    cfg.no_p2p = true;
    cfg.exec.exec_uid = NEXT_UID.fetch_add(16, Ordering::SeqCst);
    cfg.exec.exec_run_timeout_ms = 5_000;
    cfg.exec.exec_compile_timeout_ms = 60_000;
    cfg
}

async fn node_with(f: impl FnOnce(&mut arena_bootstrap::Config)) -> Result<(Server, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    f(&mut cfg);
    let server = Server::start_with(cfg).await?;
    Ok((server, dir))
}

async fn health(addr: std::net::SocketAddr) -> Result<Value> {
    let (status, body) = support::http_with(addr, "GET", "/health", &format!("Host: {addr}\r\n"), "").await?;
    anyhow::ensure!(status == 200, "/health: {status} {body}");
    Ok(serde_json::from_str(&body)?)
}

/// Runs `code` as `language`; the answer (200 expected).
async fn run(addr: std::net::SocketAddr, language: &str, code: &str, extra: Value) -> Result<Value> {
    let mut body = json!({ "language": language, "version": "*", "files": [{ "content": code }] });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let headers = format!("Host: {addr}\r\nContent-Type: application/json\r\n");
    let (status, text) = support::http_with(addr, "POST", "/api/v2/execute", &headers, &body.to_string()).await?;
    anyhow::ensure!(status == 200, "{language}: {status} {text}");
    Ok(serde_json::from_str(&text)?)
}

/// A python program that forks `children` processes, each holding `mib` MiB (every page
/// written) for `secs` seconds, and prints "all children ended" once they have.
fn fork_hog(children: u32, mib: u32, secs: u32) -> String {
    format!(
        "import os, time\n\
         for i in range({children}):\n\
         \x20   if os.fork() == 0:\n\
         \x20       block = b'x' * ({mib} << 20)\n\
         \x20       print('child', i, 'holds', len(block) >> 20, 'MiB', flush=True)\n\
         \x20       time.sleep({secs})\n\
         \x20       os._exit(0)\n\
         for i in range({children}):\n\
         \x20   os.wait()\n\
         print('all children ended')\n"
    )
}

/// The node's directories for runs' cgroups, or `None` (said loudly) when it uses none.
async fn cgroup_dirs(addr: std::net::SocketAddr, test: &str) -> Result<Option<Vec<PathBuf>>> {
    let h = health(addr).await?;
    let said = h["exec"]["cgroups"].as_str().context("exec.cgroups")?.to_owned();
    if said.starts_with("not used") {
        eprintln!("!!! SKIPPED {test}: this node uses no cgroups here ({said})");
        return Ok(None);
    }
    let dirs: Vec<PathBuf> = h["exec"]["operator"]["cgroupDirs"]
        .as_array()
        .context("exec.operator.cgroupDirs")?
        .iter()
        .filter_map(|d| d.as_str().map(PathBuf::from))
        .collect();
    anyhow::ensure!(!dirs.is_empty(), "{h}");
    Ok(Some(dirs))
}

/// The run cgroups (`run-*`) under `dir`.
/// The stage cgroups under `dir` that hold a process other than a sandbox started ahead
/// (bash waiting for its command line), or that cannot be read.
fn busy_under(dir: &Path) -> Vec<PathBuf> {
    runs_under(dir)
        .into_iter()
        .filter(|c| {
            let Ok(procs) = std::fs::read_to_string(c.join("cgroup.procs")) else { return true };
            procs.lines().any(|pid| {
                let cmd = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
                !String::from_utf8_lossy(&cmd).contains("arena-exec-waiting")
            })
        })
        .collect()
}

fn runs_under(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Polls `probe` until it gives something (a failure after `limit`, not a timing check).
async fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "gave up waiting after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_says_which_cgroups_and_off_means_off() -> Result<()> {
    let (server, _dir) = node_with(|_| {}).await?;
    let h = health(server.addr).await?;
    let said = h["exec"]["cgroups"].as_str().context("exec.cgroups")?;
    assert!(said == "v1 (memory, pids)" || said == "v2 (memory, pids)" || said.starts_with("not used (rlimits"), "{h}");
    if said.starts_with("not used") {
        eprintln!("!!! this node uses no cgroups here: {said}");
        // The reason says what was tried.
        assert!(said.contains("v2:") && said.contains("v1:"), "{h}");
    } else {
        assert!(h["exec"]["limits"].as_str().is_some_and(|l| l.starts_with("cgroup per stage")), "{h}");
        for d in h["exec"]["operator"]["cgroupDirs"].as_array().context("operator.cgroupDirs")? {
            let d = Path::new(d.as_str().context("a dir")?);
            assert!(d.join("cgroup.procs").is_file(), "{} is a cgroup", d.display());
        }
    }
    server.stop().await?;

    let (server, _dir) = node_with(|c| c.exec.exec_cgroups = arena_bootstrap::exec::CgroupMode::Off).await?;
    let h = health(server.addr).await?;
    assert_eq!(
        h["exec"]["cgroups"],
        "not used (rlimits: address space, processes, CPU time, file size, open files): --exec-cgroups off",
        "{h}"
    );
    assert_eq!(h["exec"]["operator"]["cgroupDirs"], json!([]), "{h}");
    let v = run(server.addr, "bash", "echo fine", json!({})).await?;
    assert_eq!(v["run"]["stdout"], "fine\n", "{v}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_memory_hog_of_many_processes_is_stopped_by_the_runs_memory_limit() -> Result<()> {
    let (server, _dir) = node_with(|_| {}).await?;
    let Some(_) = cgroup_dirs(server.addr, "memory hog").await? else { return server.stop().await };
    // 8 processes of 200 MiB each, every page written: each is far below the 512 MiB
    // address-space rlimit, together 1.6 GiB.
    let hog = fork_hog(8, 200, 60);
    let v = run(server.addr, "python", &hog, json!({ "run_memory_limit": 512 << 20 })).await?;
    let r = &v["run"];
    eprintln!("memory hog: {} (peak {} bytes, stdout {:?})", r["message"], r["memory"], r["stdout"]);
    assert_eq!(r["status"], "SG", "{v}");
    assert_eq!(r["signal"], "SIGKILL", "{v}");
    let message = r["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("memory limit: the run's processes together went over 512 MiB"), "{v}");
    assert!(!r["stderr"].as_str().unwrap_or_default().contains("MemoryError"), "not the rlimit: {v}");
    assert!(!r["stdout"].as_str().unwrap_or_default().contains("all children ended"), "{v}");
    // The peak is the run's (every process together), up to the limit: more than any one
    // process's 200 MiB.
    let peak = r["memory"].as_u64().context("memory")?;
    assert!(peak > 300 << 20 && peak <= 512 << 20, "peak {peak}: {v}");
    // The node is fine and runs the next program.
    let v = run(server.addr, "bash", "echo still here", json!({})).await?;
    assert_eq!(v["run"]["stdout"], "still here\n", "{v}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fork_bomb_is_stopped_by_pids_max() -> Result<()> {
    let (server, _dir) = node_with(|_| {}).await?;
    let Some(_) = cgroup_dirs(server.addr, "fork bomb").await? else { return server.stop().await };
    let bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    let v = run(server.addr, "python", bomb, json!({ "run_timeout": 2000 })).await?;
    assert_eq!(v["run"]["status"], "TO", "{v}");
    let message = v["run"]["message"].as_str().unwrap_or_default();
    eprintln!("python fork bomb: {message}");
    assert!(message.contains("refused at the run's limit of 64 (pids.max)"), "{v}");
    let v = run(server.addr, "bash", ":(){ :|:& };:\nsleep 30", json!({ "run_timeout": 2000 })).await?;
    let message = v["run"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("(pids.max)"), "{v}");
    let v = run(server.addr, "bash", "echo still here", json!({})).await?;
    assert_eq!(v["run"]["stdout"], "still here\n", "{v}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runs_processes_are_in_its_cgroup_and_it_is_gone_after_the_run() -> Result<()> {
    let (server, _dir) = node_with(|_| {}).await?;
    let Some(dirs) = cgroup_dirs(server.addr, "run cgroup lifetime").await? else { return server.stop().await };
    let marker = "987655.125";
    let code = format!("setsid sleep {marker} &\n(sleep {marker} &)\necho started\nsleep {marker}");
    let addr = server.addr;
    let running = tokio::spawn(async move { run(addr, "bash", &code, json!({ "run_timeout": 3000 })).await });
    // While it runs: its stage cgroup exists in every hierarchy, and the program's
    // processes (the three sleeps) are listed in it.
    let mut used = Vec::new();
    for dir in &dirs {
        let (cgroup, in_cgroup) = wait_for(Duration::from_secs(20), || {
            runs_under(dir).into_iter().find_map(|c| {
                let procs = std::fs::read_to_string(c.join("cgroup.procs")).ok()?;
                let pids: Vec<&str> = procs.lines().collect();
                let sleeps = processes_with(marker)
                    .into_iter()
                    .filter(|p| p.split(' ').next().is_some_and(|pid| pids.contains(&pid)))
                    .count();
                (sleeps == 3).then_some((c, sleeps))
            })
        })
        .await
        .with_context(|| format!("the run's sleeps in a cgroup under {}", dir.display()))?;
        assert_eq!(in_cgroup, 3);
        used.push(cgroup);
    }
    let v = running.await??;
    assert_eq!(v["run"]["status"], "TO", "{v}");
    assert_eq!(v["run"]["stdout"], "started\n", "{v}");
    // After it: its cgroup is gone, no cgroup holds anything but sandboxes started ahead
    // for the next runs, and no process of it is left.
    for c in &used {
        assert!(!c.exists(), "{} stays", c.display());
    }
    // (A sandbox being started ahead is the node's own fork for a moment, before it is
    // bash: wait for that moment to pass; a program left over would stay.)
    for dir in &dirs {
        wait_for(Duration::from_secs(10), || busy_under(dir).is_empty().then_some(()))
            .await
            .with_context(|| format!("left under {}: {:?}", dir.display(), busy_under(dir)))?;
    }
    assert!(processes_with(marker).is_empty(), "survivors: {:?}", processes_with(marker));
    // Also after a run that ends by itself; and the sandboxes made ahead do not pile up.
    for _ in 0..5 {
        let v = run(server.addr, "bash", "echo done", json!({})).await?;
        assert_eq!(v["run"]["stdout"], "done\n", "{v}");
    }
    for dir in &dirs {
        wait_for(Duration::from_secs(10), || busy_under(dir).is_empty().then_some(()))
            .await
            .with_context(|| format!("left under {}: {:?}", dir.display(), busy_under(dir)))?;
        let n = wait_for(Duration::from_secs(20), || {
            let n = runs_under(dir).len();
            (n <= 8).then_some(n)
        })
        .await
        .with_context(|| format!("{:?}", runs_under(dir)))?;
        eprintln!("{n} cgroups of sandboxes started ahead under {}", dir.display());
    }
    server.stop().await
}

/// Host paths are the operator's: `/health` shows the cgroups' directories to the operator
/// and hides them from anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_shows_cgroup_dirs_to_the_operator_only() -> Result<()> {
    let token = "operator-token-0123456789";
    let admin: arena_bootstrap::AdminToken = token.parse().map_err(anyhow::Error::msg)?;
    let (server, _dir) = node_with(|c| c.admin_token = Some(admin)).await?;
    let addr = server.addr;
    let (status, body) = support::http_with(addr, "GET", "/health", &format!("Host: {addr}\r\n"), "").await?;
    assert_eq!(status, 200, "{body}");
    let stranger: Value = serde_json::from_str(&body)?;
    assert!(stranger["exec"]["cgroups"].is_string(), "{stranger}");
    assert!(stranger["exec"].get("operator").is_none(), "a stranger sees {stranger}");
    assert!(!body.contains("/sys/fs/cgroup"), "{body}");
    let wrong = format!("Host: {addr}\r\nAuthorization: Bearer not-the-token\r\n");
    let (_, body) = support::http_with(addr, "GET", "/health", &wrong, "").await?;
    assert!(!body.contains("\"operator\""), "a wrong token sees {body}");
    let right = format!("Host: {addr}\r\nAuthorization: Bearer {token}\r\n");
    let (_, body) = support::http_with(addr, "GET", "/health", &right, "").await?;
    let operator: Value = serde_json::from_str(&body)?;
    assert!(operator["exec"]["operator"]["cgroupDirs"].is_array(), "{operator}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_nodes_cgroups_are_removed_at_start_and_a_live_ones_kept() -> Result<()> {
    let (first, _dir) = node_with(|_| {}).await?;
    let Some(dirs) = cgroup_dirs(first.addr, "stale cgroups").await? else { return first.stop().await };
    // A dead node's directory, with a run cgroup in it, beside this process's nodes' (in
    // the node's own cgroup: the parent of its directory). A pid no process or thread has:
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")?.trim().parse()?;
    let dead = (2..pid_max).rev().find(|p| !Path::new(&format!("/proc/{p}")).exists()).context("a free pid")?;
    let ns = std::fs::read_link("/proc/self/ns/pid")?.to_string_lossy().into_owned();
    let ns = ns.trim_start_matches("pid:[").trim_end_matches(']').to_owned();
    let mut stale = Vec::new();
    let mut foreign = Vec::new();
    for dir in &dirs {
        let own = dir.parent().context("the node's cgroup")?;
        let s = own.join(format!("arena-exec-{ns}-{dead}-0"));
        std::fs::create_dir(&s)?;
        std::fs::create_dir(s.join("run-7-run"))?;
        stale.push(s);
        // Another pid namespace's: its pid means nothing here, so it stays.
        let f = own.join(format!("arena-exec-1-{dead}-0"));
        std::fs::create_dir(&f)?;
        foreign.push(f);
    }
    let (second, _dir2) = node_with(|_| {}).await?;
    // Answered once the node (and its executor) runs.
    health(second.addr).await?;
    for s in &stale {
        assert!(!s.exists(), "{} was removed", s.display());
    }
    for (f, d) in foreign.iter().zip(&dirs) {
        assert!(f.exists(), "{} stays", f.display());
        std::fs::remove_dir(f)?;
        assert!(d.exists(), "the first node's {} stays", d.display());
    }
    let v = run(first.addr, "bash", "echo first", json!({})).await?;
    assert_eq!(v["run"]["stdout"], "first\n", "{v}");
    second.stop().await?;
    first.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_whose_caller_hangs_up_leaves_no_process() -> Result<()> {
    // A run timeout far beyond the test's patience: only the dropped run's cleanup can end it.
    let (server, _dir) = node_with(|c| c.exec.exec_run_timeout_ms = 600_000).await?;
    let Some(dirs) = cgroup_dirs(server.addr, "caller hangs up").await? else { return server.stop().await };
    hang_up_on_a_sleeper(server.addr, "987657.375").await?;
    for dir in &dirs {
        wait_for(Duration::from_secs(10), || busy_under(dir).is_empty().then_some(())).await?;
    }
    server.stop().await
}

/// The same without cgroups: the dropped stage kills its sandbox itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_cgroups_a_run_whose_caller_hangs_up_leaves_no_process() -> Result<()> {
    let (server, _dir) = node_with(|c| {
        c.exec.exec_run_timeout_ms = 600_000;
        c.exec.exec_cgroups = arena_bootstrap::exec::CgroupMode::Off;
    })
    .await?;
    hang_up_on_a_sleeper(server.addr, "987658.375").await?;
    server.stop().await
}

/// Starts a bash run that sleeps (and leaves a sleeper in a session of its own), drops the
/// connection once both sleep, and waits until neither is left.
async fn hang_up_on_a_sleeper(addr: std::net::SocketAddr, marker: &str) -> Result<()> {
    let body = json!({
        "language": "bash", "version": "*", "run_timeout": 600_000,
        "files": [{ "content": format!("setsid sleep {marker} &\nsleep {marker}") }],
    })
    .to_string();
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST /api/v2/execute HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut conn, format!("{head}{body}").as_bytes()).await?;
    wait_for(Duration::from_secs(20), || (processes_with(marker).len() == 2).then_some(())).await?;
    drop(conn);
    wait_for(Duration::from_secs(30), || processes_with(marker).is_empty().then_some(()))
        .await
        .with_context(|| format!("survivors: {:?}", processes_with(marker)))?;
    Ok(())
}

/// The pids of the sandboxes a node started ahead (bash waiting for its command line) whose
/// uid is in `uids` (the node's run slots).
fn waiting_in(uids: std::ops::Range<u32>) -> Vec<String> {
    processes_with("arena-exec-waiting")
        .into_iter()
        .filter_map(|line| {
            let pid = line.split(' ').next()?.to_owned();
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let uid: u32 =
                status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()?;
            uids.contains(&uid).then_some(pid)
        })
        .collect()
}

/// A node with cgroups and its slots' uid range, once its sandboxes started ahead wait (or
/// `None`, said loudly, where it uses no cgroups or is not root).
async fn node_with_sandboxes_ahead(test: &str) -> Result<Option<(Server, tempfile::TempDir, std::ops::Range<u32>)>> {
    let mut uid = 0;
    let (server, dir) = node_with(|c| uid = c.exec.exec_uid).await?;
    if cgroup_dirs(server.addr, test).await?.is_none() || !is_root() {
        eprintln!("!!! SKIPPED {test}: no cgroups or not root, so no sandboxes are started ahead");
        server.stop().await?;
        return Ok(None);
    }
    let uids = uid..uid + 4;
    // Two per slot (a compile and a run stage), four slots by default.
    wait_for(Duration::from_secs(60), || (waiting_in(uids.clone()).len() == 8).then_some(()))
        .await
        .with_context(|| format!("sandboxes started ahead: {:?}", waiting_in(uids.clone())))?;
    let h = health(server.addr).await?;
    assert_eq!(h["exec"]["startedAhead"], 8, "{h}");
    Ok(Some((server, dir, uids)))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|v| v.split_whitespace().next() == Some("0")))
        .unwrap_or(false)
}

/// A program cannot see or signal the sandboxes waiting for the next stages (they are
/// outside its pid namespace), and the sweep of its uid after the run spares them: of those
/// waiting before, only the one the run became is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_cannot_reach_the_sandboxes_waiting_for_the_next_runs() -> Result<()> {
    let Some((server, _dir, uids)) = node_with_sandboxes_ahead("waiting sandboxes vs a hostile run").await? else {
        return Ok(());
    };
    let before = waiting_in(uids.clone());
    let code = "ls /proc | grep -c '^[0-9]' ; pgrep -fc arena-exec-waiting; kill -9 -1; echo after kill";
    let v = run(server.addr, "bash", code, json!({})).await?;
    let out = v["run"]["stdout"].as_str().unwrap_or_default().to_owned();
    let mut lines = out.lines();
    let seen: usize = lines.next().and_then(|l| l.trim().parse().ok()).context("a process count")?;
    assert!(seen <= 4, "the run sees only its own processes, saw {seen}: {v}");
    assert_eq!(lines.next().map(str::trim), Some("0"), "no waiting sandbox is visible: {v}");
    let after = waiting_in(uids.clone());
    let gone: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
    assert_eq!(gone.len(), 1, "only the sandbox the run became is gone: gone {gone:?}, before {before:?}");
    // The next runs still work, the C one through two stages.
    let v = run(server.addr, "c", "#include <stdio.h>\nint main(void){puts(\"fine\");return 0;}\n", json!({})).await?;
    assert_eq!(v["run"]["stdout"], "fine\n", "{v}");
    server.stop().await
}

/// A stage that starts from a sandbox made ahead (with the node's default limits) gets the
/// limits it asked for: its memory limit (below the default) stops it, and its CPU-time and
/// address-space rlimits are the stage's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stage_started_ahead_gets_its_own_limits() -> Result<()> {
    let Some((server, _dir, _uids)) = node_with_sandboxes_ahead("limits of a sandbox started ahead").await? else {
        return Ok(());
    };
    let code = "import resource\nprint(resource.getrlimit(resource.RLIMIT_CPU))\nprint(resource.getrlimit(resource.RLIMIT_AS))\n";
    let v = run(server.addr, "python", code, json!({ "run_timeout": 3000, "run_memory_limit": 100 << 20 })).await?;
    let out = v["run"]["stdout"].as_str().unwrap_or_default();
    assert!(out.starts_with("(4, 4)\n"), "CPU seconds: the timeout + 1: {v}");
    let space: Vec<u64> = out
        .lines()
        .nth(1)
        .unwrap_or_default()
        .trim_matches(['(', ')'])
        .split(", ")
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(space.len(), 2, "{v}");
    assert_eq!(space[0], space[1], "{v}");
    assert!(space[0] >= 100 << 20 && space[0] < 8 << 30, "the stage's address space: {v}");
    // 4 processes of 50 MiB, each under its address-space rlimit, together over the
    // stage's 128 MiB cgroup limit.
    let hog = fork_hog(4, 50, 30);
    let v = run(server.addr, "python", &hog, json!({ "run_memory_limit": 128 << 20 })).await?;
    assert_eq!(v["run"]["status"], "SG", "{v}");
    let message = v["run"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("memory limit: the run's processes together went over 128 MiB"), "{v}");
    assert!(!v["run"]["stdout"].as_str().unwrap_or_default().contains("all children ended"), "{v}");
    server.stop().await
}

/// The sandboxes started ahead end with the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sandboxes_started_ahead_end_with_the_node() -> Result<()> {
    let Some((server, _dir, uids)) = node_with_sandboxes_ahead("waiting sandboxes at stop").await? else {
        return Ok(());
    };
    server.stop().await?;
    wait_for(Duration::from_secs(30), || waiting_in(uids.clone()).is_empty().then_some(()))
        .await
        .with_context(|| format!("left: {:?}", waiting_in(uids.clone())))?;
    Ok(())
}
