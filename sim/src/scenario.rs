//! Seeded scenarios: a producer workload on a cluster under faults, every
//! part of which (cluster shape, client settings, fault rates, timing) can
//! be drawn from one seed, and the machinery to run many seeds, report a
//! failure with the command that replays it, and replay it.
//!
//! Swarm mode (Groce et al., "Swarm Testing", ISSTA 2012): rather than
//! every fault at a low rate in every run, each seed switches each kind of
//! fault on or off and draws its rate, so some runs hammer one mechanism
//! and others combine a few. [`Scenario::swarm`] is that draw.
//!
//! Replay: `SANSA_SIM_SEED=<n>` makes [`check_seeds`] run that one seed;
//! `SANSA_SIM_SEEDS=<count>` changes how many seeds it runs. A failure
//! re-runs its seed with the trace kept and panics with the violations,
//! the last steps (`SANSA_SIM_TRACE=<lines>`, default 60, with every
//! broker produce decision) and the exact command to replay it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sansa_core::client::{Acks, Config};
use sansa_core::cluster::Backoff;
use sansa_core::compression::Compression;
use sansa_core::consumer::{ConsumerConfig, IsolationLevel};
use sansa_core::group::GroupProtocol;
use sansa_core::protocol::ErrorCode;

use crate::clock::ClientClock;
use crate::cluster::{
    ClusterConfig, RandomGroupFaults, RandomProduceFaults, Sabotage, UnknownProducer,
};
use crate::group_workload::{draw_group, use_consumer_protocol, BalancerKind, GroupMemberSpec};
use crate::invariants::group::GroupFigures;
use crate::invariants::Violation;
use crate::rng::SimRng;
use crate::world::{Fault, FaultRates, NetConfig, PlannedTxn, Work, World};

/// Mixed into a swarm seed for the stream that decides KIP-848 groups
/// (`"KIP848"` in ASCII).
const KIP848_STREAM: u64 = 0x4b49_5038_3438;

/// The stream that picks transactions v2 (KIP-890 part 2) for seeds with
/// transactional producers or exactly-once members, apart from every
/// other draw so that the seeds left on v1 run exactly as before v2 was
/// modelled.
const TXN_V2_STREAM: u64 = 0x4b49_5038_3930;

/// The error codes swarm mode injects into produce answers: retriable ones
/// the client must retry (some of which mean the batch was written), and
/// fatal ones it must report.
pub const PRODUCE_ERRORS: &[ErrorCode] = &[
    ErrorCode::NotLeaderOrFollower,
    ErrorCode::LeaderNotAvailable,
    ErrorCode::NotEnoughReplicas,
    ErrorCode::NotEnoughReplicasAfterAppend,
    ErrorCode::RequestTimedOut,
    ErrorCode::KafkaStorageError,
    ErrorCode::NetworkException,
    ErrorCode::CorruptMessage,
    ErrorCode::UnknownTopicOrPartition,
    ErrorCode::ThrottlingQuotaExceeded,
    ErrorCode::MessageTooLarge,
    ErrorCode::InvalidRecord,
    ErrorCode::UnknownServerError,
    ErrorCode::OutOfOrderSequenceNumber,
    ErrorCode::UnknownProducerId,
    ErrorCode::InvalidProducerEpoch,
    ErrorCode::DuplicateSequenceNumber,
    ErrorCode::TopicAuthorizationFailed,
];

/// One producing client of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSpec {
    /// Idempotent writes (acks must then be all).
    pub idempotent: bool,
    /// Acks.
    pub acks: Acks,
    /// Produce requests in flight per broker.
    pub max_in_flight: usize,
    /// Linger.
    pub linger: Duration,
    /// Codec.
    pub compression: Compression,
    /// Largest batch.
    pub batch_max_bytes: usize,
    /// Retries per record, `None` for unlimited.
    pub record_retries: Option<u32>,
    /// Delivery timeout.
    pub delivery_timeout: Option<Duration>,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Records to produce.
    pub records: usize,
    /// Produce keyed records (from a pool of this many keys) or unkeyed.
    pub keys: Option<u32>,
    /// Largest padding of a value.
    pub max_filler: usize,
    /// Flush after every this many records.
    pub flush_every: Option<usize>,
    /// Its clocks against the world's (skew, drift, wall offset).
    pub clock: ClientClock,
}

impl ClientSpec {
    /// A default idempotent producer of `records` keyed records.
    pub fn new(records: usize) -> Self {
        ClientSpec {
            idempotent: true,
            acks: Acks::All,
            max_in_flight: 5,
            linger: Duration::from_millis(10),
            compression: Compression::None,
            batch_max_bytes: 16 * 1024,
            record_retries: None,
            delivery_timeout: None,
            request_timeout: Duration::from_secs(30),
            records,
            keys: Some(16),
            max_filler: 64,
            flush_every: None,
            clock: ClientClock::EXACT,
        }
    }

    /// The client configuration (seed brokers and seed come from the
    /// world).
    pub fn config(&self) -> sansa_core::client::ConfigBuilder {
        let mut b = Config::builder();
        if !self.idempotent {
            b = b.disable_idempotent_write().acks(self.acks);
        }
        b.max_produce_requests_in_flight(self.max_in_flight)
            .linger(self.linger)
            .compression(self.compression)
            .batch_max_bytes(self.batch_max_bytes)
            .record_retries(self.record_retries)
            .record_delivery_timeout(self.delivery_timeout)
            .request_timeout(self.request_timeout)
            .retry_backoff(Backoff {
                initial: Duration::from_millis(50),
                max: Duration::from_secs(1),
                jitter: 0.2,
            })
    }
}

/// One transactional producer of a scenario: a loop of transactions (see
/// [`World::add_txn_producer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TxnProducerSpec {
    /// Transactions to run.
    pub transactions: usize,
    /// Most records in one transaction (at least one).
    pub max_records: usize,
    /// Longest a transaction stays open between its halves.
    pub max_open: Duration,
    /// Probability that a transaction is planned to abort.
    pub abort_rate: f64,
    /// The transaction timeout the producer asks for: how soon the
    /// coordinator aborts a transaction a crashed producer left open.
    pub transaction_timeout: Duration,
    /// Linger.
    pub linger: Duration,
    /// Codec.
    pub compression: Compression,
    /// Request timeout.
    pub request_timeout: Duration,
}

impl TxnProducerSpec {
    /// `transactions` transactions of up to 10 records, one in five
    /// aborted.
    pub fn new(transactions: usize) -> Self {
        TxnProducerSpec {
            transactions,
            max_records: 10,
            max_open: Duration::from_millis(200),
            abort_rate: 0.2,
            transaction_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(5),
            compression: Compression::None,
            request_timeout: Duration::from_secs(30),
        }
    }

    /// The client configuration of producer `index` (seed brokers and
    /// seed come from the world).
    pub fn config(&self, index: usize) -> sansa_core::client::ConfigBuilder {
        Config::builder()
            .transactional_id(format!("txn-{index}"))
            .transaction_timeout(self.transaction_timeout)
            .linger(self.linger)
            .compression(self.compression)
            .request_timeout(self.request_timeout)
            .retry_backoff(Backoff {
                initial: Duration::from_millis(50),
                max: Duration::from_secs(1),
                jitter: 0.2,
            })
    }

    /// Its plan of transactions over `topics`, drawn from `r`.
    fn plan(&self, r: &mut SimRng, topics: &[(String, i32, i16)]) -> Vec<PlannedTxn> {
        let open = u64::try_from(self.max_open.as_millis()).unwrap_or(1000);
        (0..self.transactions)
            .map(|_| PlannedTxn {
                records: (0..r.range(1, self.max_records.max(1) as u64))
                    .map(|_| {
                        let topic = r.pick(topics).map(|t| t.0.clone()).unwrap_or_default();
                        let key = Bytes::from(format!("k{}", r.below(16)));
                        (topic, Some(key), r.below(64) as usize)
                    })
                    .collect(),
                open_for: Duration::from_millis(r.range(0, open)),
                commit: !r.chance(self.abort_rate),
            })
            .collect()
    }
}

/// A consumer's settings: defaults, with the producers' short retry
/// backoff so it follows faults at the simulation's pace.
fn consumer_config() -> sansa_core::client::ConfigBuilder {
    Config::builder().retry_backoff(Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_secs(1),
        jitter: 0.2,
    })
}

/// A whole scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed every draw of the run descends from.
    pub seed: u64,
    /// Broker count.
    pub brokers: i32,
    /// How brokers judge unknown producers.
    pub unknown_producer: UnknownProducer,
    /// A broken broker, for the checker tests.
    pub sabotage: Sabotage,
    /// Topics: name, partitions, replication factor.
    pub topics: Vec<(String, i32, i16)>,
    /// The producers.
    pub clients: Vec<ClientSpec>,
    /// Consumers of every topic, from the earliest offset (checked by
    /// [`invariants::consumer`](crate::invariants::consumer)).
    pub consumers: usize,
    /// Consumer-group members (checked by
    /// [`invariants::group`](crate::invariants::group)).
    pub group_members: Vec<GroupMemberSpec>,
    /// Transactional producers (checked by
    /// [`invariants::txn`](crate::invariants::txn)).
    pub txn_producers: Vec<TxnProducerSpec>,
    /// read_committed consumers of every topic, from the earliest offset.
    pub committed_consumers: usize,
    /// Exactly-once pipeline members (see [`World::add_eos_member`]),
    /// checked by [`invariants::eos`](crate::invariants::eos).
    pub eos_members: Vec<GroupMemberSpec>,
    /// How long an exactly-once member's transaction stays open.
    pub eos_txn_len: Duration,
    /// Sabotage: exactly-once members commit despite a revoke.
    pub eos_commit_despite_revoke: bool,
    /// Sabotage: group members commit offset 0 after each poll.
    pub commit_backwards: bool,
    /// The cluster's finalized `transaction.version` (2: transactions v2,
    /// KIP-890 part 2; see `TxnSettings::transaction_version`).
    pub transaction_version: i16,
    /// Network delays.
    pub net: NetConfig,
    /// Random fault rates while faults are on.
    pub faults: FaultRates,
    /// Faults at fixed times.
    pub scripted: Vec<(Duration, Fault)>,
    /// How long records are produced.
    pub produce_window: Duration,
    /// How long random faults stay on; then the cluster heals.
    pub fault_window: Duration,
    /// How long after healing every record must have an outcome.
    pub settle: Duration,
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Steps taken.
    pub steps: u64,
    /// Virtual time at the end.
    pub virtual_time: Duration,
    /// The trace hash: equal for equal seeds.
    pub trace_hash: u64,
    /// Records reported delivered.
    pub delivered: usize,
    /// Records reported failed.
    pub failed: usize,
    /// Records reported failed that the log held (allowed, counted).
    pub failed_but_written: u64,
    /// Records handed to consumers (and checked).
    pub consumed: u64,
    /// Batches the brokers appended.
    pub batches_appended: u64,
    /// Duplicates the brokers recognised.
    pub duplicates: u64,
    /// Produce faults injected by the brokers.
    pub faults_injected: u64,
    /// Other faults applied, by kind (crashes, restarts, leader moves,
    /// connection resets, retention).
    pub faults: BTreeMap<&'static str, u64>,
    /// What the group members did: records processed, duplicates, the
    /// widest duplicate window, commits.
    pub group: GroupFigures,
    /// Generations the groups went through (their generation, or a
    /// KIP-848 group's epoch, at the end).
    pub rebalances: u64,
    /// Requests the brokers handled, by API name.
    pub requests: BTreeMap<&'static str, u64>,
    /// Group requests answered with an injected error.
    pub group_faults: u64,
    /// Transactions their producers were told committed.
    pub txns_committed: usize,
    /// Transactions their producers were told aborted.
    pub txns_aborted: usize,
    /// The cluster's finalized `transaction.version` the seed ran with.
    pub transaction_version: i16,
}

/// A run that broke a promise.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// What was broken.
    pub violations: Vec<Violation>,
    /// The last steps before the end, when kept.
    pub trace: Vec<String>,
    /// The scenario, for the report.
    pub scenario: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} broke {} promise(s):",
            self.seed,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(20) {
            writeln!(f, "  {v}")?;
        }
        writeln!(f, "scenario: {}", self.scenario)?;
        if !self.trace.is_empty() {
            writeln!(f, "last {} steps:", self.trace.len())?;
            for l in &self.trace {
                writeln!(f, "  {l}")?;
            }
        }
        Ok(())
    }
}

impl Scenario {
    /// A small fault-free scenario: 3 brokers, one topic of 4 partitions,
    /// one idempotent producer.
    pub fn quiet(seed: u64) -> Self {
        Scenario {
            seed,
            brokers: 3,
            unknown_producer: UnknownProducer::default(),
            sabotage: Sabotage::None,
            topics: vec![("t".into(), 4, 3)],
            clients: vec![ClientSpec::new(200)],
            consumers: 0,
            group_members: Vec::new(),
            txn_producers: Vec::new(),
            committed_consumers: 0,
            eos_members: Vec::new(),
            eos_txn_len: Duration::from_millis(200),
            eos_commit_despite_revoke: false,
            commit_backwards: false,
            transaction_version: 1,
            net: NetConfig::default(),
            faults: FaultRates::default(),
            scripted: Vec::new(),
            produce_window: Duration::from_secs(1),
            fault_window: Duration::from_secs(1),
            settle: Duration::from_secs(300),
        }
    }

    /// Everything drawn from the seed (swarm mode): cluster shape, broker
    /// version, clients and their settings, network, and which faults are
    /// on at which rate.
    pub fn swarm(seed: u64) -> Self {
        let mut r = SimRng::new(seed);
        let brokers = r.range(1, 5) as i32;
        let topics = (0..r.range(1, 3))
            .map(|i| {
                let parts = r.range(1, 8) as i32;
                let rf = r.range(1, brokers.min(3) as u64) as i16;
                (format!("topic-{i}"), parts, rf)
            })
            .collect();
        let clients = (0..r.range(1, 3))
            .map(|_| {
                let idempotent = r.chance(0.7);
                let acks = if idempotent {
                    Acks::All
                } else {
                    *r.pick(&[Acks::All, Acks::Leader, Acks::None])
                        .unwrap_or(&Acks::All)
                };
                ClientSpec {
                    idempotent,
                    acks,
                    max_in_flight: if idempotent || r.chance(0.5) {
                        r.range(1, 5) as usize
                    } else {
                        1
                    },
                    linger: Duration::from_millis(r.range(0, 20)),
                    compression: *r.pick(&Compression::ALL).unwrap_or(&Compression::None),
                    batch_max_bytes: *r.pick(&[512, 4096, 65536]).unwrap_or(&4096),
                    record_retries: r.chance(0.2).then(|| r.range(0, 10) as u32),
                    delivery_timeout: r
                        .chance(0.2)
                        .then(|| Duration::from_millis(r.range(100, 5000))),
                    request_timeout: Duration::from_millis(r.range(500, 30_000)),
                    records: r.range(10, 250) as usize,
                    keys: r.chance(0.6).then(|| r.range(1, 50) as u32),
                    max_filler: *r.pick(&[0, 16, 200, 2000]).unwrap_or(&16),
                    flush_every: r.chance(0.3).then(|| r.range(1, 100) as usize),
                    clock: ClientClock::EXACT,
                }
            })
            .collect();
        let max_delay = Duration::from_micros(r.range(100, 20_000));
        let net = NetConfig {
            min_delay: Duration::from_micros(50),
            max_delay,
            jitter: Duration::from_micros(r.range(0, 5_000)),
        };
        let on = |r: &mut SimRng, p: f64, lo: f64, hi: f64| {
            if r.chance(p) {
                lo + (hi - lo) * r.unit()
            } else {
                0.0
            }
        };
        let codes: Vec<ErrorCode> = PRODUCE_ERRORS
            .iter()
            .copied()
            .filter(|_| r.chance(0.4))
            .collect();
        let faults = FaultRates {
            reset_before_read: on(&mut r, 0.4, 0.0, 0.05),
            resets_per_sec: on(&mut r, 0.4, 0.0, 3.0),
            crashes_per_sec: on(&mut r, 0.4, 0.0, 1.0),
            downtime: (Duration::from_millis(10), Duration::from_secs(3)),
            leader_moves_per_sec: on(&mut r, 0.4, 0.0, 3.0),
            retention_per_sec: on(&mut r, 0.2, 0.0, 0.5),
            produce: RandomProduceFaults {
                error_rate: on(&mut r, 0.5, 0.0, 0.2),
                codes,
                reset_after_append_rate: on(&mut r, 0.4, 0.0, 0.05),
                reset_before_append_rate: on(&mut r, 0.3, 0.0, 0.05),
                stall_rate: on(&mut r, 0.2, 0.0, 0.02),
            },
            ..FaultRates::default()
        };
        let window = Duration::from_millis(r.range(200, 3000));
        let mut scenario = Scenario {
            seed,
            brokers,
            unknown_producer: if r.chance(0.5) {
                UnknownProducer::AcceptAnySequence
            } else {
                UnknownProducer::RejectUnlessZero
            },
            sabotage: Sabotage::None,
            topics,
            clients,
            consumers: 0,
            group_members: Vec::new(),
            txn_producers: Vec::new(),
            committed_consumers: 0,
            eos_members: Vec::new(),
            eos_txn_len: Duration::from_millis(200),
            eos_commit_despite_revoke: false,
            commit_backwards: false,
            transaction_version: 1,
            net,
            faults,
            scripted: Vec::new(),
            produce_window: window,
            fault_window: window + Duration::from_millis(r.range(0, 2000)),
            settle: Duration::from_secs(600),
        };
        // Drawn last, so that the draws above (and the seeds that
        // exercise them) stay what they were before these faults existed.
        scenario.faults.coordinator_moves_per_sec = on(&mut r, 0.3, 0.0, 3.0);
        scenario.faults.stalls_per_sec = on(&mut r, 0.3, 0.0, 1.0);
        scenario.faults.stall = (Duration::from_millis(10), Duration::from_secs(3));
        scenario.faults.client_crashes_per_sec = on(&mut r, 0.2, 0.0, 0.5);
        scenario.faults.client_downtime = (Duration::from_millis(10), Duration::from_secs(2));
        scenario.faults.client_restart = 0.7;
        scenario.consumers = r.range(0, 2) as usize;
        for spec in &mut scenario.clients {
            if r.chance(0.5) {
                spec.clock = ClientClock {
                    origin: Duration::from_secs(r.range(0, 10_000)),
                    drift_ppm: r.range(0, 40_000) as i32 - 20_000,
                    wall_offset_ms: r.range(0, 600_000) as i64 - 300_000,
                };
            }
        }
        // Groups last, for the same reason.
        let names: Vec<String> = scenario.topics.iter().map(|t| t.0.clone()).collect();
        scenario.group_members = draw_group(&mut r, &names, scenario.produce_window);
        if !scenario.group_members.is_empty() {
            scenario.faults.group = RandomGroupFaults {
                error_rate: on(&mut r, 0.4, 0.0, 0.1),
            };
        }
        // Transactions last, for the same reason; in few seeds, as they
        // cost twice a plain seed (more clients, every record read again
        // by a read_committed consumer), and the CI's seed count should
        // take about as long as before they existed.
        if r.chance(0.1) {
            scenario.txn_producers = (0..r.range(1, 2))
                .map(|_| TxnProducerSpec {
                    transactions: r.range(2, 8) as usize,
                    max_records: r.range(1, 12) as usize,
                    max_open: Duration::from_millis(r.range(0, 300)),
                    abort_rate: *r.pick(&[0.0, 0.2, 0.5]).unwrap_or(&0.2),
                    transaction_timeout: Duration::from_millis(r.range(2_000, 15_000)),
                    linger: Duration::from_millis(r.range(0, 20)),
                    compression: *r.pick(&Compression::ALL).unwrap_or(&Compression::None),
                    request_timeout: Duration::from_millis(r.range(1_000, 30_000)),
                })
                .collect();
            scenario.committed_consumers = 1;
            scenario.faults.txn_errors_per_sec = on(&mut r, 0.5, 0.0, 3.0);
            scenario.faults.txn_coordinator_moves_per_sec = on(&mut r, 0.4, 0.0, 2.0);
        }
        // Exactly-once pipelines last, for the same reason (and as seldom).
        if r.chance(0.08) {
            let input = scenario.topics.first().map(|t| t.0.clone());
            let window = u64::try_from(scenario.produce_window.as_millis()).unwrap_or(1000);
            scenario.eos_members = (0..r.range(1, 3))
                .map(|_| {
                    let mut m = GroupMemberSpec::new("eos", &[]);
                    m.topics = input.iter().cloned().collect();
                    m.balancers = if r.chance(0.5) {
                        vec![BalancerKind::CooperativeSticky]
                    } else {
                        vec![BalancerKind::Range]
                    };
                    m.session_timeout = Duration::from_millis(r.range(1000, 4000));
                    m.heartbeat_interval = m.session_timeout / 4;
                    m.rebalance_timeout = Duration::from_millis(r.range(2000, 8000));
                    m.join_at = Duration::from_millis(r.range(0, window));
                    m
                })
                .collect();
            scenario.eos_txn_len = Duration::from_millis(r.range(50, 500));
            if scenario.faults.txn_errors_per_sec == 0.0 {
                scenario.faults.txn_errors_per_sec = on(&mut r, 0.5, 0.0, 3.0);
            }
        }
        // KIP-848 groups from a stream of their own, so that every other
        // draw (and every classic seed's run) stays what it was.
        let mut kip848 = SimRng::new(seed ^ KIP848_STREAM);
        if !scenario.group_members.is_empty() && kip848.chance(0.3) {
            use_consumer_protocol(&mut scenario.group_members);
        }
        scenario.draw_transaction_version();
        scenario
    }

    /// Transactions v2 for half the seeds with transactional producers or
    /// exactly-once members, drawn from a stream of its own so that every
    /// other draw (and every seed left on v1) stays what it was; the same
    /// seed always draws the same, so a test that adds transactional
    /// clients to a swarm seed may draw again.
    pub fn draw_transaction_version(&mut self) {
        let transactional = !self.txn_producers.is_empty() || !self.eos_members.is_empty();
        if transactional && SimRng::new(self.seed ^ TXN_V2_STREAM).chance(0.5) {
            self.transaction_version = 2;
        }
    }

    /// The world of this scenario with its workload and faults queued,
    /// before the first step.
    pub fn build(&self) -> Result<World, String> {
        let mut config = ClusterConfig::new(self.brokers);
        config.unknown_producer = self.unknown_producer;
        config.sabotage = self.sabotage;
        config.transactions.transaction_version = self.transaction_version;
        // Members with sessions of a second or two, so that the drawn
        // stalls (up to 3 s) sometimes outlast them.
        config.groups.min_session_timeout = Duration::from_millis(500);
        // KIP-848's session timeout is the broker's: the members' longest,
        // so that the drawn stalls outlast it as often as classic ones.
        let kip848: Vec<&GroupMemberSpec> = self
            .group_members
            .iter()
            .chain(&self.eos_members)
            .filter(|m| m.protocol == GroupProtocol::Consumer)
            .collect();
        if let Some(session) = kip848.iter().map(|m| m.session_timeout).max() {
            config.groups.consumer_protocol = true;
            config.groups.consumer_session_timeout = session;
            config.groups.consumer_heartbeat_interval = session / 4;
        }
        let mut w = World::new(self.seed, config, self.net);
        if self.commit_backwards {
            w.sabotage_commit_backwards();
        }
        for (name, parts, rf) in &self.topics {
            w.cluster_mut()
                .create_topic(name, *parts, *rf)
                .map_err(|e| format!("create {name}: {e}"))?;
        }
        // The workload draws from its own stream so that changing a fault
        // rate does not move every record.
        let mut r = w.rng().fork();
        for spec in &self.clients {
            let c = w.add_client_with_clock(spec.config(), spec.clock)?;
            let window = u64::try_from(self.produce_window.as_nanos()).unwrap_or(u64::MAX);
            let mut times: Vec<u64> = (0..spec.records).map(|_| r.below(window.max(1))).collect();
            times.sort_unstable();
            for (i, t) in times.into_iter().enumerate() {
                let topic = r
                    .pick(&self.topics)
                    .map(|t| t.0.clone())
                    .unwrap_or_default();
                let key = spec
                    .keys
                    .map(|k| Bytes::from(format!("k{}", r.below(u64::from(k)))));
                let filler = r.below(spec.max_filler as u64 + 1) as usize;
                let at = Duration::from_nanos(t);
                w.schedule_work(
                    at,
                    Work::Produce {
                        client: c,
                        topic,
                        key,
                        filler,
                    },
                );
                if spec.flush_every.is_some_and(|n| (i + 1) % n.max(1) == 0) {
                    w.schedule_work(at, Work::Flush(c));
                }
            }
        }
        let names: Vec<String> = self.topics.iter().map(|t| t.0.clone()).collect();
        for _ in 0..self.consumers {
            let c = w.add_client(consumer_config())?;
            w.consume(c, &names);
        }
        for spec in &self.group_members {
            spec.add_to(&mut w, consumer_config())?;
        }
        for (i, spec) in self.txn_producers.iter().enumerate() {
            let plan = spec.plan(&mut r, &self.topics);
            let window = u64::try_from(self.produce_window.as_nanos()).unwrap_or(u64::MAX);
            let start = Duration::from_nanos(r.below(window.max(1)));
            w.add_txn_producer(spec.config(i), ClientClock::EXACT, plan, start)?;
        }
        if !self.eos_members.is_empty() {
            for (name, parts, rf) in &self.topics {
                let out = crate::invariants::eos::eos_output_topic(name);
                if w.cluster().topic(&out).is_none() {
                    w.cluster_mut()
                        .create_topic(&out, *parts, *rf)
                        .map_err(|e| format!("create {out}: {e}"))?;
                }
            }
        }
        for (i, spec) in self.eos_members.iter().enumerate() {
            let base = if self.eos_commit_despite_revoke {
                consumer_config().sabotage_commit_despite_revoke()
            } else {
                consumer_config()
            };
            w.add_eos_member(spec, base, format!("eos-{i}"), self.eos_txn_len)?;
        }
        for _ in 0..self.committed_consumers {
            let c = w.add_client(consumer_config().consumer(ConsumerConfig {
                isolation: IsolationLevel::ReadCommitted,
                ..ConsumerConfig::default()
            }))?;
            w.consume(c, &names);
        }
        for (at, f) in &self.scripted {
            w.schedule(*at, f.clone());
        }
        w.set_fault_rates(self.faults.clone());
        w.schedule(self.fault_window, Fault::Heal);
        Ok(w)
    }

    /// Runs the scenario: faults until the window closes, then healing,
    /// then up to `settle` for every record to get an outcome. Checks every
    /// invariant on every step and liveness at the end.
    pub fn run(&self) -> Result<Report, Failure> {
        self.run_with_trace(0)
    }

    /// Runs the scenario to its end and returns the world as it ended
    /// (its violations, trace and counters), keeping the last
    /// `trace_lines` steps. [`Scenario::run`] judges it.
    pub fn run_world(&self, trace_lines: usize) -> Result<World, String> {
        let mut w = self.build()?;
        w.keep_trace_lines(trace_lines);
        let heal_at = sansa_core::Timestamp::ZERO + self.fault_window;
        let end = heal_at + self.settle;
        w.run_until(end, |w| {
            w.now() > heal_at
                && w.pending_work() == 0
                && (0..w.client_count()).all(|c| w.client_settled(c))
        });
        w.check_outcomes();
        Ok(w)
    }

    /// [`Scenario::run`], keeping the last `trace_lines` steps for the
    /// failure report.
    pub fn run_with_trace(&self, trace_lines: usize) -> Result<Report, Failure> {
        let w = match self.run_world(trace_lines) {
            Ok(w) => w,
            Err(e) => {
                return Err(Failure {
                    seed: self.seed,
                    violations: vec![Violation::Cluster { detail: e }],
                    trace: Vec::new(),
                    scenario: format!("{self:?}"),
                })
            }
        };
        if !w.violations().is_empty() {
            return Err(Failure {
                seed: self.seed,
                violations: w.violations().to_vec(),
                trace: w.trace_lines(),
                scenario: format!("{self:?}"),
            });
        }
        let mut delivered = 0;
        let mut failed = 0;
        for c in 0..w.client_count() {
            for e in w.events(c) {
                match e {
                    sansa_core::Event::Delivered { .. } => delivered += 1,
                    sansa_core::Event::ProduceFailed { .. } => failed += 1,
                    _ => {}
                }
            }
        }
        let stats = w.cluster().stats();
        Ok(Report {
            seed: self.seed,
            steps: w.steps(),
            virtual_time: w.now().since_origin(),
            trace_hash: w.trace_hash(),
            delivered,
            failed,
            failed_but_written: w.checker().failed_but_written(),
            consumed: w.checker().consumed_count(),
            batches_appended: stats.batches_appended,
            duplicates: stats.duplicates,
            faults_injected: stats.faults_injected,
            faults: w.faults_applied().clone(),
            group: w.checker().group_figures(),
            rebalances: w
                .cluster()
                .groups()
                .map(|g| u64::try_from(g.generation().max(g.consumer().epoch())).unwrap_or(0))
                .sum(),
            requests: stats.requests.clone(),
            group_faults: stats.group_faults_injected,
            txns_committed: w.checker().committed_txns(),
            txns_aborted: w.checker().aborted_txns(),
            transaction_version: self.transaction_version,
        })
    }
}

/// The seeds to run: `SANSA_SIM_SEED` alone if set, else `count` seeds
/// from `first` (`SANSA_SIM_SEEDS` overrides `count`).
pub fn seeds(first: u64, count: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("SANSA_SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("SANSA_SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(count);
    (first..first.saturating_add(count)).collect()
}

/// The command that replays `seed` of a test: `test` is what follows
/// `cargo test -p sansa-sim`, e.g. `--test swarm name_of_the_test`.
pub fn replay_command(seed: u64, test: &str) -> String {
    format!("SANSA_SIM_SEED={seed} cargo test -p sansa-sim {test} -- --nocapture")
}

/// Runs `make(seed)` for every seed of [`seeds`] and returns every
/// failure (not only the first): for surveys of many seeds.
pub fn sweep(first: u64, count: u64, make: impl Fn(u64) -> Scenario) -> Vec<Failure> {
    seeds(first, count)
        .into_iter()
        .filter_map(|seed| make(seed).run().err())
        .collect()
}

/// How many trace lines a failure report shows: `SANSA_SIM_TRACE`, else
/// 60.
pub fn trace_lines_wanted() -> usize {
    std::env::var("SANSA_SIM_TRACE")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(60)
}

/// Runs `make(seed)` for every seed of [`seeds`]; on the first failure,
/// re-runs that seed keeping its trace and panics with the report and the
/// command to replay it. Returns the reports.
pub fn check_seeds(
    test: &str,
    first: u64,
    count: u64,
    make: impl Fn(u64) -> Scenario,
) -> Vec<Report> {
    let mut reports = Vec::new();
    for seed in seeds(first, count) {
        let scenario = make(seed);
        match scenario.run() {
            Ok(r) => reports.push(r),
            Err(_) => {
                let failure = match scenario.run_with_trace(trace_lines_wanted()) {
                    Err(f) => f.to_string(),
                    Ok(_) => "the failure did not reproduce with the trace on: \
                              the simulation is not deterministic"
                        .to_owned(),
                };
                panic!("{failure}\nreplay with: {}", replay_command(seed, test));
            }
        }
    }
    reports
}
