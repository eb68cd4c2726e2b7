//! The producer: how records find their partition, wait in per-partition
//! buffers, are batched, sequenced and sent to each partition's leader, and
//! how every answer (or lack of one) is turned into a delivery, a retry or a
//! failure.
//!
//! - [`partitioner`]: Kafka's Java-compatible murmur2 key hash, the sticky
//!   "uniform bytes" partitioner of KIP-794 for unkeyed records, and the
//!   [`Partitioner`] trait the producer calls once
//!   per record.
//! - [`Producer`]: the state machine the [`Client`](crate::client::Client)
//!   drives. It never sees a connection; the client asks it for requests
//!   per broker and hands it the answers.
//!
//! Idempotence (KIP-98) is on by default: the producer gets a producer id
//! before its first send, numbers each partition's records, and keeps each
//! batch's sequence frozen across retries. When the broker reports
//! OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID for the oldest
//! unacknowledged batch, the log start offset tells truncation (retention
//! removed the producer's state: bump the epoch, KIP-360, and resend) from
//! data loss (report it, then reset).

mod outstanding;
pub mod partition;
pub mod partitioner;
pub mod record;
mod topic;
mod transactional;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::client::{Config, Event};
use crate::cluster::{Backoff, Metadata, MetadataChanges, NodeId};
use crate::protocol::messages::init_producer_id_request::InitProducerIdRequest;
use crate::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use crate::protocol::messages::{InitProducerIdResponse, ProduceRequest, ProduceResponse};
use crate::protocol::ErrorCode;
use crate::record::BatchOptions;
use crate::rng::SeededRng;
use crate::time::Timestamp;

use outstanding::Outstanding;
use partition::{Acked, BatchMemory, Failed, PartitionBuffer, PendingRecord};
use partitioner::{NewBatch, Partitioner, PartitionerFactory, PartitionsView, RecordInfo};
pub use record::{ProduceError, ProduceId, Record, RecordMeta};
pub use topic::Topic;

/// What `produce` does when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Fail at once with [`ProduceError::BufferFull`] (`try_produce`).
    Fail,
    /// Wait for space; [`Event::Buffered`] says when it was taken.
    Wait,
}

/// Where the producer id stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProducerId {
    /// Not idempotent: batches carry no producer id.
    NotUsed,
    /// An InitProducerId must be sent (first time, or a new id after
    /// data loss).
    Needed,
    /// The epoch must be bumped (KIP-360) once nothing is in flight.
    BumpNeeded { id: i64, epoch: i16 },
    /// A request is out.
    Requesting { bump: Option<(i64, i16)> },
    /// Ready to stamp batches.
    Ready { id: i64, epoch: i16 },
}

/// A produce request in flight: which batch of which partition it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceInFlight {
    /// The broker it went to.
    pub broker: NodeId,
    batches: Vec<(String, i32, u64)>,
}

struct Waiting {
    pending: PendingRecord,
    urgent: bool,
    /// When it started waiting, for the delivery timeout.
    since: Timestamp,
}

struct TopicBuffer {
    name: Arc<str>,
    partitions: Vec<PartitionBuffer>,
    /// Which partitions have a leader, from the last metadata.
    leaders: Vec<bool>,
    /// Scratch for the partitioner's view of buffered bytes.
    backlog: Vec<u64>,
    partitioner: Box<dyn Partitioner>,
    /// Records waiting for the topic's metadata.
    waiting: VecDeque<Waiting>,
    /// Metadata answers that said the topic is missing.
    unknown_loads: u32,
}

impl std::fmt::Debug for TopicBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicBuffer")
            .field("partitions", &self.partitions.len())
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

/// A partition's buffer, by topic name and partition.
fn partition_in<'a>(
    topics: &'a mut BTreeMap<String, TopicBuffer>,
    topic: &str,
    partition: i32,
) -> Option<&'a mut PartitionBuffer> {
    topics
        .get_mut(topic)?
        .partitions
        .get_mut(usize::try_from(partition).ok()?)
}

/// Whether a partition's batches may be sent: always without
/// transactions, else once the partition is in the open transaction.
fn gate_allows(gate: Option<&BTreeMap<String, BTreeSet<i32>>>, topic: &str, p: i32) -> bool {
    gate.is_none_or(|g| g.get(topic).is_some_and(|s| s.contains(&p)))
}

/// Partition `p` of a topic's buffers.
fn partition_at(
    partitions: &mut [PartitionBuffer],
    p: i32,
) -> Result<&mut PartitionBuffer, partitioner::PartitionError> {
    let count = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
    usize::try_from(p)
        .ok()
        .and_then(|i| partitions.get_mut(i))
        .ok_or(partitioner::PartitionError::InvalidPartition {
            partition: p,
            count,
        })
}

/// The producer state machine.
pub struct Producer {
    acks: i16,
    idempotent: bool,
    transactional_id: Option<String>,
    linger: Duration,
    manual_flushing: bool,
    max_buffered_records: usize,
    max_buffered_bytes: Option<usize>,
    batch_options: BatchOptions,
    record_retries: Option<u32>,
    delivery_timeout: Option<Duration>,
    unknown_topic_retries: u32,
    produce_timeout_ms: i32,
    max_in_flight: usize,
    default_topic: Option<String>,
    backoff: Backoff,
    partitioners: Arc<dyn PartitionerFactory>,
    seed: u64,

    topics: BTreeMap<String, TopicBuffer>,
    next_id: u64,
    buffered_records: usize,
    buffered_bytes: usize,
    blocked: VecDeque<(ProduceId, Record, i64, bool)>,
    /// Ids of records not yet delivered or failed.
    outstanding: Outstanding,
    /// Flushes waiting: (flush id, every record id below this is covered).
    flushes: Vec<(u64, u64)>,
    next_flush: u64,
    producer_id: ProducerId,
    producer_id_attempts: u32,
    producer_id_retry_at: Option<Timestamp>,
    in_flight_per_broker: BTreeMap<NodeId, usize>,
    /// A record went into a partition the latest metadata gave no leader
    /// (or one sits there after an answer): the client must ask again.
    leader_wanted: bool,
    events: VecDeque<Event>,
    rng: SeededRng,
    /// Codec state and spare buffers shared by every batch.
    memory: BatchMemory,
    /// With a transactional id: the partitions added to the open
    /// transaction, the only ones whose batches may be sent
    /// (`transactional.rs`).
    txn_gate: Option<BTreeMap<String, BTreeSet<i32>>>,
    /// A record failed since the last [`Producer::take_failed_in_txn`].
    failed_in_txn: bool,
    /// A failure no transaction survives ([`Producer::take_txn_fatal`]).
    txn_fatal: Option<ProduceError>,
    /// A record did more than join an open batch since the last
    /// [`Producer::take_needs_drive`]: it opened a batch (a new linger
    /// deadline, or the batch before is now sendable), was urgent, waits
    /// for metadata or space, or failed (an event to report).
    needs_drive: bool,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("topics", &self.topics)
            .field("buffered_records", &self.buffered_records)
            .field("producer_id", &self.producer_id)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// A producer with the client's settings.
    pub fn new(config: &Config) -> Self {
        Producer {
            acks: config.acks.wire(),
            idempotent: config.idempotent,
            transactional_id: config.transactional_id.clone(),
            linger: config.linger,
            manual_flushing: config.manual_flushing,
            max_buffered_records: config.max_buffered_records,
            max_buffered_bytes: config.max_buffered_bytes,
            batch_options: BatchOptions {
                compression: config.compression,
                transactional: config.transactional_id.is_some(),
                max_bytes: config.batch_max_bytes,
                ..Default::default()
            },
            record_retries: config.record_retries,
            delivery_timeout: config.record_delivery_timeout,
            unknown_topic_retries: config.unknown_topic_retries,
            produce_timeout_ms: i32::try_from(config.produce_request_timeout.as_millis())
                .unwrap_or(i32::MAX),
            max_in_flight: config.max_produce_requests_in_flight.max(1),
            default_topic: config.default_produce_topic.clone(),
            backoff: config.retry_backoff,
            partitioners: config.partitioner.clone(),
            seed: config.seed,
            topics: BTreeMap::new(),
            next_id: 0,
            buffered_records: 0,
            buffered_bytes: 0,
            blocked: VecDeque::new(),
            outstanding: Outstanding::default(),
            flushes: Vec::new(),
            next_flush: 0,
            producer_id: if config.idempotent {
                ProducerId::Needed
            } else {
                ProducerId::NotUsed
            },
            producer_id_attempts: 0,
            producer_id_retry_at: None,
            in_flight_per_broker: BTreeMap::new(),
            leader_wanted: false,
            events: VecDeque::new(),
            rng: SeededRng::new(config.seed ^ 0x7072_6f64),
            memory: BatchMemory::default(),
            txn_gate: config.transactional_id.as_ref().map(|_| BTreeMap::new()),
            failed_in_txn: false,
            txn_fatal: None,
            needs_drive: false,
        }
    }

    /// Whether a record since the last call needs the client driven (see
    /// `needs_drive`); clears the flag. A record that only joined an open
    /// batch changes no deadline and makes nothing sendable, so an adapter
    /// taking records on the caller's thread need not wake its driver for
    /// it.
    pub fn take_needs_drive(&mut self) -> bool {
        std::mem::take(&mut self.needs_drive)
    }

    /// Records buffered (not counting those waiting for space).
    pub fn buffered_records(&self) -> usize {
        self.buffered_records
    }

    /// Whether the buffer holds all it may (or records wait for space).
    fn is_full(&self) -> bool {
        !self.blocked.is_empty()
            || self.buffered_records >= self.max_buffered_records
            || self
                .max_buffered_bytes
                .is_some_and(|max| self.buffered_bytes >= max)
    }

    /// How long an open batch waits for more records: the configured
    /// linger, or none while the buffer is full. A full buffer admits no
    /// record until one is delivered, and none is delivered while its
    /// batch lingers, so lingering would only idle: franz-go stops
    /// lingering when a produce blocks on a full buffer
    /// (`unlingerDueToMaxRecsBuffered`); this stops as soon as the buffer
    /// fills, which a caller that keeps as many records in flight as the
    /// buffer holds (and so never blocks) needs too.
    fn linger(&self) -> Duration {
        if self.is_full() {
            Duration::ZERO
        } else {
            self.linger
        }
    }

    fn has_space(&self, size: usize) -> bool {
        self.buffered_records < self.max_buffered_records
            && self
                .max_buffered_bytes
                .is_none_or(|max| self.buffered_bytes == 0 || self.buffered_bytes + size <= max)
    }

    /// Buffers a record. `wall_ms` is the wall-clock time in ms since the
    /// Unix epoch, used as the record's timestamp when it has none.
    /// `urgent` skips linger (`produce_sync`).
    pub fn produce(
        &mut self,
        now: Timestamp,
        mut record: Record,
        wall_ms: i64,
        when_full: WhenFull,
        urgent: bool,
    ) -> Result<ProduceId, ProduceError> {
        if record.topic.is_empty() {
            match &self.default_topic {
                Some(t) => record.topic = Topic::from(t),
                None => return Err(ProduceError::NoTopic),
            }
        }
        let id = ProduceId(self.next_id);
        let size = record.user_size();
        if !self.has_space(size) || !self.blocked.is_empty() {
            if when_full == WhenFull::Fail {
                return Err(ProduceError::BufferFull);
            }
            self.needs_drive = true;
            self.next_id += 1;
            self.outstanding.insert(id.0);
            self.blocked.push_back((id, record, wall_ms, urgent));
            return Ok(id);
        }
        self.next_id += 1;
        self.outstanding.insert(id.0);
        self.admit(now, id, record, wall_ms, urgent);
        Ok(id)
    }

    fn admit(&mut self, now: Timestamp, id: ProduceId, record: Record, wall_ms: i64, urgent: bool) {
        let timestamp = record.timestamp.unwrap_or(wall_ms);
        let size = record.user_size();
        self.buffered_records += 1;
        self.buffered_bytes += size;
        // The hot path allocates nothing per record: the topic is looked up
        // by reference and cloned only the first time it is seen.
        if !self.topics.contains_key(record.topic.as_str()) {
            let name = record.topic.to_string();
            let seed = partitioner::topic_seed(self.seed, &name);
            let tb = TopicBuffer {
                name: Arc::from(name.as_str()),
                partitions: Vec::new(),
                leaders: Vec::new(),
                backlog: Vec::new(),
                partitioner: self.partitioners.for_topic(&name, seed),
                waiting: VecDeque::new(),
                unknown_loads: 0,
            };
            self.topics.insert(name, tb);
        }
        let pending = PendingRecord {
            id,
            record,
            timestamp,
        };
        self.place(now, pending, urgent);
        if self.is_full() {
            // Lingering batches are due now (see `linger`).
            self.needs_drive = true;
        }
    }

    /// Partitions and appends a record; it waits if its topic's
    /// partitions are not known yet.
    fn place(&mut self, now: Timestamp, pending: PendingRecord, urgent: bool) {
        let Some(tb) = self.topics.get_mut(pending.record.topic.as_str()) else {
            return;
        };
        // Set back only for a record that joins an open batch.
        let needed_before = std::mem::replace(&mut self.needs_drive, true);
        if tb.partitions.is_empty() {
            tb.waiting.push_back(Waiting {
                pending,
                urgent,
                since: now,
            });
            return;
        }
        tb.backlog.clear();
        tb.backlog
            .extend(tb.partitions.iter().map(|p| p.buffered_bytes as u64));
        let view = PartitionsView::new(&tb.leaders).with_backlog(&tb.backlog);
        let r = &pending.record;
        let info = RecordInfo::new(r.key.as_deref(), r.user_size());
        let info = match r.partition {
            Some(p) => info.with_partition(p),
            None => info,
        };
        // As Java's accumulator does: the record goes into the chosen
        // partition's open batch when it fits; only a record that needs a
        // new batch gives the partitioner its say (KIP-794 switches
        // partitions there), so the record's size is encoded once.
        let mut joined_open = false;
        let placed = (|| {
            let first = view.check(tb.partitioner.partition(&info, &view)?)?;
            if partition_at(&mut tb.partitions, first)?.write_open(&pending) {
                joined_open = true;
                return Ok((first, None));
            }
            let target = match tb.partitioner.on_new_batch(&info, first) {
                NewBatch::KeepPartition => first,
                NewBatch::Repartition => view.check(tb.partitioner.partition(&info, &view)?)?,
            };
            let buf = partition_at(&mut tb.partitions, target)?;
            if target != first && buf.write_open(&pending) {
                joined_open = true;
                return Ok((target, None));
            }
            Ok((
                target,
                buf.write_new(now, &pending, &self.batch_options, &mut self.memory)
                    .err(),
            ))
        })();
        let error = match placed {
            Ok((partition, None)) => {
                tb.partitioner.on_record_buffered(&info, partition);
                if !tb.leaders.get(partition as usize).copied().unwrap_or(false) {
                    self.leader_wanted = true;
                }
                if let Ok(buf) = partition_at(&mut tb.partitions, partition) {
                    buf.keep(pending, urgent);
                    self.needs_drive = needed_before || !joined_open || urgent;
                    return;
                }
                // `partition_at` found it a moment ago.
                ProduceError::InvalidPartition {
                    topic: r.topic.to_string(),
                    partition: Some(partition),
                }
            }
            Ok((_, Some(error))) => error,
            Err(e) => ProduceError::InvalidPartition {
                topic: r.topic.to_string(),
                partition: r.partition.or(match e {
                    partitioner::PartitionError::InvalidPartition { partition, .. } => {
                        Some(partition)
                    }
                    _ => None,
                }),
            },
        };
        self.fail_records(vec![pending], error);
    }

    fn fail_records(&mut self, records: Vec<PendingRecord>, error: ProduceError) {
        if self.txn_gate.is_some() && !records.is_empty() {
            self.failed_in_txn = true;
            if self.txn_fatal.is_none() && transactional::is_fatal(&error) {
                self.txn_fatal = Some(error.clone());
            }
        }
        for p in records {
            self.buffered_records = self.buffered_records.saturating_sub(1);
            self.buffered_bytes = self.buffered_bytes.saturating_sub(p.record.user_size());
            self.outstanding.remove(p.id.0);
            self.events.push_back(Event::ProduceFailed {
                id: p.id,
                record: Box::new(p.record),
                error: error.clone(),
            });
        }
    }

    fn fail(&mut self, failed: Failed) {
        let Failed { records, error } = failed;
        let mut first = true;
        for p in records {
            let e = if first {
                first = false;
                error.clone()
            } else {
                match &error {
                    ProduceError::EarlierBatchFailed(_) => error.clone(),
                    other => ProduceError::EarlierBatchFailed(Box::new(other.clone())),
                }
            };
            self.fail_records(vec![p], e);
        }
    }

    /// Reports an acknowledged batch's records delivered.
    fn deliver(&mut self, topic: &Arc<str>, acked: Option<Acked>) {
        let Some(acked) = acked else {
            return;
        };
        self.buffered_records = self.buffered_records.saturating_sub(acked.records.len());
        self.events.reserve(acked.records.len());
        for (i, p) in acked.records.iter().enumerate() {
            self.buffered_bytes = self.buffered_bytes.saturating_sub(p.size);
            self.outstanding.remove(p.id.0);
            let meta = acked.meta(topic, i, p.timestamp);
            self.events.push_back(Event::Delivered { id: p.id, meta });
        }
    }

    /// Starts a flush: every record produced so far is sent without
    /// waiting for linger; [`Event::Flushed`] with the returned id follows
    /// when all of them are delivered or failed.
    pub fn flush(&mut self) -> u64 {
        let id = self.next_flush;
        self.next_flush += 1;
        self.flushes.push((id, self.next_id));
        self.check_flushes();
        id
    }

    fn flushing(&self) -> bool {
        !self.flushes.is_empty()
    }

    fn check_flushes(&mut self) {
        let lowest = self.outstanding.first().unwrap_or(u64::MAX);
        let events = &mut self.events;
        self.flushes.retain(|&(id, below)| {
            if lowest >= below {
                events.push_back(Event::Flushed(id));
                false
            } else {
                true
            }
        });
    }

    /// Cancels a record: it fails with [`ProduceError::Cancelled`] as soon
    /// as that is safe (with every record behind it on its partition), or
    /// is delivered if the broker already has it.
    pub fn cancel(&mut self, now: Timestamp, id: ProduceId) {
        if let Some(pos) = self.blocked.iter().position(|b| b.0 == id) {
            if let Some((id, record, _, _)) = self.blocked.remove(pos) {
                self.outstanding.remove(id.0);
                self.events.push_back(Event::ProduceFailed {
                    id,
                    record: Box::new(record),
                    error: ProduceError::Cancelled,
                });
            }
            return;
        }
        let mut waiting_hit = None;
        for tb in self.topics.values_mut() {
            if let Some(pos) = tb.waiting.iter().position(|w| w.pending.id == id) {
                waiting_hit = tb.waiting.remove(pos);
                break;
            }
            if tb.partitions.iter_mut().any(|p| p.cancel(id)) {
                break;
            }
        }
        if let Some(w) = waiting_hit {
            self.fail_records(vec![w.pending], ProduceError::Cancelled);
        }
        self.handle_timeout(now);
    }

    /// The topics whose metadata the producer needs (records waiting for
    /// them, or partitions without a leader).
    pub fn topics(&self) -> impl Iterator<Item = &String> {
        self.topics.keys()
    }

    /// Whether some record waits for metadata.
    pub fn wants_metadata(&self) -> bool {
        self.topics.values().any(|t| !t.waiting.is_empty())
    }

    /// Whether a record waits on a partition the latest metadata gave no
    /// leader, since the last call: only a later answer can name one, so
    /// the client asks again (within `metadata_min_age`), and again after
    /// each answer that still names none.
    pub fn take_leader_wanted(&mut self) -> bool {
        std::mem::take(&mut self.leader_wanted)
    }

    fn waits_on_leader(&self) -> bool {
        self.topics.values().any(|t| {
            t.partitions.iter().any(|p| {
                !p.batches.is_empty()
                    && !t
                        .leaders
                        .get(p.partition as usize)
                        .copied()
                        .unwrap_or(false)
            })
        })
    }

    /// Folds new metadata in: records waiting for their topic are placed;
    /// topics the cluster keeps calling unknown fail their records after
    /// `unknown_topic_retries` answers.
    pub fn on_metadata(&mut self, now: Timestamp, metadata: &Metadata, changes: &MetadataChanges) {
        let names: Vec<String> = self.topics.keys().cloned().collect();
        for name in names {
            let failed_with = changes
                .failed
                .iter()
                .find(|(t, _)| *t == name)
                .map(|(_, e)| *e);
            let info = metadata.topic(&name);
            let Some(tb) = self.topics.get_mut(&name) else {
                continue;
            };
            match info {
                Some(info) if !info.partitions.is_empty() => {
                    tb.unknown_loads = 0;
                    let n = info.partitions.len();
                    // Partitions only grow in Kafka; a shrink is a
                    // recreated topic, whose old buffers stay put.
                    while tb.partitions.len() < n {
                        let p = tb.partitions.len() as i32;
                        tb.partitions
                            .push(PartitionBuffer::new(Topic::from(&tb.name), p));
                    }
                    tb.leaders.clear();
                    tb.leaders.extend(
                        (0..tb.partitions.len())
                            .map(|i| info.partitions.get(i).is_some_and(|p| p.leader.is_some())),
                    );
                    let waiting: Vec<Waiting> = tb.waiting.drain(..).collect();
                    for w in waiting {
                        self.place(now, w.pending, w.urgent);
                    }
                }
                _ => {
                    if let Some(error) = failed_with {
                        tb.unknown_loads += 1;
                        let retriable = error.is_retriable();
                        if !retriable || tb.unknown_loads > self.unknown_topic_retries {
                            let waiting: Vec<PendingRecord> =
                                tb.waiting.drain(..).map(|w| w.pending).collect();
                            self.fail_records(
                                waiting,
                                ProduceError::Topic {
                                    topic: name.clone(),
                                    error,
                                },
                            );
                        }
                    }
                }
            }
        }
        self.leader_wanted |= self.waits_on_leader();
        self.check_flushes();
    }

    /// A new epoch may be asked for once nothing is in flight and no batch
    /// anywhere is in doubt (see [`Producer::stamp`]).
    fn may_bump(&self) -> bool {
        !self.in_flight_per_broker.values().any(|&n| n > 0)
            && !self
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .any(PartitionBuffer::has_batch_in_doubt)
    }

    /// Whether an InitProducerId request is due (only once records wait:
    /// a client that never produces never asks).
    pub fn wants_producer_id(&self, now: Timestamp) -> bool {
        if self.txn_gate.is_some() {
            // The transaction manager owns the id (`crate::txn`).
            return false;
        }
        let due = self.producer_id_retry_at.is_none_or(|t| t <= now);
        let needed = match self.producer_id {
            ProducerId::Needed => true,
            ProducerId::BumpNeeded { .. } => self.may_bump(),
            _ => false,
        };
        due && needed && !self.outstanding.is_empty()
    }

    /// The InitProducerId request to send now, if one is due and nothing is
    /// in flight that a new epoch would confuse.
    pub fn producer_id_request(&mut self, now: Timestamp) -> Option<InitProducerIdRequest> {
        if self.producer_id_retry_at.is_some_and(|t| t > now) {
            return None;
        }
        let bump = match self.producer_id {
            ProducerId::Needed => None,
            ProducerId::BumpNeeded { id, epoch } => {
                if !self.may_bump() {
                    return None;
                }
                Some((id, epoch))
            }
            _ => return None,
        };
        self.producer_id = ProducerId::Requesting { bump };
        Some(InitProducerIdRequest {
            transactional_id: self.transactional_id.clone(),
            transaction_timeout_ms: 60_000,
            producer_id: bump.map_or(-1, |b| b.0),
            producer_epoch: bump.map_or(-1, |b| b.1),
            ..Default::default()
        })
    }

    /// The answer to InitProducerId, or `None` if the request was lost.
    pub fn on_producer_id(&mut self, now: Timestamp, resp: Option<&InitProducerIdResponse>) {
        let ProducerId::Requesting { bump } = self.producer_id else {
            return;
        };
        let retry = |s: &mut Self| {
            s.producer_id_attempts += 1;
            let d = s.backoff.delay(s.producer_id_attempts, &mut s.rng);
            s.producer_id_retry_at = Some(now + d);
            s.producer_id = match bump {
                Some((id, epoch)) => ProducerId::BumpNeeded { id, epoch },
                None => ProducerId::Needed,
            };
        };
        let Some(resp) = resp else { return retry(self) };
        let error = ErrorCode::from_code(resp.error_code);
        if error.is_ok() && resp.producer_id >= 0 {
            tracing::debug!(
                id = resp.producer_id,
                epoch = resp.producer_epoch,
                "producer id"
            );
            self.producer_id = ProducerId::Ready {
                id: resp.producer_id,
                epoch: resp.producer_epoch,
            };
            self.producer_id_attempts = 0;
            self.producer_id_retry_at = None;
            for tb in self.topics.values_mut() {
                for p in &mut tb.partitions {
                    p.reset_sequences();
                }
            }
            return;
        }
        tracing::warn!(%error, "InitProducerId failed");
        if bump.is_some()
            && matches!(
                error,
                ErrorCode::InvalidProducerEpoch
                    | ErrorCode::ProducerFenced
                    | ErrorCode::UnsupportedVersion
                    | ErrorCode::InvalidProducerIdMapping
            )
        {
            // The epoch cannot be bumped: start over with a new id. (Set
            // after `retry`, which would ask for the bump again.)
            retry(self);
            self.producer_id = ProducerId::Needed;
            return;
        }
        retry(self);
    }

    /// The producer id and epoch batches are stamped with now, and whether
    /// only batches in doubt may go: while a new epoch waits, batches that
    /// may already be written are resent under the old one until the
    /// broker says whether it has them (a duplicate or a success); under a
    /// new epoch it could not tell, and would write them twice.
    fn stamp(&self) -> Option<(Option<(i64, i16)>, bool)> {
        match self.producer_id {
            ProducerId::NotUsed => Some((None, false)),
            ProducerId::Ready { id, epoch } => Some((Some((id, epoch)), false)),
            ProducerId::BumpNeeded { id, epoch } => Some((Some((id, epoch)), true)),
            _ => None,
        }
    }

    /// Whether a partition may send its next batch under `stamp`.
    fn may_send(p: &PartitionBuffer, doubt_only: bool) -> bool {
        !doubt_only || p.next_is_in_doubt()
    }

    /// Brokers that lead a partition with a batch ready to send now.
    pub fn ready_brokers(&self, now: Timestamp, metadata: &Metadata) -> BTreeSet<NodeId> {
        let mut out = BTreeSet::new();
        let Some((_, doubt_only)) = self.stamp() else {
            return out;
        };
        let flushing = self.flushing();
        let linger = self.linger();
        for (name, tb) in &self.topics {
            for p in &tb.partitions {
                if Self::may_send(p, doubt_only)
                    && gate_allows(self.txn_gate.as_ref(), name, p.partition)
                    && p.ready_at(
                        now,
                        linger,
                        flushing,
                        self.manual_flushing,
                        self.max_in_flight,
                    )
                    .is_some_and(|t| t <= now)
                {
                    if let Some((leader, _)) = metadata.leader(name, p.partition) {
                        out.insert(leader);
                    }
                }
            }
        }
        out
    }

    /// Notes the partitions with a batch ready now that cannot be sent: no
    /// leader, or a leader not in `sendable` (no ready connection). Their
    /// delivery timeouts start (see `PartitionBuffer::note_blocked`).
    pub fn note_unsendable(
        &mut self,
        now: Timestamp,
        metadata: &Metadata,
        sendable: &BTreeSet<NodeId>,
    ) {
        let Some((_, doubt_only)) = self.stamp() else {
            // Waiting for a producer id: nothing can be sent anywhere.
            for tb in self.topics.values_mut() {
                for p in &mut tb.partitions {
                    if !p.batches.is_empty() {
                        p.note_blocked(now);
                    }
                }
            }
            return;
        };
        let flushing = self.flushing();
        let linger = self.linger();
        for (name, tb) in &mut self.topics {
            for p in &mut tb.partitions {
                let ready = Self::may_send(p, doubt_only)
                    && gate_allows(self.txn_gate.as_ref(), name, p.partition)
                    && p.ready_at(
                        now,
                        linger,
                        flushing,
                        self.manual_flushing,
                        self.max_in_flight,
                    )
                    .is_some_and(|t| t <= now);
                if !ready {
                    continue;
                }
                let reachable = metadata
                    .leader(name, p.partition)
                    .is_some_and(|(leader, _)| sendable.contains(&leader));
                if !reachable {
                    p.note_blocked(now);
                }
            }
        }
    }

    /// Builds the next produce request for `broker`, taking at most one
    /// ready batch per partition it leads (Kafka accepts one batch per
    /// partition per idempotent request), up to `max_request_bytes`.
    pub fn drain(
        &mut self,
        now: Timestamp,
        broker: NodeId,
        metadata: &Metadata,
        max_request_bytes: usize,
    ) -> Option<(ProduceRequest, ProduceInFlight)> {
        let (stamp, doubt_only) = self.stamp()?;
        if self.in_flight_per_broker.get(&broker).copied().unwrap_or(0) >= self.max_in_flight {
            return None;
        }
        let flushing = self.flushing();
        let linger = self.linger();
        let mut topic_data = Vec::new();
        let mut carried = Vec::new();
        let mut bytes = 0usize;
        let mut failures = Vec::new();
        for (name, tb) in &mut self.topics {
            let mut parts = Vec::new();
            for p in &mut tb.partitions {
                if metadata.leader(name, p.partition).map(|l| l.0) != Some(broker)
                    || !Self::may_send(p, doubt_only)
                    || !gate_allows(self.txn_gate.as_ref(), name, p.partition)
                {
                    continue;
                }
                // Never to two brokers at once: a partition whose batches
                // are in flight elsewhere waits for them.
                if p.in_flight > 0 && p.sending_to != Some(broker) {
                    continue;
                }
                let ready = p
                    .ready_at(
                        now,
                        linger,
                        flushing,
                        self.manual_flushing,
                        self.max_in_flight,
                    )
                    .is_some_and(|t| t <= now);
                if !ready || bytes >= max_request_bytes {
                    continue;
                }
                match p.take_for_send(now, stamp, self.max_in_flight, &mut self.memory) {
                    Ok(Some((batch_id, data))) => {
                        p.sending_to = Some(broker);
                        bytes += data.len();
                        carried.push((name.clone(), p.partition, batch_id));
                        parts.push(PartitionProduceData {
                            index: p.partition,
                            records: Some(data),
                            ..Default::default()
                        });
                    }
                    Ok(None) => {}
                    Err(failed) => failures.push(failed),
                }
            }
            if !parts.is_empty() {
                topic_data.push(TopicProduceData {
                    name: name.clone(),
                    partition_data: parts,
                    ..Default::default()
                });
            }
        }
        for f in failures {
            self.fail(f);
        }
        if carried.is_empty() {
            return None;
        }
        // Batch sizes decide compression ratio and per-request cost; this
        // event is how a benchmark or an operator sees them.
        tracing::trace!(
            broker = broker.0,
            batches = carried.len(),
            bytes,
            "produce request built"
        );
        *self.in_flight_per_broker.entry(broker).or_insert(0) += 1;
        let req = ProduceRequest {
            transactional_id: self.transactional_id.clone(),
            acks: self.acks,
            timeout_ms: self.produce_timeout_ms,
            topic_data,
            ..Default::default()
        };
        Some((
            req,
            ProduceInFlight {
                broker,
                batches: carried,
            },
        ))
    }

    fn request_done(&mut self, broker: NodeId) {
        if let Some(n) = self.in_flight_per_broker.get_mut(&broker) {
            *n = n.saturating_sub(1);
        }
    }

    /// A produce request with acks=0 was written: Kafka never answers, so
    /// its records count as delivered, without offsets.
    pub fn on_sent_without_ack(&mut self, inflight: ProduceInFlight) {
        self.request_done(inflight.broker);
        for (topic, partition, batch_id) in inflight.batches {
            let Some(name) = self.topics.get(&topic).map(|t| t.name.clone()) else {
                continue;
            };
            let acked = partition_in(&mut self.topics, &topic, partition)
                .and_then(|p| p.on_success(batch_id, -1, -1, &mut self.memory));
            self.deliver(&name, acked);
        }
        self.check_flushes();
    }

    /// Handles a produce answer. Returns whether metadata looks stale.
    pub fn on_response(
        &mut self,
        now: Timestamp,
        inflight: ProduceInFlight,
        resp: &ProduceResponse,
    ) -> bool {
        self.request_done(inflight.broker);
        let mut stale = false;
        for (topic, partition, batch_id) in inflight.batches {
            let answer = resp
                .responses
                .iter()
                .filter(|t| t.name == topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == partition);
            let Some(answer) = answer else {
                // The broker skipped the partition: treat as retriable.
                if let Some(f) = partition_in(&mut self.topics, &topic, partition)
                    .and_then(|p| p.on_retriable(batch_id, ErrorCode::UnknownServerError))
                {
                    self.fail(f);
                }
                continue;
            };
            let error = ErrorCode::from_code(answer.error_code);
            stale |= self.on_partition_answer(
                &topic,
                partition,
                batch_id,
                error,
                answer.base_offset,
                answer.log_append_time_ms,
                answer.log_start_offset,
            );
        }
        self.after_answers(now);
        stale
    }

    #[allow(clippy::too_many_arguments)]
    fn on_partition_answer(
        &mut self,
        topic: &str,
        partition: i32,
        batch_id: u64,
        error: ErrorCode,
        base_offset: i64,
        log_append_time: i64,
        log_start_offset: i64,
    ) -> bool {
        let idempotent = self.idempotent;
        let transactional = self.transactional_id.is_some();
        let pid = self.producer_id;
        let Some(name) = self.topics.get(topic).map(|t| t.name.clone()) else {
            return false;
        };
        let Some(p) = partition_in(&mut self.topics, topic, partition) else {
            return false;
        };
        match error {
            ErrorCode::None | ErrorCode::DuplicateSequenceNumber => {
                // A duplicate means the broker already has the batch (a
                // retry of an ambiguous send): success, offsets unknown.
                let base = if error.is_ok() { base_offset } else { -1 };
                let acked = p.on_success(batch_id, base, log_append_time, &mut self.memory);
                self.deliver(&name, acked);
                false
            }
            ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId if idempotent => {
                // The broker does not have this batch (it would have
                // answered DUPLICATE_SEQUENCE_NUMBER): any doubt about an
                // earlier attempt is settled.
                p.resolve_doubt(batch_id);
                if !p.is_front(batch_id) {
                    // A consequence of an earlier batch's error: retry.
                    if let Some(f) = p.on_retriable(batch_id, error) {
                        self.fail(f);
                    }
                    return false;
                }
                let truncated = log_start_offset >= 0 && log_start_offset > p.last_acked_offset;
                if truncated || error == ErrorCode::UnknownProducerId && p.last_acked_offset < 0 {
                    // KIP-360: retention removed our state; bump the epoch
                    // and resend with sequences from 0.
                    tracing::info!(topic, partition, %error, log_start_offset, "producer state truncated; bumping epoch");
                    if let Some(f) = p.on_retriable(batch_id, error) {
                        self.fail(f);
                    }
                    if let ProducerId::Ready { id, epoch } = pid {
                        self.producer_id = ProducerId::BumpNeeded { id, epoch };
                    }
                } else if transactional {
                    // Fatal for a transactional producer: the transaction
                    // cannot be trusted (issue 7 adds the transaction
                    // state); fail and start over with a fresh id.
                    tracing::error!(topic, partition, %error, "broker lost acknowledged data");
                    let failed = p.on_fatal(batch_id, ProduceError::DataLoss(error));
                    self.fail(failed);
                    // The transaction manager bumps the epoch after the
                    // abort this failure forces (`crate::txn`).
                    if let ProducerId::Ready { id, epoch } = pid {
                        self.producer_id = ProducerId::BumpNeeded { id, epoch };
                    }
                } else {
                    // Without transactions, franz-go's rule: report the
                    // loss, reset the sequence with a new epoch, and keep
                    // producing; the records behind it are still retried.
                    tracing::error!(topic, partition, %error, "broker lost acknowledged data; resetting sequences");
                    if let Some(f) = p.on_retriable(batch_id, error) {
                        self.fail(f);
                    }
                    self.events.push_back(Event::DataLossDetected {
                        topic: name.clone(),
                        partition,
                    });
                    if let ProducerId::Ready { id, epoch } = pid {
                        self.producer_id = ProducerId::BumpNeeded { id, epoch };
                    }
                }
                false
            }
            ErrorCode::RequestTimedOut | ErrorCode::NotEnoughReplicasAfterAppend => {
                // The broker may have appended the batch before the error
                // (it timed out waiting for replicas, or appended and then
                // lost them): the outcome is in doubt, exactly like a
                // connection lost after the write.
                if let Some(f) = p.on_ambiguous(batch_id) {
                    self.fail(f);
                }
                false
            }
            e if e.is_retriable() => {
                if let Some(f) = p.on_retriable(batch_id, e) {
                    self.fail(f);
                }
                e.invalidates_metadata()
            }
            e => {
                let failed = p.on_fatal(batch_id, ProduceError::Broker(e));
                self.fail(failed);
                e.invalidates_metadata()
            }
        }
    }

    /// A produce request got no answer: lost with its connection, or timed
    /// out. `written` says whether the broker may have seen it.
    pub fn on_lost(&mut self, now: Timestamp, inflight: ProduceInFlight, written: bool) {
        self.request_done(inflight.broker);
        for (topic, partition, batch_id) in inflight.batches {
            let failed = partition_in(&mut self.topics, &topic, partition).and_then(|p| {
                if written {
                    p.on_ambiguous(batch_id)
                } else {
                    p.on_retriable(batch_id, ErrorCode::NetworkException)
                }
            });
            if let Some(f) = failed {
                self.fail(f);
            }
        }
        self.after_answers(now);
    }

    /// A failed batch that may have been written broke its partition's
    /// sequence: everything waits for a new epoch.
    fn check_sequences(&mut self) {
        let mut broken = false;
        for tb in self.topics.values_mut() {
            for p in &mut tb.partitions {
                broken |= p.take_sequence_broken();
            }
        }
        if broken {
            if let ProducerId::Ready { id, epoch } = self.producer_id {
                tracing::info!("a failed batch may have been written; bumping the epoch");
                self.producer_id = ProducerId::BumpNeeded { id, epoch };
            }
        }
    }

    fn after_answers(&mut self, now: Timestamp) {
        for tb in self.topics.values_mut() {
            for p in &mut tb.partitions {
                if p.finish_rewind() {
                    let d = self.backoff.delay(p.retry_attempts + 1, &mut self.rng);
                    p.schedule_retry(now + d);
                }
            }
        }
        self.handle_timeout(now);
    }

    /// Expires what hit a limit, admits blocked records, completes
    /// flushes.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        // Records still waiting for their topic's metadata (no broker
        // reachable, say) time out like unsent batches: never sent, so
        // failing them is always safe.
        if let Some(d) = self.delivery_timeout {
            let mut expired = Vec::new();
            for tb in self.topics.values_mut() {
                while tb.waiting.front().is_some_and(|w| now >= w.since + d) {
                    if let Some(w) = tb.waiting.pop_front() {
                        expired.push(w.pending);
                    }
                }
            }
            if !expired.is_empty() {
                self.fail_records(expired, ProduceError::DeliveryTimeout);
            }
        }
        let mut failed = Vec::new();
        for tb in self.topics.values_mut() {
            for p in &mut tb.partitions {
                while let Some(f) = p.expire(now, self.record_retries, self.delivery_timeout) {
                    let empty = f.records.is_empty();
                    failed.push(f);
                    if empty {
                        break;
                    }
                }
            }
        }
        for f in failed {
            self.fail(f);
        }
        self.check_sequences();
        while let Some((_, record, _, _)) = self.blocked.front() {
            if !self.has_space(record.user_size()) {
                break;
            }
            let Some((id, record, wall_ms, urgent)) = self.blocked.pop_front() else {
                break;
            };
            self.events.push_back(Event::Buffered(id));
            self.admit(now, id, record, wall_ms, urgent);
        }
        self.check_flushes();
    }

    /// The next time something in the producer comes due: a lingering
    /// batch, a retry, a delivery timeout, a producer-id retry. Only future
    /// times count: what is due already waits for a connection, whose
    /// readiness or answer arrives as an input, and a deadline in the past
    /// would make the driver spin.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        let mut t: Option<Timestamp> = None;
        let mut min = |x: Timestamp| {
            if x > now {
                t = Some(t.map_or(x, |t: Timestamp| t.min(x)));
            }
        };
        if let Some(r) = self.producer_id_retry_at {
            min(r);
        }
        let flushing = self.flushing();
        let linger = self.linger();
        let stamped = self.stamp().is_some();
        let doubt_only = self.stamp().is_some_and(|s| s.1);
        for (name, tb) in &self.topics {
            if let (Some(d), Some(w)) = (self.delivery_timeout, tb.waiting.front()) {
                min(w.since + d);
            }
            for p in &tb.partitions {
                if stamped
                    && Self::may_send(p, doubt_only)
                    && gate_allows(self.txn_gate.as_ref(), name, p.partition)
                {
                    if let Some(r) = p.ready_at(
                        now,
                        linger,
                        flushing,
                        self.manual_flushing,
                        self.max_in_flight,
                    ) {
                        min(r);
                    }
                }
                if let Some(r) = p.retry_at {
                    min(r);
                }
                if let Some(e) = p.expiry_at(self.delivery_timeout) {
                    min(e);
                }
            }
        }
        t
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether anything is buffered, waiting or in flight.
    pub fn is_idle(&self) -> bool {
        self.outstanding.is_empty()
    }

    /// Fails everything (the client is closing without flushing).
    pub fn fail_all(&mut self, error: ProduceError) {
        let blocked: Vec<_> = self.blocked.drain(..).collect();
        for (id, record, _, _) in blocked {
            self.outstanding.remove(id.0);
            self.events.push_back(Event::ProduceFailed {
                id,
                record: Box::new(record),
                error: error.clone(),
            });
        }
        let mut all = Vec::new();
        for tb in self.topics.values_mut() {
            all.extend(tb.waiting.drain(..).map(|w| w.pending));
            for p in &mut tb.partitions {
                all.extend(p.take_all());
            }
        }
        self.fail_records(all, error);
        self.check_flushes();
    }
}
