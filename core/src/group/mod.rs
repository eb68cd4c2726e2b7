//! Consumer groups: the classic protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) and KIP-848's (ConsumerGroupHeartbeat), one
//! member machine for both.
//!
//! - [`balancer`]: the pure functions the group leader runs to split the
//!   subscribed partitions among the members, and the codec of the member
//!   metadata and assignment bytes they exchange through the coordinator;
//! - [`member`]: the member state machine (coordinator, join, sync,
//!   heartbeat, leave, revoke, offset fetch and commit);
//! - [`offsets`]: what the member polled and committed, behind
//!   auto-commit, commit on revoke and manual commits;
//! - [`config`]: the member's settings.

pub mod balancer;
pub mod config;
pub mod member;
pub mod offsets;

pub use config::{GroupConfig, GroupProtocol};
pub use member::{
    CommitError, CommitId, CommitOutcome, CommitReason, GroupError, GroupEvent, GroupOutput, Member,
};
pub use offsets::{EpochOffset, TopicPartition};
