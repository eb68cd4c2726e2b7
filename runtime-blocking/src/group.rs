//! The consumer-group calls of [`Client`], blocking with a timeout:
//! commits that report their outcome, the group's events,
//! `allow_rebalance`, and `abort`. The bookkeeping is the core session's
//! (`sansa_core::session::group`); this file only carries calls to the
//! driver thread and answers back.
//! See [`Client::next_group_event`] for how rebalances reach the
//! application, with an example.

use std::collections::BTreeMap;
use std::time::Duration;

use sansa_core::consumer::ConsumedRecord;
use sansa_core::group::offsets::positions_after;
use sansa_core::group::{EpochOffset, GroupEvent, TopicPartition};
use sansa_core::session::{CommitFailure, CommitRequest, CommitResult};

use crate::driver::Command;
use crate::wait::answer;
use crate::Client;

impl Client {
    /// Commits everything polled and not yet committed, and blocks for the
    /// coordinator's answer at most `timeout` ([`CommitFailure::TimedOut`]
    /// then; the commit goes on). Fails with [`CommitFailure::NoGroup`]
    /// without a consumer group, [`CommitFailure::Refused`] when some
    /// partitions were not committed.
    pub fn commit_uncommitted_offsets(&self, timeout: Duration) -> CommitResult {
        self.commit(CommitRequest::Uncommitted, timeout)
    }

    /// Commits past these records (per partition, the offset after the
    /// highest one), forward only; blocks for the answer at most
    /// `timeout`.
    pub fn commit_records(&self, records: &[ConsumedRecord], timeout: Duration) -> CommitResult {
        self.commit_offsets(positions_after(records), false, timeout)
    }

    /// Commits these positions (the next offset to consume per owned
    /// partition); positions at or below what is committed are left out
    /// unless `allow_backwards`. Blocks for the answer at most `timeout`.
    pub fn commit_offsets(
        &self,
        offsets: BTreeMap<TopicPartition, EpochOffset>,
        allow_backwards: bool,
        timeout: Duration,
    ) -> CommitResult {
        let request = CommitRequest::Offsets {
            offsets,
            allow_backwards,
        };
        self.commit(request, timeout)
    }

    /// Lets a rebalance step held for the application go on (with
    /// `require_rebalance_ack` or `block_rebalance_on_poll`).
    pub fn allow_rebalance(&self) {
        self.send(Command::AllowRebalance);
    }

    /// The group's next event (partitions assigned, revoked or lost, a
    /// group error, the outcome of a commit nobody awaited), waiting at
    /// most `timeout`; `None` when none came in time or the client is
    /// closed. Events wait (up to a bound, oldest dropped) until read.
    ///
    /// Rebalances are events to read here, not
    /// callbacks: a callback run by the driver thread would stall heartbeats
    /// while it runs, and one that commits would wait for the thread it
    /// blocks. With `GroupConfig::require_rebalance_ack` the group holds each
    /// assignment, revoke or loss until [`Client::allow_rebalance`], which
    /// gives the application the same "finish before the rebalance goes on"
    /// a blocking callback would.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sansa_blocking::{Client, GroupConfig, GroupEvent};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut group = GroupConfig::new("billing");
    /// group.auto_commit = None; // commit by hand
    /// group.require_rebalance_ack = true;
    /// let client = Client::builder()
    ///     .seed_brokers(["localhost:9092"])
    ///     .consumer_group(group)
    ///     .build()?;
    /// client.consume_topics(["invoices"]);
    /// // Rebalance events on their own thread; each step waits for the ack.
    /// let events = client.clone();
    /// std::thread::spawn(move || {
    ///     while !events.is_closed() {
    ///         let Some(event) = events.next_group_event(Duration::from_secs(1)) else {
    ///             continue;
    ///         };
    ///         if let GroupEvent::PartitionsRevoked(p) = &event {
    ///             println!("giving up {p:?}");
    ///         }
    ///         events.allow_rebalance();
    ///     }
    /// });
    /// for _ in 0..10 {
    ///     let records = client.poll_records(None, Duration::from_secs(1));
    ///     // ... process ...
    ///     client.commit_records(&records, Duration::from_secs(10))?;
    /// }
    /// client.close(); // commits what was polled, leaves the group
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_group_event(&self, timeout: Duration) -> Option<GroupEvent> {
        let (event, reply) = answer();
        self.send(Command::NextGroupEvent(reply));
        event.wait(Some(timeout))
    }

    /// Stops at once, as a crash would: no flush, no final commit, no
    /// LeaveGroup (the coordinator keeps the member's partitions until its
    /// session timeout). Records not yet delivered fail with
    /// `ProduceError::Closed`.
    pub fn abort(&self) {
        let (done, reply) = answer();
        self.send(Command::Abort(Some(reply)));
        done.wait(None);
    }

    fn commit(&self, request: CommitRequest, timeout: Duration) -> CommitResult {
        let (outcome, reply) = answer();
        self.send(Command::Commit(request, reply));
        outcome.wait(Some(timeout)).unwrap_or_else(|| {
            Err(if self.is_closed() {
                CommitFailure::Closed
            } else {
                CommitFailure::TimedOut
            })
        })
    }
}
