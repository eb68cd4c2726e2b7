//! Scripted reproductions of the core bugs the simulator found, kept as
//! regression tests now that they are fixed. Each states the promise it
//! expects.

use std::time::Duration;

use sansa_core::protocol::ErrorCode;
use sansa_sim::cluster::ProduceFault;
use sansa_sim::scenario::{ClientSpec, Scenario, TxnProducerSpec};
use sansa_sim::world::{Fault, NetConfig};

fn one_broker(seed: u64, partitions: i32, client: ClientSpec) -> Scenario {
    let mut s = Scenario::quiet(seed);
    s.brokers = 1;
    s.topics = vec![("t".into(), partitions, 1)];
    s.clients = vec![client];
    s.net = NetConfig {
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(5),
        jitter: Duration::ZERO,
    };
    s
}

fn fault(partition: i32, fault: ProduceFault) -> (Duration, Fault) {
    (
        Duration::ZERO,
        Fault::Produce {
            topic: "t".into(),
            partition,
            fault,
        },
    )
}

/// Bug 1. The first batch is written but answered REQUEST_TIMED_OUT; with
/// no retries allowed the client fails it (fair: it cannot know), then
/// sends the next record with the same producer id, epoch and sequence 0.
/// The broker takes it for a retry of the first batch and answers with
/// offset 0: the record is reported delivered and was never written.
#[test]
fn failing_a_possibly_written_batch_never_lets_its_sequence_acknowledge_other_records() {
    let mut s = one_broker(
        101,
        1,
        ClientSpec {
            keys: None,
            record_retries: Some(0),
            ..ClientSpec::new(5)
        },
    );
    s.produce_window = Duration::from_millis(500);
    s.scripted = vec![fault(
        0,
        ProduceFault::Error {
            code: ErrorCode::RequestTimedOut,
            append: true,
        },
    )];
    if let Err(f) = s.run_with_trace(80) {
        panic!("{f}");
    }
}

/// Bug 2. One produce request carries a batch for each of two
/// partitions: partition 0's is written but answered
/// NOT_ENOUGH_REPLICAS_AFTER_APPEND (retry it), partition 1's is answered
/// OUT_OF_ORDER_SEQUENCE_NUMBER with a log start past everything
/// acknowledged (truncation: take a new epoch, KIP-360). The client takes a
/// new producer id before partition 0's batch is resolved and retries it
/// under the new id at sequence 0, so the broker writes it a second time.
#[test]
fn a_new_producer_id_never_duplicates_a_batch_in_doubt_on_another_partition() {
    let mut s = one_broker(
        102,
        2,
        ClientSpec {
            keys: Some(8),
            ..ClientSpec::new(16)
        },
    );
    s.produce_window = Duration::from_millis(1);
    s.scripted = vec![
        fault(
            0,
            ProduceFault::Error {
                code: ErrorCode::NotEnoughReplicasAfterAppend,
                append: true,
            },
        ),
        fault(
            1,
            ProduceFault::Error {
                code: ErrorCode::OutOfOrderSequenceNumber,
                append: false,
            },
        ),
    ];
    if let Err(f) = s.run_with_trace(80) {
        panic!("{f}");
    }
}

/// Swarm seed 2157: a batch answered NOT_ENOUGH_REPLICAS_AFTER_APPEND
/// (written, but in doubt to the client) kept being resent while new
/// batches of the partition went out behind it; once five of those were
/// appended the broker no longer recognised the resend as a duplicate,
/// answered OUT_OF_ORDER_SEQUENCE_NUMBER, and the producer, taking that as
/// "not written", wrote it again under a new epoch. A partition with a
/// batch in doubt now sends nothing new until the doubt is settled.
#[test]
fn new_batches_wait_while_an_earlier_one_is_in_doubt() {
    if let Err(f) = sansa_sim::scenario::Scenario::swarm(2157).run() {
        panic!("{f}");
    }
}

/// Swarm seed 6201: retention removed every record of a producer from a
/// partition while two of its batches were in flight; the broker, having
/// forgotten the producer, accepted the second with a sequence gap, and the
/// first landed after it. No client can keep order then; the checker's
/// order promise now excludes records produced before the broker accepted
/// the producer again (as its duplicate rule excludes forgotten producers).
#[test]
fn a_producer_forgotten_by_retention_may_land_out_of_order() {
    if let Err(f) = sansa_sim::scenario::Scenario::swarm(6201).run() {
        panic!("{f}");
    }
}

/// Transactions swarm seed 1040: UNKNOWN_PRODUCER_ID answered a
/// partition's first batch inside a transaction. The producer kept the
/// batch for a retry under a new epoch (KIP-360), but a transactional
/// producer gets its new epoch only after the transaction ends; the commit
/// turned into an abort, and the abort waited for the producer to settle:
/// forever, the batch stuck and the transaction never ended. An aborting
/// transaction now fails the batches stranded that way (not in flight;
/// anything an earlier attempt wrote is under the abort marker).
#[test]
fn an_abort_does_not_wait_for_a_batch_stranded_by_a_broken_sequence() {
    let mut s = one_broker(31, 1, ClientSpec::new(0));
    s.clients.clear();
    s.txn_producers = vec![TxnProducerSpec {
        abort_rate: 0.0,
        ..TxnProducerSpec::new(4)
    }];
    s.committed_consumers = 1;
    s.scripted = vec![fault(
        0,
        ProduceFault::Error {
            code: ErrorCode::UnknownProducerId,
            append: false,
        },
    )];
    let r = s.run().unwrap_or_else(|f| panic!("{f}"));
    // The first transaction aborts (its sequence broke); the rest commit.
    assert_eq!((r.txns_aborted, r.txns_committed), (1, 3), "{r:?}");
}
