//! Balancers: how the group leader splits the partitions of the subscribed
//! topics among the members of a consumer group.
//!
//! # How the group code uses a balancer
//!
//! 1. Joining, each member lists the balancers it supports in JoinGroup,
//!    each as [`Balancer::protocol_name`] with the bytes of
//!    [`Balancer::member_metadata`] (a `ConsumerProtocolSubscription`: the
//!    topics, what the member owns, its generation and rack).
//! 2. The coordinator picks one protocol every member supports and sends
//!    the leader every member's metadata for it. The leader decodes them
//!    ([`GroupMember::from_metadata`]), runs [`Balancer::assign`] over them
//!    and the partition counts of the subscribed topics, and sends each
//!    member its part of the [`Plan`] in SyncGroup
//!    ([`Plan::encode_assignments`]).
//! 3. A cooperative balancer ([`Balancer::is_cooperative`], KIP-429) never
//!    hands a partition to a new member while another member still owns
//!    it; members revoke only what they lost and rejoin at once, and the
//!    next round hands out what was withheld.
//!
//! # The built-in balancers
//!
//! Interoperable with the Java client and librdkafka by protocol name and
//! metadata format:
//!
//! | protocol | type | rule |
//! |---|---|---|
//! | `"range"` | [`RangeBalancer`] | per topic, consecutive ranges in member order; same-rack first (KIP-881) |
//! | `"roundrobin"` | [`RoundRobinBalancer`] | all partitions dealt in turn to subscribed members |
//! | `"sticky"` | [`StickyBalancer`] | balanced, moving as few partitions as it can (KIP-54), same-rack when balance allows (KIP-881); eager |
//! | `"cooperative-sticky"` | [`CooperativeStickyBalancer`] | sticky, withholding moving partitions (KIP-429); the default |
//!
//! Every balancer is deterministic: the same members and topics give the
//! same plan, whatever order the members arrived in (no hash-map order
//! leaks into a plan).
//!
//! # Hostile metadata
//!
//! Member metadata comes from other clients through the coordinator. A
//! member whose `ConsumerProtocolSubscription` cannot be decoded fails the
//! whole assignment with [`BalanceError::InvalidMemberMetadata`], as Java's
//! leader does (it throws from `onLeaderElected`; the round fails and the
//! group rebalances again). Inside a decodable subscription the sticky
//! balancers are lenient, as Java is: undecodable sticky `user_data` means
//! "owns nothing", and claims on partitions that do not exist or of topics
//! the member no longer subscribes to are ignored.

mod cooperative;
mod index;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod properties;
pub mod protocol;
mod rack;
mod range;
mod round_robin;
mod sticky;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::cluster::Metadata;
use crate::protocol::messages::MetadataResponse;
use crate::protocol::{DecodeError, EncodeError};

pub use cooperative::CooperativeStickyBalancer;
pub use range::RangeBalancer;
pub use round_robin::RoundRobinBalancer;
pub use sticky::StickyBalancer;

/// Partitions grouped by topic name. In a [`Plan`] and in a decoded
/// subscription each topic's partitions are sorted and unique.
pub type PartitionsByTopic = BTreeMap<String, Vec<i32>>;

/// The most partitions (over all subscribed topics) one assignment handles.
/// Far above any real cluster (Kafka recommends at most a few hundred
/// thousand per cluster); it bounds what a corrupt topic layout can make a
/// balancer allocate.
pub const MAX_BALANCED_PARTITIONS: usize = 1 << 22;

/// The generation Kafka uses for "not in a group yet" (`-1`).
pub const NO_GENERATION: i32 = -1;

/// A balancer: one entry of the JoinGroup protocol list, and the leader's
/// assignment function for it.
///
/// Implement it for a custom assignment strategy; every group member must
/// offer a balancer of the same [`protocol_name`](Balancer::protocol_name)
/// for the coordinator to pick it.
///
/// ```
/// use bytes::Bytes;
/// use sansa_core::group::balancer::{
///     protocol, BalanceError, Balancer, GroupMember, JoinSubscription, Plan, TopicLayout,
/// };
/// use sansa_core::protocol::EncodeError;
///
/// /// Gives every partition to the member with the smallest id.
/// struct AllToFirst;
///
/// impl Balancer for AllToFirst {
///     fn protocol_name(&self) -> &str {
///         "all-to-first"
///     }
///     fn is_cooperative(&self) -> bool {
///         false
///     }
///     fn member_metadata(&self, join: &JoinSubscription<'_>) -> Result<Bytes, EncodeError> {
///         // An eager balancer: the member revoked everything before joining.
///         protocol::encode_subscription(&join.eager_subscription(None))
///     }
///     fn assign(&self, members: &[GroupMember], topics: &TopicLayout) -> Result<Plan, BalanceError> {
///         let mut plan = Plan::for_members(members)?;
///         if let Some(first) = members.iter().map(|m| &m.member_id).min() {
///             for member in members {
///                 for topic in &member.subscription.topics {
///                     for p in 0..topics.partition_count(topic).unwrap_or(0) {
///                         plan.add(first, topic, p);
///                     }
///                 }
///             }
///         }
///         Ok(plan)
///     }
/// }
///
/// let join = JoinSubscription { topics: &["orders".to_string()], ..JoinSubscription::default() };
/// let metadata = AllToFirst.member_metadata(&join).unwrap();
/// let members = vec![
///     GroupMember::from_metadata("b".into(), None, metadata.clone()).unwrap(),
///     GroupMember::from_metadata("a".into(), None, metadata).unwrap(),
/// ];
/// let topics = TopicLayout::new().with_topic("orders", 2);
/// let plan = AllToFirst.assign(&members, &topics).unwrap();
/// assert_eq!(plan.partitions_of("a", "orders"), &[0, 1]);
/// assert!(plan.get("b").unwrap().partitions.is_empty());
/// ```
pub trait Balancer {
    /// The protocol name in JoinGroup, e.g. `"cooperative-sticky"`. Members
    /// agree on a balancer by this name only.
    fn protocol_name(&self) -> &str;

    /// Whether the balancer follows the cooperative protocol (KIP-429):
    /// members keep their partitions while the group rebalances and revoke
    /// only what the new plan takes away. An eager balancer's members
    /// revoke everything before they join.
    fn is_cooperative(&self) -> bool;

    /// The metadata bytes this member sends with the protocol in JoinGroup:
    /// a version-prefixed `ConsumerProtocolSubscription`.
    fn member_metadata(&self, join: &JoinSubscription<'_>) -> Result<Bytes, EncodeError>;

    /// The leader's plan: every member of `members` gets an entry, possibly
    /// empty. `topics` holds the partition counts (and replica racks) of
    /// the topics the members subscribe to; a topic missing from it is not
    /// assigned.
    fn assign(&self, members: &[GroupMember], topics: &TopicLayout) -> Result<Plan, BalanceError>;
}

/// What a member tells the group about itself when it joins, from which
/// [`Balancer::member_metadata`] builds the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinSubscription<'a> {
    /// The topics the member wants.
    pub topics: &'a [String],
    /// The partitions the member was assigned in its last generation. A
    /// cooperative member still owns them; an eager member has revoked them
    /// but the sticky balancer still reports them, to get them back.
    pub owned: &'a PartitionsByTopic,
    /// The generation those partitions were assigned in, [`NO_GENERATION`]
    /// before the first.
    pub generation: i32,
    /// The member's rack (`client.rack`), for rack-aware balancers.
    pub rack: Option<&'a str>,
}

static EMPTY_OWNED: PartitionsByTopic = BTreeMap::new();

impl Default for JoinSubscription<'_> {
    fn default() -> Self {
        JoinSubscription {
            topics: &[],
            owned: &EMPTY_OWNED,
            generation: NO_GENERATION,
            rack: None,
        }
    }
}

impl JoinSubscription<'_> {
    /// The subscription as an eager member sends it (Java's
    /// `ConsumerCoordinator` after revoking everything): no owned
    /// partitions, the generation, the rack and `user_data`.
    pub fn eager_subscription(&self, user_data: Option<Bytes>) -> MemberSubscription {
        MemberSubscription {
            version: protocol::SUBSCRIPTION_VERSION,
            topics: sorted_unique(self.topics),
            user_data,
            owned_partitions: PartitionsByTopic::new(),
            generation: (self.generation >= 0).then_some(self.generation),
            rack: self.rack.map(str::to_owned),
        }
    }

    /// The subscription as a cooperative member sends it: what it owns, in
    /// the fields of v1+ (KIP-429) and v2+ (KIP-792).
    pub fn cooperative_subscription(&self, user_data: Option<Bytes>) -> MemberSubscription {
        MemberSubscription {
            owned_partitions: self.owned.clone(),
            ..self.eager_subscription(user_data)
        }
    }
}

fn sorted_unique(topics: &[String]) -> Vec<String> {
    let mut v = topics.to_vec();
    v.sort();
    v.dedup();
    v
}

/// A decoded `ConsumerProtocolSubscription`: what one member sent with the
/// chosen protocol.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberSubscription {
    /// The version the member encoded it at (newer versions than this build
    /// knows are read as the newest it knows, as Java does).
    pub version: i16,
    /// The topics the member subscribes to.
    pub topics: Vec<String>,
    /// Balancer-specific bytes (the eager sticky balancer's previous
    /// assignment, the cooperative one's generation).
    pub user_data: Option<Bytes>,
    /// The partitions the member owns now (v1+, KIP-429).
    pub owned_partitions: PartitionsByTopic,
    /// The generation of those partitions (v2+, KIP-792); `None` when
    /// absent or negative.
    pub generation: Option<i32>,
    /// The member's rack (v3+, KIP-881); `None` when absent or empty.
    pub rack: Option<String>,
}

/// One member of the group as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its `group.instance.id` when it is a static member (KIP-345).
    pub instance_id: Option<String>,
    /// What it subscribed with.
    pub subscription: MemberSubscription,
}

impl GroupMember {
    /// Decodes a member from the JoinGroup response's `metadata` bytes.
    pub fn from_metadata(
        member_id: String,
        instance_id: Option<String>,
        metadata: Bytes,
    ) -> Result<GroupMember, BalanceError> {
        match protocol::decode_subscription(metadata) {
            Ok(subscription) => Ok(GroupMember {
                member_id,
                instance_id,
                subscription,
            }),
            Err(source) => Err(BalanceError::InvalidMemberMetadata { member_id, source }),
        }
    }
}

/// One partition's replica racks, as the cluster metadata gives them.
pub type ReplicaRacks = Vec<String>;

/// The topics the leader can assign: each with its partition count and,
/// when known, the racks of each partition's replicas (for KIP-881).
/// Partitions of a topic are numbered `0..count`, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicLayout {
    topics: BTreeMap<String, TopicInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct TopicInfo {
    partitions: i32,
    /// Empty when unknown; else one entry per partition.
    replica_racks: Vec<ReplicaRacks>,
}

impl TopicLayout {
    /// No topics.
    pub fn new() -> Self {
        TopicLayout::default()
    }

    /// Adds (or replaces) `topic` with `partitions` partitions and no rack
    /// information. A negative count counts as zero.
    pub fn with_topic(mut self, topic: impl Into<String>, partitions: i32) -> Self {
        self.topics.insert(
            topic.into(),
            TopicInfo {
                partitions: partitions.max(0),
                replica_racks: Vec::new(),
            },
        );
        self
    }

    /// Adds (or replaces) `topic` with one entry of replica racks per
    /// partition (partition `i` is `replica_racks[i]`).
    pub fn with_racks(
        mut self,
        topic: impl Into<String>,
        replica_racks: Vec<ReplicaRacks>,
    ) -> Self {
        let partitions = i32::try_from(replica_racks.len()).unwrap_or(i32::MAX);
        self.topics.insert(
            topic.into(),
            TopicInfo {
                partitions,
                replica_racks,
            },
        );
        self
    }

    /// The topics of the client's metadata cache, with their partition
    /// counts and, when any broker names its rack, each partition's
    /// replica racks (brokers without a rack contribute none).
    pub fn from_metadata(metadata: &Metadata) -> TopicLayout {
        let any_rack = metadata.brokers().any(|b| b.rack.is_some());
        metadata
            .topics()
            .fold(TopicLayout::new(), |layout, (name, topic)| {
                if !any_rack {
                    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
                    return layout.with_topic(name.clone(), count);
                }
                let racks = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        p.replicas
                            .iter()
                            .filter_map(|node| metadata.broker(*node)?.rack.clone())
                            .collect()
                    })
                    .collect();
                layout.with_racks(name.clone(), racks)
            })
    }

    /// The topics of a Metadata answer, with each partition's replica
    /// racks (from the brokers the answer lists). Topics with an error are
    /// left out. Partitions are numbered `0..n` for the `n` the answer
    /// lists; an index outside that range (which no broker sends) is
    /// ignored rather than allowed to size an allocation.
    pub fn from_metadata_response(resp: &MetadataResponse) -> TopicLayout {
        let racks: BTreeMap<i32, &str> = resp
            .brokers
            .iter()
            .filter_map(|b| Some((b.node_id, b.rack.as_deref()?)))
            .collect();
        let mut layout = TopicLayout::new();
        for topic in &resp.topics {
            let Some(name) = &topic.name else { continue };
            if topic.error_code != 0 {
                continue;
            }
            let n = topic.partitions.len();
            let mut replica_racks: Vec<ReplicaRacks> = vec![Vec::new(); n];
            for p in &topic.partitions {
                let Some(slot) = usize::try_from(p.partition_index)
                    .ok()
                    .and_then(|i| replica_racks.get_mut(i))
                else {
                    continue;
                };
                *slot = p
                    .replica_nodes
                    .iter()
                    .filter_map(|node| racks.get(node).map(|r| r.to_string()))
                    .collect();
            }
            layout = layout.with_racks(name.clone(), replica_racks);
        }
        layout
    }

    /// The partition count of `topic`, if known.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        self.topics.get(topic).map(|t| t.partitions)
    }

    /// The racks of the replicas of `topic`'s partition `partition`; empty
    /// when unknown.
    pub fn replica_racks(&self, topic: &str, partition: i32) -> &[String] {
        self.topics
            .get(topic)
            .and_then(|t| t.replica_racks.get(usize::try_from(partition).ok()?))
            .map_or(&[], Vec::as_slice)
    }
}

/// What one member is assigned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberAssignment {
    /// Its partitions, by topic, sorted.
    pub partitions: PartitionsByTopic,
    /// Balancer-specific bytes for the member (none of the built-in
    /// balancers sends any).
    pub user_data: Option<Bytes>,
}

impl MemberAssignment {
    /// How many partitions this is.
    pub fn partition_count(&self) -> usize {
        self.partitions.values().map(Vec::len).sum()
    }
}

/// The leader's assignment: one entry per member, by member id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    members: BTreeMap<String, MemberAssignment>,
}

impl Plan {
    /// A plan with an empty assignment for each of `members`; fails if two
    /// members share an id.
    pub fn for_members(members: &[GroupMember]) -> Result<Plan, BalanceError> {
        let mut plan = Plan::default();
        for m in members {
            if plan
                .members
                .insert(m.member_id.clone(), MemberAssignment::default())
                .is_some()
            {
                return Err(BalanceError::DuplicateMember(m.member_id.clone()));
            }
        }
        Ok(plan)
    }

    /// Assigns `topic`'s `partition` to `member_id` (added to the plan if
    /// new). Keeps the member's list sorted and unique.
    pub fn add(&mut self, member_id: &str, topic: &str, partition: i32) {
        let parts = self
            .members
            .entry(member_id.to_owned())
            .or_default()
            .partitions
            .entry(topic.to_owned())
            .or_default();
        if let Err(at) = parts.binary_search(&partition) {
            parts.insert(at, partition);
        }
    }

    /// The assignment of `member_id`.
    pub fn get(&self, member_id: &str) -> Option<&MemberAssignment> {
        self.members.get(member_id)
    }

    /// The partitions of `topic` assigned to `member_id` (empty if none).
    pub fn partitions_of(&self, member_id: &str, topic: &str) -> &[i32] {
        self.members
            .get(member_id)
            .and_then(|m| m.partitions.get(topic))
            .map_or(&[], Vec::as_slice)
    }

    /// Every member's assignment, by member id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MemberAssignment)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Mutable access to a member's assignment, for balancers that set
    /// `user_data`.
    pub fn get_mut(&mut self, member_id: &str) -> Option<&mut MemberAssignment> {
        self.members.get_mut(member_id)
    }

    /// Each member's SyncGroup assignment bytes: a version-prefixed
    /// `ConsumerProtocolAssignment` at [`protocol::ASSIGNMENT_VERSION`].
    pub fn encode_assignments(&self) -> Result<Vec<(String, Bytes)>, EncodeError> {
        self.members
            .iter()
            .map(|(id, a)| Ok((id.clone(), protocol::encode_assignment(a)?)))
            .collect()
    }

    pub(crate) fn insert(&mut self, member_id: String, assignment: MemberAssignment) {
        self.members.insert(member_id, assignment);
    }
}

/// Why a balancer could not produce a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BalanceError {
    /// A member's subscription bytes could not be decoded. Java's leader
    /// fails the assignment the same way; the round fails and the group
    /// rebalances, so the member must upgrade or leave.
    #[error("member {member_id}: undecodable subscription: {source}")]
    InvalidMemberMetadata {
        /// The member that sent it.
        member_id: String,
        /// What was wrong with it.
        source: DecodeError,
    },
    /// Two members of the JoinGroup response share an id; the coordinator
    /// never does this, so the response is corrupt.
    #[error("member id {0} appears twice")]
    DuplicateMember(String),
    /// The subscribed topics hold more partitions than
    /// [`MAX_BALANCED_PARTITIONS`].
    #[error(
        "{0} partitions to assign, more than the {MAX_BALANCED_PARTITIONS} a balancer handles"
    )]
    TooManyPartitions(usize),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::test_support::*;
    use super::*;

    fn all() -> [&'static dyn Balancer; 4] {
        [
            &RangeBalancer,
            &RoundRobinBalancer,
            &StickyBalancer,
            &CooperativeStickyBalancer,
        ]
    }

    #[test]
    fn protocol_names_and_kinds_are_javas() {
        let names: Vec<(&str, bool)> = all()
            .iter()
            .map(|b| (b.protocol_name(), b.is_cooperative()))
            .collect();
        assert_eq!(
            names,
            [
                ("range", false),
                ("roundrobin", false),
                ("sticky", false),
                ("cooperative-sticky", true)
            ]
        );
    }

    #[test]
    fn a_member_id_given_twice_is_an_error() {
        let members = vec![member("a", &["t"]), member("a", &["t"])];
        for b in all() {
            assert_eq!(
                b.assign(&members, &layout(&[("t", 1)])),
                Err(BalanceError::DuplicateMember("a".into())),
                "{}",
                b.protocol_name()
            );
        }
    }

    #[test]
    fn a_huge_partition_count_is_refused_before_allocating() {
        let members = vec![member("a", &["t"])];
        for b in all() {
            assert!(matches!(
                b.assign(&members, &layout(&[("t", i32::MAX)])),
                Err(BalanceError::TooManyPartitions(_))
            ));
        }
    }

    #[test]
    fn undecodable_member_metadata_names_the_member() {
        let err = GroupMember::from_metadata("m-1".into(), None, Bytes::from_static(&[0, 0, 9]));
        assert!(matches!(
            err,
            Err(BalanceError::InvalidMemberMetadata { ref member_id, .. }) if member_id == "m-1"
        ));
    }

    #[test]
    fn every_member_gets_an_entry_and_assignments_round_trip() {
        let members = vec![member("a", &["t"]), member("b", &["t"]), member("c", &[])];
        for b in all() {
            let plan = b.assign(&members, &layout(&[("t", 3)])).unwrap();
            let encoded = plan.encode_assignments().unwrap();
            assert_eq!(encoded.len(), 3, "{}", b.protocol_name());
            for (id, bytes) in encoded {
                let back = protocol::decode_assignment(bytes).unwrap();
                assert_eq!(Some(&back), plan.get(&id));
            }
        }
    }

    #[test]
    fn layout_from_a_metadata_answer_carries_replica_racks() {
        use crate::protocol::messages::metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        };
        let broker = |node_id, rack: Option<&str>| MetadataResponseBroker {
            node_id,
            rack: rack.map(str::to_owned),
            ..Default::default()
        };
        let partition = |partition_index, replica_nodes: Vec<i32>| MetadataResponsePartition {
            partition_index,
            replica_nodes,
            ..Default::default()
        };
        let resp = MetadataResponse {
            brokers: vec![broker(1, Some("a")), broker(2, Some("b")), broker(3, None)],
            topics: vec![
                MetadataResponseTopic {
                    name: Some("t".into()),
                    partitions: vec![
                        partition(1, vec![2, 3]),
                        partition(0, vec![1, 2]),
                        // A hostile index: ignored, not allocated for.
                        partition(i32::MAX, vec![1]),
                    ],
                    ..Default::default()
                },
                MetadataResponseTopic {
                    name: Some("missing".into()),
                    error_code: 3,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let layout = TopicLayout::from_metadata_response(&resp);
        assert_eq!(layout.partition_count("t"), Some(3));
        assert_eq!(layout.replica_racks("t", 0), ["a", "b"]);
        assert_eq!(layout.replica_racks("t", 1), ["b"]);
        assert!(layout.replica_racks("t", 2).is_empty());
        assert_eq!(layout.partition_count("missing"), None);

        // The cache refuses the hostile answer's gap; without it, it keeps
        // replicas and broker racks and gives the same layout.
        let mut resp = resp;
        resp.topics[0].partitions.pop();
        let mut cache = Metadata::new();
        cache.apply(crate::time::Timestamp::ZERO, &resp);
        let layout = TopicLayout::from_metadata(&cache);
        assert_eq!(layout, TopicLayout::from_metadata_response(&resp));
        assert_eq!(layout.replica_racks("t", 1), ["b"]);

        // No broker names a rack: counts only, as without racks.
        for b in &mut resp.brokers {
            b.rack = None;
        }
        let mut cache = Metadata::new();
        cache.apply(crate::time::Timestamp::ZERO, &resp);
        assert_eq!(
            TopicLayout::from_metadata(&cache),
            TopicLayout::new().with_topic("t", 2)
        );
    }

    #[test]
    fn member_metadata_decodes_back_to_the_join_subscription() {
        let topics = ["b".to_string(), "a".to_string(), "a".to_string()];
        let owned = by_topic(&[("a", 1)]);
        let join = JoinSubscription {
            topics: &topics,
            owned: &owned,
            generation: 3,
            rack: Some("az-1"),
        };
        for b in all() {
            let sub = protocol::decode_subscription(b.member_metadata(&join).unwrap()).unwrap();
            assert_eq!(sub.version, protocol::SUBSCRIPTION_VERSION);
            assert_eq!(sub.topics, ["a", "b"]);
            assert_eq!(sub.generation, Some(3));
            assert_eq!(sub.rack.as_deref(), Some("az-1"));
            // Only a cooperative member still owns partitions when it joins.
            assert_eq!(sub.owned_partitions.is_empty(), !b.is_cooperative());
        }
    }
}
