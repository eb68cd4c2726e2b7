//! Versions Kafka released after the spec snapshot this workspace reads.
//!
//! `../shared/kafka-message-specs` predates the Kafka 4.0 release: it stops
//! at Produce v11 and TxnOffsetCommit v4 and still marks EndTxn v5
//! unstable. Kafka 4.0 released all three for KIP-890 part 2
//! (transactions v2) with *unchanged schemas*: Produce v12 and
//! TxnOffsetCommit v5 only tell the broker that the client speaks
//! transactions v2 (the partition leader, respectively the group
//! coordinator, adds the partition or group to the transaction itself),
//! and EndTxn v5 is the version the snapshot already describes (its
//! response adds the bumped producer id and epoch).
//!
//! Only versions whose schema is the previous version's can be listed
//! here: every field of the listed specs is open-ended (`"N+"`), so
//! raising the highest valid version is all it takes. [`apply`] refuses
//! an entry whose spec has a field closed below the new version, and does
//! nothing for a spec that already reaches it (a newer snapshot).

use crate::spec::Spec;

/// One released version the snapshot lacks.
struct Released {
    /// The spec file stem, e.g. `ProduceRequest`.
    file: &'static str,
    /// The highest version Kafka released.
    max: i16,
}

/// Kafka 4.0 (the "wire-format/<API>/changelog" pages of the protocol
/// docs, and KIP-890): Produce v12, TxnOffsetCommit v5, EndTxn v5 stable.
const RELEASED: &[Released] = &[
    Released {
        file: "ProduceRequest",
        max: 12,
    },
    Released {
        file: "ProduceResponse",
        max: 12,
    },
    Released {
        file: "TxnOffsetCommitRequest",
        max: 5,
    },
    Released {
        file: "TxnOffsetCommitResponse",
        max: 5,
    },
    Released {
        file: "EndTxnRequest",
        max: 5,
    },
    Released {
        file: "EndTxnResponse",
        max: 5,
    },
];

/// Raises each listed spec to its released version and marks that version
/// stable.
pub fn apply(specs: &mut [Spec]) -> Result<(), String> {
    for r in RELEASED {
        let spec = specs
            .iter_mut()
            .find(|s| s.file == r.file)
            .ok_or_else(|| format!("released-versions table names {}, not in the specs", r.file))?;
        if spec.valid.max > r.max {
            continue;
        }
        if spec.valid.max < r.max {
            let closed = spec.structs.iter().flat_map(|s| &s.fields).find(|f| {
                !f.versions.is_empty() && f.versions.max >= spec.valid.max && f.versions.max < r.max
            });
            if let Some(f) = closed {
                return Err(format!(
                    "{}: field {} ends at v{}; v{} is not the same schema",
                    r.file, f.name, f.versions.max, r.max
                ));
            }
            spec.valid.max = r.max;
            for s in &mut spec.structs {
                if s.versions.max >= r.max - 1 {
                    s.versions.max = s.versions.max.max(r.max);
                }
            }
        }
        spec.latest_unstable = false;
    }
    Ok(())
}
