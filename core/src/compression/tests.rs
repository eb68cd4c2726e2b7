//! Properties every codec must keep, checked across all of them. Framing
//! details and interop with each underlying crate are tested in the codec's
//! own file.

use proptest::prelude::*;

use super::*;

const CODECS: [Compression; 5] = Compression::ALL;
const COMPRESSED: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn pack(codec: Compression, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compress(codec, input, &mut out).expect("compress");
    out
}

fn unpack(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    decompress(codec, input, limit, &mut out).map(|()| out)
}

/// Inputs that compress well, up to about `max_len` bytes: runs of one byte,
/// or a few short words repeated in random order.
fn compressible(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (any::<u8>(), 0..max_len).prop_map(|(b, n)| vec![b; n]),
        proptest::collection::vec(
            prop::sample::select(vec![
                &b"key-"[..],
                b"value ",
                b"\x00\x00\x00\x01",
                b"topic.partition"
            ]),
            0..max_len / 8,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

#[test]
fn ids_and_names_are_kafkas() {
    let expected = [
        (0, "none"),
        (1, "gzip"),
        (2, "snappy"),
        (3, "lz4"),
        (4, "zstd"),
    ];
    for (codec, (id, name)) in CODECS.into_iter().zip(expected) {
        assert_eq!(codec.id(), id);
        assert_eq!(codec.name(), name);
        assert_eq!(codec.to_string(), name);
        assert_eq!(Compression::from_id(id), Ok(codec));
        assert_eq!(name.parse::<Compression>(), Ok(codec));
        assert_eq!(name.to_uppercase().parse::<Compression>(), Ok(codec));
    }
    for id in 5..=u8::MAX {
        assert_eq!(
            Compression::from_id(id),
            Err(CompressionError::UnknownCodec(id))
        );
    }
    assert_eq!(
        "brotli".parse::<Compression>(),
        Err(CompressionError::UnknownName("brotli".into()))
    );
    assert_eq!(Compression::default(), Compression::None);
}

#[test]
fn levels_follow_kafkas_ranges() {
    let ok = |codec, level| Compressor::with_level(codec, CompressionLevel::new(level)).is_ok();
    assert!(ok(Compression::Gzip, 1) && ok(Compression::Gzip, 9) && ok(Compression::Gzip, -1));
    assert!(!ok(Compression::Gzip, 0) && !ok(Compression::Gzip, 10));
    assert!(ok(Compression::Lz4, 1) && ok(Compression::Lz4, 17));
    assert!(!ok(Compression::Lz4, 0) && !ok(Compression::Lz4, 18));
    assert!(ok(Compression::Zstd, -131_072) && ok(Compression::Zstd, 22));
    assert!(!ok(Compression::Zstd, -131_073) && !ok(Compression::Zstd, 23));
    assert!(!ok(Compression::Snappy, 1) && !ok(Compression::None, 0));
    for codec in CODECS {
        let compressor = Compressor::with_level(codec, CompressionLevel::DEFAULT).expect("default");
        assert_eq!(compressor.codec(), codec);
        assert_eq!(compressor.level(), CompressionLevel::DEFAULT);
    }
    assert_eq!(
        Compressor::with_level(Compression::Snappy, CompressionLevel::new(3)).map(|_| ()),
        Err(CompressionError::InvalidLevel {
            codec: Compression::Snappy,
            level: 3
        })
    );
}

#[test]
fn every_gzip_level_round_trips() {
    let data = b"gzip level ".repeat(2000);
    for level in [-1, 1, 5, 9] {
        let mut out = Vec::new();
        compress_with_level(
            Compression::Gzip,
            CompressionLevel::new(level),
            &data,
            &mut out,
        )
        .expect("compress");
        assert_eq!(
            unpack(Compression::Gzip, &out, data.len()).expect("decode"),
            data
        );
    }
}

#[test]
fn state_is_reusable_and_shareable_across_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Compressor>();
    assert_send::<Decompressor>();

    let mut decompressor = Decompressor::new();
    for codec in CODECS {
        let mut compressor = Compressor::new(codec);
        for round in 0..5usize {
            let data = format!("round {round} of {codec} ").repeat(round * 500);
            let mut packed = Vec::new();
            compressor
                .compress(data.as_bytes(), &mut packed)
                .expect("compress");
            let mut back = Vec::new();
            decompressor
                .decompress(codec, &packed, data.len(), &mut back)
                .expect("decompress");
            assert_eq!(back, data.as_bytes(), "{codec} round {round}");
        }
    }
}

#[test]
fn output_is_appended_and_restored_on_error() {
    for codec in CODECS {
        let data = b"appended after what was there".repeat(10);
        let mut packed = b"prefix".to_vec();
        Compressor::new(codec)
            .compress(&data, &mut packed)
            .expect("compress");
        assert!(packed.starts_with(b"prefix"));

        let mut out = b"kept".to_vec();
        // The limit counts only what this call appends.
        decompress(codec, &packed[6..], data.len(), &mut out).expect("fits exactly");
        assert_eq!(&out[..4], b"kept");
        assert_eq!(&out[4..], &data[..]);

        let mut out = b"kept".to_vec();
        let err = decompress(codec, &packed[6..], data.len() - 1, &mut out);
        assert_eq!(
            err,
            Err(CompressionError::TooLarge {
                limit: data.len() - 1
            }),
            "{codec}"
        );
        assert_eq!(out, b"kept", "{codec} left output behind");
    }
}

/// The brief's limit test: 10 MiB of zeros under a 1 MiB limit is refused
/// without the output buffer growing much past the limit.
#[test]
fn ten_mib_of_zeros_under_a_one_mib_limit_is_too_large_and_stays_small() {
    const LIMIT: usize = 1 << 20;
    let zeros = vec![0u8; 10 << 20];
    let mut decompressor = Decompressor::new();
    for codec in CODECS {
        let packed = pack(codec, &zeros);
        let mut out = Vec::new();
        let err = decompressor.decompress(codec, &packed, LIMIT, &mut out);
        assert_eq!(
            err,
            Err(CompressionError::TooLarge { limit: LIMIT }),
            "{codec}"
        );
        assert!(out.is_empty());
        assert!(
            out.capacity() <= LIMIT + 1,
            "{codec}: capacity {} for a limit of {LIMIT}",
            out.capacity()
        );
        // And it does decode under a limit that fits.
        if codec != Compression::None {
            let mut out = Vec::new();
            decompressor
                .decompress(codec, &packed, zeros.len(), &mut out)
                .expect("fits");
            assert_eq!(out.len(), zeros.len(), "{codec}");
            assert!(out.iter().all(|&b| b == 0));
            assert!(
                out.capacity() <= zeros.len() + 1,
                "{codec}: capacity {}",
                out.capacity()
            );
        }
    }
}

#[test]
fn streamed_inputs_without_size_hints_stay_under_the_limit() {
    // Without a usable declared size for the whole output (snappy-java
    // declares 32 KiB per chunk) the decoders grow as they go; check that
    // growth stops at the limit too.
    const LIMIT: usize = 1 << 20;
    let zeros = vec![0u8; 10 << 20];
    let mut enc = ::zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    enc.include_contentsize(false).expect("flag");
    std::io::Write::write_all(&mut enc, &zeros).expect("write");
    let zstd_frame = enc.finish().expect("finish");
    let mut gzip_two_members = pack(Compression::Gzip, &zeros);
    gzip_two_members.extend(pack(Compression::Gzip, b"")); // ISIZE 0 at the end
    let mut snappy_java = Vec::new();
    compress_snappy_java(&zeros, &mut snappy_java).expect("compress");
    for (codec, input) in [
        (Compression::Snappy, snappy_java),
        (Compression::Zstd, zstd_frame),
        (Compression::Gzip, gzip_two_members),
    ] {
        let mut out = Vec::new();
        let err = decompress(codec, &input, LIMIT, &mut out);
        assert_eq!(
            err,
            Err(CompressionError::TooLarge { limit: LIMIT }),
            "{codec}"
        );
        assert!(
            out.capacity() <= LIMIT + 1,
            "{codec}: capacity {}",
            out.capacity()
        );
    }
}

#[test]
fn empty_input_is_corrupt_for_every_real_codec() {
    for codec in COMPRESSED {
        assert!(
            matches!(
                unpack(codec, &[], 100),
                Err(CompressionError::Corrupt { .. })
            ),
            "{codec}"
        );
    }
    assert_eq!(unpack(Compression::None, &[], 0), Ok(Vec::new()));
}

#[test]
fn zero_limit_takes_only_empty_output() {
    for codec in CODECS {
        assert_eq!(
            unpack(codec, &pack(codec, b""), 0),
            Ok(Vec::new()),
            "{codec}"
        );
        assert_eq!(
            unpack(codec, &pack(codec, b"x"), 0),
            Err(CompressionError::TooLarge { limit: 0 }),
            "{codec}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_bytes_round_trip_through_every_codec(data in proptest::collection::vec(any::<u8>(), 0..40_000)) {
        for codec in CODECS {
            let packed = pack(codec, &data);
            prop_assert_eq!(unpack(codec, &packed, data.len()).expect("decode"), data.clone(), "{}", codec);
        }
    }

    #[test]
    fn compressible_bytes_round_trip_and_shrink(data in compressible(300_000)) {
        for codec in CODECS {
            let packed = pack(codec, &data);
            if codec != Compression::None && data.len() > 10_000 {
                prop_assert!(packed.len() < data.len() / 2, "{} did not compress", codec);
            }
            prop_assert_eq!(unpack(codec, &packed, data.len()).expect("decode"), data.clone(), "{}", codec);
        }
    }

    #[test]
    fn output_never_exceeds_the_limit(data in compressible(100_000), limit in 0..150_000usize) {
        for codec in CODECS {
            let mut out = Vec::new();
            match decompress(codec, &pack(codec, &data), limit, &mut out) {
                Ok(()) => prop_assert!(data.len() <= limit && out == data),
                Err(e) => {
                    prop_assert!(data.len() > limit, "{}: {}", codec, e);
                    prop_assert_eq!(e, CompressionError::TooLarge { limit });
                    prop_assert!(out.is_empty());
                }
            }
            prop_assert!(out.capacity() <= limit + 1, "{}: capacity {}", codec, out.capacity());
        }
    }

    #[test]
    fn every_truncation_is_an_error(data in proptest::collection::vec(any::<u8>(), 0..5_000), cut in any::<prop::sample::Index>()) {
        for codec in COMPRESSED {
            let packed = pack(codec, &data);
            let cut = cut.index(packed.len());
            let result = unpack(codec, &packed[..cut], 1 << 20);
            prop_assert!(matches!(result, Err(CompressionError::Corrupt { .. })), "{} cut at {}/{}: {:?}", codec, cut, packed.len(), result);
        }
    }

    #[test]
    fn mutated_input_never_panics_nor_overflows_the_limit(
        data in compressible(30_000),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..8),
        limit in 0..60_000usize,
    ) {
        let mut decompressor = Decompressor::new();
        for codec in COMPRESSED {
            let mut packed = pack(codec, &data);
            for (at, mask) in &flips {
                let at = at.index(packed.len());
                packed[at] ^= mask;
            }
            let mut out = vec![1, 2, 3];
            match decompressor.decompress(codec, &packed, limit, &mut out) {
                Ok(()) => prop_assert!(out.len() - 3 <= limit),
                Err(_) => prop_assert_eq!(&out, &[1, 2, 3]),
            }
            prop_assert!(out.capacity() <= 3 + limit + 1 + 64, "{}: capacity {}", codec, out.capacity());
            // The state survives a failure.
            let mut again = Vec::new();
            decompressor.decompress(codec, &pack(codec, b"still works"), 100, &mut again).expect("reuse");
            prop_assert_eq!(again, b"still works".to_vec());
        }
    }

    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2_000), limit in 0..100_000usize) {
        let mut decompressor = Decompressor::new();
        for codec in CODECS {
            let mut out = Vec::new();
            if decompressor.decompress(codec, &input, limit, &mut out).is_ok() {
                prop_assert!(out.len() <= limit);
            }
            prop_assert!(out.capacity() <= limit + 1 + 64, "{}: capacity {}", codec, out.capacity());
        }
        let mut out = Vec::new();
        let _ = decompressor.decompress_lz4_magic_v0(&input, limit, &mut out);
        prop_assert!(out.len() <= limit);
    }

    #[test]
    fn random_bytes_behind_a_valid_magic_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2_000), which in 0..5usize) {
        let magics: [&[u8]; 5] = [
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
            b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01",
            &[0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82],
            &[0x28, 0xb5, 0x2f, 0xfd],
            &[0x04, 0x22, 0x4d, 0x18],
        ];
        let codec = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd, Compression::Lz4][which];
        let mut input = magics[which].to_vec();
        input.extend(body);
        let mut out = Vec::new();
        if decompress(codec, &input, 50_000, &mut out).is_ok() {
            prop_assert!(out.len() <= 50_000);
        }
        prop_assert!(out.capacity() <= 50_000 + 1 + 64);
    }
}

/// The text every file in `testdata/` holds; see `testdata/README.md`.
fn fixture_text() -> Vec<u8> {
    (0..1500)
        .flat_map(|i| {
            format!(
                "{:03} the quick brown kafka record jumps over the lazy broker\n",
                i % 100
            )
            .into_bytes()
        })
        .collect()
}

#[test]
fn fixtures_from_other_implementations_decode() {
    let text = fixture_text();
    assert_eq!(text.len(), 90_000);
    let fixtures: [(Compression, &str, &[u8]); 8] = [
        (
            Compression::Snappy,
            "snappy_java_32k.bin",
            include_bytes!("testdata/snappy_java_32k.bin"),
        ),
        (
            Compression::Lz4,
            "lz4_java_frame.lz4",
            include_bytes!("testdata/lz4_java_frame.lz4"),
        ),
        (
            Compression::Lz4,
            "lz4_cli_default.lz4",
            include_bytes!("testdata/lz4_cli_default.lz4"),
        ),
        (
            Compression::Lz4,
            "lz4_cli_linked_checksums_size.lz4",
            include_bytes!("testdata/lz4_cli_linked_checksums_size.lz4"),
        ),
        (
            Compression::Zstd,
            "zstd_cli.zst",
            include_bytes!("testdata/zstd_cli.zst"),
        ),
        (
            Compression::Zstd,
            "zstd_cli_stream.zst",
            include_bytes!("testdata/zstd_cli_stream.zst"),
        ),
        (
            Compression::Gzip,
            "gzip_cli_named.gz",
            include_bytes!("testdata/gzip_cli_named.gz"),
        ),
        (
            Compression::Gzip,
            "gzip_cli_two_members.gz",
            include_bytes!("testdata/gzip_cli_two_members.gz"),
        ),
    ];
    let mut decompressor = Decompressor::new();
    for (codec, name, bytes) in fixtures {
        let mut out = Vec::new();
        decompressor
            .decompress(codec, bytes, text.len(), &mut out)
            .expect(name);
        assert!(out == text, "{name} decoded to something else");
        let mut out = Vec::new();
        assert_eq!(
            decompressor.decompress(codec, bytes, text.len() - 1, &mut out),
            Err(CompressionError::TooLarge {
                limit: text.len() - 1
            }),
            "{name}"
        );
    }
    let mut out = Vec::new();
    decompressor
        .decompress(
            Compression::Snappy,
            include_bytes!("testdata/snappy_java_empty.bin"),
            0,
            &mut out,
        )
        .expect("empty snappy-java stream");
    assert!(out.is_empty());
}

#[test]
fn we_write_what_java_writes() {
    let text = fixture_text();
    // snappy-java's SnappyOutputStream with Kafka's 32 KiB blocks, byte for byte.
    let mut framed = Vec::new();
    compress_snappy_java(&text, &mut framed).expect("compress");
    assert!(framed == include_bytes!("testdata/snappy_java_32k.bin"));
    let mut empty = Vec::new();
    compress_snappy_java(b"", &mut empty).expect("compress");
    assert_eq!(empty, include_bytes!("testdata/snappy_java_empty.bin"));
    // The LZ4 frame header (magic, FLG, BD, HC) is lz4-java's and Kafka's.
    let lz4 = pack(Compression::Lz4, &text);
    assert_eq!(lz4[..7], include_bytes!("testdata/lz4_java_frame.lz4")[..7]);
}
