//! The user's handle: [`Client`] and its [`ClientBuilder`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use sansa_core::client::{Acks, ConfigBuilder, ConfigError};
use sansa_core::compression::Compression;
use sansa_core::consumer::{ConsumedRecord, ConsumerConfig, FetchedPartition, StartOffset};
use sansa_core::producer::partitioner::PartitionerFactory;
use sansa_core::producer::{ProduceError, Record, RecordMeta};
use sansa_core::regex;
use tokio::sync::{mpsc, oneshot};

use crate::driver::{self, Command, ProduceCommand};
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
///
/// ```no_run
/// use sansa_tokio::{Client, Record};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder()
///     .seed_brokers(["localhost:9092"])
///     .build()
///     .await?;
/// let meta = client.produce_sync(Record::new("events", "hello")).await?;
/// println!("written at offset {}", meta.offset);
/// client.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    /// Names produce calls so a [`ProduceFuture`] can cancel its record
    /// before the driver has told anyone the core's id for it. 0 is
    /// "not cancellable".
    tickets: AtomicU64,
}

impl Client {
    /// A builder with franz-go's defaults (see [`ConfigBuilder`]); at
    /// least [`ClientBuilder::seed_brokers`] must be set.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sansa_tokio::Error> {
    /// let client = sansa_tokio::Client::builder()
    ///     .seed_brokers(["localhost:9092"])
    ///     .client_id("billing")
    ///     .build()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            config: sansa_core::Config::builder(),
        }
    }

    /// Produces `record`; the future resolves when it is delivered or
    /// failed.
    ///
    /// The record is handed to the client before this returns, so records
    /// keep the order of the calls whether or not, and in whatever order,
    /// their futures are awaited. When `max_buffered_records` is reached
    /// the record waits inside the client for space (see
    /// [`ProduceFuture::buffered`] to wait for that before producing
    /// more). A record naming no topic goes to the default produce topic.
    ///
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
    pub fn produce(&self, record: Record) -> ProduceFuture {
        ProduceFuture::start(self, record, false, false)
    }

    /// Consumes every partition of these topics (and partitions added
    /// later) from the configured start offset; read with
    /// [`Client::poll_fetches`] or [`Client::poll_records`].
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) {
    /// client.consume_topics(["events"]);
    /// for r in client.poll_records(Some(100)).await {
    ///     println!("{}/{} {:?}", r.partition, r.offset, r.value);
    /// }
    /// # }
    /// ```
    pub fn consume_topics<I, S>(&self, topics: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics = topics.into_iter().map(Into::into).collect();
        self.send(Command::ConsumeTopics(topics));
    }

    /// Consumes every topic whose whole name matches one of `patterns`,
    /// including topics created later and dropping deleted ones.
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) -> Result<(), sansa_tokio::core::regex::Error> {
    /// client.consume_regex(["logs-.*"])?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn consume_regex<I, S>(&self, patterns: I) -> Result<(), regex::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        // Checked here so a bad pattern is the caller's error, not a log
        // line in the driver.
        let patterns: Vec<String> = patterns
            .into_iter()
            .map(|p| p.as_ref().to_string())
            .collect();
        for p in &patterns {
            regex::Regex::new(p)?;
        }
        self.send(Command::ConsumeRegex(patterns));
        Ok(())
    }

    /// Consumes exactly these partitions from these offsets.
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) {
    /// use std::collections::BTreeMap;
    /// use sansa_tokio::StartOffset;
    ///
    /// let mut parts = BTreeMap::new();
    /// parts.insert("events".to_string(), BTreeMap::from([(0, StartOffset::At(42))]));
    /// client.consume_partitions(parts);
    /// # }
    /// ```
    pub fn consume_partitions(&self, partitions: BTreeMap<String, BTreeMap<i32, StartOffset>>) {
        self.send(Command::ConsumePartitions(partitions));
    }

    /// Pauses fetching a topic's partitions (all with `None`); records
    /// already buffered for them are dropped and fetched again on resume.
    pub fn pause(&self, topic: &str, partitions: Option<&[i32]>) {
        self.send(Command::Pause(
            topic.to_string(),
            partitions.map(<[i32]>::to_vec),
            true,
        ));
    }

    /// Resumes what [`Client::pause`] paused.
    pub fn resume(&self, topic: &str, partitions: Option<&[i32]>) {
        self.send(Command::Pause(
            topic.to_string(),
            partitions.map(<[i32]>::to_vec),
            false,
        ));
    }

    /// Waits for fetched records and returns them by partition, at most
    /// `max_records` (all buffered with `None`); per-partition errors come
    /// in the same list. Empty only when the client is closed.
    pub async fn poll_fetches(&self, max_records: Option<usize>) -> Vec<FetchedPartition> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::PollFetches(max_records, tx));
        rx.await.unwrap_or_default()
    }

    /// Like [`Client::poll_fetches`], flattened to records in order per
    /// partition (partition errors are logged and skipped; use
    /// `poll_fetches` to see them).
    pub async fn poll_records(&self, max_records: Option<usize>) -> Vec<ConsumedRecord> {
        let mut out = Vec::new();
        for f in self.poll_fetches(max_records).await {
            if let Some(e) = &f.error {
                tracing::warn!(topic = &*f.topic, partition = f.partition, error = %e, "partition error");
            }
            out.extend(f.records);
        }
        out
    }

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
        // no-ops, as the calls document.
        let _ = self.inner.commands.send(cmd);
    }

    /// Produces `record` without lingering and waits for the result: one
    /// record, sent as soon as the connection allows.
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) -> Result<(), sansa_tokio::ProduceError> {
    /// let meta = client.produce_sync(sansa_tokio::Record::new("events", "now")).await?;
    /// println!("{}/{}@{}", meta.topic, meta.partition, meta.offset);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn produce_sync(&self, record: Record) -> Result<RecordMeta, ProduceError> {
        ProduceFuture::start(self, record, false, true).await
    }

    /// Produces `record` unless the buffer is full: fails with
    /// [`ProduceError::BufferFull`] at once (after one round trip to the
    /// driver, never waiting on the network), else returns the record's
    /// future.
    ///
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
    pub async fn try_produce(&self, record: Record) -> Result<ProduceFuture, ProduceError> {
        let mut delivery = ProduceFuture::start(self, record, true, false);
        delivery.buffered().await?;
        Ok(delivery)
    }

    /// Sends everything buffered without waiting for linger, and waits
    /// until every record produced before the call is delivered or failed.
    /// With `manual_flushing`, this is what sends records at all.
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) {
    /// for i in 0..10 {
    ///     let _ = client.produce(sansa_tokio::Record::new("events", format!("{i}")));
    /// }
    /// client.flush().await; // all ten are done now
    /// # }
    /// ```
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.commands.send(Command::Flush(tx)).is_ok() {
            // An error means the driver ended, which fails every record.
            let _ = rx.await;
        }
    }

    /// Flushes, then closes every connection and stops the driver task.
    /// Records produced after the close began fail with
    /// [`ProduceError::Closed`], as does any call on any clone of this
    /// handle afterwards. Closing twice is harmless.
    ///
    /// This waits as long as the flush does: with unlimited retries
    /// (the default) and no broker reachable, that is until one is. Set
    /// `record_delivery_timeout` or wrap the call in
    /// [`tokio::time::timeout`] to bound it; the close still completes in
    /// the background.
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) {
    /// client.close().await;
    /// assert!(client.is_closed());
    /// # }
    /// ```
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.commands.send(Command::Close(Some(tx))).is_ok() {
            let _ = rx.await;
        }
    }

    /// Whether the driver task has ended (after [`Client::close`]).
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) {
    /// assert!(!client.is_closed());
    /// client.close().await;
    /// assert!(client.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.commands.is_closed()
    }

    pub(crate) fn next_ticket(&self) -> u64 {
        self.inner.tickets.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn downgrade(&self) -> mpsc::WeakUnboundedSender<Command> {
        self.inner.commands.downgrade()
    }

    /// Hands a produce to the driver; if it is gone, fails the record with
    /// [`ProduceError::Closed`] here.
    pub(crate) fn send_produce(&self, cmd: ProduceCommand) {
        if let Err(mpsc::error::SendError(Command::Produce(cmd))) =
            self.inner.commands.send(Command::Produce(cmd))
        {
            cmd.refuse(ProduceError::Closed);
        }
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
    /// Any setting of the core's [`ConfigBuilder`], for those without a
    /// method here.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = sansa_tokio::Client::builder()
    ///     .config(|c| c.conn_idle_timeout(Duration::from_secs(60)).seed(7));
    /// ```
    pub fn config(mut self, f: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Self {
        self.config = f(self.config);
        self
    }

    /// Brokers to bootstrap from, `host:port`. Required.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder().seed_brokers(["localhost:9092"]);
    /// ```
    pub fn seed_brokers<I, S>(self, brokers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config(|c| c.seed_brokers(brokers))
    }

    /// The client id in request headers. Default `sansa`.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder().client_id("billing");
    /// ```
    pub fn client_id(self, id: impl Into<String>) -> Self {
        self.config(|c| c.client_id(id))
    }

    /// How long a batch may wait for more records. Default 10 ms.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder().linger(std::time::Duration::ZERO);
    /// ```
    pub fn linger(self, linger: Duration) -> Self {
        self.config(|c| c.linger(linger))
    }

    /// The batch codec. Default snappy.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder().compression(sansa_tokio::Compression::Lz4);
    /// ```
    pub fn compression(self, codec: Compression) -> Self {
        self.config(|c| c.compression(codec))
    }

    /// Required acknowledgements. Default all; anything else needs
    /// [`ClientBuilder::disable_idempotent_write`].
    ///
    /// ```
    /// use sansa_tokio::{Acks, Client};
    ///
    /// let builder = Client::builder().disable_idempotent_write().acks(Acks::Leader);
    /// ```
    pub fn acks(self, acks: Acks) -> Self {
        self.config(|c| c.acks(acks))
    }

    /// Turns idempotent writes off (and the in-flight limit down to 1).
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder().disable_idempotent_write();
    /// ```
    pub fn disable_idempotent_write(self) -> Self {
        self.config(ConfigBuilder::disable_idempotent_write)
    }

    /// The topic of records that name none.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder().default_produce_topic("events");
    /// ```
    pub fn default_produce_topic(self, topic: impl Into<String>) -> Self {
        self.config(|c| c.default_produce_topic(topic))
    }

    /// Records buffered at most; beyond it `try_produce` fails and
    /// `produce` waits. Default 10,000.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder().max_buffered_records(1_000);
    /// ```
    pub fn max_buffered_records(self, n: usize) -> Self {
        self.config(|c| c.max_buffered_records(n))
    }

    /// Bytes (keys, values, headers) buffered at most. Default unlimited.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder().max_buffered_bytes(64 << 20);
    /// ```
    pub fn max_buffered_bytes(self, n: usize) -> Self {
        self.config(|c| c.max_buffered_bytes(Some(n)))
    }

    /// How often a record may be retried. Default unlimited.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder().record_retries(10);
    /// ```
    pub fn record_retries(self, n: u32) -> Self {
        self.config(|c| c.record_retries(Some(n)))
    }

    /// How long a record may take from its first send to its
    /// acknowledgement before it fails (when failing is safe). Default
    /// unlimited.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder()
    ///     .record_delivery_timeout(std::time::Duration::from_secs(30));
    /// ```
    pub fn record_delivery_timeout(self, timeout: Duration) -> Self {
        self.config(|c| c.record_delivery_timeout(Some(timeout)))
    }

    /// How long a request may wait for its answer before its connection is
    /// dropped; also bounds a TCP connect. Default 30 s.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder()
    ///     .request_timeout(std::time::Duration::from_secs(10));
    /// ```
    pub fn request_timeout(self, timeout: Duration) -> Self {
        self.config(|c| c.request_timeout(timeout))
    }

    /// Sends records only on [`Client::flush`], never on linger or a full
    /// batch. Default off.
    ///
    /// ```
    /// let builder = sansa_tokio::Client::builder().manual_flushing();
    /// ```
    pub fn manual_flushing(self) -> Self {
        self.config(|c| c.manual_flushing(true))
    }

    /// Consumer settings (fetch sizes and waits, isolation, start and reset
    /// offsets, buffering bound).
    ///
    /// ```
    /// use sansa_tokio::{ConsumerConfig, IsolationLevel};
    ///
    /// let builder = sansa_tokio::Client::builder().consumer(ConsumerConfig {
    ///     isolation: IsolationLevel::ReadCommitted,
    ///     ..Default::default()
    /// });
    /// ```
    pub fn consumer(self, consumer: ConsumerConfig) -> Self {
        self.config(|c| c.consumer(consumer))
    }

    /// Joins this consumer group when consuming topics (franz-go's
    /// `ConsumerGroup`); see `GroupConfig` for balancers, timeouts,
    /// auto-commit, static membership, `require_rebalance_ack` and
    /// `max_poll_interval`. Default none.
    pub fn consumer_group(self, group: sansa_core::group::GroupConfig) -> Self {
        self.config(|c| c.consumer_group(group))
    }

    /// The partitioner of every topic. Default: Java-compatible murmur2
    /// for keyed records, sticky uniform bytes for unkeyed ones.
    ///
    /// ```
    /// use sansa_tokio::core::producer::partitioner::UniformBytesPartitioner;
    ///
    /// let builder = sansa_tokio::Client::builder().partitioner(UniformBytesPartitioner::default());
    /// ```
    pub fn partitioner(self, partitioner: impl PartitionerFactory + 'static) -> Self {
        self.config(|c| c.partitioner(partitioner))
    }

    /// Validates the settings and starts the driver task on the current
    /// tokio runtime. Nothing connects until there is work.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sansa_tokio::Error> {
    /// let client = sansa_tokio::Client::builder()
    ///     .seed_brokers(["localhost:9092"])
    ///     .build()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn build(self) -> Result<Client, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let config = self.config.build()?;
        let core = sansa_core::Client::new(config)?;
        let (commands, rx) = mpsc::unbounded_channel();
        driver::spawn(&runtime, core, rx);
        Ok(Client {
            inner: Arc::new(Inner {
                commands,
                tickets: AtomicU64::new(1),
            }),
        })
    }
}
