//! Exactly-once pipelines on brokers that are not ours: an input topic
//! fed by librdkafka while the test runs, N sansa-tokio
//! `GroupTransactSession` members (poll, transform, produce to the same
//! partition of the output topic, `end(true)`), and the output read back
//! with read_committed, where each partition must hold the transform of
//! each input record of the same partition exactly once, in order.
//!
//! - **noida-db** (the one peer whose Fetch lists aborted transactions,
//!   BROKERS.md): one member is killed mid-transaction (`abort`: its
//!   output is in the log, its transaction open) and restarted with the
//!   same transactional id, which fences it and aborts what it left open;
//!   another takes its partitions meanwhile. The output is read with
//!   librdkafka's and with sansa's own read_committed consumer, and the
//!   group's offsets must end at the end of the input. The tokio client's
//!   own `begin_transaction` / `end_transaction` (commit, an abort of
//!   written records, commit) are checked there too.
//! - **Tansu** runs the same two: its Fetch lists no aborted transactions
//!   (BROKERS.md), so read_committed serves aborted output too. Everything
//!   else is asserted as on noida-db, and the read_committed output must
//!   hold each input's transform in order, and besides only outputs of
//!   transactions that did not commit (those the sessions reported aborted
//!   and what the killed member had written), each no more often than it
//!   was aborted; the plain-transactions test asserts that both
//!   read_committed consumers are served the aborted records, and fails,
//!   saying to tighten it, the day they are not. Tansu also runs the check
//!   that offsets committed in transactions become the group's (they do).
//!   (`txn_peers.rs` holds what else each peer does with transactions:
//!   the timeout, fencing by a newer instance, offsets of an abort.)
//! - **librdkafka's mock cluster**: EndTxn, AddPartitionsToTxn and
//!   TxnOffsetCommit errors are injected while one member runs (two
//!   sansa members never settle on the mock: its SyncGroup gives a
//!   follower that syncs after the leader a null assignment, see
//!   `groups.rs`). The mock
//!   writes no transaction markers and lists no aborted transactions, so
//!   its read_committed shows aborted output too: there the check is that
//!   what sansa reported committed is each input's transform exactly once
//!   in order, and that the log holds nothing else but what it reported
//!   aborted. The mock also stores no offsets committed in transactions
//!   (`rdkafka_mock_handlers.c`: its TxnOffsetCommit answers without
//!   storing), so a member that takes over partitions there starts from
//!   the beginning and duplicates the output: the kill runs on noida-db
//!   and Tansu only, and the defect is the ignored test at the end, which
//!   expects Kafka's behaviour.
//! - noida-db's group defects met on the way are the ignored test at the
//!   end: a member that dies without LeaveGroup is never expired, and a
//!   dead leader stays leader.
//!
//! Real-peer tests run one at a time (`RUST_TEST_THREADS=1`); each stays
//! under a minute.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use sansa_core::group::balancer::RangeBalancer;
use sansa_core::producer::partitioner::ManualPartitioner;
use sansa_core::protocol::{ApiKey, ErrorCode};
use sansa_tests::peers::librdkafka::{self, Consumed};
use sansa_tests::peers::{KafkaPeer, MockCluster, NoidaDb, Tansu};
use sansa_tests::progress;
use sansa_tokio::{
    Client, ConsumerConfig, GroupConfig, GroupEvent, GroupTransactSession, IsolationLevel, Record,
    StartOffset, TxnEnd,
};

const INPUT: &str = "eos-in";
const OUTPUT: &str = "eos-out";
const GROUP: &str = "eos";
const PARTITIONS: i32 = 3;
/// Input records per partition.
const PER_PARTITION: usize = 150;
/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(40);
/// Short, so a killed member's partitions move soon.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// Shorter than [`SESSION_TIMEOUT`], for noida-db: a join round there lasts
/// the whole rebalance timeout when a member of the previous generation
/// does not rejoin (a killed one), and a member that waited in the round
/// longer than its session timeout is evicted as soon as the round ends
/// (its next Heartbeat is answered UNKNOWN_MEMBER_ID). It rejoins under a
/// new id, which starts another round that again waits the whole timeout
/// for the id it left behind, and so on: with a 10 s rebalance timeout the
/// group never settled again (Kafka neither expires a member waiting in a
/// join nor waits for one past its session timeout).
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(4);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn input_value(partition: i32, n: usize) -> String {
    format!("p{partition}-{n:05}")
}

fn transform(value: &[u8]) -> String {
    format!("T({})", String::from_utf8_lossy(value))
}

/// What each partition of the output must hold, in order.
fn expected_output() -> BTreeMap<i32, Vec<String>> {
    (0..PARTITIONS)
        .map(|p| {
            let outs = (0..PER_PARTITION)
                .map(|n| transform(input_value(p, n).as_bytes()))
                .collect();
            (p, outs)
        })
        .collect()
}

/// Consumer settings of every sansa client here: a short fetch wait
/// (librdkafka's mock holds an empty fetch for all of it).
fn quick_consumer(isolation: IsolationLevel) -> ConsumerConfig {
    ConsumerConfig {
        fetch_max_wait: Duration::from_millis(300),
        isolation,
        ..Default::default()
    }
}

/// A session member with the transactional id `eos-{member}`.
async fn session(bootstrap: &str, member: usize) -> GroupTransactSession {
    session_with(bootstrap, member, GroupConfig::new(GROUP)).await
}

/// [`session`] with these group settings (timings are set here).
async fn session_with(
    bootstrap: &str,
    member: usize,
    mut group: GroupConfig,
) -> GroupTransactSession {
    group.session_timeout = SESSION_TIMEOUT;
    group.heartbeat_interval = Duration::from_millis(500);
    group.rebalance_timeout = REBALANCE_TIMEOUT;
    let session = Client::builder()
        .seed_brokers(bootstrap.split(','))
        .client_id(format!("eos-{member}"))
        .transactional_id(format!("eos-{member}"))
        .transaction_timeout(Duration::from_secs(20))
        .linger(Duration::from_millis(2))
        // Each output goes to its input's partition.
        .partitioner(ManualPartitioner)
        .consumer_group(group)
        .consumer(quick_consumer(IsolationLevel::ReadUncommitted))
        .build_group_transact_session()
        .await
        .expect("session");
    session.client().consume_topics([INPUT]);
    session
}

/// The group with eager (range) balancing.
fn range_group() -> GroupConfig {
    let mut g = GroupConfig::new(GROUP);
    g.balancers = vec![Arc::new(RangeBalancer)];
    g
}

/// What the members reported, by partition, in the order they reported
/// it.
#[derive(Debug, Default)]
struct Ledger {
    committed: BTreeMap<i32, Vec<String>>,
    aborted: BTreeMap<i32, Vec<String>>,
    commits: usize,
    aborts: usize,
}

impl Ledger {
    fn committed_total(&self) -> usize {
        self.committed.values().map(Vec::len).sum()
    }
}

/// How a member's loop ended.
#[derive(Debug, PartialEq, Eq)]
enum MemberEnd {
    /// Its client was closed.
    Closed,
    /// Killed mid-transaction with these outputs (partition, value) in
    /// the log.
    Killed(Vec<(i32, String)>),
}

/// One member's loop: one transaction per poll (begin, poll, produce
/// each transform to the input's partition, `end(true)`), noting in the
/// ledger what each end reported. With `kill` set, the next transaction
/// with output stops after its output is in the log, as a crash would.
async fn run_member(
    session: GroupTransactSession,
    kill: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) -> MemberEnd {
    loop {
        if session.begin().await.is_err() {
            return MemberEnd::Closed;
        }
        // Never dropped unanswered: a poll given up on could lose what the
        // driver was handing it. Empty when the client closed, or when
        // partitions went away during the transaction (end it, the
        // rebalance waits for that).
        let fetched = session.poll_fetches(None).await;
        let mut outputs: Vec<(i32, String)> = Vec::new();
        let mut deliveries = Vec::new();
        for f in fetched {
            if let Some(e) = &f.error {
                eprintln!("partition {}: {e}", f.partition);
            }
            for r in f.records {
                let out = transform(r.value.as_deref().unwrap_or_default());
                let record = Record::new(OUTPUT, out.clone()).with_partition(f.partition);
                deliveries.push(session.produce(record));
                outputs.push((f.partition, out));
            }
        }
        if kill.load(Ordering::Acquire) && !outputs.is_empty() {
            let mut written = Vec::new();
            for (d, out) in deliveries.into_iter().zip(outputs) {
                if d.await.is_ok() {
                    written.push(out);
                }
            }
            session.client().abort().await;
            return MemberEnd::Killed(written);
        }
        let ended = session.end(true).await;
        if session.client().is_closed() {
            return MemberEnd::Closed;
        }
        let mut ledger = ledger.lock().unwrap();
        let into = match ended {
            Ok(true) => {
                ledger.commits += 1;
                &mut ledger.committed
            }
            Ok(false) => {
                ledger.aborts += 1;
                &mut ledger.aborted
            }
            Err(e) => panic!("a session's end failed fatally: {e}"),
        };
        for (p, out) in outputs {
            into.entry(p).or_default().push(out);
        }
    }
}

/// Feeds [`PER_PARTITION`] records to every input partition with
/// librdkafka, `per_tick` per partition every 50 ms.
fn feed(bootstrap: &str, per_tick: usize) {
    let producer = librdkafka::producer(bootstrap, &[]).unwrap();
    let mut n = 0;
    while n < PER_PARTITION {
        let upto = (n + per_tick).min(PER_PARTITION);
        let records: Vec<librdkafka::TestRecord> = (n..upto)
            .flat_map(|i| {
                (0..PARTITIONS).map(move |p| librdkafka::TestRecord {
                    key: None,
                    value: input_value(p, i).into_bytes(),
                    headers: Vec::new(),
                    partition: Some(p),
                })
            })
            .collect();
        librdkafka::produce_blocking(&producer, INPUT, &records).unwrap();
        n = upto;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `done` holds, failing with `what` and the ledger after
/// [`WAIT`].
async fn wait_for(what: &str, ledger: &Mutex<Ledger>, done: impl Fn(&Ledger) -> bool) {
    let start = Instant::now();
    loop {
        {
            // One guard for both the check and the message: the members
            // lock the ledger too, and a second `lock()` while this one is
            // held would never return (a CI run hung here once).
            let ledger = ledger.lock().unwrap();
            if done(&ledger) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "{what} within {WAIT:?}; ledger: commits {}, aborts {}, committed {:?}",
                ledger.commits,
                ledger.aborts,
                ledger
                    .committed
                    .iter()
                    .map(|(p, v)| (*p, v.len()))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Closes every member and waits for their loops to end.
async fn close_all(
    members: &[GroupTransactSession],
    loops: Vec<tokio::task::JoinHandle<MemberEnd>>,
) {
    for m in members {
        tokio::time::timeout(WAIT, m.client().close())
            .await
            .expect("a member closed");
    }
    for l in loops {
        let end = tokio::time::timeout(WAIT, l)
            .await
            .expect("a member's loop ended");
        assert_eq!(end.unwrap(), MemberEnd::Closed);
    }
}

/// Waits until `session` was assigned partitions (read from its group
/// events, which the session acknowledges itself); returns how many.
async fn assigned(session: &GroupTransactSession) -> usize {
    let start = Instant::now();
    loop {
        let left = WAIT.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, session.client().next_group_event()).await {
            Ok(Some(GroupEvent::PartitionsAssigned(p))) if !p.is_empty() => {
                return p.values().map(Vec::len).sum()
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the client closed before it was assigned"),
            Err(_) => panic!("no assignment within {WAIT:?}"),
        }
    }
}

/// The output topic by partition, in offset order, read with librdkafka
/// (`isolation.level` as given) until `count` records arrived and then
/// nothing for two seconds.
fn read_with_librdkafka(
    bootstrap: &str,
    count: usize,
    isolation: &str,
) -> BTreeMap<i32, Vec<String>> {
    let consumed: Vec<Consumed> = librdkafka::consume_until_quiet_with(
        bootstrap,
        OUTPUT,
        count,
        Duration::from_secs(2),
        WAIT,
        &[("isolation.level", isolation)],
    )
    .unwrap_or_else(|e| panic!("reading {OUTPUT}: {e}"));
    by_partition(consumed.into_iter().map(|c| {
        (
            c.partition,
            c.offset,
            String::from_utf8_lossy(&c.value).into_owned(),
        )
    }))
}

/// The output topic read with sansa's own read_committed consumer, until
/// `count` records arrived and then nothing for two seconds.
async fn read_with_sansa(bootstrap: &str, count: usize) -> BTreeMap<i32, Vec<String>> {
    let client = Client::builder()
        .seed_brokers(bootstrap.split(','))
        .consumer(quick_consumer(IsolationLevel::ReadCommitted))
        .build()
        .await
        .unwrap();
    let all = (0..PARTITIONS)
        .map(|p| (p, StartOffset::Earliest))
        .collect();
    client.consume_partitions([(OUTPUT.to_owned(), all)].into());
    let mut read = Vec::new();
    let start = Instant::now();
    let mut last_arrival = Instant::now();
    while read.len() < count || last_arrival.elapsed() < Duration::from_secs(2) {
        assert!(
            start.elapsed() < WAIT,
            "sansa read_committed: {} of {count} records within {WAIT:?}",
            read.len()
        );
        if let Ok(fetched) =
            tokio::time::timeout(Duration::from_millis(200), client.poll_fetches(None)).await
        {
            for f in fetched {
                assert!(
                    f.error.is_none(),
                    "partition {}: {:?}",
                    f.partition,
                    f.error
                );
                for r in f.records {
                    last_arrival = Instant::now();
                    let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                    read.push((r.partition, r.offset, v.into_owned()));
                }
            }
        }
    }
    client.close().await;
    by_partition(read)
}

fn by_partition(
    records: impl IntoIterator<Item = (i32, i64, String)>,
) -> BTreeMap<i32, Vec<String>> {
    let mut by: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (p, o, v) in records {
        by.entry(p).or_default().push((o, v));
    }
    by.into_iter()
        .map(|(p, mut v)| {
            v.sort();
            (p, v.into_iter().map(|(_, v)| v).collect())
        })
        .collect()
}

/// Fails with the first difference between what a partition holds and
/// what it should.
fn check_exactly_once(what: &str, got: &BTreeMap<i32, Vec<String>>) {
    let want = expected_output();
    for (p, w) in &want {
        let g = got.get(p).map(Vec::as_slice).unwrap_or_default();
        if g != w.as_slice() {
            let at = g
                .iter()
                .zip(w)
                .position(|(a, b)| a != b)
                .unwrap_or(g.len().min(w.len()));
            panic!(
                "{what}: partition {p} holds {} records, {} expected; first difference at {at}: \
                 {:?} instead of {:?}",
                g.len(),
                w.len(),
                g.get(at),
                w.get(at)
            );
        }
    }
    let extra: Vec<_> = got.keys().filter(|p| !want.contains_key(p)).collect();
    assert!(extra.is_empty(), "{what}: output in partitions {extra:?}");
}

/// Creates both topics on `peer`.
fn topics(peer: &dyn KafkaPeer, replication: i32) {
    for t in [INPUT, OUTPUT] {
        peer.create_topic(t, PARTITIONS, replication)
            .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
    }
}

/// What a run of [`kill_a_member_mid_transaction`] left.
struct KillRun {
    /// What the sessions reported.
    ledger: Ledger,
    /// The killed member's outputs in the log, of the transaction it was
    /// killed in (aborted by its restart, on Kafka).
    killed: Vec<(i32, String)>,
}

impl KillRun {
    /// Every output of a transaction that did not commit, by partition:
    /// those the sessions reported aborted and the killed member's.
    fn aborted(&self) -> BTreeMap<i32, Vec<String>> {
        let mut all = self.ledger.aborted.clone();
        for (p, out) in &self.killed {
            all.entry(*p).or_default().push(out.clone());
        }
        all
    }
}

/// Three members on `peer`; once a third of the input is committed, one
/// is killed mid-transaction (`abort`: its output is in the log, its
/// transaction open) and restarted with the same transactional id, which
/// fences it and aborts what it left open; another takes its partitions
/// meanwhile (the rebalance). Runs until every input is committed; also
/// checks that the group's committed offsets are then the end of the
/// input.
fn kill_a_member_mid_transaction(peer: &dyn KafkaPeer) -> KillRun {
    init_tracing();
    topics(peer, 1);
    let bootstrap = peer.bootstrap();
    let rt = runtime();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let total = PARTITIONS as usize * PER_PARTITION;
    let killed = rt.block_on(async {
        let kill = Arc::new(AtomicBool::new(false));
        let never = Arc::new(AtomicBool::new(false));
        let mut members = Vec::new();
        let mut handles = Vec::new();
        // Member 0 joins first, so it leads and the one killed (1) does
        // not: noida-db keeps a dead leader leading (see the ignored test
        // at the end). Eager (range) balancing: with cooperative-sticky,
        // members joining a noida-db group one after the other never
        // settle (see there too); every later rebalance then revokes
        // everything, in the middle of transactions.
        members.push(session_with(&bootstrap, 0, range_group()).await);
        assigned(&members[0]).await;
        for m in 1..3 {
            members.push(session_with(&bootstrap, m, range_group()).await);
        }
        // Every member owns partitions before input flows, so the one to
        // be killed has a transaction to be killed in.
        for m in &members[1..] {
            assigned(m).await;
        }
        for (m, s) in members.iter().enumerate() {
            let flag = if m == 1 { kill.clone() } else { never.clone() };
            handles.push(tokio::spawn(run_member(s.clone(), flag, ledger.clone())));
        }
        let feeder = {
            let bootstrap = bootstrap.clone();
            std::thread::spawn(move || feed(&bootstrap, 1))
        };
        progress!("{}: all members assigned; feeding", peer.name());
        wait_for("a third of the input committed", &ledger, |l| {
            l.committed_total() >= total / 3
        })
        .await;
        progress!(
            "{}: a third of the input committed; killing member 1",
            peer.name()
        );
        kill.store(true, Ordering::Release);
        let killed = tokio::time::timeout(WAIT, handles.remove(1))
            .await
            .expect("member 1 met a transaction with output to be killed in")
            .unwrap();
        let MemberEnd::Killed(written) = killed else {
            panic!("member 1 was not killed mid-transaction: {killed:?}");
        };
        progress!(
            "{}: member 1 killed with {} outputs of its open transaction written",
            peer.name(),
            written.len()
        );
        // Restarted with the same transactional id: InitProducerId fences
        // the killed instance and aborts its open transaction.
        let restarted = session_with(&bootstrap, 1, range_group()).await;
        handles.push(tokio::spawn(run_member(
            restarted.clone(),
            never.clone(),
            ledger.clone(),
        )));
        members[1] = restarted;
        progress!("{}: member 1 restarted", peer.name());
        feeder.join().unwrap();
        progress!("{}: every input fed", peer.name());
        wait_for("every input committed", &ledger, |l| {
            l.committed_total() >= total
        })
        .await;
        progress!("{}: every input committed; closing", peer.name());
        close_all(&members, handles).await;
        written
    });
    let ledger = Arc::try_unwrap(ledger)
        .expect("the members' loops ended")
        .into_inner()
        .unwrap();
    eprintln!(
        "{}: {} commits, {} aborts",
        peer.name(),
        ledger.commits,
        ledger.aborts
    );
    check_group_offsets_at_end_of_input(peer);
    KillRun { ledger, killed }
}

/// The group's committed offsets, read by librdkafka, are the end of the
/// input: every input was committed through a transaction.
fn check_group_offsets_at_end_of_input(peer: &dyn KafkaPeer) {
    let consumer = librdkafka::consumer(&peer.bootstrap(), &[("group.id", GROUP)]).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(INPUT, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    for e in committed.elements() {
        assert_eq!(
            e.offset(),
            Offset::Offset(PER_PARTITION as i64),
            "{}: partition {}: the group's committed offset after every input was \
             committed in transactions",
            peer.name(),
            e.partition()
        );
    }
}

#[test]
fn a_member_killed_mid_transaction_leaves_the_output_exactly_once_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let run = kill_a_member_mid_transaction(&peer);
    let bootstrap = peer.bootstrap();
    let total = PARTITIONS as usize * PER_PARTITION;
    check_exactly_once(
        "what the sessions reported committed",
        &run.ledger.committed,
    );
    progress!("reading the output with librdkafka read_committed");
    check_exactly_once(
        "librdkafka read_committed",
        &read_with_librdkafka(&bootstrap, total, "read_committed"),
    );
    progress!("reading the output with sansa read_committed");
    check_exactly_once(
        "sansa read_committed",
        &runtime().block_on(read_with_sansa(&bootstrap, total)),
    );
}

/// Known Tansu 0.6.0 defect (BROKERS.md): its Fetch lists no aborted
/// transactions, so read_committed serves the output of aborted
/// transactions too. Everything else is held as on noida-db: the sessions
/// report each input's transform committed once, in order; the group's
/// offsets end at the end of the input; and the output read with
/// read_committed holds each input's transform in order, and besides
/// only outputs of transactions that did not commit (reported aborted, or
/// left open by the killed member): the duplicates are no more than
/// those.
#[test]
fn a_member_killed_mid_transaction_on_tansu_duplicates_only_aborted_output() {
    let peer = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    let run = kill_a_member_mid_transaction(&peer);
    let bootstrap = peer.bootstrap();
    let total = PARTITIONS as usize * PER_PARTITION;
    check_exactly_once(
        "what the sessions reported committed",
        &run.ledger.committed,
    );
    let aborted = run.aborted();
    let defect = "Tansu 0.6.0's Fetch lists no aborted transactions: read_committed serves \
                  aborted output";
    for (what, got) in [
        (
            "librdkafka read_committed",
            read_with_librdkafka(&bootstrap, total, "read_committed"),
        ),
        (
            "sansa read_committed",
            runtime().block_on(read_with_sansa(&bootstrap, total)),
        ),
    ] {
        let served =
            check_exactly_once_but_aborted(&format!("tansu: {what} ({defect})"), &got, &aborted);
        eprintln!("tansu: {what}: {served} aborted outputs served ({defect})");
    }
}

/// For a peer whose read_committed serves aborted output: each
/// partition of `got` holds the expected output in order (as a
/// subsequence), and what else it holds is output of transactions that
/// did not commit (`aborted`, by partition, each record at most as often
/// as it was aborted). Returns how many aborted outputs were served.
fn check_exactly_once_but_aborted(
    what: &str,
    got: &BTreeMap<i32, Vec<String>>,
    aborted: &BTreeMap<i32, Vec<String>>,
) -> usize {
    let mut served = 0;
    for (p, want) in expected_output() {
        let records = got.get(&p).map(Vec::as_slice).unwrap_or_default();
        // Leftmost matching finds the expected order if any embedding
        // does; the rest is what the partition holds besides.
        let mut next = 0;
        let mut rest: BTreeMap<&str, usize> = BTreeMap::new();
        for r in records {
            if want.get(next) == Some(r) {
                next += 1;
            } else {
                *rest.entry(r.as_str()).or_default() += 1;
            }
        }
        assert_eq!(
            next,
            want.len(),
            "{what}: partition {p}: the expected output is not all there in order: it stops \
             at {:?} ({} records read)",
            want.get(next),
            records.len()
        );
        let mut allowed: BTreeMap<&str, usize> = BTreeMap::new();
        for a in aborted.get(&p).into_iter().flatten() {
            *allowed.entry(a.as_str()).or_default() += 1;
        }
        for (r, n) in rest {
            let may = allowed.get(r).copied().unwrap_or(0);
            assert!(
                n <= may,
                "{what}: partition {p}: {r} is there {n} more times than committed, but only \
                 {may} of its transactions did not commit"
            );
            served += n;
        }
    }
    let extra: Vec<_> = got
        .keys()
        .filter(|p| !(0..PARTITIONS).contains(p))
        .collect();
    assert!(extra.is_empty(), "{what}: output in partitions {extra:?}");
    served
}

/// The transaction errors injected on the mock, a few of each API at a
/// time: retried ones (the coordinator is busy or moved) and abortable
/// ones (the transaction can only abort).
const MOCK_ERRORS: [(ApiKey, ErrorCode); 6] = [
    (
        ApiKey::AddPartitionsToTxn,
        ErrorCode::ConcurrentTransactions,
    ),
    (
        ApiKey::AddPartitionsToTxn,
        ErrorCode::TopicAuthorizationFailed,
    ),
    (ApiKey::TxnOffsetCommit, ErrorCode::NotCoordinator),
    (ApiKey::TxnOffsetCommit, ErrorCode::ConcurrentTransactions),
    (ApiKey::EndTxn, ErrorCode::ConcurrentTransactions),
    (ApiKey::EndTxn, ErrorCode::NotCoordinator),
];

#[test]
fn injected_transaction_errors_leave_the_committed_output_exactly_once_on_the_mock_cluster() {
    init_tracing();
    let mock = MockCluster::new(3).unwrap_or_else(|e| panic!("{e}"));
    cap_flexible_group_versions(&mock);
    topics(&mock, 3);
    let bootstrap = mock.bootstrap();
    let rt = runtime();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let total = PARTITIONS as usize * PER_PARTITION;
    let injected = AtomicUsize::new(0);
    rt.block_on(async {
        let never = Arc::new(AtomicBool::new(false));
        // One member: two sansa members never settle on the mock, whose
        // SyncGroup hands a follower that syncs after its leader a null
        // assignment (`rdkafka_mock_cgrp.c`, see `groups.rs`); and a
        // rebalance after a commit would restart partitions from the
        // beginning there, as it stores no transactional offsets (see the
        // module docs). Several members run on noida-db.
        let members = vec![session(&bootstrap, 0).await];
        assigned(&members[0]).await;
        let handles: Vec<_> = members
            .iter()
            .map(|s| tokio::spawn(run_member(s.clone(), never.clone(), ledger.clone())))
            .collect();
        let feeder = {
            let bootstrap = bootstrap.clone();
            std::thread::spawn(move || feed(&bootstrap, 2))
        };
        // Errors while input flows: two of one kind every 300 ms.
        let mut next = 0;
        while !feeder.is_finished() {
            let (api, error) = MOCK_ERRORS[next % MOCK_ERRORS.len()];
            mock.request_errors(api, &[error, error]).unwrap();
            injected.fetch_add(2, Ordering::Relaxed);
            next += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        feeder.join().unwrap();
        wait_for("every input committed", &ledger, |l| {
            l.committed_total() >= total
        })
        .await;
        close_all(&members, handles).await;
    });
    let ledger = ledger.lock().unwrap();
    eprintln!(
        "mock: {} errors injected, {} commits, {} aborts",
        injected.load(Ordering::Relaxed),
        ledger.commits,
        ledger.aborts
    );
    assert!(
        ledger.aborts > 0,
        "no transaction aborted: the abortable errors did not bite"
    );
    check_exactly_once("what the sessions reported committed", &ledger.committed);
    // The log holds what was committed and, the mock writing no markers,
    // whatever of the aborted output was sent before its abort; nothing
    // else.
    let log = read_with_librdkafka(&bootstrap, total, "read_committed");
    for p in 0..PARTITIONS {
        let mut rest: Vec<&String> = log.get(&p).into_iter().flatten().collect();
        for out in ledger.committed.get(&p).into_iter().flatten() {
            let at = rest.iter().position(|r| *r == out);
            let at =
                at.unwrap_or_else(|| panic!("partition {p}: committed {out} is not in the log"));
            rest.swap_remove(at);
        }
        let mut aborted: Vec<&String> = ledger.aborted.get(&p).into_iter().flatten().collect();
        for out in rest {
            let at = aborted.iter().position(|a| *a == out);
            let at = at.unwrap_or_else(|| {
                panic!("partition {p}: {out} is in the log, neither committed nor aborted")
            });
            aborted.swap_remove(at);
        }
    }
}

/// Known defect of librdkafka 2.12.1's mock cluster
/// (`rdkafka_mock_handlers.c`, `rd_kafka_mock_handle_TxnOffsetCommit`):
/// it answers TxnOffsetCommit without storing the offsets, and EndTxn
/// writes no markers, so a transaction's offsets never become the
/// group's committed offsets. Kafka commits them with the transaction; a
/// new owner of the partitions then starts after them. The same check
/// runs (and passes) on noida-db.
fn offsets_committed_in_a_transaction_are_the_groups(peer: &dyn KafkaPeer, replication: i32) {
    init_tracing();
    topics(peer, replication);
    let bootstrap = peer.bootstrap();
    feed(&bootstrap, PER_PARTITION);
    let rt = runtime();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let total = PARTITIONS as usize * PER_PARTITION;
    rt.block_on(async {
        let s = session(&bootstrap, 0).await;
        let member = tokio::spawn(run_member(
            s.clone(),
            Arc::new(AtomicBool::new(false)),
            ledger.clone(),
        ));
        wait_for("every input committed", &ledger, |l| {
            l.committed_total() >= total
        })
        .await;
        close_all(&[s], vec![member]).await;
    });
    check_group_offsets_at_end_of_input(peer);
}

#[test]
fn offsets_committed_in_a_transaction_are_the_groups_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    offsets_committed_in_a_transaction_are_the_groups(&peer, 1);
}

#[test]
#[ignore = "known librdkafka 2.12.1 mock defect: TxnOffsetCommit answers without storing the offsets"]
fn offsets_committed_in_a_transaction_are_the_groups_on_the_mock_cluster() {
    let mock = MockCluster::new(3).unwrap_or_else(|e| panic!("{e}"));
    cap_flexible_group_versions(&mock);
    offsets_committed_in_a_transaction_are_the_groups(&mock, 3);
}

/// librdkafka 2.12.1's mock advertises flexible JoinGroup, SyncGroup and
/// LeaveGroup versions it cannot parse (see `groups.rs`): it is told to
/// advertise only those it parses.
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

/// When the group's leader dies (no LeaveGroup), Kafka expires it once
/// its session times out and rebalances, and the survivor then owns every
/// partition. Known noida-db defects: a member that dies without
/// LeaveGroup is never expired (no rebalance comes at all, here for
/// 40 s with a 6 s session timeout); and when another member's join
/// does start a rebalance, the dead leader stays leader of the next
/// generation (JoinGroup answers every live member as a follower), so
/// SyncGroup waits for an assignment that never comes and fails with
/// REBALANCE_IN_PROGRESS (seen in the kill scenario when the killed
/// member led, which is why it kills a follower).
#[test]
#[ignore = "known noida-db defect: a member that dies without LeaveGroup is never expired, and a dead leader stays leader of the next generation"]
fn a_survivor_takes_every_partition_when_the_leader_dies_on_noida_db() {
    init_tracing();
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    topics(&peer, 1);
    let bootstrap = peer.bootstrap();
    runtime().block_on(async {
        // The first to join leads. Eager (range) balancing: with
        // cooperative-sticky, a second member joining a noida-db group
        // is assigned nothing and the leader is then told it is unknown
        // (UNKNOWN_MEMBER_ID), round after round (not investigated
        // further; the scenarios above start their members together).
        let leader = session_with(&bootstrap, 0, range_group()).await;
        assigned(&leader).await;
        let survivor = session_with(&bootstrap, 1, range_group()).await;
        let mut owned = assigned(&survivor).await;
        leader.client().abort().await;
        let start = Instant::now();
        while owned < PARTITIONS as usize {
            let left = WAIT.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, survivor.client().next_group_event()).await {
                Ok(Some(GroupEvent::PartitionsAssigned(p))) => {
                    owned += p.values().map(Vec::len).sum::<usize>()
                }
                Ok(Some(GroupEvent::PartitionsLost(p) | GroupEvent::PartitionsRevoked(p))) => {
                    owned -= p.values().map(Vec::len).sum::<usize>().min(owned)
                }
                Ok(_) => {}
                Err(_) => panic!(
                    "the survivor owns {owned} of {PARTITIONS} partitions {WAIT:?} after the \
                     leader died"
                ),
            }
        }
        survivor.client().close().await;
    });
}

#[test]
fn offsets_committed_in_a_transaction_are_the_groups_on_tansu() {
    let peer = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    offsets_committed_in_a_transaction_are_the_groups(&peer, 1);
}

/// Records per partition in each transaction of
/// [`commit_abort_commit`].
const PER_TRANSACTION: usize = 3;

/// The records `prefix` of [`commit_abort_commit`] writes to partition
/// `p`, in order.
fn transaction_records(prefix: &str, p: i32) -> Vec<String> {
    (0..PER_TRANSACTION)
        .map(|i| format!("{prefix}-{p}-{i}"))
        .collect()
}

/// What [`commit_abort_commit`] should leave in partition `p`, in order,
/// the aborted records in the middle when `with_aborted`.
fn committed_records(p: i32, with_aborted: bool) -> Vec<String> {
    let mut want = transaction_records("kept", p);
    if with_aborted {
        want.extend(transaction_records("dropped", p));
    }
    want.extend(transaction_records("again", p));
    want
}

/// `begin_transaction` / `end_transaction` of the tokio client itself
/// (no session): a commit (`kept`), an abort of records written before it
/// (`dropped`), a commit (`again`), [`PER_TRANSACTION`] records to each
/// partition in each. Returns the output read with librdkafka's
/// read_committed, sansa's read_committed, and librdkafka's
/// read_uncommitted consumers.
fn commit_abort_commit(peer: &dyn KafkaPeer) -> [BTreeMap<i32, Vec<String>>; 3] {
    init_tracing();
    topics(peer, 1);
    let bootstrap = peer.bootstrap();
    let rt = runtime();
    rt.block_on(async {
        let client = Client::builder()
            .seed_brokers(bootstrap.split(','))
            .transactional_id("eos-plain")
            .partitioner(ManualPartitioner)
            .build()
            .await
            .unwrap();
        for (how, prefix) in [
            (TxnEnd::Commit, "kept"),
            (TxnEnd::Abort, "dropped"),
            (TxnEnd::Commit, "again"),
        ] {
            client.begin_transaction().await.unwrap();
            let deliveries: Vec<_> = (0..PARTITIONS)
                .flat_map(|p| {
                    transaction_records(prefix, p)
                        .into_iter()
                        .map(move |v| (p, v))
                })
                .map(|(p, v)| client.produce(Record::new(OUTPUT, v).with_partition(p)))
                .collect();
            for d in deliveries {
                d.await.unwrap();
            }
            let outcome = client.end_transaction(how).await.unwrap();
            assert_eq!(
                outcome.committed,
                how == TxnEnd::Commit,
                "{}: {outcome:?}",
                peer.name()
            );
            assert_eq!(outcome.error, None, "{}", peer.name());
        }
        client.close().await;
    });
    let n = PARTITIONS as usize * PER_TRANSACTION;
    [
        read_with_librdkafka(&bootstrap, 2 * n, "read_committed"),
        rt.block_on(read_with_sansa(&bootstrap, 2 * n)),
        read_with_librdkafka(&bootstrap, 3 * n, "read_uncommitted"),
    ]
}

/// Committed transactions reach librdkafka's and sansa's read_committed
/// consumers whole and in order, the aborted one neither, though
/// read_uncommitted shows it is in the log.
#[test]
fn the_tokio_client_commits_and_aborts_transactions_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let [librdkafka_committed, sansa_committed, everything] = commit_abort_commit(&peer);
    for p in 0..PARTITIONS {
        assert_eq!(librdkafka_committed[&p], committed_records(p, false));
        assert_eq!(sansa_committed[&p], committed_records(p, false));
        assert_eq!(everything[&p], committed_records(p, true));
    }
}

/// The same on Tansu: the committed transactions arrive whole and in
/// order. Known Tansu 0.6.0 defect (BROKERS.md): its Fetch lists no
/// aborted transactions, so both read_committed consumers are served the
/// aborted records too, in their place in the log.
#[test]
fn the_tokio_client_commits_and_aborts_transactions_on_tansu() {
    let peer = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    let [librdkafka_committed, sansa_committed, everything] = commit_abort_commit(&peer);
    let defect = "known Tansu 0.6.0 defect: Fetch lists no aborted transactions, so \
                  read_committed serves the aborted records; if it no longer does, tighten \
                  this test to expect only the committed ones";
    for p in 0..PARTITIONS {
        assert_eq!(everything[&p], committed_records(p, true), "tansu: the log");
        assert_eq!(
            librdkafka_committed[&p],
            committed_records(p, true),
            "tansu: librdkafka read_committed: {defect}"
        );
        assert_eq!(
            sansa_committed[&p],
            committed_records(p, true),
            "tansu: sansa read_committed: {defect}"
        );
    }
}
