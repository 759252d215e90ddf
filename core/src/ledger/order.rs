//! The order of every struct in the room's sequence roots (`code`, `analysis`, `runs`,
//! `versions` and the files' texts), deleted ones included, kept beside yrs's own list so that the write rules can
//! refuse an item whose left origin does not lie before its right origin.
//!
//! Such "crossed origins" are the one well-formed update yrs (like Yjs) cannot integrate
//! the same way everywhere: it scans right from the left origin for the right one, never
//! meets it, and where the item stops depends on what else the replica holds. Whether one id
//! lies before another is the same on every replica that holds both (items never move once
//! integrated), so refusing crossed origins is a verdict every replica reaches alike. yrs
//! 0.28 offers no public way to find an item by id or to compare two items' positions
//! (`StickyIndex` counts only what is not deleted, and ties among deleted items would make
//! the verdict depend on which deletions a replica has seen), so this module integrates
//! each struct with YATA's rule, as yrs does, into its own list of runs. A differential
//! test and the `update_gate` fuzz target compare it with yrs's text. See
//! `docs/decisions/crossed-origins.md`.

use std::collections::{HashMap, HashSet};

use crate::doc::strict::Id;

const NIL: u32 = u32::MAX;
/// The fixed sequence roots, by index in [`Order::heads`]; the files' texts follow them.
pub(crate) const LISTS: usize = 4;

/// A run of consecutive ids of one client, integrated one after the other, in one list.
#[derive(Clone, Debug)]
struct Node {
    client: u64,
    start: u32,
    len: u32,
    /// The left origin of the run's first id (every later id's is the id before it).
    origin: Option<Id>,
    right_origin: Option<Id>,
    left: u32,
    right: u32,
    list: u32,
}

/// An undo step of a judged update that is then refused.
#[derive(Clone, Copy, Debug)]
enum Undo {
    /// A node was pushed and linked.
    Insert,
    /// Node `.0`'s run grew from length `.1`.
    Extend(u32, u32),
    /// Node `.0` was split, its right part pushed.
    Split(u32),
}

/// Why a struct could not be put in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// An origin is not held here (yet).
    Unknown,
    /// The left origin does not lie before the right one (or they sit in different roots).
    Crossed,
}

/// Every sequence root's runs, in document order, deleted ones included.
#[derive(Debug)]
pub(crate) struct Order {
    nodes: Vec<Node>,
    /// The first node of each list ([`LISTS`] fixed ones, then one per file seen).
    heads: Vec<u32>,
    /// client -> (start clock, node), sorted by start.
    by_client: HashMap<u64, Vec<(u32, u32)>>,
    journal: Vec<Undo>,
    journaling: bool,
}

impl Default for Order {
    fn default() -> Self {
        Order {
            nodes: Vec::new(),
            heads: vec![NIL; LISTS],
            by_client: HashMap::new(),
            journal: Vec::new(),
            journaling: false,
        }
    }
}

impl Order {
    /// The node holding `id`.
    fn find(&self, (client, clock): Id) -> Option<u32> {
        let v = self.by_client.get(&client)?;
        let &(_, n) = v.get(v.partition_point(|e| e.0 <= clock).checked_sub(1)?)?;
        let node = &self.nodes[n as usize];
        (clock < node.start + node.len).then_some(n)
    }

    /// Whether this order holds `id`.
    pub(crate) fn holds(&self, id: Id) -> bool {
        self.find(id).is_some()
    }

    fn index_insert(&mut self, client: u64, start: u32, n: u32) {
        let v = self.by_client.entry(client).or_default();
        let at = v.partition_point(|e| e.0 < start);
        v.insert(at, (start, n));
    }

    fn index_remove(&mut self, client: u64, start: u32) {
        if let Some(v) = self.by_client.get_mut(&client) {
            if let Ok(at) = v.binary_search_by_key(&start, |e| e.0) {
                v.remove(at);
            }
            if v.is_empty() {
                self.by_client.remove(&client);
            }
        }
    }

    /// Splits node `n` at `clock` (inside it); returns the right part.
    fn split(&mut self, n: u32, clock: u32) -> u32 {
        let q = self.nodes.len() as u32;
        let node = &mut self.nodes[n as usize];
        let right_part = Node {
            client: node.client,
            start: clock,
            len: node.start + node.len - clock,
            origin: Some((node.client, clock - 1)),
            right_origin: node.right_origin,
            left: n,
            right: node.right,
            list: node.list,
        };
        node.len = clock - node.start;
        node.right = q;
        let (client, r) = (right_part.client, right_part.right);
        self.nodes.push(right_part);
        if r != NIL {
            self.nodes[r as usize].left = q;
        }
        self.index_insert(client, clock, q);
        if self.journaling {
            self.journal.push(Undo::Split(n));
        }
        q
    }

    /// The node ending with `id`, split there if needed.
    fn clean_end(&mut self, id: Id) -> Option<u32> {
        let n = self.find(id)?;
        let node = &self.nodes[n as usize];
        if id.1 + 1 < node.start + node.len {
            self.split(n, id.1 + 1);
        }
        Some(n)
    }

    /// The node starting with `id`, split there if needed.
    fn clean_start(&mut self, id: Id) -> Option<u32> {
        let n = self.find(id)?;
        let start = self.nodes[n as usize].start;
        Some(if id.1 > start { self.split(n, id.1) } else { n })
    }

    fn unlink(&mut self, q: u32) {
        let Node { left, right, list, .. } = self.nodes[q as usize];
        if left != NIL {
            self.nodes[left as usize].right = right;
        } else {
            self.heads[list as usize] = right;
        }
        if right != NIL {
            self.nodes[right as usize].left = left;
        }
    }

    /// Starts recording what [`Order::integrate`] changes, for [`Order::rollback`].
    pub(crate) fn begin(&mut self) {
        self.journal.clear();
        self.journaling = true;
    }

    /// Keeps everything integrated since [`Order::begin`].
    pub(crate) fn commit(&mut self) {
        self.journal.clear();
        self.journaling = false;
    }

    /// Undoes everything integrated since [`Order::begin`] (splits included).
    pub(crate) fn rollback(&mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Insert => {
                    let q = self.nodes.len() as u32 - 1;
                    self.unlink(q);
                    let Node { client, start, .. } = self.nodes[q as usize];
                    self.index_remove(client, start);
                    self.nodes.pop();
                }
                Undo::Extend(n, len) => self.nodes[n as usize].len = len,
                Undo::Split(n) => {
                    let q = self.nodes.len() as u32 - 1;
                    let Node { client, start, len, .. } = self.nodes[q as usize];
                    self.unlink(q);
                    self.index_remove(client, start);
                    self.nodes.pop();
                    self.nodes[n as usize].len += len;
                }
            }
        }
        self.journaling = false;
    }

    /// Integrates the run `[clock, clock + len)` of `client` with these origins into list
    /// `list` where yrs puts it. Ids held already are skipped (yrs trims them too). Refuses
    /// origins it does not hold, origins in another list, and a right origin that does not
    /// lie after the left one.
    pub(crate) fn integrate(
        &mut self,
        list: usize,
        (client, mut clock): Id,
        mut len: u32,
        mut origin: Option<Id>,
        right_origin: Option<Id>,
        check: bool,
    ) -> Result<(), Refused> {
        if self.heads.len() <= list {
            self.heads.resize(list + 1, NIL);
        }
        // The part held already.
        while len > 0 {
            let Some(n) = self.find((client, clock)) else { break };
            let node = &self.nodes[n as usize];
            let known = (node.start + node.len - clock).min(len);
            clock += known;
            len -= known;
            origin = Some((client, clock - 1));
        }
        if len == 0 {
            return Ok(());
        }
        // Split where the origins end and start, then look both up again: with crossed
        // origins the second split can cut the first one's node.
        if let Some(id) = origin {
            self.clean_end(id).ok_or(Refused::Unknown)?;
        }
        if let Some(id) = right_origin {
            self.clean_start(id).ok_or(Refused::Unknown)?;
        }
        let node_of = |id: Option<Id>| -> Result<u32, Refused> {
            let Some(id) = id else { return Ok(NIL) };
            let n = self.find(id).ok_or(Refused::Unknown)?;
            if check && self.nodes[n as usize].list as usize != list {
                return Err(Refused::Crossed);
            }
            Ok(n)
        };
        let left = node_of(origin)?;
        let right = node_of(right_origin)?;
        // The right origin must lie after the left one (and not be it). Unchecked for a
        // trusted source (our store, a signed checkpoint): integrated as yrs would.
        if check && left != NIL && right != NIL {
            let mut o = self.nodes[left as usize].right;
            while o != right {
                if o == NIL {
                    return Err(Refused::Crossed);
                }
                o = self.nodes[o as usize].right;
            }
        }
        // YATA's conflict resolution, as yrs 0.28's `Item::resolve_conflict`.
        let conflict = match (left, right) {
            (NIL, NIL) => true,
            (NIL, r) => self.nodes[r as usize].left != NIL,
            (l, r) => self.nodes[l as usize].right != r,
        };
        let mut new_left = left;
        if conflict {
            let mut o = if left != NIL { self.nodes[left as usize].right } else { self.heads[list] };
            let mut before: HashSet<u32> = HashSet::new();
            let mut conflicting: HashSet<u32> = HashSet::new();
            while o != NIL && o != right {
                before.insert(o);
                conflicting.insert(o);
                let node = &self.nodes[o as usize];
                if node.origin == origin {
                    if node.client < client {
                        new_left = o;
                        conflicting.clear();
                    } else if node.right_origin == right_origin {
                        break;
                    }
                } else if let Some(ol) = node.origin.and_then(|id| self.find(id)) {
                    if before.contains(&ol) {
                        if !conflicting.contains(&ol) {
                            new_left = o;
                            conflicting.clear();
                        }
                    } else {
                        break;
                    }
                } else {
                    break;
                }
                o = self.nodes[o as usize].right;
            }
        }
        // Typing on: the run right before it grows.
        if new_left != NIL {
            let l = &mut self.nodes[new_left as usize];
            if l.client == client
                && l.start + l.len == clock
                && origin == Some((client, clock - 1))
                && l.right_origin == right_origin
            {
                let old = l.len;
                l.len += len;
                if self.journaling {
                    self.journal.push(Undo::Extend(new_left, old));
                }
                return Ok(());
            }
        }
        let q = self.nodes.len() as u32;
        let next = if new_left != NIL {
            std::mem::replace(&mut self.nodes[new_left as usize].right, q)
        } else {
            std::mem::replace(&mut self.heads[list], q)
        };
        if next != NIL {
            self.nodes[next as usize].left = q;
        }
        self.nodes.push(Node {
            client,
            start: clock,
            len,
            origin,
            right_origin,
            left: new_left,
            right: next,
            list: list as u32,
        });
        self.index_insert(client, clock, q);
        if self.journaling {
            self.journal.push(Undo::Insert);
        }
        Ok(())
    }

    /// The ids of list `list` in order, as (client, clock) per id: for tests.
    #[cfg(test)]
    pub(crate) fn ids(&self, list: usize) -> Vec<Id> {
        let mut out = Vec::new();
        let mut n = self.heads.get(list).copied().unwrap_or(NIL);
        while n != NIL {
            let node = &self.nodes[n as usize];
            out.extend((node.start..node.start + node.len).map(|c| (node.client, c)));
            n = node.right;
        }
        out
    }
}
