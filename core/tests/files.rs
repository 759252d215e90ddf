//! Multi-file rooms: extra files (`files` map + one `files/<name>` text root each) sync,
//! obey the write rules on every replica, come back whole on restore; hostile peers naming
//! bad roots, too many files or huge names are refused with a clear error.

mod support;

use anyhow::{ensure, Context, Result};
use arena_core::history::{DiffLine, Splice};
use arena_core::records::VersionCause;
use arena_core::{CoreError, Cut, Envelope, Identity, RoomDoc, MAX_FILES};
use yrs::{Array, Map, Text, Transact};

use support::{assert_converged, full_room, sync_all, Party, CAND, HOST, OBS, T0};

fn ins(pos: u32, text: &str) -> Splice {
    Splice { pos, delete: 0, insert: text.into() }
}

/// An update writing "x" into each of `roots` (text roots) under `client`, straight into a
/// yrs document: what a hostile peer can send, past the typed accessors.
fn raw_texts(client: u64, roots: &[String]) -> Vec<u8> {
    let doc = RoomDoc::new(client);
    let y = doc.raw_yrs_doc();
    let texts: Vec<yrs::TextRef> = roots.iter().map(|r| y.get_or_insert_text(r.as_str())).collect();
    let mut txn = y.transact_mut();
    for t in &texts {
        t.insert(&mut txn, 0, "x");
    }
    txn.encode_update_v1()
}

fn raw_text(client: u64, root: &str) -> Vec<u8> {
    raw_texts(client, &[root.to_owned()])
}

fn raw_entry(client: u64, key: &str) -> Vec<u8> {
    let doc = RoomDoc::new(client);
    let y = doc.raw_yrs_doc();
    let m = y.get_or_insert_map("files");
    let mut txn = y.transact_mut();
    m.insert(&mut txn, key, "{\"createdAt\":1}");
    txn.encode_update_v1()
}

/// `who` signs `update` as its next envelope (under session `session`, so its client id is
/// fresh) and `to` receives it; returns the refusal, if any.
fn send_as(p: &mut Party, who: usize, to: usize, session: u32, update: Vec<u8>) -> Result<Option<CoreError>> {
    let id: Identity = p.rooms[who].identity().clone();
    let head = p.rooms[to].ledger().head(&id.public());
    let env = Envelope::seal(p.rooms[to].id(), &id, head.next_seq, head.last_hash, session, update);
    let rc = p.rooms[to].receive(vec![env], T0 + 50)?;
    Ok(rc.rejected.into_iter().next().map(|(_, e)| e))
}

#[test]
fn files_sync_between_replicas() -> Result<()> {
    let mut p = full_room("files-sync")?;
    p.rooms[HOST].add_file("helper.py", T0 + 1)?.context("add")?;
    p.rooms[HOST].splice_file("helper.py", &[ins(0, "def greet():\n    return 'hi'\n")], T0 + 2)?;
    p.rooms[CAND].add_file("util.h", T0 + 3)?.context("add")?;
    p.rooms[CAND].splice_file("util.h", &[ins(0, "#define N 3\n")], T0 + 4)?;
    p.rooms[HOST].edit(T0 + 5, |e| e.splice_code(0, 0, "from helper import greet\n"))?;
    sync_all(&mut p.rooms, T0 + 6)?;
    for (i, r) in p.rooms.iter().enumerate() {
        ensure!(r.doc().files() == ["helper.py", "util.h"], "replica {i}: {:?}", r.doc().files());
        ensure!(r.doc().file("util.h").as_deref() == Some("#define N 3\n"), "replica {i}");
    }
    // Concurrent edits of one file converge.
    p.rooms[HOST].splice_file("util.h", &[ins(0, "// host\n")], T0 + 7)?;
    p.rooms[CAND].splice_file("util.h", &[ins(12, "// cand\n")], T0 + 7)?;
    sync_all(&mut p.rooms, T0 + 8)?;
    assert_converged(&p.rooms, true)?;
    ensure!(p.rooms[OBS].doc().file("util.h").is_some_and(|t| t.contains("host") && t.contains("cand")));
    // The observer writes nothing, files included; a file not listed cannot be edited.
    ensure!(matches!(p.rooms[OBS].add_file("x.py", T0 + 9), Err(CoreError::NotAllowed(_))));
    ensure!(matches!(p.rooms[HOST].splice_file("nope.py", &[ins(0, "x")], T0 + 9), Err(CoreError::NotFound(_))));
    for bad in ["../../etc/x", "a/b", "", ".env", "a\nb"] {
        let e = p.rooms[HOST].add_file(bad, T0 + 9);
        ensure!(matches!(e, Err(CoreError::FileName { .. })), "{bad:?}: {e:?}");
    }
    // Removing unlists and empties; the other replicas follow.
    p.rooms[CAND].remove_file("helper.py", T0 + 10)?.context("remove")?;
    sync_all(&mut p.rooms, T0 + 11)?;
    ensure!(p.rooms[HOST].doc().files() == ["util.h"]);
    ensure!(p.rooms[HOST].doc().file("helper.py").is_none());
    assert_converged(&p.rooms, true)?;
    Ok(())
}

#[test]
fn restore_brings_back_every_file() -> Result<()> {
    let mut p = full_room("files-restore")?;
    let h = &mut p.rooms[HOST];
    h.edit(T0 + 1, |e| e.splice_code(0, 0, "import a, b\n"))?;
    h.add_file("a.py", T0 + 1)?;
    h.splice_file("a.py", &[ins(0, "A = 1\n")], T0 + 1)?;
    h.add_file("b.py", T0 + 1)?;
    h.splice_file("b.py", &[ins(0, "B = 2\n")], T0 + 1)?;
    let v1 = h.create_version("two files", VersionCause::Manual, T0 + 2)?;
    // Since v1: code and a.py changed, b.py removed, c.py added.
    h.edit(T0 + 3, |e| e.splice_code(0, 11, "import c"))?;
    h.splice_file("a.py", &[Splice { pos: 4, delete: 1, insert: "100".into() }], T0 + 3)?;
    h.remove_file("b.py", T0 + 3)?;
    h.add_file("c.py", T0 + 3)?;
    h.splice_file("c.py", &[ins(0, "C = 3\n")], T0 + 3)?;
    let v2 = h.create_version("changed", VersionCause::Manual, T0 + 4)?;
    ensure!(h.doc().files() == ["a.py", "c.py"]);

    let diffs = h.file_diffs(&Cut::Version(v1.id.clone()), &Cut::Version(v2.id.clone()))?;
    let names: Vec<&str> = diffs.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(names == ["a.py", "b.py", "c.py"], "{names:?}");
    ensure!(
        diffs[0].1.contains(&DiffLine::Removed("A = 1\n".into()))
            && diffs[0].1.contains(&DiffLine::Added("A = 100\n".into()))
    );
    ensure!(diffs[1].1 == [DiffLine::Removed("B = 2\n".into())], "{:?}", diffs[1].1);
    ensure!(diffs[2].1 == [DiffLine::Added("C = 3\n".into())], "{:?}", diffs[2].1);

    h.restore(&v1.id, T0 + 5)?;
    ensure!(h.doc().code() == "import a, b\n", "{:?}", h.doc().code());
    ensure!(h.doc().files() == ["a.py", "b.py"], "{:?}", h.doc().files());
    ensure!(h.doc().file("a.py").as_deref() == Some("A = 1\n"), "{:?}", h.doc().file("a.py"));
    ensure!(h.doc().file("b.py").as_deref() == Some("B = 2\n"), "{:?}", h.doc().file("b.py"));
    // History kept: v2 still reconstructs with its files.
    let at_v2 = h.files_at(&Cut::Version(v2.id.clone()))?;
    ensure!(at_v2 == [("a.py".to_owned(), "A = 100\n".to_owned()), ("c.py".to_owned(), "C = 3\n".to_owned())]);
    // Every replica gets the restore, and agrees.
    sync_all(&mut p.rooms, T0 + 6)?;
    assert_converged(&p.rooms, true)?;
    ensure!(p.rooms[CAND].doc().file_texts() == p.rooms[HOST].doc().file_texts());
    Ok(())
}

/// Hostile envelopes, each signed by an admitted candidate (so only the rules stop them),
/// each refused with an error that says why, and leaving the replica as it was.
#[test]
fn hostile_file_roots_are_refused() -> Result<()> {
    let mut p = full_room("files-hostile")?;
    let cand = p.rooms[CAND].identity().public();
    let c = cand.client_id(1);
    let huge = format!("files/{}", "x".repeat(1 << 20));
    let many: Vec<String> = (0..10_000).map(|i| format!("files/f{i}")).collect();
    let values = {
        let doc = RoomDoc::new(c);
        let y = doc.raw_yrs_doc();
        let a = y.get_or_insert_array("files/v.py");
        let mut txn = y.transact_mut();
        a.push_back(&mut txn, 7);
        txn.encode_update_v1()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a path escape", raw_text(c, "files/../../etc/x"), "not in the room's schema"),
        ("a slash", raw_text(c, "files/a/b"), "not in the room's schema"),
        ("a 1 MB name", raw_text(c, &huge), "not in the room's schema"),
        ("an empty name", raw_text(c, "files/"), "not in the room's schema"),
        ("a control char", raw_text(c, "files/a\u{1}"), "not in the room's schema"),
        ("a dot name", raw_text(c, "files/.."), "not in the room's schema"),
        ("a bad entry", raw_entry(c, "../x"), "bad file name"),
        ("a 1 MB entry", raw_entry(c, &"y".repeat(1 << 20)), "bad file name"),
        ("10,000 roots in one update", raw_texts(c, &many), "more than 32 files in one update"),
        ("values in a file's text", values, "does not belong"),
    ];
    let before = support::fingerprint(&p.rooms[HOST]);
    for (what, update, why) in cases {
        let refused = send_as(&mut p, CAND, HOST, 1, update)?;
        let e = refused.with_context(|| format!("{what}: accepted"))?;
        ensure!(e.to_string().contains(why), "{what}: {e}");
        ensure!(e.to_string().len() < 400, "{what}: a {} byte message", e.to_string().len());
    }
    ensure!(support::fingerprint(&p.rooms[HOST]) == before, "a refused envelope changed the room");
    Ok(())
}

/// The cap on file names: an honest writer refuses to list more than [`MAX_FILES`] (removed
/// files count); one envelope carrying more than that many names is refused by every
/// replica's stateless gate; and names past the cap that arrive one envelope at a time are
/// content, taken by every replica alike — a verdict that depended on what a replica had
/// already seen would split replicas that receive concurrent adds in different orders.
#[test]
fn the_file_cap_is_the_same_verdict_on_every_replica() -> Result<()> {
    let mut p = full_room("files-cap")?;
    for i in 0..MAX_FILES - 2 {
        p.rooms[CAND].add_file(&format!("f{i}.py"), T0 + 1)?.context("add")?;
    }
    p.rooms[CAND].add_file("gone.py", T0 + 1)?;
    p.rooms[CAND].remove_file("gone.py", T0 + 1)?;
    sync_all(&mut p.rooms, T0 + 2)?;
    ensure!(p.rooms[HOST].doc().files().len() == MAX_FILES - 2);
    // The last slot, taken by host and candidate at once: whatever the order their envelopes
    // arrive in, every replica ends up with both (a cap counted per replica would have kept
    // one here and the other there, and stalled the refused author's chain).
    let h = p.rooms[HOST].add_file("host.py", T0 + 3)?.context("host add")?;
    let c = p.rooms[CAND].add_file("cand.py", T0 + 3)?.context("cand add")?;
    p.rooms[OBS].receive(vec![h.clone()], T0 + 4)?;
    p.rooms[CAND].receive(vec![h], T0 + 4)?;
    p.rooms[HOST].receive(vec![c.clone()], T0 + 4)?;
    p.rooms[OBS].receive(vec![c.clone()], T0 + 4)?;
    sync_all(&mut p.rooms, T0 + 5)?;
    let fp = support::fingerprint(&p.rooms[HOST]);
    for r in [CAND, OBS] {
        ensure!(support::fingerprint(&p.rooms[r]) == fp, "replica {r} disagrees");
    }
    ensure!(p.rooms[OBS].doc().files().len() == MAX_FILES, "{:?}", p.rooms[OBS].doc().files());
    // Locally refused, before anything is written (the removed file's name counts).
    let e = p.rooms[CAND].add_file("more.py", T0 + 6);
    ensure!(matches!(&e, Err(CoreError::NotAllowed(m)) if m.contains("at most 32")), "{e:?}");
    // One envelope with more names than the cap: refused by the gate on every replica,
    // which is left as it was.
    let cid = p.rooms[CAND].identity().public().client_id(1);
    let many: Vec<String> = (0..=MAX_FILES).map(|i| format!("files/x{i}.py")).collect();
    let before = support::fingerprint(&p.rooms[HOST]);
    for to in [HOST, OBS] {
        let e = send_as(&mut p, CAND, to, 1, raw_texts(cid, &many))?.with_context(|| format!("accepted by {to}"))?;
        ensure!(e.to_string().contains("more than 32 files in one update"), "{e}");
    }
    ensure!(support::fingerprint(&p.rooms[HOST]) == before, "a refused envelope changed the room");
    // Writing into known files goes on.
    ensure!(send_as(&mut p, CAND, HOST, 1, raw_text(cid, "files/f1.py"))?.is_none(), "a known file refused");
    Ok(())
}

/// An item of a file's text whose origins lie in another root (the code) is refused as
/// crossed, on the receiving replica; observers cannot write a file even by hand.
#[test]
fn files_keep_to_their_own_root() -> Result<()> {
    let mut p = full_room("files-cross")?;
    p.rooms[HOST].edit(T0 + 1, |e| e.splice_code(0, 0, "ab"))?;
    p.rooms[HOST].add_file("a.py", T0 + 1)?;
    p.rooms[HOST].splice_file("a.py", &[ins(0, "cd")], T0 + 1)?;
    sync_all(&mut p.rooms, T0 + 2)?;
    // The candidate's replica of the document, under a fresh client id: "x" typed between
    // the code's "a" and the file's "d".
    let c = p.rooms[CAND].identity().public().client_id(1);
    let doc = RoomDoc::new(c);
    doc.apply_v1(&p.rooms[HOST].doc().encode_state())?;
    let y = doc.raw_yrs_doc();
    let code = y.get_or_insert_text("code");
    let file = y.get_or_insert_text("files/a.py");
    let (a, d) = {
        let txn = y.transact();
        let id = |t: &yrs::TextRef, i: u32| {
            yrs::IndexedSequence::sticky_index(t, &txn, i, yrs::Assoc::After)
                .and_then(|s| s.id().copied())
                .context("an id")
        };
        (id(&code, 0)?, id(&file, 1)?)
    };
    let var = |out: &mut Vec<u8>, mut v: u64| {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    // One client, one struct at clock 0: a string with both origins.
    let mut u = vec![1, 1];
    var(&mut u, c);
    u.extend([0, 0xc4]);
    for id in [a, d] {
        var(&mut u, id.client.get());
        var(&mut u, u64::from(id.clock));
    }
    u.extend([1, b'x', 0]);
    let e = send_as(&mut p, CAND, HOST, 1, u)?.context("crossed origins accepted")?;
    ensure!(matches!(&e, CoreError::NotAllowed(m) if m.contains("cross")), "{e}");
    // An observer's hand-made envelope into a file.
    let o = p.rooms[OBS].identity().public().client_id(1);
    let e = send_as(&mut p, OBS, HOST, 1, raw_text(o, "files/a.py"))?.context("observer accepted")?;
    ensure!(matches!(e, CoreError::NotAllowed(_)), "{e}");
    Ok(())
}
