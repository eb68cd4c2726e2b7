//! How a blocked caller waits: a value behind a mutex and a condvar,
//! with a deadline. Used for one record ([`RecordSlot`] over the core's
//! [`RecordState`]) and for one answer ([`Answer`]: a flush, a close, a
//! `poll_fetches`, a batch admission).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sansa_core::session::RecordState;

/// Locks a mutex whose holders never panic; a poisoned state is still a
/// valid one.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A value and the condvar that says it changed, with a count of the
/// threads waiting on it: a notify is a system call even with nobody
/// waiting, and most values (a record's state) change with nobody
/// waiting yet.
#[derive(Debug, Default)]
pub(crate) struct Watched<T> {
    value: Mutex<T>,
    changed: Condvar,
    waiting: AtomicUsize,
}

impl<T> Watched<T> {
    fn new(value: T) -> Self {
        Watched {
            value: Mutex::new(value),
            changed: Condvar::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Changes the value and wakes every waiter.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let r = f(&mut lock(&self.value));
        self.notify();
        r
    }

    /// Whether a thread waits on the value. Read after a change, it is
    /// exact enough: a thread counts itself under the lock before it
    /// waits, and one that comes later sees the change.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Wakes every waiter (after a change made with [`Watched::with`]).
    pub(crate) fn notify(&self) {
        if self.has_waiters() {
            self.changed.notify_all();
        }
    }

    /// Reads or changes the value without waking anyone.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut lock(&self.value))
    }

    /// Waits until `f` gives an answer, or `timeout` (`None`: forever)
    /// passes.
    pub(crate) fn wait<R>(
        &self,
        timeout: Option<Duration>,
        mut f: impl FnMut(&mut T) -> Option<R>,
    ) -> Option<R> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut value = lock(&self.value);
        loop {
            if let Some(r) = f(&mut value) {
                return Some(r);
            }
            let left = match deadline {
                None => None,
                Some(d) => Some(d.checked_duration_since(Instant::now())?),
            };
            self.waiting.fetch_add(1, Ordering::SeqCst);
            value = match left {
                None => self
                    .changed
                    .wait(value)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(left) => {
                    self.changed
                        .wait_timeout(value, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One record's state, shared by its [`crate::ProduceHandle`] and the
/// driver.
pub(crate) type RecordSlot = Arc<Watched<RecordState>>;

/// One answer for one caller, who may stop waiting (time out) first.
#[derive(Debug)]
pub(crate) struct Answer<T>(Arc<Watched<AnswerState<T>>>);

#[derive(Debug)]
pub(crate) struct AnswerState<T> {
    value: Option<T>,
    /// The caller stopped waiting.
    abandoned: bool,
    /// The driver's end went away without answering.
    dropped: bool,
}

/// The driver's end of an [`Answer`]; dropped without a value, the
/// caller hears `None`.
#[derive(Debug)]
pub(crate) struct Reply<T>(Option<Arc<Watched<AnswerState<T>>>>);

/// A new answer and the driver's end of it.
pub(crate) fn answer<T>() -> (Answer<T>, Reply<T>) {
    let shared = Arc::new(Watched::new(AnswerState {
        value: None,
        abandoned: false,
        dropped: false,
    }));
    (Answer(shared.clone()), Reply(Some(shared)))
}

impl<T> Answer<T> {
    /// The value, or `None` when the driver went away or `timeout`
    /// passed (after which a late value is handed back to the driver).
    pub(crate) fn wait(self, timeout: Option<Duration>) -> Option<T> {
        let got = self.0.wait(timeout, |s| {
            if let Some(v) = s.value.take() {
                return Some(Some(v));
            }
            s.dropped.then_some(None)
        });
        match got {
            Some(v) => v,
            None => self.0.with(|s| {
                s.abandoned = true;
                s.value.take()
            }),
        }
    }
}

impl<T> Reply<T> {
    /// Whether the caller stopped waiting.
    pub(crate) fn abandoned(&self) -> bool {
        self.0.as_ref().is_none_or(|s| s.with(|s| s.abandoned))
    }

    /// Hands the value over; gives it back if the caller left.
    pub(crate) fn send(mut self, value: T) -> Result<(), T> {
        let Some(shared) = self.0.take() else {
            return Err(value);
        };
        shared.update(|s| {
            if s.abandoned {
                return Err(value);
            }
            s.value = Some(value);
            Ok(())
        })
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.update(|s| s.dropped = true);
        }
    }
}
