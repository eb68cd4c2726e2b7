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

mod answers;
mod requests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::wire::Lane;
use super::{GroupMetadata, TransactionOutcome, TxnEnd, TxnError};
use crate::cluster::Backoff;
use crate::group::member::Coordinator;
use crate::group::{EpochOffset, TopicPartition};
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
    /// The abort was answered UNKNOWN_PRODUCER_ID or
    /// INVALID_PRODUCER_ID_MAPPING: the end completes once the producer
    /// re-initialized (KIP-360), or fails if the re-init is fenced.
    recovering: bool,
    /// A group-transact session's commit waits for the member's heartbeat
    /// (`Some(false)`) before EndTxn; `Some(true)` once it passed.
    group_check: Option<bool>,
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
    /// The transaction coordinator speaks the versions transactions v2
    /// needs: Produce v12, TxnOffsetCommit v5, EndTxn v5.
    v2_versions: bool,
    /// The producer speaks transactions v2 (see [`Self::uses_transactions_v2`]).
    v2: bool,
    /// A group-transact session runs on this manager: a TxnOffsetCommit
    /// that may not have committed (coordinator moved or busy, connection
    /// lost) makes the transaction abortable instead of being retried.
    abort_on_offset_doubt: bool,
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
            v2_versions: false,
            v2: false,
            abort_on_offset_doubt: false,
            events: VecDeque::new(),
        }
    }

    /// Makes every doubtful TxnOffsetCommit answer (NOT_COORDINATOR,
    /// COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS,
    /// CONCURRENT_TRANSACTIONS, a timeout or a lost connection) abortable
    /// rather than retried: a group-transact session aborts whenever it
    /// maybe should (franz-go's `GroupTransactSession` treats the same
    /// errors so), and reprocessing is cheaper than a doubtful commit.
    pub fn abort_on_offset_doubt(&mut self, on: bool) {
        self.abort_on_offset_doubt = on;
    }

    /// The abortable error of the open transaction, if it hit one.
    pub fn abortable_error(&self) -> Option<&TxnError> {
        self.abortable.as_ref()
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
    /// Produce v12+, the epoch bumped by every EndTxn v5) need 2 or more.
    pub fn note_transaction_version(&mut self, level: Option<i16>) {
        if self.transaction_version != level {
            tracing::debug!(?level, "transaction coordinator's transaction.version");
            self.transaction_version = level;
        }
    }

    /// Whether the transaction coordinator speaks Produce v12,
    /// TxnOffsetCommit v5 and EndTxn v5, as the client reports it from
    /// the coordinator's ApiVersions answer.
    pub fn note_v2_versions(&mut self, speaks: bool) {
        self.v2_versions = speaks;
    }

    /// Whether the transaction coordinator offers transactions v2: its
    /// finalized `transaction.version` is 2 or more and it speaks the
    /// versions v2 needs.
    pub fn transactions_v2_available(&self) -> bool {
        self.v2_versions && self.transaction_version.is_some_and(|v| v >= 2)
    }

    /// Whether the producer speaks transactions v2 (KIP-890 part 2) in the
    /// open or next transaction: no AddPartitionsToTxn or AddOffsetsToTxn
    /// (Produce v12 and TxnOffsetCommit v5 add the partition or group),
    /// EndTxn v5 bumps the epoch at every end and the producer goes on
    /// under the id and epoch it returns.
    ///
    /// Decided when no transaction is under way at the coordinator: when a
    /// transaction begins and when InitProducerId answers, from what the
    /// coordinator offered last; never in the middle of a transaction
    /// (the coordinator keeps a transaction's version to its end). Once on
    /// it stays on while the producer lives: Kafka's finalized features
    /// only go up, and a producer that went back to v1 would reuse an
    /// epoch v2 had already ended transactions with.
    pub fn uses_transactions_v2(&self) -> bool {
        self.v2
    }

    /// Takes up transactions v2 if the coordinator offers it; only called
    /// when the coordinator has nothing of an open transaction.
    fn decide_version(&mut self) {
        if !self.v2 && self.transactions_v2_available() && !self.coordinator_involved {
            tracing::info!("using transactions v2 (KIP-890)");
            self.v2 = true;
            // Partitions touched before the producer id came were waiting
            // for an AddPartitionsToTxn that none of them needs now.
            let waiting: Vec<(String, i32)> =
                std::mem::take(&mut self.to_add).into_iter().collect();
            self.note_partitions(waiting.iter().map(|(t, p)| (t.as_str(), *p)));
        }
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
        self.decide_version();
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
            if self.added.contains(&key) {
                continue;
            }
            if self.v2 {
                // KIP-890 part 2: the partition's first Produce v12 adds
                // it to the transaction, so its batches go at once. The
                // coordinator may know of the transaction from then on.
                self.coordinator_involved = true;
                self.added.insert(key.clone());
                self.newly_added.push(key);
            } else {
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
    /// AddOffsetsToTxn, then TxnOffsetCommit to the group coordinator
    /// (with transactions v2, TxnOffsetCommit v5 alone: the group
    /// coordinator adds the group to the transaction).
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
            group_check: None,
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

    /// The commit now ending must wait, before its EndTxn, for
    /// [`TxnManager::group_check_passed`] (a group-transact session's
    /// heartbeat); a check that fails makes it abortable instead.
    pub fn require_group_check(&mut self) {
        if let Some(e) = &mut self.ending {
            if e.commit {
                e.group_check = Some(false);
            }
        }
    }

    /// Whether the commit is ready for its EndTxn but for the group
    /// check: the time to heartbeat is after the offsets went in.
    pub fn wants_group_check(&self) -> bool {
        self.end_ready()
            && self
                .ending
                .as_ref()
                .is_some_and(|e| e.commit && e.group_check == Some(false))
    }

    /// The group check passed: the commit's EndTxn may go.
    pub fn group_check_passed(&mut self) {
        if let Some(e) = &mut self.ending {
            if e.group_check.is_some() {
                e.group_check = Some(true);
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

    /// Whether the transaction is ending with an abort (asked for, or a
    /// commit turned into one).
    pub fn is_aborting(&self) -> bool {
        self.ending.as_ref().is_some_and(|e| !e.commit)
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
            self.finish_end(now, commit, None);
        }
    }

    /// Ends the transaction; `bumped` is the producer id and epoch an
    /// EndTxn v5 returned (transactions v2), under which the producer goes
    /// on with its sequences restarted.
    fn finish_end(&mut self, _now: Timestamp, committed: bool, bumped: Option<(i64, i16)>) {
        let Some(e) = self.ending.take() else {
            return;
        };
        tracing::debug!(id = e.id, committed, ?bumped, "transaction ended");
        self.phase = Phase::Idle;
        self.abortable = None;
        self.added.clear();
        self.to_add.clear();
        self.offsets.clear();
        self.coordinator_involved = false;
        if let Some((id, epoch)) = bumped {
            // The end bumped the epoch: a broken sequence needs no
            // InitProducerId of its own (KIP-890 part 2).
            self.bump_after_end = false;
            self.pid = Pid::Ready { id, epoch };
            self.new_producer_id = Some((id, epoch));
        }
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
