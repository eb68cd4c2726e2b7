//! The producer: how records find their partition, and (to come) the
//! per-partition buffers, batching, linger, idempotent sequencing, retries
//! and delivery timeouts that carry them to the leader.
//!
//! What is here today:
//! - [`partitioner`]: Kafka's Java-compatible murmur2 key hash, the sticky
//!   "uniform bytes" partitioner of KIP-794 for unkeyed records, and the
//!   [`Partitioner`](partitioner::Partitioner) trait the producer calls once
//!   per record.

pub mod partitioner;
