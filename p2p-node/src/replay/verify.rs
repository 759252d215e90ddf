//! `arena-node verify`: the full audit of a recording from its first record.

use arena_core::Ledger;
use serde::Serialize;

use crate::recording::{Kind, Record, RecordingFile};

/// Where a recording first stops being trustworthy.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Break {
    /// The record, from 0.
    pub record: usize,
    /// Its byte offset in the file.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Records checked (up to the first break).
    pub records: usize,
    /// Envelopes whose signature, chain and rights checked out.
    pub envelopes: usize,
    /// Admissions checked.
    pub admissions: usize,
    /// Recorder seals checked.
    pub seals: usize,
    /// Records after the last seal (chained, not yet signed by the recorder).
    pub unsealed: usize,
    /// The first break, if any.
    pub first_break: Option<Break>,
}

impl VerifyReport {
    /// Whether the recording verified completely.
    pub fn ok(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Checks every record: the record chain and the recorder's seals (nothing was altered,
/// dropped or reordered), every admission (the room key's grant, the member's signature),
/// and every envelope against a fresh ledger (author admitted and allowed to write,
/// hash chain, own client ids, signature). Stops at the first break.
pub fn verify(file: &RecordingFile) -> VerifyReport {
    let room = file.header.room;
    let mut ledger = Ledger::new(room);
    let mut rep = VerifyReport::default();
    for r in &file.records {
        let fail = |reason: String| Some(Break { record: r.index, offset: r.offset, reason });
        let problem = match r.decode(room) {
            Err(e) => fail(format!("undecodable: {e}")),
            Ok(Record::Admission { admission, .. }) => match ledger.admit(&admission, None) {
                Ok(_) => {
                    rep.admissions += 1;
                    None
                }
                Err(e) => fail(format!("admission of {}: {e}", admission.member)),
            },
            Ok(Record::Envelope { envelope, .. }) => {
                match ledger.check(&envelope, None).and_then(|c| ledger.verify_one(&envelope, &c).map(|()| c)) {
                    Ok(c) => {
                        ledger.record(&envelope, &c);
                        rep.envelopes += 1;
                        None
                    }
                    Err(e) => fail(format!("envelope {} #{}: {e}", envelope.author, envelope.seq)),
                }
            }
            Ok(Record::Seal { at_ms, signature }) => {
                if file.seal_ok(r.index, at_ms, &signature) {
                    rep.seals += 1;
                    rep.unsealed = 0;
                    None
                } else {
                    fail("the recorder's seal does not verify".into())
                }
            }
            Ok(Record::Awareness { .. }) => None,
        };
        let problem = problem.or_else(|| {
            (!r.chain_ok).then(|| Break {
                record: r.index,
                offset: r.offset,
                reason: "record chain hash mismatch: the record was altered".into(),
            })
        });
        if let Some(b) = problem {
            rep.first_break = Some(b);
            return rep;
        }
        rep.records += 1;
        if r.kind != Kind::Seal as u8 {
            rep.unsealed += 1;
        }
    }
    if let Some((offset, len)) = file.torn_tail {
        rep.first_break = Some(Break {
            record: file.records.len(),
            offset,
            reason: format!("incomplete last record ({len} bytes): a write cut short, or a damaged length"),
        });
    }
    rep
}
