//! The user's handle: [`Client`] and its [`ClientBuilder`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sansa_core::client::{ConfigBuilder, ConfigError};
use sansa_core::producer::Record;
use sansa_core::session::{Produce, Sink};
use tokio::sync::mpsc;

use crate::driver::{self, Command};
use crate::produce::ProduceFuture;
use crate::stream::RecordStream;

/// Why a client could not be built.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use sansa_tokio::{Client, ConfigError, Error};
///
/// let err = Client::builder().build().await.unwrap_err();
/// assert_eq!(err, Error::Config(ConfigError::NoSeedBrokers));
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings contradict each other or are out of range; the inner
    /// error says which.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// `build` was awaited outside a tokio runtime, which the client needs
    /// for its tasks, sockets and timers.
    #[error("no tokio runtime: build the client from within a tokio runtime")]
    NoRuntime,
}

/// An async Kafka client: a cheap, cloneable handle to a driver task that
/// owns the connections and the [`sansa_core::Client`].
///
/// When the last handle is dropped the driver flushes what was produced,
/// then closes, as [`Client::close`] does; futures of records still
/// resolve.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    /// Where produce calls hand their records to the core.
    intake: Arc<driver::Intake>,
    /// Names produce calls so a [`ProduceFuture`] can cancel its record
    /// before the driver has told anyone the core's id for it. 0 is
    /// "not cancellable".
    tickets: AtomicU64,
}

impl Client {
    /// A builder with franz-go's defaults (see [`ConfigBuilder`]); at
    /// least [`ClientBuilder::seed_brokers`] must be set.
    pub fn builder() -> ClientBuilder {
        // The core takes its randomness (backoff jitter, sticky
        // partitions, the KIP-848 member id) as a seed: two clients must
        // not share one, so it comes from the OS (override with `.config`).
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
        ClientBuilder {
            config: sansa_core::Config::builder().seed(seed),
        }
    }

    sansa_core::async_client_calls!(
        produce: {
            /// ```no_run
            /// # async fn f(client: sansa_tokio::Client) -> Result<(), sansa_tokio::ProduceError> {
            /// use sansa_tokio::Record;
            ///
            /// let a = client.produce(Record::new("events", "a").with_key("k"));
            /// let b = client.produce(Record::new("events", "b").with_key("k"));
            /// let (a, b) = (a.await?, b.await?);
            /// assert!(a.offset < b.offset); // same key, same partition, in order
            /// # Ok(())
            /// # }
            /// ```
        }
        try_produce: {
            /// ```no_run
            /// # async fn f(client: sansa_tokio::Client) -> Result<(), sansa_tokio::ProduceError> {
            /// use sansa_tokio::{ProduceError, Record};
            ///
            /// match client.try_produce(Record::new("metrics", "cpu=3")).await {
            ///     Ok(delivery) => drop(delivery), // sent; result not needed
            ///     Err(ProduceError::BufferFull) => { /* drop the sample */ }
            ///     Err(e) => return Err(e),
            /// }
            /// # Ok(())
            /// # }
            /// ```
        }
        flush: {
            /// ```no_run
            /// # async fn f(client: sansa_tokio::Client) {
            /// for i in 0..10 {
            ///     let _ = client.produce(sansa_tokio::Record::new("events", format!("{i}")));
            /// }
            /// client.flush().await; // all ten are done now
            /// # }
            /// ```
        }
        close: {
            /// ```no_run
            /// # async fn f(client: sansa_tokio::Client) {
            /// client.close().await;
            /// assert!(client.is_closed());
            /// # }
            /// ```
        }
    );

    sansa_core::client_consume_methods!();

    /// The consumed records as a [`futures_core::Stream`]: each item is a
    /// record, or a partition's error (after the records fetched before
    /// it). The stream owns a handle to the client, so it can move to
    /// another task; it ends when the client is closed. Use one stream (or
    /// one polling loop) per client: each record goes to one taker.
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) {
    /// use futures_util::StreamExt;
    ///
    /// client.consume_topics(["events"]);
    /// let mut records = client.record_stream();
    /// while let Some(item) = records.next().await {
    ///     match item {
    ///         Ok(r) => println!("{}/{}@{} {:?}", r.topic, r.partition, r.offset, r.value),
    ///         Err(e) => eprintln!("{e}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn record_stream(&self) -> RecordStream {
        RecordStream::new(self.clone())
    }

    pub(crate) fn send(&self, cmd: Command) {
        // The driver only goes away after close; commands after that are
        // refused, as the calls document.
        if let Err(mpsc::error::SendError(cmd)) = self.inner.commands.send(cmd) {
            cmd.refuse();
        }
    }

    /// Whether the driver task has ended (after [`Client::close`]).
    pub fn is_closed(&self) -> bool {
        self.inner.commands.is_closed()
    }

    pub(crate) fn next_ticket(&self) -> u64 {
        self.inner.tickets.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn downgrade(&self) -> mpsc::WeakUnboundedSender<Command> {
        self.inner.commands.downgrade()
    }

    /// Asks the driver to cancel the record of `ticket`, if it is still
    /// there.
    pub(crate) fn send_cancel(commands: &mpsc::WeakUnboundedSender<Command>, ticket: u64) {
        if let Some(tx) = commands.upgrade() {
            let _ = tx.send(Command::Cancel(ticket));
        }
    }

    /// Hands a produce to the core on this thread (see [`driver::Intake`]);
    /// if the driver is gone, fails the record with
    /// [`ProduceError::Closed`].
    pub(crate) fn send_produce(
        &self,
        record: Record,
        fail_when_full: bool,
        urgent: bool,
        ticket: u64,
        sink: Sink,
    ) {
        self.inner.intake.produce(Produce {
            record,
            fail_when_full,
            urgent,
            ticket,
            waiter: sink,
        });
    }
}

/// Builds a [`Client`]: the common settings as methods, every other one
/// of [`ConfigBuilder`] through [`ClientBuilder::config`]. Defaults are
/// franz-go's and are documented on [`sansa_core::Config`].
///
/// ```no_run
/// use std::time::Duration;
/// use sansa_tokio::{Acks, Client, Compression};
///
/// # async fn run() -> Result<(), sansa_tokio::Error> {
/// let client = Client::builder()
///     .seed_brokers(["k1:9092", "k2:9092"])
///     .linger(Duration::from_millis(5))
///     .compression(Compression::Zstd)
///     .config(|c| c.metadata_max_age(Duration::from_secs(60)))
///     .build()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    config: ConfigBuilder,
}

impl ClientBuilder {
    sansa_core::client_builder_methods!();

    /// Validates the settings and starts the driver task on the current
    /// tokio runtime. Nothing connects until there is work.
    pub async fn build(self) -> Result<Client, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let config = self.config.build()?;
        let core = sansa_core::Client::new(config)?;
        let (commands, rx) = mpsc::unbounded_channel();
        let intake = driver::spawn(&runtime, core, rx);
        Ok(Client {
            inner: Arc::new(Inner {
                commands,
                intake,
                tickets: AtomicU64::new(1),
            }),
        })
    }
}

#[cfg(test)]
mod seed_tests {
    use super::Client;

    #[test]
    fn every_builder_draws_its_own_seed() {
        let seed = || {
            let builder = Client::builder().seed_brokers(["localhost:9092"]);
            builder.config.build().map(|c| c.seed).ok()
        };
        assert_ne!(seed(), seed());
    }
}
