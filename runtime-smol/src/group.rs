//! The consumer-group calls of [`Client`]: commits that report their
//! outcome, the group's events, `allow_rebalance` and `abort`, from the
//! core's [`sansa_core::async_group_commits!`] template. The bookkeeping
//! is the core session's (`sansa_core::session::group`).

use crate::Client;

sansa_core::async_group_commits! {
    /// ```no_run
    /// use sansa_smol::{Client, GroupConfig, GroupEvent};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// smol::block_on(async {
    ///     let mut group = GroupConfig::new("billing");
    ///     group.auto_commit = None; // commit by hand
    ///     group.require_rebalance_ack = true;
    ///     let client = Client::builder()
    ///         .seed_brokers(["localhost:9092"])
    ///         .consumer_group(group)
    ///         .build()?;
    ///     client.consume_topics(["invoices"]);
    ///     // Rebalance events on their own task; each step waits for the ack.
    ///     let events = client.clone();
    ///     smol::spawn(async move {
    ///         while let Some(event) = events.next_group_event().await {
    ///             if let GroupEvent::PartitionsRevoked(p) = &event {
    ///                 println!("giving up {p:?}");
    ///             }
    ///             events.allow_rebalance();
    ///         }
    ///     })
    ///     .detach();
    ///     for _ in 0..10 {
    ///         let records = client.poll_records(None).await;
    ///         // ... process ...
    ///         client.commit_records(&records).await?;
    ///     }
    ///     client.close().await; // commits what was polled, leaves the group
    ///     Ok(())
    /// })
    /// # }
    /// ```
}
