//! The Kafka wire protocol: every request and response of every API at
//! every version, generated from Kafka's JSON message specs
//! ([`messages`]), the wire primitives they are built from ([`wire`]),
//! request and response headers ([`header`]) and typed error codes
//! ([`error_code`]).
//!
//! ```
//! use bytes::BytesMut;
//! use sansa_core::protocol::messages::MetadataRequest;
//! use sansa_core::protocol::{Codec, Message};
//!
//! let req = MetadataRequest { allow_auto_topic_creation: false, ..Default::default() };
//! let mut buf = BytesMut::new();
//! req.encode(&mut buf, 12).expect("v12 carries every field set here");
//! let back = MetadataRequest::decode(&mut buf.freeze(), 12).expect("round trip");
//! assert_eq!(back, req);
//! assert!(MetadataRequest::VERSIONS.contains(12));
//! ```

pub mod error;
pub mod error_code;
#[cfg(test)]
mod golden_tests;
pub mod header;
pub mod messages;
#[cfg(test)]
mod oracle_tests;
#[cfg(test)]
pub(crate) mod testgen;
pub mod wire;

use bytes::{Bytes, BytesMut};

pub use error::{DecodeError, EncodeError};
pub use error_code::ErrorCode;
pub use header::{RequestHeader, ResponseHeader};
pub use messages::{ApiKey, RequestBody, ResponseBody};
pub use wire::Uuid;

/// A closed range of versions (`min..=max`); empty when `min > max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// The lowest version in the range.
    pub min: i16,
    /// The highest version in the range.
    pub max: i16,
}

impl VersionRange {
    /// The empty range.
    pub const NONE: VersionRange = VersionRange { min: 1, max: 0 };

    /// `min..=max`.
    pub const fn new(min: i16, max: i16) -> Self {
        VersionRange { min, max }
    }

    /// Whether `version` lies in the range.
    pub const fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }

    /// Whether the range holds no version.
    pub const fn is_empty(self) -> bool {
        self.min > self.max
    }

    /// The versions both ranges hold, e.g. what a client and a broker can
    /// both speak.
    pub const fn intersect(self, other: VersionRange) -> VersionRange {
        VersionRange {
            min: if self.min > other.min {
                self.min
            } else {
                other.min
            },
            max: if self.max < other.max {
                self.max
            } else {
                other.max
            },
        }
    }
}

/// A struct of the Kafka protocol that can be written and read at a given
/// version: every message, header, data schema and nested struct.
pub trait Codec: Sized {
    /// Appends the encoding at `version` to `buf`.
    ///
    /// Fails, rather than silently dropping data, when a field holds a value
    /// that `version` cannot carry.
    fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), EncodeError>;

    /// Reads one value at `version` from the front of `buf`, advancing it.
    /// `bytes` and `records` fields are slices of `buf`, not copies.
    fn decode(buf: &mut Bytes, version: i16) -> Result<Self, DecodeError>;

    /// Like [`Codec::decode`], and fails if bytes are left over.
    fn decode_exact(mut buf: Bytes, version: i16) -> Result<Self, DecodeError> {
        let v = Self::decode(&mut buf, version)?;
        if buf.is_empty() {
            Ok(v)
        } else {
            Err(DecodeError::TrailingBytes(buf.len()))
        }
    }
}

/// A top-level message of Kafka's specs (a request, response, header or
/// data schema) with its version ranges.
pub trait Message: Codec + Default + Clone + PartialEq + std::fmt::Debug {
    /// The message's name in Kafka's specs, e.g. `"ProduceRequest"`.
    const NAME: &'static str;
    /// Every version the spec defines.
    const VERSIONS: VersionRange;
    /// The versions encoded in the flexible format (KIP-482).
    const FLEXIBLE_VERSIONS: VersionRange;
    /// The versions the spec marks deprecated.
    const DEPRECATED_VERSIONS: VersionRange;
}

/// A request body, tied to its API key and response type.
pub trait Request: Message {
    /// The API this request belongs to.
    const API_KEY: ApiKey;
    /// The body a broker answers with.
    type Response: Response;
}

/// A response body, tied to its API key and request type.
pub trait Response: Message {
    /// The API this response belongs to.
    const API_KEY: ApiKey;
    /// The body this answers.
    type Request: Request;
}
