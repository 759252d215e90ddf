//! The client side of a bootstrap node's `/yws/{room}` socket, for a peer that signs its own
//! envelopes (the WASM package, native peers): sans-IO, frames in, frames out.
//!
//! On the socket, our envelope protocol travels as [`MSG_ARENA`] messages beside the
//! y-protocols ones; presence (names, colours, cursors) is plain y-protocols awareness, so
//! stock Yjs peers see it. The node's plain sync messages are ignored: everything that
//! changes the document arrives as a signed envelope.
//!
//! Reconnecting loses nothing: [`Client::open`] announces us, asks for what we lack
//! ([`Wire::Want`]) and re-sends our newest envelope; a node that lacks older ones of ours
//! answers with its own `Want`, which [`Client::receive`] answers from our log. So edits made
//! offline stay in the log and merge on the next connection.
//!
//! An editor's keystroke only applies ([`Client::splice_deferred`]); [`Client::seal`], in a
//! later task, signs what was typed meanwhile into one envelope and returns its frames.
//!
//! Frames may come in over several links at once (the node's socket, WebRTC data channels):
//! each link, named by a number the caller picks, has its own fragment reassembler.

use yrs::sync::{AwarenessUpdate, Message};
use yrs::updates::encoder::Encode;
use yrs::ClientID;

use super::presence::PresenceMap;
use super::wire::{chunk, Wire};
use super::ywire::{arena_frame, decode_frame, encode_frame, MSG_ARENA};
use crate::doc::CodeWatch;
use crate::error::Result;
use crate::grant::{Admission, Role};
use crate::history::Splice;
use crate::identity::PeerKey;
use crate::json::{write_str, Json};
use crate::room::Room;
use crate::store::Store;

/// y-protocols' timeout: a peer's presence not renewed for this long is dropped.
pub const PRESENCE_TIMEOUT_MS: u64 = 30_000;

mod links;
use links::Links;
pub use links::MAX_LINKS;

/// What one frame from the node did.
#[derive(Debug, Default)]
pub struct Incoming {
    /// Frames to send back (answers to catch-up requests).
    pub replies: Vec<Vec<u8>>,
    /// Changes to the code buffer, to apply to the editor in order.
    pub changes: Vec<Splice>,
    /// Envelopes applied.
    pub applied: usize,
    /// Envelopes refused (bad signature, not allowed, ...).
    pub rejected: usize,
    /// Whether anyone's presence changed.
    pub presence: bool,
    /// The awareness updates that came in, as they came (also those that changed nothing:
    /// stale or repeated), for a peer that records presence.
    pub awareness: Vec<AwarenessUpdate>,
    /// Reasons the node refused something (a y-protocols permission-denied message).
    pub denied: Vec<String>,
    /// Whether a host revoked a member or a link (new to us): a direct channel to a
    /// removed member's page must not stay open (see the web package's mesh).
    pub revoked: bool,
}

/// A peer's presence, from its awareness state.
#[derive(Clone, Debug, PartialEq)]
pub struct Presence {
    /// Its awareness client id (its yrs client id).
    pub client_id: u64,
    /// Whether this is us.
    pub local: bool,
    /// `user.name`.
    pub name: String,
    /// `user.color`.
    pub color: String,
    /// Selection anchor and head as current UTF-16 offsets (when it has a cursor).
    pub anchor: Option<u32>,
    /// See `anchor`.
    pub head: Option<u32>,
    /// The whole awareness state, JSON text (it parsed when it arrived).
    pub state: String,
}

/// A room replica plus its link to the node.
#[derive(Debug)]
pub struct Client<S: Store> {
    room: Room<S>,
    links: Links,
    presence: PresenceMap,
    /// The latest time we were told (times handed to the room never go backwards).
    clock: u64,
    watch: CodeWatch,
    chunk_size: usize,
    /// Our envelopes with a lower seq were handed out by [`Client::outgoing`].
    sent: u64,
    local_renewed: u64,
}

impl<S: Store> Client<S> {
    /// Wraps a replica; envelope messages are chunked to `chunk_size` bytes.
    pub fn new(room: Room<S>, chunk_size: usize, now_ms: u64) -> Self {
        let clock = now_ms;
        let presence = PresenceMap::new(room.doc().yrs().client_id().get());
        let watch = room.doc().watch_code();
        watch.take();
        let sent = room.ledger().head(&room.identity().public()).next_seq;
        Client { room, links: Links::default(), presence, clock, watch, chunk_size, sent, local_renewed: 0 }
    }

    /// The replica.
    pub fn room(&self) -> &Room<S> {
        &self.room
    }

    /// The replica, to edit, vote, make versions; then send [`Client::outgoing`].
    pub fn room_mut(&mut self) -> &mut Room<S> {
        &mut self.room
    }

    fn tick_clock(&mut self, now_ms: u64) {
        self.clock = self.clock.max(now_ms);
    }

    /// Joins with an invite token under `name`; returns the role it grants. Our admission is
    /// announced on every [`Client::open`].
    pub fn join(&mut self, token: &str, name: &str, now_ms: u64) -> Result<Role> {
        let (adm, _) = self.room.join(token, name, now_ms)?;
        self.watch.take();
        Ok(adm.grant.role)
    }

    /// The frames to send when a socket opens (first connection and every reconnection).
    pub fn open(&mut self, now_ms: u64) -> Result<Vec<Vec<u8>>> {
        self.tick_clock(now_ms);
        self.room.seal_pending(now_ms)?;
        let me = self.room.identity().public();
        let mine: Vec<Admission> = self.room.ledger().admissions().into_iter().filter(|a| a.member == me).collect();
        let mut msgs = vec![Wire::Admissions(mine), self.room.want()];
        let head = self.room.ledger().head(&me).next_seq;
        if head > 0 {
            msgs.push(Wire::Envelopes(self.room.store().author_envelopes(&me, head - 1, 1)?));
        }
        self.sent = head;
        let mut frames = self.frames(&msgs);
        if self.presence.local_state().is_some() {
            frames.push(self.local_presence_frame());
        }
        Ok(frames)
    }

    fn frames(&self, msgs: &[Wire]) -> Vec<Vec<u8>> {
        chunk(msgs, self.chunk_size).iter().map(|c| arena_frame(c)).collect()
    }

    /// Frames carrying our envelopes made since the last call (by edits, votes, versions,
    /// restores; deferred edits are sealed first). Send them if connected, drop them if not:
    /// [`Client::open`] catches up.
    pub fn outgoing(&mut self) -> Result<Vec<Vec<u8>>> {
        self.room.seal_pending(self.clock)?;
        let me = self.room.identity().public();
        let head = self.room.ledger().head(&me).next_seq;
        if head <= self.sent {
            return Ok(Vec::new());
        }
        let envs = self.room.store().author_envelopes(&me, self.sent, usize::MAX)?;
        self.sent = head;
        Ok(self.frames(&[Wire::Envelopes(envs)]))
    }

    /// Removes `member` from the room (we must be an admitted host): signs a revocation of
    /// its key and one of the invite it joined with (so the same link admits no fresh key:
    /// a reloaded page), applies them here and returns the frames to send (any envelope of
    /// ours not handed out yet first).
    pub fn revoke(&mut self, member: PeerKey, now_ms: u64) -> Result<Vec<Vec<u8>>> {
        self.tick_clock(now_ms);
        let mut frames = self.seal(now_ms)?;
        let invite = self.room.ledger().member(&member).map(|m| m.admission.grant.invite);
        let mut revs = Vec::new();
        for target in std::iter::once(member).chain(invite) {
            if let Wire::Revocations(r) = self.room.revoke(target, now_ms)? {
                revs.extend(r);
            }
        }
        frames.extend(self.frames(&[Wire::Revocations(revs)]));
        Ok(frames)
    }

    /// Applies an edit the editor already shows (its changes are not reported back) and
    /// seals it with any deferred ones; returns the frames to send.
    pub fn splice(&mut self, splices: &[Splice], now_ms: u64) -> Result<Vec<Vec<u8>>> {
        self.splice_deferred(splices, now_ms)?;
        self.seal(now_ms)
    }

    /// Applies an edit the editor already shows, unsigned for now: the fast part of a
    /// keystroke. [`Client::seal`] (or anything else that sends) signs it later.
    pub fn splice_deferred(&mut self, splices: &[Splice], now_ms: u64) -> Result<()> {
        self.tick_clock(now_ms);
        self.room.edit_shown(splices, now_ms)?;
        Ok(())
    }

    /// Seals the deferred edits into one signed envelope; returns the frames to send (also
    /// any envelope made since the last [`Client::outgoing`]).
    pub fn seal(&mut self, now_ms: u64) -> Result<Vec<Vec<u8>>> {
        self.tick_clock(now_ms);
        self.room.seal_pending(now_ms)?;
        self.outgoing()
    }

    /// Upkeep for an idle moment, on a replica with [`crate::RoomConfig::deferred_checkpoints`]:
    /// seals deferred edits (returns their frames, as [`Client::seal`]), then makes the
    /// checkpoint that is due, if any.
    pub fn maintain(&mut self, now_ms: u64) -> Result<Vec<Vec<u8>>> {
        let frames = self.seal(now_ms)?;
        self.room.checkpoint_if_due(now_ms)?;
        Ok(frames)
    }

    /// Code changes since the last call that the editor has not seen (a restore, a merge).
    pub fn take_changes(&mut self) -> Vec<Splice> {
        self.watch.take()
    }

    /// Seals deferred edits without handing out their frames (the next [`Client::outgoing`]
    /// or [`Client::seal`] does): before reading the log ([`Room::code_at`], diffs).
    pub fn seal_quietly(&mut self) -> Result<()> {
        self.room.seal_pending(self.clock)?;
        Ok(())
    }

    /// Handles one frame from the node (link 0).
    pub fn receive(&mut self, frame: &[u8], now_ms: u64) -> Result<Incoming> {
        self.receive_on(0, frame, now_ms)
    }

    /// Handles one frame that came in on `link` (a number the caller picks per connection,
    /// 0 for the node's socket): fragments reassemble per link. Seal and send deferred edits
    /// first: the envelopes this seals itself go out in `replies`, i.e. only on `link`.
    pub fn receive_on(&mut self, link: u32, frame: &[u8], now_ms: u64) -> Result<Incoming> {
        self.tick_clock(now_ms);
        self.room.seal_pending(now_ms)?;
        let mut inc = Incoming::default();
        let mut replies = Vec::new();
        let mut want_sent = false;
        let revoked_before = self.room.ledger().revoked_count();
        for msg in decode_frame(frame)? {
            match msg {
                Message::Custom(MSG_ARENA, data) => {
                    let Some(wire) = self.links.push(link, &data, self.room.id())? else { continue };
                    let (r, receipt) = self.room.handle(wire, now_ms)?;
                    replies.extend(r);
                    inc.applied += receipt.applied.len();
                    // The node relays a newcomer's envelopes without its admission: ask for
                    // what we lack (the answer starts with the admissions).
                    let ledger = self.room.ledger();
                    let (unknown, bad): (Vec<_>, Vec<_>) =
                        receipt.rejected.iter().partition(|(author, _)| ledger.member(author).is_none());
                    inc.rejected += bad.len();
                    if !unknown.is_empty() && !want_sent {
                        want_sent = true;
                        replies.push(self.room.want());
                    }
                }
                Message::Awareness(update) => {
                    inc.presence |= self.apply_awareness(&update, now_ms);
                    inc.awareness.push(update);
                }
                Message::AwarenessQuery => {
                    if self.presence.local_state().is_some() {
                        inc.replies.push(self.local_presence_frame());
                    }
                }
                Message::Auth(Some(reason)) => inc.denied.push(reason),
                // Plain sync messages: the node sends us signed envelopes instead.
                Message::Auth(None) | Message::Sync(_) | Message::Custom(..) => {}
            }
        }
        inc.revoked = self.room.ledger().revoked_count() != revoked_before;
        inc.replies.extend(self.frames(&replies));
        inc.replies.extend(self.outgoing()?);
        inc.changes = self.watch.take();
        Ok(inc)
    }

    /// Forgets `link`'s half-received message (the connection closed or reopened).
    pub fn close_link(&mut self, link: u32) {
        self.links.close(link);
    }

    fn apply_awareness(&mut self, update: &AwarenessUpdate, now_ms: u64) -> bool {
        let me = ClientID::new(self.presence.client_id());
        // Someone (a node that thought we left) cleared our state: take it back.
        let cleared = update.clients.get(&me).is_some_and(|e| &*e.json == "null");
        let change = self.presence.apply(update, now_ms);
        if cleared {
            self.local_renewed = 0;
        }
        !change.is_empty()
    }

    /// Sets our presence: name, colour and selection (UTF-16 offsets; None: no cursor).
    /// Returns the awareness frame to send.
    pub fn set_presence(
        &mut self,
        name: &str,
        color: &str,
        selection: Option<(u32, u32)>,
        now_ms: u64,
    ) -> Result<Vec<u8>> {
        self.tick_clock(now_ms);
        let doc = self.room.doc();
        let cursor = selection
            .and_then(|(anchor, head)| Some((doc.code_position(anchor, false)?, doc.code_position(head, false)?)));
        self.presence.set_local(&presence_state(name, color, cursor.as_ref()), now_ms);
        self.local_renewed = now_ms;
        Ok(self.local_presence_frame())
    }

    fn local_presence_frame(&self) -> Vec<u8> {
        encode_frame(&[Message::Awareness(self.presence.update_for([self.presence.client_id()]))])
    }

    /// Clears our presence (leaving); returns the frame to send.
    pub fn clear_presence(&mut self, now_ms: u64) -> Result<Vec<u8>> {
        self.tick_clock(now_ms);
        let me = self.presence.client_id();
        self.presence.remove([me], now_ms);
        Ok(self.local_presence_frame())
    }

    /// Call every few seconds: renews our presence every half timeout (returns the frame to
    /// send) and drops peers not heard from for [`PRESENCE_TIMEOUT_MS`] (returns whether any
    /// were dropped).
    pub fn tick(&mut self, now_ms: u64) -> Result<(Option<Vec<u8>>, bool)> {
        self.tick_clock(now_ms);
        let me = self.presence.client_id();
        let mut renew = None;
        if let Some(state) = self.presence.local_state().map(str::to_owned) {
            if now_ms.saturating_sub(self.local_renewed) >= PRESENCE_TIMEOUT_MS / 2 {
                self.presence.set_local(&state, now_ms);
                self.local_renewed = now_ms;
                renew = Some(self.local_presence_frame());
            }
        }
        let stale: Vec<u64> = self
            .presence
            .present()
            .filter(|(id, _, at)| *id != me && now_ms.saturating_sub(*at) >= PRESENCE_TIMEOUT_MS)
            .map(|(id, _, _)| id)
            .collect();
        self.presence.remove(stale.iter().copied(), now_ms);
        Ok((renew, !stale.is_empty()))
    }

    /// Everyone present (us included), cursors resolved against the current text, sorted by
    /// client id.
    pub fn presence(&self) -> Vec<Presence> {
        let me = self.presence.client_id();
        let doc = self.room.doc();
        let mut out: Vec<Presence> = self
            .presence
            .present_views()
            .map(|(id, json, view)| {
                let cursor = |rel: &Option<Json>| doc.resolve_position_of(rel.as_ref()?);
                Presence {
                    client_id: id,
                    local: id == me,
                    name: view.name.clone(),
                    color: view.color.clone(),
                    anchor: cursor(&view.anchor),
                    head: cursor(&view.head),
                    state: json.to_owned(),
                }
            })
            .collect();
        out.sort_by_key(|p| p.client_id);
        out
    }

    /// A frame that encodes a y-protocols awareness update (for tests and relays).
    pub fn presence_update(&self) -> Result<Vec<u8>> {
        Ok(self.presence.full_update().encode_v1())
    }
}

/// Our awareness state, `{"cursor": {"anchor", "head"} | null, "user": {"color", "name"}}`,
/// as JSON text: the bytes serde_json wrote for it (keys sorted), so y-monaco and
/// y-codemirror peers read the user and the relative positions.
fn presence_state(name: &str, color: &str, cursor: Option<&(String, String)>) -> String {
    let mut s = String::from("{\"cursor\":");
    match cursor {
        Some((anchor, head)) => {
            s.push_str("{\"anchor\":");
            s.push_str(anchor);
            s.push_str(",\"head\":");
            s.push_str(head);
            s.push('}');
        }
        None => s.push_str("null"),
    }
    s.push_str(",\"user\":{\"color\":");
    write_str(&mut s, color);
    s.push_str(",\"name\":");
    write_str(&mut s, name);
    s.push_str("}}");
    s
}

#[cfg(test)]
mod tests;
