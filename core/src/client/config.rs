//! Client settings: a builder with documented defaults, and validation that
//! rejects contradictions before anything runs.
//!
//! Defaults follow franz-go (see `semantics.md`): idempotent writes with
//! acks=all, unlimited record retries, 10 ms linger, 10,000 buffered
//! records, 1,000,012-byte batches, snappy compression.

use std::time::Duration;

use crate::cluster::Backoff;
use crate::compression::Compression;
use crate::conn::ConnConfig;
use crate::consumer::ConsumerConfig;
use crate::group::GroupConfig;
use crate::producer::partitioner::{DefaultPartitioner, PartitionerFactory};
use std::sync::Arc;

/// How many replicas must have a record before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Every in-sync replica (`-1`). Required by idempotence.
    #[default]
    All,
    /// The leader alone (`1`).
    Leader,
    /// None: the broker does not even answer (`0`).
    None,
}

impl Acks {
    /// The value of the ProduceRequest `acks` field.
    pub const fn wire(self) -> i16 {
        match self {
            Acks::All => -1,
            Acks::Leader => 1,
            Acks::None => 0,
        }
    }
}

/// Why a configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No seed broker was given.
    #[error("at least one seed broker is required")]
    NoSeedBrokers,
    /// A seed broker is not `host:port`.
    #[error("seed broker {0:?} is not host:port")]
    BadSeedBroker(String),
    /// Idempotence needs acks=all.
    #[error("idempotent writes require acks=all; disable idempotence to use acks={0:?}")]
    IdempotenceNeedsAcksAll(Acks),
    /// A transactional id needs idempotence.
    #[error("a transactional id requires idempotent writes")]
    TransactionsNeedIdempotence,
    /// A setting is out of its range.
    #[error("{setting} must be {rule}")]
    OutOfRange {
        /// The setting.
        setting: &'static str,
        /// What it must be.
        rule: &'static str,
    },
}

/// Every setting of a client. Build with [`Config::builder`].
///
/// ```
/// use std::time::Duration;
/// use sansa_core::client::Config;
///
/// let config = Config::builder()
///     .seed_brokers(["localhost:9092"])
///     .linger(Duration::from_millis(5))
///     .default_produce_topic("events")
///     .build()
///     .expect("valid");
/// assert!(config.idempotent);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// Brokers to bootstrap from, `host:port`.
    pub seed_brokers: Vec<String>,
    /// Connection settings (client id, frame limit, request timeout).
    pub conn: ConnConfig,
    /// Backoff between retries of requests and reconnects. Default 250 ms
    /// doubling to 5 s, jitter ±20%.
    pub retry_backoff: Backoff,
    /// Close connections idle this long. Default 20 s.
    pub conn_idle_timeout: Duration,
    /// Refresh metadata at least this often. Default 5 min.
    pub metadata_max_age: Duration,
    /// Refresh metadata at most this often. Default 5 s.
    pub metadata_min_age: Duration,
    /// Let Metadata requests create missing topics (off by default:
    /// producing to a typo should fail, not create a topic).
    pub allow_auto_topic_creation: bool,
    /// Required acknowledgements. Default all.
    pub acks: Acks,
    /// Idempotent writes (KIP-98). Default on.
    pub idempotent: bool,
    /// How long a batch may wait for more records. Default 10 ms. Not
    /// while the buffer is full (`max_buffered_records` or
    /// `max_buffered_bytes`): no record could join, so batches go at once.
    pub linger: Duration,
    /// Never send on a timer or a full batch: only on `flush`. Default off.
    pub manual_flushing: bool,
    /// Records buffered at most; beyond it `try_produce` fails and
    /// `produce` waits. Default 10,000.
    pub max_buffered_records: usize,
    /// Bytes (keys + values + headers) buffered at most. Default none.
    pub max_buffered_bytes: Option<usize>,
    /// Largest batch, before compression. Default 1,000,012 (Kafka's
    /// default `max.message.bytes` with its overhead).
    pub batch_max_bytes: usize,
    /// Codec for batches. Default snappy.
    pub compression: Compression,
    /// How often a record may be retried; `None` is unlimited (default).
    pub record_retries: Option<u32>,
    /// How long a record may take from its batch's first send (or, if it
    /// was never sent, from the batch's creation) to its acknowledgement
    /// before it is failed, when that is safe (never while the outcome of a
    /// send is in doubt). Default none.
    pub record_delivery_timeout: Option<Duration>,
    /// How many metadata answers may say a produced-to topic does not exist
    /// before its records fail. Default 4.
    pub unknown_topic_retries: u32,
    /// The broker-side timeout in Produce requests. Default 10 s.
    pub produce_request_timeout: Duration,
    /// Produce requests in flight per broker. Default 5 with idempotence
    /// (Kafka's limit for ordering guarantees), 1 without.
    pub max_produce_requests_in_flight: usize,
    /// Topic for records that name none.
    pub default_produce_topic: Option<String>,
    /// Chooses each record's partition. Default: murmur2 of the key for
    /// keyed records (Java-compatible), sticky uniform bytes (64 KiB,
    /// adaptive) for unkeyed ones.
    pub partitioner: Arc<dyn PartitionerFactory>,
    /// Transactional id; requires idempotence. With it, records are
    /// produced inside transactions (`Client::begin_transaction`).
    pub transactional_id: Option<String>,
    /// How long the coordinator lets a transaction stay open before it
    /// aborts it (`transaction.timeout.ms`, sent with InitProducerId; at
    /// most the broker's `transaction.max.timeout.ms`). Default 40 s, as
    /// franz-go.
    pub transaction_timeout: Duration,
    /// Consumer settings (fetch sizes and waits, isolation, start and reset
    /// offsets, buffering bound).
    pub consumer: ConsumerConfig,
    /// Consumer-group membership: with it, `consume_topics` joins the
    /// group and consumes what the group assigns. Default none.
    pub group: Option<GroupConfig>,
    /// Run as a group-transact session (franz-go's
    /// `GroupTransactSession`, needs `group` and `transactional_id`):
    /// offsets commit only inside transactions (the group's auto-commit
    /// and commit-on-revoke are turned off), `end_transaction(Commit)`
    /// tries to commit the transaction with the offsets of everything
    /// polled in it and aborts instead whenever a commit is doubtful (a
    /// revoke or loss during the transaction, a failed offset commit),
    /// and an abort rewinds consumption to the committed offsets.
    /// Revokes and losses met in a transaction wait for its end; the
    /// session acknowledges rebalance steps itself. Default off.
    pub group_transact_session: bool,
    /// FOR TESTS ONLY (the simulator's proof that its exactly-once
    /// checker bites): a group-transact session that ignores revokes and
    /// commits anyway. Never set it in an application.
    #[doc(hidden)]
    pub sabotage_commit_despite_revoke: bool,
    /// Seed of every random choice the client makes (backoff jitter,
    /// sticky partitions, the KIP-848 member id). The same seed and inputs
    /// give the same outputs. Members of one consumer group with
    /// [`GroupProtocol::Consumer`](crate::group::GroupProtocol) need
    /// different seeds: KIP-1082's member id is drawn from it, and two
    /// members with one id are one member to the coordinator. A driver in
    /// production seeds from the operating system's randomness.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed_brokers: Vec::new(),
            conn: ConnConfig::default(),
            retry_backoff: Backoff::default(),
            conn_idle_timeout: Duration::from_secs(20),
            metadata_max_age: Duration::from_secs(300),
            metadata_min_age: Duration::from_secs(5),
            allow_auto_topic_creation: false,
            acks: Acks::All,
            idempotent: true,
            linger: Duration::from_millis(10),
            manual_flushing: false,
            max_buffered_records: 10_000,
            max_buffered_bytes: None,
            batch_max_bytes: 1_000_012,
            compression: Compression::Snappy,
            record_retries: None,
            record_delivery_timeout: None,
            unknown_topic_retries: 4,
            produce_request_timeout: Duration::from_secs(10),
            max_produce_requests_in_flight: 5,
            default_produce_topic: None,
            partitioner: Arc::new(DefaultPartitioner::default()),
            transactional_id: None,
            transaction_timeout: Duration::from_secs(40),
            consumer: ConsumerConfig::default(),
            group: None,
            group_transact_session: false,
            sabotage_commit_despite_revoke: false,
            seed: 0x5a45_5341,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }

    /// Checks the settings agree with each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.seed_brokers.is_empty() {
            return Err(ConfigError::NoSeedBrokers);
        }
        for b in &self.seed_brokers {
            let ok = b
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(ConfigError::BadSeedBroker(b.clone()));
            }
        }
        if self.idempotent && self.acks != Acks::All {
            return Err(ConfigError::IdempotenceNeedsAcksAll(self.acks));
        }
        if self.transactional_id.is_some() && !self.idempotent {
            return Err(ConfigError::TransactionsNeedIdempotence);
        }
        let range = |ok: bool, setting, rule| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange { setting, rule })
            }
        };
        range(
            !self.group_transact_session
                || (self.group.is_some() && self.transactional_id.is_some()),
            "group_transact_session",
            "needs a group and a transactional id",
        )?;
        range(
            self.transactional_id.as_deref() != Some(""),
            "transactional_id",
            "non-empty when set",
        )?;
        range(
            self.transaction_timeout >= Duration::from_millis(1)
                && self.transaction_timeout.as_millis() <= i32::MAX as u128,
            "transaction_timeout",
            "between 1 ms and i32::MAX ms",
        )?;
        range(
            self.max_buffered_records > 0,
            "max_buffered_records",
            "at least 1",
        )?;
        range(
            self.batch_max_bytes >= 128 && self.batch_max_bytes <= i32::MAX as usize,
            "batch_max_bytes",
            "between 128 and i32::MAX",
        )?;
        range(
            (1..=5).contains(&self.max_produce_requests_in_flight) || !self.idempotent,
            "max_produce_requests_in_flight",
            "between 1 and 5 with idempotence",
        )?;
        range(
            self.max_produce_requests_in_flight >= 1,
            "max_produce_requests_in_flight",
            "at least 1",
        )?;
        range(
            self.metadata_min_age <= self.metadata_max_age,
            "metadata_min_age",
            "at most metadata_max_age",
        )?;
        range(
            self.produce_request_timeout.as_millis() <= i32::MAX as u128,
            "produce_request_timeout",
            "at most i32::MAX milliseconds",
        )?;
        if let Some((setting, rule)) = self.group.as_ref().and_then(GroupConfig::problem) {
            return Err(ConfigError::OutOfRange { setting, rule });
        }
        Ok(())
    }
}

/// Builds a [`Config`]; every method documents its default on the field
/// of the same name.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConfigBuilder(Config);

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, v: $ty) -> Self {
            self.0.$name = v;
            self
        }
    )*};
}

impl ConfigBuilder {
    /// Brokers to bootstrap from, `host:port`.
    pub fn seed_brokers<I, S>(mut self, brokers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.0.seed_brokers = brokers.into_iter().map(Into::into).collect();
        self
    }

    /// The client id sent in request headers. Default `sansa`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.0.conn.client_id = Some(id.into());
        self
    }

    /// How long a request may wait for its answer. Default 30 s.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.0.conn.request_timeout = d;
        self
    }

    /// Largest response frame accepted. Default 100 MiB.
    pub fn max_frame_bytes(mut self, n: usize) -> Self {
        self.0.conn.max_frame_bytes = n;
        self
    }

    /// Topic for records that name none.
    pub fn default_produce_topic(mut self, topic: impl Into<String>) -> Self {
        self.0.default_produce_topic = Some(topic.into());
        self
    }

    /// Consumer settings.
    pub fn consumer(mut self, c: ConsumerConfig) -> Self {
        self.0.consumer = c;
        self
    }

    /// The partitioner for every topic.
    pub fn partitioner(mut self, p: impl PartitionerFactory + 'static) -> Self {
        self.0.partitioner = Arc::new(p);
        self
    }

    /// Transactional id; requires idempotence.
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.0.transactional_id = Some(id.into());
        self
    }

    /// Runs as a group-transact session; see
    /// [`Config::group_transact_session`].
    pub fn group_transact_session(mut self, on: bool) -> Self {
        self.0.group_transact_session = on;
        self
    }

    /// FOR TESTS ONLY; see [`Config::sabotage_commit_despite_revoke`].
    #[doc(hidden)]
    pub fn sabotage_commit_despite_revoke(mut self) -> Self {
        self.0.sabotage_commit_despite_revoke = true;
        self
    }

    /// How long a transaction may stay open before the coordinator
    /// aborts it.
    pub fn transaction_timeout(mut self, t: Duration) -> Self {
        self.0.transaction_timeout = t;
        self
    }

    /// Joins this consumer group when consuming topics (franz-go's
    /// `ConsumerGroup`).
    pub fn consumer_group(mut self, g: GroupConfig) -> Self {
        self.0.group = Some(g);
        self
    }

    /// Turns idempotent writes off (needed for acks 0 or 1). Also lowers
    /// the in-flight limit to 1, as franz-go does, so order holds.
    pub fn disable_idempotent_write(mut self) -> Self {
        self.0.idempotent = false;
        self.0.max_produce_requests_in_flight = 1;
        self
    }

    setters! {
        /// Backoff between retries.
        retry_backoff: Backoff;
        /// Idle connections close after this.
        conn_idle_timeout: Duration;
        /// Metadata refresh at least this often.
        metadata_max_age: Duration;
        /// Metadata refresh at most this often.
        metadata_min_age: Duration;
        /// Let Metadata requests create missing topics.
        allow_auto_topic_creation: bool;
        /// Required acknowledgements.
        acks: Acks;
        /// Linger before sending a batch.
        linger: Duration;
        /// Only send on flush.
        manual_flushing: bool;
        /// Records buffered at most.
        max_buffered_records: usize;
        /// Bytes buffered at most.
        max_buffered_bytes: Option<usize>;
        /// Largest batch before compression.
        batch_max_bytes: usize;
        /// Batch codec.
        compression: Compression;
        /// Retries per record; `None` is unlimited.
        record_retries: Option<u32>;
        /// Time from a batch's first send to its acknowledgement.
        record_delivery_timeout: Option<Duration>;
        /// Metadata answers naming a topic unknown before its records fail.
        unknown_topic_retries: u32;
        /// Broker-side produce timeout.
        produce_request_timeout: Duration;
        /// Produce requests in flight per broker.
        max_produce_requests_in_flight: usize;
        /// Seed of every random choice.
        seed: u64;
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_franz_go_s_and_valid() {
        let c = Config::builder()
            .seed_brokers(["a:1"])
            .build()
            .expect("valid");
        assert_eq!(c.acks, Acks::All);
        assert!(c.idempotent);
        assert_eq!(c.linger, Duration::from_millis(10));
        assert_eq!(c.max_buffered_records, 10_000);
        assert_eq!(c.batch_max_bytes, 1_000_012);
        assert_eq!(c.compression, Compression::Snappy);
        assert_eq!(c.record_retries, None);
    }

    #[test]
    fn contradictions_are_rejected_with_a_reason() {
        assert_eq!(
            Config::builder().build().err(),
            Some(ConfigError::NoSeedBrokers)
        );
        assert_eq!(
            Config::builder().seed_brokers(["nohost"]).build().err(),
            Some(ConfigError::BadSeedBroker("nohost".into()))
        );
        assert_eq!(
            Config::builder()
                .seed_brokers(["a:1"])
                .acks(Acks::Leader)
                .build()
                .err(),
            Some(ConfigError::IdempotenceNeedsAcksAll(Acks::Leader))
        );
        assert_eq!(
            Config::builder()
                .seed_brokers(["a:1"])
                .disable_idempotent_write()
                .transactional_id("t")
                .build()
                .err(),
            Some(ConfigError::TransactionsNeedIdempotence)
        );
        assert!(Config::builder()
            .seed_brokers(["a:1"])
            .disable_idempotent_write()
            .acks(Acks::None)
            .build()
            .is_ok());
        assert!(matches!(
            Config::builder()
                .seed_brokers(["a:1"])
                .max_produce_requests_in_flight(6)
                .build(),
            Err(ConfigError::OutOfRange { .. })
        ));
    }
}
