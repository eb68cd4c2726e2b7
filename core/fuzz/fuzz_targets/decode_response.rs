//! Any bytes, decoded as the response of any API at any version (chosen by
//! the first three bytes), must give a value or a typed error: never a
//! panic, never an allocation beyond the input's size. A value that decodes
//! must re-encode and decode to the same value.
//!
//! "The same" is `==`, except that a `float64` field (the client quota
//! messages) may hold NaN, which is not equal to itself: then the two
//! values must re-encode to the same bytes, NaN payload included.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sansa_core::protocol::{ApiKey, ResponseBody};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let api = ApiKey::ALL[usize::from(data[0]) % ApiKey::ALL.len()];
    let range = api.valid_versions();
    let span = (range.max - range.min + 1) as u8;
    let version = range.min + i16::from(data[1] % span);
    let header_version = api.response_header_version(version);
    let mut frame = Bytes::copy_from_slice(&data[2..]);
    let _ = sansa_core::protocol::header::peek_correlation_id(&frame);
    if header_version == 1 {
        // Skip the header as the connection would: correlation id plus tags.
        use sansa_core::protocol::Codec;
        if sansa_core::protocol::ResponseHeader::decode(&mut frame, 1).is_err() {
            return;
        }
    } else if frame.len() >= 4 {
        let _ = frame.split_to(4);
    } else {
        return;
    }
    if let Ok(body) = ResponseBody::decode(api, &mut frame, version) {
        let mut out = BytesMut::new();
        body.encode(&mut out, version)
            .expect("a decoded value re-encodes");
        let out = out.freeze();
        let again = ResponseBody::decode(api, &mut out.clone(), version).expect("re-decodes");
        if again != body {
            let mut bytes = BytesMut::new();
            again
                .encode(&mut bytes, version)
                .expect("a re-decoded value re-encodes");
            assert_eq!(bytes.freeze(), out, "{again:?} != {body:?}");
        }
    }
});
