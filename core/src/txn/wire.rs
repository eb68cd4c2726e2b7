//! What the transaction manager asks the client to send, where each
//! request goes, and the answers it takes back.

use crate::group::member::Coordinator;
use crate::protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse, ResponseBody,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use crate::protocol::ApiKey;

/// The highest version of each API the manager speaks in a transactions
/// v1 transaction. AddPartitionsToTxn v4+ is the batched broker-to-broker
/// form, never sent by clients; TxnOffsetCommit v5 and EndTxn v5 mean
/// transactions v2 (KIP-890 part 2) and are sent only in a v2 transaction
/// ([`TXN_V2_VERSION`]).
pub(super) const MAX_VERSIONS: [(ApiKey, i16); 6] = [
    (ApiKey::FindCoordinator, 6),
    (ApiKey::InitProducerId, 5),
    (ApiKey::AddPartitionsToTxn, 3),
    (ApiKey::AddOffsetsToTxn, 4),
    (ApiKey::EndTxn, 4),
    (ApiKey::TxnOffsetCommit, 4),
];

/// The version of TxnOffsetCommit and EndTxn a transactions v2
/// transaction is sent at (Kafka 4.0).
pub const TXN_V2_VERSION: i16 = 5;

/// The Produce version a transactions v2 transaction needs: v12 adds the
/// partition to the transaction; v11 and below must not be used in one,
/// and v12 must not be used in a v1 transaction.
pub const PRODUCE_V2_VERSION: i16 = 12;

/// FindCoordinator's `key_type` for groups and for transactional ids.
pub(super) const KEY_TYPE_GROUP: i8 = 0;
pub(super) const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where the manager's next request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnTarget {
    /// Any ready broker (FindCoordinator).
    AnyBroker,
    /// The transaction coordinator of the transactional id.
    TxnCoordinator(Coordinator),
    /// The group coordinator of the group whose offsets are committed.
    GroupCoordinator(Coordinator),
}

/// A request the manager wants sent.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum TxnRequest {
    FindCoordinator(FindCoordinatorRequest),
    InitProducerId(InitProducerIdRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    EndTxn(EndTxnRequest),
}

/// An answer to a [`TxnRequest`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum TxnResponse {
    FindCoordinator(FindCoordinatorResponse),
    InitProducerId(InitProducerIdResponse),
    AddPartitionsToTxn(AddPartitionsToTxnResponse),
    AddOffsetsToTxn(AddOffsetsToTxnResponse),
    TxnOffsetCommit(TxnOffsetCommitResponse),
    EndTxn(EndTxnResponse),
}

impl TxnResponse {
    /// The transaction answer in a decoded response body, if it is one.
    pub fn from_body(body: ResponseBody) -> Option<TxnResponse> {
        Some(match body {
            ResponseBody::FindCoordinator(r) => TxnResponse::FindCoordinator(r),
            ResponseBody::InitProducerId(r) => TxnResponse::InitProducerId(r),
            ResponseBody::AddPartitionsToTxn(r) => TxnResponse::AddPartitionsToTxn(r),
            ResponseBody::AddOffsetsToTxn(r) => TxnResponse::AddOffsetsToTxn(r),
            ResponseBody::TxnOffsetCommit(r) => TxnResponse::TxnOffsetCommit(r),
            ResponseBody::EndTxn(r) => TxnResponse::EndTxn(r),
            _ => return None,
        })
    }
}

/// A transaction request on its way, as the manager remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnInFlight {
    pub(super) lane: Lane,
}

/// Which step a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lane {
    /// FindCoordinator for the transactional id (`false`) or the group of
    /// the offsets being committed (`true`).
    Find {
        group: bool,
    },
    Init,
    /// The partitions asked for.
    AddPartitions(Vec<(String, i32)>),
    AddOffsets,
    OffsetCommit,
    End {
        commit: bool,
    },
}

/// A built request: what to send, at which version, and what to hand back
/// to [`TxnManager::on_response`](super::TxnManager::on_response).
#[derive(Debug)]
pub struct TxnOut {
    /// The request.
    pub request: TxnRequest,
    /// Its version.
    pub version: i16,
    /// What it was, for the answer.
    pub in_flight: TxnInFlight,
}
