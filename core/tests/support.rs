//! Helpers shared by the integration tests (`mod support;`):
//! rooms whose members joined with invite tokens, full anti-entropy, and the convergence check.
#![allow(dead_code)]

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use arena_core::records::Meta;
use arena_core::sync::wire::Wire;
use arena_core::{
    Admission, Envelope, Identity, Invite, MemoryStore, PeerKey, Role, Room, RoomConfig, Store, FLAG_PROXY,
};
use yrs::updates::decoder::Decode;
use yrs::StateVector;

/// A fixed start time, unix milliseconds.
pub(crate) const T0: u64 = 1_700_000_000_000;

/// A room's replicas: `rooms[0]` is the host, the others joined with invite tokens in the
/// order of `roles`. Every replica knows every admission; `initial` holds the envelopes the
/// setup wrote (the host's metadata, each writer's participant entry), not yet delivered.
#[derive(Debug)]
pub(crate) struct Party {
    pub(crate) room_key: Identity,
    pub(crate) rooms: Vec<Room<MemoryStore>>,
    pub(crate) initial: Vec<(usize, Envelope)>,
}

/// Replica indices of [`full_room`].
pub(crate) const HOST: usize = 0;
pub(crate) const CAND: usize = 1;
pub(crate) const OBS: usize = 2;
/// The room's node: the only writer of `analysis` and `runs`.
pub(crate) const NODE: usize = 3;

/// Host, candidate, observer and the room's node, connected.
pub(crate) fn full_room(name: &str) -> Result<Party> {
    let mut p = party(name, &[Role::Candidate, Role::Observer], T0)?;
    ensure!(p.add_node(T0)? == NODE, "the node is not last");
    p.connect(T0)?;
    Ok(p)
}

/// Sets up a room named `name` with a host and one member per entry of `roles`.
pub(crate) fn party(name: &str, roles: &[Role], now_ms: u64) -> Result<Party> {
    let room_key = Identity::from_passphrase(&format!("{name}/room"));
    let host_id = Identity::from_passphrase(&format!("{name}/host"));
    let meta = Meta { language: "python".into(), title: name.into(), ..Meta::default() };
    let host = Room::create(&room_key, host_id, 0, MemoryStore::new(), meta, now_ms).context("create")?;
    let mut initial: Vec<(usize, Envelope)> =
        host.store().log_range(0, u64::MAX)?.into_iter().map(|e| (0, e.envelope)).collect();
    let mut rooms = vec![host];
    for (i, role) in roles.iter().enumerate() {
        let me = Identity::from_passphrase(&format!("{name}/member{i}"));
        let mut room = Room::open(rooms[0].id(), me, 0, MemoryStore::new(), RoomConfig::default(), now_ms)?;
        let token = Invite::issue(&room_key, *role, now_ms / 1000 + 3600, 0, i as u64 + 1).to_token();
        let (_adm, env) = room.join(&token, &format!("member {i}"), now_ms).with_context(|| format!("join {i}"))?;
        ensure!(env.is_some() == role.may_write(), "join of a {role} wrote {env:?}");
        if let Some(env) = env {
            initial.push((i + 1, env));
        }
        rooms.push(room);
    }
    let mut admissions = Vec::new();
    for r in &rooms {
        admissions.extend(r.ledger().admissions());
    }
    for r in &mut rooms {
        let (replies, receipt) = r.handle(Wire::Admissions(admissions.clone()), now_ms)?;
        ensure!(receipt.rejected.is_empty() && replies.is_empty(), "admissions refused: {:?}", receipt.rejected);
    }
    Ok(Party { room_key, rooms, initial })
}

impl Party {
    /// Adds the room's node (what a bootstrap node is to its rooms): a replica admitted as
    /// host with a proxy grant bound to its own key, the only writer of `analysis` and
    /// `runs`, known to every replica. Returns its index.
    pub(crate) fn add_node(&mut self, now_ms: u64) -> Result<usize> {
        let me = Identity::from_passphrase(&format!("{}/node", self.rooms[0].id()));
        let invite = Invite::bound(&self.room_key, me.clone(), Role::Host, now_ms / 1000 + 3600, FLAG_PROXY, 0);
        let adm = Admission::sign(&me, &invite, "node", now_ms);
        let mut node = Room::open(self.rooms[0].id(), me, 0, MemoryStore::new(), RoomConfig::default(), now_ms)?;
        node.admit(&adm, Some(now_ms))?;
        let mut admissions = vec![adm];
        for r in &self.rooms {
            admissions.extend(r.ledger().admissions());
        }
        self.rooms.push(node);
        for r in &mut self.rooms {
            let (_, receipt) = r.handle(Wire::Admissions(admissions.clone()), now_ms)?;
            ensure!(receipt.rejected.is_empty(), "admissions refused: {:?}", receipt.rejected);
        }
        Ok(self.rooms.len() - 1)
    }

    /// Delivers the setup's envelopes to every other replica.
    pub(crate) fn connect(&mut self, now_ms: u64) -> Result<()> {
        for (from, env) in std::mem::take(&mut self.initial) {
            for (to, r) in self.rooms.iter_mut().enumerate() {
                if to != from {
                    let receipt = r.receive(vec![env.clone()], now_ms)?;
                    ensure!(receipt.rejected.is_empty(), "setup envelope refused: {:?}", receipt.rejected);
                }
            }
        }
        Ok(())
    }
}

/// Anti-entropy: every replica sends its `want()` to every other one and handles the answer.
/// Fails on anything rejected: every envelope in these tests is honest.
pub(crate) fn sync_all(rooms: &mut [Room<MemoryStore>], now_ms: u64) -> Result<()> {
    for i in 0..rooms.len() {
        for j in 0..rooms.len() {
            if i == j {
                continue;
            }
            let Wire::Want(have) = rooms[i].want() else { anyhow::bail!("want() is not a Want") };
            let answer = rooms[j].answer(&have)?;
            for msg in answer {
                let (_, receipt) = rooms[i].handle(msg, now_ms)?;
                ensure!(receipt.rejected.is_empty(), "replica {i} refused from {j}: {:?}", receipt.rejected);
            }
        }
    }
    Ok(())
}

/// Everything two converged replicas must agree on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub(crate) state: Vec<u8>,
    pub(crate) state_vector: Vec<u8>,
    pub(crate) code: String,
    pub(crate) envelopes: BTreeMap<PeerKey, u64>,
}

pub(crate) fn fingerprint(room: &Room<MemoryStore>) -> Fingerprint {
    Fingerprint {
        state: room.doc().encode_state(),
        state_vector: room.doc().state_vector(),
        code: room.doc().code(),
        envelopes: room.envelope_vector(),
    }
}

/// Asserts that every replica holds byte-identical canonical state
/// ([`arena_core::RoomDoc::canonical_state`]), the same code, state vector (bytes and
/// meaning) and envelope vector, and that nothing is left waiting. Returns whether the raw
/// `encode_state` bytes differed somewhere (yrs splits items differently per replica).
/// Without `strict`, the canonical state and digest are not compared (see the convergence
/// test on splices inside surrogate pairs).
pub(crate) fn assert_converged(rooms: &[Room<MemoryStore>], strict: bool) -> Result<bool> {
    let first = fingerprint(&rooms[0]);
    let canonical = rooms[0].doc().canonical_state();
    let mut raw_differs = false;
    for (i, r) in rooms.iter().enumerate() {
        ensure!(r.pending() == 0, "replica {i} still buffers {} envelopes", r.pending());
        ensure!(!r.doc().has_pending(), "replica {i} has updates waiting for missing predecessors");
        let f = fingerprint(r);
        ensure!(f.code == first.code, "replica {i} code differs:\n{:?}\nvs\n{:?}", f.code, first.code);
        let (sv, sv0) = (StateVector::decode_v1(&f.state_vector)?, StateVector::decode_v1(&first.state_vector)?);
        ensure!(sv == sv0, "replica {i} state vector differs: {sv:?} vs {sv0:?}");
        ensure!(f.state_vector == first.state_vector, "replica {i} state vector bytes differ");
        ensure!(f.envelopes == first.envelopes, "replica {i} envelope vector differs");
        let c = r.doc().canonical_state();
        if strict {
            ensure!(c == canonical, "replica {i} canonical state differs ({} vs {} bytes)", c.len(), canonical.len());
            ensure!(r.state_digest() == rooms[0].state_digest(), "replica {i} state digest differs");
        }
        raw_differs |= f.state != first.state;
        // The canonical form is the same state: loading it gives the same document.
        let reloaded = arena_core::RoomDoc::new(1);
        reloaded.apply_v1(&c)?;
        ensure!(
            reloaded.code() == f.code && reloaded.state_vector() == f.state_vector,
            "canonical state of {i} is lossy"
        );
    }
    Ok(raw_differs)
}
