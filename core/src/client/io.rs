//! What goes into the client and what comes out of it.
//!
//! The driver contract (str0m's "mutate, then drain"): after every input or
//! command, call [`Client::poll_output`](super::Client::poll_output) until it
//! returns `None`, then sleep until
//! [`Client::poll_timeout`](super::Client::poll_timeout) or the next input.

use bytes::Bytes;

use crate::group::balancer::PartitionsByTopic;
use crate::group::{CommitOutcome, GroupError};
use crate::producer::{ProduceError, ProduceId, Record, RecordMeta};
use crate::txn::{TransactionOutcome, TxnError};

/// A connection the core asked the driver to open. Chosen by the core,
/// never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Something that happened outside the core.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// The transport of `ConnId` is open.
    Connected(ConnId),
    /// Opening `ConnId` failed; the reason is for logs.
    ConnectFailed(ConnId, String),
    /// Bytes arrived on `ConnId`.
    Received(ConnId, Bytes),
    /// `ConnId` was closed by the peer or failed; the reason is for logs.
    Closed(ConnId, String),
    /// The deadline from `poll_timeout` passed.
    Timeout,
}

/// Something the driver must do, or tell the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Open a TCP connection to `addr` (`host:port`) and report
    /// `Connected` or `ConnectFailed` for `conn`.
    Connect {
        /// The id to report back with.
        conn: ConnId,
        /// Where to connect.
        addr: String,
    },
    /// Write these bytes, in order, on `conn`.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// What to write.
        data: Bytes,
    },
    /// Close `conn`; report nothing more for it.
    Close(ConnId),
    /// Tell the application.
    Event(Event),
}

/// Something the application should hear about.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A record waiting for buffer space (produced with
    /// [`WhenFull::Wait`](crate::producer::WhenFull)) is now buffered.
    Buffered(ProduceId),
    /// A record is durably written (per the configured acks).
    Delivered {
        /// Which produce.
        id: ProduceId,
        /// Where it landed.
        meta: RecordMeta,
    },
    /// A record will never be written; it is handed back.
    ProduceFailed {
        /// Which produce.
        id: ProduceId,
        /// The record as it was given, so the application can retry or
        /// log it. Once its bytes were in a batch the producer no longer
        /// held it: it is read back from the batch, its key, value and
        /// headers slices of one buffer.
        record: Box<Record>,
        /// Why.
        error: ProduceError,
    },
    /// Everything produced before the flush with this id is done.
    Flushed(u64),
    /// Fetched records wait to be taken with
    /// [`Client::poll_fetches`](super::Client::poll_fetches). Sent once each
    /// time the buffer goes from empty to not empty.
    FetchesReady,
    /// A broker answered OUT_OF_ORDER_SEQUENCE_NUMBER or
    /// UNKNOWN_PRODUCER_ID for the oldest unacknowledged batch while its log
    /// still holds what was acknowledged: records the broker had confirmed
    /// are gone (an unclean leader election, say). Without transactions the
    /// producer resets its sequence with a new epoch and keeps producing,
    /// as franz-go does; this event is the report.
    DataLossDetected {
        /// The topic.
        topic: std::sync::Arc<str>,
        /// The partition.
        partition: i32,
    },
    /// The consumer group assigned these partitions; they are consumed
    /// from their committed offsets. With `require_rebalance_ack` the
    /// group waits for [`Client::allow_rebalance`](super::Client::allow_rebalance).
    PartitionsAssigned(PartitionsByTopic),
    /// These partitions were revoked in a rebalance, after the commit on
    /// revoke; nothing more of them is handed out. With
    /// `require_rebalance_ack` the rebalance waits for
    /// [`Client::allow_rebalance`](super::Client::allow_rebalance).
    PartitionsRevoked(PartitionsByTopic),
    /// These partitions were lost (session expired, fenced): dropped
    /// without a commit, as another member may own them already.
    PartitionsLost(PartitionsByTopic),
    /// A group offset commit finished (auto, on revoke, on leave, manual).
    CommitFinished(CommitOutcome),
    /// The consumer group reported an error; fatal ones
    /// ([`GroupError::is_fatal`]) stop group consumption.
    GroupError(GroupError),
    /// The member left its group (after the final commit); a `close`
    /// waiting for it has closed the client.
    GroupLeft,
    /// A transaction ended (`Client::end_transaction`).
    TransactionEnded(TransactionOutcome),
    /// The transactional producer hit an error: abortable (the open
    /// transaction can only be aborted) or fatal
    /// ([`TxnError::is_fatal`]: every record is failed and no transaction
    /// can begin again; create a new client).
    TransactionError(TxnError),
}
