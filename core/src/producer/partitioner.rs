//! Partitioners: which partition of a topic each produced record goes to.
//!
//! # The rules, and why
//!
//! - **A keyed record goes where Java would put it.** Its partition is
//!   `toPositive(murmur2(key)) % numPartitions`, exactly as Kafka's Java
//!   client computes it (`Utils.murmur2`, `Utils.toPositive`). Java,
//!   franz-go and librdkafka's `murmur2_random` partitioner agree on this
//!   (librdkafka's default, `consistent_random`, hashes with CRC32 and does
//!   not), so a topic written by all of them keeps each key on one
//!   partition, and with it the key's order.
//!   An empty key is a key (it hashes); only an absent key is "unkeyed".
//!   The hash looks at the number of partitions only, never at which ones
//!   have a leader: moving a key while its partition is down would break the
//!   per-key order the key was given for. Such a record waits for a leader.
//! - **Unkeyed records stick to one partition for a while** (KIP-480, made
//!   uniform by KIP-794). Spreading them record by record (round robin) makes
//!   many small batches, which costs the brokers CPU and the producer
//!   latency. The sticky partitioner sends to one partition until about
//!   [`DEFAULT_STICKY_BYTES`] (64 KiB, franz-go's default; Java switches
//!   every `batch.size` = 16 KiB) have been buffered there, then picks
//!   another at random. Counting bytes rather than switching on every new
//!   batch (KIP-480's rule) is KIP-794's fix for a skew: a batch bound for a
//!   slow broker waits longer, grows bigger before the switch comes, and so
//!   slow brokers were given *more* data.
//! - **Adaptive** (KIP-794): when the producer says how much is buffered per
//!   partition, the next sticky partition is drawn with a weight that falls
//!   as its backlog grows, so a slow broker is given less.
//! - **Unavailable partitions are skipped** for unkeyed records: a partition
//!   with no leader is never chosen while another one has a leader. When
//!   none has, one is picked among all (as Java does) and the record waits.
//!
//! # Purity
//!
//! No clock, no global RNG, no threads: randomness comes from a seed each
//! partitioner is built with, drawn through the core's seeded splitmix64
//! generator ([`crate::rng::SeededRng`]). The same seed and the same calls give the same partitions;
//! [`topic_seed`] derives a per-topic seed from the client's seed.
//!
//! # How the producer drives a partitioner
//!
//! One [`Partitioner`] per topic (a [`PartitionerFactory`] makes them). For
//! each record, with the topic's current [`PartitionsView`]:
//!
//! 1. [`partition_record`] asks [`Partitioner::partition`], checks the answer
//!    is in range, and if buffering the record there would start a new batch
//!    lets the partitioner re-pick through [`Partitioner::on_new_batch`]
//!    (KIP-480's protocol, as franz-go's `TopicPartitionerOnNewBatch`);
//! 2. the producer buffers the record in that partition;
//! 3. it calls [`Partitioner::on_record_buffered`]. A record that could not
//!    be buffered (buffer full, cancelled) is not reported, so it does not
//!    count towards the sticky budget.
//!
//! ```
//! use sansa_core::producer::partitioner::{
//!     partition_record, DefaultPartitioner, Partitioner, PartitionsView, RecordInfo,
//! };
//!
//! let mut partitioner = DefaultPartitioner::new(7);
//! // Six partitions; partition 4 has no leader right now.
//! let has_leader = [true, true, true, true, false, true];
//! let view = PartitionsView::new(&has_leader);
//!
//! // A keyed record: Java's murmur2 placement, whatever the leaders.
//! let keyed = RecordInfo::keyed(b"foobar", 100);
//! assert_eq!(partition_record(&mut partitioner, &keyed, &view, |_| false), Ok(0));
//!
//! // Unkeyed records stick to one partition that has a leader.
//! let unkeyed = RecordInfo::unkeyed(100);
//! let first = partition_record(&mut partitioner, &unkeyed, &view, |_| false).unwrap();
//! assert_ne!(first, 4);
//! partitioner.on_record_buffered(&unkeyed, first);
//! let second = partition_record(&mut partitioner, &unkeyed, &view, |_| false).unwrap();
//! assert_eq!(first, second);
//! ```
//!
//! # What we took from franz-go and Java
//!
//! franz-go's `UniformBytesPartitioner(64 KiB, adaptive, keys, nil)` is its
//! default and ours ([`DefaultPartitioner`]). Like it: keyed records are
//! hashed over all partitions (its `RequiresConsistency`); unkeyed ones
//! choose among writable partitions only; the sticky run ends once the
//! bytes reach the budget and the next partition is drawn at random (the
//! same partition may be drawn again, as in Java and franz-go; KIP-480's old
//! sticky partitioner avoided it, KIP-794's does not); `OnNewBatch` is a
//! hook for partitioners that pin until a batch rolls over, which the
//! uniform-bytes one does not use. Where they differ we follow Java:
//!
//! - bytes are counted *after* the record is buffered, from what the
//!   producer reports, so the record that crosses the budget still goes to
//!   the current partition and the next record switches (franz-go counts the
//!   record first and sends the crossing record to the new partition);
//! - the adaptive weight is Java's `maxBacklog + 1 - backlog` (a cumulative
//!   frequency table in integers), not franz-go's float `1 / (backlog + 1)`;
//!   the backlog unit is the producer's choice (bytes or records);
//! - when no partition has a leader, one is picked among all.
//!
//! Sansa goes further in one place: if the sticky partition loses its
//! leader, the next unkeyed record moves on at once instead of queueing
//! behind it. Java keeps appending to it until the byte budget is spent
//! (leaderless partitions are only left out of later draws); franz-go keeps
//! its pick as an index into the writable-partition list, so a change in
//! that list silently moves it to whatever partition now has the index.
//! Not done: Java's KAFKA-14156 refinement that delays the switch until the
//! current batch is ready to send (`batch.size` is the sticky size in Java,
//! so "batch full" and "budget spent" coincide there; with our 64 KiB
//! budget and 1 MB batches they do not).

use crate::rng::{mix64, SeededRng};
use std::fmt;

/// How many bytes of unkeyed records the sticky partitioners send to one
/// partition before they pick another: 64 KiB, franz-go's default
/// (`UniformBytesPartitioner(64 << 10, ..)`). Java uses its `batch.size`,
/// 16 KiB by default.
pub const DEFAULT_STICKY_BYTES: u64 = 64 * 1024;

// --------------------------------------------------------------------------
// murmur2, exactly as Kafka's Java client
// --------------------------------------------------------------------------

/// Kafka's 32-bit murmur2 hash of `key`, bit for bit as the Java client's
/// `org.apache.kafka.common.utils.Utils.murmur2` (seed `0x9747b28c`): the
/// 4-byte blocks are read little-endian, the 1 to 3 tail bytes are mixed in
/// from the highest down, and the result is Java's signed `int`.
///
/// ```
/// use sansa_core::producer::partitioner::murmur2;
///
/// // Vectors from Kafka's own UtilsTest.
/// assert_eq!(murmur2(b"21"), -973_932_308);
/// assert_eq!(murmur2(b"abc"), 479_470_107);
/// ```
pub fn murmur2(key: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java's `int` arithmetic wraps and `>>>` is a logical shift: `u32`
    // with wrapping multiplication is the same bits. Java takes the length
    // as an `int`; `as u32` keeps the same low 32 bits for any real key.
    let mut h: u32 = SEED ^ (key.len() as u32);

    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // Java's `switch (length % 4)` falls through from case 3 to case 1.
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (`n & 0x7fffffff`).
///
/// This is *not* `abs`: `-1` becomes `2147483647`, and `i32::MIN` becomes 0.
/// Kafka chose it so that every hash maps to a non-negative number.
///
/// ```
/// use sansa_core::producer::partitioner::to_positive;
///
/// assert_eq!(to_positive(-1), i32::MAX);
/// assert_eq!(to_positive(i32::MIN), 0);
/// assert_eq!(to_positive(42), 42);
/// ```
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition Kafka's Java client picks for a keyed record:
/// `toPositive(murmur2(key)) % numPartitions`.
///
/// `num_partitions` below 1 means there is no partition to pick; Java would
/// throw on 0, this returns 0 instead of panicking. The partitioners check
/// the count first and report [`PartitionError::NoPartitions`].
///
/// ```
/// use sansa_core::producer::partitioner::java_key_partition;
///
/// assert_eq!(java_key_partition(b"abc", 1000), 107);
/// assert_eq!(java_key_partition(b"foobar", 12), 6);
/// ```
pub fn java_key_partition(key: &[u8], num_partitions: i32) -> i32 {
    if num_partitions < 1 {
        return 0;
    }
    to_positive(murmur2(key)) % num_partitions
}

// --------------------------------------------------------------------------
// Key hashers
// --------------------------------------------------------------------------

/// Maps a record key to a partition, for [`KeyHashPartitioner`].
///
/// The answer must be in `0..num_partitions`; the partitioner reports
/// anything else as [`PartitionError::InvalidPartition`] instead of using
/// it. `num_partitions` is at least 1 when this is called.
///
/// ```
/// use sansa_core::producer::partitioner::KeyHasher;
///
/// /// Puts every key on the partition named by its first byte.
/// #[derive(Debug)]
/// struct FirstByte;
///
/// impl KeyHasher for FirstByte {
///     fn partition(&self, key: &[u8], num_partitions: i32) -> i32 {
///         i32::from(key.first().copied().unwrap_or(0)) % num_partitions
///     }
/// }
///
/// assert_eq!(FirstByte.partition(&[5, 1], 4), 1);
/// ```
pub trait KeyHasher: fmt::Debug + Send + Sync {
    /// The partition, in `0..num_partitions`, for `key`.
    fn partition(&self, key: &[u8], num_partitions: i32) -> i32;
}

/// Kafka's default key hasher: [`java_key_partition`], murmur2 as the Java
/// client computes it.
///
/// ```
/// use sansa_core::producer::partitioner::{KeyHasher, Murmur2Hasher};
///
/// assert_eq!(Murmur2Hasher.partition(b"abc", 1000), 107);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Murmur2Hasher;

impl KeyHasher for Murmur2Hasher {
    fn partition(&self, key: &[u8], num_partitions: i32) -> i32 {
        java_key_partition(key, num_partitions)
    }
}

/// Any 32-bit hash, turned into a partition the way Kafka does it: clear
/// the sign bit, then take the remainder by the number of partitions
/// (franz-go's `KafkaHasher`). Use it to keep Kafka's mapping with another
/// hash function.
///
/// ```
/// use sansa_core::producer::partitioner::{murmur2, KafkaHasher, KeyHasher};
///
/// fn fnv1a(key: &[u8]) -> u32 {
///     key.iter().fold(0x811c_9dc5_u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
/// }
/// let hasher = KafkaHasher(fnv1a);
/// assert!((0..10).contains(&hasher.partition(b"user-1", 10)));
///
/// // With murmur2 it is Kafka's default mapping.
/// let kafka = KafkaHasher(|key| murmur2(key) as u32);
/// assert_eq!(kafka.partition(b"abc", 1000), 107);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct KafkaHasher(pub fn(&[u8]) -> u32);

impl KeyHasher for KafkaHasher {
    fn partition(&self, key: &[u8], num_partitions: i32) -> i32 {
        if num_partitions < 1 {
            return 0;
        }
        to_positive((self.0)(key) as i32) % num_partitions
    }
}

// --------------------------------------------------------------------------
// Inputs: the record and the topic's partitions
// --------------------------------------------------------------------------

/// What a partitioner may know about one record.
///
/// `size` is the number of bytes the record adds to a batch, as the
/// producer counts it (the encoded record in a v2 batch is the natural
/// measure); the sticky partitioners spend their byte budget with it.
///
/// ```
/// use sansa_core::producer::partitioner::RecordInfo;
///
/// let record = RecordInfo::keyed(b"order-17", 120);
/// assert_eq!(record.key(), Some(&b"order-17"[..]));
/// assert_eq!(record.partition(), None);
/// assert_eq!(RecordInfo::unkeyed(80).with_partition(3).partition(), Some(3));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordInfo<'a> {
    key: Option<&'a [u8]>,
    size: usize,
    partition: Option<i32>,
}

impl<'a> RecordInfo<'a> {
    /// A record with this key (or none) and size in bytes.
    pub fn new(key: Option<&'a [u8]>, size: usize) -> Self {
        Self {
            key,
            size,
            partition: None,
        }
    }

    /// A record with a key. An empty key is still a key and is hashed.
    pub fn keyed(key: &'a [u8], size: usize) -> Self {
        Self::new(Some(key), size)
    }

    /// A record without a key.
    pub fn unkeyed(size: usize) -> Self {
        Self::new(None, size)
    }

    /// The same record with the partition its producer asked for, which
    /// [`ManualPartitioner`] uses.
    pub fn with_partition(self, partition: i32) -> Self {
        Self {
            partition: Some(partition),
            ..self
        }
    }

    /// The record's key, if it has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The bytes the record adds to a batch.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The partition set on the record by its producer, if any.
    pub fn partition(&self) -> Option<i32> {
        self.partition
    }
}

/// A topic's partitions as the producer sees them when it partitions one
/// record: how many there are, which have a leader, and optionally how much
/// each has buffered.
///
/// It borrows the producer's own tables, so building one per record is
/// free. Partition ids are `0..count()`.
///
/// ```
/// use sansa_core::producer::partitioner::PartitionsView;
///
/// let has_leader = [true, false, true];
/// let backlog = [4096, 0, 10];
/// let view = PartitionsView::new(&has_leader).with_backlog(&backlog);
/// assert_eq!(view.count(), 3);
/// assert!(!view.is_available(1));
/// assert_eq!(view.available().collect::<Vec<_>>(), vec![0, 2]);
/// assert_eq!(view.backlog(0), Some(4096));
///
/// assert_eq!(PartitionsView::all_available(12).available_count(), 12);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PartitionsView<'a> {
    count: i32,
    /// `None`: every partition has a leader.
    has_leader: Option<&'a [bool]>,
    backlog: Option<&'a [u64]>,
}

impl<'a> PartitionsView<'a> {
    /// `has_leader.len()` partitions; partition `i` can be written to when
    /// `has_leader[i]` is true. (At most `i32::MAX` entries are looked at.)
    pub fn new(has_leader: &'a [bool]) -> Self {
        let count = i32::try_from(has_leader.len()).unwrap_or(i32::MAX);
        Self {
            count,
            has_leader: Some(has_leader),
            backlog: None,
        }
    }

    /// `count` partitions, all with a leader. A negative count is 0.
    pub fn all_available(count: i32) -> Self {
        Self {
            count: count.max(0),
            has_leader: None,
            backlog: None,
        }
    }

    /// The same view with how much is buffered per partition, for adaptive
    /// partitioning: `backlog[i]` for partition `i`, in any unit as long as
    /// it is the same for all (buffered bytes are the best measure; Java
    /// counts batches, franz-go records). Partitions past the end of the
    /// slice count as empty.
    pub fn with_backlog(self, backlog: &'a [u64]) -> Self {
        Self {
            backlog: Some(backlog),
            ..self
        }
    }

    /// The number of partitions of the topic.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// Whether `partition` exists and has a leader.
    pub fn is_available(&self, partition: i32) -> bool {
        if !(0..self.count).contains(&partition) {
            return false;
        }
        match self.has_leader {
            None => true,
            // In range of `count`, which is at most the slice's length.
            Some(has_leader) => has_leader.get(partition as usize).copied().unwrap_or(false),
        }
    }

    /// The partitions that have a leader, in ascending order.
    pub fn available(&self) -> impl Iterator<Item = i32> + 'a {
        let has_leader = self.has_leader;
        (0..self.count).filter(move |&p| match has_leader {
            None => true,
            Some(has_leader) => has_leader.get(p as usize).copied().unwrap_or(false),
        })
    }

    /// How many partitions have a leader. Linear in the partition count.
    pub fn available_count(&self) -> i32 {
        match self.has_leader {
            None => self.count,
            Some(_) => {
                // Counting within `0..count` cannot exceed `count`.
                i32::try_from(self.available().count()).unwrap_or(self.count)
            }
        }
    }

    /// Whether any partition has a leader.
    pub fn any_available(&self) -> bool {
        self.available().next().is_some()
    }

    /// What is buffered for `partition`, if the producer gave backlogs.
    pub fn backlog(&self, partition: i32) -> Option<u64> {
        let backlog = self.backlog?;
        if !(0..self.count).contains(&partition) {
            return None;
        }
        Some(backlog.get(partition as usize).copied().unwrap_or(0))
    }

    /// Whether the producer gave backlogs.
    pub fn has_backlog(&self) -> bool {
        self.backlog.is_some()
    }

    /// `partition` if it is one of this topic's partitions, else the error
    /// to fail the record with.
    ///
    /// ```
    /// use sansa_core::producer::partitioner::{PartitionError, PartitionsView};
    ///
    /// let view = PartitionsView::all_available(3);
    /// assert_eq!(view.check(2), Ok(2));
    /// assert_eq!(view.check(3), Err(PartitionError::InvalidPartition { partition: 3, count: 3 }));
    /// assert_eq!(PartitionsView::all_available(0).check(0), Err(PartitionError::NoPartitions));
    /// ```
    pub fn check(&self, partition: i32) -> Result<i32, PartitionError> {
        if self.count < 1 {
            Err(PartitionError::NoPartitions)
        } else if (0..self.count).contains(&partition) {
            Ok(partition)
        } else {
            Err(PartitionError::InvalidPartition {
                partition,
                count: self.count,
            })
        }
    }
}

/// Why a record could not be given a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// The topic has no partitions yet as far as the producer knows. The
    /// record can wait for the next metadata refresh.
    #[error("the topic has no partitions known yet; wait for metadata")]
    NoPartitions,
    /// [`ManualPartitioner`] was given a record without a partition. Set
    /// one on every record, or use another partitioner.
    #[error("the record has no partition set, and the manual partitioner needs one")]
    PartitionNotSet,
    /// The partition asked for (by the record or a custom partitioner or
    /// hasher) is not one of the topic's. The record should be failed.
    #[error("partition {partition} is not in the topic's {count} partitions")]
    InvalidPartition {
        /// The partition that was chosen.
        partition: i32,
        /// How many partitions the topic has.
        count: i32,
    },
}

// --------------------------------------------------------------------------
// The trait
// --------------------------------------------------------------------------

/// What a partitioner wants when buffering a record would start a new batch
/// on the partition it chose. See [`Partitioner::on_new_batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewBatch {
    /// Start the batch on the chosen partition.
    KeepPartition,
    /// Ask [`Partitioner::partition`] again for the same record, and use
    /// its new answer.
    Repartition,
}

/// Chooses partitions for the records of one topic.
///
/// A partitioner is a small state machine: the producer owns one per topic
/// and calls it once per record, with everything it needs as arguments. It
/// must not read a clock or a global RNG; built-ins draw randomness from a
/// seed given at construction. See the [module docs](self) for the call
/// order, and [`partition_record`] for the helper the producer uses.
///
/// ```
/// use sansa_core::producer::partitioner::{
///     PartitionError, Partitioner, PartitionsView, RecordInfo,
/// };
///
/// /// Sends everything to the highest-numbered partition with a leader.
/// #[derive(Debug)]
/// struct Last;
///
/// impl Partitioner for Last {
///     fn partition(
///         &mut self,
///         _record: &RecordInfo<'_>,
///         partitions: &PartitionsView<'_>,
///     ) -> Result<i32, PartitionError> {
///         partitions.available().last().ok_or(PartitionError::NoPartitions)
///     }
/// }
///
/// let view = PartitionsView::new(&[true, true, false]);
/// assert_eq!(Last.partition(&RecordInfo::unkeyed(10), &view), Ok(1));
/// ```
pub trait Partitioner: fmt::Debug + Send {
    /// The partition for `record`, in `0..partitions.count()`.
    ///
    /// The answer is checked by [`partition_record`]; an out-of-range one
    /// fails the record with [`PartitionError::InvalidPartition`].
    fn partition(
        &mut self,
        record: &RecordInfo<'_>,
        partitions: &PartitionsView<'_>,
    ) -> Result<i32, PartitionError>;

    /// Called when buffering `record` in `partition` (the answer just given
    /// by [`partition`](Self::partition)) would start a new batch there,
    /// before the record is buffered. Return [`NewBatch::Repartition`] to be
    /// asked again (KIP-480: a partitioner that pins a partition until its
    /// batch rolls over unpins here). The default keeps the partition.
    fn on_new_batch(&mut self, record: &RecordInfo<'_>, partition: i32) -> NewBatch {
        let _ = (record, partition);
        NewBatch::KeepPartition
    }

    /// Called after `record` was buffered in `partition`. The sticky
    /// partitioners count the record's bytes here; a record the producer
    /// could not buffer is never reported. The default does nothing.
    fn on_record_buffered(&mut self, record: &RecordInfo<'_>, partition: i32) {
        let _ = (record, partition);
    }
}

impl<P: Partitioner + ?Sized> Partitioner for Box<P> {
    fn partition(
        &mut self,
        record: &RecordInfo<'_>,
        partitions: &PartitionsView<'_>,
    ) -> Result<i32, PartitionError> {
        (**self).partition(record, partitions)
    }

    fn on_new_batch(&mut self, record: &RecordInfo<'_>, partition: i32) -> NewBatch {
        (**self).on_new_batch(record, partition)
    }

    fn on_record_buffered(&mut self, record: &RecordInfo<'_>, partition: i32) {
        (**self).on_record_buffered(record, partition)
    }
}

/// Makes the per-topic [`Partitioner`]s of a producer.
///
/// The built-in partitioners are their own factories: the configured value
/// is a template, and each topic gets a fresh copy with the same settings,
/// an empty state and the topic's seed (see [`topic_seed`]).
///
/// ```
/// use sansa_core::producer::partitioner::{
///     topic_seed, DefaultPartitioner, PartitionerFactory, PartitionsView, RecordInfo,
/// };
///
/// let factory = DefaultPartitioner::default().with_sticky_bytes(16 * 1024);
/// let mut orders = factory.for_topic("orders", topic_seed(42, "orders"));
/// let view = PartitionsView::all_available(3);
/// assert!(orders.partition(&RecordInfo::unkeyed(10), &view).is_ok());
/// ```
pub trait PartitionerFactory: fmt::Debug + Send + Sync {
    /// A new partitioner for `topic`, drawing its randomness from `seed`.
    fn for_topic(&self, topic: &str, seed: u64) -> Box<dyn Partitioner>;
}

/// A per-topic seed from the client's seed and the topic name, so that each
/// topic's sticky partitioner follows its own sequence and the whole client
/// stays reproducible from one seed.
///
/// ```
/// use sansa_core::producer::partitioner::topic_seed;
///
/// assert_eq!(topic_seed(1, "orders"), topic_seed(1, "orders"));
/// assert_ne!(topic_seed(1, "orders"), topic_seed(1, "payments"));
/// assert_ne!(topic_seed(1, "orders"), topic_seed(2, "orders"));
/// ```
pub fn topic_seed(client_seed: u64, topic: &str) -> u64 {
    // FNV-1a over the name, then splitmix64's finaliser over both.
    let name = topic.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    mix64(client_seed ^ mix64(name))
}

/// Partitions one record the way the producer must: asks `partitioner`,
/// checks the answer against `partitions`, and if `starts_new_batch(p)`
/// says buffering the record in `p` would open a new batch, gives the
/// partitioner its [`on_new_batch`](Partitioner::on_new_batch) chance to
/// re-pick (KIP-480's protocol, as franz-go runs it).
///
/// The caller then buffers the record in the returned partition and calls
/// [`Partitioner::on_record_buffered`].
///
/// ```
/// use sansa_core::producer::partitioner::{
///     partition_record, LeastBackupPartitioner, Partitioner, PartitionsView, RecordInfo,
/// };
///
/// let mut partitioner = LeastBackupPartitioner::new(1);
/// let backlog = [0, 50, 7];
/// let view = PartitionsView::all_available(3).with_backlog(&backlog);
/// let record = RecordInfo::unkeyed(10);
/// assert_eq!(partition_record(&mut partitioner, &record, &view, |_| false), Ok(0));
///
/// // Partition 0 is pinned until a new batch would start there; then the
/// // partitioner re-picks with fresh backlogs.
/// let backlog = [90, 50, 7];
/// let view = PartitionsView::all_available(3).with_backlog(&backlog);
/// assert_eq!(partition_record(&mut partitioner, &record, &view, |_| false), Ok(0));
/// assert_eq!(partition_record(&mut partitioner, &record, &view, |_| true), Ok(2));
/// ```
pub fn partition_record<P: Partitioner + ?Sized>(
    partitioner: &mut P,
    record: &RecordInfo<'_>,
    partitions: &PartitionsView<'_>,
    starts_new_batch: impl FnOnce(i32) -> bool,
) -> Result<i32, PartitionError> {
    let first = partitions.check(partitioner.partition(record, partitions)?)?;
    if !starts_new_batch(first) {
        return Ok(first);
    }
    match partitioner.on_new_batch(record, first) {
        NewBatch::KeepPartition => Ok(first),
        NewBatch::Repartition => partitions.check(partitioner.partition(record, partitions)?),
    }
}

// --------------------------------------------------------------------------
// Seeded randomness
// --------------------------------------------------------------------------

/// A uniform partition in `0..count` (`count` at least 1).
fn below_i32(rng: &mut SeededRng, count: i32) -> i32 {
    // `below(n) < n <= i32::MAX`, so the conversion cannot fail.
    i32::try_from(rng.below(u64::try_from(count).unwrap_or(0))).unwrap_or(0)
}

/// The `index`-th partition with a leader (0-based), if there is one.
fn nth_available(partitions: &PartitionsView<'_>, index: i32) -> Option<i32> {
    if partitions.has_leader.is_none() {
        return (0..partitions.count()).contains(&index).then_some(index);
    }
    partitions.available().nth(usize::try_from(index).ok()?)
}

/// A uniformly random partition among those with a leader, or among all
/// when none has one (Java's `BuiltInPartitioner.nextPartition`). `None`
/// only when the topic has no partitions.
fn random_partition(rng: &mut SeededRng, partitions: &PartitionsView<'_>) -> Option<i32> {
    if partitions.count() < 1 {
        return None;
    }
    let available = partitions.available_count();
    if available == 0 {
        return Some(below_i32(rng, partitions.count()));
    }
    nth_available(partitions, below_i32(rng, available))
}

// --------------------------------------------------------------------------
// Uniform bytes (KIP-794)
// --------------------------------------------------------------------------

/// The sticky "uniform bytes" partitioner of KIP-794 (Java's
/// `BuiltInPartitioner` since Kafka 3.3, franz-go's
/// `UniformBytesPartitioner`), for every record it is given, keyed or not.
///
/// It sends to one partition until the records buffered there reach the
/// byte budget ([`DEFAULT_STICKY_BYTES`] unless changed), then draws the
/// next partition at random among those with a leader. When adaptive (the
/// default) and the producer passes backlogs, the draw is weighted like
/// Java's: partition `i` gets weight `max + 1 - backlog[i]`, where `max` is
/// the largest backlog among partitions with a leader (backlogs are capped
/// at `u32::MAX` first). If the sticky partition loses its leader, the next
/// record moves on at once.
///
/// Keys are ignored here; [`DefaultPartitioner`] is this partitioner inside
/// a [`KeyHashPartitioner`], which hashes keyed records and sends only the
/// unkeyed ones here.
///
/// ```
/// use sansa_core::producer::partitioner::{
///     Partitioner, PartitionsView, RecordInfo, UniformBytesPartitioner,
/// };
///
/// let mut partitioner = UniformBytesPartitioner::new(3).with_sticky_bytes(1000);
/// let view = PartitionsView::all_available(8);
/// let record = RecordInfo::unkeyed(400);
///
/// let first = partitioner.partition(&record, &view).unwrap();
/// for _ in 0..3 {
///     // 400, 800, 1200 bytes: the third record still goes to `first`.
///     assert_eq!(partitioner.partition(&record, &view), Ok(first));
///     partitioner.on_record_buffered(&record, first);
/// }
/// // The budget is spent: the next record starts a new sticky run.
/// assert_eq!(partitioner.current_partition(), None);
/// ```
#[derive(Clone, Debug)]
pub struct UniformBytesPartitioner {
    sticky_bytes: u64,
    adaptive: bool,
    rng: SeededRng,
    /// The sticky partition, `None` when the next record must pick one.
    current: Option<i32>,
    /// Bytes buffered in `current` since it was picked.
    produced: u64,
}

impl UniformBytesPartitioner {
    /// A partitioner with franz-go's defaults (64 KiB per partition,
    /// adaptive), drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            sticky_bytes: DEFAULT_STICKY_BYTES,
            adaptive: true,
            rng: SeededRng::new(seed),
            current: None,
            produced: 0,
        }
    }

    /// Switch partition once this many bytes have been buffered in the
    /// current one (default [`DEFAULT_STICKY_BYTES`]; 0 is taken as 1).
    pub fn with_sticky_bytes(self, bytes: u64) -> Self {
        Self {
            sticky_bytes: bytes.max(1),
            ..self
        }
    }

    /// Whether to weight the next partition by the backlogs the producer
    /// passes (default true). Without backlogs the draw is uniform anyway.
    pub fn with_adaptive(self, adaptive: bool) -> Self {
        Self { adaptive, ..self }
    }

    /// The byte budget per sticky run.
    pub fn sticky_bytes(&self) -> u64 {
        self.sticky_bytes
    }

    /// Whether the draw is weighted by backlog.
    pub fn is_adaptive(&self) -> bool {
        self.adaptive
    }

    /// The partition unkeyed records stick to now, if one is picked.
    pub fn current_partition(&self) -> Option<i32> {
        self.current
    }

    /// A copy with the same settings, no sticky partition and a new seed.
    fn fresh(&self, seed: u64) -> Self {
        Self::new(seed)
            .with_sticky_bytes(self.sticky_bytes)
            .with_adaptive(self.adaptive)
    }

    /// Draws the next sticky partition.
    fn next_partition(&mut self, partitions: &PartitionsView<'_>) -> Option<i32> {
        if self.adaptive && partitions.has_backlog() {
            if let Some(p) = self.weighted_partition(partitions) {
                return Some(p);
            }
        }
        random_partition(&mut self.rng, partitions)
    }

    /// Java's cumulative-frequency draw (KIP-794 adaptive partitioning), or
    /// `None` when it does not apply: no partition with a leader, or all
    /// with the same backlog (then the draw is uniform, as in Java).
    fn weighted_partition(&mut self, partitions: &PartitionsView<'_>) -> Option<i32> {
        let load = |p: i32| partitions.backlog(p).unwrap_or(0).min(u64::from(u32::MAX));
        let mut available = partitions.available();
        let first = load(available.next()?);
        let (max, all_equal) = available.fold((first, true), |(max, equal), p| {
            let q = load(p);
            (max.max(q), equal && q == first)
        });
        if all_equal {
            return None;
        }
        // Weights are at most 2^32 and there are fewer than 2^31
        // partitions, so the total fits in a u64.
        let weight = |p: i32| max + 1 - load(p);
        let total: u64 = partitions.available().map(weight).sum();
        let mut pick = self.rng.below(total);
        for p in partitions.available() {
            let w = weight(p);
            if pick < w {
                return Some(p);
            }
            pick -= w;
        }
        None
    }
}

impl Default for UniformBytesPartitioner {
    /// [`UniformBytesPartitioner::new`] with seed 0.
    fn default() -> Self {
        Self::new(0)
    }
}

impl Partitioner for UniformBytesPartitioner {
    fn partition(
        &mut self,
        _record: &RecordInfo<'_>,
        partitions: &PartitionsView<'_>,
    ) -> Result<i32, PartitionError> {
        if partitions.count() < 1 {
            return Err(PartitionError::NoPartitions);
        }
        if let Some(current) = self.current {
            let in_range = current < partitions.count();
            // Stay while it has a leader, or while no partition has one
            // (switching would not help then).
            if in_range && (partitions.is_available(current) || !partitions.any_available()) {
                return Ok(current);
            }
        }
        let next = self
            .next_partition(partitions)
            .ok_or(PartitionError::NoPartitions)?;
        self.current = Some(next);
        self.produced = 0;
        Ok(next)
    }

    fn on_record_buffered(&mut self, record: &RecordInfo<'_>, partition: i32) {
        if self.current != Some(partition) {
            return;
        }
        let size = u64::try_from(record.size()).unwrap_or(u64::MAX);
        self.produced = self.produced.saturating_add(size);
        if self.produced >= self.sticky_bytes {
            self.current = None;
        }
    }
}

impl PartitionerFactory for UniformBytesPartitioner {
    fn for_topic(&self, _topic: &str, seed: u64) -> Box<dyn Partitioner> {
        Box::new(self.fresh(seed))
    }
}

// --------------------------------------------------------------------------
// Key hashing wrapper and the default
// --------------------------------------------------------------------------

/// Hashes keyed records with `H` and hands unkeyed ones to `P`.
///
/// A keyed record's partition depends only on its key and the partition
/// count, never on which partitions have a leader (franz-go's
/// `RequiresConsistency`, Java's behaviour): the record waits for its
/// partition rather than breaking the key's order. Only unkeyed records
/// reach the inner partitioner's hooks, so keyed records do not spend the
/// sticky byte budget (as in Java and franz-go).
///
/// ```
/// use sansa_core::producer::partitioner::{
///     KeyHashPartitioner, Partitioner, PartitionsView, RecordInfo, RoundRobinPartitioner,
/// };
///
/// // Keys by murmur2, unkeyed records round robin.
/// let mut partitioner = KeyHashPartitioner::new(RoundRobinPartitioner::new());
/// let view = PartitionsView::all_available(1000);
/// assert_eq!(partitioner.partition(&RecordInfo::keyed(b"abc", 10), &view), Ok(107));
/// assert_eq!(partitioner.partition(&RecordInfo::unkeyed(10), &view), Ok(0));
/// assert_eq!(partitioner.partition(&RecordInfo::unkeyed(10), &view), Ok(1));
/// ```
#[derive(Clone, Debug)]
pub struct KeyHashPartitioner<P, H = Murmur2Hasher> {
    inner: P,
    hasher: H,
}

impl<P> KeyHashPartitioner<P, Murmur2Hasher> {
    /// Keyed records by Kafka's murmur2, unkeyed ones by `inner`.
    pub fn new(inner: P) -> Self {
        Self::with_hasher(inner, Murmur2Hasher)
    }
}

impl<P, H> KeyHashPartitioner<P, H> {
    /// Keyed records by `hasher`, unkeyed ones by `inner`.
    pub fn with_hasher(inner: P, hasher: H) -> Self {
        Self { inner, hasher }
    }

    /// The partitioner for unkeyed records.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The key hasher.
    pub fn hasher(&self) -> &H {
        &self.hasher
    }
}

impl<P: Partitioner, H: KeyHasher> Partitioner for KeyHashPartitioner<P, H> {
    fn partition(
        &mut self,
        record: &RecordInfo<'_>,
        partitions: &PartitionsView<'_>,
    ) -> Result<i32, PartitionError> {
        match record.key() {
            Some(key) => {
                if partitions.count() < 1 {
                    return Err(PartitionError::NoPartitions);
                }
                partitions.check(self.hasher.partition(key, partitions.count()))
            }
            None => self.inner.partition(record, partitions),
        }
    }

    fn on_new_batch(&mut self, record: &RecordInfo<'_>, partition: i32) -> NewBatch {
        match record.key() {
            Some(_) => NewBatch::KeepPartition,
            None => self.inner.on_new_batch(record, partition),
        }
    }

    fn on_record_buffered(&mut self, record: &RecordInfo<'_>, partition: i32) {
        if record.key().is_none() {
            self.inner.on_record_buffered(record, partition);
        }
    }
}

impl<P, H> PartitionerFactory for KeyHashPartitioner<P, H>
where
    P: PartitionerFactory,
    H: KeyHasher + Clone + 'static,
{
    fn for_topic(&self, topic: &str, seed: u64) -> Box<dyn Partitioner> {
        Box::new(KeyHashPartitioner::with_hasher(
            self.inner.for_topic(topic, seed),
            self.hasher.clone(),
        ))
    }
}

/// Sansa's default: keyed records by Kafka's murmur2 (Java-compatible),
/// unkeyed records by the sticky [`UniformBytesPartitioner`], 64 KiB per
/// partition, adaptive. This is franz-go's default,
/// `UniformBytesPartitioner(64 << 10, true, true, nil)`, and Java's
/// built-in partitioner since Kafka 3.3 with a larger sticky size.
///
/// ```
/// use sansa_core::producer::partitioner::{
///     DefaultPartitioner, Partitioner, PartitionsView, RecordInfo,
/// };
///
/// let mut partitioner = DefaultPartitioner::new(99);
/// let view = PartitionsView::all_available(12);
/// // The partition Java picks for the key "foobar" among 12.
/// assert_eq!(partitioner.partition(&RecordInfo::keyed(b"foobar", 50), &view), Ok(6));
/// ```
#[derive(Clone, Debug)]
pub struct DefaultPartitioner {
    inner: KeyHashPartitioner<UniformBytesPartitioner>,
}

impl DefaultPartitioner {
    /// The default partitioner, drawing its sticky partitions from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            inner: KeyHashPartitioner::new(UniformBytesPartitioner::new(seed)),
        }
    }

    /// Bytes of unkeyed records per sticky partition (default
    /// [`DEFAULT_STICKY_BYTES`]).
    pub fn with_sticky_bytes(self, bytes: u64) -> Self {
        let sticky = self.inner.inner.with_sticky_bytes(bytes);
        Self {
            inner: KeyHashPartitioner::new(sticky),
        }
    }

    /// Whether unkeyed records prefer partitions with less buffered
    /// (default true).
    pub fn with_adaptive(self, adaptive: bool) -> Self {
        let sticky = self.inner.inner.with_adaptive(adaptive);
        Self {
            inner: KeyHashPartitioner::new(sticky),
        }
    }

    /// The sticky partitioner that unkeyed records go through.
    pub fn sticky(&self) -> &UniformBytesPartitioner {
        self.inner.inner()
    }
}

impl Default for DefaultPartitioner {
    /// [`DefaultPartitioner::new`] with seed 0.
    fn default() -> Self {
        Self::new(0)
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(
        &mut self,
        record: &RecordInfo<'_>,
        partitions: &PartitionsView<'_>,
    ) -> Result<i32, PartitionError> {
        self.inner.partition(record, partitions)
    }

    fn on_new_batch(&mut self, record: &RecordInfo<'_>, partition: i32) -> NewBatch {
        self.inner.on_new_batch(record, partition)
    }

    fn on_record_buffered(&mut self, record: &RecordInfo<'_>, partition: i32) {
        self.inner.on_record_buffered(record, partition)
    }
}

impl PartitionerFactory for DefaultPartitioner {
    fn for_topic(&self, _topic: &str, seed: u64) -> Box<dyn Partitioner> {
        Box::new(Self {
            inner: KeyHashPartitioner::new(self.inner.inner.fresh(seed)),
        })
    }
}

// --------------------------------------------------------------------------
// Round robin, least backup, manual
// --------------------------------------------------------------------------

/// One record to each partition with a leader in turn, ignoring keys (as
/// Java's and franz-go's round-robin partitioners do; wrap it in a
/// [`KeyHashPartitioner`] to hash keyed records). Even spread, but many
/// small batches: more broker CPU and producer latency than the sticky
/// default. When no partition has a leader it cycles through all of them.
///
/// ```
/// use sansa_core::producer::partitioner::{
///     Partitioner, PartitionsView, RecordInfo, RoundRobinPartitioner,
/// };
///
/// let mut partitioner = RoundRobinPartitioner::new();
/// let view = PartitionsView::new(&[true, false, true]);
/// let record = RecordInfo::unkeyed(10);
/// let picks: Vec<i32> = (0..4).map(|_| partitioner.partition(&record, &view).unwrap()).collect();
/// assert_eq!(picks, vec![0, 2, 0, 2]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundRobinPartitioner {
    /// The partition to try next.
    next: i32,
}

impl RoundRobinPartitioner {
    /// A round robin starting at partition 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(
        &mut self,
        _record: &RecordInfo<'_>,
        partitions: &PartitionsView<'_>,
    ) -> Result<i32, PartitionError> {
        let count = partitions.count();
        if count < 1 {
            return Err(PartitionError::NoPartitions);
        }
        let start = if (0..count).contains(&self.next) {
            self.next
        } else {
            0
        };
        let pick = (start..count)
            .chain(0..start)
            .find(|&p| partitions.is_available(p))
            // No partition has a leader: keep cycling through all of them.
            .unwrap_or(start);
        self.next = (pick + 1) % count;
        Ok(pick)
    }
}

impl PartitionerFactory for RoundRobinPartitioner {
    fn for_topic(&self, _topic: &str, _seed: u64) -> Box<dyn Partitioner> {
        Box::new(Self::new())
    }
}

/// franz-go's `LeastBackupPartitioner`: pins a partition until a new batch
/// would start there, then picks the partition with a leader that has the
/// least buffered (ties broken at random). Ignores keys.
///
/// Good for a producer facing flaky brokers: partitions that stop draining
/// stop getting records, so a dead broker does not fill the buffer before
/// metadata notices it. The price is an uneven spread. Without backlogs
/// from the producer every partition looks empty and the pick is random.
///
/// ```
/// use sansa_core::producer::partitioner::{
///     LeastBackupPartitioner, Partitioner, PartitionsView, RecordInfo,
/// };
///
/// let mut partitioner = LeastBackupPartitioner::new(5);
/// let backlog = [10, 3, 8];
/// let view = PartitionsView::all_available(3).with_backlog(&backlog);
/// assert_eq!(partitioner.partition(&RecordInfo::unkeyed(1), &view), Ok(1));
/// ```
#[derive(Clone, Debug)]
pub struct LeastBackupPartitioner {
    rng: SeededRng,
    pinned: Option<i32>,
}

impl LeastBackupPartitioner {
    /// A least-backup partitioner breaking ties with draws from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SeededRng::new(seed),
            pinned: None,
        }
    }

    /// The partition records are pinned to now, if any.
    pub fn pinned_partition(&self) -> Option<i32> {
        self.pinned
    }

    /// The least backed-up partition with a leader, ties by reservoir
    /// sampling (as franz-go), or a random one when none has a leader.
    fn least_backup(&mut self, partitions: &PartitionsView<'_>) -> Option<i32> {
        let mut best: Option<(u64, i32)> = None;
        let mut ties = 0u64;
        for p in partitions.available() {
            let backlog = partitions.backlog(p).unwrap_or(0);
            match best {
                Some((least, _)) if backlog > least => {}
                Some((least, _)) if backlog == least => {
                    ties += 1;
                    if self.rng.below(ties) == 0 {
                        best = Some((least, p));
                    }
                }
                _ => {
                    best = Some((backlog, p));
                    ties = 1;
                }
            }
        }
        match best {
            Some((_, p)) => Some(p),
            None => random_partition(&mut self.rng, partitions),
        }
    }
}

impl Default for LeastBackupPartitioner {
    /// [`LeastBackupPartitioner::new`] with seed 0.
    fn default() -> Self {
        Self::new(0)
    }
}

impl Partitioner for LeastBackupPartitioner {
    fn partition(
        &mut self,
        _record: &RecordInfo<'_>,
        partitions: &PartitionsView<'_>,
    ) -> Result<i32, PartitionError> {
        if partitions.count() < 1 {
            return Err(PartitionError::NoPartitions);
        }
        if let Some(p) = self.pinned {
            if p < partitions.count() && (partitions.is_available(p) || !partitions.any_available())
            {
                return Ok(p);
            }
        }
        let p = self
            .least_backup(partitions)
            .ok_or(PartitionError::NoPartitions)?;
        self.pinned = Some(p);
        Ok(p)
    }

    fn on_new_batch(&mut self, _record: &RecordInfo<'_>, _partition: i32) -> NewBatch {
        self.pinned = None;
        NewBatch::Repartition
    }
}

impl PartitionerFactory for LeastBackupPartitioner {
    fn for_topic(&self, _topic: &str, seed: u64) -> Box<dyn Partitioner> {
        Box::new(Self::new(seed))
    }
}

/// Uses the partition set on each record ([`RecordInfo::with_partition`]),
/// as franz-go's `ManualPartitioner`. A record without one fails with
/// [`PartitionError::PartitionNotSet`], one outside the topic with
/// [`PartitionError::InvalidPartition`]. Leaders are not considered: the
/// record waits for its partition.
///
/// ```
/// use sansa_core::producer::partitioner::{
///     ManualPartitioner, PartitionError, Partitioner, PartitionsView, RecordInfo,
/// };
///
/// let view = PartitionsView::all_available(4);
/// let record = RecordInfo::unkeyed(10).with_partition(3);
/// assert_eq!(ManualPartitioner.partition(&record, &view), Ok(3));
/// assert_eq!(
///     ManualPartitioner.partition(&RecordInfo::unkeyed(10), &view),
///     Err(PartitionError::PartitionNotSet)
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManualPartitioner;

impl Partitioner for ManualPartitioner {
    fn partition(
        &mut self,
        record: &RecordInfo<'_>,
        partitions: &PartitionsView<'_>,
    ) -> Result<i32, PartitionError> {
        let partition = record.partition().ok_or(PartitionError::PartitionNotSet)?;
        partitions.check(partition)
    }
}

impl PartitionerFactory for ManualPartitioner {
    fn for_topic(&self, _topic: &str, _seed: u64) -> Box<dyn Partitioner> {
        Box::new(ManualPartitioner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---- murmur2 vectors --------------------------------------------------

    /// Kafka's `UtilsTest.testMurmur2`
    /// (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
    const KAFKA_UTILS_TEST: &[(&[u8], i32)] = &[
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];

    /// librdkafka's `unittest_murmur2` (src/rdmurmur2.c), whose results are
    /// marked "java_murmur2_results"; the strings are sub-slices of
    /// "1234" and "PreAmbleWillBeRemoved,ThePrePartThatIs" to cover every
    /// tail length. "amqp" is from its older `unittest_murmurhashneutral2`.
    const LIBRDKAFKA: &[(&[u8], u32)] = &[
        (b"kafka", 0xd067_cf64),
        (b"giberish123456789", 0x8f55_2b0c),
        (b"1234", 0x9fc9_7b14),
        (b"234", 0xe7c0_09ca),
        (b"34", 0x8739_30da),
        (b"4", 0x5a4b_5ca1),
        (b"PreAmbleWillBeRemoved,ThePrePartThatIs", 0x7842_4f1c),
        (b"reAmbleWillBeRemoved,ThePrePartThatIs", 0x4a62_b377),
        (b"eAmbleWillBeRemoved,ThePrePartThatIs", 0xe0e4_e09e),
        (b"AmbleWillBeRemoved,ThePrePartThatIs", 0x62b8_b43f),
        (b"", 0x106e_08d9),
        (b"amqp", 767_747_138),
    ];

    /// KafkaJS's Java-compatible partitioner test
    /// (src/producer/partitioners/defaultJava/murmur2.spec.js), "generated
    /// with" a copy of `Utils.murmur2` run on the JVM (its Test.java).
    const KAFKAJS_JAVA: &[(&[u8], i32)] = &[
        (b"0", 971_027_396),
        (b"1", -1_993_445_489),
        (b"128", -326_012_175),
        (b"2187", -1_508_407_203),
        (b"16384", -325_739_742),
        (b"78125", -1_654_490_814),
        (b"279936", 1_462_227_128),
        (b"823543", -2_014_198_330),
        (b"2097152", 607_668_903),
        (b"4782969", -1_182_699_775),
        (b"10000000", -1_830_336_757),
        (b"19487171", -1_603_849_305),
        (b"35831808", -857_013_643),
        (b"62748517", -1_167_431_028),
        (b"105413504", -381_294_639),
        (b"170859375", -1_658_323_481),
        (b"100:48069", 1_009_543_857),
    ];

    #[test]
    fn murmur2_matches_kafka_utils_test() {
        for &(key, expected) in KAFKA_UTILS_TEST {
            assert_eq!(
                murmur2(key),
                expected,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn murmur2_matches_librdkafka_java_results() {
        for &(key, expected) in LIBRDKAFKA {
            assert_eq!(
                murmur2(key),
                expected as i32,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn murmur2_matches_kafkajs_java_generated() {
        for &(key, expected) in KAFKAJS_JAVA {
            assert_eq!(
                murmur2(key),
                expected,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn murmur2_reads_high_bytes_as_unsigned() {
        // Java masks each byte with 0xff; a signed read would differ.
        assert_ne!(murmur2(&[0xff]), murmur2(&[0x7f]));
        assert_eq!(
            murmur2(&[0x80, 0xff, 0xfe, 0x81, 0xc3]),
            murmur2(&[0x80, 0xff, 0xfe, 0x81, 0xc3])
        );
    }

    // ---- keyed placement ---------------------------------------------------

    /// (key, partitions, partition Java picks). Each expected value is
    /// `(published_hash & 0x7fffffff) % partitions` worked out by hand from
    /// the published hashes above, not from our `murmur2`.
    const JAVA_PLACEMENT: &[(&[u8], i32, i32)] = &[
        // "21": -973932308 -> 1173551340
        (b"21", 3, 0),
        (b"21", 7, 3),
        (b"21", 32, 12),
        (b"21", 100, 40),
        (b"21", 1000, 340),
        // "foobar": -790332482 -> 1357151166
        (b"foobar", 3, 0),
        (b"foobar", 10, 6),
        (b"foobar", 12, 6),
        (b"foobar", 32, 30),
        (b"foobar", 1000, 166),
        // "a-little-bit-long-string": -985981536 -> 1161502112
        (b"a-little-bit-long-string", 3, 2),
        (b"a-little-bit-long-string", 7, 1),
        (b"a-little-bit-long-string", 12, 8),
        (b"a-little-bit-long-string", 32, 0),
        // "a-little-bit-longer-string": -1486304829 -> 661178819
        (b"a-little-bit-longer-string", 2, 1),
        (b"a-little-bit-longer-string", 6, 5),
        (b"a-little-bit-longer-string", 12, 11),
        (b"a-little-bit-longer-string", 1000, 819),
        // "lkjh...h8": -58897971 -> 2088585677
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 7, 3),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 100, 77),
        // "abc": 479470107, already positive
        (b"abc", 6, 3),
        (b"abc", 7, 4),
        (b"abc", 12, 3),
        (b"abc", 1000, 107),
        // Any key with one partition.
        (b"21", 1, 0),
        // kafka-python's test_murmur2_java_compatibility, 1000 partitions,
        // "compare with output from Kafka's ... Partitioner".
        (b"", 1000, 681),
        (b"a", 1000, 524),
        (b"ab", 1000, 434),
        (b"abc", 1000, 107),
        (b"123456789", 1000, 566),
        (b"\x00 ", 1000, 742),
    ];

    #[test]
    fn keyed_records_land_where_java_puts_them() {
        for &(key, count, expected) in JAVA_PLACEMENT {
            assert_eq!(
                java_key_partition(key, count),
                expected,
                "{key:?} over {count}"
            );
            let mut partitioner = DefaultPartitioner::new(1);
            let view = PartitionsView::all_available(count);
            let record = RecordInfo::keyed(key, 10);
            assert_eq!(partitioner.partition(&record, &view), Ok(expected));
        }
    }

    #[test]
    fn to_positive_masks_the_sign_bit_rather_than_taking_abs() {
        assert_eq!(to_positive(-973_932_308), 1_173_551_340);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), i32::MAX);
        // With abs, "21" over 1000 partitions would be 308, not Java's 340.
        assert_eq!(java_key_partition(b"21", 1000), 340);
        assert_eq!(murmur2(b"21").unsigned_abs() % 1000, 308);
    }

    #[test]
    fn java_key_partition_without_partitions_does_not_panic() {
        assert_eq!(java_key_partition(b"abc", 0), 0);
        assert_eq!(java_key_partition(b"abc", -5), 0);
    }

    #[test]
    fn keyed_records_ignore_leaders_and_empty_keys_hash() {
        // "abc" over 6 partitions is 3, even while partition 3 has no leader.
        let has_leader = [true, true, true, false, true, true];
        let view = PartitionsView::new(&has_leader);
        let mut partitioner = DefaultPartitioner::new(0);
        assert_eq!(
            partitioner.partition(&RecordInfo::keyed(b"abc", 1), &view),
            Ok(3)
        );
        // The empty key is a key: kafka-python's table puts it on 681 of 1000.
        let view = PartitionsView::all_available(1000);
        assert_eq!(
            partitioner.partition(&RecordInfo::keyed(b"", 1), &view),
            Ok(681)
        );
    }

    #[test]
    fn keyed_records_do_not_spend_the_sticky_budget() {
        let mut partitioner = DefaultPartitioner::new(3).with_sticky_bytes(100);
        let view = PartitionsView::all_available(8);
        let unkeyed = RecordInfo::unkeyed(10);
        let sticky = partitioner.partition(&unkeyed, &view).expect("a partition");
        let keyed = RecordInfo::keyed(b"abc", 1_000);
        let keyed_partition = partitioner.partition(&keyed, &view).expect("a partition");
        partitioner.on_record_buffered(&keyed, keyed_partition);
        assert_eq!(partitioner.sticky().current_partition(), Some(sticky));
    }

    #[test]
    fn custom_hashers_are_checked() {
        #[derive(Clone, Debug)]
        struct Broken;
        impl KeyHasher for Broken {
            fn partition(&self, _key: &[u8], num_partitions: i32) -> i32 {
                num_partitions
            }
        }
        let mut partitioner =
            KeyHashPartitioner::with_hasher(UniformBytesPartitioner::new(0), Broken);
        let view = PartitionsView::all_available(4);
        assert_eq!(
            partitioner.partition(&RecordInfo::keyed(b"k", 1), &view),
            Err(PartitionError::InvalidPartition {
                partition: 4,
                count: 4
            })
        );

        let kafka = KafkaHasher(|key| murmur2(key) as u32);
        for &(key, count, expected) in JAVA_PLACEMENT {
            assert_eq!(kafka.partition(key, count), expected);
        }
    }

    // ---- sticky uniform bytes ----------------------------------------------

    /// Feeds `records` unkeyed records of `size` bytes through `partitioner`
    /// and returns where each went.
    fn run<P: Partitioner>(
        partitioner: &mut P,
        view: &PartitionsView<'_>,
        records: usize,
        size: usize,
    ) -> Vec<i32> {
        let record = RecordInfo::unkeyed(size);
        (0..records)
            .map(|_| {
                let p = partition_record(partitioner, &record, view, |_| false)
                    .expect("partitions exist");
                partitioner.on_record_buffered(&record, p);
                p
            })
            .collect()
    }

    /// Lengths of the runs of equal partitions in `picks`.
    fn runs(picks: &[i32]) -> Vec<(i32, usize)> {
        let mut out: Vec<(i32, usize)> = Vec::new();
        for &p in picks {
            match out.last_mut() {
                Some((last, n)) if *last == p => *n += 1,
                _ => out.push((p, 1)),
            }
        }
        out
    }

    #[test]
    fn sticky_switches_after_the_byte_budget() {
        // Budget 1000, records of 300: 300, 600, 900 stay; the fourth
        // reaches 1200 and is still sent; the fifth starts a new draw.
        let mut partitioner = UniformBytesPartitioner::new(11)
            .with_sticky_bytes(1000)
            .with_adaptive(false);
        let view = PartitionsView::all_available(1);
        let picks = run(&mut partitioner, &view, 4, 300);
        assert_eq!(picks, vec![0; 4]);
        assert_eq!(partitioner.current_partition(), None);

        // With many partitions, every draw starts a fresh run of exactly
        // four records unless the draw repeats the same partition.
        let view = PartitionsView::all_available(16);
        let mut partitioner = UniformBytesPartitioner::new(12).with_sticky_bytes(1000);
        let picks = run(&mut partitioner, &view, 4000, 300);
        for (_, n) in runs(&picks) {
            assert_eq!(n % 4, 0, "runs are whole sticky stints");
        }
        assert!(runs(&picks).len() > 800, "it does switch");
    }

    #[test]
    fn default_budget_is_64_kib() {
        let mut partitioner = DefaultPartitioner::new(5).with_adaptive(false);
        assert_eq!(partitioner.sticky().sticky_bytes(), 64 * 1024);
        let view = PartitionsView::all_available(1);
        run(&mut partitioner, &view, 63, 1024);
        assert_eq!(partitioner.sticky().current_partition(), Some(0));
        run(&mut partitioner, &view, 1, 1024);
        assert_eq!(partitioner.sticky().current_partition(), None);
    }

    #[test]
    fn records_not_buffered_do_not_count() {
        let mut partitioner = UniformBytesPartitioner::new(1).with_sticky_bytes(100);
        let view = PartitionsView::all_available(4);
        let record = RecordInfo::unkeyed(60);
        let p = partitioner.partition(&record, &view).expect("a partition");
        for _ in 0..10 {
            assert_eq!(partitioner.partition(&record, &view), Ok(p));
        }
        partitioner.on_record_buffered(&record, p);
        // A report for another partition is not this run's.
        partitioner.on_record_buffered(&record, (p + 1) % 4);
        assert_eq!(partitioner.current_partition(), Some(p));
        partitioner.on_record_buffered(&record, p);
        assert_eq!(partitioner.current_partition(), None);
    }

    #[test]
    fn never_picks_an_unavailable_partition_when_one_is_available() {
        let has_leader = [false, true, false, false, true, false, true, false];
        let view = PartitionsView::new(&has_leader);
        for seed in 0..20 {
            for adaptive in [false, true] {
                let mut partitioner = DefaultPartitioner::new(seed)
                    .with_sticky_bytes(50)
                    .with_adaptive(adaptive);
                for p in run(&mut partitioner, &view, 500, 20) {
                    assert!(view.is_available(p), "seed {seed}: picked {p}");
                }
                let mut least = LeastBackupPartitioner::new(seed);
                let mut round = RoundRobinPartitioner::new();
                let record = RecordInfo::unkeyed(1);
                for _ in 0..50 {
                    let p = partition_record(&mut least, &record, &view, |_| true)
                        .expect("a partition");
                    assert!(view.is_available(p));
                    assert!(
                        view.is_available(round.partition(&record, &view).expect("a partition"))
                    );
                }
            }
        }
    }

    #[test]
    fn sticky_partition_moves_when_it_loses_its_leader() {
        let mut partitioner = UniformBytesPartitioner::new(4);
        let all = [true; 5];
        let record = RecordInfo::unkeyed(10);
        let first = partitioner
            .partition(&record, &PartitionsView::new(&all))
            .expect("a partition");
        let mut without = all;
        without[first as usize] = false;
        let view = PartitionsView::new(&without);
        let second = partitioner.partition(&record, &view).expect("a partition");
        assert_ne!(second, first);
        assert!(view.is_available(second));
        // It then sticks to the new one, even when the old one is back.
        assert_eq!(
            partitioner.partition(&record, &PartitionsView::new(&all)),
            Ok(second)
        );
    }

    #[test]
    fn with_no_leader_anywhere_it_still_picks_a_partition() {
        let none = [false; 4];
        let view = PartitionsView::new(&none);
        let record = RecordInfo::unkeyed(10);
        let mut sticky = UniformBytesPartitioner::new(2);
        let p = sticky.partition(&record, &view).expect("a partition");
        assert!((0..4).contains(&p));
        // It stays put rather than thrash while nothing has a leader.
        assert_eq!(sticky.partition(&record, &view), Ok(p));
        let mut round = RoundRobinPartitioner::new();
        let picks: Vec<i32> = (0..5)
            .map(|_| round.partition(&record, &view).expect("a partition"))
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 3, 0]);
        let mut least = LeastBackupPartitioner::new(2);
        assert!((0..4).contains(&least.partition(&record, &view).expect("a partition")));
    }

    #[test]
    fn no_partitions_is_an_error_not_a_panic() {
        let view = PartitionsView::all_available(0);
        let record = RecordInfo::unkeyed(1);
        let keyed = RecordInfo::keyed(b"k", 1);
        let err = Err(PartitionError::NoPartitions);
        assert_eq!(DefaultPartitioner::new(0).partition(&record, &view), err);
        assert_eq!(DefaultPartitioner::new(0).partition(&keyed, &view), err);
        assert_eq!(RoundRobinPartitioner::new().partition(&record, &view), err);
        assert_eq!(
            LeastBackupPartitioner::new(0).partition(&record, &view),
            err
        );
        assert_eq!(
            ManualPartitioner.partition(&record.with_partition(0), &view),
            err
        );
        assert_eq!(PartitionsView::all_available(-3).count(), 0);
    }

    #[test]
    fn a_shrunk_topic_moves_the_sticky_partition_into_range() {
        let mut partitioner = UniformBytesPartitioner::new(9);
        let record = RecordInfo::unkeyed(1);
        let mut p = 0;
        // Find a seed state whose sticky partition is high.
        for _ in 0..100 {
            p = partitioner
                .partition(&record, &PartitionsView::all_available(100))
                .expect("a partition");
            if p >= 10 {
                break;
            }
            partitioner.on_record_buffered(&RecordInfo::unkeyed(1 << 20), p);
        }
        assert!(p >= 10);
        let q = partitioner
            .partition(&record, &PartitionsView::all_available(10))
            .expect("a partition");
        assert!((0..10).contains(&q));
    }

    #[test]
    fn adaptive_prefers_partitions_with_less_backlog() {
        // Java's weights: max + 1 - backlog = 1001, 1, 1, 501.
        let backlog = [0, 1000, 1000, 500];
        let view = PartitionsView::all_available(4).with_backlog(&backlog);
        let mut partitioner = UniformBytesPartitioner::new(21).with_sticky_bytes(1);
        let picks = run(&mut partitioner, &view, 150_400, 1);
        let mut counts = [0usize; 4];
        for p in picks {
            counts[p as usize] += 1;
        }
        // Expected 100_100, 100, 100 and 50_100 of 150_400 (weights 1001,
        // 1, 1 and 501 of 1504),
        // each bound about five standard deviations wide.
        assert!((99_100..=101_100).contains(&counts[0]), "{counts:?}");
        assert!((50..=150).contains(&counts[1]), "{counts:?}");
        assert!((50..=150).contains(&counts[2]), "{counts:?}");
        assert!((49_100..=51_100).contains(&counts[3]), "{counts:?}");

        // Not adaptive: the backlog is ignored.
        let mut uniform = UniformBytesPartitioner::new(21)
            .with_sticky_bytes(1)
            .with_adaptive(false);
        let picks = run(&mut uniform, &view, 8_000, 1);
        assert!(picks.iter().filter(|&&p| p == 1).count() > 1_500);
    }

    #[test]
    fn adaptive_skips_unavailable_partitions_and_equal_backlogs_are_uniform() {
        let has_leader = [true, false, true, true];
        let backlog = [7, 0, 7, 7];
        let view = PartitionsView::new(&has_leader).with_backlog(&backlog);
        let mut partitioner = UniformBytesPartitioner::new(8).with_sticky_bytes(1);
        let picks = run(&mut partitioner, &view, 3_000, 1);
        let mut counts = [0usize; 4];
        for p in picks {
            counts[p as usize] += 1;
        }
        assert_eq!(counts[1], 0);
        for p in [0, 2, 3] {
            assert!((850..=1_150).contains(&counts[p]), "{counts:?}");
        }
    }

    /// Pearson's chi-square statistic of `counts` against a uniform spread.
    fn chi_square(counts: &[usize]) -> f64 {
        let total: usize = counts.iter().sum();
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&c| {
                let d = c as f64 - expected;
                d * d / expected
            })
            .sum()
    }

    #[test]
    fn unkeyed_records_spread_uniformly_over_many_switches() {
        // 12 partitions, 10 records of 100 bytes per 1000-byte stint,
        // 120 000 records: about 12 000 stints.
        let view = PartitionsView::all_available(12);
        let mut partitioner = DefaultPartitioner::new(0x5eed).with_sticky_bytes(1000);
        let picks = run(&mut partitioner, &view, 120_000, 100);
        let mut counts = [0usize; 12];
        for p in &picks {
            counts[*p as usize] += 1;
        }
        // Records come in stints of 10, so the statistic over records is
        // 10 times that over stints; compare the stint-level one with the
        // 99.9th percentile of chi-square with 11 degrees of freedom (31.3).
        let stint_counts: Vec<usize> = counts.iter().map(|c| c / 10).collect();
        let statistic = chi_square(&stint_counts);
        assert!(statistic < 31.3, "chi-square {statistic} over {counts:?}");
    }

    #[test]
    fn same_seed_same_sequence() {
        let has_leader = [true, true, false, true, true, true, true];
        let backlog = [3, 9, 0, 1, 1, 20, 4];
        let view = PartitionsView::new(&has_leader).with_backlog(&backlog);
        let a = run(
            &mut DefaultPartitioner::new(77).with_sticky_bytes(500),
            &view,
            5_000,
            37,
        );
        let b = run(
            &mut DefaultPartitioner::new(77).with_sticky_bytes(500),
            &view,
            5_000,
            37,
        );
        let c = run(
            &mut DefaultPartitioner::new(78).with_sticky_bytes(500),
            &view,
            5_000,
            37,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);

        let factory = DefaultPartitioner::default().with_sticky_bytes(500);
        let mut x = factory.for_topic("t", topic_seed(1, "t"));
        let mut y = factory.for_topic("t", topic_seed(1, "t"));
        assert_eq!(run(&mut x, &view, 2_000, 37), run(&mut y, &view, 2_000, 37));
    }

    // ---- other built-ins ---------------------------------------------------

    #[test]
    fn round_robin_cycles_over_available_partitions() {
        // As Java's testRoundRobinWithUnavailablePartitions: only
        // partitions with a leader, evenly.
        let has_leader = [true, false, true];
        let view = PartitionsView::new(&has_leader);
        let mut partitioner = RoundRobinPartitioner::new();
        let record = RecordInfo::keyed(b"keys are ignored", 1);
        let picks: Vec<i32> = (0..100)
            .map(|_| partitioner.partition(&record, &view).expect("a partition"))
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 50);
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 50);
        let all = PartitionsView::all_available(4);
        let mut partitioner = RoundRobinPartitioner::new();
        let picks: Vec<i32> = (0..6)
            .map(|_| partitioner.partition(&record, &all).expect("a partition"))
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn least_backup_pins_until_a_new_batch_then_takes_the_least() {
        let mut partitioner = LeastBackupPartitioner::new(0);
        let record = RecordInfo::unkeyed(1);
        let backlog = [5, 2, 9];
        let view = PartitionsView::all_available(3).with_backlog(&backlog);
        assert_eq!(
            partition_record(&mut partitioner, &record, &view, |_| false),
            Ok(1)
        );
        let backlog = [5, 20, 9];
        let view = PartitionsView::all_available(3).with_backlog(&backlog);
        assert_eq!(
            partition_record(&mut partitioner, &record, &view, |_| false),
            Ok(1)
        );
        assert_eq!(
            partition_record(&mut partitioner, &record, &view, |_| true),
            Ok(0)
        );
        assert_eq!(partitioner.pinned_partition(), Some(0));

        // Ties are broken at random, and every tied partition gets picked.
        let backlog = [1, 1, 1, 5];
        let view = PartitionsView::all_available(4).with_backlog(&backlog);
        let mut seen = [false; 4];
        for _ in 0..200 {
            let p =
                partition_record(&mut partitioner, &record, &view, |_| true).expect("a partition");
            seen[p as usize] = true;
        }
        assert_eq!(seen, [true, true, true, false]);
    }

    #[test]
    fn manual_uses_the_record_partition() {
        let view = PartitionsView::new(&[false, false, true]);
        let record = RecordInfo::keyed(b"k", 1).with_partition(1);
        // Leaders are not the manual partitioner's business.
        assert_eq!(ManualPartitioner.partition(&record, &view), Ok(1));
        assert_eq!(
            ManualPartitioner.partition(&record.with_partition(-1), &view),
            Err(PartitionError::InvalidPartition {
                partition: -1,
                count: 3
            })
        );
        assert_eq!(
            ManualPartitioner.partition(&RecordInfo::unkeyed(1), &view),
            Err(PartitionError::PartitionNotSet)
        );
    }

    #[test]
    fn partition_record_rejects_out_of_range_answers() {
        #[derive(Debug)]
        struct TooFar;
        impl Partitioner for TooFar {
            fn partition(
                &mut self,
                _record: &RecordInfo<'_>,
                partitions: &PartitionsView<'_>,
            ) -> Result<i32, PartitionError> {
                Ok(partitions.count() + 1)
            }
        }
        let view = PartitionsView::all_available(2);
        assert_eq!(
            partition_record(&mut TooFar, &RecordInfo::unkeyed(1), &view, |_| false),
            Err(PartitionError::InvalidPartition {
                partition: 3,
                count: 2
            })
        );
    }

    #[test]
    fn factories_make_fresh_partitioners_with_the_template_settings() {
        let factories: Vec<Box<dyn PartitionerFactory>> = vec![
            Box::new(DefaultPartitioner::new(1).with_sticky_bytes(10)),
            Box::new(UniformBytesPartitioner::new(1)),
            Box::new(RoundRobinPartitioner::new()),
            Box::new(LeastBackupPartitioner::new(1)),
            Box::new(ManualPartitioner),
            Box::new(KeyHashPartitioner::new(RoundRobinPartitioner::new())),
        ];
        let view = PartitionsView::all_available(5);
        let record = RecordInfo::unkeyed(1).with_partition(4);
        for factory in &factories {
            let mut partitioner = factory.for_topic("t", 9);
            let p =
                partition_record(&mut partitioner, &record, &view, |_| false).expect("a partition");
            assert!((0..5).contains(&p), "{factory:?}");
        }
        let template = DefaultPartitioner::new(1)
            .with_sticky_bytes(10)
            .with_adaptive(false);
        let made = template.for_topic("t", 3);
        assert!(format!("{made:?}").contains("sticky_bytes: 10"));
        assert!(format!("{made:?}").contains("adaptive: false"));
    }

    // ---- properties --------------------------------------------------------

    proptest! {
        #[test]
        fn java_key_partition_is_always_in_range(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            count in 1..10_000i32,
        ) {
            let p = java_key_partition(&key, count);
            prop_assert!((0..count).contains(&p));
            let mut partitioner = DefaultPartitioner::new(0);
            let view = PartitionsView::all_available(count);
            prop_assert_eq!(partitioner.partition(&RecordInfo::keyed(&key, 1), &view), Ok(p));
        }

        #[test]
        fn every_pick_is_in_range_and_unkeyed_picks_have_a_leader_when_any_does(
            seed in any::<u64>(),
            has_leader in proptest::collection::vec(any::<bool>(), 1..40),
            backlog in proptest::collection::vec(any::<u64>(), 0..40),
            records in proptest::collection::vec(
                (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)), 0usize..5_000),
                1..200,
            ),
            sticky_bytes in 0u64..20_000,
        ) {
            let view = PartitionsView::new(&has_leader).with_backlog(&backlog);
            let count = view.count();
            let any = view.any_available();
            let mut default = DefaultPartitioner::new(seed).with_sticky_bytes(sticky_bytes);
            let mut round = RoundRobinPartitioner::new();
            let mut least = LeastBackupPartitioner::new(seed);
            for (i, (key, size)) in records.iter().enumerate() {
                let record = RecordInfo::new(key.as_deref(), *size);
                let new_batch = |_: i32| i % 3 == 0;
                let p = partition_record(&mut default, &record, &view, new_batch).expect("a partition");
                prop_assert!((0..count).contains(&p));
                if key.is_none() && any {
                    prop_assert!(view.is_available(p));
                }
                default.on_record_buffered(&record, p);
                for q in [
                    partition_record(&mut round, &record, &view, new_batch).expect("a partition"),
                    partition_record(&mut least, &record, &view, new_batch).expect("a partition"),
                ] {
                    prop_assert!((0..count).contains(&q));
                    prop_assert!(!any || view.is_available(q));
                }
            }
        }
    }
}
