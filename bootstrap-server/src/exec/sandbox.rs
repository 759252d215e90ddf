//! One stage of a run inside bubblewrap: the mounts, the limits, the timeout that kills
//! the whole sandbox, and output read to the end but kept only up to a cap.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::spawn::{self, Reaper, Rlimits};
use super::types::{StageOutcome, Status};

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
}

/// bubblewrap's arguments for `stage` (before the program's argv).
fn bwrap_args(s: &SandboxSettings, stage: &Stage<'_>) -> std::io::Result<Vec<String>> {
    // `--as-pid-1`: the program is the sandbox's init, so that its exit ends every process
    // it left behind (the kernel kills a PID namespace with its init), and its CPU time and
    // peak memory reach our `wait4` (bubblewrap's own init does not pass them on).
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
async fn drain(pipe: tokio::net::unix::pipe::Receiver, err: bool, into: Arc<Mutex<Captured>>, cap: usize) {
    let mut pipe = pipe;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut c) = into.lock() {
                    c.push(err, &buf[..n], cap);
                }
            }
        }
    }
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

async fn run_inner(s: &SandboxSettings, stage: &Stage<'_>, started: Instant) -> std::io::Result<StageOutcome> {
    let Some((program, args)) = stage.argv.split_first() else {
        return Err(std::io::Error::other("empty command"));
    };
    let mut cmd = match &s.containment {
        Containment::Bwrap(bwrap) => {
            let mut c = Command::new(bwrap);
            c.args(bwrap_args(s, stage)?).arg(program).args(args);
            c
        }
        Containment::None => {
            let mut c = Command::new(program);
            c.args(args).current_dir(stage.dir).env_clear();
            c.env("PATH", "/usr/local/bin:/usr/bin:/bin").env("HOME", stage.dir).env("LANG", "C.UTF-8");
            c.envs(stage.env.iter().map(|(k, v)| (k, v)));
            c
        }
    };
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let limits = Rlimits {
        cpu_secs: stage.timeout.as_secs() + 1,
        address_space: stage.address_space,
        processes: Some(s.max_processes),
        open_files: 256,
        file_size: s.max_file,
    };
    let mut child = spawn::spawn(&mut cmd, limits, stage.uid)?;
    let reaper = Reaper::new(&child);
    let cap = s.output_cap;
    let captured = Arc::new(Mutex::new(Captured::default()));
    let mut readers = Vec::new();
    for (pipe, err) in [
        (child.stdout.take().map(std::os::fd::OwnedFd::from), false),
        (child.stderr.take().map(std::os::fd::OwnedFd::from), true),
    ] {
        if let Some(fd) = pipe {
            let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
            readers.push(tokio::spawn(drain(rx, err, captured.clone(), cap)));
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
    let (exit, timed_out) = tokio::select! {
        done = &mut waiter => (done, false),
        _ = tokio::time::sleep(stage.timeout) => {
            reaper.kill();
            (waiter.await, true)
        }
    };
    let exit = exit.map_err(std::io::Error::other)??;
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
        memory: Some(exit.max_rss),
        stdout_truncated: c.stdout_truncated,
        stderr_truncated: c.stderr_truncated,
    };
    classify(&mut o, timed_out, stage.timeout, cap);
    Ok(o)
}

/// Sets `status` and `message` from how the stage ended.
fn classify(o: &mut StageOutcome, timed_out: bool, timeout: Duration, cap: usize) {
    let (status, message) = if timed_out {
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
    } else if o.code == Some(153) || o.code == Some(128 + 25) {
        (Status::Signal, "a file reached the size limit".to_owned())
    } else if o.stdout_truncated {
        (Status::OutputLimit, format!("stdout went over {cap} bytes: kept the first {cap}, dropped the rest"))
    } else if o.stderr_truncated {
        (Status::ErrorLimit, format!("stderr went over {cap} bytes: kept the first {cap}, dropped the rest"))
    } else if o.code.is_some_and(|c| c != 0) {
        (Status::RuntimeError, format!("exited with code {}", o.code.unwrap_or_default()))
    } else {
        return;
    };
    o.status = Some(status);
    o.message = Some(message);
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
    let dir = std::env::temp_dir().join(format!("arena-exec-probe-{}", std::process::id()));
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
