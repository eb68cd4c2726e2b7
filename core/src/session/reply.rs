//! One answer for one caller, the one way every adapter hands a result
//! back (a flush, a close, `poll_fetches`, a commit's outcome, the next
//! group event, a transaction's end): the session holds the [`Reply`],
//! the caller waits on the [`Answer`].
//!
//! An [`Answer`] is polled with a [`std::task::Waker`], so an async
//! adapter awaits it as a future and a blocking one polls it with a
//! waker that unparks its thread. Nothing here blocks, spawns or reads a
//! clock.
//!
//! Rules:
//! - A caller that stops waiting (drops its future, times out) is seen by
//!   the session ([`Reply::is_abandoned`]), and a value sent after that
//!   comes back to it ([`Reply::send`] fails), so records fetched for a
//!   caller that left are not lost unnoticed.
//! - A reply dropped unanswered (the session ended) answers `None`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// What the two ends share.
struct Shared<T> {
    value: Option<T>,
    /// The caller stopped waiting.
    abandoned: bool,
    /// The reply went away without a value.
    unanswered: bool,
    /// The task or thread waiting, to wake at the answer.
    waiter: Option<Waker>,
}

type Cell<T> = Arc<Mutex<Shared<T>>>;

/// Locks a mutex whose holders never panic; a poisoned state is still a
/// valid one.
fn lock<T>(cell: &Mutex<T>) -> MutexGuard<'_, T> {
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new answer and the session's end of it.
///
/// ```
/// use std::task::{Context, Poll, Waker};
/// use sansa_core::session::answer;
///
/// let (mut waiting, reply) = answer::<u32>();
/// let mut cx = Context::from_waker(Waker::noop());
/// assert_eq!(waiting.poll_answer(&mut cx), Poll::Pending);
/// assert_eq!(reply.send(7), Ok(()));
/// assert_eq!(waiting.poll_answer(&mut cx), Poll::Ready(Some(7)));
///
/// let (waiting, reply) = answer::<u32>();
/// assert_eq!(waiting.abandon(), None);
/// assert!(reply.is_abandoned());
/// assert_eq!(reply.send(8), Err(8), "the value comes back to the session");
/// ```
pub fn answer<T>() -> (Answer<T>, Reply<T>) {
    let cell = Arc::new(Mutex::new(Shared {
        value: None,
        abandoned: false,
        unanswered: false,
        waiter: None,
    }));
    (Answer(Some(cell.clone())), Reply(Some(cell)))
}

/// The session's end of one answer: send it once, or drop it to answer
/// `None`.
pub struct Reply<T>(Option<Cell<T>>);

impl<T> Reply<T> {
    /// Hands `value` to the caller; gives it back if the caller stopped
    /// waiting.
    pub fn send(self, value: T) -> Result<(), T> {
        // The hold on the value is dropped at once: a caller that leaves
        // without reading it drops it with its `Answer`.
        self.send_reclaimable(value).map(drop)
    }

    /// Hands `value` to the caller like [`Reply::send`], keeping a hold on
    /// it: a caller that drops its [`Answer`] with the value still unread
    /// (a future dropped by `select!` after the value came, before it was
    /// polled) leaves it for [`Delivery::reclaim`] rather than losing it.
    ///
    /// ```
    /// use sansa_core::session::{answer, Reclaim};
    ///
    /// let (waiting, reply) = answer::<u32>();
    /// let delivery = reply.send_reclaimable(7).expect("the caller waits");
    /// assert_eq!(delivery.reclaim(), Reclaim::Pending);
    /// drop(waiting); // gone before reading it
    /// assert_eq!(delivery.reclaim(), Reclaim::Returned(7));
    /// ```
    pub fn send_reclaimable(mut self, value: T) -> Result<Delivery<T>, T> {
        let Some(cell) = self.0.take() else {
            return Err(value);
        };
        let waiter = {
            let mut shared = lock(&cell);
            if shared.abandoned {
                return Err(value);
            }
            shared.value = Some(value);
            shared.waiter.take()
        };
        // Woken after the lock is released, so the caller never blocks on it.
        waiter.into_iter().for_each(Waker::wake);
        Ok(Delivery(cell))
    }

    /// Whether the caller stopped waiting (dropped its future, timed out).
    pub fn is_abandoned(&self) -> bool {
        self.0.as_ref().is_none_or(|cell| lock(cell).abandoned)
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        let Some(cell) = self.0.take() else {
            return;
        };
        let waiter = {
            let mut shared = lock(&cell);
            shared.unanswered = true;
            shared.waiter.take()
        };
        waiter.into_iter().for_each(Waker::wake);
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// A value handed over by [`Reply::send_reclaimable`], until the caller
/// read it or left without it.
pub struct Delivery<T>(Cell<T>);

/// What became of a [`Delivery`].
#[derive(Debug, PartialEq, Eq)]
pub enum Reclaim<T> {
    /// The caller has not read it and still waits.
    Pending,
    /// The caller read it (or took it as it stopped waiting).
    Taken,
    /// The caller left without reading it: the value is back.
    Returned(T),
}

impl<T> Delivery<T> {
    /// Whether the value was read, is still waiting, or came back.
    pub fn reclaim(&self) -> Reclaim<T> {
        let mut shared = lock(&self.0);
        match (shared.value.is_some(), shared.abandoned) {
            (false, _) => Reclaim::Taken,
            (true, false) => Reclaim::Pending,
            (true, true) => shared
                .value
                .take()
                .map_or(Reclaim::Taken, Reclaim::Returned),
        }
    }
}

impl<T> std::fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delivery")
    }
}

/// The caller's end of one answer: `Some` value, or `None` when the
/// session ended without one. Awaited as a future, or polled with
/// [`Answer::poll_answer`]; dropping it tells the session the caller
/// left.
pub struct Answer<T>(Option<Cell<T>>);

impl<T> Answer<T> {
    /// Ready with the answer, else pending with the waker of `cx` kept
    /// (cloned only when it changed) for the reply to wake.
    pub fn poll_answer(&mut self, cx: &Context<'_>) -> Poll<Option<T>> {
        let Some(cell) = &self.0 else {
            // Answered already.
            return Poll::Ready(None);
        };
        let mut shared = lock(cell);
        if let Some(value) = shared.value.take() {
            drop(shared);
            self.0 = None;
            return Poll::Ready(Some(value));
        }
        if shared.unanswered {
            return Poll::Ready(None);
        }
        match &shared.waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => shared.waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Stops waiting (a timeout): from now on the session gets its value
    /// back. One that came meanwhile is returned rather than lost.
    pub fn abandon(mut self) -> Option<T> {
        let cell = self.0.take()?;
        let mut shared = lock(&cell);
        shared.abandoned = true;
        shared.waiter = None;
        shared.value.take()
    }
}

impl<T> Future for Answer<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_answer(cx)
    }
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        if let Some(cell) = self.0.take() {
            let mut shared = lock(&cell);
            shared.abandoned = true;
            shared.waiter = None;
        }
    }
}

impl<T> std::fmt::Debug for Answer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answer")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counted() -> (Arc<Counted>, Waker) {
        let count = Arc::new(Counted::default());
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_waiting_caller_is_woken_once_by_the_answer() {
        let (count, waker) = counted();
        let cx = Context::from_waker(&waker);
        let (mut answer, reply) = answer::<&str>();
        assert_eq!(answer.poll_answer(&cx), Poll::Pending);
        assert_eq!(answer.poll_answer(&cx), Poll::Pending);
        assert_eq!(reply.send("done"), Ok(()));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(answer.poll_answer(&cx), Poll::Ready(Some("done")));
    }

    #[test]
    fn a_reply_dropped_unanswered_wakes_the_caller_with_none() {
        let (count, waker) = counted();
        let cx = Context::from_waker(&waker);
        let (mut answer, reply) = answer::<u8>();
        assert_eq!(answer.poll_answer(&cx), Poll::Pending);
        drop(reply);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(answer.poll_answer(&cx), Poll::Ready(None));
    }

    #[test]
    fn a_dropped_answer_hands_the_value_back_to_the_session() {
        let (answer, reply) = answer::<Vec<u8>>();
        assert!(!reply.is_abandoned());
        drop(answer);
        assert!(reply.is_abandoned());
        assert_eq!(reply.send(vec![1]), Err(vec![1]));
    }

    #[test]
    fn an_answer_abandoned_after_the_value_came_keeps_it() {
        let (answer, reply) = answer::<u8>();
        assert_eq!(reply.send(3), Ok(()));
        assert_eq!(answer.abandon(), Some(3));
    }
}
