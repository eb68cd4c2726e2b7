//! One partition's view of transactions (KIP-98), as Kafka's
//! `ProducerStateManager` (ongoing transactions, for the last stable
//! offset) and `TransactionIndex` (aborted transactions, for
//! read_committed fetches) keep it.
//!
//! - A transactional data batch of a producer with no open transaction
//!   on this partition opens one at the batch's base offset.
//! - A control batch (COMMIT or ABORT marker) of that producer closes it;
//!   an ABORT also records `(producer id, first offset, marker offset)`
//!   in the aborted index, which a read_committed Fetch lists so the
//!   consumer can drop the aborted records.
//! - The last stable offset is the first offset of the earliest open
//!   transaction, else the high watermark: a read_committed consumer never
//!   reads past a transaction whose outcome is not yet known.
//!
//! Everything here is derived from the log alone, so a restarted broker
//! or a truncated log rebuilds it by replaying the batches (Kafka rebuilds
//! the same state from its snapshots and segments).

use std::collections::BTreeMap;

use sansa_core::record::{Batch, ControlRecord, ControlRecordKind};

/// An aborted transaction of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer that aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first batch on this partition.
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
}

/// What a batch means for the partition's transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnRole {
    /// Not transactional.
    None,
    /// A transactional data batch.
    Data,
    /// An end-transaction marker.
    Marker {
        /// Whether it commits (else aborts).
        commit: bool,
    },
    /// A control batch of a kind that ends nothing (unknown type, or one
    /// that could not be read).
    OtherControl,
}

impl TxnRole {
    /// The role of a validated batch.
    pub fn of(batch: &Batch) -> TxnRole {
        if batch.is_control() {
            let first = batch
                .records()
                .ok()
                .and_then(|mut rs| rs.next())
                .and_then(Result::ok);
            return match first.map(|r| ControlRecord::from_record(&r).map(|c| c.kind)) {
                Some(Ok(ControlRecordKind::Commit)) => TxnRole::Marker { commit: true },
                Some(Ok(ControlRecordKind::Abort)) => TxnRole::Marker { commit: false },
                _ => TxnRole::OtherControl,
            };
        }
        if batch.is_transactional() {
            TxnRole::Data
        } else {
            TxnRole::None
        }
    }
}

/// Open and aborted transactions of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnIndex {
    /// Producer id to the first offset of its open transaction.
    open: BTreeMap<i64, i64>,
    /// Aborted transactions, in marker order.
    aborted: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// Takes in one appended batch.
    pub fn observe(&mut self, role: TxnRole, producer_id: i64, base: i64, last: i64) {
        match role {
            TxnRole::None | TxnRole::OtherControl => {}
            TxnRole::Data => {
                self.open.entry(producer_id).or_insert(base);
            }
            TxnRole::Marker { commit } => {
                // A marker for a producer with nothing open on this
                // partition (a retried marker, or a transaction that wrote
                // nothing here) closes nothing and aborts nothing.
                if let Some(first) = self.open.remove(&producer_id) {
                    if !commit {
                        self.aborted.push(AbortedTxn {
                            producer_id,
                            first_offset: first,
                            last_offset: last,
                        });
                    }
                }
            }
        }
    }

    /// The first offset of the earliest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open.values().copied().min()
    }

    /// Whether `producer_id` has a transaction open here.
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.open.contains_key(&producer_id)
    }

    /// Aborted transactions that overlap `[from, to)`: what a
    /// read_committed Fetch from `from` reading up to `to` must list.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Every aborted transaction still indexed.
    pub fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Forgets aborted transactions wholly below `log_start` (retention).
    pub fn expire_before(&mut self, log_start: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lso_and_aborted_index_follow_data_and_markers() {
        let mut ix = TxnIndex::default();
        ix.observe(TxnRole::Data, 7, 0, 1);
        ix.observe(TxnRole::Data, 8, 2, 2);
        ix.observe(TxnRole::Data, 7, 3, 3);
        assert_eq!(ix.first_unstable_offset(), Some(0));
        ix.observe(TxnRole::Marker { commit: false }, 7, 4, 4);
        assert_eq!(ix.first_unstable_offset(), Some(2));
        ix.observe(TxnRole::Marker { commit: true }, 8, 5, 5);
        assert_eq!(ix.first_unstable_offset(), None);
        // A second marker closes nothing.
        ix.observe(TxnRole::Marker { commit: false }, 8, 6, 6);
        let a = AbortedTxn {
            producer_id: 7,
            first_offset: 0,
            last_offset: 4,
        };
        assert_eq!(ix.aborted(), &[a]);
        assert_eq!(ix.aborted_between(4, 10), vec![a]);
        assert_eq!(ix.aborted_between(5, 10), vec![]);
        assert_eq!(ix.aborted_between(0, 0), vec![]);
        ix.expire_before(5);
        assert!(ix.aborted().is_empty());
    }
}
