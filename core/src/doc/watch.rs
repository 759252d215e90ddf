//! Watching the code buffer for an editor: every change as splices in UTF-16 units, and
//! cursor positions that survive concurrent edits (relative positions whose JSON is the same
//! as Yjs's `relativePositionToJSON`, so stock y-codemirror / y-monaco peers read them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use yrs::types::text::TextEvent;
use yrs::types::Delta;
use yrs::{Any, Assoc, IndexedSequence, Observable, Origin, Out, StickyIndex, Text, TextRef, Transact, TransactionMut};

use super::RoomDoc;
use crate::history::Splice;

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

    /// A relative position in the code buffer for UTF-16 offset `pos` (clamped), as Yjs JSON.
    /// `before`: stick to the character before (a cursor at the end of what was typed).
    pub fn code_position(&self, pos: u32, before: bool) -> Option<serde_json::Value> {
        let txn = self.doc.transact();
        let pos = pos.min(self.code.len(&txn));
        let (assoc, other) = if before { (Assoc::Before, Assoc::After) } else { (Assoc::After, Assoc::Before) };
        // yrs has no `After` position at the very end (Yjs has one); stick to the last
        // character there instead.
        let sticky = self.code.sticky_index(&txn, pos, assoc).or_else(|| self.code.sticky_index(&txn, pos, other))?;
        serde_json::to_value(&sticky).ok()
    }

    /// The current UTF-16 offset of a relative position (from [`RoomDoc::code_position`] or
    /// a Yjs peer). None when it is malformed or points into another type.
    pub fn resolve_position(&self, rel: &serde_json::Value) -> Option<u32> {
        let sticky: StickyIndex = serde_json::from_value(rel.clone()).ok()?;
        let txn = self.doc.transact();
        let off = sticky.get_offset(&txn)?;
        // Only positions inside `code` mean anything to the editor.
        let code = yrs::branch::BranchPtr::from(AsRef::<yrs::branch::Branch>::as_ref(&self.code));
        (off.branch == code).then_some(off.index)
    }
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
        assert!(rel.get("item").is_some(), "Yjs relative position JSON: {rel}");
        let ((), u) = a.edit(|e| e.splice_code(0, 0, "12"));
        b.apply_v1(&u).unwrap();
        assert_eq!(b.resolve_position(&rel), Some(5));
        for before in [true, false] {
            let end = b.code_position(u32::MAX, before).unwrap();
            assert_eq!(b.resolve_position(&end), Some(8));
        }
        assert_eq!(b.resolve_position(&serde_json::json!({"nonsense": 1})), None);
        // A position in another root is not a code position.
        let stray = serde_json::json!({"tname": "meta", "assoc": 0});
        assert_eq!(b.resolve_position(&stray), None);
    }
}
