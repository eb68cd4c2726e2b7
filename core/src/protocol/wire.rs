//! Wire primitives: the integers, varints, strings, byte arrays, arrays and
//! tagged-field sections that every Kafka message is made of.
//!
//! Decoding reads from a [`Bytes`] and advances it, so a `bytes` or
//! `records` field is a refcounted slice of the frame, never a copy.
//! Every length read from the wire is checked against the bytes that remain
//! before anything is allocated: a hostile frame can make a decode fail, but
//! never make it allocate more than the frame itself could hold.
//!
//! Encoding appends to a [`BytesMut`]. "Compact" forms are the flexible
//! versions' (KIP-482): unsigned varint lengths offset by one, so that zero
//! means null.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};

/// A Kafka UUID (topic ids, directory ids, ...): 16 bytes on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID, which Kafka uses to mean "no id".
    pub const ZERO: Uuid = Uuid([0; 16]);

    /// Builds a UUID from its most and least significant 64 bits, the way
    /// Java's `Uuid` holds it.
    pub const fn from_u64_pair(most: u64, least: u64) -> Uuid {
        let m = most.to_be_bytes();
        let l = least.to_be_bytes();
        Uuid([
            m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], l[0], l[1], l[2], l[3], l[4], l[5],
            l[6], l[7],
        ])
    }

    /// The UUID's bytes, in wire order.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Debug for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Uuid {
    /// Kafka prints UUIDs as URL-safe base64 without padding; hex is
    /// easier to compare by eye and unambiguous, so sansa prints hex.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A tagged field this build of sansa does not know, kept so that it can
/// be re-encoded unchanged (a proxy or the simulator must not drop fields a
/// newer peer sent).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawTaggedField {
    /// The field's tag.
    pub tag: u32,
    /// The field's encoded value, exactly as received.
    pub data: Bytes,
}

/// The unknown tagged fields of one struct, in the order received. Empty
/// (and allocation-free) in the common case.
pub type UnknownTaggedFields = Vec<RawTaggedField>;

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

#[inline]
fn need(buf: &Bytes, n: usize) -> Result<(), DecodeError> {
    if buf.remaining() < n {
        Err(DecodeError::Truncated {
            needed: n,
            remaining: buf.remaining(),
        })
    } else {
        Ok(())
    }
}

macro_rules! read_fixed {
    ($(#[$doc:meta] $name:ident -> $ty:ty, $get:ident;)*) => {$(
        #[$doc]
        #[inline]
        pub fn $name(buf: &mut Bytes) -> Result<$ty, DecodeError> {
            need(buf, std::mem::size_of::<$ty>())?;
            Ok(buf.$get())
        }
    )*};
}

read_fixed! {
    /// Reads an `int8`.
    read_i8 -> i8, get_i8;
    /// Reads an `int16`, big-endian.
    read_i16 -> i16, get_i16;
    /// Reads a `uint16`, big-endian.
    read_u16 -> u16, get_u16;
    /// Reads an `int32`, big-endian.
    read_i32 -> i32, get_i32;
    /// Reads a `uint32`, big-endian.
    read_u32 -> u32, get_u32;
    /// Reads an `int64`, big-endian.
    read_i64 -> i64, get_i64;
    /// Reads a `float64`, big-endian IEEE 754.
    read_f64 -> f64, get_f64;
}

/// Reads a `bool`: one byte, any non-zero value is true (as Java reads it).
#[inline]
pub fn read_bool(buf: &mut Bytes) -> Result<bool, DecodeError> {
    Ok(read_i8(buf)? != 0)
}

/// Reads a `uuid`.
#[inline]
pub fn read_uuid(buf: &mut Bytes) -> Result<Uuid, DecodeError> {
    need(buf, 16)?;
    let mut id = [0u8; 16];
    buf.copy_to_slice(&mut id);
    Ok(Uuid(id))
}

/// Reads an unsigned varint of at most 32 bits (the flexible versions'
/// lengths and tags).
#[inline]
pub fn read_uvarint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..5 {
        need(buf, 1)?;
        let b = buf.get_u8();
        if i == 4 && b > 0x0f {
            return Err(DecodeError::VarintOverflow);
        }
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::VarintOverflow)
}

/// Reads a zigzag-encoded signed varint of at most 32 bits.
#[inline]
pub fn read_varint(buf: &mut Bytes) -> Result<i32, DecodeError> {
    let raw = read_uvarint(buf)?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag-encoded signed varint of at most 64 bits.
#[inline]
pub fn read_varlong(buf: &mut Bytes) -> Result<i64, DecodeError> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        need(buf, 1)?;
        let b = buf.get_u8();
        if i == 9 && b > 0x01 {
            return Err(DecodeError::VarintOverflow);
        }
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(DecodeError::VarintOverflow)
}

/// Reads a length (`-1` meaning null) in the classic (int16 or int32) or
/// compact (unsigned varint plus one) form.
#[inline]
fn read_len(buf: &mut Bytes, compact: bool, wide: bool) -> Result<Option<usize>, DecodeError> {
    let len: i64 = if compact {
        i64::from(read_uvarint(buf)?) - 1
    } else if wide {
        i64::from(read_i32(buf)?)
    } else {
        i64::from(read_i16(buf)?)
    };
    match len {
        -1 => Ok(None),
        n if n < -1 => Err(DecodeError::InvalidLength(n)),
        n => Ok(Some(n as usize)),
    }
}

/// Splits off `len` bytes, failing if fewer remain.
#[inline]
fn take(buf: &mut Bytes, len: usize) -> Result<Bytes, DecodeError> {
    need(buf, len)?;
    Ok(buf.split_to(len))
}

#[inline]
fn utf8(bytes: Bytes) -> Result<String, DecodeError> {
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(DecodeError::InvalidUtf8),
    }
}

/// Reads a nullable `string` (int16 length, or compact).
#[inline]
pub fn read_nullable_string(buf: &mut Bytes, compact: bool) -> Result<Option<String>, DecodeError> {
    match read_len(buf, compact, false)? {
        None => Ok(None),
        Some(len) => take(buf, len).and_then(utf8).map(Some),
    }
}

/// Reads a non-nullable `string`. A null on the wire reads as empty (see
/// [`null_read_as_empty`]).
#[inline]
pub fn read_string(
    buf: &mut Bytes,
    compact: bool,
    field: &'static str,
) -> Result<String, DecodeError> {
    Ok(read_nullable_string(buf, compact)?.unwrap_or_else(|| null_read_as_empty(field)))
}

/// What a null in a non-nullable `string` or `bytes` field reads as: the
/// empty value, as franz-go and librdkafka read it (Kafka's Java client
/// throws). librdkafka's mock cluster (2.12.1) writes nulls there in its
/// error answers: JoinGroup's ProtocolName, LeaderId and MemberId,
/// SyncGroup's Assignment, FindCoordinator's Host
/// (`rdkafka_mock_handlers.c`); refusing the whole answer closed the
/// connection and lost the error code the client must act on (an
/// UNKNOWN_MEMBER_ID that should reset the member id, a
/// REBALANCE_IN_PROGRESS that should rejoin). Reading empty costs no
/// allocation and hides nothing the error code does not say.
/// `tests/tests/group_peers.rs` holds the mock to it.
#[cold]
fn null_read_as_empty<T: Default>(field: &'static str) -> T {
    tracing::debug!(field, "null in a non-nullable field read as empty");
    T::default()
}

/// Reads nullable `bytes` (int32 length, or compact) as a slice of `buf`.
#[inline]
pub fn read_nullable_bytes(buf: &mut Bytes, compact: bool) -> Result<Option<Bytes>, DecodeError> {
    match read_len(buf, compact, true)? {
        None => Ok(None),
        Some(len) => take(buf, len).map(Some),
    }
}

/// Reads non-nullable `bytes`. A null on the wire reads as empty (see
/// [`null_read_as_empty`]).
#[inline]
pub fn read_bytes(
    buf: &mut Bytes,
    compact: bool,
    field: &'static str,
) -> Result<Bytes, DecodeError> {
    Ok(read_nullable_bytes(buf, compact)?.unwrap_or_else(|| null_read_as_empty(field)))
}

/// Reads an array header: `None` for a null array, else the element count.
///
/// Every element takes at least one byte on the wire in every Kafka schema,
/// so a count larger than the bytes left is rejected before any allocation.
#[inline]
pub fn read_array_len(buf: &mut Bytes, compact: bool) -> Result<Option<usize>, DecodeError> {
    match read_len(buf, compact, true)? {
        Some(n) if n > buf.remaining() => Err(DecodeError::LengthExceedsFrame {
            length: n,
            remaining: buf.remaining(),
        }),
        other => Ok(other),
    }
}

/// Reads an array of `T`, each read by `elem`.
#[inline]
pub fn read_nullable_array<T>(
    buf: &mut Bytes,
    compact: bool,
    mut elem: impl FnMut(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<Option<Vec<T>>, DecodeError> {
    let Some(n) = read_array_len(buf, compact)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(elem(buf)?);
    }
    Ok(Some(out))
}

/// Reads a non-nullable array; a null on the wire is an error naming `field`.
#[inline]
pub fn read_array<T>(
    buf: &mut Bytes,
    compact: bool,
    field: &'static str,
    elem: impl FnMut(&mut Bytes) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    read_nullable_array(buf, compact, elem)?.ok_or(DecodeError::UnexpectedNull { field })
}

/// Reads the presence byte of a nullable struct field (`-1` null, `1`
/// present, as Java writes it).
#[inline]
pub fn read_struct_presence(buf: &mut Bytes) -> Result<bool, DecodeError> {
    Ok(read_i8(buf)? >= 0)
}

/// Reads a tagged-field section, handing each field to `known`, which
/// returns `Ok(false)` for a tag it does not know; those are kept in
/// `unknown` with their raw bytes.
#[inline]
pub fn read_tagged_fields(
    buf: &mut Bytes,
    unknown: &mut UnknownTaggedFields,
    mut known: impl FnMut(u32, &mut Bytes) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let count = read_uvarint(buf)? as usize;
    // Each tagged field takes at least two bytes (tag and size).
    if count > buf.remaining() / 2 + 1 {
        return Err(DecodeError::LengthExceedsFrame {
            length: count,
            remaining: buf.remaining(),
        });
    }
    let mut last: Option<u32> = None;
    for _ in 0..count {
        let tag = read_uvarint(buf)?;
        if last.is_some_and(|l| tag <= l) {
            return Err(DecodeError::TaggedFieldsOutOfOrder { tag });
        }
        last = Some(tag);
        let size = read_uvarint(buf)? as usize;
        let mut data = take(buf, size)?;
        if !known(tag, &mut data)? {
            unknown.push(RawTaggedField { tag, data });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Writes an unsigned varint.
#[inline]
pub fn write_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// The encoded size of an unsigned varint.
#[inline]
pub const fn uvarint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

/// Writes a zigzag signed varint.
#[inline]
pub fn write_varint(buf: &mut BytesMut, v: i32) {
    write_uvarint(buf, ((v << 1) ^ (v >> 31)) as u32);
}

/// Writes a zigzag signed varlong.
#[inline]
pub fn write_varlong(buf: &mut BytesMut, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        buf.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    buf.put_u8(raw as u8);
}

/// Writes a `bool` as one byte.
#[inline]
pub fn write_bool(buf: &mut BytesMut, v: bool) {
    buf.put_u8(u8::from(v));
}

/// Writes a `uuid`.
#[inline]
pub fn write_uuid(buf: &mut BytesMut, v: &Uuid) {
    buf.put_slice(&v.0);
}

#[inline]
fn write_len(
    buf: &mut BytesMut,
    len: Option<usize>,
    compact: bool,
    wide: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    let too_long = || EncodeError::TooLong {
        field,
        length: len.unwrap_or(0),
    };
    match (len, compact) {
        (None, true) => buf.put_u8(0),
        (Some(n), true) => {
            let n = u32::try_from(n)
                .ok()
                .and_then(|n| n.checked_add(1))
                .ok_or_else(too_long)?;
            write_uvarint(buf, n)
        }
        (None, false) if wide => buf.put_i32(-1),
        (None, false) => buf.put_i16(-1),
        (Some(n), false) if wide => buf.put_i32(i32::try_from(n).map_err(|_| too_long())?),
        (Some(n), false) => buf.put_i16(i16::try_from(n).map_err(|_| too_long())?),
    }
    Ok(())
}

/// Writes a nullable `string`.
#[inline]
pub fn write_nullable_string(
    buf: &mut BytesMut,
    v: Option<&str>,
    compact: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    write_len(buf, v.map(str::len), compact, false, field)?;
    if let Some(s) = v {
        buf.put_slice(s.as_bytes());
    }
    Ok(())
}

/// Writes a `string`.
#[inline]
pub fn write_string(
    buf: &mut BytesMut,
    v: &str,
    compact: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    write_nullable_string(buf, Some(v), compact, field)
}

/// Writes nullable `bytes`.
#[inline]
pub fn write_nullable_bytes(
    buf: &mut BytesMut,
    v: Option<&[u8]>,
    compact: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    write_len(buf, v.map(<[u8]>::len), compact, true, field)?;
    if let Some(b) = v {
        buf.put_slice(b);
    }
    Ok(())
}

/// Writes `bytes`.
#[inline]
pub fn write_bytes(
    buf: &mut BytesMut,
    v: &[u8],
    compact: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    write_nullable_bytes(buf, Some(v), compact, field)
}

/// Writes an array header for `len` elements, or null.
#[inline]
pub fn write_array_len(
    buf: &mut BytesMut,
    len: Option<usize>,
    compact: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    write_len(buf, len, compact, true, field)
}

/// Writes an array, each element by `elem`.
#[inline]
pub fn write_array<T>(
    buf: &mut BytesMut,
    v: &[T],
    compact: bool,
    field: &'static str,
    mut elem: impl FnMut(&mut BytesMut, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    write_array_len(buf, Some(v.len()), compact, field)?;
    for e in v {
        elem(buf, e)?;
    }
    Ok(())
}

/// Writes a nullable array.
#[inline]
pub fn write_nullable_array<T>(
    buf: &mut BytesMut,
    v: Option<&[T]>,
    compact: bool,
    field: &'static str,
    elem: impl FnMut(&mut BytesMut, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    match v {
        Some(v) => write_array(buf, v, compact, field, elem),
        None => write_array_len(buf, None, compact, field),
    }
}

/// Collects the tagged fields of one struct while it is encoded, then
/// writes the section in ascending tag order, merging known fields with the
/// unknown ones kept from decoding.
#[derive(Debug, Default)]
pub struct TaggedFieldsWriter {
    fields: Vec<(u32, Bytes)>,
}

impl TaggedFieldsWriter {
    /// An empty section.
    #[inline]
    pub fn new() -> Self {
        TaggedFieldsWriter { fields: Vec::new() }
    }

    /// Adds a known field, encoded by `f` into a scratch buffer.
    pub fn field(
        &mut self,
        tag: u32,
        f: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let mut scratch = BytesMut::new();
        f(&mut scratch)?;
        self.fields.push((tag, scratch.freeze()));
        Ok(())
    }

    /// Writes the section: the count, then each field as tag, size, data.
    pub fn finish(
        mut self,
        buf: &mut BytesMut,
        unknown: &[RawTaggedField],
    ) -> Result<(), EncodeError> {
        if self.fields.is_empty() && unknown.is_empty() {
            buf.put_u8(0);
            return Ok(());
        }
        self.fields
            .extend(unknown.iter().map(|f| (f.tag, f.data.clone())));
        self.fields.sort_by_key(|(tag, _)| *tag);
        if let Some(w) = self.fields.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(EncodeError::DuplicateTag { tag: w[0].0 });
        }
        let count = u32::try_from(self.fields.len()).map_err(|_| EncodeError::TooLong {
            field: "tagged fields",
            length: self.fields.len(),
        })?;
        write_uvarint(buf, count);
        for (tag, data) in &self.fields {
            write_uvarint(buf, *tag);
            let size = u32::try_from(data.len()).map_err(|_| EncodeError::TooLong {
                field: "tagged field",
                length: data.len(),
            })?;
            write_uvarint(buf, size);
            buf.put_slice(data);
        }
        Ok(())
    }
}

/// Writes a tagged-field section holding only `unknown` fields (the common
/// case of a struct with no known tagged fields).
#[inline]
pub fn write_unknown_tagged_fields(
    buf: &mut BytesMut,
    unknown: &[RawTaggedField],
) -> Result<(), EncodeError> {
    if unknown.is_empty() {
        buf.put_u8(0);
        Ok(())
    } else {
        TaggedFieldsWriter::new().finish(buf, unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(f: impl FnOnce(&mut BytesMut)) -> Bytes {
        let mut b = BytesMut::new();
        f(&mut b);
        b.freeze()
    }

    proptest! {
        #[test]
        fn uvarint_round_trips_and_len_matches(v: u32) {
            let mut b = encoded(|b| write_uvarint(b, v));
            prop_assert_eq!(b.len(), uvarint_len(v));
            prop_assert_eq!(read_uvarint(&mut b).ok(), Some(v));
            prop_assert!(b.is_empty());
        }

        #[test]
        fn varint_round_trips(v: i32) {
            let mut b = encoded(|b| write_varint(b, v));
            prop_assert_eq!(read_varint(&mut b).ok(), Some(v));
        }

        #[test]
        fn varlong_round_trips(v: i64) {
            let mut b = encoded(|b| write_varlong(b, v));
            prop_assert_eq!(read_varlong(&mut b).ok(), Some(v));
        }

        #[test]
        fn strings_round_trip_in_both_forms(s in proptest::option::of(".{0,40}"), compact: bool) {
            let mut b = BytesMut::new();
            write_nullable_string(&mut b, s.as_deref(), compact, "s").map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut b = b.freeze();
            prop_assert_eq!(read_nullable_string(&mut b, compact).ok(), Some(s));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(data: Vec<u8>, compact: bool) {
            let b = Bytes::from(data);
            let _ = read_nullable_string(&mut b.clone(), compact);
            let _ = read_nullable_bytes(&mut b.clone(), compact);
            let _ = read_varlong(&mut b.clone());
            let _ = read_nullable_array(&mut b.clone(), compact, read_i32);
            let _ = read_tagged_fields(&mut b.clone(), &mut Vec::new(), |_, _| Ok(false));
        }
    }

    #[test]
    fn zigzag_matches_the_protobuf_examples() {
        // Kafka's varints are protobuf's zigzag varints.
        for (v, wire) in [(0, 0u8), (-1, 1), (1, 2), (-2, 3), (63, 126), (-64, 127)] {
            assert_eq!(encoded(|b| write_varint(b, v)).as_ref(), &[wire]);
        }
        assert_eq!(encoded(|b| write_varint(b, 64)).as_ref(), &[0x80, 0x01]);
    }

    #[test]
    fn overlong_varints_are_rejected() {
        let mut b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(read_uvarint(&mut b), Err(DecodeError::VarintOverflow));
        let mut b = Bytes::from_static(&[0x80; 11]);
        assert_eq!(read_varlong(&mut b), Err(DecodeError::VarintOverflow));
    }

    #[test]
    fn compact_lengths_are_offset_by_one_and_zero_is_null() {
        assert_eq!(
            encoded(|b| write_nullable_string(b, None, true, "s").unwrap_or_default()).as_ref(),
            &[0]
        );
        assert_eq!(
            encoded(|b| write_string(b, "ab", true, "s").unwrap_or_default()).as_ref(),
            &[3, b'a', b'b']
        );
        assert_eq!(
            encoded(|b| write_string(b, "ab", false, "s").unwrap_or_default()).as_ref(),
            &[0, 2, b'a', b'b']
        );
    }

    #[test]
    fn absurd_array_counts_fail_before_allocating() {
        // int32 count of two billion with four bytes behind it.
        let mut b = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(matches!(
            read_nullable_array(&mut b, false, read_i32),
            Err(DecodeError::LengthExceedsFrame { .. })
        ));
    }

    #[test]
    fn negative_lengths_other_than_null_are_rejected() {
        let mut b = Bytes::from_static(&[0xff, 0xfe]);
        assert_eq!(
            read_nullable_string(&mut b, false),
            Err(DecodeError::InvalidLength(-2))
        );
    }

    /// librdkafka's mock cluster writes nulls in non-nullable fields of
    /// its error answers; they read as empty, in both encodings, and what
    /// follows them still reads.
    #[test]
    fn a_null_in_a_non_nullable_string_or_bytes_reads_as_empty() {
        // Classic: int16 -1 (string), int32 -1 (bytes), then an int16.
        let mut b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x19]);
        assert_eq!(read_string(&mut b, false, "LeaderId"), Ok(String::new()));
        assert_eq!(read_bytes(&mut b, false, "Assignment"), Ok(Bytes::new()));
        assert_eq!(read_i16(&mut b), Ok(25));
        // Compact: uvarint 0 is null for both.
        let mut b = Bytes::from_static(&[0x00, 0x00, 0x07]);
        assert_eq!(read_string(&mut b, true, "Host"), Ok(String::new()));
        assert_eq!(read_bytes(&mut b, true, "Assignment"), Ok(Bytes::new()));
        assert_eq!(read_i8(&mut b), Ok(7));
        // A non-nullable array stays strict: no peer was seen sending one.
        let mut b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            read_array(&mut b, false, "Members", read_i8),
            Err(DecodeError::UnexpectedNull { field: "Members" })
        );
    }

    #[test]
    fn unknown_tagged_fields_are_kept_and_rewritten_in_order() {
        let unknown = vec![RawTaggedField {
            tag: 7,
            data: Bytes::from_static(b"xy"),
        }];
        let mut w = TaggedFieldsWriter::new();
        assert!(w
            .field(2, |b| {
                b.put_u8(9);
                Ok(())
            })
            .is_ok());
        let mut out = BytesMut::new();
        assert!(w.finish(&mut out, &unknown).is_ok());
        assert_eq!(out.as_ref(), &[2, 2, 1, 9, 7, 2, b'x', b'y']);
        let mut kept = Vec::new();
        let mut seen = Vec::new();
        let mut b = out.freeze();
        assert!(read_tagged_fields(&mut b, &mut kept, |tag, data| {
            if tag == 2 {
                seen.push(read_i8(data)?);
                Ok(true)
            } else {
                Ok(false)
            }
        })
        .is_ok());
        assert_eq!(seen, vec![9]);
        assert_eq!(kept, unknown);
    }
}
