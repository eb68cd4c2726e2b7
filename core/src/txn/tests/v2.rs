//! Transactions v2 (KIP-890 part 2) against a scripted coordinator: no
//! AddPartitionsToTxn or AddOffsetsToTxn, TxnOffsetCommit and EndTxn at
//! v5, and the epoch EndTxn v5 returns adopted for the next transaction.

use super::*;

/// EndTxn v5's answer: success with the bumped producer id and epoch.
fn ended_v5(id: i64, epoch: i16) -> TxnResponse {
    TxnResponse::EndTxn(EndTxnResponse {
        producer_id: id,
        producer_epoch: epoch,
        ..Default::default()
    })
}

/// A manager whose coordinator offers transactions v2, with a
/// transaction open and the producer id initialized at `epoch`.
fn ready_v2(epoch: i16) -> TxnManager {
    let mut m = manager();
    m.note_transaction_version(Some(2));
    m.note_v2_versions(true);
    m.begin(T0).expect("begins");
    let find = expect(&mut m, T0);
    m.on_response(T0, find.in_flight, Some(found(1)));
    let init = expect(&mut m, T0);
    m.on_response(T0, init.in_flight, Some(init_ok(epoch)));
    assert_eq!(m.take_new_producer_id(), Some((PID, epoch)));
    assert!(m.uses_transactions_v2());
    m
}

/// Ends the open transaction with `how`, the producer settled, and
/// returns the EndTxn that went out.
fn end_now(m: &mut TxnManager, how: TxnEnd) -> TxnOut {
    m.end(T0, how).expect("ends");
    m.on_producer_settled(T0);
    let out = expect(m, T0);
    assert!(
        matches!(out.request, TxnRequest::EndTxn(_)),
        "{:?}",
        out.request
    );
    out
}

#[test]
fn v2_partitions_go_at_once_without_add_partitions_to_txn() {
    let mut m = ready_v2(0);
    m.note_partitions([("t", 0), ("u", 3)]);
    assert_eq!(
        m.take_added(),
        vec![("t".to_owned(), 0), ("u".to_owned(), 3)],
        "the producer may send at once: Produce v12 adds the partitions"
    );
    assert!(m.is_added("t", 0));
    assert!(next(&mut m, T0).is_none(), "no AddPartitionsToTxn");
    let end = end_now(&mut m, TxnEnd::Commit);
    assert_eq!(end.version, 5);
    match &end.request {
        TxnRequest::EndTxn(r) => {
            assert!(r.committed);
            assert_eq!((r.producer_id, r.producer_epoch), (PID, 0));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn v2_end_txn_bumps_the_epoch_and_the_producer_goes_on_under_it() {
    let mut m = ready_v2(0);
    m.note_partitions([("t", 0)]);
    let _ = m.take_added();
    let end = end_now(&mut m, TxnEnd::Commit);
    m.on_response(T0, end.in_flight, Some(ended_v5(PID, 1)));
    assert_eq!(m.producer_id(), Some((PID, 1)));
    assert_eq!(
        m.take_new_producer_id(),
        Some((PID, 1)),
        "the producer restarts its sequences under the new epoch"
    );
    assert!(matches!(
        events(&mut m).as_slice(),
        [TxnEvent::Ended(TransactionOutcome {
            committed: true,
            ..
        })]
    ));
    // The next transaction runs under the bumped epoch, with no
    // InitProducerId in between.
    m.begin(T0).expect("begins");
    m.note_partitions([("t", 0)]);
    assert!(next(&mut m, T0).is_none());
    let end = end_now(&mut m, TxnEnd::Abort);
    match &end.request {
        TxnRequest::EndTxn(r) => assert_eq!((r.producer_id, r.producer_epoch), (PID, 1)),
        other => panic!("{other:?}"),
    }
    // An epoch that would overflow comes back as a new producer id.
    m.on_response(T0, end.in_flight, Some(ended_v5(PID + 1, 0)));
    assert_eq!(m.take_new_producer_id(), Some((PID + 1, 0)));
}

#[test]
fn v2_offsets_go_straight_to_the_group_coordinator_at_v5() {
    let mut m = ready_v2(0);
    m.send_offsets(offsets(), group()).expect("queued");
    // No AddOffsetsToTxn: the group's coordinator is looked up at once.
    let find = expect(&mut m, T0);
    match &find.request {
        TxnRequest::FindCoordinator(r) => assert_eq!(r.coordinator_keys, vec!["g".to_owned()]),
        other => panic!("{other:?}"),
    }
    m.on_response(T0, find.in_flight, Some(found(2)));
    let commit = expect(&mut m, T0);
    assert_eq!(commit.version, 5);
    match &commit.request {
        TxnRequest::TxnOffsetCommit(r) => {
            assert_eq!(r.group_id, "g");
            assert_eq!((r.producer_id, r.producer_epoch), (PID, 0));
        }
        other => panic!("{other:?}"),
    }
    m.on_response(
        T0,
        commit.in_flight,
        Some(offset_committed(ErrorCode::None)),
    );
    // The coordinator knows of the transaction through the group: the
    // commit needs EndTxn.
    let end = end_now(&mut m, TxnEnd::Commit);
    assert_eq!(end.version, 5);
}

#[test]
fn v1_never_sends_the_v2_versions_even_when_the_broker_speaks_them() {
    let mut m = with_partition();
    assert!(!m.uses_transactions_v2());
    m.send_offsets(offsets(), group()).expect("queued");
    let add = expect(&mut m, T0);
    assert!(matches!(add.request, TxnRequest::AddOffsetsToTxn(_)));
    m.on_response(
        T0,
        add.in_flight,
        Some(TxnResponse::AddOffsetsToTxn(
            AddOffsetsToTxnResponse::default(),
        )),
    );
    let find = expect(&mut m, T0);
    m.on_response(T0, find.in_flight, Some(found(2)));
    // The broker speaks everything (negotiate answers the cap).
    let commit = expect(&mut m, T0);
    assert_eq!(commit.version, 4, "TxnOffsetCommit v5 means v2");
    m.on_response(
        T0,
        commit.in_flight,
        Some(offset_committed(ErrorCode::None)),
    );
    let end = end_now(&mut m, TxnEnd::Commit);
    assert_eq!(end.version, 4, "EndTxn v5 means v2");
}

#[test]
fn v2_offered_mid_transaction_waits_for_the_next_transaction() {
    let mut m = with_partition();
    // The coordinator starts offering v2 while a v1 transaction has
    // partitions added: this one ends as v1.
    m.note_transaction_version(Some(2));
    m.note_v2_versions(true);
    m.note_partitions([("t", 1)]);
    let add = expect(&mut m, T0);
    assert!(matches!(add.request, TxnRequest::AddPartitionsToTxn(_)));
    assert!(!m.uses_transactions_v2());
    m.on_response(T0, add.in_flight, Some(added(&[("t", 1, ErrorCode::None)])));
    assert_eq!(m.take_added(), vec![("t".to_owned(), 1)]);
    let end = end_now(&mut m, TxnEnd::Commit);
    assert_eq!(end.version, 4);
    m.on_response(T0, end.in_flight, Some(ended(ErrorCode::None)));
    assert_eq!(m.take_new_producer_id(), None, "v1 keeps its epoch");
    // The next one is v2.
    m.begin(T0).expect("begins");
    assert!(m.uses_transactions_v2());
    m.note_partitions([("t", 0)]);
    assert_eq!(m.take_added().len(), 1);
    assert!(next(&mut m, T0).is_none());
}

#[test]
fn v2_learnt_before_the_producer_id_applies_to_the_first_transaction() {
    let mut m = manager();
    m.begin(T0).expect("begins");
    assert!(
        !m.uses_transactions_v2(),
        "nothing known of the coordinator yet"
    );
    // Records wait for the producer id: their partitions are noted.
    m.note_partitions([("t", 0)]);
    let find = expect(&mut m, T0);
    m.on_response(T0, find.in_flight, Some(found(1)));
    m.note_transaction_version(Some(2));
    m.note_v2_versions(true);
    let init = expect(&mut m, T0);
    m.on_response(T0, init.in_flight, Some(init_ok(0)));
    assert!(m.uses_transactions_v2());
    assert_eq!(m.take_added(), vec![("t".to_owned(), 0)]);
    assert!(
        next(&mut m, T0).is_none(),
        "no AddPartitionsToTxn left waiting"
    );
}

#[test]
fn v2_abort_after_a_broken_sequence_needs_no_init_producer_id() {
    let mut m = ready_v2(3);
    m.note_partitions([("t", 0)]);
    let _ = m.take_added();
    m.set_abortable(TxnError::SequenceBroken);
    let end = end_now(&mut m, TxnEnd::Abort);
    m.on_response(T0, end.in_flight, Some(ended_v5(PID, 4)));
    assert_eq!(m.take_new_producer_id(), Some((PID, 4)));
    m.begin(T0).expect("begins");
    assert!(
        next(&mut m, T0).is_none(),
        "the end bumped the epoch: no InitProducerId"
    );
    assert_eq!(m.producer_id(), Some((PID, 4)));
}

#[test]
fn v2_abort_of_nothing_sent_still_ends_at_the_coordinator() {
    // Produce v12 may have added the partition before the abort: the
    // client cannot tell, so EndTxn goes (Kafka 4.0 answers an abort of
    // an empty v2 transaction with an epoch bump).
    let mut m = ready_v2(0);
    m.note_partitions([("t", 0)]);
    let end = end_now(&mut m, TxnEnd::Abort);
    m.on_response(T0, end.in_flight, Some(ended_v5(PID, 1)));
    assert_eq!(m.take_new_producer_id(), Some((PID, 1)));
    // A transaction that touched nothing ends locally, as in v1.
    m.begin(T0).expect("begins");
    m.end(T0, TxnEnd::Commit).expect("ends");
    m.on_producer_settled(T0);
    assert!(next(&mut m, T0).is_none());
    assert_eq!(m.state(), TxnState::Ready);
}

#[test]
fn v2_end_txn_answered_without_an_epoch_closes_the_producer() {
    let mut m = ready_v2(0);
    m.note_partitions([("t", 0)]);
    let end = end_now(&mut m, TxnEnd::Commit);
    m.on_response(T0, end.in_flight, Some(ended(ErrorCode::None)));
    assert_eq!(m.state(), TxnState::Failed);
}

#[test]
fn v2_against_a_coordinator_that_lost_end_txn_v5_fails_instead_of_mixing_versions() {
    let mut m = ready_v2(0);
    m.note_partitions([("t", 0)]);
    m.end(T0, TxnEnd::Commit).expect("ends");
    m.on_producer_settled(T0);
    let out = m.build_request(T0, &mut |api, cap| {
        Some(if api == ApiKey::EndTxn {
            cap.min(4)
        } else {
            cap
        })
    });
    assert!(out.is_none());
    assert!(matches!(
        m.fatal_error(),
        Some(TxnError::Broker {
            api: ApiKey::EndTxn,
            error: ErrorCode::UnsupportedVersion
        })
    ));
}

#[test]
fn v2_a_retried_end_txn_keeps_the_old_epoch_until_answered() {
    // KAFKA-17754's defence lives at the coordinator: a retried EndTxn
    // carries the epoch the transaction ran under, which the coordinator
    // recognises as a retry of the end it completed.
    let mut m = ready_v2(5);
    m.note_partitions([("t", 0)]);
    let end = end_now(&mut m, TxnEnd::Commit);
    m.on_response(T0, end.in_flight, None);
    let retry_at = m.poll_timeout(T0).expect("backs off");
    let find = expect(&mut m, retry_at);
    m.on_response(retry_at, find.in_flight, Some(found(1)));
    let again = expect(&mut m, retry_at);
    match &again.request {
        TxnRequest::EndTxn(r) => assert_eq!(r.producer_epoch, 5),
        other => panic!("{other:?}"),
    }
    m.on_response(retry_at, again.in_flight, Some(ended_v5(PID, 6)));
    assert_eq!(m.producer_id(), Some((PID, 6)));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever each transaction does (touch partitions, commit
        /// offsets, commit or abort), every v2 end that reached the
        /// coordinator hands the producer the next epoch, so no
        /// (producer id, epoch) pair serves two transactions the
        /// coordinator saw (one that touched nothing ends locally).
        #[test]
        fn v2_every_end_moves_the_producer_to_a_fresh_epoch(
            txns in proptest::collection::vec((0u8..4, any::<bool>(), any::<bool>()), 1..40),
        ) {
            let mut m = ready_v2(0);
            let mut epoch: i16 = 0;
            let mut seen = std::collections::BTreeSet::new();
            for (i, (parts, with_offsets, commit)) in txns.into_iter().enumerate() {
                if i > 0 {
                    m.begin(T0).expect("begins");
                }
                let pid = m.producer_id();
                for p in 0..i32::from(parts) {
                    m.note_partitions([("t", p)]);
                }
                prop_assert_eq!(m.take_added().len(), usize::from(parts));
                if with_offsets {
                    m.send_offsets(offsets(), group()).expect("queued");
                }
                let how = if commit { TxnEnd::Commit } else { TxnEnd::Abort };
                m.end(T0, how).expect("ends");
                m.on_producer_settled(T0);
                let mut involved = parts > 0;
                while let Some(out) = next(&mut m, T0) {
                    let answer = match &out.request {
                        TxnRequest::FindCoordinator(_) => found(2),
                        TxnRequest::TxnOffsetCommit(_) => {
                            involved = true;
                            offset_committed(ErrorCode::None)
                        }
                        TxnRequest::EndTxn(r) => {
                            prop_assert!(involved, "EndTxn for a transaction nothing reached");
                            prop_assert_eq!(out.version, 5);
                            prop_assert_eq!((r.producer_id, r.producer_epoch), (PID, epoch));
                            epoch += 1;
                            ended_v5(PID, epoch)
                        }
                        other => {
                            return Err(TestCaseError::fail(format!("v1 request in v2: {other:?}")));
                        }
                    };
                    m.on_response(T0, out.in_flight, Some(answer));
                }
                if involved {
                    prop_assert!(seen.insert(pid), "epoch reused");
                }
                prop_assert_eq!(m.state(), TxnState::Ready);
                prop_assert_eq!(m.producer_id(), Some((PID, epoch)));
                let _ = m.take_new_producer_id();
                let _ = events(&mut m);
            }
        }
    }
}
