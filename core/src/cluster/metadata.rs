//! The metadata cache: brokers, topics, partitions and their leaders, and
//! when to ask again.
//!
//! Rules that matter:
//! - A partition's leader epoch never goes backwards (KIP-320). Metadata
//!   from a broker that is behind can name an older leader; it is ignored
//!   for that partition, or a producer would chase a deposed leader.
//! - Refreshes happen on age (`max_age`, default 5 min) and on errors that
//!   mean the cache is stale (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC, a newer
//!   leader epoch seen elsewhere), but never more often than `min_age`
//!   (default 5 s) apart, so a storm of errors costs one request.
//! - Maps are ordered (`BTreeMap`), so iteration, and so the client's
//!   output, is the same on every run with the same inputs.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::protocol::messages::metadata_request::MetadataRequestTopic;
use crate::protocol::messages::{MetadataRequest, MetadataResponse};
use crate::protocol::{ErrorCode, Uuid};
use crate::time::Timestamp;

/// A broker's id in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub i32);

/// Where a broker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Its id.
    pub node: NodeId,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, for rack-aware fetching and assignment.
    pub rack: Option<String>,
}

impl BrokerAddr {
    /// `host:port`, what the driver connects to.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition as the cluster last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: i32,
    /// The leader, if it has one.
    pub leader: Option<NodeId>,
    /// The leader epoch (-1 if the broker did not say).
    pub leader_epoch: i32,
    /// The partition's error in the last answer (LEADER_NOT_AVAILABLE, ...).
    pub error: ErrorCode,
    /// The brokers holding a replica, as the answer listed them: their
    /// racks make the group leader's assignment rack-aware (KIP-881).
    pub replicas: Vec<NodeId>,
}

/// One topic as the cluster last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic id (zero before Metadata v10).
    pub id: Uuid,
    /// Whether Kafka marks it internal.
    pub is_internal: bool,
    /// Its partitions, indexed by partition number.
    pub partitions: Vec<PartitionInfo>,
}

/// What an applied answer changed, for the producer and consumer to act
/// on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataChanges {
    /// Partitions whose leader or leader epoch changed.
    pub moved: Vec<(String, i32)>,
    /// Topics that appeared or grew partitions.
    pub grown: Vec<String>,
    /// Topics the answer says do not exist or cannot be used, with why.
    pub failed: Vec<(String, ErrorCode)>,
}

/// The cache.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    brokers: BTreeMap<NodeId, BrokerAddr>,
    topics: BTreeMap<String, TopicInfo>,
    controller: Option<NodeId>,
    cluster_id: Option<String>,
    last_update: Option<Timestamp>,
}

impl Metadata {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The request for `version`: the listed topics, or every topic when
    /// `topics` is `None`. `auto_create` asks the broker to create missing
    /// topics (only when the user opted in).
    pub fn request(topics: Option<&[String]>, auto_create: bool) -> MetadataRequest {
        MetadataRequest {
            topics: topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic {
                        name: Some(t.clone()),
                        ..Default::default()
                    })
                    .collect()
            }),
            allow_auto_topic_creation: auto_create,
            ..Default::default()
        }
    }

    /// Folds an answer into the cache. `all_topics` says the request asked
    /// for every topic, so a topic missing from the answer was deleted.
    pub fn apply(&mut self, now: Timestamp, resp: &MetadataResponse) -> MetadataChanges {
        self.apply_answer(now, resp, false)
    }

    /// Folds an answer to a request for every topic into the cache: topics
    /// the answer does not name are gone, and are reported failed with
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub fn apply_all(&mut self, now: Timestamp, resp: &MetadataResponse) -> MetadataChanges {
        self.apply_answer(now, resp, true)
    }

    fn apply_answer(
        &mut self,
        now: Timestamp,
        resp: &MetadataResponse,
        all_topics: bool,
    ) -> MetadataChanges {
        let mut changes = MetadataChanges::default();
        if all_topics {
            let named: std::collections::BTreeSet<&str> = resp
                .topics
                .iter()
                .filter_map(|t| t.name.as_deref())
                .collect();
            let gone: Vec<String> = self
                .topics
                .keys()
                .filter(|k| !named.contains(k.as_str()))
                .cloned()
                .collect();
            for name in gone {
                self.topics.remove(&name);
                changes
                    .failed
                    .push((name, ErrorCode::UnknownTopicOrPartition));
            }
        }
        if !resp.brokers.is_empty() {
            self.brokers = resp
                .brokers
                .iter()
                .map(|b| {
                    let node = NodeId(b.node_id);
                    (
                        node,
                        BrokerAddr {
                            node,
                            host: b.host.clone(),
                            port: b.port,
                            rack: b.rack.clone(),
                        },
                    )
                })
                .collect();
        }
        self.controller = (resp.controller_id >= 0).then_some(NodeId(resp.controller_id));
        if resp.cluster_id.is_some() {
            self.cluster_id.clone_from(&resp.cluster_id);
        }
        for t in &resp.topics {
            let Some(name) = t.name.clone() else { continue };
            let error = ErrorCode::from_code(t.error_code);
            if !error.is_ok() {
                if matches!(error, ErrorCode::UnknownTopicOrPartition) {
                    self.topics.remove(&name);
                }
                changes.failed.push((name, error));
                continue;
            }
            let mut parts: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .filter(|p| p.partition_index >= 0)
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: (p.leader_id >= 0).then_some(NodeId(p.leader_id)),
                    leader_epoch: p.leader_epoch,
                    error: ErrorCode::from_code(p.error_code),
                    replicas: p.replica_nodes.iter().copied().map(NodeId).collect(),
                })
                .collect();
            parts.sort_by_key(|p| p.partition);
            parts.dedup_by_key(|p| p.partition);
            // Partitions are numbered 0..n; a gap means a broken answer,
            // so keep what we had.
            if parts
                .iter()
                .enumerate()
                .any(|(i, p)| p.partition != i as i32)
            {
                tracing::warn!(topic = %name, "metadata with non-contiguous partitions ignored");
                continue;
            }
            match self.topics.get_mut(&name) {
                None => {
                    changes.grown.push(name.clone());
                    self.topics.insert(
                        name,
                        TopicInfo {
                            id: t.topic_id,
                            is_internal: t.is_internal,
                            partitions: parts,
                        },
                    );
                }
                Some(known) => {
                    if known.id != t.topic_id && known.id != Uuid::ZERO && t.topic_id != Uuid::ZERO
                    {
                        // Deleted and recreated under the same name: a new
                        // topic, epochs start over.
                        known.partitions.clear();
                    }
                    known.id = t.topic_id;
                    known.is_internal = t.is_internal;
                    if parts.len() > known.partitions.len() {
                        changes.grown.push(name.clone());
                    }
                    for p in parts {
                        let idx = p.partition as usize;
                        match known.partitions.get_mut(idx) {
                            None => known.partitions.push(p),
                            Some(old) => {
                                if p.leader_epoch >= 0 && p.leader_epoch < old.leader_epoch {
                                    // KIP-320: a stale broker's view.
                                    continue;
                                }
                                if old.leader != p.leader || old.leader_epoch != p.leader_epoch {
                                    changes.moved.push((name.clone(), p.partition));
                                }
                                *old = p;
                            }
                        }
                    }
                }
            }
        }
        self.last_update = Some(now);
        changes
    }

    /// The broker with this id.
    pub fn broker(&self, node: NodeId) -> Option<&BrokerAddr> {
        self.brokers.get(&node)
    }

    /// Every known broker, by id.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerAddr> {
        self.brokers.values()
    }

    /// A topic, if known.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// Every known topic, by name.
    pub fn topics(&self) -> impl Iterator<Item = (&String, &TopicInfo)> {
        self.topics.iter()
    }

    /// A partition's leader and leader epoch, if it has a leader.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<(NodeId, i32)> {
        let p = self
            .topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)?;
        p.leader.map(|l| (l, p.leader_epoch))
    }

    /// The controller, if the cluster named one.
    pub fn controller(&self) -> Option<NodeId> {
        self.controller
    }

    /// The cluster id, if known.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// When an answer was last applied.
    pub fn last_update(&self) -> Option<Timestamp> {
        self.last_update
    }
}

/// When to refresh: on age, and on demand but rate-limited.
#[derive(Debug, Clone)]
pub struct RefreshSchedule {
    /// Refresh at least this often. Default 5 min.
    pub max_age: Duration,
    /// Never refresh more often than this. Default 5 s.
    pub min_age: Duration,
    /// The shorter bound for an urgent refresh. Default `min_age`.
    pub urgent_min_age: Duration,
    last_start: Option<Timestamp>,
    wanted: bool,
    urgent: bool,
}

impl Default for RefreshSchedule {
    fn default() -> Self {
        RefreshSchedule::new(Duration::from_secs(300), Duration::from_secs(5))
    }
}

impl RefreshSchedule {
    /// A schedule with these bounds.
    pub fn new(max_age: Duration, min_age: Duration) -> Self {
        RefreshSchedule {
            max_age,
            min_age,
            urgent_min_age: min_age,
            last_start: None,
            wanted: true,
            urgent: false,
        }
    }

    /// With a shorter bound for urgent refreshes (never above `min_age`).
    pub fn with_urgent_min_age(mut self, urgent_min_age: Duration) -> Self {
        self.urgent_min_age = urgent_min_age.min(self.min_age);
        self
    }

    /// Something saw stale metadata: refresh as soon as `min_age` allows.
    pub fn trigger(&mut self) {
        self.wanted = true;
    }

    /// Something waits on fresh metadata to make progress at all (a
    /// consumer told its leader is gone): refresh as soon as
    /// `urgent_min_age` allows. Java's client bounds such forced updates
    /// by its retry backoff only, so a leader move costs one round trip,
    /// not `min_age`.
    pub fn trigger_urgent(&mut self) {
        self.wanted = true;
        self.urgent = true;
    }

    /// When the next refresh should start.
    pub fn due_at(&self) -> Timestamp {
        match self.last_start {
            None => Timestamp::ZERO,
            Some(t) if self.urgent => t + self.urgent_min_age,
            Some(t) if self.wanted => t + self.min_age,
            Some(t) => t + self.max_age,
        }
    }

    /// Whether a refresh should start now.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.due_at() <= now
    }

    /// A refresh started now.
    pub fn started(&mut self, now: Timestamp) {
        self.last_start = Some(now);
        self.wanted = false;
        self.urgent = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };

    fn answer(epochs: &[(i32, i32)]) -> MetadataResponse {
        MetadataResponse {
            brokers: (1..=3)
                .map(|n| MetadataResponseBroker {
                    node_id: n,
                    host: "127.0.0.1".into(),
                    port: 9090 + n,
                    ..Default::default()
                })
                .collect(),
            controller_id: 1,
            topics: vec![MetadataResponseTopic {
                name: Some("t".into()),
                partitions: epochs
                    .iter()
                    .enumerate()
                    .map(|(i, &(leader, epoch))| MetadataResponsePartition {
                        partition_index: i as i32,
                        leader_id: leader,
                        leader_epoch: epoch,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn leaders_move_forward_and_never_back() {
        let mut m = Metadata::new();
        let c = m.apply(Timestamp::ZERO, &answer(&[(1, 5), (2, 5)]));
        assert_eq!(c.grown, vec!["t".to_string()]);
        assert_eq!(m.leader("t", 0), Some((NodeId(1), 5)));
        let c = m.apply(Timestamp::ZERO, &answer(&[(3, 6), (2, 5)]));
        assert_eq!(c.moved, vec![("t".to_string(), 0)]);
        // A lagging broker still thinks node 1 leads at epoch 5.
        let c = m.apply(Timestamp::ZERO, &answer(&[(1, 5), (2, 5)]));
        assert!(c.moved.is_empty());
        assert_eq!(m.leader("t", 0), Some((NodeId(3), 6)));
        assert_eq!(
            m.broker(NodeId(3)).map(BrokerAddr::address).as_deref(),
            Some("127.0.0.1:9093")
        );
    }

    #[test]
    fn unknown_topics_are_reported_and_forgotten() {
        let mut m = Metadata::new();
        m.apply(Timestamp::ZERO, &answer(&[(1, 0)]));
        let mut gone = answer(&[]);
        gone.topics[0].error_code = ErrorCode::UnknownTopicOrPartition.code();
        let c = m.apply(Timestamp::ZERO, &gone);
        assert_eq!(
            c.failed,
            vec![("t".into(), ErrorCode::UnknownTopicOrPartition)]
        );
        assert!(m.topic("t").is_none());
    }

    #[test]
    fn partitions_with_gaps_are_not_trusted() {
        let mut m = Metadata::new();
        let mut a = answer(&[(1, 0), (1, 0)]);
        a.topics[0].partitions[1].partition_index = 5;
        m.apply(Timestamp::ZERO, &a);
        assert!(m.topic("t").is_none());
    }

    #[test]
    fn refreshes_are_rate_limited() {
        let s5 = Duration::from_secs(5);
        let mut s = RefreshSchedule::default();
        assert!(s.is_due(Timestamp::ZERO));
        s.started(Timestamp::ZERO);
        assert_eq!(s.due_at(), Timestamp::ZERO + Duration::from_secs(300));
        s.trigger();
        assert!(!s.is_due(Timestamp::ZERO + Duration::from_secs(1)));
        assert!(s.is_due(Timestamp::ZERO + s5));
    }

    #[test]
    fn an_urgent_refresh_waits_the_short_bound_and_a_plain_one_the_long() {
        let ms = Duration::from_millis;
        let mut s = RefreshSchedule::new(Duration::from_secs(300), Duration::from_secs(5))
            .with_urgent_min_age(ms(250));
        s.started(Timestamp::ZERO);
        s.trigger();
        assert_eq!(s.due_at(), Timestamp::ZERO + Duration::from_secs(5));
        s.trigger_urgent();
        assert_eq!(s.due_at(), Timestamp::ZERO + ms(250));
        // Started: back to the long bounds until the next trigger.
        s.started(Timestamp::ZERO + ms(250));
        assert_eq!(
            s.due_at(),
            Timestamp::ZERO + ms(250) + Duration::from_secs(300)
        );
        // Never shorter than asked, never longer than min_age.
        let s = RefreshSchedule::new(Duration::from_secs(300), ms(100))
            .with_urgent_min_age(Duration::from_secs(1));
        assert_eq!(s.urgent_min_age, ms(100));
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let b = BrokerAddr {
            node: NodeId(1),
            host: "::1".into(),
            port: 9092,
            rack: None,
        };
        assert_eq!(b.address(), "[::1]:9092");
    }
}
