//! The batch builder: records appended into one buffer, sealed into a magic
//! v2 batch.
//!
//! The buffer starts with 61 bytes reserved for the header; each append
//! encodes one record after it (`DefaultRecord.writeTo`): no per-record
//! allocation, only the buffer's own growth. Sealing compresses the records
//! section (the header stays plain, as in `MemoryRecordsBuilder`), fills
//! the header and computes the CRC. The builder is then empty and ready for
//! the next batch; when the batch was compressed it keeps its buffer, and
//! an uncompressed batch's memory can be handed back once the broker has
//! acknowledged it ([`BatchBuilder::recycle`]).
//!
//! Fields the producer only knows when it sends (producer id and epoch,
//! base sequence, and for a broker the base offset and leader epoch) are
//! given at seal time, and a [`SealedBatch`] can be re-stamped: after an
//! epoch bump (KIP-360) an idempotent producer resends the same records with
//! a new epoch and sequence. Re-stamping rewrites the header in place and
//! recomputes the CRC, without recompressing. (Recombining the CRC from a
//! stored CRC of the records with `crc32c_combine` was tried: the combine
//! cost as much as a CRC pass over a 100 KiB batch at every seal, to save
//! work only on the rare re-stamp.)

use bytes::{Bytes, BytesMut};

use super::crc::crc32c;
use super::layout::*;
use super::records::{Header, HeaderRef};
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{
    RecordError, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
    RECORD_BATCH_OVERHEAD,
};
use crate::compression::{Compression, CompressionError, CompressionLevel, Compressor};

/// How [`BatchBuilder`] estimates the compressed size from the uncompressed
/// one, after the estimated ratio: Java's
/// `MemoryRecordsBuilder.COMPRESSION_RATE_ESTIMATION_FACTOR`.
const COMPRESSION_RATE_ESTIMATION_FACTOR: f32 = 1.05;

/// Most bytes a builder reserves up front, whatever `max_bytes` says.
const MAX_INITIAL_CAPACITY: usize = 1024 * 1024;

/// What a record header must offer to be written: a key (UTF-8 by Kafka's
/// contract) and a nullable value. Implemented for the reader's [`Header`]
/// and [`HeaderRef`] and for `(key, Option<value>)` pairs, so a producer can
/// pass the headers it already holds without building a new list.
pub trait AsHeader {
    /// The header key.
    fn header_key(&self) -> &[u8];
    /// The header value, `None` for null.
    fn header_value(&self) -> Option<&[u8]>;
}

impl AsHeader for Header {
    fn header_key(&self) -> &[u8] {
        &self.key
    }
    fn header_value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
}

impl AsHeader for HeaderRef<'_> {
    fn header_key(&self) -> &[u8] {
        self.key
    }
    fn header_value(&self) -> Option<&[u8]> {
        self.value
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> AsHeader for (K, Option<V>) {
    fn header_key(&self) -> &[u8] {
        self.0.as_ref()
    }
    fn header_value(&self) -> Option<&[u8]> {
        self.1.as_ref().map(AsRef::as_ref)
    }
}

impl<T: AsHeader + ?Sized> AsHeader for &T {
    fn header_key(&self) -> &[u8] {
        (**self).header_key()
    }
    fn header_value(&self) -> Option<&[u8]> {
        (**self).header_value()
    }
}

/// An empty header list with a type, for records without headers.
pub const NO_HEADERS: &[Header] = &[];

/// What a batch is, fixed when its builder is made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchOptions {
    /// Codec for the records section. Default: none.
    pub compression: Compression,
    /// Level for that codec (KIP-390); checked when the first batch is
    /// sealed. Default: the codec's default, which is Kafka's.
    pub compression_level: CompressionLevel,
    /// Sets the transactional attribute (KIP-98). Default: false.
    pub transactional: bool,
    /// Sets the control attribute: the records are transaction markers.
    /// Default: false.
    pub control: bool,
    /// Writes the base timestamp as this delete horizon and sets the
    /// delete-horizon attribute (KIP-534; a broker's log cleaner writes
    /// these, a client never does). Default: none.
    pub delete_horizon_ms: Option<i64>,
    /// The sealed size [`BatchBuilder::try_append`] keeps the batch under,
    /// estimated before compression (the producer's `batch.size`). The
    /// first record is always accepted, however large. Default: 16384, as
    /// Kafka's `batch.size`.
    pub max_bytes: usize,
    /// Expected compressed/uncompressed size ratio used for that estimate
    /// (Kafka adapts it per topic with `CompressionRatioEstimator`; feed back
    /// [`SealedBatch::compression_ratio`] to do the same). Default: 1.0.
    pub compression_ratio_estimate: f32,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            compression: Compression::None,
            compression_level: CompressionLevel::DEFAULT,
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            max_bytes: 16384,
            compression_ratio_estimate: 1.0,
        }
    }
}

/// The idempotence fields of a batch header (KIP-98), stamped at seal time
/// and re-stampable on a [`SealedBatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProducerStamp {
    /// Producer id, or [`NO_PRODUCER_ID`](super::NO_PRODUCER_ID).
    pub producer_id: i64,
    /// Producer epoch, or [`NO_PRODUCER_EPOCH`](super::NO_PRODUCER_EPOCH).
    pub producer_epoch: i16,
    /// Sequence of the first record, or [`NO_SEQUENCE`](super::NO_SEQUENCE).
    pub base_sequence: i32,
}

impl Default for ProducerStamp {
    /// A non-idempotent producer: every field "none" (-1).
    fn default() -> Self {
        ProducerStamp {
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
        }
    }
}

/// The header fields set when a batch is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchStamp {
    /// Base offset: 0 from a producer (the broker assigns offsets).
    pub base_offset: i64,
    /// Partition leader epoch: -1 from a producer (the broker stamps it).
    pub partition_leader_epoch: i32,
    /// Producer id, epoch and base sequence.
    pub producer: ProducerStamp,
    /// When set, the batch is a `LogAppendTime` batch with this max
    /// timestamp (what a broker writes for topics configured so); when
    /// unset, a `CreateTime` batch whose max timestamp is the largest
    /// record timestamp.
    pub log_append_time: Option<i64>,
}

impl Default for BatchStamp {
    fn default() -> Self {
        BatchStamp {
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer: ProducerStamp::default(),
            log_append_time: None,
        }
    }
}

/// Why a record was not appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The batch is full: seal it and append the record to a new batch.
    #[error("the batch is full")]
    Full,
    /// The record cannot be encoded in any batch: a key, value, header or
    /// the whole record is longer than `i32::MAX` bytes, or there are more
    /// than `i32::MAX` headers.
    #[error("record of about {size} bytes cannot be encoded")]
    RecordTooLarge {
        /// Encoded size the record would have had (saturated).
        size: usize,
    },
}

/// Why a batch could not be sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A batch needs at least one record (Kafka writes nothing for an empty
    /// builder).
    #[error("cannot seal an empty batch")]
    Empty,
    /// The codec failed.
    #[error("compressing the batch failed: {0}")]
    Compression(#[from] CompressionError),
    /// The compressed batch is longer than `i32::MAX` bytes.
    #[error("sealed batch of {0} bytes exceeds the format's limit")]
    TooLarge(usize),
}

/// Builds one magic v2 record batch at a time; see the module docs.
///
/// ```
/// use sansa_core::record::{BatchBuilder, BatchOptions, BatchStamp, Batches};
///
/// let mut b = BatchBuilder::new(BatchOptions::default());
/// b.try_append(1_700_000_000_000, Some(b"k"), Some(b"v"), &[("h", Some("x"))])
///     .unwrap();
/// let sealed = b.seal(&BatchStamp::default()).unwrap();
/// let batch = Batches::new(sealed.to_bytes()).next().unwrap().unwrap();
/// batch.verify_crc().unwrap();
/// let record = batch.records().unwrap().next().unwrap().unwrap();
/// assert_eq!(record.value.as_deref(), Some(&b"v"[..]));
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    opts: BatchOptions,
    /// Header placeholder, then the uncompressed records.
    buf: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    /// The codec's state, kept across batches (a zstd or deflate context
    /// costs more to set up than compressing a small batch).
    compressor: Option<Compressor>,
}

impl BatchBuilder {
    /// An empty builder; reserves up to `max_bytes` (at most 1 MiB).
    pub fn new(opts: BatchOptions) -> BatchBuilder {
        BatchBuilder::with_buffer(opts, Vec::new())
    }

    /// An empty builder that writes into `buf` (cleared), to reuse an
    /// allocation.
    pub fn with_buffer(opts: BatchOptions, mut buf: Vec<u8>) -> BatchBuilder {
        buf.clear();
        buf.reserve(initial_capacity(&opts));
        buf.resize(RECORD_BATCH_OVERHEAD, 0);
        BatchBuilder {
            opts,
            buf,
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            compressor: None,
        }
    }

    /// The options the builder was made with.
    pub fn options(&self) -> &BatchOptions {
        &self.opts
    }

    /// Replaces the compression-ratio estimate (see
    /// [`BatchOptions::compression_ratio_estimate`]).
    pub fn set_compression_ratio_estimate(&mut self, ratio: f32) {
        self.opts.compression_ratio_estimate = ratio;
    }

    /// Records appended since the last seal.
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Whether no record was appended since the last seal.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the records appended so far, before compression.
    pub fn uncompressed_records_len(&self) -> usize {
        self.buf.len() - RECORD_BATCH_OVERHEAD
    }

    /// The sealed size as Kafka estimates it: the header plus the records,
    /// scaled by the compression-ratio estimate (and a 5% margin) when a
    /// codec is set.
    pub fn estimated_size(&self) -> usize {
        let records = self.uncompressed_records_len();
        let scaled = if self.opts.compression == Compression::None {
            records
        } else {
            let r = records as f64
                * self.opts.compression_ratio_estimate as f64
                * COMPRESSION_RATE_ESTIMATION_FACTOR as f64;
            r as usize
        };
        RECORD_BATCH_OVERHEAD + scaled
    }

    /// Encoded size the record would take if appended next, or `None` if it
    /// cannot be encoded at all.
    pub fn record_size<H: AsHeader>(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
    ) -> Option<usize> {
        let body = body_len(
            self.count,
            self.timestamp_delta(timestamp),
            key,
            value,
            headers,
        )?;
        Some(varint_len(body as i32) + body)
    }

    /// Whether [`try_append`](Self::try_append) would accept the record now:
    /// always for the first record of a batch (like Kafka), otherwise if the
    /// estimated sealed size plus the record's uncompressed size (a
    /// conservative bound: the new record's compression is not counted)
    /// stays within `max_bytes`.
    pub fn would_fit<H: AsHeader>(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
    ) -> bool {
        match self.record_size(timestamp, key, value, headers) {
            None => false,
            Some(_) if self.count == 0 => true,
            Some(size) => self.estimated_size().saturating_add(size) <= self.opts.max_bytes,
        }
    }

    /// Appends a record if [`would_fit`](Self::would_fit) says so.
    /// `timestamp` is the record's create time in milliseconds, chosen by
    /// the caller (the core reads no clock).
    pub fn try_append<H: AsHeader>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
    ) -> Result<(), AppendError> {
        self.append_inner(timestamp, key, value, headers, true)
    }

    /// Appends a record whatever `max_bytes` says (still refusing what the
    /// format cannot encode).
    pub fn append<H: AsHeader>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
    ) -> Result<(), AppendError> {
        self.append_inner(timestamp, key, value, headers, false)
    }

    #[inline]
    fn timestamp_delta(&self, timestamp: i64) -> i64 {
        let base = if self.count == 0 {
            self.opts.delete_horizon_ms.unwrap_or(timestamp)
        } else {
            self.base_timestamp
        };
        // Java subtracts without checking; wrapping keeps the round trip
        // exact for any pair of timestamps.
        timestamp.wrapping_sub(base)
    }

    #[inline]
    fn append_inner<H: AsHeader>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
        check_size: bool,
    ) -> Result<(), AppendError> {
        if self.count == i32::MAX {
            // The offset delta is an int32.
            return Err(AppendError::Full);
        }
        let ts_delta = self.timestamp_delta(timestamp);
        let Some(body) = body_len(self.count, ts_delta, key, value, headers) else {
            return Err(AppendError::RecordTooLarge { size: usize::MAX });
        };
        let size = varint_len(body as i32) + body;
        let new_len = self.buf.len().saturating_add(size);
        // The batch length field (int32) counts everything after itself.
        if new_len - super::LOG_OVERHEAD > i32::MAX as usize {
            return Err(if self.count == 0 {
                AppendError::RecordTooLarge { size }
            } else {
                AppendError::Full
            });
        }
        if check_size
            && self.count > 0
            && self.estimated_size().saturating_add(size) > self.opts.max_bytes
        {
            return Err(AppendError::Full);
        }

        let buf = &mut self.buf;
        if buf.capacity() - buf.len() < size {
            // Straight to the batch size the first time, not by doubling.
            buf.reserve(size.max(initial_capacity(&self.opts).saturating_sub(buf.len())));
        }
        put_varint(buf, body as i32);
        buf.push(0); // attributes: none defined for records
        put_varlong(buf, ts_delta);
        put_varint(buf, self.count);
        put_bytes(buf, key);
        put_bytes(buf, value);
        put_varint(buf, headers.len() as i32);
        for h in headers {
            let k = h.header_key();
            put_varint(buf, k.len() as i32);
            buf.extend_from_slice(k);
            put_bytes(buf, h.header_value());
        }
        debug_assert_eq!(buf.len(), new_len);

        if self.count == 0 {
            self.base_timestamp = timestamp.wrapping_sub(ts_delta);
            self.max_timestamp = timestamp;
        } else if timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
        }
        self.count += 1;
        Ok(())
    }

    /// Gives the builder codec state to compress with (see
    /// [`Compressor`]): a producer that opens a builder per batch keeps one
    /// `Compressor` and lends it to each, instead of building fresh codec
    /// tables (snappy's hash table, zstd's context) for every batch. A
    /// compressor for another codec or level is ignored.
    pub fn lend_compressor(&mut self, compressor: Compressor) {
        if compressor.codec() == self.opts.compression
            && compressor.level() == self.opts.compression_level
        {
            self.compressor = Some(compressor);
        }
    }

    /// The builder's buffer, for another builder
    /// ([`BatchBuilder::with_buffer`]); with compression it holds the
    /// uncompressed records, a batch's worth of memory worth keeping.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Takes back the codec state (lent or built by [`seal`](Self::seal)).
    pub fn take_compressor(&mut self) -> Option<Compressor> {
        self.compressor.take()
    }

    /// Seals the records appended so far into a batch stamped with `stamp`,
    /// and empties the builder for the next batch.
    pub fn seal(&mut self, stamp: &BatchStamp) -> Result<SealedBatch, BuildError> {
        if self.count == 0 {
            return Err(BuildError::Empty);
        }
        let uncompressed_records_len = self.uncompressed_records_len();
        let mut out = if self.opts.compression == Compression::None {
            // The buffer becomes the batch. The next one is reserved at the
            // next append, unless a sent batch is handed back first
            // (`recycle`), so a producer can keep a pool like Java's
            // `BufferPool`.
            std::mem::replace(&mut self.buf, header_placeholder())
        } else {
            let mut out =
                Vec::with_capacity(RECORD_BATCH_OVERHEAD + uncompressed_records_len / 2 + 64);
            out.resize(RECORD_BATCH_OVERHEAD, 0);
            let compressor = match &mut self.compressor {
                Some(c) => c,
                slot => slot.insert(Compressor::with_level(
                    self.opts.compression,
                    self.opts.compression_level,
                )?),
            };
            compressor.compress(&self.buf[RECORD_BATCH_OVERHEAD..], &mut out)?;
            self.buf.truncate(RECORD_BATCH_OVERHEAD);
            out
        };
        if out.len() - super::LOG_OVERHEAD > i32::MAX as usize {
            self.reset();
            return Err(BuildError::TooLarge(out.len()));
        }

        let mut attributes = self.opts.compression.id() as u16 & COMPRESSION_MASK;
        if self.opts.transactional {
            attributes |= TRANSACTIONAL_FLAG;
        }
        if self.opts.control {
            attributes |= CONTROL_FLAG;
        }
        if self.opts.delete_horizon_ms.is_some() {
            attributes |= DELETE_HORIZON_FLAG;
        }
        let max_timestamp = match stamp.log_append_time {
            Some(t) => {
                attributes |= TIMESTAMP_TYPE_FLAG;
                t
            }
            None => self.max_timestamp,
        };

        let h = &mut out[..RECORD_BATCH_OVERHEAD];
        put_i64(h, BASE_OFFSET, stamp.base_offset);
        put_i32(h, PARTITION_LEADER_EPOCH, stamp.partition_leader_epoch);
        h[MAGIC] = 2;
        h[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        put_i32(h, LAST_OFFSET_DELTA, self.count - 1);
        put_i64(h, BASE_TIMESTAMP, self.base_timestamp);
        put_i64(h, MAX_TIMESTAMP, max_timestamp);
        put_i32(h, RECORD_COUNT, self.count);
        let total = out.len();
        put_i32(&mut out, LENGTH, (total - super::LOG_OVERHEAD) as i32);
        write_producer(&mut out, &stamp.producer);
        write_crc(&mut out);
        let sealed = SealedBatch {
            bytes: Bytes::from(out),
            uncompressed_records_len,
            record_count: self.count,
        };
        self.reset();
        Ok(sealed)
    }

    /// Takes back the memory of a batch that is no longer needed (acknowledged
    /// by the broker) for the next batch, if nothing else still holds its
    /// bytes and the builder is empty. Saves the allocation, and the page
    /// faults of touching fresh memory, for every batch. Returns whether the
    /// memory was taken.
    pub fn recycle(&mut self, batch: SealedBatch) -> bool {
        if self.count != 0 {
            return false;
        }
        let Some(mut buf) = batch.into_buffer() else {
            return false;
        };
        if buf.capacity() <= self.buf.capacity() {
            return false;
        }
        buf.clear();
        buf.resize(RECORD_BATCH_OVERHEAD, 0);
        self.buf = buf;
        true
    }

    /// The records appended since the last seal, read back as a reader
    /// sees them (from a copy; the builder is left as it was). For a
    /// producer that let go of its records once their bytes were written
    /// and must give them back to their callers when the batch fails: a
    /// rare path, so it may copy.
    pub(crate) fn read_back(&self) -> Result<Vec<super::Record>, RecordError> {
        let mut copy = BatchBuilder {
            opts: BatchOptions {
                compression: Compression::None,
                ..self.opts
            },
            buf: self.buf.clone(),
            count: self.count,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            compressor: None,
        };
        match copy.seal(&BatchStamp::default()) {
            Ok(sealed) => sealed.read_back(),
            Err(BuildError::Empty) => Ok(Vec::new()),
            Err(BuildError::Compression(e)) => Err(e.into()),
            Err(BuildError::TooLarge(size)) => Err(RecordError::BadLength {
                what: "batch",
                length: i64::try_from(size).unwrap_or(i64::MAX),
            }),
        }
    }

    /// Drops the records appended since the last seal.
    pub fn reset(&mut self) {
        self.buf.truncate(RECORD_BATCH_OVERHEAD);
        self.buf.resize(RECORD_BATCH_OVERHEAD, 0);
        self.count = 0;
        self.base_timestamp = 0;
        self.max_timestamp = 0;
    }
}

/// Most bytes a record takes besides its key, value and headers: length
/// (5), attributes (1), timestamp delta (10) and offset delta (5)
/// (`DefaultRecord.MAX_RECORD_OVERHEAD`).
const MAX_RECORD_OVERHEAD: usize = 21;

/// An upper bound on the size of a batch holding only this record,
/// uncompressed, whatever its timestamp: what a producer checks against
/// `max.request.size` before accepting a record (Kafka's
/// `DefaultRecordBatch.estimateBatchSizeUpperBound`). `None` lengths are
/// null keys or values.
pub fn batch_size_upper_bound<H: AsHeader>(
    key_len: Option<usize>,
    value_len: Option<usize>,
    headers: &[H],
) -> usize {
    let field = |len: Option<usize>| match len {
        None => 1,
        Some(n) => varint_len(i32::try_from(n).unwrap_or(i32::MAX)).saturating_add(n),
    };
    let mut n = RECORD_BATCH_OVERHEAD + MAX_RECORD_OVERHEAD;
    n = n
        .saturating_add(field(key_len))
        .saturating_add(field(value_len));
    n = n.saturating_add(varint_len(i32::try_from(headers.len()).unwrap_or(i32::MAX)));
    for h in headers {
        n = n
            .saturating_add(field(Some(h.header_key().len())))
            .saturating_add(field(h.header_value().map(<[u8]>::len)));
    }
    n
}

/// What a builder reserves for a batch: the header and `max_bytes`, at most
/// 1 MiB.
fn initial_capacity(opts: &BatchOptions) -> usize {
    RECORD_BATCH_OVERHEAD + opts.max_bytes.min(MAX_INITIAL_CAPACITY)
}

/// A buffer holding only the zeroed header placeholder.
fn header_placeholder() -> Vec<u8> {
    vec![0; RECORD_BATCH_OVERHEAD]
}

/// Encoded size of a record body (everything after its length varint), or
/// `None` when a part exceeds what the format's int32 lengths allow.
#[inline(always)]
fn body_len<H: AsHeader>(
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[H],
) -> Option<usize> {
    let mut n = 1 + varint_len(offset_delta) + varlong_len(timestamp_delta);
    n += bytes_len(key)?;
    n += bytes_len(value)?;
    let count = i32::try_from(headers.len()).ok()?;
    n += varint_len(count);
    for h in headers {
        let k = h.header_key().len();
        n += varint_len(i32::try_from(k).ok()?) + k;
        n += bytes_len(h.header_value())?;
    }
    (n <= i32::MAX as usize).then_some(n)
}

#[inline(always)]
fn bytes_len(b: Option<&[u8]>) -> Option<usize> {
    match b {
        None => Some(1), // varint -1
        Some(b) => Some(varint_len(i32::try_from(b.len()).ok()?) + b.len()),
    }
}

#[inline(always)]
fn put_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => buf.push(0x01), // zigzag(-1)
        Some(b) => {
            put_varint(buf, b.len() as i32);
            buf.extend_from_slice(b);
        }
    }
}

fn put_i64(b: &mut [u8], at: usize, v: i64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn put_i32(b: &mut [u8], at: usize, v: i32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn write_producer(b: &mut [u8], p: &ProducerStamp) {
    put_i64(b, PRODUCER_ID, p.producer_id);
    b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&p.producer_epoch.to_be_bytes());
    put_i32(b, BASE_SEQUENCE, p.base_sequence);
}

/// The CRC-32C of the attributes to the end, into its field.
fn write_crc(b: &mut [u8]) {
    let crc = crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A sealed magic v2 batch, ready to put in a Produce request.
///
/// Its bytes are a [`Bytes`]: [`SealedBatch::to_bytes`] is a reference
/// count, so each send attempt shares one buffer. Re-stamping edits that
/// buffer in place when no request still holds it, and copies it otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBatch {
    bytes: Bytes,
    uncompressed_records_len: usize,
    record_count: i32,
}

impl SealedBatch {
    /// The batch bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The batch bytes, shared (a reference count, no copy).
    pub fn to_bytes(&self) -> Bytes {
        self.bytes.clone()
    }

    /// The batch bytes, consuming the batch.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The batch's records, read back as a reader sees them (decompressed
    /// if need be): see [`BatchBuilder::read_back`].
    pub(crate) fn read_back(&self) -> Result<Vec<super::Record>, RecordError> {
        // Our own batch: its records are as long as they were when
        // written, which may pass the reader's default bound.
        let options = super::ReadOptions {
            max_decompressed_bytes: self.uncompressed_records_len,
            ..Default::default()
        };
        super::Batch::parse_with(self.to_bytes(), options)?
            .records()?
            .collect()
    }

    /// The batch's memory as a plain buffer to build another batch in
    /// ([`BatchBuilder::with_buffer`]), if nothing else still holds its
    /// bytes.
    pub fn into_buffer(self) -> Option<Vec<u8>> {
        if !self.bytes.is_unique() {
            return None;
        }
        self.bytes.try_into_mut().ok().map(Vec::from)
    }

    /// Size of the sealed batch in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a sealed batch holds at least its header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Records in the batch.
    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// Compressed records section size over its uncompressed size (1.0 when
    /// uncompressed), to feed back into the builder's estimate.
    pub fn compression_ratio(&self) -> f32 {
        let compressed = self.bytes.len() - RECORD_BATCH_OVERHEAD;
        if self.uncompressed_records_len == 0 {
            return 1.0;
        }
        compressed as f32 / self.uncompressed_records_len as f32
    }

    /// The producer fields currently stamped.
    pub fn producer(&self) -> ProducerStamp {
        let b = &self.bytes;
        ProducerStamp {
            producer_id: super::be_i64(b, PRODUCER_ID),
            producer_epoch: super::be_i16(b, PRODUCER_EPOCH),
            base_sequence: super::be_i32(b, BASE_SEQUENCE),
        }
    }

    /// The stored CRC-32C.
    pub fn crc(&self) -> u32 {
        super::be_u32(&self.bytes, CRC)
    }

    /// Rewrites producer id, epoch and base sequence and the CRC, without
    /// recompressing: how a batch is resent after an epoch bump (KIP-360)
    /// or a sequence reset.
    pub fn restamp(&mut self, producer: &ProducerStamp) {
        self.edit(|b| {
            write_producer(b, producer);
            write_crc(b);
        });
    }

    /// Sets the base offset (outside the CRC, so nothing else changes): a
    /// broker assigning offsets.
    pub fn set_base_offset(&mut self, base_offset: i64) {
        self.edit(|b| put_i64(b, BASE_OFFSET, base_offset));
    }

    /// Sets the partition leader epoch (outside the CRC).
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        self.edit(|b| put_i32(b, PARTITION_LEADER_EPOCH, epoch));
    }

    fn edit(&mut self, f: impl FnOnce(&mut [u8])) {
        let bytes = std::mem::take(&mut self.bytes);
        let mut m = match bytes.try_into_mut() {
            Ok(m) => m,
            // A request still holds the old bytes: leave them intact.
            Err(shared) => BytesMut::from(&shared[..]),
        };
        f(&mut m);
        self.bytes = m.freeze();
    }
}
