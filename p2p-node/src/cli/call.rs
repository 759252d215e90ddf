//! `arena-node record`'s side of the call: where it is signaled, and the closed media
//! files' hashes into the recording (through the node's actor or the `/yws` room).

use arena_core::RoomId;
use tracing::warn;

use super::PeerOptions;
use crate::http::BootstrapAddr;
use crate::media::MediaFile;
use crate::node::{now_ms, NodeRoom};
use crate::store::NodeStore;

/// The bootstrap node whose `/signal` carries the call: the first `http://` one.
pub(super) fn call_base(opts: &PeerOptions) -> Option<String> {
    opts.bootstrap.iter().find_map(|b| match b {
        BootstrapAddr::Http(url) => Some(url.clone()),
        BootstrapAddr::Multiaddr(_) => None,
    })
}

/// Waits for the stopped call to close its files; returns those not yet recorded.
pub(super) async fn finish_call(
    task: Option<tokio::task::JoinHandle<()>>,
    files: &mut Option<tokio::sync::mpsc::Receiver<MediaFile>>,
) -> Vec<MediaFile> {
    let mut done = Vec::new();
    let (Some(mut task), Some(rx)) = (task, files.as_mut()) else { return done };
    // Drained while it runs: its queue is bounded.
    loop {
        tokio::select! {
            f = rx.recv() => match f {
                Some(f) => done.push(f),
                None => break,
            },
            _ = &mut task => break,
        }
    }
    while let Ok(f) = rx.try_recv() {
        done.push(f);
    }
    done
}

/// The next closed media file, or never when the call is not recorded.
pub(super) async fn recv_file(files: &mut Option<tokio::sync::mpsc::Receiver<MediaFile>>) -> Option<MediaFile> {
    match files {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) fn record_media_room(room: &mut NodeRoom, f: MediaFile) {
    println!("{} sealing media file {} ({} bytes)", crate::time::format_ms(now_ms()), f.file, f.bytes);
    if let NodeStore::Recording(r) = room.store_mut() {
        if let Err(e) = r.record_media(now_ms(), &f) {
            warn!(file = %f.file, error = %e, "recording a media file's hash");
        }
    }
    if let Err(e) = arena_core::Store::flush(room.store_mut()) {
        warn!(error = %e, "flushing the recording");
    }
}

pub(super) async fn record_media_node(node: &crate::NodeHandle, room: RoomId, f: MediaFile) {
    if let Err(e) = node.with_room(room, move |r, _| record_media_room(r, f)).await {
        warn!(error = %e, "recording a media file's hash");
    }
}
