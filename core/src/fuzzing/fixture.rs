//! The populated room every check of arena-core's fuzz targets works against, built once.

use std::sync::OnceLock;

use crate::error::Result;
use crate::grant::{Admission, Invite, Role, RoomId, FLAG_PROXY};
use crate::identity::{Identity, PeerKey};
use crate::ledger::ChainHead;
use crate::records::{Meta, RunRecord, RunStatus, VersionCause};
use crate::room::{Room, RoomConfig};
use crate::store::{MemoryStore, Store};
use crate::sync::wire::Wire;
use crate::Envelope;

/// The fixture's clock, unix milliseconds.
pub(crate) const T0: u64 = 1_700_000_000_000;
/// Grants last long past any clock the checks use.
const EXPIRY_S: u64 = T0 / 1000 + 10 * 365 * 86_400;

/// A member that writes: the host, the candidate or the room's node.
pub(crate) struct Writer {
    pub(crate) id: Identity,
    /// Where its chain stands after the base log.
    pub(crate) head: ChainHead,
}

/// A room with history in every root: the host's metadata and code, the candidate's edits
/// (emoji and all), a deletion across both, votes, a run and an analysis by the room's node,
/// a version.
pub(crate) struct Fixture {
    pub(crate) room_key: Identity,
    pub(crate) room: RoomId,
    /// Host, candidate, node.
    pub(crate) writers: [Writer; 3],
    pub(crate) admissions: Vec<Admission>,
    /// The host's log: every envelope, in an order a replica applies them.
    pub(crate) base: Vec<Envelope>,
    /// The populated document's state (v1).
    pub(crate) state: Vec<u8>,
}

pub(crate) fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    // The fixture is the fuzzers' own input, not a peer's: a failure here is a harness bug.
    #[allow(clippy::expect_used, reason = "the harness's own fixture")]
    FIXTURE.get_or_init(|| build().expect("the fuzz fixture builds").0)
}

/// Every replica answers every other's `Want` until nothing moves.
fn sync(rooms: &mut [Room<MemoryStore>]) -> Result<()> {
    for i in 0..rooms.len() {
        for j in 0..rooms.len() {
            if i == j {
                continue;
            }
            let Wire::Want(have) = rooms[i].want() else { continue };
            for msg in rooms[j].answer(&have)? {
                rooms[i].handle(msg, T0)?;
            }
        }
    }
    Ok(())
}

/// The fixture, and the replicas that wrote it (host, candidate, node), up to date: seeds
/// are made by editing them further.
pub(crate) fn build() -> Result<(Fixture, Vec<Room<MemoryStore>>)> {
    let room_key = Identity::from_passphrase("fuzz/room");
    let meta = Meta { language: "python".into(), title: "fuzz".into(), ..Meta::default() };
    let host = Room::create(&room_key, Identity::from_passphrase("fuzz/host"), 0, MemoryStore::new(), meta, T0)?;
    let room = host.id();
    let mut cand = Room::open(
        room,
        Identity::from_passphrase("fuzz/candidate"),
        0,
        MemoryStore::new(),
        RoomConfig::default(),
        T0,
    )?;
    let token = Invite::issue(&room_key, Role::Candidate, EXPIRY_S, 0, 1).to_token();
    cand.join(&token, "Ada", T0)?;
    let node_id = Identity::from_passphrase("fuzz/node");
    let invite = Invite::bound(&room_key, node_id.clone(), Role::Host, EXPIRY_S, FLAG_PROXY, 2);
    let node_adm = Admission::sign(&node_id, &invite, "node", T0);
    let mut node = Room::open(room, node_id, 0, MemoryStore::new(), RoomConfig::default(), T0)?;
    node.admit(&node_adm, None)?;
    let mut rooms = vec![host, cand, node];
    let admissions: Vec<Admission> = rooms.iter().flat_map(|r| r.ledger().admissions()).collect();
    for r in &mut rooms {
        for a in &admissions {
            r.admit(a, None)?;
        }
    }
    sync(&mut rooms)?;
    let [h, c, n] = [0, 1, 2];
    rooms[h].edit(T0 + 1, |e| e.splice_code(0, 0, "def add(a, b):\n    return a + b\n"))?;
    sync(&mut rooms)?;
    rooms[c].edit(T0 + 2, |e| e.splice_code(4, 3, "sum"))?;
    rooms[c].edit(T0 + 3, |e| e.splice_code(27, 0, "  # héllo 😀 日本"))?;
    sync(&mut rooms)?;
    rooms[h].edit(T0 + 4, |e| e.splice_code(20, 12, ""))?;
    rooms[h].edit(T0 + 5, |e| e.set_meta("question", &serde_json::json!("Add two numbers.")))?;
    rooms[c].vote(true, T0 + 6)?;
    rooms[h].vote(true, T0 + 6)?;
    sync(&mut rooms)?;
    let run = RunRecord {
        id: "run-1".into(),
        by: rooms[c].identity().public().to_hex(),
        language: "python".into(),
        status: RunStatus::Finished,
        stdout: "3\n".into(),
        stderr: String::new(),
        exit_code: Some(0),
        cpu_ms: 12,
        wall_ms: 15,
        at: T0 + 7,
    };
    rooms[n].edit(T0 + 7, |e| e.push_run(&run))?;
    let host_key = rooms[h].identity().public();
    rooms[n].complete_round(&host_key, "offline", vec!["looks fine".into()], T0 + 8)?;
    sync(&mut rooms)?;
    rooms[h].create_version("first", VersionCause::Manual, T0 + 9)?;
    sync(&mut rooms)?;
    let base: Vec<Envelope> = rooms[h].store().log_range(0, u64::MAX)?.into_iter().map(|e| e.envelope).collect();
    let writer = |r: &Room<MemoryStore>| Writer { id: r.identity().clone(), head: rooms[h].ledger().head(&key(r)) };
    let writers = [writer(&rooms[h]), writer(&rooms[c]), writer(&rooms[n])];
    let state = rooms[h].doc().encode_state();
    Ok((Fixture { room_key, room, writers, admissions, base, state }, rooms))
}

fn key(r: &Room<MemoryStore>) -> PeerKey {
    r.identity().public()
}

impl Fixture {
    /// A replica that knows every member and holds nothing else.
    pub(crate) fn empty_replica(&self, me: &str) -> Result<Room<MemoryStore>> {
        let mut store = MemoryStore::new();
        for a in &self.admissions {
            store.put_admission(a)?;
        }
        Room::open(self.room, Identity::from_passphrase(me), 0, store, RoomConfig::default(), T0)
    }

    /// A replica that holds the whole base log (loaded from its store: nothing re-verified).
    pub(crate) fn populated_replica(&self, me: &str) -> Result<Room<MemoryStore>> {
        let mut store = MemoryStore::new();
        for a in &self.admissions {
            store.put_admission(a)?;
        }
        for e in &self.base {
            store.append(e, T0)?;
        }
        Room::open(self.room, Identity::from_passphrase(me), 0, store, RoomConfig::default(), T0)
    }
}
