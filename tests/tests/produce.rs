//! sansa's producer against real brokers, read back by librdkafka.
//!
//! - Every codec, on librdkafka's mock cluster (3 brokers) and on Tansu:
//!   100,000 keyed records with headers go in through `sansa-tokio`,
//!   librdkafka consumes them, and [`verify::check`] finds each record
//!   exactly once, unaltered, on the partition Java's partitioner picks,
//!   in produce order within its partition; a raw Fetch shows each stored
//!   batch carries the codec asked for. noida-db, the optional third peer,
//!   gets 2,000 records per codec and the same checks.
//! - Faults on the mock cluster while producing with idempotence (the
//!   default): leader moves, a broker down then up, injected Produce
//!   errors, responses slower than the request timeout. Afterwards the log
//!   must hold every record the client called delivered exactly once, and
//!   nothing it called failed. (The mock checks idempotent sequences only
//!   for transactional producers; see
//!   [`assert_clean_but_for_mock_sequence_checks`] for what that allows.)
//! - Failure paths a user relies on: the delivery timeout (also for a
//!   broker that is down before the first send), cancelling an unsent
//!   record, `try_produce` on a full buffer.
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
use sansa_tests::peers::{raw, KafkaPeer, MockCluster, NoidaDb, Tansu};
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

/// A client builder for `peer`. `RUST_LOG=sansa_core=debug` shows what
/// the client did (logs go to the test's captured output).
fn builder(peer: &dyn KafkaPeer) -> ClientBuilder {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
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
    codec_round_trip_of(peer, codec, replication, CODEC_RECORDS, CODEC_PARTITIONS).await;
    assert_stored_with(
        peer,
        &format!("codec-{}", codec.name()),
        codec,
        CODEC_PARTITIONS,
    );
}

async fn codec_round_trip_of(
    peer: &dyn KafkaPeer,
    codec: Compression,
    replication: i32,
    records: u64,
    partitions: i32,
) {
    let started = Instant::now();
    let name = peer.name();
    let topic = format!("codec-{}", codec.name());
    peer.create_topic(&topic, partitions, replication)
        .unwrap_or_else(|e| panic!("{name}: create topic {topic}: {e}"));
    let client = bounded(
        "build",
        Duration::from_secs(5),
        builder(peer).compression(codec).build(),
    )
    .await
    .expect("client");
    let sent = sent_records(records, KEYS, codec.name());
    let results = bounded(
        &format!("{name}: producing {records} records with {codec:?}"),
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
    let report = check_log(peer, &topic, partitions, &sent, &results).await;
    assert!(report.is_clean(), "{name} {codec:?}: {report}");
    assert_eq!(
        report.consumed as u64, records,
        "{name} {codec:?}: {report}"
    );
    eprintln!(
        "{name} {codec:?}: {records} records produced in {produced:?}, checked in {:?}",
        started.elapsed()
    );
}

/// The broker stores the batches sansa wrote, so a raw Fetch of each
/// partition shows which codec sansa used: `codec`, on every batch.
fn assert_stored_with(peer: &dyn KafkaPeer, topic: &str, codec: Compression, partitions: i32) {
    let name = peer.name();
    let leaders = librdkafka::partition_leaders(&peer.bootstrap(), topic, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        leaders.len(),
        partitions as usize,
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

/// noida-db (optional peer; its Fetch ignores max_bytes, so volumes stay
/// small): 2,000 records per codec, the same checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noida_db_reads_records_of_every_codec() {
    let noida = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    for codec in Compression::ALL {
        codec_round_trip_of(&noida, codec, 1, 2_000, 4).await;
        assert_stored_with(&noida, &format!("codec-{}", codec.name()), codec, 4);
    }
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

// ---------------------------------------------------------------------
// Faults on the mock cluster while producing with idempotence
// ---------------------------------------------------------------------

const FAULT_PARTITIONS: i32 = 6;
const FAULT_KEYS: u64 = 60;
const FAULT_RECORDS: u64 = 30_000;
/// 30,000 records in 60 steps of 500 with 50 ms pauses: production spans
/// about three seconds, so every fault lands in the middle of it.
const FAULT_PACE: Pace = Pace {
    every: 500,
    pause: Duration::from_millis(50),
};

/// A 3-broker mock cluster with a 6-partition topic (3 replicas each);
/// partition `p` is led by broker `p % 3 + 1`.
fn fault_cluster(topic: &str) -> MockCluster {
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic(topic, FAULT_PARTITIONS, 3)
        .expect("create topic");
    for p in 0..FAULT_PARTITIONS {
        mock.partition_leader(topic, p, Some(p % 3 + 1))
            .expect("leader");
    }
    mock
}

/// Produces [`FAULT_RECORDS`] paced records while `faults` runs, then
/// checks the log: every record delivered (retries are unlimited), each
/// exactly once and in order. Returns the report and the Produce requests
/// the brokers saw.
async fn produce_through<F: Future<Output = ()>>(
    what: &str,
    mock: &MockCluster,
    topic: &str,
    client: ClientBuilder,
    faults: F,
) -> (Report, Vec<Result<RecordMeta, ProduceError>>, usize) {
    let started = Instant::now();
    let client = client.build().await.expect("client");
    let sent = sent_records(FAULT_RECORDS, FAULT_KEYS, what);
    mock.start_request_tracking();
    let (results, ()) = bounded(
        &format!("{what}: producing {FAULT_RECORDS} records through faults"),
        Duration::from_secs(40),
        async { tokio::join!(produce_all(&client, topic, &sent, Some(FAULT_PACE)), faults) },
    )
    .await;
    let produce_requests = mock
        .requests()
        .iter()
        .filter(|r| r.api_key == Some(ApiKey::Produce))
        .count();
    mock.stop_request_tracking();
    let produced = started.elapsed();
    bounded("close", Duration::from_secs(10), client.close()).await;
    let report = check_log(mock, topic, FAULT_PARTITIONS, &sent, &results).await;
    eprintln!(
        "{what}: produced in {produced:?} with {produce_requests} Produce requests; {report}"
    );
    (report, results, produce_requests)
}

fn assert_all_delivered_once(
    what: &str,
    report: &Report,
    results: &[Result<RecordMeta, ProduceError>],
) {
    let failed: Vec<&ProduceError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} records failed (first: {}); {report}",
        failed.len(),
        failed[0]
    );
    assert!(report.is_clean(), "{what}: {report}");
    assert_eq!(report.consumed as u64, FAULT_RECORDS, "{what}: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_moves_lose_and_duplicate_nothing() {
    let topic = "leader-moves";
    let mock = fault_cluster(topic);
    let faults = async {
        // Eight rounds: every partition's leader moves to the next broker.
        for round in 1..=8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for p in 0..FAULT_PARTITIONS {
                let leader = (p + round) % 3 + 1;
                mock.partition_leader(topic, p, Some(leader))
                    .expect("move leader");
            }
        }
    };
    let (report, results, requests) =
        produce_through("leader moves", &mock, topic, builder(&mock), faults).await;
    assert_all_delivered_once("leader moves", &report, &results);
    assert!(requests > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_then_up_loses_and_duplicates_nothing() {
    let topic = "broker-down-up";
    let mock = fault_cluster(topic);
    let faults = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        mock.broker_down(2).expect("down");
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        mock.broker_up(2).expect("up");
    };
    let (report, results, _) = produce_through(
        "broker 2 down then up",
        &mock,
        topic,
        builder(&mock),
        faults,
    )
    .await;
    assert_all_delivered_once("broker 2 down then up", &report, &results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_other_brokers_and_back_loses_and_duplicates_nothing() {
    let topic = "failover";
    let mock = fault_cluster(topic);
    let faults = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Broker 1 dies; its partitions fail over to 2 and 3.
        mock.broker_down(1).expect("down");
        for p in 0..FAULT_PARTITIONS {
            mock.partition_leader(topic, p, Some(p % 2 + 2))
                .expect("failover");
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        // It comes back and takes every partition.
        mock.broker_up(1).expect("up");
        for p in 0..FAULT_PARTITIONS {
            mock.partition_leader(topic, p, Some(1)).expect("move back");
        }
    };
    let (report, results, _) =
        produce_through("failover and back", &mock, topic, builder(&mock), faults).await;
    assert_all_delivered_once("failover and back", &report, &results);
}

/// What librdkafka's mock cluster cannot promise: it checks idempotent
/// sequence numbers only for transactional producers
/// (`rd_kafka_mock_validate_records` in rdkafka_mock.c returns at once
/// without a TransactionalId). A real broker refuses a batch whose
/// predecessor failed (OUT_OF_ORDER_SEQUENCE_NUMBER) and acknowledges a
/// resent batch it already has without writing it again; the mock writes
/// both. So with several requests in flight per partition, a batch that
/// follows a failed one is written before it, and a batch resent after an
/// ambiguous loss is written twice. Those two faults are the broker's
/// (known mock defect), so they are reported, not failed; every other
/// check holds: nothing delivered is missing, nothing failed is written,
/// nothing is altered or misplaced.
fn assert_clean_but_for_mock_sequence_checks(
    what: &str,
    report: &Report,
    results: &[Result<RecordMeta, ProduceError>],
) {
    let failed: Vec<&ProduceError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{what}: {} records failed (first: {}); {report}",
        failed.len(),
        failed[0]
    );
    let mut strict = report.clone();
    strict.duplicated.clear();
    strict.out_of_order.clear();
    // A duplicated record was delivered at its second copy, and read at
    // both.
    strict.misreported.retain(|m| {
        !report
            .duplicated
            .iter()
            .any(|seq| m.starts_with(&format!("seq {seq} ")))
    });
    assert!(strict.is_clean(), "{what}: {report}");
    if !report.is_clean() {
        eprintln!(
            "{what}: known mock defect (no sequence checks without a transactional id): \
             {} duplicated, {} out of order",
            report.duplicated.len(),
            report.out_of_order.len()
        );
    }
}

const RETRIABLE: [ErrorCode; 7] = [
    ErrorCode::NotLeaderOrFollower,
    ErrorCode::RequestTimedOut,
    ErrorCode::NotEnoughReplicas,
    ErrorCode::NotEnoughReplicasAfterAppend,
    ErrorCode::KafkaStorageError,
    ErrorCode::NetworkException,
    ErrorCode::CorruptMessage,
];

/// Injects [`RETRIABLE`] `rounds` times over, 400 ms apart (each Produce
/// request takes the next error), while producing.
async fn inject_retriable(
    what: &str,
    rounds: usize,
    configure: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> (Report, Vec<Result<RecordMeta, ProduceError>>) {
    let topic = "retriable-errors";
    let mock = fault_cluster(topic);
    let faults = async {
        for _ in 0..rounds {
            tokio::time::sleep(Duration::from_millis(400)).await;
            mock.request_errors(ApiKey::Produce, &RETRIABLE)
                .expect("inject");
        }
    };
    let (report, results, requests) =
        produce_through(what, &mock, topic, configure(builder(&mock)), faults).await;
    assert!(
        requests > rounds * RETRIABLE.len(),
        "{what}: {requests} Produce requests for {} injected errors",
        rounds * RETRIABLE.len()
    );
    (report, results)
}

/// With one Produce request in flight per broker, order and uniqueness
/// rest on the client alone (not on the broker's sequence checks, which
/// the mock lacks): every record is in, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_retriable_produce_errors_lose_and_duplicate_nothing_one_in_flight() {
    let what = "retriable errors, 1 in flight";
    // Three rounds: with one request in flight every error stalls the
    // broker's partitions for a backoff (and a metadata refresh, at most
    // every 5 s, for NOT_LEADER and the like), so six take ~25 s.
    let (report, results) = inject_retriable(what, 3, |b| {
        b.config(|c| c.max_produce_requests_in_flight(1))
    })
    .await;
    assert_all_delivered_once(what, &report, &results);
}

/// With the default 5 requests in flight: nothing lost, nothing altered;
/// reordering after a failed batch is the mock's (see
/// [`assert_clean_but_for_mock_sequence_checks`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_retriable_produce_errors_lose_nothing_five_in_flight() {
    let what = "retriable errors, 5 in flight";
    let (report, results) = inject_retriable(what, 6, |b| b).await;
    assert_clean_but_for_mock_sequence_checks(what, &report, &results);
}

/// OUT_OF_ORDER_SEQUENCE_NUMBER for a partition that has acknowledged
/// records and no log truncation (the mock reports log start -1) is data
/// loss by the rules (semantics.md). Without a transactional id the client
/// does what franz-go does: reports it (`Event::DataLossDetected`, a log
/// line), takes a new epoch, and goes on retrying, so no record fails.
/// The injected answer wrote nothing, so the log must hold every record
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_out_of_order_sequence_is_reported_and_production_goes_on() {
    let what = "out of order sequence";
    let topic = "out-of-order";
    let mock = fault_cluster(topic);
    let faults = async {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        mock.request_errors(ApiKey::Produce, &[ErrorCode::OutOfOrderSequenceNumber])
            .expect("inject");
    };
    let client = builder(&mock).config(|c| c.max_produce_requests_in_flight(1));
    let (report, results, _) = produce_through(what, &mock, topic, client, faults).await;
    let failures: Vec<(usize, &ProduceError)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
        .collect();
    assert!(
        failures.is_empty(),
        "{what}: records failed: {:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(report.is_clean(), "{what}: {report}");
}

/// A Produce answer slower than the request timeout: the client drops the
/// connection, and the batch's fate is unknown, so it must be resent, never
/// failed by the delivery timeout (semantics.md), even though that is
/// shorter. The broker did write it: a real broker acknowledges the resend
/// as a duplicate; the mock writes it twice (known defect, see
/// [`assert_clean_but_for_mock_sequence_checks`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_timeout_is_resent_not_failed() {
    let what = "answers slower than the request timeout";
    let topic = "slow-answers";
    let mock = fault_cluster(topic);
    let faults = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for broker in mock.broker_ids() {
            mock.broker_request_errors_with_rtt(
                broker,
                ApiKey::Produce,
                &[(ErrorCode::None, Duration::from_millis(2_500))],
            )
            .expect("slow answer");
        }
    };
    let client = builder(&mock)
        .request_timeout(Duration::from_secs(1))
        .record_delivery_timeout(Duration::from_millis(500));
    let (report, results, _) = produce_through(what, &mock, topic, client, faults).await;
    assert_clean_but_for_mock_sequence_checks(what, &report, &results);
    assert!(
        !report.duplicated.is_empty(),
        "{what}: no batch was resent, so the slow answers did not bite; {report}"
    );
}

// ---------------------------------------------------------------------
// What a user sees when records cannot go out
// ---------------------------------------------------------------------

/// A one-partition topic led by broker 1 of a 3-broker mock cluster, and a
/// client that has already delivered one record to it (so it knows the
/// leader and has a producer id).
async fn warm_client(topic: &str, client: ClientBuilder) -> Client {
    let client = client.build().await.expect("client");
    let meta = bounded(
        "warm-up record",
        Duration::from_secs(10),
        client.produce_sync(Record::new(topic, "warm-up").with_key("k")),
    )
    .await
    .expect("warm-up record delivered");
    assert_eq!((meta.partition, meta.offset), (0, 0));
    client
}

fn one_partition_cluster(topic: &str) -> MockCluster {
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic(topic, 1, 3).expect("topic");
    mock.partition_leader(topic, 0, Some(1)).expect("leader");
    mock
}

/// The values of `topic` (one partition) as librdkafka reads them.
async fn values_in(mock: &MockCluster, topic: &str, count: usize) -> Vec<String> {
    read_back(mock.bootstrap(), topic, count)
        .await
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.value).into_owned())
        .collect()
}

/// Checks that record `i` failed by the delivery timeout: with
/// `DeliveryTimeout`, or, for a batch that was in flight when the one
/// before it timed out, with `EarlierBatchFailed(DeliveryTimeout)` when its
/// answer came (true).
fn timed_out(i: usize, result: Result<RecordMeta, ProduceError>) -> bool {
    match result {
        Err(ProduceError::DeliveryTimeout) => false,
        Err(ProduceError::EarlierBatchFailed(e)) if *e == ProduceError::DeliveryTimeout => true,
        other => panic!("record {i}: {other:?}, not a delivery timeout"),
    }
}

/// A broker that keeps refusing a batch with a retriable error: once the
/// delivery timeout has passed (counted from the batch's first send), its
/// records fail with `DeliveryTimeout` and nothing else, none is written,
/// and a record produced once the broker accepts again is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_timeout_fails_records_the_broker_keeps_refusing() {
    let topic = "delivery-timeout-refused";
    let mock = one_partition_cluster(topic);
    let timeout = Duration::from_secs(1);
    let client = warm_client(topic, builder(&mock).record_delivery_timeout(timeout)).await;
    mock.request_errors(ApiKey::Produce, &[ErrorCode::NotEnoughReplicas; 100])
        .expect("inject");
    let started = Instant::now();
    let doomed: Vec<_> = (0..100)
        .map(|i| client.produce(Record::new(topic, format!("doomed-{i}")).with_key("k")))
        .collect();
    let mut behind = 0;
    for (i, d) in doomed.into_iter().enumerate() {
        let result = bounded(
            &format!("record {i}, refused by the broker, with a {timeout:?} delivery timeout"),
            Duration::from_secs(15),
            d,
        )
        .await;
        behind += usize::from(timed_out(i, result));
    }
    let took = started.elapsed();
    assert!(took >= timeout, "failed after {took:?}, before the timeout");
    mock.clear_request_errors(ApiKey::Produce);
    let meta = bounded(
        "a record once the broker accepts again",
        Duration::from_secs(15),
        client.produce(Record::new(topic, "after").with_key("k")),
    )
    .await
    .expect("delivered");
    assert_eq!(meta.offset, 1, "the timed-out records took offsets");
    bounded("close", Duration::from_secs(5), client.close()).await;
    assert_eq!(values_in(&mock, topic, 2).await, ["warm-up", "after"]);
    eprintln!(
        "100 refused records failed after {took:?}: {} DeliveryTimeout, {behind} \
         EarlierBatchFailed(DeliveryTimeout)",
        100 - behind
    );
}

/// The partition's leader goes down before the records are sent: with a
/// delivery timeout each record should fail with `DeliveryTimeout` (and
/// nothing else) once the timeout has passed, none be written, and records
/// produced after the broker is back be delivered. sansa-tokio's
/// `Client::close` documents exactly this use: "with no broker reachable
/// ... set `record_delivery_timeout` to bound it".
///
/// A batch never sent starts its timeout at the first try the producer
/// could not make (no leader, no connection); records waiting for
/// metadata start theirs on arrival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_timeout_fails_records_for_a_broker_that_is_down() {
    let topic = "delivery-timeout";
    let mock = one_partition_cluster(topic);
    let timeout = Duration::from_secs(1);
    let client = warm_client(topic, builder(&mock).record_delivery_timeout(timeout)).await;
    mock.broker_down(1).expect("down");
    let started = Instant::now();
    let doomed: Vec<_> = (0..100)
        .map(|i| client.produce(Record::new(topic, format!("doomed-{i}")).with_key("k")))
        .collect();
    for (i, d) in doomed.into_iter().enumerate() {
        let result = bounded(
            &format!("record {i} for a broker that is down, with a {timeout:?} delivery timeout"),
            Duration::from_secs(15),
            d,
        )
        .await;
        timed_out(i, result);
    }
    let took = started.elapsed();
    assert!(took >= timeout, "failed after {took:?}, before the timeout");
    mock.broker_up(1).expect("up");
    let meta = bounded(
        "a record after the broker is back",
        Duration::from_secs(15),
        client.produce(Record::new(topic, "after").with_key("k")),
    )
    .await
    .expect("delivered after the broker came back");
    assert_eq!(meta.offset, 1, "the timed-out records took offsets");
    bounded("close", Duration::from_secs(5), client.close()).await;
    assert_eq!(values_in(&mock, topic, 2).await, ["warm-up", "after"]);
    eprintln!("100 records failed with DeliveryTimeout after {took:?}");
}

/// A record still lingering in the buffer is cancelled: it fails with
/// `Cancelled` and is never written. So is one waiting for a broker that
/// is down. A record already delivered ignores a late cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_fails_an_unsent_record_and_it_is_never_written() {
    let topic = "cancel";
    let mock = one_partition_cluster(topic);
    let client = warm_client(topic, builder(&mock).linger(Duration::from_secs(30))).await;

    // Lingering (30 s): unsent.
    let lingering = client.produce(Record::new(topic, "lingering").with_key("k"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    lingering.cancel();
    let result = bounded(
        "cancel a lingering record",
        Duration::from_secs(5),
        lingering,
    )
    .await;
    assert_eq!(result, Err(ProduceError::Cancelled));

    // Waiting for a broker that is down: unsent.
    mock.broker_down(1).expect("down");
    let stuck = client.produce(Record::new(topic, "stuck").with_key("k"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stuck.cancel();
    let result = bounded(
        "cancel a record for a broker that is down",
        Duration::from_secs(5),
        stuck,
    )
    .await;
    assert_eq!(result, Err(ProduceError::Cancelled));
    mock.broker_up(1).expect("up");

    // Delivered, then cancelled: nothing changes.
    let kept = client.produce_sync(Record::new(topic, "kept").with_key("k"));
    let meta = bounded(
        "produce_sync after the broker is back",
        Duration::from_secs(15),
        kept,
    )
    .await
    .expect("delivered");
    assert_eq!(meta.offset, 1);
    bounded("close", Duration::from_secs(5), client.close()).await;
    assert_eq!(values_in(&mock, topic, 2).await, ["warm-up", "kept"]);
}

/// With a slow broker (500 ms round trip) and room for 10 records,
/// `try_produce` refuses the 11th at once with `BufferFull` (no waiting
/// on the network) while `produce` would wait; once the 10 are delivered
/// there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_produce_fails_fast_with_buffer_full_when_the_broker_is_slow() {
    let topic = "buffer-full";
    let mock = one_partition_cluster(topic);
    let client = warm_client(
        topic,
        builder(&mock)
            .max_buffered_records(10)
            .linger(Duration::ZERO),
    )
    .await;
    mock.round_trip_time(MockCluster::ALL_BROKERS, Duration::from_millis(500))
        .expect("rtt");
    let mut buffered = Vec::new();
    for i in 0..10 {
        let mut d = client.produce(Record::new(topic, format!("r{i}")).with_key("k"));
        bounded("buffer admission", Duration::from_secs(1), d.buffered())
            .await
            .expect("room for 10");
        buffered.push(d);
    }
    let asked = Instant::now();
    let refused = bounded(
        "try_produce on a full buffer",
        Duration::from_secs(1),
        client.try_produce(Record::new(topic, "refused").with_key("k")),
    )
    .await;
    let took = asked.elapsed();
    assert!(
        matches!(refused, Err(ProduceError::BufferFull)),
        "try_produce on a full buffer: {:?}",
        refused.map(|_| ())
    );
    assert!(
        took < Duration::from_millis(250),
        "BufferFull took {took:?}, a round trip is 500 ms"
    );
    for (i, d) in buffered.into_iter().enumerate() {
        bounded("delivery through a slow broker", Duration::from_secs(15), d)
            .await
            .unwrap_or_else(|e| panic!("record {i}: {e}"));
    }
    let later = bounded(
        "try_produce with room again",
        Duration::from_secs(1),
        client.try_produce(Record::new(topic, "later").with_key("k")),
    )
    .await
    .expect("room again");
    bounded("delivery", Duration::from_secs(15), later)
        .await
        .expect("delivered");
    mock.round_trip_time(MockCluster::ALL_BROKERS, Duration::ZERO)
        .expect("rtt off");
    bounded("close", Duration::from_secs(5), client.close()).await;
    let mut want = vec!["warm-up".to_owned()];
    want.extend((0..10).map(|i| format!("r{i}")));
    want.push("later".into());
    assert_eq!(values_in(&mock, topic, 12).await, want);
    eprintln!("BufferFull after {took:?}");
}
