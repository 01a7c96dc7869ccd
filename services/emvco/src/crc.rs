//! CRC-16/CCITT-FALSE, the checksum EMVCo puts in data object 63.

/// CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final xor.
///
/// EMVCo computes it over the payload's bytes up to and including the "6304" that opens the CRC
/// object. The bytes are the payload's UTF-8 encoding, which is what the spec's own example (with
/// Chinese text in template 64) checks against.
pub fn crc16_ccitt_false(data: &[u8]) -> u16 {
    const POLYNOMIAL: u16 = 0x1021;
    let mut crc: u16 = 0xFFFF;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ POLYNOMIAL
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_check_value_matches() {
        assert_eq!(crc16_ccitt_false(b"123456789"), 0x29B1);
    }

    #[test]
    fn nothing_hashes_to_the_initial_value() {
        assert_eq!(crc16_ccitt_false(b""), 0xFFFF);
    }
}
