//! A headless recorder: two peers type, vote and restore; the recording replays the exact
//! code at every recorded instant, exports it, and `verify` finds any flipped byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use anyhow::{Context, Result};
use arena_core::records::VersionCause;
use arena_core::{Cut, Identity, MemoryStore, Role, Room, RoomConfig, Store};
use arena_node::recording::{Record, RecordingFile};
use arena_node::replay::{code_at, export_html, export_json, replay_codes, timeline, verify, Pins};
use arena_node::{JoinSpec, NodeEvent};
use support::{config, converged, gossip_ready, mesh, wait_for, Peer, TestRoom, TIMEOUT};
use yrs::updates::decoder::Decode;

/// Waits until the recorder's code equals `a`'s.
async fn recorded(a: &Peer, r: &Peer, room: &TestRoom) -> Result<()> {
    let want = a.handle.code(room.id).await?;
    wait_for(TIMEOUT, "recorder caught up", || async { Ok((r.handle.code(room.id).await? == want).then_some(())) })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_reproduces_every_instant_and_detects_tampering() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.arena");
    let room = TestRoom::new("recorded");
    let a = Peer::start(config(Identity::from_passphrase("rec-host"), None, false)).await?;
    let b = Peer::start(config(Identity::from_passphrase("rec-cand"), None, false)).await?;
    let r = Peer::start(config(Identity::from_passphrase("rec-recorder"), None, false)).await?;
    mesh(&[&a, &b, &r]).await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "Host").await?;
    b.join(&room, Some(room.token(Role::Candidate, 2)), "Cand").await?;
    r.handle
        .join(JoinSpec {
            room: room.id,
            token: Some(room.token(Role::Observer, 3)),
            name: "recorder".into(),
            recording: Some(path.clone()),
        })
        .await?;
    gossip_ready(&[&a, &b, &r], &room).await?;
    // An observer cannot write.
    assert!(r.handle.splice(room.id, 0, 0, "nope").await.is_err());

    a.handle.splice(room.id, 0, 0, "def add(a, b):\n").await?;
    recorded(&a, &r, &room).await?;
    b.handle.splice(room.id, 1000, 0, "    return a - b\n").await?;
    converged(&[&a, &b, &r], &room).await?;
    let v1 = a.handle.with_room(room.id, |r, now| r.create_version("first try", VersionCause::Manual, now)).await??;
    b.handle.splice(room.id, 27, 1, "+").await?;
    b.handle.splice(room.id, 0, 0, "# café ✓\n").await?;
    converged(&[&a, &b, &r], &room).await?;
    b.handle.with_room(room.id, |r, now| r.vote(true, now)).await??;
    a.handle.with_room(room.id, |r, now| r.vote(true, now)).await??;
    converged(&[&a, &b, &r], &room).await?;
    assert!(a.handle.with_room(room.id, |r, _| r.consensus().enabled()).await?);
    let id = v1.id.clone();
    a.handle.with_room(room.id, move |r, now| r.restore(&id, now)).await??;
    b.handle.splice(room.id, 1000, 0, "print(add(1, 2))\n").await?;
    let final_code = converged(&[&a, &b, &r], &room).await?;
    assert!(final_code.contains("return a - b") && final_code.ends_with("print(add(1, 2))\n"), "{final_code:?}");
    r.stop().await?;

    // The recording verifies and replays.
    let file = RecordingFile::read(&path)?;
    let pins = Pins { room: Some(room.id), recorder: Some(Identity::from_passphrase("rec-recorder").public()) };
    let report = verify(&file, &pins);
    assert!(report.ok(), "{report:?}");
    assert!(report.envelopes >= 8 && report.admissions == 3 && report.seals >= 1, "{report:?}");
    let t = timeline(&file)?;
    let codes = replay_codes(&t);
    assert_eq!(codes.last().context("steps")?, &final_code);
    assert_eq!(t.final_code, final_code);
    assert_eq!(code_at(&file, None)?, final_code);

    // Independently: arena-core's own time travel over the same envelopes.
    let mut replica =
        Room::open(room.id, Identity::from_passphrase("auditor"), 0, MemoryStore::new(), RoomConfig::default(), 0)?;
    for rec in &file.records {
        match rec.decode(room.id).map_err(anyhow::Error::msg)? {
            Record::Admission { admission, .. } => {
                replica.admit(&admission, None)?;
            }
            Record::Envelope { received_ms, envelope } => {
                let receipt = replica.receive(vec![envelope], received_ms)?;
                assert_eq!(receipt.applied.len(), 1, "{receipt:?}");
            }
            _ => {}
        }
    }
    assert_eq!(replica.store().log_len() as usize, t.steps.len());
    for (i, step) in t.steps.iter().enumerate() {
        assert_eq!(codes[i], replica.code_at(&Cut::LogIndex(i as u64 + 1))?, "after step {i}");
        // At the step's receive time: everything received up to then.
        let last = t.steps.iter().rposition(|s| s.at <= step.at).context("a step")?;
        assert_eq!(code_at(&file, Some(step.at))?, codes[last], "at {}", step.at);
        if let Some(keyframe) = &step.code {
            assert_eq!(keyframe, &codes[i]);
        }
    }
    let events: Vec<&String> = t.steps.iter().flat_map(|s| &s.events).collect();
    let has = |needle: &str| events.iter().any(|e| e.contains(needle));
    assert!(has("Cand voted for") && has("Host voted for") && has("first try") && has("restore of"), "{events:?}");

    // Exports carry the same timeline.
    let json: serde_json::Value = serde_json::from_str(&export_json(&t))?;
    assert_eq!(json["steps"].as_array().map(Vec::len), Some(t.steps.len()));
    let html = export_html(&t);
    let start = html.find(r#"type="application/json">"#).context("data")? + r#"type="application/json">"#.len();
    let end = start + html[start..].find("</script>").context("end of data")?;
    let embedded: serde_json::Value = serde_json::from_str(&html[start..end])?;
    assert_eq!(embedded, json);
    assert!(!html.contains("http://") && !html.contains("https://"), "the player needs no network");

    // Any flipped byte is found.
    let bytes = std::fs::read(&path)?;
    let tampered = dir.path().join("tampered.arena");
    for pos in (0..bytes.len()).step_by(53).chain([bytes.len() - 1]) {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x20;
        std::fs::write(&tampered, &bad)?;
        let broken = match RecordingFile::read(&tampered) {
            Err(_) => true,
            Ok(f) => !verify(&f, &pins).ok(),
        };
        assert!(broken, "flipped byte {pos} of {} went unnoticed", bytes.len());
    }
    a.stop().await?;
    b.stop().await?;
    Ok(())
}

/// Presence (y-protocols awareness: names, cursors) travels over libp2p too: a peer's
/// update reaches the others as an event and the recorder's file; a malformed one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_over_libp2p_is_recorded() -> Result<()> {
    use yrs::updates::encoder::Encode;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.arena");
    let room = TestRoom::new("presence");
    let a = Peer::start(config(Identity::from_passphrase("pr-host"), None, false)).await?;
    let b = Peer::start(config(Identity::from_passphrase("pr-cand"), None, false)).await?;
    let r = Peer::start(config(Identity::from_passphrase("pr-rec"), None, false)).await?;
    mesh(&[&a, &b, &r]).await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "Host").await?;
    b.join(&room, Some(room.token(Role::Candidate, 2)), "Cand").await?;
    r.handle
        .join(JoinSpec {
            room: room.id,
            token: Some(room.token(Role::Observer, 3)),
            name: "recorder".into(),
            recording: Some(path.clone()),
        })
        .await?;
    gossip_ready(&[&a, &b, &r], &room).await?;
    let mut events = b.handle.subscribe();
    let mut recorder_events = r.handle.subscribe();
    let state = r##"{"user":{"name":"Host","color":"#f00"},"cursor":{"anchor":3,"head":5}}"##;
    let update = |clock: u32| {
        let mut clients = std::collections::HashMap::new();
        clients
            .insert(yrs::ClientID::new(42), yrs::sync::awareness::AwarenessUpdateEntry { clock, json: state.into() });
        yrs::sync::AwarenessUpdate { clients }.encode_v1()
    };
    assert!(a.handle.publish_presence(room.id, vec![0xff, 0x01]).await.is_err(), "a malformed update was published");
    // Gossipsub's mesh may take a heartbeat: publish until B and the recorder have seen it.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let (mut got, mut recorded) = (None, false);
    let presence = |ev: Result<NodeEvent, _>| match ev {
        Ok(NodeEvent::Presence { room: r, update, from }) if r == room.id => Some((update, from)),
        _ => None,
    };
    for clock in 2.. {
        assert!(std::time::Instant::now() < deadline, "B or the recorder never heard A's presence");
        a.handle.publish_presence(room.id, update(clock)).await?;
        let pause = tokio::time::sleep(std::time::Duration::from_millis(200));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                ev = events.recv() => if let Some(p) = presence(ev) { got = Some(p) },
                ev = recorder_events.recv() => recorded |= presence(ev).is_some(),
                _ = &mut pause => break,
            }
        }
        if got.is_some() && recorded {
            break;
        }
    }
    let got = got.expect("presence");
    assert_eq!(got.1, a.handle.peer_id());
    assert!(yrs::sync::AwarenessUpdate::decode_v1(&got.0).is_ok());
    // The recorder keeps it (after its next flush: stop it).
    a.handle.splice(room.id, 0, 0, "x").await?;
    converged(&[&a, &b, &r], &room).await?;
    r.stop().await?;
    let file = RecordingFile::read(&path)?;
    let kept = file.records.iter().filter_map(|rec| rec.decode(room.id).ok()).any(
        |rec| matches!(rec, Record::Awareness { json, .. } if json.contains("\"42\"") && json.contains("\"anchor\":3")),
    );
    assert!(kept, "the recording has no presence record");
    assert!(verify(&file, &Pins::default()).ok(), "the recording with presence does not verify");
    a.stop().await?;
    b.stop().await?;
    Ok(())
}
