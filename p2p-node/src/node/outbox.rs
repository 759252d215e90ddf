//! What a commit releases once the rooms it names are flushed.

use std::collections::HashSet;

use arena_core::sync::wire::Wire;
use arena_core::RoomId;
use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use tokio::sync::oneshot;

use super::NodeEvent;
use crate::behaviour::SyncResponse;
use crate::error::Result;

/// Answers a command once its room is flushed.
pub(super) type Reply = Box<dyn FnOnce(Result<()>) + Send>;

/// What a commit releases once the rooms it names are flushed.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) dirty: HashSet<RoomId>,
    pub(super) validations: Vec<(Option<RoomId>, MessageId, PeerId, MessageAcceptance)>,
    pub(super) publish: Vec<(RoomId, Vec<Wire>)>,
    pub(super) responses: Vec<(Option<RoomId>, ResponseChannel<SyncResponse>, SyncResponse)>,
    pub(super) events: Vec<(Option<RoomId>, NodeEvent)>,
    pub(super) replies: Vec<(Option<RoomId>, Reply)>,
}

impl Outbox {
    pub(super) fn validate(&mut self, room: Option<RoomId>, id: MessageId, peer: PeerId, a: MessageAcceptance) {
        self.validations.push((room, id, peer, a));
    }

    pub(super) fn event(&mut self, room: Option<RoomId>, e: NodeEvent) {
        self.events.push((room, e));
    }

    pub(super) fn reply<T: Send + 'static>(&mut self, room: Option<RoomId>, tx: oneshot::Sender<Result<T>>, ok: T) {
        self.replies.push((
            room,
            Box::new(move |r: Result<()>| {
                let _ = tx.send(r.map(|()| ok));
            }),
        ));
    }
}
