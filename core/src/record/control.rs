//! Control records: the transaction markers of KIP-98.
//!
//! A control batch (attribute bit 5) holds records whose key is
//! `version int16 | type int16` (`ControlRecordType`: 0 abort, 1 commit;
//! KRaft uses 2 and up inside its own metadata log) and, for abort and
//! commit, whose value is `version int16 | coordinator_epoch int32`
//! (`EndTransactionMarker`). Like Kafka, a key or marker version above the
//! one we know is read as version 0 (newer versions only append fields),
//! and a negative version is corruption.

use super::builder::{BatchBuilder, BatchOptions, BatchStamp, BuildError, SealedBatch, NO_HEADERS};
use super::records::Record;
use super::{be_i16, be_i32, RecordError, NO_SEQUENCE};

/// What a control record marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ControlRecordKind {
    /// The transaction's records before this marker are aborted.
    Abort,
    /// The transaction's records before this marker are committed.
    Commit,
    /// A type this client does not know (Kafka's `UNKNOWN`): skip it.
    Unknown(i16),
}

impl ControlRecordKind {
    /// The type id on the wire.
    pub const fn type_id(self) -> i16 {
        match self {
            ControlRecordKind::Abort => 0,
            ControlRecordKind::Commit => 1,
            ControlRecordKind::Unknown(id) => id,
        }
    }

    /// The kind for a wire type id.
    pub const fn from_type_id(id: i16) -> ControlRecordKind {
        match id {
            0 => ControlRecordKind::Abort,
            1 => ControlRecordKind::Commit,
            other => ControlRecordKind::Unknown(other),
        }
    }
}

/// A parsed control record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlRecord {
    /// Abort, commit, or a type we skip.
    pub kind: ControlRecordKind,
    /// Epoch of the transaction coordinator that wrote an abort or commit
    /// marker; -1 for unknown kinds, whose value is not read.
    pub coordinator_epoch: i32,
}

/// Bytes of a version 0 control record key.
const KEY_LEN: usize = 4;
/// Bytes of a version 0 end-transaction marker value.
const VALUE_LEN: usize = 6;

impl ControlRecord {
    /// An end-transaction marker.
    pub const fn end_txn(commit: bool, coordinator_epoch: i32) -> ControlRecord {
        ControlRecord {
            kind: if commit {
                ControlRecordKind::Commit
            } else {
                ControlRecordKind::Abort
            },
            coordinator_epoch,
        }
    }

    /// Parses a control record from its key and value.
    pub fn parse(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<ControlRecord, RecordError> {
        let key = key.ok_or(RecordError::BadControlRecord("null key"))?;
        if key.len() < KEY_LEN {
            return Err(RecordError::BadControlRecord("key shorter than 4 bytes"));
        }
        if be_i16(key, 0) < 0 {
            return Err(RecordError::BadControlRecord("negative key version"));
        }
        let kind = ControlRecordKind::from_type_id(be_i16(key, 2));
        let coordinator_epoch = match kind {
            ControlRecordKind::Abort | ControlRecordKind::Commit => {
                let value = value.ok_or(RecordError::BadControlRecord("null marker value"))?;
                if value.len() < VALUE_LEN {
                    return Err(RecordError::BadControlRecord(
                        "marker value shorter than 6 bytes",
                    ));
                }
                if be_i16(value, 0) < 0 {
                    return Err(RecordError::BadControlRecord("negative marker version"));
                }
                be_i32(value, 2)
            }
            ControlRecordKind::Unknown(_) => -1,
        };
        Ok(ControlRecord {
            kind,
            coordinator_epoch,
        })
    }

    /// Parses the control record `record` (from a batch whose
    /// [`is_control`](super::Batch::is_control) is true).
    pub fn from_record(record: &Record) -> Result<ControlRecord, RecordError> {
        ControlRecord::parse(record.key.as_deref(), record.value.as_deref())
    }

    /// The version 0 key: version, then type.
    pub fn key_bytes(&self) -> [u8; KEY_LEN] {
        let t = self.kind.type_id().to_be_bytes();
        [0, 0, t[0], t[1]]
    }

    /// The version 0 marker value: version, then coordinator epoch.
    pub fn value_bytes(&self) -> [u8; VALUE_LEN] {
        let e = self.coordinator_epoch.to_be_bytes();
        [0, 0, e[0], e[1], e[2], e[3]]
    }

    /// A control batch holding this marker, as a transaction coordinator
    /// writes it (`MemoryRecords.withEndTransactionMarker`): transactional,
    /// control, uncompressed, one record at `timestamp`, no base sequence.
    /// The producer id and epoch come from `stamp` (its base sequence is
    /// ignored).
    pub fn to_batch(&self, timestamp: i64, stamp: &BatchStamp) -> Result<SealedBatch, BuildError> {
        let mut b = BatchBuilder::new(BatchOptions {
            transactional: true,
            control: true,
            max_bytes: 0,
            ..BatchOptions::default()
        });
        // A 4-byte key and 6-byte value always encode.
        b.append(
            timestamp,
            Some(&self.key_bytes()),
            Some(&self.value_bytes()),
            NO_HEADERS,
        )
        .map_err(|_| BuildError::Empty)?;
        let mut stamp = *stamp;
        stamp.producer.base_sequence = NO_SEQUENCE;
        b.seal(&stamp)
    }
}
