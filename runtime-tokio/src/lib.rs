//! `sansa-tokio`: sansa's async Kafka client on tokio.
//!
//! This crate holds no Kafka logic. Every decision (which broker to
//! connect to, what to send, when to retry, when a record is delivered or
//! failed) is made by the sans-IO [`sansa_core::Client`]. What lives here
//! is the part the core may not do: sockets, clocks and tasks.
//!
//! - One *driver* task drives the core client. A produce call hands its
//!   record to the core on the caller's thread, under a lock the driver
//!   takes for each burst ([`sansa_core::session::SharedSession`]), and
//!   wakes the driver only when the record opens or readies a batch; other
//!   calls reach the driver over a command channel. The driver feeds them
//!   to the core, drains the core's outputs (open a connection, write
//!   bytes, close, an event) and sleeps until the core's next deadline or
//!   the next command, wake-up or socket event.
//! - Each connection is a task that connects (`TCP_NODELAY` on), then
//!   writes what the driver sends it, plus a reader task that hands what it
//!   reads back to the driver. A slow socket never blocks the driver.
//! - Results travel back through the core's cells: a [`ProduceFuture`]
//!   per record waits on a waker slot the driver fills (a burst of
//!   results wakes it once), a [`Client::flush`] on the core's answer.
//!
//! ```no_run
//! use sansa_tokio::{Client, Record};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .seed_brokers(["localhost:9092"])
//!     .default_produce_topic("events")
//!     .build()
//!     .await?;
//!
//! // Resolves when the broker has the record.
//! let meta = client.produce(Record::value("hello")).await?;
//! println!("partition {} offset {}", meta.partition, meta.offset);
//!
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! Records are taken in call order: [`Client::produce`] hands the record to
//! the driver before it returns, so the future need not be polled for the
//! record to be sent, and dropping it does not cancel the record.
//!
//! - Backpressure: when `max_buffered_records` is reached, records wait
//!   inside the client for room. Await [`ProduceFuture::buffered`], or keep
//!   a bounded window of futures and await the oldest, to slow a producer
//!   down to the cluster's pace; [`Client::try_produce`] refuses instead.
//! - Many records, one answer: [`FirstError`] is franz-go's
//!   `FirstErrPromise`.
//!
//! ```no_run
//! # async fn f(client: sansa_tokio::Client) -> Result<(), sansa_tokio::ProduceError> {
//! use sansa_tokio::{FirstError, Record};
//!
//! let mut delivery = client.produce(Record::new("events", "a"));
//! delivery.buffered().await?; // waits here while the buffer is full
//! let batch = FirstError::new();
//! for i in 0..1000 {
//!     batch.produce(&client, Record::new("events", format!("{i}")));
//! }
//! batch.wait().await?; // every record delivered, or the first error
//! delivery.await?;
//! # Ok(())
//! # }
//! ```
//!
//! - Consuming: [`Client::poll_fetches`] (by partition, with errors),
//!   [`Client::poll_records`] (flat), or [`Client::record_stream`], a
//!   `futures_core::Stream` of records and [`PartitionError`]s. Records
//!   own their bytes (`Bytes`), so they outlive the poll and the client.
//! - Consumer groups: [`ClientBuilder::consumer_group`] with a
//!   [`GroupConfig`]; `consume_topics` then joins and consumes what the
//!   group assigns. [`Client::commit_records`] and
//!   [`Client::commit_uncommitted_offsets`] report what the coordinator
//!   holds; rebalances (assigned, revoked, lost) come from
//!   [`Client::next_group_event`] and, with `require_rebalance_ack`, wait
//!   for [`Client::allow_rebalance`]; [`Client::abort`] stops as a crash
//!   would.
//! - Transactions: with [`ClientBuilder::transactional_id`],
//!   [`Client::begin_transaction`] and [`Client::end_transaction`]
//!   (commit or abort) group records into atomic transactions;
//!   [`GroupTransactSession`] (from
//!   [`ClientBuilder::build_group_transact_session`]) consumes from a
//!   group, produces and commits the consumed offsets in one transaction,
//!   aborting and rewinding whenever a commit is doubtful.
//! - Shutdown: [`Client::close`] flushes, commits and leaves the group
//!   (when in one), then closes every connection and ends the driver.
//!   Dropping the last handle does the same in the background.
//! - Logs: the driver runs in a `sansa` span (with the client id), each
//!   connection in a `conn` span (with its id and address); connects,
//!   closes and failures are `tracing` events.

mod client;
mod conn;
mod driver;
mod group;
mod produce;
mod stream;
mod txn;

pub use client::{Client, ClientBuilder, Error};
pub use produce::{FirstError, ProduceFuture};
pub use sansa_core::consumer::{
    ConsumedRecord, ConsumerConfig, FetchError, FetchedPartition, IsolationLevel, ResetPolicy,
    StartOffset,
};
pub use sansa_core::session::PartitionError;
pub use stream::RecordStream;
pub use txn::GroupTransactSession;

/// The sans-IO core this crate drives, for its configuration types and
/// protocol.
pub use sansa_core as core;
pub use sansa_core::client::{Acks, Config, ConfigBuilder, ConfigError};
pub use sansa_core::compression::Compression;
pub use sansa_core::group::{CommitOutcome, GroupConfig, GroupEvent};
pub use sansa_core::producer::{ProduceError, Record, RecordMeta, Topic};
pub use sansa_core::session::{CommitFailure, CommitResult};
pub use sansa_core::txn::{GroupMetadata, TransactionOutcome, TxnEnd, TxnError};
