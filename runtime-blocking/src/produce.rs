//! What a produce call gives back: a [`ProduceHandle`] per record, or a
//! [`FirstError`] for a batch. The states are the core's
//! ([`RecordState`], [`BatchState`]); what is here is how a thread
//! blocks on them.

use std::sync::Arc;
use std::time::Duration;

use sansa_core::producer::{ProduceError, Record, RecordMeta};
use sansa_core::session::{self, BatchState, Cells, RecordState};

use crate::client::{Client, WeakClient};
use crate::driver::Command;
use crate::wait::{answer, RecordSlot, Reply, Watched};

/// The blocking cells behind a [`Sink`]: a watched [`RecordState`] per
/// record, a watched [`BatchState`] per [`FirstError`], a [`Reply`] for
/// a batch admission.
#[derive(Debug)]
pub(crate) struct BlockingCells;

impl Cells for BlockingCells {
    type Record = Watched<RecordState>;
    type Batch = Watched<BatchState>;
    type Admission = Reply<Result<(), ProduceError>>;
    type Wake = RecordSlot;

    /// Only a caller waiting at the change needs waking: one that comes
    /// later sees the change.
    fn update(record: &RecordSlot, f: impl FnOnce(&mut RecordState)) -> Option<RecordSlot> {
        record.with(f);
        record.has_waiters().then(|| record.clone())
    }

    fn wake(wake: RecordSlot) {
        wake.notify();
    }

    fn finish(batch: &Self::Batch, error: Option<ProduceError>) {
        batch.update(|b| b.finish(error));
    }

    fn admit(reply: Self::Admission, result: Result<(), ProduceError>) {
        let _ = reply.send(result);
    }
}

/// Where the driver sends a record's result.
pub(crate) type Sink = session::Sink<BlockingCells>;

/// The result of one produced record, to wait for. The record is on its
/// way already: dropping the handle does not cancel it (use
/// [`ProduceHandle::cancel`]).
#[derive(Debug)]
#[must_use = "the record is sent anyway; wait on the handle to learn whether it was delivered"]
pub struct ProduceHandle {
    slot: RecordSlot,
    ticket: u64,
    client: WeakClient,
}

impl ProduceHandle {
    pub(crate) fn start(
        client: &Client,
        record: Record,
        fail_when_full: bool,
        urgent: bool,
    ) -> Self {
        let slot = RecordSlot::default();
        let ticket = client.next_ticket();
        let sink = Sink::Record(Some(slot.clone()));
        client.send_produce(record, fail_when_full, urgent, ticket, sink);
        ProduceHandle {
            slot,
            ticket,
            client: client.downgrade(),
        }
    }

    /// Blocks until the record is delivered or failed.
    pub fn wait(self) -> Result<RecordMeta, ProduceError> {
        self.slot
            .wait(None, RecordState::take)
            .unwrap_or(Err(ProduceError::Closed))
    }

    /// Blocks at most `timeout` for the result; `None` if it is not there
    /// by then (the handle can be waited on again).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<RecordMeta, ProduceError>> {
        self.slot.wait(Some(timeout), RecordState::take)
    }

    /// Blocks until the client has taken the record into its buffer (at
    /// once unless the buffer is full); `Err` if it failed before that.
    /// Calling this before producing more bounds a fast producer's
    /// memory.
    pub fn buffered(&self) -> Result<(), ProduceError> {
        self.slot
            .wait(None, |s| s.admission())
            .unwrap_or(Err(ProduceError::Closed))
    }

    /// Asks the client to cancel the record: it fails with
    /// [`ProduceError::Cancelled`] as soon as that is safe, or is
    /// delivered anyway if the broker may already have it.
    pub fn cancel(&self) {
        self.client.send(Command::Cancel(self.ticket));
    }
}

/// Waits for a batch of records and keeps the first failure (in
/// completion order), like franz-go's `FirstErrPromise`. Cloning gives
/// another handle on the same batch.
///
/// ```no_run
/// # fn f(client: sansa_blocking::Client) -> Result<(), sansa_blocking::ProduceError> {
/// use sansa_blocking::{FirstError, Record};
///
/// let batch = FirstError::new();
/// for i in 0..1000 {
///     batch.produce(&client, Record::new("events", format!("{i}")));
/// }
/// batch.wait()?; // every record delivered, or the first error
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct FirstError {
    batch: Arc<Watched<BatchState>>,
}

impl FirstError {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn ticket(&self) -> Option<Arc<Watched<BatchState>>> {
        self.batch.with(BatchState::add);
        Some(self.batch.clone())
    }

    /// Produces `record` as part of this batch (`Client::produce`
    /// semantics: waits for buffer space inside the client).
    pub fn produce(&self, client: &Client, record: Record) {
        let sink = Sink::Batch(self.ticket(), None);
        client.send_produce(record, false, false, 0, sink);
    }

    /// Produces `record` as part of this batch, failing at once with
    /// [`ProduceError::BufferFull`]; a refused record is not counted.
    pub fn try_produce(&self, client: &Client, record: Record) -> Result<(), ProduceError> {
        let (admitted, reply) = answer();
        let sink = Sink::Batch(self.ticket(), Some(reply));
        client.send_produce(record, true, false, 0, sink);
        admitted.wait(None).unwrap_or(Err(ProduceError::Closed))
    }

    /// Records of the batch not yet delivered or failed.
    pub fn outstanding(&self) -> usize {
        self.batch.with(|b| b.outstanding())
    }

    /// The first failure so far, without waiting.
    pub fn first_error(&self) -> Option<ProduceError> {
        self.batch.with(|b| b.first_error())
    }

    /// Blocks until every record produced through this batch so far is
    /// done, then returns the first failure, if any.
    pub fn wait(&self) -> Result<(), ProduceError> {
        self.batch.wait(None, |b| b.result()).unwrap_or(Ok(()))
    }

    /// [`FirstError::wait`] for at most `timeout`; `None` if records are
    /// still outstanding then.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<(), ProduceError>> {
        self.batch.wait(Some(timeout), |b| b.result())
    }
}
