//! The consensus-gated analyzer, as the room actor sees it: [`RoomState::analyze_check`]
//! finds the host who asks (by its invite key) and checks the current round's signed votes
//! under the room's rule; [`RoomState::analyze_write`] writes the result as the node, after
//! checking again (the votes may have changed while the analyzer ran), which starts the
//! next round. The analyzer itself runs outside the actor; its result comes in by command.

use arena_core::{PeerKey, Role, Room};

use super::env::RoomStore;
use super::state::RoomState;
use crate::clock::now_ms;

/// Why the room refused to analyze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AnalyzeRefusal {
    /// Not a host's link, or no host has joined with it.
    NotHost(String),
    /// Consensus is not reached, or the round moved on.
    NoConsensus(String),
    /// The room is gone or failed.
    Internal(String),
}

/// What the analyzer needs, once the room agreed.
#[derive(Debug, Clone)]
pub(crate) struct AnalyzeTicket {
    /// The host who asked (a member key).
    pub(crate) trigger: PeerKey,
    /// The round the result answers.
    pub(crate) round: u64,
    pub(crate) language: String,
    pub(crate) code: String,
}

/// The host member who joined with the invite whose key is `invite`.
fn host_of<S: RoomStore>(room: &Room<S>, invite: &PeerKey) -> Result<PeerKey, AnalyzeRefusal> {
    let ledger = room.ledger();
    ledger
        .members()
        .filter(|(k, m)| m.admission.grant.invite == *invite && !ledger.is_revoked(k))
        .find(|(_, m)| m.role == Role::Host && !m.proxy)
        .map(|(k, _)| *k)
        .ok_or_else(|| AnalyzeRefusal::NotHost("only a host who has joined the room may trigger the analyzer".into()))
}

/// The consensus check, with a message naming who has not voted.
fn check<S: RoomStore>(room: &Room<S>, trigger: &PeerKey) -> Result<u64, AnalyzeRefusal> {
    let c = room.consensus();
    let ledger = room.ledger();
    if let Err(e) = c.check_trigger(ledger, trigger) {
        if c.enabled() {
            return Err(AnalyzeRefusal::NotHost(e.to_string()));
        }
        let names: Vec<String> = c
            .missing
            .iter()
            .map(|hex| {
                let m = PeerKey::from_hex(hex).ok().and_then(|k| ledger.member(&k).cloned());
                match m {
                    Some(m) => format!("{} ({}, {})", m.name, m.role.as_str(), &hex[..hex.len().min(12)]),
                    None => hex.clone(),
                }
            })
            .collect();
        return Err(AnalyzeRefusal::NoConsensus(format!(
            "the analyzer needs an enabled vote for round {} from every host and candidate; not yet voted: {}",
            c.round,
            if names.is_empty() { "a host and a candidate must join and vote".to_owned() } else { names.join(", ") }
        )));
    }
    Ok(c.round)
}

impl<S: RoomStore> RoomState<S> {
    /// Whether the host who joined with `invite` may run the analyzer now.
    pub(super) fn analyze_check(&mut self, invite: &PeerKey) -> Result<AnalyzeTicket, AnalyzeRefusal> {
        self.with_room(|_, room| {
            let trigger = host_of(room, invite)?;
            let round = check(room, &trigger)?;
            let doc = room.doc();
            Ok(AnalyzeTicket { trigger, round, language: doc.meta().language, code: doc.code() })
        })
        .unwrap_or_else(|| Err(AnalyzeRefusal::Internal("the room is not loaded".into())))
    }

    /// Writes the analyzer's result for `round` as the node (checking the votes again) and
    /// sends it to the room's connections and the network.
    pub(super) fn analyze_write(
        &mut self,
        trigger: &PeerKey,
        round: u64,
        backend: &str,
        findings: Vec<String>,
    ) -> Result<(), AnalyzeRefusal> {
        let sealed = self
            .with_room(|_, room| {
                let now = check(room, trigger)?;
                if now != round {
                    return Err(AnalyzeRefusal::NoConsensus(format!(
                        "round {round} was answered meanwhile; vote again for round {now}"
                    )));
                }
                room.complete_round(trigger, backend, findings, now_ms())
                    .map_err(|e| AnalyzeRefusal::Internal(e.to_string()))?;
                Ok(room.take_sealed())
            })
            .unwrap_or_else(|| Err(AnalyzeRefusal::Internal("the room is not loaded".into())))?;
        if !sealed.is_empty() {
            self.env.to_network(self.id, vec![arena_core::sync::wire::Wire::Envelopes(sealed.clone())]);
            for env in &sealed {
                self.broadcast_envelope(env, None);
            }
        }
        Ok(())
    }
}
