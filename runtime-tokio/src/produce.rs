//! What a produce call gives back: a [`ProduceFuture`] per record, or a
//! [`FirstError`] for a batch of records.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use sansa_core::producer::{ProduceError, RecordMeta};
use sansa_core::session::{BatchState, Outcome, ProduceWaiter, RecordState};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::client::Client;
use crate::driver::{produce_command, Command};
use crate::Record;

/// What a [`ProduceFuture`] shares with the driver: the core's
/// [`RecordState`] and the waker of the task waiting on it. One
/// allocation and one lock per record, where a pair of channels cost two
/// of each and showed in the profile.
#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    record: RecordState,
    waker: Option<Waker>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // Nothing panics while holding the lock; a poisoned state is still
        // a valid one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records what happened and wakes the future if it waits.
    fn update(&self, f: impl FnOnce(&mut RecordState)) {
        let waker = {
            let mut state = self.lock();
            f(&mut state.record);
            state.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The driver's end of a [`ProduceFuture`]; dropped without a result (the
/// driver is gone), it fails the record with [`ProduceError::Closed`], so
/// no future waits forever.
#[derive(Debug)]
pub(crate) struct SlotHandle(Option<Arc<Slot>>);

impl SlotHandle {
    /// The record is in the buffer.
    fn buffered(&self) {
        if let Some(slot) = &self.0 {
            slot.update(RecordState::buffered);
        }
    }

    /// Hands over the result.
    fn complete(mut self, outcome: Outcome) {
        if let Some(slot) = self.0.take() {
            slot.update(|s| s.complete(outcome));
        }
    }
}

impl Drop for SlotHandle {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.update(RecordState::abandoned);
        }
    }
}

impl ProduceWaiter for Sink {
    fn buffered(&mut self) {
        self.admit(Ok(()));
    }

    fn complete(self, outcome: Outcome) {
        Sink::complete(self, outcome);
    }

    fn refused(self, error: ProduceError) {
        self.refuse(error);
    }
}

/// Where the driver sends a record's result.
#[derive(Debug)]
pub(crate) enum Sink {
    /// A [`ProduceFuture`] waits on it.
    Future(SlotHandle),
    /// One record of a [`FirstError`], and who waits to hear whether it
    /// was buffered (`FirstError::try_produce`).
    Batch(
        BatchTicket,
        Option<oneshot::Sender<Result<(), ProduceError>>>,
    ),
}

impl Sink {
    /// The record is in the buffer (`Ok`), or never will be (`Err`).
    pub(crate) fn admit(&mut self, result: Result<(), ProduceError>) {
        match self {
            // A refusal reaches the future with the outcome, which follows.
            Sink::Future(slot) => {
                if result.is_ok() {
                    slot.buffered();
                }
            }
            Sink::Batch(_, admitted) => {
                if let Some(tx) = admitted.take() {
                    let _ = tx.send(result);
                }
            }
        }
    }

    /// Hands over the result.
    pub(crate) fn complete(self, outcome: Outcome) {
        match self {
            // Admits too, under the same lock.
            Sink::Future(slot) => slot.complete(outcome),
            Sink::Batch(ticket, admitted) => {
                if let Some(tx) = admitted {
                    let _ = tx.send(outcome.as_ref().map(|_| ()).map_err(Clone::clone));
                }
                ticket.complete(outcome);
            }
        }
    }

    /// A `try_produce` record was refused before the core took it: the
    /// refusal is reported by the call itself (its admission), and the
    /// record does not count in a batch.
    pub(crate) fn refuse(mut self, error: ProduceError) {
        self.admit(Err(error.clone()));
        match self {
            Sink::Future(slot) => slot.complete(Err(error)),
            Sink::Batch(ticket, _) => ticket.discard(),
        }
    }
}

/// The result of one produced record; resolves when the record is
/// delivered (`Ok` with where it landed) or failed.
///
/// The record is already on its way when the future is created: it need
/// not be polled, and dropping it does not cancel the record (use
/// [`ProduceFuture::cancel`] for that).
///
/// ```no_run
/// # async fn f(client: sansa_tokio::Client) -> Result<(), sansa_tokio::ProduceError> {
/// use sansa_tokio::Record;
///
/// let delivery = client.produce(Record::new("events", "hello"));
/// let meta = delivery.await?;
/// assert_eq!(&*meta.topic, "events");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "the record is sent anyway; await the future to learn whether it was delivered"]
pub struct ProduceFuture {
    slot: Arc<Slot>,
    ticket: u64,
    commands: mpsc::WeakUnboundedSender<Command>,
}

impl ProduceFuture {
    /// Sends `record` to the driver and returns its future.
    pub(crate) fn start(
        client: &Client,
        record: Record,
        fail_when_full: bool,
        urgent: bool,
    ) -> ProduceFuture {
        let slot = Arc::new(Slot::default());
        let ticket = client.next_ticket();
        client.send_produce(produce_command(
            record,
            fail_when_full,
            urgent,
            ticket,
            Sink::Future(SlotHandle(Some(slot.clone()))),
        ));
        ProduceFuture {
            slot,
            ticket,
            commands: client.downgrade(),
        }
    }

    /// Resolves when the client has taken the record into its buffer:
    /// at once unless `max_buffered_records` (or bytes) is reached, else
    /// when space frees up. `Err` if the record failed before that (no
    /// topic, client closed, cancelled).
    ///
    /// Awaiting this before producing more bounds the memory a fast
    /// producer uses, as franz-go's blocking `Produce` does.
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) -> Result<(), sansa_tokio::ProduceError> {
    /// use sansa_tokio::Record;
    ///
    /// let mut deliveries = Vec::new();
    /// for i in 0..100_000 {
    ///     let mut delivery = client.produce(Record::new("events", format!("{i}")));
    ///     delivery.buffered().await?; // wait here while the buffer is full
    ///     deliveries.push(delivery);
    /// }
    /// for d in deliveries {
    ///     d.await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn buffered(&mut self) -> Result<(), ProduceError> {
        std::future::poll_fn(|cx| {
            let mut state = self.slot.lock();
            match state.record.admission() {
                Some(admission) => Poll::Ready(admission),
                None => {
                    register(&mut state.waker, cx);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Asks the client to cancel the record: it fails with
    /// [`ProduceError::Cancelled`] as soon as that is safe, or is delivered
    /// anyway if the broker may already have it. Does nothing once the
    /// record is done or the client is closed.
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) {
    /// use sansa_tokio::{ProduceError, Record};
    ///
    /// let delivery = client.produce(Record::new("events", "never mind"));
    /// delivery.cancel();
    /// match delivery.await {
    ///     Err(ProduceError::Cancelled) => {}
    ///     other => println!("too late to cancel: {other:?}"),
    /// }
    /// # }
    /// ```
    pub fn cancel(&self) {
        if let Some(tx) = self.commands.upgrade() {
            let _ = tx.send(Command::Cancel(self.ticket));
        }
    }
}

impl Future for ProduceFuture {
    type Output = Result<RecordMeta, ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.lock();
        if let Some(outcome) = state.record.take() {
            return Poll::Ready(outcome);
        }
        register(&mut state.waker, cx);
        Poll::Pending
    }
}

/// Keeps the waker of the latest poll, cloning only when it changed.
fn register(waker: &mut Option<Waker>, cx: &Context<'_>) {
    match waker {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *waker = Some(cx.waker().clone()),
    }
}

/// Waits for a batch of records and keeps the first failure, like
/// franz-go's `FirstErrPromise`: produce many records without a future
/// each, then learn whether all of them made it.
///
/// "First" is in completion order. Cloning gives another handle on the
/// same batch.
///
/// ```no_run
/// # async fn f(client: sansa_tokio::Client) -> Result<(), sansa_tokio::ProduceError> {
/// use sansa_tokio::{FirstError, Record};
///
/// let batch = FirstError::new();
/// for i in 0..1000 {
///     batch.produce(&client, Record::new("events", format!("{i}")));
/// }
/// batch.wait().await?; // every record delivered, or the first error
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct FirstError {
    state: Arc<Batch>,
}

#[derive(Debug, Default)]
struct Batch {
    inner: Mutex<BatchState>,
    done: Notify,
}

impl Batch {
    fn lock(&self) -> std::sync::MutexGuard<'_, BatchState> {
        // Nothing panics while holding the lock; if something did, the
        // counts are still whole numbers worth reading.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One record's place in a [`FirstError`]; counts as failed with
/// [`ProduceError::Closed`] if dropped without a result (the driver is
/// gone), so [`FirstError::wait`] never hangs on a lost record.
#[derive(Debug)]
pub(crate) struct BatchTicket(Option<Arc<Batch>>);

impl BatchTicket {
    fn complete(mut self, outcome: Outcome) {
        if let Some(state) = self.0.take() {
            finish(&state, outcome.err());
        }
    }

    fn discard(mut self) {
        if let Some(state) = self.0.take() {
            finish(&state, None);
        }
    }
}

impl Drop for BatchTicket {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            finish(&state, Some(ProduceError::Closed));
        }
    }
}

/// One record of the batch is done; `error` is why it failed, if it did.
fn finish(batch: &Batch, error: Option<ProduceError>) {
    if batch.lock().finish(error) {
        batch.done.notify_waiters();
    }
}

impl FirstError {
    /// An empty batch.
    ///
    /// ```
    /// let batch = sansa_tokio::FirstError::new();
    /// assert_eq!(batch.outstanding(), 0);
    /// assert_eq!(batch.first_error(), None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn ticket(&self) -> BatchTicket {
        self.state.lock().add();
        BatchTicket(Some(self.state.clone()))
    }

    /// Produces `record` as part of this batch ([`Client::produce`]
    /// semantics: waits for buffer space inside the client).
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) {
    /// let batch = sansa_tokio::FirstError::new();
    /// batch.produce(&client, sansa_tokio::Record::new("events", "a"));
    /// assert_eq!(batch.outstanding(), 1);
    /// # }
    /// ```
    pub fn produce(&self, client: &Client, record: Record) {
        let sink = Sink::Batch(self.ticket(), None);
        client.send_produce(produce_command(record, false, false, 0, sink));
    }

    /// Produces `record` as part of this batch, failing at once with
    /// [`ProduceError::BufferFull`] ([`Client::try_produce`] semantics); a
    /// record refused this way is not counted in the batch.
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) {
    /// use sansa_tokio::{FirstError, ProduceError, Record};
    ///
    /// let batch = FirstError::new();
    /// if let Err(ProduceError::BufferFull) = batch.try_produce(&client, Record::new("t", "v")).await {
    ///     // shed load
    /// }
    /// # }
    /// ```
    pub async fn try_produce(&self, client: &Client, record: Record) -> Result<(), ProduceError> {
        let (admitted_tx, admitted) = oneshot::channel();
        let ticket = self.ticket();
        client.send_produce(produce_command(
            record,
            true,
            false,
            0,
            Sink::Batch(ticket, Some(admitted_tx)),
        ));
        admitted.await.unwrap_or(Err(ProduceError::Closed))
    }

    /// Records of the batch not yet delivered or failed.
    ///
    /// ```
    /// assert_eq!(sansa_tokio::FirstError::new().outstanding(), 0);
    /// ```
    pub fn outstanding(&self) -> usize {
        self.state.lock().outstanding()
    }

    /// The first failure so far, without waiting.
    ///
    /// ```
    /// assert!(sansa_tokio::FirstError::new().first_error().is_none());
    /// ```
    pub fn first_error(&self) -> Option<ProduceError> {
        self.state.lock().first_error()
    }

    /// Waits until every record produced through this batch so far is
    /// delivered or failed, then returns the first failure, if any.
    ///
    /// ```no_run
    /// # async fn f(client: sansa_tokio::Client) {
    /// let batch = sansa_tokio::FirstError::new();
    /// batch.produce(&client, sansa_tokio::Record::new("events", "a"));
    /// if let Err(e) = batch.wait().await {
    ///     eprintln!("at least one record failed: {e}");
    /// }
    /// # }
    /// ```
    pub async fn wait(&self) -> Result<(), ProduceError> {
        loop {
            let notified = self.state.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                if let Some(result) = self.state.lock().result() {
                    return result;
                }
            }
            notified.await;
        }
    }
}
