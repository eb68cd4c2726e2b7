//! Invariant checkers, run by the [`World`](crate::World) after every step.
//!
//! What the client promises, checked against what the cluster's logs hold
//! (not against what the client says, which is the thing on trial):
//!
//! - **No acknowledged record lost.** Every record a client reported
//!   delivered is in the log at the reported offset, with the same key and
//!   value, for as long as the log keeps that offset (retention may move
//!   the log start past it; nothing else may remove it). A delivery
//!   reported without an offset (a duplicate answer) must be in the
//!   partition somewhere. Not promised with acks=0.
//! - **No duplicates with idempotence.** Each value an idempotent client
//!   produced is in the log at most once, unless retention removed the
//!   first copy before the second came (Kafka forgets a producer whose
//!   batches are all gone, so nothing can recognise the retry).
//! - **Order.** In each partition, a client's records appear in the order
//!   it produced them (first copies; duplicates are the previous rule's
//!   business). Promised with idempotence, or with one request in flight;
//!   not for records produced before retention removed every record of
//!   the client from the partition (the broker forgot the producer, and may
//!   accept a later batch ahead of an earlier one still in flight).
//! - **A failed record is never written later.** A record reported failed
//!   that was not in the log then must never appear afterwards: the client
//!   fails a batch only when no copy of it can still reach a broker.
//!   (Records produced in a transaction are exempt: one failed with its
//!   transaction may land under the transaction's abort, or in one its
//!   producer's successor aborts; [`txn`] keeps them from view.)
//! - **No double report.** A record is reported delivered or failed once.
//! - **Consumers** (see [`consumer`]): offsets handed to a consumer rise
//!   strictly per partition; each record handed out is the one the log
//!   holds at its offset; no record still in the log is skipped; after
//!   healing, every consumer catches up with every partition's end.
//! - **Consumer groups** (see [`group`]): one live owner per partition;
//!   commits the coordinator accepts come from owners in its generation
//!   and never move backwards; a record is processed again only if no
//!   earlier processor committed past it (the duplicates are counted and
//!   their window measured); after healing, every record is processed.
//! - **Transactions** (see [`txn`]): a read_committed consumer is handed
//!   only records of committed transactions (never one of an aborted or
//!   open transaction, never a marker, never past the last stable
//!   offset); a transaction reported committed is whole (every record
//!   delivered, none under an abort marker, its markers written).
//! - **Exactly-once pipelines** (see [`eos`]): the committed output holds
//!   each input record's transform exactly once.
//!
//! The checker keeps a mirror of every partition: what it has read of the
//! log so far. Appends are read incrementally; a change that is not an
//! append (the log's generation moves) makes it read the whole partition
//! again and re-verify every acknowledged record in it.
//!
//! Workload records carry their identity in the value:
//! `c<client>-<index>|<filler>`, where the index grows with every record a
//! client produces. Records with other values are ignored.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use sansa_core::client::{Acks, Config};
use sansa_core::producer::{ProduceId, RecordMeta};
use sansa_core::record::Record;

use crate::cluster::log::PartitionLog;
use crate::cluster::txn_index::TxnRole;
use crate::cluster::{Cluster, OFFSETS_TOPIC};

pub mod consumer;
pub mod eos;
pub mod group;
pub mod txn;

/// What a client promises, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promise {
    /// Acknowledged records are never lost (acks 1 or all).
    pub no_loss: bool,
    /// No record is written twice (idempotence).
    pub no_duplicates: bool,
    /// Records keep their order within a partition (idempotence, or one
    /// request in flight).
    pub in_order: bool,
    /// As a consumer, it reads committed data only (isolation
    /// read_committed).
    pub read_committed: bool,
}

impl Promise {
    /// The promises a client with `config` makes.
    pub fn of(config: &Config) -> Self {
        Promise {
            no_loss: config.acks != Acks::None,
            no_duplicates: config.idempotent,
            in_order: config.idempotent || config.max_produce_requests_in_flight == 1,
            read_committed: config.consumer.isolation
                == sansa_core::consumer::IsolationLevel::ReadCommitted,
        }
    }
}

/// A broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A record reported delivered is not in the log where it was said to
    /// be.
    AckedRecordLost {
        /// The client.
        client: usize,
        /// The record's value.
        value: String,
        /// Topic and partition.
        topic: String,
        /// Partition.
        partition: i32,
        /// The reported offset (-1: reported without one).
        offset: i64,
        /// What the log holds instead.
        found: String,
    },
    /// A record is in the log twice.
    Duplicate {
        /// The record's value.
        value: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset of the first copy.
        first: i64,
        /// Offset of the second copy.
        second: i64,
    },
    /// A client's records are out of order in a partition.
    OutOfOrder {
        /// The client.
        client: usize,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Index of the record seen before, and its offset.
        previous: (u64, i64),
        /// Index of the record that should have come first, and its offset.
        this: (u64, i64),
    },
    /// A record reported failed appeared in the log afterwards.
    FailedRecordWritten {
        /// The client.
        client: usize,
        /// The record's value.
        value: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Where it appeared.
        offset: i64,
    },
    /// A record was reported twice, or a report names no record.
    BadReport {
        /// The client.
        client: usize,
        /// What was wrong.
        detail: String,
    },
    /// Records never got an outcome although the cluster was healthy.
    Stuck {
        /// The client.
        client: usize,
        /// How many records are outstanding.
        outstanding: usize,
        /// Detail for the report.
        detail: String,
    },
    /// A client kept asking to be woken in the past without progress.
    ClientSpins {
        /// The client.
        client: usize,
    },
    /// The simulated cluster hit a problem of its own (a response it
    /// failed to encode) or a request it could not serve.
    Cluster {
        /// What happened.
        detail: String,
    },
    /// A consumer was handed an offset not above the one before it in
    /// the same partition.
    ConsumedOutOfOrder {
        /// The consumer.
        client: usize,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset handed out before.
        previous: i64,
        /// The offset handed out now.
        offset: i64,
    },
    /// A consumer was handed a record that is not what the log holds at
    /// its offset.
    ConsumedWrongRecord {
        /// The consumer.
        client: usize,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset.
        offset: i64,
        /// What the consumer got.
        got: String,
        /// What the log holds there.
        log: String,
    },
    /// A consumer passed over a record the log still held.
    ConsumerSkipped {
        /// The consumer.
        client: usize,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The first offset passed over.
        skipped: i64,
        /// The offset handed out after it.
        next: i64,
    },
    /// After healing, a consumer never caught up with a partition's end.
    ConsumerBehind {
        /// The consumer.
        client: usize,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The next offset it would be handed.
        position: i64,
        /// The partition's high watermark.
        high_watermark: i64,
    },
    /// Two live members of a group owned a partition at once.
    PartitionOwnedTwice {
        /// The group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The two member incarnations (checker client indexes).
        members: (usize, usize),
    },
    /// The coordinator accepted a commit of a partition the committing
    /// member did not own in the group's generation.
    CommitByNonOwner {
        /// The group.
        group: String,
        /// The member id the commit named.
        member_id: String,
        /// The group's generation when the commit was accepted.
        generation: i32,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The committed offset.
        offset: i64,
    },
    /// An accepted commit moved a partition's committed offset back.
    CommitMovedBackwards {
        /// The group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The committed offset before.
        from: i64,
        /// The committed offset after.
        to: i64,
    },
    /// A record was processed again although a member that processed it
    /// before had committed past it: committed work was redone.
    ReprocessedCommitted {
        /// The group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// The incarnation that processed and committed it first.
        first: usize,
        /// The incarnation that processed it again.
        again: usize,
        /// What the first had committed.
        committed: i64,
    },
    /// After the run quiesced, a record of a subscribed topic was never
    /// processed by any member of the group.
    GroupRecordNotProcessed {
        /// The group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The first offset never processed.
        offset: i64,
    },
    /// A read_committed consumer was handed a record that is not
    /// committed data: of an aborted or open transaction, a marker, or
    /// one at or past the last stable offset.
    UncommittedRead {
        /// The consumer.
        client: usize,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset.
        offset: i64,
        /// The record's value.
        value: String,
        /// Why it is not committed data.
        why: String,
    },
    /// A transaction its producer was told committed is not whole: a
    /// record of it failed, lies under an abort marker, or never got its
    /// commit marker.
    CommittedTxnNotWhole {
        /// The producer.
        client: usize,
        /// Which of its transactions (from 0).
        txn: u64,
        /// What is missing.
        detail: String,
    },
    /// An exactly-once pipeline's committed output holds an input's
    /// transform twice, or (after healing) not at all.
    EosNotExactlyOnce {
        /// The topic (the output for a duplicate, the input for a missing
        /// transform).
        topic: String,
        /// Partition.
        partition: i32,
        /// The record's value.
        value: String,
        /// What is wrong.
        detail: String,
    },
    /// The simulator's log could not be read back.
    Unreadable {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The error.
        detail: String,
    },
}

impl Violation {
    /// A short name of the rule broken.
    pub fn rule(&self) -> &'static str {
        match self {
            Violation::AckedRecordLost { .. } => "acknowledged record lost",
            Violation::Duplicate { .. } => "duplicate with idempotence",
            Violation::OutOfOrder { .. } => "order within a partition",
            Violation::FailedRecordWritten { .. } => "failed record written later",
            Violation::BadReport { .. } => "one report per record",
            Violation::Stuck { .. } => "liveness after healing",
            Violation::ClientSpins { .. } => "client spins on a past deadline",
            Violation::Cluster { .. } => "simulator health",
            Violation::ConsumedOutOfOrder { .. } => "consumed offsets rise per partition",
            Violation::ConsumedWrongRecord { .. } => "consumed record is the log's",
            Violation::ConsumerSkipped { .. } => "consumer skips nothing the log holds",
            Violation::ConsumerBehind { .. } => "consumer catches up after healing",
            Violation::PartitionOwnedTwice { .. } => "one live owner per group partition",
            Violation::CommitByNonOwner { .. } => "commits only by owners in the generation",
            Violation::CommitMovedBackwards { .. } => "committed offsets never move backwards",
            Violation::ReprocessedCommitted { .. } => "duplicates only of uncommitted work",
            Violation::GroupRecordNotProcessed { .. } => "group processes every record",
            Violation::UncommittedRead { .. } => "read_committed sees only committed data",
            Violation::CommittedTxnNotWhole { .. } => "committed transactions appear whole",
            Violation::EosNotExactlyOnce { .. } => "EOS output holds each transform once",
            Violation::Unreadable { .. } => "log readable",
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {:?}", self.rule(), self)
    }
}

/// A workload value's identity: `(client, index)`.
pub fn parse_value(value: &[u8]) -> Option<(usize, u64)> {
    let end = value.iter().position(|&b| b == b'|').unwrap_or(value.len());
    let s = std::str::from_utf8(&value[..end]).ok()?;
    let (c, i) = s.strip_prefix('c')?.split_once('-')?;
    Some((c.parse().ok()?, i.parse().ok()?))
}

/// The value of a workload record: `c<client>-<index>|` and `filler`
/// bytes of padding.
pub fn make_value(client: usize, index: u64, filler: usize) -> Bytes {
    let mut v = format!("c{client}-{index}|").into_bytes();
    v.resize(v.len() + filler, b'x');
    Bytes::from(v)
}

fn show(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == b'|').unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end.min(64)]).into_owned()
}

/// A record the checker expects.
#[derive(Debug, Clone)]
struct Expected {
    topic: String,
    key: Option<Bytes>,
    value: Bytes,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Delivered,
    Failed,
    /// Its client crashed first: it may or may not be in the log, and no
    /// promise covers it either way (it was never acknowledged).
    Abandoned,
}

/// What the checker has read of one partition.
#[derive(Debug, Default)]
struct Mirror {
    generation: u64,
    /// The log start when last read: copies below it are history.
    log_start: i64,
    /// Next offset to read.
    end: i64,
    records: BTreeMap<i64, (Option<Bytes>, Option<Bytes>)>,
    /// Value to the offset of its first copy.
    seen: HashMap<Bytes, i64>,
    /// Per client: the highest index seen and its offset.
    last_index: BTreeMap<usize, (u64, i64)>,
    /// Per client: records produced below this index may be out of order
    /// (retention made the broker forget the producer while they could be
    /// in flight). Survives rebuilds.
    forgotten_below: BTreeMap<usize, u64>,
    /// Clients the broker forgot whose next record in the log is the first
    /// it accepted from them again, with any sequence: records produced
    /// before that one and still in flight may land after it.
    relearning: std::collections::BTreeSet<usize>,
    /// Offsets of control records (transaction markers), which no
    /// consumer is handed.
    control: BTreeSet<i64>,
    /// Transactional data batches: base offset to (last offset, producer
    /// id).
    txn_batches: BTreeMap<i64, (i64, i64)>,
    /// Transaction markers: offset to (producer id, commit).
    markers: BTreeMap<i64, (i64, bool)>,
}

/// What the log says of a transactional record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFate {
    /// Its producer has not written a marker after it yet.
    Open,
    /// A COMMIT marker of its producer follows it.
    Committed,
    /// An ABORT marker of its producer follows it.
    Aborted,
}

impl Mirror {
    /// Takes in the transactional role of every batch of `log` from
    /// `from` on.
    fn read_roles(&mut self, log: &PartitionLog, from: i64) {
        let batches = log.batches();
        let first = batches.partition_point(|b| b.last_offset < from);
        for b in &batches[first..] {
            match b.txn_role {
                TxnRole::None => {}
                TxnRole::Data => {
                    self.txn_batches
                        .insert(b.base_offset, (b.last_offset, b.producer_id));
                }
                TxnRole::Marker { commit } => {
                    self.control.extend(b.base_offset..=b.last_offset);
                    self.markers.insert(b.base_offset, (b.producer_id, commit));
                }
                TxnRole::OtherControl => self.control.extend(b.base_offset..=b.last_offset),
            }
        }
    }

    /// The fate of the transactional record at `offset`; `None` when it
    /// is not one.
    fn txn_fate(&self, offset: i64) -> Option<LogFate> {
        let (_, &(last, pid)) = self.txn_batches.range(..=offset).next_back()?;
        if last < offset {
            return None;
        }
        let marker = self
            .markers
            .range(last + 1..)
            .find(|(_, &(p, _))| p == pid)
            .map(|(_, &(_, commit))| commit);
        Some(match marker {
            None => LogFate::Open,
            Some(true) => LogFate::Committed,
            Some(false) => LogFate::Aborted,
        })
    }

    /// Whether a consumer must be handed the record at `offset` (if the
    /// log holds one): not a marker, and for a read_committed consumer
    /// not of an aborted transaction.
    fn visible(&self, offset: i64, read_committed: bool) -> bool {
        let aborted = read_committed && self.txn_fate(offset) == Some(LogFate::Aborted);
        !(self.control.contains(&offset) || aborted)
    }
}

/// The invariant checker.
#[derive(Debug, Default)]
pub struct Checker {
    promises: Vec<Promise>,
    expected: BTreeMap<(usize, u64), Expected>,
    /// Acknowledged records with offsets, per partition: offset to
    /// (client, produce id).
    acked: BTreeMap<(String, i32), BTreeMap<i64, (usize, u64)>>,
    /// Acknowledged without an offset: (client, produce id) per partition.
    acked_somewhere: BTreeMap<(String, i32), Vec<(usize, u64)>>,
    /// Failed records not in the log when they failed: value to client.
    failed_absent: HashMap<Bytes, usize>,
    /// Failures to judge once the mirrors are current.
    pending_failed: Vec<(usize, u64)>,
    /// Records reported failed although the log had them (allowed: a
    /// broker may write a batch and answer an error, e.g.
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    failed_but_written: u64,
    /// Deliveries to verify once the mirrors are current.
    pending: Vec<(usize, u64, RecordMeta)>,
    /// Per client: one past the highest workload index produced so far.
    produced_below: BTreeMap<usize, u64>,
    mirrors: BTreeMap<(String, i32), Mirror>,
    violations: Vec<Violation>,
    /// What consumers were handed, and what waits to be checked.
    consumption: consumer::Consumption,
    /// What group members owned, committed and processed.
    groups: group::Groups,
    /// Transactions of transactional producers and what read_committed
    /// consumers saw of them.
    txns: txn::Transactions,
    /// Exactly-once pipelines and their committed output.
    eos: eos::Pipelines,
}

impl Checker {
    /// A checker with no clients.
    pub fn new() -> Self {
        Checker::default()
    }

    /// Registers a client; returns its index.
    pub fn add_client(&mut self, promise: Promise) -> usize {
        self.promises.push(promise);
        self.promises.len() - 1
    }

    /// The violations found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Records a violation found elsewhere (liveness, the cluster).
    pub fn report(&mut self, v: Violation) {
        if !self.violations.contains(&v) {
            self.violations.push(v);
        }
    }

    /// A client produced a workload record.
    pub fn on_produce(
        &mut self,
        client: usize,
        id: ProduceId,
        topic: &str,
        key: Option<Bytes>,
        value: Bytes,
    ) {
        if let Some((_, index)) = parse_value(&value) {
            let below = self.produced_below.entry(client).or_default();
            *below = (*below).max(index + 1);
            self.txns.on_produce(client, index);
        }
        self.expected.insert(
            (client, id.0),
            Expected {
                topic: topic.to_owned(),
                key,
                value,
                outcome: Outcome::Pending,
            },
        );
    }

    /// How many workload records of `client` have no outcome yet.
    pub fn outstanding(&self, client: usize) -> usize {
        self.expected
            .range((client, 0)..(client + 1, 0))
            .filter(|(_, e)| e.outcome == Outcome::Pending)
            .count()
    }

    /// A client crashed: its records without an outcome are abandoned
    /// (never acknowledged, so not lost if missing; never failed, so not
    /// wrong if written). They still count for duplicates and order when
    /// they are in the log.
    pub fn on_client_crashed(&mut self, client: usize) {
        self.on_group_member_crashed(client);
        self.txns.on_client_crashed(client);
        for (_, e) in self.expected.range_mut((client, 0)..(client + 1, 0)) {
            if e.outcome == Outcome::Pending {
                e.outcome = Outcome::Abandoned;
            }
        }
    }

    /// A client reported a record delivered.
    pub fn on_delivered(&mut self, client: usize, id: ProduceId, meta: &RecordMeta) {
        match self.expected.get_mut(&(client, id.0)) {
            None => {}
            Some(e) if e.outcome != Outcome::Pending => {
                let detail = format!("{id:?} reported {:?} then delivered", e.outcome);
                self.report(Violation::BadReport { client, detail });
            }
            Some(e) => {
                e.outcome = Outcome::Delivered;
                if let Some((_, index)) = parse_value(&e.value) {
                    self.txns.on_delivered(client, index, meta);
                }
                if *meta.topic != *e.topic {
                    let detail = format!("{id:?} for {} delivered to {}", e.topic, meta.topic);
                    self.report(Violation::BadReport { client, detail });
                    return;
                }
                self.pending.push((client, id.0, meta.clone()));
            }
        }
    }

    /// A client reported a record failed.
    pub fn on_failed(&mut self, client: usize, id: ProduceId) {
        let Some(e) = self.expected.get_mut(&(client, id.0)) else {
            return;
        };
        if e.outcome != Outcome::Pending {
            let detail = format!("{id:?} reported {:?} then failed", e.outcome);
            self.report(Violation::BadReport { client, detail });
            return;
        }
        e.outcome = Outcome::Failed;
        if let Some((_, index)) = parse_value(&e.value) {
            if self.txns.on_failed(client, index) {
                // A record of a transaction that failed may still land
                // (a fatal error fails what is in flight too), in a
                // transaction that never commits: what matters then is
                // that no read_committed consumer sees it (`txn`).
                return;
            }
        }
        self.pending_failed.push((client, id.0));
    }

    /// Records reported failed that the log held (see
    /// [`Violation::FailedRecordWritten`] for the ones that are a bug).
    pub fn failed_but_written(&self) -> u64 {
        self.failed_but_written
    }

    fn judge_failure(&mut self, client: usize, id: u64) {
        let Some(e) = self.expected.get(&(client, id)) else {
            return;
        };
        // Which partition it was bound for is unknown: look in every
        // partition of its topic.
        let in_log = self
            .mirrors
            .iter()
            .filter(|((t, _), _)| *t == e.topic)
            .any(|(_, m)| m.seen.contains_key(&e.value));
        if in_log {
            self.failed_but_written += 1;
        } else {
            self.failed_absent.insert(e.value.clone(), client);
        }
    }

    /// Reads what changed in the cluster's logs and checks every rule.
    pub fn check(&mut self, cluster: &Cluster) {
        // `__consumer_offsets` holds no workload records.
        for t in cluster.topics().filter(|t| t.name() != OFFSETS_TOPIC) {
            for p in t.partitions() {
                let key = (t.name().to_owned(), p.index());
                let log = p.log();
                let mirror = self.mirrors.entry(key.clone()).or_default();
                if mirror.generation != log.generation() {
                    let start = log.log_start_offset();
                    match log.records_from(start) {
                        Ok(records) => {
                            self.rebuild(&key, log.generation(), start, records);
                            if let Some(m) = self.mirrors.get_mut(&key) {
                                m.read_roles(log, start);
                            }
                        }
                        Err(e) => self.report(Violation::Unreadable {
                            topic: key.0.clone(),
                            partition: key.1,
                            detail: e.to_string(),
                        }),
                    }
                } else if log.log_end_offset() > mirror.end {
                    mirror.read_roles(log, mirror.end);
                    match log.records_from(mirror.end) {
                        Ok(records) => self.scan(&key, records),
                        Err(e) => self.report(Violation::Unreadable {
                            topic: key.0.clone(),
                            partition: key.1,
                            detail: e.to_string(),
                        }),
                    }
                }
            }
        }
        let pending = std::mem::take(&mut self.pending);
        for (client, id, meta) in pending {
            self.verify_delivery(cluster, client, id, &meta);
        }
        let failed = std::mem::take(&mut self.pending_failed);
        for (client, id) in failed {
            self.judge_failure(client, id);
        }
        self.check_consumed();
        self.check_group_ownership(cluster);
        self.check_committed_txns(cluster);
        self.check_eos_outputs();
    }

    fn verify_delivery(&mut self, cluster: &Cluster, client: usize, id: u64, meta: &RecordMeta) {
        let promise = self.promises.get(client).copied();
        if !promise.is_some_and(|p| p.no_loss) {
            return;
        }
        let key = (meta.topic.to_string(), meta.partition);
        if meta.offset >= 0 {
            self.acked
                .entry(key.clone())
                .or_default()
                .insert(meta.offset, (client, id));
            let log_start = cluster
                .partition(&key.0, key.1)
                .map_or(0, |p| p.log().log_start_offset());
            self.verify_at(&key, meta.offset, client, id, log_start);
        } else {
            self.acked_somewhere
                .entry(key.clone())
                .or_default()
                .push((client, id));
            self.verify_somewhere(&key, client, id);
        }
    }

    /// The acknowledged record `(client, id)` must be at `offset`.
    fn verify_at(
        &mut self,
        key: &(String, i32),
        offset: i64,
        client: usize,
        id: u64,
        log_start: i64,
    ) {
        if offset < log_start {
            return; // retention removed it: not a loss
        }
        let Some(e) = self.expected.get(&(client, id)) else {
            return;
        };
        let found = self
            .mirrors
            .get(key)
            .and_then(|m| m.records.get(&offset))
            .cloned();
        let ok = found
            .as_ref()
            .is_some_and(|(k, v)| *k == e.key && v.as_ref() == Some(&e.value));
        if !ok {
            let found = match found {
                None => "nothing".to_owned(),
                Some((_, v)) => show(v.as_deref().unwrap_or_default()),
            };
            let v = Violation::AckedRecordLost {
                client,
                value: show(&e.value),
                topic: key.0.clone(),
                partition: key.1,
                offset,
                found,
            };
            self.report(v);
        }
    }

    fn verify_somewhere(&mut self, key: &(String, i32), client: usize, id: u64) {
        let Some(e) = self.expected.get(&(client, id)) else {
            return;
        };
        let there = self
            .mirrors
            .get(key)
            .is_some_and(|m| m.seen.contains_key(&e.value));
        if !there {
            let v = Violation::AckedRecordLost {
                client,
                value: show(&e.value),
                topic: key.0.clone(),
                partition: key.1,
                offset: -1,
                found: "not in the partition".into(),
            };
            self.report(v);
        }
    }

    /// Reads appended records.
    fn scan(&mut self, key: &(String, i32), records: Vec<Record>) {
        let mut found = Vec::new();
        let Some(m) = self.mirrors.get_mut(key) else {
            return;
        };
        for r in records {
            m.end = m.end.max(r.offset + 1);
            m.records.insert(r.offset, (r.key.clone(), r.value.clone()));
            if let Some(v) = r.value {
                found.push((r.offset, v));
            }
        }
        for (offset, value) in found {
            self.observe(key, offset, value);
        }
    }

    /// Applies the duplicate, order and failed-record rules to one record
    /// read from the log.
    fn observe(&mut self, key: &(String, i32), offset: i64, value: Bytes) {
        let Some((client, index)) = parse_value(&value) else {
            return;
        };
        let promise = self.promises.get(client).copied();
        if let Some(&c) = self.failed_absent.get(&value) {
            let v = Violation::FailedRecordWritten {
                client: c,
                value: show(&value),
                topic: key.0.clone(),
                partition: key.1,
                offset,
            };
            self.report(v);
        }
        let Some(m) = self.mirrors.get_mut(key) else {
            return;
        };
        if let Some(&first) = m.seen.get(&value) {
            // A first copy that retention already removed took the
            // producer's state with it (Kafka forgets producers whose
            // batches are all gone): no broker can recognise the retry,
            // and no promise covers it.
            let forgotten = first < m.log_start;
            if first != offset && !forgotten && promise.is_some_and(|p| p.no_duplicates) {
                let v = Violation::Duplicate {
                    value: show(&value),
                    topic: key.0.clone(),
                    partition: key.1,
                    first,
                    second: offset,
                };
                self.report(v);
            }
            return;
        }
        m.seen.insert(value, offset);
        if offset >= m.log_start && m.relearning.remove(&client) {
            let b = m.forgotten_below.entry(client).or_default();
            *b = (*b).max(index);
        }
        let prev = m.last_index.get(&client).copied();
        if prev.is_none_or(|(i, _)| i < index) {
            m.last_index.insert(client, (index, offset));
        } else if let Some(previous) = prev {
            let forgotten = m.forgotten_below.get(&client).is_some_and(|&b| index < b);
            if promise.is_some_and(|p| p.in_order) && !forgotten {
                let v = Violation::OutOfOrder {
                    client,
                    topic: key.0.clone(),
                    partition: key.1,
                    previous,
                    this: (index, offset),
                };
                self.report(v);
            }
        }
    }

    /// The log changed other than by an append: read it all again, keep
    /// what retention removed as history, and re-verify everything.
    fn rebuild(&mut self, key: &(String, i32), generation: u64, start: i64, records: Vec<Record>) {
        let Some(m) = self.mirrors.get_mut(key) else {
            return;
        };
        let history: BTreeMap<i64, (Option<Bytes>, Option<Bytes>)> = m
            .records
            .range(..start)
            .map(|(&o, r)| (o, r.clone()))
            .collect();
        // A client none of whose records is left in the log is forgotten
        // by the broker (Kafka drops a producer whose batches are all
        // gone): what it produced so far may land in any order.
        let mut forgotten_below = std::mem::take(&mut m.forgotten_below);
        let mut relearning = std::mem::take(&mut m.relearning);
        // Transactional roles of the history stay; the rest is read again.
        let mut control = std::mem::take(&mut m.control);
        control.retain(|&o| o < start);
        let mut txn_batches = std::mem::take(&mut m.txn_batches);
        txn_batches.retain(|&o, _| o < start);
        let mut markers = std::mem::take(&mut m.markers);
        markers.retain(|&o, _| o < start);
        let mut newest: BTreeMap<usize, i64> = BTreeMap::new();
        for (&o, (_, v)) in &m.records {
            if let Some((c, _)) = v.as_deref().and_then(parse_value) {
                newest.insert(c, o);
            }
        }
        for (c, o) in newest {
            if o < start {
                let below = self.produced_below.get(&c).copied().unwrap_or(0);
                let entry = forgotten_below.entry(c).or_default();
                *entry = (*entry).max(below);
                relearning.insert(c);
            }
        }
        *m = Mirror {
            generation,
            log_start: start,
            end: start,
            records: history,
            forgotten_below,
            relearning,
            control,
            txn_batches,
            markers,
            ..Default::default()
        };
        let old: Vec<(i64, Bytes)> = m
            .records
            .iter()
            .filter_map(|(&o, (_, v))| v.clone().map(|v| (o, v)))
            .collect();
        // History first (so duplicates across a deletion still count),
        // without re-reporting failed records written long ago.
        let failed = std::mem::take(&mut self.failed_absent);
        for (o, v) in old {
            self.observe(key, o, v);
        }
        self.failed_absent = failed;
        self.scan(key, records);
        let acked: Vec<(i64, (usize, u64))> = self
            .acked
            .get(key)
            .map(|a| a.range(start..).map(|(&o, &c)| (o, c)).collect())
            .unwrap_or_default();
        for (offset, (client, id)) in acked {
            self.verify_at(key, offset, client, id, start);
        }
        let somewhere = self.acked_somewhere.get(key).cloned().unwrap_or_default();
        for (client, id) in somewhere {
            self.verify_somewhere(key, client, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_values_round_trip() {
        let v = make_value(3, 1234, 10);
        assert_eq!(parse_value(&v), Some((3, 1234)));
        assert_eq!(v.len(), "c3-1234|".len() + 10);
        assert_eq!(parse_value(b"hello"), None);
        assert_eq!(parse_value(b"c1-x|"), None);
    }
}
