//! The simulated cluster on real sockets serves a client that is not ours:
//! librdkafka produces to it and consumes back, through the same fixture
//! checks as the real peers, and librdkafka consumers share a topic
//! through the simulated group coordinator.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sansa_sim::cluster::OFFSETS_TOPIC;
use sansa_sim::{ClusterConfig, TcpCluster};
use sansa_tests::peers::librdkafka::{self, check_same_records, numbered_records};

#[test]
fn librdkafka_produces_and_consumes_through_the_simulated_cluster() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let handle = rt.block_on(async {
        let mut server = TcpCluster::bind("127.0.0.1".parse().unwrap(), ClusterConfig::new(3))
            .await
            .expect("bind");
        server
            .cluster_mut()
            .create_topic("through-sim", 4, 3)
            .expect("topic");
        server.spawn()
    });
    let bootstrap = handle.bootstrap();
    let sent = numbered_records(1_000);
    let producer = librdkafka::producer(&bootstrap, &[("enable.idempotence", "true")])
        .expect("librdkafka producer");
    let delivered = librdkafka::produce_blocking(&producer, "through-sim", &sent)
        .unwrap_or_else(|e| panic!("librdkafka produce through the simulator: {e}"));
    assert_eq!(delivered.len(), sent.len());
    let consumed = librdkafka::consume(
        &bootstrap,
        "through-sim",
        sent.len(),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("librdkafka consume through the simulator: {e}"));
    check_same_records(&sent, &consumed).unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(handle.shutdown());
}

/// A librdkafka consumer in group `group`, subscribed to `topic`, with
/// manual commits and the given assignor.
fn group_consumer(bootstrap: &str, group: &str, topic: &str, assignor: &str) -> BaseConsumer {
    let c: BaseConsumer = librdkafka::config(
        bootstrap,
        &[
            ("group.id", group),
            ("partition.assignment.strategy", assignor),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "300"),
            ("enable.partition.eof", "false"),
        ],
    )
    .create()
    .expect("librdkafka group consumer");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// Polls `c` once, keeping the value of a record it returns.
fn poll_into(c: &BaseConsumer, seen: &mut BTreeSet<Vec<u8>>) -> usize {
    match c.poll(Duration::from_millis(20)) {
        Some(Ok(m)) => {
            seen.insert(m.payload().unwrap_or_default().to_vec());
            1
        }
        Some(Err(e)) => panic!("librdkafka consumer error: {e}"),
        None => 0,
    }
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// The committed offsets of `group` as a fresh librdkafka client reads
/// them with OffsetFetch.
fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let reader: BaseConsumer = librdkafka::config(bootstrap, &[("group.id", group)])
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = reader
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("OffsetFetch through librdkafka");
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

/// Two librdkafka consumers share a topic through the simulated group
/// coordinator and commit; the coordinator moves; when one leaves the
/// other takes over every partition and commits to the end; every record
/// is consumed at least once.
fn two_consumers_share_a_topic_and_hand_over(assignor: &str) {
    const PARTITIONS: i32 = 6;
    const RECORDS: usize = 600;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let topic = format!("grp-{assignor}");
    let group = format!("group-{assignor}");
    let handle = rt.block_on(async {
        let mut server = TcpCluster::bind("127.0.0.1".parse().unwrap(), ClusterConfig::new(3))
            .await
            .expect("bind");
        server
            .cluster_mut()
            .create_topic(&topic, PARTITIONS, 3)
            .expect("topic");
        server.spawn()
    });
    let bootstrap = handle.bootstrap();
    let sent = numbered_records(RECORDS);
    let producer = librdkafka::producer(&bootstrap, &[("enable.idempotence", "true")])
        .expect("librdkafka producer");
    librdkafka::produce_blocking(&producer, &topic, &sent).expect("produce");

    let a = group_consumer(&bootstrap, &group, &topic, assignor);
    let b = group_consumer(&bootstrap, &group, &topic, assignor);
    let mut seen = BTreeSet::new();
    let mut read = 0;
    // Both get partitions: a split of the six between them, disjoint.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut both_assigned = false;
    while Instant::now() < deadline {
        read += poll_into(&a, &mut seen);
        read += poll_into(&b, &mut seen);
        let (pa, pb) = (assigned(&a), assigned(&b));
        if !pa.is_empty() && !pb.is_empty() && pa.len() + pb.len() == PARTITIONS as usize {
            assert!(pa.is_disjoint(&pb), "{pa:?} and {pb:?} overlap");
            both_assigned = true;
            if read >= RECORDS / 2 {
                break;
            }
        }
    }
    assert!(
        both_assigned,
        "both consumers never held partitions at once"
    );
    a.commit_consumer_state(CommitMode::Sync)
        .expect("a commits");
    b.commit_consumer_state(CommitMode::Sync)
        .expect("b commits");
    let offsets = committed(&bootstrap, &group, &topic, PARTITIONS);
    let members_committed = (assigned(&a), assigned(&b));
    let from_a = members_committed.0.iter().any(|&p| offsets[p as usize] > 0);
    let from_b = members_committed.1.iter().any(|&p| offsets[p as usize] > 0);
    assert!(
        from_a && from_b,
        "commits of both members land: {offsets:?}"
    );
    let in_sim = rt
        .block_on(handle.with({
            let group = group.clone();
            move |c| c.group(&group).map(|g| g.offsets().len())
        }))
        .flatten();
    assert!(
        in_sim.is_some_and(|n| n > 0),
        "the coordinator holds the commits"
    );

    // The coordinator moves (its offsets partition's leader does): the
    // members hear NOT_COORDINATOR, find the new one and carry on.
    let (before, after) = rt
        .block_on(handle.with({
            let group = group.clone();
            move |c| {
                let before = c.coordinator_of(&group);
                let p = c.offsets_partition_of(&group);
                c.move_leader(OFFSETS_TOPIC, p, None);
                (before, c.coordinator_of(&group))
            }
        }))
        .expect("server running");
    assert_ne!(before, after, "the coordinator moved");

    // b leaves; a takes over every partition and reads the rest.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Until a has read every partition to its end: its position, or
    // where the group had committed for a partition a has read nothing of
    // (librdkafka has no position there yet).
    let at_end = |c: &BaseConsumer| {
        let positions: i64 = c
            .position()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(o) => o,
                        _ => offsets[e.partition() as usize].max(0),
                    })
                    .sum()
            })
            .unwrap_or(0);
        positions == RECORDS as i64
    };
    while Instant::now() < deadline
        && (assigned(&a).len() < PARTITIONS as usize || seen.len() < RECORDS || !at_end(&a))
    {
        poll_into(&a, &mut seen);
    }
    assert_eq!(
        assigned(&a).len(),
        PARTITIONS as usize,
        "a took over everything"
    );
    let missing: Vec<usize> = sent
        .iter()
        .enumerate()
        .filter(|(_, r)| !seen.contains(&r.value))
        .map(|(i, _)| i)
        .collect();
    assert!(missing.is_empty(), "records never consumed: {missing:?}");
    a.commit_consumer_state(CommitMode::Sync)
        .expect("a commits all");
    let offsets = committed(&bootstrap, &group, &topic, PARTITIONS);
    let total: i64 = offsets.iter().sum();
    assert_eq!(
        total, RECORDS as i64,
        "every partition committed to its end: {offsets:?}"
    );
    drop(a);
    rt.block_on(handle.shutdown());
}

#[test]
fn librdkafka_consumers_share_a_group_with_the_range_assignor() {
    two_consumers_share_a_topic_and_hand_over("range");
}

#[test]
fn librdkafka_consumers_share_a_group_with_the_cooperative_sticky_assignor() {
    two_consumers_share_a_topic_and_hand_over("cooperative-sticky");
}

/// Every data record of `topic`'s `partitions` from the beginning, as a
/// librdkafka consumer with `isolation.level` reads them: `(partition,
/// value)` in the order it hands them out. Reads until `expected` came and
/// then a quiet second more, so a record too many is seen too.
fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    expected: usize,
) -> Vec<(i32, String)> {
    let c: BaseConsumer = librdkafka::config(
        bootstrap,
        &[
            ("group.id", "txn-readers"),
            ("enable.auto.commit", "false"),
            ("isolation.level", isolation),
            ("enable.partition.eof", "false"),
        ],
    )
    .create()
    .expect("librdkafka reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    c.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_until: Option<Instant> = None;
    while Instant::now() < deadline && quiet_until.is_none_or(|q| Instant::now() < q) {
        match c.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => got.push((
                m.partition(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(e)) => panic!("librdkafka {isolation} consumer error: {e}"),
            None => {}
        }
        if got.len() >= expected && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_secs(1));
        }
    }
    got
}

/// A transactional librdkafka producer commits some transactions (with
/// consumer offsets in them) and aborts others through the simulated
/// transaction coordinator; a read_committed librdkafka consumer sees
/// exactly the committed records in order, a read_uncommitted one every
/// data record, and the group's offset is the last committed
/// transaction's.
#[test]
fn librdkafka_transactions_commit_and_abort_through_the_simulated_cluster() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    const TOPIC: &str = "txn-sim";
    const GROUP: &str = "txn-group";
    const TXNS: usize = 6;
    const PER_TXN: usize = 10;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let handle = rt.block_on(async {
        let mut server = TcpCluster::bind("127.0.0.1".parse().unwrap(), ClusterConfig::new(3))
            .await
            .expect("bind");
        server
            .cluster_mut()
            .create_topic(TOPIC, 2, 3)
            .expect("topic");
        server.spawn()
    });
    let bootstrap = handle.bootstrap();
    // Threaded: delivery reports are served in the background, which
    // commit and abort wait for.
    let producer: ThreadedProducer<DefaultProducerContext> = librdkafka::config(
        &bootstrap,
        &[
            ("transactional.id", "sim-txn"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("transaction.timeout.ms", "60000"),
        ],
    )
    .create()
    .expect("transactional librdkafka producer");
    let t = Duration::from_secs(30);
    producer
        .init_transactions(t)
        .unwrap_or_else(|e| panic!("init_transactions through the simulator: {e}"));
    let group_reader: BaseConsumer = librdkafka::config(&bootstrap, &[("group.id", GROUP)])
        .create()
        .expect("group metadata consumer");
    let group_meta = group_reader.group_metadata().expect("group metadata");
    let mut committed_sent: Vec<(i32, String)> = Vec::new();
    let mut all_sent: Vec<(i32, String)> = Vec::new();
    for i in 0..TXNS {
        let commit = i % 2 == 0;
        producer.begin_transaction().expect("begin");
        for j in 0..PER_TXN {
            let partition = (j % 2) as i32;
            let value = format!("txn{i}-rec{j}");
            producer
                .send(
                    BaseRecord::<(), str>::to(TOPIC)
                        .partition(partition)
                        .payload(&value),
                )
                .unwrap_or_else(|(e, _)| panic!("send: {e}"));
            all_sent.push((partition, value.clone()));
            if commit {
                committed_sent.push((partition, value));
            }
        }
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(TOPIC, 0, Offset::Offset(i as i64 + 1))
            .expect("offset");
        producer
            .send_offsets_to_transaction(&offsets, &group_meta, t)
            .unwrap_or_else(|e| panic!("send_offsets_to_transaction {i}: {e}"));
        // Every record reaches the log before the outcome, so a
        // read_uncommitted reader sees the aborted ones too (an abort
        // purges what was not yet sent).
        producer.flush(t).expect("flush");
        if commit {
            producer
                .commit_transaction(t)
                .unwrap_or_else(|e| panic!("commit_transaction {i}: {e}"));
        } else {
            producer
                .abort_transaction(t)
                .unwrap_or_else(|e| panic!("abort_transaction {i}: {e}"));
        }
    }
    let by_partition = |records: &[(i32, String)], p: i32| -> Vec<String> {
        records
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let committed_read = read_all(&bootstrap, TOPIC, 2, "read_committed", committed_sent.len());
    for p in 0..2 {
        assert_eq!(
            by_partition(&committed_read, p),
            by_partition(&committed_sent, p),
            "read_committed partition {p}"
        );
    }
    let uncommitted_read = read_all(&bootstrap, TOPIC, 2, "read_uncommitted", all_sent.len());
    for p in 0..2 {
        assert_eq!(
            by_partition(&uncommitted_read, p),
            by_partition(&all_sent, p),
            "read_uncommitted partition {p}"
        );
    }
    // The last committed transaction (index 4) committed offset 5.
    assert_eq!(committed(&bootstrap, GROUP, TOPIC, 1), vec![5]);
    drop(producer);
    rt.block_on(handle.shutdown());
}

/// A second librdkafka producer with the same `transactional.id` fences
/// the first through the simulated coordinator: the first one's open
/// transaction is aborted, its commit fails as fenced, and a
/// read_committed reader sees only the second one's records.
#[test]
fn librdkafka_a_second_transactional_producer_fences_the_first() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    const TOPIC: &str = "txn-fence";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let handle = rt.block_on(async {
        let mut server = TcpCluster::bind("127.0.0.1".parse().unwrap(), ClusterConfig::new(3))
            .await
            .expect("bind");
        server
            .cluster_mut()
            .create_topic(TOPIC, 1, 3)
            .expect("topic");
        server.spawn()
    });
    let bootstrap = handle.bootstrap();
    let t = Duration::from_secs(30);
    let producer = || -> ThreadedProducer<DefaultProducerContext> {
        let p: ThreadedProducer<DefaultProducerContext> = librdkafka::config(
            &bootstrap,
            &[("transactional.id", "fenced-txn"), ("acks", "all")],
        )
        .create()
        .expect("transactional librdkafka producer");
        p.init_transactions(t).expect("init_transactions");
        p
    };
    let send = |p: &ThreadedProducer<DefaultProducerContext>, value: &str| {
        p.send(BaseRecord::<(), str>::to(TOPIC).partition(0).payload(value))
            .unwrap_or_else(|(e, _)| panic!("send: {e}"));
        p.flush(t).expect("flush");
    };
    let first = producer();
    first.begin_transaction().expect("begin");
    send(&first, "zombie");
    let second = producer();
    let fenced = first.commit_transaction(t);
    assert!(
        fenced.is_err(),
        "the fenced producer's commit succeeded: {fenced:?}"
    );
    second.begin_transaction().expect("begin");
    send(&second, "live");
    second.commit_transaction(t).expect("commit");
    let read = read_all(&bootstrap, TOPIC, 1, "read_committed", 1);
    assert_eq!(read, vec![(0, "live".to_owned())]);
    let all = read_all(&bootstrap, TOPIC, 1, "read_uncommitted", 2);
    assert_eq!(all, vec![(0, "zombie".to_owned()), (0, "live".to_owned())]);
    drop((first, second));
    rt.block_on(handle.shutdown());
}
