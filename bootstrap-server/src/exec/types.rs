//! What a run asks for and what it answers: the `Executor` trait and its types.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

/// A boxed future, so that `Executor` can be used as `dyn Executor`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that compiles and runs programs: the embedded sandbox (`LocalExecutor`) or a
/// Piston v2 API (`PistonExecutor`).
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// The runtimes it offers, with Piston's language names, versions and aliases.
    fn runtimes(&self) -> BoxFuture<'_, Result<Vec<Runtime>, ExecError>>;
    /// Compiles (when the language has a compile stage) and runs `req`.
    fn execute(&self, req: ExecRequest) -> BoxFuture<'_, Result<ExecOutcome, ExecError>>;
    /// What contains a run and how (for `/health`).
    fn describe(&self) -> serde_json::Value;
}

/// A language runtime, as Piston's `GET /api/v2/runtimes` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Runtime {
    /// Piston's name for the language (`python`, `javascript`, `c++`, ...).
    pub language: String,
    /// The installed version (`3.11.2`).
    pub version: String,
    /// Other names accepted for the language (`py`, `js`, `cpp`, ...).
    pub aliases: Vec<String>,
    /// The runtime's name when it is not the language's (`node` for javascript).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

/// One source file of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Its name in the working directory (a plain file name; the first file is the entry
    /// point). `None` picks one from the language.
    pub name: Option<String>,
    /// Its bytes.
    pub content: Vec<u8>,
}

/// Limits of one run (the node clamps them to its configured maxima).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time of the compile stage.
    pub compile_timeout: Duration,
    /// Wall-clock time of the run stage.
    pub run_timeout: Duration,
    /// Memory of the compile stage, in bytes (`None`: the node's maximum).
    pub compile_memory: Option<u64>,
    /// Memory of the run stage, in bytes (`None`: the node's maximum).
    pub run_memory: Option<u64>,
}

/// A request to compile and run a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// A language name or alias (`python`, `py`, `c++`, `cpp`, ...).
    pub language: String,
    /// A version selector: `*` (any), an exact version, or a prefix such as `3.11` or `3.x`.
    pub version: String,
    /// The source files; the first is the entry point.
    pub files: Vec<SourceFile>,
    /// Bytes on the program's standard input.
    pub stdin: Vec<u8>,
    /// Command-line arguments of the program.
    pub args: Vec<String>,
    /// Its limits.
    pub limits: Limits,
}

/// How a stage ended when it did not simply exit: Piston's two-letter statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Status {
    /// Exited with a non-zero code.
    #[serde(rename = "RE")]
    RuntimeError,
    /// Killed by a signal (its own crash, or a limit the kernel enforces).
    #[serde(rename = "SG")]
    Signal,
    /// Killed at the wall-clock (or CPU) time limit.
    #[serde(rename = "TO")]
    Timeout,
    /// Standard output went over the cap (kept up to it and marked truncated).
    #[serde(rename = "OL")]
    OutputLimit,
    /// Standard error went over the cap (kept up to it and marked truncated).
    #[serde(rename = "EL")]
    ErrorLimit,
    /// The sandbox itself failed.
    #[serde(rename = "XX")]
    InternalError,
}

/// What one stage (compile or run) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageOutcome {
    /// Standard output (lossy UTF-8), up to the cap.
    pub stdout: String,
    /// Standard error (lossy UTF-8), up to the cap.
    pub stderr: String,
    /// Both, interleaved as they arrived, up to the cap.
    pub output: String,
    /// Exit code, when the process exited.
    pub code: Option<i32>,
    /// Signal name (`SIGKILL`), when a signal ended it.
    pub signal: Option<String>,
    /// Why it did not simply exit 0 (`None` when it did).
    pub status: Option<Status>,
    /// A human-readable reason for `status`.
    pub message: Option<String>,
    /// CPU time of every process of the stage (user + system).
    pub cpu_time: Duration,
    /// Wall-clock time of the stage.
    pub wall_time: Duration,
    /// Peak resident memory of its largest process, in bytes (`None` when unknown).
    pub memory: Option<u64>,
    /// Whether standard output went over the cap (the rest was read and dropped).
    pub stdout_truncated: bool,
    /// Whether standard error went over the cap.
    pub stderr_truncated: bool,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The runtime's language name (not the alias asked for).
    pub language: String,
    /// The runtime's version.
    pub version: String,
    /// The compile stage, for languages that have one.
    pub compile: Option<StageOutcome>,
    /// The run stage (`None` when compiling failed: nothing ran).
    pub run: Option<StageOutcome>,
}

/// Why a run could not be done (a program that fails is an `ExecOutcome`, not an error).
#[derive(Debug, Error)]
pub enum ExecError {
    /// No runtime matches the language and version.
    #[error("{language}-{version} runtime is unknown")]
    UnknownRuntime {
        /// The language asked for.
        language: String,
        /// The version selector asked for.
        version: String,
    },
    /// The request is malformed or asks for more than the node allows.
    #[error("{0}")]
    BadRequest(String),
    /// Every run slot is taken and the queue is full.
    #[error("the runner is busy ({running} running, {queued} queued): try again shortly")]
    Busy {
        /// Runs in progress.
        running: usize,
        /// Runs waiting for a slot.
        queued: usize,
    },
    /// The backend cannot run anything (no sandbox, the Piston API unreachable, ...).
    #[error("code execution unavailable: {0}")]
    Unavailable(String),
    /// The upstream Piston API answered an error.
    #[error("piston answered {status}: {message}")]
    Upstream {
        /// Its HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// Local I/O while preparing or cleaning up a run.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
