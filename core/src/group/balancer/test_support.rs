//! Helpers shared by the balancer tests.

use super::{GroupMember, MemberSubscription, PartitionsByTopic, Plan, TopicLayout};

/// A member subscribed to `topics`, owning nothing, with a v3 subscription.
pub(crate) fn member(id: &str, topics: &[&str]) -> GroupMember {
    GroupMember {
        member_id: id.to_owned(),
        instance_id: None,
        subscription: MemberSubscription {
            version: 3,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        },
    }
}

/// A member that owns `owned` (topic, partition) in `generation`, in the
/// v2+ fields, as a cooperative member reports it.
pub(crate) fn owning(
    id: &str,
    topics: &[&str],
    owned: &[(&str, i32)],
    generation: Option<i32>,
) -> GroupMember {
    let mut m = member(id, topics);
    m.subscription.owned_partitions = by_topic(owned);
    m.subscription.generation = generation;
    m
}

/// (topic, partition) pairs grouped by topic.
pub(crate) fn by_topic(pairs: &[(&str, i32)]) -> PartitionsByTopic {
    let mut out = PartitionsByTopic::new();
    for (t, p) in pairs {
        out.entry(t.to_string()).or_default().push(*p);
    }
    for ps in out.values_mut() {
        ps.sort_unstable();
        ps.dedup();
    }
    out
}

/// Topics with partition counts.
pub(crate) fn layout(topics: &[(&str, i32)]) -> TopicLayout {
    topics
        .iter()
        .fold(TopicLayout::new(), |l, (t, n)| l.with_topic(*t, *n))
}

/// A member's assignment as sorted (topic, partition) pairs.
pub(crate) fn flat<'a>(plan: &'a Plan, member: &str) -> Vec<(&'a str, i32)> {
    plan.get(member)
        .map(|a| {
            a.partitions
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.as_str(), *p)))
                .collect()
        })
        .unwrap_or_default()
}
