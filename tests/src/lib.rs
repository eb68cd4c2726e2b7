//! Integration tests of sansa against real third-party Kafka peers
//! (librdkafka's mock cluster, Tansu, noida-db) and the benchmark harness.
//!
//! Status: skeleton; the peer fixtures arrive with the producer issue.

pub use sansa_core as core;
