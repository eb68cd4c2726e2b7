//! The consumer (first cut): consume explicit partitions or whole topics,
//! find start offsets with ListOffsets, fetch from each partition's leader,
//! hand out records in order, and apply the reset policy when an offset is
//! out of range.
//!
//! Rules that matter:
//! - A partition's next offset only moves forward past what was handed to
//!   the buffer: batches that start before it are trimmed, control batches
//!   are skipped but still move it (their offsets are used).
//! - read_committed drops the records of aborted transactions, using the
//!   aborted-transaction list of the Fetch answer and the abort markers in
//!   the log, and never hands out control records.
//! - Every fetch carries the partition's current leader epoch (KIP-320), so
//!   a deposed leader answers FENCED_LEADER_EPOCH instead of stale data.
//! - Memory is bounded: a fetch asks for no more than its broker's share of
//!   the room left under `max_buffered_bytes` (counting what fetches in
//!   flight may bring), and none is sent while there is no room. Each
//!   fetch lists its partitions rotated one further, so a tight budget is
//!   not always spent on the first partition.
//!
//! - Fetch sessions (KIP-227): after an initial full fetch, each fetch
//!   lists only partitions whose fetch position changed and forgets those no
//!   longer wanted; a session error or a lost fetch starts a new session.
//!
//! - Leader epoch validation (KIP-320): when metadata shows a partition's
//!   leader epoch moved past the one the cursor fetched under, the cursor
//!   is validated before it fetches again: OffsetForLeaderEpoch asks the new
//!   leader where the epoch of the last fetched batch ends. An end before
//!   the cursor means the log was truncated under us (an unclean leader
//!   election): the cursor moves back to the end offset and the poll result
//!   carries [`FetchError::DataLoss`], never silently. An unknown epoch
//!   falls back to the reset policy. A broker without OffsetForLeaderEpoch
//!   v2 (no current leader epoch to fence a stale answer) is not asked.
//! - Offset out of range: the reset policy on a cursor that has handed
//!   nothing out yet; after consuming, a reset to the timestamp of the last
//!   record handed out, with a warning (franz-go's rule), so neither the
//!   whole log is replayed nor what came since skipped.
//! - Leader moves are followed without a stall: a fetch error that names a
//!   stale leader asks for metadata at once (see `FetchOutcome`), and a
//!   partition whose leader changed is fetched again at once, not after its
//!   retry backoff.
//!
//! Not yet here: topic ids (Fetch is capped at v12, the last version that
//! names topics), so Fetch v16's `current_leader` hint (KIP-951) is not
//! used either: a leader move costs one metadata round trip.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::cluster::{Metadata, NodeId};
use crate::protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use crate::protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use crate::protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use crate::protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use crate::protocol::ErrorCode;
use crate::record::{Batches, ControlRecord, ControlRecordKind, Headers, ReadOptions};
use crate::time::Timestamp;

/// The highest Fetch version used: v13+ names topics by id.
pub const MAX_FETCH_VERSION: i16 = 12;

/// The largest buffer-bytes-per-wire-byte a fetch is sized for: zstd
/// text can expand more, and then the buffer overshoots by the rest.
const MAX_EXPANSION: f64 = 64.0;

/// The first Fetch version with `LastFetchedEpoch` (KIP-595).
const LAST_FETCHED_EPOCH_VERSION: i16 = 12;

/// The first OffsetForLeaderEpoch version with `current_leader_epoch`:
/// without it a deposed leader would answer from its stale log, so older
/// brokers are not asked (as Java's client does).
pub const MIN_VALIDATION_VERSION: i16 = 2;

/// Where to start consuming a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The log start.
    Earliest,
    /// The end: only records produced from now on.
    Latest,
    /// An exact offset.
    At(i64),
    /// An exact offset and the leader epoch of the record before it (a
    /// committed position, KIP-320): before fetching, the consumer asks
    /// the leader (OffsetForLeaderEpoch) whether its log still holds that
    /// epoch up to the offset, and reports [`FetchError::DataLoss`] if it
    /// was truncated below. A negative epoch is [`StartOffset::At`].
    AtEpoch {
        /// The next offset to consume.
        offset: i64,
        /// The leader epoch of the record at `offset - 1`.
        leader_epoch: i32,
    },
    /// The first offset whose timestamp is at or after this one (ms); the
    /// end if no record is that recent.
    AtTimestamp(i64),
}

impl StartOffset {
    fn list_timestamp(self) -> Option<i64> {
        match self {
            StartOffset::Earliest => Some(-2),
            StartOffset::Latest => Some(-1),
            StartOffset::AtTimestamp(t) => Some(t),
            StartOffset::At(_) | StartOffset::AtEpoch { .. } => None,
        }
    }
}

/// What to do when a fetch offset is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetPolicy {
    /// Restart from the log start (franz-go's default).
    #[default]
    Earliest,
    /// Jump to the end.
    Latest,
    /// Surface the error in the poll result and stop the partition.
    None,
}

/// Which records a consumer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every data record, committed or not (default).
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions, up to the last stable offset.
    ReadCommitted,
}

/// Consumer settings; defaults are franz-go's.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// How long a broker may hold a fetch waiting for data. Default 5 s.
    pub fetch_max_wait: Duration,
    /// Bytes a fetch waits for. Default 1.
    pub fetch_min_bytes: i32,
    /// Bytes per fetch answer at most. Default 50 MiB.
    pub fetch_max_bytes: i32,
    /// Bytes per partition per fetch at most. Default 1 MiB.
    pub fetch_max_partition_bytes: i32,
    /// Isolation level. Default read_uncommitted.
    pub isolation: IsolationLevel,
    /// Where partitions of `consume_topics` start. Default earliest.
    pub start_offset: StartOffset,
    /// What an out-of-range offset does. Default earliest.
    pub reset: ResetPolicy,
    /// Fetched records waiting to be polled, plus what the fetches in
    /// flight may bring back, stay under this many bytes: each fetch asks
    /// for at most its broker's share of the room left (a broker may still
    /// return one whole batch past it, KIP-74), and none is sent while
    /// there is no room. What is in flight is sized by the expansion seen
    /// in recent answers (compressed bytes to buffered bytes), so the first
    /// fetch of compressed data, before any is seen, can still overshoot
    /// by its compression ratio. Default 64 MiB.
    pub max_buffered_bytes: usize,
    /// Fetch requests in flight at most (one per broker at most). Default
    /// unbounded.
    pub max_concurrent_fetches: Option<usize>,
    /// Decompressed bytes one batch may expand to. Default 64 MiB.
    pub max_decompressed_batch_bytes: usize,
    /// Use fetch sessions (KIP-227) with brokers that offer them. Default
    /// on; franz-go's `DisableFetchSessions` turns it off.
    pub fetch_sessions: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_max_wait: Duration::from_secs(5),
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            fetch_max_partition_bytes: 1024 * 1024,
            isolation: IsolationLevel::ReadUncommitted,
            start_offset: StartOffset::Earliest,
            reset: ResetPolicy::Earliest,
            max_buffered_bytes: 64 * 1024 * 1024,
            max_concurrent_fetches: None,
            max_decompressed_batch_bytes: 64 * 1024 * 1024,
            fetch_sessions: true,
        }
    }
}

/// A record read from Kafka. Key, value and headers are slices of the
/// fetched bytes (or of their batch's decompressed buffer): cheap to clone,
/// borrowing nothing from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// Create time or log-append time, ms since the Unix epoch.
    pub timestamp: i64,
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// The headers, in order, duplicates kept.
    pub headers: Headers,
    /// The leader epoch of the batch it came in.
    pub leader_epoch: i32,
}

/// Why a partition stopped or skipped, reported in the poll result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The offset is out of range and the reset policy is `None`.
    #[error("offset {offset} out of range")]
    OffsetOutOfRange {
        /// The offset that was asked for.
        offset: i64,
    },
    /// The broker answered with an error that retrying cannot fix.
    #[error("fetch failed: {0}")]
    Broker(ErrorCode),
    /// The log was truncated below records already handed out (an unclean
    /// leader election, KIP-320): the records from `end_offset` up to
    /// `fetch_offset` that were consumed are gone from the log, and other
    /// records may take their offsets. Consumption goes on from
    /// `end_offset`; this report is the only sign, so log or act on it.
    #[error(
        "data loss: the log was truncated to {end_offset}, below the fetch offset {fetch_offset}"
    )]
    DataLoss {
        /// Where the partition was about to fetch.
        fetch_offset: i64,
        /// Where the log now ends for the epoch last fetched; consumption
        /// goes on from here.
        end_offset: i64,
    },
    /// The fetched data could not be read.
    #[error("corrupt data at offset {offset}: {reason}")]
    Corrupt {
        /// The offset the batch claimed.
        offset: i64,
        /// What was wrong.
        reason: String,
    },
}

/// What one partition yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// Records in offset order.
    pub records: Vec<ConsumedRecord>,
    /// An error, if the partition had one.
    pub error: Option<FetchError>,
    /// The partition's high watermark at fetch time.
    pub high_watermark: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CursorState {
    /// Needs a ListOffsets for this spec.
    NeedsOffset(StartOffset),
    /// A ListOffsets for this spec is in flight.
    Listing(StartOffset),
    /// Ready to fetch at `offset`.
    Ready,
    /// A fetch is in flight.
    Fetching,
    /// An OffsetForLeaderEpoch for it is in flight.
    Validating,
    /// Stopped by an error the user must see (reset policy None).
    Stopped,
}

#[derive(Debug)]
struct Cursor {
    /// Which placement of the partition this is: an answer to a request
    /// made for an earlier cursor (replaced by a seek, or revoked and
    /// assigned again while it was out) must not move this one.
    placement: u64,
    state: CursorState,
    offset: i64,
    /// The newest leader epoch seen for the partition, sent as the current
    /// leader epoch of every request.
    leader_epoch: i32,
    /// The leader epoch of the last batch fetched (-1: none since the
    /// cursor was placed): what validation asks about.
    last_fetched_epoch: i32,
    /// The leader the last metadata named, to notice a move.
    leader: Option<NodeId>,
    /// The timestamp of the last record handed out since the cursor was
    /// placed or last reset by it: an out-of-range offset after consuming
    /// resets to it rather than by the policy.
    last_timestamp: Option<i64>,
    /// The leader epoch moved past the one fetched under: validate with
    /// OffsetForLeaderEpoch before fetching again.
    awaiting_validation: bool,
    /// Where the cursor stood when an out-of-range answer made it reset
    /// by the last consumed record's timestamp (see `on_list_offsets`).
    reset_from: Option<i64>,
    paused: bool,
    retry_at: Option<Timestamp>,
}

/// What a fetch session told the broker about one partition (KIP-227): an
/// incremental fetch lists a partition again only when this changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionPartition {
    fetch_offset: i64,
    leader_epoch: i32,
    last_fetched_epoch: i32,
    max_bytes: i32,
}

/// A fetch session with one broker; id 0 is "none yet".
#[derive(Debug, Default)]
struct FetchSession {
    id: i32,
    epoch: i32,
    sent: BTreeMap<(Arc<str>, i32), SessionPartition>,
}

/// A ListOffsets or Fetch in flight: which partitions it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInFlight {
    /// The broker it went to.
    pub broker: NodeId,
    /// Each partition asked about, with the placement of its cursor then.
    partitions: Vec<(Arc<str>, i32, u64)>,
}

/// The consumer state machine.
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    retry_backoff: Duration,
    /// Topics consumed whole.
    topics: BTreeSet<String>,
    /// Patterns whose matching topics are consumed whole.
    regexes: Vec<regex::Regex>,
    /// Topics consumed because a pattern matched them.
    matched: BTreeSet<String>,
    /// Partitions and where they start, for explicit assignments.
    explicit: BTreeMap<String, BTreeMap<i32, StartOffset>>,
    names: BTreeMap<String, Arc<str>>,
    cursors: BTreeMap<Arc<str>, BTreeMap<i32, Cursor>>,
    /// The cursor placement each partition's records were last taken
    /// under: records given back ([`Consumer::untake`]) return only to
    /// that same placement, never to one a seek or rewind made since.
    taken_under: BTreeMap<(Arc<str>, i32), u64>,
    /// Cursors placed so far: the next one's [`Cursor::placement`].
    placements: u64,
    buffered: VecDeque<FetchedPartition>,
    buffered_bytes: usize,
    /// Brokers with a fetch in flight, and the buffer bytes each may bring
    /// back (its `max_bytes` times `expansion`), reserved until it answers.
    fetching: BTreeMap<NodeId, usize>,
    /// Buffer bytes per wire byte in recent fetch answers (compression,
    /// and the per-record overhead the buffer counts): fetches ask for the
    /// room left divided by it, so compressed data does not overshoot the
    /// bound by its compression ratio.
    expansion: f64,
    /// Whether `expansion` was measured yet.
    expansion_seen: bool,
    /// Per broker, how many fetches it was sent: each fetch lists its
    /// partitions rotated by this, so a partition with a long backlog at
    /// the front cannot take every fetch's `max_bytes` (KIP-74 fairness).
    fetch_rounds: BTreeMap<NodeId, usize>,
    listing: BTreeSet<NodeId>,
    /// Brokers with an OffsetForLeaderEpoch in flight.
    validating: BTreeSet<NodeId>,
    sessions: BTreeMap<NodeId, FetchSession>,
    wants_metadata: bool,
}

impl Consumer {
    /// A consumer that consumes nothing yet.
    pub fn new(config: ConsumerConfig, retry_backoff: Duration) -> Self {
        Consumer {
            config,
            retry_backoff,
            topics: BTreeSet::new(),
            regexes: Vec::new(),
            matched: BTreeSet::new(),
            explicit: BTreeMap::new(),
            names: BTreeMap::new(),
            cursors: BTreeMap::new(),
            taken_under: BTreeMap::new(),
            placements: 0,
            buffered: VecDeque::new(),
            buffered_bytes: 0,
            fetching: BTreeMap::new(),
            expansion: 1.0,
            expansion_seen: false,
            fetch_rounds: BTreeMap::new(),
            listing: BTreeSet::new(),
            validating: BTreeSet::new(),
            sessions: BTreeMap::new(),
            wants_metadata: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    fn name(&mut self, topic: &str) -> Arc<str> {
        self.names
            .entry(topic.to_string())
            .or_insert_with(|| Arc::from(topic))
            .clone()
    }

    /// Consumes every partition of these topics, each from the configured
    /// start offset (partitions added later included).
    pub fn consume_topics<I: IntoIterator<Item = String>>(&mut self, topics: I) {
        for t in topics {
            self.topics.insert(t);
        }
        self.wants_metadata = true;
    }

    /// Consumes every topic whose whole name matches one of `patterns`
    /// (Java's and franz-go's regex subscription), including topics created
    /// later, and stops consuming topics that are deleted. Internal topics
    /// (`__consumer_offsets`, ...) are never matched.
    pub fn consume_regex<I, S>(&mut self, patterns: I) -> Result<(), regex::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for p in patterns {
            // Anchored: "a.*" must not match "ba".
            self.regexes
                .push(regex::Regex::new(&format!("^(?:{})$", p.as_ref()))?);
        }
        self.wants_metadata = true;
        Ok(())
    }

    /// Whether metadata must list every topic (a regex subscription).
    pub fn needs_all_topics(&self) -> bool {
        !self.regexes.is_empty()
    }

    /// Consumes exactly these partitions from these offsets.
    pub fn consume_partitions(&mut self, partitions: BTreeMap<String, BTreeMap<i32, StartOffset>>) {
        for (topic, parts) in partitions {
            let name = self.name(&topic);
            let cursors = self.cursors.entry(name).or_default();
            for (&p, &start) in &parts {
                self.placements += 1;
                cursors.insert(p, Cursor::new(start, self.placements));
            }
            self.explicit.entry(topic).or_default().extend(parts);
        }
        self.wants_metadata = true;
    }

    /// Pauses or resumes fetching of a topic's partitions (all when
    /// `partitions` is `None`). Buffered records of a paused partition are
    /// dropped without moving its offset.
    pub fn set_paused(&mut self, topic: &str, partitions: Option<&[i32]>, paused: bool) {
        let Some(cursors) = self.cursors.get_mut(topic) else {
            return;
        };
        for (&p, c) in cursors.iter_mut() {
            if partitions.is_none_or(|ps| ps.contains(&p)) {
                c.paused = paused;
            }
        }
        if !paused {
            return;
        }
        // Drop what is buffered for the paused partitions and move each
        // cursor back to the first dropped record, so nothing is skipped on
        // resume.
        let mut first_dropped: BTreeMap<i32, i64> = BTreeMap::new();
        let mut dropped = 0;
        self.buffered.retain(|f| {
            let hit = &*f.topic == topic && partitions.is_none_or(|ps| ps.contains(&f.partition));
            if hit {
                dropped += f.records.iter().map(record_bytes).sum::<usize>();
                if let Some(r) = f.records.first() {
                    first_dropped
                        .entry(f.partition)
                        .and_modify(|o| *o = (*o).min(r.offset))
                        .or_insert(r.offset);
                }
            }
            !hit
        });
        self.buffered_bytes = self.buffered_bytes.saturating_sub(dropped);
        for (p, offset) in first_dropped {
            if let Some(c) = cursors_mut(&mut self.cursors, topic, p) {
                c.offset = c.offset.min(offset);
            }
        }
    }

    /// Every topic the consumer needs metadata for.
    pub fn topics(&self) -> impl Iterator<Item = &String> {
        self.topics
            .iter()
            .chain(self.matched.iter())
            .chain(self.explicit.keys())
    }

    /// Whether a metadata refresh would help (new subscriptions).
    pub fn take_wants_metadata(&mut self) -> bool {
        std::mem::take(&mut self.wants_metadata)
    }

    /// Creates cursors for partitions of consumed topics that appeared, and
    /// follows regex subscriptions: new matching topics are consumed,
    /// deleted ones are dropped. Returns whether a consumed partition has
    /// no leader, or one whose address the answer left out (a broker that
    /// is down drops out of Metadata answers while still leading):
    /// nothing else would ask for metadata again (no request goes to such
    /// a partition), so the caller must.
    pub fn on_metadata(&mut self, metadata: &Metadata) -> bool {
        let start = self.config.start_offset;
        if !self.regexes.is_empty() {
            let now_matching: BTreeSet<String> = metadata
                .topics()
                .filter(|(name, info)| {
                    !info.is_internal && self.regexes.iter().any(|r| r.is_match(name))
                })
                .map(|(name, _)| name.clone())
                .collect();
            for gone in self.matched.difference(&now_matching) {
                tracing::info!(topic = %gone, "regex-matched topic is gone; no longer consumed");
                if !self.topics.contains(gone) && !self.explicit.contains_key(gone) {
                    self.cursors.remove(gone.as_str());
                    let dropped: usize = self
                        .buffered
                        .iter()
                        .filter(|f| *f.topic == **gone)
                        .flat_map(|f| f.records.iter())
                        .map(record_bytes)
                        .sum();
                    self.buffered.retain(|f| *f.topic != **gone);
                    self.buffered_bytes = self.buffered_bytes.saturating_sub(dropped);
                }
            }
            for new in now_matching.difference(&self.matched) {
                tracing::info!(topic = %new, "consuming regex-matched topic");
            }
            self.matched = now_matching;
        }
        let topics: Vec<String> = self
            .topics
            .iter()
            .chain(self.matched.iter())
            .cloned()
            .collect();
        for t in topics {
            let Some(info) = metadata.topic(&t) else {
                continue;
            };
            let name = self.name(&t);
            let cursors = self.cursors.entry(name).or_default();
            for p in 0..info.partitions.len() as i32 {
                cursors.entry(p).or_insert_with(|| {
                    self.placements += 1;
                    Cursor::new(start, self.placements)
                });
            }
        }
        // Leader epochs move forward with metadata (KIP-320).
        let mut leaderless = false;
        for (topic, cursors) in &mut self.cursors {
            for (&p, c) in cursors.iter_mut() {
                let found = metadata.leader(topic, p);
                if let Some((leader, _)) = found {
                    leaderless |=
                        metadata.broker(leader).is_none() && c.state != CursorState::Stopped;
                }
                let Some((leader, epoch)) = found else {
                    let exists = metadata
                        .topic(topic)
                        .is_some_and(|t| usize::try_from(p).is_ok_and(|i| i < t.partitions.len()));
                    leaderless |= exists && c.state != CursorState::Stopped;
                    continue;
                };
                let epoch_moved = epoch > c.leader_epoch;
                if epoch_moved || c.leader != Some(leader) {
                    // A partition that backed off after a NOT_LEADER or
                    // FENCED answer goes to its new leader at once: the
                    // backoff was for the stale route, not the new one.
                    c.retry_at = None;
                    c.leader = Some(leader);
                }
                if epoch_moved {
                    // Only a cursor that fetched under an older epoch can
                    // have run past a truncation; a fresh start position
                    // came from the new leader itself.
                    if c.last_fetched_epoch >= 0
                        && matches!(
                            c.state,
                            CursorState::Ready | CursorState::Fetching | CursorState::Validating
                        )
                    {
                        c.awaiting_validation = true;
                    }
                    c.leader_epoch = epoch;
                }
                if epoch_moved {
                    tracing::debug!(
                        topic = &**topic,
                        partition = p,
                        leader = leader.0,
                        epoch,
                        state = ?c.state,
                        validate = c.awaiting_validation,
                        "partition leader"
                    );
                }
            }
        }
        leaderless
    }

    /// Records waiting to be polled.
    pub fn has_buffered(&self) -> bool {
        !self.buffered.is_empty()
    }

    /// Takes up to `max_records` buffered records (all with `None`), by
    /// partition, in fetch order.
    pub fn take(&mut self, max_records: Option<usize>) -> Vec<FetchedPartition> {
        let mut out = Vec::new();
        let mut budget = max_records.unwrap_or(usize::MAX);
        while budget > 0 || max_records.is_none() {
            let Some(mut f) = self.buffered.pop_front() else {
                break;
            };
            if f.records.len() > budget {
                let rest = f.records.split_off(budget);
                self.buffered.push_front(FetchedPartition {
                    topic: f.topic.clone(),
                    partition: f.partition,
                    records: rest,
                    error: None,
                    high_watermark: f.high_watermark,
                });
            }
            if let Some(c) = self.cursors.get(&f.topic).and_then(|m| m.get(&f.partition)) {
                self.taken_under
                    .insert((f.topic.clone(), f.partition), c.placement);
            }
            budget = budget.saturating_sub(f.records.len());
            self.buffered_bytes = self
                .buffered_bytes
                .saturating_sub(f.records.iter().map(record_bytes).sum());
            out.push(f);
            if max_records.is_none() && self.buffered.is_empty() {
                break;
            }
        }
        out
    }

    /// Puts records handed out by [`Consumer::take`] but never received
    /// (their caller left) back in front of the buffer, in their order,
    /// for the next take. A partition no longer consumed from where they
    /// were taken (revoked, sought or rewound meanwhile) drops its records
    /// instead: they are no longer what comes next.
    pub fn untake(&mut self, fetched: Vec<FetchedPartition>) {
        for f in fetched.into_iter().rev() {
            let placement = self.taken_under.get(&(f.topic.clone(), f.partition));
            let same = self
                .cursors
                .get(&*f.topic)
                .and_then(|c| c.get(&f.partition))
                .is_some_and(|c| Some(&c.placement) == placement);
            if !same {
                continue;
            }
            self.buffered_bytes += f.records.iter().map(record_bytes).sum::<usize>();
            self.buffered.push_front(f);
        }
    }

    /// Bytes of fetched records waiting to be polled.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// What the buffer can still take: the bound, less what it holds and
    /// what fetches in flight may bring.
    fn room_left(&self) -> usize {
        let reserved: usize = self.fetching.values().sum();
        self.config
            .max_buffered_bytes
            .saturating_sub(self.buffered_bytes + reserved)
    }

    fn room(&self) -> bool {
        self.room_left() > 0
    }

    /// Brokers to send ListOffsets to now, with the request for each.
    pub fn list_offsets_requests(
        &mut self,
        now: Timestamp,
        metadata: &Metadata,
    ) -> Vec<(NodeId, ListOffsetsRequest, ConsumerInFlight)> {
        // Per broker: (topic, partition, spec, timestamp to list, leader
        // epoch).
        type ToList = Vec<(Arc<str>, i32, StartOffset, i64, i32)>;
        let mut per_broker: BTreeMap<NodeId, ToList> = BTreeMap::new();
        for (topic, cursors) in &self.cursors {
            for (&p, c) in cursors {
                let CursorState::NeedsOffset(spec) = c.state else {
                    continue;
                };
                if c.retry_at.is_some_and(|t| t > now) || c.paused {
                    continue;
                }
                let Some(ts) = spec.list_timestamp() else {
                    continue;
                };
                let Some((leader, epoch)) = metadata.leader(topic, p) else {
                    continue;
                };
                if self.listing.contains(&leader) {
                    continue;
                }
                per_broker
                    .entry(leader)
                    .or_default()
                    .push((topic.clone(), p, spec, ts, epoch));
            }
        }
        let isolation = match self.config.isolation {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        };
        let mut out = Vec::new();
        for (broker, parts) in per_broker {
            let mut topics: BTreeMap<Arc<str>, Vec<ListOffsetsPartition>> = BTreeMap::new();
            let mut carried = Vec::new();
            for (topic, p, spec, ts, epoch) in parts {
                let Some(c) = self.cursors.get_mut(&topic).and_then(|cs| cs.get_mut(&p)) else {
                    continue;
                };
                c.state = CursorState::Listing(spec);
                carried.push((topic.clone(), p, c.placement));
                topics.entry(topic).or_default().push(ListOffsetsPartition {
                    partition_index: p,
                    current_leader_epoch: epoch,
                    timestamp: ts,
                    ..Default::default()
                });
            }
            self.listing.insert(broker);
            let req = ListOffsetsRequest {
                replica_id: -1,
                isolation_level: isolation,
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| ListOffsetsTopic {
                        name: name.to_string(),
                        partitions,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            out.push((
                broker,
                req,
                ConsumerInFlight {
                    broker,
                    partitions: carried,
                },
            ));
        }
        out
    }

    /// Explicit offsets need no ListOffsets: they are ready at once.
    pub fn settle_exact_offsets(&mut self) {
        for cursors in self.cursors.values_mut() {
            for c in cursors.values_mut() {
                match c.state {
                    CursorState::NeedsOffset(StartOffset::At(o)) => {
                        c.offset = o;
                        c.state = CursorState::Ready;
                    }
                    CursorState::NeedsOffset(StartOffset::AtEpoch {
                        offset,
                        leader_epoch,
                    }) => {
                        c.offset = offset;
                        c.state = CursorState::Ready;
                        // Validated as after a leader change: the epoch
                        // is the last one fetched under, as far as the
                        // log is concerned.
                        c.last_fetched_epoch = leader_epoch.max(-1);
                        c.awaiting_validation = leader_epoch >= 0;
                    }
                    _ => {}
                }
            }
        }
    }

    /// Handles a ListOffsets answer (`None`: lost). Returns whether
    /// metadata looks stale.
    pub fn on_list_offsets(
        &mut self,
        now: Timestamp,
        inflight: ConsumerInFlight,
        resp: Option<&ListOffsetsResponse>,
    ) -> bool {
        self.listing.remove(&inflight.broker);
        let mut stale = false;
        let retry = now + self.retry_backoff;
        for (topic, p, placement) in inflight.partitions {
            let Some(c) =
                cursors_mut(&mut self.cursors, &topic, p).filter(|c| c.placement == placement)
            else {
                continue;
            };
            // The spec this listing was for: a retry asks the same
            // question (a reset to latest stays a reset to latest).
            let CursorState::Listing(spec) = c.state else {
                continue;
            };
            let answer = resp.and_then(|r| {
                r.topics
                    .iter()
                    .filter(|t| *t.name == *topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|x| x.partition_index == p)
            });
            let Some(a) = answer else {
                c.state = CursorState::NeedsOffset(spec);
                c.retry_at = Some(retry);
                continue;
            };
            let error = ErrorCode::from_code(a.error_code);
            // A reset by the last consumed record's time that would move
            // the cursor forward: the log start passed it (retention), not
            // a truncation below it, and every record from the log start
            // on is one it never handed out. Records whose timestamps run
            // behind (a producer's clock, or create times set by hand)
            // would be skipped by the time lookup: start at the log start
            // instead. (A truncation ends the log below the cursor, so
            // its answer is never above it.)
            if error.is_ok() && a.offset >= 0 && c.reset_from.is_some_and(|from| a.offset > from) {
                c.reset_from = None;
                c.state = CursorState::NeedsOffset(StartOffset::Earliest);
                c.retry_at = None;
                continue;
            }
            if error.is_ok() && a.offset >= 0 {
                c.reset_from = None;
                c.offset = a.offset;
                c.state = CursorState::Ready;
                c.retry_at = None;
                c.last_fetched_epoch = -1;
                c.awaiting_validation = false;
                if a.leader_epoch >= 0 {
                    c.leader_epoch = c.leader_epoch.max(a.leader_epoch);
                }
            } else if error.is_ok() && matches!(spec, StartOffset::AtTimestamp(_)) {
                // No record at or after the time: start at the end, as
                // franz-go and Java's reset by duration do.
                c.state = CursorState::NeedsOffset(StartOffset::Latest);
                c.retry_at = None;
            } else {
                // Try again later with the same spec.
                tracing::debug!(topic = &*topic, partition = p, error = %error, "list offsets retried");
                c.state = CursorState::NeedsOffset(spec);
                c.retry_at = Some(retry);
                stale |= error.invalidates_metadata() || error == ErrorCode::FencedLeaderEpoch;
            }
        }
        stale
    }

    /// Leaders of partitions waiting for leader-epoch validation that may
    /// be asked now (one OffsetForLeaderEpoch per broker at a time).
    pub fn validation_brokers(&self, now: Timestamp, metadata: &Metadata) -> BTreeSet<NodeId> {
        let mut out = BTreeSet::new();
        for (topic, cursors) in &self.cursors {
            for (&p, c) in cursors {
                if !c.wants_validation(now) {
                    continue;
                }
                if let Some((leader, _)) = metadata.leader(topic, p) {
                    if !self.validating.contains(&leader) {
                        out.insert(leader);
                    }
                }
            }
        }
        out
    }

    /// The OffsetForLeaderEpoch for `broker`: every partition it leads
    /// that waits for validation, asking where the epoch of its last
    /// fetched batch ends, fenced by the current leader epoch.
    pub fn validation_request(
        &mut self,
        now: Timestamp,
        broker: NodeId,
        metadata: &Metadata,
    ) -> Option<(OffsetForLeaderEpochRequest, ConsumerInFlight)> {
        if self.validating.contains(&broker) {
            return None;
        }
        let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
        let mut carried = Vec::new();
        for (topic, cursors) in &mut self.cursors {
            for (&p, c) in cursors.iter_mut() {
                if !c.wants_validation(now)
                    || metadata.leader(topic, p).map(|l| l.0) != Some(broker)
                {
                    continue;
                }
                c.state = CursorState::Validating;
                carried.push((topic.clone(), p, c.placement));
                let part = OffsetForLeaderPartition {
                    partition: p,
                    current_leader_epoch: c.leader_epoch,
                    leader_epoch: c.last_fetched_epoch,
                    ..Default::default()
                };
                match topics.last_mut() {
                    Some(t) if *t.topic == **topic => t.partitions.push(part),
                    _ => topics.push(OffsetForLeaderTopic {
                        topic: topic.to_string(),
                        partitions: vec![part],
                        ..Default::default()
                    }),
                }
            }
        }
        if carried.is_empty() {
            return None;
        }
        self.validating.insert(broker);
        let req = OffsetForLeaderEpochRequest {
            // v3+: a consumer, not a follower replica.
            replica_id: -1,
            topics,
            ..Default::default()
        };
        Some((
            req,
            ConsumerInFlight {
                broker,
                partitions: carried,
            },
        ))
    }

    /// `broker` cannot validate (no OffsetForLeaderEpoch v2+): its
    /// partitions fetch on without it, as Java's client does.
    pub fn skip_validation(&mut self, broker: NodeId, metadata: &Metadata) {
        for (topic, cursors) in &mut self.cursors {
            for (&p, c) in cursors.iter_mut() {
                if c.awaiting_validation && metadata.leader(topic, p).map(|l| l.0) == Some(broker) {
                    tracing::debug!(
                        topic = &**topic,
                        partition = p,
                        broker = broker.0,
                        "broker cannot validate leader epochs; fetching on"
                    );
                    c.awaiting_validation = false;
                }
            }
        }
    }

    /// Handles an OffsetForLeaderEpoch answer (`None`: lost). Returns
    /// whether metadata looks stale.
    pub fn on_offset_for_leader_epoch(
        &mut self,
        now: Timestamp,
        inflight: ConsumerInFlight,
        resp: Option<&OffsetForLeaderEpochResponse>,
    ) -> bool {
        self.validating.remove(&inflight.broker);
        let mut stale = false;
        let retry = now + self.retry_backoff;
        let reset = self.config.reset;
        for (topic, p, placement) in inflight.partitions {
            let Some(c) =
                cursors_mut(&mut self.cursors, &topic, p).filter(|c| c.placement == placement)
            else {
                continue;
            };
            if c.state != CursorState::Validating {
                continue;
            }
            c.state = CursorState::Ready;
            let answer = resp.and_then(|r| {
                r.topics
                    .iter()
                    .filter(|t| *t.topic == *topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|x| x.partition == p)
            });
            let Some(a) = answer else {
                c.retry_at = Some(retry);
                continue;
            };
            let error = ErrorCode::from_code(a.error_code);
            match error {
                ErrorCode::None => {}
                e if e.is_retriable() || e.invalidates_metadata() => {
                    // NOT_LEADER, FENCED_LEADER_EPOCH (our epoch is old),
                    // UNKNOWN_LEADER_EPOCH (the broker's is): ask again
                    // on fresh metadata.
                    tracing::debug!(topic = &*topic, partition = p, error = %e, "leader epoch validation retried");
                    stale |= e.invalidates_metadata() || e == ErrorCode::UnknownLeaderEpoch;
                    c.retry_at = Some(retry);
                    continue;
                }
                e => {
                    // The broker will not say (an authorization error,
                    // say): fetch on; the fetch surfaces what is wrong.
                    tracing::warn!(topic = &*topic, partition = p, error = %e, "leader epoch validation failed; fetching on");
                    c.awaiting_validation = false;
                    continue;
                }
            }
            c.awaiting_validation = false;
            c.retry_at = None;
            if a.end_offset < 0 || a.leader_epoch < 0 {
                // The leader knows no epoch at or before ours: where we
                // were cannot be placed in its log.
                tracing::warn!(
                    topic = &*topic,
                    partition = p,
                    offset = c.offset,
                    ?reset,
                    "leader epoch unknown to the new leader; resetting"
                );
                match reset {
                    ResetPolicy::Earliest => c.reset_to(StartOffset::Earliest),
                    ResetPolicy::Latest => c.reset_to(StartOffset::Latest),
                    ResetPolicy::None => {
                        c.state = CursorState::Stopped;
                        let offset = c.offset;
                        self.push(FetchedPartition {
                            topic: topic.clone(),
                            partition: p,
                            records: Vec::new(),
                            error: Some(FetchError::OffsetOutOfRange { offset }),
                            high_watermark: -1,
                        });
                    }
                }
                continue;
            }
            if a.end_offset < c.offset {
                let fetch_offset = c.offset;
                tracing::warn!(
                    topic = &*topic,
                    partition = p,
                    fetch_offset,
                    end_offset = a.end_offset,
                    "log truncated below consumed records: data loss"
                );
                c.offset = a.end_offset;
                c.last_fetched_epoch = a.leader_epoch;
                self.push(FetchedPartition {
                    topic: topic.clone(),
                    partition: p,
                    records: Vec::new(),
                    error: Some(FetchError::DataLoss {
                        fetch_offset,
                        end_offset: a.end_offset,
                    }),
                    high_watermark: -1,
                });
            }
        }
        stale
    }

    /// Brokers with partitions ready to fetch now.
    pub fn fetch_brokers(&self, now: Timestamp, metadata: &Metadata) -> BTreeSet<NodeId> {
        if !self.room() || self.at_fetch_limit() {
            return BTreeSet::new();
        }
        self.wanting(now, metadata)
    }

    fn at_fetch_limit(&self) -> bool {
        self.config
            .max_concurrent_fetches
            .is_some_and(|m| self.fetching.len() >= m)
    }

    /// Brokers leading a partition ready to fetch, with no fetch in flight.
    fn wanting(&self, now: Timestamp, metadata: &Metadata) -> BTreeSet<NodeId> {
        let mut out = BTreeSet::new();
        for (topic, cursors) in &self.cursors {
            for (&p, c) in cursors {
                if c.fetchable(now) {
                    if let Some((leader, _)) = metadata.leader(topic, p) {
                        if !self.fetching.contains_key(&leader) {
                            out.insert(leader);
                        }
                    }
                }
            }
        }
        out
    }

    /// The fetch for `broker` at `version`: every ready partition it leads.
    pub fn fetch_request(
        &mut self,
        now: Timestamp,
        broker: NodeId,
        metadata: &Metadata,
        version: i16,
    ) -> Option<(FetchRequest, ConsumerInFlight)> {
        if self.fetching.contains_key(&broker) || !self.room() || self.at_fetch_limit() {
            return None;
        }
        // Ask for no more than this broker's share of the room left in the
        // buffer, so memory stays near `max_buffered_bytes` (a broker
        // still returns one whole batch when the first is larger, KIP-74)
        // and a broker fetched first cannot leave none to the others.
        let wanting = self.wanting(now, metadata).len().max(1);
        let expansion = self.expansion;
        let share = ((self.room_left() / wanting) as f64 / expansion) as usize;
        let share = share
            .min(usize::try_from(self.config.fetch_max_bytes).unwrap_or(0))
            .max(1);
        let partition_max_bytes = self
            .config
            .fetch_max_partition_bytes
            .min(i32::try_from(share).unwrap_or(i32::MAX))
            .max(1);
        let mut wanted: Vec<((Arc<str>, i32), SessionPartition)> = Vec::new();
        let mut placements: BTreeMap<(Arc<str>, i32), u64> = BTreeMap::new();
        for (topic, cursors) in &mut self.cursors {
            for (&p, c) in cursors.iter_mut() {
                if !c.fetchable(now) {
                    continue;
                }
                if metadata.leader(topic, p).map(|l| l.0) != Some(broker) {
                    continue;
                }
                c.state = CursorState::Fetching;
                placements.insert((topic.clone(), p), c.placement);
                wanted.push((
                    (topic.clone(), p),
                    SessionPartition {
                        fetch_offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        // Fetch v12 added it and it is not ignorable: an
                        // older broker (Kafka before 2.7) must not be sent
                        // it.
                        last_fetched_epoch: if version >= LAST_FETCHED_EPOCH_VERSION {
                            c.last_fetched_epoch
                        } else {
                            -1
                        },
                        max_bytes: partition_max_bytes,
                    },
                ));
            }
        }
        if wanted.is_empty() {
            return None;
        }
        // Nor more than these partitions can bring back.
        let budget = share.min(
            wanted
                .len()
                .saturating_mul(usize::try_from(partition_max_bytes).unwrap_or(1)),
        );
        let budget_i32 = i32::try_from(budget).unwrap_or(i32::MAX);
        // A broker fills partitions in request order until `max_bytes`:
        // start each fetch one partition further along.
        let round = self.fetch_rounds.entry(broker).or_default();
        let n = wanted.len();
        wanted.rotate_left(*round % n);
        *round = round.wrapping_add(1);
        let carried: Vec<(Arc<str>, i32, u64)> = wanted
            .iter()
            .map(|((t, p), _)| {
                (
                    t.clone(),
                    *p,
                    placements.get(&(t.clone(), *p)).copied().unwrap_or(0),
                )
            })
            .collect();
        // KIP-227: a session lets later fetches list only what changed.
        // Fetch v7+ and not disabled; otherwise every fetch is full
        // (session epoch -1, "no session").
        let use_sessions = self.config.fetch_sessions && version >= 7;
        let session = self.sessions.entry(broker).or_default();
        let now_sent: BTreeMap<(Arc<str>, i32), SessionPartition> =
            wanted.iter().cloned().collect();
        let (session_id, session_epoch, listed, forgotten) = if !use_sessions {
            (0, -1, wanted, Vec::new())
        } else if session.id == 0 {
            session.epoch = 0;
            session.sent = now_sent;
            (0, 0, wanted, Vec::new())
        } else {
            let listed: Vec<_> = wanted
                .into_iter()
                .filter(|(k, v)| session.sent.get(k) != Some(v))
                .collect();
            let forgotten: Vec<(Arc<str>, i32)> = session
                .sent
                .keys()
                .filter(|k| !now_sent.contains_key(*k))
                .cloned()
                .collect();
            session.sent = now_sent;
            (session.id, session.epoch, listed, forgotten)
        };
        // Consecutive partitions of a topic share an entry (after the
        // rotation a topic may have two).
        let mut topics: Vec<FetchTopic> = Vec::new();
        for ((topic, p), sp) in listed {
            let part = FetchPartition {
                partition: p,
                current_leader_epoch: sp.leader_epoch,
                fetch_offset: sp.fetch_offset,
                last_fetched_epoch: sp.last_fetched_epoch,
                partition_max_bytes: sp.max_bytes,
                ..Default::default()
            };
            match topics.last_mut() {
                Some(t) if *t.topic == *topic => t.partitions.push(part),
                _ => topics.push(FetchTopic {
                    topic: topic.to_string(),
                    partitions: vec![part],
                    ..Default::default()
                }),
            }
        }
        let mut forgotten_topics: Vec<ForgottenTopic> = Vec::new();
        for (topic, p) in forgotten {
            match forgotten_topics.last_mut() {
                Some(t) if *t.topic == *topic => t.partitions.push(p),
                _ => forgotten_topics.push(ForgottenTopic {
                    topic: topic.to_string(),
                    partitions: vec![p],
                    ..Default::default()
                }),
            }
        }
        self.fetching
            .insert(broker, (budget as f64 * expansion) as usize);
        let req = FetchRequest {
            replica_id: -1,
            max_wait_ms: i32::try_from(self.config.fetch_max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: budget_i32,
            isolation_level: match self.config.isolation {
                IsolationLevel::ReadUncommitted => 0,
                IsolationLevel::ReadCommitted => 1,
            },
            session_id,
            session_epoch,
            topics,
            forgotten_topics_data: forgotten_topics,
            ..Default::default()
        };
        Some((
            req,
            ConsumerInFlight {
                broker,
                partitions: carried,
            },
        ))
    }

    /// Advances or resets the broker's fetch session after an answer.
    fn on_session_answer(&mut self, broker: NodeId, resp: Option<&FetchResponse>) {
        let Some(session) = self.sessions.get_mut(&broker) else {
            return;
        };
        let Some(resp) = resp else {
            // A lost fetch may or may not have moved the broker's session:
            // start a new one.
            *session = FetchSession::default();
            return;
        };
        match ErrorCode::from_code(resp.error_code) {
            ErrorCode::None => {
                if session.id == 0 && session.epoch == 0 {
                    // The answer to an initial fetch: a new session, or 0
                    // when the broker would not create one (the next fetch
                    // is initial again, as Java's client does).
                    session.id = resp.session_id;
                    session.epoch = 1;
                    if resp.session_id == 0 {
                        *session = FetchSession::default();
                    }
                } else if session.id != 0 {
                    session.epoch = if session.epoch == i32::MAX {
                        1
                    } else {
                        session.epoch + 1
                    };
                }
            }
            e => {
                tracing::debug!(broker = broker.0, error = %e, "fetch session reset");
                *session = FetchSession::default();
            }
        }
    }

    /// Handles a Fetch answer (`None`: lost). Returns whether metadata
    /// looks stale.
    pub fn on_fetch(
        &mut self,
        now: Timestamp,
        inflight: ConsumerInFlight,
        resp: Option<&FetchResponse>,
    ) -> bool {
        self.fetching.remove(&inflight.broker);
        self.on_session_answer(inflight.broker, resp);
        // A top-level error (a session the broker lost, say) carries no
        // partitions: they are fetched again, after the backoff, in a fresh
        // session.
        let resp = resp.filter(|r| r.error_code == 0);
        let mut stale = false;
        let (mut wire_bytes, mut buffer_bytes) = (0usize, 0usize);
        let retry = now + self.retry_backoff;
        for (topic, p, placement) in inflight.partitions {
            let answer = resp.and_then(|r| {
                r.responses
                    .iter()
                    .filter(|t| *t.topic == *topic)
                    .flat_map(|t| t.partitions.iter())
                    .find(|x| x.partition_index == p)
            });
            let reset = self.config.reset;
            let isolation = self.config.isolation;
            let limit = self.config.max_decompressed_batch_bytes;
            let Some(c) =
                cursors_mut(&mut self.cursors, &topic, p).filter(|c| c.placement == placement)
            else {
                continue;
            };
            if c.state != CursorState::Fetching {
                // Not this fetch's cursor any more: the partition was
                // revoked and assigned again (or reset) while the fetch
                // was out, and the new cursor waits for its own start.
                // Applied, the old answer would hand records out from
                // the new cursor's unset offset, and the same records
                // again once its start is known (the simulator's group
                // swarm, seed 273: a member processed 0..=5 twice).
                continue;
            }
            c.state = CursorState::Ready;
            if c.paused {
                // Paused while the fetch was out: drop what came back, the
                // offset stays where it was.
                continue;
            }
            let Some(a) = answer else {
                if resp.is_some() {
                    // Left out: nothing new (an incremental session answer
                    // lists only what changed), or the response was full.
                    continue;
                }
                c.retry_at = Some(retry);
                continue;
            };
            let error = ErrorCode::from_code(a.error_code);
            match error {
                ErrorCode::None => {}
                ErrorCode::OffsetOutOfRange
                    if reset != ResetPolicy::None && c.last_timestamp.is_some() =>
                {
                    // After consuming, the policy would replay the whole
                    // log (earliest) or skip what came since (latest):
                    // franz-go resets to where the last record handed out
                    // sits in time instead, and warns. Once: a second out
                    // of range before anything new is consumed uses the
                    // policy.
                    let ts = c.last_timestamp.take().unwrap_or_default();
                    tracing::warn!(
                        topic = &*topic,
                        partition = p,
                        offset = c.offset,
                        timestamp = ts,
                        "offset out of range after consuming; resetting to the last consumed record's timestamp"
                    );
                    c.reset_from = Some(c.offset);
                    c.reset_to(StartOffset::AtTimestamp(ts));
                    continue;
                }
                ErrorCode::OffsetOutOfRange => {
                    match reset {
                        ResetPolicy::Earliest => c.reset_to(StartOffset::Earliest),
                        ResetPolicy::Latest => c.reset_to(StartOffset::Latest),
                        ResetPolicy::None => {
                            c.state = CursorState::Stopped;
                            let offset = c.offset;
                            self.push(FetchedPartition {
                                topic: topic.clone(),
                                partition: p,
                                records: Vec::new(),
                                error: Some(FetchError::OffsetOutOfRange { offset }),
                                high_watermark: a.high_watermark,
                            });
                        }
                    }
                    tracing::warn!(
                        topic = &*topic,
                        partition = p,
                        ?reset,
                        "offset out of range"
                    );
                    continue;
                }
                e if e.is_retriable() || e.invalidates_metadata() => {
                    tracing::debug!(topic = &*topic, partition = p, error = %e, "fetch retried");
                    // UNKNOWN_LEADER_EPOCH: the broker is behind our
                    // metadata, or we are behind it; either way fresh
                    // metadata settles it.
                    stale |= e.invalidates_metadata() || e == ErrorCode::UnknownLeaderEpoch;
                    c.retry_at = Some(retry);
                    continue;
                }
                e => {
                    c.state = CursorState::Stopped;
                    self.push(FetchedPartition {
                        topic: topic.clone(),
                        partition: p,
                        records: Vec::new(),
                        error: Some(FetchError::Broker(e)),
                        high_watermark: a.high_watermark,
                    });
                    continue;
                }
            }
            c.retry_at = None;
            let Some(data) = a.records.clone() else {
                continue;
            };
            let aborted: Vec<(i64, i64)> = match isolation {
                IsolationLevel::ReadCommitted => a
                    .aborted_transactions
                    .as_ref()
                    .map(|v| v.iter().map(|t| (t.producer_id, t.first_offset)).collect())
                    .unwrap_or_default(),
                IsolationLevel::ReadUncommitted => Vec::new(),
            };
            wire_bytes += data.len();
            let (records, next, last_epoch, error) =
                read_partition(&topic, p, data, c.offset, isolation, aborted, limit);
            let records_bytes: usize = records.iter().map(record_bytes).sum();
            buffer_bytes += records_bytes;
            if next > c.offset {
                c.offset = next;
            }
            if let Some(r) = records.last() {
                c.last_timestamp = Some(r.timestamp);
            }
            if last_epoch >= 0 {
                c.last_fetched_epoch = last_epoch;
            }
            if error.is_some() {
                c.state = CursorState::Stopped;
            }
            if !records.is_empty() || error.is_some() {
                self.buffered_bytes += records_bytes;
                self.buffered.push_back(FetchedPartition {
                    topic: topic.clone(),
                    partition: p,
                    records,
                    error,
                    high_watermark: a.high_watermark,
                });
            }
        }
        self.learn_expansion(wire_bytes, buffer_bytes);
        stale
    }

    /// Folds one answer's buffer bytes per wire byte into `expansion`
    /// (the first as it is, then half the old estimate, half the new),
    /// ignoring answers too small to say much.
    fn learn_expansion(&mut self, wire_bytes: usize, buffer_bytes: usize) {
        const MIN_SAMPLE: usize = 1024;
        if wire_bytes < MIN_SAMPLE {
            return;
        }
        let ratio = (buffer_bytes as f64 / wire_bytes as f64).clamp(1.0, MAX_EXPANSION);
        self.expansion = if self.expansion_seen {
            (self.expansion + ratio) / 2.0
        } else {
            ratio
        };
        self.expansion_seen = true;
    }

    fn push(&mut self, f: FetchedPartition) {
        self.buffered_bytes += f.records.iter().map(record_bytes).sum::<usize>();
        self.buffered.push_back(f);
    }

    /// The next time a backed-off partition may be fetched or listed.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        self.cursors
            .values()
            .flat_map(|cs| cs.values())
            .filter_map(|c| c.retry_at)
            .filter(|&t| t > now)
            .min()
    }

    /// Whether the consumer has anything to do at all.
    pub fn is_active(&self) -> bool {
        !self.cursors.is_empty() || !self.topics.is_empty() || !self.regexes.is_empty()
    }

    /// Starts consuming partitions a consumer group assigned, at the
    /// committed offsets (or the reset offset) the group fetched.
    pub fn assign_group_partitions(
        &mut self,
        partitions: BTreeMap<String, BTreeMap<i32, StartOffset>>,
    ) {
        self.consume_partitions(partitions);
        self.settle_exact_offsets();
    }

    /// Stops consuming partitions a consumer group revoked or lost: their
    /// cursors go, and so do their buffered records, which must never be
    /// handed out after the revoke (another member may own them now). A
    /// fetch in flight for them is ignored when it answers.
    pub fn revoke_group_partitions(&mut self, partitions: &BTreeMap<String, Vec<i32>>) {
        for (topic, ps) in partitions {
            if let Some(cursors) = self.cursors.get_mut(topic.as_str()) {
                for p in ps {
                    cursors.remove(p);
                }
                if cursors.is_empty() {
                    self.cursors.remove(topic.as_str());
                }
            }
            if let Some(explicit) = self.explicit.get_mut(topic) {
                for p in ps {
                    explicit.remove(p);
                }
                if explicit.is_empty() {
                    self.explicit.remove(topic);
                }
            }
            let mut dropped = 0;
            self.buffered.retain(|f| {
                let hit = *f.topic == **topic && ps.contains(&f.partition);
                if hit {
                    dropped += f.records.iter().map(record_bytes).sum::<usize>();
                }
                !hit
            });
            self.buffered_bytes = self.buffered_bytes.saturating_sub(dropped);
        }
    }
}

impl Cursor {
    fn new(start: StartOffset, placement: u64) -> Self {
        Cursor {
            placement,
            state: CursorState::NeedsOffset(start),
            offset: -1,
            leader_epoch: -1,
            last_fetched_epoch: -1,
            leader: None,
            last_timestamp: None,
            reset_from: None,
            awaiting_validation: false,
            paused: false,
            retry_at: None,
        }
    }

    fn backed_off(&self, now: Timestamp) -> bool {
        self.retry_at.is_some_and(|t| t > now)
    }

    /// Ready, validated, not paused nor backing off.
    fn fetchable(&self, now: Timestamp) -> bool {
        self.state == CursorState::Ready
            && !self.awaiting_validation
            && !self.paused
            && !self.backed_off(now)
    }

    /// Whether an OffsetForLeaderEpoch for it may go out now.
    fn wants_validation(&self, now: Timestamp) -> bool {
        self.state == CursorState::Ready
            && self.awaiting_validation
            && !self.paused
            && !self.backed_off(now)
    }

    /// Sends the cursor to ListOffsets for `spec`: a fresh position, so
    /// nothing fetched before it needs validating.
    fn reset_to(&mut self, spec: StartOffset) {
        self.state = CursorState::NeedsOffset(spec);
        self.last_fetched_epoch = -1;
        self.awaiting_validation = false;
    }
}

fn cursors_mut<'a>(
    cursors: &'a mut BTreeMap<Arc<str>, BTreeMap<i32, Cursor>>,
    topic: &str,
    partition: i32,
) -> Option<&'a mut Cursor> {
    cursors.get_mut(topic)?.get_mut(&partition)
}

fn record_bytes(r: &ConsumedRecord) -> usize {
    r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len) + 64
}

/// Reads one partition's fetched data from `from` on: the records handed
/// out, the next offset to fetch, the last batch's leader epoch, and an
/// error that stops the partition.
fn read_partition(
    topic: &Arc<str>,
    partition: i32,
    data: Bytes,
    from: i64,
    isolation: IsolationLevel,
    mut aborted: Vec<(i64, i64)>,
    decompress_limit: usize,
) -> (Vec<ConsumedRecord>, i64, i32, Option<FetchError>) {
    aborted.sort_by_key(|&(_, first)| first);
    let mut aborted = aborted.into_iter().peekable();
    let mut aborting: BTreeSet<i64> = BTreeSet::new();
    let mut out = Vec::new();
    let mut next = from;
    let mut last_epoch = -1;
    let opts = ReadOptions {
        max_decompressed_bytes: decompress_limit,
        ..Default::default()
    };
    for batch in Batches::with_options(data, opts) {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                // Data after a good prefix is still delivered; the error
                // stops the partition where it happened.
                return (
                    out,
                    next,
                    last_epoch,
                    Some(FetchError::Corrupt {
                        offset: next,
                        reason: e.to_string(),
                    }),
                );
            }
        };
        let last = batch.last_offset();
        if last < from {
            continue;
        }
        last_epoch = batch.partition_leader_epoch();
        if isolation == IsolationLevel::ReadCommitted {
            while let Some(&(pid, first)) = aborted.peek() {
                if first > last {
                    break;
                }
                aborting.insert(pid);
                aborted.next();
            }
        }
        if batch.is_control() {
            if isolation == IsolationLevel::ReadCommitted {
                if let Ok(mut records) = batch.records() {
                    if let Some(Ok(r)) = records.next() {
                        if let Ok(marker) = ControlRecord::from_record(&r) {
                            if marker.kind == ControlRecordKind::Abort {
                                aborting.remove(&batch.producer_id());
                            }
                        }
                    }
                }
            }
            next = next.max(last + 1);
            continue;
        }
        if isolation == IsolationLevel::ReadCommitted
            && batch.is_transactional()
            && aborting.contains(&batch.producer_id())
        {
            next = next.max(last + 1);
            continue;
        }
        let records = match batch.records() {
            Ok(r) => r,
            Err(e) => {
                return (
                    out,
                    next,
                    last_epoch,
                    Some(FetchError::Corrupt {
                        offset: batch.base_offset(),
                        reason: e.to_string(),
                    }),
                );
            }
        };
        for r in records {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    return (
                        out,
                        next,
                        last_epoch,
                        Some(FetchError::Corrupt {
                            offset: next,
                            reason: e.to_string(),
                        }),
                    );
                }
            };
            if r.offset < from || r.offset < next {
                continue;
            }
            next = r.offset + 1;
            out.push(ConsumedRecord {
                topic: topic.clone(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
                leader_epoch: last_epoch,
            });
        }
        // Compaction can leave a batch's last offsets empty: move past them.
        next = next.max(last + 1);
    }
    (out, next, last_epoch, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use crate::protocol::messages::MetadataResponse;

    /// Topic `t` with one partition led by each of brokers 1..=n.
    fn metadata(n: i32) -> Metadata {
        let resp = MetadataResponse {
            brokers: (1..=n)
                .map(|b| MetadataResponseBroker {
                    node_id: b,
                    host: "127.0.0.1".into(),
                    port: 9000 + b,
                    ..Default::default()
                })
                .collect(),
            topics: vec![MetadataResponseTopic {
                name: Some("t".into()),
                partitions: (0..n)
                    .map(|p| MetadataResponsePartition {
                        partition_index: p,
                        leader_id: p + 1,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut m = Metadata::new();
        m.apply(Timestamp::ZERO, &resp);
        m
    }

    /// A consumer of `t` whose partitions are all ready at offset 0.
    fn ready(config: ConsumerConfig, m: &Metadata) -> Consumer {
        let mut c = Consumer::new(config, Duration::from_millis(100));
        let parts = (0..3).map(|p| (p, StartOffset::At(0))).collect();
        c.consume_partitions(BTreeMap::from([("t".to_string(), parts)]));
        c.settle_exact_offsets();
        c.on_metadata(m);
        c
    }

    /// Sends a fetch to every broker that may have one now, as the client
    /// does: (broker, max_bytes) of each.
    fn fetch_all(c: &mut Consumer, m: &Metadata) -> Vec<(NodeId, i32)> {
        let now = Timestamp::ZERO;
        let mut out = Vec::new();
        for b in c.fetch_brokers(now, m) {
            if let Some((req, _)) = c.fetch_request(now, b, m, MAX_FETCH_VERSION) {
                out.push((b, req.max_bytes));
            }
        }
        out
    }

    #[test]
    fn a_fetch_answered_after_its_partition_was_revoked_and_assigned_again_hands_nothing_out() {
        use crate::protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        use crate::record::{BatchBuilder, BatchOptions, BatchStamp, NO_HEADERS};
        let m = metadata(1);
        let now = Timestamp::ZERO;
        let mut c = Consumer::new(ConsumerConfig::default(), Duration::from_millis(100));
        let at = |start| BTreeMap::from([("t".to_string(), BTreeMap::from([(0, start)]))]);
        c.assign_group_partitions(at(StartOffset::At(0)));
        c.on_metadata(&m);
        let (_, old_fetch) = c
            .fetch_request(now, NodeId(1), &m, MAX_FETCH_VERSION)
            .expect("a fetch of partition 0");
        // Lost and assigned again while the fetch waits at the broker: the
        // new cursor needs its committed offset first.
        c.revoke_group_partitions(&BTreeMap::from([("t".to_string(), vec![0])]));
        c.assign_group_partitions(at(StartOffset::Earliest));
        let mut b = BatchBuilder::new(BatchOptions::default());
        for _ in 0..3 {
            b.append(0, None, Some(b"v"), NO_HEADERS).expect("room");
        }
        let batch = b.seal(&BatchStamp::default()).expect("sealed");
        let answer = FetchResponse {
            responses: vec![FetchableTopicResponse {
                topic: "t".into(),
                partitions: vec![PartitionData {
                    partition_index: 0,
                    high_watermark: 3,
                    records: Some(batch.to_bytes()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        c.on_fetch(now, old_fetch, Some(&answer));
        assert!(
            !c.has_buffered(),
            "the old cursor's answer was handed out through the new cursor"
        );
    }

    #[test]
    fn every_broker_gets_a_share_of_the_buffer() {
        // Fetches to brokers 1 and 2 must not take all the room and leave
        // broker 3 none while they wait at the broker (they are re-sent
        // first each time they come back, so it would never get one).
        let m = metadata(3);
        let mut c = ready(
            ConsumerConfig {
                max_buffered_bytes: 6 << 20,
                ..Default::default()
            },
            &m,
        );
        let sent = fetch_all(&mut c, &m);
        assert_eq!(sent.len(), 3, "{sent:?}");
        // One partition each: at most one partition's worth (1 MiB).
        assert!(sent.iter().all(|&(_, max)| max == 1 << 20), "{sent:?}");

        let mut c = ready(
            ConsumerConfig {
                max_buffered_bytes: 3 << 20,
                fetch_max_partition_bytes: 8 << 20,
                ..Default::default()
            },
            &m,
        );
        let sent = fetch_all(&mut c, &m);
        assert_eq!(sent.len(), 3, "{sent:?}");
        let total: i32 = sent.iter().map(|s| s.1).sum();
        assert!(sent.iter().all(|&(_, max)| max > 0), "{sent:?}");
        assert!(total <= 3 << 20, "{sent:?}");
    }

    #[test]
    fn an_answer_for_a_replaced_cursor_moves_nothing() {
        use crate::protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        use crate::record::{BatchBuilder, BatchOptions, BatchStamp};

        let m = metadata(1);
        let mut c = ready(ConsumerConfig::default(), &m);
        let (_, inflight) = c
            .fetch_request(Timestamp::ZERO, NodeId(1), &m, MAX_FETCH_VERSION)
            .expect("a fetch from offset 0");
        // A seek (or a revoke and a new assignment) while it is out.
        c.consume_partitions(BTreeMap::from([(
            "t".to_string(),
            BTreeMap::from([(0, StartOffset::At(5))]),
        )]));
        c.settle_exact_offsets();
        // The old fetch answers with offsets 0..10; taken for the new
        // cursor, it would hand out 5..10 as if fetched from 5 and skip
        // ahead, or worse, fill a gap left by a later seek.
        let mut b = BatchBuilder::new(BatchOptions::default());
        for i in 0..10u8 {
            b.append(
                1_700_000_000_000,
                None,
                Some(&[i][..]),
                &[] as &[(&str, Option<&[u8]>)],
            )
            .expect("append");
        }
        let batch = b.seal(&BatchStamp::default()).expect("seal").into_bytes();
        let resp = FetchResponse {
            responses: vec![FetchableTopicResponse {
                topic: "t".into(),
                partitions: vec![PartitionData {
                    partition_index: 0,
                    high_watermark: 10,
                    records: Some(batch),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        c.on_fetch(Timestamp::ZERO, inflight, Some(&resp));
        assert!(!c.has_buffered(), "nothing handed out from the old fetch");
        let cursor = &c.cursors["t"][&0];
        assert_eq!((cursor.offset, cursor.state), (5, CursorState::Ready));
    }

    mod validation {
        use super::*;
        use crate::protocol::messages::offset_for_leader_epoch_response::{
            EpochEndOffset, OffsetForLeaderTopicResult,
        };
        use proptest::prelude::*;

        const ERRORS: [ErrorCode; 5] = [
            ErrorCode::None,
            ErrorCode::NotLeaderOrFollower,
            ErrorCode::FencedLeaderEpoch,
            ErrorCode::UnknownLeaderEpoch,
            ErrorCode::TopicAuthorizationFailed,
        ];

        proptest! {
            #[test]
            fn validation_never_moves_a_cursor_forward_and_reports_loss_exactly_when_the_log_ends_before_it(
                offset in 0i64..1_000,
                fetched_epoch in 0i32..10,
                end_offset in -1i64..1_100,
                answered_epoch in -1i32..10,
                error in 0usize..ERRORS.len(),
            ) {
                let m = metadata(3);
                let mut c = ready(ConsumerConfig::default(), &m);
                {
                    let cur = cursors_mut(&mut c.cursors, "t", 0).expect("cursor");
                    cur.offset = offset;
                    cur.last_fetched_epoch = fetched_epoch;
                    cur.leader_epoch = fetched_epoch + 1;
                    cur.awaiting_validation = true;
                }
                let now = Timestamp::ZERO;
                prop_assert!(!c.fetch_brokers(now, &m).contains(&NodeId(1)), "fetched before validation");
                let (req, inflight) = c.validation_request(now, NodeId(1), &m).expect("a request");
                let asked = &req.topics[0].partitions[0];
                prop_assert_eq!(asked.current_leader_epoch, fetched_epoch + 1);
                prop_assert_eq!(asked.leader_epoch, fetched_epoch);
                let error = ERRORS[error];
                let resp = OffsetForLeaderEpochResponse {
                    topics: vec![OffsetForLeaderTopicResult {
                        topic: "t".into(),
                        partitions: vec![EpochEndOffset {
                            error_code: error.code(),
                            partition: 0,
                            leader_epoch: answered_epoch,
                            end_offset,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                c.on_offset_for_leader_epoch(now, inflight, Some(&resp));
                let taken = c.take(None);
                let losses: Vec<&FetchError> = taken.iter().filter_map(|f| f.error.as_ref()).collect();
                let cur = cursors_mut(&mut c.cursors, "t", 0).expect("cursor");
                prop_assert!(cur.offset <= offset, "moved forward: {} -> {}", offset, cur.offset);
                match error {
                    ErrorCode::None if end_offset < 0 || answered_epoch < 0 => {
                        // Unknown to the leader: the reset policy (earliest).
                        prop_assert_eq!(cur.state, CursorState::NeedsOffset(StartOffset::Earliest));
                        prop_assert!(losses.is_empty());
                    }
                    ErrorCode::None => {
                        prop_assert!(!cur.awaiting_validation);
                        prop_assert_eq!(cur.offset, offset.min(end_offset));
                        if end_offset < offset {
                            let want = FetchError::DataLoss { fetch_offset: offset, end_offset };
                            prop_assert_eq!(losses, vec![&want]);
                        } else {
                            prop_assert!(losses.is_empty());
                        }
                    }
                    e if e.is_retriable() => {
                        // Asked again after the backoff, never fetched first.
                        prop_assert!(cur.awaiting_validation);
                        prop_assert_eq!(cur.offset, offset);
                        prop_assert!(cur.retry_at.is_some());
                        prop_assert!(losses.is_empty());
                    }
                    _ => {
                        // The broker will not say: fetch on; the fetch
                        // reports what is wrong.
                        prop_assert!(!cur.awaiting_validation);
                        prop_assert_eq!(cur.offset, offset);
                        prop_assert!(losses.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn max_concurrent_fetches_holds_across_brokers() {
        let m = metadata(3);
        let mut c = ready(
            ConsumerConfig {
                max_concurrent_fetches: Some(1),
                ..Default::default()
            },
            &m,
        );
        assert_eq!(fetch_all(&mut c, &m).len(), 1);
        assert!(fetch_all(&mut c, &m).is_empty());
    }
}
