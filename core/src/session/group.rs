//! The consumer-group side of a [`Session`](super::Session): commits whose
//! callers wait for their outcome, and the group's events (assigned,
//! revoked, lost, errors, commits nobody waits for) queued for the
//! application to read.
//!
//! Why events to read rather than callbacks run by the driver: the
//! driver is the one loop that heartbeats and moves bytes, so a callback
//! run there would stall the group while it runs, and a callback that
//! commits (the usual thing to do on a revoke) would wait for the very
//! loop it blocks. Instead the application reads [`GroupEvent`]s on its
//! own task or thread, at its own pace; with
//! [`GroupConfig::require_rebalance_ack`](crate::group::GroupConfig) the
//! group holds each rebalance step until it calls `allow_rebalance`, which
//! is what a blocking callback gives, without the deadlock.
//!
//! Rules:
//! - A commit's caller hears its own [`CommitOutcome`]; commits nobody
//!   waits for (auto, on revoke, on leave) become events.
//! - Events queue up to [`MAX_QUEUED_GROUP_EVENTS`]; beyond that the
//!   oldest is dropped with a warning, so an application that never reads
//!   them holds bounded memory.
//! - When the session ends, waiting commits fail with
//!   [`CommitFailure::Closed`] and readers of events hear none.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::Reply;
use crate::group::{CommitId, CommitOutcome, EpochOffset, GroupEvent, TopicPartition};
use crate::{Client, Timestamp};

/// Group events kept for the application at most; older ones are dropped
/// when it does not read them.
pub const MAX_QUEUED_GROUP_EVENTS: usize = 1024;

/// How a commit asked for by the application ended.
pub type CommitResult = Result<CommitOutcome, CommitFailure>;

/// Why a commit the application asked for did not (entirely) happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitFailure {
    /// The client has no consumer group (`consumer_group` was not set).
    #[error("no consumer group is configured")]
    NoGroup,
    /// The client closed before the commit finished.
    #[error("the client closed before the commit finished")]
    Closed,
    /// The caller stopped waiting (a blocking call's timeout); the commit
    /// goes on in the background.
    #[error("timed out waiting for the commit; it goes on in the background")]
    TimedOut,
    /// The coordinator refused some partitions (or the member was no
    /// longer in the group); the outcome says which and why, and what was
    /// committed.
    #[error("{}", refused_summary(.0))]
    Refused(CommitOutcome),
}

fn refused_summary(outcome: &CommitOutcome) -> String {
    match outcome.failed.iter().next() {
        Some(((topic, partition), error)) => format!(
            "{} partition(s) not committed; {topic}/{partition}: {error}",
            outcome.failed.len()
        ),
        None => "commit refused".to_string(),
    }
}

/// What to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitRequest {
    /// Everything polled and not yet committed
    /// (`commit_uncommitted_offsets`).
    Uncommitted,
    /// These positions, the next offset to consume per partition
    /// (`commit_records` sends the offsets after its records, see
    /// [`positions_after`](crate::group::offsets::positions_after)).
    Offsets {
        /// The positions, of partitions the member owns.
        offsets: BTreeMap<TopicPartition, EpochOffset>,
        /// Also commit positions at or below what is committed.
        allow_backwards: bool,
    },
}

/// The session's group books: who waits for which commit, and the events
/// waiting for a reader (or readers waiting for an event).
#[derive(Debug, Default)]
pub(super) struct GroupBooks {
    commits: HashMap<CommitId, Reply<CommitResult>>,
    events: VecDeque<GroupEvent>,
    readers: VecDeque<Reply<GroupEvent>>,
}

impl GroupBooks {
    /// Starts a commit; the waiter hears how it ended.
    pub(super) fn commit(
        &mut self,
        core: &mut Client,
        now: Timestamp,
        request: CommitRequest,
        waiter: Reply<CommitResult>,
    ) {
        let id = match request {
            CommitRequest::Uncommitted => core.commit_uncommitted_offsets(now),
            CommitRequest::Offsets {
                offsets,
                allow_backwards,
            } => core.commit_offsets(now, offsets, allow_backwards),
        };
        match id {
            Some(id) => {
                self.commits.insert(id, waiter);
            }
            None => {
                let _ = waiter.send(Err(CommitFailure::NoGroup));
            }
        }
    }

    /// A commit finished: its caller hears it, or (nobody waits: auto, on
    /// revoke, on leave, or a caller that left) it becomes an event.
    pub(super) fn commit_finished(&mut self, outcome: CommitOutcome) {
        let Some(waiter) = self.commits.remove(&outcome.id) else {
            return self.push(GroupEvent::CommitFinished(outcome));
        };
        let result = if outcome.failed.is_empty() {
            Ok(outcome)
        } else {
            Err(CommitFailure::Refused(outcome))
        };
        if let Err(Ok(outcome) | Err(CommitFailure::Refused(outcome))) = waiter.send(result) {
            self.push(GroupEvent::CommitFinished(outcome));
        }
    }

    /// Hands `event` to the oldest reader still waiting, else queues it.
    pub(super) fn push(&mut self, mut event: GroupEvent) {
        while let Some(reader) = self.readers.pop_front() {
            match reader.send(event) {
                Ok(()) => return,
                Err(back) => event = back,
            }
        }
        if self.events.len() >= MAX_QUEUED_GROUP_EVENTS {
            if let Some(old) = self.events.pop_front() {
                tracing::warn!(dropped = ?old, "group events are not being read; dropped the oldest");
            }
        }
        self.events.push_back(event);
    }

    /// A reader wants the next event: the oldest queued one, or the next
    /// to come.
    pub(super) fn next_event(&mut self, reader: Reply<GroupEvent>) {
        self.readers.retain(|r| !r.is_abandoned());
        match self.events.pop_front() {
            Some(event) => {
                if let Err(event) = reader.send(event) {
                    // It left before the answer: keep the event for the next.
                    self.events.push_front(event);
                }
            }
            None => self.readers.push_back(reader),
        }
    }

    /// The session ends: waiting commits fail; readers hear nothing (their
    /// waiters drop).
    pub(super) fn finish(&mut self) {
        for (_, waiter) in self.commits.drain() {
            let _ = waiter.send(Err(CommitFailure::Closed));
        }
        self.readers.clear();
    }
}
