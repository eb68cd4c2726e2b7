//! The same round trips against every runtime adapter (tokio, smol,
//! async-std, blocking), on librdkafka's mock cluster and on Tansu:
//!
//! - sansa produces keyed records with headers, librdkafka reads them
//!   back: every record once, unaltered, per-key order kept, each where
//!   sansa said it landed;
//! - librdkafka produces, sansa consumes: exactly what was written;
//! - `try_produce` on a full buffer refuses at once, and what it took is
//!   delivered by `flush`;
//! - `close` flushes what is buffered, then refuses new records.
//!
//! One body per scenario, generic over [`Adapter`]; the `conformance!`
//! macro instantiates each for each adapter and peer. A peer that cannot
//! be started fails the test with how to install it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sansa_tests::adapters::{Adapter, AsyncStd, Blocking, Smol, Tokio};
use sansa_tests::peers::librdkafka::{self, check_same_records, Consumed, TestRecord};
use sansa_tests::peers::{KafkaPeer, MockCluster, Tansu};
use sansa_tokio::{ProduceError, Record};

const RECORDS: usize = 2_000;
const PARTITIONS: i32 = 4;
const WAIT: Duration = Duration::from_secs(30);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A started peer with a fresh topic.
fn peer(kind: &str, topic: &str) -> Box<dyn KafkaPeer> {
    init_tracing();
    let peer: Box<dyn KafkaPeer> = match kind {
        "mock" => Box::new(MockCluster::new(3).unwrap_or_else(|e| panic!("{e}"))),
        _ => Box::new(Tansu::start().unwrap_or_else(|e| panic!("{e}"))),
    };
    let replication = if kind == "mock" { 3 } else { 1 };
    peer.create_topic(topic, PARTITIONS, replication)
        .unwrap_or_else(|e| panic!("{e}"));
    peer
}

fn to_record(topic: &str, r: &TestRecord) -> Record {
    let mut out = Record::new(topic, Bytes::copy_from_slice(&r.value));
    if let Some(k) = &r.key {
        out = out.with_key(Bytes::copy_from_slice(k));
    }
    for (k, v) in &r.headers {
        out = out.with_header(k.clone(), Some(Bytes::copy_from_slice(v)));
    }
    out
}

fn produced_by_sansa_read_by_librdkafka<A: Adapter>(kind: &str) {
    let topic = format!("conf-produce-{}", A::NAME);
    let peer = peer(kind, &topic);
    let client = A::connect(&peer.bootstrap(), |c| c);
    let sent = librdkafka::numbered_records(RECORDS);
    let results = client.produce_all(sent.iter().map(|r| to_record(&topic, r)).collect());
    let mut reported = BTreeMap::new();
    for (i, r) in results.into_iter().enumerate() {
        let meta = r.unwrap_or_else(|e| panic!("{}: record {i} failed: {e}", A::NAME));
        reported.insert((meta.partition, meta.offset), i);
    }
    client.close();
    let consumed = librdkafka::consume(&peer.bootstrap(), &topic, RECORDS, WAIT).unwrap();
    check_same_records(&sent, &consumed).unwrap_or_else(|e| panic!("{} on {kind}: {e}", A::NAME));
    for c in &consumed {
        let i = reported[&(c.partition, c.offset)];
        assert_eq!(
            c.value,
            sent[i].value,
            "{}: record {i} is not where it was reported",
            A::NAME
        );
    }
}

fn produced_by_librdkafka_read_by_sansa<A: Adapter>(kind: &str) {
    let topic = format!("conf-consume-{}", A::NAME);
    let peer = peer(kind, &topic);
    let sent = librdkafka::numbered_records(RECORDS);
    let producer = librdkafka::producer(&peer.bootstrap(), &[]).unwrap();
    librdkafka::produce_blocking(&producer, &topic, &sent).unwrap();
    let client = A::connect(&peer.bootstrap(), |c| c);
    let fetched = client.consume(&topic, RECORDS, WAIT);
    client.close();
    let mut consumed = Vec::new();
    for f in fetched {
        assert!(
            f.error.is_none(),
            "{}: {}/{}: {:?}",
            A::NAME,
            f.topic,
            f.partition,
            f.error
        );
        consumed.extend(f.records.into_iter().map(|r| {
            Consumed {
                partition: r.partition,
                offset: r.offset,
                key: r.key.map(|k| k.to_vec()),
                value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
                headers: r
                    .headers
                    .iter_ref()
                    .map(|h| {
                        let value = h.value.map(<[u8]>::to_vec).unwrap_or_default();
                        (String::from_utf8_lossy(h.key).into_owned(), value)
                    })
                    .collect(),
                timestamp_ms: Some(r.timestamp),
            }
        }));
    }
    check_same_records(&sent, &consumed).unwrap_or_else(|e| panic!("{} on {kind}: {e}", A::NAME));
}

fn try_produce_refuses_a_full_buffer<A: Adapter>(kind: &str) {
    let topic = format!("conf-full-{}", A::NAME);
    let peer = peer(kind, &topic);
    let client = A::connect(&peer.bootstrap(), |c| {
        c.manual_flushing(true).max_buffered_records(5)
    });
    for i in 0..5 {
        client
            .try_produce(Record::new(topic.as_str(), format!("v{i}")))
            .unwrap_or_else(|e| panic!("{}: record {i} refused: {e}", A::NAME));
    }
    assert_eq!(
        client.try_produce(Record::new(topic.as_str(), "one too many")),
        Err(ProduceError::BufferFull),
        "{}",
        A::NAME
    );
    client.flush();
    let consumed = librdkafka::consume(&peer.bootstrap(), &topic, 5, WAIT).unwrap();
    assert_eq!(consumed.len(), 5, "{}", A::NAME);
    client.close();
}

fn close_flushes_then_refuses<A: Adapter>(kind: &str) {
    let topic = format!("conf-close-{}", A::NAME);
    let peer = peer(kind, &topic);
    // A long linger: only the close's flush sends these.
    let client = A::connect(&peer.bootstrap(), |c| c.linger(Duration::from_secs(60)));
    let records = (0..50).map(|i| Record::new(topic.as_str(), format!("v{i}")));
    // Produced, then closed before any result is awaited.
    let pending = std::thread::scope(|s| {
        let producing = s.spawn(|| client.produce_all(records.collect()));
        std::thread::sleep(Duration::from_millis(200));
        client.close();
        producing.join().unwrap()
    });
    for r in pending {
        assert!(r.is_ok(), "{}: {r:?}", A::NAME);
    }
    let late = client.produce_all(vec![Record::new(topic.as_str(), "late")]);
    assert_eq!(late, vec![Err(ProduceError::Closed)], "{}", A::NAME);
    assert_eq!(
        librdkafka::consume(&peer.bootstrap(), &topic, 50, WAIT)
            .unwrap()
            .len(),
        50
    );
}

macro_rules! conformance {
    ($($adapter:ident: $ty:ty;)*) => {$(
        #[allow(non_snake_case)]
        mod $adapter {
            use super::*;

            #[test]
            fn mock_produced_by_sansa_read_by_librdkafka() {
                produced_by_sansa_read_by_librdkafka::<$ty>("mock");
            }
            #[test]
            fn tansu_produced_by_sansa_read_by_librdkafka() {
                produced_by_sansa_read_by_librdkafka::<$ty>("tansu");
            }
            #[test]
            fn mock_produced_by_librdkafka_read_by_sansa() {
                produced_by_librdkafka_read_by_sansa::<$ty>("mock");
            }
            #[test]
            fn tansu_produced_by_librdkafka_read_by_sansa() {
                produced_by_librdkafka_read_by_sansa::<$ty>("tansu");
            }
            #[test]
            fn mock_try_produce_refuses_a_full_buffer() {
                try_produce_refuses_a_full_buffer::<$ty>("mock");
            }
            #[test]
            fn mock_close_flushes_then_refuses() {
                close_flushes_then_refuses::<$ty>("mock");
            }
        }
    )*};
}

conformance! {
    tokio: Tokio;
    smol: Smol;
    async_std: AsyncStd;
    blocking: Blocking;
}
