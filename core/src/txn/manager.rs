//! The transaction manager's state machine: one request at a time to the
//! transaction coordinator (or, for TxnOffsetCommit, the group
//! coordinator), in the order Kafka's coordinator needs them: the
//! producer id, then partitions and offsets as the transaction touches
//! them, then EndTxn once the producer has settled.
//!
//! One request at a time, as Kafka's Java producer does: every request
//! depends on the one before (a partition is added under the epoch the
//! InitProducerId answered; EndTxn must follow every add), and the
//! coordinator answers CONCURRENT_TRANSACTIONS to overlapping ones anyway.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::wire::{Lane, KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION, MAX_VERSIONS};
use super::{GroupMetadata, TransactionOutcome, TxnEnd, TxnError};
use super::{TxnInFlight, TxnOut, TxnRequest, TxnResponse, TxnTarget};
use crate::cluster::{Backoff, NodeId};
use crate::group::member::Coordinator;
use crate::group::{EpochOffset, TopicPartition};
use crate::protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use crate::protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use crate::protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, EndTxnRequest,
    FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use crate::protocol::{ApiKey, ErrorCode};
use crate::rng::SeededRng;
use crate::time::Timestamp;

/// Where a transactional producer stands, as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction is open.
    Ready,
    /// A transaction is open and takes records and offsets.
    InTransaction,
    /// A transaction is open but hit an abortable error: only
    /// `end_transaction(Abort)` is allowed.
    MustAbort,
    /// `end_transaction` was called; its outcome is pending.
    Ending,
    /// A fatal error closed the transactional producer.
    Failed,
}

/// What the manager tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnEvent {
    /// A transaction ended.
    Ended(TransactionOutcome),
    /// An error: abortable (the transaction must be aborted) or fatal.
    Error(TxnError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pid {
    /// InitProducerId is needed; with the current id and epoch when
    /// bumping (KIP-360).
    Wanted {
        bump: Option<(i64, i16)>,
    },
    Ready {
        id: i64,
        epoch: i16,
    },
}

#[derive(Debug)]
struct Ending {
    id: u64,
    commit: bool,
    /// Why a commit became an abort, or why the end failed.
    cause: Option<TxnError>,
    /// The producer has nothing of this transaction outstanding.
    settled: bool,
    /// An EndTxn commit went out: from here the coordinator may commit.
    commit_sent: bool,
    /// The abort was answered INVALID_PRODUCER_EPOCH (KIP-588): the end
    /// completes once the producer re-initialized.
    recovering: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Open,
    Ending,
}

#[derive(Debug)]
struct OffsetsJob {
    group: GroupMetadata,
    offsets: BTreeMap<TopicPartition, EpochOffset>,
    /// AddOffsetsToTxn succeeded: TxnOffsetCommit is next.
    added: bool,
}

/// The transaction manager; see the [module docs](super).
#[derive(Debug)]
pub struct TxnManager {
    transactional_id: String,
    timeout_ms: i32,
    backoff: Backoff,
    rng: SeededRng,
    coordinator: Option<Coordinator>,
    group_coordinator: Option<(String, Coordinator)>,
    pid: Pid,
    /// `begin` was called once: the producer id is fetched from then on.
    started: bool,
    phase: Phase,
    ending: Option<Ending>,
    abortable: Option<TxnError>,
    fatal: Option<TxnError>,
    in_flight: bool,
    retry_at: Option<Timestamp>,
    failures: u32,
    /// Partitions the coordinator added to the open transaction.
    added: BTreeSet<(String, i32)>,
    /// Partitions touched and not yet added (coalesced into one request).
    to_add: BTreeSet<(String, i32)>,
    /// Added since the client last asked ([`Self::take_added`]).
    newly_added: Vec<(String, i32)>,
    /// The coordinator has, or may have, something of the open
    /// transaction: ending it needs EndTxn.
    coordinator_involved: bool,
    /// After the end, bump the epoch (the producer's sequence broke).
    bump_after_end: bool,
    offsets: VecDeque<OffsetsJob>,
    next_end_id: u64,
    /// A producer id the client has not handed to the producer yet.
    new_producer_id: Option<(i64, i16)>,
    /// A commit became an abort: the client fails what is still buffered.
    fail_unsent: bool,
    /// The transaction coordinator's finalized `transaction.version`, once
    /// seen (KIP-890: 2 or more offers transactions v2).
    transaction_version: Option<i16>,
    events: VecDeque<TxnEvent>,
}

impl TxnManager {
    /// A manager for `transactional_id` asking for `timeout` transaction
    /// timeouts (clamped to what InitProducerId can carry).
    pub fn new(transactional_id: String, timeout: Duration, backoff: Backoff, seed: u64) -> Self {
        TxnManager {
            transactional_id,
            timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
            backoff,
            rng: SeededRng::new(seed),
            coordinator: None,
            group_coordinator: None,
            pid: Pid::Wanted { bump: None },
            started: false,
            phase: Phase::Idle,
            ending: None,
            abortable: None,
            fatal: None,
            in_flight: false,
            retry_at: None,
            failures: 0,
            added: BTreeSet::new(),
            to_add: BTreeSet::new(),
            newly_added: Vec::new(),
            coordinator_involved: false,
            bump_after_end: false,
            offsets: VecDeque::new(),
            next_end_id: 0,
            new_producer_id: None,
            fail_unsent: false,
            transaction_version: None,
            events: VecDeque::new(),
        }
    }

    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Where the producer stands.
    pub fn state(&self) -> TxnState {
        if self.fatal.is_some() {
            TxnState::Failed
        } else if self.phase == Phase::Ending {
            TxnState::Ending
        } else if self.abortable.is_some() {
            TxnState::MustAbort
        } else if self.phase == Phase::Open {
            TxnState::InTransaction
        } else {
            TxnState::Ready
        }
    }

    /// The fatal error that closed the producer, if one did.
    pub fn fatal_error(&self) -> Option<&TxnError> {
        self.fatal.as_ref()
    }

    /// The producer id and epoch, once initialized.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        match self.pid {
            Pid::Ready { id, epoch } => Some((id, epoch)),
            Pid::Wanted { .. } => None,
        }
    }

    /// The coordinator's transaction includes this partition.
    pub fn is_added(&self, topic: &str, partition: i32) -> bool {
        self.added.contains(&(topic.to_owned(), partition))
    }

    /// The transaction coordinator's finalized `transaction.version`
    /// feature (from its ApiVersions answer), as the client reports it.
    /// Transactions v2 (KIP-890 part 2: partitions added implicitly by
    /// Produce v12+, the epoch bumped by every EndTxn v5) need 2 or more;
    /// this manager speaks v1, which every broker keeps accepting, and
    /// only records whether v2 is on offer.
    pub fn note_transaction_version(&mut self, level: Option<i16>) {
        if self.transaction_version != level {
            tracing::debug!(?level, "transaction coordinator's transaction.version");
            self.transaction_version = level;
        }
    }

    /// Whether the transaction coordinator offers transactions v2.
    pub fn transactions_v2_available(&self) -> bool {
        self.transaction_version.is_some_and(|v| v >= 2)
    }

    fn closed_error(&self) -> Option<TxnError> {
        self.fatal.clone().map(|e| TxnError::Fatal(Box::new(e)))
    }

    // ------------------------------------------------------------------
    // Commands
    // ------------------------------------------------------------------

    /// Opens a transaction. The first call also starts fetching the
    /// producer id (records wait for it).
    pub fn begin(&mut self, _now: Timestamp) -> Result<(), TxnError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        match self.phase {
            Phase::Open => return Err(TxnError::AlreadyInTransaction),
            Phase::Ending => return Err(TxnError::Ending),
            Phase::Idle => {}
        }
        self.started = true;
        self.phase = Phase::Open;
        self.abortable = None;
        self.added.clear();
        self.to_add.clear();
        self.coordinator_involved = false;
        Ok(())
    }

    /// Whether records may be produced now: a transaction is open and
    /// has not hit an error.
    pub fn accepts_records(&self) -> bool {
        self.fatal.is_none() && self.abortable.is_none() && self.phase == Phase::Open
    }

    /// Partitions the producer holds records for: those not yet in the
    /// transaction are added with the next AddPartitionsToTxn.
    pub fn note_partitions<'a>(&mut self, partitions: impl IntoIterator<Item = (&'a str, i32)>) {
        if self.fatal.is_some() || self.abortable.is_some() {
            return;
        }
        let open = self.phase == Phase::Open
            || self
                .ending
                .as_ref()
                .is_some_and(|e| e.commit && e.cause.is_none());
        if !open {
            return;
        }
        for (t, p) in partitions {
            let key = (t.to_owned(), p);
            if !self.added.contains(&key) {
                self.to_add.insert(key);
            }
        }
    }

    /// Partitions added since the last call: the producer may send their
    /// batches now.
    pub fn take_added(&mut self) -> Vec<(String, i32)> {
        std::mem::take(&mut self.newly_added)
    }

    /// Whether the records still buffered must be failed (a commit turned
    /// into an abort), clearing the flag.
    pub fn take_fail_unsent(&mut self) -> bool {
        std::mem::take(&mut self.fail_unsent)
    }

    /// A producer id and epoch the producer must use from now on.
    pub fn take_new_producer_id(&mut self) -> Option<(i64, i16)> {
        self.new_producer_id.take()
    }

    /// Queues committing `offsets` for `group` in the open transaction:
    /// AddOffsetsToTxn, then TxnOffsetCommit to the group coordinator.
    pub fn send_offsets(
        &mut self,
        offsets: BTreeMap<TopicPartition, EpochOffset>,
        group: GroupMetadata,
    ) -> Result<(), TxnError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        match self.phase {
            Phase::Idle => return Err(TxnError::NotInTransaction),
            Phase::Ending => return Err(TxnError::Ending),
            Phase::Open => {}
        }
        if let Some(cause) = &self.abortable {
            return Err(TxnError::MustAbort(Box::new(cause.clone())));
        }
        if offsets.is_empty() {
            return Ok(());
        }
        self.offsets.push_back(OffsetsJob {
            group,
            offsets,
            added: false,
        });
        Ok(())
    }

    /// Starts ending the open transaction; [`TxnEvent::Ended`] with the
    /// returned id follows. The client flushes (commit) or fails what is
    /// buffered (abort) and calls [`Self::on_producer_settled`] once
    /// nothing of the transaction is outstanding.
    pub fn end(&mut self, _now: Timestamp, how: TxnEnd) -> Result<u64, TxnError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        match self.phase {
            Phase::Idle => return Err(TxnError::NotInTransaction),
            Phase::Ending => return Err(TxnError::Ending),
            Phase::Open => {}
        }
        let commit = how == TxnEnd::Commit;
        if commit {
            if let Some(cause) = &self.abortable {
                return Err(TxnError::MustAbort(Box::new(cause.clone())));
            }
        } else {
            // Nothing more is added; what is buffered is failed.
            self.to_add.clear();
            self.offsets.retain(|j| j.added);
        }
        let id = self.next_end_id;
        self.next_end_id += 1;
        self.phase = Phase::Ending;
        self.ending = Some(Ending {
            id,
            commit,
            cause: None,
            settled: false,
            commit_sent: false,
            recovering: false,
        });
        Ok(id)
    }

    /// The transaction hit an abortable error (a record failed, the
    /// producer's sequence broke): only an abort may end it. A commit
    /// already asked for becomes an abort.
    pub fn set_abortable(&mut self, cause: TxnError) {
        if self.fatal.is_some() || self.phase == Phase::Idle {
            return;
        }
        if cause == TxnError::SequenceBroken {
            // Reported until the producer has the new epoch: once a bump
            // is decided, the report is about the same break.
            if self.bump_after_end || !matches!(self.pid, Pid::Ready { .. }) {
                return;
            }
            self.bump_after_end = true;
        }
        if let Some(e) = &mut self.ending {
            if e.commit && !e.commit_sent {
                tracing::warn!(error = %cause, "commit turned into an abort");
                e.commit = false;
                e.cause.get_or_insert(cause.clone());
                self.fail_unsent = true;
                self.to_add.clear();
                self.offsets.retain(|j| j.added);
            }
        }
        if self.abortable.is_none() {
            tracing::warn!(error = %cause, "transaction must be aborted");
            self.abortable = Some(cause.clone());
            if self.phase == Phase::Open {
                self.events.push_back(TxnEvent::Error(cause));
            }
        }
    }

    /// The producer has nothing of the ending transaction outstanding.
    pub fn on_producer_settled(&mut self, now: Timestamp) {
        let Some(e) = &mut self.ending else {
            return;
        };
        if e.settled {
            return;
        }
        e.settled = true;
        self.maybe_finish_locally(now);
    }

    /// Whether the ending transaction waits for the producer to settle.
    pub fn awaits_producer(&self) -> bool {
        self.ending.as_ref().is_some_and(|e| !e.settled)
    }

    /// An ending transaction the coordinator never heard of ends without
    /// EndTxn (Kafka answers INVALID_TXN_STATE to one).
    fn maybe_finish_locally(&mut self, now: Timestamp) {
        let Some(e) = &self.ending else {
            return;
        };
        let local = e.settled
            && !e.recovering
            && !self.coordinator_involved
            && !self.in_flight
            && (!e.commit || (self.to_add.is_empty() && self.offsets.is_empty()));
        if local {
            // A commit of nothing commits vacuously.
            let commit = e.commit;
            self.finish_end(now, commit);
        }
    }

    fn finish_end(&mut self, _now: Timestamp, committed: bool) {
        let Some(e) = self.ending.take() else {
            return;
        };
        tracing::debug!(id = e.id, committed, "transaction ended");
        self.phase = Phase::Idle;
        self.abortable = None;
        self.added.clear();
        self.to_add.clear();
        self.offsets.clear();
        self.coordinator_involved = false;
        if self.bump_after_end {
            self.bump_after_end = false;
            if let Pid::Ready { id, epoch } = self.pid {
                self.pid = Pid::Wanted {
                    bump: Some((id, epoch)),
                };
            }
        }
        self.events.push_back(TxnEvent::Ended(TransactionOutcome {
            id: e.id,
            committed,
            error: e.cause,
            commit_in_doubt: false,
        }));
    }

    /// The producer met an error no transaction survives: the
    /// transactional producer closes.
    pub fn fail(&mut self, error: TxnError) {
        self.fail_fatal(error);
    }

    fn fail_fatal(&mut self, error: TxnError) {
        if self.fatal.is_some() {
            return;
        }
        tracing::error!(%error, "transactional producer failed");
        self.fatal = Some(error.clone());
        self.to_add.clear();
        self.offsets.clear();
        if let Some(e) = self.ending.take() {
            self.events.push_back(TxnEvent::Ended(TransactionOutcome {
                id: e.id,
                committed: false,
                error: Some(error.clone()),
                commit_in_doubt: e.commit_sent,
            }));
        }
        self.events.push_back(TxnEvent::Error(error));
    }

    fn make_abortable(&mut self, api: ApiKey, error: ErrorCode) {
        self.set_abortable(TxnError::Broker { api, error });
    }

    // ------------------------------------------------------------------
    // Requests
    // ------------------------------------------------------------------

    fn pid_wanted(&self) -> bool {
        self.started && matches!(self.pid, Pid::Wanted { .. })
    }

    fn end_due(&self) -> bool {
        self.ending.as_ref().is_some_and(|e| {
            e.settled
                && !e.recovering
                && self.coordinator_involved
                && (!e.commit || (self.to_add.is_empty() && self.offsets.is_empty()))
        })
    }

    /// The next step, if one is due now (and no request is out).
    fn next_lane(&self, now: Timestamp) -> Option<Lane> {
        if self.fatal.is_some() || self.in_flight || self.retry_at.is_some_and(|t| t > now) {
            return None;
        }
        let ending_recovery = self.ending.as_ref().is_some_and(|e| e.recovering);
        if self.pid_wanted() || ending_recovery {
            return Some(Lane::Init);
        }
        // Everything below needs the producer id.
        self.producer_id()?;
        if !self.to_add.is_empty() {
            return Some(Lane::AddPartitions(Vec::new()));
        }
        if let Some(job) = self.offsets.front() {
            return Some(if job.added {
                Lane::OffsetCommit
            } else {
                Lane::AddOffsets
            });
        }
        if self.end_due() {
            let commit = self.ending.as_ref().is_some_and(|e| e.commit);
            return Some(Lane::End { commit });
        }
        None
    }

    /// Where the next request goes, if one is due now.
    pub fn next_target(&self, now: Timestamp) -> Option<TxnTarget> {
        let lane = self.next_lane(now)?;
        if lane == Lane::OffsetCommit {
            let group = &self.offsets.front()?.group.group_id;
            return Some(match &self.group_coordinator {
                Some((g, c)) if g == group => TxnTarget::GroupCoordinator(c.clone()),
                _ => TxnTarget::AnyBroker,
            });
        }
        Some(match &self.coordinator {
            Some(c) => TxnTarget::TxnCoordinator(c.clone()),
            None => TxnTarget::AnyBroker,
        })
    }

    /// Builds the next request; `negotiate(api, cap)` gives the version
    /// the target broker speaks up to `cap`, `None` if it does not.
    pub fn build_request(
        &mut self,
        now: Timestamp,
        negotiate: &mut dyn FnMut(ApiKey, i16) -> Option<i16>,
    ) -> Option<TxnOut> {
        let lane = self.next_lane(now)?;
        let (lane, find_group) = match lane {
            Lane::OffsetCommit => {
                let group = &self.offsets.front()?.group.group_id;
                let known = self
                    .group_coordinator
                    .as_ref()
                    .is_some_and(|(g, _)| g == group);
                if known {
                    (Lane::OffsetCommit, None)
                } else {
                    (Lane::Find { group: true }, Some(group.clone()))
                }
            }
            _ if self.coordinator.is_none() => (Lane::Find { group: false }, None),
            other => (other, None),
        };
        let api = match lane {
            Lane::Find { .. } => ApiKey::FindCoordinator,
            Lane::Init => ApiKey::InitProducerId,
            Lane::AddPartitions(_) => ApiKey::AddPartitionsToTxn,
            Lane::AddOffsets => ApiKey::AddOffsetsToTxn,
            Lane::OffsetCommit => ApiKey::TxnOffsetCommit,
            Lane::End { .. } => ApiKey::EndTxn,
        };
        let cap = MAX_VERSIONS
            .iter()
            .find(|(k, _)| *k == api)
            .map_or(0, |&(_, v)| v);
        let Some(version) = negotiate(api, cap) else {
            self.fail_fatal(TxnError::Broker {
                api,
                error: ErrorCode::UnsupportedVersion,
            });
            return None;
        };
        let id = self.transactional_id.clone();
        let (pid, epoch) = self.producer_id().unwrap_or((-1, -1));
        let (request, lane) = match lane {
            Lane::Find { group } => {
                let (key, key_type) = match find_group {
                    Some(g) => (g, KEY_TYPE_GROUP),
                    None => (id, KEY_TYPE_TRANSACTION),
                };
                if version < 1 && key_type == KEY_TYPE_TRANSACTION {
                    // FindCoordinator v0 only knows groups.
                    self.fail_fatal(TxnError::Broker {
                        api,
                        error: ErrorCode::UnsupportedVersion,
                    });
                    return None;
                }
                let mut req = FindCoordinatorRequest {
                    key_type,
                    ..Default::default()
                };
                if version >= 4 {
                    req.coordinator_keys = vec![key];
                } else {
                    req.key = key;
                }
                (TxnRequest::FindCoordinator(req), Lane::Find { group })
            }
            Lane::Init => {
                let bump = match self.pid {
                    Pid::Wanted { bump } => bump,
                    // Recovering after an abort answered with a bumped
                    // epoch: name the current one (KIP-588).
                    Pid::Ready { id, epoch } => Some((id, epoch)),
                };
                if bump.is_some() && version < 3 {
                    // Without KIP-360 the only way on is a new producer,
                    // which would fence a live newer instance.
                    self.fail_fatal(TxnError::Broker {
                        api,
                        error: ErrorCode::UnsupportedVersion,
                    });
                    return None;
                }
                let req = InitProducerIdRequest {
                    transactional_id: Some(id),
                    transaction_timeout_ms: self.timeout_ms,
                    producer_id: bump.map_or(-1, |b| b.0),
                    producer_epoch: bump.map_or(-1, |b| b.1),
                    ..Default::default()
                };
                (TxnRequest::InitProducerId(req), Lane::Init)
            }
            Lane::AddPartitions(_) => {
                let asked: Vec<(String, i32)> = self.to_add.iter().cloned().collect();
                let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
                for (t, p) in &asked {
                    match topics.last_mut() {
                        Some(last) if last.name == *t => last.partitions.push(*p),
                        _ => topics.push(AddPartitionsToTxnTopic {
                            name: t.clone(),
                            partitions: vec![*p],
                            ..Default::default()
                        }),
                    }
                }
                let req = AddPartitionsToTxnRequest {
                    v3_and_below_transactional_id: id,
                    v3_and_below_producer_id: pid,
                    v3_and_below_producer_epoch: epoch,
                    v3_and_below_topics: topics,
                    ..Default::default()
                };
                (
                    TxnRequest::AddPartitionsToTxn(req),
                    Lane::AddPartitions(asked),
                )
            }
            Lane::AddOffsets => {
                let group_id = self.offsets.front()?.group.group_id.clone();
                let req = AddOffsetsToTxnRequest {
                    transactional_id: id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    group_id,
                    ..Default::default()
                };
                (TxnRequest::AddOffsetsToTxn(req), Lane::AddOffsets)
            }
            Lane::OffsetCommit => {
                let job = self.offsets.front()?;
                if job.group.instance_id.is_some() && version < 3 {
                    self.fail_fatal(TxnError::Broker {
                        api,
                        error: ErrorCode::UnsupportedVersion,
                    });
                    return None;
                }
                let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
                for ((t, p), at) in &job.offsets {
                    let part = TxnOffsetCommitRequestPartition {
                        partition_index: *p,
                        committed_offset: at.offset,
                        committed_leader_epoch: at.leader_epoch,
                        committed_metadata: Some(String::new()),
                        ..Default::default()
                    };
                    match topics.last_mut() {
                        Some(last) if last.name == *t => last.partitions.push(part),
                        _ => topics.push(TxnOffsetCommitRequestTopic {
                            name: t.clone(),
                            partitions: vec![part],
                            ..Default::default()
                        }),
                    }
                }
                let req = TxnOffsetCommitRequest {
                    transactional_id: id,
                    group_id: job.group.group_id.clone(),
                    producer_id: pid,
                    producer_epoch: epoch,
                    generation_id: job.group.generation_id,
                    member_id: job.group.member_id.clone(),
                    group_instance_id: job.group.instance_id.clone(),
                    topics,
                    ..Default::default()
                };
                (TxnRequest::TxnOffsetCommit(req), Lane::OffsetCommit)
            }
            Lane::End { commit } => {
                if let Some(e) = &mut self.ending {
                    e.commit_sent |= commit;
                }
                let req = EndTxnRequest {
                    transactional_id: id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    committed: commit,
                    ..Default::default()
                };
                (TxnRequest::EndTxn(req), Lane::End { commit })
            }
        };
        self.in_flight = true;
        Some(TxnOut {
            request,
            version,
            in_flight: TxnInFlight { lane },
        })
    }

    // ------------------------------------------------------------------
    // Answers
    // ------------------------------------------------------------------

    fn retry_later(&mut self, now: Timestamp) {
        self.failures = self.failures.saturating_add(1);
        let d = self.backoff.delay(self.failures, &mut self.rng);
        self.retry_at = Some(now + d);
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// The coordinator moved or is not ready: find it again, then retry.
    fn lost_coordinator(&mut self, now: Timestamp, group: bool) {
        if group {
            self.group_coordinator = None;
        } else {
            self.coordinator = None;
        }
        self.retry_later(now);
    }

    /// An answer, or `None` when its connection was lost.
    pub fn on_response(
        &mut self,
        now: Timestamp,
        in_flight: TxnInFlight,
        response: Option<TxnResponse>,
    ) {
        self.in_flight = false;
        let lane = in_flight.lane;
        let Some(response) = response else {
            // The request may have been handled: an add counts as done
            // for the end (EndTxn is sent; an abort of nothing is then
            // forgiven), and the step is retried against a fresh lookup.
            if matches!(lane, Lane::AddPartitions(_) | Lane::AddOffsets) {
                self.coordinator_involved = true;
            }
            let group = matches!(lane, Lane::OffsetCommit | Lane::Find { group: true });
            self.lost_coordinator(now, group);
            self.maybe_finish_locally(now);
            return;
        };
        match (lane, response) {
            (Lane::Find { group }, TxnResponse::FindCoordinator(r)) => {
                self.on_find(now, group, &r);
            }
            (Lane::Init, TxnResponse::InitProducerId(r)) => {
                let error = ErrorCode::from_code(r.error_code);
                self.on_init(now, error, r.producer_id, r.producer_epoch);
            }
            (Lane::AddPartitions(asked), TxnResponse::AddPartitionsToTxn(r)) => {
                self.on_add_partitions(now, &asked, &r);
            }
            (Lane::AddOffsets, TxnResponse::AddOffsetsToTxn(r)) => {
                self.on_add_offsets(now, ErrorCode::from_code(r.error_code));
            }
            (Lane::OffsetCommit, TxnResponse::TxnOffsetCommit(r)) => {
                self.on_offset_commit(now, &r);
            }
            (Lane::End { commit }, TxnResponse::EndTxn(r)) => {
                self.on_end(now, commit, ErrorCode::from_code(r.error_code));
            }
            (lane, r) => {
                tracing::error!(?lane, response = ?r, "transaction answer of the wrong kind");
                self.retry_later(now);
            }
        }
        self.maybe_finish_locally(now);
    }

    fn on_find(&mut self, now: Timestamp, group: bool, r: &FindCoordinatorResponse) {
        let key = if group {
            self.offsets.front().map(|j| j.group.group_id.clone())
        } else {
            Some(self.transactional_id.clone())
        };
        let Some(key) = key else {
            return; // the offsets were dropped by an abort meanwhile
        };
        // v4+ answers per key; earlier versions at the top level.
        let (code, node, host, port) = match r.coordinators.iter().find(|c| c.key == key) {
            Some(c) => (c.error_code, c.node_id, c.host.as_str(), c.port),
            None => (r.error_code, r.node_id, r.host.as_str(), r.port),
        };
        let error = ErrorCode::from_code(code);
        match (error, u16::try_from(port).ok()) {
            (ErrorCode::None, Some(port)) if node >= 0 && !host.is_empty() => {
                tracing::debug!(node, host, port, group, "coordinator found");
                let c = Coordinator {
                    node: NodeId(node),
                    host: host.to_owned(),
                    port,
                };
                if group {
                    self.group_coordinator = Some((key, c));
                } else {
                    self.coordinator = Some(c);
                }
                self.succeeded();
            }
            (ErrorCode::TransactionalIdAuthorizationFailed, _) => {
                self.fail_fatal(TxnError::Broker {
                    api: ApiKey::FindCoordinator,
                    error,
                });
            }
            (ErrorCode::GroupAuthorizationFailed, _) if group => {
                self.offsets.pop_front();
                self.make_abortable(ApiKey::FindCoordinator, error);
            }
            _ => self.retry_later(now),
        }
    }

    fn on_init(&mut self, now: Timestamp, error: ErrorCode, id: i64, epoch: i16) {
        match error {
            ErrorCode::None if id >= 0 && epoch >= 0 => {
                tracing::debug!(id, epoch, "transactional producer id");
                self.pid = Pid::Ready { id, epoch };
                self.new_producer_id = Some((id, epoch));
                self.succeeded();
                if self.ending.as_ref().is_some_and(|e| e.recovering) {
                    // The coordinator had aborted the transaction itself
                    // (KIP-588); the producer goes on under the new epoch.
                    if let Some(e) = &mut self.ending {
                        e.recovering = false;
                    }
                    self.finish_end(now, false);
                }
            }
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
                self.lost_coordinator(now, false);
            }
            ErrorCode::CoordinatorLoadInProgress | ErrorCode::ConcurrentTransactions => {
                self.retry_later(now);
            }
            ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch => {
                self.fail_fatal(TxnError::Fenced(error));
            }
            e if e.is_retriable() => self.retry_later(now),
            e => self.fail_fatal(TxnError::Broker {
                api: ApiKey::InitProducerId,
                error: e,
            }),
        }
    }

    /// Shared by AddPartitionsToTxn, AddOffsetsToTxn and EndTxn: `Some`
    /// when the error is not one this step handles itself.
    fn common_error(&mut self, now: Timestamp, api: ApiKey, error: ErrorCode) -> Option<ErrorCode> {
        match error {
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
                self.lost_coordinator(now, false);
                None
            }
            ErrorCode::CoordinatorLoadInProgress | ErrorCode::ConcurrentTransactions => {
                self.retry_later(now);
                None
            }
            ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch => {
                self.fail_fatal(TxnError::Fenced(error));
                None
            }
            ErrorCode::TransactionalIdAuthorizationFailed | ErrorCode::InvalidTxnState => {
                self.fail_fatal(TxnError::Broker { api, error });
                None
            }
            e => Some(e),
        }
    }

    fn on_add_partitions(
        &mut self,
        now: Timestamp,
        asked: &[(String, i32)],
        r: &AddPartitionsToTxnResponse,
    ) {
        let mut worst: Option<ErrorCode> = None;
        let mut done = Vec::new();
        for t in &r.results_by_topic_v3_and_below {
            for p in &t.results_by_partition {
                let key = (t.name.clone(), p.partition_index);
                if !asked.contains(&key) {
                    continue;
                }
                match ErrorCode::from_code(p.partition_error_code) {
                    ErrorCode::None => done.push(key),
                    // Not attempted because of another partition's error.
                    ErrorCode::OperationNotAttempted => {}
                    e => {
                        // The first real error decides for the request.
                        worst.get_or_insert(e);
                    }
                }
            }
        }
        if !done.is_empty() {
            self.coordinator_involved = true;
        }
        for key in done {
            self.to_add.remove(&key);
            self.added.insert(key.clone());
            self.newly_added.push(key);
        }
        let Some(error) = worst else {
            self.succeeded();
            return;
        };
        let api = ApiKey::AddPartitionsToTxn;
        let Some(error) = self.common_error(now, api, error) else {
            return;
        };
        match error {
            // The topic may be being created, or metadata is behind.
            ErrorCode::UnknownTopicOrPartition => self.retry_later(now),
            e if e.is_retriable() => self.retry_later(now),
            e => {
                self.to_add.clear();
                self.make_abortable(api, e);
            }
        }
    }

    fn on_add_offsets(&mut self, now: Timestamp, error: ErrorCode) {
        if error.is_ok() {
            self.coordinator_involved = true;
            if let Some(job) = self.offsets.front_mut() {
                job.added = true;
            }
            self.succeeded();
            return;
        }
        let api = ApiKey::AddOffsetsToTxn;
        let Some(error) = self.common_error(now, api, error) else {
            return;
        };
        if error.is_retriable() {
            self.retry_later(now);
        } else {
            self.offsets.pop_front();
            self.make_abortable(api, error);
        }
    }

    fn on_offset_commit(&mut self, now: Timestamp, r: &TxnOffsetCommitResponse) {
        let worst = r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| ErrorCode::from_code(p.error_code))
            .find(|e| !e.is_ok());
        let api = ApiKey::TxnOffsetCommit;
        match worst {
            None => {
                self.offsets.pop_front();
                self.succeeded();
            }
            Some(
                ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::RequestTimedOut,
            ) => self.lost_coordinator(now, true),
            Some(
                ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::ConcurrentTransactions,
            ) => self.retry_later(now),
            Some(
                e @ (ErrorCode::ProducerFenced
                | ErrorCode::InvalidProducerEpoch
                | ErrorCode::TransactionalIdAuthorizationFailed),
            ) => {
                if e == ErrorCode::TransactionalIdAuthorizationFailed {
                    self.fail_fatal(TxnError::Broker { api, error: e });
                } else {
                    self.fail_fatal(TxnError::Fenced(e));
                }
            }
            // The member is out of its generation (KIP-447), the group
            // is rebalancing, or the group is not authorized: these
            // offsets must not commit.
            Some(e) => {
                self.offsets.pop_front();
                self.make_abortable(api, e);
            }
        }
    }

    fn on_end(&mut self, now: Timestamp, commit: bool, error: ErrorCode) {
        if error.is_ok() {
            self.succeeded();
            self.finish_end(now, commit);
            return;
        }
        // KIP-588: an abort answered INVALID_PRODUCER_EPOCH means the
        // coordinator aborted the transaction itself (its timeout) and
        // bumped the epoch: re-initialize with the current id and epoch,
        // which the coordinator refuses with PRODUCER_FENCED if another
        // producer took over meanwhile.
        if !commit && error == ErrorCode::InvalidProducerEpoch {
            tracing::info!("abort answered INVALID_PRODUCER_EPOCH; re-initializing (KIP-588)");
            if let Some(e) = &mut self.ending {
                e.recovering = true;
            }
            self.succeeded();
            return;
        }
        let api = ApiKey::EndTxn;
        let Some(error) = self.common_error(now, api, error) else {
            return;
        };
        if error.is_retriable() {
            self.retry_later(now);
        } else {
            // The coordinator refused the end outright: only an abort may
            // follow (an abort refused this way is fatal).
            if commit {
                if let Some(e) = &mut self.ending {
                    e.commit = false;
                    e.cause = Some(TxnError::Broker { api, error });
                }
                self.fail_unsent = true;
                self.abortable
                    .get_or_insert(TxnError::Broker { api, error });
                self.retry_later(now);
            } else {
                self.fail_fatal(TxnError::Broker { api, error });
            }
        }
    }

    // ------------------------------------------------------------------
    // Outputs
    // ------------------------------------------------------------------

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        self.events.pop_front()
    }

    /// When the next retry is due, if one waits.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        self.retry_at.filter(|&t| t > now)
    }
}
