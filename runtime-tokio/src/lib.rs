//! sansa on tokio: the async Kafka client.
//!
//! Status: skeleton. The driver loop (sockets, timers, a command channel
//! around [`sansa_core`]) arrives with the producer issue; this crate holds no
//! Kafka logic of its own, by design (see `DESIGN.md`).

pub use sansa_core as core;
