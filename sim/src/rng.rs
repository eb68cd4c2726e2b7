//! The simulator's one source of randomness.
//!
//! Every random choice of a run (cluster shape, link delays, faults, which
//! error a broker answers with, each client's own seed) descends from the
//! run's seed through [`SimRng`]: a component that needs its own stream
//! gets a [`SimRng::fork`] of its parent, taken at a fixed point of the
//! run, so adding a draw in one component does not shift every other. No
//! global RNG, no `HashMap` iteration, no clock: the same seed replays the
//! same run, byte for byte.

use std::time::Duration;

/// splitmix64 (Steele, Lea and Flood): a 64-bit state, one add and three
/// xor-shift-multiplies per draw. Plenty for scheduling and fault
/// injection; not for cryptography.
#[derive(Debug, Clone)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator whose whole future is fixed by `seed`.
    pub const fn new(seed: u64) -> Self {
        SimRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A new generator seeded from this one: an independent stream for a
    /// component, so that its draws do not shift anyone else's.
    #[must_use]
    pub fn fork(&mut self) -> SimRng {
        // Mixed once more so a fork's stream is not this stream shifted.
        SimRng::new(self.next_u64() ^ 0x5a4e_5341_5349_4d00)
    }

    /// A value in `0..n`, 0 when `n` is 0 (Lemire's multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A value in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (never for `p <= 0`, always for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// One element of `items`, `None` when it is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.below(items.len() as u64) as usize)
    }

    /// A duration in `lo..=hi`, to the nanosecond.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_n = u64::try_from(lo.as_nanos()).unwrap_or(u64::MAX);
        let hi_n = u64::try_from(hi.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.range(lo_n, hi_n))
    }

    /// The wait until the next event of a Poisson process with `per_sec`
    /// events a second (`None` when the rate is zero): exponential, capped
    /// at a day so a tiny rate cannot overflow the clock.
    pub fn exponential(&mut self, per_sec: f64) -> Option<Duration> {
        if per_sec <= 0.0 {
            return None;
        }
        // 1 - unit() is in (0, 1], so the log is finite.
        let secs = -(1.0 - self.unit()).ln() / per_sec;
        Some(Duration::from_secs_f64(secs.min(86_400.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_are_independent_of_later_draws() {
        let mut a = SimRng::new(9);
        let mut b = SimRng::new(9);
        let mut fa = a.fork();
        let mut fb = b.fork();
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert_eq!(fa.next_u64(), fb.next_u64());
        }
        let mut r = SimRng::new(1);
        for _ in 0..1000 {
            assert!(r.below(7) < 7);
            let x = r.range(3, 5);
            assert!((3..=5).contains(&x));
            let d = r.duration(Duration::from_millis(1), Duration::from_millis(2));
            assert!(d >= Duration::from_millis(1) && d <= Duration::from_millis(2));
            assert!(r.exponential(10.0).is_some_and(|d| d.as_secs() < 86_401));
        }
        assert_eq!(r.exponential(0.0), None);
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
        assert_eq!(r.pick::<u8>(&[]), None);
    }
}
