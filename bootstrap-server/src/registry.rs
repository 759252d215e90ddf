//! The room registry: the node's key and sled database, the rooms it hosts (created here,
//! their keys kept in sled), the rooms loaded in memory (each one's actor, loaded and spawned
//! here), and who may join which room ([`Registry::authorize`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arena_core::records::Meta;
use arena_core::{
    Admission, Grant, Identity, Invite, PeerKey, Role, Room, RoomConfig, RoomId, SledDb, SledStore, FLAG_PROXY,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::chan;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::BootstrapError;
use crate::metrics::Metrics;
use crate::room::{self, Env, RoomCmd, Rooms, Tunables};
use crate::ws::Deadlines;

pub(crate) fn random_seed() -> Result<[u8; 32], BootstrapError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(BootstrapError::Randomness)?;
    Ok(seed)
}

/// Where the node kept its room records before they moved into the store's room entries
/// ([`SledDb::set_room_record`]); adopted from there at open.
const OLD_ROOMS_TREE: &str = "node/rooms";

/// What the node keeps about a room it hosts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RoomRecord {
    /// The room key's seed, hex: the node issues the room's invites.
    pub(crate) key: String,
    pub(crate) created_at: u64,
}

/// Tokens for a new room.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CreatedRoom {
    pub(crate) room: String,
    pub(crate) tokens: HashMap<&'static str, String>,
    pub(crate) links: HashMap<&'static str, String>,
}

/// The bootstrap node's room registry: cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: Config,
    identity: Identity,
    db: SledDb,
    public_url: String,
    /// What every room actor runs with (the loaded rooms among it).
    env: Arc<Env<SledStore>>,
    /// The room actors' tasks, awaited at shutdown.
    tasks: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn load_or_create_key(dir: &Path) -> Result<Identity, BootstrapError> {
    let path = dir.join("node.key");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let bytes = PeerKey::from_hex(s.trim()).map_err(|_| BootstrapError::BadKeyFile { path: path.clone() })?;
            Ok(Identity::from_seed(bytes.0))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::from_seed(random_seed()?);
            // 0600 from its creation, never a moment readable by others.
            arena_node::write_private_file(&path, PeerKey(id.seed()).to_hex().as_bytes())
                .map_err(|source| BootstrapError::File { path: path.clone(), source })?;
            Ok(id)
        }
        Err(source) => Err(BootstrapError::File { path, source }),
    }
}

impl Registry {
    /// Opens the data dir (creating it) and the node key.
    pub fn open(cfg: Config, public_url: String, shutdown: CancellationToken) -> Result<Self, BootstrapError> {
        crate::clock::start();
        // The node's alone: it holds the node key and every room's key (in sled).
        arena_node::create_private_dir(&cfg.data_dir)
            .map_err(|source| BootstrapError::File { path: cfg.data_dir.clone(), source })?;
        let identity = load_or_create_key(&cfg.data_dir)?;
        let db = SledDb::open_with_cache(cfg.data_dir.join("sled"), cfg.store_cache_mb.saturating_mul(1 << 20))?;
        let adopted = db.adopt_room_records(OLD_ROOMS_TREE)?;
        if adopted > 0 {
            tracing::info!(rooms = adopted, "room records moved into the store's room entries");
        }
        let metrics = Arc::new(Metrics::default());
        let flusher = {
            let db = db.clone();
            let interval = Duration::from_millis(cfg.commit_interval_ms);
            crate::flush::spawn(
                move || {
                    let res = db.flush().map_err(|e| e.to_string());
                    crate::reclaim::after_flush();
                    res
                },
                metrics.clone(),
                interval,
            )
        };
        let open: room::Opener<SledStore> = {
            let (db, identity) = (db.clone(), identity.clone());
            Box::new(move |id| Ok(Room::open(*id, identity.clone(), 0, db.room(id)?, room::room_config(), now_ms())?))
        };
        let env = Arc::new(Env {
            tunables: Tunables::from_config(&cfg),
            metrics,
            flusher,
            network: std::sync::OnceLock::new(),
            shutdown,
            live: Arc::default(),
            rooms: Rooms::default(),
            deadlines: Deadlines::new(cfg.ws_ping_ms, cfg.ws_idle_timeout_ms, cfg.ws_read_timeout_ms),
            checkpointing: std::sync::atomic::AtomicBool::new(false),
            open,
        });
        Ok(Registry {
            inner: Arc::new(Inner { cfg, identity, db, public_url, env, tasks: tokio::sync::Mutex::new(Vec::new()) }),
        })
    }

    /// The node's public key.
    pub fn public_key(&self) -> PeerKey {
        self.inner.identity.public()
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.env.metrics
    }

    pub(crate) fn cfg(&self) -> &Config {
        &self.inner.cfg
    }

    /// What the room actors run with.
    pub(crate) fn env(&self) -> &Arc<Env<SledStore>> {
        &self.inner.env
    }

    /// The node's key.
    pub(crate) fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Closes every live connection (`/yws` and `/signal`) of `room` that joined with
    /// `grant`, with `reason`; returns how many. The hook for revocation: a revoked grant's
    /// connections end at once instead of at their expiry.
    pub fn close_grant(&self, room: &RoomId, grant: &Grant, reason: &str) -> usize {
        self.inner.env.close_link(room, &grant.invite, reason)
    }

    /// Closes every live connection of `room` that joined with the invite whose key is
    /// `invite` (a revoked invite, or a revoked member's link); returns how many.
    pub fn close_invite(&self, room: &RoomId, invite: &PeerKey, reason: &str) -> usize {
        self.inner.env.close_link(room, invite, reason)
    }

    pub(crate) fn room_key(&self, room: &RoomId) -> Result<Option<Identity>, BootstrapError> {
        let Some(raw) = self.inner.db.room_record(room)? else { return Ok(None) };
        let rec: RoomRecord = serde_json::from_slice(&raw)
            .map_err(|source| BootstrapError::RoomRecord { room: room.to_hex(), source })?;
        let seed = PeerKey::from_hex(&rec.key)?;
        Ok(Some(Identity::from_seed(seed.0)))
    }

    /// Number of rooms this node hosts.
    pub fn room_count(&self) -> usize {
        self.inner.db.room_records()
    }

    /// Creates a room: a fresh room key, the node admitted as proxy host, the metadata
    /// written, invite tokens for each role, valid for `ttl_secs`.
    pub(crate) fn create_room(
        &self,
        title: &str,
        language: &str,
        ttl_secs: u64,
    ) -> Result<CreatedRoom, BootstrapError> {
        let room_key = Identity::from_seed(random_seed()?);
        let id = room_key.public();
        let now = now_ms();
        let rec = RoomRecord { key: PeerKey(room_key.seed()).to_hex(), created_at: now };
        let raw =
            serde_json::to_vec(&rec).map_err(|source| BootstrapError::RoomRecord { room: id.to_hex(), source })?;
        self.inner.db.set_room_record(&id, &raw)?;
        // The room's document, built, written and dropped here: in the documents' heap.
        crate::reclaim::documents(|| -> Result<(), BootstrapError> {
            let mut room =
                Room::open(id, self.inner.identity.clone(), 0, self.inner.db.room(&id)?, RoomConfig::default(), now)?;
            let node_invite =
                Invite::bound(&room_key, self.inner.identity.clone(), Role::Host, u64::MAX / 2, FLAG_PROXY, now);
            room.admit(&Admission::sign(&self.inner.identity, &node_invite, "bootstrap node", now), None)?;
            let meta = Meta {
                title: title.to_owned(),
                language: language.to_owned(),
                created_at: now,
                analyzer_threshold: vec![Role::Host, Role::Candidate],
                ..Meta::default()
            };
            room.edit(now, |e| e.set_meta_record(&meta))?;
            room.flush()?;
            Ok(())
        })?;
        let expiry = (now / 1000).saturating_add(ttl_secs);
        let mut tokens = HashMap::new();
        let mut links = HashMap::new();
        for (i, role) in [Role::Host, Role::Candidate, Role::Observer].into_iter().enumerate() {
            let t = Invite::issue(&room_key, role, expiry, 0, now.wrapping_add(i as u64)).to_token();
            links.insert(role.as_str(), format!("{}/room/{}#token={t}", self.inner.public_url, id));
            tokens.insert(role.as_str(), t);
        }
        Ok(CreatedRoom { room: id.to_hex(), tokens, links })
    }

    /// Parses a room id and checks a token for it; returns the grant.
    pub(crate) fn authorize(&self, room: &str, token: Option<&str>) -> Result<(RoomId, Grant), AuthError> {
        let id = PeerKey::from_hex(room).map_err(|_| AuthError::UnknownRoom)?;
        // Rooms hosted elsewhere are served when this node federates over libp2p: the room
        // id is the room key, so the token checks out without it.
        let hosted = self.room_key(&id).map_err(|e| AuthError::Internal(e.to_string()))?.is_some();
        if !hosted && self.inner.env.network.get().is_none() {
            return Err(AuthError::UnknownRoom);
        }
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::MissingToken)?;
        let invite = Invite::from_token(token, &id, now_ms()).map_err(|e| AuthError::BadToken(e.to_string()))?;
        Ok((id, invite.grant))
    }

    /// [`Registry::authorize`], and refused when the link was revoked (see
    /// [`Registry::link_revoked`]). For `/signal`; `/yws` lets the room's actor refuse a revoked
    /// link, which closes the connection with a reason the web room shows.
    pub(crate) fn authorize_unrevoked(&self, room: &str, token: Option<&str>) -> Result<(RoomId, Grant), AuthError> {
        let (id, grant) = self.authorize(room, token)?;
        if self.link_revoked(&id, &grant.invite).map_err(|e| AuthError::Internal(e.to_string()))? {
            return Err(AuthError::Revoked);
        }
        Ok((id, grant))
    }

    /// Whether a host revoked the invite whose key is `invite`, or a member who joined with
    /// it, as this node's store of the room holds it (a read of the room's revocations and,
    /// when there are any, its admissions).
    pub(crate) fn link_revoked(&self, room: &RoomId, invite: &PeerKey) -> Result<bool, BootstrapError> {
        use arena_core::Store;
        let store = self.inner.db.room(room)?;
        let revoked: HashSet<PeerKey> = store.revocations()?.into_iter().map(|r| r.target).collect();
        if revoked.is_empty() {
            return Ok(false);
        }
        Ok(revoked.contains(invite)
            || store.admissions()?.iter().any(|a| a.grant.invite == *invite && revoked.contains(&a.member)))
    }

    /// The room's actor, loading the room from sled if it is not in memory (and joining it
    /// on the network, when the node should: see [`room::Network::room_loaded`]).
    pub(crate) async fn actor(
        &self,
        room: &RoomId,
        token: Option<&str>,
    ) -> Result<chan::Sender<RoomCmd>, BootstrapError> {
        let env = &self.inner.env;
        if let Some(tx) = env.rooms.get(room) {
            return Ok(tx);
        }
        let room_key = self.room_key(room)?;
        if room_key.is_none() && env.network.get().is_none() {
            return Err(BootstrapError::UnknownRoom(room.to_hex()));
        }
        let loaded = self.open_room(room)?;
        // Another task may have loaded it meanwhile: the first one stays.
        let (tx, handle) = env
            .rooms
            .get_or_spawn(*room, || room::spawn(env.clone(), loaded))
            .ok_or_else(|| BootstrapError::RoomGone(room.to_hex()))?;
        let Some(handle) = handle else { return Ok(tx) };
        let mut tasks = self.inner.tasks.lock().await;
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
        drop(tasks);
        if let Some(net) = env.network.get() {
            net.clone().room_loaded(*room, room_key, token, &tx);
        }
        Ok(tx)
    }

    /// Opens a room's replica from sled (what a room actor holds).
    pub(crate) fn open_room(&self, room: &RoomId) -> Result<Room<SledStore>, BootstrapError> {
        (self.inner.env.open)(room)
    }

    /// The room's actor, if the room is loaded.
    pub(crate) fn loaded(&self, room: &RoomId) -> Option<chan::Sender<RoomCmd>> {
        self.inner.env.rooms.get(room)
    }

    /// Tells every loaded room that the node is stopping (rooms keep no watch on the
    /// shutdown token of their own; one loaded after this sees the token at its first poll).
    pub(crate) async fn stop_rooms(&self) {
        for (_, actor) in self.inner.env.rooms.all() {
            let _ = actor.send(RoomCmd::Shutdown).await;
        }
    }

    /// Waits for every room actor to flush and stop.
    pub async fn join_all(&self) {
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().await);
        for t in tasks {
            let _ = t.await;
        }
        let _ = self.inner.db.flush();
    }
}

/// Why a token was refused.
#[derive(Debug)]
pub(crate) enum AuthError {
    UnknownRoom,
    MissingToken,
    BadToken(String),
    /// A host revoked the link (or removed the member who joined with it).
    Revoked,
    Internal(String),
}

impl AuthError {
    pub(crate) fn message(&self) -> String {
        match self {
            AuthError::UnknownRoom => "unknown room".into(),
            AuthError::MissingToken => "a token is required (?token=...)".into(),
            AuthError::BadToken(e) => format!("invalid token: {e}"),
            AuthError::Revoked => "this invite link was revoked by the room's host".into(),
            AuthError::Internal(_) => "internal error".into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// A data dir whose room records are still in the old side tree opens with its rooms
    /// hosted: their invites check out and their key is found.
    #[tokio::test]
    async fn room_records_of_the_old_side_tree_are_adopted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Registry::open(crate::Config::for_tests(dir.path()), "http://127.0.0.1:0".into(), CancellationToken::new())
                .unwrap()
        };
        let (room, token) = {
            let node = open();
            let created = node.create_room("old", "rust", 3600).unwrap();
            let id = PeerKey::from_hex(&created.room).unwrap();
            // As the node kept it before: in its own tree, not in the room's entry.
            let record = node.inner.db.room_record(&id).unwrap().unwrap();
            node.inner.db.put(OLD_ROOMS_TREE, &id.0, &record).unwrap();
            node.inner.db.set_room_record(&id, b"").unwrap();
            node.inner.db.flush().unwrap();
            assert!(node.room_key(&id).unwrap().is_none(), "the record was not moved out");
            (created.room, created.tokens["candidate"].clone())
        };
        // sled lets go of the directory a moment after its last handle.
        let node = loop {
            match Registry::open(
                crate::Config::for_tests(dir.path()),
                "http://127.0.0.1:0".into(),
                CancellationToken::new(),
            ) {
                Ok(n) => break n,
                Err(e) => {
                    assert!(e.to_string().contains("lock"), "reopening: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let id = PeerKey::from_hex(&room).unwrap();
        assert!(node.room_key(&id).unwrap().is_some());
        assert_eq!(node.room_count(), 1);
        let (got, grant) = node.authorize(&room, Some(&token)).unwrap();
        assert_eq!((got, grant.role), (id, Role::Candidate));
    }
}
