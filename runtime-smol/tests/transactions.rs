//! The smol client's transaction calls (expanded from the core's
//! `async_transactions!`) without a broker: the core's answers reach the
//! caller through the driver, a closed client answers `Closed`, and a
//! group-transact session with nothing open closes at once.
//! Transactions against brokers are in `tests/tests/eos.rs`.

#![allow(missing_docs)]

use sansa_smol::{Client, GroupConfig, TxnEnd, TxnError};

/// Nothing listens on the discard port: no call here may need a broker.
const NOWHERE: &str = "127.0.0.1:9";

#[test]
fn transaction_calls_answer_through_the_driver() {
    smol::block_on(async {
        let client = Client::builder()
            .seed_brokers([NOWHERE])
            .transactional_id("t")
            .build()
            .expect("client");
        assert_eq!(
            client.end_transaction(TxnEnd::Abort).await,
            Err(TxnError::NotInTransaction)
        );
        client.begin_transaction().await.expect("begun");
        let outcome = client
            .end_transaction(TxnEnd::Commit)
            .await
            .expect("nothing produced: committed without a coordinator");
        assert!(outcome.committed, "{outcome:?}");
        client.close().await;
        assert_eq!(client.begin_transaction().await, Err(TxnError::Closed));

        let session = Client::builder()
            .seed_brokers([NOWHERE])
            .transactional_id("t")
            .consumer_group(GroupConfig::new("g"))
            .build_group_transact_session()
            .expect("session");
        assert_eq!(session.end(true).await, Err(TxnError::NotInTransaction));
        session.close().await;
        assert!(session.client().is_closed());
    });
}
