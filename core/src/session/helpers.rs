//! Small conversions every adapter needs around the session, kept here so
//! none of them writes its own: the clock readings an adapter takes
//! (the core reads none) turned into the core's units, regex patterns
//! checked on the caller's side, fetches flattened to records or to
//! stream items.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use crate::consumer::{ConsumedRecord, FetchError, FetchedPartition};
use crate::Timestamp;

/// The core's timestamp for `elapsed` since the adapter's origin.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(sansa_core::session::timestamp(Duration::from_micros(3)).as_nanos(), 3_000);
/// ```
pub fn timestamp(elapsed: Duration) -> Timestamp {
    Timestamp::from_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
}

/// Milliseconds since the Unix epoch of a wall-clock reading (a record's
/// default timestamp); 0 for a clock set before 1970.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// assert_eq!(sansa_core::session::wall_ms(UNIX_EPOCH + Duration::from_millis(42)), 42);
/// ```
pub fn wall_ms(wall: SystemTime) -> i64 {
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The wall clock between two readings of it, derived from the adapter's
/// monotonic one: a produce call reads one clock instead of two. Clock
/// reads showed as 5% of a producer's CPU, half of them for a record
/// timestamp that moves in step with the monotonic clock anyway.
///
/// A reading older than [`WallAnchor::MAX_AGE`] is not used, so a wall
/// clock that is set (NTP step, a user) shows in record timestamps within
/// that time.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use sansa_core::session::WallAnchor;
/// use sansa_core::Timestamp;
///
/// let mut wall = WallAnchor::default();
/// let t0 = Timestamp::from_nanos(5_000_000);
/// assert_eq!(wall.wall_ms(t0), None, "no reading yet");
/// assert_eq!(wall.anchor(t0, UNIX_EPOCH + Duration::from_millis(1_000)), 1_000);
/// let later = Timestamp::from_nanos(25_000_000);
/// assert_eq!(wall.wall_ms(later), Some(1_020));
/// let stale = Timestamp::from_nanos(5_000_000) + WallAnchor::MAX_AGE;
/// assert_eq!(wall.wall_ms(stale), None, "time for a new reading");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct WallAnchor {
    /// When the wall clock was last read, on the monotonic clock.
    read_at: Option<Timestamp>,
    /// Wall-clock nanoseconds since the Unix epoch minus `read_at`'s.
    offset_nanos: i128,
}

impl WallAnchor {
    /// How long one wall-clock reading is used for.
    pub const MAX_AGE: Duration = Duration::from_millis(100);

    /// Milliseconds since the Unix epoch at `now`, if the last reading is
    /// recent enough (and not after `now`).
    pub fn wall_ms(&self, now: Timestamp) -> Option<i64> {
        let read_at = self.read_at?;
        let age = now.as_nanos().checked_sub(read_at.as_nanos())?;
        if u128::from(age) >= Self::MAX_AGE.as_nanos() {
            return None;
        }
        let wall = (i128::from(now.as_nanos()) + self.offset_nanos).max(0) / 1_000_000;
        Some(i64::try_from(wall).unwrap_or(i64::MAX))
    }

    /// Takes a wall-clock reading made at `now`; returns it in ms since the
    /// Unix epoch (as [`wall_ms`]).
    pub fn anchor(&mut self, now: Timestamp, wall: SystemTime) -> i64 {
        let wall_nanos = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX / 2));
        self.read_at = Some(now);
        self.offset_nanos = wall_nanos - i128::from(now.as_nanos());
        wall_ms(wall)
    }
}

/// `consume_regex` patterns as strings, each checked, so a bad pattern
/// is the caller's error rather than a log line in a driver.
///
/// ```
/// assert!(sansa_core::session::check_patterns(["logs-.*"]).is_ok());
/// assert!(sansa_core::session::check_patterns(["("]).is_err());
/// ```
pub fn check_patterns<I, S>(patterns: I) -> Result<Vec<String>, regex::Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    patterns
        .into_iter()
        .map(|p| regex::Regex::new(p.as_ref()).map(|_| p.as_ref().to_string()))
        .collect()
}

/// Fetched partitions flattened to records in order per partition, for
/// `poll_records`; partition errors are logged (use `poll_fetches` to see
/// them).
pub fn into_records(fetched: Vec<FetchedPartition>) -> Vec<ConsumedRecord> {
    let mut out = Vec::with_capacity(fetched.iter().map(|f| f.records.len()).sum());
    for f in fetched {
        if let Some(e) = &f.error {
            tracing::warn!(topic = &*f.topic, partition = f.partition, error = %e, "partition error");
        }
        out.extend(f.records);
    }
    out
}

/// A partition's error as an item among records (a stream's): which
/// partition, and what happened (a reset policy of `None` hit, data
/// loss, a broker error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{topic}/{partition}: {error}")]
pub struct PartitionError {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// What happened.
    pub error: FetchError,
}

/// Fetched partitions flattened to stream items: each partition's
/// records in order, then its error, if it has one.
pub fn into_items(
    fetched: Vec<FetchedPartition>,
) -> impl Iterator<Item = Result<ConsumedRecord, PartitionError>> {
    fetched.into_iter().flat_map(|f| {
        let (topic, partition) = (f.topic, f.partition);
        let error = f.error.map(|error| {
            Err(PartitionError {
                topic,
                partition,
                error,
            })
        });
        f.records.into_iter().map(Ok).chain(error)
    })
}
