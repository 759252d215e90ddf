//! A token bucket per connection.

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

#[cfg(test)]
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
}
