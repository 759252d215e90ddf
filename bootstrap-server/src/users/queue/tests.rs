#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

use super::*;

fn job(kind: &str) -> NewJob {
    NewJob { kind: kind.into(), payload: serde_json::json!({ "k": kind }) }
}

fn open(dir: &std::path::Path, max_attempts: u32) -> (sled::Db, SledQueue) {
    let db = sled::open(dir).unwrap();
    let policy = RetryPolicy { max_attempts, base_ms: 1000, max_ms: 60_000 };
    let q = SledQueue::open(&db, "q", policy).unwrap();
    (db, q)
}

fn claimed(q: &SledQueue, now: u64) -> Job {
    match q.claim(now).unwrap() {
        Claim::Job(j) => j,
        Claim::Wait(w) => panic!("nothing to claim at {now} (next {w:?})"),
    }
}

#[test]
fn an_event_key_enqueues_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, q) = open(dir.path(), 3);
    assert!(q.enqueue("msg_1", &[job("a"), job("b")], 10).unwrap());
    assert!(!q.enqueue("msg_1", &[job("a"), job("b")], 11).unwrap());
    assert!(q.enqueue("msg_2", &[], 12).unwrap());
    assert_eq!(q.status().unwrap().pending, 2);
    // In the order enqueued.
    let (a, b) = (claimed(&q, 20), claimed(&q, 20));
    assert_eq!((a.kind.as_str(), b.kind.as_str(), a.attempts), ("a", "b", 1));
    assert!(matches!(q.claim(20).unwrap(), Claim::Wait(None)));
    q.complete(a.id, "did a", 21).unwrap();
    let s = q.status().unwrap();
    assert_eq!((s.pending, s.running, s.done), (0, 1, 1));
    assert_eq!(s.recent[0].note, "did a");
}

#[test]
fn failures_back_off_then_go_dead_then_an_operator_retries() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, q) = open(dir.path(), 3);
    q.enqueue("msg_1", &[job("a")], 0).unwrap();
    let mut now = 0;
    let mut waits = Vec::new();
    for attempt in 1..=2 {
        let j = claimed(&q, now);
        assert_eq!(j.attempts, attempt);
        let Failed::Retry(due) = q.fail(j.id, "sink down", now).unwrap() else { panic!("dead too early") };
        waits.push(due - now);
        // Not before it is due.
        assert!(matches!(q.claim(due - 1).unwrap(), Claim::Wait(Some(d)) if d == due));
        now = due;
    }
    // Exponential with jitter: the n-th wait is within [base·2ⁿ⁻¹/2, base·2ⁿ⁻¹].
    assert!((500..=1000).contains(&waits[0]), "{waits:?}");
    assert!((1000..=2000).contains(&waits[1]), "{waits:?}");
    let j = claimed(&q, now);
    assert_eq!(q.fail(j.id, "still down", now).unwrap(), Failed::Dead);
    assert!(matches!(q.claim(u64::MAX).unwrap(), Claim::Wait(None)));
    let s = q.status().unwrap();
    assert_eq!(s.dead.len(), 1);
    assert_eq!(s.dead[0]["lastError"], "still down");
    assert_eq!(s.dead[0]["attempts"], 3);
    assert_eq!(q.retry_dead(None, now).unwrap(), 1);
    let j = claimed(&q, now);
    assert_eq!(j.attempts, 1, "attempts start over");
    assert_eq!(q.status().unwrap().dead.len(), 0);
    // A retry of a job that is not dead does nothing.
    assert_eq!(q.retry_dead(Some(j.id), now).unwrap(), 0);
}

#[test]
fn claimed_jobs_are_ready_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let (db, q) = open(dir.path(), 3);
        q.enqueue("msg_1", &[job("a")], 0).unwrap();
        let j = claimed(&q, 0);
        q.flush().unwrap();
        drop(q);
        drop(db);
        j.id
    };
    // sled lets go of its lock a moment after the last handle.
    let (_db, q) = loop {
        match sled::open(dir.path()) {
            Ok(db) => {
                let q = SledQueue::open(&db, "q", RetryPolicy { max_attempts: 3, base_ms: 1, max_ms: 1 }).unwrap();
                break (db, q);
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    assert_eq!(q.status().unwrap().running, 1);
    assert!(matches!(q.claim(5).unwrap(), Claim::Wait(None)));
    assert_eq!(q.recover(5).unwrap(), 1);
    let j = claimed(&q, 5);
    assert_eq!((j.id, j.attempts), (id, 2));
    // The event key is still recorded: a redelivery after the restart does nothing.
    assert!(!q.enqueue("msg_1", &[job("a")], 6).unwrap());
}
