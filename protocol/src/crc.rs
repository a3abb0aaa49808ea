//! CRC-32C (Castagnoli), the checksum of every ACIP payload and of ASCII_FRAME text (ACIP-SPEC.md 1.2).
//! Not IEEE CRC-32. The `crc32c` crate uses SSE4.2 / ARMv8 CRC instructions where present.

/// CRC-32C of `data` (reflected polynomial 0x82F63B78, init and final XOR 0xFFFFFFFF).
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continues a CRC-32C over more bytes, so a payload in pieces needs no copy.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0, 0, 0, 1]), 0xBA0C_C8C4);
        assert_eq!(crc32c_append(crc32c(b"1234"), b"56789"), 0xE306_9283);
    }
}
