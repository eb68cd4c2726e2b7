//! librdkafka's own request bytes, read by sansa-core, and sansa-core's
//! response bytes, accepted by librdkafka.
//!
//! A tiny fake broker (std::net, one thread per connection) stands where a
//! broker would. librdkafka, as a producer, connects and sends ApiVersions;
//! we decode every frame with `sansa_core::protocol::header::decode_request`
//! and answer ApiVersions, Metadata and Produce with responses encoded by
//! sansa-core. librdkafka moving on to the next request proves it accepted
//! the previous answer; its delivery report carrying the offset we chose
//! proves it read our ProduceResponse.
//!
//! Every frame librdkafka sent must also re-encode, byte for byte, to what
//! it sent: the codec neither loses nor invents anything.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sansa_core::protocol::header::{decode_request, encode_request_body};
use sansa_core::protocol::messages::api_versions_response::ApiVersion;
use sansa_core::protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use sansa_core::protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use sansa_core::protocol::messages::{
    ApiVersionsResponse, MetadataResponse, ProduceRequest, ProduceResponse,
};
use sansa_core::protocol::{ApiKey, Codec, RequestBody, RequestHeader, ResponseHeader, Uuid};
use sansa_tests::peers::librdkafka::{self, Delivered, TestRecord};
use sansa_tests::peers::PeerError;

const CLIENT_ID: &str = "sansa-golden";
const TOPIC: &str = "golden";
const NODE_ID: i32 = 1;
/// The offset our ProduceResponse assigns, so the delivery report shows
/// librdkafka read it.
const BASE_OFFSET: i64 = 42;
/// The APIs the fake broker claims. Fetch is never sent by a producer, but
/// librdkafka picks the record format from the broker's features, and
/// "MsgVer2" needs Produce v3+ *and* Fetch v4+ (rdkafka_feature.c); without
/// Fetch it falls back to legacy v0 message sets (see the second test).
const APIS: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::Fetch,
];

/// One request frame librdkafka sent, as read off the socket.
#[derive(Debug)]
struct Captured {
    connection: usize,
    /// Header and body, without the size prefix.
    frame: Bytes,
    header: RequestHeader,
    body: RequestBody,
}

/// A listener on 127.0.0.1 that decodes each request, reports it, and
/// answers the three APIs it claims with sansa-encoded responses.
struct FakeBroker {
    port: u16,
    captured: Receiver<Result<Captured, String>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeBroker {
    fn start(apis: &'static [ApiKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking accept");
        let (tx, captured) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let acceptor = std::thread::spawn(move || {
            let mut connection = 0;
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let tx = tx.clone();
                        let id = connection;
                        connection += 1;
                        std::thread::spawn(move || serve(stream, id, port, apis, &tx));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeBroker {
            port,
            captured,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// The next request, or a panic saying what we were waiting for.
    fn next(&self, waiting_for: &str, deadline: Instant) -> Captured {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.captured.recv_timeout(left) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!("while waiting for {waiting_for}: {e}"),
            Err(_) => panic!("librdkafka sent no {waiting_for} in time"),
        }
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads size-prefixed frames until the peer closes, decoding and
/// answering each.
fn serve(
    mut stream: TcpStream,
    connection: usize,
    port: u16,
    apis: &[ApiKey],
    tx: &Sender<Result<Captured, String>>,
) {
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).is_err() {
            return; // librdkafka closed the connection
        }
        let size = i32::from_be_bytes(size);
        let Ok(len) = usize::try_from(size) else {
            let _ = tx.send(Err(format!("negative frame size {size}")));
            return;
        };
        if len > 16 << 20 {
            let _ = tx.send(Err(format!("frame of {len} bytes")));
            return;
        }
        let mut frame = vec![0u8; len];
        if stream.read_exact(&mut frame).is_err() {
            let _ = tx.send(Err(format!("connection closed inside a {len}-byte frame")));
            return;
        }
        let frame = Bytes::from(frame);
        let (header, body) = match decode_request(frame.clone()) {
            Ok(decoded) => decoded,
            Err(e) => {
                let _ = tx.send(Err(format!(
                    "sansa-core cannot decode librdkafka's frame {frame:02x?}: {e}"
                )));
                return;
            }
        };
        let reply = answer(&header, &body, port, apis);
        if tx
            .send(Ok(Captured {
                connection,
                frame,
                header,
                body,
            }))
            .is_err()
        {
            return; // the test is over
        }
        match reply {
            Ok(Some(reply)) => {
                if stream.write_all(&reply).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// A size-prefixed response frame encoded by sansa-core, or `None` for an
/// API the fake broker does not claim.
fn answer(
    header: &RequestHeader,
    body: &RequestBody,
    port: u16,
    apis: &[ApiKey],
) -> Result<Option<Bytes>, String> {
    let version = header.request_api_version;
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    let api = header.api_key().ok_or("unknown api key")?;
    let response_header = ResponseHeader {
        correlation_id: header.correlation_id,
        ..Default::default()
    };
    response_header
        .encode(&mut buf, api.response_header_version(version))
        .map_err(|e| format!("encoding the response header: {e}"))?;
    let encoded = match body {
        RequestBody::ApiVersions(_) => api_versions(apis).encode(&mut buf, version),
        RequestBody::Metadata(req) => {
            let wanted: Vec<String> = match &req.topics {
                None => vec![TOPIC.to_owned()],
                Some(topics) => topics.iter().filter_map(|t| t.name.clone()).collect(),
            };
            metadata(port, &wanted).encode(&mut buf, version)
        }
        RequestBody::Produce(req) => produce(req).encode(&mut buf, version),
        _ => return Ok(None),
    };
    encoded.map_err(|e| format!("encoding the {api:?} v{version} response: {e}"))?;
    let size = i32::try_from(buf.len() - 4).map_err(|e| e.to_string())?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(Some(buf.freeze()))
}

/// We claim, for each of `apis`, exactly the versions sansa-core's codecs
/// cover.
fn api_versions(apis: &[ApiKey]) -> ApiVersionsResponse {
    ApiVersionsResponse {
        api_keys: apis
            .iter()
            .map(|api| ApiVersion {
                api_key: api.key(),
                min_version: api.valid_versions().min,
                max_version: api.valid_versions().max,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// One broker (us) leading partition 0 of every topic asked about.
fn metadata(port: u16, topics: &[String]) -> MetadataResponse {
    MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: NODE_ID,
            host: "127.0.0.1".into(),
            port: i32::from(port),
            ..Default::default()
        }],
        cluster_id: Some("sansa-golden-cluster".into()),
        controller_id: NODE_ID,
        topics: topics
            .iter()
            .map(|name| MetadataResponseTopic {
                name: Some(name.clone()),
                topic_id: Uuid([7; 16]),
                partitions: vec![MetadataResponsePartition {
                    partition_index: 0,
                    leader_id: NODE_ID,
                    leader_epoch: 0,
                    replica_nodes: vec![NODE_ID],
                    isr_nodes: vec![NODE_ID],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Success for every partition, at [`BASE_OFFSET`].
fn produce(req: &ProduceRequest) -> ProduceResponse {
    ProduceResponse {
        responses: req
            .topic_data
            .iter()
            .map(|t| TopicProduceResponse {
                name: t.name.clone(),
                partition_responses: t
                    .partition_data
                    .iter()
                    .map(|p| PartitionProduceResponse {
                        index: p.index,
                        base_offset: BASE_OFFSET,
                        log_append_time_ms: -1,
                        log_start_offset: 0,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// sansa-core re-encodes a captured frame to exactly librdkafka's bytes.
fn assert_reencodes_exactly(c: &Captured) {
    let mut again = BytesMut::new();
    encode_request_body(
        &mut again,
        c.header.request_api_version,
        c.header.correlation_id,
        c.header.client_id.as_deref(),
        &c.body,
    )
    .unwrap_or_else(|e| panic!("re-encoding {:?}: {e}", c.header));
    assert_eq!(
        &again[..],
        &c.frame[..],
        "sansa-core's encoding of {:?} v{} differs from librdkafka's bytes",
        c.body.api_key(),
        c.header.request_api_version
    );
}

/// The request header v2 (flexible) of `api` `version`, by hand.
fn golden_header_v2(api: i16, version: i16, correlation_id: i32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&api.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    // The client id stays a classic int16-length string in header v2.
    out.extend_from_slice(&[0, 12]);
    out.extend_from_slice(CLIENT_ID.as_bytes());
    out.push(0); // no header tagged fields
    out
}

/// The ApiVersions v3 request librdkafka sends, written out by hand (not
/// with sansa-core, so the check does not grade itself): compact strings
/// are a varint of length + 1, then the bytes.
fn golden_api_versions_v3(correlation_id: i32, librdkafka_version: &str) -> Vec<u8> {
    let mut out = golden_header_v2(18, 3, correlation_id);
    out.push(11);
    out.extend_from_slice(b"librdkafka");
    out.push(u8::try_from(librdkafka_version.len() + 1).unwrap());
    out.extend_from_slice(librdkafka_version.as_bytes());
    out.push(0); // no tagged fields
    out
}

/// The Metadata v12 request librdkafka sends for one topic, by hand.
fn golden_metadata_v12(correlation_id: i32) -> Vec<u8> {
    let mut out = golden_header_v2(3, 12, correlation_id);
    out.push(2); // compact array of 1 topic
    out.extend_from_slice(&[0; 16]); // topic id: none, asking by name
    out.push(7);
    out.extend_from_slice(b"golden");
    out.push(0); // topic tagged fields
    out.push(1); // allow_auto_topic_creation: librdkafka's producer default
    out.push(0); // include_topic_authorized_operations
    out.push(0); // tagged fields
    out
}

/// What librdkafka sent while producing one record through a fake broker
/// that claims `apis`.
struct Session {
    api_versions: Captured,
    metadata: Vec<Captured>,
    produce: Captured,
    delivered: Result<Vec<Delivered>, PeerError>,
}

/// Produces one keyed record with one header to [`TOPIC`] through a fresh
/// fake broker, checking on the way that every frame is ApiVersions,
/// Metadata or Produce, carries our client id and re-encodes exactly.
fn produce_one_record_through(apis: &'static [ApiKey]) -> Session {
    let broker = FakeBroker::start(apis);
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    let producer = librdkafka::producer(
        &bootstrap,
        &[
            ("client.id", CLIENT_ID),
            ("linger.ms", "0"),
            ("enable.idempotence", "false"),
            ("compression.type", "none"),
            ("message.timeout.ms", "10000"),
        ],
    )
    .expect("librdkafka producer");
    let record = TestRecord {
        key: Some(b"golden-key".to_vec()),
        value: b"golden-value".to_vec(),
        headers: vec![("h".into(), b"v".to_vec())],
        partition: None,
    };
    // The delivery report comes back once our ProduceResponse is read.
    let delivery =
        std::thread::spawn(move || librdkafka::produce_blocking(&producer, TOPIC, &[record]));
    let deadline = Instant::now() + Duration::from_secs(15);

    let api_versions = broker.next("ApiVersions", deadline);
    assert_eq!(api_versions.connection, 0);
    assert_eq!(
        api_versions.header.api_key(),
        Some(ApiKey::ApiVersions),
        "librdkafka's first request is ApiVersions"
    );
    let mut metadata = Vec::new();
    let produce = loop {
        let c = broker.next("Metadata, then Produce", deadline);
        match c.body {
            RequestBody::ApiVersions(_) | RequestBody::Metadata(_) | RequestBody::Produce(_) => {}
            ref other => panic!("unexpected request {:?}", other.api_key()),
        }
        for seen in [&api_versions, &c] {
            assert_eq!(seen.header.client_id.as_deref(), Some(CLIENT_ID));
            assert!(
                apis.contains(&seen.body.api_key())
                    && seen
                        .body
                        .api_key()
                        .valid_versions()
                        .contains(seen.header.request_api_version),
                "{:?} v{} is outside what we advertised",
                seen.body.api_key(),
                seen.header.request_api_version
            );
            assert_reencodes_exactly(seen);
        }
        match c.body {
            RequestBody::Produce(_) => break c,
            RequestBody::Metadata(_) => metadata.push(c),
            _ => {}
        }
    };
    let delivered = delivery.join().expect("producer thread");
    Session {
        api_versions,
        metadata,
        produce,
        delivered,
    }
}

/// The records field of the Produce request's only partition, after
/// checking the request is for partition 0 of [`TOPIC`] with acks=all.
fn produced_records(produce: &Captured) -> Bytes {
    let RequestBody::Produce(req) = &produce.body else {
        panic!("not a Produce: {:?}", produce.body)
    };
    assert_eq!(req.acks, -1, "acks=all");
    assert_eq!(req.transactional_id, None);
    assert_eq!(req.topic_data.len(), 1);
    assert_eq!(req.topic_data[0].name, TOPIC);
    let partitions = &req.topic_data[0].partition_data;
    assert_eq!(partitions.len(), 1);
    assert_eq!(partitions[0].index, 0);
    partitions[0].records.clone().expect("records are present")
}

#[test]
fn librdkafka_requests_decode_and_sansa_responses_are_accepted() {
    let session = produce_one_record_through(APIS);

    // 1. ApiVersions v3 (KIP-511) names the client software.
    let first = &session.api_versions;
    assert_eq!(first.header.request_api_version, 3);
    let RequestBody::ApiVersions(req) = &first.body else {
        unreachable!("checked by produce_one_record_through")
    };
    let (_, rd_version) = rdkafka::util::get_rdkafka_version();
    assert_eq!(req.client_software_name, "librdkafka");
    assert_eq!(req.client_software_version, rd_version);
    assert_eq!(
        first.frame,
        golden_api_versions_v3(first.header.correlation_id, &rd_version),
        "librdkafka's ApiVersions bytes"
    );

    // 2. Our ApiVersions answer was accepted: librdkafka asked for the
    // topic's Metadata at the highest version both sides speak.
    let topic_metadata = session
        .metadata
        .iter()
        .find(|m| match &m.body {
            RequestBody::Metadata(r) => r
                .topics
                .as_ref()
                .is_some_and(|t| t.iter().any(|t| t.name.as_deref() == Some(TOPIC))),
            _ => false,
        })
        .unwrap_or_else(|| panic!("no Metadata request named topic {TOPIC}"));
    assert_eq!(
        topic_metadata.header.request_api_version, 12,
        "librdkafka 2.12 and sansa-core both top out at Metadata v12"
    );
    assert_eq!(
        topic_metadata.frame,
        golden_metadata_v12(topic_metadata.header.correlation_id),
        "librdkafka's Metadata bytes"
    );

    // 3. Our Metadata answer was accepted: the Produce went to the leader we
    // named, for partition 0, with one v2 record batch (layout: baseOffset
    // 8, batchLength 4, partitionLeaderEpoch 4, magic 1, crc 4, then the
    // CRC-covered rest; the record count sits at 57..61).
    let records = produced_records(&session.produce);
    assert!(
        records.len() >= 61,
        "shorter than a v2 batch header: {records:02x?}"
    );
    assert_eq!(records[16], 2, "magic byte of a v2 record batch");
    let batch_length = i32::from_be_bytes(records[8..12].try_into().unwrap());
    assert_eq!(
        usize::try_from(batch_length).unwrap() + 12,
        records.len(),
        "one batch fills the records field"
    );
    let crc = u32::from_be_bytes(records[17..21].try_into().unwrap());
    assert_eq!(crc32c::crc32c(&records[21..]), crc, "CRC-32C of the batch");
    let count = i32::from_be_bytes(records[57..61].try_into().unwrap());
    assert_eq!(count, 1, "one record in the batch");

    // 4. Our ProduceResponse was accepted: the delivery report carries the
    // offset we chose.
    let delivered = session
        .delivered
        .expect("librdkafka reports the record delivered");
    assert_eq!(
        (delivered[0].partition, delivered[0].offset),
        (0, BASE_OFFSET)
    );
}

/// librdkafka chooses the record format from what the broker claims for
/// *Fetch*, even when it only produces: a broker (say, sansa's simulator
/// behind its TCP front) that leaves Fetch out of ApiVersions gets legacy
/// magic-0 message sets, headers silently dropped, inside a modern Produce.
#[test]
fn librdkafka_sends_legacy_message_sets_to_a_broker_without_fetch() {
    let session =
        produce_one_record_through(&[ApiKey::ApiVersions, ApiKey::Metadata, ApiKey::Produce]);
    assert!(session.produce.header.request_api_version >= 3);
    let records = produced_records(&session.produce);
    // A v0 message set: offset 8, message size 4, crc 4, magic at 16.
    assert_eq!(records[16], 0, "magic byte: {records:02x?}");
    let size = i32::from_be_bytes(records[8..12].try_into().unwrap());
    assert_eq!(usize::try_from(size).unwrap() + 12, records.len());
    // The message is offset..magic, attributes, key and value, no more:
    // v0 has no headers, so librdkafka dropped ours.
    assert_eq!(
        usize::try_from(size).unwrap(),
        4 + 1 + 1 + (4 + b"golden-key".len()) + (4 + b"golden-value".len()),
        "one v0 message holding only key and value"
    );
    let delivered = session
        .delivered
        .expect("librdkafka reports the record delivered");
    assert_eq!(delivered[0].offset, BASE_OFFSET);
}
