//! The transaction calls of the tokio client without a broker: what the
//! core answers through the driver reaches the caller (refusals, an empty
//! commit, a closed client), and a group-transact session needs a
//! transactional id and a group. Transactions against brokers are in
//! `tests/tests/eos.rs` and `tests/tests/transactions.rs`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use sansa_tokio::{Client, ConfigError, Error, GroupConfig, TxnEnd, TxnError};

/// Nothing listens on the discard port: no call here may need a broker.
const NOWHERE: &str = "127.0.0.1:9";

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("answered without a broker")
}

#[tokio::test]
async fn transaction_calls_answer_through_the_driver() {
    let plain = Client::builder()
        .seed_brokers([NOWHERE])
        .build()
        .await
        .unwrap();
    assert_eq!(
        bounded(plain.begin_transaction()).await,
        Err(TxnError::NotTransactional)
    );

    let client = Client::builder()
        .seed_brokers([NOWHERE])
        .transactional_id("t")
        .build()
        .await
        .unwrap();
    assert_eq!(
        bounded(client.end_transaction(TxnEnd::Commit)).await,
        Err(TxnError::NotInTransaction)
    );
    bounded(client.begin_transaction()).await.unwrap();
    assert_eq!(
        bounded(client.begin_transaction()).await,
        Err(TxnError::AlreadyInTransaction)
    );
    // Nothing was produced: the commit needs no coordinator.
    let outcome = bounded(client.end_transaction(TxnEnd::Commit))
        .await
        .unwrap();
    assert!(outcome.committed && outcome.error.is_none(), "{outcome:?}");

    bounded(client.close()).await;
    assert_eq!(
        bounded(client.begin_transaction()).await,
        Err(TxnError::Closed),
        "a closed client answers rather than leaving the caller waiting"
    );
}

#[tokio::test]
async fn a_group_transact_session_needs_a_transactional_id_and_a_group() {
    let without_id = Client::builder()
        .seed_brokers([NOWHERE])
        .consumer_group(GroupConfig::new("g"))
        .build_group_transact_session()
        .await;
    let without_group = Client::builder()
        .seed_brokers([NOWHERE])
        .transactional_id("t")
        .build_group_transact_session()
        .await;
    for refused in [without_id, without_group] {
        match refused {
            Err(Error::Config(ConfigError::OutOfRange { setting, .. })) => {
                assert_eq!(setting, "group_transact_session")
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
    let session = Client::builder()
        .seed_brokers([NOWHERE])
        .transactional_id("t")
        .consumer_group(GroupConfig::new("g"))
        .build_group_transact_session()
        .await
        .unwrap();
    assert_eq!(
        bounded(session.end(true)).await,
        Err(TxnError::NotInTransaction)
    );
    // Nothing open: close only closes.
    bounded(session.close()).await;
    assert!(session.client().is_closed());
}
