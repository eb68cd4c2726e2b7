//! The client's side of consumer-group membership: routing the
//! [`Member`]'s requests (FindCoordinator to any broker, the rest to the
//! coordinator), feeding it the topic layout it balances with, and carrying
//! its decisions to the consumer (assign at the fetched offsets, revoke
//! with buffered records dropped) and to the application (events).
//!
//! Kept apart from `mod.rs` so the group's wiring is one place: `mod.rs`
//! only calls [`Client::drive_group`] from `drive`, hands group answers
//! back, and asks [`Client::leave_before_close`] on close.

use std::collections::BTreeMap;

use super::{Client, ConnId, Event, Output, Pending};
use crate::conn::{Connection, RequestToken};
use crate::consumer::{ConsumedRecord, FetchedPartition};
use crate::group::balancer::TopicLayout;
use crate::group::member::{Coordinator, GroupOutput, GroupRequest, Target};
use crate::group::{CommitId, EpochOffset, GroupEvent, Member, TopicPartition};
use crate::protocol::ApiKey;
use crate::time::Timestamp;

/// Requests built per drive at most: a bound, not a budget (the member
/// wants at most one per lane).
const MAX_GROUP_REQUESTS_PER_DRIVE: usize = 16;

impl Client {
    /// The consumer-group member, when a group is configured.
    pub fn group_member(&self) -> Option<&Member> {
        self.group.as_ref()
    }

    /// Commits everything polled and not yet committed, in the current
    /// generation ([`Event::CommitFinished`] with the returned id says how
    /// it went). `None` without a consumer group.
    pub fn commit_uncommitted_offsets(&mut self, now: Timestamp) -> Option<CommitId> {
        self.tick(now);
        self.group.as_mut().map(Member::commit_uncommitted)
    }

    /// Commits these positions (the next offset to consume per partition)
    /// of owned partitions. Positions at or below what is committed are
    /// left out unless `allow_backwards`. `None` without a consumer group.
    pub fn commit_offsets(
        &mut self,
        now: Timestamp,
        offsets: BTreeMap<TopicPartition, EpochOffset>,
        allow_backwards: bool,
    ) -> Option<CommitId> {
        self.tick(now);
        self.group
            .as_mut()
            .map(|g| g.commit_offsets(offsets, allow_backwards))
    }

    /// Commits past these records: per partition, the offset after the
    /// highest record given (franz-go's `CommitRecords`). Forward only.
    /// `None` without a consumer group.
    pub fn commit_records(
        &mut self,
        now: Timestamp,
        records: &[ConsumedRecord],
    ) -> Option<CommitId> {
        let offsets = crate::group::offsets::positions_after(records);
        self.commit_offsets(now, offsets, false)
    }

    /// Lets a rebalance step held for the application go on (with
    /// `GroupConfig::require_rebalance_ack`): call it after handling
    /// [`Event::PartitionsAssigned`], [`Event::PartitionsRevoked`] or
    /// [`Event::PartitionsLost`].
    pub fn allow_rebalance(&mut self, now: Timestamp) {
        self.tick(now);
        if let Some(g) = &mut self.group {
            g.allow_rebalance(now);
            g.handle_timeout(now);
        }
    }

    /// Tells the member what the application polled.
    pub(super) fn note_polled(&mut self, polled: &[FetchedPartition]) {
        let Some(g) = &mut self.group else {
            return;
        };
        g.note_poll(self.now);
        g.on_polled(polled.iter().filter_map(|f| {
            let last = f.records.last()?;
            Some((
                &*f.topic,
                f.partition,
                EpochOffset {
                    offset: last.offset.saturating_add(1),
                    leader_epoch: last.leader_epoch,
                },
            ))
        }));
    }

    /// Records of a poll that never reached the application: each
    /// partition's polled position goes back to its first such record.
    pub(super) fn note_unpolled(&mut self, unpolled: &[FetchedPartition]) {
        let Some(g) = &mut self.group else {
            return;
        };
        for f in unpolled {
            if let Some(first) = f.records.first() {
                g.on_unpolled(&f.topic, f.partition, first.offset);
            }
        }
    }

    /// Starts leaving the group on close; `true` if the close must wait
    /// for it ([`Event::GroupLeft`] follows, then the close).
    pub(super) fn leave_before_close(&mut self, now: Timestamp) -> bool {
        let Some(g) = &mut self.group else {
            return false;
        };
        if g.is_done() {
            return false;
        }
        g.leave(now);
        if g.is_done() {
            return false;
        }
        self.close_after_leave = true;
        true
    }

    /// Whether the group needs metadata (its topics, the leader's layout).
    pub(super) fn group_wants_metadata(&self) -> bool {
        self.group
            .as_ref()
            .is_some_and(|g| !g.is_done() && !g.topics().is_empty())
    }

    /// The topics the group needs metadata for.
    pub(super) fn group_topics(&self) -> Vec<String> {
        let Some(g) = &self.group else {
            return Vec::new();
        };
        let mut topics = g.topics().to_vec();
        if let Some(layout) = g.layout_wanted() {
            topics.extend(layout);
        }
        topics.extend(g.balanced_topics().cloned());
        topics.sort();
        topics.dedup();
        topics
    }

    /// Runs the group: the leader's layout, the member's decisions, its
    /// requests; and a close waiting for the member to leave.
    pub(super) fn drive_group(&mut self, now: Timestamp) {
        if self.group.is_none() {
            return;
        }
        self.provide_group_layout(now);
        self.name_group_topics(now);
        self.apply_group_outputs();
        for _ in 0..MAX_GROUP_REQUESTS_PER_DRIVE {
            if !self.send_group_request(now) {
                break;
            }
        }
        self.apply_group_outputs();
        if self.close_after_leave && self.group.as_ref().is_some_and(Member::is_done) {
            self.close_after_leave = false;
            self.outputs.push_back(Output::Event(Event::GroupLeft));
            self.close(now);
        }
    }

    /// The leader balances with the layout of every member's topics: from
    /// the cache when it knows them all, else after the answer to a
    /// metadata request sent after it asked, at once (a topic still
    /// unknown then is not assigned).
    fn provide_group_layout(&mut self, now: Timestamp) {
        let Some(g) = &mut self.group else {
            return;
        };
        let Some(topics) = g.layout_wanted() else {
            self.layout_asked_at = None;
            return;
        };
        let known = topics.iter().all(|t| self.metadata.topic(t).is_some());
        let asked = match self.layout_asked_at {
            Some(a) => a,
            None => {
                // Urgent: the whole group waits between JoinGroup and
                // SyncGroup for this answer, and `metadata_min_age` (5 s)
                // would hold it past short session timeouts (the
                // simulator's group swarm: the leader lost its partitions
                // to its own session watchdog before it could sync).
                self.refresh.trigger_urgent();
                // A refresh already out was asked without these topics:
                // its answer does not count, the next one does (the sim's
                // group swarm, seed 134: a topic only another member
                // subscribed to was never assigned).
                let asked = self.metadata_answers + u64::from(self.metadata_in_flight);
                self.layout_asked_at = Some(asked);
                asked
            }
        };
        if known || self.metadata_answers > asked {
            g.provide_layout(now, &TopicLayout::from_metadata(&self.metadata));
            self.layout_asked_at = None;
        }
    }

    /// After a metadata answer: a leader whose members' topics changed
    /// since it balanced rejoins.
    pub(super) fn check_group_layout(&mut self, now: Timestamp) {
        if let Some(g) = &mut self.group {
            g.check_layout(now, &TopicLayout::from_metadata(&self.metadata));
        }
    }

    /// KIP-848: the target assignment names topics by id; names them from
    /// the metadata cache, and refreshes metadata while some id is unknown
    /// (a topic created after the last refresh).
    fn name_group_topics(&mut self, now: Timestamp) {
        let Some(g) = &mut self.group else {
            return;
        };
        let unnamed = g.unnamed_topic_ids();
        if unnamed.is_empty() {
            self.topic_ids_asked_at = None;
            return;
        }
        let metadata = &self.metadata;
        g.name_topics(now, &|id| {
            metadata
                .topics()
                .find(|(_, t)| t.id == id)
                .map(|(name, _)| name.clone())
        });
        if g.unnamed_topic_ids().is_empty() {
            self.topic_ids_asked_at = None;
            return;
        }
        // Once per metadata answer: the refresh schedule spaces them.
        if self.topic_ids_asked_at != Some(self.metadata_answers) {
            tracing::debug!(
                ids = unnamed.len(),
                "refreshing metadata to name assigned topic ids"
            );
            self.refresh.trigger();
            self.topic_ids_asked_at = Some(self.metadata_answers);
        }
    }

    fn apply_group_outputs(&mut self) {
        let Some(g) = &mut self.group else {
            return;
        };
        while let Some(o) = g.poll_output() {
            match o {
                GroupOutput::Assign(partitions) => {
                    self.consumer.assign_group_partitions(partitions);
                }
                GroupOutput::Revoke(partitions) => {
                    self.consumer.revoke_group_partitions(&partitions);
                    // Dropping the revoked partitions' records may leave
                    // nothing to poll (a new arrival signals again), but
                    // never counts as a signal sent: records of the
                    // partitions kept, buffered before any FetchesReady
                    // went out, would wait for one forever.
                    self.fetches_signalled &= self.consumer.has_buffered();
                }
                GroupOutput::Event(e) => {
                    // A group-transact session turned `require_rebalance_ack`
                    // on: it sets its abort flag on a revoke or loss in a
                    // transaction and holds it until the end, and lets
                    // everything else go on at once.
                    if self
                        .group_txn
                        .as_mut()
                        .is_some_and(|s| s.on_group_event(&e))
                    {
                        g.allow_rebalance(self.now);
                        g.handle_timeout(self.now);
                    }
                    let event = match e {
                        GroupEvent::PartitionsAssigned(p) => Event::PartitionsAssigned(p),
                        GroupEvent::PartitionsRevoked(p) => Event::PartitionsRevoked(p),
                        GroupEvent::PartitionsLost(p) => Event::PartitionsLost(p),
                        GroupEvent::CommitFinished(c) => Event::CommitFinished(c),
                        GroupEvent::Error(e) => Event::GroupError(e),
                    };
                    self.outputs.push_back(Output::Event(event));
                }
            }
        }
    }

    /// Sends the member's next request if it is due and its connection is
    /// ready; `false` when there is nothing more to send now.
    fn send_group_request(&mut self, now: Timestamp) -> bool {
        let Some(target) = self.group.as_ref().and_then(|g| g.next_target(now)) else {
            return false;
        };
        let id = match &target {
            Target::AnyBroker => self.any_ready_conn(now),
            Target::Coordinator(c) => self.conn_to_coordinator(now, c),
        };
        let Some(id) = id else {
            return false;
        };
        let (Some(slot), Some(g)) = (self.slots.get_mut(&id), self.group.as_mut()) else {
            return false;
        };
        if !slot.conn.is_ready() {
            return false;
        }
        let conn = &slot.conn;
        let Some(out) = g.build_request(now, &mut |api, cap| {
            if api == ApiKey::ConsumerGroupHeartbeat {
                // v1 is stable upstream (Apache Kafka 4.0), not yet in the
                // specs sansa was generated from.
                conn.version_past_stable(api, cap).ok()
            } else {
                conn.version_for(api, Some(cap)).ok()
            }
        }) else {
            return true;
        };
        self.next_token += 1;
        let token = RequestToken(self.next_token);
        let v = out.version;
        let sent = match &out.request {
            GroupRequest::FindCoordinator(r) => slot.conn.send(now, r, v, token, true),
            GroupRequest::JoinGroup(r) => slot.conn.send(now, r, v, token, true),
            GroupRequest::SyncGroup(r) => slot.conn.send(now, r, v, token, true),
            GroupRequest::Heartbeat(r) => slot.conn.send(now, r, v, token, true),
            GroupRequest::LeaveGroup(r) => slot.conn.send(now, r, v, token, true),
            GroupRequest::OffsetFetch(r) => slot.conn.send(now, r, v, token, true),
            GroupRequest::OffsetCommit(r) => slot.conn.send(now, r, v, token, true),
            GroupRequest::ConsumerGroupHeartbeat(r) => slot.conn.send(now, r, v, token, true),
        };
        match sent {
            Ok(_) => {
                self.pending.insert(token, Pending::Group(out.in_flight));
                true
            }
            Err(e) => {
                g.on_response(now, out.in_flight, None);
                self.conn_failed(now, id, &e);
                false
            }
        }
    }

    /// The group's own connection to the coordinator, opened if needed.
    ///
    /// Not the coordinator's shared connection: a broker answers each
    /// connection's requests in order, so a JoinGroup (held up to the
    /// rebalance timeout) would stall fetches behind it, and a fetch held
    /// for its max wait would delay heartbeats. franz-go keeps a separate
    /// group connection for the same reason.
    fn conn_to_coordinator(&mut self, now: Timestamp, c: &Coordinator) -> Option<ConnId> {
        if let Some(id) = self.group_conn {
            if self.slots.get(&id).is_some_and(|s| s.node == Some(c.node)) {
                return Some(id);
            }
            // The coordinator moved: the old connection idles out.
            self.group_conn = None;
        }
        let addr = self
            .metadata
            .broker(c.node)
            .map_or_else(|| c.address(), |b| b.address());
        if self.backoff.get(&addr).is_some_and(|b| b.until > now) {
            return None;
        }
        let id = self.open(now, addr, Some(c.node));
        // The broker holds a JoinGroup until every member rejoined, up to
        // the rebalance timeout: the request timeout on this connection
        // covers that on top of the usual one, as franz-go's does. A
        // heartbeat stuck on it is caught by the session watchdog.
        if let (Some(slot), Some(g)) = (self.slots.get_mut(&id), &self.group) {
            let mut conn = self.config.conn.clone();
            conn.request_timeout = conn
                .request_timeout
                .saturating_add(g.config().rebalance_timeout);
            slot.conn = Connection::new(conn);
        }
        self.group_conn = Some(id);
        Some(id)
    }
}
