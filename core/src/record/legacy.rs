//! Legacy message sets, magic v0 and v1 (read only).
//!
//! Before KIP-98 (Kafka 0.11) the log held messages, not batches
//! (`LegacyRecord`, `AbstractLegacyRecordBatch`). Each entry is:
//!
//! ```text
//! offset int64 | size int32 | crc uint32 | magic int8 | attributes int8
//!   | timestamp int64 (v1 only) | key_len int32 | key | value_len int32 | value
//! ```
//!
//! The CRC is CRC-32 (IEEE) from the magic to the end. Attribute bits 0-2
//! are the codec and, in v1, bit 3 says the timestamp is a log append time.
//! A compressed message is a wrapper whose value is a compressed message set
//! of inner messages. In a v1 wrapper the inner offsets are relative
//! (0, 1, ...) and the wrapper's offset is the absolute offset of the last
//! inner message, so `absolute = wrapper_offset - last_inner + inner`; a
//! wrapper offset of 0 (some librdkafka producers) means base 0. In a v0
//! wrapper the inner offsets are absolute. An inner v1 message takes the
//! wrapper's timestamp when the wrapper is `LogAppendTime`. Each outer
//! message is one [`super::Batch`]; its records are the message itself or the
//! wrapper's inner messages.

use bytes::Bytes;

use super::crc::crc32_ieee;
use super::records::{Headers, Record};
use super::{be_i32, be_i64, be_u32, RecordError, TimestampType, LOG_OVERHEAD};
use crate::compression::{Compression, Decompressor};

/// `LegacyRecord.RECORD_OVERHEAD_V0`: crc, magic, attributes, key and value
/// lengths.
pub(crate) const RECORD_OVERHEAD_V0: usize = 14;
/// `LegacyRecord.RECORD_OVERHEAD_V1`: v0 plus the timestamp.
const RECORD_OVERHEAD_V1: usize = 22;

const CODEC_MASK: u8 = 0x07;
const TIMESTAMP_TYPE_FLAG: u8 = 0x08;

/// A `Field` of `record.rs`: `(start, end)` or null.
type Field = Option<(usize, usize)>;

/// One legacy message, located in a buffer that starts at its offset field.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LegacyMessage {
    pub(crate) offset: i64,
    pub(crate) crc: u32,
    pub(crate) magic: i8,
    pub(crate) attributes: u8,
    /// -1 for v0.
    pub(crate) timestamp: i64,
    pub(crate) key: Field,
    pub(crate) value: Field,
    /// Log overhead plus size.
    pub(crate) len: usize,
}

impl LegacyMessage {
    pub(crate) fn codec_id(&self) -> u8 {
        self.attributes & CODEC_MASK
    }

    pub(crate) fn timestamp_type(&self) -> TimestampType {
        if self.magic == 0 {
            TimestampType::NoTimestamp
        } else if self.attributes & TIMESTAMP_TYPE_FLAG != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Checks the stored CRC-32 against the message bytes `entry` (which
    /// start at the offset field).
    pub(crate) fn verify_crc(&self, entry: &[u8]) -> Result<(), RecordError> {
        let actual = crc32_ieee(&entry[LOG_OVERHEAD + 4..self.len]);
        if actual != self.crc {
            return Err(RecordError::CrcMismatch {
                expected: self.crc,
                actual,
            });
        }
        Ok(())
    }
}

/// Parses the legacy message at the start of `entry`, which holds at least
/// its whole `LOG_OVERHEAD + size` bytes (the caller checked).
pub(crate) fn parse_message(entry: &[u8]) -> Result<LegacyMessage, RecordError> {
    if entry.len() < LOG_OVERHEAD + RECORD_OVERHEAD_V0 {
        return Err(RecordError::Truncated);
    }
    let size = be_i32(entry, 8);
    if size < RECORD_OVERHEAD_V0 as i32 {
        return Err(RecordError::BadLength {
            what: "legacy message",
            length: size as i64,
        });
    }
    let len = LOG_OVERHEAD + size as usize;
    if entry.len() < len {
        return Err(RecordError::Truncated);
    }
    let m = &entry[..len];
    let magic = m[16] as i8;
    let (timestamp, key_at) = match magic {
        0 => (-1, LOG_OVERHEAD + 6),
        1 => {
            if (size as usize) < RECORD_OVERHEAD_V1 {
                return Err(RecordError::BadLength {
                    what: "legacy v1 message",
                    length: size as i64,
                });
            }
            (be_i64(m, 18), LOG_OVERHEAD + 14)
        }
        other => return Err(RecordError::BadMagic(other)),
    };
    let (key, value_at) = sized_field(m, key_at)?;
    let (value, _end) = sized_field(m, value_at)?;
    // Java reads only what the sizes say and ignores any bytes after the
    // value (they are still covered by the CRC); so do we.
    Ok(LegacyMessage {
        offset: be_i64(m, 0),
        crc: be_u32(m, 12),
        magic,
        attributes: m[17],
        timestamp,
        key,
        value,
        len,
    })
}

/// An int32-length-prefixed field at `at`: the field and where it ends.
fn sized_field(m: &[u8], at: usize) -> Result<(Field, usize), RecordError> {
    if at + 4 > m.len() {
        return Err(RecordError::Truncated);
    }
    let len = be_i32(m, at);
    let start = at + 4;
    if len < 0 {
        return Ok((None, start));
    }
    let end = start + len as usize;
    if end > m.len() {
        return Err(RecordError::Truncated);
    }
    Ok((Some((start, end)), end))
}

/// The records of one legacy batch: the message itself, or a compressed
/// wrapper's inner messages.
#[derive(Debug)]
pub(crate) struct LegacyRecords {
    /// The outer entry (uncompressed) or the decompressed inner set.
    buf: Bytes,
    pos: usize,
    /// End of the last complete inner entry.
    end: usize,
    remaining: usize,
    /// Added to each inner offset (0 for v0 wrappers and plain messages).
    offset_base: i64,
    /// For a plain message: its own offset.
    single_offset: Option<i64>,
    /// The wrapper's timestamp when inner v1 messages must take it.
    wrapper_log_append_time: Option<i64>,
}

impl LegacyRecords {
    /// The records of the outer message `msg`, whose bytes are `entry`.
    pub(crate) fn new(
        entry: &Bytes,
        msg: &LegacyMessage,
        max_decompressed: usize,
        decompressor: &mut Decompressor,
    ) -> Result<LegacyRecords, RecordError> {
        let codec_id = msg.codec_id();
        if codec_id == 0 {
            return Ok(LegacyRecords {
                buf: entry.clone(),
                pos: 0,
                end: msg.len,
                remaining: 1,
                offset_base: 0,
                single_offset: Some(msg.offset),
                wrapper_log_append_time: None,
            });
        }
        let codec = Compression::from_id(codec_id)?;
        if codec == Compression::Zstd {
            // Zstd arrived with magic v2 (KIP-110); Java rejects it here too.
            return Err(RecordError::Legacy("zstd wrapper in a legacy message set"));
        }
        let Some((vs, ve)) = msg.value else {
            return Err(RecordError::Legacy("compressed wrapper with a null value"));
        };
        let mut out = Vec::new();
        let input = &entry[vs..ve];
        if codec == Compression::Lz4 && msg.magic == 0 {
            // Before 0.10 (KAFKA-3160) lz4 frames carried a wrong header
            // checksum; magic v0 messages may still have it.
            decompressor.decompress_lz4_magic_v0(input, max_decompressed, &mut out)?;
        } else {
            decompressor.decompress(codec, input, max_decompressed, &mut out)?;
        }
        let buf = Bytes::from(out);

        // Find the inner entries first: v1 offsets are relative to the last
        // one. Like Java's `DataLogInputStream`, a partial trailing entry
        // ends the set without error.
        let mut pos = 0;
        let mut count = 0usize;
        let mut last_inner = 0i64;
        while buf.len() - pos >= LOG_OVERHEAD {
            let size = be_i32(&buf, pos + 8);
            if size < RECORD_OVERHEAD_V0 as i32 {
                return Err(RecordError::BadLength {
                    what: "legacy inner message",
                    length: size as i64,
                });
            }
            let len = LOG_OVERHEAD + size as usize;
            if buf.len() - pos < len {
                break;
            }
            last_inner = be_i64(&buf, pos);
            count += 1;
            pos += len;
        }
        if count == 0 {
            return Err(RecordError::Legacy("compressed wrapper holds no messages"));
        }
        let offset_base = if msg.magic == 1 {
            if msg.offset == 0 {
                0
            } else {
                match msg.offset.checked_sub(last_inner) {
                    Some(base) if msg.offset >= last_inner => base,
                    _ => {
                        return Err(RecordError::Legacy(
                            "wrapper offset is less than its last inner offset",
                        ))
                    }
                }
            }
        } else {
            0
        };
        let wrapper_log_append_time =
            (msg.timestamp_type() == TimestampType::LogAppendTime).then_some(msg.timestamp);
        Ok(LegacyRecords {
            buf,
            pos: 0,
            end: pos,
            remaining: count,
            offset_base,
            single_offset: None,
            wrapper_log_append_time,
        })
    }

    pub(crate) fn remaining(&self) -> usize {
        self.remaining
    }

    pub(crate) fn buffer(&self) -> &Bytes {
        &self.buf
    }

    /// The next message: offset, timestamp, key and value positions.
    fn next_raw(&mut self) -> Option<Result<(i64, i64, Field, Field), RecordError>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let r = self.read_one();
        if r.is_err() {
            self.remaining = 0;
        }
        Some(r)
    }

    fn read_one(&mut self) -> Result<(i64, i64, Field, Field), RecordError> {
        let entry = &self.buf[self.pos..self.end];
        let msg = parse_message(entry)?;
        if let Some(offset) = self.single_offset {
            self.pos += msg.len;
            return Ok((offset, msg.timestamp, msg.key, msg.value));
        }
        if msg.codec_id() != 0 {
            return Err(RecordError::Legacy("inner messages must not be compressed"));
        }
        // Nothing checked the inner CRCs (the batch CRC covers the wrapper
        // only); they are cheap next to the decompression, so always check.
        msg.verify_crc(entry)?;
        let base = self.pos;
        self.pos += msg.len;
        let timestamp = match (msg.magic, self.wrapper_log_append_time) {
            (0, _) => -1,
            (_, Some(t)) => t,
            (_, None) => msg.timestamp,
        };
        let shift = |f: Field| f.map(|(s, e)| (base + s, base + e));
        Ok((
            self.offset_base.wrapping_add(msg.offset),
            timestamp,
            shift(msg.key),
            shift(msg.value),
        ))
    }

    pub(crate) fn next(&mut self) -> Option<Result<Record, RecordError>> {
        let r = self.next_raw()?;
        Some(r.map(|(offset, timestamp, key, value)| Record {
            offset,
            timestamp,
            key: key.map(|(s, e)| self.buf.slice(s..e)),
            value: value.map(|(s, e)| self.buf.slice(s..e)),
            headers: Headers::empty(),
        }))
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn next_ref(
        &mut self,
    ) -> Option<Result<(i64, i64, Option<&[u8]>, Option<&[u8]>), RecordError>> {
        let r = self.next_raw()?;
        let b: &[u8] = &self.buf;
        Some(r.map(|(offset, timestamp, key, value)| {
            (
                offset,
                timestamp,
                key.map(|(s, e)| &b[s..e]),
                value.map(|(s, e)| &b[s..e]),
            )
        }))
    }
}
