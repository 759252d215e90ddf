//! Peers that were given only a bootstrap node find each other (rendezvous, DHT) and
//! converge; the bootstrap node runs the same behaviour in server mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use anyhow::Result;
use arena_core::{Identity, Role};
use arena_node::behaviour::BehaviourConfig;
use support::{config, converged, wait_for, Peer, TestRoom, TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_meet_through_a_bootstrap_node() -> Result<()> {
    let mut server_cfg = config(Identity::from_passphrase("bootstrap"), None, false);
    server_cfg.behaviour = BehaviourConfig::server();
    let server = Peer::start(server_cfg).await?;

    let room = TestRoom::new("discovery");
    let mut peers = Vec::new();
    for (i, role) in [Role::Host, Role::Candidate].into_iter().enumerate() {
        let mut cfg = config(Identity::from_passphrase(&format!("disc-{i}")), None, false);
        cfg.bootstrap = vec![server.addr()];
        cfg.discovery = Duration::from_millis(300);
        let p = Peer::start(cfg).await?;
        p.join(&room, Some(room.token(role, i as u64)), &format!("p{i}")).await?;
        peers.push(p);
    }
    let [a, b] = &peers[..] else { unreachable!() };
    // Nobody dialed the other: they meet through the bootstrap node.
    let b_id = b.handle.peer_id();
    wait_for(TIMEOUT, "a finds b", || async { Ok(a.handle.stats().await?.connected.contains(&b_id).then_some(())) })
        .await?;
    a.handle.splice(room.id, 0, 0, "found you").await?;
    b.handle.splice(room.id, 0, 0, "hello ").await?;
    let code = converged(&[a, b], &room).await?;
    assert!(code.contains("found you") && code.contains("hello"));
    for p in peers {
        p.stop().await?;
    }
    server.stop().await?;
    Ok(())
}

/// The relay serves members of the rooms it holds only: a member listens through it and is
/// reached by another member through the circuit; a peer that is a member of no room the
/// relay holds gets no reservation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_reachable_only_through_a_relay() -> Result<()> {
    let mut server_cfg = config(Identity::from_passphrase("relay"), None, false);
    server_cfg.behaviour = BehaviourConfig::server();
    let server = Peer::start(server_cfg).await?;
    let room = TestRoom::new("relayed");
    // The relay holds the room (a bootstrap node hosting it joins it the same way).
    server.join(&room, Some(room.token(Role::Observer, 9)), "relay").await?;
    let circuit_of = |p: &Peer| {
        let h = p.handle.clone();
        async move {
            let addrs = h.listen_addrs().await?;
            Ok(addrs.into_iter().find(|x| x.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))))
        }
    };

    // A stranger: a member of another room only, asking the same relay.
    let elsewhere = TestRoom::new("not-relayed");
    let mut s_cfg = config(Identity::from_passphrase("relayed-stranger"), None, false);
    s_cfg.bootstrap = vec![server.addr()];
    s_cfg.use_relay = true;
    let stranger = Peer::start(s_cfg).await?;
    stranger.join(&elsewhere, Some(elsewhere.token(Role::Host, 1)), "s").await?;

    // a listens through the relay once the relay admitted it; b reaches a by its circuit
    // address.
    let mut a_cfg = config(Identity::from_passphrase("relayed-a"), None, false);
    a_cfg.bootstrap = vec![server.addr()];
    a_cfg.use_relay = true;
    let a = Peer::start(a_cfg).await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "a").await?;
    let circuit = wait_for(TIMEOUT, "a listens through the relay", || circuit_of(&a)).await?;
    let mut b_cfg = config(Identity::from_passphrase("relayed-b"), None, false);
    b_cfg.bootstrap = vec![server.addr()];
    let b = Peer::start(b_cfg).await?;
    b.join(&room, Some(room.token(Role::Candidate, 2)), "b").await?;
    // The reported address already ends in /p2p-circuit/p2p/<a>. The relay opens b's
    // circuit once it holds b's admission (b's sync request to it carries it).
    let a_id = a.handle.peer_id();
    wait_for(TIMEOUT, "b reaches a through the relay", || async {
        let _ = b.handle.dial(circuit.clone()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(b.handle.stats().await?.connected.contains(&a_id).then_some(()))
    })
    .await?;
    a.handle.splice(room.id, 0, 0, "over the relay").await?;
    let code = converged(&[&a, &b], &room).await?;
    assert_eq!(code, "over the relay");
    // The stranger tried as early as a did (at its first identify of the relay) and again
    // on each answer from it; it never got a reservation.
    assert!(circuit_of(&stranger).await?.is_none(), "the relay served a peer that is no member of its rooms");
    for p in [a, b, stranger, server] {
        p.stop().await?;
    }
    Ok(())
}
