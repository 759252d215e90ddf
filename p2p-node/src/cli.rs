//! What the `arena-node` subcommands do (the binary only parses flags and calls these).
//! They print to stdout: the code, progress, reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arena_core::sync::wire::GOSSIP_CHUNK;
use arena_core::{Identity, Room, RoomId, SledDb};
use libp2p::Multiaddr;
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{NodeError, Result};
use crate::http::{bootstrap_peers, BootstrapAddr};
use crate::media::{CallOptions, MediaFile};

mod call;
use crate::node::{load_or_create_identity, now_ms, random_seed, JoinSpec, Node, NodeConfig, NodeEvent, NodeRoom};
use crate::recording::{RecordingFile, RecordingStore, RECORDING_FILE};
use crate::replay;
use crate::store::NodeStore;
use crate::yws::{NodeClient, YwsEvent, YwsLink};
use call::{call_base, finish_call, record_media_node, record_media_room, recv_file};

/// How to reach the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Via {
    /// libp2p when the bootstrap node lists multiaddrs, else its y-websocket endpoint.
    #[default]
    Auto,
    /// libp2p only.
    Libp2p,
    /// The bootstrap node's `/yws` endpoint only.
    Yws,
}

/// Options shared by `join` and `record`.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// The room.
    pub room: RoomId,
    /// Invite token.
    pub token: String,
    /// Bootstrap nodes: HTTP URLs or multiaddrs.
    pub bootstrap: Vec<BootstrapAddr>,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Display name.
    pub name: String,
    /// Listen through relays offered by the bootstrap nodes.
    pub relay: bool,
    /// Transport choice.
    pub via: Via,
}

enum Route {
    Libp2p(Vec<Multiaddr>),
    Yws(String),
}

async fn route(opts: &PeerOptions) -> Result<Route> {
    let mut addrs = Vec::new();
    let mut http = None;
    for b in &opts.bootstrap {
        match b {
            BootstrapAddr::Multiaddr(a) => addrs.push(a.clone()),
            BootstrapAddr::Http(url) => {
                http.get_or_insert_with(|| url.clone());
                if opts.via != Via::Yws {
                    match bootstrap_peers(url).await {
                        Ok(p) => addrs.extend(p.multiaddrs),
                        Err(e) => warn!(url, error = %e, "asking the bootstrap node for its peers"),
                    }
                }
            }
        }
    }
    match (opts.via, http) {
        (Via::Yws, Some(url)) => Ok(Route::Yws(url)),
        (Via::Yws, None) => Err(NodeError::BadAddress {
            addr: "--bootstrap".into(),
            reason: "--via yws needs an http:// bootstrap URL".into(),
        }),
        (Via::Libp2p, _) => Ok(Route::Libp2p(addrs)),
        (Via::Auto, _) if !addrs.is_empty() => Ok(Route::Libp2p(addrs)),
        (Via::Auto, Some(url)) => {
            info!(url, "the bootstrap node lists no libp2p address: attaching through its y-websocket endpoint");
            Ok(Route::Yws(url))
        }
        (Via::Auto, None) => {
            Err(NodeError::BadAddress { addr: "--bootstrap".into(), reason: "give at least one bootstrap node".into() })
        }
    }
}

fn node_config(
    identity: Identity,
    opts: &PeerOptions,
    bootstrap: Vec<Multiaddr>,
    data_dir: Option<PathBuf>,
) -> NodeConfig {
    let mut cfg = NodeConfig::new(identity);
    cfg.listen = opts.listen.clone();
    cfg.bootstrap = bootstrap;
    cfg.data_dir = data_dir;
    cfg.use_relay = opts.relay;
    cfg
}

fn print_code(code: &str) {
    println!("--- code ({} lines) ---\n{code}", code.lines().count());
}

/// `arena-node join`: a peer of the room until `shutdown`. Prints the code when others
/// change it; each line typed on stdin is appended to the code.
pub async fn join(opts: PeerOptions, data_dir: Option<PathBuf>, shutdown: CancellationToken) -> Result<()> {
    let identity = match &data_dir {
        Some(d) => load_or_create_identity(d)?,
        None => Identity::from_seed(random_seed()?),
    };
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    match route(&opts).await? {
        Route::Libp2p(boot) => {
            let (node, task) = Node::spawn(node_config(identity, &opts, boot, data_dir), shutdown.clone())?;
            let mut events = node.subscribe();
            let info = node
                .join(JoinSpec {
                    room: opts.room,
                    token: Some(opts.token.clone()),
                    name: opts.name.clone(),
                    recording: None,
                })
                .await?;
            println!("joined room {} as {:?}; peer id {}", opts.room, info.role, node.peer_id());
            for a in node.listen_addrs().await? {
                println!("listening on {a}/p2p/{}", node.peer_id());
            }
            print_code(&node.code(opts.room).await?);
            // Presence (y-protocols awareness over libp2p): browsers in the room list us as
            // here, not "away". Renewed well inside y-protocols' 30 s timeout.
            let me = node.key().client_id(0);
            let state = serde_json::json!({ "user": { "name": opts.name, "color": "#6b7280" } });
            let mut clock = 0u32;
            let mut presence = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = presence.tick() => {
                        clock += 1;
                        if let Err(e) = node.publish_presence(opts.room, crate::presence::encode(me, clock, &state)).await {
                            warn!(error = %e, "presence");
                        }
                    }
                    ev = events.recv() => match ev {
                        Ok(NodeEvent::Applied { room, from: Some(_), .. }) if room == opts.room => print_code(&node.code(room).await?),
                        Ok(NodeEvent::Listening { addr }) => println!("listening on {addr}/p2p/{}", node.peer_id()),
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => print_code(&node.code(opts.room).await?),
                        Err(_) => break,
                    },
                    line = stdin.next_line(), if stdin_open => match line {
                        Ok(Some(l)) => {
                            let len = node.with_room(opts.room, |r, _| r.doc().code_len()).await?;
                            node.splice(opts.room, len, 0, &format!("{l}\n")).await?;
                        }
                        _ => stdin_open = false,
                    },
                }
            }
            // Say we left (a null state), then stop.
            let _ = node
                .publish_presence(opts.room, crate::presence::encode(me, clock + 1, &serde_json::Value::Null))
                .await;
            shutdown.cancel();
            task.await.map_err(|e| NodeError::Transport(e.to_string()))??;
        }
        Route::Yws(url) => {
            let (store, group) = match &data_dir {
                Some(d) => {
                    let db = SledDb::open(d.join("sled"))?;
                    let store = NodeStore::Sled(db.room(&opts.room)?);
                    let flush = move || db.flush().map_err(|e| e.to_string());
                    (store, Some(crate::GroupCommit::spawn(flush, Duration::ZERO, |_| {})))
                }
                None => (NodeStore::Memory(arena_core::MemoryStore::new()), None),
            };
            let mut client = NodeClient::new(open_room(&opts, identity, store)?, GOSSIP_CHUNK, now_ms());
            yws_loop(&url, &opts, &mut client, shutdown, Some(&mut stdin), None, group, true).await?;
        }
    }
    Ok(())
}

fn open_room(opts: &PeerOptions, identity: Identity, store: NodeStore) -> Result<NodeRoom> {
    let now = now_ms();
    let mut room = Room::open(opts.room, identity, 0, store, NodeConfig::new(Identity::from_seed([0; 32])).room, now)?;
    if room.role().is_none() {
        room.join(&opts.token, &opts.name, now)?;
    }
    room.flush()?;
    Ok(room)
}

type Stdin = tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>;

/// Waits `backoff` (or until `shutdown`), then doubles it up to 30 s. False when stopped.
async fn back_off(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => return false,
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(30));
    true
}

/// Runs a room over `/yws` until `shutdown`, reconnecting with backoff: what the node sends
/// is applied, made durable, then printed; each line on `stdin` is appended to the code;
/// each media file's hash goes into the recording. With `presence`, the peer is present (a
/// y-protocols awareness state with its name, renewed inside the 30 s timeout, cleared when
/// it leaves), as it is over libp2p: browsers list it as here.
#[allow(clippy::too_many_arguments, reason = "one private loop, two callers")]
async fn yws_loop(
    url: &str,
    opts: &PeerOptions,
    client: &mut NodeClient,
    shutdown: CancellationToken,
    mut stdin: Option<&mut Stdin>,
    mut files: Option<&mut tokio::sync::mpsc::Receiver<MediaFile>>,
    group: Option<crate::GroupCommit>,
    presence: bool,
) -> Result<()> {
    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_cancelled() {
        let opened = match YwsLink::connect(url, opts.room, &opts.token).await {
            Ok(l) => {
                let mut link = l.with_group_commit(group.clone());
                link.open(client).await.map(|()| link)
            }
            Err(e) => Err(e),
        };
        let mut link = match opened {
            Ok(link) => link,
            Err(e) => {
                warn!(error = %e, "connecting; retrying in {backoff:?}");
                if !back_off(&mut backoff, &shutdown).await {
                    break;
                }
                continue;
            }
        };
        println!("attached to {url} (y-websocket) for room {}", opts.room);
        backoff = Duration::from_millis(500);
        if presence {
            let frame = client.set_presence(&opts.name, "#6b7280", None, now_ms())?;
            if let Err(e) = link.send(vec![frame]).await {
                warn!(error = %e, "presence");
            }
        }
        let mut renew = tokio::time::interval(Duration::from_secs(5));
        loop {
            enum Input {
                Stop,
                Frame(Result<Option<Vec<u8>>>),
                Line(Option<String>),
                Media(MediaFile),
                Tick,
            }
            let input = {
                let typed = async {
                    match stdin.as_deref_mut() {
                        Some(s) => s.next_line().await.ok().flatten(),
                        None => std::future::pending().await,
                    }
                };
                let media = async {
                    match files.as_deref_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                };
                // Only the reads race: a frame is handled (applied, flushed, answered) whole.
                tokio::select! {
                    _ = shutdown.cancelled() => Input::Stop,
                    frame = link.recv() => Input::Frame(frame),
                    line = typed => Input::Line(line),
                    Some(f) = media => Input::Media(f),
                    _ = renew.tick() => Input::Tick,
                }
            };
            let sent = match input {
                Input::Stop => break,
                Input::Frame(Ok(Some(frame))) => link.handle(client, &frame).await.map(|ev| report(client, &ev)),
                Input::Frame(Ok(None)) => Err(NodeError::Remote("the node closed the connection".into())),
                Input::Frame(Err(e)) => Err(e),
                Input::Line(Some(l)) => {
                    let len = client.room().doc().code_len();
                    client.room_mut().edit(now_ms(), |e| e.splice_code(len, 0, &format!("{l}\n")))?;
                    // Unsent, it stays in the log: the next connection's catch-up sends it.
                    link.send_outgoing(client).await
                }
                Input::Line(None) => {
                    stdin = None;
                    Ok(())
                }
                Input::Media(f) => {
                    record_media_room(client.room_mut(), f);
                    Ok(())
                }
                // Renews our presence when due, drops others' that timed out.
                Input::Tick => match client.tick(now_ms()) {
                    Ok((Some(frame), _)) => link.send(vec![frame]).await,
                    Ok((None, _)) => Ok(()),
                    Err(e) => Err(e.into()),
                },
            };
            if let Err(e) = sent {
                warn!(error = %e, "connection lost");
                break;
            }
        }
        if presence && shutdown.is_cancelled() {
            // Say we left (a null state).
            if let Ok(frame) = client.clear_presence(now_ms()) {
                let _ = link.send(vec![frame]).await;
            }
        }
        let _ = link.close().await;
    }
    crate::commit::flush_room(client.room_mut(), group.as_ref()).await
}

fn report(client: &NodeClient, events: &[YwsEvent]) {
    for e in events {
        match e {
            YwsEvent::Applied(n) => {
                println!("{n} envelope(s) applied");
                print_code(&client.room().doc().code());
            }
            YwsEvent::Awareness(json) => println!("awareness {json}"),
            YwsEvent::Denied(reason) => println!("refused by the node: {reason}"),
        }
    }
}

/// A read-only peer that writes every envelope (with its receive time), awareness change,
/// vote, run and version of the room to `out` until `shutdown`; not the call (see
/// [`record_with_media`], what `arena-node record` runs).
pub async fn record(opts: PeerOptions, out: &Path, shutdown: CancellationToken) -> Result<()> {
    record_with_media(opts, out, false, shutdown).await
}

/// `arena-node record`: [`record`], and with `media` it also joins the call receive-only
/// (see [`crate::media`]) through the first `http://` bootstrap node and seals each media
/// file's hash into the recording.
pub async fn record_with_media(opts: PeerOptions, out: &Path, media: bool, shutdown: CancellationToken) -> Result<()> {
    // Private: it holds the recorder's key (and the recording names the room's members).
    crate::create_private_dir(out).map_err(|e| NodeError::io(out, e))?;
    let identity = load_or_create_identity(out)?;
    let path = out.join(RECORDING_FILE);
    println!(
        "recorder key {}: pin it to verify: arena-node verify {} --room {} --recorder-key {}",
        identity.public(),
        path.display(),
        opts.room,
        identity.public()
    );
    println!(
        "{} holds the recorder's secret key (it seals the recording): share {} (and {}/ with the call's media), \
         never the whole directory",
        out.join("identity.key").display(),
        path.display(),
        out.join(crate::media::MEDIA_DIR).display()
    );
    // The call stops first (closing its files), then the room (sealing their hashes).
    let call_stop = CancellationToken::new();
    let call = match (media, call_base(&opts)) {
        (false, _) => None,
        (true, None) => {
            warn!("no http:// bootstrap node given: not recording the call");
            None
        }
        (true, Some(base)) => {
            let o = CallOptions::new(base, opts.room, opts.token.clone(), opts.name.clone(), out.to_path_buf());
            println!("recording the call into {}", out.join(crate::media::MEDIA_DIR).display());
            Some(crate::media::spawn(o, call_stop.clone()))
        }
    };
    let (call_task, mut files) = match call {
        Some((t, rx)) => (Some(t), Some(rx)),
        None => (None, None),
    };
    match route(&opts).await? {
        Route::Libp2p(boot) => {
            let node_stop = CancellationToken::new();
            let (node, task) = Node::spawn(node_config(identity, &opts, boot, None), node_stop.clone())?;
            let mut events = node.subscribe();
            let spec = JoinSpec {
                room: opts.room,
                token: Some(opts.token.clone()),
                name: opts.name.clone(),
                recording: Some(path.clone()),
            };
            let info = node.join(spec).await?;
            println!("recording room {} into {} ({} entries so far)", opts.room, path.display(), info.log_len);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(f) = recv_file(&mut files) => record_media_node(&node, opts.room, f).await,
                    ev = events.recv() => match ev {
                        Ok(NodeEvent::Applied { room, envelopes, .. }) if room == opts.room => {
                            println!("{} recorded {} envelope(s)", crate::time::format_ms(now_ms()), envelopes.len());
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                }
            }
            call_stop.cancel();
            for f in finish_call(call_task, &mut files).await {
                record_media_node(&node, opts.room, f).await;
            }
            node_stop.cancel();
            task.await.map_err(|e| NodeError::Transport(e.to_string()))??;
        }
        Route::Yws(url) => {
            let store =
                NodeStore::Recording(Box::new(RecordingStore::open(&path, opts.room, identity.clone(), now_ms())?));
            let mut client = NodeClient::new(open_room(&opts, identity, store)?, GOSSIP_CHUNK, now_ms());
            println!("recording room {} into {}", opts.room, path.display());
            yws_loop(&url, &opts, &mut client, shutdown, None, files.as_mut(), None, false).await?;
            call_stop.cancel();
            let room = client.room_mut();
            for f in finish_call(call_task, &mut files).await {
                record_media_room(room, f);
            }
            room.flush()?;
        }
    }
    Ok(())
}

/// Prints `warnings` to stderr, loudly.
fn warn_reader(warnings: &[String]) {
    for w in warnings {
        eprintln!("arena-node: {w}");
    }
}

/// `arena-node replay`: the session step by step, or (with `at`) the code at that instant.
/// Verifies first (see [`replay::read_verified`]); warnings go to stderr.
pub fn replay(dir: &Path, at: Option<&str>, trust: &replay::Trust) -> Result<String> {
    let at = at.map(replay::parse_at).transpose()?;
    let (file, warnings) = replay::read_verified(dir, trust)?;
    warn_reader(&warnings);
    match at {
        Some(at) => replay::code_at(&file, at),
        None => Ok(replay::render(&replay::timeline(&file)?)),
    }
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The timeline as JSON.
    Json,
    /// A self-contained HTML player.
    Html,
}

/// `arena-node export`. Verifies first (see [`replay::read_verified`]); warnings go to stderr.
pub fn export(dir: &Path, format: Format, trust: &replay::Trust) -> Result<String> {
    let (file, warnings) = replay::read_verified(dir, trust)?;
    warn_reader(&warnings);
    let mut t = replay::timeline(&file)?;
    // The export travels without the reader's terminal: it says so itself.
    t.warnings = warnings;
    Ok(match format {
        Format::Json => replay::export_json(&t),
        Format::Html => {
            let dir = file.path.parent().unwrap_or(Path::new("."));
            replay::export_html_with_media(&t, &replay::CallMedia::load(dir, &t)?)
        }
    })
}

/// `arena-node verify`: the report, and whether the recording passes. See
/// [`replay::verify`] for what a pass proves and against whom.
pub fn verify(dir: &Path, pins: &replay::Pins, allow_incomplete: bool) -> Result<(String, bool)> {
    use std::fmt::Write;
    let file = RecordingFile::read(dir)?;
    let r = replay::verify(&file, pins);
    let mut s = format!("{}: room {}, recorder key {}\n", file.path.display(), r.room, r.recorder);
    match replay::unpinned_notice(&r) {
        Some(n) => {
            let _ = writeln!(s, "{n}");
        }
        None if r.first_break.is_none() => s.push_str("pinned: the room and the recorder key are the ones given\n"),
        None => {}
    }
    let _ = write!(
        s,
        "{} records checked: {} admissions, {} delegations, {} envelopes, {} seals",
        r.records, r.admissions, r.delegations, r.envelopes, r.seals
    );
    if r.media > 0 {
        let _ = write!(s, "; {} media files of the call match their sealed size and SHA-256", r.media);
    }
    if let Some(l) = &r.last_seal {
        let _ = write!(
            s,
            "\n{} {} at {} vouches for {} records:",
            if l.closing { "closing seal" } else { "seal" },
            l.number,
            crate::time::format_ms(l.at_ms),
            l.records
        );
        for a in &l.authors {
            let (name, role) = r
                .members
                .get(&a.author)
                .map_or(("?".to_owned(), "not admitted".to_owned()), |(n, role)| (n.clone(), role.to_string()));
            let _ = write!(
                s,
                "\n  {name} ({role}) {}: {} envelopes, chain head #{} {}",
                a.author,
                a.envelopes,
                a.next_seq.saturating_sub(1),
                &arena_core::PeerKey(a.last_hash).to_hex()[..16]
            );
        }
    }
    for w in r.stock.values() {
        let node = r.members.get(&w.node).map_or_else(|| w.node.to_hex()[..16].to_owned(), |(n, _)| n.clone());
        let _ = write!(
            s,
            "\n  via node {node}, as {} (grant {}): {} envelopes signed for a stock client",
            w.role, w.grant, w.envelopes
        );
    }
    let passes = r.passes(allow_incomplete);
    match r.problem() {
        None => s.push_str(
            "\nOK: every signature, hash chain and seal verifies and the recorder closed the recording: nothing \
             was cut off, dropped, inserted or altered since, by anyone without the recorder key. The holder of \
             the recorder key could still drop an author and reseal: compare the counts above with the authors' \
             own logs.",
        ),
        Some(p) if passes => {
            let _ = write!(s, "\nWARNING: {p}.\nOK up to the last seal only (--allow-incomplete).");
        }
        Some(p) if r.first_break.is_none() => {
            let _ = write!(s, "\nFAILED: {p}.\nPass --allow-incomplete to accept what the last seal covers.");
        }
        Some(p) => {
            let _ = write!(s, "\nFAILED: {p}");
        }
    }
    Ok((s, passes))
}
