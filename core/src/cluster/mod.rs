//! What the client knows about the cluster: brokers, topics, partition
//! leaders, when to refresh, and how long to back off before retrying.

pub mod backoff;
pub mod metadata;

pub use backoff::Backoff;
pub use metadata::{
    BrokerAddr, Metadata, MetadataChanges, NodeId, PartitionInfo, RefreshSchedule, TopicInfo,
};
