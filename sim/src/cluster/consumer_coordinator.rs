//! The request handler of KIP-848's ConsumerGroupHeartbeat, answered as
//! Kafka's `KafkaApis` answers it: coordinator checks, topic ids turned
//! into names and back, and the group's [`ConsumerGroup`] deciding. The
//! group state machine itself is in [`consumer_group`](super::consumer_group).
//!
//! The API is served only when [`GroupSettings::consumer_protocol`] is on
//! (see `api.rs`), so a classic-only cluster looks exactly as before.
//!
//! [`ConsumerGroup`]: super::consumer_group::ConsumerGroup
//! [`GroupSettings::consumer_protocol`]: super::group::GroupSettings::consumer_protocol

use std::collections::{BTreeMap, BTreeSet};

use sansa_core::protocol::messages::consumer_group_heartbeat_response::{
    Assignment, TopicPartitions,
};
use sansa_core::protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
};
use sansa_core::protocol::{ApiKey, ErrorCode};
use sansa_core::Timestamp;

use super::consumer_group::{HeartbeatAnswer, HeartbeatArgs, TopicPartition};
use super::{Cluster, NodeId, Sabotage, OFFSETS_TOPIC};

/// Partitions one heartbeat may claim at most: a bound on what a hostile
/// heartbeat makes the coordinator keep.
const MAX_OWNED_PARTITIONS: usize = 100_000;

impl Cluster {
    /// Every topic's partition count, by name (internal topics are never
    /// assigned).
    pub(super) fn partition_counts(&self) -> BTreeMap<String, i32> {
        self.topics
            .values()
            .filter(|t| t.name != OFFSETS_TOPIC && t.name != super::TRANSACTION_STATE_TOPIC)
            .map(|t| (t.name.clone(), t.partitions.len() as i32))
            .collect()
    }

    pub(super) fn consumer_group_heartbeat(
        &mut self,
        now: Timestamp,
        node: NodeId,
        req: ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        match self.consumer_heartbeat_answer(now, node, req) {
            Ok(a) => self.heartbeat_response(a),
            Err(e) => ConsumerGroupHeartbeatResponse {
                error_code: e.code(),
                error_message: Some(e.to_string()),
                member_epoch: -1,
                ..Default::default()
            },
        }
    }

    fn consumer_heartbeat_answer(
        &mut self,
        now: Timestamp,
        node: NodeId,
        req: ConsumerGroupHeartbeatRequest,
    ) -> Result<HeartbeatAnswer, ErrorCode> {
        self.check_coordinator(node, &req.group_id)?;
        if let Some(e) = self.draw_group_fault(ApiKey::ConsumerGroupHeartbeat) {
            return Err(e);
        }
        if self
            .groups
            .get(&req.group_id)
            .is_some_and(|g| g.has_classic_members())
        {
            // Kafka: a classic group is not a consumer group.
            return Err(ErrorCode::GroupIdNotFound);
        }
        let owned = req.topic_partitions.map(|ts| self.named_partitions(ts));
        let args = HeartbeatArgs {
            member_id: req.member_id,
            epoch: req.member_epoch,
            instance_id: req.instance_id,
            subscription: req.subscribed_topic_names,
            owned,
        };
        // A v0 join gets its id from the coordinator; drawn only then, so
        // that v1 members move no random choice.
        let fresh = (args.epoch == 0 && args.member_id.is_empty())
            .then(|| self.fresh_member_id("consumer"));
        let partitions = self.partition_counts();
        let session = self.config.groups.consumer_session_timeout;
        let sabotage = self.config.sabotage == Sabotage::AssignBeforeRelease;
        let answer = {
            let g = self.create_group(&req.group_id, node)?;
            g.consumer_mut().heartbeat(
                now,
                args,
                &partitions,
                session,
                || fresh.unwrap_or_default(),
                sabotage,
            )
        };
        self.dispose_if_empty(&req.group_id);
        answer
    }

    /// The owned partitions of a heartbeat, by topic name (ids no topic
    /// has are dropped: nothing of them can be assigned).
    fn named_partitions(
        &self,
        ts: Vec<sansa_core::protocol::messages::consumer_group_heartbeat_request::TopicPartitions>,
    ) -> BTreeSet<TopicPartition> {
        ts.into_iter()
            .filter_map(|t| Some((self.topic_by_id(t.topic_id)?, t.partitions)))
            .flat_map(|(name, ps)| ps.into_iter().map(move |p| (name.clone(), p)))
            .take(MAX_OWNED_PARTITIONS)
            .collect()
    }

    fn heartbeat_response(&self, a: HeartbeatAnswer) -> ConsumerGroupHeartbeatResponse {
        let interval = self.config.groups.consumer_heartbeat_interval;
        let assignment = a.assigned.map(|tps| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in &tps {
                by_topic.entry(t).or_default().push(*p);
            }
            Assignment {
                topic_partitions: by_topic
                    .into_iter()
                    .filter_map(|(t, partitions)| {
                        Some(TopicPartitions {
                            topic_id: self.topics.get(t)?.id,
                            partitions,
                            ..Default::default()
                        })
                    })
                    .collect(),
                ..Default::default()
            }
        });
        ConsumerGroupHeartbeatResponse {
            member_id: Some(a.member_id),
            member_epoch: a.epoch,
            heartbeat_interval_ms: i32::try_from(interval.as_millis()).unwrap_or(i32::MAX),
            assignment,
            ..Default::default()
        }
    }
}
