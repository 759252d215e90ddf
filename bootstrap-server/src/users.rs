//! User sync: Clerk's webhooks (`POST /webhooks/clerk`, Svix signatures), a durable job
//! queue on sled, and the sinks its jobs feed: the user directory, the signed profile records
//! of the rooms a user is in, outbound webhooks. Operators read it at `GET /api/users/{id}`
//! and `GET /api/admin/jobs`, and bring it in line with Clerk's export with
//! `arena-bootstrap users reconcile --from FILE`. See `docs/users.md`.
//!
//! Its own sled database (`{data-dir}/users`), apart from the rooms': the queue's
//! transactions span its trees, and the rooms' store exposes none.

use std::sync::Arc;
use std::time::Duration;

use arena_core::Identity;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::error::BootstrapError;
use crate::flush::Flusher;
use crate::registry::Registry;

mod api;
pub mod clerk;
pub mod cli;
mod directory;
mod profiles;
pub mod queue;
pub mod reconcile;
mod sinks;
pub mod svix;

pub(crate) use api::{bind_room, routes};
use directory::Directory;
use profiles::Profiles;
use queue::{Claim, Failed, JobQueue, RetryPolicy, SledQueue};

/// The longest wait between a failed job's retries.
const MAX_BACKOFF_MS: u64 = 10 * 60 * 1000;

/// How long a webhook's event id is remembered (a redelivery within it does nothing twice).
/// Svix stops retrying a message within days, and an operator replays one by hand sooner;
/// a week covers both. See `docs/decisions/user-sync-queue.md`.
const KEEP_EVENT_IDS_MS: u64 = 7 * 24 * 3600 * 1000;

/// How often event ids older than [`KEEP_EVENT_IDS_MS`] are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(3600);

/// Outbound webhooks: the signing secret and the client.
#[derive(Debug)]
struct Outbound {
    secret: svix::Secret,
    client: reqwest::Client,
}

/// The user sync's state: cheap to share (`Arc`).
#[derive(Debug)]
pub(crate) struct Users {
    registry: Registry,
    identity: Identity,
    queue: Arc<dyn JobQueue>,
    directory: Directory,
    profiles: Profiles,
    /// The Clerk endpoint's secrets (none: the endpoint answers 503).
    secrets: Vec<svix::Secret>,
    urls: Vec<String>,
    outbound: Option<Outbound>,
    /// Group commit of the users database (a webhook answers after its event is durable).
    flusher: Flusher,
    /// Wakes the workers when jobs are enqueued.
    wake: Notify,
    workers: u32,
}

fn config(e: impl std::fmt::Display) -> BootstrapError {
    BootstrapError::Config(e.to_string())
}

impl Users {
    /// Opens `{data-dir}/users` and reads the configuration.
    pub(crate) fn open(registry: &Registry) -> Result<Arc<Self>, BootstrapError> {
        let cfg = &registry.cfg().users;
        let secrets = cfg
            .clerk_webhook_secrets
            .iter()
            .map(|s| s.expose().parse::<svix::Secret>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(config)?;
        let outbound = match (&cfg.user_webhook_secret, cfg.user_webhook_urls.is_empty()) {
            (_, true) => None,
            (None, false) => return Err(config("--user-webhook-url needs --user-webhook-secret")),
            (Some(s), false) => Some(Outbound {
                secret: s.expose().parse().map_err(config)?,
                client: reqwest::Client::builder()
                    .timeout(Duration::from_millis(cfg.user_webhook_timeout_ms))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(config)?,
            }),
        };
        let path = registry.cfg().data_dir.join("users");
        // Names and emails: the node's alone, as the rest of the data dir.
        arena_node::create_private_dir(&path).map_err(|source| BootstrapError::File { path: path.clone(), source })?;
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(8 << 20)
            .open()
            .map_err(|e| config(format!("{}: {e}", path.display())))?;
        let policy = RetryPolicy {
            max_attempts: cfg.user_job_max_attempts,
            base_ms: cfg.user_job_backoff_ms,
            max_ms: MAX_BACKOFF_MS.max(cfg.user_job_backoff_ms),
        };
        let queue = SledQueue::open(&db, "jobs", policy).map_err(config)?;
        let recovered = queue.recover(now_ms()).map_err(config)?;
        if recovered > 0 {
            tracing::info!(jobs = recovered, "user jobs that were running at the last stop are ready again");
        }
        let flusher = {
            let db = db.clone();
            // Its own database's group commit (not counted in the rooms' store metrics), paced
            // as the rooms' is (`--commit-interval-ms`): under a burst of webhooks, one fsync
            // covers every event that arrived meanwhile instead of one fsync each.
            let interval = Duration::from_millis(registry.cfg().commit_interval_ms);
            Flusher::spawn(move || db.flush().map(drop).map_err(|e| e.to_string()), interval, |_| {})
        };
        Ok(Arc::new(Users {
            registry: registry.clone(),
            identity: registry.identity().clone(),
            queue: Arc::new(queue),
            directory: Directory::open(&db).map_err(config)?,
            profiles: Profiles::open(&db).map_err(config)?,
            secrets,
            urls: cfg.user_webhook_urls.clone(),
            outbound,
            flusher,
            wake: Notify::new(),
            workers: cfg.user_job_workers,
        }))
    }

    /// Wakes the workers (new or retried jobs). `notify_one` keeps a permit when no worker
    /// is waiting, so a worker between its claim and its wait does not miss the news.
    fn wake_workers(&self) {
        for _ in 0..self.workers {
            self.wake.notify_one();
        }
    }

    /// Starts the workers; they stop at `shutdown`.
    pub(crate) fn spawn_workers(self: &Arc<Self>, shutdown: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> =
            (0..self.workers).map(|n| tokio::spawn(work(self.clone(), n, shutdown.clone()))).collect();
        tasks.push(tokio::spawn(forget_old_event_ids(self.clone(), shutdown.clone())));
        tasks
    }
}

/// Forgets event ids older than [`KEEP_EVENT_IDS_MS`], at start and then every
/// [`FORGET_EVERY`], so the table of ids stays bounded.
async fn forget_old_event_ids(users: Arc<Users>, shutdown: CancellationToken) {
    loop {
        let queue = users.queue.clone();
        let before = now_ms().saturating_sub(KEEP_EVENT_IDS_MS);
        match tokio::task::spawn_blocking(move || queue.forget_keys_before(before)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(event_ids = n, "user sync: old webhook event ids forgotten"),
            Ok(Err(e)) => tracing::warn!(error = %e, "user sync: forgetting old event ids"),
            Err(e) => tracing::warn!(error = %e, "user sync: forgetting old event ids"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(FORGET_EVERY) => {}
        }
    }
}

/// A worker: claims due jobs and runs them; sleeps until the next is due, jobs are
/// enqueued, or a second has passed.
async fn work(users: Arc<Users>, n: u32, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let wait = match users.queue.claim(now_ms()) {
            Ok(Claim::Job(job)) => {
                let outcome = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return, // still running: ready again at the next start
                    r = sinks::run(&users, &job) => r,
                };
                let now = now_ms();
                let done = match outcome {
                    Ok(note) => {
                        tracing::debug!(job = job.id, kind = %job.kind, %note, "user job done");
                        users.queue.complete(job.id, &note, now)
                    }
                    Err(why) => match users.queue.fail(job.id, &why, now) {
                        Ok(Failed::Retry(at)) => {
                            tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempts, error = %why, retry_in_ms = at.saturating_sub(now), "user job failed");
                            Ok(())
                        }
                        Ok(Failed::Dead) => {
                            tracing::error!(job = job.id, kind = %job.kind, attempts = job.attempts, error = %why, "user job failed for the last time: dead-letter list");
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = done {
                    tracing::error!(worker = n, error = %e, "user job queue");
                    Duration::from_secs(1)
                } else {
                    continue;
                }
            }
            Ok(Claim::Wait(next)) => {
                Duration::from_millis(next.map_or(1000, |t| t.saturating_sub(now_ms())).clamp(1, 1000))
            }
            Err(e) => {
                tracing::error!(worker = n, error = %e, "user job queue");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            () = users.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}
