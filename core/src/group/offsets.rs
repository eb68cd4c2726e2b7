//! What a group member has polled and committed, per partition: the book
//! behind auto-commit, commit on revoke and manual commits.
//!
//! franz-go's model: a poll moves each partition's *dirty* position (the
//! latest poll) to *head* (polled before the latest poll, so processed by
//! an application that polls in a loop), and records the new dirty one.
//! Auto-commit commits heads; `commit_uncommitted_offsets`, the revoke and
//! the close commit dirty positions (everything polled).
//!
//! Committed offsets never move backwards unless the application asks: a
//! position at or below what is committed or being committed is left out
//! of a commit, so a late auto-commit cannot undo a newer manual one.

use std::collections::BTreeMap;

/// One partition of one topic.
pub type TopicPartition = (String, i32);

/// A position to commit: the next offset to consume, and the leader epoch
/// of the record before it (`-1` when unknown), for KIP-320 truncation
/// checks by whoever resumes from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record, `-1` if unknown.
    pub leader_epoch: i32,
}

/// The positions to commit past these records: per partition, the offset
/// after the highest record given, with that record's leader epoch
/// (franz-go's `CommitRecords`).
pub fn positions_after(
    records: &[crate::consumer::ConsumedRecord],
) -> BTreeMap<TopicPartition, EpochOffset> {
    let mut offsets: BTreeMap<TopicPartition, EpochOffset> = BTreeMap::new();
    for r in records {
        let at = EpochOffset {
            offset: r.offset.saturating_add(1),
            leader_epoch: r.leader_epoch,
        };
        offsets
            .entry((r.topic.to_string(), r.partition))
            .and_modify(|e| {
                if e.offset < at.offset {
                    *e = at;
                }
            })
            .or_insert(at);
    }
    offsets
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    dirty: Option<EpochOffset>,
    head: Option<EpochOffset>,
    committed: Option<EpochOffset>,
    committing: Option<EpochOffset>,
}

impl Entry {
    /// The highest offset committed or on its way.
    fn floor(&self) -> i64 {
        let c = self.committed.map_or(-1, |c| c.offset);
        let p = self.committing.map_or(-1, |c| c.offset);
        c.max(p)
    }
}

/// Polled and committed positions of the partitions a member owns.
#[derive(Debug, Default)]
pub struct OffsetBook {
    parts: BTreeMap<TopicPartition, Entry>,
}

impl OffsetBook {
    /// Starts tracking a newly assigned partition; `committed` is what the
    /// group had committed for it, if anything.
    pub fn track(&mut self, tp: TopicPartition, committed: Option<EpochOffset>) {
        let e = self.parts.entry(tp).or_default();
        e.committed = committed;
    }

    /// Stops tracking a partition (revoked or lost).
    pub fn forget(&mut self, tp: &TopicPartition) {
        self.parts.remove(tp);
    }

    /// Whether the partition is tracked.
    pub fn is_tracked(&self, tp: &TopicPartition) -> bool {
        self.parts.contains_key(tp)
    }

    /// Records a poll: every dirty position becomes a head, then `polled`
    /// (positions after the last record handed out, per partition) become
    /// the dirty ones. Untracked partitions are ignored.
    pub fn on_polled<'a>(&mut self, polled: impl IntoIterator<Item = (&'a str, i32, EpochOffset)>) {
        for e in self.parts.values_mut() {
            if e.dirty.is_some() {
                e.head = e.dirty;
            }
        }
        for (topic, partition, at) in polled {
            if let Some(e) = self.parts.get_mut(&(topic.to_string(), partition)) {
                if e.dirty.is_none_or(|d| d.offset < at.offset) {
                    e.dirty = Some(at);
                }
            }
        }
    }

    /// Records from `first` on were polled but never reached the
    /// application: the dirty position goes back to `first` (never the
    /// head, which was polled before: `first` is at or above it). The
    /// leader epoch of the record before `first` is kept when the head
    /// names it, else unknown (-1).
    pub fn unpoll(&mut self, topic: &str, partition: i32, first: i64) {
        let Some(e) = self.parts.get_mut(&(topic.to_string(), partition)) else {
            return;
        };
        if e.dirty.is_some_and(|d| d.offset > first) {
            let leader_epoch = e
                .head
                .filter(|h| h.offset == first)
                .map_or(-1, |h| h.leader_epoch);
            e.dirty = Some(EpochOffset {
                offset: first,
                leader_epoch,
            });
        }
    }

    /// Heads above what is committed: what auto-commit commits.
    pub fn heads_to_commit(&self) -> BTreeMap<TopicPartition, EpochOffset> {
        self.above_floor(|e| e.head)
    }

    /// Everything polled above what is committed.
    pub fn uncommitted(&self) -> BTreeMap<TopicPartition, EpochOffset> {
        self.above_floor(|e| e.dirty)
    }

    fn above_floor(
        &self,
        pick: impl Fn(&Entry) -> Option<EpochOffset>,
    ) -> BTreeMap<TopicPartition, EpochOffset> {
        self.parts
            .iter()
            .filter_map(|(tp, e)| {
                let at = pick(e)?;
                (at.offset > e.floor()).then(|| (tp.clone(), at))
            })
            .collect()
    }

    /// Keeps only the tracked partitions, and unless `allow_backwards`,
    /// only positions above what is committed or being committed.
    pub fn filter_commit(
        &self,
        offsets: BTreeMap<TopicPartition, EpochOffset>,
        allow_backwards: bool,
    ) -> BTreeMap<TopicPartition, EpochOffset> {
        offsets
            .into_iter()
            .filter(|(tp, at)| {
                self.parts
                    .get(tp)
                    .is_some_and(|e| allow_backwards || at.offset > e.floor())
                    && at.offset >= 0
            })
            .collect()
    }

    /// Marks positions as being committed.
    pub fn on_commit_sent(&mut self, offsets: &BTreeMap<TopicPartition, EpochOffset>) {
        for (tp, at) in offsets {
            if let Some(e) = self.parts.get_mut(tp) {
                e.committing = Some(*at);
            }
        }
    }

    /// Settles a sent position: committed when `ok`, else forgotten.
    pub fn on_commit_done(&mut self, tp: &TopicPartition, at: EpochOffset, ok: bool) {
        let Some(e) = self.parts.get_mut(tp) else {
            return;
        };
        if e.committing == Some(at) {
            e.committing = None;
        }
        if ok {
            e.committed = Some(at);
        }
    }

    /// Forgets what was polled of `tp` (a group-transact session aborted:
    /// consumption rewinds to the committed offset, so nothing polled
    /// before may be committed).
    pub fn forget_polled(&mut self, tp: &TopicPartition) {
        if let Some(e) = self.parts.get_mut(tp) {
            e.dirty = None;
            e.head = None;
        }
    }

    /// `at` is committed for `tp` (by a transaction that committed).
    pub fn set_committed(&mut self, tp: &TopicPartition, at: EpochOffset) {
        if let Some(e) = self.parts.get_mut(tp) {
            e.committed = Some(at);
        }
    }

    /// What is known committed for a partition.
    pub fn committed(&self, tp: &TopicPartition) -> Option<EpochOffset> {
        self.parts.get(tp).and_then(|e| e.committed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(offset: i64) -> EpochOffset {
        EpochOffset {
            offset,
            leader_epoch: 0,
        }
    }

    fn tp(p: i32) -> TopicPartition {
        ("t".to_string(), p)
    }

    #[test]
    fn auto_commit_takes_only_what_was_polled_before_the_latest_poll() {
        let mut b = OffsetBook::default();
        b.track(tp(0), None);
        b.on_polled([("t", 0, at(10))]);
        assert!(
            b.heads_to_commit().is_empty(),
            "the first poll is still in the user's hands"
        );
        assert_eq!(b.uncommitted().get(&tp(0)), Some(&at(10)));
        b.on_polled([("t", 0, at(20))]);
        assert_eq!(b.heads_to_commit().get(&tp(0)), Some(&at(10)));
        // A poll that returns nothing for the partition still moves its head.
        b.on_polled([]);
        assert_eq!(b.heads_to_commit().get(&tp(0)), Some(&at(20)));
    }

    #[test]
    fn commits_never_go_backwards_unless_asked() {
        let mut b = OffsetBook::default();
        b.track(tp(0), Some(at(50)));
        let ask: BTreeMap<_, _> = [(tp(0), at(40)), (tp(1), at(1))].into();
        assert!(
            b.filter_commit(ask.clone(), false).is_empty(),
            "backwards and unowned dropped"
        );
        assert_eq!(
            b.filter_commit(ask, true).len(),
            1,
            "backwards on request; unowned never"
        );
        let fwd: BTreeMap<_, _> = [(tp(0), at(60))].into();
        b.on_commit_sent(&fwd);
        // While 60 is on its way, 55 would move the commit backwards.
        assert!(b.filter_commit([(tp(0), at(55))].into(), false).is_empty());
        b.on_commit_done(&tp(0), at(60), true);
        assert_eq!(b.committed(&tp(0)), Some(at(60)));
        b.on_commit_sent(&[(tp(0), at(70))].into());
        b.on_commit_done(&tp(0), at(70), false);
        assert_eq!(
            b.committed(&tp(0)),
            Some(at(60)),
            "a failed commit commits nothing"
        );
    }

    #[test]
    fn untracked_partitions_are_never_recorded() {
        let mut b = OffsetBook::default();
        b.on_polled([("t", 3, at(5))]);
        assert!(b.uncommitted().is_empty());
        b.track(tp(3), None);
        b.on_polled([("t", 3, at(5))]);
        b.forget(&tp(3));
        assert!(b.uncommitted().is_empty());
    }

    #[test]
    fn a_transaction_s_commit_sets_the_floor_and_an_abort_forgets_what_was_polled() {
        let mut b = OffsetBook::default();
        b.track(tp(0), Some(at(5)));
        b.on_polled([("t", 0, at(10))]);
        b.set_committed(&tp(0), at(10));
        assert!(b.uncommitted().is_empty(), "committed by the transaction");
        b.on_polled([("t", 0, at(15))]);
        b.on_polled([("t", 0, at(20))]);
        b.forget_polled(&tp(0));
        assert!(
            b.uncommitted().is_empty() && b.heads_to_commit().is_empty(),
            "after an abort nothing polled may be committed"
        );
        assert_eq!(b.committed(&tp(0)), Some(at(10)));
    }
}
