//! Typed payloads for every layout of ACIP-SPEC.md section 3, and [`Payload`], the one enum a receiver
//! matches on.
//!
//! Each layout is a struct with `encode`/`encode_into`, `decode(&[u8])` (dialect-dependent ones take a
//! [`Dialect`]) and `to_packet`. Decoding is lossless: reserved fields and bytes after a NUL are kept, so
//! `Payload::decode(p)?.to_packet()` re-encodes to exactly `p` (the `packet` fuzz target checks this).
//! Decoding rejects what the C receivers reject (sizes, ranges, checksums); encoding never validates, so a
//! harness can send bad values on purpose. CLIENT_CAPABILITIES' semantic rules are apart, in
//! [`ClientCapabilities::validate`], because the server checks them after parsing (1.4 (c)).
//!
//! The key-exchange payloads are `crate::crypto::messages` types, wrapped here. AUTH_RESPONSE stays
//! [`Payload::Raw`]: its layout depends on the challenge (password or key form, overlapping sizes), so the
//! handshake decodes it. ENCRYPTED, CLIENT_HELLO, the rekey types and the legacy 2000-2002 stay raw too.

mod handshake;
mod media;
mod session;

pub use handshake::{AuthChallenge, AuthFailed, CryptoCapabilities, CryptoParameters, ProtocolVersion};
pub use media::{AsciiFrame, AudioBatch, AudioOpusBatch, ImageFrame, ImageFrameH265};
pub use session::{
    ClientCapabilities, ClientJoin, ClientLeave, ErrorMessage, RemoteLog, ServerState, StreamStart,
    StreamStop,
};

use std::borrow::Cow;

use super::validate::check_size;
use super::{CodecError, Dialect, Limits, Packet, PacketType, SizeRule};
use crate::crypto::messages::{KeyExchangeInit, KeyExchangeResp, ServerAuthResp};

/// Adds `PACKET_TYPE`, `encode` and `to_packet` to a payload struct that has `encode_into`.
macro_rules! payload_boilerplate {
    ($ty:ident, $packet_type:expr) => {
        impl $ty {
            /// The packet type this payload travels in.
            pub const PACKET_TYPE: PacketType = $packet_type;

            /// The payload bytes.
            pub fn encode(&self) -> Vec<u8> {
                let mut out = Vec::new();
                self.encode_into(&mut out);
                out
            }

            /// This payload in a packet, ready to send.
            pub fn to_packet(&self) -> Packet {
                Packet::new(Self::PACKET_TYPE, self.encode())
            }
        }
    };
}
use payload_boilerplate;

/// Checks that a fixed-size payload has exactly `len` bytes and hands it back as a `bytes::Buf` cursor.
fn fixed(packet_type: PacketType, payload: &[u8], len: usize) -> Result<&[u8], CodecError> {
    check_size(packet_type, payload.len(), SizeRule::Exactly(len))?;
    Ok(payload)
}

/// Reads `N` bytes from a cursor whose length was checked.
fn array<const N: usize>(r: &mut &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    bytes::Buf::copy_to_slice(r, &mut a);
    a
}

/// A text field as a `String`, or a typed error if it is not UTF-8.
fn utf8(packet_type: PacketType, field: &'static str, bytes: &[u8]) -> Result<String, CodecError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => Err(CodecError::NotUtf8 { packet_type, field, valid_up_to: e.valid_up_to() }),
    }
}

/// A NUL-padded fixed field (`term_type`, `display_name`, ...) from a string, truncated at a char boundary
/// so that at least one NUL remains, as the C senders leave it.
pub fn nul_padded<const N: usize>(s: &str) -> [u8; N] {
    let mut end = s.len().min(N.saturating_sub(1));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut a = [0u8; N];
    a[..end].copy_from_slice(&s.as_bytes()[..end]);
    a
}

/// The text of a NUL-padded field: the bytes before the first NUL (C ignores the rest, which may be
/// garbage: the captures show leftovers after `xterm\0`), decoded lossily.
pub fn until_nul(field: &[u8]) -> Cow<'_, str> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end])
}

/// A decoded payload: one variant per typed layout of section 3, plus the empty-payload types, plus
/// [`Payload::Raw`] and [`Payload::Unknown`] so nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload {
    ProtocolVersion(ProtocolVersion),
    CryptoCapabilities(CryptoCapabilities),
    CryptoParameters(CryptoParameters),
    AuthChallenge(AuthChallenge),
    AuthFailed(AuthFailed),
    KeyExchangeInit(KeyExchangeInit),
    KeyExchangeResp(KeyExchangeResp),
    ServerAuthResp(ServerAuthResp),
    ErrorMessage(ErrorMessage),
    RemoteLog(RemoteLog),
    AsciiFrame(AsciiFrame),
    ImageFrame(ImageFrame),
    ImageFrameH265(ImageFrameH265),
    AudioBatch(AudioBatch),
    AudioOpusBatch(AudioOpusBatch),
    ClientCapabilities(ClientCapabilities),
    ClientJoin(ClientJoin),
    ClientLeave(ClientLeave),
    StreamStart(StreamStart),
    StreamStop(StreamStop),
    ServerState(ServerState),
    /// CRYPTO_HANDSHAKE_COMPLETE (0 B).
    HandshakeComplete,
    /// CRYPTO_NO_ENCRYPTION (0 B).
    NoEncryption,
    Ping,
    Pong,
    ClearConsole,
    /// A known type whose payload is not typed here (ENCRYPTED, key exchange, rekey, CLIENT_HELLO, legacy).
    Raw(Packet),
    /// A type number not in section 2 (including ACDS 6000-6199), kept as is.
    Unknown(Packet),
}

impl Payload {
    /// Decodes a packet's payload with the default [`Limits`].
    pub fn decode(packet: &Packet, dialect: Dialect) -> Result<Payload, CodecError> {
        Payload::decode_with_limits(packet, dialect, &Limits::default())
    }

    /// Decodes a packet's payload. `limits.max_ascii_text` bounds ASCII_FRAME decompression. Payloads that
    /// carry bulk data (frames, Opus) share the packet's buffer instead of copying it.
    pub fn decode_with_limits(
        packet: &Packet,
        dialect: Dialect,
        limits: &Limits,
    ) -> Result<Payload, CodecError> {
        use PacketType as T;
        let p = &packet.payload;
        let empty = |v: Payload| check_size(packet.packet_type, p.len(), SizeRule::Exactly(0)).map(|()| v);
        Ok(match packet.packet_type {
            T::PROTOCOL_VERSION => Payload::ProtocolVersion(ProtocolVersion::decode(p)?),
            T::CRYPTO_CAPABILITIES => Payload::CryptoCapabilities(CryptoCapabilities::decode(p)?),
            T::CRYPTO_PARAMETERS => Payload::CryptoParameters(CryptoParameters::decode(p)?),
            T::CRYPTO_AUTH_CHALLENGE => Payload::AuthChallenge(AuthChallenge::decode(p)?),
            T::CRYPTO_AUTH_FAILED => Payload::AuthFailed(AuthFailed::decode(p)?),
            T::CRYPTO_KEY_EXCHANGE_INIT => Payload::KeyExchangeInit(KeyExchangeInit::decode(p)?),
            T::CRYPTO_KEY_EXCHANGE_RESP => Payload::KeyExchangeResp(KeyExchangeResp::decode(p)?),
            T::CRYPTO_SERVER_AUTH_RESP => Payload::ServerAuthResp(ServerAuthResp::decode(p)?),
            T::ERROR_MESSAGE => Payload::ErrorMessage(ErrorMessage::decode(p)?),
            T::REMOTE_LOG => Payload::RemoteLog(RemoteLog::decode(p)?),
            T::ASCII_FRAME => Payload::AsciiFrame(AsciiFrame::decode_with_limit(p, limits.max_ascii_text)?),
            T::IMAGE_FRAME => Payload::ImageFrame(ImageFrame::decode_bytes(p)?),
            T::IMAGE_FRAME_H265 => Payload::ImageFrameH265(ImageFrameH265::decode_bytes(p)?),
            T::AUDIO_BATCH => Payload::AudioBatch(AudioBatch::decode(p)?),
            T::AUDIO_OPUS_BATCH => Payload::AudioOpusBatch(AudioOpusBatch::decode_bytes(p)?),
            T::CLIENT_CAPABILITIES => Payload::ClientCapabilities(ClientCapabilities::decode(p, dialect)?),
            T::CLIENT_JOIN => Payload::ClientJoin(ClientJoin::decode(p)?),
            T::CLIENT_LEAVE => Payload::ClientLeave(ClientLeave::decode(p)?),
            T::STREAM_START => Payload::StreamStart(StreamStart::decode(p)?),
            T::STREAM_STOP => Payload::StreamStop(StreamStop::decode(p)?),
            T::SERVER_STATE => Payload::ServerState(ServerState::decode(p)?),
            T::CRYPTO_HANDSHAKE_COMPLETE => empty(Payload::HandshakeComplete)?,
            T::CRYPTO_NO_ENCRYPTION => empty(Payload::NoEncryption)?,
            T::PING => empty(Payload::Ping)?,
            T::PONG => empty(Payload::Pong)?,
            T::CLEAR_CONSOLE => empty(Payload::ClearConsole)?,
            T::Unknown(_) => Payload::Unknown(packet.clone()),
            _ => Payload::Raw(packet.clone()),
        })
    }

    /// The packet type this payload travels in.
    pub fn packet_type(&self) -> PacketType {
        use PacketType as T;
        match self {
            Payload::ProtocolVersion(_) => T::PROTOCOL_VERSION,
            Payload::CryptoCapabilities(_) => T::CRYPTO_CAPABILITIES,
            Payload::CryptoParameters(_) => T::CRYPTO_PARAMETERS,
            Payload::AuthChallenge(_) => T::CRYPTO_AUTH_CHALLENGE,
            Payload::AuthFailed(_) => T::CRYPTO_AUTH_FAILED,
            Payload::KeyExchangeInit(_) => T::CRYPTO_KEY_EXCHANGE_INIT,
            Payload::KeyExchangeResp(_) => T::CRYPTO_KEY_EXCHANGE_RESP,
            Payload::ServerAuthResp(_) => T::CRYPTO_SERVER_AUTH_RESP,
            Payload::ErrorMessage(_) => T::ERROR_MESSAGE,
            Payload::RemoteLog(_) => T::REMOTE_LOG,
            Payload::AsciiFrame(_) => T::ASCII_FRAME,
            Payload::ImageFrame(_) => T::IMAGE_FRAME,
            Payload::ImageFrameH265(_) => T::IMAGE_FRAME_H265,
            Payload::AudioBatch(_) => T::AUDIO_BATCH,
            Payload::AudioOpusBatch(_) => T::AUDIO_OPUS_BATCH,
            Payload::ClientCapabilities(_) => T::CLIENT_CAPABILITIES,
            Payload::ClientJoin(_) => T::CLIENT_JOIN,
            Payload::ClientLeave(_) => T::CLIENT_LEAVE,
            Payload::StreamStart(_) => T::STREAM_START,
            Payload::StreamStop(_) => T::STREAM_STOP,
            Payload::ServerState(_) => T::SERVER_STATE,
            Payload::HandshakeComplete => T::CRYPTO_HANDSHAKE_COMPLETE,
            Payload::NoEncryption => T::CRYPTO_NO_ENCRYPTION,
            Payload::Ping => T::PING,
            Payload::Pong => T::PONG,
            Payload::ClearConsole => T::CLEAR_CONSOLE,
            Payload::Raw(p) | Payload::Unknown(p) => p.packet_type,
        }
    }

    /// The packet that carries this payload.
    pub fn to_packet(&self) -> Packet {
        match self {
            Payload::ProtocolVersion(x) => x.to_packet(),
            Payload::CryptoCapabilities(x) => x.to_packet(),
            Payload::CryptoParameters(x) => x.to_packet(),
            Payload::AuthChallenge(x) => x.to_packet(),
            Payload::AuthFailed(x) => x.to_packet(),
            Payload::KeyExchangeInit(x) => Packet::new(self.packet_type(), x.encode()),
            Payload::KeyExchangeResp(x) => Packet::new(self.packet_type(), x.encode()),
            Payload::ServerAuthResp(x) => Packet::new(self.packet_type(), x.encode()),
            Payload::ErrorMessage(x) => x.to_packet(),
            Payload::RemoteLog(x) => x.to_packet(),
            Payload::AsciiFrame(x) => x.to_packet(),
            Payload::ImageFrame(x) => x.to_packet(),
            Payload::ImageFrameH265(x) => x.to_packet(),
            Payload::AudioBatch(x) => x.to_packet(),
            Payload::AudioOpusBatch(x) => x.to_packet(),
            Payload::ClientCapabilities(x) => x.to_packet(),
            Payload::ClientJoin(x) => x.to_packet(),
            Payload::ClientLeave(x) => x.to_packet(),
            Payload::StreamStart(x) => x.to_packet(),
            Payload::StreamStop(x) => x.to_packet(),
            Payload::ServerState(x) => x.to_packet(),
            Payload::Raw(p) | Payload::Unknown(p) => p.clone(),
            Payload::HandshakeComplete
            | Payload::NoEncryption
            | Payload::Ping
            | Payload::Pong
            | Payload::ClearConsole => Packet::empty(self.packet_type()),
        }
    }
}

macro_rules! from_payload_struct {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Payload {
            fn from(x: $ty) -> Payload {
                Payload::$ty(x)
            }
        }
    )*};
}
from_payload_struct!(
    ProtocolVersion,
    CryptoCapabilities,
    CryptoParameters,
    AuthChallenge,
    AuthFailed,
    KeyExchangeInit,
    KeyExchangeResp,
    ServerAuthResp,
    ErrorMessage,
    RemoteLog,
    AsciiFrame,
    ImageFrame,
    ImageFrameH265,
    AudioBatch,
    AudioOpusBatch,
    ClientCapabilities,
    ClientJoin,
    ClientLeave,
    StreamStart,
    StreamStop,
    ServerState
);
