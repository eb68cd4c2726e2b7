//! The member against a scripted coordinator: each test takes the
//! requests the member wants, answers them as a broker would (or with the
//! error under test), and checks what the member tells its client.

use std::sync::Arc;

use super::*;
use crate::group::balancer::{
    Balancer, CooperativeStickyBalancer, MemberAssignment, RangeBalancer,
};
use crate::protocol::messages::find_coordinator_response::Coordinator as WireCoordinator;
use crate::protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use crate::protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use crate::protocol::messages::{HeartbeatResponse, LeaveGroupResponse};

pub(super) struct Script {
    pub m: Member,
    pub now: Timestamp,
    pub outs: Vec<GroupOutput>,
}

pub(super) fn config() -> GroupConfig {
    GroupConfig::new("g")
}

impl Script {
    fn new(config: GroupConfig) -> Self {
        let mut m = Member::new(config, StartOffset::Earliest, Backoff::default(), 7);
        let now = Timestamp::from_nanos(1_000_000_000);
        m.subscribe(now, ["t".to_string()]);
        Script {
            m,
            now,
            outs: Vec::new(),
        }
    }

    /// The next request, at the highest version the member speaks.
    fn next(&mut self) -> Option<(GroupRequest, GroupInFlight)> {
        self.m.next_target(self.now)?;
        let o = self.m.build_request(self.now, &mut |_, cap| Some(cap));
        self.collect();
        o.map(|o| (o.request, o.in_flight))
    }

    fn expect(&mut self) -> (GroupRequest, GroupInFlight) {
        self.next().expect("a request is due")
    }

    fn answer(&mut self, f: GroupInFlight, r: GroupResponse) {
        self.m.on_response(self.now, f, Some(r));
        self.collect();
    }

    fn lose(&mut self, f: GroupInFlight) {
        self.m.on_response(self.now, f, None);
        self.collect();
    }

    fn wait(&mut self, d: Duration) {
        self.now = self.now + d;
        self.m.handle_timeout(self.now);
        self.collect();
    }

    /// Jumps to the member's next deadline.
    fn wait_for_timer(&mut self) {
        let t = self.m.poll_timeout(self.now).expect("a deadline");
        self.wait(t.saturating_duration_since(self.now));
    }

    fn collect(&mut self) {
        while let Some(o) = self.m.poll_output() {
            self.outs.push(o);
        }
    }

    fn take(&mut self) -> Vec<GroupOutput> {
        std::mem::take(&mut self.outs)
    }

    fn find(&mut self) {
        let (req, f) = self.expect();
        assert!(matches!(req, GroupRequest::FindCoordinator(ref r) if r.coordinator_keys == ["g"]));
        self.answer(f, found(1));
    }

    /// Joins as a follower and syncs `assigned`.
    fn join_follower(&mut self, generation: i32, assigned: &[(&str, &[i32])]) {
        let (req, f) = self.expect();
        let GroupRequest::JoinGroup(_) = req else {
            panic!("expected JoinGroup, got {req:?}")
        };
        self.answer(f, joined("m-1", "leader", generation, "cooperative-sticky"));
        self.sync(assigned);
    }

    fn sync(&mut self, assigned: &[(&str, &[i32])]) {
        let (req, f) = self.expect();
        assert!(matches!(req, GroupRequest::SyncGroup(_)), "{req:?}");
        self.answer(f, synced(assigned));
    }

    /// Answers an OffsetFetch with these committed offsets (-1: none).
    fn fetch_offsets(&mut self, committed: &[(&str, i32, i64)]) {
        let (req, f) = self.expect();
        let GroupRequest::OffsetFetch(r) = req else {
            panic!("expected OffsetFetch, got {req:?}")
        };
        assert!(r.require_stable, "v7+ asks for stable offsets (KIP-447)");
        let topics = r
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| OffsetFetchResponseTopic {
                partitions: t
                    .partition_indexes
                    .iter()
                    .map(|&p| OffsetFetchResponsePartition {
                        partition_index: p,
                        committed_offset: committed
                            .iter()
                            .find(|c| c.0 == t.name && c.1 == p)
                            .map_or(-1, |c| c.2),
                        committed_leader_epoch: 0,
                        ..Default::default()
                    })
                    .collect(),
                name: t.name,
                ..Default::default()
            })
            .collect();
        self.answer(
            f,
            GroupResponse::OffsetFetch(OffsetFetchResponse {
                topics,
                ..Default::default()
            }),
        );
    }

    fn stable_with(&mut self, assigned: &[(&str, &[i32])]) {
        self.find();
        self.join_follower(1, assigned);
        self.fetch_offsets(&[]);
    }

    /// Answers the next request, which must be a commit, with `error` for
    /// every partition; returns what it asked to commit.
    fn answer_commit(&mut self, error: ErrorCode) -> OffsetCommitRequest {
        let (req, f) = self.expect();
        let GroupRequest::OffsetCommit(r) = req else {
            panic!("expected OffsetCommit, got {req:?}")
        };
        self.answer(f, commit_answer(&r, error));
        r
    }
}

pub(super) fn found(node: i32) -> GroupResponse {
    GroupResponse::FindCoordinator(FindCoordinatorResponse {
        coordinators: vec![WireCoordinator {
            key: "g".into(),
            node_id: node,
            host: "broker".into(),
            port: 9000 + node,
            ..Default::default()
        }],
        ..Default::default()
    })
}

pub(super) fn joined(member: &str, leader: &str, generation: i32, protocol: &str) -> GroupResponse {
    GroupResponse::JoinGroup(JoinGroupResponse {
        generation_id: generation,
        protocol_name: Some(protocol.into()),
        leader: leader.into(),
        member_id: member.into(),
        ..Default::default()
    })
}

pub(super) fn join_error(e: ErrorCode, member: &str) -> GroupResponse {
    GroupResponse::JoinGroup(JoinGroupResponse {
        error_code: e.code(),
        generation_id: -1,
        member_id: member.into(),
        ..Default::default()
    })
}

pub(super) fn by_topic(assigned: &[(&str, &[i32])]) -> PartitionsByTopic {
    assigned
        .iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(t, ps)| (t.to_string(), ps.to_vec()))
        .collect()
}

pub(super) fn synced(assigned: &[(&str, &[i32])]) -> GroupResponse {
    let a = MemberAssignment {
        partitions: by_topic(assigned),
        user_data: None,
    };
    GroupResponse::SyncGroup(SyncGroupResponse {
        assignment: protocol::encode_assignment(&a).unwrap(),
        ..Default::default()
    })
}

pub(super) fn sync_error(e: ErrorCode) -> GroupResponse {
    GroupResponse::SyncGroup(SyncGroupResponse {
        error_code: e.code(),
        ..Default::default()
    })
}

pub(super) fn heartbeat(e: ErrorCode) -> GroupResponse {
    GroupResponse::Heartbeat(HeartbeatResponse {
        error_code: e.code(),
        ..Default::default()
    })
}

pub(super) fn commit_answer(r: &OffsetCommitRequest, e: ErrorCode) -> GroupResponse {
    GroupResponse::OffsetCommit(OffsetCommitResponse {
        topics: r
            .topics
            .iter()
            .map(|t| OffsetCommitResponseTopic {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| OffsetCommitResponsePartition {
                        partition_index: p.partition_index,
                        error_code: e.code(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

pub(super) fn committed_in(r: &OffsetCommitRequest) -> Vec<(String, i32, i64)> {
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.clone(), p.partition_index, p.committed_offset))
        })
        .collect()
}

pub(super) fn at(offset: i64) -> EpochOffset {
    EpochOffset {
        offset,
        leader_epoch: 0,
    }
}

fn events(outs: &[GroupOutput]) -> Vec<&GroupEvent> {
    outs.iter()
        .filter_map(|o| match o {
            GroupOutput::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn revoked_outputs(outs: &[GroupOutput]) -> Vec<PartitionsByTopic> {
    outs.iter()
        .filter_map(|o| match o {
            GroupOutput::Revoke(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_coordinator_is_found_again_after_not_coordinator_and_lost_requests() {
    let mut s = Script::new(config());
    let (_, f) = s.expect();
    s.answer(
        f,
        GroupResponse::FindCoordinator(FindCoordinatorResponse {
            coordinators: vec![WireCoordinator {
                key: "g".into(),
                error_code: ErrorCode::CoordinatorNotAvailable.code(),
                node_id: -1,
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    assert!(s.next().is_none(), "retries only after a backoff");
    s.wait_for_timer();
    s.find();
    assert_eq!(
        s.m.coordinator().map(|c| c.address()),
        Some("broker:9001".into())
    );
    let (req, f) = s.expect();
    assert!(matches!(req, GroupRequest::JoinGroup(_)));
    s.answer(f, join_error(ErrorCode::NotCoordinator, ""));
    assert!(
        s.m.coordinator().is_none(),
        "NOT_COORDINATOR: find it again"
    );
    s.wait_for_timer();
    s.find();
    let (_, f) = s.expect();
    s.lose(f);
    assert!(s.m.coordinator().is_none(), "a lost request: find it again");
}

#[test]
fn join_offers_the_configured_balancers_and_franz_go_timeouts() {
    let mut c = config();
    c.balancers = vec![Arc::new(CooperativeStickyBalancer), Arc::new(RangeBalancer)];
    let mut s = Script::new(c);
    s.find();
    let (req, _) = s.expect();
    let GroupRequest::JoinGroup(j) = req else {
        panic!()
    };
    assert_eq!(j.group_id, "g");
    assert_eq!(j.protocol_type, "consumer");
    assert_eq!(j.session_timeout_ms, 45_000);
    assert_eq!(j.rebalance_timeout_ms, 60_000);
    let names: Vec<&str> = j.protocols.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["cooperative-sticky", "range"]);
    let sub = protocol::decode_subscription(j.protocols[0].metadata.clone()).unwrap();
    assert_eq!(sub.topics, ["t"]);
}

#[test]
fn member_id_required_rejoins_at_once_with_the_given_id() {
    let mut s = Script::new(config());
    s.find();
    let (_, f) = s.expect();
    s.answer(f, join_error(ErrorCode::MemberIdRequired, "m-given"));
    let (req, _) = s.expect();
    let GroupRequest::JoinGroup(j) = req else {
        panic!("KIP-394: join again at once, got {req:?}")
    };
    assert_eq!(j.member_id, "m-given");
}

#[test]
fn a_follower_syncs_empty_then_starts_at_committed_offsets_or_the_reset_offset() {
    let mut s = Script::new(config());
    s.find();
    let (_, f) = s.expect();
    s.answer(f, joined("m-1", "m-0", 4, "cooperative-sticky"));
    let (req, f) = s.expect();
    let GroupRequest::SyncGroup(r) = req else {
        panic!()
    };
    assert!(r.assignments.is_empty(), "followers send no plan");
    assert_eq!((r.generation_id, r.member_id.as_str()), (4, "m-1"));
    s.answer(f, synced(&[("t", &[0, 1])]));
    assert!(
        s.take()
            .iter()
            .all(|o| !matches!(o, GroupOutput::Assign(_))),
        "not before the offsets"
    );
    s.fetch_offsets(&[("t", 1, 42)]);
    let outs = s.take();
    let expected: BTreeMap<String, BTreeMap<i32, StartOffset>> = [(
        "t".to_string(),
        [
            (0, StartOffset::Earliest),
            // The committed epoch goes along, for the consumer to validate.
            (
                1,
                StartOffset::AtEpoch {
                    offset: 42,
                    leader_epoch: 0,
                },
            ),
        ]
        .into(),
    )]
    .into();
    assert_eq!(outs[0], GroupOutput::Assign(expected));
    assert_eq!(
        outs[1],
        GroupOutput::Event(GroupEvent::PartitionsAssigned(by_topic(&[("t", &[0, 1])])))
    );
}

#[test]
fn an_unstable_offset_fetch_is_retried_after_a_backoff() {
    let mut s = Script::new(config());
    s.find();
    s.join_follower(1, &[("t", &[0])]);
    let (_, f) = s.expect();
    s.answer(
        f,
        GroupResponse::OffsetFetch(OffsetFetchResponse {
            topics: vec![OffsetFetchResponseTopic {
                name: "t".into(),
                partitions: vec![OffsetFetchResponsePartition {
                    partition_index: 0,
                    committed_offset: -1,
                    error_code: ErrorCode::UnstableOffsetCommit.code(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    assert!(s
        .take()
        .iter()
        .all(|o| !matches!(o, GroupOutput::Assign(_))));
    s.wait_for_timer();
    s.fetch_offsets(&[("t", 0, 9)]);
    assert!(s.take().contains(&GroupOutput::Assign(
        [(
            "t".to_string(),
            [(
                0,
                StartOffset::AtEpoch {
                    offset: 9,
                    leader_epoch: 0
                }
            )]
            .into()
        )]
        .into()
    )));
}

#[test]
fn the_leader_balances_every_member_and_syncs_their_assignments() {
    let mut s = Script::new(config());
    s.find();
    let (_, f) = s.expect();
    let topics = ["t".to_string()];
    let meta = CooperativeStickyBalancer
        .member_metadata(&JoinSubscription {
            topics: &topics,
            ..Default::default()
        })
        .unwrap();
    let member = |id: &str| JoinGroupResponseMember {
        member_id: id.into(),
        metadata: meta.clone(),
        ..Default::default()
    };
    s.answer(
        f,
        GroupResponse::JoinGroup(JoinGroupResponse {
            generation_id: 1,
            protocol_name: Some("cooperative-sticky".into()),
            leader: "m-1".into(),
            member_id: "m-1".into(),
            members: vec![member("m-1"), member("m-2")],
            ..Default::default()
        }),
    );
    assert!(s.next().is_none(), "the leader waits for the topic layout");
    assert_eq!(s.m.layout_wanted(), Some(["t".to_string()].into()));
    s.m.provide_layout(s.now, &TopicLayout::new().with_topic("t", 4));
    let (req, f) = s.expect();
    let GroupRequest::SyncGroup(r) = req else {
        panic!()
    };
    assert_eq!(r.protocol_name.as_deref(), Some("cooperative-sticky"));
    let mut total = 0;
    for a in &r.assignments {
        let got = protocol::decode_assignment(a.assignment.clone()).unwrap();
        assert_eq!(got.partition_count(), 2, "balanced: {}", a.member_id);
        total += got.partition_count();
    }
    assert_eq!((r.assignments.len(), total), (2, 4));
    let mine = r.assignments.iter().find(|a| a.member_id == "m-1").unwrap();
    s.answer(
        f,
        GroupResponse::SyncGroup(SyncGroupResponse {
            assignment: mine.assignment.clone(),
            ..Default::default()
        }),
    );
    assert_eq!(count(s.m.owned()), 2);
}

/// A topic another member subscribes to, created after the leader
/// balanced (or a topic grown since), is assigned: the leader watches the
/// layout it balanced with and rejoins when metadata shows another one, as
/// Java's leader does. Unchanged metadata changes nothing.
#[test]
fn the_leader_rejoins_when_a_members_topic_is_created_or_grows_after_it_balanced() {
    let mut s = Script::new(config());
    s.find();
    let (_, f) = s.expect();
    let sub = |topics: &[&str]| {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        CooperativeStickyBalancer
            .member_metadata(&JoinSubscription {
                topics: &topics,
                ..Default::default()
            })
            .unwrap()
    };
    s.answer(
        f,
        GroupResponse::JoinGroup(JoinGroupResponse {
            generation_id: 1,
            protocol_name: Some("cooperative-sticky".into()),
            leader: "m-1".into(),
            member_id: "m-1".into(),
            members: vec![
                JoinGroupResponseMember {
                    member_id: "m-1".into(),
                    metadata: sub(&["t"]),
                    ..Default::default()
                },
                JoinGroupResponseMember {
                    member_id: "m-2".into(),
                    metadata: sub(&["t", "later"]),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
    );
    // `later` does not exist yet: balanced as zero partitions.
    let at_balance = TopicLayout::new().with_topic("t", 2);
    s.m.provide_layout(s.now, &at_balance);
    let (req, f) = s.expect();
    let GroupRequest::SyncGroup(r) = req else {
        panic!("{req:?}")
    };
    let mine = r.assignments.iter().find(|a| a.member_id == "m-1").unwrap();
    s.answer(
        f,
        GroupResponse::SyncGroup(SyncGroupResponse {
            assignment: mine.assignment.clone(),
            ..Default::default()
        }),
    );
    while s.next().is_some() {}
    assert_eq!(
        s.m.balanced_topics().cloned().collect::<Vec<_>>(),
        ["later", "t"],
        "the leader keeps every member's topics fresh"
    );
    s.m.check_layout(s.now, &at_balance);
    assert!(s.next().is_none(), "nothing changed: no rejoin");
    s.m.check_layout(s.now, &at_balance.clone().with_topic("later", 3));
    let (req, _) = s.expect();
    assert!(
        matches!(req, GroupRequest::JoinGroup(_)),
        "a created topic makes the leader rejoin, got {req:?}"
    );
}

#[test]
fn a_follower_does_not_watch_the_layout() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    assert_eq!(s.m.balanced_topics().count(), 0);
    s.m.check_layout(s.now, &TopicLayout::new().with_topic("t", 8));
    assert!(s.next().is_none(), "only the leader rebalances on metadata");
}

#[test]
fn undecodable_member_metadata_fails_the_round_and_rejoins() {
    let mut s = Script::new(config());
    s.find();
    let (_, f) = s.expect();
    s.answer(
        f,
        GroupResponse::JoinGroup(JoinGroupResponse {
            generation_id: 1,
            protocol_name: Some("cooperative-sticky".into()),
            leader: "m-1".into(),
            member_id: "m-1".into(),
            members: vec![JoinGroupResponseMember {
                member_id: "m-1".into(),
                metadata: bytes::Bytes::from_static(&[0, 0, 0xff]),
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    s.m.provide_layout(s.now, &TopicLayout::new().with_topic("t", 1));
    s.collect();
    assert!(matches!(
        events(&s.take())[..],
        [GroupEvent::Error(GroupError::Balance(_))]
    ));
    assert!(s.next().is_none(), "rejoins after a backoff");
    s.wait_for_timer();
    assert!(matches!(s.expect().0, GroupRequest::JoinGroup(_)));
}

#[test]
fn a_static_leader_told_to_skip_assignment_does_not_balance() {
    let mut c = config();
    c.instance_id = Some("i-1".into());
    let mut s = Script::new(c);
    s.find();
    let (req, f) = s.expect();
    let GroupRequest::JoinGroup(j) = req else {
        panic!()
    };
    assert_eq!(j.group_instance_id.as_deref(), Some("i-1"));
    s.answer(
        f,
        GroupResponse::JoinGroup(JoinGroupResponse {
            generation_id: 3,
            protocol_name: Some("cooperative-sticky".into()),
            leader: "m-1".into(),
            member_id: "m-1".into(),
            skip_assignment: true,
            ..Default::default()
        }),
    );
    assert_eq!(s.m.layout_wanted(), None, "KIP-814: no balancing");
    let (req, _) = s.expect();
    let GroupRequest::SyncGroup(r) = req else {
        panic!("{req:?}")
    };
    assert!(r.assignments.is_empty());
    assert_eq!(r.group_instance_id.as_deref(), Some("i-1"));
}

#[test]
fn a_subscription_widened_while_a_join_is_in_flight_rejoins_after_the_sync() {
    let mut s = Script::new(config());
    s.find();
    let (req, f) = s.expect();
    assert!(matches!(req, GroupRequest::JoinGroup(_)), "{req:?}");
    // The application subscribes to more while the JoinGroup (carrying
    // only `t`) waits at the coordinator.
    s.m.subscribe(s.now, ["u".to_string()]);
    s.answer(f, joined("m-1", "leader", 1, "cooperative-sticky"));
    s.sync(&[("t", &[0])]);
    // The leader balanced the old subscription: the member joins again
    // (keeping `t`, cooperative) so that the group sees `u`.
    let (req, _) = s.expect();
    let GroupRequest::JoinGroup(j) = req else {
        panic!("expected a JoinGroup with the wider subscription, got {req:?}")
    };
    let sub =
        crate::group::balancer::protocol::decode_subscription(j.protocols[0].metadata.clone())
            .expect("a subscription");
    assert_eq!(sub.topics, ["t", "u"]);
}

#[test]
fn a_stable_member_heartbeats_every_interval() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    assert!(s.next().is_none());
    let before = s.now;
    s.wait_for_timer();
    assert_eq!(
        s.now.saturating_duration_since(before),
        Duration::from_secs(3)
    );
    let (req, f) = s.expect();
    assert!(
        matches!(req, GroupRequest::Heartbeat(ref h) if h.generation_id == 1 && h.member_id == "m-1")
    );
    s.answer(f, heartbeat(ErrorCode::None));
    assert!(s.next().is_none());
}

/// The group-transact session's check before a commit: a heartbeat at
/// once (not at the next interval), its answer handed over once; a member
/// not stable fails it without asking.
#[test]
fn a_membership_check_heartbeats_at_once_and_reports_the_answer() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    assert!(s.next().is_none());
    s.m.check_membership(s.now);
    let (req, f) = s.expect();
    assert!(matches!(req, GroupRequest::Heartbeat(_)), "{req:?}");
    assert_eq!(s.m.take_membership_check(), None, "not answered yet");
    s.answer(f, heartbeat(ErrorCode::RebalanceInProgress));
    assert_eq!(
        s.m.take_membership_check(),
        Some(Err(ErrorCode::RebalanceInProgress))
    );
    assert_eq!(s.m.take_membership_check(), None, "handed over once");
    // Now rejoining: a new check fails at once.
    s.m.check_membership(s.now);
    assert_eq!(
        s.m.take_membership_check(),
        Some(Err(ErrorCode::RebalanceInProgress))
    );
}

#[test]
fn a_membership_check_passes_on_a_clean_heartbeat() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    s.m.check_membership(s.now);
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::None));
    assert_eq!(s.m.take_membership_check(), Some(Ok(())));
}

#[test]
fn cooperative_rebalance_revokes_only_what_moved_commits_it_first_and_rejoins_at_once() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0, 1, 2])]);
    s.m.on_polled([("t", 0, at(10)), ("t", 2, at(30))]);
    s.wait(Duration::from_secs(3));
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::RebalanceInProgress));
    assert!(
        revoked_outputs(&s.take()).is_empty(),
        "cooperative: keep everything while joining"
    );
    let (req, f) = s.expect();
    let GroupRequest::JoinGroup(j) = req else {
        panic!()
    };
    let sub = protocol::decode_subscription(j.protocols[0].metadata.clone()).unwrap();
    assert_eq!(sub.owned_partitions, by_topic(&[("t", &[0, 1, 2])]));
    s.answer(f, joined("m-1", "leader", 2, "cooperative-sticky"));
    s.sync(&[("t", &[0, 1])]);
    let outs = s.take();
    assert_eq!(
        revoked_outputs(&outs),
        [by_topic(&[("t", &[2])])],
        "only what moved"
    );
    assert!(
        events(&outs).is_empty(),
        "the revoke completes after its commit"
    );
    let r = s.answer_commit(ErrorCode::None);
    assert_eq!(r.generation_id_or_member_epoch, 2);
    assert_eq!(
        committed_in(&r),
        [("t".to_string(), 0, 10), ("t".to_string(), 2, 30)],
        "everything polled, the revoked partition included"
    );
    let outs = s.take();
    let evs = events(&outs);
    assert!(matches!(evs[0], GroupEvent::CommitFinished(c) if c.reason == CommitReason::Revoke));
    assert_eq!(
        evs[1],
        &GroupEvent::PartitionsRevoked(by_topic(&[("t", &[2])]))
    );
    assert_eq!(s.m.owned(), &by_topic(&[("t", &[0, 1])]));
    let (req, _) = s.expect();
    assert!(
        matches!(req, GroupRequest::JoinGroup(_)),
        "KIP-429: rejoin at once, got {req:?}"
    );
}

#[test]
fn eager_rebalance_revokes_everything_before_rejoining() {
    let mut c = config();
    c.balancers = vec![Arc::new(RangeBalancer)];
    let mut s = Script::new(c);
    s.find();
    let (_, f) = s.expect();
    s.answer(f, joined("m-1", "leader", 1, "range"));
    s.sync(&[("t", &[0, 1])]);
    s.fetch_offsets(&[]);
    s.m.on_polled([("t", 1, at(5))]);
    s.take();
    s.wait(Duration::from_secs(3));
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::RebalanceInProgress));
    assert_eq!(revoked_outputs(&s.take()), [by_topic(&[("t", &[0, 1])])]);
    let r = s.answer_commit(ErrorCode::None);
    assert_eq!(committed_in(&r), [("t".to_string(), 1, 5)]);
    assert!(s.m.owned().is_empty(), "eager: nothing owned while joining");
    let (req, _) = s.expect();
    let GroupRequest::JoinGroup(j) = req else {
        panic!()
    };
    let sub = protocol::decode_subscription(j.protocols[0].metadata.clone()).unwrap();
    assert!(sub.owned_partitions.is_empty());
}

#[test]
fn an_eager_member_offering_cooperative_sticky_reports_nothing_owned_to_it_after_its_revoke() {
    let mut c = config();
    c.balancers = vec![Arc::new(CooperativeStickyBalancer), Arc::new(RangeBalancer)];
    let mut s = Script::new(c);
    s.find();
    let (_, f) = s.expect();
    s.answer(f, joined("m-1", "leader", 1, "range"));
    s.sync(&[("t", &[0, 1])]);
    s.fetch_offsets(&[]);
    s.m.on_polled([("t", 1, at(5))]);
    s.take();
    s.wait(Duration::from_secs(3));
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::RebalanceInProgress));
    assert_eq!(revoked_outputs(&s.take()), [by_topic(&[("t", &[0, 1])])]);
    s.answer_commit(ErrorCode::None);
    let (req, _) = s.expect();
    let GroupRequest::JoinGroup(j) = req else {
        panic!("expected JoinGroup, got {req:?}")
    };
    assert_eq!(j.protocols[0].name, "cooperative-sticky");
    // Reported as owned, the revoked partitions would be withheld by a
    // cooperative leader from everyone until this member gave them up
    // again, which it never does: it has nothing left to revoke.
    let sub = protocol::decode_subscription(j.protocols[0].metadata.clone()).unwrap();
    assert!(sub.owned_partitions.is_empty(), "{sub:?}");
}

#[test]
fn unknown_member_loses_partitions_uncommitted_and_forgets_the_id() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    s.m.on_polled([("t", 0, at(10))]);
    s.take();
    s.wait(Duration::from_secs(3));
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::UnknownMemberId));
    let outs = s.take();
    assert_eq!(revoked_outputs(&outs), [by_topic(&[("t", &[0])])]);
    assert_eq!(
        events(&outs),
        [&GroupEvent::PartitionsLost(by_topic(&[("t", &[0])]))]
    );
    assert_eq!(s.m.member_id(), "");
    let (req, _) = s.expect();
    assert!(
        matches!(req, GroupRequest::JoinGroup(ref j) if j.member_id.is_empty()),
        "no commit of lost partitions: {req:?}"
    );
}

#[test]
fn illegal_generation_loses_partitions_and_keeps_the_member_id() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    s.wait(Duration::from_secs(3));
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::IllegalGeneration));
    assert!(events(&s.take()).contains(&&GroupEvent::PartitionsLost(by_topic(&[("t", &[0])]))));
    assert_eq!((s.m.member_id(), s.m.generation()), ("m-1", NO_GENERATION));
    assert!(matches!(s.expect().0, GroupRequest::JoinGroup(ref j) if j.member_id == "m-1"));
}

#[test]
fn fenced_instance_id_is_fatal_and_reported() {
    let mut c = config();
    c.instance_id = Some("i-1".into());
    let mut s = Script::new(c);
    s.stable_with(&[("t", &[0])]);
    let id = s.m.commit_uncommitted();
    s.wait(Duration::from_secs(3));
    s.take();
    let (req, f) = s.expect();
    assert!(matches!(req, GroupRequest::Heartbeat(_)), "{req:?}");
    s.answer(f, heartbeat(ErrorCode::FencedInstanceId));
    let outs = s.take();
    let evs = events(&outs);
    assert!(evs.contains(&&GroupEvent::PartitionsLost(by_topic(&[("t", &[0])]))));
    assert!(evs
        .iter()
        .any(|e| matches!(e, GroupEvent::CommitFinished(c) if c.id == id)));
    let err = evs
        .iter()
        .find_map(|e| match e {
            GroupEvent::Error(e) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert!(err.is_fatal());
    assert!(err.to_string().contains("i-1"), "{err}");
    assert!(s.m.is_done());
    assert!(s.next().is_none());
}

#[test]
fn a_group_gone_eager_makes_a_cooperative_member_give_up_everything() {
    let mut c = config();
    c.balancers = vec![Arc::new(CooperativeStickyBalancer), Arc::new(RangeBalancer)];
    let mut s = Script::new(c);
    s.stable_with(&[("t", &[0, 1])]);
    s.take();
    s.wait(Duration::from_secs(3));
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::RebalanceInProgress));
    let (_, f) = s.expect();
    // An eager-only member joined: the coordinator picks range.
    s.answer(f, joined("m-1", "leader", 2, "range"));
    let outs = s.take();
    assert_eq!(revoked_outputs(&outs), [by_topic(&[("t", &[0, 1])])]);
    assert!(
        s.m.owned().is_empty(),
        "nothing owned while an eager group syncs"
    );
    s.sync(&[("t", &[1])]);
    s.fetch_offsets(&[]);
    assert_eq!(s.m.owned(), &by_topic(&[("t", &[1])]));
    // From now on it rebalances eagerly.
    s.take();
    s.wait(Duration::from_secs(3));
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::RebalanceInProgress));
    assert_eq!(revoked_outputs(&s.take()), [by_topic(&[("t", &[1])])]);
}

#[test]
fn no_heartbeat_answer_within_the_session_timeout_loses_the_partitions() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    s.take();
    // Heartbeats go out but are never answered; their connection dies.
    for _ in 0..20 {
        s.wait(Duration::from_secs(3));
        while let Some((req, f)) = s.next() {
            match req {
                GroupRequest::FindCoordinator(_) => {}
                _ => s.lose(f),
            }
        }
        if events(&s.outs)
            .iter()
            .any(|e| matches!(e, GroupEvent::PartitionsLost(_)))
        {
            break;
        }
    }
    assert!(
        events(&s.outs).contains(&&GroupEvent::PartitionsLost(by_topic(&[("t", &[0])]))),
        "{:?}",
        s.outs
    );
    assert!(s.m.owned().is_empty());
}

#[test]
fn a_dynamic_member_commits_then_leaves() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    s.m.on_polled([("t", 0, at(7))]);
    s.m.leave(s.now);
    let r = s.answer_commit(ErrorCode::None);
    assert_eq!(
        committed_in(&r),
        [("t".to_string(), 0, 7)],
        "the blocking commit on close"
    );
    let (req, f) = s.expect();
    let GroupRequest::LeaveGroup(l) = req else {
        panic!("{req:?}")
    };
    assert_eq!(l.members[0].member_id, "m-1");
    s.answer(f, GroupResponse::LeaveGroup(LeaveGroupResponse::default()));
    assert!(s.m.is_done());
}

#[test]
fn a_static_member_commits_and_sends_no_leave_group() {
    let mut c = config();
    c.instance_id = Some("i-1".into());
    let mut s = Script::new(c);
    s.stable_with(&[("t", &[0])]);
    s.m.on_polled([("t", 0, at(7))]);
    s.m.leave(s.now);
    let r = s.answer_commit(ErrorCode::None);
    assert_eq!(r.group_instance_id.as_deref(), Some("i-1"));
    assert!(s.m.is_done());
    assert!(s.next().is_none(), "KIP-345: no LeaveGroup");
}

#[test]
fn commits_wait_between_join_and_sync_and_cover_only_partitions_still_owned() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0, 1])]);
    s.m.on_polled([("t", 0, at(10)), ("t", 1, at(20))]);
    s.wait(Duration::from_secs(3));
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::RebalanceInProgress));
    let (_, join) = s.expect();
    let id = s.m.commit_uncommitted();
    assert!(s.next().is_none(), "no commit while joining");
    s.answer(join, joined("m-1", "leader", 2, "cooperative-sticky"));
    let (req, sync) = s.expect();
    assert!(
        matches!(req, GroupRequest::SyncGroup(_)),
        "no commit while syncing: {req:?}"
    );
    s.answer(sync, synced(&[("t", &[0])]));
    // The revoke's commit goes first, in the new generation.
    let r = s.answer_commit(ErrorCode::None);
    assert_eq!(r.generation_id_or_member_epoch, 2);
    s.take();
    // The manual commit finds everything committed already: nothing sent.
    while let Some((req, f)) = s.next() {
        match req {
            GroupRequest::OffsetCommit(r) => panic!("nothing left to commit: {r:?}"),
            GroupRequest::JoinGroup(_) => {
                s.answer(f, joined("m-1", "leader", 3, "cooperative-sticky"));
            }
            GroupRequest::SyncGroup(_) => s.answer(f, synced(&[("t", &[0])])),
            _ => s.lose(f),
        }
    }
    assert!(events(&s.outs).iter().any(
        |e| matches!(e, GroupEvent::CommitFinished(c) if c.id == id && c.committed.is_empty())
    ));
}

#[test]
fn auto_commit_commits_what_was_polled_before_the_latest_poll_every_five_seconds() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    s.m.on_polled([("t", 0, at(10))]);
    s.m.on_polled([("t", 0, at(20))]);
    let start = s.now;
    let mut commits = Vec::new();
    while s.now.saturating_duration_since(start) < Duration::from_secs(6) {
        s.wait_for_timer();
        while let Some((req, f)) = s.next() {
            match req {
                GroupRequest::Heartbeat(_) => s.answer(f, heartbeat(ErrorCode::None)),
                GroupRequest::OffsetCommit(r) => {
                    commits.push((s.now.saturating_duration_since(start), committed_in(&r)));
                    s.answer(f, commit_answer(&r, ErrorCode::None));
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(commits.len(), 1, "{commits:?}");
    assert!(commits[0].0 <= Duration::from_secs(5));
    assert_eq!(commits[0].1, [("t".to_string(), 0, 10)]);
}

#[test]
fn a_commit_refused_for_a_rebalance_is_reported_and_never_moves_backwards() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    s.m.on_polled([("t", 0, at(10))]);
    s.m.commit_uncommitted();
    s.answer_commit(ErrorCode::None);
    let back =
        s.m.commit_offsets([(("t".to_string(), 0), at(3))].into(), false);
    s.take();
    assert!(s.next().is_none(), "backwards: nothing sent");
    assert!(events(&s.outs).iter().any(
        |e| matches!(e, GroupEvent::CommitFinished(c) if c.id == back && c.committed.is_empty())
    ));
    s.m.commit_offsets([(("t".to_string(), 0), at(3))].into(), true);
    let r = s.answer_commit(ErrorCode::RebalanceInProgress);
    assert_eq!(
        committed_in(&r),
        [("t".to_string(), 0, 3)],
        "backwards when asked"
    );
    let outs = s.take();
    assert!(events(&outs).iter().any(|e| matches!(e, GroupEvent::CommitFinished(c) if c.failed.values().all(|e| *e == CommitError::Broker(ErrorCode::RebalanceInProgress)) && !c.failed.is_empty())));
    assert!(
        matches!(s.expect().0, GroupRequest::JoinGroup(_)),
        "and the member rejoins"
    );
}

#[test]
fn a_commit_answered_not_coordinator_is_sent_again_to_the_new_coordinator() {
    let mut s = Script::new(config());
    s.stable_with(&[("t", &[0])]);
    s.m.on_polled([("t", 0, at(10))]);
    let id = s.m.commit_uncommitted();
    let first = s.answer_commit(ErrorCode::NotCoordinator);
    assert!(s.m.coordinator().is_none());
    assert!(
        !events(&s.take())
            .iter()
            .any(|e| matches!(e, GroupEvent::CommitFinished(_))),
        "not finished: retried"
    );
    s.wait_for_timer();
    let (req, f) = s.expect();
    assert!(matches!(req, GroupRequest::FindCoordinator(_)), "{req:?}");
    s.answer(f, found(2));
    s.wait_for_timer();
    let mut again = None;
    while let Some((req, f)) = s.next() {
        match req {
            GroupRequest::OffsetCommit(r) => {
                s.answer(f, commit_answer(&r, ErrorCode::None));
                again = Some(r);
            }
            GroupRequest::Heartbeat(_) => s.answer(f, heartbeat(ErrorCode::None)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        committed_in(&again.expect("sent again")),
        committed_in(&first)
    );
    assert!(events(&s.take()).iter().any(
        |e| matches!(e, GroupEvent::CommitFinished(c) if c.id == id && c.committed.len() == 1)
    ));
}

#[test]
fn join_errors_are_reported_and_retried_with_backoff() {
    let mut s = Script::new(config());
    s.find();
    let (_, f) = s.expect();
    s.answer(f, join_error(ErrorCode::GroupAuthorizationFailed, ""));
    assert!(matches!(
        events(&s.take())[..],
        [GroupEvent::Error(GroupError::Broker {
            api: ApiKey::JoinGroup,
            error: ErrorCode::GroupAuthorizationFailed
        })]
    ));
    assert!(s.next().is_none());
    s.wait_for_timer();
    assert!(matches!(s.expect().0, GroupRequest::JoinGroup(_)));
}

#[test]
fn sync_rebalance_in_progress_rejoins() {
    let mut s = Script::new(config());
    s.find();
    let (_, f) = s.expect();
    s.answer(f, joined("m-1", "leader", 1, "cooperative-sticky"));
    let (_, f) = s.expect();
    s.answer(f, sync_error(ErrorCode::RebalanceInProgress));
    assert!(matches!(s.expect().0, GroupRequest::JoinGroup(_)));
}

#[test]
fn a_rebalance_waits_for_allow_after_a_poll_when_blocking_on_poll() {
    let mut c = config();
    c.block_rebalance_on_poll = true;
    c.balancers = vec![Arc::new(RangeBalancer)];
    let mut s = Script::new(c);
    s.find();
    let (_, f) = s.expect();
    s.answer(f, joined("m-1", "leader", 1, "range"));
    s.sync(&[("t", &[0])]);
    s.fetch_offsets(&[]);
    s.m.on_polled([("t", 0, at(4))]);
    s.take();
    s.wait(Duration::from_secs(3));
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::RebalanceInProgress));
    // The eager revoke commits what was polled, but does not complete.
    s.answer_commit(ErrorCode::None);
    assert!(
        !matches!(s.next(), Some((GroupRequest::JoinGroup(_), _))),
        "no rejoin while the poll is being processed"
    );
    assert_eq!(count(s.m.owned()), 1);
    s.m.allow_rebalance(s.now);
    s.m.handle_timeout(s.now);
    assert!(s.m.owned().is_empty());
    assert!(matches!(s.expect().0, GroupRequest::JoinGroup(_)));
}

#[test]
fn an_application_that_stops_polling_leaves_and_rejoins_at_its_next_poll() {
    let mut c = config();
    c.max_poll_interval = Some(Duration::from_secs(10));
    let mut s = Script::new(c);
    s.stable_with(&[("t", &[0])]);
    s.m.note_poll(s.now);
    s.m.on_polled([("t", 0, at(3))]);
    s.take();
    let mut left = false;
    for _ in 0..10 {
        s.wait(Duration::from_secs(3));
        while let Some((req, f)) = s.next() {
            match req {
                GroupRequest::Heartbeat(_) => s.answer(f, heartbeat(ErrorCode::None)),
                GroupRequest::LeaveGroup(_) => {
                    s.answer(f, GroupResponse::LeaveGroup(LeaveGroupResponse::default()));
                    left = true;
                }
                other => panic!("nothing else, and no commit for a stuck application: {other:?}"),
            }
        }
    }
    assert!(left, "a dynamic member says goodbye");
    let outs = s.take();
    let evs = events(&outs);
    assert!(evs.contains(&&GroupEvent::PartitionsLost(by_topic(&[("t", &[0])]))));
    assert!(
        evs.contains(&&GroupEvent::Error(GroupError::PollIntervalExceeded(
            Duration::from_secs(10)
        )))
    );
    assert!(
        !s.m.is_done() && s.next().is_none(),
        "out until the next poll"
    );
    s.m.note_poll(s.now);
    let (req, _) = s.expect();
    assert!(
        matches!(req, GroupRequest::JoinGroup(ref j) if j.member_id.is_empty()),
        "{req:?}"
    );
}

#[test]
fn an_acknowledged_revoke_waits_for_allow_rebalance() {
    let mut c = config();
    c.require_rebalance_ack = true;
    c.commit_on_revoke = false;
    let mut s = Script::new(c);
    s.stable_with(&[("t", &[0, 1])]);
    assert!(events(&s.take())
        .iter()
        .any(|e| matches!(e, GroupEvent::PartitionsAssigned(_))));
    s.m.allow_rebalance(s.now);
    s.wait(Duration::from_secs(3));
    let (_, f) = s.expect();
    s.answer(f, heartbeat(ErrorCode::RebalanceInProgress));
    let (_, f) = s.expect();
    s.answer(f, joined("m-1", "leader", 2, "cooperative-sticky"));
    s.sync(&[("t", &[0])]);
    assert!(events(&s.take()).contains(&&GroupEvent::PartitionsRevoked(by_topic(&[("t", &[1])]))));
    assert_eq!(count(s.m.owned()), 2, "held until the application allows");
    assert!(!matches!(s.next(), Some((GroupRequest::JoinGroup(_), _))));
    s.m.allow_rebalance(s.now);
    s.m.handle_timeout(s.now);
    assert_eq!(count(s.m.owned()), 1);
    assert!(matches!(s.expect().0, GroupRequest::JoinGroup(_)));
}

mod properties {
    //! Random coordinator answers, in random order, against the member's
    //! promises: one assignment at a time, commits only of owned
    //! partitions in a live generation, committed offsets never backwards.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        /// Build every request that is due.
        Send,
        /// Answer the i-th outstanding request; `choice` picks the answer.
        Answer(usize, u8, u8),
        /// The i-th outstanding request is lost.
        Lose(usize),
        /// The application polled up to these offsets (partition, offset).
        Poll(Vec<(i32, i64)>),
        /// Virtual time passes.
        Wait(u64),
        /// A manual commit of everything polled.
        Commit,
        /// A manual commit of these positions.
        CommitAt(Vec<(i32, i64)>),
        /// The application acknowledges a rebalance step.
        Allow,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => Just(Step::Send),
            6 => (any::<usize>(), any::<u8>(), any::<u8>()).prop_map(|(i, c, d)| Step::Answer(i, c, d)),
            1 => any::<usize>().prop_map(Step::Lose),
            2 => proptest::collection::vec((0..4i32, 0..1000i64), 0..4).prop_map(Step::Poll),
            2 => (0..10_000u64).prop_map(Step::Wait),
            1 => Just(Step::Commit),
            1 => proptest::collection::vec((0..4i32, 0..1000i64), 1..4).prop_map(Step::CommitAt),
            1 => Just(Step::Allow),
        ]
    }

    const ERRORS: [ErrorCode; 8] = [
        ErrorCode::RebalanceInProgress,
        ErrorCode::UnknownMemberId,
        ErrorCode::IllegalGeneration,
        ErrorCode::NotCoordinator,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::UnstableOffsetCommit,
        ErrorCode::GroupAuthorizationFailed,
        ErrorCode::FencedInstanceId,
    ];

    /// Mostly success; sometimes one of the errors (fencing rarest).
    fn error(choice: u8) -> ErrorCode {
        if choice < 200 {
            ErrorCode::None
        } else {
            let i = usize::from(choice - 200) % ERRORS.len();
            if ERRORS[i] == ErrorCode::FencedInstanceId && choice < 250 {
                ErrorCode::RebalanceInProgress
            } else {
                ERRORS[i]
            }
        }
    }

    struct World {
        s: Script,
        outstanding: Vec<(GroupRequest, GroupInFlight)>,
        /// What the coordinator holds committed.
        committed: BTreeMap<(String, i32), i64>,
        /// What the consumer is consuming (Assign minus Revoke).
        active: BTreeSet<(String, i32)>,
        /// Commits the coordinator accepted, to check the runs reach them.
        commits_ok: usize,
    }

    impl World {
        fn observe(&mut self) {
            for o in self.s.take() {
                match o {
                    GroupOutput::Assign(a) => {
                        for (t, ps) in a {
                            for p in ps.keys() {
                                assert!(
                                    self.active.insert((t.clone(), *p)),
                                    "{t}-{p} assigned twice without a revoke"
                                );
                            }
                        }
                    }
                    GroupOutput::Revoke(r) => {
                        for (t, ps) in r {
                            for p in ps {
                                self.active.remove(&(t.clone(), p));
                            }
                        }
                    }
                    GroupOutput::Event(_) => {}
                }
            }
            for (t, p) in &self.active {
                assert!(
                    owns(self.s.m.owned(), t, *p),
                    "{t}-{p} consumed but not owned"
                );
            }
        }

        fn answer(&mut self, req: GroupRequest, f: GroupInFlight, c: u8, d: u8) {
            let e = error(c);
            let resp = match req {
                GroupRequest::FindCoordinator(_) => {
                    if e.is_ok() {
                        found(1 + i32::from(d % 3))
                    } else {
                        GroupResponse::FindCoordinator(FindCoordinatorResponse {
                            coordinators: vec![WireCoordinator {
                                key: "g".into(),
                                error_code: ErrorCode::CoordinatorNotAvailable.code(),
                                ..Default::default()
                            }],
                            ..Default::default()
                        })
                    }
                }
                GroupRequest::JoinGroup(j) => {
                    if !e.is_ok() {
                        join_error(e, "m")
                    } else {
                        let offered = &j.protocols[usize::from(d) % j.protocols.len()];
                        let leader = d.is_multiple_of(2);
                        GroupResponse::JoinGroup(JoinGroupResponse {
                            generation_id: i32::from(c) + 1000 * i32::from(d),
                            protocol_name: Some(offered.name.clone()),
                            leader: if leader { "m".into() } else { "other".into() },
                            member_id: "m".into(),
                            members: if leader {
                                vec![JoinGroupResponseMember {
                                    member_id: "m".into(),
                                    metadata: offered.metadata.clone(),
                                    ..Default::default()
                                }]
                            } else {
                                Vec::new()
                            },
                            ..Default::default()
                        })
                    }
                }
                GroupRequest::SyncGroup(_) => {
                    if e.is_ok() {
                        let parts: Vec<i32> = (0..4).filter(|p| d & (1 << p) != 0).collect();
                        synced(&[("t", &parts)])
                    } else {
                        sync_error(e)
                    }
                }
                GroupRequest::Heartbeat(_) => heartbeat(e),
                GroupRequest::ConsumerGroupHeartbeat(_) => {
                    panic!("a classic member sent a ConsumerGroupHeartbeat")
                }
                GroupRequest::LeaveGroup(_) => {
                    GroupResponse::LeaveGroup(LeaveGroupResponse::default())
                }
                GroupRequest::OffsetFetch(r) => {
                    let topics = r
                        .topics
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| OffsetFetchResponseTopic {
                            partitions: t
                                .partition_indexes
                                .iter()
                                .map(|&p| OffsetFetchResponsePartition {
                                    partition_index: p,
                                    committed_offset: self
                                        .committed
                                        .get(&(t.name.clone(), p))
                                        .copied()
                                        .unwrap_or(-1),
                                    error_code: if e == ErrorCode::UnstableOffsetCommit {
                                        e.code()
                                    } else {
                                        0
                                    },
                                    ..Default::default()
                                })
                                .collect(),
                            name: t.name,
                            ..Default::default()
                        })
                        .collect();
                    GroupResponse::OffsetFetch(OffsetFetchResponse {
                        topics,
                        ..Default::default()
                    })
                }
                GroupRequest::OffsetCommit(r) => {
                    if e.is_ok() {
                        self.commits_ok += 1;
                        for (t, p, o) in committed_in(&r) {
                            let before = self.committed.insert((t.clone(), p), o);
                            assert!(
                                before.is_none_or(|b| b <= o),
                                "{t}-{p} committed backwards: {before:?} then {o}"
                            );
                        }
                    }
                    commit_answer(&r, e)
                }
            };
            self.s.answer(f, resp);
        }

        fn send(&mut self) {
            if let Some(topics) = self.s.m.layout_wanted() {
                let layout = topics
                    .into_iter()
                    .fold(TopicLayout::new(), |l, t| l.with_topic(t, 4));
                self.s.m.provide_layout(self.s.now, &layout);
                self.s.collect();
            }
            while let Some((req, f)) = self.s.next() {
                if let GroupRequest::JoinGroup(_) = &req {
                    assert!(
                        !self
                            .outstanding
                            .iter()
                            .any(|(r, _)| matches!(r, GroupRequest::OffsetCommit(_))),
                        "a JoinGroup while a commit is in flight"
                    );
                }
                if let GroupRequest::OffsetCommit(r) = &req {
                    assert!(!self.s.m.is_rebalancing(), "a commit between join and sync");
                    assert!(self.s.m.generation() >= 0);
                    assert_eq!(r.generation_id_or_member_epoch, self.s.m.generation());
                    for (t, p, _) in committed_in(r) {
                        assert!(
                            owns(self.s.m.owned(), &t, p),
                            "commit of {t}-{p}, not owned in generation {}",
                            self.s.m.generation()
                        );
                    }
                }
                self.outstanding.push((req, f));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn one_assignment_at_a_time_commits_only_owned_partitions_never_backwards(
            steps in proptest::collection::vec(step(), 1..300),
            eager_too in any::<bool>(),
            ack in any::<bool>(),
        ) {
            let mut c = config();
            if eager_too {
                c.balancers.push(Arc::new(RangeBalancer));
            }
            c.require_rebalance_ack = ack;
            c.block_rebalance_on_poll = ack;
            c.max_poll_interval = eager_too.then(|| Duration::from_secs(20));
            let mut w = World {
                s: Script::new(c),
                outstanding: Vec::new(),
                committed: BTreeMap::new(),
                active: BTreeSet::new(),
                commits_ok: 0,
            };
            for step in steps {
                match step {
                    Step::Send => w.send(),
                    Step::Answer(i, c, d) if !w.outstanding.is_empty() => {
                        let (req, f) = w.outstanding.remove(i % w.outstanding.len());
                        w.answer(req, f, c, d);
                    }
                    Step::Lose(i) if !w.outstanding.is_empty() => {
                        let (_, f) = w.outstanding.remove(i % w.outstanding.len());
                        w.s.lose(f);
                    }
                    Step::Answer(..) | Step::Lose(_) => {}
                    Step::Poll(polled) => {
                        let polled: Vec<(i32, EpochOffset)> =
                            polled.into_iter().map(|(p, o)| (p, at(o))).collect();
                        w.s.m.note_poll(w.s.now);
                        w.s.m.on_polled(polled.iter().map(|(p, a)| ("t", *p, *a)));
                    }
                    Step::Wait(ms) => w.s.wait(Duration::from_millis(ms)),
                    Step::Commit => {
                        w.s.m.commit_uncommitted();
                    }
                    Step::CommitAt(at_offsets) => {
                        let offsets = at_offsets
                            .into_iter()
                            .map(|(p, o)| (("t".to_string(), p), at(o)))
                            .collect();
                        w.s.m.commit_offsets(offsets, false);
                    }
                    Step::Allow => w.s.m.allow_rebalance(w.s.now),
                }
                w.observe();
            }
            if std::env::var_os("SANSA_GROUP_PROP_STATS").is_some() {
                eprintln!("commits accepted: {}", w.commits_ok);
            }
        }
    }
}
