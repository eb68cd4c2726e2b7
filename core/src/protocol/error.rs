//! Errors of the protocol layer: what can go wrong turning bytes into
//! messages and back.

/// Why a frame could not be decoded.
///
/// Every input from the network is hostile: each of these is a typed answer
/// to a malformed or unexpected frame, never a panic. The connection that
/// received it is no longer in a known state and should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ended before a value was complete.
    #[error("truncated: needed {needed} more bytes, {remaining} remain")]
    Truncated {
        /// Bytes the value needed.
        needed: usize,
        /// Bytes that remained.
        remaining: usize,
    },
    /// A length or count was negative (other than `-1`, null).
    #[error("invalid length {0}")]
    InvalidLength(i64),
    /// A length or count promised more than the frame holds.
    #[error("length {length} exceeds the {remaining} bytes left in the frame")]
    LengthExceedsFrame {
        /// The length read from the wire.
        length: usize,
        /// Bytes that remained.
        remaining: usize,
    },
    /// A varint ran past its maximum width.
    #[error("varint longer than its type allows")]
    VarintOverflow,
    /// A string was not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A null arrived where the schema does not allow one.
    #[error("null in non-nullable field {field}")]
    UnexpectedNull {
        /// The field's name in Kafka's spec.
        field: &'static str,
    },
    /// Tagged fields must arrive in strictly ascending tag order.
    #[error("tagged field {tag} out of order or repeated")]
    TaggedFieldsOutOfOrder {
        /// The offending tag.
        tag: u32,
    },
    /// The API key is not one this build knows.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// The version is outside what the message's schema defines.
    #[error("{message} has no version {version}")]
    UnsupportedVersion {
        /// The message's name.
        message: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// Bytes were left over after a complete message.
    #[error("{0} bytes left over after the message")]
    TrailingBytes(usize),
}

/// Why a message could not be encoded at the version asked for.
///
/// These are programming errors of the caller (a field set that the
/// negotiated version cannot carry), reported instead of silently dropping
/// data, as Kafka's own generated code does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The version is outside what the message's schema defines.
    #[error("{message} has no version {version}")]
    UnsupportedVersion {
        /// The message's name.
        message: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// A field holds a non-default value but does not exist at this version
    /// and is not ignorable.
    #[error("field {field} cannot be sent at version {version}")]
    FieldNotInVersion {
        /// The field's name in Kafka's spec.
        field: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// A field is null but not nullable at this version.
    #[error("field {field} cannot be null at version {version}")]
    NullNotAllowed {
        /// The field's name in Kafka's spec.
        field: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// A string, byte array or array is longer than its length prefix can say.
    #[error("field {field} is too long ({length})")]
    TooLong {
        /// The field's name in Kafka's spec.
        field: &'static str,
        /// Its length.
        length: usize,
    },
    /// Two tagged fields share a tag (a known one and an unknown one kept
    /// from decoding).
    #[error("tagged field {tag} given twice")]
    DuplicateTag {
        /// The tag.
        tag: u32,
    },
}
