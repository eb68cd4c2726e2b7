//! Checks of what a producer wrote, read back with librdkafka: every record
//! the producer called delivered is in the log exactly once, none it called
//! failed is there at all, each partition holds its records in the order
//! they were produced, and keyed records sit on the partition Java's
//! partitioner picks.
//!
//! Each record carries its sequence number (its index in the run) in its
//! value ([`seq_value`]), so a record read back names itself even when the
//! producer retried, reordered or duplicated it.

use std::collections::BTreeMap;
use std::fmt;

use sansa_core::producer::partitioner::java_key_partition;

use crate::peers::librdkafka::Consumed;

/// One record as the producer was asked to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The key.
    pub key: Vec<u8>,
    /// The value, made by [`seq_value`].
    pub value: Vec<u8>,
    /// Headers, in order (librdkafka reads a null header value as empty).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What the producer said about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered at `offset` of `partition` (`offset` is -1 when the
    /// producer did not learn it, e.g. a duplicate acknowledgement).
    Delivered {
        /// The partition.
        partition: i32,
        /// The offset, or -1.
        offset: i64,
    },
    /// Failed; the producer's error, as text.
    Failed(String),
}

/// A value naming record `seq` of `key`, padded with `.` to `len` bytes:
/// `"{key}/{seq:010}/...."`.
pub fn seq_value(key: &[u8], seq: u64, len: usize) -> Vec<u8> {
    let mut value = key.to_vec();
    value.extend_from_slice(format!("/{seq:010}/").as_bytes());
    if value.len() < len {
        value.resize(len, b'.');
    }
    value
}

/// The sequence number in a value made by [`seq_value`].
pub fn parse_seq(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.rsplitn(3, '/');
    let _padding = parts.next()?;
    parts.next()?.parse().ok()
}

/// What [`check`] found. [`Report::is_clean`] says whether all is well;
/// `Display` lists the first problems of each kind.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Records read back.
    pub consumed: usize,
    /// Records the producer called delivered.
    pub delivered: usize,
    /// Records the producer called failed.
    pub failed: usize,
    /// Delivered but not in the log.
    pub lost: Vec<u64>,
    /// In the log more than once.
    pub duplicated: Vec<u64>,
    /// Called failed, yet in the log.
    pub failed_but_written: Vec<u64>,
    /// In the log after a record produced later, on the same partition.
    pub out_of_order: Vec<String>,
    /// Not on the partition `java_key_partition` picks.
    pub wrong_partition: Vec<String>,
    /// Key, value or headers differ from what was produced.
    pub altered: Vec<String>,
    /// Delivered at another place than the one it was read from.
    pub misreported: Vec<String>,
    /// Records in the log that this run did not produce.
    pub unknown: Vec<String>,
}

impl Report {
    /// No record lost, duplicated, altered, misplaced or reordered.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.failed_but_written.is_empty()
            && self.out_of_order.is_empty()
            && self.wrong_partition.is_empty()
            && self.altered.is_empty()
            && self.misreported.is_empty()
            && self.unknown.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} consumed, {} delivered, {} failed",
            self.consumed, self.delivered, self.failed
        )?;
        fn list<T: fmt::Debug>(f: &mut fmt::Formatter<'_>, what: &str, items: &[T]) -> fmt::Result {
            if !items.is_empty() {
                let first: Vec<&T> = items.iter().take(5).collect();
                write!(f, "; {} {what} (first: {first:?})", items.len())?;
            }
            Ok(())
        }
        list(f, "lost", &self.lost)?;
        list(f, "duplicated", &self.duplicated)?;
        list(f, "failed but written", &self.failed_but_written)?;
        list(f, "out of order", &self.out_of_order)?;
        list(f, "on the wrong partition", &self.wrong_partition)?;
        list(f, "altered", &self.altered)?;
        list(f, "delivered elsewhere than read", &self.misreported)?;
        list(f, "unknown", &self.unknown)
    }
}

/// Compares the log (`consumed`, every record of the topic) with what was
/// sent (`sent[seq]`) and what the producer said (`outcomes[seq]`), for a
/// topic of `partitions` partitions written by one producer in `seq` order.
pub fn check(
    sent: &[Sent],
    outcomes: &[Outcome],
    consumed: &[Consumed],
    partitions: i32,
) -> Report {
    let mut report = Report {
        consumed: consumed.len(),
        delivered: outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Delivered { .. }))
            .count(),
        failed: outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Failed(_)))
            .count(),
        ..Report::default()
    };
    let mut seen = vec![0u32; sent.len()];
    // Per partition, by offset: the sequence numbers in log order.
    let mut logs: BTreeMap<i32, BTreeMap<i64, u64>> = BTreeMap::new();
    for c in consumed {
        let place = format!("{}/{}", c.partition, c.offset);
        let Some(seq) = parse_seq(&c.value).filter(|&s| (s as usize) < sent.len()) else {
            report.unknown.push(place);
            continue;
        };
        let i = seq as usize;
        seen[i] += 1;
        let want = &sent[i];
        if c.key.as_deref() != Some(want.key.as_slice())
            || c.value != want.value
            || c.headers != want.headers
        {
            report.altered.push(format!("seq {seq} at {place}"));
        }
        let expected = java_key_partition(&want.key, partitions);
        if c.partition != expected {
            report
                .wrong_partition
                .push(format!("seq {seq} at {place}, key hashes to {expected}"));
        }
        if let Some(Outcome::Delivered { partition, offset }) = outcomes.get(i) {
            if *partition != c.partition || (*offset >= 0 && *offset != c.offset) {
                report.misreported.push(format!(
                    "seq {seq} read at {place}, delivered at {partition}/{offset}"
                ));
            }
        }
        logs.entry(c.partition).or_default().insert(c.offset, seq);
    }
    for (partition, log) in &logs {
        let mut last: Option<(i64, u64)> = None;
        for (&offset, &seq) in log {
            if let Some((prev_offset, prev_seq)) = last {
                if seq < prev_seq {
                    report.out_of_order.push(format!(
                        "partition {partition}: seq {seq} at offset {offset} after seq {prev_seq} at {prev_offset}"
                    ));
                }
            }
            last = Some((offset, seq));
        }
    }
    for (i, outcome) in outcomes.iter().enumerate() {
        let seq = i as u64;
        match (outcome, seen.get(i).copied().unwrap_or(0)) {
            (Outcome::Delivered { .. }, 0) => report.lost.push(seq),
            (Outcome::Failed(_), n) if n > 0 => report.failed_but_written.push(seq),
            _ => {}
        }
    }
    report.duplicated = seen
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 1)
        .map(|(i, _)| i as u64)
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(n: u64) -> Vec<Sent> {
        (0..n)
            .map(|seq| {
                let key = format!("k{}", seq % 3).into_bytes();
                Sent {
                    value: seq_value(&key, seq, 40),
                    key,
                    headers: vec![("h".into(), b"v".to_vec())],
                }
            })
            .collect()
    }

    fn read(sent: &[Sent], seq: u64, offset: i64) -> Consumed {
        let s = &sent[seq as usize];
        Consumed {
            partition: java_key_partition(&s.key, 4),
            offset,
            key: Some(s.key.clone()),
            value: s.value.clone(),
            headers: s.headers.clone(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn values_name_their_sequence_number() {
        let v = seq_value(b"key/with/slashes", 42, 100);
        assert_eq!(v.len(), 100);
        assert_eq!(parse_seq(&v), Some(42));
        assert_eq!(parse_seq(b"nothing"), None);
    }

    #[test]
    fn a_clean_log_is_clean_and_each_fault_is_named() {
        let s = sent(6);
        let delivered = |seq: u64| Outcome::Delivered {
            partition: java_key_partition(&s[seq as usize].key, 4),
            offset: -1,
        };
        let outcomes: Vec<Outcome> = (0..6).map(delivered).collect();
        let log: Vec<Consumed> = (0..6).map(|i| read(&s, i, i as i64)).collect();
        let r = check(&s, &outcomes, &log, 4);
        assert!(r.is_clean(), "{r}");

        // Lost 3, duplicated 1, 4 before 1 (same key), failed 5 written.
        let mut outcomes = outcomes;
        outcomes[5] = Outcome::Failed("x".into());
        let log: Vec<Consumed> = [0, 4, 1, 1, 2, 5]
            .iter()
            .enumerate()
            .map(|(o, &i)| read(&s, i, o as i64))
            .collect();
        let r = check(&s, &outcomes, &log, 4);
        assert_eq!(r.lost, vec![3]);
        assert_eq!(r.duplicated, vec![1]);
        assert_eq!(r.failed_but_written, vec![5]);
        assert_eq!(r.out_of_order.len(), 1, "{r}");
        assert!(!r.is_clean());
    }
}
