//! The client as a consumer-group member against the scripted cluster,
//! whose coordinator here answers the group APIs as Kafka's does for a
//! group of this member (plus members it pretends are there), keeping the
//! committed offsets and a log of every commit so the tests check what
//! the coordinator got, not only what the client reported.

use bytes::Bytes;

use super::*;
use crate::consumer::ConsumedRecord;
use crate::group::balancer::{
    Balancer, CooperativeStickyBalancer, JoinSubscription, PartitionsByTopic, RangeBalancer,
};
use crate::group::{CommitReason, GroupConfig, Member};
use crate::protocol::messages::find_coordinator_response::Coordinator as WireCoordinator;
use crate::protocol::messages::join_group_response::JoinGroupResponseMember;
use crate::protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use crate::protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use crate::protocol::messages::{
    FindCoordinatorResponse, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse,
    OffsetCommitResponse, OffsetFetchResponse, SyncGroupResponse,
};

/// One accepted commit: generation, topic, partition, offset.
type CommitLogEntry = (i32, String, i32, i64);

/// The scripted group coordinator (node 1).
#[derive(Debug, Default)]
pub(super) struct Coordinator {
    generation: i32,
    /// Members the coordinator pretends are in the group besides the
    /// client: (member id, subscription metadata).
    others: Vec<(String, Bytes)>,
    /// Answer heartbeats with REBALANCE_IN_PROGRESS until the next join.
    rebalance: bool,
    /// Hold JoinGroup answers in `held` (a slow rebalance).
    hold_joins: bool,
    held: Vec<Input>,
    committed: BTreeMap<(String, i32), i64>,
    commits: Vec<CommitLogEntry>,
    commit_requests: usize,
    /// The member id of every JoinGroup, in order.
    joins: Vec<String>,
    /// The generation of every SyncGroup, in order.
    syncs: Vec<i32>,
    /// The plan of every SyncGroup that carried one (the leader's).
    plans: Vec<Vec<(String, Bytes)>>,
    leaves: usize,
}

pub(super) fn is_group_api(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::FindCoordinator
            | ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::Heartbeat
            | ApiKey::LeaveGroup
            | ApiKey::OffsetFetch
            | ApiKey::OffsetCommit
    )
}

impl Cluster {
    pub(super) fn on_group_request(&mut self, conn: ConnId, corr: i32, v: i16, body: RequestBody) {
        let g = &mut self.group;
        match body {
            RequestBody::FindCoordinator(_) => {
                let mut resp = FindCoordinatorResponse::default();
                if v >= 4 {
                    resp.coordinators = vec![WireCoordinator {
                        key: "g".into(),
                        node_id: 1,
                        host: "127.0.0.1".into(),
                        port: port(1),
                        ..Default::default()
                    }];
                } else {
                    resp.node_id = 1;
                    resp.host = "127.0.0.1".into();
                    resp.port = port(1);
                }
                self.answer(conn, corr, ApiKey::FindCoordinator, v, resp);
            }
            RequestBody::JoinGroup(r) => {
                g.joins.push(r.member_id.clone());
                if r.member_id.is_empty() && r.group_instance_id.is_none() && v >= 4 {
                    // KIP-394: a new dynamic member gets its id first.
                    let resp = JoinGroupResponse {
                        error_code: ErrorCode::MemberIdRequired.code(),
                        generation_id: -1,
                        member_id: "member-1".into(),
                        ..Default::default()
                    };
                    self.answer(conn, corr, ApiKey::JoinGroup, v, resp);
                    return;
                }
                g.generation += 1;
                g.rebalance = false;
                let me = if r.member_id.is_empty() {
                    "member-1".to_string()
                } else {
                    r.member_id.clone()
                };
                let chosen = &r.protocols[0];
                let mut members = vec![JoinGroupResponseMember {
                    member_id: me.clone(),
                    group_instance_id: r.group_instance_id.clone(),
                    metadata: chosen.metadata.clone(),
                    ..Default::default()
                }];
                members.extend(g.others.iter().map(|(id, m)| JoinGroupResponseMember {
                    member_id: id.clone(),
                    metadata: m.clone(),
                    ..Default::default()
                }));
                let resp = JoinGroupResponse {
                    generation_id: g.generation,
                    protocol_type: Some("consumer".into()),
                    protocol_name: Some(chosen.name.clone()),
                    leader: me.clone(),
                    member_id: me,
                    members,
                    ..Default::default()
                };
                let hold = g.hold_joins;
                self.answer(conn, corr, ApiKey::JoinGroup, v, resp);
                if hold {
                    let answer = self.inbox.pop_back().expect("the answer");
                    self.group.held.push(answer);
                }
            }
            RequestBody::SyncGroup(r) => {
                g.syncs.push(r.generation_id);
                if !r.assignments.is_empty() {
                    g.plans.push(
                        r.assignments
                            .iter()
                            .map(|a| (a.member_id.clone(), a.assignment.clone()))
                            .collect(),
                    );
                }
                let resp = if r.generation_id != g.generation {
                    SyncGroupResponse {
                        error_code: ErrorCode::IllegalGeneration.code(),
                        ..Default::default()
                    }
                } else {
                    let assignment = r
                        .assignments
                        .iter()
                        .find(|a| a.member_id == r.member_id)
                        .map(|a| a.assignment.clone())
                        .unwrap_or_default();
                    SyncGroupResponse {
                        assignment,
                        ..Default::default()
                    }
                };
                self.answer(conn, corr, ApiKey::SyncGroup, v, resp);
            }
            RequestBody::Heartbeat(r) => {
                let error = if g.rebalance {
                    ErrorCode::RebalanceInProgress
                } else if r.generation_id != g.generation {
                    ErrorCode::IllegalGeneration
                } else {
                    ErrorCode::None
                };
                let resp = HeartbeatResponse {
                    error_code: error.code(),
                    ..Default::default()
                };
                self.answer(conn, corr, ApiKey::Heartbeat, v, resp);
            }
            RequestBody::OffsetFetch(r) => {
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
                                committed_offset: g
                                    .committed
                                    .get(&(t.name.clone(), p))
                                    .copied()
                                    .unwrap_or(-1),
                                ..Default::default()
                            })
                            .collect(),
                        name: t.name,
                        ..Default::default()
                    })
                    .collect();
                let resp = OffsetFetchResponse {
                    topics,
                    ..Default::default()
                };
                self.answer(conn, corr, ApiKey::OffsetFetch, v, resp);
            }
            RequestBody::OffsetCommit(r) => {
                g.commit_requests += 1;
                let error = if !g.held.is_empty() {
                    // Kafka refuses commits while the group completes a
                    // rebalance.
                    ErrorCode::RebalanceInProgress
                } else if r.generation_id_or_member_epoch != g.generation {
                    ErrorCode::IllegalGeneration
                } else {
                    ErrorCode::None
                };
                let mut topics = Vec::new();
                for t in r.topics {
                    let mut partitions = Vec::new();
                    for p in t.partitions {
                        if error.is_ok() {
                            g.committed
                                .insert((t.name.clone(), p.partition_index), p.committed_offset);
                            g.commits.push((
                                r.generation_id_or_member_epoch,
                                t.name.clone(),
                                p.partition_index,
                                p.committed_offset,
                            ));
                        }
                        partitions.push(OffsetCommitResponsePartition {
                            partition_index: p.partition_index,
                            error_code: error.code(),
                            ..Default::default()
                        });
                    }
                    topics.push(OffsetCommitResponseTopic {
                        name: t.name,
                        partitions,
                        ..Default::default()
                    });
                }
                let resp = OffsetCommitResponse {
                    topics,
                    ..Default::default()
                };
                self.answer(conn, corr, ApiKey::OffsetCommit, v, resp);
            }
            RequestBody::LeaveGroup(_) => {
                g.leaves += 1;
                self.answer(
                    conn,
                    corr,
                    ApiKey::LeaveGroup,
                    v,
                    LeaveGroupResponse::default(),
                );
            }
            other => panic!("not a group request: {:?}", other.api_key()),
        }
    }
}

fn group_harness(records: usize, group: GroupConfig) -> Harness {
    let mut cluster = Cluster::new(3);
    cluster.create_topic("t", 4);
    let mut h = Harness::new(cluster, Config::builder().consumer_group(group));
    for i in 0..records {
        h.produce(keyed(i));
    }
    h.run(|h| h.client.is_idle());
    h
}

fn assigned_events(h: &Harness) -> Vec<PartitionsByTopic> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::PartitionsAssigned(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn revoked_events(h: &Harness) -> Vec<PartitionsByTopic> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::PartitionsRevoked(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Polls until nothing more comes for a while; returns (partition,
/// offset) of every record.
fn poll_all(h: &mut Harness) -> Vec<(i32, i64)> {
    let mut got = Vec::new();
    for _ in 0..40 {
        let before = got.len();
        for f in consumed(h) {
            assert!(f.error.is_none(), "{:?}", f.error);
            got.extend(f.records.iter().map(|r| (r.partition, r.offset)));
        }
        if got.len() == before && h.cluster.fetches > 0 && !h.client.consumer.has_buffered() {
            h.run_for(Duration::from_millis(600));
            if !h.client.consumer.has_buffered() {
                break;
            }
        } else {
            h.run_for(Duration::from_millis(100));
        }
    }
    got
}

fn log_len(h: &Harness, p: i32) -> i64 {
    h.log("t", p as usize).len() as i64
}

fn all_four() -> PartitionsByTopic {
    [("t".to_string(), vec![0, 1, 2, 3])].into()
}

fn stable_member(h: &mut Harness) {
    h.client.consume_topics(h.now, ["t"]);
    h.run(|h| !assigned_events(h).is_empty());
}

#[test]
fn a_member_leads_assigns_itself_everything_consumes_from_committed_offsets_and_auto_commits() {
    let mut h = group_harness(200, GroupConfig::new("g"));
    let p0 = log_len(&h, 0);
    assert!(p0 > 3, "partition 0 has records");
    h.cluster.group.committed.insert(("t".into(), 0), 3);
    stable_member(&mut h);
    assert_eq!(
        h.cluster.group.joins,
        ["", "member-1"],
        "KIP-394 rejoin with the given id"
    );
    assert_eq!(
        assigned_events(&h),
        [all_four()],
        "the leader assigned itself everything"
    );
    let got = poll_all(&mut h);
    let first = |p: i32| got.iter().filter(|r| r.0 == p).map(|r| r.1).min();
    assert_eq!(first(0), Some(3), "from the committed offset");
    assert_eq!(first(1), Some(0), "no commit: the reset offset (earliest)");
    assert_eq!(got.len() as i64, 200 - 3);
    // Polled before the latest poll is committed within the next 5 s.
    let _ = consumed(&mut h);
    assert!(h.cluster.group.commits.is_empty() || h.cluster.group.commits.iter().all(|c| c.0 == 1));
    h.run_for(Duration::from_secs(6));
    for p in 0..4 {
        assert_eq!(
            h.cluster.group.committed.get(&("t".to_string(), p)),
            Some(&log_len(&h, p)),
            "partition {p} auto-committed to its end"
        );
    }
    assert!(h.cluster.group.commits.iter().all(|c| c.0 == 1));
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::CommitFinished(c) if c.reason == CommitReason::Auto)));
}

#[test]
fn cooperative_rebalance_revokes_only_what_moved_after_committing_it_and_rejoins() {
    let mut h = group_harness(100, GroupConfig::new("g"));
    stable_member(&mut h);
    poll_all(&mut h);
    // A second member joins; it owns nothing, so the cooperative-sticky
    // leader withholds the two partitions it should get until this member
    // revoked them.
    let topics = ["t".to_string()];
    let other = CooperativeStickyBalancer
        .member_metadata(&JoinSubscription {
            topics: &topics,
            ..Default::default()
        })
        .expect("metadata");
    h.cluster.group.others.push(("member-2".into(), other));
    h.cluster.group.rebalance = true;
    // Records produced now stay buffered for the revoked partitions.
    for i in 100..140 {
        h.produce(keyed(i));
    }
    h.run(|h| !revoked_events(h).is_empty());
    let revoked = revoked_events(&h).remove(0);
    let n: usize = revoked.values().map(Vec::len).sum();
    assert_eq!(n, 2, "only what moved: {revoked:?}");
    // The revoke committed everything polled, in the new generation,
    // before it completed.
    let gen2: Vec<&CommitLogEntry> = h
        .cluster
        .group
        .commits
        .iter()
        .filter(|c| c.0 == 2)
        .collect();
    assert!(!gen2.is_empty(), "{:?}", h.cluster.group.commits);
    let commit_at = h
        .events
        .iter()
        .position(|e| matches!(e, Event::CommitFinished(c) if c.reason == CommitReason::Revoke));
    let revoke_at = h
        .events
        .iter()
        .position(|e| matches!(e, Event::PartitionsRevoked(_)));
    assert!(commit_at < revoke_at, "commit before the revoke completes");
    // It rejoins at once, keeps the rest, and never hands out a record of
    // a revoked partition again.
    h.run_for(Duration::from_secs(1));
    assert_eq!(
        h.cluster.group.joins.len(),
        4,
        "rejoined once after the revoke"
    );
    assert_eq!(h.cluster.group.generation, 3);
    let owned = h.client.group_member().expect("a member").owned().clone();
    assert_eq!(owned.values().map(Vec::len).sum::<usize>(), 2);
    for (p, _) in poll_all(&mut h) {
        assert!(
            !revoked["t"].contains(&p),
            "partition {p} handed out after its revoke"
        );
    }
}

#[test]
fn a_rack_aware_leader_balances_with_the_replica_racks_of_its_metadata() {
    // The scripted cluster puts broker n in rack-n and partition p's only
    // replica on broker p % 3 + 1: rack-2 holds partition 1 alone.
    let mut config = GroupConfig::new("g");
    config.balancers = vec![std::sync::Arc::new(RangeBalancer)];
    config.rack = Some("rack-2".into());
    let mut h = group_harness(0, config);
    let topics = ["t".to_string()];
    let other = RangeBalancer
        .member_metadata(&JoinSubscription {
            topics: &topics,
            rack: Some("rack-1"),
            ..Default::default()
        })
        .expect("metadata");
    // Sorts before the client ("member-1"): plain range would give it
    // partitions 0 and 1, and the client 2 and 3.
    h.cluster.group.others.push(("member-0".into(), other));
    stable_member(&mut h);
    let mine = assigned_events(&h).remove(0);
    assert_eq!(
        mine["t"],
        [1, 2],
        "rack-2's own partition, then one with no rack match (KIP-881)"
    );
}

#[test]
fn a_leader_needing_a_new_topic_s_layout_syncs_without_waiting_for_the_metadata_min_age() {
    let mut h = group_harness(10, GroupConfig::new("g"));
    h.cluster.create_topic("u", 2);
    stable_member(&mut h);
    // Another member subscribes to a topic the leader has never asked
    // about: the leader needs its layout before it can balance.
    let topics = ["t".to_string(), "u".to_string()];
    let other = CooperativeStickyBalancer
        .member_metadata(&JoinSubscription {
            topics: &topics,
            ..Default::default()
        })
        .expect("metadata");
    h.cluster.group.others.push(("member-2".into(), other));
    h.cluster.group.rebalance = true;
    h.run(|h| h.cluster.group.generation == 2);
    let joined = h.now;
    h.run(|h| h.cluster.group.syncs.contains(&2));
    let waited = h.now.since_origin() - joined.since_origin();
    // Before the fix it waited for the metadata min age (5 s after the
    // last refresh), past short session timeouts.
    assert!(
        waited < Duration::from_secs(1),
        "the leader synced {waited:?} after its join"
    );
}

#[test]
fn a_leader_balances_with_metadata_asked_for_after_it_needed_the_layout_not_one_in_flight_before() {
    let mut h = group_harness(10, GroupConfig::new("g"));
    h.cluster.create_topic("u", 2);
    stable_member(&mut h);
    let topics = ["t".to_string(), "u".to_string()];
    let other = CooperativeStickyBalancer
        .member_metadata(&JoinSubscription {
            topics: &topics,
            ..Default::default()
        })
        .expect("metadata");
    h.cluster.group.others.push(("member-2".into(), other));
    h.cluster.group.rebalance = true;
    h.cluster.group.hold_joins = true;
    h.run(|h| !h.cluster.group.held.is_empty());
    // A routine refresh goes out (without `u`, which nobody has asked
    // about yet) and its answer waits behind the held JoinGroup answer.
    h.now = h.now + Duration::from_secs(1);
    h.client.refresh.trigger_urgent();
    h.client.handle_input(h.now, Input::Timeout);
    while let Some(o) = h.client.poll_output(h.now) {
        h.cluster.on_output(o, &mut h.events);
    }
    assert!(h.client.metadata_in_flight, "a refresh is out");
    h.cluster.group.hold_joins = false;
    let join = h.cluster.group.held.pop().expect("the held join answer");
    // The join answer comes first and is acted on (the leader asks for
    // the layout) before the refresh's answer.
    h.client.handle_input(h.now, join);
    while let Some(o) = h.client.poll_output(h.now) {
        h.cluster.on_output(o, &mut h.events);
    }
    let before = h.cluster.group.plans.len();
    h.run(|h| h.cluster.group.plans.len() > before);
    let plan = h.cluster.group.plans.remove(before);
    let assigned: Vec<String> = plan
        .into_iter()
        .flat_map(|(_, a)| {
            crate::group::balancer::protocol::decode_assignment(a)
                .expect("an assignment")
                .partitions
                .into_keys()
        })
        .collect();
    assert!(
        assigned.iter().any(|t| t == "u"),
        "the leader balanced with the refresh that was in flight, which knew nothing of u: {assigned:?}"
    );
}

#[test]
fn the_leader_rebalances_when_a_topic_another_member_subscribes_to_is_created_later() {
    let mut h = group_harness(10, GroupConfig::new("g"));
    let topics = ["t".to_string(), "later".to_string()];
    let other = CooperativeStickyBalancer
        .member_metadata(&JoinSubscription {
            topics: &topics,
            ..Default::default()
        })
        .expect("metadata");
    h.cluster.group.others.push(("member-2".into(), other));
    stable_member(&mut h);
    let plans = |h: &Harness| -> Vec<Vec<String>> {
        h.cluster
            .group
            .plans
            .iter()
            .map(|plan| {
                plan.iter()
                    .flat_map(|(_, a)| {
                        crate::group::balancer::protocol::decode_assignment(a.clone())
                            .expect("an assignment")
                            .partitions
                            .into_keys()
                    })
                    .collect()
            })
            .collect()
    };
    assert_eq!(plans(&h).len(), 1);
    assert!(
        !plans(&h)[0].iter().any(|t| t == "later"),
        "{:?}",
        plans(&h)
    );
    let generation = h.cluster.group.generation;
    h.cluster.create_topic("later", 3);
    // The leader keeps `later` in its metadata requests and sees it at the
    // next routine refresh (metadata_max_age, 5 minutes by default).
    h.run_for(Duration::from_secs(301));
    assert!(
        h.cluster.group.generation > generation,
        "the leader did not rejoin after the topic appeared"
    );
    let last = plans(&h).pop().expect("a plan");
    assert!(
        last.iter().any(|t| t == "later"),
        "the new topic is balanced: {last:?}"
    );
}

#[test]
fn a_client_whose_only_open_connection_is_the_group_s_still_opens_another_for_metadata() {
    let mut h = group_harness(10, GroupConfig::new("g"));
    stable_member(&mut h);
    let group_conn = h.client.group_conn.expect("a group connection");
    // The partitions lose their leaders (so nothing is fetched), then
    // every connection but the group's dies.
    for p in h.cluster.topics.get_mut("t").expect("t").iter_mut() {
        p.leader = -1;
    }
    h.client.refresh.trigger_urgent();
    h.run_for(Duration::from_secs(1));
    let others: Vec<ConnId> = h
        .cluster
        .conns
        .keys()
        .copied()
        .filter(|&c| c != group_conn)
        .collect();
    for c in others {
        h.cluster.drop_conn(c);
    }
    h.run_for(Duration::from_secs(1));
    let answers = h.client.metadata_answers;
    h.client.refresh.trigger_urgent();
    h.run_for(Duration::from_secs(2));
    // Before the fix the open group connection counted as "one is
    // opening", so no other was ever opened: no metadata again, ever (the
    // sim's group swarm, seed 202: a member never fetched its partitions).
    assert!(
        h.client.metadata_answers > answers,
        "no metadata once only the group's connection was left"
    );
}

#[test]
fn commits_during_a_rebalance_wait_for_the_new_generation() {
    let mut config = GroupConfig::new("g");
    config.auto_commit = None;
    let mut h = group_harness(40, config);
    stable_member(&mut h);
    poll_all(&mut h);
    h.cluster.group.hold_joins = true;
    h.cluster.group.rebalance = true;
    h.run(|h| !h.cluster.group.held.is_empty());
    let requests = h.cluster.group.commit_requests;
    let id = h.client.commit_uncommitted_offsets(h.now).expect("a group");
    h.run_for(Duration::from_secs(1));
    assert_eq!(
        h.cluster.group.commit_requests, requests,
        "no commit while joining"
    );
    h.cluster.group.hold_joins = false;
    let held: Vec<Input> = h.cluster.group.held.drain(..).collect();
    h.cluster.inbox.extend(held);
    h.run(|h| {
        h.events
            .iter()
            .any(|e| matches!(e, Event::CommitFinished(c) if c.id == id))
    });
    assert!(h.cluster.group.commit_requests > requests);
    assert!(
        h.cluster.group.commits.iter().all(|c| c.0 == 1 || c.0 == 2),
        "{:?}",
        h.cluster.group.commits
    );
    assert!(
        h.cluster.group.commits.iter().any(|c| c.0 == 2),
        "sent in the new generation"
    );
    for p in 0..4 {
        assert_eq!(
            h.cluster.group.committed.get(&("t".to_string(), p)),
            Some(&log_len(&h, p))
        );
    }
}

#[test]
fn commit_records_commits_past_the_highest_record_of_each_partition() {
    let mut config = GroupConfig::new("g");
    config.auto_commit = None;
    let mut h = group_harness(40, config);
    stable_member(&mut h);
    h.run(|h| h.client.consumer.has_buffered());
    let records: Vec<ConsumedRecord> = consumed(&mut h)
        .into_iter()
        .flat_map(|f| f.records)
        .collect();
    let last = records.last().expect("records").clone();
    let id = h.client.commit_records(h.now, &records).expect("a group");
    h.run(|h| {
        h.events
            .iter()
            .any(|e| matches!(e, Event::CommitFinished(c) if c.id == id))
    });
    let highest = records
        .iter()
        .filter(|r| r.partition == last.partition)
        .map(|r| r.offset)
        .max();
    assert_eq!(
        h.cluster
            .group
            .committed
            .get(&("t".to_string(), last.partition))
            .copied(),
        highest.map(|o| o + 1)
    );
}

#[test]
fn a_join_held_past_the_request_timeout_keeps_its_connection() {
    let mut h = group_harness(10, GroupConfig::new("g"));
    stable_member(&mut h);
    h.cluster.group.hold_joins = true;
    h.cluster.group.rebalance = true;
    h.run(|h| !h.cluster.group.held.is_empty());
    let joins = h.cluster.group.joins.len();
    // The coordinator waits for other members for 40 s, past the 30 s
    // request timeout but within the 60 s rebalance timeout.
    h.run_for(Duration::from_secs(40));
    assert_eq!(
        h.cluster.group.joins.len(),
        joins,
        "the join was not given up"
    );
    h.cluster.group.hold_joins = false;
    let held: Vec<Input> = h.cluster.group.held.drain(..).collect();
    h.cluster.inbox.extend(held);
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.client.group_member().map(Member::generation), Some(2));
    assert!(!h
        .events
        .iter()
        .any(|e| matches!(e, Event::PartitionsLost(_) | Event::PartitionsRevoked(_))));
}

fn close_and_count_leaves(instance_id: Option<&str>) -> (usize, Harness) {
    let mut config = GroupConfig::new("g");
    config.instance_id = instance_id.map(str::to_owned);
    config.auto_commit = None;
    let mut h = group_harness(40, config);
    stable_member(&mut h);
    poll_all(&mut h);
    assert!(h.cluster.group.commits.is_empty(), "auto-commit is off");
    h.client.close(h.now);
    h.run(|h| h.events.contains(&Event::GroupLeft));
    for p in 0..4 {
        assert_eq!(
            h.cluster.group.committed.get(&("t".to_string(), p)),
            Some(&log_len(&h, p)),
            "the blocking commit on close"
        );
    }
    (h.cluster.group.leaves, h)
}

#[test]
fn a_dynamic_member_commits_and_leaves_on_close() {
    let (leaves, h) = close_and_count_leaves(None);
    assert_eq!(leaves, 1);
    assert_eq!(h.cluster.group.joins, ["", "member-1"]);
}

#[test]
fn a_static_member_commits_on_close_and_sends_no_leave_group() {
    let (leaves, h) = close_and_count_leaves(Some("instance-a"));
    assert_eq!(leaves, 0, "KIP-345: no LeaveGroup from a static member");
    assert_eq!(
        h.cluster.group.joins,
        [""],
        "static members join with their instance id at once"
    );
}
