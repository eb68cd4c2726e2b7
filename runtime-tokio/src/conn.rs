//! One broker connection: a task that connects and then writes, and a
//! reader task. Both report to the driver in the core's own words
//! ([`Input`]), so the driver forwards them as they are.
//!
//! The driver never waits on a socket: it hands bytes to the writer over an
//! unbounded channel (the core bounds what it has in flight per broker),
//! and the reader sends what arrives over the driver's bounded event
//! channel, which slows a reader down when the driver lags instead of
//! buffering without end.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sansa_core::client::ConnId;
use sansa_core::session::ConnWriter;
use sansa_core::Input;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument;

/// Read buffer growth step; a response larger than this arrives in pieces,
/// which the core's framing reassembles.
const READ_CHUNK: usize = 64 * 1024;

/// Small frames written back to back are coalesced up to this size.
const WRITE_BUFFER: usize = 64 * 1024;

/// The driver's end of a connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    writes: mpsc::UnboundedSender<Bytes>,
    task: AbortHandle,
}

impl ConnHandle {
    /// Starts connecting to `addr` in a new task; the outcome arrives on
    /// `events` as [`Input::Connected`] or [`Input::ConnectFailed`].
    /// Bytes given to [`ConnHandle::write`] before then are written once
    /// connected.
    pub(crate) fn open(
        conn: ConnId,
        addr: String,
        connect_timeout: Duration,
        events: mpsc::Sender<Input>,
    ) -> ConnHandle {
        let (writes, rx) = mpsc::unbounded_channel();
        let span = tracing::debug_span!("conn", %conn, %addr);
        let task = tokio::spawn(run(conn, addr, connect_timeout, events, rx).instrument(span));
        ConnHandle {
            writes,
            task: task.abort_handle(),
        }
    }
}

impl ConnWriter for ConnHandle {
    fn write(&self, data: Bytes) {
        let _ = self.writes.send(data);
    }
}

impl Drop for ConnHandle {
    /// Closes the socket at once: the core has forgotten the connection,
    /// so nothing queued on it matters any more.
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    conn: ConnId,
    addr: String,
    connect_timeout: Duration,
    events: mpsc::Sender<Input>,
    writes: mpsc::UnboundedReceiver<Bytes>,
) {
    tracing::debug!("connecting");
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(stream)) => stream,
        failed => {
            let reason = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("connect timed out after {connect_timeout:?}"),
            };
            tracing::warn!(%reason, "connect failed");
            let _ = events.send(Input::ConnectFailed(conn, reason)).await;
            return;
        }
    };
    // Kafka requests are whole frames handed over at once; Nagle would only
    // add latency to small ones (ApiVersions, Metadata, produce_sync).
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let (rd, wr) = stream.into_split();
    // Connected goes first: the reader starts after it is queued, so the
    // driver never sees bytes for a connection it thinks is opening.
    if events.send(Input::Connected(conn)).await.is_err() {
        return;
    }
    tracing::debug!("connected");
    // Dropping the set aborts the reader: it dies with its writer.
    let mut reader = JoinSet::new();
    reader.spawn(read_loop(conn, rd, events.clone()).in_current_span());
    if let Err(e) = write_loop(wr, writes).await {
        tracing::debug!(error = %e, "write failed");
        let _ = events.send(Input::Closed(conn, e.to_string())).await;
    }
}

async fn read_loop(conn: ConnId, mut rd: OwnedReadHalf, events: mpsc::Sender<Input>) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let reason = match rd.read_buf(&mut buf).await {
            Ok(0) => "closed by the broker".to_owned(),
            Ok(_) => {
                let data = buf.split().freeze();
                if events.send(Input::Received(conn, data)).await.is_err() {
                    return;
                }
                continue;
            }
            Err(e) => e.to_string(),
        };
        tracing::debug!(%reason, "connection closed");
        let _ = events.send(Input::Closed(conn, reason)).await;
        return;
    }
}

/// Writes until the driver drops its end; returns only on an error or
/// then.
async fn write_loop(
    wr: OwnedWriteHalf,
    mut writes: mpsc::UnboundedReceiver<Bytes>,
) -> std::io::Result<()> {
    let mut wr = BufWriter::with_capacity(WRITE_BUFFER, wr);
    while let Some(data) = writes.recv().await {
        wr.write_all(&data).await?;
        while let Ok(data) = writes.try_recv() {
            wr.write_all(&data).await?;
        }
        wr.flush().await?;
    }
    wr.shutdown().await
}
