//! Signed votes for the AI analyzer and the consensus rule.
//!
//! The analyzer is enabled for round r when, for every required role (host and candidate by
//! default, see [`crate::records::Meta::analyzer_threshold`]), some member holding that role
//! has a valid signed `enabled` vote for r. Only the host may then trigger it; whoever runs
//! the analysis checks the votes again itself ([`Consensus::check_trigger`]). Writing the
//! result advances the round and clears the votes.

use crate::codec::Writer;
use crate::error::{CoreError, Result};
use crate::grant::{Role, RoomId};
use crate::identity::{hex, unhex, Identity, PeerKey};
use crate::ledger::Ledger;
use crate::records::{Meta, VoteRecord};

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
    /// The round votes count for.
    pub round: u64,
    /// Roles required.
    pub required: Vec<Role>,
    /// Required roles that have a valid `enabled` vote for the round.
    pub satisfied: Vec<Role>,
    /// Votes that were ignored: bad signature, unknown voter, wrong round, observer.
    pub rejected: Vec<String>,
}

impl Consensus {
    /// Evaluates the `votes` map against the roster in `ledger` and the round in `meta`.
    pub fn evaluate(ledger: &Ledger, meta: &Meta, votes: &[(String, VoteRecord)]) -> Self {
        let required = if meta.analyzer_threshold.is_empty() {
            vec![Role::Host, Role::Candidate]
        } else {
            meta.analyzer_threshold.clone()
        };
        let mut satisfied = Vec::new();
        let mut rejected = Vec::new();
        for (voter, vote) in votes {
            let role = match verify_vote(&ledger.room(), voter, vote) {
                Ok(key) => ledger.member(&key).map(|m| m.role),
                Err(_) => None,
            };
            match role {
                Some(role) if role != Role::Observer && vote.round == meta.analyzer_round => {
                    if vote.enabled && required.contains(&role) && !satisfied.contains(&role) {
                        satisfied.push(role);
                    }
                }
                _ => rejected.push(voter.clone()),
            }
        }
        satisfied.sort();
        Consensus { round: meta.analyzer_round, required, satisfied, rejected }
    }

    /// Whether every required role voted yes.
    pub fn enabled(&self) -> bool {
        self.required.iter().all(|r| self.satisfied.contains(r))
    }

    /// Checks that `trigger` may run the analyzer now: consensus reached and it is the host.
    pub fn check_trigger(&self, ledger: &Ledger, trigger: &PeerKey) -> Result<()> {
        if ledger.member(trigger).map(|m| m.role) != Some(Role::Host) {
            return Err(CoreError::NotAllowed("only the host may trigger the analyzer".into()));
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
