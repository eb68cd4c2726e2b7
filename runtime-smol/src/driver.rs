//! The driver task: the one place the core client is driven, inside a
//! [`Session`] that keeps the books tying the core's ids to the user's
//! futures. Its loop: feed a burst of commands or connection inputs,
//! carry out the session's connection actions, then wait for the next
//! command, input, produce wake-up or the core's deadline.
//!
//! Records do not go through the command channel: a produce call hands
//! its record to the core on the caller's thread ([`Intake`], see
//! [`SharedSession`]) and wakes the driver only when the record needs it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_channel::{Receiver, Sender};
use async_io::Timer;
use futures_lite::future;
use sansa_core::session::{self, Conns, Produce, Session, SharedSession, Sink, BURST};
use sansa_core::{Input, Timestamp};

use crate::conn::ConnHandle;

/// Inputs from connection tasks waiting for the driver; readers wait
/// when it is full rather than buffer without bound.
const CONN_INPUTS: usize = 1024;

/// What a [`crate::Client`] asks of the driver.
pub(crate) type Command = session::Command<Sink>;

/// What produce calls share with the driver: the session, the origin of
/// the core's timestamps, and the driver's wake-up.
#[derive(Debug)]
pub(crate) struct Intake {
    shared: SharedSession<Sink>,
    origin: Instant,
    /// Room for one wake-up: one given while the driver is busy waits for
    /// its next wait, and more than one would say nothing more.
    wake: Sender<()>,
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
            let _ = self.wake.try_send(());
        }
    }
}

/// What woke the driver.
enum Wake {
    Input(Input),
    Command(Command),
    HandlesGone,
    Deadline,
    /// A produce call left work for the drain.
    Produced,
}

pub(crate) struct Driver {
    intake: Arc<Intake>,
    woken: Receiver<()>,
    commands: Receiver<Command>,
    /// False once every handle is gone.
    commands_open: bool,
    inputs_tx: Sender<Input>,
    inputs: Receiver<Input>,
    conns: Conns<ConnHandle>,
}

impl Driver {
    /// A driver for `core`, and the [`Intake`] produce calls go through.
    pub(crate) fn new(
        core: sansa_core::Client,
        commands: Receiver<Command>,
    ) -> (Self, Arc<Intake>) {
        let (inputs_tx, inputs) = async_channel::bounded(CONN_INPUTS);
        let (wake, woken) = async_channel::bounded(1);
        let intake = Arc::new(Intake {
            shared: SharedSession::new(Session::new(core)),
            origin: Instant::now(),
            wake,
        });
        let driver = Driver {
            intake: intake.clone(),
            woken,
            commands,
            commands_open: true,
            inputs_tx,
            inputs,
            conns: Conns::default(),
        };
        (driver, intake)
    }

    pub(crate) async fn run(mut self) {
        tracing::debug!("driver started");
        let mut timer = Timer::never();
        loop {
            let update = {
                let mut guard = self.intake.shared.lock();
                let Some(session) = guard.session.as_mut() else {
                    break;
                };
                drain(&mut self.conns, &self.inputs_tx, self.intake.now(), session);
                if session.is_done() {
                    break;
                }
                session.poll_timer()
            };
            match update.deadline {
                Some(t) if update.rearm => {
                    let at = self
                        .intake
                        .origin
                        .checked_add(Duration::from_nanos(t.as_nanos()));
                    match at {
                        Some(at) => timer.set_at(at),
                        None => timer = Timer::never(),
                    }
                }
                Some(_) => {}
                None => timer = Timer::never(),
            }
            let wake = next(
                &self.inputs,
                &self.commands,
                self.commands_open,
                &self.woken,
                &mut timer,
            )
            .await;
            let now = self.intake.now();
            let mut guard = self.intake.shared.lock();
            let Some(session) = guard.session.as_mut() else {
                break;
            };
            match wake {
                Wake::Input(input) => {
                    self.conns.feed(session, now, input);
                    for _ in 1..BURST {
                        match self.inputs.try_recv() {
                            Ok(input) => self.conns.feed(session, now, input),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Command(cmd) => {
                    session.handle_command(now, cmd);
                    for _ in 1..BURST {
                        match self.commands.try_recv() {
                            Ok(cmd) => session.handle_command(now, cmd),
                            Err(_) => break,
                        }
                    }
                }
                Wake::HandlesGone => {
                    tracing::debug!("every handle dropped; closing");
                    self.commands_open = false;
                    session.handle_command(now, Command::Close(None));
                }
                Wake::Deadline => session.handle_timeout(now),
                Wake::Produced => {}
            }
        }
        self.conns.clear();
        // Closed before close waiters hear of it, so `is_closed` holds
        // once `close` returns; the session is taken out of the lock
        // first, so records produced from now on fail at once.
        self.commands.close();
        self.intake.shared.finish();
        tracing::debug!("driver stopped");
    }
}

/// Carries out every connection action the session has.
fn drain(
    conns: &mut Conns<ConnHandle>,
    inputs: &Sender<Input>,
    now: Timestamp,
    session: &mut Session<Sink>,
) {
    conns.drain(session, now, |conn, addr, timeout| {
        ConnHandle::open(conn, addr, timeout, inputs.clone())
    });
}

/// Waits for a connection input, a command, a produce wake-up or the
/// deadline; `race` picks at random among ready ones, so no source
/// starves.
async fn next(
    inputs: &Receiver<Input>,
    commands: &Receiver<Command>,
    commands_open: bool,
    woken: &Receiver<()>,
    timer: &mut Timer,
) -> Wake {
    let input = async {
        match inputs.recv().await {
            Ok(input) => Wake::Input(input),
            // The driver holds a sender: never closed.
            Err(_) => future::pending().await,
        }
    };
    let command = async {
        if !commands_open {
            return future::pending().await;
        }
        match commands.recv().await {
            Ok(cmd) => Wake::Command(cmd),
            Err(_) => Wake::HandlesGone,
        }
    };
    let produced = async {
        match woken.recv().await {
            Ok(()) => Wake::Produced,
            // The intake holds the sender as long as the driver runs.
            Err(_) => future::pending().await,
        }
    };
    let deadline = async {
        timer.await;
        Wake::Deadline
    };
    future::race(
        future::race(input, command),
        future::race(produced, deadline),
    )
    .await
}
