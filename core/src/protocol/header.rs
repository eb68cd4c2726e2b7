//! Request and response headers, and whole frames (header plus body).
//!
//! The header version follows the body version: a flexible request carries
//! header v2 (with tagged fields), a classic one v1; a flexible response
//! carries header v1, a classic one v0. ApiVersions is the exception: its
//! response header is always v0, so a client can read the answer before it
//! knows what the broker speaks (KIP-511). The size prefix of a frame
//! belongs to the connection layer and is not written here.

use bytes::{Buf, Bytes, BytesMut};

pub use super::messages::{RequestHeader, ResponseHeader};
use super::{ApiKey, Codec, DecodeError, EncodeError, Request, RequestBody};

impl RequestHeader {
    /// The header of a request for `version` of `api`.
    pub fn new(api: ApiKey, version: i16, correlation_id: i32, client_id: Option<&str>) -> Self {
        RequestHeader {
            request_api_key: api.key(),
            request_api_version: version,
            correlation_id,
            client_id: client_id.map(str::to_owned),
            ..Default::default()
        }
    }

    /// The API named by the header, if this build knows it.
    pub fn api_key(&self) -> Option<ApiKey> {
        ApiKey::from_i16(self.request_api_key)
    }
}

/// Appends a request frame (header and body, without the size prefix).
pub fn encode_request<R: Request>(
    buf: &mut BytesMut,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &R,
) -> Result<(), EncodeError> {
    let header = RequestHeader::new(R::API_KEY, version, correlation_id, client_id);
    header.encode(buf, R::API_KEY.request_header_version(version))?;
    body.encode(buf, version)
}

/// Appends a request frame for any body (the simulator, proxies).
pub fn encode_request_body(
    buf: &mut BytesMut,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &RequestBody,
) -> Result<(), EncodeError> {
    let api = body.api_key();
    let header = RequestHeader::new(api, version, correlation_id, client_id);
    header.encode(buf, api.request_header_version(version))?;
    body.encode(buf, version)
}

/// Reads a request frame (without the size prefix), as a broker does: the
/// API key and version come first in every header version, and choose how
/// the rest of the header and the body are read.
pub fn decode_request(mut frame: Bytes) -> Result<(RequestHeader, RequestBody), DecodeError> {
    if frame.len() < 4 {
        return Err(DecodeError::Truncated {
            needed: 4,
            remaining: frame.len(),
        });
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::from_i16(key).ok_or(DecodeError::UnknownApiKey(key))?;
    if !api.valid_versions().contains(version) {
        return Err(DecodeError::UnsupportedVersion {
            message: api.name(),
            version,
        });
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))?;
    let body = RequestBody::decode(api, &mut frame, version)?;
    Ok((header, body))
}

/// Reads the correlation id of a response frame without decoding the rest,
/// so the connection can find which request it answers.
pub fn peek_correlation_id(frame: &[u8]) -> Result<i32, DecodeError> {
    let mut b = frame;
    if b.remaining() < 4 {
        return Err(DecodeError::Truncated {
            needed: 4,
            remaining: b.remaining(),
        });
    }
    Ok(b.get_i32())
}

/// Reads a response frame for `version` of request type `R`.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
) -> Result<(ResponseHeader, R::Response), DecodeError> {
    let header = ResponseHeader::decode(&mut frame, R::API_KEY.response_header_version(version))?;
    let body = <R::Response as Codec>::decode(&mut frame, version)?;
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};

    #[test]
    fn api_versions_response_header_is_always_v0() {
        for v in ApiKey::ApiVersions.valid_versions().min..=ApiKey::ApiVersions.valid_versions().max
        {
            assert_eq!(ApiKey::ApiVersions.response_header_version(v), 0);
        }
        // Flexible v3+ requests still use header v2.
        assert_eq!(ApiKey::ApiVersions.request_header_version(3), 2);
        assert_eq!(ApiKey::Metadata.response_header_version(9), 1);
        assert_eq!(ApiKey::Metadata.response_header_version(8), 0);
        assert_eq!(ApiKey::ControlledShutdown.request_header_version(0), 0);
    }

    #[test]
    fn client_id_stays_a_classic_string_in_header_v2() {
        let mut buf = BytesMut::new();
        let req = ApiVersionsRequest {
            client_software_name: "sansa".into(),
            client_software_version: "0.1.0".into(),
            ..Default::default()
        };
        assert!(encode_request(&mut buf, 3, 7, Some("cli"), &req).is_ok());
        // key 18, version 3, correlation 7, client id int16-length "cli",
        // empty header tags, then the compact body.
        assert_eq!(
            &buf[..14],
            &[0, 18, 0, 3, 0, 0, 0, 7, 0, 3, b'c', b'l', b'i', 0]
        );
        assert_eq!(&buf[14..], b"\x06sansa\x060.1.0\x00");
        let (h, body) = decode_request(buf.freeze()).expect("decodes");
        assert_eq!(h.client_id.as_deref(), Some("cli"));
        assert_eq!(body, RequestBody::ApiVersions(req));
    }

    #[test]
    fn responses_decode_with_the_header_their_api_uses() {
        let resp = ApiVersionsResponse {
            error_code: 35,
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        let header = ResponseHeader {
            correlation_id: 9,
            ..Default::default()
        };
        assert!(header.encode(&mut buf, 0).is_ok());
        assert!(resp.encode(&mut buf, 3).is_ok());
        let frame = buf.freeze();
        assert_eq!(peek_correlation_id(&frame), Ok(9));
        let (h, r) = decode_response::<ApiVersionsRequest>(frame, 3).expect("decodes");
        assert_eq!(h.correlation_id, 9);
        assert_eq!(r, resp);
    }

    #[test]
    fn unknown_api_keys_and_versions_are_typed_errors() {
        let frame = Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            decode_request(frame),
            Err(DecodeError::UnknownApiKey(0x7f00))
        );
        let frame = Bytes::from_static(&[0, 3, 0x7f, 0, 0, 0, 0, 1]);
        assert!(matches!(
            decode_request(frame),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        let _ = MetadataRequest::default();
    }
}
