//! Produce and consume benchmarks: sansa and librdkafka side by side
//! against the same broker, each round of each client in its own child
//! process so CPU time and peak memory are that client's alone. This page
//! documents `produce`; `consume` (every runtime, one code path) is
//! documented in `bench/consume.rs`.
//!
//! ```text
//! cargo run --release -p sansa-tests --bin sansa-bench -- produce \
//!     --broker mock|tansu --records N --size S --compression C \
//!     [--rounds R] [--partitions P] [--sansa-mode window|buffered] \
//!     [--runtime multi|current|tokio|smol|blocking] [--sticky-bytes B] \
//!     [--count-batches]
//! ```
//!
//! For every round and client the parent starts a fresh broker (the mock
//! cluster, 3 brokers, inside this process; or a Tansu process), creates
//! the topic, and re-runs this binary as a child (hidden subcommand
//! `child`) that produces N unkeyed records of S bytes, waits until every
//! one is acknowledged, and prints its wall time, its own user+sys CPU
//! (`/proc/self/stat`) and peak RSS (`VmHWM` in `/proc/self/status`), and
//! with `--count-batches` the batches it sent (count and bytes as sent; see
//! `bench/batch_sizes.rs`). Counting is off by default because it turns on
//! librdkafka's statistics, which may cost it CPU.
//! Clients alternate which goes first each round. The parent prints each
//! run, the medians, and as the last line:
//!
//! ```text
//! produce <broker> <N>x<S>B <codec>: sansa <r> rec/s, librdkafka <r> rec/s, ratio <x.xx>, cpu ratio <y.yy>
//! ```
//!
//! Same settings for both: acks=all, idempotence on, linger 10 ms, batches
//! up to ~1 MB (sansa 1,000,012 bytes, librdkafka `batch.size` 1,000,000),
//! the same codec, the same record values (words from one seeded
//! vocabulary, so every codec has something to do), and unkeyed records
//! kept on one partition for about a batch's worth of data: librdkafka
//! switches partition every `sticky.partitioning.linger.ms` (10 ms by
//! default, 0.5 to 1 MB at the rates seen here), so sansa's uniform-bytes
//! partitioner is given a sticky size of 1,000,000 bytes (`--sticky-bytes`;
//! Java's rule, whose sticky size is `batch.size`). With sansa's default
//! 64 KiB it would cut ten times smaller batches than librdkafka: more
//! requests, more per-batch work, worse compression (`--count-batches`
//! shows the sizes each client really sent). Everything else is each
//! client's default: sansa buffers at most 10,000 records, librdkafka
//! 100,000 messages (`queue.buffering.max.messages`).
//!
//! `--runtime smol` and `--runtime blocking` run the same child on
//! sansa-smol and sansa-blocking instead. By default the sansa child
//! runs on a multi-threaded tokio runtime (what
//! `#[tokio::main]` gives) and, by default, keeps a window of 10,000
//! delivery futures (its buffer size), awaiting the oldest before producing
//! the next: the pattern of sansa-tokio's own `produce` example, which
//! bounds memory, keeps the pipeline full and sees every record's result.
//! `--sansa-mode buffered` instead awaits `ProduceFuture::buffered()` for
//! each record and drops the future, then flushes (the backpressure pattern
//! of the `buffered` docs; errors go unseen). The librdkafka child uses a
//! `BaseProducer` with a delivery callback that counts, polls every 1,000
//! sends, and on QueueFull polls for 1 ms and retries.

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

#[path = "bench/batch_sizes.rs"]
mod batch_sizes;
#[path = "bench/consume.rs"]
mod consume;

use std::collections::VecDeque;
use std::fmt;
use std::io::Read;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use sansa_core::compression::Compression;
use sansa_core::producer::partitioner::DefaultPartitioner;
use sansa_tests::peers::{KafkaPeer, MockCluster, Tansu};

use batch_sizes::{BatchTally, SansaBatchCounter};

const USAGE: &str = "usage: sansa-bench produce|consume --broker mock|tansu --records N --size S \
--compression none|gzip|snappy|lz4|zstd [--rounds R] [--partitions P] \
[--sansa-mode window|buffered] [--runtime multi|current|tokio|smol|blocking] \
[--sticky-bytes B] [--count-batches]
       sansa-bench consume --broker mock|tansu --records N --size S \
--compression C [--rounds R] [--partitions P] [--runtime tokio|smol|blocking]
       sansa-bench serve (same options): start the broker and topic, print the address, wait for stdin to close";

/// `--runtime`: sansa-tokio on a multi-threaded (`multi`, also `tokio`)
/// or current-thread runtime, sansa-smol under `smol::block_on`, or
/// sansa-blocking; each produces with the same window of results.
const RUNTIMES: [&str; 5] = ["multi", "current", "tokio", "smol", "blocking"];

const TOPIC: &str = "bench";
/// Linux reports CPU times in clock ticks of 1/100 s (`CLK_TCK`).
const TICKS_PER_SECOND: f64 = 100.0;
/// Bytes of the value pool records are cut from.
const POOL_BYTES: usize = 1 << 20;
/// sansa's sticky size for unkeyed records unless `--sticky-bytes` says
/// otherwise: librdkafka's `batch.size` here, as Java would use.
const STICKY_BYTES: u64 = 1_000_000;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    if let Err(e) = run() {
        eprintln!("sansa-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("produce") => parent(&Options::parse(&args[1..])?),
        Some("consume") => {
            let mut o = Options::parse(&args[1..])?;
            if o.runtime == "current" {
                return Err(format!("consume runs tokio multi-threaded only\n{USAGE}").into());
            }
            let asked = args.iter().any(|a| a == "--partitions");
            o.partitions = consume::partitions(&o, asked);
            consume::parent(&o)
        }
        Some("child") => child(&args[1..]),
        Some("child-consume") => consume::child(&args[1..]),
        Some("serve") => serve(&Options::parse(&args[1..])?),
        _ => Err(USAGE.into()),
    }
}

// ---------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broker {
    Mock,
    Tansu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    Sansa,
    Librdkafka,
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ClientKind::Sansa => "sansa",
            ClientKind::Librdkafka => "librdkafka",
        })
    }
}

#[derive(Debug, Clone)]
struct Options {
    broker: Broker,
    records: u64,
    size: usize,
    compression: Compression,
    rounds: usize,
    partitions: i32,
    sansa_mode: String,
    runtime: String,
    /// Bytes of unkeyed records sansa sends to one partition before it
    /// picks another.
    sticky_bytes: u64,
    /// Whether children count the batches they send.
    count_batches: bool,
}

fn value_of<T: FromStr>(flag: &str, v: Option<&String>) -> Result<T, Error>
where
    T::Err: fmt::Display,
{
    let v = v.ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
    v.parse()
        .map_err(|e| format!("{flag} {v}: {e}\n{USAGE}").into())
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, Error> {
        let mut o = Options {
            broker: Broker::Mock,
            records: 0,
            size: 0,
            compression: Compression::None,
            rounds: 3,
            partitions: 4,
            sansa_mode: "window".into(),
            runtime: "multi".into(),
            sticky_bytes: STICKY_BYTES,
            count_batches: false,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--broker" => {
                    o.broker = match value_of::<String>(flag, it.next())?.as_str() {
                        "mock" => Broker::Mock,
                        "tansu" => Broker::Tansu,
                        other => return Err(format!("unknown broker {other}\n{USAGE}").into()),
                    }
                }
                "--records" => o.records = value_of(flag, it.next())?,
                "--size" => o.size = value_of(flag, it.next())?,
                "--compression" => o.compression = value_of(flag, it.next())?,
                "--rounds" => o.rounds = value_of(flag, it.next())?,
                "--partitions" => o.partitions = value_of(flag, it.next())?,
                "--sansa-mode" => o.sansa_mode = value_of(flag, it.next())?,
                "--runtime" => o.runtime = value_of(flag, it.next())?,
                "--sticky-bytes" => o.sticky_bytes = value_of(flag, it.next())?,
                "--count-batches" => o.count_batches = true,
                other => return Err(format!("unknown option {other}\n{USAGE}").into()),
            }
        }
        if o.records == 0 || o.size == 0 || o.rounds == 0 || o.partitions < 1 {
            return Err(format!(
                "--records, --size, --rounds and --partitions must be positive\n{USAGE}"
            )
            .into());
        }
        if !["window", "buffered"].contains(&o.sansa_mode.as_str())
            || !RUNTIMES.contains(&o.runtime.as_str())
        {
            return Err(USAGE.into());
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------
// Parent: brokers, rounds, report
// ---------------------------------------------------------------------

/// What one child reported, plus the broker's CPU during its run.
#[derive(Debug, Clone, Copy)]
struct Run {
    elapsed: f64,
    cpu: f64,
    peak_kb: u64,
    broker_cpu: f64,
    /// Batches sent and their bytes, when the child counted them.
    batches: Option<(u64, u64)>,
}

enum RunningBroker {
    Mock(MockCluster),
    Tansu(Tansu),
}

impl RunningBroker {
    fn start(kind: Broker, partitions: i32) -> Result<Self, Error> {
        let broker = match kind {
            Broker::Mock => RunningBroker::Mock(MockCluster::new(3)?.without_deadline()),
            Broker::Tansu => RunningBroker::Tansu(Tansu::start()?.without_deadline()),
        };
        let replication = match kind {
            Broker::Mock => 3,
            Broker::Tansu => 1,
        };
        broker.peer().create_topic(TOPIC, partitions, replication)?;
        Ok(broker)
    }

    fn peer(&self) -> &dyn KafkaPeer {
        match self {
            RunningBroker::Mock(m) => m,
            RunningBroker::Tansu(t) => t,
        }
    }

    /// CPU seconds the broker has used so far: this process for the mock
    /// cluster (the parent only waits while a child runs), Tansu's process
    /// otherwise.
    fn cpu(&self) -> f64 {
        let path = match self {
            RunningBroker::Mock(_) => "/proc/self/stat".to_owned(),
            RunningBroker::Tansu(t) => format!("/proc/{}/stat", t.pid()),
        };
        cpu_seconds(&path).unwrap_or(f64::NAN)
    }
}

fn parent(o: &Options) -> Result<(), Error> {
    let exe = std::env::current_exe()?;
    let broker_name = match o.broker {
        Broker::Mock => "mock",
        Broker::Tansu => "tansu",
    };
    let codec = o.compression.name();
    println!(
        "produce to {broker_name} ({} partitions): {} records of {} B, {codec}, {} rounds, \
         sansa mode {} on a {} runtime, sansa sticky bytes {}",
        o.partitions, o.records, o.size, o.rounds, o.sansa_mode, o.runtime, o.sticky_bytes
    );
    let mut runs: Vec<(ClientKind, Run)> = Vec::new();
    for round in 0..o.rounds {
        let order = if round % 2 == 0 {
            [ClientKind::Sansa, ClientKind::Librdkafka]
        } else {
            [ClientKind::Librdkafka, ClientKind::Sansa]
        };
        for client in order {
            let broker = RunningBroker::start(o.broker, o.partitions)?;
            let bootstrap = broker.peer().bootstrap();
            let broker_cpu_before = broker.cpu();
            let run = run_child(&exe, client, &bootstrap, o)?;
            let run = Run {
                broker_cpu: broker.cpu() - broker_cpu_before,
                ..run
            };
            println!(
                "round {} {client:>10}: {:>9.0} rec/s {:>7.1} MB/s, cpu {:.2} s, peak {:.1} MB, \
                 broker cpu {:.2} s, {}",
                round + 1,
                o.records as f64 / run.elapsed,
                (o.records as f64 * o.size as f64) / run.elapsed / 1e6,
                run.cpu,
                run.peak_kb as f64 / 1024.0,
                run.broker_cpu,
                BatchSizes(run.batches),
            );
            runs.push((client, run));
            drop(broker);
        }
    }
    report_medians("produce", broker_name, codec, o, &runs);
    Ok(())
}

/// A child's batch count and mean batch size, for a round's line.
struct BatchSizes(Option<(u64, u64)>);

impl fmt::Display for BatchSizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((batches, bytes)) if batches > 0 => write!(
                f,
                "{batches} batches of {:.0} KB",
                bytes as f64 / batches as f64 / 1e3
            ),
            _ => f.write_str("batches not counted"),
        }
    }
}

/// Prints each client's medians over `runs` and, last, the one-line
/// comparison: `<job> <broker> <N>x<S>B <codec>: sansa .. rec/s,
/// librdkafka .. rec/s, ratio .., cpu ratio ..`.
fn report_medians(
    job: &str,
    broker_name: &str,
    codec: impl fmt::Display,
    o: &Options,
    runs: &[(ClientKind, Run)],
) {
    let summary = |kind: ClientKind| -> (f64, f64, f64, f64) {
        let of = |f: &dyn Fn(&Run) -> f64| {
            median(
                runs.iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, r)| f(r))
                    .collect(),
            )
        };
        (
            of(&|r| o.records as f64 / r.elapsed),
            of(&|r| r.cpu),
            of(&|r| r.peak_kb as f64 / 1024.0),
            of(&|r| r.broker_cpu),
        )
    };
    let (s_rate, s_cpu, s_mem, s_bcpu) = summary(ClientKind::Sansa);
    let (l_rate, l_cpu, l_mem, l_bcpu) = summary(ClientKind::Librdkafka);
    for (name, rate, cpu, mem, bcpu) in [
        ("sansa", s_rate, s_cpu, s_mem, s_bcpu),
        ("librdkafka", l_rate, l_cpu, l_mem, l_bcpu),
    ] {
        println!(
            "median {name:>10}: {rate:>9.0} rec/s {:>7.1} MB/s, cpu {cpu:.2} s ({:.2} us/record), \
             peak {mem:.1} MB, broker cpu {bcpu:.2} s",
            rate * o.size as f64 / 1e6,
            cpu * 1e6 / o.records as f64,
        );
    }
    println!(
        "{job} {broker_name} {}x{}B {codec}: sansa {s_rate:.0} rec/s, librdkafka {l_rate:.0} rec/s, \
         ratio {:.2}, cpu ratio {:.2}",
        o.records,
        o.size,
        s_rate / l_rate,
        s_cpu / l_cpu
    );
}

/// `serve`: starts the broker, creates the topic, prints the bootstrap
/// address and a child command line, and waits for stdin to close, so a
/// child can be run by hand under a profiler, e.g.
/// `valgrind --tool=callgrind sansa-bench child sansa ADDR 50000 100 none window multi`.
fn serve(o: &Options) -> Result<(), Error> {
    let broker = RunningBroker::start(o.broker, o.partitions)?;
    let bootstrap = broker.peer().bootstrap();
    println!("{bootstrap}");
    println!(
        "child sansa|librdkafka {bootstrap} {} {} {} {} {} {} {}",
        o.records,
        o.size,
        o.compression.name(),
        o.sansa_mode,
        o.runtime,
        o.sticky_bytes,
        o.count_batches
    );
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    Ok(())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Runs one client in a child process and reads its report, killing it if
/// it takes longer than a generous bound (10 s plus 100 us per record).
fn run_child(
    exe: &std::path::Path,
    client: ClientKind,
    bootstrap: &str,
    o: &Options,
) -> Result<Run, Error> {
    let child = Command::new(exe)
        .args([
            "child",
            &client.to_string(),
            bootstrap,
            &o.records.to_string(),
            &o.size.to_string(),
            o.compression.name(),
            &o.sansa_mode,
            &o.runtime,
            &o.sticky_bytes.to_string(),
            &o.count_batches.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let limit = Duration::from_secs(10) + Duration::from_micros(100) * o.records as u32;
    read_report(child, client, limit)
}

/// Waits for a child (killing it past `limit`) and reads its RESULT line.
fn read_report(
    mut child: std::process::Child,
    client: ClientKind,
    limit: Duration,
) -> Result<Run, Error> {
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            // Our own child, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{client} child took over {limit:?}; killed").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    if !status.success() {
        return Err(format!("{client} child failed ({status}): {out}").into());
    }
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("RESULT "))
        .ok_or_else(|| format!("{client} child printed no RESULT line: {out}"))?;
    let field = |name: &str| -> Result<f64, Error> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("no {name} in {line:?}"))?
            .parse::<f64>()
            .map_err(|e| format!("{name} in {line:?}: {e}").into())
    };
    Ok(Run {
        elapsed: field("elapsed_s")?,
        cpu: field("cpu_s")?,
        peak_kb: field("peak_kb")? as u64,
        broker_cpu: 0.0,
        batches: field("batches")
            .and_then(|n| Ok((n as u64, field("batch_bytes")? as u64)))
            .ok(),
    })
}

// ---------------------------------------------------------------------
// Child: one client, one run
// ---------------------------------------------------------------------

/// user+sys CPU seconds of the process whose `stat` file is `path`.
fn cpu_seconds(path: &str) -> Result<f64, Error> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the command name (which may hold spaces, in parens):
    // state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').ok_or("no ')' in stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, Error> {
        Ok(fields.get(i).ok_or("short stat")?.parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}

/// Peak resident memory (`VmHWM`) of this process in KiB.
fn peak_rss_kb() -> Result<u64, Error> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("short VmHWM")?
        .parse()?)
}

/// Text-like bytes from a fixed seed: words of a 256-word vocabulary
/// (3 to 9 letters, commoner words drawn more often) separated by spaces,
/// so every codec finds repeats, as in log lines or JSON, and no two
/// records are the same.
fn value_pool() -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let words: Vec<Vec<u8>> = (0..256)
        .map(|_| {
            let len = 3 + (next() % 7) as usize;
            (0..len).map(|_| b'a' + (next() % 26) as u8).collect()
        })
        .collect();
    let mut pool = Vec::with_capacity(POOL_BYTES + 16);
    while pool.len() < POOL_BYTES {
        // Two draws, the smaller kept: low-numbered words are commoner.
        let w = (next() % 256).min(next() % 256) as usize;
        pool.extend_from_slice(&words[w]);
        pool.push(b' ');
    }
    pool.truncate(POOL_BYTES);
    pool
}

/// The value of record `i`: `size` bytes of the pool from a position
/// that moves with `i`.
fn value(pool: &[u8], i: u64, size: usize) -> &[u8] {
    let span = pool.len().saturating_sub(size).max(1);
    let start = (i.wrapping_mul(7919) as usize) % span;
    &pool[start..start + size.min(pool.len())]
}

fn child(args: &[String]) -> Result<(), Error> {
    let [client, bootstrap, records, size, codec, mode, runtime, sticky_bytes, count_batches] =
        args
    else {
        return Err("child: wrong arguments".into());
    };
    let records: u64 = records.parse()?;
    let size: usize = size.parse()?;
    let codec: Compression = codec.parse()?;
    let sticky_bytes: u64 = sticky_bytes.parse()?;
    let count_batches: bool = count_batches.parse()?;
    let pool = value_pool();
    let tally = count_batches.then(|| Arc::new(BatchTally::default()));
    let elapsed = match client.as_str() {
        "sansa" => {
            if let Some(tally) = &tally {
                tracing::subscriber::set_global_default(SansaBatchCounter(tally.clone()))?;
            }
            let partitioner = DefaultPartitioner::default().with_sticky_bytes(sticky_bytes);
            let rt = match runtime.as_str() {
                "smol" => {
                    let elapsed = smol::block_on(smol_produce(
                        bootstrap,
                        records,
                        size,
                        codec,
                        mode,
                        partitioner,
                        &pool,
                    ))?;
                    return report(elapsed, tally.as_deref());
                }
                "blocking" => {
                    let elapsed = blocking_produce(
                        bootstrap,
                        records,
                        size,
                        codec,
                        mode,
                        partitioner,
                        &pool,
                    )?;
                    return report(elapsed, tally.as_deref());
                }
                "current" => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
                _ => tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()?,
            };
            rt.block_on(sansa_produce(
                bootstrap,
                records,
                size,
                codec,
                mode,
                partitioner,
                &pool,
            ))?
        }
        "librdkafka" => librdkafka_produce(bootstrap, records, size, codec, &pool, tally.as_ref())?,
        other => return Err(format!("child: unknown client {other}").into()),
    };
    report(elapsed, tally.as_deref())
}

/// Prints a child's result line: its wall time, CPU, peak memory and the
/// batches it sent.
fn report(elapsed: Duration, batches: Option<&BatchTally>) -> Result<(), Error> {
    let cpu = cpu_seconds("/proc/self/stat")?;
    let peak = peak_rss_kb()?;
    println!(
        "RESULT elapsed_s={:.6} cpu_s={cpu:.2} peak_kb={peak} {}",
        elapsed.as_secs_f64(),
        batches.map(BatchTally::result_fields).unwrap_or_default()
    );
    Ok(())
}

/// [`sansa_produce`] on sansa-smol.
async fn smol_produce(
    bootstrap: &str,
    records: u64,
    size: usize,
    codec: Compression,
    mode: &str,
    partitioner: DefaultPartitioner,
    pool: &[u8],
) -> Result<Duration, Error> {
    const WINDOW: usize = 10_000;
    let client = sansa_smol::Client::builder()
        .seed_brokers(bootstrap.split(',').map(str::to_owned))
        .client_id("sansa-bench")
        .compression(codec)
        .linger(Duration::from_millis(10))
        .partitioner(partitioner)
        .build()?;
    let record =
        |i: u64| sansa_smol::Record::new(TOPIC, Bytes::copy_from_slice(value(pool, i, size)));
    let started = Instant::now();
    if mode == "buffered" {
        for i in 0..records {
            client.produce(record(i)).buffered().await?;
        }
        client.flush().await;
    } else {
        let mut window = VecDeque::with_capacity(WINDOW);
        for i in 0..records {
            window.push_back(client.produce(record(i)));
            if window.len() >= WINDOW {
                if let Some(oldest) = window.pop_front() {
                    oldest.await?;
                }
            }
        }
        for delivery in window {
            delivery.await?;
        }
    }
    let elapsed = started.elapsed();
    client.close().await;
    Ok(elapsed)
}

/// [`sansa_produce`] on sansa-blocking.
fn blocking_produce(
    bootstrap: &str,
    records: u64,
    size: usize,
    codec: Compression,
    mode: &str,
    partitioner: DefaultPartitioner,
    pool: &[u8],
) -> Result<Duration, Error> {
    const WINDOW: usize = 10_000;
    let client = sansa_blocking::Client::builder()
        .seed_brokers(bootstrap.split(',').map(str::to_owned))
        .client_id("sansa-bench")
        .compression(codec)
        .linger(Duration::from_millis(10))
        .partitioner(partitioner)
        .build()?;
    let record =
        |i: u64| sansa_blocking::Record::new(TOPIC, Bytes::copy_from_slice(value(pool, i, size)));
    let started = Instant::now();
    if mode == "buffered" {
        for i in 0..records {
            client.produce(record(i)).buffered()?;
        }
        client.flush();
    } else {
        let mut window = VecDeque::with_capacity(WINDOW);
        for i in 0..records {
            window.push_back(client.produce(record(i)));
            if window.len() >= WINDOW {
                if let Some(oldest) = window.pop_front() {
                    oldest.wait()?;
                }
            }
        }
        for delivery in window {
            delivery.wait()?;
        }
    }
    let elapsed = started.elapsed();
    client.close();
    Ok(elapsed)
}

async fn sansa_produce(
    bootstrap: &str,
    records: u64,
    size: usize,
    codec: Compression,
    mode: &str,
    partitioner: DefaultPartitioner,
    pool: &[u8],
) -> Result<Duration, Error> {
    const WINDOW: usize = 10_000;
    let client = sansa_tokio::Client::builder()
        .seed_brokers(bootstrap.split(',').map(str::to_owned))
        .client_id("sansa-bench")
        .compression(codec)
        .linger(Duration::from_millis(10))
        .partitioner(partitioner)
        .build()
        .await?;
    // The topic made once and shared by every record, as librdkafka's
    // topic handle is.
    let topic = sansa_tokio::Topic::from(TOPIC);
    let record = |i: u64| {
        sansa_tokio::Record::new(topic.clone(), Bytes::copy_from_slice(value(pool, i, size)))
    };
    let started = Instant::now();
    if mode == "buffered" {
        for i in 0..records {
            let mut delivery = client.produce(record(i));
            delivery.buffered().await?;
        }
        client.flush().await;
    } else {
        let mut window = VecDeque::with_capacity(WINDOW);
        for i in 0..records {
            window.push_back(client.produce(record(i)));
            if window.len() >= WINDOW {
                if let Some(oldest) = window.pop_front() {
                    oldest.await?;
                }
            }
        }
        for delivery in window {
            delivery.await?;
        }
    }
    let elapsed = started.elapsed();
    client.close().await;
    Ok(elapsed)
}

/// Counts librdkafka's delivery reports.
#[derive(Default)]
struct Counter {
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct CountingContext(Arc<Counter>, Option<Arc<BatchTally>>);

impl ClientContext for CountingContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(batches) = &self.1 {
            batches.add_librdkafka(&statistics);
        }
    }
}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = match result {
            Ok(_) => &self.0.delivered,
            Err(_) => &self.0.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn librdkafka_produce(
    bootstrap: &str,
    records: u64,
    size: usize,
    codec: Compression,
    pool: &[u8],
    batches: Option<&Arc<BatchTally>>,
) -> Result<Duration, Error> {
    let counter = Arc::new(Counter::default());
    let mut config = ClientConfig::new();
    if batches.is_some() {
        config.set("statistics.interval.ms", "100");
    }
    let producer: BaseProducer<CountingContext> = config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "librdkafka-bench")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "10")
        .set("batch.size", "1000000")
        .set("compression.type", codec.name())
        .create_with_context(CountingContext(counter.clone(), batches.cloned()))?;
    let started = Instant::now();
    for i in 0..records {
        let payload = value(pool, i, size);
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(TOPIC).payload(payload)) {
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
    let elapsed = started.elapsed();
    let delivered = counter.delivered.load(Ordering::Relaxed);
    let failed = counter.failed.load(Ordering::Relaxed);
    if delivered != records || failed != 0 {
        return Err(
            format!("librdkafka: {delivered} delivered, {failed} failed of {records}").into(),
        );
    }
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn this_process_has_cpu_time_and_a_peak_rss() {
        // Burn a little CPU so at least one tick is counted.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        assert!(x != 7);
        assert!(cpu_seconds("/proc/self/stat").expect("stat") > 0.0);
        assert!(peak_rss_kb().expect("status") > 0);
    }

    #[test]
    fn values_are_deterministic_compressible_and_of_the_asked_size() {
        let pool = value_pool();
        assert_eq!(pool, value_pool());
        assert_eq!(value(&pool, 12_345, 100).len(), 100);
        assert_ne!(value(&pool, 1, 100), value(&pool, 2, 100));
        let mut compressed = Vec::new();
        sansa_core::compression::compress(Compression::Snappy, &pool[..65_536], &mut compressed)
            .expect("snappy");
        let ratio = compressed.len() as f64 / 65_536.0;
        eprintln!("snappy ratio {ratio:.2}");
        assert!((0.3..0.95).contains(&ratio), "snappy ratio {ratio}");
    }

    #[test]
    fn options_parse_and_refuse() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let o = Options::parse(&args(
            "--broker tansu --records 10 --size 5 --compression lz4 --rounds 1 --partitions 2",
        ))
        .expect("valid");
        assert_eq!(
            (o.broker, o.records, o.size, o.rounds, o.partitions),
            (Broker::Tansu, 10, 5, 1, 2)
        );
        assert_eq!(o.compression, Compression::Lz4);
        assert_eq!((o.sticky_bytes, o.count_batches), (STICKY_BYTES, false));
        let o = Options::parse(&args(
            "--records 1 --size 1 --sticky-bytes 65536 --count-batches",
        ))
        .expect("valid");
        assert_eq!((o.sticky_bytes, o.count_batches), (65_536, true));
        assert!(Options::parse(&args("--records 1 --size 1 --sticky-bytes x")).is_err());
        assert!(Options::parse(&args("--broker kafka --records 1 --size 1")).is_err());
        assert!(Options::parse(&args("--broker mock --size 1")).is_err());
    }
}
