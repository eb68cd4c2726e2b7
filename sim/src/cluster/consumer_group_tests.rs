use std::time::Duration;

use proptest::prelude::*;

use super::*;

const SESSION: Duration = Duration::from_secs(2);

fn t(ms: u64) -> Timestamp {
    Timestamp::from_nanos(ms * 1_000_000)
}

fn topics() -> BTreeMap<String, i32> {
    BTreeMap::from([("t".to_owned(), 4)])
}

fn tps(ps: &[i32]) -> BTreeSet<TopicPartition> {
    ps.iter().map(|&p| ("t".to_owned(), p)).collect()
}

fn beat(
    g: &mut ConsumerGroup,
    now: Timestamp,
    id: &str,
    epoch: i32,
    owned: Option<BTreeSet<TopicPartition>>,
) -> Result<HeartbeatAnswer, ErrorCode> {
    let subscription = (epoch == JOIN_EPOCH).then(|| vec!["t".to_owned()]);
    let args = HeartbeatArgs {
        member_id: id.to_owned(),
        epoch,
        instance_id: None,
        subscription,
        owned,
    };
    g.heartbeat(now, args, &topics(), SESSION, String::new, false)
}

#[test]
fn a_partition_moves_only_after_its_owner_released_it() {
    let mut g = ConsumerGroup::default();
    let a = beat(&mut g, t(0), "a", 0, Some(tps(&[]))).unwrap();
    assert_eq!(a.assigned, Some(tps(&[0, 1, 2, 3])));
    let ea = a.epoch;
    beat(&mut g, t(1), "a", ea, Some(tps(&[0, 1, 2, 3]))).unwrap();
    // b joins: its target is half, but a still owns everything.
    let b = beat(&mut g, t(2), "b", 0, Some(tps(&[]))).unwrap();
    assert_eq!(b.assigned, Some(tps(&[])));
    // a is told to revoke, and keeps its epoch until it did.
    let a2 = beat(&mut g, t(3), "a", ea, None).unwrap();
    assert_eq!(a2.epoch, ea);
    let kept = a2.assigned.unwrap();
    assert_eq!(kept.len(), 2);
    // b still gets nothing a claims.
    let b2 = beat(&mut g, t(4), "b", b.epoch, None).unwrap();
    assert_eq!(b2.assigned, Some(tps(&[])));
    // a acknowledges: it moves to the group epoch, b gets the rest.
    let a3 = beat(&mut g, t(5), "a", ea, Some(kept.clone())).unwrap();
    assert_eq!(a3.epoch, g.epoch());
    let b3 = beat(&mut g, t(6), "b", b.epoch, None).unwrap();
    let got = b3.assigned.unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.is_disjoint(&kept));
}

#[test]
fn a_stale_epoch_is_fenced_and_an_unknown_member_is_told_so() {
    let mut g = ConsumerGroup::default();
    let a = beat(&mut g, t(0), "a", 0, Some(tps(&[]))).unwrap();
    assert_eq!(
        beat(&mut g, t(1), "a", a.epoch + 5, None),
        Err(ErrorCode::FencedMemberEpoch)
    );
    assert_eq!(
        beat(&mut g, t(1), "zz", 3, None),
        Err(ErrorCode::UnknownMemberId)
    );
    assert_eq!(
        g.check_commit("a", a.epoch + 1),
        Err(ErrorCode::StaleMemberEpoch)
    );
    assert_eq!(g.check_commit("a", a.epoch), Ok(()));
    assert_eq!(g.check_commit("zz", 1), Err(ErrorCode::UnknownMemberId));
}

#[test]
fn a_silent_member_expires_and_its_partitions_go_to_the_others() {
    let mut g = ConsumerGroup::default();
    let a = beat(&mut g, t(0), "a", 0, Some(tps(&[]))).unwrap();
    beat(&mut g, t(1), "a", a.epoch, a.assigned.clone()).unwrap();
    let b = beat(&mut g, t(1000), "b", 0, Some(tps(&[]))).unwrap();
    g.expire(t(2500), &topics());
    assert!(g.member("a").is_none());
    let b2 = beat(&mut g, t(2600), "b", b.epoch, None).unwrap();
    assert_eq!(b2.assigned, Some(tps(&[0, 1, 2, 3])));
}

#[test]
fn a_static_leave_keeps_the_assignment_for_the_next_incarnation() {
    let mut g = ConsumerGroup::default();
    let join = |id: &str| HeartbeatArgs {
        member_id: id.to_owned(),
        epoch: 0,
        instance_id: Some("i".into()),
        subscription: Some(vec!["t".into()]),
        owned: Some(tps(&[])),
    };
    let a = g
        .heartbeat(t(0), join("a"), &topics(), SESSION, String::new, false)
        .unwrap();
    // A second incarnation while the first has not left is refused.
    assert_eq!(
        g.heartbeat(t(1), join("a2"), &topics(), SESSION, String::new, false),
        Err(ErrorCode::UnreleasedInstanceId)
    );
    let left = HeartbeatArgs {
        member_id: "a".into(),
        epoch: STATIC_LEAVE_EPOCH,
        instance_id: Some("i".into()),
        ..Default::default()
    };
    g.heartbeat(t(2), left, &topics(), SESSION, String::new, false)
        .unwrap();
    assert!(g.member("a").is_none());
    let a2 = g
        .heartbeat(t(3), join("a2"), &topics(), SESSION, String::new, false)
        .unwrap();
    assert_eq!(a2.assigned, a.assigned);
}

proptest! {
    /// One owner: whatever order members heartbeat, join, leave and
    /// acknowledge in, no partition is assigned to one member while
    /// another is assigned it or claims it.
    #[test]
    fn no_partition_is_given_while_another_member_holds_it(
        steps in prop::collection::vec((0usize..4, 0u8..4), 1..80)
    ) {
        let mut g = ConsumerGroup::default();
        let ids = ["a", "b", "c", "d"];
        // What each member owns, as a well-behaved client would: what it
        // was last assigned.
        let mut owns: BTreeMap<&str, (i32, BTreeSet<TopicPartition>)> = BTreeMap::new();
        for (i, (who, what)) in steps.into_iter().enumerate() {
            let id = ids[who];
            let now = t(i as u64);
            let r = match (owns.get(id).cloned(), what) {
                (None, _) => beat(&mut g, now, id, 0, Some(tps(&[]))),
                (Some(_), 0) => {
                    owns.remove(id);
                    beat(&mut g, now, id, LEAVE_EPOCH, None).map(|_| HeartbeatAnswer {
                        member_id: id.into(), epoch: -1, assigned: None,
                    })
                }
                (Some((e, o)), _) => beat(&mut g, now, id, e, Some(o)),
            };
            if let Ok(HeartbeatAnswer { epoch, assigned: Some(a), .. }) = r {
                owns.insert(id, (epoch, a));
            }
            for m in g.members() {
                for n in g.members() {
                    if m.id() != n.id() {
                        prop_assert!(m.assigned().is_disjoint(n.assigned()));
                    }
                }
            }
        }
    }
}
