//! Consumer groups in the world: members joining, leaving, crashing,
//! stalling past their session, restarting with their instance id,
//! widening subscriptions, under coordinator moves and injected group
//! errors; and a sabotage per group checker proving that it bites.

use std::time::Duration;

use sansa_core::group::GroupProtocol;
use sansa_sim::cluster::RandomGroupFaults;
use sansa_sim::cluster::Sabotage;
use sansa_sim::group_workload::{
    draw_members, use_consumer_protocol, BalancerKind, GroupMemberSpec,
};
use sansa_sim::scenario::{check_seeds, Scenario};
use sansa_sim::SimRng;
use sansa_sim::{Fault, Violation};

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

/// Runs `s` as it is and with `sabotage` applied; the control must keep
/// every promise, the sabotaged run's violations are returned.
fn control_and_sabotage(
    s: Scenario,
    sabotage: impl FnOnce(&mut Scenario),
) -> Vec<sansa_sim::Violation> {
    if let Err(f) = s.run() {
        panic!("the control run must pass: {f}");
    }
    let mut broken = s;
    sabotage(&mut broken);
    broken
        .run_world(0)
        .expect("the world builds")
        .violations()
        .to_vec()
}

fn two_members(seed: u64) -> Scenario {
    let a = GroupMemberSpec::new("g", &["t", "u"]);
    let mut b = GroupMemberSpec::new("g", &["t", "u"]);
    b.join_at = Duration::from_millis(500);
    group_scenario(seed, vec![a, b])
}

#[test]
fn a_coordinator_giving_everyone_one_plan_breaks_one_live_owner() {
    let v = control_and_sabotage(two_members(11), |s| {
        s.sabotage = Sabotage::SyncGivesEveryoneOnePlan;
    });
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::PartitionOwnedTwice { .. })),
        "{v:?}"
    );
}

#[test]
fn a_coordinator_accepting_stale_commits_breaks_commits_by_owners() {
    // The first member stalls through a rebalance (the second joins) and
    // is dropped when the rebalance times out without it; when it runs
    // again, before its own session watchdog fires, its auto-commit
    // names the old generation and a member id the group no longer has.
    let make = |seed| {
        let mut a = GroupMemberSpec::new("g", &["t", "u"]);
        let mut b = a.clone();
        for m in [&mut a, &mut b] {
            m.session_timeout = Duration::from_secs(4);
            m.heartbeat_interval = Duration::from_secs(1);
            m.rebalance_timeout = Duration::from_secs(1);
        }
        b.join_at = Duration::from_millis(2000);
        let mut s = group_scenario(seed, vec![a, b]);
        s.scripted.push((
            Duration::from_millis(1500),
            Fault::StallClient {
                client: 1,
                duration: Duration::from_millis(2500),
            },
        ));
        s
    };
    let v = control_and_sabotage(make(12), |s| s.sabotage = Sabotage::AcceptStaleCommits);
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::CommitByNonOwner { .. })),
        "{v:?}"
    );
}

#[test]
fn a_member_committing_offset_zero_after_each_poll_breaks_no_backwards_commit() {
    let v = control_and_sabotage(two_members(13), |s| s.commit_backwards = true);
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::CommitMovedBackwards { .. })),
        "{v:?}"
    );
}

#[test]
fn a_coordinator_forgetting_commits_breaks_duplicates_only_of_uncommitted_work() {
    // The second member joins late: the first has committed what it
    // processed, and the second starts over from the earliest offset.
    let make = |seed| {
        let a = GroupMemberSpec::new("g", &["t", "u"]);
        let mut b = GroupMemberSpec::new("g", &["t", "u"]);
        b.join_at = Duration::from_millis(2500);
        group_scenario(seed, vec![a, b])
    };
    let v = control_and_sabotage(make(14), |s| {
        s.sabotage = Sabotage::OffsetFetchForgetsCommits;
    });
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::ReprocessedCommitted { .. })),
        "{v:?}"
    );
}

#[test]
fn a_group_whose_members_all_stall_until_the_end_breaks_every_record_processed() {
    // The members stall past the end of the run: nothing is processed,
    // which the end check must call out (the stall is no fault of the
    // client, but the check has no way to know, and must not pass).
    let mut s = two_members(15);
    s.settle = Duration::from_secs(5);
    for client in [1, 2] {
        s.scripted.push((
            Duration::from_millis(1),
            Fault::StallClient {
                client,
                duration: Duration::from_secs(3600),
            },
        ));
    }
    let v = s
        .run_world(0)
        .expect("the world builds")
        .violations()
        .to_vec();
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::GroupRecordNotProcessed { .. })),
        "{v:?}"
    );
}

#[test]
fn static_members_restarting_a_member_stalled_past_its_session_coordinator_moves_and_group_errors_keep_every_group_promise(
) {
    // Client 0 produces; 1 and 2 are static members, 3 a dynamic eager-
    // capable one. Member 1 crashes and comes back with its instance id;
    // member 3 stalls past its session; the coordinator moves twice; one
    // group request in ten meets an injected error.
    let make = |seed| {
        let mut a = GroupMemberSpec::new("g", &["t", "u"]);
        a.instance_id = Some("a".into());
        let mut b = a.clone();
        b.instance_id = Some("b".into());
        b.join_at = Duration::from_millis(300);
        let mut c = GroupMemberSpec::new("g", &["t"]);
        c.balancers = vec![BalancerKind::CooperativeSticky, BalancerKind::Range];
        c.join_at = Duration::from_millis(600);
        c.commit_after_poll = true;
        let mut s = group_scenario(seed, vec![a, b, c]);
        s.faults.group.error_rate = 0.1;
        s.scripted = vec![
            (
                Duration::from_millis(900),
                Fault::CrashClient {
                    client: 1,
                    restart_after: Some(Duration::from_millis(700)),
                },
            ),
            (
                Duration::from_millis(1200),
                Fault::StallClient {
                    client: 3,
                    duration: Duration::from_secs(3),
                },
            ),
            (
                Duration::from_millis(1500),
                Fault::MoveCoordinator { group: "g".into() },
            ),
            (
                Duration::from_millis(2600),
                Fault::MoveCoordinator { group: "g".into() },
            ),
        ];
        s
    };
    let reports = check_seeds(
        "--test groups static_members_restarting_a_member_stalled_past_its_session_coordinator_moves_and_group_errors_keep_every_group_promise",
        1,
        4,
        make,
    );
    for r in &reports {
        assert!(r.group.processed >= 200, "{r:?}");
        assert_eq!(r.faults.get("client restart"), Some(&1), "{r:?}");
        assert_eq!(r.faults.get("coordinator move"), Some(&2), "{r:?}");
        assert!(r.group_faults > 0, "{r:?}");
    }
    eprintln!(
        "{:?}",
        reports
            .iter()
            .map(|r| (r.group, r.rebalances))
            .collect::<Vec<_>>()
    );
}

/// Members of a KIP-848 group: client 1 from the start, 2 and 3 joining
/// later, 3 leaving; faults scripted by the caller.
fn kip848_members(seed: u64) -> Scenario {
    let a = GroupMemberSpec::new("g", &["t", "u"]);
    let mut b = GroupMemberSpec::new("g", &["t", "u"]);
    b.join_at = Duration::from_millis(400);
    let mut c = GroupMemberSpec::new("g", &["t"]);
    c.join_at = Duration::from_millis(800);
    c.leave_at = Some(Duration::from_millis(2400));
    c.commit_after_poll = true;
    let mut members = vec![a, b, c];
    use_consumer_protocol(&mut members);
    group_scenario(seed, members)
}

#[test]
fn kip848_members_joining_leaving_crashing_and_the_coordinator_moving_keep_every_group_promise() {
    // Member 1 crashes and comes back, member 2 stalls past its session,
    // the coordinator moves twice, and group requests meet injected
    // errors: the coordinator revokes before it assigns throughout.
    let make = |seed| {
        let mut s = kip848_members(seed);
        s.faults.group.error_rate = 0.05;
        s.scripted = vec![
            (
                Duration::from_millis(900),
                Fault::CrashClient {
                    client: 1,
                    restart_after: Some(Duration::from_millis(700)),
                },
            ),
            (
                Duration::from_millis(1300),
                Fault::StallClient {
                    client: 2,
                    duration: Duration::from_secs(3),
                },
            ),
            (
                Duration::from_millis(1500),
                Fault::MoveCoordinator { group: "g".into() },
            ),
            (
                Duration::from_millis(2600),
                Fault::MoveCoordinator { group: "g".into() },
            ),
        ];
        s
    };
    let reports = check_seeds(
        "--test groups kip848_members_joining_leaving_crashing_and_the_coordinator_moving_keep_every_group_promise",
        1,
        4,
        make,
    );
    for r in &reports {
        eprintln!("{r:?}");
        assert!(r.group.processed >= 200, "{r:?}");
        assert!(r.group.commits > 0, "{r:?}");
        assert_eq!(r.faults.get("client restart"), Some(&1), "{r:?}");
        assert_eq!(r.faults.get("coordinator move"), Some(&2), "{r:?}");
        assert!(
            r.requests
                .get("ConsumerGroupHeartbeat")
                .copied()
                .unwrap_or(0)
                > 0,
            "the members spoke KIP-848: {r:?}"
        );
        assert_eq!(r.requests.get("JoinGroup"), None, "{r:?}");
    }
}

#[test]
fn a_kip848_coordinator_assigning_before_the_owner_released_breaks_one_live_owner() {
    let v = control_and_sabotage(kip848_members(16), |s| {
        s.sabotage = Sabotage::AssignBeforeRelease;
    });
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::PartitionOwnedTwice { .. })),
        "{v:?}"
    );
}

#[test]
fn a_classic_only_cluster_does_not_advertise_kip848_and_its_members_stay_classic() {
    let mut s = kip848_members(17);
    for m in &mut s.group_members {
        m.protocol = GroupProtocol::Classic;
    }
    let w = s.run_world(0).expect("the world builds");
    assert!(!w.cluster().config().groups.consumer_protocol);
    assert!(w.violations().is_empty(), "{:?}", w.violations());
    assert_eq!(
        w.cluster().stats().requests.get("ConsumerGroupHeartbeat"),
        None
    );
}

/// A swarm seed with group members in every run (the swarm test draws
/// them in about a third of its seeds): the members, and their injected
/// error rate, drawn from a stream of their own.
fn group_swarm(seed: u64) -> Scenario {
    let mut s = Scenario::swarm(seed);
    if s.group_members.is_empty() {
        let mut r = SimRng::new(seed ^ 0x0067_726f_7570);
        let names: Vec<String> = s.topics.iter().map(|t| t.0.clone()).collect();
        s.group_members = draw_members(&mut r, &names, s.produce_window);
        s.faults.group = RandomGroupFaults {
            error_rate: if r.chance(0.4) { 0.1 * r.unit() } else { 0.0 },
        };
    }
    s
}

#[test]
fn group_swarm_keeps_every_group_promise_under_random_faults() {
    let reports = check_seeds(
        "--test groups group_swarm_keeps_every_group_promise_under_random_faults",
        0,
        // Few by default (the swarm test covers groups in CI); sweep more
        // with SANSA_SIM_SEEDS.
        10,
        group_swarm,
    );
    let processed: u64 = reports.iter().map(|r| r.group.processed).sum();
    assert!(processed > 0, "the members processed nothing at all");
    let duplicates: u64 = reports.iter().map(|r| r.group.duplicates).sum();
    let rebalances: u64 = reports.iter().map(|r| r.rebalances).sum();
    eprintln!(
        "{} group seeds: {processed} processed, {duplicates} processed again, {rebalances} rebalances",
        reports.len()
    );
}

#[test]
fn kip848_group_swarm_keeps_every_group_promise_under_random_faults() {
    let reports = check_seeds(
        "--test groups kip848_group_swarm_keeps_every_group_promise_under_random_faults",
        0,
        // Few by default (the swarm test draws KIP-848 groups too); sweep
        // more with SANSA_SIM_SEEDS.
        10,
        |seed| {
            let mut s = group_swarm(seed);
            use_consumer_protocol(&mut s.group_members);
            s
        },
    );
    let processed: u64 = reports.iter().map(|r| r.group.processed).sum();
    assert!(processed > 0, "the members processed nothing at all");
    let heartbeats: u64 = reports
        .iter()
        .filter_map(|r| r.requests.get("ConsumerGroupHeartbeat"))
        .sum();
    assert!(heartbeats > 0, "no member spoke KIP-848");
    eprintln!(
        "{} KIP-848 group seeds: {processed} processed, {heartbeats} heartbeats",
        reports.len()
    );
}
