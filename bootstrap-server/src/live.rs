//! Live connections and the grants they joined with: the node closes a `/yws` or `/signal`
//! connection when its invite expires ([`run`]), and [`Live::close_link`] closes the ones of
//! an invite link (the hook for revocation records, which arena-core defines).
//!
//! A `/signal` connection is closed here (its loop gets the reason); a `/yws` one through its
//! room's actor, which the caller reaches (`close_yws`): this module knows no room.
//!
//! One registry and one timer task for the node, not a timer per connection or per room: an
//! idle client then costs a map entry here and a small guard in its room, and an idle room
//! keeps no timer armed for invites that expire in a week.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arena_core::{Grant, RoomId};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::clock::now_ms;
use crate::metrics::{inc, Metrics};

/// Close code for a connection whose invite expired or was revoked: the web client's
/// transports stop retrying on it (retrying would be refused anyway).
pub(crate) const CLOSE_DENIED: u16 = 4403;

/// What identifies a grant among a room's: the start of its invite key (one per link).
pub(crate) type GrantId = [u8; 16];

pub(crate) fn grant_id(g: &Grant) -> GrantId {
    invite_id(&g.invite)
}

fn invite_id(invite: &arena_core::PeerKey) -> GrantId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&invite.0[..16]);
    id
}

/// How to close a connection: a `/yws` one through its room's actor, a `/signal` one by
/// telling its loop the reason.
#[derive(Debug)]
enum Closer {
    Yws,
    Signal(oneshot::Sender<String>),
}

#[derive(Debug)]
struct Entry {
    room: RoomId,
    grant: GrantId,
    closer: Closer,
}

/// The registry: live connections by (expiry in unix seconds, connection id).
#[derive(Debug, Default)]
pub(crate) struct Live {
    map: Mutex<BTreeMap<(u64, u64), Entry>>,
    /// An entry that expires sooner than the timer's deadline came in.
    wake: Notify,
}

/// Keeps a connection in the registry while it lives (dropped with it).
#[derive(Debug)]
pub(crate) struct LiveGuard {
    live: Arc<Live>,
    key: (u64, u64),
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.live.map.lock() {
            m.remove(&self.key);
        }
    }
}

impl Live {
    fn register(self: &Arc<Self>, conn: u64, room: RoomId, expiry: u64, grant: GrantId, closer: Closer) -> LiveGuard {
        let key = (expiry, conn);
        if let Ok(mut m) = self.map.lock() {
            let sooner = m.keys().next().is_none_or(|first| key < *first);
            m.insert(key, Entry { room, grant, closer });
            if sooner {
                self.wake.notify_one();
            }
        }
        LiveGuard { live: self.clone(), key }
    }

    /// A `/yws` connection of `room`, registered by the room's actor as it takes the
    /// connection in (so the close it gets at expiry always finds it there).
    pub(crate) fn register_yws(self: &Arc<Self>, conn: u64, room: RoomId, expiry: u64, grant: GrantId) -> LiveGuard {
        self.register(conn, room, expiry, grant, Closer::Yws)
    }

    /// A `/signal` connection, once its token opened `room`: its loop closes it with the
    /// reason that comes on `close`.
    pub(crate) fn register_signal(
        self: &Arc<Self>,
        conn: u64,
        room: RoomId,
        grant: &Grant,
        close: oneshot::Sender<String>,
    ) -> LiveGuard {
        self.register(conn, room, grant.expiry, grant_id(grant), Closer::Signal(close))
    }

    /// Takes out the entries that match.
    fn take(&self, mut pick: impl FnMut(&(u64, u64), &Entry) -> bool) -> Vec<((u64, u64), Entry)> {
        let Ok(mut m) = self.map.lock() else { return Vec::new() };
        let keys: Vec<_> = m.iter().filter(|(k, e)| pick(k, e)).map(|(k, _)| *k).collect();
        keys.into_iter().filter_map(|k| m.remove(&k).map(|e| (k, e))).collect()
    }

    fn earliest(&self) -> Option<u64> {
        self.map.lock().ok()?.keys().next().map(|(expiry, _)| *expiry)
    }
}

impl Live {
    /// Closes every live connection (`/yws` and `/signal`) of `room` that joined with the
    /// invite link whose key is `invite` (a revoked invite, or a revoked member's link), with
    /// `reason`; returns how many. A `/yws` one is closed through `close_yws(room, conn,
    /// reason)` (its room's actor).
    pub(crate) fn close_link(
        &self,
        room: &RoomId,
        invite: &arena_core::PeerKey,
        reason: &str,
        metrics: &Metrics,
        close_yws: impl Fn(&RoomId, u64, &str),
    ) -> usize {
        let id = invite_id(invite);
        let gone = self.take(|_, e| e.room == *room && e.grant == id);
        let n = gone.len();
        close_entries(gone, reason, metrics, &close_yws);
        n
    }
}

fn close_entries(
    entries: Vec<((u64, u64), Entry)>,
    reason: &str,
    metrics: &Metrics,
    close_yws: &impl Fn(&RoomId, u64, &str),
) {
    for ((_, conn), e) in entries {
        inc(&metrics.connections_expired, 1);
        match e.closer {
            Closer::Signal(close) => {
                let _ = close.send(reason.to_owned());
            }
            Closer::Yws => close_yws(&e.room, conn, reason),
        }
    }
}

/// The reason given to a connection closed at its grant's expiry (the web room reads the
/// time out of "expired at {unix seconds}").
pub(crate) fn expired_reason(expiry: u64) -> String {
    format!("invite expired at {expiry} (now {})", now_ms() / 1000)
}

/// Closes connections as their invites expire, until `shutdown` (a `/yws` one through
/// `close_yws`, as in [`Live::close_link`]).
pub(crate) async fn run(
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    close_yws: impl Fn(&RoomId, u64, &str),
) {
    loop {
        // Valid through second `expiry`: closed once the clock passes it.
        let sleep = live.earliest().map(|expiry| {
            let due_ms = expiry.saturating_add(1).saturating_mul(1000);
            tokio::time::sleep(Duration::from_millis(due_ms.saturating_sub(now_ms())))
        });
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = live.wake.notified() => continue,
            _ = async { match sleep { Some(s) => s.await, None => std::future::pending().await } } => {}
        }
        let now = now_ms() / 1000;
        let expired = live.take(|(expiry, _), _| *expiry < now);
        for ((expiry, conn), e) in expired {
            debug!(conn, expiry, "invite expired: closing its connection");
            close_entries(vec![((expiry, conn), e)], &expired_reason(expiry), &metrics, &close_yws);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use arena_core::{Identity, Invite, Role};

    use super::*;

    /// The revocation hook closes the connections of one grant, in one room, and forgets them;
    /// a connection that leaves takes its entry with it.
    #[tokio::test]
    async fn close_grant_closes_that_grants_connections_only() {
        let room_key = Identity::from_seed([7; 32]);
        let room = room_key.public();
        let expiry = now_ms() / 1000 + 3600;
        let cand = Invite::issue(&room_key, Role::Candidate, expiry, 0, 1).grant;
        let host = Invite::issue(&room_key, Role::Host, expiry, 0, 2).grant;
        let live = Arc::new(Live::default());
        let metrics = Metrics::default();
        let yws_closed = std::cell::Cell::new(0);
        let no_yws = |_: &RoomId, _: u64, _: &str| yws_closed.set(yws_closed.get() + 1);
        let (tx1, rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        let (tx3, _rx3) = oneshot::channel();
        let _g1 = live.register_signal(1, room, &cand, tx1);
        let _g2 = live.register_signal(2, room, &host, tx2);
        let g3 = live.register_signal(3, room, &cand, tx3);
        drop(g3);
        assert_eq!(live.close_link(&room, &cand.invite, "invite revoked", &metrics, no_yws), 1);
        assert_eq!(rx1.await.unwrap(), "invite revoked");
        assert!(rx2.try_recv().is_err(), "the host's connection was closed too");
        assert_eq!(live.close_link(&room, &cand.invite, "again", &metrics, no_yws), 0);
        assert_eq!(live.map.lock().unwrap().len(), 1);
        assert_eq!(yws_closed.get(), 0, "no /yws connection here");
    }
}
