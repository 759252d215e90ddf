//! The user directory: Clerk user id → [`User`], in sled; and the ids of deleted users, so
//! that a late or retried update never brings a deleted user back (a deleted user's entry
//! keeps nothing but the id and the time of the deletion).

use crate::users::clerk::User;
use crate::users::queue::QueueError;

/// The directory's trees.
#[derive(Clone, Debug)]
pub(crate) struct Directory {
    users: sled::Tree,
    deleted: sled::Tree,
}

/// What an upsert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Upserted {
    /// Written.
    Written,
    /// The directory holds a newer version: nothing written.
    Stale,
    /// The user was deleted: nothing written.
    Deleted,
}

fn err(e: impl std::fmt::Display) -> QueueError {
    QueueError::from(format!("directory: {e}"))
}

impl Directory {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, QueueError> {
        Ok(Directory {
            users: db.open_tree("users/directory").map_err(err)?,
            deleted: db.open_tree("users/deleted").map_err(err)?,
        })
    }

    /// The user's entry.
    pub(crate) fn get(&self, id: &str) -> Result<Option<User>, QueueError> {
        let Some(raw) = self.users.get(id.as_bytes()).map_err(err)? else { return Ok(None) };
        serde_json::from_slice(&raw).map(Some).map_err(err)
    }

    /// Whether the user was deleted.
    pub(crate) fn was_deleted(&self, id: &str) -> Result<bool, QueueError> {
        self.deleted.contains_key(id.as_bytes()).map_err(err)
    }

    /// Writes `user` unless the directory holds a newer version or the user was deleted.
    pub(crate) fn upsert(&self, user: &User) -> Result<Upserted, QueueError> {
        if self.was_deleted(&user.id)? {
            return Ok(Upserted::Deleted);
        }
        if self.get(&user.id)?.is_some_and(|old| old.updated_at > user.updated_at) {
            return Ok(Upserted::Stale);
        }
        let raw = serde_json::to_vec(user).map_err(err)?;
        self.users.insert(user.id.as_bytes(), raw).map_err(err)?;
        Ok(Upserted::Written)
    }

    /// Removes the user's entry and remembers the id as deleted; whether there was an entry.
    pub(crate) fn delete(&self, id: &str, now_ms: u64) -> Result<bool, QueueError> {
        self.deleted.insert(id.as_bytes(), &now_ms.to_be_bytes()).map_err(err)?;
        Ok(self.users.remove(id.as_bytes()).map_err(err)?.is_some())
    }

    /// Every entry.
    pub(crate) fn all(&self) -> Result<Vec<User>, QueueError> {
        let mut out = Vec::new();
        for kv in self.users.iter() {
            let (_, v) = kv.map_err(err)?;
            out.push(serde_json::from_slice(&v).map_err(err)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::users::clerk::make_user;

    #[test]
    fn newer_wins_and_deleted_stays_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let d = Directory::open(&db).unwrap();
        let v = |name: &str, at| make_user("user_1".into(), name, "", None, None, None, at);
        assert_eq!(d.upsert(&v("New", 20)).unwrap(), Upserted::Written);
        assert_eq!(d.upsert(&v("Old", 10)).unwrap(), Upserted::Stale);
        assert_eq!(d.get("user_1").unwrap().unwrap().display_name, "New");
        assert!(d.delete("user_1", 30).unwrap());
        assert_eq!(d.get("user_1").unwrap(), None);
        assert_eq!(d.upsert(&v("Late", 25)).unwrap(), Upserted::Deleted);
        assert_eq!(d.get("user_1").unwrap(), None);
        assert!(d.all().unwrap().is_empty());
    }
}
