//! One received track into one file: RTP in sequence order (reordered, gaps recorded),
//! Opus into Ogg, VP8 frames into IVF, the sender's RTCP sender reports into the timeline,
//! a keyframe request every few seconds and after a loss.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtp_transceiver::rtp_receiver::RTCRtpReceiver;
use webrtc::track::track_remote::TrackRemote;

use super::ivf::{IvfWriter, Vp8Assembler};
use super::ogg::OggOpusWriter;
use super::reorder::{Out, Reorder, TsUnwrap};
use super::timeline::{ntp_to_unix_ms, Timeline};
use super::MediaFile;

/// Who a track belongs to, and where it goes.
#[derive(Clone, Debug)]
pub(crate) struct TrackCtx {
    pub(crate) media_dir: PathBuf,
    pub(crate) timeline: Arc<Timeline>,
    pub(crate) files: mpsc::Sender<MediaFile>,
    /// This run of the recorder (file names: a restarted recorder writes new files).
    pub(crate) session: String,
    /// The participant's signaling id, role and name.
    pub(crate) peer: String,
    pub(crate) role: String,
    pub(crate) name: String,
    /// The participant's number in this recording (file names), and its join count.
    pub(crate) index: usize,
    pub(crate) join: u32,
    /// Tracks of this join so far.
    pub(crate) tracks: Arc<AtomicU32>,
    pub(crate) stop: CancellationToken,
    pub(crate) keyframe_every: Duration,
}

/// Most tracks recorded from one peer connection (a hostile peer could offer hundreds).
const MAX_TRACKS: u32 = 4;

enum Writer {
    Ogg(OggOpusWriter),
    Ivf(IvfWriter, Vp8Assembler),
}

/// Records `track` until it ends or `ctx.stop`.
pub(crate) async fn record(
    track: Arc<TrackRemote>,
    receiver: Arc<RTCRtpReceiver>,
    pc: Weak<RTCPeerConnection>,
    ctx: TrackCtx,
) {
    let codec = track.codec();
    let mime = codec.capability.mime_type.to_ascii_lowercase();
    let kind = track.kind().to_string();
    let ext = match mime.as_str() {
        "audio/opus" => "ogg",
        "video/vp8" => "ivf",
        _ => {
            tracing::warn!(peer = %ctx.peer, codec = %mime, "not recording a track with a codec this recorder does not write");
            ctx.timeline.event(
                "skipped",
                json!({"peer": ctx.peer, "join": ctx.join, "kind": kind, "codec": mime, "payload_type": track.payload_type()}),
            );
            return;
        }
    };
    let n = ctx.tracks.fetch_add(1, Ordering::Relaxed);
    if n >= MAX_TRACKS {
        ctx.timeline.event(
            "skipped",
            json!({"peer": ctx.peer, "join": ctx.join, "kind": kind, "codec": mime, "reason": "too many tracks"}),
        );
        return;
    }
    let kind_name = if ext == "ogg" { "audio" } else { "video" };
    let role: String = ctx.role.chars().filter(char::is_ascii_alphanumeric).take(16).collect();
    let file = format!(
        "{}-p{}-{}-j{}-t{}-{kind_name}.{ext}",
        ctx.session,
        ctx.index,
        if role.is_empty() { "peer" } else { &role },
        ctx.join,
        n
    );
    let path = ctx.media_dir.join(&file);
    let created = match ext {
        "ogg" => {
            OggOpusWriter::create(&path, codec.capability.channels.clamp(1, 2) as u8, track.ssrc()).map(Writer::Ogg)
        }
        _ => IvfWriter::create(&path).map(|w| Writer::Ivf(w, Vp8Assembler::new())),
    };
    let writer = match created {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "creating a media file");
            ctx.timeline.event("error", json!({"peer": ctx.peer, "reason": format!("creating {file}: {e}")}));
            return;
        }
    };
    let clock = if codec.capability.clock_rate > 0 {
        u64::from(codec.capability.clock_rate)
    } else if ext == "ogg" {
        48000
    } else {
        90000
    };
    // The sender's reports, from the receiver's RTCP.
    let (sr_tx, sr_rx) = mpsc::channel::<(SenderReport, u64)>(16);
    let ssrc = track.ssrc();
    let rtcp = tokio::spawn(async move {
        while let Ok((pkts, _)) = receiver.read_rtcp().await {
            for p in pkts {
                if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                    if sr.ssrc == ssrc {
                        let _ = sr_tx.try_send((sr.clone(), crate::now_ms()));
                    }
                }
            }
        }
    });
    let mut rec = Rec {
        file,
        clock,
        writer: Some(writer),
        reorder: Reorder::new(if ext == "ogg" { 10 } else { 40 }),
        ts: None,
        packets: 0,
        lost: 0,
        gap: None,
        last_media: 0,
        reported: Default::default(),
        pli_at: None,
        ctx,
        pc,
        ssrc,
        kind: kind_name,
    };
    rec.run(track, sr_rx).await;
    rtcp.abort();
}

struct Rec {
    file: String,
    clock: u64,
    writer: Option<Writer>,
    reorder: Reorder<webrtc::rtp::packet::Packet>,
    ts: Option<TsUnwrap>,
    packets: u64,
    lost: u64,
    /// Lost sequence numbers not yet written to the timeline (written with the next packet).
    gap: Option<(u64, u64)>,
    /// Media time of the last packet handed on, clock ticks.
    last_media: i64,
    reported: super::ivf::Dropped,
    pli_at: Option<Instant>,
    ctx: TrackCtx,
    pc: Weak<RTCPeerConnection>,
    ssrc: u32,
    kind: &'static str,
}

impl Rec {
    fn ms(&self, ticks: i64) -> i64 {
        ticks * 1000 / self.clock as i64
    }

    async fn run(&mut self, track: Arc<TrackRemote>, mut srs: mpsc::Receiver<(SenderReport, u64)>) {
        let mut pli = tokio::time::interval(self.ctx.keyframe_every);
        let reason = loop {
            tokio::select! {
                _ = self.ctx.stop.cancelled() => break "recorder stopped",
                r = track.read_rtp() => match r {
                    Ok((p, _)) => {
                        let now = crate::now_ms();
                        if self.ts.is_none() {
                            self.start(&p, now);
                        }
                        self.packets += 1;
                        let seq = p.header.sequence_number;
                        let outs = self.reorder.push(seq, p);
                        self.hand_on(outs).await;
                    }
                    Err(_) => break "track ended",
                },
                Some((sr, at)) = srs.recv() => self.sender_report(&sr, at),
                _ = pli.tick(), if self.kind == "video" => self.keyframe().await,
            }
        };
        let rest = self.reorder.flush();
        self.hand_on(rest).await;
        self.finish(reason).await;
    }

    fn start(&mut self, p: &webrtc::rtp::packet::Packet, now: u64) {
        self.ts = Some(TsUnwrap::new(p.header.timestamp));
        self.ctx.timeline.event(
            "track",
            json!({
                "at_ms": now, "file": self.file, "peer": self.ctx.peer, "role": self.ctx.role, "name": self.ctx.name,
                "join": self.ctx.join, "kind": self.kind, "codec": if self.kind == "audio" { "opus" } else { "vp8" },
                "clock_rate": self.clock, "ssrc": self.ssrc, "first_rtp": p.header.timestamp,
                "first_seq": p.header.sequence_number,
            }),
        );
    }

    fn sender_report(&mut self, sr: &SenderReport, at: u64) {
        let Some(ts) = self.ts.as_mut() else { return };
        let ticks = ts.unwrap(sr.rtp_time);
        let media_ms = self.ms(ticks);
        self.ctx.timeline.event(
            "sr",
            json!({"at_ms": at, "file": self.file, "ntp_ms": ntp_to_unix_ms(sr.ntp_time), "rtp": sr.rtp_time,
                   "media_ms": media_ms, "packets": sr.packet_count}),
        );
    }

    async fn keyframe(&mut self) {
        let Some(pc) = self.pc.upgrade() else { return };
        self.pli_at = Some(Instant::now());
        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc: self.ssrc };
        if let Err(e) = pc.write_rtcp(&[Box::new(pli)]).await {
            tracing::debug!(error = %e, "asking for a keyframe");
        }
    }

    async fn hand_on(&mut self, outs: Vec<Out<webrtc::rtp::packet::Packet>>) {
        for o in outs {
            match o {
                Out::Lost { from, to } => {
                    self.lost += to - from;
                    let g = self.gap.get_or_insert((from, to));
                    g.1 = to;
                    if let Some(Writer::Ivf(_, a)) = self.writer.as_mut() {
                        a.lost();
                    }
                    if self.kind == "video" && self.pli_at.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) {
                        self.keyframe().await;
                    }
                }
                Out::Packet(_, p) => self.packet(p),
            }
        }
    }

    fn packet(&mut self, p: webrtc::rtp::packet::Packet) {
        let Some(ts) = self.ts.as_mut() else { return };
        let t = ts.unwrap(p.header.timestamp);
        if let Some((from, to)) = self.gap.take() {
            self.ctx.timeline.event(
                "gap",
                json!({"file": self.file, "from_seq": from, "to_seq": to, "lost": to - from,
                       "media_from_ms": self.ms(self.last_media), "media_to_ms": self.ms(t)}),
            );
        }
        if t < 0 {
            return;
        }
        self.last_media = self.last_media.max(t);
        let result = match self.writer.as_mut() {
            Some(Writer::Ogg(w)) => w.write(&p.payload, t as u64).map(|_| ()),
            Some(Writer::Ivf(w, a)) => match a.packet(p.header.timestamp, p.header.marker, &p.payload) {
                Some(f) => w.write(&f, t as u64).map(|_| ()),
                None => Ok(()),
            },
            None => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(file = %self.file, error = %e, "writing media; closing the file");
            self.ctx.timeline.event("error", json!({"file": self.file, "reason": format!("writing: {e}")}));
            self.writer = None;
        }
        self.report_drops(t);
    }

    fn report_drops(&mut self, t: i64) {
        let Some(Writer::Ivf(_, a)) = self.writer.as_ref() else { return };
        if a.needs_key() || a.dropped == self.reported {
            return;
        }
        let d = a.dropped;
        self.ctx.timeline.event(
            "dropped",
            json!({"file": self.file, "broken": d.broken - self.reported.broken,
                   "waiting": d.waiting - self.reported.waiting, "media_to_ms": self.ms(t)}),
        );
        self.reported = d;
    }

    async fn finish(&mut self, reason: &str) {
        let frames = match self.writer.take() {
            Some(Writer::Ogg(w)) => w.close().map(|()| None),
            Some(Writer::Ivf(w, _)) => {
                let n = w.frames();
                w.close().map(|()| Some(n))
            }
            None => Ok(None),
        };
        let frames = match frames {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(file = %self.file, error = %e, "closing a media file");
                None
            }
        };
        self.ctx.timeline.event(
            "end",
            json!({"file": self.file, "reason": reason, "packets": self.packets, "lost": self.lost,
                   "late": self.reorder.late, "frames": frames, "media_end_ms": self.ms(self.last_media)}),
        );
        match MediaFile::of(&self.ctx.media_dir, &self.file) {
            Ok(m) => {
                let _ = self.ctx.files.send(m).await;
            }
            Err(e) => tracing::warn!(file = %self.file, error = %e, "hashing a media file"),
        }
    }
}
