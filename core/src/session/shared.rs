//! A [`Session`] shared by the driver and the callers that produce, for
//! adapters that hand records to the core on the caller's thread.
//!
//! A record sent to the driver as a command cost a copy of it, a channel
//! hop, a wake-up and a clock read on the driver's side, more than
//! appending it to a batch did. librdkafka's `produce` appends to the
//! partition's queue on the caller's thread and wakes its broker thread
//! only when the queue needs it; [`SharedSession::produce`] does the same:
//! the caller takes the lock for one record, the driver for one burst, and
//! the driver is woken only when the record needs it (it opened or
//! readied a batch, waits for space, or failed).
//!
//! What stays with the adapter: the clock (its origin and how it is read),
//! and how the driver is woken.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::{ProduceRequest, ProduceWaiter, Session, WallAnchor};
use crate::producer::{ProduceError, Record};
use crate::Timestamp;

/// The session behind a lock, and the wall-clock anchor record
/// timestamps are taken from. See the [module docs](self).
#[derive(Debug)]
pub struct SharedSession<P: ProduceWaiter> {
    locked: Mutex<Locked<P>>,
}

/// What [`SharedSession`]'s lock guards.
#[derive(Debug)]
pub struct Locked<P: ProduceWaiter> {
    /// `None` once the driver finished: records fail as closed.
    pub session: Option<Session<P>>,
    /// Record timestamps between two reads of the wall clock.
    wall: WallAnchor,
}

/// One record for [`SharedSession::produce`], as a produce call made it.
#[derive(Debug)]
pub struct Produce<P> {
    /// The record.
    pub record: Record,
    /// `try_produce`: refuse at once when the buffer is full.
    pub fail_when_full: bool,
    /// `produce_sync`: no linger.
    pub urgent: bool,
    /// The caller's name for the record (see [`ProduceRequest::ticket`]).
    pub ticket: u64,
    /// Who waits for it.
    pub waiter: P,
}

impl<P: ProduceWaiter> SharedSession<P> {
    /// Shares `session`.
    pub fn new(session: Session<P>) -> Self {
        SharedSession {
            locked: Mutex::new(Locked {
                session: Some(session),
                wall: WallAnchor::default(),
            }),
        }
    }

    /// The session, unless the driver finished. Nobody panics while
    /// holding the lock, and a session poisoned by a panic elsewhere would
    /// still be a valid one.
    pub fn lock(&self) -> MutexGuard<'_, Locked<P>> {
        self.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a record to the core on the caller's thread at `now`,
    /// stamped with the wall clock of the call: `wall` is read at most
    /// every [`WallAnchor::MAX_AGE`], derived from `now` in between.
    /// Callers waiting on outcomes are woken before this returns.
    ///
    /// True when the driver must be woken to drain (see
    /// [`Session::intake`]). After the driver finished, the record fails
    /// with [`ProduceError::Closed`].
    pub fn produce(
        &self,
        now: Timestamp,
        wall: impl FnOnce() -> SystemTime,
        produce: Produce<P>,
    ) -> bool {
        let mut locked = self.lock();
        let Locked {
            session,
            wall: anchor,
        } = &mut *locked;
        let wall_ms = anchor
            .wall_ms(now)
            .unwrap_or_else(|| anchor.anchor(now, wall()));
        let request = ProduceRequest {
            record: produce.record,
            wall_ms,
            fail_when_full: produce.fail_when_full,
            urgent: produce.urgent,
            ticket: produce.ticket,
            waiter: produce.waiter,
        };
        let Some(s) = session.as_mut() else {
            drop(locked);
            request.refuse(ProduceError::Closed);
            return false;
        };
        s.intake(now, request)
    }

    /// Takes the session out once the driver's loop ended, so records
    /// produced from now on fail at once, and finishes it (outside the
    /// lock).
    pub fn finish(&self) {
        let session = self.lock().session.take();
        if let Some(session) = session {
            session.finish();
        }
    }
}
