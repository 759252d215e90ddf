//! The recorder in the call: one `/signal` connection (reconnected with backoff), a
//! receive-only peer connection per media peer (it offers, we answer), a track task per
//! received track.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use webrtc::api::API;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::RTCPeerConnection;

use super::peer::{answer, build_api, ice_servers, media_err, wire, PeerEvent};
use super::signal::{parse, CallMsg, Candidate, SignalLink};
use super::timeline::Timeline;
use super::track::TrackCtx;
use super::{CallOptions, MediaFile, MEDIA_DIR};
use crate::error::{NodeError, Result};

/// Most call peers tracked at once (an interview has two; observers say hello too).
const MAX_PEERS: usize = 32;

struct Peer {
    role: String,
    name: String,
    media: bool,
    index: usize,
    join: u32,
    pc: Option<Arc<RTCPeerConnection>>,
    /// When the current attempt started (hello or offer) and whether it connected.
    since: Instant,
    connected: bool,
    /// Whether we already asked it once to offer again.
    nudged: bool,
}

/// A call peer id as docs/call.md has them: 32 random hex digits (browsers ignore any other
/// shape, so a prefix here made the recorder invisible to them).
fn random_id() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| NodeError::Transport(format!("no randomness: {e}")))?;
    Ok(super::hex(&b))
}

struct Call {
    opts: CallOptions,
    api: API,
    config: RTCConfiguration,
    me: String,
    topic: String,
    peers: HashMap<String, Peer>,
    next_index: usize,
    timeline: Arc<Timeline>,
    files: mpsc::Sender<MediaFile>,
    events_tx: mpsc::Sender<PeerEvent>,
    tracks: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

pub(crate) async fn run(opts: CallOptions, files: mpsc::Sender<MediaFile>, shutdown: CancellationToken) -> Result<()> {
    let media_dir = opts.dir.join(MEDIA_DIR);
    crate::create_private_dir(&media_dir).map_err(|e| NodeError::io(&media_dir, e))?;
    let timeline = Arc::new(Timeline::open(&media_dir).map_err(|e| NodeError::io(&media_dir, e))?);
    let ice = tokio::time::timeout(Duration::from_secs(10), ice_servers(&opts)).await.unwrap_or_default();
    let config = RTCConfiguration { ice_servers: ice, ..Default::default() };
    let (events_tx, mut events) = mpsc::channel(256);
    let mut call = Call {
        api: build_api()?,
        config,
        me: random_id()?,
        topic: opts.room.to_hex(),
        peers: HashMap::new(),
        next_index: 1,
        timeline: timeline.clone(),
        files: files.clone(),
        events_tx,
        tracks: Vec::new(),
        stop: shutdown.child_token(),
        opts,
    };
    timeline.event("recorder", json!({"peer": call.me, "room": call.topic}));
    let mut backoff = Duration::from_millis(500);
    while !shutdown.is_cancelled() {
        let connect = SignalLink::connect(&call.opts.base, &call.topic, &call.opts.token, &call.me);
        let connected = tokio::select! {
            _ = shutdown.cancelled() => break,
            c = connect => c,
        };
        let mut link = match connected {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "call signaling: connecting; retrying in {backoff:?}");
                tokio::select! { _ = shutdown.cancelled() => break, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        info!(peer = %call.me, "joined the call receive-only");
        call.hello(&mut link, None).await;
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                frame = link.next() => match frame {
                    Ok(Some(text)) => call.on_frame(&mut link, &text).await,
                    Ok(None) => { warn!("call signaling: the node closed the connection"); break }
                    Err(e) => { warn!(error = %e, "call signaling: connection lost"); break }
                },
                Some(ev) = events.recv() => call.on_event(&mut link, ev).await,
                _ = tick.tick() => {
                    let _ = link.ping().await;
                    call.check_timeouts(&mut link).await;
                }
            }
        }
        if shutdown.is_cancelled() {
            let _ = link.publish("bye", json!({})).await;
            link.close().await;
        }
    }
    // Close every connection: the track tasks close their files and send their hashes.
    call.stop.cancel();
    let pcs: Vec<_> = call.peers.values_mut().filter_map(|p| p.pc.take()).collect();
    for pc in pcs {
        let _ = tokio::time::timeout(Duration::from_secs(5), pc.close()).await;
    }
    while let Ok(ev) = events.try_recv() {
        if let PeerEvent::Track(h) = ev {
            call.tracks.push(h);
        }
    }
    for h in call.tracks.drain(..) {
        let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    }
    let path = timeline.close().map_err(|e| NodeError::io(&media_dir, e))?;
    if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
        match MediaFile::of(&media_dir, name) {
            Ok(m) => {
                let _ = files.send(m).await;
            }
            Err(e) => warn!(error = %e, "hashing the call's timeline"),
        }
    }
    Ok(())
}

impl Call {
    fn refuse(&self, peer: Option<&str>, reason: &str) {
        warn!(peer, reason, "call signaling: refused");
        self.timeline.event("error", json!({"peer": peer, "reason": reason}));
    }

    async fn hello(&self, link: &mut SignalLink, to: Option<&str>) {
        let mut d = json!({"role": "observer", "name": self.opts.name, "media": false});
        if let Some(to) = to {
            d["to"] = to.into();
        }
        if let Err(e) = link.publish("hello", d).await {
            warn!(error = %e, "call signaling: hello");
        }
    }

    async fn on_frame(&mut self, link: &mut SignalLink, text: &str) {
        let msg = match parse(text, &self.topic, &self.me) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(reason) => return self.refuse(None, &reason),
        };
        let from = msg.from().to_owned();
        match msg {
            CallMsg::Hello { role, name, media, to_me, .. } => {
                let known = self.peers.contains_key(&from);
                if !known {
                    if self.peers.len() >= MAX_PEERS {
                        return self.refuse(Some(&from), "too many call peers");
                    }
                    self.peers.insert(
                        from.clone(),
                        Peer {
                            role: role.clone(),
                            name: name.clone(),
                            media,
                            index: self.next_index,
                            join: 0,
                            pc: None,
                            since: Instant::now(),
                            connected: false,
                            nudged: false,
                        },
                    );
                    self.next_index += 1;
                } else if let Some(p) = self.peers.get_mut(&from) {
                    if p.pc.is_some() && !to_me {
                        // A broadcast hello from a peer we are connected to: it rejoined
                        // without a bye (a reload): this join is over.
                        self.drop_pc(&from, "rejoined").await;
                    }
                    if let Some(p) = self.peers.get_mut(&from) {
                        if p.pc.is_none() {
                            p.since = Instant::now();
                            p.nudged = false;
                        }
                        (p.role, p.name, p.media) = (role.clone(), name.clone(), media);
                    }
                }
                if !known || !to_me {
                    self.timeline.event(
                        "peer",
                        json!({"event": "hello", "peer": from, "role": role, "name": name, "media": media}),
                    );
                }
                if !to_me {
                    self.hello(link, Some(&from)).await;
                }
            }
            CallMsg::Bye { .. } => {
                if let Some(p) = self.peers.get_mut(&from) {
                    let pc = p.pc.take();
                    self.timeline.event("peer", json!({"event": "bye", "peer": from, "join": p.join}));
                    if let Some(pc) = pc {
                        tokio::spawn(async move { pc.close().await });
                    }
                }
            }
            CallMsg::Offer { sdp, .. } => self.on_offer(link, &from, sdp).await,
            CallMsg::Ice { candidate, .. } => self.on_ice(&from, candidate).await,
            CallMsg::Answer { .. } => self.refuse(Some(&from), "an answer, but the recorder never offers"),
        }
    }

    async fn on_ice(&mut self, from: &str, candidate: Option<Candidate>) {
        let (Some(c), Some(pc)) = (candidate, self.peers.get(from).and_then(|p| p.pc.clone())) else { return };
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: None,
        };
        if let Err(e) = pc.add_ice_candidate(init).await {
            self.refuse(Some(from), &format!("ICE candidate: {e}"));
        }
    }

    async fn on_offer(&mut self, link: &mut SignalLink, from: &str, sdp: String) {
        let Some(p) = self.peers.get(from) else {
            return self.refuse(Some(from), "an offer from a peer that never said hello");
        };
        if !p.media {
            return self.refuse(Some(from), "an offer from a receive-only peer");
        }
        let existing = p.pc.clone();
        let (pc, fresh) = match existing {
            Some(pc) => (pc, false),
            None => match self.new_pc(from).await {
                Ok(pc) => (pc, true),
                Err(e) => return self.refuse(Some(from), &format!("creating a peer connection: {e}")),
            },
        };
        let answered = tokio::time::timeout(Duration::from_secs(10), answer(&pc, sdp)).await;
        match answered {
            Ok(Ok(sdp)) => {
                if let Err(e) = link.publish("answer", json!({"to": from, "sdp": sdp})).await {
                    warn!(error = %e, "call signaling: answer");
                }
            }
            Ok(Err(e)) => {
                self.refuse(Some(from), &format!("bad offer: {e}"));
                if fresh {
                    self.drop_pc(from, "bad offer").await;
                }
            }
            Err(_) => {
                self.refuse(Some(from), "answering took over 10 s");
                self.drop_pc(from, "answer timed out").await;
            }
        }
    }

    /// A new receive-only connection for `from`'s next join.
    async fn new_pc(&mut self, from: &str) -> Result<Arc<RTCPeerConnection>> {
        let pc = Arc::new(self.api.new_peer_connection(self.config.clone()).await.map_err(media_err)?);
        let Some(p) = self.peers.get_mut(from) else { return Err(media_err("unknown peer")) };
        p.join += 1;
        p.since = Instant::now();
        p.connected = false;
        p.pc = Some(pc.clone());
        let (peer, join) = (from.to_owned(), p.join);
        self.timeline
            .event("peer", json!({"event": "join", "peer": peer, "role": p.role, "name": p.name, "join": join}));
        let peer_id = peer.clone();
        let ctx = TrackCtx {
            media_dir: self.opts.dir.join(MEDIA_DIR),
            session: self.me.chars().skip(4).take(6).collect(),
            timeline: self.timeline.clone(),
            files: self.files.clone(),
            peer,
            role: p.role.clone(),
            name: p.name.clone(),
            index: p.index,
            join,
            tracks: Arc::new(AtomicU32::new(0)),
            stop: self.stop.child_token(),
            keyframe_every: self.opts.keyframe_every,
        };
        wire(&pc, peer_id, join, &self.events_tx, ctx);
        Ok(pc)
    }

    async fn drop_pc(&mut self, peer: &str, why: &str) {
        let Some(p) = self.peers.get_mut(peer) else { return };
        let Some(pc) = p.pc.take() else { return };
        self.timeline.event("peer", json!({"event": "closed", "peer": peer, "join": p.join, "reason": why}));
        tokio::spawn(async move { pc.close().await });
    }

    async fn on_event(&mut self, link: &mut SignalLink, ev: PeerEvent) {
        match ev {
            PeerEvent::Track(h) => {
                self.tracks.retain(|t| !t.is_finished());
                self.tracks.push(h);
            }
            PeerEvent::Ice { peer, join, candidate } => {
                if self.peers.get(&peer).is_none_or(|p| p.join != join || p.pc.is_none()) {
                    return;
                }
                let c = candidate.map(
                    |c| json!({"candidate": c.candidate, "sdpMid": c.sdp_mid, "sdpMLineIndex": c.sdp_mline_index}),
                );
                let _ = link.publish("ice", json!({"to": peer, "candidate": c})).await;
            }
            PeerEvent::State { peer, join, state } => {
                let Some(p) = self.peers.get_mut(&peer) else { return };
                if p.join != join {
                    return;
                }
                match state {
                    RTCPeerConnectionState::Connected => {
                        p.connected = true;
                        self.timeline.event("peer", json!({"event": "connected", "peer": peer, "join": join}));
                    }
                    RTCPeerConnectionState::Failed => {
                        self.timeline.event("peer", json!({"event": "failed", "peer": peer, "join": join}));
                        self.drop_pc(&peer, "ICE failed").await;
                        // Ask for a new offer (an ICE restart from its side).
                        let _ = link
                            .publish(
                                "hello",
                                json!({"to": peer, "role": "observer", "name": self.opts.name,
                                                             "media": false, "restart": true}),
                            )
                            .await;
                    }
                    _ => {}
                }
            }
        }
    }

    /// Gives up on peers that did not connect in time (and asks a silent media peer once
    /// more for an offer).
    async fn check_timeouts(&mut self, link: &mut SignalLink) {
        let limit = self.opts.connect_timeout;
        let mut late = Vec::new();
        for (id, p) in &mut self.peers {
            if !p.media || p.connected || p.since.elapsed() < limit {
                continue;
            }
            if p.pc.is_some() {
                late.push(id.clone());
            } else if !p.nudged {
                p.nudged = true;
                warn!(peer = %id, "no offer from a media peer in {limit:?}; asking again");
                self.timeline.event("peer", json!({"event": "no offer", "peer": id}));
                let _ = link
                    .publish(
                        "hello",
                        json!({"to": id, "role": "observer", "name": self.opts.name,
                                                     "media": false, "restart": true}),
                    )
                    .await;
            }
        }
        for id in late {
            warn!(peer = %id, "the call did not connect in {limit:?}: giving up on it");
            self.timeline.event("peer", json!({"event": "timeout", "peer": id}));
            self.drop_pc(&id, "did not connect in time").await;
            if let Some(p) = self.peers.get_mut(&id) {
                p.since = Instant::now();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    /// The browser's `Call` drops a hello whose `from` is not 32 lowercase hex digits
    /// (`web-bindings/js/call.js`); the recorder's ids were `rec-` + 16 and it went unseen.
    #[test]
    fn call_peer_ids_have_the_shape_browsers_accept() {
        let (a, b) = (super::random_id().unwrap(), super::random_id().unwrap());
        for id in [&a, &b] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{id}");
        }
        assert_ne!(a, b);
    }
}
