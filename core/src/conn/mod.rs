//! One broker connection: framing with a bounded frame size, correlation
//! ids, pipelining, request timeouts and ApiVersions negotiation.

pub mod connection;
pub mod framing;
pub mod versions;

pub use connection::{ConnConfig, ConnError, Connection, Orphan, RequestToken, Response};
pub use framing::{FrameError, FrameReader};
pub use versions::ApiVersionTable;
