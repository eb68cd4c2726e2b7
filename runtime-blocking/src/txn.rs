//! Transactions, blocking: `Client::begin_transaction` and
//! `Client::end_transaction` for a transactional producer, and
//! [`GroupTransactSession`] for exactly-once consume-transform-produce,
//! from the core's template (`blocking_transactions!`), as the async
//! adapters get theirs. The transaction manager and the session's
//! abort-on-doubt rules are the core's (`sansa_core::txn`).

use crate::client::{ClientBuilder, Error};
use crate::driver::Command;
use crate::{wait, Client, ProduceHandle};

sansa_core::blocking_transactions!(
    client_example = r#"
```no_run
use sansa_blocking::{Client, Record, TxnEnd};

# fn main() -> Result<(), Box<dyn std::error::Error>> {
let client = Client::builder()
    .seed_brokers(["localhost:9092"])
    .transactional_id("billing-writer")
    .build()?;
client.begin_transaction()?;
let _ = client.produce(Record::new("invoices", "a"));
let _ = client.produce(Record::new("ledger", "a"));
let outcome = client.end_transaction(TxnEnd::Commit)?;
// Both records, or (a record failed) neither.
println!("committed: {}", outcome.committed);
# Ok(())
# }
```
"#,
    session_example = r#"
```no_run
use std::time::Duration;
use sansa_blocking::{Client, GroupConfig, Record};

# fn main() -> Result<(), Box<dyn std::error::Error>> {
let session = Client::builder()
    .seed_brokers(["localhost:9092"])
    .transactional_id("upper-1") // one per instance
    .consumer_group(GroupConfig::new("upper"))
    .build_group_transact_session()?;
session.client().consume_topics(["words"]);
loop {
    session.begin()?;
    for r in session.poll_records(None, Duration::from_secs(1)) {
        let upper = r.value.unwrap_or_default().to_ascii_uppercase();
        let _ = session.produce(Record::new("upper-words", upper).with_partition(r.partition));
    }
    if !session.end(true)? {
        // Aborted: the same input is polled again.
    }
}
# }
```
"#
);

impl ClientBuilder {
    /// Builds a [`GroupTransactSession`]: needs
    /// [`ClientBuilder::transactional_id`] and
    /// [`ClientBuilder::consumer_group`] (else
    /// `ConfigError::OutOfRange` naming `group_transact_session`). The
    /// group's auto-commit and commit-on-revoke are turned off: offsets
    /// commit only in transactions.
    pub fn build_group_transact_session(self) -> Result<GroupTransactSession, Error> {
        let client = self.config(|c| c.group_transact_session(true)).build()?;
        Ok(GroupTransactSession::new(client))
    }
}
