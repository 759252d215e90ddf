//! The node's group commit is arena-node's ([`arena_node::GroupCommit`], the one flush path of
//! both crates): sled's flush on the blocking pool, at most once per `--commit-interval-ms`,
//! answering every room that asked meanwhile. This module only counts it in the node's
//! metrics.

use std::sync::Arc;
use std::time::Duration;

pub(crate) use arena_node::GroupCommit as Flusher;

use crate::metrics::{inc, Metrics};

/// Starts the group commit over `flush` (sled's, for the node), counted in `metrics`
/// (`store_flushes`, `store_flush_us`, `store_commits`).
pub(crate) fn spawn(
    flush: impl Fn() -> Result<(), String> + Clone + Send + 'static,
    metrics: Arc<Metrics>,
    interval: Duration,
) -> Flusher {
    Flusher::spawn(flush, interval, move |r| {
        inc(&metrics.store_flushes, 1);
        inc(&metrics.store_flush_us, r.took.as_micros() as u64);
        inc(&metrics.store_commits, r.commits as u64);
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use arena_core::SledDb;

    use super::*;

    #[tokio::test]
    async fn flushes_are_counted_in_the_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let db = SledDb::open(dir.path()).unwrap();
        let metrics = Arc::new(Metrics::default());
        let flusher = spawn(move || db.flush().map_err(|e| e.to_string()), metrics.clone(), Duration::ZERO);
        flusher.flush().await.unwrap();
        flusher.flush().await.unwrap();
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!((count(&metrics.store_flushes), count(&metrics.store_commits)), (2, 2));
    }
}
