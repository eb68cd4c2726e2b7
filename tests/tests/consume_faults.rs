//! Faults while sansa consumes from librdkafka's mock cluster (3 brokers,
//! replication 3): leader moves, brokers going down and coming back,
//! injected Fetch and ListOffsets errors, fetches that time out.
//! librdkafka produces a numbered sequence before and during consumption;
//! sansa must read every record exactly once, offsets strictly increasing
//! per partition, and catch up within a bounded time.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use sansa_tests::peers::librdkafka::{self, Delivered, TestRecord};
use sansa_tests::peers::MockCluster;
use sansa_tokio::core::protocol::{ApiKey, ErrorCode};
use sansa_tokio::ConsumerConfig;

use support::{quick_consumer, read_until, runtime, Ledger};

/// How long reading everything may take, from the start of consumption.
const LIMIT: Duration = Duration::from_secs(45);
/// How long sansa may lag behind the last record written.
const CATCH_UP: Duration = Duration::from_secs(12);

fn records(range: std::ops::Range<usize>) -> Vec<TestRecord> {
    range.map(|i| TestRecord::numbered(i, 64)).collect()
}

/// One fault scenario: `before` records are written, sansa starts on the
/// topic, then `during` more are written in small chunks.
struct Scenario {
    name: &'static str,
    partitions: i32,
    before: usize,
    during: usize,
    consumer: ConsumerConfig,
    /// sansa's request timeout, if not the default.
    client_timeout: Option<Duration>,
}

impl Scenario {
    fn new(name: &'static str, partitions: i32, before: usize, during: usize) -> Self {
        Scenario {
            name,
            partitions,
            before,
            during,
            consumer: quick_consumer(),
            client_timeout: None,
        }
    }
}

/// Runs `scenario` on a fresh 3-broker mock cluster (`prepare` runs first
/// on it) while `faults` runs on its own thread; checks that sansa read
/// exactly what was written, and returns the cluster.
fn faulty_consumption(
    scenario: Scenario,
    prepare: impl FnOnce(&MockCluster),
    faults: impl FnOnce(&MockCluster, &str) + Send,
) -> MockCluster {
    let Scenario {
        name,
        partitions,
        before,
        during,
        consumer,
        client_timeout,
    } = scenario;
    let started = Instant::now();
    let mock = MockCluster::new(3).expect("mock cluster");
    prepare(&mock);
    let bootstrap = mock.bootstrap();
    let topic = format!("faults-{name}");
    mock.create_topic(&topic, partitions, 3).expect("topic");
    let producer = librdkafka::producer(&bootstrap, &[]).expect("producer");
    let mut delivered: Vec<Delivered> =
        librdkafka::produce_blocking(&producer, &topic, &records(0..before)).expect("produce");
    let rt = runtime();
    let client = rt.block_on(async {
        let mut b = sansa_tokio::Client::builder()
            .seed_brokers(bootstrap.split(','))
            .consumer(consumer);
        if let Some(t) = client_timeout {
            b = b.request_timeout(t);
        }
        b.build().await.expect("client")
    });
    client.consume_topics([topic.as_str()]);
    let consume_start = Instant::now();
    let mut ledger = Ledger::default();
    let (during_delivered, produced_at) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut out = Vec::new();
            for chunk in (before..before + during).collect::<Vec<_>>().chunks(50) {
                let batch = records(chunk[0]..chunk[chunk.len() - 1] + 1);
                out.extend(
                    librdkafka::produce_blocking(&producer, &topic, &batch)
                        .unwrap_or_else(|e| panic!("{name}: librdkafka produce: {e}")),
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            (out, Instant::now())
        });
        let mock = &mock;
        let topic = topic.as_str();
        let injector = s.spawn(move || faults(mock, topic));
        rt.block_on(read_until(&client, &mut ledger, before + during, LIMIT));
        injector.join().expect("fault thread");
        writer.join().expect("writer thread")
    });
    let done = Instant::now();
    delivered.extend(during_delivered);
    assert!(ledger.errors.is_empty(), "{name}: {:?}", ledger.errors);
    ledger.check_exactly(&delivered);
    let lag = done.saturating_duration_since(produced_at);
    eprintln!(
        "{name}: {} records read exactly once in {:?} (caught up {:?} after the last write; \
         test {:?})",
        before + during,
        done - consume_start,
        lag,
        started.elapsed()
    );
    assert!(
        lag < CATCH_UP,
        "{name}: sansa lagged {lag:?} behind the writer"
    );
    rt.block_on(client.close());
    mock
}

#[test]
fn leader_moves_during_consumption_skip_and_repeat_nothing() {
    let mock = faulty_consumption(
        Scenario::new("leader-moves", 6, 2_000, 3_000),
        MockCluster::start_request_tracking,
        |mock, topic| {
            for round in 0..10 {
                for p in 0..6 {
                    let leader = 1 + (p + round) % 3;
                    mock.partition_leader(topic, p, Some(leader)).expect("move");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        },
    );
    // Each move bumps the leader epoch: cursors that fetched under the old
    // one are validated (KIP-320) before fetching on, and found no
    // truncation (the ledger saw no data loss and no gap).
    let validations = mock
        .requests()
        .iter()
        .filter(|r| r.api_key == Some(ApiKey::OffsetForLeaderEpoch))
        .count();
    assert!(
        validations > 0,
        "no OffsetForLeaderEpoch after 10 rounds of leader moves"
    );
    eprintln!("leader-moves: {validations} OffsetForLeaderEpoch requests");
}

#[test]
fn leader_epoch_validation_errors_are_retried_without_skips_or_repeats() {
    let errors = [
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch,
        ErrorCode::RequestTimedOut,
    ];
    let mock = faulty_consumption(
        Scenario::new("validation-errors", 4, 1_000, 2_000),
        |mock| {
            // Queued before sansa starts: its first OffsetForLeaderEpoch
            // requests (after the first moves) meet them.
            mock.request_errors(ApiKey::OffsetForLeaderEpoch, &errors)
                .expect("inject");
            mock.start_request_tracking();
        },
        |mock, topic| {
            for round in 0..4 {
                std::thread::sleep(Duration::from_millis(300));
                for p in 0..4 {
                    mock.partition_leader(topic, p, Some(1 + (p + round + 1) % 3))
                        .expect("move");
                }
            }
        },
    );
    let validations = mock
        .requests()
        .iter()
        .filter(|r| r.api_key == Some(ApiKey::OffsetForLeaderEpoch))
        .count();
    assert!(
        validations > errors.len(),
        "{validations} OffsetForLeaderEpoch requests: the errors were not all met"
    );
}

#[test]
fn a_partition_without_leader_for_a_while_resumes() {
    faulty_consumption(
        Scenario::new("leaderless", 4, 1_000, 2_000),
        |mock| {
            // Mock defect (librdkafka 2.12.1): answering NOT_LEADER for a
            // partition with no leader, Produce v10+ and Fetch v12+ write
            // the CurrentLeader tag through a null leader and the mock
            // crashes (SIGSEGV in rd_kafka_mock_Produce_reply_tags_partition_write).
            // Capped below those versions, no tag is written.
            mock.api_versions(ApiKey::Produce, 0, 9)
                .expect("cap Produce");
            mock.api_versions(ApiKey::Fetch, 4, 11).expect("cap Fetch");
        },
        |mock, topic| {
            std::thread::sleep(Duration::from_millis(200));
            mock.partition_leader(topic, 0, None).expect("no leader");
            mock.partition_leader(topic, 1, None).expect("no leader");
            std::thread::sleep(Duration::from_millis(1_500));
            mock.partition_leader(topic, 0, Some(2))
                .expect("leader back");
            mock.partition_leader(topic, 1, Some(3))
                .expect("leader back");
        },
    );
}

#[test]
fn brokers_going_down_and_up_during_consumption_skip_and_repeat_nothing() {
    faulty_consumption(
        Scenario::new("down-up", 6, 2_000, 3_000),
        |_| {},
        |mock, _topic| {
            std::thread::sleep(Duration::from_millis(300));
            mock.broker_down(2).expect("down");
            std::thread::sleep(Duration::from_millis(2_000));
            mock.broker_up(2).expect("up");
            std::thread::sleep(Duration::from_millis(500));
            mock.broker_down(3).expect("down");
            std::thread::sleep(Duration::from_millis(1_000));
            mock.broker_up(3).expect("up");
        },
    );
}

#[test]
fn a_broker_down_while_its_partitions_move_away_and_back() {
    faulty_consumption(
        Scenario::new("down-move", 6, 2_000, 3_000),
        |_| {},
        |mock, topic| {
            std::thread::sleep(Duration::from_millis(300));
            mock.broker_down(1).expect("down");
            for p in 0..6 {
                mock.partition_leader(topic, p, Some(2 + p % 2))
                    .expect("move");
            }
            std::thread::sleep(Duration::from_millis(1_500));
            mock.broker_up(1).expect("up");
            for p in 0..6 {
                mock.partition_leader(topic, p, Some(1)).expect("move back");
            }
        },
    );
}

#[test]
fn injected_fetch_errors_are_retried_without_skips_or_repeats() {
    let mock = faulty_consumption(
        Scenario::new("fetch-errors", 6, 2_000, 3_000),
        MockCluster::start_request_tracking,
        |mock, _topic| {
            let errors = [
                ErrorCode::NotLeaderOrFollower,
                ErrorCode::UnknownLeaderEpoch,
                ErrorCode::FencedLeaderEpoch,
                ErrorCode::RequestTimedOut,
                ErrorCode::LeaderNotAvailable,
                ErrorCode::ReplicaNotAvailable,
                ErrorCode::UnknownTopicOrPartition,
                ErrorCode::KafkaStorageError,
                ErrorCode::NetworkException,
                ErrorCode::OffsetNotAvailable,
                ErrorCode::NotEnoughReplicas,
            ];
            for round in 0..6 {
                // A few at once, then a pause so fetches get through.
                let from = (round * 3) % errors.len();
                let some: Vec<ErrorCode> =
                    errors.iter().cycle().skip(from).take(4).copied().collect();
                mock.request_errors(ApiKey::Fetch, &some).expect("inject");
                std::thread::sleep(Duration::from_millis(400));
            }
        },
    );
    let fetches = mock
        .requests()
        .iter()
        .filter(|r| r.api_key == Some(ApiKey::Fetch))
        .count();
    // 24 errors were queued; they are consumed one per Fetch.
    assert!(
        fetches > 24,
        "only {fetches} fetches: the errors were not all met"
    );
}

#[test]
fn injected_list_offsets_errors_at_the_start_are_retried() {
    let errors = [
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::RequestTimedOut,
        ErrorCode::UnknownLeaderEpoch,
        ErrorCode::FencedLeaderEpoch,
    ];
    let mock = faulty_consumption(
        Scenario::new("list-errors", 4, 1_000, 500),
        |mock| {
            // Queued before sansa starts, so its first ListOffsets meet
            // them (librdkafka's producer sends none).
            mock.request_errors(ApiKey::ListOffsets, &errors)
                .expect("inject");
            mock.start_request_tracking();
        },
        |_, _| {},
    );
    let lists = mock
        .requests()
        .iter()
        .filter(|r| r.api_key == Some(ApiKey::ListOffsets))
        .count();
    assert!(
        lists > errors.len(),
        "{lists} ListOffsets requests: the errors were not all met"
    );
}

#[test]
fn fetches_that_time_out_are_resent_without_skips_or_repeats() {
    faulty_consumption(
        Scenario {
            // The mock holds these fetches 3 s; sansa gives up after 1.5 s
            // and drops the connection.
            client_timeout: Some(Duration::from_millis(1_500)),
            ..Scenario::new("fetch-timeouts", 6, 2_000, 2_000)
        },
        |_| {},
        |mock, _topic| {
            for b in 1..=3 {
                std::thread::sleep(Duration::from_millis(300));
                mock.broker_request_errors_with_rtt(
                    b,
                    ApiKey::Fetch,
                    &[(ErrorCode::None, Duration::from_secs(3))],
                )
                .expect("inject");
            }
        },
    );
}

#[test]
fn everything_at_once() {
    faulty_consumption(
        Scenario {
            consumer: ConsumerConfig {
                // Small fetches, so many requests meet the faults.
                fetch_max_partition_bytes: 4 * 1024,
                ..quick_consumer()
            },
            ..Scenario::new("everything", 8, 3_000, 4_000)
        },
        |_| {},
        |mock, topic| {
            for round in 0..8i32 {
                let p = round % 8;
                mock.partition_leader(topic, p, Some(1 + (round + 1) % 3))
                    .expect("move");
                mock.request_errors(
                    ApiKey::Fetch,
                    &[ErrorCode::FencedLeaderEpoch, ErrorCode::NotLeaderOrFollower],
                )
                .expect("inject");
                if round == 3 {
                    mock.broker_down(2).expect("down");
                }
                if round == 5 {
                    mock.broker_up(2).expect("up");
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        },
    );
}
