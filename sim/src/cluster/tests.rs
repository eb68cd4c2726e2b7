//! The simulated brokers, request by request, through the real codecs:
//! every answer is encoded by the cluster and decoded here as a client
//! would, at every version the cluster advertises.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use sansa_core::protocol::header::{decode_response, encode_request};
use sansa_core::protocol::messages::create_topics_request::CreatableTopic;
use sansa_core::protocol::messages::delete_topics_request::DeleteTopicState;
use sansa_core::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use sansa_core::protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use sansa_core::protocol::messages::metadata_request::MetadataRequestTopic;
use sansa_core::protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use sansa_core::protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, DeleteTopicsRequest,
    FetchRequest, InitProducerIdRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
};
use sansa_core::protocol::{ApiKey, ErrorCode, Request};
use sansa_core::record::{
    BatchBuilder, BatchOptions, BatchStamp, Batches, ProducerStamp, NO_HEADERS,
};

use super::*;

const T0: Timestamp = Timestamp::ZERO;

/// A client's view of one connection to the cluster.
struct Wire {
    cluster: Cluster,
    conn: ServerConnId,
    corr: i32,
}

impl Wire {
    fn new(brokers: i32) -> Self {
        let mut cluster = Cluster::new(ClusterConfig::new(brokers), SimRng::new(1));
        let conn = cluster.accept(1).expect("broker 1 is up");
        Wire {
            cluster,
            conn,
            corr: 0,
        }
    }

    fn connect(&mut self, node: NodeId) {
        self.conn = self.cluster.accept(node).expect("broker up");
    }

    fn send<R: Request>(&mut self, now: Timestamp, version: i16, body: &R) -> i32 {
        self.corr += 1;
        let mut b = BytesMut::new();
        b.put_i32(0);
        encode_request(&mut b, version, self.corr, Some("test"), body).expect("encodes");
        let size = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&size.to_be_bytes());
        self.cluster.handle_bytes(now, self.conn, &b);
        self.corr
    }

    fn recv<R: Request>(&mut self, version: i16, corr: i32) -> R::Response {
        match self.cluster.poll_output() {
            Some(ClusterOutput::Send { conn, data }) => {
                assert_eq!(conn, self.conn);
                let (h, body) = decode_response::<R>(data.slice(4..), version).expect("decodes");
                assert_eq!(h.correlation_id, corr);
                body
            }
            other => panic!(
                "expected a response to {} v{version}, got {other:?} ({:?})",
                R::API_KEY.name(),
                self.cluster.stats()
            ),
        }
    }

    fn call<R: Request>(&mut self, version: i16, body: &R) -> R::Response {
        let corr = self.send(T0, version, body);
        self.recv::<R>(version, corr)
    }

    fn assert_silent(&mut self) {
        assert_eq!(self.cluster.poll_output(), None);
    }
}

fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let r = served_versions(api, 1).expect("served");
    r.min..=r.max
}

fn batch(values: &[&str], producer: ProducerStamp, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(BatchOptions::default());
    for (i, v) in values.iter().enumerate() {
        b.append(ts + i as i64, None, Some(v.as_bytes()), NO_HEADERS)
            .expect("fits");
    }
    b.seal(&BatchStamp {
        producer,
        ..Default::default()
    })
    .expect("seals")
    .into_bytes()
}

fn idem(producer_id: i64, producer_epoch: i16, base_sequence: i32) -> ProducerStamp {
    ProducerStamp {
        producer_id,
        producer_epoch,
        base_sequence,
    }
}

fn produce_req(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest {
        acks,
        timeout_ms: 1000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// (error, base offset) of the one partition answer.
fn produce(w: &mut Wire, v: i16, topic: &str, partition: i32, records: Bytes) -> (ErrorCode, i64) {
    let resp = w.call(v, &produce_req(topic, partition, records, -1));
    let p = &resp.responses[0].partition_responses[0];
    (ErrorCode::from_code(p.error_code), p.base_offset)
}

fn fetch_req(topic: &Topic, partition: i32, offset: i64, max: i32, v: i16) -> FetchRequest {
    FetchRequest {
        max_wait_ms: 0,
        max_bytes: max,
        topics: vec![FetchTopic {
            topic: if v >= 13 {
                String::new()
            } else {
                topic.name.clone()
            },
            topic_id: if v >= 13 { topic.id } else { Uuid::ZERO },
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: offset,
                partition_max_bytes: max,
                current_leader_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn values(records: &Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for b in Batches::new(records.clone()) {
        for r in b.expect("batch").records().expect("records") {
            let r = r.expect("record");
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            out.push((r.offset, v));
        }
    }
    out
}

#[test]
fn api_versions_advertises_what_is_served_with_fetch_from_v4() {
    let mut w = Wire::new(1);
    for v in versions(ApiKey::ApiVersions) {
        let resp = w.call(v, &ApiVersionsRequest::default());
        assert_eq!(resp.error_code, 0);
        let find = |k: ApiKey| resp.api_keys.iter().find(|a| a.api_key == k.key());
        let fetch = find(ApiKey::Fetch).expect("fetch");
        assert_eq!(fetch.min_version, 4);
        assert_eq!(find(ApiKey::Produce).expect("produce").min_version, 3);
        // Transactions v1: the client forms only, no KIP-890 v2.
        let txn = |k: ApiKey| find(k).map(|a| (a.min_version, a.max_version));
        assert_eq!(txn(ApiKey::AddPartitionsToTxn), Some((0, 3)));
        assert_eq!(txn(ApiKey::EndTxn), Some((0, 4)));
        assert_eq!(txn(ApiKey::AddOffsetsToTxn), Some((0, 4)));
        assert_eq!(txn(ApiKey::TxnOffsetCommit), Some((0, 4)));
        assert_eq!(txn(ApiKey::InitProducerId), Some((0, 5)));
        assert!(find(ApiKey::WriteTxnMarkers).is_none());
        for api in [
            ApiKey::FindCoordinator,
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::LeaveGroup,
            ApiKey::OffsetCommit,
            ApiKey::OffsetFetch,
        ] {
            let a = find(api).expect("group APIs are served");
            assert_eq!(
                (a.min_version, a.max_version),
                (0, api.max_stable_version())
            );
        }
    }
    // KIP-511: a version the broker cannot read gets a v0 answer listing
    // what it speaks.
    let mut frame = BytesMut::new();
    frame.put_i32(8);
    frame.put_i16(ApiKey::ApiVersions.key());
    frame.put_i16(99);
    frame.put_i32(77);
    w.cluster.handle_bytes(T0, w.conn, &frame);
    let Some(ClusterOutput::Send { data, .. }) = w.cluster.poll_output() else {
        panic!("no answer");
    };
    let (h, resp) = decode_response::<ApiVersionsRequest>(data.slice(4..), 0).expect("v0");
    assert_eq!(h.correlation_id, 77);
    assert_eq!(resp.error_code, ErrorCode::UnsupportedVersion.code());
    assert!(!resp.api_keys.is_empty());
    let _: ApiVersionsResponse = resp;
}

#[test]
fn a_transactions_v2_cluster_advertises_the_feature_and_the_v2_versions() {
    let mut config = ClusterConfig::new(1);
    config.transactions.transaction_version = 2;
    let mut cluster = Cluster::new(config, SimRng::new(1));
    let conn = cluster.accept(1).expect("broker 1 is up");
    let mut w = Wire {
        cluster,
        conn,
        corr: 0,
    };
    for v in versions(ApiKey::ApiVersions) {
        let resp = w.call(v, &ApiVersionsRequest::default());
        let max = |k: ApiKey| {
            resp.api_keys
                .iter()
                .find(|a| a.api_key == k.key())
                .map(|a| a.max_version)
        };
        assert_eq!(max(ApiKey::Produce), Some(12));
        assert_eq!(max(ApiKey::TxnOffsetCommit), Some(5));
        assert_eq!(max(ApiKey::EndTxn), Some(5));
        let features: Vec<(&str, i16)> = resp
            .finalized_features
            .iter()
            .map(|f| (f.name.as_str(), f.max_version_level))
            .collect();
        // Features are tagged fields of v3+ (KIP-584).
        if v >= 3 {
            assert_eq!(features, vec![("transaction.version", 2)]);
        } else {
            assert!(features.is_empty());
        }
    }
    // A v1 cluster advertises neither.
    let mut w = Wire::new(1);
    let resp = w.call(3, &ApiVersionsRequest::default());
    assert!(resp.finalized_features.is_empty());
}

#[test]
fn an_api_that_is_not_served_closes_the_connection() {
    let mut w = Wire::new(1);
    let req = sansa_core::protocol::messages::DescribeTransactionsRequest::default();
    w.send(T0, 0, &req);
    assert_eq!(
        w.cluster.poll_output(),
        Some(ClusterOutput::Close { conn: w.conn })
    );
    assert_eq!(w.cluster.stats().bad_requests, 1);
}

#[test]
fn metadata_reports_leaders_epochs_and_live_brokers_at_every_version() {
    let mut w = Wire::new(3);
    w.cluster.create_topic("t", 3, 3).expect("created");
    for v in versions(ApiKey::Metadata) {
        // Every topic: an empty list at v0, null from v1 (where an empty
        // list means none).
        let all = MetadataRequest {
            topics: if v == 0 { Some(Vec::new()) } else { None },
            ..Default::default()
        };
        let resp = w.call(v, &all);
        assert_eq!(resp.brokers.len(), 3, "v{v}");
        assert_eq!(resp.topics.len(), 1, "v{v}");
        let t = &resp.topics[0];
        assert_eq!(t.name.as_deref(), Some("t"));
        assert_eq!(t.partitions.len(), 3);
        if v >= 10 {
            assert_eq!(t.topic_id, w.cluster.topic("t").expect("t").id());
        }
    }
    // A crash: the broker disappears, its partitions move, epochs bump.
    let led_by_2: Vec<i32> = w
        .cluster
        .topic("t")
        .expect("t")
        .partitions()
        .iter()
        .filter(|p| p.leader() == Some(2))
        .map(|p| p.index())
        .collect();
    assert!(!led_by_2.is_empty());
    assert!(w.cluster.crash(2));
    let all = MetadataRequest {
        topics: None,
        ..Default::default()
    };
    let resp = w.call(12, &all);
    assert_eq!(resp.brokers.len(), 2);
    for p in &resp.topics[0].partitions {
        assert_ne!(p.leader_id, 2);
        assert!(p.offline_replicas.contains(&2));
        if led_by_2.contains(&p.partition_index) {
            assert_eq!(p.leader_epoch, 1);
        }
    }
    // By id (v10+), and an unknown id.
    let id = w.cluster.topic("t").expect("t").id();
    let by_id = MetadataRequest {
        topics: Some(vec![
            MetadataRequestTopic {
                topic_id: id,
                name: None,
                ..Default::default()
            },
            MetadataRequestTopic {
                topic_id: Uuid::from_u64_pair(1, 2),
                name: None,
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let resp = w.call(12, &by_id);
    assert_eq!(resp.topics[0].name.as_deref(), Some("t"));
    assert_eq!(resp.topics[1].error_code, ErrorCode::UnknownTopicId.code());
}

#[test]
fn metadata_auto_creates_topics_only_when_both_sides_allow_it() {
    let mut w = Wire::new(1);
    let ask = |name: &str, allow: bool| MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(name.into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: allow,
        ..Default::default()
    };
    let resp = w.call(12, &ask("new", true));
    assert_eq!(
        resp.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code(),
        "auto-creation is off by default in the simulator"
    );
    w.cluster.config.auto_create_topics = true;
    let resp = w.call(12, &ask("new", false));
    assert_eq!(
        resp.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    let resp = w.call(12, &ask("new", true));
    assert_eq!(
        resp.topics[0].error_code,
        ErrorCode::LeaderNotAvailable.code()
    );
    let resp = w.call(12, &ask("new", true));
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].partitions.len(), 1);
    let resp = w.call(12, &ask("bad name!", true));
    assert_eq!(
        resp.topics[0].error_code,
        ErrorCode::InvalidTopicException.code()
    );
}

#[test]
fn create_and_delete_topics_answer_kafka_s_errors_at_every_version() {
    let mut w = Wire::new(2);
    for v in versions(ApiKey::CreateTopics) {
        let name = format!("t{v}");
        let topic = |name: &str, parts: i32, rf: i16| CreatableTopic {
            name: name.into(),
            num_partitions: parts,
            replication_factor: rf,
            ..Default::default()
        };
        let req = CreateTopicsRequest {
            topics: vec![
                topic(&name, 3, 2),
                topic(&name, 3, 2),
                topic("zero", 0, 1),
                topic("wide", 1, 3),
                topic("no/slash", 1, 1),
            ],
            ..Default::default()
        };
        let resp = w.call(v, &req);
        let codes: Vec<i16> = resp.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(
            codes,
            vec![
                0,
                ErrorCode::TopicAlreadyExists.code(),
                ErrorCode::InvalidPartitions.code(),
                ErrorCode::InvalidReplicationFactor.code(),
                ErrorCode::InvalidTopicException.code(),
            ],
            "v{v}"
        );
        let t = w.cluster.topic(&name).expect("created");
        assert_eq!(t.partitions().len(), 3);
        assert!(t.partitions().iter().all(|p| p.replicas().len() == 2));
    }
    let validate = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "dry".into(),
            num_partitions: -1,
            replication_factor: -1,
            ..Default::default()
        }],
        validate_only: true,
        ..Default::default()
    };
    assert_eq!(w.call(7, &validate).topics[0].error_code, 0);
    assert!(w.cluster.topic("dry").is_none());
    for v in versions(ApiKey::DeleteTopics) {
        let name = format!("t{}", v + 1);
        let req = if v >= 6 {
            DeleteTopicsRequest {
                topics: vec![
                    DeleteTopicState {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    DeleteTopicState {
                        name: Some("missing".into()),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }
        } else {
            DeleteTopicsRequest {
                topic_names: vec![name.clone(), "missing".into()],
                ..Default::default()
            }
        };
        let resp = w.call(v, &req);
        assert_eq!(resp.responses[0].error_code, 0, "v{v}");
        assert_eq!(
            resp.responses[1].error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        assert!(w.cluster.topic(&name).is_none());
    }
}

#[test]
fn produce_assigns_offsets_recognises_duplicates_and_checks_sequences() {
    let mut w = Wire::new(1);
    w.cluster.create_topic("t", 1, 1).expect("t");
    for v in versions(ApiKey::Produce) {
        w.cluster.delete_topic("t").expect("deleted");
        w.cluster.create_topic("t", 1, 1).expect("t");
        let pid = 7 + i64::from(v);
        let b0 = batch(&["a", "b"], idem(pid, 0, 0), 1000);
        assert_eq!(produce(&mut w, v, "t", 0, b0.clone()), (ErrorCode::None, 0));
        // A retry is a duplicate: the first copy's offset, nothing written.
        assert_eq!(produce(&mut w, v, "t", 0, b0), (ErrorCode::None, 0));
        assert_eq!(
            w.cluster
                .partition("t", 0)
                .expect("p")
                .log()
                .log_end_offset(),
            2
        );
        let gap = batch(&["x"], idem(pid, 0, 5), 1000);
        assert_eq!(
            produce(&mut w, v, "t", 0, gap).0,
            ErrorCode::OutOfOrderSequenceNumber
        );
        let next = batch(&["c"], idem(pid, 0, 2), 1000);
        assert_eq!(produce(&mut w, v, "t", 0, next), (ErrorCode::None, 2));
        // KIP-360: a new epoch starts over at 0; the old one is fenced.
        let bumped = batch(&["d"], idem(pid, 1, 0), 1000);
        assert_eq!(produce(&mut w, v, "t", 0, bumped), (ErrorCode::None, 3));
        let old = batch(&["e"], idem(pid, 0, 3), 1000);
        assert_eq!(
            produce(&mut w, v, "t", 0, old).0,
            ErrorCode::InvalidProducerEpoch
        );
        // Without idempotence, anything goes, duplicates included.
        let plain = batch(&["f"], ProducerStamp::default(), 1000);
        assert_eq!(
            produce(&mut w, v, "t", 0, plain.clone()),
            (ErrorCode::None, 4)
        );
        assert_eq!(produce(&mut w, v, "t", 0, plain), (ErrorCode::None, 5));
    }
    assert_eq!(w.cluster.stats().encode_failures, 0);
}

#[test]
fn produce_rejects_what_kafka_rejects() {
    let mut w = Wire::new(2);
    w.cluster
        .create_topic_with("t", vec![vec![1], vec![2]])
        .expect("t");
    let good = batch(&["a"], ProducerStamp::default(), 1);
    assert_eq!(
        produce(&mut w, 11, "t", 1, good.clone()).0,
        ErrorCode::NotLeaderOrFollower
    );
    let resp = w.call(11, &produce_req("t", 1, good.clone(), -1));
    assert_eq!(
        resp.responses[0].partition_responses[0]
            .current_leader
            .leader_id,
        2
    );
    assert_eq!(
        produce(&mut w, 11, "nope", 0, good.clone()).0,
        ErrorCode::UnknownTopicOrPartition
    );
    let mut corrupt = BytesMut::from(&good[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce(&mut w, 11, "t", 0, corrupt.freeze()).0,
        ErrorCode::CorruptMessage
    );
    let mut two = BytesMut::from(&good[..]);
    two.extend_from_slice(&good);
    assert_eq!(
        produce(&mut w, 11, "t", 0, two.freeze()).0,
        ErrorCode::InvalidRecord
    );
    // A transactional batch of a producer with no transaction.
    let mut b = BatchBuilder::new(BatchOptions {
        transactional: true,
        ..Default::default()
    });
    b.append(0, None, Some(b"x"), NO_HEADERS).expect("fits");
    let sealed = b
        .seal(&BatchStamp {
            producer: idem(77, 0, 0),
            ..Default::default()
        })
        .expect("seals")
        .into_bytes();
    let mut txn = produce_req("t", 0, sealed, -1);
    txn.transactional_id = Some("tx".into());
    let resp = w.call(11, &txn);
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        ErrorCode::InvalidTxnState.code()
    );
    w.cluster.config.max_message_bytes = 10;
    assert_eq!(
        produce(&mut w, 11, "t", 0, good.clone()).0,
        ErrorCode::MessageTooLarge
    );
    w.cluster.config.max_message_bytes = 1 << 20;
    // acks=0: no answer; an error closes the connection.
    w.send(T0, 11, &produce_req("t", 0, good.clone(), 0));
    w.assert_silent();
    w.send(T0, 11, &produce_req("t", 1, good, 0));
    assert_eq!(
        w.cluster.poll_output(),
        Some(ClusterOutput::Close { conn: w.conn })
    );
    assert_eq!(
        w.cluster
            .partition("t", 0)
            .expect("p")
            .log()
            .log_end_offset(),
        1
    );
}

#[test]
fn unknown_producers_are_judged_by_the_configured_broker_version() {
    let mut w = Wire::new(1);
    w.cluster.create_topic("t", 1, 1).expect("t");
    let late = batch(&["a"], idem(9, 0, 4), 1);
    assert_eq!(
        produce(&mut w, 11, "t", 0, late.clone()),
        (ErrorCode::None, 0)
    );
    w.cluster.config.unknown_producer = UnknownProducer::RejectUnlessZero;
    let other = batch(&["a"], idem(10, 0, 4), 1);
    assert_eq!(
        produce(&mut w, 11, "t", 0, other).0,
        ErrorCode::UnknownProducerId
    );
    // Retention forgets the producer along with its last batch.
    assert!(w.cluster.delete_records("t", 0, 1));
    let next = batch(&["b"], idem(9, 0, 5), 1);
    assert_eq!(
        produce(&mut w, 11, "t", 0, next).0,
        ErrorCode::UnknownProducerId
    );
}

#[test]
fn fetch_returns_stored_batches_with_broker_offsets_at_every_version() {
    let mut w = Wire::new(1);
    w.cluster.create_topic("t", 1, 1).expect("t");
    for (i, vals) in [["a", "b"], ["c", "d"], ["e", "f"]].iter().enumerate() {
        let b = batch(vals, idem(1, 0, 2 * i as i32), 100);
        assert_eq!(produce(&mut w, 11, "t", 0, b).0, ErrorCode::None);
    }
    let topic = w.cluster.topic("t").expect("t").clone();
    let all: Vec<(i64, String)> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, (*v).to_owned()))
        .collect();
    for v in versions(ApiKey::Fetch) {
        let resp = w.call(v, &fetch_req(&topic, 0, 0, 1 << 20, v));
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{v}");
        assert_eq!(p.high_watermark, 6);
        assert_eq!(values(p.records.as_ref().expect("records")), all, "v{v}");
        // From the middle of a batch: the whole batch holding it.
        let resp = w.call(v, &fetch_req(&topic, 0, 3, 1 << 20, v));
        let got = values(resp.responses[0].partitions[0].records.as_ref().expect("r"));
        assert_eq!(got.first().map(|r| r.0), Some(2), "v{v}");
    }
    // KIP-74: a limit below one batch still returns that whole batch; a
    // limit inside the second batch cuts it (a partial batch, as Kafka's
    // segment reads do).
    let one = w.cluster.partition("t", 0).expect("p").log().batches()[0]
        .bytes
        .len();
    let resp = w.call(12, &fetch_req(&topic, 0, 0, 1, 12));
    let r = resp.responses[0].partitions[0].records.clone().expect("r");
    assert_eq!(r.len(), one);
    let resp = w.call(12, &fetch_req(&topic, 0, 0, (one + 10) as i32, 12));
    let r = resp.responses[0].partitions[0].records.clone().expect("r");
    assert_eq!(r.len(), one + 10);
    let mut it = Batches::new(r);
    assert!(it.next().is_some());
    assert!(it.next().is_none());
    assert_eq!(it.truncated_tail(), 10);
    // Out of range, and a fenced leader epoch (KIP-320).
    let resp = w.call(12, &fetch_req(&topic, 0, 7, 1 << 20, 12));
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ErrorCode::OffsetOutOfRange.code()
    );
    w.cluster.crash(1);
    assert_eq!(
        w.cluster.poll_output(),
        Some(ClusterOutput::Close { conn: w.conn })
    );
    w.cluster.restart(1);
    w.connect(1);
    let mut stale = fetch_req(&topic, 0, 0, 1 << 20, 12);
    stale.topics[0].partitions[0].current_leader_epoch = 0;
    let resp = w.call(12, &stale);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, ErrorCode::FencedLeaderEpoch.code());
    assert_eq!(p.current_leader.leader_epoch, 2);
    assert_eq!(w.cluster.stats().encode_failures, 0);
}

#[test]
fn a_fetch_waits_for_data_or_its_deadline_and_holds_the_connection() {
    let mut w = Wire::new(1);
    w.cluster.create_topic("t", 1, 1).expect("t");
    let topic = w.cluster.topic("t").expect("t").clone();
    let mut req = fetch_req(&topic, 0, 0, 1 << 20, 12);
    req.max_wait_ms = 500;
    req.min_bytes = 1;
    let corr = w.send(T0, 12, &req);
    w.assert_silent();
    assert_eq!(
        w.cluster.poll_timeout(),
        Some(T0 + Duration::from_millis(500))
    );
    // A request behind it on the same connection waits too.
    let md = w.send(T0, 12, &MetadataRequest::default());
    w.assert_silent();
    // Data arrives through another connection: the fetch answers, then the
    // metadata request.
    let producer = w.cluster.accept(1).expect("up");
    let fetcher = std::mem::replace(&mut w.conn, producer);
    let b = batch(&["x"], ProducerStamp::default(), 5);
    let produced = w.send(T0, 11, &produce_req("t", 0, b, -1));
    w.conn = fetcher;
    let resp = w.recv::<FetchRequest>(12, corr);
    assert_eq!(
        values(resp.responses[0].partitions[0].records.as_ref().expect("r")).len(),
        1
    );
    let _ = w.recv::<MetadataRequest>(12, md);
    w.conn = producer;
    let _ = w.recv::<ProduceRequest>(11, produced);
    w.conn = fetcher;
    // Nothing new: the deadline answers, empty.
    req.topics[0].partitions[0].fetch_offset = 1;
    let at = T0 + Duration::from_secs(1);
    let corr = w.send(at, 12, &req);
    w.assert_silent();
    w.cluster.handle_timeout(at + Duration::from_millis(500));
    let resp = w.recv::<FetchRequest>(12, corr);
    assert_eq!(
        resp.responses[0].partitions[0]
            .records
            .as_ref()
            .map(Bytes::len),
        Some(0)
    );
}

#[test]
fn list_offsets_finds_earliest_latest_and_by_timestamp() {
    let mut w = Wire::new(1);
    w.cluster.create_topic("t", 1, 1).expect("t");
    for (i, ts) in [100i64, 200, 300].iter().enumerate() {
        let b = batch(&["a", "b"], idem(1, 0, 2 * i as i32), *ts);
        assert_eq!(produce(&mut w, 11, "t", 0, b).0, ErrorCode::None);
    }
    w.cluster.delete_records("t", 0, 1);
    let ask = |timestamp: i64| ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: "t".into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                timestamp,
                current_leader_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    for v in versions(ApiKey::ListOffsets) {
        let offset = |w: &mut Wire, ts: i64| {
            let r = w.call(v, &ask(ts));
            let p = &r.topics[0].partitions[0];
            assert_eq!(p.error_code, 0, "v{v} ts {ts}");
            (p.offset, p.timestamp)
        };
        assert_eq!(offset(&mut w, -2), (1, -1), "v{v}");
        assert_eq!(offset(&mut w, -1), (6, -1));
        // Records of a batch are 1 ms apart from its base timestamp.
        assert_eq!(offset(&mut w, 201), (3, 201));
        assert_eq!(offset(&mut w, 250), (4, 300));
        assert_eq!(offset(&mut w, 999), (-1, -1));
        if v >= 7 {
            assert_eq!(offset(&mut w, -3), (5, 301));
        }
    }
}

#[test]
fn init_producer_id_hands_out_fresh_ids_and_sends_transactions_to_their_coordinator() {
    let mut w = Wire::new(1);
    let mut seen = Vec::new();
    for v in versions(ApiKey::InitProducerId) {
        let resp = w.call(
            v,
            &InitProducerIdRequest {
                transactional_id: None,
                transaction_timeout_ms: 1000,
                producer_id: -1,
                producer_epoch: -1,
                ..Default::default()
            },
        );
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.producer_epoch, 0);
        assert!(!seen.contains(&resp.producer_id));
        seen.push(resp.producer_id);
    }
    let resp = w.call(
        4,
        &InitProducerIdRequest {
            transactional_id: Some("tx".into()),
            transaction_timeout_ms: 1000,
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        },
    );
    // No FindCoordinator created `__transaction_state` yet.
    assert_eq!(resp.error_code, ErrorCode::NotCoordinator.code());
}

#[test]
fn a_crash_closes_connections_moves_leaders_and_a_restart_takes_them_back() {
    let mut w = Wire::new(2);
    w.cluster
        .create_topic_with("t", vec![vec![1, 2], vec![1]])
        .expect("t");
    assert!(w.cluster.crash(1));
    assert!(!w.cluster.crash(1));
    assert_eq!(
        w.cluster.poll_output(),
        Some(ClusterOutput::Close { conn: w.conn })
    );
    assert_eq!(w.cluster.accept(1), None);
    let p0 = w.cluster.partition("t", 0).expect("p0");
    assert_eq!((p0.leader(), p0.leader_epoch()), (Some(2), 1));
    let p1 = w.cluster.partition("t", 1).expect("p1");
    assert_eq!((p1.leader(), p1.leader_epoch()), (None, 1));
    assert!(w.cluster.restart(1));
    let p1 = w.cluster.partition("t", 1).expect("p1");
    assert_eq!((p1.leader(), p1.leader_epoch()), (Some(1), 2));
    assert_eq!(w.cluster.move_leader("t", 0, None), Some(1));
    assert_eq!(w.cluster.partition("t", 0).expect("p0").leader_epoch(), 2);
    assert_eq!(
        w.cluster.move_leader("t", 1, None),
        None,
        "no other replica"
    );
}
