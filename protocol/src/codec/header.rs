//! The 22-byte packet header (ACIP-SPEC.md 1.1). All fields big-endian; `client_id` is written 0 by every
//! sender and ignored by every receiver, but kept here so a dissector can show it.

use super::{CodecError, Limits, PacketType};
use crate::crc::crc32c;

/// `MAGIC_PACKET_VALID`, bytes `00 00 00 0A 5C 11 C4 A1`.
pub const MAGIC: u64 = 0x0000_000A_5C11_C4A1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 22;

/// A decoded packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub packet_type: PacketType,
    /// Payload bytes after the header.
    pub length: u32,
    /// CRC-32C of the payload (0 when `length == 0`).
    pub crc32: u32,
    pub client_id: u32,
}

impl Header {
    /// The header a sender writes for `payload`.
    pub fn for_payload(packet_type: PacketType, payload: &[u8]) -> Header {
        let crc32 = if payload.is_empty() { 0 } else { crc32c(payload) };
        Header { packet_type, length: payload.len() as u32, crc32, client_id: 0 }
    }

    /// The 22 wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC.to_be_bytes());
        b[8..10].copy_from_slice(&self.packet_type.to_u16().to_be_bytes());
        b[10..14].copy_from_slice(&self.length.to_be_bytes());
        b[14..18].copy_from_slice(&self.crc32.to_be_bytes());
        b[18..22].copy_from_slice(&self.client_id.to_be_bytes());
        b
    }

    /// Checks the magic as soon as 8 bytes are there, so a stream with garbage fails before the rest of a
    /// header is awaited. `Ok(())` when fewer than 8 bytes are given and they match so far.
    pub fn check_magic_prefix(buf: &[u8]) -> Result<(), CodecError> {
        let magic = MAGIC.to_be_bytes();
        let n = buf.len().min(8);
        if buf[..n] != magic[..n] {
            let mut found = [0u8; 8];
            found[..n].copy_from_slice(&buf[..n]);
            return Err(CodecError::BadMagic { found: u64::from_be_bytes(found) });
        }
        Ok(())
    }

    /// The payload length once 14 bytes are there: lets a stream reject an oversized packet before reading it.
    pub fn peek_length(buf: &[u8]) -> Option<u32> {
        buf.get(10..14).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Decodes the header at the start of `buf` and checks magic and the length limit (not the CRC: the
    /// payload may not be there yet).
    pub fn decode(buf: &[u8], limits: &Limits) -> Result<Header, CodecError> {
        if buf.len() < HEADER_LEN {
            Header::check_magic_prefix(buf)?;
            return Err(CodecError::Truncated { needed: HEADER_LEN, have: buf.len() });
        }
        Header::check_magic_prefix(&buf[..8])?;
        let be32 = |o: usize| u32::from_be_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let header = Header {
            packet_type: PacketType::from_u16(u16::from_be_bytes([buf[8], buf[9]])),
            length: be32(10),
            crc32: be32(14),
            client_id: be32(18),
        };
        header.check_length(limits)?;
        Ok(header)
    }

    /// The length rules every receive path applies: not the 0xFFFFFFFF sentinel, not over `max_packet`.
    pub fn check_length(&self, limits: &Limits) -> Result<(), CodecError> {
        if self.length == u32::MAX {
            return Err(CodecError::LengthSentinel { packet_type: self.packet_type });
        }
        if self.length > limits.max_packet {
            return Err(CodecError::PacketTooLarge {
                packet_type: self.packet_type,
                length: self.length,
                limit: limits.max_packet,
            });
        }
        Ok(())
    }

    /// Checks the CRC-32C against the payload (and that an empty payload carries CRC 0).
    pub fn check_crc(&self, payload: &[u8]) -> Result<(), CodecError> {
        if payload.is_empty() {
            if self.crc32 != 0 {
                return Err(CodecError::NonZeroCrcForEmpty {
                    packet_type: self.packet_type,
                    crc: self.crc32,
                });
            }
            return Ok(());
        }
        let actual = crc32c(payload);
        if actual != self.crc32 {
            return Err(CodecError::CrcMismatch {
                packet_type: self.packet_type,
                expected: self.crc32,
                actual,
            });
        }
        Ok(())
    }
}
