//! One classic consumer group as Kafka's `GroupCoordinator` keeps it: the
//! membership state machine (Empty, PreparingRebalance,
//! CompletingRebalance, Stable), generations, the leader, static members
//! and the committed offsets. It is sans-IO like the rest of the cluster:
//! answers that have to wait (a JoinGroup until the rebalance completes,
//! a follower's SyncGroup until the leader's) are [`Pending`] entries,
//! and whatever completes them is pushed as a [`Reply`] for the cluster
//! to send.
//!
//! The rules, and the failures they prevent:
//! - **Generations.** Every completed join bumps the generation; SyncGroup,
//!   Heartbeat and OffsetCommit from another generation get
//!   ILLEGAL_GENERATION, so a member that missed a rebalance cannot commit
//!   for partitions it no longer owns.
//! - **KIP-394.** A dynamic member joining with no id at v4+ gets
//!   MEMBER_ID_REQUIRED and an id; it joins for real only when it comes
//!   back with it, so a client that retries a lost JoinGroup does not
//!   leave a ghost member behind for a whole session timeout.
//! - **KIP-345.** A static member (`group.instance.id`) that joins again
//!   with no member id replaces its old self: the old member id is fenced
//!   (FENCED_INSTANCE_ID) and, if nothing about its protocols changed,
//!   the group does not rebalance. KIP-814 (v9): a static leader that
//!   rejoins a stable group gets the member list with `skip_assignment`
//!   so it can learn the members without reassigning.
//! - **Timeouts.** A member that sends nothing for its session timeout is
//!   removed (not while its JoinGroup or SyncGroup is parked: Kafka keeps
//!   those alive); a member that does not rejoin within the rebalance
//!   timeout is removed when the join completes; members that do not
//!   sync within the rebalance timeout are removed and the group
//!   rebalances again. `group.initial.rebalance.delay.ms` holds the first
//!   rebalance of an empty group so that members starting together join
//!   one generation.
//! - **Commits are blocked between join and sync** (REBALANCE_IN_PROGRESS
//!   in CompletingRebalance), allowed for current members while preparing
//!   a rebalance (an eager consumer commits in its revoke callback), and
//!   allowed without a generation only to a group with no members (a
//!   "simple" consumer that assigns partitions itself).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sansa_core::protocol::messages::join_group_response::JoinGroupResponseMember;
use sansa_core::protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use sansa_core::protocol::{ErrorCode, ResponseBody};
use sansa_core::Timestamp;

use super::consumer_group::ConsumerGroup;
use super::{NodeId, ServerConnId};

/// The group coordinator's settings (Kafka's `group.*` broker configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of
    /// an empty group waits for more members (extended by each new member,
    /// up to the rebalance timeout). Kafka's default is 3 s; 0 here so that
    /// tests do not wait.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` (default 6 s).
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms` (default 30 min).
    pub max_session_timeout: Duration,
    /// `group.max.size`: members (joined and awaiting an id) per group.
    /// Kafka's default is unbounded; bounded here so that a hostile client
    /// cannot grow the coordinator without limit.
    pub max_group_size: usize,
    /// Groups the cluster keeps at most; a request that would create one
    /// more gets COORDINATOR_NOT_AVAILABLE.
    pub max_groups: usize,
    /// `offsets.topic.num.partitions` (default 50): a group's coordinator
    /// is the leader of partition `abs(hashCode(group)) % this` of
    /// `__consumer_offsets`.
    pub offsets_partitions: i32,
    /// `offset.metadata.max.bytes` (default 4096).
    pub max_metadata_bytes: usize,
    /// Serve KIP-848's ConsumerGroupHeartbeat (advertised in ApiVersions
    /// only then; Kafka 4.0's `group.coordinator.rebalance.protocols`
    /// with `consumer`). Off by default, so classic runs stay as they
    /// were.
    pub consumer_protocol: bool,
    /// `group.consumer.session.timeout.ms` (default 45 s): KIP-848 puts
    /// the session timeout on the broker.
    pub consumer_session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms` (default 5 s), told to
    /// KIP-848 members in every answer.
    pub consumer_heartbeat_interval: Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            initial_rebalance_delay: Duration::ZERO,
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(1800),
            max_group_size: 1000,
            max_groups: 10_000,
            offsets_partitions: 50,
            max_metadata_bytes: 4096,
            consumer_protocol: false,
            consumer_session_timeout: Duration::from_secs(45),
            consumer_heartbeat_interval: Duration::from_secs(5),
        }
    }
}

/// Where a parked answer goes: the connection, and the version and
/// correlation id of the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    pub conn: ServerConnId,
    pub version: i16,
    pub corr: i32,
    pub kind: ParkedKind,
}

/// A parked answer that is now complete.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub to: Pending,
    pub body: ResponseBody,
}

/// The answer to a request: now, or later through a [`Reply`].
#[derive(Debug, Clone)]
pub(crate) enum Answer<T> {
    Now(T),
    Parked,
}

/// A group's state, named as Kafka's `DescribeGroups` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may be kept).
    Empty,
    /// Waiting for every member to (re)join.
    PreparingRebalance,
    /// Joined: waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup asks for, decoded and defaulted by version.
#[derive(Debug, Clone)]
pub(crate) struct JoinArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The offset.
    pub offset: i64,
    /// The leader epoch of the record before it, -1 if not given.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: Option<String>,
}

/// One member.
#[derive(Debug, Clone)]
pub struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join: Option<Pending>,
    sync: Option<Pending>,
    session_deadline: Timestamp,
    /// Join order: the leader is the earliest joiner left.
    order: u64,
}

impl Member {
    /// Its member id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its `group.instance.id`, for a static member.
    pub fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }

    /// The client id it joined with.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The assignment the leader gave it in the current generation.
    pub fn assignment(&self) -> &Bytes {
        &self.assignment
    }

    /// Its metadata for `protocol`, if it supports it.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m)
    }

    fn supports(&self, protocol: &str) -> bool {
        self.metadata(protocol).is_some()
    }
}

/// One consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED, and until when
    /// they are kept (a session timeout).
    pending_members: BTreeMap<String, Timestamp>,
    /// KIP-345: instance id to its current member id.
    static_members: BTreeMap<String, String>,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// TxnOffsetCommit offsets by producer id, waiting for their
    /// transaction's outcome: a commit marker makes them committed, an
    /// abort drops them (Kafka's `pendingTransactionalOffsetCommits`).
    pending_txn_offsets: BTreeMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
    /// The rebalance timeout of the current phase: joins or syncs that
    /// have not come by then are given up on.
    rebalance_deadline: Option<Timestamp>,
    /// The initial rebalance delay of an empty group, and the latest it
    /// may be extended to.
    initial_delay: Option<(Timestamp, Timestamp)>,
    new_member_added: bool,
    next_order: u64,
    /// The broker serving the group now; a change answers what waits on
    /// the old one with NOT_COORDINATOR.
    coordinator: Option<NodeId>,
    /// Its KIP-848 members, when it is a consumer group (a group has
    /// members of one protocol at a time).
    consumer: ConsumerGroup,
}

impl Group {
    pub(crate) fn new(id: &str, coordinator: Option<NodeId>) -> Self {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            offsets: BTreeMap::new(),
            pending_txn_offsets: BTreeMap::new(),
            rebalance_deadline: None,
            initial_delay: None,
            new_member_added: false,
            next_order: 0,
            coordinator,
            consumer: ConsumerGroup::default(),
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Its generation (0 before the first join completes).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The protocol type its members joined with (`consumer`).
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The protocol (assignor) chosen for the current generation.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The leader's member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Its members, by member id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// One member.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }

    /// The committed offset of a partition.
    pub fn committed(&self, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets.get(&(topic.to_owned(), partition))
    }

    /// Every committed offset.
    pub fn offsets(&self) -> &BTreeMap<(String, i32), CommittedOffset> {
        &self.offsets
    }

    /// Its KIP-848 side.
    pub fn consumer(&self) -> &ConsumerGroup {
        &self.consumer
    }

    pub(crate) fn consumer_mut(&mut self) -> &mut ConsumerGroup {
        &mut self.consumer
    }

    /// Whether `id` is a member under either protocol.
    pub fn has_member(&self, id: &str) -> bool {
        self.members.contains_key(id) || self.consumer.member(id).is_some()
    }

    /// The generation a commit of member `id` is judged in: its member
    /// epoch in a KIP-848 group, the group's generation in a classic one.
    pub fn generation_of(&self, id: &str) -> i32 {
        self.consumer
            .member(id)
            .map_or(self.generation, |m| m.epoch())
    }

    /// Whether it has classic members (or ids awaiting their first join).
    pub(crate) fn has_classic_members(&self) -> bool {
        self.size() > 0
    }

    pub(crate) fn coordinator(&self) -> Option<NodeId> {
        self.coordinator
    }

    /// Members and ids awaiting their first join, against `group.max.size`.
    fn size(&self) -> usize {
        self.members.len() + self.pending_members.len()
    }

    /// Whether a group with nothing in it can be forgotten.
    pub(crate) fn is_disposable(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.offsets.is_empty()
            && self.pending_txn_offsets.is_empty()
            && self.consumer.is_empty()
    }

    // ------------------------------------------------------------------
    // Validation shared by the member requests
    // ------------------------------------------------------------------

    /// KIP-345 fencing, then membership: the error a request from
    /// `member_id` (with `instance_id`) gets, if any.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
        // Kafka's `isStaticMemberFenced`: only an instance id mapped to
        // another member id is fenced.
        if let Some(inst) = instance_id {
            if self
                .static_members
                .get(inst)
                .is_some_and(|current| current != member_id)
            {
                return Err(ErrorCode::FencedInstanceId);
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ErrorCode::UnknownMemberId)
        }
    }

    /// Whether every current member lists `protocol`.
    fn all_support(&self, protocol: &str, except: &str) -> bool {
        self.members
            .values()
            .filter(|m| m.id != except)
            .all(|m| m.supports(protocol))
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty
    /// list; otherwise the type must match and one protocol must be
    /// supported by every other member.
    fn accepts(&self, member_id: &str, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others = self.members.keys().any(|id| id != member_id);
        if !others {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(p, _)| self.all_support(p, member_id))
    }

    // ------------------------------------------------------------------
    // JoinGroup
    // ------------------------------------------------------------------

    /// A JoinGroup. `fresh_id` is the member id to hand out if the member
    /// needs one.
    pub(crate) fn join(
        &mut self,
        now: Timestamp,
        s: &GroupSettings,
        a: JoinArgs,
        fresh_id: String,
        at: Pending,
        out: &mut Vec<Reply>,
    ) -> Answer<JoinGroupResponse> {
        let error =
            |code: ErrorCode, member_id: &str| Answer::Now(join_error(at.version, code, member_id));
        if !self.accepts(&a.member_id, &a.protocol_type, &a.protocols) {
            return error(ErrorCode::InconsistentGroupProtocol, &a.member_id);
        }
        if a.member_id.is_empty() {
            if self.size() >= s.max_group_size {
                return error(ErrorCode::GroupMaxSizeReached, "");
            }
            if let Some(inst) = a.instance_id.clone() {
                if let Some(old) = self.static_members.get(&inst).cloned() {
                    return self.replace_static(now, s, a, &old, fresh_id, at, out);
                }
                self.add_member(now, s, a, fresh_id, at, out);
                return Answer::Parked;
            }
            if at.version >= 4 {
                self.pending_members
                    .insert(fresh_id.clone(), now + a.session_timeout);
                return error(ErrorCode::MemberIdRequired, &fresh_id);
            }
            self.add_member(now, s, a, fresh_id, at, out);
            return Answer::Parked;
        }
        if self.pending_members.remove(&a.member_id).is_some() {
            let id = a.member_id.clone();
            self.add_member(now, s, a, id, at, out);
            return Answer::Parked;
        }
        if let Err(e) = self.check_member(&a.member_id, a.instance_id.as_deref()) {
            return error(e, &a.member_id);
        }
        let id = a.member_id.clone();
        let same = self
            .members
            .get(&id)
            .is_some_and(|m| m.protocols == a.protocols);
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            GroupState::Empty => error(ErrorCode::UnknownMemberId, &id),
            GroupState::PreparingRebalance => {
                self.update_member(now, &a, at, out);
                self.check_join_complete(now, out);
                Answer::Parked
            }
            GroupState::CompletingRebalance if same => {
                // It lost the join answer: give it the same one again.
                Answer::Now(self.join_result(at.version, &id, false))
            }
            GroupState::Stable if same && !is_leader => {
                Answer::Now(self.join_result(at.version, &id, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(now, &a, at, out);
                self.prepare_rebalance(now, s, out);
                Answer::Parked
            }
        }
    }

    fn add_member(
        &mut self,
        now: Timestamp,
        s: &GroupSettings,
        a: JoinArgs,
        id: String,
        at: Pending,
        out: &mut Vec<Reply>,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(a.protocol_type.clone());
        }
        if let Some(inst) = &a.instance_id {
            self.static_members.insert(inst.clone(), id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        let order = self.next_order;
        self.next_order += 1;
        self.members.insert(
            id.clone(),
            Member {
                id,
                instance_id: a.instance_id,
                client_id: a.client_id,
                session_timeout: a.session_timeout,
                rebalance_timeout: a.rebalance_timeout,
                protocols: a.protocols,
                assignment: Bytes::new(),
                join: Some(at),
                sync: None,
                session_deadline: now + a.session_timeout,
                order,
            },
        );
        self.new_member_added = true;
        if self.state == GroupState::PreparingRebalance {
            self.check_join_complete(now, out);
        } else {
            self.prepare_rebalance(now, s, out);
        }
    }

    /// A known member rejoins: new protocols, and its answer parked (an
    /// older parked join of the same member is told to rejoin).
    fn update_member(&mut self, now: Timestamp, a: &JoinArgs, at: Pending, out: &mut Vec<Reply>) {
        let Some(m) = self.members.get_mut(&a.member_id) else {
            return;
        };
        m.protocols.clone_from(&a.protocols);
        m.session_timeout = a.session_timeout;
        m.rebalance_timeout = a.rebalance_timeout;
        m.session_deadline = now + a.session_timeout;
        if let Some(old) = m.join.replace(at) {
            out.push(Reply {
                to: old,
                body: ResponseBody::JoinGroup(join_error(
                    old.version,
                    ErrorCode::RebalanceInProgress,
                    &a.member_id,
                )),
            });
        }
    }

    /// KIP-345: a known instance id joins with no member id. The new id
    /// takes the old member's place; the old id is fenced.
    #[allow(clippy::too_many_arguments)]
    fn replace_static(
        &mut self,
        now: Timestamp,
        s: &GroupSettings,
        a: JoinArgs,
        old_id: &str,
        new_id: String,
        at: Pending,
        out: &mut Vec<Reply>,
    ) -> Answer<JoinGroupResponse> {
        let Some(mut m) = self.members.remove(old_id) else {
            // The mapping outlived its member: join as new.
            self.add_member(now, s, a, new_id, at, out);
            return Answer::Parked;
        };
        for old in [m.join.take(), m.sync.take()].into_iter().flatten() {
            out.push(Reply {
                to: old,
                body: fenced_body(old, old_id),
            });
        }
        let old_leader = self.leader.clone();
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        m.id.clone_from(&new_id);
        m.protocols = a.protocols;
        m.session_timeout = a.session_timeout;
        m.rebalance_timeout = a.rebalance_timeout;
        m.session_deadline = now + a.session_timeout;
        m.client_id = a.client_id;
        if let Some(inst) = &a.instance_id {
            self.static_members.insert(inst.clone(), new_id.clone());
        }
        self.members.insert(new_id.clone(), m);
        match self.state {
            // Kafka rebalances a stable group for a replaced static member
            // only if the protocol it would choose changes.
            GroupState::Stable if self.protocol == self.select_protocol() => {
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                if at.version >= 9 {
                    // KIP-814: the leader learns the members, and that it
                    // need not assign.
                    Answer::Now(self.join_result(at.version, &new_id, is_leader))
                } else {
                    // Before KIP-814 Kafka names the old leader id, so a
                    // rejoining leader does not think it must assign (a
                    // stable group would not pass that assignment on).
                    let mut r = self.join_result(at.version, &new_id, false);
                    r.leader = old_leader.unwrap_or_default();
                    r.members.clear();
                    Answer::Now(r)
                }
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.join = Some(at);
                }
                self.check_join_complete(now, out);
                Answer::Parked
            }
            GroupState::Empty | GroupState::CompletingRebalance | GroupState::Stable => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.join = Some(at);
                }
                self.prepare_rebalance(now, s, out);
                Answer::Parked
            }
        }
    }

    /// Kafka's `prepareRebalance`: every member must rejoin; syncs still
    /// waiting are told so.
    fn prepare_rebalance(&mut self, now: Timestamp, s: &GroupSettings, out: &mut Vec<Reply>) {
        if self.state == GroupState::CompletingRebalance {
            self.fail_syncs(now, ErrorCode::RebalanceInProgress, out);
        }
        let timeout = self.rebalance_timeout();
        if self.state == GroupState::Empty && !s.initial_rebalance_delay.is_zero() {
            let first = now + s.initial_rebalance_delay.min(timeout);
            self.initial_delay = Some((first, now + timeout));
            self.new_member_added = false;
        }
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline = Some(now + timeout);
        self.check_join_complete(now, out);
    }

    /// The group's rebalance timeout: the largest of its members'.
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Answers every parked SyncGroup with `code`. As with every parked
    /// answer, the member's session starts again when it is sent (Kafka's
    /// `completeAndScheduleNextHeartbeatExpiration`).
    fn fail_syncs(&mut self, now: Timestamp, code: ErrorCode, out: &mut Vec<Reply>) {
        for m in self.members.values_mut() {
            if let Some(p) = m.sync.take() {
                m.session_deadline = now + m.session_timeout;
                out.push(Reply {
                    to: p,
                    body: ResponseBody::SyncGroup(sync_error(p.version, code)),
                });
            }
        }
    }

    /// Completes the join once every member has rejoined, no KIP-394 id is
    /// outstanding, and the initial delay is over.
    fn check_join_complete(&mut self, now: Timestamp, out: &mut Vec<Reply>) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay.is_some() {
            return;
        }
        let all = self.members.values().all(|m| m.join.is_some());
        if all && self.pending_members.is_empty() {
            self.complete_join(now, out);
        }
    }

    /// Kafka's `onCompleteJoin`: members that did not rejoin are removed,
    /// the generation moves on, and every joined member hears (the leader
    /// with the member list).
    fn complete_join(&mut self, now: Timestamp, out: &mut Vec<Reply>) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::debug!(group = %self.id, member = %id, "did not rejoin in time; removed");
            self.forget_member(&id);
        }
        self.initial_delay = None;
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            self.rebalance_deadline = None;
            return;
        }
        self.protocol = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        self.rebalance_deadline = Some(now + self.rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            m.session_deadline = now + m.session_timeout;
            m.assignment = Bytes::new();
            let Some(p) = m.join.take() else {
                continue;
            };
            let body = self.join_result(p.version, &id, false);
            out.push(Reply {
                to: p,
                body: ResponseBody::JoinGroup(body),
            });
        }
    }

    /// Removes a member and its static mapping; a new leader is the
    /// earliest joiner left.
    fn forget_member(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            if let Some(inst) = &m.instance_id {
                if self.static_members.get(inst).map(String::as_str) == Some(id) {
                    self.static_members.remove(inst);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.order)
                .map(|m| m.id.clone());
        }
    }

    /// Kafka's `selectProtocol`: among the protocols every member
    /// supports, each member votes for the first in its own order; most
    /// votes wins, ties going to the leader's preference.
    fn select_protocol(&self) -> Option<String> {
        let leader = self
            .leader
            .as_deref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().min_by_key(|m| m.order))?;
        let candidates: Vec<&str> = leader
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|p| self.members.values().all(|m| m.supports(p)))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| c == n))
            {
                votes[i] += 1;
            }
        }
        let best = votes.iter().copied().max()?;
        let i = votes.iter().position(|&v| v == best)?;
        candidates.get(i).map(|s| (*s).to_owned())
    }

    /// The JoinGroup answer for `member` in the current generation: the
    /// leader gets every member's metadata for the chosen protocol (and
    /// `skip_assignment`, v9), followers an empty list.
    fn join_result(&self, version: i16, member: &str, skip_assignment: bool) -> JoinGroupResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member);
        let members = if is_leader {
            self.members
                .values()
                .map(|m| JoinGroupResponseMember {
                    member_id: m.id.clone(),
                    group_instance_id: if version >= 5 {
                        m.instance_id.clone()
                    } else {
                        None
                    },
                    metadata: m.metadata(&protocol).cloned().unwrap_or_default(),
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse {
            generation_id: self.generation,
            protocol_type: if version >= 7 {
                self.protocol_type.clone()
            } else {
                None
            },
            protocol_name: Some(protocol),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment: version >= 9 && skip_assignment,
            member_id: member.to_owned(),
            members,
            ..Default::default()
        }
    }

    // ------------------------------------------------------------------
    // SyncGroup
    // ------------------------------------------------------------------

    /// A SyncGroup. The leader's carries every member's assignment.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sync(
        &mut self,
        now: Timestamp,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        at: Pending,
        out: &mut Vec<Reply>,
    ) -> Answer<SyncGroupResponse> {
        let error = |code| Answer::Now(sync_error(at.version, code));
        if let Err(e) = self.check_member(member_id, instance_id) {
            return error(e);
        }
        if generation != self.generation {
            return error(ErrorCode::IllegalGeneration);
        }
        let (ptype, pname) = protocol;
        if ptype.is_some_and(|t| self.protocol_type.as_deref() != Some(t))
            || pname.is_some_and(|n| self.protocol.as_deref() != Some(n))
        {
            return error(ErrorCode::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty => error(ErrorCode::UnknownMemberId),
            GroupState::PreparingRebalance => error(ErrorCode::RebalanceInProgress),
            GroupState::Stable => {
                let Some(m) = self.members.get_mut(member_id) else {
                    return error(ErrorCode::UnknownMemberId);
                };
                m.session_deadline = now + m.session_timeout;
                let assignment = m.assignment.clone();
                Answer::Now(self.sync_result(at.version, assignment))
            }
            GroupState::CompletingRebalance => {
                let Some(m) = self.members.get_mut(member_id) else {
                    return error(ErrorCode::UnknownMemberId);
                };
                m.session_deadline = now + m.session_timeout;
                if let Some(old) = m.sync.replace(at) {
                    out.push(Reply {
                        to: old,
                        body: ResponseBody::SyncGroup(sync_error(
                            old.version,
                            ErrorCode::RebalanceInProgress,
                        )),
                    });
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    self.rebalance_deadline = None;
                    self.answer_syncs(now, out);
                }
                Answer::Parked
            }
        }
    }

    fn answer_syncs(&mut self, now: Timestamp, out: &mut Vec<Reply>) {
        let waiting: Vec<(Pending, Bytes)> = self
            .members
            .values_mut()
            .filter_map(|m| {
                let p = m.sync.take()?;
                m.session_deadline = now + m.session_timeout;
                Some((p, m.assignment.clone()))
            })
            .collect();
        for (p, assignment) in waiting {
            let body = self.sync_result(p.version, assignment);
            out.push(Reply {
                to: p,
                body: ResponseBody::SyncGroup(body),
            });
        }
    }

    fn sync_result(&self, version: i16, assignment: Bytes) -> SyncGroupResponse {
        SyncGroupResponse {
            protocol_type: if version >= 5 {
                self.protocol_type.clone()
            } else {
                None
            },
            protocol_name: if version >= 5 {
                self.protocol.clone()
            } else {
                None
            },
            assignment,
            ..Default::default()
        }
    }

    // ------------------------------------------------------------------
    // Heartbeat, LeaveGroup
    // ------------------------------------------------------------------

    /// A Heartbeat: the error it gets (NONE keeps the session alive).
    pub(crate) fn heartbeat(
        &mut self,
        now: Timestamp,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> ErrorCode {
        if self.state == GroupState::Empty {
            return ErrorCode::UnknownMemberId;
        }
        if let Err(e) = self.check_member(member_id, instance_id) {
            return e;
        }
        if generation != self.generation {
            return ErrorCode::IllegalGeneration;
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.session_deadline = now + m.session_timeout;
        }
        match self.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            _ => ErrorCode::None,
        }
    }

    /// A member leaves, by member id, or by instance id alone (an
    /// administrator removing a static member, KIP-345).
    pub(crate) fn leave(
        &mut self,
        now: Timestamp,
        s: &GroupSettings,
        member_id: &str,
        instance_id: Option<&str>,
        out: &mut Vec<Reply>,
    ) -> ErrorCode {
        let id = match instance_id {
            Some(inst) => match self.static_members.get(inst) {
                None => return ErrorCode::UnknownMemberId,
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return ErrorCode::FencedInstanceId
                }
                Some(current) => current.clone(),
            },
            None => member_id.to_owned(),
        };
        if self.pending_members.remove(&id).is_some() {
            self.check_join_complete(now, out);
            return ErrorCode::None;
        }
        if !self.members.contains_key(&id) {
            return ErrorCode::UnknownMemberId;
        }
        self.remove_member(now, s, &id, out);
        ErrorCode::None
    }

    /// Kafka's `removeMemberAndUpdateGroup`.
    fn remove_member(&mut self, now: Timestamp, s: &GroupSettings, id: &str, out: &mut Vec<Reply>) {
        if let Some(m) = self.members.get_mut(id) {
            for p in [m.join.take(), m.sync.take()].into_iter().flatten() {
                out.push(Reply {
                    to: p,
                    body: error_body(p, ErrorCode::UnknownMemberId, id),
                });
            }
        }
        self.forget_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, s, out)
            }
            GroupState::PreparingRebalance => self.check_join_complete(now, out),
            GroupState::Empty => {}
        }
    }

    // ------------------------------------------------------------------
    // Offsets
    // ------------------------------------------------------------------

    /// Kafka's `validateOffsetCommit` and the state check of
    /// `doCommitOffsets`: the error every partition of an OffsetCommit
    /// gets, if any. A commit that passes keeps the member's session alive.
    pub(crate) fn check_commit(
        &mut self,
        now: Timestamp,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.check_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(ErrorCode::IllegalGeneration);
            }
            if self.state == GroupState::CompletingRebalance {
                return Err(ErrorCode::RebalanceInProgress);
            }
            if let Some(m) = self.members.get_mut(member_id) {
                m.session_deadline = now + m.session_timeout;
            }
            Ok(())
        } else if self.state != GroupState::Empty {
            // Only members commit to a group that has them.
            Err(ErrorCode::UnknownMemberId)
        } else {
            Ok(())
        }
    }

    pub(crate) fn store_offset(&mut self, topic: &str, partition: i32, offset: CommittedOffset) {
        self.offsets.insert((topic.to_owned(), partition), offset);
    }

    /// Kafka's `validateOffsetCommit` for a TxnOffsetCommit (KIP-447):
    /// member, instance and generation are checked only when given, the
    /// group's state is not, and no session is refreshed.
    pub(crate) fn check_txn_commit(
        &self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return Ok(());
        }
        if let Some(inst) = instance_id {
            if self
                .static_members
                .get(inst)
                .is_some_and(|current| current != member_id)
            {
                return Err(ErrorCode::FencedInstanceId);
            }
        }
        if !member_id.is_empty() && !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    /// Holds a transactional offset until its transaction ends.
    pub(crate) fn store_txn_offset(
        &mut self,
        producer_id: i64,
        topic: &str,
        partition: i32,
        offset: CommittedOffset,
    ) {
        self.pending_txn_offsets
            .entry(producer_id)
            .or_default()
            .insert((topic.to_owned(), partition), offset);
    }

    /// The transaction of `producer_id` ended: its offsets become
    /// committed, or are dropped.
    pub(crate) fn end_txn(&mut self, producer_id: i64, commit: bool) {
        if let Some(offsets) = self.pending_txn_offsets.remove(&producer_id) {
            if commit {
                self.offsets.extend(offsets);
            }
        }
    }

    /// Whether a transaction holds an offset of this partition not yet
    /// committed (OffsetFetch with `require_stable` answers
    /// UNSTABLE_OFFSET_COMMIT then, KIP-447).
    pub fn has_pending_txn_offset(&self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_owned(), partition);
        self.pending_txn_offsets
            .values()
            .any(|o| o.contains_key(&key))
    }

    // ------------------------------------------------------------------
    // Time and coordinator moves
    // ------------------------------------------------------------------

    /// The next instant [`Group::tick`] has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        // Nobody serves it: no clock runs.
        self.coordinator?;
        let sessions = self
            .members
            .values()
            .filter(|m| m.join.is_none() && m.sync.is_none())
            .map(|m| m.session_deadline);
        let pending = self.pending_members.values().copied();
        let initial = self.initial_delay.map(|(t, _)| t);
        sessions
            .chain(pending)
            .chain(initial)
            .chain(self.rebalance_deadline)
            .chain(self.consumer.next_deadline())
            .min()
    }

    /// Expires sessions, KIP-394 ids, the initial delay and rebalance
    /// timeouts due by `now`.
    pub(crate) fn tick(&mut self, now: Timestamp, s: &GroupSettings, out: &mut Vec<Reply>) {
        if self.coordinator.is_none() {
            return;
        }
        let expired: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, &t)| t <= now)
            .map(|(id, _)| id.clone())
            .collect();
        if !expired.is_empty() {
            for id in expired {
                self.pending_members.remove(&id);
            }
            self.check_join_complete(now, out);
        }
        let dead: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join.is_none() && m.sync.is_none() && m.session_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in dead {
            tracing::debug!(group = %self.id, member = %id, "session expired");
            self.remove_member(now, s, &id, out);
        }
        if let Some((until, cap)) = self.initial_delay {
            if until <= now {
                if self.new_member_added && now < cap {
                    self.new_member_added = false;
                    let next = (now + s.initial_rebalance_delay).min(cap);
                    self.initial_delay = Some((next, cap));
                } else {
                    self.initial_delay = None;
                    self.check_join_complete(now, out);
                }
            }
        }
        if self.rebalance_deadline.is_some_and(|t| t <= now) {
            match self.state {
                GroupState::PreparingRebalance => self.complete_join(now, out),
                GroupState::CompletingRebalance => {
                    let slow: Vec<String> = self
                        .members
                        .values()
                        .filter(|m| m.sync.is_none())
                        .map(|m| m.id.clone())
                        .collect();
                    for id in &slow {
                        tracing::debug!(group = %self.id, member = %id, "did not sync in time");
                        self.forget_member(id);
                    }
                    self.prepare_rebalance(now, s, out);
                }
                GroupState::Empty | GroupState::Stable => self.rebalance_deadline = None,
            }
        }
    }

    /// The group's offsets partition has a new leader (or none): whatever
    /// waits on the old coordinator is told NOT_COORDINATOR, and the new
    /// one starts every member's clock afresh, as Kafka does when it loads
    /// a group.
    pub(crate) fn move_coordinator(
        &mut self,
        now: Timestamp,
        to: Option<NodeId>,
        out: &mut Vec<Reply>,
    ) {
        self.coordinator = to;
        for m in self.members.values_mut() {
            let id = m.id.clone();
            for p in [m.join.take(), m.sync.take()].into_iter().flatten() {
                out.push(Reply {
                    to: p,
                    body: error_body(p, ErrorCode::NotCoordinator, &id),
                });
            }
            m.session_deadline = now + m.session_timeout;
        }
        for t in self.pending_members.values_mut() {
            *t = now.max(*t);
        }
        if matches!(
            self.state,
            GroupState::PreparingRebalance | GroupState::CompletingRebalance
        ) {
            self.rebalance_deadline = Some(now + self.rebalance_timeout());
        }
        if let Some((_, cap)) = self.initial_delay {
            self.initial_delay = Some((now, cap.max(now)));
        }
    }
}

/// A JoinGroup error answer, valid at `version`.
pub(crate) fn join_error(version: i16, code: ErrorCode, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse {
        error_code: code.code(),
        generation_id: -1,
        protocol_name: if version >= 7 {
            None
        } else {
            Some(String::new())
        },
        member_id: member_id.to_owned(),
        ..Default::default()
    }
}

/// A SyncGroup error answer.
pub(crate) fn sync_error(_version: i16, code: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse {
        error_code: code.code(),
        ..Default::default()
    }
}

/// The error answer for a parked JoinGroup or SyncGroup.
fn error_body(p: Pending, code: ErrorCode, member_id: &str) -> ResponseBody {
    match p.kind {
        ParkedKind::Join => ResponseBody::JoinGroup(join_error(p.version, code, member_id)),
        ParkedKind::Sync => ResponseBody::SyncGroup(sync_error(p.version, code)),
    }
}

fn fenced_body(p: Pending, member_id: &str) -> ResponseBody {
    error_body(p, ErrorCode::FencedInstanceId, member_id)
}

/// Which request a parked answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParkedKind {
    Join,
    Sync,
}
