//! Consumer groups (the classic protocol: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup).
//!
//! What is here today: the [`balancer`]s, the pure functions the group
//! leader runs to split the subscribed partitions among the members, and
//! the codec of the member metadata and assignment bytes they exchange
//! through the coordinator. The membership state machine that calls them
//! comes later (issue 6).

pub mod balancer;
