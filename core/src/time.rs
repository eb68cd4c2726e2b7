//! Time as an input.
//!
//! The core never reads a clock. Every entry point that depends on time
//! takes `now: Timestamp`, a monotonic instant the driver measures from an
//! origin of its choosing (a runtime uses `Instant`, the simulator its
//! virtual clock). Wall-clock time, needed only for record timestamps, is
//! a separate input in milliseconds since the Unix epoch.

use std::time::Duration;

/// A monotonic instant: nanoseconds since an origin the driver picks.
///
/// Only differences between timestamps mean anything; two drivers with
/// different origins give the same behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The driver's origin.
    pub const ZERO: Timestamp = Timestamp(0);

    /// `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time elapsed since the origin.
    pub const fn since_origin(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the far future.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(nanos))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        let t = Timestamp::from_nanos(u64::MAX - 1);
        assert_eq!(t + Duration::from_secs(1), Timestamp::from_nanos(u64::MAX));
        assert_eq!(Timestamp::ZERO.saturating_duration_since(t), Duration::ZERO);
        assert_eq!(
            (Timestamp::ZERO + Duration::from_millis(5)).saturating_duration_since(Timestamp::ZERO),
            Duration::from_millis(5)
        );
    }
}
