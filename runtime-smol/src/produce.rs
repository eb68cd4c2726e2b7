//! What a produce call gives back: a [`ProduceFuture`] per record, or a
//! [`FirstError`] for a batch. The cells are the core's
//! ([`WakerCells`]); what is here is handing records to the driver and
//! awaiting the cells.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_channel::WeakSender;
use sansa_core::producer::{ProduceError, Record, RecordMeta};
use sansa_core::session::{self, RecordState, WakerBatch, WakerCells, WakerSlot};

use crate::client::Client;
use crate::driver::Command;

/// Where the driver sends a record's result.
pub(crate) type Sink = session::Sink<WakerCells>;

/// The result of one produced record; resolves when it is delivered
/// (`Ok` with where it landed) or failed. The record is on its way
/// already: the future need not be polled, and dropping it does not
/// cancel the record (use [`ProduceFuture::cancel`]).
#[derive(Debug)]
#[must_use = "the record is sent anyway; await the future to learn whether it was delivered"]
pub struct ProduceFuture {
    slot: Arc<WakerSlot>,
    ticket: u64,
    commands: WeakSender<Command>,
}

impl ProduceFuture {
    pub(crate) fn start(
        client: &Client,
        record: Record,
        fail_when_full: bool,
        urgent: bool,
    ) -> Self {
        let slot = Arc::new(WakerSlot::default());
        let ticket = client.next_ticket();
        let sink = Sink::Record(Some(slot.clone()));
        client.send_produce(record, fail_when_full, urgent, ticket, sink);
        ProduceFuture {
            slot,
            ticket,
            commands: client.downgrade(),
        }
    }

    /// Resolves when the client has taken the record into its buffer: at
    /// once unless `max_buffered_records` (or bytes) is reached, else
    /// when space frees up. `Err` if the record failed before that.
    pub async fn buffered(&mut self) -> Result<(), ProduceError> {
        std::future::poll_fn(|cx| self.slot.poll(cx, |s| s.admission())).await
    }

    /// Asks the client to cancel the record: it fails with
    /// [`ProduceError::Cancelled`] as soon as that is safe, or is
    /// delivered anyway if the broker may already have it.
    pub fn cancel(&self) {
        if let Some(tx) = self.commands.upgrade() {
            let _ = tx.try_send(Command::Cancel(self.ticket));
        }
    }
}

impl Future for ProduceFuture {
    type Output = Result<RecordMeta, ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.slot.poll(cx, RecordState::take)
    }
}

/// Waits for a batch of records and keeps the first failure (in
/// completion order), like franz-go's `FirstErrPromise`. Cloning gives
/// another handle on the same batch.
///
/// ```no_run
/// # async fn f(client: sansa_smol::Client) -> Result<(), sansa_smol::ProduceError> {
/// use sansa_smol::{FirstError, Record};
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
    batch: Arc<WakerBatch>,
}

impl FirstError {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn ticket(&self) -> Option<Arc<WakerBatch>> {
        self.batch.add();
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
    pub async fn try_produce(&self, client: &Client, record: Record) -> Result<(), ProduceError> {
        let admitted = Arc::new(WakerSlot::default());
        let sink = Sink::Batch(self.ticket(), Some(admitted.clone()));
        client.send_produce(record, true, false, 0, sink);
        std::future::poll_fn(|cx| admitted.poll(cx, |s| s.admission())).await
    }

    /// Records of the batch not yet delivered or failed.
    pub fn outstanding(&self) -> usize {
        self.batch.outstanding()
    }

    /// The first failure so far, without waiting.
    pub fn first_error(&self) -> Option<ProduceError> {
        self.batch.first_error()
    }

    /// Waits until every record produced through this batch so far is
    /// done, then returns the first failure, if any.
    pub async fn wait(&self) -> Result<(), ProduceError> {
        std::future::poll_fn(|cx| self.batch.poll_result(cx)).await
    }
}
