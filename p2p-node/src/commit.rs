//! Group commit, the one flush path of arena-node and the bootstrap node: sled's flush makes
//! the whole database durable, so one flush answers everyone who asked while the previous
//! one ran. It runs on tokio's blocking pool, never on an async worker (an fsync there stalls
//! every task scheduled behind it). Flushes start at least `interval` apart: under load the
//! wait makes every caller's batches bigger and the fsyncs fewer.
//!
//! The node's actor asks once per batch of inputs for its sled-backed rooms; the bootstrap
//! node's room actors ask once per batch each.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

/// What one flush did, for the caller's metrics.
#[derive(Clone, Copy, Debug)]
pub struct FlushReport {
    /// How long the flush itself took.
    pub took: Duration,
    /// How many requests it answered.
    pub commits: usize,
}

/// The handle callers ask for a flush through: cheap to clone. The flushing task ends when
/// the last handle is dropped.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    tx: mpsc::Sender<Waiter>,
}

impl GroupCommit {
    /// Starts the group commit on the current tokio runtime: `flush` (sled's) runs on the
    /// blocking pool at most once per `interval`, for everyone who asked meanwhile;
    /// `observe` hears about each flush.
    pub fn spawn(
        flush: impl Fn() -> Result<(), String> + Clone + Send + 'static,
        interval: Duration,
        observe: impl Fn(FlushReport) + Send + 'static,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<Waiter>(4096);
        tokio::spawn(async move {
            let mut last: Option<tokio::time::Instant> = None;
            while let Some(first) = rx.recv().await {
                if let Some(next) = last.map(|t| t + interval).filter(|n| *n > tokio::time::Instant::now()) {
                    tokio::time::sleep_until(next).await;
                }
                last = Some(tokio::time::Instant::now());
                let mut waiting = vec![first];
                while let Ok(more) = rx.try_recv() {
                    waiting.push(more);
                }
                let flush = flush.clone();
                let started = Instant::now();
                let res = tokio::task::spawn_blocking(flush).await.unwrap_or_else(|e| Err(e.to_string()));
                observe(FlushReport { took: started.elapsed(), commits: waiting.len() });
                for w in waiting {
                    let _ = w.send(res.clone());
                }
            }
        });
        GroupCommit { tx }
    }

    /// Makes everything written so far durable (shared with whoever else asked meanwhile).
    pub async fn flush(&self) -> Result<(), String> {
        let rx = self.request().await?;
        rx.await.map_err(|_| "the group commit stopped".to_owned())?
    }

    /// Asks for a flush; the answer comes on the receiver.
    pub async fn request(&self) -> Result<oneshot::Receiver<Result<(), String>>, String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).await.map_err(|_| "the group commit stopped".to_owned())?;
        Ok(rx)
    }
}

/// Makes `room` durable: through `group` when the room lives in its sled database (awaited,
/// off the async workers), else the room's own store (memory: nothing; a recording file).
pub(crate) async fn flush_room(room: &mut crate::NodeRoom, group: Option<&GroupCommit>) -> crate::Result<()> {
    match group {
        Some(g) if matches!(room.store(), crate::NodeStore::Sled(_)) => {
            g.flush().await.map_err(|e| crate::NodeError::Core(arena_core::CoreError::Store(e)))
        }
        _ => Ok(arena_core::Store::flush(room.store_mut())?),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use arena_core::SledDb;

    use super::*;

    #[tokio::test]
    async fn the_group_commit_waits_out_its_interval_and_covers_what_queued_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let db = SledDb::open(dir.path()).unwrap();
        let (flushes, commits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (f, c) = (flushes.clone(), commits.clone());
        let interval = Duration::from_millis(300);
        let gc = GroupCommit::spawn(
            move || db.flush().map_err(|e| e.to_string()),
            interval,
            move |r| {
                f.fetch_add(1, Ordering::Relaxed);
                c.fetch_add(r.commits, Ordering::Relaxed);
            },
        );

        // The first request is flushed and answered.
        let first = Instant::now();
        gc.request().await.unwrap().await.unwrap().unwrap();
        assert_eq!(flushes.load(Ordering::Relaxed), 1);
        // The next one waits for the interval; what arrives meanwhile rides along.
        let second = gc.request().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = gc.request().await.unwrap();
        second.await.unwrap().unwrap();
        third.await.unwrap().unwrap();
        assert!(first.elapsed() >= interval, "answered after {:?}", first.elapsed());
        assert_eq!(flushes.load(Ordering::Relaxed), 2, "the two requests shared one flush");
        assert_eq!(commits.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_every_request_it_answered() {
        let gc = GroupCommit::spawn(|| Err("disk full".to_owned()), Duration::ZERO, |_| {});
        let (a, b) = (gc.request().await.unwrap(), gc.request().await.unwrap());
        assert_eq!(a.await.unwrap(), Err("disk full".to_owned()));
        assert_eq!(b.await.unwrap(), Err("disk full".to_owned()));
        assert_eq!(gc.flush().await, Err("disk full".to_owned()));
    }
}
