//! The driver thread: the one place the core client lives, inside a
//! [`Session`] that keeps the books tying the core's ids to the callers
//! blocked on them. Commands and connection inputs share one bounded
//! inbox, so a single `recv_timeout` waits for either or the core's
//! deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sansa_core::session::{self, Conns, Session, Sink, BURST};
use sansa_core::{Input, Timestamp};

use crate::conn::ConnHandle;

/// What a [`crate::Client`] asks of the driver.
pub(crate) type Command = session::Command<Sink>;

/// What arrives in the driver's inbox.
#[derive(Debug)]
pub(crate) enum Msg {
    Command(Command),
    Input(Input),
    /// The last [`crate::Client`] handle was dropped.
    HandlesGone,
}

pub(crate) struct Driver {
    session: Session<Sink>,
    /// The origin of the core's timestamps.
    origin: Instant,
    inbox: Receiver<Msg>,
    /// Handed to connection threads.
    inbox_tx: SyncSender<Msg>,
    conns: Conns<ConnHandle>,
    /// Set once the core is closed, before close waiters hear of it.
    closed: Arc<AtomicBool>,
}

impl Driver {
    pub(crate) fn new(
        core: sansa_core::Client,
        inbox: Receiver<Msg>,
        inbox_tx: SyncSender<Msg>,
        closed: Arc<AtomicBool>,
    ) -> Self {
        Driver {
            session: Session::new(core),
            origin: Instant::now(),
            inbox,
            inbox_tx,
            conns: Conns::default(),
            closed,
        }
    }

    fn now(&self) -> Timestamp {
        session::timestamp(self.origin.elapsed())
    }

    pub(crate) fn run(mut self) {
        tracing::debug!("driver started");
        loop {
            self.drain();
            if self.session.is_done() {
                break;
            }
            let deadline = self.session.poll_timer().deadline;
            let msg = match deadline {
                Some(t) => {
                    let at = Duration::from_nanos(t.as_nanos());
                    let left = at.saturating_sub(self.origin.elapsed());
                    match self.inbox.recv_timeout(left) {
                        Ok(msg) => Some(msg),
                        Err(RecvTimeoutError::Timeout) => None,
                        // The driver holds a sender itself: never.
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match self.inbox.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => break,
                },
            };
            let now = self.now();
            let Some(msg) = msg else {
                self.session.handle_timeout(now);
                continue;
            };
            self.on_msg(now, msg);
            // Whatever else arrived meanwhile is fed before the next
            // drain: one drain per burst, not per message.
            for _ in 1..BURST {
                match self.inbox.try_recv() {
                    Ok(msg) => self.on_msg(now, msg),
                    Err(_) => break,
                }
            }
        }
        self.conns.clear();
        self.closed.store(true, Ordering::Release);
        self.session.finish();
        tracing::debug!("driver stopped");
    }

    fn on_msg(&mut self, now: Timestamp, msg: Msg) {
        match msg {
            Msg::Command(cmd) => self.session.handle_command(now, cmd),
            Msg::Input(input) => self.conns.feed(&mut self.session, now, input),
            Msg::HandlesGone => {
                tracing::debug!("every handle dropped; closing");
                self.session.handle_command(now, Command::Close(None));
            }
        }
    }

    /// Carries out every connection action the session has.
    fn drain(&mut self) {
        let now = self.now();
        let inputs = &self.inbox_tx;
        self.conns
            .drain(&mut self.session, now, |conn, addr, timeout| {
                ConnHandle::open(conn, addr, timeout, inputs.clone())
            });
    }
}
