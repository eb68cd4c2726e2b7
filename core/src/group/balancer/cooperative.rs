//! The cooperative-sticky balancer (`"cooperative-sticky"`, KIP-429), the
//! default: the sticky assignment, minus every partition that would change
//! hands while its owner still holds it.
//!
//! # Why withhold
//!
//! Cooperative members keep consuming through a rebalance and revoke only
//! what the new plan takes from them. If the plan handed a moving
//! partition straight to its new member, both would consume it until the
//! old one revoked it: duplicates, and two members committing offsets for
//! one partition. So a partition goes to a member that does not own it
//! only when no other member claims it. Otherwise it is left out of this
//! round: its owner sees it missing from its assignment, revokes it and
//! rejoins at once, and the follow-up rebalance (where nobody claims it)
//! hands it to its new member. Nothing is revoked and assigned in the same
//! round.
//!
//! Withholding looks at every claim, whatever its generation (as Java's
//! `computePartitionsTransferringOwnership` does with the members' owned
//! partitions): a member from an older generation may still be consuming
//! what it claims, and the wait costs one rebalance.
//!
//! # Reading a member's claim
//!
//! As Java's `CooperativeStickyAssignor.memberData`: subscription v2+
//! carries the generation in its own field (KIP-792); older members put it
//! in `user_data` as one `int32`, which we also write for older leaders.
//! Undecodable user data counts as the default generation (-1).

use bytes::Bytes;

use super::index::{Index, MemberOrder, Part};
use super::sticky::{assign_sticky, Claim};
use super::{
    protocol, BalanceError, Balancer, GroupMember, JoinSubscription, MemberSubscription,
    PartitionsByTopic, Plan, TopicLayout, NO_GENERATION,
};
use crate::protocol::EncodeError;

/// The cooperative-sticky balancer (KIP-429): Java's
/// `CooperativeStickyAssignor`, protocol `"cooperative-sticky"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyBalancer;

impl Balancer for CooperativeStickyBalancer {
    fn protocol_name(&self) -> &str {
        "cooperative-sticky"
    }

    fn is_cooperative(&self) -> bool {
        true
    }

    fn member_metadata(&self, join: &JoinSubscription<'_>) -> Result<Bytes, EncodeError> {
        let user_data = protocol::encode_generation_user_data(join.generation);
        protocol::encode_subscription(&join.cooperative_subscription(Some(user_data)))
    }

    fn assign(&self, members: &[GroupMember], topics: &TopicLayout) -> Result<Plan, BalanceError> {
        let index = Index::new(members, topics, MemberOrder::MemberId)?;
        let claims = Claim::all(&index, cooperative_claim);
        let mut assigned = assign_sticky(&index, &claims);
        let withheld = withhold_claimed_elsewhere(&index, &claims, &mut assigned);
        if withheld > 0 {
            tracing::debug!(
                withheld,
                "partitions withheld until their owners revoke them"
            );
        }
        Ok(index.plan(assigned))
    }
}

/// A member's owned partitions and generation, as Java's
/// `CooperativeStickyAssignor.memberData` reads them: the v2+ field, else
/// the `int32` in `user_data`.
///
/// One departure: librdkafka's cooperative-sticky members put the eager
/// sticky balancer's `StickyAssignorUserData` (previous assignment, then
/// generation) in `user_data`. Java would read that list's length as the
/// generation; user data longer than Java's four bytes that decodes as
/// `StickyAssignorUserData` gives its generation instead.
pub(crate) fn cooperative_claim(sub: &MemberSubscription) -> (PartitionsByTopic, Option<i32>) {
    let generation = match (sub.generation, &sub.user_data) {
        (Some(generation), _) => Some(generation),
        (None, None) => None,
        (None, Some(data)) if data.len() > 4 => match protocol::decode_sticky_user_data(data) {
            Ok((_, generation)) => generation,
            Err(_) => protocol::decode_generation_user_data(data).ok(),
        },
        (None, Some(data)) => {
            Some(protocol::decode_generation_user_data(data).unwrap_or(NO_GENERATION))
        }
    };
    (sub.owned_partitions.clone(), generation)
}

/// Removes from `assigned` every partition a member does not claim while
/// another member does; returns how many were removed.
pub(crate) fn withhold_claimed_elsewhere(
    index: &Index<'_>,
    claims: &[Claim],
    assigned: &mut [Vec<Part>],
) -> usize {
    const NONE: u32 = u32::MAX;
    const SEVERAL: u32 = u32::MAX - 1;
    let mut claimed_by = vec![NONE; index.partition_count()];
    for (m, claim) in claims.iter().enumerate() {
        for &p in &claim.parts {
            let slot = &mut claimed_by[p as usize];
            *slot = if *slot == NONE { m as u32 } else { SEVERAL };
        }
    }
    let mut withheld = 0;
    for (m, parts) in assigned.iter_mut().enumerate() {
        let mine = &claims[m].parts;
        let before = parts.len();
        parts.retain(|&p| {
            let by = claimed_by[p as usize];
            by == NONE || by == m as u32 || mine.binary_search(&p).is_ok()
        });
        withheld += before - parts.len();
    }
    withheld
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::group::balancer::test_support::*;

    /// CooperativeStickyAssignorTest's version of
    /// testAddRemoveConsumerOneTopic: the joining member waits a round for
    /// the partition it is due.
    #[test]
    fn a_joining_member_gets_a_moving_partition_one_round_later() {
        let l = layout(&[("t", 3)]);
        let c1 = owning("c1", &["t"], &[("t", 0), ("t", 1), ("t", 2)], Some(1));
        let plan = CooperativeStickyBalancer
            .assign(&[c1, member("c2", &["t"])], &l)
            .unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[0, 1]);
        assert_eq!(plan.partitions_of("c2", "t"), &[] as &[i32]);

        // c1 revoked t-2 and rejoined.
        let c1 = owning("c1", &["t"], &[("t", 0), ("t", 1)], Some(2));
        let c2 = owning("c2", &["t"], &[], Some(2));
        let plan = CooperativeStickyBalancer.assign(&[c1, c2], &l).unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[0, 1]);
        assert_eq!(plan.partitions_of("c2", "t"), &[2]);
    }

    /// testAllConsumersHaveOwnedPartitionInvalidatedWhenClaimedByMultiple
    /// ConsumersInSameGenerationWithEqualPartitionsPerConsumer: t-0 is
    /// claimed twice, so consumer3 gets it only after both let go.
    #[test]
    fn a_doubly_claimed_partition_is_withheld_from_a_third_member() {
        let members = vec![
            owning("consumer1", &["t"], &[("t", 0), ("t", 1)], Some(1)),
            owning("consumer2", &["t"], &[("t", 0), ("t", 2)], Some(1)),
            owning("consumer3", &["t"], &[], Some(1)),
        ];
        let plan = CooperativeStickyBalancer
            .assign(&members, &layout(&[("t", 3)]))
            .unwrap();
        assert_eq!(plan.partitions_of("consumer1", "t"), &[1]);
        assert_eq!(plan.partitions_of("consumer2", "t"), &[2]);
        assert_eq!(plan.partitions_of("consumer3", "t"), &[] as &[i32]);
    }

    /// CooperativeStickyAssignorTest.testEncodeAndDecodeGeneration and
    /// testDecodeGeneration: the generation travels in the v2 field and in
    /// user data; a member older than v2 is read from user data.
    #[test]
    fn generation_is_read_from_the_field_or_from_user_data() {
        let owned = by_topic(&[("t", 0)]);
        let topics = ["t".to_string()];
        let join = JoinSubscription {
            topics: &topics,
            owned: &owned,
            generation: 9,
            rack: None,
        };
        let bytes = CooperativeStickyBalancer.member_metadata(&join).unwrap();
        let sub = protocol::decode_subscription(bytes).unwrap();
        assert_eq!(sub.generation, Some(9));
        assert_eq!(sub.user_data.as_deref(), Some(&[0, 0, 0, 9][..]));
        assert_eq!(cooperative_claim(&sub), (owned.clone(), Some(9)));

        // A v1 member (KIP-429 without KIP-792).
        let v1 = protocol::encode_subscription_at(&sub, 1).unwrap();
        let sub = protocol::decode_subscription(v1).unwrap();
        assert_eq!(sub.generation, None);
        assert_eq!(cooperative_claim(&sub), (owned.clone(), Some(9)));

        // Undecodable user data: the default generation.
        let broken = MemberSubscription {
            user_data: Some(Bytes::from_static(&[1])),
            ..sub.clone()
        };
        assert_eq!(
            cooperative_claim(&broken),
            (owned.clone(), Some(NO_GENERATION))
        );
        let none = MemberSubscription {
            user_data: None,
            ..sub
        };
        assert_eq!(cooperative_claim(&none), (owned, None));
    }

    /// An older librdkafka member (subscription v1) carries its generation
    /// in StickyAssignorUserData, not in Java's four bytes.
    #[test]
    fn generation_is_read_from_librdkafka_sticky_user_data() {
        let owned = by_topic(&[("t", 0), ("t", 1)]);
        let sub = MemberSubscription {
            version: 1,
            topics: vec!["t".into()],
            user_data: Some(protocol::encode_sticky_user_data(&owned, 12).unwrap()),
            owned_partitions: owned.clone(),
            ..Default::default()
        };
        assert_eq!(cooperative_claim(&sub), (owned, Some(12)));
    }

    /// A partition stays with the member that owns it even when a stale
    /// member claims it too: only moves are withheld.
    #[test]
    fn a_stale_claim_does_not_withhold_from_the_owner() {
        let members = vec![
            owning("a", &["t"], &[("t", 0)], Some(5)),
            owning("b", &["t"], &[("t", 0), ("t", 1)], Some(4)),
        ];
        let plan = CooperativeStickyBalancer
            .assign(&members, &layout(&[("t", 2)]))
            .unwrap();
        assert_eq!(plan.partitions_of("a", "t"), &[0]);
        // t-1 goes to b, which claims it (stale): nobody else does.
        assert_eq!(plan.partitions_of("b", "t"), &[1]);
    }
}
