//! The group-transact session: consume from a group, transform, produce,
//! and commit the consumed offsets in the same transaction (franz-go's
//! `GroupTransactSession`), as the abort-on-doubt state the
//! [`Client`](crate::client::Client) keeps beside its group member and its
//! transaction manager.
//!
//! The rules, and the failure each one prevents:
//! - **If it maybe should abort, abort.** A revoke or a loss of partitions
//!   while a transaction is open sets the abort flag: the new owner starts
//!   from the committed offsets and produces the same output again, so
//!   committing ours too would duplicate it. Abortable transaction errors
//!   (a failed TxnOffsetCommit: ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS,
//!   a moved or busy coordinator, CONCURRENT_TRANSACTIONS) do the same
//!   through the manager. Reprocessing after a needless abort costs time;
//!   a wrong commit costs correctness.
//! - **A revoke waits for the end.** A revoke or loss met during a
//!   transaction is held (the member completes no revoke and sends no
//!   JoinGroup) until the transaction ended, as franz-go's revoke hook
//!   blocks on the session: the partitions cannot reach their new owner
//!   while our transaction may still commit output for them, and with
//!   KIP-447 the new owner's OffsetFetch (require_stable) waits for our
//!   pending offsets anyway.
//! - **End(try commit)** flushes, sends the offsets of everything polled
//!   in the transaction (AddOffsetsToTxn, then TxnOffsetCommit with the
//!   generation, member id and instance id, KIP-447: a member fenced by a
//!   rebalance cannot commit), and commits only if the flag is still
//!   clear when EndTxn goes out; else it aborts. The end reports whether
//!   it committed.
//! - **After an abort, consumption rewinds** every owned partition to its
//!   committed offset and forgets what was polled: the aborted output is
//!   produced again, once, in a later transaction (franz-go #729 is the
//!   failure of an abort that did not abort; an abort must also never
//!   keep the polled positions).
//! - **A commit the coordinator confirmed is a commit** even when an
//!   earlier attempt's answer was lost (franz-go #1052: the end reported
//!   an error though the offsets were committed, and the rewind then
//!   produced the output twice): the outcome is the EndTxn answer that
//!   finally came, and a commit in doubt (no answer ever, a fatal error)
//!   never rewinds: the producer is closed and a new client starts from
//!   the coordinator's committed offsets.
//! - No offsets are committed outside transactions: the member runs with
//!   auto-commit and commit-on-revoke off.

use std::collections::BTreeMap;

use super::{TransactionOutcome, TxnError};
use crate::group::{EpochOffset, GroupEvent, TopicPartition};

/// The session's state; see the [module docs](self).
#[derive(Debug, Default)]
pub struct GroupTxnSession {
    /// A transaction is open or ending.
    in_txn: bool,
    /// Why the open transaction must abort, once something made a commit
    /// doubtful.
    abort: Option<TxnError>,
    /// A revoke or loss is held until the transaction ends.
    holding: bool,
    /// The end in progress.
    ending: Option<Ending>,
    /// Test only: commit despite revokes (the checker's own test).
    sabotage: bool,
}

#[derive(Debug)]
struct Ending {
    id: u64,
    /// The offsets sent with a commit.
    offsets: BTreeMap<TopicPartition, EpochOffset>,
}

/// What the client does once a session's transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnded {
    /// The outcome for the application, with the session's abort reason.
    pub outcome: TransactionOutcome,
    /// The offsets the commit made the group's committed ones.
    pub committed: BTreeMap<TopicPartition, EpochOffset>,
    /// Rewind every owned partition to its committed offset.
    pub rewind: bool,
    /// Let a held revoke or loss go on.
    pub release: bool,
}

impl GroupTxnSession {
    /// A session with nothing open.
    pub fn new() -> Self {
        Self::default()
    }

    /// FOR TESTS ONLY: the session ignores revokes and losses (no abort,
    /// no hold), so a simulator can prove its exactly-once checker catches
    /// the duplicates that follow.
    #[doc(hidden)]
    pub fn sabotage_commit_despite_revoke(&mut self) {
        self.sabotage = true;
    }

    /// A transaction opened.
    pub fn begin(&mut self) {
        self.in_txn = true;
        self.abort = None;
    }

    /// Something other than a group event made the open transaction
    /// doubtful (the heartbeat before the commit failed); `false` when
    /// the session ignores it (no transaction open, or sabotaged).
    pub fn set_abort(&mut self, cause: TxnError) -> bool {
        if !self.in_txn || self.sabotage {
            return false;
        }
        self.abort.get_or_insert(cause);
        true
    }

    /// A revoke or loss met during the open transaction waits for its
    /// end.
    pub fn holds_rebalance(&self) -> bool {
        self.holding
    }

    /// Why the open transaction must abort, if it must.
    pub fn abort_cause(&self) -> Option<&TxnError> {
        self.abort.as_ref()
    }

    /// A group event; `true` when the member may go on at once (the
    /// session holds a revoke or loss met during a transaction).
    pub fn on_group_event(&mut self, event: &GroupEvent) -> bool {
        let (cause, partitions) = match event {
            GroupEvent::PartitionsRevoked(p) => (TxnError::PartitionsRevoked, p),
            GroupEvent::PartitionsLost(p) => (TxnError::PartitionsLost, p),
            _ => return true,
        };
        if partitions.is_empty() || self.sabotage || !self.in_txn {
            return true;
        }
        tracing::info!(%cause, "transaction will abort; the rebalance waits for its end");
        self.abort.get_or_insert(cause);
        self.holding = true;
        false
    }

    /// The end `id` started; `offsets` are those sent with a commit.
    pub fn on_end_started(&mut self, id: u64, offsets: BTreeMap<TopicPartition, EpochOffset>) {
        self.ending = Some(Ending { id, offsets });
    }

    /// Whether `id` is this session's end.
    pub fn is_ending(&self, id: u64) -> bool {
        self.ending.as_ref().is_some_and(|e| e.id == id)
    }

    /// A transaction ended: what the client must do. `None` if it was
    /// not the session's end.
    pub fn on_ended(&mut self, mut outcome: TransactionOutcome) -> Option<SessionEnded> {
        if !self.is_ending(outcome.id) {
            return None;
        }
        let ending = self.ending.take()?;
        let cause = self.abort.take();
        if !outcome.committed && outcome.error.is_none() {
            outcome.error = cause;
        }
        self.in_txn = false;
        let release = std::mem::take(&mut self.holding);
        let committed = if outcome.committed {
            ending.offsets
        } else {
            BTreeMap::new()
        };
        let rewind = !outcome.committed && !outcome.commit_in_doubt;
        Some(SessionEnded {
            outcome,
            committed,
            rewind,
            release,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> BTreeMap<String, Vec<i32>> {
        BTreeMap::from([("in".to_owned(), vec![0])])
    }

    fn outcome(id: u64, committed: bool) -> TransactionOutcome {
        TransactionOutcome {
            id,
            committed,
            error: None,
            commit_in_doubt: false,
        }
    }

    fn offsets() -> BTreeMap<TopicPartition, EpochOffset> {
        BTreeMap::from([(
            ("in".to_owned(), 0),
            EpochOffset {
                offset: 7,
                leader_epoch: 0,
            },
        )])
    }

    #[test]
    fn a_revoke_during_a_transaction_sets_the_abort_flag_and_is_held_until_the_end() {
        let mut s = GroupTxnSession::new();
        s.begin();
        assert!(!s.holds_rebalance());
        assert!(!s.on_group_event(&GroupEvent::PartitionsRevoked(parts())));
        assert_eq!(s.abort_cause(), Some(&TxnError::PartitionsRevoked));
        assert!(s.holds_rebalance(), "held: waiting callers must be told");
        s.on_end_started(3, BTreeMap::new());
        let end = s.on_ended(outcome(3, false)).expect("the session's end");
        assert!(end.release && end.rewind);
        assert!(!s.holds_rebalance(), "released at the end");
        assert_eq!(end.outcome.error, Some(TxnError::PartitionsRevoked));
        // The next transaction starts clean.
        s.begin();
        assert_eq!(s.abort_cause(), None);
    }

    #[test]
    fn a_loss_sets_the_flag_but_events_outside_a_transaction_or_empty_revokes_do_not() {
        let mut s = GroupTxnSession::new();
        assert!(s.on_group_event(&GroupEvent::PartitionsRevoked(parts())));
        s.begin();
        assert!(s.on_group_event(&GroupEvent::PartitionsRevoked(BTreeMap::new())));
        assert!(s.on_group_event(&GroupEvent::PartitionsAssigned(parts())));
        assert_eq!(s.abort_cause(), None);
        assert!(!s.on_group_event(&GroupEvent::PartitionsLost(parts())));
        assert_eq!(s.abort_cause(), Some(&TxnError::PartitionsLost));
    }

    #[test]
    fn a_commit_marks_its_offsets_committed_and_never_rewinds() {
        let mut s = GroupTxnSession::new();
        s.begin();
        s.on_end_started(1, offsets());
        let end = s.on_ended(outcome(1, true)).expect("the session's end");
        assert_eq!(end.committed, offsets());
        assert!(!end.rewind && !end.release);
    }

    #[test]
    fn a_commit_in_doubt_does_not_rewind_and_other_ends_are_not_the_session_s() {
        let mut s = GroupTxnSession::new();
        s.begin();
        s.on_end_started(1, offsets());
        assert_eq!(s.on_ended(outcome(0, true)), None);
        let mut o = outcome(1, false);
        o.commit_in_doubt = true;
        let end = s.on_ended(o).expect("the session's end");
        assert!(!end.rewind && end.committed.is_empty());
    }

    #[test]
    fn the_sabotaged_session_ignores_revokes() {
        let mut s = GroupTxnSession::new();
        s.sabotage_commit_despite_revoke();
        s.begin();
        assert!(s.on_group_event(&GroupEvent::PartitionsRevoked(parts())));
        assert_eq!(s.abort_cause(), None);
    }
}
