//! The balancers' working form of a group: topics, partitions and members
//! as dense integers, so that the algorithms index vectors instead of
//! hashing strings, and every order is a sorted one (no hash-map order can
//! leak into a plan).
//!
//! A partition's global index orders partitions by (topic name, partition
//! number), which is the order Java's assignors sort them in.

use std::collections::BTreeMap;

use super::{
    BalanceError, GroupMember, MemberAssignment, PartitionsByTopic, Plan, TopicLayout,
    MAX_BALANCED_PARTITIONS,
};

/// A partition's global index in an [`Index`].
pub(crate) type Part = u32;

/// How members are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberOrder {
    /// By member id (the sticky balancers).
    MemberId,
    /// Static members first by instance id, then dynamic ones by member id:
    /// Java's `MemberInfo.compareTo` (range and round-robin).
    InstanceIdFirst,
}

/// One subscribed topic.
#[derive(Debug)]
pub(crate) struct IndexedTopic<'a> {
    pub(crate) name: &'a str,
    /// The global index of partition 0.
    pub(crate) first: Part,
    /// The number of partitions.
    pub(crate) len: u32,
    /// The members subscribed to it, ascending.
    pub(crate) subscribers: Vec<u32>,
}

/// One member.
#[derive(Debug)]
pub(crate) struct IndexedMember<'a> {
    pub(crate) member: &'a GroupMember,
    /// The subscribed topics this index knows, ascending and unique.
    pub(crate) topics: Vec<u32>,
}

/// A group in dense integers.
#[derive(Debug)]
pub(crate) struct Index<'a> {
    /// Topics that some member subscribes to and the layout knows, by name.
    pub(crate) topics: Vec<IndexedTopic<'a>>,
    /// Members in the balancer's order.
    pub(crate) members: Vec<IndexedMember<'a>>,
    /// The topic of each partition.
    topic_of: Vec<u32>,
    /// Topic name to topic index.
    by_name: BTreeMap<&'a str, u32>,
    /// Where the partition counts and replica racks came from.
    layout: &'a TopicLayout,
}

impl<'a> Index<'a> {
    /// Indexes `members` (in `order`) and the subscribed topics of `layout`.
    pub(crate) fn new(
        members: &'a [GroupMember],
        layout: &'a TopicLayout,
        order: MemberOrder,
    ) -> Result<Index<'a>, BalanceError> {
        let mut sorted: Vec<&GroupMember> = members.iter().collect();
        match order {
            MemberOrder::MemberId => sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id)),
            MemberOrder::InstanceIdFirst => sorted.sort_by(|a, b| {
                match (&a.instance_id, &b.instance_id) {
                    (Some(x), Some(y)) => x.cmp(y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                }
                .then_with(|| a.member_id.cmp(&b.member_id))
            }),
        }
        let mut ids: Vec<&str> = members.iter().map(|m| m.member_id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(BalanceError::DuplicateMember(w[0].to_owned()));
        }

        let mut names: Vec<&'a str> = members
            .iter()
            .flat_map(|m| m.subscription.topics.iter().map(String::as_str))
            .filter(|t| layout.partition_count(t).is_some_and(|n| n > 0))
            .collect();
        names.sort_unstable();
        names.dedup();

        let mut total = 0usize;
        let mut topics = Vec::with_capacity(names.len());
        let mut by_name = BTreeMap::new();
        for (t, name) in names.into_iter().enumerate() {
            let len = layout.partition_count(name).unwrap_or(0).max(0) as usize;
            if total + len > MAX_BALANCED_PARTITIONS {
                return Err(BalanceError::TooManyPartitions(total + len));
            }
            topics.push(IndexedTopic {
                name,
                first: total as Part,
                len: len as u32,
                subscribers: Vec::new(),
            });
            by_name.insert(name, t as u32);
            total += len;
        }
        let mut topic_of = Vec::with_capacity(total);
        for (t, topic) in topics.iter().enumerate() {
            topic_of.extend(std::iter::repeat_n(t as u32, topic.len as usize));
        }

        let mut indexed = Vec::with_capacity(sorted.len());
        for (m, member) in sorted.into_iter().enumerate() {
            let mut mine: Vec<u32> = member
                .subscription
                .topics
                .iter()
                .filter_map(|t| by_name.get(t.as_str()).copied())
                .collect();
            mine.sort_unstable();
            mine.dedup();
            for &t in &mine {
                topics[t as usize].subscribers.push(m as u32);
            }
            indexed.push(IndexedMember {
                member,
                topics: mine,
            });
        }
        Ok(Index {
            topics,
            members: indexed,
            topic_of,
            by_name,
            layout,
        })
    }

    /// The number of partitions of all subscribed topics.
    pub(crate) fn partition_count(&self) -> usize {
        self.topic_of.len()
    }

    /// The topic of partition `p`.
    pub(crate) fn topic_of(&self, p: Part) -> u32 {
        self.topic_of[p as usize]
    }

    /// The racks of partition `p`'s replicas (empty when unknown).
    pub(crate) fn replica_racks(&self, p: Part) -> &'a [String] {
        let topic = &self.topics[self.topic_of(p) as usize];
        self.layout
            .replica_racks(topic.name, (p - topic.first) as i32)
    }

    /// Partition `p`'s number within its topic.
    pub(crate) fn partition_number(&self, p: Part) -> u32 {
        p - self.topics[self.topic_of(p) as usize].first
    }

    /// Whether member `m` subscribes to the topic of partition `p`.
    pub(crate) fn subscribes(&self, m: usize, p: Part) -> bool {
        self.members[m]
            .topics
            .binary_search(&self.topic_of(p))
            .is_ok()
    }

    /// `claims` as sorted unique partition indices, without partitions this
    /// index does not hold (unknown or unsubscribed topics, numbers out of
    /// range).
    pub(crate) fn parts_of(&self, claims: &PartitionsByTopic) -> Vec<Part> {
        let mut out = Vec::new();
        for (topic, partitions) in claims {
            let Some(&t) = self.by_name.get(topic.as_str()) else {
                continue;
            };
            let topic = &self.topics[t as usize];
            out.extend(
                partitions
                    .iter()
                    .filter_map(|&p| u32::try_from(p).ok())
                    .filter(|&p| p < topic.len)
                    .map(|p| topic.first + p),
            );
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The plan with `assigned[m]` (partition indices) for each member `m`.
    pub(crate) fn plan(&self, assigned: Vec<Vec<Part>>) -> Plan {
        let mut plan = Plan::default();
        for (m, mut parts) in assigned.into_iter().enumerate() {
            parts.sort_unstable();
            let mut partitions = PartitionsByTopic::new();
            for p in parts {
                let topic = &self.topics[self.topic_of(p) as usize];
                partitions
                    .entry(topic.name.to_owned())
                    .or_default()
                    .push((p - topic.first) as i32);
            }
            plan.insert(
                self.members[m].member.member_id.clone(),
                MemberAssignment {
                    partitions,
                    user_data: None,
                },
            );
        }
        plan
    }
}
