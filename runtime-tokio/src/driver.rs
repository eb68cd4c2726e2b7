//! The driver task: the one place the core [`sansa_core::Client`] lives,
//! inside a [`Session`] that keeps the books tying the core's ids to the
//! user's futures.
//!
//! Its loop is the core's contract and nothing more: feed a burst of
//! commands or connection inputs, drain the session's connection actions,
//! then wait for a command, a connection event or the core's deadline,
//! whichever comes first. Every Kafka and bookkeeping decision is the
//! core's; what is here is tokio: channels, tasks and a timer.

use std::time::Duration;

use sansa_core::session::{self, Conns, Session, Sink, BURST};
use sansa_core::{Input, Timestamp};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use crate::conn::ConnHandle;

/// Events from connection tasks waiting for the driver; readers wait when
/// it is full rather than buffer without bound.
const CONN_EVENTS: usize = 1024;

/// What a [`crate::Client`] asks of the driver.
pub(crate) type Command = session::Command<Sink>;

/// Starts the driver of `core` on `runtime`.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    core: sansa_core::Client,
    commands: mpsc::UnboundedReceiver<Command>,
) {
    let client_id = core.config().conn.client_id.clone().unwrap_or_default();
    let span = tracing::info_span!("sansa", client = %client_id);
    let driver = Driver::new(core, commands);
    runtime.spawn(driver.run().instrument(span));
}

struct Driver {
    session: Session<Sink>,
    /// The origin of the core's timestamps.
    origin: Instant,
    commands: mpsc::UnboundedReceiver<Command>,
    /// False once every handle is gone.
    commands_open: bool,
    conn_tx: mpsc::Sender<Input>,
    conn_rx: mpsc::Receiver<Input>,
    conns: Conns<ConnHandle>,
}

impl Driver {
    fn new(core: sansa_core::Client, commands: mpsc::UnboundedReceiver<Command>) -> Self {
        let (conn_tx, conn_rx) = mpsc::channel(CONN_EVENTS);
        Driver {
            session: Session::new(core),
            origin: Instant::now(),
            commands,
            commands_open: true,
            conn_tx,
            conn_rx,
            conns: Conns::default(),
        }
    }

    fn now(&self) -> Timestamp {
        session::timestamp(self.origin.elapsed())
    }

    fn instant(&self, t: Timestamp) -> Instant {
        self.origin
            .checked_add(Duration::from_nanos(t.as_nanos()))
            .unwrap_or_else(far_future)
    }

    async fn run(mut self) {
        tracing::debug!("driver started");
        let sleep = tokio::time::sleep_until(far_future());
        tokio::pin!(sleep);
        loop {
            self.drain();
            if self.session.is_done() {
                break;
            }
            let timer = self.session.poll_timer();
            if let Some(t) = timer.deadline.filter(|_| timer.rearm) {
                sleep.as_mut().reset(self.instant(t));
            }
            tokio::select! {
                Some(input) = self.conn_rx.recv() => {
                    let now = self.now();
                    self.conns.feed(&mut self.session, now, input);
                    // Whatever else arrived meanwhile is fed before the
                    // next drain: one drain per burst, not per input.
                    for _ in 1..BURST {
                        match self.conn_rx.try_recv() {
                            Ok(input) => self.conns.feed(&mut self.session, now, input),
                            Err(_) => break,
                        }
                    }
                }
                cmd = self.commands.recv(), if self.commands_open => match cmd {
                    Some(cmd) => {
                        let now = self.now();
                        self.session.handle_command(now, cmd);
                        for _ in 1..BURST {
                            match self.commands.try_recv() {
                                Ok(cmd) => self.session.handle_command(now, cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        tracing::debug!("every handle dropped; closing");
                        self.commands_open = false;
                        let now = self.now();
                        self.session.handle_command(now, Command::Close(None));
                    }
                },
                () = &mut sleep, if timer.deadline.is_some() => {
                    tracing::trace!(target: "sansa_tokio::timer", "deadline reached");
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
            }
        }
        // The core closed every connection it knew; drop any it had not
        // opened yet as well.
        self.conns.clear();
        // Closed before close waiters hear of it, so `is_closed` holds
        // once `close` returns.
        self.commands.close();
        self.session.finish();
        tracing::debug!("driver stopped");
    }

    /// Carries out every connection action the session has.
    fn drain(&mut self) {
        let now = self.now();
        let inputs = &self.conn_tx;
        self.conns
            .drain(&mut self.session, now, |conn, addr, timeout| {
                ConnHandle::open(conn, addr, timeout, inputs.clone())
            });
    }
}

/// A deadline that never comes in practice (a year away).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}
