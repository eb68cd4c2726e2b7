//! The consumer-group member: FindCoordinator, the membership (the
//! classic protocol's JoinGroup, SyncGroup, Heartbeat, LeaveGroup, or
//! KIP-848's ConsumerGroupHeartbeat), and the OffsetFetch / OffsetCommit
//! of what it owns, as one sans-IO state machine.
//!
//! The [`Client`](crate::client::Client) routes what [`Member`] asks for:
//! [`Member::next_target`] says where the next request goes (any broker
//! for FindCoordinator, else the coordinator), [`Member::build_request`]
//! builds it at the version that connection negotiated, and every answer
//! (or its loss) comes back through [`Member::on_response`]. What the
//! member decides for the consumer and the application comes out of
//! [`Member::poll_output`].
//!
//! Files: this one holds the state and the rebalancing steps;
//! `requests.rs` which request is due and how it is built, `answers.rs`
//! what each answer does, `events.rs` what comes out, `wire.rs` the
//! request and response types, `consumer_protocol.rs` KIP-848's heartbeat
//! and reconciliation (which reuse the revoke, commit and offset machinery
//! here).
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
    protocol, GroupMember, JoinSubscription, PartitionsByTopic, TopicLayout, NO_GENERATION,
};
use super::config::{GroupConfig, GroupProtocol, SharedBalancer};
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
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use crate::protocol::{ApiKey, ErrorCode};
use crate::rng::SeededRng;
use crate::time::Timestamp;

mod answers;
mod consumer_protocol;
mod events;
mod requests;
mod wire;

pub use events::{
    CommitError, CommitId, CommitOutcome, CommitReason, GroupError, GroupEvent, GroupOutput,
};
pub use wire::{Coordinator, GroupRequest, GroupResponse, Target};

/// The highest version of each group API this member speaks. OffsetFetch
/// v8+ batches groups; OffsetCommit v9+ (KIP-848 members) is capped in
/// [`Member::max_version`] by the protocol spoken.
const MAX_VERSIONS: [(ApiKey, i16); 8] = [
    (ApiKey::FindCoordinator, 6),
    (ApiKey::JoinGroup, 9),
    (ApiKey::SyncGroup, 5),
    (ApiKey::Heartbeat, 4),
    (ApiKey::LeaveGroup, 5),
    (ApiKey::OffsetFetch, 7),
    (ApiKey::OffsetCommit, 8),
    (ApiKey::ConsumerGroupHeartbeat, 1),
];

/// OffsetCommit's version for KIP-848 members: v9 carries the member
/// epoch (Apache Kafka refuses an older one from a consumer-protocol
/// member).
const CONSUMER_PROTOCOL_OFFSET_COMMIT: i16 = 9;

/// The `protocol_type` of consumer groups.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

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
    ConsumerHeartbeat(consumer_protocol::SentHeartbeat),
}

/// Where the member is in the group's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing subscribed.
    Idle,
    /// A JoinGroup (or a ConsumerGroupHeartbeat at epoch 0) is due or in
    /// flight.
    Joining,
    /// The leader waits for the layout of the members' topics.
    AwaitingLayout,
    /// A SyncGroup is due or in flight.
    Syncing,
    /// A member of a generation (or, under KIP-848, holding a member
    /// epoch): heartbeating.
    Stable,
    /// A LeaveGroup is due or in flight.
    Leaving,
    /// Out of the group because the application stopped polling; rejoins
    /// at its next poll.
    OutUntilPoll,
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
    /// No poll by then: the member leaves (`max_poll_interval`).
    PollInterval,
}

const TIMERS: usize = 7;

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
    /// Go on reconciling toward the KIP-848 target assignment.
    Reconcile,
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
    /// The subscription the last JoinGroup carried: a subscription widened
    /// after it was sent needs another join once this one completes.
    joined_topics: Vec<String>,
    phase: Phase,
    coordinator: Option<Coordinator>,
    member_id: String,
    /// The generation; under KIP-848 the member epoch.
    generation: i32,
    /// KIP-848's state while the member speaks the consumer protocol;
    /// `None` for the classic protocol (configured, or fallen back to).
    consumer: Option<consumer_protocol::ConsumerProtocol>,
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
    /// The partition counts of every member's topics the leader balanced
    /// with (0 for a topic that did not exist): when metadata shows
    /// another count (a subscribed topic created, or grown) the leader
    /// rejoins so the new partitions are assigned, as Java's leader does.
    /// `None` on a follower.
    balanced: Option<BTreeMap<String, i32>>,
    /// A heartbeat asked for by [`Member::check_membership`]: `false`
    /// until it goes out, `true` while it is in flight.
    membership_check: Option<bool>,
    /// What that heartbeat said, until taken.
    membership_checked: Option<Result<(), ErrorCode>>,
    sync_assignments: Vec<SyncGroupRequestAssignment>,
    revoking: Option<Revoking>,
    /// The application must call `allow_rebalance` before the next step.
    blocked: bool,
    /// The member left for exceeding `max_poll_interval`.
    poll_expired: bool,
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
        let mut rng = SeededRng::new(seed);
        let consumer = (config.group_protocol == GroupProtocol::Consumer)
            .then(|| consumer_protocol::ConsumerProtocol::new(config.heartbeat_interval, &mut rng));
        Member {
            config,
            reset,
            backoff,
            rng,
            consumer,
            topics: Vec::new(),
            joined_topics: Vec::new(),
            phase: Phase::Idle,
            coordinator: None,
            member_id: String::new(),
            generation: NO_GENERATION,
            cooperative,
            owned: PartitionsByTopic::new(),
            assignment: PartitionsByTopic::new(),
            fetch_pending: BTreeSet::new(),
            leader_join: None,
            balanced: None,
            membership_check: None,
            membership_checked: None,
            sync_assignments: Vec::new(),
            revoking: None,
            blocked: false,
            poll_expired: false,
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

    /// The member id (empty before the first join): the coordinator's, or
    /// under KIP-848 v1 the one this member made up.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation, [`NO_GENERATION`] when in none; under
    /// KIP-848 the member epoch.
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

    /// The application polled (records or not): restarts the
    /// `max_poll_interval` bound, and rejoins a member that left for
    /// exceeding it.
    pub fn note_poll(&mut self, now: Timestamp) {
        if let Some(max) = self.config.max_poll_interval {
            self.timers.set(Timer::PollInterval, now + max);
        }
        if self.phase == Phase::OutUntilPoll {
            tracing::info!("polled again: rejoining the group");
            self.poll_expired = false;
            self.phase = Phase::Joining;
        }
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
    /// leader sees the new topics; during a rebalance, once it completes,
    /// as the JoinGroup already sent carries the old subscription).
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
            // KIP-848: the next heartbeat carries the new subscription.
            Phase::Stable if self.topics.len() != before && self.consumer.is_none() => {
                self.rejoin(now)
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------
    // Application commands
    // ------------------------------------------------------------------

    /// Records what the application polled: for each partition, the
    /// offset after its last record and that record's leader epoch.
    pub fn on_polled<'a>(&mut self, polled: impl IntoIterator<Item = (&'a str, i32, EpochOffset)>) {
        let mut any = false;
        self.book
            .on_polled(polled.into_iter().inspect(|_| any = true));
        if any && self.config.block_rebalance_on_poll {
            self.blocked = true;
        }
    }

    /// Records from `first` on of a partition were polled but never
    /// reached the application: its polled position goes back to `first`.
    pub fn on_unpolled(&mut self, topic: &str, partition: i32, first: i64) {
        self.book.unpoll(topic, partition, first);
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

    /// What was polled of the owned partitions (not being revoked) and
    /// not yet committed: the offsets a group-transact session commits in
    /// its transaction.
    pub fn uncommitted_owned(&self) -> BTreeMap<TopicPartition, EpochOffset> {
        let mut offsets = self.book.uncommitted();
        offsets.retain(|tp, _| self.keeps(tp));
        offsets
    }

    /// A transaction committed these offsets to the group.
    pub fn on_txn_committed(&mut self, offsets: &BTreeMap<TopicPartition, EpochOffset>) {
        for (tp, at) in offsets {
            self.book.set_committed(tp, *at);
        }
    }

    /// A group-transact session aborted: forgets what was polled and
    /// returns where each owned partition (with its committed offset
    /// known, not being revoked) restarts: its committed offset, else the
    /// reset offset. The consumer is re-assigned there.
    pub fn rewind_to_committed(&mut self) -> BTreeMap<String, BTreeMap<i32, StartOffset>> {
        let mut at: BTreeMap<String, BTreeMap<i32, StartOffset>> = BTreeMap::new();
        for (t, ps) in &self.owned {
            for &p in ps {
                let tp = (t.clone(), p);
                if !self.keeps(&tp) || !self.book.is_tracked(&tp) {
                    continue;
                }
                self.book.forget_polled(&tp);
                let start = self
                    .book
                    .committed(&tp)
                    .map_or(self.reset, |c| StartOffset::AtEpoch {
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                    });
                at.entry(t.clone()).or_default().insert(p, start);
            }
        }
        at
    }

    /// Owned, its committed offset fetched, and not being revoked.
    fn keeps(&self, tp: &TopicPartition) -> bool {
        let revoking = self
            .revoking
            .as_ref()
            .is_some_and(|r| r.partitions.get(&tp.0).is_some_and(|ps| ps.contains(&tp.1)));
        let owned = self.owned.get(&tp.0).is_some_and(|ps| ps.contains(&tp.1));
        owned && !revoking && !self.fetch_pending.contains(tp)
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
            Phase::Idle | Phase::Done | Phase::OutUntilPoll => {
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

    /// The topics whose partition counts the leader balanced with: the
    /// client keeps their metadata fresh so that [`Member::check_layout`]
    /// sees a change. Empty on a follower.
    pub fn balanced_topics(&self) -> impl Iterator<Item = &String> {
        self.balanced.iter().flat_map(|b| b.keys())
    }

    /// Compares fresh metadata with the layout the leader balanced with:
    /// a topic of some member's subscription created since, or with
    /// another partition count, makes the leader rejoin so the group is
    /// balanced again (KIP-848 members leave this to the coordinator).
    pub fn check_layout(&mut self, now: Timestamp, layout: &TopicLayout) {
        if self.phase != Phase::Stable || self.consumer.is_some() {
            return;
        }
        let Some(balanced) = &self.balanced else {
            return;
        };
        let changed = balanced
            .iter()
            .find(|(t, &n)| layout.partition_count(t).unwrap_or(0) != n);
        if let Some((topic, &before)) = changed {
            tracing::info!(
                topic = %topic,
                before,
                now = layout.partition_count(topic).unwrap_or(0),
                "a member's topic changed since the leader balanced; rejoining"
            );
            self.balanced = None;
            self.rejoin(now);
        }
    }

    /// Asks the coordinator at once, with a heartbeat, whether this member
    /// is still in a stable generation: a group-transact session does so
    /// after its offsets went into the transaction and before it commits
    /// (semantics.md), since a rebalance that began meanwhile makes the
    /// commit doubtful. [`Member::take_membership_check`] gives the
    /// answer. A member not stable now fails the check at once; under
    /// KIP-848 the check passes (its epoch fences the offsets, and
    /// revocations arrive as events the session holds).
    pub fn check_membership(&mut self, now: Timestamp) {
        if self.membership_check.is_some() || self.membership_checked.is_some() {
            return;
        }
        if self.consumer.is_some() {
            self.membership_checked = Some(Ok(()));
        } else if self.phase != Phase::Stable || self.revoking.is_some() {
            self.membership_checked = Some(Err(ErrorCode::RebalanceInProgress));
        } else {
            self.membership_check = Some(false);
            self.timers.set(Timer::Heartbeat, now);
        }
    }

    /// The answer to [`Member::check_membership`], once there is one: the
    /// heartbeat's error, or REBALANCE_IN_PROGRESS when the member left
    /// its stable generation before the answer came.
    pub fn take_membership_check(&mut self) -> Option<Result<(), ErrorCode>> {
        if self.membership_check.is_some() && self.phase != Phase::Stable {
            self.membership_check = None;
            return Some(Err(ErrorCode::RebalanceInProgress));
        }
        self.membership_checked.take()
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
                    AfterRevoke::Rejoin | AfterRevoke::Reconcile => CommitReason::Revoke,
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
                AfterRevoke::Reconcile => {
                    // Assign what the target adds (or start the next
                    // revoke, if a newer target came meanwhile).
                    self.reconcile(now);
                    continue;
                }
            }
            return;
        }
    }

    fn start_leave_request(&mut self) {
        self.fail_queued_commits();
        if self.consumer.is_some() {
            // KIP-848: a static member leaves too, at epoch -2, so its
            // assignment waits for it; a member that never joined (no
            // answer yet, no join on its way) has nothing to leave. A
            // member the coordinator keeps at epoch 0 (librdkafka's mock
            // does, until it can assign something) has joined.
            let joined = self.phase == Phase::Stable || self.membership_in_flight;
            self.phase = if joined { Phase::Leaving } else { Phase::Done };
        } else if self.config.instance_id.is_some() || self.member_id.is_empty() {
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
        if let Some(k) = &mut self.consumer {
            // KIP-848: the coordinator's view of this member is gone too
            // (a rejoin sends everything again; an old target is void).
            k.forget_sent();
        }
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
        if let Some(max) = self.config.max_poll_interval {
            if self.phase == Phase::Stable && self.timers.fired(Timer::PollInterval, now) {
                tracing::warn!(?max, "no poll within max_poll_interval; leaving the group");
                self.timers.stop(Timer::PollInterval);
                self.lose_all(now);
                self.revoking = None;
                self.poll_expired = true;
                let classic_static = self.consumer.is_none()
                    && (self.config.instance_id.is_some() || self.member_id.is_empty());
                self.phase = if classic_static {
                    // A static member does not leave (KIP-345); its
                    // session timeout decides.
                    Phase::OutUntilPoll
                } else {
                    Phase::Leaving
                };
                self.emit(GroupEvent::Error(GroupError::PollIntervalExceeded(max)));
            }
        }
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
        if matches!(self.phase, Phase::Idle | Phase::Done | Phase::OutUntilPoll) {
            return None;
        }
        min(self.timers.get(Timer::Retry));
        min(self.timers.get(Timer::AutoCommit));
        if self.phase == Phase::Stable {
            min(self.timers.get(Timer::Heartbeat));
            min(self.timers.get(Timer::FetchRetry));
            min(self.timers.get(Timer::CommitRetry));
            if self.config.max_poll_interval.is_some() {
                min(self.timers.get(Timer::PollInterval));
            }
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
    ConsumerHeartbeat,
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
            LaneKind::ConsumerHeartbeat => ApiKey::ConsumerGroupHeartbeat,
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
