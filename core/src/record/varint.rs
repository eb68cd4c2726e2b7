//! Zigzag varints and varlongs as Kafka's `ByteUtils` writes them.
//!
//! A varint is the protobuf base-128 encoding of the zigzag transform of an
//! `i32` (at most 5 bytes); a varlong the same for an `i64` (at most 10
//! bytes). Kafka's reader rejects a varint whose fifth byte still has the
//! continuation bit; we also reject set bits above bit 31 (or 63), which no
//! encoder writes: such a value would silently wrap in Java.

use super::RecordError;

/// Zigzag-encodes an `i32` so small magnitudes of either sign stay short.
#[inline(always)]
pub(crate) const fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// Zigzag-encodes an `i64`.
#[inline(always)]
pub(crate) const fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Bytes taken by the base-128 encoding of `u`.
#[inline(always)]
pub(crate) const fn uvarint_len(u: u64) -> usize {
    // ceil(bit_length / 7), with bit_length(0) counted as 1.
    let bits = 64 - (u | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Bytes taken by a zigzag varint.
#[inline(always)]
pub(crate) const fn varint_len(v: i32) -> usize {
    uvarint_len(zigzag32(v) as u64)
}

/// Bytes taken by a zigzag varlong.
#[inline(always)]
pub(crate) const fn varlong_len(v: i64) -> usize {
    uvarint_len(zigzag64(v))
}

/// Appends the base-128 encoding of `u`.
#[inline(always)]
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut u: u64) {
    if u < 0x80 {
        buf.push(u as u8);
        return;
    }
    if u < 0x4000 {
        buf.extend_from_slice(&[(u as u8) | 0x80, (u >> 7) as u8]);
        return;
    }
    let mut tmp = [0u8; 10];
    let mut i = 0;
    while u >= 0x80 {
        tmp[i] = (u as u8) | 0x80;
        u >>= 7;
        i += 1;
    }
    tmp[i] = u as u8;
    buf.extend_from_slice(&tmp[..=i]);
}

/// Appends a zigzag varint.
#[inline(always)]
pub(crate) fn put_varint(buf: &mut Vec<u8>, v: i32) {
    put_uvarint(buf, zigzag32(v) as u64);
}

/// Appends a zigzag varlong.
#[inline(always)]
pub(crate) fn put_varlong(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, zigzag64(v));
}

/// Reads a zigzag varint at `*pos`, advancing `pos` past it.
#[inline(always)]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, RecordError> {
    let u = read_uvarint(buf, pos, 5)? as u32;
    Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
}

/// Reads a zigzag varlong at `*pos`, advancing `pos` past it.
#[inline(always)]
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, RecordError> {
    let u = read_uvarint(buf, pos, 10)?;
    Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
}

/// Base-128 decoding, at most `max_bytes` bytes (5 for a varint, 10 for a
/// varlong).
#[inline(always)]
fn read_uvarint(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, RecordError> {
    let p = *pos;
    // One-byte values (-64..=63 zigzagged) are the common case for deltas
    // and small lengths: keep them to one compare.
    if let Some(&b0) = buf.get(p) {
        if b0 < 0x80 {
            *pos = p + 1;
            return Ok(b0 as u64);
        }
        // Two bytes cover lengths up to 8 KiB and deltas up to 4096: most
        // of what a batch holds.
        if let Some(&b1) = buf.get(p + 1) {
            if b1 < 0x80 {
                *pos = p + 2;
                return Ok((b0 & 0x7f) as u64 | (b1 as u64) << 7);
            }
        }
    }
    // With 8 bytes at hand, find the end of the varint from the
    // continuation bits of one little-endian word and gather its 7-bit
    // groups with shifts: no loop, one branch.
    if let Some(chunk) = buf.get(p..p + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        let word = u64::from_le_bytes(a);
        let stops = !word & 0x8080_8080_8080_8080;
        if stops != 0 {
            let len = (stops.trailing_zeros() as usize + 1) / 8;
            if len <= max_bytes {
                let x = if len == 8 {
                    word
                } else {
                    word & ((1u64 << (len * 8)) - 1)
                };
                let v = (x & 0x7f)
                    | ((x >> 1) & (0x7f << 7))
                    | ((x >> 2) & (0x7f << 14))
                    | ((x >> 3) & (0x7f << 21))
                    | ((x >> 4) & (0x7f << 28))
                    | ((x >> 5) & (0x7f << 35))
                    | ((x >> 6) & (0x7f << 42))
                    | ((x >> 7) & (0x7f << 49));
                if max_bytes == 5 && v >> 32 != 0 {
                    return Err(RecordError::VarintOverflow);
                }
                *pos = p + len;
                return Ok(v);
            }
        }
    }
    read_uvarint_slow(buf, pos, max_bytes)
}

/// The general loop: at most `max_bytes` bytes (5 for a varint, 10 for a
/// varlong), and no bits past 32 (or 64).
#[inline(never)]
fn read_uvarint_slow(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, RecordError> {
    let max_bits = if max_bytes == 5 { 32 } else { 64 };
    let mut value: u64 = 0;
    let mut p = *pos;
    for i in 0..max_bytes {
        let Some(&b) = buf.get(p) else {
            return Err(RecordError::Truncated);
        };
        p += 1;
        let shift = 7 * i as u32;
        let bits = (b & 0x7f) as u64;
        // Bits that would land past the target width mean the value does
        // not fit: Java would drop them silently, we refuse.
        if shift + 7 > max_bits && bits >> (max_bits - shift) != 0 {
            return Err(RecordError::VarintOverflow);
        }
        value |= bits << shift;
        if b < 0x80 {
            *pos = p;
            return Ok(value);
        }
    }
    Err(RecordError::VarintOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc_i32(v: i32) -> Vec<u8> {
        let mut b = Vec::new();
        put_varint(&mut b, v);
        b
    }

    #[test]
    fn known_encodings_match_kafka_byte_utils() {
        // Values from the protobuf zigzag table, which Kafka follows.
        assert_eq!(enc_i32(0), [0x00]);
        assert_eq!(enc_i32(-1), [0x01]);
        assert_eq!(enc_i32(1), [0x02]);
        assert_eq!(enc_i32(-2), [0x03]);
        assert_eq!(enc_i32(63), [0x7e]);
        assert_eq!(enc_i32(-64), [0x7f]);
        assert_eq!(enc_i32(64), [0x80, 0x01]);
        assert_eq!(enc_i32(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc_i32(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        let mut b = Vec::new();
        put_varlong(&mut b, i64::MIN);
        assert_eq!(
            b,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn overlong_and_overflowing_varints_are_rejected() {
        let mut p = 0;
        // Continuation bit on the fifth byte.
        assert!(matches!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut p),
            Err(RecordError::VarintOverflow)
        ));
        // Fifth byte carries bits above bit 31.
        p = 0;
        assert!(matches!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut p),
            Err(RecordError::VarintOverflow)
        ));
        p = 0;
        assert!(matches!(
            read_varlong(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03],
                &mut p
            ),
            Err(RecordError::VarintOverflow)
        ));
        p = 0;
        assert!(matches!(
            read_varint(&[0x80, 0x80], &mut p),
            Err(RecordError::Truncated)
        ));
        p = 0;
        assert!(matches!(
            read_varint(&[], &mut p),
            Err(RecordError::Truncated)
        ));
    }

    proptest! {
        #[test]
        fn varint_round_trips_and_len_is_exact(v in any::<i32>()) {
            let b = enc_i32(v);
            prop_assert_eq!(b.len(), varint_len(v));
            let mut p = 0;
            prop_assert_eq!(read_varint(&b, &mut p).ok(), Some(v));
            prop_assert_eq!(p, b.len());
        }

        #[test]
        fn varlong_round_trips_and_len_is_exact(v in any::<i64>()) {
            let mut b = Vec::new();
            put_varlong(&mut b, v);
            prop_assert_eq!(b.len(), varlong_len(v));
            let mut p = 0;
            prop_assert_eq!(read_varlong(&b, &mut p).ok(), Some(v));
            prop_assert_eq!(p, b.len());
        }

        #[test]
        fn word_fast_path_agrees_with_the_byte_loop(
            b in proptest::collection::vec(any::<u8>(), 0..14),
            max_bytes in prop::sample::select(vec![5usize, 10]),
        ) {
            let (mut p1, mut p2) = (0, 0);
            let fast = read_uvarint(&b, &mut p1, max_bytes);
            let slow = read_uvarint_slow(&b, &mut p2, max_bytes);
            prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
            if fast.is_ok() {
                prop_assert_eq!(p1, p2);
            }
        }

        #[test]
        fn varint_reader_never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut p = 0;
            let _ = read_varint(&b, &mut p);
            prop_assert!(p <= b.len());
            let mut p = 0;
            let _ = read_varlong(&b, &mut p);
            prop_assert!(p <= b.len());
        }
    }
}
