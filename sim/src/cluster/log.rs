//! One partition's log: the record batches a leader appended, kept as the
//! bytes the producer sent with the broker's base offset and leader epoch
//! written in (both sit outside the batch CRC, so nothing else changes),
//! exactly what a Fetch returns.
//!
//! The simulated log is the replicated log: every live replica has it the
//! moment the leader appends (synchronous replication), so the high
//! watermark is the log end offset and a leader move loses nothing. The
//! log also keeps its [transaction index](super::txn_index), derived from
//! the batches, so the last stable offset and the aborted list are always
//! those of exactly the batches held.

use bytes::{Bytes, BytesMut};
use sansa_core::record::{Batch, Record, RecordError};

use super::txn_index::{TxnIndex, TxnRole};

/// Byte position of the base offset in a batch (`DefaultRecordBatch`).
const BASE_OFFSET_AT: usize = 0;
/// Byte position of the partition leader epoch in a batch.
const LEADER_EPOCH_AT: usize = 12;

/// One batch as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Largest record timestamp (create time) in the batch.
    pub max_timestamp: i64,
    /// Leader epoch of the leader that appended it.
    pub leader_epoch: i32,
    /// Producer id, -1 without idempotence.
    pub producer_id: i64,
    /// Producer epoch, -1 without idempotence.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 without idempotence.
    pub base_sequence: i32,
    /// Transactional data, a transaction marker, or neither.
    pub txn_role: TxnRole,
    /// The batch bytes with the broker's offset and epoch written in.
    pub bytes: Bytes,
}

impl StoredBatch {
    /// Records in the batch.
    pub fn record_count(&self) -> i64 {
        self.last_offset - self.base_offset + 1
    }

    /// The records, decompressed, with absolute offsets.
    pub fn records(&self) -> Result<Vec<Record>, RecordError> {
        let batch = Batch::parse(self.bytes.clone())?;
        batch.records()?.collect()
    }
}

/// A partition's log.
#[derive(Debug, Clone, Default)]
pub struct PartitionLog {
    batches: Vec<StoredBatch>,
    log_start: i64,
    end: i64,
    generation: u64,
    txns: TxnIndex,
}

impl PartitionLog {
    /// An empty log starting at offset 0.
    pub fn new() -> Self {
        PartitionLog::default()
    }

    /// The first offset still in the log (`logStartOffset`).
    pub fn log_start_offset(&self) -> i64 {
        self.log_start
    }

    /// The offset the next record gets (`logEndOffset`).
    pub fn log_end_offset(&self) -> i64 {
        self.end
    }

    /// The high watermark: the log end offset, replication being
    /// synchronous here.
    pub fn high_watermark(&self) -> i64 {
        self.end
    }

    /// The last stable offset: the first offset of the earliest open
    /// transaction, else the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        self.txns
            .first_unstable_offset()
            .map_or(self.end, |o| o.min(self.end))
    }

    /// Open and aborted transactions.
    pub fn txn_index(&self) -> &TxnIndex {
        &self.txns
    }

    /// Rebuilds the transaction index from the batches held.
    fn reindex(&mut self) {
        let mut ix = TxnIndex::default();
        for b in &self.batches {
            ix.observe(b.txn_role, b.producer_id, b.base_offset, b.last_offset);
        }
        self.txns = ix;
    }

    /// Bumped by every change other than an append at the end (deleting a
    /// prefix, truncating a suffix), so a checker knows when to look at
    /// the whole log again rather than only at what was appended.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The batches, in offset order.
    pub fn batches(&self) -> &[StoredBatch] {
        &self.batches
    }

    /// Appends one validated batch: writes its base offset and leader
    /// epoch in and returns what was stored.
    pub(crate) fn append(&mut self, batch: &Batch, leader_epoch: i32) -> StoredBatch {
        let count = i64::from(batch.last_offset_delta()) + 1;
        let base = self.end;
        let mut bytes = BytesMut::from(&batch.as_bytes()[..]);
        bytes[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base.to_be_bytes());
        bytes[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
        let stored = StoredBatch {
            base_offset: base,
            last_offset: base + count - 1,
            max_timestamp: batch.max_timestamp(),
            leader_epoch,
            producer_id: batch.producer_id(),
            producer_epoch: batch.producer_epoch(),
            base_sequence: batch.base_sequence(),
            txn_role: TxnRole::of(batch),
            bytes: bytes.freeze(),
        };
        self.txns.observe(
            stored.txn_role,
            stored.producer_id,
            stored.base_offset,
            stored.last_offset,
        );
        self.end += count;
        self.batches.push(stored.clone());
        stored
    }

    /// Removes every batch that ends at or after `offset` (batches are
    /// never split): what an unclean leader change, or a broken broker,
    /// does.
    pub(crate) fn truncate_to(&mut self, offset: i64) {
        let keep = self.batches.partition_point(|b| b.last_offset < offset);
        if keep == self.batches.len() {
            return;
        }
        self.batches.truncate(keep);
        self.end = self
            .batches
            .last()
            .map_or(self.log_start.max(0), |b| b.last_offset + 1)
            .max(self.log_start);
        self.generation += 1;
        self.reindex();
    }

    /// Moves the log start to `offset` (retention, DeleteRecords): whole
    /// batches below it go. Returns whether anything moved.
    pub(crate) fn delete_before(&mut self, offset: i64) -> bool {
        let offset = offset.min(self.end);
        if offset <= self.log_start {
            return false;
        }
        let gone = self.batches.partition_point(|b| b.last_offset < offset);
        self.batches.drain(..gone);
        self.log_start = offset;
        self.generation += 1;
        self.txns.expire_before(offset);
        true
    }

    /// The index of the batch holding `offset`, if the log has it.
    fn batch_index(&self, offset: i64) -> Option<usize> {
        if offset < self.log_start || offset >= self.end {
            return None;
        }
        let i = self.batches.partition_point(|b| b.last_offset < offset);
        (i < self.batches.len()).then_some(i)
    }

    /// The bytes a Fetch at `offset` returns: stored batches from the one
    /// holding `offset`, cut at `max_bytes` even inside a batch (as a
    /// Kafka segment read does, KIP-74), but never below the first batch
    /// when `at_least_one` (the first partition of a response with data).
    /// Batches starting at or after `upper` are left out (the last stable
    /// offset of a read_committed fetch, which is always a batch boundary).
    pub fn read(&self, offset: i64, max_bytes: usize, at_least_one: bool, upper: i64) -> Bytes {
        let Some(first) = self.batch_index(offset.max(self.log_start)) else {
            return Bytes::new();
        };
        if self.batches[first].base_offset >= upper {
            return Bytes::new();
        }
        let limit = if at_least_one {
            max_bytes.max(self.batches[first].bytes.len())
        } else {
            max_bytes
        };
        if self.batches[first].bytes.len() >= limit {
            return self.batches[first].bytes.slice(..limit);
        }
        let mut out = BytesMut::new();
        for b in &self.batches[first..] {
            if out.len() >= limit || b.base_offset >= upper {
                break;
            }
            let room = limit - out.len();
            out.extend_from_slice(&b.bytes[..room.min(b.bytes.len())]);
        }
        out.freeze()
    }

    /// The leader epoch of the batch holding `offset`.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        self.batch_index(offset)
            .map(|i| self.batches[i].leader_epoch)
    }

    /// ListOffsets by timestamp: the first record at or after `ts`, as
    /// `(offset, timestamp, leader epoch)`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64, i32)>, RecordError> {
        for b in self.batches.iter().filter(|b| b.max_timestamp >= ts) {
            for r in b.records()? {
                if r.offset >= self.log_start && r.timestamp >= ts {
                    return Ok(Some((r.offset, r.timestamp, b.leader_epoch)));
                }
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP (KIP-734): the first record with the
    /// largest timestamp.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64, i32)>, RecordError> {
        let Some(best) = self.batches.iter().map(|b| b.max_timestamp).max() else {
            return Ok(None);
        };
        self.offset_for_timestamp(best)
            .map(|found| found.filter(|&(_, ts, _)| ts == best))
    }

    /// Every record from `offset` on, decompressed: what a checker reads.
    pub fn records_from(&self, offset: i64) -> Result<Vec<Record>, RecordError> {
        let start = self.batches.partition_point(|b| b.last_offset < offset);
        let mut out = Vec::new();
        for b in &self.batches[start..] {
            out.extend(
                b.records()?
                    .into_iter()
                    .filter(|r| r.offset >= offset && r.offset >= self.log_start),
            );
        }
        Ok(out)
    }
}
