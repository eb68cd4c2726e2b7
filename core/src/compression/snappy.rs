//! snappy: raw blocks out; raw blocks or the snappy-java framing in.
//!
//! The framing is described in the parent module's "Snappy framing" section;
//! its layout here follows snappy-java's `SnappyCodec` (magic and the two
//! big-endian version ints) and `SnappyOutputStream`/`SnappyInputStream`
//! (big-endian i32 chunk lengths, each chunk one raw block).

use super::sink::Sink;
use super::{Compression, CompressionError};

/// snappy-java's `SnappyCodec.MAGIC_HEADER`: `-126, 'S','N','A','P','P','Y', 0`.
pub(super) const JAVA_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, then `DEFAULT_VERSION` and `MINIMUM_COMPATIBLE_VERSION` as i32 BE.
const JAVA_HEADER_LEN: usize = 16;
/// snappy-java's `DEFAULT_VERSION` and `MINIMUM_COMPATIBLE_VERSION`.
const JAVA_VERSION: u32 = 1;
/// `SnappyOutputStream`'s default block size, which Kafka's Java client keeps.
const JAVA_BLOCK_SIZE: usize = 32 * 1024;
/// No snappy element yields more than 64 bytes from 3 (a copy with a 2-byte
/// offset), so a block that declares more than 22 times its own size is lying.
const MAX_RATIO: usize = 22;

fn corrupt(reason: impl Into<String>) -> CompressionError {
    CompressionError::corrupt(Compression::Snappy, reason)
}

/// Writes raw snappy blocks (and, for tests and the simulator, the Java
/// framing), reusing snap's hash table.
pub(super) struct Encoder {
    /// Boxed: snap keeps a 2 KiB table inline.
    raw: Box<snap::raw::Encoder>,
}

impl Encoder {
    pub(super) fn new() -> Encoder {
        Encoder {
            raw: Box::new(snap::raw::Encoder::new()),
        }
    }

    /// Appends one raw snappy block holding all of `input`.
    pub(super) fn compress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        let bound = snap::raw::max_compress_len(input.len());
        if bound == 0 {
            return Err(CompressionError::failure(
                Compression::Snappy,
                format!(
                    "{} bytes is more than a snappy block can hold (4 GiB)",
                    input.len()
                ),
            ));
        }
        let start = out.len();
        out.resize(start + bound, 0);
        let written = self
            .raw
            .compress(input, &mut out[start..])
            .map_err(|e| CompressionError::failure(Compression::Snappy, e.to_string()))?;
        out.truncate(start + written);
        Ok(())
    }

    /// Appends `input` in snappy-java's framing: the 16-byte header, then one
    /// length-prefixed raw block per 32 KiB of input.
    pub(super) fn compress_java(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        out.extend_from_slice(&JAVA_MAGIC);
        out.extend_from_slice(&JAVA_VERSION.to_be_bytes());
        out.extend_from_slice(&JAVA_VERSION.to_be_bytes());
        for chunk in input.chunks(JAVA_BLOCK_SIZE) {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            self.compress(chunk, out)?;
            let len = u32::try_from(out.len() - at - 4).map_err(|_| {
                CompressionError::failure(Compression::Snappy, "chunk longer than 2 GiB")
            })?;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }
}

/// Reads raw snappy or snappy-java framing, telling them apart by the magic.
#[derive(Default)]
pub(super) struct Decoder {
    raw: snap::raw::Decoder,
}

impl Decoder {
    pub(super) fn decompress(
        &mut self,
        input: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), CompressionError> {
        // A raw block could in theory start with these 8 bytes (a length
        // varint of 0x82 0x53 then a literal); Java, librdkafka and franz-go
        // all accept that ambiguity, and so do we.
        if input.starts_with(&JAVA_MAGIC) {
            self.decompress_java(input, sink)
        } else {
            self.decompress_block(input, sink)
        }
    }

    /// One raw block: its declared length is checked against the limit and
    /// against what snappy can encode before anything is allocated.
    fn decompress_block(
        &mut self,
        block: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), CompressionError> {
        if block.is_empty() {
            // snappy-java: "Cannot decompress empty stream"; even an empty
            // input compresses to one byte.
            return Err(corrupt("empty block"));
        }
        let len = snap::raw::decompress_len(block).map_err(|e| corrupt(e.to_string()))?;
        if len > sink.room() {
            return Err(sink.too_large());
        }
        if len > block.len().saturating_mul(MAX_RATIO) {
            return Err(corrupt(format!(
                "a {}-byte block cannot hold the {len} bytes it declares",
                block.len()
            )));
        }
        let (slice, _) = sink.scratch(len);
        let written = self
            .raw
            .decompress(block, slice)
            .map_err(|e| corrupt(e.to_string()))?;
        sink.commit(written)
    }

    fn decompress_java(
        &mut self,
        input: &[u8],
        sink: &mut Sink<'_>,
    ) -> Result<(), CompressionError> {
        if input.len() < JAVA_HEADER_LEN {
            return Err(corrupt("truncated snappy-java header"));
        }
        // Versions are not checked: every writer uses 1 and 1, and
        // librdkafka ignores them too.
        let mut pos = JAVA_HEADER_LEN;
        while pos < input.len() {
            let len_bytes: [u8; 4] = input
                .get(pos..pos + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    corrupt(format!(
                        "{} stray bytes after the last chunk",
                        input.len() - pos
                    ))
                })?;
            // snappy-java's SnappyInputStream: a length equal to the magic's
            // first four bytes starts a second, concatenated stream.
            if len_bytes == JAVA_MAGIC[..4] {
                let header = input
                    .get(pos..pos + JAVA_HEADER_LEN)
                    .ok_or_else(|| corrupt("truncated concatenated snappy-java header"))?;
                if !header.starts_with(&JAVA_MAGIC) {
                    return Err(corrupt("bad concatenated snappy-java header"));
                }
                pos += JAVA_HEADER_LEN;
                continue;
            }
            let len = i32::from_be_bytes(len_bytes);
            let len = usize::try_from(len)
                .map_err(|_| corrupt(format!("negative chunk length {len}")))?;
            pos += 4;
            let chunk = input
                .get(pos..pos.saturating_add(len))
                .ok_or_else(|| corrupt(format!("a {len}-byte chunk runs past the end")))?;
            pos += len;
            self.decompress_block(chunk, sink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{compress, compress_snappy_java, decompress, Compression, CompressionError};
    use super::JAVA_MAGIC;

    fn unsnappy(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
        let mut out = Vec::new();
        decompress(Compression::Snappy, input, limit, &mut out).map(|()| out)
    }

    fn raw_block(data: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(data)
            .expect("snap compresses")
    }

    /// Builds snappy-java framing by hand, byte by byte, from the layout in
    /// snappy-java's SnappyCodec (magic, int version, int compatible version,
    /// written with DataOutputStream, so big-endian) and SnappyOutputStream
    /// (per chunk: writeInt(compressedLength), then the raw block).
    fn java_framed(chunks: &[&[u8]]) -> Vec<u8> {
        let mut framed = vec![0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0x00];
        framed.extend_from_slice(&[0, 0, 0, 1]); // version 1
        framed.extend_from_slice(&[0, 0, 0, 1]); // minimum compatible version 1
        for chunk in chunks {
            let block = raw_block(chunk);
            framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        framed
    }

    #[test]
    fn we_write_a_raw_block_that_snap_reads() {
        let data = b"raw snappy, as librdkafka writes it ".repeat(100);
        let mut out = Vec::new();
        compress(Compression::Snappy, &data, &mut out).expect("compress");
        assert!(!out.starts_with(&JAVA_MAGIC));
        let back = snap::raw::Decoder::new()
            .decompress_vec(&out)
            .expect("snap decodes");
        assert_eq!(back, data);
        assert_eq!(unsnappy(&raw_block(&data), 1 << 20).expect("decode"), data);
    }

    #[test]
    fn java_framing_built_by_hand_decodes() {
        let framed = java_framed(&[b"first chunk, ", b"second chunk, ", b"third"]);
        assert_eq!(
            &framed[..16],
            b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"
        );
        assert_eq!(
            unsnappy(&framed, 1 << 20).expect("decode"),
            b"first chunk, second chunk, third"
        );
    }

    #[test]
    fn java_framing_example_from_the_wild_decodes() {
        // snappy-java's output for "foobar\n" as documented by the Haskell
        // snappy-framing package: header, chunk length 9, raw block.
        let bytes = [
            0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x07, 0x18, 0x66, 0x6f, 0x6f, 0x62, 0x61, 0x72,
            0x0a,
        ];
        assert_eq!(unsnappy(&bytes, 100).expect("decode"), b"foobar\n");
    }

    #[test]
    fn our_java_writer_matches_the_layout() {
        let data = vec![b'k'; 70_000]; // three 32 KiB chunks
        let mut framed = Vec::new();
        compress_snappy_java(&data, &mut framed).expect("compress");
        let expected = java_framed(&[&data[..32768], &data[32768..65536], &data[65536..]]);
        assert_eq!(framed, expected);
        assert_eq!(unsnappy(&framed, 1 << 20).expect("decode"), data);
    }

    #[test]
    fn java_framing_edge_cases() {
        // Header alone: snappy-java reads it as an empty stream.
        assert_eq!(unsnappy(&java_framed(&[]), 10).expect("empty"), b"");
        // Two streams back to back, as SnappyInputStream accepts.
        let mut two = java_framed(&[b"one "]);
        two.extend(java_framed(&[b"two"]));
        assert_eq!(unsnappy(&two, 100).expect("concatenated"), b"one two");
        // Stray bytes, negative and overlong lengths are corrupt.
        let mut stray = java_framed(&[b"x"]);
        stray.extend_from_slice(&[0, 0]);
        assert!(matches!(
            unsnappy(&stray, 100),
            Err(CompressionError::Corrupt { .. })
        ));
        let mut negative = java_framed(&[]);
        negative.extend_from_slice(&[0xff, 0xff, 0xff, 0xf0, 0]);
        assert!(matches!(
            unsnappy(&negative, 100),
            Err(CompressionError::Corrupt { .. })
        ));
        let mut overlong = java_framed(&[]);
        overlong.extend_from_slice(&[0, 0, 1, 0, 0]);
        assert!(matches!(
            unsnappy(&overlong, 100),
            Err(CompressionError::Corrupt { .. })
        ));
        // Truncated header.
        assert!(unsnappy(&JAVA_MAGIC, 100).is_err());
    }

    #[test]
    fn java_framing_limit_counts_all_chunks() {
        let framed = java_framed(&[&[1u8; 600], &[2u8; 600]]);
        assert_eq!(unsnappy(&framed, 1200).expect("fits").len(), 1200);
        assert_eq!(
            unsnappy(&framed, 1199),
            Err(CompressionError::TooLarge { limit: 1199 })
        );
    }

    #[test]
    fn declared_length_is_checked_before_allocating() {
        // Five bytes declaring 2^32 - 1 bytes of output.
        let hostile = [0xff, 0xff, 0xff, 0xff, 0x0f];
        let mut out = Vec::new();
        assert_eq!(
            decompress(Compression::Snappy, &hostile, 1 << 20, &mut out),
            Err(CompressionError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(out.capacity(), 0);
        // Within the limit but more than five bytes can encode.
        let err = decompress(
            Compression::Snappy,
            &[0x80, 0x80, 0x04, 0, 0],
            1 << 20,
            &mut out,
        );
        assert!(matches!(err, Err(CompressionError::Corrupt { .. })));
        assert_eq!(out.capacity(), 0);
    }

    #[test]
    fn empty_input_is_corrupt() {
        assert!(matches!(
            unsnappy(&[], 10),
            Err(CompressionError::Corrupt { .. })
        ));
    }

    proptest! {
        #[test]
        fn java_framing_of_any_chunks_decodes_to_their_concatenation(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..6)
        ) {
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let framed = java_framed(&refs);
            prop_assert_eq!(unsnappy(&framed, 1 << 20).expect("decode"), chunks.concat());
        }
    }
}
