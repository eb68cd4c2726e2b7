//! Any bytes, decompressed: the first byte picks the codec (low bits), the
//! limit and the entry point (high bits); the rest is the input. Never a
//! panic; never more than `limit` bytes appended; on error the output is
//! left as it was; a reused `Decompressor` gives the same answer as a fresh
//! one; the limit is exact (the output's own size succeeds, one byte less
//! is `TooLarge`). Then the rest, compressed with that codec (and the
//! snappy-java framing, and a level when the codec has levels), must
//! decompress back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sansa_core::compression::{
    compress, compress_snappy_java, compress_with_level, decompress, Compression, CompressionError,
    CompressionLevel, Decompressor,
};

const LIMITS: [usize; 4] = [0, 100, 4096, 64 * 1024];
/// What the caller's buffer already holds: never touched.
const PREFIX: &[u8] = b"prefix";

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let codec = Compression::ALL[usize::from(sel & 7) % Compression::ALL.len()];
    let limit = LIMITS[usize::from(sel >> 3) & 3];
    let lz4_v0 = codec == Compression::Lz4 && sel & 0x20 != 0;

    let mut d = Decompressor::new();
    let run = |d: &mut Decompressor, limit: usize| -> (Result<(), CompressionError>, Vec<u8>) {
        let mut out = PREFIX.to_vec();
        let r = if lz4_v0 {
            d.decompress_lz4_magic_v0(input, limit, &mut out)
        } else {
            d.decompress(codec, input, limit, &mut out)
        };
        assert_eq!(&out[..PREFIX.len()], PREFIX, "the prefix is never touched");
        let produced = out.len() - PREFIX.len();
        match &r {
            Ok(()) => assert!(
                produced <= limit,
                "{codec}: {produced} bytes > limit {limit}"
            ),
            Err(e) => {
                assert_eq!(produced, 0, "{codec}: output left behind after {e}");
                if let CompressionError::TooLarge { limit: l } = e {
                    assert_eq!(*l, limit);
                }
            }
        }
        (r, out.split_off(PREFIX.len()))
    };

    let (first, out) = run(&mut d, limit);
    // The same decompressor again (its state reused after success or
    // failure) and a fresh one agree.
    let (second, out2) = run(&mut d, limit);
    assert_eq!(first, second, "{codec}: a reused decompressor disagrees");
    assert_eq!(out, out2);
    if !lz4_v0 {
        let mut fresh = Vec::new();
        let r = decompress(codec, input, limit, &mut fresh);
        assert_eq!(r, first);
        assert_eq!(fresh, out);
    }

    if first.is_ok() && !out.is_empty() {
        let n = out.len();
        let (exact, same) = run(&mut d, n);
        assert_eq!(
            exact,
            Ok(()),
            "{codec}: fails under a limit of its own size {n}"
        );
        assert_eq!(same, out);
        let (below, _) = run(&mut d, n - 1);
        assert_eq!(
            below,
            Err(CompressionError::TooLarge { limit: n - 1 }),
            "{codec}: output of {n} bytes under limit {}",
            n - 1
        );
    }

    // Round trip: what we write, we read, under a limit of exactly its size.
    let mut compressed = Vec::new();
    compress(codec, input, &mut compressed).expect("compresses");
    let mut back = Vec::new();
    d.decompress(codec, &compressed, input.len(), &mut back)
        .unwrap_or_else(|e| panic!("{codec}: our own output does not decompress: {e}"));
    assert_eq!(back, input, "{codec}: round trip");
    if !input.is_empty() {
        let mut short = Vec::new();
        assert_eq!(
            d.decompress(codec, &compressed, input.len() - 1, &mut short),
            Err(CompressionError::TooLarge {
                limit: input.len() - 1
            }),
            "{codec}: round trip under a limit one byte short"
        );
        assert!(short.is_empty());
    }
    match codec {
        Compression::Snappy => {
            let mut java = Vec::new();
            compress_snappy_java(input, &mut java).expect("snappy-java framing");
            let mut back = Vec::new();
            d.decompress(codec, &java, input.len(), &mut back)
                .unwrap_or_else(|e| panic!("snappy-java round trip: {e}"));
            assert_eq!(back, input);
        }
        Compression::Gzip | Compression::Zstd => {
            let level = match codec {
                Compression::Gzip => 1 + i32::from(sel >> 5) % 9,
                _ => i32::from(sel >> 5) - 3, // -3..=4: quick levels only
            };
            let mut c = Vec::new();
            compress_with_level(codec, CompressionLevel::new(level), input, &mut c)
                .expect("compresses at a valid level");
            let mut back = Vec::new();
            d.decompress(codec, &c, input.len(), &mut back)
                .unwrap_or_else(|e| panic!("{codec} level {level} round trip: {e}"));
            assert_eq!(back, input);
        }
        Compression::Lz4 => {
            // What we write has a correct header checksum, which the v0
            // entry point also takes.
            let mut back = Vec::new();
            d.decompress_lz4_magic_v0(&compressed, input.len(), &mut back)
                .unwrap_or_else(|e| panic!("lz4 v0 entry point round trip: {e}"));
            assert_eq!(back, input);
        }
        _ => {}
    }
});
