//! What the member asks the client to send, and the answers it takes
//! back: the group APIs as one request and one response type, and where
//! each goes.

use crate::cluster::NodeId;
use crate::protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ResponseBody, SyncGroupRequest,
    SyncGroupResponse,
};

/// The group coordinator FindCoordinator named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    /// Its node id.
    pub node: NodeId,
    /// Its host.
    pub host: String,
    /// Its port.
    pub port: u16,
}

impl Coordinator {
    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Where the member's next request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any ready broker (FindCoordinator).
    AnyBroker,
    /// The group coordinator.
    Coordinator(Coordinator),
}

/// A request the member wants sent.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum GroupRequest {
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetFetch(OffsetFetchRequest),
    OffsetCommit(OffsetCommitRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
}

/// An answer to a [`GroupRequest`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum GroupResponse {
    FindCoordinator(FindCoordinatorResponse),
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetFetch(OffsetFetchResponse),
    OffsetCommit(OffsetCommitResponse),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
}

impl GroupResponse {
    /// The group answer in a decoded response body, if it is one.
    pub fn from_body(body: ResponseBody) -> Option<GroupResponse> {
        Some(match body {
            ResponseBody::FindCoordinator(r) => GroupResponse::FindCoordinator(r),
            ResponseBody::JoinGroup(r) => GroupResponse::JoinGroup(r),
            ResponseBody::SyncGroup(r) => GroupResponse::SyncGroup(r),
            ResponseBody::Heartbeat(r) => GroupResponse::Heartbeat(r),
            ResponseBody::LeaveGroup(r) => GroupResponse::LeaveGroup(r),
            ResponseBody::OffsetFetch(r) => GroupResponse::OffsetFetch(r),
            ResponseBody::OffsetCommit(r) => GroupResponse::OffsetCommit(r),
            ResponseBody::ConsumerGroupHeartbeat(r) => GroupResponse::ConsumerGroupHeartbeat(r),
            _ => return None,
        })
    }
}
