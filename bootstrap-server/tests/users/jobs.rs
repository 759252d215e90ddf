//! The queue's durability and the sinks that fail: outbound webhooks to a local receiver,
//! the dead-letter list, a kill -9 with a job in flight, reconcile from an export.

use anyhow::{Context, Result};
use arena_bootstrap::users::svix;
use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::kit::{admin, cfg, user_event, webhook, Got, Receiver, Reply, OTHER, SECRET, TOKEN};
use crate::support::{wait_for, Server};
use crate::{drained, T};

/// The receiver's requests checked as a Svix consumer checks them, with the outbound secret.
fn verified(got: &Got) -> Result<Value> {
    let h = svix::Headers::read(|name| got.header(name))?;
    let secret: svix::Secret = OTHER.parse().map_err(anyhow::Error::msg)?;
    let now = i64::try_from(arena_testkit::now_ms() / 1000)?;
    svix::verify(&[secret], &h, got.body.as_bytes(), now)?;
    Ok(serde_json::from_str(&got.body)?)
}

fn outbound(c: &mut arena_bootstrap::Config, url: String) -> Result<()> {
    c.users.user_webhook_urls = vec![url];
    c.users.user_webhook_secret = Some(OTHER.parse().map_err(anyhow::Error::msg)?);
    Ok(())
}

/// A receiver failing twice then answering `later`, and a node sending it every event with
/// two attempts per job.
async fn failing_twice_then(later: Reply) -> Result<(Receiver, tempfile::TempDir, Server)> {
    let target = Receiver::start(vec![Reply::Status(500), Reply::Status(500)], later).await?;
    let dir = tempfile::tempdir()?;
    let mut c = cfg(dir.path())?;
    outbound(&mut c, target.url())?;
    c.users.user_job_max_attempts = 2;
    let server = Server::start_with(c).await?;
    Ok((target, dir, server))
}

#[tokio::test]
async fn a_sink_down_three_times_gets_the_event_at_the_fourth() -> Result<()> {
    let target =
        Receiver::start(vec![Reply::Status(500), Reply::Status(500), Reply::Status(503)], Reply::Status(200)).await?;
    let dir = tempfile::tempdir()?;
    let mut c = cfg(dir.path())?;
    outbound(&mut c, target.url())?;
    let server = Server::start_with(c).await?;
    let addr = server.addr;
    // Answered 2xx at once, though the sink is down: the event is durably queued.
    let (status, answer) = webhook(addr, "msg_1", &user_event("user.created", "user_1", "Ada", "Lovelace", 1)).await?;
    assert_eq!((status, answer["queued"].as_u64()), (200, Some(3)), "{answer}");
    let s = drained(addr).await?;
    assert_eq!((s["done"].as_u64(), s["dead"].as_array().map(Vec::len)), (Some(3), Some(0)), "{s}");
    let got = target.requests();
    assert_eq!(got.len(), 4, "three failures, then the delivery");
    // Every attempt the same message (the receiver can drop repeats), each signed.
    let ids: Vec<_> = got.iter().map(|g| g.header("svix-id").unwrap_or_default().to_owned()).collect();
    assert!(ids.iter().all(|i| i == &ids[0] && !i.is_empty()), "{ids:?}");
    for g in &got {
        let event = verified(g)?;
        assert_eq!(event["type"], "user.created");
        assert_eq!(event["data"]["displayName"], "Ada Lovelace");
    }
    assert!(s["recent"].to_string().contains("delivered to"), "{s}");
    server.stop().await
}

#[tokio::test]
async fn the_dead_letter_list_and_the_operators_retry() -> Result<()> {
    let (target, _dir, server) = failing_twice_then(Reply::Status(200)).await?;
    let addr = server.addr;
    webhook(addr, "msg_1", &user_event("user.deleted", "user_1", "", "", 0)).await?;
    let s = drained(addr).await?;
    let dead = s["dead"].as_array().context("dead")?;
    assert_eq!(dead.len(), 1, "{s}");
    assert_eq!((dead[0]["kind"].as_str(), dead[0]["attempts"].as_u64()), (Some("webhook"), Some(2)), "{s}");
    assert!(dead[0]["lastError"].as_str().unwrap_or_default().contains("500"), "{s}");
    assert!(dead[0].get("payload").is_none(), "the list shows no payload: {s}");
    let (status, r) = admin(addr, "POST", "/api/admin/jobs/retry", "{}").await?;
    assert_eq!((status, r["retried"].as_u64()), (200, Some(1)), "{r}");
    let s = drained(addr).await?;
    assert_eq!(s["dead"].as_array().map(Vec::len), Some(0), "{s}");
    let got = target.requests();
    assert_eq!(got.len(), 3);
    assert_eq!(verified(&got[2])?["data"]["deleted"], true);
    let (status, r) = admin(addr, "POST", "/api/admin/jobs/retry", r#"{"id":"x"}"#).await?;
    assert_eq!(status, 400, "{r}");
    server.stop().await
}

/// A user's created event whose outbound delivery died keeps the user's data on the
/// dead-letter list only until the user is deleted: the deletion drops it, so an operator's
/// retry cannot send a deleted user's name and email anywhere.
#[tokio::test]
async fn a_deletion_drops_dead_jobs_that_carry_the_user() -> Result<()> {
    let (target, _dir, server) = failing_twice_then(Reply::Status(500)).await?;
    let addr = server.addr;
    webhook(addr, "msg_1", &user_event("user.created", "user_1", "Ada", "Lovelace", 1)).await?;
    webhook(addr, "msg_2", &user_event("user.created", "user_2", "Grace", "Hopper", 1)).await?;
    let s = drained(addr).await?;
    assert_eq!(s["dead"].as_array().map(Vec::len), Some(2), "{s}");
    webhook(addr, "msg_3", &user_event("user.deleted", "user_1", "", "", 0)).await?;
    let s = drained(addr).await?;
    assert!(s["recent"].to_string().contains("1 queued job(s) with the user's data dropped"), "{s}");
    // user_2's dead job stays; the deletion's own outbound job died too (the receiver is down).
    let dead = s["dead"].as_array().context("dead")?;
    assert_eq!(dead.len(), 2, "{s}");
    assert!(dead.iter().all(|d| d["key"] != "msg_1"), "{s}");
    // And a retry of everything dead sends nothing about her.
    let before = target.requests().len();
    let (status, r) = admin(addr, "POST", "/api/admin/jobs/retry", "{}").await?;
    assert_eq!((status, r["retried"].as_u64()), (200, Some(2)), "{r}");
    drained(addr).await?;
    let after = target.requests();
    assert!(after.len() > before, "the retry delivered something");
    assert!(after[before..].iter().all(|g| !g.body.contains("Lovelace")), "a deleted user's data was sent");
    assert!(after[before..].iter().any(|g| g.body.contains("Hopper")), "the other user's event was retried");
    server.stop().await
}

/// The real binary, its sink hanging, killed with SIGKILL while the job is in flight;
/// restarted on the same data dir, it runs the job again and delivers.
#[tokio::test]
async fn a_job_in_flight_at_a_kill_9_runs_after_the_restart() -> Result<()> {
    // Its first request hangs; the ones after are answered 200.
    let target = Receiver::start(vec![Reply::Hang], Reply::Status(200)).await?;
    let dir = tempfile::tempdir()?;
    let start = |url: String| {
        let dir = dir.path().to_path_buf();
        async move {
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_arena-bootstrap"))
                .args(["--http-addr", "127.0.0.1:0", "--no-p2p", "--data-dir"])
                .arg(&dir)
                .env("RUST_LOG", "warn")
                .env("ARENA_ADMIN_TOKEN", TOKEN)
                .env("ARENA_CLERK_WEBHOOK_SECRET", SECRET)
                .env("ARENA_USER_WEBHOOK_URLS", url)
                .env("ARENA_USER_WEBHOOK_SECRET", OTHER)
                .env("ARENA_USER_WEBHOOK_TIMEOUT_MS", "600000")
                .env("ARENA_USER_JOB_BACKOFF_MS", "20")
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
            let line = tokio::time::timeout(T, lines.next_line()).await??.context("no output")?;
            let addr: std::net::SocketAddr =
                line.strip_prefix("listening on http://").context("first line")?.parse()?;
            anyhow::Ok((child, addr))
        }
    };
    let (mut child, addr) = start(target.url()).await?;
    let (status, _) = webhook(addr, "msg_1", &user_event("user.created", "user_1", "Ada", "Lovelace", 1)).await?;
    assert_eq!(status, 200);
    // The delivery is in flight (the receiver has it and does not answer).
    wait_for(T, "the delivery reaches the receiver", || async { Ok((!target.requests().is_empty()).then_some(())) })
        .await?;
    let (_, s) = admin(addr, "GET", "/api/admin/jobs", "").await?;
    assert_eq!(s["running"], 1, "{s}");
    child.start_kill()?; // SIGKILL
    child.wait().await?;
    let (mut child, addr) = start(target.url()).await?;
    let s = drained(addr).await?;
    assert_eq!(s["dead"].as_array().map(Vec::len), Some(0), "{s}");
    assert!(s["recent"].to_string().contains("delivered to"), "{s}");
    let got = target.requests();
    assert_eq!(got.len(), 2, "the hung attempt, then the one after the restart");
    assert_eq!(got[0].header("svix-id"), got[1].header("svix-id"));
    assert_eq!(verified(&got[1])?["data"]["displayName"], "Ada Lovelace");
    let (_, user) = admin(addr, "GET", "/api/users/user_1", "").await?;
    assert_eq!(user["displayName"], "Ada Lovelace", "{user}");
    // A redelivery of the event after the restart still does nothing.
    let (_, again) = webhook(addr, "msg_1", &user_event("user.created", "user_1", "Ada", "Lovelace", 1)).await?;
    assert_eq!(again["duplicate"], true, "{again}");
    child.start_kill()?;
    child.wait().await?;
    Ok(())
}

#[tokio::test]
async fn reconcile_from_clerks_export() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(cfg(dir.path())?).await?;
    let addr = server.addr;
    webhook(addr, "msg_1", &user_event("user.created", "user_gone", "Gone", "User", 1)).await?;
    webhook(addr, "msg_2", &user_event("user.created", "user_ada", "Ada", "Lovelace", 1)).await?;
    drained(addr).await?;
    let csv = dir.path().join("export.csv");
    std::fs::write(
        &csv,
        "id,first_name,last_name,username,primary_email_address,primary_phone_number\n\
         user_ada,Ada,Lovelace,,user_ada@example.org,\n\
         user_new,,,newbie,\"new@example.org\",\n",
    )?;
    let cli = |file: &std::path::Path, token: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_arena-bootstrap"))
            .args(["users", "reconcile", "--from"])
            .arg(file)
            .args(["--node", &format!("http://{addr}"), "--admin-token", token])
            .env_remove("ARENA_ADMIN_TOKEN")
            .output()
    };
    let out = cli(&csv, TOKEN).await?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        (answer["upserts"].as_u64(), answer["deletes"].as_u64(), answer["unchanged"].as_u64()),
        (Some(1), Some(1), Some(1)),
        "{answer}"
    );
    drained(addr).await?;
    assert_eq!(admin(addr, "GET", "/api/users/user_gone", "").await?.0, 404);
    let (_, new) = admin(addr, "GET", "/api/users/user_new", "").await?;
    assert_eq!(
        (new["displayName"].as_str(), new["primaryEmail"].as_str()),
        (Some("newbie"), Some("new@example.org")),
        "{new}"
    );
    // The avatar the webhook gave is kept (the CSV has none).
    let (_, ada) = admin(addr, "GET", "/api/users/user_ada", "").await?;
    assert!(ada["avatarUrl"].as_str().is_some(), "{ada}");
    // Bad files and a wrong token: a clear error, a failed exit, nothing changed.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "first_name\nAda\n")?;
    let out = cli(&bad, TOKEN).await?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no `id` column"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&csv, "wrong-token-0123456789").await?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
    server.stop().await
}
