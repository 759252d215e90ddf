//! A token bucket per connection.

use std::time::Instant;

/// 24 bytes (single precision, the burst derived): it sits in every idle connection's task.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f32,
    tokens: f32,
    last: Instant,
}

impl RateLimiter {
    /// `rate` messages per second sustained, bursts of 4× that.
    pub(crate) fn new(rate: u32) -> Self {
        let rate = rate.max(1) as f32;
        RateLimiter { rate, tokens: rate * 4.0, last: Instant::now() }
    }

    /// Takes one token; false when the connection is over its rate.
    pub(crate) fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f32() * self.rate).min(self.rate * 4.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
