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
    /// The end a receive-side error (`acip::conn::Receiver`) means: framing errors keep their own kinds.
    pub fn from_receive(e: acip::Error) -> End {
        match e {
            acip::Error::Codec(e) => End::Codec(e),
            acip::Error::Frame(e) => End::Frame(e),
            acip::Error::Reassembly(e) => End::Reassembly(e),
            other => End::Unusable { kind: other.kind(), reason: other.to_string() },
        }
    }

    /// What one idle-timed socket read of a reader came to: the bytes read (0 when `read` is `None`: no
    /// read happened this time round), or the end it means for the connection.
    pub fn from_read(
        read: Option<Result<std::io::Result<usize>, tokio::time::error::Elapsed>>,
        idle: std::time::Duration,
        rx: &acip::conn::Receiver,
    ) -> Result<usize, End> {
        match read {
            None => Ok(0),
            Some(Err(_)) => Err(End::IdleTimeout(idle)),
            Some(Ok(Ok(0))) if rx.is_at_boundary() => Err(End::Eof),
            Some(Ok(Ok(0))) => Err(End::EofMidPacket { buffered: rx.buffered() }),
            Some(Ok(Ok(n))) => Ok(n),
            Some(Ok(Err(e))) => Err(End::Io(e.to_string())),
        }
    }

    /// The error kind counted in stats; `None` for an orderly end.
    pub fn kind(&self) -> Option<&'static str> {
        Some(match self {
            End::Eof | End::Closing | End::ReaderDone | End::ClientLeave(_) | End::PeerClose(_) => {
                return None
            }
            End::EofMidPacket { .. } => "eof_mid_packet",
            End::IdleTimeout(_) => "idle_timeout",
            End::Io(_) => "io",
            End::Codec(e) => e.kind(),
            End::Frame(e) => e.kind(),
            End::Reassembly(e) => e.kind(),
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
