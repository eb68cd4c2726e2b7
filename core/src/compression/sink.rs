//! The bounded output of one decompression.
//!
//! Every decoder writes through a [`Sink`], which owns the rule that a call
//! may append at most `limit` bytes and may never make the caller's `Vec`
//! hold more than `limit + 1` bytes past where it started: the one extra byte
//! is how a decoder that cannot be told "stop at N" shows that it wanted
//! more. Growth is geometric and exact (`reserve_exact`), so the capacity
//! also stays near that bound instead of doubling past it.

use super::CompressionError;

/// The smallest step by which the output grows, so that tiny outputs do not
/// cost a reallocation per few bytes.
const MIN_GROWTH: usize = 16 * 1024;

/// The part of a caller's `Vec` that one decompression may fill.
///
/// `out[start..filled]` is what has been produced. `out` may be longer than
/// `filled`: decoders that need an initialised slice to write into get
/// zeroed scratch space there, and whatever of it they did not keep is cut
/// off by [`Sink::finish`].
pub(super) struct Sink<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    filled: usize,
    limit: usize,
    /// `start + limit + 1`, saturated: the longest `out` may become.
    max_len: usize,
}

impl<'a> Sink<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>, limit: usize) -> Sink<'a> {
        let start = out.len();
        Sink {
            out,
            start,
            filled: start,
            limit,
            max_len: start.saturating_add(limit).saturating_add(1),
        }
    }

    pub(super) fn too_large(&self) -> CompressionError {
        CompressionError::TooLarge { limit: self.limit }
    }

    /// Bytes produced so far by this call.
    pub(super) fn written(&self) -> usize {
        self.filled - self.start
    }

    /// Bytes that may still be produced without passing the limit.
    pub(super) fn room(&self) -> usize {
        self.limit.saturating_sub(self.written())
    }

    /// Index in the underlying `Vec` where the next byte goes.
    pub(super) fn position(&self) -> usize {
        self.filled
    }

    /// What this call has produced from absolute index `from` on.
    pub(super) fn produced_since(&self, from: usize) -> &[u8] {
        self.out.get(from..self.filled).unwrap_or_default()
    }

    /// Appends `data`, or fails without allocating if that passes the limit.
    pub(super) fn extend_from_slice(&mut self, data: &[u8]) -> Result<(), CompressionError> {
        if data.len() > self.room() {
            return Err(self.too_large());
        }
        self.out.truncate(self.filled);
        let needed = self.filled + data.len();
        if self.out.capacity() < needed {
            let target = self
                .filled
                .saturating_add(self.written().max(MIN_GROWTH))
                .min(self.max_len)
                .max(needed);
            self.out.reserve_exact(target - self.filled);
        }
        self.out.extend_from_slice(data);
        self.filled = needed;
        Ok(())
    }

    /// A zeroed slice starting at the current position, `want` bytes long but
    /// cut to one byte past the limit; the bool says whether it was cut, in
    /// which case a decoder that fills it has passed the limit.
    ///
    /// Pass what was written with [`Sink::commit`]. Space zeroed for an
    /// earlier call and not committed is handed out again rather than
    /// zeroed twice.
    pub(super) fn scratch(&mut self, want: usize) -> (&mut [u8], bool) {
        let (end, capped) = self.grow_scratch(want);
        (&mut self.out[self.filled..end], capped)
    }

    /// Like [`Sink::scratch`], and also what was produced from absolute
    /// index `history_from` on, for decoders whose matches reach back into
    /// earlier output (linked LZ4 blocks).
    pub(super) fn scratch_with_history(
        &mut self,
        want: usize,
        history_from: usize,
    ) -> (&[u8], &mut [u8], bool) {
        let (end, capped) = self.grow_scratch(want);
        let (head, tail) = self.out.split_at_mut(self.filled);
        let history = head.get(history_from..).unwrap_or_default();
        (history, &mut tail[..end - self.filled], capped)
    }

    /// Makes `out[filled..end]` initialised, for the `end` that `want` and
    /// the limit allow; returns it and whether the limit cut it.
    fn grow_scratch(&mut self, want: usize) -> (usize, bool) {
        let available = self.max_len - self.filled;
        let capped = want >= available;
        let end = self.filled + want.min(available);
        if self.out.len() < end {
            // Grow geometrically, but never past `max_len`.
            let grown = self
                .filled
                .saturating_add(self.written().max(MIN_GROWTH))
                .min(self.max_len)
                .max(end);
            self.out.reserve_exact(grown - self.out.len());
            self.out.resize(grown, 0);
        }
        (end, capped)
    }

    /// Keeps `n` bytes of the scratch slice as produced output; fails if that
    /// passes the limit.
    pub(super) fn commit(&mut self, n: usize) -> Result<(), CompressionError> {
        self.filled += n;
        debug_assert!(self.filled <= self.out.len());
        if self.written() > self.limit {
            return Err(self.too_large());
        }
        Ok(())
    }

    /// The `Vec` itself, for decoders that append into its spare capacity
    /// (flate2's `decompress_vec`): cut back to the produced bytes, with
    /// spare capacity for `want` more bytes, but never more than one byte past
    /// the limit. Call [`Sink::sync_len`] after appending.
    pub(super) fn spare_capacity(&mut self, want: usize) -> Result<&mut Vec<u8>, CompressionError> {
        self.out.truncate(self.filled);
        let available = self.max_len - self.filled;
        if available == 0 {
            return Err(self.too_large());
        }
        let take = want.max(1).min(available);
        if self.out.capacity() - self.filled < take {
            self.out.reserve_exact(take);
        }
        Ok(self.out)
    }

    /// Takes note of what was appended to the `Vec` from
    /// [`Sink::spare_capacity`]; fails if that passes the limit.
    pub(super) fn sync_len(&mut self) -> Result<(), CompressionError> {
        self.filled = self.out.len();
        if self.written() > self.limit {
            return Err(self.too_large());
        }
        Ok(())
    }

    /// How much to ask for next when the output size is unknown: as much as
    /// was written so far (doubling), at least [`MIN_GROWTH`].
    pub(super) fn next_growth(&self) -> usize {
        self.written().max(MIN_GROWTH)
    }

    /// Drops the unused scratch space and hands the `Vec` back.
    pub(super) fn finish(self) -> &'a mut Vec<u8> {
        self.out.truncate(self.filled);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_never_grows_past_one_byte_over_the_limit() {
        let mut out = vec![7u8; 10];
        let mut sink = Sink::new(&mut out, 100);
        let (slice, capped) = sink.scratch(1 << 30);
        assert_eq!(slice.len(), 101);
        assert!(capped);
        assert!(sink.commit(101).is_err());
        let out = sink.finish();
        assert!(
            out.capacity() <= 10 + 101 + 64,
            "capacity {}",
            out.capacity()
        );
    }

    #[test]
    fn extend_refuses_before_copying() {
        let mut out = Vec::new();
        let mut sink = Sink::new(&mut out, 4);
        assert!(sink.extend_from_slice(b"abcd").is_ok());
        assert_eq!(
            sink.extend_from_slice(b"e"),
            Err(CompressionError::TooLarge { limit: 4 })
        );
        assert_eq!(sink.finish().as_slice(), b"abcd");
    }

    #[test]
    fn uncommitted_scratch_is_cut_off() {
        let mut out = b"keep".to_vec();
        let mut sink = Sink::new(&mut out, 1000);
        let (slice, _) = sink.scratch(10);
        slice[..3].copy_from_slice(b"abc");
        assert!(sink.commit(3).is_ok());
        let _ = sink.scratch(500);
        assert_eq!(sink.finish().as_slice(), b"keepabc");
    }

    #[test]
    fn limit_of_usize_max_does_not_overflow() {
        let mut out = vec![1u8; 3];
        let mut sink = Sink::new(&mut out, usize::MAX);
        assert_eq!(sink.room(), usize::MAX);
        assert!(sink.extend_from_slice(b"xy").is_ok());
        assert_eq!(sink.written(), 2);
    }
}
