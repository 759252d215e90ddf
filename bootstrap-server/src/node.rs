//! The node's shared state: its key, the sled database, the room registry, metrics.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arena_core::records::Meta;
use arena_core::{Admission, Grant, Identity, Invite, PeerKey, Role, Room, RoomConfig, RoomId, SledDb, FLAG_PROXY};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::chan;
use crate::config::Config;
use crate::error::BootstrapError;
use crate::hub::{self, HubCmd};
use crate::metrics::Metrics;

/// Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(crate) fn random_seed() -> Result<[u8; 32], BootstrapError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| BootstrapError::Io(std::io::Error::other(e.to_string())))?;
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

/// The node: cheap to clone.
#[derive(Clone, Debug)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) cfg: Config,
    pub(crate) identity: Identity,
    pub(crate) db: SledDb,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) public_url: String,
    pub(crate) rooms: Mutex<HashMap<RoomId, chan::Sender<HubCmd>>>,
    pub(crate) signal: crate::signal::Topics,
    /// `/yws` and `/signal` connections by their invite's expiry.
    pub(crate) live: Arc<crate::live::Live>,
    /// `/signal` connections open, per client IP, per invite link and in total.
    pub(crate) signal_caps: Arc<crate::limit::ConnCaps>,
    /// `/yws` connections open, per client IP, per invite link and in total.
    pub(crate) yws_caps: Arc<crate::limit::ConnCaps>,
    /// `POST /api/rooms` per client IP.
    pub(crate) room_rate: crate::limit::PerIp,
    /// `/yws` connections' deadlines, and the wheel that wakes them.
    pub(crate) deadlines: crate::ws::Deadlines,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(crate) flusher: mpsc::Sender<oneshot::Sender<Result<(), String>>>,
    pub(crate) p2p: std::sync::OnceLock<Arc<crate::p2p::P2p>>,
    /// A room is making its periodic checkpoint: one at a time on the whole node (see
    /// `Hub::checkpoint_if_due`).
    pub(crate) checkpointing: std::sync::atomic::AtomicBool,
}

/// Group commit across rooms: sled's flush makes the whole database durable, so one
/// flush answers every request that queued while the previous one ran. It runs on the
/// blocking pool, never on an async worker. Flushes start at least `interval` apart: a
/// room waits for its flush before it takes its next batch, so under load the wait makes
/// every room's batches (and the envelopes signed for them) bigger and the fsyncs fewer.
fn spawn_flusher(
    db: SledDb,
    metrics: Arc<Metrics>,
    interval: Duration,
) -> mpsc::Sender<oneshot::Sender<Result<(), String>>> {
    let (tx, mut rx) = mpsc::channel::<oneshot::Sender<Result<(), String>>>(4096);
    tokio::spawn(async move {
        let mut last: Option<tokio::time::Instant> = None;
        while let Some(first) = rx.recv().await {
            if let Some(next) = last.map(|t| t + interval).filter(|n| *n > tokio::time::Instant::now()) {
                tokio::time::sleep_until(next).await;
            }
            last = Some(tokio::time::Instant::now());
            let mut waiting = vec![first];
            while let Ok(more) = rx.try_recv() {
                waiting.push(more);
            }
            let db = db.clone();
            let started = Instant::now();
            let res = tokio::task::spawn_blocking(move || db.flush().map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            crate::metrics::inc(&metrics.store_flushes, 1);
            crate::metrics::inc(&metrics.store_flush_us, started.elapsed().as_micros() as u64);
            crate::metrics::inc(&metrics.store_commits, waiting.len() as u64);
            for w in waiting {
                let _ = w.send(res.clone());
            }
        }
    });
    tx
}

fn load_or_create_key(dir: &Path) -> Result<Identity, BootstrapError> {
    let path = dir.join("node.key");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let bytes = PeerKey::from_hex(s.trim()).map_err(|_| {
                BootstrapError::Io(std::io::Error::other(format!("{} is not a 64-hex-digit key", path.display())))
            })?;
            Ok(Identity::from_seed(bytes.0))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::from_seed(random_seed()?);
            // 0600 from its creation, never a moment readable by others.
            arena_node::write_private_file(&path, PeerKey(id.seed()).to_hex().as_bytes())
                .map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))?;
            Ok(id)
        }
        Err(e) => Err(BootstrapError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))),
    }
}

/// How the node's room actors open their rooms: the actor sends on every envelope sealed
/// from stock clients' updates, whichever call sealed them (`Room::take_sealed`), and makes
/// the periodic checkpoint itself, after sending what it relays (`Hub::checkpoint_if_due`).
pub(crate) fn room_config() -> RoomConfig {
    RoomConfig { collect_seals: true, deferred_checkpoints: true, ..RoomConfig::default() }
}

impl Node {
    /// Opens the data dir (creating it) and the node key.
    pub fn open(cfg: Config, public_url: String, shutdown: CancellationToken) -> Result<Self, BootstrapError> {
        crate::clock::start();
        // The node's alone: it holds the node key and every room's key (in sled).
        arena_node::create_private_dir(&cfg.data_dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("creating {}: {e}", cfg.data_dir.display())))?;
        let identity = load_or_create_key(&cfg.data_dir)?;
        let db = SledDb::open_with_cache(cfg.data_dir.join("sled"), cfg.store_cache_mb.saturating_mul(1 << 20))?;
        let adopted = db.adopt_room_records(OLD_ROOMS_TREE)?;
        if adopted > 0 {
            tracing::info!(rooms = adopted, "room records moved into the store's room entries");
        }
        let metrics = Arc::new(Metrics::default());
        let flusher = spawn_flusher(db.clone(), metrics.clone(), Duration::from_millis(cfg.commit_interval_ms));
        let signal_caps = Arc::new(crate::limit::ConnCaps::new(
            cfg.signal_max_per_ip,
            cfg.signal_max_per_token,
            cfg.signal_max_connections,
        ));
        let yws_caps =
            Arc::new(crate::limit::ConnCaps::new(cfg.yws_max_per_ip, cfg.yws_max_per_token, cfg.yws_max_connections));
        let room_rate = crate::limit::PerIp::per_minute(cfg.room_create_per_minute);
        let deadlines = crate::ws::Deadlines::new(cfg.ws_ping_ms, cfg.ws_idle_timeout_ms, cfg.ws_read_timeout_ms);
        Ok(Node {
            inner: Arc::new(Inner {
                cfg,
                identity,
                db: db.clone(),
                metrics,
                public_url,
                rooms: Mutex::new(HashMap::new()),
                signal: crate::signal::Topics::default(),
                live: Arc::default(),
                signal_caps,
                yws_caps,
                room_rate,
                deadlines,
                shutdown,
                tasks: tokio::sync::Mutex::new(Vec::new()),
                flusher,
                p2p: std::sync::OnceLock::new(),
                checkpointing: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The node's public key.
    pub fn public_key(&self) -> PeerKey {
        self.inner.identity.public()
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn cfg(&self) -> &Config {
        &self.inner.cfg
    }

    pub(crate) fn room_key(&self, room: &RoomId) -> Result<Option<Identity>, BootstrapError> {
        let Some(raw) = self.inner.db.room_record(room)? else { return Ok(None) };
        let rec: RoomRecord = serde_json::from_slice(&raw)
            .map_err(|e| BootstrapError::Io(std::io::Error::other(format!("room record {room}: {e}"))))?;
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
        let raw = serde_json::to_vec(&rec).map_err(|e| BootstrapError::Io(std::io::Error::other(e)))?;
        self.inner.db.set_room_record(&id, &raw)?;
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
        if !hosted && self.inner.p2p.get().is_none() {
            return Err(AuthError::UnknownRoom);
        }
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::MissingToken)?;
        let invite = Invite::from_token(token, &id, now_ms() / 1000).map_err(|e| AuthError::BadToken(e.to_string()))?;
        Ok((id, invite.grant))
    }

    /// [`Node::authorize`], and refused when the link was revoked (see
    /// [`Node::link_revoked`]). For `/signal`; `/yws` lets the room's actor refuse a revoked
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

    /// The room's actor, loading the room from sled if it is not in memory.
    pub(crate) async fn hub(&self, room: &RoomId, token: Option<&str>) -> Result<chan::Sender<HubCmd>, BootstrapError> {
        if let Some(tx) = self.loaded_hub(room) {
            return Ok(tx);
        }
        let room_key = self.room_key(room)?;
        if room_key.is_none() && self.inner.p2p.get().is_none() {
            return Err(BootstrapError::UnknownRoom(room.to_hex()));
        }
        let loaded = self.open_room(room)?;
        let (tx, handle) = {
            let mut map = self.inner.rooms.lock().map_err(|_| BootstrapError::RoomGone(room.to_hex()))?;
            // Another task may have loaded it meanwhile: keep the first one.
            if let Some(existing) = map.get(room).filter(|t| !t.is_closed()) {
                return Ok(existing.clone());
            }
            let (tx, handle) = hub::spawn(self.clone(), loaded);
            map.insert(*room, tx.clone());
            (tx, handle)
        };
        let mut tasks = self.inner.tasks.lock().await;
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
        drop(tasks);
        if crate::p2p::joined(self, room) || crate::p2p::join_eagerly(self, room_key.is_some()) {
            tokio::spawn(crate::p2p::attach(self.clone(), *room, room_key, token.map(str::to_owned), tx.clone()));
        }
        Ok(tx)
    }

    /// Opens a room's replica from sled (what a room actor holds).
    pub(crate) fn open_room(&self, room: &RoomId) -> Result<Room<arena_core::SledStore>, BootstrapError> {
        let store = self.inner.db.room(room)?;
        Ok(Room::open(*room, self.inner.identity.clone(), 0, store, room_config(), now_ms())?)
    }

    pub(crate) fn loaded_hub(&self, room: &RoomId) -> Option<chan::Sender<HubCmd>> {
        let map = self.inner.rooms.lock().ok()?;
        map.get(room).filter(|t| !t.is_closed()).cloned()
    }

    pub(crate) fn loaded_hubs(&self) -> Vec<(RoomId, chan::Sender<HubCmd>)> {
        match self.inner.rooms.lock() {
            Ok(map) => map.iter().filter(|(_, t)| !t.is_closed()).map(|(k, t)| (*k, t.clone())).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Tells every loaded room that the node is stopping (rooms keep no watch on the
    /// shutdown token of their own; one loaded after this sees the token at its first poll).
    pub(crate) async fn stop_rooms(&self) {
        for (_, hub) in self.loaded_hubs() {
            let _ = hub.send(HubCmd::Shutdown).await;
        }
    }

    pub(crate) fn forget_room(&self, room: &RoomId) {
        if let Ok(mut map) = self.inner.rooms.lock() {
            if map.get(room).is_some_and(|t| t.is_closed()) {
                map.remove(room);
            }
        }
    }

    /// Makes everything written so far durable (shared group commit).
    pub(crate) async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.inner.flusher.send(tx).await.map_err(|_| "flusher stopped".to_owned())?;
        rx.await.map_err(|_| "flusher stopped".to_owned())?
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

    async fn commit(
        flusher: &mpsc::Sender<oneshot::Sender<Result<(), String>>>,
    ) -> oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        flusher.send(tx).await.unwrap();
        rx
    }

    /// A data dir whose room records are still in the old side tree opens with its rooms
    /// hosted: their invites check out and their key is found.
    #[tokio::test]
    async fn room_records_of_the_old_side_tree_are_adopted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Node::open(crate::Config::for_tests(dir.path()), "http://127.0.0.1:0".into(), CancellationToken::new())
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
            match Node::open(
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

    #[tokio::test]
    async fn the_group_commit_waits_out_its_interval_and_covers_what_queued_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let db = SledDb::open(dir.path()).unwrap();
        let metrics = Arc::new(Metrics::default());
        let interval = Duration::from_millis(300);
        let flusher = spawn_flusher(db, metrics.clone(), interval);
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);

        // The first request is flushed and answered.
        let first = Instant::now();
        commit(&flusher).await.await.unwrap().unwrap();
        assert_eq!(count(&metrics.store_flushes), 1);
        // The next one waits for the interval; what arrives meanwhile rides along.
        let second = commit(&flusher).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = commit(&flusher).await;
        second.await.unwrap().unwrap();
        third.await.unwrap().unwrap();
        assert!(first.elapsed() >= interval, "answered after {:?}", first.elapsed());
        assert_eq!(count(&metrics.store_flushes), 2, "the two requests shared one flush");
        assert_eq!(count(&metrics.store_commits), 3);
    }
}
