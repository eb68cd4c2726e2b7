//! A one-broker Kafka cluster on 127.0.0.1 that speaks just enough of the
//! protocol, through sansa-core's own codecs, to take records:
//! ApiVersions, Metadata (every topic asked for exists with
//! [`PARTITIONS`] partitions led by this broker), InitProducerId and
//! Produce.
//!
//! Produce is idempotent as a real broker's: per (producer id, epoch,
//! topic, partition) it expects sequences in order, answers a batch it
//! already has with that batch's offset (and counts the duplicate), and
//! rejects a gap with OUT_OF_ORDER_SEQUENCE_NUMBER. Tests can make it
//! withhold produce answers, or drop a connection after appending a
//! produce request's records without answering.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use sansa_core::protocol::header::decode_request;
use sansa_core::protocol::messages::api_versions_response::ApiVersion;
use sansa_core::protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sansa_core::protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use sansa_core::protocol::messages::{
    ApiVersionsResponse, InitProducerIdResponse, MetadataResponse, ProduceRequest, ProduceResponse,
};
use sansa_core::protocol::{ApiKey, Codec, RequestBody, ResponseBody, ResponseHeader, Uuid};
use sansa_core::record::Batches;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Partitions of every topic.
pub(crate) const PARTITIONS: i32 = 3;

const NODE: i32 = 1;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) offset: i64,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
}

#[derive(Debug, Default)]
struct Sequences {
    next: i32,
    /// (base sequence, base offset) of every batch appended.
    batches: Vec<(i32, i64)>,
}

/// What the broker saw; tests read it through [`FakeBroker::state`].
#[derive(Debug, Default)]
pub(crate) struct State {
    /// (topic, partition) -> log.
    pub(crate) logs: BTreeMap<(String, i32), Vec<Stored>>,
    pub(crate) produce_requests: usize,
    pub(crate) duplicates: usize,
    pub(crate) out_of_order: usize,
    pub(crate) connections: usize,
    pub(crate) open_connections: usize,
    next_producer_id: i64,
    sequences: HashMap<(i64, i16, String, i32), Sequences>,
    /// Produce requests (1-based, counted across connections) after which
    /// the connection is dropped without an answer.
    drop_at: Vec<usize>,
}

impl State {
    /// Records stored across all partitions.
    pub(crate) fn record_count(&self) -> usize {
        self.logs.values().map(Vec::len).sum()
    }

    /// The record at `offset` of a partition.
    pub(crate) fn record(&self, topic: &str, partition: i32, offset: i64) -> Option<&Stored> {
        self.logs
            .get(&(topic.to_owned(), partition))?
            .get(usize::try_from(offset).ok()?)
    }
}

struct Shared {
    state: Mutex<State>,
    withhold: watch::Sender<bool>,
    port: u16,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The broker; stops (closing every connection) when dropped.
pub(crate) struct FakeBroker {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

impl FakeBroker {
    /// Listens on an ephemeral port of 127.0.0.1.
    pub(crate) async fn start() -> FakeBroker {
        FakeBroker::start_on("127.0.0.1:0").await
    }

    /// Listens on `addr`.
    pub(crate) async fn start_on(addr: &str) -> FakeBroker {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_producer_id: 1000,
                ..State::default()
            }),
            withhold: watch::channel(false).0,
            port: addr.port(),
        });
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), tasks.clone()));
        tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(accept);
        FakeBroker {
            addr,
            shared,
            tasks,
        }
    }

    /// `127.0.0.1:port`, for seed_brokers.
    pub(crate) fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// What the broker saw so far.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// While on, produce requests are read but not handled or answered;
    /// turning it off handles the held ones in order.
    pub(crate) fn withhold_produce(&self, on: bool) {
        self.shared.withhold.send_replace(on);
    }

    /// Appends the records of produce request `n` (1-based, across
    /// connections), then drops its connection without answering.
    pub(crate) fn drop_connection_after_produce(&self, n: usize) {
        self.shared.lock().drop_at.push(n);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        {
            let mut s = shared.lock();
            s.connections += 1;
            s.open_connections += 1;
        }
        let shared2 = shared.clone();
        let task = tokio::spawn(async move {
            let _ = serve(stream, &shared2).await;
            shared2.lock().open_connections -= 1;
        });
        tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }
}

/// Answers one connection's requests in order, until EOF or a planned
/// drop.
async fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut withhold = shared.withhold.subscribe();
    loop {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await?;
        let len = usize::try_from(i32::from_be_bytes(len)).expect("frame length");
        let mut frame = vec![0u8; len];
        stream.read_exact(&mut frame).await?;
        let (header, body) = decode_request(Bytes::from(frame)).expect("a valid request");
        let version = header.request_api_version;
        let api = header.api_key().expect("a known api");
        let response = match body {
            RequestBody::ApiVersions(_) => ResponseBody::ApiVersions(api_versions()),
            RequestBody::Metadata(req) => {
                let topics: Vec<String> = req
                    .topics
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| t.name)
                    .collect();
                ResponseBody::Metadata(metadata(shared.port, &topics))
            }
            RequestBody::InitProducerId(req) => {
                let mut s = shared.lock();
                let (producer_id, producer_epoch) = if req.producer_id >= 0 {
                    (req.producer_id, req.producer_epoch + 1)
                } else {
                    s.next_producer_id += 1;
                    (s.next_producer_id, 0)
                };
                ResponseBody::InitProducerId(InitProducerIdResponse {
                    producer_id,
                    producer_epoch,
                    ..Default::default()
                })
            }
            RequestBody::Produce(req) => {
                let n = {
                    let mut s = shared.lock();
                    s.produce_requests += 1;
                    s.produce_requests
                };
                withhold
                    .wait_for(|on| !*on)
                    .await
                    .map_err(|_| std::io::ErrorKind::BrokenPipe)?;
                let acks = req.acks;
                let (resp, drop_now) = produce(&mut shared.lock(), n, req);
                if drop_now {
                    return Ok(());
                }
                if acks == 0 {
                    continue;
                }
                ResponseBody::Produce(resp)
            }
            other => panic!("the fake broker does not speak {:?}", other.api_key()),
        };
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        ResponseHeader {
            correlation_id: header.correlation_id,
            ..Default::default()
        }
        .encode(&mut buf, api.response_header_version(version))
        .expect("encode header");
        response.encode(&mut buf, version).expect("encode body");
        let size = i32::try_from(buf.len() - 4).expect("frame size");
        buf[..4].copy_from_slice(&size.to_be_bytes());
        stream.write_all(&buf).await?;
    }
}

fn api_versions() -> ApiVersionsResponse {
    let api_keys = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::InitProducerId,
        ApiKey::Produce,
    ]
    .into_iter()
    .map(|api| ApiVersion {
        api_key: api.key(),
        min_version: api.valid_versions().min,
        max_version: api.valid_versions().max,
        ..Default::default()
    })
    .collect();
    ApiVersionsResponse {
        api_keys,
        ..Default::default()
    }
}

fn metadata(port: u16, topics: &[String]) -> MetadataResponse {
    MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: NODE,
            host: "127.0.0.1".into(),
            port: i32::from(port),
            ..Default::default()
        }],
        cluster_id: Some("fake".into()),
        controller_id: NODE,
        topics: topics
            .iter()
            .enumerate()
            .map(|(i, name)| MetadataResponseTopic {
                name: Some(name.clone()),
                topic_id: Uuid::from_u64_pair(0xfa4e, i as u64 + 1),
                partitions: (0..PARTITIONS)
                    .map(|p| MetadataResponsePartition {
                        partition_index: p,
                        leader_id: NODE,
                        leader_epoch: 0,
                        replica_nodes: vec![NODE],
                        isr_nodes: vec![NODE],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Appends the batches of produce request `n`; returns the answer and whether
/// to drop the connection instead of sending it.
fn produce(s: &mut State, n: usize, req: ProduceRequest) -> (ProduceResponse, bool) {
    let drop_now = s.drop_at.contains(&n);
    let mut responses = Vec::new();
    for topic in req.topic_data {
        let mut partition_responses = Vec::new();
        for part in topic.partition_data {
            let (error_code, base_offset) =
                append(s, &topic.name, part.index, part.records.unwrap_or_default());
            partition_responses.push(PartitionProduceResponse {
                index: part.index,
                error_code,
                base_offset,
                log_append_time_ms: -1,
                log_start_offset: 0,
                ..Default::default()
            });
        }
        responses.push(TopicProduceResponse {
            name: topic.name,
            partition_responses,
            ..Default::default()
        });
    }
    let resp = ProduceResponse {
        responses,
        ..Default::default()
    };
    (resp, drop_now)
}

/// Appends one partition's batches (the client sends one per partition);
/// returns (error code, base offset).
fn append(s: &mut State, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let mut base = -1;
    for batch in Batches::new(records) {
        let batch = batch.expect("a valid batch");
        batch.verify_crc().expect("a correct crc");
        let pid = batch.producer_id();
        let log_len = s
            .logs
            .get(&(topic.to_owned(), partition))
            .map_or(0, Vec::len);
        if pid >= 0 {
            let key = (pid, batch.producer_epoch(), topic.to_owned(), partition);
            let seqs = s.sequences.entry(key).or_default();
            let seq = batch.base_sequence();
            if let Some(&(_, offset)) = seqs.batches.iter().find(|(b, _)| *b == seq) {
                s.duplicates += 1;
                return (0, offset);
            }
            if seq != seqs.next {
                s.out_of_order += 1;
                return (OUT_OF_ORDER_SEQUENCE_NUMBER, -1);
            }
            let count = batch.record_count().expect("a v2 batch");
            seqs.next = seq.wrapping_add(count);
            seqs.batches.push((seq, log_len as i64));
        }
        let log = s.logs.entry((topic.to_owned(), partition)).or_default();
        if base < 0 {
            base = log.len() as i64;
        }
        for r in batch.records().expect("records") {
            let r = r.expect("a valid record");
            log.push(Stored {
                offset: log.len() as i64,
                key: r.key,
                value: r.value,
            });
        }
    }
    (0, base)
}
