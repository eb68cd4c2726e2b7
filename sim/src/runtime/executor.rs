//! The simulated runtime's executor: application tasks on one thread,
//! polled in a fixed order, so the same seed runs them the same way.
//!
//! A task that is woken joins the ready set; the runtime takes the whole
//! set at once and polls it in task-id order (spawn order), so the order
//! in which wakers fired within one instant (a session that fails many
//! callers at once walks a hash map) never changes the run. Wakers are
//! `Send` (the core's waker cells need that), so the ready set sits
//! behind a mutex nobody contends.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use crate::world::ClientIdx;

/// A task's name, in spawn order.
pub(crate) type TaskId = u64;

/// A task's future.
pub(crate) type TaskFuture = Pin<Box<dyn Future<Output = ()>>>;

/// The tasks woken since the runtime last took them.
#[derive(Debug, Default)]
pub(crate) struct ReadySet(Mutex<BTreeSet<TaskId>>);

impl ReadySet {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<TaskId>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether any task waits to be polled.
    pub(crate) fn any(&self) -> bool {
        !self.lock().is_empty()
    }

    fn take(&self) -> BTreeSet<TaskId> {
        std::mem::take(&mut *self.lock())
    }
}

/// Wakes one task: puts it in the ready set.
struct TaskWaker {
    id: TaskId,
    ready: Arc<ReadySet>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.lock().insert(self.id);
    }
}

struct Task {
    future: TaskFuture,
    waker: Waker,
    /// The client whose process this task belongs to: a crash of the
    /// client drops it.
    owner: Option<ClientIdx>,
}

/// The tasks and which of them are ready.
pub(crate) struct Executor {
    tasks: BTreeMap<TaskId, Task>,
    ready: Arc<ReadySet>,
    next_id: TaskId,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("tasks", &self.tasks.len())
            .field("ready", &self.ready)
            .finish()
    }
}

impl Executor {
    pub(crate) fn new() -> Self {
        Executor {
            tasks: BTreeMap::new(),
            ready: Arc::new(ReadySet::default()),
            next_id: 0,
        }
    }

    /// The ready set, for a run of the world to stop as soon as a task
    /// was woken.
    pub(crate) fn ready(&self) -> Arc<ReadySet> {
        self.ready.clone()
    }

    /// Adds a task, ready to be polled.
    pub(crate) fn spawn(&mut self, future: TaskFuture, owner: Option<ClientIdx>) -> TaskId {
        let id = self.next_id;
        self.next_id += 1;
        let waker = Waker::from(Arc::new(TaskWaker {
            id,
            ready: self.ready.clone(),
        }));
        self.tasks.insert(
            id,
            Task {
                future,
                waker,
                owner,
            },
        );
        self.ready.lock().insert(id);
        id
    }

    /// Takes the tasks woken so far, in id order.
    pub(crate) fn take_ready(&self) -> BTreeSet<TaskId> {
        self.ready.take()
    }

    /// Polls task `id` once; a finished task is dropped. False if there
    /// is no such task (it finished or was dropped before).
    pub(crate) fn poll(&mut self, id: TaskId) -> bool {
        let Some(task) = self.tasks.get_mut(&id) else {
            return false;
        };
        let mut cx = Context::from_waker(&task.waker);
        if let Poll::Ready(()) = task.future.as_mut().poll(&mut cx) {
            self.tasks.remove(&id);
        }
        true
    }

    /// Removes every task of `owner`'s process and hands them back, to be
    /// dropped by the caller (outside any borrow their drop might need).
    pub(crate) fn remove_owned_by(&mut self, owner: ClientIdx) -> Vec<TaskFuture> {
        let ids: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.owner == Some(owner))
            .map(|(&id, _)| id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.tasks.remove(&id))
            .map(|t| t.future)
            .collect()
    }

    /// Tasks not finished.
    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// A future pending until its flag is set, noting each poll.
    fn waiter(log: Rc<RefCell<Vec<u64>>>, n: u64, flag: Rc<RefCell<Option<Waker>>>) -> TaskFuture {
        let mut first = true;
        Box::pin(std::future::poll_fn(move |cx| {
            log.borrow_mut().push(n);
            if first {
                first = false;
                *flag.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(())
        }))
    }

    #[test]
    fn woken_tasks_run_in_spawn_order_whatever_order_they_were_woken_in() {
        let mut ex = Executor::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let flags: Vec<_> = (0..3).map(|_| Rc::new(RefCell::new(None))).collect();
        for (n, f) in flags.iter().enumerate() {
            ex.spawn(waiter(log.clone(), n as u64, f.clone()), None);
        }
        for id in ex.take_ready() {
            ex.poll(id);
        }
        assert_eq!(*log.borrow(), [0, 1, 2]);
        for f in flags.iter().rev() {
            if let Some(w) = f.borrow_mut().take() {
                w.wake();
            }
        }
        for id in ex.take_ready() {
            ex.poll(id);
        }
        assert_eq!(*log.borrow(), [0, 1, 2, 0, 1, 2]);
        assert_eq!(ex.len(), 0, "finished tasks are dropped");
    }

    #[test]
    fn a_task_that_is_not_woken_is_not_polled_again() {
        let mut ex = Executor::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let flag = Rc::new(RefCell::new(None));
        ex.spawn(waiter(log.clone(), 7, flag), None);
        for id in ex.take_ready() {
            ex.poll(id);
        }
        assert!(!ex.ready().any());
        assert!(ex.take_ready().is_empty());
        assert_eq!(*log.borrow(), [7]);
    }

    #[test]
    fn a_crashed_process_loses_its_tasks_and_only_its_tasks() {
        let mut ex = Executor::new();
        ex.spawn(Box::pin(std::future::pending()), Some(1));
        ex.spawn(Box::pin(std::future::pending()), Some(2));
        ex.spawn(Box::pin(std::future::pending()), None);
        assert_eq!(ex.remove_owned_by(1).len(), 1);
        assert_eq!(ex.len(), 2);
    }
}
