//! The lazy reader: batches of a `records` blob, then records of a batch.
//!
//! The magic v2 header (`DefaultRecordBatch`), all big-endian:
//!
//! ```text
//!  0 base offset        int64     35 max timestamp   int64
//!  8 batch length       int32     43 producer id     int64
//! 12 partition leader   int32     51 producer epoch  int16
//!    epoch                        53 base sequence   int32
//! 16 magic (2)          int8      57 record count    int32
//! 17 crc (CRC-32C)      uint32    61 records...
//! 21 attributes         int16
//! 23 last offset delta  int32
//! 27 base timestamp     int64
//! ```
//!
//! The batch length counts the bytes after itself. The CRC covers the
//! attributes to the end. When the batch is compressed, only the records
//! section after the record count is. The magic byte sits at byte 16 in
//! legacy messages too (after offset, size and a 4-byte CRC), so one look
//! tells the formats apart.

use bytes::Bytes;

use super::crc::crc32c;
use super::layout::*;
use super::legacy::{parse_message, LegacyMessage, LegacyRecords, RECORD_OVERHEAD_V0};
use super::records::{Records, RecordsInner, V2Records};
use super::{
    be_i16, be_i32, be_i64, be_u32, RecordError, TimestampType, LOG_OVERHEAD, MIN_RECORD_BYTES,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
    RECORD_BATCH_OVERHEAD,
};
use crate::compression::{Compression, Decompressor};

/// Default bound on the decompressed records of one batch: 64 MiB, far
/// above any batch a broker accepts by default (`message.max.bytes` is
/// about 1 MiB, compressed) and far below what a hostile peer could ask for.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// Limits applied while reading a `records` blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOptions {
    /// A batch whose length field exceeds this is an error, even when the
    /// blob ends before the batch would (Kafka's `maxMessageSize`).
    /// Default: `i32::MAX`, the format's own bound.
    pub max_batch_bytes: usize,
    /// Decompressing one batch's records past this many bytes fails with a
    /// compression error. Default: [`DEFAULT_MAX_DECOMPRESSED_BYTES`].
    pub max_decompressed_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_batch_bytes: i32::MAX as usize,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// Iterator over the batches of a `records` blob (a Fetch partition's
/// `records`, or a Produce request's).
///
/// Yields `Ok(Batch)` per complete batch. A final batch cut short ends the
/// iteration without error (a broker may cut its response inside a batch);
/// [`Batches::truncated_tail`] then says how many bytes were left. A length
/// below the format's minimum or above [`ReadOptions::max_batch_bytes`], a
/// magic other than 0, 1 or 2, or a malformed header yields one `Err` and
/// ends the iteration. Nothing is copied: each batch is a slice of the blob.
#[derive(Clone, Debug)]
pub struct Batches {
    data: Bytes,
    pos: usize,
    opts: ReadOptions,
    done: bool,
    tail: usize,
}

impl Batches {
    /// Reads `data` with default [`ReadOptions`].
    pub fn new(data: Bytes) -> Batches {
        Batches::with_options(data, ReadOptions::default())
    }

    /// Reads `data` with the given limits.
    pub fn with_options(data: Bytes, opts: ReadOptions) -> Batches {
        Batches {
            data,
            pos: 0,
            opts,
            done: false,
            tail: 0,
        }
    }

    /// Bytes at the end of the blob that did not form a whole batch: 0 until
    /// the iteration has ended, 0 if the blob ended on a batch boundary, and
    /// 0 if the iteration ended on an error. When the first batch is already
    /// partial, the fetch size is too small for that batch.
    pub fn truncated_tail(&self) -> usize {
        self.tail
    }

    fn stop_truncated(&mut self) -> Option<Result<Batch, RecordError>> {
        self.done = true;
        self.tail = self.data.len() - self.pos;
        None
    }

    /// Position of the next batch in the blob.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn fail(&mut self, e: RecordError) -> Option<Result<Batch, RecordError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl Iterator for Batches {
    type Item = Result<Batch, RecordError>;

    fn next(&mut self) -> Option<Result<Batch, RecordError>> {
        if self.done {
            return None;
        }
        let rest = &self.data[self.pos..];
        if rest.len() < LOG_OVERHEAD {
            return self.stop_truncated();
        }
        // Same checks, in the same order, as Kafka's
        // `ByteBufferLogInputStream.nextBatchSize`.
        let size = be_i32(rest, LENGTH);
        if size < RECORD_OVERHEAD_V0 as i32 || size as usize > self.opts.max_batch_bytes {
            return self.fail(RecordError::BadLength {
                what: "batch",
                length: size as i64,
            });
        }
        if rest.len() <= MAGIC {
            return self.stop_truncated();
        }
        let magic = rest[MAGIC] as i8;
        if !(0..=2).contains(&magic) {
            return self.fail(RecordError::BadMagic(magic));
        }
        let total = LOG_OVERHEAD + size as usize;
        if rest.len() < total {
            return self.stop_truncated();
        }
        let bytes = self.data.slice(self.pos..self.pos + total);
        self.pos += total;
        let parsed = if magic == 2 {
            Batch::parse_v2(bytes, self.opts.max_decompressed_bytes)
        } else {
            Batch::parse_legacy(bytes, self.opts.max_decompressed_bytes)
        };
        match parsed {
            Ok(b) => Some(Ok(b)),
            Err(e) => self.fail(e),
        }
    }
}

impl std::iter::FusedIterator for Batches {}

/// The decoded v2 header.
#[derive(Clone, Copy, Debug)]
struct V2Header {
    base_offset: i64,
    partition_leader_epoch: i32,
    crc: u32,
    attributes: u16,
    compression: Compression,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    V2(V2Header),
    Legacy(LegacyMessage),
}

/// One batch of a `records` blob: a magic v2 record batch, or one legacy
/// (v0/v1) message, which may be a compressed wrapper of several.
///
/// Header accessors answer for both formats; where legacy messages have no
/// such field they return Kafka's "none" value, as Java's
/// `AbstractLegacyRecordBatch` does (no producer id, not transactional, no
/// leader epoch). Records come from [`Batch::records`].
#[derive(Clone, Debug)]
pub struct Batch {
    bytes: Bytes,
    kind: Kind,
    max_decompressed: usize,
}

impl Batch {
    fn parse_v2(bytes: Bytes, max_decompressed: usize) -> Result<Batch, RecordError> {
        let b: &[u8] = &bytes;
        if b.len() < RECORD_BATCH_OVERHEAD {
            return Err(RecordError::BadLength {
                what: "v2 batch",
                length: be_i32(b, LENGTH) as i64,
            });
        }
        let attributes = be_i16(b, ATTRIBUTES) as u16;
        let compression = Compression::from_id((attributes & COMPRESSION_MASK) as u8)?;
        let record_count = be_i32(b, RECORD_COUNT);
        // Every record takes at least `MIN_RECORD_BYTES`: a count the bytes
        // cannot hold is corrupt (checked again after decompression).
        let records_len = b.len() - RECORD_BATCH_OVERHEAD;
        if record_count < 0
            || (compression == Compression::None
                && record_count as usize > records_len / MIN_RECORD_BYTES)
        {
            return Err(RecordError::BadRecordCount(record_count));
        }
        let header = V2Header {
            base_offset: be_i64(b, BASE_OFFSET),
            partition_leader_epoch: be_i32(b, PARTITION_LEADER_EPOCH),
            crc: be_u32(b, CRC),
            attributes,
            compression,
            last_offset_delta: be_i32(b, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(b, BASE_TIMESTAMP),
            max_timestamp: be_i64(b, MAX_TIMESTAMP),
            producer_id: be_i64(b, PRODUCER_ID),
            producer_epoch: be_i16(b, PRODUCER_EPOCH),
            base_sequence: be_i32(b, BASE_SEQUENCE),
            record_count,
        };
        Ok(Batch {
            bytes,
            kind: Kind::V2(header),
            max_decompressed,
        })
    }

    fn parse_legacy(bytes: Bytes, max_decompressed: usize) -> Result<Batch, RecordError> {
        let msg = parse_message(&bytes)?;
        if msg.codec_id() != 0 {
            // Unknown codec ids are a header error, as for v2.
            Compression::from_id(msg.codec_id())?;
        }
        Ok(Batch {
            bytes,
            kind: Kind::Legacy(msg),
            max_decompressed,
        })
    }

    /// Parses the single batch at the start of `bytes` (which must hold all
    /// of it), with default limits. Handy for a batch stored on its own.
    pub fn parse(bytes: Bytes) -> Result<Batch, RecordError> {
        Batch::parse_with(bytes, ReadOptions::default())
    }

    /// [`parse`](Self::parse) with the limits of `opts`.
    pub(crate) fn parse_with(bytes: Bytes, opts: ReadOptions) -> Result<Batch, RecordError> {
        Batches::with_options(bytes, opts)
            .next()
            .unwrap_or(Err(RecordError::Truncated))
    }

    /// The magic byte: 2, or 0/1 for a legacy message.
    pub fn magic(&self) -> i8 {
        match self.kind {
            Kind::V2(_) => 2,
            Kind::Legacy(m) => m.magic,
        }
    }

    /// The whole batch as received, from its base offset field to its end.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Bytes the batch takes in the blob, log overhead included.
    pub fn size_in_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Offset of the first record. For a legacy compressed wrapper this is
    /// the wrapper's own offset, which is its *last* inner offset: the
    /// inner records carry their own offsets.
    pub fn base_offset(&self) -> i64 {
        match self.kind {
            Kind::V2(h) => h.base_offset,
            Kind::Legacy(m) => m.offset,
        }
    }

    /// Offset of the last record (base offset plus last offset delta); the
    /// next fetch offset is one past it, even when compaction removed the
    /// records at the end.
    pub fn last_offset(&self) -> i64 {
        match self.kind {
            Kind::V2(h) => h.base_offset.wrapping_add(h.last_offset_delta as i64),
            Kind::Legacy(m) => m.offset,
        }
    }

    /// The last offset delta field (0 for legacy messages).
    pub fn last_offset_delta(&self) -> i32 {
        match self.kind {
            Kind::V2(h) => h.last_offset_delta,
            Kind::Legacy(_) => 0,
        }
    }

    /// Leader epoch the broker stamped on the batch (-1 for legacy).
    pub fn partition_leader_epoch(&self) -> i32 {
        match self.kind {
            Kind::V2(h) => h.partition_leader_epoch,
            Kind::Legacy(_) => NO_PARTITION_LEADER_EPOCH,
        }
    }

    /// The CRC stored in the batch (CRC-32C for v2, CRC-32 for legacy).
    pub fn crc(&self) -> u32 {
        match self.kind {
            Kind::V2(h) => h.crc,
            Kind::Legacy(m) => m.crc,
        }
    }

    /// The raw attributes field (for legacy, the attributes byte).
    pub fn attributes(&self) -> u16 {
        match self.kind {
            Kind::V2(h) => h.attributes,
            Kind::Legacy(m) => m.attributes as u16,
        }
    }

    /// The codec of the records section (of the wrapper, for legacy).
    pub fn compression(&self) -> Compression {
        match self.kind {
            Kind::V2(h) => h.compression,
            // Checked when the batch was parsed.
            Kind::Legacy(m) => Compression::from_id(m.codec_id()).unwrap_or(Compression::None),
        }
    }

    /// What the timestamps mean.
    pub fn timestamp_type(&self) -> TimestampType {
        match self.kind {
            Kind::V2(h) if h.attributes & TIMESTAMP_TYPE_FLAG != 0 => TimestampType::LogAppendTime,
            Kind::V2(_) => TimestampType::CreateTime,
            Kind::Legacy(m) => m.timestamp_type(),
        }
    }

    /// Whether the batch belongs to a transaction (KIP-98).
    pub fn is_transactional(&self) -> bool {
        matches!(self.kind, Kind::V2(h) if h.attributes & TRANSACTIONAL_FLAG != 0)
    }

    /// Whether the batch holds control records (transaction markers)
    /// rather than data.
    pub fn is_control(&self) -> bool {
        matches!(self.kind, Kind::V2(h) if h.attributes & CONTROL_FLAG != 0)
    }

    /// The delete horizon of a compacted batch (KIP-534): set, the base
    /// timestamp field holds it.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        match self.kind {
            Kind::V2(h) if h.attributes & DELETE_HORIZON_FLAG != 0 => Some(h.base_timestamp),
            _ => None,
        }
    }

    /// The base timestamp field: the first record's timestamp (or the delete
    /// horizon); for legacy, the message timestamp (-1 for v0).
    pub fn base_timestamp(&self) -> i64 {
        match self.kind {
            Kind::V2(h) => h.base_timestamp,
            Kind::Legacy(m) => m.timestamp,
        }
    }

    /// The max timestamp field: the largest record timestamp, or the log
    /// append time; for legacy, the message timestamp (-1 for v0).
    pub fn max_timestamp(&self) -> i64 {
        match self.kind {
            Kind::V2(h) => h.max_timestamp,
            Kind::Legacy(m) => m.timestamp,
        }
    }

    /// Producer id (-1 when not idempotent, and for legacy).
    pub fn producer_id(&self) -> i64 {
        match self.kind {
            Kind::V2(h) => h.producer_id,
            Kind::Legacy(_) => NO_PRODUCER_ID,
        }
    }

    /// Producer epoch (-1 when not idempotent, and for legacy).
    pub fn producer_epoch(&self) -> i16 {
        match self.kind {
            Kind::V2(h) => h.producer_epoch,
            Kind::Legacy(_) => NO_PRODUCER_EPOCH,
        }
    }

    /// Sequence number of the first record (-1 when not idempotent).
    pub fn base_sequence(&self) -> i32 {
        match self.kind {
            Kind::V2(h) => h.base_sequence,
            Kind::Legacy(_) => NO_SEQUENCE,
        }
    }

    /// Sequence number of the last record, wrapping past `i32::MAX` to 0 as
    /// Kafka's `DefaultRecordBatch.incrementSequence` does.
    pub fn last_sequence(&self) -> i32 {
        match self.kind {
            Kind::V2(h) if h.base_sequence != NO_SEQUENCE => {
                increment_sequence(h.base_sequence, h.last_offset_delta)
            }
            _ => NO_SEQUENCE,
        }
    }

    /// The record count field; `None` for legacy messages, whose count is
    /// only known by reading them (as Java's `countOrNull`).
    pub fn record_count(&self) -> Option<i32> {
        match self.kind {
            Kind::V2(h) => Some(h.record_count),
            Kind::Legacy(_) => None,
        }
    }

    /// Checks the stored CRC against the bytes. Kafka's consumer does this
    /// when `check.crcs` is on (the default); a batch that fails is corrupt.
    pub fn verify_crc(&self) -> Result<(), RecordError> {
        match self.kind {
            Kind::V2(h) => {
                let actual = crc32c(&self.bytes[ATTRIBUTES..]);
                if actual != h.crc {
                    return Err(RecordError::CrcMismatch {
                        expected: h.crc,
                        actual,
                    });
                }
                Ok(())
            }
            Kind::Legacy(m) => m.verify_crc(&self.bytes),
        }
    }

    /// The records, read lazily. An uncompressed batch's records are slices
    /// of the blob; a compressed one is decompressed here into one buffer
    /// (bounded by [`ReadOptions::max_decompressed_bytes`]) that its records
    /// slice. Builds fresh codec state; a consumer reading many compressed
    /// batches keeps a [`Decompressor`] and calls
    /// [`records_with`](Self::records_with).
    pub fn records(&self) -> Result<Records, RecordError> {
        self.records_with(&mut Decompressor::new())
    }

    /// [`records`](Self::records), reusing `decompressor`'s codec state
    /// (zstd and gzip contexts are worth keeping across batches).
    pub fn records_with(&self, decompressor: &mut Decompressor) -> Result<Records, RecordError> {
        match self.kind {
            Kind::V2(h) => {
                let log_append_time =
                    (h.attributes & TIMESTAMP_TYPE_FLAG != 0).then_some(h.max_timestamp);
                let (buf, pos) = if h.record_count == 0 {
                    // Java returns an empty iterator for a count of 0 without
                    // looking at the records section (compaction may leave
                    // empty batches that keep producer state).
                    (self.bytes.clone(), self.bytes.len())
                } else if h.compression == Compression::None {
                    (self.bytes.clone(), RECORDS)
                } else {
                    let mut out = Vec::new();
                    decompressor.decompress(
                        h.compression,
                        &self.bytes[RECORDS..],
                        self.max_decompressed,
                        &mut out,
                    )?;
                    if h.record_count as usize > out.len() / MIN_RECORD_BYTES {
                        return Err(RecordError::BadRecordCount(h.record_count));
                    }
                    (Bytes::from(out), 0)
                };
                Ok(Records {
                    inner: RecordsInner::V2(V2Records {
                        buf,
                        pos,
                        remaining: h.record_count as u32,
                        base_offset: h.base_offset,
                        base_timestamp: h.base_timestamp,
                        log_append_time,
                    }),
                })
            }
            Kind::Legacy(m) => Ok(Records {
                inner: RecordsInner::Legacy(LegacyRecords::new(
                    &self.bytes,
                    &m,
                    self.max_decompressed,
                    decompressor,
                )?),
            }),
        }
    }
}

/// `DefaultRecordBatch.incrementSequence`: sequences wrap from `i32::MAX`
/// to 0.
/// Computed in `i64` so that a hostile negative delta cannot overflow.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let s = sequence as i64 + increment as i64;
    if s > i32::MAX as i64 {
        (s - i32::MAX as i64 - 1) as i32
    } else {
        s as i32
    }
}
