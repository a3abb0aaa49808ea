//! Why a connection ended, and what the peer is told (ACIP-SPEC.md 1.4: TCP closes silently on framing
//! errors; WebSocket gets a close frame naming the violation). Also the error-kind names counted in stats.

use acip::codec::CodecError;
use acip::ws::{FrameError, ReassemblyError};

/// The reason a connection (or one of its tasks) stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum End {
    #[error("peer closed the connection")]
    Eof,
    #[error("peer closed the connection in the middle of a packet ({buffered} bytes pending)")]
    EofMidPacket { buffered: usize },
    #[error("no data for {0:?} (idle timeout)")]
    IdleTimeout(std::time::Duration),
    #[error("socket error: {0}")]
    Io(String),
    #[error("{0}")]
    Codec(CodecError),
    #[error("{0}")]
    Frame(FrameError),
    #[error("{0}")]
    Reassembly(ReassemblyError),
    #[error("WebSocket close frame from the peer (code {0})")]
    PeerClose(u16),
    #[error("connection closed by the server")]
    Closing,
    #[error("receive side finished")]
    ReaderDone,
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("protocol violation: {0}")]
    Violation(String),
    #[error("{reason}")]
    Unusable { kind: &'static str, reason: String },
    #[error("client left: {0:?}")]
    ClientLeave(String),
}

impl End {
    /// The error kind counted in stats; `None` for an orderly end.
    pub fn kind(&self) -> Option<&'static str> {
        Some(match self {
            End::Eof | End::Closing | End::ReaderDone | End::ClientLeave(_) | End::PeerClose(_) => {
                return None
            }
            End::EofMidPacket { .. } => "eof_mid_packet",
            End::IdleTimeout(_) => "idle_timeout",
            End::Io(_) => "io",
            End::Codec(e) => codec_kind(e),
            End::Frame(e) => frame_kind(e),
            End::Reassembly(e) => reassembly_kind(e),
            End::Handshake(_) => "handshake",
            End::Violation(_) => "violation",
            End::Unusable { kind, .. } => kind,
        })
    }

    /// WebSocket close code and reason for an end the reader detected.
    pub fn ws_close(&self) -> (u16, String) {
        let code = match self {
            End::Codec(e) => acip::Error::from(e.clone()).close().ws_close_code,
            End::Frame(e) => acip::Error::from(e.clone()).close().ws_close_code,
            End::Reassembly(e) => acip::Error::from(e.clone()).close().ws_close_code,
            End::IdleTimeout(_) => 1001,
            End::Eof | End::PeerClose(_) | End::Closing | End::ReaderDone | End::ClientLeave(_) => 1000,
            End::Handshake(_) => 1008,
            _ => 1002,
        };
        (code, self.to_string())
    }
}

pub(crate) fn codec_kind(e: &CodecError) -> &'static str {
    match e {
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

pub(crate) fn frame_kind(e: &FrameError) -> &'static str {
    match e {
        FrameError::Unmasked { .. } => "unmasked_frame",
        FrameError::ReservedBits { .. } => "reserved_bits",
        FrameError::ReservedOpcode(_) => "reserved_opcode",
        FrameError::FragmentedControl { .. } => "fragmented_control",
        FrameError::ControlTooLong { .. } => "control_too_long",
        FrameError::FrameTooLarge { .. } => "frame_too_large",
        FrameError::NonMinimalLength { .. } => "non_minimal_length",
        _ => "frame",
    }
}

pub(crate) fn reassembly_kind(e: &ReassemblyError) -> &'static str {
    match e {
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
