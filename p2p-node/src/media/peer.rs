//! One receive-only peer connection: the webrtc-rs API it comes from (every default codec
//! negotiable, so a track in a codec the recorder does not write arrives and is logged
//! as skipped), the room's ICE servers, the callbacks that report to the call's loop, and
//! the answer to a media peer's offer.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

use super::track::{record, TrackCtx};
use super::CallOptions;
use crate::error::{NodeError, Result};

/// What the peer connections' callbacks tell the loop.
pub(super) enum PeerEvent {
    Ice { peer: String, join: u32, candidate: Option<RTCIceCandidateInit> },
    State { peer: String, join: u32, state: RTCPeerConnectionState },
    Track(JoinHandle<()>),
}

pub(super) fn media_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Remote(format!("call: {e}"))
}

pub(super) fn build_api() -> Result<API> {
    let mut m = MediaEngine::default();
    m.register_default_codecs().map_err(media_err)?;
    let registry = register_default_interceptors(Registry::new(), &mut m).map_err(media_err)?;
    let mut s = SettingEngine::default();
    // Peers on the recorder's own machine (tests, a recorder beside the node) reach it.
    s.set_include_loopback_candidate(true);
    Ok(APIBuilder::new().with_media_engine(m).with_interceptor_registry(registry).with_setting_engine(s).build())
}

/// `GET /api/ice`: the room's ICE servers (empty when the node has none or no such route).
pub(super) async fn ice_servers(o: &CallOptions) -> Vec<RTCIceServer> {
    let url = format!("{}/api/ice?room={}&token={}", o.base.trim_end_matches('/'), o.room.to_hex(), o.token);
    let Ok((200, body)) = crate::http::request("GET", &url, "").await else { return Vec::new() };
    let Ok(v) = serde_json::from_str::<Value>(&body) else { return Vec::new() };
    let servers = v.get("iceServers").and_then(Value::as_array).cloned().unwrap_or_default();
    servers
        .iter()
        .take(8)
        .filter_map(|s| {
            let urls = match s.get("urls") {
                Some(Value::String(u)) => vec![u.clone()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                _ => return None,
            };
            let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            Some(RTCIceServer { urls, username: text("username"), credential: text("credential") })
        })
        .collect()
}

/// Answers `sdp` receive-only.
pub(super) async fn answer(pc: &RTCPeerConnection, sdp: String) -> Result<String> {
    let offer = RTCSessionDescription::offer(sdp).map_err(media_err)?;
    pc.set_remote_description(offer).await.map_err(media_err)?;
    let answer = pc.create_answer(None).await.map_err(media_err)?;
    // The recorder has no tracks: every media section must come out receive-only.
    if answer.sdp.lines().any(|l| matches!(l.trim(), "a=sendrecv" | "a=sendonly")) {
        return Err(media_err("the answer would send media"));
    }
    pc.set_local_description(answer).await.map_err(media_err)?;
    pc.local_description().await.map(|d| d.sdp).ok_or_else(|| media_err("no local description"))
}

/// Reports `pc`'s ICE candidates and state to the call's loop, and records its tracks.
pub(super) fn wire(
    pc: &Arc<RTCPeerConnection>,
    peer: String,
    join: u32,
    events: &mpsc::Sender<PeerEvent>,
    ctx: TrackCtx,
) {
    let tx = events.clone();
    let id = peer.clone();
    pc.on_ice_candidate(Box::new(move |c| {
        let (tx, peer) = (tx.clone(), id.clone());
        Box::pin(async move {
            let candidate = c.and_then(|c| c.to_json().ok());
            let _ = tx.send(PeerEvent::Ice { peer, join, candidate }).await;
        })
    }));
    let tx = events.clone();
    pc.on_peer_connection_state_change(Box::new(move |state| {
        let (tx, peer) = (tx.clone(), peer.clone());
        Box::pin(async move {
            let _ = tx.send(PeerEvent::State { peer, join, state }).await;
        })
    }));
    let tx = events.clone();
    let weak = Arc::downgrade(pc);
    pc.on_track(Box::new(move |track, receiver, _| {
        let (ctx, tx, weak) = (ctx.clone(), tx.clone(), weak.clone());
        Box::pin(async move {
            let h = tokio::spawn(record(track, receiver, weak, ctx));
            let _ = tx.send(PeerEvent::Track(h)).await;
        })
    }));
}
