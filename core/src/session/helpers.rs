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
