//! How a blocked caller waits on the core's cells (a record's
//! `WakerSlot`, a batch's `WakerBatch`, an [`Answer`]): it polls them
//! with a waker that unparks its thread, and parks until woken or the
//! deadline passes. The async adapters poll the same cells from their
//! futures; only this parking is the blocking adapter's own.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use sansa_core::session::Answer;

/// Wakes a thread parked in [`until`]. An unpark of a thread that is not
/// parked costs no system call, so a cell that changes while nobody
/// waits stays cheap.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    /// One waker per thread, made once: a cell keeps a waker only when it
    /// is not the one it has (`will_wake`), so waiting again costs no
    /// clone.
    static WAKER: Waker = Waker::from(Arc::new(Unpark(thread::current())));
}

/// Polls `poll` until it is ready, parking the thread in between, for at
/// most `timeout` (`None`: no limit); `None` if it was not ready in time.
pub(crate) fn until<T>(
    timeout: Option<Duration>,
    mut poll: impl FnMut(&Context<'_>) -> Poll<T>,
) -> Option<T> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    WAKER.with(|waker| {
        let cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(t) = poll(&cx) {
                return Some(t);
            }
            // A wake between the poll and the park is not lost: it leaves
            // the thread's token set, and the park returns at once.
            match deadline {
                None => thread::park(),
                Some(d) => thread::park_timeout(d.checked_duration_since(Instant::now())?),
            }
        }
    })
}

/// The answer, waiting at most `timeout` (`None`: no limit); `None` when
/// the driver ended without one or the time ran out (the driver then
/// keeps a value that comes later).
pub(crate) fn answer<T>(mut answer: Answer<T>, timeout: Option<Duration>) -> Option<T> {
    match until(timeout, |cx| answer.poll_answer(cx)) {
        Some(value) => value,
        None => answer.abandon(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sansa_core::session;

    #[test]
    fn an_answer_sent_from_another_thread_wakes_the_waiting_one() {
        let (waiting, reply) = session::answer();
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            reply.send(5u8)
        });
        assert_eq!(answer(waiting, Some(Duration::from_secs(10))), Some(5));
        assert_eq!(sender.join().ok(), Some(Ok(())));
    }

    #[test]
    fn a_timed_out_answer_leaves_its_value_to_the_driver() {
        let (waiting, reply) = session::answer::<u8>();
        let started = Instant::now();
        assert_eq!(answer(waiting, Some(Duration::from_millis(30))), None);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(reply.is_abandoned());
        assert_eq!(reply.send(1), Err(1));
    }

    #[test]
    fn a_driver_gone_without_answering_ends_the_wait() {
        let (waiting, reply) = session::answer::<u8>();
        let dropper = thread::spawn(move || drop(reply));
        assert_eq!(answer(waiting, None), None);
        assert!(dropper.join().is_ok());
    }
}
