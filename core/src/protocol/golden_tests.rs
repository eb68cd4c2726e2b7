//! Byte-exact golden encodings, written out by hand from the layouts of
//! Kafka's protocol guide and the JSON specs, one commented line per
//! field, so that a reader can check them against the guide without
//! trusting either generator. The oracle tests (`oracle_tests.rs`) show
//! sansa agrees with another implementation; these show both agree with
//! the guide.
//!
//! Reminders used below: classic strings are an int16 length then UTF-8
//! bytes (-1 is null); classic bytes and arrays an int32 length (-1 is
//! null); in flexible versions (KIP-482) strings, bytes, records and arrays
//! have an unsigned varint length plus one (0 is null), and every struct
//! ends with a tagged-field section, a varint count (usually 0) then each
//! field as varint tag, varint size and data. Request header v2 keeps the
//! client id a classic int16-length string.

use bytes::{Bytes, BytesMut};

use super::header::{decode_request, encode_request};
use super::messages::{
    api_versions_request::ApiVersionsRequest,
    fetch_response::{AbortedTransaction, FetchResponse, FetchableTopicResponse, PartitionData},
    metadata_request::{MetadataRequest, MetadataRequestTopic},
    offset_commit_request::{
        OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    },
    produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData},
    RequestBody,
};
use super::wire::{RawTaggedField, Uuid};
use super::Codec;

/// The bytes of hex pieces, each a field; spaces are ignored.
fn hex_bytes(pieces: &[&str]) -> Vec<u8> {
    let digits: Vec<u8> = pieces
        .concat()
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).expect("ascii");
            u8::from_str_radix(s, 16).expect("hex digit")
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x} ")).collect()
}

/// Encodes `m` at `version`, compares with `expected`, and reads
/// `expected` back to `m`.
fn golden<M: Codec + PartialEq + std::fmt::Debug>(m: &M, version: i16, expected: &[&str]) {
    let expected = hex_bytes(expected);
    let mut buf = BytesMut::new();
    if let Err(e) = m.encode(&mut buf, version) {
        panic!("v{version}: encode failed: {e}");
    }
    assert_eq!(hex(&buf), hex(&expected), "v{version}: bytes (left: sansa)");
    match M::decode_exact(Bytes::from(expected), version) {
        Ok(back) => assert_eq!(&back, m, "v{version}: decoded value"),
        Err(e) => panic!("v{version}: decode failed: {e}"),
    }
}

#[test]
fn api_versions_request_v3_frame_matches_the_guide() {
    let body = ApiVersionsRequest {
        client_software_name: "sansa".into(),
        client_software_version: "0.1.0".into(),
        // An unknown tagged field, to pin the section's layout and a
        // two-byte varint tag.
        unknown_tagged_fields: vec![RawTaggedField {
            tag: 300,
            data: Bytes::from_static(b"xy"),
        }],
    };
    let expected = hex_bytes(&[
        // Request header v2 (ApiVersions v3 is flexible).
        "00 12",                         // request_api_key: 18 (ApiVersions)
        "00 03",                         // request_api_version: 3
        "01 02 03 04",                   // correlation_id: 0x01020304
        "00 0a",                         // client_id: classic int16 length 10
        "73 61 6e 73 61 2d 74 65 73 74", // "sansa-test"
        "00",                            // header tagged fields: none
        // ApiVersionsRequest v3 body.
        "06 73 61 6e 73 61", // client_software_name: compact length 5+1, "sansa"
        "06 30 2e 31 2e 30", // client_software_version: 5+1, "0.1.0"
        "01",                // tagged fields: one
        "ac 02",             // tag 300 = 0b10_0101100: 0x2c|0x80, then 300>>7 = 2
        "02 78 79",          // size 2, "xy"
    ]);
    let mut buf = BytesMut::new();
    assert!(encode_request(&mut buf, 3, 0x0102_0304, Some("sansa-test"), &body).is_ok());
    assert_eq!(hex(&buf), hex(&expected));
    let (header, decoded) = decode_request(Bytes::from(expected)).expect("decodes");
    assert_eq!(header.correlation_id, 0x0102_0304);
    assert_eq!(header.client_id.as_deref(), Some("sansa-test"));
    assert_eq!(decoded, RequestBody::ApiVersions(body));
}

#[test]
fn metadata_request_v1_with_two_topics_matches_the_guide() {
    let two = MetadataRequest {
        topics: Some(vec![
            MetadataRequestTopic {
                name: Some("foo".into()),
                ..Default::default()
            },
            MetadataRequestTopic {
                name: Some("bar".into()),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    golden(
        &two,
        1,
        &[
            "00 00 00 02",    // topics: int32 count 2
            "00 03 66 6f 6f", // name: int16 length 3, "foo"
            "00 03 62 61 72", // name: "bar"
                              // v1 has no more fields: AllowAutoTopicCreation is v4+.
        ],
    );
    // v1 made the array nullable: null asks for every topic.
    let all = MetadataRequest {
        topics: None,
        ..Default::default()
    };
    golden(&all, 1, &["ff ff ff ff"]); // topics: int32 -1, null
}

#[test]
fn metadata_request_v12_with_two_topics_matches_the_guide() {
    let id = Uuid::from_u64_pair(0x0011_2233_4455_6677, 0x8899_aabb_ccdd_eeff);
    let m = MetadataRequest {
        topics: Some(vec![
            // One topic by name (zero id), one by id (null name, KIP-516).
            MetadataRequestTopic {
                topic_id: Uuid::ZERO,
                name: Some("foo".into()),
                ..Default::default()
            },
            MetadataRequestTopic {
                topic_id: id,
                name: None,
                ..Default::default()
            },
        ]),
        allow_auto_topic_creation: false,
        include_topic_authorized_operations: true,
        ..Default::default()
    };
    golden(
        &m,
        12,
        &[
            "03",                                  // topics: compact count 2+1
            "00000000 00000000 00000000 00000000", // topic_id: zero
            "04 66 6f 6f",                         // name: compact 3+1, "foo"
            "00",                                  // topic tagged fields
            "00112233 44556677 8899aabb ccddeeff", // topic_id
            "00",                                  // name: compact null
            "00",                                  // topic tagged fields
            "00",                                  // allow_auto_topic_creation: false
            // IncludeClusterAuthorizedOperations is v8-10 only: absent.
            "01", // include_topic_authorized_operations: true
            "00", // tagged fields
        ],
    );
}

#[test]
fn produce_request_v3_with_a_records_blob_matches_the_guide() {
    let m = ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "logs".into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef])),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    golden(
        &m,
        3,
        &[
            "ff ff",             // transactional_id: int16 -1, null (v3+)
            "ff ff",             // acks: -1, all in-sync replicas
            "00 00 75 30",       // timeout_ms: 30000
            "00 00 00 01",       // topic_data: int32 count 1
            "00 04 6c 6f 67 73", // name: "logs"
            "00 00 00 01",       // partition_data: count 1
            "00 00 00 00",       // index: 0
            "00 00 00 04",       // records: int32 length 4
            "de ad be ef",       // the blob, opaque at this layer
        ],
    );
}

#[test]
fn produce_request_v9_to_v12_with_a_records_blob_matches_the_guide() {
    let m = ProduceRequest {
        transactional_id: Some("tx".into()),
        acks: 1,
        timeout_ms: 1_000,
        topic_data: vec![TopicProduceData {
            name: "logs".into(),
            partition_data: vec![
                PartitionProduceData {
                    index: 0,
                    records: Some(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef])),
                    ..Default::default()
                },
                PartitionProduceData {
                    index: 1,
                    records: None,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    // v10 to v12 change only the response (v12, Kafka 4.0: the same
    // schema, sent only in transactions v2, KIP-890 part 2).
    for version in [9, 10, 11, 12] {
        golden(&m, version, PRODUCE_V9_TO_V12);
    }
}

/// [`produce_request_v9_to_v12_with_a_records_blob_matches_the_guide`]'s bytes.
const PRODUCE_V9_TO_V12: &[&str] = &[
    "03 74 78",       // transactional_id: compact 2+1, "tx"
    "00 01",          // acks: 1, leader only
    "00 00 03 e8",    // timeout_ms: 1000
    "02",             // topic_data: compact count 1+1
    "05 6c 6f 67 73", // name: compact 4+1, "logs"
    "03",             // partition_data: compact count 2+1
    "00 00 00 00",    // index: 0
    "05 de ad be ef", // records: compact 4+1, the blob
    "00",             // partition tagged fields
    "00 00 00 01",    // index: 1
    "00",             // records: compact null
    "00",             // partition tagged fields
    "00",             // topic tagged fields
    "00",             // request tagged fields
];

#[test]
fn fetch_response_v4_with_one_partition_matches_the_guide() {
    let m = FetchResponse {
        throttle_time_ms: 100,
        responses: vec![FetchableTopicResponse {
            topic: "logs".into(),
            partitions: vec![PartitionData {
                partition_index: 2,
                error_code: 0,
                high_watermark: 256,
                last_stable_offset: 255,
                aborted_transactions: Some(vec![AbortedTransaction {
                    producer_id: 7,
                    first_offset: 200,
                    ..Default::default()
                }]),
                records: Some(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef])),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    golden(
        &m,
        4,
        &[
            "00 00 00 64", // throttle_time_ms: 100 (v1+)
            // ErrorCode and SessionId are v7+ (fetch sessions, KIP-227).
            "00 00 00 01",             // responses: int32 count 1
            "00 04 6c 6f 67 73",       // topic: "logs" (names until v12, ids from v13)
            "00 00 00 01",             // partitions: count 1
            "00 00 00 02",             // partition_index: 2
            "00 00",                   // error_code: 0
            "00 00 00 00 00 00 01 00", // high_watermark: 256
            "00 00 00 00 00 00 00 ff", // last_stable_offset: 255 (v4+)
            // LogStartOffset is v5+.
            "00 00 00 01",             // aborted_transactions: count 1 (v4+)
            "00 00 00 00 00 00 00 07", // producer_id: 7
            "00 00 00 00 00 00 00 c8", // first_offset: 200
            // PreferredReadReplica is v11+.
            "00 00 00 04 de ad be ef", // records: int32 length 4, the blob
        ],
    );
}

#[test]
fn offset_commit_request_v2_matches_the_guide() {
    let m = OffsetCommitRequest {
        group_id: "grp".into(),
        generation_id_or_member_epoch: 5,
        member_id: "m-1".into(),
        retention_time_ms: -1,
        topics: vec![OffsetCommitRequestTopic {
            name: "logs".into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: 42,
                committed_metadata: Some("md".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    golden(
        &m,
        2,
        &[
            "00 03 67 72 70",          // group_id: "grp"
            "00 00 00 05",             // generation_id: 5 (v1+)
            "00 03 6d 2d 31",          // member_id: "m-1" (v1+)
            "ff ff ff ff ff ff ff ff", // retention_time_ms: -1, broker default (v2-4)
            "00 00 00 01",             // topics: count 1
            "00 04 6c 6f 67 73",       // name: "logs"
            "00 00 00 01",             // partitions: count 1
            "00 00 00 00",             // partition_index: 0
            "00 00 00 00 00 00 00 2a", // committed_offset: 42
            // CommittedLeaderEpoch is v6+; CommitTimestamp was v1 only.
            "00 02 6d 64", // committed_metadata: "md"
        ],
    );
}
