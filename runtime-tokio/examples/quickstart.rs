//! The quickstart: produce records, then consume exactly those records back.
//!
//! ```text
//! cargo run --release -p sansa-tokio --example quickstart            # embedded simulated cluster
//! KAFKA_BROKERS=localhost:9092 cargo run --release -p sansa-tokio --example quickstart
//! ```
//!
//! With `KAFKA_BROKERS` set (comma-separated `host:port`), it talks to that
//! cluster: the topic (`QUICKSTART_TOPIC`, default `sansa-quickstart`) must
//! exist, or the brokers must allow creating it on first use
//! (`auto.create.topics.enable`, which the quickstart asks for). Without it, it starts an
//! embedded simulated cluster of three brokers on 127.0.0.1 (sansa-sim's
//! TCP front: the real wire protocol, in this process) and uses that.
//! `QUICKSTART_RECORDS` sets how many records (default 10,000).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sansa_sim::tcp::TcpCluster;
use sansa_sim::ClusterConfig;
use sansa_tokio::{Client, Record, StartOffset};

#[tokio::main]
#[allow(clippy::print_stdout)] // an example reports on stdout
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let topic = std::env::var("QUICKSTART_TOPIC").unwrap_or_else(|_| "sansa-quickstart".into());
    let n: usize = match std::env::var("QUICKSTART_RECORDS") {
        Ok(v) => v.parse()?,
        Err(_) => 10_000,
    };

    // A real cluster if one is named, else an embedded simulated one.
    let (bootstrap, embedded) = match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) => (brokers, None),
        Err(_) => {
            let mut config = ClusterConfig::new(3);
            config.auto_create_topics = true;
            let mut server = TcpCluster::bind("127.0.0.1".parse()?, config).await?;
            server
                .cluster_mut()
                .create_topic(&topic, 3, 3)
                .map_err(|e| format!("creating {topic}: {e:?}"))?;
            let handle = server.spawn();
            println!("embedded simulated cluster at {}", handle.bootstrap());
            (handle.bootstrap(), Some(handle))
        }
    };

    let client = Client::builder()
        .seed_brokers(bootstrap.split(',').map(str::trim))
        .client_id("sansa-quickstart")
        // The quickstart may create its topic where brokers allow it.
        .config(|c| c.allow_auto_topic_creation(true))
        .build()
        .await?;

    // Produce, keeping a bounded window of deliveries in flight.
    let run = std::process::id();
    let started = Instant::now();
    let mut first_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut window = std::collections::VecDeque::new();
    for i in 0..n {
        let record = Record::new(topic.as_str(), format!("run {run} record {i}"))
            .with_key(format!("key-{}", i % 100))
            .with_header("source", Some("quickstart"));
        window.push_back(client.produce(record));
        if window.len() >= 10_000 {
            if let Some(d) = window.pop_front() {
                let meta = d.await?;
                first_offset.entry(meta.partition).or_insert(meta.offset);
            }
        }
    }
    for d in window {
        let meta = d.await?;
        first_offset.entry(meta.partition).or_insert(meta.offset);
    }
    let produced_in = started.elapsed();
    println!(
        "produced {n} records to {topic} in {produced_in:.2?} ({:.0} records/s)",
        n as f64 / produced_in.as_secs_f64()
    );

    // Consume exactly what was produced: from the first offset this run
    // wrote to each partition.
    let mut parts = BTreeMap::new();
    parts.insert(
        topic.clone(),
        first_offset
            .iter()
            .map(|(&p, &o)| (p, StartOffset::At(o)))
            .collect::<BTreeMap<_, _>>(),
    );
    client.consume_partitions(parts);
    let started = Instant::now();
    let mine = format!("run {run} ");
    let mut got = 0;
    while got < n {
        let records = tokio::time::timeout(Duration::from_secs(30), client.poll_records(None))
            .await
            .map_err(|_| format!("consumed only {got} of {n} records in 30 s"))?;
        got += records
            .iter()
            .filter(|r| {
                r.value
                    .as_deref()
                    .is_some_and(|v| v.starts_with(mine.as_bytes()))
            })
            .count();
    }
    let consumed_in = started.elapsed();
    println!(
        "consumed the same {n} records in {consumed_in:.2?} ({:.0} records/s)",
        n as f64 / consumed_in.as_secs_f64()
    );

    client.close().await;
    if let Some(handle) = embedded {
        handle.shutdown().await;
    }
    Ok(())
}
