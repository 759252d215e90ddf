//! Deferred local edits: applied to the document at once, sealed (signed, chained, logged)
//! later in one envelope, so that an editor's keystroke does not wait for a signature.
//!
//! The pending buffer holds each local transaction's own update, never a diff of the
//! document, so whatever else reaches the document meanwhile (a remote envelope, a stock
//! client's update applied to the doc directly) stays out of our envelope.

use super::Room;
use crate::doc::Edit;
use crate::envelope::Envelope;
use crate::error::{CoreError, Result};
use crate::grant::Role;
use crate::history::Splice;
use crate::identity::PeerKey;
use crate::store::Store;
use yrs::Transact;

/// Deferred transactions merged into one envelope at most; the next one seals them first.
pub(crate) const MAX_UNSEALED: usize = 256;
/// Bytes of deferred updates at most (well under an envelope's [`crate::MAX_UPDATE`]).
pub(crate) const MAX_UNSEALED_BYTES: usize = 256 << 10;

impl<S: Store> Room<S> {
    /// A local edit applied to the document now and sealed later, by [`Room::seal_pending`]
    /// or by the next method that logs, receives or answers. Returns whether it changed
    /// anything. Fails, changing nothing, when our role may not write.
    pub fn edit_deferred(&mut self, now_ms: u64, f: impl FnOnce(&mut Edit<'_, '_>)) -> Result<bool> {
        self.check_may_write()?;
        let ((), update) = self.doc.edit(f);
        if update.is_empty() {
            return Ok(false);
        }
        // Our own edit, held to our role's write rules like everyone's: one outside them is
        // never signed (every peer would refuse it). It is in our document already; the
        // store never had it, so reopening the replica drops it.
        let scan = crate::doc::strict::scan_update(&update)?;
        let me = self.me.public();
        match self.ledger.judge_own(&me, &scan)? {
            crate::ledger::Verdict::Allowed(placed) => self.ledger.accept(placed),
            crate::ledger::Verdict::Wait => {
                return Err(CoreError::NotAllowed("our own edit builds on content the rules cannot place".into()))
            }
        }
        self.defer(update, now_ms)
    }

    /// Deferred splices of the code buffer that an editor already shows: like
    /// [`Room::edit_deferred`], but a [`crate::CodeWatch`] does not report them back.
    pub fn edit_shown(&mut self, splices: &[Splice], now_ms: u64) -> Result<bool> {
        self.check_may_write()?;
        let ((), update) = self.doc.edit_shown(|e| {
            for s in splices {
                e.splice_code(s.pos, s.delete, &s.insert);
            }
        });
        self.learn_local(&update);
        self.defer(update, now_ms)
    }

    /// A stock client's update (a Yjs client that cannot sign), checked and applied to the
    /// document now and signed by us on its behalf with the next seal, like a deferred local
    /// edit. Needs a proxy grant; the update may not create items under a client id owned by
    /// another author, and is held to the write rules of the role of the client's delegation
    /// `via` (registered with [`Room::delegate`]); the envelope names `via`. Deferred
    /// updates are sealed in runs of one `via` (in order: a change of `via` seals the run
    /// before). Returns whether it held anything (false: nothing to relay). On an error
    /// nothing changed.
    pub fn proxy_deferred(&mut self, update: &[u8], via: &PeerKey, now_ms: u64) -> Result<bool> {
        let (decoded, scan) = crate::doc::strict::decode_scanned(update)?;
        if decoded.insertions(true).client_ids().next().is_none() && decoded.delete_set().is_empty() {
            return Ok(false);
        }
        if !self.can_proxy() {
            return Err(CoreError::NotAllowed("signing for other clients needs a proxy grant".into()));
        }
        let role = self.delegated_role(via)?;
        let me = self.me.public();
        self.ledger.check_clients(&me, true, me.client_id(self.session), &decoded)?;
        self.judge_stock(&scan, role)?;
        let clients: Vec<u64> = decoded.insertions(true).client_ids().map(|c| c.get()).collect();
        self.doc.yrs().transact_mut().apply_update(decoded).map_err(CoreError::Update)?;
        self.ledger.claim_proxied(&me, clients);
        self.defer_via(update.to_vec(), Some(*via), now_ms)
    }

    /// The envelopes sealed from deferred updates since the last call, by whichever method
    /// sealed them (with [`crate::RoomConfig::collect_seals`]; otherwise always empty).
    pub fn take_sealed(&mut self) -> Vec<Envelope> {
        std::mem::take(&mut self.sealed)
    }

    /// How many local transactions wait to be sealed.
    pub fn unsealed(&self) -> usize {
        self.unsealed.len()
    }

    /// Seals our deferred edits into one signed envelope (their updates merged), logs it and
    /// advances our chain. None when nothing waits.
    pub fn seal_pending(&mut self, now_ms: u64) -> Result<Option<Envelope>> {
        let update = match self.unsealed.len() {
            0 => return Ok(None),
            1 => self.unsealed.pop().unwrap_or_default(),
            _ => match yrs::merge_updates_v1(&self.unsealed) {
                Ok(merged) => {
                    self.unsealed.clear();
                    merged
                }
                // Cannot happen for updates we encoded ourselves; if it did, one envelope
                // per transaction still carries everything.
                Err(_) => {
                    let mut last = None;
                    for u in std::mem::take(&mut self.unsealed) {
                        last = Some(self.seal_update(u, now_ms)?);
                    }
                    return Ok(last);
                }
            },
        };
        let env = self.seal_update(update, now_ms)?;
        self.retry_waiting(now_ms)?;
        Ok(Some(env))
    }

    /// Envelopes held back because they build on structs we lacked may build on what we
    /// just sealed (a peer deleting what we typed before it reached us): apply those now.
    pub(super) fn retry_waiting(&mut self, now_ms: u64) -> Result<super::Receipt> {
        let ledger = &self.ledger;
        let ready: Vec<usize> = (0..self.pending.len())
            .filter(|&i| ledger.head(&self.pending[i].author).next_seq == self.pending[i].seq)
            .collect();
        if ready.is_empty() {
            return Ok(super::Receipt::default());
        }
        let mut batch: Vec<Envelope> = ready.into_iter().rev().map(|i| self.pending.remove(i)).collect();
        batch.reverse();
        self.receive(batch, now_ms)
    }

    /// Our own edit's placements, for the write rules' view of the document.
    fn learn_local(&mut self, update: &[u8]) {
        if let Ok(scan) = crate::doc::strict::scan_update(update) {
            self.ledger.place(&scan);
        }
    }

    /// Judges a stock client's update under `role` and records its placements.
    pub(crate) fn judge_stock(&mut self, scan: &crate::doc::strict::Scan, role: Role) -> Result<()> {
        match self.ledger.judge_stock(scan, role)? {
            crate::ledger::Verdict::Allowed(placed) => {
                self.ledger.accept(placed);
                Ok(())
            }
            crate::ledger::Verdict::Wait => {
                Err(CoreError::NotAllowed("the update builds on content this node does not hold (sync first)".into()))
            }
        }
    }

    fn check_may_write(&self) -> Result<()> {
        match self.ledger.member(&self.me.public()) {
            Some(m) if m.role.may_write() => Ok(()),
            Some(m) => Err(CoreError::NotAllowed(format!("{} may not edit", m.role))),
            None => Err(CoreError::NotAllowed("not admitted to the room".into())),
        }
    }

    fn defer(&mut self, update: Vec<u8>, now_ms: u64) -> Result<bool> {
        self.defer_via(update, None, now_ms)
    }

    /// Defers `update`, written under `via` (`None`: our own edit).
    fn defer_via(&mut self, update: Vec<u8>, via: Option<PeerKey>, now_ms: u64) -> Result<bool> {
        if update.is_empty() {
            return Ok(false);
        }
        let bytes: usize = self.unsealed.iter().map(Vec::len).sum();
        if self.unsealed.len() >= MAX_UNSEALED || bytes + update.len() > MAX_UNSEALED_BYTES {
            // Nobody sealed for a long while: keep envelopes (and merges) small.
            self.seal_pending(now_ms)?;
        }
        if via != self.unsealed_via {
            // One envelope names one writer: seal the run of the previous one first (in
            // order: a later update may build on an earlier one of another writer).
            self.seal_pending(now_ms)?;
            self.unsealed_via = via;
        }
        self.unsealed.push(update);
        Ok(true)
    }

    /// Signs `update` as our next envelope and logs it. On a store error the update stays
    /// pending, so a later seal retries it.
    fn seal_update(&mut self, update: Vec<u8>, now_ms: u64) -> Result<Envelope> {
        let me = self.me.public();
        let head = self.ledger.head(&me);
        let via = self.unsealed_via;
        let env = Envelope::seal_via(self.id, &self.me, head.next_seq, head.last_hash, self.session, via, update);
        let at = self.received_at(now_ms);
        if let Err(e) = self.log_append(&env, at) {
            self.unsealed.insert(0, env.update);
            return Err(e);
        }
        self.ledger.advance(&env, env.hash(), None);
        if self.cfg.collect_seals {
            self.sealed.push(env.clone());
        }
        self.maybe_checkpoint(now_ms)?;
        Ok(env)
    }
}
