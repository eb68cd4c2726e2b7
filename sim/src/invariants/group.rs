//! What consumer-group members promise together, checked against the
//! coordinator's decisions and the logs.
//!
//! Who is who: each client incarnation (a restart is a new one) that is a
//! group member is known by the checker's client index; the member id it
//! has in its group and its generation are read from it as it runs, so a
//! commit the coordinator accepted (named by member id) maps back to the
//! incarnation that sent it.
//!
//! - **One owner.** A partition is never owned by two live members of a
//!   group at once. A member owns what its client reported through
//!   `PartitionsAssigned`, minus what it reported `PartitionsRevoked` or
//!   `PartitionsLost` (and nothing after `GroupLeft`). Live means the
//!   incarnation has not crashed and its current member id is a member of
//!   the group at the coordinator: a member the coordinator expelled (its
//!   session ran out while it stalled, or it missed a rebalance) is not
//!   live, because the coordinator may give its partitions away before
//!   the stalled process can hear about it; that window is what
//!   at-least-once covers, and what the next rule bounds. Under both
//!   protocols a live member must have revoked a partition before another
//!   is assigned it (eager: everything before it rejoins; cooperative:
//!   what the new plan took away, before the generation that moves it).
//! - **Commits by owners.** Every partition of an OffsetCommit the
//!   coordinator accepted was owned by the committing member at some
//!   moment while it was in the group's generation at the time of the
//!   acceptance.
//! - **Commits never move backwards**: each accepted commit of a partition
//!   is at or above the one before it (the world never resets offsets by
//!   hand).
//! - **At-least-once, and nothing committed processed twice.** A record
//!   processed again (by another member, or by the same one after it got
//!   the partition back) by a live member must not be below what an
//!   earlier processor of it had committed when it is processed again
//!   (a member the coordinator expelled while it stalled may process
//!   what it had fetched before it learns it was expelled: Kafka's
//!   zombie window, counted apart, not judged): only uncommitted work
//!   (after a crash, a stall past the session timeout, lost partitions,
//!   a commit that failed) may be redone. Every such duplicate is counted,
//!   with how far it is beyond the group's committed offset (the window
//!   at-least-once allows). At the end of a run that quiesced, every
//!   record the logs hold of a topic a live member subscribes to was
//!   processed by some member of the group.

use std::collections::{BTreeMap, BTreeSet};

use super::{Checker, Violation};
use crate::cluster::{AcceptedCommit, Cluster};

/// A topic-partition.
type Tp = (String, i32);

/// One member incarnation.
#[derive(Debug, Default)]
struct Incarnation {
    group: String,
    member_id: String,
    generation: i32,
    owned: BTreeSet<Tp>,
    crashed: bool,
    /// A member of its group at the coordinator, as of the last check.
    live: bool,
}

/// Figures of the group runs, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupFigures {
    /// Records processed by group members (duplicates included).
    pub processed: u64,
    /// Records processed again (by anyone, the same member included).
    pub duplicates: u64,
    /// Records processed again by a different member incarnation.
    pub duplicates_across_members: u64,
    /// The largest distance of a duplicate beyond the group's committed
    /// offset of its partition when it was processed again, in records
    /// (offset + 1 - committed).
    pub max_duplicate_beyond_commit: i64,
    /// Partitions of OffsetCommits the coordinator accepted.
    pub commits: u64,
    /// Records processed by a member the coordinator had expelled (a
    /// zombie that has not heard yet).
    pub processed_by_expelled: u64,
}

/// The group checkers' state.
#[derive(Debug, Default)]
pub(super) struct Groups {
    incarnations: BTreeMap<usize, Incarnation>,
    /// (group, member id) to the incarnation that had it.
    by_member: BTreeMap<(String, String), usize>,
    /// (group, member id, generation) to every partition the member owned
    /// at some moment while it was in that generation.
    owned_in: BTreeMap<(String, String, i32), BTreeSet<Tp>>,
    /// (group, topic, partition) to its latest accepted commit.
    committed: BTreeMap<(String, Tp), i64>,
    /// (group, topic, partition, incarnation) to the highest offset that
    /// incarnation committed.
    committed_by: BTreeMap<(String, Tp, usize), i64>,
    /// (group, topic, partition) to each processed offset's processors.
    processed: BTreeMap<(String, Tp), BTreeMap<i64, Vec<usize>>>,
    /// Group to topic to partition to one past the highest offset it
    /// processed (read on every step near the end of a run: nested so
    /// that a lookup allocates nothing).
    frontier: BTreeMap<String, BTreeMap<String, BTreeMap<i32, i64>>>,
    figures: GroupFigures,
}

impl Groups {
    fn owned_now(&mut self, client: usize) {
        let Some(inc) = self.incarnations.get(&client) else {
            return;
        };
        if inc.member_id.is_empty() {
            return;
        }
        let key = (inc.group.clone(), inc.member_id.clone(), inc.generation);
        self.owned_in
            .entry(key)
            .or_default()
            .extend(inc.owned.iter().cloned());
    }
}

fn flatten(p: &BTreeMap<String, Vec<i32>>) -> impl Iterator<Item = Tp> + '_ {
    p.iter()
        .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.clone(), p)))
}

impl Checker {
    /// Client incarnation `client` is a member of `group`.
    pub fn add_group_member(&mut self, client: usize, group: &str) {
        self.groups.incarnations.insert(
            client,
            Incarnation {
                group: group.to_owned(),
                generation: -1,
                ..Default::default()
            },
        );
    }

    /// The member id and generation `client` has now (call after every
    /// step, and before each of its group events).
    pub fn note_group_member(&mut self, client: usize, member_id: &str, generation: i32) {
        let Some(inc) = self.groups.incarnations.get_mut(&client) else {
            return;
        };
        if inc.member_id == member_id && inc.generation == generation {
            return;
        }
        inc.member_id = member_id.to_owned();
        inc.generation = generation;
        if !member_id.is_empty() {
            let key = (inc.group.clone(), member_id.to_owned());
            self.groups.by_member.insert(key, client);
        }
        self.groups.owned_now(client);
    }

    /// `client` reported these partitions assigned.
    pub fn on_partitions_assigned(&mut self, client: usize, p: &BTreeMap<String, Vec<i32>>) {
        if let Some(inc) = self.groups.incarnations.get_mut(&client) {
            inc.owned.extend(flatten(p));
        }
        self.groups.owned_now(client);
    }

    /// `client` reported these partitions revoked or lost.
    pub fn on_partitions_given_up(&mut self, client: usize, p: &BTreeMap<String, Vec<i32>>) {
        if let Some(inc) = self.groups.incarnations.get_mut(&client) {
            for tp in flatten(p) {
                inc.owned.remove(&tp);
            }
        }
    }

    /// `client` left its group: it owns nothing.
    pub fn on_group_left(&mut self, client: usize) {
        if let Some(inc) = self.groups.incarnations.get_mut(&client) {
            inc.owned.clear();
        }
    }

    /// Group member `client` processed the record at `offset`.
    pub fn on_processed(&mut self, client: usize, topic: &str, partition: i32, offset: i64) {
        let g = &mut self.groups;
        let Some((group, live)) = g
            .incarnations
            .get(&client)
            .map(|i| (i.group.clone(), i.live))
        else {
            return;
        };
        g.figures.processed += 1;
        if !live {
            g.figures.processed_by_expelled += 1;
        }
        let tp = (topic.to_owned(), partition);
        let key = (group.clone(), tp.clone());
        let before = g
            .processed
            .entry(key.clone())
            .or_default()
            .entry(offset)
            .or_default();
        let earlier = before.clone();
        before.push(client);
        let front = g
            .frontier
            .entry(group.clone())
            .or_default()
            .entry(tp.0.clone())
            .or_default()
            .entry(partition)
            .or_insert(0);
        *front = (*front).max(offset + 1);
        if earlier.is_empty() {
            return;
        }
        g.figures.duplicates += 1;
        if earlier.iter().any(|&e| e != client) {
            g.figures.duplicates_across_members += 1;
        }
        let committed = g.committed.get(&key).copied().unwrap_or(0);
        g.figures.max_duplicate_beyond_commit = g
            .figures
            .max_duplicate_beyond_commit
            .max(offset + 1 - committed);
        if !live {
            return;
        }
        let past: Vec<(usize, i64)> = earlier
            .iter()
            .filter_map(|&e| {
                let c = g.committed_by.get(&(group.clone(), tp.clone(), e))?;
                (*c > offset).then_some((e, *c))
            })
            .collect();
        for (first, committed) in past {
            self.report(Violation::ReprocessedCommitted {
                group: group.clone(),
                topic: tp.0.clone(),
                partition,
                offset,
                first,
                again: client,
                committed,
            });
        }
    }

    /// Offset commits the coordinator accepted, in order.
    pub fn on_accepted_commits(&mut self, commits: Vec<AcceptedCommit>) {
        for c in commits {
            self.groups.figures.commits += 1;
            let tp = (c.topic.clone(), c.partition);
            let who = self
                .groups
                .by_member
                .get(&(c.group.clone(), c.member_id.clone()))
                .copied();
            let owned = self
                .groups
                .owned_in
                .get(&(c.group.clone(), c.member_id.clone(), c.group_generation))
                .is_some_and(|o| o.contains(&tp));
            if !owned {
                self.report(Violation::CommitByNonOwner {
                    group: c.group.clone(),
                    member_id: c.member_id.clone(),
                    generation: c.group_generation,
                    topic: c.topic.clone(),
                    partition: c.partition,
                    offset: c.offset,
                });
            }
            let key = (c.group.clone(), tp.clone());
            if let Some(&before) = self.groups.committed.get(&key) {
                if c.offset < before {
                    self.report(Violation::CommitMovedBackwards {
                        group: c.group.clone(),
                        topic: c.topic.clone(),
                        partition: c.partition,
                        from: before,
                        to: c.offset,
                    });
                }
            }
            self.groups.committed.insert(key, c.offset);
            if let Some(who) = who {
                let by = self
                    .groups
                    .committed_by
                    .entry((c.group.clone(), tp, who))
                    .or_insert(c.offset);
                *by = (*by).max(c.offset);
            }
        }
    }

    /// The group figures so far.
    pub fn group_figures(&self) -> GroupFigures {
        self.groups.figures
    }

    /// One owner: no partition owned by two live members of a group.
    pub(super) fn check_group_ownership(&mut self, cluster: &Cluster) {
        for inc in self.groups.incarnations.values_mut() {
            inc.live = !inc.crashed
                && cluster
                    .group(&inc.group)
                    .is_some_and(|g| g.has_member(&inc.member_id));
        }
        let mut owners: BTreeMap<(&str, &Tp), usize> = BTreeMap::new();
        let mut twice = Vec::new();
        for (&client, inc) in &self.groups.incarnations {
            if !inc.live || inc.owned.is_empty() {
                continue;
            }
            for tp in &inc.owned {
                if let Some(other) = owners.insert((&inc.group, tp), client) {
                    twice.push(Violation::PartitionOwnedTwice {
                        group: inc.group.clone(),
                        topic: tp.0.clone(),
                        partition: tp.1,
                        members: (other, client),
                    });
                }
            }
        }
        for v in twice {
            self.report(v);
        }
    }

    /// A group member crashed: it owns nothing any more.
    pub(super) fn on_group_member_crashed(&mut self, client: usize) {
        if let Some(inc) = self.groups.incarnations.get_mut(&client) {
            inc.crashed = true;
        }
    }

    /// One past the highest offset of `topic`/`partition` that `group`
    /// processed.
    fn group_frontier(&self, group: &str, topic: &str, partition: i32) -> i64 {
        self.groups
            .frontier
            .get(group)
            .and_then(|t| t.get(topic))
            .and_then(|p| p.get(&partition))
            .copied()
            .unwrap_or(0)
    }

    /// Whether `group`'s members read committed data only (then aborted
    /// records are nothing to process).
    fn group_reads_committed(&self, group: &str) -> bool {
        self.groups
            .incarnations
            .iter()
            .filter(|(_, i)| i.group == group)
            .any(|(&c, _)| self.promises.get(c).is_some_and(|p| p.read_committed))
    }

    /// Whether `group` processed up to the high watermark of every
    /// partition of `topics` (a cheap test for the end of a run; the
    /// exact one is [`Checker::group_unprocessed`]).
    pub fn group_caught_up(&self, cluster: &Cluster, group: &str, topics: &[String]) -> bool {
        let committed = self.group_reads_committed(group);
        cluster
            .topics()
            .filter(|t| topics.iter().any(|n| n == t.name()))
            .all(|t| {
                t.partitions().iter().all(|p| {
                    let log = p.log();
                    let frontier = self
                        .group_frontier(group, t.name(), p.index())
                        .max(log.log_start_offset());
                    // Transaction markers at the end are nothing to process.
                    match self.mirrors.get(&(t.name().to_owned(), p.index())) {
                        Some(m) => !m
                            .records
                            .range(frontier..log.high_watermark())
                            .any(|(&o, _)| m.visible(o, committed)),
                        None => frontier >= log.high_watermark(),
                    }
                })
            })
    }

    /// At-least-once: every record the logs hold of `topics` (from each
    /// log start to its high watermark) that `group` never processed, the
    /// first per partition, as violations.
    pub fn group_unprocessed(
        &self,
        cluster: &Cluster,
        group: &str,
        topics: &[String],
    ) -> Vec<Violation> {
        let committed = self.group_reads_committed(group);
        let mut missing = Vec::new();
        for t in cluster
            .topics()
            .filter(|t| topics.iter().any(|n| n == t.name()))
        {
            for p in t.partitions() {
                let log = p.log();
                let tp = (t.name().to_owned(), p.index());
                let done = self.groups.processed.get(&(group.to_owned(), tp.clone()));
                let Some(mirror) = self.mirrors.get(&tp) else {
                    continue;
                };
                let first = mirror
                    .records
                    .range(log.log_start_offset()..log.high_watermark())
                    .map(|(&o, _)| o)
                    .filter(|&o| mirror.visible(o, committed))
                    .find(|o| !done.is_some_and(|d| d.contains_key(o)));
                if let Some(offset) = first {
                    missing.push(Violation::GroupRecordNotProcessed {
                        group: group.to_owned(),
                        topic: tp.0,
                        partition: tp.1,
                        offset,
                    });
                }
            }
        }
        missing
    }
}
