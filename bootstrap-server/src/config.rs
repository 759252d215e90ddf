//! The node's configuration: every flag also reads an `ARENA_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// arena-bootstrap: the self-hosted InterviewArena node. Hands out rooms and invites,
/// serves stock Yjs clients over y-websocket (`/yws/{room}`), signals WebRTC peers
/// (`/signal`, the y-webrtc protocol) and keeps every room's signed history in sled.
#[derive(Clone, Debug, Parser)]
#[command(name = "arena-bootstrap", version, about, long_about = None)]
pub struct Config {
    /// HTTP listen address (port 0 picks a free port).
    #[arg(long, env = "ARENA_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Where sled keeps rooms, history and the node key.
    #[arg(long, env = "ARENA_DATA_DIR", default_value = "./arena-data")]
    pub data_dir: PathBuf,

    /// Public base URL used in invite links (default: http://{http-addr}).
    #[arg(long, env = "ARENA_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// ICE servers handed to browsers, e.g. `stun:stun.example.org:3478` or
    /// `turn:user:pass@turn.example.org:3478` (repeatable, or comma-separated in the env var).
    #[arg(long = "ice-server", env = "ARENA_ICE_SERVERS", value_delimiter = ',')]
    pub ice_servers: Vec<String>,

    /// Directory of static files served at `/` (the web room); a page listing the API
    /// otherwise.
    #[arg(long, env = "ARENA_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Lifetime of invite tokens, in hours.
    #[arg(long, env = "ARENA_TOKEN_TTL_HOURS", default_value_t = 24 * 7)]
    pub token_ttl_hours: u64,

    /// Unload a room this many seconds after its last connection left.
    #[arg(long, env = "ARENA_ROOM_IDLE_SECS", default_value_t = 60)]
    pub room_idle_secs: u64,

    /// Drop a room's document from memory after this many seconds without edits or sync
    /// (its connections stay, and presence goes on); the next edit reopens it from sled.
    /// 0 keeps documents while anyone is connected.
    #[arg(long, env = "ARENA_ROOM_EVICT_SECS", default_value_t = 30)]
    pub room_evict_secs: u64,

    /// sled's page cache, in MiB (sled's own default is 1024). A loaded room keeps its
    /// document in memory and only appends to sled, so the cache mostly holds idle rooms'
    /// records: with sled's 1 GiB they stay in memory (1.3–2 KiB of RSS per idle room,
    /// measured), with a few MiB they live on disk and in the OS page cache, and waking a
    /// room reads them from there. 8 MiB: 2 MiB keeps ~6 KiB less per idle stock-client room
    /// at 2,000 rooms but read lower on the throughput command in each of four paired runs
    /// (docs/decisions/004-idle-memory-stock-clients.md): lower it where idle rooms matter
    /// more than edit throughput; raise it for rooms with long logs that are often reopened.
    #[arg(long, env = "ARENA_STORE_CACHE_MB", default_value_t = 8)]
    pub store_cache_mb: u64,

    /// Group commit: the next sled flush (fsync) starts at least this many milliseconds
    /// after the previous one started, so that under load each flush covers more of the
    /// rooms' writes: less CPU per edit. A flush after a quiet spell starts at once, and
    /// stock clients' edits reach each other without waiting for it (signed envelopes and
    /// API answers do wait). 0 flushes back to back.
    #[arg(long, env = "ARENA_COMMIT_INTERVAL_MS", default_value_t = 2)]
    pub commit_interval_ms: u64,

    /// Stock (y-websocket) clients' updates are signed into the room's log on their behalf
    /// at most once per this many milliseconds per room (one envelope for all of them; at
    /// once when the room was quiet for longer). Clients that speak the envelope protocol
    /// get the signed envelopes once durable. 0 signs every batch the room takes.
    #[arg(long, env = "ARENA_PROXY_BATCH_MS", default_value_t = 1)]
    pub proxy_batch_ms: u64,

    /// A room sends what needs no flush (stock clients' updates, once checked and applied,
    /// to the other stock clients; presence; replies) at most once per this many
    /// microseconds: at once when the room was quiet for longer, else gathered with what
    /// follows, so that a busy room writes several frames per system call. 0 sends after
    /// every batch the room takes.
    #[arg(long, env = "ARENA_RELAY_BATCH_US", default_value_t = 2000)]
    pub relay_batch_us: u64,

    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "ARENA_MAX_MESSAGE", default_value_t = 4 << 20)]
    pub max_message: usize,

    /// Most messages a connection may send per second (sustained; bursts of 4x allowed).
    #[arg(long, env = "ARENA_RATE_LIMIT", default_value_t = 500)]
    pub rate_limit: u32,

    /// libp2p listen addresses (TCP and QUIC), comma-separated in the env var. Port 0 picks
    /// free ports (peers learn them from `GET /api/peers`); set fixed public ones in production.
    #[arg(
        long = "p2p-listen",
        env = "ARENA_P2P_LISTEN",
        value_delimiter = ',',
        default_value = "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1"
    )]
    pub p2p_listen: Vec<String>,

    /// Other bootstrap nodes to federate with: libp2p multiaddrs with `/p2p/<peer id>`
    /// (their `GET /api/peers` lists them). Repeatable.
    #[arg(long = "peer", env = "ARENA_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// Run without the libp2p node (no federation, no native peers).
    #[arg(long, env = "ARENA_NO_P2P", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_p2p: bool,

    /// Most topics one signaling connection may subscribe to.
    #[arg(long, env = "ARENA_MAX_TOPICS", default_value_t = 32)]
    pub max_topics: usize,

    /// Most `/signal` connections open at once from one client IP address (behind a reverse
    /// proxy every client has the proxy's address: raise it there).
    #[arg(long, env = "ARENA_SIGNAL_MAX_PER_IP", default_value_t = 32)]
    pub signal_max_per_ip: usize,

    /// Most `/signal` connections open at once on the whole node.
    #[arg(long, env = "ARENA_SIGNAL_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub signal_max_connections: usize,

    /// Most `/signal` connections open at once with one invite link (counted from the first
    /// room topic the link opens; the next connection's subscribe gets an error naming the
    /// topic). A leaked link then cannot take the node's connections.
    #[arg(long, env = "ARENA_SIGNAL_MAX_PER_TOKEN", default_value_t = 32)]
    pub signal_max_per_token: usize,

    /// Most `/yws` connections open at once from one client IP address (the next is answered
    /// 429 before the upgrade; behind a reverse proxy every client has the proxy's address:
    /// raise it there).
    #[arg(long, env = "ARENA_YWS_MAX_PER_IP", default_value_t = 64)]
    pub yws_max_per_ip: usize,

    /// Most `/yws` connections open at once on the whole node (the next is answered 503).
    #[arg(long, env = "ARENA_YWS_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub yws_max_connections: usize,

    /// Most `/yws` connections open at once with one invite link (the next is answered 429
    /// before the upgrade). A leaked link then cannot take the node's connections.
    #[arg(long, env = "ARENA_YWS_MAX_PER_TOKEN", default_value_t = 32)]
    pub yws_max_per_token: usize,

    /// `/yws` and `/signal`: a client from which nothing has come for this many
    /// milliseconds gets a WebSocket ping (browsers and WebSocket libraries answer it).
    #[arg(long, env = "ARENA_WS_PING_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u32).range(1..=86_400_000))]
    pub ws_ping_ms: u32,

    /// `/yws` and `/signal`: a client from which nothing has come for this many
    /// milliseconds, not even the answer to the ping, is dropped (a half-open TCP
    /// connection, a vanished client). Longer than `--ws-ping-ms`.
    #[arg(long, env = "ARENA_WS_IDLE_TIMEOUT_MS", default_value_t = 75_000, value_parser = clap::value_parser!(u32).range(1..=86_400_000))]
    pub ws_idle_timeout_ms: u32,

    /// `/yws`: a message must arrive whole within this many milliseconds of its first byte
    /// (a client that stops in the middle of one is dropped, and with it what it had sent).
    /// `/signal` messages are small: a client stalled in one misses its pings and goes at
    /// `--ws-idle-timeout-ms`.
    #[arg(long, env = "ARENA_WS_READ_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u32).range(1..=86_400_000))]
    pub ws_read_timeout_ms: u32,

    /// Operator token for `POST /api/rooms` (sent as `Authorization: Bearer ...`). Required
    /// whenever it is set; without it a node that listens on loopback only (and whose
    /// `--public-url`, if set, is a loopback URL) creates rooms for anyone who can reach it,
    /// and any other node creates none.
    #[arg(long, env = "ARENA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<AdminToken>,

    /// Most rooms one client IP address may create per minute (`POST /api/rooms`; a burst of
    /// that many, then refilled evenly over the minute).
    #[arg(long, env = "ARENA_ROOM_CREATE_PER_MINUTE", default_value_t = 30)]
    pub room_create_per_minute: u32,

    #[command(flatten)]
    pub exec: crate::exec::ExecConfig,

    #[command(flatten)]
    pub turn: crate::turn::TurnConfig,

    #[command(flatten)]
    pub ai: crate::ai::AiConfig,

    #[command(flatten)]
    pub users: UsersConfig,
}

/// User sync: Clerk's webhooks, the job queue behind them, the outbound webhooks.
#[derive(Clone, Debug, clap::Args)]
pub struct UsersConfig {
    /// Signing secrets of the Clerk webhook endpoint (`whsec_...`, from Clerk's dashboard) for
    /// `POST /webhooks/clerk`; several (comma-separated in the env var) during a rotation. Unset,
    /// the endpoint answers 503.
    #[arg(
        long = "clerk-webhook-secret",
        env = "ARENA_CLERK_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub clerk_webhook_secrets: Vec<WebhookSecret>,

    /// A user job (directory, room profiles, an outbound webhook) is tried at most this many
    /// times, then it goes to the dead-letter list (`GET /api/admin/jobs`; retried from there
    /// by the operator).
    #[arg(long, env = "ARENA_USER_JOB_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub user_job_max_attempts: u32,

    /// Wait before a failed user job's first retry, in milliseconds; it doubles with every
    /// attempt (at most 10 minutes), each wait drawn between half of it and all of it.
    #[arg(long, env = "ARENA_USER_JOB_BACKOFF_MS", default_value_t = 1000)]
    pub user_job_backoff_ms: u64,

    /// User jobs run at once (workers of the queue).
    #[arg(long, env = "ARENA_USER_JOB_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub user_job_workers: u32,

    /// URLs that get every user change as a webhook signed the Svix way (with
    /// `--user-webhook-secret`); repeatable, comma-separated in the env var.
    #[arg(long = "user-webhook-url", env = "ARENA_USER_WEBHOOK_URLS", value_delimiter = ',')]
    pub user_webhook_urls: Vec<String>,

    /// Signing secret (`whsec_...`) of the outbound user webhooks; needed with
    /// `--user-webhook-url`.
    #[arg(long, env = "ARENA_USER_WEBHOOK_SECRET", hide_env_values = true)]
    pub user_webhook_secret: Option<WebhookSecret>,

    /// An outbound user webhook not answered within this many milliseconds has failed (and
    /// is retried).
    #[arg(long, env = "ARENA_USER_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub user_webhook_timeout_ms: u64,
}

/// A webhook signing secret (`whsec_` + base64); its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// The secret's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl std::str::FromStr for WebhookSecret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use base64::Engine;
        let s = s.trim();
        match base64::engine::general_purpose::STANDARD.decode(s.strip_prefix("whsec_").unwrap_or(s)) {
            Ok(key) if !key.is_empty() => Ok(WebhookSecret(s.to_owned())),
            _ => Err("a webhook secret is `whsec_` followed by base64 (Clerk's dashboard shows it)".into()),
        }
    }
}

/// The operator token: a string whose `Debug` does not show it (the config is logged and
/// printed in places).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// The token's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl std::str::FromStr for AdminToken {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().len() < 16 {
            return Err("the operator token must be at least 16 characters (e.g. `openssl rand -hex 24`)".into());
        }
        Ok(AdminToken(s.trim().to_owned()))
    }
}

impl Config {
    /// Defaults for tests and embedding: port 0 on loopback, data in `data_dir`.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let mut c = Config::parse_from(["arena-bootstrap"]);
        c.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        c.data_dir = data_dir.into();
        c.p2p_listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
        c
    }
}
