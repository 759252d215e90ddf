//! `Room`: one replica of a room in the page, and its side of the `/yws` socket.

use arena_core::history::{DiffLine, Splice};
use arena_core::records::{Meta, VersionCause};
use arena_core::sync::client::Client;
use arena_core::sync::wire::GOSSIP_CHUNK;
use arena_core::{Cut, Identity, Invite, MemoryStore, MetaValue, PeerKey, Role, RoomConfig};
use js_sys::{Array, Object, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::js::{frames, json, list, ms, object, reserve_heap, seed, splices};

/// A room replica: the document, the signed envelope log, presence, votes and history.
///
/// Methods that change the room return the frames to send on the socket (an array of
/// `Uint8Array`); send them when connected and drop them when not: `open()` catches up.
/// A keystroke can be split: `applyEdit` now (no signature), `seal` in a later task.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Room {
    pub(crate) client: Client<MemoryStore>,
    /// Only for a room created here: issues invite tokens.
    room_key: Option<Identity>,
}

/// The page's room: checkpoints wait for [`Room::maintain`] (an idle moment), not a keystroke.
fn config() -> RoomConfig {
    RoomConfig { deferred_checkpoints: true, ..RoomConfig::default() }
}

pub(crate) fn cut(version: Option<String>) -> Cut {
    version.map_or(Cut::End, Cut::Version)
}

pub(crate) fn edit_splices(ops: &[u32], inserts: Vec<String>) -> Result<Vec<Splice>, JsError> {
    if ops.len() != inserts.len() * 2 {
        return Err(JsError::new("edit: ops must hold one [pos, delete] pair per insert"));
    }
    Ok(ops.chunks(2).zip(inserts).map(|(p, insert)| Splice { pos: p[0], delete: p[1], insert }).collect())
}

#[wasm_bindgen]
impl Room {
    /// Joins room `room` (hex id) with an invite `token` under `name`; `seed` is 32 random
    /// bytes for this peer's key.
    pub fn join(room: &str, token: &str, name: &str, seed_bytes: &[u8], now_ms: f64) -> Result<Room, JsError> {
        let id = PeerKey::from_hex(room)?;
        let me = Identity::from_seed(seed(seed_bytes, "seed")?);
        reserve_heap();
        let replica = arena_core::Room::open(id, me, 0, MemoryStore::new(), config(), ms(now_ms))?;
        let mut client = Client::new(replica, GOSSIP_CHUNK, ms(now_ms));
        client.join(token, name, ms(now_ms))?;
        Ok(Room { client, room_key: None })
    }

    /// Creates a room here (for peer-to-peer use without a bootstrap node): `room_seed` is the
    /// room key, `seed` the host's key. Invite others with [`Room::invite_token`].
    pub fn create(
        room_seed: &[u8],
        seed_bytes: &[u8],
        name: &str,
        language: &str,
        title: &str,
        now_ms: f64,
    ) -> Result<Room, JsError> {
        let room_key = Identity::from_seed(seed(room_seed, "room seed")?);
        let me = Identity::from_seed(seed(seed_bytes, "seed")?);
        let meta = Meta { language: language.into(), title: title.into(), ..Meta::default() };
        reserve_heap();
        let mut replica = arena_core::Room::create(&room_key, me, 0, MemoryStore::new(), meta, ms(now_ms))?;
        *replica.config_mut() = config();
        let key = replica.identity().public().to_hex();
        let p = arena_core::records::Participant {
            name: name.into(),
            role: Role::Host,
            public_key: key.clone(),
            joined_at: ms(now_ms),
        };
        replica.edit(ms(now_ms), |e| e.set_participant(&key, &p))?;
        Ok(Room { client: Client::new(replica, GOSSIP_CHUNK, ms(now_ms)), room_key: Some(room_key) })
    }

    /// An invite token for `role` ("host", "candidate", "observer") valid until `expiry_secs`
    /// (unix seconds). Only for rooms created here.
    #[wasm_bindgen(js_name = inviteToken)]
    pub fn invite_token(&self, role: &str, expiry_secs: f64, now_ms: f64) -> Result<String, JsError> {
        let key = self.room_key.as_ref().ok_or_else(|| JsError::new("only the room's creator holds its key"))?;
        Ok(Invite::issue(key, role.parse()?, ms(expiry_secs), 0, ms(now_ms)).to_token())
    }

    /// The room id (hex).
    #[wasm_bindgen(js_name = roomId)]
    pub fn room_id(&self) -> String {
        self.client.room().id().to_hex()
    }

    /// Our public key (hex): the author of our envelopes and votes.
    #[wasm_bindgen(js_name = publicKey)]
    pub fn public_key(&self) -> String {
        self.client.room().identity().public().to_hex()
    }

    /// Our yrs / awareness client id.
    #[wasm_bindgen(js_name = clientId)]
    pub fn client_id(&self) -> f64 {
        self.client.room().doc().client_id() as f64
    }

    /// Our role: "host", "candidate" or "observer".
    pub fn role(&self) -> String {
        self.client.room().role().map(|r| r.as_str().to_owned()).unwrap_or_default()
    }

    /// The frames to send when the socket (re)opens: our admission, a catch-up request, our
    /// newest envelope (so the node asks for any it lacks) and our presence.
    pub fn open(&mut self, now_ms: f64) -> Result<Array, JsError> {
        Ok(frames(self.client.open(ms(now_ms))?))
    }

    /// Applies edits the editor already shows: `ops` holds `[pos, delete]` pairs (UTF-16
    /// units, applied in order) and `inserts` the text each inserts. One signed envelope
    /// (with any edits applied by `applyEdit` and not sealed yet); returns its frames.
    pub fn edit(&mut self, ops: &[u32], inserts: Vec<String>, now_ms: f64) -> Result<Array, JsError> {
        self.client.splice_deferred(&edit_splices(ops, inserts)?, ms(now_ms))?;
        Ok(frames(self.client.seal(ms(now_ms))?))
    }

    /// Applies edits the editor already shows, like `edit`, without signing them: the
    /// keystroke's part. Call `seal()` soon after (in a later task) and send its frames.
    #[wasm_bindgen(js_name = applyEdit)]
    pub fn apply_edit(&mut self, ops: &[u32], inserts: Vec<String>, now_ms: f64) -> Result<(), JsError> {
        Ok(self.client.splice_deferred(&edit_splices(ops, inserts)?, ms(now_ms))?)
    }

    /// Signs the edits applied since the last seal into one envelope; returns the frames to
    /// send (empty when nothing waited).
    pub fn seal(&mut self, now_ms: f64) -> Result<Array, JsError> {
        Ok(frames(self.client.seal(ms(now_ms))?))
    }

    /// Upkeep for an idle moment (every few seconds, e.g. from `requestIdleCallback`): seals
    /// deferred edits (returns their frames, like `seal()`) and makes the periodic checkpoint
    /// when it is due.
    pub fn maintain(&mut self, now_ms: f64) -> Result<Array, JsError> {
        Ok(frames(self.client.maintain(ms(now_ms))?))
    }

    /// Handles one frame that came in on `link` (a number per connection, default 0: the
    /// node's socket; fragments reassemble per link): `{replies, changes, applied,
    /// rejected, presence, denied, revoked}`; send `replies` back on that link, apply
    /// `changes` to the editor in order (`revoked`: a host removed someone just now). Seal
    /// first: what this seals itself goes out in `replies`.
    pub fn receive(&mut self, frame: &[u8], now_ms: f64, link: Option<u32>) -> Result<Object, JsError> {
        let inc = self.client.receive_on(link.unwrap_or(0), frame, ms(now_ms))?;
        Ok(object(&[
            ("replies", frames(inc.replies).into()),
            ("changes", splices(&inc.changes).into()),
            ("applied", inc.applied.into()),
            ("rejected", inc.rejected.into()),
            ("presence", inc.presence.into()),
            ("denied", inc.denied.iter().map(|d| JsValue::from_str(d)).collect::<Array>().into()),
            ("revoked", inc.revoked.into()),
        ]))
    }

    /// Forgets `link`'s half-received message (its connection closed or reopened).
    #[wasm_bindgen(js_name = closeLink)]
    pub fn close_link(&mut self, link: u32) {
        self.client.close_link(link);
    }

    /// Code changes not yet shown by the editor.
    #[wasm_bindgen(js_name = takeChanges)]
    pub fn take_changes(&mut self) -> Array {
        splices(&self.client.take_changes())
    }

    /// The code buffer.
    pub fn code(&self) -> String {
        self.client.room().doc().code()
    }

    /// The code buffer's length in UTF-16 units, without building the string.
    #[wasm_bindgen(js_name = codeLength)]
    pub fn code_length(&self) -> u32 {
        self.client.room().doc().code_len()
    }

    /// Sets our presence; `anchor`/`head` are UTF-16 offsets (both undefined: no cursor).
    /// Returns the awareness frame to send.
    #[wasm_bindgen(js_name = setPresence)]
    pub fn set_presence(
        &mut self,
        name: &str,
        color: &str,
        anchor: Option<u32>,
        head: Option<u32>,
        now_ms: f64,
    ) -> Result<Uint8Array, JsError> {
        let sel = anchor.zip(head.or(anchor));
        Ok(self.client.set_presence(name, color, sel, ms(now_ms))?.as_slice().into())
    }

    /// Clears our presence (before leaving); returns the frame to send.
    #[wasm_bindgen(js_name = clearPresence)]
    pub fn clear_presence(&mut self, now_ms: f64) -> Result<Uint8Array, JsError> {
        Ok(self.client.clear_presence(ms(now_ms))?.as_slice().into())
    }

    /// Everyone present: `[{clientId, local, name, color, anchor, head, state}]`.
    pub fn presence(&self) -> JsValue {
        let pos = |p: Option<u32>| p.map_or(JsValue::NULL, JsValue::from);
        list(self.client.presence().into_iter().map(|p| {
            // The state parsed when it came in; client ids are 53-bit, exact as JS numbers.
            let state = js_sys::JSON::parse(&p.state).unwrap_or(JsValue::NULL);
            object(&[
                ("clientId", (p.client_id as f64).into()),
                ("local", p.local.into()),
                ("name", p.name.into()),
                ("color", p.color.into()),
                ("anchor", pos(p.anchor)),
                ("head", pos(p.head)),
                ("state", state),
            ])
        }))
    }

    /// Call every few seconds: `{frame, changed}`; send `frame` when set (our renewed
    /// presence); `changed` when silent peers were dropped.
    pub fn tick(&mut self, now_ms: f64) -> Result<Object, JsError> {
        let (frame, changed) = self.client.tick(ms(now_ms))?;
        let frame = frame.map_or(JsValue::NULL, |f| Uint8Array::from(f.as_slice()).into());
        Ok(object(&[("frame", frame), ("changed", changed.into())]))
    }

    /// `meta`: `{language, title, question, analyzerThreshold, analyzerRound, createdAt}`.
    pub fn meta(&self) -> Result<JsValue, JsError> {
        json(&self.client.room().doc().meta())
    }

    /// Sets one `meta` field (e.g. "language") to a JSON value.
    #[wasm_bindgen(js_name = setMeta)]
    pub fn set_meta(&mut self, key: &str, value_json: &str, now_ms: f64) -> Result<Array, JsError> {
        let value = MetaValue::from_json(value_json)?;
        self.client.room_mut().edit(ms(now_ms), |e| e.set_meta_value(key, &value))?;
        Ok(frames(self.client.outgoing()?))
    }

    /// `[{key, name, role, joinedAt, revoked}]` from the document (`revoked`: a host removed
    /// that member; its entry stays, as history).
    pub fn participants(&self) -> JsValue {
        let ledger = self.client.room().ledger();
        list(self.client.room().doc().participants().into_iter().map(|(k, p)| {
            let (role, joined_at) = (p.role.as_str().into(), (p.joined_at as f64).into());
            let revoked = PeerKey::from_hex(&k).is_ok_and(|key| ledger.is_revoked(&key)).into();
            object(&[
                ("key", k.into()),
                ("name", p.name.into()),
                ("role", role),
                ("joinedAt", joined_at),
                ("revoked", revoked),
            ])
        }))
    }

    /// Removes member `target` (its public key, hex) from the room: a revocation signed by
    /// us (a host), which every replica enforces (its envelopes from now on are refused) and
    /// on which the node closes its connections. Returns the frames to send.
    pub fn revoke(&mut self, target: &str, now_ms: f64) -> Result<Array, JsError> {
        Ok(frames(self.client.revoke(PeerKey::from_hex(target)?, ms(now_ms))?))
    }

    /// Signs and records our analyzer vote for the current round.
    pub fn vote(&mut self, enabled: bool, now_ms: f64) -> Result<Array, JsError> {
        self.client.room_mut().vote(enabled, ms(now_ms))?;
        Ok(frames(self.client.outgoing()?))
    }

    /// Where the analyzer consensus stands, every vote's signature checked:
    /// `{round, enabled, required, satisfied, rejected, votes}`.
    pub fn consensus(&self) -> JsValue {
        let c = self.client.room().consensus();
        let votes = list(self.client.room().doc().votes().into_iter().map(|(k, v)| {
            object(&[("voter", k.into()), ("round", (v.round as f64).into()), ("enabled", v.enabled.into())])
        }));
        let roles = |r: &[Role]| list(r.iter().map(|r| r.as_str()));
        object(&[
            ("round", (c.round as f64).into()),
            ("enabled", c.enabled().into()),
            ("required", roles(&c.required)),
            ("satisfied", roles(&c.satisfied)),
            ("rejected", list(c.rejected.iter().map(String::as_str))),
            ("votes", votes),
        ])
        .into()
    }

    /// The versions: `[{id, label, cause, at, by, stateVector, heads}]`.
    pub fn versions(&self) -> Result<JsValue, JsError> {
        json(&self.client.room().doc().versions())
    }

    /// Saves the current code as a version labelled `label`.
    #[wasm_bindgen(js_name = createVersion)]
    pub fn create_version(&mut self, label: &str, now_ms: f64) -> Result<Array, JsError> {
        self.client.room_mut().create_version(label, VersionCause::Manual, ms(now_ms))?;
        Ok(frames(self.client.outgoing()?))
    }

    /// Restores version `id` as a forward edit: `{frames, changes}`; apply `changes` to the
    /// editor, send `frames`.
    pub fn restore(&mut self, id: &str, now_ms: f64) -> Result<Object, JsError> {
        self.client.room_mut().restore(id, ms(now_ms))?;
        let out = frames(self.client.outgoing()?);
        Ok(object(&[("frames", out.into()), ("changes", splices(&self.client.take_changes()).into())]))
    }

    /// The code at version `id` (undefined: now). Seals edits applied by `applyEdit` (their
    /// frames come with the next `seal()`).
    #[wasm_bindgen(js_name = codeAt)]
    pub fn code_at(&mut self, id: Option<String>) -> Result<String, JsError> {
        self.client.seal_quietly()?;
        Ok(self.client.room().code_at(&cut(id))?)
    }

    /// Line diff between two versions (undefined: now): `[{kind: "same"|"removed"|"added", text}]`.
    /// Seals like `codeAt`.
    pub fn diff(&mut self, from: Option<String>, to: Option<String>) -> Result<JsValue, JsError> {
        self.client.seal_quietly()?;
        let lines = self.client.room().diff(&cut(from), &cut(to))?;
        Ok(list(lines.iter().map(|l| {
            let (kind, text) = match l {
                DiffLine::Same(t) => ("same", t),
                DiffLine::Removed(t) => ("removed", t),
                DiffLine::Added(t) => ("added", t),
            };
            object(&[("kind", kind.into()), ("text", text.as_str().into())])
        })))
    }

    /// The run records (written by the node's execution service).
    pub fn runs(&self) -> Result<JsValue, JsError> {
        json(&self.client.room().doc().runs())
    }

    /// The analyzer results.
    pub fn analysis(&self) -> Result<JsValue, JsError> {
        json(&self.client.room().doc().analysis())
    }

    /// Signs `message` with our key (64 bytes).
    pub fn sign(&self, message: &[u8]) -> Uint8Array {
        self.client.room().identity().sign(message).as_slice().into()
    }

    /// A digest of the document state, equal on replicas that converged.
    #[wasm_bindgen(js_name = stateDigest)]
    pub fn state_digest(&self) -> String {
        self.client.room().state_digest()
    }
}

/// Checks an Ed25519 signature by `public_key` (hex) over `message`.
#[wasm_bindgen(js_name = verifySignature)]
pub fn verify_signature(public_key: &str, message: &[u8], signature: &[u8]) -> bool {
    let (Ok(key), Ok(sig)) = (PeerKey::from_hex(public_key), <[u8; 64]>::try_from(signature)) else { return false };
    key.verify(message, &sig, "message").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Natively only paths that create no JS values can run.
    #[test]
    fn create_invite_join_and_catch_up() {
        let mut host = Room::create(&[7; 32], &[1; 32], "Ada", "python", "demo", 1_000.0).unwrap();
        let token = host.invite_token("candidate", 10_000.0, 1_000.0).unwrap();
        let mut cand = Room::join(&host.room_id(), &token, "Bob", &[2; 32], 2_000.0).unwrap();
        assert_eq!(cand.role(), "candidate");
        host.client.splice(&[Splice { pos: 0, delete: 0, insert: "print(1)".into() }], 2_100).unwrap();
        // Candidate → host → candidate, as a relay would.
        for f in cand.client.open(2_200).unwrap() {
            let inc = host.client.receive(&f, 2_200).unwrap();
            for r in inc.replies {
                cand.client.receive(&r, 2_300).unwrap();
            }
        }
        assert_eq!(cand.code(), "print(1)");
        assert_eq!(cand.code_length(), 8);
        assert_eq!(cand.state_digest(), host.state_digest());
        host.client.splice(&[Splice { pos: 0, delete: 0, insert: "é😀".into() }], 2_400).unwrap();
        assert_eq!(host.code_length(), 11, "UTF-16 units: é is one, 😀 two");
        assert!(verify_signature(&host.public_key(), b"x", &host.client.room().identity().sign(b"x")));
    }
}
