//! Consumer groups on real peers, over every runtime adapter:
//!
//! - **crash, leave, join**: three sansa members and one librdkafka
//!   consumer in one group (cooperative-sticky, or range) consume a topic;
//!   one sansa member crashes (`abort`: no commit, no LeaveGroup), one
//!   leaves cleanly (`close`), a fourth joins late, more records are
//!   produced. Every record is consumed at least once across members, the
//!   late joiner gets partitions and records, and after a clean close of
//!   everyone the group's committed offsets are the end offsets.
//! - **commits by hand**: one member with auto-commit off and
//!   `require_rebalance_ack`: the assignment arrives as an event and waits
//!   for `allow_rebalance`; `commit_records` and
//!   `commit_uncommitted_offsets` report what the coordinator holds (read
//!   back with librdkafka); `close` commits what was polled since and
//!   leaves before it returns; a client without a group is told so.
//!
//! Committed offsets are read with librdkafka (`committed_offsets`, an
//! OffsetFetch), end offsets from librdkafka's delivery reports (Tansu's
//! ListOffsets "latest" is not the high watermark, BROKERS.md).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sansa_core::client::ConfigBuilder;
use sansa_core::group::balancer::{CooperativeStickyBalancer, RangeBalancer};
use sansa_core::group::config::SharedBalancer;
use sansa_core::group::{GroupConfig, GroupEvent};
use sansa_core::protocol::ApiKey;
use sansa_core::session::CommitFailure;
use sansa_tests::adapters::{Adapter, AsyncStd, Blocking, Smol, Tokio};
use sansa_tests::deadline::StopOnPanic;
use sansa_tests::peers::librdkafka::{self, TestRecord};
use sansa_tests::peers::{KafkaPeer, MockCluster, Tansu};
use sansa_tests::progress;

const PARTITIONS: i32 = 8;
/// Records per wave (one before the group forms, one after its changes).
const WAVE: usize = 800;
/// Bound of every wait for the group to do something.
const WAIT: Duration = Duration::from_secs(40);
/// Short enough that a crashed member is expelled quickly; Tansu's first
/// JoinGroup waits about half of it (BROKERS.md).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A started peer with a fresh topic of [`PARTITIONS`] partitions.
fn peer(kind: &str, topic: &str) -> Box<dyn KafkaPeer> {
    init_tracing();
    let peer: Box<dyn KafkaPeer> = match kind {
        "mock" => {
            let mock = MockCluster::new(3).unwrap_or_else(|e| panic!("{e}"));
            cap_flexible_group_versions(&mock);
            Box::new(mock)
        }
        _ => Box::new(Tansu::start().unwrap_or_else(|e| panic!("{e}"))),
    };
    let replication = if kind == "mock" { 3 } else { 1 };
    peer.create_topic(topic, PARTITIONS, replication)
        .unwrap_or_else(|e| panic!("{e}"));
    peer
}

/// Known defect of librdkafka 2.12.1's mock cluster: it advertises
/// JoinGroup up to v6, SyncGroup v4 and LeaveGroup v4 but parses them with
/// the old layouts (`rdkafka_mock_handlers.c`: the protocol and
/// assignment counts are read as INT32, not as the compact arrays of the
/// flexible versions; LeaveGroup v3+'s member list is not read at all),
/// so it drops the connection of a client that uses what it advertises.
/// librdkafka as a client never does (it asks for JoinGroup <= 5,
/// SyncGroup <= 3, LeaveGroup <= 1), which is why this went unseen. The
/// mock is told to advertise only the versions it parses.
fn cap_flexible_group_versions(mock: &MockCluster) {
    for (api, max) in [
        (ApiKey::JoinGroup, 5),
        (ApiKey::SyncGroup, 3),
        (ApiKey::LeaveGroup, 2),
    ] {
        mock.api_versions(api, 0, max)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The group's assignment strategy, for sansa and librdkafka alike.
#[derive(Debug, Clone, Copy)]
enum Strategy {
    CooperativeSticky,
    Range,
}

impl Strategy {
    /// The protocol name both clients send in JoinGroup.
    fn name(self) -> &'static str {
        match self {
            Strategy::CooperativeSticky => "cooperative-sticky",
            Strategy::Range => "range",
        }
    }

    fn balancer(self) -> SharedBalancer {
        match self {
            Strategy::CooperativeSticky => Arc::new(CooperativeStickyBalancer),
            Strategy::Range => Arc::new(RangeBalancer),
        }
    }
}

/// Test-sized group timings: a 6 s session, 500 ms heartbeats, a 10 s
/// rebalance timeout, auto-commit every second unless `manual`.
fn group_config(group: &str, strategy: Strategy, manual: bool) -> GroupConfig {
    let mut g = GroupConfig::new(group);
    g.balancers = vec![strategy.balancer()];
    g.session_timeout = SESSION_TIMEOUT;
    g.heartbeat_interval = Duration::from_millis(500);
    g.rebalance_timeout = Duration::from_secs(10);
    g.auto_commit = (!manual).then_some(Duration::from_secs(1));
    g
}

fn with_group(g: GroupConfig) -> impl FnOnce(ConfigBuilder) -> ConfigBuilder {
    |c| c.consumer_group(g)
}

/// Produces `n` records round-robin over the partitions with librdkafka
/// and raises `end` (the next offset per partition) past them.
fn produce_wave(bootstrap: &str, topic: &str, n: usize, end: &mut BTreeMap<i32, i64>) {
    let records: Vec<TestRecord> = (0..n)
        .map(|i| TestRecord {
            partition: Some(i as i32 % PARTITIONS),
            ..TestRecord::numbered(i, 100)
        })
        .collect();
    let producer = librdkafka::producer(bootstrap, &[]).unwrap();
    for d in librdkafka::produce_blocking(&producer, topic, &records).unwrap() {
        let e = end.entry(d.partition).or_insert(0);
        *e = (*e).max(d.offset + 1);
    }
}

/// Every (partition, offset) consumed by any member.
#[derive(Debug, Default)]
struct Seen(Mutex<BTreeSet<(i32, i64)>>);

impl Seen {
    fn note(&self, records: impl IntoIterator<Item = (i32, i64)>) {
        self.0.lock().unwrap().extend(records);
    }

    /// The offsets below `end` nobody consumed yet.
    fn missing(&self, end: &BTreeMap<i32, i64>) -> usize {
        let seen = self.0.lock().unwrap();
        end.iter()
            .map(|(&p, &e)| (0..e).filter(|&o| !seen.contains(&(p, o))).count())
            .sum()
    }

    /// Waits until every offset below `end` was consumed.
    fn wait_for_all(&self, end: &BTreeMap<i32, i64>, what: &str) {
        let start = Instant::now();
        while self.missing(end) > 0 {
            assert!(
                start.elapsed() < WAIT,
                "{what}: {} records never consumed within {WAIT:?}",
                self.missing(end)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One sansa member's life: polls (and drains group events) until
/// retired, noting what it consumed; commits by hand after each poll when
/// `manual`.
#[derive(Debug, Default)]
struct MemberStats {
    retired: AtomicBool,
    consumed: AtomicUsize,
    assignments: AtomicUsize,
}

fn run_sansa_member<A: Adapter>(
    client: &A,
    topic: &str,
    manual: bool,
    stats: &MemberStats,
    seen: &Seen,
) {
    client.subscribe(topic);
    while !stats.retired.load(Ordering::Acquire) {
        let mut records = Vec::new();
        for f in client.poll_fetches(Duration::from_millis(200)) {
            if let Some(e) = &f.error {
                eprintln!("{}: partition {}: {e}", A::NAME, f.partition);
            }
            records.extend(f.records);
        }
        stats.consumed.fetch_add(records.len(), Ordering::Relaxed);
        seen.note(records.iter().map(|r| (r.partition, r.offset)));
        if manual && !records.is_empty() {
            match client.commit_records(&records) {
                Ok(_) => {}
                // A commit during a rebalance can be refused; the revoke's
                // commit and the next owner cover it.
                Err(CommitFailure::Refused(o)) => eprintln!("{}: commit refused: {o:?}", A::NAME),
                Err(e) => assert!(
                    stats.retired.load(Ordering::Acquire),
                    "{}: manual commit failed: {e}",
                    A::NAME
                ),
            }
        }
        while let Some(event) = client.next_group_event(Duration::from_millis(1)) {
            if let GroupEvent::PartitionsAssigned(p) = &event {
                if !p.is_empty() {
                    stats.assignments.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A librdkafka member of the same group: polls until retired, then
/// commits its positions and closes (LeaveGroup).
fn run_librdkafka_member(
    bootstrap: &str,
    topic: &str,
    strategy: Strategy,
    retired: &AtomicBool,
    assigned: &AtomicUsize,
    seen: &Seen,
) {
    let session = SESSION_TIMEOUT.as_millis().to_string();
    let consumer: BaseConsumer = librdkafka::config(
        bootstrap,
        &[
            ("group.id", topic),
            ("partition.assignment.strategy", strategy.name()),
            ("session.timeout.ms", session.as_str()),
            ("heartbeat.interval.ms", "500"),
            ("max.poll.interval.ms", "10000"),
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "1000"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
        ],
    )
    .create()
    .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    while !retired.load(Ordering::Acquire) {
        if let Ok(a) = consumer.assignment() {
            assigned.store(a.count(), Ordering::Release);
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => seen.note([(m.partition(), m.offset())]),
            Some(Err(e)) => eprintln!("librdkafka member: {e}"),
            None => {}
        }
    }
    // The last member reads to the end before it commits and leaves: a
    // sansa member's final commit can be refused by librdkafka's mock
    // while the group prepares a rebalance (REBALANCE_IN_PROGRESS, which
    // Kafka does not answer to members of the current generation), and
    // its partitions then restart here from the last commit.
    // The check asks the coordinator and every partition's leader, up to
    // 5 s each when the mock is busy rebalancing: the member polls for a
    // second between checks, so reading does not wait on checking.
    let start = Instant::now();
    while !read_to_the_end(&consumer, topic) {
        let bound = WAIT * 2;
        assert!(
            start.elapsed() < bound,
            "librdkafka member read to the end within {bound:?}"
        );
        let polling = Instant::now();
        while polling.elapsed() < Duration::from_secs(1) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => seen.note([(m.partition(), m.offset())]),
                Some(Err(e)) => eprintln!("librdkafka member: {e}"),
                None => {}
            }
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing consumed since the last auto-commit: nothing to commit.
        eprintln!("librdkafka member's final commit: {e}");
    }
    // Dropping closes the consumer: it leaves the group.
}

/// Whether `consumer` has read each partition it owns to its high
/// watermark: its position is there, or (nothing read since it got the
/// partition) the group's committed offset is.
fn read_to_the_end(consumer: &BaseConsumer, topic: &str) -> bool {
    let (Ok(positions), Ok(committed)) = (
        consumer.position(),
        consumer.committed(Duration::from_secs(5)),
    ) else {
        return false;
    };
    positions.elements().iter().all(|e| {
        let Ok((_, high)) = consumer.fetch_watermarks(topic, e.partition(), Duration::from_secs(5))
        else {
            return false;
        };
        let at = match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => committed
                .find_partition(topic, e.partition())
                .and_then(|c| match c.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }),
        };
        high == 0 || at.is_some_and(|o| o >= high)
    })
}

/// Waits until `done` holds, failing the test after [`WAIT`].
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The group's committed offsets of every partition, read with a
/// librdkafka consumer that never joins it.
fn committed(bootstrap: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let consumer = librdkafka::consumer(bootstrap, &[("group.id", group)]).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

fn crash_leave_join<A: Adapter>(kind: &str, strategy: Strategy) {
    let topic = format!("grp-{}-{}", strategy.name(), A::NAME);
    let peer = peer(kind, &topic);
    let bootstrap = peer.bootstrap();
    let mut end = BTreeMap::new();
    produce_wave(&bootstrap, &topic, WAVE, &mut end);
    let seen = Seen::default();
    let started = Instant::now();
    // Member 0 commits by hand; the others auto-commit. Member 3 is the
    // late joiner.
    let members: Vec<(A, MemberStats, bool)> = (0..4)
        .map(|i| {
            let manual = i == 0;
            let client = A::connect(
                &bootstrap,
                with_group(group_config(&topic, strategy, manual)),
            );
            (client, MemberStats::default(), manual)
        })
        .collect();
    let (librdkafka_retired, librdkafka_assigned) = (AtomicBool::new(false), AtomicUsize::new(0));
    let log = |what: &str| progress!("{}: {what} after {:?}", A::NAME, started.elapsed());
    std::thread::scope(|s| {
        // A failed check below panics out of this closure, and the scope
        // then joins every member's thread before the panic goes on: each
        // must be told to stop, or the failure hangs instead of failing.
        let _retire_all = StopOnPanic::new(
            members
                .iter()
                .map(|m| &m.1.retired)
                .chain([&librdkafka_retired]),
        );
        let spawn = |i: usize| {
            let (client, stats, manual) = &members[i];
            let (topic, seen) = (&topic, &seen);
            s.spawn(move || run_sansa_member(client, topic, *manual, stats, seen));
        };
        let assigned = |i: usize| members[i].1.assignments.load(Ordering::Relaxed) > 0;
        // librdkafka first, so it leads the group. On librdkafka's mock a
        // follower whose SyncGroup arrives after the leader's loses its
        // assignment (`rdkafka_mock_cgrp.c`: the leader's sync completes
        // the round and clears every stored assignment; a late follower
        // gets an error with a null assignment and must rejoin, which
        // starts the next round). A sansa leader, with the layout cached,
        // syncs before librdkafka's follower nearly every round, so the
        // group never settles; librdkafka's leader runs its assignor
        // first, and sansa's followers get in before it.
        let (bootstrap, topic, seen) = (&bootstrap, &topic, &seen);
        let (retired, rd_assigned) = (&librdkafka_retired, &librdkafka_assigned);
        s.spawn(move || {
            run_librdkafka_member(bootstrap, topic, strategy, retired, rd_assigned, seen)
        });
        wait_until("librdkafka assigned", || {
            librdkafka_assigned.load(Ordering::Acquire) > 0
        });
        for i in 0..3 {
            spawn(i);
        }
        wait_until("all four members assigned", || (0..3).all(assigned));
        log("group of four formed");
        seen.wait_for_all(&end, "first wave");
        log("first wave consumed");

        // Member 1 crashes, member 2 leaves cleanly, member 3 joins.
        members[1].1.retired.store(true, Ordering::Release);
        members[1].0.abort();
        log("member 1 crashed");
        members[2].1.retired.store(true, Ordering::Release);
        members[2].0.close();
        log("member 2 left");
        spawn(3);
        wait_until("the late joiner assigned", || assigned(3));
        log("late joiner assigned");
        produce_wave(bootstrap, topic, WAVE, &mut end);
        seen.wait_for_all(&end, "second wave");
        log("second wave consumed");

        // Everyone still in closes cleanly, librdkafka last, each once the
        // group settled after the one before: librdkafka's mock refuses
        // commits while a group prepares a rebalance
        // (REBALANCE_IN_PROGRESS; Kafka accepts them from members of the
        // current generation), so a leave right after another's would
        // lose its final commit there.
        let before = members[3].1.assignments.load(Ordering::Relaxed);
        members[0].1.retired.store(true, Ordering::Release);
        members[0].0.close();
        log("member 0 closed");
        wait_until("member 3 took over member 0's partitions", || {
            members[3].1.assignments.load(Ordering::Relaxed) > before
        });
        members[3].1.retired.store(true, Ordering::Release);
        members[3].0.close();
        log("member 3 closed");
        wait_until("librdkafka took over every partition", || {
            librdkafka_assigned.load(Ordering::Acquire) == PARTITIONS as usize
        });
        log("librdkafka took over every partition");
        librdkafka_retired.store(true, Ordering::Release);
    });
    log("everyone closed");
    assert!(
        members[3].1.consumed.load(Ordering::Relaxed) > 0,
        "{} on {kind}: the late joiner consumed nothing",
        A::NAME
    );
    assert_eq!(
        committed(&bootstrap, &topic, &topic),
        end,
        "{} on {kind} ({}): committed offsets after a clean close",
        A::NAME,
        strategy.name()
    );
}

/// Waits for the member's next event of interest, skipping commit
/// outcomes.
fn next_rebalance_event<A: Adapter>(client: &A) -> GroupEvent {
    let start = Instant::now();
    loop {
        let left = WAIT.checked_sub(start.elapsed()).unwrap_or_default();
        match client.next_group_event(left) {
            Some(GroupEvent::CommitFinished(_)) => {}
            Some(e) => return e,
            None => panic!("{}: no group event within {WAIT:?}", A::NAME),
        }
    }
}

fn consume_all<A: Adapter>(client: &A, n: usize) -> Vec<sansa_core::consumer::ConsumedRecord> {
    let start = Instant::now();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            start.elapsed() < WAIT,
            "{}: {} of {n} records within {WAIT:?}",
            A::NAME,
            out.len()
        );
        for f in client.poll_fetches(Duration::from_millis(200)) {
            assert!(f.error.is_none(), "{}: {:?}", A::NAME, f.error);
            out.extend(f.records);
        }
    }
    out
}

fn commits_by_hand<A: Adapter>(kind: &str) {
    let topic = format!("grp-manual-{}", A::NAME);
    let peer = peer(kind, &topic);
    let bootstrap = peer.bootstrap();
    let mut end = BTreeMap::new();
    produce_wave(&bootstrap, &topic, WAVE, &mut end);

    let plain = A::connect(&bootstrap, |c| c);
    assert_eq!(
        plain.commit_uncommitted(),
        Err(CommitFailure::NoGroup),
        "{}",
        A::NAME
    );
    plain.close();

    let mut g = group_config(&topic, Strategy::CooperativeSticky, true);
    g.require_rebalance_ack = true;
    let client = A::connect(&bootstrap, with_group(g));
    client.subscribe(&topic);
    match next_rebalance_event(&client) {
        GroupEvent::PartitionsAssigned(p) => {
            assert_eq!(p.get(&topic).map(Vec::len), Some(PARTITIONS as usize))
        }
        other => panic!("{}: expected the assignment, got {other:?}", A::NAME),
    }
    client.allow_rebalance();
    let records = consume_all(&client, WAVE);

    // Past the first half of the records, by hand.
    let half = &records[..WAVE / 2];
    let outcome = client
        .commit_records(half)
        .unwrap_or_else(|e| panic!("{}: {e}", A::NAME));
    let want: BTreeMap<i32, i64> = sansa_core::group::offsets::positions_after(half)
        .into_iter()
        .map(|((_, p), at)| (p, at.offset))
        .collect();
    let reported: BTreeMap<i32, i64> = outcome
        .committed
        .iter()
        .map(|((_, p), at)| (*p, at.offset))
        .collect();
    assert_eq!(reported, want, "{}: what the outcome says", A::NAME);
    let held = committed(&bootstrap, &topic, &topic);
    assert_eq!(held, want, "{}: what the coordinator holds", A::NAME);

    // Everything polled.
    client
        .commit_uncommitted()
        .unwrap_or_else(|e| panic!("{}: {e}", A::NAME));
    assert_eq!(committed(&bootstrap, &topic, &topic), end, "{}", A::NAME);

    // More records, polled and never committed by hand: the close commits
    // them and leaves before it returns.
    produce_wave(&bootstrap, &topic, WAVE, &mut end);
    consume_all(&client, WAVE);
    client.close();
    assert_eq!(
        committed(&bootstrap, &topic, &topic),
        end,
        "{}: the close's commit",
        A::NAME
    );
}

// The adapter calls are cheap and each adapter's own: every adapter
// commits by hand on both peers.
macro_rules! commits_by_hand {
    ($($adapter:ident: $ty:ty;)*) => {$(
        #[allow(non_snake_case)]
        mod $adapter {
            use super::*;

            #[test]
            fn mock_commits_by_hand() {
                commits_by_hand::<$ty>("mock");
            }
            #[test]
            fn tansu_commits_by_hand() {
                commits_by_hand::<$ty>("tansu");
            }
        }
    )*};
}

commits_by_hand! {
    tokio: Tokio;
    smol: Smol;
    async_std: AsyncStd;
    blocking: Blocking;
}

// The group's life is the core's, the same under every adapter, and each
// run takes about half a minute (a crashed member is expelled after the
// 6 s session timeout, each rebalance takes a round or two): each peer
// and strategy runs once, spread over the adapters.
mod crash_leave_join {
    use super::*;

    #[test]
    fn mock_cooperative_sticky_on_tokio() {
        crash_leave_join::<Tokio>("mock", Strategy::CooperativeSticky);
    }
    #[test]
    fn mock_range_on_smol() {
        crash_leave_join::<Smol>("mock", Strategy::Range);
    }
    #[test]
    fn tansu_cooperative_sticky_on_blocking() {
        crash_leave_join::<Blocking>("tansu", Strategy::CooperativeSticky);
    }
    #[test]
    fn tansu_range_on_async_std() {
        crash_leave_join::<AsyncStd>("tansu", Strategy::Range);
    }
}
