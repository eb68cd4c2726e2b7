//! Retry backoff: exponential, capped, jittered (franz-go's defaults:
//! 250 ms doubling to 5 s, each delay scaled by a random factor in
//! 0.8..1.2 so that many clients retrying the same broker spread out).

use std::time::Duration;

use crate::rng::SeededRng;

/// A backoff policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// Each delay is scaled by a factor drawn from `1 ± jitter`.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32, rng: &mut SeededRng) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let base = self
            .initial
            .checked_mul(1u32 << exp)
            .map_or(self.max, |d| d.min(self.max));
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * rng.unit();
        base.mul_f64(factor.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_within_the_jitter_band() {
        let b = Backoff::default();
        let mut rng = SeededRng::new(1);
        for (attempt, nominal_ms) in [
            (1, 250.0),
            (2, 500.0),
            (3, 1000.0),
            (5, 4000.0),
            (6, 5000.0),
            (60, 5000.0),
        ] {
            for _ in 0..50 {
                let d = b.delay(attempt, &mut rng).as_secs_f64() * 1000.0;
                assert!(
                    d >= nominal_ms * 0.8 - 1e-6 && d <= nominal_ms * 1.2 + 1e-6,
                    "{attempt}: {d}"
                );
            }
        }
    }
}
