//! The consume benchmark: the same pre-produced data read by sansa and by
//! librdkafka, alternating, each read in its own child process.
//!
//! ```text
//! sansa-bench consume --broker mock|tansu --records N --size S \
//!     --compression C [--rounds R] [--partitions P] [--runtime tokio|smol|blocking]
//! ```
//!
//! The parent starts one broker, creates the topic, writes N records of S
//! bytes once with librdkafka (the codec under test; values as in the
//! produce bench), and checks that every record is still in the log (the
//! mock cluster keeps only ~5 MiB per partition, so by default it gets
//! enough partitions to hold everything). Then each round runs both
//! clients, alternating which goes first, each as a child (`child-consume`)
//! that reads every partition from the start until it has N records and
//! reports wall time (first request to last record), CPU and peak RSS.
//!
//! sansa: the client of `--runtime` (sansa-tokio on a multi-threaded
//! runtime, sansa-smol, sansa-blocking), one code path for all of them
//! through `sansa_tests::adapters::Adapter`: `consume_topics` from the
//! default start (earliest), `poll_fetches(None)` until N records, each
//! poll's records counted and dropped. librdkafka: a
//! `BaseConsumer` assigned every partition from the beginning (no group
//! join, no commits), `poll` until N messages. Both with their defaults
//! otherwise (fetch max wait, fetch sizes, buffer bounds: sansa 64 MiB,
//! librdkafka `queued.max.messages.kbytes` 64 MiB).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sansa_tests::adapters::{Adapter, Blocking, Smol, Tokio};

use super::{
    cpu_seconds, peak_rss_kb, read_report, report_medians, value, value_pool, Broker, ClientKind,
    Error, Options, Run, RunningBroker, TOPIC,
};

/// What the mock cluster keeps per partition, less a margin.
const MOCK_PARTITION_BYTES: u64 = 4 << 20;

/// Partitions for the run: as asked, or on the mock cluster by default
/// enough to keep everything.
pub(super) fn partitions(o: &Options, asked: bool) -> i32 {
    if asked || o.broker != Broker::Mock {
        return o.partitions;
    }
    // Record overhead in a batch is ~10 bytes; compressed data is smaller.
    let bytes = o.records * (o.size as u64 + 16);
    let needed = bytes.div_ceil(MOCK_PARTITION_BYTES);
    o.partitions.max(i32::try_from(needed).unwrap_or(i32::MAX))
}

pub(super) fn parent(o: &Options) -> Result<(), Error> {
    let exe = std::env::current_exe()?;
    let broker_name = match o.broker {
        Broker::Mock => "mock",
        Broker::Tansu => "tansu",
    };
    let codec = o.compression.name();
    println!(
        "consume from {broker_name} ({} partitions): {} records of {} B, {codec}, {} rounds, \
         sansa on {}",
        o.partitions, o.records, o.size, o.rounds, o.runtime
    );
    let broker = RunningBroker::start(o.broker, o.partitions)?;
    let bootstrap = broker.peer().bootstrap();
    let pool = value_pool();
    let wrote = pre_produce(&bootstrap, o, &pool)?;
    println!(
        "pre-produced with librdkafka in {:.2} s",
        wrote.as_secs_f64()
    );
    check_all_there(&bootstrap, o)?;
    let mut runs: Vec<(ClientKind, Run)> = Vec::new();
    for round in 0..o.rounds {
        let order = if round % 2 == 0 {
            [ClientKind::Sansa, ClientKind::Librdkafka]
        } else {
            [ClientKind::Librdkafka, ClientKind::Sansa]
        };
        for client in order {
            let before = broker.cpu();
            let mut run = run_child(&exe, client, &bootstrap, o)?;
            run.broker_cpu = broker.cpu() - before;
            println!(
                "round {} {client:>10}: {:>9.0} rec/s {:>7.1} MB/s, cpu {:.2} s, peak {:.1} MB, \
                 broker cpu {:.2} s",
                round + 1,
                o.records as f64 / run.elapsed,
                (o.records as f64 * o.size as f64) / run.elapsed / 1e6,
                run.cpu,
                run.peak_kb as f64 / 1024.0,
                run.broker_cpu
            );
            runs.push((client, run));
        }
    }
    report_medians("consume", broker_name, codec, o, &runs);
    Ok(())
}

/// Writes the records with librdkafka, round-robin over the partitions
/// (so each holds its share, under the mock's per-partition limit), in
/// batches of up to 1 MB with the codec under test.
fn pre_produce(bootstrap: &str, o: &Options, pool: &[u8]) -> Result<Duration, Error> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "10")
        .set("batch.size", "1000000")
        .set("compression.type", o.compression.name())
        .create()?;
    let started = Instant::now();
    for i in 0..o.records {
        let partition = i32::try_from(i % o.partitions as u64).unwrap_or(0);
        let payload = value(pool, i, o.size);
        loop {
            let record = BaseRecord::<(), [u8]>::to(TOPIC)
                .partition(partition)
                .payload(payload);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        if i % 1_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(started.elapsed())
}

/// Fails unless every partition still starts at offset 0 and they hold N
/// records together: a broker that dropped old data would make both
/// clients read less than asked, and wait forever.
fn check_all_there(bootstrap: &str, o: &Options) -> Result<(), Error> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sansa-bench-check")
        .create()?;
    let mut total = 0i64;
    for p in 0..o.partitions {
        let (low, high) = consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(10))?;
        if low != 0 {
            return Err(format!(
                "partition {p} starts at {low}: the broker dropped data; use more --partitions"
            )
            .into());
        }
        total += high;
    }
    // Tansu's ListOffsets "latest" is the last batch's base offset + 1,
    // not the high watermark (BROKERS.md): its total falls short by
    // design. The children still check they read all N records and bytes.
    if o.broker == Broker::Tansu {
        return Ok(());
    }
    if u64::try_from(total).ok() != Some(o.records) {
        return Err(format!("the topic holds {total} records, not {}", o.records).into());
    }
    Ok(())
}

fn run_child(
    exe: &std::path::Path,
    client: ClientKind,
    bootstrap: &str,
    o: &Options,
) -> Result<Run, Error> {
    let child = Command::new(exe)
        .args([
            "child-consume",
            &client.to_string(),
            bootstrap,
            &o.records.to_string(),
            &o.size.to_string(),
            &o.partitions.to_string(),
            &o.runtime,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let limit = Duration::from_secs(10) + Duration::from_micros(100) * o.records as u32;
    read_report(child, client, limit)
}

/// `child-consume <client> <bootstrap> <records> <size> <partitions> <runtime>`.
pub(super) fn child(args: &[String]) -> Result<(), Error> {
    let [client, bootstrap, records, size, partitions, runtime] = args else {
        return Err("child-consume: wrong arguments".into());
    };
    let records: u64 = records.parse()?;
    let size: usize = size.parse()?;
    let partitions: i32 = partitions.parse()?;
    let (elapsed, bytes) = match (client.as_str(), runtime.as_str()) {
        ("librdkafka", _) => librdkafka_consume(bootstrap, records, partitions)?,
        ("sansa", "smol") => sansa_consume::<Smol>(bootstrap, records)?,
        ("sansa", "blocking") => sansa_consume::<Blocking>(bootstrap, records)?,
        ("sansa", "multi" | "tokio") => sansa_consume::<Tokio>(bootstrap, records)?,
        (client, runtime) => {
            return Err(format!("child-consume: no client {client} on {runtime}").into())
        }
    };
    if bytes != records * size as u64 {
        return Err(format!(
            "{client} read {bytes} value bytes, not {}",
            records * size as u64
        )
        .into());
    }
    let cpu = cpu_seconds("/proc/self/stat")?;
    let peak = peak_rss_kb()?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "RESULT elapsed_s={:.6} cpu_s={cpu:.2} peak_kb={peak}",
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// How long a consume child waits for all its records.
const CONSUME_PATIENCE: Duration = Duration::from_secs(120);

/// Reads `records` records with sansa on the runtime of `A`: (time from
/// the subscription to the last record, value bytes read).
fn sansa_consume<A: Adapter>(bootstrap: &str, records: u64) -> Result<(Duration, u64), Error> {
    let client = A::connect(bootstrap, |c| c.client_id("sansa-bench"));
    let started = Instant::now();
    client.subscribe(TOPIC);
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < records {
        let Some(left) = CONSUME_PATIENCE.checked_sub(started.elapsed()) else {
            return Err(format!("sansa on {}: {n} of {records} records", A::NAME).into());
        };
        for f in client.poll_fetches(left) {
            if let Some(e) = f.error {
                return Err(format!("sansa: {}/{}: {e}", f.topic, f.partition).into());
            }
            n += f.records.len() as u64;
            bytes += f
                .records
                .iter()
                .map(|r| r.value.as_ref().map_or(0, |v| v.len() as u64))
                .sum::<u64>();
        }
    }
    let elapsed = started.elapsed();
    client.close();
    Ok((elapsed, bytes))
}

/// Reads `records` messages with librdkafka: (time from assign to the
/// last message, value bytes read).
fn librdkafka_consume(
    bootstrap: &str,
    records: u64,
    partitions: i32,
) -> Result<(Duration, u64), Error> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "librdkafka-bench")
        // Required by librdkafka's consumer; no group is joined with
        // `assign`, and nothing is committed.
        .set("group.id", "sansa-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let started = Instant::now();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload().map_or(0, |v| v.len() as u64);
            }
            Some(Err(e)) => return Err(format!("librdkafka: {e}").into()),
            None => {}
        }
    }
    Ok((started.elapsed(), bytes))
}
