//! A token bucket per connection.

use std::time::Instant;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate` messages per second sustained, bursts of 4× that.
    pub(crate) fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        RateLimiter { rate, burst: rate * 4.0, tokens: rate * 4.0, last: Instant::now() }
    }

    /// Takes one token; false when the connection is over its rate.
    pub(crate) fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
