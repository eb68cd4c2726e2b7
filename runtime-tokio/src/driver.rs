//! The driver task: the one place the core [`sansa_core::Client`] is
//! driven, inside a [`Session`] that keeps the books tying the core's ids
//! to the user's futures.
//!
//! Its loop is the core's contract and nothing more: feed a burst of
//! commands or connection inputs, drain the session's connection actions,
//! then wait for a command, a connection event, a wake-up from a produce
//! call or the core's deadline, whichever comes first. Every Kafka and
//! bookkeeping decision is the core's; what is here is tokio: channels,
//! tasks and a timer.
//!
//! Records are the exception to "commands go through the channel": a
//! produce call takes the session's lock and hands its record to the core
//! on the caller's thread ([`Intake`]), as librdkafka's `produce` appends
//! to a partition queue, and wakes the driver only when the record opened
//! a batch or needs something else of it. A command per record through
//! the channel cost a copy of it, a wake-up and a clock read on the
//! driver's side for each, more than appending the record did.

use std::time::{Duration, SystemTime};

use sansa_core::session::{self, Conns, Produce, Session, SharedSession, Sink, BURST};
use sansa_core::{Input, Timestamp};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::Instrument;

use crate::conn::ConnHandle;

/// Events from connection tasks waiting for the driver; readers wait when
/// it is full rather than buffer without bound.
const CONN_EVENTS: usize = 1024;

/// What a [`crate::Client`] asks of the driver.
pub(crate) type Command = session::Command<Sink>;

/// What produce calls share with the driver: the session (see
/// [`SharedSession`]), the origin of the core's timestamps, and the
/// driver's wake-up.
#[derive(Debug)]
pub(crate) struct Intake {
    shared: SharedSession<Sink>,
    /// The origin of the core's timestamps, for callers and driver alike.
    origin: Instant,
    /// Wakes the driver for a record that needs it; a wake-up given while
    /// the driver is busy is kept for its next wait, so none is lost.
    wake: Notify,
}

impl Intake {
    fn now(&self) -> Timestamp {
        session::timestamp(self.origin.elapsed())
    }

    /// Hands a record to the core on the caller's thread; wakes the
    /// driver if the record needs it. After the driver finished, the
    /// record fails with [`ProduceError::Closed`](sansa_core::producer::ProduceError).
    pub(crate) fn produce(&self, produce: Produce<Sink>) {
        if self.shared.produce(self.now(), SystemTime::now, produce) {
            self.wake.notify_one();
        }
    }
}

/// Starts the driver of `core` on `runtime`; produce calls go through the
/// returned [`Intake`].
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    core: sansa_core::Client,
    commands: mpsc::UnboundedReceiver<Command>,
) -> std::sync::Arc<Intake> {
    let client_id = core.config().conn.client_id.clone().unwrap_or_default();
    let span = tracing::info_span!("sansa", client = %client_id);
    let intake = std::sync::Arc::new(Intake {
        shared: SharedSession::new(Session::new(core)),
        origin: Instant::now(),
        wake: Notify::new(),
    });
    let driver = Driver::new(intake.clone(), commands);
    runtime.spawn(driver.run().instrument(span));
    intake
}

struct Driver {
    intake: std::sync::Arc<Intake>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// False once every handle is gone.
    commands_open: bool,
    conn_tx: mpsc::Sender<Input>,
    conn_rx: mpsc::Receiver<Input>,
    conns: Conns<ConnHandle>,
}

impl Driver {
    fn new(intake: std::sync::Arc<Intake>, commands: mpsc::UnboundedReceiver<Command>) -> Self {
        let (conn_tx, conn_rx) = mpsc::channel(CONN_EVENTS);
        Driver {
            intake,
            commands,
            commands_open: true,
            conn_tx,
            conn_rx,
            conns: Conns::default(),
        }
    }

    fn instant(&self, t: Timestamp) -> Instant {
        self.intake
            .origin
            .checked_add(Duration::from_nanos(t.as_nanos()))
            .unwrap_or_else(far_future)
    }

    async fn run(mut self) {
        tracing::debug!("driver started");
        let sleep = tokio::time::sleep_until(far_future());
        tokio::pin!(sleep);
        loop {
            let timer = {
                let mut guard = self.intake.shared.lock();
                let Some(session) = guard.session.as_mut() else {
                    break;
                };
                drain(&mut self.conns, &self.conn_tx, self.intake.now(), session);
                if session.is_done() {
                    break;
                }
                session.poll_timer()
            };
            if let Some(t) = timer.deadline.filter(|_| timer.rearm) {
                sleep.as_mut().reset(self.instant(t));
            }
            tokio::select! {
                Some(input) = self.conn_rx.recv() => {
                    let now = self.intake.now();
                    let mut guard = self.intake.shared.lock();
                    let Some(session) = guard.session.as_mut() else { break };
                    self.conns.feed(session, now, input);
                    // Whatever else arrived meanwhile is fed before the
                    // next drain: one drain per burst, not per input.
                    for _ in 1..BURST {
                        match self.conn_rx.try_recv() {
                            Ok(input) => self.conns.feed(session, now, input),
                            Err(_) => break,
                        }
                    }
                }
                cmd = self.commands.recv(), if self.commands_open => {
                    let now = self.intake.now();
                    let mut guard = self.intake.shared.lock();
                    let Some(session) = guard.session.as_mut() else { break };
                    match cmd {
                        Some(cmd) => {
                            session.handle_command(now, cmd);
                            for _ in 1..BURST {
                                match self.commands.try_recv() {
                                    Ok(cmd) => session.handle_command(now, cmd),
                                    Err(_) => break,
                                }
                            }
                        }
                        None => {
                            tracing::debug!("every handle dropped; closing");
                            self.commands_open = false;
                            session.handle_command(now, Command::Close(None));
                        }
                    }
                }
                // A produce call left work for the drain at the top.
                () = self.intake.wake.notified() => {}
                () = &mut sleep, if timer.deadline.is_some() => {
                    tracing::trace!(target: "sansa_tokio::timer", "deadline reached");
                    let now = self.intake.now();
                    if let Some(session) = self.intake.shared.lock().session.as_mut() {
                        session.handle_timeout(now);
                    }
                }
            }
        }
        // The core closed every connection it knew; drop any it had not
        // opened yet as well.
        self.conns.clear();
        // Closed before close waiters hear of it, so `is_closed` holds
        // once `close` returns; taken out of the lock first, so records
        // produced from now on fail at once.
        self.commands.close();
        self.intake.shared.finish();
        tracing::debug!("driver stopped");
    }
}

/// Carries out every connection action the session has.
fn drain(
    conns: &mut Conns<ConnHandle>,
    inputs: &mpsc::Sender<Input>,
    now: Timestamp,
    session: &mut Session<Sink>,
) {
    conns.drain(session, now, |conn, addr, timeout| {
        ConnHandle::open(conn, addr, timeout, inputs.clone())
    });
}

/// A deadline that never comes in practice (a year away).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}
