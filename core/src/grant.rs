//! Rooms, roles and signed invite grants.
//!
//! A room is named by its room key: the room id *is* the Ed25519 public key, so anyone who
//! knows the id can check a grant without asking a server. The room key signs invite grants
//! {room, role, expiry}; a grant travels as a URL-safe token. A peer that holds a token
//! proves it by signing an [`Admission`] with its own key; receivers keep a roster of admitted
//! keys and their roles.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result};
use crate::identity::{sha256, Identity, PeerKey};

/// A room's id: its room key's public half.
pub type RoomId = PeerKey;

/// What a participant may do in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The interviewer: writes, triggers the analyzer, makes checkpoints.
    Host,
    /// The candidate: writes and votes.
    Candidate,
    /// Read-only: recorders, a second interviewer watching.
    Observer,
}

impl Role {
    /// Whether this role may change the document.
    pub fn may_write(self) -> bool {
        !matches!(self, Role::Observer)
    }

    /// The lowercase name used in JSON and in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Candidate => "candidate",
            Role::Observer => "observer",
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            Role::Host => 0,
            Role::Candidate => 1,
            Role::Observer => 2,
        }
    }

    fn from_byte(b: u8) -> Result<Self> {
        Ok(match b {
            0 => Role::Host,
            1 => Role::Candidate,
            2 => Role::Observer,
            _ => return Err(CoreError::malformed("grant", format!("unknown role {b}"))),
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "host" => Ok(Role::Host),
            "candidate" => Ok(Role::Candidate),
            "observer" => Ok(Role::Observer),
            _ => Err(CoreError::malformed("role", format!("\"{s}\" is not host, candidate or observer"))),
        }
    }
}

const GRANT_VERSION: u8 = 1;
const GRANT_DOMAIN: &[u8] = b"arena/grant/v1";
const ADMISSION_DOMAIN: &[u8] = b"arena/admission/v1";
/// Grants a proxy may sign for stock Yjs clients under any client id it does not take from
/// another author (the bootstrap node's own grant).
pub const FLAG_PROXY: u8 = 1;

/// A signed invitation into a room with a role, valid until `expiry`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The room.
    pub room: RoomId,
    /// The role it confers.
    pub role: Role,
    /// Unix seconds after which nobody can be admitted with it.
    pub expiry: u64,
    /// Flags, see [`FLAG_PROXY`].
    pub flags: u8,
    /// Makes two grants with equal fields distinct.
    pub nonce: u64,
    /// The room key's signature.
    pub signature: [u8; 64],
}

impl Grant {
    /// Issues a grant: `room_key` is the room's secret key.
    pub fn issue(room_key: &Identity, role: Role, expiry: u64, flags: u8, nonce: u64) -> Self {
        let mut g = Grant { room: room_key.public(), role, expiry, flags, nonce, signature: [0; 64] };
        g.signature = room_key.sign(&g.signed_bytes());
        g
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        w.fixed(GRANT_DOMAIN)
            .fixed(&self.room.0)
            .u8(self.role.to_byte())
            .var(self.expiry)
            .u8(self.flags)
            .var(self.nonce);
        w.finish()
    }

    /// Binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(120);
        w.u8(GRANT_VERSION)
            .fixed(&self.room.0)
            .u8(self.role.to_byte())
            .var(self.expiry)
            .u8(self.flags)
            .var(self.nonce)
            .fixed(&self.signature);
        w.finish()
    }

    /// Parses the binary form; does not check the signature (see [`Grant::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "grant");
        let g = Self::read(&mut r)?;
        r.finish()?;
        Ok(g)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        if r.u8()? != GRANT_VERSION {
            return Err(r.err("unknown grant version"));
        }
        Ok(Grant {
            room: PeerKey(r.fixed()?),
            role: Role::from_byte(r.u8()?)?,
            expiry: r.var()?,
            flags: r.u8()?,
            nonce: r.var()?,
            signature: r.fixed()?,
        })
    }

    /// URL-safe token (base64url without padding).
    pub fn to_token(&self) -> String {
        base64url_encode(&self.encode())
    }

    /// Parses and verifies a token for `room` at time `now` (unix seconds).
    pub fn from_token(token: &str, room: &RoomId, now: u64) -> Result<Self> {
        if token.len() > 512 {
            return Err(CoreError::TooLarge { what: "token", len: token.len(), max: 512 });
        }
        let bytes = base64url_decode(token).ok_or_else(|| CoreError::malformed("token", "not base64url"))?;
        let g = Grant::decode(&bytes)?;
        g.verify(room, Some(now))?;
        Ok(g)
    }

    /// Checks the room, the room key's signature and (when `now` is given) the expiry.
    pub fn verify(&self, room: &RoomId, now: Option<u64>) -> Result<()> {
        if &self.room != room {
            return Err(CoreError::WrongRoom { expected: room.to_hex(), got: self.room.to_hex() });
        }
        self.room.verify(&self.signed_bytes(), &self.signature, "grant")?;
        if let Some(now) = now {
            if now > self.expiry {
                return Err(CoreError::Expired { expiry: self.expiry, now });
            }
        }
        Ok(())
    }

    /// Whether this grant lets its holder sign for stock clients.
    pub fn is_proxy(&self) -> bool {
        self.flags & FLAG_PROXY != 0
    }
}

/// A member's proof that it holds a grant: its own signature over the grant and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The grant presented.
    pub grant: Grant,
    /// The member's key: the author of its envelopes.
    pub member: PeerKey,
    /// A display name.
    pub name: String,
    /// When the member joined, unix milliseconds (signed; must be before the grant's expiry).
    pub at_ms: u64,
    /// The member's signature.
    pub signature: [u8; 64],
}

/// Longest display name accepted.
pub(crate) const MAX_NAME: usize = 128;

impl Admission {
    /// `member` presents `grant` under `name` at `at_ms`.
    pub fn sign(member: &Identity, grant: Grant, name: &str, at_ms: u64) -> Self {
        let mut a = Admission {
            grant,
            member: member.public(),
            name: name.chars().take(MAX_NAME / 4).collect(),
            at_ms,
            signature: [0; 64],
        };
        a.signature = member.sign(&a.signed_bytes());
        a
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let grant_hash = sha256(&[&self.grant.encode()]);
        let mut w = Writer::with_capacity(160);
        w.fixed(ADMISSION_DOMAIN).fixed(&grant_hash).fixed(&self.member.0).str(&self.name).var(self.at_ms);
        w.finish()
    }

    /// Checks the grant (for `room`), the member's signature, and that the member joined
    /// before the grant expired. `now` (unix seconds) additionally checks the grant is still
    /// valid now: pass it for live joins, not when replaying a log.
    pub fn verify(&self, room: &RoomId, now: Option<u64>) -> Result<()> {
        self.grant.verify(room, now)?;
        if self.at_ms / 1000 > self.grant.expiry {
            return Err(CoreError::Expired { expiry: self.grant.expiry, now: self.at_ms / 1000 });
        }
        self.member.verify(&self.signed_bytes(), &self.signature, "admission")
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.bytes(&self.grant.encode()).fixed(&self.member.0).str(&self.name).var(self.at_ms).fixed(&self.signature);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let grant = Grant::decode(r.bytes(256)?)?;
        Ok(Admission {
            grant,
            member: PeerKey(r.fixed()?),
            name: r.str(MAX_NAME)?.to_owned(),
            at_ms: r.var()?,
            signature: r.fixed()?,
        })
    }

    /// Binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        self.write(&mut w);
        w.finish()
    }

    /// Parses the binary form (the signature is checked by [`Admission::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "admission");
        let a = Self::read(&mut r)?;
        r.finish()?;
        Ok(a)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub(crate) fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

pub(crate) fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| B64.iter().position(|&d| d == c).map(|p| p as u32);
    let bytes = s.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_checks() {
        let room_key = Identity::from_passphrase("room");
        let g = Grant::issue(&room_key, Role::Candidate, 1000, 0, 7);
        let tok = g.to_token();
        assert_eq!(Grant::from_token(&tok, &room_key.public(), 999).unwrap(), g);
        assert!(matches!(Grant::from_token(&tok, &room_key.public(), 1001), Err(CoreError::Expired { .. })));
        let other = Identity::from_passphrase("other").public();
        assert!(Grant::from_token(&tok, &other, 0).is_err());
        // A grant for a role the room key never signed.
        let mut forged = g.clone();
        forged.role = Role::Host;
        assert!(Grant::from_token(&forged.to_token(), &room_key.public(), 0).is_err());
        assert!(Grant::from_token("!!!", &room_key.public(), 0).is_err());
        assert!(Grant::from_token("", &room_key.public(), 0).is_err());
    }

    #[test]
    fn base64_round_trip() {
        for n in 0..40u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64url_decode(&base64url_encode(&v)).unwrap(), v);
        }
    }

    #[test]
    fn admission_binds_member() {
        let room_key = Identity::from_passphrase("room");
        let g = Grant::issue(&room_key, Role::Host, 10, 0, 1);
        let alice = Identity::from_passphrase("alice");
        let a = Admission::sign(&alice, g.clone(), "Alice", 5_000);
        let back = Admission::decode(&a.encode()).unwrap();
        back.verify(&room_key.public(), Some(9)).unwrap();
        let mut stolen = back.clone();
        stolen.member = Identity::from_passphrase("mallory").public();
        assert!(stolen.verify(&room_key.public(), None).is_err());
        let late = Admission::sign(&alice, g, "Alice", 11_000);
        assert!(late.verify(&room_key.public(), None).is_err());
    }
}
