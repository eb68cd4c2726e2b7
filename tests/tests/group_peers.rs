//! How the real peers run a classic group's join round while a member
//! of the previous generation does not rejoin, probed with raw JoinGroup /
//! SyncGroup / Heartbeat requests (no client behaves like these members
//! on purpose; a stuck or killed one does).
//!
//! Two scenarios, each run against every peer:
//! - A member that heartbeats but never rejoins: A joins, syncs as
//!   leader and heartbeats every second from then on, never rejoining;
//!   B joins, which starts a round; B syncs and heartbeats.
//! - The CI case: A joins and syncs, and heartbeats, rejoining when told
//!   to (as a client does); D joins, syncs and dies (no LeaveGroup, as a
//!   killed process); B joins, which starts a round; A rejoins; B syncs
//!   and heartbeats.
//!
//! Kafka's behaviour (the classic `GroupCoordinator`), which each test
//! states and each peer is held to (where a peer differs, the test asserts
//! the difference, names it as a known broker defect, and fails the day
//! the peer no longer shows it, saying to tighten the test):
//! - A member waiting in a join round is never expired: its pending
//!   JoinGroup keeps it alive (`shouldKeepAlive`), and when the round ends
//!   every member's heartbeat expiry is restarted (`onCompleteJoin`).
//! - A member that stops heartbeating is removed when its session timeout
//!   passes, during a round too; the round then ends as soon as every
//!   remaining member has rejoined.
//! - Otherwise the round ends at the rebalance timeout (the longest of its
//!   members'), and members that did not rejoin by then are removed
//!   (`onCompleteJoin`: `notYetRejoinedMembers`), heartbeating or not.
//! - So without A, B leads the next generation alone, A's Heartbeat
//!   answers NONE while the group is stable, REBALANCE_IN_PROGRESS during
//!   the round and UNKNOWN_MEMBER_ID once removed; in the CI case the
//!   round ends at D's session expiry with A leading A and B. Every
//!   SyncGroup and later Heartbeat of the new generation answers NONE.
//!
//! Why it matters: a CI run of `eos.rs` hung on noida-db, where a member
//! that waited in a round longer than its session timeout was told
//! UNKNOWN_MEMBER_ID on its first Heartbeat after a successful SyncGroup;
//! it rejoined under a new id, which started another round lasting the
//! whole rebalance timeout, and so on (`eos.rs` now keeps its rebalance
//! timeout below its session timeout). The CI case here shows it.
//!
//! No peer here does as Kafka does in either scenario; each test's known
//! defect says what the peer does instead. The rebalance timeout is short
//! (8 s, where a client's default is 5 min) so each test runs in 15-20 s;
//! the session timeout is Kafka's minimum (`group.min.session.timeout.ms`,
//! 6 s), which noida-db enforces (INVALID_SESSION_TIMEOUT below it).
//!
//! Real-peer tests run one at a time (`RUST_TEST_THREADS=1`).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansa_core::group::balancer::protocol::{encode_assignment, encode_subscription_at};
use sansa_core::group::balancer::{MemberAssignment, MemberSubscription};
use sansa_core::protocol::messages::join_group_request::JoinGroupRequestProtocol;
use sansa_core::protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use sansa_core::protocol::messages::{
    FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest,
};
use sansa_core::protocol::{ApiKey, ErrorCode};
use sansa_tests::deadline::StopOnPanic;
use sansa_tests::peers::{raw, KafkaPeer, MockCluster, NoidaDb, PeerError, Tansu};
use sansa_tests::progress;

const GROUP: &str = "group-peers";
/// Kafka's smallest allowed session timeout (noida-db refuses a shorter
/// one with INVALID_SESSION_TIMEOUT); B waits in the round longer.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// How long a round waits for members to rejoin: past the session
/// timeout, as a client's default (5 min against 45 s) is.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(8);
/// Between two heartbeats of a member, as a client's heartbeat interval.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long after the last SyncGroup (A's, or in the CI case D's) B
/// joins: A heartbeats in a stable group first, and a round ended by D's
/// session expiry (6 s after its SyncGroup, so 3.8 s after B's join)
/// stays apart from the peers' other round lengths (3, 5 and 8 s).
const B_JOINS_AFTER: Duration = Duration::from_millis(2_200);
/// How long after A's SyncGroup D joins (the CI case): A heartbeats in a
/// stable group first (at 0 and 1 s).
const D_JOINS_AFTER: Duration = Duration::from_millis(1_500);
/// How long A, leading a rejoined generation, takes before its
/// SyncGroup: the followers' SyncGroups arrive first, as they usually do
/// (the mock cluster answers a follower's SyncGroup that arrives after
/// the leader's REBALANCE_IN_PROGRESS, which Kafka does not).
const LEADER_SYNCS_AFTER: Duration = Duration::from_millis(200);
/// When B's first heartbeat follows its SyncGroup: after A's first one
/// in the new generation ([`HEARTBEAT_EVERY`] after A's SyncGroup), so
/// the order of the two does not race.
const B_FIRST_HEARTBEAT_AFTER: Duration = Duration::from_millis(1_500);
/// How many heartbeats B sends after its SyncGroup.
const B_HEARTBEATS: usize = 4;
/// The read timeout of a request the broker answers at once.
const QUICK: Duration = Duration::from_secs(5);
/// The read timeout of a JoinGroup or SyncGroup, which the broker may hold
/// until the round ends: above the rebalance timeout.
const HELD: Duration = Duration::from_secs(20);

/// JoinGroup v5: a version all three peers speak (the mock cluster's
/// JoinGroup goes up to v6 only), with KIP-394's MEMBER_ID_REQUIRED (v4+;
/// noida-db and Tansu ask for it, the mock does not).
const JOIN_GROUP_VERSION: i16 = 5;
/// SyncGroup v3, the one of JoinGroup v5's release.
const SYNC_GROUP_VERSION: i16 = 3;
/// Heartbeat v3, likewise.
const HEARTBEAT_VERSION: i16 = 3;

/// A minimal consumer subscription (version-prefixed, v0) to one topic,
/// as every member's "range" metadata. The topic need not exist: the
/// coordinator does not read it.
fn subscription() -> Bytes {
    let sub = MemberSubscription {
        topics: vec![GROUP.to_owned()],
        ..Default::default()
    };
    encode_subscription_at(&sub, 0).unwrap()
}

/// An empty consumer assignment (version-prefixed). Not empty bytes:
/// Tansu 0.6.0 holds a leader's SyncGroup carrying empty assignment bytes
/// for seconds and then answers REBALANCE_IN_PROGRESS.
fn assignment() -> Bytes {
    encode_assignment(&MemberAssignment::default()).unwrap()
}

/// A member's place in the group after a JoinGroup.
#[derive(Debug, Clone)]
struct Joined {
    member_id: String,
    generation: i32,
    leader: String,
    /// The members the coordinator listed (only the leader gets them).
    members: Vec<String>,
}

/// JoinGroup as a new member, rejoining with the member id a
/// MEMBER_ID_REQUIRED answer hands out (KIP-394); returns the final
/// answer and when that final JoinGroup was sent and answered.
fn join(coordinator: &str, start: Instant) -> (JoinGroupResponse, Duration, Duration) {
    join_with(coordinator, start, String::new())
}

/// [`join`] as `member_id` (a member rejoining; empty for a new one).
fn join_with(
    coordinator: &str,
    start: Instant,
    member_id: String,
) -> (JoinGroupResponse, Duration, Duration) {
    let mut request = join_request(&member_id);
    loop {
        let sent = start.elapsed();
        let response = raw::call(coordinator, JOIN_GROUP_VERSION, &request, HELD)
            .unwrap_or_else(|e| panic!("{e}"));
        let answered = start.elapsed();
        if ErrorCode::from_code(response.error_code) == ErrorCode::MemberIdRequired
            && request.member_id.is_empty()
        {
            request.member_id = response.member_id.clone();
            continue;
        }
        return (response, sent, answered);
    }
}

/// JoinGroup as `member_id` with the probe's timeouts and one "range"
/// protocol.
fn join_request(member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: GROUP.to_owned(),
        session_timeout_ms: i32::try_from(SESSION_TIMEOUT.as_millis()).unwrap(),
        rebalance_timeout_ms: i32::try_from(REBALANCE_TIMEOUT.as_millis()).unwrap(),
        member_id: member_id.to_owned(),
        protocol_type: "consumer".to_owned(),
        protocols: vec![JoinGroupRequestProtocol {
            name: "range".to_owned(),
            metadata: subscription(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// What a JoinGroup answer says of the member, or the error it carried.
fn joined(response: &JoinGroupResponse) -> Result<Joined, ErrorCode> {
    match ErrorCode::from_code(response.error_code) {
        ErrorCode::None => Ok(Joined {
            member_id: response.member_id.clone(),
            generation: response.generation_id,
            leader: response.leader.clone(),
            members: response
                .members
                .iter()
                .map(|m| m.member_id.clone())
                .collect(),
        }),
        other => Err(other),
    }
}

/// SyncGroup for `member`; as leader it assigns every listed member an
/// empty assignment. The error, when there is no answer it can decode,
/// is the reason alone (no address, so that it compares across runs).
fn sync(coordinator: &str, member: &Joined) -> Result<ErrorCode, String> {
    let assignments = if member.leader == member.member_id {
        member
            .members
            .iter()
            .map(|id| SyncGroupRequestAssignment {
                member_id: id.clone(),
                assignment: assignment(),
                ..Default::default()
            })
            .collect()
    } else {
        Vec::new()
    };
    let request = SyncGroupRequest {
        group_id: GROUP.to_owned(),
        generation_id: member.generation,
        member_id: member.member_id.clone(),
        assignments,
        ..Default::default()
    };
    match raw::call(coordinator, SYNC_GROUP_VERSION, &request, HELD) {
        Ok(r) => Ok(ErrorCode::from_code(r.error_code)),
        Err(PeerError::Raw { reason, .. }) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

/// One Heartbeat of `member` in its generation.
fn heartbeat(coordinator: &str, member: &Joined) -> ErrorCode {
    let request = HeartbeatRequest {
        group_id: GROUP.to_owned(),
        generation_id: member.generation,
        member_id: member.member_id.clone(),
        ..Default::default()
    };
    let response = raw::call(coordinator, HEARTBEAT_VERSION, &request, QUICK)
        .unwrap_or_else(|e| panic!("{e}"));
    ErrorCode::from_code(response.error_code)
}

/// Which member an id is, in the scenarios' cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    /// The first member, the leader before the round.
    A,
    /// The member whose JoinGroup starts the round.
    B,
    /// The member that died before the round (the CI case only).
    D,
    /// An id the probe never got.
    Stranger,
}

/// The member ids of the cast, to name ids in answers.
#[derive(Debug, Clone, Default)]
struct Cast {
    a: String,
    b: String,
    d: String,
}

impl Cast {
    fn who(&self, id: &str) -> Who {
        if id == self.a {
            Who::A
        } else if id == self.b {
            Who::B
        } else if !self.d.is_empty() && id == self.d {
            Who::D
        } else {
            Who::Stranger
        }
    }
}

/// What a live member does besides heartbeating every
/// [`HEARTBEAT_EVERY`]: whether it rejoins when its heartbeat answers
/// REBALANCE_IN_PROGRESS (as a client does), or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnRebalance {
    Rejoins,
    NeverRejoins,
}

/// What member A's thread saw, with when (since the scenario's start).
#[derive(Debug, Clone)]
enum AEvent {
    Heartbeat(ErrorCode),
    /// A rejoined (its JoinGroup's answer, or the error it got).
    Rejoined(Result<Joined, ErrorCode>),
    Synced(Result<ErrorCode, String>),
}

/// Heartbeats `a` every [`HEARTBEAT_EVERY`] until `stop`, rejoining
/// (and syncing, assigning as leader) when told to if `on_rebalance`
/// says so; stops early on an answer that would need a fresh join.
fn live_member(
    coordinator: &str,
    start: Instant,
    mut a: Joined,
    on_rebalance: OnRebalance,
    stop: &AtomicBool,
    events: &Mutex<Vec<(Duration, AEvent)>>,
) {
    let note = |e: AEvent| events.lock().unwrap().push((start.elapsed(), e));
    while !stop.load(Ordering::Relaxed) {
        let answer = heartbeat(coordinator, &a);
        note(AEvent::Heartbeat(answer));
        match answer {
            ErrorCode::None => {}
            ErrorCode::RebalanceInProgress if on_rebalance == OnRebalance::Rejoins => {
                let (response, _, _) = join_with(coordinator, start, a.member_id.clone());
                let rejoined = joined(&response);
                note(AEvent::Rejoined(rejoined.clone()));
                let Ok(rejoined) = rejoined else { return };
                if rejoined.leader == rejoined.member_id {
                    std::thread::sleep(LEADER_SYNCS_AFTER);
                }
                let synced = sync(coordinator, &rejoined);
                note(AEvent::Synced(synced.clone()));
                if synced != Ok(ErrorCode::None) {
                    return;
                }
                a = rejoined;
            }
            ErrorCode::RebalanceInProgress => {}
            _ if on_rebalance == OnRebalance::NeverRejoins => {}
            _ => return,
        }
        std::thread::sleep(HEARTBEAT_EVERY);
    }
}

/// Everything the probe saw; times are from the start of the scenario
/// (A's first JoinGroup).
#[derive(Debug)]
struct Round {
    cast: Cast,
    /// The generation before the round.
    generation_before: i32,
    /// When the dead member (the CI case) last heard from the
    /// coordinator: its SyncGroup's answer.
    d_last_seen: Option<Duration>,
    /// The dead member's SyncGroup answer.
    d_sync: Option<Result<ErrorCode, String>>,
    /// When B's (final) JoinGroup was sent, and when it was answered (the
    /// round's end).
    b_join_sent: Duration,
    round_ended: Duration,
    /// B's place in the new generation, or the error its JoinGroup got.
    b: Result<Joined, ErrorCode>,
    /// B's SyncGroup answer, and how long it took.
    b_sync: Option<(Result<ErrorCode, String>, Duration)>,
    /// B's Heartbeat answers, [`HEARTBEAT_EVERY`] apart after its
    /// SyncGroup (sent whatever that answered, to see what the
    /// coordinator thinks of B).
    b_heartbeats: Vec<ErrorCode>,
    /// What A saw from its SyncGroup on.
    a_events: Vec<(Duration, AEvent)>,
}

/// When the round ended, by what ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoundEnd {
    /// At the dead member's session expiry ([`SESSION_TIMEOUT`] after the
    /// coordinator last heard from it).
    AtTheDeadMembersSessionExpiry,
    /// At the rebalance timeout after B's JoinGroup.
    AtTheRebalanceTimeout,
    /// Some other time after B's JoinGroup, in whole seconds.
    AfterSecs(u64),
}

impl Round {
    /// When the round ended, allowing a broker's timer a little slack.
    fn round_end(&self) -> RoundEnd {
        let near = |due: Duration| {
            self.round_ended + Duration::from_millis(300) >= due
                && self.round_ended <= due + Duration::from_millis(900)
        };
        if self
            .d_last_seen
            .is_some_and(|seen| near(seen + SESSION_TIMEOUT))
        {
            RoundEnd::AtTheDeadMembersSessionExpiry
        } else if near(self.b_join_sent + REBALANCE_TIMEOUT) {
            RoundEnd::AtTheRebalanceTimeout
        } else {
            let took = self.round_ended.saturating_sub(self.b_join_sent);
            RoundEnd::AfterSecs(took.as_secs_f64().round() as u64)
        }
    }

    /// The members of B's generation, as its leader was told them: B's
    /// list if B leads, else the list A got when it rejoined into B's
    /// generation; `None` when the leader got none the probe saw.
    fn members(&self) -> Option<Vec<Who>> {
        let b = self.b.as_ref().ok()?;
        let listed = if b.leader == b.member_id {
            Some(b.members.clone())
        } else {
            self.a_events.iter().find_map(|(_, e)| match e {
                AEvent::Rejoined(Ok(a)) if a.generation == b.generation => Some(a.members.clone()),
                _ => None,
            })
        };
        let mut who: Vec<Who> = listed?.iter().map(|id| self.cast.who(id)).collect();
        who.sort();
        Some(who)
    }

    /// What the tests judge: B's join (its error, when the round ended,
    /// the generation, its leader and members), B's sync and heartbeat
    /// answers, and A's heartbeat answers with consecutive repeats
    /// collapsed.
    fn shape(&self) -> Shape {
        let (b_join, next_generation, leader) = match &self.b {
            Ok(b) => (
                ErrorCode::None,
                b.generation == self.generation_before + 1,
                Some(self.cast.who(&b.leader)),
            ),
            Err(e) => (*e, false, None),
        };
        let mut a_heartbeats: Vec<ErrorCode> = self
            .a_events
            .iter()
            .filter_map(|(_, e)| match e {
                AEvent::Heartbeat(code) => Some(*code),
                _ => None,
            })
            .collect();
        a_heartbeats.dedup();
        let a_syncs = self
            .a_events
            .iter()
            .filter_map(|(_, e)| match e {
                AEvent::Synced(answer) => Some(answer.clone()),
                _ => None,
            })
            .collect();
        Shape {
            d_sync: self.d_sync.clone(),
            b_join,
            round_end: self.round_end(),
            next_generation,
            leader,
            members: self.members(),
            b_sync: self.b_sync.as_ref().map(|(answer, _)| answer.clone()),
            b_heartbeats: self.b_heartbeats.clone(),
            a_heartbeats,
            a_syncs,
        }
    }
}

/// The outcome of a scenario, as far as it is asserted.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    /// The dead member's SyncGroup answer, before the round (the CI case).
    d_sync: Option<Result<ErrorCode, String>>,
    b_join: ErrorCode,
    round_end: RoundEnd,
    /// B's generation is the one before the round plus one.
    next_generation: bool,
    /// The leader of B's generation.
    leader: Option<Who>,
    /// Its members, as told to its leader (sorted).
    members: Option<Vec<Who>>,
    b_sync: Option<Result<ErrorCode, String>>,
    b_heartbeats: Vec<ErrorCode>,
    a_heartbeats: Vec<ErrorCode>,
    /// The answers to A's SyncGroups after it rejoined.
    a_syncs: Vec<Result<ErrorCode, String>>,
}

/// Kafka's outcome when A heartbeats but never rejoins: the round ends at
/// the rebalance timeout without A, B leads alone, and A's heartbeats say
/// REBALANCE_IN_PROGRESS during the round and UNKNOWN_MEMBER_ID after.
fn kafka_without_a() -> Shape {
    Shape {
        d_sync: None,
        b_join: ErrorCode::None,
        round_end: RoundEnd::AtTheRebalanceTimeout,
        next_generation: true,
        leader: Some(Who::B),
        members: Some(vec![Who::B]),
        b_sync: Some(Ok(ErrorCode::None)),
        b_heartbeats: vec![ErrorCode::None; B_HEARTBEATS],
        a_heartbeats: vec![
            ErrorCode::None,
            ErrorCode::RebalanceInProgress,
            ErrorCode::UnknownMemberId,
        ],
        a_syncs: Vec::new(),
    }
}

/// Kafka's outcome of the CI case: D's session expires during the round,
/// which then ends (A and B have rejoined) with A leading A and B, and
/// everyone's heartbeats answer NONE in the new generation.
fn kafka_without_d() -> Shape {
    Shape {
        d_sync: Some(Ok(ErrorCode::None)),
        b_join: ErrorCode::None,
        round_end: RoundEnd::AtTheDeadMembersSessionExpiry,
        next_generation: true,
        leader: Some(Who::A),
        members: Some(vec![Who::A, Who::B]),
        b_sync: Some(Ok(ErrorCode::None)),
        b_heartbeats: vec![ErrorCode::None; B_HEARTBEATS],
        // Stable, told of D's round, stable, told of B's round, stable.
        a_heartbeats: vec![
            ErrorCode::None,
            ErrorCode::RebalanceInProgress,
            ErrorCode::None,
            ErrorCode::RebalanceInProgress,
            ErrorCode::None,
        ],
        // Into D's generation, then into B's.
        a_syncs: vec![Ok(ErrorCode::None), Ok(ErrorCode::None)],
    }
}

/// The group coordinator of `peer` (`host:port`), by FindCoordinator v2.
fn coordinator(peer: &dyn KafkaPeer) -> String {
    let bootstrap = peer.bootstrap();
    let first = bootstrap.split(',').next().unwrap();
    let request = FindCoordinatorRequest {
        key: GROUP.to_owned(),
        key_type: 0,
        ..Default::default()
    };
    let r = raw::call(first, 2, &request, QUICK).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.error_code, 0, "{}: {r:?}", peer.name());
    format!("{}:{}", r.host, r.port)
}

/// Runs a scenario against `peer`: A joins and syncs, then heartbeats
/// (rejoining or not as `on_rebalance` says); with `dead_member`, D joins
/// next, syncs and dies; then B joins, syncs and heartbeats.
fn run(peer: &dyn KafkaPeer, on_rebalance: OnRebalance, dead_member: bool) -> Round {
    let name = peer.name();
    let coordinator = coordinator(peer);
    let start = Instant::now();
    let mut cast = Cast::default();

    let (response, _, _) = join(&coordinator, start);
    let a = joined(&response).unwrap_or_else(|e| panic!("{name}: A's join: {e:?} {response:?}"));
    assert_eq!(a.leader, a.member_id, "{name}: A joined an empty group");
    cast.a = a.member_id.clone();
    let a_sync = sync(&coordinator, &a);
    assert_eq!(a_sync, Ok(ErrorCode::None), "{name}: A's sync");
    progress!(
        "{name}: A is {} in generation {}, synced at {:?}; it heartbeats and {on_rebalance:?}",
        a.member_id,
        a.generation,
        start.elapsed()
    );

    let stop = AtomicBool::new(false);
    let a_events = Mutex::new(Vec::new());
    let round = std::thread::scope(|scope| {
        // A failed check below would otherwise hang on A's thread.
        let _stop_a = StopOnPanic::new([&stop]);
        let a_thread = a.clone();
        let (coordinator_ref, stop_ref, events_ref) = (&coordinator, &stop, &a_events);
        scope.spawn(move || {
            live_member(
                coordinator_ref,
                start,
                a_thread,
                on_rebalance,
                stop_ref,
                events_ref,
            );
        });
        let mut generation_before = a.generation;
        let mut d_last_seen = None;
        let mut d_sync_answer = None;
        if dead_member {
            std::thread::sleep(D_JOINS_AFTER);
            let (response, sent, answered) = join(&coordinator, start);
            let d = joined(&response)
                .unwrap_or_else(|e| panic!("{name}: D's join: {e:?} {response:?}"));
            cast.d = d.member_id.clone();
            let d_sync = sync(&coordinator, &d);
            d_last_seen = Some(start.elapsed());
            progress!(
                "{name}: D joined generation {} led by {:?} ({sent:?} to {answered:?}), \
                 synced: {d_sync:?}; D dies now",
                d.generation,
                cast.who(&d.leader)
            );
            generation_before = d.generation;
            d_sync_answer = Some(d_sync);
        }
        std::thread::sleep(B_JOINS_AFTER);
        let (response, b_join_sent, round_ended) = join(&coordinator, start);
        let b = joined(&response);
        if let Ok(b) = &b {
            cast.b = b.member_id.clone();
        }
        progress!(
            "{name}: B's JoinGroup, sent at {b_join_sent:?}, answered at {round_ended:?} \
             (took {:?}): {response:?}",
            round_ended.saturating_sub(b_join_sent)
        );
        let mut b_sync = None;
        let mut b_heartbeats = Vec::new();
        if let Ok(b) = &b {
            let sent = Instant::now();
            let answer = sync(&coordinator, b);
            let took = sent.elapsed();
            progress!("{name}: B's SyncGroup took {took:?}: {answer:?}");
            b_sync = Some((answer, took));
            std::thread::sleep(B_FIRST_HEARTBEAT_AFTER);
            for i in 0..B_HEARTBEATS {
                if i > 0 {
                    std::thread::sleep(HEARTBEAT_EVERY);
                }
                b_heartbeats.push(heartbeat(&coordinator, b));
            }
            progress!("{name}: B's heartbeats: {b_heartbeats:?}");
        }
        stop.store(true, Ordering::Relaxed);
        Round {
            cast: cast.clone(),
            generation_before,
            d_last_seen,
            d_sync: d_sync_answer,
            b_join_sent,
            round_ended,
            b,
            b_sync,
            b_heartbeats,
            a_events: Vec::new(),
        }
    });
    let round = Round {
        a_events: a_events.into_inner().unwrap(),
        ..round
    };
    progress!("{name}: {round:?}");
    progress!("{name}: {:?}", round.shape());
    round
}

/// A known defect: what the peer does wrong, and a test of the outcome
/// that says it (the parts of it that show the defect and are stable from
/// run to run).
type KnownDefect<'a> = (&'a str, &'a dyn Fn(&Shape) -> bool);

/// `kafka`, Kafka's outcome; or with `known_defect` an outcome that
/// differs from Kafka's as the defect says, failing and saying to tighten
/// the test the day the peer is fixed.
fn assert_round(
    peer: &dyn KafkaPeer,
    round: &Round,
    kafka: &Shape,
    known_defect: Option<KnownDefect<'_>>,
) {
    let name = peer.name();
    let shape = round.shape();
    let Some((defect, shows)) = known_defect else {
        assert_eq!(&shape, kafka, "{name}: {round:#?}");
        return;
    };
    assert!(
        &shape != kafka && shows(&shape),
        "{name}: known defect was: {defect}; if it behaves as Kafka does now, tighten this \
         test to expect {kafka:?}: {shape:?} {round:#?}"
    );
    progress!("{name}: known defect: {defect}");
}

fn heartbeats_all(s: &Shape, code: ErrorCode) -> bool {
    !s.b_heartbeats.is_empty() && s.b_heartbeats.iter().all(|c| *c == code)
}

// ----------------------------------------------------------------------
// A member that heartbeats but never rejoins
// ----------------------------------------------------------------------

#[test]
fn a_heartbeating_member_that_never_rejoins_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let round = run(&peer, OnRebalance::NeverRejoins, false);
    let shows = |s: &Shape| {
        s.round_end == RoundEnd::AtTheRebalanceTimeout
            && s.leader == Some(Who::A)
            && s.b_sync == Some(Ok(ErrorCode::RebalanceInProgress))
            && heartbeats_all(s, ErrorCode::UnknownMemberId)
    };
    assert_round(
        &peer,
        &round,
        &kafka_without_a(),
        Some((
            "noida-db 0.2.3 ends the round at the rebalance timeout but keeps A, which never \
             rejoined, in the next generation, as its leader; B, a follower, waits on SyncGroup \
             for an assignment that never comes until its session timeout (6 s), is answered \
             REBALANCE_IN_PROGRESS and is gone: its heartbeats answer UNKNOWN_MEMBER_ID",
            &shows,
        )),
    );
}

#[test]
fn a_heartbeating_member_that_never_rejoins_on_tansu() {
    let peer = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    let round = run(&peer, OnRebalance::NeverRejoins, false);
    let shows = |s: &Shape| {
        s.round_end == RoundEnd::AfterSecs(3)
            && s.leader == Some(Who::A)
            && s.b_sync == Some(Ok(ErrorCode::RebalanceInProgress))
            && !s.a_heartbeats.contains(&ErrorCode::UnknownMemberId)
    };
    assert_round(
        &peer,
        &round,
        &kafka_without_a(),
        Some((
            "Tansu 0.6.0 answers a JoinGroup 3 s after it arrives, whatever the rebalance \
             timeout, and keeps A, which never rejoined, in the next generation, as its leader \
             (A's heartbeats answer REBALANCE_IN_PROGRESS for ever); B, a follower, waits 5 s \
             on SyncGroup for an assignment that never comes and is answered \
             REBALANCE_IN_PROGRESS",
            &shows,
        )),
    );
}

#[test]
fn a_heartbeating_member_that_never_rejoins_on_the_mock_cluster() {
    let mock = MockCluster::new(1).unwrap_or_else(|e| panic!("{e}"));
    let round = run(&mock, OnRebalance::NeverRejoins, false);
    let shows = |s: &Shape| {
        s.round_end == RoundEnd::AfterSecs(5)
            && s.leader == Some(Who::A)
            && s.b_sync == Some(Ok(ErrorCode::RebalanceInProgress))
            && heartbeats_all(s, ErrorCode::RebalanceInProgress)
            && s.a_heartbeats.last() == Some(&ErrorCode::UnknownMemberId)
    };
    assert_round(
        &mock,
        &round,
        &kafka_without_a(),
        Some((
            "librdkafka 2.12.1's mock cluster ends a round its session timeout less 1 s after \
             it began (5 s), ignoring the rebalance timeout, and keeps A, which never rejoined, \
             in the next generation, as its leader, until A's session expires (heartbeats \
             answered REBALANCE_IN_PROGRESS do not keep a member alive there); that expiry \
             aborts B's SyncGroup with REBALANCE_IN_PROGRESS (and a null assignment, which \
             the spec does not allow: see the test of the mock's error answers below)",
            &shows,
        )),
    );
}

/// librdkafka 2.12.1's mock cluster answers errors with nulls in
/// non-nullable fields (JoinGroup's ProtocolName, LeaderId and MemberId,
/// SyncGroup's Assignment; `rdkafka_mock_handlers.c`). sansa's decoder
/// reads them as empty, as franz-go and librdkafka do, so the client
/// sees the error code it must act on; refusing the answer (as it did
/// until this test) closed the connection instead, and a member told
/// UNKNOWN_MEMBER_ID kept its stale id. Fails if the mock starts writing
/// empty values (then the decoder's leniency is no longer exercised here:
/// tighten the test to whatever it writes).
#[test]
fn the_mock_clusters_error_answers_carry_nulls_that_decode_as_empty() {
    let mock = MockCluster::new(1).unwrap_or_else(|e| panic!("{e}"));
    let coordinator = coordinator(&mock);
    let start = Instant::now();
    // A group exists once one member joined.
    let (first, _, _) = join(&coordinator, start);
    assert_eq!(first.error_code, 0, "{first:?}");
    let stranger = Joined {
        member_id: "a-member-the-mock-never-saw".to_owned(),
        generation: first.generation_id,
        leader: String::new(),
        members: Vec::new(),
    };
    // SyncGroup from an unknown member: UNKNOWN_MEMBER_ID, Assignment null.
    assert_eq!(
        sync(&coordinator, &stranger),
        Ok(ErrorCode::UnknownMemberId),
        "SyncGroup of an unknown member"
    );
    // A JoinGroup error (injected: the mock takes any member id):
    // ProtocolName, LeaderId and MemberId null.
    mock.request_errors(ApiKey::JoinGroup, &[ErrorCode::UnknownMemberId])
        .unwrap_or_else(|e| panic!("{e}"));
    let (rejoin, _, _) = join_with(&coordinator, start, stranger.member_id.clone());
    assert_eq!(
        ErrorCode::from_code(rejoin.error_code),
        ErrorCode::UnknownMemberId,
        "{rejoin:?}"
    );
    assert_eq!(
        (
            rejoin.protocol_name.as_deref(),
            rejoin.leader.as_str(),
            rejoin.member_id.as_str()
        ),
        (Some(""), "", ""),
        "the nulls read as empty"
    );
    // A FindCoordinator error: Host null.
    mock.request_errors(
        ApiKey::FindCoordinator,
        &[ErrorCode::CoordinatorNotAvailable],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let request = FindCoordinatorRequest {
        key: GROUP.to_owned(),
        key_type: 0,
        ..Default::default()
    };
    let found = raw::call(&coordinator, 2, &request, QUICK).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (ErrorCode::from_code(found.error_code), found.host.as_str()),
        (ErrorCode::CoordinatorNotAvailable, ""),
        "{found:?}"
    );
    // The same JoinGroup answer read without the decoder: the null is on
    // the wire, as the doc above says. Correlation id, throttle time,
    // error code, generation, then ProtocolName's int16 length.
    mock.request_errors(ApiKey::JoinGroup, &[ErrorCode::UnknownMemberId])
        .unwrap_or_else(|e| panic!("{e}"));
    let raw = raw_join_answer(&coordinator, &stranger.member_id);
    assert_eq!(&raw[8..10], &[0x00, 0x19], "error code 25 in {raw:02x?}");
    assert_eq!(
        &raw[14..16],
        &[0xff, 0xff],
        "ProtocolName null in {raw:02x?}"
    );
}

/// The undecoded bytes of a JoinGroup v5 answer to `member_id`.
fn raw_join_answer(coordinator: &str, member_id: &str) -> Bytes {
    raw::call_undecoded(
        coordinator,
        JOIN_GROUP_VERSION,
        &join_request(member_id),
        QUICK,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

// ----------------------------------------------------------------------
// The CI case: a dead member, and two live ones that rejoin
// ----------------------------------------------------------------------

#[test]
fn a_round_with_a_dead_member_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let round = run(&peer, OnRebalance::Rejoins, true);
    let shows = |s: &Shape| {
        s.round_end == RoundEnd::AtTheRebalanceTimeout
            && s.members == Some(vec![Who::A, Who::B])
            && s.a_syncs.last() == Some(&Ok(ErrorCode::None))
            && s.a_heartbeats.last() == Some(&ErrorCode::UnknownMemberId)
            && s.b_sync == Some(Ok(ErrorCode::None))
            && !s.b_heartbeats.contains(&ErrorCode::None)
    };
    assert_round(
        &peer,
        &round,
        &kafka_without_d(),
        Some((
            "noida-db 0.2.3 does not expire D, dead without LeaveGroup, during the round, so \
             the round lasts the whole rebalance timeout (D is dropped only then); and A, which \
             waited in it longer than its session timeout, is answered UNKNOWN_MEMBER_ID on its \
             first Heartbeat after a successful SyncGroup (Kafka keeps a member waiting in a \
             join alive and restarts every session when the round ends): the CI hang of \
             eos.rs. The round A's removal starts answers B's heartbeats \
             REBALANCE_IN_PROGRESS",
            &shows,
        )),
    );
}

#[test]
fn a_round_with_a_dead_member_on_tansu() {
    let peer = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    let round = run(&peer, OnRebalance::Rejoins, true);
    let shows = |s: &Shape| {
        s.round_end == RoundEnd::AfterSecs(3)
            && s.members == Some(vec![Who::A, Who::B, Who::D])
            && s.b_sync == Some(Ok(ErrorCode::RebalanceInProgress))
    };
    assert_round(
        &peer,
        &round,
        &kafka_without_d(),
        Some((
            "Tansu 0.6.0 answers a JoinGroup 3 s after it arrives, whatever the rebalance \
             timeout, and puts D, which died and never rejoined, in the next generation (its \
             session has not expired yet, where Kafka's round waits for D until it does); B's \
             SyncGroup then waits 5 s and is answered REBALANCE_IN_PROGRESS",
            &shows,
        )),
    );
}

#[test]
fn a_round_with_a_dead_member_on_the_mock_cluster() {
    let mock = MockCluster::new(1).unwrap_or_else(|e| panic!("{e}"));
    let round = run(&mock, OnRebalance::Rejoins, true);
    let kafka = kafka_without_d();
    let shows = |s: &Shape| {
        s.round_end == RoundEnd::AfterSecs(5)
            && Shape {
                round_end: kafka.round_end,
                ..s.clone()
            } == kafka
    };
    assert_round(
        &mock,
        &round,
        &kafka,
        Some((
            "librdkafka 2.12.1's mock cluster ends a round its session timeout less 1 s after \
             it began (5 s), ignoring the rebalance timeout, rather than when D's session \
             expires (about 3.8 s); otherwise it does as Kafka does",
            &shows,
        )),
    );
}
