//! sansa's transactional producer against brokers that are not ours, read
//! back by librdkafka: what sansa commits reaches a librdkafka
//! read_committed consumer, what it aborts does not (noida-db, the one
//! peer whose Fetch lists aborted transactions, BROKERS.md), and on
//! librdkafka's mock cluster the whole begin / AddPartitionsToTxn / EndTxn
//! exchange completes and the committed records arrive (the mock lists no
//! aborted transactions, so its read_committed cannot hide an abort).
//!
//! The core is driven by the custom event loop example
//! (`core/examples/mio_loop.rs`), so the core's own calls are checked
//! without an adapter between; the adapters' `GroupTransactSession` runs
//! in `eos.rs`.

#![allow(clippy::unwrap_used)]

#[path = "../../core/examples/mio_loop.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod example;

use std::collections::BTreeSet;
use std::time::Duration;

use sansa_core::producer::Record;
use sansa_core::txn::{TransactionOutcome, TxnEnd};
use sansa_core::{Config, Event};
use sansa_tests::peers::librdkafka::{self, Consumed};
use sansa_tests::peers::{KafkaPeer, MockCluster, NoidaDb};

use example::EventLoop;

const TOPIC: &str = "sansa-txn";
const WAIT: Duration = Duration::from_secs(30);

/// Produces `values` in a transaction and ends it as `how`; with `acked`,
/// waits until the broker acknowledged every record before ending (so an
/// abort has written records to hide).
fn transaction(
    event_loop: &mut EventLoop,
    values: &[String],
    acked: bool,
    how: TxnEnd,
) -> TransactionOutcome {
    let now = event_loop.now();
    event_loop
        .client()
        .begin_transaction(now)
        .unwrap_or_else(|e| panic!("begin: {e}"));
    for v in values {
        event_loop
            .client()
            .produce(now, Record::new(TOPIC, v.clone()), 0)
            .unwrap_or_else(|e| panic!("produce: {e}"));
    }
    if acked {
        let flush = event_loop.client().flush(now);
        event_loop
            .run_until(WAIT, |_, _, event| match event {
                Event::ProduceFailed { error, .. } => panic!("a record failed: {error}"),
                Event::Flushed(id) => id == flush,
                _ => false,
            })
            .unwrap_or_else(|e| panic!("flush: {e}"));
    }
    let now = event_loop.now();
    let id = event_loop
        .client()
        .end_transaction(now, how)
        .unwrap_or_else(|e| panic!("end: {e}"));
    let mut outcome = None;
    event_loop
        .run_until(WAIT, |_, _, event| match event {
            Event::TransactionEnded(o) if o.id == id => {
                outcome = Some(o);
                true
            }
            Event::TransactionError(e) if e.is_fatal() => panic!("fatal: {e}"),
            _ => false,
        })
        .unwrap_or_else(|e| panic!("ending the transaction: {e}"));
    outcome.expect("ended")
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn read(peer: &dyn KafkaPeer, count: usize, isolation: &str) -> BTreeSet<String> {
    let consumed: Vec<Consumed> = librdkafka::consume_until_quiet_with(
        &peer.bootstrap(),
        TOPIC,
        count,
        Duration::from_secs(2),
        WAIT,
        &[("isolation.level", isolation)],
    )
    .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
    consumed
        .iter()
        .map(|c| String::from_utf8_lossy(&c.value).into_owned())
        .collect()
}

/// Commits, aborts (after the records were written), commits again;
/// returns the committed and the aborted values.
fn commit_abort_commit(peer: &dyn KafkaPeer) -> (BTreeSet<String>, BTreeSet<String>) {
    peer.create_topic(TOPIC, 2, 1)
        .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
    let config = Config::builder()
        .seed_brokers(peer.bootstrap().split(','))
        .transactional_id(format!("sansa-{}", peer.name()))
        .linger(Duration::from_millis(5))
        .build()
        .unwrap();
    let mut event_loop = EventLoop::new(config).unwrap();

    let first = values("committed", 10);
    let o = transaction(&mut event_loop, &first, false, TxnEnd::Commit);
    assert!(o.committed && o.error.is_none(), "{}: {o:?}", peer.name());
    let aborted = values("aborted", 10);
    let o = transaction(&mut event_loop, &aborted, true, TxnEnd::Abort);
    assert!(!o.committed && o.error.is_none(), "{}: {o:?}", peer.name());
    let last = values("committed-late", 5);
    let o = transaction(&mut event_loop, &last, false, TxnEnd::Commit);
    assert!(o.committed, "{}: {o:?}", peer.name());
    let now = event_loop.now();
    event_loop.client().close(now);

    let committed = first.into_iter().chain(last).collect();
    (committed, aborted.into_iter().collect())
}

#[test]
fn commits_reach_a_librdkafka_read_committed_consumer_and_aborts_do_not_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let (committed, aborted) = commit_abort_commit(&peer);
    assert_eq!(read(&peer, committed.len(), "read_committed"), committed);
    // The aborted records are in the log: only the markers hide them.
    let all: BTreeSet<String> = committed.union(&aborted).cloned().collect();
    assert_eq!(read(&peer, all.len(), "read_uncommitted"), all);
}

#[test]
fn a_transaction_commits_on_the_mock_cluster() {
    let peer = MockCluster::new(3).unwrap_or_else(|e| panic!("{e}"));
    let (committed, aborted) = commit_abort_commit(&peer);
    let seen = read(&peer, committed.len(), "read_committed");
    // Every committed record arrives; the mock's Fetch lists no aborted
    // transactions, so its aborted records may arrive too (BROKERS.md):
    // nothing else may.
    assert!(seen.is_superset(&committed), "{seen:?}");
    let allowed: BTreeSet<String> = committed.union(&aborted).cloned().collect();
    assert!(seen.is_subset(&allowed), "{seen:?}");
}
