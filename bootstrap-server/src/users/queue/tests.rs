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

#[test]
fn drop_where_removes_waiting_and_dead_jobs_but_not_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, q) = open(dir.path(), 1);
    q.enqueue("msg_1", &[job("a"), job("b"), job("c"), job("a")], 10).unwrap();
    // One "a" runs, one "a" is dead, "b" and "c" wait.
    let first = claimed(&q, 20);
    assert_eq!(first.kind, "a");
    let (b, c, a2) = (claimed(&q, 20), claimed(&q, 20), claimed(&q, 20));
    assert_eq!(q.fail(a2.id, "down", 21).unwrap(), Failed::Dead);
    for j in [&b, &c] {
        assert!(matches!(q.fail(j.id, "down", 21).unwrap(), Failed::Dead));
    }
    q.retry_dead(Some(b.id), 22).unwrap();
    q.retry_dead(Some(c.id), 22).unwrap();
    let dropped = q.drop_where(&|j: &Job| j.kind == "a" || j.kind == "b").unwrap();
    assert_eq!(dropped, 2, "the dead a and the waiting b");
    let s = q.status().unwrap();
    assert_eq!((s.pending, s.running, s.dead.len()), (1, 1, 0));
    // The running one finishes normally; c is what is left to claim.
    q.complete(first.id, "ok", 23).unwrap();
    assert_eq!(claimed(&q, 30).kind, "c");
    assert!(matches!(q.claim(30).unwrap(), Claim::Wait(None)));
    assert!(q.job(a2.id).unwrap().is_none() && q.job(b.id).unwrap().is_none());
}

#[test]
fn forgotten_event_keys_enqueue_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, q) = open(dir.path(), 3);
    assert!(q.enqueue("old", &[], 10).unwrap());
    assert!(q.enqueue("new", &[], 100).unwrap());
    assert_eq!(q.forget_keys_before(50).unwrap(), 1);
    assert!(q.enqueue("old", &[], 200).unwrap(), "forgotten: a new event");
    assert!(!q.enqueue("new", &[], 200).unwrap(), "still remembered");
    assert_eq!(q.forget_keys_before(50).unwrap(), 0);
}

#[test]
fn the_job_log_keeps_its_last_lines_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let run = |q: &SledQueue, from: u64, n: u64| {
        for i in from..from + n {
            q.enqueue(&format!("msg_{i}"), &[job("a")], i).unwrap();
            let j = claimed(q, i);
            q.complete(j.id, &format!("note {i}"), i).unwrap();
        }
    };
    {
        let (_db, q) = open(dir.path(), 3);
        run(&q, 0, LOG_LINES as u64 + 30);
        assert_eq!(q.log.len(), LOG_LINES);
    }
    let (_db, q) = open(dir.path(), 3);
    run(&q, 1000, 10);
    assert_eq!(q.log.len(), LOG_LINES);
    let s = q.status().unwrap();
    assert_eq!(s.recent[0].note, "note 1009", "newest first");
    assert_eq!(s.done, LOG_LINES as u64 + 40);
}

/// A crash between a job's record and its ready-index entry (a failure's retry written, its
/// index entry not): `recover` writes the entry, and the job runs.
#[test]
fn recover_repairs_a_ready_job_without_its_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, q) = open(dir.path(), 3);
    q.enqueue("msg_1", &[job("a")], 0).unwrap();
    let mut j = claimed(&q, 0);
    // What `fail` writes first; then "the crash".
    j.state = JobState::Ready;
    j.due_ms = 7;
    q.put(&j).unwrap();
    assert!(matches!(q.claim(100).unwrap(), Claim::Wait(None)), "no index entry yet");
    assert_eq!(q.recover(100).unwrap(), 0, "nothing was running");
    let again = claimed(&q, 100);
    assert_eq!((again.id, again.attempts), (j.id, 2));
    // A stale index entry (the job moved on) is dropped, not claimed twice.
    q.ready.insert(ready_key(1, j.id), &[]).unwrap();
    assert!(matches!(q.claim(100).unwrap(), Claim::Wait(None)));
}
