//! A simulated client's own clocks: where its monotonic clock started,
//! how fast it runs against the world's, and how far its wall clock is
//! off, so that clients on one simulated network disagree about time the
//! way processes on different machines do.
//!
//! Why: a client computes every timeout (linger, request timeout, retry
//! backoff, delivery timeout, session heartbeats) on its own monotonic
//! clock and stamps records with its own wall clock. A bug that assumes
//! its clock agrees with the broker's (or starts at zero) only shows when
//! the clocks differ. The world converts in both directions: the `now` it
//! hands a client is [`ClientClock::local`], and a deadline the client
//! asks for is fired at [`ClientClock::world_at`], the first world instant
//! at which the client's clock has reached it (never earlier, so a timer
//! never fires early and the client never spins on one that is not due).

use std::time::Duration;

use sansa_core::Timestamp;

/// Wall-clock milliseconds at virtual time zero (record timestamps).
pub const WALL_CLOCK_ORIGIN_MS: i64 = 1_700_000_000_000;

/// Parts per million.
const PPM: i128 = 1_000_000;

/// One client's clocks, relative to the world's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientClock {
    /// Where its monotonic clock stood when the world's was at zero (a
    /// process started long before the test).
    pub origin: Duration,
    /// How fast its clocks run, in parts per million off the world's:
    /// positive runs fast. Kept above -1,000,000 (a clock that stops or
    /// runs backwards is not a clock).
    pub drift_ppm: i32,
    /// How far its wall clock is off the world's, in milliseconds.
    pub wall_offset_ms: i64,
}

impl ClientClock {
    /// A clock that agrees with the world's.
    pub const EXACT: ClientClock = ClientClock {
        origin: Duration::ZERO,
        drift_ppm: 0,
        wall_offset_ms: 0,
    };

    fn ppm(&self) -> i128 {
        i128::from(self.drift_ppm.max(-999_999))
    }

    /// Nanoseconds the client's clock has moved by world time `world`.
    fn elapsed(&self, world: Timestamp) -> i128 {
        let w = i128::from(world.as_nanos());
        w + (w * self.ppm()).div_euclid(PPM)
    }

    /// The client's monotonic time at world time `world`.
    pub fn local(&self, world: Timestamp) -> Timestamp {
        let origin = i128::from(u64::try_from(self.origin.as_nanos()).unwrap_or(u64::MAX));
        let t = (origin + self.elapsed(world)).clamp(0, i128::from(u64::MAX));
        Timestamp::from_nanos(t as u64)
    }

    /// The first world instant at which the client's clock reads `local`
    /// or later.
    pub fn world_at(&self, local: Timestamp) -> Timestamp {
        let origin = i128::from(u64::try_from(self.origin.as_nanos()).unwrap_or(u64::MAX));
        let target = i128::from(local.as_nanos()) - origin;
        if target <= 0 {
            return Timestamp::ZERO;
        }
        let mut w = (target * PPM).div_euclid(PPM + self.ppm());
        let reads = |w: i128| {
            let w = w.clamp(0, i128::from(u64::MAX));
            self.elapsed(Timestamp::from_nanos(w as u64))
        };
        while reads(w) < target {
            w += 1;
        }
        while w > 0 && reads(w - 1) >= target {
            w -= 1;
        }
        Timestamp::from_nanos(w.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// The client's wall clock, in milliseconds, at world time `world`.
    pub fn wall_ms(&self, world: Timestamp) -> i64 {
        let ms = i64::try_from(self.elapsed(world).div_euclid(1_000_000)).unwrap_or(i64::MAX);
        WALL_CLOCK_ORIGIN_MS
            .saturating_add(self.wall_offset_ms)
            .saturating_add(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_exact_clock_is_the_world_s() {
        let t = Timestamp::from_nanos(123_456_789);
        assert_eq!(ClientClock::EXACT.local(t), t);
        assert_eq!(ClientClock::EXACT.world_at(t), t);
        assert_eq!(ClientClock::EXACT.wall_ms(t), WALL_CLOCK_ORIGIN_MS + 123);
    }

    #[test]
    fn a_fast_clock_reaches_its_deadlines_early_in_world_time() {
        let c = ClientClock {
            origin: Duration::from_secs(3600),
            drift_ppm: 10_000, // 1% fast
            wall_offset_ms: -5_000,
        };
        let w = Timestamp::from_nanos(100_000_000_000); // 100 s
        assert_eq!(
            c.local(w),
            Timestamp::from_nanos(3_600_000_000_000 + 101_000_000_000)
        );
        assert_eq!(c.wall_ms(w), WALL_CLOCK_ORIGIN_MS - 5_000 + 101_000);
        assert_eq!(c.world_at(c.local(w)), w);
    }

    proptest! {
        /// A deadline fires at the first world instant the client's clock
        /// has reached it: not before (no early timer, no spinning), and
        /// not a nanosecond later.
        #[test]
        fn world_at_is_the_first_instant_the_local_clock_reaches(
            origin in 0u64..10_000_000_000_000,
            drift_ppm in -999_999i32..1_000_000,
            local in 0u64..20_000_000_000_000,
        ) {
            let c = ClientClock { origin: Duration::from_nanos(origin), drift_ppm, wall_offset_ms: 0 };
            let l = Timestamp::from_nanos(local);
            let w = c.world_at(l);
            prop_assert!(c.local(w) >= l);
            if w > Timestamp::ZERO {
                prop_assert!(c.local(Timestamp::from_nanos(w.as_nanos() - 1)) < l);
            }
        }

        /// Local time never runs backwards.
        #[test]
        fn local_time_is_monotonic(
            drift_ppm in -999_999i32..1_000_000,
            a in 0u64..1_000_000_000_000,
            d in 0u64..1_000_000_000,
        ) {
            let c = ClientClock { origin: Duration::ZERO, drift_ppm, wall_offset_ms: 0 };
            prop_assert!(c.local(Timestamp::from_nanos(a)) <= c.local(Timestamp::from_nanos(a + d)));
        }
    }
}
