//! `POST /api/rooms/{room}/analyze`: the consensus-gated analyzer, with a real node and real
//! members casting signed votes (the offline analyzer: no model is configured in tests).

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use arena_core::sync::wire::Wire;
use arena_core::vote::sign_vote;
use arena_core::Identity;
use serde_json::Value;
use support::{create_room, http, ArenaPeer, CreatedRoom, Server};

const CODE: &str = "def total(xs):\n    unused = 1\n    s = 0\n    for x in xs:\n        s += x\n    return s\n";

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn analyze(addr: std::net::SocketAddr, room: &str, token: Option<&str>) -> Result<(u16, Value)> {
    let path = match token {
        Some(t) => format!("/api/rooms/{room}/analyze?token={t}"),
        None => format!("/api/rooms/{room}/analyze"),
    };
    let (status, body) = http(addr, "POST", &path, "").await?;
    Ok((status, serde_json::from_str(&body).with_context(|| format!("body {body:?}"))?))
}

async fn info(addr: std::net::SocketAddr, r: &CreatedRoom) -> Result<Value> {
    let (status, body) = http(addr, "GET", &format!("/api/rooms/{}?token={}", r.room, r.host), "").await?;
    ensure!(status == 200, "info: {status} {body}");
    Ok(serde_json::from_str(&body)?)
}

/// Waits (pumping the peers) until the node's info satisfies `ok`.
async fn until_info(
    addr: std::net::SocketAddr,
    r: &CreatedRoom,
    peers: &mut [&mut ArenaPeer],
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = info(addr, r).await?;
        if ok(&v) {
            return Ok(v);
        }
        ensure!(tokio::time::Instant::now() < deadline, "{what}: the node's info is {v}");
        for p in peers.iter_mut() {
            p.pump(Duration::from_millis(20)).await?;
        }
    }
}

async fn vote(peer: &mut ArenaPeer, enabled: bool) -> Result<Wire> {
    let env = peer.room_mut().vote(enabled, now_ms())?.context("a vote is an edit")?;
    let wire = Wire::Envelopes(vec![env]);
    peer.send(vec![wire.clone()]).await?;
    Ok(wire)
}

/// An envelope by `peer`'s key setting `votes[key]` to `vote`, made on a copy of its document:
/// what a modified client would send (its own replica's write rules are bypassed).
fn forged_vote(peer: &ArenaPeer, key: &str, vote: &arena_core::records::VoteRecord) -> Result<Wire> {
    let r = peer.room();
    let me = r.identity().clone();
    let copy = arena_core::RoomDoc::new(me.public().client_id(0));
    copy.apply_v1(&r.doc().encode_state())?;
    let before = yrs::ReadTxn::state_vector(&yrs::Transact::transact(copy.raw_yrs_doc()));
    {
        let d = copy.raw_yrs_doc();
        let votes = d.get_or_insert_map("votes");
        yrs::Map::insert(&votes, &mut yrs::Transact::transact_mut(d), key, serde_json::to_string(vote)?);
    }
    let update = yrs::ReadTxn::encode_state_as_update_v1(&yrs::Transact::transact(copy.raw_yrs_doc()), &before);
    let head = r.ledger().head(&me.public());
    Ok(Wire::Envelopes(vec![arena_core::Envelope::seal(r.id(), &me, head.next_seq, head.last_hash, 0, update)]))
}

fn satisfied(v: &Value, role: &str) -> bool {
    v["consensus"]["satisfied"].as_array().is_some_and(|a| a.iter().any(|r| r == role))
}

#[tokio::test]
async fn the_analyzer_runs_only_on_both_votes_for_the_host_once_per_round() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let addr = server.addr;
    let r = create_room(addr).await?;
    let mut host = ArenaPeer::connect(addr, &r.room, &r.host, "host").await?;
    let mut cand = ArenaPeer::connect(addr, &r.room, &r.candidate, "cand").await?;
    host.type_text(0, CODE).await?;
    until_info(addr, &r, &mut [&mut host, &mut cand], "both joined, code typed", |v| {
        v["members"].as_array().is_some_and(|m| m.len() >= 3) && v["codeLength"].as_u64() == Some(CODE.len() as u64)
    })
    .await?;

    // Who may not ask at all.
    assert_eq!(analyze(addr, &r.room, None).await?.0, 401, "no token");
    assert_eq!(analyze(addr, &r.room, Some("garbage")).await?.0, 403, "a bad token");
    assert_eq!(analyze(addr, &r.room, Some(&r.observer)).await?.0, 403, "an observer");
    assert_eq!(analyze(addr, &r.room, Some(&r.candidate)).await?.0, 403, "the candidate");

    // No votes: refused, naming both.
    let (status, body) = analyze(addr, &r.room, Some(&r.host)).await?;
    assert_eq!(status, 409, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("host") && msg.contains("cand"), "{msg}");

    // An observer votes (it does not count), and forges the host's vote (refused, or ignored).
    let mut obs = ArenaPeer::connect(addr, &r.room, &r.observer, "obs").await?;
    let _ = vote(&mut obs, true).await;
    let host_hex = Identity::from_passphrase("host").public().to_hex();
    let room_id = host.room().id();
    let forged = sign_vote(&room_id, &Identity::from_passphrase("obs"), 0, true);
    obs.send(vec![forged_vote(&obs, &host_hex, &forged)?]).await?;
    // The host votes: only the candidate is missing.
    vote(&mut host, true).await?;
    until_info(addr, &r, &mut [&mut host, &mut cand], "the host's vote", |v| satisfied(v, "host")).await?;
    let (status, body) = analyze(addr, &r.room, Some(&r.host)).await?;
    assert_eq!(status, 409, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("cand") && !msg.contains("host ("), "{msg}");

    // The candidate votes: consensus; the candidate still may not trigger it.
    let cand_round0 = vote(&mut cand, true).await?;
    until_info(addr, &r, &mut [&mut host, &mut cand], "consensus", |v| v["consensus"]["enabled"] == true).await?;
    assert_eq!(analyze(addr, &r.room, Some(&r.candidate)).await?.0, 403, "the candidate, with both votes");

    // The host floods: exactly one analysis answers the round.
    let asks: Vec<_> = (0..6)
        .map(|_| {
            let (room, token) = (r.room.clone(), r.host.clone());
            tokio::spawn(async move { analyze(addr, &room, Some(&token)).await })
        })
        .collect();
    let mut ok = Vec::new();
    for a in asks {
        let (status, body) = a.await??;
        match status {
            200 => ok.push(body),
            409 | 429 => {}
            s => anyhow::bail!("unexpected {s}: {body}"),
        }
    }
    assert_eq!(ok.len(), 1, "exactly one analysis per round: {ok:?}");
    let result = &ok[0];
    assert_eq!(result["round"], 0);
    assert_eq!(result["backend"], "offline");
    assert_eq!(result["model"], "");
    assert!(!result["summary"].as_str().unwrap_or_default().is_empty(), "{result}");
    let findings = result["findings"].as_array().context("findings")?;
    assert!(
        findings.iter().any(|f| f["lineStart"] == 2 && f["rule"].as_str().is_some_and(|r| r.contains("unused"))),
        "{result}"
    );

    // In the document: the candidate's replica sees the record, written by the node; the round moved on.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cand.room().doc().analysis().is_empty() {
        ensure!(tokio::time::Instant::now() < deadline, "the candidate never saw the analysis");
        cand.pump(Duration::from_millis(20)).await?;
    }
    let rec = &cand.room().doc().analysis()[0];
    assert_eq!((rec.round, rec.backend.as_str()), (0, "offline"));
    let summary: Value = serde_json::from_str(&rec.findings[0])?;
    assert_eq!(summary["kind"], "summary");
    let first: Value = serde_json::from_str(rec.findings.get(1).context("a finding")?)?;
    assert_eq!(first["kind"], "finding");
    assert!(first["lineStart"].as_u64().is_some() && first["severity"].is_string(), "{first}");
    assert_eq!(cand.room().analyzer_round(), 1);
    let v = until_info(addr, &r, &mut [&mut host, &mut cand], "round 1", |v| v["consensus"]["round"] == 1).await?;
    assert_eq!(v["consensus"]["enabled"], false, "{v}");

    // Old votes do not count: the candidate votes for round 1; its round-0 envelope is
    // replayed, and the host writes its round-0 vote record again (then types, so the node
    // has seen the vote once it has the text: one socket, in order).
    vote(&mut cand, true).await?;
    until_info(addr, &r, &mut [&mut host, &mut cand], "the candidate's round-1 vote", |v| satisfied(v, "candidate"))
        .await?;
    cand.send(vec![cand_round0]).await?;
    let old = sign_vote(&room_id, &Identity::from_passphrase("host"), 0, true);
    let env = host.room_mut().edit(now_ms(), |e| e.set_vote(&host_hex, &old))?.context("edit")?;
    host.send(vec![Wire::Envelopes(vec![env])]).await?;
    host.type_text(0, "# replay\n").await?;
    let len = (CODE.len() + "# replay\n".len()) as u64;
    until_info(addr, &r, &mut [&mut host, &mut cand], "the replay", |v| v["codeLength"].as_u64() == Some(len)).await?;
    let (status, body) = analyze(addr, &r.room, Some(&r.host)).await?;
    assert_eq!(status, 409, "a replayed round-0 vote counted: {body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("round 1") && msg.contains("host (") && !msg.contains("cand ("), "{msg}");

    // The candidate forges the host's round-1 vote: it does not count.
    let forged = sign_vote(&room_id, &Identity::from_passphrase("cand"), 1, true);
    cand.send(vec![forged_vote(&cand, &host_hex, &forged)?]).await?;
    // Then something the node takes (the same sequence number: the forged envelope is not in
    // the candidate's chain), so the node has seen the forgery once it has the text.
    cand.type_text(0, "# forged\n").await?;
    let len = (CODE.len() + "# replay\n".len() + "# forged\n".len()) as u64;
    until_info(addr, &r, &mut [&mut host, &mut cand], "after the forgery", |v| v["codeLength"].as_u64() == Some(len))
        .await?;
    let (status, body) = analyze(addr, &r.room, Some(&r.host)).await?;
    assert_eq!(status, 409, "a forged vote counted: {body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("host ("), "{body}");

    // The host's own round-1 vote: the next analysis answers round 1.
    vote(&mut host, true).await?;
    until_info(addr, &r, &mut [&mut host], "round-1 consensus", |v| v["consensus"]["enabled"] == true).await?;
    let (status, body) = analyze(addr, &r.room, Some(&r.host)).await?;
    assert_eq!((status, body["round"].as_u64()), (200, Some(1)), "{body}");
    server.stop().await?;
    Ok(())
}
