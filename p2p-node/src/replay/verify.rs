//! `arena-node verify`: the full audit of a recording from its first record.
//!
//! What a passing verify proves, and against whom:
//! - every envelope was signed by its author, an admitted member allowed to write, and each
//!   author's envelopes form an unbroken hash chain from its first;
//! - every admission was made with a grant signed by the room key;
//! - every envelope a node signed for a stock client names that client's delegation (its
//!   grant, countersigned with the invite key the client's link carried), so it shows as
//!   "via node, as candidate"; every replica held it to that grant's role. That the
//!   client typed it is still the node's word: a stock client has no key;
//! - the recorder whose key is in the header sealed exactly these records, in this order,
//!   and closed the recording (nothing was cut off, dropped, inserted or altered since);
//!   each seal also says how many envelopes of each author it covers and where each
//!   author's chain stands, so an author can compare it with its own log;
//! - with `--room` and `--recorder-key` pinned: that it is this room, sealed by this
//!   recorder. Unpinned, the room and the recorder key are whatever the file says: anyone
//!   who can write a file can make one that passes under a key of their own (the key must
//!   be an admitted member of the room, so: any member, or today anyone holding a leaked
//!   grant).
//!
//! What it cannot prove: that the recorder saw everything (a recorder that was not sent an
//! author's envelopes records without them), nor anything against the holder of the
//! recorder key, who can drop an author and reseal. Only the authors' own chain heads
//! (their logs, or another recorder's file) show that.

use std::collections::BTreeMap;

use arena_core::{Ledger, PeerKey, Role, RoomId};
use serde::Serialize;

use crate::recording::{AuthorCount, Kind, Record, RecordingFile, Seal, Tally};

/// Where a recording first stops being trustworthy.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Break {
    /// The record, from 0; `None` for the header.
    pub record: Option<usize>,
    /// Its byte offset in the file.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

/// What a reader expects: the room and the recorder key, as hex it got from elsewhere (the
/// room's invite, the recorder's operator). `None` trusts what the file says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pins {
    /// The room the recording must be of.
    pub room: Option<RoomId>,
    /// The key that must have sealed it.
    pub recorder: Option<PeerKey>,
}

/// The last valid seal.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LastSeal {
    /// Its number, from 1.
    pub number: u32,
    /// When it was written, unix milliseconds.
    pub at_ms: u64,
    /// Records it covers, itself included.
    pub records: usize,
    /// Whether it closed the recording.
    pub closing: bool,
    /// Its per-author counts.
    pub authors: Vec<AuthorCount>,
}

/// A stock client's envelopes, signed by a node under the client's delegation.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StockWriter {
    /// The node that signed them (the last one, if several did).
    pub node: PeerKey,
    /// The role of the client's grant: what every replica held them to.
    pub role: Role,
    /// The grant's label (its invite key's first bytes).
    pub grant: String,
    /// How many envelopes.
    pub envelopes: usize,
}

/// What [`verify`] found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The room the file names.
    pub room: RoomId,
    /// The recorder key the file names.
    pub recorder: PeerKey,
    /// Whether the room was pinned (and matched, unless there is a break).
    pub room_pinned: bool,
    /// Whether the recorder key was pinned.
    pub recorder_pinned: bool,
    /// Records checked (up to the first break).
    pub records: usize,
    /// Envelopes whose signature, chain and rights checked out.
    pub envelopes: usize,
    /// Admissions checked.
    pub admissions: usize,
    /// Revocations checked (a host's or the node's; applied to what follows).
    pub revocations: usize,
    /// Recorder seals checked.
    pub seals: usize,
    /// The last seal that checked out: what the recorder vouches for.
    pub last_seal: Option<LastSeal>,
    /// Records after it (chained, signed by their authors, not vouched for by the recorder).
    pub unsealed: usize,
    /// Bytes after the last complete record: offset and length.
    pub torn_tail: Option<(usize, usize)>,
    /// Members by key: name and role (from their admissions).
    pub members: BTreeMap<PeerKey, (String, Role)>,
    /// Stock clients' delegations checked.
    pub delegations: usize,
    /// Media files of the call whose size and SHA-256 match their sealed records.
    pub media: usize,
    /// What nodes signed for stock clients, by the delegation's invite key: "via node, as
    /// candidate".
    pub stock: BTreeMap<PeerKey, StockWriter>,
    /// The first break, if any.
    pub first_break: Option<Break>,
}

impl VerifyReport {
    /// Whether the recording ends with the recorder's closing seal.
    pub fn complete(&self) -> bool {
        self.unsealed == 0 && self.torn_tail.is_none() && self.last_seal.as_ref().is_some_and(|s| s.closing)
    }

    /// Whether it verified completely: no break, and closed by the recorder.
    pub fn ok(&self) -> bool {
        self.first_break.is_none() && self.complete()
    }

    /// Whether it passes: [`VerifyReport::ok`], or with `allow_incomplete` no break and at
    /// least one seal (what the recorder vouched for before it stopped).
    pub fn passes(&self, allow_incomplete: bool) -> bool {
        self.ok() || (allow_incomplete && self.first_break.is_none() && self.last_seal.is_some())
    }

    /// Why it does not pass, in one line (`None` when it is [`VerifyReport::ok`]).
    pub fn problem(&self) -> Option<String> {
        if let Some(b) = &self.first_break {
            return Some(match b.record {
                Some(r) => format!("broken at record {r} (byte {}): {}", b.offset, b.reason),
                None => b.reason.clone(),
            });
        }
        (!self.complete()).then(|| self.incomplete())
    }

    /// "incomplete: ends after seal N at <time> ..." for a recording with no closing seal.
    pub fn incomplete(&self) -> String {
        let mut s = match &self.last_seal {
            Some(l) => format!(
                "incomplete: ends after seal {} at {} without the recorder's closing seal",
                l.number,
                crate::time::format_ms(l.at_ms)
            ),
            None => "incomplete: not sealed by the recorder at all".to_owned(),
        };
        if self.unsealed > 0 {
            s.push_str(&format!(
                "; {} record(s) after it are not sealed (signed by their authors, but nothing says none were dropped)",
                self.unsealed
            ));
        }
        if let Some((offset, len)) = self.torn_tail {
            s.push_str(&format!("; {len} byte(s) of a record cut short at byte {offset}"));
        }
        s.push_str(": the recorder was stopped without closing it, or the file was cut");
        s
    }
}

/// Checks the header against `pins`, then every record: the record chain and the
/// recorder's seals (each seal's signature over the chain before it, its number, its record
/// count and its per-author counts and chain heads against what the file holds, the
/// recorder an admitted member), every admission (the room key's grant, the member's
/// signature), and every envelope against a fresh ledger (author admitted and allowed to
/// write, hash chain, own client ids, signature). Stops at the first break. Whether the
/// recording is complete (ends with a closing seal) is in the report.
pub fn verify(file: &RecordingFile, pins: &Pins) -> VerifyReport {
    let room = file.header.room;
    let recorder = file.header.recorder;
    let mut rep = VerifyReport {
        room,
        recorder,
        room_pinned: pins.room.is_some(),
        recorder_pinned: pins.recorder.is_some(),
        records: 0,
        envelopes: 0,
        admissions: 0,
        revocations: 0,
        seals: 0,
        last_seal: None,
        unsealed: 0,
        torn_tail: file.torn_tail,
        members: BTreeMap::new(),
        delegations: 0,
        media: 0,
        stock: BTreeMap::new(),
        first_break: None,
    };
    let header_break = match (pins.room, pins.recorder) {
        (Some(want), _) if want != room => Some(format!("recorded in room {room}, not the pinned room {want}")),
        (_, Some(want)) if want != recorder => Some(format!(
            "sealed by recorder key {recorder}, not the pinned recorder key {want}: another key made or \
             resealed this recording"
        )),
        _ => None,
    };
    if let Some(reason) = header_break {
        rep.first_break = Some(Break { record: None, offset: 0, reason });
        return rep;
    }
    let mut ledger = Ledger::new(room);
    let mut tally = Tally::default();
    for r in &file.records {
        let fail = |reason: String| Some(Break { record: Some(r.index), offset: r.offset, reason });
        let problem = match r.decode(room) {
            Err(e) => fail(format!("undecodable: {e}")),
            Ok(Record::Admission { admission, .. }) => match ledger.admit(&admission, None) {
                Ok(_) => {
                    rep.admissions += 1;
                    // A member admitted twice keeps its strongest role, as in the ledger.
                    if let Some(m) = ledger.member(&admission.member) {
                        rep.members.insert(admission.member, (m.name.clone(), m.role));
                    }
                    None
                }
                Err(e) => fail(format!("admission of {}: {e}", admission.member)),
            },
            Ok(Record::Envelope { envelope, .. }) => {
                match ledger.check(&envelope, None).and_then(|c| ledger.verify_one(&envelope, &c).map(|()| c)) {
                    Ok(c) => match envelope.via.map(|via| (via, ledger.delegation(&via).cloned())) {
                        // A node's envelope for a stock client names a delegation stored
                        // before it (a replica applies it only once it holds it).
                        Some((via, None)) => fail(format!(
                            "envelope {} #{}: names delegation {via}, which the recording does not hold before it",
                            envelope.author, envelope.seq
                        )),
                        via => {
                            if let Some((key, Some(d))) = via {
                                let w = rep.stock.entry(key).or_insert_with(|| StockWriter {
                                    node: envelope.author,
                                    role: d.grant.role,
                                    grant: d.grant.label(),
                                    envelopes: 0,
                                });
                                w.node = envelope.author;
                                w.envelopes += 1;
                            }
                            ledger.record(&envelope, &c);
                            tally.envelope(&envelope, c.hash());
                            rep.envelopes += 1;
                            None
                        }
                    },
                    Err(e) => fail(format!("envelope {} #{}: {e}", envelope.author, envelope.seq)),
                }
            }
            Ok(Record::Seal(seal)) => match check_seal(file, r.index, &seal, &rep, &tally, &ledger) {
                Ok(()) => {
                    rep.seals += 1;
                    rep.unsealed = 0;
                    rep.last_seal = Some(LastSeal {
                        number: seal.number,
                        at_ms: seal.at_ms,
                        records: r.index + 1,
                        closing: seal.closing,
                        authors: seal.authors,
                    });
                    None
                }
                Err(reason) => fail(reason),
            },
            // A removed member's envelopes from the seq it names on are refused by the
            // ledger from here on (an honest recorder never records one).
            Ok(Record::Revocation { revocation, .. }) => match ledger.revoke(&revocation) {
                Ok(_) => {
                    rep.revocations += 1;
                    None
                }
                Err(e) => fail(format!("revocation of {}: {e}", revocation.target)),
            },
            Ok(Record::Awareness { .. }) => None,
            // The file beside the recording must be the one sealed, byte for byte.
            Ok(Record::Media { file: m, .. }) => match m.check(file.path.parent().unwrap_or(std::path::Path::new(".")))
            {
                Ok(()) => {
                    rep.media += 1;
                    None
                }
                Err(e) => fail(e),
            },
            Ok(Record::Delegation { delegation, .. }) => match ledger.delegate(&delegation, None) {
                Ok(_) => {
                    rep.delegations += 1;
                    None
                }
                Err(e) => fail(format!("delegation of grant {}: {e}", delegation.grant.label())),
            },
        };
        let problem = problem.or_else(|| {
            (!r.chain_ok).then(|| Break {
                record: Some(r.index),
                offset: r.offset,
                reason: "record chain hash mismatch: the record was altered".into(),
            })
        });
        if let Some(b) = problem {
            rep.first_break = Some(b);
            return rep;
        }
        tally.record();
        rep.records += 1;
        if r.kind != Kind::Seal as u8 {
            rep.unsealed += 1;
        }
    }
    rep
}

/// One seal against what the file holds before it.
fn check_seal(
    file: &RecordingFile,
    index: usize,
    seal: &Seal,
    rep: &VerifyReport,
    tally: &Tally,
    ledger: &Ledger,
) -> Result<(), String> {
    let n = seal.number;
    let want = rep.seals as u32 + 1;
    if n != want {
        return Err(format!("seal {n} where seal {want} belongs: seals were dropped or inserted"));
    }
    if seal.records != index as u64 {
        return Err(format!(
            "seal {n} was made after {} records but stands after {index}: records were dropped or inserted",
            seal.records
        ));
    }
    if let Some(prev) = &rep.last_seal {
        if seal.at_ms < prev.at_ms {
            return Err(format!("seal {n} is dated before seal {}", prev.number));
        }
    }
    let holds = tally.authors();
    if seal.authors != holds {
        return Err(format!(
            "seal {n} vouches for {}; the recording holds {}: envelopes were dropped or added",
            describe(&seal.authors),
            describe(&holds)
        ));
    }
    if ledger.member(&file.header.recorder).is_none() {
        return Err(format!(
            "seal {n} is by recorder key {}, which was never admitted to the room",
            file.header.recorder
        ));
    }
    if !file.seal_ok(index, seal) {
        return Err(format!(
            "seal {n} does not verify against recorder key {}: the records before it were changed, or it was \
             made with another key",
            file.header.recorder
        ));
    }
    Ok(())
}

fn describe(authors: &[AuthorCount]) -> String {
    if authors.is_empty() {
        return "no envelopes".into();
    }
    authors
        .iter()
        .map(|a| {
            format!("{}: {} envelope(s) up to #{}", &a.author.to_hex()[..8], a.envelopes, a.next_seq.saturating_sub(1))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
