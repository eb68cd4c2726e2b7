//! The produce handles of every adapter, written once: all three hand
//! records to their driver the same way and wait on the same cells
//! ([`WakerSlot`](crate::session::WakerSlot),
//! [`WakerBatch`](crate::session::WakerBatch)); what differs is the
//! channel to the driver and how a caller waits (a future's `poll`, or a
//! thread parked between polls). The core runs no async code and blocks
//! no thread: these are templates the adapter expands into its own crate,
//! like [`client_builder_methods!`](crate::client_builder_methods).
//!
//! Contract of every template here. In scope where it is invoked:
//! `Client` with `fn next_ticket(&self) -> u64`,
//! `fn downgrade(&self) -> $weak`, `fn send_cancel(weak: &$weak, ticket:
//! u64)` and `fn send_produce(&self, Record, fail_when_full: bool,
//! urgent: bool, ticket: u64, sansa_core::session::Sink)`. The blocking templates also
//! need a module `wait` with
//! `fn until<T>(Option<Duration>, impl FnMut(&Context) -> Poll<T>) -> Option<T>`
//! (poll until ready, parked in between, within the timeout).

/// The parts of the produce handles every adapter shares: a record's
/// handle type `$name` (its cell, its ticket, how to start and cancel
/// it) and the batch type `FirstError` (its counting and reading). Not
/// for direct use: see [`async_produce_handles!`](crate::async_produce_handles)
/// and [`blocking_produce_handles!`](crate::blocking_produce_handles).
#[doc(hidden)]
#[macro_export]
macro_rules! __produce_handles {
    ($(#[$meta:meta])* $name:ident, $weak:ty) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name {
            slot: ::std::sync::Arc<$crate::session::WakerSlot>,
            ticket: u64,
            commands: $weak,
        }

        impl $name {
            /// Hands `record` to the driver and returns its handle.
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
                $name {
                    slot,
                    ticket,
                    commands: client.downgrade(),
                }
            }

            /// Asks the client to cancel the record: it fails with
            /// `ProduceError::Cancelled` as soon as that is safe, or is
            /// delivered anyway if the broker may already have it. Does
            /// nothing once the record is done or the client is closed.
            pub fn cancel(&self) {
                Client::send_cancel(&self.commands, self.ticket);
            }
        }

        /// Waits for a batch of records and keeps the first failure (in
        /// completion order), like franz-go's `FirstErrPromise`: produce
        /// many records without a handle each, then learn whether all of
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

            /// Hands `record` over as `try_produce` does and returns the
            /// cell that says whether it was admitted.
            fn start_try(
                &self,
                client: &Client,
                record: $crate::producer::Record,
            ) -> ::std::sync::Arc<$crate::session::WakerSlot> {
                let admitted = ::std::sync::Arc::new($crate::session::WakerSlot::default());
                let sink = $crate::session::Sink::Batch(self.ticket(), Some(admitted.clone()));
                client.send_produce(record, true, false, 0, sink);
                admitted
            }

            /// Records of the batch not yet delivered or failed.
            pub fn outstanding(&self) -> usize {
                self.batch.outstanding()
            }

            /// The first failure so far, without waiting.
            pub fn first_error(&self) -> Option<$crate::producer::ProduceError> {
                self.batch.first_error()
            }
        }
    };
}

/// Expands to `ProduceFuture` (one record's result) and `FirstError` (a
/// batch's first failure, franz-go's `FirstErrPromise`) in the invoking
/// module, as futures. `$weak` is the type of a weak handle on the
/// driver's command channel; see the [module contract](self).
#[macro_export]
macro_rules! async_produce_handles {
    ($weak:ty) => {
        $crate::__produce_handles!(
            /// The result of one produced record; resolves when it is
            /// delivered (`Ok` with where it landed) or failed.
            ///
            /// The record is on its way already: the future need not be
            /// polled, and dropping it does not cancel the record (use
            /// [`ProduceFuture::cancel`]).
            #[must_use = "the record is sent anyway; await the future to learn whether it was delivered"]
            ProduceFuture,
            $weak
        );

        impl ProduceFuture {
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

        impl FirstError {
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
                let admitted = self.start_try(client, record);
                ::std::future::poll_fn(move |cx| admitted.poll(cx, |s| s.admission()))
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

/// Expands to `ProduceHandle` (one record's result) and `FirstError` (a
/// batch's first failure, franz-go's `FirstErrPromise`) in the invoking
/// module, with calls that block (each with a timeout form). `$weak` is
/// the type of a weak handle on the driver's inbox; see the
/// [module contract](self).
#[macro_export]
macro_rules! blocking_produce_handles {
    ($weak:ty) => {
        $crate::__produce_handles!(
            /// The result of one produced record, to wait for. The record
            /// is on its way already: dropping the handle does not cancel
            /// it (use [`ProduceHandle::cancel`]).
            #[must_use = "the record is sent anyway; wait on the handle to learn whether it was delivered"]
            ProduceHandle,
            $weak
        );

        impl ProduceHandle {
            /// Blocks until the record is delivered or failed.
            pub fn wait(self) -> $crate::session::Outcome {
                wait::until(None, |cx| {
                    self.slot.poll(cx, $crate::session::RecordState::take)
                })
                .unwrap_or(Err($crate::producer::ProduceError::Closed))
            }

            /// Blocks at most `timeout` for the result; `None` if it is
            /// not there by then (the handle can be waited on again).
            pub fn wait_timeout(
                &self,
                timeout: ::std::time::Duration,
            ) -> Option<$crate::session::Outcome> {
                wait::until(Some(timeout), |cx| {
                    self.slot.poll(cx, $crate::session::RecordState::take)
                })
            }

            /// Blocks until the client has taken the record into its
            /// buffer (at once unless the buffer is full); `Err` if it
            /// failed before that. Calling this before producing more
            /// bounds a fast producer's memory.
            pub fn buffered(&self) -> Result<(), $crate::producer::ProduceError> {
                wait::until(None, |cx| self.slot.poll(cx, |s| s.admission()))
                    .unwrap_or(Err($crate::producer::ProduceError::Closed))
            }
        }

        impl FirstError {
            /// Produces `record` as part of this batch, failing at once
            /// with `ProduceError::BufferFull`; a refused record is not
            /// counted.
            pub fn try_produce(
                &self,
                client: &Client,
                record: $crate::producer::Record,
            ) -> Result<(), $crate::producer::ProduceError> {
                let admitted = self.start_try(client, record);
                wait::until(None, |cx| admitted.poll(cx, |s| s.admission()))
                    .unwrap_or(Err($crate::producer::ProduceError::Closed))
            }

            /// Blocks until every record produced through this batch so
            /// far is done, then returns the first failure, if any.
            pub fn wait(&self) -> Result<(), $crate::producer::ProduceError> {
                wait::until(None, |cx| self.batch.poll_result(cx)).unwrap_or(Ok(()))
            }

            /// [`FirstError::wait`] for at most `timeout`; `None` if
            /// records are still outstanding then.
            pub fn wait_timeout(
                &self,
                timeout: ::std::time::Duration,
            ) -> Option<Result<(), $crate::producer::ProduceError>> {
                wait::until(Some(timeout), |cx| self.batch.poll_result(cx))
            }
        }
    };
}
