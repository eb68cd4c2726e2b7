//! Integration tests of sansa against real third-party Kafka peers
//! (librdkafka's mock cluster, Tansu, noida-db), interop with librdkafka as
//! a client, and the benchmark harness (`src/bin/sansa-bench.rs`).
//!
//! The fixtures live in [`peers`] so integration tests (`tests/tests/`) and
//! benchmarks share them; [`verify`] checks what a producer wrote;
//! [`deadline`] bounds how long a test holding a peer may run.

pub mod adapters;
pub mod deadline;
pub mod peers;
pub mod verify;

pub use sansa_core as core;
