//! Transactions, blocking: [`Client::begin_transaction`] and
//! [`Client::end_transaction`] for a transactional producer, and
//! [`GroupTransactSession`] for exactly-once consume-transform-produce.
//! The transaction manager and the session's abort-on-doubt rules are the
//! core's (`sansa_core::txn`); these calls only carry a command to the
//! driver thread and block for its answer. The answers travel through a
//! std channel inside the core's [`Reply`], so a driver that is gone
//! (the command dropped) ends the wait with [`TxnError::Closed`].

use std::collections::BTreeMap;
use std::time::Duration;

use sansa_core::consumer::{ConsumedRecord, FetchedPartition};
use sansa_core::group::{EpochOffset, TopicPartition};
use sansa_core::producer::Record;
use sansa_core::session::{self, Reply};
use sansa_core::txn::{GroupMetadata, TransactionOutcome, TxnEnd, TxnError};

use crate::client::{ClientBuilder, Error};
use crate::driver::Command;
use crate::{wait, Client, ProduceHandle};

impl Client {
    /// Opens a transaction: records produced from now on belong to it,
    /// and are refused outside one. Needs a transactional id
    /// ([`ClientBuilder::transactional_id`]); the first call also
    /// initializes the producer id with the transaction coordinator,
    /// which fences any older producer of the id.
    ///
    /// ```no_run
    /// use sansa_blocking::{Client, Record, TxnEnd};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = Client::builder()
    ///     .seed_brokers(["localhost:9092"])
    ///     .transactional_id("billing-writer")
    ///     .build()?;
    /// client.begin_transaction()?;
    /// let _ = client.produce(Record::new("invoices", "a"));
    /// let _ = client.produce(Record::new("ledger", "a"));
    /// let outcome = client.end_transaction(TxnEnd::Commit)?;
    /// // Both records, or (a record failed) neither.
    /// println!("committed: {}", outcome.committed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn begin_transaction(&self) -> Result<(), TxnError> {
        self.ask(Command::BeginTransaction)
    }

    /// Ends the open transaction and blocks until the coordinator
    /// answered (as long as the flush of a commit takes: bound it with
    /// `record_delivery_timeout`). A commit turns into an abort if a
    /// record of the transaction failed (`committed` is then false and
    /// `error` says why); an abort fails what is still buffered with
    /// `ProduceError::TransactionAborted`. `Err` when no transaction is
    /// open, or the producer failed fatally (fenced: build a new client).
    pub fn end_transaction(&self, how: TxnEnd) -> Result<TransactionOutcome, TxnError> {
        self.ask(|reply| Command::EndTransaction(how, reply))
    }

    /// Commits `offsets` (the next offset to consume, per partition) to a
    /// consumer group as part of the open transaction: they commit only if
    /// it does. For this client's own group with `None`, else for the
    /// group `group` describes.
    pub fn send_offsets_to_transaction(
        &self,
        offsets: BTreeMap<TopicPartition, EpochOffset>,
        group: Option<GroupMetadata>,
    ) -> Result<(), TxnError> {
        self.ask(|reply| Command::SendOffsetsToTransaction(offsets, group, reply))
    }

    /// Sends the command `make` builds around a reply and blocks for the
    /// answer; [`TxnError::Closed`] if the driver dropped it unanswered.
    fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<Result<T, TxnError>>) -> Command,
    ) -> Result<T, TxnError> {
        let (answer, reply) = session::answer();
        self.send(make(reply));
        wait::answer(answer, None).unwrap_or(Err(TxnError::Closed))
    }
}

/// Consume, transform, produce and commit the consumed offsets in one
/// transaction: exactly-once processing from a consumer group (franz-go's
/// `GroupTransactSession`), blocking. Built by
/// [`ClientBuilder::build_group_transact_session`]; the rules are
/// `sansa_core::txn::GroupTxnSession`'s: `end(true)` commits only when
/// nothing made the commit doubtful (a revoke or loss of partitions
/// during the transaction, a failed record, a refused offset commit), and
/// after an abort consumption rewinds to the committed offsets.
///
/// ```no_run
/// use std::time::Duration;
/// use sansa_blocking::{Client, GroupConfig, Record};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let session = Client::builder()
///     .seed_brokers(["localhost:9092"])
///     .transactional_id("upper-1") // one per instance
///     .consumer_group(GroupConfig::new("upper"))
///     .build_group_transact_session()?;
/// session.client().consume_topics(["words"]);
/// loop {
///     session.begin()?;
///     for r in session.poll_records(None, Duration::from_secs(1)) {
///         let upper = r.value.unwrap_or_default().to_ascii_uppercase();
///         let _ = session.produce(Record::new("upper-words", upper).with_partition(r.partition));
///     }
///     if !session.end(true)? {
///         // Aborted: the same input is polled again.
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct GroupTransactSession {
    client: Client,
}

impl GroupTransactSession {
    /// The client underneath: for `consume_topics`, group events, `flush`.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens a transaction. Call it before polling: what is polled in a
    /// transaction is what its end commits.
    pub fn begin(&self) -> Result<(), TxnError> {
        self.client.begin_transaction()
    }

    /// Blocks for fetched records of the group's partitions, at most
    /// `max_records` (all buffered with `None`), for at most `timeout`.
    /// Empty when none came in time, the client is closed, or partitions
    /// were revoked or lost during the transaction (the rebalance waits
    /// for its end: call `end` next).
    pub fn poll_fetches(
        &self,
        max_records: Option<usize>,
        timeout: Duration,
    ) -> Vec<FetchedPartition> {
        self.client.poll_fetches(max_records, timeout)
    }

    /// Like [`GroupTransactSession::poll_fetches`], flattened to records
    /// in order per partition.
    pub fn poll_records(
        &self,
        max_records: Option<usize>,
        timeout: Duration,
    ) -> Vec<ConsumedRecord> {
        session::into_records(self.poll_fetches(max_records, timeout))
    }

    /// Produces `record` in the open transaction. A record that fails
    /// makes the transaction abort at `end`.
    pub fn produce(&self, record: Record) -> ProduceHandle {
        self.client.produce(record)
    }

    /// Ends the transaction: with `try_commit`, commits it with the
    /// offsets of everything polled in it unless a commit is doubtful,
    /// else aborts it. `Ok(true)`: committed; `Ok(false)`: aborted, and
    /// polling starts again from the committed offsets; `Err`: the
    /// producer failed fatally, so build a new session (see
    /// `TransactionOutcome::session_result`).
    pub fn end(&self, try_commit: bool) -> Result<bool, TxnError> {
        let how = if try_commit {
            TxnEnd::Commit
        } else {
            TxnEnd::Abort
        };
        self.client
            .end_transaction(how)
            .and_then(TransactionOutcome::session_result)
    }

    /// Aborts the open transaction, if any, then closes the client
    /// (leaving the group).
    pub fn close(&self) {
        match self.end(false) {
            Ok(_) | Err(TxnError::NotInTransaction) => {}
            Err(e) => tracing::warn!(error = %e, "closing: the abort failed"),
        }
        self.client.close();
    }
}

impl ClientBuilder {
    /// Builds a [`GroupTransactSession`]: needs
    /// [`ClientBuilder::transactional_id`] and
    /// [`ClientBuilder::consumer_group`] (else
    /// `ConfigError::OutOfRange` naming `group_transact_session`). The
    /// group's auto-commit and commit-on-revoke are turned off: offsets
    /// commit only in transactions.
    pub fn build_group_transact_session(self) -> Result<GroupTransactSession, Error> {
        let client = self.config(|c| c.group_transact_session(true)).build()?;
        Ok(GroupTransactSession { client })
    }
}
