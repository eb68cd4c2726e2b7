//! sansa-blocking against the embedded simulated cluster: a keyed round
//! trip, try_produce on a full buffer, timeouts, and produce after close.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sansa_blocking::{Client, FirstError, ProduceError, Record, StartOffset};
use sansa_sim::tcp::TcpCluster;
use sansa_sim::ClusterConfig;

const TOPIC: &str = "events";
const PARTITIONS: i32 = 3;
const PATIENCE: Duration = Duration::from_secs(20);

/// Starts a simulated 3-broker cluster on its own thread (it runs on
/// tokio) and returns its bootstrap list.
fn cluster() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async {
            let mut server =
                TcpCluster::bind("127.0.0.1".parse().expect("ip"), ClusterConfig::new(3))
                    .await
                    .expect("bind");
            server
                .cluster_mut()
                .create_topic(TOPIC, PARTITIONS, 3)
                .expect("topic");
            let handle = server.spawn();
            tx.send(handle.bootstrap()).expect("send");
            std::future::pending::<()>().await;
            drop(handle);
        });
    });
    rx.recv().expect("cluster started")
}

#[test]
fn produced_keyed_records_read_back_where_they_were_reported() {
    let client = Client::builder()
        .seed_brokers(cluster().split(','))
        .linger(Duration::from_millis(2))
        .build()
        .expect("client");
    let handles: Vec<_> = (0..300)
        .map(|i| {
            client.produce(Record::new(TOPIC, format!("v{i}")).with_key(format!("k{}", i % 7)))
        })
        .collect();
    let mut produced = BTreeMap::new();
    for (i, h) in handles.into_iter().enumerate() {
        let meta = h
            .wait_timeout(PATIENCE)
            .expect("in time")
            .expect("delivered");
        produced.insert((meta.partition, meta.offset), format!("v{i}"));
    }
    let parts = (0..PARTITIONS)
        .map(|p| (p, StartOffset::Earliest))
        .collect();
    client.consume_partitions(BTreeMap::from([(TOPIC.to_string(), parts)]));
    let mut consumed = BTreeMap::new();
    let start = Instant::now();
    while consumed.len() < produced.len() && start.elapsed() < PATIENCE {
        for r in client.poll_records(None, Duration::from_millis(500)) {
            consumed.insert(
                (r.partition, r.offset),
                String::from_utf8_lossy(&r.value.expect("value")).into_owned(),
            );
        }
    }
    assert_eq!(consumed, produced);
    assert!(client.close_timeout(Some(PATIENCE)), "closed in time");
    assert_eq!(
        client.produce_sync(Record::new(TOPIC, "late")),
        Err(ProduceError::Closed)
    );
}

#[test]
fn try_produce_refuses_when_full_and_flush_delivers_the_rest() {
    let client = Client::builder()
        .seed_brokers(cluster().split(','))
        .manual_flushing()
        .max_buffered_records(2)
        .build()
        .expect("client");
    let batch = FirstError::new();
    batch
        .try_produce(&client, Record::new(TOPIC, "a"))
        .expect("room for a");
    let b = client
        .try_produce(Record::new(TOPIC, "b"))
        .expect("room for b");
    assert_eq!(
        client.try_produce(Record::new(TOPIC, "c")).err(),
        Some(ProduceError::BufferFull)
    );
    assert_eq!(
        batch.try_produce(&client, Record::new(TOPIC, "d")),
        Err(ProduceError::BufferFull)
    );
    assert_eq!(batch.outstanding(), 1, "a refused record does not count");
    assert!(
        b.wait_timeout(Duration::from_millis(200)).is_none(),
        "manual flushing holds it"
    );
    assert!(client.flush_timeout(Some(PATIENCE)));
    assert_eq!(batch.wait_timeout(PATIENCE), Some(Ok(())));
    assert!(b.wait().is_ok());
    client.close();
    assert!(client.is_closed());
}

#[test]
fn poll_fetches_returns_empty_after_its_timeout() {
    let client = Client::builder()
        .seed_brokers(cluster().split(','))
        .build()
        .expect("client");
    client.consume_topics([TOPIC]);
    let start = Instant::now();
    assert!(client
        .poll_fetches(None, Duration::from_millis(300))
        .is_empty());
    assert!(start.elapsed() >= Duration::from_millis(300));
    client.close();
}
