//! The blocking client's transaction calls without a broker: the core's
//! answers reach the blocked caller through the driver thread, and a
//! closed client answers rather than leaving the caller blocked.
//! Transactions against brokers are in `tests/tests/eos.rs`.

#![allow(missing_docs)]

use sansa_blocking::{Client, GroupConfig, TxnError};

/// Nothing listens on the discard port: no call here may need a broker.
const NOWHERE: &str = "127.0.0.1:9";

#[test]
fn transaction_calls_answer_through_the_driver_thread() {
    let plain = Client::builder()
        .seed_brokers([NOWHERE])
        .build()
        .expect("client");
    assert_eq!(plain.begin_transaction(), Err(TxnError::NotTransactional));
    plain.close();

    let session = Client::builder()
        .seed_brokers([NOWHERE])
        .transactional_id("t")
        .consumer_group(GroupConfig::new("g"))
        .build_group_transact_session()
        .expect("session");
    assert_eq!(session.end(true), Err(TxnError::NotInTransaction));
    session.begin().expect("begun");
    assert_eq!(session.begin(), Err(TxnError::AlreadyInTransaction));
    session.client().close();
    assert_eq!(
        session.begin(),
        Err(TxnError::Closed),
        "a closed client answers rather than leaving the caller blocked"
    );
}
