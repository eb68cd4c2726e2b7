//! The sticky algorithm (KIP-54), shared by the eager `"sticky"` balancer
//! and `"cooperative-sticky"`, following Java's `AbstractStickyAssignor`.
//!
//! # The promises
//!
//! - Every partition of a subscribed topic goes to exactly one member
//!   subscribed to its topic.
//! - Balance: no partition could move to a member subscribed to its topic
//!   that has at least two fewer partitions than its current member. With
//!   equal subscriptions this is "counts differ by at most one".
//! - Stickiness: a partition stays with the member that owned it unless
//!   balance (or, with racks, locality) needs it elsewhere; with equal
//!   subscriptions and no racks, exactly the fewest partitions that
//!   balance allows move.
//!
//! # Which ownership claims count
//!
//! Members report what they own with the generation it was assigned in.
//! A member that missed a rebalance (a zombie whose session expired, a
//! member partitioned away) still claims its old partitions; believing it
//! would undo the newer assignment. As Java does: only claims made in the
//! highest generation any member reports count (a member that reports no
//! generation counts only if no member reports one); a partition claimed
//! by two members of that generation belongs to neither, since the claim
//! cannot be decided; claims on topics a member no longer subscribes to
//! are dropped.
//!
//! This is the rule of Java 3.0 to 3.4. Later Java resolves claims
//! partition by partition instead (the higher generation wins a contested
//! partition, and a stale member keeps what nobody newer claims), which is
//! stickier for a member that missed one generation but trusts a member
//! that may be a zombie. We keep the stricter rule; a cooperative plan
//! still withholds what a stale member claims (see `cooperative.rs`), so
//! nothing is consumed twice either way.
//!
//! # Racks (KIP-881)
//!
//! When rack matching applies (see `rack.rs`), balance still comes
//! first and racks second, as in Java 3.5:
//!
//! - equal subscriptions: a member gives up owned partitions it reads
//!   from another rack; unowned partitions, those with the fewest local
//!   members first, go to a member in one of their racks that is still
//!   under quota; what no local member has room for is dealt as usual;
//! - unequal subscriptions: among the least-loaded candidates for a
//!   partition, a local member wins. Owned partitions stay put (Java's
//!   general path may also move them for locality; we do not).
//!
//! # Two paths, as Java
//!
//! - **Equal subscriptions** (the common case; Java's `constrainedAssign`):
//!   quotas are known up front (`P / N`, and `P % N` members one more).
//!   Each member, in member-id order, keeps its valid claims up to its
//!   quota; the rest are dealt round-robin to members under quota. Linear
//!   in partitions plus members: 1,000 members and 10,000 partitions take
//!   milliseconds.
//! - **Unequal subscriptions** (Java's `generalAssign`): members keep their
//!   valid claims; unowned partitions go, fewest candidate members first,
//!   to the least-loaded subscribed member; then partitions move from
//!   loaded members to subscribed members with at least two fewer until
//!   none can (each move lowers the sum of squared counts, so this ends).
//!   The heaviest give first, each only while still the heaviest, so a
//!   newcomer takes one partition from each of many members rather than
//!   draining one that others must then refill; partitions a member was
//!   just given move before ones it kept.
//!
//! Ties break by member id and partition order, never by hash order.

use std::collections::VecDeque;

use bytes::Bytes;

use super::index::{Index, MemberOrder, Part};
use super::rack::RackMatch;
use super::{
    protocol, BalanceError, Balancer, GroupMember, JoinSubscription, MemberSubscription,
    PartitionsByTopic, Plan, TopicLayout, NO_GENERATION,
};
use crate::protocol::EncodeError;

/// "No member" in per-partition member tables.
const NONE: u32 = u32::MAX;

/// What a member claims to own, as partition indices.
#[derive(Debug, Clone, Default)]
pub(crate) struct Claim {
    /// Sorted, unique, only partitions the index holds.
    pub(crate) parts: Vec<Part>,
    /// The generation the member reports, if any.
    pub(crate) generation: Option<i32>,
}

impl Claim {
    /// Each member's claim (in index order) from `decode`'s reading of its
    /// subscription.
    pub(crate) fn all(
        index: &Index<'_>,
        decode: impl Fn(&MemberSubscription) -> (PartitionsByTopic, Option<i32>),
    ) -> Vec<Claim> {
        index
            .members
            .iter()
            .map(|m| {
                let (owned, generation) = decode(&m.member.subscription);
                Claim {
                    parts: index.parts_of(&owned),
                    generation,
                }
            })
            .collect()
    }
}

/// Java's `StickyAssignor`: eager, protocol `"sticky"`. Members revoke
/// everything before they join and report their previous assignment in
/// `StickyAssignorUserData`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyBalancer;

impl Balancer for StickyBalancer {
    fn protocol_name(&self) -> &str {
        "sticky"
    }

    fn is_cooperative(&self) -> bool {
        false
    }

    fn member_metadata(&self, join: &JoinSubscription<'_>) -> Result<Bytes, EncodeError> {
        // Java sends no user data before the member's first assignment.
        let user_data = if join.generation >= 0 || !join.owned.is_empty() {
            Some(protocol::encode_sticky_user_data(
                join.owned,
                join.generation,
            )?)
        } else {
            None
        };
        protocol::encode_subscription(&join.eager_subscription(user_data))
    }

    fn assign(&self, members: &[GroupMember], topics: &TopicLayout) -> Result<Plan, BalanceError> {
        let index = Index::new(members, topics, MemberOrder::MemberId)?;
        let claims = Claim::all(&index, sticky_claim);
        let assigned = assign_sticky(&index, &claims);
        Ok(index.plan(assigned))
    }
}

/// How the eager sticky balancer reads a member's previous assignment, as
/// Java's `StickyAssignor.memberData`: from `StickyAssignorUserData` in
/// `user_data` (v1 with the generation, or v0 without); undecodable user
/// data means "owned nothing" with the default generation, as in Java. A
/// member that sent no user data is read from the subscription's own
/// fields (owned partitions v1+, generation v2+), which Java ignores for
/// this protocol but which hold the same facts when a client sets them.
pub(crate) fn sticky_claim(sub: &MemberSubscription) -> (PartitionsByTopic, Option<i32>) {
    match &sub.user_data {
        Some(data) if !data.is_empty() => match protocol::decode_sticky_user_data(data) {
            Ok(claim) => claim,
            Err(error) => {
                tracing::debug!(%error, "undecodable StickyAssignorUserData; taken as owning nothing");
                (PartitionsByTopic::new(), Some(NO_GENERATION))
            }
        },
        _ => (sub.owned_partitions.clone(), sub.generation),
    }
}

/// The sticky assignment (before any cooperative adjustment): for each
/// member in index order, its partitions.
pub(crate) fn assign_sticky(index: &Index<'_>, claims: &[Claim]) -> Vec<Vec<Part>> {
    let n = index.members.len();
    if n == 0 {
        return Vec::new();
    }
    let owned = valid_claims(index, claims);
    let racks = RackMatch::new(index);
    let first = &index.members[0].topics;
    if index.members.iter().all(|m| &m.topics == first) {
        assign_equal_subscriptions(index, owned, racks.as_ref())
    } else {
        assign_general(index, owned, racks.as_ref())
    }
}

/// Each member's claims that count (see the module doc): highest
/// generation only, no doubly claimed partition, subscribed topics only.
pub(crate) fn valid_claims(index: &Index<'_>, claims: &[Claim]) -> Vec<Vec<Part>> {
    let effective = |c: &Claim| c.generation.unwrap_or(NO_GENERATION);
    let max_generation = claims
        .iter()
        .map(effective)
        .max()
        .unwrap_or(NO_GENERATION)
        .max(NO_GENERATION);
    let mut owner = vec![NONE; index.partition_count()];
    let mut doubly_claimed = vec![false; index.partition_count()];
    for (m, claim) in claims.iter().enumerate() {
        if effective(claim) != max_generation {
            if !claim.parts.is_empty() {
                tracing::debug!(
                    member = %index.members[m].member.member_id,
                    generation = effective(claim),
                    max_generation,
                    "ignoring ownership claims of a stale generation"
                );
            }
            continue;
        }
        for &p in &claim.parts {
            match owner[p as usize] {
                NONE => owner[p as usize] = m as u32,
                other if other != m as u32 => doubly_claimed[p as usize] = true,
                _ => {}
            }
        }
    }
    claims
        .iter()
        .enumerate()
        .map(|(m, claim)| {
            if effective(claim) != max_generation {
                return Vec::new();
            }
            claim
                .parts
                .iter()
                .copied()
                .filter(|&p| !doubly_claimed[p as usize] && index.subscribes(m, p))
                .collect()
        })
        .collect()
}

/// Java's `constrainedAssign`, for members with equal subscriptions.
fn assign_equal_subscriptions(
    index: &Index<'_>,
    owned: Vec<Vec<Part>>,
    racks: Option<&RackMatch>,
) -> Vec<Vec<Part>> {
    let n = index.members.len();
    let total = index.partition_count();
    let mut fill = Fill {
        assigned: Vec::with_capacity(n),
        under_min: Vec::new(),
        at_min: VecDeque::new(),
        cursor: 0,
        min_quota: total / n,
        max_quota: total.div_ceil(n),
        expected_over_min: total % n,
        over_min: 0,
    };

    let mut taken = vec![false; total];
    for (m, mut mine) in owned.into_iter().enumerate() {
        if let Some(racks) = racks {
            // KIP-881: a partition read from another rack is given up, so
            // that a member in one of its racks can take it.
            mine.retain(|&p| !racks.is_remote(m, p));
        }
        // Like Java, keep the lowest partition numbers, across topics.
        mine.sort_by_key(|&p| (index.partition_number(p), p));
        if mine.len() < fill.min_quota {
            fill.under_min.push(m);
        } else if mine.len() >= fill.max_quota && fill.over_min < fill.expected_over_min {
            mine.truncate(fill.max_quota);
            fill.over_min += 1;
            if fill.over_min == fill.expected_over_min {
                fill.at_min.clear();
            }
        } else {
            mine.truncate(fill.min_quota);
            if fill.over_min < fill.expected_over_min {
                fill.at_min.push_back(m);
            }
        }
        for &p in &mine {
            taken[p as usize] = true;
        }
        fill.assigned.push(mine);
    }

    let mut unassigned: Vec<Part> = (0..total as Part).filter(|&p| !taken[p as usize]).collect();
    if let Some(racks) = racks {
        // Partitions few members can read locally go first, while those
        // members still have room.
        unassigned.sort_by_key(|&p| racks.local_members(p));
        unassigned.retain(|&p| !fill.give_local(p, racks));
    }
    for p in unassigned {
        fill.give(p);
    }
    fill.assigned
}

/// The filling state of the equal-subscriptions path: who is below the
/// minimum quota, who may still take one partition over it.
///
/// At every step the partitions left to give equal what the members below
/// the minimum lack plus the members still allowed one over it, so the
/// fill ends with every member at its quota.
struct Fill {
    assigned: Vec<Vec<Part>>,
    /// Members below the minimum quota, in member order.
    under_min: Vec<usize>,
    /// Members at the minimum that may take one more.
    at_min: VecDeque<usize>,
    /// The round-robin position in `under_min`.
    cursor: usize,
    min_quota: usize,
    max_quota: usize,
    expected_over_min: usize,
    over_min: usize,
}

impl Fill {
    /// Member `m` (from `under_min[at]`) reached the minimum.
    fn reached_min(&mut self, at: usize, m: usize) {
        self.under_min.remove(at);
        if self.min_quota < self.max_quota && self.over_min < self.expected_over_min {
            self.at_min.push_back(m);
        }
    }

    /// Round-robin over the members under quota, then one more each to
    /// members at the minimum.
    fn give(&mut self, p: Part) {
        if !self.under_min.is_empty() {
            if self.cursor >= self.under_min.len() {
                self.cursor = 0;
            }
            let m = self.under_min[self.cursor];
            self.assigned[m].push(p);
            if self.assigned[m].len() == self.min_quota {
                self.reached_min(self.cursor, m);
            } else {
                self.cursor += 1;
            }
        } else if let Some(m) = self.at_min.pop_front() {
            self.assigned[m].push(p);
            self.over_min += 1;
        } else {
            // The quotas add up to the partition count, so this cannot
            // happen; should it, the partition still goes somewhere.
            debug_assert!(false, "sticky quotas exhausted with partitions left");
            tracing::error!("sticky quotas exhausted with partitions left");
            if let Some(m) = (0..self.assigned.len()).min_by_key(|&m| self.assigned[m].len()) {
                self.assigned[m].push(p);
            }
        }
    }

    /// Gives `p` to a member in one of its replicas' racks that has room:
    /// the next one under quota in round-robin order, else one at the
    /// minimum while members over it are still wanted. Returns whether it
    /// found one.
    fn give_local(&mut self, p: Part, racks: &RackMatch) -> bool {
        let k = self.under_min.len();
        for i in 0..k {
            let at = (self.cursor + i) % k;
            let m = self.under_min[at];
            if !racks.is_local(m, p) {
                continue;
            }
            self.assigned[m].push(p);
            if self.assigned[m].len() == self.min_quota {
                self.reached_min(at, m);
                self.cursor = at;
            } else {
                self.cursor = at + 1;
            }
            return true;
        }
        if self.over_min < self.expected_over_min {
            if let Some(j) = self.at_min.iter().position(|&m| racks.is_local(m, p)) {
                if let Some(m) = self.at_min.remove(j) {
                    self.assigned[m].push(p);
                    self.over_min += 1;
                    return true;
                }
            }
        }
        false
    }
}

/// Java's `generalAssign`, for unequal subscriptions.
fn assign_general(
    index: &Index<'_>,
    owned: Vec<Vec<Part>>,
    racks: Option<&RackMatch>,
) -> Vec<Vec<Part>> {
    let n = index.members.len();
    let total = index.partition_count();
    let mut owner = vec![NONE; total];
    let mut count = vec![0usize; n];
    for (m, mine) in owned.iter().enumerate() {
        for &p in mine {
            owner[p as usize] = m as u32;
        }
        count[m] = mine.len();
    }
    // The claims that were kept: moving one of these costs stickiness.
    let kept_owner = owner.clone();

    let least_loaded = |count: &[usize], p: Part| -> Option<usize> {
        index.topics[index.topic_of(p) as usize]
            .subscribers
            .iter()
            .map(|&m| m as usize)
            // Among the least loaded, a member in one of the partition's
            // replica racks (KIP-881).
            .min_by_key(|&m| (count[m], !racks.is_some_and(|r| r.is_local(m, p)), m))
    };

    // Unowned partitions: those with the fewest candidates first, so
    // members with narrow subscriptions are served before the choice runs out.
    let mut unowned: Vec<Part> = (0..total as Part)
        .filter(|&p| owner[p as usize] == NONE)
        .collect();
    unowned.sort_by_key(|&p| {
        (
            index.topics[index.topic_of(p) as usize].subscribers.len(),
            p,
        )
    });
    for p in unowned {
        if let Some(m) = least_loaded(&count, p) {
            owner[p as usize] = m as u32;
            count[m] += 1;
        }
    }

    // Move partitions to less loaded subscribed members until none can.
    // Heaviest members give first, each only while it is still at least
    // as heavy as the next one in line: a member that gave away down to
    // the lightest would have to be refilled from others, moving more
    // partitions than balance needs.
    loop {
        let mut moved = false;
        let mut lists: Vec<Vec<Part>> = vec![Vec::new(); n];
        for (p, &m) in owner.iter().enumerate() {
            if m != NONE {
                lists[m as usize].push(p as Part);
            }
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&m| (std::cmp::Reverse(count[m]), m));
        for (i, &a) in order.iter().enumerate() {
            // Nobody is two lighter than `a`: none of its partitions can
            // move, so skip scanning them.
            if count.iter().all(|&c| c + 1 >= count[a]) {
                continue;
            }
            let mut candidates = std::mem::take(&mut lists[a]);
            // Partitions `a` was only just given move first.
            candidates.sort_by_key(|&p| (kept_owner[p as usize] == a as u32, p));
            for p in candidates {
                if order.get(i + 1).is_some_and(|&next| count[a] < count[next]) {
                    break;
                }
                if owner[p as usize] != a as u32 {
                    continue;
                }
                let Some(b) = least_loaded(&count, p) else {
                    continue;
                };
                if count[b] + 1 < count[a] {
                    owner[p as usize] = b as u32;
                    count[a] -= 1;
                    count[b] += 1;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }

    let mut assigned: Vec<Vec<Part>> = vec![Vec::new(); n];
    for (p, &m) in owner.iter().enumerate() {
        if m != NONE {
            assigned[m as usize].push(p as Part);
        }
    }
    assigned
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::group::balancer::test_support::*;
    use crate::group::balancer::CooperativeStickyBalancer;

    /// AbstractStickyAssignorTest.testOneConsumerNoTopic.
    #[test]
    fn one_consumer_no_topic() {
        let plan = StickyBalancer
            .assign(&[member("c", &[])], &layout(&[]))
            .unwrap();
        assert!(flat(&plan, "c").is_empty());
    }

    /// testOneConsumerOneTopic, testOnlyAssignsPartitionsFromSubscribedTopics.
    #[test]
    fn one_consumer_gets_only_its_topic() {
        let plan = StickyBalancer
            .assign(&[member("c", &["t"])], &layout(&[("t", 3), ("other", 3)]))
            .unwrap();
        assert_eq!(flat(&plan, "c"), [("t", 0), ("t", 1), ("t", 2)]);
    }

    /// testTwoConsumersOneTopicOnePartition and
    /// testTwoConsumersOneTopicTwoPartitions (as librdkafka's port of
    /// AbstractStickyAssignorTest pins them).
    #[test]
    fn two_consumers_one_topic() {
        let members = vec![member("consumer1", &["t"]), member("consumer2", &["t"])];
        for balancer in [&StickyBalancer as &dyn Balancer, &CooperativeStickyBalancer] {
            let plan = balancer.assign(&members, &layout(&[("t", 1)])).unwrap();
            assert_eq!(plan.partitions_of("consumer1", "t"), &[0]);
            assert!(flat(&plan, "consumer2").is_empty());
            let plan = balancer.assign(&members, &layout(&[("t", 2)])).unwrap();
            assert_eq!(plan.partitions_of("consumer1", "t"), &[0]);
            assert_eq!(plan.partitions_of("consumer2", "t"), &[1]);
        }
    }

    /// testAddRemoveConsumerOneTopic (eager sticky).
    #[test]
    fn add_then_remove_a_consumer() {
        let l = layout(&[("t", 3)]);
        let plan = StickyBalancer.assign(&[member("c1", &["t"])], &l).unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[0, 1, 2]);

        let c1 = owning("c1", &["t"], &[("t", 0), ("t", 1), ("t", 2)], Some(1));
        let plan = StickyBalancer
            .assign(&[c1, member("c2", &["t"])], &l)
            .unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[0, 1]);
        assert_eq!(plan.partitions_of("c2", "t"), &[2]);

        let c2 = owning("c2", &["t"], &[("t", 2)], Some(2));
        let plan = StickyBalancer.assign(&[c2], &l).unwrap();
        assert_eq!(plan.partitions_of("c2", "t"), &[0, 1, 2]);
    }

    /// testMultipleConsumersMixedTopicSubscriptions (the general path).
    #[test]
    fn multiple_consumers_mixed_topic_subscriptions() {
        let members = vec![
            member("consumer1", &["topic1"]),
            member("consumer2", &["topic1", "topic2"]),
            member("consumer3", &["topic1"]),
        ];
        let plan = StickyBalancer
            .assign(&members, &layout(&[("topic1", 3), ("topic2", 2)]))
            .unwrap();
        assert_eq!(flat(&plan, "consumer1"), [("topic1", 0), ("topic1", 2)]);
        assert_eq!(flat(&plan, "consumer2"), [("topic2", 0), ("topic2", 1)]);
        assert_eq!(flat(&plan, "consumer3"), [("topic1", 1)]);
    }

    /// testOwnedPartitionsAreInvalidatedForConsumerWithStaleGeneration.
    #[test]
    fn claims_of_a_stale_generation_lose() {
        let owned = [("topic", 0), ("topic", 2), ("topic2", 1)];
        let members = vec![
            owning("consumer1", &["topic", "topic2"], &owned, Some(10)),
            owning("consumer2", &["topic", "topic2"], &owned, Some(9)),
        ];
        let l = layout(&[("topic", 3), ("topic2", 3)]);
        for plan in [
            StickyBalancer.assign(&members, &l).unwrap(),
            CooperativeStickyBalancer.assign(&members, &l).unwrap(),
        ] {
            assert_eq!(flat(&plan, "consumer1"), owned);
            assert_eq!(
                flat(&plan, "consumer2"),
                [("topic", 1), ("topic2", 0), ("topic2", 2)]
            );
        }
    }

    /// testOwnedPartitionsAreInvalidatedForConsumerWithNoGeneration: a
    /// member that reports no generation loses to one that does.
    #[test]
    fn claims_without_a_generation_lose_to_claims_with_one() {
        let owned = [("t", 0), ("t", 1)];
        let members = vec![
            owning("consumer1", &["t"], &owned, Some(3)),
            owning("consumer2", &["t"], &owned, None),
        ];
        let plan = StickyBalancer
            .assign(&members, &layout(&[("t", 4)]))
            .unwrap();
        assert_eq!(plan.partitions_of("consumer1", "t"), &[0, 1]);
        assert_eq!(plan.partitions_of("consumer2", "t"), &[2, 3]);
    }

    /// testAllConsumersHaveOwnedPartitionInvalidatedWhenClaimedByMultiple
    /// ConsumersInSameGenerationWithEqualPartitionsPerConsumer (eager).
    #[test]
    fn a_partition_claimed_twice_in_one_generation_belongs_to_neither() {
        let members = vec![
            owning("consumer1", &["t"], &[("t", 0), ("t", 1)], Some(1)),
            owning("consumer2", &["t"], &[("t", 0), ("t", 2)], Some(1)),
            owning("consumer3", &["t"], &[], Some(1)),
        ];
        let plan = StickyBalancer
            .assign(&members, &layout(&[("t", 3)]))
            .unwrap();
        assert_eq!(plan.partitions_of("consumer1", "t"), &[1]);
        assert_eq!(plan.partitions_of("consumer2", "t"), &[2]);
        assert_eq!(plan.partitions_of("consumer3", "t"), &[0]);
    }

    /// Mixed subscriptions (the general path): 100 members each on two
    /// thirds of 30 topics of 30 partitions. A member that joins takes
    /// one partition from each of the heaviest members, and nothing else
    /// moves; a member that leaves moves only its own partitions.
    #[test]
    fn mixed_subscriptions_move_only_what_membership_changes_require() {
        let topics: Vec<String> = (0..30).map(|t| format!("t{t:02}")).collect();
        let l = topics
            .iter()
            .fold(TopicLayout::new(), |l, t| l.with_topic(t.clone(), 30));
        let subs = |m: usize| -> Vec<&str> {
            let mine = topics
                .iter()
                .enumerate()
                .filter(|(t, _)| !(t + m).is_multiple_of(3));
            mine.map(|(_, n)| n.as_str()).collect()
        };
        let id = |m: usize| format!("m{m:03}");
        let members: Vec<GroupMember> = (0..100).map(|m| member(&id(m), &subs(m))).collect();
        let first = StickyBalancer.assign(&members, &l).unwrap();
        let owners = |plan: &Plan| -> std::collections::BTreeMap<(String, i32), String> {
            plan.iter()
                .flat_map(|(m, a)| {
                    a.partitions.iter().flat_map(move |(t, ps)| {
                        ps.iter().map(move |p| ((t.clone(), *p), m.to_owned()))
                    })
                })
                .collect()
        };
        let before = owners(&first);
        let mut owning_members: Vec<GroupMember> = (0..100)
            .map(|m| owning(&id(m), &subs(m), &flat(&first, &id(m)), Some(1)))
            .collect();

        owning_members.push(member("m100", &subs(100)));
        let joined = StickyBalancer.assign(&owning_members, &l).unwrap();
        let after = owners(&joined);
        let moved = before
            .iter()
            .filter(|(tp, m)| after.get(*tp) != Some(*m))
            .count();
        let taken = flat(&joined, "m100").len();
        assert_eq!(taken, 8, "900 partitions over 101 members");
        assert_eq!(moved, taken);

        owning_members.pop();
        let gone = owning_members.remove(50);
        let left = StickyBalancer.assign(&owning_members, &l).unwrap();
        let after = owners(&left);
        for (tp, m) in &before {
            if *m != gone.member_id {
                assert_eq!(after.get(tp), Some(m), "{tp:?} moved");
            }
        }
    }

    fn on_rack(mut m: GroupMember, rack: &str) -> GroupMember {
        m.subscription.rack = Some(rack.to_owned());
        m
    }

    /// One replica per partition, on racks a, b, c in turn.
    fn one_rack_each(partitions: usize) -> TopicLayout {
        let racks = ["a", "b", "c"];
        TopicLayout::new().with_racks(
            "t",
            (0..partitions)
                .map(|p| vec![racks[p % 3].to_owned()])
                .collect(),
        )
    }

    /// KIP-881: fresh, every member gets the partitions of its own rack.
    #[test]
    fn rack_aware_fresh_assignment_is_local() {
        let members = vec![
            on_rack(member("c1", &["t"]), "c"),
            on_rack(member("c2", &["t"]), "a"),
            on_rack(member("c3", &["t"]), "b"),
        ];
        for balancer in [&StickyBalancer as &dyn Balancer, &CooperativeStickyBalancer] {
            let plan = balancer.assign(&members, &one_rack_each(6)).unwrap();
            assert_eq!(plan.partitions_of("c1", "t"), &[2, 5]);
            assert_eq!(plan.partitions_of("c2", "t"), &[0, 3]);
            assert_eq!(plan.partitions_of("c3", "t"), &[1, 4]);
        }
    }

    /// KIP-881: an owned partition read from another rack moves to a
    /// member in its rack (the cooperative balancer withholds it first).
    #[test]
    fn rack_aware_assignment_moves_remote_partitions_home() {
        let members = vec![
            on_rack(owning("c1", &["t"], &[("t", 1), ("t", 3)], Some(2)), "a"),
            on_rack(owning("c2", &["t"], &[("t", 0), ("t", 2)], Some(2)), "b"),
        ];
        let layout = TopicLayout::new().with_racks(
            "t",
            ["a", "b", "a", "b"]
                .iter()
                .map(|r| vec![r.to_string()])
                .collect(),
        );
        let plan = StickyBalancer.assign(&members, &layout).unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[0, 2]);
        assert_eq!(plan.partitions_of("c2", "t"), &[1, 3]);
        let plan = CooperativeStickyBalancer.assign(&members, &layout).unwrap();
        assert!(flat(&plan, "c1").is_empty() && flat(&plan, "c2").is_empty());
    }

    /// Balance beats locality: with every member in rack a, partitions on
    /// rack b still get spread evenly.
    #[test]
    fn rack_matching_never_costs_balance() {
        let members = vec![
            on_rack(member("c1", &["t"]), "a"),
            on_rack(member("c2", &["t"]), "a"),
            on_rack(member("c3", &["t"]), "c"),
        ];
        // Partitions 0..4 on rack a, 4..6 on rack b.
        let layout = TopicLayout::new().with_racks(
            "t",
            ["a", "a", "a", "a", "b", "b"]
                .iter()
                .map(|r| vec![r.to_string()])
                .collect(),
        );
        let plan = StickyBalancer.assign(&members, &layout).unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[0, 2]);
        assert_eq!(plan.partitions_of("c2", "t"), &[1, 3]);
        assert_eq!(plan.partitions_of("c3", "t"), &[4, 5]);
    }

    /// The eager sticky balancer reads Java's StickyAssignorUserData, and
    /// takes undecodable user data as owning nothing.
    #[test]
    fn eager_sticky_reads_user_data() {
        let l = layout(&[("t", 4)]);
        let prev = by_topic(&[("t", 2), ("t", 3)]);
        let mut c1 = member("c1", &["t"]);
        c1.subscription.user_data = Some(protocol::encode_sticky_user_data(&prev, 4).unwrap());
        let mut c2 = member("c2", &["t"]);
        c2.subscription.user_data = Some(Bytes::from_static(&[0, 0, 0, 9, 1]));
        let plan = StickyBalancer.assign(&[c1, c2], &l).unwrap();
        assert_eq!(plan.partitions_of("c1", "t"), &[2, 3]);
        assert_eq!(plan.partitions_of("c2", "t"), &[0, 1]);
    }

    #[test]
    fn member_metadata_carries_the_previous_assignment_in_user_data() {
        let owned = by_topic(&[("t", 1)]);
        let topics = ["t".to_string()];
        let join = JoinSubscription {
            topics: &topics,
            owned: &owned,
            generation: 6,
            rack: Some("r"),
        };
        let sub =
            protocol::decode_subscription(StickyBalancer.member_metadata(&join).unwrap()).unwrap();
        assert!(
            sub.owned_partitions.is_empty(),
            "an eager member owns nothing when it joins"
        );
        assert_eq!(sub.generation, Some(6));
        assert_eq!(sub.rack.as_deref(), Some("r"));
        assert_eq!(sticky_claim(&sub), (owned, Some(6)));

        let fresh = JoinSubscription {
            topics: &topics,
            ..JoinSubscription::default()
        };
        let sub =
            protocol::decode_subscription(StickyBalancer.member_metadata(&fresh).unwrap()).unwrap();
        assert_eq!(sub.user_data, None);
    }
}
