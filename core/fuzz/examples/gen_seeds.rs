//! Writes the small seed inputs of the fuzz targets to `seeds/<target>/`.
//!
//! ```text
//! cd core/fuzz && cargo +nightly run --example gen_seeds
//! ```
//!
//! Deterministic: running it again rewrites the same files. Each seed is a
//! few hundred bytes at most; the fuzzer grows its own corpus (in the
//! gitignored `corpus/`) from them.

use std::fs;
use std::path::Path;

use sansa_core::compression::{compress, compress_snappy_java, Compression};
use sansa_core::group::balancer::{
    protocol, JoinSubscription, MemberAssignment, PartitionsByTopic,
};
use sansa_core::record::{
    crc32_ieee, BatchBuilder, BatchOptions, BatchStamp, ControlRecord, ProducerStamp,
};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("create seed dir");
        fs::write(dir.join(name), bytes).expect("write seed");
    };

    // read_batches: v2 batches of every codec, a control batch, legacy v0,
    // v1 and a gzip v1 wrapper, and all of them back to back.
    let mut all = Vec::new();
    for codec in Compression::ALL {
        let b = v2_batch(codec);
        write("read_batches", &format!("v2_{codec}"), &b);
        if codec == Compression::None || codec == Compression::Lz4 {
            all.extend_from_slice(&b);
        }
    }
    let stamp = BatchStamp {
        base_offset: 7,
        producer: ProducerStamp {
            producer_id: 42,
            producer_epoch: 1,
            base_sequence: -1,
        },
        ..BatchStamp::default()
    };
    let control = ControlRecord::end_txn(true, 5)
        .to_batch(1_700_000_000_100, &stamp)
        .expect("control batch");
    write("read_batches", "v2_control", control.as_bytes());
    all.extend_from_slice(control.as_bytes());
    let v0 = legacy(0, 3, 0, -1, Some(b"k0"), Some(b"value0"));
    let v1 = legacy(1, 4, 0, 1_700_000_000_000, None, Some(b"value1"));
    write("read_batches", "legacy_v0", &v0);
    write("read_batches", "legacy_v1", &v1);
    let inner = [
        legacy(1, 0, 0, 1_700_000_000_000, Some(b"a"), Some(b"x")),
        legacy(1, 1, 0, 1_700_000_000_001, Some(b"b"), None),
    ]
    .concat();
    let mut gz = Vec::new();
    compress(Compression::Gzip, &inner, &mut gz).expect("gzip");
    let wrapper = legacy(1, 11, 1, 1_700_000_000_001, None, Some(&gz));
    write("read_batches", "legacy_v1_gzip_wrapper", &wrapper);
    all.extend_from_slice(&v0);
    all.extend_from_slice(&v1);
    all.extend_from_slice(&wrapper);
    // Cut inside the last batch, as a broker does at max_bytes (KIP-74).
    all.extend_from_slice(&v2_batch(Compression::None)[..30]);
    write("read_batches", "mixed_with_partial_tail", &all);

    // decompress: selector byte (codec in the low bits, limit index 3),
    // then a stream in that codec.
    let text = b"sansa sansa sansa: the sans-IO core of a Kafka client, sansa sansa";
    for codec in Compression::ALL {
        let mut seed = vec![codec.id() | 3 << 3];
        compress(codec, text, &mut seed).expect("compress");
        write("decompress", &format!("{codec}"), &seed);
    }
    let mut java = vec![Compression::Snappy.id() | 3 << 3];
    compress_snappy_java(text, &mut java).expect("snappy-java");
    write("decompress", "snappy_java", &java);

    // frame_reader: max frame 64, chunk sizes 1, 3, 7, 0; three frames
    // (one empty) then a partial one.
    let mut seed = vec![64, 4, 1, 3, 7, 0];
    for body in [&b"hello"[..], b"", b"kafka frame"] {
        seed.extend_from_slice(&(body.len() as i32).to_be_bytes());
        seed.extend_from_slice(body);
    }
    seed.extend_from_slice(&[0, 0, 0, 9, b'x']);
    write("frame_reader", "frames_and_partial", &seed);
    // An oversized and a negative size prefix.
    write("frame_reader", "too_large", &[16, 0, 0, 0, 0, 17, 1, 2]);
    write(
        "frame_reader",
        "negative",
        &[16, 1, 2, 0xff, 0xff, 0xff, 0xfe],
    );

    group_protocol_seeds(&write);
}

/// group_protocol: mode byte, then a subscription (cooperative, with owned
/// partitions), an assignment, sticky user data, and three members' join
/// metadata (length byte before each) for the leader mode.
fn group_protocol_seeds(write: &dyn Fn(&str, &str, &[u8])) {
    let topics = ["a".to_string(), "orders".to_string()];
    let owned: PartitionsByTopic = [
        ("a".to_string(), vec![0, 2]),
        ("orders".to_string(), vec![1]),
    ]
    .into_iter()
    .collect();
    let join = JoinSubscription {
        topics: &topics,
        owned: &owned,
        generation: 4,
        rack: Some("r1"),
    };
    let sub =
        protocol::encode_subscription(&join.cooperative_subscription(None)).expect("subscription");
    write(
        "group_protocol",
        "subscription",
        &[&[0u8][..], &sub].concat(),
    );
    let assignment = MemberAssignment {
        partitions: owned.clone(),
        user_data: None,
    };
    let assignment = protocol::encode_assignment(&assignment).expect("assignment");
    write(
        "group_protocol",
        "assignment",
        &[&[1u8][..], &assignment].concat(),
    );
    let sticky = protocol::encode_sticky_user_data(&owned, 4).expect("sticky user data");
    write(
        "group_protocol",
        "sticky_user_data",
        &[&[2u8][..], &sticky].concat(),
    );

    let mut leader = vec![3u8];
    let sticky_sub = join.eager_subscription(Some(sticky));
    let members = [
        protocol::encode_subscription(&join.cooperative_subscription(None)),
        protocol::encode_subscription(&sticky_sub),
        protocol::encode_subscription_at(&join.cooperative_subscription(None), 0),
    ];
    for metadata in members {
        let metadata = metadata.expect("member metadata");
        leader.push(u8::try_from(metadata.len()).expect("small metadata"));
        leader.extend_from_slice(&metadata);
    }
    write("group_protocol", "leader_three_members", &leader);
}

/// A small v2 batch: three records, headers, a null key and a tombstone.
fn v2_batch(codec: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new(BatchOptions {
        compression: codec,
        ..BatchOptions::default()
    });
    let t = 1_700_000_000_000;
    b.append(
        t,
        Some(b"key-1"),
        Some(b"value one"),
        &[("trace", Some("abc"))],
    )
    .expect("append");
    b.append::<(&str, Option<&str>)>(t + 5, None, Some(b"value two"), &[])
        .expect("append");
    b.append(
        t + 2,
        Some(b"key-1"),
        None,
        &[("h", None::<&str>), ("h", Some("2"))],
    )
    .expect("append");
    let stamp = BatchStamp {
        base_offset: 100,
        partition_leader_epoch: 3,
        producer: ProducerStamp {
            producer_id: 9,
            producer_epoch: 0,
            base_sequence: 0,
        },
        log_append_time: None,
    };
    b.seal(&stamp).expect("seal").as_bytes().to_vec()
}

/// One legacy message (`LegacyRecord`), CRC-32 and all.
fn legacy(
    magic: u8,
    offset: i64,
    attributes: u8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Vec<u8> {
    let mut body = vec![magic, attributes];
    if magic == 1 {
        body.extend_from_slice(&timestamp.to_be_bytes());
    }
    for field in [key, value] {
        match field {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(f) => {
                body.extend_from_slice(&(f.len() as i32).to_be_bytes());
                body.extend_from_slice(f);
            }
        }
    }
    let mut m = offset.to_be_bytes().to_vec();
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(&crc32_ieee(&body).to_be_bytes());
    m.extend_from_slice(&body);
    m
}
