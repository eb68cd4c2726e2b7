//! The member's handling of each answer (or its loss): where the
//! coordinator's errors send it.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

impl Member {
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
                self.after_leave_request();
            }
            (Lane::OffsetFetch { partitions }, Some(GroupResponse::OffsetFetch(r))) => {
                self.on_offset_fetch(now, partitions, &r)
            }
            (Lane::Commit(c), Some(GroupResponse::OffsetCommit(r))) => {
                self.on_commit(now, c, Some(&r))
            }
            (Lane::ConsumerHeartbeat(sent), Some(GroupResponse::ConsumerGroupHeartbeat(r))) => {
                self.on_consumer_heartbeat(now, sent, r)
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
            Lane::Heartbeat { .. } => {
                self.heartbeat_in_flight = false;
                // A check's heartbeat lost: the next one answers it.
                if self.membership_check == Some(true) {
                    self.membership_check = Some(false);
                }
            }
            Lane::Leave => {
                // A static member never gets here; a dynamic one that
                // cannot say goodbye is expelled by its session timeout.
                self.membership_in_flight = false;
                self.after_leave_request();
            }
            Lane::OffsetFetch { .. } => self.fetch_in_flight = false,
            Lane::Commit(c) => self.on_commit(now, c, None),
            Lane::ConsumerHeartbeat(_) => {
                self.membership_in_flight = false;
                if self.phase == Phase::Leaving {
                    // A dynamic member that cannot say goodbye is expelled
                    // by its session timeout; a static one's assignment
                    // waits for it the same way.
                    self.after_leave_request();
                }
            }
        }
    }

    pub(super) fn coordinator_failed(&mut self, now: Timestamp) {
        if self.coordinator.take().is_some() {
            tracing::info!("looking for the group coordinator again");
        }
        self.failures += 1;
        let d = self.backoff.delay(self.failures, &mut self.rng);
        self.timers.set(Timer::Retry, now + d);
    }

    /// Out for good, or until the next poll when the member left for not
    /// polling (with a new member id then: it left).
    pub(super) fn after_leave_request(&mut self) {
        if self.poll_expired && self.phase == Phase::Leaving {
            self.member_id.clear();
            self.phase = Phase::OutUntilPoll;
        } else {
            self.phase = Phase::Done;
        }
    }

    pub(super) fn backoff_delay(&mut self) -> Duration {
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
        self.balanced = None;
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
                self.balanced = Some(
                    join.topics
                        .iter()
                        .map(|t| (t.clone(), layout.partition_count(t).unwrap_or(0)))
                        .collect(),
                );
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
        } else if self.joined_topics != self.topics {
            // Subscribed to more while this generation formed: the leader
            // balanced the old subscription, and nothing else would make
            // the group see the new one (the sim's group swarm, seed 134:
            // a topic was never assigned).
            tracing::info!("the subscription grew during the rebalance; rejoining");
            self.rejoin(now);
        }
    }

    fn on_heartbeat(&mut self, now: Timestamp, generation: i32, error: ErrorCode) {
        self.heartbeat_in_flight = false;
        if self.membership_check == Some(true) {
            self.membership_check = None;
            self.membership_checked = Some(if error.is_ok() && generation == self.generation {
                Ok(())
            } else if error.is_ok() {
                Err(ErrorCode::IllegalGeneration)
            } else {
                Err(error)
            });
        }
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
        if self.consumer.is_some() {
            match error {
                ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch => {
                    self.consumer_fenced(now)
                }
                // A commit with an epoch the coordinator moved past: the
                // next heartbeat brings the new one (the commit retries).
                ErrorCode::StaleMemberEpoch => {}
                ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::CoordinatorLoadInProgress => self.coordinator_failed(now),
                other => self.emit(GroupEvent::Error(GroupError::Broker { api, error: other })),
            }
            return;
        }
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

    pub(super) fn phase_after_loss(&mut self, now: Timestamp, backoff: bool) {
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
                // With its leader epoch, so the consumer validates the
                // position against the leader's log first (KIP-320).
                let start = committed.map_or(self.reset, |c| StartOffset::AtEpoch {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                });
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
        // KIP-848: committed with an epoch the coordinator moved past.
        let mut stale = false;
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
                Some(ErrorCode::StaleMemberEpoch) if self.consumer.is_some() => {
                    self.book.on_commit_done(tp, *at, false);
                    stale = true;
                }
                Some(e) => {
                    self.book.on_commit_done(tp, *at, false);
                    if matches!(
                        e,
                        ErrorCode::UnknownMemberId
                            | ErrorCode::IllegalGeneration
                            | ErrorCode::FencedInstanceId
                            | ErrorCode::RebalanceInProgress
                            | ErrorCode::FencedMemberEpoch
                    ) {
                        membership = Some(e);
                    }
                    failed.insert(tp.clone(), CommitError::Broker(e));
                }
            }
        }
        if (retry || stale) && failed.is_empty() && committed.is_empty() {
            // Not refused, not done: the same commit again, first in line,
            // once the coordinator is found again (or, for a stale member
            // epoch, after a heartbeat, sent at once, brought the new one).
            if retry {
                self.coordinator_failed(now);
            }
            if stale {
                tracing::info!(
                    epoch = self.generation,
                    "commit with a stale member epoch; retrying after a heartbeat"
                );
                self.timers.set(Timer::Heartbeat, now);
            }
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
}
