//! The libp2p behaviour every arena node runs, and the protocol names: one place, so the
//! native peer and the bootstrap node (which builds the same behaviour in server mode)
//! cannot drift apart.
//!
//! | protocol | what |
//! |---|---|
//! | gossipsub, topics [`topic_for`], [`presence_topic_for`] | live envelopes and presence of one room, chunked under [`GOSSIP_CHUNK`], each message sealed under the room's read key ([`RoomCipher`]; topic names derived from that key, so they do not name the room); only members' messages are accepted and forwarded. A stranger on the topic sees sizes, timing and publisher peer ids, nothing inside (see `behaviour/sealed.rs`) |
//! | [`SYNC_PROTOCOL`] | catch-up, members only (the requester's peer id is an admitted member's key, or the request carries its admission): admissions + `Want` → the envelopes the requester lacks, paged |
//! | [`IDENTIFY_PROTOCOL`], ping | addresses and liveness |
//! | [`KAD_PROTOCOL`] | our own Kademlia DHT (not the public IPFS one): peer routing, room providers ([`provider_key`], derived from the read key) |
//! | rendezvous, namespace [`namespace_for`] | room discovery through bootstrap nodes (namespace derived from the read key) |
//! | relay v2 + dcutr | reaching peers behind NAT |

mod codec;
mod sealed;

use std::time::Duration;

use arena_core::sync::wire::GOSSIP_CHUNK;
use arena_core::{Identity, PeerKey};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, dcutr, gossipsub, identify, identity, kad, memory_connection_limits, noise, ping, relay,
    rendezvous, request_response, tcp, yamux,
};
use libp2p::{PeerId, StreamProtocol, Swarm, SwarmBuilder};
use sha2::{Digest, Sha256};

pub use codec::{SyncCodec, SyncRequest, SyncResponse, SyncStatus, MAX_REQUEST, MAX_RESPONSE};
pub use sealed::{namespace_for, presence_topic_for, provider_key, topic_for, RoomCipher, SEALED_V1, SEAL_OVERHEAD};

use crate::error::{NodeError, Result};

/// Catch-up by envelope vector (request-response).
pub const SYNC_PROTOCOL: &str = "/arena/sync/1";
/// Identify's protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/arena/id/1";
/// Our Kademlia DHT.
pub const KAD_PROTOCOL: &str = "/arena/kad/1";
/// Largest gossipsub RPC frame: a [`GOSSIP_CHUNK`] plus gossipsub's own framing, key and
/// signature, and the control messages that may ride along (measured: a full chunk arrived
/// as a 72 KiB frame).
pub const MAX_GOSSIP_MESSAGE: usize = 2 * GOSSIP_CHUNK;

/// Largest awareness update accepted on a presence topic.
pub const MAX_PRESENCE_MESSAGE: usize = 32 << 10;

/// The libp2p keypair of an arena identity: the same Ed25519 key, so a peer's libp2p id
/// and its envelope-signing key are one.
pub fn keypair_of(identity: &Identity) -> identity::Keypair {
    let mut seed = identity.seed();
    // `ed25519_from_bytes` only fails for a slice that is not 32 bytes.
    identity::Keypair::ed25519_from_bytes(&mut seed).unwrap_or_else(|_| identity::Keypair::generate_ed25519())
}

/// The arena key behind a peer id: the member key a peer proves with its admission (an
/// arena node's libp2p identity is its member key, see [`keypair_of`]). Noise authenticates
/// the peer id of every connection, relayed ones included (the handshake runs end to end
/// through the circuit), and gossipsub's strict mode the publisher of every message, so the
/// key of either is one the remote holds. `None` for a peer id that is not an Ed25519 key.
pub fn peer_key(peer: &PeerId) -> Option<PeerKey> {
    let hash = peer.as_ref();
    // An identity multihash of the key's protobuf encoding: type Ed25519 (field 1 = 1),
    // then 32 bytes of key (field 2). This is how `to_peer_id` encodes every Ed25519 key.
    const ED25519_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x20];
    let digest = hash.digest();
    if hash.code() == 0 && digest.len() == 36 && digest[..4] == ED25519_PREFIX {
        let mut key = [0u8; 32];
        key.copy_from_slice(&digest[4..]);
        return Some(PeerKey(key));
    }
    None
}

/// The peer id of an arena key (the inverse of [`peer_key`]); `None` for bytes that are not
/// an Ed25519 public key.
pub fn peer_id_of(key: &PeerKey) -> Option<PeerId> {
    let ed = identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(identity::PublicKey::from(ed).to_peer_id())
}

/// Which server roles this node plays (the bootstrap node turns them all on).
#[derive(Clone, Debug)]
pub struct BehaviourConfig {
    /// Serve rendezvous registrations and discoveries.
    pub rendezvous_server: bool,
    /// Act as a relay v2 server (reservations and circuits for NATed peers).
    pub relay_server: bool,
    /// Kademlia in server mode (answer DHT queries) instead of automatic.
    pub kad_server: bool,
    /// Gossipsub heartbeat (mesh maintenance, gossip).
    pub heartbeat: Duration,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
    /// Timeout of a sync request.
    pub request_timeout: Duration,
    /// Try to upgrade relayed connections to direct ones (dcutr). Off only to measure or
    /// test the relayed path itself.
    pub hole_punching: bool,
    /// Caps on connections and on the process's memory while accepting them.
    pub limits: ConnectionCaps,
    /// The peers the relay server serves: members of a room this node holds (the node
    /// keeps the set current). Reservations and circuits of any other peer are denied.
    pub relay_members: RelayMembers,
}

/// The peer ids the relay serves (see [`BehaviourConfig::relay_members`]), shared between
/// the relay behaviour and the node that keeps it current.
#[derive(Clone, Debug, Default)]
pub struct RelayMembers(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<PeerId>>>);

impl RelayMembers {
    /// Whether `peer` may reserve a slot or open a circuit.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.0.lock().map(|s| s.contains(peer)).unwrap_or(false)
    }

    /// Replaces the set.
    pub fn set(&self, peers: std::collections::HashSet<PeerId>) {
        if let Ok(mut s) = self.0.lock() {
            *s = peers;
        }
    }

    /// How many peers the relay serves.
    pub fn len(&self) -> usize {
        self.0.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether the relay serves nobody.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Caps on connections (libp2p's `connection-limits` and `memory-connection-limits`): a
/// connection over a cap is refused (an incoming one is closed right after its handshake).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnectionCaps {
    /// Established connections in all, incoming and outgoing.
    pub max_established: u32,
    /// Established connections to one peer id.
    pub max_established_per_peer: u32,
    /// Incoming connections still in their handshake.
    pub max_pending_incoming: u32,
    /// Refuse new connections while the process uses more than this fraction of the
    /// machine's physical memory (`0.0 < x <= 1.0`).
    pub max_memory_fraction: f64,
    /// `/arena/sync/1` requests a connection may have open at once (inbound and outbound
    /// each); with `NodeConfig::max_answer_bytes` this bounds what answers queue per peer.
    pub max_sync_streams: usize,
}

impl Default for ConnectionCaps {
    fn default() -> Self {
        ConnectionCaps {
            max_established: 256,
            max_established_per_peer: 8,
            max_pending_incoming: 32,
            max_memory_fraction: 0.8,
            max_sync_streams: 8,
        }
    }
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            rendezvous_server: false,
            relay_server: false,
            kad_server: false,
            heartbeat: Duration::from_millis(700),
            idle_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            hole_punching: true,
            limits: ConnectionCaps::default(),
            relay_members: RelayMembers::default(),
        }
    }
}

impl BehaviourConfig {
    /// Every server role on: what a bootstrap node runs.
    pub fn server() -> Self {
        BehaviourConfig { rendezvous_server: true, relay_server: true, kad_server: true, ..Self::default() }
    }
}

/// Relay limits for interviews. Only members of a room this node holds may reserve a slot
/// or open a circuit (`members`, checked through the relay's rate-limiter hook, which sees
/// every reservation and circuit request with the peer id noise authenticated); the limits
/// stay small because a member's key costs nothing to re-admit under a fresh link: libp2p's defaults
/// (2 minutes and 128 KiB per circuit) cut a relayed session after a few hundred
/// keystrokes, so a circuit lives up to 2 hours and 64 MiB (a typed interview is a few MiB;
/// a peer reconnects through a new circuit after that, and dcutr usually upgrades to a
/// direct connection long before); few reservations and circuits, rate-limited per peer and
/// per IP.
fn relay_config(members: &RelayMembers) -> relay::Config {
    let n = |x: u32| std::num::NonZeroU32::new(x).unwrap_or(std::num::NonZeroU32::MIN);
    let gate = |m: RelayMembers| -> Box<dyn relay::RateLimiter> {
        Box::new(move |peer: PeerId, _: &libp2p::Multiaddr, _: std::time::Instant| m.contains(&peer))
    };
    let minute = Duration::from_secs(60);
    relay::Config {
        max_reservations: 64,
        max_reservations_per_peer: 2,
        reservation_duration: Duration::from_secs(3600),
        max_circuit_duration: Duration::from_secs(2 * 3600),
        max_circuit_bytes: 64 << 20,
        max_circuits: 32,
        max_circuits_per_peer: 4,
        reservation_rate_limiters: vec![gate(members.clone())],
        circuit_src_rate_limiters: vec![gate(members.clone())],
    }
    .reservation_rate_per_peer(n(6), minute)
    .reservation_rate_per_ip(n(30), minute)
    .circuit_src_per_peer(n(12), minute)
    .circuit_src_per_ip(n(60), minute)
}

/// The behaviour of an arena node.
#[derive(NetworkBehaviour)]
pub struct ArenaBehaviour {
    /// Live envelopes, a topic per room, every message validated by the room's ledger.
    pub gossipsub: gossipsub::Behaviour,
    /// `/arena/sync/1` catch-up.
    pub sync: request_response::Behaviour<SyncCodec>,
    /// Addresses and protocols of peers.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Peer routing and room providers.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Registering and discovering rooms at rendezvous servers.
    pub rendezvous: rendezvous::client::Behaviour,
    /// Rendezvous server (bootstrap nodes).
    pub rendezvous_server: Toggle<rendezvous::server::Behaviour>,
    /// Relay client: listen through a relay, dial through one.
    pub relay_client: relay::client::Behaviour,
    /// Relay server (bootstrap nodes).
    pub relay_server: Toggle<relay::Behaviour>,
    /// Hole punching over relayed connections.
    pub dcutr: Toggle<dcutr::Behaviour>,
    /// Caps on connections ([`ConnectionCaps`]).
    pub limits: connection_limits::Behaviour,
    /// No new connection while memory is short.
    pub memory: memory_connection_limits::Behaviour,
}

impl std::fmt::Debug for ArenaBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArenaBehaviour").finish_non_exhaustive()
    }
}

/// Gossipsub's configuration: strict signing and validation (nothing is forwarded before
/// the room's ledger accepted it), content-addressed message ids (over the sealed bytes:
/// each seal has a fresh nonce, so the same chunk sealed twice is two messages, which
/// receivers apply once; the same sealed bytes forwarded along two paths are one), chunk-sized
/// messages.
fn gossip_config(cfg: &BehaviourConfig) -> Result<gossipsub::Config> {
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP_MESSAGE)
        .heartbeat_interval(cfg.heartbeat)
        .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId::from(&Sha256::digest(&m.data)[..20]))
        .build()
        .map_err(|e| NodeError::Transport(format!("gossipsub config: {e}")))
}

/// Peer scoring: only what a peer does wrong counts (invalid messages per topic, see
/// [`topic_score_params`], and the application's own penalties); a quiet peer in a quiet
/// room is not punished, and peers sharing an IP (a NAT, a test on loopback) are not either.
fn score_params() -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let params =
        gossipsub::PeerScoreParams { app_specific_weight: 1.0, ip_colocation_factor_weight: 0.0, ..Default::default() };
    (params, gossipsub::PeerScoreThresholds::default())
}

/// Score parameters of a room topic: each invalid message costs its sender; three put it
/// below the graylist threshold (its messages are ignored), and the penalty decays.
pub fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.9,
        ..Default::default()
    }
}

impl ArenaBehaviour {
    /// Builds the behaviour for `key` (the relay client comes from the swarm builder).
    pub fn new(key: &identity::Keypair, relay_client: relay::client::Behaviour, cfg: &BehaviourConfig) -> Result<Self> {
        let peer_id = key.public().to_peer_id();
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config(cfg)?)
                .map_err(|e| NodeError::Transport(format!("gossipsub: {e}")))?;
        let (params, thresholds) = score_params();
        gossipsub
            .with_peer_score(params, thresholds)
            .map_err(|e| NodeError::Transport(format!("gossipsub score: {e}")))?;
        let sync = request_response::Behaviour::with_codec(
            SyncCodec,
            [(StreamProtocol::new(SYNC_PROTOCOL), request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(cfg.request_timeout)
                .with_max_concurrent_streams(cfg.limits.max_sync_streams.max(1)),
        );
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                .with_agent_version(format!("arena-node/{}", env!("CARGO_PKG_VERSION"))),
        );
        let mut kad = kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::new(peer_id),
            kad::Config::new(StreamProtocol::new(KAD_PROTOCOL)),
        );
        if cfg.kad_server {
            kad.set_mode(Some(kad::Mode::Server));
        }
        Ok(ArenaBehaviour {
            gossipsub,
            sync,
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            rendezvous: rendezvous::client::Behaviour::new(key.clone()),
            rendezvous_server: cfg
                .rendezvous_server
                .then(|| rendezvous::server::Behaviour::new(rendezvous::server::Config::default()))
                .into(),
            relay_client,
            relay_server: cfg
                .relay_server
                .then(|| relay::Behaviour::new(peer_id, relay_config(&cfg.relay_members)))
                .into(),
            dcutr: Toggle::from(cfg.hole_punching.then(|| dcutr::Behaviour::new(peer_id))),
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(cfg.limits.max_established))
                    .with_max_established_per_peer(Some(cfg.limits.max_established_per_peer))
                    .with_max_pending_incoming(Some(cfg.limits.max_pending_incoming)),
            ),
            memory: memory_connection_limits::Behaviour::with_max_percentage(
                cfg.limits.max_memory_fraction.clamp(0.01, 1.0),
            ),
        })
    }
}

/// A swarm with TCP and QUIC (noise + yamux over TCP), the relay client transport and
/// [`ArenaBehaviour`]. Must be called inside a tokio runtime.
pub fn build_swarm(key: identity::Keypair, cfg: &BehaviourConfig) -> Result<Swarm<ArenaBehaviour>> {
    let transport_err = |e: &dyn std::fmt::Display| NodeError::Transport(e.to_string());
    let mut built = None;
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| transport_err(&e))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| transport_err(&e))?
        .with_behaviour(|key, relay_client| match ArenaBehaviour::new(key, relay_client, cfg) {
            Ok(b) => Ok(b),
            Err(e) => {
                built = Some(e.to_string());
                Err(Box::<dyn std::error::Error + Send + Sync>::from(e.to_string()))
            }
        })
        .map_err(|e| NodeError::Transport(built.take().unwrap_or_else(|| e.to_string())))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(cfg.idle_timeout))
        .build();
    Ok(swarm)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        assert_eq!(SYNC_PROTOCOL, "/arena/sync/1");
        let id = Identity::from_passphrase("peer");
        assert_eq!(keypair_of(&id).public().to_peer_id(), keypair_of(&id).public().to_peer_id());
        // A peer id and the member key behind it convert both ways.
        let peer = keypair_of(&id).public().to_peer_id();
        assert_eq!(peer_key(&peer), Some(id.public()));
        assert_eq!(peer_id_of(&id.public()), Some(peer));
        assert_eq!(peer_key(&PeerId::random()), None);
        topic_score_params().validate().unwrap();
    }
}
