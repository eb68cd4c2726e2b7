//! The cells every adapter's callers wait on for records: a state and
//! the [`std::task::Waker`] of whoever waits on it. They poll nothing,
//! spawn nothing and block nothing: a future (tokio, smol) or a parked
//! thread (blocking) polls them, the driver updates them.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::outcome::{BatchState, RecordState};
use crate::producer::ProduceError;

/// Locks a mutex whose holders never panic; a poisoned state is still a
/// valid one.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a produce future shares with the driver: the record's
/// [`RecordState`] and the waker of the task waiting on it. One
/// allocation and one lock per record, where a pair of channels cost two
/// of each and showed in the profile.
///
/// ```
/// use std::task::{Context, Poll, Waker};
/// use sansa_core::producer::ProduceError;
/// use sansa_core::session::{RecordState, WakerSlot};
///
/// let slot = WakerSlot::default();
/// let mut cx = Context::from_waker(Waker::noop());
/// assert_eq!(slot.poll(&mut cx, RecordState::take), Poll::Pending);
/// slot.update(|s| s.complete(Err(ProduceError::Closed)));
/// assert_eq!(slot.poll(&mut cx, RecordState::take), Poll::Ready(Err(ProduceError::Closed)));
/// ```
#[derive(Debug, Default)]
pub struct WakerSlot {
    state: Mutex<(RecordState, Option<Waker>)>,
}

impl WakerSlot {
    /// Changes the state and wakes the task if one waits; the waker is
    /// woken after the lock is released, so the task never blocks on it.
    pub fn update(&self, f: impl FnOnce(&mut RecordState)) {
        if let Some(w) = self.update_quietly(f) {
            w.wake();
        }
    }

    /// Changes the state and hands back the waiting task's waker, to be
    /// woken later (after a burst of changes).
    pub fn update_quietly(&self, f: impl FnOnce(&mut RecordState)) -> Option<Waker> {
        let mut state = lock(&self.state);
        f(&mut state.0);
        state.1.take()
    }

    /// `f` on the state: ready with its answer, else pending with the
    /// task's waker kept (cloned only when it changed) for the next
    /// [`WakerSlot::update`].
    pub fn poll<T>(
        &self,
        cx: &Context<'_>,
        f: impl FnOnce(&mut RecordState) -> Option<T>,
    ) -> Poll<T> {
        let mut state = lock(&self.state);
        if let Some(t) = f(&mut state.0) {
            return Poll::Ready(t);
        }
        match &state.1 {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.1 = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// What the handles of one batch (`FirstError`) share with the driver:
/// the core's [`BatchState`] and the tasks waiting for it to end.
///
/// ```
/// use std::task::{Context, Poll, Waker};
/// use sansa_core::producer::ProduceError;
/// use sansa_core::session::WakerBatch;
///
/// let batch = WakerBatch::default();
/// let mut cx = Context::from_waker(Waker::noop());
/// assert_eq!(batch.poll_result(&mut cx), Poll::Ready(Ok(())), "an empty batch is done");
/// batch.add();
/// assert_eq!(batch.poll_result(&mut cx), Poll::Pending);
/// batch.finish(Some(ProduceError::Cancelled));
/// assert_eq!(batch.poll_result(&mut cx), Poll::Ready(Err(ProduceError::Cancelled)));
/// ```
#[derive(Debug, Default)]
pub struct WakerBatch {
    state: Mutex<(BatchState, Vec<Waker>)>,
}

impl WakerBatch {
    /// One more record in the batch.
    pub fn add(&self) {
        lock(&self.state).0.add();
    }

    /// One record is done (`error` if it failed), or was refused before
    /// it counted (`None`); the last one wakes every waiting task.
    pub fn finish(&self, error: Option<ProduceError>) {
        let wakers = {
            let mut state = lock(&self.state);
            if !state.0.finish(error) {
                return;
            }
            std::mem::take(&mut state.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Records not yet done.
    pub fn outstanding(&self) -> usize {
        lock(&self.state).0.outstanding()
    }

    /// The first failure so far.
    pub fn first_error(&self) -> Option<ProduceError> {
        lock(&self.state).0.first_error()
    }

    /// Ready with the first failure (or `Ok`) once no record is left,
    /// else pending with the task's waker kept. A task is kept once
    /// however often it polls; every clone of a batch may wait at once.
    pub fn poll_result(&self, cx: &Context<'_>) -> Poll<Result<(), ProduceError>> {
        let mut state = lock(&self.state);
        if let Some(result) = state.0.result() {
            return Poll::Ready(result);
        }
        if !state.1.iter().any(|w| w.will_wake(cx.waker())) {
            state.1.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
