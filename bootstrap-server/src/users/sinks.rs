//! The sinks a user event feeds, each a job of its own (so one that is down is retried
//! alone): the directory, the rooms' profile records, each outbound webhook. Every sink is
//! idempotent: a job runs at least once.

use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::users::clerk::{Change, User};
use crate::users::directory::Upserted;
use crate::users::queue::{Job, NewJob};
use crate::users::{profiles, svix, Users};

/// Job kinds.
pub(crate) const DIRECTORY: &str = "directory";
pub(crate) const PROFILES: &str = "profiles";
pub(crate) const WEBHOOK: &str = "webhook";

/// The jobs of a user event of type `kind` (`user.created`, ...): the directory, the
/// profiles, and one per outbound URL when `outbound`.
pub(crate) fn jobs_for(kind: &str, change: &Change, urls: &[String], outbound: bool) -> Vec<NewJob> {
    let payload = |url: Option<&str>| {
        let mut p = json!({ "type": kind, "change": change });
        if let Some(u) = url {
            p["url"] = json!(u);
        }
        p
    };
    let mut jobs = vec![
        NewJob { kind: DIRECTORY.into(), payload: payload(None) },
        NewJob { kind: PROFILES.into(), payload: payload(None) },
    ];
    if outbound {
        jobs.extend(urls.iter().map(|u| NewJob { kind: WEBHOOK.into(), payload: payload(Some(u)) }));
    }
    jobs
}

/// Whether job `j` carries user `id`'s profile data (an upsert of that user).
fn carries_user(j: &Job, id: &str) -> bool {
    j.payload.pointer("/change/upsert/id").and_then(Value::as_str) == Some(id)
}

/// Runs a job; `Ok` is the job log's note, `Err` why it failed (it is retried).
pub(crate) async fn run(users: &Users, job: &Job) -> Result<String, String> {
    let kind = job.payload.get("type").and_then(Value::as_str).unwrap_or("user event").to_owned();
    let change: Change = serde_json::from_value(job.payload.get("change").cloned().unwrap_or(Value::Null))
        .map_err(|e| format!("payload does not decode: {e}"))?;
    let e = |e: crate::users::queue::QueueError| e.to_string();
    match (job.kind.as_str(), &change) {
        (DIRECTORY, Change::Upsert(user)) => Ok(match users.directory.upsert(user).map_err(e)? {
            Upserted::Written => format!("{kind} {}: directory entry written", user.id),
            Upserted::Stale => format!("{kind} {}: directory holds a newer version; skipped", user.id),
            Upserted::Deleted => format!("{kind} {}: the user was deleted; skipped", user.id),
        }),
        (DIRECTORY, Change::Delete(id)) => {
            let had = users.directory.delete(id, now_ms()).map_err(e)?;
            // Waiting or dead jobs that still carry the user's data: dropped (their writes
            // would be refused after the deletion anyway; an operator's retry must not
            // resurrect a name or an email).
            let dropped = users.queue.drop_where(&|j: &Job| carries_user(j, id)).map_err(e)?;
            tracing::info!(user = %id, had_entry = had, dropped_jobs = dropped, "user deleted: directory entry removed");
            Ok(format!(
                "{kind} {id}: directory entry {}; {dropped} queued job(s) with the user's data dropped",
                if had { "removed" } else { "was absent" }
            ))
        }
        (PROFILES, Change::Upsert(user)) => {
            if users.directory.was_deleted(&user.id).map_err(e)? {
                return Ok(format!("{kind} {}: the user was deleted; no profile written", user.id));
            }
            if !users.profiles.take_version(&user.id, user.updated_at).map_err(e)? {
                return Ok(format!("{kind} {}: profiles hold a newer version; skipped", user.id));
            }
            let rooms = write_profiles(users, user).map_err(e)?;
            Ok(format!("{kind} {}: profile written in {rooms} room(s)", user.id))
        }
        (PROFILES, Change::Delete(id)) => {
            let (records, rooms) = users.profiles.remove_user(id).map_err(e)?;
            tracing::info!(user = %id, records, rooms, "user deleted: profile records removed");
            Ok(format!("{kind} {id}: {records} profile record(s) removed from {rooms} room(s)"))
        }
        (WEBHOOK, _) => {
            let url = job.payload.get("url").and_then(Value::as_str).ok_or("webhook job without a url")?;
            deliver(users, job.id, url, &kind, &change).await
        }
        (other, _) => Err(format!("unknown job kind {other:?}")),
    }
}

/// Signs and stores `user`'s record in every room they are tied to; returns how many.
pub(crate) fn write_profiles(users: &Users, user: &User) -> Result<usize, crate::users::queue::QueueError> {
    let rooms = users.profiles.rooms_of(&user.id)?;
    let now = now_ms();
    for (room, role) in &rooms {
        users.profiles.put(room, &user.id, &profiles::sign(&users.identity, room, role, user, now))?;
    }
    Ok(rooms.len())
}

/// Posts the change to `url`, signed the Svix way (the message id stays the same on every
/// retry of the job, so the receiver can drop repeats).
async fn deliver(users: &Users, job: u64, url: &str, kind: &str, change: &Change) -> Result<String, String> {
    let out = users.outbound.as_ref().ok_or("outbound webhooks are off (no --user-webhook-secret)")?;
    let data = match change {
        Change::Upsert(u) => json!(u),
        Change::Delete(id) => json!({ "id": id, "deleted": true }),
    };
    let body = json!({ "object": "event", "type": kind, "data": data }).to_string();
    let id = format!("arena_job_{job}");
    let ts = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
    let signature = svix::sign(&out.secret, &id, ts, body.as_bytes());
    let resp = out
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("svix-id", &id)
        .header("svix-timestamp", ts.to_string())
        .header("svix-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        Ok(format!("{kind}: delivered to {url} ({status})"))
    } else {
        Err(format!("{url} answered {status}"))
    }
}
