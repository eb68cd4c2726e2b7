//! What an exactly-once pipeline promises (KIP-98, KIP-447): members of a
//! group-transact session read an input topic (read_committed), write the
//! transform of each record to the same partition of an output topic, and
//! commit their input offsets in the same transaction. Checked against
//! the logs:
//!
//! - **Each transform at most once.** The committed data of an output
//!   partition (records under a COMMIT marker) holds no transform twice:
//!   a member that produced output for a record and lost it to another
//!   member (a revoke, a fence) must have aborted. Checked on every step,
//!   as markers land.
//! - **Each transform at least once.** After healing, every committed (or
//!   non-transactional) input record still in the log has its transform in
//!   the committed output of its partition (unless retention took output
//!   from under it).

use std::collections::{BTreeMap, HashMap};

use bytes::{BufMut, Bytes, BytesMut};

use super::{show, Checker, LogFate, Violation};
use crate::cluster::Cluster;

/// The transform an exactly-once member writes for the input record at
/// `offset` holding `value`: `T<offset>|<value>`. The offset makes it
/// unique per input record even when the input holds a value twice (a
/// producer without idempotence may write a retry twice).
pub fn eos_transform(offset: i64, value: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(value.len() + 24);
    out.put_slice(format!("T{offset}|").as_bytes());
    out.put_slice(value);
    out.freeze()
}

/// A transform for a report: its offset and the input's identity.
fn show_transform(v: &[u8]) -> String {
    let cut = v.iter().take(48).count();
    let s = String::from_utf8_lossy(&v[..cut]).into_owned();
    match s.split('|').collect::<Vec<_>>().as_slice() {
        [t, id, ..] => format!("{t}|{id}"),
        _ => s,
    }
}

/// The output topic of input topic `topic`.
pub fn eos_output_topic(topic: &str) -> String {
    format!("{topic}.eos")
}

/// How far the committed data of one output partition was read.
#[derive(Debug, Default)]
struct OutputScan {
    /// The next offset to judge.
    next: i64,
    /// Committed transforms: value to offset.
    committed: HashMap<Bytes, i64>,
}

/// Pipelines and what their outputs committed.
#[derive(Debug, Default)]
pub(super) struct Pipelines {
    /// Input topics whose output is checked.
    inputs: Vec<String>,
    outputs: BTreeMap<(String, i32), OutputScan>,
}

impl Checker {
    /// Checks the exactly-once pipeline from `input` to its output topic
    /// ([`eos_output_topic`]).
    pub fn add_eos_pipeline(&mut self, input: &str) {
        if !self.eos.inputs.iter().any(|t| t == input) {
            self.eos.inputs.push(input.to_owned());
        }
    }

    /// Reads the output partitions' newly decided data; a transform
    /// committed twice is a violation.
    pub(super) fn check_eos_outputs(&mut self) {
        let mut found = Vec::new();
        for input in &self.eos.inputs {
            let output = eos_output_topic(input);
            for ((topic, partition), m) in self.mirrors.range((output.clone(), i32::MIN)..) {
                if *topic != output {
                    break;
                }
                let scan = self
                    .eos
                    .outputs
                    .entry((topic.clone(), *partition))
                    .or_default();
                scan.next = scan.next.max(m.log_start);
                for (&o, (_, v)) in m.records.range(scan.next..) {
                    if m.control.contains(&o) {
                        scan.next = o + 1;
                        continue;
                    }
                    match m.txn_fate(o) {
                        Some(LogFate::Open) => break,
                        Some(LogFate::Committed) => {
                            let v = v.clone().unwrap_or_default();
                            if let Some(&first) = scan.committed.get(&v) {
                                found.push(Violation::EosNotExactlyOnce {
                                    topic: topic.clone(),
                                    partition: *partition,
                                    value: show_transform(&v),
                                    detail: format!("committed at {first} and again at {o}"),
                                });
                            } else {
                                scan.committed.insert(v, o);
                            }
                        }
                        Some(LogFate::Aborted) | None => {}
                    }
                    scan.next = o + 1;
                }
            }
        }
        for v in found {
            self.report(v);
        }
    }

    /// Whether `group` committed offsets past every record a
    /// read_committed member must process in `topics` (what is left
    /// below each high watermark is markers and aborted records).
    pub fn eos_caught_up(&self, cluster: &Cluster, group: &str, topics: &[String]) -> bool {
        let g = cluster.group(group);
        cluster
            .topics()
            .filter(|t| topics.iter().any(|n| n == t.name()))
            .all(|t| {
                t.partitions().iter().all(|p| {
                    let log = p.log();
                    let committed = g
                        .and_then(|g| g.committed(t.name(), p.index()))
                        .map_or(0, |c| c.offset)
                        .max(log.log_start_offset());
                    match self.mirrors.get(&(t.name().to_owned(), p.index())) {
                        Some(m) => !m
                            .records
                            .range(committed..log.high_watermark())
                            .any(|(&o, _)| m.visible(o, true)),
                        None => committed >= log.high_watermark(),
                    }
                })
            })
    }

    /// After healing: input records of `topics` (the inputs a live member
    /// reads) whose transform never committed, the first per partition,
    /// as violations.
    pub fn eos_missing(&self, cluster: &Cluster, topics: &[String]) -> Vec<Violation> {
        let mut missing = Vec::new();
        for input in self.eos.inputs.iter().filter(|t| topics.contains(t)) {
            let output = eos_output_topic(input);
            let Some(t) = cluster.topic(input) else {
                continue;
            };
            for p in t.partitions() {
                let key = (input.clone(), p.index());
                let out_key = (output.clone(), p.index());
                let Some(m) = self.mirrors.get(&key) else {
                    continue;
                };
                // Retention on the output took transforms away: nothing
                // to judge.
                let out_trimmed = cluster
                    .partition(&output, p.index())
                    .is_none_or(|o| o.log().log_start_offset() > 0);
                if out_trimmed {
                    continue;
                }
                // A transaction still open on the output holds everything
                // after it back from read_committed: a member that failed
                // fatally mid-transaction leaves one, which its coordinator
                // aborts only at the transaction timeout (or when the
                // replacement, once it is given partitions, initializes),
                // possibly after the run ends. The transforms behind it
                // are not decided yet: nothing to judge.
                let scan = self.eos.outputs.get(&out_key);
                let out_held = self.mirrors.get(&out_key).is_some_and(|om| {
                    let next = scan.map_or(om.log_start, |s| s.next);
                    om.records
                        .range(next..)
                        .next()
                        .is_some_and(|(&o, _)| om.txn_fate(o) == Some(LogFate::Open))
                });
                if out_held {
                    continue;
                }
                let committed = scan.map(|s| &s.committed);
                let log = p.log();
                let first = m
                    .records
                    .range(log.log_start_offset()..log.high_watermark())
                    .filter(|(&o, _)| m.visible(o, true))
                    .filter(|(&o, _)| m.txn_fate(o) != Some(LogFate::Open))
                    .find(|(o, (_, v))| {
                        let t = eos_transform(**o, v.as_deref().unwrap_or_default());
                        !committed.is_some_and(|c| c.contains_key(&t))
                    });
                if let Some((&o, (_, v))) = first {
                    missing.push(Violation::EosNotExactlyOnce {
                        topic: input.clone(),
                        partition: p.index(),
                        value: show(v.as_deref().unwrap_or_default()),
                        detail: format!("input at {o} has no committed transform"),
                    });
                }
            }
        }
        missing
    }
}
