//! Time: Unix milliseconds ([`now_ms`]), and instants in 8 bytes, for state that every idle
//! room or connection keeps: nanoseconds since the process's epoch (the clock's first use;
//! opening the [`Registry`](crate::Registry) starts it).

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Starts the clock (instants taken before it read as the epoch).
pub(crate) fn start() {
    epoch();
}

/// Nanoseconds since the epoch (u64: 584 years).
pub(crate) fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Milliseconds since the epoch.
pub(crate) fn elapsed_ms() -> u64 {
    now_ns() / 1_000_000
}

/// The instant `ms` milliseconds after the epoch.
pub(crate) fn at_ms(ms: u64) -> Instant {
    epoch() + Duration::from_millis(ms)
}

/// An `Instant` in 8 bytes, and `Option<Stamp>` in 8 too (nanoseconds since the epoch, plus one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(NonZeroU64);

impl Stamp {
    pub(crate) fn now() -> Self {
        Self::from(Instant::now())
    }

    pub(crate) fn instant(self) -> Instant {
        epoch() + Duration::from_nanos(self.0.get() - 1)
    }
}

impl From<Instant> for Stamp {
    fn from(t: Instant) -> Self {
        let ns = u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX - 1);
        Stamp(NonZeroU64::new(ns.saturating_add(1)).unwrap_or(NonZeroU64::MIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_the_instant_it_was_made_from_to_the_nanosecond() {
        start();
        let t = Instant::now() + Duration::from_millis(1500);
        assert_eq!(Stamp::from(t).instant(), t);
        let (a, b) = (Stamp::now(), Stamp::from(Instant::now() + Duration::from_secs(1)));
        assert!(a < b);
        assert!(b.instant().duration_since(a.instant()) >= Duration::from_secs(1));
        // Before the epoch reads as the epoch, not a panic.
        if let Some(early) = epoch().checked_sub(Duration::from_secs(1)) {
            assert_eq!(Stamp::from(early).instant(), epoch());
        }
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }
}
