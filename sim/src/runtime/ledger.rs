//! [`AtLeastOnce`]: a process-then-commit loop's promise, checked.

use std::collections::BTreeMap;

use sansa_core::consumer::ConsumedRecord;

use super::SimHandle;

/// A broken promise of a process-then-commit loop.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Breach {
    /// A record in the log that no member processed.
    NeverProcessed {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
    },
    /// A record processed again although the group had already committed
    /// past it: work redone that a commit said was done.
    ProcessedAgainAfterCommit {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// The group's committed offset when it was processed again.
        committed: i64,
    },
}

/// What a consumer group's members processed, checked against its
/// commits: at least once, and again only what was not committed.
///
/// The application tells the ledger each record it has processed (after
/// the processing's effect). Each time, the ledger reads the group's
/// committed offset of that partition at the coordinator:
///
/// - **Again only within uncommitted work.** A record processed a second
///   time must not be below the group's committed offset at that moment:
///   redoing work is allowed only for what no commit covered yet (a
///   member crashed, or lost the partition, between processing and
///   committing).
/// - **At least once.** At the end, every record in the logs of the
///   group's topics was processed by some member.
///
/// A loop that commits before it processes breaks the second rule when a
/// member crashes mid-batch; one that lets a rebalance complete while it
/// still processes what it polled can break the first. Offsets of the
/// logs are taken as records one to one: topics written without
/// transactions (no control records).
#[derive(Debug, Clone)]
pub struct AtLeastOnce {
    group: String,
    /// Topic, partition, offset: how often processed.
    processed: BTreeMap<(String, i32), BTreeMap<i64, u32>>,
    breaches: Vec<Breach>,
    duplicates: u64,
    total: u64,
}

impl AtLeastOnce {
    /// A ledger for consumer group `group`.
    pub fn new(group: impl Into<String>) -> Self {
        AtLeastOnce {
            group: group.into(),
            processed: BTreeMap::new(),
            breaches: Vec::new(),
            duplicates: 0,
            total: 0,
        }
    }

    /// The application processed `record`: call it once the processing's
    /// effect is done.
    pub fn processed(&mut self, sim: &SimHandle, record: &ConsumedRecord) {
        self.processed_at(sim, &record.topic, record.partition, record.offset);
    }

    /// [`AtLeastOnce::processed`] by coordinates.
    pub fn processed_at(&mut self, sim: &SimHandle, topic: &str, partition: i32, offset: i64) {
        self.total += 1;
        let times = self
            .processed
            .entry((topic.to_owned(), partition))
            .or_default()
            .entry(offset)
            .or_insert(0);
        *times += 1;
        if *times == 1 {
            return;
        }
        self.duplicates += 1;
        let committed = sim.committed_offset(&self.group, topic, partition);
        if let Some(committed) = committed.filter(|&c| c > offset) {
            self.breaches.push(Breach::ProcessedAgainAfterCommit {
                topic: topic.to_owned(),
                partition,
                offset,
                committed,
            });
        }
    }

    /// Records processed, duplicates included.
    pub fn processed_count(&self) -> u64 {
        self.total
    }

    /// Records processed more than once (each extra time counts).
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Records of the logs of `topics` no member processed yet.
    pub fn unprocessed(&self, sim: &SimHandle, topics: &[&str]) -> Vec<Breach> {
        let mut missing = Vec::new();
        sim.with_world(|w| {
            for t in w.cluster().topics().filter(|t| topics.contains(&t.name())) {
                for p in t.partitions() {
                    let log = p.log();
                    let done = self.processed.get(&(t.name().to_owned(), p.index()));
                    for offset in log.log_start_offset()..log.high_watermark() {
                        if !done.is_some_and(|d| d.contains_key(&offset)) {
                            missing.push(Breach::NeverProcessed {
                                topic: t.name().to_owned(),
                                partition: p.index(),
                                offset,
                            });
                        }
                    }
                }
            }
        });
        missing
    }

    /// Every broken promise: records processed again after a commit
    /// covered them, and (at the end of a run) records of `topics` never
    /// processed.
    pub fn check(&self, sim: &SimHandle, topics: &[&str]) -> Vec<Breach> {
        let mut all = self.breaches.clone();
        all.extend(self.unprocessed(sim, topics));
        all
    }
}
