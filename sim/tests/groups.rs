//! Consumer groups in the world: members joining, leaving, crashing,
//! stalling past their session, restarting with their instance id,
//! widening subscriptions, under coordinator moves and injected group
//! errors; and a sabotage per group checker proving that it bites.

use std::time::Duration;

use sansa_sim::group_workload::{BalancerKind, GroupMemberSpec};
use sansa_sim::scenario::{check_seeds, Scenario};

fn group_scenario(seed: u64, members: Vec<GroupMemberSpec>) -> Scenario {
    let mut s = Scenario::quiet(seed);
    s.topics = vec![("t".into(), 4, 3), ("u".into(), 2, 3)];
    s.produce_window = Duration::from_secs(3);
    s.fault_window = Duration::from_secs(4);
    s.group_members = members;
    s
}

#[test]
fn three_cooperative_members_joining_and_one_leaving_process_every_record() {
    let mut a = GroupMemberSpec::new("g", &["t"]);
    a.more_topics = Some((Duration::from_millis(1500), vec!["u".into()]));
    let mut b = GroupMemberSpec::new("g", &["t", "u"]);
    b.join_at = Duration::from_millis(700);
    let mut c = GroupMemberSpec::new("g", &["t"]);
    c.join_at = Duration::from_millis(1200);
    c.leave_at = Some(Duration::from_millis(2500));
    let reports = check_seeds(
        "--test groups three_cooperative_members_joining_and_one_leaving_process_every_record",
        1,
        3,
        |seed| group_scenario(seed, vec![a.clone(), b.clone(), c.clone()]),
    );
    for r in &reports {
        eprintln!("{r:?}");
        assert!(r.group.processed >= 200, "{r:?}");
        assert!(r.rebalances >= 3, "{r:?}");
        assert!(r.group.commits > 0, "{r:?}");
    }
}

#[test]
fn eager_members_and_mixed_members_share_a_group() {
    let mut a = GroupMemberSpec::new("g", &["t", "u"]);
    a.balancers = vec![BalancerKind::CooperativeSticky, BalancerKind::Range];
    let mut b = GroupMemberSpec::new("g", &["t", "u"]);
    b.balancers = vec![BalancerKind::Range];
    b.join_at = Duration::from_millis(800);
    let mut c = GroupMemberSpec::new("g", &["t"]);
    c.balancers = vec![BalancerKind::Sticky, BalancerKind::Range];
    c.join_at = Duration::from_millis(1600);
    c.commit_after_poll = true;
    let reports = check_seeds(
        "--test groups eager_members_and_mixed_members_share_a_group",
        1,
        3,
        |seed| group_scenario(seed, vec![a.clone(), b.clone(), c.clone()]),
    );
    for r in &reports {
        eprintln!("{r:?}");
        assert!(r.group.processed >= 200, "{r:?}");
    }
}
