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
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<()>;
}

/// [`JobQueue`] on sled trees: `keys` (event key → when), `jobs` (id → job), `ready`
/// (due ms ‖ id → ()), `running` and `dead` (id → ()), `log` (id → line), `meta` (counters).
#[derive(Debug)]
pub struct SledQueue {
    db: sled::Db,
    keys: sled::Tree,
    jobs: sled::Tree,
    ready: sled::Tree,
    running: sled::Tree,
    dead: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
    policy: RetryPolicy,
    /// One claim at a time (the workers share the queue).
    claiming: Mutex<()>,
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
        Ok(SledQueue {
            db: db.clone(),
            keys: t("keys")?,
            jobs: t("jobs")?,
            ready: t("ready")?,
            running: t("running")?,
            dead: t("dead")?,
            log: t("log")?,
            meta: t("meta")?,
            policy,
            claiming: Mutex::new(()),
        })
    }

    fn job(&self, id: u64) -> Result<Option<Job>> {
        let Some(raw) = self.jobs.get(id.to_be_bytes()).map_err(err)? else { return Ok(None) };
        serde_json::from_slice(&raw).map(Some).map_err(|e| err(format!("job {id} does not decode: {e}")))
    }

    /// Moves job `id` from the set `from` to the ready set at `due`, rewritten by `edit`.
    fn requeue(&self, from: &sled::Tree, id: u64, due: u64, edit: impl Fn(&mut Job)) -> Result<bool> {
        let Some(mut job) = self.job(id)? else { return Ok(false) };
        edit(&mut job);
        job.due_ms = due;
        let raw = serde_json::to_vec(&job).map_err(err)?;
        let moved = (from, &self.ready, &self.jobs)
            .transaction(|(from, ready, jobs)| {
                if from.remove(&id.to_be_bytes())?.is_none() {
                    return Ok(false);
                }
                ready.insert(&ready_key(due, id), &[])?;
                jobs.insert(&id.to_be_bytes(), raw.as_slice())?;
                Ok(true)
            })
            .map_err(|e: TransactionError<()>| err(format!("{e:?}")))?;
        Ok(moved)
    }

    fn ids(tree: &sled::Tree) -> Vec<u64> {
        tree.iter()
            .keys()
            .filter_map(|k| k.ok())
            .filter_map(|k| <[u8; 8]>::try_from(k.as_ref()).ok().map(u64::from_be_bytes))
            .collect()
    }
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
            };
            rows.push((id, serde_json::to_vec(&job).map_err(err)?));
        }
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
        let _one = self.claiming.lock().map_err(|_| err("claim lock poisoned"))?;
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
            let Some(mut job) = self.job(id)? else {
                self.ready.remove(&k).map_err(err)?;
                continue;
            };
            job.attempts = job.attempts.saturating_add(1);
            let raw = serde_json::to_vec(&job).map_err(err)?;
            (&self.ready, &self.running, &self.jobs)
                .transaction(|(ready, running, jobs)| {
                    ready.remove(&k16)?;
                    running.insert(&id.to_be_bytes(), &[])?;
                    jobs.insert(&id.to_be_bytes(), raw.as_slice())?;
                    Ok(())
                })
                .map_err(|e: TransactionError<()>| err(format!("{e:?}")))?;
            return Ok(Claim::Job(job));
        }
    }

    fn complete(&self, id: u64, note: &str, now_ms: u64) -> Result<()> {
        let Some(job) = self.job(id)? else { return Ok(()) };
        let line = LogLine { id, key: job.key, kind: job.kind, note: note.to_owned(), at_ms: now_ms };
        let raw = serde_json::to_vec(&line).map_err(err)?;
        (&self.running, &self.jobs, &self.log, &self.meta)
            .transaction(|(running, jobs, log, meta)| {
                running.remove(&id.to_be_bytes())?;
                jobs.remove(&id.to_be_bytes())?;
                log.insert(&id.to_be_bytes(), raw.as_slice())?;
                let done = meta.get(b"done")?.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok());
                let done = done.map_or(0, u64::from_be_bytes).saturating_add(1);
                meta.insert(b"done", &done.to_be_bytes())?;
                Ok(())
            })
            .map_err(|e: TransactionError<()>| err(format!("{e:?}")))?;
        while self.log.len() > LOG_LINES {
            let Some((k, _)) = self.log.pop_min().map_err(err)? else { break };
            drop(k);
        }
        Ok(())
    }

    fn fail(&self, id: u64, error: &str, now_ms: u64) -> Result<Failed> {
        let Some(mut job) = self.job(id)? else { return Ok(Failed::Dead) };
        let error: String = error.chars().take(500).collect();
        if job.attempts >= self.policy.max_attempts {
            job.last_error = Some(error);
            let raw = serde_json::to_vec(&job).map_err(err)?;
            (&self.running, &self.dead, &self.jobs)
                .transaction(|(running, dead, jobs)| {
                    running.remove(&id.to_be_bytes())?;
                    dead.insert(&id.to_be_bytes(), &[])?;
                    jobs.insert(&id.to_be_bytes(), raw.as_slice())?;
                    Ok(())
                })
                .map_err(|e: TransactionError<()>| err(format!("{e:?}")))?;
            return Ok(Failed::Dead);
        }
        let due = now_ms.saturating_add(jitter(self.policy.delay(job.attempts)));
        self.requeue(&self.running, id, due, |j| j.last_error = Some(error.clone()))?;
        Ok(Failed::Retry(due))
    }

    fn retry_dead(&self, id: Option<u64>, now_ms: u64) -> Result<usize> {
        let ids = match id {
            Some(id) => vec![id],
            None => Self::ids(&self.dead),
        };
        let mut n = 0;
        for id in ids {
            if self.requeue(&self.dead, id, now_ms, |j| j.attempts = 0)? {
                n += 1;
            }
        }
        Ok(n)
    }

    fn recover(&self, now_ms: u64) -> Result<usize> {
        let mut n = 0;
        for id in Self::ids(&self.running) {
            if self.requeue(&self.running, id, now_ms, |_| {})? {
                n += 1;
            }
        }
        Ok(n)
    }

    fn status(&self) -> Result<Status> {
        let mut dead = Vec::new();
        for id in Self::ids(&self.dead) {
            if let Some(j) = self.job(id)? {
                dead.push(serde_json::json!({
                    "id": j.id, "key": j.key, "kind": j.kind, "attempts": j.attempts,
                    "lastError": j.last_error, "createdMs": j.created_ms,
                }));
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
        let done = self.meta.get(b"done").map_err(err)?.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok());
        Ok(Status {
            pending: self.ready.len(),
            running: self.running.len(),
            done: done.map_or(0, u64::from_be_bytes),
            dead,
            recent,
        })
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
