//! The consumer-group calls of [`Client`]: commits that report their
//! outcome and `allow_rebalance` (from the core's
//! [`sansa_core::async_group_commits!`] template), the group's events,
//! and `abort`. The
//! bookkeeping is the core session's (`sansa_core::session::group`); this
//! file only carries calls to the driver and answers back.
//! See [`Client::next_group_event`] for how rebalances reach the
//! application, with an example.

use sansa_core::group::GroupEvent;
use sansa_core::session::{CommitFailure, CommitRequest, CommitResult};

use tokio::sync::oneshot;

use crate::driver::Command;
use crate::Client;

sansa_core::async_group_commits!();

impl Client {
    /// The group's next event: partitions assigned, revoked or lost, a
    /// group error, or the outcome of a commit nobody awaited (auto, on
    /// revoke). `None` once the client is closed. Events wait (up to a
    /// bound, oldest dropped) until read.
    ///
    /// Rebalances are events to read here, not
    /// callbacks: a callback run by the driver would stall heartbeats while
    /// it runs, and one that commits would wait for the driver it blocks.
    /// With `GroupConfig::require_rebalance_ack` the group holds each
    /// assignment, revoke or loss until [`Client::allow_rebalance`], which
    /// gives the application the same "finish before the rebalance goes on"
    /// a blocking callback would.
    ///
    /// ```no_run
    /// use sansa_tokio::{Client, GroupConfig, GroupEvent};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut group = GroupConfig::new("billing");
    /// group.auto_commit = None; // commit by hand
    /// group.require_rebalance_ack = true;
    /// let client = Client::builder()
    ///     .seed_brokers(["localhost:9092"])
    ///     .consumer_group(group)
    ///     .build()
    ///     .await?;
    /// client.consume_topics(["invoices"]);
    /// // Rebalance events on their own task; each step waits for the ack.
    /// let events = client.clone();
    /// tokio::spawn(async move {
    ///     while let Some(event) = events.next_group_event().await {
    ///         if let GroupEvent::PartitionsRevoked(p) = &event {
    ///             println!("giving up {p:?}");
    ///         }
    ///         events.allow_rebalance();
    ///     }
    /// });
    /// for _ in 0..10 {
    ///     let records = client.poll_records(None).await;
    ///     // ... process ...
    ///     client.commit_records(&records).await?;
    /// }
    /// client.close().await; // commits what was polled, leaves the group
    /// # Ok(())
    /// # }
    /// ```
    pub async fn next_group_event(&self) -> Option<GroupEvent> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::NextGroupEvent(tx));
        rx.await.ok()
    }

    /// Stops at once, as a crash would: no flush, no final commit, no
    /// LeaveGroup (the coordinator keeps the member's partitions until its
    /// session timeout). Records not yet delivered fail with
    /// `ProduceError::Closed`.
    pub async fn abort(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Abort(Some(tx)));
        let _ = rx.await;
    }

    /// Hands a commit to the driver and waits for its answer.
    async fn commit(&self, request: CommitRequest) -> CommitResult {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Commit(request, tx));
        rx.await.unwrap_or(Err(CommitFailure::Closed))
    }
}
