//! LZ4 frames, as described in the parent module's "LZ4 framing" section.
//!
//! The frame layer is ours, on top of `lz4_flex`'s block functions, rather
//! than `lz4_flex::frame`, because:
//! - what we write must be exactly Java's header (independent 64 KiB blocks,
//!   nothing optional), since the Java client rejects linked blocks;
//! - decoding writes each block straight into the caller's buffer under the
//!   limit, where `FrameDecoder` first allocates buffers sized by the header
//!   (12 MiB for linked 4 MiB blocks, whatever the limit) and copies through
//!   them;
//! - a frame cut off at a block boundary must be an error, and
//!   `FrameDecoder` reads it as a clean end of stream.

use std::hash::Hasher as _;

use lz4_flex::block::{
    compress_into, decompress_into, decompress_into_with_dict, get_maximum_output_size,
    DecompressError,
};
use twox_hash::XxHash32;

use super::sink::Sink;
use super::{Compression, CompressionError};

/// Kafka's `compression.lz4.level` range (lz4-java's levels); accepted and
/// ignored, see [`super::CompressionLevel`].
pub(super) const MIN_LEVEL: i32 = 1;
/// See [`MIN_LEVEL`].
pub(super) const MAX_LEVEL: i32 = 17;

const MAGIC: u32 = 0x184d_2204;
/// Skippable frames have magics `0x184D2A50` to `0x184D2A5F`.
const SKIPPABLE_MAGIC: u32 = 0x184d_2a50;
const SKIPPABLE_MASK: u32 = 0xffff_fff0;

const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_1: u8 = 0b0100_0000;
const FLG_BLOCK_INDEPENDENT: u8 = 0b0010_0000;
const FLG_BLOCK_CHECKSUM: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_RESERVED: u8 = 0b0000_0010;
const FLG_DICT_ID: u8 = 0b0000_0001;
const BD_RESERVED: u8 = 0b1000_1111;

/// Java's `Lz4BlockOutputStream` FLG: version 1, independent blocks, no
/// checksums, no content size.
const WRITE_FLG: u8 = FLG_VERSION_1 | FLG_BLOCK_INDEPENDENT;
/// Java's default BD: block maximum size id 4, 64 KiB.
const WRITE_BD: u8 = 4 << 4;
const WRITE_BLOCK_SIZE: usize = 64 * 1024;

/// Set in a block's size word when the block is stored uncompressed.
const UNCOMPRESSED: u32 = 0x8000_0000;
/// How far back a linked block's matches may reach.
const WINDOW: usize = 64 * 1024;
/// No LZ4 sequence yields 255 bytes or more per byte it takes (a match
/// length grows by at most 255 per extra length byte).
const MAX_RATIO: usize = 255;

/// Which frame-descriptor checksums to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderChecksum {
    /// Only the checksum the frame format defines (every Kafka since 0.10).
    Correct,
    /// Also the pre-0.10 one that hashed the magic number too (KAFKA-3160).
    CorrectOrLegacy,
}

fn corrupt(reason: impl Into<String>) -> CompressionError {
    CompressionError::corrupt(Compression::Lz4, reason)
}

/// The HC byte: the second byte of the xxHash32 (seed 0) of `descriptor`.
fn header_checksum(descriptor: &[u8]) -> u8 {
    (XxHash32::oneshot(0, descriptor) >> 8) as u8
}

fn read_u32(input: &[u8], at: usize) -> Option<u32> {
    let bytes = input.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Appends one LZ4 frame holding `input`, laid out as Java's
/// `Lz4BlockOutputStream` lays it out: header, 64 KiB blocks (stored raw
/// when they do not shrink), end mark.
pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[WRITE_FLG, WRITE_BD, header_checksum(&[WRITE_FLG, WRITE_BD])]);
    for block in input.chunks(WRITE_BLOCK_SIZE) {
        let at = out.len();
        out.resize(at + 4 + get_maximum_output_size(block.len()), 0);
        let compressed = compress_into(block, &mut out[at + 4..])
            .map_err(|e| CompressionError::failure(Compression::Lz4, e.to_string()))?;
        if compressed < block.len() {
            // Less than 64 KiB, so it fits the 31 bits of a block size.
            out[at..at + 4].copy_from_slice(&(compressed as u32).to_le_bytes());
            out.truncate(at + 4 + compressed);
        } else {
            out.truncate(at);
            out.extend_from_slice(&(block.len() as u32 | UNCOMPRESSED).to_le_bytes());
            out.extend_from_slice(block);
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    Ok(())
}

/// Reads LZ4 frames (and skips skippable frames) until the input ends.
pub(super) fn decompress(
    input: &[u8],
    sink: &mut Sink<'_>,
    header_checksums: HeaderChecksum,
) -> Result<(), CompressionError> {
    if input.is_empty() {
        return Err(corrupt("empty input"));
    }
    let mut pos = 0;
    while pos < input.len() {
        let magic = read_u32(input, pos).ok_or_else(|| corrupt("truncated magic number"))?;
        if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
            let len =
                read_u32(input, pos + 4).ok_or_else(|| corrupt("truncated skippable frame"))?;
            pos = usize::try_from(len)
                .ok()
                .and_then(|len| pos.checked_add(8)?.checked_add(len))
                .filter(|&end| end <= input.len())
                .ok_or_else(|| corrupt("truncated skippable frame"))?;
            continue;
        }
        if magic != MAGIC {
            return Err(corrupt(format!("not an LZ4 frame (magic {magic:#010x})")));
        }
        pos = decompress_frame(input, pos + 4, sink, header_checksums)?;
    }
    Ok(())
}

/// Reads the frame whose descriptor starts at `pos`; returns where it ends.
fn decompress_frame(
    input: &[u8],
    mut pos: usize,
    sink: &mut Sink<'_>,
    header_checksums: HeaderChecksum,
) -> Result<usize, CompressionError> {
    let truncated = || corrupt("truncated frame descriptor");
    let descriptor_start = pos;
    let (flg, bd) = match input.get(pos..pos + 2) {
        Some(&[flg, bd]) => (flg, bd),
        _ => return Err(truncated()),
    };
    pos += 2;
    if flg & FLG_VERSION_MASK != FLG_VERSION_1 {
        return Err(corrupt(format!("unsupported frame version {}", flg >> 6)));
    }
    if flg & FLG_RESERVED != 0 || bd & BD_RESERVED != 0 {
        return Err(corrupt("reserved frame descriptor bits are set"));
    }
    if flg & FLG_DICT_ID != 0 {
        return Err(corrupt("frames that need a dictionary are not supported"));
    }
    let block_max = match (bd >> 4) & 0b111 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        id => return Err(corrupt(format!("invalid block maximum size id {id}"))),
    };
    let content_size = if flg & FLG_CONTENT_SIZE != 0 {
        let bytes = input.get(pos..pos + 8).ok_or_else(truncated)?;
        pos += 8;
        let mut size = [0; 8];
        size.copy_from_slice(bytes);
        Some(u64::from_le_bytes(size))
    } else {
        None
    };
    let stored = *input.get(pos).ok_or_else(truncated)?;
    let correct = stored == header_checksum(&input[descriptor_start..pos]);
    let legacy = header_checksums == HeaderChecksum::CorrectOrLegacy
        && stored == header_checksum(&input[descriptor_start - 4..pos]);
    if !correct && !legacy {
        return Err(corrupt("frame descriptor checksum mismatch"));
    }
    pos += 1;
    if let Some(size) = content_size {
        if usize::try_from(size).map_or(true, |size| size > sink.room()) {
            return Err(sink.too_large());
        }
    }

    let linked = flg & FLG_BLOCK_INDEPENDENT == 0;
    let block_checksums = flg & FLG_BLOCK_CHECKSUM != 0;
    let mut content_hash = (flg & FLG_CONTENT_CHECKSUM != 0).then(|| XxHash32::with_seed(0));
    let frame_start = sink.position();
    loop {
        let word = read_u32(input, pos).ok_or_else(|| corrupt("truncated: no end mark"))?;
        pos += 4;
        if word == 0 {
            break;
        }
        let len = (word & !UNCOMPRESSED) as usize;
        if len > block_max {
            return Err(corrupt(format!(
                "a {len}-byte block is larger than the frame's {block_max}-byte blocks"
            )));
        }
        let data = input
            .get(pos..pos + len)
            .ok_or_else(|| corrupt("truncated block"))?;
        pos += len;
        if block_checksums {
            let stored = read_u32(input, pos).ok_or_else(|| corrupt("truncated block checksum"))?;
            pos += 4;
            if XxHash32::oneshot(0, data) != stored {
                return Err(corrupt("block checksum mismatch"));
            }
        }
        let block_start = sink.position();
        if word & UNCOMPRESSED != 0 {
            sink.extend_from_slice(data)?;
        } else {
            decompress_block(data, block_max, linked.then_some(frame_start), sink)?;
        }
        if let Some(hash) = &mut content_hash {
            hash.write(sink.produced_since(block_start));
        }
    }
    if let Some(hash) = content_hash {
        let stored = read_u32(input, pos).ok_or_else(|| corrupt("truncated content checksum"))?;
        pos += 4;
        if hash.finish_32() != stored {
            return Err(corrupt("content checksum mismatch"));
        }
    }
    if let Some(size) = content_size {
        let actual = sink.produced_since(frame_start).len();
        if u64::try_from(actual).ok() != Some(size) {
            return Err(corrupt(format!(
                "the frame declares {size} bytes but holds {actual}"
            )));
        }
    }
    Ok(pos)
}

/// Decodes one compressed block into the sink. `linked_from` is where the
/// frame's output starts when blocks may refer to earlier ones.
fn decompress_block(
    data: &[u8],
    block_max: usize,
    linked_from: Option<usize>,
    sink: &mut Sink<'_>,
) -> Result<(), CompressionError> {
    let want = block_max.min(data.len().saturating_mul(MAX_RATIO));
    let result = match linked_from {
        Some(frame_start) => {
            let history_from = sink.position().saturating_sub(WINDOW).max(frame_start);
            let (history, buffer, capped) = sink.scratch_with_history(want, history_from);
            (decompress_into_with_dict(data, buffer, history), capped)
        }
        None => {
            let (buffer, capped) = sink.scratch(want);
            (decompress_into(data, buffer), capped)
        }
    };
    match result {
        (Ok(written), _) => sink.commit(written),
        (Err(DecompressError::OutputTooSmall { .. }), true) => Err(sink.too_large()),
        (Err(e), _) => Err(corrupt(format!("bad block: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};
    use proptest::prelude::*;

    use super::super::{compress, decompress, Compression, CompressionError, Decompressor};
    use super::*;

    fn unlz4(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
        let mut out = Vec::new();
        decompress(Compression::Lz4, input, limit, &mut out).map(|()| out)
    }

    fn lz4(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compress(Compression::Lz4, input, &mut out).expect("compress");
        out
    }

    fn flex_encode(info: FrameInfo, data: &[u8]) -> Vec<u8> {
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(data).expect("write");
        enc.finish().expect("finish")
    }

    /// Text that compresses, with enough variety to need many sequences.
    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"kafka record batch lz4 "[(i * 7 + i / 13) % 23])
            .collect()
    }

    #[test]
    fn header_is_javas_byte_for_byte() {
        // Lz4BlockOutputStream: magic LE, FLG 0x60, BD 0x40, HC = (xxh32 >> 8)
        // of FLG and BD; an empty stream is that plus the end mark.
        let out = lz4(b"");
        assert_eq!(&out[..6], &[0x04, 0x22, 0x4d, 0x18, 0x60, 0x40]);
        assert_eq!(out[6], (XxHash32::oneshot(0, &[0x60, 0x40]) >> 8) as u8);
        assert_eq!(&out[7..], &[0, 0, 0, 0]);
        assert_eq!(unlz4(&out, 0).expect("empty frame"), b"");
    }

    #[test]
    fn incompressible_blocks_are_stored_raw() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 56) as u8
            })
            .collect();
        let out = lz4(&noise);
        let word = u32::from_le_bytes([out[7], out[8], out[9], out[10]]);
        assert_eq!(word, 1000 | UNCOMPRESSED);
        assert_eq!(unlz4(&out, 1000).expect("decode"), noise);
    }

    #[test]
    fn lz4_flex_reads_what_we_write() {
        let data = sample(300_000);
        let mut back = Vec::new();
        FrameDecoder::new(lz4(&data).as_slice())
            .read_to_end(&mut back)
            .expect("lz4_flex decodes");
        assert_eq!(back, data);
    }

    #[test]
    fn we_read_every_frame_option_lz4_flex_writes() {
        let data = sample(600_000);
        for block_size in [
            BlockSize::Max64KB,
            BlockSize::Max256KB,
            BlockSize::Max1MB,
            BlockSize::Max4MB,
        ] {
            for block_mode in [BlockMode::Independent, BlockMode::Linked] {
                for checksums in [false, true] {
                    for content_size in [None, Some(data.len() as u64)] {
                        let info = FrameInfo::new()
                            .block_size(block_size)
                            .block_mode(block_mode)
                            .block_checksums(checksums)
                            .content_checksum(checksums)
                            .content_size(content_size);
                        let frame = flex_encode(info, &data);
                        let label =
                            format!("{block_size:?} {block_mode:?} {checksums} {content_size:?}");
                        assert_eq!(unlz4(&frame, data.len()).expect(&label), data, "{label}");
                    }
                }
            }
        }
    }

    #[test]
    fn checksums_are_verified() {
        let data = sample(100_000);
        let info = FrameInfo::new()
            .block_checksums(true)
            .content_checksum(true);
        let frame = flex_encode(info, &data);
        // Flip a byte of the content checksum (the last four bytes).
        let mut bad_content = frame.clone();
        let at = bad_content.len() - 1;
        bad_content[at] ^= 1;
        assert!(matches!(
            unlz4(&bad_content, 1 << 20),
            Err(CompressionError::Corrupt { .. })
        ));
        // Flip a byte inside the first block: its block checksum catches it.
        let mut bad_block = frame.clone();
        bad_block[20] ^= 1;
        assert!(matches!(
            unlz4(&bad_block, 1 << 20),
            Err(CompressionError::Corrupt { .. })
        ));
        // Flip the header checksum.
        let mut bad_header = lz4(&data);
        bad_header[6] ^= 1;
        assert!(matches!(
            unlz4(&bad_header, 1 << 20),
            Err(CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn legacy_header_checksum_only_with_the_magic_v0_entry_point() {
        let data = sample(10_000);
        let mut legacy = lz4(&data);
        // Pre-0.10 Kafka hashed magic + descriptor (KAFKA-3160).
        legacy[6] = header_checksum(&legacy[..6]);
        assert_ne!(legacy[6], lz4(&data)[6]);
        assert!(matches!(
            unlz4(&legacy, 1 << 20),
            Err(CompressionError::Corrupt { .. })
        ));
        let mut out = Vec::new();
        Decompressor::new()
            .decompress_lz4_magic_v0(&legacy, 1 << 20, &mut out)
            .expect("legacy HC accepted");
        assert_eq!(out, data);
        // The magic v0 path still takes correct frames.
        let mut out = Vec::new();
        Decompressor::new()
            .decompress_lz4_magic_v0(&lz4(&data), 1 << 20, &mut out)
            .expect("correct HC accepted");
        assert_eq!(out, data);
    }

    #[test]
    fn truncation_at_a_block_boundary_is_an_error() {
        let data = sample(200_000);
        let frame = lz4(&data);
        // Drop only the end mark: lz4_flex's FrameDecoder would accept this.
        let cut = &frame[..frame.len() - 4];
        assert!(matches!(
            unlz4(cut, 1 << 20),
            Err(CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn frames_follow_each_other_and_skippable_frames_are_skipped() {
        let mut input = lz4(b"first ");
        input.extend_from_slice(&0x184d_2a5au32.to_le_bytes());
        input.extend_from_slice(&3u32.to_le_bytes());
        input.extend_from_slice(b"abc");
        input.extend(lz4(b"second"));
        assert_eq!(unlz4(&input, 100).expect("decode"), b"first second");
    }

    #[test]
    fn header_options_that_kafka_never_writes_are_refused() {
        let frame = lz4(b"x");
        let with = |flg: u8, bd: u8| {
            let mut f = frame.clone();
            f[4] = flg;
            f[5] = bd;
            f[6] = header_checksum(&[flg, bd]);
            unlz4(&f, 10)
        };
        assert!(with(0x60, 0x40).is_ok());
        assert!(with(0x61, 0x40).is_err(), "dictionary id");
        assert!(with(0x62, 0x40).is_err(), "reserved FLG bit");
        assert!(with(0xa0, 0x40).is_err(), "version 2");
        assert!(with(0x60, 0x30).is_err(), "block size id 3");
        assert!(with(0x60, 0x41).is_err(), "reserved BD bits");
        assert!(
            unlz4(&[0x02, 0x21, 0x4c, 0x18, 0, 0, 0, 0], 10).is_err(),
            "legacy format"
        );
    }

    #[test]
    fn declared_content_size_over_the_limit_is_refused_before_decoding() {
        let data = sample(5000);
        let frame = flex_encode(FrameInfo::new().content_size(Some(5000)), &data);
        let mut out = Vec::new();
        assert_eq!(
            decompress(Compression::Lz4, &frame, 4999, &mut out),
            Err(CompressionError::TooLarge { limit: 4999 })
        );
        assert_eq!(out.capacity(), 0);
        // And a frame whose declared size is wrong is corrupt: declare 5000
        // bytes for 4000 (FLG, BD, 8-byte size, then the HC to recompute).
        let mut liar = flex_encode(FrameInfo::new().content_size(Some(4000)), &data[..4000]);
        liar[6..14].copy_from_slice(&5000u64.to_le_bytes());
        liar[14] = header_checksum(&liar[4..14]);
        let err = unlz4(&liar, 1 << 20);
        assert!(
            matches!(err, Err(CompressionError::Corrupt { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn a_big_block_size_does_not_buy_a_big_buffer() {
        // A 4 MiB-block frame holding a few bytes, read under a 1 KiB limit.
        let frame = flex_encode(FrameInfo::new().block_size(BlockSize::Max4MB), b"tiny");
        let mut out = Vec::new();
        decompress(Compression::Lz4, &frame, 1024, &mut out).expect("decode");
        assert_eq!(out, b"tiny");
        assert!(out.capacity() <= 2048, "capacity {}", out.capacity());
    }

    proptest! {
        #[test]
        fn linked_lz4_flex_frames_round_trip_through_us(
            data in proptest::collection::vec(0u8..4, 0..200_000),
        ) {
            let info = FrameInfo::new().block_mode(BlockMode::Linked).block_size(BlockSize::Max64KB);
            let frame = flex_encode(info, &data);
            prop_assert_eq!(unlz4(&frame, data.len()).expect("decode"), data);
        }
    }
}
