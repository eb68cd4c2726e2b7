//! The custom event loop example (`core/examples/mio_loop.rs`: sansa-core
//! driven by mio, no adapter) against librdkafka's mock cluster and
//! Tansu, so the example the README points to keeps working.

#![allow(clippy::unwrap_used)]

#[path = "../../core/examples/mio_loop.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod example;

use std::collections::BTreeSet;

use sansa_tests::peers::{KafkaPeer, MockCluster, Tansu};

fn round_trip(peer: &dyn KafkaPeer) {
    let topic = "mio-loop";
    peer.create_topic(topic, 3, 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let consumed = example::run(&peer.bootstrap(), topic, 1_000)
        .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
    let values: BTreeSet<String> = consumed
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    let expected: BTreeSet<String> = (0..1_000).map(|i| format!("value-{i}")).collect();
    assert_eq!(consumed.len(), 1_000, "{}: every record once", peer.name());
    assert_eq!(values, expected, "{}", peer.name());
}

#[test]
fn the_mio_loop_example_round_trips_on_the_mock_cluster() {
    round_trip(&MockCluster::new(3).unwrap_or_else(|e| panic!("{e}")));
}

#[test]
fn the_mio_loop_example_round_trips_on_tansu() {
    round_trip(&Tansu::start().unwrap_or_else(|e| panic!("{e}")));
}
