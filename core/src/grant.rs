//! Rooms, roles, key-bound invites and admissions.
//!
//! A room is named by its room key: the room id *is* the Ed25519 public key, so anyone who
//! knows the id can check a grant without asking a server. The room key signs grants
//! {room, role, expiry, invite key}. An invite link carries the grant and the invite key's
//! secret ([`Invite`]); a peer joins by signing an [`Admission`] with both the invite key
//! (binding its own member key to the grant) and its member key. Peers only ever see
//! admissions: a grant alone admits nobody, so nothing a peer receives lets it admit another
//! key. Receivers keep a roster of admitted keys and their roles (see `docs/trust.md`).

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

const GRANT_VERSION: u8 = 2;
const GRANT_DOMAIN: &[u8] = b"arena/grant/v2";
const INVITE_SEED_DOMAIN: &[u8] = b"arena/invite-seed/v1";
const ADMISSION_INVITE_DOMAIN: &[u8] = b"arena/admission-invite/v1";
const ADMISSION_DOMAIN: &[u8] = b"arena/admission/v2";
const READ_KEY_DOMAIN: &[u8] = b"arena/read-key/v1";
/// The bootstrap node's own grant: it is the room's service identity (it alone writes
/// `analysis` and `runs`) and may sign for stock Yjs clients under client ids no other author
/// owns.
pub const FLAG_PROXY: u8 = 1;
/// Longest token accepted (a token is ~290 characters: grant, invite secret, read key).
const MAX_TOKEN: usize = 512;

/// A grant signed by the room key: whoever proves possession of the `invite` key may admit
/// one member key with `role` until `expiry`.
///
/// A grant is public (every admission carries it) and grants nothing by itself: an
/// admission must also be signed by the invite key, whose secret travels only in the
/// invite link ([`Invite`]) and never on the wire between peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The room.
    pub room: RoomId,
    /// The role it confers.
    pub role: Role,
    /// Unix seconds after which nobody can be admitted with it. Seconds because this is a
    /// signed wire field; every `now` the API takes is in milliseconds and is converted
    /// where it is compared with this.
    pub expiry: u64,
    /// Flags, see [`FLAG_PROXY`].
    pub flags: u8,
    /// Makes two grants with equal fields distinct.
    pub nonce: u64,
    /// The key that must co-sign every admission under this grant: the invite link's key,
    /// or, for the node's own grant, the node's key.
    pub invite: PeerKey,
    /// The room key's signature.
    pub signature: [u8; 64],
}

impl Grant {
    /// Issues a grant naming `invite` as the key that admits under it; `room_key` is the
    /// room's secret key. `expiry_s` is unix seconds, as signed ([`Grant::expiry`]).
    pub fn issue(room_key: &Identity, invite: PeerKey, role: Role, expiry_s: u64, flags: u8, nonce: u64) -> Self {
        let mut g = Grant { room: room_key.public(), role, expiry: expiry_s, flags, nonce, invite, signature: [0; 64] };
        g.signature = room_key.sign(&g.signed_bytes());
        g
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96);
        w.fixed(GRANT_DOMAIN)
            .fixed(&self.room.0)
            .u8(self.role.to_byte())
            .var(self.expiry)
            .u8(self.flags)
            .var(self.nonce)
            .fixed(&self.invite.0);
        w.finish()
    }

    /// Binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(160);
        w.u8(GRANT_VERSION)
            .fixed(&self.room.0)
            .u8(self.role.to_byte())
            .var(self.expiry)
            .u8(self.flags)
            .var(self.nonce)
            .fixed(&self.invite.0)
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
        match r.u8()? {
            GRANT_VERSION => {}
            1 => {
                return Err(r.err("a v1 grant (a bearer invite, before invites were bound to keys): ask for a new link"))
            }
            _ => return Err(r.err("unknown grant version")),
        }
        Ok(Grant {
            room: PeerKey(r.fixed()?),
            role: Role::from_byte(r.u8()?)?,
            expiry: r.var()?,
            flags: r.u8()?,
            nonce: r.var()?,
            invite: PeerKey(r.fixed()?),
            signature: r.fixed()?,
        })
    }

    /// Checks the room, the room key's signature and (when `now_ms`, unix milliseconds, is
    /// given) the expiry: a grant is good to the end of its expiry second.
    pub fn verify(&self, room: &RoomId, now_ms: Option<u64>) -> Result<()> {
        if &self.room != room {
            return Err(CoreError::WrongRoom { expected: room.to_hex(), got: self.room.to_hex() });
        }
        self.room.verify(&self.signed_bytes(), &self.signature, "grant")?;
        if let Some(now_ms) = now_ms {
            let now = now_ms / 1000;
            if now > self.expiry {
                return Err(CoreError::Expired { expiry: self.expiry, now });
            }
        }
        Ok(())
    }

    /// Whether this is a node's grant: the room's service identity, allowed to sign for
    /// stock clients.
    pub fn is_proxy(&self) -> bool {
        self.flags & FLAG_PROXY != 0
    }

    /// A short, stable name for this grant in logs and `verify` output: its invite key's
    /// first bytes.
    pub fn label(&self) -> String {
        self.invite.to_hex()[..12].to_owned()
    }
}

/// A room's read key: every member gets it in its invite token, and room traffic on shared
/// channels (gossipsub) is encrypted under keys derived from it, so strangers who see that
/// traffic read nothing. The room key holder derives it ([`ReadKey::derive`]); nobody else
/// can. It is a secret: it never travels between peers, only in invite links.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReadKey(pub [u8; 32]);

impl ReadKey {
    /// The read key of the room whose secret key is `room_key`.
    pub fn derive(room_key: &Identity) -> Self {
        ReadKey(sha256(&[READ_KEY_DOMAIN, &room_key.seed()]))
    }
}

impl fmt::Debug for ReadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadKey(..)")
    }
}

/// An invitation as its holder has it: the grant plus the invite key's secret. Its token
/// (the invite link's fragment) is a secret: whoever holds it can admit a key of their
/// choosing, once per key. It goes to the invitee's own device, or, for a stock Yjs client,
/// only to the node it connects to; never to other peers.
#[derive(Clone)]
pub struct Invite {
    /// The grant (public; every admission carries it).
    pub grant: Grant,
    secret: Identity,
    read_key: ReadKey,
}

impl fmt::Debug for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invite").field("grant", &self.grant).finish_non_exhaustive()
    }
}

impl Invite {
    /// Issues an invite: its secret is derived from the room key and the grant's fields, so
    /// the room key's holder can issue the same link again and needs no randomness.
    /// `expiry_s` is unix seconds, as signed ([`Grant::expiry`]).
    pub fn issue(room_key: &Identity, role: Role, expiry_s: u64, flags: u8, nonce: u64) -> Self {
        let mut w = Writer::with_capacity(96);
        w.fixed(INVITE_SEED_DOMAIN).fixed(&room_key.seed()).u8(role.to_byte()).var(expiry_s).u8(flags).var(nonce);
        let secret = Identity::from_seed(sha256(&[&w.finish()]));
        Self::bound(room_key, secret, role, expiry_s, flags, nonce)
    }

    /// An invite whose grant names `secret`'s key: for the node's own grant (`secret` is the
    /// node's identity) or an invite key generated elsewhere.
    pub fn bound(room_key: &Identity, secret: Identity, role: Role, expiry_s: u64, flags: u8, nonce: u64) -> Self {
        let grant = Grant::issue(room_key, secret.public(), role, expiry_s, flags, nonce);
        Invite { grant, secret, read_key: ReadKey::derive(room_key) }
    }

    /// URL-safe token (base64url without padding): the grant, the invite secret and the
    /// room's read key.
    pub fn to_token(&self) -> String {
        let mut bytes = self.grant.encode();
        bytes.extend_from_slice(&self.secret.seed());
        bytes.extend_from_slice(&self.read_key.0);
        base64url_encode(&bytes)
    }

    /// Parses a token for `room` and checks it at time `now_ms` (unix milliseconds): the room
    /// key's signature, the expiry, and that the secret is the grant's invite key.
    pub fn from_token(token: &str, room: &RoomId, now_ms: u64) -> Result<Self> {
        if token.len() > MAX_TOKEN {
            return Err(CoreError::TooLarge { what: "token", len: token.len(), max: MAX_TOKEN });
        }
        let bytes = base64url_decode(token).ok_or_else(|| CoreError::malformed("token", "not base64url"))?;
        let mut r = Reader::new(&bytes, "token");
        let grant = Grant::read(&mut r)?;
        let secret = Identity::from_seed(r.fixed()?);
        if r.remaining() == 0 {
            return Err(CoreError::malformed(
                "token",
                "it carries no room read key (a link from before rooms were encrypted): ask for a new link",
            ));
        }
        let read_key = ReadKey(r.fixed()?);
        r.finish()?;
        grant.verify(room, Some(now_ms))?;
        if secret.public() != grant.invite {
            return Err(CoreError::malformed("token", "its secret is not the grant's invite key"));
        }
        Ok(Invite { grant, secret, read_key })
    }

    /// The room's read key, as the link carries it. The room key holder put it there; a
    /// token holder cannot check it (only the room key can), and a wrong one only cuts its
    /// holder off: it reads nothing and nobody reads it.
    pub fn read_key(&self) -> ReadKey {
        self.read_key
    }

    /// The role it confers.
    pub fn role(&self) -> Role {
        self.grant.role
    }

    /// Signs a stock client's `update` with the invite key, for a node that relays it to a
    /// node that can sign envelopes for stock clients ([`crate::sync::wire::Wire::Proxied`]):
    /// it proves the relay holds this invite without handing its secret on.
    pub fn vouch(&self, update: &[u8]) -> [u8; 64] {
        self.secret.sign(&vouch_bytes(&self.grant, update))
    }

    /// Signs `bytes` with the invite secret (for [`crate::Delegation::sign`]).
    pub(crate) fn sign_with_secret(&self, bytes: &[u8]) -> [u8; 64] {
        self.secret.sign(bytes)
    }
}

const VOUCH_DOMAIN: &[u8] = b"arena/proxied/v1";

fn vouch_bytes(grant: &Grant, update: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(112);
    w.fixed(VOUCH_DOMAIN).fixed(&sha256(&[&grant.encode()])).fixed(&sha256(&[update]));
    w.finish()
}

impl Grant {
    /// Checks a relayed stock update's voucher ([`Invite::vouch`]) and this grant for `room`
    /// at `now_ms` (unix milliseconds).
    pub fn check_vouch(&self, room: &RoomId, update: &[u8], signature: &[u8; 64], now_ms: u64) -> Result<()> {
        self.verify(room, Some(now_ms))?;
        self.invite.verify(&vouch_bytes(self, update), signature, "relayed update")
    }
}

/// A member's entry into the room: the grant, the invite key's signature binding this member
/// key to it, and the member's own signature. Anyone holding the room id checks it offline;
/// nothing in it lets a third party admit a different key.
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
    /// The invite key's signature over the grant, the member key, the name and the time.
    pub invite_signature: [u8; 64],
    /// The member's signature.
    pub signature: [u8; 64],
}

/// Longest display name accepted.
pub(crate) const MAX_NAME: usize = 128;

impl Admission {
    /// `member` joins with `invite` under `name` at `at_ms`.
    pub fn sign(member: &Identity, invite: &Invite, name: &str, at_ms: u64) -> Self {
        let mut a = Admission {
            grant: invite.grant.clone(),
            member: member.public(),
            name: name.chars().take(MAX_NAME / 4).collect(),
            at_ms,
            invite_signature: [0; 64],
            signature: [0; 64],
        };
        a.invite_signature = invite.secret.sign(&a.invite_signed_bytes());
        a.signature = member.sign(&a.signed_bytes());
        a
    }

    fn invite_signed_bytes(&self) -> Vec<u8> {
        let grant_hash = sha256(&[&self.grant.encode()]);
        let mut w = Writer::with_capacity(160);
        w.fixed(ADMISSION_INVITE_DOMAIN).fixed(&grant_hash).fixed(&self.member.0).str(&self.name).var(self.at_ms);
        w.finish()
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let grant_hash = sha256(&[&self.grant.encode()]);
        let mut w = Writer::with_capacity(224);
        w.fixed(ADMISSION_DOMAIN)
            .fixed(&grant_hash)
            .fixed(&self.member.0)
            .str(&self.name)
            .var(self.at_ms)
            .fixed(&self.invite_signature);
        w.finish()
    }

    /// Checks the grant (for `room`), the invite key's and the member's signatures, and that
    /// the member joined before the grant expired. `now_ms` (unix milliseconds) additionally
    /// checks the grant is still valid now: pass it for live joins, not when replaying a log.
    pub fn verify(&self, room: &RoomId, now_ms: Option<u64>) -> Result<()> {
        self.grant.verify(room, now_ms)?;
        if self.at_ms / 1000 > self.grant.expiry {
            return Err(CoreError::Expired { expiry: self.grant.expiry, now: self.at_ms / 1000 });
        }
        self.grant.invite.verify(
            &self.invite_signed_bytes(),
            &self.invite_signature,
            "admission's invite signature",
        )?;
        self.member.verify(&self.signed_bytes(), &self.signature, "admission")
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.bytes(&self.grant.encode())
            .fixed(&self.member.0)
            .str(&self.name)
            .var(self.at_ms)
            .fixed(&self.invite_signature)
            .fixed(&self.signature);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let grant = Grant::decode(r.bytes(256)?)?;
        Ok(Admission {
            grant,
            member: PeerKey(r.fixed()?),
            name: r.str(MAX_NAME)?.to_owned(),
            at_ms: r.var()?,
            invite_signature: r.fixed()?,
            signature: r.fixed()?,
        })
    }

    /// Binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(320);
        self.write(&mut w);
        w.finish()
    }

    /// Parses the binary form (the signatures are checked by [`Admission::verify`]).
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
        let inv = Invite::issue(&room_key, Role::Candidate, 1000, 0, 7);
        let tok = inv.to_token();
        assert!(tok.len() <= MAX_TOKEN);
        assert_eq!(Invite::from_token(&tok, &room_key.public(), 999_999).unwrap().grant, inv.grant);
        assert!(matches!(Invite::from_token(&tok, &room_key.public(), 1_001_000), Err(CoreError::Expired { .. })));
        let other = Identity::from_passphrase("other").public();
        assert!(Invite::from_token(&tok, &other, 0).is_err());
        // A grant for a role the room key never signed.
        let mut forged = inv.clone();
        forged.grant.role = Role::Host;
        assert!(Invite::from_token(&forged.to_token(), &room_key.public(), 0).is_err());
        // A genuine grant with a secret that is not its invite key.
        let swapped =
            Invite { grant: inv.grant.clone(), secret: Identity::from_passphrase("guess"), read_key: inv.read_key };
        assert!(Invite::from_token(&swapped.to_token(), &room_key.public(), 0).is_err());
        assert!(Invite::from_token("!!!", &room_key.public(), 0).is_err());
        assert!(Invite::from_token("", &room_key.public(), 0).is_err());
        // The same fields give the same link; another nonce another key.
        assert_eq!(Invite::issue(&room_key, Role::Candidate, 1000, 0, 7).to_token(), tok);
        assert_ne!(Invite::issue(&room_key, Role::Candidate, 1000, 0, 8).grant.invite, inv.grant.invite);
    }

    #[test]
    fn tokens_carry_the_read_key_and_old_tokens_are_refused() {
        let room_key = Identity::from_passphrase("room");
        let inv = Invite::issue(&room_key, Role::Observer, 1000, 0, 7);
        let tok = inv.to_token();
        assert!(tok.len() <= MAX_TOKEN, "{} characters", tok.len());
        let back = Invite::from_token(&tok, &room_key.public(), 0).unwrap();
        assert_eq!(back.read_key(), ReadKey::derive(&room_key));
        // Every invite of a room carries the same key; another room's differs.
        assert_eq!(Invite::issue(&room_key, Role::Host, 5, 0, 1).read_key(), back.read_key());
        assert_ne!(ReadKey::derive(&Identity::from_passphrase("other")), back.read_key());
        assert!(!format!("{back:?} {:?}", back.read_key()).contains(&PeerKey(back.read_key().0).to_hex()));
        // A token of the previous form (grant and invite secret only).
        let mut old = inv.grant.encode();
        old.extend_from_slice(&inv.secret.seed());
        let err = Invite::from_token(&base64url_encode(&old), &room_key.public(), 0).unwrap_err();
        assert!(err.to_string().contains("no room read key"), "{err}");
        // A cut read key is malformed too.
        let mut cut = old.clone();
        cut.extend_from_slice(&[1; 16]);
        assert!(Invite::from_token(&base64url_encode(&cut), &room_key.public(), 0).is_err());
    }

    #[test]
    fn base64_round_trip() {
        for n in 0..40u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64url_decode(&base64url_encode(&v)).unwrap(), v);
        }
    }

    #[test]
    fn admission_binds_member_and_invite() {
        let room_key = Identity::from_passphrase("room");
        let inv = Invite::issue(&room_key, Role::Host, 10, 0, 1);
        let alice = Identity::from_passphrase("alice");
        let a = Admission::sign(&alice, &inv, "Alice", 5_000);
        let back = Admission::decode(&a.encode()).unwrap();
        back.verify(&room_key.public(), Some(9_000)).unwrap();
        // Another key under the same admission.
        let mut stolen = back.clone();
        stolen.member = Identity::from_passphrase("mallory").public();
        assert!(stolen.verify(&room_key.public(), None).is_err());
        // What a peer sees (the admission, so the grant) is not enough to admit another key:
        // the invite signature must come from the invite key.
        let mallory = Identity::from_passphrase("mallory");
        let guess = Invite { grant: a.grant.clone(), secret: mallory.clone(), read_key: inv.read_key };
        assert!(Admission::sign(&mallory, &guess, "M", 5_000).verify(&room_key.public(), None).is_err());
        // Re-using Alice's invite signature with another member signature.
        let mut reused = Admission::sign(&mallory, &guess, "Alice", 5_000);
        reused.invite_signature = a.invite_signature;
        assert!(reused.verify(&room_key.public(), None).is_err());
        let late = Admission::sign(&alice, &inv, "Alice", 11_000);
        assert!(late.verify(&room_key.public(), None).is_err());
        // A v1 grant says what it is.
        let mut v1 = a.grant.encode();
        v1[0] = 1;
        assert!(Grant::decode(&v1).unwrap_err().to_string().contains("v1 grant"));
    }

    /// A member key, or an invite key, with a torsion part (what no honest key has): its
    /// signatures pass (the join time is chosen until they pass even ed25519-dalek's
    /// cofactorless `verify`, what admissions were checked with before issue #22), and the
    /// room refuses the key itself. Before, only small-order keys were refused.
    #[test]
    fn keys_with_torsion_are_refused_at_admission() {
        use crate::identity::{challenge, secret_scalar, sign_raw};
        use crate::{CoreError, Ledger};
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::edwards::EdwardsPoint;
        use curve25519_dalek::traits::IsIdentity as _;
        use ed25519_dalek::{Signature, Verifier as _};

        let room_key = Identity::from_passphrase("torsion room");
        let room = room_key.public();
        let t = EIGHT_TORSION[1];
        let twisted =
            |id: &Identity| PeerKey((id.public().verifying_key().unwrap().to_edwards() + t).compress().to_bytes());
        let sign_as = |id: &Identity, key: &PeerKey, msg: &[u8]| -> Option<[u8; 64]> {
            let sig = sign_raw(&secret_scalar(&id.seed()), &key.0, msg, EdwardsPoint::default());
            (t * challenge(sig[..32].try_into().unwrap(), &key.0, msg)).is_identity().then_some(sig)
        };
        let blank = |grant: &Grant, member: PeerKey, at_ms: u64| Admission {
            grant: grant.clone(),
            member,
            name: "M".into(),
            at_ms,
            invite_signature: [0; 64],
            signature: [0; 64],
        };
        let mut ledger = Ledger::new(room);
        let mallory = Identity::from_passphrase("mallory");
        let mixed = twisted(&mallory);
        let inv = Invite::issue(&room_key, Role::Candidate, 2_000_000, 0, 1);
        let adm = (0..)
            .find_map(|at_ms| {
                let mut a = blank(&inv.grant, mixed, at_ms);
                a.invite_signature = inv.secret.sign(&a.invite_signed_bytes());
                a.signature = sign_as(&mallory, &mixed, &a.signed_bytes())?;
                Some(a)
            })
            .unwrap();
        adm.verify(&room, None).unwrap();
        let vk = mixed.verifying_key().unwrap();
        assert!(!vk.is_weak() && vk.verify(&adm.signed_bytes(), &Signature::from_bytes(&adm.signature)).is_ok());
        let err = ledger.admit(&adm, None).unwrap_err();
        assert!(matches!(&err, CoreError::NotAllowed(m) if m.contains("member key")), "{err}");
        assert!(ledger.member(&mixed).is_none());
        // The same member with its honest key joins.
        assert!(ledger.admit(&Admission::sign(&mallory, &inv, "M", 5), None).unwrap());
        // A grant the room key signed for an invite key with a torsion part.
        let secret = Identity::from_passphrase("invite secret");
        let invite_key = twisted(&secret);
        let grant = Grant::issue(&room_key, invite_key, Role::Candidate, 2_000_000, 0, 2);
        let bob = Identity::from_passphrase("bob");
        let adm = (0..)
            .find_map(|at_ms| {
                let mut a = blank(&grant, bob.public(), at_ms);
                a.invite_signature = sign_as(&secret, &invite_key, &a.invite_signed_bytes())?;
                a.signature = bob.sign(&a.signed_bytes());
                Some(a)
            })
            .unwrap();
        adm.verify(&room, None).unwrap();
        let err = ledger.admit(&adm, None).unwrap_err();
        assert!(matches!(&err, CoreError::NotAllowed(m) if m.contains("invite key")), "{err}");
    }
}
