//! A one-message channel for the simulated runtime: how a flush, a
//! close, a `poll_fetches`, a commit or a task's result reaches the task
//! waiting for it. The runtime runs on one thread, but the session's
//! waiter types and [`std::task::Waker`] are `Send`, so the slot is a
//! mutex (never contended).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

#[derive(Debug)]
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Holders never panic; a poisoned slot is still a valid one.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new channel.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        sender_gone: false,
        receiver_gone: false,
    }));
    (Sender(slot.clone()), Receiver(slot))
}

/// The sending end; dropped without sending, the receiver gets `None`.
#[derive(Debug)]
pub(crate) struct Sender<T>(Arc<Mutex<Slot<T>>>);

impl<T> Sender<T> {
    /// Hands `value` over; gives it back if the receiver is gone.
    pub(crate) fn send(self, value: T) -> Result<(), T> {
        let waker = {
            let mut slot = lock(&self.0);
            if slot.receiver_gone {
                return Err(value);
            }
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = lock(&self.0);
            slot.sender_gone = true;
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The receiving end: a future of the value, `None` when the sender was
/// dropped without one.
#[derive(Debug)]
pub(crate) struct Receiver<T>(Arc<Mutex<Slot<T>>>);

impl<T> Receiver<T> {
    /// The value if it came, without waiting.
    pub(crate) fn try_take(&self) -> Option<T> {
        lock(&self.0).value.take()
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut slot = lock(&self.0);
        if let Some(v) = slot.value.take() {
            return Poll::Ready(Some(v));
        }
        if slot.sender_gone {
            return Poll::Ready(None);
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        lock(&self.0).receiver_gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll<T>(rx: &mut Receiver<T>) -> Poll<Option<T>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(rx).poll(&mut cx)
    }

    #[test]
    fn a_sent_value_is_received_once() {
        let (tx, mut rx) = channel();
        assert_eq!(poll(&mut rx), Poll::Pending);
        assert_eq!(tx.send(5), Ok(()));
        assert_eq!(poll(&mut rx), Poll::Ready(Some(5)));
    }

    #[test]
    fn a_sender_dropped_without_a_value_ends_the_wait_with_none() {
        let (tx, mut rx) = channel::<u8>();
        drop(tx);
        assert_eq!(poll(&mut rx), Poll::Ready(None));
    }

    #[test]
    fn a_send_to_a_dropped_receiver_gives_the_value_back() {
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send("x"), Err("x"));
    }
}
