//! Produces N records to a topic and reports the rate.
//!
//! ```text
//! KAFKA_BROKERS=localhost:9092 cargo run -p sansa-tokio --example produce -- TOPIC [N]
//! ```
//!
//! `KAFKA_BROKERS` is a comma-separated list of `host:port` seed brokers
//! (default `localhost:9092`); N defaults to 10,000. `RUST_LOG=sansa=debug`
//! shows connections opening and closing. With no broker reachable the
//! client keeps retrying (records have unlimited retries by default):
//! stop it with Ctrl-C.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use sansa_tokio::{Client, Record};

/// Deliveries awaited at most at once: awaiting the oldest when the window
/// is full slows the loop down to the cluster's pace instead of buffering
/// without end, and surfaces a failure early.
const WINDOW: usize = 10_000;

#[tokio::main]
#[allow(clippy::print_stdout)] // an example reports on stdout
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let mut args = std::env::args().skip(1);
    let topic = args.next().ok_or("usage: produce TOPIC [N]")?;
    let n: usize = match args.next() {
        Some(n) => n.parse()?,
        None => 10_000,
    };
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "localhost:9092".into());

    let client = Client::builder()
        .seed_brokers(brokers.split(',').map(str::trim))
        .client_id("sansa-example")
        .build()
        .await?;

    let start = Instant::now();
    let mut last_offsets = BTreeMap::new();
    let mut window = VecDeque::with_capacity(WINDOW);
    for i in 0..n {
        let record = Record::new(topic.as_str(), format!("record {i}")).with_key(format!("{i}"));
        window.push_back(client.produce(record));
        if window.len() >= WINDOW {
            if let Some(oldest) = window.pop_front() {
                let meta = oldest.await?;
                last_offsets.insert(meta.partition, meta.offset);
            }
        }
    }
    for delivery in window {
        let meta = delivery.await?;
        last_offsets.insert(meta.partition, meta.offset);
    }
    let elapsed = start.elapsed();
    client.close().await;

    println!(
        "{n} records to {topic} in {elapsed:.2?} ({:.0} records/s)",
        n as f64 / elapsed.as_secs_f64()
    );
    for (partition, offset) in last_offsets {
        println!("  partition {partition}: last offset {offset}");
    }
    Ok(())
}
