//! One broker connection as a state machine: the ApiVersions handshake,
//! correlation ids, pipelined requests, in-order responses and request
//! timeouts.
//!
//! Kafka answers the requests of one connection strictly in the order they
//! were sent, so in-flight requests are a queue and each response must carry
//! the correlation id at its front; anything else means the stream is
//! broken and the connection is closed. A request that times out also
//! closes the connection: a late answer would otherwise be matched to the
//! wrong request.
//!
//! The handshake follows KIP-511: send ApiVersions at the highest version
//! sansa knows; a broker that does not speak it answers with
//! UNSUPPORTED_VERSION in a v0 body listing the ApiVersions versions it
//! does speak, and the request is sent again at that version.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::framing::{patch_size, FrameError, FrameReader};
use super::versions::ApiVersionTable;
use crate::protocol::header::peek_correlation_id;
use crate::protocol::messages::api_versions_request::ApiVersionsRequest;
use crate::protocol::messages::api_versions_response::ApiVersionsResponse;
use crate::protocol::{
    ApiKey, Codec, DecodeError, EncodeError, ErrorCode, Request, RequestHeader, ResponseBody,
    ResponseHeader,
};
use crate::time::Timestamp;

/// Settings of a connection; the client derives them from its `Config`.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// The client id sent in every request header.
    pub client_id: Option<String>,
    /// Sent in ApiVersions v3+ (KIP-511) so brokers can tell clients apart.
    pub software_name: String,
    /// Sent in ApiVersions v3+.
    pub software_version: String,
    /// The largest response frame accepted. Default 100 MiB, Kafka's
    /// `socket.request.max.bytes`, comfortably above a 50 MiB fetch.
    pub max_frame_bytes: usize,
    /// How long a request may wait for its response. Default 30 s.
    pub request_timeout: Duration,
    /// How long opening the transport may take. Default 10 s (franz-go's
    /// dial timeout).
    pub connect_timeout: Duration,
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            client_id: Some("sansa".into()),
            software_name: "sansa".into(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            max_frame_bytes: 100 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// An opaque value the caller attaches to a request and gets back with its
/// response, to find what the request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestToken(pub u64);

/// A response matched to its request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The token given with the request.
    pub token: RequestToken,
    /// The request's API.
    pub api: ApiKey,
    /// The version the request was sent at.
    pub version: i16,
    /// When the request was written.
    pub sent_at: Timestamp,
    /// The decoded body.
    pub body: ResponseBody,
}

/// Why a connection failed. Every variant closes the connection; the
/// requests in flight on it are handed back by [`Connection::close`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The byte stream could not be split into frames.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A response did not decode.
    #[error("decoding a {api:?} v{version} response: {source}")]
    Decode {
        /// The request's API.
        api: ApiKey,
        /// The version sent.
        version: i16,
        /// What was wrong.
        source: DecodeError,
    },
    /// A request could not be encoded at the version chosen.
    #[error("encoding a {api:?} v{version} request: {source}")]
    Encode {
        /// The request's API.
        api: ApiKey,
        /// The version asked for.
        version: i16,
        /// What was wrong.
        source: EncodeError,
    },
    /// A response arrived for a request other than the oldest in flight.
    #[error("response correlation id {got}, expected {expected:?}")]
    CorrelationMismatch {
        /// The oldest request in flight, if any.
        expected: Option<i32>,
        /// The id in the response.
        got: i32,
    },
    /// A request got no answer in time.
    #[error("{api:?} request timed out after {after:?}")]
    RequestTimedOut {
        /// The request's API.
        api: ApiKey,
        /// How long it waited.
        after: Duration,
    },
    /// The broker refused the ApiVersions handshake.
    #[error("ApiVersions handshake failed: {0}")]
    Handshake(ErrorCode),
    /// A request was sent before the handshake finished.
    #[error("connection not ready")]
    NotReady,
    /// The broker and sansa share no version of this API.
    #[error("the broker speaks no version of {0:?} that sansa speaks")]
    NoCommonVersion(ApiKey),
    /// The connection was already closed.
    #[error("connection closed")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the transport to open.
    Connecting,
    /// ApiVersions sent at this version, waiting for the answer.
    Handshaking(i16),
    /// Requests may be sent.
    Ready,
    /// Failed or closed; nothing more happens.
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    sent_at: Timestamp,
    deadline: Timestamp,
    /// `None` for the handshake's own request.
    token: Option<RequestToken>,
}

/// A request that was in flight when the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Orphan {
    /// The token given with the request.
    pub token: RequestToken,
    /// The request's API.
    pub api: ApiKey,
    /// Its bytes were handed to the driver, so the broker may have acted on
    /// it: a produce that ends this way is ambiguous and must not be failed
    /// without care (see the producer's safe-abort rule).
    pub written: bool,
}

/// One broker connection.
#[derive(Debug)]
pub struct Connection {
    config: ConnConfig,
    state: State,
    versions: ApiVersionTable,
    next_correlation_id: i32,
    in_flight: VecDeque<InFlight>,
    /// Correlation ids below this were handed out by `poll_transmit`.
    written_below: i32,
    reader: FrameReader,
    out: BytesMut,
    responses: VecDeque<Response>,
}

/// The highest ApiVersions version sansa tries first.
fn api_versions_first_try() -> i16 {
    ApiKey::ApiVersions.max_stable_version()
}

impl Connection {
    /// A connection that is opening; call [`Connection::on_connected`]
    /// when the transport is up.
    pub fn new(config: ConnConfig) -> Self {
        let reader = FrameReader::new(config.max_frame_bytes);
        Connection {
            config,
            state: State::Connecting,
            versions: ApiVersionTable::default(),
            next_correlation_id: 0,
            in_flight: VecDeque::new(),
            written_below: 0,
            reader,
            out: BytesMut::new(),
            responses: VecDeque::new(),
        }
    }

    /// The transport is open: starts the ApiVersions handshake.
    pub fn on_connected(&mut self, now: Timestamp) -> Result<(), ConnError> {
        if self.state != State::Connecting {
            return Err(ConnError::Closed);
        }
        self.send_api_versions(now, api_versions_first_try())
    }

    fn send_api_versions(&mut self, now: Timestamp, version: i16) -> Result<(), ConnError> {
        self.state = State::Handshaking(version);
        let req = ApiVersionsRequest {
            client_software_name: self.config.software_name.clone(),
            client_software_version: self.config.software_version.clone(),
            ..Default::default()
        };
        self.write_request(now, &req, version, None)?;
        Ok(())
    }

    /// Whether the transport is still opening.
    pub fn is_connecting(&self) -> bool {
        self.state == State::Connecting
    }

    /// Whether requests may be sent.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether the connection failed or was closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// What the broker announced in the handshake.
    pub fn versions(&self) -> &ApiVersionTable {
        &self.versions
    }

    /// The version to send `api` at, at most `cap` when given.
    pub fn version_for(&self, api: ApiKey, cap: Option<i16>) -> Result<i16, ConnError> {
        if self.state != State::Ready {
            return Err(ConnError::NotReady);
        }
        self.versions
            .negotiate(api, cap)
            .ok_or(ConnError::NoCommonVersion(api))
    }

    /// As [`Connection::version_for`] up to `cap`, past the versions the
    /// specs call stable (see [`ApiVersionTable::negotiate_past_stable`]).
    pub fn version_past_stable(&self, api: ApiKey, cap: i16) -> Result<i16, ConnError> {
        if self.state != State::Ready {
            return Err(ConnError::NotReady);
        }
        self.versions
            .negotiate_past_stable(api, cap)
            .ok_or(ConnError::NoCommonVersion(api))
    }

    /// Requests written and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Encodes and queues a request at `version` (from
    /// [`Connection::version_for`]). With `expect_response` false (a
    /// produce with acks 0, which Kafka never answers) nothing waits for an
    /// answer. Returns the correlation id.
    pub fn send<R: Request>(
        &mut self,
        now: Timestamp,
        request: &R,
        version: i16,
        token: RequestToken,
        expect_response: bool,
    ) -> Result<i32, ConnError> {
        self.send_held(
            now,
            request,
            version,
            token,
            expect_response,
            Duration::ZERO,
        )
    }

    /// As [`Connection::send`], for a request the broker may hold before
    /// answering (a Fetch waits up to its `max_wait_ms` for data): its
    /// deadline is the request timeout plus `hold`, so a long poll is not
    /// taken for a dead broker (Java's and franz-go's rule).
    pub fn send_held<R: Request>(
        &mut self,
        now: Timestamp,
        request: &R,
        version: i16,
        token: RequestToken,
        expect_response: bool,
        hold: Duration,
    ) -> Result<i32, ConnError> {
        if self.state != State::Ready {
            return Err(ConnError::NotReady);
        }
        let id = self.write_request(now, request, version, Some(token))?;
        if !expect_response {
            self.in_flight.pop_back();
        } else if let Some(f) = self.in_flight.back_mut() {
            f.deadline = f.deadline + hold;
        }
        Ok(id)
    }

    /// Makes room for `additional` more bytes of requests: a caller that
    /// knows a request is large (a produce request carrying megabytes of
    /// batches) saves the buffer from growing by doubling, copying what it
    /// holds at each step.
    pub fn reserve(&mut self, additional: usize) {
        self.out.reserve(additional);
    }

    fn write_request<R: Request>(
        &mut self,
        now: Timestamp,
        request: &R,
        version: i16,
        token: Option<RequestToken>,
    ) -> Result<i32, ConnError> {
        let api = R::API_KEY;
        let correlation_id = self.next_correlation_id;
        let start = self.out.len();
        self.out.put_i32(0);
        let header = RequestHeader::new(
            api,
            version,
            correlation_id,
            self.config.client_id.as_deref(),
        );
        let encoded = header
            .encode(&mut self.out, api.request_header_version(version))
            .and_then(|()| request.encode(&mut self.out, version));
        if let Err(source) = encoded {
            // Nothing of a request that failed to encode is sent.
            self.out.truncate(start);
            return Err(ConnError::Encode {
                api,
                version,
                source,
            });
        }
        if let Err(e) = patch_size(&mut self.out, start) {
            self.out.truncate(start);
            return Err(e.into());
        }
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        self.in_flight.push_back(InFlight {
            correlation_id,
            api,
            version,
            sent_at: now,
            deadline: now + self.config.request_timeout,
            token,
        });
        Ok(correlation_id)
    }

    /// Bytes to write to the transport, if any. Once returned they count
    /// as written: a request whose bytes left may have reached the broker.
    #[must_use = "the returned bytes must be written to the transport"]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            return None;
        }
        self.written_below = self.next_correlation_id;
        Some(self.out.split().freeze())
    }

    /// Feeds bytes read from the transport. Complete responses become
    /// available from [`Connection::poll_response`]. An error means the
    /// connection is unusable: close it.
    pub fn handle_bytes(&mut self, now: Timestamp, data: &[u8]) -> Result<(), ConnError> {
        if self.state == State::Closed {
            return Err(ConnError::Closed);
        }
        self.reader.push(data);
        loop {
            let frame = match self.reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return self.fail(e.into()),
            };
            if let Err(e) = self.handle_frame(now, frame) {
                return self.fail(e);
            }
        }
    }

    fn fail(&mut self, e: ConnError) -> Result<(), ConnError> {
        self.state = State::Closed;
        Err(e)
    }

    fn handle_frame(&mut self, now: Timestamp, mut frame: Bytes) -> Result<(), ConnError> {
        let got = peek_correlation_id(&frame).map_err(|source| ConnError::Decode {
            api: self
                .in_flight
                .front()
                .map_or(ApiKey::ApiVersions, |f| f.api),
            version: 0,
            source,
        })?;
        let front = match self.in_flight.front() {
            Some(f) if f.correlation_id == got => *f,
            other => {
                return Err(ConnError::CorrelationMismatch {
                    expected: other.map(|f| f.correlation_id),
                    got,
                })
            }
        };
        let decode_err = |source| ConnError::Decode {
            api: front.api,
            version: front.version,
            source,
        };
        // The request leaves `in_flight` only once its answer decoded: an
        // answer that fails to decode fails the connection, and `close`
        // must still hand the request back to its owner (a group member
        // would otherwise wait forever for its lost SyncGroup, as one did
        // against librdkafka's mock, which writes a null assignment).
        ResponseHeader::decode(&mut frame, front.api.response_header_version(front.version))
            .map_err(decode_err)?;
        match front.token {
            None => {
                self.in_flight.pop_front();
                self.handle_api_versions(now, frame, front.version)
            }
            Some(token) => {
                let body = ResponseBody::decode(front.api, &mut frame, front.version)
                    .map_err(decode_err)?;
                self.in_flight.pop_front();
                self.responses.push_back(Response {
                    token,
                    api: front.api,
                    version: front.version,
                    sent_at: front.sent_at,
                    body,
                });
                Ok(())
            }
        }
    }

    fn handle_api_versions(
        &mut self,
        now: Timestamp,
        body: Bytes,
        version: i16,
    ) -> Result<(), ConnError> {
        // A broker that does not speak `version` answers in v0 (KIP-511):
        // UNSUPPORTED_VERSION with the ApiVersions versions it does speak.
        // Brokers differ in how they write that answer (librdkafka's mock
        // cluster writes a v3-style body that is neither v0 nor valid v3),
        // so: read it at the version sent, else as v0, and an answer that is
        // neither, to a version above 0, counts as "unsupported" too.
        let resp = match ApiVersionsResponse::decode(&mut body.clone(), version)
            .or_else(|_| ApiVersionsResponse::decode(&mut body.clone(), 0))
        {
            Ok(r) => r,
            Err(source) if version == 0 => {
                return Err(ConnError::Decode {
                    api: ApiKey::ApiVersions,
                    version,
                    source,
                })
            }
            Err(_) => {
                tracing::debug!(
                    tried = version,
                    "unreadable ApiVersions answer; retrying at v0"
                );
                return self.send_api_versions(now, 0);
            }
        };
        let error = ErrorCode::from_code(resp.error_code);
        if error == ErrorCode::UnsupportedVersion {
            let named = resp
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::ApiVersions.key())
                .map(|k| k.max_version)
                .filter(|&v| (0..version).contains(&v));
            if version > 0 {
                let retry = named.unwrap_or(0);
                tracing::debug!(tried = version, retry, "broker wants an older ApiVersions");
                return self.send_api_versions(now, retry);
            }
            return Err(ConnError::Handshake(error));
        }
        if !error.is_ok() {
            return Err(ConnError::Handshake(error));
        }
        self.versions = ApiVersionTable::from_response(&resp);
        self.state = State::Ready;
        Ok(())
    }

    /// The next response, in the order requests were sent.
    pub fn poll_response(&mut self) -> Option<Response> {
        self.responses.pop_front()
    }

    /// When the oldest request in flight times out.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        // A held request (`send_held`) can outlive a later one, so the
        // oldest is not always the first due; in flight are few.
        self.in_flight.iter().map(|f| f.deadline).min()
    }

    /// Checks request deadlines; an expired one fails the connection.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Result<(), ConnError> {
        match self.in_flight.iter().min_by_key(|f| f.deadline) {
            Some(f) if f.deadline <= now => {
                let e = ConnError::RequestTimedOut {
                    api: f.api,
                    after: now.saturating_duration_since(f.sent_at),
                };
                self.fail(e)
            }
            _ => Ok(()),
        }
    }

    /// Closes the connection and hands back every request still waiting
    /// for an answer, in send order.
    pub fn close(&mut self) -> Vec<Orphan> {
        self.state = State::Closed;
        self.out.clear();
        let written_below = self.written_below;
        self.in_flight
            .drain(..)
            .filter_map(|f| {
                f.token.map(|token| Orphan {
                    token,
                    api: f.api,
                    // Correlation ids wrap, but never within one
                    // connection's in-flight window.
                    written: f.correlation_id.wrapping_sub(written_below) < 0,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::api_versions_response::ApiVersion;
    use crate::protocol::messages::{MetadataRequest, MetadataResponse};
    use crate::protocol::{header, RequestBody};

    /// A scripted broker: reads the client's frames with the same codecs a
    /// broker would, and answers with whatever the test says.
    struct Broker {
        reader: FrameReader,
        api_versions_max: i16,
    }

    impl Broker {
        fn new(api_versions_max: i16) -> Self {
            Broker {
                reader: FrameReader::new(1 << 20),
                api_versions_max,
            }
        }

        fn requests(&mut self, bytes: &[u8]) -> Vec<(RequestHeader, RequestBody)> {
            self.reader.push(bytes);
            let mut out = Vec::new();
            while let Ok(Some(f)) = self.reader.next_frame() {
                match header::decode_request(f.clone()) {
                    Ok(r) => out.push(r),
                    // A version this broker "does not speak": keep the
                    // header so the test can answer UNSUPPORTED_VERSION.
                    Err(_) => {
                        let mut f = f;
                        let h = RequestHeader::decode(&mut f, 2).expect("header");
                        out.push((h, RequestBody::ApiVersions(Default::default())));
                    }
                }
            }
            out
        }

        fn frame(corr: i32, header_version: i16, body: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
            let mut b = BytesMut::new();
            b.put_i32(0);
            ResponseHeader {
                correlation_id: corr,
                ..Default::default()
            }
            .encode(&mut b, header_version)
            .expect("header");
            body(&mut b);
            patch_size(&mut b, 0).expect("size");
            b.to_vec()
        }

        fn api_versions_answer(&self, h: &RequestHeader) -> Vec<u8> {
            let v = h.request_api_version;
            if v > self.api_versions_max {
                return Self::frame(h.correlation_id, 0, |b| {
                    ApiVersionsResponse {
                        error_code: ErrorCode::UnsupportedVersion.code(),
                        api_keys: vec![ApiVersion {
                            api_key: 18,
                            min_version: 0,
                            max_version: self.api_versions_max,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                    .encode(b, 0)
                    .expect("encode");
                });
            }
            Self::frame(h.correlation_id, 0, |b| {
                ApiVersionsResponse {
                    api_keys: vec![
                        ApiVersion {
                            api_key: 3,
                            min_version: 0,
                            max_version: 12,
                            ..Default::default()
                        },
                        ApiVersion {
                            api_key: 18,
                            min_version: 0,
                            max_version: self.api_versions_max,
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }
                .encode(b, v)
                .expect("encode");
            })
        }
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    fn handshake(conn: &mut Connection, broker: &mut Broker) -> Vec<i16> {
        let mut tried = Vec::new();
        conn.on_connected(t(0)).expect("connect");
        while let Some(bytes) = conn.poll_transmit() {
            for (h, _) in broker.requests(&bytes) {
                tried.push(h.request_api_version);
                let answer = broker.api_versions_answer(&h);
                conn.handle_bytes(t(1), &answer).expect("answer");
            }
        }
        tried
    }

    #[test]
    fn handshake_uses_the_newest_api_versions_the_broker_speaks() {
        let mut conn = Connection::new(ConnConfig::default());
        let mut broker = Broker::new(4);
        let tried = handshake(&mut conn, &mut broker);
        assert_eq!(tried, vec![api_versions_first_try()]);
        assert!(conn.is_ready());
        assert_eq!(conn.version_for(ApiKey::Metadata, None), Ok(12));
        assert_eq!(
            conn.version_for(ApiKey::Produce, None),
            Err(ConnError::NoCommonVersion(ApiKey::Produce))
        );
    }

    #[test]
    fn an_older_broker_gets_the_api_versions_version_it_names() {
        // librdkafka's mock cluster speaks ApiVersions 0-2 and answers v3
        // with UNSUPPORTED_VERSION in a v0 body.
        let mut conn = Connection::new(ConnConfig::default());
        let mut broker = Broker::new(2);
        let tried = handshake(&mut conn, &mut broker);
        assert_eq!(tried, vec![api_versions_first_try(), 2]);
        assert!(conn.is_ready());
    }

    #[test]
    fn the_mock_cluster_s_unsupported_version_answer_falls_back_to_v0() {
        // librdkafka's mock cluster (2.12.1) answers ApiVersions v3 and v4
        // with these 13 body bytes: error 35, a one-byte array count, one
        // entry, four zero bytes; neither a v0 nor a v3 body. Captured on
        // 2026-11-26; the broker wins.
        let mut conn = Connection::new(ConnConfig::default());
        conn.on_connected(t(0)).expect("connect");
        let mut broker = Broker::new(2);
        let first = conn.poll_transmit().expect("ApiVersions");
        let (h, _) = broker.requests(&first).pop().expect("one request");
        assert!(h.request_api_version >= 3);
        let answer = Broker::frame(h.correlation_id, 0, |b| {
            b.extend_from_slice(&[
                0x00, 0x23, 0x01, 0x00, 0x12, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
            ]);
        });
        conn.handle_bytes(t(1), &answer).expect("not fatal");
        let retry = conn.poll_transmit().expect("a second ApiVersions");
        let (h, _) = broker.requests(&retry).pop().expect("one request");
        assert_eq!(h.request_api_version, 0);
        conn.handle_bytes(t(2), &broker.api_versions_answer(&h))
            .expect("answer");
        assert!(conn.is_ready());
    }

    #[test]
    fn responses_are_matched_in_order_and_pipelined() {
        let mut conn = Connection::new(ConnConfig::default());
        let mut broker = Broker::new(3);
        handshake(&mut conn, &mut broker);
        let v = conn.version_for(ApiKey::Metadata, None).expect("version");
        for i in 0..3 {
            conn.send(t(2), &MetadataRequest::default(), v, RequestToken(i), true)
                .expect("send");
        }
        assert_eq!(conn.in_flight(), 3);
        let bytes = conn.poll_transmit().expect("three frames");
        let reqs = broker.requests(&bytes);
        assert_eq!(reqs.len(), 3);
        let mut answers = Vec::new();
        for (h, _) in &reqs {
            answers.extend(Broker::frame(h.correlation_id, 1, |b| {
                MetadataResponse {
                    throttle_time_ms: h.correlation_id,
                    ..Default::default()
                }
                .encode(b, v)
                .expect("encode");
            }));
        }
        // Delivered a byte at a time, still three responses in order.
        for byte in &answers {
            conn.handle_bytes(t(3), std::slice::from_ref(byte))
                .expect("bytes");
        }
        let tokens: Vec<u64> = std::iter::from_fn(|| conn.poll_response())
            .map(|r| r.token.0)
            .collect();
        assert_eq!(tokens, vec![0, 1, 2]);
    }

    #[test]
    fn an_out_of_order_response_breaks_the_connection() {
        let mut conn = Connection::new(ConnConfig::default());
        let mut broker = Broker::new(3);
        handshake(&mut conn, &mut broker);
        let v = conn.version_for(ApiKey::Metadata, None).expect("version");
        conn.send(t(2), &MetadataRequest::default(), v, RequestToken(7), true)
            .expect("send");
        let bad = Broker::frame(999, 1, |_| {});
        assert!(matches!(
            conn.handle_bytes(t(3), &bad),
            Err(ConnError::CorrelationMismatch { got: 999, .. })
        ));
        assert!(conn.is_closed());
    }

    #[test]
    fn a_response_that_fails_to_decode_hands_its_request_back_as_an_orphan() {
        let mut conn = Connection::new(ConnConfig::default());
        let mut broker = Broker::new(3);
        handshake(&mut conn, &mut broker);
        let v = conn.version_for(ApiKey::Metadata, None).expect("version");
        conn.send(t(2), &MetadataRequest::default(), v, RequestToken(7), true)
            .expect("send");
        let bytes = conn.poll_transmit().expect("a frame");
        let (h, _) = broker.requests(&bytes).remove(0);
        // A body cut short: the header decodes, the body does not.
        let bad = Broker::frame(h.correlation_id, 1, |b| b.put_i32(0));
        assert!(matches!(
            conn.handle_bytes(t(3), &bad),
            Err(ConnError::Decode {
                api: ApiKey::Metadata,
                ..
            })
        ));
        assert_eq!(
            conn.close(),
            vec![Orphan {
                token: RequestToken(7),
                api: ApiKey::Metadata,
                written: true
            }],
            "its owner must hear it is lost"
        );
    }

    #[test]
    fn a_timeout_fails_the_connection_and_orphans_say_what_was_written() {
        let config = ConnConfig {
            request_timeout: Duration::from_millis(100),
            ..Default::default()
        };
        let mut conn = Connection::new(config);
        let mut broker = Broker::new(3);
        handshake(&mut conn, &mut broker);
        let v = conn.version_for(ApiKey::Metadata, None).expect("version");
        conn.send(t(10), &MetadataRequest::default(), v, RequestToken(1), true)
            .expect("send");
        let _ = conn.poll_transmit();
        conn.send(t(20), &MetadataRequest::default(), v, RequestToken(2), true)
            .expect("send");
        assert_eq!(conn.poll_timeout(), Some(t(110)));
        assert!(conn.handle_timeout(t(109)).is_ok());
        assert!(matches!(
            conn.handle_timeout(t(110)),
            Err(ConnError::RequestTimedOut {
                api: ApiKey::Metadata,
                ..
            })
        ));
        let orphans = conn.close();
        assert_eq!(
            orphans,
            vec![
                Orphan {
                    token: RequestToken(1),
                    api: ApiKey::Metadata,
                    written: true
                },
                Orphan {
                    token: RequestToken(2),
                    api: ApiKey::Metadata,
                    written: false
                },
            ]
        );
    }

    #[test]
    fn a_held_request_gets_its_hold_on_top_of_the_timeout_and_later_ones_still_expire() {
        let config = ConnConfig {
            request_timeout: Duration::from_millis(100),
            ..Default::default()
        };
        let mut conn = Connection::new(config);
        let mut broker = Broker::new(3);
        handshake(&mut conn, &mut broker);
        let v = conn.version_for(ApiKey::Metadata, None).expect("version");
        let hold = Duration::from_millis(500);
        conn.send_held(
            t(10),
            &MetadataRequest::default(),
            v,
            RequestToken(1),
            true,
            hold,
        )
        .expect("send");
        assert_eq!(conn.poll_timeout(), Some(t(610)));
        // A plain request sent after it is due first.
        conn.send(t(20), &MetadataRequest::default(), v, RequestToken(2), true)
            .expect("send");
        assert_eq!(conn.poll_timeout(), Some(t(120)));
        assert!(conn.handle_timeout(t(119)).is_ok());
        assert!(conn.handle_timeout(t(120)).is_err());

        let mut conn = Connection::new(ConnConfig {
            request_timeout: Duration::from_millis(100),
            ..Default::default()
        });
        let mut broker = Broker::new(3);
        handshake(&mut conn, &mut broker);
        conn.send_held(
            t(10),
            &MetadataRequest::default(),
            v,
            RequestToken(1),
            true,
            hold,
        )
        .expect("send");
        // Past the request timeout but within the hold: still waiting.
        assert!(conn.handle_timeout(t(609)).is_ok());
        assert!(conn.handle_timeout(t(610)).is_err());
    }

    #[test]
    fn requests_wait_for_the_handshake() {
        let mut conn = Connection::new(ConnConfig::default());
        assert_eq!(
            conn.send(t(0), &MetadataRequest::default(), 12, RequestToken(0), true),
            Err(ConnError::NotReady)
        );
    }

    #[test]
    fn a_request_that_cannot_be_encoded_leaves_nothing_behind() {
        let mut conn = Connection::new(ConnConfig::default());
        let mut broker = Broker::new(3);
        handshake(&mut conn, &mut broker);
        // Metadata v3 cannot say "do not auto-create" (v4+ field).
        let req = MetadataRequest {
            allow_auto_topic_creation: false,
            ..Default::default()
        };
        assert!(matches!(
            conn.send(t(1), &req, 3, RequestToken(0), true),
            Err(ConnError::Encode { .. })
        ));
        assert_eq!(conn.in_flight(), 0);
        assert!(conn.poll_transmit().is_none());
    }
}
