//! librdkafka produces, sansa consumes: every codec, with headers, on the
//! mock cluster and on Tansu. What sansa reads must be exactly what was
//! written: same keys, values and headers, every record once, offsets
//! increasing per partition, per-key order kept.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sansa_tests::peers::librdkafka::{self, check_same_records, Consumed, TestRecord};
use sansa_tests::peers::{KafkaPeer, MockCluster, Tansu};
use sansa_tokio::{Client, StartOffset};

const RECORDS: usize = 5_000;
const WAIT: Duration = Duration::from_secs(30);
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

fn runtime() -> tokio::runtime::Runtime {
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

/// Reads `n` records of `topic` with sansa, from the start.
async fn consume_with_sansa(bootstrap: &str, topic: &str, n: usize) -> Vec<Consumed> {
    let client = Client::builder()
        .seed_brokers(bootstrap.split(','))
        .build()
        .await
        .expect("sansa client");
    client.consume_topics([topic]);
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < n {
        let left = WAIT.saturating_sub(start.elapsed());
        let fetched = tokio::time::timeout(left, client.poll_fetches(None))
            .await
            .unwrap_or_else(|_| panic!("read {} of {n} records in {WAIT:?}", out.len()));
        for f in fetched {
            assert!(
                f.error.is_none(),
                "{}/{}: {:?}",
                f.topic,
                f.partition,
                f.error
            );
            for r in f.records {
                out.push(Consumed {
                    partition: r.partition,
                    offset: r.offset,
                    key: r.key.map(|k| k.to_vec()),
                    value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
                    headers: r
                        .headers
                        .iter_ref()
                        .map(|h| {
                            (
                                String::from_utf8_lossy(h.key).into_owned(),
                                h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                            )
                        })
                        .collect(),
                    timestamp_ms: Some(r.timestamp),
                });
            }
        }
    }
    client.close().await;
    out
}

fn every_codec_produced_by_librdkafka_is_read_exactly(peer: &dyn KafkaPeer, replication: i32) {
    let name = peer.name();
    let bootstrap = peer.bootstrap();
    let rt = runtime();
    for codec in CODECS {
        let started = Instant::now();
        let topic = format!("consume-{codec}");
        peer.create_topic(&topic, 4, replication)
            .unwrap_or_else(|e| panic!("{name}: create {topic}: {e}"));
        let sent: Vec<TestRecord> = (0..RECORDS)
            .map(|i| {
                let mut r = TestRecord::numbered(i, 100);
                // A duplicate header key: both must come back, in order.
                r.headers.push(("seq".into(), b"again".to_vec()));
                r
            })
            .collect();
        let producer = librdkafka::producer(&bootstrap, &[("compression.type", codec)])
            .expect("librdkafka producer");
        librdkafka::produce_blocking(&producer, &topic, &sent)
            .unwrap_or_else(|e| panic!("{name} {codec}: librdkafka produce: {e}"));
        let consumed = rt.block_on(consume_with_sansa(&bootstrap, &topic, RECORDS));
        check_same_records(&sent, &consumed).unwrap_or_else(|e| panic!("{name} {codec}: {e}"));
        eprintln!(
            "{name} {codec}: {RECORDS} records read by sansa in {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn sansa_reads_what_librdkafka_wrote_with_every_codec_on_the_mock_cluster() {
    let mock = MockCluster::new(3).expect("mock cluster");
    every_codec_produced_by_librdkafka_is_read_exactly(&mock, 3);
}

#[test]
fn sansa_reads_what_librdkafka_wrote_with_every_codec_on_tansu() {
    let tansu = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    every_codec_produced_by_librdkafka_is_read_exactly(&tansu, 1);
}

/// Writes 100 records to partition 0 of a new one-partition `topic`.
fn hundred_records(peer: &dyn KafkaPeer, topic: &str) {
    let bootstrap = peer.bootstrap();
    peer.create_topic(topic, 1, 1)
        .unwrap_or_else(|e| panic!("{}: create {topic}: {e}", peer.name()));
    let sent: Vec<TestRecord> = (0..100)
        .map(|i| {
            let mut r = TestRecord::numbered(i, 10);
            r.partition = Some(0);
            r
        })
        .collect();
    let producer = librdkafka::producer(&bootstrap, &[]).expect("producer");
    librdkafka::produce_blocking(&producer, topic, &sent).expect("produce");
}

/// Reads partition 0 of `topic` from `start` until `until` (exclusive):
/// (offset, leader epoch) of each record, failing on any fetch error.
async fn read_from(
    bootstrap: &str,
    topic: &str,
    start: StartOffset,
    until: i64,
) -> Vec<(i64, i32)> {
    let client = Client::builder()
        .seed_brokers(bootstrap.split(','))
        .build()
        .await
        .expect("client");
    client.consume_partitions(BTreeMap::from([(
        topic.to_string(),
        BTreeMap::from([(0, start)]),
    )]));
    let mut got = Vec::new();
    while got.last().is_none_or(|&(o, _)| o + 1 < until) {
        let fetched = tokio::time::timeout(WAIT, client.poll_fetches(None))
            .await
            .unwrap_or_else(|_| panic!("{start:?}: read {got:?} of ..{until} in {WAIT:?}"));
        for f in fetched {
            assert!(f.error.is_none(), "{start:?}: {:?}", f.error);
            got.extend(f.records.iter().map(|r| (r.offset, r.leader_epoch)));
        }
    }
    client.close().await;
    got
}

#[test]
fn exact_start_offsets_are_honoured_on_the_mock_cluster() {
    let mock = MockCluster::new(1).expect("mock cluster");
    hundred_records(&mock, "exact");
    let rt = runtime();
    let read = rt.block_on(read_from(
        &mock.bootstrap(),
        "exact",
        StartOffset::At(90),
        100,
    ));
    let offsets: Vec<i64> = read.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (90..100).collect::<Vec<i64>>());
}

/// A committed position with its leader epoch (KIP-320): the consumer
/// asks the leader (OffsetForLeaderEpoch) whether the log still holds
/// that epoch up to the offset, and reads on from exactly there.
fn a_start_with_its_leader_epoch_is_validated_then_read(peer: &dyn KafkaPeer) {
    hundred_records(peer, "epoch-start");
    let rt = runtime();
    let bootstrap = peer.bootstrap();
    let first = rt.block_on(read_from(&bootstrap, "epoch-start", StartOffset::At(0), 50));
    let &(_, epoch) = first.get(49).expect("offset 49 read");
    let read = rt.block_on(read_from(
        &bootstrap,
        "epoch-start",
        StartOffset::AtEpoch {
            offset: 50,
            leader_epoch: epoch,
        },
        100,
    ));
    let offsets: Vec<i64> = read.iter().map(|r| r.0).collect();
    assert_eq!(
        offsets,
        (50..100).collect::<Vec<i64>>(),
        "{}: epoch {epoch}",
        peer.name()
    );
}

#[test]
fn a_start_with_its_leader_epoch_is_validated_then_read_on_the_mock_cluster() {
    let mock = MockCluster::new(1).expect("mock cluster");
    a_start_with_its_leader_epoch_is_validated_then_read(&mock);
}

#[test]
fn a_start_with_its_leader_epoch_is_validated_then_read_on_tansu() {
    let tansu = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    a_start_with_its_leader_epoch_is_validated_then_read(&tansu);
}

#[test]
fn a_regex_subscription_sees_a_topic_created_after_start_on_tansu() {
    let tansu = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = tansu.bootstrap();
    tansu.create_topic("audit-1", 1, 1).expect("topic");
    tansu.create_topic("unrelated", 1, 1).expect("topic");
    let producer = librdkafka::producer(&bootstrap, &[]).expect("producer");
    let one = vec![TestRecord::numbered(1, 10)];
    librdkafka::produce_blocking(&producer, "audit-1", &one).expect("produce");
    librdkafka::produce_blocking(&producer, "unrelated", &one).expect("produce");
    let rt = runtime();
    let seen = rt.block_on(async {
        let client = Client::builder()
            .seed_brokers(bootstrap.split(','))
            .config(|c| {
                c.metadata_max_age(Duration::from_millis(500))
                    .metadata_min_age(Duration::from_millis(100))
            })
            .build()
            .await
            .expect("client");
        client.consume_regex(["audit-.*"]).expect("pattern");
        let mut seen = Vec::new();
        let first = tokio::time::timeout(WAIT, client.poll_records(None))
            .await
            .expect("first topic");
        seen.extend(first.iter().map(|r| r.topic.to_string()));
        // Created after the subscription started.
        tansu.create_topic("audit-2", 1, 1).expect("topic");
        librdkafka::produce_blocking(&producer, "audit-2", &one).expect("produce");
        while !seen.iter().any(|t| t == "audit-2") {
            let more = tokio::time::timeout(WAIT, client.poll_records(None))
                .await
                .expect("the new topic");
            seen.extend(more.iter().map(|r| r.topic.to_string()));
        }
        client.close().await;
        seen
    });
    assert_eq!(seen, vec!["audit-1".to_string(), "audit-2".to_string()]);
}

#[test]
fn the_record_stream_yields_what_librdkafka_wrote_on_the_mock_cluster() {
    use futures_util::StreamExt;

    let mock = MockCluster::new(3).expect("mock cluster");
    let bootstrap = mock.bootstrap();
    let topic = "consume-stream";
    mock.create_topic(topic, 4, 3).expect("topic");
    let sent: Vec<TestRecord> = (0..RECORDS).map(|i| TestRecord::numbered(i, 100)).collect();
    let producer = librdkafka::producer(&bootstrap, &[]).expect("librdkafka producer");
    librdkafka::produce_blocking(&producer, topic, &sent).expect("produce");
    let rt = runtime();
    let consumed = rt.block_on(async {
        let client = Client::builder()
            .seed_brokers(bootstrap.split(','))
            .build()
            .await
            .expect("sansa client");
        client.consume_topics([topic]);
        // The stream owns its client handle: it moves to another task.
        let stream = client.record_stream();
        let reader = tokio::spawn(async move {
            stream
                .take(RECORDS)
                .map(|item| {
                    let r = item.unwrap_or_else(|e| panic!("{e}"));
                    Consumed {
                        partition: r.partition,
                        offset: r.offset,
                        key: r.key.map(|k| k.to_vec()),
                        value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
                        headers: r
                            .headers
                            .iter_ref()
                            .map(|h| {
                                (
                                    String::from_utf8_lossy(h.key).into_owned(),
                                    h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                                )
                            })
                            .collect(),
                        timestamp_ms: Some(r.timestamp),
                    }
                })
                .collect::<Vec<_>>()
                .await
        });
        let consumed = tokio::time::timeout(WAIT, reader)
            .await
            .expect("stream read everything in time")
            .expect("reader task");
        // After close the stream ends instead of waiting forever.
        let mut after = client.record_stream();
        client.close().await;
        assert!(
            tokio::time::timeout(WAIT, after.next())
                .await
                .expect("ends")
                .is_none(),
            "a stream of a closed client ends"
        );
        consumed
    });
    check_same_records(&sent, &consumed).unwrap_or_else(|e| panic!("{e}"));
}
