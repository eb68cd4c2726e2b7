//! The simulated Kafka cluster, broker side: brokers, topics, partitions
//! with leaders, leader epochs and logs, and the request handlers, all
//! speaking the real wire protocol through `sansa-core`'s generated codecs.
//!
//! Like the client it tests, the cluster is a sans-IO machine: it never
//! touches a socket or a clock. A driver (the deterministic
//! [`World`](crate::World), or the [TCP front](crate::tcp)) opens server
//! connections with [`Cluster::accept`], feeds the bytes clients wrote with
//! [`Cluster::handle_bytes`] and the time with [`Cluster::handle_timeout`],
//! and carries out [`Cluster::poll_output`]: bytes to send back, or a
//! connection to close.
//!
//! What it models, and what it leaves out:
//! - Replication is synchronous and perfect: the partition log is the
//!   replicated log, every live replica has every record the moment the
//!   leader appends it, so the high watermark is the log end offset, a
//!   leader move loses nothing and acks=1 is as durable as acks=all. (An
//!   unclean election that loses an acks=1 tail is for a later issue.)
//! - A crashed broker keeps its logs (they are the partition's); what it
//!   loses is its connections and whatever requests were in flight.
//!   Leadership of its partitions moves to a live replica, bumping the
//!   leader epoch, as the controller would.
//! - Requests on one connection are handled one at a time, in order, as
//!   Kafka does (it mutes a connection while a request is in progress): a
//!   Fetch waiting for data holds back the requests behind it.
//! - The classic group coordinator ([`group`], [`coordinator`]) lives
//!   where Kafka puts it: on the leader of the group's
//!   `__consumer_offsets` partition, so coordinators move with leaders.
//!   Its timers (sessions, rebalance timeouts, the initial rebalance
//!   delay) run on the `now` the driver passes in.
//! - KIP-848's consumer group coordinator ([`consumer_group`]) shares
//!   the groups, their offsets and their placement with the classic one;
//!   it is served only when [`GroupSettings::consumer_protocol`] is on.
//! - The transaction coordinator ([`transaction`], [`txn_coordinator`])
//!   lives on the leader of the transactional id's `__transaction_state`
//!   partition, like the group coordinator; its state is the replicated
//!   state, and the partition side of transactions (open transactions,
//!   last stable offset, aborted index, [`txn_index`]) is derived from the
//!   logs. Transactions v1 only: KIP-890's v2 (EndTxn v5, AddPartitionsToTxn
//!   v4+) is not advertised.

mod api;
mod consumer_coordinator;
pub mod consumer_group;
pub mod coordinator;
pub mod group;
pub mod log;
pub mod producer_state;
pub mod transaction;
pub mod txn_coordinator;
pub mod txn_index;

use std::collections::{BTreeMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use sansa_core::conn::FrameReader;
use sansa_core::protocol::messages::FetchRequest;
use sansa_core::protocol::{ApiKey, Codec, ErrorCode, ResponseBody, ResponseHeader, Uuid};
use sansa_core::Timestamp;

use crate::rng::SimRng;
pub use api::{served_versions, SERVED_APIS};
pub use coordinator::{offsets_partition_for, OFFSETS_TOPIC};
pub use coordinator::{AcceptedCommit, RandomGroupFaults};
use group::Group;
pub use group::{CommittedOffset, GroupSettings, GroupState, Member};
use log::PartitionLog;
use producer_state::ProducerStates;
pub use producer_state::UnknownProducer;
pub use transaction::{Transaction, TxnSettings, TxnState, TRANSACTION_STATE_TOPIC};

/// A broker's id (`node.id`).
pub type NodeId = i32;

/// A connection accepted by a simulated broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerConnId(pub u64);

/// Where a broker listens, as Metadata advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// The broker's id.
    pub node: NodeId,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if any.
    pub rack: Option<String>,
}

impl BrokerAddr {
    /// `host:port`, as clients dial it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A deliberately broken broker behaviour, to prove that the invariant
/// checkers catch what they claim to (a checker that never fires proves
/// nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Sabotage {
    /// A correct broker.
    #[default]
    None,
    /// On restart, a broker drops the last batch of every partition it
    /// hosts, acknowledged or not (an fsync that never happened).
    LoseLastBatchOnRestart,
    /// No duplicate detection and no sequence check: a retried batch is
    /// written twice.
    IgnoreSequences,
    /// Duplicate detection, but sequence gaps accepted: a batch that
    /// failed is written after the ones sent behind it (reordering).
    AcceptSequenceGaps,
    /// A batch answered with an error that means "not written" is written
    /// anyway, just before the partition's next produce.
    AppendRejectedLater,
    /// A fetch is answered from the batch after the one it asks for (or
    /// with nothing while there is none): the consumer never sees the
    /// batch it asked for.
    FetchSkipsBatch,
    /// The group coordinator hands every member of a generation the same
    /// assignment (the first non-empty one of the leader's plan): two
    /// live members own the same partitions.
    SyncGivesEveryoneOnePlan,
    /// The group coordinator accepts an OffsetCommit from anyone, in any
    /// generation (no member or generation check): a member that missed
    /// a rebalance commits for partitions it no longer owns.
    AcceptStaleCommits,
    /// OffsetFetch answers "nothing committed" for every partition: a
    /// newly assigned member starts from the reset offset and processes
    /// again what its predecessor committed.
    OffsetFetchForgetsCommits,
    /// The transaction coordinator writes a COMMIT marker where it should
    /// write an ABORT (it forgets the abort): aborted records become
    /// visible to read_committed consumers.
    AbortMarkerCommits,
    /// The transaction coordinator writes an ABORT marker where it should
    /// write a COMMIT: a committed transaction disappears.
    CommitMarkerAborts,
    /// A read_committed Fetch lists no aborted transactions: the consumer
    /// cannot tell aborted records from committed ones.
    FetchOmitsAbortedTxns,
    /// A read_committed Fetch reads up to the high watermark instead of
    /// the last stable offset: open transactions' records are handed out.
    FetchIgnoresLastStableOffset,
    /// The KIP-848 coordinator gives a member its whole target at once,
    /// before the partitions' previous owners released them: two live
    /// members own one partition until the old owner's next heartbeat.
    AssignBeforeRelease,
}

/// Settings of a simulated cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The brokers and their advertised addresses.
    pub brokers: Vec<BrokerAddr>,
    /// The cluster id Metadata reports.
    pub cluster_id: String,
    /// Create a topic when Metadata asks for one that is missing and
    /// allows it (`auto.create.topics.enable`). Default off here, on in
    /// the TCP front.
    pub auto_create_topics: bool,
    /// Partitions of topics created without a count (`num.partitions`).
    pub default_partitions: i32,
    /// Replication factor of topics created without one
    /// (`default.replication.factor`, capped by the broker count).
    pub default_replication_factor: i16,
    /// Largest batch accepted (`message.max.bytes`, default 1048588).
    pub max_message_bytes: usize,
    /// Largest request frame accepted (`socket.request.max.bytes`).
    pub max_request_bytes: usize,
    /// How sequences of unknown producers are judged.
    pub unknown_producer: UnknownProducer,
    /// A broken behaviour, for the checker tests.
    pub sabotage: Sabotage,
    /// The group coordinator's settings.
    pub groups: GroupSettings,
    /// The transaction coordinator's settings.
    pub transactions: TxnSettings,
    /// APIs served only up to a lower version than the simulator's
    /// highest, to play an older broker (say EndTxn 1, from before
    /// PRODUCER_FENCED existed). Empty by default.
    pub max_versions: Vec<(ApiKey, i16)>,
}

impl ClusterConfig {
    /// `brokers` brokers with ids `1..=brokers`, advertised as
    /// `broker-<id>:9092` (names only the simulator's network resolves).
    pub fn new(brokers: i32) -> Self {
        ClusterConfig {
            brokers: (1..=brokers.max(1))
                .map(|node| BrokerAddr {
                    node,
                    host: format!("broker-{node}"),
                    port: 9092,
                    rack: None,
                })
                .collect(),
            cluster_id: "sansa-sim".into(),
            auto_create_topics: false,
            default_partitions: 1,
            default_replication_factor: 3,
            max_message_bytes: 1_048_588,
            max_request_bytes: 100 * 1024 * 1024,
            unknown_producer: UnknownProducer::default(),
            sabotage: Sabotage::None,
            groups: GroupSettings::default(),
            transactions: TxnSettings::default(),
            max_versions: Vec::new(),
        }
    }
}

/// What the next produce of a partition meets, scripted by a test or drawn
/// from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceFault {
    /// Nothing: handle this produce normally (to script the ones after).
    Pass,
    /// Answer `code`; append the batch first when `append` (the codes that
    /// mean "written, but": NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    /// REQUEST_TIMED_OUT, see [`error_means_written`]).
    Error {
        /// The error to answer.
        code: ErrorCode,
        /// Whether the batch is appended before answering.
        append: bool,
    },
    /// Append, then close the connection without answering.
    AppendThenReset,
    /// Close the connection without appending.
    ResetWithoutAppend,
    /// Append, then never answer: the connection stalls (Kafka handles a
    /// connection's requests one at a time) until the client gives up.
    AppendThenStall,
}

/// Whether a broker answering `code` to a produce has (or may have)
/// written the batch, which is how the injector decides to append first:
/// NOT_ENOUGH_REPLICAS_AFTER_APPEND says so, REQUEST_TIMED_OUT means the
/// leader wrote it but replication did not finish in time, and
/// DUPLICATE_SEQUENCE_NUMBER means the broker has it already.
pub fn error_means_written(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotEnoughReplicasAfterAppend
            | ErrorCode::RequestTimedOut
            | ErrorCode::DuplicateSequenceNumber
    )
}

/// Faults the cluster draws for every partition of every produce request.
#[derive(Debug, Clone, Default)]
pub struct RandomProduceFaults {
    /// Probability that a partition's produce is answered with one of
    /// `codes` (appended first when [`error_means_written`]).
    pub error_rate: f64,
    /// The error codes to draw from.
    pub codes: Vec<ErrorCode>,
    /// Probability that the batch is appended and the connection closed
    /// before the answer.
    pub reset_after_append_rate: f64,
    /// Probability that the connection is closed before the append.
    pub reset_before_append_rate: f64,
    /// Probability that the batch is appended and the answer never comes.
    pub stall_rate: f64,
}

/// Counters, for reports and for tests that must see a fault happen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Requests handled, by API name.
    pub requests: BTreeMap<&'static str, u64>,
    /// Batches appended to logs.
    pub batches_appended: u64,
    /// Batches recognised as duplicates of ones in the log.
    pub duplicates: u64,
    /// Produce answers that carried an error (injected or not).
    pub produce_errors: u64,
    /// Produce faults injected (errors, resets, stalls).
    pub faults_injected: u64,
    /// Connections closed because a request could not be decoded or asked
    /// for an API this cluster does not serve.
    pub bad_requests: u64,
    /// Responses the simulator itself failed to encode: a simulator bug.
    pub encode_failures: u64,
    /// Group requests answered with an injected error.
    pub group_faults_injected: u64,
    /// Partitions whose OffsetCommit the coordinator accepted.
    pub offsets_committed: u64,
}

/// Something the driver must do for the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterOutput {
    /// Send these bytes (whole response frames) to the client.
    Send {
        /// The connection.
        conn: ServerConnId,
        /// The bytes.
        data: Bytes,
    },
    /// Close the connection (the broker crashed, was told to reset, or
    /// refuses what it read).
    Close {
        /// The connection.
        conn: ServerConnId,
    },
}

/// One partition: its replicas, leader, leader epoch, log and producer
/// state.
#[derive(Debug, Clone)]
pub struct Partition {
    index: i32,
    replicas: Vec<NodeId>,
    leader: Option<NodeId>,
    leader_epoch: i32,
    log: PartitionLog,
    producers: ProducerStates,
}

impl Partition {
    /// The partition's index.
    pub fn index(&self) -> i32 {
        self.index
    }

    /// Its replicas, preferred leader first.
    pub fn replicas(&self) -> &[NodeId] {
        &self.replicas
    }

    /// Its leader, `None` while no replica is up.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Its leader epoch, bumped at every leader change.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Its log.
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// Its idempotent producer state.
    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }
}

/// A topic.
#[derive(Debug, Clone)]
pub struct Topic {
    name: String,
    id: Uuid,
    partitions: Vec<Partition>,
}

impl Topic {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its id (KIP-516).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Its partitions, by index.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// One partition.
    pub fn partition(&self, index: i32) -> Option<&Partition> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

#[derive(Debug, Clone)]
struct Broker {
    addr: BrokerAddr,
    up: bool,
}

/// A Fetch waiting for `min_bytes` or its deadline.
#[derive(Debug)]
struct ParkedFetch {
    deadline: Timestamp,
    version: i16,
    correlation_id: i32,
    req: FetchRequest,
}

#[derive(Debug)]
struct ServerConn {
    node: NodeId,
    reader: FrameReader,
    queue: VecDeque<Bytes>,
    parked: Option<ParkedFetch>,
    /// A request will never be answered; nothing behind it is read.
    stalled: bool,
    /// A JoinGroup or SyncGroup waits for the group; nothing behind it is
    /// read until it is answered.
    awaiting_group: bool,
}

/// The simulated cluster.
#[derive(Debug)]
pub struct Cluster {
    config: ClusterConfig,
    brokers: BTreeMap<NodeId, Broker>,
    topics: BTreeMap<String, Topic>,
    conns: BTreeMap<ServerConnId, ServerConn>,
    next_conn: u64,
    next_producer_id: i64,
    next_placement: usize,
    scripted: BTreeMap<(String, i32), VecDeque<ProduceFault>>,
    random: RandomProduceFaults,
    /// How often group requests meet an injected error.
    group_faults: RandomGroupFaults,
    /// Offset commits the coordinator accepted, since the driver last
    /// took them; `None` unless the driver asked to see them.
    accepted_commits: Option<Vec<AcceptedCommit>>,
    /// Batches a [`Sabotage::AppendRejectedLater`] broker holds back.
    held: BTreeMap<(String, i32), Vec<sansa_core::record::Batch>>,
    rng: SimRng,
    outputs: VecDeque<ClusterOutput>,
    stats: ClusterStats,
    journal: Option<Vec<String>>,
    /// Consumer groups, by id.
    groups: BTreeMap<String, Group>,
    /// Transactional ids, by id.
    transactions: BTreeMap<String, Transaction>,
    /// The latest time the driver gave (for changes made between inputs,
    /// such as a crash that moves a group coordinator).
    now: Timestamp,
    /// Connections whose parked answer was just sent: their queued
    /// requests are read next.
    resume: Vec<ServerConnId>,
    /// Errors scripted for the next transaction requests
    /// ([`Cluster::inject_txn_error`]), in order.
    txn_errors: Vec<(ApiKey, ErrorCode)>,
}

impl Cluster {
    /// A cluster with every broker up and no topics. `rng` decides topic
    /// ids and random produce faults.
    pub fn new(config: ClusterConfig, rng: SimRng) -> Self {
        let brokers = config
            .brokers
            .iter()
            .map(|a| {
                (
                    a.node,
                    Broker {
                        addr: a.clone(),
                        up: true,
                    },
                )
            })
            .collect();
        Cluster {
            config,
            brokers,
            topics: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            next_producer_id: 1000,
            next_placement: 0,
            scripted: BTreeMap::new(),
            random: RandomProduceFaults::default(),
            group_faults: RandomGroupFaults::default(),
            accepted_commits: None,
            held: BTreeMap::new(),
            rng,
            outputs: VecDeque::new(),
            stats: ClusterStats::default(),
            journal: None,
            groups: BTreeMap::new(),
            transactions: BTreeMap::new(),
            now: Timestamp::ZERO,
            resume: Vec::new(),
            txn_errors: Vec::new(),
        }
    }

    /// Keeps a line per produce decision (for failure reports).
    pub fn keep_journal(&mut self, on: bool) {
        self.journal = on.then(Vec::new);
    }

    /// The journal lines written since the last call.
    pub fn take_journal(&mut self) -> Vec<String> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub(crate) fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(j) = &mut self.journal {
            j.push(line());
        }
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// The broker ids, in order.
    pub fn broker_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.brokers.keys().copied()
    }

    /// Whether `node` is up.
    pub fn is_up(&self, node: NodeId) -> bool {
        self.brokers.get(&node).is_some_and(|b| b.up)
    }

    /// The broker listening at `host:port`, as a client dials it.
    pub fn resolve(&self, addr: &str) -> Option<NodeId> {
        self.brokers
            .values()
            .find(|b| b.addr.address() == addr)
            .map(|b| b.addr.node)
    }

    /// Changes where `node` is advertised (the TCP front, once bound).
    pub fn set_address(&mut self, node: NodeId, host: &str, port: i32) {
        if let Some(b) = self.brokers.get_mut(&node) {
            b.addr.host = host.to_owned();
            b.addr.port = port;
        }
        for a in &mut self.config.brokers {
            if a.node == node {
                a.host = host.to_owned();
                a.port = port;
            }
        }
    }

    /// A topic.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// Every topic, by name.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// One partition.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&Partition> {
        self.topics.get(topic)?.partition(partition)
    }

    fn partition_mut(&mut self, topic: &str, partition: i32) -> Option<&mut Partition> {
        self.topics
            .get_mut(topic)?
            .partitions
            .get_mut(usize::try_from(partition).ok()?)
    }

    // ------------------------------------------------------------------
    // Administration and faults
    // ------------------------------------------------------------------

    /// Creates a topic, replicas placed round-robin from a rotating start
    /// (as Kafka's placement does), each partition led by its first live
    /// replica. `replication` is capped by the broker count.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication: i16,
    ) -> Result<&Topic, ErrorCode> {
        let n = self.brokers.len();
        let rf = usize::try_from(replication)
            .ok()
            .filter(|&r| r >= 1 && r <= n)
            .ok_or(ErrorCode::InvalidReplicationFactor)?;
        let ids: Vec<NodeId> = self.brokers.keys().copied().collect();
        let start = self.next_placement;
        self.next_placement += 1;
        let assignment = (0..partitions.max(0) as usize)
            .map(|p| (0..rf).map(|r| ids[(start + p + r) % n]).collect())
            .collect();
        self.create_topic_with(name, assignment)
    }

    /// Creates a topic with explicit replica lists, one per partition.
    pub fn create_topic_with(
        &mut self,
        name: &str,
        assignment: Vec<Vec<NodeId>>,
    ) -> Result<&Topic, ErrorCode> {
        api::validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(ErrorCode::TopicAlreadyExists);
        }
        if assignment.is_empty() {
            return Err(ErrorCode::InvalidPartitions);
        }
        for replicas in &assignment {
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if replicas.is_empty()
                || sorted.len() != replicas.len()
                || replicas.iter().any(|r| !self.brokers.contains_key(r))
            {
                return Err(ErrorCode::InvalidReplicaAssignment);
            }
        }
        let id = Uuid::from_u64_pair(self.rng.next_u64() | 1, self.rng.next_u64());
        let partitions = assignment
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| Partition {
                index: i as i32,
                leader: replicas.iter().copied().find(|r| self.is_up(*r)),
                replicas,
                leader_epoch: 0,
                log: PartitionLog::new(),
                producers: ProducerStates::new(),
            })
            .collect();
        self.topics.insert(
            name.to_owned(),
            Topic {
                name: name.to_owned(),
                id,
                partitions,
            },
        );
        self.topics.get(name).ok_or(ErrorCode::UnknownServerError)
    }

    /// Deletes a topic and its logs.
    pub fn delete_topic(&mut self, name: &str) -> Result<(), ErrorCode> {
        self.topics
            .remove(name)
            .map(|_| ())
            .ok_or(ErrorCode::UnknownTopicOrPartition)
    }

    /// Crashes a broker: its connections close with whatever was in flight
    /// on them, and its partitions move to live replicas (leader epoch
    /// bumped). Its logs stay. Returns false if it was already down.
    pub fn crash(&mut self, node: NodeId) -> bool {
        let Some(b) = self.brokers.get_mut(&node) else {
            return false;
        };
        if !b.up {
            return false;
        }
        b.up = false;
        let gone: Vec<ServerConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.node == node)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.conns.remove(&id);
            self.outputs.push_back(ClusterOutput::Close { conn: id });
        }
        let up: Vec<NodeId> = self
            .brokers
            .values()
            .filter(|b| b.up)
            .map(|b| b.addr.node)
            .collect();
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.leader == Some(node) {
                    p.leader = p.replicas.iter().copied().find(|r| up.contains(r));
                    p.leader_epoch += 1;
                }
            }
        }
        self.groups_after_leader_change();
        true
    }

    /// Restarts a crashed broker: it accepts connections again, rebuilds
    /// producer state from its logs, and leads the partitions that had no
    /// live replica. Returns false if it was up.
    pub fn restart(&mut self, node: NodeId) -> bool {
        let Some(b) = self.brokers.get_mut(&node) else {
            return false;
        };
        if b.up {
            return false;
        }
        b.up = true;
        let lose_tail = self.config.sabotage == Sabotage::LoseLastBatchOnRestart;
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if !p.replicas.contains(&node) {
                    continue;
                }
                if lose_tail {
                    if let Some(last) = p.log.batches().last().map(|b| b.base_offset) {
                        p.log.truncate_to(last);
                    }
                }
                p.producers = ProducerStates::rebuild(&p.log);
                if p.leader.is_none() {
                    p.leader = Some(node);
                    p.leader_epoch += 1;
                }
            }
        }
        self.groups_after_leader_change();
        true
    }

    /// Moves a partition's leadership to `to` (a live replica), or to the
    /// next live replica after the current leader when `to` is `None`,
    /// bumping the leader epoch. Returns the new leader, `None` if no move
    /// was possible.
    pub fn move_leader(
        &mut self,
        topic: &str,
        partition: i32,
        to: Option<NodeId>,
    ) -> Option<NodeId> {
        let up: Vec<NodeId> = self
            .brokers
            .values()
            .filter(|b| b.up)
            .map(|b| b.addr.node)
            .collect();
        let p = self.partition_mut(topic, partition)?;
        let candidates: Vec<NodeId> = p
            .replicas
            .iter()
            .copied()
            .filter(|r| up.contains(r) && Some(*r) != p.leader)
            .collect();
        let next = match to {
            Some(n) => candidates.contains(&n).then_some(n)?,
            None => {
                let cur = p
                    .leader
                    .and_then(|l| p.replicas.iter().position(|&r| r == l))
                    .unwrap_or(0);
                let n = p.replicas.len();
                (1..=n)
                    .map(|k| p.replicas[(cur + k) % n])
                    .find(|r| candidates.contains(r))?
            }
        };
        p.leader = Some(next);
        p.leader_epoch += 1;
        self.groups_after_leader_change();
        Some(next)
    }

    /// Retention or DeleteRecords: moves the log start of a partition to
    /// `offset` (capped at the high watermark) and forgets producers whose
    /// batches are all gone, so their next batch meets the
    /// unknown-producer rules (KIP-360).
    pub fn delete_records(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let Some(p) = self.partition_mut(topic, partition) else {
            return false;
        };
        let moved = p.log.delete_before(offset);
        if moved {
            let start = p.log.log_start_offset();
            p.producers.expire_before(start);
        }
        moved
    }

    /// Appends one record holding `value` to a partition's log, as a
    /// produce would, for checker tests; returns its offset.
    #[cfg(test)]
    pub(crate) fn append_for_test(
        &mut self,
        topic: &str,
        partition: i32,
        value: Bytes,
    ) -> Option<i64> {
        use sansa_core::record::{Batch, BatchBuilder, BatchOptions, BatchStamp, Header};
        let p = self
            .topics
            .get_mut(topic)?
            .partitions
            .get_mut(usize::try_from(partition).ok()?)?;
        let mut builder = BatchBuilder::new(BatchOptions::default());
        builder
            .try_append(0, None, Some(&value), &[] as &[Header])
            .ok()?;
        let sealed = builder.seal(&BatchStamp::default()).ok()?;
        let batch = Batch::parse(sealed.into_bytes()).ok()?;
        Some(p.log.append(&batch, p.leader_epoch).base_offset)
    }

    /// Answers the next request of `api` (InitProducerId with a
    /// transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn or
    /// TxnOffsetCommit) with `code`, without acting on it: the
    /// coordinator errors clients must survive, on demand.
    pub fn inject_txn_error(&mut self, api: ApiKey, code: ErrorCode) {
        self.txn_errors.push((api, code));
    }

    /// Answers the next group request of `api` (JoinGroup, SyncGroup,
    /// Heartbeat, OffsetCommit or OffsetFetch) with `code`, without acting
    /// on it, as [`RandomGroupFaults`] does at random.
    pub fn inject_group_error(&mut self, api: ApiKey, code: ErrorCode) {
        self.txn_errors.push((api, code));
    }

    /// Forgets every scripted transaction error not yet used (healing).
    pub fn clear_txn_errors(&mut self) {
        self.txn_errors.clear();
    }

    /// The error scripted for this request of `api`, if any (taken).
    pub(super) fn take_txn_error(&mut self, api: ApiKey) -> Option<ErrorCode> {
        let i = self.txn_errors.iter().position(|(a, _)| *a == api)?;
        Some(self.txn_errors.remove(i).1)
    }

    /// Scripts the next produce of a partition to meet `fault` (faults
    /// queue up and are used in order).
    pub fn inject_produce_fault(&mut self, topic: &str, partition: i32, fault: ProduceFault) {
        self.scripted
            .entry((topic.to_owned(), partition))
            .or_default()
            .push_back(fault);
    }

    /// Sets the faults drawn for every produce.
    pub fn set_random_produce_faults(&mut self, faults: RandomProduceFaults) {
        self.random = faults;
    }

    /// The faults drawn for every produce.
    pub fn random_produce_faults(&self) -> &RandomProduceFaults {
        &self.random
    }

    // ------------------------------------------------------------------
    // Connections
    // ------------------------------------------------------------------

    /// A client connects to `node`: `None` if the broker is down or
    /// unknown (connection refused).
    pub fn accept(&mut self, node: NodeId) -> Option<ServerConnId> {
        if !self.is_up(node) {
            return None;
        }
        let id = ServerConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            id,
            ServerConn {
                node,
                reader: FrameReader::new(self.config.max_request_bytes),
                queue: VecDeque::new(),
                parked: None,
                stalled: false,
                awaiting_group: false,
            },
        );
        Some(id)
    }

    /// The client closed `conn`, or the network lost it: forget it and
    /// anything it had queued. No output follows.
    pub fn disconnect(&mut self, conn: ServerConnId) {
        self.conns.remove(&conn);
    }

    /// Whether `conn` is open.
    pub fn is_connected(&self, conn: ServerConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Bytes a client wrote on `conn`: whole requests are handled in order.
    pub fn handle_bytes(&mut self, now: Timestamp, conn: ServerConnId, data: &[u8]) {
        self.now = self.now.max(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.reader.push(data);
        loop {
            match c.reader.next_frame() {
                Ok(Some(frame)) => c.queue.push_back(frame),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(conn = conn.0, error = %e, "bad frame; closing");
                    self.stats.bad_requests += 1;
                    self.close(conn);
                    return;
                }
            }
        }
        self.process(now, conn);
        self.resume_released(now);
    }

    /// Reads on from connections whose parked group answer was sent.
    fn resume_released(&mut self, now: Timestamp) {
        while let Some(conn) = self.resume.pop() {
            self.process(now, conn);
        }
    }

    /// The time passed: Fetches whose wait is over are answered, and group
    /// sessions and rebalances that timed out are acted on.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        self.group_timeout(now);
        self.txn_timeout(now);
        self.resume_released(now);
        let due: Vec<ServerConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.parked.as_ref().is_some_and(|p| p.deadline <= now))
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.retry_parked(now, id, true);
        }
        self.resume_released(now);
    }

    /// When [`Cluster::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let fetches = self
            .conns
            .values()
            .filter_map(|c| c.parked.as_ref().map(|p| p.deadline))
            .min();
        [fetches, self.group_poll_timeout(), self.txn_poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next thing to do for the cluster.
    #[must_use = "outputs must be carried out; drain until None"]
    pub fn poll_output(&mut self) -> Option<ClusterOutput> {
        self.outputs.pop_front()
    }

    fn close(&mut self, conn: ServerConnId) {
        if self.conns.remove(&conn).is_some() {
            self.outputs.push_back(ClusterOutput::Close { conn });
        }
    }

    /// Handles queued requests of `conn` until one has to wait.
    fn process(&mut self, now: Timestamp, conn: ServerConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.parked.is_some() || c.stalled || c.awaiting_group {
                return;
            }
            let Some(frame) = c.queue.pop_front() else {
                return;
            };
            let node = c.node;
            self.handle_frame(now, conn, node, frame);
        }
    }

    /// Re-runs a parked Fetch after new data or at its deadline.
    fn retry_parked(&mut self, now: Timestamp, conn: ServerConnId, deadline_passed: bool) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(parked) = c.parked.take() else {
            return;
        };
        let node = c.node;
        let final_try = deadline_passed || parked.deadline <= now;
        if let Some(p) = self.fetch(now, conn, node, parked, final_try) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.parked = Some(p);
            }
            return;
        }
        self.process(now, conn);
    }

    /// New data was appended: parked Fetches look again.
    fn wake_parked(&mut self, now: Timestamp) {
        let parked: Vec<ServerConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.parked.is_some())
            .map(|(&id, _)| id)
            .collect();
        for id in parked {
            self.retry_parked(now, id, false);
        }
    }

    /// Queues a response frame: size, header, body.
    fn respond(
        &mut self,
        conn: ServerConnId,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        body: ResponseBody,
    ) {
        let mut b = BytesMut::new();
        b.put_i32(0);
        let header = ResponseHeader {
            correlation_id,
            ..Default::default()
        };
        let encoded = header
            .encode(&mut b, api.response_header_version(version))
            .and_then(|()| body.encode(&mut b, version));
        match encoded {
            Ok(()) => {
                let size = (b.len() - 4) as i32;
                b[..4].copy_from_slice(&size.to_be_bytes());
                self.outputs.push_back(ClusterOutput::Send {
                    conn,
                    data: b.freeze(),
                });
            }
            Err(e) => {
                tracing::error!(?api, version, error = %e, "simulator failed to encode a response");
                self.stats.encode_failures += 1;
                self.close(conn);
            }
        }
    }
}

#[cfg(test)]
mod eos_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_client_tests;
#[cfg(test)]
mod txn_tests;
