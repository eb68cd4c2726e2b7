//! One broker connection on blocking sockets: a writer thread that
//! connects, then writes what the driver queues, and a reader thread that
//! hands what arrives to the driver's inbox.
//!
//! Threads rather than a poll loop: std has no readiness API, a client
//! talks to a handful of brokers, and a reader blocked in `read` costs
//! nothing while idle. The inbox is bounded, so a reader waits when the
//! driver lags instead of buffering without end.

use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sansa_core::client::ConnId;
use sansa_core::session::ConnWriter;
use sansa_core::Input;

use crate::driver::Msg;

/// Read buffer size; a larger response arrives in pieces, which the
/// core's framing reassembles.
const READ_CHUNK: usize = 64 * 1024;

/// Small frames written back to back are coalesced up to this size.
const WRITE_BUFFER: usize = 64 * 1024;

/// The socket, once connected, so a close from the driver can shut it
/// down under a blocked reader.
#[derive(Debug, Default)]
struct Socket {
    stream: Option<TcpStream>,
    closed: bool,
}

/// The driver's end of a connection; dropping it shuts the socket down,
/// which ends both threads.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    writes: Sender<Bytes>,
    socket: Arc<Mutex<Socket>>,
}

impl ConnHandle {
    /// Starts connecting to `addr` on a new thread; the outcome arrives
    /// in `inbox` as [`Input::Connected`] or [`Input::ConnectFailed`].
    pub(crate) fn open(
        conn: ConnId,
        addr: String,
        timeout: Duration,
        inbox: SyncSender<Msg>,
    ) -> ConnHandle {
        let (writes, rx) = mpsc::channel();
        let socket = Arc::new(Mutex::new(Socket::default()));
        let shared = socket.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sansa-{conn}"))
            .spawn(move || run(conn, &addr, timeout, &inbox, &shared, rx));
        if let Err(e) = spawned {
            tracing::error!(%conn, error = %e, "could not start a connection thread");
        }
        ConnHandle { writes, socket }
    }
}

impl ConnWriter for ConnHandle {
    fn write(&self, data: Bytes) {
        let _ = self.writes.send(data);
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        let mut socket = lock(&self.socket);
        socket.closed = true;
        if let Some(s) = socket.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Locks a mutex whose holders never panic; a poisoned state is still a
/// valid one.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn connect(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing"))))
}

fn run(
    conn: ConnId,
    addr: &str,
    timeout: Duration,
    inbox: &SyncSender<Msg>,
    socket: &Mutex<Socket>,
    writes: Receiver<Bytes>,
) {
    tracing::debug!(%conn, %addr, "connecting");
    let stream = match connect(addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%conn, %addr, error = %e, "connect failed");
            let _ = inbox.send(Msg::Input(Input::ConnectFailed(conn, e.to_string())));
            return;
        }
    };
    // Kafka requests are whole frames; Nagle would only delay small ones.
    let _ = stream.set_nodelay(true);
    let clones = stream
        .try_clone()
        .and_then(|r| Ok((r, stream.try_clone()?)));
    let Ok((reader, keep)) = clones else {
        let _ = inbox.send(Msg::Input(Input::ConnectFailed(
            conn,
            "socket clone failed".into(),
        )));
        return;
    };
    if std::mem::replace(
        &mut *lock(socket),
        Socket {
            stream: Some(keep),
            closed: false,
        },
    )
    .closed
    {
        // The driver dropped the connection while it was connecting.
        return;
    }
    // Connected goes first, so the driver never sees bytes for a
    // connection it thinks is opening.
    if inbox.send(Msg::Input(Input::Connected(conn))).is_err() {
        return;
    }
    tracing::debug!(%conn, %addr, "connected");
    let reader_inbox = inbox.clone();
    let _ = std::thread::Builder::new()
        .name(format!("sansa-{conn}-read"))
        .spawn(move || read_loop(conn, reader, &reader_inbox));
    if let Err(e) = write_loop(stream, &writes) {
        tracing::debug!(%conn, error = %e, "write failed");
        let _ = inbox.send(Msg::Input(Input::Closed(conn, e.to_string())));
    }
}

fn read_loop(conn: ConnId, mut stream: TcpStream, inbox: &SyncSender<Msg>) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        buf.resize(READ_CHUNK, 0);
        let reason = match stream.read(&mut buf) {
            Ok(0) => "closed by the broker".to_owned(),
            Ok(n) => {
                let data = buf.split_to(n).freeze();
                if inbox.send(Msg::Input(Input::Received(conn, data))).is_err() {
                    return;
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => e.to_string(),
        };
        tracing::debug!(%conn, %reason, "connection closed");
        let _ = inbox.send(Msg::Input(Input::Closed(conn, reason)));
        return;
    }
}

/// Writes until the driver drops its end (then shuts the socket down) or
/// a write fails.
fn write_loop(stream: TcpStream, writes: &Receiver<Bytes>) -> std::io::Result<()> {
    let mut wr = BufWriter::with_capacity(WRITE_BUFFER, stream);
    while let Ok(data) = writes.recv() {
        wr.write_all(&data)?;
        while let Ok(data) = writes.try_recv() {
            wr.write_all(&data)?;
        }
        wr.flush()?;
    }
    wr.get_ref().shutdown(Shutdown::Both)
}
