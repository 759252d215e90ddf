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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_reachable_only_through_a_relay() -> Result<()> {
    let mut server_cfg = config(Identity::from_passphrase("relay"), None, false);
    server_cfg.behaviour = BehaviourConfig::server();
    let server = Peer::start(server_cfg).await?;
    let room = TestRoom::new("relayed");

    // a listens through the relay; b reaches a by its circuit address.
    let mut a_cfg = config(Identity::from_passphrase("relayed-a"), None, false);
    a_cfg.bootstrap = vec![server.addr()];
    a_cfg.use_relay = true;
    let a = Peer::start(a_cfg).await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "a").await?;
    let circuit = wait_for(TIMEOUT, "a listens through the relay", || async {
        let addrs = a.handle.listen_addrs().await?;
        Ok(addrs.into_iter().find(|x| x.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))))
    })
    .await?;
    let b = Peer::memory("relayed-b").await?;
    b.join(&room, Some(room.token(Role::Candidate, 2)), "b").await?;
    // The reported address already ends in /p2p-circuit/p2p/<a>.
    b.handle.dial(circuit).await?;
    a.handle.splice(room.id, 0, 0, "over the relay").await?;
    let code = converged(&[&a, &b], &room).await?;
    assert_eq!(code, "over the relay");
    for p in [a, b, server] {
        p.stop().await?;
    }
    Ok(())
}
