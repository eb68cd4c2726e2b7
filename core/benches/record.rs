//! Record batch throughput: build and read batches of 100 B and 1 KiB
//! records, uncompressed and per codec, against a memcpy and a CRC-32C
//! baseline over the same bytes.
//!
//! Each iteration handles one batch of `RECORDS` records, so the time per
//! iteration in microseconds is the cost per record in nanoseconds; the
//! throughput is of uncompressed record bytes.
//!
//! Run: `cargo bench -p sansa-core --bench record` (a filter such as
//! `-- read/100B` narrows it).

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sansa_core::compression::{Compression, Decompressor};
use sansa_core::record::{
    crc32c, BatchBuilder, BatchOptions, BatchStamp, Batches, SealedBatch, NO_HEADERS,
};

const RECORDS: usize = 1000;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Keys and values that compress like typical JSON-ish payloads: a fixed
/// skeleton with pseudo-random fields from a small alphabet.
fn payloads(value_len: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..RECORDS)
        .map(|i| {
            let key = format!("user-{:06}", next() % 100_000).into_bytes();
            let mut v = format!(
                "{{\"seq\":{i},\"ts\":{},\"data\":\"",
                1_700_000_000_000u64 + i as u64
            )
            .into_bytes();
            while v.len() < value_len - 2 {
                v.push(b"abcdefghijklmnop0123456789 "[(next() % 27) as usize]);
            }
            v.extend_from_slice(b"\"}");
            v.truncate(value_len);
            (key, v)
        })
        .collect()
}

fn build(records: &[(Vec<u8>, Vec<u8>)], builder: &mut BatchBuilder) -> SealedBatch {
    for (i, (k, v)) in records.iter().enumerate() {
        builder
            .append(1_700_000_000_000 + i as i64, Some(k), Some(v), NO_HEADERS)
            .expect("append");
    }
    builder.seal(&BatchStamp::default()).expect("seal")
}

fn options(compression: Compression) -> BatchOptions {
    BatchOptions {
        compression,
        max_bytes: usize::MAX,
        ..BatchOptions::default()
    }
}

fn bench(c: &mut Criterion) {
    for (label, value_len) in [("100B", 100usize), ("1KiB", 1024)] {
        let records = payloads(value_len);
        let uncompressed = {
            let mut b = BatchBuilder::new(options(Compression::None));
            build(&records, &mut b).into_bytes()
        };
        let mut group = c.benchmark_group(format!("record/{label}"));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Bytes(uncompressed.len() as u64));

        let src = uncompressed.to_vec();
        let mut dst = vec![0u8; src.len()];
        group.bench_function("baseline/memcpy", |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            })
        });
        group.bench_function("baseline/crc32c", |b| {
            b.iter(|| black_box(crc32c(black_box(&src))))
        });

        for codec in CODECS {
            let name = format!("{codec:?}").to_lowercase();
            let mut builder = BatchBuilder::new(options(codec));
            group.bench_function(BenchmarkId::new("build", &name), |b| {
                // As a producer would: the previous batch, once acknowledged,
                // hands its memory back to the builder.
                b.iter(|| {
                    let sealed = build(black_box(&records), &mut builder);
                    builder.recycle(black_box(sealed));
                })
            });

            let batch = build(&records, &mut builder).into_bytes();
            // A consumer keeps one decompressor for all batches.
            let mut dec = Decompressor::new();
            group.bench_function(BenchmarkId::new("read", &name), |b| {
                b.iter(|| {
                    let mut n = 0usize;
                    for batch in Batches::new(batch.clone()) {
                        for r in batch
                            .expect("batch")
                            .records_with(&mut dec)
                            .expect("records")
                        {
                            let r = r.expect("record");
                            n += r.value.map_or(0, |v| v.len());
                        }
                    }
                    black_box(n)
                })
            });
            group.bench_function(BenchmarkId::new("read_ref", &name), |b| {
                b.iter(|| {
                    let mut n = 0usize;
                    for batch in Batches::new(batch.clone()) {
                        let mut records = batch
                            .expect("batch")
                            .records_with(&mut dec)
                            .expect("records");
                        while let Some(r) = records.next_ref() {
                            n += r.expect("record").value.map_or(0, <[u8]>::len);
                        }
                    }
                    black_box(n)
                })
            });
            group.bench_function(BenchmarkId::new("read_verify_crc", &name), |b| {
                b.iter(|| {
                    let mut n = 0usize;
                    for batch in Batches::new(batch.clone()) {
                        let batch = batch.expect("batch");
                        batch.verify_crc().expect("crc");
                        for r in batch.records_with(&mut dec).expect("records") {
                            n += r.expect("record").value.map_or(0, |v| v.len());
                        }
                    }
                    black_box(n)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
