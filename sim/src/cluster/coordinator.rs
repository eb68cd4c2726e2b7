//! The group coordinator's request handlers: FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! DescribeGroups and ListGroups, answered as Kafka's `KafkaApis` and
//! `GroupCoordinator` answer them. The group state machine itself is in
//! [`group`](super::group).
//!
//! Where a group lives follows Kafka: `__consumer_offsets` has a fixed
//! number of partitions, a group belongs to partition
//! `abs(javaHashCode(group)) % partitions`, and the coordinator is that
//! partition's leader. So a leader move or a broker crash moves
//! coordinators, and a request to a broker that is no longer the
//! coordinator gets NOT_COORDINATOR, which is what makes clients look the
//! coordinator up again. The offsets topic is created on the first
//! FindCoordinator for a group, as Kafka creates it; its logs stay empty
//! (the group state is the replicated state, like the partition logs, so
//! a move loses nothing but the answers that were waiting on the old
//! coordinator).

use std::time::Duration;

use bytes::Bytes;
use sansa_core::protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use sansa_core::protocol::messages::find_coordinator_response::Coordinator;
use sansa_core::protocol::messages::leave_group_response::MemberResponse;
use sansa_core::protocol::messages::list_groups_response::ListedGroup;
use sansa_core::protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use sansa_core::protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use sansa_core::protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
};
use sansa_core::protocol::{ApiKey, ErrorCode, ResponseBody};
use sansa_core::Timestamp;

use super::group::{
    join_error, sync_error, Answer, CommittedOffset, Group, GroupState, JoinArgs, ParkedKind,
    Pending, Reply,
};
use super::{Cluster, NodeId, Sabotage, ServerConnId};

/// Kafka's internal topic of committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` (over UTF-16 code units), which Kafka uses to
/// place a group.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of `group` among `partitions`:
/// Kafka's `Utils.abs(groupId.hashCode) % partitions` (where
/// `abs(MIN_VALUE)` is 0).
pub fn offsets_partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// An OffsetCommit partition the coordinator accepted, for the group
/// invariant checkers (see [`Cluster::record_accepted_commits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedCommit {
    /// The group.
    pub group: String,
    /// The member id the commit named (empty for a simple consumer).
    pub member_id: String,
    /// The generation the commit named.
    pub generation: i32,
    /// The group's generation when the coordinator accepted it.
    pub group_generation: i32,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The committed offset (the next record to consume).
    pub offset: i64,
}

/// Errors the coordinator injects into group requests, as a broker
/// answers while its coordinator is loading, moving or rebalancing. The
/// request is answered with the error and otherwise ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RandomGroupFaults {
    /// Probability that a JoinGroup, SyncGroup, Heartbeat, OffsetCommit
    /// or OffsetFetch is answered with an error drawn from
    /// [`injectable_group_errors`] instead of being handled.
    pub error_rate: f64,
}

/// The errors a coordinator may answer `api` with whatever the group's
/// state: it is loading (COORDINATOR_LOAD_IN_PROGRESS), moving
/// (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE), or, for requests of a
/// member of a generation, rebalancing (REBALANCE_IN_PROGRESS, which
/// makes the member rejoin).
pub fn injectable_group_errors(api: ApiKey) -> &'static [ErrorCode] {
    const MOVING: &[ErrorCode] = &[
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator,
    ];
    const MEMBER: &[ErrorCode] = &[
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator,
        ErrorCode::RebalanceInProgress,
    ];
    match api {
        ApiKey::JoinGroup | ApiKey::OffsetFetch | ApiKey::ConsumerGroupHeartbeat => MOVING,
        ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::OffsetCommit => MEMBER,
        _ => &[],
    }
}

/// Coordinator key types of FindCoordinator v1+.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// What a session or rebalance timeout of `ms` milliseconds is, if valid.
fn millis(ms: i32) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

impl Cluster {
    // ------------------------------------------------------------------
    // Where groups live
    // ------------------------------------------------------------------

    /// Creates `__consumer_offsets` if it is missing (replication factor
    /// up to 3); returns whether it exists now.
    pub fn ensure_offsets_topic(&mut self) -> bool {
        if self.topics.contains_key(OFFSETS_TOPIC) {
            return true;
        }
        let rf = self.brokers.len().min(3) as i16;
        let parts = self.config.groups.offsets_partitions.max(1);
        self.create_topic(OFFSETS_TOPIC, parts, rf).is_ok()
    }

    /// The broker coordinating `group` now: the leader of its offsets
    /// partition, `None` if the offsets topic does not exist or that
    /// partition has no leader.
    pub fn coordinator_of(&self, group: &str) -> Option<NodeId> {
        let t = self.topics.get(OFFSETS_TOPIC)?;
        let n = t.partitions.len() as i32;
        t.partition(offsets_partition_for(group, n))?.leader
    }

    /// The offsets partition of `group` in this cluster.
    pub fn offsets_partition_of(&self, group: &str) -> i32 {
        let n = self
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(self.config.groups.offsets_partitions, |t| {
                t.partitions.len() as i32
            });
        offsets_partition_for(group, n)
    }

    /// A group, if it exists.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    /// Every group, by id.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// The error a group request for `group` at `node` gets before the
    /// group is looked at.
    pub(super) fn check_coordinator(&self, node: NodeId, group: &str) -> Result<(), ErrorCode> {
        if group.is_empty() {
            Err(ErrorCode::InvalidGroupId)
        } else if self.coordinator_of(group) != Some(node) {
            Err(ErrorCode::NotCoordinator)
        } else {
            Ok(())
        }
    }

    /// A new group at `node`, unless the cluster holds its maximum.
    pub(super) fn create_group(&mut self, id: &str, node: NodeId) -> Result<&mut Group, ErrorCode> {
        if !self.groups.contains_key(id) && self.groups.len() >= self.config.groups.max_groups {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        Ok(self
            .groups
            .entry(id.to_owned())
            .or_insert_with(|| Group::new(id, Some(node))))
    }

    /// Injects errors into group requests at these rates.
    pub fn set_random_group_faults(&mut self, faults: RandomGroupFaults) {
        self.group_faults = faults;
    }

    /// Starts (or stops) keeping every offset commit the coordinator
    /// accepts, for [`Cluster::take_accepted_commits`]. Off by default, so
    /// a driver that never takes them keeps nothing.
    pub fn record_accepted_commits(&mut self, on: bool) {
        self.accepted_commits = on.then(Vec::new);
    }

    /// The offset commits accepted since the last call, in order.
    pub fn take_accepted_commits(&mut self) -> Vec<AcceptedCommit> {
        self.accepted_commits
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// An error to answer a group request of `api` with: one scripted by
    /// [`Cluster::inject_group_error`], else drawn from the seed at the
    /// configured rate (no draw at all when off, so turning
    /// group faults on moves no other random choice).
    pub(super) fn draw_group_fault(&mut self, api: ApiKey) -> Option<ErrorCode> {
        if let Some(code) = self.take_txn_error(api) {
            return Some(code);
        }
        let rate = self.group_faults.error_rate;
        if rate <= 0.0 || !self.rng.chance(rate) {
            return None;
        }
        let code = *self.rng.pick(injectable_group_errors(api))?;
        self.stats.group_faults_injected += 1;
        Some(code)
    }

    /// Drops a group left with nothing in it.
    pub(super) fn dispose_if_empty(&mut self, id: &str) {
        if self.groups.get(id).is_some_and(Group::is_disposable) {
            self.groups.remove(id);
        }
    }

    /// A member id as Kafka makes them: `<client or instance id>-<uuid>`,
    /// the uuid drawn from the seed.
    pub(super) fn fresh_member_id(&mut self, prefix: &str) -> String {
        let a = self.rng.next_u64();
        let b = self.rng.next_u64();
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// After any leadership change: groups whose offsets partition moved
    /// get their new coordinator (what waited on the old one hears
    /// NOT_COORDINATOR).
    pub(super) fn groups_after_leader_change(&mut self) {
        if self.groups.is_empty() {
            return;
        }
        let now = self.now;
        let moves: Vec<(String, Option<NodeId>)> = self
            .groups
            .values()
            .filter_map(|g| {
                let to = self.coordinator_of(g.id());
                (to != g.coordinator()).then(|| (g.id().to_owned(), to))
            })
            .collect();
        let mut out = Vec::new();
        for (id, to) in moves {
            tracing::debug!(group = %id, ?to, "coordinator moved");
            let session = self.config.groups.consumer_session_timeout;
            if let Some(g) = self.groups.get_mut(&id) {
                g.move_coordinator(now, to, &mut out);
                g.consumer_mut().restart_sessions(now, session);
            }
        }
        self.send_group_replies(out);
        // No input may come soon: read on behind the answers now.
        self.resume_released(now);
    }

    /// Group deadlines due by `now` (sessions, rebalance timeouts).
    pub(super) fn group_timeout(&mut self, now: Timestamp) {
        let due: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.next_deadline().is_some_and(|t| t <= now))
            .map(|g| g.id().to_owned())
            .collect();
        let mut out = Vec::new();
        let partitions = self.partition_counts();
        for id in &due {
            if let Some(g) = self.groups.get_mut(id) {
                g.tick(now, &self.config.groups, &mut out);
                if g.coordinator().is_some() {
                    g.consumer_mut().expire(now, &partitions);
                }
            }
        }
        self.send_group_replies(out);
        for id in &due {
            self.dispose_if_empty(id);
        }
    }

    /// The earliest group deadline.
    pub(super) fn group_poll_timeout(&self) -> Option<Timestamp> {
        self.groups.values().filter_map(Group::next_deadline).min()
    }

    /// Sends answers that were parked and lets their connections read on.
    fn send_group_replies(&mut self, out: Vec<Reply>) {
        for r in out {
            let Some(c) = self.conns.get_mut(&r.to.conn) else {
                continue; // the client went away meanwhile
            };
            c.awaiting_group = false;
            let api = match r.to.kind {
                ParkedKind::Join => ApiKey::JoinGroup,
                ParkedKind::Sync => ApiKey::SyncGroup,
            };
            self.respond(r.to.conn, api, r.to.version, r.to.corr, r.body);
            self.resume.push(r.to.conn);
        }
    }

    /// Holds `conn`'s next requests until its parked answer is sent (Kafka
    /// mutes a connection while a request is in progress).
    fn park(&mut self, conn: ServerConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.awaiting_group = true;
        }
    }

    // ------------------------------------------------------------------
    // FindCoordinator
    // ------------------------------------------------------------------

    pub(super) fn find_coordinator(
        &mut self,
        v: i16,
        req: FindCoordinatorRequest,
    ) -> FindCoordinatorResponse {
        let keys = if v >= 4 {
            req.coordinator_keys
        } else {
            vec![req.key]
        };
        let found: Vec<Coordinator> = keys
            .into_iter()
            .map(|key| self.locate(req.key_type, key))
            .collect();
        if v >= 4 {
            return FindCoordinatorResponse {
                coordinators: found,
                ..Default::default()
            };
        }
        let c = found.into_iter().next().unwrap_or_default();
        FindCoordinatorResponse {
            error_code: c.error_code,
            error_message: if v >= 1 { c.error_message } else { None },
            node_id: c.node_id,
            host: c.host,
            port: c.port,
            ..Default::default()
        }
    }

    /// One key of a FindCoordinator.
    fn locate(&mut self, key_type: i8, key: String) -> Coordinator {
        let fail = |key: String, code: ErrorCode, why: &str| Coordinator {
            key,
            node_id: -1,
            host: String::new(),
            port: -1,
            error_code: code.code(),
            error_message: Some(why.to_owned()),
            ..Default::default()
        };
        let node = match key_type {
            KEY_TYPE_GROUP => {
                if key.is_empty() {
                    return fail(key, ErrorCode::InvalidRequest, "empty group id");
                }
                if !self.ensure_offsets_topic() {
                    return fail(key, ErrorCode::CoordinatorNotAvailable, "no offsets topic");
                }
                self.coordinator_of(&key)
            }
            KEY_TYPE_TRANSACTION => {
                if key.is_empty() {
                    return fail(key, ErrorCode::InvalidRequest, "empty transactional id");
                }
                if !self.ensure_transaction_topic() {
                    return fail(
                        key,
                        ErrorCode::CoordinatorNotAvailable,
                        "no transaction state topic",
                    );
                }
                self.transaction_coordinator_of(&key)
            }
            _ => {
                return fail(
                    key,
                    ErrorCode::InvalidRequest,
                    "the simulator has no share coordinator",
                )
            }
        };
        let Some(addr) = node
            .and_then(|n| self.brokers.get(&n))
            .filter(|b| b.up)
            .map(|b| b.addr.clone())
        else {
            return fail(
                key,
                ErrorCode::CoordinatorNotAvailable,
                "the coordinator's partition has no leader",
            );
        };
        Coordinator {
            key,
            node_id: addr.node,
            host: addr.host,
            port: addr.port,
            error_code: 0,
            error_message: None,
            ..Default::default()
        }
    }

    // ------------------------------------------------------------------
    // JoinGroup, SyncGroup, Heartbeat, LeaveGroup
    // ------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub(super) fn join_group(
        &mut self,
        now: Timestamp,
        conn: ServerConnId,
        node: NodeId,
        v: i16,
        corr: i32,
        client_id: String,
        req: JoinGroupRequest,
    ) {
        let at = Pending {
            conn,
            version: v,
            corr,
            kind: ParkedKind::Join,
        };
        let answer = self.join_answer(now, node, at, client_id, req);
        if let Answer::Now(body) = answer {
            self.respond(
                conn,
                ApiKey::JoinGroup,
                v,
                corr,
                ResponseBody::JoinGroup(body),
            );
        }
    }

    fn join_answer(
        &mut self,
        now: Timestamp,
        node: NodeId,
        at: Pending,
        client_id: String,
        req: JoinGroupRequest,
    ) -> Answer<sansa_core::protocol::messages::JoinGroupResponse> {
        let v = at.version;
        let fail = |code: ErrorCode| Answer::Now(join_error(v, code, &req.member_id));
        if let Err(e) = self.check_coordinator(node, &req.group_id) {
            return fail(e);
        }
        if self
            .groups
            .get(&req.group_id)
            .is_some_and(|g| !g.consumer().is_empty())
        {
            // A KIP-848 group takes no classic members (Kafka 4.0 without
            // its upgrade path).
            return fail(ErrorCode::InconsistentGroupProtocol);
        }
        if let Some(e) = self.draw_group_fault(ApiKey::JoinGroup) {
            return fail(e);
        }
        let s = &self.config.groups;
        let Some(session) = millis(req.session_timeout_ms)
            .filter(|d| *d >= s.min_session_timeout && *d <= s.max_session_timeout)
        else {
            return fail(ErrorCode::InvalidSessionTimeout);
        };
        // v0 has no rebalance timeout: the session timeout serves.
        let rebalance = if v == 0 {
            session
        } else {
            millis(req.rebalance_timeout_ms).unwrap_or(session)
        };
        if !self.groups.contains_key(&req.group_id) && !req.member_id.is_empty() {
            return fail(ErrorCode::UnknownMemberId);
        }
        let fresh = if req.member_id.is_empty() {
            let prefix = req
                .group_instance_id
                .clone()
                .unwrap_or_else(|| client_id.clone());
            self.fresh_member_id(&prefix)
        } else {
            String::new()
        };
        let args = JoinArgs {
            member_id: req.member_id.clone(),
            instance_id: if v >= 5 { req.group_instance_id } else { None },
            client_id,
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocol_type: req.protocol_type,
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name, p.metadata))
                .collect(),
        };
        let settings = self.config.groups.clone();
        let group = match self.create_group(&req.group_id, node) {
            Ok(g) => g,
            Err(e) => return fail(e),
        };
        let mut out = Vec::new();
        let answer = group.join(now, &settings, args, fresh, at, &mut out);
        if matches!(answer, Answer::Parked) {
            self.park(at.conn);
        }
        self.send_group_replies(out);
        self.dispose_if_empty(&req.group_id);
        answer
    }

    pub(super) fn sync_group(
        &mut self,
        now: Timestamp,
        conn: ServerConnId,
        node: NodeId,
        v: i16,
        corr: i32,
        req: SyncGroupRequest,
    ) {
        let at = Pending {
            conn,
            version: v,
            corr,
            kind: ParkedKind::Sync,
        };
        let checked = self.check_coordinator(node, &req.group_id).and_then(|()| {
            match self.draw_group_fault(ApiKey::SyncGroup) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        });
        let one_plan = self.config.sabotage == Sabotage::SyncGivesEveryoneOnePlan;
        let answer = match checked {
            Err(e) => Answer::Now(sync_error(v, e)),
            Ok(()) => match self.groups.get_mut(&req.group_id) {
                None => Answer::Now(sync_error(v, ErrorCode::UnknownMemberId)),
                Some(g) => {
                    let mut out = Vec::new();
                    let mut assignments: Vec<(String, Bytes)> = req
                        .assignments
                        .into_iter()
                        .map(|a| (a.member_id, a.assignment))
                        .collect();
                    if one_plan {
                        let first = assignments
                            .iter()
                            .map(|a| a.1.clone())
                            .find(|a| !a.is_empty());
                        if let Some(first) = first {
                            for a in &mut assignments {
                                a.1 = first.clone();
                            }
                        }
                    }
                    let answer = g.sync(
                        now,
                        &req.member_id,
                        req.group_instance_id.as_deref(),
                        req.generation_id,
                        (req.protocol_type.as_deref(), req.protocol_name.as_deref()),
                        assignments,
                        at,
                        &mut out,
                    );
                    if matches!(answer, Answer::Parked) {
                        self.park(conn);
                    }
                    self.send_group_replies(out);
                    answer
                }
            },
        };
        if let Answer::Now(body) = answer {
            self.respond(
                conn,
                ApiKey::SyncGroup,
                v,
                corr,
                ResponseBody::SyncGroup(body),
            );
        }
    }

    pub(super) fn heartbeat(
        &mut self,
        now: Timestamp,
        node: NodeId,
        req: HeartbeatRequest,
    ) -> HeartbeatResponse {
        let checked = self.check_coordinator(node, &req.group_id).and_then(|()| {
            match self.draw_group_fault(ApiKey::Heartbeat) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        });
        let code = match checked {
            Err(e) => e,
            Ok(()) => match self.groups.get_mut(&req.group_id) {
                None => ErrorCode::UnknownMemberId,
                Some(g) => g.heartbeat(
                    now,
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                ),
            },
        };
        HeartbeatResponse {
            error_code: code.code(),
            ..Default::default()
        }
    }

    pub(super) fn leave_group(
        &mut self,
        now: Timestamp,
        node: NodeId,
        v: i16,
        req: LeaveGroupRequest,
    ) -> LeaveGroupResponse {
        let leaving: Vec<(String, Option<String>)> = if v >= 3 {
            req.members
                .into_iter()
                .map(|m| (m.member_id, m.group_instance_id))
                .collect()
        } else {
            vec![(req.member_id, None)]
        };
        let top = self.check_coordinator(node, &req.group_id).err();
        let settings = self.config.groups.clone();
        let mut out = Vec::new();
        let results: Vec<MemberResponse> = leaving
            .into_iter()
            .map(|(member_id, instance_id)| {
                let code = match (top, self.groups.get_mut(&req.group_id)) {
                    (Some(e), _) => e,
                    (None, None) => ErrorCode::UnknownMemberId,
                    (None, Some(g)) => {
                        g.leave(now, &settings, &member_id, instance_id.as_deref(), &mut out)
                    }
                };
                MemberResponse {
                    member_id,
                    group_instance_id: instance_id,
                    error_code: code.code(),
                    ..Default::default()
                }
            })
            .collect();
        self.send_group_replies(out);
        self.dispose_if_empty(&req.group_id);
        if v >= 3 {
            LeaveGroupResponse {
                error_code: top.map_or(0, ErrorCode::code),
                members: if top.is_some() { Vec::new() } else { results },
                ..Default::default()
            }
        } else {
            LeaveGroupResponse {
                error_code: results.first().map_or(0, |r| r.error_code),
                ..Default::default()
            }
        }
    }

    // ------------------------------------------------------------------
    // OffsetCommit, OffsetFetch
    // ------------------------------------------------------------------

    pub(super) fn offset_commit(
        &mut self,
        now: Timestamp,
        node: NodeId,
        v: i16,
        req: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        let (generation, member_id, instance_id) = if v == 0 {
            (-1, String::new(), None)
        } else {
            (
                req.generation_id_or_member_epoch,
                req.member_id.clone(),
                req.group_instance_id.clone(),
            )
        };
        let injected = self
            .check_coordinator(node, &req.group_id)
            .ok()
            .and_then(|()| self.draw_group_fault(ApiKey::OffsetCommit));
        let stale_ok = self.config.sabotage == Sabotage::AcceptStaleCommits;
        let verdict = self.check_coordinator(node, &req.group_id).and_then(|()| {
            if let Some(e) = injected {
                return Err(e);
            }
            if stale_ok {
                self.create_group(&req.group_id, node)?;
                return Ok(());
            }
            if !self.groups.contains_key(&req.group_id) && generation >= 0 {
                // A generation for a group that does not exist: a
                // member of a group that is gone.
                return Err(ErrorCode::IllegalGeneration);
            }
            let g = self.create_group(&req.group_id, node)?;
            if !g.consumer().is_empty() {
                // KIP-848: OffsetCommit v9+ carries the member epoch.
                return g.consumer().check_commit(&member_id, generation);
            }
            g.check_commit(now, generation, &member_id, instance_id.as_deref())
        });
        let max_metadata = self.config.groups.max_metadata_bytes;
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in t.partitions {
                let code = match verdict {
                    Err(e) => e,
                    Ok(()) if self.partition(&t.name, p.partition_index).is_none() => {
                        ErrorCode::UnknownTopicOrPartition
                    }
                    Ok(())
                        if p.committed_metadata
                            .as_ref()
                            .is_some_and(|m| m.len() > max_metadata) =>
                    {
                        ErrorCode::OffsetMetadataTooLarge
                    }
                    Ok(()) => {
                        self.stats.offsets_committed += 1;
                        if let Some(g) = self.groups.get_mut(&req.group_id) {
                            if let Some(log) = &mut self.accepted_commits {
                                log.push(AcceptedCommit {
                                    group: req.group_id.clone(),
                                    member_id: member_id.clone(),
                                    generation,
                                    group_generation: g.generation_of(&member_id),
                                    topic: t.name.clone(),
                                    partition: p.partition_index,
                                    offset: p.committed_offset,
                                });
                            }
                            g.store_offset(
                                &t.name,
                                p.partition_index,
                                CommittedOffset {
                                    offset: p.committed_offset,
                                    leader_epoch: if v >= 6 {
                                        p.committed_leader_epoch
                                    } else {
                                        -1
                                    },
                                    metadata: p.committed_metadata,
                                },
                            );
                        }
                        ErrorCode::None
                    }
                };
                parts.push(OffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code: code.code(),
                    ..Default::default()
                });
            }
            topics.push(OffsetCommitResponseTopic {
                name: t.name,
                partitions: parts,
                ..Default::default()
            });
        }
        self.dispose_if_empty(&req.group_id);
        OffsetCommitResponse {
            topics,
            ..Default::default()
        }
    }

    pub(super) fn offset_fetch(
        &mut self,
        node: NodeId,
        v: i16,
        req: OffsetFetchRequest,
    ) -> OffsetFetchResponse {
        // KIP-447: a v7+ client may ask to hear UNSTABLE_OFFSET_COMMIT for
        // a partition a transaction holds an offset of.
        let stable = v >= 7 && req.require_stable;
        if v >= 8 {
            let groups = req
                .groups
                .into_iter()
                .map(|g| {
                    let wanted = g.topics.map(|ts| {
                        ts.into_iter()
                            .map(|t| (t.name, t.partition_indexes))
                            .collect::<Vec<_>>()
                    });
                    let fetched = self
                        .check_fetch_member(&g.group_id, g.member_id.as_deref(), g.member_epoch)
                        .and_then(|()| self.fetch_offsets(node, &g.group_id, wanted, stable));
                    match fetched {
                        Err(e) => OffsetFetchResponseGroup {
                            group_id: g.group_id,
                            error_code: e.code(),
                            ..Default::default()
                        },
                        Ok(found) => OffsetFetchResponseGroup {
                            group_id: g.group_id,
                            topics: found
                                .into_iter()
                                .map(|(name, parts)| OffsetFetchResponseTopics {
                                    name,
                                    partitions: parts
                                        .into_iter()
                                        .map(|(i, o, e)| OffsetFetchResponsePartitions {
                                            partition_index: i,
                                            committed_offset: o.offset,
                                            committed_leader_epoch: o.leader_epoch,
                                            metadata: o.metadata,
                                            error_code: e.code(),
                                            ..Default::default()
                                        })
                                        .collect(),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        },
                    }
                })
                .collect();
            return OffsetFetchResponse {
                groups,
                ..Default::default()
            };
        }
        // v0 and v1 always name their partitions.
        let wanted = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect::<Vec<_>>()
        });
        let fetched = self
            .check_coordinator(node, &req.group_id)
            .and_then(|()| match self.draw_group_fault(ApiKey::OffsetFetch) {
                Some(e) => Err(e),
                None => Ok(()),
            })
            .and_then(|()| self.fetch_offsets(node, &req.group_id, wanted.clone(), stable));
        match fetched {
            Ok(found) => OffsetFetchResponse {
                topics: found
                    .into_iter()
                    .map(|(name, parts)| OffsetFetchResponseTopic {
                        name,
                        partitions: parts
                            .into_iter()
                            .map(|(i, o, e)| OffsetFetchResponsePartition {
                                partition_index: i,
                                committed_offset: o.offset,
                                committed_leader_epoch: o.leader_epoch,
                                metadata: o.metadata,
                                error_code: e.code(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            // From v2 the error is the response's; before, each
            // partition's.
            Err(e) if v >= 2 => OffsetFetchResponse {
                error_code: e.code(),
                ..Default::default()
            },
            Err(e) => OffsetFetchResponse {
                topics: wanted
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, parts)| OffsetFetchResponseTopic {
                        name,
                        partitions: parts
                            .into_iter()
                            .map(|i| OffsetFetchResponsePartition {
                                partition_index: i,
                                committed_offset: -1,
                                metadata: Some(String::new()),
                                error_code: e.code(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }

    /// OffsetFetch v9+ of a KIP-848 member: the member must be in the
    /// group at the epoch it names (Kafka checks only when a member id is
    /// given; a classic group's fetch names none).
    fn check_fetch_member(
        &self,
        group: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), ErrorCode> {
        let Some(id) = member_id else {
            return Ok(());
        };
        match self.groups.get(group) {
            Some(g) if !g.consumer().is_empty() => g.consumer().check_commit(id, epoch),
            _ => Ok(()),
        }
    }

    /// The committed offsets of `group` for `wanted` partitions (every
    /// committed one when `None`); -1 for a partition with no commit, and
    /// -1 with UNSTABLE_OFFSET_COMMIT for one a transaction holds an
    /// offset of when `require_stable`.
    #[allow(clippy::type_complexity)]
    fn fetch_offsets(
        &self,
        node: NodeId,
        group: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Result<Vec<(String, Vec<(i32, CommittedOffset, ErrorCode)>)>, ErrorCode> {
        self.check_coordinator(node, group)?;
        let forget = self.config.sabotage == Sabotage::OffsetFetchForgetsCommits;
        let g = self.groups.get(group).filter(|_| !forget);
        let none = CommittedOffset {
            offset: -1,
            leader_epoch: -1,
            metadata: Some(String::new()),
        };
        let unstable = |name: &str, i: i32| {
            require_stable && g.is_some_and(|g| g.has_pending_txn_offset(name, i))
        };
        Ok(match wanted {
            Some(ts) => ts
                .into_iter()
                .map(|(name, parts)| {
                    let found = parts
                        .into_iter()
                        .map(|i| {
                            if unstable(&name, i) {
                                return (i, none.clone(), ErrorCode::UnstableOffsetCommit);
                            }
                            let o = g
                                .and_then(|g| g.committed(&name, i))
                                .cloned()
                                .unwrap_or_else(|| none.clone());
                            (i, o, ErrorCode::None)
                        })
                        .collect();
                    (name, found)
                })
                .collect(),
            None => {
                let mut all: Vec<(String, Vec<(i32, CommittedOffset, ErrorCode)>)> = Vec::new();
                for ((t, p), o) in g.map(Group::offsets).into_iter().flatten() {
                    let found = if unstable(t, *p) {
                        (*p, none.clone(), ErrorCode::UnstableOffsetCommit)
                    } else {
                        (*p, o.clone(), ErrorCode::None)
                    };
                    match all.last_mut() {
                        Some((name, parts)) if name == t => parts.push(found),
                        _ => all.push((t.clone(), vec![found])),
                    }
                }
                all
            }
        })
    }

    // ------------------------------------------------------------------
    // DescribeGroups, ListGroups
    // ------------------------------------------------------------------

    pub(super) fn describe_groups(
        &self,
        node: NodeId,
        v: i16,
        req: DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let groups = req
            .groups
            .into_iter()
            .map(|id| {
                let mut d = DescribedGroup {
                    group_id: id.clone(),
                    authorized_operations: if v >= 3 && req.include_authorized_operations {
                        0
                    } else {
                        i32::MIN
                    },
                    ..Default::default()
                };
                if let Err(e) = self.check_coordinator(node, &id) {
                    d.error_code = e.code();
                    return d;
                }
                let Some(g) = self.groups.get(&id) else {
                    d.group_state = "Dead".into();
                    return d;
                };
                let stable = g.state() == GroupState::Stable;
                let protocol = if stable {
                    g.protocol().unwrap_or("")
                } else {
                    ""
                };
                d.group_state = g.state().name().into();
                d.protocol_type = g.protocol_type().unwrap_or("").into();
                d.protocol_data = protocol.into();
                d.members = g
                    .members()
                    .map(|m| DescribedGroupMember {
                        member_id: m.id().to_owned(),
                        group_instance_id: if v >= 4 {
                            m.instance_id().map(str::to_owned)
                        } else {
                            None
                        },
                        client_id: m.client_id().to_owned(),
                        member_metadata: if stable {
                            m.metadata(protocol).cloned().unwrap_or_default()
                        } else {
                            Bytes::new()
                        },
                        member_assignment: if stable {
                            m.assignment().clone()
                        } else {
                            Bytes::new()
                        },
                        ..Default::default()
                    })
                    .collect();
                d
            })
            .collect();
        DescribeGroupsResponse {
            groups,
            ..Default::default()
        }
    }

    pub(super) fn list_groups(
        &self,
        node: NodeId,
        v: i16,
        req: ListGroupsRequest,
    ) -> ListGroupsResponse {
        let groups = self
            .groups
            .values()
            .filter(|g| g.coordinator() == Some(node) && self.coordinator_of(g.id()) == Some(node))
            .filter(|g| {
                v < 4
                    || req.states_filter.is_empty()
                    || req
                        .states_filter
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state().name()))
            })
            .filter(|_| {
                v < 5
                    || req.types_filter.is_empty()
                    || req
                        .types_filter
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case("classic"))
            })
            .map(|g| ListedGroup {
                group_id: g.id().to_owned(),
                protocol_type: g.protocol_type().unwrap_or("").to_owned(),
                group_state: if v >= 4 {
                    g.state().name().to_owned()
                } else {
                    String::new()
                },
                group_type: if v >= 5 {
                    "classic".to_owned()
                } else {
                    String::new()
                },
                ..Default::default()
            })
            .collect();
        ListGroupsResponse {
            groups,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_string_hash_matches_java() {
        // Values from Java's "...".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("consumer-group"), -1_738_392_088);
        // Non-ASCII counts UTF-16 code units: U+1F600 is a surrogate pair.
        assert_eq!(java_string_hash("\u{1F600}"), 1_772_899);
    }

    #[test]
    fn offsets_partition_is_abs_hash_mod_partitions() {
        assert_eq!(offsets_partition_for("hello", 50), 99_162_322 % 50);
        assert_eq!(
            offsets_partition_for("consumer-group", 50),
            1_738_392_088 % 50
        );
        for g in ["", "a", "group-1", "\u{1F600}", "x".repeat(300).as_str()] {
            let p = offsets_partition_for(g, 7);
            assert!((0..7).contains(&p), "{g}: {p}");
        }
    }
}
