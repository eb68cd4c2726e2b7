//! The simulated cluster on real sockets serves a client that is not ours:
//! librdkafka produces to it and consumes back, through the same fixture
//! checks as the real peers.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sansa_sim::{ClusterConfig, TcpCluster};
use sansa_tests::peers::librdkafka::{self, check_same_records, numbered_records};

#[test]
fn librdkafka_produces_and_consumes_through_the_simulated_cluster() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let handle = rt.block_on(async {
        let mut server = TcpCluster::bind("127.0.0.1".parse().unwrap(), ClusterConfig::new(3))
            .await
            .expect("bind");
        server
            .cluster_mut()
            .create_topic("through-sim", 4, 3)
            .expect("topic");
        server.spawn()
    });
    let bootstrap = handle.bootstrap();
    let sent = numbered_records(1_000);
    let producer = librdkafka::producer(&bootstrap, &[("enable.idempotence", "true")])
        .expect("librdkafka producer");
    let delivered = librdkafka::produce_blocking(&producer, "through-sim", &sent)
        .unwrap_or_else(|e| panic!("librdkafka produce through the simulator: {e}"));
    assert_eq!(delivered.len(), sent.len());
    let consumed = librdkafka::consume(
        &bootstrap,
        "through-sim",
        sent.len(),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("librdkafka consume through the simulator: {e}"));
    check_same_records(&sent, &consumed).unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(handle.shutdown());
}
