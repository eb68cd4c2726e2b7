//! read_committed against noida-db, the one peer here whose Fetch lists
//! aborted transactions (BROKERS.md). librdkafka's transactional producers
//! write committed and aborted transactions interleaved with plain records
//! (an aborted transaction's records straddle plain ones in the log, and
//! two transactional producers overlap); sansa with read_committed must
//! see exactly the committed and plain records, in log order, and with
//! read_uncommitted every data record, never a control record either way.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use sansa_tests::peers::librdkafka::{self, TestRecord};
use sansa_tests::peers::{block_on, KafkaPeer, NoidaDb};
use sansa_tokio::{Client, ConsumerConfig, IsolationLevel};

use support::{number_of, quick_consumer, runtime, sansa};

const TOPIC: &str = "txn";
const PARTITIONS: i32 = 2;
const WAIT: Duration = Duration::from_secs(20);
const TXN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Plain,
    Committed,
    Aborted,
}

/// Every record written: (partition, offset) -> (record number, fate).
#[derive(Debug, Default)]
struct Log {
    records: BTreeMap<(i32, i64), (usize, Fate)>,
    next: usize,
}

/// A producer's records written but not yet decided.
struct Open(Vec<(usize, DeliveryFuture)>);

impl Log {
    /// Sends one numbered record to partition `p` and waits until it is
    /// in the log (so an abort cannot purge it before it is written).
    fn send(&mut self, producer: &FutureProducer, p: i32) -> (usize, DeliveryFuture) {
        let i = self.next;
        self.next += 1;
        let r = TestRecord::numbered(i, 24);
        let record = FutureRecord::to(TOPIC)
            .payload(r.value.as_slice())
            .key(r.key.as_deref().unwrap_or_default())
            .partition(p);
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .expect("queued");
        producer.flush(TXN_TIMEOUT).expect("flush");
        (i, delivery)
    }

    fn settle(&mut self, sent: Vec<(usize, DeliveryFuture)>, fate: Fate) {
        for (i, delivery) in sent {
            let d = block_on(delivery)
                .expect("delivery future")
                .map_err(|(e, _)| e)
                .unwrap_or_else(|e| panic!("record {i} ({fate:?}) not written: {e}"));
            self.records.insert((d.partition, d.offset), (i, fate));
        }
    }

    fn plain(&mut self, producer: &FutureProducer, p: i32) {
        let sent = self.send(producer, p);
        self.settle(vec![sent], Fate::Plain);
    }

    fn add(&mut self, open: &mut Open, producer: &FutureProducer, p: i32) {
        open.0.push(self.send(producer, p));
    }

    fn end(&mut self, open: Open, producer: &FutureProducer, commit: bool) {
        if commit {
            producer.commit_transaction(TXN_TIMEOUT).expect("commit");
            self.settle(open.0, Fate::Committed);
        } else {
            producer.abort_transaction(TXN_TIMEOUT).expect("abort");
            self.settle(open.0, Fate::Aborted);
        }
    }

    /// (partition, offset, record number) a consumer should read, in order
    /// per partition.
    fn expected(&self, committed_only: bool) -> BTreeMap<i32, Vec<(i64, usize)>> {
        let mut out: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
        for (&(p, o), &(i, fate)) in &self.records {
            if committed_only && fate == Fate::Aborted {
                continue;
            }
            out.entry(p).or_default().push((o, i));
        }
        out
    }

    fn count(&self, fate: Fate) -> usize {
        self.records.values().filter(|r| r.1 == fate).count()
    }
}

fn transactional(bootstrap: &str, id: &str) -> FutureProducer {
    let producer: FutureProducer = librdkafka::config(
        bootstrap,
        &[
            ("transactional.id", id),
            ("acks", "all"),
            ("linger.ms", "0"),
            ("message.timeout.ms", "10000"),
        ],
    )
    .create()
    .expect("transactional producer");
    producer
        .init_transactions(TXN_TIMEOUT)
        .expect("init_transactions");
    producer
}

/// Writes the interleaved history and returns what was written where.
fn write_history(bootstrap: &str) -> Log {
    let plain = librdkafka::producer(bootstrap, &[("linger.ms", "0")]).expect("producer");
    let t1 = transactional(bootstrap, "sansa-rc-1");
    let t2 = transactional(bootstrap, "sansa-rc-2");
    let mut log = Log::default();
    for p in 0..PARTITIONS {
        log.plain(&plain, p);
    }

    // A committed transaction on both partitions.
    t1.begin_transaction().expect("begin");
    let mut open = Open(Vec::new());
    for p in [0, 1, 0, 1, 0] {
        log.add(&mut open, &t1, p);
    }
    log.end(open, &t1, true);
    log.plain(&plain, 0);

    // An aborted transaction with plain records written between its own.
    t1.begin_transaction().expect("begin");
    let mut open = Open(Vec::new());
    log.add(&mut open, &t1, 0);
    log.plain(&plain, 0);
    log.add(&mut open, &t1, 0);
    log.add(&mut open, &t1, 1);
    log.plain(&plain, 1);
    log.add(&mut open, &t1, 0);
    log.end(open, &t1, false);

    // Two producers' transactions overlapping: t2's aborts, t1's commits.
    t1.begin_transaction().expect("begin");
    t2.begin_transaction().expect("begin");
    let mut open1 = Open(Vec::new());
    let mut open2 = Open(Vec::new());
    log.add(&mut open2, &t2, 0);
    log.add(&mut open1, &t1, 0);
    log.add(&mut open2, &t2, 0);
    log.plain(&plain, 0);
    log.add(&mut open1, &t1, 0);
    log.add(&mut open2, &t2, 1);
    log.end(open2, &t2, false);
    log.add(&mut open1, &t1, 0);
    log.end(open1, &t1, true);

    // An aborted transaction right after a committed one of the same
    // producer, then plain records.
    t2.begin_transaction().expect("begin");
    let mut open = Open(Vec::new());
    log.add(&mut open, &t2, 1);
    log.end(open, &t2, true);
    t2.begin_transaction().expect("begin");
    let mut open = Open(Vec::new());
    log.add(&mut open, &t2, 1);
    log.add(&mut open, &t2, 1);
    log.end(open, &t2, false);
    for p in 0..PARTITIONS {
        log.plain(&plain, p);
    }
    log
}

/// Reads both partitions until `n` records came, then for a quiet spell
/// to catch anything extra; returns (partition -> (offset, number)).
async fn read_all(client: &Client, n: usize) -> BTreeMap<i32, Vec<(i64, usize)>> {
    let mut got: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    let mut total = 0;
    loop {
        let limit = if total < n {
            WAIT
        } else {
            Duration::from_millis(1500)
        };
        let Ok(fetched) = tokio::time::timeout(limit, client.poll_fetches(None)).await else {
            assert!(
                total >= n,
                "read {total} of {n} records in {WAIT:?}: {got:?}"
            );
            return got;
        };
        for f in fetched {
            assert!(
                f.error.is_none(),
                "{}/{}: {:?}",
                f.topic,
                f.partition,
                f.error
            );
            for r in f.records {
                let value = r.value.as_deref().unwrap_or_default();
                assert!(
                    value.starts_with(b"value-"),
                    "{}/{} offset {}: not a data record: key {:?} value {:?}",
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key,
                    value
                );
                got.entry(r.partition)
                    .or_default()
                    .push((r.offset, number_of(value)));
                total += 1;
            }
        }
    }
}

fn isolation(level: IsolationLevel) -> ConsumerConfig {
    ConsumerConfig {
        isolation: level,
        ..quick_consumer()
    }
}

#[test]
fn read_committed_sees_committed_and_plain_records_only_on_noida_db() {
    let noida = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = noida.bootstrap();
    noida.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    let log = write_history(&bootstrap);
    eprintln!(
        "written: {} plain, {} committed, {} aborted; log {:?}",
        log.count(Fate::Plain),
        log.count(Fate::Committed),
        log.count(Fate::Aborted),
        log.records
    );
    let rt = runtime();
    rt.block_on(async {
        let client = sansa(&bootstrap, isolation(IsolationLevel::ReadCommitted)).await;
        client.consume_topics([TOPIC]);
        let want = log.expected(true);
        let got = read_all(&client, want.values().map(Vec::len).sum()).await;
        assert_eq!(got, want, "read_committed");
        client.close().await;

        let client = sansa(&bootstrap, isolation(IsolationLevel::ReadUncommitted)).await;
        client.consume_topics([TOPIC]);
        let want = log.expected(false);
        let got = read_all(&client, want.values().map(Vec::len).sum()).await;
        assert_eq!(got, want, "read_uncommitted");
        client.close().await;
    });
}

#[test]
fn read_committed_waits_for_an_open_transaction_on_noida_db() {
    // Records behind an open transaction's first record (its own and plain
    // ones) are past the last stable offset: read_committed sees them only
    // once the transaction ends.
    let noida = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = noida.bootstrap();
    noida.create_topic(TOPIC, 1, 1).expect("topic");
    let plain = librdkafka::producer(&bootstrap, &[("linger.ms", "0")]).expect("producer");
    let t1 = transactional(&bootstrap, "sansa-rc-open");
    let mut log = Log::default();
    log.plain(&plain, 0);
    t1.begin_transaction().expect("begin");
    let mut open = Open(Vec::new());
    log.add(&mut open, &t1, 0);
    log.plain(&plain, 0);
    let rt = runtime();
    rt.block_on(async {
        let client = sansa(&bootstrap, isolation(IsolationLevel::ReadCommitted)).await;
        client.consume_topics([TOPIC]);
        let got = read_all(&client, 1).await;
        assert_eq!(
            got,
            BTreeMap::from([(0, vec![(0, 0)])]),
            "before the commit"
        );
        log.end(open, &t1, true);
        let got = read_all(&client, 2).await;
        let want = log.expected(true);
        assert_eq!(
            got.get(&0).map(Vec::as_slice),
            want.get(&0).map(|v| &v[1..]),
            "after the commit"
        );
        client.close().await;
    });
}
