//! Memory stays bounded while consuming far more than the buffer bound:
//! ~100 MB (100,000 x 1 KiB) written by librdkafka to Tansu, read by sansa
//! with `max_buffered_bytes` = 4 MiB and a slow reader.
//!
//! How it is measured: Tansu runs as its own process, so the broker's
//! copy of the data is not in this process. librdkafka writes everything
//! first and is dropped; then the peak RSS of this process is reset
//! (`echo 5 > /proc/self/clear_refs`, Linux 4.0+, resets VmHWM to the
//! current RSS) and the baseline RSS is read. After consuming, VmHWM minus
//! the baseline is the peak growth while consuming: sansa's buffers, the
//! fetch responses in flight and on the socket, and the test's own small
//! state. This is a whole-process measure (allocator caching included), so
//! the bound checked is a small multiple of the configured one, not the
//! configured one exactly.
//!
//! Tests in one binary run on parallel threads, so this file holds one
//! test only: another test's allocations would count here.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use sansa_tests::peers::librdkafka::{self, TestRecord};
use sansa_tests::peers::{KafkaPeer, MockCluster, Tansu};
use sansa_tokio::ConsumerConfig;

use support::{runtime, sansa};

const RECORDS: usize = 100_000;
const VALUE: usize = 1024;
const BOUND: usize = 4 << 20;
/// Peak RSS growth allowed: a small multiple of the bound (see the
/// module docs for what it covers).
const ALLOWED: usize = 6 * BOUND;
const WAIT: Duration = Duration::from_secs(60);

/// (VmRSS, VmHWM) of this process, bytes.
fn rss() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM (/proc/self/clear_refs)");
}

/// Writes RECORDS x VALUE bytes to `topic` (created with `partitions`),
/// then reads them with sansa and a slow reader; returns the peak RSS
/// growth of this process while reading.
fn peak_growth_while_reading(peer: &dyn KafkaPeer, partitions: i32, replication: i32) -> usize {
    let name = peer.name();
    let bootstrap = peer.bootstrap();
    peer.create_topic("memory", partitions, replication)
        .expect("topic");
    let started = Instant::now();
    {
        let producer = librdkafka::producer(&bootstrap, &[("linger.ms", "20")]).expect("producer");
        let chunk = 10_000;
        for c in 0..RECORDS / chunk {
            let records: Vec<TestRecord> = (c * chunk..(c + 1) * chunk)
                .map(|i| {
                    let mut r = TestRecord::numbered(i, VALUE);
                    r.key = None;
                    r.headers.clear();
                    r.partition = Some((i % partitions as usize) as i32);
                    r
                })
                .collect();
            librdkafka::produce_blocking(&producer, "memory", &records).expect("produce");
        }
    }
    let produced = started.elapsed();
    let rt = runtime();
    reset_peak();
    let (base, _) = rss();
    let read_start = Instant::now();
    let (total, bytes) = rt.block_on(async {
        let client = sansa(
            &bootstrap,
            ConsumerConfig {
                max_buffered_bytes: BOUND,
                fetch_max_wait: Duration::from_millis(200),
                ..Default::default()
            },
        )
        .await;
        client.consume_topics(["memory"]);
        let mut total = 0;
        let mut bytes = 0;
        let mut last = vec![-1i64; partitions as usize];
        while total < RECORDS {
            let left = WAIT.saturating_sub(read_start.elapsed());
            let records = tokio::time::timeout(left, client.poll_records(Some(500)))
                .await
                .unwrap_or_else(|_| panic!("{name}: read {total} of {RECORDS} in {WAIT:?}"));
            for r in &records {
                let p = r.partition as usize;
                assert!(
                    r.offset > last[p],
                    "{}: {} after {}",
                    r.partition,
                    r.offset,
                    last[p]
                );
                last[p] = r.offset;
                bytes += r.value.as_ref().map_or(0, |v| v.len());
            }
            total += records.len();
            drop(records);
            // A slow reader: the fetcher is always ahead, the buffer full.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        client.close().await;
        (total, bytes)
    });
    let read = read_start.elapsed();
    drop(rt);
    let (_, peak) = rss();
    assert_eq!(total, RECORDS, "{name}");
    let growth = peak.saturating_sub(base);
    eprintln!(
        "{name}: wrote {RECORDS} x {VALUE} B to {partitions} partitions in {produced:?}; \
         read {} MiB in {read:?}; RSS before reading {} MiB, peak growth {:.1} MiB \
         ({:.1}x the {} MiB bound)",
        bytes >> 20,
        base >> 20,
        growth as f64 / f64::from(1 << 20),
        growth as f64 / BOUND as f64,
        BOUND >> 20,
    );
    growth
}

#[test]
fn consuming_100_mb_with_a_4_mib_buffer_stays_within_a_few_times_the_bound() {
    // Tansu runs in its own process: only sansa's memory counts here.
    let tansu = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    let on_tansu = peak_growth_while_reading(&tansu, 8, 1);
    drop(tansu);
    // The mock runs in this process: its copy of the data is allocated
    // before the baseline, but its fetch responses are built here too (it
    // honours max_bytes, as sansa now asks it to). Three brokers, so three
    // fetches in flight share the bound. 32 partitions of ~3 MiB each:
    // under the mock's 5 MiB per-partition retention.
    let mock = MockCluster::new(3).expect("mock cluster");
    let on_mock = peak_growth_while_reading(&mock, 32, 3);
    for (name, growth) in [("tansu", on_tansu), ("mock cluster", on_mock)] {
        assert!(
            growth <= ALLOWED,
            "{name}: peak RSS grew {} MiB while consuming with a {} MiB buffer bound \
             (allowed {} MiB)",
            growth >> 20,
            BOUND >> 20,
            ALLOWED >> 20
        );
    }
}
