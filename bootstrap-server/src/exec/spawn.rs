//! The few system calls around a sandboxed child that std does not offer: rlimits, a
//! parent-death signal and joining the run's cgroups between fork and exec, a child started
//! ahead of time that waits for its command line ([`spawn_waiting`]), `wait4` for the
//! child's CPU time and peak memory, and killing by pidfd. Everything unsafe in code
//! execution is in this file.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Resource limits set on the child (and inherited by everything it starts).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rlimits {
    /// CPU seconds per process (SIGXCPU, then SIGKILL a second later); `None`: unchanged.
    pub(crate) cpu_secs: Option<u64>,
    /// Address space per process, in bytes (`None`: unlimited).
    pub(crate) address_space: Option<u64>,
    /// Processes and threads of the (sandbox) user.
    pub(crate) processes: Option<u64>,
    /// Open files per process.
    pub(crate) open_files: u64,
    /// Largest file written, in bytes.
    pub(crate) file_size: u64,
}

/// Most cgroups a child joins (one per cgroup v1 hierarchy: memory, pids).
pub(crate) const MAX_JOINS: usize = 2;

/// Starts `cmd` in a process group of its own, with `limits`, SIGKILLed if the node dies,
/// as `uid`/`gid` when given (the node is root), in the cgroups whose `cgroup.procs` files
/// `join` are (opened for writing by the node before the fork: the kernel checks the
/// opener's credentials, so the child may join after dropping to `uid`). More than
/// [`MAX_JOINS`] is an error.
pub(crate) fn spawn(
    cmd: &mut Command,
    limits: Rlimits,
    uid: Option<u32>,
    join: &[BorrowedFd<'_>],
) -> io::Result<Child> {
    if join.len() > MAX_JOINS {
        return Err(io::Error::other(format!("at most {MAX_JOINS} cgroups to join")));
    }
    // Plain integers, copied into the closure: nothing to allocate after the fork. The fds
    // stay open until `cmd.spawn()` returns (the caller borrows them for this call) and are
    // close-on-exec, so the program never holds them.
    let mut fds: [RawFd; MAX_JOINS] = [-1; MAX_JOINS];
    for (slot, fd) in fds.iter_mut().zip(join) {
        *slot = fd.as_raw_fd();
    }
    cmd.process_group(0);
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let set = move |res, value: u64| -> io::Result<()> {
        let lim = libc::rlimit { rlim_cur: value as libc::rlim_t, rlim_max: value as libc::rlim_t };
        // SAFETY: setrlimit reads the struct we pass by reference; async-signal-safe.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec. It only calls
    // async-signal-safe functions (setrlimit, prctl) on values captured by copy, and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds.into_iter().filter(|fd| *fd >= 0) {
                // "0": the writing process. write is async-signal-safe.
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(c) = limits.cpu_secs {
                set(libc::RLIMIT_CPU, c)?;
            }
            set(libc::RLIMIT_NOFILE, limits.open_files)?;
            set(libc::RLIMIT_FSIZE, limits.file_size)?;
            set(libc::RLIMIT_CORE, 0)?;
            if let Some(n) = limits.processes {
                set(libc::RLIMIT_NPROC, n)?;
            }
            if let Some(a) = limits.address_space {
                set(libc::RLIMIT_AS, a)?;
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// What a waiting child runs: it reads NUL-separated fields from the fd named by `$1` until
/// the node closes it (CPU seconds, address space in KiB or `unlimited`, then the command
/// line), closes that fd, sets both limits (soft and hard: bash's `ulimit` without -H/-S),
/// and `exec`s the command line (the same process: its pid, group, cgroups, uid and other
/// rlimits carry over). Too little read: it exits 111; limits refused: 112.
const WAITING_SCRIPT: &str = r#"fd=$1; mapfile -d '' -t A <&"$fd" || exit 111; exec {fd}<&-; (( ${#A[@]} > 2 )) || exit 111; ulimit -t "${A[0]}" -v "${A[1]}" || exit 112; exec -- "${A[@]:2}""#;

/// A child started ahead of time ([`spawn_waiting`]): already in its cgroups, as its uid,
/// with the rlimits that do not depend on the stage, and its stdio piped; it waits until
/// [`Waiting::start`] gives it its command line. Dropped unused, it is killed and reaped.
#[derive(Debug)]
pub(crate) struct Waiting {
    child: Option<Child>,
    /// The write end of the pipe it reads its command line from.
    line: Option<std::fs::File>,
}

/// Starts bash (`bash`) as a waiting child (see [`Waiting`]), with `spawn`'s settings: its
/// own process group, `limits` (give `cpu_secs: None` and `address_space: None` here and
/// set them in [`Waiting::start`]), `uid`, joining `join`. Joining a cgroup waits for the
/// kernel (an RCU grace period on cgroup v1, several milliseconds); a waiting child has
/// done that before its stage begins.
pub(crate) fn spawn_waiting(
    bash: &Path,
    limits: Rlimits,
    uid: Option<u32>,
    join: &[BorrowedFd<'_>],
) -> io::Result<Waiting> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned these fds to us; each is owned once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let read_fd = read.as_raw_fd();
    let mut cmd = Command::new(bash);
    cmd.arg("-c").arg(WAITING_SCRIPT).arg("arena-exec-waiting").arg(read_fd.to_string());
    // bash reads no startup file with -c unless told by the environment: give it none.
    cmd.env_clear().env("PATH", "/usr/bin:/bin");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: runs in the child between fork and exec; fcntl is async-signal-safe and the fd
    // is a plain integer. The read end stays open across exec in the child alone (the
    // node's copy keeps close-on-exec, so no other child inherits it).
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(read_fd, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = spawn(&mut cmd, limits, uid, join)?;
    drop(read);
    Ok(Waiting { child: Some(child), line: Some(std::fs::File::from(write)) })
}

impl Waiting {
    /// Its pid (while it is not reaped, no other process has it).
    pub(crate) fn pid(&self) -> Option<libc::pid_t> {
        self.child.as_ref().map(|c| c.id() as libc::pid_t)
    }

    /// Whether it still waits (not killed, say, by the sweep of its uid).
    pub(crate) fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends it the stage's CPU time and address-space limits, which it sets on itself
    /// (another uid's limits need CAP_SYS_RESOURCE, which a container's root may lack), and
    /// `argv`: it becomes that program.
    pub(crate) fn start(mut self, cpu_secs: u64, address_space: Option<u64>, argv: &[OsString]) -> io::Result<Child> {
        // On an error below, dropping `self` kills and reaps the child.
        let mut line = self.line.take().ok_or_else(|| io::Error::other("this waiting child was started already"))?;
        let space = address_space.map_or_else(|| "unlimited".to_owned(), |a| (a / 1024).max(1).to_string());
        let mut bytes = format!("{cpu_secs}\0{space}\0").into_bytes();
        for a in argv {
            if a.as_bytes().contains(&0) {
                return Err(io::Error::other("an argument contains a NUL byte"));
            }
            bytes.extend_from_slice(a.as_bytes());
            bytes.push(0);
        }
        line.write_all(&bytes)?;
        drop(line);
        self.child.take().ok_or_else(|| io::Error::other("this waiting child was started already"))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How a child ended, with what it used (its own and that of every descendant it waited
/// for: bubblewrap's init waits for everything in the sandbox).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exit {
    /// Exit code, when it exited.
    pub(crate) code: Option<i32>,
    /// Signal number, when one killed it.
    pub(crate) signal: Option<i32>,
    /// User + system CPU time.
    pub(crate) cpu: Duration,
    /// Peak resident memory of the largest process, in bytes.
    pub(crate) max_rss: u64,
}

/// A child that can be killed until it has been reaped (never a recycled pid).
#[derive(Debug, Clone)]
pub(crate) struct Reaper {
    pid: libc::pid_t,
    exited: Arc<Mutex<bool>>,
}

impl Reaper {
    pub(crate) fn new(child: &Child) -> Self {
        Reaper { pid: child.id() as libc::pid_t, exited: Arc::new(Mutex::new(false)) }
    }

    /// SIGKILLs the child's process group and the child, unless it has already exited.
    pub(crate) fn kill(&self) {
        let exited = self.exited.lock().map(|g| *g).unwrap_or(true);
        if !exited {
            // SAFETY: kill takes integers. The pid is our unreaped child (a zombie at worst,
            // so not reused); the group is its own (process_group(0)).
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
                libc::kill(self.pid, libc::SIGKILL);
            }
        }
    }

    /// SIGKILLs the program under the child (bubblewrap → GNU time → the program: the
    /// deepest of the first two levels below the child), so that GNU time reaps it and
    /// reports what it used; the sandbox ends with its init.
    pub(crate) fn kill_children(&self) {
        let exited = self.exited.lock().map(|g| *g).unwrap_or(true);
        if exited {
            return;
        }
        let children = |pid: libc::pid_t| -> Vec<libc::pid_t> {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        };
        for c in children(self.pid) {
            let below = children(c);
            for pid in if below.is_empty() { vec![c] } else { below } {
                // SAFETY: kill takes integers; the pid is a descendant of our unreaped child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }

    /// Blocks until the child exits; reaps it. Call from a blocking thread.
    pub(crate) fn wait(&self) -> io::Result<Exit> {
        // First wait without reaping, so that `kill` never targets a reused pid.
        loop {
            // SAFETY: siginfo_t is plain data, zeroed is a valid value; waitid writes it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid with a valid pointer to `info`.
            let rc =
                unsafe { libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if rc == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if let Ok(mut g) = self.exited.lock() {
            *g = true;
        }
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; zeroed is valid; wait4 writes it and `status`.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: valid pointers to `status` and `usage`.
            let rc = unsafe { libc::wait4(self.pid, &mut status, 0, &mut usage) };
            if rc == self.pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        let (code, signal) = if libc::WIFEXITED(status) {
            (Some(libc::WEXITSTATUS(status)), None)
        } else if libc::WIFSIGNALED(status) {
            (None, Some(libc::WTERMSIG(status)))
        } else {
            (None, None)
        };
        Ok(Exit {
            code,
            signal,
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            max_rss: (usage.ru_maxrss.max(0) as u64) * 1024,
        })
    }
}

/// SIGKILLs every process whose real uid is `uid` (a run slot's own uid: nothing else runs
/// as it) but those in `keep` (the node's own unreaped children); returns how many were
/// found.
pub(crate) fn kill_uid_except(uid: u32, keep: &[libc::pid_t]) -> usize {
    let mut found = 0;
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) else { continue };
        if keep.contains(&pid) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let real = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next());
        if real.and_then(|r| r.parse::<u32>().ok()) == Some(uid) {
            found += 1;
            // SAFETY: kill takes integers; the pid belongs to the slot's uid.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    found
}

/// Threads (tasks) of every process whose real uid is `uid`: what RLIMIT_NPROC counts.
pub(crate) fn tasks_of_uid(uid: u32) -> u64 {
    let mut tasks = 0;
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    for entry in dir.flatten() {
        if !entry.file_name().to_str().is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        if field("Uid:").and_then(|v| v.split_whitespace().next()).and_then(|r| r.parse::<u32>().ok()) == Some(uid) {
            tasks += field("Threads:").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1);
        }
    }
    tasks
}

/// SIGKILLs process `pid` if `still_ours()` (called after the pid is pinned by a pidfd:
/// a pid recycled after the check is not hit). Returns whether a signal was sent.
pub(crate) fn kill_if(pid: libc::pid_t, still_ours: impl FnOnce() -> bool) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: pidfd_open takes a pid and flags; it returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        // No pidfd (a kernel before 5.3): check, then kill by number.
        // SAFETY: kill takes integers.
        return still_ours() && unsafe { libc::kill(pid, libc::SIGKILL) } == 0;
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
    if !still_ours() {
        return false;
    }
    // SAFETY: a pidfd we own, a signal number, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<u8>(), 0)
    };
    rc == 0
}

/// This process's real uid.
pub(crate) fn uid() -> u32 {
    // SAFETY: getuid takes nothing and cannot fail.
    unsafe { libc::getuid() }
}

/// This process's resident memory now, in bytes (0 when unknown).
pub(crate) fn own_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

/// Whether this process runs as root (then each run slot gets its own uid).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A signal number's name (`SIGKILL`).
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("SIG{sig}"),
    };
    name.to_owned()
}
