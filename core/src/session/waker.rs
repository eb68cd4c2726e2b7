//! The cells of the async adapters (tokio, smol): both wait through a
//! [`std::task::Waker`], so the cells that pair a state with the tasks
//! waiting on it are written once here, as [`WakerCells`]. They poll
//! nothing and spawn nothing: a future polls them, the driver updates
//! them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::outcome::{BatchState, RecordState};
use super::sink::Cells;
use super::Reply;
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

/// The cells of both async adapters: a [`WakerSlot`] per record, a
/// [`WakerBatch`] per batch, and a [`WakerSlot`] too for a caller
/// waiting to hear whether a batch's record was buffered (it polls
/// [`RecordState::admission`]).
#[derive(Debug)]
pub struct WakerCells;

impl Cells for WakerCells {
    type Record = WakerSlot;
    type Batch = WakerBatch;
    type Admission = Arc<WakerSlot>;
    type Wake = Waker;

    fn update(record: &Arc<WakerSlot>, f: impl FnOnce(&mut RecordState)) -> Option<Waker> {
        record.update_quietly(f)
    }

    fn wake(wake: Waker) {
        wake.wake();
    }

    fn finish(batch: &WakerBatch, error: Option<ProduceError>) {
        batch.finish(error);
    }

    fn admit(reply: Arc<WakerSlot>, result: Result<(), ProduceError>) {
        reply.update(|s| match result {
            Ok(()) => s.buffered(),
            Err(e) => s.complete(Err(e)),
        });
    }
}

/// A task awaiting one answer the driver hands to a [`Reply`]: what the
/// async adapters' transaction calls wait on. Resolves to `None` when the
/// reply was dropped unanswered (the driver is gone, or dropped the
/// command), so no caller waits forever on a closed client.
///
/// ```
/// use std::future::Future;
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
/// use sansa_core::session::ReplyFuture;
///
/// let mut cx = Context::from_waker(Waker::noop());
/// let (reply, answer) = ReplyFuture::<u8>::channel();
/// let mut answer = pin!(answer);
/// assert_eq!(answer.as_mut().poll(&mut cx), Poll::Pending);
/// reply.send(7);
/// assert_eq!(answer.poll(&mut cx), Poll::Ready(Some(7)));
///
/// let (reply, answer) = ReplyFuture::<u8>::channel();
/// drop(reply); // the driver went away
/// assert_eq!(pin!(answer).poll(&mut cx), Poll::Ready(None));
/// ```
pub struct ReplyFuture<T> {
    cell: Arc<Mutex<ReplyCell<T>>>,
}

struct ReplyCell<T> {
    answer: Option<T>,
    /// The reply was answered or dropped: nothing more will come.
    gone: bool,
    waker: Option<Waker>,
}

/// The driver's end of a [`ReplyFuture`]; dropped, it ends the wait.
struct Answerer<T>(Arc<Mutex<ReplyCell<T>>>);

impl<T> Answerer<T> {
    fn answer(self, value: T) {
        lock(&self.0).answer = Some(value);
        // Drop wakes the task.
    }
}

impl<T> Drop for Answerer<T> {
    fn drop(&mut self) {
        let waker = {
            let mut cell = lock(&self.0);
            cell.gone = true;
            cell.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T: Send + 'static> ReplyFuture<T> {
    /// A [`Reply`] to put in a command, and the future of its answer.
    pub fn channel() -> (Reply<T>, Self) {
        let cell = Arc::new(Mutex::new(ReplyCell {
            answer: None,
            gone: false,
            waker: None,
        }));
        let answerer = Answerer(cell.clone());
        (
            Reply::new(move |value| answerer.answer(value)),
            ReplyFuture { cell },
        )
    }
}

impl<T> Future for ReplyFuture<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut cell = lock(&self.cell);
        if let Some(value) = cell.answer.take() {
            return Poll::Ready(Some(value));
        }
        if cell.gone {
            return Poll::Ready(None);
        }
        match &cell.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => cell.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for ReplyFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cell = lock(&self.cell);
        f.debug_struct("ReplyFuture")
            .field("answered", &cell.answer.is_some())
            .field("gone", &cell.gone)
            .finish()
    }
}
