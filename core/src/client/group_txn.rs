//! The client's side of the group-transact session
//! ([`GroupTxnSession`](crate::txn::GroupTxnSession)): ending a session's
//! transaction (the offsets of what was polled, then a commit only if
//! nothing made it doubtful), acknowledging rebalance steps (holding a
//! revoke met in a transaction until its end), and applying the end
//! (marking committed offsets, or rewinding the consumer). The
//! acknowledgement of group events is in `group.rs`, where they come out.
//!
//! Kept apart from `txn.rs` and `group.rs` so the session's wiring is one
//! place: they call in here at the end, at each group event and at each
//! ended transaction.

use super::Client;
use crate::producer::ProduceError;
use crate::time::Timestamp;
use crate::txn::{GroupMetadata, TransactionOutcome, TxnEnd, TxnError, TxnState};

impl Client {
    /// `end_transaction` in a group-transact session: a commit sends the
    /// offsets of everything polled in the transaction and commits, unless
    /// the abort flag or an abortable error says abort.
    pub(super) fn end_group_transaction(
        &mut self,
        now: Timestamp,
        how: TxnEnd,
    ) -> Result<u64, TxnError> {
        let (Some(t), Some(s), Some(g)) = (&mut self.txn, &mut self.group_txn, &self.group) else {
            return Err(TxnError::NotTransactional);
        };
        let doubtful = s.abort_cause().is_some() || t.state() == TxnState::MustAbort;
        let commit = how == TxnEnd::Commit && !doubtful;
        let mut offsets = std::collections::BTreeMap::new();
        if commit {
            offsets = g.uncommitted_owned();
            let group = GroupMetadata {
                group_id: g.config().group_id.clone(),
                generation_id: g.generation(),
                member_id: g.member_id().to_owned(),
                instance_id: g.config().instance_id.clone(),
            };
            t.send_offsets(offsets.clone(), group)?;
        } else if how == TxnEnd::Commit {
            tracing::info!(
                cause = ?s.abort_cause().or(t.abortable_error()),
                "group-transact session aborts instead of committing"
            );
        }
        let id = t.end(
            now,
            if commit {
                TxnEnd::Commit
            } else {
                TxnEnd::Abort
            },
        )?;
        s.on_end_started(id, offsets);
        if commit {
            t.require_group_check();
        }
        if commit {
            self.producer.flush();
        } else {
            self.producer.fail_unsent(ProduceError::TransactionAborted);
        }
        Ok(id)
    }

    /// A session's commit, its offsets in the transaction, heartbeats
    /// before its EndTxn (semantics.md: a rebalance that began meanwhile
    /// makes the commit doubtful, so it aborts instead).
    pub(super) fn drive_group_check(&mut self, now: Timestamp) {
        let (Some(t), Some(s), Some(g)) = (&mut self.txn, &mut self.group_txn, &mut self.group)
        else {
            return;
        };
        if t.wants_group_check() {
            g.check_membership(now);
        }
        match g.take_membership_check() {
            Some(Ok(())) => t.group_check_passed(),
            Some(Err(error)) => {
                if s.set_abort(TxnError::GroupCheckFailed(error)) {
                    tracing::info!(%error, "heartbeat before the commit failed; aborting");
                    t.set_abortable(TxnError::GroupCheckFailed(error));
                } else {
                    t.group_check_passed();
                }
            }
            None => {}
        }
    }

    /// In a group-transact session: a revoke or loss of partitions met
    /// during the open transaction waits for its end (which will abort).
    /// The application must end the transaction for the group to go on,
    /// so a caller waiting for records of those partitions is told now.
    pub fn transaction_holds_rebalance(&self) -> bool {
        self.group_txn
            .as_ref()
            .is_some_and(crate::txn::GroupTxnSession::holds_rebalance)
    }

    /// A transaction ended: in a session, commits the offsets it carried
    /// into the member's books or rewinds the consumer to the committed
    /// offsets, and lets a held revoke go on. Returns the outcome for the
    /// application.
    pub(super) fn session_on_ended(&mut self, outcome: TransactionOutcome) -> TransactionOutcome {
        let Some(s) = &mut self.group_txn else {
            return outcome;
        };
        let Some(end) = s.on_ended(outcome.clone()) else {
            return outcome;
        };
        let now = self.now;
        if let Some(g) = &mut self.group {
            g.on_txn_committed(&end.committed);
            if end.rewind {
                let at = g.rewind_to_committed();
                let owned = at
                    .iter()
                    .map(|(t, ps)| (t.clone(), ps.keys().copied().collect()))
                    .collect();
                tracing::info!(
                    ?at,
                    "transaction aborted: rewinding to the committed offsets"
                );
                // Dropping the cursors drops their buffered records too:
                // nothing polled past the committed offsets survives.
                self.consumer.revoke_group_partitions(&owned);
                self.consumer.assign_group_partitions(at);
                self.fetches_signalled = self.consumer.has_buffered();
            }
            if end.release {
                g.allow_rebalance(now);
                g.handle_timeout(now);
            }
        }
        end.outcome
    }
}
