//! `arena-node`: join a room, record it, replay, export and verify recordings.

use std::path::PathBuf;

use anyhow::{Context, Result};
use arena_core::PeerKey;
use arena_node::cli::{self, Format, PeerOptions, Via};
use arena_node::http::BootstrapAddr;
use arena_node::replay;
use clap::{Args, Parser, Subcommand, ValueEnum};
use libp2p::Multiaddr;
use tokio_util::sync::CancellationToken;

/// InterviewArena's native peer: join a room, record it, replay, export and verify
/// recordings.
#[derive(Parser, Debug)]
#[command(name = "arena-node", version)]
struct Config {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Join ROOM as a peer: prints the code as others change it; each line typed on stdin
    /// is appended to the code.
    Join {
        #[command(flatten)]
        peer: PeerArgs,
        /// Keep the room (and this peer's key) here; without it, memory and a fresh key.
        #[arg(long, env = "ARENA_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Record ROOM read-only into DIR: every envelope with its receive time, awareness
    /// (cursors, presence; over y-websocket), votes, runs and versions, and the call (each
    /// participant's audio and video, receive-only, into DIR/media, through the first
    /// http:// bootstrap node's /signal). Ctrl-C stops.
    Record {
        #[command(flatten)]
        peer: PeerArgs,
        /// The recording directory (created; an existing recording is continued).
        #[arg(long, env = "ARENA_OUT")]
        out: PathBuf,
        /// Do not join the call (record the room only).
        #[arg(long)]
        no_media: bool,
    },
    /// Print a recording step by step (who typed what, votes, runs, versions), or with
    /// --at the exact code at one instant. Verifies it first, as `verify` does, and refuses
    /// one that does not pass.
    Replay {
        /// A recording directory (or its session.arena file).
        dir: PathBuf,
        /// An RFC 3339 time (2026-11-24T17:38:01Z), unix milliseconds, or `end`.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Replay a recording that does not verify, with a warning: nothing it shows is
        /// evidence. (No environment variable: a forgotten one would turn the check off.)
        #[arg(long)]
        unverified: bool,
    },
    /// Export a recording as JSON or as a self-contained HTML player with a scrubber.
    /// Verifies it first, as `verify` does, and refuses one that does not pass.
    Export {
        /// A recording directory (or its session.arena file).
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = FormatArg::Json)]
        format: FormatArg,
        /// Write here instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Export a recording that does not verify, with a warning: nothing it shows is
        /// evidence. (No environment variable: a forgotten one would turn the check off.)
        #[arg(long)]
        unverified: bool,
    },
    /// Audit a recording from its first record: every admission, envelope signature and
    /// hash chain, and the recorder's seals (each signs the records before it and says how
    /// many envelopes of each author they hold); the recording must end with the recorder's
    /// closing seal, so a cut or a dropped author is found. Pin the room and the recorder key
    /// you expect: unpinned, whoever wrote the file chose them, and only a pinned recorder
    /// key shows a recording resealed by another key. Nothing can show an author dropped by
    /// the holder of the recorder key itself: compare the counts with the authors' logs.
    /// Exits with status 1 when the recording does not pass.
    Verify {
        /// A recording directory (or its session.arena file).
        dir: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
}

/// What a reader of a recording expects.
#[derive(Args, Debug)]
struct TrustArgs {
    /// The room the recording must be of (64 hex digits, the room id).
    #[arg(long, env = "ARENA_ROOM")]
    room: Option<String>,
    /// The recorder key that must have sealed it (64 hex digits; `arena-node record` prints
    /// it when it starts).
    #[arg(long, env = "ARENA_RECORDER_KEY")]
    recorder_key: Option<String>,
    /// Accept a recording that ends without the recorder's closing seal (the recorder was
    /// killed), up to its last seal. A cut file looks the same, so this is a failure unless
    /// asked for. (No environment variable: a forgotten one would weaken every check.)
    #[arg(long)]
    allow_incomplete: bool,
}

impl TrustArgs {
    fn trust(&self, unverified: bool) -> Result<replay::Trust> {
        let key = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|h| PeerKey::from_hex(h).with_context(|| format!("{flag} must be 64 hex digits")))
                .transpose()
        };
        Ok(replay::Trust {
            pins: replay::Pins {
                room: key("--room", &self.room)?,
                recorder: key("--recorder-key", &self.recorder_key)?,
            },
            allow_incomplete: self.allow_incomplete,
            unverified,
        })
    }
}

#[derive(Args, Debug)]
struct PeerArgs {
    /// The room id (64 hex digits).
    room: String,
    /// Invite token (an observer token for `record`).
    #[arg(long, env = "ARENA_TOKEN")]
    token: String,
    /// Bootstrap node: its HTTP URL (http://host:8080, asked for its libp2p addresses at
    /// /api/peers) or a libp2p multiaddr with /p2p/<peer id>. Repeat or comma-separate.
    #[arg(long, env = "ARENA_BOOTSTRAP", value_delimiter = ',', required = true)]
    bootstrap: Vec<String>,
    /// libp2p listen addresses.
    #[arg(
        long,
        env = "ARENA_LISTEN",
        value_delimiter = ',',
        default_value = "/ip4/0.0.0.0/tcp/0,/ip4/0.0.0.0/udp/0/quic-v1"
    )]
    listen: Vec<Multiaddr>,
    /// Display name.
    #[arg(long, env = "ARENA_NAME", default_value = "arena-node")]
    name: String,
    /// Listen through the bootstrap nodes' relays (when behind NAT).
    #[arg(long, env = "ARENA_RELAY")]
    relay: bool,
    /// How to reach the room: libp2p, the bootstrap node's y-websocket endpoint, or auto
    /// (libp2p when the bootstrap node lists libp2p addresses).
    #[arg(long, env = "ARENA_VIA", value_enum, default_value_t = ViaArg::Auto)]
    via: ViaArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ViaArg {
    Auto,
    Libp2p,
    Yws,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Json,
    Html,
}

impl PeerArgs {
    fn options(self) -> Result<PeerOptions> {
        let bootstrap = self
            .bootstrap
            .iter()
            .map(|b| b.parse::<BootstrapAddr>())
            .collect::<Result<Vec<_>, _>>()
            .context("--bootstrap")?;
        Ok(PeerOptions {
            room: PeerKey::from_hex(&self.room).context("ROOM must be the room id: 64 hex digits")?,
            token: self.token,
            bootstrap,
            listen: self.listen,
            name: self.name,
            relay: self.relay,
            via: match self.via {
                ViaArg::Auto => Via::Auto,
                ViaArg::Libp2p => Via::Libp2p,
                ViaArg::Yws => Via::Yws,
            },
        })
    }
}

/// Cancelled on ctrl-c or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
        t.cancel();
    });
    token
}

#[tokio::main]
async fn main() -> Result<()> {
    let cfg = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cfg.cmd {
        Cmd::Join { peer, data_dir } => cli::join(peer.options()?, data_dir, shutdown_on_signals()).await?,
        Cmd::Record { peer, out, no_media } => {
            cli::record_with_media(peer.options()?, &out, !no_media, shutdown_on_signals()).await?
        }
        Cmd::Replay { dir, at, trust, unverified } => {
            print!("{}", cli::replay(&dir, at.as_deref(), &trust.trust(unverified)?)?)
        }
        Cmd::Export { dir, format, out, trust, unverified } => {
            let format = match format {
                FormatArg::Json => Format::Json,
                FormatArg::Html => Format::Html,
            };
            let text = cli::export(&dir, format, &trust.trust(unverified)?)?;
            match out {
                Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
        }
        Cmd::Verify { dir, trust } => {
            let t = trust.trust(false)?;
            let (report, ok) = cli::verify(&dir, &t.pins, t.allow_incomplete)?;
            println!("{report}");
            if !ok {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
