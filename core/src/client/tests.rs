//! The client driven against a scripted in-process cluster on a fake
//! clock (quinn-proto's `Pair` pattern): every byte goes through the real
//! codecs, and the cluster keeps logs so tests can check what was written,
//! not just what the client reported.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::compression::Compression;
use crate::conn::FrameReader;
use crate::consumer::{ConsumerConfig, FetchError, ResetPolicy, StartOffset};
use crate::producer::partitioner::java_key_partition;
use crate::producer::{ProduceError, Record, RecordMeta};
use crate::protocol::header::decode_request;
use crate::protocol::messages::api_versions_response::ApiVersion;
use crate::protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use crate::protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use crate::protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use crate::protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use crate::protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use crate::protocol::messages::{
    ApiVersionsResponse, FetchResponse, InitProducerIdResponse, ListOffsetsResponse,
    MetadataResponse, OffsetForLeaderEpochResponse, ProduceResponse,
};
use crate::protocol::{ApiKey, Codec, ErrorCode, RequestBody, ResponseHeader};
use crate::record::Batches;

mod group;

/// What the fake broker does with the next produce request for a
/// partition.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Answer with this error, write nothing.
    Error(ErrorCode),
    /// Write the batch, then answer with this error (a timeout waiting for
    /// replicas, NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    ErrorAfterAppend(ErrorCode),
    /// Write the batch, then drop the connection before answering.
    WriteThenDrop,
    /// Drop the connection without writing.
    DropUnwritten,
    /// Write the batch and never answer (the request times out).
    Blackhole,
}

#[derive(Debug, Default)]
struct PartitionLog {
    /// (key, value) of every record, by offset.
    records: Vec<(Option<Bytes>, Option<Bytes>)>,
    /// The timestamp of every record, by offset.
    timestamps: Vec<i64>,
    /// The batches as written, base offset stamped, for Fetch.
    batches: Vec<Bytes>,
    /// (producer id, epoch) -> next expected sequence
    next_seq: BTreeMap<i64, (i16, i32)>,
    leader: i32,
    log_start_offset: i64,
    /// The current leader epoch.
    leader_epoch: i32,
    /// (epoch, its first offset), oldest first: the leader-epoch cache
    /// OffsetForLeaderEpoch answers from.
    epoch_starts: Vec<(i32, i64)>,
}

impl PartitionLog {
    /// Kafka's answer to OffsetForLeaderEpoch for `epoch`: the largest
    /// epoch at or below it and where that epoch ends (the next epoch's
    /// start, or the log end); (-1, -1) if no epoch is that old.
    fn epoch_end(&self, epoch: i32) -> (i32, i64) {
        let Some(&(found, _)) = self.epoch_starts.iter().rev().find(|(e, _)| *e <= epoch) else {
            return (-1, -1);
        };
        let end = self
            .epoch_starts
            .iter()
            .find(|(e, _)| *e > found)
            .map_or(self.records.len() as i64, |&(_, start)| start);
        (found, end)
    }
}

/// A partition in a fetch session.
type SessionKey = (String, i32);
/// (fetch offset, max bytes, current leader epoch) of a session partition.
type SessionEntry = (i64, i32, i32);
/// A fetch session's partitions.
type SessionOffsets = BTreeMap<SessionKey, SessionEntry>;

struct Cluster {
    brokers: Vec<i32>,
    topics: BTreeMap<String, Vec<PartitionLog>>,
    conns: BTreeMap<ConnId, (i32, FrameReader)>,
    faults: BTreeMap<(String, i32), VecDeque<Fault>>,
    next_pid: i64,
    /// Frames to deliver to the client.
    inbox: VecDeque<Input>,
    /// Fetch answers with no records, held as a broker holds a fetch for
    /// up to its max wait: released when data arrives or time passes (at
    /// the time given, with `fetch_hold`).
    parked: Vec<(Option<Timestamp>, Input)>,
    /// Fetch sessions (KIP-227): id -> (next epoch, partition -> offset).
    sessions: BTreeMap<i32, (i32, SessionOffsets)>,
    /// Partitions listed in each fetch request, for the session test.
    fetch_listed: Vec<usize>,
    produce_requests: usize,
    fetches: usize,
    duplicates: usize,
    /// Answer epoch bumps (InitProducerId with an id) with this error, as
    /// librdkafka's mock cluster does for non-transactional producers.
    refuse_bumps: Option<ErrorCode>,
    /// Highest version advertised per API (default: all sansa knows).
    max_versions: BTreeMap<ApiKey, i16>,
    /// Fetch versions received, in order.
    fetch_versions: Vec<i16>,
    /// `max_bytes` of every Fetch received, in order.
    fetch_max_bytes: Vec<i32>,
    /// Errors for the next ListOffsets requests, one per request (every
    /// partition of it).
    list_errors: VecDeque<ErrorCode>,
    /// ListOffsets requests received.
    lists: usize,
    /// OffsetForLeaderEpoch requests received: (topic, partition,
    /// current leader epoch, leader epoch) of every partition in them.
    validations: Vec<(String, i32, i32, i32)>,
    /// Errors for the next OffsetForLeaderEpoch requests, one per request.
    validation_errors: VecDeque<ErrorCode>,
    /// How long an empty fetch is held before its answer (a broker's max
    /// wait); `None`: until the harness has nothing else to do.
    fetch_hold: Option<Duration>,
    /// The harness's clock.
    now: Timestamp,
    /// Connections the client opened.
    connects: usize,
    /// Brokers that are down: they refuse connections and drop out of
    /// Metadata answers while still leading their partitions, as Kafka's
    /// and librdkafka's mock cluster's do.
    down: std::collections::BTreeSet<i32>,
    /// The consumer-group coordinator (`tests/group.rs`).
    group: group::Coordinator,
}

fn port(node: i32) -> i32 {
    9000 + node
}

impl Cluster {
    fn new(brokers: i32) -> Self {
        Cluster {
            brokers: (1..=brokers).collect(),
            topics: BTreeMap::new(),
            conns: BTreeMap::new(),
            faults: BTreeMap::new(),
            next_pid: 1000,
            inbox: VecDeque::new(),
            parked: Vec::new(),
            sessions: BTreeMap::new(),
            fetch_listed: Vec::new(),
            produce_requests: 0,
            fetches: 0,
            duplicates: 0,
            refuse_bumps: None,
            max_versions: BTreeMap::new(),
            fetch_versions: Vec::new(),
            fetch_max_bytes: Vec::new(),
            list_errors: VecDeque::new(),
            lists: 0,
            validations: Vec::new(),
            validation_errors: VecDeque::new(),
            fetch_hold: None,
            now: Timestamp::ZERO,
            connects: 0,
            down: Default::default(),
            group: group::Coordinator::default(),
        }
    }

    fn partition_mut(&mut self, topic: &str, partition: i32) -> &mut PartitionLog {
        &mut self.topics.get_mut(topic).expect("topic")[partition as usize]
    }

    /// Takes broker `n` down: its connections drop, new ones are refused.
    fn broker_down(&mut self, n: i32) {
        self.down.insert(n);
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, (node, _))| *node == n)
            .map(|(&id, _)| id)
            .collect();
        for id in conns {
            self.drop_conn(id);
        }
    }

    /// A clean leader move: a new epoch starting at the log end.
    fn move_leader(&mut self, topic: &str, partition: i32, leader: i32) {
        let log = self.partition_mut(topic, partition);
        log.leader = leader;
        log.leader_epoch += 1;
        let start = log.records.len() as i64;
        let epoch = log.leader_epoch;
        log.epoch_starts.push((epoch, start));
    }

    /// Cuts the log at `truncate_to` (a batch boundary).
    fn truncate(&mut self, topic: &str, partition: i32, truncate_to: i64) {
        let log = self.partition_mut(topic, partition);
        log.batches.retain(|b| {
            let base = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
            base < truncate_to
        });
        log.records.truncate(truncate_to as usize);
        log.timestamps.truncate(truncate_to as usize);
        log.epoch_starts.retain(|&(_, start)| start <= truncate_to);
    }

    /// An unclean leader election: the new leader's log ends at
    /// `truncate_to` (a batch boundary), and its new epoch starts there.
    fn unclean_leader_move(&mut self, topic: &str, partition: i32, leader: i32, truncate_to: i64) {
        self.truncate(topic, partition, truncate_to);
        let log = self.partition_mut(topic, partition);
        log.leader = leader;
        log.leader_epoch += 1;
        let epoch = log.leader_epoch;
        log.epoch_starts.push((epoch, truncate_to));
    }

    fn create_topic(&mut self, name: &str, partitions: i32) {
        let logs = (0..partitions)
            .map(|p| PartitionLog {
                leader: self.brokers[(p as usize) % self.brokers.len()],
                epoch_starts: vec![(0, 0)],
                ..Default::default()
            })
            .collect();
        self.topics.insert(name.into(), logs);
    }

    fn fault(&mut self, topic: &str, partition: i32, f: Fault) {
        self.faults
            .entry((topic.into(), partition))
            .or_default()
            .push_back(f);
    }

    fn answer(&mut self, conn: ConnId, corr: i32, api: ApiKey, version: i16, body: impl Codec) {
        let mut b = BytesMut::new();
        b.put_i32(0);
        ResponseHeader {
            correlation_id: corr,
            ..Default::default()
        }
        .encode(&mut b, api.response_header_version(version))
        .expect("header");
        body.encode(&mut b, version).expect("body");
        let size = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&size.to_be_bytes());
        self.inbox.push_back(Input::Received(conn, b.freeze()));
    }

    fn drop_conn(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
        self.inbox.push_back(Input::Closed(conn, "fault".into()));
    }

    fn on_output(&mut self, out: Output, events: &mut Vec<Event>) {
        match out {
            Output::Connect { conn, addr } => {
                self.connects += 1;
                let node = addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<i32>().ok())
                    .map(|p| p - 9000)
                    .filter(|n| self.brokers.contains(n) && !self.down.contains(n));
                match node {
                    Some(n) => {
                        self.conns.insert(conn, (n, FrameReader::new(1 << 26)));
                        self.inbox.push_back(Input::Connected(conn));
                    }
                    None => self
                        .inbox
                        .push_back(Input::ConnectFailed(conn, "refused".into())),
                }
            }
            Output::Transmit { conn, data } => {
                let Some((_, reader)) = self.conns.get_mut(&conn) else {
                    return;
                };
                reader.push(&data);
                let mut frames = Vec::new();
                while let Ok(Some(f)) = reader.next_frame() {
                    frames.push(f);
                }
                for f in frames {
                    if self.conns.contains_key(&conn) {
                        self.on_request(conn, f);
                    }
                }
            }
            Output::Close(conn) => {
                self.conns.remove(&conn);
            }
            Output::Event(e) => events.push(e),
        }
    }

    fn on_request(&mut self, conn: ConnId, frame: Bytes) {
        let (h, body) = decode_request(frame).expect("client sent a valid request");
        let v = h.request_api_version;
        let corr = h.correlation_id;
        let node = self.conns.get(&conn).map_or(-1, |c| c.0);
        match body {
            RequestBody::ApiVersions(_) => {
                let resp = ApiVersionsResponse {
                    api_keys: ApiKey::ALL
                        .iter()
                        .map(|k| ApiVersion {
                            api_key: k.key(),
                            min_version: k.valid_versions().min,
                            max_version: self
                                .max_versions
                                .get(k)
                                .copied()
                                .unwrap_or(k.valid_versions().max),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                };
                self.answer(conn, corr, ApiKey::ApiVersions, v, resp);
            }
            RequestBody::Metadata(req) => {
                let wanted: Option<Vec<String>> = req
                    .topics
                    .map(|ts| ts.into_iter().filter_map(|t| t.name).collect());
                let names: Vec<String> = match wanted {
                    Some(w) => w,
                    None => self.topics.keys().cloned().collect(),
                };
                let topics = names
                    .into_iter()
                    .map(|name| match self.topics.get(&name) {
                        Some(parts) => MetadataResponseTopic {
                            name: Some(name),
                            partitions: parts
                                .iter()
                                .enumerate()
                                .map(|(i, p)| MetadataResponsePartition {
                                    partition_index: i as i32,
                                    leader_id: p.leader,
                                    leader_epoch: p.leader_epoch,
                                    replica_nodes: vec![p.leader],
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        },
                        None => MetadataResponseTopic {
                            name: Some(name),
                            error_code: ErrorCode::UnknownTopicOrPartition.code(),
                            ..Default::default()
                        },
                    })
                    .collect();
                let resp = MetadataResponse {
                    brokers: self
                        .brokers
                        .iter()
                        .filter(|n| !self.down.contains(n))
                        .map(|&n| MetadataResponseBroker {
                            node_id: n,
                            host: "127.0.0.1".into(),
                            port: port(n),
                            rack: Some(format!("rack-{n}")),
                            ..Default::default()
                        })
                        .collect(),
                    controller_id: 1,
                    topics,
                    ..Default::default()
                };
                self.answer(conn, corr, ApiKey::Metadata, v, resp);
            }
            RequestBody::InitProducerId(req) => {
                if let Some(e) = self.refuse_bumps.filter(|_| req.producer_id >= 0) {
                    let resp = InitProducerIdResponse {
                        error_code: e.code(),
                        producer_id: -1,
                        producer_epoch: -1,
                        ..Default::default()
                    };
                    self.answer(conn, corr, ApiKey::InitProducerId, v, resp);
                    return;
                }
                let (id, epoch) = if req.producer_id >= 0 {
                    (req.producer_id, req.producer_epoch + 1)
                } else {
                    self.next_pid += 1;
                    (self.next_pid, 0)
                };
                let resp = InitProducerIdResponse {
                    producer_id: id,
                    producer_epoch: epoch,
                    ..Default::default()
                };
                self.answer(conn, corr, ApiKey::InitProducerId, v, resp);
            }
            RequestBody::Produce(req) => {
                self.produce_requests += 1;
                self.inbox.extend(self.parked.drain(..).map(|(_, i)| i));
                let mut responses = Vec::new();
                let mut action = None;
                for t in req.topic_data {
                    let mut parts = Vec::new();
                    for p in t.partition_data {
                        let fault = self
                            .faults
                            .get_mut(&(t.name.clone(), p.index))
                            .and_then(VecDeque::pop_front);
                        let r = self.produce_partition(
                            node,
                            &t.name,
                            p.index,
                            p.records.unwrap_or_default(),
                            fault,
                        );
                        if let Fault::WriteThenDrop | Fault::DropUnwritten | Fault::Blackhole =
                            fault.unwrap_or(Fault::Error(ErrorCode::None))
                        {
                            action = fault;
                        }
                        parts.push(r);
                    }
                    responses.push(TopicProduceResponse {
                        name: t.name,
                        partition_responses: parts,
                        ..Default::default()
                    });
                }
                match action {
                    Some(Fault::WriteThenDrop | Fault::DropUnwritten) => self.drop_conn(conn),
                    Some(Fault::Blackhole) => {}
                    _ => {
                        if req.acks != 0 {
                            let resp = ProduceResponse {
                                responses,
                                ..Default::default()
                            };
                            self.answer(conn, corr, ApiKey::Produce, v, resp);
                        }
                    }
                }
            }
            RequestBody::ListOffsets(req) => {
                self.lists += 1;
                let error = self.list_errors.pop_front();
                let topics = req
                    .topics
                    .into_iter()
                    .map(|t| {
                        let log = self.topics.get(&t.name);
                        ListOffsetsTopicResponse {
                            partitions: t
                                .partitions
                                .into_iter()
                                .map(|p| {
                                    let partition =
                                        log.and_then(|l| l.get(p.partition_index as usize));
                                    let end = partition.map_or(0, |l| l.records.len() as i64);
                                    if let Some(e) = error {
                                        return ListOffsetsPartitionResponse {
                                            partition_index: p.partition_index,
                                            error_code: e.code(),
                                            offset: -1,
                                            ..Default::default()
                                        };
                                    }
                                    let start = partition.map_or(0, |l| l.log_start_offset);
                                    let offset = match p.timestamp {
                                        -2 => start,
                                        -1 => end,
                                        // The first record at or after the
                                        // time from the log start on, -1 if
                                        // none is (Kafka).
                                        t => partition
                                            .and_then(|l| {
                                                l.timestamps
                                                    .iter()
                                                    .enumerate()
                                                    .skip(usize::try_from(start).unwrap_or(0))
                                                    .find(|(_, &ts)| ts >= t)
                                                    .map(|(o, _)| o)
                                            })
                                            .map_or(-1, |o| o as i64),
                                    };
                                    ListOffsetsPartitionResponse {
                                        partition_index: p.partition_index,
                                        offset,
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            name: t.name,
                            ..Default::default()
                        }
                    })
                    .collect();
                let resp = ListOffsetsResponse {
                    topics,
                    ..Default::default()
                };
                self.answer(conn, corr, ApiKey::ListOffsets, v, resp);
            }
            RequestBody::Fetch(req) => {
                self.fetches += 1;
                self.fetch_versions.push(v);
                self.fetch_max_bytes.push(req.max_bytes);
                self.fetch_listed
                    .push(req.topics.iter().map(|t| t.partitions.len()).sum());
                // Which partitions to answer for, at which offsets and
                // sizes: the request's, or for an incremental fetch the
                // session's after applying the request (KIP-227).
                let mut wanted: SessionOffsets = req
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| {
                            (
                                (t.topic.clone(), p.partition),
                                (
                                    p.fetch_offset,
                                    p.partition_max_bytes,
                                    p.current_leader_epoch,
                                ),
                            )
                        })
                    })
                    .collect();
                let mut session_id = 0;
                let mut incremental = false;
                if req.session_epoch == 0 {
                    session_id = self.sessions.len() as i32 + 1;
                    self.sessions.insert(session_id, (1, wanted.clone()));
                } else if req.session_epoch > 0 {
                    let Some((epoch, parts)) = self.sessions.get_mut(&req.session_id) else {
                        let resp = FetchResponse {
                            error_code: ErrorCode::FetchSessionIdNotFound.code(),
                            ..Default::default()
                        };
                        self.answer(conn, corr, ApiKey::Fetch, v, resp);
                        return;
                    };
                    assert_eq!(*epoch, req.session_epoch, "session epochs go up by one");
                    *epoch += 1;
                    for f in &req.forgotten_topics_data {
                        for p in &f.partitions {
                            parts.remove(&(f.topic.clone(), *p));
                        }
                    }
                    parts.extend(wanted);
                    wanted = parts.clone();
                    session_id = req.session_id;
                    incremental = true;
                }
                // Bytes of this answer so far: a broker stops adding
                // partitions at `max_bytes` but always returns one batch.
                let mut total = 0usize;
                let mut by_topic: Vec<(String, Vec<PartitionData>)> = Vec::new();
                fn entry<'a>(
                    v: &'a mut Vec<(String, Vec<PartitionData>)>,
                    t: &str,
                ) -> &'a mut Vec<PartitionData> {
                    if v.last().is_none_or(|(n, _)| n != t) {
                        v.push((t.to_string(), Vec::new()));
                    }
                    let last = v.len() - 1;
                    &mut v[last].1
                }
                // A full fetch is answered in request order (a broker fills
                // partitions in that order up to max_bytes); an
                // incremental one in the session's.
                let order: Vec<(SessionKey, SessionEntry)> = if incremental {
                    wanted.into_iter().collect()
                } else {
                    req.topics
                        .iter()
                        .flat_map(|t| {
                            t.partitions.iter().map(|p| {
                                (
                                    (t.topic.clone(), p.partition),
                                    (
                                        p.fetch_offset,
                                        p.partition_max_bytes,
                                        p.current_leader_epoch,
                                    ),
                                )
                            })
                        })
                        .collect()
                };
                for ((topic, partition), (fetch_offset, partition_max, epoch)) in order {
                    let Some(log) = self
                        .topics
                        .get(&topic)
                        .and_then(|l| l.get(partition as usize))
                    else {
                        entry(&mut by_topic, &topic).push(PartitionData {
                            partition_index: partition,
                            error_code: ErrorCode::UnknownTopicOrPartition.code(),
                            ..Default::default()
                        });
                        continue;
                    };
                    let hw = log.records.len() as i64;
                    // Leadership and epoch fencing (KIP-320), as Kafka
                    // checks them before the offset.
                    let fenced = if log.leader != node {
                        Some(ErrorCode::NotLeaderOrFollower)
                    } else if epoch >= 0 && epoch < log.leader_epoch {
                        Some(ErrorCode::FencedLeaderEpoch)
                    } else if epoch > log.leader_epoch {
                        Some(ErrorCode::UnknownLeaderEpoch)
                    } else {
                        None
                    };
                    if let Some(e) = fenced {
                        entry(&mut by_topic, &topic).push(PartitionData {
                            partition_index: partition,
                            error_code: e.code(),
                            high_watermark: -1,
                            ..Default::default()
                        });
                        continue;
                    }
                    if fetch_offset > hw || fetch_offset < log.log_start_offset.max(0) {
                        entry(&mut by_topic, &topic).push(PartitionData {
                            partition_index: partition,
                            error_code: ErrorCode::OffsetOutOfRange.code(),
                            high_watermark: hw,
                            ..Default::default()
                        });
                        continue;
                    }
                    let mut data = BytesMut::new();
                    for b in &log.batches {
                        let base = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
                        let count = i32::from_be_bytes(b[57..61].try_into().expect("4 bytes"));
                        if base + i64::from(count) > fetch_offset
                            && data.len() < partition_max as usize
                            && (total == 0 || total < req.max_bytes as usize)
                        {
                            data.extend_from_slice(b);
                            total += b.len();
                        }
                    }
                    if incremental && data.is_empty() {
                        // Nothing new: an incremental answer leaves it out.
                        continue;
                    }
                    entry(&mut by_topic, &topic).push(PartitionData {
                        partition_index: partition,
                        high_watermark: hw,
                        records: Some(data.freeze()),
                        ..Default::default()
                    });
                }
                let responses: Vec<FetchableTopicResponse> = by_topic
                    .into_iter()
                    .map(|(topic, partitions)| FetchableTopicResponse {
                        topic,
                        partitions,
                        ..Default::default()
                    })
                    .collect();
                let empty = responses.iter().all(|t| {
                    t.partitions.iter().all(|p| {
                        p.error_code == 0 && p.records.as_ref().is_none_or(|r| r.is_empty())
                    })
                });
                let resp = FetchResponse {
                    responses,
                    session_id,
                    ..Default::default()
                };
                self.answer(conn, corr, ApiKey::Fetch, v, resp);
                if empty {
                    if let Some(answer) = self.inbox.pop_back() {
                        let release = self.fetch_hold.map(|d| self.now + d);
                        self.parked.push((release, answer));
                    }
                }
            }
            RequestBody::OffsetForLeaderEpoch(req) => {
                assert_eq!(req.replica_id, -1, "a consumer, not a replica");
                let error = self.validation_errors.pop_front();
                let topics = req
                    .topics
                    .into_iter()
                    .map(|t| OffsetForLeaderTopicResult {
                        partitions: t
                            .partitions
                            .iter()
                            .map(|p| {
                                self.validations.push((
                                    t.topic.clone(),
                                    p.partition,
                                    p.current_leader_epoch,
                                    p.leader_epoch,
                                ));
                                let mut answer = EpochEndOffset {
                                    partition: p.partition,
                                    leader_epoch: -1,
                                    end_offset: -1,
                                    ..Default::default()
                                };
                                let log = self
                                    .topics
                                    .get(&t.topic)
                                    .and_then(|l| l.get(p.partition as usize));
                                let error = match log {
                                    _ if error.is_some() => error,
                                    None => Some(ErrorCode::UnknownTopicOrPartition),
                                    Some(l) if l.leader != node => {
                                        Some(ErrorCode::NotLeaderOrFollower)
                                    }
                                    Some(l) if p.current_leader_epoch < l.leader_epoch => {
                                        Some(ErrorCode::FencedLeaderEpoch)
                                    }
                                    Some(l) if p.current_leader_epoch > l.leader_epoch => {
                                        Some(ErrorCode::UnknownLeaderEpoch)
                                    }
                                    Some(l) => {
                                        (answer.leader_epoch, answer.end_offset) =
                                            l.epoch_end(p.leader_epoch);
                                        None
                                    }
                                };
                                if let Some(e) = error {
                                    answer.error_code = e.code();
                                }
                                answer
                            })
                            .collect(),
                        topic: t.topic,
                        ..Default::default()
                    })
                    .collect();
                let resp = OffsetForLeaderEpochResponse {
                    topics,
                    ..Default::default()
                };
                self.answer(conn, corr, ApiKey::OffsetForLeaderEpoch, v, resp);
            }
            other if group::is_group_api(other.api_key()) => {
                self.on_group_request(conn, corr, v, other)
            }
            other => panic!("unexpected request {:?}", other.api_key()),
        }
    }

    fn produce_partition(
        &mut self,
        node: i32,
        topic: &str,
        partition: i32,
        records: Bytes,
        fault: Option<Fault>,
    ) -> PartitionProduceResponse {
        let mut resp = PartitionProduceResponse {
            index: partition,
            ..Default::default()
        };
        let Some(log) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.get_mut(partition as usize))
        else {
            resp.error_code = ErrorCode::UnknownTopicOrPartition.code();
            return resp;
        };
        if log.leader != node {
            resp.error_code = ErrorCode::NotLeaderOrFollower.code();
            return resp;
        }
        match fault {
            Some(Fault::Error(e)) => {
                resp.error_code = e.code();
                resp.log_start_offset = log.log_start_offset;
                return resp;
            }
            Some(Fault::DropUnwritten) => return resp,
            _ => {}
        }
        let after_append = match fault {
            Some(Fault::ErrorAfterAppend(e)) => Some(e),
            _ => None,
        };
        let batch = Batches::new(records)
            .next()
            .expect("one batch")
            .expect("valid batch");
        batch.verify_crc().expect("crc");
        let pid = batch.producer_id();
        if pid >= 0 {
            let (epoch, next) = log
                .next_seq
                .get(&pid)
                .copied()
                .unwrap_or((batch.producer_epoch(), 0));
            let seq = batch.base_sequence();
            if batch.producer_epoch() > epoch {
                if seq != 0 {
                    resp.error_code = ErrorCode::OutOfOrderSequenceNumber.code();
                    return resp;
                }
            } else if seq < next {
                self.duplicates += 1;
                resp.error_code = ErrorCode::DuplicateSequenceNumber.code();
                return resp;
            } else if seq > next {
                resp.error_code = ErrorCode::OutOfOrderSequenceNumber.code();
                resp.log_start_offset = log.log_start_offset;
                return resp;
            }
            let count = batch.record_count().unwrap_or(0);
            log.next_seq
                .insert(pid, (batch.producer_epoch(), seq + count));
        }
        resp.base_offset = log.records.len() as i64;
        let mut stored = BytesMut::from(batch.as_bytes().as_ref());
        // The base offset and the partition leader epoch sit outside the
        // CRC: the broker stamps them.
        stored[..8].copy_from_slice(&resp.base_offset.to_be_bytes());
        stored[12..16].copy_from_slice(&log.leader_epoch.to_be_bytes());
        log.batches.push(stored.freeze());
        for r in batch.records().expect("records") {
            let r = r.expect("record");
            log.timestamps.push(r.timestamp);
            log.records.push((r.key, r.value));
        }
        if let Some(e) = after_append {
            resp.error_code = e.code();
            resp.base_offset = -1;
        }
        resp
    }
}

struct Harness {
    client: Client,
    cluster: Cluster,
    now: Timestamp,
    events: Vec<Event>,
}

impl Harness {
    fn new(cluster: Cluster, config: ConfigBuilder) -> Self {
        let seeds: Vec<String> = cluster
            .brokers
            .iter()
            .map(|&n| format!("127.0.0.1:{}", port(n)))
            .collect();
        let config = config.seed_brokers(seeds).build().expect("config");
        Harness {
            client: Client::new(config).expect("client"),
            cluster,
            now: Timestamp::ZERO,
            events: Vec::new(),
        }
    }

    /// Runs until nothing is left to do or `until` holds; time jumps to the
    /// next deadline when idle.
    fn run(&mut self, mut until: impl FnMut(&Harness) -> bool) {
        for _ in 0..200_000 {
            let mut progressed = false;
            self.cluster.now = self.now;
            while let Some(o) = self.client.poll_output(self.now) {
                self.cluster.on_output(o, &mut self.events);
                progressed = true;
            }
            if until(self) {
                return;
            }
            while let Some(i) = self.cluster.inbox.pop_front() {
                self.client.handle_input(self.now, i);
                progressed = true;
            }
            let release = self.cluster.parked.iter().filter_map(|p| p.0).min();
            if let Some(release) = release.filter(|_| !progressed) {
                // Held fetches answer at their time, unless a deadline of
                // the client comes first.
                match self.client.poll_timeout() {
                    Some(t) if t < release => {
                        self.now = self.now.max(t);
                        self.client.handle_input(self.now, Input::Timeout);
                    }
                    _ => {
                        self.now = self.now.max(release);
                        let now = self.now;
                        let (due, held): (Vec<_>, Vec<_>) = self
                            .cluster
                            .parked
                            .drain(..)
                            .partition(|p| p.0.is_some_and(|t| t <= now));
                        self.cluster.parked = held;
                        self.cluster.inbox.extend(due.into_iter().map(|p| p.1));
                    }
                }
                continue;
            }
            if !progressed && !self.cluster.parked.is_empty() {
                // Nothing else happens: held fetches answer at their max
                // wait.
                self.now = self.now + Duration::from_millis(500);
                let parked: Vec<Input> = self.cluster.parked.drain(..).map(|p| p.1).collect();
                self.cluster.inbox.extend(parked);
                continue;
            }
            if !progressed {
                match self.client.poll_timeout() {
                    Some(t) => {
                        if t > self.now {
                            self.now = t;
                        }
                        self.client.handle_input(self.now, Input::Timeout);
                    }
                    None => return,
                }
            }
        }
        panic!("did not settle");
    }

    /// Runs for `d` of virtual time.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run(|h| h.now >= end);
    }

    fn produce(&mut self, r: Record) -> ProduceId {
        self.client
            .produce(self.now, r, 1_700_000_000_000)
            .expect("buffered")
    }

    fn delivered(&self) -> Vec<(ProduceId, RecordMeta)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Delivered { id, meta } => Some((*id, meta.clone())),
                _ => None,
            })
            .collect()
    }

    fn failed(&self) -> Vec<(ProduceId, ProduceError)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ProduceFailed { id, error, .. } => Some((*id, error.clone())),
                _ => None,
            })
            .collect()
    }

    fn log(&self, topic: &str, partition: usize) -> &[(Option<Bytes>, Option<Bytes>)] {
        &self.cluster.topics[topic][partition].records
    }
}

fn keyed(i: usize) -> Record {
    Record::new("t", format!("v{i}")).with_key(format!("k{i}"))
}

/// The values a partition's log holds, in order.
fn values(h: &Harness, partition: usize) -> Vec<String> {
    h.log("t", partition)
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

fn assert_exactly_once_in_order(h: &Harness, n: usize, partitions: usize) {
    let mut seen = vec![0usize; n];
    for p in 0..partitions {
        let mut last: Option<usize> = None;
        for v in values(h, p) {
            let i: usize = v[1..].parse().expect("value");
            seen[i] += 1;
            assert!(
                last.is_none_or(|l| l < i),
                "partition {p} out of order: {last:?} then {i}"
            );
            last = Some(i);
        }
    }
    let wrong: Vec<_> = seen.iter().enumerate().filter(|(_, &c)| c != 1).collect();
    assert!(
        wrong.is_empty(),
        "records not written exactly once: {:?}",
        &wrong[..wrong.len().min(10)]
    );
}

#[test]
fn keyed_records_land_where_java_puts_them_exactly_once() {
    let mut cluster = Cluster::new(3);
    cluster.create_topic("t", 6);
    let mut h = Harness::new(cluster, Config::builder().compression(Compression::Lz4));
    let n = 2000;
    for i in 0..n {
        h.produce(keyed(i));
    }
    h.run(|h| h.client.is_idle());
    let delivered = h.delivered();
    assert!(
        h.failed().is_empty(),
        "{:?}",
        &h.failed()[..h.failed().len().min(3)]
    );
    assert_eq!(delivered.len(), n);
    for (id, meta) in &delivered {
        let key = format!("k{}", id.0);
        assert_eq!(
            meta.partition,
            java_key_partition(key.as_bytes(), 6),
            "{key}"
        );
    }
    assert_exactly_once_in_order(&h, n, 6);
    // Offsets are what the log says, increasing per partition.
    for (id, meta) in delivered {
        let (k, _) = &h.log("t", meta.partition as usize)[meta.offset as usize];
        assert_eq!(k.as_deref(), Some(format!("k{}", id.0).as_bytes()));
    }
}

#[test]
fn retriable_errors_are_retried_and_leader_moves_followed() {
    let mut cluster = Cluster::new(3);
    cluster.create_topic("t", 3);
    for p in 0..3 {
        cluster.fault("t", p, Fault::Error(ErrorCode::NotEnoughReplicas));
        cluster.fault("t", p, Fault::Error(ErrorCode::RequestTimedOut));
    }
    let mut h = Harness::new(cluster, Config::builder());
    for i in 0..300 {
        h.produce(keyed(i));
    }
    h.run(|h| h.cluster.produce_requests >= 3);
    // Move every leader; the client learns it from NOT_LEADER answers.
    for log in h.cluster.topics.get_mut("t").expect("topic") {
        log.leader = log.leader % 3 + 1;
    }
    h.run(|h| h.client.is_idle());
    assert_eq!(h.delivered().len(), 300);
    assert!(h.failed().is_empty(), "{:?}", h.failed());
    assert_exactly_once_in_order(&h, 300, 3);
}

#[test]
fn a_produce_told_its_leader_moved_follows_it_without_waiting_metadata_min_age() {
    let mut cluster = Cluster::new(2);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder().linger(Duration::ZERO));
    h.produce(keyed(0));
    h.run(|h| h.delivered().len() == 1);
    // The leader moves; the next produce goes to broker 1 and is told
    // NOT_LEADER_OR_FOLLOWER.
    let moved_at = h.now;
    h.cluster.move_leader("t", 0, 2);
    h.produce(keyed(1));
    h.run(|h| h.delivered().len() == 2);
    // One urgent refresh, bounded by the retry backoff (250 ms), not
    // `metadata_min_age` (5 s) after the last one.
    let stall = h.now.saturating_duration_since(moved_at);
    assert!(stall <= Duration::from_millis(600), "stalled {stall:?}");
    assert!(h.failed().is_empty(), "{:?}", h.failed());
    assert_exactly_once_in_order(&h, 2, 1);
}

#[test]
fn a_connection_lost_after_the_write_is_retried_without_duplicates() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    cluster.fault("t", 0, Fault::WriteThenDrop);
    cluster.fault("t", 0, Fault::DropUnwritten);
    cluster.fault("t", 0, Fault::WriteThenDrop);
    let mut h = Harness::new(cluster, Config::builder().linger(Duration::from_millis(1)));
    for i in 0..500 {
        h.produce(keyed(i));
        if i % 50 == 0 {
            h.run_for(Duration::from_millis(20));
        }
    }
    h.run(|h| h.client.is_idle());
    assert_eq!(h.delivered().len(), 500);
    assert!(
        h.cluster.duplicates >= 1,
        "the retried batch reached the broker twice"
    );
    assert_exactly_once_in_order(&h, 500, 1);
}

#[test]
fn a_request_timeout_is_ambiguous_and_never_failed_by_the_delivery_timeout() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    cluster.fault("t", 0, Fault::Blackhole);
    let mut h = Harness::new(
        cluster,
        Config::builder()
            .request_timeout(Duration::from_secs(2))
            .record_delivery_timeout(Some(Duration::from_millis(500))),
    );
    h.produce(keyed(0));
    h.run(|h| h.client.is_idle());
    // The broker wrote it: the client must not have called it failed.
    assert_eq!(h.log("t", 0).len(), 1);
    assert_eq!(h.delivered().len(), 1, "failed: {:?}", h.failed());
}

#[test]
fn a_rejected_batch_fails_with_every_record_behind_it() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    cluster.fault("t", 0, Fault::Error(ErrorCode::MessageTooLarge));
    let mut h = Harness::new(cluster, Config::builder().linger(Duration::from_millis(5)));
    h.produce(keyed(0));
    h.produce(keyed(1));
    h.run(|h| h.client.is_idle());
    let failed = h.failed();
    assert_eq!(failed.len(), 2);
    assert_eq!(
        failed[0].1,
        ProduceError::Broker(ErrorCode::MessageTooLarge)
    );
    // The next record starts over from the failed batch's sequence.
    h.produce(keyed(2));
    h.run(|h| h.client.is_idle());
    assert_eq!(h.delivered().len(), 1);
    assert_eq!(values(&h, 0), vec!["v2".to_string()]);
}

#[test]
fn retries_are_bounded_when_asked() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    for _ in 0..10 {
        cluster.fault("t", 0, Fault::Error(ErrorCode::NotEnoughReplicas));
    }
    let mut h = Harness::new(cluster, Config::builder().record_retries(Some(2)));
    h.produce(keyed(0));
    h.run(|h| h.client.is_idle());
    assert_eq!(
        h.failed(),
        vec![(
            ProduceId(0),
            ProduceError::RetriesExhausted(ErrorCode::NotEnoughReplicas)
        )]
    );
    assert!(h.log("t", 0).is_empty());
}

#[test]
fn truncated_producer_state_bumps_the_epoch_and_resends() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder());
    h.produce(keyed(0));
    h.run(|h| h.client.is_idle());
    // Retention removed the producer's state: the broker forgets its
    // sequence and reports the log start past everything acknowledged.
    let log = &mut h.cluster.topics.get_mut("t").expect("topic")[0];
    log.next_seq.clear();
    log.log_start_offset = 1;
    h.cluster
        .fault("t", 0, Fault::Error(ErrorCode::OutOfOrderSequenceNumber));
    h.produce(keyed(1));
    h.run(|h| h.client.is_idle());
    assert!(h.failed().is_empty(), "{:?}", h.failed());
    assert_eq!(values(&h, 0), vec!["v0".to_string(), "v1".to_string()]);
}

#[test]
fn a_refused_epoch_bump_after_data_loss_gets_a_new_producer_id() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    // librdkafka's mock cluster refuses bumps without a transactional id.
    cluster.refuse_bumps = Some(ErrorCode::InvalidProducerIdMapping);
    let mut h = Harness::new(cluster, Config::builder());
    h.produce(keyed(0));
    h.run(|h| h.client.is_idle());
    // Out of order with the log intact: data loss, reported, then a reset
    // (franz-go's rule without transactions: the record is not failed).
    h.cluster
        .fault("t", 0, Fault::Error(ErrorCode::OutOfOrderSequenceNumber));
    h.produce(keyed(1));
    h.run(|h| h.client.is_idle());
    assert!(h.failed().is_empty(), "{:?}", h.failed());
    assert!(h.events.contains(&Event::DataLossDetected {
        topic: "t".into(),
        partition: 0
    }));
    // The bump is refused; a new producer id lets production go on.
    h.produce(keyed(2));
    h.run(|h| h.client.is_idle());
    assert_eq!(h.delivered().len(), 3, "failed: {:?}", h.failed());
    assert_eq!(
        values(&h, 0),
        vec!["v0".to_string(), "v1".to_string(), "v2".to_string()]
    );
}

#[test]
fn try_produce_fails_fast_when_the_buffer_is_full_and_flush_waits() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(
        cluster,
        Config::builder()
            .max_buffered_records(3)
            .manual_flushing(true),
    );
    for i in 0..3 {
        assert!(h.client.try_produce(h.now, keyed(i), 0).is_ok());
    }
    assert_eq!(
        h.client.try_produce(h.now, keyed(3), 0),
        Err(ProduceError::BufferFull)
    );
    // produce() waits for space instead.
    let waiting = h.produce(keyed(3));
    h.run_for(Duration::from_millis(20));
    assert!(
        h.log("t", 0).is_empty(),
        "manual flushing sends nothing by itself"
    );
    // The flush covers the waiting record too: it was produced before.
    let f = h.client.flush(h.now);
    h.run(|h| h.events.contains(&Event::Flushed(f)));
    assert_eq!(h.log("t", 0).len(), 4);
    assert!(h.events.contains(&Event::Buffered(waiting)));
    assert_eq!(h.delivered().len(), 4);
}

/// Linger waits for records still to come; a full buffer admits none
/// until something is delivered, so its batches go at once rather than
/// idle out the linger (franz-go unlingers when a produce blocks on a full
/// buffer). Space freed by deliveries brings the linger back.
#[test]
fn a_full_buffer_sends_without_waiting_out_the_linger() {
    let linger = Duration::from_secs(10);
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(
        cluster,
        Config::builder().linger(linger).max_buffered_records(2),
    );
    h.produce(keyed(0));
    h.produce(keyed(1));
    h.run(|h| h.delivered().len() == 2);
    assert!(
        h.now < Timestamp::ZERO + linger,
        "sent when full, at {:?}",
        h.now
    );

    let refilled = h.now;
    h.produce(keyed(2));
    h.run(|h| h.delivered().len() == 3);
    assert!(
        h.now >= refilled + linger,
        "with room again, a batch lingers"
    );
    assert_eq!(values(&h, 0), ["v0", "v1", "v2"]);
}

/// The same when `max_buffered_bytes` is what fills the buffer.
#[test]
fn a_buffer_full_of_bytes_sends_without_waiting_out_the_linger() {
    let linger = Duration::from_secs(10);
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(
        cluster,
        // Two records of 2 key and 2 value bytes fill it.
        Config::builder().linger(linger).max_buffered_bytes(Some(8)),
    );
    h.produce(keyed(0));
    h.produce(keyed(1));
    h.run(|h| h.delivered().len() == 2);
    assert!(
        h.now < Timestamp::ZERO + linger,
        "sent when full, at {:?}",
        h.now
    );

    let refilled = h.now;
    h.produce(keyed(2));
    h.run(|h| h.delivered().len() == 3);
    assert!(
        h.now >= refilled + linger,
        "with room again, a batch lingers"
    );
}

/// An adapter taking records on the caller's thread wakes its driver
/// only when `take_needs_poll` says so: a record that joins an open batch
/// changes no deadline, every other kind of record needs a drain.
#[test]
fn only_records_that_do_more_than_join_an_open_batch_need_a_poll() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder().linger(Duration::from_millis(50)));
    h.produce(keyed(0));
    assert!(
        h.client.take_needs_poll(),
        "partitions unknown: waits for metadata"
    );
    h.run(|h| h.delivered().len() == 1);
    assert!(!h.client.take_needs_poll(), "a drain did what was asked");

    h.produce(keyed(1));
    assert!(
        h.client.take_needs_poll(),
        "opened a batch: a new linger deadline"
    );
    assert!(!h.client.take_needs_poll(), "reported once");
    while let Some(o) = h.client.poll_output(h.now) {
        h.cluster.on_output(o, &mut h.events);
    }
    let deadline = h.client.poll_timeout();
    h.produce(keyed(2));
    assert!(!h.client.take_needs_poll(), "joined the open batch");
    assert_eq!(h.client.poll_timeout(), deadline, "and changed no deadline");

    let urgent = ProduceOptions {
        when_full: WhenFull::Wait,
        urgent: true,
    };
    h.client
        .produce_with(h.now, keyed(3), 0, urgent)
        .expect("buffered");
    assert!(
        h.client.take_needs_poll(),
        "an urgent record skips the linger"
    );
    h.run(|h| h.delivered().len() == 4);
    assert_eq!(values(&h, 0), ["v0", "v1", "v2", "v3"]);
}

#[test]
fn unknown_topics_fail_after_the_configured_metadata_answers() {
    let cluster = Cluster::new(1);
    let mut h = Harness::new(cluster, Config::builder().unknown_topic_retries(2));
    h.produce(Record::new("missing", "x"));
    h.run(|h| h.client.is_idle());
    assert_eq!(
        h.failed(),
        vec![(
            ProduceId(0),
            ProduceError::Topic {
                topic: "missing".into(),
                error: ErrorCode::UnknownTopicOrPartition
            }
        )]
    );
}

#[test]
fn acks_zero_delivers_without_offsets() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(
        cluster,
        Config::builder()
            .disable_idempotent_write()
            .acks(Acks::None),
    );
    for i in 0..10 {
        h.produce(keyed(i));
    }
    h.run(|h| h.client.is_idle());
    let d = h.delivered();
    assert_eq!(d.len(), 10);
    assert!(d.iter().all(|(_, m)| m.offset == -1));
    assert_eq!(h.log("t", 0).len(), 10);
}

#[test]
fn same_seed_same_bytes() {
    fn trace(seed: u64) -> Vec<String> {
        let mut cluster = Cluster::new(2);
        cluster.create_topic("t", 4);
        let mut h = Harness::new(cluster, Config::builder().seed(seed));
        let mut out = Vec::new();
        for i in 0..200 {
            h.client
                .produce(h.now, Record::new("t", format!("v{i}")), 0)
                .expect("buffered");
        }
        for _ in 0..10_000 {
            let mut progressed = false;
            while let Some(o) = h.client.poll_output(h.now) {
                out.push(format!("{o:?}"));
                h.cluster.on_output(o, &mut h.events);
                progressed = true;
            }
            while let Some(i) = h.cluster.inbox.pop_front() {
                h.client.handle_input(h.now, i);
                progressed = true;
            }
            if !progressed {
                match h.client.poll_timeout() {
                    Some(t) => {
                        h.now = h.now.max(t);
                        h.client.handle_input(h.now, Input::Timeout);
                    }
                    None => break,
                }
            }
        }
        out
    }
    assert_eq!(trace(7), trace(7));
}

#[test]
fn a_connect_that_never_completes_times_out_and_is_retried() {
    let config = Config::builder()
        .seed_brokers(["127.0.0.1:9001"])
        .build()
        .expect("config");
    let connect_timeout = config.conn.connect_timeout;
    let mut client = Client::new(config).expect("client");
    let t0 = Timestamp::ZERO;
    client.produce(t0, keyed(0), 0).expect("buffered");
    let first: Vec<Output> = std::iter::from_fn(|| client.poll_output(t0)).collect();
    let Some(Output::Connect { conn, .. }) = first.first().cloned() else {
        panic!("expected a connect: {first:?}");
    };
    // The driver never reports back; the core must not wait forever.
    assert_eq!(client.poll_timeout(), Some(t0 + connect_timeout));
    let later = t0 + connect_timeout;
    client.handle_input(later, Input::Timeout);
    let outs: Vec<Output> = std::iter::from_fn(|| client.poll_output(later)).collect();
    assert!(outs.contains(&Output::Close(conn)), "{outs:?}");
    // After the reconnect backoff, it tries again.
    let retry = client.poll_timeout().expect("a backoff deadline");
    assert!(retry > later);
    client.handle_input(retry, Input::Timeout);
    let outs: Vec<Output> = std::iter::from_fn(|| client.poll_output(retry)).collect();
    assert!(
        outs.iter().any(|o| matches!(o, Output::Connect { .. })),
        "{outs:?}"
    );
}

#[test]
fn data_loss_is_reported_and_producing_goes_on() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder());
    h.produce(keyed(0));
    h.run(|h| h.client.is_idle());
    // The broker forgets the producer although its log still starts at 0
    // (an unclean election): not truncation, data loss.
    h.cluster.topics.get_mut("t").expect("topic")[0]
        .next_seq
        .clear();
    h.cluster
        .fault("t", 0, Fault::Error(ErrorCode::OutOfOrderSequenceNumber));
    h.produce(keyed(1));
    h.run(|h| h.client.is_idle());
    assert!(h.failed().is_empty(), "{:?}", h.failed());
    assert!(h.events.contains(&Event::DataLossDetected {
        topic: "t".into(),
        partition: 0
    }));
    assert_eq!(values(&h, 0), vec!["v0".to_string(), "v1".to_string()]);
}

fn consumed(h: &mut Harness) -> Vec<crate::consumer::FetchedPartition> {
    h.client.poll_fetches(h.now, None)
}

#[test]
fn what_is_produced_is_consumed_in_order_from_the_start() {
    let mut cluster = Cluster::new(3);
    cluster.create_topic("t", 4);
    let mut h = Harness::new(cluster, Config::builder().compression(Compression::Zstd));
    let n = 1000;
    for i in 0..n {
        h.produce(
            keyed(i)
                .with_header("h", Some("x"))
                .with_header("h", Some("y")),
        );
    }
    h.run(|h| h.client.is_idle());
    h.client.consume_topics(h.now, ["t"]);
    let mut got: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let mut total = 0;
    h.run(|h| h.cluster.fetches > 0 && h.client.consumer.has_buffered());
    for _ in 0..50 {
        for f in consumed(&mut h) {
            assert!(f.error.is_none(), "{:?}", f.error);
            for r in f.records {
                let headers: Vec<_> = r.headers.iter().map(|x| x.value).collect();
                assert_eq!(headers.len(), 2, "duplicate header keys kept");
                got.entry(r.partition).or_default().push((
                    r.offset,
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                ));
                total += 1;
            }
        }
        if total >= n {
            break;
        }
        h.run_for(Duration::from_millis(50));
    }
    assert_eq!(total, n);
    for (p, records) in got {
        let log = values(&h, p as usize);
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(
            offsets,
            (0..log.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
        assert_eq!(records.into_iter().map(|r| r.1).collect::<Vec<_>>(), log);
    }
}

#[test]
fn exact_offsets_and_out_of_range_follow_the_reset_policy() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(
        cluster,
        Config::builder().consumer(ConsumerConfig {
            reset: ResetPolicy::None,
            ..Default::default()
        }),
    );
    for i in 0..10 {
        h.produce(keyed(i));
    }
    h.run(|h| h.client.is_idle());
    let mut parts = BTreeMap::new();
    parts.insert("t".to_string(), BTreeMap::from([(0, StartOffset::At(7))]));
    h.client.consume_partitions(h.now, parts);
    h.run(|h| h.client.consumer.has_buffered());
    let f = consumed(&mut h);
    let offsets: Vec<i64> = f
        .iter()
        .flat_map(|f| f.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, vec![7, 8, 9]);

    // A second client asks for an offset past the end, with no reset.
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h2 = Harness::new(
        cluster,
        Config::builder().consumer(ConsumerConfig {
            reset: ResetPolicy::None,
            ..Default::default()
        }),
    );
    let mut parts = BTreeMap::new();
    parts.insert("t".to_string(), BTreeMap::from([(0, StartOffset::At(50))]));
    h2.client.consume_partitions(h2.now, parts);
    h2.run(|h| h.client.consumer.has_buffered());
    let f = consumed(&mut h2);
    assert_eq!(
        f[0].error,
        Some(FetchError::OffsetOutOfRange { offset: 50 })
    );
}

#[test]
fn out_of_range_resets_to_the_start_by_default_and_latest_skips_history() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder());
    for i in 0..5 {
        h.produce(keyed(i));
    }
    h.run(|h| h.client.is_idle());
    let mut parts = BTreeMap::new();
    parts.insert("t".to_string(), BTreeMap::from([(0, StartOffset::At(99))]));
    h.client.consume_partitions(h.now, parts);
    h.run(|h| h.client.consumer.has_buffered());
    let offsets: Vec<i64> = consumed(&mut h)
        .iter()
        .flat_map(|f| f.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);

    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(
        cluster,
        Config::builder().consumer(ConsumerConfig {
            start_offset: StartOffset::Latest,
            ..Default::default()
        }),
    );
    for i in 0..5 {
        h.produce(keyed(i));
    }
    h.run(|h| h.client.is_idle());
    h.client.consume_topics(h.now, ["t"]);
    h.run_for(Duration::from_secs(1));
    assert!(consumed(&mut h).iter().all(|f| f.records.is_empty()));
    h.produce(keyed(5));
    h.run(|h| h.client.consumer.has_buffered());
    let values: Vec<i64> = consumed(&mut h)
        .iter()
        .flat_map(|f| f.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(values, vec![5]);
}

#[test]
fn pausing_drops_buffered_records_without_skipping_them() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder());
    for i in 0..20 {
        h.produce(keyed(i));
    }
    h.run(|h| h.client.is_idle());
    h.client.consume_topics(h.now, ["t"]);
    h.run(|h| h.client.consumer.has_buffered());
    h.client.pause(h.now, "t", None);
    assert!(consumed(&mut h).is_empty());
    h.run_for(Duration::from_secs(1));
    assert!(!h.client.consumer.has_buffered());
    h.client.resume(h.now, "t", None);
    h.run(|h| h.client.consumer.has_buffered());
    let offsets: Vec<i64> = consumed(&mut h)
        .iter()
        .flat_map(|f| f.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (0..20).collect::<Vec<_>>());
}

#[test]
fn a_regex_subscription_follows_topics_created_and_deleted_later() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("logs-a", 1);
    cluster.create_topic("other", 1);
    let mut h = Harness::new(
        cluster,
        Config::builder()
            .metadata_max_age(Duration::from_secs(2))
            .metadata_min_age(Duration::from_millis(100)),
    );
    for t in ["logs-a", "other"] {
        h.produce(Record::new(t, "v"));
    }
    h.run(|h| h.client.is_idle());
    h.client
        .consume_regex(h.now, ["logs-.*"])
        .expect("valid pattern");
    h.run(|h| h.client.consumer.has_buffered());
    let topics: Vec<String> = consumed(&mut h)
        .iter()
        .map(|f| f.topic.to_string())
        .collect();
    assert_eq!(topics, vec!["logs-a".to_string()]);

    // A topic created later is picked up at the next refresh.
    h.cluster.create_topic("logs-b", 1);
    h.produce(Record::new("logs-b", "w"));
    h.run(|h| h.client.consumer.has_buffered());
    let got: Vec<(String, String)> = consumed(&mut h)
        .iter()
        .flat_map(|f| {
            f.records.iter().map(|r| {
                (
                    f.topic.to_string(),
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                )
            })
        })
        .collect();
    assert_eq!(got, vec![("logs-b".to_string(), "w".to_string())]);

    // A deleted topic is dropped: no more fetches for it.
    h.cluster.topics.remove("logs-a");
    h.run_for(Duration::from_secs(5));
    assert!(h.client.consumer.topics().all(|t| t != "logs-a"));
}

#[test]
fn fetch_sessions_list_only_what_changed_and_recover_from_a_lost_session() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 8);
    let mut h = Harness::new(cluster, Config::builder());
    for i in 0..80 {
        h.produce(keyed(i));
    }
    h.run(|h| h.client.is_idle());
    h.client.consume_topics(h.now, ["t"]);
    let mut total = 0;
    while total < 80 {
        h.run(|h| h.client.consumer.has_buffered());
        total += consumed(&mut h)
            .iter()
            .map(|f| f.records.len())
            .sum::<usize>();
    }
    // The first fetch lists all eight partitions; later ones only those
    // whose offset moved, and none once everything is read.
    assert_eq!(h.cluster.fetch_listed.first(), Some(&8));
    h.run_for(Duration::from_secs(3));
    assert_eq!(
        h.cluster.fetch_listed.last(),
        Some(&0),
        "{:?}",
        h.cluster.fetch_listed
    );
    // The broker forgets the session: the client starts a new one and
    // still gets new records.
    h.cluster.sessions.clear();
    h.produce(keyed(80));
    h.run(|h| h.client.consumer.has_buffered());
    let got: Vec<i64> = consumed(&mut h)
        .iter()
        .flat_map(|f| f.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(got.len(), 1);
}

#[test]
fn a_batch_answered_timed_out_after_append_is_never_failed_and_its_sequence_never_reused() {
    // Found by the simulator (core bug 1): with no retries allowed the
    // client failed the batch and gave its sequence to the next record,
    // which the broker then took for a duplicate and never wrote.
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    cluster.fault("t", 0, Fault::ErrorAfterAppend(ErrorCode::RequestTimedOut));
    let mut h = Harness::new(cluster, Config::builder().record_retries(Some(0)));
    h.produce(keyed(0));
    h.run(|h| h.client.is_idle());
    h.produce(keyed(1));
    h.run(|h| h.client.is_idle());
    assert!(h.failed().is_empty(), "{:?}", h.failed());
    assert_eq!(values(&h, 0), vec!["v0".to_string(), "v1".to_string()]);
    assert_eq!(h.delivered().len(), 2);
}

#[test]
fn a_new_epoch_waits_until_batches_in_doubt_on_other_partitions_are_resolved() {
    // Found by the simulator (core bug 2): a truncation on one partition
    // bumped the epoch while another partition's batch, appended but
    // answered NOT_ENOUGH_REPLICAS_AFTER_APPEND, waited for its retry; the
    // retry under the new epoch was written a second time.
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 2);
    let mut h = Harness::new(
        cluster,
        Config::builder().partitioner(crate::producer::partitioner::ManualPartitioner),
    );
    h.client
        .produce(h.now, Record::new("t", "warm").with_partition(1), 0)
        .expect("buffered");
    h.run(|h| h.client.is_idle());
    h.cluster.fault(
        "t",
        0,
        Fault::ErrorAfterAppend(ErrorCode::NotEnoughReplicasAfterAppend),
    );
    let log1 = &mut h.cluster.topics.get_mut("t").expect("topic")[1];
    log1.next_seq.clear();
    log1.log_start_offset = 5;
    h.cluster
        .fault("t", 1, Fault::Error(ErrorCode::OutOfOrderSequenceNumber));
    for (i, p) in [(0, 0), (1, 1), (2, 0), (3, 1)] {
        h.client
            .produce(
                h.now,
                Record::new("t", format!("v{i}")).with_partition(p),
                0,
            )
            .expect("buffered");
    }
    h.run(|h| h.client.is_idle());
    assert!(h.failed().is_empty(), "{:?}", h.failed());
    assert_eq!(
        values(&h, 0),
        vec!["v0".to_string(), "v2".to_string()],
        "no duplicate on partition 0"
    );
    assert_eq!(
        values(&h, 1),
        vec!["warm".to_string(), "v1".to_string(), "v3".to_string()]
    );
}

#[test]
fn the_delivery_timeout_fails_records_that_could_never_be_sent() {
    // No broker answers at all: the records were never sent, so failing
    // them is safe, and the user asked for a bound.
    let config = Config::builder()
        .seed_brokers(["127.0.0.1:9999"])
        .record_delivery_timeout(Some(Duration::from_secs(2)))
        .build()
        .expect("config");
    let mut client = Client::new(config).expect("client");
    let mut now = Timestamp::ZERO;
    let id = client.produce(now, keyed(0), 0).expect("buffered");
    let mut events = Vec::new();
    for _ in 0..1000 {
        while let Some(o) = client.poll_output(now) {
            match o {
                Output::Connect { conn, .. } => {
                    client.handle_input(now, Input::ConnectFailed(conn, "refused".into()))
                }
                Output::Event(e) => events.push(e),
                _ => {}
            }
        }
        if client.is_idle() {
            break;
        }
        now = client.poll_timeout().expect("a deadline");
        client.handle_input(now, Input::Timeout);
    }
    assert!(events.iter().any(|e| matches!(e, Event::ProduceFailed { id: i, error: ProduceError::DeliveryTimeout, .. } if *i == id)), "{events:?}");
    assert!(now >= Timestamp::ZERO + Duration::from_secs(2));
}

#[test]
fn a_broker_without_last_fetched_epoch_is_not_sent_one() {
    // Fetch v12 added LastFetchedEpoch, and it is not ignorable: a broker
    // capped at v11 (Kafka 2.3 to 2.6) must get fetches without it, even
    // once a batch told the consumer its epoch.
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    cluster.max_versions.insert(ApiKey::Fetch, 11);
    let mut h = Harness::new(cluster, Config::builder());
    for i in 0..5 {
        h.produce(keyed(i));
    }
    h.run(|h| h.client.is_idle());
    h.client.consume_topics(h.now, ["t"]);
    let mut offsets = Vec::new();
    for round in 1..=3 {
        h.run(|h| h.client.consumer.has_buffered());
        offsets.extend(
            consumed(&mut h)
                .iter()
                .flat_map(|f| f.records.iter().map(|r| r.offset)),
        );
        assert_eq!(offsets.len(), 5 * round);
        for i in 0..5 {
            h.produce(keyed(5 * round + i));
        }
    }
    assert_eq!(offsets, (0..15).collect::<Vec<_>>());
    assert!(h.cluster.fetch_versions.iter().all(|&v| v == 11));
}

fn offsets_of(fetched: &[crate::consumer::FetchedPartition]) -> Vec<i64> {
    fetched
        .iter()
        .flat_map(|f| f.records.iter().map(|r| r.offset))
        .collect()
}

#[test]
fn a_failed_list_offsets_asks_the_same_question_again() {
    // An explicit start at the end, and a reset to the end, whose first
    // ListOffsets fails: the retry lists the end again, not the
    // configured start (earliest), which would hand out the history.
    for (start, reset) in [
        (StartOffset::Latest, ResetPolicy::Earliest),
        (StartOffset::At(99), ResetPolicy::Latest),
    ] {
        let mut cluster = Cluster::new(1);
        cluster.create_topic("t", 1);
        cluster
            .list_errors
            .push_back(ErrorCode::NotLeaderOrFollower);
        cluster.list_errors.push_back(ErrorCode::RequestTimedOut);
        let mut h = Harness::new(
            cluster,
            Config::builder().consumer(ConsumerConfig {
                reset,
                ..Default::default()
            }),
        );
        for i in 0..5 {
            h.produce(keyed(i));
        }
        h.run(|h| h.client.is_idle());
        let mut parts = BTreeMap::new();
        parts.insert("t".to_string(), BTreeMap::from([(0, start)]));
        h.client.consume_partitions(h.now, parts);
        h.run_for(Duration::from_secs(2));
        assert!(h.cluster.lists >= 3, "{start:?}: {} lists", h.cluster.lists);
        assert!(offsets_of(&consumed(&mut h)).is_empty(), "{start:?}");
        h.produce(keyed(5));
        h.run(|h| h.client.consumer.has_buffered());
        assert_eq!(offsets_of(&consumed(&mut h)), vec![5], "{start:?}");
    }
}

#[test]
fn start_at_a_timestamp_and_past_every_record_at_the_end() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder());
    let base = 1_700_000_000_000;
    for i in 0..10 {
        h.client
            .produce(h.now, keyed(i as usize), base + i * 1000)
            .expect("buffered");
    }
    h.run(|h| h.client.is_idle());
    // Between records 3 and 4: 4 comes first.
    let mut parts = BTreeMap::new();
    parts.insert(
        "t".to_string(),
        BTreeMap::from([(0, StartOffset::AtTimestamp(base + 3_500))]),
    );
    h.client.consume_partitions(h.now, parts);
    h.run(|h| h.client.consumer.has_buffered());
    assert_eq!(offsets_of(&consumed(&mut h)), (4..10).collect::<Vec<_>>());

    // After every record: Kafka answers -1, and the consumer starts at the
    // end instead of asking again forever.
    let mut parts = BTreeMap::new();
    parts.insert(
        "t".to_string(),
        BTreeMap::from([(0, StartOffset::AtTimestamp(base + 3_600_000))]),
    );
    h.client.consume_partitions(h.now, parts);
    h.run_for(Duration::from_secs(2));
    assert!(offsets_of(&consumed(&mut h)).is_empty());
    h.produce(keyed(10));
    h.run(|h| h.client.consumer.has_buffered());
    assert_eq!(offsets_of(&consumed(&mut h)), vec![10]);
}

#[test]
fn fetches_ask_for_no_more_than_the_room_left_in_the_buffer() {
    // A slow reader and a small bound: every fetch asks for at most the
    // room left, so the buffer overshoots by at most one batch, although
    // the default fetch sizes (50 MiB, 1 MiB per partition) are far larger.
    let bound = 8 * 1024;
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 4);
    let mut h = Harness::new(
        cluster,
        Config::builder()
            // Uncompressed, so wire bytes are record bytes (a fetch's
            // budget is in wire bytes).
            .compression(Compression::None)
            .consumer(ConsumerConfig {
                max_buffered_bytes: bound,
                ..Default::default()
            }),
    );
    let n = 100;
    for i in 0..n {
        // One record per batch: each ~1 KiB.
        h.produce(Record::new("t", "x".repeat(1000)).with_key(format!("k{i}")));
        h.run(|h| h.client.is_idle());
    }
    h.client.consume_topics(h.now, ["t"]);
    let mut read = 0;
    let mut peak = 0;
    for _ in 0..1000 {
        h.run_for(Duration::from_millis(100));
        peak = peak.max(h.client.consumer.buffered_bytes());
        read += consumed_some(&mut h, 3);
        if read == n {
            break;
        }
    }
    assert_eq!(read, n);
    let batch = 1000 + 200;
    assert!(
        peak <= bound + batch,
        "buffered {peak} bytes with a bound of {bound}: fetch max_bytes {:?}",
        h.cluster.fetch_max_bytes
    );
    assert!(
        h.cluster
            .fetch_max_bytes
            .iter()
            .all(|&m| m > 0 && m as usize <= bound),
        "{:?}",
        h.cluster.fetch_max_bytes
    );
}

/// Takes up to `max` records; returns how many.
fn consumed_some(h: &mut Harness, max: usize) -> usize {
    h.client
        .poll_fetches(h.now, Some(max))
        .iter()
        .map(|f| f.records.len())
        .sum()
}

#[test]
fn a_partition_with_a_long_backlog_does_not_starve_the_others() {
    // With a small buffer, each fetch's max_bytes is small: a broker fills
    // it from the first partition listed, so a fixed order would hand
    // partition 0's whole backlog out before partition 1 got anything.
    let bound = 4 * 1024;
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 2);
    let mut h = Harness::new(
        cluster,
        Config::builder()
            .compression(Compression::None)
            .consumer(ConsumerConfig {
                max_buffered_bytes: bound,
                // Fairness within a fetch session is the broker's job
                // (KIP-227 moves partitions that returned data to the
                // end); without one, the client's rotation provides it.
                fetch_sessions: false,
                ..Default::default()
            }),
    );
    // Keys k0.. land on partitions by murmur2; write until partition 0
    // has 60 records and partition 1 has 5.
    let (mut on0, mut on1, mut i) = (0, 0, 0);
    while on0 < 60 || on1 < 5 {
        let key = format!("k{i}");
        i += 1;
        let p = java_key_partition(key.as_bytes(), 2);
        if (p == 0 && on0 >= 60) || (p == 1 && on1 >= 5) {
            continue;
        }
        if p == 0 {
            on0 += 1
        } else {
            on1 += 1
        }
        h.produce(Record::new("t", "x".repeat(1000)).with_key(key));
        h.run(|h| h.client.is_idle());
    }
    h.client.consume_topics(h.now, ["t"]);
    let mut read0 = 0;
    let mut first1_after = None;
    for _ in 0..1000 {
        h.run_for(Duration::from_millis(100));
        for f in h.client.poll_fetches(h.now, Some(2)) {
            if f.partition == 0 {
                read0 += f.records.len();
            } else if !f.records.is_empty() && first1_after.is_none() {
                first1_after = Some(read0);
            }
        }
        if first1_after.is_some() {
            break;
        }
    }
    let first1_after = first1_after.expect("partition 1 was read");
    assert!(
        first1_after < 20,
        "partition 1's first record came after {first1_after} of partition 0's"
    );
}

/// Produces `values` as one batch (one linger) and waits for it.
fn produce_batch(h: &mut Harness, values: std::ops::Range<usize>) {
    for i in values {
        h.produce(keyed(i));
    }
    h.run(|h| h.client.is_idle());
}

/// Polls until `n` records arrived or `limit` of virtual time passed:
/// every partition result, in order, with when it was polled.
fn consume_records(
    h: &mut Harness,
    n: usize,
    limit: Duration,
) -> Vec<(Timestamp, FetchedPartition)> {
    let end = h.now + limit;
    let mut out = Vec::new();
    let mut records = 0;
    while records < n && h.now < end {
        h.run(|h| h.client.consumer.has_buffered() || h.now >= end);
        for f in consumed(h) {
            records += f.records.len();
            out.push((h.now, f));
        }
    }
    out
}

fn value_of(r: &crate::consumer::ConsumedRecord) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
}

/// A consumer of `t`/0 holding one fetched batch at a time: the buffer
/// bound (smaller than a batch) stops the next fetch until a poll, so a
/// test can move the leader between two fetches.
fn one_batch_at_a_time() -> ConfigBuilder {
    Config::builder().consumer(ConsumerConfig {
        max_buffered_bytes: 200,
        fetch_max_partition_bytes: 1,
        ..Default::default()
    })
}

#[test]
fn a_start_with_a_leader_epoch_is_validated_before_the_first_fetch() {
    let mut cluster = Cluster::new(2);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder());
    produce_batch(&mut h, 0..6);
    produce_batch(&mut h, 6..10);
    // A position committed at offset 10 under epoch 0, then an unclean
    // election cut the log to 6 and took new writes there under epoch 1.
    h.cluster.unclean_leader_move("t", 0, 2, 6);
    produce_batch(&mut h, 100..103);
    let at = |offset| {
        BTreeMap::from([(
            "t".to_string(),
            BTreeMap::from([(
                0,
                StartOffset::AtEpoch {
                    offset,
                    leader_epoch: 0,
                },
            )]),
        )])
    };
    h.client.consume_partitions(h.now, at(10));
    let got = consume_records(&mut h, 3, Duration::from_secs(10));
    let errors: Vec<&FetchError> = got.iter().filter_map(|(_, f)| f.error.as_ref()).collect();
    assert_eq!(
        errors,
        vec![&FetchError::DataLoss {
            fetch_offset: 10,
            end_offset: 6
        }],
        "{got:?}"
    );
    let first = got
        .iter()
        .flat_map(|(_, f)| &f.records)
        .map(|r| r.offset)
        .next();
    assert_eq!(first, Some(6), "goes on from the end of epoch 0");
    assert_eq!(h.cluster.validations.first(), Some(&("t".into(), 0, 1, 0)));

    // A position the log still holds under its epoch, placed while a
    // fetch of the old position is out: validated, then fetched from
    // exactly there (the old fetch's answer moves nothing).
    let validations = h.cluster.validations.len();
    h.client.consume_partitions(h.now, at(4));
    let got = consume_records(&mut h, 2, Duration::from_secs(10));
    assert!(got.iter().all(|(_, f)| f.error.is_none()), "{got:?}");
    let offsets: Vec<i64> = got
        .iter()
        .flat_map(|(_, f)| &f.records)
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets.first(), Some(&4), "{offsets:?}");
    // (The scripted broker answers the validation ahead of the held
    // fetch on the same connection, which the client takes for a broken
    // connection and asks again: more than one is fine, none is not.)
    assert!(h.cluster.validations.len() > validations);
    assert!(h
        .cluster
        .validations
        .iter()
        .all(|v| *v == ("t".into(), 0, 1, 0)));
}

#[test]
fn a_truncated_log_is_reported_as_data_loss_and_consumption_goes_on_from_its_end() {
    let mut cluster = Cluster::new(2);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder());
    produce_batch(&mut h, 0..6);
    produce_batch(&mut h, 6..10);
    h.client.consume_partitions(
        h.now,
        BTreeMap::from([(
            "t".to_string(),
            BTreeMap::from([(0, StartOffset::Earliest)]),
        )]),
    );
    let before = consume_records(&mut h, 10, Duration::from_secs(10));
    let offsets: Vec<i64> = before
        .iter()
        .flat_map(|(_, f)| f.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());

    // An unclean election: broker 2 never had offsets 6..10, leads from
    // there with epoch 1, and takes new writes at those offsets.
    h.cluster.unclean_leader_move("t", 0, 2, 6);
    produce_batch(&mut h, 100..103);
    let after = consume_records(&mut h, 3, Duration::from_secs(30));
    let errors: Vec<&FetchError> = after.iter().filter_map(|(_, f)| f.error.as_ref()).collect();
    assert_eq!(
        errors,
        vec![&FetchError::DataLoss {
            fetch_offset: 10,
            end_offset: 6
        }],
        "{after:?}"
    );
    let records: Vec<(i64, String)> = after
        .iter()
        .flat_map(|(_, f)| f.records.iter().map(|r| (r.offset, value_of(r))))
        .collect();
    assert_eq!(
        records,
        vec![(6, "v100".into()), (7, "v101".into()), (8, "v102".into())]
    );
    // Asked the new leader, fenced by its epoch, about the epoch of the
    // last batch fetched.
    assert!(
        h.cluster.validations.contains(&("t".into(), 0, 1, 0)),
        "{:?}",
        h.cluster.validations
    );
}

#[test]
fn a_leader_move_is_validated_followed_at_once_and_consumption_goes_on_at_the_same_offset() {
    let mut cluster = Cluster::new(2);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, one_batch_at_a_time());
    produce_batch(&mut h, 0..10);
    produce_batch(&mut h, 10..15);
    h.client.consume_partitions(
        h.now,
        BTreeMap::from([(
            "t".to_string(),
            BTreeMap::from([(0, StartOffset::Earliest)]),
        )]),
    );
    let first = consume_records(&mut h, 10, Duration::from_secs(10));
    assert_eq!(
        first.iter().map(|(_, f)| f.records.len()).sum::<usize>(),
        10
    );
    // A clean move: broker 2 has every record; the consumer's next fetch
    // goes to broker 1 and is told NOT_LEADER_OR_FOLLOWER.
    let moved_at = h.now;
    h.cluster.move_leader("t", 0, 2);
    let rest = consume_records(&mut h, 5, Duration::from_secs(30));
    let offsets: Vec<i64> = rest
        .iter()
        .flat_map(|(_, f)| f.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (10..15).collect::<Vec<_>>(), "{rest:?}");
    assert!(rest.iter().all(|(_, f)| f.error.is_none()), "{rest:?}");
    assert_eq!(h.cluster.validations, vec![("t".into(), 0, 1, 0)]);
    // The stall: one urgent metadata refresh (bounded by the retry
    // backoff, 250 ms), not `metadata_min_age` (5 s).
    let stall = rest[0].0.saturating_duration_since(moved_at);
    assert!(stall <= Duration::from_millis(600), "stalled {stall:?}");
}

#[test]
fn leader_epoch_validation_errors_refresh_metadata_and_are_retried() {
    let mut cluster = Cluster::new(2);
    cluster.create_topic("t", 1);
    for e in [
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::UnknownLeaderEpoch,
    ] {
        cluster.validation_errors.push_back(e);
    }
    let mut h = Harness::new(cluster, one_batch_at_a_time());
    produce_batch(&mut h, 0..10);
    produce_batch(&mut h, 10..15);
    h.client.consume_partitions(
        h.now,
        BTreeMap::from([(
            "t".to_string(),
            BTreeMap::from([(0, StartOffset::Earliest)]),
        )]),
    );
    consume_records(&mut h, 10, Duration::from_secs(10));
    h.cluster.move_leader("t", 0, 2);
    let rest = consume_records(&mut h, 5, Duration::from_secs(30));
    let offsets: Vec<i64> = rest
        .iter()
        .flat_map(|(_, f)| f.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (10..15).collect::<Vec<_>>(), "{rest:?}");
    assert!(rest.iter().all(|(_, f)| f.error.is_none()), "{rest:?}");
    // Three refused, the fourth answered; never a fetch in between.
    assert_eq!(
        h.cluster.validations.len(),
        4,
        "{:?}",
        h.cluster.validations
    );
}

#[test]
fn a_leader_epoch_the_new_leader_does_not_know_falls_back_to_the_reset_policy() {
    let mut cluster = Cluster::new(2);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, one_batch_at_a_time());
    produce_batch(&mut h, 0..10);
    produce_batch(&mut h, 10..15);
    h.client.consume_partitions(
        h.now,
        BTreeMap::from([(
            "t".to_string(),
            BTreeMap::from([(0, StartOffset::Earliest)]),
        )]),
    );
    consume_records(&mut h, 10, Duration::from_secs(10));
    h.cluster.move_leader("t", 0, 2);
    // The new leader's epoch cache starts after the epoch we fetched in.
    h.cluster.partition_mut("t", 0).epoch_starts.remove(0);
    let rest = consume_records(&mut h, 15, Duration::from_secs(30));
    // Reset to earliest (the default policy): everything again from 0.
    let offsets: Vec<i64> = rest
        .iter()
        .flat_map(|(_, f)| f.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (0..15).collect::<Vec<_>>(), "{rest:?}");
}

#[test]
fn a_broker_without_offset_for_leader_epoch_v2_is_not_asked() {
    let mut cluster = Cluster::new(2);
    cluster.create_topic("t", 1);
    cluster.max_versions.insert(ApiKey::OffsetForLeaderEpoch, 1);
    let mut h = Harness::new(cluster, one_batch_at_a_time());
    produce_batch(&mut h, 0..10);
    produce_batch(&mut h, 10..15);
    h.client.consume_partitions(
        h.now,
        BTreeMap::from([(
            "t".to_string(),
            BTreeMap::from([(0, StartOffset::Earliest)]),
        )]),
    );
    consume_records(&mut h, 10, Duration::from_secs(10));
    h.cluster.move_leader("t", 0, 2);
    let rest = consume_records(&mut h, 5, Duration::from_secs(30));
    let offsets: Vec<i64> = rest
        .iter()
        .flat_map(|(_, f)| f.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (10..15).collect::<Vec<_>>(), "{rest:?}");
    assert!(h.cluster.validations.is_empty());
}

#[test]
fn a_fetch_held_past_the_request_timeout_but_within_its_max_wait_is_not_a_dead_broker() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    // Held 4 s: past the 2 s request timeout, within 2 s + 5 s max wait.
    cluster.fetch_hold = Some(Duration::from_secs(4));
    let mut h = Harness::new(
        cluster,
        Config::builder()
            .request_timeout(Duration::from_secs(2))
            .conn_idle_timeout(Duration::from_secs(600))
            .consumer(ConsumerConfig {
                fetch_max_wait: Duration::from_secs(5),
                ..Default::default()
            }),
    );
    produce_batch(&mut h, 0..3);
    h.client.consume_partitions(
        h.now,
        BTreeMap::from([(
            "t".to_string(),
            BTreeMap::from([(0, StartOffset::Earliest)]),
        )]),
    );
    assert_eq!(consume_records(&mut h, 3, Duration::from_secs(5)).len(), 1);
    let connects = h.cluster.connects;
    // Nothing to read: the next fetches are held 4 s each.
    h.run_for(Duration::from_secs(20));
    assert!(h.cluster.fetches >= 4, "{} fetches", h.cluster.fetches);
    assert_eq!(
        h.cluster.connects, connects,
        "a held fetch was taken for a dead broker"
    );
}

#[test]
fn a_connection_lost_under_a_fetch_is_reopened_and_consumption_goes_on() {
    let mut cluster = Cluster::new(2);
    cluster.create_topic("t", 2);
    let mut h = Harness::new(cluster, Config::builder());
    produce_batch(&mut h, 0..10);
    h.client.consume_topics(h.now, ["t"]);
    let first = consume_records(&mut h, 10, Duration::from_secs(10));
    assert_eq!(
        first.iter().map(|(_, f)| f.records.len()).sum::<usize>(),
        10
    );
    // Broker 1 closes every connection while fetches wait there.
    let conns: Vec<ConnId> = h
        .cluster
        .conns
        .iter()
        .filter(|(_, (node, _))| *node == 1)
        .map(|(&id, _)| id)
        .collect();
    assert!(!conns.is_empty());
    for id in conns {
        h.cluster.drop_conn(id);
    }
    let lost_at = h.now;
    produce_batch(&mut h, 10..20);
    let rest = consume_records(&mut h, 10, Duration::from_secs(30));
    assert_eq!(
        rest.iter().map(|(_, f)| f.records.len()).sum::<usize>(),
        10,
        "{rest:?}"
    );
    let took = rest.last().map(|r| r.0.saturating_duration_since(lost_at));
    assert!(took <= Some(Duration::from_secs(1)), "took {took:?}");
}

#[test]
fn out_of_range_after_consuming_resets_to_the_last_consumed_timestamp_not_the_policy() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder());
    let base = 1_700_000_000_000;
    let produce = |h: &mut Harness, range: std::ops::Range<usize>, ts: i64| {
        for i in range {
            h.client
                .produce(h.now, keyed(i), ts + i as i64 * 1000)
                .expect("buffered");
        }
        h.run(|h| h.client.is_idle());
    };
    produce(&mut h, 0..6, base);
    produce(&mut h, 6..10, base);
    h.client.consume_topics(h.now, ["t"]);
    let first = consume_records(&mut h, 10, Duration::from_secs(10));
    assert_eq!(
        first.iter().map(|(_, f)| f.records.len()).sum::<usize>(),
        10
    );
    // The log loses offsets 6..10 (no leader change to validate), and new
    // records, later in time, take offsets 6.. again.
    h.cluster.truncate("t", 0, 6);
    produce(&mut h, 100..103, base);
    let rest = consume_records(&mut h, 3, Duration::from_secs(10));
    let records: Vec<(i64, String)> = rest
        .iter()
        .flat_map(|(_, f)| f.records.iter().map(|r| (r.offset, value_of(r))))
        .collect();
    // Not the whole log again (the earliest policy): from where the last
    // consumed record sits in time.
    assert_eq!(
        records,
        vec![(6, "v100".into()), (7, "v101".into()), (8, "v102".into())]
    );
}

#[test]
fn out_of_range_below_the_log_start_resets_to_it_even_when_later_records_are_older() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder());
    let base = 1_700_000_000_000;
    let produce = |h: &mut Harness, range: std::ops::Range<usize>, ts: i64| {
        for i in range {
            h.client
                .produce(h.now, keyed(i), ts + i as i64)
                .expect("buffered");
        }
        h.run(|h| h.client.is_idle());
    };
    produce(&mut h, 0..5, base);
    h.client.consume_topics(h.now, ["t"]);
    let first = consume_records(&mut h, 5, Duration::from_secs(10));
    assert_eq!(first.iter().map(|(_, f)| f.records.len()).sum::<usize>(), 5);
    // Records from a producer whose clock runs a minute behind, then
    // retention removes the first two of them while the consumer is
    // paused (so none is fetched before).
    h.client.pause(h.now, "t", None);
    produce(&mut h, 5..10, base - 60_000);
    h.cluster.partition_mut("t", 0).log_start_offset = 7;
    h.client.resume(h.now, "t", None);
    let rest = consume_records(&mut h, 3, Duration::from_secs(10));
    let offsets: Vec<i64> = rest
        .iter()
        .flat_map(|(_, f)| f.records.iter().map(|r| r.offset))
        .collect();
    // A lookup by the last consumed record's time finds none of them (all
    // older) and would start at the end, skipping 7..10 though the log
    // holds them: the cursor starts at the log start instead.
    assert_eq!(offsets, vec![7, 8, 9], "{rest:?}");
}

#[test]
fn a_leader_that_drops_out_of_metadata_while_down_is_found_again_once_up() {
    let mut cluster = Cluster::new(2);
    cluster.create_topic("t", 2);
    let mut h = Harness::new(cluster, Config::builder());
    produce_batch(&mut h, 0..10);
    h.client.consume_topics(h.now, ["t"]);
    let first = consume_records(&mut h, 10, Duration::from_secs(10));
    assert_eq!(
        first.iter().map(|(_, f)| f.records.len()).sum::<usize>(),
        10
    );
    // Broker 2 goes down under a fetch; the metadata refresh that follows
    // no longer names it, though it still leads partition 1.
    h.cluster.broker_down(2);
    h.run_for(Duration::from_secs(2));
    h.cluster.down.clear();
    let up_at = h.now;
    produce_batch(&mut h, 10..20);
    let rest = consume_records(&mut h, 10, Duration::from_secs(30));
    assert_eq!(
        rest.iter().map(|(_, f)| f.records.len()).sum::<usize>(),
        10,
        "{rest:?}"
    );
    // Found again by the consumer's own refreshes, not the next one that
    // `metadata_min_age` (5 s) would allow.
    let took = rest.last().map(|r| r.0.saturating_duration_since(up_at));
    assert!(took <= Some(Duration::from_secs(1)), "took {took:?}");
}

#[test]
fn fetches_of_compressed_data_are_sized_by_the_expansion_seen() {
    // zstd shrinks these records about tenfold: sized in wire bytes, a
    // fetch for the room left brings back ten times the bound.
    let bound = 16 * 1024;
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(
        cluster,
        Config::builder()
            .compression(Compression::Zstd)
            .consumer(ConsumerConfig {
                max_buffered_bytes: bound,
                ..Default::default()
            }),
    );
    let n = 400;
    for i in 0..n {
        // One record per batch, each ~1 KiB, compressing to ~60 bytes.
        h.produce(Record::new("t", "x".repeat(1000)).with_key(format!("k{i}")));
        h.run(|h| h.client.is_idle());
    }
    h.client.consume_topics(h.now, ["t"]);
    let mut read = 0;
    let mut peaks = Vec::new();
    for _ in 0..2000 {
        h.run_for(Duration::from_millis(100));
        peaks.push(h.client.consumer.buffered_bytes());
        read += consumed_some(&mut h, 3);
        if read == n {
            break;
        }
    }
    assert_eq!(read, n);
    // The first fetch, before any answer, asks for the whole bound and
    // overshoots by the compression ratio; every later one asks for the
    // room left over the expansion seen (over 10 here).
    let asked = &h.cluster.fetch_max_bytes;
    assert_eq!(asked.first(), Some(&(bound as i32)));
    assert!(
        asked[1..].iter().all(|&m| m as usize <= bound / 8),
        "fetch max_bytes {asked:?}"
    );
    // Once that first answer is read, the buffer stays near the bound.
    let late_peak = peaks[peaks.len() / 2..].iter().copied().max().unwrap_or(0);
    assert!(
        late_peak <= 2 * bound,
        "buffered {late_peak} bytes with a bound of {bound}: {peaks:?}"
    );
}

/// Records a caller never received go back in front, in order, and are
/// polled again; records of a partition placed anew since (a seek) are
/// dropped instead, as they no longer come next.
#[test]
fn records_given_back_are_polled_again_unless_their_partition_was_placed_anew() {
    let mut cluster = Cluster::new(1);
    cluster.create_topic("t", 1);
    let mut h = Harness::new(cluster, Config::builder());
    for i in 0..10 {
        h.produce(Record::new("t", format!("v{i}")).with_partition(0));
    }
    h.run(|h| h.client.is_idle());
    let exact = |offset| {
        BTreeMap::from([(
            "t".to_string(),
            BTreeMap::from([(0, StartOffset::At(offset))]),
        )])
    };
    h.client.consume_partitions(h.now, exact(0));
    h.run(|h| h.client.consumer.has_buffered());
    let first = h.client.poll_fetches(h.now, Some(4));
    let offsets = |fs: &[FetchedPartition]| -> Vec<i64> {
        fs.iter()
            .flat_map(|f| &f.records)
            .map(|r| r.offset)
            .collect()
    };
    assert_eq!(offsets(&first), [0, 1, 2, 3]);
    h.client.unpoll_fetches(h.now, first);
    let again = h.client.poll_fetches(h.now, None);
    assert_eq!(
        offsets(&again)[..4],
        [0, 1, 2, 3],
        "given back, polled first"
    );
    // Given back after the partition was sought elsewhere: dropped.
    h.client.consume_partitions(h.now, exact(7));
    h.client.unpoll_fetches(h.now, again);
    h.run(|h| h.client.consumer.has_buffered());
    let after_seek = h.client.poll_fetches(h.now, None);
    assert_eq!(offsets(&after_seek).first(), Some(&7), "{after_seek:?}");
}
