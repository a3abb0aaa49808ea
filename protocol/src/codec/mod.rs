//! The ACIP packet codec: the 22-byte header (ACIP-SPEC.md 1.1), CRC-32C (1.2), limits (1.3), validation
//! (1.4), packet types (2) and typed payloads (3).

mod header;
pub mod payloads;
mod types;
pub mod validate;

use bytes::{Bytes, BytesMut};

pub use header::{Header, HEADER_LEN, MAGIC};
pub use payloads::Payload;
pub use types::PacketType;

/// Which generation of ascii-chat a peer speaks (ACIP-SPEC.md section 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Feb-2026 (commit 3a4707c3): 160-byte CLIENT_CAPABILITIES, HSalsa20 session key, LE nonce counter,
    /// one WebSocket message per packet, 2 s reassembly timeout.
    #[default]
    Feb,
    /// HEAD (73fe4933): 168-byte CLIENT_CAPABILITIES, raw X25519 session key, BE nonce counter,
    /// WebSocket as a length-delimited byte stream.
    Head,
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "feb" => Ok(Dialect::Feb),
            "head" => Ok(Dialect::Head),
            other => Err(format!("unknown dialect {other:?} (expected feb or head)")),
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::Feb => "feb",
            Dialect::Head => "head",
        })
    }
}

/// Every size limit, named (ACIP-SPEC.md 1.3). Defaults are the real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// MAX_PACKET_SIZE: the largest payload a receiver accepts (5 MiB).
    pub max_packet: u32,
    /// The largest payload a sender will produce (25 MiB sanity cap of `packet_send_via_transport`).
    pub max_send: u32,
    /// CRYPTO_MAX_PLAINTEXT_SIZE: inner header + payload of an encrypted packet (1 MiB).
    pub max_encrypted_plaintext: u32,
    /// Largest reassembled WebSocket message (4 MiB HEAD reassembly buffer; FEB had none, so the packet
    /// limit plus header applies).
    pub max_ws_message: usize,
    /// Most fragments accepted for one WebSocket message (FEB's receive queue had 4096 slots).
    pub max_ws_fragments: usize,
    /// Largest single WebSocket frame payload accepted by the frame decoder.
    pub max_ws_frame: usize,
    /// Largest ASCII_FRAME text accepted, and so the most a zstd-compressed frame may inflate to
    /// (the receiver's 256 MiB `original_size` cap, 3.9). Decompression output is bounded by it.
    pub max_ascii_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet: 5 * 1024 * 1024,
            max_send: 25 * 1024 * 1024,
            max_encrypted_plaintext: 1024 * 1024,
            max_ws_message: 5 * 1024 * 1024 + HEADER_LEN,
            max_ws_fragments: 4096,
            max_ws_frame: 5 * 1024 * 1024 + HEADER_LEN,
            max_ascii_text: 256 * 1024 * 1024,
        }
    }
}

/// Errors in a packet's bytes: one variant per rule of ACIP-SPEC.md 1.4 (and section 3 for payloads).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("bad magic 0x{found:016X} (expected 0x{:016X})", MAGIC)]
    BadMagic { found: u64 },
    #[error("{packet_type}: CRC-32C mismatch: header says 0x{expected:08X}, payload gives 0x{actual:08X}")]
    CrcMismatch { packet_type: PacketType, expected: u32, actual: u32 },
    #[error("{packet_type}: payload of {length} bytes is over the limit of {limit} bytes")]
    PacketTooLarge { packet_type: PacketType, length: u32, limit: u32 },
    #[error("{packet_type}: length field 0xFFFFFFFF is never valid")]
    LengthSentinel { packet_type: PacketType },
    #[error("{packet_type}: header with length 0 must carry CRC 0, found 0x{crc:08X}")]
    NonZeroCrcForEmpty { packet_type: PacketType, crc: u32 },
    #[error("truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    #[error("{packet_type}: payload is {actual} bytes, expected {expected}")]
    WrongSize { packet_type: PacketType, expected: SizeRule, actual: usize },
    #[error("unknown packet type {0}")]
    UnknownType(u16),
    #[error("{packet_type}: {field} = {value} is outside {min}..={max}")]
    OutOfRange { packet_type: PacketType, field: &'static str, value: u64, min: u64, max: u64 },
    #[error("{packet_type}: {field}: {reason}")]
    Invalid { packet_type: PacketType, field: &'static str, reason: String },
    #[error("{packet_type}: decompression failed: {reason}")]
    Decompress { packet_type: PacketType, reason: String },
    #[error("packet type {packet_type} cannot be decoded as {wanted}")]
    TypeMismatch { packet_type: PacketType, wanted: PacketType },
    #[error("{packet_type}: text checksum mismatch: frame says 0x{expected:08X}, text gives 0x{actual:08X}")]
    ChecksumMismatch { packet_type: PacketType, expected: u32, actual: u32 },
    #[error("{packet_type}: {field} says {declared} bytes but {actual} are there")]
    FieldMismatch { packet_type: PacketType, field: &'static str, declared: u64, actual: u64 },
    #[error("{packet_type}: {field} 0x{value:08X} has bits outside 0x{allowed:08X}")]
    UnknownBits { packet_type: PacketType, field: &'static str, value: u32, allowed: u32 },
    #[error("{packet_type}: {field} = {value} is not one of the values the receiver accepts")]
    Unsupported { packet_type: PacketType, field: &'static str, value: u64 },
    #[error("{packet_type}: {field} is empty")]
    Empty { packet_type: PacketType, field: &'static str },
    #[error("{packet_type}: {field} is not valid UTF-8 (bad byte at {valid_up_to})")]
    NotUtf8 { packet_type: PacketType, field: &'static str, valid_up_to: usize },
    #[error("{packet_type} is not accepted by the handshake-phase receive path")]
    NotAllowedInHandshake { packet_type: PacketType },
}

/// A size rule that a payload broke, for [`CodecError::WrongSize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRule {
    Exactly(usize),
    AtLeast(usize),
    AtMost(usize),
    Between(usize, usize),
}

impl std::fmt::Display for SizeRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeRule::Exactly(n) => write!(f, "exactly {n}"),
            SizeRule::AtLeast(n) => write!(f, "at least {n}"),
            SizeRule::AtMost(n) => write!(f, "at most {n}"),
            SizeRule::Between(a, b) => write!(f, "{a}..={b}"),
        }
    }
}

/// One whole packet: type and payload. The header's CRC and length are derived when it is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub packet_type: PacketType,
    pub payload: Bytes,
}

impl Packet {
    pub fn new(packet_type: PacketType, payload: impl Into<Bytes>) -> Self {
        Packet { packet_type, payload: payload.into() }
    }

    /// A packet with no payload (PING, PONG, CLEAR_CONSOLE, HANDSHAKE_COMPLETE, ...).
    pub fn empty(packet_type: PacketType) -> Self {
        Packet { packet_type, payload: Bytes::new() }
    }

    /// The header this packet is sent with (client_id 0, as every real sender writes).
    pub fn header(&self) -> Header {
        Header::for_payload(self.packet_type, &self.payload)
    }

    /// Total bytes on the wire: header plus payload.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends header and payload to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.wire_len());
        out.extend_from_slice(&self.header().to_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// Header and payload as one buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire_len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes one packet from the start of `buf`, checking magic, length limit and CRC.
    /// Returns the packet and the number of bytes it used. Zero-copy: the payload shares `buf`.
    pub fn decode(buf: &Bytes, limits: &Limits) -> Result<(Packet, usize), CodecError> {
        let header = Header::decode(buf, limits)?;
        let total = HEADER_LEN + header.length as usize;
        if buf.len() < total {
            return Err(CodecError::Truncated { needed: total, have: buf.len() });
        }
        let payload = buf.slice(HEADER_LEN..total);
        header.check_crc(&payload)?;
        Ok((Packet { packet_type: header.packet_type, payload }, total))
    }

    /// Decodes a buffer that must hold exactly one packet (a WebSocket message in the `feb` dialect, or an
    /// encrypted packet's inner plaintext).
    pub fn decode_exact(buf: Bytes, limits: &Limits) -> Result<Packet, CodecError> {
        let (p, used) = Packet::decode(&buf, limits)?;
        if used != buf.len() {
            return Err(CodecError::Invalid {
                packet_type: p.packet_type,
                field: "length",
                reason: format!("buffer holds {} bytes but the packet is {used}", buf.len()),
            });
        }
        Ok(p)
    }
}

/// Copies `data` into a fresh `Bytes` (for callers that only have a slice).
pub fn bytes_from(data: &[u8]) -> Bytes {
    BytesMut::from(data).freeze()
}

#[cfg(test)]
mod tests;
