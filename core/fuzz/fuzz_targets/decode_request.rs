//! Any bytes, decoded as a request frame the way a broker (the simulator)
//! reads one: a value or a typed error, never a panic. A value that decodes
//! must re-encode to a frame that decodes to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sansa_core::protocol::header::{decode_request, encode_request_body};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, body)) = decode_request(Bytes::copy_from_slice(data)) {
        let mut out = BytesMut::new();
        encode_request_body(
            &mut out,
            header.request_api_version,
            header.correlation_id,
            header.client_id.as_deref(),
            &body,
        )
        .expect("a decoded request re-encodes");
        let (h2, b2) = decode_request(out.freeze()).expect("re-decodes");
        assert_eq!(b2, body);
        assert_eq!(h2.correlation_id, header.correlation_id);
    }
});
