//! The recorder in the call (issue #26): a webrtc-rs media peer sends media that ffmpeg made
//! through a real node's `/signal` to a real `arena-node record`; ffprobe reads what it
//! wrote, the timeline maps it to the room's wall-clock, `verify` covers the files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod media_peer;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use arena_node::cli::{PeerOptions, Via};
use arena_node::http::BootstrapAddr;
use arena_node::replay::{verify, Pins};
use media_peer::{ivf_frames, ogg_packets, Media, MediaPeer};
use serde_json::{json, Value};
use support::{create_room, Server};
use tokio_util::sync::CancellationToken;

/// ffmpeg's test media: 5 s of a 440 Hz sine (Opus) and of a test pattern (VP8).
fn ffmpeg_media(dir: &Path) -> Result<Media> {
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args)
            .output()
            .context("running ffmpeg (Debian's `ffmpeg` package; scripts/install-toolchains.sh installs it)")?;
        ensure!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    let v = dir.join("v.ivf");
    let a = dir.join("a.ogg");
    run(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        "5",
        "-c:v",
        "libvpx",
        "-b:v",
        "300k",
        "-g",
        "30",
        v.to_str().context("path")?,
    ])?;
    run(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=5",
        "-c:a",
        "libopus",
        "-frame_duration",
        "20",
        a.to_str().context("path")?,
    ])?;
    let vp8: Vec<_> = ivf_frames(&std::fs::read(&v)?)?.into_iter().map(|(_, f)| f).collect();
    let opus = ogg_packets(&std::fs::read(&a)?)?;
    ensure!(vp8.len() >= 140 && opus.len() >= 240, "ffmpeg made {} frames and {} packets", vp8.len(), opus.len());
    Ok(Media { opus, vp8, seconds: 5.0, drop_every: None, pcmu: false, swap_every: None })
}

/// `ffprobe`'s codec and duration (seconds) of a media file.
fn probe(path: &Path) -> Result<(String, f64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "json"])
        .arg(path)
        .output()
        .context("running ffprobe")?;
    ensure!(out.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let codec = v["streams"][0]["codec_name"].as_str().context("codec")?.to_owned();
    let duration = v["format"]["duration"].as_str().context("duration")?.parse()?;
    Ok((codec, duration))
}

/// Decodes the whole file with ffmpeg: whether it plays (warnings allowed, errors not).
fn decodes(path: &Path) -> Result<()> {
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "null", "-"]).output()?;
    ensure!(
        out.status.success(),
        "ffmpeg could not decode {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The exported player in Debian's Chromium (examples/web-room/tests/export-player.mjs):
/// seeking shows the code, the video frame and the audio position of that instant; playing
/// moves them on together.
fn chromium_plays(player: &Path, t: &arena_node::replay::Timeline) -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/web-room/tests/export-player.mjs");
    let typed = t.steps.iter().find(|s| !s.splices.is_empty()).context("a step")?.at;
    let seek = typed + 2500;
    let out = Command::new("node").arg(&script).arg(player).arg(seek.to_string()).output().context("running node")?;
    ensure!(out.status.success(), "player in Chromium: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value =
        serde_json::from_slice(&out.stdout).with_context(|| String::from_utf8_lossy(&out.stdout).into_owned())?;
    ensure!(v["errors"].as_array().is_some_and(Vec::is_empty), "{v}");
    let (seeked, played) = (&v["seeked"], &v["played"]);
    ensure!(seeked["webcodecs"] == true && seeked["player"]["ms"] == seek, "{seeked}");
    ensure!(seeked["code"].as_str().is_some_and(|c| c.contains("# the call starts")), "{seeked}");
    let marks = seeked["marks"].as_array().context("marks")?;
    ensure!(marks.iter().any(|m| m == "vote") && marks.iter().any(|m| m == "call"), "{marks:?}");
    let track = |state: &Value, kind: &str| -> Result<Value> {
        state["tracks"].as_array().and_then(|a| a.iter().find(|t| t["kind"] == kind)).cloned().context("a track")
    };
    let (video, audio) = (track(seeked, "video")?, track(seeked, "audio")?);
    // The frame shown is the last one at or before the instant (30 fps: within 40 ms).
    let want_us = (seek as f64 - video["origin"].as_f64().context("origin")?) * 1000.0;
    let shown = video["shown"].as_f64().context("a frame shown")?;
    ensure!(shown <= want_us + 1.0 && want_us - shown <= 40_000.0, "frame {shown} µs for {want_us} µs: {video}");
    ensure!(video["errors"] == 0, "{video}");
    let want_s = (seek as f64 - audio["origin"].as_f64().context("origin")?) / 1000.0;
    let at = audio["audioTime"].as_f64().context("audio time")?;
    ensure!((at - want_s).abs() <= 0.05, "audio at {at} s for {want_s} s");
    // Playing: the clock, the audio and the video move on, together.
    let now = played["player"]["ms"].as_f64().context("ms")?;
    ensure!(now > seek as f64 + 500.0, "{played}");
    let (video2, audio2) = (track(played, "video")?, track(played, "audio")?);
    let at2 = audio2["audioTime"].as_f64().context("audio time")?;
    ensure!(at2 > at + 0.5, "the audio plays: {at} → {at2}");
    let audio_now = (now - audio2["origin"].as_f64().context("origin")?) / 1000.0;
    ensure!((at2 - audio_now).abs() <= 0.35, "audio at {at2} s while the player is at {audio_now} s");
    ensure!(video2["shown"].as_f64().is_some_and(|s| s > shown + 400_000.0), "the video plays: {video2}");
    Ok(())
}

struct Recorder {
    dir: PathBuf,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<arena_node::Result<()>>,
}

impl Recorder {
    fn start(addr: std::net::SocketAddr, room: &str, token: &str, dir: &Path) -> Result<Self> {
        let opts = PeerOptions {
            room: arena_core::PeerKey::from_hex(room)?,
            token: token.to_owned(),
            bootstrap: vec![BootstrapAddr::Http(format!("http://{addr}"))],
            listen: Vec::new(),
            name: "recorder".into(),
            relay: false,
            via: Via::Yws,
        };
        let stop = CancellationToken::new();
        let (d, s) = (dir.to_path_buf(), stop.clone());
        let task = tokio::spawn(async move { arena_node::cli::record_with_media(opts, &d, true, s).await });
        Ok(Recorder { dir: dir.to_path_buf(), stop, task })
    }

    async fn stop(self) -> Result<PathBuf> {
        self.stop.cancel();
        self.task.await??;
        Ok(self.dir)
    }
}

fn timeline(dir: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(dir.join("media").join(arena_node::media::TIMELINE_FILE))?;
    text.lines().map(|l| serde_json::from_str(l).map_err(anyhow::Error::from)).collect()
}

fn media_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("media"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    Ok(v)
}

/// The wall-clock of file time 0 by each of the file's sender reports.
fn sr_starts(tl: &[Value], file: &str) -> Vec<i64> {
    tl.iter()
        .filter(|e| e["ev"] == "sr" && e["file"] == file)
        .filter_map(|e| Some(e["ntp_ms"].as_i64()? - e["media_ms"].as_i64()?))
        .collect()
}

/// The recorder's invite: an observer's (it receives the call, never sends media).
fn recorder_token(room: &support::CreatedRoom) -> String {
    room.observer.clone()
}

/// Runs a call: the recorder joins, the media peer sends `media` `joins` times.
async fn record_call(media: &Media, joins: usize) -> Result<(tempfile::TempDir, Vec<u64>, Server)> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(&dir.path().join("node")).await?;
    let room = create_room(server.addr).await?;
    let rec = Recorder::start(server.addr, &room.room, &recorder_token(&room), &dir.path().join("rec"))?;
    let mut peer = MediaPeer::connect(server.addr, &room.room, &room.host, "host-peer").await?;
    let recorder = peer.find_recorder().await?;
    let mut starts = Vec::new();
    for j in 0..joins {
        if j > 0 {
            // A rejoin: a new hello from the same peer, a new connection.
            peer.publish("hello", json!({"role": "host", "name": "Host", "media": true})).await?;
        }
        starts.push(peer.call_and_send(&recorder, media).await?);
    }
    rec.stop().await?;
    Ok((dir, starts, server))
}

/// The host's own replica of the room over `/yws`, to type and vote while the call runs.
struct Host {
    client: arena_node::yws::NodeClient,
    link: arena_node::yws::YwsLink,
}

impl Host {
    async fn join(addr: std::net::SocketAddr, room: &str, token: &str) -> Result<Self> {
        let id = arena_core::PeerKey::from_hex(room)?;
        let now = arena_testkit::now_ms();
        let store = arena_node::NodeStore::Memory(arena_core::MemoryStore::new());
        let r =
            arena_core::Room::open(id, arena_core::Identity::from_seed([7; 32]), 0, store, Default::default(), now)?;
        let mut client = arena_node::yws::NodeClient::new(r, arena_core::sync::wire::GOSSIP_CHUNK, now);
        client.join(token, "Host", now)?;
        let mut link = arena_node::yws::YwsLink::connect(&format!("http://{addr}"), id, token).await?;
        link.open(&mut client).await?;
        Ok(Host { client, link })
    }

    async fn type_line(&mut self, line: &str) -> Result<()> {
        let env = self.client.room_mut().edit(arena_testkit::now_ms(), |e| e.splice_code(0, 0, line))?;
        env.context("an envelope")?;
        Ok(self.link.send_outgoing(&mut self.client).await?)
    }

    async fn vote(&mut self) -> Result<()> {
        let env = self.client.room_mut().vote(true, arena_testkit::now_ms())?;
        env.context("an envelope")?;
        Ok(self.link.send_outgoing(&mut self.client).await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_the_call_on_the_rooms_clock_and_verify_covers_it() -> Result<()> {
    let gen = tempfile::tempdir()?;
    let media = ffmpeg_media(gen.path())?;
    let dir = tempfile::tempdir()?;
    let server = Server::start(&dir.path().join("node")).await?;
    let room = create_room(server.addr).await?;
    let rec = Recorder::start(server.addr, &room.room, &recorder_token(&room), &dir.path().join("rec"))?;
    let mut host = Host::join(server.addr, &room.room, &room.host).await?;
    let mut peer = MediaPeer::connect(server.addr, &room.room, &room.host, "host-peer").await?;
    let recorder = peer.find_recorder().await?;
    let call = peer.dial(&recorder).await?;
    // The host types a line as the call's media starts: the room's clock and the call's
    // meet there.
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let typing = async {
        started.await?;
        host.type_line("# the call starts\n").await
    };
    let (sent, typed) = tokio::join!(peer.send(call, &media, Some(started_tx)), typing);
    let sent = sent?;
    typed?;
    host.vote().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rec = rec.stop().await?;

    let ogg = media_files(&rec, "ogg")?;
    let ivf = media_files(&rec, "ivf")?;
    ensure!(ogg.len() == 1 && ivf.len() == 1, "files: {ogg:?} {ivf:?}");
    let (codec, d) = probe(&ogg[0])?;
    ensure!(codec == "opus" && (d - 5.0).abs() <= 0.25, "audio: {codec}, {d} s");
    let (codec, d) = probe(&ivf[0])?;
    ensure!(codec == "vp8" && (d - 5.0).abs() <= 0.25, "video: {codec}, {d} s");
    decodes(&ogg[0])?;
    decodes(&ivf[0])?;

    // Each file's start, by the sender's RTCP reports, is when its first packet arrived,
    // when the peer started sending, and when the recorder got the host's line: within
    // half a second (loopback; the reports' clock is the sender's).
    let file = arena_node::recording::RecordingFile::read(&rec)?;
    let t = arena_node::replay::timeline(&file)?;
    let typed_at = t.steps.iter().find(|s| !s.splices.is_empty()).context("the host's line")?.at as i64;
    let tl = timeline(&rec)?;
    for f in [&ogg[0], &ivf[0]] {
        let name = f.file_name().and_then(|n| n.to_str()).context("name")?;
        let track = tl.iter().find(|e| e["ev"] == "track" && e["file"] == name).context("track line")?;
        let first = track["at_ms"].as_i64().context("at_ms")?;
        let srs = sr_starts(&tl, name);
        ensure!(srs.len() >= 3, "sender reports for {name}: {tl:?}");
        for s in &srs {
            ensure!((s - first).abs() <= 500, "{name}: SR start {s}, first packet {first}");
            ensure!((s - sent as i64).abs() <= 500, "{name}: SR start {s}, sent from {sent}");
            ensure!((s - typed_at).abs() <= 500, "{name}: SR start {s}, the host's line recorded at {typed_at}");
        }
        ensure!(!tl.iter().any(|e| e["ev"] == "gap" && e["file"] == name), "no loss, no gap: {tl:?}");
    }

    // The exported player carries the media and the marks.
    let html = arena_node::cli::export(&rec, arena_node::cli::Format::Html, &Default::default())?;
    let media_json: Value = {
        let tag = r#"<script id="media" type="application/json">"#;
        let start = html.find(tag).context("media data")? + tag.len();
        let end = start + html[start..].find("</script>").context("end of media data")?;
        serde_json::from_str(&html[start..end])?
    };
    for f in [&ogg[0], &ivf[0]] {
        let name = f.file_name().and_then(|n| n.to_str()).context("name")?;
        let b64 = media_json["files"][name].as_str().context("file in the player")?;
        ensure!(b64.len() == std::fs::read(f)?.len().div_ceil(3) * 4, "{name}: base64 of the whole file");
    }
    ensure!(media_json["events"].as_array().is_some_and(|e| e.iter().any(|e| e["ev"] == "sr")));
    ensure!(t.steps.iter().any(|s| s.events.iter().any(|e| e.contains("voted for"))), "a vote mark");
    ensure!(html.contains("m-vote") && !html.contains("http://") && !html.contains("https://"));
    let player = dir.path().join("player.html");
    std::fs::write(&player, &html)?;
    chromium_plays(&player, &t)?;

    // verify hashes every media file (and the timeline) against the sealed records.
    let (report, ok) = arena_node::cli::verify(&rec, &Pins::default(), false)?;
    ensure!(ok, "{report}");
    let r = verify(&file, &Pins::default());
    ensure!(r.ok() && r.media == 3, "{r:?}");
    ensure!(t.media.len() == 3, "{:?}", t.media);
    // One flipped byte in a media file, or a cut one, fails it.
    for (path, cut) in [(&ivf[0], false), (&ogg[0], true)] {
        let good = std::fs::read(path)?;
        let mut bad = good.clone();
        if cut {
            bad.truncate(bad.len() - 1);
        } else {
            let i = bad.len() / 2;
            bad[i] ^= 1;
        }
        std::fs::write(path, &bad)?;
        let (report, ok) = arena_node::cli::verify(&rec, &Pins::default(), false)?;
        ensure!(!ok && report.contains(if cut { "cut" } else { "altered" }), "{report}");
        std::fs::write(path, &good)?;
    }
    // A missing one too (session.arena shared without media/).
    let timeline_path = rec.join("media").join(arena_node::media::TIMELINE_FILE);
    let kept = std::fs::read(&timeline_path)?;
    std::fs::remove_file(&timeline_path)?;
    let (report, ok) = arena_node::cli::verify(&rec, &Pins::default(), false)?;
    ensure!(!ok && report.contains("media file timeline.jsonl"), "{report}");
    std::fs::write(&timeline_path, kept)?;
    ensure!(arena_node::cli::verify(&rec, &Pins::default(), false)?.1);
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_percent_loss_and_reordering_leave_playable_files_and_recorded_gaps() -> Result<()> {
    let gen = tempfile::tempdir()?;
    // Every 20th packet dropped, every 7th sent after the next one.
    let media = Media { drop_every: Some(20), swap_every: Some(7), ..ffmpeg_media(gen.path())? };
    let (dir, _, server) = record_call(&media, 1).await?;
    let rec = dir.path().join("rec");
    let tl = timeline(&rec)?;
    for f in media_files(&rec, "ogg")?.iter().chain(&media_files(&rec, "ivf")?) {
        let name = f.file_name().and_then(|n| n.to_str()).context("name")?;
        decodes(f)?;
        let (codec, _) = probe(f)?;
        ensure!(codec == "opus" || codec == "vp8");
        let gaps: Vec<_> = tl.iter().filter(|e| e["ev"] == "gap" && e["file"] == name).collect();
        ensure!(gaps.len() >= 5, "{name}: {gaps:?}");
        for g in &gaps {
            ensure!(g["lost"].as_u64().is_some_and(|n| n >= 1), "{g}");
            ensure!(g["media_to_ms"].as_i64() > g["media_from_ms"].as_i64(), "a gap spans media time: {g}");
        }
        let end = tl.iter().find(|e| e["ev"] == "end" && e["file"] == name).context("end line")?;
        let (lost, got) = (end["lost"].as_u64().context("lost")?, end["packets"].as_u64().context("packets")?);
        // Reordered packets are put back in order, not counted lost (nor late): the lost
        // are the dropped ones, one in 20 of those sent.
        ensure!(lost >= 5 && lost <= (got + lost) / 20 + 1 && end["late"] == 0, "{end}");
    }
    let (report, ok) = arena_node::cli::verify(&rec, &Pins::default(), false)?;
    ensure!(ok, "{report}");
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejoin_is_new_files_and_a_gap() -> Result<()> {
    let gen = tempfile::tempdir()?;
    let media = Media { seconds: 1.5, ..ffmpeg_media(gen.path())? };
    let (dir, starts, server) = record_call(&media, 2).await?;
    let rec = dir.path().join("rec");
    let ogg = media_files(&rec, "ogg")?;
    let ivf = media_files(&rec, "ivf")?;
    ensure!(ogg.len() == 2 && ivf.len() == 2, "{ogg:?} {ivf:?}");
    for f in ogg.iter().chain(&ivf) {
        decodes(f)?;
    }
    let tl = timeline(&rec)?;
    let events: Vec<&str> = tl.iter().filter(|e| e["ev"] == "peer").filter_map(|e| e["event"].as_str()).collect();
    ensure!(events.contains(&"bye") && tl.iter().any(|e| e["event"] == "join" && e["join"] == 2), "{events:?}");
    let joins: Vec<i64> =
        tl.iter().filter(|e| e["ev"] == "track" && e["kind"] == "audio").filter_map(|e| e["at_ms"].as_i64()).collect();
    ensure!(joins.len() == 2 && joins[1] - joins[0] >= 1500, "{joins:?} {starts:?}");
    let (report, ok) = arena_node::cli::verify(&rec, &Pins::default(), false)?;
    ensure!(ok && report.contains("5 media"), "{report}");
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_signaling_is_logged_and_the_recorder_goes_on() -> Result<()> {
    let gen = tempfile::tempdir()?;
    let media = Media { seconds: 1.0, pcmu: true, ..ffmpeg_media(gen.path())? };
    let dir = tempfile::tempdir()?;
    let server = Server::start(&dir.path().join("node")).await?;
    let room = create_room(server.addr).await?;
    let rec = Recorder::start(server.addr, &room.room, &recorder_token(&room), &dir.path().join("rec"))?;
    let mut evil = MediaPeer::connect(server.addr, &room.room, &room.candidate, "evil").await?;
    let recorder = evil.find_recorder().await?;
    // Garbage, a bogus SDP, a peer that never said hello, an answer, an unknown type.
    evil.publish_raw(json!("not an object")).await?;
    evil.publish_raw(json!({"type": "arena-call-offer", "from": ["evil"], "to": recorder})).await?;
    evil.publish("offer", json!({"to": recorder, "sdp": "v=0\r\nthis is not SDP"})).await?;
    evil.publish("offer", json!({"to": recorder, "sdp": 42})).await?;
    evil.publish("answer", json!({"to": recorder, "sdp": "v=0"})).await?;
    evil.publish("ice", json!({"to": recorder, "candidate": {"candidate": "candidate:garbage"}})).await?;
    evil.publish("nope", json!({"to": recorder})).await?;
    let stranger = MediaPeer::connect(server.addr, &room.room, &room.candidate, "stranger").await?;
    stranger.publish("offer", json!({"to": recorder, "sdp": "v=0"})).await?;
    // A peer that offers and then never completes ICE (it never takes the answer nor
    // sends a candidate): given up after the connect timeout, logged.
    let mut silent = MediaPeer::connect(server.addr, &room.room, &room.candidate, "silent").await?;
    silent.find_recorder().await?;
    let mut engine = webrtc::api::media_engine::MediaEngine::default();
    engine.register_default_codecs()?;
    let api = webrtc::api::APIBuilder::new().with_media_engine(engine).build();
    let pc = api.new_peer_connection(Default::default()).await?;
    pc.add_transceiver_from_kind(webrtc::rtp_transceiver::rtp_codec::RTPCodecType::Audio, None).await?;
    let offer = pc.create_offer(None).await?;
    silent.publish("offer", json!({"to": recorder, "sdp": offer.sdp})).await?;
    let recdir = dir.path().join("rec");
    arena_testkit::wait_for(Duration::from_secs(60), "the silent peer timed out", || async {
        Ok(timeline(&recdir)?.iter().any(|e| e["event"] == "timeout" && e["peer"] == "silent").then_some(()))
    })
    .await?;
    pc.close().await?;
    // The recorder still records an honest peer.
    let mut host = MediaPeer::connect(server.addr, &room.room, &room.host, "host-peer").await?;
    let r2 = host.find_recorder().await?;
    ensure!(r2 == recorder);
    host.call_and_send(&recorder, &media).await?;
    let recdir = rec.stop().await?;
    ensure!(media_files(&recdir, "ogg")?.len() == 1 && media_files(&recdir, "ivf")?.len() == 1);
    let tl = timeline(&recdir)?;
    let errors: Vec<String> = tl.iter().filter(|e| e["ev"] == "error").map(|e| e["reason"].to_string()).collect();
    // (The node itself refuses a call message without a string `from`, or without `to`
    // where one belongs, and unknown call types: those never reach the recorder, whose
    // parser refuses them too, see arena-node's media/signal.rs tests.)
    for want in ["bad offer", "never said hello", "never offers", "offer without"] {
        ensure!(errors.iter().any(|e| e.contains(want)), "no {want:?} in {errors:?}");
    }
    // The G.711 track is not written, and says so (webrtc-rs names its codec only when
    // its payload type was negotiated first: the line says the payload type).
    let skipped = tl.iter().find(|e| e["ev"] == "skipped").context("a skipped track")?;
    ensure!(
        skipped["kind"] == "audio" && skipped["codec"] != "audio/opus" && skipped["peer"] == "host-peer",
        "{skipped}"
    );
    let (report, ok) = arena_node::cli::verify(&recdir, &Pins::default(), false)?;
    ensure!(ok, "{report}");
    server.stop().await?;
    Ok(())
}

/// CPU time (user + system, seconds) of process `pid` so far, from /proc.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).context("utime")?.parse::<f64>()? + f.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// The recorder's cost (benches/results/2026-12-07-recorder.md): `arena-node record` as its
/// own process (ARENA_NODE_BIN, default target/release/arena-node) while two participants
/// send ARENA_BENCH_SECONDS (60) of ffmpeg's media each; CPU from /proc, bytes from media/.
/// Run: `cargo build --release -p arena-node && cargo test -p arena-bootstrap --test media
/// -- --ignored --nocapture recorder_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn recorder_cost() -> Result<()> {
    let seconds: f64 = std::env::var("ARENA_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let bin = std::env::var("ARENA_NODE_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/arena-node").to_owned());
    let gen = tempfile::tempdir()?;
    let media = Media { seconds, ..ffmpeg_media(gen.path())? };
    let dir = tempfile::tempdir()?;
    let server = Server::start(&dir.path().join("node")).await?;
    let room = create_room(server.addr).await?;
    let out = dir.path().join("rec");
    let mut child = tokio::process::Command::new(&bin)
        .args(["record", &room.room, "--token", &room.observer, "--via", "yws", "--name", "recorder"])
        .arg("--bootstrap")
        .arg(format!("http://{}", server.addr))
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("running {bin}"))?;
    let pid = child.id().context("pid")?;
    let mut host = MediaPeer::connect(server.addr, &room.room, &room.host, "host-peer").await?;
    let mut cand = MediaPeer::connect(server.addr, &room.room, &room.candidate, "cand-peer").await?;
    let (r1, r2) = (host.find_recorder().await?, cand.find_recorder().await?);
    let (c1, c2) = (host.dial(&r1).await?, cand.dial(&r2).await?);
    let idle0 = cpu_seconds(pid)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = (cpu_seconds(pid)? - idle0) / 5.0;
    let cpu0 = cpu_seconds(pid)?;
    let t0 = std::time::Instant::now();
    let (a, b) = tokio::join!(host.send(c1, &media, None), cand.send(c2, &media, None));
    a?;
    b?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu0;
    Command::new("kill").args(["-INT", &pid.to_string()]).status()?;
    child.wait().await?;
    let bytes: u64 = media_files(&out, "ogg")?
        .iter()
        .chain(&media_files(&out, "ivf")?)
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let minutes = seconds / 60.0;
    println!(
        "recorder {bin}: {seconds} s of media from 2 participants over {wall:.1} s wall: CPU {cpu:.2} s \
         ({:.2}% of one core per participant; idle before the media {:.2}% of a core); media files {bytes} bytes \
         ({:.0} bytes per participant-minute)",
        cpu / wall / 2.0 * 100.0,
        idle * 100.0,
        bytes as f64 / 2.0 / minutes
    );
    let (report, ok) = arena_node::cli::verify(&out, &Pins::default(), false)?;
    ensure!(ok, "{report}");
    server.stop().await?;
    Ok(())
}
