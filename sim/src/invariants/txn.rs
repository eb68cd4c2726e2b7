//! What transactions promise (KIP-98), checked against what the producer
//! asked for and what the logs hold.
//!
//! - **read_committed sees only committed data.** A read_committed
//!   consumer is never handed a record at or past the partition's last
//!   stable offset when it was handed out, a control record (marker), a
//!   record the log shows under an ABORT marker or still open, nor a
//!   record of a transaction its producer did not ask to commit (still
//!   open, asked to abort, abandoned by a crash) or was told aborted. The
//!   last rule does not trust the broker's markers: a broker that writes
//!   COMMIT for an abort is caught by it.
//! - **Committed transactions appear whole.** When a producer is told a
//!   transaction committed, every record of it was delivered (none
//!   failed), none lies under an ABORT marker, and each gets its COMMIT
//!   marker (checked at the end of the run, after healing).
//!
//! A transaction is known by its producer (checker client) and its number
//! among that producer's transactions; records belong to the transaction
//! open when they were produced.

use std::collections::BTreeMap;

use sansa_core::producer::RecordMeta;

use super::{show, Checker, LogFate, Violation};
use crate::cluster::Cluster;

/// A transaction: (producer, number).
type TxnKey = (usize, u64);

/// Where a transaction stands, as its producer knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnFate {
    /// Open: records go into it.
    Open,
    /// The producer asked to commit; no answer yet.
    CommitAsked,
    /// The producer asked to abort; no answer yet.
    AbortAsked,
    /// The producer was told it committed.
    Committed,
    /// The producer was told it aborted.
    Aborted,
    /// A commit was sent and its answer lost: it may have committed.
    InDoubt,
    /// The producer crashed with it open (it never asked to commit).
    Abandoned,
}

impl TxnFate {
    /// Whether a read_committed consumer may see its records.
    fn may_be_visible(self) -> bool {
        matches!(
            self,
            TxnFate::CommitAsked | TxnFate::Committed | TxnFate::InDoubt
        )
    }
}

/// Transactions and what read_committed consumers saw of them.
#[derive(Debug, Default)]
pub(super) struct Transactions {
    /// Per producer: its open transaction, if any.
    open: BTreeMap<usize, u64>,
    /// Per producer: the transaction whose end it asked for and has not
    /// heard of.
    ending: BTreeMap<usize, u64>,
    /// Per producer: how many transactions it began.
    begun: BTreeMap<usize, u64>,
    fate: BTreeMap<TxnKey, TxnFate>,
    /// Workload record (producer, index) to its transaction.
    record_txn: BTreeMap<(usize, u64), u64>,
    /// Per transaction: its records' indexes.
    records: BTreeMap<TxnKey, Vec<u64>>,
    /// Where delivered transactional records landed, by (producer,
    /// index).
    landed: BTreeMap<(usize, u64), (String, i32, i64)>,
    /// Records of a transaction that failed.
    failed: BTreeMap<TxnKey, u64>,
    /// The first record of each transaction a read_committed consumer
    /// was handed: (consumer, topic, partition, offset).
    seen: BTreeMap<TxnKey, (usize, String, i32, i64)>,
    /// Committed transactions whose markers are not all seen yet.
    unverified: Vec<TxnKey>,
}

impl Transactions {
    pub(super) fn on_produce(&mut self, client: usize, index: u64) {
        if let Some(&txn) = self.open.get(&client) {
            self.record_txn.insert((client, index), txn);
            self.records.entry((client, txn)).or_default().push(index);
        }
    }

    pub(super) fn on_delivered(&mut self, client: usize, index: u64, meta: &RecordMeta) {
        if self.record_txn.contains_key(&(client, index)) {
            self.landed.insert(
                (client, index),
                (meta.topic.to_string(), meta.partition, meta.offset),
            );
        }
    }

    /// A record failed; returns whether it was produced in a transaction.
    pub(super) fn on_failed(&mut self, client: usize, index: u64) -> bool {
        let Some(&txn) = self.record_txn.get(&(client, index)) else {
            return false;
        };
        *self.failed.entry((client, txn)).or_default() += 1;
        true
    }

    pub(super) fn on_client_crashed(&mut self, client: usize) {
        if let Some(txn) = self.open.remove(&client) {
            self.fate.insert((client, txn), TxnFate::Abandoned);
        }
    }

    /// The fate of the transaction of workload record (producer, index),
    /// if it was produced in one.
    fn fate_of_record(&self, client: usize, index: u64) -> Option<(TxnKey, TxnFate)> {
        let txn = *self.record_txn.get(&(client, index))?;
        let fate = *self.fate.get(&(client, txn))?;
        Some(((client, txn), fate))
    }
}

impl Checker {
    /// Producer `client` began a transaction: what it produces from now
    /// on belongs to it.
    pub fn on_txn_begun(&mut self, client: usize) {
        let t = &mut self.txns;
        let n = t.begun.entry(client).or_default();
        let txn = *n;
        *n += 1;
        t.open.insert(client, txn);
        t.fate.insert((client, txn), TxnFate::Open);
    }

    /// Producer `client` asked to end its open transaction.
    pub fn on_txn_end_asked(&mut self, client: usize, commit: bool) {
        let t = &mut self.txns;
        let Some(txn) = t.open.remove(&client) else {
            return;
        };
        let fate = if commit {
            TxnFate::CommitAsked
        } else {
            TxnFate::AbortAsked
        };
        t.fate.insert((client, txn), fate);
        t.ending.insert(client, txn);
    }

    /// Producer `client` was told how its ending transaction ended.
    pub fn on_txn_ended(&mut self, client: usize, committed: bool, in_doubt: bool) {
        let Some(txn) = self.txns.ending.remove(&client) else {
            return;
        };
        let key = (client, txn);
        let fate = match (committed, in_doubt) {
            (true, _) => TxnFate::Committed,
            (false, true) => TxnFate::InDoubt,
            (false, false) => TxnFate::Aborted,
        };
        self.txns.fate.insert(key, fate);
        match fate {
            TxnFate::Committed => self.txns.unverified.push(key),
            TxnFate::Aborted => {
                if let Some((consumer, topic, partition, offset)) = self.txns.seen.get(&key) {
                    let v = Violation::UncommittedRead {
                        client: *consumer,
                        topic: topic.clone(),
                        partition: *partition,
                        offset: *offset,
                        value: format!("a record of c{client} transaction {txn}"),
                        why: "its producer was told the transaction aborted".into(),
                    };
                    self.report(v);
                }
            }
            _ => {}
        }
    }

    /// Transactions its producers were told committed, in all.
    pub fn committed_txns(&self) -> usize {
        self.txns
            .fate
            .values()
            .filter(|f| **f == TxnFate::Committed)
            .count()
    }

    /// Transactions its producers were told aborted, in all.
    pub fn aborted_txns(&self) -> usize {
        self.txns
            .fate
            .values()
            .filter(|f| **f == TxnFate::Aborted)
            .count()
    }

    /// Judges one record handed to read_committed consumer `client`:
    /// `lso` was the partition's last stable offset then. Called once the
    /// mirrors are current.
    pub(super) fn judge_committed_read(
        &mut self,
        client: usize,
        topic: &str,
        partition: i32,
        offset: i64,
        value: Option<&[u8]>,
        lso: i64,
    ) {
        let mirror = self.mirrors.get(&(topic.to_owned(), partition));
        let mut why = if offset >= lso {
            Some(format!("at or past the last stable offset {lso}"))
        } else if mirror.is_some_and(|m| m.control.contains(&offset)) {
            Some("a transaction marker".to_owned())
        } else {
            match mirror.and_then(|m| m.txn_fate(offset)) {
                Some(LogFate::Aborted) => Some("under an ABORT marker in the log".to_owned()),
                Some(LogFate::Open) => Some("of a transaction still open in the log".to_owned()),
                Some(LogFate::Committed) | None => None,
            }
        };
        let id = value.and_then(super::parse_value);
        if let Some(((producer, txn), fate)) = id.and_then(|(c, i)| self.txns.fate_of_record(c, i))
        {
            self.txns
                .seen
                .entry((producer, txn))
                .or_insert_with(|| (client, topic.to_owned(), partition, offset));
            if why.is_none() && !fate.may_be_visible() {
                why = Some(format!(
                    "its producer's transaction {txn} is {fate:?}, not committed"
                ));
            }
        }
        if let Some(why) = why {
            self.report(Violation::UncommittedRead {
                client,
                topic: topic.to_owned(),
                partition,
                offset,
                value: value.map_or("null".into(), show),
                why,
            });
        }
    }

    /// Committed transactions: no record failed, none under an ABORT
    /// marker; those whose COMMIT markers are not all seen wait.
    pub(super) fn check_committed_txns(&mut self, cluster: &Cluster) {
        let unverified = std::mem::take(&mut self.txns.unverified);
        for key in unverified {
            match self.committed_txn_state(cluster, key) {
                Ok(true) => {}
                Ok(false) => self.txns.unverified.push(key),
                Err(detail) => self.report(Violation::CommittedTxnNotWhole {
                    client: key.0,
                    txn: key.1,
                    detail,
                }),
            }
        }
    }

    /// Whether committed transaction `key` is whole and marked (`false`:
    /// not yet marked everywhere), or what is wrong with it.
    fn committed_txn_state(&self, cluster: &Cluster, key: TxnKey) -> Result<bool, String> {
        if let Some(n) = self.txns.failed.get(&key) {
            return Err(format!("{n} of its records failed"));
        }
        let mut marked = true;
        for &index in self.txns.records.get(&key).into_iter().flatten() {
            let Some((topic, partition, offset)) = self.txns.landed.get(&(key.0, index)) else {
                // Not reported delivered (yet): its outcome is the other
                // rules' business; a failure is caught above.
                continue;
            };
            let log_start = cluster
                .partition(topic, *partition)
                .map_or(0, |p| p.log().log_start_offset());
            if *offset < log_start {
                continue; // retention removed it
            }
            let fate = self
                .mirrors
                .get(&(topic.clone(), *partition))
                .and_then(|m| m.txn_fate(*offset));
            match fate {
                Some(LogFate::Committed) => {}
                Some(LogFate::Aborted) => {
                    return Err(format!(
                        "record c{}-{index} at {topic}/{partition}@{offset} is under an ABORT marker",
                        key.0
                    ))
                }
                Some(LogFate::Open) => marked = false,
                None => {
                    return Err(format!(
                        "record c{}-{index} at {topic}/{partition}@{offset} is not transactional data in the log",
                        key.0
                    ))
                }
            }
        }
        Ok(marked)
    }

    /// After healing: committed transactions still without their COMMIT
    /// markers, as violations.
    pub fn unmarked_committed_txns(&self) -> Vec<Violation> {
        self.txns
            .unverified
            .iter()
            .map(|&(client, txn)| Violation::CommittedTxnNotWhole {
                client,
                txn,
                detail: "a COMMIT marker was never written after healing".into(),
            })
            .collect()
    }
}
