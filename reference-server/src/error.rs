//! The server's one error type and its exit codes (STYLE.md rule 11). Codes follow ascii-chat's
//! `error_codes.h` where one exists (ACIP-SPEC.md 3.12, 8: 41 = ERROR_NETWORK_BIND).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Process exit codes of the `reference-server` binary.
pub mod exit_code {
    /// Clean shutdown (SIGINT / SIGTERM / stdin closed).
    pub const OK: i32 = 0;
    /// Command-line usage error (clap's own code).
    pub const USAGE: i32 = 2;
    /// ERROR_NETWORK: an I/O error other than bind (e.g. `accept` failed fatally).
    pub const NETWORK: i32 = 40;
    /// ERROR_NETWORK_BIND: a listener could not bind (after `--bind-retries`).
    pub const NETWORK_BIND: i32 = 41;
    /// ERROR_INVALID_PARAM: a configuration value is out of range or a key file is unreadable.
    pub const INVALID_PARAM: i32 = 86;
}

/// Why a bind most likely failed, derived from the OS error and the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindCause {
    /// EADDRINUSE: another listener holds the port, or a recent socket in TIME_WAIT does and SO_REUSEADDR
    /// is off.
    InUse,
    /// EADDRINUSE on a port that an IPv6 `[::]` listener without IPV6_V6ONLY also claims for IPv4.
    DualStackConflict,
    /// EADDRNOTAVAIL: the address is not configured on this host.
    NotAvailable,
    /// EACCES: a privileged port (< 1024) without the capability.
    Permission,
    /// Anything else.
    Other,
}

impl BindCause {
    pub fn classify(addr: &SocketAddr, err: &io::Error, v6only: bool) -> BindCause {
        match err.kind() {
            io::ErrorKind::AddrInUse => {
                if addr.is_ipv6() && addr.ip().is_unspecified() && !v6only {
                    BindCause::DualStackConflict
                } else {
                    BindCause::InUse
                }
            }
            io::ErrorKind::AddrNotAvailable => BindCause::NotAvailable,
            io::ErrorKind::PermissionDenied => BindCause::Permission,
            _ => BindCause::Other,
        }
    }

    /// A sentence for the operator.
    pub fn explain(self, reuseaddr: bool) -> &'static str {
        match (self, reuseaddr) {
            (BindCause::InUse, true) => {
                "the port is in use by another listener (or, if an IPv6 [::] listener without IPV6_V6ONLY \
                 runs, a dual-stack conflict)"
            }
            (BindCause::InUse, false) => {
                "the port is in use, or held in TIME_WAIT by a recent run: SO_REUSEADDR is off \
                 (--fault no-reuseaddr)"
            }
            (BindCause::DualStackConflict, _) => {
                "dual-stack conflict: an IPv6 [::] socket without IPV6_V6ONLY also claims the IPv4 port"
            }
            (BindCause::NotAvailable, _) => "the address is not configured on this host",
            (BindCause::Permission, _) => "ports below 1024 need privileges",
            (BindCause::Other, _) => "unexpected OS error",
        }
    }
}

/// Everything that can stop the server from starting or running.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not bind. Exit code [`exit_code::NETWORK_BIND`].
    #[error("cannot bind {addr}: {source} ({why}; {attempts} attempt(s))", why = cause.explain(*reuseaddr))]
    Bind { addr: SocketAddr, source: io::Error, cause: BindCause, reuseaddr: bool, attempts: u32 },
    /// A configuration value is invalid. Exit code [`exit_code::INVALID_PARAM`].
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A key file could not be read or parsed. Exit code [`exit_code::INVALID_PARAM`].
    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    /// The READY file could not be written. Exit code [`exit_code::NETWORK`].
    #[error("cannot write ready file {path}: {source}")]
    ReadyFile { path: PathBuf, source: io::Error },
    /// Other socket error. Exit code [`exit_code::NETWORK`].
    #[error("network error: {0}")]
    Io(#[from] io::Error),
}

impl ServerError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ServerError::Bind { .. } => exit_code::NETWORK_BIND,
            ServerError::Config(_) | ServerError::KeyFile { .. } => exit_code::INVALID_PARAM,
            ServerError::ReadyFile { .. } | ServerError::Io(_) => exit_code::NETWORK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_message_names_address_error_and_cause() {
        let addr: SocketAddr = "127.0.0.1:27224".parse().unwrap();
        let source = io::Error::from(io::ErrorKind::AddrInUse);
        let cause = BindCause::classify(&addr, &source, true);
        let e = ServerError::Bind { addr, source, cause, reuseaddr: false, attempts: 1 };
        let text = e.to_string();
        assert!(text.contains("127.0.0.1:27224") && text.contains("TIME_WAIT"), "{text}");
        assert_eq!(e.exit_code(), 41);
        let v6: SocketAddr = "[::]:1".parse().unwrap();
        let err = io::Error::from(io::ErrorKind::AddrInUse);
        assert_eq!(BindCause::classify(&v6, &err, false), BindCause::DualStackConflict);
    }
}
