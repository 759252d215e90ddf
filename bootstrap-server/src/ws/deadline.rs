//! Deadlines for `/yws` connections, without a timer each.
//!
//! A connection keeps two clocks in one field ([`FrameReader`](super::FrameReader)'s
//! `since`): while a message is in progress (a frame, or a fragmented message, begun and
//! not whole), since its first byte came; otherwise since anything last came. The message
//! must be whole within `--ws-read-timeout-ms`; a connection quiet for `--ws-ping-ms` gets a
//! ping, and one from which nothing (not even the pong) came for `--ws-idle-timeout-ms` is
//! dropped: a client holding a partial frame, a half-open TCP connection and a vanished
//! client all end. While a write waits on a full socket the connection is not read
//! (backpressure); the socket draining counts as life then (a client on a slow link taking
//! in a large state is not dropped), and one that never drains is dropped at the idle
//! deadline like a silent one.
//!
//! Who wakes a connection whose client sends nothing? A tokio `Sleep` each would cost a
//! 112-byte timer entry (boxed: 128 with the allocation) in every idle connection, about 6%
//! of an idle room, and the room's inline connection would move to a larger allocation
//! class. Instead the node keeps one [`Wheel`]: wakers by the tick they wait for, and one
//! task that wakes them when it comes (as `live.rs` does for invite expiry). A connection
//! registers when its next deadline is sooner than the one it waits for, or that one came:
//! one entry at a time, not one per message (a deadline that moved later wakes it early,
//! and it registers again). What it keeps for this is a `u32` and two `bool`s in what was
//! padding, and `since` in half of what `max` took. A finished connection's waker stays in
//! the wheel until its tick (its task's memory with it): at most an idle timeout.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::task::{Context, Waker};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{WebSocket, WsError};
use crate::clock;

/// The node's deadlines for its WebSocket connections, in milliseconds, and the wheel that
/// wakes connections at them.
#[derive(Debug)]
pub(crate) struct Deadlines {
    pub(crate) ping_ms: u32,
    pub(crate) idle_ms: u32,
    pub(crate) read_ms: u32,
    wheel: Wheel,
}

impl Deadlines {
    pub(crate) fn new(ping_ms: u32, idle_ms: u32, read_ms: u32) -> Self {
        // Ticks of a tenth of the shortest deadline, 5 ms to 1 s: a deadline is kept to
        // within a tick.
        let tick_ms = u64::from(ping_ms.min(idle_ms).min(read_ms) / 10).clamp(5, 1000);
        Deadlines { ping_ms, idle_ms, read_ms, wheel: Wheel { tick_ms, due: Mutex::default(), sooner: Notify::new() } }
    }

    /// Wakes connections at their deadlines until `shutdown`.
    pub(crate) async fn run(&self, shutdown: CancellationToken) {
        self.wheel.run(shutdown).await;
    }

    /// At `now` (wrapping milliseconds), for a connection whose clock started at `since`:
    /// `Err` when a deadline passed, else whether to ping now and how long until the next
    /// deadline.
    fn at(&self, now: u32, since: u32, in_progress: bool, pinged: bool) -> Result<(bool, u32), WsError> {
        let quiet = now.wrapping_sub(since);
        if in_progress {
            return match self.read_ms.checked_sub(quiet) {
                Some(left) if left > 0 => Ok((false, left)),
                _ => Err(WsError::ReadTimeout(self.read_ms)),
            };
        }
        let Some(left) = self.idle_ms.checked_sub(quiet).filter(|l| *l > 0) else {
            return Err(WsError::IdleTimeout(self.idle_ms));
        };
        let ping = !pinged && quiet >= self.ping_ms;
        let next = if pinged || ping || self.ping_ms >= self.idle_ms { left } else { self.ping_ms - quiet };
        Ok((ping, next))
    }
}

/// Wakers by the tick (in milliseconds since the clock's epoch) they wait for.
#[derive(Debug)]
struct Wheel {
    tick_ms: u64,
    due: Mutex<BTreeMap<u64, Vec<Waker>>>,
    /// A tick sooner than the one the task sleeps until came in.
    sooner: Notify,
}

impl Wheel {
    /// The tick at which a deadline at `at_ms` is kept.
    fn tick(&self, at_ms: u64) -> u64 {
        at_ms.div_ceil(self.tick_ms).saturating_mul(self.tick_ms)
    }

    /// Wakes `waker` at `tick`.
    fn register(&self, tick: u64, waker: &Waker) {
        let Ok(mut due) = self.due.lock() else { return };
        let sooner = due.keys().next().is_none_or(|first| tick < *first);
        due.entry(tick).or_default().push(waker.clone());
        drop(due);
        if sooner {
            self.sooner.notify_one();
        }
    }

    async fn run(&self, shutdown: CancellationToken) {
        loop {
            let next = self.due.lock().ok().and_then(|d| d.keys().next().copied());
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(clock::at_ms(t).into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = self.sooner.notified() => continue,
                () = sleep => {}
            }
            let now = clock::elapsed_ms();
            let woken = match self.due.lock() {
                Ok(mut due) => {
                    let later = due.split_off(&(now + 1));
                    std::mem::replace(&mut *due, later)
                }
                Err(_) => return,
            };
            // Woken outside the lock.
            for w in woken.into_values().flatten() {
                w.wake();
            }
        }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> WebSocket<S> {
    /// Keeps the connection's deadlines: `Err` when its client missed one (the caller drops
    /// the connection); `Ok(true)` when a ping was queued (the caller writes it with what
    /// else is queued). Arranges for `cx` to be woken at the next deadline.
    pub(crate) fn poll_deadlines(&mut self, cx: &mut Context<'_>, d: &Deadlines) -> Result<bool, WsError> {
        let now = clock::elapsed_ms();
        let (ping, wait) = d.at(now as u32, self.reader.since, self.reader.in_progress(), self.pinged)?;
        if ping {
            self.start_frame(9, bytes::Bytes::new());
            self.pinged = true;
        }
        let tick = d.wheel.tick(now + u64::from(wait));
        // The tick it waits for, in 32 bits (0: none). Registered again when that came,
        // or when the next deadline is sooner.
        let came = self.armed == 0 || (now as u32).wrapping_sub(self.armed) as i32 >= 0;
        let sooner = ((tick as u32).wrapping_sub(self.armed) as i32) < 0;
        if came || sooner {
            d.wheel.register(tick, cx.waker());
            self.armed = (tick as u32).max(1);
        }
        Ok(ping)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_connection_is_pinged_then_dropped_and_a_message_must_come_whole_in_time() {
        let d = Deadlines::new(300, 1000, 500);
        // Idle: nothing until the ping, then the ping, then until the idle deadline.
        assert_eq!(d.at(100, 0, false, false).unwrap(), (false, 200));
        assert_eq!(d.at(300, 0, false, false).unwrap(), (true, 700));
        assert_eq!(d.at(400, 0, false, true).unwrap(), (false, 600));
        assert!(matches!(d.at(1000, 0, false, true), Err(WsError::IdleTimeout(1000))));
        // A message in progress: its read deadline, and no pings meanwhile.
        assert_eq!(d.at(400, 0, true, false).unwrap(), (false, 100));
        assert!(matches!(d.at(500, 0, true, false), Err(WsError::ReadTimeout(500))));
        // Across the 32-bit wrap of the clock.
        assert_eq!(d.at(99, u32::MAX - 100, false, false).unwrap(), (false, 100));
        // A ping interval past the idle deadline: no ping, the idle deadline.
        assert_eq!(Deadlines::new(2000, 1000, 500).at(100, 0, false, false).unwrap(), (false, 900));
    }

    #[test]
    fn the_wheel_keeps_a_deadline_to_within_a_tick_and_wakes_what_came_due() {
        let d = Deadlines::new(30_000, 75_000, 60_000);
        assert_eq!(d.wheel.tick_ms, 1000);
        assert_eq!((d.wheel.tick(1), d.wheel.tick(1000), d.wheel.tick(1001)), (1000, 1000, 2000));
        assert_eq!(Deadlines::new(200, 2000, 300).wheel.tick_ms, 20);
        assert_eq!(Deadlines::new(1, 1, 1).wheel.tick_ms, 5);
    }

    /// A connection registers once per deadline, not once per poll: a deadline that moved
    /// later leaves the registration where it was; a sooner one registers.
    #[tokio::test]
    async fn a_connection_registers_once_until_its_tick_comes_or_a_sooner_one() {
        clock::start();
        let d = Deadlines::new(60_000, 120_000, 1_000);
        let (_client, server) = tokio::io::duplex(64);
        let mut ws = WebSocket::new(server, 1 << 10);
        let count = |d: &Deadlines| d.wheel.due.lock().unwrap().values().map(Vec::len).sum::<usize>();
        let poll = |ws: &mut WebSocket<_>, times: usize| {
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            for _ in 0..times {
                assert!(!ws.poll_deadlines(&mut cx, &d).unwrap());
            }
        };
        // Input came 10 s ago.
        ws.reader.since = ws.reader.since.wrapping_sub(10_000);
        poll(&mut ws, 10);
        assert_eq!(count(&d), 1);
        // Input came now: the deadline moves later, the registration stays.
        ws.reader.since = ws.reader.since.wrapping_add(10_000);
        poll(&mut ws, 10);
        assert_eq!(count(&d), 1);
        // A frame began: its read deadline is sooner.
        let mut out = std::collections::VecDeque::new();
        ws.reader.feed(&[0x82, 0x85, 0, 0], &mut out).unwrap();
        poll(&mut ws, 10);
        assert_eq!(count(&d), 2);
    }
}
