//! Profile records: which directory user holds which role in which room (set when the room is
//! created with `host_user`/`candidate_user`), and the record the node signs for each, served
//! to the room's members (`GET /api/rooms/{room}/profiles`).
//!
//! Kept in sled beside the directory, never in the room's document: the document keeps every
//! version (`skip_gc`) in a signed, immutable history, and a deleted user must leave nothing
//! behind (`docs/decisions/user-profiles-off-the-document.md`).
//!
//! A record is the JSON text `{"v":1,"room","role","user","name","avatarUrl"?,"at"}`, and the
//! node's Ed25519 signature over [`DOMAIN`] followed by that text; the member checks it with
//! the node key of `GET /api/peers`. Emails are not in it: only the operator sees those.

use arena_core::Identity;
use serde_json::{json, Value};

use crate::users::clerk::User;
use crate::users::queue::QueueError;

/// What the node's signature covers, before the record's text.
pub(crate) const DOMAIN: &str = "arena-profile/1\n";

/// The trees: user ‖ 0 ‖ room → role; room ‖ 0 ‖ role → user; room ‖ 0 ‖ user → record;
/// user → the `updated_at` its records were written from (an older update does not
/// overwrite them).
#[derive(Clone, Debug)]
pub(crate) struct Profiles {
    rooms_of: sled::Tree,
    members: sled::Tree,
    records: sled::Tree,
    versions: sled::Tree,
}

fn err(e: impl std::fmt::Display) -> QueueError {
    QueueError::from(format!("profiles: {e}"))
}

fn key(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

fn prefix(a: &str) -> Vec<u8> {
    key(a, "")
}

fn tail(k: &[u8]) -> String {
    let at = k.iter().position(|b| *b == 0).map_or(k.len(), |i| i + 1);
    String::from_utf8_lossy(&k[at..]).into_owned()
}

/// The signed record of `user` as `role` in `room`.
pub(crate) fn sign(identity: &Identity, room: &str, role: &str, user: &User, at_ms: u64) -> Value {
    let mut rec =
        json!({ "v": 1, "room": room, "role": role, "user": user.id, "name": user.display_name, "at": at_ms });
    if let Some(url) = &user.avatar_url {
        rec["avatarUrl"] = json!(url);
    }
    let text = rec.to_string();
    let mut msg = DOMAIN.as_bytes().to_vec();
    msg.extend_from_slice(text.as_bytes());
    let sig = identity.sign(&msg);
    json!({ "record": text, "signature": hex(&sig), "nodeKey": identity.public().to_hex() })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Profiles {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, QueueError> {
        Ok(Profiles {
            rooms_of: db.open_tree("users/rooms-of").map_err(err)?,
            members: db.open_tree("users/members").map_err(err)?,
            records: db.open_tree("users/profiles").map_err(err)?,
            versions: db.open_tree("users/profile-versions").map_err(err)?,
        })
    }

    /// `user` holds `role` in `room`.
    pub(crate) fn bind(&self, room: &str, role: &str, user: &str) -> Result<(), QueueError> {
        self.rooms_of.insert(key(user, room), role.as_bytes()).map_err(err)?;
        self.members.insert(key(room, role), user.as_bytes()).map_err(err)?;
        Ok(())
    }

    /// The rooms `user` is in, with the role.
    pub(crate) fn rooms_of(&self, user: &str) -> Result<Vec<(String, String)>, QueueError> {
        let mut out = Vec::new();
        for kv in self.rooms_of.scan_prefix(prefix(user)) {
            let (k, v) = kv.map_err(err)?;
            out.push((tail(&k), String::from_utf8_lossy(&v).into_owned()));
        }
        Ok(out)
    }

    /// Whether records from a version of `user` updated at `updated_at` may be written (none
    /// newer was); if so, remembers it.
    pub(crate) fn take_version(&self, user: &str, updated_at: u64) -> Result<bool, QueueError> {
        let old = self.versions.get(user.as_bytes()).map_err(err)?;
        let old = old.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok()).map(u64::from_be_bytes);
        if old.is_some_and(|o| o > updated_at) {
            return Ok(false);
        }
        self.versions.insert(user.as_bytes(), &updated_at.to_be_bytes()).map_err(err)?;
        Ok(true)
    }

    /// Stores a signed record (from [`sign`]) of `user` in `room`.
    pub(crate) fn put(&self, room: &str, user: &str, signed: &Value) -> Result<(), QueueError> {
        self.records.insert(key(room, user), signed.to_string().into_bytes()).map_err(err)?;
        Ok(())
    }

    /// Removes every record of `user` and every tie of theirs to a room; returns how many
    /// records and how many rooms.
    pub(crate) fn remove_user(&self, user: &str) -> Result<(usize, usize), QueueError> {
        let rooms = self.rooms_of(user)?;
        let mut records = 0;
        for (room, role) in &rooms {
            if self.records.remove(key(room, user)).map_err(err)?.is_some() {
                records += 1;
            }
            let member = self.members.get(key(room, role)).map_err(err)?;
            if member.as_deref() == Some(user.as_bytes()) {
                self.members.remove(key(room, role)).map_err(err)?;
            }
            self.rooms_of.remove(key(user, room)).map_err(err)?;
        }
        self.versions.remove(user.as_bytes()).map_err(err)?;
        Ok((records, rooms.len()))
    }

    /// The room's signed records.
    pub(crate) fn list(&self, room: &str) -> Result<Vec<Value>, QueueError> {
        let mut out = Vec::new();
        for kv in self.records.scan_prefix(prefix(room)) {
            let (_, v) = kv.map_err(err)?;
            out.push(serde_json::from_slice(&v).map_err(err)?);
        }
        Ok(out)
    }
}
