//! Swarm mode: many seeds of a producer workload under random faults,
//! each seed drawing the cluster shape, the clients' settings (producers,
//! consumers, consumer-group members, transactional producers with
//! read_committed consumers, exactly-once pipeline members) and which
//! faults are on at which rate. Every invariant is checked on every step,
//! and liveness once the cluster has healed.
//!
//! Replay one seed: `SANSA_SIM_SEED=<n> cargo test -p sansa-sim --test
//! swarm <test>`; run more: `SANSA_SIM_SEEDS=<count>`; see more of the
//! trace: `SANSA_SIM_TRACE=<lines>`.

use std::collections::BTreeMap;
use std::time::Instant;

use sansa_sim::scenario::{check_seeds, Scenario};

#[test]
fn producer_swarm_keeps_every_promise_under_random_faults() {
    let started = Instant::now();
    let reports = check_seeds(
        "--test swarm producer_swarm_keeps_every_promise_under_random_faults",
        0,
        500,
        Scenario::swarm,
    );
    let secs = started.elapsed().as_secs_f64();
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &reports {
        *totals.entry("delivered").or_default() += r.delivered as u64;
        *totals.entry("consumed").or_default() += r.consumed;
        *totals.entry("failed").or_default() += r.failed as u64;
        *totals.entry("failed but written").or_default() += r.failed_but_written;
        *totals.entry("duplicates recognised").or_default() += r.duplicates;
        *totals.entry("produce faults").or_default() += r.faults_injected;
        *totals.entry("steps").or_default() += r.steps;
        for (kind, n) in &r.faults {
            *totals.entry(kind).or_default() += n;
        }
        if r.group.processed > 0 {
            *totals.entry("group seeds").or_default() += 1;
        }
        if r.requests.contains_key("ConsumerGroupHeartbeat") {
            *totals.entry("group seeds on KIP-848").or_default() += 1;
        }
        *totals.entry("group processed").or_default() += r.group.processed;
        *totals.entry("group duplicates").or_default() += r.group.duplicates;
        *totals.entry("group duplicates across members").or_default() +=
            r.group.duplicates_across_members;
        *totals.entry("group processed by expelled").or_default() += r.group.processed_by_expelled;
        *totals.entry("group commits").or_default() += r.group.commits;
        *totals.entry("group rebalances").or_default() += r.rebalances;
        *totals.entry("group errors injected").or_default() += r.group_faults;
        if r.txns_committed + r.txns_aborted > 0 {
            *totals.entry("txn seeds").or_default() += 1;
        }
        if r.transaction_version >= 2 {
            *totals
                .entry("txn or eos seeds on transactions v2")
                .or_default() += 1;
        }
        *totals.entry("txn committed").or_default() += r.txns_committed as u64;
        *totals.entry("txn aborted").or_default() += r.txns_aborted as u64;
        let widest = totals.entry("group widest duplicate window").or_default();
        *widest = (*widest).max(u64::try_from(r.group.max_duplicate_beyond_commit).unwrap_or(0));
    }
    eprintln!(
        "{} seeds in {secs:.1} s ({:.1} seeds/s): {totals:?}",
        reports.len(),
        reports.len() as f64 / secs
    );
}
