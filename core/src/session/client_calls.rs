//! The produce, flush, close and poll calls of the async adapters' `Client`
//! (tokio, smol), written once: both hand the same commands to their
//! driver and await the same cells and [`Answer`](crate::session::Answer)s;
//! only the channel behind `send` differs. A template like
//! [`client_consume_methods!`](crate::client_consume_methods), invoked
//! inside the adapter's `impl Client`: the core awaits nothing itself.

/// Expands to `produce`, `produce_sync`, `try_produce`, `flush`, `close`,
/// `poll_fetches` and `poll_records`, inside an `impl Client` block.
///
/// In scope where it is invoked: `ProduceFuture` (from
/// [`async_produce_handles!`](crate::async_produce_handles)) and, on
/// `Client`, `fn send(&self, Command)`, which drops the command (and so
/// answers `None`) once the driver is gone. An adapter may add doc
/// attributes (examples) to `produce`, `try_produce`, `flush` and `close`:
/// `async_client_calls!(produce: {..} try_produce: {..} flush: {..}
/// close: {..})`.
#[macro_export]
macro_rules! async_client_calls {
    () => {
        $crate::async_client_calls!(produce: {} try_produce: {} flush: {} close: {});
    };
    (
        produce: { $(#[$produce:meta])* }
        try_produce: { $(#[$try_produce:meta])* }
        flush: { $(#[$flush:meta])* }
        close: { $(#[$close:meta])* }
    ) => {
        /// Produces `record`; the future resolves when it is delivered or
        /// failed.
        ///
        /// The record is handed to the client before this returns, so
        /// records keep the order of the calls whether or not, and in
        /// whatever order, their futures are awaited. When
        /// `max_buffered_records` is reached the record waits inside the
        /// client for space (see [`ProduceFuture::buffered`] to wait for
        /// that before producing more). A record naming no topic goes to
        /// the default produce topic.
        $(#[$produce])*
        pub fn produce(&self, record: $crate::producer::Record) -> ProduceFuture {
            ProduceFuture::start(self, record, false, false)
        }

        /// Produces `record` without lingering and waits for the result:
        /// one record, sent as soon as the connection allows.
        pub fn produce_sync(
            &self,
            record: $crate::producer::Record,
        ) -> impl ::std::future::Future<Output = Result<$crate::producer::RecordMeta, $crate::producer::ProduceError>> + '_ {
            async move {
                ProduceFuture::start(self, record, false, true).await
            }
        }

        /// Produces `record` unless the buffer is full: fails with
        /// `ProduceError::BufferFull` at once (after one round trip to
        /// the driver, never waiting on the network), else returns the
        /// record's future.
        $(#[$try_produce])*
        pub fn try_produce(
            &self,
            record: $crate::producer::Record,
        ) -> impl ::std::future::Future<Output = Result<ProduceFuture, $crate::producer::ProduceError>> + '_ {
            async move {
                let mut delivery = ProduceFuture::start(self, record, true, false);
                delivery.buffered().await?;
                Ok(delivery)
            }
        }

        /// Sends everything buffered without waiting for linger, and
        /// waits until every record produced before the call is
        /// delivered or failed. With `manual_flushing`, this is what
        /// sends records at all.
        $(#[$flush])*
        pub fn flush(&self) -> impl ::std::future::Future<Output = ()> + '_ {
            async move {
                let (done, reply) = $crate::session::answer();
                // A closed driver drops the reply: nothing is left to flush.
                self.send($crate::session::Command::Flush(reply));
                let _ = done.await;
            }
        }

        /// Flushes, then closes every connection and stops the driver.
        /// Records produced after the close began fail with
        /// `ProduceError::Closed`, as does any call on any clone of this
        /// handle afterwards. Closing twice is harmless.
        ///
        /// This waits as long as the flush does: with unlimited retries
        /// (the default) and no broker reachable, that is until one is.
        /// Set `record_delivery_timeout`, or stop awaiting after a
        /// timeout, to bound it; the close still completes in the
        /// background.
        $(#[$close])*
        pub fn close(&self) -> impl ::std::future::Future<Output = ()> + '_ {
            async move {
                let (done, reply) = $crate::session::answer();
                self.send($crate::session::Command::Close(Some(reply)));
                let _ = done.await;
            }
        }

        /// Waits for fetched records and returns them by partition, at
        /// most `max_records` (all buffered with `None`); per-partition
        /// errors come in the same list. Empty only when the client is
        /// closed, or (in a `GroupTransactSession`) when partitions went
        /// away during the transaction, which must end.
        ///
        /// Cancel-safe: records handed to a future dropped before it read
        /// them (the losing branch of a `select!`) go back to the client
        /// and come first at the next poll; the group does not count them
        /// as polled.
        pub fn poll_fetches(
            &self,
            max_records: Option<usize>,
        ) -> impl ::std::future::Future<Output = Vec<$crate::consumer::FetchedPartition>> + '_ {
            async move {
                let (fetched, reply) = $crate::session::answer();
                self.send($crate::session::Command::PollFetches(max_records, reply));
                fetched.await.unwrap_or_default()
            }
        }

        /// Like [`Client::poll_fetches`], flattened to records in order
        /// per partition (partition errors are logged and skipped; use
        /// `poll_fetches` to see them).
        pub fn poll_records(
            &self,
            max_records: Option<usize>,
        ) -> impl ::std::future::Future<Output = Vec<$crate::consumer::ConsumedRecord>> + '_ {
            async move {
                $crate::session::into_records(self.poll_fetches(max_records).await)
            }
        }
    };
}
