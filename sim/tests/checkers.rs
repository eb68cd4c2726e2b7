//! The invariant checkers bite: for each promise, a broker broken on
//! purpose makes the checker report exactly that promise broken, and the
//! same scenario on a correct broker passes (so the fault alone is not
//! what the checker reacts to).

use std::time::Duration;

use sansa_core::protocol::ErrorCode;
use sansa_sim::cluster::{ProduceFault, Sabotage};
use sansa_sim::scenario::{ClientSpec, Scenario};
use sansa_sim::world::{Fault, NetConfig};
use sansa_sim::Violation;

/// One broker, one partition, one idempotent producer, no random faults.
fn single_partition(seed: u64, records: usize) -> Scenario {
    let mut s = Scenario::quiet(seed);
    s.brokers = 1;
    s.topics = vec![("t".into(), 1, 1)];
    s.clients = vec![ClientSpec {
        keys: None,
        ..ClientSpec::new(records)
    }];
    s.net = NetConfig {
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(5),
        jitter: Duration::ZERO,
    };
    s
}

fn produce_fault(at_ms: u64, fault: ProduceFault) -> (Duration, Fault) {
    (
        Duration::from_millis(at_ms),
        Fault::Produce {
            topic: "t".into(),
            partition: 0,
            fault,
        },
    )
}

/// Runs the scenario on a correct broker (must pass) and on the sabotaged
/// one (must fail); returns the sabotaged run's violations.
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

#[test]
fn a_broker_losing_acknowledged_batches_on_restart_breaks_no_acknowledged_record_lost() {
    let mut s = single_partition(11, 30);
    s.produce_window = Duration::from_millis(300);
    s.scripted = vec![
        (Duration::from_millis(500), Fault::Crash(1)),
        (Duration::from_millis(600), Fault::Restart(1)),
    ];
    s.fault_window = Duration::from_millis(700);
    let v = control_and_sabotage(s, Sabotage::LoseLastBatchOnRestart);
    assert!(
        v.iter()
            .all(|v| matches!(v, Violation::AckedRecordLost { .. })),
        "{v:?}"
    );
    assert!(!v.is_empty());
}

#[test]
fn a_broker_ignoring_sequences_writes_a_retried_batch_twice_and_breaks_no_duplicates() {
    let mut s = single_partition(12, 20);
    // The first batch is written, then the connection drops before the
    // answer: the client must retry it, and only sequence numbers can
    // tell the broker it has it already.
    s.scripted = vec![produce_fault(0, ProduceFault::AppendThenReset)];
    let v = control_and_sabotage(s.clone(), Sabotage::IgnoreSequences);
    assert!(
        v.iter().any(|v| matches!(v, Violation::Duplicate { .. })),
        "{v:?}"
    );
    // On the correct broker the retry was recognised as a duplicate.
    let report = s.run().expect("correct broker");
    assert!(report.duplicates >= 1, "{report:?}");
}

#[test]
fn a_broker_accepting_sequence_gaps_reorders_and_breaks_order() {
    let mut s = single_partition(13, 40);
    // Tiny batches sent at once, five in flight: the second produce fails
    // with a retriable error while the ones behind it are on the wire. A
    // correct broker refuses those (OUT_OF_ORDER_SEQUENCE_NUMBER) until the
    // failed one is back in place; this one appends them, and the retried
    // batch lands after them.
    s.clients = vec![ClientSpec {
        keys: None,
        linger: Duration::ZERO,
        batch_max_bytes: 128,
        max_filler: 0,
        max_in_flight: 5,
        ..ClientSpec::new(40)
    }];
    s.produce_window = Duration::from_millis(20);
    s.scripted = vec![
        produce_fault(0, ProduceFault::Pass),
        produce_fault(
            0,
            ProduceFault::Error {
                code: ErrorCode::NotEnoughReplicas,
                append: false,
            },
        ),
    ];
    let v = control_and_sabotage(s, Sabotage::AcceptSequenceGaps);
    assert!(
        v.iter().any(|v| matches!(v, Violation::OutOfOrder { .. })),
        "{v:?}"
    );
}

#[test]
fn a_broker_writing_a_rejected_batch_later_breaks_failed_records_stay_unwritten() {
    let mut s = single_partition(14, 10);
    s.produce_window = Duration::from_millis(500);
    // The first batch is refused for good; the client fails its records.
    s.scripted = vec![produce_fault(
        0,
        ProduceFault::Error {
            code: ErrorCode::MessageTooLarge,
            append: false,
        },
    )];
    let v = control_and_sabotage(s, Sabotage::AppendRejectedLater);
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::FailedRecordWritten { .. })),
        "{v:?}"
    );
}

#[test]
fn records_left_without_an_outcome_after_healing_break_liveness() {
    let mut s = single_partition(15, 20);
    s.produce_window = Duration::from_millis(1000);
    s.fault_window = Duration::from_millis(100);
    s.settle = Duration::from_secs(60);
    // A crash after the heal is never repaired: what was not delivered
    // before it waits forever (no delivery timeout is set).
    s.scripted = vec![(Duration::from_millis(500), Fault::Crash(1))];
    let f = s.run().expect_err("a dead cluster cannot deliver");
    assert!(
        f.violations
            .iter()
            .all(|v| matches!(v, Violation::Stuck { .. })),
        "{f}"
    );
}

#[test]
fn a_broker_serving_fetches_from_the_wrong_batch_breaks_consumers_skip_nothing() {
    let mut s = single_partition(16, 60);
    s.consumers = 1;
    // Small batches, so the partition holds many of them.
    s.clients[0].batch_max_bytes = 512;
    s.clients[0].max_filler = 100;
    let v = control_and_sabotage(s, Sabotage::FetchSkipsBatch);
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::ConsumerSkipped { .. })),
        "{v:?}"
    );
    assert!(
        v.iter().all(|v| matches!(
            v,
            Violation::ConsumerSkipped { .. } | Violation::ConsumerBehind { .. }
        )),
        "{v:?}"
    );
}
