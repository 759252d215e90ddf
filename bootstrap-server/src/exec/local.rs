//! The `local` backend: the installed toolchains, each run in a bubblewrap sandbox on this
//! machine, a few at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};

use super::cgroup::{Cgroups, RunCgroup};
use super::config::ExecConfig;
use super::sandbox::{self, Containment, SandboxSettings, Stage};
use super::spawn;
use super::toolchains::{self, Toolchain};
use super::types::{BoxFuture, ExecError, ExecOutcome, ExecRequest, Executor, LiveOutput, Runtime};

/// Most files of one run, and the longest file name.
const MAX_FILES: usize = 64;
const MAX_NAME: usize = 128;

/// Runs programs on this machine, inside bubblewrap.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    inner: Arc<Local>,
}

#[derive(Debug)]
struct Local {
    settings: SandboxSettings,
    toolchains: OnceCell<Vec<Toolchain>>,
    slots: Semaphore,
    /// Uids free for a run (one per slot when root; `None` entries otherwise).
    /// Taken from the front and given back at the end: runs rotate through the slots, so a
    /// slot's sandboxes started ahead have the other slots' runs' time to be ready.
    uids: Mutex<std::collections::VecDeque<Option<u32>>>,
    concurrency: usize,
    queue_max: usize,
    queued: AtomicUsize,
    work_root: PathBuf,
    next_run: AtomicU64,
    max_run: Duration,
    max_compile: Duration,
    max_memory: u64,
    /// What enforces memory and process limits (for `/health`).
    limits_by: &'static str,
    /// Sandboxes started ahead, per run slot's uid (dropped before `cgroups`).
    ahead: Mutex<HashMap<Option<u32>, Vec<Ahead>>>,
    /// bash, when stages start from children made ahead ([`spawn::spawn_waiting`]): with
    /// cgroups and bubblewrap only, once a probe showed it works.
    bash: Option<PathBuf>,
    ahead_on: AtomicBool,
    /// Asks the thread that starts sandboxes ahead to top up a uid's share.
    ahead_tx: Mutex<Option<std::sync::mpsc::Sender<Option<u32>>>>,
    /// Each stage's cgroup is made here; `Err` says why runs get none.
    cgroups: Result<Cgroups, String>,
}

/// A stage's process started ahead of time: already in its cgroup (joining one waits for
/// the kernel, `docs/decisions/003-exec-cgroups.md`), waiting for its command line.
#[derive(Debug)]
struct Ahead {
    waiting: spawn::Waiting,
    cgroup: RunCgroup,
}

/// Sandboxes kept started ahead for each slot's uid: a compile and a run stage.
const AHEAD_PER_SLOT: usize = 2;

impl LocalExecutor {
    /// Probes bubblewrap (unless `--unsafe-no-sandbox`), makes the work directory and starts
    /// finding the installed toolchains. `hidden` are paths no run may see (the data dir).
    pub async fn start(cfg: &ExecConfig, hidden: Vec<PathBuf>) -> Result<Self, ExecError> {
        let root = spawn::is_root();
        let concurrency = cfg.exec_concurrency as usize;
        let uids: Vec<Option<u32>> =
            (0..concurrency as u32).map(|i| root.then(|| cfg.exec_uid.saturating_add(i))).collect();
        let containment = match find_bwrap() {
            Some(bwrap) => match sandbox::probe(&bwrap, uids.first().copied().flatten()).await {
                Ok(()) => Containment::Bwrap(bwrap),
                Err(why) if cfg.unsafe_no_sandbox => {
                    tracing::warn!(%why, "running code WITHOUT a sandbox (--unsafe-no-sandbox)");
                    Containment::None
                }
                Err(why) => {
                    return Err(ExecError::Unavailable(format!(
                    "{why}. bubblewrap needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, \
                     or user.max_user_namespaces > 0; inside a container: allow them). Start with --exec-backend off, \
                     --exec-backend piston, or (never where strangers' code runs) --unsafe-no-sandbox"
                )))
                }
            },
            None if cfg.unsafe_no_sandbox => {
                tracing::warn!("bubblewrap not found: running code WITHOUT a sandbox (--unsafe-no-sandbox)");
                Containment::None
            }
            None => return Err(ExecError::Unavailable(
                "bubblewrap (bwrap) is not installed: `apt-get install bubblewrap`, or start with --exec-backend off \
                     or --exec-backend piston"
                    .into(),
            )),
        };
        let containment_is_bwrap = matches!(containment, Containment::Bwrap(_));
        let cgroups = match containment {
            // Unsandboxed, a program could leave its cgroup by writing to another one.
            Containment::None => Err("no sandbox (--unsafe-no-sandbox)".to_owned()),
            Containment::Bwrap(_) => Cgroups::detect(cfg.exec_cgroups),
        };
        match &cgroups {
            Ok(c) => {
                tracing::info!(cgroups = %c.describe(), dirs = ?c.dirs(), "code execution: each stage gets a cgroup")
            }
            Err(why) => tracing::info!(%why, "code execution: no cgroups, rlimits only"),
        }
        let base = cfg.exec_work_dir.clone().unwrap_or_else(std::env::temp_dir);
        remove_stale(&base);
        // One per executor: several nodes may live in one process (tests).
        static EXECUTORS: AtomicU64 = AtomicU64::new(0);
        let work_root =
            base.join(format!("arena-exec-{}-{}", std::process::id(), EXECUTORS.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&work_root)?;
        // Runs' dirs are reachable by their own uid only; the root lists nothing to others.
        set_mode(&work_root, 0o711)?;
        let inner = Arc::new(Local {
            settings: SandboxSettings {
                containment,
                output_cap: cfg.exec_output_bytes,
                max_processes: cfg.exec_max_processes,
                max_file: cfg.exec_max_file_mb << 20,
                disk: cfg.exec_disk_mb << 20,
                hidden,
                time: sandbox::find_time(),
            },
            toolchains: OnceCell::new(),
            slots: Semaphore::new(concurrency),
            uids: Mutex::new(uids.into_iter().collect()),
            concurrency,
            queue_max: cfg.exec_queue,
            queued: AtomicUsize::new(0),
            work_root,
            next_run: AtomicU64::new(0),
            max_run: Duration::from_millis(cfg.exec_run_timeout_ms),
            max_compile: Duration::from_millis(cfg.exec_compile_timeout_ms),
            max_memory: cfg.exec_memory_mb << 20,
            limits_by: match (cgroups.is_ok(), root) {
                (true, true) => "cgroup per stage, rlimits, one uid per run slot",
                (true, false) => "cgroup per stage, rlimits",
                (false, true) => "rlimits, one uid per run slot",
                (false, false) => "rlimits",
            },
            ahead: Mutex::new(HashMap::new()),
            bash: (containment_is_bwrap && cgroups.is_ok())
                .then(|| ["/usr/bin/bash", "/bin/bash"].iter().map(PathBuf::from).find(|p| p.is_file()))
                .flatten(),
            ahead_on: AtomicBool::new(false),
            ahead_tx: Mutex::new(None),
            cgroups,
        });
        if inner.bash.is_some() {
            // One thread that lives as long as the executor starts them all: a child gets
            // SIGKILL when the *thread* that forked it ends (PR_SET_PDEATHSIG), and pool
            // threads end when idle.
            let (tx, rx) = std::sync::mpsc::channel();
            if let Ok(mut t) = inner.ahead_tx.lock() {
                *t = Some(tx);
            }
            let l = Arc::downgrade(&inner);
            let started =
                std::thread::Builder::new().name("arena-exec-ahead".into()).spawn(move || ahead_thread(l, rx));
            if let Err(e) = started {
                tracing::warn!(%e, "code execution: no thread for sandboxes started ahead; each stage starts its own");
            }
        }
        let warm = inner.clone();
        tokio::spawn(async move {
            let found = warm.toolchains.get_or_init(discovered).await;
            let names: Vec<String> = found.iter().map(|t| format!("{} {}", t.lang.language, t.version)).collect();
            tracing::info!(runtimes = ?names, "code execution: toolchains found");
        });
        Ok(LocalExecutor { inner })
    }

    /// The toolchains found (waits for the discovery started at `start`).
    async fn toolchains(&self) -> &[Toolchain] {
        self.inner.toolchains.get_or_init(discovered).await
    }

    async fn run(&self, req: ExecRequest, live: Option<LiveOutput>) -> Result<ExecOutcome, ExecError> {
        let l = &self.inner;
        let tc = self
            .toolchains()
            .await
            .iter()
            .find(|t| t.answers_to(&req.language) && toolchains::version_matches(&req.version, &t.version))
            .cloned()
            .ok_or_else(|| ExecError::UnknownRuntime {
                language: req.language.clone(),
                version: req.version.clone(),
            })?;
        let names = file_names(&req, tc.lang.default_file)?;
        if let Some(i) = req.args.iter().position(|a| a.contains('\0')) {
            return Err(ExecError::BadRequest(format!("args[{i}] contains a NUL byte")));
        }
        check_limit("run_timeout", req.limits.run_timeout.as_millis() as u64, l.max_run.as_millis() as u64, "ms")?;
        check_limit(
            "compile_timeout",
            req.limits.compile_timeout.as_millis() as u64,
            l.max_compile.as_millis() as u64,
            "ms",
        )?;
        for (what, m) in
            [("run_memory_limit", req.limits.run_memory), ("compile_memory_limit", req.limits.compile_memory)]
        {
            check_limit(what, m.unwrap_or(0), l.max_memory, "bytes")?;
        }
        let _slot = self.acquire().await?;
        let uid = _slot.uid;
        let dir = l.work_root.join(format!("run-{}", l.next_run.fetch_add(1, Ordering::Relaxed)));
        let result = self.run_in(&tc, &req, &names, &dir, uid, live).await;
        // Nothing of the run survives it: its processes (by uid; the slot's sandboxes
        // started ahead, waiting outside the run's pid namespace, are not the run's), then
        // its directory.
        if let Some(uid) = uid {
            for _ in 0..50 {
                let keep = l.ahead_pids(Some(uid));
                if spawn::kill_uid_except(uid, &keep) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if l.ahead_on.load(Ordering::Relaxed) {
            if let Some(tx) = l.ahead_tx.lock().ok().and_then(|t| t.clone()) {
                let _ = tx.send(uid);
            }
        }
        let d = dir.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_file(d.with_extension("usage"));
            std::fs::remove_dir_all(d)
        })
        .await;
        result
    }

    async fn run_in(
        &self,
        tc: &Toolchain,
        req: &ExecRequest,
        names: &[String],
        dir: &Path,
        uid: Option<u32>,
        live: Option<LiveOutput>,
    ) -> Result<ExecOutcome, ExecError> {
        let l = &self.inner;
        std::fs::create_dir(dir)?;
        set_mode(dir, 0o700)?;
        for (name, file) in names.iter().zip(&req.files) {
            let path = dir.join(name);
            std::fs::write(&path, &file.content)?;
            if let Some(u) = uid {
                sandbox::chown(&path, u).map_err(ExecError::Unavailable)?;
            }
        }
        if let Some(u) = uid {
            sandbox::chown(dir, u).map_err(ExecError::Unavailable)?;
        }
        let usage = dir.with_extension("usage");
        let run_memory = req.limits.run_memory.unwrap_or(l.max_memory);
        let plan = tc.plan(names, &req.args, run_memory);
        let mut compile = None;
        if let Some(argv) = &plan.compile {
            let memory = req.limits.compile_memory.unwrap_or(l.max_memory);
            let (cgroup, warm) = self.stage_box("compile", uid, memory)?;
            let o = sandbox::run_stage(
                &l.settings,
                Stage {
                    argv,
                    env: &plan.env,
                    dir,
                    writable_dir: true,
                    stdin: b"",
                    timeout: req.limits.compile_timeout,
                    address_space: Some(memory.saturating_add(plan.address_space_allowance)),
                    uid,
                    usage: &usage,
                    live: live.clone(),
                    cgroup: cgroup.as_ref(),
                    warm: Mutex::new(warm),
                },
            )
            .await;
            if let Some(c) = cgroup {
                c.close().await;
            }
            let failed = o.code != Some(0);
            let mut o = o;
            if failed {
                o.message = Some(format!("compilation failed: {}", o.message.as_deref().unwrap_or("no exit code")));
            }
            compile = Some(o);
            if failed {
                return Ok(ExecOutcome {
                    language: tc.lang.language.into(),
                    version: tc.version.clone(),
                    compile,
                    run: None,
                });
            }
        }
        let (cgroup, warm) = self.stage_box("run", uid, run_memory)?;
        let run = sandbox::run_stage(
            &l.settings,
            Stage {
                argv: &plan.run,
                env: &plan.env,
                dir,
                writable_dir: false,
                stdin: &req.stdin,
                timeout: req.limits.run_timeout,
                address_space: Some(run_memory.saturating_add(plan.address_space_allowance)),
                uid,
                usage: &usage,
                live,
                cgroup: cgroup.as_ref(),
                warm: Mutex::new(warm),
            },
        )
        .await;
        if let Some(c) = cgroup {
            c.close().await;
        }
        Ok(ExecOutcome { language: tc.lang.language.into(), version: tc.version.clone(), compile, run: Some(run) })
    }

    /// A stage's cgroup limited to `memory` bytes, with a process started ahead in it when
    /// one is ready; else a new cgroup (when the node uses cgroups) and no process yet.
    fn stage_box(
        &self,
        stage: &str,
        uid: Option<u32>,
        memory: u64,
    ) -> Result<(Option<RunCgroup>, Option<spawn::Waiting>), ExecError> {
        if let Some(Ahead { waiting, mut cgroup }) = self.inner.take_ahead(uid) {
            if cgroup.memory() != memory {
                cgroup
                    .set_memory(memory)
                    .map_err(|e| ExecError::Unavailable(format!("setting the run's memory limit: {e}")))?;
            }
            return Ok((Some(cgroup), Some(waiting)));
        }
        Ok((self.cgroup(stage, memory)?, None))
    }

    /// A cgroup for one stage limited to `memory` bytes, when the node uses cgroups.
    fn cgroup(&self, stage: &str, memory: u64) -> Result<Option<RunCgroup>, ExecError> {
        let l = &self.inner;
        let Ok(cgroups) = &l.cgroups else { return Ok(None) };
        cgroups
            .create(stage, memory, l.settings.max_processes)
            .map(Some)
            .map_err(|e| ExecError::Unavailable(format!("making the run's cgroup: {e}")))
    }

    /// A run slot, or `Busy` when every slot is taken and the queue is full.
    async fn acquire(&self) -> Result<Slot<'_>, ExecError> {
        let l = &self.inner;
        let permit = match l.slots.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                let queued = l.queued.fetch_add(1, Ordering::SeqCst);
                if queued >= l.queue_max {
                    l.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(ExecError::Busy { running: l.concurrency, queued });
                }
                let p = l.slots.acquire().await;
                l.queued.fetch_sub(1, Ordering::SeqCst);
                p.map_err(|_| ExecError::Unavailable("shutting down".into()))?
            }
        };
        let uid = l.uids.lock().ok().and_then(|mut u| u.pop_front()).flatten();
        Ok(Slot { exec: self, uid, _permit: permit })
    }
}

/// The thread that starts sandboxes ahead: a probe, every slot's share, then a top-up for
/// each uid sent; it ends with the executor (its sender goes with `Local`).
fn ahead_thread(l: std::sync::Weak<Local>, rx: std::sync::mpsc::Receiver<Option<u32>>) {
    match l.upgrade() {
        Some(l) => l.start_ahead(),
        None => return,
    }
    while let Ok(uid) = rx.recv() {
        let Some(l) = l.upgrade() else { return };
        l.refill(uid);
    }
}

impl Local {
    /// Checks that a process started ahead runs what it is given, then starts every slot's
    /// share (on the ahead thread).
    fn start_ahead(&self) {
        let first = self.uids.lock().ok().and_then(|u| u.front().copied()).flatten();
        let probe = self.prepare(first).and_then(|a| {
            let mut child = a
                .waiting
                .start(5, None, &["/bin/sh".into(), "-c".into(), "exit 7".into()])
                .map_err(|e| e.to_string())?;
            let status = child.wait().map_err(|e| e.to_string())?;
            (status.code() == Some(7)).then_some(()).ok_or(format!("it ended with {status}"))
        });
        match probe {
            Ok(()) => {
                self.ahead_on.store(true, Ordering::Relaxed);
                tracing::info!("code execution: each slot keeps {AHEAD_PER_SLOT} sandboxes started ahead");
                let uids: Vec<Option<u32>> = self.uids.lock().map(|u| u.iter().copied().collect()).unwrap_or_default();
                for uid in uids {
                    self.refill(uid);
                }
            }
            Err(why) => tracing::warn!(%why, "code execution: no sandboxes started ahead; each stage starts its own"),
        }
    }

    /// How many a uid keeps (slots without a uid of their own share one list).
    fn share(&self, uid: Option<u32>) -> usize {
        match uid {
            Some(_) => AHEAD_PER_SLOT,
            None => AHEAD_PER_SLOT * self.concurrency,
        }
    }

    /// Starts sandboxes ahead for `uid` until it has its share (on the ahead thread).
    fn refill(&self, uid: Option<u32>) {
        loop {
            let have = self.ahead.lock().map(|m| m.get(&uid).map_or(0, Vec::len)).unwrap_or(usize::MAX);
            if have >= self.share(uid) {
                return;
            }
            match self.prepare(uid) {
                Ok(a) => {
                    if let Ok(mut m) = self.ahead.lock() {
                        m.entry(uid).or_default().push(a);
                    }
                }
                Err(why) => {
                    tracing::warn!(%why, "code execution: could not start a sandbox ahead");
                    return;
                }
            }
        }
    }

    fn prepare(&self, uid: Option<u32>) -> Result<Ahead, String> {
        let (Some(bash), Ok(cgroups)) = (&self.bash, &self.cgroups) else {
            return Err("no bash or no cgroups".into());
        };
        let cgroup = cgroups
            .create("ahead", self.max_memory, self.settings.max_processes)
            .map_err(|e| format!("making a cgroup: {e}"))?;
        let limits = sandbox::fixed_limits(&self.settings, true, uid);
        let waiting =
            spawn::spawn_waiting(bash, limits, uid, &cgroup.join()).map_err(|e| format!("starting bash: {e}"))?;
        Ok(Ahead { waiting, cgroup })
    }

    /// A sandbox started ahead for `uid` that still waits.
    fn take_ahead(&self, uid: Option<u32>) -> Option<Ahead> {
        let mut m = self.ahead.lock().ok()?;
        let list = m.get_mut(&uid)?;
        while let Some(mut a) = list.pop() {
            if a.waiting.alive() {
                return Some(a);
            }
        }
        None
    }

    /// The pids of `uid`'s sandboxes started ahead (unreaped children: never reused).
    fn ahead_pids(&self, uid: Option<u32>) -> Vec<libc::pid_t> {
        self.ahead
            .lock()
            .map(|m| m.get(&uid).map(|l| l.iter().filter_map(|a| a.waiting.pid()).collect()).unwrap_or_default())
            .unwrap_or_default()
    }

    fn ahead_count(&self) -> usize {
        self.ahead.lock().map(|m| m.values().map(Vec::len).sum()).unwrap_or(0)
    }
}

/// The installed toolchains, found once per process (several nodes in one process, as in
/// tests, share them; installing more needs a restart).
async fn discovered() -> Vec<Toolchain> {
    static FOUND: OnceCell<Vec<Toolchain>> = OnceCell::const_new();
    FOUND.get_or_init(toolchains::discover).await.clone()
}

/// A run slot: its uid goes back to the pool when the run ends.
struct Slot<'a> {
    exec: &'a LocalExecutor,
    uid: Option<u32>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut u) = self.exec.inner.uids.lock() {
            u.push_back(self.uid);
        }
    }
}

/// `what` must not be above `max`.
fn check_limit(what: &str, value: u64, max: u64, unit: &str) -> Result<(), ExecError> {
    if value > max {
        return Err(ExecError::BadRequest(format!(
            "{what} {value} {unit} is above this node's maximum of {max} {unit}"
        )));
    }
    Ok(())
}

/// The files' names in the run's directory: plain, unique names (a missing first name is
/// the language's default, others get `file{i}`).
fn file_names(req: &ExecRequest, default: &str) -> Result<Vec<String>, ExecError> {
    if req.files.is_empty() {
        return Err(ExecError::BadRequest("files: at least one file is needed".into()));
    }
    if req.files.len() > MAX_FILES {
        return Err(ExecError::BadRequest(format!("files: at most {MAX_FILES} files")));
    }
    let mut names: Vec<String> = Vec::with_capacity(req.files.len());
    for (i, f) in req.files.iter().enumerate() {
        let name = match &f.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ if i == 0 => default.to_owned(),
            _ => format!("file{i}"),
        };
        let plain = name.len() <= MAX_NAME
            && !name.starts_with('.')
            && name != "a.out"
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
        if !plain {
            return Err(ExecError::BadRequest(format!(
                "files[{i}].name {name:?}: a plain file name is needed (letters, digits, `_-.+`, not starting with a dot, at most {MAX_NAME} bytes, not a.out)"
            )));
        }
        if names.contains(&name) {
            return Err(ExecError::BadRequest(format!("files[{i}].name {name:?} appears twice")));
        }
        names.push(name);
    }
    Ok(names)
}

/// Removes the work directories of nodes that are gone (killed before cleaning up):
/// `arena-exec-<pid>-<n>` and `arena-exec-probe-<pid>-<n>` whose process no longer runs.
fn remove_stale(base: &Path) {
    let Ok(dir) = std::fs::read_dir(base) else { return };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("arena-exec-probe-").or_else(|| name.strip_prefix("arena-exec-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn find_bwrap() -> Option<PathBuf> {
    ["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"].iter().map(PathBuf::from).find(|p| p.is_file())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work_root);
    }
}

impl Executor for LocalExecutor {
    fn runtimes(&self) -> BoxFuture<'_, Result<Vec<Runtime>, ExecError>> {
        Box::pin(async move { Ok(self.toolchains().await.iter().map(Toolchain::runtime).collect()) })
    }

    fn execute(&self, req: ExecRequest) -> BoxFuture<'_, Result<ExecOutcome, ExecError>> {
        Box::pin(self.run(req, None))
    }

    fn execute_live(&self, req: ExecRequest, live: LiveOutput) -> BoxFuture<'_, Result<ExecOutcome, ExecError>> {
        Box::pin(self.run(req, Some(live)))
    }

    fn describe(&self) -> serde_json::Value {
        let l = &self.inner;
        let sandbox = match &l.settings.containment {
            Containment::Bwrap(p) => format!("bubblewrap ({})", p.display()),
            Containment::None => "NONE (--unsafe-no-sandbox)".to_owned(),
        };
        serde_json::json!({
            "backend": "local",
            "sandbox": sandbox,
            "limits": l.limits_by,
            "cgroups": match &l.cgroups {
                Ok(c) => c.describe(),
                Err(why) => format!("not used (rlimits: address space, processes, CPU time, file size, open files): {why}"),
            },
            // Host paths: for the operator only (`/health` drops "operator" for others).
            "operator": { "cgroupDirs": l.cgroups.as_ref().map(|c| c.dirs().to_vec()).unwrap_or_default() },
            "usage": if l.settings.time.is_some() { "GNU time" } else { "wait4 (peak memory only when above the node's own)" },
            "startedAhead": l.ahead_count(),
            "concurrency": l.concurrency,
            "running": l.concurrency - l.slots.available_permits(),
            "queued": l.queued.load(Ordering::Relaxed),
            "queueMax": l.queue_max,
        })
    }
}
