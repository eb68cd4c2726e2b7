//! The transaction calls of the async adapters (tokio, smol), written
//! once, like [`async_produce_handles!`](crate::async_produce_handles):
//! `begin_transaction`, `end_transaction` and
//! `send_offsets_to_transaction` on the client, and the
//! `GroupTransactSession` wrapper (franz-go's). Every decision (when a
//! commit is doubtful and aborts instead, the rewind after an abort, the
//! revoke held until the end) is the core's
//! ([`GroupTxnSession`](crate::txn::GroupTxnSession)); these only carry a
//! command to the driver and await its [`Answer`](super::Answer).

/// Expands to the transaction calls of an async adapter's `Client` (an
/// `impl Client` block) and to `GroupTransactSession` in the invoking
/// module. `client_example` and `session_example` are doc examples
/// written against the adapter's crate, shown on `begin_transaction` and
/// on `GroupTransactSession`.
///
/// In scope where it is invoked: `Client` with `fn send(&self, Command)`
/// (ignores a closed driver), `fn poll_fetches(&self,
/// Option<usize>) -> Vec<FetchedPartition>`, `fn produce(&self, Record)
/// -> ProduceFuture`, `fn close(&self)` and `fn abort(&self)` (futures);
/// and `ProduceFuture`.
#[macro_export]
macro_rules! async_transactions {
    (client_example = $client_example:literal, session_example = $session_example:literal) => {
        impl Client {
            /// Opens a transaction: records produced from now on belong
            /// to it, and are refused outside one. Needs a transactional
            /// id (`ClientBuilder::transactional_id`); the first call also
            /// initializes the producer id with the transaction
            /// coordinator, which fences any older producer of the id.
            ///
            #[doc = $client_example]
            pub fn begin_transaction(&self) -> impl ::std::future::Future<Output = Result<(), $crate::txn::TxnError>> + '_ {
                async move {
                    let (answer, reply) = $crate::session::answer();
                    self.send($crate::session::Command::BeginTransaction(reply));
                    answer.await.unwrap_or(Err($crate::txn::TxnError::Closed))
                }
            }

            /// Ends the open transaction and waits for the coordinator. A
            /// commit flushes everything produced first; it turns into an
            /// abort if a record of the transaction failed (the outcome's
            /// `committed` is then false and its `error` says why). An
            /// abort fails what is still buffered with
            /// `ProduceError::TransactionAborted`. `Err` when no
            /// transaction is open, or the producer failed fatally
            /// (fenced by a newer instance: build a new client).
            pub fn end_transaction(
                &self,
                how: $crate::txn::TxnEnd,
            ) -> impl ::std::future::Future<Output = Result<$crate::txn::TransactionOutcome, $crate::txn::TxnError>> + '_ {
                async move {
                    let (answer, reply) = $crate::session::answer();
                    self.send($crate::session::Command::EndTransaction(how, reply));
                    answer.await.unwrap_or(Err($crate::txn::TxnError::Closed))
                }
            }

            /// Commits `offsets` (the next offset to consume, per
            /// partition) to a consumer group as part of the open
            /// transaction: they commit only if it does. For this
            /// client's own group with `None` (with its generation and
            /// member id, KIP-447), else for the group `group` describes
            /// (a consumer in another client). A
            /// `GroupTransactSession` does this itself at `end`.
            pub fn send_offsets_to_transaction(
                &self,
                offsets: ::std::collections::BTreeMap<
                    $crate::group::TopicPartition,
                    $crate::group::EpochOffset,
                >,
                group: Option<$crate::txn::GroupMetadata>,
            ) -> impl ::std::future::Future<Output = Result<(), $crate::txn::TxnError>> + '_ {
                async move {
                    let (answer, reply) = $crate::session::answer();
                    self.send($crate::session::Command::SendOffsetsToTransaction(
                        offsets, group, reply,
                    ));
                    answer.await.unwrap_or(Err($crate::txn::TxnError::Closed))
                }
            }
        }

        /// Consume, transform, produce and commit the consumed offsets in
        /// one transaction: exactly-once processing from a consumer group
        /// (franz-go's `GroupTransactSession`). Built by
        /// `ClientBuilder::build_group_transact_session` from a builder
        /// with a `transactional_id` and a `consumer_group`.
        ///
        /// The loop is `begin`, `poll_fetches`, `produce` the results,
        /// `end(true)`. `end` commits only when nothing made the commit
        /// doubtful: a rebalance that revoked or lost partitions during
        /// the transaction, a record that failed, a refused offset commit
        /// all turn it into an abort, and after an abort consumption
        /// rewinds to the committed offsets, so the aborted input is
        /// polled and processed again. A revoke met during a transaction
        /// waits for its end. Offsets are never committed outside a
        /// transaction.
        ///
        #[doc = $session_example]
        #[derive(Debug, Clone)]
        pub struct GroupTransactSession {
            client: Client,
        }

        impl GroupTransactSession {
            /// Wraps a client built with `group_transact_session` on.
            pub(crate) fn new(client: Client) -> Self {
                GroupTransactSession { client }
            }

            /// The client underneath: for `consume_topics`, group events,
            /// `flush`.
            pub fn client(&self) -> &Client {
                &self.client
            }

            /// Opens a transaction. Call it before polling: what is
            /// polled in a transaction is what its end commits.
            pub fn begin(&self) -> impl ::std::future::Future<Output = Result<(), $crate::txn::TxnError>> + '_ {
                async move {
                    self.client.begin_transaction().await
                }
            }

            /// Waits for fetched records of the group's partitions and
            /// returns them by partition, at most `max_records` (all
            /// buffered with `None`). Empty when the client is closed,
            /// or when partitions were revoked or lost during the
            /// transaction: the rebalance waits for the transaction's
            /// end (which will abort), so call `end` next.
            ///
            /// Cancel-safe: records handed to a future dropped before it
            /// read them go back to the client and are polled again, and
            /// the transaction's offsets do not count them.
            pub fn poll_fetches(
                &self,
                max_records: Option<usize>,
            ) -> impl ::std::future::Future<Output = Vec<$crate::consumer::FetchedPartition>> + '_ {
                async move {
                    self.client.poll_fetches(max_records).await
                }
            }

            /// Like [`GroupTransactSession::poll_fetches`], flattened to
            /// records in order per partition.
            pub fn poll_records(
                &self,
                max_records: Option<usize>,
            ) -> impl ::std::future::Future<Output = Vec<$crate::consumer::ConsumedRecord>> + '_ {
                async move {
                    $crate::session::into_records(self.poll_fetches(max_records).await)
                }
            }

            /// Produces `record` in the open transaction. A record that
            /// fails makes the transaction abort at `end`.
            pub fn produce(&self, record: $crate::producer::Record) -> ProduceFuture {
                self.client.produce(record)
            }

            /// Ends the transaction: with `try_commit`, commits it with
            /// the offsets of everything polled in it unless a commit is
            /// doubtful, else aborts it. `Ok(true)`: committed;
            /// `Ok(false)`: aborted, and polling starts again from the
            /// committed offsets; `Err`: the producer failed fatally
            /// (fenced, or the commit's answer was lost with the
            /// producer), so build a new session; see
            /// `TransactionOutcome::session_result`.
            pub fn end(&self, try_commit: bool) -> impl ::std::future::Future<Output = Result<bool, $crate::txn::TxnError>> + '_ {
                async move {
                    self.client
                        .end_transaction($crate::txn::TxnEnd::try_commit(try_commit))
                        .await
                        .and_then($crate::txn::TransactionOutcome::session_result)
                }
            }

            /// Aborts the open transaction, if any, then closes the
            /// client (leaving the group).
            pub fn close(&self) -> impl ::std::future::Future<Output = ()> + '_ {
                async move {
                    match self.end(false).await {
                        Ok(_) | Err($crate::txn::TxnError::NotInTransaction) => {}
                        Err(e) => ::tracing::warn!(error = %e, "closing: the abort failed"),
                    }
                    self.client.close().await;
                }
            }
        }
    };
}

/// The blocking adapter's transaction calls, as [`async_transactions!`]
/// gives the async ones: `begin_transaction`, `end_transaction` and
/// `send_offsets_to_transaction` on the client, each blocking for the
/// driver's answer, and `GroupTransactSession` with `poll_fetches(max,
/// timeout)`. `client_example` and `session_example` are doc examples
/// written against the adapter's crate.
///
/// In scope where it is invoked: `Client` with `fn send(&self, Command)`
/// (refuses the command once the driver is gone), `fn
/// poll_fetches(&self, Option<usize>, Duration) -> Vec<FetchedPartition>`,
/// `fn produce(&self, Record) -> ProduceHandle` and `fn close(&self)`;
/// `Command`, `ProduceHandle`, and `wait::answer(Answer<T>,
/// Option<Duration>) -> Option<T>`.
#[macro_export]
macro_rules! blocking_transactions {
    (client_example = $client_example:literal, session_example = $session_example:literal) => {
        impl Client {
            /// Opens a transaction: records produced from now on belong
            /// to it, and are refused outside one. Needs a transactional
            /// id (`ClientBuilder::transactional_id`); the first call also
            /// initializes the producer id with the transaction
            /// coordinator, which fences any older producer of the id.
            ///
            #[doc = $client_example]
            pub fn begin_transaction(&self) -> Result<(), $crate::txn::TxnError> {
                self.ask_txn($crate::session::Command::BeginTransaction)
            }

            /// Ends the open transaction and blocks until the coordinator
            /// answered (as long as the flush of a commit takes: bound it
            /// with `record_delivery_timeout`). A commit turns into an
            /// abort if a record of the transaction failed (`committed` is
            /// then false and `error` says why); an abort fails what is
            /// still buffered with `ProduceError::TransactionAborted`.
            /// `Err` when no transaction is open, or the producer failed
            /// fatally (fenced: build a new client).
            pub fn end_transaction(
                &self,
                how: $crate::txn::TxnEnd,
            ) -> Result<$crate::txn::TransactionOutcome, $crate::txn::TxnError> {
                self.ask_txn(|reply| $crate::session::Command::EndTransaction(how, reply))
            }

            /// Commits `offsets` (the next offset to consume, per
            /// partition) to a consumer group as part of the open
            /// transaction: they commit only if it does. For this
            /// client's own group with `None`, else for the group `group`
            /// describes.
            pub fn send_offsets_to_transaction(
                &self,
                offsets: ::std::collections::BTreeMap<
                    $crate::group::TopicPartition,
                    $crate::group::EpochOffset,
                >,
                group: Option<$crate::txn::GroupMetadata>,
            ) -> Result<(), $crate::txn::TxnError> {
                self.ask_txn(|reply| {
                    $crate::session::Command::SendOffsetsToTransaction(offsets, group, reply)
                })
            }

            /// Sends the command `make` builds around a reply and blocks
            /// for the answer; `TxnError::Closed` if the driver dropped it.
            fn ask_txn<T: Send + 'static>(
                &self,
                make: impl FnOnce(
                    $crate::session::Reply<Result<T, $crate::txn::TxnError>>,
                ) -> Command,
            ) -> Result<T, $crate::txn::TxnError> {
                let (answer, reply) = $crate::session::answer();
                self.send(make(reply));
                wait::answer(answer, None).unwrap_or(Err($crate::txn::TxnError::Closed))
            }
        }

        /// Consume, transform, produce and commit the consumed offsets in
        /// one transaction: exactly-once processing from a consumer group
        /// (franz-go's `GroupTransactSession`), blocking. Built by
        /// `ClientBuilder::build_group_transact_session`; the rules are
        /// `sansa_core::txn::GroupTxnSession`'s: `end(true)` commits only
        /// when nothing made the commit doubtful (a revoke or loss of
        /// partitions during the transaction, a failed record, a refused
        /// offset commit), and after an abort consumption rewinds to the
        /// committed offsets.
        ///
        #[doc = $session_example]
        #[derive(Debug, Clone)]
        pub struct GroupTransactSession {
            client: Client,
        }

        impl GroupTransactSession {
            /// Wraps a client built with `group_transact_session` on.
            pub(crate) fn new(client: Client) -> Self {
                GroupTransactSession { client }
            }

            /// The client underneath: for `consume_topics`, group events,
            /// `flush`.
            pub fn client(&self) -> &Client {
                &self.client
            }

            /// Opens a transaction. Call it before polling: what is
            /// polled in a transaction is what its end commits.
            pub fn begin(&self) -> Result<(), $crate::txn::TxnError> {
                self.client.begin_transaction()
            }

            /// Blocks for fetched records of the group's partitions, at
            /// most `max_records` (all buffered with `None`), for at most
            /// `timeout`. Empty when none came in time, the client is
            /// closed, or partitions were revoked or lost during the
            /// transaction (the rebalance waits for its end: call `end`
            /// next).
            pub fn poll_fetches(
                &self,
                max_records: Option<usize>,
                timeout: ::std::time::Duration,
            ) -> Vec<$crate::consumer::FetchedPartition> {
                self.client.poll_fetches(max_records, timeout)
            }

            /// Like [`GroupTransactSession::poll_fetches`], flattened to
            /// records in order per partition.
            pub fn poll_records(
                &self,
                max_records: Option<usize>,
                timeout: ::std::time::Duration,
            ) -> Vec<$crate::consumer::ConsumedRecord> {
                $crate::session::into_records(self.poll_fetches(max_records, timeout))
            }

            /// Produces `record` in the open transaction. A record that
            /// fails makes the transaction abort at `end`.
            pub fn produce(&self, record: $crate::producer::Record) -> ProduceHandle {
                self.client.produce(record)
            }

            /// Ends the transaction: with `try_commit`, commits it with
            /// the offsets of everything polled in it unless a commit is
            /// doubtful, else aborts it. `Ok(true)`: committed;
            /// `Ok(false)`: aborted, and polling starts again from the
            /// committed offsets; `Err`: the producer failed fatally, so
            /// build a new session (see
            /// `TransactionOutcome::session_result`).
            pub fn end(&self, try_commit: bool) -> Result<bool, $crate::txn::TxnError> {
                self.client
                    .end_transaction($crate::txn::TxnEnd::try_commit(try_commit))
                    .and_then($crate::txn::TransactionOutcome::session_result)
            }

            /// Aborts the open transaction, if any, then closes the
            /// client (leaving the group).
            pub fn close(&self) {
                match self.end(false) {
                    Ok(_) | Err($crate::txn::TxnError::NotInTransaction) => {}
                    Err(e) => ::tracing::warn!(error = %e, "closing: the abort failed"),
                }
                self.client.close();
            }
        }
    };
}
