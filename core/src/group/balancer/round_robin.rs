//! The round-robin balancer (`"roundrobin"`), as Java's
//! `RoundRobinAssignor`: all partitions of all subscribed topics, sorted by
//! topic then partition, are dealt one at a time to the members in a
//! circle, skipping members not subscribed to the partition's topic.
//!
//! Members are ordered as Java's `MemberInfo`: static members (KIP-345)
//! first by `group.instance.id`, then the others by member id, so that a
//! static member that restarts with a new member id keeps its place (and
//! its partitions).

use bytes::Bytes;

use super::index::{Index, MemberOrder, Part};
use super::{protocol, BalanceError, Balancer, GroupMember, JoinSubscription, Plan, TopicLayout};
use crate::protocol::EncodeError;

/// Java's `RoundRobinAssignor`: eager, protocol `"roundrobin"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinBalancer;

impl Balancer for RoundRobinBalancer {
    fn protocol_name(&self) -> &str {
        "roundrobin"
    }

    fn is_cooperative(&self) -> bool {
        false
    }

    fn member_metadata(&self, join: &JoinSubscription<'_>) -> Result<Bytes, EncodeError> {
        protocol::encode_subscription(&join.eager_subscription(None))
    }

    fn assign(&self, members: &[GroupMember], topics: &TopicLayout) -> Result<Plan, BalanceError> {
        let index = Index::new(members, topics, MemberOrder::InstanceIdFirst)?;
        let n = index.members.len();
        let mut assigned: Vec<Vec<Part>> = vec![Vec::new(); n];
        if n == 0 {
            return Ok(index.plan(assigned));
        }
        let mut next = 0usize;
        for p in 0..index.partition_count() as Part {
            // Every indexed topic has a subscriber, so this finds one
            // within n steps.
            for _ in 0..n {
                if index.subscribes(next, p) {
                    break;
                }
                next = (next + 1) % n;
            }
            assigned[next].push(p);
            next = (next + 1) % n;
        }
        Ok(index.plan(assigned))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::group::balancer::test_support::*;

    #[test]
    fn one_consumer_gets_everything_of_one_topic() {
        let members = vec![member("c", &["t"])];
        let plan = RoundRobinBalancer
            .assign(&members, &layout(&[("t", 3)]))
            .unwrap();
        assert_eq!(plan.partitions_of("c", "t"), &[0, 1, 2]);
    }

    /// RoundRobinAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
    #[test]
    fn two_consumers_two_topics_six_partitions() {
        let members = vec![
            member("consumer1", &["t1", "t2"]),
            member("consumer2", &["t1", "t2"]),
        ];
        let plan = RoundRobinBalancer
            .assign(&members, &layout(&[("t1", 3), ("t2", 3)]))
            .unwrap();
        assert_eq!(flat(&plan, "consumer1"), [("t1", 0), ("t1", 2), ("t2", 1)]);
        assert_eq!(flat(&plan, "consumer2"), [("t1", 1), ("t2", 0), ("t2", 2)]);
    }

    /// RoundRobinAssignorTest.testMultipleConsumersMixedTopics.
    #[test]
    fn multiple_consumers_mixed_topics() {
        let members = vec![
            member("consumer1", &["t1"]),
            member("consumer2", &["t1", "t2"]),
            member("consumer3", &["t1"]),
        ];
        let plan = RoundRobinBalancer
            .assign(&members, &layout(&[("t1", 3), ("t2", 2)]))
            .unwrap();
        assert_eq!(flat(&plan, "consumer1"), [("t1", 0)]);
        assert_eq!(flat(&plan, "consumer2"), [("t1", 1), ("t2", 0), ("t2", 1)]);
        assert_eq!(flat(&plan, "consumer3"), [("t1", 2)]);
    }

    /// RoundRobinAssignorTest.testTwoStaticConsumersTwoTopicsSixPartitions:
    /// instance ids, not member ids, decide the order.
    #[test]
    fn static_members_are_ordered_by_instance_id() {
        let mut c1 = member("consumer-b", &["t1", "t2"]);
        c1.instance_id = Some("instance1".into());
        let mut c2 = member("consumer-a", &["t1", "t2"]);
        c2.instance_id = Some("instance2".into());
        let plan = RoundRobinBalancer
            .assign(&[c2, c1], &layout(&[("t1", 3), ("t2", 3)]))
            .unwrap();
        assert_eq!(flat(&plan, "consumer-b"), [("t1", 0), ("t1", 2), ("t2", 1)]);
        assert_eq!(flat(&plan, "consumer-a"), [("t1", 1), ("t2", 0), ("t2", 2)]);
    }

    #[test]
    fn unknown_topics_and_topics_nobody_wants_are_not_assigned() {
        let members = vec![member("a", &["t", "missing"]), member("b", &["t"])];
        let plan = RoundRobinBalancer
            .assign(&members, &layout(&[("t", 2), ("other", 4)]))
            .unwrap();
        assert_eq!(flat(&plan, "a"), [("t", 0)]);
        assert_eq!(flat(&plan, "b"), [("t", 1)]);
    }
}
