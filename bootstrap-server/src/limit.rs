//! Limits: a token bucket per connection, a token bucket per client IP (for the HTTP API),
//! and caps on open connections per IP and in total (for `/signal` and `/yws`).

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

/// Open connections, per client IP and in total.
#[derive(Debug)]
pub(crate) struct ConnCaps {
    per_ip: usize,
    total: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CapError {
    PerIp(usize),
    Total(usize),
}

impl CapError {
    /// The answer before the upgrade: 429 for the per-address cap, 503 for the node's;
    /// `what` names the connections ("signaling", "y-websocket").
    pub(crate) fn response(&self, what: &str) -> Response {
        match *self {
            CapError::PerIp(n) => {
                (StatusCode::TOO_MANY_REQUESTS, format!("at most {n} {what} connections per address"))
            }
            CapError::Total(n) => {
                (StatusCode::SERVICE_UNAVAILABLE, format!("the node holds its maximum of {n} {what} connections"))
            }
        }
        .into_response()
    }
}

/// A connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    caps: Arc<ConnCaps>,
    ip: IpAddr,
}

impl ConnCaps {
    pub(crate) fn new(per_ip: usize, total: usize) -> Self {
        ConnCaps { per_ip, total, open: Mutex::new((0, HashMap::new())) }
    }

    /// A place for a connection from `ip`, if it is under both caps.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, CapError> {
        let Ok(mut open) = self.open.lock() else { return Err(CapError::Total(self.total)) };
        let (total, by_ip) = &mut *open;
        if *total >= self.total {
            return Err(CapError::Total(self.total));
        }
        let n = by_ip.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return Err(CapError::PerIp(self.per_ip));
        }
        *n += 1;
        *total += 1;
        Ok(Slot { caps: self.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.caps.open.lock() {
            let (total, by_ip) = &mut *open;
            *total = total.saturating_sub(1);
            if let Some(n) = by_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    by_ip.remove(&self.ip);
                }
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
        let caps = Arc::new(ConnCaps::new(2, 3));
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
    fn per_ip_buckets_allow_a_minutes_burst_per_address() {
        let l = PerIp::per_minute(3);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert_eq!((0..10).take_while(|_| l.allow(a)).count(), 3);
        assert!(l.allow(b));
    }
}
