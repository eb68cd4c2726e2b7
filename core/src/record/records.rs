//! Records and their headers as a reader sees them, and the lazy iterator
//! over the records of one batch.
//!
//! A magic v2 record (`DefaultRecord`) is: length (varint, of what follows),
//! attributes (int8, unused), timestamp delta (varlong), offset delta
//! (varint), key length (varint, negative for null) and key, value length
//! (varint, negative for null) and value, header count (varint), then per
//! header a key length (varint, never negative) and key (UTF-8 by contract),
//! a value length (varint, negative for null) and value.
//!
//! Everything is validated when the record is read (lengths, header walk,
//! the record ending exactly where its length says), so iterating headers
//! afterwards cannot fail and needs no allocation.

use bytes::Bytes;

use super::legacy::LegacyRecords;
use super::varint::{read_varint, read_varlong};
use super::RecordError;

/// One record read from a batch. `key`, `value` and the header bytes are
/// slices of the fetched data (or of the batch's one decompressed buffer):
/// cloning the record clones reference counts, not bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset in the partition.
    pub offset: i64,
    /// Milliseconds since the epoch: the producer's create time, or for a
    /// `LogAppendTime` batch the broker's append time (the batch's max
    /// timestamp); -1 for magic v0 messages.
    pub timestamp: i64,
    /// The key, `None` for a null key.
    pub key: Option<Bytes>,
    /// The value, `None` for a null value (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// The headers, in wire order, duplicates kept.
    pub headers: Headers,
}

/// A record borrowed from its batch's buffer: the same fields as [`Record`]
/// without touching reference counts, for callers that copy or inspect the
/// bytes and drop them at once. Obtained from [`Records::next_ref`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Absolute offset in the partition.
    pub offset: i64,
    /// Timestamp, with the same rules as [`Record::timestamp`].
    pub timestamp: i64,
    /// The key, `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value, `None` for a null value.
    pub value: Option<&'a [u8]>,
    /// The raw header section and its count.
    headers: HeadersRef<'a>,
}

impl<'a> RecordRef<'a> {
    /// Iterates the headers in wire order.
    pub fn headers(&self) -> HeaderRefIter<'a> {
        HeaderRefIter {
            buf: self.headers.buf,
            pos: 0,
            remaining: self.headers.count,
        }
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.headers.count as usize
    }

    /// Makes an owned [`Record`] whose fields are slices of `backing`, which
    /// must be the buffer this record was read from (as returned by
    /// [`Records::buffer`]); `None` if it is not.
    pub fn to_record(&self, backing: &Bytes) -> Option<Record> {
        let slice = |s: &[u8]| -> Option<Bytes> {
            if s.is_empty() {
                return Some(Bytes::new());
            }
            let base = backing.as_ptr() as usize;
            let start = (s.as_ptr() as usize).checked_sub(base)?;
            let end = start.checked_add(s.len())?;
            (end <= backing.len()).then(|| backing.slice(start..end))
        };
        Some(Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: match self.key {
                Some(k) => Some(slice(k)?),
                None => None,
            },
            value: match self.value {
                Some(v) => Some(slice(v)?),
                None => None,
            },
            headers: Headers {
                buf: if self.headers.count == 0 {
                    None
                } else {
                    Some(slice(self.headers.buf)?)
                },
                count: self.headers.count,
            },
        })
    }
}

/// The headers of a [`Record`]: the validated header section of the record
/// and the number of headers in it. Iterate with [`Headers::iter`] (owned
/// [`Header`]s, each a pair of slices) or [`Headers::iter_ref`] (borrowed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// `None` when there are none: dropping a record then skips a call.
    buf: Option<Bytes>,
    count: u32,
}

static NO_BYTES: Bytes = Bytes::new();

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeadersRef<'a> {
    buf: &'a [u8],
    count: u32,
}

impl Headers {
    /// No headers (what legacy v0/v1 records always have).
    pub const fn empty() -> Headers {
        Headers {
            buf: None,
            count: 0,
        }
    }

    /// Number of headers, duplicates included.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iterates the headers as owned slices of the fetched data.
    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            inner: self.iter_ref(),
            backing: self.buf.as_ref().unwrap_or(&NO_BYTES),
        }
    }

    /// Iterates the headers as borrowed byte slices.
    pub fn iter_ref(&self) -> HeaderRefIter<'_> {
        HeaderRefIter {
            buf: self.buf.as_deref().unwrap_or(&[]),
            pos: 0,
            remaining: self.count,
        }
    }

    /// The value of the last header named `key`, as Kafka's
    /// `Headers.lastHeader`: `Some(None)` if that header's value is null,
    /// `None` if there is no such header.
    pub fn last(&self, key: &str) -> Option<Option<&[u8]>> {
        self.iter_ref()
            .filter(|h| h.key == key.as_bytes())
            .last()
            .map(|h| h.value)
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = Header;
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

/// One record header, owned: its key and value are slices of the fetched
/// data. Kafka header keys are strings; [`Header::key_str`] checks the UTF-8.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header key (UTF-8 by Kafka's contract; not checked on read).
    pub key: Bytes,
    /// The header value, `None` for null.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with the given key and value.
    pub fn new(key: impl Into<Bytes>, value: Option<Bytes>) -> Header {
        Header {
            key: key.into(),
            value,
        }
    }

    /// The key as a string, or the UTF-8 error if a producer wrote bytes
    /// that are not UTF-8 (Java would have replaced them with U+FFFD).
    pub fn key_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.key)
    }
}

/// One record header borrowed from its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeaderRef<'a> {
    /// The header key (UTF-8 by Kafka's contract; not checked on read).
    pub key: &'a [u8],
    /// The header value, `None` for null.
    pub value: Option<&'a [u8]>,
}

impl<'a> HeaderRef<'a> {
    /// The key as a string, if it is UTF-8.
    pub fn key_str(&self) -> Result<&'a str, std::str::Utf8Error> {
        std::str::from_utf8(self.key)
    }
}

/// Iterator over borrowed headers; see [`Headers::iter_ref`].
#[derive(Clone, Debug)]
pub struct HeaderRefIter<'a> {
    buf: &'a [u8],
    pos: usize,
    remaining: u32,
}

impl<'a> Iterator for HeaderRefIter<'a> {
    type Item = HeaderRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<HeaderRef<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // The section was validated when the record was read; a failure
        // here is impossible, and ends the iteration rather than panicking.
        let key = read_field(self.buf, &mut self.pos).ok()??;
        let value = read_field(self.buf, &mut self.pos).ok()?;
        Some(HeaderRef {
            key: &self.buf[key.0..key.1],
            value: value.map(|(s, e)| &self.buf[s..e]),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

/// Iterator over owned headers; see [`Headers::iter`].
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    inner: HeaderRefIter<'a>,
    backing: &'a Bytes,
}

impl Iterator for HeaderIter<'_> {
    type Item = Header;

    #[inline]
    fn next(&mut self) -> Option<Header> {
        let h = self.inner.next()?;
        Some(Header {
            key: self.backing.slice_ref(h.key),
            value: h.value.map(|v| self.backing.slice_ref(v)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// A length-prefixed byte field: `(start, end)` in the buffer, or `None`
/// for a negative (null) length.
type Field = Option<(usize, usize)>;

#[inline(always)]
fn read_field(buf: &[u8], pos: &mut usize) -> Result<Field, RecordError> {
    let len = read_varint(buf, pos)?;
    if len < 0 {
        // Java's `Utils.readBytes` treats every negative length as null.
        return Ok(None);
    }
    let start = *pos;
    let end = start + len as usize;
    if end > buf.len() {
        return Err(RecordError::Truncated);
    }
    *pos = end;
    Ok(Some((start, end)))
}

/// Where the parts of one v2 record are in its buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawRecord {
    pub(crate) offset_delta: i32,
    pub(crate) timestamp_delta: i64,
    pub(crate) key: Field,
    pub(crate) value: Field,
    pub(crate) headers: (usize, usize),
    pub(crate) header_count: u32,
}

/// Reads one v2 record at `*pos`, validating all of it, and advances `pos`
/// to its end.
#[inline(always)]
pub(crate) fn parse_v2_record(buf: &[u8], pos: &mut usize) -> Result<RawRecord, RecordError> {
    let body_len = read_varint(buf, pos)?;
    if body_len < 0 {
        return Err(bad_length("record", body_len));
    }
    let start = *pos;
    let end = start + body_len as usize;
    if end > buf.len() {
        return Err(RecordError::Truncated);
    }
    // Parse within the record only, so a field that claims to run past the
    // record's end is caught even when more records follow.
    let b = &buf[..end];
    let mut p = start + 1; // attributes: no bits are defined
    let timestamp_delta = read_varlong(b, &mut p)?;
    let offset_delta = read_varint(b, &mut p)?;
    let key = read_field(b, &mut p)?;
    let value = read_field(b, &mut p)?;
    let count = read_varint(b, &mut p)?;
    let headers_start = p;
    if count != 0 {
        // Each header takes at least two bytes: a bound that keeps a hostile
        // count from spinning (Java checks `numHeaders > remaining`).
        if count < 0 || count as usize > end.saturating_sub(p) {
            return Err(bad_length("header count", count));
        }
        for _ in 0..count {
            let klen = read_varint(b, &mut p)?;
            if klen < 0 {
                return Err(bad_length("header key", klen));
            }
            p += klen as usize;
            if p > end {
                return Err(RecordError::Truncated);
            }
            read_field(b, &mut p)?;
        }
    }
    if p != end {
        // Also covers `p > end` when the attributes byte itself is missing.
        return Err(bad_length("record", body_len));
    }
    *pos = end;
    Ok(RawRecord {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers: (headers_start, end),
        header_count: count as u32,
    })
}

#[cold]
pub(crate) fn bad_length(what: &'static str, length: i32) -> RecordError {
    RecordError::BadLength {
        what,
        length: length as i64,
    }
}

/// The lazy iterator over the records of one [`super::Batch`].
///
/// Yields `Ok(Record)` for each record, and after an error yields nothing
/// more. After the last record the header counts, bytes left over in the
/// batch are reported as [`RecordError::TrailingBytes`] (Kafka's "records
/// still remaining"). The iterator never allocates per record.
#[derive(Debug)]
pub struct Records {
    pub(crate) inner: RecordsInner,
}

#[derive(Debug)]
pub(crate) enum RecordsInner {
    V2(V2Records),
    Legacy(LegacyRecords),
}

#[derive(Debug)]
pub(crate) struct V2Records {
    pub(crate) buf: Bytes,
    pub(crate) pos: usize,
    pub(crate) remaining: u32,
    pub(crate) base_offset: i64,
    pub(crate) base_timestamp: i64,
    pub(crate) log_append_time: Option<i64>,
}

impl V2Records {
    #[inline(always)]
    fn next_raw(&mut self) -> Option<Result<RawRecord, RecordError>> {
        if self.remaining == 0 {
            let left = self.buf.len().saturating_sub(self.pos);
            if left == 0 {
                return None;
            }
            self.pos = self.buf.len();
            return Some(Err(RecordError::TrailingBytes(left)));
        }
        self.remaining -= 1;
        match parse_v2_record(&self.buf, &mut self.pos) {
            Ok(raw) => Some(Ok(raw)),
            Err(e) => {
                self.remaining = 0;
                self.pos = self.buf.len();
                Some(Err(e))
            }
        }
    }

    #[inline(always)]
    fn offset_and_timestamp(&self, raw: &RawRecord) -> (i64, i64) {
        let offset = self.base_offset.wrapping_add(raw.offset_delta as i64);
        let timestamp = match self.log_append_time {
            Some(t) => t,
            None => self.base_timestamp.wrapping_add(raw.timestamp_delta),
        };
        (offset, timestamp)
    }
}

#[inline(always)]
fn slice_field(buf: &Bytes, f: Field) -> Option<Bytes> {
    f.map(|(s, e)| buf.slice(s..e))
}

impl Records {
    /// Records not yet yielded, as the batch header counts them (for a
    /// compressed legacy wrapper, the inner messages found).
    pub fn remaining(&self) -> usize {
        match &self.inner {
            RecordsInner::V2(v) => v.remaining as usize,
            RecordsInner::Legacy(l) => l.remaining(),
        }
    }

    /// The buffer the records are read from: the batch's bytes, or its
    /// decompressed records. [`RecordRef::to_record`] slices it.
    pub fn buffer(&self) -> &Bytes {
        match &self.inner {
            RecordsInner::V2(v) => &v.buf,
            RecordsInner::Legacy(l) => l.buffer(),
        }
    }

    /// The next record borrowed from the batch's buffer: no reference
    /// count is touched. The same sequence as [`Iterator::next`].
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn next_ref(&mut self) -> Option<Result<RecordRef<'_>, RecordError>> {
        match &mut self.inner {
            RecordsInner::V2(v) => {
                let raw = match v.next_raw()? {
                    Ok(raw) => raw,
                    Err(e) => return Some(Err(e)),
                };
                let (offset, timestamp) = v.offset_and_timestamp(&raw);
                let b: &[u8] = &v.buf;
                Some(Ok(RecordRef {
                    offset,
                    timestamp,
                    key: raw.key.map(|(s, e)| &b[s..e]),
                    value: raw.value.map(|(s, e)| &b[s..e]),
                    headers: HeadersRef {
                        buf: &b[raw.headers.0..raw.headers.1],
                        count: raw.header_count,
                    },
                }))
            }
            RecordsInner::Legacy(l) => l.next_ref().map(|r| {
                r.map(|(offset, timestamp, key, value)| RecordRef {
                    offset,
                    timestamp,
                    key,
                    value,
                    headers: HeadersRef { buf: &[], count: 0 },
                })
            }),
        }
    }
}

impl Iterator for Records {
    type Item = Result<Record, RecordError>;

    #[inline]
    fn next(&mut self) -> Option<Result<Record, RecordError>> {
        match &mut self.inner {
            RecordsInner::V2(v) => {
                let raw = match v.next_raw()? {
                    Ok(raw) => raw,
                    Err(e) => return Some(Err(e)),
                };
                let (offset, timestamp) = v.offset_and_timestamp(&raw);
                let headers = if raw.header_count == 0 {
                    Headers::empty()
                } else {
                    Headers {
                        buf: Some(v.buf.slice(raw.headers.0..raw.headers.1)),
                        count: raw.header_count,
                    }
                };
                Some(Ok(Record {
                    offset,
                    timestamp,
                    key: slice_field(&v.buf, raw.key),
                    value: slice_field(&v.buf, raw.value),
                    headers,
                }))
            }
            RecordsInner::Legacy(l) => l.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // The lower bound stays 0: the count comes from the wire, and
        // `collect` pre-allocates by it.
        (0, Some(self.remaining().saturating_add(1)))
    }
}
