//! The member's requests: which one is due, and building it at the
//! version the target connection negotiated.

use std::collections::BTreeMap;

use super::*;

impl Member {
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
        if matches!(self.phase, Phase::Idle | Phase::Done | Phase::OutUntilPoll) {
            return None;
        }
        let Some(coordinator) = &self.coordinator else {
            let wanted = !self.find_in_flight && self.timers.clear_by(Timer::Retry, now);
            return wanted.then_some((LaneKind::Find, Target::AnyBroker));
        };
        let to = || Target::Coordinator(coordinator.clone());
        if self.consumer.is_some() {
            if self.consumer_heartbeat_due(now) {
                return Some((LaneKind::ConsumerHeartbeat, to()));
            }
        } else if !self.membership_in_flight {
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
            if self.consumer.is_none()
                && !self.heartbeat_in_flight
                && self.timers.fired(Timer::Heartbeat, now)
            {
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
        let Some(version) = negotiate(api, self.max_version(api)) else {
            if lane == LaneKind::ConsumerHeartbeat {
                // The coordinator's ApiVersions lacks it.
                self.fall_back_to_classic(now);
                return self.build_request(now, negotiate);
            }
            self.fatal(now, GroupError::Unsupported(api));
            return None;
        };
        let group_id = self.config.group_id.clone();
        let instance_id = self.config.instance_id.clone();
        let out = match lane {
            LaneKind::ConsumerHeartbeat => self.build_consumer_heartbeat(version)?,
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
                self.joined_topics.clone_from(&self.topics);
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
                if self.membership_check == Some(false) {
                    self.membership_check = Some(true);
                }
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

    /// The highest version of `api` this member speaks, in the protocol it
    /// speaks now.
    fn max_version(&self, api: ApiKey) -> i16 {
        if api == ApiKey::OffsetCommit && self.consumer.is_some() {
            return CONSUMER_PROTOCOL_OFFSET_COMMIT;
        }
        MAX_VERSIONS
            .iter()
            .find(|(k, _)| *k == api)
            .map_or(0, |(_, v)| *v)
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
        // A cooperative protocol's metadata says what the member owns now:
        // its leader withholds those partitions from others until they are
        // revoked. An eager member (one that also offers an eager balancer)
        // has revoked everything before it joins, so it reports nothing
        // there, or the leader would withhold partitions nobody will give
        // up (the sim's group swarm, seed 8367: two partitions never
        // assigned). Eager balancers get the last assignment, which the
        // sticky one wants back.
        let join = |cooperative: bool| JoinSubscription {
            topics: &self.topics,
            owned: if cooperative || self.cooperative {
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
                    metadata: b.member_metadata(&join(b.is_cooperative()))?,
                    ..Default::default()
                })
            })
            .collect()
    }
}
