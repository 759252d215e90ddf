//! A durable job queue: the [`JobQueue`] trait, and [`SledQueue`], its implementation on
//! sled (why sled, and when to move to another queue: `docs/decisions/user-sync-queue.md`).
//!
//! - [`JobQueue::enqueue`] records an event key and its jobs in one transaction, unless the
//!   key was recorded before (a redelivered event enqueues nothing);
//! - [`JobQueue::claim`] takes the next due job (and counts the attempt); a job runs at least
//!   once: one claimed when the process died is ready again after [`JobQueue::recover`];
//! - [`JobQueue::fail`] puts a job back with an exponential backoff (with jitter), or on the
//!   dead-letter list after the last attempt; [`JobQueue::retry_dead`] brings it back.
//!
//! Durability: writes go to sled's log; [`JobQueue::flush`] makes them durable (the webhook
//! answers only after it). Completions need no flush: a completion lost in a crash runs
//! the job again, and every sink is idempotent.
//!
//! Cost: only [`JobQueue::enqueue`] is a sled transaction. Every sled transaction (and
//! batch) seals sled's I/O buffer and writes it with a synchronous `sync_file_range`, which
//! cost about 100 µs of CPU each on the project's VM: claims, completions and failures are
//! single-key writes instead, ordered so that a crash between two of them leaves a state
//! [`JobQueue::recover`] repairs (a job's record, with its state, is the truth; the ready set
//! is an index rebuilt from the records). `docs/decisions/user-sync-queue.md` has the figures.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sled::transaction::{TransactionError, Transactional};

/// A queue error (the store's).
#[derive(Debug, thiserror::Error)]
#[error("job queue: {0}")]
pub struct QueueError(String);

impl From<String> for QueueError {
    fn from(s: String) -> Self {
        QueueError(s)
    }
}

type Result<T> = std::result::Result<T, QueueError>;

fn err(e: impl std::fmt::Display) -> QueueError {
    QueueError(e.to_string())
}

/// A job to enqueue: its kind (which sink) and what it carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewJob {
    /// Which sink runs it.
    pub kind: String,
    /// Its input.
    pub payload: Value,
}

/// A job in the queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Its id (increasing).
    pub id: u64,
    /// The event it came from (for a webhook, the `svix-id`).
    pub key: String,
    /// Which sink runs it.
    pub kind: String,
    /// Its input.
    pub payload: Value,
    /// Attempts so far (a claim counts).
    pub attempts: u32,
    /// When it may run next (ms since the epoch).
    pub due_ms: u64,
    /// Why its last attempt failed.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_ms: u64,
    /// Where it is.
    #[serde(default)]
    pub state: JobState,
}

/// Where a job is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its due time.
    #[default]
    Ready,
    /// Claimed by a worker.
    Running,
    /// On the dead-letter list.
    Dead,
}

/// What [`JobQueue::claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// A job to run now.
    Job(Job),
    /// Nothing due; the next job is due then (ms), if there is one.
    Wait(Option<u64>),
}

/// What became of a failed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed {
    /// Ready again at this time (ms).
    Retry(u64),
    /// On the dead-letter list.
    Dead,
}

/// How failures are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts before the dead-letter list.
    pub max_attempts: u32,
    /// The wait before the first retry (ms); it doubles each time.
    pub base_ms: u64,
    /// The longest wait (ms).
    pub max_ms: u64,
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failed attempt, before jitter.
    fn delay(&self, attempts: u32) -> u64 {
        let doublings = attempts.saturating_sub(1).min(40);
        self.base_ms.saturating_mul(1u64 << doublings).min(self.max_ms)
    }
}

/// A line of the job log: what a finished job did.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// The job.
    pub id: u64,
    /// Its event.
    pub key: String,
    /// Its kind.
    pub kind: String,
    /// What it did.
    pub note: String,
    /// When it finished.
    pub at_ms: u64,
}

/// The queue's state, for operators.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Jobs waiting (due now or later).
    pub pending: usize,
    /// Jobs claimed by a worker and not finished.
    pub running: usize,
    /// Jobs finished since the queue was made.
    pub done: u64,
    /// The dead-letter list (payloads left out).
    pub dead: Vec<Value>,
    /// The last finished jobs, newest first.
    pub recent: Vec<LogLine>,
}

/// A durable job queue. Every method is quick (no network), so async callers call it
/// directly.
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    /// Records `key` and enqueues `jobs` in one transaction; `false` (and nothing written)
    /// when `key` was recorded before.
    fn enqueue(&self, key: &str, jobs: &[NewJob], now_ms: u64) -> Result<bool>;
    /// Takes the next job due at `now_ms`, counting the attempt.
    fn claim(&self, now_ms: u64) -> Result<Claim>;
    /// A claimed job succeeded: removed, `note` in the job log.
    fn complete(&self, id: u64, note: &str, now_ms: u64) -> Result<()>;
    /// A claimed job failed: retried later, or dead after its last attempt.
    fn fail(&self, id: u64, error: &str, now_ms: u64) -> Result<Failed>;
    /// Dead jobs (one, or all with `None`) back in the queue, due now, attempts reset;
    /// returns how many.
    fn retry_dead(&self, id: Option<u64>, now_ms: u64) -> Result<usize>;
    /// Jobs claimed when the process stopped are ready again; returns how many. Call once,
    /// before the workers start.
    fn recover(&self, now_ms: u64) -> Result<usize>;
    /// Counts, the dead-letter list and the recent log.
    fn status(&self) -> Result<Status>;
    /// Removes the waiting and dead jobs `matches` selects (never a running one); returns how
    /// many. A deletion uses it so that no copy of a deleted user's data stays in the queue.
    fn drop_where(&self, matches: &dyn Fn(&Job) -> bool) -> Result<usize>;
    /// Forgets event keys recorded before `before_ms` (a redelivery after that is a new
    /// event); returns how many.
    fn forget_keys_before(&self, before_ms: u64) -> Result<usize>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<()>;
}

/// [`JobQueue`] on sled trees: `keys` (event key → when), `jobs` (id → job, with its state:
/// the truth), `ready` (due ms ‖ id → (), an index of ready jobs: an entry whose job is gone or
/// not ready any more is dropped when met), `log` (id → line), `meta` (counters).
#[derive(Debug)]
pub struct SledQueue {
    db: sled::Db,
    keys: sled::Tree,
    jobs: sled::Tree,
    ready: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
    /// Trees of the layout before job states (moved into the records by `recover`).
    old_running: sled::Tree,
    old_dead: sled::Tree,
    policy: RetryPolicy,
    /// One claim at a time (the workers share the queue); also held by the operations that
    /// take waiting jobs out of the queue.
    claiming: Mutex<()>,
    /// Lines in `log` (sled's `len` scans the tree: counted here instead).
    log_lines: Mutex<usize>,
}

/// Lines kept in the job log.
const LOG_LINES: usize = 200;

fn ready_key(due_ms: u64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&due_ms.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

fn jitter(delay: u64) -> u64 {
    let mut b = [0u8; 8];
    // Without randomness the wait is the full delay (still correct, less spread).
    if getrandom::getrandom(&mut b).is_err() || delay < 2 {
        return delay;
    }
    delay / 2 + u64::from_le_bytes(b) % (delay - delay / 2 + 1)
}

impl SledQueue {
    /// The queue's trees in `db`, under `prefix`.
    pub fn open(db: &sled::Db, prefix: &str, policy: RetryPolicy) -> Result<Self> {
        let t = |name: &str| db.open_tree(format!("{prefix}/{name}")).map_err(err);
        let log = t("log")?;
        Ok(SledQueue {
            db: db.clone(),
            keys: t("keys")?,
            jobs: t("jobs")?,
            ready: t("ready")?,
            log_lines: Mutex::new(log.len()),
            log,
            meta: t("meta")?,
            old_running: t("running")?,
            old_dead: t("dead")?,
            policy,
            claiming: Mutex::new(()),
        })
    }

    fn job(&self, id: u64) -> Result<Option<Job>> {
        let Some(raw) = self.jobs.get(id.to_be_bytes()).map_err(err)? else { return Ok(None) };
        serde_json::from_slice(&raw).map(Some).map_err(|e| err(format!("job {id} does not decode: {e}")))
    }

    fn put(&self, job: &Job) -> Result<()> {
        let raw = serde_json::to_vec(job).map_err(err)?;
        self.jobs.insert(job.id.to_be_bytes(), raw).map_err(err)?;
        Ok(())
    }

    /// Makes `job` ready at `due`: its record first, then its index entry (a crash between
    /// the two is repaired by `recover`).
    fn make_ready(&self, mut job: Job, due: u64) -> Result<()> {
        job.state = JobState::Ready;
        job.due_ms = due;
        self.put(&job)?;
        self.ready.insert(ready_key(due, job.id), &[]).map_err(err)?;
        Ok(())
    }

    /// Every job record (those that do not decode are skipped with a warning).
    fn all_jobs(&self) -> Result<Vec<Job>> {
        let mut out = Vec::new();
        for kv in self.jobs.iter() {
            let (k, v) = kv.map_err(err)?;
            match serde_json::from_slice::<Job>(&v) {
                Ok(j) => out.push(j),
                Err(e) => tracing::warn!(key = ?k, error = %e, "job queue: a job record does not decode; skipped"),
            }
        }
        Ok(out)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.claiming.lock().map_err(|_| err("claim lock poisoned"))
    }
}

fn id_of(k: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(k).ok().map(u64::from_be_bytes)
}

impl JobQueue for SledQueue {
    fn enqueue(&self, key: &str, jobs: &[NewJob], now_ms: u64) -> Result<bool> {
        let mut rows = Vec::with_capacity(jobs.len());
        for j in jobs {
            let id = self.db.generate_id().map_err(err)?;
            let job = Job {
                id,
                key: key.to_owned(),
                kind: j.kind.clone(),
                payload: j.payload.clone(),
                attempts: 0,
                due_ms: now_ms,
                last_error: None,
                created_ms: now_ms,
                state: JobState::Ready,
            };
            rows.push((id, serde_json::to_vec(&job).map_err(err)?));
        }
        // The one transaction: the key and its jobs are recorded together or not at all.
        (&self.keys, &self.jobs, &self.ready)
            .transaction(|(keys, jobs, ready)| {
                if keys.get(key.as_bytes())?.is_some() {
                    return Ok(false);
                }
                keys.insert(key.as_bytes(), &now_ms.to_be_bytes())?;
                for (id, raw) in &rows {
                    jobs.insert(&id.to_be_bytes(), raw.as_slice())?;
                    ready.insert(&ready_key(now_ms, *id), &[])?;
                }
                Ok(true)
            })
            .map_err(|e: TransactionError<()>| err(format!("{e:?}")))
    }

    fn claim(&self, now_ms: u64) -> Result<Claim> {
        let _one = self.lock()?;
        loop {
            let Some((k, _)) = self.ready.first().map_err(err)? else { return Ok(Claim::Wait(None)) };
            let Ok(k16) = <[u8; 16]>::try_from(k.as_ref()) else {
                // Not a key this queue writes: drop it rather than stall on it.
                self.ready.remove(&k).map_err(err)?;
                continue;
            };
            let (due, id) = (u64::from_be_bytes(split8(&k16, 0)), u64::from_be_bytes(split8(&k16, 8)));
            if due > now_ms {
                return Ok(Claim::Wait(Some(due)));
            }
            let Some(mut job) = self.job(id)?.filter(|j| j.state == JobState::Ready && j.due_ms == due) else {
                // An index entry left behind (the job finished, moved or was dropped).
                self.ready.remove(&k).map_err(err)?;
                continue;
            };
            job.attempts = job.attempts.saturating_add(1);
            job.state = JobState::Running;
            // The record first: a crash before the index entry goes leaves a running job,
            // which `recover` makes ready again.
            self.put(&job)?;
            self.ready.remove(&k).map_err(err)?;
            return Ok(Claim::Job(job));
        }
    }

    fn complete(&self, id: u64, note: &str, now_ms: u64) -> Result<()> {
        let Some(job) = self.jobs.remove(id.to_be_bytes()).map_err(err)? else { return Ok(()) };
        let job: Job = serde_json::from_slice(&job).map_err(|e| err(format!("job {id} does not decode: {e}")))?;
        let line = LogLine { id, key: job.key, kind: job.kind, note: note.to_owned(), at_ms: now_ms };
        self.log.insert(id.to_be_bytes(), serde_json::to_vec(&line).map_err(err)?).map_err(err)?;
        self.meta
            .update_and_fetch(b"done", |old| {
                let done = old.and_then(id_of).unwrap_or(0).saturating_add(1);
                Some(done.to_be_bytes().to_vec())
            })
            .map_err(err)?;
        let mut lines = self.log_lines.lock().map_err(|_| err("log lock poisoned"))?;
        *lines += 1;
        while *lines > LOG_LINES {
            if self.log.pop_min().map_err(err)?.is_none() {
                break;
            }
            *lines -= 1;
        }
        Ok(())
    }

    fn fail(&self, id: u64, error: &str, now_ms: u64) -> Result<Failed> {
        let Some(mut job) = self.job(id)? else { return Ok(Failed::Dead) };
        job.last_error = Some(error.chars().take(500).collect());
        if job.attempts >= self.policy.max_attempts {
            job.state = JobState::Dead;
            self.put(&job)?;
            return Ok(Failed::Dead);
        }
        let due = now_ms.saturating_add(jitter(self.policy.delay(job.attempts)));
        self.make_ready(job, due)?;
        Ok(Failed::Retry(due))
    }

    fn retry_dead(&self, id: Option<u64>, now_ms: u64) -> Result<usize> {
        let _one = self.lock()?;
        let dead: Vec<Job> = match id {
            Some(id) => self.job(id)?.into_iter().collect(),
            None => self.all_jobs()?,
        };
        let mut n = 0;
        for mut job in dead.into_iter().filter(|j| j.state == JobState::Dead) {
            job.attempts = 0;
            self.make_ready(job, now_ms)?;
            n += 1;
        }
        Ok(n)
    }

    fn recover(&self, now_ms: u64) -> Result<usize> {
        let _one = self.lock()?;
        // The layout before job states kept them in trees of their own.
        for (tree, state) in [(&self.old_running, JobState::Running), (&self.old_dead, JobState::Dead)] {
            for k in tree.iter().keys() {
                let k = k.map_err(err)?;
                if let Some(mut job) = id_of(&k).map(|id| self.job(id)).transpose()?.flatten() {
                    job.state = state;
                    self.put(&job)?;
                }
                tree.remove(&k).map_err(err)?;
            }
        }
        let mut n = 0;
        for job in self.all_jobs()? {
            match job.state {
                JobState::Running => {
                    self.make_ready(job, now_ms)?;
                    n += 1;
                }
                JobState::Ready => {
                    // Its index entry may not have been written before the stop.
                    self.ready.insert(ready_key(job.due_ms, job.id), &[]).map_err(err)?;
                }
                JobState::Dead => {}
            }
        }
        Ok(n)
    }

    fn status(&self) -> Result<Status> {
        let (mut pending, mut running, mut dead) = (0, 0, Vec::new());
        for j in self.all_jobs()? {
            match j.state {
                JobState::Ready => pending += 1,
                JobState::Running => running += 1,
                JobState::Dead => dead.push(serde_json::json!({
                    "id": j.id, "key": j.key, "kind": j.kind, "attempts": j.attempts,
                    "lastError": j.last_error, "createdMs": j.created_ms,
                })),
            }
        }
        let recent = self
            .log
            .iter()
            .values()
            .rev()
            .filter_map(|v| v.ok())
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .take(50)
            .collect();
        let done = self.meta.get(b"done").map_err(err)?.and_then(|v| id_of(&v));
        Ok(Status { pending, running, done: done.unwrap_or(0), dead, recent })
    }

    fn drop_where(&self, matches: &dyn Fn(&Job) -> bool) -> Result<usize> {
        // The claim lock: a waiting job is not claimed between being read here and removed.
        let _one = self.lock()?;
        let mut n = 0;
        for job in self.all_jobs()? {
            if job.state != JobState::Running && matches(&job) {
                // Its index entry, if any, is dropped when a claim meets it.
                self.jobs.remove(job.id.to_be_bytes()).map_err(err)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn forget_keys_before(&self, before_ms: u64) -> Result<usize> {
        let mut n = 0;
        for kv in self.keys.iter() {
            let (k, v) = kv.map_err(err)?;
            let at = id_of(&v).unwrap_or(0);
            // Only if unchanged since read.
            if at < before_ms && self.keys.compare_and_swap(&k, Some(v), None::<&[u8]>).map_err(err)?.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(err)
    }
}

fn split8(k: &[u8; 16], at: usize) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[at..at + 8]);
    b
}

#[cfg(test)]
mod tests;
