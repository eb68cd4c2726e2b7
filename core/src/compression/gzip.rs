//! gzip: RFC 1952 members around raw deflate.
//!
//! We frame the members ourselves around flate2's raw deflate so that one
//! deflate state (a few hundred kilobytes) serves every batch, and so that
//! inflating writes straight into the caller's buffer under the [`Sink`]'s
//! limit. Reading accepts several members back to back, because Java's
//! `GZIPInputStream`, which Kafka's Java client reads with, does.

use flate2::{Compress, Crc, Decompress, FlushCompress, FlushDecompress, Status};

use super::sink::Sink;
use super::{Compression, CompressionError, CompressionLevel};

/// Kafka's `compression.gzip.level` range (`Deflater.BEST_SPEED` to
/// `Deflater.BEST_COMPRESSION`).
pub(super) const MIN_LEVEL: i32 = 1;
/// See [`MIN_LEVEL`].
pub(super) const MAX_LEVEL: i32 = 9;
/// zlib's and Java's `Deflater.DEFAULT_COMPRESSION`.
const DEFAULT_LEVEL: u32 = 6;

const ID1: u8 = 0x1f;
const ID2: u8 = 0x8b;
const CM_DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;
/// RFC 1952's "unknown" operating system: the batch is not a file.
const OS_UNKNOWN: u8 = 255;
const FIXED_HEADER_LEN: usize = 10;
const TRAILER_LEN: usize = 8;
/// Deflate cannot expand data more than this (a 258-byte match in a bit
/// more than two bits), so no member's declared size beyond it is believed.
const MAX_RATIO: usize = 1032;

fn corrupt(reason: impl Into<String>) -> CompressionError {
    CompressionError::corrupt(Compression::Gzip, reason)
}

/// Writes one gzip member per call, reusing one deflate state.
pub(super) struct Encoder {
    level: flate2::Compression,
    deflate: Option<Compress>,
}

impl Encoder {
    /// `level` has been validated: 1 to 9, -1 or the default.
    pub(super) fn new(level: CompressionLevel) -> Encoder {
        let level = match level.get() {
            Some(level @ MIN_LEVEL..=MAX_LEVEL) => level.unsigned_abs(),
            _ => DEFAULT_LEVEL,
        };
        Encoder {
            level: flate2::Compression::new(level),
            deflate: None,
        }
    }

    pub(super) fn compress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        let level = self.level;
        let deflate = self
            .deflate
            .get_or_insert_with(|| Compress::new(level, false));
        deflate.reset();

        // RFC 1952 XFL: 2 for the slowest level, 4 for the fastest.
        let xfl = match level.level() {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        out.extend_from_slice(&[ID1, ID2, CM_DEFLATE, 0, 0, 0, 0, 0, xfl, OS_UNKNOWN]);

        // Room for the worst case (zlib's deflateBound), so one pass is the rule.
        let n = input.len();
        out.reserve(n + (n >> 12) + (n >> 14) + (n >> 25) + 64);
        let mut consumed = 0;
        loop {
            let remaining = input.get(consumed..).unwrap_or_default();
            let in_before = deflate.total_in();
            let out_before = out.len();
            let status = deflate
                .compress_vec(remaining, out, FlushCompress::Finish)
                .map_err(|e| CompressionError::failure(Compression::Gzip, e.to_string()))?;
            let step = usize::try_from(deflate.total_in() - in_before).unwrap_or(usize::MAX);
            consumed = consumed.saturating_add(step);
            if status == Status::StreamEnd {
                break;
            }
            if out.len() == out_before && step == 0 && out.len() < out.capacity() {
                return Err(CompressionError::failure(
                    Compression::Gzip,
                    "deflate made no progress",
                ));
            }
            if out.len() == out.capacity() {
                out.reserve(out.len() / 4 + 1024);
            }
        }

        let mut crc = Crc::new();
        crc.update(input);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE is the input length modulo 2^32 (RFC 1952): truncation intended.
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        Ok(())
    }
}

/// Reads gzip members, reusing one inflate state.
#[derive(Default)]
pub(super) struct Decoder {
    inflate: Option<Decompress>,
}

impl Decoder {
    pub(super) fn decompress(
        &mut self,
        input: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), CompressionError> {
        if input.is_empty() {
            return Err(corrupt("empty input"));
        }
        let inflate = self.inflate.get_or_insert_with(|| Decompress::new(false));

        // The last member's ISIZE is usually the whole size (one member), so
        // start there, plus one byte so that the end of the stream is seen
        // without another round; believe it only as far as deflate can expand.
        let mut want = match input.len().checked_sub(4).and_then(|at| input.get(at..)) {
            Some(isize) => {
                let declared = u32::from_le_bytes([isize[0], isize[1], isize[2], isize[3]]);
                usize::try_from(declared)
                    .unwrap_or(usize::MAX)
                    .min(input.len().saturating_mul(MAX_RATIO))
                    .saturating_add(1)
            }
            None => 1,
        };

        let mut pos = 0;
        while pos < input.len() {
            pos += header_len(input.get(pos..).unwrap_or_default())?;
            inflate.reset(false);
            let member_start = sink.position();
            loop {
                let remaining = input.get(pos..).unwrap_or_default();
                let out = sink.spare_capacity(want)?;
                let in_before = inflate.total_in();
                let out_before = out.len();
                let status = inflate
                    .decompress_vec(remaining, out, FlushDecompress::None)
                    .map_err(|e| corrupt(e.to_string()))?;
                let produced = out.len() - out_before;
                let out_full = out.len() == out.capacity();
                let step = usize::try_from(inflate.total_in() - in_before).unwrap_or(usize::MAX);
                pos = pos.saturating_add(step);
                sink.sync_len()?;
                if status == Status::StreamEnd {
                    break;
                }
                if step == 0 && produced == 0 && !out_full {
                    return Err(corrupt("truncated deflate stream"));
                }
                want = sink.next_growth();
            }

            let trailer = input
                .get(pos..pos.saturating_add(TRAILER_LEN))
                .ok_or_else(|| corrupt("truncated trailer"))?;
            let member = sink.produced_since(member_start);
            let mut crc = Crc::new();
            crc.update(member);
            if trailer[..4] != crc.sum().to_le_bytes() {
                return Err(corrupt("CRC-32 mismatch"));
            }
            // ISIZE: length modulo 2^32, so truncation intended.
            if trailer[4..] != (member.len() as u32).to_le_bytes() {
                return Err(corrupt("length (ISIZE) mismatch"));
            }
            pos += TRAILER_LEN;
            want = sink.next_growth();
        }
        Ok(())
    }
}

/// The length of the RFC 1952 member header at the start of `input`.
fn header_len(input: &[u8]) -> Result<usize, CompressionError> {
    let truncated = || corrupt("truncated header");
    let fixed = input.get(..FIXED_HEADER_LEN).ok_or_else(truncated)?;
    if fixed[0] != ID1 || fixed[1] != ID2 {
        return Err(corrupt("not a gzip member (bad magic)"));
    }
    if fixed[2] != CM_DEFLATE {
        return Err(corrupt(format!("unknown compression method {}", fixed[2])));
    }
    let flags = fixed[3];
    if flags & FRESERVED != 0 {
        return Err(corrupt("reserved header flags are set"));
    }
    let mut pos = FIXED_HEADER_LEN;
    if flags & FEXTRA != 0 {
        let xlen = input.get(pos..pos + 2).ok_or_else(truncated)?;
        pos += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let field = input.get(pos..).ok_or_else(truncated)?;
            let nul = field.iter().position(|&b| b == 0).ok_or_else(truncated)?;
            pos += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        let stored = input.get(pos..pos + 2).ok_or_else(truncated)?;
        let mut crc = Crc::new();
        crc.update(input.get(..pos).ok_or_else(truncated)?);
        // The header CRC is the low 16 bits of the CRC-32 (RFC 1952).
        if stored != (crc.sum() as u16).to_le_bytes() {
            return Err(corrupt("header CRC mismatch"));
        }
        pos += 2;
    }
    if pos > input.len() {
        return Err(truncated());
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use flate2::write::GzEncoder;
    use flate2::GzBuilder;
    use proptest::prelude::*;

    use super::super::{compress, decompress, Compression, CompressionError};

    fn gz(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compress(Compression::Gzip, input, &mut out).expect("compress");
        out
    }

    fn ungz(input: &[u8]) -> Result<Vec<u8>, CompressionError> {
        let mut out = Vec::new();
        decompress(Compression::Gzip, input, 1 << 26, &mut out).map(|()| out)
    }

    #[test]
    fn header_is_a_plain_gzip_member() {
        let out = gz(b"hello");
        assert_eq!(&out[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(out[9], 255);
        assert_eq!(&out[out.len() - 4..], &5u32.to_le_bytes());
    }

    #[test]
    fn flate2_reads_what_we_write() {
        let data = b"interop ".repeat(5000);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz(&data).as_slice())
            .read_to_end(&mut back)
            .expect("flate2 decodes");
        assert_eq!(back, data);
    }

    #[test]
    fn we_read_what_flate2_writes_at_every_level() {
        let data = b"level test data ".repeat(3000);
        for level in 0..=9 {
            let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            enc.write_all(&data).expect("write");
            assert_eq!(ungz(&enc.finish().expect("finish")).expect("decode"), data);
        }
    }

    #[test]
    fn optional_header_fields_are_skipped_and_header_crc_checked() {
        let data = b"with a name, a comment, extra and a header crc".to_vec();
        let mut enc = GzBuilder::new()
            .filename("batch.bin")
            .comment("made by a test")
            .extra(vec![1, 2, 3, 4])
            .mtime(1_700_000_000)
            .operating_system(3)
            .write(Vec::new(), flate2::Compression::default());
        enc.write_all(&data).expect("write");
        let member = enc.finish().expect("finish");
        assert_eq!(ungz(&member).expect("decode"), data);

        // Same member with FHCRC set by hand.
        let mut with_hcrc = member.clone();
        with_hcrc[3] |= super::FHCRC;
        let hlen = super::header_len(&member).expect("header");
        let mut crc = flate2::Crc::new();
        crc.update(&with_hcrc[..hlen]);
        let hcrc = (crc.sum() as u16).to_le_bytes();
        with_hcrc.splice(hlen..hlen, hcrc);
        assert_eq!(ungz(&with_hcrc).expect("decode with FHCRC"), data);
        with_hcrc[hlen] ^= 1;
        assert!(ungz(&with_hcrc).is_err());
    }

    #[test]
    fn concatenated_members_are_one_stream() {
        let mut both = gz(b"first member, ");
        both.extend(gz(b""));
        both.extend(gz(b"second member"));
        assert_eq!(ungz(&both).expect("decode"), b"first member, second member");
        let mut multi = Vec::new();
        flate2::read::MultiGzDecoder::new(both.as_slice())
            .read_to_end(&mut multi)
            .expect("flate2 reads it too");
        assert_eq!(multi, b"first member, second member");
    }

    #[test]
    fn trailing_garbage_and_bad_trailers_are_corrupt() {
        let good = gz(b"payload payload payload");
        let mut garbage = good.clone();
        garbage.extend_from_slice(b"xx");
        assert!(matches!(
            ungz(&garbage),
            Err(CompressionError::Corrupt { .. })
        ));

        let mut bad_crc = good.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 0xff;
        assert!(matches!(
            ungz(&bad_crc),
            Err(CompressionError::Corrupt { .. })
        ));

        let mut bad_len = good.clone();
        let at = bad_len.len() - 1;
        bad_len[at] ^= 0xff;
        assert!(matches!(
            ungz(&bad_len),
            Err(CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn lying_isize_does_not_drive_allocation() {
        // A tiny member whose ISIZE claims 4 GiB - 1.
        let mut lying = gz(b"tiny");
        let at = lying.len() - 4;
        lying[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut out = Vec::new();
        let err = decompress(Compression::Gzip, &lying, 1 << 30, &mut out);
        assert!(matches!(err, Err(CompressionError::Corrupt { .. })));
        assert!(out.capacity() < 64 * 1024, "capacity {}", out.capacity());
    }

    proptest! {
        #[test]
        fn flate2_output_round_trips_through_us(data in proptest::collection::vec(any::<u8>(), 0..20_000)) {
            let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&data).expect("write");
            prop_assert_eq!(ungz(&enc.finish().expect("finish")).expect("decode"), data);
        }
    }
}
