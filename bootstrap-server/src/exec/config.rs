//! The flags of code execution (flattened into the node's `Config`).

use std::path::PathBuf;

/// Which executor serves `/api/v2/execute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The installed toolchains, each run inside bubblewrap on this machine.
    Local,
    /// A Piston v2 API at `--piston-url`.
    Piston,
    /// No code execution (the endpoints answer 503).
    Off,
}

/// Whether runs get cgroups of their own (memory and process limits per run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CgroupMode {
    /// cgroup v2 where the node can make child cgroups with memory and pids, else cgroup v1
    /// memory and pids hierarchies, else none (rlimits only).
    Auto,
    /// rlimits only.
    Off,
}

/// Code execution: the backend and the limits of every run.
#[derive(Clone, Debug, clap::Args)]
pub struct ExecConfig {
    /// Code execution backend: `local` (installed toolchains in bubblewrap), `piston`
    /// (forward to `--piston-url`) or `off`.
    #[arg(long, env = "ARENA_EXEC_BACKEND", value_enum, default_value_t = Backend::Local)]
    pub exec_backend: Backend,

    /// Base URL of a Piston v2 API for `--exec-backend piston`, e.g.
    /// `http://127.0.0.1:2000` (the client adds `/api/v2/...`).
    #[arg(long, env = "ARENA_PISTON_URL")]
    pub piston_url: Option<String>,

    /// Run programs without bubblewrap when it cannot run here (rlimits and a timeout
    /// only: a program sees the whole machine, the network and the node's files).
    /// Never on a machine that strangers' code reaches.
    #[arg(long, env = "ARENA_UNSAFE_NO_SANDBOX", value_parser = clap::builder::FalseyValueParser::new())]
    pub unsafe_no_sandbox: bool,

    /// Most runs at once; the next ones wait in the queue.
    #[arg(long, env = "ARENA_EXEC_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub exec_concurrency: u32,

    /// Most runs waiting for a slot; the next is answered "busy" (503).
    #[arg(long, env = "ARENA_EXEC_QUEUE", default_value_t = 64)]
    pub exec_queue: usize,

    /// Longest (and default) run stage, in milliseconds of wall-clock time.
    #[arg(long, env = "ARENA_EXEC_RUN_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub exec_run_timeout_ms: u64,

    /// Longest (and default) compile stage, in milliseconds of wall-clock time.
    #[arg(long, env = "ARENA_EXEC_COMPILE_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub exec_compile_timeout_ms: u64,

    /// Most (and default) memory of a stage, in MiB: all its processes together where runs
    /// get cgroups, and the address space of each process (interpreters that reserve
    /// address space up front get a fixed allowance).
    #[arg(long, env = "ARENA_EXEC_MEMORY_MB", default_value_t = 512, value_parser = clap::value_parser!(u64).range(16..=65_536))]
    pub exec_memory_mb: u64,

    /// Standard output and standard error are each kept up to this many bytes; the rest
    /// is read and dropped, and the stage is marked truncated (not killed).
    #[arg(long, env = "ARENA_EXEC_OUTPUT_BYTES", default_value_t = 256 * 1024)]
    pub exec_output_bytes: usize,

    /// Most processes and threads of one run.
    #[arg(long, env = "ARENA_EXEC_MAX_PROCESSES", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub exec_max_processes: u64,

    /// Largest file a run may write, in MiB.
    #[arg(long, env = "ARENA_EXEC_MAX_FILE_MB", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub exec_max_file_mb: u64,

    /// Size of a run's writable space (its working directory and `/tmp`, each a tmpfs of
    /// this many MiB).
    #[arg(long, env = "ARENA_EXEC_DISK_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub exec_disk_mb: u64,

    /// Where each run's private directory is made (default: the system's temp dir).
    #[arg(long, env = "ARENA_EXEC_WORK_DIR")]
    pub exec_work_dir: Option<PathBuf>,

    /// When the node runs as root, each run slot runs as its own uid from this one up
    /// (one uid per slot), so that the process limit counts that run alone and leftovers
    /// can be found and killed by uid.
    #[arg(long, env = "ARENA_EXEC_UID", default_value_t = 61_000, value_parser = clap::value_parser!(u32).range(1000..=4_000_000_000))]
    pub exec_uid: u32,

    /// Per-run cgroups: `auto` (cgroup v2 where the node can make child cgroups with the
    /// memory and pids controllers, else cgroup v1, else none: `/health` says which and
    /// why) or `off` (rlimits only).
    #[arg(long, env = "ARENA_EXEC_CGROUPS", value_enum, default_value_t = CgroupMode::Auto)]
    pub exec_cgroups: CgroupMode,
}
