//! Any bytes, read as the `records` field of a Fetch partition: every batch
//! and every record, legacy (v0/v1) and v2, with CRC verification off (read
//! whatever is there) and on (a copy of the input whose checksums were
//! recomputed, so that the CRC-on path gets past the check), under a small
//! decompression limit. Never a panic; the owned and borrowed record
//! iterators agree; a decompressed buffer never exceeds the limit, and the
//! limit is exact (the output's own size succeeds, one byte less fails).
//!
//! Then a batch sansa builds itself from records derived from the input
//! (any codec, any stamp) must read back equal, before and after a
//! re-stamp.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use sansa_core::compression::{Compression, CompressionError};
use sansa_core::record::{
    crc32_ieee, crc32c, Batch, BatchBuilder, BatchOptions, BatchStamp, Batches, ControlRecord,
    Header, ProducerStamp, ReadOptions, Record, RecordError, TimestampType, LOG_OVERHEAD,
};

/// Small enough that the fuzzer reaches it with a few hundred bytes of
/// deflate or zstd; large enough for real records.
const LIMIT: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let blob = Bytes::copy_from_slice(data);
    // CRC off: read everything whatever the checksums say.
    read_all(&blob, false);
    // CRC on: the same bytes with every checksum made right.
    let fixed = fix_crcs(data);
    read_all(&Bytes::from(fixed), true);
    // Small max batch size: a length above it is an error, never a panic.
    let opts = ReadOptions {
        max_batch_bytes: 64,
        max_decompressed_bytes: LIMIT,
    };
    for b in Batches::with_options(blob.clone(), opts) {
        if let Ok(b) = b {
            assert!(b.size_in_bytes() <= LOG_OVERHEAD + 64);
        }
    }
    let _ = round_trip(&mut Unstructured::new(data));
});

fn read_all(blob: &Bytes, crc_on: bool) {
    let opts = ReadOptions {
        max_batch_bytes: i32::MAX as usize,
        max_decompressed_bytes: LIMIT,
    };
    let mut batches = Batches::with_options(blob.clone(), opts);
    let mut consumed = 0usize;
    let mut failed = false;
    while let Some(batch) = batches.next() {
        let batch = match batch {
            Ok(b) => b,
            Err(_) => {
                failed = true;
                assert!(
                    batches.next().is_none(),
                    "Batches yields nothing after an error"
                );
                break;
            }
        };
        consumed += batch.size_in_bytes();
        assert_eq!(batches.position(), consumed);
        inspect_header(&batch);
        // Parsing the batch's own bytes gives the same batch.
        let again = Batch::parse(batch.as_bytes().clone()).expect("a batch re-parses");
        assert_eq!(again.as_bytes(), batch.as_bytes());
        assert_eq!(again.attributes(), batch.attributes());
        let crc = batch.verify_crc();
        if crc_on {
            // The copy's checksums were recomputed: every batch passes.
            crc.expect("recomputed CRC verifies");
        }
        read_records(&batch);
    }
    if !failed {
        assert_eq!(consumed + batches.truncated_tail(), blob.len());
    }
    assert!(batches.next().is_none());
}

fn inspect_header(b: &Batch) {
    let _ = (
        b.magic(),
        b.base_offset(),
        b.last_offset(),
        b.last_offset_delta(),
        b.partition_leader_epoch(),
        b.crc(),
        b.compression(),
        b.timestamp_type(),
        b.is_transactional(),
        b.is_control(),
        b.delete_horizon_ms(),
        b.base_timestamp(),
        b.max_timestamp(),
        b.producer_id(),
        b.producer_epoch(),
        b.base_sequence(),
        b.last_sequence(),
        b.record_count(),
    );
    assert!((0..=2).contains(&b.magic()));
    if b.magic() < 2 {
        assert!(!b.is_transactional() && !b.is_control());
        assert_eq!(b.record_count(), None);
    }
}

fn read_records(batch: &Batch) {
    let owned = match batch.records() {
        Ok(r) => r,
        Err(e) => {
            check_limit_error(&e);
            return;
        }
    };
    // A v2 batch that counts no records is not decompressed (as Java):
    // its buffer is then the batch itself.
    let compressed = batch.compression() != Compression::None && batch.record_count() != Some(0);
    let buffer_len = owned.buffer().len();
    if compressed {
        assert!(buffer_len <= LIMIT, "decompressed {buffer_len} > {LIMIT}");
    }
    let mut borrowed = batch.records().expect("records() is repeatable");
    let mut owned = owned;
    let mut n = 0usize;
    loop {
        let a = owned.next();
        let backing = borrowed.buffer().clone();
        let b = borrowed.next_ref();
        match (a, b) {
            (None, None) => break,
            (Some(Ok(rec)), Some(Ok(r))) => {
                let from_ref = r.to_record(&backing).expect("a ref slices its own buffer");
                assert_eq!(from_ref, rec);
                assert_eq!(r.header_count(), rec.headers.len());
                inspect_record(batch, &rec);
                n += 1;
            }
            (Some(Err(_)), Some(Err(_))) => {
                assert!(
                    owned.next().is_none(),
                    "Records yields nothing after an error"
                );
                assert!(borrowed.next_ref().is_none());
                break;
            }
            (a, b) => panic!("next and next_ref disagree: {a:?} vs {}", b.is_some()),
        }
    }
    if let Some(count) = batch.record_count() {
        assert!(n <= count as usize);
    }
    if compressed && buffer_len > 0 {
        check_exact_limit(batch, buffer_len);
    }
}

fn inspect_record(batch: &Batch, rec: &Record) {
    let mut hs = 0;
    for h in &rec.headers {
        let _ = h.key_str();
        hs += 1;
    }
    assert_eq!(hs, rec.headers.len());
    assert_eq!(rec.headers.iter_ref().count(), hs);
    if let Some(h) = rec.headers.iter_ref().next() {
        if let Ok(k) = h.key_str() {
            assert!(rec.headers.last(k).is_some());
        }
    }
    if batch.timestamp_type() == TimestampType::LogAppendTime && batch.magic() == 2 {
        assert_eq!(rec.timestamp, batch.max_timestamp());
    }
    if batch.is_control() {
        let _ = ControlRecord::from_record(rec);
    }
}

fn check_limit_error(e: &RecordError) {
    // Any error is fine; only make sure it formats.
    let _ = e.to_string();
}

/// The batch decompressed to `n` bytes under `LIMIT`: under a limit of
/// exactly `n` it still does, the same bytes; under `n - 1` it is refused
/// as too large.
fn check_exact_limit(batch: &Batch, n: usize) {
    let reread = |limit: usize| {
        let opts = ReadOptions {
            max_batch_bytes: i32::MAX as usize,
            max_decompressed_bytes: limit,
        };
        Batches::with_options(batch.as_bytes().clone(), opts)
            .next()
            .expect("one batch")
            .expect("same header")
            .records()
    };
    let exact = reread(n).expect("decompresses under a limit of its own size");
    assert_eq!(exact.buffer().len(), n);
    match reread(n - 1) {
        Err(RecordError::Compression(e))
            if matches!(*e, CompressionError::TooLarge { .. }) =>
        {
            assert_eq!(*e, CompressionError::TooLarge { limit: n - 1 })
        }
        Err(e) => panic!("limit {} below the output {n}: wrong error {e:?}", n - 1),
        Ok(r) => panic!(
            "limit {} below the output {n} accepted ({} bytes)",
            n - 1,
            r.buffer().len()
        ),
    }
}

/// A copy of `data` whose batch and message checksums are recomputed, walking
/// the blob as `Batches` does.
fn fix_crcs(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut pos = 0usize;
    while out.len() - pos >= LOG_OVERHEAD + 5 {
        let size = i32::from_be_bytes(out[pos + 8..pos + 12].try_into().unwrap());
        if size < 14 {
            break;
        }
        let end = pos + LOG_OVERHEAD + size as usize;
        if end > out.len() {
            break;
        }
        match out[pos + 16] {
            2 if size as usize >= 61 - LOG_OVERHEAD => {
                let crc = crc32c(&out[pos + 21..end]);
                out[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
            }
            0 | 1 => {
                let crc = crc32_ieee(&out[pos + 16..end]);
                out[pos + 12..pos + 16].copy_from_slice(&crc.to_be_bytes());
            }
            _ => break,
        }
        pos = end;
    }
    out
}

fn opt_bytes(u: &mut Unstructured<'_>) -> ArbResult<Option<Vec<u8>>> {
    Ok(if u.ratio(1, 8)? {
        None
    } else {
        let len = u.int_in_range(0..=40)?;
        Some(u.bytes(len)?.to_vec())
    })
}

/// Records derived from the input, built by sansa, must read back equal.
fn round_trip(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let compression = Compression::ALL[u.choose_index(Compression::ALL.len())?];
    let control = u.ratio(1, 16)?;
    let delete_horizon_ms = if u.ratio(1, 8)? {
        Some(u.arbitrary()?)
    } else {
        None
    };
    let opts = BatchOptions {
        compression,
        transactional: u.arbitrary()?,
        control,
        delete_horizon_ms,
        max_bytes: u.int_in_range(0..=4096)?,
        compression_ratio_estimate: 1.0,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::new(opts);
    let mut expected: Vec<(i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<Header>)> = Vec::new();
    let count = u.int_in_range(1..=6)?;
    let mut ts: i64 = u.arbitrary()?;
    for _ in 0..count {
        if u.ratio(1, 4)? {
            ts = u.arbitrary()?;
        } else {
            ts = ts.wrapping_add(u.int_in_range(-1000..=1000)?);
        }
        let key = opt_bytes(u)?;
        let value = opt_bytes(u)?;
        let nh = u.int_in_range(0..=3)?;
        let mut headers = Vec::new();
        for _ in 0..nh {
            let klen = u.int_in_range(0..=8)?;
            let k = Bytes::copy_from_slice(u.bytes(klen)?);
            let v = opt_bytes(u)?.map(Bytes::from);
            headers.push(Header::new(k, v));
        }
        match builder.try_append(ts, key.as_deref(), value.as_deref(), &headers) {
            Ok(()) => expected.push((ts, key, value, headers)),
            Err(e) => {
                assert!(!expected.is_empty(), "the first record always fits: {e}");
                break;
            }
        }
    }
    let stamp = BatchStamp {
        base_offset: u.arbitrary()?,
        partition_leader_epoch: u.arbitrary()?,
        producer: ProducerStamp {
            producer_id: u.arbitrary()?,
            producer_epoch: u.arbitrary()?,
            base_sequence: u.arbitrary()?,
        },
        log_append_time: if u.ratio(1, 4)? {
            Some(u.arbitrary()?)
        } else {
            None
        },
    };
    let mut sealed = builder.seal(&stamp).expect("a non-empty batch seals");
    assert!(builder.is_empty());
    check_built(&sealed.to_bytes(), &opts, &stamp, &expected);

    // Re-stamp (KIP-360) and read again: only the producer fields change.
    let producer = ProducerStamp {
        producer_id: u.arbitrary()?,
        producer_epoch: u.arbitrary()?,
        base_sequence: u.arbitrary()?,
    };
    let held = sealed.to_bytes(); // a request still holding the old bytes
    sealed.restamp(&producer);
    assert_eq!(sealed.producer(), producer);
    check_built(&held, &opts, &stamp, &expected);
    let restamped = BatchStamp { producer, ..stamp };
    check_built(&sealed.to_bytes(), &opts, &restamped, &expected);
    Ok(())
}

#[allow(clippy::type_complexity)]
fn check_built(
    bytes: &Bytes,
    opts: &BatchOptions,
    stamp: &BatchStamp,
    expected: &[(i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<Header>)],
) {
    // Read with the default (large) limit: what we build, we read.
    let mut batches = Batches::new(bytes.clone());
    let batch = batches
        .next()
        .expect("one batch")
        .expect("our batch parses");
    assert!(batches.next().is_none());
    assert_eq!(batches.truncated_tail(), 0);
    batch.verify_crc().expect("our CRC verifies");
    assert_eq!(batch.magic(), 2);
    assert_eq!(batch.compression(), opts.compression);
    assert_eq!(batch.is_transactional(), opts.transactional);
    assert_eq!(batch.is_control(), opts.control);
    assert_eq!(batch.delete_horizon_ms(), opts.delete_horizon_ms);
    assert_eq!(batch.base_offset(), stamp.base_offset);
    assert_eq!(batch.partition_leader_epoch(), stamp.partition_leader_epoch);
    assert_eq!(batch.producer_id(), stamp.producer.producer_id);
    assert_eq!(batch.producer_epoch(), stamp.producer.producer_epoch);
    assert_eq!(batch.base_sequence(), stamp.producer.base_sequence);
    assert_eq!(batch.record_count(), Some(expected.len() as i32));
    assert_eq!(batch.last_offset_delta(), expected.len() as i32 - 1);
    let max_ts = expected.iter().map(|e| e.0).max().expect("non-empty");
    match stamp.log_append_time {
        Some(t) => {
            assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
            assert_eq!(batch.max_timestamp(), t);
        }
        None => {
            assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
            assert_eq!(batch.max_timestamp(), max_ts);
        }
    }
    let records: Vec<Record> = batch
        .records()
        .expect("our records decompress")
        .collect::<Result<_, _>>()
        .expect("our records parse");
    assert_eq!(records.len(), expected.len());
    for (i, (rec, (ts, key, value, headers))) in records.iter().zip(expected).enumerate() {
        assert_eq!(rec.offset, stamp.base_offset.wrapping_add(i as i64));
        let want_ts = stamp.log_append_time.unwrap_or(*ts);
        assert_eq!(rec.timestamp, want_ts, "record {i}");
        assert_eq!(rec.key.as_deref(), key.as_deref());
        assert_eq!(rec.value.as_deref(), value.as_deref());
        let got: Vec<Header> = rec.headers.iter().collect();
        assert_eq!(&got, headers);
    }
}
