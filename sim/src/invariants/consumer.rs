//! What a consumer promises, checked against the logs.
//!
//! - **Offsets rise.** In each partition, every record a consumer is
//!   handed has a higher offset than the one before it.
//! - **The log's record.** A record handed out is the one the log holds at
//!   its offset (same value).
//! - **Nothing skipped.** Between two records handed out (or before the
//!   first one), every offset the log held when the later one was handed
//!   out, and still holds from its log start on, was handed out: only
//!   retention may take records from under a consumer.
//! - **Catching up.** After the cluster heals, a live consumer reaches
//!   every partition's high watermark (checked at the end, as liveness).
//!
//! These hold for the simulator's consumers, which read from the earliest
//! offset and reset to the earliest offset, with no truncating elections
//! (only sabotage truncates). Transaction markers are never handed out,
//! and a read_committed consumer passes over aborted transactions' records
//! too: neither counts as skipped. What a read_committed consumer may be
//! handed at all is [`txn`](super::txn)'s business.

/// A partition's bounds when a record of it was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    /// The log start offset.
    pub log_start: i64,
    /// The last stable offset.
    pub last_stable: i64,
}

use bytes::Bytes;

use super::{show, Checker, Violation};
use crate::cluster::Cluster;

/// What consumers were handed so far.
#[derive(Debug, Default)]
pub(super) struct Consumption {
    /// Per (consumer, topic, partition): the last offset handed out.
    last: std::collections::BTreeMap<(usize, String, i32), i64>,
    /// Records handed out since the last check, verified once the
    /// mirrors have read the logs.
    pending: Vec<Handed>,
    /// Records handed out, in all.
    count: u64,
}

/// One record handed to a consumer.
#[derive(Debug)]
struct Handed {
    client: usize,
    topic: String,
    partition: i32,
    offset: i64,
    value: Option<Bytes>,
    /// The offset handed out before in this partition.
    previous: Option<i64>,
    /// The partition's bounds when it was handed out.
    bounds: LogBounds,
}

impl Checker {
    /// Consumer `client` was handed the record at `offset` of
    /// `topic`/`partition`; `bounds` are the partition's now.
    pub fn on_consumed(
        &mut self,
        client: usize,
        topic: &str,
        partition: i32,
        offset: i64,
        value: Option<Bytes>,
        bounds: LogBounds,
    ) {
        self.consumption.count += 1;
        let key = (client, topic.to_owned(), partition);
        let previous = self.consumption.last.get(&key).copied();
        if let Some(previous) = previous.filter(|&p| offset <= p) {
            self.report(Violation::ConsumedOutOfOrder {
                client,
                topic: key.1,
                partition,
                previous,
                offset,
            });
            return;
        }
        self.consumption.last.insert(key, offset);
        self.consumption.pending.push(Handed {
            client,
            topic: topic.to_owned(),
            partition,
            offset,
            value,
            previous,
            bounds,
        });
    }

    /// Records handed to consumers so far.
    pub fn consumed_count(&self) -> u64 {
        self.consumption.count
    }

    /// The next offset consumer `client` would be handed in
    /// `topic`/`partition`, if it was handed any record of it.
    pub fn consumer_position(&self, client: usize, topic: &str, partition: i32) -> Option<i64> {
        self.consumption
            .last
            .get(&(client, topic.to_owned(), partition))
            .map(|&o| o + 1)
    }

    /// Whether consumer `client` has been handed every record up to the
    /// high watermark of each partition of `topics`; the partitions it
    /// lags in otherwise, as violations.
    pub fn consumer_lag(
        &self,
        cluster: &Cluster,
        client: usize,
        topics: &[String],
    ) -> Vec<Violation> {
        let mut behind = Vec::new();
        for t in cluster
            .topics()
            .filter(|t| topics.iter().any(|n| n == t.name()))
        {
            let read_committed = self.promises.get(client).is_some_and(|p| p.read_committed);
            for p in t.partitions() {
                let log = p.log();
                let position = self
                    .consumer_position(client, t.name(), p.index())
                    .unwrap_or(0)
                    .max(log.log_start_offset());
                // Markers and (read_committed) aborted records at the end
                // are nothing to be handed.
                let mirror = self.mirrors.get(&(t.name().to_owned(), p.index()));
                let due = mirror.map_or(position < log.high_watermark(), |m| {
                    m.records
                        .range(position..log.high_watermark())
                        .any(|(&o, _)| m.visible(o, read_committed))
                });
                if due {
                    behind.push(Violation::ConsumerBehind {
                        client,
                        topic: t.name().to_owned(),
                        partition: p.index(),
                        position,
                        high_watermark: log.high_watermark(),
                    });
                }
            }
        }
        behind
    }

    /// Verifies the records handed out since the last check against the
    /// mirrors, which `check` has just brought up to date.
    pub(super) fn check_consumed(&mut self) {
        let pending = std::mem::take(&mut self.consumption.pending);
        for h in pending {
            let read_committed = self
                .promises
                .get(h.client)
                .is_some_and(|p| p.read_committed);
            if read_committed {
                self.judge_committed_read(
                    h.client,
                    &h.topic,
                    h.partition,
                    h.offset,
                    h.value.as_deref(),
                    h.bounds.last_stable,
                );
            }
            let Some(m) = self.mirrors.get(&(h.topic.clone(), h.partition)) else {
                self.report(Violation::ConsumedWrongRecord {
                    client: h.client,
                    topic: h.topic,
                    partition: h.partition,
                    offset: h.offset,
                    got: h.value.as_deref().map_or("null".into(), show),
                    log: "no such partition".into(),
                });
                continue;
            };
            let held = m.records.get(&h.offset).map(|(_, v)| v);
            let wrong = match held {
                Some(v) if *v == h.value => None,
                Some(v) => Some(v.as_deref().map_or("null".into(), show)),
                None => Some("nothing at that offset".into()),
            };
            // A record fetched before retention removed it may be handed
            // out after: then nothing before it counts.
            let from = h
                .previous
                .map_or(i64::MIN, |p| p + 1)
                .max(h.bounds.log_start);
            let skipped = (from < h.offset)
                .then(|| {
                    m.records
                        .range(from..h.offset)
                        .map(|(&o, _)| o)
                        .find(|&o| m.visible(o, read_committed))
                })
                .flatten();
            if let Some(log) = wrong {
                self.report(Violation::ConsumedWrongRecord {
                    client: h.client,
                    topic: h.topic.clone(),
                    partition: h.partition,
                    offset: h.offset,
                    got: h.value.as_deref().map_or("null".into(), show),
                    log,
                });
            }
            if let Some(skipped) = skipped {
                self.report(Violation::ConsumerSkipped {
                    client: h.client,
                    topic: h.topic,
                    partition: h.partition,
                    skipped,
                    next: h.offset,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cluster::{Cluster, ClusterConfig};
    use crate::invariants::make_value;

    /// A cluster with one single-partition topic holding `n` workload
    /// records, and a checker that has read it.
    fn setup(n: u64) -> (Cluster, Checker) {
        let mut cluster = Cluster::new(ClusterConfig::new(1), crate::rng::SimRng::new(1));
        cluster.create_topic("t", 1, 1).expect("created");
        for i in 0..n {
            cluster
                .append_for_test("t", 0, make_value(0, i, 3))
                .expect("appended");
        }
        let mut checker = Checker::new();
        checker.add_client(crate::invariants::Promise {
            no_loss: true,
            no_duplicates: true,
            in_order: true,
            read_committed: false,
        });
        checker.check(&cluster);
        (cluster, checker)
    }

    fn at(log_start: i64) -> LogBounds {
        LogBounds {
            log_start,
            last_stable: i64::MAX,
        }
    }

    fn value(i: u64) -> Option<Bytes> {
        Some(make_value(0, i, 3))
    }

    #[test]
    fn a_faithful_consumer_breaks_nothing_and_catches_up() {
        let (cluster, mut c) = setup(5);
        for i in 0..5 {
            c.on_consumed(0, "t", 0, i as i64, value(i), at(0));
        }
        c.check(&cluster);
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        assert!(c.consumer_lag(&cluster, 0, &["t".into()]).is_empty());
    }

    #[test]
    fn going_back_skipping_wrong_values_and_lag_are_caught() {
        let (cluster, mut c) = setup(5);
        c.on_consumed(0, "t", 0, 1, value(1), at(0)); // skipped offset 0
        c.on_consumed(0, "t", 0, 1, value(1), at(0)); // not above the last
        c.on_consumed(0, "t", 0, 2, value(3), at(0)); // wrong record
        c.check(&cluster);
        let mut rules: Vec<&str> = c.violations().iter().map(Violation::rule).collect();
        rules.sort_unstable();
        assert_eq!(
            rules,
            [
                "consumed offsets rise per partition",
                "consumed record is the log's",
                "consumer skips nothing the log holds",
            ],
            "{:?}",
            c.violations()
        );
        let lag = c.consumer_lag(&cluster, 0, &["t".into()]);
        assert!(
            matches!(
                lag.as_slice(),
                [Violation::ConsumerBehind {
                    position: 3,
                    high_watermark: 5,
                    ..
                }]
            ),
            "{lag:?}"
        );
    }

    #[test]
    fn a_record_handed_out_after_retention_removed_it_is_no_skip() {
        let (cluster, mut c) = setup(5);
        // Fetched while the log held it; handed out when the log started at 4.
        c.on_consumed(0, "t", 0, 2, value(2), at(4));
        c.check(&cluster);
        assert!(c.violations().is_empty(), "{:?}", c.violations());
    }

    #[test]
    fn what_retention_removed_may_be_passed_over() {
        let (cluster, mut c) = setup(5);
        // Log start was 3 when offset 3 was handed out: 0..3 were gone.
        c.on_consumed(0, "t", 0, 3, value(3), at(3));
        c.check(&cluster);
        assert!(c.violations().is_empty(), "{:?}", c.violations());
    }
}
