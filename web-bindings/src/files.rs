//! The room's extra files (`files` beside `code`): list, read, add, remove and edit them, and
//! read them at a version. Each change is one signed envelope; its frames come back to send.

use arena_core::history::DiffLine;
use js_sys::Array;
use wasm_bindgen::prelude::*;

use crate::js::{frames, list, ms, object};
use crate::room::{cut, edit_splices, Room};

#[wasm_bindgen]
impl Room {
    /// The extra files' names, sorted.
    pub fn files(&self) -> Vec<String> {
        self.client.room().doc().files()
    }

    /// The text of file `name` (undefined when the room does not list it).
    pub fn file(&self, name: &str) -> Option<String> {
        self.client.room().doc().file(name)
    }

    /// Adds file `name` (letters, digits, `_-.+`, at most 64 bytes, not starting with a dot;
    /// at most 32 files). Returns the frames to send (none when it was listed already).
    #[wasm_bindgen(js_name = addFile)]
    pub fn add_file(&mut self, name: &str, now_ms: f64) -> Result<Array, JsError> {
        self.client.room_mut().add_file(name, ms(now_ms))?;
        Ok(frames(self.client.outgoing()?))
    }

    /// Removes file `name` (its text is emptied; versions keep it). Returns the frames.
    #[wasm_bindgen(js_name = removeFile)]
    pub fn remove_file(&mut self, name: &str, now_ms: f64) -> Result<Array, JsError> {
        self.client.room_mut().remove_file(name, ms(now_ms))?;
        Ok(frames(self.client.outgoing()?))
    }

    /// Edits file `name` like `edit` edits the code: `ops` holds `[pos, delete]` pairs and
    /// `inserts` each one's text. One signed envelope; returns its frames.
    #[wasm_bindgen(js_name = editFile)]
    pub fn edit_file(&mut self, name: &str, ops: &[u32], inserts: Vec<String>, now_ms: f64) -> Result<Array, JsError> {
        let splices = edit_splices(ops, inserts)?;
        self.client.room_mut().splice_file(name, &splices, ms(now_ms))?;
        Ok(frames(self.client.outgoing()?))
    }

    /// Line diffs of the extra files between two versions (undefined: now), over the files
    /// listed at either: `[{name, lines: [{kind, text}]}]`.
    #[wasm_bindgen(js_name = fileDiffs)]
    pub fn file_diffs(&mut self, from: Option<String>, to: Option<String>) -> Result<JsValue, JsError> {
        self.client.seal_quietly()?;
        let diffs = self.client.room().file_diffs(&cut(from), &cut(to))?;
        Ok(list(diffs.into_iter().map(|(name, lines)| {
            let lines = list(lines.iter().map(|l| {
                let (kind, text) = match l {
                    DiffLine::Same(t) => ("same", t),
                    DiffLine::Removed(t) => ("removed", t),
                    DiffLine::Added(t) => ("added", t),
                };
                object(&[("kind", kind.into()), ("text", text.as_str().into())])
            }));
            object(&[("name", name.into()), ("lines", lines)])
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Natively only paths that create no JS values run: a file added, edited and synced.
    #[test]
    fn files_reach_the_other_replica() {
        let mut host = Room::create(&[7; 32], &[1; 32], "Ada", "python", "demo", 1_000.0).unwrap();
        let token = host.invite_token("candidate", 10_000.0, 1_000.0).unwrap();
        let mut cand = Room::join(&host.room_id(), &token, "Bob", &[2; 32], 2_000.0).unwrap();
        host.client.room_mut().add_file("helper.py", 2_100).unwrap();
        let s = arena_core::history::Splice { pos: 0, delete: 0, insert: "X = 1\n".into() };
        host.client.room_mut().splice_file("helper.py", &[s], 2_100).unwrap();
        for f in cand.client.open(2_200).unwrap() {
            for r in host.client.receive(&f, 2_200).unwrap().replies {
                cand.client.receive(&r, 2_300).unwrap();
            }
        }
        assert_eq!(cand.files(), ["helper.py"]);
        assert_eq!(cand.file("helper.py").as_deref(), Some("X = 1\n"));
        assert_eq!(cand.file("nope.py"), None);
        assert!(host.client.room_mut().add_file("../x", 2_400).is_err());
    }
}
