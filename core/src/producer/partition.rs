//! One partition's buffer: a queue of batches, the idempotent sequence, and
//! the rules for when a record may be sent, retried or failed.
//!
//! The rules (franz-go's, see `semantics.md`):
//! - A batch is sealed and given its base sequence the first time it is
//!   sent, and then frozen: a retry resends the same bytes with the same
//!   sequence, so the broker can drop a duplicate.
//! - At most `max_in_flight` batches of a partition are in flight, and only
//!   one until the partition's first success (the broker must learn the
//!   producer's sequence before it can order pipelined batches).
//! - After an error, nothing new is sent until every batch in flight is
//!   back; then sending restarts from the first unacknowledged batch.
//! - A batch may be failed (timeout, retry limit, cancellation) only when it
//!   has no request outstanding and has never had an ambiguous outcome (a
//!   request that timed out or a connection lost after the write): the
//!   broker might have it, and failing it could leave the sequence with a
//!   hole or report as failed a record that was written.
//! - Failing a batch fails every batch behind it in the partition, so a
//!   partition never has a gap in its order.

use std::collections::VecDeque;

use crate::compression::Compressor;
use crate::protocol::ErrorCode;
use crate::record::{BatchBuilder, BatchOptions, BatchStamp, ProducerStamp, SealedBatch};
use crate::time::Timestamp;

use super::record::{ProduceError, ProduceId, Record, RecordMeta};
use super::topic::Topic;

/// A record on its way into a batch (or waiting for its topic's
/// partitions), or out of a failed one back to its caller.
#[derive(Debug)]
pub(crate) struct PendingRecord {
    pub(crate) id: ProduceId,
    pub(crate) record: Record,
    pub(crate) timestamp: i64,
}

/// A record whose bytes are in a batch: what the producer needs to answer
/// for it, and not the record itself. The record is dropped once written,
/// on the thread that produced it, so its key and value are freed where
/// they were allocated (and their memory is reused by the next record)
/// instead of waiting, twice buffered, for the acknowledgement to free
/// them on the driver's thread. A record is given back to its caller only
/// when its batch fails, which is rare; it is then read back from the
/// batch's bytes (see [`Batch::recover`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchedRecord {
    pub(crate) id: ProduceId,
    /// The record's timestamp as written.
    pub(crate) timestamp: i64,
    /// Its [`Record::user_size`], for the buffer's accounting.
    pub(crate) size: usize,
    /// Whether the caller set the partition (the manual partitioner) ...
    partition_given: bool,
    /// ... and the timestamp, so the record given back has them as given.
    timestamp_given: bool,
}

/// Where a batch stands.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Unique within the partition, to match responses.
    pub(crate) id: u64,
    builder: Option<BatchBuilder>,
    pub(crate) sealed: Option<SealedBatch>,
    pub(crate) records: Vec<BatchedRecord>,
    pub(crate) created_at: Timestamp,
    pub(crate) first_sent_at: Option<Timestamp>,
    /// Base sequence, assigned at first send (or after an epoch reset).
    pub(crate) sequence: Option<i32>,
    pub(crate) attempts: u32,
    pub(crate) in_flight: bool,
    pub(crate) ambiguous: bool,
    pub(crate) last_error: Option<ErrorCode>,
    pub(crate) cancelled: bool,
    /// Send without waiting for linger (`produce_sync`, flush).
    pub(crate) urgent: bool,
    pub(crate) user_bytes: usize,
}

impl Batch {
    pub(crate) fn record_count(&self) -> i32 {
        self.records.len() as i32
    }

    /// The batch's records as their callers gave them, read back from
    /// the batch's bytes (sealed or not), to give them back with a
    /// failure. Keys, values and headers are slices of one buffer.
    fn recover(self, topic: &Topic, partition: i32) -> Vec<PendingRecord> {
        let read = match (&self.sealed, &self.builder) {
            (Some(sealed), _) => sealed.read_back(),
            (None, Some(builder)) => builder.read_back(),
            (None, None) => Ok(Vec::new()),
        };
        // Our own bytes: reading them back cannot fail unless this code
        // is wrong, which the tests (debug builds) must hear about.
        let mut read = match read {
            Ok(read) if read.len() == self.records.len() => read.into_iter(),
            Ok(read) => {
                tracing::error!(
                    expected = self.records.len(),
                    read = read.len(),
                    "a failed batch read back with the wrong number of records"
                );
                debug_assert_eq!(read.len(), self.records.len(), "records read back");
                Vec::new().into_iter()
            }
            Err(e) => {
                tracing::error!(error = %e, "a failed batch could not be read back");
                debug_assert!(false, "a failed batch could not be read back: {e}");
                Vec::new().into_iter()
            }
        };
        self.records
            .into_iter()
            .map(|b| {
                // Only a batch that cannot be read back (never seen) gives
                // back records without their bytes.
                let r = read.next().unwrap_or_else(|| crate::record::Record {
                    offset: 0,
                    timestamp: b.timestamp,
                    key: None,
                    value: None,
                    headers: Default::default(),
                });
                PendingRecord {
                    id: b.id,
                    record: Record {
                        topic: topic.clone(),
                        partition: b.partition_given.then_some(partition),
                        key: r.key,
                        value: r.value,
                        headers: r.headers.iter().collect(),
                        timestamp: b.timestamp_given.then_some(b.timestamp),
                    },
                    timestamp: b.timestamp,
                }
            })
            .collect()
    }
}

/// Kafka's sequence arithmetic: sequences wrap from `i32::MAX` to 0
/// (`DefaultRecordBatch.incrementSequence`).
pub(crate) fn increment_sequence(seq: i32, by: i32) -> i32 {
    if seq > i32::MAX - by {
        by - (i32::MAX - seq) - 1
    } else {
        seq + by
    }
}

/// What building and sealing batches reuse from one batch to the next:
/// the codec state (snappy's table, zstd's context) and the buffers of
/// batches already acknowledged, so a steady producer neither rebuilds
/// codec tables nor touches fresh memory (a page fault per 4 KiB) for
/// every batch, as Java's `BufferPool` spares it.
#[derive(Debug, Default)]
pub(crate) struct BatchMemory {
    compressor: Option<Compressor>,
    spare: Vec<Vec<u8>>,
}

/// Spare buffers kept at most: enough for the batches of a few requests
/// in flight, few enough that an idle producer holds little.
const MAX_SPARE_BUFFERS: usize = 4;

/// Buffers smaller than this are not worth keeping.
const MIN_SPARE_CAPACITY: usize = 16 * 1024;

impl BatchMemory {
    fn give(&mut self, buf: Vec<u8>) {
        if self.spare.len() < MAX_SPARE_BUFFERS && buf.capacity() >= MIN_SPARE_CAPACITY {
            self.spare.push(buf);
        }
    }

    fn take(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }
}

/// A batch the broker acknowledged: its records, in offset order, and
/// where they landed.
#[derive(Debug)]
pub(crate) struct Acked {
    pub(crate) records: Vec<BatchedRecord>,
    pub(crate) partition: i32,
    /// The first record's offset, or -1 when the broker did not say (a
    /// duplicate, or acks=0).
    pub(crate) base_offset: i64,
    /// The broker's append time, or -1 for create time.
    pub(crate) log_append_time: i64,
}

impl Acked {
    /// Where the `i`-th record landed.
    pub(crate) fn meta(&self, topic: &std::sync::Arc<str>, i: usize, timestamp: i64) -> RecordMeta {
        RecordMeta {
            topic: topic.clone(),
            partition: self.partition,
            offset: if self.base_offset >= 0 {
                self.base_offset + i as i64
            } else {
                -1
            },
            timestamp: if self.log_append_time >= 0 {
                self.log_append_time
            } else {
                timestamp
            },
        }
    }
}

/// A batch failed; what to tell the records.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) records: Vec<PendingRecord>,
    pub(crate) error: ProduceError,
}

/// One partition's buffer.
#[derive(Debug)]
pub(crate) struct PartitionBuffer {
    /// The topic, for records given back from failed batches.
    topic: Topic,
    pub(crate) partition: i32,
    pub(crate) batches: VecDeque<Batch>,
    next_batch_id: u64,
    /// Sequence for the next batch sent for the first time.
    pub(crate) next_sequence: i32,
    pub(crate) in_flight: usize,
    /// The broker the batches in flight went to: a partition is never in
    /// flight to two brokers at once (a leader move waits for them).
    pub(crate) sending_to: Option<crate::cluster::NodeId>,
    pub(crate) ever_succeeded: bool,
    /// An error came back: wait for all in flight, then resend from the
    /// front at `retry_at`.
    rewinding: bool,
    pub(crate) retry_at: Option<Timestamp>,
    pub(crate) retry_attempts: u32,
    /// An earlier batch failed; batches still in flight behind it fail
    /// when they come back.
    failing: Option<ProduceError>,
    /// Highest offset acknowledged, for KIP-360's truncation test.
    pub(crate) last_acked_offset: i64,
    pub(crate) buffered_records: usize,
    pub(crate) buffered_bytes: usize,
    /// A batch that may have been written was failed: the partition's
    /// sequence cannot go on under this epoch (see `on_fatal`).
    sequence_broken: bool,
    /// Since when a ready batch could not be sent (see `note_blocked`);
    /// cleared by a send.
    blocked_since: Option<Timestamp>,
    /// Records the last full batch held, to size the next one's list.
    records_hint: usize,
}

/// The most records a new batch reserves room for up front.
const MAX_RECORDS_HINT: usize = 16 * 1024;

impl PartitionBuffer {
    pub(crate) fn new(topic: Topic, partition: i32) -> Self {
        PartitionBuffer {
            topic,
            partition,
            batches: VecDeque::new(),
            next_batch_id: 0,
            next_sequence: 0,
            in_flight: 0,
            sending_to: None,
            ever_succeeded: false,
            rewinding: false,
            retry_at: None,
            retry_attempts: 0,
            failing: None,
            last_acked_offset: -1,
            buffered_records: 0,
            buffered_bytes: 0,
            sequence_broken: false,
            blocked_since: None,
            records_hint: 0,
        }
    }

    /// Writes the record's bytes into the open batch if it fits there;
    /// `false` means it needs a new batch. [`keep`](Self::keep) must
    /// follow a `true`.
    ///
    /// Writing and keeping are separate steps so the producer can ask the
    /// partitioner about a new batch only when one is needed, and tell it
    /// about the record while still holding the record, without encoding
    /// the record's size twice.
    pub(crate) fn write_open(&mut self, pending: &PendingRecord) -> bool {
        let r = &pending.record;
        match self.batches.back_mut().and_then(|b| b.builder.as_mut()) {
            Some(b) => b
                .try_append(
                    pending.timestamp,
                    r.key.as_deref(),
                    r.value.as_deref(),
                    &r.headers,
                )
                .is_ok(),
            None => false,
        }
    }

    /// Opens a new batch and writes the record's bytes into it;
    /// [`keep`](Self::keep) must follow an `Ok`.
    pub(crate) fn write_new(
        &mut self,
        now: Timestamp,
        pending: &PendingRecord,
        options: &BatchOptions,
        memory: &mut BatchMemory,
    ) -> Result<(), ProduceError> {
        let r = &pending.record;
        let mut builder = BatchBuilder::with_buffer(*options, memory.take());
        if let Err(e) = builder.try_append(
            pending.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        ) {
            let size = match e {
                crate::record::AppendError::RecordTooLarge { size } => size,
                _ => r.user_size(),
            };
            return Err(ProduceError::RecordTooLarge {
                size,
                max: options.max_bytes,
            });
        }
        if builder.estimated_size() > options.max_bytes {
            return Err(ProduceError::RecordTooLarge {
                size: builder.estimated_size(),
                max: options.max_bytes,
            });
        }
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        // Room for half again as many records as the batch before held: a
        // batch of small records grows its list many times over otherwise,
        // copying every record at each step.
        if let Some(last) = self.batches.back() {
            let n = last.records.len();
            self.records_hint = (n + n / 2).min(MAX_RECORDS_HINT);
        }
        self.batches.push_back(Batch {
            id,
            builder: Some(builder),
            sealed: None,
            records: Vec::with_capacity(self.records_hint),
            created_at: now,
            first_sent_at: None,
            sequence: None,
            attempts: 0,
            in_flight: false,
            ambiguous: false,
            last_error: None,
            cancelled: false,
            urgent: false,
            user_bytes: 0,
        });
        Ok(())
    }

    /// Keeps a record whose bytes [`write_open`](Self::write_open) or
    /// [`write_new`](Self::write_new) just wrote into the last batch.
    /// The record itself is dropped here (see [`BatchedRecord`]).
    pub(crate) fn keep(&mut self, pending: PendingRecord, urgent: bool) {
        let size = pending.record.user_size();
        let kept = BatchedRecord {
            id: pending.id,
            timestamp: pending.timestamp,
            size,
            partition_given: pending.record.partition.is_some(),
            timestamp_given: pending.record.timestamp.is_some(),
        };
        drop(pending);
        let Some(batch) = self.batches.back_mut() else {
            // Unreachable after a successful write; never lose the record
            // silently if it were reached.
            tracing::error!("a record was kept with no batch to keep it in");
            return;
        };
        batch.urgent |= urgent;
        batch.user_bytes += size;
        batch.records.push(kept);
        self.buffered_records += 1;
        self.buffered_bytes += size;
    }

    /// Index of the next batch to send, if sending is allowed now.
    fn next_to_send(&self, now: Timestamp, max_in_flight: usize) -> Option<usize> {
        if self.rewinding || self.failing.is_some() {
            return None;
        }
        if self.retry_at.is_some_and(|t| t > now) {
            return None;
        }
        let limit = if self.ever_succeeded {
            max_in_flight
        } else {
            1
        };
        if self.in_flight >= limit {
            return None;
        }
        // Batches go out in order and come back in order, so every batch
        // before the first one not in flight is in flight.
        let idx = self.batches.iter().position(|b| !b.in_flight)?;
        // While a batch that may be written waits to be resent, nothing new
        // goes: the broker recognises a resend as a duplicate only while
        // the batch is among the last five it appended for the producer,
        // and new batches appended meanwhile push it out, after which the
        // resend is answered OUT_OF_ORDER_SEQUENCE_NUMBER and the batch
        // would be written twice (Java's producer also stops draining a
        // partition with an unresolved sequence). Found by the swarm, seed
        // 2157 at 3000 seeds.
        if self.batches[idx].attempts == 0
            && self
                .batches
                .iter()
                .any(|b| b.ambiguous && b.sequence.is_some())
        {
            return None;
        }
        Some(idx)
    }

    /// Whether the next unsent batch may go now: full, lingered enough,
    /// urgent, or flushing.
    pub(crate) fn ready_at(
        &self,
        now: Timestamp,
        linger: std::time::Duration,
        flushing: bool,
        manual: bool,
        max_in_flight: usize,
    ) -> Option<Timestamp> {
        let idx = self.next_to_send(now, max_in_flight)?;
        let b = &self.batches[idx];
        // A batch already sent once is resent as soon as allowed.
        if b.sealed.is_some() || flushing || b.urgent || idx + 1 < self.batches.len() {
            return Some(now);
        }
        if manual {
            return None;
        }
        Some(b.created_at + linger)
    }

    /// Takes the next batch to send, sealing it on its first send (with
    /// the producer's `compressor`, kept across batches); returns its id
    /// and bytes.
    pub(crate) fn take_for_send(
        &mut self,
        now: Timestamp,
        producer: Option<(i64, i16)>,
        max_in_flight: usize,
        memory: &mut BatchMemory,
    ) -> Result<Option<(u64, bytes::Bytes)>, Failed> {
        let Some(idx) = self.next_to_send(now, max_in_flight) else {
            return Ok(None);
        };
        let next_sequence = self.next_sequence;
        let b = &mut self.batches[idx];
        let mut assigned = None;
        let stamp = match producer {
            Some((pid, epoch)) => {
                let seq = match b.sequence {
                    Some(s) => s,
                    None => {
                        assigned = Some(increment_sequence(next_sequence, b.record_count()));
                        next_sequence
                    }
                };
                b.sequence = Some(seq);
                ProducerStamp {
                    producer_id: pid,
                    producer_epoch: epoch,
                    base_sequence: seq,
                }
            }
            None => ProducerStamp::default(),
        };
        match (&mut b.sealed, b.builder.as_mut()) {
            (Some(sealed), _) => {
                if sealed.producer() != stamp {
                    sealed.restamp(&stamp);
                }
            }
            (None, Some(builder)) => {
                if let Some(c) = memory.compressor.take() {
                    builder.lend_compressor(c);
                }
                let sealed = builder.seal(&BatchStamp {
                    producer: stamp,
                    ..Default::default()
                });
                if let Some(c) = builder.take_compressor() {
                    memory.compressor = Some(c);
                }
                match sealed {
                    Ok(s) => {
                        b.sealed = Some(s);
                        if let Some(builder) = b.builder.take() {
                            memory.give(builder.into_buffer());
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "sealing a batch failed");
                        let failed =
                            self.fail_from(idx, ProduceError::Broker(ErrorCode::CorruptMessage));
                        return Err(failed);
                    }
                }
            }
            (None, None) => return Ok(None),
        }
        if let Some(next) = assigned {
            self.next_sequence = next;
        }
        self.retry_at = None;
        self.blocked_since = None;
        let b = &mut self.batches[idx];
        b.in_flight = true;
        b.attempts += 1;
        b.first_sent_at.get_or_insert(now);
        self.in_flight += 1;
        let bytes = b.sealed.as_ref().map(|s| s.to_bytes()).unwrap_or_default();
        Ok(Some((b.id, bytes)))
    }

    fn position(&self, batch_id: u64) -> Option<usize> {
        self.batches.iter().position(|b| b.id == batch_id)
    }

    /// The broker wrote the batch at `base_offset`.
    pub(crate) fn on_success(
        &mut self,
        batch_id: u64,
        base_offset: i64,
        log_append_time: i64,
        memory: &mut BatchMemory,
    ) -> Option<Acked> {
        let idx = self.position(batch_id)?;
        self.in_flight = self.in_flight.saturating_sub(1);
        self.ever_succeeded = true;
        self.retry_attempts = 0;
        let b = self.batches.remove(idx)?;
        self.buffered_records -= b.records.len();
        self.buffered_bytes -= b.user_bytes;
        if base_offset >= 0 {
            self.last_acked_offset = self
                .last_acked_offset
                .max(base_offset + i64::from(b.record_count()) - 1);
        }
        // Its memory builds a later batch.
        if let Some(buf) = b.sealed.and_then(SealedBatch::into_buffer) {
            memory.give(buf);
        }
        self.after_response();
        Some(Acked {
            records: b.records,
            partition: self.partition,
            base_offset,
            log_append_time,
        })
    }

    /// A definitive, retriable error for the batch: retry after backoff.
    /// If an earlier batch already failed, this one fails with it.
    pub(crate) fn on_retriable(&mut self, batch_id: u64, error: ErrorCode) -> Option<Failed> {
        let idx = self.position(batch_id)?;
        let b = &mut self.batches[idx];
        if b.in_flight {
            b.in_flight = false;
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        b.last_error = Some(error);
        self.rewinding = true;
        let failed = self.fail_behind_failure(idx);
        self.after_response();
        failed
    }

    /// The request carrying the batch has an unknown outcome. If an earlier
    /// batch already failed definitively, the broker refused this one too
    /// (its sequence could not follow), so it fails with it.
    pub(crate) fn on_ambiguous(&mut self, batch_id: u64) -> Option<Failed> {
        let idx = self.position(batch_id)?;
        let b = &mut self.batches[idx];
        if b.in_flight {
            b.in_flight = false;
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        b.ambiguous = true;
        self.rewinding = true;
        let failed = self.fail_behind_failure(idx);
        self.after_response();
        failed
    }

    fn fail_behind_failure(&mut self, idx: usize) -> Option<Failed> {
        let error = self.failing.clone()?;
        let b = self.batches.remove(idx)?;
        self.buffered_records -= b.records.len();
        self.buffered_bytes -= b.user_bytes;
        Some(Failed {
            records: b.recover(&self.topic, self.partition),
            error,
        })
    }

    /// A definitive error that retrying cannot fix: fail this batch and
    /// everything behind it.
    pub(crate) fn on_fatal(&mut self, batch_id: u64, error: ProduceError) -> Failed {
        let Some(idx) = self.position(batch_id) else {
            return Failed {
                records: Vec::new(),
                error,
            };
        };
        let b = &mut self.batches[idx];
        if b.in_flight {
            b.in_flight = false;
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        // The broker refused this attempt. If no earlier attempt may have
        // been written, its sequence numbers were not used and the next
        // batch takes them. If one may have been, reusing them would let
        // the broker take new records for a duplicate of the old ones and
        // acknowledge records it never wrote: the sequence is broken, and
        // only a new epoch repairs it.
        if let Some(seq) = b.sequence {
            if b.ambiguous {
                self.sequence_broken = true;
            } else {
                self.next_sequence = seq;
            }
        }
        let failed = self.fail_from(idx, error);
        self.after_response();
        failed
    }

    /// Fails batches from `idx` on that are safe to fail; in-flight ones
    /// fail when they come back.
    fn fail_from(&mut self, idx: usize, error: ProduceError) -> Failed {
        let mut records = Vec::new();
        let mut i = idx;
        while i < self.batches.len() {
            if self.batches[i].in_flight {
                self.failing = Some(ProduceError::EarlierBatchFailed(Box::new(error.clone())));
                i += 1;
                continue;
            }
            let Some(b) = self.batches.remove(i) else {
                break;
            };
            self.buffered_records -= b.records.len();
            self.buffered_bytes -= b.user_bytes;
            records.extend(b.recover(&self.topic, self.partition));
        }
        Failed { records, error }
    }

    /// Takes every batch's records out, read back as their callers gave
    /// them (the client is closing without flushing).
    pub(crate) fn take_all(&mut self) -> Vec<PendingRecord> {
        let (topic, partition) = (&self.topic, self.partition);
        self.batches
            .drain(..)
            .flat_map(|b| b.recover(topic, partition))
            .collect()
    }

    /// Fails every batch never sent (a transaction is being aborted);
    /// batches sent at least once stay to settle, so nothing of the
    /// transaction reaches the log after its abort marker.
    pub(crate) fn fail_unsent(&mut self, error: ProduceError) -> Option<Failed> {
        // Batches go out in order: every batch after the first unsent one
        // is unsent too.
        let idx = self
            .batches
            .iter()
            .position(|b| !b.in_flight && b.sequence.is_none() && b.first_sent_at.is_none())?;
        Some(self.fail_from(idx, error))
    }

    /// Fails every batch, sent or not, when none is in flight (else
    /// nothing): for an aborting transaction whose producer must get a new
    /// epoch before it may send again (see
    /// [`Producer::fail_stranded`](super::Producer::fail_stranded)).
    pub(crate) fn fail_idle(&mut self, error: ProduceError) -> Option<Failed> {
        if self.batches.is_empty() || self.batches.iter().any(|b| b.in_flight) {
            return None;
        }
        self.retry_at = None;
        self.rewinding = false;
        self.failing = None;
        Some(self.fail_from(0, error))
    }

    fn after_response(&mut self) {
        if self.in_flight == 0 && self.failing.take().is_some() {
            // Everything behind the failure came back: start over from the
            // failed batch's sequence, with no retry pending.
            self.rewinding = false;
        }
    }

    /// When every batch in flight is back after an error, the rewind is
    /// done: the caller schedules the retry.
    pub(crate) fn finish_rewind(&mut self) -> bool {
        if self.rewinding && self.in_flight == 0 {
            self.rewinding = false;
            true
        } else {
            false
        }
    }

    /// Schedules the retry after a rewind.
    pub(crate) fn schedule_retry(&mut self, at: Timestamp) {
        self.retry_attempts += 1;
        self.retry_at = Some(at);
    }

    /// Fails the front batches that hit a limit (retries, delivery timeout,
    /// cancellation), where the safe-abort rule allows.
    pub(crate) fn expire(
        &mut self,
        now: Timestamp,
        retries: Option<u32>,
        delivery_timeout: Option<std::time::Duration>,
    ) -> Option<Failed> {
        let idx = self.batches.iter().position(|b| {
            let over_retries = retries.is_some_and(|r| b.attempts > r) && b.last_error.is_some();
            let timed_out = delivery_timeout
                .zip(self.timeout_start(b))
                .is_some_and(|(d, t)| now >= t + d);
            over_retries || timed_out || b.cancelled
        })?;
        let b = &self.batches[idx];
        if b.in_flight || b.ambiguous || self.in_flight > 0 && b.sequence.is_some() {
            return None;
        }
        let error = if b.cancelled {
            ProduceError::Cancelled
        } else if retries.is_some_and(|r| b.attempts > r) && b.last_error.is_some() {
            ProduceError::RetriesExhausted(b.last_error.unwrap_or(ErrorCode::UnknownServerError))
        } else {
            ProduceError::DeliveryTimeout
        };
        if let Some(seq) = b.sequence {
            self.next_sequence = seq;
        }
        Some(self.fail_from(idx, error))
    }

    /// When a batch's delivery timeout starts (semantics.md: at the first
    /// try of the batch): at its first send; for a batch never sent, when
    /// the producer first tried to send it and could not (no leader, no
    /// connection), so a partition whose leader cannot be reached fails its
    /// records in time, while one whose earlier batches are merely slow
    /// keeps the rest waiting behind them.
    fn timeout_start(&self, b: &Batch) -> Option<Timestamp> {
        match b.first_sent_at {
            Some(t) => Some(t),
            None => self.blocked_since.map(|t| t.max(b.created_at)),
        }
    }

    /// The partition had a batch ready but could not send it (no leader, or
    /// no connection to it): the first try of its unsent batches happened
    /// now, for the delivery timeout.
    pub(crate) fn note_blocked(&mut self, now: Timestamp) {
        self.blocked_since.get_or_insert(now);
    }

    /// The earliest time `expire` could fail something. Batches in flight
    /// or in doubt cannot be failed, so they set no deadline (their answer,
    /// or loss, re-checks them): a deadline that cannot fire would make the
    /// driver spin.
    pub(crate) fn expiry_at(
        &self,
        delivery_timeout: Option<std::time::Duration>,
    ) -> Option<Timestamp> {
        let d = delivery_timeout?;
        self.batches
            .iter()
            .filter(|b| {
                !b.in_flight && !b.ambiguous && (self.in_flight == 0 || b.sequence.is_none())
            })
            .filter_map(|b| self.timeout_start(b))
            .map(|t| t + d)
            .min()
    }

    /// Marks the batch holding `id` cancelled.
    pub(crate) fn cancel(&mut self, id: ProduceId) -> bool {
        for b in &mut self.batches {
            if b.records.iter().any(|r| r.id == id) {
                b.cancelled = true;
                return true;
            }
        }
        false
    }

    /// Whether a failure broke the sequence, clearing the flag: the caller
    /// must get a new epoch before this partition sends again.
    pub(crate) fn take_sequence_broken(&mut self) -> bool {
        std::mem::take(&mut self.sequence_broken)
    }

    /// The broker said it does not have the batch: earlier attempts did not
    /// write it.
    pub(crate) fn resolve_doubt(&mut self, batch_id: u64) {
        if let Some(idx) = self.position(batch_id) {
            self.batches[idx].ambiguous = false;
        }
    }

    /// Whether a batch that may already be written waits for its retry: a
    /// new epoch now would resend it at sequence 0 under the new epoch,
    /// which no broker can recognise as a duplicate.
    pub(crate) fn has_batch_in_doubt(&self) -> bool {
        self.batches.iter().any(|b| b.ambiguous)
    }

    /// Whether the partition may send under the old epoch while a new one
    /// waits: some batch from the next one to send on is in doubt. Every
    /// batch up to it already has its sequence under the old epoch (batches
    /// go out in order), so they all go again to resolve it; a batch in
    /// doubt stuck behind one that is not would otherwise never be sent,
    /// and the new epoch would wait for ever.
    pub(crate) fn next_is_in_doubt(&self) -> bool {
        match self.batches.iter().position(|b| !b.in_flight) {
            Some(idx) => self
                .batches
                .iter()
                .skip(idx)
                .any(|b| b.ambiguous && b.sequence.is_some()),
            None => false,
        }
    }

    /// After an epoch bump (KIP-360) or a new producer id: sequences start
    /// over at 0 for everything not yet acknowledged.
    pub(crate) fn reset_sequences(&mut self) {
        self.next_sequence = 0;
        self.ever_succeeded = false;
        for b in &mut self.batches {
            b.sequence = None;
        }
    }

    /// Whether the front batch is the given one (an OUT_OF_ORDER answer for
    /// a batch behind another unacknowledged one is only a consequence).
    pub(crate) fn is_front(&self, batch_id: u64) -> bool {
        self.batches.front().is_some_and(|b| b.id == batch_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_sequence(0, 5), 5);
        assert_eq!(increment_sequence(i32::MAX - 2, 2), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX - 2, 3), 0);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 10), 8);
    }

    fn pending(id: u64, value: &'static [u8]) -> PendingRecord {
        PendingRecord {
            id: ProduceId(id),
            record: Record::new("t", value),
            timestamp: 1_700_000_000_000,
        }
    }

    fn append(
        p: &mut PartitionBuffer,
        r: PendingRecord,
        options: &BatchOptions,
        memory: &mut BatchMemory,
    ) {
        if !p.write_open(&r) {
            assert!(p.write_new(Timestamp::ZERO, &r, options, memory).is_ok());
        }
        p.keep(r, false);
    }

    /// Sends the next batch and acknowledges it; returns its bytes.
    fn send_and_ack(p: &mut PartitionBuffer, memory: &mut BatchMemory) -> bytes::Bytes {
        let now = Timestamp::ZERO;
        let Ok(Some((id, bytes))) = p.take_for_send(now, Some((7, 0)), 5, memory) else {
            panic!("a batch was ready");
        };
        let copy = bytes::Bytes::copy_from_slice(&bytes);
        drop(bytes); // as the request encoding does, after copying it out
        let acked = p.on_success(id, 0, -1, memory);
        assert_eq!(acked.map(|a| a.records.len()), Some(2));
        copy
    }

    #[test]
    fn acknowledged_batches_and_codec_state_are_reused() {
        for compression in [
            crate::compression::Compression::None,
            crate::compression::Compression::Snappy,
        ] {
            let options = BatchOptions {
                compression,
                ..Default::default()
            };
            let mut memory = BatchMemory::default();
            let mut p = PartitionBuffer::new(Topic::from("t"), 0);
            let value: &'static [u8] = &[7; 5000];
            for i in 0..2 {
                append(&mut p, pending(i, value), &options, &mut memory);
            }
            let first = send_and_ack(&mut p, &mut memory);
            assert!(
                memory.compressor.is_some()
                    == (compression != crate::compression::Compression::None)
            );
            assert!(
                !memory.spare.is_empty(),
                "{compression:?}: no buffer came back"
            );
            let spare = memory.spare.len();
            for i in 2..4 {
                append(&mut p, pending(i, value), &options, &mut memory);
            }
            assert_eq!(
                memory.spare.len(),
                spare - 1,
                "the next batch took a spare buffer"
            );
            let second = send_and_ack(&mut p, &mut memory);
            // Same records, same stamp but the sequence: built in reused
            // memory, the batch is still whole and correct.
            let read = |b: &bytes::Bytes| {
                crate::record::Batch::parse(b.clone())
                    .ok()
                    .and_then(|batch| batch.records().ok())
                    .and_then(|rs| {
                        rs.map(|r| r.map(|r| r.value))
                            .collect::<Result<Vec<_>, _>>()
                            .ok()
                    })
            };
            assert_eq!(read(&first), read(&second), "{compression:?}");
            assert_eq!(read(&first).map(|v| v.len()), Some(2));
        }
    }

    /// A record as a caller might make it: key, value, headers, partition
    /// and timestamp each present or not.
    fn any_record() -> impl proptest::strategy::Strategy<Value = Record> {
        use proptest::prelude::*;
        let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
        (
            proptest::option::of(bytes()),
            proptest::option::of(bytes()),
            proptest::collection::vec((bytes(), proptest::option::of(bytes())), 0..3),
            any::<bool>(),
            proptest::option::of(0..2_000_000_000_000i64),
        )
            .prop_map(|(key, value, headers, partition_given, timestamp)| Record {
                topic: Topic::from("t"),
                partition: partition_given.then_some(3),
                key: key.map(Into::into),
                value: value.map(Into::into),
                headers: headers
                    .into_iter()
                    .map(|(k, v)| crate::record::Header::new(k, v.map(Into::into)))
                    .collect(),
                timestamp,
            })
    }

    proptest::proptest! {
        /// The producer drops a record once its bytes are in a batch; a
        /// failed batch gives its records back read from those bytes, and
        /// they must be the records as given, whether the batch was sealed
        /// (compressed) or not.
        #[test]
        fn failed_records_come_back_as_they_were_given(
            records in proptest::collection::vec(any_record(), 1..40),
            codec in 0usize..5,
            sealed in proptest::prelude::any::<bool>(),
        ) {
            use crate::compression::Compression;
            let compression = [
                Compression::None,
                Compression::Gzip,
                Compression::Snappy,
                Compression::Lz4,
                Compression::Zstd,
            ][codec];
            let options = BatchOptions { compression, ..Default::default() };
            let mut memory = BatchMemory::default();
            let mut p = PartitionBuffer::new(Topic::from("t"), 3);
            for (i, record) in records.iter().enumerate() {
                let r = PendingRecord {
                    id: ProduceId(i as u64),
                    timestamp: record.timestamp.unwrap_or(1_700_000_000_000),
                    record: record.clone(),
                };
                append(&mut p, r, &options, &mut memory);
            }
            let back = if sealed {
                let sent = p.take_for_send(Timestamp::ZERO, Some((7, 0)), 5, &mut memory);
                let Ok(Some((id, _))) = sent else {
                    panic!("a batch was ready");
                };
                p.on_fatal(id, ProduceError::Cancelled).records
            } else {
                p.take_all()
            };
            let ids: Vec<u64> = back.iter().map(|r| r.id.0).collect();
            let expected_ids: Vec<u64> = (0..records.len() as u64).collect();
            proptest::prop_assert_eq!(ids, expected_ids);
            for (given, back) in records.iter().zip(&back) {
                proptest::prop_assert_eq!(given, &back.record);
                proptest::prop_assert_eq!(
                    back.timestamp,
                    given.timestamp.unwrap_or(1_700_000_000_000)
                );
            }
        }
    }

    #[test]
    fn the_spare_pool_is_bounded() {
        let mut memory = BatchMemory::default();
        for _ in 0..10 {
            memory.give(Vec::with_capacity(MIN_SPARE_CAPACITY));
        }
        memory.give(Vec::with_capacity(10));
        assert_eq!(memory.spare.len(), MAX_SPARE_BUFFERS);
        assert_eq!(memory.take().capacity(), MIN_SPARE_CAPACITY);
    }
}
