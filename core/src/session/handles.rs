//! The produce handles of the async adapters (tokio, smol), written once:
//! both hand records to their driver the same way and wait on the same
//! cells ([`WakerCells`](crate::session::WakerCells)); only the channel
//! to the driver differs. The core runs no async code: this is a
//! template the adapter expands into its own crate (its futures are
//! `poll_fn`s over the waker cells, with no executor behind them), like
//! [`client_builder_methods!`](crate::client_builder_methods).

/// Expands to `ProduceFuture` (one record's result) and `FirstError` (a
/// batch's first failure, franz-go's `FirstErrPromise`) in the invoking
/// module.
///
/// `$weak` is the type of a weak handle on the driver's command channel.
/// In scope where it is invoked: `Client` with
/// `fn next_ticket(&self) -> u64`, `fn downgrade(&self) -> $weak`,
/// `fn send_cancel(weak: &$weak, ticket: u64)` and
/// `fn send_produce(&self, Record, fail_when_full: bool, urgent: bool,
/// ticket: u64, Sink)`, where `Sink` is
/// `sansa_core::session::Sink<WakerCells>`.
#[macro_export]
macro_rules! async_produce_handles {
    ($weak:ty) => {
        /// The result of one produced record; resolves when it is
        /// delivered (`Ok` with where it landed) or failed.
        ///
        /// The record is on its way already: the future need not be
        /// polled, and dropping it does not cancel the record (use
        /// [`ProduceFuture::cancel`]).
        #[derive(Debug)]
        #[must_use = "the record is sent anyway; await the future to learn whether it was delivered"]
        pub struct ProduceFuture {
            slot: ::std::sync::Arc<$crate::session::WakerSlot>,
            ticket: u64,
            commands: $weak,
        }

        impl ProduceFuture {
            /// Hands `record` to the driver and returns its future.
            pub(crate) fn start(
                client: &Client,
                record: $crate::producer::Record,
                fail_when_full: bool,
                urgent: bool,
            ) -> Self {
                let slot = ::std::sync::Arc::new($crate::session::WakerSlot::default());
                let ticket = client.next_ticket();
                let sink = $crate::session::Sink::Record(Some(slot.clone()));
                client.send_produce(record, fail_when_full, urgent, ticket, sink);
                ProduceFuture {
                    slot,
                    ticket,
                    commands: client.downgrade(),
                }
            }

            /// Resolves when the client has taken the record into its
            /// buffer: at once unless `max_buffered_records` (or bytes) is
            /// reached, else when space frees up. `Err` if the record
            /// failed before that (no topic, client closed, cancelled).
            /// Awaiting this before producing more bounds the memory a
            /// fast producer uses, as franz-go's blocking `Produce` does.
            pub fn buffered(
                &mut self,
            ) -> impl ::std::future::Future<Output = Result<(), $crate::producer::ProduceError>> + '_
            {
                ::std::future::poll_fn(|cx| self.slot.poll(cx, |s| s.admission()))
            }

            /// Asks the client to cancel the record: it fails with
            /// `ProduceError::Cancelled` as soon as that is safe, or is
            /// delivered anyway if the broker may already have it. Does
            /// nothing once the record is done or the client is closed.
            pub fn cancel(&self) {
                Client::send_cancel(&self.commands, self.ticket);
            }
        }

        impl ::std::future::Future for ProduceFuture {
            type Output = $crate::session::Outcome;

            fn poll(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<Self::Output> {
                self.slot.poll(cx, $crate::session::RecordState::take)
            }
        }

        /// Waits for a batch of records and keeps the first failure (in
        /// completion order), like franz-go's `FirstErrPromise`: produce
        /// many records without a future each, then learn whether all of
        /// them made it. Cloning gives another handle on the same batch.
        #[derive(Debug, Clone, Default)]
        pub struct FirstError {
            batch: ::std::sync::Arc<$crate::session::WakerBatch>,
        }

        impl FirstError {
            /// An empty batch.
            pub fn new() -> Self {
                Self::default()
            }

            /// Counts one more record and names the batch for its sink.
            fn ticket(&self) -> Option<::std::sync::Arc<$crate::session::WakerBatch>> {
                self.batch.add();
                Some(self.batch.clone())
            }

            /// Produces `record` as part of this batch (`Client::produce`
            /// semantics: waits for buffer space inside the client).
            pub fn produce(&self, client: &Client, record: $crate::producer::Record) {
                let sink = $crate::session::Sink::Batch(self.ticket(), None);
                client.send_produce(record, false, false, 0, sink);
            }

            /// Produces `record` as part of this batch, failing at once
            /// with `ProduceError::BufferFull` (`Client::try_produce`
            /// semantics); a record refused this way is not counted.
            /// The record is handed over at the call; the future says
            /// whether it was admitted.
            pub fn try_produce(
                &self,
                client: &Client,
                record: $crate::producer::Record,
            ) -> impl ::std::future::Future<Output = Result<(), $crate::producer::ProduceError>> {
                let admitted = ::std::sync::Arc::new($crate::session::WakerSlot::default());
                let sink = $crate::session::Sink::Batch(self.ticket(), Some(admitted.clone()));
                client.send_produce(record, true, false, 0, sink);
                ::std::future::poll_fn(move |cx| admitted.poll(cx, |s| s.admission()))
            }

            /// Records of the batch not yet delivered or failed.
            pub fn outstanding(&self) -> usize {
                self.batch.outstanding()
            }

            /// The first failure so far, without waiting.
            pub fn first_error(&self) -> Option<$crate::producer::ProduceError> {
                self.batch.first_error()
            }

            /// Waits until every record produced through this batch so
            /// far is delivered or failed, then returns the first
            /// failure, if any.
            pub fn wait(
                &self,
            ) -> impl ::std::future::Future<Output = Result<(), $crate::producer::ProduceError>> + '_
            {
                ::std::future::poll_fn(|cx| self.batch.poll_result(cx))
            }
        }
    };
}

/// Expands to the async adapters' commit calls of a consumer-group member
/// (`commit_uncommitted_offsets`, `commit_records`, `commit_offsets`,
/// `allow_rebalance`) as an `impl Client` block in the invoking module.
///
/// In scope where it is invoked: `Client` with
/// `fn commit(&self, CommitRequest) -> impl Future<Output = CommitResult>`
/// (hands the request to the driver and waits for its answer) and
/// `fn send(&self, Command)`, where `Command::AllowRebalance` exists.
#[macro_export]
macro_rules! async_group_commits {
    () => {
        impl Client {
            /// Commits everything polled and not yet committed, and waits
            /// for the coordinator's answer. Fails with
            /// `CommitFailure::NoGroup` without a consumer group,
            /// `CommitFailure::Refused` when some partitions were not
            /// committed.
            pub fn commit_uncommitted_offsets(
                &self,
            ) -> impl ::std::future::Future<Output = $crate::session::CommitResult> + '_ {
                self.commit($crate::session::CommitRequest::Uncommitted)
            }

            /// Commits past these records (per partition, the offset after
            /// the highest one), forward only, and waits for the answer.
            pub fn commit_records(
                &self,
                records: &[$crate::consumer::ConsumedRecord],
            ) -> impl ::std::future::Future<Output = $crate::session::CommitResult> + '_ {
                self.commit_offsets($crate::group::offsets::positions_after(records), false)
            }

            /// Commits these positions (the next offset to consume per
            /// owned partition); positions at or below what is committed
            /// are left out unless `allow_backwards`.
            pub fn commit_offsets(
                &self,
                offsets: ::std::collections::BTreeMap<
                    $crate::group::TopicPartition,
                    $crate::group::EpochOffset,
                >,
                allow_backwards: bool,
            ) -> impl ::std::future::Future<Output = $crate::session::CommitResult> + '_ {
                self.commit($crate::session::CommitRequest::Offsets {
                    offsets,
                    allow_backwards,
                })
            }

            /// Lets a rebalance step held for the application go on (with
            /// `require_rebalance_ack` or `block_rebalance_on_poll`).
            pub fn allow_rebalance(&self) {
                self.send(Command::AllowRebalance);
            }
        }
    };
}
