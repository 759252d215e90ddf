//! Presence: the y-protocols awareness states of a room (names, colours, cursors), with the
//! same merge rules as y-protocols, but detached from any document.
//!
//! yrs's `Awareness` owns a clone of the room's `Doc`, so a node could not drop an idle
//! room's document while its clients' presence lives on, and it brings observers and an
//! arc-swap into the WASM package. A room's presence is a handful of JSON strings; this is
//! a map of them.
//!
//! Rules (y-protocols `applyAwarenessUpdate`): an entry wins when its clock is newer, or
//! when it has the same clock and removes a state that is present. Nobody may remove our
//! own state: such an update bumps our clock instead, so our next update wins again.
//!
//! Bounded: a map holds at most [`MAX_PRESENCE_STATES`] client ids, removed ones (kept for
//! their clock) included. A new id over that replaces the removed one heard of longest ago;
//! with none removed it is refused ([`PresenceChange::refused`]). y-protocols has no bound,
//! so a peer could otherwise grow every replica's map without end with made-up client ids.
//! The states are a `Vec` (a room has a handful; one present client costs one 56-byte
//! entry, where a hash table's smallest allocation held four).

use std::sync::{Arc, OnceLock};

use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::AwarenessUpdate;
use yrs::ClientID;

use crate::json::Json;

const NULL: &str = "null";

/// Most client ids a [`PresenceMap`] holds (present or removed). A room has two writers and
/// a few observers, each one client id per connection.
pub const MAX_PRESENCE_STATES: usize = 256;

#[derive(Clone, Debug)]
struct State {
    clock: u32,
    /// Unix ms of the last update that won.
    last_updated: u64,
    /// None: removed (the clock is kept, so an old update cannot bring it back).
    json: Option<Arc<str>>,
    /// What `json` says, parsed on first read after it changed (a relay that never reads
    /// presence parses nothing); `None` inside when it is not JSON, or null. Boxed: a relay's
    /// states stay small.
    view: OnceLock<Option<Box<View>>>,
}

impl State {
    fn new(clock: u32, last_updated: u64, json: Option<Arc<str>>) -> Self {
        State { clock, last_updated, json, view: OnceLock::new() }
    }

    /// Sets the state; returns whether one was present. A renewal with the same text keeps
    /// the text it has and what was parsed of it: an idle client's renewal every 15 s then
    /// leaves no new long-lived block among the frame's short-lived ones.
    fn set(&mut self, json: Option<Arc<str>>) -> bool {
        let was = self.json.is_some();
        if self.json != json {
            self.view = OnceLock::new();
            self.json = json;
        }
        was
    }
}

/// The parts of an awareness state a client shows: `user.name`, `user.color` and the
/// selection's relative positions (`cursor.anchor`, `cursor.head`, resolved against the
/// text when read).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct View {
    pub(crate) name: String,
    pub(crate) color: String,
    pub(crate) anchor: Option<Json>,
    pub(crate) head: Option<Json>,
}

impl View {
    fn parse(json: &str) -> Option<Box<View>> {
        let state = Json::parse(json)?;
        if state == Json::Null {
            return None;
        }
        let user = |key| Some(state.get("user")?.get(key)?.as_str()?.to_owned());
        let cursor = |key| state.get("cursor")?.get(key).cloned();
        Some(Box::new(View {
            name: user("name").unwrap_or_default(),
            color: user("color").unwrap_or_default(),
            anchor: cursor("anchor"),
            head: cursor("head"),
        }))
    }
}

/// What an update changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceChange {
    /// Clients that became present.
    pub added: Vec<u64>,
    /// Clients whose state was renewed (changed or not).
    pub updated: Vec<u64>,
    /// Clients that left.
    pub removed: Vec<u64>,
    /// New clients not taken: the map held [`MAX_PRESENCE_STATES`] ids, none of them removed.
    /// Their entries change nothing and should not be passed on.
    pub refused: Vec<u64>,
}

impl PresenceChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }

    /// Every client whose state changed: added, renewed or removed.
    pub fn changed(&self) -> impl Iterator<Item = u64> + '_ {
        self.added.iter().chain(&self.updated).chain(&self.removed).copied()
    }
}

/// The presence states of a room, keyed by y-protocols client id.
#[derive(Clone, Debug, Default)]
pub struct PresenceMap {
    /// Our own client id (0: a relay with no state of its own).
    local: u64,
    /// At most [`MAX_PRESENCE_STATES`] (our own state may be one more), in the order first heard.
    states: Vec<(u64, State)>,
}

impl PresenceMap {
    /// A map for a peer with client id `local` (a relay that has no state of its own: 0).
    pub fn new(local: u64) -> Self {
        PresenceMap { local, states: Vec::new() }
    }

    fn get(&self, id: u64) -> Option<&State> {
        self.states.iter().find(|(i, _)| *i == id).map(|(_, s)| s)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut State> {
        self.states.iter_mut().find(|(i, _)| *i == id).map(|(_, s)| s)
    }

    /// Adds a new id's state, making room by dropping the removed state heard of longest ago
    /// when the map is full (`always`: our own, which is taken even then). Returns whether
    /// it was taken.
    fn insert(&mut self, id: u64, state: State, always: bool) -> bool {
        if self.states.len() >= MAX_PRESENCE_STATES {
            let oldest_removed = self
                .states
                .iter()
                .enumerate()
                .filter(|(_, (i, s))| s.json.is_none() && *i != self.local)
                .min_by_key(|(_, (_, s))| s.last_updated)
                .map(|(at, _)| at);
            match oldest_removed {
                Some(at) => {
                    self.states.remove(at);
                }
                None if !always => return false,
                None => {}
            }
        }
        if self.states.len() == self.states.capacity() {
            // Exact growth while small: most rooms hold one or two clients.
            self.states.reserve_exact(self.states.len().clamp(1, 16));
        }
        self.states.push((id, state));
        true
    }

    /// Our client id.
    pub fn client_id(&self) -> u64 {
        self.local
    }

    /// Applies a peer's update at `now_ms`.
    pub fn apply(&mut self, update: &AwarenessUpdate, now_ms: u64) -> PresenceChange {
        let local = self.local;
        let mut change = PresenceChange::default();
        for (client, entry) in &update.clients {
            let id = client.get();
            let new = (&*entry.json != NULL).then(|| Arc::clone(&entry.json));
            match self.get_mut(id) {
                Some(s) => {
                    let removes = s.clock == entry.clock && new.is_none() && s.json.is_some();
                    if s.clock >= entry.clock && !removes {
                        continue;
                    }
                    s.clock = entry.clock;
                    s.last_updated = now_ms;
                    match new {
                        None if id == local && local != 0 && s.json.is_some() => s.clock += 1,
                        None => {
                            if s.set(None) {
                                change.removed.push(id);
                            }
                        }
                        Some(j) => {
                            if !s.set(Some(j)) {
                                change.added.push(id);
                            } else {
                                change.updated.push(id);
                            }
                        }
                    }
                }
                None => {
                    let present = new.is_some();
                    if !self.insert(id, State::new(entry.clock, now_ms, new), false) {
                        change.refused.push(id);
                    } else if present {
                        change.added.push(id);
                    }
                }
            }
        }
        change
    }

    /// Sets our own state (JSON text); returns the update to send.
    pub fn set_local(&mut self, json: &str, now_ms: u64) -> AwarenessUpdate {
        let local = self.local;
        if self.get(local).is_none() {
            self.insert(local, State::new(0, now_ms, None), true);
        }
        let Some(s) = self.get_mut(local) else { return AwarenessUpdate { clients: Default::default() } };
        s.clock = s.clock.wrapping_add(1);
        s.last_updated = now_ms;
        s.set(Some(json.into()));
        self.update_for([self.local])
    }

    /// Our own state, if we have one.
    pub fn local_state(&self) -> Option<&str> {
        self.state(self.local)
    }

    /// Removes states (a connection that left, peers timed out, ourselves leaving); returns
    /// the update telling the others. Our own clock moves on; other clients' stays, so a
    /// newer update from them still wins (y-protocols `removeAwarenessStates`).
    pub fn remove(&mut self, ids: impl IntoIterator<Item = u64>, now_ms: u64) -> AwarenessUpdate {
        let local = self.local;
        let mut gone = Vec::new();
        for id in ids {
            if let Some(s) = self.get_mut(id) {
                if s.set(None) {
                    if id == local {
                        s.clock = s.clock.wrapping_add(1);
                    }
                    s.last_updated = now_ms;
                    gone.push(id);
                }
            }
        }
        self.update_for(gone)
    }

    /// The state of `id` (JSON text) if present.
    pub fn state(&self, id: u64) -> Option<&str> {
        self.get(id).and_then(|s| s.json.as_deref())
    }

    /// Everyone present: id, state JSON and when it was last renewed.
    pub fn present(&self) -> impl Iterator<Item = (u64, &str, u64)> {
        self.states.iter().filter_map(|(id, s)| Some((*id, s.json.as_deref()?, s.last_updated)))
    }

    /// Everyone present whose state is JSON and not null, with what it says: id, state JSON
    /// and its [`View`], parsed once per change of the state.
    pub(crate) fn present_views(&self) -> impl Iterator<Item = (u64, &str, &View)> {
        self.states.iter().filter_map(|(id, s)| {
            let json = s.json.as_deref()?;
            Some((*id, json, &**s.view.get_or_init(|| View::parse(json)).as_ref()?))
        })
    }

    /// How many clients are present.
    pub fn len(&self) -> usize {
        self.states.iter().filter(|(_, s)| s.json.is_some()).count()
    }

    /// Whether nobody is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The update describing `ids` as we know them (removed ones as `null`; unknown ids are
    /// left out).
    pub fn update_for(&self, ids: impl IntoIterator<Item = u64>) -> AwarenessUpdate {
        let clients = ids
            .into_iter()
            .filter_map(|id| {
                let s = self.get(id)?;
                let json = s.json.clone().unwrap_or_else(|| NULL.into());
                Some((ClientID::new(id), AwarenessUpdateEntry { clock: s.clock, json }))
            })
            .collect();
        AwarenessUpdate { clients }
    }

    /// The update with every present state (what a newcomer is sent).
    pub fn full_update(&self) -> AwarenessUpdate {
        self.update_for(self.present().map(|(id, _, _)| id).collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(entries: &[(u64, u32, &str)]) -> AwarenessUpdate {
        AwarenessUpdate {
            clients: entries
                .iter()
                .map(|(id, clock, json)| {
                    (ClientID::new(*id), AwarenessUpdateEntry { clock: *clock, json: (*json).into() })
                })
                .collect(),
        }
    }

    #[test]
    fn newer_clocks_win_and_same_clock_null_removes() {
        let mut p = PresenceMap::new(1);
        assert_eq!(p.apply(&upd(&[(7, 2, r#"{"a":1}"#)]), 10).added, vec![7]);
        assert!(p.apply(&upd(&[(7, 1, r#"{"a":0}"#)]), 11).is_empty(), "an older clock won");
        assert!(p.apply(&upd(&[(7, 2, r#"{"a":9}"#)]), 11).is_empty(), "the same clock with a state won");
        assert_eq!(p.state(7), Some(r#"{"a":1}"#));
        assert_eq!(p.apply(&upd(&[(7, 3, r#"{"a":2}"#)]), 12).updated, vec![7]);
        assert_eq!(p.apply(&upd(&[(7, 3, NULL)]), 13).removed, vec![7]);
        assert!(p.is_empty());
        // A stale state cannot come back after the removal.
        assert!(p.apply(&upd(&[(7, 3, r#"{"a":2}"#)]), 14).is_empty());
        assert_eq!(p.apply(&upd(&[(7, 4, r#"{"a":3}"#)]), 15).added, vec![7]);
    }

    #[test]
    fn a_full_map_takes_a_new_client_in_place_of_the_oldest_removed_one_and_refuses_it_otherwise() {
        let mut p = PresenceMap::new(1);
        let flood: Vec<(u64, u32, &str)> = (100..100 + MAX_PRESENCE_STATES as u64).map(|id| (id, 1, "{}")).collect();
        assert_eq!(p.apply(&upd(&flood), 1).added.len(), MAX_PRESENCE_STATES);
        // Full, nobody removed: a newcomer is refused and stays unknown.
        let c = p.apply(&upd(&[(7, 1, r#"{"late":1}"#)]), 2);
        assert_eq!((c.refused, c.added), (vec![7], vec![]));
        assert_eq!(p.state(7), None);
        // Known clients still renew.
        assert_eq!(p.apply(&upd(&[(100, 2, "{}")]), 3).updated, vec![100]);
        // Two leave (101 first): the newcomer takes 101's place, the next one 102's.
        p.remove([101], 4);
        p.remove([102], 5);
        assert_eq!(p.apply(&upd(&[(7, 1, r#"{"late":1}"#)]), 6).added, vec![7]);
        assert!(p.update_for([101]).clients.is_empty(), "the oldest removed id was kept");
        assert_eq!(p.update_for([102]).clients.len(), 1, "a newer removed id went first");
        assert_eq!(p.apply(&upd(&[(8, 1, "{}")]), 7).added, vec![8]);
        assert_eq!(p.apply(&upd(&[(9, 1, "{}")]), 8).refused, vec![9]);
        assert!(p.states.len() <= MAX_PRESENCE_STATES);
        // Our own state is always taken, full or not.
        p.set_local(r#"{"me":1}"#, 9);
        assert_eq!(p.local_state(), Some(r#"{"me":1}"#));
        assert_eq!(p.states.len(), MAX_PRESENCE_STATES + 1);
    }

    #[test]
    fn one_present_client_costs_one_small_entry() {
        let mut p = PresenceMap::new(0);
        p.apply(&upd(&[(7, 1, r##"{"user":{"name":"Ada","color":"#fff"}}"##)]), 1);
        assert_eq!(p.states.capacity(), 1);
        assert!(std::mem::size_of::<(u64, State)>() <= 56, "{} bytes", std::mem::size_of::<(u64, State)>());
        // Reading the view parses it once, in a box of its own.
        let names: Vec<_> = p.present_views().map(|(_, _, v)| v.name.clone()).collect();
        assert_eq!(names, ["Ada"]);
    }

    #[test]
    fn a_renewal_with_the_same_text_keeps_the_text_it_has() {
        let mut p = PresenceMap::new(0);
        p.apply(&upd(&[(7, 1, r#"{"n":1}"#)]), 1);
        let first = p.get(7).and_then(|s| s.json.clone());
        assert_eq!(p.apply(&upd(&[(7, 2, r#"{"n":1}"#)]), 2).updated, vec![7]);
        let kept = p.get(7).and_then(|s| s.json.clone());
        assert!(
            matches!((&first, &kept), (Some(a), Some(b)) if Arc::ptr_eq(a, b)),
            "a same-text renewal replaced the text: {first:?} -> {kept:?}"
        );
        assert_eq!(p.get(7).map(|s| (s.clock, s.last_updated)), Some((2, 2)));
        p.apply(&upd(&[(7, 3, r#"{"n":2}"#)]), 3);
        assert_eq!(p.state(7), Some(r#"{"n":2}"#));
    }

    #[test]
    fn nobody_removes_our_own_state() {
        let mut p = PresenceMap::new(5);
        let mine = p.set_local(r#"{"me":1}"#, 1);
        let clock = mine.clients[&ClientID::new(5)].clock;
        assert!(p.apply(&upd(&[(5, clock, NULL)]), 2).is_empty());
        assert_eq!(p.local_state(), Some(r#"{"me":1}"#));
        // Our clock moved past the removal, so the others take our next renewal.
        let again = p.update_for([5]);
        assert!(again.clients[&ClientID::new(5)].clock > clock);
    }

    #[test]
    fn removal_is_announced_with_the_clock_others_hold() {
        let mut relay = PresenceMap::new(0);
        relay.apply(&upd(&[(3, 4, r#"{"x":1}"#), (4, 1, r#"{"y":1}"#)]), 1);
        let gone = relay.remove([3, 99], 2);
        assert_eq!(gone.clients.len(), 1);
        assert_eq!(gone.clients[&ClientID::new(3)].clock, 4);
        assert_eq!(&*gone.clients[&ClientID::new(3)].json, NULL);
        let mut peer = PresenceMap::new(9);
        peer.apply(&upd(&[(3, 4, r#"{"x":1}"#)]), 1);
        assert_eq!(peer.apply(&gone, 3).removed, vec![3]);
        assert_eq!(relay.full_update().clients.len(), 1);
    }
}
