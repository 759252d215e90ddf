//! Interop with the real y-protocols stack: `yjs`, `y-protocols` and `lib0` from npm, run
//! by Node (`core/tests/js/yinterop.mjs`, pinned by the repository's one `package-lock.json`).
//!
//! Checks that `arena_core::sync::ywire` speaks the y-websocket wire format byte for byte:
//! every message kind Node encodes decodes here, every frame we encode decodes there, and a
//! full sync handshake with concurrent edits (non-ASCII, UTF-16 offsets) converges. Node
//! handles our frames exactly as y-websocket's client does ("stock" mode: ONE message per
//! frame, anything after it ignored), so a frame a stock peer would half-read fails here.
//!
//! Needs `bash scripts/npm-install.sh`. With `ARENA_SKIP_JS=1` a missing Node setup
//! skips the tests (loudly) instead of failing them.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{anyhow, bail, ensure, Context, Result};
use arena_core::sync::presence::PresenceMap;
use arena_core::sync::ywire::{self, YOutcome, YSession, MAX_MESSAGES};
use arena_core::RoomDoc;
use serde_json::{json, Value};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Any, ClientID, Map, Out, ReadTxn, StateVector, Transact};

/// Client ids: one above 2^31 (sign trouble), one above 2^32 (needs the 53-bit range).
const NODE_ID: u64 = 3_141_592_653;
const RUST_ID: u64 = (1 << 40) + 7;
const NODE_BIG_ID: u64 = (1 << 52) + 11;

// ---------------------------------------------------------------------------------------
// The Node peer
// ---------------------------------------------------------------------------------------

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("js")
}

fn skip_requested() -> bool {
    std::env::var("ARENA_SKIP_JS").is_ok_and(|v| v == "1")
}

/// Written straight to stderr so libtest's output capture cannot hide it.
fn loud_skip(test: &str, why: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n*** SKIPPED {test}: {why} (ARENA_SKIP_JS=1); the y-protocols interop was NOT tested ***\n"
    );
}

/// A running `node yinterop.mjs`, spoken to with one JSON line each way.
struct NodePeer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl NodePeer {
    /// Starts the Node peer, or `None` when the setup is missing and skipping was asked for.
    fn start(test: &str) -> Result<Option<NodePeer>> {
        let dir = js_dir();
        // The repository's one npm workspace installs at the root (scripts/npm-install.sh).
        let modules = dir.join("../../../node_modules/y-protocols");
        if !modules.is_dir() {
            if skip_requested() {
                loud_skip(test, "the npm workspace (node_modules/ at the repository root) is not installed");
                return Ok(None);
            }
            bail!(
                "{} is missing: run `bash scripts/npm-install.sh` (Node 20+, npm registry access) \
                 before `cargo test`, or set ARENA_SKIP_JS=1 to skip the y-protocols interop tests",
                modules.display()
            );
        }
        let node = std::env::var_os("NODE").unwrap_or_else(|| "node".into());
        let spawned = Command::new(&node)
            .arg(dir.join("yinterop.mjs"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && skip_requested() => {
                loud_skip(test, "`node` is not installed");
                return Ok(None);
            }
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!(
                        "cannot run {node:?} (Node 20+ is needed; set NODE=/path/to/node, or ARENA_SKIP_JS=1 to skip)"
                    )
                })
            }
        };
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?);
        Ok(Some(NodePeer { child, stdin: Some(stdin), stdout }))
    }

    /// Sends one request and blocks until its response line arrives.
    fn call(&mut self, req: Value) -> Result<Value> {
        let stdin = self.stdin.as_mut().context("node stdin closed")?;
        writeln!(stdin, "{req}").context("writing to node")?;
        stdin.flush()?;
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).context("reading from node")?;
        if n == 0 {
            let status = self.child.wait()?;
            bail!("node exited ({status}) while handling {req} (its stderr is above)");
        }
        let res: Value = serde_json::from_str(&line).with_context(|| format!("node sent non-JSON: {line:?}"))?;
        if res["ok"] != json!(true) {
            bail!("node failed on {req}: {}", res["error"].as_str().unwrap_or("?"));
        }
        Ok(res)
    }

    fn reset(&mut self, client: u64) -> Result<Value> {
        self.call(json!({"op": "reset", "client": client}))
    }

    /// A frame-producing request; returns the frame and the whole response.
    fn frame(&mut self, req: Value) -> Result<(Vec<u8>, Value)> {
        let res = self.call(req)?;
        let frame = unhex(res["frame"].as_str().context("response has no frame")?)?;
        Ok((frame, res))
    }

    /// Local edit of "code" at UTF-16 `pos`; returns the update frame y-websocket broadcasts.
    fn edit(&mut self, pos: u32, del: u32, insert: &str) -> Result<Vec<u8>> {
        Ok(self.frame(json!({"op": "edit", "pos": pos, "del": del, "insert": insert}))?.0)
    }

    fn state(&mut self) -> Result<Value> {
        self.call(json!({"op": "state"}))
    }

    /// Delivers a frame; `mode` "stock" is y-websocket's one-message-per-frame handling.
    fn recv(&mut self, frame: &[u8], mode: &str) -> Result<Value> {
        let res = self.call(json!({"op": "recv", "frame": hex(frame), "mode": mode}))?;
        let errors = res["errors"].as_array().context("no errors field")?;
        ensure!(errors.is_empty(), "yjs failed to apply an update from Rust: {errors:?}");
        Ok(res)
    }

    /// Delivers a frame the way a stock y-websocket client reads it, insisting it consumes
    /// the whole frame; returns the frames Node sends back.
    fn recv_stock(&mut self, frame: &[u8]) -> Result<(Value, Vec<Vec<u8>>)> {
        let res = self.recv(frame, "stock")?;
        let trailing = res["trailing"].as_u64().context("no trailing field")?;
        ensure!(
            trailing == 0,
            "Rust sent a frame holding more than one message ({} bytes: {}); a stock y-websocket \
             peer reads only the first message ({}) and silently drops the remaining {trailing} bytes",
            frame.len(),
            hex(frame),
            res["messages"][0]
        );
        let replies = hex_list(&res["replies"])?;
        Ok((res, replies))
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        // Closing stdin makes the peer exit.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Starts Node for `test`, or returns from the test when it is skipped.
macro_rules! node_or_skip {
    ($test:expr) => {
        match NodePeer::start($test)? {
            Some(n) => n,
            None => return Ok(()),
        }
    };
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    ensure!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| anyhow!("bad hex {s:?}: {e}")))
        .collect()
}

fn hex_list(v: &Value) -> Result<Vec<Vec<u8>>> {
    v.as_array().context("expected an array of hex")?.iter().map(|h| unhex(h.as_str().context("hex")?)).collect()
}

fn concat(frames: &[&[u8]]) -> Vec<u8> {
    frames.concat()
}

/// UTF-16 offset of byte index `byte` in `s` (Y.Text / RoomDoc positions).
fn utf16_at(s: &str, byte: usize) -> u32 {
    s[..byte].encode_utf16().count() as u32
}

/// UTF-16 offset and length of the first occurrence of `needle`.
fn utf16_find(s: &str, needle: &str) -> Result<(u32, u32)> {
    let at = s.find(needle).with_context(|| format!("{needle:?} not in {s:?}"))?;
    Ok((utf16_at(s, at), needle.encode_utf16().count() as u32))
}

fn sv_pairs(sv: &StateVector) -> Vec<(u64, u32)> {
    let mut v: Vec<(u64, u32)> = sv.iter().map(|(c, k)| (c.get(), *k)).collect();
    v.sort_unstable();
    v
}

fn json_pairs(v: &Value) -> Result<Vec<(u64, u32)>> {
    v.as_array()
        .context("expected [[client, clock], ..]")?
        .iter()
        .map(|p| {
            let c = p[0].as_u64().context("client")?;
            let k = u32::try_from(p[1].as_u64().context("clock")?)?;
            Ok((c, k))
        })
        .collect()
}

type DsPairs = Vec<(u64, Vec<(u32, u32)>)>;

/// The delete set of a replica as sorted (client, [(clock, len)]).
fn ds_pairs(room: &RoomDoc) -> DsPairs {
    let snap = room.raw_yrs_doc().transact().snapshot();
    let mut v: DsPairs = snap
        .delete_set
        .iter()
        .map(|(c, ranges)| (c.get(), ranges.iter().map(|r| (r.start, r.end - r.start)).collect()))
        .collect();
    v.sort();
    v
}

fn json_ds(v: &Value) -> Result<DsPairs> {
    v.as_array()
        .context("expected [[client, [[clock, len], ..]], ..]")?
        .iter()
        .map(|p| {
            let c = p[0].as_u64().context("client")?;
            let ranges = json_pairs(&p[1])?.into_iter().map(|(a, b)| (a as u32, b)).collect();
            Ok((c, ranges))
        })
        .collect()
}

fn meta_string(room: &RoomDoc, key: &str) -> Option<String> {
    let map = room.raw_yrs_doc().get_or_insert_map("meta");
    let txn = room.raw_yrs_doc().transact();
    match map.get(&txn, key)? {
        Out::Any(Any::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// One decoded message, or an error naming the frame.
fn decode_one(frame: &[u8]) -> Result<Message> {
    let mut msgs = ywire::decode_frame(frame).with_context(|| format!("decode_frame({})", hex(frame)))?;
    ensure!(msgs.len() == 1, "expected one message in {}, got {msgs:?}", hex(frame));
    Ok(msgs.remove(0))
}

/// Runs `f`, turning a panic into an error that shows the input.
fn no_panic<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg =
            p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied()).unwrap_or("?");
        anyhow!("{what} PANICKED on {} bytes {}: {msg}", input.len(), hex(input))
    })
}

fn state_of(p: &PresenceMap, id: u64) -> Option<Value> {
    p.state(id).map(|j| serde_json::from_str(j).expect("a state that parses"))
}

/// The room side of a y-websocket connection: the room document, its awareness and the
/// session, applying what the session hands back the way the room does.
struct RustPeer {
    room: RoomDoc,
    awareness: PresenceMap,
    session: YSession,
}

impl RustPeer {
    fn new(client: u64, read_only: bool) -> Self {
        let room = RoomDoc::new(client);
        let awareness = PresenceMap::new(client);
        RustPeer { room, awareness, session: YSession::new(read_only) }
    }

    fn start(&self) -> Vec<Vec<u8>> {
        self.session.start_frames(&self.room, &self.awareness)
    }

    fn receive(&mut self, frame: &[u8]) -> Result<YOutcome> {
        let out = self
            .session
            .receive(&self.room, &mut self.awareness, frame, 1)
            .with_context(|| format!("YSession::receive({})", hex(frame)))?;
        for u in &out.updates {
            self.room.apply_v1(u)?;
        }
        Ok(out)
    }

    fn edit(&self, pos: u32, del: u32, insert: &str) -> Vec<u8> {
        self.room.edit(|e| e.splice_code(pos, del, insert)).1
    }
}

enum Hop {
    ToNode(Vec<u8>),
    ToRust(Vec<u8>),
}

/// Delivers frames both ways, feeding every reply back, until nobody has anything to say.
/// Node handles frames like a stock y-websocket client. Returns the outcomes on the Rust side.
fn pump(node: &mut NodePeer, rust: &mut RustPeer, first: Vec<Hop>) -> Result<Vec<YOutcome>> {
    let mut queue: VecDeque<Hop> = first.into();
    let mut outcomes = Vec::new();
    let mut hops = 0;
    while let Some(hop) = queue.pop_front() {
        hops += 1;
        ensure!(hops < 100, "the exchange does not settle");
        match hop {
            Hop::ToNode(frame) => {
                let (_, replies) = node.recv_stock(&frame)?;
                queue.extend(replies.into_iter().map(Hop::ToRust));
            }
            Hop::ToRust(frame) => {
                let out = rust.receive(&frame)?;
                if !out.reply.is_empty() {
                    queue.push_back(Hop::ToNode(out.reply.clone()));
                }
                outcomes.push(out);
            }
        }
    }
    Ok(outcomes)
}

/// Asserts both replicas hold the same document, checked from both ends.
fn assert_converged(node: &mut NodePeer, room: &RoomDoc) -> Result<()> {
    let st = node.state()?;
    let node_text = st["text"].as_str().context("text")?;
    let rust_text = room.code();
    ensure!(node_text == rust_text, "texts differ:\n node: {node_text:?}\n rust: {rust_text:?}");
    ensure!(st["textLen"].as_u64() == Some(u64::from(room.code_len())), "UTF-16 lengths differ");
    let rust_sv = sv_pairs(&room.raw_yrs_doc().transact().state_vector());
    ensure!(json_pairs(&st["sv"])? == rust_sv, "state vectors differ: node {} rust {rust_sv:?}", st["sv"]);
    ensure!(unhex(st["svHex"].as_str().context("svHex")?)?.len() == room.state_vector().len());
    let rust_ds = ds_pairs(room);
    ensure!(json_ds(&st["ds"])? == rust_ds, "delete sets differ: node {} rust {rust_ds:?}", st["ds"]);
    ensure!(st["pending"] == json!(false), "node has pending structs");
    ensure!(!room.has_pending(), "rust has pending structs");

    // Node: our whole state, applied to a fresh Y.Doc, is its document.
    let cmp = node.call(json!({"op": "compare", "full": hex(&room.encode_state())}))?;
    for k in ["textEqual", "svEqual", "snapshotEqual", "metaEqual"] {
        ensure!(cmp[k] == json!(true), "node compare: {k} is false: {cmp}");
    }
    ensure!(cmp["otherPending"] == json!(false), "our full state left yjs with pending structs: {cmp}");
    ensure!(cmp["missingHere"] == json!(0) && cmp["missingThere"] == json!(0), "{cmp}");

    // Rust: Node's whole state, applied to a fresh RoomDoc, is our document.
    let theirs = RoomDoc::new(1);
    theirs.apply_v1(&unhex(st["fullHex"].as_str().context("fullHex")?)?)?;
    ensure!(theirs.code() == rust_text, "node's full state gives {:?}", theirs.code());
    ensure!(!theirs.has_pending(), "node's full state leaves pending structs");
    let (a, b) = (theirs.raw_yrs_doc().transact().snapshot(), room.raw_yrs_doc().transact().snapshot());
    ensure!(a == b, "snapshots differ:\n node: {a:?}\n rust: {b:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (a) Node encodes, Rust decodes
// ---------------------------------------------------------------------------------------

#[test]
fn node_encoded_messages_decode_in_rust() -> Result<()> {
    let mut node = node_or_skip!("node_encoded_messages_decode_in_rust");
    node.reset(NODE_ID)?;
    let (meta_frame, _) = node.frame(json!({"op": "setMeta", "key": "title", "value": "Zwei Summen ∑ 🧮"}))?;
    let text0 = "fn main() {\n    println!(\"héllo 🌍\");\n}\n";
    let first_update = node.edit(0, 0, text0)?;
    // A deletion across a surrogate pair, so the state carries a delete set.
    let (at, len) = utf16_find(text0, "🌍")?;
    node.edit(at, len, "wörld")?;
    let st = node.state()?;
    let text1 = st["text"].as_str().context("text")?.to_owned();
    ensure!(text1 == text0.replace("🌍", "wörld"), "node text {text1:?}");

    // Sync step 1: the state vector entries.
    let (f, res) = node.frame(json!({"op": "step1"}))?;
    ensure!(f[..2] == [0, 0], "sync step 1 starts 00 00: {}", hex(&f));
    match decode_one(&f)? {
        Message::Sync(SyncMessage::SyncStep1(sv)) => {
            assert_eq!(sv_pairs(&sv), json_pairs(&res["sv"])?);
            assert_eq!(sv.get(&ClientID::new(NODE_ID)), json_pairs(&st["sv"])?[0].1);
            assert_eq!(sv.encode_v1(), unhex(st["svHex"].as_str().context("svHex")?)?);
        }
        m => bail!("step1 decoded as {m:?}"),
    }

    // Sync step 2 against an empty state vector: the whole document.
    let (f, _) = node.frame(json!({"op": "step2"}))?;
    let room = RoomDoc::new(RUST_ID);
    match decode_one(&f)? {
        Message::Sync(SyncMessage::SyncStep2(u)) => room.apply_v1(&u)?,
        m => bail!("step2 decoded as {m:?}"),
    }
    assert_eq!(room.code(), text1);
    assert_eq!(room.meta().title, "Zwei Summen ∑ 🧮");
    assert_eq!(sv_pairs(&room.raw_yrs_doc().transact().state_vector()), json_pairs(&st["sv"])?);
    assert_eq!(ds_pairs(&room), json_ds(&st["ds"])?);

    // Sync step 2 against our state vector after an edit: just the difference.
    let update_frame = node.edit(0, 0, "// ✓ 日本語\n")?;
    let (f, _) = node.frame(json!({"op": "step2", "sv": hex(&room.state_vector())}))?;
    let text2 = node.state()?["text"].as_str().context("text")?.to_owned();
    let diff_room = RoomDoc::new(RUST_ID);
    diff_room.apply_v1(&room.encode_state())?;
    match decode_one(&f)? {
        Message::Sync(SyncMessage::SyncStep2(u)) => diff_room.apply_v1(&u)?,
        m => bail!("step2 (diff) decoded as {m:?}"),
    }
    assert_eq!(diff_room.code(), text2);

    // Update: what y-websocket broadcasts after a local change.
    ensure!(update_frame[..2] == [0, 2], "update starts 00 02: {}", hex(&update_frame));
    match decode_one(&update_frame)? {
        Message::Sync(SyncMessage::Update(u)) => room.apply_v1(&u)?,
        m => bail!("update decoded as {m:?}"),
    }
    assert_eq!(room.code(), text2);
    ensure!(!room.has_pending());

    // Awareness with a JSON state (non-ASCII on purpose).
    let state = json!({"user": {"name": "Zoë 🐙", "color": "#30bced"}, "cursor": {"anchor": 3, "head": 7}, "n": null});
    let (f, res) = node.frame(json!({"op": "awareness", "state": state}))?;
    let clock = u32::try_from(res["clock"].as_u64().context("clock")?)?;
    let mut awareness = PresenceMap::new(RUST_ID);
    match decode_one(&f)? {
        Message::Awareness(up) => {
            assert_eq!(up.clients.len(), 1);
            let e = up.clients.get(&ClientID::new(NODE_ID)).context("node's entry")?;
            assert_eq!(e.clock, clock);
            assert_eq!(serde_json::from_str::<Value>(&e.json)?, state);
            ensure!(awareness.apply(&up, 1).added == [NODE_ID]);
        }
        m => bail!("awareness decoded as {m:?}"),
    }
    assert_eq!(state_of(&awareness, NODE_ID), Some(state.clone()));

    // Awareness removal: state null, clock bumped; applying it forgets the client.
    let (f, res) = node.frame(json!({"op": "awarenessRemove"}))?;
    match decode_one(&f)? {
        Message::Awareness(up) => {
            let e = up.clients.get(&ClientID::new(NODE_ID)).context("node's entry")?;
            assert_eq!(&*e.json, "null");
            assert_eq!(u64::from(e.clock), res["clock"].as_u64().context("clock")?);
            assert_eq!(e.clock, clock + 1);
            ensure!(awareness.apply(&up, 2).removed == [NODE_ID]);
        }
        m => bail!("awareness removal decoded as {m:?}"),
    }
    assert_eq!(state_of(&awareness, NODE_ID), None);

    // Query awareness.
    let (query, _) = node.frame(json!({"op": "query"}))?;
    assert_eq!(query, [3]);
    assert_eq!(decode_one(&query)?, Message::AwarenessQuery);

    // Auth: permission denied with a reason.
    let reason = "read-only: 観察者 may not edit ✋";
    let (auth, _) = node.frame(json!({"op": "auth", "reason": reason}))?;
    assert_eq!(decode_one(&auth)?, Message::Auth(Some(reason.to_owned())));

    // Everything back to back in one frame decodes to the same messages, in order.
    node.reset(NODE_ID)?;
    let (s1, _) = node.frame(json!({"op": "step1"}))?;
    let (aw, _) = node.frame(json!({"op": "awareness", "state": state}))?;
    let parts: [&[u8]; 6] = [&s1, &meta_frame, &first_update, &aw, &query, &auth];
    let all = concat(&parts);
    let msgs = ywire::decode_frame(&all)?;
    let singles = parts.iter().map(|p| decode_one(p)).collect::<Result<Vec<_>>>()?;
    assert_eq!(msgs, singles);

    // And a session makes sense of it: step 2 and awareness back, two updates to apply.
    let mut rust = RustPeer::new(RUST_ID, false);
    let out = rust.receive(&all)?;
    assert_eq!(out.updates.len(), 2);
    assert_eq!(rust.room.code(), text0);
    assert_eq!(rust.room.meta().title, "Zwei Summen ∑ 🧮");
    assert!(out.awareness.is_some() && !out.denied && out.arena.is_empty());
    let replies = ywire::decode_frame(&out.reply)?;
    ensure!(
        matches!(replies.as_slice(), [Message::Sync(SyncMessage::SyncStep2(_)), Message::Awareness(_)]),
        "replies: {replies:?}"
    );
    assert_eq!(state_of(&rust.awareness, NODE_ID), Some(state));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (b) Rust encodes, Node decodes
// ---------------------------------------------------------------------------------------

#[test]
fn rust_encoded_frames_decode_in_node() -> Result<()> {
    let mut node = node_or_skip!("rust_encoded_frames_decode_in_node");
    node.reset(NODE_ID)?;
    let mut rust = RustPeer::new(RUST_ID, false);
    rust.room.edit(|e| {
        e.splice_code(0, 0, "def two_sum(nums, target):\n    return \"🎯 naïve\"\n");
        e.set_meta("language", &json!("python"));
    });
    let (at, len) = utf16_find(&rust.room.code(), "naïve")?;
    rust.edit(at, len, "ñ");

    // Sync step 1 carries our state vector; Node answers with step 2 (nothing: it is empty).
    let sv = rust.room.raw_yrs_doc().transact().state_vector();
    let f = ywire::encode_frame(&[Message::Sync(SyncMessage::SyncStep1(sv.clone()))]);
    let res = node.recv(&f, "stock")?;
    assert_eq!(res["trailing"], json!(0));
    let m = &res["messages"][0];
    assert_eq!((m["type"].as_str(), m["sub"].as_u64()), (Some("sync"), Some(0)));
    assert_eq!(json_pairs(&m["sv"])?, sv_pairs(&sv));
    let replies = hex_list(&res["replies"])?;
    ensure!(replies.len() == 1, "node should answer step 1 with step 2: {res}");
    ensure!(matches!(decode_one(&replies[0])?, Message::Sync(SyncMessage::SyncStep2(_))), "{res}");
    let out = rust.receive(&replies[0])?;
    ensure!(!out.denied && out.reply.is_empty(), "{out:?}");

    // Sync step 2 with our whole state: Node ends up with our document.
    let f = ywire::encode_frame(&[Message::Sync(SyncMessage::SyncStep2(rust.room.encode_state()))]);
    let res = node.recv(&f, "stock")?;
    assert_eq!((res["messages"][0]["sub"].as_u64(), res["trailing"].as_u64()), (Some(1), Some(0)));
    assert!(hex_list(&res["replies"])?.is_empty(), "step 2 needs no answer");
    assert_converged(&mut node, &rust.room)?;
    assert_eq!(node.state()?["meta"]["language"], json!("python"));

    // Update: one local transaction.
    let (at, _) = utf16_find(&rust.room.code(), "🎯")?;
    let u = rust.edit(at + 2, 0, " 🚀");
    let f = ywire::update_frame(&u);
    let res = node.recv(&f, "stock")?;
    assert_eq!((res["messages"][0]["sub"].as_u64(), res["trailing"].as_u64()), (Some(2), Some(0)));
    assert_eq!(node.state()?["text"].as_str(), Some(rust.room.code().as_str()));
    assert!(rust.room.code().contains("🎯 🚀 ñ"), "{:?}", rust.room.code());
    assert_converged(&mut node, &rust.room)?;

    // Awareness, via awareness_frame over the v1 bytes (what the room forwards).
    let state = json!({"user": {"name": "Rüst 🦀", "color": "#ee6352"}, "cursor": null});
    let mine = rust.awareness.set_local(&state.to_string(), 1);
    let f = ywire::awareness_frame(&mine.encode_v1())?;
    let res = node.recv(&f, "stock")?;
    assert_eq!(res["trailing"], json!(0));
    let e = &res["messages"][0]["entries"][0];
    assert_eq!((e["client"].as_u64(), e["clock"].as_u64()), (Some(RUST_ID), Some(1)));
    assert_eq!(e["state"], state);
    let st = node.state()?;
    let seen = st["awareness"].as_array().context("awareness")?.iter().find(|e| e["client"] == json!(RUST_ID));
    assert_eq!(seen.map(|e| &e["state"]), Some(&state));

    // Awareness removal from our side: Node forgets us.
    let removal = rust.awareness.remove([RUST_ID], 2);
    let res = node.recv(&ywire::encode_frame(&[Message::Awareness(removal)]), "stock")?;
    assert_eq!(res["messages"][0]["entries"][0]["state"], Value::Null);
    let st = node.state()?;
    ensure!(
        st["awareness"].as_array().context("awareness")?.iter().all(|e| e["client"] != json!(RUST_ID)),
        "node still shows our awareness: {}",
        st["awareness"]
    );

    // Query awareness: Node answers with every state it knows (its own initial `{}`).
    let res = node.recv(&ywire::encode_frame(&[Message::AwarenessQuery]), "stock")?;
    assert_eq!(res["messages"][0]["type"], json!("queryAwareness"));
    let replies = hex_list(&res["replies"])?;
    ensure!(replies.len() == 1, "{res}");
    match decode_one(&replies[0])? {
        Message::Awareness(up) => {
            let e = up.clients.get(&ClientID::new(NODE_ID)).context("node's own state")?;
            assert_eq!(serde_json::from_str::<Value>(&e.json)?, json!({}));
        }
        m => bail!("query answer decoded as {m:?}"),
    }

    // Auth: permission denied with a reason reaches y-protocols' handler.
    let reason = "read-only: observers may not edit — 👀";
    let res = node.recv(&ywire::encode_frame(&[Message::Auth(Some(reason.into()))]), "stock")?;
    assert_eq!(res["messages"][0]["denied"].as_str(), Some(reason));
    assert_eq!(node.state()?["denied"], json!([reason]));

    // Our messages back to back decode with y-protocols too (Node's "all" mode loops).
    let frame = ywire::encode_frame(&[
        Message::Sync(SyncMessage::SyncStep1(StateVector::default())),
        Message::Sync(SyncMessage::Update(rust.edit(0, 0, "#!/usr/bin/env python3\n"))),
        Message::AwarenessQuery,
        Message::Auth(Some("x".into())),
    ]);
    let res = node.recv(&frame, "all")?;
    let kinds: Vec<String> = res["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .map(|m| {
            format!(
                "{}{}",
                m["type"].as_str().unwrap_or("?"),
                m["sub"].as_u64().map(|s| s.to_string()).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(kinds, ["sync0", "sync2", "queryAwareness", "auth"]);
    assert_eq!(res["trailing"], json!(0));
    assert_converged(&mut node, &rust.room)?;

    // The session's opening: start_frames is one message per frame (stock-safe); start is
    // the same messages back to back, for peers that read whole frames.
    rust.awareness.set_local(&state.to_string(), 1);
    let frames = rust.session.start_frames(&rust.room, &rust.awareness);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames.concat(), rust.session.start(&rust.room, &rust.awareness));
    for f in &frames {
        let (res, replies) = node.recv_stock(f)?;
        ensure!(res["messages"].as_array().map(Vec::len) == Some(1), "{res}");
        if res["messages"][0]["type"] == json!("sync") {
            assert_eq!(replies.len(), 1, "node answers step 1");
        }
    }
    let res = node.recv(&rust.session.start(&rust.room, &rust.awareness), "all")?;
    assert_eq!(res["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(res["messages"][1]["entries"][0]["state"], state);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (c) Full handshake with concurrent edits
// ---------------------------------------------------------------------------------------

#[test]
fn handshake_converges_with_concurrent_edits() -> Result<()> {
    let mut node = node_or_skip!("handshake_converges_with_concurrent_edits");
    node.reset(NODE_BIG_ID)?;
    let mut rust = RustPeer::new(RUST_ID, false);

    // Both sides wrote before they ever met (deletions included on both).
    let rust_text = "fn main() {\n    println!(\"héllo 🌍\");\n}\n";
    rust.room.edit(|e| {
        e.splice_code(0, 0, "fn main() {\n    println!(\"héllo 🌍 🌍\");\n}\n");
        e.set_meta("language", &json!("rust"));
    });
    let (at, _) = utf16_find(&rust.room.code(), "🌍 🌍")?;
    rust.edit(at + 2, 3, "");
    assert_eq!(rust.room.code(), rust_text);
    let node_text = "// 日本語 コメント 👋🏽\n";
    node.edit(0, 0, "// 日本語 コメント 😀👋🏽\n")?;
    let (at, len) = utf16_find("// 日本語 コメント 😀👋🏽\n", "😀")?;
    node.edit(at, len, "")?;
    node.frame(json!({"op": "setMeta", "key": "title", "value": "Two sum — 二和"}))?;
    let node_state = json!({"user": {"name": "Zoë 🐙", "color": "#30bced"}});
    let (node_awareness, _) = node.frame(json!({"op": "awareness", "state": node_state}))?;
    let rust_state = json!({"user": {"name": "Rüst 🦀", "color": "#ee6352"}});
    rust.awareness.set_local(&rust_state.to_string(), 1);

    // The handshake: the room's opening frames, the client's step 1 and awareness (the
    // order y-websocket sends them on open), with every reply fed back.
    let (node_step1, _) = node.frame(json!({"op": "step1"}))?;
    let mut hops: Vec<Hop> = rust.start().into_iter().map(Hop::ToNode).collect();
    hops.push(Hop::ToRust(node_step1));
    hops.push(Hop::ToRust(node_awareness));
    let outcomes = pump(&mut node, &mut rust, hops)?;
    ensure!(outcomes.iter().all(|o| !o.denied), "a writer was denied");
    ensure!(outcomes.iter().any(|o| o.awareness.is_some()), "node's awareness never arrived");
    assert_converged(&mut node, &rust.room)?;
    let merged = rust.room.code();
    ensure!(merged.contains(rust_text) && merged.contains(node_text), "merge lost text: {merged:?}");
    assert_eq!(rust.room.meta().title, "Two sum — 二和");
    assert_eq!(meta_string(&rust.room, "language").as_deref(), Some("rust"));
    assert_eq!(node.state()?["meta"], json!({"language": "rust", "title": "Two sum — 二和"}));
    // Awareness both ways.
    assert_eq!(state_of(&rust.awareness, NODE_BIG_ID), Some(node_state.clone()));
    let st = node.state()?;
    let seen: BTreeMap<u64, Value> = st["awareness"]
        .as_array()
        .context("awareness")?
        .iter()
        .filter_map(|e| Some((e["client"].as_u64()?, e["state"].clone())))
        .collect();
    ensure!(
        seen.get(&RUST_ID) == Some(&rust_state),
        "node never saw the room's awareness from the opening frames: {seen:?}"
    );

    // Round 1: concurrent, non-overlapping edits next to and over surrogate pairs, all made
    // before either side sees the other's; the result is fully determined.
    let text = rust.room.code();
    let (globe, globe_len) = utf16_find(&text, "🌍")?;
    let (hello, hello_len) = utf16_find(&text, "héllo")?;
    let r1 = rust.edit(globe + globe_len, 0, "🦀");
    let n1 = node.edit(hello, hello_len, "hello, wörld")?;
    let after_n1 = text.replacen("héllo", "hello, wörld", 1);
    let (wave, wave_len) = utf16_find(&after_n1, "👋🏽")?;
    let n2 = node.edit(wave, wave_len, "🙌")?;
    let expected = after_n1.replacen("👋🏽", "🙌", 1).replacen("🌍", "🌍🦀", 1);
    pump(&mut node, &mut rust, vec![Hop::ToNode(ywire::update_frame(&r1)), Hop::ToRust(n1), Hop::ToRust(n2)])?;
    assert_converged(&mut node, &rust.room)?;
    assert_eq!(rust.room.code(), expected);
    let final1 = expected;

    // Round 2: both insert at the same position; either order is fine, both must survive
    // and both replicas must agree.
    let (pos, _) = utf16_find(&final1, "fn main")?;
    let r2 = rust.edit(pos, 0, "/* r: ß */");
    let n3 = node.edit(pos, 0, "/* n: 𝄞 */")?;
    pump(&mut node, &mut rust, vec![Hop::ToNode(ywire::update_frame(&r2)), Hop::ToRust(n3)])?;
    assert_converged(&mut node, &rust.room)?;
    let final2 = rust.room.code();
    ensure!(
        final2.contains("/* r: ß *//* n: 𝄞 */fn main") || final2.contains("/* n: 𝄞 *//* r: ß */fn main"),
        "{final2:?}"
    );

    // Round 3: several updates per side, Node's delivered out of order: the room holds the
    // early one as pending until its predecessor arrives.
    let code = rust.room.code();
    let units: Vec<u16> = code.encode_utf16().collect();
    let end = u32::try_from(units.len())?;
    let (a, b) = ("// a ☕\n", "// b 🍵\n");
    let n4 = node.edit(end, 0, a)?;
    let n5 = node.edit(end + u32::try_from(a.encode_utf16().count())?, 0, b)?;
    let n6 = node.edit(0, 3, "")?;
    let r3 = rust.edit(0, 0, "#![allow(dead_code)] 🧪\n");
    let r4 = rust.edit(5, 6, "");
    rust.receive(&n5)?;
    ensure!(rust.room.has_pending(), "an update whose predecessor is missing should be pending");
    rust.receive(&n4)?;
    ensure!(!rust.room.has_pending(), "pending update was not integrated");
    pump(
        &mut node,
        &mut rust,
        vec![Hop::ToRust(n6), Hop::ToNode(ywire::update_frame(&r3)), Hop::ToNode(ywire::update_frame(&r4))],
    )?;
    assert_converged(&mut node, &rust.room)?;
    let expected = format!("#![alad_code)] 🧪\n{}{a}{b}", String::from_utf16(&units[3..])?);
    assert_eq!(rust.room.code(), expected);

    // A late query gets every state the room knows, in one answer.
    let (query, _) = node.frame(json!({"op": "query"}))?;
    let out = rust.receive(&query)?;
    match decode_one(&out.reply)? {
        Message::Awareness(up) => {
            let mut clients: Vec<u64> = up.clients.keys().map(ClientID::get).collect();
            clients.sort_unstable();
            let mut want = vec![RUST_ID, NODE_BIG_ID];
            want.sort_unstable();
            assert_eq!(clients, want);
        }
        m => bail!("query answer decoded as {m:?}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Read-only sessions against a stock client
// ---------------------------------------------------------------------------------------

#[test]
fn read_only_session_with_yjs_observer() -> Result<()> {
    let mut node = node_or_skip!("read_only_session_with_yjs_observer");
    node.reset(NODE_ID)?;
    let mut rust = RustPeer::new(RUST_ID, true);
    rust.edit(0, 0, "print('hi 👋 there')\n");
    let (at, len) = utf16_find(&rust.room.code(), " there")?;
    rust.edit(at, len, ""); // the room's document has a delete set
    let before = rust.room.encode_state();
    let reference = RoomDoc::new(1);
    reference.apply_v1(&before)?;

    // First connection: the observer syncs; its empty step 2 is not an edit.
    let (step1, _) = node.frame(json!({"op": "step1"}))?;
    let mut hops: Vec<Hop> = rust.start().into_iter().map(Hop::ToNode).collect();
    hops.push(Hop::ToRust(step1));
    let outcomes = pump(&mut node, &mut rust, hops)?;
    ensure!(outcomes.iter().all(|o| !o.denied && o.updates.is_empty()), "observer denied while only syncing");
    assert_converged(&mut node, &rust.room)?;
    assert_eq!(node.state()?["denied"], json!([]));

    // Reconnect: the observer's step 2 now repeats the room's delete set (yjs always sends
    // its whole delete set), still without a single new struct. Not an edit either.
    let mut rust = RustPeer::new(RUST_ID, true);
    rust.room.apply_v1(&before)?;
    let (step1, _) = node.frame(json!({"op": "step1"}))?;
    let mut hops: Vec<Hop> = rust.start().into_iter().map(Hop::ToNode).collect();
    hops.push(Hop::ToRust(step1));
    let outcomes = pump(&mut node, &mut rust, hops)?;
    ensure!(
        outcomes.iter().all(|o| !o.denied),
        "an observer that never edited was denied on reconnect (its step 2 only repeats deletions the room has)"
    );
    assert_eq!(node.state()?["denied"], json!([]));

    // Edits are refused, each one, and the observer is told.
    for (i, insert) in ["x", "yz 🙃", "w"].into_iter().enumerate() {
        let f = node.edit(0, 0, insert)?;
        let out = rust.receive(&f)?;
        ensure!(out.denied && out.updates.is_empty(), "observer edit #{i} ({insert:?}) was not denied: {out:?}");
        assert_eq!(decode_one(&out.reply)?, Message::Auth(Some("read-only: observers may not edit".into())));
        let (res, _) = node.recv_stock(&out.reply)?;
        assert_eq!(res["messages"][0]["denied"].as_str(), Some("read-only: observers may not edit"));
    }
    // A deletion alone is an edit too.
    let f = node.edit(0, 2, "")?;
    ensure!(rust.receive(&f)?.denied, "observer deletion was not denied");
    assert_eq!(rust.room.code(), reference.code(), "the room's text changed");
    let (a, b) = (rust.room.raw_yrs_doc().transact().snapshot(), reference.raw_yrs_doc().transact().snapshot());
    ensure!(a == b, "the room's document changed");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------------------

/// Tiny deterministic PRNG for mutations (no extra dependencies).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn varuint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

#[test]
fn truncated_and_garbage_frames_are_errors() -> Result<()> {
    let mut node = node_or_skip!("truncated_and_garbage_frames_are_errors");
    node.reset(NODE_ID)?;
    let update = node.edit(0, 0, "let x = '🌍';\n")?;
    node.edit(4, 1, "y")?;
    let (step1, _) = node.frame(json!({"op": "step1"}))?;
    let (step2, _) = node.frame(json!({"op": "step2"}))?;
    let (aw, _) = node.frame(json!({"op": "awareness", "state": {"user": {"name": "Zoë"}}}))?;
    let (auth, _) = node.frame(json!({"op": "auth", "reason": "nope ✋"}))?;
    let (query, _) = node.frame(json!({"op": "query"}))?;
    let singles: [(&str, &[u8]); 5] =
        [("step1", &step1), ("step2", &step2), ("update", &update), ("awareness", &aw), ("auth", &auth)];

    // Every strict prefix of a one-message frame fails: a frame that ends mid-message is an
    // error, not a shorter frame.
    for (name, f) in singles {
        ywire::decode_frame(f).with_context(|| format!("{name} must decode"))?;
        for cut in 1..f.len() {
            let r = no_panic("decode_frame", &f[..cut], || ywire::decode_frame(&f[..cut]))?;
            ensure!(r.is_err(), "{name} cut to {cut}/{} bytes decoded as {:?}", f.len(), r);
        }
    }
    // A whole message followed by a truncated one fails the frame too.
    let two = concat(&[&query, &aw[..aw.len() - 1]]);
    ensure!(ywire::decode_frame(&two).is_err(), "trailing partial message accepted");
    let two = concat(&[&step1, &update[..3]]);
    ensure!(ywire::decode_frame(&two).is_err(), "trailing partial message accepted");

    // Garbage.
    let big = 1u64 << 53; // not a JavaScript-safe client id: lib0 refuses it
    let mut big_sv = vec![0, 0];
    let sv_body = [varuint(1), varuint(big), varuint(5)].concat();
    big_sv.extend(varuint(sv_body.len() as u64));
    big_sv.extend(&sv_body);
    let mut big_aw = vec![1];
    let aw_body = [varuint(1), varuint(big + 3), varuint(1), varuint(2), b"{}".to_vec()].concat();
    big_aw.extend(varuint(aw_body.len() as u64));
    big_aw.extend(&aw_body);
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("all ones", vec![0xff; 16]),
        ("unknown message type", vec![4]),
        ("unknown message type 99", vec![99, 0]),
        ("unknown sync type", vec![0, 3, 0]),
        ("sync without payload", vec![0, 1]),
        ("bad state vector", vec![0, 0, 3, 0xff, 0xff, 0xff]),
        ("state vector count too large", vec![0, 0, 2, 0x7f, 1]),
        ("huge length prefix", vec![0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0]),
        ("varint overflow", vec![0x80; 11]),
        ("awareness garbage", vec![1, 3, 1, 2, 0xff]),
        ("awareness bad utf-8", vec![1, 5, 1, 2, 1, 1, 0xc3]),
        ("awareness count too large", vec![1, 1, 0x7f]),
        ("awareness state not JSON", vec![1, 7, 1, 2, 1, 3, b'{', b'x', b'}']),
        ("awareness trailing bytes", vec![1, 7, 1, 2, 1, 2, b'{', b'}', 0]),
        ("state vector trailing bytes", vec![0, 0, 4, 1, 2, 3, 0]),
        ("auth bad utf-8", vec![2, 0, 2, 0xc3, 0x28]),
        ("auth without reason", vec![2, 0]),
        ("auth reason too long", vec![2, 0, 9, b'a']),
        ("state vector client >= 2^53", big_sv),
        ("awareness client >= 2^53", big_aw),
    ];
    for (name, g) in &garbage {
        let r = no_panic("decode_frame", g, || ywire::decode_frame(g))?;
        ensure!(r.is_err(), "garbage {name:?} ({}) decoded as {:?}", hex(g), r);
        let mut rust = RustPeer::new(RUST_ID, false);
        let r = no_panic("YSession::receive", g, || rust.session.receive(&rust.room, &mut rust.awareness, g, 1))?;
        ensure!(r.is_err(), "garbage {name:?} accepted by receive");
    }
    // A well-framed update whose payload is garbage: decode_frame does not look inside,
    // the session refuses it.
    for payload in [vec![0xff, 0xff, 0xff], vec![1, 1], update[3..update.len() - 1].to_vec()] {
        let f = ywire::encode_frame(&[Message::Sync(SyncMessage::Update(payload.clone()))]);
        let mut rust = RustPeer::new(RUST_ID, false);
        let r = no_panic("YSession::receive", &f, || rust.session.receive(&rust.room, &mut rust.awareness, &f, 1))?;
        ensure!(r.is_err(), "garbage update payload {} accepted: {r:?}", hex(&payload));
    }

    // Message count limit.
    ensure!(ywire::decode_frame(&vec![3u8; MAX_MESSAGES])?.len() == MAX_MESSAGES);
    ensure!(ywire::decode_frame(&vec![3u8; MAX_MESSAGES + 1]).is_err(), "message limit not enforced");

    // Random mutations of real frames: Ok or Err, never a panic.
    let all = concat(&[&step1, &step2, &update, &aw, &auth, &query]);
    let mut rng = Lcg(0x5eed_1234_abcd_0001);
    for i in 0..4000 {
        let base: &[u8] = match i % 7 {
            0 => &step1,
            1 => &step2,
            2 => &update,
            3 => &aw,
            4 => &auth,
            5 => &query,
            _ => &all,
        };
        let mut f = base.to_vec();
        for _ in 0..=rng.below(3) {
            match rng.below(4) {
                0 if !f.is_empty() => {
                    let j = rng.below(f.len());
                    f[j] ^= 1 << rng.below(8);
                }
                1 if !f.is_empty() => {
                    let j = rng.below(f.len());
                    f[j] = rng.next() as u8;
                }
                2 => {
                    let j = rng.below(f.len() + 1);
                    f.insert(j, rng.next() as u8);
                }
                _ if !f.is_empty() => {
                    let j = rng.below(f.len());
                    f.truncate(j);
                }
                _ => {}
            }
        }
        let _ = no_panic("decode_frame", &f, || ywire::decode_frame(&f))?;
        let mut rust = RustPeer::new(RUST_ID, false);
        let _ = no_panic("YSession::receive", &f, || rust.session.receive(&rust.room, &mut rust.awareness, &f, 1))?;
    }
    Ok(())
}
