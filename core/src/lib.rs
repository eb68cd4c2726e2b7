//! `sansa-core`: the sans-IO heart of sansa, a pure-Rust Apache Kafka client.
//!
//! This crate contains no networking code, never reads a clock, spawns no
//! thread, runs no async code and draws no global randomness. It turns bytes,
//! time and commands given to it into bytes to send, timers and events; a
//! runtime adapter (`sansa-tokio`, `sansa-smol`, `sansa-blocking`) or the
//! deterministic simulator (`sansa-sim`) owns the sockets and the clock.
//!
//! What is here today:
//! - [`protocol`]: every Kafka request and response at every version,
//!   generated from Kafka's JSON message specs, with the wire primitives,
//!   headers and typed error codes;
//! - [`record`]: record batches (magic v2) built incrementally and read
//!   lazily without copying, and legacy message sets (v0/v1) for reading;
//! - [`compression`]: gzip, snappy, lz4 and zstd as Kafka frames them, with
//!   bounded decompression;
//! - [`session`]: the books a runtime adapter keeps beside the [`Client`]
//!   (who waits for each record, flush, close and fetch), written once for
//!   every adapter; `examples/mio_loop.rs` shows the [`Client`] driven by
//!   hand from a mio loop instead.

pub mod client;
pub mod cluster;
pub mod compression;
pub mod conn;
pub mod consumer;
pub mod group;
pub mod producer;
pub mod protocol;
pub mod record;
pub mod rng;
pub mod session;
pub mod time;
pub mod txn;

pub use client::{Client, Config, Event, Input, Output};
/// The regex engine of `consume_regex`, re-exported for its error type.
pub use regex;
pub use time::Timestamp;
