//! zstd frames, with contexts kept between calls.
//!
//! Decompression is one-shot (`ZSTD_decompressDCtx`) into a buffer that the
//! [`Sink`] bounds, retried with a doubled buffer when zstd says it is too
//! small. That keeps memory under the limit however hostile the frame:
//! streaming decompression would instead allocate the window the frame
//! header asks for (up to 128 MiB by default) before producing a byte,
//! whereas one-shot decoding uses the output itself as its window. The
//! declared content size, when present, is only the first guess.

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx};

use super::sink::Sink;
use super::{Compression, CompressionError, CompressionLevel};

/// Kafka's `compression.zstd.level` range: `ZSTD_minCLevel()` (-2^17) ...
pub(super) const MIN_LEVEL: i32 = -131_072;
/// ... to `ZSTD_maxCLevel()`.
pub(super) const MAX_LEVEL: i32 = 22;
/// `ZSTD_CLEVEL_DEFAULT`, Kafka's default too.
const DEFAULT_LEVEL: i32 = 3;
/// First output guess when the frame does not declare its size.
const MIN_GUESS: usize = 16 * 1024;
/// Typical record data compresses 3 to 8 times; guessing high saves retries.
const GUESS_RATIO: usize = 8;
/// How far a declared content size is believed before output proves it:
/// up to this many times the input ...
const TRUSTED_RATIO: usize = 1024;
/// ... or this many bytes, whichever is more.
const TRUSTED_MIN: usize = 1 << 20;
/// zstd's text for `ZSTD_error_dstSize_tooSmall`, stable since zstd 1.0; the
/// safe wrapper exposes error names, not error codes.
const DST_TOO_SMALL: &str = "Destination buffer is too small";

/// Writes one zstd frame per call, reusing one compression context.
pub(super) struct Encoder {
    level: i32,
    cctx: Option<CCtx<'static>>,
}

impl Encoder {
    pub(super) fn new(level: CompressionLevel) -> Encoder {
        Encoder {
            level: level.get().unwrap_or(DEFAULT_LEVEL),
            cctx: None,
        }
    }

    pub(super) fn compress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        let failure = |reason: &str| CompressionError::failure(Compression::Zstd, reason);
        let cctx = match &mut self.cctx {
            Some(cctx) => cctx,
            None => {
                let mut cctx = CCtx::try_create()
                    .ok_or_else(|| failure("could not allocate a compression context"))?;
                cctx.set_parameter(CParameter::CompressionLevel(self.level))
                    .map_err(|code| failure(zstd_safe::get_error_name(code)))?;
                self.cctx.insert(cctx)
            }
        };
        let start = out.len();
        out.resize(start + zstd_safe::compress_bound(input.len()), 0);
        // compress2 writes the content size into the frame header, which lets
        // readers size their buffer exactly.
        match cctx.compress2(&mut out[start..], input) {
            Ok(written) => {
                out.truncate(start + written);
                Ok(())
            }
            Err(code) => {
                out.truncate(start);
                // Start over with a fresh context rather than trust this one.
                self.cctx = None;
                Err(failure(zstd_safe::get_error_name(code)))
            }
        }
    }
}

/// Reads zstd frames, reusing one decompression context.
#[derive(Default)]
pub(super) struct Decoder {
    dctx: Option<DCtx<'static>>,
}

impl Decoder {
    pub(super) fn decompress(
        &mut self,
        input: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), CompressionError> {
        if input.is_empty() {
            // zstd itself accepts zero frames; no Kafka writer produces them.
            return Err(CompressionError::corrupt(Compression::Zstd, "empty input"));
        }
        let dctx = match &mut self.dctx {
            Some(dctx) => dctx,
            None => self.dctx.insert(DCtx::try_create().ok_or_else(|| {
                CompressionError::failure(
                    Compression::Zstd,
                    "could not allocate a decompression context",
                )
            })?),
        };

        let mut want = match zstd_safe::get_frame_content_size(input) {
            Ok(Some(declared)) => {
                // zstd checks the declared size against what it decodes, so a
                // frame declaring more than the limit is too large or corrupt.
                let declared = usize::try_from(declared).unwrap_or(usize::MAX);
                if declared > sink.room() {
                    return Err(sink.too_large());
                }
                // Below the limit, believe it only as far as is plausible;
                // past that, the buffer grows only as zstd really fills it.
                declared.min(input.len().saturating_mul(TRUSTED_RATIO).max(TRUSTED_MIN))
            }
            // Unknown size, or a header zstd will reject below anyway.
            _ => input.len().saturating_mul(GUESS_RATIO).max(MIN_GUESS),
        };
        loop {
            let (buffer, capped) = sink.scratch(want);
            match dctx.decompress(buffer, input) {
                Ok(written) => return sink.commit(written),
                Err(code) if zstd_safe::get_error_name(code) == DST_TOO_SMALL => {
                    if capped {
                        return Err(sink.too_large());
                    }
                    want = want.saturating_mul(2).max(MIN_GUESS);
                }
                Err(code) => {
                    return Err(CompressionError::corrupt(
                        Compression::Zstd,
                        zstd_safe::get_error_name(code),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{
        compress, compress_with_level, decompress, Compression, CompressionError, CompressionLevel,
    };

    fn unzstd(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
        let mut out = Vec::new();
        decompress(Compression::Zstd, input, limit, &mut out).map(|()| out)
    }

    #[test]
    fn zstd_crate_reads_what_we_write_and_the_size_is_declared() {
        let data = b"zstd interop ".repeat(4000);
        let mut out = Vec::new();
        compress(Compression::Zstd, &data, &mut out).expect("compress");
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&out).ok(),
            Some(Some(data.len() as u64))
        );
        assert_eq!(
            zstd::decode_all(out.as_slice()).expect("zstd decodes"),
            data
        );
    }

    #[test]
    fn we_read_streamed_frames_without_content_size() {
        // What Java's ZstdOutputStream writes: no content size, and here a
        // checksum and several frames for good measure.
        let data = b"streamed without a size ".repeat(10_000);
        let mut framed = Vec::new();
        for part in data.chunks(70_000) {
            let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).expect("encoder");
            enc.include_contentsize(false).expect("flag");
            enc.include_checksum(true).expect("flag");
            std::io::Write::write_all(&mut enc, part).expect("write");
            let frame = enc.finish().expect("finish");
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&frame).ok(),
                Some(None)
            );
            framed.extend(frame);
        }
        assert_eq!(unzstd(&framed, data.len()).expect("decode"), data);
        assert_eq!(
            unzstd(&framed, data.len() - 1),
            Err(CompressionError::TooLarge {
                limit: data.len() - 1
            })
        );
    }

    #[test]
    fn skippable_frames_are_skipped() {
        let mut input = vec![0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9];
        let mut frame = Vec::new();
        compress(Compression::Zstd, b"after a skippable frame", &mut frame).expect("compress");
        input.extend(frame);
        assert_eq!(
            unzstd(&input, 100).expect("decode"),
            b"after a skippable frame"
        );
    }

    /// A single-segment frame built by hand: an 8-byte content size field
    /// declaring `declared`, then one raw block holding "hello".
    fn hand_built_frame(declared: u64) -> Vec<u8> {
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
        frame.extend_from_slice(&declared.to_le_bytes());
        frame.extend_from_slice(&[(5 << 3) | 1, 0, 0]); // last block, raw, 5 bytes
        frame.extend_from_slice(b"hello");
        frame
    }

    #[test]
    fn lying_content_size_is_not_trusted_for_allocation() {
        assert_eq!(
            unzstd(&hand_built_frame(5), 5).expect("honest frame"),
            b"hello"
        );

        let liar = hand_built_frame(1 << 40);
        let mut out = Vec::new();
        assert_eq!(
            decompress(Compression::Zstd, &liar, 1 << 20, &mut out),
            Err(CompressionError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(out.capacity(), 0);

        // With no effective limit, the claim still buys no terabyte.
        let err = decompress(Compression::Zstd, &liar, usize::MAX, &mut out);
        assert!(
            matches!(err, Err(CompressionError::Corrupt { .. })),
            "{err:?}"
        );
        assert!(out.capacity() <= 2 << 20, "capacity {}", out.capacity());
    }

    #[test]
    fn levels_across_kafkas_range_round_trip() {
        let data = b"level ".repeat(1000);
        for level in [-131_072, -5, 0, 1, 3, 19, 22] {
            let mut out = Vec::new();
            compress_with_level(
                Compression::Zstd,
                CompressionLevel::new(level),
                &data,
                &mut out,
            )
            .expect("compress");
            assert_eq!(
                unzstd(&out, data.len()).expect("decode"),
                data,
                "level {level}"
            );
        }
    }

    proptest! {
        #[test]
        fn zstd_crate_output_round_trips_through_us(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            level in 1..5i32,
        ) {
            let encoded = zstd::encode_all(data.as_slice(), level).expect("encode");
            prop_assert_eq!(unzstd(&encoded, data.len()).expect("decode"), data);
        }
    }
}
