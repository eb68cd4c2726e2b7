//! Any bytes through `FrameReader`, pushed in arbitrary chunks, under a
//! small maximum frame size: never a panic, and exactly the frames (and the
//! error) that a one-shot reference parse of the whole stream gives, however
//! the stream is cut. Then a well-formed stream built from the input (frames
//! of sizes up to the maximum, empty ones included) must come out frame for
//! frame, with nothing left buffered.
//!
//! Input: byte 0 is the maximum frame size (0..=255), byte 1 the number of
//! chunk-size bytes that follow (0..=15; none means one chunk); the rest is
//! the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sansa_core::conn::{FrameError, FrameReader};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max_frame = usize::from(data[0]);
    let n_sizes = usize::from(data[1] & 15).min(data.len() - 2);
    let sizes = &data[2..2 + n_sizes];
    let stream = &data[2 + n_sizes..];

    // 1. Arbitrary bytes.
    let want = reference(stream, max_frame);
    let got = chunked(stream, sizes, max_frame);
    assert_eq!(got.frames, want.frames);
    assert_eq!(got.error, want.error);
    if got.error.is_none() {
        assert_eq!(got.buffered, stream.len() - want.consumed);
    }

    // 2. A well-formed stream built from the input: each byte of the stream
    // is the size (mod max + 1) of a frame whose body is the next bytes.
    let mut bodies: Vec<&[u8]> = Vec::new();
    let mut rest = stream;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len) % (max_frame + 1);
        let len = len.min(tail.len());
        bodies.push(&tail[..len]);
        rest = &tail[len..];
    }
    let mut wire = Vec::new();
    for b in &bodies {
        wire.extend_from_slice(&(b.len() as i32).to_be_bytes());
        wire.extend_from_slice(b);
    }
    let got = chunked(&wire, sizes, max_frame);
    assert_eq!(got.error, None);
    assert_eq!(got.frames.len(), bodies.len());
    for (f, b) in got.frames.iter().zip(&bodies) {
        assert_eq!(f.as_slice(), *b);
    }
    assert_eq!(got.buffered, 0);
});

struct Outcome {
    frames: Vec<Vec<u8>>,
    error: Option<FrameError>,
    buffered: usize,
    consumed: usize,
}

/// The whole stream at once, by hand.
fn reference(stream: &[u8], max_frame: usize) -> Outcome {
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut error = None;
    while stream.len() - pos >= 4 {
        let size = i32::from_be_bytes(stream[pos..pos + 4].try_into().unwrap());
        if size < 0 {
            error = Some(FrameError::NegativeSize(size));
            break;
        }
        let size = size as usize;
        if size > max_frame {
            error = Some(FrameError::TooLarge {
                size,
                max: max_frame,
            });
            break;
        }
        if stream.len() - pos - 4 < size {
            break;
        }
        frames.push(stream[pos + 4..pos + 4 + size].to_vec());
        pos += 4 + size;
    }
    Outcome {
        frames,
        error,
        buffered: 0,
        consumed: pos,
    }
}

/// The stream pushed in chunks whose sizes cycle through `sizes` (0 is an
/// empty push), draining frames after every push.
fn chunked(stream: &[u8], sizes: &[u8], max_frame: usize) -> Outcome {
    let mut r = FrameReader::new(max_frame);
    let mut frames = Vec::new();
    let mut pushed = 0usize;
    let mut taken = 0usize;
    let mut i = 0usize;
    let mut pos = 0usize;
    let mut empty_pushes = 0usize;
    loop {
        let step = if sizes.is_empty() {
            stream.len() - pos
        } else {
            let s = usize::from(sizes[i % sizes.len()]);
            i += 1;
            s
        };
        // Guarantee progress when every size is 0.
        if step == 0 {
            empty_pushes += 1;
        }
        let step = if empty_pushes > sizes.len() { 1 } else { step };
        if step > 0 {
            empty_pushes = 0;
        }
        let end = (pos + step).min(stream.len());
        r.push(&stream[pos..end]);
        pushed += end - pos;
        pos = end;
        loop {
            match r.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.len() <= max_frame);
                    taken += 4 + f.len();
                    frames.push(f.to_vec());
                }
                Ok(None) => break,
                Err(e) => {
                    // The error is sticky: the connection is closed, but
                    // asking again must not panic or change the answer.
                    assert_eq!(r.next_frame(), Err(e.clone()));
                    return Outcome {
                        frames,
                        error: Some(e),
                        buffered: r.buffered(),
                        consumed: taken,
                    };
                }
            }
        }
        assert_eq!(r.buffered(), pushed - taken);
        if pos == stream.len() {
            break;
        }
    }
    Outcome {
        frames,
        error: None,
        buffered: r.buffered(),
        consumed: taken,
    }
}
