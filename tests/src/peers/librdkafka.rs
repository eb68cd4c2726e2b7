//! librdkafka (the `rdkafka` crate) as the reference client: produce,
//! consume and create topics against any peer, for interop checks and as
//! the side-by-side baseline of the benchmarks.
//!
//! The helpers are synchronous or return futures that need no async
//! runtime (librdkafka's own threads complete them), so they work from
//! plain `#[test]`s, from [`super::block_on`] and from inside tokio.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::PeerError;

/// How long librdkafka may try to deliver one record before it reports a
/// failure (`message.timeout.ms`): long enough for leader moves and broker
/// restarts in fault tests, short enough that a hung test says why.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// A record to produce, kept so the consumed copy can be compared with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The partition to send to, or `None` to let the partitioner choose.
    pub partition: Option<i32>,
}

impl TestRecord {
    /// Record number `i` of a test: key `key-{i % 16}` (so several records
    /// share a key and their order can be checked), a value that names `i`
    /// and is padded to `value_len` bytes, and a header `seq` = `i`.
    pub fn numbered(i: usize, value_len: usize) -> Self {
        let mut value = format!("value-{i:08}-").into_bytes();
        value.resize(value_len.max(value.len()), b'.');
        TestRecord {
            key: Some(format!("key-{}", i % 16).into_bytes()),
            value,
            headers: vec![("seq".into(), i.to_string().into_bytes())],
            partition: None,
        }
    }
}

/// `n` records made by [`TestRecord::numbered`] with 100-byte values.
pub fn numbered_records(n: usize) -> Vec<TestRecord> {
    (0..n).map(|i| TestRecord::numbered(i, 100)).collect()
}

/// Where librdkafka says a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// A record as librdkafka consumed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// The partition it came from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value (empty for a null value).
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Its timestamp in milliseconds, if it has one.
    pub timestamp_ms: Option<i64>,
}

/// The librdkafka settings every helper starts from, plus `extra`.
pub fn config(bootstrap: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "sansa-tests-librdkafka");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
}

/// A producer with `acks=all`, a short linger and a bounded delivery
/// timeout ([`DELIVERY_TIMEOUT`]); `extra` settings override these (e.g.
/// `("compression.type", "zstd")`, `("enable.idempotence", "true")`).
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> Result<FutureProducer, PeerError> {
    let timeout = DELIVERY_TIMEOUT.as_millis().to_string();
    let mut settings = vec![
        ("acks", "all"),
        ("linger.ms", "5"),
        ("message.timeout.ms", timeout.as_str()),
    ];
    settings.extend_from_slice(extra);
    config(bootstrap, &settings)
        .create()
        .map_err(|e| PeerError::kafka(format!("creating a librdkafka producer for {bootstrap}"), e))
}

/// Produces `records` to `topic`, keeping many in flight, and returns where
/// each was written, in order. Fails on the first record librdkafka could
/// not deliver.
///
/// Needs no async runtime: librdkafka's threads complete the futures.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    records: &[TestRecord],
) -> Result<Vec<Delivered>, PeerError> {
    let mut pending: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
    let mut delivered = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        loop {
            match producer.send_result(future_record(topic, record)) {
                Ok(future) => {
                    pending.push_back((i, future));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // librdkafka's queue is full: make room by waiting for
                    // the oldest delivery.
                    let Some(oldest) = pending.pop_front() else {
                        return Err(PeerError::kafka(
                            format!("producing record {i} to {topic}"),
                            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                        ));
                    };
                    delivered.push(await_delivery(topic, oldest).await?);
                }
                Err((e, _)) => {
                    return Err(PeerError::kafka(
                        format!("producing record {i} to {topic}"),
                        e,
                    ))
                }
            }
        }
    }
    while let Some(next) = pending.pop_front() {
        delivered.push(await_delivery(topic, next).await?);
    }
    Ok(delivered)
}

/// [`produce`], blocking the calling thread.
pub fn produce_blocking(
    producer: &FutureProducer,
    topic: &str,
    records: &[TestRecord],
) -> Result<Vec<Delivered>, PeerError> {
    super::block_on(produce(producer, topic, records))
}

fn future_record<'a>(topic: &'a str, record: &'a TestRecord) -> FutureRecord<'a, [u8], [u8]> {
    let mut out = FutureRecord::to(topic).payload(record.value.as_slice());
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(partition) = record.partition {
        out = out.partition(partition);
    }
    if !record.headers.is_empty() {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        out = out.headers(headers);
    }
    out
}

async fn await_delivery(
    topic: &str,
    (i, future): (usize, DeliveryFuture),
) -> Result<Delivered, PeerError> {
    let what = || format!("delivering record {i} to {topic}");
    match future.await {
        Ok(Ok(d)) => Ok(Delivered {
            partition: d.partition,
            offset: d.offset,
        }),
        Ok(Err((e, _))) => Err(PeerError::kafka(what(), e)),
        Err(_) => Err(PeerError::kafka(what(), KafkaError::Canceled)),
    }
}

/// A consumer for partitions assigned by hand (it never joins its group),
/// starting from the earliest offset; `extra` settings override these
/// (e.g. `("isolation.level", "read_committed")`).
pub fn consumer(bootstrap: &str, extra: &[(&str, &str)]) -> Result<BaseConsumer, PeerError> {
    let mut settings = vec![
        // librdkafka refuses `assign` without a group id ("Unknown group"),
        // though nothing is committed and no group is joined.
        ("group.id", "sansa-tests-manual-assign"),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("enable.partition.eof", "false"),
    ];
    settings.extend_from_slice(extra);
    config(bootstrap, &settings)
        .create()
        .map_err(|e| PeerError::kafka(format!("creating a librdkafka consumer for {bootstrap}"), e))
}

/// Consumes every partition of `topic` from the beginning until `count`
/// records have arrived, or fails after `timeout` saying how many did.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Consumed>, PeerError> {
    consume_until_quiet(bootstrap, topic, count, Duration::ZERO, timeout)
}

/// Consumes every partition of `topic` from the beginning until at least
/// `count` records have arrived and then nothing more for `quiet`, so that
/// records beyond the expected ones (duplicates) are read too; fails after
/// `timeout` saying how many arrived.
///
/// Waiting for quiet rather than for the high watermark works on every
/// peer, including Tansu, whose ListOffsets "latest" is not the high
/// watermark (BROKERS.md).
pub fn consume_until_quiet(
    bootstrap: &str,
    topic: &str,
    count: usize,
    quiet: Duration,
    timeout: Duration,
) -> Result<Vec<Consumed>, PeerError> {
    consume_until_quiet_with(bootstrap, topic, count, quiet, timeout, &[])
}

/// [`consume_until_quiet`] with `extra` consumer settings (e.g.
/// `("isolation.level", "read_uncommitted")`; librdkafka's default is
/// read_committed).
pub fn consume_until_quiet_with(
    bootstrap: &str,
    topic: &str,
    count: usize,
    quiet: Duration,
    timeout: Duration,
    extra: &[(&str, &str)],
) -> Result<Vec<Consumed>, PeerError> {
    let consumer = consumer(bootstrap, extra)?;
    let start = Instant::now();
    let partitions = wait_for_topic_with(&consumer, topic, None, timeout)?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| PeerError::kafka(format!("assigning {topic}/{p}"), e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| PeerError::kafka(format!("assigning {topic}"), e))?;
    let mut out = Vec::with_capacity(count);
    let mut last_arrival = Instant::now();
    while out.len() < count || last_arrival.elapsed() < quiet {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() && out.len() >= count {
            break;
        }
        if left.is_zero() {
            return Err(PeerError::Timeout {
                what: format!(
                    "consuming {count} records from {topic} ({partitions} partitions) at \
                     {bootstrap}: got {}",
                    out.len()
                ),
                waited: timeout,
            });
        }
        match consumer.poll(left.min(Duration::from_millis(100))) {
            None => {}
            Some(Ok(m)) => {
                last_arrival = Instant::now();
                out.push(Consumed {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp_ms: m.timestamp().to_millis(),
                });
            }
            Some(Err(e)) => {
                return Err(PeerError::kafka(
                    format!(
                        "consuming {topic} at {bootstrap} (after {} records)",
                        out.len()
                    ),
                    e,
                ))
            }
        }
    }
    Ok(out)
}

/// Creates `topic` through the CreateTopics API (peers that have it: Tansu,
/// noida-db), then waits until every partition has a leader.
pub fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<(), PeerError> {
    let admin: AdminClient<DefaultClientContext> =
        config(bootstrap, &[]).create().map_err(|e| {
            PeerError::kafka(
                format!("creating a librdkafka admin client for {bootstrap}"),
                e,
            )
        })?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let what = || format!("CreateTopics {topic} ({partitions} partitions) at {bootstrap}");
    let results = super::block_on(admin.create_topics([&new_topic], &options))
        .map_err(|e| PeerError::kafka(what(), e))?;
    for result in results {
        if let Err((name, code)) = result {
            return Err(PeerError::kafka(
                format!("{}: topic {name}", what()),
                KafkaError::AdminOp(code),
            ));
        }
    }
    wait_for_topic(bootstrap, topic, partitions, timeout)
}

/// Waits until Metadata shows `topic` with `partitions` partitions, each
/// with a leader.
pub fn wait_for_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), PeerError> {
    let consumer = consumer(bootstrap, &[])?;
    wait_for_topic_with(&consumer, topic, Some(partitions), timeout).map(|_| ())
}

/// Polls Metadata until `topic` has `partitions` partitions (any number
/// when `None`), each with a leader; returns the partition count.
fn wait_for_topic_with(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: Option<i32>,
    timeout: Duration,
) -> Result<i32, PeerError> {
    let start = Instant::now();
    let mut last = String::from("no answer yet");
    while start.elapsed() < timeout {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                    let n = i32::try_from(t.partitions().len()).unwrap_or(i32::MAX);
                    let led = t.partitions().iter().all(|p| p.leader() >= 0);
                    if t.error().is_none()
                        && n > 0
                        && led
                        && partitions.is_none_or(|want| want == n)
                    {
                        return Ok(n);
                    }
                    last = format!(
                        "topic error {:?}, {n} partitions, all led: {led}",
                        t.error()
                    );
                } else {
                    last = "topic absent".into();
                }
            }
            Err(e) => last = format!("metadata failed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(PeerError::Timeout {
        what: format!("topic {topic} to be ready ({partitions:?} partitions): {last}"),
        waited: timeout,
    })
}

/// Checks that `consumed` holds exactly the `sent` records: same count,
/// same keys, values and headers, each partition's offsets increasing, and
/// records of one key in the order they were sent (keyed records go to one
/// partition each with librdkafka's partitioner; unkeyed ones are not
/// checked for order).
pub fn check_same_records(sent: &[TestRecord], consumed: &[Consumed]) -> Result<(), String> {
    if sent.len() != consumed.len() {
        return Err(format!(
            "sent {} records, consumed {}",
            sent.len(),
            consumed.len()
        ));
    }
    type Content = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);
    let mut expected: HashMap<Content, usize> = HashMap::new();
    for r in sent {
        *expected
            .entry((r.key.clone(), r.value.clone(), r.headers.clone()))
            .or_default() += 1;
    }
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut by_key: HashMap<Option<Vec<u8>>, Vec<Vec<u8>>> = HashMap::new();
    for c in consumed {
        let content = (c.key.clone(), c.value.clone(), c.headers.clone());
        match expected.get_mut(&content) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                return Err(format!(
                    "consumed a record that was not sent (or twice): {}/{} value {:?}",
                    c.partition,
                    c.offset,
                    String::from_utf8_lossy(&c.value)
                ))
            }
        }
        if let Some(prev) = last_offset.insert(c.partition, c.offset) {
            if c.offset <= prev {
                return Err(format!(
                    "partition {} went from offset {prev} to {}",
                    c.partition, c.offset
                ));
            }
        }
        by_key
            .entry(c.key.clone())
            .or_default()
            .push(c.value.clone());
    }
    for (key, values) in by_key {
        if key.is_none() {
            // Unkeyed records are spread over partitions: no order to keep.
            continue;
        }
        let sent_order: Vec<&Vec<u8>> = sent
            .iter()
            .filter(|r| r.key == key)
            .map(|r| &r.value)
            .collect();
        if !values.iter().eq(sent_order.iter().copied()) {
            return Err(format!(
                "records of key {:?} came back in another order",
                key.map(|k| String::from_utf8_lossy(&k).into_owned())
            ));
        }
    }
    Ok(())
}

/// The leader (`host:port`) of each partition of `topic`, from Metadata.
pub fn partition_leaders(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, String>, PeerError> {
    let consumer = consumer(bootstrap, &[])?;
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| PeerError::kafka(format!("metadata of {topic} at {bootstrap}"), e))?;
    let brokers: HashMap<i32, String> = md
        .brokers()
        .iter()
        .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
        .collect();
    let mut out = BTreeMap::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            if let Some(addr) = brokers.get(&p.leader()) {
                out.insert(p.id(), addr.clone());
            }
        }
    }
    Ok(out)
}
