//! `sansa-smol`: sansa's async Kafka client on smol / async-io, which
//! also runs under async-std (built on the same async-io reactor).
//!
//! Like `sansa-tokio` this crate holds no Kafka logic and no
//! bookkeeping: the core's [`sansa_core::session::Session`] decides
//! everything; what is here is sockets (async-net), a timer (async-io),
//! channels (async-channel) and the futures users await. The API is
//! `sansa-tokio`'s, transactions and [`GroupTransactSession`] included.
//!
//! ```no_run
//! use sansa_smol::{Client, Record};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     let client = Client::builder()
//!         .seed_brokers(["localhost:9092"])
//!         .default_produce_topic("events")
//!         .build()?;
//!     let meta = client.produce(Record::value("hello")).await?;
//!     println!("partition {} offset {}", meta.partition, meta.offset);
//!     client.close().await;
//!     Ok(())
//! })
//! # }
//! ```

mod client;
mod conn;
mod driver;
mod group;
mod produce;
mod txn;

pub use client::{Client, ClientBuilder, Error};
pub use produce::{FirstError, ProduceFuture};
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
