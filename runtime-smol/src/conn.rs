//! One broker connection: a task that connects and then writes, and a
//! reader task. Both report to the driver in the core's own words
//! ([`Input`]).
//!
//! The driver never waits on a socket: it hands bytes to the writer over
//! an unbounded channel (the core bounds what it has in flight per
//! broker), and the reader sends what arrives over the driver's bounded
//! input channel, which slows a reader down when the driver lags.

use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_net::TcpStream;
use bytes::{Bytes, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use sansa_core::client::ConnId;
use sansa_core::session::ConnWriter;
use sansa_core::Input;
use smol::Task;

/// Read buffer growth step; a response larger than this arrives in
/// pieces, which the core's framing reassembles.
const READ_CHUNK: usize = 64 * 1024;

/// Small frames written back to back are coalesced up to this size.
const WRITE_BUFFER: usize = 64 * 1024;

/// The driver's end of a connection; dropping it cancels both tasks and
/// so closes the socket at once.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    writes: Sender<Bytes>,
    _task: Task<()>,
}

impl ConnHandle {
    /// Starts connecting to `addr`; the outcome arrives on `inputs` as
    /// [`Input::Connected`] or [`Input::ConnectFailed`]. Bytes written
    /// before then are sent once connected.
    pub(crate) fn open(
        conn: ConnId,
        addr: String,
        timeout: Duration,
        inputs: Sender<Input>,
    ) -> ConnHandle {
        let (writes, rx) = async_channel::unbounded();
        let task = smol::spawn(run(conn, addr, timeout, inputs, rx));
        ConnHandle {
            writes,
            _task: task,
        }
    }
}

impl ConnWriter for ConnHandle {
    fn write(&self, data: Bytes) {
        let _ = self.writes.try_send(data);
    }
}

async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    let timed_out = async {
        async_io::Timer::after(timeout).await;
        Err(format!("connect timed out after {timeout:?}"))
    };
    let connect = async { TcpStream::connect(addr).await.map_err(|e| e.to_string()) };
    futures_lite::future::or(connect, timed_out).await
}

async fn run(
    conn: ConnId,
    addr: String,
    timeout: Duration,
    inputs: Sender<Input>,
    writes: Receiver<Bytes>,
) {
    tracing::debug!(%conn, %addr, "connecting");
    let stream = match connect(&addr, timeout).await {
        Ok(stream) => stream,
        Err(reason) => {
            tracing::warn!(%conn, %addr, %reason, "connect failed");
            let _ = inputs.send(Input::ConnectFailed(conn, reason)).await;
            return;
        }
    };
    // Kafka requests are whole frames; Nagle would only delay small ones.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%conn, error = %e, "could not set TCP_NODELAY");
    }
    // Connected goes first, so the driver never sees bytes for a
    // connection it thinks is opening.
    if inputs.send(Input::Connected(conn)).await.is_err() {
        return;
    }
    tracing::debug!(%conn, %addr, "connected");
    let _reader = smol::spawn(read_loop(conn, stream.clone(), inputs.clone()));
    if let Err(e) = write_loop(stream, writes).await {
        tracing::debug!(%conn, error = %e, "write failed");
        let _ = inputs.send(Input::Closed(conn, e.to_string())).await;
    }
}

async fn read_loop(conn: ConnId, mut stream: TcpStream, inputs: Sender<Input>) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        // `read` needs initialised memory: grow the buffer, read into the
        // tail, then cut the bytes read off the front.
        buf.resize(READ_CHUNK, 0);
        let reason = match stream.read(&mut buf).await {
            Ok(0) => "closed by the broker".to_owned(),
            Ok(n) => {
                let data = buf.split_to(n).freeze();
                if inputs.send(Input::Received(conn, data)).await.is_err() {
                    return;
                }
                continue;
            }
            Err(e) => e.to_string(),
        };
        tracing::debug!(%conn, %reason, "connection closed");
        let _ = inputs.send(Input::Closed(conn, reason)).await;
        return;
    }
}

/// Writes until the driver drops its end; returns only on an error or
/// then.
async fn write_loop(stream: TcpStream, writes: Receiver<Bytes>) -> std::io::Result<()> {
    let mut wr = BufWriter::with_capacity(WRITE_BUFFER, stream);
    while let Ok(data) = writes.recv().await {
        wr.write_all(&data).await?;
        while let Ok(data) = writes.try_recv() {
            wr.write_all(&data).await?;
        }
        wr.flush().await?;
    }
    wr.close().await
}
