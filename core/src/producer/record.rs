//! What a user produces and what they get back.

use bytes::Bytes;

use crate::protocol::ErrorCode;
use crate::record::Header;

use super::topic::Topic;

/// Identifies one produce call; events about the record carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProduceId(pub u64);

/// A record to produce.
///
/// ```
/// use sansa_core::producer::Record;
///
/// let r = Record::new("events", "hello").with_key("user-1").with_header("trace", Some("abc"));
/// assert_eq!(r.topic, "events");
/// assert_eq!(r.key.as_deref(), Some(&b"user-1"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The topic; empty means the configured default produce topic.
    pub topic: Topic,
    /// The partition, used only by the manual partitioner.
    pub partition: Option<i32>,
    /// The key; keyed records land on the partition Java's partitioner
    /// would pick.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Headers, duplicates allowed, order kept.
    pub headers: Vec<Header>,
    /// Create time in milliseconds since the Unix epoch; `None` takes the
    /// wall-clock time given with the produce call.
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record with a value for `topic`.
    pub fn new(topic: impl Into<Topic>, value: impl Into<Bytes>) -> Self {
        Record {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// A record with a value for the default produce topic.
    pub fn value(value: impl Into<Bytes>) -> Self {
        Record::new(Topic::default(), value)
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, key: impl Into<Bytes>, value: Option<impl Into<Bytes>>) -> Self {
        self.headers
            .push(Header::new(key.into(), value.map(Into::into)));
        self
    }

    /// Sets the partition (for the manual partitioner).
    #[must_use]
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the create timestamp (ms since the Unix epoch).
    #[must_use]
    pub fn with_timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }

    /// The bytes this record counts against `max_buffered_bytes`.
    pub fn user_size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// The topic (shared: one allocation per topic, not per record).
    pub topic: std::sync::Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset, or -1 when the broker did not say (a retried
    /// batch acknowledged as a duplicate, or acks=0).
    pub offset: i64,
    /// The record's timestamp: its create time, or the broker's append
    /// time for topics configured with LogAppendTime.
    pub timestamp: i64,
}

/// Why a record was not produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// `max_buffered_records` or `max_buffered_bytes` is reached
    /// (`try_produce`).
    #[error("the produce buffer is full")]
    BufferFull,
    /// The record names no topic and no default produce topic is set.
    #[error("the record has no topic and no default produce topic is set")]
    NoTopic,
    /// The manual partitioner found no partition on the record, or one
    /// the topic does not have.
    #[error("partition {partition:?} is not a partition of {topic}")]
    InvalidPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: Option<i32>,
    },
    /// Metadata kept saying the topic cannot be produced to.
    #[error("topic {topic}: {error}")]
    Topic {
        /// The topic.
        topic: String,
        /// What the cluster said.
        error: ErrorCode,
    },
    /// The broker rejected the batch with an error that retrying cannot
    /// fix (record too large, invalid record, not authorized, ...).
    #[error("the broker rejected the batch: {0}")]
    Broker(ErrorCode),
    /// The record's batch failed, so every record buffered behind it on
    /// that partition fails too (no gaps in a partition's order).
    #[error("an earlier batch on this partition failed: {0}")]
    EarlierBatchFailed(Box<ProduceError>),
    /// `record_retries` was exhausted; the last error is given.
    #[error("retries exhausted; last error: {0}")]
    RetriesExhausted(ErrorCode),
    /// `record_delivery_timeout` passed.
    #[error("record delivery timed out")]
    DeliveryTimeout,
    /// The user cancelled the record before it was sent.
    #[error("cancelled")]
    Cancelled,
    /// The record is larger than a batch may be.
    #[error("record of {size} bytes exceeds batch_max_bytes ({max})")]
    RecordTooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The broker lost acknowledged data (OUT_OF_ORDER_SEQUENCE_NUMBER
    /// without log truncation); records of the partition are failed and
    /// the producer resets its sequence state.
    #[error("the broker reported data loss on this partition: {0}")]
    DataLoss(ErrorCode),
    /// The client is closed, or was aborted before the record's outcome
    /// was known. A record produced after the close began was never sent;
    /// one that was in flight when a client was aborted (no flush) may
    /// still have been written: its outcome is unknown, not failed.
    #[error("the client is closed")]
    Closed,
    /// A transactional producer got a record while no transaction is open
    /// (or the open one must be aborted): call `begin_transaction` first.
    #[error("no transaction is open to produce in")]
    NotInTransaction,
    /// The record was still buffered when its transaction was aborted.
    #[error("the record's transaction was aborted")]
    TransactionAborted,
    /// The transactional producer failed (fenced by a newer instance, or
    /// another fatal error; see `Event::TransactionError`).
    #[error("the transactional producer failed")]
    TransactionFailed,
}
