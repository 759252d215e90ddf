//! The room's write rules, checked by every replica from the decoded update: which root (and
//! map key) each struct an envelope inserts or deletes lands in, and whether its author may
//! write there.
//!
//! | root | who may write |
//! |---|---|
//! | `code` | host, candidate (and the node, a host, for stock clients) |
//! | `meta` | host |
//! | `participants` | a member, its own entry (key = its public key, hex) |
//! | `votes` | a member, its own vote |
//! | `analysis`, `runs` | the node's service identity (a grant with [`crate::FLAG_PROXY`]) |
//! | `versions` | host, candidate, node |
//! | anything else | nobody |
//!
//! Observers write nothing. Where a struct lands is what yrs will decide: the root named in
//! the struct, or else the place of its left origin, or else of its right origin. Origins are
//! looked up in [`Placements`] (every struct this replica integrated, as runs of ids), so a
//! struct placed by its neighbours is judged where it will really go. A struct whose origins
//! this replica does not hold yet, or a deletion of ids it does not hold, cannot be judged:
//! the envelope waits for its predecessors ([`Verdict::Wait`]) instead of being applied on
//! trust (yrs would keep it pending and integrate it later, unchecked).

use std::collections::{BTreeMap, HashMap};

use crate::doc::strict::{Id, Place, Scan};
use crate::error::CoreError;
use crate::grant::Role;

/// The roots of the room document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Root {
    Code,
    Meta,
    Participants,
    Votes,
    Analysis,
    Runs,
    Versions,
    /// A root the room's schema does not have.
    Other,
}

impl Root {
    fn from_name(name: &str) -> Self {
        match name {
            "code" => Root::Code,
            "meta" => Root::Meta,
            "participants" => Root::Participants,
            "votes" => Root::Votes,
            "analysis" => Root::Analysis,
            "runs" => Root::Runs,
            "versions" => Root::Versions,
            _ => Root::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Root::Code => "code",
            Root::Meta => "meta",
            Root::Participants => "participants",
            Root::Votes => "votes",
            Root::Analysis => "analysis",
            Root::Runs => "runs",
            Root::Versions => "versions",
            Root::Other => "a root outside the room's schema",
        }
    }
}

/// Where a run of structs sits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// In a root, under a map key for map roots.
    In(Root, Option<Box<str>>),
    /// Garbage collected, or an item yrs could not give a parent: no content anywhere.
    Nowhere,
}

/// Who is writing, as the rules see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Writer<'a> {
    pub(crate) role: Role,
    /// The room's service identity (the node's grant).
    pub(crate) node: bool,
    /// The member's key, hex: the only key of `participants` and `votes` it may write.
    /// None for a stock client the node signs for.
    pub(crate) key: Option<&'a str>,
}

impl Writer<'_> {
    fn may(&self, slot: &Slot) -> bool {
        let (root, key) = match slot {
            Slot::Nowhere => return self.role.may_write(),
            Slot::In(root, key) => (*root, key.as_deref()),
        };
        let own = key.is_some() && key == self.key;
        match (self.role, root) {
            (Role::Observer, _) | (_, Root::Other) => false,
            (_, Root::Code) => true,
            (Role::Host, Root::Meta) => true,
            (_, Root::Meta) => false,
            (_, Root::Participants | Root::Votes) => own,
            (_, Root::Analysis | Root::Runs) => self.node,
            (_, Root::Versions) => true,
        }
    }
}

/// A run of structs and where it sits: (first id, length, slot).
pub(crate) type Placed = (Id, u32, Slot);

/// What the rules say about one update.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Allowed; the placements to record once it is applied.
    Allowed(Vec<Placed>),
    /// It depends on structs this replica does not hold yet.
    Wait,
}

/// Every integrated struct's slot, as runs of ids per client (one run per client for plain
/// typing).
#[derive(Debug, Default)]
pub(crate) struct Placements {
    /// client -> start clock -> (end clock, slot index).
    runs: HashMap<u64, BTreeMap<u32, (u32, u32)>>,
    slots: Vec<Slot>,
    slot_ids: HashMap<Slot, u32>,
}

impl Placements {
    /// The slot of the struct holding `id`, if this replica has it.
    fn get(&self, id: Id) -> Option<&Slot> {
        let runs = self.runs.get(&id.0)?;
        let (_, (end, slot)) = runs.range(..=id.1).next_back()?;
        (id.1 < *end).then(|| &self.slots[*slot as usize])
    }

    /// Records where the structs `[start, start + len)` of `client` sit.
    fn put(&mut self, (client, start): Id, len: u32, slot: Slot) {
        let next = self.slots.len() as u32;
        let idx = *self.slot_ids.entry(slot.clone()).or_insert_with(|| {
            self.slots.push(slot);
            next
        });
        let end = start.saturating_add(len);
        let runs = self.runs.entry(client).or_default();
        // A struct integrated twice (a duplicate in an update) changes nothing.
        if let Some((_, (e, _))) = runs.range(..=start).next_back() {
            if *e > start {
                return;
            }
        }
        if let Some((&s, &(e, i))) = runs.range(..start).next_back() {
            if e == start && i == idx {
                runs.insert(s, (end, idx));
                return;
            }
        }
        runs.insert(start, (end, idx));
    }

    /// Records a checked update's placements (see [`Placements::judge`]).
    pub(crate) fn record(&mut self, placed: Vec<Placed>) {
        for (id, len, slot) in placed {
            self.put(id, len, slot);
        }
    }

    /// Records where an update from a trusted source (our own store, our own edits, a signed
    /// checkpoint) puts its structs, without judging it. Structs whose origins are unknown
    /// here are skipped: yrs keeps them pending too.
    pub(crate) fn learn(&mut self, scan: &Scan) {
        let (placed, _) = self.place(scan);
        self.record(placed.into_iter().map(|p| (p.0, p.1, p.2)).collect());
    }

    /// Where each struct of `scan` goes, and whether every one could be placed.
    fn place(&self, scan: &Scan) -> (Vec<Placed>, bool) {
        let mut placed: Vec<Placed> = Vec::with_capacity(scan.blocks.len());
        // This update's own structs, by client and start clock: origins may sit in them.
        let mut own: HashMap<u64, BTreeMap<u32, usize>> = HashMap::new();
        let push =
            |placed: &mut Vec<Placed>, own: &mut HashMap<u64, BTreeMap<u32, usize>>, id: Id, len: u32, slot: Slot| {
                own.entry(id.0).or_default().insert(id.1, placed.len());
                placed.push((id, len, slot));
            };
        let lookup = |placed: &[Placed], own: &HashMap<u64, BTreeMap<u32, usize>>, id: Id| -> Option<Slot> {
            let hit = own.get(&id.0).and_then(|m| m.range(..=id.1).next_back()).map(|(_, &i)| &placed[i]);
            match hit {
                Some(((_, s), l, slot)) if id.1 < s.saturating_add(*l) => Some(slot.clone()),
                _ => self.get(id).cloned(),
            }
        };
        let mut todo: Vec<usize> = Vec::new();
        for (i, b) in scan.blocks.iter().enumerate() {
            let id = (b.client, b.clock);
            match &b.place {
                Place::Root(name, key) => {
                    let root = Root::from_name(name);
                    // Only map roots have keys; a key on a sequence root is still that root.
                    let key =
                        matches!(root, Root::Meta | Root::Participants | Root::Votes).then(|| key.clone()).flatten();
                    push(&mut placed, &mut own, id, b.len, Slot::In(root, key));
                }
                Place::Gc => push(&mut placed, &mut own, id, b.len, Slot::Nowhere),
                Place::Skip => {}
                Place::After(..) => todo.push(i),
            }
        }
        // Origins may sit in structs of this update listed later (another client's): place
        // what can be placed until nothing moves.
        loop {
            let before = todo.len();
            let mut left_over = Vec::new();
            for &i in &todo {
                let b = &scan.blocks[i];
                let Place::After(left, right) = &b.place else { continue };
                let l = left.map(|id| lookup(&placed, &own, id));
                let r = right.map(|id| lookup(&placed, &own, id));
                // yrs takes the left origin's parent unless it has none, then the right's.
                let slot = match (l, r) {
                    (Some(Some(Slot::In(root, key))), _) => Some(Slot::In(root, key)),
                    (Some(None), _) | (_, Some(None)) => None,
                    (_, Some(Some(Slot::In(root, key)))) => Some(Slot::In(root, key)),
                    _ => Some(Slot::Nowhere),
                };
                match slot {
                    Some(s) => push(&mut placed, &mut own, (b.client, b.clock), b.len, s),
                    None => left_over.push(i),
                }
            }
            todo = left_over;
            if todo.is_empty() {
                return (placed, true);
            }
            if todo.len() == before {
                return (placed, false);
            }
        }
    }

    /// Judges an update by `who`: where every struct goes and what every deletion removes.
    /// `Err` says which rule it broke.
    pub(crate) fn judge(&self, scan: &Scan, who: Writer<'_>) -> Result<Verdict, CoreError> {
        let (placed, complete) = self.place(scan);
        if !complete {
            return Ok(Verdict::Wait);
        }
        for (_, _, slot) in &placed {
            if !who.may(slot) {
                return Err(refusal(&who, slot, "write"));
            }
        }
        for &(client, start, len) in &scan.deletes {
            let end = start.saturating_add(len);
            let mut at = start;
            while at < end {
                let (slot, run_end) = match self.run_at((client, at)) {
                    Some(x) => x,
                    None => {
                        match placed.iter().find(|((c, s), l, _)| *c == client && *s <= at && at < s.saturating_add(*l))
                        {
                            Some(((_, s), l, slot)) => (slot.clone(), s.saturating_add(*l)),
                            None => return Ok(Verdict::Wait),
                        }
                    }
                };
                if !who.may(&slot) {
                    return Err(refusal(&who, &slot, "delete"));
                }
                at = run_end.min(end).max(at + 1);
            }
        }
        Ok(Verdict::Allowed(placed))
    }

    /// The slot of `id` and the end of the run holding it.
    fn run_at(&self, id: Id) -> Option<(Slot, u32)> {
        let runs = self.runs.get(&id.0)?;
        let (_, (end, slot)) = runs.range(..=id.1).next_back()?;
        (id.1 < *end).then(|| (self.slots[*slot as usize].clone(), *end))
    }
}

fn refusal(who: &Writer<'_>, slot: &Slot, what: &str) -> CoreError {
    let whom = if who.node { "the node".to_owned() } else { format!("a {}", who.role) };
    let place = match slot {
        Slot::In(root, Some(key)) => format!("{}[{}]", root.name(), key.chars().take(16).collect::<String>()),
        Slot::In(root, None) => root.name().to_owned(),
        Slot::Nowhere => "the document".to_owned(),
    };
    CoreError::NotAllowed(format!("{whom} may not {what} {place}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::strict::scan_update;
    use crate::doc::RoomDoc;
    use crate::records::VoteRecord;

    fn writer(role: Role, key: &str) -> Writer<'_> {
        Writer { role, node: false, key: Some(key) }
    }

    #[test]
    fn places_follow_origins() {
        let doc = RoomDoc::new(1);
        let mut p = Placements::default();
        let (_, u) = doc.edit(|e| e.splice_code(0, 0, "ab"));
        p.learn(&scan_update(&u).unwrap());
        let (_, u) = doc.edit(|e| e.set_vote("k1", &VoteRecord { round: 0, enabled: true, signature: String::new() }));
        p.learn(&scan_update(&u).unwrap());
        // Typing after "ab" is placed by its origin: code, allowed for a candidate.
        let (_, u) = doc.edit(|e| e.splice_code(2, 0, "c"));
        let scan = scan_update(&u).unwrap();
        assert!(matches!(scan.blocks[0].place, Place::After(Some(_), _)));
        assert!(matches!(p.judge(&scan, writer(Role::Candidate, "k2")), Ok(Verdict::Allowed(_))));
        assert!(p.judge(&scan, writer(Role::Observer, "k2")).is_err());
        p.learn(&scan);
        // Overwriting k1's vote (a new item whose origin is the old one, and its deletion).
        let (_, u) = doc.edit(|e| e.set_vote("k1", &VoteRecord { round: 0, enabled: false, signature: String::new() }));
        let scan = scan_update(&u).unwrap();
        assert!(matches!(p.judge(&scan, writer(Role::Candidate, "k1")), Ok(Verdict::Allowed(_))));
        assert!(p.judge(&scan, writer(Role::Host, "k2")).is_err());
        // An update that depends on structs this replica lacks waits.
        let other = RoomDoc::new(2);
        other.apply_v1(&doc.encode_state()).unwrap();
        let (_, u) = other.edit(|e| e.splice_code(0, 0, "x"));
        let (_, u2) = other.edit(|e| e.splice_code(1, 0, "y"));
        let fresh = Placements::default();
        assert!(matches!(fresh.judge(&scan_update(&u2).unwrap(), writer(Role::Host, "h")), Ok(Verdict::Wait)));
        let _ = u;
    }

    #[test]
    fn runs_merge() {
        let mut p = Placements::default();
        let code = Slot::In(Root::Code, None);
        p.put((7, 0), 3, code.clone());
        p.put((7, 3), 2, code.clone());
        p.put((7, 5), 1, Slot::In(Root::Votes, Some("k".into())));
        assert_eq!(p.runs[&7].len(), 2);
        assert_eq!(p.get((7, 4)), Some(&code));
        assert_eq!(p.get((7, 6)), None);
        assert!(matches!(p.get((7, 5)), Some(Slot::In(Root::Votes, _))));
    }
}
