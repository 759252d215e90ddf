//! Code runs' records: the node writes them into `runs` with its own identity (only the
//! node's service identity may write there), and a version after a successful run.

use arena_core::records::{RunRecord, VersionCause};
use arena_core::sync::wire::Wire;

use super::env::RoomStore;
use super::state::RoomState;
use crate::clock::now_ms;

impl<S: RoomStore> RoomState<S> {
    /// Writes `record` (replacing the run's earlier records with `replace`), then a version
    /// labelled `version` when asked; sends the signed envelopes to every connection and the
    /// network. Returns the version's id.
    pub(super) fn write_run(
        &mut self,
        record: &RunRecord,
        replace: bool,
        version: Option<String>,
    ) -> Result<Option<String>, String> {
        let now = now_ms();
        // What stock clients wrote before goes first, as it would have.
        self.commit_proxied(now);
        if !self.wake() {
            return Err("the room's storage failed".into());
        }
        let written = self.with_room(|_, r| {
            if !r.can_proxy() {
                return Err("this node does not sign for this room (it is hosted by another node)".to_owned());
            }
            r.edit_deferred(now, |e| {
                if replace {
                    e.remove_run(&record.id);
                }
                e.push_run(record);
            })
            .map_err(|e| e.to_string())?;
            match version {
                Some(label) => r.create_version(&label, VersionCause::Run, now).map(|v| Some(v.id)),
                None => r.seal_pending(now).map(|_| None),
            }
            .map_err(|e| e.to_string())
        });
        let written = written.unwrap_or_else(|| Err("the room's storage failed".into()));
        let sealed = self.room.as_mut().map(|r| r.take_sealed()).unwrap_or_default();
        if !sealed.is_empty() {
            self.env.to_network(self.id, vec![Wire::Envelopes(sealed.clone())]);
            for env in &sealed {
                self.broadcast_envelope(env, None);
            }
        }
        written
    }
}
