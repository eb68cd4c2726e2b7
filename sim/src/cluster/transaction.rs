//! One transactional id's state at the transaction coordinator, as
//! Kafka's `TransactionMetadata` keeps it (KIP-98, transactions v1), and
//! the transitions the coordinator's requests make.
//!
//! States: `Empty` (an id with no transaction yet), `Ongoing` (partitions
//! or a group were added), `PrepareCommit` / `PrepareAbort` (EndTxn, a
//! fence or a timeout decided; markers are being written), and
//! `CompleteCommit` / `CompleteAbort` (markers written). While a
//! transaction is being prepared, what would start or reset one gets
//! CONCURRENT_TRANSACTIONS, which clients retry.
//!
//! Epochs fence: InitProducerId bumps the epoch, so the previous producer
//! of the id is fenced (PRODUCER_FENCED, or INVALID_PRODUCER_EPOCH for
//! clients too old to know it). An ongoing transaction is aborted first,
//! with the epoch already bumped, so its markers fence the old producer at
//! every partition it wrote to. The same happens when a transaction
//! outlives its timeout. When the epoch would run out, the id gets a new
//! producer id (KIP-360 keeps the old one as `last_producer_id` so a
//! retried InitProducerId is recognised).
//!
//! Transactions v2 (KIP-890 part 2, served when
//! [`TxnSettings::transaction_version`] is 2): partitions and groups are
//! added by the partition leader and the group coordinator (Produce v12,
//! TxnOffsetCommit v5) rather than by the client, and EndTxn v5
//! ([`Transaction::end_v2`]) bumps the epoch at every end, so a late or
//! retried EndTxn carries an epoch one below the current one and is told
//! apart from the next transaction's (KAFKA-17754).

use std::collections::BTreeSet;
use std::time::Duration;

use sansa_core::protocol::ErrorCode;
use sansa_core::Timestamp;

/// Kafka's internal topic of transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// The transaction coordinator's settings.
#[derive(Debug, Clone)]
pub struct TxnSettings {
    /// Partitions of `__transaction_state`
    /// (`transaction.state.log.num.partitions`, default 50).
    pub state_partitions: i32,
    /// Largest transaction timeout a producer may ask for
    /// (`transaction.max.timeout.ms`, default 15 minutes).
    pub max_timeout: Duration,
    /// How long writing the markers of an ended transaction takes; Kafka
    /// does it asynchronously after answering EndTxn, and a non-zero
    /// delay opens the window in which clients meet
    /// CONCURRENT_TRANSACTIONS. Default zero: markers are written before
    /// EndTxn is answered.
    pub marker_delay: Duration,
    /// How soon markers are retried for a partition with no leader.
    pub marker_retry: Duration,
    /// Most transactional ids the cluster keeps; more get
    /// COORDINATOR_NOT_AVAILABLE (a bound against hostile clients).
    pub max_transactional_ids: usize,
    /// The finalized `transaction.version` feature (KIP-890). 2 serves
    /// transactions v2: ApiVersions advertises the feature (v3+) and
    /// Produce v12, TxnOffsetCommit v5 and EndTxn v5. Below 2 the brokers
    /// serve v1 only (Produce up to v11, TxnOffsetCommit v4, EndTxn v4)
    /// and advertise no feature, as before v2 was modelled. Default 1.
    pub transaction_version: i16,
}

impl Default for TxnSettings {
    fn default() -> Self {
        TxnSettings {
            state_partitions: 50,
            max_timeout: Duration::from_secs(15 * 60),
            marker_delay: Duration::ZERO,
            marker_retry: Duration::from_millis(100),
            max_transactional_ids: 10_000,
            transaction_version: 1,
        }
    }
}

/// A transaction's state (Kafka's `TransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// No transaction since the producer id was given.
    Empty,
    /// Partitions or offsets were added.
    Ongoing,
    /// Commit decided; markers being written.
    PrepareCommit,
    /// Abort decided; markers being written.
    PrepareAbort,
    /// Committed.
    CompleteCommit,
    /// Aborted.
    CompleteAbort,
}

impl TxnState {
    /// Whether markers are still being written.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// Whether an epoch is the last one a producer id can have.
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// One transactional id.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub(crate) id: String,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) last_producer_id: i64,
    pub(crate) last_producer_epoch: i16,
    pub(crate) timeout: Duration,
    pub(crate) state: TxnState,
    /// Partitions in the transaction.
    pub(crate) partitions: BTreeSet<(String, i32)>,
    /// Groups whose offsets are in the transaction.
    pub(crate) groups: BTreeSet<String>,
    /// When the transaction became ongoing (for its timeout).
    pub(crate) started: Option<Timestamp>,
    /// Partitions still waiting for their marker.
    pub(crate) pending_markers: BTreeSet<(String, i32)>,
    /// When markers are next written.
    pub(crate) markers_due: Option<Timestamp>,
    /// The producer id and epoch the markers of the transaction being
    /// prepared carry: the epoch it was decided under, or with v2 the
    /// bumped one (under the old id when the bump rotated the id).
    pub(crate) markers_as: (i64, i16),
}

impl Transaction {
    /// A new id with its first producer id, at epoch 0.
    pub(crate) fn new(id: &str, producer_id: i64, timeout: Duration) -> Self {
        Transaction {
            id: id.to_owned(),
            producer_id,
            producer_epoch: 0,
            last_producer_id: -1,
            last_producer_epoch: -1,
            timeout,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            started: None,
            pending_markers: BTreeSet::new(),
            markers_due: None,
            markers_as: (producer_id, 0),
        }
    }

    /// The transactional id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current producer id.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    /// The current producer epoch.
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch
    }

    /// The state.
    pub fn state(&self) -> TxnState {
        self.state
    }

    /// Partitions in the current transaction.
    pub fn partitions(&self) -> &BTreeSet<(String, i32)> {
        &self.partitions
    }

    /// The check of every request naming a producer id and epoch: the
    /// id must be the current one (INVALID_PRODUCER_ID_MAPPING) and the
    /// epoch too (PRODUCER_FENCED).
    pub(crate) fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
        if producer_id != self.producer_id {
            Err(ErrorCode::InvalidProducerIdMapping)
        } else if epoch != self.producer_epoch {
            Err(ErrorCode::ProducerFenced)
        } else {
            Ok(())
        }
    }

    /// InitProducerId for a known id (Kafka's `handleInitProducerId` and
    /// `prepareIncrementProducerEpoch`). `expected` is the producer id and
    /// epoch a v3+ client names (KIP-360). Returns the id and epoch to
    /// answer; `Err(ConcurrentTransactions)` after starting the abort of
    /// an ongoing transaction (the caller writes its markers), which the
    /// client retries.
    pub(crate) fn init(
        &mut self,
        now: Timestamp,
        expected: Option<(i64, i16)>,
        timeout: Duration,
        next_producer_id: &mut i64,
    ) -> Result<(i64, i16), ErrorCode> {
        if let Some((pid, epoch)) = expected {
            let valid =
                pid == self.producer_id || (pid == self.last_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Err(ErrorCode::ProducerFenced);
            }
            if pid == self.last_producer_id && pid != self.producer_id {
                // A retry of the InitProducerId that rotated the id.
                return if self.state.is_preparing() {
                    Err(ErrorCode::ConcurrentTransactions)
                } else {
                    Ok((self.producer_id, self.producer_epoch))
                };
            }
        }
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ErrorCode::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                self.fence_and_abort(now);
                Err(ErrorCode::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if let Some((_, epoch)) = expected {
                    if epoch == self.last_producer_epoch && epoch != self.producer_epoch {
                        // A retry of a bump whose answer was lost.
                        return Ok((self.producer_id, self.producer_epoch));
                    }
                    if epoch != self.producer_epoch {
                        return Err(ErrorCode::ProducerFenced);
                    }
                }
                if epoch_exhausted(self.producer_epoch) {
                    self.last_producer_id = self.producer_id;
                    self.last_producer_epoch = if expected.is_some() {
                        self.producer_epoch
                    } else {
                        -1
                    };
                    self.producer_id = *next_producer_id;
                    *next_producer_id += 1;
                    self.producer_epoch = 0;
                } else {
                    self.last_producer_epoch = self.producer_epoch;
                    self.producer_epoch += 1;
                }
                self.timeout = timeout;
                self.state = TxnState::Empty;
                self.partitions.clear();
                self.groups.clear();
                self.started = None;
                Ok((self.producer_id, self.producer_epoch))
            }
        }
    }

    /// The state check of AddPartitionsToTxn and AddOffsetsToTxn, after
    /// the producer check.
    pub(crate) fn check_can_add(&self) -> Result<(), ErrorCode> {
        if self.state.is_preparing() {
            Err(ErrorCode::ConcurrentTransactions)
        } else {
            Ok(())
        }
    }

    /// Adds partitions and groups; the transaction becomes ongoing.
    pub(crate) fn add(
        &mut self,
        now: Timestamp,
        partitions: impl IntoIterator<Item = (String, i32)>,
        group: Option<String>,
    ) {
        if self.state != TxnState::Ongoing {
            self.state = TxnState::Ongoing;
            self.partitions.clear();
            self.groups.clear();
            self.started = Some(now);
        }
        self.partitions.extend(partitions);
        self.groups.extend(group);
    }

    /// EndTxn (Kafka's `handleEndTransaction`, v1): returns whether
    /// markers must be written now.
    pub(crate) fn end(
        &mut self,
        now: Timestamp,
        commit: bool,
        marker_delay: Duration,
    ) -> Result<bool, ErrorCode> {
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                self.prepare(now, commit, marker_delay);
                Ok(true)
            }
            // A retried EndTxn whose answer was lost.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(false),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(ErrorCode::ConcurrentTransactions)
            }
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    /// EndTxn v5 (transactions v2, Kafka 4.0's `endTransaction` for TV2):
    /// every end bumps the epoch (or, when it would run out, moves to
    /// `next_producer_id` at epoch 0) and is answered with the new id and
    /// epoch. A request one epoch below the current one is a retry of
    /// the end that bumped it: answered with success when it asks for
    /// the same end, INVALID_TXN_STATE when not, CONCURRENT_TRANSACTIONS
    /// while that end's markers are written, and PRODUCER_FENCED once a
    /// newer transaction is open, so a late EndTxn never ends the next
    /// transaction (KAFKA-17754). An abort of an empty or completed
    /// transaction at the current epoch bumps too. Returns the answer's
    /// id and epoch and whether markers must be written now.
    pub(crate) fn end_v2(
        &mut self,
        now: Timestamp,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        marker_delay: Duration,
        next_producer_id: &mut i64,
    ) -> Result<((i64, i16), bool), ErrorCode> {
        let retry_on_overflow = producer_id == self.last_producer_id
            && producer_id != self.producer_id
            && epoch == i16::MAX - 1
            && self.producer_epoch == 0;
        if producer_id != self.producer_id && !retry_on_overflow {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        let retry_on_bump = producer_id == self.producer_id
            && i32::from(epoch) + 1 == i32::from(self.producer_epoch);
        let retry = retry_on_bump || retry_on_overflow;
        let current = producer_id == self.producer_id && epoch == self.producer_epoch;
        let valid = match self.state {
            TxnState::Ongoing | TxnState::Empty => current,
            TxnState::PrepareCommit | TxnState::PrepareAbort => retry,
            TxnState::CompleteCommit | TxnState::CompleteAbort => retry || current,
        };
        if !valid {
            return Err(ErrorCode::ProducerFenced);
        }
        let same = |done_commit: bool| done_commit == commit;
        match self.state {
            TxnState::Ongoing => {}
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return if same(self.state == TxnState::PrepareCommit) {
                    Err(ErrorCode::ConcurrentTransactions)
                } else {
                    Err(ErrorCode::InvalidTxnState)
                };
            }
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let done_commit = self.state == TxnState::CompleteCommit;
                if retry {
                    return if same(done_commit) {
                        Ok(((self.producer_id, self.producer_epoch), false))
                    } else {
                        Err(ErrorCode::InvalidTxnState)
                    };
                }
                if commit {
                    return Err(ErrorCode::InvalidTxnState);
                }
                self.partitions.clear();
                self.groups.clear();
            }
            TxnState::Empty => {
                if commit {
                    return Err(ErrorCode::InvalidTxnState);
                }
            }
        }
        // Decide, then bump: the markers carry the bumped epoch under the
        // id the transaction ran with.
        let old_id = self.producer_id;
        let bumped = self.producer_epoch.saturating_add(1);
        self.prepare(now, commit, marker_delay);
        self.markers_as = (old_id, bumped);
        if epoch_exhausted(self.producer_epoch) {
            self.last_producer_id = old_id;
            self.last_producer_epoch = self.producer_epoch;
            self.producer_id = *next_producer_id;
            *next_producer_id += 1;
            self.producer_epoch = 0;
        } else {
            self.last_producer_epoch = self.producer_epoch;
            self.producer_epoch = bumped;
        }
        Ok(((self.producer_id, self.producer_epoch), true))
    }

    /// Bumps the epoch and starts an abort: what a new InitProducerId or
    /// the transaction timeout does to an ongoing transaction
    /// (`prepareFenceProducerEpoch`). The markers carry the new epoch, so
    /// the old producer is fenced at every partition of the transaction.
    pub(crate) fn fence_and_abort(&mut self, now: Timestamp) {
        self.producer_epoch = self.producer_epoch.saturating_add(1);
        self.last_producer_epoch = -1;
        self.prepare(now, false, Duration::ZERO);
    }

    fn prepare(&mut self, now: Timestamp, commit: bool, marker_delay: Duration) {
        self.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.pending_markers = self.partitions.clone();
        self.markers_due = Some(now.saturating_add(marker_delay));
        self.markers_as = (self.producer_id, self.producer_epoch);
    }

    /// Whether the transaction committed (else aborted); meaningful while
    /// preparing.
    pub(crate) fn commits(&self) -> bool {
        self.state == TxnState::PrepareCommit
    }

    /// All markers written: the transaction is complete.
    pub(crate) fn complete(&mut self) {
        self.state = if self.commits() {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        self.partitions.clear();
        self.groups.clear();
        self.started = None;
        self.markers_due = None;
    }

    /// When the ongoing transaction times out.
    pub(crate) fn expires_at(&self) -> Option<Timestamp> {
        (self.state == TxnState::Ongoing)
            .then_some(self.started)
            .flatten()
            .map(|s| s.saturating_add(self.timeout))
    }

    /// The next instant the coordinator has something to do for it.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        match (self.expires_at(), self.markers_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp::ZERO;
    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn init_bumps_fences_and_rotates_as_kafka_does() {
        let mut next = 100;
        let mut t = Transaction::new("t", 7, MIN);
        assert_eq!(t.init(T, None, MIN, &mut next), Ok((7, 1)));
        // KIP-360: the current epoch bumps; a retry of that bump gets the
        // same answer; anything else is fenced.
        assert_eq!(t.init(T, Some((7, 1)), MIN, &mut next), Ok((7, 2)));
        assert_eq!(t.init(T, Some((7, 1)), MIN, &mut next), Ok((7, 2)));
        assert_eq!(
            t.init(T, Some((7, 0)), MIN, &mut next),
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(
            t.init(T, Some((8, 2)), MIN, &mut next),
            Err(ErrorCode::ProducerFenced)
        );
        // An ongoing transaction is aborted with the epoch bumped first.
        t.add(T, [("a".to_owned(), 0)], None);
        assert_eq!(
            t.init(T, None, MIN, &mut next),
            Err(ErrorCode::ConcurrentTransactions)
        );
        assert_eq!(t.state(), TxnState::PrepareAbort);
        assert_eq!(t.producer_epoch(), 3);
        assert_eq!(t.pending_markers.len(), 1);
        assert_eq!(
            t.init(T, None, MIN, &mut next),
            Err(ErrorCode::ConcurrentTransactions)
        );
        t.complete();
        assert_eq!(t.init(T, None, MIN, &mut next), Ok((7, 4)));
        // Epoch exhaustion rotates the producer id.
        t.producer_epoch = i16::MAX - 1;
        assert_eq!(
            t.init(T, Some((7, i16::MAX - 1)), MIN, &mut next),
            Ok((100, 0))
        );
        assert_eq!(
            t.init(T, Some((7, i16::MAX - 1)), MIN, &mut next),
            Ok((100, 0))
        );
        assert_eq!(next, 101);
    }

    #[test]
    fn end_follows_the_state_machine() {
        let mut t = Transaction::new("t", 7, MIN);
        assert_eq!(
            t.end(T, true, Duration::ZERO),
            Err(ErrorCode::InvalidTxnState)
        );
        t.add(T, [("a".to_owned(), 0)], Some("g".into()));
        assert_eq!(t.expires_at(), Some(T.saturating_add(MIN)));
        assert_eq!(t.end(T, true, Duration::ZERO), Ok(true));
        assert_eq!(
            t.end(T, true, Duration::ZERO),
            Err(ErrorCode::ConcurrentTransactions)
        );
        assert_eq!(
            t.end(T, false, Duration::ZERO),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(t.check_can_add(), Err(ErrorCode::ConcurrentTransactions));
        t.complete();
        assert_eq!(t.state(), TxnState::CompleteCommit);
        assert_eq!(t.end(T, true, Duration::ZERO), Ok(false));
        assert_eq!(
            t.end(T, false, Duration::ZERO),
            Err(ErrorCode::InvalidTxnState)
        );
        assert_eq!(t.check_producer(7, 0), Ok(()));
        assert_eq!(t.check_producer(7, 1), Err(ErrorCode::ProducerFenced));
        assert_eq!(
            t.check_producer(8, 0),
            Err(ErrorCode::InvalidProducerIdMapping)
        );
    }
}
