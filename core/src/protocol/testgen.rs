//! Random valid messages for the generated round-trip tests: a small
//! deterministic generator (seeded by proptest) and the check every
//! message goes through.

use bytes::{Bytes, BytesMut};

use super::wire::{RawTaggedField, Uuid};
use super::Message;

/// A random value of a generated struct that is valid at `version`.
pub(crate) trait Arbitrary {
    /// Draws one.
    fn arbitrary(g: &mut Gen, version: i16) -> Self;
}

/// A splitmix64 generator with a budget that bounds nested array sizes.
pub(crate) struct Gen {
    state: u64,
    depth: u32,
}

impl Gen {
    pub(crate) fn new(seed: u64) -> Self {
        Gen {
            state: seed,
            depth: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True one time in `n`.
    pub(crate) fn chance(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    /// Picks edge values often: they are where encodings break.
    fn edgy(&mut self, min: i64, max: i64) -> i64 {
        match self.next() % 6 {
            0 => min,
            1 => max,
            2 => 0,
            3 => -1_i64.clamp(min, max),
            _ => self.next() as i64,
        }
    }

    pub(crate) fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    pub(crate) fn i8(&mut self) -> i8 {
        self.edgy(i8::MIN.into(), i8::MAX.into()) as i8
    }
    pub(crate) fn i16(&mut self) -> i16 {
        self.edgy(i16::MIN.into(), i16::MAX.into()) as i16
    }
    pub(crate) fn u16(&mut self) -> u16 {
        self.edgy(0, u16::MAX.into()) as u16
    }
    pub(crate) fn i32(&mut self) -> i32 {
        self.edgy(i32::MIN.into(), i32::MAX.into()) as i32
    }
    #[allow(dead_code)] // no spec of Kafka 4.0 has a uint32 field yet
    pub(crate) fn u32(&mut self) -> u32 {
        self.edgy(0, u32::MAX.into()) as u32
    }
    pub(crate) fn i64(&mut self) -> i64 {
        self.edgy(i64::MIN, i64::MAX)
    }
    pub(crate) fn f64(&mut self) -> f64 {
        (self.next() % 1_000_000) as f64 / 7.0
    }
    pub(crate) fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }
    pub(crate) fn string(&mut self) -> String {
        const ALPHABET: &[&str] = &["a", "B", "7", "-", "_", ".", "é", "🦀", "トピック", " "];
        let n = (self.next() % 12) as usize;
        (0..n)
            .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
            .collect()
    }
    pub(crate) fn bytes(&mut self) -> Bytes {
        let n = (self.next() % 40) as usize;
        (0..n)
            .map(|_| self.next() as u8)
            .collect::<Vec<u8>>()
            .into()
    }
    pub(crate) fn vec<T>(&mut self, mut f: impl FnMut(&mut Gen) -> T) -> Vec<T> {
        let max = match self.depth {
            0 => 4,
            1 => 3,
            2 => 2,
            _ => 1,
        };
        let n = (self.next() % (max + 1)) as usize;
        self.depth += 1;
        let v = (0..n).map(|_| f(self)).collect();
        self.depth -= 1;
        v
    }
    pub(crate) fn unknown_tagged_field(&mut self) -> RawTaggedField {
        // Far above any tag Kafka's specs use, so never a known field.
        RawTaggedField {
            tag: 10_000 + (self.next() % 1000) as u32,
            data: self.bytes(),
        }
    }
}

/// Round trip of `M` at every valid version: value equality after
/// decode, byte equality after re-encode, and every strict prefix of the
/// encoding is rejected with an error (never a panic).
pub(crate) fn check_message<M: Message + Arbitrary>(g: &mut Gen) {
    for version in M::VERSIONS.min..=M::VERSIONS.max {
        let m = M::arbitrary(g, version);
        let mut buf = BytesMut::new();
        if let Err(e) = m.encode(&mut buf, version) {
            panic!("{} v{version}: encode failed: {e}\n{m:?}", M::NAME);
        }
        let bytes = buf.freeze();
        let back = match M::decode_exact(bytes.clone(), version) {
            Ok(b) => b,
            Err(e) => panic!("{} v{version}: decode failed: {e}\n{m:?}", M::NAME),
        };
        assert_eq!(back, m, "{} v{version}: value changed", M::NAME);
        let mut again = BytesMut::new();
        assert!(back.encode(&mut again, version).is_ok());
        assert_eq!(
            again.freeze(),
            bytes,
            "{} v{version}: bytes changed",
            M::NAME
        );
        for cut in 0..bytes.len() {
            assert!(
                M::decode(&mut bytes.slice(..cut), version).is_err(),
                "{} v{version}: a {cut}-byte prefix of {} decoded",
                M::NAME,
                bytes.len()
            );
        }
    }
}
