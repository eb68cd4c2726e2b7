//! The runtime's own promises: time moves only when every task waits,
//! a run that cannot finish says so with its seed, a crashed process
//! loses its tasks and its calls answer as closed, and the adapters'
//! calls reach the cluster.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use sansa_core::producer::{ProduceError, Record};

use super::{Sim, SimError};
use crate::cluster::ClusterConfig;

/// Pending once (waking itself), then ready: a task that yields.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn virtual_time_moves_only_when_every_task_waits() {
    let mut sim = Sim::new(1, ClusterConfig::new(1));
    let times = sim
        .block_on(|h| async move {
            let start = h.now();
            let busy = h.spawn(async {
                for _ in 0..100 {
                    YieldNow(false).await;
                }
            });
            busy.await;
            let after_busy = h.now();
            h.sleep(Duration::from_secs(5)).await;
            (start, after_busy, h.now())
        })
        .expect("runs");
    assert_eq!(
        times.0, times.1,
        "a task that never waits takes no virtual time"
    );
    assert_eq!(
        times.2 - times.1,
        Duration::from_secs(5),
        "a sleep is exact"
    );
}

#[test]
fn tasks_woken_at_the_same_instant_run_in_spawn_order() {
    let mut sim = Sim::new(1, ClusterConfig::new(1));
    let order = sim
        .block_on(|h| async move {
            let order = Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for n in 0..4 {
                let (h2, order) = (h.clone(), order.clone());
                // All wake at 10 ms, later tasks' timers registered
                // (and fired) first.
                tasks.push(h.spawn(async move {
                    h2.sleep(Duration::from_millis(3 - n)).await;
                    h2.sleep(Duration::from_millis(7 + n)).await;
                    order.borrow_mut().push(n);
                }));
            }
            for t in tasks {
                t.await;
            }
            order.take()
        })
        .expect("runs");
    assert_eq!(order, [0, 1, 2, 3]);
}

#[test]
fn a_main_task_that_waits_for_nothing_is_a_deadlock_named_with_its_seed() {
    let mut sim = Sim::new(42, ClusterConfig::new(1));
    let err = sim
        .block_on(|_| std::future::pending::<()>())
        .expect_err("can never finish");
    assert!(
        matches!(err, SimError::Deadlock { seed: 42, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("SANSA_SIM_SEED=42"), "{err}");
}

#[test]
fn a_run_past_the_time_limit_fails_with_its_seed() {
    let mut sim = Sim::new(9, ClusterConfig::new(1)).time_limit(Duration::from_secs(30));
    let err = sim
        .block_on(|h| async move {
            loop {
                h.sleep(Duration::from_secs(1)).await;
            }
        })
        .expect_err("never ends");
    assert_eq!(
        err,
        SimError::TimeLimit {
            seed: 9,
            limit: Duration::from_secs(30)
        }
    );
}

#[test]
fn a_crashed_process_loses_its_tasks_and_its_client_answers_closed() {
    let mut sim = Sim::new(3, ClusterConfig::new(1));
    let reached = Rc::new(Cell::new(false));
    let seen = reached.clone();
    let (owned, outside, produced, closed) = sim
        .block_on(move |h| async move {
            h.create_topic("t", 1, 1).expect("topic");
            let client = h.client().build().await.expect("client");
            client.consume_topics(["t"]);
            let c = client.clone();
            let owned = h.spawn_on(&client, async move {
                let _ = c.poll_fetches(None).await;
                seen.set(true);
            });
            let c = client.clone();
            let outside = h.spawn(async move { c.poll_fetches(None).await.len() });
            h.sleep(Duration::from_millis(100)).await;
            h.crash_client(&client);
            let produced = client.produce(Record::new("t", "late")).await;
            (owned.await, outside.await, produced, client.is_closed())
        })
        .expect("runs");
    assert_eq!(owned, None, "the process's task was dropped");
    assert!(!reached.get(), "and never ran past its wait");
    assert_eq!(
        outside,
        Some(0),
        "another task's wait ends empty, as on a closed client"
    );
    assert_eq!(produced, Err(ProduceError::Closed));
    assert!(closed);
}

#[test]
fn records_produced_are_delivered_and_consumed_through_the_adapters_calls() {
    let mut sim = Sim::new(5, ClusterConfig::new(3));
    let (offsets, values) = sim
        .block_on(|h| async move {
            h.create_topic("t", 1, 3).expect("topic");
            let p = h.client().build().await.expect("producer");
            let mut offsets = Vec::new();
            for i in 0..5 {
                let meta = p
                    .produce(Record::new("t", format!("v{i}")))
                    .await
                    .expect("delivered");
                offsets.push(meta.offset);
            }
            p.close().await;
            let c = h.client().build().await.expect("consumer");
            c.consume_topics(["t"]);
            let mut values = Vec::new();
            while values.len() < 5 {
                values.extend(c.poll_records(None).await.into_iter().map(|r| r.value));
            }
            c.close().await;
            (offsets, values)
        })
        .expect("runs");
    assert_eq!(offsets, [0, 1, 2, 3, 4]);
    let values: Vec<_> = values.into_iter().flatten().collect();
    assert_eq!(
        values,
        (0..5)
            .map(|i| format!("v{i}").into())
            .collect::<Vec<bytes::Bytes>>()
    );
}

/// A `poll_fetches` future dropped after its records were handed to it
/// but before it was polled again (what `select!` does to the branch that
/// lost) gives them back: the next poll starts with them, and a commit
/// of everything polled does not cover them.
#[test]
fn records_handed_to_a_dropped_poll_are_polled_again_and_not_committed() {
    let mut sim = Sim::new(8, ClusterConfig::new(3));
    let (first, committed) = sim
        .block_on(|h| async move {
            h.create_topic("t", 1, 3).expect("topic");
            let p = h.client().build().await.expect("producer");
            for i in 0..5 {
                p.produce(Record::new("t", format!("v{i}")))
                    .await
                    .expect("delivered");
            }
            p.close().await;
            let c = h
                .client()
                .consumer_group(sansa_core::group::GroupConfig::new("g"))
                .build()
                .await
                .expect("consumer");
            c.consume_topics(["t"]);
            let mut poll = Box::pin(c.poll_fetches(None));
            // Polled once: the command is out; then time passes while
            // the records are fetched and handed to the waiting future.
            std::future::poll_fn(|cx| {
                assert!(poll.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            h.sleep(Duration::from_secs(5)).await;
            drop(poll);
            let committed = c.commit_uncommitted_offsets().await;
            let first: Vec<i64> = c
                .poll_records(None)
                .await
                .into_iter()
                .map(|r| r.offset)
                .collect();
            c.close().await;
            (first, committed)
        })
        .expect("runs");
    assert_eq!(
        first,
        [0, 1, 2, 3, 4],
        "the dropped poll's records come again"
    );
    assert!(
        committed
            .as_ref()
            .map_or(true, |c| c.committed.values().all(|at| at.offset == 0)),
        "nothing was processed, so nothing past offset 0 is committed: {committed:?}"
    );
}

#[test]
fn the_ledger_catches_work_redone_past_a_commit_and_records_never_processed() {
    use super::{AtLeastOnce, Breach};
    use sansa_core::group::GroupConfig;

    let mut sim = Sim::new(8, ClusterConfig::new(1));
    let breaches = sim
        .block_on(|h| async move {
            h.create_topic("t", 1, 1).expect("topic");
            let p = h.client().build().await.expect("producer");
            for i in 0..3 {
                p.produce(Record::new("t", format!("v{i}")))
                    .await
                    .expect("delivered");
            }
            let mut group = GroupConfig::new("g");
            group.auto_commit = None;
            let c = h
                .client()
                .consumer_group(group)
                .build()
                .await
                .expect("member");
            c.consume_topics(["t"]);
            let mut records = Vec::new();
            while records.len() < 3 {
                records.extend(c.poll_records(None).await);
            }
            let mut ledger = AtLeastOnce::new("g");
            // Processes the first two only, commits all three: the third
            // is never processed.
            ledger.processed(&h, &records[0]);
            ledger.processed(&h, &records[1]);
            c.commit_records(&records).await.expect("committed");
            assert_eq!(h.committed_offset("g", "t", 0), Some(3));
            // Redoes the first after the commit covered it.
            ledger.processed(&h, &records[0]);
            assert_eq!(ledger.duplicates(), 1);
            ledger.check(&h, &["t"])
        })
        .expect("runs");
    assert_eq!(
        breaches,
        [
            Breach::ProcessedAgainAfterCommit {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                committed: 3
            },
            Breach::NeverProcessed {
                topic: "t".into(),
                partition: 0,
                offset: 2
            },
        ]
    );
}
