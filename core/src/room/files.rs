//! The room's extra files on a replica: add, remove and edit them as signed edits, and read
//! them at any point of history. The document side is [`crate::RoomDoc::files`].

use super::Room;
use crate::doc::Edit;
use crate::envelope::Envelope;
use crate::error::Result;
use crate::history::Splice;
use crate::store::Store;

use super::versions::Cut;

impl<S: Store> Room<S> {
    /// Runs `f` as one signed edit; its error (a bad name, a file not listed) is the answer,
    /// and then nothing was written. `dyn`: one copy of the edit path in the WASM module for
    /// every file operation.
    fn edit_files(
        &mut self,
        now_ms: u64,
        f: &mut dyn FnMut(&mut Edit<'_, '_>) -> Result<()>,
    ) -> Result<Option<Envelope>> {
        let mut out = Ok(());
        let env = self.edit(now_ms, |e| out = f(e))?;
        out.map(|()| env)
    }

    /// Lists file `name` (see [`Edit::add_file`]); nothing to send when it was listed.
    pub fn add_file(&mut self, name: &str, now_ms: u64) -> Result<Option<Envelope>> {
        crate::doc::check_file_name(name)?;
        // Names of removed files count too (every replica counts every name it has seen).
        if !self.ledger.may_add_file(name) {
            return Err(crate::CoreError::NotAllowed(format!(
                "a room takes at most {} file names (removed files count)",
                crate::MAX_FILES
            )));
        }
        self.edit_files(now_ms, &mut |e| e.add_file(name, now_ms).map(drop))
    }

    /// Unlists file `name` and empties it (see [`Edit::remove_file`]).
    pub fn remove_file(&mut self, name: &str, now_ms: u64) -> Result<Option<Envelope>> {
        self.edit_files(now_ms, &mut |e| e.remove_file(name).map(drop))
    }

    /// Applies `splices` (in order) to file `name`, which must be listed.
    pub fn splice_file(&mut self, name: &str, splices: &[Splice], now_ms: u64) -> Result<Option<Envelope>> {
        self.edit_files(now_ms, &mut |e| {
            if e.file(name).is_none() {
                return Err(crate::CoreError::NotFound(format!("file {}", crate::doc::files::shown(name))));
            }
            for s in splices {
                e.splice_file(name, s.pos, s.delete, &s.insert)?;
            }
            Ok(())
        })
    }

    /// The extra files listed at `cut`, with their texts, sorted by name.
    pub fn files_at(&self, cut: &Cut) -> Result<Vec<(String, String)>> {
        Ok(self.doc_at(cut)?.file_texts())
    }
}
