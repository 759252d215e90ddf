//! Runs in a room (`POST /api/rooms/{room}/runs`): the node runs the room's code (and its
//! extra files beside it) through its executor and writes the run into the room's `runs` while it goes on, signed by its own
//! identity (only the node's service identity may write there), so every participant sees
//! the output live; a successful run is then a version of the room.
//!
//! In the document a run is, while it runs, a series of `running` records, each holding
//! the output that arrived since the previous one (so the history keeps each byte once,
//! not every growing snapshot: the document keeps deleted content for its versions); at the
//! end one final record replaces them. Each stream is kept up to [`DOC_OUTPUT_CAP`] bytes.
//!
//! Against a flood: one run at a time per room and at most [`RUNS_PER_MINUTE`] a minute;
//! the executor's own concurrency limit and queue answer `busy` across rooms.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arena_core::records::{RunRecord, RunStatus};
use arena_core::RoomId;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::clock::now_ms;
use crate::error::AppError;
use crate::exec::{
    ExecError, ExecOutcome, ExecRequest, Executor, Limits, LiveOutput, SourceFile, StageOutcome, Status,
};
use crate::registry::Registry;
use crate::room::{RoomCmd, RunWrite};

/// Most bytes of each stream (stdout, stderr) a run keeps in the document.
pub(crate) const DOC_OUTPUT_CAP: usize = 32 * 1024;
/// Runs a room may start in a minute.
pub(crate) const RUNS_PER_MINUTE: usize = 20;
/// How often output that arrived goes into the document while a run goes on.
const LIVE_EVERY: Duration = Duration::from_millis(200);
/// Rooms whose run state the node keeps (the oldest idle ones are forgotten first).
const MAX_ROOMS: usize = 4096;

/// A run request's body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunBody {
    /// The program's standard input.
    #[serde(default)]
    pub(crate) stdin: String,
    /// A language other than the room's (a Piston name or alias).
    #[serde(default)]
    pub(crate) language: Option<String>,
    /// The program's arguments.
    #[serde(default)]
    pub(crate) args: Vec<String>,
}

/// The node's runs in rooms: the executor, and which rooms run something now.
#[derive(Debug)]
pub(crate) struct Runs {
    exec: Option<Arc<dyn Executor>>,
    maxima: crate::exec::Maxima,
    rooms: Mutex<HashMap<RoomId, PerRoom>>,
}

#[derive(Debug, Default)]
struct PerRoom {
    running: bool,
    /// When its runs of the last minute started.
    started: VecDeque<Instant>,
}

/// A room's run slot: given back when the run ends, however it ends.
struct Claim {
    runs: Arc<Runs>,
    room: RoomId,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut rooms) = self.runs.rooms.lock() {
            if let Some(r) = rooms.get_mut(&self.room) {
                r.running = false;
            }
        }
    }
}

impl Runs {
    pub(crate) fn new(exec: Option<Arc<dyn Executor>>, maxima: crate::exec::Maxima) -> Self {
        Runs { exec, maxima, rooms: Mutex::new(HashMap::new()) }
    }

    /// The room's run slot, or why not now.
    fn claim(self: &Arc<Self>, room: RoomId) -> Result<Claim, AppError> {
        let now = Instant::now();
        let mut rooms = self.rooms.lock().map_err(|_| AppError::Internal("runs lock poisoned".into()))?;
        if rooms.len() >= MAX_ROOMS && !rooms.contains_key(&room) {
            rooms.retain(|_, r| r.running || r.started.back().is_some_and(|t| now - *t < Duration::from_secs(60)));
            if rooms.len() >= MAX_ROOMS {
                return Err(AppError::Unavailable("too many rooms are running code: try again shortly".into()));
            }
        }
        let r = rooms.entry(room).or_default();
        if r.running {
            return Err(AppError::TooManyRequests("a run is already going on in this room: wait for it to end".into()));
        }
        while r.started.front().is_some_and(|t| now - *t >= Duration::from_secs(60)) {
            r.started.pop_front();
        }
        if r.started.len() >= RUNS_PER_MINUTE {
            return Err(AppError::TooManyRequests(format!(
                "at most {RUNS_PER_MINUTE} runs a minute in one room: wait a little"
            )));
        }
        r.running = true;
        r.started.push_back(now);
        Ok(Claim { runs: self.clone(), room })
    }

    /// Runs the room's code for `by` (a host or candidate) and answers the final record
    /// (with the version it made, if any). The run goes on if the caller goes away.
    pub(crate) async fn run(
        self: &Arc<Self>,
        registry: &Registry,
        room: RoomId,
        token: String,
        by: String,
        body: RunBody,
    ) -> Result<serde_json::Value, AppError> {
        let Some(exec) = self.exec.clone() else {
            return Err(AppError::Unavailable(
                "code execution is off on this node (started with --exec-backend off)".into(),
            ));
        };
        if body.language.as_ref().is_some_and(|l| l.is_empty() || l.len() > 40) {
            return Err(AppError::BadRequest("language: 1 to 40 bytes".into()));
        }
        if body.args.len() > 64 || body.args.iter().any(|a| a.len() > 4096 || a.contains('\0')) {
            return Err(AppError::BadRequest("args: at most 64, each at most 4096 bytes, no NUL".into()));
        }
        let claim = self.claim(room)?;
        let writer = Writer { registry: registry.clone(), room, token };
        let (tx, rx) = oneshot::channel();
        let source = writer.source().await?;
        let language = body.language.clone().unwrap_or(source.language);
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = RunRecord {
            id: format!("run-{}-{}", now_ms(), NEXT.fetch_add(1, Ordering::Relaxed)),
            by,
            language: language.clone(),
            status: RunStatus::Running,
            stdout: String::new(),
            stderr: String::new(),
            exit_code: None,
            cpu_ms: 0,
            wall_ms: 0,
            at: now_ms(),
        };
        writer.write(base.clone(), false, None).await?;
        let req = ExecRequest {
            language,
            version: "*".into(),
            files: source_files(source.code, source.files),
            stdin: body.stdin.into_bytes(),
            args: body.args,
            limits: Limits {
                compile_timeout: self.maxima.compile_timeout,
                run_timeout: self.maxima.run_timeout,
                compile_memory: None,
                run_memory: None,
            },
        };
        // Its own task: a caller that hangs up does not leave the record running.
        tokio::spawn(async move {
            let answer = run_live(exec, req, base, &writer).await;
            drop(claim);
            let _ = tx.send(answer);
        });
        rx.await.map_err(|_| AppError::Internal("the run's task ended without an answer".into()))?
    }
}

/// The files of a run: the code first, unnamed (the executor names it by the language's
/// convention: `main.py`, `Main.java`, ...), then every extra file under its name (checked
/// by the room's rules, and again by the executor).
fn source_files(code: String, files: Vec<(String, String)>) -> Vec<SourceFile> {
    std::iter::once(SourceFile { name: None, content: code.into_bytes() })
        .chain(files.into_iter().map(|(name, text)| SourceFile { name: Some(name), content: text.into_bytes() }))
        .collect()
}

/// Writes a run's records into its room (through the room's actor, reloading the room if
/// it went idle meanwhile).
struct Writer {
    registry: Registry,
    room: RoomId,
    token: String,
}

impl Writer {
    async fn actor(&self) -> Result<crate::chan::Sender<RoomCmd>, AppError> {
        Ok(self.registry.actor(&self.room, Some(&self.token)).await?)
    }

    async fn source(&self) -> Result<crate::room::Source, AppError> {
        let (reply, rx) = oneshot::channel();
        self.actor().await?.send(RoomCmd::Source { reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(AppError::Internal)
    }

    /// Writes `record`; the version's id when `version` asked for one.
    async fn write(
        &self,
        record: RunRecord,
        replace: bool,
        version: Option<String>,
    ) -> Result<Option<String>, AppError> {
        let (reply, rx) = oneshot::channel();
        let cmd = RoomCmd::Run(Box::new(RunWrite { record, replace, version, reply }));
        self.actor().await?.send(cmd).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(AppError::Unavailable)
    }
}

fn gone() -> AppError {
    AppError::Unavailable("the room stopped (the node is shutting down)".into())
}

/// Runs `req`, writing what it prints into the room as it arrives, then the final record
/// (and a version when it succeeded).
async fn run_live(
    exec: Arc<dyn Executor>,
    req: ExecRequest,
    base: RunRecord,
    writer: &Writer,
) -> Result<serde_json::Value, AppError> {
    let started = Instant::now();
    let live = LiveOutput::new(DOC_OUTPUT_CAP);
    let mut outcome = std::pin::pin!(exec.execute_live(req, live.clone()));
    let mut tick = tokio::time::interval(LIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            o = &mut outcome => break o,
            _ = tick.tick() => {
                let chunk = live.take(false);
                if chunk.stdout.is_empty() && chunk.stderr.is_empty() {
                    continue;
                }
                let rec = RunRecord {
                    stdout: chunk.stdout,
                    stderr: chunk.stderr,
                    wall_ms: started.elapsed().as_millis() as u64,
                    ..base.clone()
                };
                // A live record that cannot be written is not worth failing the run for.
                if let Err(e) = writer.write(rec, false, None).await {
                    tracing::debug!(error = ?e, "a run's live output was not written");
                }
            }
        }
    };
    let (record, ok, error) = final_record(base, outcome, started.elapsed());
    let version = ok.then(|| format!("run {}", record.id));
    let version = writer.write(record.clone(), true, version).await?;
    if let Some(e) = error {
        return Err(e);
    }
    let mut answer = serde_json::to_value(&record).map_err(|e| AppError::Internal(e.to_string()))?;
    answer["version"] = serde_json::json!(version);
    Ok(answer)
}

/// The final record of a run, whether it succeeded (exit 0, nothing killed), and the error
/// to answer when the run could not be done at all.
fn final_record(
    base: RunRecord,
    outcome: Result<ExecOutcome, ExecError>,
    wall: Duration,
) -> (RunRecord, bool, Option<AppError>) {
    let o = match outcome {
        Ok(o) => o,
        Err(e) => {
            let answer = match &e {
                ExecError::Busy { .. } | ExecError::Unavailable(_) => AppError::Unavailable(e.to_string()),
                ExecError::UnknownRuntime { .. } | ExecError::BadRequest(_) => AppError::BadRequest(e.to_string()),
                _ => AppError::Internal(e.to_string()),
            };
            let rec = RunRecord {
                status: RunStatus::Failed,
                stderr: e.to_string(),
                wall_ms: wall.as_millis() as u64,
                ..base
            };
            return (rec, false, Some(answer));
        }
    };
    let compile_failed = o.run.is_none();
    let stages: Vec<&StageOutcome> = o.compile.iter().chain(o.run.iter()).collect();
    // What the room shows: the run's output, or the compiler's when compiling failed.
    let shown = if compile_failed { o.compile.as_ref() } else { o.run.as_ref() };
    let default = StageOutcome::default();
    let shown = shown.unwrap_or(&default);
    let timed_out = stages.iter().any(|s| s.status == Some(Status::Timeout));
    let broken = stages.iter().any(|s| s.status == Some(Status::InternalError));
    let status = if timed_out {
        RunStatus::TimedOut
    } else if broken {
        RunStatus::Failed
    } else {
        RunStatus::Finished
    };
    let (mut stdout, cut_out) = capped(&shown.stdout, DOC_OUTPUT_CAP);
    let (mut stderr, cut_err) = capped(&shown.stderr, DOC_OUTPUT_CAP);
    if cut_out || shown.stdout_truncated {
        stdout.push_str("\n[output truncated]\n");
    }
    if cut_err || shown.stderr_truncated {
        stderr.push_str("\n[error output truncated]\n");
    }
    // Why it did not simply exit (a limit, a signal), where both sides read it.
    if let Some(m) = shown
        .message
        .as_deref()
        .filter(|_| !matches!(shown.status, Some(Status::OutputLimit | Status::ErrorLimit) | None))
    {
        stderr.push_str(&format!("\n[{m}]\n"));
    }
    let ok = status == RunStatus::Finished && !compile_failed && shown.code == Some(0) && shown.signal.is_none();
    let rec = RunRecord {
        language: o.language,
        status,
        stdout,
        stderr,
        exit_code: shown.code,
        cpu_ms: stages.iter().map(|s| s.cpu_time.as_millis() as u64).sum(),
        wall_ms: wall.as_millis() as u64,
        ..base
    };
    (rec, ok, None)
}

/// `s` cut to at most `cap` bytes at a character boundary; whether it was cut.
fn capped(s: &str, cap: usize) -> (String, bool) {
    if s.len() <= cap {
        return (s.to_owned(), false);
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_owned(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RunRecord {
        RunRecord {
            id: "run-1".into(),
            by: "k".into(),
            language: "python".into(),
            status: RunStatus::Running,
            stdout: String::new(),
            stderr: String::new(),
            exit_code: None,
            cpu_ms: 0,
            wall_ms: 0,
            at: 0,
        }
    }

    fn outcome(run: StageOutcome) -> Result<ExecOutcome, ExecError> {
        Ok(ExecOutcome { language: "python".into(), version: "3".into(), compile: None, run: Some(run) })
    }

    #[test]
    fn final_records_of_each_ending() {
        let ok = StageOutcome { stdout: "hi\n".into(), code: Some(0), ..StageOutcome::default() };
        let (r, success, err) = final_record(base(), outcome(ok), Duration::from_millis(5));
        assert_eq!(
            (r.status, r.stdout.as_str(), r.exit_code, success, err.is_none()),
            (RunStatus::Finished, "hi\n", Some(0), true, true)
        );

        let failed = StageOutcome {
            code: Some(1),
            status: Some(Status::RuntimeError),
            message: Some("exit 1".into()),
            ..StageOutcome::default()
        };
        let (r, success, _) = final_record(base(), outcome(failed), Duration::ZERO);
        assert_eq!((r.status, r.exit_code, success), (RunStatus::Finished, Some(1), false));
        assert!(r.stderr.contains("[exit 1]"), "{}", r.stderr);

        let big = "é".repeat(DOC_OUTPUT_CAP);
        let timeout = StageOutcome {
            stdout: big,
            signal: Some("SIGKILL".into()),
            status: Some(Status::Timeout),
            message: Some("killed".into()),
            ..StageOutcome::default()
        };
        let (r, success, _) = final_record(base(), outcome(timeout), Duration::ZERO);
        assert_eq!((r.status, success), (RunStatus::TimedOut, false));
        assert!(r.stdout.len() <= DOC_OUTPUT_CAP + 32 && r.stdout.ends_with("[output truncated]\n"));

        let (r, success, err) = final_record(base(), Err(ExecError::Busy { running: 4, queued: 64 }), Duration::ZERO);
        assert_eq!((r.status, success), (RunStatus::Failed, false));
        assert!(matches!(err, Some(AppError::Unavailable(_))));
    }
}
