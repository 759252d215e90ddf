//! Signed votes for the AI analyzer and the consensus rule.
//!
//! The analyzer is enabled for round r when every admitted host and every admitted candidate
//! (the node excluded) has a valid signed `enabled` vote for r: a rule fixed by the room, not
//! a field anyone can edit. Only a host may then trigger it, and only the node (the room's
//! service identity) writes the result, after checking the votes again itself
//! ([`Consensus::check_trigger`]). The round is one past the highest round `analysis`
//! answers, so writing a result starts the next round and older votes stop counting.
//! A vote can be written only by its voter (the write rules), so nobody can replay a
//! member's withdrawn vote: the member's own envelopes are hash-chained.

use crate::codec::Writer;
use crate::error::{CoreError, Result};
use crate::grant::{Role, RoomId};
use crate::identity::{hex, unhex, Identity, PeerKey};
use crate::ledger::Ledger;
use crate::records::VoteRecord;

const DOMAIN: &[u8] = b"arena/vote/v1";

fn signed_bytes(room: &RoomId, voter: &PeerKey, round: u64, enabled: bool) -> Vec<u8> {
    let mut w = Writer::with_capacity(96);
    w.fixed(DOMAIN).fixed(&room.0).fixed(&voter.0).var(round).u8(u8::from(enabled));
    w.finish()
}

/// Signs a vote record for `round`.
pub fn sign_vote(room: &RoomId, voter: &Identity, round: u64, enabled: bool) -> VoteRecord {
    let sig = voter.sign(&signed_bytes(room, &voter.public(), round, enabled));
    VoteRecord { round, enabled, signature: hex(&sig) }
}

/// Checks a vote record's signature for `voter` (hex key, as stored in the `votes` map).
pub fn verify_vote(room: &RoomId, voter: &str, vote: &VoteRecord) -> Result<PeerKey> {
    let key = PeerKey::from_hex(voter)?;
    let sig: [u8; 64] = unhex(&vote.signature)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| CoreError::malformed("vote", "signature is not 64 hex bytes"))?;
    key.verify(&signed_bytes(room, &key, vote.round, vote.enabled), &sig, "vote")?;
    Ok(key)
}

/// Where consensus stands for the current round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consensus {
    /// The round votes count for: one past the highest round `analysis` answers (only the
    /// node writes `analysis`, so nobody else can move it).
    pub round: u64,
    /// Roles required: host, and candidate once a candidate is admitted.
    pub required: Vec<Role>,
    /// Required roles every member of which has a valid `enabled` vote for the round.
    pub satisfied: Vec<Role>,
    /// Members (hex keys) whose `enabled` vote for the round is still missing.
    pub missing: Vec<String>,
    /// Votes that were ignored: bad signature, unknown voter, wrong round, observer, node.
    pub rejected: Vec<String>,
}

impl Consensus {
    /// Evaluates the `votes` map against the roster in `ledger` for `round`. The rule is the
    /// room's, not a field anyone can edit: every admitted host and every admitted
    /// candidate (the node excluded: it runs the analyzer, it does not ask for it) must have
    /// a valid signed `enabled` vote for the round.
    pub fn evaluate(ledger: &Ledger, round: u64, votes: &[(String, VoteRecord)]) -> Self {
        let mut yes: Vec<PeerKey> = Vec::new();
        let mut rejected = Vec::new();
        for (voter, vote) in votes {
            let member = match verify_vote(&ledger.room(), voter, vote) {
                Ok(key) => ledger.member(&key).map(|m| (key, m.role, m.proxy)),
                Err(_) => None,
            };
            match member {
                Some((key, role, false)) if role != Role::Observer && vote.round == round => {
                    if vote.enabled {
                        yes.push(key);
                    }
                }
                _ => rejected.push(voter.clone()),
            }
        }
        let voters: Vec<(&PeerKey, Role)> = ledger
            .members()
            .filter(|(k, m)| !m.proxy && m.role != Role::Observer && !ledger.is_revoked(k))
            .map(|(k, m)| (k, m.role))
            .collect();
        let mut required = vec![Role::Host];
        if voters.iter().any(|(_, r)| *r == Role::Candidate) {
            required.push(Role::Candidate);
        }
        let mut missing: Vec<String> =
            voters.iter().filter(|(k, _)| !yes.contains(k)).map(|(k, _)| k.to_hex()).collect();
        missing.sort();
        let satisfied = required
            .iter()
            .copied()
            .filter(|role| {
                let mut of_role = voters.iter().filter(|(_, r)| r == role).peekable();
                of_role.peek().is_some() && of_role.all(|(k, _)| yes.contains(k))
            })
            .collect();
        Consensus { round, required, satisfied, missing, rejected }
    }

    /// Whether every required role voted yes.
    pub fn enabled(&self) -> bool {
        self.required.iter().all(|r| self.satisfied.contains(r))
    }

    /// Checks that `trigger` may run the analyzer now: consensus reached and it is a host
    /// (not the node itself).
    pub fn check_trigger(&self, ledger: &Ledger, trigger: &PeerKey) -> Result<()> {
        match ledger.member(trigger) {
            Some(m) if m.role == Role::Host && !m.proxy => {}
            _ => return Err(CoreError::NotAllowed("only the host may trigger the analyzer".into())),
        }
        if !self.enabled() {
            let missing: Vec<_> =
                self.required.iter().filter(|r| !self.satisfied.contains(r)).map(|r| r.as_str()).collect();
            return Err(CoreError::Consensus(format!(
                "round {} lacks an enabled vote from: {}",
                self.round,
                missing.join(", ")
            )));
        }
        Ok(())
    }
}
