//! Transactional producers in the world: each runs a loop over a plan of
//! transactions (begin; produce part of the records; stay open a while;
//! produce the rest; commit or abort), as an application would, under
//! whatever faults the world draws. What they promise is checked by
//! [`invariants::txn`](crate::invariants::txn).
//!
//! The loop follows the producer's state rather than a clock: a turn that
//! finds the last transaction still ending comes back later; a producer
//! closed by a fatal error (fenced, say) is replaced by a new client with
//! the same configuration, as franz-go's documentation tells applications
//! to do; a restarted producer's open transaction is gone (its new
//! incarnation's InitProducerId aborts it), so the loop moves on.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use sansa_core::client::ConfigBuilder;
use sansa_core::protocol::{ApiKey, ErrorCode};
use sansa_core::txn::{TxnEnd, TxnState};

use super::{ClientClock, ClientIdx, Ev, Fault, Running, Work, World};
use crate::cluster::{offsets_partition_for, TRANSACTION_STATE_TOPIC};

/// How soon a turn that must wait (for an end, a restart) comes back.
const WAIT: Duration = Duration::from_millis(20);

/// Errors the world injects into transaction requests (each answers one
/// request of its API instead of the coordinator): the coordinator
/// loading or moving, a concurrent transaction still ending, and one
/// abortable refusal.
pub const INJECTABLE_TXN_ERRORS: &[(ApiKey, ErrorCode)] = &[
    (ApiKey::InitProducerId, ErrorCode::CoordinatorLoadInProgress),
    (ApiKey::InitProducerId, ErrorCode::NotCoordinator),
    (ApiKey::InitProducerId, ErrorCode::ConcurrentTransactions),
    (
        ApiKey::AddPartitionsToTxn,
        ErrorCode::ConcurrentTransactions,
    ),
    (ApiKey::AddPartitionsToTxn, ErrorCode::NotCoordinator),
    (
        ApiKey::AddPartitionsToTxn,
        ErrorCode::CoordinatorLoadInProgress,
    ),
    (
        ApiKey::AddPartitionsToTxn,
        ErrorCode::TopicAuthorizationFailed,
    ),
    (ApiKey::AddOffsetsToTxn, ErrorCode::ConcurrentTransactions),
    (ApiKey::TxnOffsetCommit, ErrorCode::ConcurrentTransactions),
    (ApiKey::EndTxn, ErrorCode::ConcurrentTransactions),
    (ApiKey::EndTxn, ErrorCode::NotCoordinator),
    (ApiKey::EndTxn, ErrorCode::CoordinatorLoadInProgress),
];

/// A planned record: topic, key, padding bytes of the value.
pub type PlannedRecord = (String, Option<Bytes>, usize);

/// One planned transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTxn {
    /// Its records.
    pub records: Vec<PlannedRecord>,
    /// How long it stays open between its first and second half.
    pub open_for: Duration,
    /// Commit (else abort) at the end.
    pub commit: bool,
}

/// A transactional producer's loop.
#[derive(Debug, Default)]
pub(super) struct TxnLoop {
    plan: VecDeque<PlannedTxn>,
    /// The open transaction's second half and how it ends.
    open: Option<(Vec<PlannedRecord>, bool)>,
}

impl World {
    /// Adds a transactional producer (`config` must set a transactional
    /// id) that runs `plan` from `start` on; returns its index.
    pub fn add_txn_producer(
        &mut self,
        config: ConfigBuilder,
        clock: ClientClock,
        plan: Vec<PlannedTxn>,
        start: Duration,
    ) -> Result<ClientIdx, String> {
        let c = self.add_client_with_clock(config, clock)?;
        if self.clients[c].client.transaction_state().is_none() {
            return Err(format!("c{c} has no transactional id"));
        }
        self.txn_producers.insert(
            c,
            TxnLoop {
                plan: plan.into(),
                open: None,
            },
        );
        self.schedule_work(start, Work::TxnTurn(c));
        Ok(c)
    }

    /// One turn of transactional producer `c`'s loop.
    pub(super) fn txn_turn(&mut self, c: ClientIdx) {
        let Some(sc) = self.clients.get(c) else {
            return;
        };
        if sc.running == Running::Crashed {
            // The loop goes on with the restarted producer, if any.
            if self.restart_queued(c) {
                self.schedule_work(WAIT, Work::TxnTurn(c));
            }
            return;
        }
        let Some(state) = sc.client.transaction_state() else {
            return;
        };
        match state {
            TxnState::Failed => {
                self.trace
                    .line(self.now, || format!("c{c} failed fatally: a new producer"));
                if let Some(l) = self.txn_producers.get_mut(&c) {
                    l.open = None;
                }
                self.apply_fault(Fault::CrashClient {
                    client: c,
                    restart_after: Some(Duration::ZERO),
                });
                self.schedule_work(WAIT, Work::TxnTurn(c));
            }
            TxnState::Ending => self.schedule_work(WAIT, Work::TxnTurn(c)),
            TxnState::Ready => self.begin_planned_txn(c),
            TxnState::InTransaction | TxnState::MustAbort => self.end_open_txn(c, state),
        }
    }

    /// Begins the next planned transaction and produces its first half.
    fn begin_planned_txn(&mut self, c: ClientIdx) {
        let Some(l) = self.txn_producers.get_mut(&c) else {
            return;
        };
        // A transaction left open by an earlier incarnation died with it.
        l.open = None;
        let Some(mut next) = l.plan.pop_front() else {
            return;
        };
        let now = self.local_now(c);
        let sc = &mut self.clients[c];
        if let Err(e) = sc.client.begin_transaction(now) {
            self.trace
                .line(self.now, || format!("c{c} cannot begin yet: {e}"));
            if let Some(l) = self.txn_producers.get_mut(&c) {
                l.plan.push_front(next);
            }
            self.schedule_work(WAIT, Work::TxnTurn(c));
            return;
        }
        let checker_id = sc.checker_id;
        self.checker.on_txn_begun(checker_id);
        self.trace.event(self.now, b'b', c as u64, 0, &[]);
        self.trace.line(self.now, || {
            format!(
                "c{c} begins a transaction of {} records",
                next.records.len()
            )
        });
        let rest = next.records.split_off(next.records.len() / 2);
        for (topic, key, filler) in next.records {
            // A refused produce is no promise (the transaction may have
            // turned abortable already).
            let _ = self.produce(c, &topic, key, filler);
        }
        if let Some(l) = self.txn_producers.get_mut(&c) {
            l.open = Some((rest, next.commit));
        }
        self.schedule_work(next.open_for, Work::TxnTurn(c));
    }

    /// Produces the open transaction's second half and ends it: a commit
    /// if planned and still possible, else an abort.
    fn end_open_txn(&mut self, c: ClientIdx, state: TxnState) {
        let (rest, commit) = self
            .txn_producers
            .get_mut(&c)
            .and_then(|l| l.open.take())
            .unwrap_or((Vec::new(), false));
        if state == TxnState::InTransaction {
            for (topic, key, filler) in rest {
                let _ = self.produce(c, &topic, key, filler);
            }
        }
        let now = self.local_now(c);
        let sc = &mut self.clients[c];
        let commit = commit && sc.client.transaction_state() == Some(TxnState::InTransaction);
        let how = if commit {
            TxnEnd::Commit
        } else {
            TxnEnd::Abort
        };
        match sc.client.end_transaction(now, how) {
            Ok(_) => {
                let checker_id = sc.checker_id;
                self.checker.on_txn_end_asked(checker_id, commit);
                self.trace
                    .event(self.now, b'e', c as u64, u64::from(commit), &[]);
                self.trace.line(self.now, || format!("c{c} ends: {how:?}"));
            }
            Err(e) => {
                self.trace
                    .line(self.now, || format!("c{c} cannot end ({how:?}): {e}"));
            }
        }
        self.drain();
        self.schedule_work(WAIT, Work::TxnTurn(c));
    }

    /// Whether a restart of client `c` is queued.
    pub(super) fn restart_queued(&self, c: ClientIdx) -> bool {
        self.queue
            .values()
            .any(|ev| matches!(ev, Ev::Fault(Fault::RestartClient(r)) if *r == c))
    }

    /// A restarted transactional producer's loop goes on, unless a turn
    /// of it is queued already (a crash while stalled drops the turns
    /// that waited for it).
    pub(super) fn resume_txn_loop(&mut self, c: ClientIdx) {
        if !self.txn_producers.contains_key(&c) {
            return;
        }
        let queued = self
            .queue
            .values()
            .any(|ev| matches!(ev, Ev::Work(Work::TxnTurn(t)) if *t == c));
        if !queued {
            self.schedule_work(Duration::ZERO, Work::TxnTurn(c));
        }
    }

    /// Injects a random error of [`INJECTABLE_TXN_ERRORS`] into the next
    /// request of its API.
    pub(super) fn inject_random_txn_error(&mut self) {
        let Some(&(api, code)) = self.fault_rng.pick(INJECTABLE_TXN_ERRORS) else {
            return;
        };
        self.cluster.inject_txn_error(api, code);
        self.trace
            .line(self.now, || format!("fault: next {api:?} answers {code:?}"));
        self.trace.mix(&api.key().to_le_bytes());
        self.count("txn error injected");
    }

    /// Moves the transaction coordinator of a random transactional
    /// producer.
    pub(super) fn move_random_txn_coordinator(&mut self) {
        let ids: Vec<String> = self
            .txn_producers
            .keys()
            .filter_map(|&c| self.clients[c].config.transactional_id.clone())
            .collect();
        let Some(id) = self.fault_rng.pick(&ids).cloned() else {
            return;
        };
        if !self.cluster.ensure_transaction_topic() {
            return;
        }
        let parts = self.cluster.config().transactions.state_partitions;
        let p = offsets_partition_for(&id, parts);
        if self
            .cluster
            .move_leader(TRANSACTION_STATE_TOPIC, p, None)
            .is_some()
        {
            self.trace.line(self.now, || {
                format!("fault: transaction coordinator of {id} moves")
            });
            self.trace.mix(&p.to_le_bytes());
            self.count("txn coordinator move");
        }
    }
}
