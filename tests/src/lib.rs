//! Integration tests of sansa against real third-party Kafka peers
//! (librdkafka's mock cluster, Tansu, noida-db), interop with librdkafka as
//! a client, and (later) the benchmark harness.
//!
//! The fixtures live in [`peers`] so integration tests (`tests/tests/`) and
//! benchmarks share them.

pub mod peers;

pub use sansa_core as core;
