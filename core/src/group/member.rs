//! The classic consumer-group member: FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, and the OffsetFetch / OffsetCommit of
//! what it owns, as one sans-IO state machine.
//!
//! The [`Client`](crate::client::Client) routes what [`Member`] asks for:
//! [`Member::next_target`] says where the next request goes (any broker
//! for FindCoordinator, else the coordinator), [`Member::build_request`]
//! builds it at the version that connection negotiated, and every answer
//! (or its loss) comes back through [`Member::on_response`]. What the
//! member decides for the consumer and the application comes out of
//! [`Member::poll_output`].
//!
//! Rules, and the failures they prevent:
//! - **A partition is owned by one member at a time.** Cooperative
//!   (KIP-429): a member keeps what it owns while the group rebalances and
//!   gives up only what the new assignment took away, then rejoins at
//!   once so the partition can move. Eager: it gives up everything before
//!   it rejoins. A cooperative member that finds the group chose an eager
//!   protocol (an eager-only member joined) gives up everything at once.
//! - **Revoked partitions stop first.** [`GroupOutput::Revoke`] comes
//!   before the commit on revoke, so the consumer drops their buffered
//!   records and nothing of them is handed out after the revoke; the
//!   revoke completes (and the rejoin starts) only after that commit.
//! - **Commits are blocked between join and sync**: a commit is sent only
//!   as a member of a generation, and no JoinGroup is sent while a commit
//!   is in flight, so a commit never races the generation it names.
//!   Commits asked for meanwhile wait for the new generation and then
//!   cover only partitions the member owns in it.
//! - **Committed offsets never move backwards** unless the application
//!   asks ([`super::offsets`]).
//! - **Lost is not revoked**: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION or no
//!   successful heartbeat within the session timeout mean the coordinator
//!   may already have given the partitions away, so they are dropped
//!   without a commit ([`GroupEvent::PartitionsLost`]).
//! - **Static members** (KIP-345) send no LeaveGroup; FENCED_INSTANCE_ID
//!   (another process has the instance id) is fatal and reported. A static
//!   leader told to skip the assignment (KIP-814, JoinGroup v9) syncs
//!   without running the balancer: the coordinator kept the old plan.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::balancer::{
    protocol, BalanceError, GroupMember, JoinSubscription, PartitionsByTopic, TopicLayout,
    NO_GENERATION,
};
use super::config::{GroupConfig, SharedBalancer};
use super::offsets::{EpochOffset, OffsetBook, TopicPartition};
use crate::cluster::{Backoff, NodeId};
use crate::consumer::StartOffset;
use crate::protocol::messages::join_group_request::JoinGroupRequestProtocol;
use crate::protocol::messages::join_group_response::JoinGroupResponseMember;
use crate::protocol::messages::leave_group_request::MemberIdentity;
use crate::protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use crate::protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use crate::protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use crate::protocol::messages::{
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    ResponseBody, SyncGroupRequest, SyncGroupResponse,
};
use crate::protocol::{ApiKey, DecodeError, ErrorCode};
use crate::rng::SeededRng;
use crate::time::Timestamp;

/// The highest version of each group API this member speaks. OffsetFetch
/// v8+ batches groups and OffsetCommit v9+ is for KIP-848 members.
const MAX_VERSIONS: [(ApiKey, i16); 7] = [
    (ApiKey::FindCoordinator, 6),
    (ApiKey::JoinGroup, 9),
    (ApiKey::SyncGroup, 5),
    (ApiKey::Heartbeat, 4),
    (ApiKey::LeaveGroup, 5),
    (ApiKey::OffsetFetch, 7),
    (ApiKey::OffsetCommit, 8),
];

/// The `protocol_type` of consumer groups.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The group coordinator FindCoordinator named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    /// Its node id.
    pub node: NodeId,
    /// Its host.
    pub host: String,
    /// Its port.
    pub port: u16,
}

impl Coordinator {
    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Where the member's next request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any ready broker (FindCoordinator).
    AnyBroker,
    /// The group coordinator.
    Coordinator(Coordinator),
}

/// A request the member wants sent.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum GroupRequest {
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetFetch(OffsetFetchRequest),
    OffsetCommit(OffsetCommitRequest),
}

/// An answer to a [`GroupRequest`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum GroupResponse {
    FindCoordinator(FindCoordinatorResponse),
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetFetch(OffsetFetchResponse),
    OffsetCommit(OffsetCommitResponse),
}

impl GroupResponse {
    /// The group answer in a decoded response body, if it is one.
    pub fn from_body(body: ResponseBody) -> Option<GroupResponse> {
        Some(match body {
            ResponseBody::FindCoordinator(r) => GroupResponse::FindCoordinator(r),
            ResponseBody::JoinGroup(r) => GroupResponse::JoinGroup(r),
            ResponseBody::SyncGroup(r) => GroupResponse::SyncGroup(r),
            ResponseBody::Heartbeat(r) => GroupResponse::Heartbeat(r),
            ResponseBody::LeaveGroup(r) => GroupResponse::LeaveGroup(r),
            ResponseBody::OffsetFetch(r) => GroupResponse::OffsetFetch(r),
            ResponseBody::OffsetCommit(r) => GroupResponse::OffsetCommit(r),
            _ => return None,
        })
    }
}

/// A built request: what to send, at which version, and what to hand back
/// to [`Member::on_response`] with its answer.
#[derive(Debug)]
pub struct Outgoing {
    /// The request.
    pub request: GroupRequest,
    /// Its version.
    pub version: i16,
    /// What it was, for the answer.
    pub in_flight: GroupInFlight,
}

/// A group request on its way, as the member remembers it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInFlight(Lane);

#[derive(Debug, Clone, PartialEq)]
enum Lane {
    Find,
    Join,
    Sync { generation: i32 },
    Heartbeat { generation: i32 },
    Leave,
    OffsetFetch { partitions: Vec<TopicPartition> },
    Commit(SentCommit),
}

/// Identifies a commit in [`GroupEvent::CommitFinished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitId(pub u64);

/// Why a commit was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitReason {
    /// The auto-commit timer.
    Auto,
    /// Partitions were being revoked.
    Revoke,
    /// The member was leaving the group.
    Leave,
    /// The application asked.
    Manual,
}

/// Why a partition's commit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The coordinator refused it with this error.
    #[error("the coordinator refused the commit: {0}")]
    Broker(ErrorCode),
    /// The member left the group or was fenced before it could be sent.
    #[error("the member is no longer in the group")]
    NotInGroup,
}

/// How a commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Which commit.
    pub id: CommitId,
    /// Why it was made.
    pub reason: CommitReason,
    /// The positions the coordinator now holds.
    pub committed: BTreeMap<TopicPartition, EpochOffset>,
    /// The positions it refused, and why.
    pub failed: BTreeMap<TopicPartition, CommitError>,
}

/// Something the member tells the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GroupEvent {
    /// These partitions are now consumed from their committed offsets (or
    /// the reset offset when none is committed).
    PartitionsAssigned(PartitionsByTopic),
    /// These partitions were given up in a rebalance, after the commit on
    /// revoke; nothing of them is handed out any more.
    PartitionsRevoked(PartitionsByTopic),
    /// These partitions were lost (session expired, fenced, unknown
    /// member): they may already belong to another member, so they were
    /// dropped without a commit.
    PartitionsLost(PartitionsByTopic),
    /// A commit finished.
    CommitFinished(CommitOutcome),
    /// Something went wrong; [`GroupError::is_fatal`] says whether the
    /// member stopped.
    Error(GroupError),
}

/// What went wrong in the group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// Another process joined with this member's `group.instance.id`
    /// (KIP-345): this one stopped. Fatal: two processes share an
    /// instance id, or a restarted one raced its old self (franz-go #931).
    #[error("fenced: another member joined with instance id {instance_id:?}; this member stopped")]
    FencedInstanceId {
        /// The instance id.
        instance_id: String,
    },
    /// The coordinator answered a request with an error the member retries
    /// after a backoff (authorization, group full, bad session timeout).
    #[error("{api:?} failed: {error}")]
    Broker {
        /// The request.
        api: ApiKey,
        /// The error.
        error: ErrorCode,
    },
    /// The leader could not balance the group (undecodable metadata of a
    /// member); the group rebalances again.
    #[error("balancing the group failed: {0}")]
    Balance(BalanceError),
    /// The coordinator chose a protocol this member did not offer.
    #[error("the coordinator chose protocol {0:?}, which this member did not offer")]
    UnknownProtocol(String),
    /// The leader's plan could not be encoded (a topic name too long for
    /// the wire).
    #[error("cannot encode the assignment: {0}")]
    EncodeAssignment(String),
    /// The assignment from SyncGroup could not be decoded.
    #[error("undecodable assignment: {0}")]
    InvalidAssignment(DecodeError),
    /// The coordinator does not speak a version of this API the member
    /// needs (static membership needs JoinGroup v5+, Kafka 2.3+). Fatal.
    #[error("the coordinator does not support {0:?} as this member needs it")]
    Unsupported(ApiKey),
}

impl GroupError {
    /// Whether the member stopped for good.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            GroupError::FencedInstanceId { .. } | GroupError::Unsupported(_)
        )
    }
}

/// What the member tells its client.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupOutput {
    /// Start consuming these partitions at these offsets.
    Assign(BTreeMap<String, BTreeMap<i32, StartOffset>>),
    /// Stop consuming these partitions now and drop what is buffered of
    /// them.
    Revoke(PartitionsByTopic),
    /// Tell the application.
    Event(GroupEvent),
}

/// Where the member is in the group's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing subscribed.
    Idle,
    /// A JoinGroup is due or in flight.
    Joining,
    /// The leader waits for the layout of the members' topics.
    AwaitingLayout,
    /// A SyncGroup is due or in flight.
    Syncing,
    /// A member of a generation: heartbeating.
    Stable,
    /// A LeaveGroup is due or in flight.
    Leaving,
    /// Out of the group for good (left or fatal).
    Done,
}

/// The member's timers (quinn-proto's table of named deadlines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Backoff before the next FindCoordinator or JoinGroup.
    Retry,
    /// The next heartbeat.
    Heartbeat,
    /// No successful heartbeat by then: the partitions are lost.
    Session,
    /// The next auto-commit.
    AutoCommit,
    /// Backoff before the next OffsetFetch.
    FetchRetry,
    /// Backoff before the next OffsetCommit.
    CommitRetry,
}

const TIMERS: usize = 6;

#[derive(Debug, Default)]
struct Timers([Option<Timestamp>; TIMERS]);

impl Timers {
    fn set(&mut self, t: Timer, at: Timestamp) {
        self.0[t as usize] = Some(at);
    }
    fn stop(&mut self, t: Timer) {
        self.0[t as usize] = None;
    }
    fn get(&self, t: Timer) -> Option<Timestamp> {
        self.0[t as usize]
    }
    /// Not set, or passed.
    fn clear_by(&self, t: Timer, now: Timestamp) -> bool {
        self.get(t).is_none_or(|at| at <= now)
    }
    fn fired(&self, t: Timer, now: Timestamp) -> bool {
        self.get(t).is_some_and(|at| at <= now)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct QueuedCommit {
    id: CommitId,
    reason: CommitReason,
    /// Explicit positions; `None` takes what is uncommitted at send time.
    offsets: Option<BTreeMap<TopicPartition, EpochOffset>>,
    allow_backwards: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct SentCommit {
    id: CommitId,
    reason: CommitReason,
    offsets: BTreeMap<TopicPartition, EpochOffset>,
    queued: QueuedCommit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRevoke {
    Rejoin,
    Leave,
}

#[derive(Debug)]
struct Revoking {
    partitions: PartitionsByTopic,
    then: AfterRevoke,
    commit: Option<CommitId>,
    announced: bool,
}

/// The leader's JoinGroup answer, kept until the layout arrives.
#[derive(Debug)]
struct LeaderJoin {
    protocol: String,
    members: Vec<JoinGroupResponseMember>,
    /// Every member's subscribed topics (those that decode), decoded once.
    topics: BTreeSet<String>,
}

/// The classic-protocol group member. See the module doc.
#[derive(Debug)]
pub struct Member {
    config: GroupConfig,
    /// Where partitions with no committed offset start.
    reset: StartOffset,
    backoff: Backoff,
    rng: SeededRng,
    topics: Vec<String>,
    phase: Phase,
    coordinator: Option<Coordinator>,
    member_id: String,
    generation: i32,
    /// Whether the protocol of the current generation is cooperative.
    cooperative: bool,
    /// Partitions this member owns now: the consumer may hold them.
    owned: PartitionsByTopic,
    /// The latest assignment, reported in JoinGroup (the eager sticky
    /// balancer wants it back even after an eager revoke).
    assignment: PartitionsByTopic,
    /// Owned partitions waiting for their committed offsets.
    fetch_pending: BTreeSet<TopicPartition>,
    leader_join: Option<LeaderJoin>,
    sync_assignments: Vec<SyncGroupRequestAssignment>,
    revoking: Option<Revoking>,
    /// The application must call `allow_rebalance` before the next step.
    blocked: bool,
    book: OffsetBook,
    commits: VecDeque<QueuedCommit>,
    next_commit: u64,
    find_in_flight: bool,
    membership_in_flight: bool,
    heartbeat_in_flight: bool,
    fetch_in_flight: bool,
    commit_in_flight: bool,
    failures: u32,
    timers: Timers,
    outputs: VecDeque<GroupOutput>,
}

impl Member {
    /// A member that has not joined; [`Member::subscribe`] starts it.
    /// `reset` is where partitions with no committed offset start.
    pub fn new(config: GroupConfig, reset: StartOffset, backoff: Backoff, seed: u64) -> Self {
        let cooperative = config.balancers.iter().all(|b| b.is_cooperative());
        Member {
            config,
            reset,
            backoff,
            rng: SeededRng::new(seed),
            topics: Vec::new(),
            phase: Phase::Idle,
            coordinator: None,
            member_id: String::new(),
            generation: NO_GENERATION,
            cooperative,
            owned: PartitionsByTopic::new(),
            assignment: PartitionsByTopic::new(),
            fetch_pending: BTreeSet::new(),
            leader_join: None,
            sync_assignments: Vec::new(),
            revoking: None,
            blocked: false,
            book: OffsetBook::default(),
            commits: VecDeque::new(),
            next_commit: 0,
            find_in_flight: false,
            membership_in_flight: false,
            heartbeat_in_flight: false,
            fetch_in_flight: false,
            commit_in_flight: false,
            failures: 0,
            timers: Timers::default(),
            outputs: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The subscribed topics.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The member id the coordinator gave (empty before the first join).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation, [`NO_GENERATION`] when in none.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The partitions this member owns now.
    pub fn owned(&self) -> &PartitionsByTopic {
        &self.owned
    }

    /// The coordinator, once found.
    pub fn coordinator(&self) -> Option<&Coordinator> {
        self.coordinator.as_ref()
    }

    /// Whether the member left the group or stopped for good.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Whether the member is between a JoinGroup and its SyncGroup (when
    /// commits wait).
    pub fn is_rebalancing(&self) -> bool {
        matches!(
            self.phase,
            Phase::Joining | Phase::AwaitingLayout | Phase::Syncing
        )
    }

    /// Adds topics to the subscription and joins (or rejoins, so the
    /// leader sees the new topics).
    pub fn subscribe<I: IntoIterator<Item = String>>(&mut self, now: Timestamp, topics: I) {
        let before = self.topics.len();
        self.topics.extend(topics);
        self.topics.sort();
        self.topics.dedup();
        match self.phase {
            Phase::Idle => {
                self.phase = Phase::Joining;
                if let Some(d) = self.config.auto_commit {
                    self.timers.set(Timer::AutoCommit, now + d);
                }
            }
            Phase::Stable if self.topics.len() != before => self.rejoin(now),
            _ => {}
        }
    }

    // ------------------------------------------------------------------
    // Application commands
    // ------------------------------------------------------------------

    /// Records what the application polled: for each partition, the
    /// offset after its last record and that record's leader epoch.
    pub fn on_polled<'a>(&mut self, polled: impl IntoIterator<Item = (&'a str, i32, EpochOffset)>) {
        self.book.on_polled(polled);
    }

    /// Commits everything polled and not yet committed.
    pub fn commit_uncommitted(&mut self) -> CommitId {
        self.enqueue_commit(CommitReason::Manual, None, false)
    }

    /// Commits these positions (of owned partitions). Unless
    /// `allow_backwards`, a position at or below what is committed is left
    /// out.
    pub fn commit_offsets(
        &mut self,
        offsets: BTreeMap<TopicPartition, EpochOffset>,
        allow_backwards: bool,
    ) -> CommitId {
        self.enqueue_commit(CommitReason::Manual, Some(offsets), allow_backwards)
    }

    /// Lets a rebalance step held by `require_rebalance_ack` go on.
    pub fn allow_rebalance(&mut self, _now: Timestamp) {
        self.blocked = false;
    }

    /// Leaves the group: a final revoke with a blocking commit, then a
    /// LeaveGroup unless the member is static (KIP-345: a static member's
    /// assignment waits for it to come back within the session timeout).
    pub fn leave(&mut self, now: Timestamp) {
        // Closing is the application's last word: it waits for no
        // acknowledgement of its own.
        self.blocked = false;
        match self.phase {
            Phase::Idle | Phase::Done => {
                self.phase = Phase::Done;
                self.fail_queued_commits();
            }
            Phase::Leaving => {}
            Phase::Stable => {
                if let Some(r) = &mut self.revoking {
                    r.then = AfterRevoke::Leave;
                } else {
                    self.start_revoke(now, self.owned.clone(), AfterRevoke::Leave, true);
                }
            }
            Phase::Joining | Phase::AwaitingLayout | Phase::Syncing => {
                // Between join and sync there is no generation to commit
                // in: give the partitions up uncommitted.
                let owned = std::mem::take(&mut self.owned);
                if !owned.is_empty() {
                    self.drop_partitions(&owned);
                    self.outputs.push_back(GroupOutput::Revoke(owned.clone()));
                    self.emit(GroupEvent::PartitionsRevoked(owned));
                }
                self.start_leave_request();
            }
        }
        self.advance(now);
    }

    fn enqueue_commit(
        &mut self,
        reason: CommitReason,
        offsets: Option<BTreeMap<TopicPartition, EpochOffset>>,
        allow_backwards: bool,
    ) -> CommitId {
        self.next_commit += 1;
        let id = CommitId(self.next_commit);
        let c = QueuedCommit {
            id,
            reason,
            offsets,
            allow_backwards,
        };
        if self.phase == Phase::Done {
            self.outputs
                .push_back(GroupOutput::Event(GroupEvent::CommitFinished(
                    not_in_group(&c),
                )));
        } else {
            self.commits.push_back(c);
        }
        id
    }

    // ------------------------------------------------------------------
    // Requests
    // ------------------------------------------------------------------

    /// Where the next request goes, if one is due. Call until `None` or
    /// until the target's connection is not ready; build each with
    /// [`Member::build_request`].
    pub fn next_target(&self, now: Timestamp) -> Option<Target> {
        self.next_lane(now).map(|(_, t)| t)
    }

    fn next_lane(&self, now: Timestamp) -> Option<(LaneKind, Target)> {
        if matches!(self.phase, Phase::Idle | Phase::Done) {
            return None;
        }
        let Some(coordinator) = &self.coordinator else {
            let wanted = !self.find_in_flight && self.timers.clear_by(Timer::Retry, now);
            return wanted.then_some((LaneKind::Find, Target::AnyBroker));
        };
        let to = || Target::Coordinator(coordinator.clone());
        if !self.membership_in_flight {
            match self.phase {
                Phase::Joining
                    if self.timers.clear_by(Timer::Retry, now)
                        && !self.blocked
                        && !self.commit_in_flight
                        && self.revoking.is_none() =>
                {
                    return Some((LaneKind::Join, to()));
                }
                Phase::Syncing => return Some((LaneKind::Sync, to())),
                Phase::Leaving if self.revoking.is_none() && !self.commit_in_flight => {
                    return Some((LaneKind::Leave, to()));
                }
                _ => {}
            }
        }
        if self.phase == Phase::Stable {
            if !self.heartbeat_in_flight && self.timers.fired(Timer::Heartbeat, now) {
                return Some((LaneKind::Heartbeat, to()));
            }
            if !self.fetch_in_flight
                && !self.fetch_pending.is_empty()
                && self.timers.clear_by(Timer::FetchRetry, now)
            {
                return Some((LaneKind::OffsetFetch, to()));
            }
            if !self.commit_in_flight
                && !self.commits.is_empty()
                && self.timers.clear_by(Timer::CommitRetry, now)
            {
                return Some((LaneKind::Commit, to()));
            }
        }
        None
    }

    /// Builds the request [`Member::next_target`] announced, at a version
    /// `negotiate(api, cap)` picks with the target connection (`None` if
    /// the broker speaks none). `None` if nothing is due after all.
    pub fn build_request(
        &mut self,
        now: Timestamp,
        negotiate: &mut dyn FnMut(ApiKey, i16) -> Option<i16>,
    ) -> Option<Outgoing> {
        let (lane, _) = self.next_lane(now)?;
        let api = lane.api();
        let cap = MAX_VERSIONS
            .iter()
            .find(|(k, _)| *k == api)
            .map_or(0, |(_, v)| *v);
        let Some(version) = negotiate(api, cap) else {
            self.fatal(now, GroupError::Unsupported(api));
            return None;
        };
        let group_id = self.config.group_id.clone();
        let instance_id = self.config.instance_id.clone();
        let out = match lane {
            LaneKind::Find => {
                self.find_in_flight = true;
                let mut req = FindCoordinatorRequest::default();
                if version >= 4 {
                    req.coordinator_keys = vec![group_id];
                } else {
                    req.key = group_id;
                }
                (GroupRequest::FindCoordinator(req), Lane::Find)
            }
            LaneKind::Join => {
                if instance_id.is_some() && version < 5 {
                    self.fatal(now, GroupError::Unsupported(ApiKey::JoinGroup));
                    return None;
                }
                let protocols = match self.join_protocols() {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode member metadata");
                        self.fatal(now, GroupError::Unsupported(ApiKey::JoinGroup));
                        return None;
                    }
                };
                self.membership_in_flight = true;
                let req = JoinGroupRequest {
                    group_id,
                    session_timeout_ms: millis(self.config.session_timeout),
                    rebalance_timeout_ms: millis(self.config.rebalance_timeout),
                    member_id: self.member_id.clone(),
                    group_instance_id: instance_id,
                    protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
                    protocols,
                    ..Default::default()
                };
                (GroupRequest::JoinGroup(req), Lane::Join)
            }
            LaneKind::Sync => {
                if instance_id.is_some() && version < 3 {
                    self.fatal(now, GroupError::Unsupported(ApiKey::SyncGroup));
                    return None;
                }
                self.membership_in_flight = true;
                let protocol = self.leader_join.as_ref().map(|j| j.protocol.clone());
                let req = SyncGroupRequest {
                    group_id,
                    generation_id: self.generation,
                    member_id: self.member_id.clone(),
                    group_instance_id: instance_id,
                    protocol_type: (version >= 5).then(|| CONSUMER_PROTOCOL_TYPE.into()),
                    protocol_name: protocol.filter(|_| version >= 5),
                    assignments: std::mem::take(&mut self.sync_assignments),
                    ..Default::default()
                };
                (
                    GroupRequest::SyncGroup(req),
                    Lane::Sync {
                        generation: self.generation,
                    },
                )
            }
            LaneKind::Heartbeat => {
                self.heartbeat_in_flight = true;
                self.timers
                    .set(Timer::Heartbeat, now + self.config.heartbeat_interval);
                let req = HeartbeatRequest {
                    group_id,
                    generation_id: self.generation,
                    member_id: self.member_id.clone(),
                    group_instance_id: instance_id.filter(|_| version >= 3),
                    ..Default::default()
                };
                (
                    GroupRequest::Heartbeat(req),
                    Lane::Heartbeat {
                        generation: self.generation,
                    },
                )
            }
            LaneKind::Leave => {
                self.membership_in_flight = true;
                let mut req = LeaveGroupRequest {
                    group_id,
                    ..Default::default()
                };
                if version >= 3 {
                    req.members = vec![MemberIdentity {
                        member_id: self.member_id.clone(),
                        ..Default::default()
                    }];
                } else {
                    req.member_id = self.member_id.clone();
                }
                (GroupRequest::LeaveGroup(req), Lane::Leave)
            }
            LaneKind::OffsetFetch => {
                self.fetch_in_flight = true;
                let partitions: Vec<TopicPartition> = self.fetch_pending.iter().cloned().collect();
                let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for (t, p) in &partitions {
                    by_topic.entry(t).or_default().push(*p);
                }
                let req = OffsetFetchRequest {
                    group_id,
                    topics: Some(
                        by_topic
                            .into_iter()
                            .map(|(name, partition_indexes)| OffsetFetchRequestTopic {
                                name: name.to_string(),
                                partition_indexes,
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    // Wait for transactional offsets still being written
                    // (KIP-447) rather than start from stale ones.
                    require_stable: version >= 7,
                    ..Default::default()
                };
                (
                    GroupRequest::OffsetFetch(req),
                    Lane::OffsetFetch { partitions },
                )
            }
            LaneKind::Commit => {
                let queued = self.commits.pop_front()?;
                let offsets = self.resolve_commit(&queued);
                if offsets.is_empty() {
                    self.emit(GroupEvent::CommitFinished(CommitOutcome {
                        id: queued.id,
                        reason: queued.reason,
                        committed: BTreeMap::new(),
                        failed: BTreeMap::new(),
                    }));
                    self.advance(now);
                    return self.build_request(now, negotiate);
                }
                self.commit_in_flight = true;
                self.book.on_commit_sent(&offsets);
                let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> =
                    BTreeMap::new();
                for ((t, p), at) in &offsets {
                    by_topic
                        .entry(t)
                        .or_default()
                        .push(OffsetCommitRequestPartition {
                            partition_index: *p,
                            committed_offset: at.offset,
                            committed_leader_epoch: if version >= 6 { at.leader_epoch } else { -1 },
                            ..Default::default()
                        });
                }
                let req = OffsetCommitRequest {
                    group_id,
                    generation_id_or_member_epoch: self.generation,
                    member_id: self.member_id.clone(),
                    group_instance_id: instance_id.filter(|_| version >= 7),
                    topics: by_topic
                        .into_iter()
                        .map(|(name, partitions)| OffsetCommitRequestTopic {
                            name: name.to_string(),
                            partitions,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                };
                tracing::debug!(id = queued.id.0, reason = ?queued.reason, n = offsets.len(), generation = self.generation, "committing");
                (
                    GroupRequest::OffsetCommit(req),
                    Lane::Commit(SentCommit {
                        id: queued.id,
                        reason: queued.reason,
                        offsets,
                        queued,
                    }),
                )
            }
        };
        Some(Outgoing {
            request: out.0,
            version,
            in_flight: GroupInFlight(out.1),
        })
    }

    /// The positions a queued commit covers now: owned partitions only,
    /// forward only unless asked.
    fn resolve_commit(&self, c: &QueuedCommit) -> BTreeMap<TopicPartition, EpochOffset> {
        let wanted = match (&c.offsets, c.reason) {
            (Some(o), _) => o.clone(),
            (None, CommitReason::Auto) => self.book.heads_to_commit(),
            (None, _) => self.book.uncommitted(),
        };
        let owned: BTreeMap<TopicPartition, EpochOffset> = wanted
            .into_iter()
            .filter(|((t, p), _)| owns(&self.owned, t, *p))
            .collect();
        self.book.filter_commit(owned, c.allow_backwards)
    }

    fn join_protocols(
        &self,
    ) -> Result<Vec<JoinGroupRequestProtocol>, crate::protocol::EncodeError> {
        let join = JoinSubscription {
            topics: &self.topics,
            owned: if self.cooperative {
                &self.owned
            } else {
                &self.assignment
            },
            generation: self.generation,
            rack: self.config.rack.as_deref(),
        };
        self.config
            .balancers
            .iter()
            .map(|b| {
                Ok(JoinGroupRequestProtocol {
                    name: b.protocol_name().to_string(),
                    metadata: b.member_metadata(&join)?,
                    ..Default::default()
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------
    // Answers
    // ------------------------------------------------------------------

    /// Handles the answer to a request built by [`Member::build_request`];
    /// `None` when it was lost (connection closed, request timed out).
    pub fn on_response(
        &mut self,
        now: Timestamp,
        in_flight: GroupInFlight,
        resp: Option<GroupResponse>,
    ) {
        match (in_flight.0, resp) {
            (Lane::Find, Some(GroupResponse::FindCoordinator(r))) => self.on_find(now, &r),
            (Lane::Join, Some(GroupResponse::JoinGroup(r))) => self.on_join(now, r),
            (Lane::Sync { generation }, Some(GroupResponse::SyncGroup(r))) => {
                self.on_sync(now, generation, r)
            }
            (Lane::Heartbeat { generation }, Some(GroupResponse::Heartbeat(r))) => {
                self.on_heartbeat(now, generation, ErrorCode::from_code(r.error_code))
            }
            (Lane::Leave, Some(GroupResponse::LeaveGroup(r))) => {
                self.membership_in_flight = false;
                let e = ErrorCode::from_code(r.error_code);
                if !e.is_ok() {
                    tracing::info!(error = %e, "LeaveGroup failed; the session timeout expels the member");
                }
                self.phase = Phase::Done;
            }
            (Lane::OffsetFetch { partitions }, Some(GroupResponse::OffsetFetch(r))) => {
                self.on_offset_fetch(now, partitions, &r)
            }
            (Lane::Commit(c), Some(GroupResponse::OffsetCommit(r))) => {
                self.on_commit(now, c, Some(&r))
            }
            (lane, resp) => {
                if resp.is_some() {
                    tracing::error!(?lane, "group answer of the wrong kind");
                }
                self.on_lost(now, lane);
            }
        }
        self.advance(now);
    }

    /// A request got no answer: find the coordinator again and retry what
    /// it carried.
    fn on_lost(&mut self, now: Timestamp, lane: Lane) {
        self.coordinator_failed(now);
        match lane {
            Lane::Find => self.find_in_flight = false,
            Lane::Join | Lane::Sync { .. } => {
                self.membership_in_flight = false;
                if self.phase != Phase::Leaving {
                    self.rejoin_later(now);
                }
            }
            Lane::Heartbeat { .. } => self.heartbeat_in_flight = false,
            Lane::Leave => {
                // A static member never gets here; a dynamic one that
                // cannot say goodbye is expelled by its session timeout.
                self.membership_in_flight = false;
                self.phase = Phase::Done;
            }
            Lane::OffsetFetch { .. } => self.fetch_in_flight = false,
            Lane::Commit(c) => self.on_commit(now, c, None),
        }
    }

    fn coordinator_failed(&mut self, now: Timestamp) {
        if self.coordinator.take().is_some() {
            tracing::info!("looking for the group coordinator again");
        }
        self.failures += 1;
        let d = self.backoff.delay(self.failures, &mut self.rng);
        self.timers.set(Timer::Retry, now + d);
    }

    fn backoff_delay(&mut self) -> Duration {
        self.failures += 1;
        self.backoff.delay(self.failures, &mut self.rng)
    }

    fn on_find(&mut self, now: Timestamp, r: &FindCoordinatorResponse) {
        self.find_in_flight = false;
        // v4+ answers per key; earlier versions at the top level.
        let found = match r
            .coordinators
            .iter()
            .find(|c| c.key == self.config.group_id)
        {
            Some(c) => (c.error_code, c.node_id, c.host.as_str(), c.port),
            None => (r.error_code, r.node_id, r.host.as_str(), r.port),
        };
        let (code, node, host, port) = found;
        let error = ErrorCode::from_code(code);
        let port = u16::try_from(port).ok();
        match (error.is_ok(), port) {
            (true, Some(port)) if node >= 0 && !host.is_empty() => {
                tracing::debug!(node, host, port, "group coordinator found");
                self.coordinator = Some(Coordinator {
                    node: NodeId(node),
                    host: host.to_string(),
                    port,
                });
                self.timers.stop(Timer::Retry);
            }
            _ => {
                if !error.is_retriable() && !error.is_ok() {
                    self.emit(GroupEvent::Error(GroupError::Broker {
                        api: ApiKey::FindCoordinator,
                        error,
                    }));
                }
                let d = self.backoff_delay();
                self.timers.set(Timer::Retry, now + d);
            }
        }
    }

    fn on_join(&mut self, now: Timestamp, r: JoinGroupResponse) {
        self.membership_in_flight = false;
        if self.phase != Phase::Joining {
            return; // left meanwhile
        }
        let error = ErrorCode::from_code(r.error_code);
        if !error.is_ok() {
            if error == ErrorCode::MemberIdRequired {
                // KIP-394: the coordinator assigned an id; join with it at
                // once.
                self.member_id = r.member_id;
                return;
            }
            self.membership_error(now, ApiKey::JoinGroup, error);
            return;
        }
        let protocol = r.protocol_name.unwrap_or_default();
        let Some(balancer) = self.balancer(&protocol) else {
            self.emit(GroupEvent::Error(GroupError::UnknownProtocol(protocol)));
            self.rejoin_later(now);
            return;
        };
        let cooperative = balancer.is_cooperative();
        self.member_id = r.member_id;
        self.generation = r.generation_id;
        if self.cooperative && !cooperative && !self.owned.is_empty() {
            // An eager-only member joined and the group went eager: an
            // eager member owns nothing while the group syncs. The new
            // generation exists already, so there is no committing.
            tracing::info!(
                protocol,
                "group chose an eager protocol; giving up every partition"
            );
            let owned = std::mem::take(&mut self.owned);
            self.drop_partitions(&owned);
            self.outputs.push_back(GroupOutput::Revoke(owned.clone()));
            self.emit_blocking(GroupEvent::PartitionsRevoked(owned));
        }
        self.cooperative = cooperative;
        self.failures = 0;
        self.timers
            .set(Timer::Session, now + self.config.session_timeout);
        let leader = r.leader == self.member_id;
        tracing::info!(
            generation = self.generation,
            member = %self.member_id,
            leader,
            protocol,
            skip_assignment = r.skip_assignment,
            "joined the group"
        );
        if leader && !r.skip_assignment {
            let mut topics: BTreeSet<String> = self.topics.iter().cloned().collect();
            for m in &r.members {
                if let Ok(sub) = protocol::decode_subscription(m.metadata.clone()) {
                    topics.extend(sub.topics);
                }
            }
            self.leader_join = Some(LeaderJoin {
                protocol,
                members: r.members,
                topics,
            });
            self.phase = Phase::AwaitingLayout;
        } else {
            // A follower, or a static leader the coordinator told to keep
            // the plan it has (KIP-814): sync without assignments.
            self.leader_join = Some(LeaderJoin {
                protocol,
                members: Vec::new(),
                topics: BTreeSet::new(),
            });
            self.sync_assignments.clear();
            self.phase = Phase::Syncing;
        }
    }

    fn balancer(&self, protocol: &str) -> Option<SharedBalancer> {
        self.config
            .balancers
            .iter()
            .find(|b| b.protocol_name() == protocol)
            .cloned()
    }

    /// The topics the leader needs the layout of: every member's
    /// subscription. `None` unless the member leads and waits for it.
    pub fn layout_wanted(&self) -> Option<BTreeSet<String>> {
        if self.phase != Phase::AwaitingLayout {
            return None;
        }
        self.leader_join.as_ref().map(|j| j.topics.clone())
    }

    /// Gives the leader the partition layout of [`Member::layout_wanted`]'s
    /// topics; it balances and syncs.
    pub fn provide_layout(&mut self, now: Timestamp, layout: &TopicLayout) {
        if self.phase != Phase::AwaitingLayout {
            return;
        }
        let Some(join) = self.leader_join.take() else {
            return;
        };
        let plan = self
            .balancer(&join.protocol)
            .ok_or_else(|| GroupError::UnknownProtocol(join.protocol.clone()))
            .and_then(|b| {
                let members = join
                    .members
                    .iter()
                    .map(|m| {
                        GroupMember::from_metadata(
                            m.member_id.clone(),
                            m.group_instance_id.clone(),
                            m.metadata.clone(),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(GroupError::Balance)?;
                let plan = b.assign(&members, layout).map_err(GroupError::Balance)?;
                plan.encode_assignments()
                    .map_err(|e| GroupError::EncodeAssignment(e.to_string()))
            });
        match plan {
            Ok(assignments) => {
                self.sync_assignments = assignments
                    .into_iter()
                    .map(|(member_id, assignment)| SyncGroupRequestAssignment {
                        member_id,
                        assignment,
                        ..Default::default()
                    })
                    .collect();
                self.leader_join = Some(LeaderJoin {
                    protocol: join.protocol,
                    members: Vec::new(),
                    topics: BTreeSet::new(),
                });
                self.phase = Phase::Syncing;
            }
            Err(e) => {
                tracing::error!(error = %e, "balancing failed");
                self.emit(GroupEvent::Error(e));
                self.rejoin_later(now);
            }
        }
        self.advance(now);
    }

    fn on_sync(&mut self, now: Timestamp, generation: i32, r: SyncGroupResponse) {
        self.membership_in_flight = false;
        if self.phase != Phase::Syncing || generation != self.generation {
            return;
        }
        let error = ErrorCode::from_code(r.error_code);
        if !error.is_ok() {
            self.membership_error(now, ApiKey::SyncGroup, error);
            return;
        }
        let assigned = if r.assignment.is_empty() {
            PartitionsByTopic::new()
        } else {
            match protocol::decode_assignment(r.assignment) {
                // A partition number below zero names no partition.
                Ok(a) => a
                    .partitions
                    .into_iter()
                    .map(|(t, ps)| (t, ps.into_iter().filter(|&p| p >= 0).collect::<Vec<_>>()))
                    .filter(|(_, ps)| !ps.is_empty())
                    .collect(),
                Err(e) => {
                    self.emit(GroupEvent::Error(GroupError::InvalidAssignment(e)));
                    self.rejoin_later(now);
                    return;
                }
            }
        };
        self.failures = 0;
        self.phase = Phase::Stable;
        self.timers
            .set(Timer::Heartbeat, now + self.config.heartbeat_interval);
        self.timers
            .set(Timer::Session, now + self.config.session_timeout);
        let lost = difference(&self.owned, &assigned);
        let added = difference(&assigned, &self.owned);
        tracing::info!(
            generation = self.generation,
            assigned = count(&assigned),
            added = count(&added),
            revoking = count(&lost),
            "synced"
        );
        // Owned until the revoke completes: the lost partitions stay, so
        // the commit on revoke may still cover them.
        self.owned = union(&assigned, &lost);
        self.assignment = assigned;
        for (t, ps) in &added {
            for &p in ps {
                self.fetch_pending.insert((t.clone(), p));
            }
        }
        if !lost.is_empty() {
            // KIP-429: give up what moved, then rejoin at once so the
            // next round can hand it to its new owner.
            self.start_revoke(now, lost, AfterRevoke::Rejoin, true);
        }
    }

    fn on_heartbeat(&mut self, now: Timestamp, generation: i32, error: ErrorCode) {
        self.heartbeat_in_flight = false;
        if self.phase != Phase::Stable || generation != self.generation {
            return;
        }
        if error.is_ok() {
            self.timers
                .set(Timer::Session, now + self.config.session_timeout);
            return;
        }
        match error {
            ErrorCode::RebalanceInProgress => {
                tracing::info!("the group is rebalancing; rejoining");
                if self.revoking.is_none() {
                    self.rejoin(now);
                }
            }
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
                self.coordinator_failed(now)
            }
            ErrorCode::UnknownMemberId
            | ErrorCode::IllegalGeneration
            | ErrorCode::FencedInstanceId => self.membership_error(now, ApiKey::Heartbeat, error),
            other => {
                tracing::warn!(error = %other, "heartbeat failed");
            }
        }
    }

    /// An error answer to JoinGroup, SyncGroup, Heartbeat or OffsetCommit
    /// that concerns the membership.
    fn membership_error(&mut self, now: Timestamp, api: ApiKey, error: ErrorCode) {
        tracing::info!(?api, %error, "group membership error");
        match error {
            ErrorCode::FencedInstanceId => {
                let instance_id = self.config.instance_id.clone().unwrap_or_default();
                self.fatal(now, GroupError::FencedInstanceId { instance_id });
            }
            ErrorCode::UnknownMemberId => {
                // The coordinator forgot this member: its partitions may be
                // someone else's already. A static member forgets its id
                // too: joining again with the unknown id would get
                // UNKNOWN_MEMBER_ID forever, while the instance id gets its
                // assignment back.
                self.lose_all(now);
                self.member_id.clear();
                self.phase_after_loss(now, false);
            }
            ErrorCode::IllegalGeneration => {
                self.lose_all(now);
                self.phase_after_loss(now, false);
            }
            ErrorCode::RebalanceInProgress => {
                if self.phase != Phase::Stable {
                    self.phase = Phase::Joining;
                } else if self.revoking.is_none() {
                    self.rejoin(now);
                }
            }
            ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::CoordinatorLoadInProgress => {
                self.coordinator_failed(now);
                if self.phase != Phase::Stable {
                    self.phase = Phase::Joining;
                }
            }
            other => {
                self.emit(GroupEvent::Error(GroupError::Broker { api, error: other }));
                if self.phase != Phase::Stable {
                    self.rejoin_later(now);
                }
            }
        }
    }

    fn phase_after_loss(&mut self, now: Timestamp, backoff: bool) {
        if self.phase == Phase::Leaving || self.phase == Phase::Done {
            return;
        }
        if matches!(
            self.revoking.as_ref().map(|r| r.then),
            Some(AfterRevoke::Leave)
        ) {
            self.revoking = None;
            self.phase = Phase::Done;
            return;
        }
        self.revoking = None;
        self.phase = Phase::Joining;
        if backoff {
            let d = self.backoff_delay();
            self.timers.set(Timer::Retry, now + d);
        }
    }

    fn on_offset_fetch(
        &mut self,
        now: Timestamp,
        partitions: Vec<TopicPartition>,
        r: &OffsetFetchResponse,
    ) {
        self.fetch_in_flight = false;
        let top = ErrorCode::from_code(r.error_code);
        if !top.is_ok() {
            self.offset_fetch_failed(now, top);
            return;
        }
        let asked: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        let mut assign: BTreeMap<String, BTreeMap<i32, StartOffset>> = BTreeMap::new();
        let mut assigned = PartitionsByTopic::new();
        let mut retry: Option<ErrorCode> = None;
        for t in &r.topics {
            for p in &t.partitions {
                let tp = (t.name.clone(), p.partition_index);
                // Only what was asked and is still waiting: a partition
                // revoked or lost meanwhile is not assigned back.
                if !asked.contains(&tp) || !self.fetch_pending.contains(&tp) {
                    continue;
                }
                let error = ErrorCode::from_code(p.error_code);
                if !error.is_ok() {
                    retry = Some(error);
                    continue;
                }
                self.fetch_pending.remove(&tp);
                let committed = (p.committed_offset >= 0).then_some(EpochOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                });
                self.book.track(tp.clone(), committed);
                let start = committed.map_or(self.reset, |c| StartOffset::At(c.offset));
                assign
                    .entry(t.name.clone())
                    .or_default()
                    .insert(p.partition_index, start);
                assigned
                    .entry(t.name.clone())
                    .or_default()
                    .push(p.partition_index);
            }
        }
        if let Some(e) = retry {
            self.offset_fetch_failed(now, e);
        } else if asked.iter().any(|tp| self.fetch_pending.contains(tp)) {
            // The answer left out partitions it was asked for.
            let d = self.backoff_delay();
            self.timers.set(Timer::FetchRetry, now + d);
        }
        if !assign.is_empty() {
            self.outputs.push_back(GroupOutput::Assign(assign));
            self.emit_blocking(GroupEvent::PartitionsAssigned(assigned));
        }
    }

    fn offset_fetch_failed(&mut self, now: Timestamp, error: ErrorCode) {
        tracing::info!(%error, "OffsetFetch failed; retrying");
        match error {
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
                self.coordinator_failed(now)
            }
            ErrorCode::UnknownMemberId
            | ErrorCode::IllegalGeneration
            | ErrorCode::FencedInstanceId => {
                self.membership_error(now, ApiKey::OffsetFetch, error);
                return;
            }
            ErrorCode::UnstableOffsetCommit | ErrorCode::CoordinatorLoadInProgress => {}
            other => self.emit(GroupEvent::Error(GroupError::Broker {
                api: ApiKey::OffsetFetch,
                error: other,
            })),
        }
        let d = self.backoff_delay();
        self.timers.set(Timer::FetchRetry, now + d);
    }

    fn on_commit(&mut self, now: Timestamp, c: SentCommit, r: Option<&OffsetCommitResponse>) {
        self.commit_in_flight = false;
        let mut committed = BTreeMap::new();
        let mut failed = BTreeMap::new();
        let mut retry = false;
        let mut membership: Option<ErrorCode> = None;
        for (tp, at) in &c.offsets {
            let code = r.and_then(|r| {
                r.topics
                    .iter()
                    .filter(|t| t.name == tp.0)
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == tp.1)
                    .map(|p| ErrorCode::from_code(p.error_code))
            });
            match code {
                Some(e) if e.is_ok() => {
                    self.book.on_commit_done(tp, *at, true);
                    committed.insert(tp.clone(), *at);
                }
                None
                | Some(
                    ErrorCode::NotCoordinator
                    | ErrorCode::CoordinatorNotAvailable
                    | ErrorCode::CoordinatorLoadInProgress
                    | ErrorCode::RequestTimedOut,
                ) => {
                    self.book.on_commit_done(tp, *at, false);
                    retry = true;
                }
                Some(e) => {
                    self.book.on_commit_done(tp, *at, false);
                    if matches!(
                        e,
                        ErrorCode::UnknownMemberId
                            | ErrorCode::IllegalGeneration
                            | ErrorCode::FencedInstanceId
                            | ErrorCode::RebalanceInProgress
                    ) {
                        membership = Some(e);
                    }
                    failed.insert(tp.clone(), CommitError::Broker(e));
                }
            }
        }
        if retry && failed.is_empty() && committed.is_empty() {
            // Not refused, not done: the same commit again, first in line,
            // once the coordinator is found again.
            self.coordinator_failed(now);
            self.commits.push_front(c.queued);
            let d = self.backoff_delay();
            self.timers.set(Timer::CommitRetry, now + d);
            return;
        }
        // Some refused or done, some not answered: report the unanswered
        // ones failed; the next commit covers them.
        let unanswered: Vec<TopicPartition> = c
            .offsets
            .keys()
            .filter(|tp| !committed.contains_key(*tp) && !failed.contains_key(*tp))
            .cloned()
            .collect();
        for tp in unanswered {
            failed.insert(tp, CommitError::Broker(ErrorCode::RequestTimedOut));
        }
        tracing::debug!(
            id = c.id.0,
            committed = committed.len(),
            failed = failed.len(),
            "commit finished"
        );
        self.emit(GroupEvent::CommitFinished(CommitOutcome {
            id: c.id,
            reason: c.reason,
            committed,
            failed,
        }));
        if let Some(e) = membership {
            self.membership_error(now, ApiKey::OffsetCommit, e);
        }
    }

    // ------------------------------------------------------------------
    // Rebalancing
    // ------------------------------------------------------------------

    /// The group is rebalancing: a cooperative member rejoins keeping what
    /// it owns; an eager one revokes everything first.
    fn rejoin(&mut self, now: Timestamp) {
        if self.cooperative || self.owned.is_empty() {
            self.phase = Phase::Joining;
        } else {
            self.start_revoke(now, self.owned.clone(), AfterRevoke::Rejoin, true);
        }
    }

    /// Rejoin after a backoff (an error, not a rebalance).
    fn rejoin_later(&mut self, now: Timestamp) {
        self.phase = Phase::Joining;
        self.leader_join = None;
        let d = self.backoff_delay();
        self.timers.set(Timer::Retry, now + d);
    }

    /// Starts giving up `partitions`: the consumer stops them now; the
    /// commit on revoke, the event and the application's acknowledgement
    /// follow in [`Member::advance`].
    fn start_revoke(
        &mut self,
        _now: Timestamp,
        partitions: PartitionsByTopic,
        then: AfterRevoke,
        commit: bool,
    ) {
        if !partitions.is_empty() {
            self.outputs
                .push_back(GroupOutput::Revoke(partitions.clone()));
            for (t, ps) in &partitions {
                for &p in ps {
                    self.fetch_pending.remove(&(t.clone(), p));
                }
            }
        }
        let commit =
            (commit && self.config.commit_on_revoke && !partitions.is_empty()).then(|| {
                let reason = match then {
                    AfterRevoke::Rejoin => CommitReason::Revoke,
                    AfterRevoke::Leave => CommitReason::Leave,
                };
                // First in line: the revoke waits for it.
                self.next_commit += 1;
                let id = CommitId(self.next_commit);
                self.commits.push_front(QueuedCommit {
                    id,
                    reason,
                    offsets: None,
                    allow_backwards: false,
                });
                id
            });
        self.revoking = Some(Revoking {
            partitions,
            then,
            commit,
            announced: false,
        });
    }

    /// Moves a revoke along when its commit finished and the application
    /// let it; starts what follows it.
    fn advance(&mut self, now: Timestamp) {
        loop {
            let Some(r) = &mut self.revoking else {
                return;
            };
            if let Some(id) = r.commit {
                let pending = self.commits.iter().any(|c| c.id == id) || self.commit_in_flight;
                if pending {
                    return;
                }
                r.commit = None;
            }
            if !r.announced {
                r.announced = true;
                if r.partitions.is_empty() {
                    continue;
                }
                let ev = GroupEvent::PartitionsRevoked(r.partitions.clone());
                if r.then == AfterRevoke::Leave {
                    self.emit(ev);
                } else {
                    self.emit_blocking(ev);
                }
                continue;
            }
            if self.blocked {
                return;
            }
            let Some(r) = self.revoking.take() else {
                return;
            };
            self.drop_partitions(&r.partitions);
            match r.then {
                AfterRevoke::Rejoin => self.phase = Phase::Joining,
                AfterRevoke::Leave => self.start_leave_request(),
            }
            let _ = now;
            return;
        }
    }

    fn start_leave_request(&mut self) {
        self.fail_queued_commits();
        if self.config.instance_id.is_some() || self.member_id.is_empty() {
            // KIP-345: a static member's assignment waits for it.
            self.phase = Phase::Done;
        } else {
            self.phase = Phase::Leaving;
        }
    }

    fn fail_queued_commits(&mut self) {
        let queued: Vec<QueuedCommit> = self.commits.drain(..).collect();
        for c in queued {
            self.emit(GroupEvent::CommitFinished(not_in_group(&c)));
        }
    }

    /// Forgets partitions the member no longer owns.
    fn drop_partitions(&mut self, partitions: &PartitionsByTopic) {
        for (t, ps) in partitions {
            for &p in ps {
                let tp = (t.clone(), p);
                self.book.forget(&tp);
                self.fetch_pending.remove(&tp);
            }
            if let Some(owned) = self.owned.get_mut(t) {
                owned.retain(|p| !ps.contains(p));
                if owned.is_empty() {
                    self.owned.remove(t);
                }
            }
        }
    }

    /// Everything owned is lost: dropped without a commit.
    fn lose_all(&mut self, _now: Timestamp) {
        let owned = std::mem::take(&mut self.owned);
        self.generation = NO_GENERATION;
        self.assignment.clear();
        self.fetch_pending.clear();
        self.book = OffsetBook::default();
        self.timers.stop(Timer::Session);
        if !owned.is_empty() {
            tracing::warn!(partitions = count(&owned), "partitions lost");
            self.outputs.push_back(GroupOutput::Revoke(owned.clone()));
            self.emit_blocking(GroupEvent::PartitionsLost(owned));
        }
    }

    fn fatal(&mut self, now: Timestamp, error: GroupError) {
        tracing::error!(%error, "group member stopped");
        self.lose_all(now);
        self.revoking = None;
        self.blocked = false;
        self.phase = Phase::Done;
        self.fail_queued_commits();
        self.emit(GroupEvent::Error(error));
    }

    fn emit(&mut self, e: GroupEvent) {
        self.outputs.push_back(GroupOutput::Event(e));
    }

    /// Emits an event the application acknowledges when configured to.
    fn emit_blocking(&mut self, e: GroupEvent) {
        if self.config.require_rebalance_ack {
            self.blocked = true;
        }
        self.emit(e);
    }

    // ------------------------------------------------------------------
    // Time
    // ------------------------------------------------------------------

    /// Runs the timers due by `now`: the session watchdog and auto-commit.
    /// (Heartbeats and retries are due requests: see
    /// [`Member::next_target`].)
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let holding = !self.owned.is_empty() && !self.membership_in_flight;
        if holding && self.timers.fired(Timer::Session, now) {
            // franz-go and Java alike: with no heartbeat answered for a
            // whole session, the coordinator has expelled this member.
            tracing::warn!("no successful heartbeat within the session timeout");
            self.lose_all(now);
            self.phase_after_loss(now, false);
        }
        if self.timers.fired(Timer::AutoCommit, now) {
            if let Some(d) = self.config.auto_commit {
                self.timers.set(Timer::AutoCommit, now + d);
                let queued = self.commits.iter().any(|c| c.reason == CommitReason::Auto);
                if self.phase == Phase::Stable && !queued && !self.book.heads_to_commit().is_empty()
                {
                    self.enqueue_commit(CommitReason::Auto, None, false);
                }
            }
        }
        self.advance(now);
    }

    /// The earliest deadline after `now`, if any.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        let mut at: Option<Timestamp> = None;
        let mut min = |t: Option<Timestamp>| {
            if let Some(t) = t.filter(|&t| t > now) {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        if matches!(self.phase, Phase::Idle | Phase::Done) {
            return None;
        }
        min(self.timers.get(Timer::Retry));
        min(self.timers.get(Timer::AutoCommit));
        if self.phase == Phase::Stable {
            min(self.timers.get(Timer::Heartbeat));
            min(self.timers.get(Timer::FetchRetry));
            min(self.timers.get(Timer::CommitRetry));
        }
        if !self.owned.is_empty() {
            min(self.timers.get(Timer::Session));
        }
        at
    }

    /// The next thing for the client: assignments, revokes, events.
    pub fn poll_output(&mut self) -> Option<GroupOutput> {
        self.outputs.pop_front()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaneKind {
    Find,
    Join,
    Sync,
    Heartbeat,
    Leave,
    OffsetFetch,
    Commit,
}

impl LaneKind {
    fn api(self) -> ApiKey {
        match self {
            LaneKind::Find => ApiKey::FindCoordinator,
            LaneKind::Join => ApiKey::JoinGroup,
            LaneKind::Sync => ApiKey::SyncGroup,
            LaneKind::Heartbeat => ApiKey::Heartbeat,
            LaneKind::Leave => ApiKey::LeaveGroup,
            LaneKind::OffsetFetch => ApiKey::OffsetFetch,
            LaneKind::Commit => ApiKey::OffsetCommit,
        }
    }
}

fn not_in_group(c: &QueuedCommit) -> CommitOutcome {
    CommitOutcome {
        id: c.id,
        reason: c.reason,
        committed: BTreeMap::new(),
        failed: c
            .offsets
            .iter()
            .flatten()
            .map(|(tp, _)| (tp.clone(), CommitError::NotInGroup))
            .collect(),
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn owns(owned: &PartitionsByTopic, topic: &str, partition: i32) -> bool {
    owned.get(topic).is_some_and(|ps| ps.contains(&partition))
}

fn count(p: &PartitionsByTopic) -> usize {
    p.values().map(Vec::len).sum()
}

/// `a` less `b`.
fn difference(a: &PartitionsByTopic, b: &PartitionsByTopic) -> PartitionsByTopic {
    let mut out = PartitionsByTopic::new();
    for (t, ps) in a {
        let left: Vec<i32> = ps.iter().copied().filter(|p| !owns(b, t, *p)).collect();
        if !left.is_empty() {
            out.insert(t.clone(), left);
        }
    }
    out
}

fn union(a: &PartitionsByTopic, b: &PartitionsByTopic) -> PartitionsByTopic {
    let mut out = a.clone();
    for (t, ps) in b {
        let v = out.entry(t.clone()).or_default();
        v.extend(ps);
        v.sort_unstable();
        v.dedup();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
