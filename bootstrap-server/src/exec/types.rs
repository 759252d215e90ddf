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
    /// [`Executor::execute`], and the output of both stages goes into `live` as it arrives
    /// (up to `live`'s cap), for whoever shows it while the run goes on. A backend that only
    /// answers at the end (Piston) puts nothing there: the outcome has it all.
    fn execute_live(&self, req: ExecRequest, live: LiveOutput) -> BoxFuture<'_, Result<ExecOutcome, ExecError>> {
        drop(live);
        self.execute(req)
    }
    /// What contains a run and how (for `/health`). What only the operator should see (host
    /// paths, URLs) goes under `"operator"`, which `/health` shows to the operator alone.
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
    /// Peak memory in bytes: of all the stage's processes together when it ran in a cgroup
    /// of its own, else the peak resident size of its largest process (`None` when unknown).
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

/// Output of a run as it arrives, shared between the run and whoever shows it: each
/// [`LiveOutput::take`] returns what arrived since the previous one. Bounded: after `cap`
/// bytes of a stream the rest is dropped (and the stream marked truncated).
#[derive(Clone, Debug)]
pub struct LiveOutput(std::sync::Arc<std::sync::Mutex<Live>>);

#[derive(Debug, Default)]
struct Live {
    cap: usize,
    /// Bytes not yet taken, per stream (stdout, stderr).
    new: [Vec<u8>; 2],
    /// Bytes kept so far, per stream.
    kept: [usize; 2],
    truncated: [bool; 2],
}

/// What arrived since the previous [`LiveOutput::take`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveChunk {
    /// New standard output (lossy UTF-8; a character split at the end waits for its rest).
    pub stdout: String,
    /// New standard error.
    pub stderr: String,
    /// Whether standard output went over the cap.
    pub stdout_truncated: bool,
    /// Whether standard error went over the cap.
    pub stderr_truncated: bool,
}

impl LiveOutput {
    /// Keeps up to `cap` bytes of each stream.
    pub fn new(cap: usize) -> Self {
        LiveOutput(std::sync::Arc::new(std::sync::Mutex::new(Live { cap, ..Live::default() })))
    }

    /// Output of a stream (`err`: standard error) arrived.
    pub(crate) fn push(&self, err: bool, bytes: &[u8]) {
        let Ok(mut l) = self.0.lock() else { return };
        let i = usize::from(err);
        let room = l.cap.saturating_sub(l.kept[i]);
        let n = bytes.len().min(room);
        if n < bytes.len() {
            l.truncated[i] = true;
        }
        l.kept[i] += n;
        l.new[i].extend_from_slice(&bytes[..n]);
    }

    /// What arrived since the previous call. A UTF-8 character split at the end of what
    /// arrived waits for the next call (at the end of the run, `last` takes it as it is).
    pub fn take(&self, last: bool) -> LiveChunk {
        let Ok(mut l) = self.0.lock() else { return LiveChunk::default() };
        let mut text = |i: usize| {
            let buf = &mut l.new[i];
            let keep = if last { 0 } else { incomplete_tail(buf) };
            let rest = buf.split_off(buf.len() - keep);
            let done = std::mem::replace(buf, rest);
            String::from_utf8_lossy(&done).into_owned()
        };
        let (stdout, stderr) = (text(0), text(1));
        LiveChunk { stdout, stderr, stdout_truncated: l.truncated[0], stderr_truncated: l.truncated[1] }
    }
}

/// How many bytes at the end of `b` start a UTF-8 character that is not complete yet.
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let c = b[b.len() - back];
        if c & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let need = match c {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_output_hands_out_what_is_new_keeps_split_characters_and_caps() {
        let live = LiveOutput::new(8);
        live.push(false, "a\u{e9}".as_bytes());
        live.push(false, &"\u{e9}".as_bytes()[..1]);
        live.push(true, b"err");
        let c = live.take(false);
        assert_eq!((c.stdout.as_str(), c.stderr.as_str()), ("a\u{e9}", "err"));
        live.push(false, &"\u{e9}".as_bytes()[1..]);
        live.push(false, b"xyzzy");
        let c = live.take(false);
        assert_eq!(c.stdout, "\u{e9}xyz");
        assert!(c.stdout_truncated && !c.stderr_truncated);
        assert_eq!(live.take(false), LiveChunk { stdout_truncated: true, ..LiveChunk::default() });
        live.push(true, &[0xE2, 0x82]);
        assert_eq!(live.take(true).stderr, "\u{fffd}");
    }
}
