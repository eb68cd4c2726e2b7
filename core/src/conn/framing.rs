//! Length-prefixed frames: Kafka's `int32 size` then `size` bytes.
//!
//! A push parser in the style of httparse: bytes go in as they arrive, whole
//! frames come out as `Bytes` slices of one buffer, never copied again.
//! A size beyond the configured maximum is an error before anything is
//! allocated for it, so a hostile or confused peer cannot make the client
//! reserve gigabytes by sending four bytes.

use bytes::{Buf, Bytes, BytesMut};

/// Why the byte stream can no longer be split into frames. The connection
/// must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("negative frame size {0}")]
    NegativeSize(i32),
    /// The size prefix exceeds the configured maximum.
    #[error("frame of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The announced size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max_frame: usize,
}

impl FrameReader {
    /// A reader that rejects frames larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameReader {
            buf: BytesMut::new(),
            max_frame,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame (without its size prefix), `Ok(None)` if
    /// more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize(size))?;
        if size > self.max_frame {
            return Err(FrameError::TooLarge {
                size,
                max: self.max_frame,
            });
        }
        if self.buf.len() < 4 + size {
            // Reserve for the rest of this frame once, so a large frame
            // arriving in small reads is not copied at every doubling.
            self.buf.reserve(4 + size - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(4);
        Ok(Some(self.buf.split_to(size).freeze()))
    }
}

/// Writes a frame's size prefix in front of a body built after it: call
/// with the buffer position where the 4-byte prefix was reserved.
pub(crate) fn patch_size(buf: &mut BytesMut, start: usize) -> Result<(), FrameError> {
    let size = buf.len() - start - 4;
    let prefix = i32::try_from(size).map_err(|_| FrameError::TooLarge {
        size,
        max: i32::MAX as usize,
    })?;
    buf[start..start + 4].copy_from_slice(&prefix.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    proptest! {
        #[test]
        fn frames_survive_any_split_of_the_stream(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..6),
            chunk in 1usize..17,
        ) {
            let stream: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
            let mut r = FrameReader::new(1 << 20);
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                r.push(piece);
                while let Some(f) = r.next_frame().map_err(|e| TestCaseError::fail(e.to_string()))? {
                    out.push(f.to_vec());
                }
            }
            prop_assert_eq!(out, bodies);
            prop_assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn oversized_and_negative_frames_are_rejected_before_allocation() {
        let mut r = FrameReader::new(1024);
        r.push(&[0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(
            r.next_frame(),
            Err(FrameError::TooLarge {
                size: i32::MAX as usize,
                max: 1024
            })
        );
        let mut r = FrameReader::new(1024);
        r.push(&[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(r.next_frame(), Err(FrameError::NegativeSize(-2)));
    }
}
