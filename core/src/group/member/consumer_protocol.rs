//! KIP-848's consumer group protocol: one ConsumerGroupHeartbeat carries
//! the join, the subscription, the acknowledgement of what the member
//! owns, and the leave; the coordinator runs the assignor and answers with
//! the member's target assignment and its member epoch.
//!
//! Everything else — the coordinator search, the OffsetFetch of newly
//! assigned partitions, commits (OffsetCommit v9+ carries the member epoch
//! where the classic protocol carries the generation), the revoke with its
//! commit and the application's acknowledgement, lost partitions — is the
//! classic member's own machinery: this file only speaks the heartbeat and
//! reconciles the assignment it brings.
//!
//! Rules (KIP-848, and Apache Kafka's consumer, which franz-go lacks), and
//! the failures they prevent:
//! - **Epochs.** The member joins at epoch 0 and then sends the latest
//!   epoch the coordinator gave it; -1 leaves, -2 leaves a static member's
//!   assignment waiting for it (KIP-345's promise under KIP-848). A stale
//!   epoch is fenced.
//! - **Member id.** Version 1 (KIP-1082): the client makes the id up, from
//!   the seeded randomness, and keeps it for its life; version 0: the
//!   coordinator's answer gives it.
//! - **Revoke before assign.** The coordinator hands a partition to a new
//!   owner only after the old owner acknowledged giving it up. A member
//!   that receives a target first gives up what the target lacks (the
//!   commit on revoke, `PartitionsRevoked`, the application's
//!   acknowledgement), then takes what the target adds, then says so in the
//!   next heartbeat (sent at once) with its owned partitions.
//! - **Topic ids.** The target names topics by id. The member knows names
//!   from the client's metadata (Metadata v10+); a target with an id it
//!   cannot name waits for a metadata refresh for that part, the rest is
//!   reconciled at once (what Apache Kafka's consumer does).
//! - **Fenced** (FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID): the coordinator
//!   may have given the partitions away already, so they are lost (no
//!   commit), and the member rejoins at epoch 0 with the same id.
//! - **Fields sent only when they changed.** The subscription and the owned
//!   partitions are sent on the join and whenever they differ from what
//!   the coordinator last acknowledged receiving; null otherwise.
//! - **Fallback.** A coordinator without ConsumerGroupHeartbeat in its
//!   ApiVersions, or answering UNSUPPORTED_VERSION, gets the classic
//!   protocol (the group must then be a classic one on that cluster).

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopic;
use crate::protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use crate::protocol::Uuid;

/// The member epoch that joins (or rejoins after being fenced).
const JOIN_EPOCH: i32 = 0;
/// The member epoch that leaves the group.
const LEAVE_EPOCH: i32 = -1;
/// The member epoch a static member leaves with: its assignment waits for
/// it to come back within the session timeout.
const STATIC_LEAVE_EPOCH: i32 = -2;

/// Topic ids in one target assignment, at most: a bound on what a hostile
/// answer makes the member remember (the answer itself was bounded by the
/// frame size already).
const MAX_TARGET_TOPICS: usize = 100_000;

/// What the member keeps of KIP-848's protocol while it speaks it.
#[derive(Debug)]
pub(super) struct ConsumerProtocol {
    /// The member id this client made up (KIP-1082), sent from version 1.
    own_member_id: String,
    /// How often to heartbeat: the coordinator's word once it answered.
    heartbeat_interval: Duration,
    /// The subscription the coordinator last received; `None` before.
    sent_topics: Option<Vec<String>>,
    /// The owned partitions the coordinator last received; `None` before.
    sent_owned: Option<PartitionsByTopic>,
    /// The latest target assignment, by topic id.
    target: Option<BTreeMap<Uuid, Vec<i32>>>,
    /// Topic names by id, learned from the client's metadata.
    names: BTreeMap<Uuid, String>,
}

/// A ConsumerGroupHeartbeat on its way: what it told the coordinator, so
/// its answer can record that the coordinator knows it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SentHeartbeat {
    epoch: i32,
    /// Sent to join (epoch 0 on a stable member is no join: librdkafka's
    /// mock keeps a member at epoch 0 until it can assign it something).
    joining: bool,
    topics: Option<Vec<String>>,
    owned: Option<PartitionsByTopic>,
}

impl ConsumerProtocol {
    /// The state of a member about to join, with an id drawn from `rng`.
    pub(super) fn new(heartbeat_interval: Duration, rng: &mut SeededRng) -> Self {
        let mut id = Uuid::from_u64_pair(rng.next_u64(), rng.next_u64());
        // A version 4 (random) UUID, as Java's client makes.
        id.0[6] = (id.0[6] & 0x0f) | 0x40;
        id.0[8] = (id.0[8] & 0x3f) | 0x80;
        ConsumerProtocol {
            own_member_id: id.to_string(),
            heartbeat_interval,
            sent_topics: None,
            sent_owned: None,
            target: None,
            names: BTreeMap::new(),
        }
    }

    /// The target split into what can be named and the ids that cannot.
    fn resolve(&self) -> (PartitionsByTopic, Vec<Uuid>) {
        let mut named = PartitionsByTopic::new();
        let mut unnamed = Vec::new();
        for (id, ps) in self.target.iter().flatten() {
            match self.names.get(id) {
                Some(name) => named.entry(name.clone()).or_default().extend(ps),
                None => unnamed.push(*id),
            }
        }
        (named, unnamed)
    }

    /// `owned` by topic id, for the heartbeat (a topic whose id is not
    /// known is not one the coordinator assigned, so it has none to send).
    fn wire_partitions(&self, owned: &PartitionsByTopic) -> Vec<OwnedTopic> {
        self.names
            .iter()
            .filter_map(|(id, name)| {
                let ps = owned.get(name)?;
                Some(OwnedTopic {
                    topic_id: *id,
                    partitions: ps.clone(),
                    ..Default::default()
                })
            })
            .collect()
    }

    /// The coordinator has forgotten what it knew of this member.
    pub(super) fn forget_sent(&mut self) {
        self.sent_topics = None;
        self.sent_owned = None;
        self.target = None;
    }
}

impl Member {
    /// Which protocol the member speaks now: the configured one, or the
    /// classic one after a fallback.
    pub fn protocol(&self) -> GroupProtocol {
        if self.consumer.is_some() {
            GroupProtocol::Consumer
        } else {
            GroupProtocol::Classic
        }
    }

    /// Topic ids in the target assignment the member cannot name yet; the
    /// client refreshes metadata and names them with
    /// [`Member::name_topics`].
    pub fn unnamed_topic_ids(&self) -> Vec<Uuid> {
        self.consumer
            .as_ref()
            .map(|k| k.resolve().1)
            .unwrap_or_default()
    }

    /// Names target topics by id (from metadata); reconciles what became
    /// nameable.
    pub fn name_topics(&mut self, now: Timestamp, name_of: &dyn Fn(Uuid) -> Option<String>) {
        let Some(k) = &mut self.consumer else {
            return;
        };
        let mut named = false;
        for id in k.resolve().1 {
            if let Some(name) = name_of(id) {
                tracing::debug!(%id, name, "named a topic of the target assignment");
                k.names.insert(id, name);
                named = true;
            }
        }
        if named {
            self.reconcile(now);
            self.advance(now);
        }
    }

    /// Whether a ConsumerGroupHeartbeat is due now (the consumer protocol's
    /// lane in [`Member::next_target`]).
    pub(super) fn consumer_heartbeat_due(&self, now: Timestamp) -> bool {
        let Some(k) = &self.consumer else {
            return false;
        };
        if self.membership_in_flight || !self.timers.clear_by(Timer::Retry, now) {
            return false;
        }
        match self.phase {
            // An empty subscription joins nothing (and the mock cluster
            // aborts on one).
            Phase::Joining => !self.blocked && !self.topics.is_empty(),
            Phase::Stable => {
                self.timers.fired(Timer::Heartbeat, now)
                    || k.sent_topics.as_deref() != Some(&self.topics[..])
                    || k.sent_owned.as_ref() != Some(&self.owned)
            }
            Phase::Leaving => self.revoking.is_none() && !self.commit_in_flight,
            _ => false,
        }
    }

    /// Builds the due ConsumerGroupHeartbeat at `version`.
    pub(super) fn build_consumer_heartbeat(
        &mut self,
        version: i16,
    ) -> Option<(GroupRequest, Lane)> {
        let k = self.consumer.as_ref()?;
        let joining = self.phase == Phase::Joining;
        let leaving = self.phase == Phase::Leaving;
        let epoch = match (joining, leaving) {
            (true, _) => JOIN_EPOCH,
            (_, true) if self.config.instance_id.is_some() => STATIC_LEAVE_EPOCH,
            (_, true) => LEAVE_EPOCH,
            _ => self.generation,
        };
        if self.member_id.is_empty() && version >= 1 {
            self.member_id = k.own_member_id.clone();
        }
        let mut req = ConsumerGroupHeartbeatRequest {
            group_id: self.config.group_id.clone(),
            member_id: self.member_id.clone(),
            member_epoch: epoch,
            // Every heartbeat of a static member names its instance: the
            // coordinator tells static from dynamic members by it.
            instance_id: self.config.instance_id.clone(),
            ..Default::default()
        };
        let mut sent = SentHeartbeat {
            epoch,
            joining,
            topics: None,
            owned: None,
        };
        if !leaving {
            if joining {
                // Required on the join (Apache Kafka refuses a join
                // without a rebalance timeout); null afterwards.
                req.rebalance_timeout_ms = millis(self.config.rebalance_timeout);
                req.rack_id = self.config.rack.clone();
                req.server_assignor = self.config.server_assignor.clone();
            }
            if joining || k.sent_topics.as_deref() != Some(&self.topics[..]) {
                req.subscribed_topic_names = Some(self.topics.clone());
                // The names and an empty regex, as librdkafka sends them:
                // Apache Kafka takes an empty regex for none, and
                // librdkafka's mock cluster aborts unless both fields are
                // null or both set (a mock defect).
                req.subscribed_topic_regex = (version >= 1).then(String::new);
                sent.topics = Some(self.topics.clone());
            }
            // A joining member owns nothing the coordinator knows of.
            let owned = if joining {
                PartitionsByTopic::new()
            } else {
                self.owned.clone()
            };
            if joining || k.sent_owned.as_ref() != Some(&owned) {
                req.topic_partitions = Some(k.wire_partitions(&owned));
                sent.owned = Some(owned);
            }
        }
        self.membership_in_flight = true;
        tracing::debug!(
            epoch,
            member = %self.member_id,
            subscription = sent.topics.is_some(),
            owned = sent.owned.as_ref().map(count),
            "ConsumerGroupHeartbeat"
        );
        Some((
            GroupRequest::ConsumerGroupHeartbeat(req),
            Lane::ConsumerHeartbeat(sent),
        ))
    }

    /// Handles the answer to a ConsumerGroupHeartbeat.
    pub(super) fn on_consumer_heartbeat(
        &mut self,
        now: Timestamp,
        sent: SentHeartbeat,
        r: ConsumerGroupHeartbeatResponse,
    ) {
        self.membership_in_flight = false;
        let error = ErrorCode::from_code(r.error_code);
        if sent.epoch < 0 {
            if !error.is_ok() {
                tracing::info!(%error, "leaving heartbeat failed; the session timeout expels the member");
            }
            self.after_leave_request();
            return;
        }
        // An answer to a join must find the member joining, any other
        // answer a stable member; else it left or was fenced meanwhile.
        let joining = sent.joining;
        let expected = if joining {
            Phase::Joining
        } else {
            Phase::Stable
        };
        if self.phase != expected || self.consumer.is_none() {
            return;
        }
        if !error.is_ok() {
            self.consumer_heartbeat_failed(now, error, r.error_message);
            return;
        }
        let Some(k) = &mut self.consumer else {
            return;
        };
        if let Some(id) = r.member_id.filter(|id| !id.is_empty()) {
            self.member_id = id;
        }
        if let Ok(ms) = u64::try_from(r.heartbeat_interval_ms) {
            if ms > 0 {
                k.heartbeat_interval = Duration::from_millis(ms);
            }
        }
        if let Some(t) = sent.topics {
            k.sent_topics = Some(t);
        }
        if let Some(o) = sent.owned {
            k.sent_owned = Some(o);
        }
        if let Some(a) = r.assignment {
            let mut target: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            for t in a.topic_partitions.into_iter().take(MAX_TARGET_TOPICS) {
                let ps = target.entry(t.topic_id).or_default();
                // A partition number below zero names no partition.
                ps.extend(t.partitions.into_iter().filter(|&p| p >= 0));
                ps.sort_unstable();
                ps.dedup();
            }
            target.retain(|_, ps| !ps.is_empty());
            k.target = Some(target);
        }
        let interval = k.heartbeat_interval;
        self.generation = r.member_epoch;
        self.failures = 0;
        self.timers.set(Timer::Heartbeat, now + interval);
        self.timers
            .set(Timer::Session, now + self.config.session_timeout);
        if joining {
            self.phase = Phase::Stable;
            tracing::info!(
                epoch = self.generation,
                member = %self.member_id,
                ?interval,
                "joined the group (KIP-848)"
            );
        }
        self.reconcile(now);
    }

    fn consumer_heartbeat_failed(
        &mut self,
        now: Timestamp,
        error: ErrorCode,
        message: Option<String>,
    ) {
        tracing::info!(%error, ?message, "ConsumerGroupHeartbeat failed");
        let api = ApiKey::ConsumerGroupHeartbeat;
        match error {
            ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId => self.consumer_fenced(now),
            ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
                self.coordinator_failed(now)
            }
            ErrorCode::UnsupportedVersion => self.fall_back_to_classic(now),
            ErrorCode::FencedInstanceId => {
                let instance_id = self.config.instance_id.clone().unwrap_or_default();
                self.fatal(now, GroupError::FencedInstanceId { instance_id });
            }
            // What retrying cannot fix: the configuration or the cluster
            // must change (Apache Kafka's consumer stops on these too).
            ErrorCode::UnreleasedInstanceId
            | ErrorCode::GroupMaxSizeReached
            | ErrorCode::UnsupportedAssignor
            | ErrorCode::InvalidRequest
            | ErrorCode::GroupAuthorizationFailed
            | ErrorCode::GroupIdNotFound => self.fatal(
                now,
                GroupError::Rejected {
                    api,
                    error,
                    message: message.unwrap_or_default(),
                },
            ),
            other => {
                if !other.is_retriable() && other != ErrorCode::CoordinatorLoadInProgress {
                    self.emit(GroupEvent::Error(GroupError::Broker { api, error: other }));
                }
                let d = self.backoff_delay();
                self.timers.set(Timer::Retry, now + d);
            }
        }
    }

    /// FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID, from any API: the
    /// partitions are lost and the member rejoins at epoch 0, keeping its
    /// id.
    pub(super) fn consumer_fenced(&mut self, now: Timestamp) {
        tracing::warn!(epoch = self.generation, "fenced from the group; rejoining");
        self.lose_all(now);
        self.phase_after_loss(now, false);
    }

    /// The coordinator does not speak ConsumerGroupHeartbeat: speak the
    /// classic protocol from now on.
    pub(super) fn fall_back_to_classic(&mut self, now: Timestamp) {
        tracing::warn!(
            group = self.config.group_id,
            "the coordinator does not support KIP-848's ConsumerGroupHeartbeat; \
             falling back to the classic group protocol"
        );
        self.consumer = None;
        self.lose_all(now);
        self.member_id.clear();
        self.generation = NO_GENERATION;
        self.phase = match self.phase {
            // Not in the group under either protocol: nothing to leave.
            Phase::Leaving => Phase::Done,
            Phase::Stable | Phase::Syncing | Phase::AwaitingLayout => Phase::Joining,
            other => other,
        };
    }

    /// Moves the member toward its target: gives up what the target lacks
    /// (the revoke continues here when done), then takes what it adds. The
    /// next heartbeat acknowledges the result.
    pub(super) fn reconcile(&mut self, now: Timestamp) {
        if self.phase != Phase::Stable || self.revoking.is_some() {
            return;
        }
        let Some(k) = &self.consumer else {
            return;
        };
        if k.target.is_none() {
            return;
        }
        let (named, unnamed) = k.resolve();
        if !unnamed.is_empty() {
            tracing::debug!(
                ids = unnamed.len(),
                "target names topics not in the metadata yet"
            );
        }
        let revoked = difference(&self.owned, &named);
        if !revoked.is_empty() {
            tracing::info!(
                epoch = self.generation,
                revoking = count(&revoked),
                "reconciling: revoking first"
            );
            self.start_revoke(now, revoked, AfterRevoke::Reconcile, true);
            return;
        }
        let added = difference(&named, &self.owned);
        if added.is_empty() {
            return;
        }
        tracing::info!(
            epoch = self.generation,
            added = count(&added),
            "reconciling: assigning"
        );
        self.owned = union(&self.owned, &added);
        self.assignment = named;
        for (t, ps) in &added {
            for &p in ps {
                self.fetch_pending.insert((t.clone(), p));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
