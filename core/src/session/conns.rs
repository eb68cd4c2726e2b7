//! The driver's open connections, written once for every adapter: which
//! handle (a task, a thread) serves each connection the core opened,
//! and the session's connection actions carried out on them.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::{Io, ProduceWaiter, Session};
use crate::client::ConnId;
use crate::{Input, Timestamp};

/// An adapter's end of one connection: it queues bytes in order, and
/// dropping it closes the socket at once.
pub trait ConnWriter {
    /// Queues `data` to write after what was queued before. A handle
    /// whose socket failed drops it: it has reported the failure as
    /// [`Input::Closed`] already.
    fn write(&self, data: Bytes);
}

/// The handles of the connections the core has open, by id.
#[derive(Debug)]
pub struct Conns<H> {
    open: HashMap<ConnId, H>,
}

impl<H> Default for Conns<H> {
    fn default() -> Self {
        Conns {
            open: HashMap::new(),
        }
    }
}

impl<H: ConnWriter> Conns<H> {
    /// Carries out every connection action `session` has: opens a
    /// connection with `open(conn, addr, connect_timeout)`, writes, and
    /// closes by dropping the handle.
    pub fn drain<P: ProduceWaiter>(
        &mut self,
        session: &mut Session<P>,
        now: Timestamp,
        mut open: impl FnMut(ConnId, String, Duration) -> H,
    ) {
        while let Some(io) = session.poll_io(now) {
            match io {
                Io::Connect {
                    conn,
                    addr,
                    timeout,
                } => {
                    self.open.insert(conn, open(conn, addr, timeout));
                }
                Io::Transmit { conn, data } => {
                    if let Some(c) = self.open.get(&conn) {
                        c.write(data);
                    }
                }
                Io::Close(conn) => {
                    self.open.remove(&conn);
                }
            }
        }
    }

    /// Feeds what a connection reported to `session`; the handle of a
    /// connection that failed or closed is dropped.
    pub fn feed<P: ProduceWaiter>(
        &mut self,
        session: &mut Session<P>,
        now: Timestamp,
        input: Input,
    ) {
        if let Input::ConnectFailed(conn, _) | Input::Closed(conn, _) = &input {
            self.open.remove(conn);
        }
        session.handle_input(now, input);
    }

    /// Drops every handle, closing their sockets: the loop ended.
    pub fn clear(&mut self) {
        self.open.clear();
    }
}
