//! Transactional producers and read_committed consumers in the world,
//! under faults, with the transaction checkers on every step; and the
//! sabotages that prove each checker bites.
//!
//! Replay one seed: `SANSA_SIM_SEED=<n> cargo test -p sansa-sim --test
//! transactions <test>`.

use std::time::Duration;

use sansa_sim::cluster::Sabotage;
use sansa_sim::scenario::{check_seeds, Scenario, TxnProducerSpec};
use sansa_sim::Violation;

/// One broker-set, one topic, two transactional producers (one in two
/// transactions aborted), two read_committed consumers, one plain
/// consumer, no faults.
fn calm(seed: u64) -> Scenario {
    let mut s = Scenario::quiet(seed);
    s.clients.clear();
    s.topics = vec![("t".into(), 3, 3)];
    s.txn_producers = vec![
        TxnProducerSpec {
            abort_rate: 0.5,
            ..TxnProducerSpec::new(12)
        },
        TxnProducerSpec {
            abort_rate: 0.5,
            ..TxnProducerSpec::new(12)
        },
    ];
    s.committed_consumers = 2;
    s.consumers = 1;
    s
}

#[test]
fn calm_transactions_are_seen_whole_by_read_committed_consumers_and_aborts_never() {
    let reports = check_seeds(
        "--test transactions calm_transactions_are_seen_whole_by_read_committed_consumers_and_aborts_never",
        1,
        5,
        calm,
    );
    for r in &reports {
        assert!(r.txns_committed > 0 && r.txns_aborted > 0, "{r:?}");
    }
}

/// Swarm seeds with transactional producers forced in.
fn txn_swarm(seed: u64) -> Scenario {
    let mut s = Scenario::swarm(seed);
    if s.txn_producers.is_empty() {
        s.txn_producers = vec![TxnProducerSpec::new(6)];
        s.committed_consumers = 1;
        s.faults.txn_errors_per_sec = 1.0;
        s.faults.txn_coordinator_moves_per_sec = 1.0;
    }
    s
}

#[test]
fn transactions_under_random_faults_keep_read_committed_and_whole_commits() {
    let reports = check_seeds(
        "--test transactions transactions_under_random_faults_keep_read_committed_and_whole_commits",
        1000,
        60,
        txn_swarm,
    );
    let committed: usize = reports.iter().map(|r| r.txns_committed).sum();
    let aborted: usize = reports.iter().map(|r| r.txns_aborted).sum();
    let consumed: u64 = reports.iter().map(|r| r.consumed).sum();
    eprintln!(
        "{} seeds: {committed} committed, {aborted} aborted, {consumed} consumed",
        reports.len()
    );
    assert!(committed > 0 && aborted > 0 && consumed > 0);
}

/// Runs `s` on a correct broker (must pass) and on the sabotaged one
/// (must fail); returns the sabotaged run's violations.
fn control_and_sabotage(mut s: Scenario, sabotage: Sabotage) -> Vec<Violation> {
    s.sabotage = Sabotage::None;
    if let Err(f) = s.run() {
        panic!("the correct broker must pass:\n{f}");
    }
    s.sabotage = sabotage;
    match s.run() {
        Ok(r) => panic!("the checker missed {sabotage:?}: {r:?}"),
        Err(f) => {
            eprintln!("{sabotage:?} caught:\n{f}");
            f.violations
        }
    }
}

fn uncommitted_read(v: &[Violation], why: &str) -> bool {
    v.iter()
        .any(|v| matches!(v, Violation::UncommittedRead { why: w, .. } if w.contains(why)))
}

#[test]
fn a_coordinator_that_forgets_an_abort_marker_breaks_read_committed() {
    let v = control_and_sabotage(calm(21), Sabotage::AbortMarkerCommits);
    // The log says committed: only the producer's word tells.
    assert!(uncommitted_read(&v, "not committed"), "{v:?}");
}

#[test]
fn a_fetch_that_omits_the_aborted_transactions_breaks_read_committed() {
    let v = control_and_sabotage(calm(22), Sabotage::FetchOmitsAbortedTxns);
    assert!(uncommitted_read(&v, "ABORT marker"), "{v:?}");
    assert!(
        v.iter()
            .all(|v| matches!(v, Violation::UncommittedRead { .. })),
        "{v:?}"
    );
}

#[test]
fn a_fetch_past_the_last_stable_offset_breaks_read_committed() {
    let mut s = calm(23);
    // Transactions stay open long enough for a fetch to meet them open.
    for p in &mut s.txn_producers {
        p.max_open = Duration::from_millis(800);
    }
    let v = control_and_sabotage(s, Sabotage::FetchIgnoresLastStableOffset);
    assert!(uncommitted_read(&v, "last stable offset"), "{v:?}");
}

#[test]
fn a_coordinator_that_aborts_a_commit_breaks_committed_transactions_appear_whole() {
    let v = control_and_sabotage(calm(24), Sabotage::CommitMarkerAborts);
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::CommittedTxnNotWhole { .. })),
        "{v:?}"
    );
}
