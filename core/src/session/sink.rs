//! Where a record's result goes, written once for every adapter: to one
//! caller waiting on that record, or into a batch (`FirstError`) with an
//! optional caller waiting to hear whether the record was buffered. The
//! callers wait on the waker cells ([`WakerSlot`], [`WakerBatch`]): an
//! async adapter polls them from futures, the blocking one from a parked
//! thread.

use std::sync::Arc;
use std::task::Waker;

use super::outcome::{Outcome, RecordState};
use super::waker::{WakerBatch, WakerSlot};
use super::ProduceWaiter;
use crate::producer::ProduceError;

/// Where the session sends a record's result. Dropped without one (the
/// driver is gone), the record fails with [`ProduceError::Closed`], so
/// no caller waits forever.
#[derive(Debug)]
pub enum Sink {
    /// One caller waits on this record.
    Record(Option<Arc<WakerSlot>>),
    /// One record of a batch, and maybe a caller waiting for its
    /// admission (`try_produce`).
    Batch(Option<Arc<WakerBatch>>, Option<Arc<WakerSlot>>),
}

impl ProduceWaiter for Sink {
    type Wake = Waker;

    fn buffered(&mut self) -> Option<Waker> {
        match self {
            Sink::Record(Some(r)) => r.update_quietly(RecordState::buffered),
            Sink::Record(None) => None,
            Sink::Batch(_, admitted) => {
                if let Some(reply) = admitted.take() {
                    admit(&reply, Ok(()));
                }
                None
            }
        }
    }

    /// Hands over the result; a failure before the record was buffered
    /// is its refusal too.
    fn complete(mut self, outcome: Outcome) -> Option<Waker> {
        match &mut self {
            Sink::Record(r) => r
                .take()
                .and_then(|r| r.update_quietly(|s| s.complete(outcome))),
            // The batch counts first: a caller woken by its admission
            // sees the batch as it is after this record.
            Sink::Batch(batch, admitted) => {
                let admission = outcome.as_ref().map(|_| ()).map_err(Clone::clone);
                if let Some(b) = batch.take() {
                    b.finish(outcome.err());
                }
                if let Some(reply) = admitted.take() {
                    admit(&reply, admission);
                }
                None
            }
        }
    }

    /// A `try_produce` record was refused before the core took it: the
    /// refusal is the call's answer, and the record does not count in a
    /// batch.
    fn refused(mut self, error: ProduceError) -> Option<Waker> {
        if let Sink::Batch(batch, admitted) = &mut self {
            if let Some(b) = batch.take() {
                b.finish(None);
            }
            if let Some(reply) = admitted.take() {
                admit(&reply, Err(error));
            }
            return None;
        }
        self.complete(Err(error))
    }

    fn wake(wake: Waker) {
        wake.wake();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        match self {
            Sink::Record(r) => {
                if let Some(w) = r
                    .take()
                    .and_then(|r| r.update_quietly(RecordState::abandoned))
                {
                    w.wake();
                }
            }
            // A caller waiting for the admission hears the same.
            Sink::Batch(batch, admitted) => {
                if let Some(b) = batch.take() {
                    b.finish(Some(ProduceError::Closed));
                }
                if let Some(reply) = admitted.take() {
                    admit(&reply, Err(ProduceError::Closed));
                }
            }
        }
    }
}

/// Tells a caller waiting for its record's admission whether it got in.
fn admit(reply: &WakerSlot, result: Result<(), ProduceError>) {
    reply.update(|s| match result {
        Ok(()) => s.buffered(),
        Err(e) => s.complete(Err(e)),
    });
}
