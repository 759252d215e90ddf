//! The libp2p side as an attacker sees it: bare swarms (the node's own behaviour, driven by
//! the test, so they can send whatever they like) against real nodes on 127.0.0.1.
//! A stranger (no invite) gets no room data over `/arena/sync/1`, cannot make a node join a
//! room, and its gossip is rejected and not forwarded; answers are paged; buffered gossip
//! fragments and connections stay under their caps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use arena_core::sync::wire::{chunk, Reassembler, Wire, GOSSIP_CHUNK};
use arena_core::{Envelope, Identity, PeerKey, Role, RoomId};
use arena_node::behaviour::{
    build_swarm, keypair_of, topic_for, ArenaBehaviour, ArenaBehaviourEvent, BehaviourConfig, RoomCipher, SyncRequest,
    SyncResponse, SyncStatus,
};
use arena_node::{FragmentLimits, NodeEvent};
use futures::StreamExt;
use libp2p::gossipsub::{self, TopicHash};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm};
use support::{config, gossip_ready, wait_for, Peer, TestRoom, TIMEOUT};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// What a bare swarm saw.
#[derive(Default)]
struct Seen {
    connected: HashSet<PeerId>,
    /// Connections that closed or failed, by peer.
    lost: HashSet<PeerId>,
    subscribed: HashSet<(PeerId, TopicHash)>,
    /// Gossip messages received: (publisher, topic, data).
    gossip: Vec<(Option<PeerId>, TopicHash, Vec<u8>)>,
    responses: HashMap<OutboundRequestId, std::result::Result<SyncResponse, String>>,
    /// Sync requests received (answered "unknown room").
    requests: Vec<SyncRequest>,
    /// Accept every gossip message unchecked, so gossipsub forwards it (a peer that relays
    /// without opening what it relays).
    forward_all: bool,
}

type SwarmFn = Box<dyn FnOnce(&mut Swarm<ArenaBehaviour>) + Send>;

/// A bare libp2p swarm with the arena behaviour, on a task of its own.
struct Raw {
    identity: Identity,
    peer: PeerId,
    cmd: mpsc::Sender<SwarmFn>,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
}

impl Raw {
    fn spawn(identity: Identity) -> Result<Raw> {
        let mut swarm = build_swarm(keypair_of(&identity), &BehaviourConfig::default())?;
        let peer = *swarm.local_peer_id();
        let (cmd, mut rx) = mpsc::channel::<SwarmFn>(64);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = CancellationToken::new();
        let (s, st) = (seen.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = st.cancelled() => break,
                    f = rx.recv() => match f { Some(f) => f(&mut swarm), None => break },
                    ev = swarm.select_next_some() => {
                        let unchecked = match &ev {
                            SwarmEvent::Behaviour(ArenaBehaviourEvent::Gossipsub(gossipsub::Event::Message {
                                propagation_source, message_id, ..
                            })) if s.lock().unwrap().forward_all => Some((message_id.clone(), *propagation_source)),
                            _ => None,
                        };
                        if let Some((id, from)) = unchecked {
                            let accept = gossipsub::MessageAcceptance::Accept;
                            swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &from, accept);
                        }
                        if let Some(channel) = record(&s, ev) {
                            // It holds no room: every request it gets is answered so.
                            let no = SyncResponse { status: SyncStatus::UnknownRoom, more: false, frames: Vec::new() };
                            let _ = swarm.behaviour_mut().sync.send_response(channel, no);
                        }
                    }
                }
            }
        });
        Ok(Raw { identity, peer, cmd, seen, stop })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Swarm<ArenaBehaviour>) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .await
            .map_err(|_| anyhow!("swarm task gone"))?;
        Ok(rx.await?)
    }

    async fn connect(&self, to: &Peer) -> Result<()> {
        let addr = to.addr();
        self.run(move |s| s.dial(addr)).await??;
        let p = to.handle.peer_id();
        wait_for(TIMEOUT, "connected", || async { Ok(self.seen.lock().unwrap().connected.contains(&p).then_some(())) })
            .await
    }

    async fn ask(&self, to: PeerId, req: SyncRequest) -> Result<SyncResponse> {
        let id = self.run(move |s| s.behaviour_mut().sync.send_request(&to, req)).await?;
        let r =
            wait_for(TIMEOUT, "sync answer", || async { Ok(self.seen.lock().unwrap().responses.remove(&id)) }).await?;
        r.map_err(|e| anyhow!("sync request failed: {e}"))
    }

    /// Subscribes to the room's topic (named from its read key: a stranger finds it in a
    /// member's announced subscriptions) and waits until `to` is known to be subscribed too.
    async fn subscribe(&self, room: &TestRoom, to: PeerId) -> Result<()> {
        let topic = topic_for(&room.read_key());
        let t = topic.hash();
        self.run(move |s| s.behaviour_mut().gossipsub.subscribe(&topic).map(|_| ())).await??;
        wait_for(TIMEOUT, "peer's subscription", || async {
            Ok(self.seen.lock().unwrap().subscribed.contains(&(to, t.clone())).then_some(()))
        })
        .await
    }

    /// Publishes `data` on the room's topic sealed under its read key (as a member, or a
    /// stranger that got hold of the key: the ledger still decides).
    async fn publish(&self, room: &TestRoom, data: Vec<u8>) -> Result<()> {
        let topic = topic_for(&room.read_key());
        let sealed = RoomCipher::new(&room.read_key()).seal(&topic.hash(), &data)?;
        self.publish_as_is(topic, sealed).await
    }

    async fn publish_as_is(&self, topic: gossipsub::IdentTopic, data: Vec<u8>) -> Result<()> {
        self.run(move |s| s.behaviour_mut().gossipsub.publish(topic, data).map(|_| ()))
            .await?
            .map_err(|e| anyhow!("publish: {e}"))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Notes what happened; returns the channel of a sync request to answer.
fn record(
    seen: &Mutex<Seen>,
    ev: SwarmEvent<ArenaBehaviourEvent>,
) -> Option<request_response::ResponseChannel<SyncResponse>> {
    let mut s = seen.lock().unwrap();
    match ev {
        SwarmEvent::Behaviour(ArenaBehaviourEvent::Sync(request_response::Event::Message {
            message: request_response::Message::Request { channel, request, .. },
            ..
        })) => {
            s.requests.push(request);
            return Some(channel);
        }
        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
            s.connected.insert(peer_id);
        }
        SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
            s.connected.remove(&peer_id);
            s.lost.insert(peer_id);
        }
        SwarmEvent::OutgoingConnectionError { peer_id: Some(p), .. } => {
            s.lost.insert(p);
        }
        SwarmEvent::Behaviour(ArenaBehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic })) => {
            s.subscribed.insert((peer_id, topic));
        }
        SwarmEvent::Behaviour(ArenaBehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
            s.gossip.push((message.source, message.topic, message.data));
        }
        SwarmEvent::Behaviour(ArenaBehaviourEvent::Sync(request_response::Event::Message {
            message: request_response::Message::Response { request_id, response },
            ..
        })) => {
            s.responses.insert(request_id, Ok(response));
        }
        SwarmEvent::Behaviour(ArenaBehaviourEvent::Sync(request_response::Event::OutboundFailure {
            request_id,
            error,
            ..
        })) => {
            s.responses.insert(request_id, Err(error.to_string()));
        }
        _ => {}
    }
    None
}

fn want(have: BTreeMap<PeerKey, u64>) -> Vec<Vec<u8>> {
    chunk(&[Wire::Want(have)], GOSSIP_CHUNK)
}

/// What an answer carries, decoded.
fn decode(room: RoomId, resp: &SyncResponse) -> Result<Vec<Wire>> {
    let mut link = Reassembler::new();
    let mut out = Vec::new();
    for f in &resp.frames {
        out.extend(link.push(f, room)?);
    }
    Ok(out)
}

/// The events the node has sent so far that are `RoomWanted`.
fn wanted(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>) -> Vec<RoomId> {
    let mut v = Vec::new();
    loop {
        match events.try_recv() {
            Ok(NodeEvent::RoomWanted { room, .. }) => v.push(room),
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return v,
        }
    }
}

/// A stranger asking over `/arena/sync/1` gets a refusal with nothing in it: no envelopes,
/// no admissions, whatever it sends (nothing, a `Want`, the host's own admission); asking
/// for a room the node does not hold does not make it want that room. A member (a bare
/// swarm with its admission) is served, and its request for a room the node lacks is
/// reported (a bootstrap node joins the rooms it hosts on that event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_gets_nothing_over_sync() -> Result<()> {
    let room = TestRoom::new("sync-stranger");
    let other = TestRoom::new("sync-stranger-other");
    let a = Peer::memory("sync-stranger-host").await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "host").await?;
    a.handle.splice(room.id, 0, 0, "the secret question").await?;
    let a_id = a.handle.peer_id();
    let mut events = a.handle.subscribe();

    let s = Raw::spawn(Identity::from_passphrase("sync-stranger-s"))?;
    s.connect(&a).await?;
    let host_adms = a.handle.with_room(room.id, |r, _| r.ledger().admissions()).await?;
    let asks = [
        want(BTreeMap::new()),
        Vec::new(),
        chunk(&[Wire::Admissions(host_adms), Wire::Want(BTreeMap::new())], GOSSIP_CHUNK),
    ];
    for frames in asks {
        let resp = s.ask(a_id, SyncRequest { room: room.id, frames }).await?;
        let got = decode(room.id, &resp)?;
        assert!(got.is_empty(), "a stranger was answered with {} messages: {:?}", got.len(), resp.status);
        assert_eq!(resp.status, SyncStatus::Refused);
    }
    let resp = s.ask(a_id, SyncRequest { room: other.id, frames: want(BTreeMap::new()) }).await?;
    assert_ne!(resp.status, SyncStatus::Ok);
    assert!(resp.frames.is_empty());
    // Events of a request go out with its answer: whatever the stranger caused is here.
    assert_eq!(wanted(&mut events), Vec::<RoomId>::new(), "a stranger made the node want a room");

    // A member proves itself with its admission (bound to its peer id) and is served.
    let m = Raw::spawn(Identity::from_passphrase("sync-stranger-m"))?;
    m.connect(&a).await?;
    let adm = room.admission(&m.identity, Role::Observer, 7)?;
    let frames = chunk(&[Wire::Admissions(vec![adm]), Wire::Want(BTreeMap::new())], GOSSIP_CHUNK);
    let resp = m.ask(a_id, SyncRequest { room: room.id, frames }).await?;
    assert_eq!(resp.status, SyncStatus::Ok);
    let got = decode(room.id, &resp)?;
    assert!(got.iter().any(|w| matches!(w, Wire::Envelopes(e) if !e.is_empty())), "member got no envelopes");
    // Its proven request for a room the node lacks is reported.
    let adm = other.admission(&m.identity, Role::Candidate, 8)?;
    let frames = chunk(&[Wire::Admissions(vec![adm]), Wire::Want(BTreeMap::new())], GOSSIP_CHUNK);
    let resp = m.ask(a_id, SyncRequest { room: other.id, frames }).await?;
    assert_eq!(resp.status, SyncStatus::UnknownRoom);
    assert_eq!(wanted(&mut events), vec![other.id]);
    a.stop().await?;
    Ok(())
}

/// A stranger subscribed to a room's topic publishes what it could have picked up (the
/// host's admission, the host's envelopes regrouped so they are new gossip messages, a
/// fragment): the node rejects it (an offence) and forwards none of it to the room's
/// other subscribers, who do get the host's next edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_gossip_is_rejected_and_not_forwarded() -> Result<()> {
    let room = TestRoom::new("gossip-stranger");
    let a = Peer::memory("gossip-stranger-host").await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "host").await?;
    for i in 0..4 {
        a.handle.splice(room.id, 0, 0, &format!("line {i}\n")).await?;
    }
    let a_id = a.handle.peer_id();
    let a_key = a.identity.public();
    let (adms, envs) = a
        .handle
        .with_room(room.id, move |r, _| {
            let envs = arena_core::Store::author_envelopes(r.store(), &a_key, 0, 100).unwrap_or_default();
            (r.ledger().admissions(), envs)
        })
        .await?;
    assert!(envs.len() >= 4);

    // `o` listens on the topic (a reader: see what reaches it); `s` publishes.
    let o = Raw::spawn(Identity::from_passphrase("gossip-stranger-o"))?;
    let s = Raw::spawn(Identity::from_passphrase("gossip-stranger-s"))?;
    o.connect(&a).await?;
    s.connect(&a).await?;
    o.subscribe(&room, a_id).await?;
    s.subscribe(&room, a_id).await?;
    wait_for(TIMEOUT, "a sees both subscribed", || async {
        let st = a.handle.stats().await?;
        let peers = st.rooms.get(&room.id).map(|r| r.gossip_peers.clone()).unwrap_or_default();
        Ok((peers.contains(&o.peer) && peers.contains(&s.peer)).then_some(()))
    })
    .await?;

    let mut regrouped: Vec<Envelope> = envs.clone();
    regrouped.truncate(3);
    s.publish(&room, Wire::Admissions(adms).encode()).await?;
    s.publish(&room, Wire::Envelopes(regrouped).encode()).await?;
    let big = Envelope::seal(room.id, &s.identity, 0, Default::default(), 1, vec![7; 3 * GOSSIP_CHUNK]);
    s.publish(&room, chunk(&[Wire::Envelopes(vec![big])], GOSSIP_CHUNK).remove(0)).await?;

    let s_id = s.peer;
    // It keeps publishing (each message new to gossipsub) until the node has had enough.
    let mut n = 0u64;
    wait_for(TIMEOUT, "the stranger's messages counted as offences", || {
        n += 1;
        let more = Envelope::seal(room.id, &s.identity, n, Default::default(), 1, n.to_be_bytes().to_vec());
        let (a, s, room) = (&a, &s, &room);
        async move {
            let st = a.handle.stats().await?;
            let count = st.peers.get(&s_id).map_or(0, |p| p.offences);
            if count >= 2 || st.banned.contains(&s_id) {
                return Ok(Some(()));
            }
            if n < 200 {
                s.publish(room, Wire::Envelopes(vec![more]).encode()).await?;
            }
            Ok(None)
        }
    })
    .await?;
    // The host's next edit reaches `o`; nothing the stranger published did.
    a.handle.splice(room.id, 0, 0, "after\n").await?;
    wait_for(TIMEOUT, "the host's edit reaches o", || async {
        Ok(o.seen.lock().unwrap().gossip.iter().any(|(src, _, _)| *src == Some(a_id)).then_some(()))
    })
    .await?;
    let forwarded = o.seen.lock().unwrap().gossip.iter().filter(|(src, _, _)| *src == Some(s_id)).count();
    assert_eq!(forwarded, 0, "the node forwarded the stranger's messages");
    a.stop().await?;
    Ok(())
}

/// A member's ~100-byte request for a big room is answered in pages of at most about
/// `max_answer_bytes`, each marked "more" until the last; asking again from where it got to
/// brings every envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_answers_are_paged() -> Result<()> {
    let room = TestRoom::new("paged");
    let a = Peer::memory("paged-host").await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "host").await?;
    // ~3.2 MB of envelopes: 32 pastes of 100 KB.
    for i in 0..32 {
        let paste: String = std::iter::repeat_n(char::from(b'a' + (i % 26) as u8), 100_000).collect();
        a.handle.splice(room.id, 0, 0, &paste).await?;
    }
    let total: u64 = a.handle.with_room(room.id, |r, _| r.envelope_vector().values().sum()).await?;
    let m = Raw::spawn(Identity::from_passphrase("paged-m"))?;
    m.connect(&a).await?;
    let adm = room.admission(&m.identity, Role::Observer, 2)?;
    let mut have: BTreeMap<PeerKey, u64> = BTreeMap::new();
    let mut pages = 0;
    loop {
        let frames = chunk(&[Wire::Admissions(vec![adm.clone()]), Wire::Want(have.clone())], GOSSIP_CHUNK);
        let req_len: usize = frames.iter().map(Vec::len).sum();
        assert!(req_len < 1024, "request of {req_len} bytes");
        let resp = m.ask(a.handle.peer_id(), SyncRequest { room: room.id, frames }).await?;
        assert_eq!(resp.status, SyncStatus::Ok);
        let bytes: usize = resp.frames.iter().map(Vec::len).sum();
        // The cap (1 MiB by default) plus the admissions and one envelope over the cut.
        assert!(bytes <= (1 << 20) + 128 * 1024, "an answer of {bytes} bytes to a {req_len}-byte request");
        for w in decode(room.id, &resp)? {
            if let Wire::Envelopes(envs) = w {
                for e in envs {
                    let next = have.entry(e.author).or_default();
                    assert_eq!(e.seq, *next, "pages continue each author's chain");
                    *next += 1;
                }
            }
        }
        pages += 1;
        if !resp.more {
            break;
        }
        assert!(pages < 100, "paging does not end");
    }
    assert_eq!(have.values().sum::<u64>(), total);
    assert!(pages >= 3, "{pages} pages for ~3.2 MB");
    a.stop().await?;
    Ok(())
}

/// Twelve peer ids (six members, six strangers) each send the first fragments of a big
/// message that never completes, and sync requests: strangers' fragments are not kept and
/// their requests get nothing; members' are kept within the per-peer and global caps. The
/// node's gauge says so: the most it ever buffered is within the global cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_peer_ids_stays_under_the_caps() -> Result<()> {
    let room = TestRoom::new("flood");
    let mut cfg = config(Identity::from_passphrase("flood-host"), None, false);
    let limits = FragmentLimits { per_peer: 2 * GOSSIP_CHUNK, per_ip: 8 * GOSSIP_CHUNK, total: 4 * GOSSIP_CHUNK };
    cfg.fragments = limits;
    let a = Peer::start(cfg).await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "host").await?;
    a.handle.splice(room.id, 0, 0, "private").await?;
    let a_id = a.handle.peer_id();
    let mut raws = Vec::new();
    let mut sent = 0u64;
    for i in 0..12u64 {
        let raw = Raw::spawn(Identity::from_passphrase(&format!("flood-{i}")))?;
        raw.connect(&a).await?;
        raw.subscribe(&room, a_id).await?;
        let member = i % 2 == 0;
        if member {
            // A member proves itself on gossip with its admission, then floods.
            let adm = room.admission(&raw.identity, Role::Observer, 100 + i)?;
            raw.publish(&room, Wire::Admissions(vec![adm]).encode()).await?;
            let key = raw.identity.public();
            wait_for(TIMEOUT, "member admitted", || async {
                Ok(a.handle.with_room(room.id, move |r, _| r.ledger().member(&key).is_some()).await?.then_some(()))
            })
            .await?;
        }
        // The first 3 of 6 fragments of one envelope.
        let env = Envelope::seal(room.id, &raw.identity, 0, Default::default(), 1, vec![i as u8; 5 * GOSSIP_CHUNK]);
        for f in chunk(&[Wire::Envelopes(vec![env])], GOSSIP_CHUNK).into_iter().take(3) {
            raw.publish(&room, f).await?;
            sent += 1;
        }
        if !member {
            for _ in 0..5 {
                let resp = raw.ask(a_id, SyncRequest { room: room.id, frames: want(BTreeMap::new()) }).await?;
                assert!(resp.status != SyncStatus::Ok && resp.frames.is_empty(), "a stranger got {resp:?}");
            }
        }
        raws.push(raw);
    }
    let stats = wait_for(TIMEOUT, "every fragment handled", || async {
        let s = a.handle.stats().await?;
        Ok((s.fragments.received >= sent).then_some(s))
    })
    .await?;
    let f = stats.fragments;
    assert!(f.peak <= limits.total, "{} bytes buffered at most, cap {}", f.peak, limits.total);
    assert!(f.buffered <= limits.total);
    assert!(f.dropped >= 6 * 3, "strangers' fragments were kept: {f:?}");
    assert!(stats.sync_refused >= 6 * 5, "{} refused", stats.sync_refused);
    drop(raws);
    a.stop().await?;
    Ok(())
}

/// With a cap of 3 established connections, the 4th peer's connection is closed and the
/// node keeps 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds() -> Result<()> {
    let mut cfg = config(Identity::from_passphrase("cap-host"), None, false);
    cfg.behaviour.limits.max_established = 3;
    let a = Peer::start(cfg).await?;
    let a_id = a.handle.peer_id();
    let mut raws = Vec::new();
    for i in 0..3 {
        let raw = Raw::spawn(Identity::from_passphrase(&format!("cap-{i}")))?;
        raw.connect(&a).await?;
        raws.push(raw);
    }
    let fourth = Raw::spawn(Identity::from_passphrase("cap-3"))?;
    let addr = a.addr();
    fourth.run(move |s| s.dial(addr)).await??;
    wait_for(TIMEOUT, "the 4th connection refused", || async {
        Ok(fourth.seen.lock().unwrap().lost.contains(&a_id).then_some(()))
    })
    .await?;
    let connected = a.handle.stats().await?.connected;
    assert_eq!(connected.len(), 3, "{connected:?}");
    assert!(!connected.contains(&fourth.peer));
    assert!(!fourth.seen.lock().unwrap().connected.contains(&a_id));
    drop(raws);
    a.stop().await?;
    Ok(())
}

/// A node that cannot sign for stock clients relays their updates (with vouchers signed by
/// their invite keys) to the room's members only: a member gets them, a stranger subscribed to
/// the room's topic does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_stock_updates_go_to_members_only() -> Result<()> {
    let room = TestRoom::new("relay-tokens");
    let a = Peer::memory("relay-tokens-a").await?;
    a.join(&room, Some(room.token(Role::Candidate, 1)), "a").await?;
    let a_id = a.handle.peer_id();
    let s = Raw::spawn(Identity::from_passphrase("relay-tokens-s"))?;
    let m = Raw::spawn(Identity::from_passphrase("relay-tokens-m"))?;
    for raw in [&s, &m] {
        raw.connect(&a).await?;
        raw.subscribe(&room, a_id).await?;
    }
    let adm = room.admission(&m.identity, Role::Observer, 2)?;
    let frames = chunk(&[Wire::Admissions(vec![adm]), Wire::Want(BTreeMap::new())], GOSSIP_CHUNK);
    assert_eq!(m.ask(a_id, SyncRequest { room: room.id, frames }).await?.status, SyncStatus::Ok);
    wait_for(TIMEOUT, "a sees both subscribed", || async {
        let st = a.handle.stats().await?;
        let peers = st.rooms.get(&room.id).map(|r| r.gossip_peers.clone()).unwrap_or_default();
        Ok((peers.contains(&s.peer) && peers.contains(&m.peer)).then_some(()))
    })
    .await?;
    // A stock client's update with its relay's voucher (the token itself never travels).
    let invite = arena_core::Invite::from_token(&room.token(Role::Candidate, 3), &room.id, arena_node::now_ms())?;
    let update = vec![0, 0];
    let signature = invite.vouch(&update);
    let delegation = arena_core::Delegation::sign(&invite).signature;
    let grant = Box::new(invite.grant.clone());
    a.handle.ingest(room.id, vec![Wire::Proxied { grant, update, signature, delegation }]).await?;
    let carries_token = |reqs: &[SyncRequest]| -> Result<bool> {
        for r in reqs {
            let mut link = Reassembler::new();
            for f in &r.frames {
                if let Some(Wire::Proxied { signature: s, .. }) = link.push(f, room.id)? {
                    if s == signature {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    };
    wait_for(TIMEOUT, "the member gets the relayed update", || async {
        let reqs = m.seen.lock().unwrap().requests.clone();
        Ok(carries_token(&reqs)?.then_some(()))
    })
    .await?;
    // A round trip on the stranger's connection after the relay went out.
    let _ = s.ask(a_id, SyncRequest { room: room.id, frames: want(BTreeMap::new()) }).await?;
    let reqs = s.seen.lock().unwrap().requests.clone();
    assert!(!carries_token(&reqs)?, "a stranger received a client's relayed update");
    a.stop().await?;
    Ok(())
}

/// Offences are counted per remote IP too: five peer ids on one IP that each send one
/// undecodable gossip message (one offence each, under the per-peer limit) get the IP
/// banned; a sixth peer id from it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_peer_ids_on_one_ip_are_banned_together() -> Result<()> {
    let room = TestRoom::new("ip-ban");
    let mut cfg = config(Identity::from_passphrase("ip-ban-host"), None, false);
    cfg.max_offences = 3;
    cfg.max_offences_per_ip = 5;
    let a = Peer::start(cfg).await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "host").await?;
    let a_id = a.handle.peer_id();
    let mut raws = Vec::new();
    for i in 0..5 {
        let raw = Raw::spawn(Identity::from_passphrase(&format!("ip-ban-{i}")))?;
        raw.connect(&a).await?;
        raw.subscribe(&room, a_id).await?;
        raw.publish(&room, vec![0xff, i, 1, 2, 3]).await?;
        let p = raw.peer;
        wait_for(TIMEOUT, "offence counted", || async {
            let s = a.handle.stats().await?;
            Ok((s.peers.get(&p).is_some_and(|x| x.offences >= 1) || !s.banned_ips.is_empty()).then_some(()))
        })
        .await?;
        raws.push(raw);
    }
    let st = a.handle.stats().await?;
    assert_eq!(st.banned_ips.len(), 1, "{:?}", st.banned_ips);
    assert!(st.banned.is_empty(), "no single peer id reached its own limit: {:?}", st.banned);
    let sixth = Raw::spawn(Identity::from_passphrase("ip-ban-6"))?;
    let addr = a.addr();
    sixth.run(move |s| s.dial(addr)).await??;
    wait_for(TIMEOUT, "the 6th peer id refused", || async {
        Ok(sixth.seen.lock().unwrap().lost.contains(&a_id).then_some(()))
    })
    .await?;
    assert!(!a.handle.stats().await?.connected.contains(&sixth.peer));
    drop(raws);
    a.stop().await?;
    Ok(())
}

/// An awareness update naming `name` (what a peer's presence carries).
fn presence_naming(name: &str) -> Vec<u8> {
    use yrs::sync::awareness::{AwarenessUpdate, AwarenessUpdateEntry};
    use yrs::updates::encoder::Encode;
    let mut clients = HashMap::new();
    let state = serde_json::json!({ "user": { "name": name } }).to_string();
    clients.insert(yrs::ClientID::new(42), AwarenessUpdateEntry { clock: 1, json: state.into() });
    AwarenessUpdate { clients: clients.into_iter().collect() }.encode_v1()
}

/// Issue #21 item 2, gossip. A stranger connected to a member learns the topics that member
/// is subscribed to (gossipsub tells every connected peer), subscribes to them all, and
/// keeps every gossip payload and sync request it receives while the host types, an
/// observer joins, and the host's presence goes out. The topics do not name the room, no
/// payload holds the typed text, a member's name or a member key, none decodes as a
/// `Wire`, and nobody sends the stranger a sync request (which names the room). The
/// observer, a member, reads everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_rooms_topics_reads_nothing() -> Result<()> {
    let room = TestRoom::new("read-key");
    let a = Peer::memory("read-key-host").await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "Alice Host").await?;
    a.handle.splice(room.id, 0, 0, "TYPED-BEFORE ").await?;
    let a_id = a.handle.peer_id();
    let s = Raw::spawn(Identity::from_passphrase("read-key-s"))?;
    s.connect(&a).await?;
    // The host's topics, as its subscriptions announce them.
    let topics = wait_for(TIMEOUT, "the host's subscriptions", || async {
        let seen = s.seen.lock().unwrap();
        let t: Vec<TopicHash> = seen.subscribed.iter().filter(|(p, _)| *p == a_id).map(|(_, t)| t.clone()).collect();
        Ok((t.len() >= 2).then_some(t))
    })
    .await?;
    for t in &topics {
        let topic = gossipsub::IdentTopic::new(t.as_str());
        s.run(move |sw| sw.behaviour_mut().gossipsub.subscribe(&topic).map(|_| ())).await??;
    }
    let s_id = s.peer;
    wait_for(TIMEOUT, "the host sees the stranger subscribed", || async {
        let st = a.handle.stats().await?;
        Ok(st.rooms.get(&room.id).is_some_and(|r| r.gossip_peers.contains(&s_id)).then_some(()))
    })
    .await?;

    // An observer joins; the host types and shows its presence.
    let o = Peer::memory("read-key-observer").await?;
    o.handle.dial(a.addr()).await?;
    o.join(&room, Some(room.token(Role::Observer, 2)), "Olga Observer").await?;
    wait_for(TIMEOUT, "the observer catches up", || async {
        Ok(o.handle.code(room.id).await?.contains("TYPED-BEFORE").then_some(()))
    })
    .await?;
    gossip_ready(&[&a, &o], &room).await?;
    a.handle.splice(room.id, 0, 0, "TYPED-AFTER ").await?;
    wait_for(TIMEOUT, "the observer reads the live edit", || async {
        Ok(o.handle.code(room.id).await?.contains("TYPED-AFTER").then_some(()))
    })
    .await?;
    a.handle.publish_presence(room.id, presence_naming("Alice Host")).await?;
    let mut presence = o.handle.subscribe();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "the observer never read the host's presence");
        // Presence is not retried by the node: publish again until it arrives.
        a.handle.publish_presence(room.id, presence_naming("Alice Host")).await?;
        match tokio::time::timeout(std::time::Duration::from_millis(500), presence.recv()).await {
            Ok(Ok(NodeEvent::Presence { update, .. })) if update == presence_naming("Alice Host") => break,
            _ => {}
        }
    }
    // What the host published reached the stranger (it is subscribed): the edit at least.
    wait_for(TIMEOUT, "the host's gossip reaches the stranger", || async {
        Ok((s.seen.lock().unwrap().gossip.iter().filter(|(src, _, _)| *src == Some(a_id)).count() >= 2).then_some(()))
    })
    .await?;

    let hex = room.id.to_hex();
    for t in &topics {
        assert!(!t.as_str().contains(&hex), "a topic names the room: {t}");
    }
    let secrets: [(&str, Vec<u8>); 6] = [
        ("the typed text", b"TYPED-".to_vec()),
        ("the host's name", b"Alice Host".to_vec()),
        ("the observer's name", b"Olga Observer".to_vec()),
        ("the host's key", a.identity.public().0.to_vec()),
        ("the observer's key", o.identity.public().0.to_vec()),
        ("the room id", room.id.0.to_vec()),
    ];
    let (gossip, requests) = {
        let seen = s.seen.lock().unwrap();
        (seen.gossip.clone(), seen.requests.len())
    };
    for (publisher, topic, data) in &gossip {
        for (what, needle) in &secrets {
            assert!(
                !data.windows(needle.len()).any(|w| w == &needle[..]),
                "the stranger read {what} in a gossip message of {publisher:?} on {topic}: {:?}",
                String::from_utf8_lossy(data)
            );
        }
        assert!(Wire::decode(data, room.id).is_err(), "the stranger decoded a gossip message as a Wire");
    }
    assert_eq!(requests, 0, "sync requests naming the room were sent to the stranger");
    o.stop().await?;
    a.stop().await?;
    Ok(())
}

/// A message sealed under another room's read key (on this room's topic), and one not
/// sealed at all, are dropped and counted (`gossip_undecryptable`), each an offence of the
/// peer that published it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_under_another_rooms_key_is_dropped_and_counted() -> Result<()> {
    let room = TestRoom::new("wrong-key");
    let other = TestRoom::new("wrong-key-other");
    let a = Peer::memory("wrong-key-host").await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "host").await?;
    let a_id = a.handle.peer_id();
    let s = Raw::spawn(Identity::from_passphrase("wrong-key-s"))?;
    s.connect(&a).await?;
    s.subscribe(&room, a_id).await?;
    let s_id = s.peer;
    wait_for(TIMEOUT, "the host sees the sender subscribed", || async {
        let st = a.handle.stats().await?;
        Ok(st.rooms.get(&room.id).is_some_and(|r| r.gossip_peers.contains(&s_id)).then_some(()))
    })
    .await?;
    let topic = topic_for(&room.read_key());
    let env = Envelope::seal(room.id, &s.identity, 0, Default::default(), 1, b"x".to_vec());
    let plain = Wire::Envelopes(vec![env]).encode();
    let wrong = RoomCipher::new(&other.read_key()).seal(&topic.hash(), &plain)?;
    for (n, data) in [(1, wrong), (2, plain)] {
        s.publish_as_is(topic.clone(), data).await?;
        wait_for(TIMEOUT, "dropped, counted and an offence", || async {
            let st = a.handle.stats().await?;
            let offences = st.peers.get(&s_id).map_or(0, |p| p.offences);
            Ok((st.gossip_undecryptable >= n && offences >= n as u32).then_some(()))
        })
        .await?;
    }
    let st = a.handle.stats().await?;
    assert_eq!(st.gossip_undecryptable, 2);
    assert_eq!(st.rooms.get(&room.id).map(|r| r.log_len), Some(1), "only the host's own envelope is in the log");
    a.stop().await?;
    Ok(())
}

/// A message that does not open, forwarded by a peer that did not publish it (it relays
/// unchecked), is dropped and counted, but is no offence of that forwarder: its publisher
/// signed it, and only the publisher is blamed (here it is not even connected to the host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_message_that_does_not_open_is_no_offence_of_the_forwarder() -> Result<()> {
    let room = TestRoom::new("forwarded-junk");
    let a = Peer::memory("forwarded-junk-host").await?;
    a.join(&room, Some(room.token(Role::Host, 1)), "host").await?;
    let a_id = a.handle.peer_id();
    let f = Raw::spawn(Identity::from_passphrase("forwarded-junk-f"))?;
    f.seen.lock().unwrap().forward_all = true;
    f.connect(&a).await?;
    f.subscribe(&room, a_id).await?;
    let f_id = f.peer;
    let topic = topic_for(&room.read_key());
    let t = topic.hash();
    wait_for(TIMEOUT, "the forwarder meshed with the host", || async {
        let t = t.clone();
        Ok(f.run(move |s| s.behaviour().gossipsub.mesh_peers(&t).any(|p| *p == a_id)).await?.then_some(()))
    })
    .await?;
    // The publisher reaches the host only through the forwarder.
    let x = Raw::spawn(Identity::from_passphrase("forwarded-junk-x"))?;
    f.run(|s| s.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())).await??;
    let f_listen = wait_for(TIMEOUT, "the forwarder listens", || async {
        Ok(f.run(|s| s.listeners().find(|a| !a.to_string().ends_with("/tcp/0")).cloned()).await?)
    })
    .await?;
    x.run(move |s| s.dial(f_listen.with(libp2p::multiaddr::Protocol::P2p(f_id)))).await??;
    wait_for(TIMEOUT, "x connected to f", || async {
        Ok(x.seen.lock().unwrap().connected.contains(&f_id).then_some(()))
    })
    .await?;
    let tx = topic.clone();
    x.run(move |s| s.behaviour_mut().gossipsub.subscribe(&tx).map(|_| ())).await??;
    let x_id = x.peer;
    wait_for(TIMEOUT, "f sees x subscribed", || async {
        Ok(f.seen.lock().unwrap().subscribed.contains(&(x_id, t.clone())).then_some(()))
    })
    .await?;
    let mut n = 0u8;
    wait_for(TIMEOUT, "the host drops the forwarded junk", || {
        n = n.wrapping_add(1);
        let (a, x, topic) = (&a, &x, topic.clone());
        async move {
            let st = a.handle.stats().await?;
            if st.gossip_undecryptable >= 1 {
                return Ok(Some(()));
            }
            x.publish_as_is(topic, vec![0xA1, n, 1, 2, 3]).await?;
            Ok(None)
        }
    })
    .await?;
    let st = a.handle.stats().await?;
    assert_eq!(st.peers.get(&f_id).map_or(0, |p| p.offences), 0, "the forwarder was blamed");
    assert!(!a.handle.stats().await?.connected.contains(&x_id), "x reached the host directly");
    a.stop().await?;
    Ok(())
}
