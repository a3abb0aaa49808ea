//! The crate's one error type. Each layer has its own sub-enum, kept beside its code and lifted here with
//! `#[from]`; [`Error::close`] is the one place that maps an error to what goes on the wire.

use crate::codec::CodecError;
use crate::crypto::{CryptoError, HandshakeError};
use crate::slots::SlotError;
use crate::ws::{FrameError, ReassemblyError};

/// Everything `acip` can report. "The peer misbehaved" (codec, frame, reassembly, handshake and crypto
/// errors) is kept apart from "the caller misused the API" ([`Error::Usage`]).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Reassembly(#[from] ReassemblyError),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The caller used the API wrongly (not the peer's fault).
    #[error("API misuse: {0}")]
    Usage(&'static str),
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a peer should be told when a connection ends because of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseAdvice {
    /// RFC 6455 close code for a WebSocket peer (1002 protocol error, 1009 too big, 1008 policy, 1011 internal).
    pub ws_close_code: u16,
    /// ERROR_MESSAGE code (ACIP-SPEC.md 3.12) for an ACIP peer, e.g. 44 NETWORK_PROTOCOL.
    pub error_code: u32,
}

impl Error {
    /// Maps this error to the wire: one place for every close code and ERROR_MESSAGE code.
    pub fn close(&self) -> CloseAdvice {
        use crate::codec::payloads::ErrorMessage as E;
        use crate::ws::close_code as ws;
        let (ws_close_code, error_code) = match self {
            Error::Codec(CodecError::PacketTooLarge { .. }) => (ws::TOO_BIG, E::NETWORK_PROTOCOL),
            Error::Reassembly(ReassemblyError::MessageTooLarge { .. }) => (ws::TOO_BIG, E::NETWORK_PROTOCOL),
            Error::Frame(FrameError::NotUtf8(_)) => (ws::INVALID_PAYLOAD, E::NETWORK_PROTOCOL),
            Error::Codec(_) | Error::Frame(_) | Error::Reassembly(_) => {
                (ws::PROTOCOL_ERROR, E::NETWORK_PROTOCOL)
            }
            Error::Handshake(_) => (ws::POLICY, E::CRYPTO_AUTH),
            Error::Crypto(_) => (ws::POLICY, E::CRYPTO),
            Error::Slot(_) => (ws::TRY_AGAIN_LATER, E::NETWORK),
            Error::Usage(_) => (ws::INTERNAL_ERROR, E::NETWORK),
        };
        CloseAdvice { ws_close_code, error_code }
    }
}

/// Error-kind names: one stable snake_case name per error, the key every report and stats counter uses.
impl Error {
    /// The stable name of this error (e.g. `crc_mismatch`, `data_frame_before_fin`, `invalid_close`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Codec(e) => e.kind(),
            Error::Frame(e) => e.kind(),
            Error::Reassembly(e) => e.kind(),
            Error::Handshake(_) => "handshake",
            Error::Crypto(
                CryptoError::BadMac
                | CryptoError::CiphertextTooShort { .. }
                | CryptoError::InnerTooShort { .. }
                | CryptoError::InnerLengthMismatch { .. }
                | CryptoError::InnerCrcMismatch { .. },
            ) => "decrypt_failed",
            Error::Crypto(CryptoError::NoSessionKey) => "encrypted_without_key",
            Error::Crypto(CryptoError::PlaintextAfterHandshake(_)) => "plaintext_after_handshake",
            Error::Crypto(_) => "crypto",
            Error::Slot(_) => "slot",
            Error::Usage(_) => "usage",
        }
    }
}

impl CodecError {
    /// The stable name of this error (see [`Error::kind`]).
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::BadMagic { .. } => "bad_magic",
            CodecError::CrcMismatch { .. } => "crc_mismatch",
            CodecError::PacketTooLarge { .. } => "packet_too_large",
            CodecError::LengthSentinel { .. } => "length_sentinel",
            CodecError::NonZeroCrcForEmpty { .. } => "nonzero_crc_for_empty",
            CodecError::Truncated { .. } => "truncated",
            CodecError::WrongSize { .. } => "wrong_size",
            CodecError::UnknownType(_) => "unknown_type",
            _ => "codec",
        }
    }
}

impl FrameError {
    /// The stable name of this error (see [`Error::kind`]).
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::Unmasked { .. } => "unmasked_frame",
            FrameError::UnexpectedMask { .. } => "masked_frame",
            FrameError::ReservedBits { .. } => "reserved_bits",
            FrameError::ReservedOpcode(_) => "reserved_opcode",
            FrameError::FragmentedControl { .. } => "fragmented_control",
            FrameError::ControlTooLong { .. } => "control_too_long",
            FrameError::FrameTooLarge { .. } => "frame_too_large",
            FrameError::NonMinimalLength { .. } => "non_minimal_length",
            FrameError::Close(_) => "invalid_close",
            FrameError::NotUtf8(_) => "invalid_utf8",
        }
    }
}

impl ReassemblyError {
    /// The stable name of this error (see [`Error::kind`]).
    pub fn kind(&self) -> &'static str {
        match self {
            ReassemblyError::ContinuationWithoutStart { .. } => "continuation_without_start",
            ReassemblyError::DataFrameBeforeFin { .. } => "data_frame_before_fin",
            ReassemblyError::MessageTooLarge { .. } => "message_too_large",
            ReassemblyError::TooManyFragments { .. } => "too_many_fragments",
            ReassemblyError::Timeout { .. } => "reassembly_timeout",
            ReassemblyError::HeaderIncomplete { .. } => "header_incomplete",
            ReassemblyError::MessageShorterThanPacket { .. } => "message_shorter_than_packet",
            ReassemblyError::MessageLongerThanPacket { .. } => "message_longer_than_packet",
            _ => "reassembly",
        }
    }
}
