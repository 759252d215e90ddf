//! Per-run cgroups: a memory limit for all of a stage's processes together, a process
//! limit, the stage's peak memory, OOM kills, and a sweep that leaves no process behind.
//!
//! At start the node finds what it can use, in this order: cgroup v2 (its own cgroup offers
//! `memory` and `pids`, and it may enable them for child cgroups), cgroup v1 (`memory` and
//! `pids` hierarchies it may create cgroups in), or none (rlimits only). Each stage gets a
//! cgroup of its own under `<the node's cgroup>/arena-exec-<pidns>-<pid>-<n>/`; its first
//! process joins it between fork and exec ([`super::spawn::spawn`]).

mod parse;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::config::CgroupMode;
use super::spawn;

/// The controllers a run's cgroup needs.
const CONTROLLERS: &str = "+memory +pids";

/// Which cgroup interface is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// This node's cgroups for runs.
#[derive(Debug)]
pub(crate) struct Cgroups {
    version: Version,
    /// The node's directory for runs in each hierarchy: v2 one; v1 memory, then pids.
    parents: Vec<PathBuf>,
    next: AtomicU64,
}

impl Cgroups {
    /// What this node can use, or why none: `Err` says why (for `/health`).
    pub(crate) fn detect(mode: CgroupMode) -> Result<Cgroups, String> {
        if mode == CgroupMode::Off {
            return Err("--exec-cgroups off".into());
        }
        let read = |p: &str| fs::read_to_string(p).map_err(|e| format!("reading {p}: {e}"));
        let proc_cgroup = read("/proc/self/cgroup")?;
        let mountinfo = read("/proc/self/mountinfo")?;
        // One directory per executor: several nodes may live in one process (tests). The pid
        // namespace is in the name so that stale ones are recognised only where the pid means
        // something.
        static EXECUTORS: AtomicU64 = AtomicU64::new(0);
        let ns = pid_namespace();
        let name = format!("arena-exec-{ns}-{}-{}", std::process::id(), EXECUTORS.fetch_add(1, Ordering::Relaxed));
        let v2 = match parse::v2_dir(&proc_cgroup, &mountinfo) {
            Some(own) => match v2_parent(&own, &name, ns) {
                Ok(parent) => {
                    return Ok(Cgroups { version: Version::V2, parents: vec![parent], next: AtomicU64::new(0) })
                }
                Err(why) => why,
            },
            None => "no cgroup2 mount shows the node's cgroup".to_owned(),
        };
        let v1 = match (
            parse::v1_dir(&proc_cgroup, &mountinfo, "memory"),
            parse::v1_dir(&proc_cgroup, &mountinfo, "pids"),
        ) {
            (Some(memory), Some(pids)) => match v1_parents(&memory, &pids, &name, ns) {
                Ok(parents) => return Ok(Cgroups { version: Version::V1, parents, next: AtomicU64::new(0) }),
                Err(why) => why,
            },
            _ => "no cgroup v1 memory and pids hierarchies".to_owned(),
        };
        Err(format!("v2: {v2}; v1: {v1}"))
    }

    /// Which interface and controllers (`v1 (memory, pids)`), for `/health`.
    pub(crate) fn describe(&self) -> String {
        let v = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        format!("{v} (memory, pids)")
    }

    /// The node's directories for runs' cgroups (v1: memory, then pids).
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.parents
    }

    /// A new cgroup for one stage, limited to `memory` bytes (all its processes together, no
    /// swap) and `pids` processes and threads. `stage` names it (`compile`, `run`).
    pub(crate) fn create(&self, stage: &str, memory: u64, pids: u64) -> io::Result<RunCgroup> {
        let name = format!("run-{}-{stage}", self.next.fetch_add(1, Ordering::Relaxed));
        let mut run = RunCgroup { version: self.version, dirs: Vec::new(), procs: Vec::new(), memory, pids };
        for parent in &self.parents {
            let dir = parent.join(&name);
            fs::create_dir(&dir)?;
            run.dirs.push(dir);
        }
        // `run` removes what was made if a limit cannot be set.
        let (memory_dir, pids_dir) = (run.memory_dir().to_owned(), run.pids_dir().to_owned());
        match self.version {
            Version::V2 => {
                write(&memory_dir.join("memory.max"), &memory.to_string())?;
                write_if_present(&memory_dir.join("memory.swap.max"), "0")?;
            }
            Version::V1 => {
                write(&memory_dir.join("memory.limit_in_bytes"), &memory.to_string())?;
                write_if_present(&memory_dir.join("memory.memsw.limit_in_bytes"), &memory.to_string())?;
            }
        }
        write(&pids_dir.join("pids.max"), &pids.to_string())?;
        for dir in &run.dirs {
            let procs = dir.join("cgroup.procs");
            let f = OpenOptions::new().write(true).open(&procs).map_err(|e| with_path(&procs, e))?;
            run.procs.push(f);
        }
        Ok(run)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for p in &self.parents {
            let _ = remove_tree(p);
        }
    }
}

/// The cgroup of one stage. Dropping it kills what is left in it and removes it (in a
/// thread of its own); [`RunCgroup::close`] does that and waits.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    version: Version,
    /// v2: one; v1: memory, then pids.
    dirs: Vec<PathBuf>,
    /// Each directory's `cgroup.procs`, open for writing (what the child joins through).
    procs: Vec<File>,
    memory: u64,
    pids: u64,
}

/// What a stage's cgroup saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Peak memory of all its processes together, in bytes (`None`: not reported).
    pub(crate) peak: Option<u64>,
    /// Processes the kernel's OOM killer ended at the memory limit.
    pub(crate) oom_kills: u64,
    /// Process (or thread) creations refused at the process limit.
    pub(crate) forks_refused: u64,
    /// The memory limit, in bytes.
    pub(crate) memory_limit: u64,
    /// The process limit.
    pub(crate) pids_limit: u64,
}

impl RunCgroup {
    /// The `cgroup.procs` files the stage's first process joins through.
    pub(crate) fn join(&self) -> Vec<BorrowedFd<'_>> {
        self.procs.iter().map(AsFd::as_fd).collect()
    }

    fn memory_dir(&self) -> &Path {
        &self.dirs[0]
    }

    fn pids_dir(&self) -> &Path {
        &self.dirs[self.dirs.len() - 1]
    }

    /// The memory limit of all its processes together, in bytes.
    pub(crate) fn memory(&self) -> u64 {
        self.memory
    }

    /// Changes the memory limit (a cgroup made ahead with the node's default, for a stage
    /// that asks for another).
    pub(crate) fn set_memory(&mut self, memory: u64) -> io::Result<()> {
        let dir = self.memory_dir().to_owned();
        let value = memory.to_string();
        match self.version {
            Version::V2 => write(&dir.join("memory.max"), &value)?,
            Version::V1 => {
                // v1 keeps memory+swap ≥ memory at every step.
                let (limit, memsw) = (dir.join("memory.limit_in_bytes"), dir.join("memory.memsw.limit_in_bytes"));
                if memory > self.memory {
                    write_if_present(&memsw, &value)?;
                    write(&limit, &value)?;
                } else {
                    write(&limit, &value)?;
                    write_if_present(&memsw, &value)?;
                }
            }
        }
        self.memory = memory;
        Ok(())
    }

    /// Processes the OOM killer ended in this cgroup so far.
    pub(crate) fn oom_kills(&self) -> u64 {
        let file = match self.version {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        let text = fs::read_to_string(self.memory_dir().join(file)).unwrap_or_default();
        parse::keyed(&text, "oom_kill").unwrap_or(0)
    }

    /// What the stage used and met.
    pub(crate) fn usage(&self) -> Usage {
        let peak_file = match self.version {
            Version::V2 => "memory.peak",
            Version::V1 => "memory.max_usage_in_bytes",
        };
        let peak = fs::read_to_string(self.memory_dir().join(peak_file)).ok().and_then(|t| t.trim().parse().ok());
        let events = fs::read_to_string(self.pids_dir().join("pids.events")).unwrap_or_default();
        Usage {
            peak,
            oom_kills: self.oom_kills(),
            forks_refused: parse::keyed(&events, "max").unwrap_or(0),
            memory_limit: self.memory,
            pids_limit: self.pids,
        }
    }

    /// SIGKILLs every process in the cgroup once; returns how many were found.
    pub(crate) fn kill_all(&self) -> usize {
        kill_in(&self.dirs)
    }

    /// Kills what is left and removes the cgroup (off the async threads).
    pub(crate) async fn close(mut self) {
        let dirs = std::mem::take(&mut self.dirs);
        self.procs.clear();
        if let Ok(Err(why)) = tokio::task::spawn_blocking(move || remove_run(&dirs)).await {
            tracing::warn!(%why, "a run's cgroup stays");
        }
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        // A run dropped half-way (its caller went away): its processes die here.
        let dirs = std::mem::take(&mut self.dirs);
        if !dirs.is_empty() {
            std::thread::spawn(move || {
                if let Err(why) = remove_run(&dirs) {
                    tracing::warn!(%why, "a run's cgroup stays");
                }
            });
        }
    }
}

/// Kills everything in `dirs` until they are empty, then removes them.
fn remove_run(dirs: &[PathBuf]) -> Result<(), String> {
    // The processes die within a moment of SIGKILL (at most a few hundred rounds even for
    // a fork bomb: a killed process forks no more, and pids.max bounds them).
    for _ in 0..500 {
        if kill_in(dirs) == 0 {
            let mut left = Vec::new();
            for d in dirs.iter().rev() {
                if let Err(e) = fs::remove_dir(d) {
                    if e.kind() != io::ErrorKind::NotFound {
                        left.push(format!("{}: {e}", d.display()));
                    }
                }
            }
            if left.is_empty() {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("could not empty and remove {dirs:?}"))
}

/// SIGKILLs every process listed in the `cgroup.procs` of `dirs`; how many were listed.
fn kill_in(dirs: &[PathBuf]) -> usize {
    let mut found = 0;
    for d in dirs {
        let procs = d.join("cgroup.procs");
        let listed = |pid: libc::pid_t| {
            fs::read_to_string(&procs)
                .unwrap_or_default()
                .lines()
                .any(|l| l.trim().parse::<libc::pid_t>().ok() == Some(pid))
        };
        for pid in fs::read_to_string(&procs).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()) {
            found += 1;
            spawn::kill_if(pid, || listed(pid));
        }
    }
    found
}

/// Removes a node's directory for runs: its runs' cgroups (killing what is in them) and it.
fn remove_tree(parent: &Path) -> Result<(), String> {
    let children: Vec<PathBuf> = fs::read_dir(parent)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    for c in children {
        remove_run(std::slice::from_ref(&c))?;
    }
    remove_run(&[parent.to_owned()])
}

/// Removes the directories of nodes that are gone from `dir` (`arena-exec-<ns>-<pid>-<n>`
/// in this pid namespace whose process no longer runs).
fn remove_stale(dir: &Path, ns: u64) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("arena-exec-") else { continue };
        let mut f = rest.split('-').map(|p| p.parse::<u64>().ok());
        let (Some(Some(their_ns)), Some(Some(pid))) = (f.next(), f.next()) else { continue };
        if their_ns == ns && pid != u64::from(std::process::id()) && !Path::new(&format!("/proc/{pid}")).exists() {
            match remove_tree(&entry.path()) {
                Ok(()) => tracing::info!(cgroup = %entry.path().display(), "removed a stale cgroup"),
                Err(why) => tracing::warn!(cgroup = %entry.path().display(), %why, "a stale cgroup stays"),
            }
        }
    }
}

/// cgroup v2: `<own>/<name>` with memory and pids enabled for its children.
fn v2_parent(own: &Path, name: &str, ns: u64) -> Result<PathBuf, String> {
    let controllers = fs::read_to_string(own.join("cgroup.controllers"))
        .map_err(|e| format!("reading {}: {e}", own.join("cgroup.controllers").display()))?;
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if !(has("memory") && has("pids")) {
        return Err(format!(
            "the node's cgroup {} does not offer memory and pids (cgroup.controllers: {:?})",
            own.display(),
            controllers.trim()
        ));
    }
    let subtree = own.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&subtree).unwrap_or_default();
    let on = |c: &str| enabled.split_whitespace().any(|x| x == c);
    if !(on("memory") && on("pids")) {
        write(&subtree, CONTROLLERS).map_err(|e| {
            format!(
                "cannot enable memory and pids for child cgroups of {} ({e}): the node's cgroup holds processes \
                 (cgroup v2 lets only leaves hold them) or is not delegated to the node",
                own.display()
            )
        })?;
    }
    remove_stale(own, ns);
    let parent = own.join(name);
    fs::create_dir(&parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    if let Err(e) = write(&parent.join("cgroup.subtree_control"), CONTROLLERS) {
        let _ = fs::remove_dir(&parent);
        return Err(format!("enabling memory and pids in {}: {e}", parent.display()));
    }
    Ok(parent)
}

/// cgroup v1: `<own memory cgroup>/<name>` and `<own pids cgroup>/<name>`.
fn v1_parents(memory: &Path, pids: &Path, name: &str, ns: u64) -> Result<Vec<PathBuf>, String> {
    let mut made: Vec<PathBuf> = Vec::new();
    for own in [memory, pids] {
        remove_stale(own, ns);
        let dir = own.join(name);
        if let Err(e) = fs::create_dir(&dir) {
            for m in &made {
                let _ = fs::remove_dir(m);
            }
            return Err(format!("cannot create cgroups in {}: {e}", own.display()));
        }
        made.push(dir);
    }
    Ok(made)
}

/// The inode of this process's pid namespace (0 when unknown).
fn pid_namespace() -> u64 {
    let link = fs::read_link("/proc/self/ns/pid").map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
    link.trim_start_matches("pid:[").trim_end_matches(']').parse().unwrap_or(0)
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes `value` to a cgroup file in one `write`.
fn write(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path).map_err(|e| with_path(path, e))?;
    f.write_all(value.as_bytes()).map_err(|e| with_path(path, e))
}

fn write_if_present(path: &Path, value: &str) -> io::Result<()> {
    if path.exists() {
        write(path, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_namespace_is_a_number() {
        assert!(pid_namespace() > 0);
    }
}
