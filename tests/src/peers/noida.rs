//! noida-db's Kafka service, run as a child process on a fresh data dir.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use super::process::{locate_binary, BrokerProcess};
use super::{librdkafka, KafkaPeer, PeerError};

const INSTALL: &str = "python3 -m pip install noida-db";
const ENV_VAR: &str = "SANSA_NOIDA_DB";
// The wheel's `noida-db` script is a Python wrapper that runs this binary as
// a child; we run the binary itself, so killing it stops the broker.
const LOCATE: &str =
    "import noida_db,os;print(os.path.join(os.path.dirname(noida_db.__file__),'noida-db'))";

/// A noida-db server with only its Kafka service, on a free port of
/// 127.0.0.1 and a fresh temporary data dir; killed and the dir deleted on
/// drop.
///
/// The only peer here whose Fetch carries aborted-transaction lists, so
/// read_committed can be checked. Pitfalls (BROKERS.md): Fetch ignores
/// max_bytes (keep volumes small); a silent static member is never evicted.
///
/// Topics are created with [`KafkaPeer::create_topic`] (CreateTopics through
/// librdkafka's admin client), which waits until every partition is led.
#[derive(Debug)]
pub struct NoidaDb {
    // Dropped in this order: the process is killed before its dir goes.
    process: BrokerProcess,
    dir: TempDir,
}

impl NoidaDb {
    /// The noida-db executable, or an error saying how to install it.
    pub fn binary() -> Result<PathBuf, PeerError> {
        let path = locate_binary("noida-db", ENV_VAR, LOCATE, INSTALL)?;
        make_executable(&path)?;
        Ok(path)
    }

    /// Starts the server and waits until its Kafka port accepts connections.
    pub fn start() -> Result<Self, PeerError> {
        let binary = Self::binary()?;
        let io = |what: &str, source| PeerError::Io {
            peer: "noida-db",
            what: what.into(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("sansa-noida-")
            .tempdir()
            .map_err(|e| io("creating a temp dir", e))?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| io("creating the data dir", e))?;
        let process = BrokerProcess::start(
            "noida-db",
            &binary,
            |port| {
                vec![
                    "start".into(),
                    "--only".into(),
                    "kafka".into(),
                    "--kafka-port".into(),
                    port.to_string().into(),
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--data-dir".into(),
                    data.clone().into(),
                ]
            },
            dir.path(),
        )?;
        Ok(NoidaDb { process, dir })
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

    /// The data dir (deleted on drop).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The last `lines` lines of the server's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

impl KafkaPeer for NoidaDb {
    fn name(&self) -> &'static str {
        "noida-db"
    }

    fn bootstrap(&self) -> String {
        NoidaDb::bootstrap(self)
    }

    /// noida-db is a single broker: `replication` must be 1.
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

/// The wheel's wrapper sets the executable bit before each run (it may be
/// missing after install); do the same.
fn make_executable(path: &std::path::Path) -> Result<(), PeerError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| PeerError::Io {
        peer: "noida-db",
        what: format!("making {} executable", path.display()),
        source,
    };
    let mut perms = std::fs::metadata(path).map_err(io)?.permissions();
    if perms.mode() & 0o111 != 0o111 {
        perms.set_mode(0o755);
        std::fs::set_permissions(path, perms).map_err(io)?;
    }
    Ok(())
}
