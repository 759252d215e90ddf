//! Group commit across rooms: sled's flush makes the whole database durable, so one flush
//! answers every request that queued while the previous one ran. It runs on the blocking
//! pool, never on an async worker. Flushes start at least `interval` apart: a room waits for
//! its flush before it takes its next batch, so under load the wait makes every room's
//! batches (and the envelopes signed for them) bigger and the fsyncs fewer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::metrics::{inc, Metrics};

type Waiter = oneshot::Sender<Result<(), String>>;

/// The handle rooms ask for a flush through: cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Flusher {
    tx: mpsc::Sender<Waiter>,
}

impl Flusher {
    /// Starts the group commit: `flush` (sled's, for the node) runs on the blocking pool,
    /// at most once per `interval`, for everyone who asked meanwhile.
    pub(crate) fn spawn(
        flush: impl Fn() -> Result<(), String> + Clone + Send + 'static,
        metrics: Arc<Metrics>,
        interval: Duration,
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
                inc(&metrics.store_flushes, 1);
                inc(&metrics.store_flush_us, started.elapsed().as_micros() as u64);
                inc(&metrics.store_commits, waiting.len() as u64);
                for w in waiting {
                    let _ = w.send(res.clone());
                }
            }
        });
        Flusher { tx }
    }

    /// Makes everything written so far durable (shared group commit).
    pub(crate) async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).await.map_err(|_| "flusher stopped".to_owned())?;
        rx.await.map_err(|_| "flusher stopped".to_owned())?
    }

    /// Asks for a flush; the answer comes on the receiver.
    #[cfg(test)]
    async fn request(&self) -> oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(tx).await;
        rx
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod tests {
    use arena_core::SledDb;

    use super::*;

    #[tokio::test]
    async fn the_group_commit_waits_out_its_interval_and_covers_what_queued_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let db = SledDb::open(dir.path()).unwrap();
        let metrics = Arc::new(Metrics::default());
        let interval = Duration::from_millis(300);
        let flusher = Flusher::spawn(move || db.flush().map_err(|e| e.to_string()), metrics.clone(), interval);
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);

        // The first request is flushed and answered.
        let first = Instant::now();
        flusher.request().await.await.unwrap().unwrap();
        assert_eq!(count(&metrics.store_flushes), 1);
        // The next one waits for the interval; what arrives meanwhile rides along.
        let second = flusher.request().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = flusher.request().await;
        second.await.unwrap().unwrap();
        third.await.unwrap().unwrap();
        assert!(first.elapsed() >= interval, "answered after {:?}", first.elapsed());
        assert_eq!(count(&metrics.store_flushes), 2, "the two requests shared one flush");
        assert_eq!(count(&metrics.store_commits), 3);
    }
}
