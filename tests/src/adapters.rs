//! Every runtime adapter behind one synchronous face, so one scenario (a
//! conformance test, a benchmark) runs against each without being written
//! three times: [`Adapter`] is implemented for sansa-tokio, sansa-smol
//! (on smol and under async-std) and sansa-blocking.
//!
//! The async adapters' calls are wrapped in their executor's `block_on`;
//! the records themselves flow exactly as a user's would (all produced
//! before any result is awaited).

use std::time::{Duration, Instant};

use sansa_core::client::ConfigBuilder;
use sansa_core::consumer::{ConsumedRecord, FetchedPartition};
use sansa_core::group::GroupEvent;
use sansa_core::producer::{ProduceError, Record, RecordMeta};
use sansa_core::session::{CommitFailure, CommitResult};

/// A record's result.
pub type Delivery = Result<RecordMeta, ProduceError>;

/// How long a group call (a commit) may take before the adapter gives up
/// waiting with [`CommitFailure::TimedOut`].
pub const GROUP_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One sansa client on one runtime, driven synchronously.
pub trait Adapter: Sized + Sync {
    /// The runtime's name, for messages.
    const NAME: &'static str;

    /// A client of `bootstrap` with `config` applied to the builder.
    fn connect(bootstrap: &str, config: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Self;

    /// Produces every record (all handed over before any result is
    /// awaited), then waits for each result, in order.
    fn produce_all(&self, records: Vec<Record>) -> Vec<Delivery>;

    /// `try_produce`: whether the record got into the buffer; its result
    /// is not awaited.
    fn try_produce(&self, record: Record) -> Result<(), ProduceError>;

    /// Flushes and waits for it.
    fn flush(&self);

    /// Closes and waits for it.
    fn close(&self);

    /// `consume_topics([topic])`: with a consumer group configured (see
    /// `ConfigBuilder::consumer_group`), joins it.
    fn subscribe(&self, topic: &str);

    /// `poll_fetches(None)`, waiting at most `timeout`; empty if nothing
    /// arrived by then.
    fn poll_fetches(&self, timeout: Duration) -> Vec<FetchedPartition>;

    /// Subscribes to `topic` and polls until `count` records arrived or
    /// `timeout` passed; returns what arrived by partition.
    fn consume(&self, topic: &str, count: usize, timeout: Duration) -> Vec<FetchedPartition> {
        self.subscribe(topic);
        poll_until(count, timeout, |left| self.poll_fetches(left))
    }

    /// `commit_uncommitted_offsets`, waiting at most
    /// [`GROUP_CALL_TIMEOUT`].
    fn commit_uncommitted(&self) -> CommitResult;

    /// `commit_records`, waiting at most [`GROUP_CALL_TIMEOUT`].
    fn commit_records(&self, records: &[ConsumedRecord]) -> CommitResult;

    /// `allow_rebalance`.
    fn allow_rebalance(&self);

    /// `next_group_event`, waiting at most `timeout`.
    fn next_group_event(&self, timeout: Duration) -> Option<GroupEvent>;

    /// `abort`: stops as a crash would (no commit, no LeaveGroup).
    fn abort(&self);
}

/// Polls with `poll` (which waits at most its argument) until `count`
/// records arrived or `timeout` passed.
fn poll_until(
    count: usize,
    timeout: Duration,
    mut poll: impl FnMut(Duration) -> Vec<FetchedPartition>,
) -> Vec<FetchedPartition> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut n = 0;
    while n < count {
        let Some(left) = timeout.checked_sub(start.elapsed()) else {
            break;
        };
        let fetched = poll(left);
        n += fetched.iter().map(|f| f.records.len()).sum::<usize>();
        out.extend(fetched);
    }
    out
}

/// Generates the [`Adapter`] impl of an async adapter: `$client` is its
/// client type, `$block_on` runs a future to completion, `$timeout`
/// bounds a future (`Option` of its output).
macro_rules! async_adapter {
    ($ty:ty, $name:expr, $client:path, $build:expr, $block_on:expr, $timeout:expr) => {
        impl Adapter for $ty {
            const NAME: &'static str = $name;

            fn connect(
                bootstrap: &str,
                config: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
            ) -> Self {
                let builder = <$client>::builder()
                    .seed_brokers(bootstrap.split(','))
                    .config(config);
                $build(builder)
            }

            fn produce_all(&self, records: Vec<Record>) -> Vec<Delivery> {
                let futures: Vec<_> = records
                    .into_iter()
                    .map(|r| self.client.produce(r))
                    .collect();
                $block_on(async {
                    let mut out = Vec::with_capacity(futures.len());
                    for f in futures {
                        out.push(f.await);
                    }
                    out
                })
            }

            fn try_produce(&self, record: Record) -> Result<(), ProduceError> {
                $block_on(self.client.try_produce(record)).map(drop)
            }

            fn flush(&self) {
                $block_on(self.client.flush())
            }

            fn close(&self) {
                $block_on(self.client.close())
            }

            fn subscribe(&self, topic: &str) {
                self.client.consume_topics([topic]);
            }

            fn poll_fetches(&self, timeout: Duration) -> Vec<FetchedPartition> {
                $block_on($timeout(timeout, self.client.poll_fetches(None))).unwrap_or_default()
            }

            fn commit_uncommitted(&self) -> CommitResult {
                let commit = self.client.commit_uncommitted_offsets();
                $block_on($timeout(GROUP_CALL_TIMEOUT, commit))
                    .unwrap_or(Err(CommitFailure::TimedOut))
            }

            fn commit_records(&self, records: &[ConsumedRecord]) -> CommitResult {
                let commit = self.client.commit_records(records);
                $block_on($timeout(GROUP_CALL_TIMEOUT, commit))
                    .unwrap_or(Err(CommitFailure::TimedOut))
            }

            fn allow_rebalance(&self) {
                self.client.allow_rebalance();
            }

            fn next_group_event(&self, timeout: Duration) -> Option<GroupEvent> {
                $block_on($timeout(timeout, self.client.next_group_event())).flatten()
            }

            fn abort(&self) {
                $block_on(self.client.abort())
            }
        }
    };
}

/// sansa-tokio on a two-worker multi-threaded runtime.
#[derive(Debug)]
pub struct Tokio {
    client: sansa_tokio::Client,
    runtime: tokio::runtime::Runtime,
}

impl Tokio {
    fn build(builder: sansa_tokio::ClientBuilder) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = runtime
            .block_on(builder.build())
            .expect("sansa-tokio client");
        Tokio { client, runtime }
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Runs `f` for at most `d` (`None` when it did not finish).
    fn within<F: std::future::Future>(&self, d: Duration, f: F) -> Option<F::Output> {
        self.block_on(async { tokio::time::timeout(d, f).await.ok() })
    }
}

/// Runs `f` for at most `d` on any executor (async-io's timer).
async fn within<F: std::future::Future>(d: Duration, f: F) -> Option<F::Output> {
    let timer = async {
        async_io::Timer::after(d).await;
        None
    };
    futures_lite::future::or(async { Some(f.await) }, timer).await
}

// Written out rather than through `async_adapter!`: its executor is a
// value (the runtime) rather than a function.
impl Adapter for Tokio {
    const NAME: &'static str = "tokio";

    fn connect(bootstrap: &str, config: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Self {
        Tokio::build(
            sansa_tokio::Client::builder()
                .seed_brokers(bootstrap.split(','))
                .config(config),
        )
    }

    fn produce_all(&self, records: Vec<Record>) -> Vec<Delivery> {
        let futures: Vec<_> = records
            .into_iter()
            .map(|r| self.client.produce(r))
            .collect();
        self.block_on(async {
            let mut out = Vec::with_capacity(futures.len());
            for f in futures {
                out.push(f.await);
            }
            out
        })
    }

    fn try_produce(&self, record: Record) -> Result<(), ProduceError> {
        self.block_on(self.client.try_produce(record)).map(drop)
    }

    fn flush(&self) {
        self.block_on(self.client.flush());
    }

    fn close(&self) {
        self.block_on(self.client.close());
    }

    fn subscribe(&self, topic: &str) {
        self.client.consume_topics([topic]);
    }

    fn poll_fetches(&self, timeout: Duration) -> Vec<FetchedPartition> {
        // Timers are made inside the runtime, which they need.
        self.within(timeout, self.client.poll_fetches(None))
            .unwrap_or_default()
    }

    fn commit_uncommitted(&self) -> CommitResult {
        self.within(GROUP_CALL_TIMEOUT, self.client.commit_uncommitted_offsets())
            .unwrap_or(Err(CommitFailure::TimedOut))
    }

    fn commit_records(&self, records: &[ConsumedRecord]) -> CommitResult {
        self.within(GROUP_CALL_TIMEOUT, self.client.commit_records(records))
            .unwrap_or(Err(CommitFailure::TimedOut))
    }

    fn allow_rebalance(&self) {
        self.client.allow_rebalance();
    }

    fn next_group_event(&self, timeout: Duration) -> Option<GroupEvent> {
        self.within(timeout, self.client.next_group_event())
            .flatten()
    }

    fn abort(&self) {
        self.block_on(self.client.abort());
    }
}

/// sansa-smol driven from `smol::block_on`.
#[derive(Debug)]
pub struct Smol {
    client: sansa_smol::Client,
}

async_adapter!(
    Smol,
    "smol",
    sansa_smol::Client,
    |b: sansa_smol::ClientBuilder| Smol {
        client: b.build().expect("sansa-smol client")
    },
    smol::block_on,
    within
);

/// sansa-smol driven from `async_std::task::block_on`.
#[derive(Debug)]
pub struct AsyncStd {
    client: sansa_smol::Client,
}

async_adapter!(
    AsyncStd,
    "async-std",
    sansa_smol::Client,
    |b: sansa_smol::ClientBuilder| AsyncStd {
        client: async_std::task::block_on(async { b.build() }).expect("sansa-smol client")
    },
    async_std::task::block_on,
    within
);

/// sansa-blocking, called directly.
#[derive(Debug)]
pub struct Blocking {
    client: sansa_blocking::Client,
}

impl Adapter for Blocking {
    const NAME: &'static str = "blocking";

    fn connect(bootstrap: &str, config: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Self {
        let client = sansa_blocking::Client::builder()
            .seed_brokers(bootstrap.split(','))
            .config(config)
            .build()
            .expect("sansa-blocking client");
        Blocking { client }
    }

    fn produce_all(&self, records: Vec<Record>) -> Vec<Delivery> {
        let handles: Vec<_> = records
            .into_iter()
            .map(|r| self.client.produce(r))
            .collect();
        handles.into_iter().map(|h| h.wait()).collect()
    }

    fn try_produce(&self, record: Record) -> Result<(), ProduceError> {
        self.client.try_produce(record).map(drop)
    }

    fn flush(&self) {
        self.client.flush();
    }

    fn close(&self) {
        self.client.close();
    }

    fn subscribe(&self, topic: &str) {
        self.client.consume_topics([topic]);
    }

    fn poll_fetches(&self, timeout: Duration) -> Vec<FetchedPartition> {
        self.client.poll_fetches(None, timeout)
    }

    fn commit_uncommitted(&self) -> CommitResult {
        self.client.commit_uncommitted_offsets(GROUP_CALL_TIMEOUT)
    }

    fn commit_records(&self, records: &[ConsumedRecord]) -> CommitResult {
        self.client.commit_records(records, GROUP_CALL_TIMEOUT)
    }

    fn allow_rebalance(&self) {
        self.client.allow_rebalance();
    }

    fn next_group_event(&self, timeout: Duration) -> Option<GroupEvent> {
        self.client.next_group_event(timeout)
    }

    fn abort(&self) {
        self.client.abort();
    }
}
