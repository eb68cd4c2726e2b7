//! Where a record's result goes, written once for every adapter: to one
//! caller waiting on that record, or into a batch (`FirstError`) with an
//! optional caller waiting to hear whether the record was buffered. An
//! adapter supplies only the cells (a mutex with a waker or a condvar, a
//! channel) through [`Cells`].

use std::sync::Arc;

use super::outcome::{Outcome, RecordState};
use super::ProduceWaiter;
use crate::producer::ProduceError;

/// The adapter's shared cells a [`Sink`] writes into.
pub trait Cells {
    /// What one record's caller waits on.
    type Record;
    /// What a batch's callers wait on.
    type Batch;
    /// Tells one caller whether its record was buffered.
    type Admission;
    /// A record's caller to wake later (see [`ProduceWaiter`]).
    type Wake: std::fmt::Debug;

    /// Changes the record's state; returns its caller's wake-up, if one
    /// may wait, for the session to do at the end of the drain.
    fn update(record: &Arc<Self::Record>, f: impl FnOnce(&mut RecordState)) -> Option<Self::Wake>;
    /// Wakes a record's caller.
    fn wake(wake: Self::Wake);
    /// One record of the batch is done (`error` if it failed), or was
    /// refused before it counted (`None`).
    fn finish(batch: &Self::Batch, error: Option<ProduceError>);
    /// Answers a caller waiting for admission.
    fn admit(reply: Self::Admission, result: Result<(), ProduceError>);
}

/// Where the session sends a record's result. Dropped without one (the
/// driver is gone), the record fails with [`ProduceError::Closed`], so
/// no caller waits forever.
pub enum Sink<C: Cells> {
    /// One caller waits on this record.
    Record(Option<Arc<C::Record>>),
    /// One record of a batch, and maybe a caller waiting for its
    /// admission (`try_produce`).
    Batch(Option<Arc<C::Batch>>, Option<C::Admission>),
}

impl<C: Cells> std::fmt::Debug for Sink<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Record(_) => "Sink::Record",
            Sink::Batch(..) => "Sink::Batch",
        })
    }
}

impl<C: Cells> ProduceWaiter for Sink<C> {
    type Wake = C::Wake;

    fn buffered(&mut self) -> Option<C::Wake> {
        match self {
            Sink::Record(Some(r)) => C::update(r, RecordState::buffered),
            Sink::Record(None) => None,
            Sink::Batch(_, admitted) => {
                if let Some(reply) = admitted.take() {
                    C::admit(reply, Ok(()));
                }
                None
            }
        }
    }

    /// Hands over the result; a failure before the record was buffered
    /// is its refusal too.
    fn complete(mut self, outcome: Outcome) -> Option<C::Wake> {
        match &mut self {
            Sink::Record(r) => r
                .take()
                .and_then(|r| C::update(&r, |s| s.complete(outcome))),
            // The batch counts first: a caller woken by its admission
            // sees the batch as it is after this record.
            Sink::Batch(batch, admitted) => {
                let admission = outcome.as_ref().map(|_| ()).map_err(Clone::clone);
                if let Some(b) = batch.take() {
                    C::finish(&b, outcome.err());
                }
                if let Some(reply) = admitted.take() {
                    C::admit(reply, admission);
                }
                None
            }
        }
    }

    /// A `try_produce` record was refused before the core took it: the
    /// refusal is the call's answer, and the record does not count in a
    /// batch.
    fn refused(mut self, error: ProduceError) -> Option<C::Wake> {
        if let Sink::Batch(batch, admitted) = &mut self {
            if let Some(b) = batch.take() {
                C::finish(&b, None);
            }
            if let Some(reply) = admitted.take() {
                C::admit(reply, Err(error));
            }
            return None;
        }
        self.complete(Err(error))
    }

    fn wake(wake: C::Wake) {
        C::wake(wake);
    }
}

impl<C: Cells> Drop for Sink<C> {
    fn drop(&mut self) {
        match self {
            Sink::Record(r) => {
                if let Some(w) = r.take().and_then(|r| C::update(&r, RecordState::abandoned)) {
                    C::wake(w);
                }
            }
            // A caller waiting for the admission hears the same.
            Sink::Batch(batch, admitted) => {
                if let Some(b) = batch.take() {
                    C::finish(&b, Some(ProduceError::Closed));
                }
                if let Some(reply) = admitted.take() {
                    C::admit(reply, Err(ProduceError::Closed));
                }
            }
        }
    }
}
