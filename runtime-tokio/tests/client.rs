//! The tokio client against an in-process fake broker (see
//! `fake_broker`): delivery, produce_sync, try_produce, flush, close, and
//! recovery from a dropped connection without duplicates.

#![allow(missing_docs)]

mod fake_broker;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fake_broker::{FakeBroker, PARTITIONS};
use sansa_tokio::core::cluster::Backoff;
use sansa_tokio::{Client, ClientBuilder, ConfigError, Error, FirstError, ProduceError, Record};

/// Every wait in these tests is bounded by this, so a bug fails a test
/// instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn builder(broker: &FakeBroker) -> ClientBuilder {
    init_tracing();
    Client::builder()
        .seed_brokers([broker.addr()])
        .linger(Duration::from_millis(5))
}

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what} did not finish within {PATIENCE:?}"),
    }
}

/// Whether `f` finishes within `d`.
async fn finishes_within<F: std::future::Future>(d: Duration, f: F) -> Option<F::Output> {
    tokio::time::timeout(d, f).await.ok()
}

/// Waits until `cond` holds on the broker's state.
async fn eventually(broker: &FakeBroker, what: &str, cond: impl Fn(&fake_broker::State) -> bool) {
    let start = Instant::now();
    while !cond(&broker.state()) {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn keyed(i: usize) -> Record {
    Record::new("events", format!("value-{i}")).with_key(format!("key-{i}"))
}

/// Checks that each delivered record sits at its reported offset in the
/// broker's log, that offsets grow in produce order per partition, and
/// that the log holds each record exactly once.
fn check_delivered(broker: &FakeBroker, n: usize, metas: &[sansa_tokio::RecordMeta]) {
    let state = broker.state();
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for (i, meta) in metas.iter().enumerate() {
        assert_eq!(&*meta.topic, "events");
        assert!((0..PARTITIONS).contains(&meta.partition));
        let stored = state
            .record("events", meta.partition, meta.offset)
            .unwrap_or_else(|| panic!("record {i} not at {meta:?}"));
        assert_eq!(stored.key.as_deref(), Some(format!("key-{i}").as_bytes()));
        assert_eq!(
            stored.value.as_deref(),
            Some(format!("value-{i}").as_bytes())
        );
        if let Some(prev) = last.insert(meta.partition, meta.offset) {
            assert!(
                meta.offset > prev,
                "partition {} went from {prev} to {}",
                meta.partition,
                meta.offset
            );
        }
    }
    assert_eq!(state.record_count(), n, "the log holds every record once");
    let keys: BTreeSet<_> = state
        .logs
        .values()
        .flatten()
        .map(|r| r.key.clone())
        .collect();
    assert_eq!(keys.len(), n, "no record is stored twice");
    assert_eq!(state.out_of_order, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_records_are_delivered_with_increasing_offsets_per_partition() {
    let broker = FakeBroker::start().await;
    let client = builder(&broker).build().await.expect("client");
    let n = 1000;
    let futures: Vec<_> = (0..n).map(|i| client.produce(keyed(i))).collect();
    let mut metas = Vec::with_capacity(n);
    for f in futures {
        metas.push(bounded("a delivery", f).await.expect("delivered"));
    }
    check_delivered(&broker, n, &metas);
    let used: BTreeSet<i32> = metas.iter().map(|m| m.partition).collect();
    assert_eq!(
        used.len(),
        PARTITIONS as usize,
        "keys spread over partitions"
    );
    bounded("close", client.close()).await;
}

#[tokio::test]
async fn produce_sync_does_not_wait_for_linger() {
    let broker = FakeBroker::start().await;
    let client = builder(&broker)
        .linger(Duration::from_secs(60))
        .build()
        .await
        .expect("client");
    let meta = bounded("produce_sync", client.produce_sync(keyed(0)))
        .await
        .expect("delivered");
    check_delivered(&broker, 1, &[meta]);
    bounded("close", client.close()).await;
}

#[tokio::test]
async fn try_produce_fails_at_once_when_the_buffer_is_full() {
    let broker = FakeBroker::start().await;
    broker.withhold_produce(true);
    let client = builder(&broker)
        .max_buffered_records(2)
        .build()
        .await
        .expect("client");
    let first = client.try_produce(keyed(0)).await.expect("room for one");
    let second = client.try_produce(keyed(1)).await.expect("room for two");
    eventually(&broker, "a produce request", |s| s.produce_requests > 0).await;

    // The broker sits on the records: the buffer stays full.
    let started = Instant::now();
    let refused = client.try_produce(keyed(2)).await;
    assert!(
        matches!(refused, Err(ProduceError::BufferFull)),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1), "failed fast");

    // produce() takes the record and waits inside the client for room.
    let mut third = client.produce(keyed(2));
    assert!(
        finishes_within(Duration::from_millis(200), third.buffered())
            .await
            .is_none(),
        "no room until the broker answers"
    );

    broker.withhold_produce(false);
    let metas = vec![
        bounded("first", first).await.expect("delivered"),
        bounded("second", second).await.expect("delivered"),
    ];
    bounded("room", third.buffered()).await.expect("buffered");
    let mut metas = metas;
    metas.push(bounded("third", third).await.expect("delivered"));
    check_delivered(&broker, 3, &metas);
    bounded("close", client.close()).await;
}

#[tokio::test]
async fn flush_sends_at_once_and_waits_for_every_earlier_record() {
    let broker = FakeBroker::start().await;
    let client = builder(&broker)
        .manual_flushing()
        .build()
        .await
        .expect("client");
    let futures: Vec<_> = (0..10).map(|i| client.produce(keyed(i))).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(broker.state().record_count(), 0, "manual flushing holds");

    broker.withhold_produce(true);
    let flush = client.flush();
    tokio::pin!(flush);
    assert!(
        finishes_within(Duration::from_millis(200), &mut flush)
            .await
            .is_none(),
        "flush waits for the answers"
    );
    broker.withhold_produce(false);
    bounded("flush", flush).await;

    let mut metas = Vec::new();
    for f in futures {
        // Already resolved: a zero timeout still polls once.
        let meta = finishes_within(Duration::ZERO, f)
            .await
            .expect("done by the time flush returned");
        metas.push(meta.expect("delivered"));
    }
    check_delivered(&broker, 10, &metas);
    bounded("close", client.close()).await;
}

#[tokio::test]
async fn close_flushes_then_ends_the_driver_and_its_connections() {
    let broker = FakeBroker::start().await;
    let client = builder(&broker)
        .linger(Duration::from_secs(60))
        .build()
        .await
        .expect("client");
    let other_handle = client.clone();
    let futures: Vec<_> = (0..50).map(|i| client.produce(keyed(i))).collect();
    bounded("close", client.close()).await;
    assert!(client.is_closed() && other_handle.is_closed());

    let mut metas = Vec::new();
    for f in futures {
        metas.push(bounded("a delivery", f).await.expect("delivered"));
    }
    check_delivered(&broker, 50, &metas);
    eventually(&broker, "sockets closed", |s| s.open_connections == 0).await;

    let late = other_handle.produce(keyed(50)).await;
    assert_eq!(late, Err(ProduceError::Closed));
    bounded("second close", other_handle.close()).await;
    bounded("flush after close", other_handle.flush()).await;
}

#[tokio::test]
async fn dropping_the_last_handle_still_delivers_what_was_produced() {
    let broker = FakeBroker::start().await;
    let client = builder(&broker).build().await.expect("client");
    let f = client.produce(keyed(0));
    drop(client);
    let meta = bounded("delivery", f).await.expect("delivered");
    check_delivered(&broker, 1, &[meta]);
    eventually(&broker, "sockets closed", |s| s.open_connections == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_recovered_without_duplicates() {
    let broker = FakeBroker::start().await;
    // Requests 2 and 5 are appended, then their connection dies
    // unanswered: the client must resend them with the same sequence
    // numbers, which the broker recognises.
    broker.drop_connection_after_produce(2);
    broker.drop_connection_after_produce(5);
    let client = builder(&broker)
        .linger(Duration::from_millis(1))
        .config(|c| {
            c.retry_backoff(Backoff {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(100),
                jitter: 0.2,
            })
        })
        .build()
        .await
        .expect("client");
    let n = 300;
    let mut futures = Vec::new();
    for i in 0..n {
        futures.push(client.produce(keyed(i)));
        if i % 30 == 29 {
            // Spread the records over several requests.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    let mut metas = Vec::with_capacity(n);
    for f in futures {
        metas.push(bounded("a delivery", f).await.expect("delivered"));
    }
    check_delivered(&broker, n, &metas);
    {
        let state = broker.state();
        assert!(state.connections >= 3, "reconnected: {}", state.connections);
        assert!(state.duplicates >= 1, "a resend was recognised");
    }
    bounded("close", client.close()).await;
}

#[tokio::test]
async fn records_wait_for_a_broker_that_comes_up_late() {
    // A port nobody listens on, yet.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    init_tracing();
    let client = Client::builder()
        .seed_brokers([addr.clone()])
        .config(|c| {
            c.retry_backoff(Backoff {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
                jitter: 0.2,
            })
        })
        .build()
        .await
        .expect("client");
    let futures: Vec<_> = (0..20).map(|i| client.produce(keyed(i))).collect();
    // Connections are refused for a while.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let broker = FakeBroker::start_on(&addr).await;
    let mut metas = Vec::new();
    for f in futures {
        metas.push(bounded("a delivery", f).await.expect("delivered"));
    }
    check_delivered(&broker, 20, &metas);
    bounded("close", client.close()).await;
}

#[tokio::test]
async fn first_error_waits_for_the_batch_and_keeps_the_first_failure() {
    let broker = FakeBroker::start().await;
    let client = builder(&broker).build().await.expect("client");
    let batch = FirstError::new();
    for i in 0..100 {
        batch.produce(&client, keyed(i));
    }
    bounded("batch", batch.wait()).await.expect("all delivered");
    assert_eq!(batch.outstanding(), 0);
    assert_eq!(broker.state().record_count(), 100);

    // A record with no topic (and no default topic) fails.
    batch.produce(&client, Record::value("nowhere"));
    batch.produce(&client, keyed(100));
    assert_eq!(
        bounded("batch", batch.wait()).await,
        Err(ProduceError::NoTopic)
    );
    assert_eq!(broker.state().record_count(), 101);
    bounded("close", client.close()).await;
}

/// A refused `FirstError::try_produce` must not count in the batch by the
/// time its caller hears the refusal: the driver discounts the record
/// before it answers. Answering first let the caller, woken on another
/// worker, see the refused record as outstanding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_record_is_discounted_before_the_caller_hears() {
    let broker = FakeBroker::start().await;
    let client = builder(&broker)
        .manual_flushing()
        .max_buffered_records(1)
        .build()
        .await
        .expect("client");
    let batch = FirstError::new();
    bounded("first", batch.try_produce(&client, keyed(0)))
        .await
        .expect("room for one");
    for i in 1..500 {
        let refused = bounded("refusal", batch.try_produce(&client, keyed(i))).await;
        assert_eq!(refused, Err(ProduceError::BufferFull));
        assert_eq!(batch.outstanding(), 1, "refusal {i} still counted");
    }
    client.flush().await;
    bounded("batch", batch.wait()).await.expect("delivered");
    assert_eq!(broker.state().record_count(), 1);
    bounded("close", client.close()).await;
}

#[tokio::test]
async fn a_cancelled_record_fails_and_is_never_sent() {
    let broker = FakeBroker::start().await;
    let client = builder(&broker)
        .manual_flushing()
        .build()
        .await
        .expect("client");
    let kept = client.produce(keyed(0));
    let cancelled = client.produce(Record::new("other", "x"));
    cancelled.cancel();
    assert_eq!(
        bounded("cancel", cancelled).await,
        Err(ProduceError::Cancelled)
    );
    bounded("flush", client.flush()).await;
    let meta = bounded("kept", kept).await.expect("delivered");
    check_delivered(&broker, 1, &[meta]);
    bounded("close", client.close()).await;
}

#[tokio::test]
async fn bad_settings_are_refused_by_build() {
    let err = Client::builder().build().await.err();
    assert_eq!(err, Some(Error::Config(ConfigError::NoSeedBrokers)));
    let err = Client::builder()
        .seed_brokers(["localhost:9092"])
        .acks(sansa_tokio::Acks::Leader)
        .build()
        .await
        .err();
    assert!(matches!(
        err,
        Some(Error::Config(ConfigError::IdempotenceNeedsAcksAll(_)))
    ));
}

#[test]
fn the_client_is_send_sync_and_its_futures_are_send() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync::<Client>();
    send_sync::<FirstError>();
    send::<sansa_tokio::ProduceFuture>();
}
