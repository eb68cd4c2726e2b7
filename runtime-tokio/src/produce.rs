//! What a produce call gives back: a [`ProduceFuture`] per record, or a
//! [`FirstError`] for a batch of records.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use sansa_core::producer::{ProduceError, RecordMeta};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::client::Client;
use crate::driver::{Command, ProduceCommand};
use crate::Record;

/// A record's result, as the driver reports it.
pub(crate) type Outcome = Result<RecordMeta, ProduceError>;

/// Where the driver sends a record's result.
#[derive(Debug)]
pub(crate) enum Sink {
    /// A [`ProduceFuture`] waits on it; dropping the sender makes the
    /// future resolve with [`ProduceError::Closed`].
    Future(oneshot::Sender<Outcome>),
    /// One record of a [`FirstError`].
    Batch(BatchTicket),
}

impl Sink {
    /// Hands over the result.
    pub(crate) fn complete(self, outcome: Outcome) {
        match self {
            // The user dropped the future: nobody wants the result.
            Sink::Future(tx) => drop(tx.send(outcome)),
            Sink::Batch(ticket) => ticket.complete(outcome),
        }
    }

    /// Forgets the record: it was refused at the door and the caller
    /// learns so from the produce call itself (`try_produce`).
    pub(crate) fn discard(self) {
        match self {
            Sink::Future(tx) => drop(tx),
            Sink::Batch(ticket) => ticket.discard(),
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
    result: oneshot::Receiver<Outcome>,
    admission: Admission,
    ticket: u64,
    commands: mpsc::WeakUnboundedSender<Command>,
}

#[derive(Debug)]
enum Admission {
    Waiting(oneshot::Receiver<Result<(), ProduceError>>),
    Known(Result<(), ProduceError>),
}

impl ProduceFuture {
    /// Sends `record` to the driver and returns its future.
    pub(crate) fn start(
        client: &Client,
        record: Record,
        fail_when_full: bool,
        urgent: bool,
    ) -> ProduceFuture {
        let (result_tx, result) = oneshot::channel();
        let (admitted_tx, admitted) = oneshot::channel();
        let ticket = client.next_ticket();
        client.send_produce(ProduceCommand::new(
            record,
            fail_when_full,
            urgent,
            ticket,
            Some(admitted_tx),
            Sink::Future(result_tx),
        ));
        ProduceFuture {
            result,
            admission: Admission::Waiting(admitted),
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
        if let Admission::Waiting(rx) = &mut self.admission {
            let known = rx.await.unwrap_or(Err(ProduceError::Closed));
            self.admission = Admission::Known(known);
        }
        match &self.admission {
            Admission::Known(r) => r.clone(),
            Admission::Waiting(_) => Err(ProduceError::Closed),
        }
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

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.result)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ProduceError::Closed)))
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
    state: Arc<BatchState>,
}

#[derive(Debug, Default)]
struct BatchState {
    inner: Mutex<BatchInner>,
    done: Notify,
}

#[derive(Debug, Default)]
struct BatchInner {
    outstanding: usize,
    first: Option<ProduceError>,
}

impl BatchState {
    fn lock(&self) -> std::sync::MutexGuard<'_, BatchInner> {
        // Nothing panics while holding the lock; if something did, the
        // counts are still whole numbers worth reading.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One record's place in a [`FirstError`]; counts as failed with
/// [`ProduceError::Closed`] if dropped without a result (the driver is
/// gone), so [`FirstError::wait`] never hangs on a lost record.
#[derive(Debug)]
pub(crate) struct BatchTicket(Option<Arc<BatchState>>);

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
fn finish(state: &BatchState, error: Option<ProduceError>) {
    let mut inner = state.lock();
    inner.outstanding = inner.outstanding.saturating_sub(1);
    if let Some(e) = error {
        inner.first.get_or_insert(e);
    }
    if inner.outstanding == 0 {
        state.done.notify_waiters();
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
        self.state.lock().outstanding += 1;
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
        let sink = Sink::Batch(self.ticket());
        client.send_produce(ProduceCommand::new(record, false, false, 0, None, sink));
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
        client.send_produce(ProduceCommand::new(
            record,
            true,
            false,
            0,
            Some(admitted_tx),
            Sink::Batch(ticket),
        ));
        admitted.await.unwrap_or(Err(ProduceError::Closed))
    }

    /// Records of the batch not yet delivered or failed.
    ///
    /// ```
    /// assert_eq!(sansa_tokio::FirstError::new().outstanding(), 0);
    /// ```
    pub fn outstanding(&self) -> usize {
        self.state.lock().outstanding
    }

    /// The first failure so far, without waiting.
    ///
    /// ```
    /// assert!(sansa_tokio::FirstError::new().first_error().is_none());
    /// ```
    pub fn first_error(&self) -> Option<ProduceError> {
        self.state.lock().first.clone()
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
                let inner = self.state.lock();
                if inner.outstanding == 0 {
                    return inner.first.clone().map_or(Ok(()), Err);
                }
            }
            notified.await;
        }
    }
}
