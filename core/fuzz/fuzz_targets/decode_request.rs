//! Any bytes, decoded as a request frame the way a broker (the simulator)
//! reads one: a value or a typed error, never a panic. A value that decodes
//! must re-encode to a frame that decodes to the same value.
//!
//! "The same" is `==`, except that a `float64` field (the client quota
//! messages) may hold NaN, which is not equal to itself: then the two
//! values must re-encode to the same bytes, NaN payload included.
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
        let out = out.freeze();
        let (h2, b2) = decode_request(out.clone()).expect("re-decodes");
        if b2 != body {
            let mut again = BytesMut::new();
            encode_request_body(
                &mut again,
                header.request_api_version,
                header.correlation_id,
                header.client_id.as_deref(),
                &b2,
            )
            .expect("a re-decoded request re-encodes");
            assert_eq!(again.freeze(), out, "{b2:?} != {body:?}");
        }
        assert_eq!(h2.correlation_id, header.correlation_id);
    }
});
