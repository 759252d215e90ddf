//! The room engine: the document, the ledger and the store of one replica, sans-IO.
//!
//! Local edits come out as signed envelopes; remote envelopes go through the ledger
//! (batched signature checks) into the document and the log. Callers own the I/O and the
//! clock: every method that needs the time takes `now_ms`.
//!
//! A local edit may also be applied now and sealed later ([`Room::edit_deferred`],
//! [`Room::seal_pending`]), so that signing leaves a keystroke's critical path. Every
//! `&mut self` method that logs, receives or answers seals first; the `&self` readers of the
//! log ([`Room::want`], [`Room::answer`], [`Room::envelope_vector`], [`Room::doc_at`]) see
//! deferred edits once they are sealed.

use std::collections::HashMap;

use yrs::Transact;

use crate::checkpoint::Checkpoint;
use crate::doc::{Edit, RoomDoc};
use crate::envelope::Envelope;
use crate::error::{CoreError, Result};
use crate::grant::{Admission, Invite, Role, RoomId};
use crate::identity::{hex, sha256, Identity, PeerKey};
use crate::ledger::{ChainHead, Ledger, Verdict};
use crate::records::{Meta, Participant};
use crate::store::Store;
use crate::sync::wire::Wire;

mod catchup;
mod deferred;
mod files;
pub(crate) mod versions;

/// Tunables of a room replica.
#[derive(Clone, Debug)]
pub struct RoomConfig {
    /// Make a checkpoint after this many new log entries ...
    pub checkpoint_every: u64,
    /// ... and, once the last checkpoint's state is larger than this many bytes, only when
    /// the log since it holds at least as many bytes of updates as that state (each entry
    /// counting [`CHECKPOINT_ENTRY_BYTES`] more for its replay; 1× to 1.5× the state, spread
    /// by the room's id so that busy rooms do not all checkpoint at once): a
    /// checkpoint rewrites (and signs) the whole state, so a large document busy with
    /// small edits would otherwise write and hash its state over and over (1,000 ~150-byte
    /// entries against a 2 MB state: 13× the bytes the edits themselves took). With the
    /// rule a checkpoint never writes more than the log did since the previous one.
    pub checkpoint_state_free: u64,
    /// ... or when the last one is this old (milliseconds) and something changed (for a
    /// state over `checkpoint_state_free`, again only once the log since holds as many
    /// bytes: at 30 s a room typed into at a few hundred KB/s would otherwise re-encode a
    /// state of megabytes twice as often as the byte rule asks).
    pub checkpoint_interval_ms: u64,
    /// ... but the interval alone makes one only once the log since the last weighs this
    /// much (bytes of updates, each entry counting [`CHECKPOINT_ENTRY_BYTES`] more): a room
    /// whose log is a handful of entries replays them in microseconds, and a checkpoint of
    /// it would only hold its document twice (in sled, and in sled's cache: an idle
    /// interview room of 1 KiB kept 2.4 KiB more on the heap for one). The default, 16
    /// entries' worth.
    pub checkpoint_interval_min: u64,
    /// Out-of-order envelopes buffered while waiting for their predecessors.
    pub max_pending: usize,
    /// Envelopes sent per answer to a `Want`.
    pub max_catch_up: usize,
    /// A peer that lacks at least this many envelopes, and none of the authors our latest
    /// signed checkpoint covers, is sent that checkpoint instead of the envelopes it covers
    /// (a late joiner of a long room). A peer with nothing at all always gets it. Such a
    /// joiner fetches the older history afterwards (`Wire::WantHistory`) and cannot rebuild
    /// older versions until it has; the default (50,000, more than an hour of typing) keeps
    /// ordinary interviews on the direct path.
    pub checkpoint_join_min: u64,
    /// Leave the periodic checkpoint to [`Room::checkpoint_if_due`], called at an idle
    /// moment, instead of making it in the seal or receive that crosses the threshold (it
    /// encodes and signs the whole state): a browser's keystroke never pays for it.
    pub deferred_checkpoints: bool,
    /// Keep every envelope sealed from deferred updates for [`Room::take_sealed`], whichever
    /// method sealed it (a node that must send each one on).
    pub collect_seals: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            checkpoint_every: 1000,
            checkpoint_state_free: 64 * 1024,
            checkpoint_interval_ms: 30_000,
            checkpoint_interval_min: 16 * CHECKPOINT_ENTRY_BYTES,
            max_pending: 4096,
            max_catch_up: 1 << 20,
            checkpoint_join_min: 50_000,
            deferred_checkpoints: false,
            collect_seals: false,
        }
    }
}

/// How far peers' clocks may disagree, in milliseconds (five minutes), when a live
/// admission's expiry is checked ([`Room::admit_live`]).
pub const CLOCK_SKEW_MS: u64 = 300_000;

/// What [`Room::receive`] did with a batch.
#[derive(Debug, Default)]
pub struct Receipt {
    /// Envelopes applied (including buffered ones that became applicable).
    pub applied: Vec<Envelope>,
    /// Already-seen envelopes (harmless on gossip; a replay when targeted).
    pub duplicates: usize,
    /// Held back until their predecessors arrive.
    pub buffered: usize,
    /// Refused, with why. The sender deserves a penalty for each.
    pub rejected: Vec<(PeerKey, CoreError)>,
    /// Whether a gap was seen: the caller should send a `Want`.
    pub needs_catch_up: bool,
}

/// Where `(author, seq)` is (`Ok`) or belongs (`Err`) in the sorted pending buffer.
/// Relayed stock updates kept while they wait for content we lack, at most.
pub(crate) const MAX_WAITING_RELAYED: usize = 1024;
/// ... and their bytes at most.
pub(crate) const MAX_WAITING_RELAYED_BYTES: usize = 4 << 20;

/// What became of a stock client's update we were asked to sign.
pub(crate) enum Proxied {
    /// Signed, applied and logged.
    Signed(Envelope),
    /// It changes nothing.
    Empty,
    /// It builds on content we do not hold yet; nothing changed.
    Wait,
}

fn pending_slot(pending: &[Envelope], author: &PeerKey, seq: u64) -> std::result::Result<usize, usize> {
    pending.binary_search_by(|e| e.author.cmp(author).then(e.seq.cmp(&seq)))
}

/// One replica of a room.
#[derive(Debug)]
pub struct Room<S: Store> {
    id: RoomId,
    me: Identity,
    session: u32,
    doc: RoomDoc,
    ledger: Ledger,
    store: S,
    cfg: RoomConfig,
    /// Out-of-order envelopes, sorted by `(author, seq)`, one per key (a sorted `Vec`: a
    /// map type of its own would cost the WASM module ~7 KB of B-tree code).
    pending: Vec<Envelope>,
    /// Our local transactions applied to the document but not sealed yet, in order.
    unsealed: Vec<Vec<u8>>,
    /// Stock clients' updates relayed by another node ([`Room::proxy_for`]) that build on
    /// content we do not hold yet (an earlier relayed update that arrived later, on another
    /// stream), with the delegation they were vouched under; retried after each signing and
    /// [`Room::retry_relayed`]. Bounded by [`MAX_WAITING_RELAYED`] (oldest dropped).
    relayed: Vec<(PeerKey, Vec<u8>)>,
    /// The delegation every update in `unsealed` was written under (`None`: our own edits).
    /// A run never mixes two: a change of `via` seals the run first.
    unsealed_via: Option<PeerKey>,
    /// Envelopes sealed from deferred updates, kept for [`Room::take_sealed`] when
    /// [`RoomConfig::collect_seals`] is set.
    sealed: Vec<Envelope>,
    last_checkpoint: (u64, u64),
    /// The last checkpoint's state size, and the weight of what was logged since it (its
    /// update bytes and [`CHECKPOINT_ENTRY_BYTES`] per entry).
    checkpoint_bytes: (u64, u64),
    last_received_ms: u64,
}

impl<S: Store> Room<S> {
    /// Creates a room: `room_key` signs a host grant for `host`, who is admitted and writes
    /// the room's metadata as its first envelope. Returns the room and the host's admission.
    pub fn create(
        room_key: &Identity,
        host: Identity,
        session: u32,
        store: S,
        meta: Meta,
        now_ms: u64,
    ) -> Result<Self> {
        let invite = Invite::issue(room_key, Role::Host, now_ms / 1000 + 365 * 86400, 0, now_ms);
        let admission = Admission::sign(&host, &invite, "host", now_ms);
        let mut room = Room::open(room_key.public(), host, session, store, RoomConfig::default(), now_ms)?;
        room.admit(&admission, Some(now_ms))?;
        room.edit(now_ms, |e| e.set_meta_record(&Meta { created_at: now_ms, ..meta }))?;
        Ok(room)
    }

    /// Opens a replica from its store: admissions, the latest checkpoint, then the log
    /// after it. Nothing from our own store is re-verified (`verify` is the full audit).
    pub fn open(id: RoomId, me: Identity, session: u32, store: S, cfg: RoomConfig, now_ms: u64) -> Result<Self> {
        let doc = RoomDoc::new(me.public().client_id(session));
        let mut room = Room {
            id,
            me,
            session,
            doc,
            ledger: Ledger::new(id),
            store,
            cfg,
            pending: Vec::new(),
            unsealed: Vec::new(),
            relayed: Vec::new(),
            unsealed_via: None,
            sealed: Vec::new(),
            last_checkpoint: (0, now_ms),
            checkpoint_bytes: (0, 0),
            last_received_ms: 0,
        };
        for adm in room.store.admissions()? {
            room.ledger.admit(&adm, None)?;
        }
        // Delegations before revocations: a revoked invite refuses only new ones.
        for d in room.store.delegations()? {
            room.ledger.delegate(&d, None)?;
        }
        for r in room.store.revocations()? {
            room.ledger.revoke(&r)?;
        }
        let mut from = 0;
        if let Some(&(idx, at)) = room.store.checkpoints()?.last() {
            let cp =
                room.store.checkpoint(idx)?.ok_or_else(|| CoreError::Store(format!("checkpoint {idx} vanished")))?;
            room.doc.apply_v1(&cp.state)?;
            room.ledger.place(&crate::doc::strict::scan_update(&cp.state)?);
            room.ledger.set_heads(cp.heads.iter().copied());
            room.last_checkpoint = (idx, at);
            room.checkpoint_bytes.0 = cp.state.len() as u64;
            from = idx;
        }
        let entries = room.store.log_range(from, u64::MAX)?;
        room.checkpoint_bytes.1 = entries.iter().map(|e| entry_weight(&e.envelope)).sum();
        {
            let mut txn = room.doc.yrs().transact_mut();
            for entry in &entries {
                let env = &entry.envelope;
                room.last_received_ms = entry.received_ms;
                // History fetched after the checkpoint (backfill) is in its state already;
                // advancing on it would move the chain head back.
                if env.seq < room.ledger.head(&env.author).next_seq {
                    continue;
                }
                let (update, scan) = crate::doc::strict::decode_scanned(&env.update)?;
                room.ledger.place(&scan);
                room.ledger.advance(env, env.hash(), Some(&update));
                txn.apply_update(update).map_err(CoreError::Update)?;
            }
        }
        Ok(room)
    }

    /// The room id.
    pub fn id(&self) -> RoomId {
        self.id
    }

    /// This replica's identity.
    pub fn identity(&self) -> &Identity {
        &self.me
    }

    /// The document.
    pub fn doc(&self) -> &RoomDoc {
        &self.doc
    }

    /// The roster and chains.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The tunables (e.g. to defer checkpoints on a replica made by [`Room::create`]).
    pub fn config_mut(&mut self) -> &mut RoomConfig {
        &mut self.cfg
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably: for side data a store keeps beside the log (a recording's
    /// awareness changes). Envelopes appended through it bypass the ledger: don't.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Our role, if admitted.
    pub fn role(&self) -> Option<Role> {
        self.ledger.member(&self.me.public()).map(|m| m.role)
    }

    /// Admits a member (ours or a peer's) and stores the admission. `now_ms` (unix
    /// milliseconds) checks expiry; `None` when replaying a log.
    pub fn admit(&mut self, adm: &Admission, now_ms: Option<u64>) -> Result<bool> {
        let new = self.ledger.admit(adm, now_ms)?;
        if new {
            self.store.put_admission(adm)?;
        }
        Ok(new)
    }

    /// Admits a member whose admission arrived from a peer now: a member we do not know yet
    /// must hold a grant that has not expired by our clock (less [`CLOCK_SKEW_MS`]), whatever
    /// join time its admission claims (the claim is the joiner's own). A member we know
    /// already stays (a grant that expires after its holder joined still stands).
    pub fn admit_live(&mut self, adm: &Admission, now_ms: u64) -> Result<bool> {
        let known = self.ledger.member(&adm.member).is_some_and(|m| m.admission == *adm);
        let now = (!known).then(|| now_ms.saturating_sub(CLOCK_SKEW_MS));
        self.admit(adm, now)
    }

    /// Removes a member (its envelopes from its current chain position on are refused by
    /// every replica that gets the record) or withdraws an invite (by its invite key: it
    /// admits nobody new). We must be a host or the room's node. Returns the message to send
    /// to every peer.
    pub fn revoke(&mut self, target: PeerKey, now_ms: u64) -> Result<Wire> {
        self.seal_pending(now_ms)?;
        let from = self.ledger.head(&target).next_seq;
        let r = crate::Revocation::sign(self.id, &self.me, target, from, now_ms);
        self.apply_revocation(&r)?;
        Ok(Wire::Revocations(vec![r]))
    }

    /// Applies (and stores) a revocation from a peer or our own.
    pub fn apply_revocation(&mut self, r: &crate::Revocation) -> Result<bool> {
        let new = self.ledger.revoke(r)?;
        if new {
            self.store.put_revocation(r)?;
        }
        Ok(new)
    }

    /// Records a stock client's delegation (ours or a peer's) and stores it. `now_ms` (unix milliseconds) checks
    /// its grant's expiry. Returns whether it was new: then send it on
    /// ([`Wire::Delegations`]) before the envelopes that name it.
    pub fn delegate(&mut self, d: &crate::Delegation, now_ms: Option<u64>) -> Result<bool> {
        let new = self.ledger.delegate(d, now_ms)?;
        if new {
            self.store.put_delegation(d)?;
        }
        Ok(new)
    }

    /// Records a delegation that arrived from a peer now: like [`Room::admit_live`], one we
    /// do not know yet must hold a grant that has not expired by our clock (less
    /// [`CLOCK_SKEW_MS`]).
    pub fn delegate_live(&mut self, d: &crate::Delegation, now_ms: u64) -> Result<bool> {
        let known = self.ledger.delegation(&d.key()) == Some(d);
        let now = (!known).then(|| now_ms.saturating_sub(CLOCK_SKEW_MS));
        self.delegate(d, now)
    }

    /// Joins with an invite token: signs an admission for our key and records our
    /// participant entry (when our role may write). Returns the admission to announce.
    pub fn join(&mut self, token: &str, name: &str, now_ms: u64) -> Result<(Admission, Option<Envelope>)> {
        let invite = Invite::from_token(token, &self.id, now_ms)?;
        let adm = Admission::sign(&self.me, &invite, name, now_ms);
        self.admit(&adm, Some(now_ms))?;
        let env = if adm.grant.role.may_write() {
            let p = Participant {
                name: adm.name.clone(),
                role: adm.grant.role,
                public_key: self.me.public().to_hex(),
                joined_at: now_ms,
            };
            let key = self.me.public().to_hex();
            self.edit(now_ms, |e| e.set_participant(&key, &p))?
        } else {
            None
        };
        Ok((adm, env))
    }

    fn received_at(&mut self, now_ms: u64) -> u64 {
        self.last_received_ms = self.last_received_ms.max(now_ms);
        self.last_received_ms
    }

    /// A local edit: one transaction, one signed envelope (None when nothing changed). Local
    /// edits still deferred ([`Room::edit_deferred`]) go into the same envelope. The
    /// envelope is in the log but durable only after [`Room::flush`].
    pub fn edit(&mut self, now_ms: u64, f: impl FnOnce(&mut Edit<'_, '_>)) -> Result<Option<Envelope>> {
        self.edit_deferred(now_ms, f)?;
        self.seal_pending(now_ms)
    }

    /// Applies remote envelopes. Each is checked (admitted author allowed to write, chain,
    /// own client ids), the signatures are verified in one batch, and the valid ones are
    /// applied in one transaction and logged. Out-of-order envelopes wait (bounded).
    pub fn receive(&mut self, envelopes: Vec<Envelope>, now_ms: u64) -> Result<Receipt> {
        // Our deferred edits were made before these arrived: they go first in the log.
        self.seal_pending(now_ms)?;
        let mut receipt = Receipt::default();
        let mut batch = envelopes;
        loop {
            let progressed = self.receive_round(std::mem::take(&mut batch), now_ms, &mut receipt)?;
            if !progressed || self.pending.is_empty() {
                break;
            }
            // Pull every buffered envelope that is now next in its author's chain.
            let ready: Vec<(PeerKey, u64)> = self
                .pending
                .iter()
                .filter(|e| self.ledger.head(&e.author).next_seq == e.seq)
                .map(|e| (e.author, e.seq))
                .collect();
            if ready.is_empty() {
                break;
            }
            for k in ready {
                let mut seq = k.1;
                while let Ok(i) = pending_slot(&self.pending, &k.0, seq) {
                    batch.push(self.pending.remove(i));
                    seq += 1;
                }
                receipt.buffered = receipt.buffered.saturating_sub((seq - k.1) as usize);
            }
        }
        // A buffered envelope that arrived again in order (a catch-up answer) was applied
        // directly: drop its stale copy, which would otherwise hold a slot forever.
        let ledger = &self.ledger;
        self.pending.retain(|e| e.seq >= ledger.head(&e.author).next_seq);
        self.maybe_checkpoint(now_ms)?;
        Ok(receipt)
    }

    fn receive_round(&mut self, envelopes: Vec<Envelope>, now_ms: u64, receipt: &mut Receipt) -> Result<bool> {
        let mut expect: HashMap<PeerKey, ChainHead> = HashMap::new();
        let mut ok_envs = Vec::with_capacity(envelopes.len());
        let mut checked = Vec::with_capacity(envelopes.len());
        for env in envelopes {
            let head = expect.get(&env.author).copied();
            match self.ledger.check(&env, head) {
                Ok(c) => {
                    expect.insert(env.author, ChainHead { next_seq: env.seq + 1, last_hash: c.hash });
                    checked.push(c);
                    ok_envs.push(env);
                }
                Err(CoreError::Replayed { .. }) => match self.equivocation(&env) {
                    Some(e) => receipt.rejected.push((env.author, e)),
                    None => receipt.duplicates += 1,
                },
                // Buffer only what the author really signed: anyone can put a member's key
                // on an envelope, and the buffer holds up to `max_pending` of them.
                Err(CoreError::Gap { .. }) if env.verify_signature().is_err() => {
                    receipt.rejected.push((env.author, CoreError::BadSignature("envelope")))
                }
                Err(CoreError::Gap { .. }) => {
                    receipt.needs_catch_up = true;
                    self.buffer(env, receipt);
                }
                Err(e) => receipt.rejected.push((env.author, e)),
            }
        }
        // Signatures, in one batch; on failure drop the bad one and every later envelope of
        // the same author (its chain is broken from there).
        loop {
            let refs: Vec<&Envelope> = ok_envs.iter().collect();
            match self.ledger.verify_batch(&refs, &checked) {
                Ok(()) => break,
                Err(i) => {
                    let bad = ok_envs[i].author;
                    let seq = ok_envs[i].seq;
                    receipt.rejected.push((bad, CoreError::BadSignature("envelope")));
                    let keep: Vec<bool> = ok_envs.iter().map(|e| !(e.author == bad && e.seq >= seq)).collect();
                    let mut it = keep.iter();
                    ok_envs.retain(|_| *it.next().unwrap_or(&false));
                    let mut it = keep.iter();
                    checked.retain(|_| *it.next().unwrap_or(&false));
                }
            }
        }
        // The write rules, in order: each envelope is judged against what the ones before it
        // placed. One refused or waiting stops its author's later envelopes of the batch.
        let mut stopped: HashMap<PeerKey, bool> = HashMap::new();
        let mut keep_envs = Vec::with_capacity(ok_envs.len());
        let mut keep_checked = Vec::with_capacity(ok_envs.len());
        for (env, c) in ok_envs.into_iter().zip(checked) {
            let verdict = match stopped.get(&env.author) {
                Some(true) => Ok(Verdict::Wait),
                Some(false) => continue,
                None => self.ledger.recheck_clients(&env, &c).and_then(|()| self.ledger.judge(&env, &c)),
            };
            match verdict {
                Ok(Verdict::Allowed(placed)) => {
                    self.ledger.accept(placed);
                    self.ledger.claim(&env, Some(&c.update));
                    keep_envs.push(env);
                    keep_checked.push(c);
                }
                Ok(Verdict::Wait) => {
                    // It builds on structs we do not hold yet: wait for them like for a gap.
                    stopped.insert(env.author, true);
                    receipt.needs_catch_up = true;
                    self.buffer(env, receipt);
                }
                Err(e) => {
                    stopped.insert(env.author, false);
                    receipt.rejected.push((env.author, e));
                }
            }
        }
        let (ok_envs, checked) = (keep_envs, keep_checked);
        if ok_envs.is_empty() {
            return Ok(false);
        }
        let at = self.received_at(now_ms);
        {
            let mut txn = self.doc.yrs().transact_mut();
            for (env, c) in ok_envs.iter().zip(checked) {
                self.ledger.record(env, &c);
                txn.apply_update(c.update).map_err(CoreError::Update)?;
            }
        }
        for env in &ok_envs {
            self.log_append(env, at)?;
        }
        receipt.applied.extend(ok_envs);
        Ok(true)
    }

    /// Holds an envelope back until its predecessors arrive (bounded by `max_pending`).
    fn buffer(&mut self, env: Envelope, receipt: &mut Receipt) {
        if self.pending.len() < self.cfg.max_pending {
            match pending_slot(&self.pending, &env.author, env.seq) {
                Ok(i) => self.pending[i] = env,
                Err(i) => {
                    self.pending.insert(i, env);
                    receipt.buffered += 1;
                }
            }
        }
    }

    /// A second envelope at an already-applied `(author, seq)`: a plain duplicate, or proof
    /// that the author signed two different histories (a forked chain), which is reported
    /// so the caller can penalise it. Forgeries of someone else's seq are bad signatures.
    fn equivocation(&self, env: &Envelope) -> Option<CoreError> {
        let idx = self.store.index_of(&env.author, env.seq).ok()??;
        let stored = self.store.log_range(idx, idx + 1).ok()?.pop()?.envelope;
        if stored == *env {
            return None;
        }
        Some(match env.verify_signature() {
            Ok(()) => CoreError::NotAllowed(format!(
                "equivocation: {} signed two different envelopes at seq {}",
                env.author, env.seq
            )),
            Err(e) => e,
        })
    }

    /// Makes everything logged so far durable: acknowledge envelopes only after this.
    pub fn flush(&mut self) -> Result<()> {
        self.seal_pending(self.last_received_ms)?;
        self.store.flush()
    }

    /// A signed checkpoint of the current state, stored at the current log position.
    pub fn checkpoint(&mut self, now_ms: u64) -> Result<Checkpoint> {
        // The state it signs holds only what the envelopes up to its heads hold.
        self.seal_pending(now_ms)?;
        let heads: Vec<_> = self.ledger.heads().map(|(k, h)| (*k, *h)).collect();
        let cp = Checkpoint::seal(self.id, heads, self.doc.encode_state(), self.doc.state_vector(), now_ms, &self.me);
        let idx = self.store.log_len();
        self.store.put_checkpoint(idx, &cp)?;
        self.last_checkpoint = (idx, now_ms);
        self.checkpoint_bytes = (cp.state.len() as u64, 0);
        Ok(cp)
    }

    /// Appends a new envelope to the log, counting its bytes towards the next checkpoint
    /// (history fetched from before the checkpoint goes through `store.append` alone).
    fn log_append(&mut self, env: &Envelope, at: u64) -> Result<()> {
        self.store.append(env, at)?;
        self.checkpoint_bytes.1 += entry_weight(env);
        Ok(())
    }

    fn maybe_checkpoint(&mut self, now_ms: u64) -> Result<()> {
        if !self.cfg.deferred_checkpoints {
            self.checkpoint_if_due(now_ms)?;
        }
        Ok(())
    }

    /// Makes the periodic checkpoint when it is due (`checkpoint_every` new log entries, or
    /// `checkpoint_interval_ms` since the last one and `checkpoint_interval_min` logged
    /// since; either, for a state over `checkpoint_state_free` bytes, only once the log
    /// since weighs as much as it: see [`RoomConfig::checkpoint_state_free`]); None when not. With
    /// [`RoomConfig::deferred_checkpoints`] the caller calls this at an idle moment, after
    /// sealing (a checkpoint seals deferred edits first, like [`Room::checkpoint`]).
    pub fn checkpoint_if_due(&mut self, now_ms: u64) -> Result<Option<Checkpoint>> {
        if self.checkpoint_due(now_ms) {
            return self.checkpoint(now_ms).map(Some);
        }
        Ok(None)
    }

    /// Whether [`Room::checkpoint_if_due`] would make a checkpoint now (cheap: a caller that
    /// moves the work off its thread asks first).
    pub fn checkpoint_due(&self, now_ms: u64) -> bool {
        let (idx, at) = self.last_checkpoint;
        let len = self.store.log_len();
        let (state, logged) = self.checkpoint_bytes;
        // Rooms typed into at one pace would come due together and checkpoint all at once
        // (a burst of whole-state encodes): each room waits for between 1× and 1.5× its
        // state, by the first byte of its id.
        let spread = state * u64::from(self.id.0[0]) / 512;
        let enough_bytes = state <= self.cfg.checkpoint_state_free || logged >= state + spread;
        enough_bytes
            && ((len >= idx + self.cfg.checkpoint_every)
                || (len > idx
                    && logged >= self.cfg.checkpoint_interval_min
                    && now_ms.saturating_sub(at) >= self.cfg.checkpoint_interval_ms))
    }

    /// Whether out-of-order envelopes are waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether we hold a proxy grant that lets us sign for stock clients (the room's home
    /// node does).
    pub fn can_proxy(&self) -> bool {
        self.ledger.member(&self.me.public()).is_some_and(|m| m.proxy && m.role.may_write())
    }

    /// Applies an update from a client that cannot sign (a stock Yjs client) and seals it in
    /// an envelope signed by us on its behalf. Needs a proxy grant; the update may not create
    /// items under a client id owned by another author, and is held to the write rules of
    /// the role of the client's delegation `via` (its token's grant, registered with
    /// [`Room::delegate`]: a stock candidate writes `code`, never `analysis`). The envelope
    /// names `via`, so every replica holds it to that role too.
    pub fn proxy_update(&mut self, update: &[u8], via: &PeerKey, now_ms: u64) -> Result<Option<Envelope>> {
        match self.proxy_checked(update, via, now_ms)? {
            Proxied::Signed(env) => Ok(Some(env)),
            Proxied::Empty => Ok(None),
            Proxied::Wait => {
                Err(CoreError::NotAllowed("the update builds on content this node does not hold (sync first)".into()))
            }
        }
    }

    /// [`Room::proxy_update`], telling an update that builds on content we lack apart (it
    /// changed nothing then).
    pub(crate) fn proxy_checked(&mut self, update: &[u8], via: &PeerKey, now_ms: u64) -> Result<Proxied> {
        let me = self.me.public();
        if !self.can_proxy() {
            return Err(CoreError::NotAllowed("signing for other clients needs a proxy grant".into()));
        }
        let role = self.delegated_role(via)?;
        self.seal_pending(now_ms)?;
        let (decoded, scan) = crate::doc::strict::decode_scanned(update)?;
        if decoded.insertions(true).client_ids().next().is_none() && decoded.delete_set().is_empty() {
            return Ok(Proxied::Empty);
        }
        let head = self.ledger.head(&me);
        let env = Envelope::seal_via(
            self.id,
            &self.me,
            head.next_seq,
            head.last_hash,
            self.session,
            Some(*via),
            update.to_vec(),
        );
        let checked = self.ledger.check(&env, None)?;
        match self.ledger.judge_stock(&scan, role)? {
            crate::ledger::Verdict::Allowed(placed) => self.ledger.accept(placed),
            crate::ledger::Verdict::Wait => return Ok(Proxied::Wait),
        }
        {
            let mut txn = self.doc.yrs().transact_mut();
            txn.apply_update(decoded).map_err(CoreError::Update)?;
        }
        self.ledger.record(&env, &checked);
        let at = self.received_at(now_ms);
        self.log_append(&env, at)?;
        self.maybe_checkpoint(now_ms)?;
        Ok(Proxied::Signed(env))
    }

    /// Signs the relayed stock updates that waited for content we now hold (see
    /// [`Room::proxy_for`]); call after applying envelopes. Returns the envelopes signed, in
    /// order; an update that fails for any other reason than waiting is dropped.
    pub fn retry_relayed(&mut self, now_ms: u64) -> Result<Vec<Envelope>> {
        let mut signed = Vec::new();
        loop {
            let mut progressed = false;
            let mut i = 0;
            while i < self.relayed.len() {
                let (via, update) = self.relayed[i].clone();
                match self.proxy_checked(&update, &via, now_ms) {
                    Ok(Proxied::Wait) => i += 1,
                    Ok(Proxied::Signed(env)) => {
                        self.relayed.remove(i);
                        signed.push(env);
                        progressed = true;
                    }
                    Ok(Proxied::Empty) | Err(CoreError::NotAllowed(_) | CoreError::Malformed { .. }) => {
                        self.relayed.remove(i);
                    }
                    Err(e) => return Err(e),
                }
            }
            if !progressed || self.relayed.is_empty() {
                return Ok(signed);
            }
        }
    }

    /// Keeps a relayed update that waits for content we lack (bounded: the oldest goes).
    pub(crate) fn keep_relayed(&mut self, via: PeerKey, update: &[u8]) {
        let bytes: usize = self.relayed.iter().map(|(_, u)| u.len()).sum();
        if self.relayed.len() >= MAX_WAITING_RELAYED || bytes + update.len() > MAX_WAITING_RELAYED_BYTES {
            self.relayed.remove(0);
        }
        self.relayed.push((via, update.to_vec()));
    }

    /// How many relayed stock updates wait for content we lack.
    pub fn waiting_relayed(&self) -> usize {
        self.relayed.len()
    }

    /// The role of the delegation `via` (a stock client's grant), if we know it.
    pub(crate) fn delegated_role(&self, via: &PeerKey) -> Result<Role> {
        match self.ledger.delegation(via) {
            Some(d) if self.ledger.is_revoked(via) => {
                Err(CoreError::NotAllowed(format!("invite {} was revoked", d.grant.label())))
            }
            Some(d) => Ok(d.grant.role),
            None => Err(CoreError::NotAllowed(format!("no delegation for invite {via}: register it first"))),
        }
    }

    /// A digest of the document state (for convergence checks and logs): of the canonical
    /// encoding, so replicas with the same state report the same digest.
    pub fn state_digest(&self) -> String {
        hex(&sha256(&[&self.doc.canonical_state()])[..8])
    }
}

/// What one logged entry counts towards the checkpoint's byte rule: its update's bytes and
/// [`CHECKPOINT_ENTRY_BYTES`] for replaying it at all (decoding, checking its chain,
/// applying: ~5–10 µs, whatever its size), so that a log of keystroke-sized envelopes is
/// checkpointed every `checkpoint_every` entries up to a state of ~350 KiB (a version's
/// reconstruction then replays at most ~1,000 of them: the automerge-paper trace's whole
/// document is 294 KiB) and a log of big batches by its bytes.
fn entry_weight(env: &Envelope) -> u64 {
    env.update.len() as u64 + CHECKPOINT_ENTRY_BYTES
}

/// What replaying one logged entry counts for towards a checkpoint, in bytes of state, on
/// top of its update's own bytes (see [`RoomConfig::checkpoint_state_free`]).
pub const CHECKPOINT_ENTRY_BYTES: u64 = 512;
