//! Catch-up on a room replica: envelope vectors, answers to a peer's `Want`, the messages
//! of the envelope protocol, and signed checkpoints for late joiners.

use std::collections::BTreeMap;

use yrs::Transact;

use super::{Receipt, Room};
use crate::checkpoint::Checkpoint;
use crate::envelope::Envelope;
use crate::error::{CoreError, Result};
use crate::identity::PeerKey;
use crate::ledger::ChainHead;
use crate::store::Store;
use crate::sync::wire::{Wire, MAX_AUTHORS};

/// Most envelopes one answer to a [`Wire::WantHistory`] carries.
const MAX_HISTORY_ANSWER: usize = 50_000;
/// Most bytes (roughly) one answer to a [`Wire::WantHistory`] carries: it travels as one
/// message, fragmented on small transports.
const MAX_HISTORY_BYTES: usize = 16 << 20;

/// Envelopes in log order, but each author's in ascending seq: history fetched after a
/// checkpoint (backfill) sits in our log after that author's later envelopes.
fn per_author_in_seq_order(envs: Vec<Envelope>) -> Vec<Envelope> {
    // Each author's log positions (ascending) get that author's envelopes in seq order:
    // positions sorted by author (stably) pair up with envelopes sorted by (author, seq).
    let mut slots: Vec<usize> = (0..envs.len()).collect();
    slots.sort_by(|&i, &j| envs[i].author.cmp(&envs[j].author));
    let mut sorted = envs;
    sorted.sort_by(|a, b| a.author.cmp(&b.author).then(a.seq.cmp(&b.seq)));
    let mut out: Vec<Option<Envelope>> = (0..sorted.len()).map(|_| None).collect();
    for (i, e) in slots.into_iter().zip(sorted) {
        out[i] = Some(e);
    }
    out.into_iter().flatten().collect()
}

impl<S: Store> Room<S> {
    /// Our envelope vector: per author, how many envelopes we have.
    pub fn envelope_vector(&self) -> BTreeMap<PeerKey, u64> {
        self.ledger.heads().map(|(k, h)| (*k, h.next_seq)).collect()
    }

    /// The catch-up request to send a peer.
    pub fn want(&self) -> Wire {
        Wire::Want(self.envelope_vector())
    }

    /// Answers a peer's envelope vector: admissions, then what it lacks (from our log).
    pub fn answer(&self, have: &BTreeMap<PeerKey, u64>) -> Result<Vec<Wire>> {
        let mut out = vec![Wire::Admissions(self.ledger.admissions())];
        // Before the revocations: a revoked invite refuses only delegations it did not know.
        let delegations = self.ledger.delegations();
        if !delegations.is_empty() {
            out.push(Wire::Delegations(delegations));
        }
        let revocations = self.store.revocations()?;
        if !revocations.is_empty() {
            out.push(Wire::Revocations(revocations));
        }
        // A late joiner starts from our latest signed checkpoint (when its signer is the
        // host or a node), then verifies only the envelopes after it.
        let mut have = have.clone();
        if let Some(cp) = self.checkpoint_for(&have)? {
            have.extend(cp.heads.iter().map(|(k, h)| (*k, h.next_seq)));
            out.push(Wire::Checkpoint(Box::new(cp)));
        }
        let mut envs = Vec::new();
        let mut budget = self.cfg.max_catch_up;
        for (author, head) in self.ledger.heads() {
            let from = have.get(author).copied().unwrap_or(0);
            if from < head.next_seq && budget > 0 {
                let got = self.store.author_envelopes(author, from, budget)?;
                budget -= got.len().min(budget);
                envs.extend(got);
            }
        }
        // Log order keeps causality across authors.
        let mut with_index: Vec<(u64, Envelope)> = Vec::with_capacity(envs.len());
        for e in envs {
            let idx = self.store.index_of(&e.author, e.seq)?.unwrap_or(u64::MAX);
            with_index.push((idx, e));
        }
        with_index.sort_by_key(|(i, _)| *i);
        if !with_index.is_empty() {
            out.push(Wire::Envelopes(per_author_in_seq_order(with_index.into_iter().map(|(_, e)| e).collect())));
        }
        Ok(out)
    }

    /// The lowest seq of `author` we hold (we hold `[floor, head)`, contiguous); the head
    /// when we hold none (a replica that started from a checkpoint, before any backfill).
    pub fn history_floor(&self, author: &PeerKey) -> Result<u64> {
        let (mut lo, mut hi) = (0, self.ledger.head(author).next_seq);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.store.index_of(author, mid)?.is_some() {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// The request for the history we lack (authors whose envelopes we hold only from some
    /// seq above 0, after starting from a checkpoint), if any.
    pub fn want_history(&self) -> Result<Option<Wire>> {
        let mut below = BTreeMap::new();
        for (author, _) in self.ledger.heads() {
            let floor = self.history_floor(author)?;
            if floor > 0 {
                below.insert(*author, floor);
            }
            if below.len() >= MAX_AUTHORS {
                break;
            }
        }
        Ok((!below.is_empty()).then_some(Wire::WantHistory(below)))
    }

    /// Answers a [`Wire::WantHistory`]: per listed author, the envelopes we hold just below
    /// the seq asked for (ascending), within a budget split over the authors.
    pub fn answer_history(&self, below: &BTreeMap<PeerKey, u64>) -> Result<Vec<Wire>> {
        let asked = below.iter().filter(|(_, n)| **n > 0).count().max(1);
        let per = (self.cfg.max_catch_up / asked).clamp(1, MAX_HISTORY_ANSWER);
        let mut envs = Vec::new();
        let mut bytes = 0usize;
        for (author, n) in below.iter().take(MAX_AUTHORS) {
            let n = (*n).min(self.ledger.head(author).next_seq);
            if n == 0 {
                continue;
            }
            let k = (per as u64).min(n);
            let got = self.store.author_envelopes(author, n - k, k as usize)?;
            // Each author's run must reach down from `n`: a byte budget cuts from below.
            let mut run: Vec<Envelope> = Vec::new();
            for e in got.into_iter().filter(|e| e.seq < n).rev() {
                let len = e.update.len() + 200;
                if bytes + len > MAX_HISTORY_BYTES && !(envs.is_empty() && run.is_empty()) {
                    break;
                }
                bytes += len;
                run.push(e);
            }
            run.reverse();
            envs.extend(run);
        }
        Ok(if envs.is_empty() { Vec::new() } else { vec![Wire::History(envs)] })
    }

    /// Takes old envelopes ([`Wire::History`]) into the log after checking each author's
    /// run against the hash chain we hold: down from the oldest envelope we have (or the
    /// head a verified checkpoint fixed), each must have the next lower seq and the hash
    /// its successor names as `prev`. The first mismatch ends that author's run and is
    /// reported. Verified envelopes are logged only: the document already holds them (the
    /// checkpoint's state) and the chain heads stay. Returns the next request, if any is
    /// still worth sending.
    pub fn receive_history(&mut self, envs: Vec<Envelope>, now_ms: u64) -> Result<(Vec<Wire>, Receipt)> {
        let mut receipt = Receipt::default();
        // Per author (ascending), its run from the highest seq down.
        let mut envs = envs;
        envs.sort_by(|a, b| a.author.cmp(&b.author).then(b.seq.cmp(&a.seq)));
        let mut envs = envs.into_iter().peekable();
        let mut verified: Vec<Envelope> = Vec::new();
        while let Some(first) = envs.next() {
            let author = first.author;
            let mut run = vec![first];
            while let Some(e) = envs.next_if(|e| e.author == author) {
                run.push(e);
            }
            let head = self.ledger.head(&author);
            if head.next_seq == 0 {
                receipt.rejected.push((author, CoreError::NotFound(format!("history of {author}, who wrote nothing"))));
                continue;
            }
            let floor = self.history_floor(&author)?;
            let mut expected = if floor == head.next_seq {
                head.last_hash
            } else {
                let idx = self
                    .store
                    .index_of(&author, floor)?
                    .ok_or_else(|| CoreError::Store(format!("envelope {floor} of {author} vanished")))?;
                let stored = self
                    .store
                    .log_range(idx, idx + 1)?
                    .pop()
                    .ok_or_else(|| CoreError::Store(format!("log entry {idx} vanished")))?;
                stored.envelope.prev
            };
            // What we hold already is a duplicate (a repeated answer); the rest goes down.
            let mut next = floor;
            let mut good = Vec::new();
            for env in run {
                if env.seq >= floor {
                    receipt.duplicates += 1;
                    continue;
                }
                if next == 0 || env.seq != next - 1 || env.room != self.id || env.hash() != expected {
                    receipt.rejected.push((author, CoreError::BrokenChain { author: author.to_hex(), seq: env.seq }));
                    break;
                }
                expected = env.prev;
                next = env.seq;
                good.push(env);
            }
            good.reverse();
            verified.extend(good);
        }
        if verified.is_empty() {
            return Ok((Vec::new(), receipt));
        }
        let at = self.received_at(now_ms);
        for env in &verified {
            self.store.append(env, at)?;
        }
        let more = self.want_history()?;
        Ok((more.into_iter().collect(), receipt))
    }

    /// The checkpoint to send a peer that holds `have`, if it should start from one: it
    /// holds nothing at all, or it lacks at least [`RoomConfig::checkpoint_join_min`]
    /// envelopes and none of the envelopes the checkpoint covers are among the ones it has
    /// (a late joiner holds only its own join envelope).
    fn checkpoint_for(&self, have: &BTreeMap<PeerKey, u64>) -> Result<Option<Checkpoint>> {
        if !have.is_empty() {
            let lacking: u64 =
                self.ledger.heads().map(|(a, h)| h.next_seq.saturating_sub(have.get(a).copied().unwrap_or(0))).sum();
            if lacking < self.cfg.checkpoint_join_min {
                return Ok(None);
            }
        }
        let Some(cp) = self.latest_signed_checkpoint()? else { return Ok(None) };
        let disjoint = cp.heads.iter().all(|(a, h)| h.next_seq == 0 || have.get(a).copied().unwrap_or(0) == 0);
        Ok(disjoint.then_some(cp))
    }

    /// Our latest checkpoint whose signer a late joiner accepts (host or proxy). A replica
    /// that itself started from a checkpoint signs its own later ones with a key a joiner
    /// may not accept, so a few older ones are looked at too.
    fn latest_signed_checkpoint(&self) -> Result<Option<Checkpoint>> {
        for (idx, _) in self.store.checkpoints()?.into_iter().rev().take(8) {
            if let Some(cp) = self.store.checkpoint(idx)?.filter(|cp| cp.verify(&self.ledger).is_ok()) {
                return Ok(Some(cp));
            }
        }
        Ok(None)
    }

    /// Whether a peer with envelope vector `have` holds envelopes we do not (its own, or
    /// other authors' it got over a link we never saw, e.g. a browser data channel). A node
    /// answering a client's `Want` then asks back with its own. Not done for every peer:
    /// between replicas that both lack something the other cannot give, asking back on
    /// every `Want` never quiesces.
    pub fn lacks_from(&self, have: &BTreeMap<PeerKey, u64>) -> bool {
        have.iter().any(|(a, n)| *n > self.ledger.head(a).next_seq)
    }

    /// Handles one envelope-protocol message; returns the replies and the receipt of any
    /// envelopes applied. `now_ms` also checks the expiry of live admissions.
    pub fn handle(&mut self, msg: Wire, now_ms: u64) -> Result<(Vec<Wire>, Receipt)> {
        self.seal_pending(now_ms)?;
        match msg {
            Wire::Envelopes(envs) => {
                let r = self.receive(envs, now_ms)?;
                let replies = if r.needs_catch_up { vec![self.want()] } else { Vec::new() };
                Ok((replies, r))
            }
            Wire::Admissions(adms) => {
                let mut r = Receipt::default();
                // History semantics: a member who joined while its grant was valid stands, so
                // a late joiner takes the admissions of members whose links have expired since.
                // The clock is checked where a join comes in live (the node's transports,
                // `Room::admit_live`).
                for a in adms {
                    if let Err(e) = self.admit(&a, None) {
                        r.rejected.push((a.member, e));
                    }
                }
                Ok((Vec::new(), r))
            }
            Wire::Delegations(ds) => {
                let mut r = Receipt::default();
                let mut new = false;
                for d in ds {
                    match self.delegate(&d, None) {
                        Ok(n) => new |= n,
                        Err(e) => r.rejected.push((d.key(), e)),
                    }
                }
                if new {
                    // Envelopes that waited for one of them may go on now (reported as
                    // applied, so the caller passes them on).
                    let retried = self.retry_waiting(now_ms)?;
                    r.applied = retried.applied;
                    r.duplicates = retried.duplicates;
                    r.buffered = retried.buffered;
                    r.needs_catch_up = retried.needs_catch_up;
                    r.rejected.extend(retried.rejected);
                }
                Ok((Vec::new(), r))
            }
            Wire::Revocations(revs) => {
                let mut r = Receipt::default();
                for v in revs {
                    if let Err(e) = self.apply_revocation(&v) {
                        r.rejected.push((v.by, e));
                    }
                }
                Ok((Vec::new(), r))
            }
            Wire::Want(have) => Ok((self.answer(&have)?, Receipt::default())),
            Wire::WantHistory(below) => Ok((self.answer_history(&below)?, Receipt::default())),
            Wire::History(envs) => self.receive_history(envs, now_ms),
            Wire::Checkpoint(cp) => {
                cp.verify(&self.ledger)?;
                if cp.heads.iter().any(|(a, h)| h.next_seq > 0 && self.ledger.head(a).next_seq > 0) {
                    // We hold part of what it covers (another peer's answer came first):
                    // go on by envelopes.
                    return Ok((vec![self.want()], Receipt::default()));
                }
                self.adopt_checkpoint(&cp)?;
                // Live envelopes that arrived before the checkpoint may continue it now.
                let waiting: Vec<Envelope> = std::mem::take(&mut self.pending);
                let receipt = if waiting.is_empty() { Receipt::default() } else { self.receive(waiting, now_ms)? };
                // Then the history before it, so that old versions rebuild here too.
                let mut replies = vec![self.want()];
                replies.extend(self.want_history()?);
                Ok((replies, receipt))
            }
            Wire::Proxied { grant, update, signature, delegation } => {
                let d = crate::Delegation { grant: (*grant).clone(), signature: delegation };
                self.delegate_live(&d, now_ms)?;
                let applied = self.proxy_for(&grant, &signature, &update, now_ms)?;
                Ok((Vec::new(), Receipt { applied, ..Receipt::default() }))
            }
        }
    }

    /// Signs a stock client's update that another node relayed ([`Wire::Proxied`]), after
    /// checking the relay's voucher: signed by the invite key of a grant for this room, not
    /// expired, with a role that may write. The update is held to that role's write rules
    /// and the envelope names the grant's delegation, which must be known (it comes with
    /// the message, or earlier as [`Wire::Delegations`]). Needs our proxy grant.
    ///
    /// Relayed updates may arrive out of order (each relay is a request of its own): one
    /// that builds on content we do not hold yet is kept (bounded) and signed once that
    /// content is here, by a later call or [`Room::retry_relayed`]. Returns the envelopes
    /// signed now, in order: this update's and those of kept ones it unblocked.
    pub fn proxy_for(
        &mut self,
        grant: &crate::grant::Grant,
        signature: &[u8; 64],
        update: &[u8],
        now_ms: u64,
    ) -> Result<Vec<Envelope>> {
        grant.check_vouch(&self.id, update, signature, now_ms)?;
        if !grant.role.may_write() {
            return Err(CoreError::NotAllowed(format!("a relayed update under a {} grant", grant.role)));
        }
        if self.ledger.delegation(&grant.invite).map(|d| &d.grant) != Some(grant) {
            return Err(CoreError::NotAllowed(format!(
                "a relayed update under grant {} without its delegation",
                grant.label()
            )));
        }
        match self.proxy_checked(update, &grant.invite, now_ms)? {
            super::Proxied::Signed(env) => {
                let mut signed = vec![env];
                signed.extend(self.retry_relayed(now_ms)?);
                Ok(signed)
            }
            super::Proxied::Empty => Ok(Vec::new()),
            super::Proxied::Wait => {
                self.keep_relayed(grant.invite, update);
                Ok(Vec::new())
            }
        }
    }

    /// Starts from a peer's signed checkpoint: a late joiner that holds none of the
    /// envelopes the checkpoint covers (it may hold its own join envelope, or envelopes of
    /// authors the checkpoint does not know). Its state is merged into ours; the chains
    /// of the authors it covers continue from its heads. Versions made before it cannot be
    /// rebuilt here ([`Room::doc_at`] says so); `arena-node verify` audits from the first
    /// envelope on a replica that has them all.
    pub fn adopt_checkpoint(&mut self, cp: &Checkpoint) -> Result<()> {
        cp.verify(&self.ledger)?;
        self.seal_pending(self.last_received_ms.max(cp.at_ms))?;
        if let Some((a, _)) = cp.heads.iter().find(|(a, h)| h.next_seq > 0 && self.ledger.head(a).next_seq > 0) {
            return Err(CoreError::NotAllowed(format!(
                "a checkpoint is adopted only by a replica that holds none of the envelopes it covers (we hold some of {a})"
            )));
        }
        // Decode (and so validate) before anything changes.
        let (update, scan) = crate::doc::strict::decode_scanned(&cp.state)?;
        self.doc.yrs().transact_mut().apply_update(update).map_err(CoreError::Update)?;
        self.ledger.place(&scan);
        let mut heads: Vec<(PeerKey, ChainHead)> = self.ledger.heads().map(|(k, h)| (*k, *h)).collect();
        heads.extend(cp.heads.iter().filter(|(_, h)| h.next_seq > 0).copied());
        self.ledger.set_heads(heads);
        // Index 0: it covers none of our log, so a reopen applies it and then the whole log.
        self.store.put_checkpoint(0, cp)?;
        if self.store.log_len() > 0 {
            // Our own entries are not in it: a checkpoint of the merged state goes last.
            self.checkpoint(self.last_received_ms.max(cp.at_ms))?;
        }
        Ok(())
    }
}
