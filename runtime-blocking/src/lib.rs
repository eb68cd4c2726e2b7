//! `sansa-blocking`: sansa's Kafka client for programs without an async
//! runtime: std threads, blocking sockets, and calls that block (each
//! with a timeout form).
//!
//! Like the async adapters this crate holds no Kafka logic and no
//! bookkeeping: the core's [`sansa_core::session::Session`] decides
//! everything, on one driver thread. Each broker connection has a writer
//! thread and a reader thread (std has no readiness API, and a client
//! talks to a handful of brokers). A blocked caller waits on the same
//! core cells and answers the async adapters await, polled with a waker
//! that unparks its thread. No async runtime is in its dependency tree.
//!
//! ```no_run
//! use std::time::Duration;
//! use sansa_blocking::{Client, Record};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .seed_brokers(["localhost:9092"])
//!     .default_produce_topic("events")
//!     .build()?;
//! let meta = client.produce(Record::value("hello")).wait()?;
//! println!("partition {} offset {}", meta.partition, meta.offset);
//!
//! client.consume_topics(["events"]);
//! let records = client.poll_records(None, Duration::from_secs(5));
//! println!("{} records", records.len());
//! client.close();
//! # Ok(())
//! # }
//! ```

mod client;
mod conn;
mod driver;
mod group;
mod produce;
mod txn;
mod wait;

pub use client::{Client, ClientBuilder, Error};
pub use produce::{FirstError, ProduceHandle};
/// The sans-IO core this crate drives.
pub use sansa_core as core;
pub use sansa_core::client::{Acks, Config, ConfigBuilder, ConfigError};
pub use sansa_core::compression::Compression;
pub use sansa_core::consumer::{
    ConsumedRecord, ConsumerConfig, FetchError, FetchedPartition, IsolationLevel, ResetPolicy,
    StartOffset,
};
pub use sansa_core::group::{CommitOutcome, GroupConfig, GroupEvent};
pub use sansa_core::producer::{ProduceError, Record, RecordMeta};
pub use sansa_core::session::{CommitFailure, CommitResult};
pub use sansa_core::txn::{GroupMetadata, TransactionOutcome, TxnEnd, TxnError};
pub use txn::GroupTransactSession;
