//! Each peer fixture works, proven with librdkafka as the client: create a
//! topic, produce 1,000 records, consume them back, compare. Plus the mock
//! cluster's fault controls, each shown to act on a real client.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sansa_core::protocol::{ApiKey, ErrorCode};
use sansa_tests::peers::librdkafka::{self, check_same_records, numbered_records};
use sansa_tests::peers::{KafkaPeer, MockCluster, NoidaDb, Tansu};

const RECORDS: usize = 1_000;
const CONSUME_TIMEOUT: Duration = Duration::from_secs(15);

/// The scenario every peer must pass: 1,000 records through librdkafka and
/// back, same content, offsets increasing, per-key order kept.
fn round_trip_1000_records(peer: &dyn KafkaPeer, topic: &str, partitions: i32, replication: i32) {
    let name = peer.name();
    let bootstrap = peer.bootstrap();
    peer.create_topic(topic, partitions, replication)
        .unwrap_or_else(|e| panic!("{name}: create topic {topic}: {e}"));

    let sent = numbered_records(RECORDS);
    let producer = librdkafka::producer(&bootstrap, &[]).expect("librdkafka producer");
    let delivered = librdkafka::produce_blocking(&producer, topic, &sent)
        .unwrap_or_else(|e| panic!("{name}: produce {RECORDS} records: {e}"));
    assert_eq!(delivered.len(), RECORDS);
    let used: std::collections::BTreeSet<i32> = delivered.iter().map(|d| d.partition).collect();
    assert!(
        used.len() > 1 || partitions == 1,
        "{name}: 16 keys all landed in one partition: {used:?}"
    );

    let consumed = librdkafka::consume(&bootstrap, topic, RECORDS, CONSUME_TIMEOUT)
        .unwrap_or_else(|e| panic!("{name}: consume: {e}"));
    check_same_records(&sent, &consumed).unwrap_or_else(|e| panic!("{name}: {e}"));
    // Where librdkafka was told each record went is where it was read.
    let mut told: Vec<(i32, i64)> = delivered.iter().map(|d| (d.partition, d.offset)).collect();
    let mut read: Vec<(i32, i64)> = consumed.iter().map(|c| (c.partition, c.offset)).collect();
    told.sort_unstable();
    read.sort_unstable();
    assert_eq!(
        told, read,
        "{name}: delivery reports and consumed offsets differ"
    );
}

#[test]
fn mock_cluster_of_3_brokers_round_trips_1000_records_with_librdkafka() {
    let started = Instant::now();
    let mock = MockCluster::new(3).expect("mock cluster");
    assert_eq!(mock.broker_ids(), 1..=3);
    assert_eq!(mock.bootstrap().split(',').count(), 3);
    round_trip_1000_records(&mock, "round-trip", 6, 3);
    eprintln!("mock cluster round trip: {:?}", started.elapsed());
}

#[test]
fn tansu_round_trips_1000_records_with_librdkafka() {
    let started = Instant::now();
    let tansu = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    round_trip_1000_records(&tansu, "round-trip", 4, 1);
    eprintln!("tansu round trip: {:?}", started.elapsed());
}

#[test]
fn noida_db_round_trips_1000_records_with_librdkafka() {
    let started = Instant::now();
    let noida = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let data_dir = noida.data_dir();
    round_trip_1000_records(&noida, "round-trip", 4, 1);
    drop(noida);
    assert!(
        !data_dir.exists(),
        "noida-db's data dir outlived the fixture"
    );
    eprintln!("noida-db round trip: {:?}", started.elapsed());
}

#[test]
fn tansu_is_killed_when_its_fixture_drops() {
    let tansu = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    let addr = tansu.bootstrap();
    std::net::TcpStream::connect(&addr).expect("tansu accepts connections");
    drop(tansu);
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "something still listens on {addr} after the fixture dropped"
    );
}

/// Injected errors, request tracking, leader moves, broker down/up and
/// round-trip delay each change what a real client (librdkafka) sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_fault_controls_act_on_librdkafka() {
    let started = Instant::now();
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic("faults", 3, 3).expect("create topic");
    // librdkafka learns that a leader moved away from a broker that is
    // down only from its periodic metadata refresh (5 min by default; 3 s
    // per move was seen with the fast-refresh defaults), so refresh often.
    let producer = librdkafka::producer(
        &mock.bootstrap(),
        &[
            ("retry.backoff.ms", "10"),
            ("linger.ms", "0"),
            ("topic.metadata.refresh.interval.ms", "500"),
        ],
    )
    .expect("producer");
    let to_partition_0 = |n: usize| {
        let mut records = numbered_records(n);
        for r in &mut records {
            r.partition = Some(0);
        }
        records
    };

    // Two retriable Produce errors: librdkafka retries and delivers, and
    // the tracker sees three Produce requests.
    librdkafka::produce(&producer, "faults", &to_partition_0(1))
        .await
        .expect("warm-up produce");
    mock.start_request_tracking();
    mock.request_errors(
        ApiKey::Produce,
        &[ErrorCode::NotEnoughReplicas, ErrorCode::NotEnoughReplicas],
    )
    .expect("inject errors");
    let d = librdkafka::produce(&producer, "faults", &to_partition_0(1))
        .await
        .expect("produce succeeds after two retriable errors");
    assert_eq!((d[0].partition, d[0].offset), (0, 1));
    let produces = mock
        .requests()
        .iter()
        .filter(|r| r.api_key == Some(ApiKey::Produce))
        .count();
    assert_eq!(produces, 3, "one failed twice, then succeeded");
    mock.stop_request_tracking();

    // Move partition 0's leader to each broker in turn and take the others
    // down: the client follows the leader.
    for leader in mock.broker_ids() {
        mock.partition_leader("faults", 0, Some(leader))
            .expect("move leader");
        for other in mock.broker_ids().filter(|b| *b != leader) {
            mock.broker_down(other).expect("broker down");
        }
        mock.start_request_tracking();
        librdkafka::produce(&producer, "faults", &to_partition_0(10))
            .await
            .unwrap_or_else(|e| panic!("produce with leader {leader} alone up: {e}"));
        let seen_by: Vec<i32> = mock
            .requests()
            .iter()
            .filter(|r| r.api_key == Some(ApiKey::Produce))
            .map(|r| r.broker_id)
            .collect();
        assert!(
            seen_by.last() == Some(&leader),
            "the last Produce went to {seen_by:?}, not to leader {leader}"
        );
        mock.stop_request_tracking();
        for other in mock.broker_ids().filter(|b| *b != leader) {
            mock.broker_up(other).expect("broker up");
        }
    }

    // Round-trip delay on partition 0's leader shows in the delivery time.
    mock.round_trip_time(MockCluster::ALL_BROKERS, Duration::from_millis(300))
        .expect("rtt");
    let t = Instant::now();
    librdkafka::produce(&producer, "faults", &to_partition_0(1))
        .await
        .expect("produce with delay");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "a 300 ms round trip answered in {:?}",
        t.elapsed()
    );
    mock.round_trip_time(MockCluster::ALL_BROKERS, Duration::ZERO)
        .expect("rtt off");

    // Every record is there: 1 + 1 + 3 * 10 + 1 in partition 0.
    let bootstrap = mock.bootstrap();
    let consumed = tokio::task::spawn_blocking(move || {
        librdkafka::consume(&bootstrap, "faults", 33, CONSUME_TIMEOUT)
    })
    .await
    .expect("consumer thread")
    .expect("consume");
    assert!(consumed.iter().all(|c| c.partition == 0));
    let offsets: Vec<i64> = consumed.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, (0..33).collect::<Vec<i64>>());
    eprintln!("mock fault controls: {:?}", started.elapsed());
}

/// The group initial rebalance delay is 0, so a classic group forms at once
/// instead of after the mock's default 3 s.
#[test]
fn mock_cluster_forms_a_classic_group_without_the_initial_delay() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("grouped", 2, 1).expect("topic");
    let consumer: BaseConsumer = librdkafka::config(
        &mock.bootstrap(),
        &[("group.id", "g"), ("session.timeout.ms", "6000")],
    )
    .create()
    .expect("consumer");
    consumer.subscribe(&["grouped"]).expect("subscribe");
    let started = Instant::now();
    while consumer.assignment().expect("assignment").count() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no assignment after 10 s"
        );
        let _ = consumer.poll(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "the group took {:?} to form: the initial rebalance delay is not 0",
        started.elapsed()
    );
    eprintln!("classic group formed in {:?}", started.elapsed());
}
