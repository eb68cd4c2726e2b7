//! A deterministic simulated Kafka cluster on virtual time.
//!
//! Status: skeleton. Simulated brokers will speak the real wire protocol
//! through `sansa-core`'s generated codecs, broker side, and drive unmodified
//! `sansa_core` clients from one seeded RNG on a virtual clock.

pub use sansa_core as core;
