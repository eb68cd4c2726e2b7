//! The request handlers: one function per API the simulated brokers
//! serve, each following what Kafka's `KafkaApis` answers, error for
//! error, where the simulator models the state behind it.

use bytes::Bytes;
use sansa_core::protocol::header::decode_request;
use sansa_core::protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey};
use sansa_core::protocol::messages::create_topics_response::CreatableTopicResult;
use sansa_core::protocol::messages::delete_topics_response::DeletableTopicResult;
use sansa_core::protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch as FetchLeader, PartitionData,
};
use sansa_core::protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use sansa_core::protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sansa_core::protocol::messages::produce_response::{
    LeaderIdAndEpoch as ProduceLeader, PartitionProduceResponse, TopicProduceResponse,
};
use sansa_core::protocol::messages::{
    ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse,
};
use sansa_core::protocol::{ApiKey, ErrorCode, RequestBody, ResponseBody, Uuid, VersionRange};
use sansa_core::record::{Batches, ReadOptions, MAGIC_V2};
use sansa_core::Timestamp;

use super::producer_state::{last_sequence, BatchMeta, SeqRules, SeqVerdict};
use super::{
    error_means_written, Cluster, NodeId, ParkedFetch, Partition, ProduceFault, Sabotage,
    ServerConnId,
};

/// The APIs the simulated brokers serve and the lowest version of each;
/// the highest is the highest stable version sansa-core's specs define.
/// Produce starts at v3 (record batches v2 only) and Fetch at v4, as in
/// Kafka 4.0; librdkafka picks the v2 record format from Fetch >= 4.
pub const SERVED_APIS: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 3),
    (ApiKey::Fetch, 4),
    (ApiKey::ListOffsets, 1),
    (ApiKey::Metadata, 0),
    (ApiKey::ApiVersions, 0),
    (ApiKey::CreateTopics, 2),
    (ApiKey::DeleteTopics, 1),
    (ApiKey::InitProducerId, 0),
    (ApiKey::FindCoordinator, 0),
    (ApiKey::JoinGroup, 0),
    (ApiKey::SyncGroup, 0),
    (ApiKey::Heartbeat, 0),
    (ApiKey::LeaveGroup, 0),
    (ApiKey::OffsetCommit, 0),
    (ApiKey::OffsetFetch, 0),
    (ApiKey::DescribeGroups, 0),
    (ApiKey::ListGroups, 0),
    (ApiKey::AddPartitionsToTxn, 0),
    (ApiKey::AddOffsetsToTxn, 0),
    (ApiKey::EndTxn, 0),
    (ApiKey::TxnOffsetCommit, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0),
];

/// APIs served below the highest version the specs define, and the
/// highest served: AddPartitionsToTxn v4+ is the batched broker-to-broker
/// form, not modelled.
const VERSION_CAPS: &[(ApiKey, i16)] = &[(ApiKey::AddPartitionsToTxn, 3)];

/// The versions that mean transactions v2 (KIP-890 part 2), served only
/// when the cluster's `transaction.version` is 2, and the highest served
/// below them otherwise.
const TRANSACTIONS_V2_VERSIONS: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 12),
    (ApiKey::TxnOffsetCommit, 5),
    (ApiKey::EndTxn, 5),
];

/// The versions of `api` the simulated brokers serve, if any, in a
/// cluster whose finalized `transaction.version` is `transaction_version`
/// (below 2, not the versions that mean transactions v2).
pub fn served_versions(api: ApiKey, transaction_version: i16) -> Option<VersionRange> {
    SERVED_APIS
        .iter()
        .find(|(k, _)| *k == api)
        .map(|&(k, min)| {
            let mut max = VERSION_CAPS
                .iter()
                .find(|(c, _)| *c == k)
                .map_or(k.max_stable_version(), |&(_, cap)| {
                    cap.min(k.max_stable_version())
                });
            if transaction_version < 2 {
                if let Some(&(_, v2)) = TRANSACTIONS_V2_VERSIONS.iter().find(|(c, _)| *c == k) {
                    max = max.min(v2 - 1);
                }
            }
            VersionRange::new(min, max)
        })
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub(crate) fn validate_topic_name(name: &str) -> Result<(), ErrorCode> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ErrorCode::InvalidTopicException)
    }
}

/// What a produce of one partition asks the connection to do afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterProduce {
    Answer,
    Reset,
    Stall,
}

/// A leader epoch check (KIP-320): the client's epoch against the
/// partition's; -1 means the client did not say.
fn check_epoch(client: i32, current: i32) -> Result<(), ErrorCode> {
    if client < 0 || client == current {
        Ok(())
    } else if client < current {
        Err(ErrorCode::FencedLeaderEpoch)
    } else {
        Err(ErrorCode::UnknownLeaderEpoch)
    }
}

impl Cluster {
    /// Decodes and handles one request frame.
    pub(super) fn handle_frame(
        &mut self,
        now: Timestamp,
        conn: ServerConnId,
        node: NodeId,
        frame: Bytes,
    ) {
        let (header, body) = match decode_request(frame.clone()) {
            Ok(decoded) => decoded,
            Err(e) => {
                // KIP-511: an ApiVersions the broker cannot read at its
                // version is answered at v0 with UNSUPPORTED_VERSION and the
                // versions it speaks, so the client retries lower.
                if frame.len() >= 8
                    && i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::ApiVersions.key()
                {
                    let corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
                    let body = self.api_versions(ErrorCode::UnsupportedVersion);
                    self.respond(
                        conn,
                        ApiKey::ApiVersions,
                        0,
                        corr,
                        ResponseBody::ApiVersions(body),
                    );
                    return;
                }
                tracing::warn!(conn = conn.0, error = %e, "undecodable request; closing");
                self.stats.bad_requests += 1;
                self.close(conn);
                return;
            }
        };
        let api = body.api_key();
        let v = header.request_api_version;
        let corr = header.correlation_id;
        *self.stats.requests.entry(api.name()).or_insert(0) += 1;
        if !self.serves(api).is_some_and(|r| r.contains(v)) {
            if api == ApiKey::ApiVersions {
                let body = self.api_versions(ErrorCode::UnsupportedVersion);
                self.respond(conn, api, 0, corr, ResponseBody::ApiVersions(body));
                return;
            }
            tracing::warn!(
                conn = conn.0,
                api = api.name(),
                version = v,
                "API or version not served by the simulator; closing"
            );
            self.stats.bad_requests += 1;
            self.close(conn);
            return;
        }
        match body {
            RequestBody::ApiVersions(_) => {
                let body = self.api_versions(ErrorCode::None);
                self.respond(conn, api, v, corr, ResponseBody::ApiVersions(body));
            }
            RequestBody::Metadata(req) => {
                let body = self.metadata(v, req);
                self.respond(conn, api, v, corr, ResponseBody::Metadata(body));
            }
            RequestBody::Produce(req) => self.produce(now, conn, node, v, corr, req),
            RequestBody::Fetch(req) => {
                let wait = u64::try_from(req.max_wait_ms).unwrap_or(0);
                let parked = ParkedFetch {
                    deadline: now + std::time::Duration::from_millis(wait),
                    version: v,
                    correlation_id: corr,
                    req,
                };
                if let Some(p) = self.fetch(now, conn, node, parked, false) {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.parked = Some(p);
                    }
                }
            }
            RequestBody::ListOffsets(req) => {
                let body = self.list_offsets(node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::ListOffsets(body));
            }
            RequestBody::CreateTopics(req) => {
                let body = self.create_topics(v, req);
                self.respond(conn, api, v, corr, ResponseBody::CreateTopics(body));
            }
            RequestBody::DeleteTopics(req) => {
                let body = self.delete_topics(v, req);
                self.respond(conn, api, v, corr, ResponseBody::DeleteTopics(body));
            }
            RequestBody::InitProducerId(req) => {
                let body = self.init_producer_id(now, node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::InitProducerId(body));
            }
            RequestBody::AddPartitionsToTxn(req) => {
                let body = self.add_partitions_to_txn(now, node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::AddPartitionsToTxn(body));
            }
            RequestBody::AddOffsetsToTxn(req) => {
                let body = self.add_offsets_to_txn(now, node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::AddOffsetsToTxn(body));
            }
            RequestBody::EndTxn(req) => {
                let body = self.end_txn(now, node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::EndTxn(body));
            }
            RequestBody::TxnOffsetCommit(req) => {
                let body = self.txn_offset_commit(now, node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::TxnOffsetCommit(body));
            }
            RequestBody::FindCoordinator(req) => {
                let body = self.find_coordinator(v, req);
                self.respond(conn, api, v, corr, ResponseBody::FindCoordinator(body));
            }
            RequestBody::JoinGroup(req) => {
                let client_id = header.client_id.clone().unwrap_or_default();
                self.join_group(now, conn, node, v, corr, client_id, req);
            }
            RequestBody::SyncGroup(req) => self.sync_group(now, conn, node, v, corr, req),
            RequestBody::Heartbeat(req) => {
                let body = self.heartbeat(now, node, req);
                self.respond(conn, api, v, corr, ResponseBody::Heartbeat(body));
            }
            RequestBody::LeaveGroup(req) => {
                let body = self.leave_group(now, node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::LeaveGroup(body));
            }
            RequestBody::OffsetCommit(req) => {
                let body = self.offset_commit(now, node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::OffsetCommit(body));
            }
            RequestBody::OffsetFetch(req) => {
                let body = self.offset_fetch(node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::OffsetFetch(body));
            }
            RequestBody::DescribeGroups(req) => {
                let body = self.describe_groups(node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::DescribeGroups(body));
            }
            RequestBody::ConsumerGroupHeartbeat(req) => {
                let body = self.consumer_group_heartbeat(now, node, req);
                self.respond(
                    conn,
                    api,
                    v,
                    corr,
                    ResponseBody::ConsumerGroupHeartbeat(body),
                );
            }
            RequestBody::ListGroups(req) => {
                let body = self.list_groups(node, v, req);
                self.respond(conn, api, v, corr, ResponseBody::ListGroups(body));
            }
            _ => {
                // served_versions() said yes to an API with no arm: a bug.
                self.stats.bad_requests += 1;
                self.close(conn);
            }
        }
    }

    /// The versions of `api` this cluster serves: [`served_versions`] at
    /// its `transaction.version`, less ConsumerGroupHeartbeat unless the
    /// KIP-848 coordinator is on, capped by
    /// [`ClusterConfig::max_versions`](super::ClusterConfig).
    fn serves(&self, api: ApiKey) -> Option<VersionRange> {
        if api == ApiKey::ConsumerGroupHeartbeat && !self.config.groups.consumer_protocol {
            return None;
        }
        let mut range = served_versions(api, self.config.transactions.transaction_version)?;
        if let Some(&(_, cap)) = self.config.max_versions.iter().find(|(k, _)| *k == api) {
            range.max = range.max.min(cap);
        }
        (range.min <= range.max).then_some(range)
    }

    fn api_versions(&self, error: ErrorCode) -> ApiVersionsResponse {
        ApiVersionsResponse {
            error_code: error.code(),
            api_keys: SERVED_APIS
                .iter()
                .filter_map(|&(k, _)| {
                    self.serves(k).map(|r| ApiVersion {
                        api_key: k.key(),
                        min_version: r.min,
                        max_version: r.max,
                        ..Default::default()
                    })
                })
                .collect(),
            finalized_features: self.finalized_features(),
            // Kafka answers -1 when no feature is finalized.
            finalized_features_epoch: if self.config.transactions.transaction_version >= 2 {
                1
            } else {
                -1
            },
            ..Default::default()
        }
    }

    /// The finalized features ApiVersions v3+ advertises (KIP-584):
    /// `transaction.version` when transactions v2 are on, else none (the
    /// v1 cluster answers as it did before v2 was modelled).
    fn finalized_features(&self) -> Vec<FinalizedFeatureKey> {
        let level = self.config.transactions.transaction_version;
        if level < 2 {
            return Vec::new();
        }
        vec![FinalizedFeatureKey {
            name: "transaction.version".to_owned(),
            max_version_level: level,
            min_version_level: level,
            ..Default::default()
        }]
    }

    fn up_brokers(&self) -> Vec<NodeId> {
        self.brokers
            .values()
            .filter(|b| b.up)
            .map(|b| b.addr.node)
            .collect()
    }

    pub(super) fn topic_by_id(&self, id: Uuid) -> Option<String> {
        self.topics
            .values()
            .find(|t| t.id == id && id != Uuid::ZERO)
            .map(|t| t.name.clone())
    }

    // ------------------------------------------------------------------
    // Metadata
    // ------------------------------------------------------------------

    fn metadata(&mut self, v: i16, req: MetadataRequest) -> MetadataResponse {
        // v4+ says whether to auto-create; below it the broker decides.
        let allow_auto = v < 4 || req.allow_auto_topic_creation;
        // Null asks for every topic, and so does an empty list at v0.
        let wanted = match req.topics {
            Some(ts) if !(ts.is_empty() && v == 0) => Some(ts),
            _ => None,
        };
        let mut topics = Vec::new();
        match wanted {
            None => {
                let names: Vec<String> = self.topics.keys().cloned().collect();
                for name in names {
                    topics.push(self.topic_metadata(v, &name));
                }
            }
            Some(ts) => {
                for t in ts {
                    let name = match t.name {
                        Some(n) => n,
                        None => match self.topic_by_id(t.topic_id) {
                            Some(n) => n,
                            None => {
                                topics.push(MetadataResponseTopic {
                                    error_code: ErrorCode::UnknownTopicId.code(),
                                    topic_id: t.topic_id,
                                    ..Default::default()
                                });
                                continue;
                            }
                        },
                    };
                    if self.topics.contains_key(&name) {
                        topics.push(self.topic_metadata(v, &name));
                        continue;
                    }
                    let mut error = match validate_topic_name(&name) {
                        Ok(()) => ErrorCode::UnknownTopicOrPartition,
                        Err(e) => e,
                    };
                    if allow_auto && self.config.auto_create_topics && error.is_retriable() {
                        let rf = self
                            .config
                            .default_replication_factor
                            .min(self.brokers.len() as i16);
                        let parts = self.config.default_partitions;
                        // Kafka answers LEADER_NOT_AVAILABLE while the topic
                        // it just created gets its leaders.
                        error = match self.create_topic(&name, parts, rf) {
                            Ok(_) => ErrorCode::LeaderNotAvailable,
                            Err(e) => e,
                        };
                    }
                    topics.push(MetadataResponseTopic {
                        error_code: error.code(),
                        name: Some(name),
                        ..Default::default()
                    });
                }
            }
        }
        let up = self.up_brokers();
        MetadataResponse {
            brokers: self
                .brokers
                .values()
                .filter(|b| b.up)
                .map(|b| MetadataResponseBroker {
                    node_id: b.addr.node,
                    host: b.addr.host.clone(),
                    port: b.addr.port,
                    rack: b.addr.rack.clone(),
                    ..Default::default()
                })
                .collect(),
            cluster_id: (v >= 2).then(|| self.config.cluster_id.clone()),
            controller_id: up.first().copied().unwrap_or(-1),
            topics,
            ..Default::default()
        }
    }

    fn topic_metadata(&self, v: i16, name: &str) -> MetadataResponseTopic {
        let Some(t) = self.topics.get(name) else {
            return MetadataResponseTopic {
                error_code: ErrorCode::UnknownTopicOrPartition.code(),
                name: Some(name.to_owned()),
                ..Default::default()
            };
        };
        let up = self.up_brokers();
        MetadataResponseTopic {
            name: Some(t.name.clone()),
            topic_id: if v >= 10 { t.id } else { Uuid::ZERO },
            is_internal: v >= 1
                && (t.name == super::OFFSETS_TOPIC || t.name == super::TRANSACTION_STATE_TOPIC),
            partitions: t
                .partitions
                .iter()
                .map(|p| MetadataResponsePartition {
                    error_code: if p.leader.is_some() {
                        0
                    } else {
                        ErrorCode::LeaderNotAvailable.code()
                    },
                    partition_index: p.index,
                    leader_id: p.leader.unwrap_or(-1),
                    leader_epoch: p.leader_epoch,
                    replica_nodes: p.replicas.clone(),
                    isr_nodes: p
                        .replicas
                        .iter()
                        .copied()
                        .filter(|r| up.contains(r))
                        .collect(),
                    offline_replicas: p
                        .replicas
                        .iter()
                        .copied()
                        .filter(|r| !up.contains(r))
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    // ------------------------------------------------------------------
    // Produce
    // ------------------------------------------------------------------

    fn produce(
        &mut self,
        now: Timestamp,
        conn: ServerConnId,
        node: NodeId,
        v: i16,
        corr: i32,
        req: ProduceRequest,
    ) {
        let mut after = AfterProduce::Answer;
        let mut any_error = false;
        let mut responses = Vec::with_capacity(req.topic_data.len());
        for t in req.topic_data {
            let mut parts = Vec::with_capacity(t.partition_data.len());
            for p in t.partition_data {
                let records = p.records;
                let header = records.as_ref().and_then(|r| {
                    Batches::new(r.clone())
                        .next()
                        .and_then(Result::ok)
                        .map(|b| {
                            (
                                b.producer_id(),
                                b.producer_epoch(),
                                b.base_sequence(),
                                b.last_offset_delta() + 1,
                            )
                        })
                });
                let dups_before = self.stats.duplicates;
                let (mut resp, then) =
                    self.produce_partition(now, node, v, &t.name, p.index, records, req.acks);
                let dup = if self.stats.duplicates > dups_before {
                    " (duplicate)"
                } else {
                    ""
                };
                self.note(|| {
                    format!(
                        "broker {node} conn{} produce {}/{} batch(pid, epoch, seq, count)={header:?} -> error {} base {}{dup} then {then:?}",
                        conn.0, t.name, p.index, resp.error_code, resp.base_offset
                    )
                });
                if v < 10 {
                    resp.current_leader = ProduceLeader::default();
                }
                if resp.error_code != 0 {
                    any_error = true;
                    self.stats.produce_errors += 1;
                }
                if then != AfterProduce::Answer {
                    after = then;
                }
                parts.push(resp);
            }
            responses.push(TopicProduceResponse {
                name: t.name,
                partition_responses: parts,
                ..Default::default()
            });
        }
        self.wake_parked(now);
        match after {
            AfterProduce::Reset => self.close(conn),
            AfterProduce::Stall => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.stalled = true;
                }
            }
            // acks=0 gets no answer; an error closes the connection so
            // the producer notices (Kafka does the same).
            AfterProduce::Answer if req.acks == 0 => {
                if any_error {
                    self.close(conn);
                }
            }
            AfterProduce::Answer => {
                let body = ProduceResponse {
                    responses,
                    ..Default::default()
                };
                self.respond(conn, ApiKey::Produce, v, corr, ResponseBody::Produce(body));
            }
        }
    }

    /// The next fault for a partition's produce: scripted first, else
    /// drawn.
    fn next_produce_fault(&mut self, topic: &str, partition: i32) -> Option<ProduceFault> {
        if let Some(f) = self
            .scripted
            .get_mut(&(topic.to_owned(), partition))
            .and_then(|q| q.pop_front())
        {
            return Some(f);
        }
        let r = &self.random;
        if r.error_rate <= 0.0
            && r.reset_after_append_rate <= 0.0
            && r.reset_before_append_rate <= 0.0
            && r.stall_rate <= 0.0
        {
            return None;
        }
        let (error_rate, after, before, stall) = (
            r.error_rate,
            r.reset_after_append_rate,
            r.reset_before_append_rate,
            r.stall_rate,
        );
        if !r.codes.is_empty() && self.rng.chance(error_rate) {
            let code = *self.rng.pick(&self.random.codes)?;
            return Some(ProduceFault::Error {
                code,
                append: error_means_written(code),
            });
        }
        if self.rng.chance(after) {
            return Some(ProduceFault::AppendThenReset);
        }
        if self.rng.chance(before) {
            return Some(ProduceFault::ResetWithoutAppend);
        }
        if self.rng.chance(stall) {
            return Some(ProduceFault::AppendThenStall);
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn produce_partition(
        &mut self,
        now: Timestamp,
        node: NodeId,
        v: i16,
        topic: &str,
        partition: i32,
        records: Option<Bytes>,
        acks: i16,
    ) -> (PartitionProduceResponse, AfterProduce) {
        let mut resp = PartitionProduceResponse {
            index: partition,
            base_offset: -1,
            ..Default::default()
        };
        let fail = |mut r: PartitionProduceResponse, e: ErrorCode| {
            r.error_code = e.code();
            r.base_offset = -1;
            (r, AfterProduce::Answer)
        };
        let max_message = self.config.max_message_bytes;
        let Some(p) = self.partition(topic, partition) else {
            return fail(resp, ErrorCode::UnknownTopicOrPartition);
        };
        if p.leader != Some(node) {
            resp.current_leader = ProduceLeader {
                leader_id: p.leader.unwrap_or(-1),
                leader_epoch: p.leader_epoch,
                ..Default::default()
            };
            return fail(resp, ErrorCode::NotLeaderOrFollower);
        }
        resp.log_start_offset = p.log.log_start_offset();
        if !matches!(acks, -1..=1) {
            return fail(resp, ErrorCode::InvalidRequiredAcks);
        }
        let bytes = records.unwrap_or_default();
        if bytes.len() > max_message {
            return fail(resp, ErrorCode::MessageTooLarge);
        }
        // Produce v3+ carries exactly one magic v2 batch per partition.
        let mut it = Batches::with_options(
            bytes,
            ReadOptions {
                max_batch_bytes: max_message,
                ..Default::default()
            },
        );
        let batch = match it.next() {
            Some(Ok(b)) => b,
            Some(Err(_)) => return fail(resp, ErrorCode::CorruptMessage),
            None => return fail(resp, ErrorCode::InvalidRecord),
        };
        if it.next().is_some() || it.truncated_tail() > 0 || batch.magic() != MAGIC_V2 {
            return fail(resp, ErrorCode::InvalidRecord);
        }
        if batch.verify_crc().is_err() {
            return fail(resp, ErrorCode::CorruptMessage);
        }
        if batch.is_control() {
            return fail(resp, ErrorCode::InvalidRecord);
        }
        // A transactional batch must belong to the producer's ongoing
        // transaction, which must hold this partition. What decides is the
        // batch's attribute, as in Kafka; the request's transactional id
        // only says which id to authorize.
        if batch.is_transactional() {
            let (pid, epoch) = (batch.producer_id(), batch.producer_epoch());
            // Produce v12 (transactions v2) adds the partition itself.
            let implicit_add = v >= 12;
            if let Err(e) = self.check_txn_produce(now, topic, partition, pid, epoch, implicit_add)
            {
                return fail(resp, e);
            }
        }
        // Offset deltas must run 0, 1, 2, ... (Kafka's LogValidator).
        let count = match batch.records() {
            Ok(records) => {
                let mut n = 0i64;
                for r in records {
                    match r {
                        Ok(r) if r.offset == batch.base_offset() + n => n += 1,
                        Ok(_) => return fail(resp, ErrorCode::InvalidRecord),
                        Err(_) => return fail(resp, ErrorCode::CorruptMessage),
                    }
                }
                n
            }
            Err(_) => return fail(resp, ErrorCode::CorruptMessage),
        };
        if count == 0 || count != i64::from(batch.last_offset_delta()) + 1 {
            return fail(resp, ErrorCode::InvalidRecord);
        }
        let pid = batch.producer_id();
        let (epoch, first_seq) = (batch.producer_epoch(), batch.base_sequence());
        if pid >= 0 && (epoch < 0 || first_seq < 0) {
            return fail(resp, ErrorCode::InvalidRecord);
        }
        if self.config.sabotage == Sabotage::AppendRejectedLater {
            let held = self
                .held
                .remove(&(topic.to_owned(), partition))
                .unwrap_or_default();
            if let Some(p) = self.partition_mut(topic, partition) {
                for b in held {
                    let count = i64::from(b.last_offset_delta()) + 1;
                    let last = last_sequence(b.base_sequence(), count);
                    let (pid, e, s) = (b.producer_id(), b.producer_epoch(), b.base_sequence());
                    append(p, &b, pid, e, s, last);
                }
            }
        }
        let fault = self.next_produce_fault(topic, partition);
        if fault.is_some_and(|f| f != ProduceFault::Pass) {
            self.stats.faults_injected += 1;
        }
        // A broker checks for a duplicate before it judges the sequence: a
        // batch it already has is answered as a duplicate, never with
        // OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID. Injecting
        // those for a batch the log holds would model a broker no Kafka
        // is, so the fault is dropped then.
        let unknown_rule = self.config.unknown_producer;
        let fault = match fault {
            Some(ProduceFault::Error {
                code: ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId,
                append: false,
            }) if pid >= 0
                && self.partition_mut(topic, partition).is_some_and(|p| {
                    matches!(
                        p.producers.check(
                            pid,
                            epoch,
                            first_seq,
                            last_sequence(first_seq, count),
                            unknown_rule,
                            SeqRules::Kafka,
                        ),
                        Ok(SeqVerdict::Duplicate(_))
                    )
                }) =>
            {
                None
            }
            other => other,
        };
        match fault {
            Some(ProduceFault::Error {
                code,
                append: false,
            }) => {
                if self.config.sabotage == Sabotage::AppendRejectedLater {
                    self.held
                        .entry((topic.to_owned(), partition))
                        .or_default()
                        .push(batch);
                }
                return fail(resp, code);
            }
            Some(ProduceFault::ResetWithoutAppend) => return (resp, AfterProduce::Reset),
            _ => {}
        }
        let rules = match self.config.sabotage {
            Sabotage::IgnoreSequences => SeqRules::Ignore,
            Sabotage::AcceptSequenceGaps => SeqRules::AcceptGaps,
            _ => SeqRules::Kafka,
        };
        let unknown = self.config.unknown_producer;
        let Some(p) = self.partition_mut(topic, partition) else {
            return fail(resp, ErrorCode::UnknownTopicOrPartition);
        };
        let last_seq = last_sequence(first_seq, count);
        let verdict = if pid >= 0 {
            match p
                .producers
                .check(pid, epoch, first_seq, last_seq, unknown, rules)
            {
                Ok(v) => v,
                Err(e) => return fail(resp, e),
            }
        } else {
            SeqVerdict::Append
        };
        match verdict {
            SeqVerdict::Duplicate(meta) => {
                resp.base_offset = meta.first_offset;
                self.stats.duplicates += 1;
            }
            SeqVerdict::Append => {
                resp.base_offset = append(p, &batch, pid, epoch, first_seq, last_seq);
                self.stats.batches_appended += 1;
            }
        }
        match fault {
            Some(ProduceFault::Error { code, .. }) => fail(resp, code),
            Some(ProduceFault::AppendThenReset) => (resp, AfterProduce::Reset),
            Some(ProduceFault::AppendThenStall) => (resp, AfterProduce::Stall),
            _ => (resp, AfterProduce::Answer),
        }
    }

    // ------------------------------------------------------------------
    // Fetch
    // ------------------------------------------------------------------

    /// Answers a Fetch, or hands it back to wait when it has less than
    /// `min_bytes` and time left (Kafka's delayed fetch).
    pub(super) fn fetch(
        &mut self,
        now: Timestamp,
        conn: ServerConnId,
        node: NodeId,
        parked: ParkedFetch,
        final_try: bool,
    ) -> Option<ParkedFetch> {
        let v = parked.version;
        let req = &parked.req;
        let mut resp = FetchResponse::default();
        // Sessions (KIP-227) are declined: a request to open one gets
        // session id 0, which tells the client to keep sending full
        // fetches; a session id the broker never gave is not found.
        if v >= 7 && req.session_id != 0 {
            resp.error_code = ErrorCode::FetchSessionIdNotFound.code();
            self.respond(
                conn,
                ApiKey::Fetch,
                v,
                parked.correlation_id,
                ResponseBody::Fetch(resp),
            );
            return None;
        }
        let read_committed = req.isolation_level == 1;
        let mut remaining = usize::try_from(req.max_bytes).unwrap_or(0);
        let mut total = 0usize;
        let mut any_error = false;
        for t in &req.topics {
            let name = if v >= 13 {
                self.topic_by_id(t.topic_id)
            } else {
                Some(t.topic.clone())
            };
            let mut parts = Vec::with_capacity(t.partitions.len());
            for fp in &t.partitions {
                let mut pd = PartitionData {
                    partition_index: fp.partition,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    aborted_transactions: read_committed.then(Vec::new),
                    ..Default::default()
                };
                let p = name
                    .as_deref()
                    .and_then(|n| self.partition(n, fp.partition));
                let Some(p) = p else {
                    pd.error_code = if v >= 13 {
                        ErrorCode::UnknownTopicId
                    } else {
                        ErrorCode::UnknownTopicOrPartition
                    }
                    .code();
                    any_error = true;
                    parts.push(pd);
                    continue;
                };
                let leader_info = FetchLeader {
                    leader_id: p.leader.unwrap_or(-1),
                    leader_epoch: p.leader_epoch,
                    ..Default::default()
                };
                let error = if p.leader != Some(node) {
                    Err(ErrorCode::NotLeaderOrFollower)
                } else {
                    check_epoch(fp.current_leader_epoch, p.leader_epoch)
                };
                if let Err(e) = error {
                    pd.error_code = e.code();
                    if v >= 12 {
                        pd.current_leader = leader_info;
                    }
                    any_error = true;
                    parts.push(pd);
                    continue;
                }
                let log = &p.log;
                pd.high_watermark = log.high_watermark();
                pd.last_stable_offset = log.last_stable_offset();
                pd.log_start_offset = log.log_start_offset();
                let end = if read_committed
                    && self.config.sabotage != Sabotage::FetchIgnoresLastStableOffset
                {
                    log.last_stable_offset()
                } else {
                    log.high_watermark()
                };
                if self.config.sabotage == Sabotage::FetchIgnoresLastStableOffset {
                    pd.last_stable_offset = end;
                }
                let omit = self.config.sabotage == Sabotage::FetchOmitsAbortedTxns;
                if read_committed && fp.fetch_offset < end && omit {
                    pd.aborted_transactions = Some(Vec::new());
                } else if read_committed && fp.fetch_offset < end {
                    pd.aborted_transactions = Some(
                        log.txn_index()
                            .aborted_between(fp.fetch_offset, end)
                            .into_iter()
                            .map(|a| AbortedTransaction {
                                producer_id: a.producer_id,
                                first_offset: a.first_offset,
                                ..Default::default()
                            })
                            .collect(),
                    );
                }
                if fp.fetch_offset < log.log_start_offset()
                    || fp.fetch_offset > log.log_end_offset()
                {
                    pd.error_code = ErrorCode::OffsetOutOfRange.code();
                    any_error = true;
                    parts.push(pd);
                    continue;
                }
                if fp.fetch_offset < end {
                    let max = usize::try_from(fp.partition_max_bytes)
                        .unwrap_or(0)
                        .min(remaining);
                    // KIP-74: the first batch of the response is whole
                    // even past the limits, so a consumer never sticks.
                    let from = if self.config.sabotage == Sabotage::FetchSkipsBatch {
                        // The batch after the one asked for; none yet:
                        // nothing, until one comes.
                        log.batches()
                            .iter()
                            .find(|b| b.base_offset > fp.fetch_offset)
                            .map_or(log.log_end_offset(), |b| b.base_offset)
                    } else {
                        fp.fetch_offset
                    };
                    let data = log.read(from, max, total == 0, end);
                    total += data.len();
                    remaining = remaining.saturating_sub(data.len());
                    pd.records = Some(data);
                }
                parts.push(pd);
            }
            resp.responses.push(FetchableTopicResponse {
                topic: if v >= 13 {
                    String::new()
                } else {
                    t.topic.clone()
                },
                topic_id: if v >= 13 { t.topic_id } else { Uuid::ZERO },
                partitions: parts,
                ..Default::default()
            });
        }
        let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
        if !final_try && !any_error && total < min_bytes.max(1) && parked.deadline > now {
            return Some(parked);
        }
        self.respond(
            conn,
            ApiKey::Fetch,
            v,
            parked.correlation_id,
            ResponseBody::Fetch(resp),
        );
        None
    }

    // ------------------------------------------------------------------
    // ListOffsets
    // ------------------------------------------------------------------

    fn list_offsets(&self, node: NodeId, v: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
        let read_committed = v >= 2 && req.isolation_level == 1;
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|lp| {
                        let mut r = ListOffsetsPartitionResponse {
                            partition_index: lp.partition_index,
                            ..Default::default()
                        };
                        match self.partition(&t.name, lp.partition_index) {
                            None => r.error_code = ErrorCode::UnknownTopicOrPartition.code(),
                            Some(p) => match self.offset_lookup(node, v, p, lp, read_committed) {
                                Ok((offset, ts, epoch)) => {
                                    r.offset = offset;
                                    r.timestamp = ts;
                                    if v >= 4 {
                                        r.leader_epoch = epoch;
                                    }
                                }
                                Err(e) => r.error_code = e.code(),
                            },
                        }
                        r
                    })
                    .collect();
                ListOffsetsTopicResponse {
                    name: t.name,
                    partitions,
                    ..Default::default()
                }
            })
            .collect();
        ListOffsetsResponse {
            topics,
            ..Default::default()
        }
    }

    /// `(offset, timestamp, leader epoch)` for one ListOffsets partition.
    fn offset_lookup(
        &self,
        node: NodeId,
        v: i16,
        p: &Partition,
        lp: &sansa_core::protocol::messages::list_offsets_request::ListOffsetsPartition,
        read_committed: bool,
    ) -> Result<(i64, i64, i32), ErrorCode> {
        if p.leader != Some(node) {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        if v >= 4 {
            check_epoch(lp.current_leader_epoch, p.leader_epoch)?;
        }
        let log = &p.log;
        let epoch_of = |offset: i64| log.epoch_at(offset).unwrap_or(p.leader_epoch);
        match lp.timestamp {
            // EARLIEST, and EARLIEST_LOCAL (KIP-405: no tiered storage here).
            -2 | -4 => {
                let o = log.log_start_offset();
                Ok((o, -1, epoch_of(o)))
            }
            -1 => {
                let o = if read_committed {
                    log.last_stable_offset()
                } else {
                    log.high_watermark()
                };
                Ok((o, -1, p.leader_epoch))
            }
            // MAX_TIMESTAMP (KIP-734).
            -3 => match log.max_timestamp_offset() {
                Ok(Some((o, ts, e))) => Ok((o, ts, e)),
                Ok(None) => Ok((-1, -1, -1)),
                Err(_) => Err(ErrorCode::CorruptMessage),
            },
            // LATEST_TIERED (KIP-1005): nothing is tiered.
            -5 => Ok((-1, -1, -1)),
            ts if ts >= 0 => match log.offset_for_timestamp(ts) {
                Ok(Some((o, ts, e))) => Ok((o, ts, e)),
                Ok(None) => Ok((-1, -1, -1)),
                Err(_) => Err(ErrorCode::CorruptMessage),
            },
            _ => Err(ErrorCode::InvalidRequest),
        }
    }

    // ------------------------------------------------------------------
    // CreateTopics, DeleteTopics
    // ------------------------------------------------------------------

    fn create_topics(&mut self, v: i16, req: CreateTopicsRequest) -> CreateTopicsResponse {
        let mut results = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let mut r = CreatableTopicResult {
                name: t.name.clone(),
                error_message: None,
                configs: None,
                ..Default::default()
            };
            let outcome = self.create_one(&t, req.validate_only);
            match outcome {
                Ok((id, parts, rf)) => {
                    if v >= 7 {
                        r.topic_id = id;
                    }
                    if v >= 5 {
                        r.num_partitions = parts;
                        r.replication_factor = rf;
                        r.configs = Some(Vec::new());
                    }
                }
                Err(e) => {
                    r.error_code = e.code();
                    if v >= 1 {
                        r.error_message = Some(e.message().to_owned());
                    }
                }
            }
            results.push(r);
        }
        CreateTopicsResponse {
            topics: results,
            ..Default::default()
        }
    }

    fn create_one(
        &mut self,
        t: &sansa_core::protocol::messages::create_topics_request::CreatableTopic,
        validate_only: bool,
    ) -> Result<(Uuid, i32, i16), ErrorCode> {
        validate_topic_name(&t.name)?;
        if self.topics.contains_key(&t.name) {
            return Err(ErrorCode::TopicAlreadyExists);
        }
        let n = self.brokers.len() as i16;
        if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                return Err(ErrorCode::InvalidRequest);
            }
            let mut assignment = t.assignments.clone();
            assignment.sort_by_key(|a| a.partition_index);
            if assignment
                .iter()
                .enumerate()
                .any(|(i, a)| a.partition_index != i as i32)
            {
                return Err(ErrorCode::InvalidReplicaAssignment);
            }
            let lists: Vec<Vec<NodeId>> = assignment.into_iter().map(|a| a.broker_ids).collect();
            let rf = lists.first().map_or(0, |l| l.len() as i16);
            let parts = lists.len() as i32;
            if validate_only {
                return Ok((Uuid::ZERO, parts, rf));
            }
            let topic = self.create_topic_with(&t.name, lists)?;
            return Ok((topic.id, parts, rf));
        }
        let parts = if t.num_partitions == -1 {
            self.config.default_partitions
        } else {
            t.num_partitions
        };
        if parts < 1 {
            return Err(ErrorCode::InvalidPartitions);
        }
        let rf = if t.replication_factor == -1 {
            self.config.default_replication_factor.min(n)
        } else {
            t.replication_factor
        };
        if rf < 1 || rf > n {
            return Err(ErrorCode::InvalidReplicationFactor);
        }
        if validate_only {
            return Ok((Uuid::ZERO, parts, rf));
        }
        let topic = self.create_topic(&t.name, parts, rf)?;
        Ok((topic.id, parts, rf))
    }

    fn delete_topics(&mut self, v: i16, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
        let targets: Vec<(Option<String>, Uuid)> = if v >= 6 {
            req.topics
                .into_iter()
                .map(|t| (t.name, t.topic_id))
                .collect()
        } else {
            req.topic_names
                .into_iter()
                .map(|n| (Some(n), Uuid::ZERO))
                .collect()
        };
        let responses = targets
            .into_iter()
            .map(|(name, id)| {
                let resolved = match &name {
                    Some(n) => Some(n.clone()),
                    None => self.topic_by_id(id),
                };
                let error = match &resolved {
                    None => ErrorCode::UnknownTopicId,
                    Some(n) => match self.delete_topic(n) {
                        Ok(()) => ErrorCode::None,
                        Err(e) => e,
                    },
                };
                DeletableTopicResult {
                    name: if v >= 6 { resolved.or(name) } else { name },
                    topic_id: if v >= 6 { id } else { Uuid::ZERO },
                    error_code: error.code(),
                    error_message: None,
                    ..Default::default()
                }
            })
            .collect();
        DeleteTopicsResponse {
            responses,
            ..Default::default()
        }
    }
}

/// Appends a validated batch and remembers it for duplicate detection;
/// returns its base offset.
fn append(
    p: &mut Partition,
    batch: &sansa_core::record::Batch,
    pid: i64,
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
) -> i64 {
    let stored = p.log.append(batch, p.leader_epoch);
    if pid >= 0 {
        p.producers.record(
            pid,
            epoch,
            BatchMeta {
                first_seq,
                last_seq,
                first_offset: stored.base_offset,
                last_offset: stored.last_offset,
            },
        );
    }
    stored.base_offset
}
