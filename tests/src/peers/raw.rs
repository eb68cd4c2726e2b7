//! Raw requests to a broker, encoded and decoded with sansa-core's
//! codecs, for what no client reports or would send: which codec each
//! stored record batch carries, what a transaction coordinator says to an
//! InitProducerId naming a given producer id and epoch, and (through
//! [`call`]) any single request a probe needs to send exactly as written,
//! such as the JoinGroup / SyncGroup / Heartbeat steps of a group member
//! that a client would never take (a member that heartbeats but never
//! rejoins).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sansa_core::compression::Compression;
use sansa_core::protocol::header::{decode_response, encode_request};
use sansa_core::protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use sansa_core::protocol::messages::{FetchRequest, InitProducerIdRequest, InitProducerIdResponse};
use sansa_core::protocol::Request;

use super::PeerError;

/// Fetch v11: the newest version both the mock cluster (0-16) and Tansu
/// (0-17) speak that still names topics rather than topic ids.
const FETCH_VERSION: i16 = 11;

fn raw_err(what: String, reason: impl std::fmt::Display) -> PeerError {
    PeerError::Raw {
        what,
        reason: reason.to_string(),
    }
}

/// The codec of each record batch (v2) in the first `max_bytes` of
/// `topic`/`partition`, fetched from offset 0 straight from `leader`
/// (`host:port` of the partition's leader).
pub fn batch_codecs(
    leader: &str,
    topic: &str,
    partition: i32,
    max_bytes: i32,
    timeout: Duration,
) -> Result<Vec<Compression>, PeerError> {
    let what = || format!("raw Fetch of {topic}/{partition} from {leader}");
    let request = FetchRequest {
        replica_id: -1,
        max_wait_ms: 500,
        session_id: 0,
        session_epoch: -1,
        min_bytes: 1,
        max_bytes,
        topics: vec![FetchTopic {
            topic: topic.to_owned(),
            partitions: vec![FetchPartition {
                partition,
                fetch_offset: 0,
                partition_max_bytes: max_bytes,
                log_start_offset: -1,
                current_leader_epoch: -1,
                last_fetched_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response =
        exchange(leader, FETCH_VERSION, &request, timeout).map_err(|e| raw_err(what(), e))?;
    let data = response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| {
            raw_err(
                what(),
                format!("the answer has no such partition: {response:?}"),
            )
        })?;
    if data.error_code != 0 {
        return Err(raw_err(what(), format!("error code {}", data.error_code)));
    }
    let records = data.records.clone().unwrap_or_default();
    // Record batch v2: baseOffset i64, batchLength i32, leaderEpoch i32,
    // magic i8, crc u32, attributes i16 (codec in the low 3 bits). A
    // batch cut short by max_bytes still has its attributes if it has 23
    // bytes.
    let mut codecs = Vec::new();
    let mut rest = &records[..];
    while rest.len() >= 23 {
        let batch_len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if rest[16] != 2 {
            return Err(raw_err(what(), format!("record batch magic {}", rest[16])));
        }
        let codec = Compression::from_id(rest[22] & 0x07).map_err(|e| raw_err(what(), e))?;
        codecs.push(codec);
        let next = 12 + usize::try_from(batch_len).map_err(|e| raw_err(what(), e))?;
        rest = rest.get(next..).unwrap_or_default();
    }
    Ok(codecs)
}

/// Sends `request` at `version` to `broker` (`host:port`) on a fresh
/// connection and returns the decoded answer, or an error naming the
/// request, the version and the broker.
///
/// `timeout` bounds the connect and the wait for the answer. A request
/// the broker holds until something happens (JoinGroup until the join
/// round ends, SyncGroup until the leader's assignment) needs a timeout
/// above that wait, e.g. above the rebalance timeout for JoinGroup. The
/// version is not checked against the broker's ApiVersions: pick one the
/// peer speaks (a refused version usually shows as a closed connection).
pub fn call<R: Request>(
    broker: &str,
    version: i16,
    request: &R,
    timeout: Duration,
) -> Result<R::Response, PeerError> {
    exchange(broker, version, request, timeout)
        .map_err(|e| raw_err(format!("raw {} v{version} to {broker}", R::NAME), e))
}

/// [`call`] without the decoding: the answer's bytes as they came (the
/// response header first), for a test that checks what a peer really
/// wrote where sansa's decoder is lenient.
pub fn call_undecoded<R: Request>(
    broker: &str,
    version: i16,
    request: &R,
    timeout: Duration,
) -> Result<Bytes, PeerError> {
    exchange_bytes(broker, version, request, timeout)
        .map_err(|e| raw_err(format!("raw {} v{version} to {broker}", R::NAME), e))
}

/// Sends `request` at `version` to `broker` (`host:port`) on a fresh
/// connection and decodes the answer; the error says what failed.
fn exchange<R: Request>(
    broker: &str,
    version: i16,
    request: &R,
    timeout: Duration,
) -> Result<R::Response, String> {
    let body = exchange_bytes(broker, version, request, timeout)?;
    let (_, response) = decode_response::<R>(body, version).map_err(|e| e.to_string())?;
    Ok(response)
}

/// [`exchange`] up to the answer's bytes.
fn exchange_bytes<R: Request>(
    broker: &str,
    version: i16,
    request: &R,
    timeout: Duration,
) -> Result<Bytes, String> {
    let addr = broker
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&[0; 4]);
    encode_request(&mut frame, version, 1, Some("sansa-tests-raw"), request)
        .map_err(|e| e.to_string())?;
    let len = u32::try_from(frame.len() - 4).map_err(|e| e.to_string())?;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&frame).map_err(|e| e.to_string())?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(Bytes::from(body))
}

/// InitProducerId v4 (KIP-360: it names the producer id and epoch the
/// sender last had, `(-1, -1)` for none) for `transactional_id`, sent
/// straight to `coordinator` (`host:port`; a single broker is its own).
pub fn init_producer_id(
    coordinator: &str,
    transactional_id: &str,
    last: (i64, i16),
    timeout: Duration,
) -> Result<InitProducerIdResponse, PeerError> {
    let request = InitProducerIdRequest {
        transactional_id: Some(transactional_id.to_owned()),
        transaction_timeout_ms: 60_000,
        producer_id: last.0,
        producer_epoch: last.1,
        ..Default::default()
    };
    exchange(coordinator, 4, &request, timeout).map_err(|e| {
        raw_err(
            format!("raw InitProducerId for {transactional_id} at {coordinator}"),
            e,
        )
    })
}
