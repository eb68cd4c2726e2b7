//! The KIP-848 member against a scripted coordinator: each test answers
//! the ConsumerGroupHeartbeats (and the offset requests) the member sends
//! as Apache Kafka's coordinator would, or with the error under test.

use super::super::tests::{at, commit_answer, committed_in, found};
use super::*;
use crate::protocol::messages::consumer_group_heartbeat_response::{
    Assignment, TopicPartitions as AssignedTopic,
};
use crate::protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};

/// Topic `t`'s id.
const T: Uuid = Uuid::from_u64_pair(1, 1);
/// Topic `u`'s id.
const U: Uuid = Uuid::from_u64_pair(2, 2);

fn name_of(id: Uuid) -> Option<String> {
    match id {
        T => Some("t".into()),
        U => Some("u".into()),
        _ => None,
    }
}

fn consumer_config() -> GroupConfig {
    let mut c = GroupConfig::new("g");
    c.group_protocol = GroupProtocol::Consumer;
    c.server_assignor = Some("uniform".into());
    c
}

struct Script {
    m: Member,
    now: Timestamp,
    outs: Vec<GroupOutput>,
    /// What the coordinator's ApiVersions lists: `false` lacks
    /// ConsumerGroupHeartbeat.
    speaks_848: bool,
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
            speaks_848: true,
        }
    }

    fn next(&mut self) -> Option<(GroupRequest, i16, GroupInFlight)> {
        self.m.next_target(self.now)?;
        let speaks = self.speaks_848;
        let o = self.m.build_request(self.now, &mut |api, cap| {
            (speaks || api != ApiKey::ConsumerGroupHeartbeat).then_some(cap)
        });
        self.collect();
        o.map(|o| (o.request, o.version, o.in_flight))
    }

    fn expect(&mut self) -> (GroupRequest, i16, GroupInFlight) {
        self.next().expect("a request is due")
    }

    fn heartbeat(&mut self) -> (ConsumerGroupHeartbeatRequest, GroupInFlight) {
        match self.expect() {
            (GroupRequest::ConsumerGroupHeartbeat(r), 1, f) => (r, f),
            other => panic!("expected ConsumerGroupHeartbeat v1, got {other:?}"),
        }
    }

    fn answer(&mut self, f: GroupInFlight, r: GroupResponse) {
        self.m.on_response(self.now, f, Some(r));
        self.collect();
    }

    fn wait(&mut self, d: Duration) {
        self.now = self.now + d;
        self.m.handle_timeout(self.now);
        self.collect();
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
        let (req, _, f) = self.expect();
        assert!(matches!(req, GroupRequest::FindCoordinator(_)), "{req:?}");
        self.answer(f, found(1));
    }

    /// Answers an OffsetFetch: nothing committed.
    fn fetch_offsets(&mut self) -> Vec<TopicPartition> {
        let (req, _, f) = self.expect();
        let GroupRequest::OffsetFetch(r) = req else {
            panic!("expected OffsetFetch, got {req:?}")
        };
        let mut asked = Vec::new();
        let topics = r
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| OffsetFetchResponseTopic {
                partitions: t
                    .partition_indexes
                    .iter()
                    .map(|&p| {
                        asked.push((t.name.clone(), p));
                        OffsetFetchResponsePartition {
                            partition_index: p,
                            committed_offset: -1,
                            ..Default::default()
                        }
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
        asked
    }

    /// Joins at epoch 1 with `assigned` (topics named at once), fetches
    /// offsets and acknowledges.
    fn stable_with(&mut self, assigned: &[(Uuid, &[i32])]) {
        self.find();
        let (_, f) = self.heartbeat();
        self.answer(f, hb(1, Some(assigned)));
        self.m.name_topics(self.now, &name_of);
        self.collect();
        let (ack, f) = self.heartbeat();
        assert_eq!(ack.member_epoch, 1);
        self.answer(f, hb(1, None));
        self.fetch_offsets();
        self.take();
    }
}

fn hb(epoch: i32, assignment: Option<&[(Uuid, &[i32])]>) -> GroupResponse {
    GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
        member_epoch: epoch,
        heartbeat_interval_ms: 5_000,
        assignment: assignment.map(|a| Assignment {
            topic_partitions: a
                .iter()
                .map(|(id, ps)| AssignedTopic {
                    topic_id: *id,
                    partitions: ps.to_vec(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn hb_error(e: ErrorCode) -> GroupResponse {
    GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
        error_code: e.code(),
        error_message: Some(format!("{e}")),
        member_epoch: -1,
        ..Default::default()
    })
}

fn owned_in(r: &ConsumerGroupHeartbeatRequest) -> Option<Vec<(Uuid, Vec<i32>)>> {
    r.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .map(|t| (t.topic_id, t.partitions.clone()))
            .collect()
    })
}

fn events(outs: &[GroupOutput]) -> Vec<&GroupEvent> {
    outs.iter()
        .filter_map(|o| match o {
            GroupOutput::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn parts(p: &[(&str, &[i32])]) -> PartitionsByTopic {
    p.iter()
        .map(|(t, ps)| (t.to_string(), ps.to_vec()))
        .collect()
}

#[test]
fn joins_at_epoch_zero_with_its_own_member_id_and_the_full_subscription() {
    let mut s = Script::new(consumer_config());
    assert_eq!(s.m.protocol(), GroupProtocol::Consumer);
    s.find();
    let (r, f) = s.heartbeat();
    assert_eq!(r.group_id, "g");
    assert_eq!(r.member_epoch, 0);
    assert_eq!(r.member_id.len(), 32, "KIP-1082: a client-made UUID");
    assert_eq!(r.rebalance_timeout_ms, 60_000, "required on the join");
    assert_eq!(r.subscribed_topic_names, Some(vec!["t".to_string()]));
    assert_eq!(r.subscribed_topic_regex.as_deref(), Some(""));
    assert_eq!(r.server_assignor.as_deref(), Some("uniform"));
    assert_eq!(owned_in(&r), Some(vec![]), "a joining member owns nothing");
    assert_eq!(r.instance_id, None);
    // The same seed makes the same id: the id is an input, not the OS's.
    let again = Script::new(consumer_config())
        .m
        .consumer
        .unwrap()
        .own_member_id;
    assert_eq!(r.member_id, again);
    assert!(s.next().is_none(), "one heartbeat in flight at a time");
    s.answer(f, hb(3, Some(&[])));
    assert_eq!(s.m.generation(), 3, "the member epoch");
    assert_eq!(s.m.member_id(), r.member_id);
    assert!(
        s.next().is_none(),
        "nothing to acknowledge: owned what it owns"
    );
    s.wait(Duration::from_millis(4_999));
    assert!(
        s.next().is_none(),
        "the coordinator's interval, not the config's 3 s"
    );
    s.wait(Duration::from_millis(1));
    let (r, _) = s.heartbeat();
    assert_eq!(r.member_epoch, 3);
    assert_eq!(r.rebalance_timeout_ms, -1, "unchanged fields are null");
    assert_eq!(r.subscribed_topic_names, None);
    assert_eq!(r.server_assignor, None);
    assert_eq!(owned_in(&r), None);
}

#[test]
fn a_version_0_coordinator_gives_the_member_id() {
    let mut s = Script::new(consumer_config());
    s.find();
    s.m.next_target(s.now).unwrap();
    let o = s.m.build_request(s.now, &mut |_, cap| Some(cap.min(0)));
    let o = o.unwrap();
    let GroupRequest::ConsumerGroupHeartbeat(r) = o.request else {
        panic!()
    };
    assert_eq!(r.member_id, "", "v0: the coordinator makes the id");
    assert_eq!(r.subscribed_topic_regex, None, "no regex field in v0");
    let mut answer = hb(1, None);
    if let GroupResponse::ConsumerGroupHeartbeat(a) = &mut answer {
        a.member_id = Some("server-id".into());
    }
    s.answer(o.in_flight, answer);
    assert_eq!(s.m.member_id(), "server-id");
}

#[test]
fn an_assignment_with_an_unknown_topic_id_waits_for_its_name_then_is_assigned_and_acknowledged() {
    let mut s = Script::new(consumer_config());
    s.find();
    let (_, f) = s.heartbeat();
    s.answer(f, hb(1, Some(&[(T, &[0, 1])])));
    assert_eq!(s.m.unnamed_topic_ids(), [T]);
    assert!(s.m.owned().is_empty(), "nothing assigned by an unknown id");
    assert!(events(&s.take()).is_empty());
    assert!(s.next().is_none(), "no acknowledgement of nothing");
    s.m.name_topics(s.now, &|_| None);
    assert_eq!(
        s.m.unnamed_topic_ids(),
        [T],
        "still unknown after a refresh"
    );
    s.m.name_topics(s.now, &name_of);
    assert!(s.m.unnamed_topic_ids().is_empty());
    assert_eq!(s.m.owned(), &parts(&[("t", &[0, 1])]));
    // Acknowledged at once, before the offsets are even fetched.
    let (ack, f) = s.heartbeat();
    assert_eq!(ack.member_epoch, 1);
    assert_eq!(owned_in(&ack), Some(vec![(T, vec![0, 1])]));
    assert_eq!(ack.subscribed_topic_names, None, "the coordinator has it");
    s.answer(f, hb(1, None));
    assert_eq!(
        s.fetch_offsets(),
        [("t".to_string(), 0), ("t".to_string(), 1)]
    );
    let outs = s.take();
    assert!(outs
        .iter()
        .any(|o| matches!(o, GroupOutput::Assign(a) if a["t"].len() == 2)));
    assert_eq!(
        events(&outs),
        [&GroupEvent::PartitionsAssigned(parts(&[("t", &[0, 1])]))]
    );
    assert!(s.next().is_none(), "acknowledged once");
}

#[test]
fn a_target_that_moves_partitions_revokes_first_commits_with_the_member_epoch_then_assigns() {
    let mut s = Script::new(consumer_config());
    s.stable_with(&[(T, &[0, 1])]);
    s.m.on_polled([("t", 0, at(10)), ("t", 1, at(20))]);
    // The coordinator moved t-0 away and gave u-0, at a new epoch.
    s.wait(Duration::from_secs(5));
    let (_, f) = s.heartbeat();
    s.answer(f, hb(2, Some(&[(T, &[1]), (U, &[0])])));
    // The client names the new topic from its metadata.
    s.m.name_topics(s.now, &name_of);
    s.collect();
    let outs = s.take();
    assert_eq!(
        outs,
        [GroupOutput::Revoke(parts(&[("t", &[0])]))],
        "revoked partitions stop first; nothing assigned before the revoke completes"
    );
    // The commit on revoke: OffsetCommit v9 with the member id and epoch.
    let (req, version, f) = s.expect();
    let GroupRequest::OffsetCommit(c) = req else {
        panic!("{req:?}")
    };
    assert_eq!(version, 9);
    assert_eq!(c.generation_id_or_member_epoch, 2);
    assert_eq!(c.member_id, s.m.member_id());
    assert_eq!(
        committed_in(&c),
        [("t".to_string(), 0, 10), ("t".to_string(), 1, 20)],
        "everything polled, the revoked partition included"
    );
    s.answer(f, commit_answer(&c, ErrorCode::None));
    let outs = s.take();
    assert!(events(&outs).contains(&&GroupEvent::PartitionsRevoked(parts(&[("t", &[0])]))));
    assert_eq!(s.m.owned(), &parts(&[("t", &[1]), ("u", &[0])]));
    let (ack, f) = s.heartbeat();
    assert_eq!(ack.member_epoch, 2);
    assert_eq!(owned_in(&ack), Some(vec![(T, vec![1]), (U, vec![0])]));
    s.answer(f, hb(2, None));
    assert_eq!(s.fetch_offsets(), [("u".to_string(), 0)]);
    assert_eq!(
        events(&s.take()),
        [&GroupEvent::PartitionsAssigned(parts(&[("u", &[0])]))]
    );
}

#[test]
fn a_revoke_waits_for_the_application_when_it_must_acknowledge() {
    let mut c = consumer_config();
    c.require_rebalance_ack = true;
    let mut s = Script::new(c);
    s.find();
    let (_, f) = s.heartbeat();
    s.answer(f, hb(1, Some(&[(T, &[0, 1])])));
    s.m.name_topics(s.now, &name_of);
    let (_, f) = s.heartbeat();
    s.answer(f, hb(1, None));
    s.fetch_offsets();
    s.m.allow_rebalance(s.now);
    s.take();
    s.wait(Duration::from_secs(5));
    let (_, f) = s.heartbeat();
    s.answer(f, hb(2, Some(&[(T, &[1])])));
    // Nothing polled: nothing to commit; the revoke is announced and held.
    assert!(
        s.next().is_none(),
        "no acknowledgement before the application's"
    );
    let outs = s.take();
    assert!(events(&outs).contains(&&GroupEvent::PartitionsRevoked(parts(&[("t", &[0])]))));
    assert_eq!(s.m.owned(), &parts(&[("t", &[0, 1])]));
    s.m.allow_rebalance(s.now);
    s.m.handle_timeout(s.now);
    let (ack, _) = s.heartbeat();
    assert_eq!(owned_in(&ack), Some(vec![(T, vec![1])]));
}

#[test]
fn fenced_member_epoch_loses_the_partitions_and_rejoins_at_epoch_zero_with_the_same_id() {
    for error in [ErrorCode::FencedMemberEpoch, ErrorCode::UnknownMemberId] {
        let mut s = Script::new(consumer_config());
        s.stable_with(&[(T, &[0])]);
        s.m.on_polled([("t", 0, at(10))]);
        let id = s.m.member_id().to_string();
        s.wait(Duration::from_secs(5));
        let (_, f) = s.heartbeat();
        s.answer(f, hb_error(error));
        let outs = s.take();
        assert_eq!(
            events(&outs),
            [&GroupEvent::PartitionsLost(parts(&[("t", &[0])]))],
            "{error}: lost, not revoked"
        );
        let (r, _) = s.heartbeat();
        assert_eq!(r.member_epoch, 0, "{error}: rejoins");
        assert_eq!(r.member_id, id, "{error}: KIP-1082 keeps the id");
        assert_eq!(r.subscribed_topic_names, Some(vec!["t".to_string()]));
        assert_eq!(owned_in(&r), Some(vec![]));
    }
}

#[test]
fn no_heartbeat_answer_for_a_session_loses_the_partitions_and_voids_the_old_target() {
    let mut s = Script::new(consumer_config());
    s.stable_with(&[(T, &[0, 1])]);
    s.wait(Duration::from_secs(5));
    let (_, f) = s.heartbeat();
    // Its connection times out, and the coordinator cannot be found again
    // for a whole session.
    s.m.on_response(s.now, f, None);
    s.wait(Duration::from_secs(45));
    assert_eq!(
        events(&s.take()),
        [&GroupEvent::PartitionsLost(parts(&[("t", &[0, 1])]))]
    );
    assert!(s.m.owned().is_empty());
    s.wait(Duration::from_secs(1));
    s.find();
    let (r, f) = s.heartbeat();
    assert_eq!(r.member_epoch, 0);
    assert_eq!(r.subscribed_topic_names, Some(vec!["t".to_string()]));
    s.answer(f, hb(7, None));
    assert!(
        s.m.owned().is_empty(),
        "the target from before the loss is void"
    );
}

#[test]
fn an_offset_commit_fenced_by_the_member_epoch_loses_the_partitions() {
    let mut s = Script::new(consumer_config());
    s.stable_with(&[(T, &[0])]);
    s.m.on_polled([("t", 0, at(10))]);
    s.m.commit_uncommitted();
    let (req, _, f) = s.expect();
    let GroupRequest::OffsetCommit(c) = req else {
        panic!("{req:?}")
    };
    s.answer(f, commit_answer(&c, ErrorCode::FencedMemberEpoch));
    assert!(events(&s.take()).contains(&&GroupEvent::PartitionsLost(parts(&[("t", &[0])]))));
    let (r, _) = s.heartbeat();
    assert_eq!(r.member_epoch, 0);
}

#[test]
fn a_commit_with_a_stale_member_epoch_is_retried_after_a_heartbeat() {
    let mut s = Script::new(consumer_config());
    s.stable_with(&[(T, &[0])]);
    s.m.on_polled([("t", 0, at(10))]);
    s.m.commit_uncommitted();
    let (req, _, f) = s.expect();
    let GroupRequest::OffsetCommit(c) = req else {
        panic!("{req:?}")
    };
    s.answer(f, commit_answer(&c, ErrorCode::StaleMemberEpoch));
    assert!(events(&s.take()).is_empty(), "not finished: retried");
    let (r, f) = s.heartbeat();
    assert_eq!(r.member_epoch, 1, "a heartbeat at once, for the new epoch");
    s.answer(f, hb(4, None));
    s.wait(Duration::from_secs(1));
    let (req, _, f) = s.expect();
    let GroupRequest::OffsetCommit(c) = req else {
        panic!("{req:?}")
    };
    assert_eq!(c.generation_id_or_member_epoch, 4);
    s.answer(f, commit_answer(&c, ErrorCode::None));
    let outs = s.take();
    let [GroupEvent::CommitFinished(done)] = events(&outs)[..] else {
        panic!("{outs:?}")
    };
    assert_eq!(done.committed.len(), 1);
}

#[test]
fn the_coordinator_moving_sends_the_member_to_find_it_again_keeping_its_epoch() {
    let mut s = Script::new(consumer_config());
    s.stable_with(&[(T, &[0])]);
    s.wait(Duration::from_secs(5));
    let (_, f) = s.heartbeat();
    s.answer(f, hb_error(ErrorCode::NotCoordinator));
    assert!(events(&s.take()).is_empty(), "nothing lost");
    assert_eq!(s.m.coordinator(), None);
    assert!(s.next().is_none(), "a backoff first");
    s.wait(Duration::from_secs(1));
    let (req, _, f) = s.expect();
    assert!(matches!(req, GroupRequest::FindCoordinator(_)), "{req:?}");
    s.answer(f, found(2));
    assert_eq!(s.m.coordinator().unwrap().node, NodeId(2));
    let (r, f) = s.heartbeat();
    assert_eq!(r.member_epoch, 1, "still a member");
    s.answer(f, hb(1, None));
    // A lost answer (connection closed) does the same.
    s.wait(Duration::from_secs(5));
    let (_, f) = s.heartbeat();
    s.m.on_response(s.now, f, None);
    assert_eq!(s.m.coordinator(), None);
    assert_eq!(s.m.owned(), &parts(&[("t", &[0])]));
}

#[test]
fn close_commits_then_leaves_at_epoch_minus_one() {
    let mut s = Script::new(consumer_config());
    s.stable_with(&[(T, &[0])]);
    s.m.on_polled([("t", 0, at(7))]);
    s.m.leave(s.now);
    let (req, _, f) = s.expect();
    let GroupRequest::OffsetCommit(c) = req else {
        panic!("{req:?}")
    };
    assert_eq!(committed_in(&c), [("t".to_string(), 0, 7)]);
    s.answer(f, commit_answer(&c, ErrorCode::None));
    let (r, f) = s.heartbeat();
    assert_eq!(r.member_epoch, -1);
    assert_eq!(r.instance_id, None);
    s.answer(f, hb(-1, None));
    assert!(s.m.is_done());
    assert!(events(&s.take()).contains(&&GroupEvent::PartitionsRevoked(parts(&[("t", &[0])]))));
}

#[test]
fn a_static_member_names_its_instance_and_leaves_at_epoch_minus_two() {
    let mut c = consumer_config();
    c.instance_id = Some("i-1".into());
    let mut s = Script::new(c);
    s.find();
    let (r, f) = s.heartbeat();
    assert_eq!(r.instance_id.as_deref(), Some("i-1"));
    s.answer(f, hb(1, Some(&[])));
    s.m.leave(s.now);
    let (r, f) = s.heartbeat();
    assert_eq!(r.member_epoch, -2, "KIP-848: its assignment waits for it");
    assert_eq!(r.instance_id.as_deref(), Some("i-1"));
    s.answer(f, hb(-2, None));
    assert!(s.m.is_done());
}

#[test]
fn a_member_kept_at_epoch_zero_still_leaves() {
    let mut s = Script::new(consumer_config());
    s.find();
    let (_, f) = s.heartbeat();
    // librdkafka's mock answers a join at epoch 0 while the partitions it
    // will get are still owned by others.
    s.answer(f, hb(0, None));
    s.m.leave(s.now);
    let (r, _) = s.heartbeat();
    assert_eq!(r.member_epoch, -1);
}

#[test]
fn a_member_that_never_joined_closes_without_a_leave() {
    let mut s = Script::new(consumer_config());
    s.m.leave(s.now);
    assert!(s.m.is_done());
    assert!(s.next().is_none());
}

#[test]
fn a_coordinator_without_consumer_group_heartbeat_gets_the_classic_protocol() {
    let mut s = Script::new(consumer_config());
    s.speaks_848 = false;
    s.find();
    let (req, _, _) = s.expect();
    assert!(matches!(req, GroupRequest::JoinGroup(_)), "{req:?}");
    assert_eq!(s.m.protocol(), GroupProtocol::Classic);
}

#[test]
fn unsupported_version_in_the_answer_falls_back_to_the_classic_protocol() {
    let mut s = Script::new(consumer_config());
    s.find();
    let (_, f) = s.heartbeat();
    s.answer(f, hb_error(ErrorCode::UnsupportedVersion));
    assert_eq!(s.m.protocol(), GroupProtocol::Classic);
    let (req, _, _) = s.expect();
    let GroupRequest::JoinGroup(j) = req else {
        panic!("{req:?}")
    };
    assert_eq!(j.member_id, "", "the classic coordinator gives the id");
}

#[test]
fn errors_retrying_cannot_fix_stop_the_member_with_a_clear_error() {
    for error in [
        ErrorCode::UnsupportedAssignor,
        ErrorCode::UnreleasedInstanceId,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::InvalidRequest,
    ] {
        let mut s = Script::new(consumer_config());
        s.find();
        let (_, f) = s.heartbeat();
        s.answer(f, hb_error(error));
        let outs = s.take();
        let [GroupEvent::Error(e)] = events(&outs)[..] else {
            panic!("{outs:?}")
        };
        assert!(e.is_fatal(), "{e}");
        assert!(
            matches!(e, GroupError::Rejected { error: got, .. } if *got == error),
            "{e}"
        );
        assert!(s.m.is_done());
        assert!(s.next().is_none());
    }
}

#[test]
fn a_retriable_error_retries_the_heartbeat_after_a_backoff() {
    let mut s = Script::new(consumer_config());
    s.find();
    let (_, f) = s.heartbeat();
    s.answer(f, hb_error(ErrorCode::CoordinatorLoadInProgress));
    assert!(events(&s.take()).is_empty());
    assert!(s.next().is_none());
    s.wait(Duration::from_secs(1));
    let (r, _) = s.heartbeat();
    assert_eq!(r.member_epoch, 0);
    assert!(s.m.coordinator().is_some(), "the same coordinator");
}

#[test]
fn a_new_subscription_goes_out_in_the_next_heartbeat_without_a_rejoin() {
    let mut s = Script::new(consumer_config());
    s.stable_with(&[(T, &[0])]);
    s.m.subscribe(s.now, ["u".to_string()]);
    let (r, _) = s.heartbeat();
    assert_eq!(r.member_epoch, 1, "no rejoin");
    assert_eq!(
        r.subscribed_topic_names,
        Some(vec!["t".to_string(), "u".to_string()])
    );
    assert!(events(&s.take()).is_empty(), "nothing revoked");
}

#[test]
fn a_hostile_assignment_keeps_no_negative_partitions() {
    let mut s = Script::new(consumer_config());
    s.find();
    let (_, f) = s.heartbeat();
    s.answer(f, hb(1, Some(&[(T, &[-1, 2, 2]), (U, &[-5])])));
    s.m.name_topics(s.now, &name_of);
    assert_eq!(s.m.owned(), &parts(&[("t", &[2])]));
}

mod random {
    //! The KIP-848 member against a coordinator that answers at random
    //! (targets that move partitions, fencing, coordinator moves, stale
    //! epochs, lost answers), checking the protocol's promises on every
    //! step.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        /// Answer the due request; `choice` picks success or an error,
        /// `target` the partitions of `t` a new target gives (or none).
        Answer(u8, u8),
        /// The due request is lost.
        Lose,
        /// The application polled up to these offsets.
        Poll(Vec<(i32, i64)>),
        /// Virtual time passes (milliseconds).
        Wait(u64),
        /// A manual commit.
        Commit,
        /// The application acknowledges a rebalance step.
        Allow,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (any::<u8>(), any::<u8>()).prop_map(|(c, t)| Step::Answer(c, t)),
            1 => Just(Step::Lose),
            2 => proptest::collection::vec((0..4i32, 0..1000i64), 0..4).prop_map(Step::Poll),
            2 => (0..6_000u64).prop_map(Step::Wait),
            1 => Just(Step::Commit),
            1 => Just(Step::Allow),
        ]
    }

    const ERRORS: [ErrorCode; 5] = [
        ErrorCode::FencedMemberEpoch,
        ErrorCode::UnknownMemberId,
        ErrorCode::NotCoordinator,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::StaleMemberEpoch,
    ];

    fn error(choice: u8) -> ErrorCode {
        if choice < 210 {
            ErrorCode::None
        } else {
            ERRORS[usize::from(choice - 210) % ERRORS.len()]
        }
    }

    struct World {
        s: Script,
        /// The coordinator's epoch for the member (0: not a member).
        epoch: i32,
        /// The latest target given, partitions of `t`.
        target: BTreeSet<i32>,
        /// What the consumer consumes (Assign minus Revoke).
        active: BTreeSet<i32>,
        /// The owned partitions the member last acknowledged.
        acked: BTreeSet<i32>,
    }

    impl World {
        fn answer(&mut self, choice: u8, bits: u8) {
            let Some((req, _, f)) = self.s.next() else {
                return;
            };
            let e = error(choice);
            let resp = match req {
                GroupRequest::FindCoordinator(_) => found(1 + i32::from(bits % 3)),
                GroupRequest::ConsumerGroupHeartbeat(r) => {
                    if let Some(tps) = &r.topic_partitions {
                        let acked: BTreeSet<i32> = tps
                            .iter()
                            .filter(|t| t.topic_id == T)
                            .flat_map(|t| t.partitions.iter().copied())
                            .collect();
                        // Revoke first: a member acknowledges a partition
                        // it did not own before only once everything it
                        // owns is in its target (what the target lacks
                        // was given up first).
                        let target: BTreeSet<i32> = self
                            .s
                            .m
                            .consumer
                            .as_ref()
                            .and_then(|k| k.target.as_ref())
                            .and_then(|t| t.get(&T).cloned())
                            .unwrap_or_default()
                            .into_iter()
                            .collect();
                        if acked.difference(&self.acked).next().is_some() {
                            assert!(
                                acked.is_subset(&target),
                                "acknowledged {acked:?} (before {:?}) with target {target:?}",
                                self.acked
                            );
                        }
                        self.acked = acked;
                    }
                    if r.member_epoch < 0 {
                        hb(r.member_epoch, None)
                    } else if e.is_ok() || e == ErrorCode::StaleMemberEpoch {
                        if r.member_epoch == 0 {
                            self.epoch += 1;
                        }
                        let target = choice.is_multiple_of(2).then(|| {
                            self.epoch += 1;
                            self.target = (0..4).filter(|p| bits & (1 << p) != 0).collect();
                            self.target.iter().copied().collect::<Vec<i32>>()
                        });
                        match target {
                            Some(ps) => hb(self.epoch, Some(&[(T, &ps)])),
                            None => hb(self.epoch, None),
                        }
                    } else {
                        if matches!(e, ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId) {
                            self.target.clear();
                        }
                        hb_error(e)
                    }
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
                                    committed_offset: -1,
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
                GroupRequest::OffsetCommit(c) => {
                    assert!(
                        c.generation_id_or_member_epoch > 0,
                        "a commit outside the group: {c:?}"
                    );
                    for (_, p, _) in committed_in(&c) {
                        assert!(
                            owns(self.s.m.owned(), "t", p),
                            "committed t-{p}, which it does not own"
                        );
                    }
                    let e = if c.generation_id_or_member_epoch == self.epoch {
                        e
                    } else {
                        ErrorCode::StaleMemberEpoch
                    };
                    commit_answer(&c, e)
                }
                other => panic!("a KIP-848 member sent {other:?}"),
            };
            self.s.answer(f, resp);
        }

        /// Checks the promises after a step.
        fn check(&mut self) {
            self.s.m.name_topics(self.s.now, &name_of);
            self.s.collect();
            for o in self.s.take() {
                match o {
                    GroupOutput::Assign(a) => {
                        for p in a.get("t").into_iter().flat_map(|ps| ps.keys()) {
                            assert!(self.active.insert(*p), "t-{p} assigned twice");
                        }
                    }
                    GroupOutput::Revoke(r) => {
                        for p in r.get("t").into_iter().flatten() {
                            self.active.remove(p);
                        }
                    }
                    GroupOutput::Event(GroupEvent::Error(e)) => {
                        panic!("unexpected group error {e}")
                    }
                    GroupOutput::Event(_) => {}
                }
            }
            let owned: BTreeSet<i32> = self
                .s
                .m
                .owned()
                .get("t")
                .into_iter()
                .flatten()
                .copied()
                .collect();
            assert!(
                self.active.is_subset(&owned),
                "consuming {:?} not owned {owned:?}",
                self.active
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn a_consumer_protocol_member_revokes_before_it_assigns_and_commits_only_what_it_owns_in_its_epoch(
            steps in proptest::collection::vec(step(), 1..80)
        ) {
            let mut w = World {
                s: Script::new(consumer_config()),
                epoch: 0,
                target: BTreeSet::new(),
                active: BTreeSet::new(),
                acked: BTreeSet::new(),
            };
            for st in steps {
                match st {
                    Step::Answer(c, t) => w.answer(c, t),
                    Step::Lose => {
                        if let Some((_, _, f)) = w.s.next() {
                            w.s.m.on_response(w.s.now, f, None);
                        }
                    }
                    Step::Poll(ps) => {
                        let polled: Vec<(String, i32, EpochOffset)> =
                            ps.into_iter().map(|(p, o)| ("t".to_string(), p, at(o))).collect();
                        w.s.m.on_polled(polled.iter().map(|(t, p, o)| (t.as_str(), *p, *o)));
                    }
                    Step::Wait(ms) => w.s.wait(Duration::from_millis(ms)),
                    Step::Commit => {
                        w.s.m.commit_uncommitted();
                    }
                    Step::Allow => w.s.m.allow_rebalance(w.s.now),
                }
                w.check();
            }
        }
    }
}
