//! How the real peers fence a transactional producer, beyond the
//! pipelines of `eos.rs`: by the transaction timeout, and by a newer
//! instance of the same transactional id; and whether offsets sent in an
//! aborted transaction stay out of the group.
//!
//! Kafka's behaviour, which each test states and each peer is held to
//! (where a peer differs, the test asserts the difference, names it as a
//! known broker defect, and fails the day the peer is fixed, saying to
//! tighten it):
//! - A transaction older than its timeout is aborted by the coordinator,
//!   with the producer's epoch bumped and no last epoch kept
//!   (`TransactionMetadata.prepareFenceProducerEpoch`): the producer's next
//!   produce to a partition of the transaction is refused
//!   (INVALID_PRODUCER_EPOCH, abortable), its end is fenced, and nothing of
//!   the transaction becomes visible to read_committed.
//! - InitProducerId from a newer instance bumps the epoch and aborts what
//!   the older one left open; the older one is fenced from then on.
//! - Offsets sent in a transaction commit only with it, and only for a
//!   member of the group's generation (KIP-447).
//! - InitProducerId naming an epoch a newer instance superseded is refused
//!   PRODUCER_FENCED (KIP-360).
//!
//! Real-peer tests run one at a time (`RUST_TEST_THREADS=1`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use sansa_core::group::EpochOffset;
use sansa_core::producer::partitioner::ManualPartitioner;
use sansa_core::protocol::ErrorCode;
use sansa_tests::peers::{librdkafka, raw};
use sansa_tests::peers::{KafkaPeer, MockCluster, NoidaDb, Tansu};
use sansa_tokio::{
    Client, GroupMetadata, ProduceError, Record, TransactionOutcome, TxnEnd, TxnError,
};

const TOPIC: &str = "txn-peers";
const WAIT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A transactional client of `peer` writing to partition 0 of [`TOPIC`].
async fn producer(peer: &dyn KafkaPeer, id: &str, timeout: Duration) -> Client {
    Client::builder()
        .seed_brokers(peer.bootstrap().split(','))
        .transactional_id(id)
        .transaction_timeout(timeout)
        .partitioner(ManualPartitioner)
        .linger(Duration::from_millis(2))
        .build()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", peer.name()))
}

/// Produces `value` to partition 0 and waits for the broker's answer.
async fn produce(client: &Client, value: &str) -> Result<(), ProduceError> {
    let delivery = client.produce(Record::new(TOPIC, value.to_owned()).with_partition(0));
    tokio::time::timeout(WAIT, delivery)
        .await
        .unwrap_or_else(|_| panic!("no answer to {value} within {WAIT:?}"))
        .map(|_| ())
}

/// Ends the open transaction within [`WAIT`].
async fn end(client: &Client, how: TxnEnd) -> Result<TransactionOutcome, TxnError> {
    tokio::time::timeout(WAIT, client.end_transaction(how))
        .await
        .unwrap_or_else(|_| panic!("the end did not come within {WAIT:?}"))
}

/// Whether an end committed.
fn committed(end: &Result<TransactionOutcome, TxnError>) -> bool {
    end.as_ref().is_ok_and(|o| o.committed)
}

/// What a librdkafka read_committed consumer sees of [`TOPIC`], in offset
/// order, once `count` records arrived and then nothing for two seconds.
fn read_committed(peer: &dyn KafkaPeer, count: usize) -> Vec<String> {
    let mut read = librdkafka::consume_until_quiet_with(
        &peer.bootstrap(),
        TOPIC,
        count,
        Duration::from_secs(2),
        WAIT,
        &[("isolation.level", "read_committed")],
    )
    .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
    read.sort_by_key(|c| c.offset);
    read.iter()
        .map(|c| String::from_utf8_lossy(&c.value).into_owned())
        .collect()
}

fn topic(peer: &dyn KafkaPeer, replication: i32) {
    peer.create_topic(TOPIC, 1, replication)
        .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
}

// ----------------------------------------------------------------------
// The transaction timeout
// ----------------------------------------------------------------------

/// What became of a transaction held open past its timeout.
#[derive(Debug)]
struct HeldPastTimeout {
    /// A produce to the transaction's partition after the timeout.
    late_produce: Result<(), ProduceError>,
    /// A commit (an abort if the late produce failed).
    end: Result<TransactionOutcome, TxnError>,
    /// What read_committed then sees.
    visible: Vec<String>,
}

/// Transaction timeout asked for: short, so a broker that enforces it
/// does so within the hold.
const SHORT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the transaction is held: past the timeout and past Kafka's
/// check of it, every 10 s by default
/// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
const HOLD: Duration = Duration::from_secs(12);

/// Begins a transaction with a one-second timeout, writes a record, holds
/// the transaction five seconds, writes another to the same partition and
/// commits (or aborts, if that write failed).
fn hold_a_transaction_past_its_timeout(peer: &dyn KafkaPeer) -> HeldPastTimeout {
    let (late_produce, end) = runtime().block_on(async {
        let client = producer(peer, "held", SHORT_TIMEOUT).await;
        client.begin_transaction().await.unwrap();
        produce(&client, "early").await.unwrap();
        tokio::time::sleep(HOLD).await;
        let late = produce(&client, "late").await;
        let how = if late.is_ok() {
            TxnEnd::Commit
        } else {
            TxnEnd::Abort
        };
        let ended = end(&client, how).await;
        client.close().await;
        (late, ended)
    });
    let visible = read_committed(peer, usize::from(committed(&end)) * 2);
    HeldPastTimeout {
        late_produce,
        end,
        visible,
    }
}

/// Kafka's outcome, or with `known_defect` a peer that never times a
/// transaction out, where the held transaction commits whole (failing,
/// and saying to tighten the test, the day the peer is fixed).
fn assert_held_past_timeout(
    peer: &dyn KafkaPeer,
    held: &HeldPastTimeout,
    known_defect: Option<&str>,
) {
    let name = peer.name();
    let Some(defect) = known_defect else {
        assert!(
            held.late_produce.is_err(),
            "{name}: a produce after the timeout was accepted: {held:?}"
        );
        assert!(!committed(&held.end), "{name}: {held:?}");
        assert!(held.visible.is_empty(), "{name}: {held:?}");
        return;
    };
    let expected = vec!["early".to_owned(), "late".to_owned()];
    assert!(
        held.late_produce.is_ok() && committed(&held.end) && held.visible == expected,
        "{name} now times transactions out (known defect was: {defect}); \
         tighten this test to expect Kafka's behaviour: {held:?}"
    );
    eprintln!("{name}: known defect: {defect}: {held:?}");
}

#[test]
fn a_transaction_held_past_its_timeout_on_the_mock_cluster() {
    let mock = MockCluster::new(3).unwrap_or_else(|e| panic!("{e}"));
    topic(&mock, 3);
    let held = hold_a_transaction_past_its_timeout(&mock);
    assert_held_past_timeout(
        &mock,
        &held,
        Some(
            "librdkafka 2.12.1's mock cluster ignores the transaction timeout of InitProducerId \
         and never aborts a transaction itself",
        ),
    );
}

#[test]
fn a_transaction_held_past_its_timeout_on_tansu() {
    let peer = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    topic(&peer, 1);
    let held = hold_a_transaction_past_its_timeout(&peer);
    assert_held_past_timeout(
        &peer,
        &held,
        Some(
            "Tansu 0.6.0 ignores the transaction timeout of InitProducerId and never aborts a \
         transaction itself",
        ),
    );
}

#[test]
fn a_transaction_held_past_its_timeout_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    topic(&peer, 1);
    let held = hold_a_transaction_past_its_timeout(&peer);
    assert_held_past_timeout(
        &peer,
        &held,
        Some(
            "noida-db ignores the transaction timeout of InitProducerId and never aborts a \
         transaction itself",
        ),
    );
}

// ----------------------------------------------------------------------
// A newer instance of the transactional id
// ----------------------------------------------------------------------

/// What became of an instance whose transactional id a newer instance
/// took over while it had a transaction open.
#[derive(Debug)]
struct TakenOver {
    /// The newer instance's transaction (one record) committed.
    newer_committed: Result<TransactionOutcome, TxnError>,
    /// The older instance's produce after the takeover.
    older_produce: Result<(), ProduceError>,
    /// The older instance's commit (an abort if that produce failed).
    older_end: Result<TransactionOutcome, TxnError>,
    /// What read_committed then sees.
    visible: Vec<String>,
}

/// The older instance writes a record in an open transaction; a newer one
/// starts (InitProducerId), commits a record; the older one writes again
/// and tries to commit.
fn take_over_a_transactional_id(peer: &dyn KafkaPeer) -> TakenOver {
    let (newer_committed, older_produce, older_end) = runtime().block_on(async {
        let timeout = Duration::from_secs(60);
        let older = producer(peer, "taken", timeout).await;
        older.begin_transaction().await.unwrap();
        produce(&older, "older-open").await.unwrap();
        let newer = producer(peer, "taken", timeout).await;
        tokio::time::timeout(WAIT, newer.begin_transaction())
            .await
            .unwrap_or_else(|_| panic!("{}: the newer instance never began", peer.name()))
            .unwrap();
        produce(&newer, "newer").await.unwrap();
        let newer_committed = end(&newer, TxnEnd::Commit).await;
        let older_produce = produce(&older, "older-late").await;
        let how = if older_produce.is_ok() {
            TxnEnd::Commit
        } else {
            TxnEnd::Abort
        };
        let older_end = end(&older, how).await;
        newer.close().await;
        older.close().await;
        (newer_committed, older_produce, older_end)
    });
    let visible = read_committed(peer, 1);
    TakenOver {
        newer_committed,
        older_produce,
        older_end,
        visible,
    }
}

/// Kafka's outcome: the newer instance commits; the older one is fenced
/// (its produce refused, its end fatal) and nothing of it is visible. With
/// `known_defect`, a peer that serves the older instance's unfinished
/// records to read_committed too (failing, and saying to tighten the
/// test, the day it does not).
fn assert_older_fenced(peer: &dyn KafkaPeer, t: &TakenOver, known_defect: Option<&str>) {
    let name = peer.name();
    assert!(committed(&t.newer_committed), "{name}: {t:?}");
    assert!(t.older_produce.is_err(), "{name}: {t:?}");
    assert!(!committed(&t.older_end), "{name}: {t:?}");
    let fenced = match &t.older_end {
        Err(e) => e.is_fatal(),
        Ok(o) => o.error.as_ref().is_some_and(TxnError::is_fatal),
    };
    assert!(fenced, "{name}: the older instance was not fenced: {t:?}");
    match known_defect {
        None => assert_eq!(t.visible, vec!["newer".to_owned()], "{name}: {t:?}"),
        Some(defect) => {
            assert_eq!(
                t.visible,
                vec!["older-open".to_owned(), "newer".to_owned()],
                "{name}: known defect: {defect}; if only the newer record is visible now, \
                 tighten this test: {t:?}"
            );
            eprintln!("{name}: known defect: {defect}: {t:?}");
        }
    }
}

#[test]
fn a_newer_instance_fences_the_older_one_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    topic(&peer, 1);
    let t = take_over_a_transactional_id(&peer);
    assert_older_fenced(&peer, &t, None);
}

#[test]
fn a_newer_instance_fences_the_older_one_on_tansu() {
    let peer = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    topic(&peer, 1);
    let t = take_over_a_transactional_id(&peer);
    assert_older_fenced(
        &peer,
        &t,
        Some(
            "Tansu 0.6.0 serves the records of the transaction the older instance left open, \
             which the newer instance's InitProducerId ends, to read_committed (its Fetch \
             lists no aborted transactions)",
        ),
    );
}

// ----------------------------------------------------------------------
// Offsets in an aborted transaction
// ----------------------------------------------------------------------

const OFFSETS_GROUP: &str = "txn-peers";

/// The group's committed offset of partition 0 of [`TOPIC`], read by
/// librdkafka.
fn group_offset(peer: &dyn KafkaPeer) -> Offset {
    let consumer = librdkafka::consumer(&peer.bootstrap(), &[("group.id", OFFSETS_GROUP)]).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(TOPIC, 0);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
    committed.elements()[0].offset()
}

/// Sends offset `at` for partition 0 in a transaction with one record and
/// ends it `how`; returns the group's committed offset afterwards.
fn offsets_in_a_transaction(peer: &dyn KafkaPeer, at: i64, how: TxnEnd) -> Offset {
    runtime().block_on(async {
        let client = producer(peer, "offsets", Duration::from_secs(60)).await;
        client.begin_transaction().await.unwrap();
        produce(&client, &format!("with-offset-{at}"))
            .await
            .unwrap();
        let offsets = BTreeMap::from([(
            (TOPIC.to_owned(), 0),
            EpochOffset {
                offset: at,
                leader_epoch: -1,
            },
        )]);
        let group = GroupMetadata {
            group_id: OFFSETS_GROUP.to_owned(),
            generation_id: -1,
            member_id: String::new(),
            instance_id: None,
        };
        client
            .send_offsets_to_transaction(offsets, Some(group))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
        let o = end(&client, how).await.unwrap();
        assert_eq!(o.committed, how == TxnEnd::Commit, "{}: {o:?}", peer.name());
        client.close().await;
    });
    group_offset(peer)
}

/// Offsets committed with a transaction are the group's; those of an
/// aborted one are not.
fn offsets_follow_their_transaction(peer: &dyn KafkaPeer) {
    topic(peer, 1);
    assert_eq!(
        offsets_in_a_transaction(peer, 1, TxnEnd::Commit),
        Offset::Offset(1),
        "{}: offsets of a committed transaction",
        peer.name()
    );
    assert_eq!(
        offsets_in_a_transaction(peer, 2, TxnEnd::Abort),
        Offset::Offset(1),
        "{}: offsets of an aborted transaction",
        peer.name()
    );
}

#[test]
fn offsets_follow_their_transaction_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    offsets_follow_their_transaction(&peer);
}

#[test]
fn offsets_follow_their_transaction_on_tansu() {
    let peer = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    offsets_follow_their_transaction(&peer);
}

// ----------------------------------------------------------------------
// KIP-447: offsets of a member not in the group
// ----------------------------------------------------------------------

/// Sends offsets for a member that is not in the group (member id
/// `ghost`, generation 7) in a transaction with one record and tries to
/// commit it; returns the end and the group's committed offset after.
fn commit_offsets_of_a_stranger(peer: &dyn KafkaPeer) -> (TransactionOutcome, Offset) {
    topic(peer, 1);
    let outcome = runtime().block_on(async {
        let client = producer(peer, "stranger", Duration::from_secs(60)).await;
        client.begin_transaction().await.unwrap();
        produce(&client, "from-a-stranger").await.unwrap();
        let offsets = BTreeMap::from([(
            (TOPIC.to_owned(), 0),
            EpochOffset {
                offset: 1,
                leader_epoch: -1,
            },
        )]);
        let group = GroupMetadata {
            group_id: OFFSETS_GROUP.to_owned(),
            generation_id: 7,
            member_id: "ghost".to_owned(),
            instance_id: None,
        };
        client
            .send_offsets_to_transaction(offsets, Some(group))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
        let o = end(&client, TxnEnd::Commit)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", peer.name()));
        client.close().await;
        o
    });
    (outcome, group_offset(peer))
}

/// Kafka (KIP-447) refuses the offsets of a member the group does not
/// have: ILLEGAL_GENERATION when, as here, the group does not exist and
/// the generation is not -1 (`validateTransactionalOffsetCommit`),
/// UNKNOWN_MEMBER_ID for an unknown member of an existing group; so the
/// transaction cannot commit and the offsets never become the group's.
/// With `known_defect`, a peer that takes them.
fn assert_stranger_refused(
    peer: &dyn KafkaPeer,
    (outcome, offset): &(TransactionOutcome, Offset),
    known_defect: Option<&str>,
) {
    let name = peer.name();
    let Some(defect) = known_defect else {
        assert!(!outcome.committed, "{name}: {outcome:?}");
        assert!(
            matches!(
                outcome.error,
                Some(TxnError::Broker {
                    api: sansa_core::protocol::ApiKey::TxnOffsetCommit,
                    ..
                })
            ),
            "{name}: {outcome:?}"
        );
        assert_eq!(*offset, Offset::Invalid, "{name}: the group's offset");
        return;
    };
    assert!(
        outcome.committed && *offset == Offset::Offset(1),
        "{name} now refuses a stranger's offsets (known defect was: {defect}); tighten this \
         test to expect Kafka's behaviour: {outcome:?}, group offset {offset:?}"
    );
    eprintln!("{name}: known defect: {defect}");
}

#[test]
fn a_strangers_offsets_in_a_transaction_are_refused_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let r = commit_offsets_of_a_stranger(&peer);
    assert_stranger_refused(
        &peer,
        &r,
        Some(
            "noida-db's TxnOffsetCommit checks neither the generation nor the member id \
             (KIP-447): it commits offsets of a member of a group that does not exist",
        ),
    );
}

#[test]
fn a_strangers_offsets_in_a_transaction_are_refused_on_tansu() {
    let peer = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    let r = commit_offsets_of_a_stranger(&peer);
    assert_stranger_refused(
        &peer,
        &r,
        Some(
            "Tansu 0.6.0's TxnOffsetCommit checks neither the generation nor the member id \
             (KIP-447): it commits offsets of a member of a group that does not exist",
        ),
    );
}

// ----------------------------------------------------------------------
// KIP-360: a re-init naming a superseded epoch
// ----------------------------------------------------------------------

/// Two instances initialize the transactional id in turn (raw
/// InitProducerId v4, no epoch named: the second fences the first); then
/// the first asks to re-initialize naming its own, superseded epoch.
/// Returns the second's epoch and the answer to that re-init.
fn re_init_from_a_superseded_epoch(
    peer: &dyn KafkaPeer,
) -> (i16, sansa_core::protocol::messages::InitProducerIdResponse) {
    let coordinator = peer.bootstrap();
    let init = |last| {
        raw::init_producer_id(&coordinator, "superseded", last, WAIT)
            .unwrap_or_else(|e| panic!("{}: {e}", peer.name()))
    };
    let first = init((-1, -1));
    let second = init((-1, -1));
    assert_eq!(
        (first.error_code, second.error_code, second.producer_id),
        (0, 0, first.producer_id),
        "{}: {first:?} {second:?}",
        peer.name()
    );
    assert!(second.producer_epoch > first.producer_epoch, "{second:?}");
    let stale = init((first.producer_id, first.producer_epoch));
    (second.producer_epoch, stale)
}

/// How a peer answers the re-init from a superseded epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SupersededReInit {
    /// Kafka (`TransactionMetadata.prepareIncrementProducerEpoch`):
    /// PRODUCER_FENCED, the named epoch being neither the current one nor
    /// the one the current was bumped from by that producer.
    Fenced,
    /// Known defect: refused, with this error code.
    RefusedWith(ErrorCode),
    /// Known defect: granted a new epoch, fencing the newer instance.
    Granted,
}

/// What the answer to the re-init from a superseded epoch was.
fn superseded_re_init_answer(
    (newer_epoch, stale): &(i16, sansa_core::protocol::messages::InitProducerIdResponse),
) -> SupersededReInit {
    match ErrorCode::from_code(stale.error_code) {
        ErrorCode::ProducerFenced => SupersededReInit::Fenced,
        ErrorCode::None if stale.producer_epoch > *newer_epoch => SupersededReInit::Granted,
        other => SupersededReInit::RefusedWith(other),
    }
}

/// The answer is `expected`; anything but [`SupersededReInit::Fenced`]
/// is a known defect, named by `defect`, whose test fails (saying to
/// tighten it) the day the peer answers otherwise.
fn assert_superseded_re_init(
    peer: &dyn KafkaPeer,
    r: &(i16, sansa_core::protocol::messages::InitProducerIdResponse),
    expected: SupersededReInit,
    defect: &str,
) {
    let name = peer.name();
    let got = superseded_re_init_answer(r);
    assert_eq!(
        got, expected,
        "{name}: known defect was: {defect}; if it answers PRODUCER_FENCED now, tighten this \
         test: {r:?}"
    );
    if expected != SupersededReInit::Fenced {
        eprintln!("{name}: known defect: {defect}: {r:?}");
    }
}

#[test]
fn a_re_init_from_a_superseded_epoch_on_noida_db() {
    let peer = NoidaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let r = re_init_from_a_superseded_epoch(&peer);
    assert_superseded_re_init(
        &peer,
        &r,
        SupersededReInit::Granted,
        "noida-db grants an InitProducerId naming a superseded epoch a new epoch, fencing \
         the live newer instance, where Kafka answers PRODUCER_FENCED (sansa never sends \
         one: an abort answered INVALID_PRODUCER_EPOCH is final)",
    );
}

#[test]
fn a_re_init_from_a_superseded_epoch_on_tansu() {
    let peer = Tansu::start().unwrap_or_else(|e| panic!("{e}"));
    let r = re_init_from_a_superseded_epoch(&peer);
    assert_superseded_re_init(
        &peer,
        &r,
        SupersededReInit::RefusedWith(ErrorCode::UnknownServerError),
        "Tansu 0.6.0 refuses an InitProducerId naming a superseded epoch with \
         UNKNOWN_SERVER_ERROR (-1), where Kafka answers PRODUCER_FENCED (sansa's producer \
         ends fatally on either)",
    );
}
