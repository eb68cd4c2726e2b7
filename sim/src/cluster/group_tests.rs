//! The group coordinator, request by request through the real codecs:
//! several members, each on its own connection, on a clock the test moves.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use sansa_core::protocol::header::{decode_response, encode_request};
use sansa_core::protocol::messages::join_group_request::JoinGroupRequestProtocol;
use sansa_core::protocol::messages::leave_group_request::MemberIdentity;
use sansa_core::protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sansa_core::protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use sansa_core::protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use sansa_core::protocol::messages::{
    DescribeGroupsRequest, FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use sansa_core::protocol::{ErrorCode, Request};

use super::*;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

/// Clients' view of a cluster: connections, what came back on each, and
/// a clock.
struct Net {
    cluster: Cluster,
    now: Timestamp,
    corr: i32,
    inbox: BTreeMap<ServerConnId, VecDeque<Bytes>>,
    closed: Vec<ServerConnId>,
    /// Requests written per connection (by the hostile-input test).
    written: BTreeMap<ServerConnId, usize>,
}

impl Net {
    fn new(brokers: i32) -> Self {
        Self::with(ClusterConfig::new(brokers))
    }

    fn with(mut config: ClusterConfig) -> Self {
        config.groups.offsets_partitions = 8;
        let mut cluster = Cluster::new(config, SimRng::new(9));
        cluster.create_topic("t", 4, 1).expect("topic");
        Net {
            cluster,
            now: Timestamp::ZERO,
            corr: 0,
            inbox: BTreeMap::new(),
            closed: Vec::new(),
            written: BTreeMap::new(),
        }
    }

    fn conn(&mut self, node: NodeId) -> ServerConnId {
        self.cluster.accept(node).expect("broker up")
    }

    fn send<R: Request>(&mut self, conn: ServerConnId, version: i16, body: &R) -> i32 {
        self.corr += 1;
        let mut b = BytesMut::new();
        b.put_i32(0);
        encode_request(&mut b, version, self.corr, Some("cli"), body).expect("encodes");
        let size = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&size.to_be_bytes());
        self.cluster.handle_bytes(self.now, conn, &b);
        self.pump();
        self.corr
    }

    fn pump(&mut self) {
        while let Some(o) = self.cluster.poll_output() {
            match o {
                ClusterOutput::Send { conn, data } => {
                    self.inbox.entry(conn).or_default().push_back(data)
                }
                ClusterOutput::Close { conn } => self.closed.push(conn),
            }
        }
    }

    /// The answer to `corr` on `conn`, if it has come.
    fn try_recv<R: Request>(
        &mut self,
        conn: ServerConnId,
        version: i16,
        corr: i32,
    ) -> Option<R::Response> {
        self.pump();
        let data = self.inbox.get_mut(&conn)?.pop_front()?;
        let (h, body) = decode_response::<R>(data.slice(4..), version).expect("decodes");
        assert_eq!(h.correlation_id, corr, "answers come in request order");
        Some(body)
    }

    fn recv<R: Request>(&mut self, conn: ServerConnId, version: i16, corr: i32) -> R::Response {
        self.try_recv::<R>(conn, version, corr)
            .unwrap_or_else(|| panic!("no answer to {} v{version} on {conn:?}", R::API_KEY.name()))
    }

    fn call<R: Request>(&mut self, conn: ServerConnId, version: i16, body: &R) -> R::Response {
        let corr = self.send(conn, version, body);
        self.recv::<R>(conn, version, corr)
    }

    /// Moves the clock by `d`, firing every cluster deadline on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.cluster.poll_timeout().filter(|&t| t <= end) {
            self.now = self.now.max(t);
            self.cluster.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
        self.cluster.handle_timeout(end);
        self.pump();
    }

    fn coordinator(&mut self, group: &str) -> NodeId {
        let up = self
            .cluster
            .broker_ids()
            .find(|&n| self.cluster.is_up(n))
            .expect("a broker is up");
        let c = self.conn(up);
        let r = self.call(
            c,
            3,
            &FindCoordinatorRequest {
                key: group.into(),
                ..Default::default()
            },
        );
        assert_eq!(r.error_code, 0, "{r:?}");
        r.node_id
    }
}

fn protocols(names: &[&str]) -> Vec<JoinGroupRequestProtocol> {
    names
        .iter()
        .map(|n| JoinGroupRequestProtocol {
            name: (*n).into(),
            metadata: Bytes::from(format!("meta-{n}")),
            ..Default::default()
        })
        .collect()
}

fn join_req(
    v: i16,
    group: &str,
    member: &str,
    instance: Option<&str>,
    p: &[&str],
) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: SESSION.as_millis() as i32,
        rebalance_timeout_ms: if v >= 1 {
            REBALANCE.as_millis() as i32
        } else {
            -1
        },
        member_id: member.into(),
        group_instance_id: if v >= 5 {
            instance.map(Into::into)
        } else {
            None
        },
        protocol_type: "consumer".into(),
        protocols: protocols(p),
        reason: None,
        ..Default::default()
    }
}

fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assign: &[(&str, &str)],
) -> SyncGroupRequest {
    SyncGroupRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        assignments: assign
            .iter()
            .map(|(m, a)| SyncGroupRequestAssignment {
                member_id: (*m).into(),
                assignment: Bytes::from(a.to_string()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn hb(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        ..Default::default()
    }
}

fn err(code: i16) -> ErrorCode {
    ErrorCode::from_code(code)
}

/// A member on its own connection to the coordinator.
struct M {
    conn: ServerConnId,
    id: String,
}

/// KIP-394 at v9: the first JoinGroup gets MEMBER_ID_REQUIRED and an id;
/// the second is parked. Returns the member and the parked correlation id.
fn start_join(net: &mut Net, node: NodeId, group: &str, p: &[&str]) -> (M, i32) {
    let conn = net.conn(node);
    let r = net.call(conn, 9, &join_req(9, group, "", None, p));
    assert_eq!(err(r.error_code), ErrorCode::MemberIdRequired);
    assert!(r.member_id.starts_with("cli-"), "{}", r.member_id);
    let corr = net.send(conn, 9, &join_req(9, group, &r.member_id, None, p));
    (
        M {
            conn,
            id: r.member_id,
        },
        corr,
    )
}

/// Three members joined and synced in generation 1; `ms[0]` leads.
fn three_member_group(net: &mut Net, group: &str) -> (NodeId, Vec<M>) {
    let node = net.coordinator(group);
    let mut ms = Vec::new();
    let mut corrs = Vec::new();
    for _ in 0..3 {
        let (m, corr) = start_join(net, node, group, &["range"]);
        ms.push(m);
        corrs.push(corr);
    }
    // One member joining a new group completes the first join at once;
    // the next two rebalance it again, and the first must rejoin.
    let mut answers: Vec<Option<JoinGroupResponse>> = vec![None, None, None];
    for _ in 0..4 {
        for i in 0..3 {
            if answers[i].is_none() {
                answers[i] = net.try_recv::<JoinGroupRequest>(ms[i].conn, 9, corrs[i]);
                if let Some(a) = &answers[i] {
                    if err(a.error_code) == ErrorCode::None
                        && a.generation_id < 2
                        && net
                            .cluster
                            .group(group)
                            .is_some_and(|g| g.members().count() > 1)
                    {
                        // An early generation: rejoin like a client would
                        // when its heartbeat says REBALANCE_IN_PROGRESS.
                        corrs[i] = net.send(
                            ms[i].conn,
                            9,
                            &join_req(9, group, &ms[i].id, None, &["range"]),
                        );
                        answers[i] = None;
                    }
                }
            }
        }
    }
    let answers: Vec<JoinGroupResponse> = answers
        .into_iter()
        .map(|a| a.expect("every member answered"))
        .collect();
    let gen = answers[0].generation_id;
    for a in &answers {
        assert_eq!(err(a.error_code), ErrorCode::None);
        assert_eq!(a.generation_id, gen);
        assert_eq!(a.leader, ms[0].id, "the first joiner leads");
        assert_eq!(a.protocol_name.as_deref(), Some("range"));
    }
    assert_eq!(answers[0].members.len(), 3, "the leader sees every member");
    assert!(answers[0]
        .members
        .iter()
        .all(|m| m.metadata.as_ref() == b"meta-range"));
    assert!(answers[1].members.is_empty() && answers[2].members.is_empty());
    // Followers sync first and wait for the leader.
    let f1 = net.send(ms[1].conn, 5, &sync_req(group, &ms[1].id, gen, &[]));
    let f2 = net.send(ms[2].conn, 5, &sync_req(group, &ms[2].id, gen, &[]));
    assert!(net
        .try_recv::<SyncGroupRequest>(ms[1].conn, 5, f1)
        .is_none());
    let assign: Vec<(&str, String)> = ms
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), format!("part-{i}")))
        .collect();
    let assign: Vec<(&str, &str)> = assign.iter().map(|(m, a)| (*m, a.as_str())).collect();
    let l = net.call(ms[0].conn, 5, &sync_req(group, &ms[0].id, gen, &assign));
    assert_eq!(l.assignment.as_ref(), b"part-0");
    assert_eq!(l.protocol_name.as_deref(), Some("range"));
    let s1 = net.recv::<SyncGroupRequest>(ms[1].conn, 5, f1);
    let s2 = net.recv::<SyncGroupRequest>(ms[2].conn, 5, f2);
    assert_eq!(s1.assignment.as_ref(), b"part-1");
    assert_eq!(s2.assignment.as_ref(), b"part-2");
    assert_eq!(
        net.cluster.group(group).map(Group::state),
        Some(GroupState::Stable)
    );
    (node, ms)
}

fn generation(net: &Net, group: &str) -> i32 {
    net.cluster.group(group).map_or(-1, Group::generation)
}

#[test]
fn three_members_join_sync_and_heartbeat_in_one_generation() {
    let mut net = Net::new(3);
    let (_, ms) = three_member_group(&mut net, "g");
    let gen = generation(&net, "g");
    for m in &ms {
        let r = net.call(m.conn, 4, &hb("g", &m.id, gen));
        assert_eq!(err(r.error_code), ErrorCode::None);
    }
    // Heartbeats keep them all well past a session timeout.
    for _ in 0..5 {
        net.advance(SESSION / 2);
        for m in &ms {
            let r = net.call(m.conn, 4, &hb("g", &m.id, gen));
            assert_eq!(err(r.error_code), ErrorCode::None);
        }
    }
    assert_eq!(generation(&net, "g"), gen, "no rebalance while all beat");
    let r = net.call(ms[1].conn, 4, &hb("g", &ms[1].id, gen - 1));
    assert_eq!(err(r.error_code), ErrorCode::IllegalGeneration);
    let r = net.call(ms[1].conn, 4, &hb("g", "nobody", gen));
    assert_eq!(err(r.error_code), ErrorCode::UnknownMemberId);
}

#[test]
fn a_join_below_v4_gets_an_id_at_once_and_v4_must_ask_for_one() {
    let mut net = Net::new(1);
    let node = net.coordinator("g");
    for v in 0..=3 {
        let c = net.conn(node);
        let g = format!("old-{v}");
        net.coordinator(&g);
        let r = net.call(c, v, &join_req(v, &g, "", None, &["range"]));
        assert_eq!(err(r.error_code), ErrorCode::None, "v{v}");
        assert_eq!(r.leader, r.member_id);
        assert_eq!(r.generation_id, 1);
    }
    for v in 4..=9 {
        let c = net.conn(node);
        let r = net.call(c, v, &join_req(v, "g", "", None, &["range"]));
        assert_eq!(err(r.error_code), ErrorCode::MemberIdRequired, "v{v}");
        // An id that was never handed out is refused.
        let r2 = net.call(c, v, &join_req(v, "g", "made-up", None, &["range"]));
        assert_eq!(err(r2.error_code), ErrorCode::UnknownMemberId, "v{v}");
        net.call(
            c,
            v.min(5),
            &LeaveGroupRequest {
                group_id: "g".into(),
                member_id: if v.min(5) < 3 {
                    r.member_id.clone()
                } else {
                    String::new()
                },
                members: if v.min(5) >= 3 {
                    vec![MemberIdentity {
                        member_id: r.member_id.clone(),
                        ..Default::default()
                    }]
                } else {
                    Vec::new()
                },
                ..Default::default()
            },
        );
    }
}

#[test]
fn the_protocol_is_chosen_by_vote_among_those_every_member_supports() {
    let mut net = Net::new(1);
    let node = net.coordinator("g");
    let (a, ca) = start_join(&mut net, node, "g", &["roundrobin", "range"]);
    let ra = net.recv::<JoinGroupRequest>(a.conn, 9, ca);
    assert_eq!(ra.protocol_name.as_deref(), Some("roundrobin"));
    // b and c prefer range; all three support it: range wins 2 to 1.
    let (b, cb) = start_join(&mut net, node, "g", &["range", "roundrobin"]);
    let (c, cc) = start_join(&mut net, node, "g", &["range", "roundrobin", "sticky"]);
    let ca = net.send(
        a.conn,
        9,
        &join_req(9, "g", &a.id, None, &["roundrobin", "range"]),
    );
    let ra = net.recv::<JoinGroupRequest>(a.conn, 9, ca);
    let rb = net.recv::<JoinGroupRequest>(b.conn, 9, cb);
    let rc = net.recv::<JoinGroupRequest>(c.conn, 9, cc);
    for r in [&ra, &rb, &rc] {
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
    }
    // A member that shares no protocol with the group is refused.
    let d = net.conn(node);
    let r = net.call(d, 9, &join_req(9, "g", "", None, &["sticky"]));
    assert_eq!(err(r.error_code), ErrorCode::InconsistentGroupProtocol);
    let mut other = join_req(9, "g", "", None, &["range"]);
    other.protocol_type = "connect".into();
    let r = net.call(d, 9, &other);
    assert_eq!(err(r.error_code), ErrorCode::InconsistentGroupProtocol);
    // SyncGroup v5 checks the protocol it names.
    let mut s = sync_req("g", &a.id, ra.generation_id, &[]);
    s.protocol_type = Some("consumer".into());
    s.protocol_name = Some("roundrobin".into());
    let r = net.call(a.conn, 5, &s);
    assert_eq!(err(r.error_code), ErrorCode::InconsistentGroupProtocol);
}

#[test]
fn a_new_member_rebalances_the_group_and_heartbeats_say_so() {
    let mut net = Net::new(3);
    let (node, ms) = three_member_group(&mut net, "g");
    let gen = generation(&net, "g");
    let (d, cd) = start_join(&mut net, node, "g", &["range"]);
    assert!(net.try_recv::<JoinGroupRequest>(d.conn, 9, cd).is_none());
    for m in &ms {
        let r = net.call(m.conn, 4, &hb("g", &m.id, gen));
        assert_eq!(err(r.error_code), ErrorCode::RebalanceInProgress);
    }
    // Commits of the current generation are still allowed while the
    // group prepares (an eager member commits as it revokes).
    let r = net.call(ms[1].conn, 9, &commit("g", &ms[1].id, gen, 0, 5));
    assert_eq!(commit_error(&r), ErrorCode::None);
    let corrs: Vec<i32> = ms
        .iter()
        .map(|m| net.send(m.conn, 9, &join_req(9, "g", &m.id, None, &["range"])))
        .collect();
    let rd = net.recv::<JoinGroupRequest>(d.conn, 9, cd);
    assert_eq!(rd.generation_id, gen + 1);
    assert!(rd.members.is_empty());
    for (m, corr) in ms.iter().zip(corrs) {
        let r = net.recv::<JoinGroupRequest>(m.conn, 9, corr);
        assert_eq!(r.generation_id, gen + 1);
        assert_eq!(r.leader, ms[0].id);
    }
    // Between join and sync, commits are refused.
    let r = net.call(ms[1].conn, 9, &commit("g", &ms[1].id, gen + 1, 0, 6));
    assert_eq!(commit_error(&r), ErrorCode::RebalanceInProgress);
    let r = net.call(ms[1].conn, 4, &hb("g", &ms[1].id, gen + 1));
    assert_eq!(
        err(r.error_code),
        ErrorCode::None,
        "heartbeats are fine after join"
    );
}

#[test]
fn leave_and_session_expiry_rebalance_the_members_left() {
    let mut net = Net::new(3);
    let (_, ms) = three_member_group(&mut net, "g");
    let gen = generation(&net, "g");
    let r = net.call(
        ms[2].conn,
        5,
        &LeaveGroupRequest {
            group_id: "g".into(),
            members: vec![MemberIdentity {
                member_id: ms[2].id.clone(),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    assert_eq!(err(r.error_code), ErrorCode::None);
    assert_eq!(err(r.members[0].error_code), ErrorCode::None);
    assert_eq!(
        net.cluster.group("g").map(Group::state),
        Some(GroupState::PreparingRebalance)
    );
    let c0 = net.send(
        ms[0].conn,
        9,
        &join_req(9, "g", &ms[0].id, None, &["range"]),
    );
    let c1 = net.send(
        ms[1].conn,
        9,
        &join_req(9, "g", &ms[1].id, None, &["range"]),
    );
    let r0 = net.recv::<JoinGroupRequest>(ms[0].conn, 9, c0);
    net.recv::<JoinGroupRequest>(ms[1].conn, 9, c1);
    assert_eq!(r0.generation_id, gen + 1);
    assert_eq!(r0.members.len(), 2);
    let gen = gen + 1;
    net.call(ms[0].conn, 5, &sync_req("g", &ms[0].id, gen, &[]));
    net.call(ms[1].conn, 5, &sync_req("g", &ms[1].id, gen, &[]));
    // Member 1 goes silent; member 0 beats. One session later member 1
    // is gone and the group rebalances without it.
    for _ in 0..4 {
        net.advance(SESSION / 3);
        let r = net.call(ms[0].conn, 4, &hb("g", &ms[0].id, gen));
        if err(r.error_code) == ErrorCode::RebalanceInProgress {
            break;
        }
        assert_eq!(err(r.error_code), ErrorCode::None);
    }
    let g = net.cluster.group("g").expect("group");
    assert!(g.member(&ms[1].id).is_none(), "the silent member expired");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let r = net.call(
        ms[0].conn,
        9,
        &join_req(9, "g", &ms[0].id, None, &["range"]),
    );
    assert_eq!(r.generation_id, gen + 1);
    assert_eq!(r.members.len(), 1);
    let r = net.call(ms[1].conn, 4, &hb("g", &ms[1].id, gen));
    assert_eq!(err(r.error_code), ErrorCode::UnknownMemberId);
}

#[test]
fn the_rebalance_timeout_removes_a_member_that_does_not_rejoin() {
    let mut net = Net::new(3);
    let (node, ms) = three_member_group(&mut net, "g");
    let gen = generation(&net, "g");
    let (_d, cd) = start_join(&mut net, node, "g", &["range"]);
    // Members 0 and 1 rejoin; member 2 keeps heartbeating but never
    // rejoins (a consumer stuck in its revoke callback).
    let c0 = net.send(
        ms[0].conn,
        9,
        &join_req(9, "g", &ms[0].id, None, &["range"]),
    );
    let c1 = net.send(
        ms[1].conn,
        9,
        &join_req(9, "g", &ms[1].id, None, &["range"]),
    );
    for _ in 0..5 {
        net.advance(REBALANCE / 6);
        assert!(net
            .try_recv::<JoinGroupRequest>(ms[0].conn, 9, c0)
            .is_none());
        let r = net.call(ms[2].conn, 4, &hb("g", &ms[2].id, gen));
        assert_eq!(err(r.error_code), ErrorCode::RebalanceInProgress);
    }
    net.advance(REBALANCE / 6 + Duration::from_millis(1));
    let r0 = net.recv::<JoinGroupRequest>(ms[0].conn, 9, c0);
    net.recv::<JoinGroupRequest>(ms[1].conn, 9, c1);
    net.recv::<JoinGroupRequest>(_d.conn, 9, cd);
    assert_eq!(r0.generation_id, gen + 1);
    assert_eq!(r0.members.len(), 3, "the slow member was left out");
    assert!(r0.members.iter().all(|m| m.member_id != ms[2].id));
    let r = net.call(ms[2].conn, 4, &hb("g", &ms[2].id, gen));
    assert_eq!(err(r.error_code), ErrorCode::UnknownMemberId);
}

#[test]
fn members_that_do_not_sync_in_time_are_removed_and_the_group_rebalances() {
    let mut net = Net::new(1);
    let node = net.coordinator("g");
    let (a, ca) = start_join(&mut net, node, "g", &["range"]);
    net.recv::<JoinGroupRequest>(a.conn, 9, ca);
    let (b, cb) = start_join(&mut net, node, "g", &["range"]);
    let ca = net.send(a.conn, 9, &join_req(9, "g", &a.id, None, &["range"]));
    let ra = net.recv::<JoinGroupRequest>(a.conn, 9, ca);
    let rb = net.recv::<JoinGroupRequest>(b.conn, 9, cb);
    assert_eq!(ra.leader, a.id);
    // The follower syncs and waits; the leader heartbeats (which is
    // fine after a join) but never syncs.
    let sb = net.send(b.conn, 5, &sync_req("g", &b.id, rb.generation_id, &[]));
    for _ in 0..6 {
        net.advance(REBALANCE / 6 - Duration::from_millis(1));
        assert!(net.try_recv::<SyncGroupRequest>(b.conn, 5, sb).is_none());
        let h = net.call(a.conn, 4, &hb("g", &a.id, ra.generation_id));
        assert_eq!(err(h.error_code), ErrorCode::None);
    }
    net.advance(Duration::from_millis(10));
    let r = net.recv::<SyncGroupRequest>(b.conn, 5, sb);
    assert_eq!(err(r.error_code), ErrorCode::RebalanceInProgress);
    let g = net.cluster.group("g").expect("group");
    assert!(
        g.member(&a.id).is_none(),
        "the leader that did not sync is gone"
    );
    assert!(g.member(&b.id).is_some());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let r = net.call(b.conn, 9, &join_req(9, "g", &b.id, None, &["range"]));
    assert_eq!(r.leader, b.id, "the member left leads");
    assert_eq!(r.generation_id, rb.generation_id + 1);
}

#[test]
fn a_static_member_rejoining_replaces_its_old_id_which_is_then_fenced() {
    let mut net = Net::new(1);
    let node = net.coordinator("g");
    let a = net.conn(node);
    let b = net.conn(node);
    // Static members skip MEMBER_ID_REQUIRED.
    let ca = net.send(a, 9, &join_req(9, "g", "", Some("inst-a"), &["range"]));
    let ra = net.recv::<JoinGroupRequest>(a, 9, ca);
    assert_eq!(err(ra.error_code), ErrorCode::None);
    assert!(ra.member_id.starts_with("inst-a-"));
    let cb = net.send(b, 9, &join_req(9, "g", "", Some("inst-b"), &["range"]));
    let ca = net.send(
        a,
        9,
        &join_req(9, "g", &ra.member_id, Some("inst-a"), &["range"]),
    );
    let ra = net.recv::<JoinGroupRequest>(a, 9, ca);
    let rb = net.recv::<JoinGroupRequest>(b, 9, cb);
    let gen = ra.generation_id;
    assert_eq!(ra.leader, ra.member_id);
    assert_eq!(ra.members.len(), 2);
    assert!(ra
        .members
        .iter()
        .any(|m| m.group_instance_id.as_deref() == Some("inst-b")));
    let mut s = sync_req(
        "g",
        &ra.member_id,
        gen,
        &[(&ra.member_id, "A"), (&rb.member_id, "B")],
    );
    s.group_instance_id = Some("inst-a".into());
    net.call(a, 5, &s);
    let mut s = sync_req("g", &rb.member_id, gen, &[]);
    s.group_instance_id = Some("inst-b".into());
    assert_eq!(net.call(b, 5, &s).assignment.as_ref(), b"B");

    // b restarts: same instance id, no member id. No rebalance.
    let b2 = net.conn(node);
    let r = net.call(b2, 9, &join_req(9, "g", "", Some("inst-b"), &["range"]));
    assert_eq!(err(r.error_code), ErrorCode::None);
    assert_ne!(r.member_id, rb.member_id);
    assert_eq!(r.generation_id, gen, "a static rejoin does not rebalance");
    assert!(!r.skip_assignment);
    assert_eq!(generation(&net, "g"), gen);
    let mut s = sync_req("g", &r.member_id, gen, &[]);
    s.group_instance_id = Some("inst-b".into());
    assert_eq!(
        net.call(b2, 5, &s).assignment.as_ref(),
        b"B",
        "it keeps its assignment"
    );
    // The old incarnation is fenced everywhere.
    let mut h = hb("g", &rb.member_id, gen);
    h.group_instance_id = Some("inst-b".into());
    assert_eq!(
        err(net.call(b, 4, &h).error_code),
        ErrorCode::FencedInstanceId
    );
    let mut c = commit("g", &rb.member_id, gen, 0, 1);
    c.group_instance_id = Some("inst-b".into());
    assert_eq!(
        commit_error(&net.call(b, 9, &c)),
        ErrorCode::FencedInstanceId
    );
    let mut s = sync_req("g", &rb.member_id, gen, &[]);
    s.group_instance_id = Some("inst-b".into());
    assert_eq!(
        err(net.call(b, 5, &s).error_code),
        ErrorCode::FencedInstanceId
    );

    // KIP-814: the static leader rejoins at v9 and may skip assigning.
    let a2 = net.conn(node);
    let r = net.call(a2, 9, &join_req(9, "g", "", Some("inst-a"), &["range"]));
    assert_eq!(err(r.error_code), ErrorCode::None);
    assert_eq!(r.leader, r.member_id, "the new id leads");
    assert!(r.skip_assignment);
    assert_eq!(r.members.len(), 2);
    assert_eq!(generation(&net, "g"), gen);
    // Before v9 the old leader id is named instead, so it does not assign.
    let a3 = net.conn(node);
    let r8 = net.call(a3, 8, &join_req(8, "g", "", Some("inst-a"), &["range"]));
    assert_eq!(r8.leader, r.member_id);
    assert_ne!(r8.member_id, r8.leader);
    assert!(r8.members.is_empty());

    // Leaving by instance id alone (an administrator's removal).
    let l = net.call(
        a3,
        5,
        &LeaveGroupRequest {
            group_id: "g".into(),
            members: vec![MemberIdentity {
                member_id: String::new(),
                group_instance_id: Some("inst-b".into()),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    assert_eq!(err(l.members[0].error_code), ErrorCode::None);
    assert_eq!(
        net.cluster.group("g").map(Group::state),
        Some(GroupState::PreparingRebalance)
    );
}

fn commit(
    group: &str,
    member: &str,
    generation: i32,
    partition: i32,
    offset: i64,
) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: generation,
        member_id: member.into(),
        topics: vec![OffsetCommitRequestTopic {
            name: "t".into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: partition,
                committed_offset: offset,
                committed_leader_epoch: 0,
                committed_metadata: Some(format!("m{offset}")),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn commit_error(r: &sansa_core::protocol::messages::OffsetCommitResponse) -> ErrorCode {
    err(r.topics[0].partitions[0].error_code)
}

#[test]
fn offset_commits_follow_the_generation_and_membership_rules() {
    let mut net = Net::new(3);
    let (_, ms) = three_member_group(&mut net, "g");
    let gen = generation(&net, "g");
    let c = ms[0].conn;
    let ok = net.call(c, 9, &commit("g", &ms[0].id, gen, 1, 42));
    assert_eq!(commit_error(&ok), ErrorCode::None);
    let stale = net.call(c, 9, &commit("g", &ms[0].id, gen - 1, 1, 43));
    assert_eq!(commit_error(&stale), ErrorCode::IllegalGeneration);
    let stranger = net.call(c, 9, &commit("g", "stranger", gen, 1, 44));
    assert_eq!(commit_error(&stranger), ErrorCode::UnknownMemberId);
    // A simple commit (no generation) to a group with members is refused.
    let simple = net.call(c, 9, &commit("g", "", -1, 1, 45));
    assert_eq!(commit_error(&simple), ErrorCode::UnknownMemberId);
    let mut unknown_topic = commit("g", &ms[0].id, gen, 1, 46);
    unknown_topic.topics[0].name = "nope".into();
    let r = net.call(c, 9, &unknown_topic);
    assert_eq!(commit_error(&r), ErrorCode::UnknownTopicOrPartition);
    let mut big = commit("g", &ms[0].id, gen, 1, 47);
    big.topics[0].partitions[0].committed_metadata = Some("x".repeat(5000));
    assert_eq!(
        commit_error(&net.call(c, 9, &big)),
        ErrorCode::OffsetMetadataTooLarge
    );
    let committed = net
        .cluster
        .group("g")
        .and_then(|g| g.committed("t", 1).cloned());
    assert_eq!(
        committed.map(|o| o.offset),
        Some(42),
        "refused commits change nothing"
    );

    // A simple consumer commits to a group no one has joined, at every
    // version; a generation for a group that does not exist is refused.
    let node = net.coordinator("simple");
    let s = net.conn(node);
    for v in 0..=9 {
        let r = net.call(s, v, &commit_at(v, "simple", 2, i64::from(v) * 10));
        assert_eq!(commit_error(&r), ErrorCode::None, "v{v}");
    }
    let r = net.call(s, 9, &commit("ghost", "m", 3, 0, 1));
    let ghost_error = commit_error(&r);
    assert!(
        matches!(
            ghost_error,
            ErrorCode::IllegalGeneration | ErrorCode::NotCoordinator
        ),
        "{ghost_error:?}"
    );
    let g = net.cluster.group("simple").expect("created by the commit");
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.committed("t", 2).map(|o| o.offset), Some(90));
}

/// A simple commit valid at `v`.
fn commit_at(v: i16, group: &str, partition: i32, offset: i64) -> OffsetCommitRequest {
    let mut r = commit(group, "", -1, partition, offset);
    if v == 0 {
        r.generation_id_or_member_epoch = -1;
    }
    if !(2..=4).contains(&v) {
        r.retention_time_ms = -1;
    }
    if v < 6 {
        r.topics[0].partitions[0].committed_leader_epoch = -1;
    }
    if v != 1 {
        r.topics[0].partitions[0].commit_timestamp = -1;
    }
    r
}

#[test]
fn offset_fetch_returns_what_was_committed_at_every_version() {
    let mut net = Net::new(3);
    let node = net.coordinator("g");
    assert_eq!(net.coordinator("h"), net.coordinator("h"));
    let c = net.conn(node);
    net.call(c, 9, &commit("g", "", -1, 0, 7));
    net.call(c, 9, &commit("g", "", -1, 3, 9));
    for v in 0..=7 {
        let r = net.call(
            c,
            v,
            &OffsetFetchRequest {
                group_id: "g".into(),
                topics: Some(vec![OffsetFetchRequestTopic {
                    name: "t".into(),
                    partition_indexes: vec![0, 1, 3],
                    ..Default::default()
                }]),
                require_stable: v >= 7,
                ..Default::default()
            },
        );
        assert_eq!(r.error_code, 0, "v{v}");
        let got: Vec<(i32, i64)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.committed_offset))
            .collect();
        assert_eq!(got, vec![(0, 7), (1, -1), (3, 9)], "v{v}");
        if v >= 5 {
            assert_eq!(r.topics[0].partitions[0].committed_leader_epoch, 0);
        }
        assert_eq!(r.topics[0].partitions[0].metadata.as_deref(), Some("m7"));
    }
    // Null topics: everything committed (v2+).
    let r = net.call(
        c,
        2,
        &OffsetFetchRequest {
            group_id: "g".into(),
            topics: None,
            ..Default::default()
        },
    );
    assert_eq!(r.topics[0].partitions.len(), 2);
    // v8+: several groups at once, one on another coordinator maybe.
    let other = net.coordinator("h");
    for v in 8..=9 {
        let r = net.call(
            c,
            v,
            &OffsetFetchRequest {
                groups: vec![
                    OffsetFetchRequestGroup {
                        group_id: "g".into(),
                        topics: Some(vec![OffsetFetchRequestTopics {
                            name: "t".into(),
                            partition_indexes: vec![3],
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    OffsetFetchRequestGroup {
                        group_id: "h".into(),
                        topics: None,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
        );
        assert_eq!(r.groups.len(), 2);
        assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 9);
        let h = err(r.groups[1].error_code);
        if other == node {
            assert_eq!(h, ErrorCode::None);
            assert!(r.groups[1].topics.is_empty());
        } else {
            assert_eq!(h, ErrorCode::NotCoordinator);
        }
    }
}

#[test]
fn the_coordinator_moves_with_its_offsets_partition_leader() {
    let mut net = Net::new(3);
    let node = net.coordinator("g");
    let (a, ca) = start_join(&mut net, node, "g", &["range"]);
    let ra = net.recv::<JoinGroupRequest>(a.conn, 9, ca);
    let gen = ra.generation_id;
    net.call(a.conn, 5, &sync_req("g", &a.id, gen, &[(&a.id, "x")]));
    net.call(a.conn, 9, &commit("g", &a.id, gen, 0, 11));
    // A second member's join is parked when the leader moves.
    let (b, cb) = start_join(&mut net, node, "g", &["range"]);
    assert!(net.try_recv::<JoinGroupRequest>(b.conn, 9, cb).is_none());
    let partition = net.cluster.offsets_partition_of("g");
    let to = net
        .cluster
        .move_leader(OFFSETS_TOPIC, partition, None)
        .expect("moved");
    assert_ne!(to, node);
    let rb = net.recv::<JoinGroupRequest>(b.conn, 9, cb);
    assert_eq!(err(rb.error_code), ErrorCode::NotCoordinator);
    let r = net.call(a.conn, 4, &hb("g", &a.id, gen));
    assert_eq!(err(r.error_code), ErrorCode::NotCoordinator);
    let r = net.call(a.conn, 9, &commit("g", &a.id, gen, 0, 12));
    assert_eq!(commit_error(&r), ErrorCode::NotCoordinator);
    assert_eq!(
        net.coordinator("g"),
        to,
        "FindCoordinator follows the leader"
    );
    // At the new coordinator the group is as it was.
    let a2 = net.conn(to);
    let r = net.call(a2, 4, &hb("g", &a.id, gen));
    assert_eq!(err(r.error_code), ErrorCode::RebalanceInProgress);
    let r = net.call(
        a2,
        9,
        &OffsetFetchRequest {
            groups: vec![OffsetFetchRequestGroup {
                group_id: "g".into(),
                topics: None,
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 11);
    // A crash of the new coordinator moves it again.
    assert!(net.cluster.crash(to));
    assert_ne!(net.coordinator("g"), to);
    // ListGroups and DescribeGroups answer at the coordinator only.
    let now_at = net.coordinator("g");
    let d = net.conn(now_at);
    let l = net.call(d, 5, &ListGroupsRequest::default());
    assert!(l
        .groups
        .iter()
        .any(|g| g.group_id == "g" && g.group_type == "classic"));
    let unknown = (0..1000)
        .map(|i| format!("unknown-{i}"))
        .find(|u| net.cluster.coordinator_of(u) == Some(now_at))
        .expect("some name lands on this coordinator");
    let r = net.call(
        d,
        5,
        &DescribeGroupsRequest {
            groups: vec!["g".into(), unknown],
            ..Default::default()
        },
    );
    assert_eq!(r.groups[0].group_state, "PreparingRebalance");
    assert_eq!(r.groups[0].members.len(), 2, "b joined before the move");
    assert_eq!(r.groups[1].group_state, "Dead");
}

#[test]
fn find_coordinator_answers_batched_keys_at_v4_and_refuses_other_key_types() {
    let mut net = Net::new(3);
    let c = net.conn(2);
    for v in 4..=6 {
        let r = net.call(
            c,
            v,
            &FindCoordinatorRequest {
                key_type: 0,
                coordinator_keys: vec!["a".into(), "b".into(), String::new()],
                ..Default::default()
            },
        );
        assert_eq!(r.coordinators.len(), 3);
        for k in &r.coordinators[..2] {
            assert_eq!(k.error_code, 0);
            assert_eq!(Some(k.node_id), net.cluster.coordinator_of(&k.key));
            assert_eq!(k.host, format!("broker-{}", k.node_id));
        }
        assert_eq!(err(r.coordinators[2].error_code), ErrorCode::InvalidRequest);
    }
    let r = net.call(
        c,
        3,
        &FindCoordinatorRequest {
            key: "share".into(),
            key_type: 2,
            ..Default::default()
        },
    );
    assert_eq!(err(r.error_code), ErrorCode::InvalidRequest);
    let t = net.cluster.topic(OFFSETS_TOPIC).expect("created on demand");
    assert_eq!(t.partitions().len(), 8);
}

#[test]
fn the_initial_rebalance_delay_gathers_members_starting_together() {
    let mut config = ClusterConfig::new(1);
    config.groups.initial_rebalance_delay = Duration::from_secs(3);
    let mut net = Net::with(config);
    let node = net.coordinator("g");
    let (a, ca) = start_join(&mut net, node, "g", &["range"]);
    net.advance(Duration::from_secs(2));
    assert!(net.try_recv::<JoinGroupRequest>(a.conn, 9, ca).is_none());
    let (b, cb) = start_join(&mut net, node, "g", &["range"]);
    net.advance(Duration::from_secs(2));
    assert!(
        net.try_recv::<JoinGroupRequest>(a.conn, 9, ca).is_none(),
        "a new member extends the delay"
    );
    net.advance(Duration::from_secs(4));
    let ra = net.recv::<JoinGroupRequest>(a.conn, 9, ca);
    let rb = net.recv::<JoinGroupRequest>(b.conn, 9, cb);
    assert_eq!(ra.generation_id, 1, "one generation for both");
    assert_eq!(rb.generation_id, 1);
    assert_eq!(ra.members.len(), 2);
}

// ----------------------------------------------------------------------
// Hostile input
// ----------------------------------------------------------------------

/// Short ids from a tiny alphabet, so that random requests collide on the
/// same groups and members.
fn small_id() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[ab]{1,2}", "cli-[ab]{0,1}"]
}

#[derive(Debug, Clone)]
enum Op {
    Join(i16, String, String, Option<String>, i32, i32, Vec<String>),
    Sync(i16, String, String, i32, Vec<(String, Vec<u8>)>),
    Heartbeat(i16, String, String, i32),
    Leave(i16, String, String, Option<String>),
    Commit(i16, String, String, i32, i32, i64),
    Fetch(i16, String, Option<i32>),
    Find(i16, String, i8),
    Describe(i16, Vec<String>),
    List(i16),
    Advance(u64),
    MoveLeader(i32),
    Garbage(u16, Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let group = prop_oneof![Just("g".to_owned()), small_id()];
    prop_oneof![
        (
            0i16..=9,
            group.clone(),
            small_id(),
            proptest::option::of(small_id()),
            prop_oneof![Just(10_000), any::<i32>()],
            prop_oneof![Just(30_000), any::<i32>()],
            proptest::collection::vec("[rs]{0,2}", 0..3)
        )
            .prop_map(|(v, g, m, i, s, r, p)| Op::Join(v, g, m, i, s, r, p)),
        (
            0i16..=5,
            group.clone(),
            small_id(),
            -1i32..4,
            proptest::collection::vec(
                (small_id(), proptest::collection::vec(any::<u8>(), 0..8)),
                0..3
            )
        )
            .prop_map(|(v, g, m, gen, a)| Op::Sync(v, g, m, gen, a)),
        (0i16..=4, group.clone(), small_id(), -1i32..4)
            .prop_map(|(v, g, m, gen)| Op::Heartbeat(v, g, m, gen)),
        (
            0i16..=5,
            group.clone(),
            small_id(),
            proptest::option::of(small_id())
        )
            .prop_map(|(v, g, m, i)| Op::Leave(v, g, m, i)),
        (
            0i16..=9,
            group.clone(),
            small_id(),
            -1i32..4,
            -2i32..6,
            any::<i64>()
        )
            .prop_map(|(v, g, m, gen, p, o)| Op::Commit(v, g, m, gen, p, o)),
        (0i16..=9, group.clone(), proptest::option::of(-2i32..6))
            .prop_map(|(v, g, p)| Op::Fetch(v, g, p)),
        (0i16..=6, group.clone(), -1i8..3).prop_map(|(v, g, k)| Op::Find(v, g, k)),
        (0i16..=5, proptest::collection::vec(group, 0..3)).prop_map(|(v, g)| Op::Describe(v, g)),
        (0i16..=5).prop_map(Op::List),
        (0u64..40_000).prop_map(Op::Advance),
        (0i32..8).prop_map(Op::MoveLeader),
        (
            prop_oneof![
                Just(8u16),
                Just(9),
                Just(10),
                Just(11),
                Just(12),
                Just(13),
                Just(14),
                Just(15),
                Just(16)
            ],
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(k, b)| Op::Garbage(k, b)),
    ]
}

impl Net {
    /// Sends `body` if it encodes at `v` (absurd field values may not).
    fn try_send<R: Request>(&mut self, conn: ServerConnId, v: i16, body: &R) {
        self.corr += 1;
        let mut b = BytesMut::new();
        b.put_i32(0);
        if encode_request(&mut b, v, self.corr, Some("cli"), body).is_err() {
            return;
        }
        let size = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&size.to_be_bytes());
        *self.written.entry(conn).or_default() += 1;
        self.cluster.handle_bytes(self.now, conn, &b);
        self.pump();
    }

    fn run(&mut self, conns: &[ServerConnId], i: usize, op: Op) {
        let conn = conns[i % conns.len()];
        match op {
            Op::Join(v, g, m, inst, s, r, p) => {
                let mut req = join_req(v, &g, &m, inst.as_deref(), &[]);
                req.session_timeout_ms = s;
                if v >= 1 {
                    req.rebalance_timeout_ms = r;
                }
                req.protocols = p
                    .iter()
                    .map(|n| JoinGroupRequestProtocol {
                        name: n.clone(),
                        metadata: Bytes::from(n.clone()),
                        ..Default::default()
                    })
                    .collect();
                self.try_send(conn, v, &req);
            }
            Op::Sync(v, g, m, gen, a) => {
                let mut req = sync_req(&g, &m, gen, &[]);
                req.assignments = a
                    .into_iter()
                    .map(|(m, b)| SyncGroupRequestAssignment {
                        member_id: m,
                        assignment: Bytes::from(b),
                        ..Default::default()
                    })
                    .collect();
                self.try_send(conn, v, &req);
            }
            Op::Heartbeat(v, g, m, gen) => self.try_send(conn, v, &hb(&g, &m, gen)),
            Op::Leave(v, g, m, inst) => {
                let req = LeaveGroupRequest {
                    group_id: g,
                    member_id: if v < 3 { m.clone() } else { String::new() },
                    members: if v >= 3 {
                        vec![MemberIdentity {
                            member_id: m,
                            group_instance_id: inst,
                            ..Default::default()
                        }]
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                };
                self.try_send(conn, v, &req);
            }
            Op::Commit(v, g, m, gen, p, o) => {
                let mut req = commit_at(v, &g, p, o);
                if v >= 1 {
                    req.generation_id_or_member_epoch = gen;
                    req.member_id = m;
                }
                self.try_send(conn, v, &req);
            }
            Op::Fetch(v, g, p) => {
                let topics = p.map(|p| {
                    vec![OffsetFetchRequestTopic {
                        name: "t".into(),
                        partition_indexes: vec![p],
                        ..Default::default()
                    }]
                });
                let req = if v >= 8 {
                    OffsetFetchRequest {
                        groups: vec![OffsetFetchRequestGroup {
                            group_id: g,
                            topics: topics.map(|ts| {
                                ts.into_iter()
                                    .map(|t| OffsetFetchRequestTopics {
                                        name: t.name,
                                        partition_indexes: t.partition_indexes,
                                        ..Default::default()
                                    })
                                    .collect()
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                } else {
                    OffsetFetchRequest {
                        group_id: g,
                        topics,
                        ..Default::default()
                    }
                };
                self.try_send(conn, v, &req);
            }
            Op::Find(v, g, k) => {
                let req = if v >= 4 {
                    FindCoordinatorRequest {
                        key_type: k,
                        coordinator_keys: vec![g],
                        ..Default::default()
                    }
                } else {
                    FindCoordinatorRequest {
                        key: g,
                        key_type: if v >= 1 { k } else { 0 },
                        ..Default::default()
                    }
                };
                self.try_send(conn, v, &req);
            }
            Op::Describe(v, g) => self.try_send(
                conn,
                v,
                &DescribeGroupsRequest {
                    groups: g,
                    ..Default::default()
                },
            ),
            Op::List(v) => self.try_send(conn, v, &ListGroupsRequest::default()),
            Op::Advance(ms) => self.advance(Duration::from_millis(ms)),
            Op::MoveLeader(p) => {
                self.cluster.move_leader(OFFSETS_TOPIC, p, None);
                self.pump();
            }
            Op::Garbage(key, bytes) => {
                // A request header for a group API, then noise.
                let mut b = BytesMut::new();
                b.put_i32(0);
                b.put_i16(key as i16);
                b.put_i16((bytes.first().copied().unwrap_or(0) % 10) as i16);
                b.put_i32(1);
                b.put_i16(-1);
                b.extend_from_slice(&bytes);
                let size = (b.len() - 4) as i32;
                b[..4].copy_from_slice(&size.to_be_bytes());
                // Answered if it decodes, else the connection closes.
                *self.written.entry(conn).or_default() += 1;
                self.cluster.handle_bytes(self.now, conn, &b);
                self.pump();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever group requests come, in whatever order, at whatever
    /// time: no panic, every answer encodes, the timers stay finite, and
    /// a group never has two leaders or a leader that is not a member.
    #[test]
    fn random_group_requests_never_panic_and_keep_the_group_consistent(
        ops in proptest::collection::vec((0usize..4, op()), 1..60)
    ) {
        let mut net = Net::new(2);
        net.cluster.ensure_offsets_topic();
        let mut conns: Vec<ServerConnId> = (0..4).map(|i| net.conn(1 + i % 2)).collect();
        for (i, op) in ops {
            net.run(&conns, i, op);
            // Garbage closes connections: open new ones in their place.
            for c in conns.iter_mut() {
                if !net.cluster.is_connected(*c) {
                    *c = net.conn(1 + (c.0 % 2) as i32);
                }
            }
            prop_assert_eq!(net.cluster.stats().encode_failures, 0);
            for g in net.cluster.groups() {
                if let Some(l) = g.leader() {
                    prop_assert!(g.member(l).is_some(), "leader {} not a member of {}", l, g.id());
                }
                if g.state() == GroupState::Empty {
                    prop_assert_eq!(g.members().count(), 0);
                }
            }
        }
        // Time heals: every parked answer is given within the longest
        // rebalance timeout, so every request on a connection still open
        // has its answer, and members nobody beats for are gone.
        net.advance(Duration::from_secs(30 * 24 * 3600));
        for g in net.cluster.groups() {
            prop_assert!(g.members().count() == 0, "{} kept members nobody beats for", g.id());
        }
        for (conn, &n) in &net.written {
            if net.cluster.is_connected(*conn) {
                let answered = net.inbox.get(conn).map_or(0, VecDeque::len);
                prop_assert_eq!(answered, n, "unanswered requests on {:?}", conn);
            }
        }
    }
}

#[test]
fn describe_and_list_groups_encode_a_populated_group_at_every_version() {
    let mut net = Net::new(1);
    let node = net.coordinator("g");
    let c = net.conn(node);
    let r = net.call(c, 9, &join_req(9, "g", "", Some("inst"), &["range"]));
    net.call(c, 5, &{
        let mut s = sync_req("g", &r.member_id, r.generation_id, &[(&r.member_id, "A")]);
        s.group_instance_id = Some("inst".into());
        s
    });
    for v in 0..=5 {
        let d = net.call(
            c,
            v,
            &DescribeGroupsRequest {
                groups: vec!["g".into()],
                include_authorized_operations: v >= 3,
                ..Default::default()
            },
        );
        let g = &d.groups[0];
        assert_eq!(g.group_state, "Stable", "v{v}");
        assert_eq!(g.protocol_data, "range");
        assert_eq!(g.members[0].member_assignment.as_ref(), b"A");
        assert_eq!(g.members[0].member_metadata.as_ref(), b"meta-range");
        assert_eq!(
            g.members[0].group_instance_id.as_deref(),
            (v >= 4).then_some("inst"),
            "v{v}"
        );
        let mut req = ListGroupsRequest::default();
        if v >= 4 {
            req.states_filter = vec!["stable".into()];
        }
        let l = net.call(c, v, &req);
        assert_eq!(l.groups.len(), 1, "v{v}");
        assert_eq!(l.groups[0].protocol_type, "consumer");
        if v >= 4 {
            req.states_filter = vec!["Empty".into()];
            assert!(
                net.call(c, v, &req).groups.is_empty(),
                "v{v} filters by state"
            );
        }
    }
    assert_eq!(net.cluster.stats().encode_failures, 0);
}

#[test]
fn leave_group_takes_one_member_below_v3_and_a_batch_from_v3() {
    let mut net = Net::new(2);
    let node = net.coordinator("g");
    let mut ids = Vec::new();
    for _ in 0..4 {
        let c = net.conn(node);
        // v3 joins get an id at once and complete a generation alone or
        // park; the ids are what matter here.
        let corr = net.send(c, 3, &join_req(3, "g", "", None, &["range"]));
        let _ = net.try_recv::<JoinGroupRequest>(c, 3, corr);
        ids.push(c);
    }
    let members: Vec<String> = net
        .cluster
        .group("g")
        .expect("group")
        .members()
        .map(|m| m.id().to_owned())
        .collect();
    assert_eq!(members.len(), 4);
    let c = net.conn(node);
    let r = net.call(
        c,
        2,
        &LeaveGroupRequest {
            group_id: "g".into(),
            member_id: members[0].clone(),
            ..Default::default()
        },
    );
    assert_eq!(err(r.error_code), ErrorCode::None);
    let r = net.call(
        c,
        4,
        &LeaveGroupRequest {
            group_id: "g".into(),
            members: vec![
                MemberIdentity {
                    member_id: members[1].clone(),
                    ..Default::default()
                },
                MemberIdentity {
                    member_id: "nobody".into(),
                    ..Default::default()
                },
                MemberIdentity {
                    member_id: members[2].clone(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    let codes: Vec<ErrorCode> = r.members.iter().map(|m| err(m.error_code)).collect();
    assert_eq!(
        codes,
        vec![ErrorCode::None, ErrorCode::UnknownMemberId, ErrorCode::None]
    );
    let left: Vec<String> = net
        .cluster
        .group("g")
        .expect("group")
        .members()
        .map(|m| m.id().to_owned())
        .collect();
    assert_eq!(left, vec![members[3].clone()]);
    // A leave at a broker that is not the coordinator.
    let other = if node == 1 { 2 } else { 1 };
    let c = net.conn(other);
    let r = net.call(
        c,
        1,
        &LeaveGroupRequest {
            group_id: "g".into(),
            member_id: members[3].clone(),
            ..Default::default()
        },
    );
    assert_eq!(err(r.error_code), ErrorCode::NotCoordinator);
}

#[test]
fn requests_queued_behind_a_parked_join_are_answered_when_the_coordinator_moves() {
    let mut net = Net::new(3);
    let node = net.coordinator("g");
    let (a, ca) = start_join(&mut net, node, "g", &["range"]);
    net.recv::<JoinGroupRequest>(a.conn, 9, ca);
    let (b, cb) = start_join(&mut net, node, "g", &["range"]);
    // Kafka reads a connection's requests one at a time: b's heartbeat
    // waits behind its parked join.
    let hb_corr = net.send(b.conn, 4, &hb("g", &b.id, 1));
    assert!(net.try_recv::<JoinGroupRequest>(b.conn, 9, cb).is_none());
    let p = net.cluster.offsets_partition_of("g");
    net.cluster
        .move_leader(OFFSETS_TOPIC, p, None)
        .expect("moved");
    // No further input: both answers come from the move itself.
    let j = net.recv::<JoinGroupRequest>(b.conn, 9, cb);
    assert_eq!(err(j.error_code), ErrorCode::NotCoordinator);
    let h = net.recv::<HeartbeatRequest>(b.conn, 4, hb_corr);
    assert_eq!(err(h.error_code), ErrorCode::NotCoordinator);
}

// ----------------------------------------------------------------------
// KIP-848
// ----------------------------------------------------------------------

/// The highest ConsumerGroupHeartbeat version served.
const CGH_V: i16 = ApiKey::ConsumerGroupHeartbeat.max_stable_version();

fn kip848_net() -> Net {
    let mut config = ClusterConfig::new(1);
    config.groups.consumer_protocol = true;
    Net::with(config)
}

fn cgh(
    member: &str,
    epoch: i32,
    owned: Option<Vec<i32>>,
    topic: Uuid,
) -> sansa_core::protocol::messages::ConsumerGroupHeartbeatRequest {
    use sansa_core::protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    sansa_core::protocol::messages::ConsumerGroupHeartbeatRequest {
        group_id: "k".into(),
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: if epoch == 0 { 5000 } else { -1 },
        subscribed_topic_names: (epoch == 0).then(|| vec!["t".into()]),
        topic_partitions: owned.map(|ps| {
            vec![TopicPartitions {
                topic_id: topic,
                partitions: ps,
                ..Default::default()
            }]
        }),
        ..Default::default()
    }
}

#[test]
fn consumer_group_heartbeat_is_advertised_and_served_only_when_the_kip848_coordinator_is_on() {
    use sansa_core::protocol::messages::ApiVersionsRequest;
    let key = ApiKey::ConsumerGroupHeartbeat.key();
    let mut classic = Net::new(1);
    let c = classic.conn(1);
    let r = classic.call(c, 3, &ApiVersionsRequest::default());
    assert!(r.api_keys.iter().all(|k| k.api_key != key));
    let topic = classic.cluster.topic("t").expect("t").id();
    classic.send(c, CGH_V, &cgh("m", 0, Some(vec![]), topic));
    assert!(classic.closed.contains(&c), "an API not served closes");

    let mut on = kip848_net();
    let c = on.conn(1);
    let r = on.call(c, 3, &ApiVersionsRequest::default());
    assert!(r.api_keys.iter().any(|k| k.api_key == key));
}

#[test]
fn kip848_members_get_epochs_and_assignments_and_commits_are_checked_against_the_member_epoch() {
    let mut net = kip848_net();
    let node = net.coordinator("k");
    let c = net.conn(node);
    let topic = net.cluster.topic("t").expect("t").id();
    let a = net.call(c, CGH_V, &cgh("a", 0, Some(vec![]), topic));
    assert_eq!(err(a.error_code), ErrorCode::None);
    assert!(a.member_epoch > 0);
    let given = a.assignment.expect("an assignment");
    assert_eq!(given.topic_partitions[0].topic_id, topic);
    assert_eq!(given.topic_partitions[0].partitions, vec![0, 1, 2, 3]);
    let epoch = a.member_epoch;

    let stale = net.call(c, 9, &commit("k", "a", epoch + 1, 0, 5));
    assert_eq!(commit_error(&stale), ErrorCode::StaleMemberEpoch);
    let unknown = net.call(c, 9, &commit("k", "zz", epoch, 0, 5));
    assert_eq!(commit_error(&unknown), ErrorCode::UnknownMemberId);
    let ok = net.call(c, 9, &commit("k", "a", epoch, 0, 5));
    assert_eq!(commit_error(&ok), ErrorCode::None);
    let fetch = |member: &str, epoch: i32| OffsetFetchRequest {
        groups: vec![OffsetFetchRequestGroup {
            group_id: "k".into(),
            member_id: Some(member.into()),
            member_epoch: epoch,
            topics: None,
            ..Default::default()
        }],
        ..Default::default()
    };
    let f = net.call(c, 9, &fetch("a", epoch + 1));
    assert_eq!(err(f.groups[0].error_code), ErrorCode::StaleMemberEpoch);
    let f = net.call(c, 9, &fetch("a", epoch));
    assert_eq!(err(f.groups[0].error_code), ErrorCode::None);

    // A stale epoch is fenced; an unknown member is told so.
    let fenced = net.call(c, CGH_V, &cgh("a", epoch + 3, None, topic));
    assert_eq!(err(fenced.error_code), ErrorCode::FencedMemberEpoch);
    let unknown = net.call(c, CGH_V, &cgh("zz", 4, None, topic));
    assert_eq!(err(unknown.error_code), ErrorCode::UnknownMemberId);

    // A classic join is refused while KIP-848 members are in the group.
    let j = net.call(c, 5, &join_req(5, "k", "", None, &["range"]));
    assert_eq!(err(j.error_code), ErrorCode::InconsistentGroupProtocol);

    // The leave answers epoch -1 and the member is gone.
    let left = net.call(c, CGH_V, &cgh("a", -1, None, topic));
    assert_eq!(err(left.error_code), ErrorCode::None);
    assert_eq!(left.member_epoch, -1);
    assert!(net.cluster.group("k").is_none_or(|g| !g.has_member("a")));
}

#[test]
fn a_kip848_member_silent_past_the_session_timeout_is_expelled() {
    let mut net = kip848_net();
    let node = net.coordinator("k");
    let c = net.conn(node);
    let topic = net.cluster.topic("t").expect("t").id();
    let a = net.call(c, CGH_V, &cgh("a", 0, Some(vec![]), topic));
    assert!(net.cluster.group("k").expect("k").has_member("a"));
    net.advance(net.cluster.config().groups.consumer_session_timeout + Duration::from_millis(1));
    assert!(net.cluster.group("k").is_none_or(|g| !g.has_member("a")));
    let again = net.call(c, CGH_V, &cgh("a", a.member_epoch, None, topic));
    assert_eq!(err(again.error_code), ErrorCode::UnknownMemberId);
}
