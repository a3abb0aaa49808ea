//! The client's one error type, and the exit codes of the `reference-client` binary (STYLE.md rule 11).
//!
//! | Exit | Meaning |
//! |-----:|---|
//! | 0 | the run finished and nothing received failed validation |
//! | 1 | the run finished but something received failed validation (see the report's `errors`) |
//! | 2 | bad command line or configuration ([`ClientError::Config`]) |
//! | 3 | could not connect ([`ClientError::Connect`]) |
//! | 4 | WebSocket upgrade refused or failed ([`ClientError::WsUpgrade`]) |
//! | 5 | ACIP crypto handshake failed ([`ClientError::Handshake`]) |
//! | 6 | the server is full (`SERVER_FULL` line or WebSocket close) ([`ClientError::ServerFull`]) |
//! | 7 | the server sent bytes that break the protocol ([`ClientError::Protocol`]) |
//! | 8 | the server closed the session early ([`ClientError::Closed`]) |
//! | 9 | socket error while reading or writing ([`ClientError::Io`]) |
//! | 10 | a wait ran out (snapshot, connect) ([`ClientError::Timeout`]) |

use std::net::SocketAddr;
use std::time::Duration;

/// Everything that can end a client session early.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The caller's configuration is unusable (not the server's fault).
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("WebSocket upgrade to {url} failed: {source}")]
    WsUpgrade { url: String, source: Box<tungstenite::Error> },
    #[error("ACIP handshake failed: {0}")]
    Handshake(#[from] acip::crypto::HandshakeError),
    /// The server refused the connection because it is full: the TCP text line or the WebSocket reason.
    #[error("server full: {0}")]
    ServerFull(String),
    /// The server broke the protocol (bad magic, CRC, decryption, a WebSocket frame error...).
    #[error("protocol error from the server: {0}")]
    Protocol(String),
    /// The server closed before the client was done. `code`/`reason` come from the WebSocket close frame,
    /// or from an ERROR_MESSAGE it sent before closing.
    #[error("server closed the session{}: {reason}", code.map(|c| format!(" with code {c}")).unwrap_or_default())]
    Closed { code: Option<u16>, reason: String },
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: &'static str, after: Duration },
}

impl ClientError {
    /// The process exit code of the binary for this error (table in the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Config(_) => 2,
            ClientError::Connect { .. } => 3,
            ClientError::WsUpgrade { .. } => 4,
            ClientError::Handshake(_) => 5,
            ClientError::ServerFull(_) => 6,
            ClientError::Protocol(_) => 7,
            ClientError::Closed { .. } => 8,
            ClientError::Io(_) => 9,
            ClientError::Timeout { .. } => 10,
        }
    }

    /// A stable short name, used as the key in [`crate::ClientReport::errors`].
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Config(_) => "config",
            ClientError::Connect { .. } => "connect",
            ClientError::WsUpgrade { .. } => "ws_upgrade",
            ClientError::Handshake(_) => "handshake",
            ClientError::ServerFull(_) => "server_full",
            ClientError::Protocol(_) => "protocol",
            ClientError::Closed { .. } => "closed",
            ClientError::Io(_) => "io",
            ClientError::Timeout { .. } => "timeout",
        }
    }

    pub(crate) fn connect(addr: SocketAddr, source: std::io::Error) -> Self {
        ClientError::Connect { addr: addr.to_string(), source }
    }
}

/// Exit code when the run finished but received data failed validation.
pub const EXIT_VALIDATION: u8 = 1;

/// `Result` with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
