//! An exactly-once pipeline against the simulated cluster: an input topic
//! fed while the test runs, N unmodified `sansa_core::Client`s running
//! group-transact sessions (consume from the group, transform, produce,
//! end with the offsets in the transaction), and an output topic. Faults
//! on the way: members crashing and restarting, a member joining late
//! (rebalances), group and transaction coordinators moving, brokers
//! restarting, and injected transaction errors.
//!
//! The checker reads both topics at the end, the output with
//! read_committed, and demands that each partition of the output holds the
//! transform of each input record of the same partition exactly once, in
//! order. A sabotaged member (one that commits despite a revoke) proves
//! the checker catches duplicates; regression scenarios cover franz-go
//! #729 (an abort that did not abort) and #1052 (an end that reported an
//! error though the offsets were committed).
//!
//! Seeded: `SANSA_SIM_SEED=N` replays one seed; the seed is in every
//! failure message.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sansa_core::client::ConnId;
use sansa_core::consumer::{ConsumerConfig, IsolationLevel};
use std::sync::Arc;

use sansa_core::group::balancer::RangeBalancer;
use sansa_core::group::GroupConfig;
use sansa_core::producer::partitioner::ManualPartitioner;
use sansa_core::producer::Record;
use sansa_core::protocol::{ApiKey, ErrorCode};
use sansa_core::txn::{TransactionOutcome, TxnEnd, TxnError};
use sansa_core::{Client, Config, Event, Input, Output, Timestamp};

use super::coordinator::{offsets_partition_for, OFFSETS_TOPIC};
use super::transaction::TRANSACTION_STATE_TOPIC;
use super::*;

const INPUT: &str = "in";
const OUTPUT: &str = "out";
const GROUP: &str = "eos";
const PARTITIONS: i32 = 3;
const STEP: Duration = Duration::from_millis(10);

fn transform(v: &str) -> String {
    format!("T({v})")
}

/// Where a session member is in its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Idle,
    /// A transaction is open since then; `doomed` when a produce was
    /// refused (only an abort may end it).
    Open {
        since: Timestamp,
        doomed: bool,
    },
    Ending(u64),
}

/// What a client of the bench is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A session member: `worker` numbers its transactional id.
    Worker { worker: usize, sabotaged: bool },
    /// Feeds the input topic.
    Feeder,
    /// Reads a whole topic.
    Reader,
}

struct Peer {
    role: Role,
    client: Option<Client>,
    stage: Stage,
    /// Incarnation, so a restarted member draws fresh randomness.
    incarnation: u64,
    delivered: usize,
    outcomes: Vec<TransactionOutcome>,
    fatal: bool,
    /// What a reader read, by partition.
    read: BTreeMap<i32, Vec<String>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    commits: u64,
    aborts: u64,
    restarts: u64,
    faults: u64,
    /// Fatal PRODUCER_FENCED / INVALID_PRODUCER_EPOCH errors members met.
    fenced: u64,
}

/// One fault the scenario may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    CrashMember,
    MoveGroupCoordinator,
    MoveTxnCoordinator,
    RestartBroker,
    TxnError(ApiKey, ErrorCode),
}

const FAULTS: [Fault; 11] = [
    Fault::CrashMember,
    Fault::MoveGroupCoordinator,
    Fault::MoveTxnCoordinator,
    Fault::RestartBroker,
    Fault::TxnError(ApiKey::TxnOffsetCommit, ErrorCode::ConcurrentTransactions),
    Fault::TxnError(ApiKey::TxnOffsetCommit, ErrorCode::NotCoordinator),
    Fault::TxnError(ApiKey::TxnOffsetCommit, ErrorCode::RebalanceInProgress),
    Fault::TxnError(
        ApiKey::AddPartitionsToTxn,
        ErrorCode::ConcurrentTransactions,
    ),
    Fault::TxnError(
        ApiKey::AddPartitionsToTxn,
        ErrorCode::TopicAuthorizationFailed,
    ),
    Fault::TxnError(ApiKey::AddOffsetsToTxn, ErrorCode::ConcurrentTransactions),
    Fault::TxnError(ApiKey::EndTxn, ErrorCode::ConcurrentTransactions),
];

/// A scenario: how many members, which faults, for how long.
#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    members: usize,
    /// A member that joins after this long (a rebalance mid-stream).
    late_member_at: Option<Duration>,
    /// Members whose session ignores revokes (the checker's own test).
    sabotaged: usize,
    /// Faults per second while faults run.
    fault_rate: f64,
    faults: Vec<Fault>,
    /// How long input is fed (and faults run).
    feed_for: Duration,
    /// How long each transaction stays open.
    txn_len: Duration,
    /// Members balance eagerly (range: every rebalance revokes
    /// everything first) instead of cooperatively.
    eager: bool,
    /// The members' transaction timeout; `None` for the client's default.
    txn_timeout: Option<Duration>,
    /// The cluster's finalized `transaction.version`: 2 runs the
    /// pipeline on transactions v2 (KIP-890 part 2).
    transaction_version: i16,
}

impl Scenario {
    fn calm(seed: u64) -> Self {
        Scenario {
            seed,
            members: 2,
            late_member_at: Some(Duration::from_secs(3)),
            sabotaged: 0,
            fault_rate: 0.0,
            faults: Vec::new(),
            feed_for: Duration::from_secs(8),
            txn_len: Duration::from_millis(300),
            eager: false,
            txn_timeout: None,
            transaction_version: 1,
        }
    }

    fn faulty(seed: u64) -> Self {
        Scenario {
            members: 3,
            fault_rate: 0.6,
            faults: FAULTS.to_vec(),
            feed_for: Duration::from_secs(15),
            ..Scenario::calm(seed)
        }
    }
}

struct Pipeline {
    scenario: Scenario,
    cluster: Cluster,
    rng: SimRng,
    now: Timestamp,
    peers: Vec<Peer>,
    to_server: BTreeMap<(usize, ConnId), ServerConnId>,
    to_client: BTreeMap<ServerConnId, (usize, ConnId)>,
    /// Things to do later: restart a member or a broker.
    later: Vec<(Timestamp, Later)>,
    /// The next EndTxn a member sends is handled, and its answer lost
    /// with its connection (franz-go #1052).
    lose_next_end_txn_answer: bool,
    stats: Stats,
    fed: u64,
}

#[derive(Debug, Clone, Copy)]
enum Later {
    RestartMember(usize),
    RestartBroker(NodeId),
}

impl Pipeline {
    fn new(scenario: Scenario) -> Self {
        let mut config = ClusterConfig::new(3);
        config.transactions.state_partitions = 3;
        config.transactions.transaction_version = scenario.transaction_version;
        config.groups.offsets_partitions = 3;
        let mut rng = SimRng::new(scenario.seed);
        let mut cluster = Cluster::new(config, rng.fork());
        cluster.create_topic(INPUT, PARTITIONS, 3).expect("topic");
        cluster.create_topic(OUTPUT, PARTITIONS, 3).expect("topic");
        let mut p = Pipeline {
            scenario,
            cluster,
            rng,
            now: Timestamp::from_nanos(1_000_000_000),
            peers: Vec::new(),
            to_server: BTreeMap::new(),
            to_client: BTreeMap::new(),
            later: Vec::new(),
            lose_next_end_txn_answer: false,
            stats: Stats::default(),
            fed: 0,
        };
        p.add(Role::Feeder);
        let sabotaged = p.scenario.sabotaged;
        for w in 0..p.scenario.members {
            p.add(Role::Worker {
                worker: w,
                sabotaged: w < sabotaged,
            });
        }
        p
    }

    fn seeds(&self) -> Vec<String> {
        self.cluster
            .config()
            .brokers
            .iter()
            .map(|b| b.address())
            .collect()
    }

    fn add(&mut self, role: Role) -> usize {
        self.peers.push(Peer {
            role,
            client: None,
            stage: Stage::Idle,
            incarnation: 0,
            delivered: 0,
            outcomes: Vec::new(),
            fatal: false,
            read: BTreeMap::new(),
        });
        let i = self.peers.len() - 1;
        self.start(i);
        i
    }

    /// Creates peer `i`'s client (again, after a crash).
    fn start(&mut self, i: usize) {
        let seed = self.scenario.seed ^ ((i as u64) << 32) ^ self.peers[i].incarnation;
        let builder = Config::builder()
            .seed_brokers(self.seeds())
            .linger(Duration::from_millis(5))
            .partitioner(ManualPartitioner)
            .seed(seed);
        let builder = match self.peers[i].role {
            Role::Feeder => builder,
            Role::Reader => builder.consumer(ConsumerConfig {
                isolation: IsolationLevel::ReadCommitted,
                fetch_max_wait: Duration::from_millis(100),
                ..Default::default()
            }),
            Role::Worker { worker, sabotaged } => {
                let balancers = if self.scenario.eager {
                    vec![Arc::new(RangeBalancer) as _]
                } else {
                    GroupConfig::new(GROUP).balancers
                };
                let group = GroupConfig {
                    balancers,
                    session_timeout: Duration::from_secs(6),
                    heartbeat_interval: Duration::from_millis(500),
                    rebalance_timeout: Duration::from_secs(10),
                    ..GroupConfig::new(GROUP)
                };
                let builder = match self.scenario.txn_timeout {
                    Some(t) => builder.transaction_timeout(t),
                    None => builder,
                };
                let b = builder
                    .transactional_id(format!("eos-{worker}"))
                    .consumer_group(group)
                    .group_transact_session(true)
                    .consumer(ConsumerConfig {
                        isolation: IsolationLevel::ReadCommitted,
                        fetch_max_wait: Duration::from_millis(100),
                        ..Default::default()
                    });
                if sabotaged {
                    b.sabotage_commit_despite_revoke()
                } else {
                    b
                }
            }
        };
        let config = builder.build().expect("valid config");
        let mut client = Client::new(config).expect("valid");
        let now = self.now;
        match self.peers[i].role {
            Role::Worker { .. } => client.consume_topics(now, [INPUT]),
            Role::Reader => {}
            Role::Feeder => {}
        }
        let peer = &mut self.peers[i];
        peer.client = Some(client);
        peer.stage = Stage::Idle;
        peer.fatal = false;
    }

    /// Peer `i`'s process dies: its connections close with whatever was
    /// in flight, its open transaction is left to the coordinator.
    fn crash(&mut self, i: usize) {
        self.peers[i].client = None;
        let conns: Vec<(usize, ConnId)> = self
            .to_server
            .keys()
            .filter(|(p, _)| *p == i)
            .copied()
            .collect();
        for k in conns {
            if let Some(s) = self.to_server.remove(&k) {
                self.to_client.remove(&s);
                self.cluster.disconnect(s);
            }
        }
        self.peers[i].incarnation += 1;
        self.peers[i].outcomes.clear();
    }

    fn restart(&mut self, i: usize) {
        self.crash(i);
        self.stats.restarts += 1;
        self.start(i);
    }

    /// Carries out every output until nothing moves.
    fn pump(&mut self) {
        let now = self.now;
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.peers.len() {
                loop {
                    let Some(o) = self.peers[i]
                        .client
                        .as_mut()
                        .and_then(|c| c.poll_output(now))
                    else {
                        break;
                    };
                    moved = true;
                    self.carry(i, o);
                }
            }
            while let Some(o) = self.cluster.poll_output() {
                moved = true;
                match o {
                    ClusterOutput::Send { conn, data } => {
                        if let Some(&(i, c)) = self.to_client.get(&conn) {
                            if let Some(client) = &mut self.peers[i].client {
                                client.handle_input(now, Input::Received(c, data));
                            }
                        }
                    }
                    ClusterOutput::Close { conn } => {
                        if let Some((i, c)) = self.to_client.remove(&conn) {
                            self.to_server.remove(&(i, c));
                            if let Some(client) = &mut self.peers[i].client {
                                client.handle_input(now, Input::Closed(c, "reset".into()));
                            }
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("seed {}: the pipeline never settled", self.scenario.seed);
    }

    fn carry(&mut self, i: usize, o: Output) {
        let now = self.now;
        let Some(client) = self.peers[i].client.as_mut() else {
            return;
        };
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
                        client.handle_input(now, Input::Connected(conn));
                    }
                    None => client.handle_input(now, Input::ConnectFailed(conn, "refused".into())),
                }
            }
            Output::Transmit { conn, data } => {
                let Some(&s) = self.to_server.get(&(i, conn)) else {
                    return;
                };
                self.cluster.handle_bytes(now, s, &data);
                let end_txn = data.get(4..6) == Some(&ApiKey::EndTxn.key().to_be_bytes()[..]);
                if end_txn && self.lose_next_end_txn_answer {
                    // The coordinator acted on it; the answer is lost with
                    // the connection.
                    self.lose_next_end_txn_answer = false;
                    self.to_server.remove(&(i, conn));
                    self.to_client.remove(&s);
                    self.cluster.disconnect(s);
                    client.handle_input(now, Input::Closed(conn, "reset".into()));
                }
            }
            Output::Close(conn) => {
                if let Some(s) = self.to_server.remove(&(i, conn)) {
                    self.to_client.remove(&s);
                    self.cluster.disconnect(s);
                }
            }
            Output::Event(e) => self.on_event(i, e),
            _ => {}
        }
    }

    fn on_event(&mut self, i: usize, e: Event) {
        let now = self.now;
        if matches!(e, Event::TransactionError(TxnError::Fenced(_))) {
            self.stats.fenced += 1;
        }
        let peer = &mut self.peers[i];
        match e {
            Event::FetchesReady if peer.role == Role::Reader => {
                let Some(client) = &mut peer.client else {
                    return;
                };
                for f in client.poll_fetches(now, None) {
                    for r in f.records {
                        let v = r.value.unwrap_or_default();
                        peer.read
                            .entry(f.partition)
                            .or_default()
                            .push(String::from_utf8_lossy(&v).into_owned());
                    }
                }
            }
            Event::Delivered { .. } => peer.delivered += 1,
            Event::TransactionEnded(o) => peer.outcomes.push(o),
            Event::TransactionError(e) if e.is_fatal() => peer.fatal = true,
            _ => {}
        }
    }

    /// Runs the clock forward by one step, firing every timer on the way,
    /// then lets the members and the scenario act.
    fn step(&mut self) {
        let end = self.now + STEP;
        loop {
            self.pump();
            let next = self
                .peers
                .iter()
                .filter_map(|p| p.client.as_ref().and_then(Client::poll_timeout))
                .chain(self.cluster.poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => self.now = t.max(self.now),
                _ => {
                    self.now = end;
                    self.tick();
                    self.pump();
                    break;
                }
            }
            self.tick();
        }
        for i in 0..self.peers.len() {
            if matches!(self.peers[i].role, Role::Worker { .. }) {
                self.work(i);
            }
        }
        self.run_later();
    }

    fn tick(&mut self) {
        let now = self.now;
        self.cluster.handle_timeout(now);
        for p in &mut self.peers {
            if let Some(c) = &mut p.client {
                c.handle_input(now, Input::Timeout);
            }
        }
    }

    /// One turn of a session member's loop: begin; poll, transform and
    /// produce; end after `txn_len`; wait for the outcome.
    fn work(&mut self, i: usize) {
        if self.peers[i].fatal {
            // Fenced or failed: a new client, as an application would.
            self.restart(i);
            return;
        }
        if !self.work_on(i) {
            self.restart(i);
        }
    }

    /// [`Self::work`] on a live client; `false` when it must restart.
    fn work_on(&mut self, i: usize) -> bool {
        let now = self.now;
        let txn_len = self.scenario.txn_len;
        let peer = &mut self.peers[i];
        let Some(client) = &mut peer.client else {
            return true;
        };
        match peer.stage {
            Stage::Idle => {
                if client.begin_transaction(now).is_ok() {
                    peer.stage = Stage::Open {
                        since: now,
                        doomed: false,
                    };
                }
            }
            Stage::Open { since, mut doomed } => {
                for f in client.poll_fetches(now, None) {
                    for r in f.records {
                        let v = r.value.unwrap_or_default();
                        let out = transform(&String::from_utf8_lossy(&v));
                        let record =
                            Record::new(OUTPUT, Bytes::from(out)).with_partition(f.partition);
                        if client.produce(now, record, 0).is_err() {
                            doomed = true;
                        }
                    }
                }
                peer.stage = Stage::Open { since, doomed };
                if now >= since + txn_len {
                    let how = if doomed {
                        TxnEnd::Abort
                    } else {
                        TxnEnd::Commit
                    };
                    match client.end_transaction(now, how) {
                        Ok(id) => peer.stage = Stage::Ending(id),
                        Err(_) => return false,
                    }
                }
            }
            Stage::Ending(id) => {
                if let Some(o) = peer.outcomes.iter().find(|o| o.id == id) {
                    if o.committed {
                        self.stats.commits += 1;
                    } else {
                        self.stats.aborts += 1;
                    }
                    peer.stage = Stage::Idle;
                }
            }
        }
        true
    }

    /// Feeds one record to every input partition.
    fn feed(&mut self) {
        let now = self.now;
        let n = self.fed;
        let Some(c) = &mut self.peers[0].client else {
            return;
        };
        for p in 0..PARTITIONS {
            let r = Record::new(INPUT, Bytes::from(format!("p{p}-{n:05}"))).with_partition(p);
            c.produce(now, r, 0).expect("the feeder's buffer has room");
        }
        self.fed += 1;
    }

    fn run_later(&mut self) {
        let now = self.now;
        let due: Vec<Later> = self
            .later
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, l)| *l)
            .collect();
        self.later.retain(|(t, _)| *t > now);
        for l in due {
            match l {
                Later::RestartMember(i) => self.start(i),
                Later::RestartBroker(n) => {
                    self.cluster.restart(n);
                }
            }
        }
    }

    fn inject(&mut self, fault: Fault) {
        self.stats.faults += 1;
        let now = self.now;
        match fault {
            Fault::CrashMember => {
                let live: Vec<usize> = (0..self.peers.len())
                    .filter(|&i| {
                        matches!(self.peers[i].role, Role::Worker { .. })
                            && self.peers[i].client.is_some()
                    })
                    .collect();
                if let Some(&i) = self.rng.pick(&live) {
                    self.crash(i);
                    self.stats.restarts += 1;
                    let d = self
                        .rng
                        .duration(Duration::from_millis(500), Duration::from_secs(3));
                    self.later.push((now + d, Later::RestartMember(i)));
                }
            }
            Fault::MoveGroupCoordinator => {
                let parts = self.cluster.config().groups.offsets_partitions;
                let p = offsets_partition_for(GROUP, parts);
                self.cluster.move_leader(OFFSETS_TOPIC, p, None);
            }
            Fault::MoveTxnCoordinator => {
                let w = self.rng.below(self.scenario.members as u64);
                let parts = self.cluster.config().transactions.state_partitions;
                let p = offsets_partition_for(&format!("eos-{w}"), parts);
                self.cluster.move_leader(TRANSACTION_STATE_TOPIC, p, None);
            }
            Fault::RestartBroker => {
                let down = self.cluster.broker_ids().any(|n| !self.cluster.is_up(n));
                let ids: Vec<NodeId> = self.cluster.broker_ids().collect();
                if let (false, Some(&n)) = (down, self.rng.pick(&ids)) {
                    self.cluster.crash(n);
                    let d = self
                        .rng
                        .duration(Duration::from_millis(500), Duration::from_secs(2));
                    self.later.push((now + d, Later::RestartBroker(n)));
                }
            }
            Fault::TxnError(api, code) => self.cluster.inject_txn_error(api, code),
        }
    }

    /// Feeds input and draws faults for `feed_for`, then heals and runs
    /// until every input record is committed through (or a time limit).
    fn run(&mut self) {
        let start = self.now;
        let feed_until = start + self.scenario.feed_for;
        let mut next_feed = start;
        let late = self.scenario.late_member_at.map(|d| start + d);
        let mut late_done = late.is_none();
        while self.now < feed_until {
            if self.now >= next_feed {
                self.feed();
                next_feed = self.now + Duration::from_millis(100);
            }
            if !late_done && late.is_some_and(|t| self.now >= t) {
                late_done = true;
                let w = self.scenario.members;
                self.scenario.members += 1;
                self.add(Role::Worker {
                    worker: w,
                    sabotaged: false,
                });
            }
            let p = self.scenario.fault_rate * STEP.as_secs_f64();
            if !self.scenario.faults.is_empty() && self.rng.chance(p) {
                let f = *self.rng.pick(&self.scenario.faults).expect("faults");
                self.inject(f);
            }
            self.step();
        }
        // Heal: every broker and member back.
        let limit = self.now + Duration::from_secs(120);
        while self.now < limit && !self.drained() {
            self.step();
        }
        for _ in 0..50 {
            self.step();
        }
    }

    /// Every input record's offset is committed by the group, and no
    /// delayed restart waits.
    fn drained(&self) -> bool {
        let Some(g) = self.cluster.group(GROUP) else {
            return false;
        };
        self.later.is_empty()
            && (0..PARTITIONS).all(|p| {
                let end = self
                    .cluster
                    .partition(INPUT, p)
                    .map_or(0, |x| x.log().high_watermark());
                end > 0 && g.committed(INPUT, p).is_some_and(|c| c.offset >= end)
            })
    }

    /// What a fresh read_committed reader sees of `topic`, by partition.
    fn read(&mut self, topic: &str) -> BTreeMap<i32, Vec<String>> {
        let r = self.add(Role::Reader);
        let now = self.now;
        if let Some(c) = &mut self.peers[r].client {
            c.consume_topics(now, [topic]);
        }
        for _ in 0..300 {
            self.step();
        }
        let read = std::mem::take(&mut self.peers[r].read);
        self.crash(r);
        read
    }

    /// The exactly-once check: per partition, the output is the input's
    /// transform, each record once, in order. `Err` names the first
    /// difference.
    fn check(&mut self) -> Result<(), String> {
        let input = self.read(INPUT);
        let output = self.read(OUTPUT);
        let seed = self.scenario.seed;
        for p in 0..PARTITIONS {
            let want: Vec<String> = input
                .get(&p)
                .map(|v| v.iter().map(|s| transform(s)).collect())
                .unwrap_or_default();
            let got = output.get(&p).cloned().unwrap_or_default();
            if want.is_empty() {
                return Err(format!("seed {seed}: partition {p} has no input"));
            }
            if got != want {
                let at = want.iter().zip(&got).position(|(a, b)| a != b);
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for v in &got {
                    *counts.entry(v).or_default() += 1;
                }
                let dups = counts.values().filter(|&&n| n > 1).count();
                return Err(format!(
                    "seed {seed}: partition {p}: output has {} records for {} inputs \
                     ({dups} duplicated), first difference at {at:?}: want {:?}, got {:?}",
                    got.len(),
                    want.len(),
                    at.and_then(|i| want.get(i)),
                    at.and_then(|i| got.get(i)),
                ));
            }
        }
        Ok(())
    }
}

/// Runs each test body under transactions v1 and v2: `mod name { v1, v2
/// }`, the body taking the cluster's `transaction.version` as `$tv`.
macro_rules! under_both_versions {
    ($($(#[$doc:meta])* fn $name:ident($tv:ident: i16) $body:block)*) => {$(
        $(#[$doc])*
        mod $name {
            use super::*;
            #[test]
            fn v1() {
                run_with(1);
            }
            #[test]
            fn v2() {
                run_with(2);
            }
            fn run_with($tv: i16) $body
        }
    )*};
}

fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
    match std::env::var("SANSA_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(s) => vec![s],
        None => default.collect(),
    }
}

fn run(scenario: Scenario) -> (Result<(), String>, Stats) {
    let seed = scenario.seed;
    let mut p = Pipeline::new(scenario);
    p.run();
    let r = p.check();
    eprintln!(
        "seed {seed}: {:?}, {} input records per partition",
        p.stats, p.fed
    );
    (r, p.stats)
}

under_both_versions! {
    fn a_calm_pipeline_with_a_member_joining_late_outputs_each_record_exactly_once(tv: i16) {
        for seed in seeds(1..4) {
            let (r, stats) = run(Scenario { transaction_version: tv, ..Scenario::calm(seed) });
            r.unwrap_or_else(|e| panic!("{e}; {stats:?}"));
            assert!(stats.commits > 0, "seed {seed}: {stats:?}");
        }
    }
}

under_both_versions! {
    fn member_crashes_rebalances_coordinator_moves_broker_restarts_and_txn_errors_keep_exactly_once(tv: i16) {
        let (mut aborts, mut faults) = (0, 0);
        let seeds = seeds(1..9);
        for &seed in &seeds {
            let (r, stats) = run(Scenario { transaction_version: tv, ..Scenario::faulty(seed) });
            r.unwrap_or_else(|e| panic!("{e}; {stats:?}"));
            assert!(
                stats.commits > 0,
                "seed {seed}: nothing committed: {stats:?}"
            );
            aborts += stats.aborts;
            faults += stats.faults;
        }
        // A seed may draw only harmless faults (a replayed one alone may);
        // over the default seeds they bite.
        if seeds.len() > 1 {
            assert!(aborts > 0 && faults > 0, "the faults never bit");
        }
    }
}

#[test]
fn eager_members_under_the_same_faults_keep_exactly_once() {
    let mut aborts = 0;
    let seeds = seeds(1..5);
    for &seed in &seeds {
        let (r, stats) = run(Scenario {
            eager: true,
            ..Scenario::faulty(seed)
        });
        r.unwrap_or_else(|e| panic!("{e}; {stats:?}"));
        assert!(
            stats.commits > 0,
            "seed {seed}: nothing committed: {stats:?}"
        );
        aborts += stats.aborts;
    }
    if seeds.len() > 1 {
        assert!(aborts > 0, "no eager rebalance or fault ever aborted");
    }
}

#[test]
fn the_checker_catches_a_member_that_commits_despite_a_revoke() {
    // A member joins mid-stream, once the others are steady: the
    // cooperative rebalance revokes a partition from a sabotaged member in
    // the middle of a transaction; it commits through the revoke, and its
    // output for the moved partition is produced again by the new owner.
    // (Crashes would not do: a restarted member is fresh and has nothing
    // revoked. A revoke after the end began would not either: the
    // offsets are pending, and the new owner's OffsetFetch waits for them,
    // KIP-447.)
    let mut caught = 0;
    let seeds = seeds(1..5);
    for &seed in &seeds {
        let scenario = Scenario {
            members: 2,
            sabotaged: 2,
            txn_len: Duration::from_millis(800),
            late_member_at: Some(Duration::from_millis(5_000 + 150 * seed)),
            feed_for: Duration::from_secs(10),
            ..Scenario::calm(seed)
        };
        let (r, _) = run(scenario.clone());
        if r.is_err() {
            caught += 1;
        }
        // The same scenario without the sabotage holds: what was caught
        // is the sabotage, not the bench.
        let (honest, stats) = run(Scenario {
            sabotaged: 0,
            ..scenario
        });
        honest.unwrap_or_else(|e| panic!("{e}; {stats:?}"));
    }
    eprintln!(
        "the checker caught the sabotage in {caught} of {} seeds",
        seeds.len()
    );
    assert!(
        caught > 0,
        "the checker never caught the sabotaged members over seeds {seeds:?}"
    );
}

under_both_versions! {
    /// franz-go #729: an abort must abort. Every transaction here is aborted
    /// by an injected error after its records reached the broker; what is
    /// aborted must never be visible, and is produced once more, later.
    fn aborted_transactions_stay_invisible_and_their_records_are_reprocessed_once(tv: i16) {
        for seed in seeds(1..4) {
            let mut p = Pipeline::new(Scenario {
                late_member_at: None,
                transaction_version: tv,
                ..Scenario::calm(seed)
            });
            for _ in 0..6 {
                p.cluster
                    .inject_txn_error(ApiKey::TxnOffsetCommit, ErrorCode::RebalanceInProgress);
            }
            p.run();
            let aborted = p.stats.aborts;
            p.check().unwrap_or_else(|e| panic!("{e}; {:?}", p.stats));
            assert!(aborted >= 1, "seed {seed}: nothing aborted: {:?}", p.stats);
        }
    }
}

under_both_versions! {
    /// franz-go #1052: the coordinator committed, but the EndTxn answer was
    /// lost with its connection. The end must not report an abort and rewind
    /// (which would produce the output twice): the retried EndTxn learns the
    /// commit, or the producer fails without rewinding.
    fn an_end_txn_answer_lost_after_the_commit_neither_rewinds_nor_duplicates(tv: i16) {
        for seed in seeds(1..4) {
            let mut p = Pipeline::new(Scenario {
                members: 1,
                late_member_at: None,
                feed_for: Duration::from_secs(4),
                transaction_version: tv,
                ..Scenario::calm(seed)
            });
            // Let the member join and commit once, then lose one answer.
            for _ in 0..200 {
                p.step();
            }
            p.lose_next_end_txn_answer = true;
            p.run();
            assert!(
                !p.lose_next_end_txn_answer,
                "seed {seed}: no EndTxn was sent"
            );
            // Nothing else could abort here: the lost answer did not turn
            // into an abort (nor a failed producer).
            assert_eq!(
                (p.stats.aborts, p.stats.restarts),
                (0, 0),
                "seed {seed}: {:?}, outcomes {:?}",
                p.stats,
                p.peers[1].outcomes
            );
            p.check().unwrap_or_else(|e| panic!("{e}; {:?}", p.stats));
        }
    }
}

/// semantics.md: the session heartbeats after its offsets went into the
/// transaction and before EndTxn, and a rebalance begun meanwhile turns
/// the commit into an abort. The coordinator answers heartbeats
/// REBALANCE_IN_PROGRESS a few times once the members are steady; the
/// check's heartbeat meets one, and the output stays exactly once.
#[test]
fn a_rebalance_seen_by_the_heartbeat_before_the_commit_aborts_it() {
    let mut seen = 0;
    for seed in seeds(1..4) {
        let mut p = Pipeline::new(Scenario {
            late_member_at: None,
            ..Scenario::calm(seed)
        });
        for _ in 0..300 {
            p.step();
        }
        for _ in 0..3 {
            p.cluster
                .inject_group_error(ApiKey::Heartbeat, ErrorCode::RebalanceInProgress);
        }
        p.run();
        p.check().unwrap_or_else(|e| panic!("{e}; {:?}", p.stats));
        seen += p
            .peers
            .iter()
            .flat_map(|peer| &peer.outcomes)
            .filter(|o| {
                o.error
                    == Some(sansa_core::txn::TxnError::GroupCheckFailed(
                        ErrorCode::RebalanceInProgress,
                    ))
            })
            .count();
    }
    assert!(
        seen > 0,
        "no commit was turned into an abort by its heartbeat"
    );
}

/// A member stalls with its transaction open past the transaction timeout
/// (its group session stays alive): the coordinator aborts the transaction
/// and bumps the epoch. Kafka keeps no last epoch after such a fence, so
/// the member's producer cannot re-initialize: its next produce is
/// answered INVALID_PRODUCER_EPOCH (abortable), its abort PRODUCER_FENCED
/// (or an AddPartitionsToTxn is), and the application restarts it. The
/// aborted output never shows and the input is processed again, once.
#[test]
fn a_session_transaction_timed_out_by_the_coordinator_is_fenced_and_the_restart_keeps_exactly_once()
{
    for seed in seeds(1..4) {
        let mut p = Pipeline::new(Scenario {
            late_member_at: None,
            txn_timeout: Some(Duration::from_secs(2)),
            ..Scenario::calm(seed)
        });
        // Fed as `run` feeds: one record per partition every 100 ms.
        let mut steps = 0;
        let mut step = |p: &mut Pipeline| {
            if steps % 10 == 0 {
                p.feed();
            }
            steps += 1;
            p.step();
        };
        for _ in 0..2_000 {
            if p.stats.commits >= 4 {
                break;
            }
            step(&mut p);
        }
        assert!(p.stats.commits >= 4, "seed {seed}: {:?}", p.stats);
        // The members stall: their transactions outlive the timeout.
        p.scenario.txn_len = Duration::from_secs(3);
        for _ in 0..1_000 {
            if p.stats.fenced > 0 {
                break;
            }
            step(&mut p);
        }
        assert!(
            p.stats.fenced > 0,
            "seed {seed}: no member was fenced: {:?}",
            p.stats
        );
        p.scenario.txn_len = Duration::from_millis(300);
        p.run();
        p.check().unwrap_or_else(|e| panic!("{e}; {:?}", p.stats));
        eprintln!("seed {seed}: {:?}", p.stats);
        assert!(p.stats.restarts > 0, "seed {seed}: {:?}", p.stats);
    }
}
