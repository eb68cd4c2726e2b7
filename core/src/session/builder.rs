//! The settings every adapter's `ClientBuilder` offers as methods, written
//! once: an adapter's builder holds a `config: ConfigBuilder` field and
//! invokes [`client_builder_methods!`](crate::client_builder_methods)
//! inside its `impl`, so the three adapters cannot drift apart.

/// Expands to the common `ClientBuilder` setters (`config`,
/// `seed_brokers`, `client_id`, `linger`, `compression`, `acks`, ...),
/// each forwarding to [`ConfigBuilder`](crate::client::ConfigBuilder).
/// The builder type must have a field `config: ConfigBuilder`.
///
/// ```
/// use sansa_core::client::ConfigBuilder;
///
/// #[derive(Debug)]
/// pub struct ClientBuilder {
///     config: ConfigBuilder,
/// }
///
/// impl ClientBuilder {
///     sansa_core::client_builder_methods!();
/// }
///
/// let b = ClientBuilder { config: sansa_core::Config::builder() }
///     .seed_brokers(["localhost:9092"])
///     .linger(std::time::Duration::ZERO);
/// assert_eq!(b.config.build()?.linger, std::time::Duration::ZERO);
/// # Ok::<(), sansa_core::client::ConfigError>(())
/// ```
#[macro_export]
macro_rules! client_builder_methods {
    () => {
        /// Any setting of the core's `ConfigBuilder`, for those without a
        /// method here.
        pub fn config(
            mut self,
            f: impl FnOnce($crate::client::ConfigBuilder) -> $crate::client::ConfigBuilder,
        ) -> Self {
            self.config = f(self.config);
            self
        }

        /// Brokers to bootstrap from, `host:port`. Required.
        pub fn seed_brokers<I, S>(self, brokers: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.config(|c| c.seed_brokers(brokers))
        }

        /// The client id in request headers. Default `sansa`.
        pub fn client_id(self, id: impl Into<String>) -> Self {
            self.config(|c| c.client_id(id))
        }

        /// How long a batch may wait for more records. Default 10 ms.
        pub fn linger(self, linger: ::std::time::Duration) -> Self {
            self.config(|c| c.linger(linger))
        }

        /// The batch codec. Default snappy.
        pub fn compression(self, codec: $crate::compression::Compression) -> Self {
            self.config(|c| c.compression(codec))
        }

        /// Required acknowledgements. Default all; anything else needs
        /// `disable_idempotent_write`.
        pub fn acks(self, acks: $crate::client::Acks) -> Self {
            self.config(|c| c.acks(acks))
        }

        /// Turns idempotent writes off (and the in-flight limit down to 1).
        pub fn disable_idempotent_write(self) -> Self {
            self.config($crate::client::ConfigBuilder::disable_idempotent_write)
        }

        /// The topic of records that name none.
        pub fn default_produce_topic(self, topic: impl Into<String>) -> Self {
            self.config(|c| c.default_produce_topic(topic))
        }

        /// Records buffered at most; beyond it `try_produce` fails and
        /// `produce` waits. Default 10,000.
        pub fn max_buffered_records(self, n: usize) -> Self {
            self.config(|c| c.max_buffered_records(n))
        }

        /// Bytes (keys, values, headers) buffered at most. Default
        /// unlimited.
        pub fn max_buffered_bytes(self, n: usize) -> Self {
            self.config(|c| c.max_buffered_bytes(Some(n)))
        }

        /// How often a record may be retried. Default unlimited.
        pub fn record_retries(self, n: u32) -> Self {
            self.config(|c| c.record_retries(Some(n)))
        }

        /// How long a record may take from its first send to its
        /// acknowledgement before it fails (when failing is safe).
        /// Default unlimited.
        pub fn record_delivery_timeout(self, timeout: ::std::time::Duration) -> Self {
            self.config(|c| c.record_delivery_timeout(Some(timeout)))
        }

        /// How long a request may wait for its answer before its
        /// connection is dropped; also bounds a TCP connect. Default 30 s.
        pub fn request_timeout(self, timeout: ::std::time::Duration) -> Self {
            self.config(|c| c.request_timeout(timeout))
        }

        /// Sends records only on `flush`, never on linger or a full
        /// batch. Default off.
        pub fn manual_flushing(self) -> Self {
            self.config(|c| c.manual_flushing(true))
        }

        /// Consumer settings (fetch sizes and waits, isolation, start and
        /// reset offsets, buffering bound).
        pub fn consumer(self, consumer: $crate::consumer::ConsumerConfig) -> Self {
            self.config(|c| c.consumer(consumer))
        }

        /// Joins this consumer group when consuming topics (franz-go's
        /// `ConsumerGroup`): `consume_topics` then consumes what the group
        /// assigns. The [`GroupConfig`]($crate::group::GroupConfig) holds
        /// the balancers, timeouts, auto-commit, static membership
        /// (`instance_id`), `require_rebalance_ack`,
        /// `block_rebalance_on_poll` and `max_poll_interval`. Default none.
        pub fn consumer_group(self, group: $crate::group::GroupConfig) -> Self {
            self.config(|c| c.consumer_group(group))
        }

        /// Produces inside transactions with this transactional id
        /// (`begin_transaction` / `end_transaction`, or a
        /// `GroupTransactSession`); requires idempotent writes. Default
        /// none.
        pub fn transactional_id(self, id: impl Into<String>) -> Self {
            self.config(|c| c.transactional_id(id))
        }

        /// How long the coordinator lets a transaction stay open before
        /// it aborts it (`transaction.timeout.ms`, at most the broker's
        /// `transaction.max.timeout.ms`). Default 40 s.
        pub fn transaction_timeout(self, timeout: ::std::time::Duration) -> Self {
            self.config(|c| c.transaction_timeout(timeout))
        }

        /// The partitioner of every topic. Default: Java-compatible
        /// murmur2 for keyed records, sticky uniform bytes for unkeyed
        /// ones.
        pub fn partitioner(
            self,
            partitioner: impl $crate::producer::partitioner::PartitionerFactory + 'static,
        ) -> Self {
            self.config(|c| c.partitioner(partitioner))
        }
    };
}

/// Expands to a client handle's consumer commands (`consume_topics`,
/// `consume_regex`, `consume_partitions`, `pause`, `resume`), which only
/// hand a [`Command`](crate::session::Command) to the driver. The handle
/// must have a method `fn send(&self, cmd: Command<W>)` that ignores a
/// closed driver.
#[macro_export]
macro_rules! client_consume_methods {
    () => {
        /// Consumes every partition of these topics (and partitions added
        /// later) from the configured start offset.
        pub fn consume_topics<I, S>(&self, topics: I)
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            let topics = topics.into_iter().map(Into::into).collect();
            self.send($crate::session::Command::ConsumeTopics(topics));
        }

        /// Consumes every topic whose whole name matches one of
        /// `patterns`, including topics created later; a bad pattern is
        /// refused here.
        pub fn consume_regex<I, S>(&self, patterns: I) -> Result<(), $crate::regex::Error>
        where
            I: IntoIterator<Item = S>,
            S: AsRef<str>,
        {
            let patterns = $crate::session::check_patterns(patterns)?;
            self.send($crate::session::Command::ConsumeRegex(patterns));
            Ok(())
        }

        /// Consumes exactly these partitions from these offsets.
        pub fn consume_partitions(
            &self,
            partitions: ::std::collections::BTreeMap<
                String,
                ::std::collections::BTreeMap<i32, $crate::consumer::StartOffset>,
            >,
        ) {
            self.send($crate::session::Command::ConsumePartitions(partitions));
        }

        /// Pauses fetching a topic's partitions (all with `None`);
        /// records buffered for them are dropped and fetched again on
        /// resume.
        pub fn pause(&self, topic: &str, partitions: Option<&[i32]>) {
            let partitions = partitions.map(<[i32]>::to_vec);
            self.send($crate::session::Command::Pause(
                topic.into(),
                partitions,
                true,
            ));
        }

        /// Resumes what `pause` paused.
        pub fn resume(&self, topic: &str, partitions: Option<&[i32]>) {
            let partitions = partitions.map(<[i32]>::to_vec);
            self.send($crate::session::Command::Pause(
                topic.into(),
                partitions,
                false,
            ));
        }
    };
}
