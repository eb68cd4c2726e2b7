//! Replay: the same seed gives the same run, byte for byte, so that a
//! failure found once can be replayed from its seed alone.

use sansa_sim::scenario::Scenario;

/// (trace hash, every trace line) of a full swarm run, faults and known
/// core bugs included: a run that breaks a promise must replay too.
fn trace(seed: u64) -> (u64, Vec<String>) {
    let w = Scenario::swarm(seed).run_world(usize::MAX).expect("builds");
    (w.trace_hash(), w.trace_lines())
}

#[test]
fn the_same_seed_replays_the_same_trace_byte_for_byte() {
    // 29 and 181 break promises (core bugs 1 and 2): failures replay too.
    for seed in [0, 3, 29, 181, 4242] {
        let (hash_a, lines_a) = trace(seed);
        let (hash_b, lines_b) = trace(seed);
        assert!(
            lines_a.len() > 50,
            "seed {seed}: a trivial run proves little"
        );
        assert_eq!(lines_a, lines_b, "seed {seed}: the traces differ");
        assert_eq!(hash_a, hash_b, "seed {seed}: the trace hashes differ");
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let hashes: std::collections::BTreeSet<u64> = (100..120).map(|s| trace(s).0).collect();
    assert_eq!(hashes.len(), 20);
}

#[test]
fn the_trace_hash_does_not_depend_on_keeping_trace_lines() {
    let kept = Scenario::swarm(5)
        .run_world(1000)
        .expect("builds")
        .trace_hash();
    let not_kept = Scenario::swarm(5)
        .run_world(0)
        .expect("builds")
        .trace_hash();
    assert_eq!(kept, not_kept);
}

#[test]
fn a_swarm_run_with_client_faults_and_skewed_clocks_replays_byte_for_byte() {
    // The first seed that turns on stalls, client crashes and coordinator
    // moves, with a client whose clock is off the world's.
    let seed = (0..10_000)
        .find(|&s| {
            let sc = Scenario::swarm(s);
            sc.faults.stalls_per_sec > 0.0
                && sc.faults.client_crashes_per_sec > 0.0
                && sc.faults.coordinator_moves_per_sec > 0.0
                && sc.clients.iter().any(|c| c.clock.drift_ppm != 0)
        })
        .expect("some seed draws every client fault");
    let (hash_a, lines_a) = trace(seed);
    let (hash_b, lines_b) = trace(seed);
    assert!(
        lines_a.len() > 50,
        "seed {seed}: a trivial run proves little"
    );
    assert_eq!(lines_a, lines_b, "seed {seed}: the traces differ");
    assert_eq!(hash_a, hash_b, "seed {seed}: the trace hashes differ");
    let w = Scenario::swarm(seed).run_world(0).expect("builds");
    let kinds = w.faults_applied();
    assert!(
        ["client stall", "client crash", "coordinator move"]
            .iter()
            .any(|k| kinds.contains_key(k)),
        "seed {seed}: no client fault happened: {kinds:?}"
    );
}
