//! Compression codecs as Kafka frames them: gzip, snappy, lz4 and zstd.
//!
//! A record batch (magic v2) names its codec in the low three bits of its
//! `attributes` and compresses everything after the batch header as one unit;
//! a legacy message set (magic v0/v1) wraps a compressed inner message set the
//! same way. This module turns such a unit into bytes and back, and knows
//! nothing else about batches: `record/` calls [`compress`] when it seals a
//! batch and [`decompress`] when it opens one.
//!
//! # What each codec writes, and what it accepts
//!
//! Kafka has no framing of its own for compressed data; each codec uses the
//! framing of the library the Java client happened to use, and other clients
//! copied what the Java client reads. So:
//!
//! | codec | we write | we also read |
//! |---|---|---|
//! | gzip | one RFC 1952 member (no name, mtime 0) | several members back to back, as Java's `GZIPInputStream` does; optional header fields; every member's CRC-32 and length are checked; bytes after the last member are an error (Java ignores them) |
//! | snappy | one raw snappy block, as librdkafka and franz-go do | the snappy-java ("xerial") framing the Java client writes, see [below](#snappy-framing) |
//! | lz4 | one LZ4 frame with independent 64 KiB blocks and no checksums, exactly what Java's `Lz4BlockOutputStream` writes | any LZ4 frame: linked blocks, block and content checksums, content size, 64 KiB to 4 MiB blocks, several frames; see [below](#lz4-framing) |
//! | zstd | one zstd frame with its content size | several frames, with or without content size or checksum |
//!
//! ## Snappy framing
//!
//! The Java client compresses with snappy-java's `SnappyOutputStream`, which
//! adds a framing of its own (not the official snappy framing format):
//!
//! ```text
//! 0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00   magic, 8 bytes
//! i32 BE version (1)   i32 BE minimum compatible version (1)
//! then, until the end: i32 BE length, followed by that many bytes of one raw
//! snappy block (varint uncompressed length, then elements)
//! ```
//!
//! Java's `SnappyInputStream` reads both that and a bare raw block (it falls
//! back to raw when the magic is missing), and so do librdkafka and franz-go,
//! which both write raw. We write raw too, and on reading detect the magic. As snappy-java does, a second 16-byte header where a
//! chunk length should be (two streams concatenated) is skipped. Unlike
//! snappy-java we reject 1 to 3 stray bytes after the last chunk, as
//! librdkafka does. [`compress_snappy_java`] writes the Java framing, for the
//! simulator to play a Java producer.
//!
//! ## LZ4 framing
//!
//! Kafka uses the LZ4 frame format (magic `0x184D2204`). Java's
//! `Lz4BlockOutputStream` writes FLG `0x60` (version 1, independent blocks,
//! no checksums, no content size) and BD `0x40` (64 KiB blocks), and its
//! reader *throws* on linked blocks ("Dependent block stream is unsupported")
//! and on block sizes other than 64 KiB to 4 MiB. We write exactly Java's
//! header; librdkafka writes the same by default. On reading we accept
//! everything the frame format allows except dictionary ids and the legacy
//! lz4 format, which no Kafka client writes.
//!
//! Kafka before 0.10 computed the frame descriptor checksum (HC) over the
//! magic number as well (KAFKA-3160, fixed by KIP-57 together with magic v1).
//! Such frames only occur in magic v0 message sets;
//! [`Decompressor::decompress_lz4_magic_v0`] reads them.
//!
//! # Bounded decompression
//!
//! The compressed bytes come from the network, so a broker, or anything that
//! pretends to be one, picks them. A few hundred bytes of zstd or deflate can
//! claim gigabytes. Every decompression therefore takes a `limit` on the bytes
//! it may produce and stops with [`CompressionError::TooLarge`] as soon as
//! the output would pass it. Sizes that the input declares (zstd's content
//! size, snappy's and LZ4's lengths, gzip's `ISIZE`) are only hints: a
//! declared size above the limit is refused before decoding, and below it
//! one is believed no further than the codec could really expand the input
//! (or 1 MiB for zstd); beyond that the output grows only as the decoder
//! fills it. However hostile the input, a call allocates about `limit` bytes
//! at most, plus the codec's fixed-size working state.
//!
//! # Reusing codec state
//!
//! A zstd context and a deflate state each cost hundreds of kilobytes to set
//! up. [`Compressor`] and [`Decompressor`] keep them between calls; a producer
//! keeps one [`Compressor`] per codec it uses and a consumer one
//! [`Decompressor`]. The free functions [`compress`] and [`decompress`] build
//! fresh state on every call, which is fine for tests and rare calls.

use std::fmt;
use std::str::FromStr;

mod gzip;
mod lz4;
mod sink;
mod snappy;
mod zstd;

#[cfg(test)]
mod tests;

use sink::Sink;

/// A compression codec, identified as Kafka does.
///
/// Codec ids are Kafka's: the low 3 bits of record-batch attributes (and of
/// legacy message attributes). Ids 5 to 7 are unassigned; [`Compression::from_id`]
/// rejects them so that a batch from a future broker fails loudly instead of
/// being misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// No compression (id 0): the records are stored as they are.
    #[default]
    None,
    /// gzip (id 1): deflate in a gzip wrapper. Compresses well, slowly.
    Gzip,
    /// snappy (id 2): fast, modest ratio.
    Snappy,
    /// lz4 (id 3): LZ4 frame format (KIP-57). Fastest to decompress.
    Lz4,
    /// zstd (id 4, KIP-110): the best ratio for its speed. Brokers accept it
    /// only in Produce v7+ and return it only in Fetch v10+.
    Zstd,
}

impl Compression {
    /// Every codec, in id order, so that tests and help texts need not list
    /// them by hand.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec's id as stored in the low 3 bits of batch attributes.
    pub const fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec with this attributes id; ids Kafka does not define are an
    /// error ([`CompressionError::UnknownCodec`]) rather than a guess.
    pub fn from_id(id: u8) -> Result<Compression, CompressionError> {
        match id {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(CompressionError::UnknownCodec(other)),
        }
    }

    /// The codec's name as Kafka's `compression.type` config spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses the names of Kafka's `compression.type` ("none", "gzip", "snappy",
/// "lz4", "zstd"), ignoring ASCII case so that configs written by hand work.
impl FromStr for Compression {
    type Err = CompressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|codec| codec.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| CompressionError::UnknownName(s.to_owned()))
    }
}

/// How hard a codec works when compressing, on the codec's own scale.
///
/// These are KIP-390's `compression.gzip.level`, `compression.lz4.level` and
/// `compression.zstd.level`, with Kafka's ranges and defaults:
///
/// | codec | range | default |
/// |---|---|---|
/// | gzip | 1 (fastest) to 9 (smallest); -1 also means the default | 6 |
/// | lz4 | 1 to 17, accepted but without effect: `lz4_flex` has only the fast compressor, which is what Java uses at its default level 9 | fast |
/// | zstd | -131072 (fastest) to 22 (smallest) | 3 |
///
/// snappy and none have no levels: asking for one is an error.
/// Decompression never needs to know the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CompressionLevel(Option<i32>);

impl CompressionLevel {
    /// The codec's own default, which is also Kafka's.
    pub const DEFAULT: CompressionLevel = CompressionLevel(None);

    /// A level on the codec's scale; [`Compressor::with_level`] checks it
    /// against the codec's range.
    pub const fn new(level: i32) -> CompressionLevel {
        CompressionLevel(Some(level))
    }

    /// The level asked for, or `None` for the codec's default.
    pub const fn get(self) -> Option<i32> {
        self.0
    }

    /// The levels `codec` accepts, or `None` if it has no levels at all.
    pub const fn range(codec: Compression) -> Option<std::ops::RangeInclusive<i32>> {
        match codec {
            Compression::None | Compression::Snappy => None,
            Compression::Gzip => Some(gzip::MIN_LEVEL..=gzip::MAX_LEVEL),
            Compression::Lz4 => Some(lz4::MIN_LEVEL..=lz4::MAX_LEVEL),
            Compression::Zstd => Some(zstd::MIN_LEVEL..=zstd::MAX_LEVEL),
        }
    }

    /// Checks the level against `codec`'s range, so that a bad config fails
    /// when the client is built rather than on the first batch.
    fn validate(self, codec: Compression) -> Result<(), CompressionError> {
        let Some(level) = self.0 else {
            return Ok(());
        };
        let ok = match CompressionLevel::range(codec) {
            None => false,
            // Kafka's gzip default is Deflater.DEFAULT_COMPRESSION, -1.
            Some(_) if codec == Compression::Gzip && level == -1 => true,
            Some(range) => range.contains(&level),
        };
        if ok {
            Ok(())
        } else {
            Err(CompressionError::InvalidLevel { codec, level })
        }
    }
}

/// Why compressing or decompressing failed.
///
/// On any error the output buffer is left as it was before the call: nothing
/// half-written stays behind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressionError {
    /// The attributes name a codec id Kafka does not define (5 to 7). The
    /// batch came from something newer than this client or is corrupt; it
    /// cannot be read.
    #[error("unknown compression codec id {0} (Kafka defines 0 to 4)")]
    UnknownCodec(u8),
    /// A codec name that is not one of Kafka's `compression.type` values; fix
    /// the configuration.
    #[error("unknown compression codec {0:?} (expected none, gzip, snappy, lz4 or zstd)")]
    UnknownName(String),
    /// A compression level outside the codec's range (see
    /// [`CompressionLevel`]); fix the configuration.
    #[error("compression level {level} is not valid for {codec}")]
    InvalidLevel {
        /// The codec the level was given for.
        codec: Compression,
        /// The rejected level.
        level: i32,
    },
    /// Decompressing would produce more than `limit` bytes. Either the data
    /// is hostile, or the limit (usually derived from `fetch.max.bytes` or
    /// `max.partition.fetch.bytes`) is too small for this batch.
    #[error("decompressed data exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was passed.
        limit: usize,
    },
    /// The compressed data is malformed: truncated, a checksum mismatch, an
    /// unsupported framing option, or simply not this codec. The batch cannot
    /// be read; a consumer reports it rather than skipping silently.
    #[error("corrupt {codec} data: {reason}")]
    Corrupt {
        /// The codec that was decoding.
        codec: Compression,
        /// What was wrong, for logs.
        reason: String,
    },
    /// The codec itself failed, not because of the data it was given: the
    /// input is beyond what the format can hold (snappy stops at 4 GiB) or
    /// the codec could not get memory for its state.
    #[error("{codec} failed: {reason}")]
    CodecFailure {
        /// The codec that failed.
        codec: Compression,
        /// What went wrong, for logs.
        reason: String,
    },
}

impl CompressionError {
    fn corrupt(codec: Compression, reason: impl Into<String>) -> CompressionError {
        CompressionError::Corrupt {
            codec,
            reason: reason.into(),
        }
    }

    fn failure(codec: Compression, reason: impl Into<String>) -> CompressionError {
        CompressionError::CodecFailure {
            codec,
            reason: reason.into(),
        }
    }
}

/// Appends the compressed form of `input` to `out`, at the codec's default
/// level.
///
/// Builds fresh codec state for this call; keep a [`Compressor`] to reuse it.
pub fn compress(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    Compressor::new(codec).compress(input, out)
}

/// Appends the compressed form of `input` to `out` at `level`, for callers
/// that honour KIP-390's per-codec level settings.
pub fn compress_with_level(
    codec: Compression,
    level: CompressionLevel,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    Compressor::with_level(codec, level)?.compress(input, out)
}

/// Appends the decompressed form of `input` to `out`, failing with
/// [`CompressionError::TooLarge`] as soon as more than `limit` bytes would be
/// produced (never allocating beyond about `limit`).
///
/// `limit` counts only the bytes this call appends, not what `out` already
/// holds. Builds fresh codec state for this call; keep a [`Decompressor`] to
/// reuse it.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    Decompressor::new().decompress(codec, input, limit, out)
}

/// Appends `input` to `out` compressed with snappy in the snappy-java
/// ("xerial") framing that the Java client writes, in 32 KiB chunks as
/// Kafka's Java producer does.
///
/// sansa's producer writes raw snappy, as librdkafka and franz-go do;
/// this exists so that the simulator can play a Java producer and tests can
/// build the framing every consumer must read.
pub fn compress_snappy_java(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let start = out.len();
    let result = snappy::Encoder::new().compress_java(input, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Compresses with one codec at one level, keeping the codec's state between
/// calls.
///
/// A zstd context or a deflate state costs hundreds of kilobytes to set up,
/// more than compressing a small batch; a producer keeps one `Compressor` per
/// codec and reuses it for every batch. The state is created on first use.
pub struct Compressor {
    codec: Compression,
    level: CompressionLevel,
    state: EncoderState,
}

enum EncoderState {
    None,
    Gzip(gzip::Encoder),
    Snappy(snappy::Encoder),
    Lz4,
    Zstd(zstd::Encoder),
}

impl Compressor {
    /// A compressor for `codec` at its default level.
    pub fn new(codec: Compression) -> Compressor {
        let level = CompressionLevel::DEFAULT;
        Compressor {
            codec,
            level,
            state: EncoderState::for_codec(codec, level),
        }
    }

    /// A compressor for `codec` at `level`; fails with
    /// [`CompressionError::InvalidLevel`] if the codec has no such level.
    pub fn with_level(
        codec: Compression,
        level: CompressionLevel,
    ) -> Result<Compressor, CompressionError> {
        level.validate(codec)?;
        Ok(Compressor {
            codec,
            level,
            state: EncoderState::for_codec(codec, level),
        })
    }

    /// The codec this compressor writes.
    pub fn codec(&self) -> Compression {
        self.codec
    }

    /// The level this compressor was built with.
    pub fn level(&self) -> CompressionLevel {
        self.level
    }

    /// Appends the compressed form of `input` to `out`.
    ///
    /// On error `out` is left as it was.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
        let start = out.len();
        let result = match &mut self.state {
            EncoderState::None => {
                out.extend_from_slice(input);
                Ok(())
            }
            EncoderState::Gzip(encoder) => encoder.compress(input, out),
            EncoderState::Snappy(encoder) => encoder.compress(input, out),
            EncoderState::Lz4 => lz4::compress(input, out),
            EncoderState::Zstd(encoder) => encoder.compress(input, out),
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

impl EncoderState {
    fn for_codec(codec: Compression, level: CompressionLevel) -> EncoderState {
        match codec {
            Compression::None => EncoderState::None,
            Compression::Gzip => EncoderState::Gzip(gzip::Encoder::new(level)),
            Compression::Snappy => EncoderState::Snappy(snappy::Encoder::new()),
            Compression::Lz4 => EncoderState::Lz4,
            Compression::Zstd => EncoderState::Zstd(zstd::Encoder::new(level)),
        }
    }
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("codec", &self.codec)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

/// Decompresses any codec, keeping each codec's state between calls.
///
/// A consumer sees batches of every codec on one connection, so one
/// `Decompressor` holds the state of all of them, each created the first time
/// its codec is met.
#[derive(Default)]
pub struct Decompressor {
    gzip: gzip::Decoder,
    snappy: snappy::Decoder,
    zstd: zstd::Decoder,
}

impl Decompressor {
    /// A decompressor with no codec state yet.
    pub fn new() -> Decompressor {
        Decompressor::default()
    }

    /// Appends the decompressed form of `input` to `out`, failing with
    /// [`CompressionError::TooLarge`] as soon as more than `limit` bytes would
    /// be produced.
    ///
    /// `limit` counts only the bytes this call appends. On error `out` is
    /// left as it was.
    pub fn decompress(
        &mut self,
        codec: Compression,
        input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        let start = out.len();
        let mut sink = Sink::new(out, limit);
        let result = match codec {
            Compression::None => sink.extend_from_slice(input),
            Compression::Gzip => self.gzip.decompress(input, &mut sink),
            Compression::Snappy => self.snappy.decompress(input, &mut sink),
            Compression::Lz4 => lz4::decompress(input, &mut sink, lz4::HeaderChecksum::Correct),
            Compression::Zstd => self.zstd.decompress(input, &mut sink),
        };
        finish(sink, start, result)
    }

    /// Like [`Decompressor::decompress`] for lz4, but also accepts the broken
    /// frame-descriptor checksum that Kafka clients and brokers before 0.10
    /// wrote (KIP-57, KAFKA-3160): they hashed the magic number too.
    ///
    /// Use it only for lz4 messages of magic v0 message sets; magic v1 and
    /// record batches (v2) always carry the correct checksum, and Java
    /// rejects anything else there.
    pub fn decompress_lz4_magic_v0(
        &mut self,
        input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), CompressionError> {
        let start = out.len();
        let mut sink = Sink::new(out, limit);
        let result = lz4::decompress(input, &mut sink, lz4::HeaderChecksum::CorrectOrLegacy);
        finish(sink, start, result)
    }
}

/// Keeps what a successful decompression produced, or restores `out` to its
/// length on entry after a failure.
fn finish(
    sink: Sink<'_>,
    start: usize,
    result: Result<(), CompressionError>,
) -> Result<(), CompressionError> {
    let out = sink.finish();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor").finish_non_exhaustive()
    }
}
