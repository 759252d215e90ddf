//! One stage of a run inside bubblewrap: the mounts, the limits, the timeout that kills
//! the whole sandbox, and output read to the end but kept only up to a cap.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cgroup::{RunCgroup, Usage};
use super::spawn::{self, Reaper, Rlimits};
use super::types::{LiveOutput, StageOutcome, Status};

/// What `/etc` shows inside the sandbox: what toolchains need, nothing about the machine's
/// users (no passwd, shadow, ssh keys).
const ETC: &[&str] = &[
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/java-17-openjdk",
    "/etc/java-21-openjdk",
    "/etc/perl",
    "/etc/php",
    "/etc/ruby",
    "/etc/gcc",
];

/// How programs are contained.
#[derive(Debug, Clone)]
pub(crate) enum Containment {
    /// bubblewrap at this path.
    Bwrap(PathBuf),
    /// Nothing but rlimits and the timeout (`--unsafe-no-sandbox`).
    None,
}

/// The node-wide settings of every stage.
#[derive(Debug, Clone)]
pub(crate) struct SandboxSettings {
    pub(crate) containment: Containment,
    pub(crate) output_cap: usize,
    pub(crate) max_processes: u64,
    pub(crate) max_file: u64,
    pub(crate) disk: u64,
    /// Paths that must not be visible even if under a bound directory (the data dir).
    pub(crate) hidden: Vec<PathBuf>,
    /// GNU time, which measures the sandbox's CPU time and peak memory (a child of the node
    /// starts with the node's resident size as its peak; one of GNU time's does not).
    pub(crate) time: Option<PathBuf>,
}

/// Where GNU time writes its report inside the sandbox (a host file bound there).
const USAGE_INSIDE: &str = "/.arena-usage";

/// GNU time's report: elapsed, user, system, peak KiB, exit status.
const USAGE_FORMAT: &str = "%e %U %S %M %x";

/// Where GNU time is, if installed.
pub(crate) fn find_time() -> Option<PathBuf> {
    ["/usr/bin/time", "/bin/time"].iter().map(PathBuf::from).find(|p| p.is_file())
}

/// What GNU time wrote (`-f "%e %U %S %M %x"`): (cpu, peak bytes, code, signal).
fn parse_usage(text: &str) -> Option<(Duration, u64, Option<i32>, Option<i32>)> {
    let signal = text
        .lines()
        .find_map(|l| l.strip_prefix("Command terminated by signal "))
        .and_then(|n| n.trim().parse::<i32>().ok());
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let f: Vec<&str> = last.split_whitespace().collect();
    let [_, user, sys, kib, code] = f.as_slice() else { return None };
    let secs = |v: &str| v.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64);
    let cpu = secs(user)? + secs(sys)?;
    let peak = kib.parse::<u64>().ok()? * 1024;
    let code = if signal.is_some() { None } else { code.parse::<i32>().ok() };
    Some((cpu, peak, code, signal))
}

/// One stage to run.
#[derive(Debug)]
pub(crate) struct Stage<'a> {
    pub(crate) argv: &'a [String],
    pub(crate) env: &'a [(String, String)],
    /// The run's directory on the host.
    pub(crate) dir: &'a Path,
    /// Whether the stage may write the run's directory (the compile stage leaves its
    /// binary there); otherwise its files are shown read-only in a fresh tmpfs.
    pub(crate) writable_dir: bool,
    pub(crate) stdin: &'a [u8],
    pub(crate) timeout: Duration,
    /// Address space per process, in bytes.
    pub(crate) address_space: Option<u64>,
    /// The slot's uid when the node is root.
    pub(crate) uid: Option<u32>,
    /// A file outside the sandbox for GNU time's report (made here, removed by the caller).
    pub(crate) usage: &'a Path,
    /// Where output goes as it arrives too (for a run shown live).
    pub(crate) live: Option<LiveOutput>,
    /// The stage's own cgroup (memory and process limits for all its processes together),
    /// when the node uses cgroups. The caller removes it after the stage.
    pub(crate) cgroup: Option<&'a RunCgroup>,
    /// A child started ahead of time in `cgroup` as `uid` ([`spawn::spawn_waiting`]): the
    /// stage becomes it instead of starting a new process (bubblewrap only).
    pub(crate) warm: std::sync::Mutex<Option<spawn::Waiting>>,
}

/// How often a stage's cgroup is checked for OOM kills (one small file read).
const OOM_POLL: Duration = Duration::from_millis(50);

/// Why the node stopped a stage before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// It ran past its wall-clock timeout.
    Timeout,
    /// A process of it was OOM-killed at the cgroup's memory limit: the rest goes too.
    MemoryLimit,
}

/// bubblewrap's arguments for `stage` (before the program's argv).
fn bwrap_args(s: &SandboxSettings, stage: &Stage<'_>) -> std::io::Result<Vec<String>> {
    // `--as-pid-1`: GNU time (or, without it, the program) is the sandbox's init, so that
    // the program's end ends every process it left behind (the kernel kills a PID namespace
    // with its init), and what it used is measured (bubblewrap's own init passes nothing on).
    let mut a: Vec<String> =
        ["--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1", "--hostname", "arena"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    let mut push = |v: &[&str]| a.extend(v.iter().map(|s| (*s).to_owned()));
    push(&["--ro-bind", "/usr", "/usr"]);
    for d in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        match std::fs::read_link(d) {
            Ok(target) => push(&["--symlink", &target.to_string_lossy(), d]),
            Err(_) if Path::new(d).is_dir() => push(&["--ro-bind", d, d]),
            Err(_) => {}
        }
    }
    for e in ETC {
        push(&["--ro-bind-try", e, e]);
    }
    push(&["--proc", "/proc", "--dev", "/dev"]);
    let disk = s.disk.to_string();
    push(&["--size", &disk, "--tmpfs", "/tmp"]);
    let dir = stage.dir.to_string_lossy().into_owned();
    if stage.writable_dir {
        push(&["--bind", &dir, "/box"]);
    } else {
        push(&["--size", &disk, "--tmpfs", "/box"]);
        for entry in std::fs::read_dir(stage.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let src = entry.path().to_string_lossy().into_owned();
            push(&["--ro-bind", &src, &format!("/box/{name}")]);
        }
    }
    for h in &s.hidden {
        if ["/usr", "/etc"].iter().any(|b| h.starts_with(b)) {
            push(&["--tmpfs", &h.to_string_lossy()]);
        }
    }
    if s.time.is_some() {
        push(&["--bind", &stage.usage.to_string_lossy(), USAGE_INSIDE]);
    }
    push(&["--chdir", "/box", "--clearenv"]);
    push(&["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"]);
    push(&["--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8"]);
    for (k, v) in stage.env {
        push(&["--setenv", k, v]);
    }
    push(&["--"]);
    Ok(a)
}

/// Output of one stream, kept up to the cap.
#[derive(Debug, Default)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    output: Vec<u8>,
    stdout_truncated: bool,
    stderr_truncated: bool,
}

impl Captured {
    fn push(&mut self, err: bool, chunk: &[u8], cap: usize) {
        let (buf, trunc) = if err {
            (&mut self.stderr, &mut self.stderr_truncated)
        } else {
            (&mut self.stdout, &mut self.stdout_truncated)
        };
        let room = cap.saturating_sub(buf.len());
        if chunk.len() > room {
            *trunc = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let room = cap.saturating_sub(self.output.len());
        self.output.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

/// Reads `pipe` to its end (however much comes), keeping up to the cap.
async fn drain(
    pipe: tokio::net::unix::pipe::Receiver,
    err: bool,
    into: Arc<Mutex<Captured>>,
    cap: usize,
    live: Option<LiveOutput>,
) {
    let mut pipe = pipe;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut c) = into.lock() {
                    c.push(err, &buf[..n], cap);
                }
                if let Some(l) = &live {
                    l.push(err, &buf[..n]);
                }
            }
        }
    }
}

/// The rlimits that do not depend on the stage (CPU time and address space are `None`).
pub(crate) fn fixed_limits(s: &SandboxSettings, with_cgroup: bool, uid: Option<u32>) -> Rlimits {
    // RLIMIT_NPROC counts every task of the uid: a slot's own uid has none but the run's;
    // without one (the node is not root), the node's own tasks count too. With a cgroup,
    // pids.max is the run's limit and the rlimit a looser backstop.
    let per_run = if with_cgroup { s.max_processes.saturating_mul(2) } else { s.max_processes };
    let processes = match uid {
        Some(_) => per_run,
        None => per_run + spawn::tasks_of_uid(spawn::uid()),
    };
    Rlimits { cpu_secs: None, address_space: None, processes: Some(processes), open_files: 256, file_size: s.max_file }
}

/// Runs one stage; never fails for what the program does (that is in the outcome).
pub(crate) async fn run_stage(s: &SandboxSettings, stage: Stage<'_>) -> StageOutcome {
    let started = Instant::now();
    match run_inner(s, &stage, started).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "sandbox failed");
            StageOutcome {
                status: Some(Status::InternalError),
                message: Some(format!("the sandbox failed: {e}")),
                wall_time: started.elapsed(),
                ..StageOutcome::default()
            }
        }
    }
}

/// Kills a stage's sandbox when dropped armed (see `run_inner`).
struct KillOnDrop(Option<Reaper>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.kill();
        }
    }
}

async fn run_inner(s: &SandboxSettings, stage: &Stage<'_>, started: Instant) -> std::io::Result<StageOutcome> {
    let Some((program, args)) = stage.argv.split_first() else {
        return Err(std::io::Error::other("empty command"));
    };
    // GNU time runs the program and reports what it (and what it waited for) used: inside
    // the sandbox as its init, so that the program is an ordinary process (signals it sends
    // itself work) and only the program is measured (a child forked from the node would
    // start with the node's resident size as its peak).
    let mut time: Vec<std::ffi::OsString> = Vec::new();
    if let Some(t) = &s.time {
        std::fs::write(stage.usage, b"")?;
        if let Some(u) = stage.uid {
            chown(stage.usage, u).map_err(std::io::Error::other)?;
        }
        let out: &std::ffi::OsStr = match s.containment {
            Containment::Bwrap(_) => USAGE_INSIDE.as_ref(),
            Containment::None => stage.usage.as_os_str(),
        };
        time.extend([t.as_os_str(), "-f".as_ref(), USAGE_FORMAT.as_ref(), "-o".as_ref(), out].map(Into::into));
    }
    let mut line: Vec<std::ffi::OsString> = Vec::new();
    let mut cmd = match &s.containment {
        Containment::Bwrap(bwrap) => {
            line.push(bwrap.into());
            line.extend(bwrap_args(s, stage)?.into_iter().map(Into::into));
            line.extend(time);
            line.push(program.into());
            line.extend(args.iter().map(Into::into));
            let mut c = Command::new(&line[0]);
            c.args(&line[1..]);
            c
        }
        Containment::None => {
            line.extend(time);
            line.push(program.into());
            line.extend(args.iter().map(Into::into));
            let mut c = Command::new(&line[0]);
            c.args(&line[1..]).current_dir(stage.dir).env_clear();
            c.env("PATH", "/usr/local/bin:/usr/bin:/bin").env("HOME", stage.dir).env("LANG", "C.UTF-8");
            c.envs(stage.env.iter().map(|(k, v)| (k, v)));
            c
        }
    };
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let limits = Rlimits {
        cpu_secs: Some(stage.timeout.as_secs() + 1),
        address_space: stage.address_space,
        ..fixed_limits(s, stage.cgroup.is_some(), stage.uid)
    };
    // A forked child starts with the node's resident size as its peak (the kernel keeps it
    // across exec), and `wait4` reports the larger of bubblewrap's and the program's peak:
    // a peak not above the node's size is unknown, not the node's.
    let floor = spawn::own_rss();
    let join = stage.cgroup.map(RunCgroup::join).unwrap_or_default();
    let warm = stage.warm.lock().ok().and_then(|mut w| w.take());
    let mut child = match (warm, &s.containment) {
        (Some(w), Containment::Bwrap(_)) => w.start(stage.timeout.as_secs() + 1, stage.address_space, &line)?,
        _ => spawn::spawn(&mut cmd, limits, stage.uid, &join)?,
    };
    let reaper = Reaper::new(&child);
    // If this future is dropped before the stage ends (the caller hung up), the sandbox goes
    // with it: without a cgroup nothing else would end a program that sleeps.
    let mut on_drop = KillOnDrop(Some(reaper.clone()));
    let cap = s.output_cap;
    let captured = Arc::new(Mutex::new(Captured::default()));
    let mut readers = Vec::new();
    for (pipe, err) in [
        (child.stdout.take().map(std::os::fd::OwnedFd::from), false),
        (child.stderr.take().map(std::os::fd::OwnedFd::from), true),
    ] {
        if let Some(fd) = pipe {
            let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
            readers.push(tokio::spawn(drain(rx, err, captured.clone(), cap, stage.live.clone())));
        }
    }
    let writer = match child.stdin.take() {
        Some(stdin) => {
            let mut tx = tokio::net::unix::pipe::Sender::from_owned_fd(std::os::fd::OwnedFd::from(stdin))?;
            let input = stage.stdin.to_vec();
            Some(tokio::spawn(async move {
                // A program that exits without reading its input closes the pipe: fine.
                let _ = tx.write_all(&input).await;
            }))
        }
        None => None,
    };
    drop(child);
    let waiter = {
        let r = reaper.clone();
        tokio::task::spawn_blocking(move || r.wait())
    };
    tokio::pin!(waiter);
    let over_memory = async {
        let Some(cg) = stage.cgroup else { return std::future::pending().await };
        let mut tick = tokio::time::interval(OOM_POLL);
        while cg.oom_kills() == 0 {
            tick.tick().await;
        }
    };
    let stopped = tokio::select! {
        done = &mut waiter => Err(done),
        _ = tokio::time::sleep(stage.timeout) => Ok(Stopped::Timeout),
        _ = over_memory => Ok(Stopped::MemoryLimit),
    };
    let (exit, stopped) = match stopped {
        Err(done) => (done, None),
        Ok(why) => {
            // The program first (GNU time then reports what it used; the kernel ends the rest
            // of the sandbox with it), then everything.
            reaper.kill_children();
            match tokio::time::timeout(Duration::from_secs(2), &mut waiter).await {
                Ok(done) => (done, Some(why)),
                Err(_) => {
                    reaper.kill();
                    if let Some(cg) = stage.cgroup {
                        cg.kill_all();
                    }
                    (waiter.await, Some(why))
                }
            }
        }
    };
    on_drop.0 = None;
    let mut exit = exit.map_err(std::io::Error::other)??;
    // GNU time's numbers are the sandbox's alone; without them the peak is only known when
    // above the node's own size.
    let mut memory = (exit.max_rss > floor + (1 << 20)).then_some(exit.max_rss);
    // The cgroup's peak (every process of the stage together) is preferred to GNU time's
    // (the largest process's).
    let usage = stage.cgroup.map(RunCgroup::usage);
    if s.time.is_some() {
        let report = std::fs::read_to_string(stage.usage).unwrap_or_default();
        match parse_usage(&report) {
            Some((cpu, peak, code, signal)) => {
                exit.cpu = cpu;
                memory = Some(peak);
                exit.code = code;
                exit.signal = signal;
            }
            None => tracing::debug!(report, "no usage report from GNU time"),
        }
    } else if matches!(s.containment, Containment::Bwrap(_)) {
        // bubblewrap reports its init's death by signal N as exit code 128 + N.
        if let Some(code @ 129..=192) = exit.code {
            exit.signal = Some(code - 128);
            exit.code = None;
        }
    }
    if let Some(peak) = usage.and_then(|u| u.peak) {
        memory = Some(peak);
    }
    let wall_time = started.elapsed();
    if let Some(w) = writer {
        w.abort();
    }
    // The sandbox is gone, so its pipes are closed; without a sandbox, a background process
    // may still hold them: stop reading after a moment.
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout(Duration::from_millis(500), r).await.is_err() {
            abort.abort();
        }
    }
    let c = std::mem::take(&mut *captured.lock().map_err(|_| std::io::Error::other("capture poisoned"))?);
    let mut o = StageOutcome {
        stdout: String::from_utf8_lossy(&c.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&c.stderr).into_owned(),
        output: String::from_utf8_lossy(&c.output).into_owned(),
        code: exit.code,
        signal: exit.signal.map(spawn::signal_name),
        status: None,
        message: None,
        cpu_time: exit.cpu,
        wall_time,
        memory,
        stdout_truncated: c.stdout_truncated,
        stderr_truncated: c.stderr_truncated,
    };
    classify(&mut o, stopped, stage.timeout, cap, usage);
    Ok(o)
}

/// Sets `status` and `message` from how the stage ended (and what its cgroup saw).
fn classify(o: &mut StageOutcome, stopped: Option<Stopped>, timeout: Duration, cap: usize, usage: Option<Usage>) {
    let oom = usage.filter(|u| u.oom_kills > 0);
    let (status, message) = if let Some(u) = oom {
        let how = if stopped.is_some() {
            o.code = None;
            o.signal = Some("SIGKILL".into());
            "the run was killed".to_owned()
        } else {
            match (&o.signal, o.code) {
                (Some(sig), _) => format!("the program ended by {sig}"),
                (None, Some(code)) => format!("the program then exited with code {code}"),
                (None, None) => "the program ended".to_owned(),
            }
        };
        let n = u.oom_kills;
        (
            Status::Signal,
            format!(
                "memory limit: the run's processes together went over {} MiB; the kernel killed {n} process{} \
                 and {how}",
                u.memory_limit >> 20,
                if n == 1 { "" } else { "es" },
            ),
        )
    } else if stopped == Some(Stopped::Timeout) {
        o.code = None;
        o.signal = Some("SIGKILL".into());
        (Status::Timeout, format!("killed after the time limit of {} ms (output so far kept)", timeout.as_millis()))
    } else if o.signal.as_deref() == Some("SIGXCPU") {
        (Status::Timeout, "killed at the CPU time limit".to_owned())
    } else if let Some(sig) = &o.signal {
        let why = match sig.as_str() {
            "SIGSEGV" => " (a crash, or the memory limit)",
            "SIGXFSZ" => " (a file reached the size limit)",
            "SIGABRT" => " (aborted: an assertion, or out of memory)",
            _ => "",
        };
        (Status::Signal, format!("killed by {sig}{why}"))
    } else if o.stdout_truncated {
        (Status::OutputLimit, format!("stdout went over {cap} bytes: kept the first {cap}, dropped the rest"))
    } else if o.stderr_truncated {
        (Status::ErrorLimit, format!("stderr went over {cap} bytes: kept the first {cap}, dropped the rest"))
    } else if let Some(code) = o.code.filter(|c| *c != 0) {
        // A shell (or a runtime) reports a child's signal as 128 + its number.
        let sig = match code {
            129..=192 => format!(" (128 + {}: a process was killed by it)", spawn::signal_name(code - 128)),
            _ => String::new(),
        };
        (Status::RuntimeError, format!("exited with code {code}{sig}"))
    } else {
        return;
    };
    o.status = Some(status);
    o.message = Some(match usage.filter(|u| u.forks_refused > 0) {
        Some(u) => format!(
            "{message} ({} process or thread creations were refused at the run's limit of {} (pids.max))",
            u.forks_refused, u.pids_limit
        ),
        None => message,
    });
}

/// Whether bubblewrap at `bwrap` can make a sandbox here: runs `true` inside one.
pub(crate) async fn probe(bwrap: &Path, uid: Option<u32>) -> Result<(), String> {
    let settings = SandboxSettings {
        containment: Containment::Bwrap(bwrap.to_owned()),
        output_cap: 4096,
        max_processes: 64,
        max_file: 1 << 20,
        disk: 1 << 20,
        hidden: Vec::new(),
        time: None,
    };
    let dir = tempdir_for_probe()?;
    if let Some(u) = uid {
        chown(&dir, u)?;
    }
    let argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), "echo ok".to_owned()];
    let o = run_stage(
        &settings,
        Stage {
            argv: &argv,
            env: &[],
            dir: &dir,
            writable_dir: true,
            stdin: b"",
            timeout: Duration::from_secs(20),
            address_space: None,
            uid,
            usage: &dir.join("usage"),
            live: None,
            cgroup: None,
            warm: Default::default(),
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    if o.code == Some(0) && o.stdout.trim() == "ok" {
        Ok(())
    } else {
        Err(format!(
            "bubblewrap could not make a sandbox (exit {:?}, signal {:?}): {}{}",
            o.code,
            o.signal,
            o.stderr.trim(),
            o.message.map(|m| format!(" {m}")).unwrap_or_default()
        ))
    }
}

fn tempdir_for_probe() -> Result<PathBuf, String> {
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("arena-exec-probe-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Gives `path` to `uid` (the node is root).
pub(crate) fn chown(path: &Path, uid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).map_err(|e| format!("chown {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_time_reports() {
        let (cpu, peak, code, signal) = parse_usage("0.02 0.01 0.00 9876 0\n").unwrap_or_default();
        assert_eq!((cpu, peak, code, signal), (Duration::from_millis(10), 9876 * 1024, Some(0), None));
        let r = parse_usage("Command exited with non-zero status 3\n0.00 0.00 0.00 1564 3\n");
        assert_eq!(r.map(|r| (r.2, r.3)), Some((Some(3), None)));
        let r = parse_usage("Command terminated by signal 9\n0.00 0.00 0.00 1580 0\n");
        assert_eq!(r.map(|r| (r.2, r.3)), Some((None, Some(9))));
        assert!(parse_usage("").is_none() && parse_usage("garbage").is_none());
    }

    #[test]
    fn capture_keeps_up_to_the_cap_and_marks_the_rest() {
        let mut c = Captured::default();
        c.push(false, b"hello ", 8);
        c.push(true, b"oops", 8);
        c.push(false, b"world", 8);
        assert_eq!(c.stdout, b"hello wo");
        assert!(c.stdout_truncated && !c.stderr_truncated);
        assert_eq!(c.output, b"hello oo");
    }
}
