//! The transaction coordinator's request handlers: FindCoordinator for
//! transactional ids, InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn and EndTxn, plus TxnOffsetCommit at
//! the group coordinator, answered as Kafka's `TransactionCoordinator`
//! and `GroupCoordinator` answer them. Transactions v2 (KIP-890 part 2)
//! when [`TxnSettings::transaction_version`](super::TxnSettings::transaction_version)
//! is 2: a Produce v12 of a transactional batch adds its partition at the
//! leader ([`Cluster::check_txn_produce`], a direct call where Kafka's
//! leader sends AddPartitionsToTxn to the coordinator), TxnOffsetCommit
//! v5 adds its group, and EndTxn v5 bumps the epoch. The per-id state
//! machine is in [`transaction`](super::transaction).
//!
//! Where an id lives follows Kafka: `__transaction_state` (created on the
//! first FindCoordinator for a transactional id) has a fixed number of
//! partitions, the id belongs to partition
//! `abs(javaHashCode(id)) % partitions`, and the coordinator is that
//! partition's leader; its leader epoch is the coordinator epoch written
//! into markers. A leader move or crash moves the coordinator, and the old
//! one answers NOT_COORDINATOR.
//!
//! Simplifications, each the group coordinator's too: the transaction
//! state is the replicated state (kept in memory, never in the state
//! topic's log), so a coordinator move loses nothing; markers are written
//! straight into the partition logs (Kafka's `WriteTxnMarkers` to each
//! leader), after [`TxnSettings::marker_delay`](super::TxnSettings::marker_delay), and retried while a
//! partition has no leader. The partition side (open transactions, the
//! last stable offset, the aborted index) is derived from the logs, so it
//! survives restarts and leader moves as the logs do.

use std::time::Duration;

use sansa_core::protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use sansa_core::protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use sansa_core::protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use sansa_core::protocol::{ApiKey, ErrorCode};
use sansa_core::record::{Batch, BatchStamp, ControlRecord, ProducerStamp};
use sansa_core::Timestamp;

use super::coordinator::offsets_partition_for;
use super::group::CommittedOffset;
use super::transaction::{Transaction, TxnState, TRANSACTION_STATE_TOPIC};
use super::Sabotage;
use super::{Cluster, NodeId};

/// Whether a client at version `v` of an API that learnt PRODUCER_FENCED
/// at `since` gets it, or INVALID_PRODUCER_EPOCH (Kafka's down-conversion
/// for old clients).
fn fenced_error(code: ErrorCode, v: i16, since: i16) -> ErrorCode {
    if code == ErrorCode::ProducerFenced && v < since {
        ErrorCode::InvalidProducerEpoch
    } else {
        code
    }
}

impl Cluster {
    // ------------------------------------------------------------------
    // Where transactional ids live
    // ------------------------------------------------------------------

    /// Creates `__transaction_state` if it is missing (replication factor
    /// up to 3); returns whether it exists now.
    pub fn ensure_transaction_topic(&mut self) -> bool {
        if self.topics.contains_key(TRANSACTION_STATE_TOPIC) {
            return true;
        }
        let rf = self.brokers.len().min(3) as i16;
        let parts = self.config.transactions.state_partitions.max(1);
        self.create_topic(TRANSACTION_STATE_TOPIC, parts, rf)
            .is_ok()
    }

    /// The `__transaction_state` partition of `id`, and its leader and
    /// leader epoch (the coordinator and its epoch), if it exists.
    fn txn_partition(&self, id: &str) -> Option<(Option<NodeId>, i32)> {
        let t = self.topics.get(TRANSACTION_STATE_TOPIC)?;
        let p = t.partition(offsets_partition_for(id, t.partitions.len() as i32))?;
        Some((p.leader, p.leader_epoch))
    }

    /// The broker coordinating transactional id `id` now.
    pub fn transaction_coordinator_of(&self, id: &str) -> Option<NodeId> {
        self.txn_partition(id).and_then(|(leader, _)| leader)
    }

    /// A transactional id's state, if the cluster knows it.
    pub fn transaction(&self, id: &str) -> Option<&Transaction> {
        self.transactions.get(id)
    }

    fn check_txn_coordinator(&self, node: NodeId, id: &str) -> Result<(), ErrorCode> {
        if id.is_empty() {
            Err(ErrorCode::InvalidRequest)
        } else if self.transaction_coordinator_of(id) != Some(node) {
            Err(ErrorCode::NotCoordinator)
        } else {
            Ok(())
        }
    }

    /// The transaction of a producer id, if one is transactional.
    fn transaction_of_producer(&self, producer_id: i64) -> Option<&Transaction> {
        self.transactions
            .values()
            .find(|t| t.producer_id == producer_id)
    }

    /// The coordinator and producer checks every request about an
    /// existing transaction starts with.
    fn known_txn(
        &mut self,
        node: NodeId,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&mut Transaction, ErrorCode> {
        self.check_txn_coordinator(node, id)?;
        let t = self
            .transactions
            .get_mut(id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        t.check_producer(producer_id, epoch)?;
        Ok(t)
    }

    // ------------------------------------------------------------------
    // InitProducerId
    // ------------------------------------------------------------------

    pub(super) fn init_producer_id(
        &mut self,
        now: Timestamp,
        node: NodeId,
        v: i16,
        req: InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        let Some(id) = req.transactional_id.as_deref() else {
            // Kafka gives an idempotent producer without a transactional
            // id a fresh id at epoch 0 every time, even when it names its
            // current id and epoch (KIP-360 bumps are only kept for
            // transactional ids).
            let pid = self.next_producer_id;
            self.next_producer_id += 1;
            return InitProducerIdResponse {
                producer_id: pid,
                producer_epoch: 0,
                ..Default::default()
            };
        };
        let expected =
            (v >= 3 && req.producer_id >= 0).then_some((req.producer_id, req.producer_epoch));
        let verdict = match self.take_txn_error(ApiKey::InitProducerId) {
            Some(e) => Err(e),
            None => self.init_transactional(now, node, id, req.transaction_timeout_ms, expected),
        };
        match verdict {
            Ok((producer_id, producer_epoch)) => InitProducerIdResponse {
                producer_id,
                producer_epoch,
                ..Default::default()
            },
            Err(e) => InitProducerIdResponse {
                error_code: fenced_error(e, v, 4).code(),
                producer_id: -1,
                producer_epoch: -1,
                ..Default::default()
            },
        }
    }

    fn init_transactional(
        &mut self,
        now: Timestamp,
        node: NodeId,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ErrorCode> {
        self.check_txn_coordinator(node, id)?;
        let timeout = u64::try_from(timeout_ms)
            .ok()
            .map(Duration::from_millis)
            .filter(|d| !d.is_zero() && *d <= self.config.transactions.max_timeout)
            .ok_or(ErrorCode::InvalidTransactionTimeout)?;
        let Some(t) = self.transactions.get_mut(id) else {
            if self.transactions.len() >= self.config.transactions.max_transactional_ids {
                return Err(ErrorCode::CoordinatorNotAvailable);
            }
            let pid = self.next_producer_id;
            self.next_producer_id += 1;
            self.transactions
                .insert(id.to_owned(), Transaction::new(id, pid, timeout));
            return Ok((pid, 0));
        };
        let result = t.init(now, expected, timeout, &mut self.next_producer_id);
        if t.state == TxnState::PrepareAbort {
            self.write_markers(now, id);
        }
        result
    }

    // ------------------------------------------------------------------
    // AddPartitionsToTxn, AddOffsetsToTxn
    // ------------------------------------------------------------------

    pub(super) fn add_partitions_to_txn(
        &mut self,
        now: Timestamp,
        node: NodeId,
        v: i16,
        req: AddPartitionsToTxnRequest,
    ) -> AddPartitionsToTxnResponse {
        // v4+ (batched, broker to broker) is not served.
        let id = req.v3_and_below_transactional_id;
        let wanted: Vec<(String, Vec<i32>)> = req
            .v3_and_below_topics
            .into_iter()
            .map(|t| (t.name, t.partitions))
            .collect();
        // Kafka's KafkaApis: partitions it does not know fail with
        // UNKNOWN_TOPIC_OR_PARTITION and the others are not attempted.
        let unknown = |c: &Cluster, t: &str, p: i32| {
            c.partition(t, p).is_none() || t == TRANSACTION_STATE_TOPIC || t == super::OFFSETS_TOPIC
        };
        let any_unknown = wanted
            .iter()
            .any(|(t, ps)| ps.iter().any(|&p| unknown(self, t, p)));
        let verdict = if let Some(e) = self.take_txn_error(ApiKey::AddPartitionsToTxn) {
            Err(e)
        } else if any_unknown {
            Err(ErrorCode::OperationNotAttempted)
        } else {
            self.known_txn(
                node,
                &id,
                req.v3_and_below_producer_id,
                req.v3_and_below_producer_epoch,
            )
            .and_then(|t| {
                t.check_can_add()?;
                let parts = wanted
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.clone(), p)));
                t.add(now, parts, None);
                Ok(())
            })
            .map_err(|e| fenced_error(e, v, 2))
        };
        let results = wanted
            .into_iter()
            .map(|(name, ps)| {
                let results_by_partition = ps
                    .into_iter()
                    .map(|p| {
                        let code = if unknown(self, &name, p) {
                            ErrorCode::UnknownTopicOrPartition
                        } else {
                            verdict.err().unwrap_or(ErrorCode::None)
                        };
                        AddPartitionsToTxnPartitionResult {
                            partition_index: p,
                            partition_error_code: code.code(),
                            ..Default::default()
                        }
                    })
                    .collect();
                AddPartitionsToTxnTopicResult {
                    name,
                    results_by_partition,
                    ..Default::default()
                }
            })
            .collect();
        AddPartitionsToTxnResponse {
            results_by_topic_v3_and_below: results,
            ..Default::default()
        }
    }

    pub(super) fn add_offsets_to_txn(
        &mut self,
        now: Timestamp,
        node: NodeId,
        v: i16,
        req: AddOffsetsToTxnRequest,
    ) -> AddOffsetsToTxnResponse {
        let verdict = if let Some(e) = self.take_txn_error(ApiKey::AddOffsetsToTxn) {
            Err(e)
        } else if req.group_id.is_empty() {
            Err(ErrorCode::InvalidGroupId)
        } else {
            self.known_txn(
                node,
                &req.transactional_id,
                req.producer_id,
                req.producer_epoch,
            )
            .and_then(|t| {
                t.check_can_add()?;
                t.add(now, [], Some(req.group_id.clone()));
                Ok(())
            })
        };
        AddOffsetsToTxnResponse {
            error_code: verdict.err().map_or(0, |e| fenced_error(e, v, 2).code()),
            ..Default::default()
        }
    }

    // ------------------------------------------------------------------
    // EndTxn, markers, timeouts
    // ------------------------------------------------------------------

    pub(super) fn end_txn(
        &mut self,
        now: Timestamp,
        node: NodeId,
        v: i16,
        req: EndTxnRequest,
    ) -> EndTxnResponse {
        let delay = self.config.transactions.marker_delay;
        if v >= 5 {
            return self.end_txn_v2(now, node, req);
        }
        let verdict = match self.take_txn_error(ApiKey::EndTxn) {
            Some(e) => Err(e),
            None => self
                .known_txn(
                    node,
                    &req.transactional_id,
                    req.producer_id,
                    req.producer_epoch,
                )
                .and_then(|t| t.end(now, req.committed, delay)),
        };
        if verdict == Ok(true) && delay.is_zero() {
            self.write_markers(now, &req.transactional_id);
        }
        EndTxnResponse {
            error_code: verdict.err().map_or(0, |e| fenced_error(e, v, 2).code()),
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        }
    }

    /// EndTxn v5 (transactions v2): see [`Transaction::end_v2`]. Answers
    /// carry the producer id and epoch to go on with, `-1` on errors.
    fn end_txn_v2(&mut self, now: Timestamp, node: NodeId, req: EndTxnRequest) -> EndTxnResponse {
        let delay = self.config.transactions.marker_delay;
        let id = req.transactional_id.as_str();
        let verdict = match self.take_txn_error(ApiKey::EndTxn) {
            Some(e) => Err(e),
            None => self.check_txn_coordinator(node, id).and_then(|()| {
                let next = &mut self.next_producer_id;
                let t = self
                    .transactions
                    .get_mut(id)
                    .ok_or(ErrorCode::InvalidProducerIdMapping)?;
                t.end_v2(
                    now,
                    req.producer_id,
                    req.producer_epoch,
                    req.committed,
                    delay,
                    next,
                )
            }),
        };
        if verdict.is_ok_and(|(_, write)| write) && delay.is_zero() {
            self.write_markers(now, id);
        }
        match verdict {
            Ok(((producer_id, producer_epoch), _)) => EndTxnResponse {
                producer_id,
                producer_epoch,
                ..Default::default()
            },
            Err(e) => EndTxnResponse {
                error_code: e.code(),
                producer_id: -1,
                producer_epoch: -1,
                ..Default::default()
            },
        }
    }

    /// Writes the markers of a preparing transaction to every partition
    /// that has a leader; once all are written, its groups' offsets are
    /// committed or dropped and the transaction completes. Partitions
    /// without a leader are retried later.
    fn write_markers(&mut self, now: Timestamp, id: &str) {
        let Some(t) = self.transactions.get(id) else {
            return;
        };
        if !t.state.is_preparing() {
            return;
        }
        let ((pid, epoch), commit) = (t.markers_as, t.commits());
        let pending: Vec<(String, i32)> = t.pending_markers.iter().cloned().collect();
        let coordinator_epoch = self.txn_partition(id).map_or(-1, |(_, e)| e);
        let sabotage = self.config.sabotage;
        let mut written = Vec::new();
        for (topic, partition) in pending {
            let done = match self.partition_mut(&topic, partition) {
                // A deleted topic needs no marker.
                None => true,
                Some(p) if p.leader.is_none() => false,
                Some(p) => {
                    let written = match sabotage {
                        Sabotage::AbortMarkerCommits => true,
                        Sabotage::CommitMarkerAborts => false,
                        _ => commit,
                    };
                    let marker = ControlRecord::end_txn(written, coordinator_epoch);
                    let stamp = BatchStamp {
                        producer: ProducerStamp {
                            producer_id: pid,
                            producer_epoch: epoch,
                            base_sequence: -1,
                        },
                        ..Default::default()
                    };
                    let ms = i64::try_from(now.since_origin().as_millis()).unwrap_or(i64::MAX);
                    match marker
                        .to_batch(ms, &stamp)
                        .ok()
                        .and_then(|b| Batch::parse(b.into_bytes()).ok())
                    {
                        Some(batch) => {
                            p.log.append(&batch, p.leader_epoch);
                            p.producers.mark(pid, epoch);
                            true
                        }
                        None => false,
                    }
                }
            };
            if done {
                written.push((topic, partition));
            }
        }
        let retry = self.config.transactions.marker_retry;
        let groups: Vec<String> = match self.transactions.get_mut(id) {
            Some(t) => {
                for w in &written {
                    t.pending_markers.remove(w);
                }
                if !t.pending_markers.is_empty() {
                    t.markers_due = Some(now.saturating_add(retry));
                    Vec::new()
                } else {
                    let groups = t.groups.iter().cloned().collect();
                    t.complete();
                    groups
                }
            }
            None => Vec::new(),
        };
        for g in &groups {
            if let Some(group) = self.groups.get_mut(g) {
                group.end_txn(pid, commit);
            }
            self.dispose_if_empty(g);
        }
        if !written.is_empty() {
            self.wake_parked(now);
        }
    }

    /// Transactions due by `now`: markers to write, and ongoing
    /// transactions older than their timeout, which the coordinator aborts
    /// with the epoch bumped (Kafka's `abortTimedOutTransactions`, which
    /// checks every `transaction.abort.timed.out.transaction.cleanup.interval.ms`;
    /// here the deadline is exact).
    pub(super) fn txn_timeout(&mut self, now: Timestamp) {
        let due: Vec<String> = self
            .transactions
            .values()
            .filter(|t| t.next_deadline().is_some_and(|d| d <= now))
            .map(|t| t.id.clone())
            .collect();
        for id in due {
            if let Some(t) = self.transactions.get_mut(&id) {
                if t.expires_at().is_some_and(|d| d <= now) {
                    tracing::debug!(transactional_id = %id, "transaction timed out; aborting");
                    t.fence_and_abort(now);
                }
            }
            if self
                .transactions
                .get(&id)
                .and_then(|t| t.markers_due)
                .is_some_and(|d| d <= now)
            {
                self.write_markers(now, &id);
            }
        }
    }

    /// The earliest transaction deadline.
    pub(super) fn txn_poll_timeout(&self) -> Option<Timestamp> {
        self.transactions
            .values()
            .filter_map(Transaction::next_deadline)
            .min()
    }

    // ------------------------------------------------------------------
    // The partition side
    // ------------------------------------------------------------------

    /// The check a transactional batch of `producer_id` at `epoch` for
    /// `topic`/`partition` meets before it is appended (Kafka's
    /// transaction verification, KIP-890 part 1): the producer's
    /// transaction must be ongoing and hold the partition. With
    /// `implicit_add` (Produce v12, transactions v2) a partition not in
    /// the transaction is added first, with AddPartitionsToTxn's checks,
    /// as Kafka's leader asks the coordinator to; a coordinator that is
    /// down or busy is NOT_ENOUGH_REPLICAS, which the producer retries
    /// (Kafka's mapping for verification errors old clients would not
    /// retry).
    pub(super) fn check_txn_produce(
        &mut self,
        now: Timestamp,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        implicit_add: bool,
    ) -> Result<(), ErrorCode> {
        if implicit_add {
            self.add_partition_for_produce(now, topic, partition, producer_id, epoch)?;
        }
        let t = self
            .transaction_of_producer(producer_id)
            .ok_or(ErrorCode::InvalidTxnState)?;
        if epoch < t.producer_epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if epoch != t.producer_epoch
            || t.state != TxnState::Ongoing
            || !t.partitions.contains(&(topic.to_owned(), partition))
        {
            return Err(ErrorCode::InvalidTxnState);
        }
        Ok(())
    }

    /// Transactions v2: the partition leader adds a partition to the
    /// producer's transaction on its first Produce v12.
    fn add_partition_for_produce(
        &mut self,
        now: Timestamp,
        topic: &str,
        partition: i32,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), ErrorCode> {
        if self.config.transactions.transaction_version < 2 {
            return Err(ErrorCode::UnsupportedVersion);
        }
        let Some(id) = self
            .transaction_of_producer(producer_id)
            .map(|t| t.id.clone())
        else {
            return Err(ErrorCode::InvalidTxnState);
        };
        let key = (topic.to_owned(), partition);
        let known = self
            .transactions
            .get(&id)
            .is_some_and(|t| t.state == TxnState::Ongoing && t.partitions.contains(&key));
        if known {
            return Ok(());
        }
        let coordinator_up = self
            .transaction_coordinator_of(&id)
            .is_some_and(|n| self.brokers.get(&n).is_some_and(|b| b.up));
        if !coordinator_up {
            return Err(ErrorCode::NotEnoughReplicas);
        }
        let t = self
            .transactions
            .get_mut(&id)
            .ok_or(ErrorCode::InvalidTxnState)?;
        if epoch < t.producer_epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        t.check_producer(producer_id, epoch)
            .map_err(|_| ErrorCode::InvalidTxnState)?;
        // The previous transaction's markers are still being written:
        // Kafka's leader turns the coordinator's CONCURRENT_TRANSACTIONS
        // into NOT_ENOUGH_REPLICAS, which every producer retries.
        t.check_can_add()
            .map_err(|_| ErrorCode::NotEnoughReplicas)?;
        t.add(now, [key], None);
        Ok(())
    }

    // ------------------------------------------------------------------
    // TxnOffsetCommit (at the group coordinator)
    // ------------------------------------------------------------------

    pub(super) fn txn_offset_commit(
        &mut self,
        now: Timestamp,
        node: NodeId,
        v: i16,
        req: TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        let (generation, member_id, instance_id) = if v >= 3 {
            (
                req.generation_id,
                req.member_id.clone(),
                req.group_instance_id.clone(),
            )
        } else {
            (-1, String::new(), None)
        };
        let injected = self.take_txn_error(ApiKey::TxnOffsetCommit);
        let verdict = self.check_coordinator(node, &req.group_id).and_then(|()| {
            if let Some(e) = injected {
                return Err(e);
            }
            if v >= 5 {
                // Transactions v2: the group coordinator adds the group
                // (Kafka's AddOffsetsToTxn on the client's behalf).
                let t = self
                    .transactions
                    .get_mut(&req.transactional_id)
                    .filter(|t| t.producer_id == req.producer_id)
                    .ok_or(ErrorCode::InvalidProducerIdMapping)?;
                if req.producer_epoch < t.producer_epoch {
                    return Err(ErrorCode::InvalidProducerEpoch);
                }
                if req.producer_epoch == t.producer_epoch && !t.state.is_preparing() {
                    t.add(now, [], Some(req.group_id.clone()));
                } else if t.state.is_preparing() {
                    return Err(ErrorCode::ConcurrentTransactions);
                }
            }
            let t = self
                .transactions
                .get(&req.transactional_id)
                .filter(|t| t.producer_id == req.producer_id)
                .ok_or(ErrorCode::InvalidProducerIdMapping)?;
            if req.producer_epoch < t.producer_epoch {
                return Err(ErrorCode::InvalidProducerEpoch);
            }
            if req.producer_epoch != t.producer_epoch
                || t.state != TxnState::Ongoing
                || !t.groups.contains(&req.group_id)
            {
                return Err(ErrorCode::InvalidTxnState);
            }
            // Kafka's `handleTxnCommitOffsets` creates a missing group
            // (empty, generation 0) and validates against that.
            let fresh;
            let g = match self.groups.get(&req.group_id) {
                Some(g) => g,
                None => {
                    fresh = super::group::Group::new(&req.group_id, Some(node));
                    &fresh
                }
            };
            g.check_txn_commit(generation, &member_id, instance_id.as_deref())
        });
        let verdict = verdict.and_then(|()| self.create_group(&req.group_id, node).map(|_| ()));
        let max_metadata = self.config.groups.max_metadata_bytes;
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let code = match verdict {
                    Err(e) => e,
                    Ok(()) if self.partition(&t.name, p.partition_index).is_none() => {
                        ErrorCode::UnknownTopicOrPartition
                    }
                    Ok(())
                        if p.committed_metadata
                            .as_ref()
                            .is_some_and(|m| m.len() > max_metadata) =>
                    {
                        ErrorCode::OffsetMetadataTooLarge
                    }
                    Ok(()) => {
                        if let Some(g) = self.groups.get_mut(&req.group_id) {
                            g.store_txn_offset(
                                req.producer_id,
                                &t.name,
                                p.partition_index,
                                CommittedOffset {
                                    offset: p.committed_offset,
                                    leader_epoch: if v >= 2 {
                                        p.committed_leader_epoch
                                    } else {
                                        -1
                                    },
                                    metadata: p.committed_metadata,
                                },
                            );
                        }
                        ErrorCode::None
                    }
                };
                parts.push(TxnOffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code: code.code(),
                    ..Default::default()
                });
            }
            topics.push(TxnOffsetCommitResponseTopic {
                name: t.name,
                partitions: parts,
                ..Default::default()
            });
        }
        self.dispose_if_empty(&req.group_id);
        TxnOffsetCommitResponse {
            topics,
            ..Default::default()
        }
    }
}
