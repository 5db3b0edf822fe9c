//! The server's two clocks: a fine one for what is shown to users as a
//! measured duration, and a coarse, cheaper one for its timers.
//!
//! The idle, keep-alive, read and write timeouts, the sweep's period and
//! the request deadline (`--timeout`) are counted in seconds; reading
//! `CLOCK_MONOTONIC` for each of their stamps (several per connection) was
//! about 1.5% of the CPU of a one-request connection. `CLOCK_MONOTONIC_COARSE`
//! is the same clock as of the kernel's last timekeeping update: a vDSO read
//! without the time-stamp counter and its conversion (3 ns against 19 ns on
//! the machine this project is measured on). It trails the fine clock by one
//! to two ticks
//! (`HZ=250`: 4.2 ms on average, 6.2 ms at most over 50 million paired reads
//! on that machine), so a timer may end up to two ticks early; every
//! difference taken here saturates, so a stamp taken on the fine clock and
//! compared with a coarse one can never give a negative duration or a
//! panic. The access log's durations and the metrics' latencies keep the
//! fine clock ([`std::time::Instant`]).
//!
//! Both clocks are system-wide, so stamps stay comparable across `fork`.

use std::sync::OnceLock;
use std::time::Duration;

/// Nanoseconds per second.
const NANOS: u64 = 1_000_000_000;

/// Reads `clock` in nanoseconds (64 bits of nanoseconds last 584 years).
#[inline]
fn read_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into `ts`, which we own. Both clocks
    // used here exist on every Linux this server runs on (COARSE since
    // 2.6.32); should the call fail, `ts` stays zero, which the saturating
    // differences below read as "no time passed".
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(NANOS)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The monotonic clock in nanoseconds, read precisely (a vDSO read of the
/// time-stamp counter). For measurements.
#[inline]
pub fn fine_ns() -> u64 {
    read_ns(libc::CLOCK_MONOTONIC)
}

/// The monotonic clock in nanoseconds as of the kernel's last timekeeping
/// update: never ahead of [`fine_ns`], behind it by less than two ticks.
/// For timers.
#[inline]
pub fn coarse_ns() -> u64 {
    read_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// The coarse clock's resolution: one kernel tick (4 ms at `HZ=250`).
pub fn coarse_resolution() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres only writes into `ts`, which we own.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// How far the coarse clock may trail the fine one: two ticks. A deadline
/// taken on the coarse clock that must not pass early adds this.
pub fn coarse_lag_ns() -> u64 {
    static LAG: OnceLock<u64> = OnceLock::new();
    *LAG.get_or_init(|| nanos(coarse_resolution()).saturating_mul(2))
}

/// `d` in nanoseconds (saturating: 584 years).
pub fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(NANOS)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// A moment on the coarse clock, for timers (see the module's docs): when
/// a connection last made progress, when its request head began. Plain
/// nanoseconds rather than an [`std::time::Instant`], whose arithmetic
/// (seconds and nanoseconds, normalised) had cost more instructions than
/// the clock read itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(u64);

impl Stamp {
    /// Now, on the coarse clock.
    #[inline]
    pub fn now() -> Stamp {
        Stamp(coarse_ns())
    }

    /// The time from `earlier` to this stamp; zero when `earlier` is later.
    #[inline]
    pub fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// The time since this stamp; zero for a stamp that is not in the past.
    #[inline]
    pub fn elapsed(self) -> Duration {
        Stamp::now().since(self)
    }

    /// The stamp `d` later (saturating).
    pub fn after(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_add(nanos(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_is_monotonic_and_never_ahead_of_the_fine_one() {
        let mut last = coarse_ns();
        for _ in 0..100_000 {
            let coarse = coarse_ns();
            let fine = fine_ns();
            assert!(coarse >= last, "the coarse clock went back");
            assert!(coarse <= fine, "coarse {coarse} ahead of fine {fine}");
            last = coarse;
        }
    }

    #[test]
    fn the_coarse_clock_trails_by_at_most_a_few_ticks() {
        let tick = nanos(coarse_resolution());
        assert!(tick > 0 && tick <= 10_000_000, "tick {tick} ns");
        // The fine read comes first: a pause between the two reads only
        // brings the coarse one closer. The coarse clock is the last
        // timekeeping update, one to two ticks behind; the third tick covers
        // an update that comes late (a busy or virtual machine).
        for _ in 0..100_000 {
            let fine = fine_ns();
            let coarse = coarse_ns();
            assert!(
                fine.saturating_sub(coarse) < 3 * tick,
                "coarse {coarse} trails fine {fine} by three ticks ({tick} ns) or more"
            );
        }
    }

    #[test]
    fn the_coarse_clock_moves_with_the_fine_one() {
        let stamp = Stamp::now();
        let start = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(30));
        let fine = start.elapsed();
        let coarse = stamp.elapsed();
        let tick = coarse_resolution();
        assert!(
            coarse + 2 * tick >= fine,
            "coarse {coarse:?}, fine {fine:?}"
        );
        assert!(
            coarse <= fine + 2 * tick,
            "coarse {coarse:?}, fine {fine:?}"
        );
    }

    #[test]
    fn differences_saturate_instead_of_going_negative() {
        let now = Stamp::now();
        let later = now.after(Duration::from_secs(5));
        assert_eq!(now.since(later), Duration::ZERO);
        assert_eq!(later.elapsed(), Duration::ZERO);
        assert_eq!(later.since(now), Duration::from_secs(5));
        assert_eq!(Stamp(u64::MAX).after(Duration::MAX), Stamp(u64::MAX));
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}
