//! User sync end to end (src/users): Clerk webhooks verified the Svix way, the durable job
//! queue, the directory, the rooms' signed profile records, outbound webhooks, reconcile.

#[path = "users/kit.rs"]
mod kit;
mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use kit::{admin, cfg, now_secs, signed, user_event, webhook, OTHER, SECRET, TOKEN};
use serde_json::Value;
use support::{http, http_with, wait_for, Server};

const T: Duration = Duration::from_secs(20);

/// Waits until the queue has nothing pending or running; returns its status.
async fn drained(addr: std::net::SocketAddr) -> Result<Value> {
    wait_for(T, "the user jobs are done", || async {
        let (_, s) = admin(addr, "GET", "/api/admin/jobs", "").await?;
        Ok((s["pending"] == 0 && s["running"] == 0).then_some(s))
    })
    .await
}

#[tokio::test]
async fn bad_signatures_and_bodies_are_refused_and_nothing_is_stored() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(cfg(dir.path())?).await?;
    let addr = server.addr;
    let body = user_event("user.created", "user_1", "Ada", "Lovelace", 1);
    let now = now_secs();
    let post = |headers: String, body: String| async move {
        let (status, text) = http_with(addr, "POST", "/webhooks/clerk", &headers, &body).await?;
        anyhow::Ok((status, text))
    };
    let plain = format!("Host: {addr}\r\nContent-Type: application/json\r\n");
    let cases = [
        ("no signature headers", plain.clone(), body.clone(), 400, "missing header"),
        (
            "no signature header",
            format!("{plain}svix-id: msg_1\r\nsvix-timestamp: {now}\r\n"),
            body.clone(),
            400,
            "svix-signature",
        ),
        ("another secret", signed(addr, "msg_1", now, &body, &[OTHER])?, body.clone(), 401, "no matching"),
        // (The exact edges, ±300 s in and 301 s out, are svix.rs's unit test with a fixed clock;
        // here the node's clock may tick between the two readings.)
        ("330 s old: a replay", signed(addr, "msg_1", now - 330, &body, &[SECRET])?, body.clone(), 401, "too old"),
        ("330 s ahead", signed(addr, "msg_1", now + 330, &body, &[SECRET])?, body.clone(), 401, "future"),
        (
            "the body changed after signing",
            signed(addr, "msg_1", now, &body, &[SECRET])?,
            body.replace("Ada", "Eve"),
            401,
            "no matching",
        ),
        (
            "not a timestamp",
            format!("{plain}svix-id: msg_1\r\nsvix-timestamp: soon\r\nsvix-signature: v1,AAAA\r\n"),
            body.clone(),
            400,
            "timestamp",
        ),
        (
            "signed, but not a Clerk event",
            signed(addr, "msg_2", now, r#"{"email":"test@example.com","username":"test_user"}"#, &[SECRET])?,
            r#"{"email":"test@example.com","username":"test_user"}"#.to_owned(),
            400,
            "not a Clerk event",
        ),
        (
            "signed, a user event without an id",
            signed(addr, "msg_3", now, r#"{"object":"event","type":"user.created","data":{}}"#, &[SECRET])?,
            r#"{"object":"event","type":"user.created","data":{}}"#.to_owned(),
            400,
            "id",
        ),
    ];
    for (what, headers, body, want, reason) in cases {
        let (status, text) = post(headers, body).await?;
        assert_eq!(status, want, "{what}: {text}");
        assert!(text.to_lowercase().contains(&reason.to_lowercase()), "{what}: the reason {text:?} lacks {reason:?}");
    }
    // A huge body: 413 before any verification.
    let huge =
        format!(r#"{{"object":"event","type":"user.created","data":{{"id":"u","pad":"{}"}}}}"#, "x".repeat(100 * 1024));
    let (status, _) = post(signed(addr, "msg_4", now, &huge, &[SECRET])?, huge).await?;
    assert_eq!(status, 413);
    // Nothing was stored: no job, no user; and msg_1 was not recorded (it is accepted now).
    let (_, s) = admin(addr, "GET", "/api/admin/jobs", "").await?;
    assert_eq!((s["pending"].as_u64(), s["running"].as_u64(), s["done"].as_u64()), (Some(0), Some(0), Some(0)), "{s}");
    assert_eq!(admin(addr, "GET", "/api/users/user_1", "").await?.0, 404);
    let (status, answer) = webhook(addr, "msg_1", &body).await?;
    assert_eq!((status, answer["queued"].as_u64()), (200, Some(2)), "{answer}");
    server.stop().await
}

#[tokio::test]
async fn rotation_unbranded_headers_and_other_event_types() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut c = cfg(dir.path())?;
    // Rotating: the node holds the new secret and the old one.
    c.users.clerk_webhook_secrets =
        vec![OTHER.parse().map_err(anyhow::Error::msg)?, SECRET.parse().map_err(anyhow::Error::msg)?];
    let server = Server::start_with(c).await?;
    let addr = server.addr;
    let now = now_secs();
    for (id, secrets) in [("msg_a", vec![SECRET]), ("msg_b", vec![OTHER]), ("msg_c", vec![OTHER, SECRET])] {
        let body = user_event("user.created", &format!("user_{id}"), "A", "B", 1);
        let (status, text) =
            http_with(addr, "POST", "/webhooks/clerk", &signed(addr, id, now, &body, &secrets)?, &body).await?;
        assert_eq!(status, 200, "{id}: {text}");
    }
    // The unbranded (Standard Webhooks) header names.
    let body = user_event("user.created", "user_std", "A", "B", 1);
    let headers = signed(addr, "msg_std", now, &body, &[SECRET])?.replace("svix-", "webhook-");
    let (status, text) = http_with(addr, "POST", "/webhooks/clerk", &headers, &body).await?;
    assert_eq!(status, 200, "{text}");
    // Other event types: acknowledged, nothing queued.
    let (status, answer) =
        webhook(addr, "msg_s", r#"{"object":"event","type":"session.created","data":{"id":"sess_1"}}"#).await?;
    assert_eq!((status, answer["ignored"].as_str()), (200, Some("session.created")), "{answer}");
    let s = drained(addr).await?;
    assert_eq!(s["done"], 8, "{s}");
    assert_eq!(admin(addr, "GET", "/api/users/user_std", "").await?.0, 200);
    server.stop().await
}

#[tokio::test]
async fn without_a_secret_the_endpoint_is_unavailable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut c = cfg(dir.path())?;
    c.users.clerk_webhook_secrets.clear();
    let server = Server::start_with(c).await?;
    let (status, answer) = webhook(server.addr, "msg_1", &user_event("user.created", "u", "A", "B", 1)).await?;
    assert_eq!(status, 503, "{answer}");
    server.stop().await
}

#[tokio::test]
async fn a_redelivered_event_runs_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(cfg(dir.path())?).await?;
    let addr = server.addr;
    let body = user_event("user.created", "user_1", "Ada", "Lovelace", 1);
    let (status, first) = webhook(addr, "msg_1", &body).await?;
    assert_eq!((status, first["queued"].as_u64()), (200, Some(2)), "{first}");
    // Svix redelivers with the same id, signed anew: answered 2xx, nothing queued.
    let again = signed(addr, "msg_1", now_secs() + 1, &body, &[SECRET])?;
    let (status, text) = http_with(addr, "POST", "/webhooks/clerk", &again, &body).await?;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("duplicate"), "{text}");
    let s = drained(addr).await?;
    assert_eq!(s["done"], 2, "one directory job and one profiles job: {s}");
    server.stop().await
}

#[tokio::test]
async fn operator_endpoints_need_the_operator_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(cfg(dir.path())?).await?;
    let addr = server.addr;
    for (method, path) in [
        ("GET", "/api/admin/jobs"),
        ("POST", "/api/admin/jobs/retry"),
        ("GET", "/api/users/user_1"),
        ("POST", "/api/admin/users/reconcile"),
    ] {
        let (status, _) = http(addr, method, path, "{}").await?;
        assert_eq!(status, 401, "{method} {path} without a token");
        let headers = format!("Host: {addr}\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}x\r\n");
        let (status, _) = http_with(addr, method, path, &headers, "{}").await?;
        assert_eq!(status, 401, "{method} {path} with a wrong token");
    }
    server.stop().await?;
    // A node without an operator token serves them to nobody, loopback or not.
    let dir = tempfile::tempdir()?;
    let mut c = cfg(dir.path())?;
    c.admin_token = None;
    let server = Server::start_with(c).await?;
    let (status, text) = admin(server.addr, "GET", "/api/admin/jobs", "").await?;
    assert_eq!(status, 401, "{text}");
    server.stop().await
}

/// A room tied to two directory users shows their signed profiles to its members; an update
/// changes them; a deletion removes the directory entry and every profile record.
#[tokio::test]
async fn profiles_follow_the_directory_and_a_deletion_leaves_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(cfg(dir.path())?).await?;
    let addr = server.addr;
    // Ada signs up before the room is made; Grace after.
    webhook(addr, "msg_1", &user_event("user.created", "user_ada", "Ada", "Lovelace", 1)).await?;
    drained(addr).await?;
    let (status, created) = admin(
        addr,
        "POST",
        "/api/rooms",
        r#"{"title":"t","language":"python","host_user":"user_ada","candidate_user":"user_grace"}"#,
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["users"]["host"], "user_ada");
    assert_eq!(created["users"]["candidate"], "user_grace");
    let room = created["room"].as_str().context("room")?.to_owned();
    let candidate = created["tokens"]["candidate"].as_str().context("token")?.to_owned();
    let observer = created["tokens"]["observer"].as_str().context("token")?.to_owned();
    webhook(addr, "msg_2", &user_event("user.created", "user_grace", "Grace", "Hopper", 1)).await?;
    drained(addr).await?;
    let profiles = |token: String| {
        let room = room.clone();
        async move {
            let (status, text) = http(addr, "GET", &format!("/api/rooms/{room}/profiles?token={token}"), "").await?;
            anyhow::Ok((status, serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))))
        }
    };
    let (status, list) = profiles(observer.clone()).await?;
    assert_eq!(status, 200, "{list}");
    let node_key = arena_core::PeerKey::from_hex(list["nodeKey"].as_str().context("nodeKey")?)?;
    let mut names = Vec::new();
    for p in list["profiles"].as_array().context("profiles")? {
        let text = p["record"].as_str().context("record")?;
        let sig: [u8; 64] = hex(p["signature"].as_str().context("signature")?)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("signature length"))?;
        node_key.verify(format!("arena-profile/1\n{text}").as_bytes(), &sig, "profile")?;
        // A record moved to another room, or edited, does not verify.
        assert!(node_key.verify(text.replace("Ada", "Eve").as_bytes(), &sig, "profile").is_err());
        let rec: Value = serde_json::from_str(text)?;
        assert_eq!(rec["room"], room.as_str());
        assert!(rec.get("primaryEmail").is_none() && !text.contains("@example.org"), "no email in {text}");
        names.push((
            rec["role"].as_str().unwrap_or_default().to_owned(),
            rec["name"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    names.sort();
    assert_eq!(
        names,
        [("candidate".to_owned(), "Grace Hopper".to_owned()), ("host".to_owned(), "Ada Lovelace".to_owned())]
    );
    // Strangers get nothing.
    assert_eq!(profiles(String::new()).await?.0, 401);
    assert_eq!(profiles("garbage".into()).await?.0, 403);
    let (status, _) =
        http(addr, "GET", &format!("/api/rooms/{}/profiles?token={candidate}", "ab".repeat(32)), "").await?;
    assert_eq!(status, 404);
    // An update; then a stale update (older updated_at) that changes nothing.
    webhook(addr, "msg_3", &user_event("user.updated", "user_ada", "Ada", "King", 5)).await?;
    webhook(addr, "msg_4", &user_event("user.updated", "user_ada", "Stale", "Name", 2)).await?;
    drained(addr).await?;
    let (_, ada) = admin(addr, "GET", "/api/users/user_ada", "").await?;
    assert_eq!(ada["displayName"], "Ada King", "{ada}");
    assert_eq!(ada["primaryEmail"], "user_ada@example.org");
    assert_eq!(ada["rooms"][0]["role"], "host");
    let (_, list) = profiles(candidate.clone()).await?;
    assert!(list.to_string().contains("Ada King"), "{list}");
    // Deleted: gone from the directory, from the room's profiles, and said so in the log.
    webhook(addr, "msg_5", &user_event("user.deleted", "user_ada", "", "", 0)).await?;
    let s = drained(addr).await?;
    assert!(s["recent"].to_string().contains("1 profile record(s) removed"), "{s}");
    assert_eq!(admin(addr, "GET", "/api/users/user_ada", "").await?.0, 404);
    let (_, list) = profiles(candidate.clone()).await?;
    let text = list.to_string();
    assert!(!text.contains("user_ada") && !text.contains("Ada"), "{text}");
    assert!(text.contains("Grace Hopper"), "{text}");
    // A late update does not bring her back.
    webhook(addr, "msg_6", &user_event("user.updated", "user_ada", "Ada", "Again", 9)).await?;
    drained(addr).await?;
    assert_eq!(admin(addr, "GET", "/api/users/user_ada", "").await?.0, 404);
    assert!(!profiles(candidate).await?.1.to_string().contains("Ada"));
    // Bad room ties are refused.
    for bad in [r#"{"host_user":"a/b"}"#, r#"{"host_user":"u","candidate_user":"u"}"#, r#"{"host_user":7}"#] {
        let (status, text) = admin(addr, "POST", "/api/rooms", bad).await?;
        assert_eq!(status, 400, "{bad}: {text}");
    }
    server.stop().await
}

fn hex(s: &str) -> Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).context("odd hex")?, 16).context("hex"))
        .collect()
}

#[path = "users/jobs.rs"]
mod jobs;
