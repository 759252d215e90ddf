//! Limits: a token bucket per connection, a token bucket per client IP (for the HTTP API),
//! and caps on open connections per IP, per invite link and in total (for `/signal` and
//! `/yws`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::clock::now_ns;

/// 16 bytes (single precision, the burst derived, the clock in nanoseconds since the
/// [`clock`](crate::clock)'s epoch): it sits in every idle connection, and at 16 bytes a room's inline
/// connection fits the allocator's 192-byte class instead of its 224 one.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f32,
    tokens: f32,
    /// Nanoseconds since the clock's epoch at the last refill (u64: 584 years).
    last: u64,
}

impl RateLimiter {
    /// `rate` messages per second sustained, bursts of 4× that.
    pub(crate) fn new(rate: u32) -> Self {
        let rate = rate.max(1) as f32;
        RateLimiter { rate, tokens: rate * 4.0, last: now_ns() }
    }

    /// Takes one token; false when the connection is over its rate.
    pub(crate) fn allow(&mut self) -> bool {
        let now = now_ns();
        let elapsed = now.saturating_sub(self.last) as f32 / 1e9;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate * 4.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets by client IP: `per_minute` requests a minute, a burst of as many. At most
/// [`PerIp::MAX_CLIENTS`] addresses are tracked; full buckets (clients quiet for a minute) are
/// forgotten first, and when every tracked client is still busy a new one is refused.
#[derive(Debug)]
pub(crate) struct PerIp {
    per_sec: f64,
    burst: f64,
    /// Tokens and when they were last refilled (clock nanoseconds), by address.
    buckets: Mutex<HashMap<IpAddr, (f64, u64)>>,
}

impl PerIp {
    const MAX_CLIENTS: usize = 10_000;

    pub(crate) fn per_minute(n: u32) -> Self {
        let n = f64::from(n.max(1));
        PerIp { per_sec: n / 60.0, burst: n, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `ip`; false when it is over its rate.
    pub(crate) fn allow(&self, ip: IpAddr) -> bool {
        let Ok(mut b) = self.buckets.lock() else { return false };
        let now = now_ns();
        let refill = |(tokens, last): (f64, u64)| {
            (tokens + now.saturating_sub(last) as f64 / 1e9 * self.per_sec).min(self.burst)
        };
        if !b.contains_key(&ip) && b.len() >= Self::MAX_CLIENTS {
            b.retain(|_, v| refill(*v) < self.burst);
            if b.len() >= Self::MAX_CLIENTS {
                return false;
            }
        }
        let v = b.entry(ip).or_insert((self.burst, now));
        let tokens = refill(*v);
        if tokens >= 1.0 {
            *v = (tokens - 1.0, now);
            true
        } else {
            *v = (tokens, now);
            false
        }
    }
}

/// Open connections, per client IP, per invite link and in total.
#[derive(Debug)]
pub(crate) struct ConnCaps {
    per_ip: usize,
    per_link: usize,
    total: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    by_link: HashMap<LinkKey, usize>,
}

/// What identifies an invite link under its cap: the first 6 bytes of its invite key. Kept
/// in what was padding of every connection's [`Slot`] (a 16-byte id would make each idle
/// client's entry in its room 16 bytes larger); two links share a count only if their keys
/// share 48 bits, and only the room's key holder makes links.
type LinkKey = [u8; 6];

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CapError {
    PerIp(usize),
    PerLink(usize),
    Total(usize),
}

impl CapError {
    /// What was refused; `what` names the connections ("signaling", "y-websocket").
    pub(crate) fn message(&self, what: &str) -> String {
        match *self {
            CapError::PerIp(n) => format!("at most {n} {what} connections per address"),
            CapError::PerLink(n) => format!("at most {n} {what} connections per invite link"),
            CapError::Total(n) => format!("the node holds its maximum of {n} {what} connections"),
        }
    }

    /// The answer before the upgrade: 429 for the per-address and per-link caps, 503 for
    /// the node's.
    pub(crate) fn response(&self, what: &str) -> Response {
        let status = match self {
            CapError::PerIp(_) | CapError::PerLink(_) => StatusCode::TOO_MANY_REQUESTS,
            CapError::Total(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, self.message(what)).into_response()
    }
}

/// A connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    caps: Arc<ConnCaps>,
    ip: IpAddr,
    /// Its invite link, once counted under the link's cap.
    link: Option<LinkKey>,
}

impl ConnCaps {
    pub(crate) fn new(per_ip: usize, per_link: usize, total: usize) -> Self {
        ConnCaps { per_ip, per_link, total, open: Mutex::new(Open::default()) }
    }

    /// A place for a connection from `ip`, if it is under the per-address cap and the
    /// node's.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, CapError> {
        let Ok(mut open) = self.open.lock() else { return Err(CapError::Total(self.total)) };
        let open = &mut *open;
        if open.total >= self.total {
            return Err(CapError::Total(self.total));
        }
        let n = open.by_ip.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return Err(CapError::PerIp(self.per_ip));
        }
        *n += 1;
        open.total += 1;
        Ok(Slot { caps: self.clone(), ip, link: None })
    }
}

impl Slot {
    /// Counts the connection under the cap of the invite link whose key is `invite` too,
    /// if it is under it (known once the link was checked: before the upgrade on `/yws`,
    /// at the first room topic on `/signal`). A slot is counted under one link at most:
    /// later calls change nothing.
    pub(crate) fn hold_link(&mut self, invite: &arena_core::PeerKey) -> Result<(), CapError> {
        if self.link.is_some() {
            return Ok(());
        }
        let mut key = LinkKey::default();
        key.copy_from_slice(&invite.0[..std::mem::size_of::<LinkKey>()]);
        let Ok(mut open) = self.caps.open.lock() else { return Err(CapError::Total(self.caps.total)) };
        let n = open.by_link.entry(key).or_insert(0);
        if *n >= self.caps.per_link {
            return Err(CapError::PerLink(self.caps.per_link));
        }
        *n += 1;
        self.link = Some(key);
        Ok(())
    }
}

/// One less for `key`, forgotten at 0.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.caps.open.lock() {
            open.total = open.total.saturating_sub(1);
            release(&mut open.by_ip, &self.ip);
            if let Some(link) = &self.link {
                release(&mut open.by_link, link);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_four_times_the_rate_then_refused_then_refilled() {
        assert_eq!(std::mem::size_of::<RateLimiter>(), 16);
        let mut l = RateLimiter::new(50);
        let allowed = (0..1000).take_while(|_| l.allow()).count();
        // 200 at once (more only if the loop was held up long enough to refill some).
        assert!((200..1000).contains(&allowed), "{allowed}");
        assert!(!l.allow());
        std::thread::sleep(std::time::Duration::from_millis(100));
        // ~5 tokens back after 100 ms at 50/s (up to the burst, 200, on a stalled machine).
        let again = (0..1000).take_while(|_| l.allow()).count();
        assert!((3..=200).contains(&again), "{again}");
    }

    #[test]
    fn caps_count_per_ip_and_in_total_and_slots_give_their_place_back() {
        let caps = Arc::new(ConnCaps::new(2, 10, 3));
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let s1 = caps.acquire(a).unwrap();
        let _s2 = caps.acquire(a).unwrap();
        assert_eq!(caps.acquire(a).unwrap_err(), CapError::PerIp(2));
        let _s3 = caps.acquire(b).unwrap();
        assert_eq!(caps.acquire(b).unwrap_err(), CapError::Total(3));
        drop(s1);
        assert!(caps.acquire(a).is_ok());
    }

    #[test]
    fn caps_count_per_link_and_a_refused_link_keeps_no_place() {
        // A slot sits in every idle client's entry in its room: the link fits its padding.
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        let caps = Arc::new(ConnCaps::new(100, 2, 100));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let (x, y) = (arena_core::PeerKey([1; 32]), arena_core::PeerKey([2; 32]));
        let mut s1 = caps.acquire(ip).unwrap();
        s1.hold_link(&x).unwrap();
        s1.hold_link(&x).unwrap();
        let mut s2 = caps.acquire(ip).unwrap();
        s2.hold_link(&x).unwrap();
        let mut s3 = caps.acquire(ip).unwrap();
        assert_eq!(s3.hold_link(&x).unwrap_err(), CapError::PerLink(2));
        s3.hold_link(&y).unwrap();
        drop(s1);
        let mut s4 = caps.acquire(ip).unwrap();
        s4.hold_link(&x).unwrap();
        drop((s2, s3, s4));
        let open = caps.open.lock().unwrap();
        assert_eq!((open.total, open.by_ip.len(), open.by_link.len()), (0, 0, 0), "every place given back");
    }

    #[test]
    fn per_ip_buckets_allow_a_minutes_burst_per_address() {
        let l = PerIp::per_minute(3);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert_eq!((0..10).take_while(|_| l.allow(a)).count(), 3);
        assert!(l.allow(b));
    }
}
