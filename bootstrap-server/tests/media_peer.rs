//! A webrtc-rs media peer for the call tests: it speaks the `arena-call-*` protocol on a
//! real node's `/signal`, offers sendonly Opus and VP8 to the recorder, and sends media
//! that ffmpeg made (Ogg Opus and IVF files), paced in real time, packetized here so a test
//! can drop packets.
#![allow(dead_code, unreachable_pub, missing_debug_implementations)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_PCMU, MIME_TYPE_VP8};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp::packetizer::Packetizer;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::{TrackLocal, TrackLocalWriter};

/// The Opus packets of an Ogg file (after its two header packets).
pub fn ogg_packets(b: &[u8]) -> Result<Vec<Bytes>> {
    let mut packets = Vec::new();
    let mut cur = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        if b.get(pos..pos + 4) != Some(b"OggS") {
            bail!("no Ogg page at byte {pos}");
        }
        let n = *b.get(pos + 26).context("short page")? as usize;
        let lacing = b.get(pos + 27..pos + 27 + n).context("short page")?;
        let mut at = pos + 27 + n;
        for &l in lacing {
            cur.extend_from_slice(b.get(at..at + l as usize).context("short page")?);
            at += l as usize;
            if l < 255 {
                packets.push(Bytes::from(std::mem::take(&mut cur)));
            }
        }
        pos = at;
    }
    Ok(packets.into_iter().skip(2).collect())
}

/// The frames of an IVF file, with their timestamps (in the file's timebase).
pub fn ivf_frames(b: &[u8]) -> Result<Vec<(u64, Bytes)>> {
    if b.get(..4) != Some(b"DKIF") {
        bail!("not IVF");
    }
    let mut out = Vec::new();
    let mut pos = 32;
    while pos + 12 <= b.len() {
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into()?) as usize;
        let ts = u64::from_le_bytes(b[pos + 4..pos + 12].try_into()?);
        out.push((ts, Bytes::copy_from_slice(b.get(pos + 12..pos + 12 + len).context("short frame")?)));
        pos += 12 + len;
    }
    Ok(out)
}

/// What the peer sends: ffmpeg's packets, how long, which packets to drop.
#[derive(Clone)]
pub struct Media {
    pub opus: Vec<Bytes>,
    pub vp8: Vec<Bytes>,
    pub seconds: f64,
    /// Drop every n-th RTP packet of each track (5% with 20).
    pub drop_every: Option<u64>,
    /// Also send a G.711 (PCMU) audio track, a codec the recorder does not write.
    pub pcmu: bool,
    /// Swap every n-th RTP packet with the next one (reordering).
    pub swap_every: Option<u64>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A media peer (host or candidate) on the room's `/signal`.
pub struct MediaPeer {
    pub me: String,
    topic: String,
    out: mpsc::Sender<Value>,
    inbox: mpsc::Receiver<Value>,
    pub recorder: Option<String>,
}

impl MediaPeer {
    pub async fn connect(addr: std::net::SocketAddr, room: &str, token: &str, me: &str) -> Result<Self> {
        let (ws, _): (Ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/signal?token={token}")).await?;
        let (mut tx, mut rx) = ws.split();
        let (out, mut out_rx) = mpsc::channel::<Value>(256);
        let (in_tx, inbox) = mpsc::channel::<Value>(1024);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = out_rx.recv() => match m {
                        Some(v) => if tx.send(Message::Text(v.to_string().into())).await.is_err() { break },
                        None => break,
                    },
                    f = rx.next() => match f {
                        Some(Ok(Message::Text(t))) => {
                            if let Ok(v) = serde_json::from_str::<Value>(&t) {
                                let _ = in_tx.try_send(v);
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
        });
        out.send(json!({"type": "subscribe", "topics": [room]})).await?;
        Ok(MediaPeer { me: me.to_owned(), topic: room.to_owned(), out, inbox, recorder: None })
    }

    /// Publishes raw `data` on the room topic (hostile tests send anything).
    pub async fn publish_raw(&self, data: Value) -> Result<()> {
        self.out.send(json!({"type": "publish", "topic": self.topic, "data": data})).await?;
        Ok(())
    }

    pub async fn send_text(&self, v: Value) -> Result<()> {
        self.out.send(v).await?;
        Ok(())
    }

    pub async fn publish(&self, kind: &str, mut data: Value) -> Result<()> {
        data["type"] = format!("arena-call-{kind}").into();
        data["from"] = self.me.clone().into();
        self.publish_raw(data).await
    }

    /// The next call message for us (addressed to us or broadcast, not our own).
    pub async fn next_call(&mut self, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v =
                tokio::time::timeout_at(deadline, self.inbox.recv()).await.context("timed out")?.context("closed")?;
            let d = &v["data"];
            let call = d["type"].as_str().is_some_and(|t| t.starts_with("arena-call-"));
            let mine = d["from"] == self.me.as_str();
            let to_other = d.get("to").is_some_and(|t| t != self.me.as_str());
            if call && !mine && !to_other {
                return Ok(d.clone());
            }
        }
    }

    /// Says hello and waits for the recorder's (a receive-only peer).
    pub async fn find_recorder(&mut self) -> Result<String> {
        self.publish("hello", json!({"role": "host", "name": "Host", "media": true})).await?;
        loop {
            let d = self.next_call(Duration::from_secs(20)).await?;
            if d["type"] == "arena-call-hello" && d["media"] == false {
                let rec = d["from"].as_str().context("from")?.to_owned();
                if d.get("to").is_none() {
                    self.publish("hello", json!({"to": rec, "role": "host", "name": "Host", "media": true})).await?;
                }
                self.recorder = Some(rec.clone());
                return Ok(rec);
            }
        }
    }

    /// Offers sendonly audio and video to `to`, completes ICE, sends `media` in real time,
    /// says bye; returns the wall-clock (unix ms) of the first packet sent.
    pub async fn call_and_send(&mut self, to: &str, media: &Media) -> Result<u64> {
        let call = self.dial(to).await?;
        self.send(call, media, None).await
    }

    /// Offers sendonly audio and video to `to` and completes ICE.
    pub async fn dial(&mut self, to: &str) -> Result<Call> {
        let (pc, audio, video, pcmu) = new_pc().await?;
        let (ice_tx, mut ice_rx) = mpsc::channel::<Option<RTCIceCandidateInit>>(64);
        pc.on_ice_candidate(Box::new(move |c| {
            let tx = ice_tx.clone();
            Box::pin(async move {
                let _ = tx.send(c.and_then(|c| c.to_json().ok())).await;
            })
        }));
        let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
        pc.on_peer_connection_state_change(Box::new(move |s| {
            let _ = state_tx.send(s);
            Box::pin(async {})
        }));
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        let sdp = pc.local_description().await.context("offer")?.sdp;
        self.publish("offer", json!({"to": to, "sdp": sdp})).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while *state.borrow() != RTCPeerConnectionState::Connected {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => bail!("the call did not connect"),
                _ = state.changed() => {}
                Some(c) = ice_rx.recv() => {
                    let c = c.map(|c| json!({"candidate": c.candidate, "sdpMid": c.sdp_mid, "sdpMLineIndex": c.sdp_mline_index}));
                    self.publish("ice", json!({"to": to, "candidate": c})).await?;
                }
                d = self.next_call(Duration::from_secs(30)) => {
                    let d = d?;
                    match d["type"].as_str() {
                        Some("arena-call-answer") => {
                            let sdp = d["sdp"].as_str().context("answer sdp")?.to_owned();
                            pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await?;
                        }
                        Some("arena-call-ice") if !d["candidate"].is_null() => {
                            let c = &d["candidate"];
                            pc.add_ice_candidate(RTCIceCandidateInit {
                                candidate: c["candidate"].as_str().unwrap_or("").to_owned(),
                                sdp_mid: c["sdpMid"].as_str().map(str::to_owned),
                                sdp_mline_index: c["sdpMLineIndex"].as_u64().map(|i| i as u16),
                                username_fragment: None,
                            }).await?;
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(Call { pc, audio, video, pcmu })
    }

    /// Sends `media` in real time on `call` (telling `started` when the first packets go),
    /// then says bye.
    pub async fn send(
        &mut self,
        call: Call,
        media: &Media,
        started: Option<tokio::sync::oneshot::Sender<u64>>,
    ) -> Result<u64> {
        let t0 = arena_testkit::now_ms();
        let a = tokio::spawn(send(
            call.audio,
            media.opus.clone(),
            48000,
            960,
            Duration::from_millis(20),
            media.seconds,
            media.drop_every,
            media.swap_every,
        ));
        let v = tokio::spawn(send(
            call.video,
            media.vp8.clone(),
            90000,
            3000,
            Duration::from_micros(33_333),
            media.seconds,
            media.drop_every,
            media.swap_every,
        ));
        let silence = vec![Bytes::from_static(&[0xff; 160])];
        let g = media.pcmu.then(|| {
            tokio::spawn(send(
                call.pcmu.clone(),
                silence,
                8000,
                160,
                Duration::from_millis(20),
                media.seconds,
                None,
                None,
            ))
        });
        if let Some(s) = started {
            let _ = s.send(t0);
        }
        a.await??;
        v.await??;
        if let Some(g) = g {
            g.await??;
        }
        // Let the last packets and a sender report arrive before leaving.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        self.publish("bye", json!({})).await?;
        call.pc.close().await?;
        Ok(t0)
    }
}

/// A connected call, ready to send.
pub struct Call {
    pub pc: Arc<RTCPeerConnection>,
    audio: Arc<TrackLocalStaticRTP>,
    video: Arc<TrackLocalStaticRTP>,
    pcmu: Arc<TrackLocalStaticRTP>,
}

type Tracks = (Arc<RTCPeerConnection>, Arc<TrackLocalStaticRTP>, Arc<TrackLocalStaticRTP>, Arc<TrackLocalStaticRTP>);

async fn new_pc() -> Result<Tracks> {
    // As the recorder does (arena_node::media::spawn): DTLS needs rustls' provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut m = MediaEngine::default();
    m.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut m)?;
    let mut s = SettingEngine::default();
    s.set_include_loopback_candidate(true);
    let api = APIBuilder::new().with_media_engine(m).with_interceptor_registry(registry).with_setting_engine(s).build();
    let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
    let cap = |mime: &str, rate, channels| RTCRtpCodecCapability {
        mime_type: mime.to_owned(),
        clock_rate: rate,
        channels,
        ..Default::default()
    };
    let audio = Arc::new(TrackLocalStaticRTP::new(cap(MIME_TYPE_OPUS, 48000, 2), "audio".into(), "host".into()));
    let video = Arc::new(TrackLocalStaticRTP::new(cap(MIME_TYPE_VP8, 90000, 0), "video".into(), "host".into()));
    let pcmu = Arc::new(TrackLocalStaticRTP::new(cap(MIME_TYPE_PCMU, 8000, 0), "g711".into(), "host".into()));
    for t in [audio.clone(), video.clone(), pcmu.clone()] {
        let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, send_encodings: vec![] };
        let tr = pc.add_transceiver_from_track(t as Arc<dyn TrackLocal + Send + Sync>, Some(init)).await?;
        let sender = tr.sender().await;
        tokio::spawn(async move { while sender.read_rtcp().await.is_ok() {} });
    }
    Ok((pc, audio, video, pcmu))
}

/// Sends `payloads` (looped) every `every` for `seconds`, `samples` RTP ticks apart,
/// dropping every `drop_every`-th packet and sending every `swap_every`-th after the next.
#[allow(clippy::too_many_arguments)]
async fn send(
    track: Arc<TrackLocalStaticRTP>,
    payloads: Vec<Bytes>,
    clock: u32,
    samples: u32,
    every: Duration,
    seconds: f64,
    drop_every: Option<u64>,
    swap_every: Option<u64>,
) -> Result<()> {
    let payloader: Box<dyn webrtc::rtp::packetizer::Payloader + Send + Sync> = match clock {
        48000 => Box::new(webrtc::rtp::codecs::opus::OpusPayloader),
        8000 => Box::new(webrtc::rtp::codecs::g7xx::G711Payloader::default()),
        _ => Box::new(webrtc::rtp::codecs::vp8::Vp8Payloader::default()),
    };
    let mut p = webrtc::rtp::packetizer::new_packetizer(
        1200,
        0,
        0,
        payloader,
        Box::new(webrtc::rtp::sequence::new_random_sequencer()),
        clock,
    );
    let n = (seconds / every.as_secs_f64()).round() as usize;
    let mut tick = tokio::time::interval(every);
    let mut count = 0u64;
    let mut held = None;
    for i in 0..n {
        tick.tick().await;
        let payload = &payloads[i % payloads.len()];
        for pkt in p.packetize(payload, samples)? {
            count += 1;
            if drop_every.is_some_and(|d| count % d == 0) {
                continue;
            }
            if held.is_none() && swap_every.is_some_and(|d| count % d == 0) {
                held = Some(pkt);
                continue;
            }
            track.write_rtp(&pkt).await?;
            if let Some(h) = held.take() {
                track.write_rtp(&h).await?;
            }
        }
    }
    Ok(())
}
