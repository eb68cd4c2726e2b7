//! The driver thread: the one place the core client lives, inside a
//! [`Session`] that keeps the books tying the core's ids to the callers
//! blocked on them. Commands and connection inputs share one bounded
//! inbox, so a single `recv_timeout` waits for either or the core's
//! deadline.
//!
//! Records do not go through the inbox: a produce call hands its record
//! to the core on the caller's thread ([`Intake`], see [`SharedSession`])
//! and wakes the driver only when the record needs it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sansa_core::session::{self, Conns, Produce, Session, SharedSession, Sink, BURST};
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
    /// A produce call left work for the drain.
    Produced,
}

/// What produce calls share with the driver: the session, the origin of
/// the core's timestamps, and the inbox to wake the driver through.
#[derive(Debug)]
pub(crate) struct Intake {
    shared: SharedSession<Sink>,
    origin: Instant,
    inbox: SyncSender<Msg>,
}

impl Intake {
    fn now(&self) -> Timestamp {
        session::timestamp(self.origin.elapsed())
    }

    /// Hands a record to the core on the caller's thread; wakes the
    /// driver if the record needs it (a full inbox means the driver has
    /// work and drains before it waits again). After the driver finished,
    /// the record fails with
    /// [`ProduceError::Closed`](sansa_core::producer::ProduceError).
    pub(crate) fn produce(&self, produce: Produce<Sink>) {
        if self.shared.produce(self.now(), SystemTime::now, produce) {
            let _ = self.inbox.try_send(Msg::Produced);
        }
    }
}

pub(crate) struct Driver {
    intake: Arc<Intake>,
    inbox: Receiver<Msg>,
    /// Handed to connection threads.
    inbox_tx: SyncSender<Msg>,
    conns: Conns<ConnHandle>,
    /// Set once the core is closed, before close waiters hear of it.
    closed: Arc<AtomicBool>,
}

impl Driver {
    /// A driver for `core`, and the [`Intake`] produce calls go through.
    pub(crate) fn new(
        core: sansa_core::Client,
        inbox: Receiver<Msg>,
        inbox_tx: SyncSender<Msg>,
        closed: Arc<AtomicBool>,
    ) -> (Self, Arc<Intake>) {
        let intake = Arc::new(Intake {
            shared: SharedSession::new(Session::new(core)),
            origin: Instant::now(),
            inbox: inbox_tx.clone(),
        });
        let driver = Driver {
            intake: intake.clone(),
            inbox,
            inbox_tx,
            conns: Conns::default(),
            closed,
        };
        (driver, intake)
    }

    pub(crate) fn run(mut self) {
        tracing::debug!("driver started");
        loop {
            let deadline = {
                let mut guard = self.intake.shared.lock();
                let Some(session) = guard.session.as_mut() else {
                    break;
                };
                drain(&mut self.conns, &self.inbox_tx, self.intake.now(), session);
                if session.is_done() {
                    break;
                }
                session.poll_timer().deadline
            };
            let msg = match deadline {
                Some(t) => {
                    let at = Duration::from_nanos(t.as_nanos());
                    let left = at.saturating_sub(self.intake.origin.elapsed());
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
            let now = self.intake.now();
            let mut guard = self.intake.shared.lock();
            let Some(session) = guard.session.as_mut() else {
                break;
            };
            let Some(msg) = msg else {
                session.handle_timeout(now);
                continue;
            };
            on_msg(&mut self.conns, session, now, msg);
            // Whatever else arrived meanwhile is fed before the next
            // drain: one drain per burst, not per message.
            for _ in 1..BURST {
                match self.inbox.try_recv() {
                    Ok(msg) => on_msg(&mut self.conns, session, now, msg),
                    Err(_) => break,
                }
            }
        }
        self.conns.clear();
        self.closed.store(true, Ordering::Release);
        // Out of the lock first, so records produced from now on fail at
        // once.
        self.intake.shared.finish();
        tracing::debug!("driver stopped");
    }
}

fn on_msg(conns: &mut Conns<ConnHandle>, session: &mut Session<Sink>, now: Timestamp, msg: Msg) {
    match msg {
        Msg::Command(cmd) => session.handle_command(now, cmd),
        Msg::Input(input) => conns.feed(session, now, input),
        Msg::HandlesGone => {
            tracing::debug!("every handle dropped; closing");
            session.handle_command(now, Command::Close(None));
        }
        Msg::Produced => {}
    }
}

/// Carries out every connection action the session has.
fn drain(
    conns: &mut Conns<ConnHandle>,
    inputs: &SyncSender<Msg>,
    now: Timestamp,
    session: &mut Session<Sink>,
) {
    conns.drain(session, now, |conn, addr, timeout| {
        ConnHandle::open(conn, addr, timeout, inputs.clone())
    });
}
