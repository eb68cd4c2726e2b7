//! Idempotent producer state of one partition (KIP-98), as Kafka's
//! `ProducerStateManager` and `ProducerAppendInfo` keep it: per producer
//! id, its epoch and the metadata of its last five batches.
//!
//! The rules, in Kafka's order:
//! 1. A batch whose epoch and sequence range match one of the producer's
//!    last five batches is a duplicate (a retry of a batch the broker
//!    already has): it is not appended, and the answer carries the offset
//!    the first copy got, so the producer can report it.
//! 2. An epoch older than the producer's is fenced: INVALID_PRODUCER_EPOCH
//!    (Kafka 2.7+ answers that rather than PRODUCER_FENCED).
//! 3. A newer epoch (a KIP-360 bump) must start at sequence 0; the same
//!    epoch must continue at the last sequence plus one, wrapping after
//!    `i32::MAX`. Otherwise OUT_OF_ORDER_SEQUENCE_NUMBER.
//! 4. A producer the partition has no state for (never seen, or its
//!    batches all gone to retention): Kafka 2.5+ accepts any sequence
//!    (KIP-360); older brokers answered UNKNOWN_PRODUCER_ID unless the
//!    sequence was 0. [`UnknownProducer`] picks which broker to be.
//!
//! The state is derived from the log: a restarted broker rebuilds it from
//! the stored batches, as Kafka does from its snapshots and log.

use std::collections::{BTreeMap, VecDeque};

use sansa_core::protocol::ErrorCode;

use super::log::PartitionLog;
use super::txn_index::TxnRole;

/// How many batches per producer Kafka remembers for duplicate detection
/// (`ProducerStateEntry.NUM_BATCHES_TO_RETAIN`), and so how many produce
/// requests an idempotent producer may have in flight per partition.
pub const BATCHES_RETAINED: usize = 5;

/// What a broker does with a sequence from a producer it has no state for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownProducer {
    /// Kafka 2.5+ (KIP-360): accept any sequence.
    #[default]
    AcceptAnySequence,
    /// Kafka before 2.5: UNKNOWN_PRODUCER_ID unless the sequence is 0.
    RejectUnlessZero,
}

/// Where a producer's batch landed, remembered for duplicate answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record.
    pub last_seq: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// A marker moved the producer to this epoch (a fence, or with
    /// transactions v2 every end): its first batch must start at
    /// sequence 0 (Kafka's `checkSequence`: "the epoch was bumped by a
    /// control record").
    bumped_by_marker: bool,
}

/// The verdict on an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In sequence: append it.
    Append,
    /// Already in the log: answer with where it landed.
    Duplicate(BatchMeta),
}

/// How strictly sequences are checked; everything but `Kafka` is a broken
/// broker for the checker tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqRules {
    /// Kafka's rules.
    Kafka,
    /// No duplicate detection, no sequence check.
    Ignore,
    /// Duplicate detection, but gaps and regressions accepted.
    AcceptGaps,
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: BTreeMap<i64, Entry>,
}

/// Kafka's `inSequence`: the next sequence, wrapping at `i32::MAX`.
fn in_sequence(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (next == 0 && last == i32::MAX)
}

/// The last sequence of a batch of `count` records from `first`, wrapping
/// like Kafka's `DefaultRecordBatch.incrementSequence`.
pub fn last_sequence(first: i32, count: i64) -> i32 {
    let span = i32::try_from(count - 1).unwrap_or(i32::MAX);
    if first > i32::MAX - span {
        span - (i32::MAX - first) - 1
    } else {
        first + span
    }
}

impl ProducerStates {
    /// No producers.
    pub fn new() -> Self {
        ProducerStates::default()
    }

    /// The producer's current epoch, if the partition knows it.
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// How many producers the partition knows.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether the partition knows no producer.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Judges a batch before it is appended.
    pub(crate) fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
        unknown: UnknownProducer,
        rules: SeqRules,
    ) -> Result<SeqVerdict, ErrorCode> {
        if rules == SeqRules::Ignore {
            return Ok(SeqVerdict::Append);
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            return match unknown {
                UnknownProducer::RejectUnlessZero if first_seq != 0 => {
                    Err(ErrorCode::UnknownProducerId)
                }
                _ => Ok(SeqVerdict::Append),
            };
        };
        if entry.epoch == epoch {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            {
                return Ok(SeqVerdict::Duplicate(*dup));
            }
        }
        if rules == SeqRules::AcceptGaps {
            return Ok(SeqVerdict::Append);
        }
        if epoch < entry.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if epoch > entry.epoch {
            return if first_seq == 0 {
                Ok(SeqVerdict::Append)
            } else {
                Err(ErrorCode::OutOfOrderSequenceNumber)
            };
        }
        match entry.batches.back() {
            None if entry.bumped_by_marker && first_seq != 0 => {
                Err(ErrorCode::OutOfOrderSequenceNumber)
            }
            // Same epoch with no batch left (all removed by retention):
            // any sequence, as for an unknown producer.
            None => Ok(SeqVerdict::Append),
            Some(last) if in_sequence(last.last_seq, first_seq) => Ok(SeqVerdict::Append),
            Some(_) => Err(ErrorCode::OutOfOrderSequenceNumber),
        }
    }

    /// Remembers an appended batch.
    pub(crate) fn record(&mut self, producer_id: i64, epoch: i16, meta: BatchMeta) {
        let entry = self.producers.entry(producer_id).or_insert(Entry {
            epoch,
            batches: VecDeque::new(),
            bumped_by_marker: false,
        });
        if entry.epoch != epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.bumped_by_marker = false;
        entry.batches.push_back(meta);
        while entry.batches.len() > BATCHES_RETAINED {
            entry.batches.pop_front();
        }
    }

    /// A transaction marker of `producer_id` at `epoch` was written
    /// (Kafka's `appendEndTxnMarker`): a newer epoch (the coordinator
    /// fenced the producer, or a timeout aborted its transaction) replaces
    /// the old one and forgets its batches, so a batch at the old epoch is
    /// fenced from now on.
    pub(crate) fn mark(&mut self, producer_id: i64, epoch: i16) {
        let entry = self.producers.entry(producer_id).or_insert(Entry {
            epoch,
            batches: VecDeque::new(),
            bumped_by_marker: false,
        });
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
            entry.bumped_by_marker = true;
        }
    }

    /// Rebuilds the state from the log, as a restarting broker does.
    pub(crate) fn rebuild(log: &PartitionLog) -> ProducerStates {
        let mut s = ProducerStates::new();
        for b in log.batches() {
            if b.producer_id < 0 {
                continue;
            }
            if matches!(b.txn_role, TxnRole::Marker { .. } | TxnRole::OtherControl) {
                s.mark(b.producer_id, b.producer_epoch);
                continue;
            }
            let meta = BatchMeta {
                first_seq: b.base_sequence,
                last_seq: last_sequence(b.base_sequence, b.record_count()),
                first_offset: b.base_offset,
                last_offset: b.last_offset,
            };
            s.record(b.producer_id, b.producer_epoch, meta);
        }
        s
    }

    /// Forgets producers none of whose batches remain at or after
    /// `log_start` (Kafka's `removeStraysAndIncrementLogStart`).
    pub(crate) fn expire_before(&mut self, log_start: i64) {
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.last_offset >= log_start);
            !e.batches.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first_seq: i32, last_seq: i32, first_offset: i64) -> BatchMeta {
        BatchMeta {
            first_seq,
            last_seq,
            first_offset,
            last_offset: first_offset + i64::from(last_seq - first_seq),
        }
    }

    #[test]
    fn kafka_sequence_rules_hold() {
        let k = SeqRules::Kafka;
        let any = UnknownProducer::AcceptAnySequence;
        let mut s = ProducerStates::new();
        assert_eq!(s.check(7, 0, 5, 9, any, k), Ok(SeqVerdict::Append));
        assert_eq!(
            s.check(7, 0, 5, 9, UnknownProducer::RejectUnlessZero, k),
            Err(ErrorCode::UnknownProducerId)
        );
        s.record(7, 0, meta(0, 4, 0));
        // Next in sequence, duplicate, gap, older epoch, bump.
        assert_eq!(s.check(7, 0, 5, 9, any, k), Ok(SeqVerdict::Append));
        assert_eq!(
            s.check(7, 0, 0, 4, any, k),
            Ok(SeqVerdict::Duplicate(meta(0, 4, 0)))
        );
        assert_eq!(
            s.check(7, 0, 6, 9, any, k),
            Err(ErrorCode::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            s.check(7, 1, 3, 4, any, k),
            Err(ErrorCode::OutOfOrderSequenceNumber)
        );
        assert_eq!(s.check(7, 1, 0, 4, any, k), Ok(SeqVerdict::Append));
        s.record(7, 1, meta(0, 0, 5));
        assert_eq!(
            s.check(7, 0, 1, 1, any, k),
            Err(ErrorCode::InvalidProducerEpoch)
        );
        // Only the last five batches are remembered.
        for i in 1..=5 {
            s.record(7, 1, meta(i, i, 5 + i64::from(i)));
        }
        assert_eq!(
            s.check(7, 1, 0, 0, any, k),
            Err(ErrorCode::OutOfOrderSequenceNumber)
        );
        assert!(matches!(
            s.check(7, 1, 1, 1, any, k),
            Ok(SeqVerdict::Duplicate(_))
        ));
        // Sequences wrap after i32::MAX.
        s.record(8, 0, meta(i32::MAX - 1, i32::MAX, 20));
        assert_eq!(s.check(8, 0, 0, 3, any, k), Ok(SeqVerdict::Append));
        assert_eq!(last_sequence(i32::MAX - 1, 4), 1);
        assert_eq!(last_sequence(3, 1), 3);
        // Retention forgets producers whose batches are all gone.
        s.expire_before(11);
        assert_eq!(s.epoch(8), Some(0));
        assert_eq!(s.epoch(7), None);
    }
}
