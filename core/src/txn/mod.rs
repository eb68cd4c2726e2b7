//! Transactions (KIP-98): the transaction manager that owns a
//! transactional producer's id and epoch and walks each transaction
//! through the transaction coordinator.
//!
//! - [`TxnManager`]: the state machine the [`Client`](crate::client::Client)
//!   drives, as it drives the group [`Member`](crate::group::Member). It
//!   never sees a connection: the client asks it where its next request
//!   goes ([`TxnManager::next_target`]), has it build the request, and
//!   hands back the answer (or `None` when the connection was lost).
//!
//! The rules, and the failure each one prevents:
//! - InitProducerId carries the transactional id and the transaction
//!   timeout, and goes to the transaction coordinator, never to any broker:
//!   only the coordinator fences the previous producer of the id and aborts
//!   what it left open.
//! - A partition's first batch in a transaction is sent only after
//!   AddPartitionsToTxn for it succeeded (transactions v1): a batch the
//!   coordinator does not know about would never get a marker and would
//!   pin the partition's last stable offset. Partitions touched while a
//!   request is out are coalesced into the next one.
//! - Ending flushes first, then sends EndTxn. An abort fails the records
//!   still buffered (never sent) with
//!   [`ProduceError::TransactionAborted`](crate::producer::ProduceError);
//!   those in flight settle first, so no batch of the transaction lands
//!   after its abort marker.
//! - Errors split in two, as in Kafka's Java producer and franz-go:
//!   *abortable* ones (a record failed, a partition not authorized, an
//!   offset commit refused by the group) leave the producer usable but the
//!   transaction can only be aborted; *fatal* ones (PRODUCER_FENCED, and
//!   INVALID_PRODUCER_EPOCH from a coordinator,
//!   TRANSACTIONAL_ID_AUTHORIZATION_FAILED, INVALID_TXN_STATE) close the
//!   transactional producer: another instance owns the id now, or the
//!   coordinator and the client disagree about what is open.
//! - COORDINATOR_LOAD_IN_PROGRESS and CONCURRENT_TRANSACTIONS (the previous
//!   transaction's markers are still being written) are retried after a
//!   backoff; NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE look the
//!   coordinator up again first.
//! - After an abort answered UNKNOWN_PRODUCER_ID /
//!   INVALID_PRODUCER_ID_MAPPING (KIP-360), or after the producer's
//!   sequence broke inside a transaction, the producer re-initializes with
//!   its current id and epoch (KIP-360), which bumps the epoch when no
//!   other instance took over, and is refused with PRODUCER_FENCED when one
//!   did. Re-initializing *without* the old id would fence a live newer
//!   instance, so it is never done. Nor is a re-init sent after an abort
//!   answered INVALID_PRODUCER_EPOCH (what EndTxn below v2 says for a
//!   fenced epoch), which franz-go does for KIP-588: Kafka refuses that re-init too, and
//!   noida-db, which does not check the epoch, accepted it and fenced the
//!   live newer instance (`tests/tests/txn_peers.rs`).
//! - A transaction the coordinator timed out cannot be recovered from: Kafka
//!   aborts it with the epoch bumped and keeps no last epoch
//!   (`prepareFenceProducerEpoch`; KIP-588's server side, which would have
//!   allowed a re-init from the fenced epoch, was never merged). A Produce
//!   under the old epoch is answered INVALID_PRODUCER_EPOCH, which is
//!   abortable (KIP-588, as Java does); the abort is then answered
//!   PRODUCER_FENCED (or the re-init is), and the producer closes: the
//!   application starts a new instance.
//! - TxnOffsetCommit carries the group's generation, member id and instance
//!   id (KIP-447), so a member fenced out of its group by a rebalance cannot
//!   commit offsets for partitions it no longer owns. The end of a
//!   transaction reports whether its commit could have happened
//!   ([`TransactionOutcome::commit_in_doubt`]), which is what a
//!   group-transact session needs to decide whether to rewind.
//!
//! Transactions v2 (KIP-890 part 2, Kafka 4.0) are used when the
//! transaction coordinator finalizes `transaction.version` >= 2 and speaks
//! Produce v12, TxnOffsetCommit v5 and EndTxn v5
//! ([`TxnManager::transactions_v2_available`]); v1 otherwise, exactly as
//! above. Under v2:
//! - No AddPartitionsToTxn: a partition's first Produce v12 in the
//!   transaction adds it at the partition leader, so batches go at once.
//!   No AddOffsetsToTxn: TxnOffsetCommit v5 goes straight to the group
//!   coordinator, which adds the group. Inside a v1 transaction the
//!   client never sends Produce v12 or TxnOffsetCommit v5 (the broker
//!   would take them for v2); outside transactions (idempotent or plain
//!   producers) Produce stays at v11, which has the same schema.
//! - Every EndTxn v5 bumps the epoch (a new producer id when it would
//!   overflow) and answers with it; the producer goes on under it, its
//!   sequences restarted at 0 on every partition. A late or retried
//!   EndTxn so carries an epoch one below the current one, which the
//!   coordinator answers as the end it repeats and never applies to the
//!   next transaction (KAFKA-17754, where a delayed v1 EndTxn could end
//!   the next transaction). The abort after a broken sequence needs no
//!   InitProducerId of its own: the end's bump gives fresh sequences.
//! - An abort of a transaction that touched partitions sends EndTxn even
//!   if no batch was sent (the client cannot know whether a Produce v12
//!   added one); Kafka 4.0 answers an abort of an empty v2 transaction
//!   with a bump.
//! - The version is decided when no transaction is under way at the
//!   coordinator: at `begin` and when InitProducerId answers (so the
//!   first transaction uses v2 when the coordinator offers it, though
//!   `begin` came before the coordinator was known). It never changes in
//!   the middle of a transaction and, once v2, stays v2 while the
//!   producer lives ([`TxnManager::uses_transactions_v2`]).

mod group_session;
mod manager;
#[cfg(test)]
mod tests;
mod wire;

pub use group_session::{GroupTxnSession, SessionEnded};
pub use manager::{TxnEvent, TxnManager, TxnState};
pub use wire::{
    TxnInFlight, TxnOut, TxnRequest, TxnResponse, TxnTarget, PRODUCE_V2_VERSION, TXN_V2_VERSION,
};

use crate::protocol::{ApiKey, ErrorCode};

/// How to end a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEnd {
    /// Commit: make its records and offsets visible.
    Commit,
    /// Abort: discard them.
    Abort,
}

impl TxnEnd {
    /// A group-transact session's `end(try_commit)`: a commit when asked to
    /// try one (the session still aborts a doubtful one), else an abort.
    pub fn try_commit(try_commit: bool) -> TxnEnd {
        if try_commit {
            TxnEnd::Commit
        } else {
            TxnEnd::Abort
        }
    }
}

/// The consumer group an offset commit in a transaction is for, with the
/// member's place in it (KIP-447): the group coordinator refuses the
/// commit when the member is no longer in this generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The generation the member is in, `-1` if none.
    pub generation_id: i32,
    /// The member id, empty if none.
    pub member_id: String,
    /// The static member's instance id (KIP-345), if any.
    pub instance_id: Option<String>,
}

/// Why a transaction operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxnError {
    /// The client has no transactional id.
    #[error("no transactional id is configured")]
    NotTransactional,
    /// `begin_transaction` while one is open.
    #[error("a transaction is already open")]
    AlreadyInTransaction,
    /// The operation needs an open transaction.
    #[error("no transaction is open")]
    NotInTransaction,
    /// The transaction is ending; wait for
    /// [`Event::TransactionEnded`](crate::client::Event::TransactionEnded).
    #[error("the transaction is already ending")]
    Ending,
    /// Offsets were sent without group metadata and the client has no
    /// consumer group.
    #[error("no consumer group to commit offsets for")]
    NoGroup,
    /// A coordinator answered with an error.
    #[error("{api:?} failed: {error}")]
    Broker {
        /// The request.
        api: ApiKey,
        /// What the coordinator said.
        error: ErrorCode,
    },
    /// A record produced in the transaction failed: committing it would
    /// commit a gap.
    #[error("a record produced in the transaction failed")]
    RecordFailed,
    /// The producer's sequence broke (a batch that may have been written
    /// failed); the transaction cannot commit and the epoch must be bumped.
    #[error("the producer's sequence broke inside the transaction")]
    SequenceBroken,
    /// The transaction hit an abortable error: only an abort is allowed.
    #[error("the transaction must be aborted: {0}")]
    MustAbort(Box<TxnError>),
    /// Another producer with the same transactional id took over, or the
    /// coordinator timed the transaction out (PRODUCER_FENCED, or
    /// INVALID_PRODUCER_EPOCH, which request versions older than
    /// PRODUCER_FENCED get instead). Fatal: create a new client.
    #[error("fenced by a newer producer with the same transactional id ({0})")]
    Fenced(ErrorCode),
    /// The transactional producer is closed after a fatal error.
    #[error("the transactional producer failed: {0}")]
    Fatal(Box<TxnError>),
    /// A record of the transaction failed in a way no transaction
    /// survives (fenced at the partition leader, transactional id not
    /// authorized, acknowledged data lost). Fatal.
    #[error("a record failed fatally: {0}")]
    ProducerFailed(crate::producer::ProduceError),
    /// The client closed before the transaction ended.
    #[error("the client closed")]
    Closed,
    /// A group-transact session lost partitions to a revoke while the
    /// transaction was open: its output for them may be produced again by
    /// their new owner, so it was aborted.
    #[error("partitions were revoked during the transaction")]
    PartitionsRevoked,
    /// A group-transact session lost its partitions (fenced out of the
    /// group, session timeout) while the transaction was open.
    #[error("partitions were lost during the transaction")]
    PartitionsLost,
    /// A group-transact session's heartbeat before the commit said the
    /// member is no longer in a stable generation (REBALANCE_IN_PROGRESS,
    /// ILLEGAL_GENERATION, ...): a new owner may produce the same output,
    /// so the transaction was aborted.
    #[error("the heartbeat before the commit failed: {0}")]
    GroupCheckFailed(ErrorCode),
}

impl TxnError {
    /// Whether this error closed the transactional producer.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            TxnError::Fenced(_) | TxnError::Fatal(_) | TxnError::ProducerFailed(_)
        )
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionOutcome {
    /// The id `end_transaction` returned.
    pub id: u64,
    /// Whether it committed (the coordinator accepted the commit).
    pub committed: bool,
    /// Why it did not end as asked, if it did not: an abortable error
    /// turned a commit into an abort, or a fatal one stopped the end.
    pub error: Option<TxnError>,
    /// A commit was sent and its answer never came or was fatal: the
    /// coordinator may have committed. A group-transact session must then
    /// treat the offsets as possibly committed.
    pub commit_in_doubt: bool,
}

impl TransactionOutcome {
    /// A group-transact session's answer to `end(try_commit)` (franz-go's
    /// `End` returning `committed, err`): `Ok(true)` when the coordinator
    /// committed; `Ok(false)` when the transaction aborted, asked for or
    /// because a commit was doubtful (consumption was rewound, so the
    /// aborted input comes again); `Err` when the end failed fatally: the
    /// producer is closed, and when [`commit_in_doubt`](Self::commit_in_doubt)
    /// the offsets may have committed, so nothing was rewound and a new
    /// client must start from the committed offsets.
    ///
    /// ```
    /// use sansa_core::protocol::ErrorCode;
    /// use sansa_core::txn::{TransactionOutcome, TxnError};
    ///
    /// let aborted = TransactionOutcome {
    ///     id: 1,
    ///     committed: false,
    ///     error: Some(TxnError::PartitionsRevoked),
    ///     commit_in_doubt: false,
    /// };
    /// assert_eq!(aborted.session_result(), Ok(false));
    /// let fenced = TransactionOutcome {
    ///     error: Some(TxnError::Fenced(ErrorCode::ProducerFenced)),
    ///     commit_in_doubt: true,
    ///     ..TransactionOutcome { id: 2, committed: false, error: None, commit_in_doubt: false }
    /// };
    /// assert!(fenced.session_result().is_err());
    /// ```
    pub fn session_result(self) -> Result<bool, TxnError> {
        if self.committed {
            return Ok(true);
        }
        match self.error {
            Some(e) if e.is_fatal() || self.commit_in_doubt => Err(e),
            _ => Ok(false),
        }
    }
}
