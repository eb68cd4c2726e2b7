//! The driver task: the one place the core client lives, inside a
//! [`Session`] that keeps the books tying the core's ids to the user's
//! futures. Its loop: feed a burst of commands or connection inputs,
//! carry out the session's connection actions, then wait for the next
//! command, input or the core's deadline.

use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use async_io::Timer;
use futures_lite::future;
use sansa_core::session::{self, Conns, Session, Sink, BURST};
use sansa_core::{Input, Timestamp};

use crate::conn::ConnHandle;

/// Inputs from connection tasks waiting for the driver; readers wait
/// when it is full rather than buffer without bound.
const CONN_INPUTS: usize = 1024;

/// What a [`crate::Client`] asks of the driver.
pub(crate) type Command = session::Command<Sink>;

/// What woke the driver.
enum Wake {
    Input(Input),
    Command(Command),
    HandlesGone,
    Deadline,
}

pub(crate) struct Driver {
    session: Session<Sink>,
    /// The origin of the core's timestamps.
    origin: Instant,
    commands: Receiver<Command>,
    /// False once every handle is gone.
    commands_open: bool,
    inputs_tx: Sender<Input>,
    inputs: Receiver<Input>,
    conns: Conns<ConnHandle>,
}

impl Driver {
    pub(crate) fn new(core: sansa_core::Client, commands: Receiver<Command>) -> Self {
        let (inputs_tx, inputs) = async_channel::bounded(CONN_INPUTS);
        Driver {
            session: Session::new(core),
            origin: Instant::now(),
            commands,
            commands_open: true,
            inputs_tx,
            inputs,
            conns: Conns::default(),
        }
    }

    fn now(&self) -> Timestamp {
        session::timestamp(self.origin.elapsed())
    }

    pub(crate) async fn run(mut self) {
        tracing::debug!("driver started");
        let mut timer = Timer::never();
        loop {
            self.drain();
            if self.session.is_done() {
                break;
            }
            let update = self.session.poll_timer();
            match update.deadline {
                Some(t) if update.rearm => {
                    let at = self.origin.checked_add(Duration::from_nanos(t.as_nanos()));
                    match at {
                        Some(at) => timer.set_at(at),
                        None => timer = Timer::never(),
                    }
                }
                Some(_) => {}
                None => timer = Timer::never(),
            }
            let wake = next(&self.inputs, &self.commands, self.commands_open, &mut timer).await;
            let now = self.now();
            match wake {
                Wake::Input(input) => {
                    self.conns.feed(&mut self.session, now, input);
                    for _ in 1..BURST {
                        match self.inputs.try_recv() {
                            Ok(input) => self.conns.feed(&mut self.session, now, input),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Command(cmd) => {
                    self.session.handle_command(now, cmd);
                    for _ in 1..BURST {
                        match self.commands.try_recv() {
                            Ok(cmd) => self.session.handle_command(now, cmd),
                            Err(_) => break,
                        }
                    }
                }
                Wake::HandlesGone => {
                    tracing::debug!("every handle dropped; closing");
                    self.commands_open = false;
                    self.session.handle_command(now, Command::Close(None));
                }
                Wake::Deadline => self.session.handle_timeout(now),
            }
        }
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
        let inputs = &self.inputs_tx;
        self.conns
            .drain(&mut self.session, now, |conn, addr, timeout| {
                ConnHandle::open(conn, addr, timeout, inputs.clone())
            });
    }
}

/// Waits for a connection input, a command or the deadline; `race`
/// picks at random among ready ones, so neither source starves.
async fn next(
    inputs: &Receiver<Input>,
    commands: &Receiver<Command>,
    commands_open: bool,
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
    let deadline = async {
        timer.await;
        Wake::Deadline
    };
    future::race(future::race(input, command), deadline).await
}
