//! The range balancer (`"range"`), as Java's `RangeAssignor`, with the
//! rack awareness of KIP-881.
//!
//! Per topic, the subscribed members in order (static members first by
//! `group.instance.id`, then by member id, as Java's `MemberInfo`) take
//! consecutive ranges of partitions; with `P` partitions and `C` members
//! each gets `P / C` and the first `P % C` one more. Topics are balanced
//! independently, so members subscribed to the same co-partitioned topics
//! get the same partition numbers of each: the property joins rely on.
//!
//! # Rack awareness (KIP-881)
//!
//! Fetching from a replica in another availability zone costs cross-zone
//! traffic. When members report racks (`client.rack`, subscription v3) and
//! the layout holds replica racks, a topic *needs* rack-aware assignment
//! if some member rack holds replicas and not every partition has replicas
//! in every rack (when all do, any placement is same-rack). Then, before
//! the plain ranges:
//!
//! - topics with the same members and the same partition count are taken
//!   together: partition `p` of all of them goes to the first member
//!   (still under its quota in each) whose rack holds a replica of `p` of
//!   every one of them, so co-partitioning survives;
//! - any other topic that needs it: each member in order takes, up to its
//!   quota, the unassigned partitions with a replica in its rack.
//!
//! Whatever is left then goes out in plain ranges, and the per-member
//! counts stay exactly those of the rack-unaware balancer. A member without
//! a rack matches every partition.

use bytes::Bytes;

use super::index::{Index, MemberOrder, Part};
use super::{protocol, BalanceError, Balancer, GroupMember, JoinSubscription, Plan, TopicLayout};
use crate::protocol::EncodeError;

/// Java's `RangeAssignor` with KIP-881 rack awareness: eager, protocol
/// `"range"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeBalancer;

impl Balancer for RangeBalancer {
    fn protocol_name(&self) -> &str {
        "range"
    }

    fn is_cooperative(&self) -> bool {
        false
    }

    fn member_metadata(&self, join: &JoinSubscription<'_>) -> Result<Bytes, EncodeError> {
        protocol::encode_subscription(&join.eager_subscription(None))
    }

    fn assign(&self, members: &[GroupMember], topics: &TopicLayout) -> Result<Plan, BalanceError> {
        let index = Index::new(members, topics, MemberOrder::InstanceIdFirst)?;
        let mut assigned: Vec<Vec<Part>> = vec![Vec::new(); index.members.len()];
        let mut states: Vec<TopicState<'_>> = (0..index.topics.len())
            .map(|t| TopicState::new(&index, topics, t))
            .collect();

        if states.iter().any(|s| s.needs_rack_aware) {
            assign_with_rack_matching(&mut states, &mut assigned);
        }
        for state in &mut states {
            state.assign_ranges(|_, _, _| true, &mut assigned);
        }
        Ok(index.plan(assigned))
    }
}

/// One topic's progress, as Java's `TopicAssignmentState`.
struct TopicState<'a> {
    /// The topic's first global partition index.
    first: Part,
    /// Subscribed members (member indices, in order).
    consumers: &'a [u32],
    /// Each consumer's rack (parallel to `consumers`).
    consumer_racks: Vec<Option<&'a str>>,
    /// Each partition's replica racks; empty when no consumer has a rack.
    partition_racks: Vec<Vec<&'a str>>,
    needs_rack_aware: bool,
    /// Partition numbers not yet assigned, ascending.
    unassigned: Vec<u32>,
    /// Partitions assigned so far to each consumer (parallel to `consumers`).
    assigned_count: Vec<u32>,
    per_consumer: u32,
    remaining_with_extra: u32,
}

impl<'a> TopicState<'a> {
    fn new(index: &'a Index<'a>, layout: &'a TopicLayout, t: usize) -> TopicState<'a> {
        let topic = &index.topics[t];
        let consumers = topic.subscribers.as_slice();
        let consumer_racks: Vec<Option<&str>> = consumers
            .iter()
            .map(|&m| {
                index.members[m as usize]
                    .member
                    .subscription
                    .rack
                    .as_deref()
            })
            .collect();
        let mut all_consumer_racks: Vec<&str> = consumer_racks.iter().flatten().copied().collect();
        all_consumer_racks.sort_unstable();
        all_consumer_racks.dedup();

        let mut partition_racks = Vec::new();
        let mut needs_rack_aware = false;
        if !all_consumer_racks.is_empty() {
            partition_racks = (0..topic.len as i32)
                .map(|p| {
                    let mut racks: Vec<&str> = layout
                        .replica_racks(topic.name, p)
                        .iter()
                        .map(String::as_str)
                        .collect();
                    racks.sort_unstable();
                    racks.dedup();
                    racks
                })
                .collect();
            let mut all_partition_racks: Vec<&str> =
                partition_racks.iter().flatten().copied().collect();
            all_partition_racks.sort_unstable();
            all_partition_racks.dedup();
            let overlap = all_consumer_racks
                .iter()
                .any(|r| all_partition_racks.binary_search(r).is_ok());
            // Java's useRackAwareAssignment: only when it can matter.
            needs_rack_aware = overlap && partition_racks.iter().any(|r| *r != all_partition_racks);
        }

        let c = consumers.len() as u32;
        TopicState {
            first: topic.first,
            consumers,
            consumer_racks,
            partition_racks,
            needs_rack_aware,
            unassigned: (0..topic.len).collect(),
            assigned_count: vec![0; consumers.len()],
            per_consumer: topic.len.checked_div(c).unwrap_or(0),
            remaining_with_extra: topic.len.checked_rem(c).unwrap_or(0),
        }
    }

    /// Whether consumer `c` (a position in `consumers`) may take partition
    /// `p` on rack grounds.
    fn racks_match(&self, c: usize, p: u32) -> bool {
        match self.consumer_racks[c] {
            None => true,
            Some(rack) => self
                .partition_racks
                .get(p as usize)
                .is_some_and(|racks| racks.binary_search(&rack).is_ok()),
        }
    }

    /// How many more partitions consumer `c` may take.
    fn max_assignable(&self, c: usize) -> u32 {
        let cap = self.per_consumer + u32::from(self.remaining_with_extra > 0);
        cap.saturating_sub(self.assigned_count[c])
    }

    fn assign(&mut self, c: usize, partitions: &[u32], assigned: &mut [Vec<Part>]) {
        let member = self.consumers[c] as usize;
        assigned[member].extend(partitions.iter().map(|&p| self.first + p));
        self.assigned_count[c] += partitions.len() as u32;
        if self.assigned_count[c] > self.per_consumer {
            self.remaining_with_extra = self.remaining_with_extra.saturating_sub(1);
        }
        self.unassigned.retain(|p| !partitions.contains(p));
    }

    /// Each consumer in order takes, up to its quota, the unassigned
    /// partitions `may_assign` allows.
    fn assign_ranges(
        &mut self,
        may_assign: impl Fn(&Self, usize, u32) -> bool,
        assigned: &mut [Vec<Part>],
    ) {
        for c in 0..self.consumers.len() {
            if self.unassigned.is_empty() {
                break;
            }
            let max = self.max_assignable(c) as usize;
            let take: Vec<u32> = self
                .unassigned
                .iter()
                .copied()
                .filter(|&p| may_assign(self, c, p))
                .take(max)
                .collect();
            if !take.is_empty() {
                self.assign(c, &take, assigned);
            }
        }
    }

    fn assign_ranges_rack_matched(&mut self, assigned: &mut [Vec<Part>]) {
        self.assign_ranges(|s, c, p| s.racks_match(c, p), assigned);
    }
}

/// KIP-881's first pass: same-rack placements, co-partitioned topics
/// together (Java's `assignWithRackMatching`).
fn assign_with_rack_matching(states: &mut [TopicState<'_>], assigned: &mut [Vec<Part>]) {
    // Groups of topics with the same consumers and partition count, in
    // topic order (each topic is in exactly one group, so the order of
    // groups cannot change the result).
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for t in 0..states.len() {
        let same = groups.iter_mut().find(|g| {
            let s = &states[g[0]];
            s.consumers == states[t].consumers && s.unassigned.len() == states[t].unassigned.len()
        });
        match same {
            Some(g) => g.push(t),
            None => groups.push(vec![t]),
        }
    }
    for group in groups {
        // Members without racks match every partition: nothing to prefer
        // (Java keys these groups by the size of an empty rack map, and
        // its co-partitioned pass then has no partitions to place).
        if states[group[0]].partition_racks.is_empty() {
            continue;
        }
        if group.len() > 1 {
            assign_co_partitioned(states, &group, assigned);
        } else if states[group[0]].needs_rack_aware {
            states[group[0]].assign_ranges_rack_matched(assigned);
        }
    }
}

/// Partition `p` of every topic in `group` goes to the first consumer that
/// is same-rack for all of them and under quota in all of them.
fn assign_co_partitioned(
    states: &mut [TopicState<'_>],
    group: &[usize],
    assigned: &mut [Vec<Part>],
) {
    let consumers = states[group[0]].consumers.len();
    let partitions = states[group[0]].unassigned.len() as u32;
    let mut remaining: Vec<usize> = (0..consumers).collect();
    for p in 0..partitions {
        let matching = remaining.iter().position(|&c| {
            group
                .iter()
                .all(|&t| states[t].racks_match(c, p) && states[t].max_assignable(c) > 0)
        });
        let Some(at) = matching else {
            continue;
        };
        let c = remaining[at];
        for &t in group {
            states[t].assign(c, &[p], assigned);
        }
        if group.iter().all(|&t| states[t].max_assignable(c) == 0) {
            remaining.remove(at);
            if remaining.is_empty() {
                break;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::group::balancer::test_support::*;

    fn racked(id: &str, topics: &[&str], rack: &str) -> GroupMember {
        let mut m = member(id, topics);
        m.subscription.rack = Some(rack.to_owned());
        m
    }

    /// `n` partitions whose replicas sit on `rf` consecutive racks of
    /// `racks`, starting at the partition's number (Java's tests place
    /// replicas the same way).
    fn racks_for(n: usize, racks: &[&str], rf: usize) -> Vec<Vec<String>> {
        (0..n)
            .map(|p| {
                (0..rf)
                    .map(|i| racks[(p + i) % racks.len()].to_owned())
                    .collect()
            })
            .collect()
    }

    /// RangeAssignorTest.testOneConsumerOneTopic.
    #[test]
    fn one_consumer_one_topic() {
        let plan = RangeBalancer
            .assign(&[member("c", &["t"])], &layout(&[("t", 3)]))
            .unwrap();
        assert_eq!(plan.partitions_of("c", "t"), &[0, 1, 2]);
    }

    /// RangeAssignorTest.testOneConsumerNonexistentTopic and
    /// testOnlyAssignsPartitionsFromSubscribedTopics.
    #[test]
    fn nonexistent_and_unsubscribed_topics_are_not_assigned() {
        let plan = RangeBalancer
            .assign(
                &[member("c", &["t", "nope"])],
                &layout(&[("t", 3), ("other", 3)]),
            )
            .unwrap();
        assert_eq!(flat(&plan, "c"), [("t", 0), ("t", 1), ("t", 2)]);
    }

    /// RangeAssignorTest.testTwoConsumersOneTopicThreePartitions (the
    /// first member gets the extra partition).
    #[test]
    fn two_consumers_one_topic_three_partitions() {
        let members = vec![member("consumer2", &["t"]), member("consumer1", &["t"])];
        let plan = RangeBalancer
            .assign(&members, &layout(&[("t", 3)]))
            .unwrap();
        assert_eq!(plan.partitions_of("consumer1", "t"), &[0, 1]);
        assert_eq!(plan.partitions_of("consumer2", "t"), &[2]);
    }

    /// RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
    #[test]
    fn two_consumers_two_topics_six_partitions() {
        let members = vec![
            member("consumer1", &["t1", "t2"]),
            member("consumer2", &["t1", "t2"]),
        ];
        let plan = RangeBalancer
            .assign(&members, &layout(&[("t1", 3), ("t2", 3)]))
            .unwrap();
        assert_eq!(
            flat(&plan, "consumer1"),
            [("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)]
        );
        assert_eq!(flat(&plan, "consumer2"), [("t1", 2), ("t2", 2)]);
    }

    /// RangeAssignorTest.testMultipleConsumersMixedTopics.
    #[test]
    fn multiple_consumers_mixed_topics() {
        let members = vec![
            member("consumer1", &["t1"]),
            member("consumer2", &["t1", "t2"]),
            member("consumer3", &["t1"]),
        ];
        let plan = RangeBalancer
            .assign(&members, &layout(&[("t1", 3), ("t2", 2)]))
            .unwrap();
        assert_eq!(flat(&plan, "consumer1"), [("t1", 0)]);
        assert_eq!(flat(&plan, "consumer2"), [("t1", 1), ("t2", 0), ("t2", 1)]);
        assert_eq!(flat(&plan, "consumer3"), [("t1", 2)]);
    }

    /// RangeAssignorTest.testStaticMemberRangeAssignmentPersistent: static
    /// members sort by instance id, ahead of dynamic ones.
    #[test]
    fn static_members_come_first_by_instance_id() {
        let mut a = member("zzz", &["t"]);
        a.instance_id = Some("instance-1".into());
        let mut b = member("aaa", &["t"]);
        b.instance_id = Some("instance-2".into());
        let c = member("0-dynamic", &["t"]);
        let plan = RangeBalancer
            .assign(&[c, b, a], &layout(&[("t", 4)]))
            .unwrap();
        assert_eq!(plan.partitions_of("zzz", "t"), &[0, 1]);
        assert_eq!(plan.partitions_of("aaa", "t"), &[2]);
        assert_eq!(plan.partitions_of("0-dynamic", "t"), &[3]);
    }

    /// Without racks on the members, replica racks change nothing.
    #[test]
    fn replica_racks_alone_change_nothing() {
        let layout = TopicLayout::new().with_racks("t", racks_for(3, &["a", "b", "c"], 1));
        let members = vec![member("c1", &["t"]), member("c2", &["t"])];
        let plan = RangeBalancer.assign(&members, &layout).unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[0, 1]);
        assert_eq!(plan.partitions_of("c2", "t"), &[2]);
    }

    /// KIP-881: one replica per partition on racks a, b, c in turn; each
    /// member gets the partitions of its own rack, same counts as without
    /// racks.
    #[test]
    fn rack_aware_members_get_same_rack_partitions() {
        let layout = TopicLayout::new().with_racks("t", racks_for(6, &["a", "b", "c"], 1));
        let members = vec![
            racked("c1", &["t"], "c"),
            racked("c2", &["t"], "a"),
            racked("c3", &["t"], "b"),
        ];
        let plan = RangeBalancer.assign(&members, &layout).unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[2, 5]);
        assert_eq!(plan.partitions_of("c2", "t"), &[0, 3]);
        assert_eq!(plan.partitions_of("c3", "t"), &[1, 4]);
    }

    /// When every partition has a replica in every rack, placement is
    /// plain ranges (Java's useRackAwareAssignment is false).
    #[test]
    fn full_replication_keeps_plain_ranges() {
        let layout = TopicLayout::new().with_racks("t", racks_for(4, &["a", "b"], 2));
        let members = vec![racked("c1", &["t"], "b"), racked("c2", &["t"], "a")];
        let plan = RangeBalancer.assign(&members, &layout).unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[0, 1]);
        assert_eq!(plan.partitions_of("c2", "t"), &[2, 3]);
    }

    /// Co-partitioned topics stay co-partitioned under rack matching.
    #[test]
    fn co_partitioned_topics_keep_matching_partition_numbers() {
        let racks = racks_for(4, &["a", "b"], 1);
        let layout = TopicLayout::new()
            .with_racks("t1", racks.clone())
            .with_racks("t2", racks);
        let members = vec![
            racked("c1", &["t1", "t2"], "b"),
            racked("c2", &["t1", "t2"], "a"),
        ];
        let plan = RangeBalancer.assign(&members, &layout).unwrap();
        assert_eq!(plan.partitions_of("c1", "t1"), &[1, 3]);
        assert_eq!(plan.partitions_of("c1", "t2"), &[1, 3]);
        assert_eq!(plan.partitions_of("c2", "t1"), &[0, 2]);
        assert_eq!(plan.partitions_of("c2", "t2"), &[0, 2]);
    }

    /// More same-rack partitions than the quota: the quota wins, the rest
    /// goes out in ranges.
    #[test]
    fn quotas_hold_when_racks_are_uneven() {
        // Partitions 0..3 on rack a, 3 on rack b; both members on rack a.
        let racks: Vec<Vec<String>> = ["a", "a", "a", "b"]
            .iter()
            .map(|r| vec![r.to_string()])
            .collect();
        let layout = TopicLayout::new().with_racks("t", racks);
        let members = vec![racked("c1", &["t"], "a"), racked("c2", &["t"], "a")];
        let plan = RangeBalancer.assign(&members, &layout).unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[0, 1]);
        assert_eq!(plan.partitions_of("c2", "t"), &[2, 3]);
    }
}
