//! The two checksums of the Kafka log formats.
//!
//! Magic v2 batches carry a CRC-32C (Castagnoli) of every byte from the
//! attributes field to the end of the batch (`DefaultRecordBatch`): the base
//! offset, length and partition leader epoch are left out so a broker can
//! assign offsets and stamp its epoch without recomputing it. Legacy v0/v1
//! messages carry a CRC-32 (IEEE, `java.util.zip.CRC32`) of every byte from
//! the magic to the end of the message (`LegacyRecord.computeChecksum`).

/// CRC-32C of `data` (hardware-accelerated where the CPU has it).
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// CRC-32 (IEEE 802.3, as `java.util.zip.CRC32`) of `data`.
#[inline]
pub fn crc32_ieee(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values_of_both_polynomials() {
        // The standard "123456789" check values of each CRC.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32_ieee(b"123456789"), 0xcbf4_3926);
    }
}
