//! Record batches: the data plane's wire format.
//!
//! What a Produce request carries and a Fetch response returns is a `records`
//! blob: a sequence of batches laid end to end. This module writes and reads
//! that blob without doing any I/O.
//!
//! - [`BatchBuilder`] appends records into one buffer as magic v2
//!   (`DefaultRecordBatch`), compresses the records section when sealed, and
//!   returns a [`SealedBatch`] whose producer id, epoch and base sequence can
//!   be re-stamped in place (KIP-360: after an epoch bump, a producer resends
//!   the same records under a new epoch and sequence) without recompressing.
//! - [`Batches`] walks a `records` blob lazily over [`bytes::Bytes`]: a
//!   [`Batch`] exposes its header, checks its CRC on request, and iterates
//!   its [`Record`]s, whose key, value and headers are slices of the input
//!   (or of one decompressed buffer per compressed batch), never copies.
//! - Legacy message sets (magic v0 and v1, `LegacyRecord`) are read through
//!   the same [`Batch`] and [`Record`] types, so a consumer does not care
//!   which magic a broker returned.
//! - [`ControlRecord`] parses and builds transaction markers (KIP-98).
//!
//! Rules that hold everywhere here, because a broker may send anything:
//! no panic on any input; no allocation sized by a length read from the wire
//! beyond what the bytes at hand (or the caller's decompression limit) allow;
//! every failure is a typed [`RecordError`].
//!
//! A fetch may end with a partial batch (the broker cuts the response at
//! `max_bytes`, KIP-74): [`Batches`] stops there without error and reports
//! it through [`Batches::truncated_tail`]. An impossible length, a bad magic
//! or a malformed header is an error.

mod batch;
mod builder;
mod control;
mod crc;
mod legacy;
mod records;
mod varint;

pub use batch::{Batch, Batches, ReadOptions, DEFAULT_MAX_DECOMPRESSED_BYTES};
pub use builder::{
    batch_size_upper_bound, AppendError, AsHeader, BatchBuilder, BatchOptions, BatchStamp,
    BuildError, ProducerStamp, SealedBatch, NO_HEADERS,
};
pub use control::{ControlRecord, ControlRecordKind};
pub use crc::{crc32_ieee, crc32c};
pub use records::{
    Header, HeaderIter, HeaderRef, HeaderRefIter, Headers, Record, RecordRef, Records,
};

use crate::compression::CompressionError;

/// Bytes of a magic v2 batch header, from the base offset to the record
/// count inclusive (`DefaultRecordBatch.RECORD_BATCH_OVERHEAD`).
pub const RECORD_BATCH_OVERHEAD: usize = 61;

/// Bytes before any batch or legacy message that say where it is and how
/// long it is: base offset (int64) and length (int32) (`Records.LOG_OVERHEAD`).
pub const LOG_OVERHEAD: usize = 12;

/// Producer id of a batch written by a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// Producer epoch of a batch written by a non-idempotent producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Base sequence of a batch written by a non-idempotent producer.
pub const NO_SEQUENCE: i32 = -1;
/// Partition leader epoch before a broker has stamped one.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// Timestamp of a record or batch that has none (magic v0, empty batch).
pub const NO_TIMESTAMP: i64 = -1;

/// The magic byte of the current batch format.
pub const MAGIC_V2: i8 = 2;

/// Byte positions of the magic v2 header fields (`DefaultRecordBatch`).
pub(crate) mod layout {
    pub(crate) const BASE_OFFSET: usize = 0;
    pub(crate) const LENGTH: usize = 8;
    pub(crate) const PARTITION_LEADER_EPOCH: usize = 12;
    pub(crate) const MAGIC: usize = 16;
    pub(crate) const CRC: usize = 17;
    pub(crate) const ATTRIBUTES: usize = 21;
    pub(crate) const LAST_OFFSET_DELTA: usize = 23;
    pub(crate) const BASE_TIMESTAMP: usize = 27;
    pub(crate) const MAX_TIMESTAMP: usize = 35;
    pub(crate) const PRODUCER_ID: usize = 43;
    pub(crate) const PRODUCER_EPOCH: usize = 51;
    pub(crate) const BASE_SEQUENCE: usize = 53;
    pub(crate) const RECORD_COUNT: usize = 57;
    pub(crate) const RECORDS: usize = 61;

    /// Attribute bits (low byte of the int16 attributes field).
    pub(crate) const COMPRESSION_MASK: u16 = 0x07;
    pub(crate) const TIMESTAMP_TYPE_FLAG: u16 = 0x08;
    pub(crate) const TRANSACTIONAL_FLAG: u16 = 0x10;
    pub(crate) const CONTROL_FLAG: u16 = 0x20;
    /// KIP-534: the base timestamp holds the delete horizon of a compacted
    /// batch's tombstones.
    pub(crate) const DELETE_HORIZON_FLAG: u16 = 0x40;
}

/// The smallest encoded magic v2 record: a one-byte varint for each of
/// length, timestamp delta, offset delta, key length, value length and
/// header count, plus the attributes byte. Bounds any record count read
/// from the wire by the bytes that are really there.
pub(crate) const MIN_RECORD_BYTES: usize = 7;

/// What a record's timestamp means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// No timestamp: magic v0 messages.
    NoTimestamp,
    /// Set by the producer when it created the record (the default).
    #[default]
    CreateTime,
    /// Set by the broker when it appended the batch to its log; every record
    /// of such a batch reads the batch's max timestamp.
    LogAppendTime,
}

/// Why a `records` blob, a batch or a record could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes end inside a batch or record whose length says there is
    /// more: the data is cut short or a length field is wrong.
    #[error("record data is truncated")]
    Truncated,
    /// A length field holds a value no valid data can have.
    #[error("invalid {what} length {length}")]
    BadLength {
        /// Which length (batch, record, key, header count, ...).
        what: &'static str,
        /// The value read from the wire.
        length: i64,
    },
    /// The magic byte names no format this client reads (0, 1 or 2).
    #[error("unsupported magic byte {0}")]
    BadMagic(i8),
    /// The stored checksum does not match the data: the batch is corrupt.
    #[error("checksum mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch {
        /// The CRC stored in the batch or message.
        expected: u32,
        /// The CRC computed over the bytes received.
        actual: u32,
    },
    /// Decompressing the records failed, or would exceed the caller's limit,
    /// or the codec id is unknown.
    #[error("compressed records: {0}")]
    Compression(#[source] Box<CompressionError>),
    /// A varint runs past 5 bytes (varlong: 10) or past 32 (64) bits.
    #[error("varint is too long")]
    VarintOverflow,
    /// The record count is negative or more than the bytes could hold.
    #[error("invalid record count {0}")]
    BadRecordCount(i32),
    /// Bytes remain after the last record the batch header counts.
    #[error("{0} bytes remain after the last record of the batch")]
    TrailingBytes(usize),
    /// A legacy (v0/v1) message set breaks a rule of its format.
    #[error("invalid legacy message set: {0}")]
    Legacy(&'static str),
    /// A control record's key or value is malformed.
    #[error("invalid control record: {0}")]
    BadControlRecord(&'static str),
}

impl From<CompressionError> for RecordError {
    /// Boxed (the codec's error carries a message) so that `RecordError`
    /// stays small on the hot path, where every record read returns a
    /// `Result`.
    #[cold]
    fn from(e: CompressionError) -> RecordError {
        RecordError::Compression(Box::new(e))
    }
}

/// Big-endian readers at positions already bounds-checked by the caller;
/// written without `unwrap` so that a logic slip is a wrong value in a test,
/// not a panic in production.
#[inline(always)]
pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

#[inline(always)]
pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

#[inline(always)]
pub(crate) fn be_u32(b: &[u8], at: usize) -> u32 {
    be_i32(b, at) as u32
}

#[inline(always)]
pub(crate) fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

#[cfg(test)]
mod tests;
