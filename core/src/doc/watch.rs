//! Watching the code buffer for an editor: every change as splices in UTF-16 units, and
//! cursor positions that survive concurrent edits (relative positions whose JSON is the same
//! as Yjs's `relativePositionToJSON`, so stock y-codemirror / y-monaco peers read them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use yrs::types::text::TextEvent;
use yrs::types::Delta;
use yrs::{
    Any, Assoc, ClientID, IndexScope, IndexedSequence, Observable, Origin, Out, StickyIndex, Text, TextRef, Transact,
    TransactionMut, ID,
};

use super::RoomDoc;
use crate::history::Splice;
use crate::json::{write_str, Json};

static NEXT_WATCH: AtomicU64 = AtomicU64::new(1);

/// Collects every committed change to the code buffer, local or remote, as splices to apply
/// in order (each against the text the previous ones produced), except the changes the
/// editor made itself ([`RoomDoc::edit_shown`]). Unsubscribes when dropped.
pub struct CodeWatch {
    /// Keeps the document (and so `text`'s branch) alive until we unsubscribed.
    _doc: yrs::Doc,
    text: TextRef,
    key: Origin,
    changes: Arc<Mutex<Vec<Splice>>>,
}

impl std::fmt::Debug for CodeWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeWatch").field("pending", &self.changes.lock().map(|c| c.len()).unwrap_or(0)).finish()
    }
}

impl CodeWatch {
    /// The changes collected since the last call.
    pub fn take(&self) -> Vec<Splice> {
        self.changes.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default()
    }
}

impl Drop for CodeWatch {
    fn drop(&mut self) {
        self.text.unobserve(self.key.clone());
    }
}

/// Turns a text event's delta (retain / insert / delete against the old text) into splices
/// that apply one after another.
fn splices(txn: &TransactionMut<'_>, e: &TextEvent, out: &mut Vec<Splice>) {
    let mut pos = 0u32;
    for d in e.delta(txn) {
        match d {
            Delta::Retain(n, _) => pos += n,
            Delta::Deleted(n) => out.push(Splice { pos, delete: *n, insert: String::new() }),
            Delta::Inserted(value, _) => {
                let insert = match value {
                    Out::Any(Any::String(s)) => s.to_string(),
                    // An embed (a stock client's insertEmbed) is one unit long.
                    _ => "\u{FFFC}".to_owned(),
                };
                let len = insert.encode_utf16().count() as u32;
                out.push(Splice { pos, delete: 0, insert });
                pos += len;
            }
        }
    }
}

impl RoomDoc {
    /// Starts collecting changes to the code buffer (see [`CodeWatch`]).
    pub fn watch_code(&self) -> CodeWatch {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&changes);
        let key = Origin::from(format!("arena/watch/{}", NEXT_WATCH.fetch_add(1, Ordering::Relaxed)).as_str());
        let shown = Origin::from(super::SHOWN_ORIGIN);
        self.code.observe(key.clone(), move |txn, e| {
            // The editor made this change itself: computing its splices would be wasted.
            if txn.origin() == Some(&shown) {
                return;
            }
            if let Ok(mut c) = sink.lock() {
                splices(txn, e, &mut c);
            }
        });
        CodeWatch { _doc: self.doc.clone(), text: self.code.clone(), key, changes }
    }

    /// A relative position in the code buffer for UTF-16 offset `pos` (clamped), as Yjs JSON
    /// text. `before`: stick to the character before (a cursor at the end of what was typed).
    pub fn code_position(&self, pos: u32, before: bool) -> Option<String> {
        let txn = self.doc.transact();
        let pos = pos.min(self.code.len(&txn));
        let (assoc, other) = if before { (Assoc::Before, Assoc::After) } else { (Assoc::After, Assoc::Before) };
        // yrs has no `After` position at the very end (Yjs has one); stick to the last
        // character there instead.
        let sticky = self.code.sticky_index(&txn, pos, assoc).or_else(|| self.code.sticky_index(&txn, pos, other))?;
        Some(sticky_json(&sticky))
    }

    /// The current UTF-16 offset of a relative position (JSON text from
    /// [`RoomDoc::code_position`] or a Yjs peer). None when it is malformed or points into
    /// another type.
    pub fn resolve_position(&self, rel: &str) -> Option<u32> {
        self.resolve_position_of(&Json::parse(rel)?)
    }

    pub(crate) fn resolve_position_of(&self, rel: &Json) -> Option<u32> {
        let sticky = sticky_of(rel)?;
        let txn = self.doc.transact();
        let off = sticky.get_offset(&txn)?;
        // Only positions inside `code` mean anything to the editor.
        let code = yrs::branch::BranchPtr::from(AsRef::<yrs::branch::Branch>::as_ref(&self.code));
        (off.branch == code).then_some(off.index)
    }
}

/// A `StickyIndex` as the JSON text its serde `Serialize` gives through a `serde_json::Value`
/// (keys sorted): `{"assoc":0,"item":{"client":1,"clock":2}}`, or `"tname"` / `"type"` for
/// a position in an empty type. Yjs's `relativePositionToJSON` shape.
fn sticky_json(sticky: &StickyIndex) -> String {
    let mut out = String::from("{\"assoc\":");
    out.push_str(if sticky.assoc == Assoc::Before { "-1" } else { "0" });
    let id_json = |out: &mut String, id: &ID| {
        out.push_str("{\"client\":");
        out.push_str(&id.client.get().to_string());
        out.push_str(",\"clock\":");
        out.push_str(&id.clock.to_string());
        out.push('}');
    };
    match sticky.scope() {
        IndexScope::Relative(id) => {
            out.push_str(",\"item\":");
            id_json(&mut out, id);
        }
        IndexScope::Root(name) => {
            out.push_str(",\"tname\":");
            write_str(&mut out, name);
        }
        IndexScope::Nested(id) => {
            out.push_str(",\"type\":");
            id_json(&mut out, id);
        }
    }
    out.push('}');
    out
}

/// A `StickyIndex` read as its serde `Deserialize` reads it (unknown keys refused; `item`
/// before `tname` before `type`; `assoc` 0, -1 or absent), except that a client id past 53
/// bits is refused (yrs would keep only its low bits).
fn sticky_of(v: &Json) -> Option<StickyIndex> {
    /// A field that may be null.
    fn nullable<T>(v: &Json, read: impl FnOnce(&Json) -> Option<T>) -> Option<Option<T>> {
        match v {
            Json::Null => Some(None),
            v => read(v).map(Some),
        }
    }
    fn id(v: &Json) -> Option<ID> {
        let (client, clock) = match v {
            Json::Arr(a) if a.len() == 2 => (a[0].as_u64()?, &a[1]),
            Json::Obj(_) => (v.get("client")?.as_u64()?, v.get("clock")?),
            _ => return None,
        };
        let clock = u32::try_from(clock.as_u64()?).ok()?;
        (client < 1 << 53).then(|| ID::new(ClientID::new(client), clock))
    }
    let (mut item, mut ttype, mut tname, mut assoc) = (None, None, None, None);
    for (key, value) in v.as_object()? {
        match key.as_str() {
            "item" => item = nullable(value, id)?,
            "type" => ttype = nullable(value, id)?,
            "tname" => tname = nullable(value, |n| n.as_str().map(std::sync::Arc::<str>::from))?,
            "assoc" => assoc = nullable(value, |a| a.as_i32())?,
            _ => return None,
        }
    }
    let scope = match (item, tname, ttype) {
        (Some(id), _, _) => IndexScope::Relative(id),
        (None, Some(name), _) => IndexScope::Root(name),
        (None, None, Some(id)) => IndexScope::Nested(id),
        (None, None, None) => return None,
    };
    let assoc = match assoc {
        None | Some(0) => Assoc::After,
        Some(-1) => Assoc::Before,
        Some(_) => return None,
    };
    Some(StickyIndex::new(scope, assoc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::apply_splices;

    #[test]
    fn remote_changes_replay_on_an_editor_copy() {
        let a = RoomDoc::new(1);
        let b = RoomDoc::new(2);
        let watch = b.watch_code();
        let mut editor = String::new();
        for (pos, del, ins) in [(0, 0, "héllo 👋 world\n"), (6, 0, "big "), (0, 1, "H"), (10, 5, "🌍"), (3, 0, "\t")]
        {
            let ((), u) = a.edit(|e| e.splice_code(pos, del, ins));
            b.apply_v1(&u).unwrap();
            editor = apply_splices_in_order(&editor, &watch.take());
            assert_eq!(editor, b.code());
        }
        // Several remote transactions at once, then a local edit: all arrive, in order.
        let ((), u1) = a.edit(|e| e.splice_code(0, 0, "// x\n"));
        let end = a.code_len();
        let ((), u2) = a.edit(|e| e.splice_code(end, 0, "end"));
        b.apply_v1(&u1).unwrap();
        b.apply_v1(&u2).unwrap();
        b.edit(|e| e.splice_code(2, 0, "!"));
        editor = apply_splices_in_order(&editor, &watch.take());
        assert_eq!(editor, b.code());
        drop(watch);
        assert_eq!(apply_splices(&b.code(), &[]), b.code());
    }

    fn apply_splices_in_order(text: &str, splices: &[Splice]) -> String {
        splices.iter().fold(text.to_owned(), |t, s| apply_splices(&t, std::slice::from_ref(s)))
    }

    #[test]
    fn positions_survive_concurrent_inserts() {
        let a = RoomDoc::new(1);
        let b = RoomDoc::new(2);
        let ((), u) = a.edit(|e| e.splice_code(0, 0, "abcdef"));
        b.apply_v1(&u).unwrap();
        let rel = b.code_position(3, false).unwrap();
        assert!(rel.contains("\"item\""), "Yjs relative position JSON: {rel}");
        let ((), u) = a.edit(|e| e.splice_code(0, 0, "12"));
        b.apply_v1(&u).unwrap();
        assert_eq!(b.resolve_position(&rel), Some(5));
        for before in [true, false] {
            let end = b.code_position(u32::MAX, before).unwrap();
            assert_eq!(b.resolve_position(&end), Some(8));
        }
        assert_eq!(b.resolve_position(r#"{"nonsense": 1}"#), None);
        assert_eq!(b.resolve_position("not json"), None);
        // A position in another root is not a code position.
        assert_eq!(b.resolve_position(r#"{"tname": "meta", "assoc": 0}"#), None);
    }

    /// Positions are written and read as yrs's serde impls through a `serde_json::Value`.
    #[test]
    fn positions_as_yrs_serde() {
        let a = RoomDoc::new(1);
        a.edit(|e| e.splice_code(0, 0, "abc"));
        let txn = a.doc.transact();
        let stickies = [
            a.code.sticky_index(&txn, 1, Assoc::After).unwrap(),
            a.code.sticky_index(&txn, 3, Assoc::Before).unwrap(),
            StickyIndex::new(IndexScope::Root("code".into()), Assoc::Before),
            StickyIndex::new(IndexScope::Root("q\"é".into()), Assoc::After),
            StickyIndex::new(IndexScope::Nested(ID::new(ClientID::new(9), 4)), Assoc::After),
        ];
        for s in &stickies {
            let theirs = serde_json::to_string(&serde_json::to_value(s).unwrap()).unwrap();
            assert_eq!(sticky_json(s), theirs);
            assert_eq!(sticky_of(&Json::parse(&theirs).unwrap()).as_ref(), Some(s));
        }
        for text in [
            r#"{"item":{"client":1,"clock":2},"assoc":-1}"#,
            r#"{"item":[1,2]}"#,
            r#"{"item":[1,2,3]}"#,
            r#"{"item":null,"tname":"code"}"#,
            r#"{"item":{"client":1,"clock":2,"x":0},"tname":"code","type":{"client":3,"clock":4}}"#,
            r#"{"type":{"client":3,"clock":4},"assoc":0}"#,
            r#"{"item":{"client":1,"clock":4294967296}}"#,
            r#"{"item":{"client":1,"clock":2},"assoc":1}"#,
            r#"{"item":{"client":1,"clock":2},"x":1}"#,
            r#"{"item":{"client":1}}"#,
            r#"{"assoc":0}"#,
            r#"{}"#,
            r#"[1,2]"#,
            r#"null"#,
        ] {
            let theirs =
                serde_json::from_str::<serde_json::Value>(text).and_then(serde_json::from_value::<StickyIndex>).ok();
            assert_eq!(sticky_of(&Json::parse(text).unwrap()), theirs, "{text}");
        }
    }
}
