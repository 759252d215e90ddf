//! Code execution's costs (issue #24): the sandbox's overhead per run against running the
//! same interpreter or binary directly (python3 and C hello world), runs per second at the
//! concurrency limit, and the latency of each run in a queue of 64 (none lost or stuck).
//!
//! `cargo build --release -p arena-benches --bin exec-bench && target/release/exec-bench [--runs N] [--cgroups off] [--gap-ms N]`
//! (`--cgroups off`: rlimits only, to compare with a cgroup per stage; `--gap-ms`: a pause
//! between two runs, as between two clicks on ▶ Run, in which the executor starts the next
//! sandboxes ahead; 0, the default, runs them back to back).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arena_bootstrap::exec::{CgroupMode, ExecRequest, Executor, Limits, LocalExecutor, SourceFile};

const PY: &str = "print('hello, world')\n";
const C: &str = "#include <stdio.h>\nint main(void){puts(\"hello, world\");return 0;}\n";

fn request(language: &str, code: &str) -> ExecRequest {
    ExecRequest {
        language: language.into(),
        version: "*".into(),
        files: vec![SourceFile { name: None, content: code.as_bytes().to_vec() }],
        stdin: Vec::new(),
        args: Vec::new(),
        limits: Limits {
            compile_timeout: Duration::from_secs(30),
            run_timeout: Duration::from_secs(10),
            compile_memory: None,
            run_memory: None,
        },
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (median, p95, max) in ms.
fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let at = |q: f64| ms(v[((v.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.95), at(1.0))
}

/// CPU time of every child this process has waited for (user + system; /proc/self/stat's
/// cutime and cstime, in the kernel's 100 Hz ticks): what a run costs the machine, which the
/// other work on a shared machine does not inflate the way it inflates wall time.
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = after.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    // After the command: state(0) ... utime(11) stime(12) cutime(13) cstime(14).
    let ticks = f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Runs `argv` in `dir` directly, `n` times, `gap` apart: each run's wall time.
fn direct(dir: &Path, argv: &[&str], n: usize, gap: Duration) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        std::thread::sleep(gap);
        let t = Instant::now();
        let out = std::process::Command::new(argv[0]).args(&argv[1..]).current_dir(dir).output()?;
        times.push(t.elapsed());
        if out.stdout != b"hello, world\n" {
            bail!("direct {argv:?}: {:?}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(times)
}

/// `n` runs through the executor, one after another, `gap` apart: (whole request, run
/// stage) wall times.
async fn sandboxed(
    exec: &LocalExecutor,
    language: &str,
    code: &str,
    n: usize,
    gap: Duration,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut total, mut stage) = (Vec::new(), Vec::new());
    for _ in 0..n {
        tokio::time::sleep(gap).await;
        let t = Instant::now();
        let out = exec.execute(request(language, code)).await?;
        total.push(t.elapsed());
        let run = out.run.context("no run stage")?;
        if run.stdout != "hello, world\n" {
            bail!("sandboxed {language}: {run:?}");
        }
        stage.push(run.wall_time);
    }
    Ok((total, stage))
}

/// `n` runs submitted at once: each one's latency from submission, and how many succeeded.
async fn burst(exec: &Arc<LocalExecutor>, n: usize) -> Result<(Duration, Vec<Duration>, usize)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let exec = exec.clone();
        tasks.push(tokio::spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(300), exec.execute(request("python", PY))).await;
            (
                start.elapsed(),
                matches!(r, Ok(Ok(ref o)) if o.run.as_ref().is_some_and(|r| r.stdout == "hello, world\n")),
            )
        }));
    }
    let mut lat = Vec::new();
    let mut ok = 0;
    for t in tasks {
        let (d, good) = t.await?;
        lat.push(d);
        ok += usize::from(good);
    }
    Ok((start.elapsed(), lat, ok))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let gap = Duration::from_millis(
        args.iter()
            .position(|a| a == "--gap-ms")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let work = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(work.path().join("data")).exec;
    cfg.exec_queue = 64;
    if args.iter().position(|a| a == "--cgroups").and_then(|i| args.get(i + 1)).is_some_and(|v| v == "off") {
        cfg.exec_cgroups = CgroupMode::Off;
    }
    let exec = Arc::new(LocalExecutor::start(&cfg, Vec::new()).await.context("starting the local executor")?);
    println!("executor: {}", exec.describe());
    println!("cgroups in /proc/cgroups at start: {}", cgroup_counts());
    println!(
        "machine: {} cores, load {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );

    // python3 hello world.
    std::fs::write(work.path().join("main.py"), PY)?;
    let _ = direct(work.path(), &["/usr/bin/python3", "main.py"], 3, gap)?;
    let cpu0 = children_cpu();
    let d = stats(direct(work.path(), &["/usr/bin/python3", "main.py"], runs, gap)?);
    let cpu_direct = (children_cpu() - cpu0) / runs as u32;
    let _ = sandboxed(&exec, "python", PY, 3, gap).await?;
    let cpu0 = children_cpu();
    let (total, stage) = sandboxed(&exec, "python", PY, runs, gap).await?;
    let cpu_sandboxed = (children_cpu() - cpu0) / runs as u32;
    let (t, s) = (stats(total), stats(stage));
    println!("\n{} ms between runs", gap.as_millis());
    println!("\n| {runs} runs each, ms | direct p50 / p95 | sandbox run stage p50 / p95 | whole request p50 / p95 | overhead p50 (stage − direct; request − direct) |");
    println!("|---|---|---|---|---|");
    println!(
        "| python3 hello | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1}; {:.1} |",
        d.0,
        d.1,
        s.0,
        s.1,
        t.0,
        t.1,
        s.0 - d.0,
        t.0 - d.0
    );

    println!(
        "\npython3 hello, CPU time per run (every process: bubblewrap, GNU time, python3): direct {:.1} ms, sandboxed {:.1} ms, overhead {:.1} ms",
        ms(cpu_direct),
        ms(cpu_sandboxed),
        ms(cpu_sandboxed.saturating_sub(cpu_direct))
    );

    // C hello world: compiled once for the direct runs; the sandboxed request compiles each time,
    // so its run stage is the comparison.
    std::fs::write(work.path().join("hello.c"), C)?;
    let cc =
        std::process::Command::new("gcc").args(["-O2", "-o", "hello", "hello.c"]).current_dir(work.path()).status()?;
    if !cc.success() {
        bail!("gcc failed");
    }
    let _ = direct(work.path(), &["./hello"], 3, gap)?;
    let d = stats(direct(work.path(), &["./hello"], runs, gap)?);
    let (total, stage) = sandboxed(&exec, "c", C, runs.min(20), gap).await?;
    let (t, s) = (stats(total), stats(stage));
    println!(
        "| C hello (request includes gcc) | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1}; (compiles) |",
        d.0,
        d.1,
        s.0,
        s.1,
        t.0,
        t.1,
        s.0 - d.0
    );

    // At the concurrency limit: 64 runs submitted at once (4 run, 60 queue).
    for round in 0..2 {
        let (wall, lat, ok) = burst(&exec, 64).await?;
        let l = stats(lat);
        println!(
            "\nqueue of 64 python3 runs at concurrency {} (round {}): {ok}/64 ok, drained in {:.0} ms = {:.1} runs/s; latency from submission p50 {:.0} / p95 {:.0} / max {:.0} ms",
            cfg.exec_concurrency,
            round + 1,
            ms(wall),
            64.0 / wall.as_secs_f64(),
            l.0,
            l.1,
            l.2
        );
        if ok != 64 {
            bail!("{} runs lost or failed", 64 - ok);
        }
    }
    // One more than the slots and the queue hold: that one is refused at once ("busy"), the
    // others all run.
    let n = cfg.exec_concurrency as usize + 64 + 1;
    let (wall, _, ok) = burst(&exec, n).await?;
    println!(
        "{n} at once ({} running + 64 queued + 1): {ok}/{n} ok in {:.0} ms (the one over is answered busy)",
        cfg.exec_concurrency,
        ms(wall)
    );
    if ok != n - 1 {
        bail!("expected {} to run and one to be refused, {ok} ran", n - 1);
    }
    // Removed cgroups whose memory is still charged linger (dying) in the kernel's count.
    println!("cgroups in /proc/cgroups at the end: {}", cgroup_counts());
    Ok(())
}

/// `memory N, pids N` from /proc/cgroups (the kernel's count of each controller's cgroups,
/// dying ones included).
fn cgroup_counts() -> String {
    let text = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
    let mut out = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [name @ ("memory" | "pids"), _, n, _] = f.as_slice() {
            out.push(format!("{name} {n}"));
        }
    }
    out.join(", ")
}
