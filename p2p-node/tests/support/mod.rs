//! Test helpers: nodes on 127.0.0.1 port 0, rooms with invites, `wait_for`.
#![allow(
    dead_code,
    unreachable_pub,
    missing_debug_implementations,
    clippy::expect_used,
    clippy::should_implement_trait
)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use arena_core::{Identity, Invite, Role, RoomId};
use arena_node::{now_ms, JoinSpec, Node, NodeConfig, NodeHandle};
use libp2p::Multiaddr;
use tokio_util::sync::CancellationToken;

pub use arena_testkit::{wait_for, TIMEOUT};

/// A room: its key (to issue invites) and id.
pub struct TestRoom {
    pub key: Identity,
    pub id: RoomId,
}

impl TestRoom {
    pub fn new(name: &str) -> Self {
        let key = Identity::from_passphrase(name);
        TestRoom { id: key.public(), key }
    }

    /// The room's read key (what every invite token carries).
    pub fn read_key(&self) -> arena_core::ReadKey {
        arena_core::ReadKey::derive(&self.key)
    }

    pub fn token(&self, role: Role, nonce: u64) -> String {
        Invite::issue(&self.key, role, now_ms() / 1000 + 3600, 0, nonce).to_token()
    }

    /// The admission `member` makes with an invite of `role`: what a member proves itself
    /// with (made by joining a scratch replica, so no new token format is spelled here).
    pub fn admission(&self, member: &Identity, role: Role, nonce: u64) -> Result<arena_core::Admission> {
        let now = now_ms();
        let mut scratch = arena_core::Room::open(
            self.id,
            member.clone(),
            0,
            arena_core::MemoryStore::new(),
            arena_core::RoomConfig::default(),
            now,
        )?;
        let (adm, _) = scratch.join(&self.token(role, nonce), "test member", now)?;
        Ok(adm)
    }
}

pub struct Peer {
    pub handle: NodeHandle,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<arena_node::Result<()>>,
    pub addrs: Vec<Multiaddr>,
    pub identity: Identity,
}

pub fn config(identity: Identity, data_dir: Option<PathBuf>, quic: bool) -> NodeConfig {
    let mut cfg = NodeConfig::new(identity);
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")];
    if quic {
        cfg.listen.push("/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr"));
    }
    cfg.data_dir = data_dir;
    cfg.anti_entropy = Duration::from_secs(2);
    cfg
}

impl Peer {
    pub async fn start(cfg: NodeConfig) -> Result<Self> {
        // RUST_LOG=arena_node=debug shows what the nodes do.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let identity = cfg.identity.clone();
        let want = cfg.listen.len();
        let shutdown = CancellationToken::new();
        // sled's flusher thread lets go of a data dir's lock up to ~1 s after the node that
        // held it stopped: a restart in the same process waits for it (as `SledDb::reopen`).
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let (handle, task) = loop {
            match Node::spawn(cfg.clone(), shutdown.clone()) {
                Err(e) if std::time::Instant::now() < until && e.to_string().contains("acquire lock") => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                res => break res?,
            }
        };
        let h = handle.clone();
        let addrs = wait_for(TIMEOUT, "listening", || {
            let h = h.clone();
            async move {
                let a = h.listen_addrs().await?;
                Ok((a.len() >= want).then_some(a))
            }
        })
        .await?;
        Ok(Peer { handle, shutdown, task, addrs, identity })
    }

    pub async fn memory(name: &str) -> Result<Self> {
        Self::start(config(Identity::from_passphrase(name), None, false)).await
    }

    /// Our address with `/p2p/<peer id>`.
    pub fn addr(&self) -> Multiaddr {
        self.addrs[0].clone().with(libp2p::multiaddr::Protocol::P2p(self.handle.peer_id()))
    }

    pub async fn join(&self, room: &TestRoom, token: Option<String>, name: &str) -> Result<()> {
        self.handle
            .join(JoinSpec { room: room.id, token, name: name.into(), recording: None })
            .await
            .with_context(|| format!("{name} joining"))?;
        Ok(())
    }

    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }

    pub async fn connected(&self) -> Result<usize> {
        Ok(self.handle.stats().await?.connected.len())
    }
}

/// Dials every pair once and waits until each peer sees all the others.
pub async fn mesh(peers: &[&Peer]) -> Result<()> {
    for (i, p) in peers.iter().enumerate() {
        for q in &peers[..i] {
            p.handle.dial(q.addr()).await?;
        }
    }
    let n = peers.len() - 1;
    for p in peers {
        wait_for(TIMEOUT, "full mesh", || async { Ok((p.connected().await? >= n).then_some(())) }).await?;
    }
    Ok(())
}

/// Waits until every peer has the same canonical state; returns the code.
pub async fn converged(peers: &[&Peer], room: &TestRoom) -> Result<String> {
    wait_for(TIMEOUT, "convergence", || async {
        let mut states = Vec::new();
        for p in peers {
            states.push(p.handle.canonical_state(room.id).await?);
        }
        Ok(states.windows(2).all(|w| w[0] == w[1]).then_some(()))
    })
    .await?;
    let code = peers[0].handle.code(room.id).await?;
    for p in peers {
        assert_eq!(p.handle.code(room.id).await?, code);
    }
    Ok(code)
}

/// A tiny deterministic generator (xorshift64*), so failures replay.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// `n` random splices by `peer`, as fast as the node takes them.
pub async fn random_edits(node: NodeHandle, room: RoomId, seed: u64, n: usize) -> Result<()> {
    let mut rng = Rng::new(seed);
    let words = ["fn ", "let x = 1;\n", "ü", "return ", "}\n", "if a {", " ", "é"];
    for _ in 0..n {
        let len = node.with_room(room, |r, _| r.doc().code_len()).await?;
        let pos = rng.below(u64::from(len) + 1) as u32;
        let del = if rng.below(3) == 0 { rng.below(4) as u32 } else { 0 };
        let ins = words[rng.below(words.len() as u64) as usize];
        node.splice(room, pos, del, ins).await?;
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Waits until every peer knows every other one is subscribed to the room's topic.
pub async fn gossip_ready(peers: &[&Peer], room: &TestRoom) -> Result<()> {
    let n = peers.len() - 1;
    for p in peers {
        wait_for(TIMEOUT, "gossip subscriptions", || async {
            let s = p.handle.stats().await?;
            Ok(s.rooms.get(&room.id).filter(|r| r.gossip_peers.len() >= n).map(|_| ()))
        })
        .await?;
    }
    Ok(())
}
