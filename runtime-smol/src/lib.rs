//! sansa on smol / async-io (and so also under async-std).
//!
//! Status: skeleton. It will expose the same user API as `sansa-tokio`,
//! driving the same [`sansa_core`] state machine.

pub use sansa_core as core;
