//! One record's state and the task waiting on it, for the async adapters
//! (tokio, smol): both wait through a [`std::task::Waker`], so the cell
//! that pairs the two is written once here. It polls nothing and spawns
//! nothing: a future polls it, the driver updates it.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::outcome::RecordState;

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
        let waker = {
            let mut state = lock(&self.state);
            f(&mut state.0);
            state.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
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
