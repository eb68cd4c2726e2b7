//! The consumer-group calls of [`Client`], blocking with a timeout:
//! commits that report their outcome, the group's events,
//! `allow_rebalance` and `abort`, from the core's
//! [`sansa_core::blocking_group_commits!`] template. The bookkeeping is
//! the core session's (`sansa_core::session::group`).

use crate::wait;
use crate::Client;

sansa_core::blocking_group_commits! {
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
}
