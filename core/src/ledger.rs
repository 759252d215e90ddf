//! The ledger: who is in the room, with which role, and where each author's hash chain
//! stands. Every envelope from a network passes [`Ledger::check`] before it touches the
//! document.

use std::collections::HashMap;

use ed25519_dalek::Signature;
use yrs::Update;

mod order;
mod rules;

pub(crate) use rules::{Placements, Verdict, Writer};

use crate::delegation::Delegation;
use crate::doc::strict::Scan;
use crate::envelope::Envelope;
use crate::error::{CoreError, Result};
use crate::grant::{Admission, Role, RoomId};
use crate::identity::{sha256, verify_signature, verify_signatures, Hash, Key, PeerKey};

/// An admitted participant.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its role.
    pub role: Role,
    /// Whether it may sign for stock clients under other client ids.
    pub proxy: bool,
    /// Display name from its admission.
    pub name: String,
    /// The admission it presented (kept to hand to late joiners).
    pub admission: Admission,
    key: Key,
}

/// Where an author's chain stands: the next sequence number and the last envelope's hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainHead {
    /// Envelopes applied so far (= the next expected seq).
    pub next_seq: u64,
    /// Hash of the last applied envelope; zeros before the first.
    pub last_hash: Hash,
}

/// An envelope that passed every check but the signature, ready to verify (possibly in a
/// batch) and apply.
#[derive(Debug)]
pub struct Checked {
    pub(crate) signed: Vec<u8>,
    pub(crate) update: Update,
    pub(crate) scan: Scan,
    pub(crate) hash: Hash,
}

impl Checked {
    /// The envelope's hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }
}

/// The room's roster and per-author chains.
#[derive(Debug)]
pub struct Ledger {
    room: RoomId,
    /// Boxed: a `Member` is ~480 bytes and a map allocates buckets ahead (4 for the usual
    /// two members), so unboxed a loaded room's roster held ~2 KiB of mostly empty buckets.
    members: HashMap<PeerKey, Box<Member>>,
    chains: HashMap<PeerKey, ChainHead>,
    owners: HashMap<u64, PeerKey>,
    /// Where every integrated struct sits, for the write rules.
    placements: Placements,
    /// Revoked member keys (their envelopes from this seq on are refused) and invite keys.
    revoked: HashMap<PeerKey, u64>,
    /// Stock clients' delegations, by invite key: what envelopes with a `via` name.
    delegations: HashMap<PeerKey, Delegation>,
}

impl Ledger {
    /// An empty ledger for `room`.
    pub fn new(room: RoomId) -> Self {
        Ledger {
            room,
            members: HashMap::new(),
            chains: HashMap::new(),
            owners: HashMap::new(),
            placements: Placements::default(),
            revoked: HashMap::new(),
            delegations: HashMap::new(),
        }
    }

    /// The room.
    pub fn room(&self) -> RoomId {
        self.room
    }

    /// Admits a member after checking its admission; `now_ms` (unix milliseconds) also
    /// checks the grant has not expired (pass `None` when replaying a log). Returns whether it
    /// was new. A member admitted twice keeps its strongest role.
    pub fn admit(&mut self, adm: &Admission, now_ms: Option<u64>) -> Result<bool> {
        adm.verify(&self.room, now_ms)?;
        let known = self.members.get(&adm.member).is_some_and(|m| m.admission == *adm);
        if !known && (self.revoked.contains_key(&adm.grant.invite) || self.revoked.contains_key(&adm.member)) {
            return Err(CoreError::NotAllowed(format!("{} was revoked", adm.member)));
        }
        // Keys of prime order only: nobody can sign for a small-order key, and no honest key
        // has a torsion part or a non-canonical encoding.
        adm.member.check_prime_order("member key")?;
        adm.grant.invite.check_prime_order("invite key")?;
        let key = adm.member.key()?;
        let member = Member {
            role: adm.grant.role,
            proxy: adm.grant.is_proxy(),
            name: adm.name.clone(),
            admission: adm.clone(),
            key,
        };
        match self.members.get(&adm.member) {
            Some(old) if old.role <= member.role && (old.proxy || !member.proxy) => Ok(false),
            _ => {
                self.members.insert(adm.member, Box::new(member));
                Ok(true)
            }
        }
    }

    /// The member with this key.
    pub fn member(&self, key: &PeerKey) -> Option<&Member> {
        self.members.get(key).map(|m| &**m)
    }

    /// Every member.
    pub fn members(&self) -> impl Iterator<Item = (&PeerKey, &Member)> {
        self.members.iter().map(|(k, m)| (k, &**m))
    }

    /// Applies a revocation: signed by an admitted host (the node is one) and not aimed at
    /// the room's node unless by the node itself. Returns whether it was new. See
    /// [`crate::Revocation`].
    pub fn revoke(&mut self, r: &crate::Revocation) -> Result<bool> {
        if r.room != self.room {
            return Err(CoreError::WrongRoom { expected: self.room.to_hex(), got: r.room.to_hex() });
        }
        r.verify_signature()?;
        let by = self.members.get(&r.by).ok_or_else(|| CoreError::NotAllowed("a revocation by a non-member".into()))?;
        if by.role != Role::Host || self.revoked.contains_key(&r.by) {
            return Err(CoreError::NotAllowed(format!("a {} may not revoke", by.role)));
        }
        if self.members.get(&r.target).is_some_and(|t| t.proxy) && !by.proxy {
            return Err(CoreError::NotAllowed("only the node may revoke the node".into()));
        }
        match self.revoked.get(&r.target) {
            Some(from) if *from <= r.from_seq => Ok(false),
            _ => {
                self.revoked.insert(r.target, r.from_seq);
                Ok(true)
            }
        }
    }

    /// Records a stock client's delegation after checking it ([`Delegation::verify`];
    /// `now_ms`, unix milliseconds, checks its grant has not expired: `None` when replaying a
    /// store). A revoked invite delegates nothing new. An invite key names one grant: a
    /// second delegation under a known key with another grant (only the room key's holder
    /// can make one) is refused, so the role its `via` envelopes were judged under stays.
    /// Returns whether it was new.
    pub fn delegate(&mut self, d: &Delegation, now_ms: Option<u64>) -> Result<bool> {
        match self.delegations.get(&d.key()) {
            Some(known) if known == d => return Ok(false),
            Some(_) => {
                return Err(CoreError::NotAllowed(format!(
                    "invite {} already delegates another grant",
                    d.grant.label()
                )))
            }
            None => {}
        }
        d.verify(&self.room, now_ms)?;
        d.key().check_prime_order("invite key")?;
        if self.revoked.contains_key(&d.key()) {
            return Err(CoreError::NotAllowed(format!("invite {} was revoked", d.grant.label())));
        }
        self.delegations.insert(d.key(), d.clone());
        Ok(true)
    }

    /// The delegation whose invite key is `via`.
    pub fn delegation(&self, via: &PeerKey) -> Option<&Delegation> {
        self.delegations.get(via)
    }

    /// Every delegation, in a stable order (for late joiners).
    pub fn delegations(&self) -> Vec<Delegation> {
        let mut v: Vec<_> = self.delegations.values().cloned().collect();
        v.sort_by_key(|d| d.key());
        v
    }

    /// How many keys (members and invite keys) were revoked.
    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// Whether `key` (a member or an invite key) was revoked.
    pub fn is_revoked(&self, key: &PeerKey) -> bool {
        self.revoked.contains_key(key)
    }

    /// Every admission, in a stable order (for late joiners and checkpoints).
    pub fn admissions(&self) -> Vec<Admission> {
        let mut v: Vec<_> = self.members.values().map(|m| m.admission.clone()).collect();
        v.sort_by_key(|a| a.member);
        v
    }

    /// The author's chain head (default when it has written nothing).
    pub fn head(&self, author: &PeerKey) -> ChainHead {
        self.chains.get(author).copied().unwrap_or_default()
    }

    /// Every author's chain head.
    pub fn heads(&self) -> impl Iterator<Item = (&PeerKey, &ChainHead)> {
        self.chains.iter()
    }

    /// Resets the chains to a checkpoint's heads.
    pub fn set_heads(&mut self, heads: impl IntoIterator<Item = (PeerKey, ChainHead)>) {
        self.chains = heads.into_iter().collect();
    }

    /// Everything but the signature: author admitted and allowed to write, sequence and
    /// chain, update decodes, client ids owned by the author. `expected_prev` overrides the
    /// chain head when checking a run of one author's envelopes before any is applied.
    pub fn check(&self, env: &Envelope, expected: Option<ChainHead>) -> Result<Checked> {
        if env.room != self.room {
            return Err(CoreError::WrongRoom { expected: self.room.to_hex(), got: env.room.to_hex() });
        }
        let member = self
            .members
            .get(&env.author)
            .ok_or_else(|| CoreError::NotAllowed(format!("author {} was never admitted", env.author)))?;
        if !member.role.may_write() {
            return Err(CoreError::NotAllowed(format!("{} {} may not edit", member.role, env.author)));
        }
        if self.revoked.get(&env.author).is_some_and(|from| env.seq >= *from) {
            return Err(CoreError::NotAllowed(format!("{} was removed from the room", env.author)));
        }
        if env.via.is_some() && !member.proxy {
            return Err(CoreError::NotAllowed(format!(
                "{} {} is not a node: it may not sign for a stock client",
                member.role, env.author
            )));
        }
        let head = expected.unwrap_or_else(|| self.head(&env.author));
        if env.seq < head.next_seq {
            return Err(CoreError::Replayed { author: env.author.to_hex(), seq: env.seq });
        }
        if env.seq > head.next_seq {
            return Err(CoreError::Gap { author: env.author.to_hex(), expected: head.next_seq, got: env.seq });
        }
        if env.prev != head.last_hash {
            return Err(CoreError::BrokenChain { author: env.author.to_hex(), seq: env.seq });
        }
        let (update, scan) = crate::doc::strict::decode_scanned(&env.update)?;
        self.check_clients(&env.author, member.proxy, env.author.client_id(env.session), &update)?;
        let signed = env.signed_bytes();
        let hash = sha256(&[&signed, &env.signature]);
        Ok(Checked { signed, update, scan, hash })
    }

    /// The room's write rules for a checked envelope (see [`rules`]): where its structs land
    /// and what it deletes, against what its author may write. [`Verdict::Wait`] when it
    /// depends on structs we do not hold yet, or names a delegation we do not know yet. A
    /// node's envelope for a stock client (`via`) is judged under the delegation's grant's
    /// role, with no member key of its own (it writes no `participants` entry or vote).
    pub(crate) fn judge(&mut self, env: &Envelope, checked: &Checked) -> Result<Verdict> {
        let member = self
            .members
            .get(&env.author)
            .ok_or_else(|| CoreError::NotAllowed(format!("author {} was never admitted", env.author)))?;
        if let Some(via) = &env.via {
            // An unknown delegation waits like a missing predecessor: it travels beside the
            // envelopes (gossip may deliver it second) and catch-up sends it first. A node
            // that names a delegation nobody can verify only stalls its own chain.
            let Some(d) = self.delegations.get(via) else { return Ok(Verdict::Wait) };
            return self.placements.judge(&checked.scan, Writer { role: d.grant.role, node: false, key: None });
        }
        self.placements.judge(&checked.scan, Writer { role: member.role, node: member.proxy, key: Some(&env.author) })
    }

    /// Judges our own edit (by `me`, an admitted member).
    pub(crate) fn judge_own(&mut self, me: &PeerKey, scan: &Scan) -> Result<Verdict> {
        let member = self.members.get(me).ok_or_else(|| CoreError::NotAllowed("not admitted to the room".into()))?;
        self.placements.judge(scan, Writer { role: member.role, node: member.proxy, key: Some(me) })
    }

    /// Judges an update a stock client (no key of its own) sends through us under `role`.
    pub(crate) fn judge_stock(&mut self, scan: &Scan, role: Role) -> Result<Verdict> {
        self.placements.judge(scan, Writer { role, node: false, key: None })
    }

    /// Records where an applied update's structs sit (from a trusted source: our store, our
    /// own edits, a signed checkpoint).
    pub(crate) fn place(&mut self, scan: &Scan) {
        self.placements.learn(scan);
    }

    /// Whether this replica may take file `name`: it knows the name already, or knows fewer
    /// than [`crate::MAX_FILES`] (the cap every replica enforces, see `rules`).
    pub(crate) fn may_add_file(&self, name: &str) -> bool {
        self.placements.may_add_file(name)
    }

    /// Records the placements a judged update was allowed with, before it is applied.
    pub(crate) fn accept(&mut self, placed: Vec<rules::Placed>) {
        self.placements.record(placed);
    }

    /// The update creates items only under the author's own client id `own` or, for a
    /// proxy, under client ids no other author owns.
    pub(crate) fn check_clients(&self, author: &PeerKey, proxy: bool, own: u64, update: &Update) -> Result<()> {
        for client in update.insertions(true).client_ids() {
            let client = client.get();
            if client == own {
                continue;
            }
            if !proxy || self.owners.get(&client).is_some_and(|o| o != author) {
                return Err(CoreError::ForeignClientId { client });
            }
        }
        Ok(())
    }

    /// Claims the client ids of a checked, applied stock update for `proxy` now, so that no
    /// other author's envelope takes them before `proxy` seals it.
    pub(crate) fn claim_proxied(&mut self, proxy: &PeerKey, clients: Vec<u64>) {
        for client in clients {
            self.owners.entry(client).or_insert(*proxy);
        }
    }

    /// Verifies one checked envelope's signature (the room's one rule: ZIP-215, see
    /// `identity/zip215.rs`).
    pub fn verify_one(&self, env: &Envelope, checked: &Checked) -> Result<()> {
        let m = self.members.get(&env.author).ok_or(CoreError::BadSignature("envelope"))?;
        let sig = Signature::from_bytes(&env.signature);
        verify_signature(&m.key, &checked.signed, &sig).then_some(()).ok_or(CoreError::BadSignature("envelope"))
    }

    /// Verifies many signatures at once (about twice as fast as one by one), with the same
    /// verdict as [`Ledger::verify_one`] on each. On failure, falls back to single checks and
    /// returns the index of the first bad one.
    pub fn verify_batch(&self, envs: &[&Envelope], checked: &[Checked]) -> std::result::Result<(), usize> {
        // A batch of one costs more than a single check.
        if let ([e], [c]) = (envs, checked) {
            return self.verify_one(e, c).map_err(|_| 0);
        }
        let mut sigs = Vec::with_capacity(envs.len());
        for (i, e) in envs.iter().enumerate() {
            let m = self.members.get(&e.author).ok_or(i)?;
            sigs.push((&m.key, Signature::from_bytes(&e.signature)));
        }
        let items: Vec<_> = sigs.iter().zip(checked).map(|((k, s), c)| (*k, &c.signed[..], s)).collect();
        if verify_signatures(&items) {
            return Ok(());
        }
        for (i, (e, c)) in envs.iter().zip(checked).enumerate() {
            if self.verify_one(e, c).is_err() {
                return Err(i);
            }
        }
        Ok(())
    }

    /// Records an applied envelope: advances the author's chain, claims its client ids.
    pub fn record(&mut self, env: &Envelope, checked: &Checked) {
        self.advance(env, checked.hash, Some(&checked.update));
    }

    pub(crate) fn advance(&mut self, env: &Envelope, hash: Hash, update: Option<&Update>) {
        let head = self.chains.entry(env.author).or_default();
        head.next_seq = env.seq + 1;
        head.last_hash = hash;
        self.claim(env, update);
    }

    /// Checks the client ids of an envelope judged after others of its batch were allowed
    /// (`check` saw the owners as they were before the batch), for [`Ledger::claim`].
    pub(crate) fn recheck_clients(&self, env: &Envelope, checked: &Checked) -> Result<()> {
        let proxy = self.members.get(&env.author).is_some_and(|m| m.proxy);
        self.check_clients(&env.author, proxy, env.author.client_id(env.session), &checked.update)
    }

    /// Takes the client ids an allowed envelope writes under for its author: its own, and a
    /// proxy's the first time it writes under one. Done as each envelope of a batch is
    /// allowed, so that a later one of the same batch is checked against them: a node's
    /// envelope that writes under the host's client id was accepted batched behind the
    /// host's first envelopes and refused alone (found by the update_gate fuzz target).
    pub(crate) fn claim(&mut self, env: &Envelope, update: Option<&Update>) {
        self.owners.insert(env.author.client_id(env.session), env.author);
        if let Some(update) = update {
            if self.members.get(&env.author).is_some_and(|m| m.proxy) {
                for client in update.insertions(true).client_ids() {
                    self.owners.entry(client.get()).or_insert(env.author);
                }
            }
        }
    }
}
