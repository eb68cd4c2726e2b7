//! sansa-smol against the embedded simulated cluster, under smol and
//! under async-std: a keyed round trip, try_produce on a full buffer, and
//! produce after close.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use sansa_sim::tcp::TcpCluster;
use sansa_sim::ClusterConfig;
use sansa_smol::{Client, ProduceError, Record, StartOffset};

const TOPIC: &str = "events";
const PARTITIONS: i32 = 3;

/// Starts a simulated 3-broker cluster on its own thread (it runs on
/// tokio) and returns its bootstrap list; it lives as long as the test
/// process.
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

/// Fails the test instead of hanging it.
async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    let timeout = async {
        async_io::Timer::after(Duration::from_secs(20)).await;
        panic!("{what} did not finish within 20 s");
    };
    futures_lite::future::or(f, timeout).await
}

async fn round_trip(bootstrap: String) {
    let client = Client::builder()
        .seed_brokers(bootstrap.split(','))
        .linger(Duration::from_millis(2))
        .build()
        .expect("client");
    let deliveries: Vec<_> = (0..300)
        .map(|i| {
            client.produce(Record::new(TOPIC, format!("v{i}")).with_key(format!("k{}", i % 7)))
        })
        .collect();
    let mut produced = BTreeMap::new();
    for (i, d) in deliveries.into_iter().enumerate() {
        let meta = bounded("delivery", d).await.expect("delivered");
        produced.insert((meta.partition, meta.offset), format!("v{i}"));
    }
    let parts = (0..PARTITIONS)
        .map(|p| (p, StartOffset::Earliest))
        .collect();
    client.consume_partitions(BTreeMap::from([(TOPIC.to_string(), parts)]));
    let mut consumed = BTreeMap::new();
    while consumed.len() < produced.len() {
        for r in bounded("poll", client.poll_records(None)).await {
            consumed.insert(
                (r.partition, r.offset),
                String::from_utf8_lossy(&r.value.expect("value")).into_owned(),
            );
        }
    }
    assert_eq!(
        consumed, produced,
        "read back exactly what was produced, where it was reported"
    );
    bounded("close", client.close()).await;
    assert!(client.is_closed());
    let late = client.produce(Record::new(TOPIC, "late")).await;
    assert_eq!(late, Err(ProduceError::Closed));
}

async fn buffer_full(bootstrap: String) {
    let client = Client::builder()
        .seed_brokers(bootstrap.split(','))
        .manual_flushing()
        .max_buffered_records(2)
        .build()
        .expect("client");
    let a = client
        .try_produce(Record::new(TOPIC, "a"))
        .await
        .expect("room for a");
    let b = client
        .try_produce(Record::new(TOPIC, "b"))
        .await
        .expect("room for b");
    let c = client.try_produce(Record::new(TOPIC, "c")).await;
    assert!(matches!(c, Err(ProduceError::BufferFull)), "{c:?}");
    bounded("flush", client.flush()).await;
    assert!(bounded("a", a).await.is_ok());
    assert!(bounded("b", b).await.is_ok());
    bounded("close", client.close()).await;
}

#[test]
fn round_trip_under_smol() {
    smol::block_on(round_trip(cluster()));
}

#[test]
fn round_trip_under_async_std() {
    async_std::task::block_on(round_trip(cluster()));
}

#[test]
fn try_produce_refuses_when_full_under_smol() {
    smol::block_on(buffer_full(cluster()));
}

#[test]
fn try_produce_refuses_when_full_under_async_std() {
    async_std::task::block_on(buffer_full(cluster()));
}
