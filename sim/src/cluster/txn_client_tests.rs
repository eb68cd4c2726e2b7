//! Unmodified `sansa_core::Client`s with transactional ids against the
//! simulated transaction and group coordinators, on a clock the test moves:
//! what commits is seen by read_committed consumers and what aborts is not,
//! offsets commit with their transaction, a second producer of an id fences
//! the first, and the coordinator errors a client must survive.
//!
//! The bench here connects clients straight to the cluster (no network
//! delays, no faults unless a test injects them), so each test states one
//! promise; the randomized world (`world.rs`) does not drive transactions.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sansa_core::client::{ConfigBuilder, ConnId};
use sansa_core::consumer::{ConsumerConfig, IsolationLevel};
use sansa_core::group::EpochOffset;
use sansa_core::producer::{ProduceError, Record};
use sansa_core::protocol::{ApiKey, ErrorCode};
use sansa_core::txn::{GroupMetadata, TransactionOutcome, TxnEnd, TxnError, TxnState};
use sansa_core::{Client, Config, Event, Input, Output, Timestamp};

use super::transaction::TRANSACTION_STATE_TOPIC;
use super::*;

const TOPIC: &str = "t";
const TXN_ID: &str = "tx";

/// Clients wired straight to a cluster.
struct Bench {
    cluster: Cluster,
    now: Timestamp,
    clients: Vec<Client>,
    events: Vec<Vec<Event>>,
    /// Values each client consumed, in order.
    consumed: Vec<Vec<String>>,
    to_server: BTreeMap<(usize, ConnId), ServerConnId>,
    to_client: BTreeMap<ServerConnId, (usize, ConnId)>,
}

/// Runs each test body under transactions v1 and v2 (KIP-890 part 2,
/// the cluster's `transaction.version` at 2): `mod name { v1, v2 }`, the
/// body taking the version as `$tv`.
macro_rules! under_both_versions {
    ($($(#[$doc:meta])* fn $name:ident($tv:ident: i16) $body:block)*) => {$(
        $(#[$doc])*
        mod $name {
            use super::*;
            #[test]
            fn v1() {
                run(1);
            }
            #[test]
            fn v2() {
                run(2);
            }
            fn run($tv: i16) $body
        }
    )*};
}

impl Bench {
    fn new(brokers: i32) -> Self {
        Bench::with_transaction_version(brokers, 1)
    }

    /// A bench whose cluster finalizes `transaction.version` at `tv`.
    fn with_transaction_version(brokers: i32, tv: i16) -> Self {
        Bench::configured(brokers, |c| c.transactions.transaction_version = tv)
    }

    /// A bench whose cluster config `tune` adjusted.
    fn configured(brokers: i32, tune: impl FnOnce(&mut ClusterConfig)) -> Self {
        let mut config = ClusterConfig::new(brokers);
        tune(&mut config);
        Bench::with_config(config)
    }

    fn with_config(mut config: ClusterConfig) -> Self {
        config.transactions.state_partitions = 3;
        config.groups.offsets_partitions = 3;
        let rf = (config.brokers.len() as i16).min(3);
        let mut cluster = Cluster::new(config, SimRng::new(11));
        cluster.create_topic(TOPIC, 2, rf).expect("topic");
        cluster.create_topic("in", 1, rf).expect("topic");
        Bench {
            cluster,
            now: Timestamp::from_nanos(1_000_000_000),
            clients: Vec::new(),
            events: Vec::new(),
            consumed: Vec::new(),
            to_server: BTreeMap::new(),
            to_client: BTreeMap::new(),
        }
    }

    fn add(&mut self, config: ConfigBuilder) -> usize {
        let seeds: Vec<String> = self
            .cluster
            .config()
            .brokers
            .iter()
            .map(|b| b.address())
            .collect();
        let config = config
            .seed_brokers(seeds)
            .linger(Duration::from_millis(5))
            .seed(self.clients.len() as u64 + 1)
            .build()
            .expect("valid config");
        self.clients.push(Client::new(config).expect("valid"));
        self.events.push(Vec::new());
        self.consumed.push(Vec::new());
        self.clients.len() - 1
    }

    fn producer(&mut self, txn_id: &str) -> usize {
        self.add(Config::builder().transactional_id(txn_id))
    }

    fn consumer(&mut self, isolation: IsolationLevel) -> usize {
        let c = self.add(Config::builder().consumer(ConsumerConfig {
            isolation,
            fetch_max_wait: Duration::from_millis(100),
            ..Default::default()
        }));
        let now = self.now;
        self.clients[c].consume_topics(now, [TOPIC]);
        c
    }

    /// Carries out every output until nothing moves.
    fn pump(&mut self) {
        let now = self.now;
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                while let Some(o) = self.clients[i].poll_output(now) {
                    moved = true;
                    self.carry(i, o);
                }
            }
            while let Some(o) = self.cluster.poll_output() {
                moved = true;
                match o {
                    ClusterOutput::Send { conn, data } => {
                        if let Some(&(i, c)) = self.to_client.get(&conn) {
                            self.clients[i].handle_input(now, Input::Received(c, data));
                        }
                    }
                    ClusterOutput::Close { conn } => {
                        if let Some((i, c)) = self.to_client.remove(&conn) {
                            self.to_server.remove(&(i, c));
                            self.clients[i].handle_input(now, Input::Closed(c, "reset".into()));
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the bench never settled");
    }

    fn carry(&mut self, i: usize, o: Output) {
        let now = self.now;
        match o {
            Output::Connect { conn, addr } => {
                match self
                    .cluster
                    .resolve(&addr)
                    .and_then(|n| self.cluster.accept(n))
                {
                    Some(s) => {
                        self.to_server.insert((i, conn), s);
                        self.to_client.insert(s, (i, conn));
                        self.clients[i].handle_input(now, Input::Connected(conn));
                    }
                    None => self.clients[i]
                        .handle_input(now, Input::ConnectFailed(conn, "refused".into())),
                }
            }
            Output::Transmit { conn, data } => {
                if let Some(&s) = self.to_server.get(&(i, conn)) {
                    self.cluster.handle_bytes(now, s, &data);
                }
            }
            Output::Close(conn) => {
                if let Some(s) = self.to_server.remove(&(i, conn)) {
                    self.to_client.remove(&s);
                    self.cluster.disconnect(s);
                }
            }
            Output::Event(e) => {
                if e == Event::FetchesReady {
                    for f in self.clients[i].poll_fetches(now, None) {
                        for r in f.records {
                            let v = r.value.unwrap_or_default();
                            self.consumed[i].push(String::from_utf8_lossy(&v).into_owned());
                        }
                    }
                }
                self.events[i].push(e);
            }
            _ => {}
        }
    }

    /// Runs the clock forward by `d`, firing every timer on the way.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.pump();
            let next = self
                .clients
                .iter()
                .filter_map(Client::poll_timeout)
                .chain(self.cluster.poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => self.now = t.max(self.now),
                _ => {
                    self.now = end;
                    self.tick();
                    self.pump();
                    return;
                }
            }
            self.tick();
        }
    }

    fn tick(&mut self) {
        let now = self.now;
        self.cluster.handle_timeout(now);
        for c in &mut self.clients {
            c.handle_input(now, Input::Timeout);
        }
    }

    /// Runs until `done` holds, for at most `limit`.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Bench) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.run_for(Duration::from_millis(10));
        }
        done(self)
    }

    fn produce(&mut self, c: usize, value: &str) -> Result<(), ProduceError> {
        let now = self.now;
        self.clients[c]
            .produce(now, Record::new(TOPIC, Bytes::from(value.to_owned())), 0)
            .map(|_| ())
    }

    fn begin(&mut self, c: usize) {
        let now = self.now;
        self.clients[c].begin_transaction(now).expect("begins");
    }

    /// Ends the open transaction and waits for its outcome.
    fn end(&mut self, c: usize, how: TxnEnd) -> TransactionOutcome {
        let now = self.now;
        let id = self.clients[c].end_transaction(now, how).expect("ends");
        let ended = |b: &Bench| b.outcome(c, id).is_some();
        assert!(
            self.run_until(Duration::from_secs(30), ended),
            "transaction {id} never ended; events {:?}",
            self.events[c]
        );
        self.outcome(c, id).expect("ended")
    }

    fn outcome(&self, c: usize, id: u64) -> Option<TransactionOutcome> {
        self.events[c].iter().find_map(|e| match e {
            Event::TransactionEnded(o) if o.id == id => Some(o.clone()),
            _ => None,
        })
    }

    /// Produces `values` in the open transaction and waits until the
    /// broker acknowledged them all.
    fn produce_acked(&mut self, c: usize, values: &[&str]) {
        let before = self.delivered(c);
        for v in values {
            self.produce(c, v).expect("buffered");
        }
        let now = self.now;
        self.clients[c].flush(now);
        let want = before + values.len();
        assert!(
            self.run_until(Duration::from_secs(30), |b| b.delivered(c) >= want),
            "not delivered; events {:?}",
            self.events[c]
        );
    }

    fn delivered(&self, c: usize) -> usize {
        self.events[c]
            .iter()
            .filter(|e| matches!(e, Event::Delivered { .. }))
            .count()
    }

    fn txn_errors(&self, c: usize) -> Vec<TxnError> {
        self.events[c]
            .iter()
            .filter_map(|e| match e {
                Event::TransactionError(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// What a fresh consumer at `isolation` reads from the whole topic.
    fn read_all(&mut self, isolation: IsolationLevel) -> Vec<String> {
        let c = self.consumer(isolation);
        self.run_for(Duration::from_secs(3));
        let mut seen = self.consumed[c].clone();
        seen.sort();
        seen
    }

    fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.cluster
            .group(group)
            .and_then(|g| g.committed(topic, partition))
            .map(|o| o.offset)
    }
}

fn sorted(values: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = values.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

under_both_versions! {
    fn committed_records_reach_read_committed_consumers_and_aborted_ones_do_not(tv: i16) {
        let mut b = Bench::with_transaction_version(3, tv);
        let p = b.producer(TXN_ID);
        b.begin(p);
        b.produce_acked(p, &["c1", "c2", "c3"]);
        let o = b.end(p, TxnEnd::Commit);
        assert!(o.committed && o.error.is_none(), "{o:?}");

        // Aborted after the broker wrote them: only the abort marker hides
        // them.
        b.begin(p);
        b.produce_acked(p, &["a1", "a2"]);
        let o = b.end(p, TxnEnd::Abort);
        assert!(!o.committed && o.error.is_none(), "{o:?}");

        b.begin(p);
        b.produce(p, "c4").expect("buffered");
        let o = b.end(p, TxnEnd::Commit);
        assert!(o.committed, "{o:?}");
        assert_eq!(b.clients[p].transaction_state(), Some(TxnState::Ready));

        assert_eq!(
            b.read_all(IsolationLevel::ReadCommitted),
            sorted(&["c1", "c2", "c3", "c4"])
        );
        // The aborted records are in the log: read_uncommitted sees them.
        assert_eq!(
            b.read_all(IsolationLevel::ReadUncommitted),
            sorted(&["a1", "a2", "c1", "c2", "c3", "c4"])
        );
    }
}

under_both_versions! {
    fn records_still_buffered_at_an_abort_fail_and_are_never_written(tv: i16) {
        let mut b = Bench::with_transaction_version(1, tv);
        let p = b.producer(TXN_ID);
        b.begin(p);
        b.produce_acked(p, &["sent"]);
        // Buffered, lingering: the abort fails them.
        b.produce(p, "buffered").expect("buffered");
        let o = b.end(p, TxnEnd::Abort);
        assert!(!o.committed, "{o:?}");
        let failed: Vec<&ProduceError> = b.events[p]
            .iter()
            .filter_map(|e| match e {
                Event::ProduceFailed { error, .. } => Some(error),
                _ => None,
            })
            .collect();
        assert_eq!(failed, vec![&ProduceError::TransactionAborted]);
        assert_eq!(
            b.read_all(IsolationLevel::ReadUncommitted),
            sorted(&["sent"])
        );
        assert_eq!(
            b.read_all(IsolationLevel::ReadCommitted),
            Vec::<String>::new()
        );
    }
}

under_both_versions! {
    fn a_transactional_client_refuses_records_outside_a_transaction(tv: i16) {
        let mut b = Bench::with_transaction_version(1, tv);
        let p = b.producer(TXN_ID);
        assert_eq!(b.produce(p, "x"), Err(ProduceError::NotInTransaction));
        b.begin(p);
        b.produce(p, "y").expect("inside");
        assert!(b.end(p, TxnEnd::Commit).committed);
        assert_eq!(b.produce(p, "z"), Err(ProduceError::NotInTransaction));
    }
}

fn offsets(at: i64) -> BTreeMap<(String, i32), EpochOffset> {
    BTreeMap::from([(
        ("in".to_owned(), 0),
        EpochOffset {
            offset: at,
            leader_epoch: -1,
        },
    )])
}

/// A group the producer commits for without being one of its members
/// (generation -1, no member id), as Java's older
/// `sendOffsetsToTransaction(offsets, groupId)` does.
fn outside_group() -> GroupMetadata {
    GroupMetadata {
        group_id: "g".to_owned(),
        generation_id: -1,
        member_id: String::new(),
        instance_id: None,
    }
}

under_both_versions! {
    fn offsets_sent_in_a_transaction_commit_with_it_and_vanish_with_an_abort(tv: i16) {
        let mut b = Bench::with_transaction_version(3, tv);
        let p = b.producer(TXN_ID);
        b.begin(p);
        b.produce_acked(p, &["out-1"]);
        let now = b.now;
        b.clients[p]
            .send_offsets_to_transaction_for(now, offsets(10), outside_group())
            .expect("queued");
        b.run_for(Duration::from_millis(200));
        // Pending in the transaction: not committed yet.
        assert_eq!(b.committed("g", "in", 0), None);
        let o = b.end(p, TxnEnd::Commit);
        assert!(o.committed, "{o:?}");
        assert_eq!(b.committed("g", "in", 0), Some(10));

        b.begin(p);
        let now = b.now;
        b.clients[p]
            .send_offsets_to_transaction_for(now, offsets(20), outside_group())
            .expect("queued");
        b.run_for(Duration::from_millis(200));
        let o = b.end(p, TxnEnd::Abort);
        assert!(!o.committed, "{o:?}");
        assert_eq!(b.committed("g", "in", 0), Some(10), "the abort dropped 20");
    }
}

under_both_versions! {
    fn offsets_of_a_group_member_carry_its_generation_and_a_stale_one_forces_an_abort(tv: i16) {
        let mut b = Bench::with_transaction_version(3, tv);
        let p = b.add(
            Config::builder()
                .transactional_id(TXN_ID)
                .consumer_group(sansa_core::group::GroupConfig::new("g")),
        );
        let now = b.now;
        b.clients[p].consume_topics(now, ["in"]);
        let joined = |b: &Bench| {
            b.events[p]
                .iter()
                .any(|e| matches!(e, Event::PartitionsAssigned(_)))
        };
        assert!(
            b.run_until(Duration::from_secs(30), joined),
            "{:?}",
            b.events[p]
        );
        let generation = b.clients[p].group_member().expect("member").generation();
        assert!(generation > 0);

        b.begin(p);
        b.produce_acked(p, &["out-1"]);
        let now = b.now;
        b.clients[p]
            .send_offsets_to_transaction(now, offsets(5))
            .expect("queued");
        let o = b.end(p, TxnEnd::Commit);
        assert!(o.committed, "{o:?}");
        assert_eq!(b.committed("g", "in", 0), Some(5));

        // The same member id in a generation the group has left (KIP-447):
        // refused, and the transaction can only abort.
        b.begin(p);
        b.produce_acked(p, &["out-2"]);
        let member = b.clients[p].group_member().expect("member");
        let stale = GroupMetadata {
            group_id: "g".to_owned(),
            generation_id: generation - 1,
            member_id: member.member_id().to_owned(),
            instance_id: None,
        };
        let now = b.now;
        b.clients[p]
            .send_offsets_to_transaction_for(now, offsets(9), stale)
            .expect("queued");
        let refused = |b: &Bench| b.clients[p].transaction_state() == Some(TxnState::MustAbort);
        assert!(b.run_until(Duration::from_secs(10), refused));
        assert_eq!(
            b.txn_errors(p),
            vec![TxnError::Broker {
                api: ApiKey::TxnOffsetCommit,
                error: ErrorCode::IllegalGeneration
            }]
        );
        let now = b.now;
        assert!(matches!(
            b.clients[p].end_transaction(now, TxnEnd::Commit),
            Err(TxnError::MustAbort(_))
        ));
        let o = b.end(p, TxnEnd::Abort);
        assert!(!o.committed);
        assert_eq!(b.committed("g", "in", 0), Some(5));
        assert_eq!(
            b.read_all(IsolationLevel::ReadCommitted),
            sorted(&["out-1"])
        );
    }
}

under_both_versions! {
    fn a_second_producer_with_the_same_id_fences_the_first(tv: i16) {
        let mut b = Bench::with_transaction_version(3, tv);
        let old = b.producer(TXN_ID);
        b.begin(old);
        b.produce_acked(old, &["zombie"]);

        // The new instance's InitProducerId aborts what the old one left open
        // and bumps the epoch.
        let new = b.producer(TXN_ID);
        b.begin(new);
        b.produce_acked(new, &["fresh"]);

        let o = b.end(old, TxnEnd::Commit);
        assert!(!o.committed, "{o:?}");
        assert!(
            matches!(o.error, Some(TxnError::Fenced(_))),
            "the old producer learns it was fenced: {o:?}"
        );
        assert_eq!(b.clients[old].transaction_state(), Some(TxnState::Failed));
        assert!(b.txn_errors(old).iter().any(TxnError::is_fatal));
        assert_eq!(b.produce(old, "late"), Err(ProduceError::TransactionFailed));
        let now = b.now;
        assert!(matches!(
            b.clients[old].begin_transaction(now),
            Err(TxnError::Fatal(_))
        ));

        assert!(b.end(new, TxnEnd::Commit).committed);
        assert_eq!(
            b.read_all(IsolationLevel::ReadCommitted),
            sorted(&["fresh"])
        );
    }
}

under_both_versions! {
    fn coordinator_errors_mid_transaction_are_retried_and_the_commit_lands(tv: i16) {
        let mut b = Bench::with_transaction_version(3, tv);
        b.cluster
            .inject_txn_error(ApiKey::InitProducerId, ErrorCode::CoordinatorLoadInProgress);
        // Under v2 no AddPartitionsToTxn goes out, so these two stay
        // queued (see the v2 test below that counts the requests).
        b.cluster
            .inject_txn_error(ApiKey::AddPartitionsToTxn, ErrorCode::NotCoordinator);
        b.cluster.inject_txn_error(
            ApiKey::AddPartitionsToTxn,
            ErrorCode::ConcurrentTransactions,
        );
        b.cluster
            .inject_txn_error(ApiKey::EndTxn, ErrorCode::CoordinatorNotAvailable);
        b.cluster
            .inject_txn_error(ApiKey::EndTxn, ErrorCode::ConcurrentTransactions);
        let p = b.producer(TXN_ID);
        b.begin(p);
        b.produce_acked(p, &["r1", "r2"]);
        let o = b.end(p, TxnEnd::Commit);
        assert!(o.committed && o.error.is_none(), "{o:?}");
        assert!(b.txn_errors(p).is_empty(), "{:?}", b.txn_errors(p));
        assert_eq!(
            b.read_all(IsolationLevel::ReadCommitted),
            sorted(&["r1", "r2"])
        );
    }
}

under_both_versions! {
    fn the_transaction_coordinator_moving_mid_transaction_is_followed(tv: i16) {
        let mut b = Bench::with_transaction_version(3, tv);
        let p = b.producer(TXN_ID);
        b.begin(p);
        b.produce_acked(p, &["before"]);
        let from = b
            .cluster
            .transaction_coordinator_of(TXN_ID)
            .expect("coordinator");
        let state_partition = super::coordinator::offsets_partition_for(
            TXN_ID,
            b.cluster.config().transactions.state_partitions,
        );
        let to = b
            .cluster
            .move_leader(TRANSACTION_STATE_TOPIC, state_partition, None)
            .expect("moved");
        assert_ne!(from, to);
        b.produce_acked(p, &["after"]);
        let o = b.end(p, TxnEnd::Commit);
        assert!(o.committed, "{o:?}");
        assert_eq!(
            b.read_all(IsolationLevel::ReadCommitted),
            sorted(&["after", "before"])
        );
    }
}

#[test]
fn an_add_partitions_refusal_makes_the_transaction_abortable_and_the_next_one_works() {
    let mut b = Bench::new(1);
    b.cluster.inject_txn_error(
        ApiKey::AddPartitionsToTxn,
        ErrorCode::TopicAuthorizationFailed,
    );
    let p = b.producer(TXN_ID);
    b.begin(p);
    b.produce(p, "refused").expect("buffered");
    let abortable = |b: &Bench| b.clients[p].transaction_state() == Some(TxnState::MustAbort);
    assert!(
        b.run_until(Duration::from_secs(10), abortable),
        "{:?}",
        b.events[p]
    );
    assert_eq!(b.produce(p, "more"), Err(ProduceError::NotInTransaction));
    let now = b.now;
    assert!(matches!(
        b.clients[p].end_transaction(now, TxnEnd::Commit),
        Err(TxnError::MustAbort(_))
    ));
    let o = b.end(p, TxnEnd::Abort);
    assert!(!o.committed, "{o:?}");
    // The record never left: it failed with the abort.
    assert!(b.events[p].iter().any(|e| matches!(
        e,
        Event::ProduceFailed {
            error: ProduceError::TransactionAborted,
            ..
        }
    )));

    b.begin(p);
    b.produce(p, "ok").expect("buffered");
    assert!(b.end(p, TxnEnd::Commit).committed);
    assert_eq!(b.read_all(IsolationLevel::ReadUncommitted), sorted(&["ok"]));
}

under_both_versions! {
    fn an_end_txn_answered_invalid_txn_state_closes_the_producer(tv: i16) {
        let mut b = Bench::with_transaction_version(1, tv);
        b.cluster
            .inject_txn_error(ApiKey::EndTxn, ErrorCode::InvalidTxnState);
        let p = b.producer(TXN_ID);
        b.begin(p);
        b.produce_acked(p, &["x"]);
        let o = b.end(p, TxnEnd::Commit);
        assert!(!o.committed);
        assert!(o.commit_in_doubt, "the commit went out: {o:?}");
        assert_eq!(b.clients[p].transaction_state(), Some(TxnState::Failed));
    }
}

#[test]
fn a_transaction_older_than_its_timeout_is_aborted_by_the_coordinator() {
    let mut b = Bench::new(1);
    let p = b.add(
        Config::builder()
            .transactional_id(TXN_ID)
            .transaction_timeout(Duration::from_secs(1)),
    );
    b.begin(p);
    b.produce_acked(p, &["late"]);
    b.run_for(Duration::from_secs(3));
    // The coordinator aborted it and bumped the epoch: with transactions
    // v1 the producer's epoch is fenced (Kafka answers PRODUCER_FENCED to
    // a re-init naming it), so the end reports it and the producer stops.
    let o = b.end(p, TxnEnd::Commit);
    assert!(!o.committed, "{o:?}");
    assert!(matches!(o.error, Some(TxnError::Fenced(_))), "{o:?}");
    assert_eq!(
        b.read_all(IsolationLevel::ReadCommitted),
        Vec::<String>::new()
    );
    // A new instance of the producer takes over the id.
    let again = b.producer(TXN_ID);
    b.begin(again);
    b.produce(again, "fresh").expect("buffered");
    assert!(b.end(again, TxnEnd::Commit).committed);
}

under_both_versions! {
    fn a_partition_leader_answering_producer_fenced_closes_the_producer(tv: i16) {
        let mut b = Bench::with_transaction_version(1, tv);
        for p in 0..2 {
            b.cluster.inject_produce_fault(
                TOPIC,
                p,
                ProduceFault::Error {
                    code: ErrorCode::ProducerFenced,
                    append: false,
                },
            );
        }
        let p = b.producer(TXN_ID);
        b.begin(p);
        b.produce(p, "x").expect("buffered");
        let failed = |b: &Bench| b.clients[p].transaction_state() == Some(TxnState::Failed);
        assert!(
            b.run_until(Duration::from_secs(10), failed),
            "{:?}",
            b.events[p]
        );
        assert_eq!(
            b.txn_errors(p),
            vec![TxnError::ProducerFailed(ProduceError::Broker(
                ErrorCode::ProducerFenced
            ))]
        );
        assert_eq!(b.produce(p, "y"), Err(ProduceError::TransactionFailed));
    }
}

under_both_versions! {
    fn a_record_failing_inside_a_transaction_turns_its_commit_into_an_abort(tv: i16) {
        let mut b = Bench::with_transaction_version(1, tv);
        for p in 0..2 {
            b.cluster.inject_produce_fault(
                TOPIC,
                p,
                ProduceFault::Error {
                    code: ErrorCode::InvalidRecord,
                    append: false,
                },
            );
        }
        let p = b.producer(TXN_ID);
        b.begin(p);
        b.produce(p, "bad").expect("buffered");
        let o = b.end(p, TxnEnd::Commit);
        assert!(!o.committed, "{o:?}");
        assert_eq!(o.error, Some(TxnError::RecordFailed));
        // The producer is usable: the next transaction commits.
        b.begin(p);
        b.produce(p, "good").expect("buffered");
        assert!(b.end(p, TxnEnd::Commit).committed);
        assert_eq!(b.read_all(IsolationLevel::ReadCommitted), sorted(&["good"]));
    }
}

/// The transactional id's producer id and epoch at the coordinator.
fn coordinator_epoch(b: &Bench) -> (i64, i16) {
    let t = b.cluster.transaction(TXN_ID).expect("known id");
    (t.producer_id(), t.producer_epoch())
}

fn requests(b: &Bench, api: &str) -> u64 {
    b.cluster.stats().requests.get(api).copied().unwrap_or(0)
}

#[test]
fn v2_sends_no_add_partitions_or_add_offsets_and_every_end_bumps_the_epoch_by_one() {
    let mut b = Bench::with_transaction_version(3, 2);
    let p = b.producer(TXN_ID);
    let mut epochs = Vec::new();
    for (i, how) in [
        TxnEnd::Commit,
        TxnEnd::Abort,
        TxnEnd::Commit,
        TxnEnd::Commit,
    ]
    .into_iter()
    .enumerate()
    {
        b.begin(p);
        b.produce_acked(
            p,
            &[&format!("r{i}-a"), &format!("r{i}-b"), &format!("r{i}-c")],
        );
        let now = b.now;
        b.clients[p]
            .send_offsets_to_transaction_for(now, offsets(10 + i as i64), outside_group())
            .expect("queued");
        epochs.push(coordinator_epoch(&b));
        let o = b.end(p, how);
        assert_eq!(o.committed, how == TxnEnd::Commit, "{o:?}");
        assert!(o.error.is_none(), "{o:?}");
    }
    assert_eq!(b.clients[p].uses_transactions_v2(), Some(true));
    epochs.push(coordinator_epoch(&b));
    let pid = epochs[0].0;
    assert_eq!(
        epochs,
        (0..5).map(|e| (pid, e)).collect::<Vec<_>>(),
        "one InitProducerId, then one bump per end"
    );
    assert_eq!(requests(&b, "AddPartitionsToTxn"), 0);
    assert_eq!(requests(&b, "AddOffsetsToTxn"), 0);
    assert_eq!(requests(&b, "InitProducerId"), 1);
    assert_eq!(b.committed("g", "in", 0), Some(13));
    // Sequences restarted at 0 under every epoch: the leaders (which
    // refuse anything else after a marker bumped the epoch) took every
    // batch, and read_committed sees the committed three transactions.
    let mut want: Vec<String> = [0, 2, 3]
        .iter()
        .flat_map(|i| ["a", "b", "c"].map(|s| format!("r{i}-{s}")))
        .collect();
    want.sort();
    assert_eq!(b.read_all(IsolationLevel::ReadCommitted), want);
}

#[test]
fn v1_is_used_when_the_cluster_does_not_finalize_transaction_version_2() {
    let mut b = Bench::with_transaction_version(1, 1);
    let p = b.producer(TXN_ID);
    b.begin(p);
    b.produce_acked(p, &["x"]);
    assert!(b.end(p, TxnEnd::Commit).committed);
    assert_eq!(b.clients[p].uses_transactions_v2(), Some(false));
    assert_eq!(requests(&b, "AddPartitionsToTxn"), 1);
    assert_eq!(coordinator_epoch(&b).1, 0, "v1 ends keep the epoch");
}

/// An EndTxn for the transaction that ended last, arriving late (a
/// request the network held while the client retried it on a new
/// connection), reaches the coordinator during the next transaction.
fn late_end_txn(b: &mut Bench, tv: i16, (producer_id, producer_epoch): (i64, i16)) -> ErrorCode {
    let node = b
        .cluster
        .transaction_coordinator_of(TXN_ID)
        .expect("coordinator");
    let req = sansa_core::protocol::messages::EndTxnRequest {
        transactional_id: TXN_ID.to_owned(),
        producer_id,
        producer_epoch,
        committed: true,
        ..Default::default()
    };
    let now = b.now;
    let v = if tv >= 2 { 5 } else { 4 };
    ErrorCode::from_code(b.cluster.end_txn(now, node, v, req).error_code)
}

#[test]
fn a_late_end_txn_cannot_end_the_next_transaction_under_v2() {
    // KAFKA-17754: under v1 the late commit carries the epoch the next
    // transaction runs under, and commits it behind the producer's back.
    let mut b = Bench::with_transaction_version(1, 2);
    let p = b.producer(TXN_ID);
    b.begin(p);
    b.produce_acked(p, &["first"]);
    let first = coordinator_epoch(&b);
    assert!(b.end(p, TxnEnd::Commit).committed);
    b.begin(p);
    b.produce_acked(p, &["second"]);
    let error = late_end_txn(&mut b, 2, first);
    assert_eq!(
        error,
        ErrorCode::ProducerFenced,
        "the epoch it carries is retired"
    );
    assert_eq!(
        b.cluster.transaction(TXN_ID).map(|t| t.state()),
        Some(super::transaction::TxnState::Ongoing),
        "the next transaction is untouched"
    );
    let o = b.end(p, TxnEnd::Abort);
    assert!(!o.committed && o.error.is_none(), "{o:?}");
    assert_eq!(
        b.read_all(IsolationLevel::ReadCommitted),
        sorted(&["first"])
    );
}

#[test]
fn a_late_end_txn_ends_the_next_transaction_under_v1() {
    // The hazard v2 removes, pinned so the v2 test above means something:
    // the same late commit under v1 commits records the producer aborts.
    let mut b = Bench::with_transaction_version(1, 1);
    let p = b.producer(TXN_ID);
    b.begin(p);
    b.produce_acked(p, &["first"]);
    let first = coordinator_epoch(&b);
    assert!(b.end(p, TxnEnd::Commit).committed);
    b.begin(p);
    b.produce_acked(p, &["second"]);
    assert_eq!(late_end_txn(&mut b, 1, first), ErrorCode::None);
    let o = b.end(p, TxnEnd::Abort);
    assert!(!o.committed, "{o:?}");
    assert_eq!(
        b.read_all(IsolationLevel::ReadCommitted),
        sorted(&["first", "second"]),
        "the aborted transaction was committed by the late EndTxn"
    );
}

#[test]
fn a_retried_end_txn_under_v2_is_answered_as_the_end_it_repeats() {
    let mut b = Bench::with_transaction_version(1, 2);
    let p = b.producer(TXN_ID);
    b.begin(p);
    b.produce_acked(p, &["x"]);
    let first = coordinator_epoch(&b);
    assert!(b.end(p, TxnEnd::Commit).committed);
    // The same commit again (its answer was lost): success, with the
    // epoch to go on with; an abort of the committed one is refused.
    assert_eq!(late_end_txn(&mut b, 2, first), ErrorCode::None);
    let node = b
        .cluster
        .transaction_coordinator_of(TXN_ID)
        .expect("coordinator");
    let abort = sansa_core::protocol::messages::EndTxnRequest {
        transactional_id: TXN_ID.to_owned(),
        producer_id: first.0,
        producer_epoch: first.1,
        committed: false,
        ..Default::default()
    };
    let now = b.now;
    let r = b.cluster.end_txn(now, node, 5, abort);
    assert_eq!(
        ErrorCode::from_code(r.error_code),
        ErrorCode::InvalidTxnState
    );
    assert_eq!(
        coordinator_epoch(&b),
        (first.0, first.1 + 1),
        "no second bump"
    );
}

#[test]
fn a_v2_transaction_older_than_its_timeout_aborts_and_the_producer_goes_on() {
    let mut b = Bench::with_transaction_version(1, 2);
    let p = b.add(
        Config::builder()
            .transactional_id(TXN_ID)
            .transaction_timeout(Duration::from_secs(1)),
    );
    b.begin(p);
    b.produce_acked(p, &["late"]);
    b.run_for(Duration::from_secs(3));
    // The coordinator aborted it with the epoch bumped; the producer's
    // abort at the old epoch is a retry of that end (KIP-890 part 2), so
    // it succeeds and the producer goes on under the bumped epoch.
    let o = b.end(p, TxnEnd::Abort);
    assert!(!o.committed && o.error.is_none(), "{o:?}");
    b.begin(p);
    b.produce(p, "fresh").expect("buffered");
    assert!(b.end(p, TxnEnd::Commit).committed);
    assert_eq!(
        b.read_all(IsolationLevel::ReadCommitted),
        sorted(&["fresh"])
    );
    assert_eq!(requests(&b, "InitProducerId"), 1);
}

under_both_versions! {
    /// The coordinator answers EndTxn before its markers are written:
    /// the next transaction's first partition meets the end still in
    /// progress (v1: AddPartitionsToTxn answered CONCURRENT_TRANSACTIONS;
    /// v2: the leader's implicit add answers NOT_ENOUGH_REPLICAS), and
    /// is retried until the markers are in.
    fn the_next_transaction_waits_out_the_last_ones_markers(tv: i16) {
        let mut b = Bench::configured(1, |c| {
            c.transactions.transaction_version = tv;
            c.transactions.marker_delay = Duration::from_millis(300);
        });
        let p = b.producer(TXN_ID);
        b.begin(p);
        b.produce_acked(p, &["one"]);
        assert!(b.end(p, TxnEnd::Commit).committed);
        b.begin(p);
        b.produce_acked(p, &["two"]);
        assert!(b.end(p, TxnEnd::Commit).committed);
        assert!(b.txn_errors(p).is_empty(), "{:?}", b.txn_errors(p));
        // The window was met, not missed.
        if tv >= 2 {
            assert!(b.cluster.stats().produce_errors > 0, "{:?}", b.cluster.stats());
        } else {
            assert!(requests(&b, "AddPartitionsToTxn") > 2, "{:?}", b.cluster.stats());
        }
        let b = &mut b;
        let all = |b: &Bench| {
            b.cluster
                .transaction(TXN_ID)
                .is_some_and(|t| !t.state().is_preparing())
        };
        assert!(b.run_until(Duration::from_secs(5), all));
        assert_eq!(
            b.read_all(IsolationLevel::ReadCommitted),
            sorted(&["one", "two"])
        );
    }
}

// ----------------------------------------------------------------------
// After the coordinator timed a transaction out (KIP-588's situation)
// ----------------------------------------------------------------------
//
// Kafka's coordinator aborts a transaction older than its timeout with the
// epoch bumped (`prepareFenceProducerEpoch`) and records *no* last epoch
// (`lastProducerEpoch = NO_PRODUCER_EPOCH`), so nothing the producer sends
// under its old epoch is accepted again: KIP-588's server side (a
// TRANSACTION_TIMED_OUT error and a re-init from the fenced epoch, Kafka
// PR #9311) was never merged. What the producer sees depends on the path:
// a Produce to a partition that got the abort marker is answered
// INVALID_PRODUCER_EPOCH, which is abortable; the abort that must follow
// is answered PRODUCER_FENCED (EndTxn v2+) or INVALID_PRODUCER_EPOCH
// (EndTxn v0-1). Either way the producer ends fatally and the application
// recovers with a new instance.

/// A transactional client whose transactions time out after a second.
fn short_lived(b: &mut Bench) -> usize {
    b.add(
        Config::builder()
            .transactional_id(TXN_ID)
            .transaction_timeout(Duration::from_secs(1)),
    )
}

/// Produces `value` to partition 0 and runs until it failed, returning
/// the error.
fn produce_until_failed(b: &mut Bench, c: usize, value: &str) -> ProduceError {
    let now = b.now;
    let record = Record::new(TOPIC, Bytes::from(value.to_owned())).with_partition(0);
    b.clients[c].produce(now, record, 0).expect("buffered");
    b.clients[c].flush(now);
    let failed = |b: &Bench| {
        b.events[c]
            .iter()
            .any(|e| matches!(e, Event::ProduceFailed { .. }))
    };
    assert!(
        b.run_until(Duration::from_secs(30), failed),
        "{value} never failed; events {:?}",
        b.events[c]
    );
    b.events[c]
        .iter()
        .find_map(|e| match e {
            Event::ProduceFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .expect("failed")
}

/// Begins a transaction on `c` whose first record, on partition 0, is
/// acknowledged, then lets the coordinator time it out.
fn begin_and_time_out(b: &mut Bench, c: usize) {
    b.begin(c);
    let now = b.now;
    let record = Record::new(TOPIC, Bytes::from_static(b"early")).with_partition(0);
    b.clients[c].produce(now, record, 0).expect("buffered");
    b.clients[c].flush(now);
    assert!(
        b.run_until(Duration::from_secs(30), |b| b.delivered(c) >= 1),
        "early not delivered; events {:?}",
        b.events[c]
    );
    b.run_for(Duration::from_secs(3));
    let t = b.cluster.transaction(TXN_ID).expect("known id");
    assert_eq!(
        t.state(),
        super::transaction::TxnState::CompleteAbort,
        "the coordinator aborted the timed-out transaction"
    );
}

#[test]
fn a_produce_after_a_timeout_abort_is_abortable_and_the_abort_ends_the_fenced_producer() {
    let mut b = Bench::new(1);
    let p = short_lived(&mut b);
    begin_and_time_out(&mut b, p);
    // Partition 0 is already in the transaction (no AddPartitionsToTxn
    // goes out) and holds the abort marker of the bumped epoch.
    let error = produce_until_failed(&mut b, p, "late");
    assert_eq!(error, ProduceError::Broker(ErrorCode::InvalidProducerEpoch));
    assert_eq!(
        b.clients[p].transaction_state(),
        Some(TxnState::MustAbort),
        "INVALID_PRODUCER_EPOCH from a partition is abortable (KIP-588)"
    );
    let o = b.end(p, TxnEnd::Abort);
    assert!(!o.committed, "{o:?}");
    assert_eq!(o.error, Some(TxnError::Fenced(ErrorCode::ProducerFenced)));
    assert_eq!(b.clients[p].transaction_state(), Some(TxnState::Failed));
    // The application's recovery: a new instance of the producer.
    let again = short_lived(&mut b);
    b.begin(again);
    b.produce(again, "fresh").expect("buffered");
    assert!(b.end(again, TxnEnd::Commit).committed);
    assert_eq!(
        b.read_all(IsolationLevel::ReadCommitted),
        sorted(&["fresh"])
    );
}

#[test]
fn after_a_timeout_abort_an_old_coordinators_invalid_epoch_fences_without_a_re_init() {
    let mut config = ClusterConfig::new(1);
    // A Kafka 2.5/2.6 coordinator: KIP-360 re-inits (InitProducerId 3),
    // but EndTxn 1, which answers INVALID_PRODUCER_EPOCH where later ones
    // answer PRODUCER_FENCED.
    config.max_versions = vec![(ApiKey::EndTxn, 1), (ApiKey::InitProducerId, 3)];
    let mut b = Bench::with_config(config);
    let p = short_lived(&mut b);
    begin_and_time_out(&mut b, p);
    let inits = |b: &Bench| b.cluster.stats().requests.get("InitProducerId").copied();
    let before = inits(&b);
    produce_until_failed(&mut b, p, "late");
    let o = b.end(p, TxnEnd::Abort);
    assert!(!o.committed, "{o:?}");
    // The abort's INVALID_PRODUCER_EPOCH is the fence: no re-init naming
    // the fenced epoch follows (Kafka would refuse it; a broker that does
    // not check would fence whoever holds the id now).
    assert_eq!(
        o.error,
        Some(TxnError::Fenced(ErrorCode::InvalidProducerEpoch))
    );
    assert_eq!(inits(&b), before, "no re-init was tried");
    assert_eq!(b.clients[p].transaction_state(), Some(TxnState::Failed));
    let again = short_lived(&mut b);
    b.begin(again);
    b.produce(again, "fresh").expect("buffered");
    assert!(b.end(again, TxnEnd::Commit).committed);
    assert_eq!(
        b.read_all(IsolationLevel::ReadCommitted),
        sorted(&["fresh"])
    );
}

#[test]
fn a_producer_timed_out_while_another_instance_took_over_ends_without_disturbing_it() {
    let mut b = Bench::new(1);
    let old = short_lived(&mut b);
    begin_and_time_out(&mut b, old);
    // The new instance is mid-transaction when the old one wakes up.
    let new = b.producer(TXN_ID);
    b.begin(new);
    b.produce_acked(new, &["new"]);
    let error = produce_until_failed(&mut b, old, "late");
    assert_eq!(error, ProduceError::Broker(ErrorCode::InvalidProducerEpoch));
    let o = b.end(old, TxnEnd::Abort);
    assert_eq!(o.error, Some(TxnError::Fenced(ErrorCode::ProducerFenced)));
    assert_eq!(b.clients[old].transaction_state(), Some(TxnState::Failed));
    // The old instance's end touched nothing of the new one's.
    assert_eq!(
        b.clients[new].transaction_state(),
        Some(TxnState::InTransaction)
    );
    assert!(b.end(new, TxnEnd::Commit).committed);
    assert_eq!(b.read_all(IsolationLevel::ReadCommitted), sorted(&["new"]));
}
