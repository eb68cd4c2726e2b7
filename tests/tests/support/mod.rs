//! Helpers shared by the consumer test files: a sansa consumer on a tokio
//! runtime, and a ledger that checks what sansa read against what
//! librdkafka says it wrote (every record once, offsets strictly
//! increasing per partition, nothing skipped).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sansa_tests::peers::librdkafka::Delivered;
use sansa_tokio::{Client, ConsumerConfig, FetchedPartition};

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A sansa client for `bootstrap` with these consumer settings.
pub(crate) async fn sansa(bootstrap: &str, consumer: ConsumerConfig) -> Client {
    Client::builder()
        .seed_brokers(bootstrap.split(','))
        .consumer(consumer)
        .build()
        .await
        .expect("sansa client")
}

/// Consumer settings for tests: a short fetch max wait, because
/// librdkafka's mock cluster holds every empty fetch for the full max wait
/// even when data arrives meanwhile.
pub(crate) fn quick_consumer() -> ConsumerConfig {
    ConsumerConfig {
        fetch_max_wait: Duration::from_millis(300),
        ..Default::default()
    }
}

/// The record number `i` that `TestRecord::numbered(i, _)` wrote in this
/// value.
pub(crate) fn number_of(value: &[u8]) -> usize {
    let s = std::str::from_utf8(&value[6..14]).expect("numbered value");
    s.parse().expect("numbered value")
}

/// What sansa read, checked as it arrives.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// partition -> (offset, record number), in the order read.
    pub(crate) read: BTreeMap<i32, Vec<(i64, usize)>>,
    pub(crate) total: usize,
    /// Partition errors seen in poll results.
    pub(crate) errors: Vec<String>,
}

impl Ledger {
    /// Takes one poll result; panics on an offset that does not go up.
    pub(crate) fn take(&mut self, fetched: Vec<FetchedPartition>) {
        for f in fetched {
            if let Some(e) = &f.error {
                self.errors
                    .push(format!("{}/{}: {e}", f.topic, f.partition));
            }
            let read = self.read.entry(f.partition).or_default();
            for r in f.records {
                if let Some(&(last, _)) = read.last() {
                    assert!(
                        r.offset > last,
                        "partition {}: offset {} after {last} (duplicate or reordering)",
                        r.partition,
                        r.offset
                    );
                }
                read.push((r.offset, number_of(r.value.as_deref().unwrap_or_default())));
                self.total += 1;
            }
        }
    }

    /// Per partition: records read and the last offset, for messages.
    pub(crate) fn summary(&self) -> String {
        self.read
            .iter()
            .map(|(p, v)| format!("p{p}: {} (last {:?})", v.len(), v.last().map(|x| x.0)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks that exactly the delivered records were read: per partition
    /// the same offsets in the same order, each holding the record number
    /// librdkafka wrote there. `delivered[i]` is where record `i` went.
    pub(crate) fn check_exactly(&self, delivered: &[Delivered]) {
        let mut want: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
        for (i, d) in delivered.iter().enumerate() {
            want.entry(d.partition).or_default().push((d.offset, i));
        }
        for v in want.values_mut() {
            v.sort_unstable();
        }
        for (p, w) in &want {
            let got = self.read.get(p).map(Vec::as_slice).unwrap_or_default();
            if got != w.as_slice() {
                let first_diff = got
                    .iter()
                    .zip(w.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len().min(w.len()));
                panic!(
                    "partition {p}: read {} records, {} were written; first difference at \
                     index {first_diff}: read {:?}, written {:?}",
                    got.len(),
                    w.len(),
                    got.get(first_diff),
                    w.get(first_diff)
                );
            }
        }
        let extra: Vec<_> = self.read.keys().filter(|p| !want.contains_key(p)).collect();
        assert!(
            extra.is_empty(),
            "read from unexpected partitions {extra:?}"
        );
    }
}

/// Polls `client` into `ledger` until it holds `n` records; panics with
/// what was read if that takes longer than `limit`.
pub(crate) async fn read_until(client: &Client, ledger: &mut Ledger, n: usize, limit: Duration) {
    let start = Instant::now();
    while ledger.total < n {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, client.poll_fetches(None)).await {
            Ok(fetched) => ledger.take(fetched),
            Err(_) => panic!(
                "stalled: read {} of {n} records in {limit:?}: {}; errors {:?}",
                ledger.total,
                ledger.summary(),
                ledger.errors
            ),
        }
    }
}
