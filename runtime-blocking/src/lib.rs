//! sansa with std threads and blocking sockets, for programs without an
//! async runtime.
//!
//! Status: skeleton. It will expose the same user API as `sansa-tokio` with
//! blocking calls and timeouts, driving the same [`sansa_core`] state machine.

pub use sansa_core as core;
