//! Tests of the whole module: golden bytes, round trips for every codec,
//! re-stamping, corruption and truncation at every byte, hostile lengths,
//! legacy message sets, control records, and a cross-check against the
//! independent `kafka-protocol` codec in both directions.

// A test that unwraps fails loudly at the line that broke, which is all a
// message would say.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::compression::{compress, Compression};

const ALL_CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// A record as a test writes it and expects it back.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn build(recs: &[Rec], opts: BatchOptions, stamp: &BatchStamp) -> SealedBatch {
    let mut b = BatchBuilder::new(opts);
    for r in recs {
        b.append(
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        )
        .expect("append");
    }
    b.seal(stamp).expect("seal")
}

/// Reads every record of every batch, failing on any error.
fn read_all(data: Bytes) -> Vec<(Batch, Vec<Record>)> {
    let mut out = Vec::new();
    for batch in Batches::new(data) {
        let batch = batch.expect("batch");
        batch.verify_crc().expect("crc");
        let records: Vec<Record> = batch
            .records()
            .expect("records")
            .collect::<Result<_, _>>()
            .expect("record");
        out.push((batch, records));
    }
    out
}

fn as_rec(r: &Record) -> Rec {
    Rec {
        timestamp: r.timestamp,
        key: r.key.as_ref().map(|k| k.to_vec()),
        value: r.value.as_ref().map(|v| v.to_vec()),
        headers: r
            .headers
            .iter()
            .map(|h| {
                (
                    h.key_str().expect("utf8").to_owned(),
                    h.value.map(|v| v.to_vec()),
                )
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// Golden bytes
// ---------------------------------------------------------------------------

/// Two records, derived field by field from `DefaultRecordBatch` and
/// `DefaultRecord` (all integers big-endian, varints zigzag):
///
/// record 0: ts 1000, key "k", value "v", no headers
///   body = attributes 00 | ts delta 0 -> 00 | offset delta 0 -> 00
///        | key len 1 -> 02, 6b | value len 1 -> 02, 76 | 0 headers -> 00
///   = 8 bytes, so the length varint is zigzag(8) = 0x10: 9 bytes in all.
/// record 1: ts 1005, null key, value "vv", headers ("h","x"), ("h", null)
///   body = 00 | ts delta 5 -> 0a | offset delta 1 -> 02 | null key -> 01
///        | 04 76 76 | 2 headers -> 04 | 02 68 02 78 | 02 68 01
///   = 15 bytes, length zigzag(15) = 0x1e: 16 bytes in all.
/// header: base offset 0, length 49 + 25 = 74 (0x4a), leader epoch -1,
///   magic 2, crc, attributes 0, last offset delta 1, base ts 1000 (0x3e8),
///   max ts 1005 (0x3ed), producer id 7, epoch 3, base sequence 42, count 2.
/// The CRC-32C over attributes..end, 0xf354ec9b, was computed by a bitwise
/// Castagnoli implementation written apart from this crate.
const GOLDEN: &str = "\
    0000000000000000 0000004a ffffffff 02 f354ec9b \
    0000 00000001 00000000000003e8 00000000000003ed \
    0000000000000007 0003 0000002a 00000002 \
    10 00 00 00 02 6b 02 76 00 \
    1e 00 0a 02 01 04 76 76 04 02 68 02 78 02 68 01";

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn golden_records() -> Vec<Rec> {
    vec![
        Rec {
            timestamp: 1000,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![],
        },
        Rec {
            timestamp: 1005,
            key: None,
            value: Some(b"vv".to_vec()),
            headers: vec![("h".into(), Some(b"x".to_vec())), ("h".into(), None)],
        },
    ]
}

fn golden_stamp() -> BatchStamp {
    BatchStamp {
        producer: ProducerStamp {
            producer_id: 7,
            producer_epoch: 3,
            base_sequence: 42,
        },
        ..BatchStamp::default()
    }
}

#[test]
fn builder_writes_the_hand_derived_golden_batch_byte_for_byte() {
    let sealed = build(&golden_records(), BatchOptions::default(), &golden_stamp());
    assert_eq!(sealed.as_bytes().as_ref(), hex(GOLDEN).as_slice());
}

#[test]
fn reader_decodes_the_golden_batch() {
    let got = read_all(Bytes::from(hex(GOLDEN)));
    assert_eq!(got.len(), 1);
    let (b, recs) = &got[0];
    assert_eq!(b.magic(), 2);
    assert_eq!(b.base_offset(), 0);
    assert_eq!(b.last_offset(), 1);
    assert_eq!(b.crc(), 0xf354_ec9b);
    assert_eq!(b.producer_id(), 7);
    assert_eq!(b.producer_epoch(), 3);
    assert_eq!(b.base_sequence(), 42);
    assert_eq!(b.last_sequence(), 43);
    assert_eq!(b.record_count(), Some(2));
    assert_eq!(b.base_timestamp(), 1000);
    assert_eq!(b.max_timestamp(), 1005);
    assert_eq!(b.partition_leader_epoch(), -1);
    assert_eq!(b.compression(), Compression::None);
    assert_eq!(b.timestamp_type(), TimestampType::CreateTime);
    assert!(!b.is_transactional() && !b.is_control());
    assert_eq!(
        recs.iter().map(as_rec).collect::<Vec<_>>(),
        golden_records()
    );
    assert_eq!(recs[1].offset, 1);
    assert_eq!(recs[1].headers.last("h"), Some(None));
}

#[test]
fn records_are_slices_of_the_input_not_copies() {
    let data = Bytes::from(hex(GOLDEN));
    let batch = Batches::new(data.clone()).next().unwrap().unwrap();
    let rec = batch.records().unwrap().next().unwrap().unwrap();
    let key = rec.key.unwrap();
    let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
    assert!(range.contains(&(key.as_ptr() as usize)));
}

#[test]
fn borrowed_iteration_matches_owned_iteration() {
    let data = Bytes::from(hex(GOLDEN));
    let batch = Batch::parse(data).unwrap();
    let owned: Vec<Record> = batch.records().unwrap().map(Result::unwrap).collect();
    let mut it = batch.records().unwrap();
    let buffer = it.buffer().clone();
    let mut i = 0;
    while let Some(r) = it.next_ref() {
        let r = r.unwrap();
        assert_eq!(r.to_record(&buffer).as_ref(), Some(&owned[i]));
        assert_eq!(r.headers().count(), owned[i].headers.len());
        i += 1;
    }
    assert_eq!(i, owned.len());
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

fn arb_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        4 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Some),
    ]
}

fn arb_rec() -> impl Strategy<Value = Rec> {
    (
        prop_oneof![any::<i64>(), 0i64..2_000_000_000_000],
        arb_bytes(),
        arb_bytes(),
        // Few header names, so duplicates are common.
        proptest::collection::vec(
            (
                prop::sample::select(vec!["a", "b", "trace-id", "é"]),
                arb_bytes(),
            ),
            0..4,
        ),
    )
        .prop_map(|(timestamp, key, value, headers)| Rec {
            timestamp,
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        })
}

fn arb_stamp() -> impl Strategy<Value = BatchStamp> {
    (
        any::<i64>(),
        any::<i32>(),
        any::<i64>(),
        any::<i16>(),
        any::<i32>(),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(base_offset, epoch, pid, pe, seq, lat)| BatchStamp {
            base_offset,
            partition_leader_epoch: epoch,
            producer: ProducerStamp {
                producer_id: pid,
                producer_epoch: pe,
                base_sequence: seq,
            },
            log_append_time: lat,
        })
}

fn check_round_trip(
    recs: &[Rec],
    opts: BatchOptions,
    stamp: &BatchStamp,
) -> Result<(), TestCaseError> {
    let sealed = build(recs, opts, stamp);
    let got = read_all(sealed.to_bytes());
    prop_assert_eq!(got.len(), 1);
    let (b, read) = &got[0];
    prop_assert_eq!(b.compression(), opts.compression);
    prop_assert_eq!(b.is_transactional(), opts.transactional);
    prop_assert_eq!(b.is_control(), opts.control);
    prop_assert_eq!(b.base_offset(), stamp.base_offset);
    prop_assert_eq!(b.partition_leader_epoch(), stamp.partition_leader_epoch);
    prop_assert_eq!(b.producer_id(), stamp.producer.producer_id);
    prop_assert_eq!(b.producer_epoch(), stamp.producer.producer_epoch);
    prop_assert_eq!(b.base_sequence(), stamp.producer.base_sequence);
    prop_assert_eq!(b.record_count(), Some(recs.len() as i32));
    prop_assert_eq!(b.last_offset_delta(), recs.len() as i32 - 1);
    prop_assert_eq!(read.len(), recs.len());
    let max_ts = recs.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    match stamp.log_append_time {
        Some(t) => {
            prop_assert_eq!(b.timestamp_type(), TimestampType::LogAppendTime);
            prop_assert_eq!(b.max_timestamp(), t);
        }
        None => {
            prop_assert_eq!(b.timestamp_type(), TimestampType::CreateTime);
            prop_assert_eq!(b.max_timestamp(), max_ts);
        }
    }
    for (i, (want, got)) in recs.iter().zip(read).enumerate() {
        prop_assert_eq!(got.offset, stamp.base_offset.wrapping_add(i as i64));
        let mut want = want.clone();
        if let Some(t) = stamp.log_append_time {
            want.timestamp = t;
        }
        prop_assert_eq!(as_rec(got), want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_records_round_trip_through_every_codec(
        recs in proptest::collection::vec(arb_rec(), 1..30),
        stamp in arb_stamp(),
        transactional in any::<bool>(),
        control in any::<bool>(),
    ) {
        for compression in ALL_CODECS {
            let opts = BatchOptions {
                compression,
                transactional,
                control,
                max_bytes: usize::MAX,
                ..BatchOptions::default()
            };
            check_round_trip(&recs, opts, &stamp)?;
        }
    }

    #[test]
    fn restamping_equals_sealing_with_the_new_stamp_and_keeps_records(
        recs in proptest::collection::vec(arb_rec(), 1..10),
        first in arb_stamp(),
        second in arb_stamp(),
        codec in prop::sample::select(ALL_CODECS.to_vec()),
    ) {
        let opts = BatchOptions { compression: codec, ..BatchOptions::default() };
        let mut sealed = build(&recs, opts, &first);
        let before = read_all(sealed.to_bytes());
        let held = sealed.to_bytes(); // a request still holding the old bytes
        sealed.restamp(&second.producer);
        let original = build(&recs, opts, &first);
        prop_assert_eq!(&held, original.as_bytes());
        let direct = build(&recs, opts, &BatchStamp { producer: second.producer, ..first });
        prop_assert_eq!(sealed.as_bytes(), direct.as_bytes());
        prop_assert_eq!(sealed.producer(), second.producer);
        let after = read_all(sealed.to_bytes());
        prop_assert_eq!(&before[0].1, &after[0].1);
        // Base offset and leader epoch sit outside the CRC.
        sealed.set_base_offset(second.base_offset);
        sealed.set_partition_leader_epoch(second.partition_leader_epoch);
        let b = Batch::parse(sealed.to_bytes()).unwrap();
        b.verify_crc().unwrap();
        prop_assert_eq!(b.base_offset(), second.base_offset);
        prop_assert_eq!(b.partition_leader_epoch(), second.partition_leader_epoch);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        walk(Bytes::from(data));
    }

    #[test]
    fn mutated_batches_never_panic_the_reader(
        recs in proptest::collection::vec(arb_rec(), 1..5),
        codec in prop::sample::select(ALL_CODECS.to_vec()),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let opts = BatchOptions { compression: codec, ..BatchOptions::default() };
        let mut data = build(&recs, opts, &BatchStamp::default()).as_bytes().to_vec();
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
        walk(Bytes::from(data));
    }
}

/// Reads everything it can, ignoring errors: only panics fail.
fn walk(data: Bytes) -> usize {
    let mut n = 0;
    let opts = ReadOptions {
        max_decompressed_bytes: 1 << 20,
        ..ReadOptions::default()
    };
    for batch in Batches::with_options(data, opts) {
        let Ok(batch) = batch else { break };
        let _ = batch.verify_crc();
        let _ = (
            batch.last_offset(),
            batch.last_sequence(),
            batch.timestamp_type(),
        );
        if let Ok(records) = batch.records() {
            for r in records {
                match r {
                    Ok(r) => {
                        n += 1;
                        let _ = r.headers.iter().count();
                        let _ = ControlRecord::from_record(&r);
                    }
                    Err(_) => break,
                }
            }
        }
        if let Ok(mut records) = batch.records() {
            while let Some(Ok(r)) = records.next_ref() {
                let _ = r.headers().count();
            }
        }
    }
    n
}

// ---------------------------------------------------------------------------
// Corruption, truncation, hostile lengths
// ---------------------------------------------------------------------------

#[test]
fn a_flipped_bit_anywhere_under_the_crc_is_detected() {
    let data = hex(GOLDEN);
    for i in layout::ATTRIBUTES..data.len() {
        let mut bad = data.clone();
        bad[i] ^= 0x01;
        let Ok(batch) = Batch::parse(Bytes::from(bad)) else {
            continue; // the header itself no longer parses: also detected
        };
        assert!(
            matches!(batch.verify_crc(), Err(RecordError::CrcMismatch { .. })),
            "flip at {i} went unnoticed"
        );
    }
    // Fields before the CRC are left out of it by design.
    let mut bad = data.clone();
    bad[layout::PARTITION_LEADER_EPOCH] ^= 0x01;
    Batch::parse(Bytes::from(bad))
        .unwrap()
        .verify_crc()
        .unwrap();
}

fn mixed_blob() -> (Vec<u8>, Vec<usize>) {
    let mut blob = Vec::new();
    let mut ends = Vec::new();
    blob.extend_from_slice(&hex(GOLDEN));
    ends.push(blob.len());
    blob.extend_from_slice(&legacy_message(0, 5, 0, None, Some(b"k"), Some(b"v")));
    ends.push(blob.len());
    blob.extend_from_slice(&legacy_message(1, 6, 0, Some(1000), None, Some(b"vv")));
    ends.push(blob.len());
    let recs = golden_records();
    let sealed = build(
        &recs,
        BatchOptions {
            compression: Compression::Gzip,
            ..BatchOptions::default()
        },
        &BatchStamp {
            base_offset: 7,
            ..BatchStamp::default()
        },
    );
    blob.extend_from_slice(sealed.as_bytes());
    ends.push(blob.len());
    (blob, ends)
}

#[test]
fn a_blob_cut_at_every_byte_yields_the_whole_batches_and_stops() {
    let (blob, ends) = mixed_blob();
    for cut in 0..=blob.len() {
        let mut it = Batches::new(Bytes::copy_from_slice(&blob[..cut]));
        let mut whole = 0;
        for b in it.by_ref() {
            let b = b.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            b.verify_crc().unwrap();
            assert!(b.records().unwrap().all(|r| r.is_ok()));
            whole += 1;
        }
        let expect = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(whole, expect, "cut at {cut}");
        let boundary = ends
            .iter()
            .copied()
            .filter(|&e| e <= cut)
            .max()
            .unwrap_or(0);
        assert_eq!(it.truncated_tail(), cut - boundary, "cut at {cut}");
    }
}

#[test]
fn a_batch_whose_length_is_rewritten_to_any_shorter_cut_errors_without_panicking() {
    // The batch length agrees with the bytes, but the records inside are cut:
    // the header parses, the records must fail cleanly.
    for codec in ALL_CODECS {
        let opts = BatchOptions {
            compression: codec,
            ..BatchOptions::default()
        };
        let full = build(&golden_records(), opts, &BatchStamp::default())
            .as_bytes()
            .to_vec();
        for cut in LOG_OVERHEAD..full.len() {
            let mut b = full[..cut].to_vec();
            b[layout::LENGTH..layout::LENGTH + 4]
                .copy_from_slice(&((cut - LOG_OVERHEAD) as i32).to_be_bytes());
            let n = walk(Bytes::from(b));
            // A codec may not notice a cut in its own trailer; uncompressed
            // records must.
            if codec == Compression::None {
                assert!(n < golden_records().len(), "cut {cut}: read {n}");
            }
        }
    }
}

#[test]
fn every_single_byte_mutation_of_a_mixed_blob_is_survived() {
    let (blob, _) = mixed_blob();
    for i in 0..blob.len() {
        for v in [0x00, 0x7f, 0x80, 0xff, blob[i] ^ 0x40] {
            let mut b = blob.clone();
            b[i] = v;
            walk(Bytes::from(b));
        }
    }
}

#[test]
fn absurd_lengths_and_counts_are_rejected_without_allocating() {
    let data = hex(GOLDEN);

    // Negative and below-minimum batch lengths.
    for len in [-1i32, i32::MIN, 0, 13] {
        let mut b = data.clone();
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let r = Batches::new(Bytes::from(b)).next();
        assert!(
            matches!(r, Some(Err(RecordError::BadLength { .. }))),
            "{len}"
        );
    }
    // A huge length is a truncated tail by default, an error past the limit.
    let mut b = data.clone();
    b[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    let mut it = Batches::new(Bytes::from(b.clone()));
    assert!(it.next().is_none());
    assert_eq!(it.truncated_tail(), b.len());
    let opts = ReadOptions {
        max_batch_bytes: 1 << 20,
        ..ReadOptions::default()
    };
    let mut it = Batches::with_options(Bytes::from(b), opts);
    assert!(matches!(
        it.next(),
        Some(Err(RecordError::BadLength { .. }))
    ));
    assert!(it.next().is_none());
    assert_eq!(it.truncated_tail(), 0);
    // A v2 length between the legacy and v2 minimum.
    let mut b = data.clone();
    b[8..12].copy_from_slice(&20i32.to_be_bytes());
    let r = Batches::new(Bytes::from(b)).next();
    assert!(matches!(r, Some(Err(RecordError::BadLength { .. }))));
    // Bad magic.
    let mut b = data.clone();
    b[layout::MAGIC] = 3;
    assert!(matches!(
        Batches::new(Bytes::from(b)).next(),
        Some(Err(RecordError::BadMagic(3)))
    ));
    // Unknown codec.
    let mut b = data.clone();
    b[layout::ATTRIBUTES + 1] = 0x07;
    assert!(matches!(
        Batches::new(Bytes::from(b)).next(),
        Some(Err(RecordError::Compression(_)))
    ));
    // Record counts: negative, and more than the bytes could hold.
    for count in [-1i32, i32::MAX, 10] {
        let mut b = data.clone();
        b[layout::RECORD_COUNT..layout::RECORD_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        let r = Batches::new(Bytes::from(b)).next();
        assert!(
            matches!(r, Some(Err(RecordError::BadRecordCount(c))) if c == count),
            "{count}"
        );
    }
    // A count of 1 leaves the second record as trailing bytes.
    let mut b = data.clone();
    b[layout::RECORD_COUNT..layout::RECORD_COUNT + 4].copy_from_slice(&1i32.to_be_bytes());
    let mut recs = Batch::parse(Bytes::from(b)).unwrap().records().unwrap();
    assert!(recs.next().unwrap().is_ok());
    assert!(matches!(
        recs.next(),
        Some(Err(RecordError::TrailingBytes(16)))
    ));
    assert!(recs.next().is_none());
    // A count of 3 where 2 records are: the third runs off the end.
    let mut b = data.clone();
    b[layout::RECORD_COUNT..layout::RECORD_COUNT + 4].copy_from_slice(&3i32.to_be_bytes());
    let recs: Vec<_> = Batch::parse(Bytes::from(b))
        .unwrap()
        .records()
        .unwrap()
        .collect();
    assert_eq!(recs.len(), 3);
    assert!(recs[2].is_err());
}

#[test]
fn hostile_record_fields_are_rejected() {
    // One record, 61-byte header from the golden batch, count 1, then a
    // hand-made record body.
    fn batch_with(record: &[u8]) -> Bytes {
        let mut b = hex(GOLDEN)[..RECORD_BATCH_OVERHEAD].to_vec();
        b[layout::RECORD_COUNT..layout::RECORD_COUNT + 4].copy_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(record);
        // Padding, so that the record-count sanity check (7 bytes a record)
        // passes and the record itself is what fails.
        b.extend_from_slice(&[0; 8]);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        Bytes::from(b)
    }
    fn first(record: &[u8]) -> Result<Record, RecordError> {
        Batch::parse(batch_with(record))
            .unwrap()
            .records()
            .unwrap()
            .next()
            .unwrap()
    }
    // Header count 2^30 in a 7-byte record.
    let r = first(&[
        0x0e, 0x00, 0x00, 0x00, 0x01, 0x01, 0x80, 0x80, 0x80, 0x80, 0x08,
    ]);
    assert!(r.is_err());
    // Negative header count.
    assert!(matches!(
        first(&[0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0x01]),
        Err(RecordError::BadLength { .. })
    ));
    // Key length past the record.
    assert!(first(&[0x0c, 0x00, 0x00, 0x00, 0x7e, 0x01, 0x00]).is_err());
    // Negative header key length.
    assert!(matches!(
        first(&[0x10, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x01, 0x01]),
        Err(RecordError::BadLength { .. })
    ));
    // Record length shorter than its fields.
    assert!(first(&[0x06, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00]).is_err());
    // Record length longer than its fields.
    assert!(matches!(
        first(&[0x10, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00]),
        Err(RecordError::BadLength { .. })
    ));
    // Negative record length, and an overflowing varint.
    assert!(first(&[0x01, 0x00]).is_err());
    assert!(matches!(
        first(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        Err(RecordError::VarintOverflow)
    ));
    // Zero-length record (no attributes byte).
    assert!(first(&[0x00]).is_err());
}

#[test]
fn decompression_is_bounded_by_the_callers_limit() {
    let big = vec![b'a'; 200_000];
    let recs = vec![Rec {
        timestamp: 0,
        key: None,
        value: Some(big),
        headers: vec![],
    }];
    for codec in &ALL_CODECS[1..] {
        let sealed = build(
            &recs,
            BatchOptions {
                compression: *codec,
                ..BatchOptions::default()
            },
            &BatchStamp::default(),
        );
        assert!(sealed.len() < 100_000, "{codec:?} barely compressed");
        let opts = ReadOptions {
            max_decompressed_bytes: 100_000,
            ..ReadOptions::default()
        };
        let batch = Batches::with_options(sealed.to_bytes(), opts)
            .next()
            .unwrap()
            .unwrap();
        assert!(matches!(batch.records(), Err(RecordError::Compression(_))));
    }
}

#[test]
fn a_compressed_batch_whose_count_exceeds_its_records_is_rejected() {
    let mut b = build(
        &golden_records(),
        BatchOptions {
            compression: Compression::Zstd,
            ..BatchOptions::default()
        },
        &BatchStamp::default(),
    )
    .as_bytes()
    .to_vec();
    b[layout::RECORD_COUNT..layout::RECORD_COUNT + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    let batch = Batch::parse(Bytes::from(b)).unwrap();
    assert!(matches!(
        batch.records(),
        Err(RecordError::BadRecordCount(i32::MAX))
    ));
}

#[test]
fn log_append_time_batches_give_every_record_the_max_timestamp() {
    let stamp = BatchStamp {
        log_append_time: Some(99_999),
        ..BatchStamp::default()
    };
    let sealed = build(&golden_records(), BatchOptions::default(), &stamp);
    let got = read_all(sealed.to_bytes());
    assert_eq!(got[0].0.timestamp_type(), TimestampType::LogAppendTime);
    assert!(got[0].1.iter().all(|r| r.timestamp == 99_999));
    // The base timestamp keeps the create time of the first record.
    assert_eq!(got[0].0.base_timestamp(), 1000);
}

#[test]
fn delete_horizon_is_written_as_the_base_timestamp() {
    let opts = BatchOptions {
        delete_horizon_ms: Some(5000),
        ..BatchOptions::default()
    };
    let sealed = build(&golden_records(), opts, &BatchStamp::default());
    let got = read_all(sealed.to_bytes());
    assert_eq!(got[0].0.delete_horizon_ms(), Some(5000));
    assert_eq!(
        got[0].1.iter().map(as_rec).collect::<Vec<_>>(),
        golden_records()
    );
}

#[test]
fn empty_batches_from_compaction_read_as_no_records() {
    // Count 0 and no records section: Java returns an empty iterator.
    let mut b = hex(GOLDEN)[..RECORD_BATCH_OVERHEAD].to_vec();
    b[layout::RECORD_COUNT..layout::RECORD_COUNT + 4].copy_from_slice(&0i32.to_be_bytes());
    b[8..12].copy_from_slice(&49i32.to_be_bytes());
    let crc = crc32c(&b[layout::ATTRIBUTES..]);
    b[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    let batch = Batch::parse(Bytes::from(b)).unwrap();
    batch.verify_crc().unwrap();
    assert_eq!(batch.records().unwrap().count(), 0);
}

#[test]
fn sequences_wrap_like_kafka() {
    assert_eq!(batch::increment_sequence(i32::MAX, 1), 0);
    assert_eq!(batch::increment_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(batch::increment_sequence(5, 3), 8);
    // Hostile negative deltas do not overflow.
    let _ = batch::increment_sequence(i32::MIN, i32::MIN);
    let _ = batch::increment_sequence(i32::MAX, i32::MAX);
}

// ---------------------------------------------------------------------------
// Builder sizing
// ---------------------------------------------------------------------------

#[test]
fn first_record_always_fits_and_later_ones_respect_max_bytes() {
    let opts = BatchOptions {
        max_bytes: 200,
        ..BatchOptions::default()
    };
    let mut b = BatchBuilder::new(opts);
    let big = vec![0u8; 1000];
    assert!(b.would_fit(0, None, Some(&big), NO_HEADERS));
    b.try_append(0, None, Some(&big), NO_HEADERS).unwrap();
    assert_eq!(
        b.try_append(0, None, Some(b"x"), NO_HEADERS),
        Err(AppendError::Full)
    );
    let sealed = b.seal(&BatchStamp::default()).unwrap();
    assert_eq!(sealed.record_count(), 1);
    assert!(b.is_empty());
    // The builder is reusable; the estimate is exact when uncompressed.
    let v = vec![1u8; 50];
    while b.try_append(0, None, Some(&v), NO_HEADERS).is_ok() {}
    let estimated = b.estimated_size();
    let sealed = b.seal(&BatchStamp::default()).unwrap();
    assert_eq!(sealed.len(), estimated);
    assert!(sealed.len() <= 200);
    assert!(sealed.len() + 53 > 200);
    assert_eq!(
        b.seal(&BatchStamp::default()).unwrap_err().to_string(),
        BuildError::Empty.to_string()
    );
}

#[test]
fn a_sent_batch_can_be_recycled_into_the_builder() {
    let mut b = BatchBuilder::new(BatchOptions::default());
    b.append(0, None, Some(&[1u8; 5000]), NO_HEADERS).unwrap();
    let sealed = b.seal(&BatchStamp::default()).unwrap();
    let held = sealed.to_bytes();
    // Still held by a request: not taken.
    assert!(!b.recycle(sealed.clone()));
    drop(held);
    let ptr = sealed.as_bytes().as_ptr();
    assert!(b.recycle(sealed));
    b.append(0, None, Some(b"x"), NO_HEADERS).unwrap();
    let again = b.seal(&BatchStamp::default()).unwrap();
    assert_eq!(again.as_bytes().as_ptr(), ptr);
    assert_eq!(read_all(again.to_bytes())[0].1.len(), 1);
}

proptest! {
    #[test]
    fn a_single_record_batch_never_exceeds_the_upper_bound(r in arb_rec()) {
        let sealed = build(std::slice::from_ref(&r), BatchOptions::default(), &BatchStamp::default());
        let bound = batch_size_upper_bound(
            r.key.as_ref().map(Vec::len),
            r.value.as_ref().map(Vec::len),
            &r.headers,
        );
        prop_assert!(sealed.len() <= bound, "{} > {}", sealed.len(), bound);
    }
}

#[test]
fn one_decompressor_and_one_builder_serve_many_batches() {
    use crate::compression::Decompressor;
    let mut dec = Decompressor::new();
    for codec in ALL_CODECS {
        let mut b = BatchBuilder::new(BatchOptions {
            compression: codec,
            ..BatchOptions::default()
        });
        for round in 0..3 {
            for r in golden_records() {
                b.append(
                    r.timestamp,
                    r.key.as_deref(),
                    r.value.as_deref(),
                    &r.headers,
                )
                .unwrap();
            }
            let sealed = b.seal(&BatchStamp::default()).unwrap();
            let batch = Batch::parse(sealed.to_bytes()).unwrap();
            let recs: Vec<Rec> = batch
                .records_with(&mut dec)
                .unwrap()
                .map(|r| as_rec(&r.unwrap()))
                .collect();
            assert_eq!(recs, golden_records(), "{codec:?} round {round}");
        }
    }
}

#[test]
fn an_invalid_compression_level_fails_the_seal() {
    let mut b = BatchBuilder::new(BatchOptions {
        compression: Compression::Gzip,
        compression_level: crate::compression::CompressionLevel::new(42),
        ..BatchOptions::default()
    });
    b.append(0, None, Some(b"x"), NO_HEADERS).unwrap();
    assert!(matches!(
        b.seal(&BatchStamp::default()),
        Err(BuildError::Compression(_))
    ));
}

#[test]
fn record_size_matches_what_append_writes() {
    let mut b = BatchBuilder::new(BatchOptions::default());
    for (i, r) in golden_records().iter().enumerate() {
        let size = b
            .record_size(
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
            )
            .unwrap();
        let before = b.uncompressed_records_len();
        b.append(
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        )
        .unwrap();
        assert_eq!(b.uncompressed_records_len() - before, size, "record {i}");
    }
}

#[test]
fn compressed_batches_estimate_with_the_ratio() {
    let mut b = BatchBuilder::new(BatchOptions {
        compression: Compression::Lz4,
        max_bytes: 10_000,
        compression_ratio_estimate: 0.5,
        ..BatchOptions::default()
    });
    let v = vec![7u8; 100];
    let mut n = 0;
    while b.try_append(0, None, Some(&v), NO_HEADERS).is_ok() {
        n += 1;
    }
    // At ratio 0.5 and 5% margin, ~10_000 / 0.525 bytes of records fit.
    assert!(n > 150 && n < 200, "{n}");
    let sealed = b.seal(&BatchStamp::default()).unwrap();
    assert!(sealed.compression_ratio() < 0.5);
}

// ---------------------------------------------------------------------------
// Control records
// ---------------------------------------------------------------------------

#[test]
fn control_markers_round_trip_as_kafka_lays_them_out() {
    for (commit, kind) in [
        (true, ControlRecordKind::Commit),
        (false, ControlRecordKind::Abort),
    ] {
        let marker = ControlRecord::end_txn(commit, 17);
        // ControlRecordType: ABORT = 0, COMMIT = 1.
        let type_byte = if commit { 1 } else { 0 };
        assert_eq!(marker.key_bytes(), [0, 0, 0, type_byte]);
        assert_eq!(marker.value_bytes(), [0, 0, 0, 0, 0, 17]);
        let stamp = BatchStamp {
            producer: ProducerStamp {
                producer_id: 9,
                producer_epoch: 2,
                base_sequence: 5,
            },
            ..BatchStamp::default()
        };
        let sealed = marker.to_batch(123, &stamp).unwrap();
        let got = read_all(sealed.to_bytes());
        let (b, recs) = &got[0];
        assert!(b.is_control() && b.is_transactional());
        assert_eq!(b.producer_id(), 9);
        assert_eq!(b.base_sequence(), NO_SEQUENCE);
        assert_eq!(recs.len(), 1);
        let parsed = ControlRecord::from_record(&recs[0]).unwrap();
        assert_eq!(parsed.kind, kind);
        assert_eq!(parsed.coordinator_epoch, 17);
    }
}

#[test]
fn control_record_parsing_follows_kafka_rules() {
    // Unknown type: skipped, value not read.
    let r = ControlRecord::parse(Some(&[0, 0, 0, 5]), None).unwrap();
    assert_eq!(r.kind, ControlRecordKind::Unknown(5));
    // A newer key or value version parses as version 0.
    let r = ControlRecord::parse(Some(&[0, 3, 0, 1, 9]), Some(&[0, 1, 0, 0, 0, 4, 1])).unwrap();
    assert_eq!(r, ControlRecord::end_txn(true, 4));
    // Errors: negative versions, short key or value, nulls.
    for (k, v) in [
        (Some(&[0xff, 0xff, 0, 1][..]), Some(&[0, 0, 0, 0, 0, 1][..])),
        (Some(&[0, 0, 0][..]), Some(&[0, 0, 0, 0, 0, 1][..])),
        (Some(&[0, 0, 0, 1][..]), Some(&[0, 0, 0, 0, 1][..])),
        (Some(&[0, 0, 0, 1][..]), Some(&[0x80, 0, 0, 0, 0, 1][..])),
        (None, Some(&[0, 0, 0, 0, 0, 1][..])),
        (Some(&[0, 0, 0, 0][..]), None),
    ] {
        assert!(
            matches!(
                ControlRecord::parse(k, v),
                Err(RecordError::BadControlRecord(_))
            ),
            "{k:?} {v:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Legacy message sets
// ---------------------------------------------------------------------------

/// One legacy entry laid out as `LegacyRecord.write` does, CRC-32 included.
fn legacy_message(
    magic: i8,
    offset: i64,
    attributes: u8,
    timestamp: Option<i64>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Vec<u8> {
    let mut body = vec![magic as u8, attributes];
    if magic == 1 {
        body.extend_from_slice(&timestamp.unwrap_or(-1).to_be_bytes());
    }
    for f in [key, value] {
        match f {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                body.extend_from_slice(&(b.len() as i32).to_be_bytes());
                body.extend_from_slice(b);
            }
        }
    }
    let mut m = offset.to_be_bytes().to_vec();
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(&crc32_ieee(&body).to_be_bytes());
    m.extend_from_slice(&body);
    m
}

#[test]
fn legacy_v0_and_v1_messages_match_hand_derived_bytes() {
    // v0: offset 5, size 16, crc, magic 0, attributes 0, key "k", value "v".
    // CRC-32 (IEEE) of 00 00 00000001 6b 00000001 76, computed apart.
    let v0 = hex("0000000000000005 00000010 1fecd70a 00 00 00000001 6b 00000001 76");
    assert_eq!(v0, legacy_message(0, 5, 0, None, Some(b"k"), Some(b"v")));
    // v1: offset 6, size 24, crc, magic 1, attributes 0, timestamp 1000,
    // null key, value "vv".
    let v1 =
        hex("0000000000000006 00000018 5f287947 01 00 00000000000003e8 ffffffff 00000002 7676");
    assert_eq!(v1, legacy_message(1, 6, 0, Some(1000), None, Some(b"vv")));

    let mut blob = v0.clone();
    blob.extend_from_slice(&v1);
    let got = read_all(Bytes::from(blob));
    assert_eq!(got.len(), 2);
    let (b0, r0) = &got[0];
    assert_eq!(b0.magic(), 0);
    assert_eq!(b0.timestamp_type(), TimestampType::NoTimestamp);
    assert_eq!(b0.record_count(), None);
    assert_eq!(b0.producer_id(), NO_PRODUCER_ID);
    assert_eq!(r0.len(), 1);
    assert_eq!((r0[0].offset, r0[0].timestamp), (5, -1));
    assert_eq!(r0[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(r0[0].value.as_deref(), Some(&b"v"[..]));
    assert!(r0[0].headers.is_empty());
    let (b1, r1) = &got[1];
    assert_eq!(b1.magic(), 1);
    assert_eq!(b1.timestamp_type(), TimestampType::CreateTime);
    assert_eq!((r1[0].offset, r1[0].timestamp), (6, 1000));
    assert_eq!(r1[0].key, None);

    let mut bad = v1.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(
        Batch::parse(Bytes::from(bad)).unwrap().verify_crc(),
        Err(RecordError::CrcMismatch { .. })
    ));
}

/// A compressed wrapper around `inner` (an inner message set).
fn legacy_wrapper(
    magic: i8,
    offset: i64,
    codec: Compression,
    log_append: bool,
    timestamp: i64,
    inner: &[u8],
) -> Vec<u8> {
    let mut compressed = Vec::new();
    compress(codec, inner, &mut compressed).unwrap();
    let attributes = codec.id() | if log_append { 0x08 } else { 0 };
    legacy_message(
        magic,
        offset,
        attributes,
        Some(timestamp),
        None,
        Some(&compressed),
    )
}

#[test]
fn legacy_v1_wrappers_rebase_relative_inner_offsets() {
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
        // Inner offsets 0, 1, 2 relative; wrapper offset 102 is the last
        // absolute offset, so the records are 100, 101, 102.
        let mut inner = Vec::new();
        for i in 0..3i64 {
            let v = format!("v{i}");
            inner.extend_from_slice(&legacy_message(
                1,
                i,
                0,
                Some(10 + i),
                None,
                Some(v.as_bytes()),
            ));
        }
        let w = legacy_wrapper(1, 102, codec, false, 50, &inner);
        let got = read_all(Bytes::from(w.clone()));
        let (b, recs) = &got[0];
        assert_eq!(b.compression(), codec);
        assert_eq!(b.last_offset(), 102);
        let offsets: Vec<_> = recs.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [100, 101, 102], "{codec:?}");
        // CreateTime wrapper: inner records keep their own timestamps.
        assert_eq!(
            recs.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        assert_eq!(recs[2].value.as_deref(), Some(&b"v2"[..]));

        // LogAppendTime wrapper: inner records take the wrapper's time.
        let w = legacy_wrapper(1, 102, codec, true, 77, &inner);
        let got = read_all(Bytes::from(w));
        assert!(got[0].1.iter().all(|r| r.timestamp == 77));

        // Wrapper offset 0 (older librdkafka): base 0.
        let w = legacy_wrapper(1, 0, codec, false, 50, &inner);
        let got = read_all(Bytes::from(w));
        assert_eq!(
            got[0].1.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [0, 1, 2]
        );

        // A hostile inner offset cannot overflow the rebase.
        let hostile = legacy_message(1, i64::MIN, 0, Some(0), None, Some(b"x"));
        let w = legacy_wrapper(1, i64::MAX, codec, false, 50, &hostile);
        let b = Batch::parse(Bytes::from(w)).unwrap();
        assert!(matches!(b.records(), Err(RecordError::Legacy(_))));

        // Wrapper offset below the last inner offset: invalid.
        let w = legacy_wrapper(1, 1, codec, false, 50, &inner);
        let b = Batch::parse(Bytes::from(w)).unwrap();
        assert!(matches!(b.records(), Err(RecordError::Legacy(_))));
    }
}

#[test]
fn legacy_v0_wrappers_keep_absolute_inner_offsets() {
    let mut inner = Vec::new();
    for off in [40i64, 41] {
        inner.extend_from_slice(&legacy_message(0, off, 0, None, Some(b"k"), None));
    }
    let w = legacy_wrapper(0, 41, Compression::Gzip, false, 0, &inner);
    let got = read_all(Bytes::from(w));
    let recs = &got[0].1;
    assert_eq!(
        recs.iter()
            .map(|r| (r.offset, r.timestamp))
            .collect::<Vec<_>>(),
        [(40, -1), (41, -1)]
    );
    assert!(recs.iter().all(|r| r.value.is_none()));
}

#[test]
fn legacy_v0_lz4_wrappers_with_the_pre_0_10_header_checksum_are_read() {
    // KAFKA-3160: before 0.10 the lz4 frame header checksum also hashed the
    // 4-byte magic. Only magic v0 messages may carry it.
    let inner = legacy_message(0, 3, 0, None, None, Some(b"old"));
    let mut frame = Vec::new();
    compress(Compression::Lz4, &inner, &mut frame).unwrap();
    frame[6] = (twox_hash::XxHash32::oneshot(0, &frame[..6]) >> 8) as u8;
    for (magic, ok) in [(0i8, true), (1, false)] {
        let w = legacy_message(magic, 3, Compression::Lz4.id(), Some(0), None, Some(&frame));
        let b = Batch::parse(Bytes::from(w)).unwrap();
        match b.records() {
            Ok(rs) if ok => {
                let offsets: Vec<i64> = rs.map(|r| r.unwrap().offset).collect();
                assert_eq!(offsets, [3]);
            }
            Err(RecordError::Compression(_)) if !ok => {}
            other => panic!("magic {magic}: {other:?}"),
        }
    }
}

#[test]
fn legacy_wrapper_rules_are_enforced() {
    let inner = legacy_message(1, 0, 0, Some(1), None, Some(b"x"));
    // A compressed inner message.
    let nested = legacy_wrapper(1, 0, Compression::Gzip, false, 0, &inner);
    let w = legacy_wrapper(1, 0, Compression::Gzip, false, 0, &nested);
    let mut recs = Batch::parse(Bytes::from(w)).unwrap().records().unwrap();
    assert!(matches!(recs.next(), Some(Err(RecordError::Legacy(_)))));
    // A zstd wrapper.
    let w = legacy_wrapper(1, 0, Compression::Zstd, false, 0, &inner);
    let b = Batch::parse(Bytes::from(w)).unwrap();
    assert!(matches!(b.records(), Err(RecordError::Legacy(_))));
    // A null wrapper value.
    let w = legacy_message(1, 0, 1, Some(0), None, None);
    let b = Batch::parse(Bytes::from(w)).unwrap();
    assert!(matches!(b.records(), Err(RecordError::Legacy(_))));
    // An empty inner set.
    let w = legacy_wrapper(1, 0, Compression::Gzip, false, 0, &[]);
    let b = Batch::parse(Bytes::from(w)).unwrap();
    assert!(matches!(b.records(), Err(RecordError::Legacy(_))));
    // A corrupt inner CRC.
    let mut bad = inner.clone();
    *bad.last_mut().unwrap() ^= 1;
    let w = legacy_wrapper(1, 0, Compression::Gzip, false, 0, &bad);
    let mut recs = Batch::parse(Bytes::from(w)).unwrap().records().unwrap();
    assert!(matches!(
        recs.next(),
        Some(Err(RecordError::CrcMismatch { .. }))
    ));
    // A partial trailing inner entry is dropped, as Java's DataLogInputStream.
    let mut partial = inner.clone();
    partial.extend_from_slice(&inner[..inner.len() - 3]);
    let w = legacy_wrapper(1, 0, Compression::Gzip, false, 0, &partial);
    assert_eq!(read_all(Bytes::from(w))[0].1.len(), 1);
}

// ---------------------------------------------------------------------------
// Cross-check with kafka-protocol, both directions
// ---------------------------------------------------------------------------

mod kp {
    pub(super) use kafka_protocol::indexmap::IndexMap;
    pub(super) use kafka_protocol::protocol::StrBytes;
    pub(super) use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };
}

fn to_kp(c: Compression) -> kp::Compression {
    match c {
        Compression::Gzip => kp::Compression::Gzip,
        Compression::Snappy => kp::Compression::Snappy,
        Compression::Lz4 => kp::Compression::Lz4,
        Compression::Zstd => kp::Compression::Zstd,
        _ => kp::Compression::None,
    }
}

/// Records `kafka-protocol` can represent: distinct header keys (it keeps
/// headers in a map) and timestamps whose deltas it can add without
/// overflowing.
fn arb_kp_rec() -> impl Strategy<Value = Rec> {
    (
        0i64..4_000_000_000_000,
        arb_bytes(),
        arb_bytes(),
        proptest::collection::btree_map(
            prop::sample::select(vec!["a", "b", "trace-id"]),
            arb_bytes(),
            0..3,
        ),
    )
        .prop_map(|(timestamp, key, value, headers)| Rec {
            timestamp,
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn kafka_protocol_decodes_what_we_build(
        recs in proptest::collection::vec(arb_kp_rec(), 1..20),
        base_offset in 0i64..1 << 40,
        pid in any::<i64>(),
        epoch in any::<i16>(),
        seq in 0i32..1 << 30,
        transactional in any::<bool>(),
    ) {
        for codec in ALL_CODECS {
            let opts = BatchOptions { compression: codec, transactional, ..BatchOptions::default() };
            let stamp = BatchStamp {
                base_offset,
                partition_leader_epoch: 3,
                producer: ProducerStamp { producer_id: pid, producer_epoch: epoch, base_sequence: seq },
                log_append_time: None,
            };
            let sealed = build(&recs, opts, &stamp);
            let mut buf = sealed.to_bytes();
            let set = kp::RecordBatchDecoder::decode(&mut buf)
                .map_err(|e| TestCaseError::fail(format!("{codec:?}: {e}")))?;
            prop_assert_eq!(set.records.len(), recs.len());
            for (i, (r, want)) in set.records.iter().zip(&recs).enumerate() {
                prop_assert_eq!(r.offset, base_offset + i as i64);
                prop_assert_eq!(r.sequence, seq + i as i32);
                prop_assert_eq!(r.timestamp, want.timestamp);
                prop_assert_eq!(r.producer_id, pid);
                prop_assert_eq!(r.producer_epoch, epoch);
                prop_assert_eq!(r.transactional, transactional);
                prop_assert_eq!(r.partition_leader_epoch, 3);
                prop_assert_eq!(r.key.as_deref(), want.key.as_deref());
                prop_assert_eq!(r.value.as_deref(), want.value.as_deref());
                let headers: Vec<(String, Option<Vec<u8>>)> = r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_vec())))
                    .collect();
                prop_assert_eq!(&headers, &want.headers);
            }
        }
    }

    #[test]
    fn we_read_what_kafka_protocol_encodes(
        recs in proptest::collection::vec(arb_kp_rec(), 1..20),
        base_offset in 0i64..1 << 40,
        pid in any::<i64>(),
        epoch in any::<i16>(),
        seq in 0i32..1 << 30,
        transactional in any::<bool>(),
    ) {
        let theirs: Vec<kp::Record> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| kp::Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 5,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: kp::TimestampType::Creation,
                offset: base_offset + i as i64,
                sequence: seq + i as i32,
                timestamp: r.timestamp,
                key: r.key.clone().map(Bytes::from),
                value: r.value.clone().map(Bytes::from),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (kp::StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
                    .collect::<kp::IndexMap<_, _>>(),
            })
            .collect();
        for codec in ALL_CODECS {
            let mut buf = BytesMut::new();
            kp::RecordBatchEncoder::encode(
                &mut buf,
                &theirs,
                &kp::RecordEncodeOptions { version: 2, compression: to_kp(codec) },
            )
            .map_err(|e| TestCaseError::fail(format!("{codec:?}: {e}")))?;
            let got = read_all(buf.freeze());
            prop_assert_eq!(got.len(), 1);
            let (b, read) = &got[0];
            prop_assert_eq!(b.compression(), codec);
            prop_assert_eq!(b.base_offset(), base_offset);
            prop_assert_eq!(b.producer_id(), pid);
            prop_assert_eq!(b.producer_epoch(), epoch);
            prop_assert_eq!(b.base_sequence(), seq);
            prop_assert_eq!(b.is_transactional(), transactional);
            prop_assert_eq!(b.partition_leader_epoch(), 5);
            prop_assert_eq!(read.iter().map(as_rec).collect::<Vec<_>>(), recs.clone());
            for (i, r) in read.iter().enumerate() {
                prop_assert_eq!(r.offset, base_offset + i as i64);
            }
        }
    }
}
