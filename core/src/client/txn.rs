//! The client's side of transactions: routing the [`TxnManager`]'s
//! requests (FindCoordinator to any broker, the rest to the transaction
//! or group coordinator on connections of their own), and carrying facts
//! between it and the producer: which partitions hold records, which were
//! added, the producer id, failed records, a broken sequence, whether the
//! producer settled.
//!
//! Kept apart from `mod.rs` so the wiring is one place: `mod.rs` calls
//! [`Client::drive_txn`] from `drive`, hands answers back, and refuses
//! records outside a transaction.

use std::collections::BTreeMap;

use super::{Client, ConnId, Event, Output, Pending};
use crate::conn::RequestToken;
use crate::group::member::Coordinator;
use crate::group::{EpochOffset, TopicPartition};
use crate::producer::ProduceError;
use crate::protocol::ApiKey;
use crate::time::Timestamp;
use crate::txn::{
    GroupMetadata, TxnEnd, TxnError, TxnEvent, TxnManager, TxnRequest, TxnState, TxnTarget,
    PRODUCE_V2_VERSION, TXN_V2_VERSION,
};

/// Requests built per drive at most (the manager has at most one out).
const MAX_TXN_REQUESTS_PER_DRIVE: usize = 4;

/// Which of the manager's own connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnLine {
    Txn,
    Group,
}

impl Client {
    /// The transaction manager, with a transactional id.
    pub fn transaction_manager(&self) -> Option<&TxnManager> {
        self.txn.as_ref()
    }

    /// Whether the transactional producer speaks transactions v2 (KIP-890
    /// part 2) in its open or next transaction; `None` without a
    /// transactional id. See [`TxnManager::uses_transactions_v2`].
    pub fn uses_transactions_v2(&self) -> Option<bool> {
        self.txn.as_ref().map(TxnManager::uses_transactions_v2)
    }

    /// The highest Produce version this client may send: v12 only in a
    /// transactions v2 transaction (it adds partitions to the
    /// transaction); v11 otherwise, also for idempotent and plain
    /// producers, for which v12 changes nothing (same schema).
    pub(super) fn produce_version_cap(&self) -> i16 {
        if self.uses_transactions_v2() == Some(true) {
            PRODUCE_V2_VERSION
        } else {
            PRODUCE_V2_VERSION - 1
        }
    }

    /// Where the transactional producer stands; `None` without a
    /// transactional id.
    pub fn transaction_state(&self) -> Option<TxnState> {
        self.txn.as_ref().map(TxnManager::state)
    }

    fn txn_mut(&mut self) -> Result<&mut TxnManager, TxnError> {
        self.txn.as_mut().ok_or(TxnError::NotTransactional)
    }

    /// Opens a transaction: records produced from now on belong to it.
    /// The first call also initializes the producer id with the
    /// transaction coordinator (fencing any older producer of the id).
    pub fn begin_transaction(&mut self, now: Timestamp) -> Result<(), TxnError> {
        self.tick(now);
        self.txn_mut()?.begin(now)?;
        // Failures of an earlier transaction are its own.
        let _ = self.producer.take_failed_in_txn();
        if let Some(s) = &mut self.group_txn {
            s.begin();
        }
        Ok(())
    }

    /// Ends the open transaction: a commit flushes everything buffered,
    /// then commits; an abort fails what is still buffered with
    /// [`ProduceError::TransactionAborted`], lets what is in flight
    /// settle, then aborts. [`Event::TransactionEnded`] with the returned
    /// id says how it ended (a commit turns into an abort if a record of
    /// the transaction failed).
    ///
    /// In a group-transact session (`Config::group_transact_session`) a
    /// commit is a *try*: it also commits the offsets of everything
    /// polled in the transaction, and aborts instead when a commit is
    /// doubtful; an abort rewinds consumption to the committed offsets
    /// (see `txn::GroupTxnSession`).
    pub fn end_transaction(&mut self, now: Timestamp, how: TxnEnd) -> Result<u64, TxnError> {
        self.tick(now);
        if self.group_txn.is_some() {
            return self.end_group_transaction(now, how);
        }
        let id = self.txn_mut()?.end(now, how)?;
        if how == TxnEnd::Commit {
            self.producer.flush();
        } else {
            self.producer.fail_unsent(ProduceError::TransactionAborted);
        }
        Ok(id)
    }

    /// Commits `offsets` (the next offset to consume per partition) to the
    /// client's consumer group as part of the open transaction, with the
    /// member's generation, member id and instance id (KIP-447): they
    /// commit only if the transaction does.
    pub fn send_offsets_to_transaction(
        &mut self,
        now: Timestamp,
        offsets: BTreeMap<TopicPartition, EpochOffset>,
    ) -> Result<(), TxnError> {
        let g = self.group.as_ref().ok_or(TxnError::NoGroup)?;
        let group = GroupMetadata {
            group_id: g.config().group_id.clone(),
            generation_id: g.generation(),
            member_id: g.member_id().to_owned(),
            instance_id: g.config().instance_id.clone(),
        };
        self.send_offsets_to_transaction_for(now, offsets, group)
    }

    /// [`send_offsets_to_transaction`](Self::send_offsets_to_transaction)
    /// for a group the application names (a consumer in another client).
    pub fn send_offsets_to_transaction_for(
        &mut self,
        now: Timestamp,
        offsets: BTreeMap<TopicPartition, EpochOffset>,
        group: GroupMetadata,
    ) -> Result<(), TxnError> {
        self.tick(now);
        self.txn_mut()?.send_offsets(offsets, group)
    }

    /// A transactional client refuses records outside a transaction.
    pub(super) fn txn_refuses_records(&self) -> Option<ProduceError> {
        let t = self.txn.as_ref()?;
        if t.fatal_error().is_some() {
            Some(ProduceError::TransactionFailed)
        } else if t.accepts_records() {
            None
        } else {
            Some(ProduceError::NotInTransaction)
        }
    }

    /// Runs the transaction manager: tells it what the producer did, sends
    /// its requests, applies its decisions.
    pub(super) fn drive_txn(&mut self, now: Timestamp) {
        let Some(t) = &mut self.txn else {
            return;
        };
        if let Some(error) = self.producer.take_txn_fatal() {
            t.fail(TxnError::ProducerFailed(error));
        }
        if self.producer.take_failed_in_txn() {
            t.set_abortable(TxnError::RecordFailed);
        }
        if self.producer.needs_new_epoch() {
            t.set_abortable(TxnError::SequenceBroken);
        }
        self.drive_group_check(now);
        let Some(t) = &mut self.txn else {
            return;
        };
        if t.state() == TxnState::Ending {
            if let Some(cause) = self.group_txn.as_ref().and_then(|s| s.abort_cause()) {
                // A revoke met while the transaction ends: a commit not
                // yet sent becomes an abort.
                t.set_abortable(cause.clone());
            }
        }
        if t.take_fail_unsent() {
            self.producer.fail_unsent(ProduceError::TransactionAborted);
        }
        if t.is_aborting() && t.awaits_producer() {
            // Batches waiting for the new epoch only the end brings.
            self.producer
                .fail_stranded(ProduceError::TransactionAborted);
        }
        t.note_partitions(self.producer.partitions_to_add());
        if t.awaits_producer() && self.producer.is_idle() {
            t.on_producer_settled(now);
        }
        self.apply_txn_outputs();
        for _ in 0..MAX_TXN_REQUESTS_PER_DRIVE {
            if !self.send_txn_request(now) {
                break;
            }
        }
        self.apply_txn_outputs();
    }

    fn apply_txn_outputs(&mut self) {
        let Some(t) = &mut self.txn else {
            return;
        };
        for (topic, partition) in t.take_added() {
            self.producer.allow_partition(topic, partition);
        }
        if let Some((id, epoch)) = t.take_new_producer_id() {
            self.producer.set_producer_id(id, epoch);
        }
        let events: Vec<TxnEvent> = std::iter::from_fn(|| t.poll_event()).collect();
        for e in events {
            match e {
                TxnEvent::Ended(outcome) => {
                    self.producer.close_gate();
                    let outcome = self.session_on_ended(outcome);
                    self.outputs
                        .push_back(Output::Event(Event::TransactionEnded(outcome)));
                }
                TxnEvent::Error(error) => {
                    if error.is_fatal() {
                        self.producer.fail_all(ProduceError::TransactionFailed);
                    }
                    self.outputs
                        .push_back(Output::Event(Event::TransactionError(error)));
                }
            }
        }
    }

    /// Sends the manager's next request if it is due and its connection is
    /// ready; `false` when there is nothing more to send now.
    fn send_txn_request(&mut self, now: Timestamp) -> bool {
        let Some(target) = self.txn.as_ref().and_then(|t| t.next_target(now)) else {
            return false;
        };
        let id = match &target {
            TxnTarget::AnyBroker => self.any_ready_conn(now),
            TxnTarget::TxnCoordinator(c) => self.txn_conn_to(now, TxnLine::Txn, c),
            TxnTarget::GroupCoordinator(c) => self.txn_conn_to(now, TxnLine::Group, c),
        };
        let Some(id) = id else {
            return false;
        };
        let (Some(slot), Some(t)) = (self.slots.get_mut(&id), self.txn.as_mut()) else {
            return false;
        };
        if !slot.conn.is_ready() {
            return false;
        }
        let conn = &slot.conn;
        if matches!(target, TxnTarget::TxnCoordinator(_)) {
            t.note_transaction_version(conn.versions().finalized_feature("transaction.version"));
            let speaks = |api: ApiKey, v: i16| conn.version_for(api, Some(v)) == Ok(v);
            t.note_v2_versions(
                speaks(ApiKey::Produce, PRODUCE_V2_VERSION)
                    && speaks(ApiKey::TxnOffsetCommit, TXN_V2_VERSION)
                    && speaks(ApiKey::EndTxn, TXN_V2_VERSION),
            );
        }
        let Some(out) = t.build_request(now, &mut |api, cap| conn.version_for(api, Some(cap)).ok())
        else {
            return true;
        };
        self.next_token += 1;
        let token = RequestToken(self.next_token);
        let v = out.version;
        let sent = match &out.request {
            TxnRequest::FindCoordinator(r) => slot.conn.send(now, r, v, token, true),
            TxnRequest::InitProducerId(r) => slot.conn.send(now, r, v, token, true),
            TxnRequest::AddPartitionsToTxn(r) => slot.conn.send(now, r, v, token, true),
            TxnRequest::AddOffsetsToTxn(r) => slot.conn.send(now, r, v, token, true),
            TxnRequest::TxnOffsetCommit(r) => slot.conn.send(now, r, v, token, true),
            TxnRequest::EndTxn(r) => slot.conn.send(now, r, v, token, true),
        };
        match sent {
            Ok(_) => {
                self.pending.insert(token, Pending::Txn(out.in_flight));
                true
            }
            Err(e) => {
                t.on_response(now, out.in_flight, None);
                self.conn_failed(now, id, &e);
                false
            }
        }
    }

    /// The manager's own connection to a coordinator, opened if needed:
    /// not the broker's shared connection, where a fetch held for its max
    /// wait would delay an EndTxn behind it by seconds.
    fn txn_conn_to(&mut self, now: Timestamp, line: TxnLine, c: &Coordinator) -> Option<ConnId> {
        let current = match line {
            TxnLine::Txn => self.txn_conn,
            TxnLine::Group => self.txn_group_conn,
        };
        if let Some(id) = current {
            if self.slots.get(&id).is_some_and(|s| s.node == Some(c.node)) {
                return Some(id);
            }
            // The coordinator moved: the old connection idles out.
        }
        let addr = self
            .metadata
            .broker(c.node)
            .map_or_else(|| c.address(), |b| b.address());
        if self.backoff.get(&addr).is_some_and(|b| b.until > now) {
            return None;
        }
        let id = self.open(now, addr, Some(c.node));
        match line {
            TxnLine::Txn => self.txn_conn = Some(id),
            TxnLine::Group => self.txn_group_conn = Some(id),
        }
        Some(id)
    }
}
