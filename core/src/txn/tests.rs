//! Unit tests of the transaction manager against a scripted coordinator:
//! each test reads the request the manager builds and answers it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::cluster::{Backoff, NodeId};
use crate::group::member::Coordinator;
use crate::group::EpochOffset;
use crate::protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use crate::protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use crate::protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, EndTxnResponse, FindCoordinatorResponse,
    InitProducerIdResponse, TxnOffsetCommitResponse,
};
use crate::protocol::ErrorCode;
use crate::time::Timestamp;

const T0: Timestamp = Timestamp::ZERO;
const PID: i64 = 7;

fn manager() -> TxnManager {
    TxnManager::new(
        "tx".to_owned(),
        Duration::from_secs(40),
        Backoff::default(),
        1,
    )
}

/// Builds the next request at every API's highest version.
fn next(m: &mut TxnManager, now: Timestamp) -> Option<TxnOut> {
    m.build_request(now, &mut |_, cap| Some(cap))
}

fn expect(m: &mut TxnManager, now: Timestamp) -> TxnOut {
    next(m, now).expect("a request is due")
}

fn found(node: i32) -> TxnResponse {
    TxnResponse::FindCoordinator(FindCoordinatorResponse {
        node_id: node,
        host: format!("b{node}"),
        port: 9092,
        ..Default::default()
    })
}

fn init_ok(epoch: i16) -> TxnResponse {
    TxnResponse::InitProducerId(InitProducerIdResponse {
        producer_id: PID,
        producer_epoch: epoch,
        ..Default::default()
    })
}

fn init_err(error: ErrorCode) -> TxnResponse {
    TxnResponse::InitProducerId(InitProducerIdResponse {
        error_code: error.code(),
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    })
}

fn added(parts: &[(&str, i32, ErrorCode)]) -> TxnResponse {
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for &(t, p, e) in parts {
        let r = AddPartitionsToTxnPartitionResult {
            partition_index: p,
            partition_error_code: e.code(),
            ..Default::default()
        };
        match topics.iter_mut().find(|x| x.name == t) {
            Some(x) => x.results_by_partition.push(r),
            None => topics.push(AddPartitionsToTxnTopicResult {
                name: t.to_owned(),
                results_by_partition: vec![r],
                ..Default::default()
            }),
        }
    }
    TxnResponse::AddPartitionsToTxn(AddPartitionsToTxnResponse {
        results_by_topic_v3_and_below: topics,
        ..Default::default()
    })
}

fn ended(error: ErrorCode) -> TxnResponse {
    TxnResponse::EndTxn(EndTxnResponse {
        error_code: error.code(),
        ..Default::default()
    })
}

fn events(m: &mut TxnManager) -> Vec<TxnEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// A manager with a transaction open, its coordinator found and its
/// producer id initialized at epoch 0.
fn ready() -> TxnManager {
    let mut m = manager();
    m.begin(T0).expect("begins");
    let find = expect(&mut m, T0);
    m.on_response(T0, find.in_flight, Some(found(1)));
    let init = expect(&mut m, T0);
    m.on_response(T0, init.in_flight, Some(init_ok(0)));
    assert_eq!(m.take_new_producer_id(), Some((PID, 0)));
    m
}

/// `ready`, with `t`-0 added to the transaction.
fn with_partition() -> TxnManager {
    let mut m = ready();
    m.note_partitions([("t", 0)]);
    let add = expect(&mut m, T0);
    m.on_response(T0, add.in_flight, Some(added(&[("t", 0, ErrorCode::None)])));
    assert_eq!(m.take_added(), vec![("t".to_owned(), 0)]);
    m
}

#[test]
fn init_producer_id_goes_to_the_transaction_coordinator_with_the_id_and_timeout() {
    let mut m = manager();
    // Nothing happens before the first begin.
    assert_eq!(m.next_target(T0), None);
    m.begin(T0).expect("begins");
    assert_eq!(m.next_target(T0), Some(TxnTarget::AnyBroker));
    let find = expect(&mut m, T0);
    match &find.request {
        TxnRequest::FindCoordinator(r) => {
            assert_eq!(r.key_type, 1, "a transaction coordinator");
            assert_eq!(r.coordinator_keys, vec!["tx".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    // One request at a time.
    assert!(next(&mut m, T0).is_none());
    m.on_response(T0, find.in_flight, Some(found(3)));
    assert_eq!(
        m.next_target(T0),
        Some(TxnTarget::TxnCoordinator(Coordinator {
            node: NodeId(3),
            host: "b3".to_owned(),
            port: 9092
        }))
    );
    let init = expect(&mut m, T0);
    match &init.request {
        TxnRequest::InitProducerId(r) => {
            assert_eq!(r.transactional_id.as_deref(), Some("tx"));
            assert_eq!(r.transaction_timeout_ms, 40_000);
            assert_eq!((r.producer_id, r.producer_epoch), (-1, -1));
        }
        other => panic!("{other:?}"),
    }
    m.on_response(T0, init.in_flight, Some(init_ok(4)));
    assert_eq!(m.producer_id(), Some((PID, 4)));
    assert_eq!(m.take_new_producer_id(), Some((PID, 4)));
    assert_eq!(m.state(), TxnState::InTransaction);
    assert!(next(&mut m, T0).is_none(), "nothing more to do");
}

#[test]
fn partitions_touched_while_an_add_is_out_are_coalesced_into_the_next_one() {
    let mut m = ready();
    m.note_partitions([("t", 0), ("t", 1), ("u", 0)]);
    let first = expect(&mut m, T0);
    match &first.request {
        TxnRequest::AddPartitionsToTxn(r) => {
            assert_eq!(r.v3_and_below_transactional_id, "tx");
            assert_eq!(
                (r.v3_and_below_producer_id, r.v3_and_below_producer_epoch),
                (PID, 0)
            );
            let asked: Vec<(String, Vec<i32>)> = r
                .v3_and_below_topics
                .iter()
                .map(|t| (t.name.clone(), t.partitions.clone()))
                .collect();
            assert_eq!(
                asked,
                vec![("t".to_owned(), vec![0, 1]), ("u".to_owned(), vec![0])]
            );
        }
        other => panic!("{other:?}"),
    }
    m.note_partitions([("t", 0), ("t", 2), ("v", 5)]);
    assert!(next(&mut m, T0).is_none(), "one request at a time");
    m.on_response(
        T0,
        first.in_flight,
        Some(added(&[
            ("t", 0, ErrorCode::None),
            ("t", 1, ErrorCode::None),
            ("u", 0, ErrorCode::None),
        ])),
    );
    assert_eq!(m.take_added().len(), 3);
    assert!(m.is_added("t", 1));
    let second = expect(&mut m, T0);
    match &second.request {
        TxnRequest::AddPartitionsToTxn(r) => {
            let asked: Vec<(String, Vec<i32>)> = r
                .v3_and_below_topics
                .iter()
                .map(|t| (t.name.clone(), t.partitions.clone()))
                .collect();
            // t-0 is in already; only the new ones, in one request.
            assert_eq!(
                asked,
                vec![("t".to_owned(), vec![2]), ("v".to_owned(), vec![5])]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn concurrent_transactions_and_load_in_progress_back_off_then_retry() {
    for error in [
        ErrorCode::ConcurrentTransactions,
        ErrorCode::CoordinatorLoadInProgress,
    ] {
        let mut m = ready();
        m.note_partitions([("t", 0)]);
        let add = expect(&mut m, T0);
        m.on_response(T0, add.in_flight, Some(added(&[("t", 0, error)])));
        assert!(m.take_added().is_empty());
        let retry = m.poll_timeout(T0).expect("a retry is scheduled");
        assert!(retry > T0);
        assert!(next(&mut m, T0).is_none(), "{error}: backing off");
        assert!(
            matches!(
                next(&mut m, retry).map(|o| o.request),
                Some(TxnRequest::AddPartitionsToTxn(_))
            ),
            "{error}: retried at the same coordinator"
        );
        assert_eq!(m.state(), TxnState::InTransaction);
    }
}

#[test]
fn not_coordinator_looks_the_coordinator_up_again() {
    let mut m = with_partition();
    m.end(T0, TxnEnd::Commit).expect("ends");
    m.on_producer_settled(T0);
    let end = expect(&mut m, T0);
    assert!(matches!(end.request, TxnRequest::EndTxn(ref r) if r.committed));
    m.on_response(T0, end.in_flight, Some(ended(ErrorCode::NotCoordinator)));
    let later = m.poll_timeout(T0).expect("backs off");
    assert_eq!(m.next_target(later), Some(TxnTarget::AnyBroker));
    let find = expect(&mut m, later);
    m.on_response(later, find.in_flight, Some(found(2)));
    let end = expect(&mut m, later);
    assert!(matches!(end.request, TxnRequest::EndTxn(ref r) if r.committed));
    m.on_response(later, end.in_flight, Some(ended(ErrorCode::None)));
    assert_eq!(
        events(&mut m),
        vec![TxnEvent::Ended(TransactionOutcome {
            id: 0,
            committed: true,
            error: None,
            commit_in_doubt: false,
        })]
    );
    assert_eq!(m.state(), TxnState::Ready);
}

#[test]
fn a_commit_waits_for_the_producer_then_sends_end_txn() {
    let mut m = with_partition();
    let id = m.end(T0, TxnEnd::Commit).expect("ends");
    assert_eq!(m.state(), TxnState::Ending);
    assert!(m.awaits_producer());
    assert!(next(&mut m, T0).is_none(), "the producer has not settled");
    assert_eq!(m.begin(T0), Err(TxnError::Ending));
    m.on_producer_settled(T0);
    let end = expect(&mut m, T0);
    match &end.request {
        TxnRequest::EndTxn(r) => {
            assert!(r.committed);
            assert_eq!((r.producer_id, r.producer_epoch), (PID, 0));
        }
        other => panic!("{other:?}"),
    }
    m.on_response(T0, end.in_flight, Some(ended(ErrorCode::None)));
    assert_eq!(
        events(&mut m),
        vec![TxnEvent::Ended(TransactionOutcome {
            id,
            committed: true,
            error: None,
            commit_in_doubt: false
        })]
    );
    // The next transaction adds its partitions again.
    m.begin(T0).expect("begins again");
    assert!(!m.is_added("t", 0));
}

#[test]
fn a_transaction_the_coordinator_never_heard_of_ends_without_end_txn() {
    let mut m = ready();
    let id = m.end(T0, TxnEnd::Commit).expect("ends");
    m.on_producer_settled(T0);
    assert!(
        next(&mut m, T0).is_none(),
        "no EndTxn for an empty transaction"
    );
    assert_eq!(
        events(&mut m),
        vec![TxnEvent::Ended(TransactionOutcome {
            id,
            committed: true,
            error: None,
            commit_in_doubt: false
        })]
    );
}

#[test]
fn fenced_answers_close_the_transactional_producer() {
    for error in [ErrorCode::ProducerFenced, ErrorCode::InvalidProducerEpoch] {
        let mut m = ready();
        m.note_partitions([("t", 0)]);
        let add = expect(&mut m, T0);
        m.on_response(T0, add.in_flight, Some(added(&[("t", 0, error)])));
        assert_eq!(m.state(), TxnState::Failed);
        assert_eq!(
            events(&mut m),
            vec![TxnEvent::Error(TxnError::Fenced(error))]
        );
        assert!(m.fatal_error().is_some_and(TxnError::is_fatal));
        assert!(!m.accepts_records());
        assert!(next(&mut m, T0).is_none());
        assert!(matches!(
            m.end(T0, TxnEnd::Abort),
            Err(TxnError::Fatal(e)) if *e == TxnError::Fenced(error)
        ));
    }
}

#[test]
fn authorization_failures_split_into_fatal_and_abortable() {
    // The transactional id: fatal.
    let mut m = manager();
    m.begin(T0).expect("begins");
    let find = expect(&mut m, T0);
    m.on_response(T0, find.in_flight, Some(found(1)));
    let init = expect(&mut m, T0);
    m.on_response(
        T0,
        init.in_flight,
        Some(init_err(ErrorCode::TransactionalIdAuthorizationFailed)),
    );
    assert_eq!(m.state(), TxnState::Failed);
    // A topic: abortable.
    let mut m = ready();
    m.note_partitions([("t", 0)]);
    let add = expect(&mut m, T0);
    m.on_response(
        T0,
        add.in_flight,
        Some(added(&[("t", 0, ErrorCode::TopicAuthorizationFailed)])),
    );
    assert_eq!(m.state(), TxnState::MustAbort);
    assert!(!m.accepts_records());
    let cause = TxnError::Broker {
        api: crate::protocol::ApiKey::AddPartitionsToTxn,
        error: ErrorCode::TopicAuthorizationFailed,
    };
    assert_eq!(events(&mut m), vec![TxnEvent::Error(cause.clone())]);
    assert_eq!(
        m.end(T0, TxnEnd::Commit),
        Err(TxnError::MustAbort(Box::new(cause)))
    );
    let id = m.end(T0, TxnEnd::Abort).expect("an abort is allowed");
    m.on_producer_settled(T0);
    // Nothing was added: the abort needs no EndTxn.
    assert!(next(&mut m, T0).is_none());
    assert!(matches!(
        events(&mut m).as_slice(),
        [TxnEvent::Ended(TransactionOutcome { id: i, committed: false, .. })] if *i == id
    ));
    m.begin(T0).expect("usable again");
}

#[test]
fn a_record_failing_during_a_commit_turns_it_into_an_abort() {
    let mut m = with_partition();
    let id = m.end(T0, TxnEnd::Commit).expect("ends");
    m.set_abortable(TxnError::RecordFailed);
    assert!(m.take_fail_unsent(), "the rest of the buffer is failed");
    m.on_producer_settled(T0);
    let end = expect(&mut m, T0);
    assert!(matches!(end.request, TxnRequest::EndTxn(ref r) if !r.committed));
    m.on_response(T0, end.in_flight, Some(ended(ErrorCode::None)));
    assert_eq!(
        events(&mut m),
        vec![TxnEvent::Ended(TransactionOutcome {
            id,
            committed: false,
            error: Some(TxnError::RecordFailed),
            commit_in_doubt: false
        })]
    );
}

#[test]
fn a_commit_whose_answer_is_lost_then_fenced_is_reported_in_doubt() {
    let mut m = with_partition();
    m.end(T0, TxnEnd::Commit).expect("ends");
    m.on_producer_settled(T0);
    let end = expect(&mut m, T0);
    m.on_response(T0, end.in_flight, None);
    let later = m.poll_timeout(T0).expect("backs off");
    let find = expect(&mut m, later);
    m.on_response(later, find.in_flight, Some(found(1)));
    let end = expect(&mut m, later);
    m.on_response(later, end.in_flight, Some(ended(ErrorCode::ProducerFenced)));
    let evs = events(&mut m);
    assert!(
        matches!(
            evs.first(),
            Some(TxnEvent::Ended(TransactionOutcome {
                committed: false,
                commit_in_doubt: true,
                ..
            }))
        ),
        "{evs:?}"
    );
}

#[test]
fn an_abort_answered_invalid_producer_epoch_is_fenced_without_a_re_init() {
    // Kafka says INVALID_PRODUCER_EPOCH to EndTxn below v2 for a fenced
    // epoch; re-initializing from it would fence a newer instance on a
    // broker that does not check the epoch (noida-db did).
    let mut m = with_partition();
    let id = m.end(T0, TxnEnd::Abort).expect("ends");
    m.on_producer_settled(T0);
    let end = expect(&mut m, T0);
    m.on_response(
        T0,
        end.in_flight,
        Some(ended(ErrorCode::InvalidProducerEpoch)),
    );
    assert_eq!(m.state(), TxnState::Failed);
    let fenced = TxnError::Fenced(ErrorCode::InvalidProducerEpoch);
    assert_eq!(
        events(&mut m),
        vec![
            TxnEvent::Ended(TransactionOutcome {
                id,
                committed: false,
                error: Some(fenced.clone()),
                commit_in_doubt: false
            }),
            TxnEvent::Error(fenced)
        ]
    );
    assert!(m.build_request(T0, &mut |_, v| Some(v)).is_none());
}

#[test]
fn an_abort_answered_unknown_producer_reinitializes_with_the_current_epoch() {
    for error in [
        ErrorCode::UnknownProducerId,
        ErrorCode::InvalidProducerIdMapping,
    ] {
        let mut m = with_partition();
        m.end(T0, TxnEnd::Abort).expect("ends");
        m.on_producer_settled(T0);
        let end = expect(&mut m, T0);
        m.on_response(T0, end.in_flight, Some(ended(error)));
        assert!(
            matches!(expect(&mut m, T0).request, TxnRequest::InitProducerId(ref r) if r.producer_id == PID),
            "{error}: re-initializes"
        );
    }
    let mut m = with_partition();
    let id = m.end(T0, TxnEnd::Abort).expect("ends");
    m.on_producer_settled(T0);
    let end = expect(&mut m, T0);
    m.on_response(T0, end.in_flight, Some(ended(ErrorCode::UnknownProducerId)));
    let init = expect(&mut m, T0);
    match &init.request {
        TxnRequest::InitProducerId(r) => assert_eq!((r.producer_id, r.producer_epoch), (PID, 0)),
        other => panic!("{other:?}"),
    }
    m.on_response(T0, init.in_flight, Some(init_ok(2)));
    assert_eq!(m.take_new_producer_id(), Some((PID, 2)));
    assert_eq!(
        events(&mut m),
        vec![TxnEvent::Ended(TransactionOutcome {
            id,
            committed: false,
            error: None,
            commit_in_doubt: false
        })]
    );
    assert_eq!(m.state(), TxnState::Ready);

    // The same, but another producer took the id over meanwhile.
    let mut m = with_partition();
    m.end(T0, TxnEnd::Abort).expect("ends");
    m.on_producer_settled(T0);
    let end = expect(&mut m, T0);
    m.on_response(
        T0,
        end.in_flight,
        Some(ended(ErrorCode::InvalidProducerIdMapping)),
    );
    let init = expect(&mut m, T0);
    m.on_response(
        T0,
        init.in_flight,
        Some(init_err(ErrorCode::ProducerFenced)),
    );
    assert_eq!(m.state(), TxnState::Failed);
}

#[test]
fn a_broken_sequence_bumps_the_epoch_after_the_abort() {
    let mut m = with_partition();
    m.set_abortable(TxnError::SequenceBroken);
    assert_eq!(m.state(), TxnState::MustAbort);
    m.end(T0, TxnEnd::Abort).expect("ends");
    m.on_producer_settled(T0);
    let end = expect(&mut m, T0);
    m.on_response(T0, end.in_flight, Some(ended(ErrorCode::None)));
    let init = expect(&mut m, T0);
    match &init.request {
        TxnRequest::InitProducerId(r) => assert_eq!((r.producer_id, r.producer_epoch), (PID, 0)),
        other => panic!("{other:?}"),
    }
    // Reported again before the new epoch arrives: the same break.
    m.begin(T0).expect("begins");
    m.set_abortable(TxnError::SequenceBroken);
    assert_eq!(m.state(), TxnState::InTransaction);
    m.on_response(T0, init.in_flight, Some(init_ok(1)));
    assert_eq!(m.take_new_producer_id(), Some((PID, 1)));
}

fn group() -> GroupMetadata {
    GroupMetadata {
        group_id: "g".to_owned(),
        generation_id: 5,
        member_id: "m-1".to_owned(),
        instance_id: Some("i-1".to_owned()),
    }
}

fn offsets() -> BTreeMap<(String, i32), EpochOffset> {
    BTreeMap::from([(
        ("in".to_owned(), 0),
        EpochOffset {
            offset: 42,
            leader_epoch: 3,
        },
    )])
}

fn offset_committed(error: ErrorCode) -> TxnResponse {
    TxnResponse::TxnOffsetCommit(TxnOffsetCommitResponse {
        topics: vec![TxnOffsetCommitResponseTopic {
            name: "in".to_owned(),
            partitions: vec![TxnOffsetCommitResponsePartition {
                partition_index: 0,
                error_code: error.code(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// `ready`, with the offsets added to the transaction (AddOffsetsToTxn
/// answered) and the group coordinator found.
fn offsets_at_group_coordinator() -> TxnManager {
    let mut m = ready();
    m.send_offsets(offsets(), group()).expect("queued");
    let add = expect(&mut m, T0);
    match &add.request {
        TxnRequest::AddOffsetsToTxn(r) => {
            assert_eq!(r.group_id, "g");
            assert_eq!((r.producer_id, r.producer_epoch), (PID, 0));
        }
        other => panic!("{other:?}"),
    }
    m.on_response(
        T0,
        add.in_flight,
        Some(TxnResponse::AddOffsetsToTxn(
            AddOffsetsToTxnResponse::default(),
        )),
    );
    // The group's coordinator is looked up, by group key.
    assert_eq!(m.next_target(T0), Some(TxnTarget::AnyBroker));
    let find = expect(&mut m, T0);
    match &find.request {
        TxnRequest::FindCoordinator(r) => {
            assert_eq!(r.key_type, 0);
            assert_eq!(r.coordinator_keys, vec!["g".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    m.on_response(T0, find.in_flight, Some(found(2)));
    assert!(matches!(
        m.next_target(T0),
        Some(TxnTarget::GroupCoordinator(c)) if c.node == NodeId(2)
    ));
    m
}

#[test]
fn offsets_commit_at_the_group_coordinator_with_the_members_generation() {
    let mut m = offsets_at_group_coordinator();
    let commit = expect(&mut m, T0);
    match &commit.request {
        TxnRequest::TxnOffsetCommit(r) => {
            assert_eq!(r.transactional_id, "tx");
            assert_eq!(r.group_id, "g");
            assert_eq!((r.producer_id, r.producer_epoch), (PID, 0));
            assert_eq!(r.generation_id, 5);
            assert_eq!(r.member_id, "m-1");
            assert_eq!(r.group_instance_id.as_deref(), Some("i-1"));
            let p = &r.topics[0].partitions[0];
            assert_eq!((p.committed_offset, p.committed_leader_epoch), (42, 3));
        }
        other => panic!("{other:?}"),
    }
    m.on_response(
        T0,
        commit.in_flight,
        Some(offset_committed(ErrorCode::None)),
    );
    m.end(T0, TxnEnd::Commit).expect("ends");
    m.on_producer_settled(T0);
    // The offsets involve the coordinator: EndTxn goes, to the
    // transaction coordinator.
    assert!(matches!(
        m.next_target(T0),
        Some(TxnTarget::TxnCoordinator(c)) if c.node == NodeId(1)
    ));
    let end = expect(&mut m, T0);
    assert!(matches!(end.request, TxnRequest::EndTxn(ref r) if r.committed));
}

#[test]
fn an_offset_commit_refused_by_the_group_makes_the_transaction_abortable() {
    for error in [
        ErrorCode::IllegalGeneration,
        ErrorCode::UnknownMemberId,
        ErrorCode::FencedInstanceId,
    ] {
        let mut m = offsets_at_group_coordinator();
        let commit = expect(&mut m, T0);
        m.on_response(T0, commit.in_flight, Some(offset_committed(error)));
        assert_eq!(m.state(), TxnState::MustAbort, "{error}");
    }
    // The group coordinator moved: look it up again and retry.
    let mut m = offsets_at_group_coordinator();
    let commit = expect(&mut m, T0);
    m.on_response(
        T0,
        commit.in_flight,
        Some(offset_committed(ErrorCode::NotCoordinator)),
    );
    assert_eq!(m.state(), TxnState::InTransaction);
    let later = m.poll_timeout(T0).expect("backs off");
    assert!(matches!(
        expect(&mut m, later).request,
        TxnRequest::FindCoordinator(ref r) if r.key_type == 0
    ));
}

#[test]
fn in_a_group_transact_session_a_doubtful_offset_commit_aborts_instead_of_retrying() {
    for error in [
        ErrorCode::NotCoordinator,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::ConcurrentTransactions,
        ErrorCode::RequestTimedOut,
    ] {
        let mut m = offsets_at_group_coordinator();
        m.abort_on_offset_doubt(true);
        let commit = expect(&mut m, T0);
        m.on_response(T0, commit.in_flight, Some(offset_committed(error)));
        assert_eq!(m.state(), TxnState::MustAbort, "{error}");
        assert!(
            matches!(m.abortable_error(), Some(TxnError::Broker { error: e, .. }) if *e == error),
            "{error}: {:?}",
            m.abortable_error()
        );
        // Nothing is retried: the offsets are dropped with the abort.
        assert!(
            next(&mut m, T0 + Duration::from_secs(5)).is_none(),
            "{error}"
        );
    }
    // A lost answer is as doubtful.
    let mut m = offsets_at_group_coordinator();
    m.abort_on_offset_doubt(true);
    let commit = expect(&mut m, T0);
    m.on_response(T0, commit.in_flight, None);
    assert_eq!(m.state(), TxnState::MustAbort);
}

#[test]
fn misuse_is_refused_with_typed_errors() {
    let mut m = manager();
    assert_eq!(m.end(T0, TxnEnd::Commit), Err(TxnError::NotInTransaction));
    assert_eq!(
        m.send_offsets(offsets(), group()),
        Err(TxnError::NotInTransaction)
    );
    assert!(!m.accepts_records());
    m.begin(T0).expect("begins");
    assert!(m.accepts_records());
    assert_eq!(m.begin(T0), Err(TxnError::AlreadyInTransaction));
}

#[test]
fn transactions_v2_is_detected_from_the_coordinators_finalized_feature_and_versions() {
    let mut m = manager();
    assert!(!m.transactions_v2_available());
    m.note_v2_versions(true);
    m.note_transaction_version(Some(1));
    assert!(!m.transactions_v2_available());
    m.note_transaction_version(Some(2));
    assert!(m.transactions_v2_available());
    m.note_v2_versions(false);
    assert!(
        !m.transactions_v2_available(),
        "the feature without Produce v12 / EndTxn v5"
    );
    m.note_v2_versions(true);
    m.note_transaction_version(None);
    assert!(!m.transactions_v2_available());
}

mod v2;

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// What the test does next.
    #[derive(Debug, Clone)]
    enum Op {
        /// The producer touches a partition.
        Touch(i32),
        /// The producer settles (flushed or failed what it held).
        Settle,
        /// The application ends the transaction.
        End(bool),
        /// The application begins one.
        Begin,
        /// The outstanding request is answered with this error (index into
        /// `CODES`), or its connection is lost (`None`).
        Answer(Option<usize>),
        /// Time passes.
        Wait(u64),
    }

    const CODES: [ErrorCode; 12] = [
        ErrorCode::None,
        ErrorCode::None,
        ErrorCode::None,
        ErrorCode::NotCoordinator,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::ConcurrentTransactions,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::ProducerFenced,
        ErrorCode::InvalidProducerEpoch,
        ErrorCode::TopicAuthorizationFailed,
        ErrorCode::UnknownTopicOrPartition,
        ErrorCode::InvalidTxnState,
    ];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..4i32).prop_map(Op::Touch),
            Just(Op::Settle),
            any::<bool>().prop_map(Op::End),
            Just(Op::Begin),
            proptest::option::weighted(0.9, 0..CODES.len()).prop_map(Op::Answer),
            (0..2_000u64).prop_map(Op::Wait),
        ]
    }

    /// An answer to `out` carrying `error`.
    fn answer(out: &TxnOut, error: ErrorCode) -> TxnResponse {
        match &out.request {
            TxnRequest::FindCoordinator(_) if error.is_ok() => found(1),
            TxnRequest::FindCoordinator(_) => {
                TxnResponse::FindCoordinator(FindCoordinatorResponse {
                    error_code: error.code(),
                    ..Default::default()
                })
            }
            TxnRequest::InitProducerId(_) if error.is_ok() => init_ok(1),
            TxnRequest::InitProducerId(_) => init_err(error),
            TxnRequest::AddPartitionsToTxn(r) => {
                let parts: Vec<(&str, i32, ErrorCode)> = r
                    .v3_and_below_topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(move |&p| (t.name.as_str(), p, error))
                    })
                    .collect();
                added(&parts)
            }
            TxnRequest::AddOffsetsToTxn(_) => {
                TxnResponse::AddOffsetsToTxn(AddOffsetsToTxnResponse {
                    error_code: error.code(),
                    ..Default::default()
                })
            }
            TxnRequest::TxnOffsetCommit(_) => offset_committed(error),
            TxnRequest::EndTxn(_) => ended(error),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the coordinator answers: one request at a time; EndTxn
        /// commit only once every touched partition was added and the
        /// producer settled; every end is reported once; a partition is
        /// allowed to send only after the coordinator added it.
        #[test]
        fn end_txn_commits_only_what_was_added_and_every_end_is_reported_once(
            ops in proptest::collection::vec(op(), 1..80)
        ) {
            let mut m = manager();
            let mut now = T0;
            let mut out: Option<TxnOut> = None;
            let mut touched: Vec<(String, i32)> = Vec::new();
            let mut settled = false;
            let mut ends: Vec<u64> = Vec::new();
            let mut reported: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Touch(p) => {
                        if m.accepts_records() {
                            touched.push(("t".to_owned(), p));
                            settled = false;
                        }
                        let held: Vec<(&str, i32)> =
                            touched.iter().map(|(t, p)| (t.as_str(), *p)).collect();
                        m.note_partitions(held);
                    }
                    Op::Settle => {
                        settled = true;
                        if m.awaits_producer() {
                            m.on_producer_settled(now);
                        }
                    }
                    Op::End(commit) => {
                        let how = if commit { TxnEnd::Commit } else { TxnEnd::Abort };
                        if let Ok(id) = m.end(now, how) {
                            ends.push(id);
                            if !commit {
                                // The client fails what is buffered.
                                touched.clear();
                            }
                            if settled || touched.is_empty() {
                                m.on_producer_settled(now);
                            }
                        }
                    }
                    Op::Begin => {
                        if m.begin(now).is_ok() {
                            touched.clear();
                            settled = false;
                        }
                    }
                    Op::Answer(code) => {
                        if let Some(o) = out.take() {
                            let response = code.map(|i| answer(&o, CODES[i]));
                            m.on_response(now, o.in_flight, response);
                        }
                    }
                    Op::Wait(ms) => now = now + Duration::from_millis(ms),
                }
                if m.take_fail_unsent() {
                    touched.clear();
                }
                for (t, p) in m.take_added() {
                    prop_assert!(m.is_added(&t, p) || m.state() == TxnState::Ready);
                }
                if let Some(next) = next(&mut m, now) {
                    prop_assert!(out.is_none(), "two requests out: {next:?}");
                    if let TxnRequest::EndTxn(r) = &next.request {
                        if r.committed {
                            for (t, p) in &touched {
                                prop_assert!(m.is_added(t, *p), "commit before {t}-{p} was added");
                            }
                        }
                    }
                    out = Some(next);
                }
                for e in events(&mut m) {
                    if let TxnEvent::Ended(o) = e {
                        prop_assert!(ends.contains(&o.id));
                        prop_assert!(!reported.contains(&o.id), "end {} reported twice", o.id);
                        reported.push(o.id);
                        prop_assert!(matches!(m.state(), TxnState::Ready | TxnState::Failed));
                    }
                }
            }
        }
    }
}
