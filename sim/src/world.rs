//! The deterministic world: one seeded RNG, a virtual clock, a virtual
//! network of links between unmodified [`sansa_core::Client`] values and
//! the simulated brokers, faults, and the invariant checkers, all on one
//! thread.
//!
//! Everything that happens is an event in one queue ordered by
//! `(time, sequence)`: bytes arriving at a broker or a client, a
//! connection opening or closing, a fault, a workload step. Client timers
//! and the cluster's Fetch deadlines are read from their `poll_timeout`
//! rather than queued, so a stale timer never fires. [`World::step`] takes
//! the earliest thing due (queued events first, then the cluster, then
//! clients by index, at equal times), advances the clock to it, carries it
//! out, drains every output, and runs the checkers.
//!
//! The network: each (client, broker) link has a base delay drawn from the
//! seed, and every message on it adds a jitter drawn from the seed; each
//! direction of a connection stays in order (TCP), so a message never
//! overtakes the one before it. A reset (RST) loses everything in flight
//! both ways at once; a close by either side (FIN) arrives after the data
//! sent before it.
//!
//! Clients need not agree with the world about time: each has a
//! [`ClientClock`] (origin, drift, wall offset), and the world hands it
//! its own `now` and fires its deadlines when its own clock reaches them.
//! A client can also be stalled (not driven for a while: its connections
//! stay open and what arrives for it waits, as for a process stopped by
//! a long GC pause or SIGSTOP) or crashed (dropped without a goodbye: its
//! connections are reset, its unacknowledged records are nobody's
//! promise), and optionally restarted as a new client with the same
//! configuration.
//!
//! An application's client ([`crate::runtime`]) is a
//! [`Session`](sansa_core::session::Session) over its core client, driven
//! the same way: the world carries its bytes and fires its timers, the
//! session turns its events into the application's answers, and the
//! world's workload and checkers leave it alone.
//!
//! Each step mixes what happened into a trace hash (FNV-1a over event
//! kinds, ids, times and every byte on the wire): the same seed gives the
//! same hash, which is how determinism is tested.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use sansa_core::client::{Config, ConfigBuilder, ConnId, Event, Input, Output};
use sansa_core::producer::{ProduceError, ProduceId, Record};
use sansa_core::{Client, Timestamp};

pub use crate::clock::{ClientClock, WALL_CLOCK_ORIGIN_MS};
use crate::cluster::{
    Cluster, ClusterConfig, ClusterOutput, NodeId, ProduceFault, RandomGroupFaults,
    RandomProduceFaults, ServerConnId, OFFSETS_TOPIC,
};
use crate::invariants::consumer::LogBounds;
use crate::invariants::{make_value, Checker, Promise, Violation};
use crate::rng::SimRng;
use crate::runtime::driven::{Command, Driven};

mod eos_work;
mod txn_work;
pub use txn_work::{PlannedRecord, PlannedTxn, INJECTABLE_TXN_ERRORS};

/// How a client is known in the world.
pub type ClientIdx = usize;

/// The virtual network's delays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetConfig {
    /// Shortest base delay of a link (one way).
    pub min_delay: Duration,
    /// Longest base delay of a link (one way).
    pub max_delay: Duration,
    /// Largest extra delay of one message over its link's base.
    pub jitter: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            min_delay: Duration::from_micros(200),
            max_delay: Duration::from_millis(2),
            jitter: Duration::from_micros(500),
        }
    }
}

/// Rates of faults drawn from the seed while they are on.
#[derive(Debug, Clone, Default)]
pub struct FaultRates {
    /// Probability that bytes a client writes are lost with their
    /// connection (reset) before the broker reads them.
    pub reset_before_read: f64,
    /// Random connection resets a second (any open connection).
    pub resets_per_sec: f64,
    /// Broker crashes a second.
    pub crashes_per_sec: f64,
    /// How long a crashed broker stays down.
    pub downtime: (Duration, Duration),
    /// Partition leader moves a second.
    pub leader_moves_per_sec: f64,
    /// Retention events a second: a random partition's log start moves
    /// to its high watermark, and its producers are forgotten.
    pub retention_per_sec: f64,
    /// Group coordinator moves a second: a random `__consumer_offsets`
    /// partition's leader moves (the topic is created if missing).
    pub coordinator_moves_per_sec: f64,
    /// Client stalls a second: a random running client is not driven for
    /// a duration drawn from `stall`.
    pub stalls_per_sec: f64,
    /// How long a stalled client stays stalled.
    pub stall: (Duration, Duration),
    /// Client crashes a second: a random running client is dropped
    /// without a goodbye, and restarted after a duration drawn from
    /// `client_downtime` with probability `client_restart`.
    pub client_crashes_per_sec: f64,
    /// How long a crashed client stays down before its restart.
    pub client_downtime: (Duration, Duration),
    /// Probability that a crashed client is restarted.
    pub client_restart: f64,
    /// Faults the brokers draw for every produce.
    pub produce: RandomProduceFaults,
    /// Errors the group coordinators inject into group requests.
    pub group: RandomGroupFaults,
    /// Errors injected into transaction requests a second (each answers
    /// one request of its API, see [`INJECTABLE_TXN_ERRORS`]).
    pub txn_errors_per_sec: f64,
    /// Transaction coordinator moves a second: the leader of the
    /// `__transaction_state` partition of a random transactional
    /// producer's id moves.
    pub txn_coordinator_moves_per_sec: f64,
}

/// A fault, scheduled by a test or drawn from the seed.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Crash a broker (connections and in-flight requests lost, logs
    /// kept, leadership moved).
    Crash(NodeId),
    /// Restart a crashed broker.
    Restart(NodeId),
    /// Move a partition's leadership (epoch bumped): to a given replica,
    /// or the next live one.
    MoveLeader {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Where to, `None` for the next live replica.
        to: Option<NodeId>,
    },
    /// Reset every connection, or every connection to one broker.
    ResetConnections(Option<NodeId>),
    /// Retention: the partition's log start moves to its high watermark.
    Retention {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// Script the next produce of a partition.
    Produce {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// What it meets.
        fault: ProduceFault,
    },
    /// Move the leader of a `__consumer_offsets` partition (and with it
    /// the coordinator of every group placed there): the partition, or
    /// the one of a group.
    MoveCoordinator {
        /// The group whose coordinator moves.
        group: String,
    },
    /// Stop driving a client for a while: no timers, no inputs (they wait
    /// for it), no workload; its connections stay open.
    StallClient {
        /// Which client.
        client: ClientIdx,
        /// For how long.
        duration: Duration,
    },
    /// Drop a client without a goodbye: its connections are reset and
    /// its records without an outcome are abandoned. Restarted as a new
    /// client with the same configuration after `restart_after`, if any.
    CrashClient {
        /// Which client.
        client: ClientIdx,
        /// When to restart it.
        restart_after: Option<Duration>,
    },
    /// Start a crashed client again, as a new client with the same
    /// configuration (and clock).
    RestartClient(ClientIdx),
    /// Stop drawing faults and restart every crashed broker: from here on
    /// every record must reach an outcome.
    Heal,
}

/// A workload step, queued like any event.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Produce a checked workload record.
    Produce {
        /// Which client.
        client: ClientIdx,
        /// Topic.
        topic: String,
        /// Key, if any.
        key: Option<Bytes>,
        /// Padding bytes in the value.
        filler: usize,
    },
    /// Flush a client.
    Flush(ClientIdx),
    /// A group member subscribes to these topics (joining its group, or
    /// rejoining with a wider subscription).
    Subscribe {
        /// Which client.
        client: ClientIdx,
        /// The topics it adds.
        topics: Vec<String>,
    },
    /// A client closes: a group member commits and leaves its group.
    Close(ClientIdx),
    /// A turn of a transactional producer's loop (see
    /// [`World::add_txn_producer`]).
    TxnTurn(ClientIdx),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Random {
    Reset,
    Crash,
    LeaderMove,
    Retention,
    CoordinatorMove,
    Stall,
    ClientCrash,
    TxnError,
    TxnCoordinatorMove,
}

#[derive(Debug)]
enum Ev {
    /// A client's connection attempt reaches the broker.
    ConnectArrive(u64),
    /// Bytes reach the broker.
    ToBroker(u64, Bytes),
    /// The client's close reaches the broker.
    FinToBroker(u64),
    /// Something reaches the client; `force` delivers it even on a dead
    /// connection (the notice of the reset itself).
    ToClient {
        net: u64,
        input: Input,
        force: bool,
    },
    Fault(Fault),
    Random(Random),
    Work(Work),
    /// A stalled client is driven again: what waited for it is delivered.
    Unstall(ClientIdx),
    /// A turn of an exactly-once member (not workload: it never ends).
    EosTurn(ClientIdx),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NetState {
    Connecting,
    Open,
    Dead,
}

#[derive(Debug)]
struct NetConn {
    client: ClientIdx,
    conn: ConnId,
    node: Option<NodeId>,
    server: Option<ServerConnId>,
    state: NetState,
    /// The client has not closed it (reports still go to it).
    client_open: bool,
    c2b_last: Timestamp,
    b2c_last: Timestamp,
}

/// Whether the world drives a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    Yes,
    /// Not driven until then.
    Stalled(Timestamp),
    /// Dropped.
    Crashed,
}

#[derive(Debug)]
struct SimClient {
    client: Driven,
    /// An application's client ([`crate::runtime`]): its session hands
    /// every event to the application, which judges it; the world's
    /// workload and checkers leave it alone.
    app: bool,
    /// Its configuration, to restart it after a crash.
    config: Config,
    clock: ClientClock,
    running: Running,
    /// Inputs and workload that arrived while it was stalled, in order.
    backlog: VecDeque<Ev>,
    /// Which client the checker knows this incarnation as (a restart is
    /// a new client to the checker; workload values name it).
    checker_id: usize,
    events: Vec<Event>,
    next_index: u64,
    /// The topics it consumes (from the earliest offset), if any; a
    /// restarted incarnation subscribes again.
    consumes: Vec<String>,
    /// `Event::FetchesReady` came: records wait to be polled.
    fetches_ready: bool,
    /// The consumer group it is a member of, if any.
    group: Option<String>,
    /// The topics it subscribed to as a group member; a restarted
    /// incarnation subscribes again.
    group_topics: Vec<String>,
    /// Commit everything polled after each poll, by hand.
    commit_after_poll: bool,
    /// The application closed it (a member left its group for good).
    closed: bool,
    /// Consecutive timeouts fed at the same instant.
    spins: u32,
    spin_at: Timestamp,
}

impl SimClient {
    fn runs(&self) -> bool {
        self.running == Running::Yes
    }
}

/// FNV-1a, 64 bits: a stable hash (std's hashers may change between
/// releases) over everything that happened.
#[derive(Debug, Clone)]
struct Trace {
    hash: u64,
    lines: Option<VecDeque<String>>,
    keep: usize,
}

impl Trace {
    fn mix(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn event(&mut self, now: Timestamp, tag: u8, a: u64, b: u64, data: &[u8]) {
        self.mix(&now.as_nanos().to_le_bytes());
        self.mix(&[tag]);
        self.mix(&a.to_le_bytes());
        self.mix(&b.to_le_bytes());
        self.mix(&(data.len() as u64).to_le_bytes());
        self.mix(data);
    }

    fn line(&mut self, now: Timestamp, text: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            if lines.len() == self.keep {
                lines.pop_front();
            }
            let t = now.as_nanos();
            lines.push_back(format!(
                "{:>6}.{:06} ms {}",
                t / 1_000_000,
                t % 1_000_000,
                text()
            ));
        }
    }
}

/// The simulated world.
#[derive(Debug)]
pub struct World {
    seed: u64,
    now: Timestamp,
    rng: SimRng,
    net_rng: SimRng,
    fault_rng: SimRng,
    queue: BTreeMap<(Timestamp, u64), Ev>,
    next_seq: u64,
    cluster: Cluster,
    clients: Vec<SimClient>,
    nets: BTreeMap<u64, NetConn>,
    next_net: u64,
    by_client: BTreeMap<(ClientIdx, ConnId), u64>,
    by_server: BTreeMap<ServerConnId, u64>,
    net: NetConfig,
    links: BTreeMap<(ClientIdx, NodeId), Duration>,
    faults: FaultRates,
    faults_on: bool,
    checker: Checker,
    trace: Trace,
    steps: u64,
    faults_applied: BTreeMap<&'static str, u64>,
    work_queued: usize,
    /// Sabotage: after each poll, group members commit offset 0 of what
    /// they polled, allowing backwards moves.
    commit_backwards: bool,
    /// Transactional producers' loops, by client.
    txn_producers: BTreeMap<ClientIdx, txn_work::TxnLoop>,
    /// Exactly-once pipeline members' loops, by client.
    eos_members: BTreeMap<ClientIdx, eos_work::EosLoop>,
}

impl World {
    /// A world with a cluster of `cluster`'s shape and no clients; every
    /// random choice descends from `seed`.
    pub fn new(seed: u64, cluster: ClusterConfig, net: NetConfig) -> Self {
        let mut rng = SimRng::new(seed);
        let cluster_rng = rng.fork();
        let net_rng = rng.fork();
        let fault_rng = rng.fork();
        World {
            seed,
            now: Timestamp::ZERO,
            rng,
            net_rng,
            fault_rng,
            queue: BTreeMap::new(),
            next_seq: 0,
            cluster: Cluster::new(cluster, cluster_rng),
            clients: Vec::new(),
            nets: BTreeMap::new(),
            next_net: 0,
            by_client: BTreeMap::new(),
            by_server: BTreeMap::new(),
            net,
            links: BTreeMap::new(),
            faults: FaultRates::default(),
            faults_on: false,
            checker: Checker::new(),
            trace: Trace {
                hash: 0xcbf2_9ce4_8422_2325,
                lines: None,
                keep: 0,
            },
            steps: 0,
            faults_applied: BTreeMap::new(),
            work_queued: 0,
            commit_backwards: false,
            txn_producers: BTreeMap::new(),
            eos_members: BTreeMap::new(),
        }
        .recording_commits()
    }

    fn recording_commits(mut self) -> Self {
        self.cluster.record_accepted_commits(true);
        self
    }

    /// Sabotage, for the checker tests: after each poll, every group
    /// member commits offset 0 of each partition it polled, with
    /// backwards moves allowed (an explicit reset the world otherwise
    /// never makes).
    pub fn sabotage_commit_backwards(&mut self) {
        self.commit_backwards = true;
    }

    /// Makes group member `c` commit everything it polled after each
    /// poll, by hand (besides any auto-commit).
    pub fn commit_after_poll(&mut self, c: ClientIdx, on: bool) {
        if let Some(sc) = self.clients.get_mut(c) {
            sc.commit_after_poll = on;
        }
    }

    /// Workload steps queued and not yet carried out.
    pub fn pending_work(&self) -> usize {
        self.work_queued
    }

    /// How many faults of each kind were applied (scripted and drawn).
    pub fn faults_applied(&self) -> &BTreeMap<&'static str, u64> {
        &self.faults_applied
    }

    fn count(&mut self, kind: &'static str) {
        *self.faults_applied.entry(kind).or_insert(0) += 1;
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Wall-clock milliseconds now, by the world's clock.
    pub fn wall_ms(&self) -> i64 {
        ClientClock::EXACT.wall_ms(self.now)
    }

    /// A client's own monotonic time now.
    fn local_now(&self, c: ClientIdx) -> Timestamp {
        self.clients
            .get(c)
            .map_or(self.now, |sc| sc.clock.local(self.now))
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The cluster, to change by hand (topics, faults).
    pub fn cluster_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }

    /// The world's RNG, for workloads that draw from the seed.
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// Keeps the last `n` steps as readable lines (for failure reports;
    /// off by default because formatting every step is slow).
    pub fn keep_trace_lines(&mut self, n: usize) {
        self.trace.keep = n;
        self.trace.lines = (n > 0).then(VecDeque::new);
        self.cluster.keep_journal(n > 0);
    }

    /// The kept trace lines, oldest first.
    pub fn trace_lines(&self) -> Vec<String> {
        self.trace
            .lines
            .as_ref()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The trace hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash
    }

    /// The invariant checker.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Every broken promise found so far.
    pub fn violations(&self) -> &[Violation] {
        self.checker.violations()
    }

    /// Adds a client built from `config` (seed brokers and seed filled in
    /// from the world) whose clocks agree with the world's; returns its
    /// index.
    pub fn add_client(&mut self, config: ConfigBuilder) -> Result<ClientIdx, String> {
        self.add_client_with_clock(config, ClientClock::EXACT)
    }

    /// [`World::add_client`] with clocks of its own.
    pub fn add_client_with_clock(
        &mut self,
        config: ConfigBuilder,
        clock: ClientClock,
    ) -> Result<ClientIdx, String> {
        self.add(config, clock, false)
    }

    /// Adds an application's client (see [`crate::runtime`]): a session
    /// the application's async calls reach through
    /// [`World::app_command`]. Not a crashed client's restart: the
    /// application starts a new one.
    pub(crate) fn add_app_client(
        &mut self,
        config: ConfigBuilder,
        clock: ClientClock,
    ) -> Result<ClientIdx, String> {
        self.add(config, clock, true)
    }

    fn add(
        &mut self,
        config: ConfigBuilder,
        clock: ClientClock,
        app: bool,
    ) -> Result<ClientIdx, String> {
        let seeds: Vec<String> = self
            .cluster
            .config()
            .brokers
            .iter()
            .map(|b| b.address())
            .collect();
        let config = config
            .seed_brokers(seeds)
            .seed(self.rng.next_u64())
            .build()
            .map_err(|e| e.to_string())?;
        let promise = Promise::of(&config);
        let client = Client::new(config.clone()).map_err(|e| e.to_string())?;
        let checker_id = self.checker.add_client(promise);
        let group = config
            .group
            .as_ref()
            .filter(|_| !app)
            .map(|g| g.group_id.clone());
        if let Some(g) = &group {
            self.checker.add_group_member(checker_id, g);
        }
        self.clients.push(SimClient {
            client: if app {
                Driven::session(client)
            } else {
                Driven::Core(Box::new(client))
            },
            app,
            config,
            clock,
            running: Running::Yes,
            backlog: VecDeque::new(),
            checker_id,
            events: Vec::new(),
            next_index: 0,
            consumes: Vec::new(),
            fetches_ready: false,
            group,
            group_topics: Vec::new(),
            commit_after_poll: false,
            closed: false,
            spins: 0,
            spin_at: Timestamp::ZERO,
        });
        Ok(self.clients.len() - 1)
    }

    /// Whether client `c` is done: crashed, or idle with every workload
    /// record of its current incarnation given an outcome.
    pub fn client_settled(&self, c: ClientIdx) -> bool {
        self.clients.get(c).is_none_or(|sc| {
            sc.running == Running::Crashed
                || sc.app
                || sc.group.as_ref().is_some_and(|g| {
                    // Each live member waits for its own topics: together
                    // they cover what the group must process.
                    sc.client.is_idle()
                        && self.eos_settled(c)
                        && (!self.group_member_live(c)
                            || self
                                .checker
                                .group_caught_up(&self.cluster, g, &sc.group_topics))
                })
                || (sc.group.is_none()
                    && sc.client.is_idle()
                    && self.checker.outstanding(sc.checker_id) == 0
                    && (sc.consumes.is_empty()
                        || self
                            .checker
                            .consumer_lag(&self.cluster, sc.checker_id, &sc.consumes)
                            .is_empty()))
        })
    }

    /// Whether group member `c` is live as the application sees it: not
    /// crashed, not closed, its member not done (left or fatally
    /// stopped), and subscribed.
    pub fn group_member_live(&self, c: ClientIdx) -> bool {
        self.clients.get(c).is_some_and(|sc| {
            sc.group.is_some()
                && sc.running != Running::Crashed
                && !sc.closed
                && !sc.group_topics.is_empty()
                && sc.client.group_member().is_some_and(|m| !m.is_done())
        })
    }

    /// The topics the live members of `group` subscribe to: what the
    /// group must process.
    pub fn live_group_topics(&self, group: &str) -> Vec<String> {
        let mut topics: Vec<String> = (0..self.clients.len())
            .filter(|&c| self.clients[c].group.as_deref() == Some(group))
            .filter(|&c| self.group_member_live(c))
            .flat_map(|c| self.clients[c].group_topics.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// Whether client `c` is crashed (and not restarted).
    pub fn client_crashed(&self, c: ClientIdx) -> bool {
        self.clients
            .get(c)
            .is_some_and(|sc| sc.running == Running::Crashed)
    }

    /// Whether client `c` is stalled.
    pub fn client_stalled(&self, c: ClientIdx) -> bool {
        self.clients
            .get(c)
            .is_some_and(|sc| matches!(sc.running, Running::Stalled(_)))
    }

    /// A client (for a crashed one, the state it crashed in).
    pub fn client(&self, c: ClientIdx) -> Option<&Client> {
        self.clients.get(c).map(|s| &*s.client)
    }

    /// How many clients there are.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The events a client reported, in order.
    pub fn events(&self, c: ClientIdx) -> &[Event] {
        self.clients.get(c).map_or(&[], |s| &s.events)
    }

    /// Produces a checked workload record now: its value says which client
    /// and which of its records it is.
    pub fn produce(
        &mut self,
        c: ClientIdx,
        topic: &str,
        key: Option<Bytes>,
        filler: usize,
    ) -> Result<ProduceId, ProduceError> {
        let Some(sc) = self.clients.get_mut(c) else {
            return Err(ProduceError::Closed);
        };
        if sc.running == Running::Crashed {
            return Err(ProduceError::Closed);
        }
        let now = sc.clock.local(self.now);
        let wall = sc.clock.wall_ms(self.now);
        let checker_id = sc.checker_id;
        let value = make_value(checker_id, sc.next_index, filler);
        sc.next_index += 1;
        let mut record = Record::new(topic, value.clone());
        record.key = key.clone();
        let id = sc.client.produce(now, record, wall)?;
        let now = self.now;
        self.checker.on_produce(checker_id, id, topic, key, value);
        self.trace.event(now, b'P', c as u64, id.0, &[]);
        self.drain();
        Ok(id)
    }

    /// Flushes a client now; returns the flush id.
    pub fn flush(&mut self, c: ClientIdx) -> Option<u64> {
        let now = self.local_now(c);
        let sc = self.clients.get_mut(c)?;
        if sc.running == Running::Crashed {
            return None;
        }
        let id = sc.client.flush(now);
        self.drain();
        Some(id)
    }

    /// Makes client `c` consume `topics` from the earliest offset; every
    /// record it is handed is checked (see
    /// [`invariants::consumer`](crate::invariants::consumer)), and it
    /// counts as settled only once it caught up with every partition.
    pub fn consume(&mut self, c: ClientIdx, topics: &[String]) {
        let now = self.local_now(c);
        let Some(sc) = self.clients.get_mut(c) else {
            return;
        };
        let list = if sc.group.is_some() {
            &mut sc.group_topics
        } else {
            &mut sc.consumes
        };
        list.extend(topics.iter().cloned());
        list.sort();
        list.dedup();
        if sc.running != Running::Crashed && !sc.closed {
            sc.client.consume_topics(now, topics.iter().cloned());
            self.drain();
        }
    }

    /// Hands client `c` what it has fetched, and the checker what it was
    /// handed. Returns whether there was anything.
    fn take_fetches(&mut self, c: ClientIdx) -> bool {
        if self.eos_members.contains_key(&c) {
            return self.eos_take_fetches(c);
        }
        let now = self.local_now(c);
        let Some(sc) = self.clients.get_mut(c) else {
            return false;
        };
        if !std::mem::take(&mut sc.fetches_ready) {
            return false;
        }
        let checker_id = sc.checker_id;
        let in_group = sc.group.is_some();
        let commit_after_poll = sc.commit_after_poll;
        let fetched = sc.client.poll_fetches(now, None);
        if in_group {
            self.process_group_records(c, checker_id, &fetched);
            if commit_after_poll && !fetched.is_empty() {
                if let Some(sc) = self.clients.get_mut(c) {
                    let _ = sc.client.commit_uncommitted_offsets(now);
                }
            }
            return true;
        }
        for f in &fetched {
            let (log_start, last_stable) = self
                .cluster
                .partition(&f.topic, f.partition)
                .map_or((0, 0), |p| {
                    (p.log().log_start_offset(), p.log().last_stable_offset())
                });
            if let Some(e) = &f.error {
                self.trace.line(self.now, || {
                    format!("c{c} fetch error {}/{}: {e}", f.topic, f.partition)
                });
            }
            if let (Some(first), Some(last)) = (f.records.first(), f.records.last()) {
                self.trace.line(self.now, || {
                    format!(
                        "c{c} consumed {}/{} {}..={}",
                        f.topic, f.partition, first.offset, last.offset
                    )
                });
            }
            for r in &f.records {
                self.trace.event(
                    self.now,
                    b'F',
                    c as u64,
                    r.offset as u64,
                    f.topic.as_bytes(),
                );
                self.checker.on_consumed(
                    checker_id,
                    &f.topic,
                    f.partition,
                    r.offset,
                    r.value.clone(),
                    LogBounds {
                        log_start,
                        last_stable,
                    },
                );
            }
        }
        true
    }

    /// A group member "processes" what it polled: the checker learns which
    /// incarnation processed which record.
    fn process_group_records(
        &mut self,
        c: ClientIdx,
        checker_id: usize,
        fetched: &[sansa_core::consumer::FetchedPartition],
    ) {
        let mut backwards = BTreeMap::new();
        for f in fetched {
            if let (Some(first), Some(last)) = (f.records.first(), f.records.last()) {
                self.trace.line(self.now, || {
                    format!(
                        "c{c} processed {}/{} {}..={}",
                        f.topic, f.partition, first.offset, last.offset
                    )
                });
                backwards.insert(
                    (f.topic.to_string(), f.partition),
                    sansa_core::group::EpochOffset {
                        offset: 0,
                        leader_epoch: -1,
                    },
                );
            }
            for r in &f.records {
                self.trace.event(
                    self.now,
                    b'G',
                    c as u64,
                    r.offset as u64,
                    f.topic.as_bytes(),
                );
                self.checker
                    .on_processed(checker_id, &f.topic, f.partition, r.offset);
            }
        }
        if self.commit_backwards && !backwards.is_empty() {
            let now = self.local_now(c);
            if let Some(sc) = self.clients.get_mut(c) {
                let _ = sc.client.commit_offsets(now, backwards, true);
            }
        }
    }

    /// Tells the checker the member id and generation of group member `c`
    /// now.
    fn note_group_member(&mut self, c: ClientIdx) {
        let Some(sc) = self.clients.get(c) else {
            return;
        };
        if sc.running == Running::Crashed {
            return;
        }
        if let Some(m) = sc.client.group_member() {
            self.checker
                .note_group_member(sc.checker_id, m.member_id(), m.generation());
        }
    }

    /// Queues a fault `after` from now.
    pub fn schedule(&mut self, after: Duration, fault: Fault) {
        let at = self.now + after;
        self.push(at, Ev::Fault(fault));
    }

    /// Queues a workload step `after` from now.
    pub fn schedule_work(&mut self, after: Duration, work: Work) {
        let at = self.now + after;
        self.work_queued += 1;
        self.push(at, Ev::Work(work));
    }

    /// Applies a fault now, as [`World::schedule`] with no delay would at
    /// the next step, but before anything else happens.
    pub fn apply(&mut self, fault: Fault) {
        self.apply_fault(fault);
        self.drain();
    }

    /// Feeds application client `c` a command at the world's present (a
    /// produce is stamped with the client's wall clock now) and carries
    /// out what follows. A command for a crashed, stalled or finished
    /// client is handed back.
    pub(crate) fn app_command(
        &mut self,
        c: ClientIdx,
        mut cmd: Command,
    ) -> Result<(), Box<Command>> {
        let Some(sc) = self.clients.get_mut(c) else {
            return Err(Box::new(cmd));
        };
        if !sc.app || !sc.runs() {
            return Err(Box::new(cmd));
        }
        let now = sc.clock.local(self.now);
        if let Command::Produce(p) = &mut cmd {
            p.wall_ms = sc.clock.wall_ms(self.now);
        }
        if !sc.client.command(now, cmd) {
            // A finished session: the command was dropped with it, which
            // answers its caller (closed).
            return Ok(());
        }
        self.trace.event(self.now, b'U', c as u64, 0, &[]);
        self.drain();
        Ok(())
    }

    /// Whether application client `c`'s session is done and waits to be
    /// finished.
    pub(crate) fn app_session_done(&self, c: ClientIdx) -> bool {
        self.clients
            .get(c)
            .is_some_and(|sc| sc.client.session_done())
    }

    /// Ends application client `c`'s session once its core closed (after
    /// a close or an abort); returns whether it did.
    pub(crate) fn finish_app_if_done(&mut self, c: ClientIdx) -> bool {
        let now = self.local_now(c);
        match self.clients.get_mut(c) {
            Some(sc) if sc.client.session_done() => {
                sc.client.finish(now, false);
                true
            }
            _ => false,
        }
    }

    /// Turns random faults on at these rates (the produce faults go to the
    /// brokers).
    pub fn set_fault_rates(&mut self, rates: FaultRates) {
        self.cluster
            .set_random_produce_faults(rates.produce.clone());
        self.cluster.set_random_group_faults(rates.group.clone());
        self.faults = rates;
        self.faults_on = true;
        if self.faults.coordinator_moves_per_sec > 0.0 {
            self.cluster.ensure_offsets_topic();
        }
        for kind in [
            Random::Reset,
            Random::Crash,
            Random::LeaderMove,
            Random::Retention,
            Random::CoordinatorMove,
            Random::Stall,
            Random::ClientCrash,
            Random::TxnError,
            Random::TxnCoordinatorMove,
        ] {
            self.schedule_random(kind);
        }
    }

    fn rate(&self, kind: Random) -> f64 {
        match kind {
            Random::Reset => self.faults.resets_per_sec,
            Random::Crash => self.faults.crashes_per_sec,
            Random::LeaderMove => self.faults.leader_moves_per_sec,
            Random::Retention => self.faults.retention_per_sec,
            Random::CoordinatorMove => self.faults.coordinator_moves_per_sec,
            Random::Stall => self.faults.stalls_per_sec,
            Random::ClientCrash => self.faults.client_crashes_per_sec,
            Random::TxnError => self.faults.txn_errors_per_sec,
            Random::TxnCoordinatorMove => self.faults.txn_coordinator_moves_per_sec,
        }
    }

    fn schedule_random(&mut self, kind: Random) {
        if !self.faults_on {
            return;
        }
        if let Some(d) = self.fault_rng.exponential(self.rate(kind)) {
            let at = self.now + d;
            self.push(at, Ev::Random(kind));
        }
    }

    fn push(&mut self, at: Timestamp, ev: Ev) {
        let at = at.max(self.now);
        self.queue.insert((at, self.next_seq), ev);
        self.next_seq += 1;
    }

    // ------------------------------------------------------------------
    // Running
    // ------------------------------------------------------------------

    /// Takes one step: the earliest due event, timer or deadline. Returns
    /// false when nothing at all is left to happen.
    pub fn step(&mut self) -> bool {
        self.drain();
        let queued = self.queue.first_key_value().map(|(&(t, _), _)| t);
        let cluster = self.cluster.poll_timeout();
        let client = self.next_client_deadline();
        let mut best: Option<(Timestamp, u8)> = None;
        for (t, rank) in [
            (queued, 0u8),
            (cluster.map(|t| t.max(self.now)), 1),
            (client.map(|(t, _)| t), 2),
        ] {
            if let Some(t) = t {
                if best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, rank));
                }
            }
        }
        let Some((t, rank)) = best else {
            return false;
        };
        self.steps += 1;
        self.now = self.now.max(t);
        match rank {
            0 => {
                if let Some(((_, _), ev)) = self.queue.pop_first() {
                    self.handle(ev);
                }
            }
            1 => {
                self.trace.event(self.now, b'T', u64::MAX, 0, &[]);
                self.cluster.handle_timeout(self.now);
            }
            _ => {
                if let Some((_, i)) = client {
                    self.client_timeout(i);
                }
            }
        }
        self.drain();
        if self.trace.lines.is_some() {
            for l in self.cluster.take_journal() {
                self.trace.line(self.now, || l);
            }
        }
        for c in 0..self.clients.len() {
            if self.clients[c].group.is_some() {
                self.note_group_member(c);
            }
        }
        let mut commits = self.cluster.take_accepted_commits();
        // A group of applications' clients only is the application's to
        // judge: the checker never hears of their partitions.
        commits.retain(|cm| {
            self.clients
                .iter()
                .any(|sc| sc.group.as_deref() == Some(cm.group.as_str()))
        });
        if !commits.is_empty() {
            for cm in &commits {
                self.trace.line(self.now, || {
                    format!(
                        "commit accepted: {} member {} gen {} {}/{} at {}",
                        cm.group,
                        cm.member_id,
                        cm.group_generation,
                        cm.topic,
                        cm.partition,
                        cm.offset
                    )
                });
            }
            self.checker.on_accepted_commits(commits);
        }
        self.checker.check(&self.cluster);
        let stats = self.cluster.stats();
        if stats.encode_failures > 0 || stats.bad_requests > 0 {
            let detail = format!(
                "{} responses failed to encode, {} requests refused",
                stats.encode_failures, stats.bad_requests
            );
            self.checker.report(Violation::Cluster { detail });
        }
        true
    }

    /// The earliest deadline of a running client, in world time, and
    /// whose it is.
    fn next_client_deadline(&self) -> Option<(Timestamp, ClientIdx)> {
        self.clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.runs())
            .filter_map(|(i, c)| {
                c.client
                    .poll_timeout()
                    .map(|t| (c.clock.world_at(t).max(self.now), i))
            })
            .min()
    }

    fn client_timeout(&mut self, i: ClientIdx) {
        let now = self.now;
        let Some(sc) = self.clients.get_mut(i) else {
            return;
        };
        let local = sc.clock.local(now);
        if sc.spin_at == now {
            sc.spins += 1;
        } else {
            sc.spin_at = now;
            sc.spins = 0;
        }
        if sc.spins > 10_000 {
            self.checker.report(Violation::ClientSpins { client: i });
            return;
        }
        self.trace.event(now, b'T', i as u64, 0, &[]);
        sc.client.handle_input(local, Input::Timeout);
    }

    /// Runs until `done` holds, nothing is left, or virtual time passes
    /// `deadline`; returns whether `done` held. Stops early on a client
    /// that spins.
    pub fn run_until(&mut self, deadline: Timestamp, mut done: impl FnMut(&World) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self
                .violations()
                .iter()
                .any(|v| matches!(v, Violation::ClientSpins { .. }))
            {
                return false;
            }
            let next = self.next_due();
            if next.is_none_or(|t| t > deadline) {
                self.now = self.now.max(deadline);
                return done(self);
            }
            if !self.step() {
                return done(self);
            }
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end, |_| false);
    }

    /// Runs until every client has nothing buffered or in flight, or
    /// `limit` of virtual time passes; returns whether all are idle.
    pub fn run_until_idle(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        self.run_until(end, |w| {
            w.clients
                .iter()
                .all(|c| c.running == Running::Crashed || c.client.is_idle())
        })
    }

    /// When the next thing is due (an event, a broker deadline, a
    /// client's timer), if anything is left to happen.
    pub fn next_due(&self) -> Option<Timestamp> {
        let q = self.queue.first_key_value().map(|(&(t, _), _)| t);
        let c = self.cluster.poll_timeout();
        let cl = self.next_client_deadline().map(|(t, _)| t);
        [q, c, cl]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.max(self.now))
    }

    /// Checks liveness: every workload record has an outcome. Call after
    /// healing and running long enough.
    pub fn check_outcomes(&mut self) {
        for v in self.checker.unmarked_committed_txns() {
            self.checker.report(v);
        }
        for v in self.eos_missing() {
            self.checker.report(v);
        }
        for c in 0..self.clients.len() {
            if self.clients[c].running == Running::Crashed || self.clients[c].app {
                continue;
            }
            let outstanding = self.checker.outstanding(self.clients[c].checker_id);
            let idle = self.clients[c].client.is_idle();
            if outstanding > 0 || !idle {
                let detail = format!(
                    "{} records buffered in the client, {} workload records without an outcome",
                    self.clients[c].client.buffered_records(),
                    outstanding
                );
                self.checker.report(Violation::Stuck {
                    client: c,
                    outstanding,
                    detail,
                });
            }
            let sc = &self.clients[c];
            if let Some(g) = &sc.group {
                // Each live group once: at its first live member.
                let first = (0..self.clients.len()).find(|&i| {
                    self.clients[i].group.as_ref() == Some(g) && self.group_member_live(i)
                });
                if first == Some(c) {
                    let topics = self.live_group_topics(g);
                    for v in self.checker.group_unprocessed(&self.cluster, g, &topics) {
                        self.checker.report(v);
                    }
                }
            }
            let sc = &self.clients[c];
            if !sc.consumes.is_empty() {
                for v in self
                    .checker
                    .consumer_lag(&self.cluster, sc.checker_id, &sc.consumes)
                {
                    self.checker.report(v);
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::ConnectArrive(net) => self.connect_arrive(net),
            Ev::ToBroker(net, data) => {
                let Some(n) = self.nets.get(&net) else {
                    return;
                };
                let (Some(server), NetState::Open) = (n.server, n.state) else {
                    return;
                };
                self.trace.event(now, b'B', net, server.0, &data);
                self.trace
                    .line(now, || format!("net{net} -> broker: {} bytes", data.len()));
                self.cluster.handle_bytes(now, server, &data);
            }
            Ev::FinToBroker(net) => {
                if let Some(n) = self.nets.remove(&net) {
                    self.trace.event(now, b'F', net, 0, &[]);
                    if let Some(s) = n.server {
                        self.by_server.remove(&s);
                        self.cluster.disconnect(s);
                    }
                }
            }
            Ev::ToClient { net, input, force } => {
                let client = self.nets.get(&net).map(|n| n.client);
                if let Some(sc) = client.and_then(|c| self.clients.get_mut(c)) {
                    if let Running::Stalled(_) = sc.running {
                        sc.backlog.push_back(Ev::ToClient { net, input, force });
                        return;
                    }
                }
                self.deliver_to_client(net, input, force)
            }
            Ev::Unstall(c) => self.unstall(c),
            Ev::EosTurn(c) => self.eos_turn(c),
            Ev::Fault(f) => self.apply_fault(f),
            Ev::Random(kind) => {
                if self.faults_on {
                    self.random_fault(kind);
                    self.schedule_random(kind);
                }
            }
            Ev::Work(w) => {
                let client = match &w {
                    Work::Produce { client, .. }
                    | Work::Flush(client)
                    | Work::Subscribe { client, .. }
                    | Work::Close(client)
                    | Work::TxnTurn(client) => *client,
                };
                if let Some(sc) = self.clients.get_mut(client) {
                    if let Running::Stalled(_) = sc.running {
                        // The application is stalled too: it produces when
                        // it runs again.
                        sc.backlog.push_back(Ev::Work(w));
                        return;
                    }
                }
                self.work_queued = self.work_queued.saturating_sub(1);
                self.work(w);
            }
        }
    }

    fn work(&mut self, w: Work) {
        match w {
            Work::Produce {
                client,
                topic,
                key,
                filler,
            } => {
                // A produce refused outright (closed client) is not a
                // promise; it is simply not checked.
                let _ = self.produce(client, &topic, key, filler);
            }
            Work::Flush(c) => {
                self.trace.event(self.now, b'L', c as u64, 0, &[]);
                let _ = self.flush(c);
            }
            Work::Subscribe { client, topics } => {
                self.trace.event(self.now, b'J', client as u64, 0, &[]);
                self.trace
                    .line(self.now, || format!("c{client} subscribes to {topics:?}"));
                self.consume(client, &topics);
            }
            Work::Close(c) => {
                self.trace.event(self.now, b'O', c as u64, 0, &[]);
                self.trace.line(self.now, || format!("c{c} closes"));
                let now = self.local_now(c);
                if let Some(sc) = self.clients.get_mut(c) {
                    if sc.running != Running::Crashed && !sc.closed {
                        sc.closed = true;
                        sc.client.close(now);
                    }
                }
                self.drain();
            }
            Work::TxnTurn(c) => self.txn_turn(c),
        }
    }

    fn link_delay(&mut self, client: ClientIdx, node: NodeId) -> Duration {
        let (lo, hi) = (self.net.min_delay, self.net.max_delay);
        let rng = &mut self.net_rng;
        *self
            .links
            .entry((client, node))
            .or_insert_with(|| rng.duration(lo, hi))
    }

    /// When a message sent now on `net` arrives, in order behind the ones
    /// before it.
    fn deliver_at(&mut self, net: u64, to_broker: bool) -> Timestamp {
        let Some(n) = self.nets.get(&net) else {
            return self.now;
        };
        let (client, node) = (n.client, n.node.unwrap_or(0));
        let base = self.link_delay(client, node);
        let jitter = self.net_rng.duration(Duration::ZERO, self.net.jitter);
        let mut at = self.now + base + jitter;
        let Some(n) = self.nets.get_mut(&net) else {
            return at;
        };
        let last = if to_broker {
            &mut n.c2b_last
        } else {
            &mut n.b2c_last
        };
        at = at.max(*last);
        *last = at;
        at
    }

    fn connect_arrive(&mut self, net: u64) {
        let Some(n) = self.nets.get(&net) else {
            return;
        };
        if n.state != NetState::Connecting {
            return;
        }
        let (conn, node) = (n.conn, n.node);
        let server = node.and_then(|node| self.cluster.accept(node));
        self.trace
            .event(self.now, b'A', net, server.map_or(u64::MAX, |s| s.0), &[]);
        let input = match server {
            Some(s) => {
                self.by_server.insert(s, net);
                if let Some(n) = self.nets.get_mut(&net) {
                    n.server = Some(s);
                    n.state = NetState::Open;
                }
                Input::Connected(conn)
            }
            None => {
                if let Some(n) = self.nets.get_mut(&net) {
                    n.state = NetState::Dead;
                }
                Input::ConnectFailed(conn, "connection refused".into())
            }
        };
        let at = self.deliver_at(net, false);
        self.push(
            at,
            Ev::ToClient {
                net,
                input,
                force: true,
            },
        );
    }

    fn deliver_to_client(&mut self, net: u64, input: Input, force: bool) {
        let Some(n) = self.nets.get(&net) else {
            return;
        };
        if !n.client_open || (n.state == NetState::Dead && !force) {
            return;
        }
        let (c, conn) = (n.client, n.conn);
        let ends = matches!(input, Input::Closed(..) | Input::ConnectFailed(..));
        let (tag, data): (u8, &[u8]) = match &input {
            Input::Connected(_) => (b'c', &[]),
            Input::ConnectFailed(_, _) => (b'f', &[]),
            Input::Received(_, d) => (b'r', d),
            Input::Closed(_, _) => (b'x', &[]),
            _ => (b'?', &[]),
        };
        self.trace.event(self.now, tag, c as u64, conn.0, data);
        self.trace.line(self.now, || match &input {
            Input::Received(_, d) => format!("c{c} {conn} <- {} bytes", d.len()),
            other => format!("c{c} {conn} <- {other:?}"),
        });
        if ends {
            self.by_client.remove(&(c, conn));
            if let Some(n) = self.nets.get_mut(&net) {
                n.client_open = false;
                n.state = NetState::Dead;
                if n.server.is_none() {
                    self.nets.remove(&net);
                }
            }
        }
        if let Some(sc) = self.clients.get_mut(c) {
            if sc.runs() {
                let now = sc.clock.local(self.now);
                sc.client.handle_input(now, input);
            }
        }
    }

    /// Tears a connection down at once (RST): everything in flight is
    /// lost both ways, the broker forgets it now, and the client hears
    /// after the link's delay.
    fn reset(&mut self, net: u64, why: &str) {
        let Some(n) = self.nets.get_mut(&net) else {
            return;
        };
        if n.state == NetState::Dead {
            return;
        }
        n.state = NetState::Dead;
        let (c, conn, server) = (n.client, n.conn, n.server.take());
        self.count("connection reset");
        if let Some(s) = server {
            self.by_server.remove(&s);
            self.cluster.disconnect(s);
        }
        self.trace.event(self.now, b'R', c as u64, conn.0, &[]);
        self.trace
            .line(self.now, || format!("c{c} {conn} reset: {why}"));
        let at = self.deliver_at(net, false);
        self.push(
            at,
            Ev::ToClient {
                net,
                input: Input::Closed(conn, why.to_owned()),
                force: true,
            },
        );
    }

    /// Carries out every output of every client and of the cluster.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            for c in 0..self.clients.len() {
                if !self.clients[c].runs() {
                    continue;
                }
                let now = self.clients[c].clock.local(self.now);
                while let Some(o) = self.clients[c].client.poll_output(now) {
                    self.client_output(c, o);
                    progressed = true;
                }
                progressed |= self.take_fetches(c);
            }
            while let Some(o) = self.cluster.poll_output() {
                self.cluster_output(o);
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    fn client_output(&mut self, c: ClientIdx, o: Output) {
        let now = self.now;
        match o {
            Output::Connect { conn, addr } => {
                let net = self.next_net;
                self.next_net += 1;
                let node = self.cluster.resolve(&addr);
                self.trace
                    .event(now, b'C', c as u64, conn.0, addr.as_bytes());
                self.trace
                    .line(now, || format!("c{c} {conn} connect {addr}"));
                self.nets.insert(
                    net,
                    NetConn {
                        client: c,
                        conn,
                        node,
                        server: None,
                        state: NetState::Connecting,
                        client_open: true,
                        c2b_last: now,
                        b2c_last: now,
                    },
                );
                self.by_client.insert((c, conn), net);
                if node.is_some() {
                    let at = self.deliver_at(net, true);
                    self.push(at, Ev::ConnectArrive(net));
                } else {
                    if let Some(n) = self.nets.get_mut(&net) {
                        n.state = NetState::Dead;
                    }
                    let at = self.deliver_at(net, false);
                    self.push(
                        at,
                        Ev::ToClient {
                            net,
                            input: Input::ConnectFailed(conn, format!("unknown host {addr}")),
                            force: true,
                        },
                    );
                }
            }
            Output::Transmit { conn, data } => {
                let Some(&net) = self.by_client.get(&(c, conn)) else {
                    return;
                };
                self.trace.event(now, b'W', c as u64, conn.0, &data);
                self.trace
                    .line(now, || format!("c{c} {conn} -> {} bytes", data.len()));
                if self.faults_on && self.fault_rng.chance(self.faults.reset_before_read) {
                    self.reset(net, "injected: reset before the broker read the request");
                    return;
                }
                let at = self.deliver_at(net, true);
                self.push(at, Ev::ToBroker(net, data));
            }
            Output::Close(conn) => {
                let Some(net) = self.by_client.remove(&(c, conn)) else {
                    return;
                };
                self.trace.event(now, b'X', c as u64, conn.0, &[]);
                self.trace.line(now, || format!("c{c} {conn} close"));
                let Some(n) = self.nets.get_mut(&net) else {
                    return;
                };
                n.client_open = false;
                if n.server.is_some() && n.state == NetState::Open {
                    let at = self.deliver_at(net, true);
                    self.push(at, Ev::FinToBroker(net));
                } else {
                    // Nothing at the broker (yet): a connect still in flight
                    // finds the connection gone.
                    n.state = NetState::Dead;
                    if n.server.is_none() {
                        self.nets.remove(&net);
                    }
                }
            }
            Output::Event(e) => {
                let checker_id = self.clients.get(c).map_or(c, |sc| sc.checker_id);
                match &e {
                    Event::Delivered { id, meta } => {
                        self.trace.event(now, b'D', c as u64, id.0, &[]);
                        self.trace.line(now, || {
                            format!(
                                "c{c} delivered {id:?} at {}/{}@{}",
                                meta.topic, meta.partition, meta.offset
                            )
                        });
                        self.checker.on_delivered(checker_id, *id, meta);
                    }
                    Event::ProduceFailed { id, error, .. } => {
                        self.trace.event(now, b'E', c as u64, id.0, &[]);
                        self.trace
                            .line(now, || format!("c{c} failed {id:?}: {error}"));
                        self.checker.on_failed(checker_id, *id);
                    }
                    other => {
                        self.trace.event(now, b'V', c as u64, 0, &[]);
                        self.trace.line(now, || format!("c{c} event {other:?}"));
                        self.group_event(c, checker_id, other);
                        if let Event::TransactionEnded(o) = other {
                            self.checker
                                .on_txn_ended(checker_id, o.committed, o.commit_in_doubt);
                        }
                    }
                }
                if let Some(sc) = self.clients.get_mut(c) {
                    if matches!(e, Event::FetchesReady) {
                        sc.fetches_ready = true;
                    } else {
                        sc.events.push(e);
                    }
                }
            }
            other => {
                self.trace
                    .line(now, || format!("c{c} unknown output {other:?}"));
            }
        }
    }

    /// What a group member reported about its partitions, for the
    /// checker.
    fn group_event(&mut self, c: ClientIdx, checker_id: usize, e: &Event) {
        if !matches!(
            e,
            Event::PartitionsAssigned(_)
                | Event::PartitionsRevoked(_)
                | Event::PartitionsLost(_)
                | Event::GroupLeft
        ) {
            return;
        }
        self.note_group_member(c);
        match e {
            Event::PartitionsAssigned(p) => self.checker.on_partitions_assigned(checker_id, p),
            Event::PartitionsRevoked(p) | Event::PartitionsLost(p) => {
                self.checker.on_partitions_given_up(checker_id, p)
            }
            Event::GroupLeft => self.checker.on_group_left(checker_id),
            _ => {}
        }
    }

    fn cluster_output(&mut self, o: ClusterOutput) {
        let now = self.now;
        match o {
            ClusterOutput::Send { conn, data } => {
                let Some(&net) = self.by_server.get(&conn) else {
                    return;
                };
                let Some(n) = self.nets.get(&net) else {
                    return;
                };
                let cconn = n.conn;
                self.trace.event(now, b'S', net, conn.0, &data);
                let at = self.deliver_at(net, false);
                self.push(
                    at,
                    Ev::ToClient {
                        net,
                        input: Input::Received(cconn, data),
                        force: false,
                    },
                );
            }
            ClusterOutput::Close { conn } => {
                let Some(net) = self.by_server.remove(&conn) else {
                    return;
                };
                let Some(n) = self.nets.get_mut(&net) else {
                    return;
                };
                n.server = None;
                let cconn = n.conn;
                self.trace.event(now, b'K', net, conn.0, &[]);
                self.trace
                    .line(now, || format!("net{net} closed by the broker"));
                if !n.client_open {
                    self.nets.remove(&net);
                    return;
                }
                // A FIN: it arrives after the data sent before it.
                let at = self.deliver_at(net, false);
                self.push(
                    at,
                    Ev::ToClient {
                        net,
                        input: Input::Closed(cconn, "closed by the broker".into()),
                        force: false,
                    },
                );
            }
        }
    }

    // ------------------------------------------------------------------
    // Faults
    // ------------------------------------------------------------------

    fn apply_fault(&mut self, f: Fault) {
        let now = self.now;
        self.trace.mix(format!("{f:?}").as_bytes());
        self.trace.line(now, || format!("fault {f:?}"));
        match f {
            Fault::Crash(node) => {
                if self.cluster.crash(node) {
                    self.count("broker crash");
                }
            }
            Fault::Restart(node) => {
                if self.cluster.restart(node) {
                    self.count("broker restart");
                }
            }
            Fault::MoveLeader {
                topic,
                partition,
                to,
            } => {
                if self.cluster.move_leader(&topic, partition, to).is_some() {
                    self.count("leader move");
                }
            }
            Fault::ResetConnections(node) => {
                let nets: Vec<u64> = self
                    .nets
                    .iter()
                    .filter(|(_, n)| n.state != NetState::Dead)
                    .filter(|(_, n)| node.is_none() || n.node == node)
                    .map(|(&id, _)| id)
                    .collect();
                for net in nets {
                    self.reset(net, "injected: connection reset");
                }
            }
            Fault::Retention { topic, partition } => {
                let hw = self
                    .cluster
                    .partition(&topic, partition)
                    .map(|p| p.log().high_watermark());
                if let Some(hw) = hw {
                    if self.cluster.delete_records(&topic, partition, hw) {
                        self.count("retention");
                    }
                }
            }
            Fault::Produce {
                topic,
                partition,
                fault,
            } => self.cluster.inject_produce_fault(&topic, partition, fault),
            Fault::MoveCoordinator { group } => {
                self.cluster.ensure_offsets_topic();
                let partition = self.cluster.offsets_partition_of(&group);
                if self
                    .cluster
                    .move_leader(OFFSETS_TOPIC, partition, None)
                    .is_some()
                {
                    self.count("coordinator move");
                }
            }
            Fault::StallClient { client, duration } => self.stall(client, duration),
            Fault::CrashClient {
                client,
                restart_after,
            } => self.crash_client(client, restart_after),
            Fault::RestartClient(client) => self.restart_client(client),
            Fault::Heal => {
                self.faults_on = false;
                self.faults = FaultRates::default();
                self.cluster
                    .set_random_produce_faults(RandomProduceFaults::default());
                self.cluster
                    .set_random_group_faults(RandomGroupFaults::default());
                self.cluster.clear_txn_errors();
                let down: Vec<NodeId> = self
                    .cluster
                    .broker_ids()
                    .filter(|&n| !self.cluster.is_up(n))
                    .collect();
                for n in down {
                    if self.cluster.restart(n) {
                        self.count("broker restart");
                    }
                }
            }
        }
    }

    /// Stops driving `c` for `d` (longer if it is stalled already).
    fn stall(&mut self, c: ClientIdx, d: Duration) {
        let until = self.now + d;
        let Some(sc) = self.clients.get_mut(c) else {
            return;
        };
        match sc.running {
            Running::Crashed => return,
            Running::Stalled(t) if t >= until => return,
            Running::Yes | Running::Stalled(_) => {}
        }
        sc.running = Running::Stalled(until);
        self.count("client stall");
        self.trace
            .event(self.now, b'Z', c as u64, d.as_nanos() as u64, &[]);
        self.trace
            .line(self.now, || format!("c{c} stalled for {d:?}"));
        self.push(until, Ev::Unstall(c));
    }

    /// A stall ends (unless a longer one replaced it): what waited for
    /// the client is handed to it in arrival order.
    fn unstall(&mut self, c: ClientIdx) {
        let now = self.now;
        let Some(sc) = self.clients.get_mut(c) else {
            return;
        };
        match sc.running {
            Running::Stalled(until) if until <= now => {}
            _ => return,
        }
        sc.running = Running::Yes;
        let backlog = std::mem::take(&mut sc.backlog);
        self.trace
            .event(now, b'z', c as u64, backlog.len() as u64, &[]);
        self.trace.line(now, || {
            format!("c{c} runs again; {} inputs waited", backlog.len())
        });
        for ev in backlog {
            self.handle(ev);
        }
    }

    /// Drops client `c` without a goodbye: every connection is reset at
    /// once (the broker forgets them now; nothing more reaches the
    /// client), its workload records without an outcome are abandoned.
    fn crash_client(&mut self, c: ClientIdx, restart_after: Option<Duration>) {
        let Some(sc) = self.clients.get_mut(c) else {
            return;
        };
        if sc.running == Running::Crashed {
            return;
        }
        sc.running = Running::Crashed;
        // An application's callers hear that their client is gone.
        let local = sc.clock.local(self.now);
        sc.client.finish(local, true);
        // Workload it would have run after a stall dies with it.
        let dropped_work = sc
            .backlog
            .iter()
            .filter(|ev| matches!(ev, Ev::Work(_)))
            .count();
        sc.backlog.clear();
        let checker_id = sc.checker_id;
        self.work_queued = self.work_queued.saturating_sub(dropped_work);
        let nets: Vec<u64> = self
            .nets
            .iter()
            .filter(|(_, n)| n.client == c)
            .map(|(&id, _)| id)
            .collect();
        for net in nets {
            if let Some(n) = self.nets.remove(&net) {
                if let Some(s) = n.server {
                    self.by_server.remove(&s);
                    self.cluster.disconnect(s);
                }
            }
        }
        self.by_client.retain(|&(client, _), _| client != c);
        self.checker.on_client_crashed(checker_id);
        self.count("client crash");
        self.trace.event(self.now, b'Q', c as u64, 0, &[]);
        self.trace.line(self.now, || format!("c{c} crashed"));
        if let Some(d) = restart_after {
            self.schedule(d, Fault::RestartClient(c));
        }
    }

    /// Starts a crashed client again: a new `Client` with the same
    /// configuration (a fresh seed), the same clock, and a new identity
    /// for the checker.
    fn restart_client(&mut self, c: ClientIdx) {
        let seed = self.rng.next_u64();
        let Some(sc) = self.clients.get(c) else {
            return;
        };
        // An application restarts its own clients, as a new process would.
        if sc.running != Running::Crashed || sc.app {
            return;
        }
        let mut config = sc.config.clone();
        config.seed = seed;
        let promise = Promise::of(&config);
        let client = match Client::new(config.clone()) {
            Ok(client) => client,
            Err(e) => {
                let detail = format!("c{c} could not restart: {e}");
                self.checker.report(Violation::Cluster { detail });
                return;
            }
        };
        let checker_id = self.checker.add_client(promise);
        if let Some(g) = &config.group {
            self.checker.add_group_member(checker_id, &g.group_id);
        }
        let Some(sc) = self.clients.get_mut(c) else {
            return;
        };
        sc.client = Driven::Core(Box::new(client));
        sc.config = config;
        sc.running = Running::Yes;
        sc.checker_id = checker_id;
        sc.next_index = 0;
        sc.spins = 0;
        sc.fetches_ready = false;
        if !sc.consumes.is_empty() {
            // A new incarnation reads from the earliest offset again.
            let now = sc.clock.local(self.now);
            sc.client.consume_topics(now, sc.consumes.iter().cloned());
        }
        if !sc.group_topics.is_empty() && !sc.closed {
            // A new incarnation of a member joins again (a static one with
            // its instance id, so it takes its old self's place).
            let now = sc.clock.local(self.now);
            sc.client
                .consume_topics(now, sc.group_topics.iter().cloned());
        }
        self.count("client restart");
        self.resume_txn_loop(c);
        self.trace
            .event(self.now, b'q', c as u64, checker_id as u64, &[]);
        self.trace.line(self.now, || {
            format!("c{c} restarted as checker client {checker_id}")
        });
    }

    fn random_fault(&mut self, kind: Random) {
        match kind {
            Random::Reset => {
                let open: Vec<u64> = self
                    .nets
                    .iter()
                    .filter(|(_, n)| n.state == NetState::Open)
                    .map(|(&id, _)| id)
                    .collect();
                if let Some(&net) = self.fault_rng.pick(&open) {
                    self.reset(net, "injected: random reset");
                }
            }
            Random::Crash => {
                let up: Vec<NodeId> = self
                    .cluster
                    .broker_ids()
                    .filter(|&n| self.cluster.is_up(n))
                    .collect();
                if let Some(&node) = self.fault_rng.pick(&up) {
                    let (lo, hi) = self.faults.downtime;
                    let down = self.fault_rng.duration(lo, hi);
                    self.apply_fault(Fault::Crash(node));
                    self.schedule(down, Fault::Restart(node));
                }
            }
            Random::CoordinatorMove => {
                let parts = self
                    .cluster
                    .topic(OFFSETS_TOPIC)
                    .map_or(0, |t| t.partitions().len() as u64);
                // With groups about, move one of theirs: a random one of
                // 50 offsets partitions would seldom hit them. (No draw
                // without groups, so producer-only seeds stay as they were.)
                let groups: Vec<i32> = self
                    .cluster
                    .groups()
                    .map(|g| self.cluster.offsets_partition_of(g.id()))
                    .collect();
                if let Some(&p) = self.fault_rng.pick(&groups) {
                    if self.cluster.move_leader(OFFSETS_TOPIC, p, None).is_some() {
                        self.trace
                            .line(self.now, || format!("fault: group coordinator {p} moves"));
                        self.trace.mix(&p.to_le_bytes());
                        self.count("coordinator move");
                    }
                } else if parts > 0 {
                    let p = self.fault_rng.below(parts) as i32;
                    if self.cluster.move_leader(OFFSETS_TOPIC, p, None).is_some() {
                        self.trace
                            .line(self.now, || format!("fault: offsets partition {p} moves"));
                        self.trace.mix(&p.to_le_bytes());
                        self.count("coordinator move");
                    }
                }
            }
            Random::TxnError => self.inject_random_txn_error(),
            Random::TxnCoordinatorMove => self.move_random_txn_coordinator(),
            Random::Stall | Random::ClientCrash => {
                let running: Vec<ClientIdx> = (0..self.clients.len())
                    .filter(|&c| self.clients[c].runs())
                    .collect();
                let Some(&client) = self.fault_rng.pick(&running) else {
                    return;
                };
                let f = if kind == Random::Stall {
                    let (lo, hi) = self.faults.stall;
                    Fault::StallClient {
                        client,
                        duration: self.fault_rng.duration(lo, hi),
                    }
                } else {
                    let (lo, hi) = self.faults.client_downtime;
                    let down = self.fault_rng.duration(lo, hi);
                    Fault::CrashClient {
                        client,
                        restart_after: self
                            .fault_rng
                            .chance(self.faults.client_restart)
                            .then_some(down),
                    }
                };
                self.apply_fault(f);
            }
            Random::LeaderMove | Random::Retention => {
                let parts: Vec<(String, i32)> = self
                    .cluster
                    .topics()
                    .filter(|t| t.name() != OFFSETS_TOPIC)
                    .flat_map(|t| {
                        t.partitions()
                            .iter()
                            .map(|p| (t.name().to_owned(), p.index()))
                    })
                    .collect();
                if let Some((topic, partition)) = self.fault_rng.pick(&parts).cloned() {
                    let f = if kind == Random::LeaderMove {
                        Fault::MoveLeader {
                            topic,
                            partition,
                            to: None,
                        }
                    } else {
                        Fault::Retention { topic, partition }
                    };
                    self.apply_fault(f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sansa_core::Config;

    fn world(brokers: i32) -> World {
        let mut w = World::new(
            3,
            ClusterConfig::new(brokers),
            NetConfig {
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
                jitter: Duration::from_millis(20),
            },
        );
        w.cluster_mut().create_topic("t", 2, 1).expect("topic");
        w
    }

    #[test]
    fn each_direction_of_a_connection_stays_in_order_under_jitter() {
        let mut w = world(1);
        w.nets.insert(
            0,
            NetConn {
                client: 0,
                conn: ConnId(0),
                node: Some(1),
                server: None,
                state: NetState::Open,
                client_open: true,
                c2b_last: Timestamp::ZERO,
                b2c_last: Timestamp::ZERO,
            },
        );
        for dir in [true, false] {
            let mut last = Timestamp::ZERO;
            let mut spread = false;
            for _ in 0..200 {
                let at = w.deliver_at(0, dir);
                assert!(at >= last, "a message overtook the one before it");
                spread |= at > last + Duration::from_millis(1);
                last = at;
            }
            assert!(spread, "jitter is drawn");
        }
    }

    #[test]
    fn a_crashed_broker_refuses_connections_until_it_restarts() {
        let mut w = world(1);
        w.keep_trace_lines(10_000);
        let c = w.add_client(Config::builder()).expect("client");
        w.cluster_mut().crash(1);
        w.produce(c, "t", None, 0).expect("buffered");
        w.run_for(Duration::from_secs(2));
        let refused = w
            .trace_lines()
            .iter()
            .filter(|l| l.contains("ConnectFailed"))
            .count();
        assert!(refused >= 2, "the client keeps trying, with backoff");
        assert!(w.events(c).is_empty(), "nothing delivered while down");
        w.schedule(Duration::ZERO, Fault::Restart(1));
        assert!(w.run_until_idle(Duration::from_secs(30)));
        assert!(matches!(w.events(c), [Event::Delivered { .. }]));
        assert!(w.violations().is_empty(), "{:?}", w.violations());
        assert_eq!(w.faults_applied().get("broker restart"), Some(&1));
    }

    #[test]
    fn a_reset_loses_what_is_in_flight_and_the_client_retries_without_duplicates() {
        let mut w = world(1);
        let c = w.add_client(Config::builder()).expect("client");
        for _ in 0..20 {
            w.produce(c, "t", None, 10).expect("buffered");
        }
        // Every produce request is written and lost with its connection,
        // three times over.
        for p in 0..2 {
            for _ in 0..3 {
                w.cluster_mut()
                    .inject_produce_fault("t", p, ProduceFault::AppendThenReset);
            }
        }
        assert!(w.run_until_idle(Duration::from_secs(60)));
        let delivered = w
            .events(c)
            .iter()
            .filter(|e| matches!(e, Event::Delivered { .. }))
            .count();
        assert_eq!(delivered, 20);
        assert!(w.cluster().stats().duplicates >= 1);
        assert!(w.violations().is_empty(), "{:?}", w.violations());
    }
}
