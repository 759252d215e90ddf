//! A room's store with every call in the store's heap (see [`super::Heap::Store`]).

use arena_core::{Admission, Checkpoint, Delegation, Envelope, LogEntry, PeerKey, Result, Revocation, Store};

use super::{within, Heap};

/// `S` with each call made [`within`] the store's heap: what the store caches (sled's
/// leaves and values) and what it copies on each write stay out of the documents' pages
/// and out of the connections'.
#[derive(Debug)]
pub struct InStoreHeap<S>(pub S);

impl<S: Store> Store for InStoreHeap<S> {
    fn append(&mut self, envelope: &Envelope, received_ms: u64) -> Result<u64> {
        within(Heap::Store, || self.0.append(envelope, received_ms))
    }
    fn flush(&mut self) -> Result<()> {
        within(Heap::Store, || self.0.flush())
    }
    fn log_len(&self) -> u64 {
        within(Heap::Store, || self.0.log_len())
    }
    fn log_range(&self, from: u64, to: u64) -> Result<Vec<LogEntry>> {
        within(Heap::Store, || self.0.log_range(from, to))
    }
    fn author_envelopes(&self, author: &PeerKey, from_seq: u64, limit: usize) -> Result<Vec<Envelope>> {
        within(Heap::Store, || self.0.author_envelopes(author, from_seq, limit))
    }
    fn index_of(&self, author: &PeerKey, seq: u64) -> Result<Option<u64>> {
        within(Heap::Store, || self.0.index_of(author, seq))
    }
    fn put_admission(&mut self, admission: &Admission) -> Result<()> {
        within(Heap::Store, || self.0.put_admission(admission))
    }
    fn admissions(&self) -> Result<Vec<Admission>> {
        within(Heap::Store, || self.0.admissions())
    }
    fn put_checkpoint(&mut self, log_index: u64, checkpoint: &Checkpoint) -> Result<()> {
        within(Heap::Store, || self.0.put_checkpoint(log_index, checkpoint))
    }
    fn put_revocation(&mut self, revocation: &Revocation) -> Result<()> {
        within(Heap::Store, || self.0.put_revocation(revocation))
    }
    fn revocations(&self) -> Result<Vec<Revocation>> {
        within(Heap::Store, || self.0.revocations())
    }
    fn put_delegation(&mut self, delegation: &Delegation) -> Result<()> {
        within(Heap::Store, || self.0.put_delegation(delegation))
    }
    fn delegations(&self) -> Result<Vec<Delegation>> {
        within(Heap::Store, || self.0.delegations())
    }
    fn checkpoints(&self) -> Result<Vec<(u64, u64)>> {
        within(Heap::Store, || self.0.checkpoints())
    }
    fn checkpoint(&self, log_index: u64) -> Result<Option<Checkpoint>> {
        within(Heap::Store, || self.0.checkpoint(log_index))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use std::cell::RefCell;

    use arena_core::{Identity, MemoryStore, Role, Room, RoomConfig};

    use super::*;
    use crate::reclaim::current;

    /// A memory store that notes the heap each call ran in.
    #[derive(Default)]
    struct Spy {
        inner: MemoryStore,
        seen: RefCell<Vec<Heap>>,
    }

    impl Spy {
        fn saw(&self) {
            self.seen.borrow_mut().push(current());
        }
    }

    impl Store for Spy {
        fn append(&mut self, e: &Envelope, at: u64) -> Result<u64> {
            self.saw();
            self.inner.append(e, at)
        }
        fn flush(&mut self) -> Result<()> {
            self.saw();
            self.inner.flush()
        }
        fn log_len(&self) -> u64 {
            self.saw();
            self.inner.log_len()
        }
        fn log_range(&self, from: u64, to: u64) -> Result<Vec<LogEntry>> {
            self.saw();
            self.inner.log_range(from, to)
        }
        fn author_envelopes(&self, a: &PeerKey, from: u64, limit: usize) -> Result<Vec<Envelope>> {
            self.saw();
            self.inner.author_envelopes(a, from, limit)
        }
        fn index_of(&self, a: &PeerKey, seq: u64) -> Result<Option<u64>> {
            self.saw();
            self.inner.index_of(a, seq)
        }
        fn put_admission(&mut self, a: &Admission) -> Result<()> {
            self.saw();
            self.inner.put_admission(a)
        }
        fn admissions(&self) -> Result<Vec<Admission>> {
            self.saw();
            self.inner.admissions()
        }
        fn put_checkpoint(&mut self, i: u64, c: &Checkpoint) -> Result<()> {
            self.saw();
            self.inner.put_checkpoint(i, c)
        }
        fn checkpoints(&self) -> Result<Vec<(u64, u64)>> {
            self.saw();
            self.inner.checkpoints()
        }
        fn checkpoint(&self, i: u64) -> Result<Option<Checkpoint>> {
            self.saw();
            self.inner.checkpoint(i)
        }
    }

    #[test]
    fn every_call_a_room_makes_on_its_store_runs_in_the_stores_heap() {
        let (room_key, host) = (Identity::from_seed([3; 32]), Identity::from_seed([4; 32]));
        let mut room =
            Room::open(room_key.public(), host.clone(), 0, InStoreHeap(Spy::default()), RoomConfig::default(), 1_000)
                .unwrap();
        let invite = arena_core::Invite::bound(&room_key, host.clone(), Role::Host, 10_000, 0, 1_000);
        room.admit(&Admission::sign(&host, &invite, "host", 1_000), None).unwrap();
        room.edit(2_000, |e| e.set_meta_record(&arena_core::records::Meta { title: "t".into(), ..Default::default() }))
            .unwrap();
        room.flush().unwrap();
        // The room's own work (outside any scope here) is in the main heap; its store's
        // calls were each in the store's.
        assert_eq!(current(), Heap::Main);
        let seen = room.store().0.seen.borrow().clone();
        assert!(seen.len() >= 3, "the room stored an admission, an envelope and flushed: {seen:?}");
        assert!(seen.iter().all(|&h| h == Heap::Store), "{seen:?}");
    }
}
