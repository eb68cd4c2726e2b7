//! Property tests of the balancers: the invariants Java's
//! `AbstractStickyAssignorTest` and `CooperativeStickyAssignorTest` check,
//! over random groups (up to 8 members, 5 topics of up to 12 partitions,
//! equal or mixed subscriptions, random prior ownership with stale and
//! double claims). The seed is fixed, so a failure reproduces.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::test_support::*;
use super::{
    Balancer, CooperativeStickyBalancer, GroupMember, Plan, RangeBalancer, RoundRobinBalancer,
    StickyBalancer, TopicLayout,
};

const MAX_MEMBERS: usize = 8;
const MAX_TOPICS: usize = 5;
const MAX_PARTITIONS: usize = 12;
const GENERATION: i32 = 5;

type Tp = (String, i32);

/// A random group: topics, subscriptions and a prior ownership.
#[derive(Debug, Clone)]
struct Scenario {
    layout: TopicLayout,
    topics: Vec<(String, i32)>,
    /// Per member, the topics it subscribes to.
    subscriptions: Vec<Vec<String>>,
    equal: bool,
    /// Per member, what it claims to own, and its generation.
    claims: Vec<(Vec<Tp>, Option<i32>)>,
}

fn member_id(m: usize) -> String {
    format!("member-{m}")
}

impl Scenario {
    fn members(&self) -> Vec<GroupMember> {
        (0..self.subscriptions.len())
            .map(|m| self.member(m))
            .collect()
    }

    fn member(&self, m: usize) -> GroupMember {
        let topics: Vec<&str> = self.subscriptions[m].iter().map(String::as_str).collect();
        let (owned, generation) = &self.claims[m];
        let owned: Vec<(&str, i32)> = owned.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        owning(&member_id(m), &topics, &owned, *generation)
    }

    /// The same group with everyone owning what `plan` gave them, in the
    /// next generation.
    fn owning_plan(&self, plan: &Plan, generation: i32) -> Scenario {
        let mut next = self.clone();
        for (m, claim) in next.claims.iter_mut().enumerate() {
            *claim = (owned_tps(plan, &member_id(m)), Some(generation));
        }
        next
    }

    /// Every partition of a subscribed topic.
    fn in_scope(&self) -> BTreeSet<Tp> {
        let subscribed: BTreeSet<&String> = self.subscriptions.iter().flatten().collect();
        self.topics
            .iter()
            .filter(|(t, _)| subscribed.contains(t))
            .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
            .collect()
    }
}

fn owned_tps(plan: &Plan, member: &str) -> Vec<Tp> {
    flat(plan, member)
        .into_iter()
        .map(|(t, p)| (t.to_owned(), p))
        .collect()
}

/// Who holds each partition in `plan`; fails on a partition held twice.
fn holders(plan: &Plan) -> Result<BTreeMap<Tp, String>, TestCaseError> {
    let mut out = BTreeMap::new();
    for (member, a) in plan.iter() {
        for (t, ps) in &a.partitions {
            for p in ps {
                let prev = out.insert((t.clone(), *p), member.to_owned());
                prop_assert!(prev.is_none(), "{t}-{p} assigned to {member} and {prev:?}");
            }
        }
    }
    Ok(out)
}

/// Only subscribed, existing partitions; each at most once; and, when
/// `complete`, every partition in scope.
fn check_valid(scn: &Scenario, plan: &Plan, complete: bool) -> Result<(), TestCaseError> {
    let holders = holders(plan)?;
    let scope = scn.in_scope();
    for ((t, p), member) in &holders {
        prop_assert!(scope.contains(&(t.clone(), *p)), "{t}-{p} is not in scope");
        let m: usize = member["member-".len()..].parse().unwrap_or(usize::MAX);
        prop_assert!(
            scn.subscriptions.get(m).is_some_and(|s| s.contains(t)),
            "{member} got {t}-{p} without subscribing to {t}"
        );
    }
    prop_assert_eq!(
        plan.iter().count(),
        scn.subscriptions.len(),
        "one entry per member"
    );
    if complete {
        prop_assert_eq!(
            holders.len(),
            scope.len(),
            "every partition in scope is assigned"
        );
    }
    Ok(())
}

/// Balance as Java's `verifyValidityAndBalance`: a member with two more
/// partitions than another holds none of the other's topics; with equal
/// subscriptions, counts differ by at most one.
fn check_balanced(scn: &Scenario, plan: &Plan) -> Result<(), TestCaseError> {
    let counts: Vec<usize> = (0..scn.subscriptions.len())
        .map(|m| plan.get(&member_id(m)).map_or(0, |a| a.partition_count()))
        .collect();
    for a in 0..counts.len() {
        for b in 0..counts.len() {
            if counts[a] > counts[b] + 1 {
                for (t, _) in flat(plan, &member_id(a)) {
                    prop_assert!(
                        !scn.subscriptions[b].iter().any(|s| s == t),
                        "member {a} has {} partitions and member {b} {}, but {b} could take {t}",
                        counts[a],
                        counts[b]
                    );
                }
            }
        }
    }
    if scn.equal {
        let max = counts.iter().max().copied().unwrap_or(0);
        let min = counts.iter().min().copied().unwrap_or(0);
        prop_assert!(max - min <= 1, "equal subscriptions, counts {counts:?}");
    }
    Ok(())
}

/// Partitions whose holder differs between two plans (among those held in
/// `before`).
fn moved(before: &Plan, after: &Plan) -> Result<usize, TestCaseError> {
    let b = holders(before)?;
    let a = holders(after)?;
    Ok(b.iter().filter(|(tp, m)| a.get(*tp) != Some(*m)).count())
}

fn scenario(equal: bool, max_members: usize) -> impl Strategy<Value = Scenario> {
    (
        1..=max_members,
        proptest::collection::vec(1..=MAX_PARTITIONS as i32, 1..=MAX_TOPICS),
        proptest::collection::vec(1u8..32, max_members),
        proptest::collection::vec(
            (0..=max_members, 0..=max_members * 4),
            MAX_TOPICS * MAX_PARTITIONS,
        ),
        proptest::collection::vec(0u8..4, max_members),
    )
        .prop_map(move |(n, counts, masks, owners, gens)| {
            let topics: Vec<(String, i32)> = counts
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("topic-{i}"), *c))
                .collect();
            let all: Vec<String> = topics.iter().map(|(t, _)| t.clone()).collect();
            let pick = |mask: u8| -> Vec<String> {
                let mine: Vec<String> = all
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, t)| t.clone())
                    .collect();
                if mine.is_empty() {
                    all[..1].to_vec()
                } else {
                    mine
                }
            };
            let subscriptions: Vec<Vec<String>> = if equal {
                vec![pick(masks[0]); n]
            } else {
                (0..n).map(|m| pick(masks[m])).collect()
            };
            // Prior claims: each partition has an owner (or none), and
            // now and then a second claimant.
            let mut claims: Vec<(Vec<Tp>, Option<i32>)> = (0..n)
                .map(|m| {
                    let generation = match gens[m] {
                        0 => None,
                        1 => Some(GENERATION - 1),
                        _ => Some(GENERATION),
                    };
                    (Vec::new(), generation)
                })
                .collect();
            let mut i = 0;
            for (t, c) in &topics {
                for p in 0..*c {
                    let (first, second) = owners[i];
                    i += 1;
                    if first < n {
                        claims[first].0.push((t.clone(), p));
                    }
                    if second < n && second != first {
                        claims[second].0.push((t.clone(), p));
                    }
                }
            }
            Scenario {
                layout: topics
                    .iter()
                    .fold(TopicLayout::new(), |l, (t, c)| l.with_topic(t.clone(), *c)),
                topics,
                subscriptions,
                equal,
                claims,
            }
        })
}

fn any_scenario() -> impl Strategy<Value = Scenario> {
    prop_oneof![scenario(true, MAX_MEMBERS), scenario(false, MAX_MEMBERS)]
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x0ba1a),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The cooperative plan of a group in which every member owns nothing.
fn fresh(scn: &Scenario) -> Scenario {
    let mut s = scn.clone();
    for c in &mut s.claims {
        *c = (Vec::new(), None);
    }
    s
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn sticky_plans_are_complete_subscribed_and_balanced_from_any_prior(scn in any_scenario()) {
        let plan = StickyBalancer.assign(&scn.members(), &scn.layout).unwrap();
        check_valid(&scn, &plan, true)?;
        check_balanced(&scn, &plan)?;
    }

    #[test]
    fn cooperative_withholds_only_partitions_another_member_owns(scn in any_scenario()) {
        let members = scn.members();
        let plan = CooperativeStickyBalancer.assign(&members, &scn.layout).unwrap();
        let sticky = StickyBalancer.assign(&members, &scn.layout).unwrap();
        check_valid(&scn, &plan, false)?;
        let claimed: BTreeMap<&Tp, BTreeSet<usize>> = scn
            .claims
            .iter()
            .enumerate()
            .flat_map(|(m, (tps, _))| tps.iter().map(move |tp| (tp, m)))
            .fold(BTreeMap::new(), |mut acc, (tp, m)| {
                acc.entry(tp).or_insert_with(BTreeSet::new).insert(m);
                acc
            });
        let given = holders(&plan)?;
        for (tp, holder) in holders(&sticky)? {
            let m: usize = holder["member-".len()..].parse().unwrap_or(usize::MAX);
            let owned_by_other = claimed.get(&tp).is_some_and(|c| c.iter().any(|&o| o != m));
            let owned_by_self = claimed.get(&tp).is_some_and(|c| c.contains(&m));
            match given.get(&tp) {
                // Nothing revoked and assigned in one round: a partition
                // reaches a member that did not own it only when nobody did.
                Some(g) => {
                    prop_assert_eq!(g, &holder, "cooperative plan = sticky plan minus withheld");
                    prop_assert!(owned_by_self || !owned_by_other, "{tp:?} handed to {g} while still owned elsewhere");
                }
                // Every withheld partition is owned by another member.
                None => prop_assert!(!owned_by_self && owned_by_other, "{tp:?} withheld without cause"),
            }
        }
    }

    #[test]
    fn cooperative_converges_to_a_complete_balanced_plan_once_owners_revoke(scn in any_scenario()) {
        let round1 = CooperativeStickyBalancer.assign(&scn.members(), &scn.layout).unwrap();
        // Everyone revoked what they lost and rejoined.
        let mut current = scn.owning_plan(&round1, GENERATION + 1);
        let mut plan = CooperativeStickyBalancer.assign(&current.members(), &current.layout).unwrap();
        if scn.equal {
            // Equal subscriptions: one follow-up round, and nothing that
            // round 1 handed out moves again.
            prop_assert_eq!(moved(&round1, &plan)?, 0);
        } else {
            // Mixed subscriptions may need more rounds (as in Java); each
            // hands out what the last one withheld.
            for round in 0..MAX_MEMBERS as i32 {
                if holders(&plan)?.len() == scn.in_scope().len() {
                    break;
                }
                current = current.owning_plan(&plan, GENERATION + 2 + round);
                plan = CooperativeStickyBalancer.assign(&current.members(), &current.layout).unwrap();
            }
        }
        check_valid(&scn, &plan, true)?;
        check_balanced(&scn, &plan)?;
    }

    #[test]
    fn balanced_prior_and_same_members_move_nothing(scn in any_scenario()) {
        let fresh = fresh(&scn);
        for balancer in [&StickyBalancer as &dyn Balancer, &CooperativeStickyBalancer] {
            let first = balancer.assign(&fresh.members(), &fresh.layout).unwrap();
            let again = fresh.owning_plan(&first, GENERATION);
            let second = balancer.assign(&again.members(), &again.layout).unwrap();
            prop_assert_eq!(&first, &second, "{}", balancer.protocol_name());
        }
    }

    #[test]
    fn stale_generation_claims_lose_to_current_ones(scn in scenario(true, MAX_MEMBERS), stale in 0..MAX_MEMBERS, extra in proptest::collection::vec(any::<bool>(), MAX_TOPICS * MAX_PARTITIONS)) {
        let fresh = fresh(&scn);
        let first = StickyBalancer.assign(&fresh.members(), &fresh.layout).unwrap();
        let mut next = fresh.owning_plan(&first, GENERATION);
        let stale = stale % next.claims.len();
        // The stale member also claims a random part of everyone else's
        // partitions, from an older generation.
        let others: Vec<Tp> = scn.in_scope().into_iter().zip(extra).filter(|(_, e)| *e).map(|(tp, _)| tp).collect();
        next.claims[stale].0.extend(others);
        next.claims[stale].1 = Some(GENERATION - 1);
        let stale_id = member_id(stale);
        for balancer in [&StickyBalancer as &dyn Balancer, &CooperativeStickyBalancer] {
            let plan = balancer.assign(&next.members(), &next.layout).unwrap();
            // Every member of the current generation keeps all it owns,
            // whatever the stale member claims.
            let after = holders(&plan)?;
            for (tp, m) in holders(&first)? {
                if m != stale_id {
                    prop_assert_eq!(after.get(&tp), Some(&m), "{}: {:?}", balancer.protocol_name(), tp);
                }
            }
            check_valid(&next, &plan, !balancer.is_cooperative())?;
            if !balancer.is_cooperative() {
                check_balanced(&next, &plan)?;
            }
        }
    }

    #[test]
    fn a_leaving_member_moves_only_its_own_partitions(scn in scenario(true, MAX_MEMBERS), leaver in 0..MAX_MEMBERS) {
        let fresh = fresh(&scn);
        let first = StickyBalancer.assign(&fresh.members(), &fresh.layout).unwrap();
        let owned = fresh.owning_plan(&first, GENERATION);
        prop_assume!(owned.subscriptions.len() >= 2);
        let leaver = leaver % owned.subscriptions.len();
        let mut members = owned.members();
        let gone = members.remove(leaver);
        for balancer in [&StickyBalancer as &dyn Balancer, &CooperativeStickyBalancer] {
            let plan = balancer.assign(&members, &owned.layout).unwrap();
            let before = holders(&first)?;
            let after = holders(&plan)?;
            for (tp, m) in &before {
                if *m != gone.member_id {
                    prop_assert_eq!(after.get(tp), Some(m), "{}: {:?} moved", balancer.protocol_name(), tp);
                }
            }
            // Nobody else owns the leaver's partitions: nothing is withheld.
            prop_assert_eq!(after.len(), scn.in_scope().len());
        }
    }

    #[test]
    fn a_joining_member_moves_the_fewest_partitions_balance_allows(scn in scenario(true, MAX_MEMBERS - 1)) {
        let fresh = fresh(&scn);
        let first = StickyBalancer.assign(&fresh.members(), &fresh.layout).unwrap();
        let owned = fresh.owning_plan(&first, GENERATION);
        let mut members = owned.members();
        let topics: Vec<&str> = scn.subscriptions[0].iter().map(String::as_str).collect();
        members.push(member("member-new", &topics));

        // The most that can stay: each member keeps up to the new minimum
        // quota, and as many as there are extra slots keep one more.
        let total = scn.in_scope().len();
        let n = members.len();
        let (min_q, extra) = (total / n, total % n);
        let counts: Vec<usize> = first.iter().map(|(_, a)| a.partition_count()).collect();
        let keepable: usize = counts.iter().map(|&c| c.min(min_q)).sum::<usize>()
            + counts.iter().filter(|&&c| c > min_q).count().min(extra);
        let fewest_moves = total - keepable;

        let plan = StickyBalancer.assign(&members, &owned.layout).unwrap();
        prop_assert_eq!(moved(&first, &plan)?, fewest_moves);
        let coop = CooperativeStickyBalancer.assign(&members, &owned.layout).unwrap();
        // Cooperative: the same moves, all withheld for a round.
        prop_assert_eq!(moved(&first, &coop)?, fewest_moves);
        prop_assert_eq!(holders(&coop)?.len(), total - fewest_moves);
    }

    #[test]
    fn every_balancer_is_deterministic_whatever_the_member_order(scn in any_scenario(), rotate in 0..MAX_MEMBERS) {
        let members = scn.members();
        let mut reordered = members.clone();
        reordered.reverse();
        let len = reordered.len();
        reordered.rotate_left(rotate % len);
        for balancer in [&RangeBalancer as &dyn Balancer, &RoundRobinBalancer, &StickyBalancer, &CooperativeStickyBalancer] {
            let a = balancer.assign(&members, &scn.layout).unwrap();
            let b = balancer.assign(&reordered, &scn.layout).unwrap();
            prop_assert_eq!(&a, &b, "{}", balancer.protocol_name());
        }
    }

    #[test]
    fn range_and_roundrobin_assign_every_subscribed_partition_once(scn in any_scenario()) {
        for balancer in [&RangeBalancer as &dyn Balancer, &RoundRobinBalancer] {
            let plan = balancer.assign(&scn.members(), &scn.layout).unwrap();
            check_valid(&scn, &plan, true)?;
        }
        if scn.equal {
            // Round-robin deals equal subscriptions evenly.
            let plan = RoundRobinBalancer.assign(&scn.members(), &scn.layout).unwrap();
            check_balanced(&scn, &plan)?;
        }
    }
}

/// A member whose subscription holds anything a hostile or buggy peer
/// could send: unknown topics, negative and out-of-range partitions,
/// repeated topics, any generation, random user data.
fn hostile_member(m: usize) -> impl Strategy<Value = GroupMember> {
    let topic = prop_oneof![
        Just("topic-0".to_string()),
        Just("topic-1".to_string()),
        "[a-z]{0,3}"
    ];
    (
        proptest::collection::vec(topic.clone(), 0..4),
        proptest::collection::vec(
            (
                topic,
                proptest::collection::vec(any::<i32>().prop_map(|p| p % 20), 0..6),
            ),
            0..4,
        ),
        proptest::option::of(any::<i32>()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
        proptest::option::of("[a-c]"),
    )
        .prop_map(move |(topics, owned, generation, user_data, rack)| {
            let mut g = owning(&member_id(m), &[], &[], generation);
            g.subscription.topics = topics;
            for (t, ps) in owned {
                g.subscription
                    .owned_partitions
                    .entry(t)
                    .or_default()
                    .extend(ps);
            }
            g.subscription.user_data = user_data.map(bytes::Bytes::from);
            g.subscription.rack = rack;
            g
        })
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn hostile_subscriptions_never_panic_and_plans_stay_valid(
        members in (1..6usize).prop_flat_map(|n| (0..n).map(hostile_member).collect::<Vec<_>>()),
        racks in proptest::collection::vec(proptest::collection::vec("[a-c]", 0..3), 0..8),
    ) {
        let layout = TopicLayout::new()
            .with_topic("topic-0", 5)
            .with_racks("topic-1", racks)
            .with_topic("", 2);
        for balancer in [&RangeBalancer as &dyn Balancer, &RoundRobinBalancer, &StickyBalancer, &CooperativeStickyBalancer] {
            let plan = balancer.assign(&members, &layout).unwrap();
            let held = holders(&plan)?;
            for ((t, p), holder) in &held {
                let m = members.iter().find(|m| &m.member_id == holder).unwrap();
                prop_assert!(m.subscription.topics.contains(t), "{}: {holder} got unsubscribed {t}", balancer.protocol_name());
                prop_assert!(*p >= 0 && *p < layout.partition_count(t).unwrap_or(0));
            }
            if !balancer.is_cooperative() {
                let wanted: usize = ["topic-0", "topic-1", ""]
                    .iter()
                    .filter(|t| members.iter().any(|m| m.subscription.topics.iter().any(|s| s == *t)))
                    .map(|t| layout.partition_count(t).unwrap_or(0) as usize)
                    .sum();
                prop_assert_eq!(held.len(), wanted, "{}", balancer.protocol_name());
            }
        }
    }
}

proptest! {
    #![proptest_config(config(200))]

    /// KIP-881: when each rack holds as many partitions as its members
    /// can take at their quota, every member reads only from its own rack
    /// (fresh), whatever the member and rack order.
    #[test]
    fn rack_aware_sticky_places_every_partition_locally_when_racks_allow(
        racks in 1..4usize,
        members_per_rack in 1..4usize,
        per_member in 1..4usize,
        topics in 1..3usize,
    ) {
        let rack = |i: usize| format!("rack-{i}");
        // Partition p of each topic lives on rack (p / (members_per_rack * per_member)) % racks,
        // so each rack holds members_per_rack * per_member partitions per topic.
        let per_topic = racks * members_per_rack * per_member;
        let layout = (0..topics).fold(TopicLayout::new(), |l, t| {
            l.with_racks(
                format!("topic-{t}"),
                (0..per_topic).map(|p| vec![rack(p / (members_per_rack * per_member))]).collect(),
            )
        });
        let names: Vec<String> = (0..topics).map(|t| format!("topic-{t}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let members: Vec<GroupMember> = (0..racks * members_per_rack)
            .map(|m| {
                // Interleave racks in member-id order.
                let mut g = member(&member_id(m), &names);
                g.subscription.rack = Some(rack(m % racks));
                g
            })
            .collect();
        for balancer in [&StickyBalancer as &dyn Balancer, &CooperativeStickyBalancer] {
            let plan = balancer.assign(&members, &layout).unwrap();
            for g in &members {
                let mine = flat(&plan, &g.member_id);
                prop_assert_eq!(mine.len(), topics * per_member);
                for (t, p) in mine {
                    prop_assert_eq!(
                        layout.replica_racks(t, p),
                        std::slice::from_ref(g.subscription.rack.as_ref().unwrap()),
                        "{}: {} got {}-{}", balancer.protocol_name(), g.member_id, t, p
                    );
                }
            }
        }
    }

    #[test]
    fn rack_aware_sticky_plans_stay_complete_and_balanced(
        scn in any_scenario(),
        member_racks in proptest::collection::vec(proptest::option::of(0..3u8), MAX_MEMBERS),
        partition_racks in proptest::collection::vec(proptest::collection::vec(0..3u8, 0..3), MAX_PARTITIONS),
    ) {
        let mut scn = scn;
        scn.layout = scn.topics.iter().fold(TopicLayout::new(), |l, (t, n)| {
            l.with_racks(
                t.clone(),
                (0..*n as usize)
                    .map(|p| partition_racks[p].iter().map(|r| format!("r{r}")).collect())
                    .collect(),
            )
        });
        let mut members = scn.members();
        for (m, g) in members.iter_mut().enumerate() {
            g.subscription.rack = member_racks[m].map(|r| format!("r{r}"));
        }
        let plan = StickyBalancer.assign(&members, &scn.layout).unwrap();
        check_valid(&scn, &plan, true)?;
        check_balanced(&scn, &plan)?;
        let coop = CooperativeStickyBalancer.assign(&members, &scn.layout).unwrap();
        check_valid(&scn, &coop, false)?;
    }
}
