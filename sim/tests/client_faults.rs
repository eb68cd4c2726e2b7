//! Faults of the clients themselves rather than of the cluster: clocks
//! that disagree with the world's, clients stalled for a while, clients
//! that crash and come back, and group coordinators that move. Each test
//! names the fault and the promise that must survive it.

use std::time::Duration;

use sansa_core::client::{Config, Event};
use sansa_sim::cluster::{Sabotage, OFFSETS_TOPIC};
use sansa_sim::world::{ClientClock, Fault, NetConfig, WALL_CLOCK_ORIGIN_MS};
use sansa_sim::{ClusterConfig, Violation, World};

fn world(seed: u64, config: ClusterConfig) -> World {
    let mut w = World::new(
        seed,
        config,
        NetConfig {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(3),
            jitter: Duration::from_millis(1),
        },
    );
    w.cluster_mut().create_topic("t", 2, 1).expect("topic");
    w
}

fn delivered(w: &World, c: usize) -> usize {
    w.events(c)
        .iter()
        .filter(|e| matches!(e, Event::Delivered { .. }))
        .count()
}

/// Every record timestamp in the log written by client `c`'s workload
/// (`c<checker id>-` values).
fn timestamps_of(w: &World, prefix: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for p in w.cluster().topic("t").expect("topic").partitions() {
        for r in p.log().records_from(0).expect("readable") {
            if r.value
                .as_ref()
                .is_some_and(|v| v.starts_with(prefix.as_bytes()))
            {
                out.push(r.timestamp);
            }
        }
    }
    out
}

#[test]
fn skewed_and_drifting_client_clocks_stamp_their_own_time_and_still_deliver() {
    let mut w = world(11, ClusterConfig::new(1));
    let slow_behind = ClientClock {
        origin: Duration::from_secs(7200),
        drift_ppm: -20_000,
        wall_offset_ms: -300_000,
    };
    let fast_ahead = ClientClock {
        origin: Duration::from_secs(5),
        drift_ppm: 20_000,
        wall_offset_ms: 300_000,
    };
    let a = w
        .add_client_with_clock(Config::builder(), slow_behind)
        .expect("a");
    let b = w
        .add_client_with_clock(Config::builder(), fast_ahead)
        .expect("b");
    for i in 0..100 {
        w.produce(a, "t", None, 10).expect("a buffers");
        w.produce(b, "t", None, 10).expect("b buffers");
        if i % 10 == 9 {
            w.run_for(Duration::from_millis(200));
        }
    }
    assert!(w.run_until_idle(Duration::from_secs(60)));
    assert!(w.violations().is_empty(), "{:?}", w.violations());
    assert_eq!(delivered(&w, a), 100);
    assert_eq!(delivered(&w, b), 100);
    let end_ms = (w.now().as_nanos() / 1_000_000) as i64;
    let ta = timestamps_of(&w, "c0-");
    let tb = timestamps_of(&w, "c1-");
    assert_eq!((ta.len(), tb.len()), (100, 100));
    // Each stamped with its own wall clock: five minutes either side of
    // the world's.
    let world_range = WALL_CLOCK_ORIGIN_MS..=WALL_CLOCK_ORIGIN_MS + end_ms;
    for t in &ta {
        assert!(
            (world_range.start() - 300_000..=world_range.end() - 300_000).contains(t),
            "a stamped {t}"
        );
    }
    for t in &tb {
        assert!(
            (world_range.start() + 300_000..=world_range.end() + 300_000 + end_ms / 40).contains(t),
            "b stamped {t}"
        );
    }
}

#[test]
fn the_same_skewed_run_replays_byte_for_byte() {
    let run = || {
        let mut w = world(12, ClusterConfig::new(2));
        let c = w
            .add_client_with_clock(
                Config::builder(),
                ClientClock {
                    origin: Duration::from_secs(99),
                    drift_ppm: 7_777,
                    wall_offset_ms: 12,
                },
            )
            .expect("client");
        for _ in 0..50 {
            w.produce(c, "t", None, 5).expect("buffers");
        }
        w.schedule(
            Duration::from_millis(3),
            Fault::StallClient {
                client: c,
                duration: Duration::from_secs(2),
            },
        );
        assert!(w.run_until_idle(Duration::from_secs(60)));
        (w.trace_hash(), w.steps())
    };
    assert_eq!(run(), run());
}

#[test]
fn a_stalled_client_keeps_its_connections_and_catches_up_without_loss_or_duplicates() {
    let mut w = world(13, ClusterConfig::new(1));
    w.keep_trace_lines(100_000);
    let c = w
        .add_client(Config::builder().request_timeout(Duration::from_secs(1)))
        .expect("client");
    for _ in 0..20 {
        w.produce(c, "t", None, 10).expect("buffers");
    }
    // Stall just after the first requests are written: their answers
    // arrive while the client is not driven, and wait for it.
    w.schedule(
        Duration::from_millis(2),
        Fault::StallClient {
            client: c,
            duration: Duration::from_secs(10),
        },
    );
    w.run_for(Duration::from_secs(5));
    assert!(w.client_stalled(c));
    assert_eq!(delivered(&w, c), 0, "a stalled client hears nothing");
    for _ in 0..20 {
        // The application is stalled too: these produce calls are the
        // test's, made on the client directly.
        w.produce(c, "t", None, 10).expect("buffers while stalled");
    }
    assert!(w.run_until_idle(Duration::from_secs(60)));
    assert!(!w.client_stalled(c));
    assert!(w.violations().is_empty(), "{:?}", w.violations());
    assert_eq!(delivered(&w, c), 40);
    let waited = w
        .trace_lines()
        .iter()
        .any(|l| l.contains("runs again") && !l.contains("; 0 inputs waited"));
    assert!(waited, "answers queued for the stalled client");
    assert_eq!(w.faults_applied().get("client stall"), Some(&1));
}

#[test]
fn a_crashed_client_abandons_its_unacknowledged_records_and_its_restart_delivers_its_own() {
    let mut w = world(14, ClusterConfig::new(1));
    let c = w.add_client(Config::builder()).expect("client");
    for _ in 0..30 {
        w.produce(c, "t", None, 10).expect("buffers");
    }
    // Crash while requests are in flight; restart a second later.
    w.schedule(
        Duration::from_millis(3),
        Fault::CrashClient {
            client: c,
            restart_after: Some(Duration::from_secs(1)),
        },
    );
    w.run_for(Duration::from_millis(500));
    assert!(w.client_crashed(c));
    assert!(
        w.produce(c, "t", None, 0).is_err(),
        "a crashed client refuses"
    );
    assert!(
        w.client_settled(c),
        "its pending records are abandoned, not stuck"
    );
    w.run_for(Duration::from_secs(1));
    assert!(!w.client_crashed(c), "restarted");
    for _ in 0..30 {
        w.produce(c, "t", None, 10)
            .expect("the new incarnation buffers");
    }
    assert!(w.run_until_idle(Duration::from_secs(60)));
    w.check_outcomes();
    assert!(w.violations().is_empty(), "{:?}", w.violations());
    let delivered_after: usize = timestamps_of(&w, "c1-").len();
    assert_eq!(delivered_after, 30, "the restart's records all land once");
    assert_eq!(w.faults_applied().get("client crash"), Some(&1));
    assert_eq!(w.faults_applied().get("client restart"), Some(&1));
}

#[test]
fn a_crashed_client_s_acknowledged_records_are_still_promised() {
    // The crash excuses only what was never acknowledged: a broker that
    // loses an acknowledged batch is still caught.
    let mut config = ClusterConfig::new(1);
    config.sabotage = Sabotage::LoseLastBatchOnRestart;
    let mut w = world(15, config);
    let c = w.add_client(Config::builder()).expect("client");
    for _ in 0..10 {
        w.produce(c, "t", None, 10).expect("buffers");
    }
    assert!(w.run_until_idle(Duration::from_secs(30)));
    assert_eq!(delivered(&w, c), 10);
    w.schedule(
        Duration::ZERO,
        Fault::CrashClient {
            client: c,
            restart_after: None,
        },
    );
    w.schedule(Duration::from_millis(1), Fault::Crash(1));
    w.schedule(Duration::from_millis(2), Fault::Restart(1));
    w.run_for(Duration::from_secs(1));
    assert!(
        w.violations()
            .iter()
            .any(|v| matches!(v, Violation::AckedRecordLost { .. })),
        "{:?}",
        w.violations()
    );
}

#[test]
fn a_coordinator_move_fault_moves_the_group_s_offsets_partition_leader() {
    let mut w = world(16, ClusterConfig::new(3));
    assert!(w.cluster_mut().ensure_offsets_topic());
    let before = w
        .cluster()
        .coordinator_of("my-group")
        .expect("a coordinator");
    w.schedule(
        Duration::ZERO,
        Fault::MoveCoordinator {
            group: "my-group".into(),
        },
    );
    w.run_for(Duration::from_millis(1));
    let after = w
        .cluster()
        .coordinator_of("my-group")
        .expect("a coordinator");
    assert_ne!(before, after);
    let p = w.cluster().offsets_partition_of("my-group");
    let part = w
        .cluster()
        .partition(OFFSETS_TOPIC, p)
        .expect("offsets partition");
    assert_eq!(part.leader_epoch(), 1);
    assert_eq!(w.faults_applied().get("coordinator move"), Some(&1));
}
