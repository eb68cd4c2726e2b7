//! What the member tells its client and the application: assignments,
//! revokes and losses, commit outcomes, errors.

use std::collections::BTreeMap;

use crate::consumer::StartOffset;
use crate::group::balancer::{BalanceError, PartitionsByTopic};
use crate::group::offsets::{EpochOffset, TopicPartition};
use crate::protocol::{ApiKey, DecodeError, ErrorCode};

/// Identifies a commit in [`GroupEvent::CommitFinished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitId(pub u64);

/// Why a commit was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitReason {
    /// The auto-commit timer.
    Auto,
    /// Partitions were being revoked.
    Revoke,
    /// The member was leaving the group.
    Leave,
    /// The application asked.
    Manual,
}

/// Why a partition's commit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The coordinator refused it with this error.
    #[error("the coordinator refused the commit: {0}")]
    Broker(ErrorCode),
    /// The member left the group or was fenced before it could be sent.
    #[error("the member is no longer in the group")]
    NotInGroup,
}

/// How a commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Which commit.
    pub id: CommitId,
    /// Why it was made.
    pub reason: CommitReason,
    /// The positions the coordinator now holds.
    pub committed: BTreeMap<TopicPartition, EpochOffset>,
    /// The positions it refused, and why.
    pub failed: BTreeMap<TopicPartition, CommitError>,
}

/// Something the member tells the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GroupEvent {
    /// These partitions are now consumed from their committed offsets (or
    /// the reset offset when none is committed).
    PartitionsAssigned(PartitionsByTopic),
    /// These partitions were given up in a rebalance, after the commit on
    /// revoke; nothing of them is handed out any more.
    PartitionsRevoked(PartitionsByTopic),
    /// These partitions were lost (session expired, fenced, unknown
    /// member): they may already belong to another member, so they were
    /// dropped without a commit.
    PartitionsLost(PartitionsByTopic),
    /// A commit finished.
    CommitFinished(CommitOutcome),
    /// Something went wrong; [`GroupError::is_fatal`] says whether the
    /// member stopped.
    Error(GroupError),
}

/// What went wrong in the group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// Another process joined with this member's `group.instance.id`
    /// (KIP-345): this one stopped. Fatal: two processes share an
    /// instance id, or a restarted one raced its old self (franz-go #931).
    #[error("fenced: another member joined with instance id {instance_id:?}; this member stopped")]
    FencedInstanceId {
        /// The instance id.
        instance_id: String,
    },
    /// The coordinator answered a request with an error the member retries
    /// after a backoff (authorization, group full, bad session timeout).
    #[error("{api:?} failed: {error}")]
    Broker {
        /// The request.
        api: ApiKey,
        /// The error.
        error: ErrorCode,
    },
    /// The leader could not balance the group (undecodable metadata of a
    /// member); the group rebalances again.
    #[error("balancing the group failed: {0}")]
    Balance(BalanceError),
    /// The coordinator chose a protocol this member did not offer.
    #[error("the coordinator chose protocol {0:?}, which this member did not offer")]
    UnknownProtocol(String),
    /// The leader's plan could not be encoded (a topic name too long for
    /// the wire).
    #[error("cannot encode the assignment: {0}")]
    EncodeAssignment(String),
    /// The application did not poll within `max_poll_interval`: the member
    /// left the group, its partitions lost; it rejoins at the next poll.
    #[error("no poll for {0:?} (max_poll_interval): left the group until the next poll")]
    PollIntervalExceeded(std::time::Duration),
    /// The assignment from SyncGroup could not be decoded.
    #[error("undecodable assignment: {0}")]
    InvalidAssignment(DecodeError),
    /// The coordinator does not speak a version of this API the member
    /// needs (static membership needs JoinGroup v5+, Kafka 2.3+). Fatal.
    #[error("the coordinator does not support {0:?} as this member needs it")]
    Unsupported(ApiKey),
    /// The coordinator refused the member with an error retrying cannot
    /// fix (KIP-848: UNRELEASED_INSTANCE_ID — another member still holds
    /// the instance id; GROUP_MAX_SIZE_REACHED; UNSUPPORTED_ASSIGNOR — the
    /// broker has no such `server_assignor`; INVALID_REQUEST; not
    /// authorized). Fatal: change the configuration or the cluster.
    #[error("{api:?} refused the member: {error} {message:?}; the member stopped")]
    Rejected {
        /// The request.
        api: ApiKey,
        /// The error.
        error: ErrorCode,
        /// The coordinator's explanation, if it gave one.
        message: String,
    },
}

impl GroupError {
    /// Whether the member stopped for good.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            GroupError::FencedInstanceId { .. }
                | GroupError::Unsupported(_)
                | GroupError::Rejected { .. }
        )
    }
}

/// What the member tells its client.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupOutput {
    /// Start consuming these partitions at these offsets.
    Assign(BTreeMap<String, BTreeMap<i32, StartOffset>>),
    /// Stop consuming these partitions now and drop what is buffered of
    /// them.
    Revoke(PartitionsByTopic),
    /// Tell the application.
    Event(GroupEvent),
}
