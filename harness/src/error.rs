//! The harness's one error type. Each variant maps to a documented exit code (see README, "Exit codes").

use std::process::ExitCode;

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line arguments or input files (exit 2).
    #[error("{0}")]
    Usage(String),
    /// An input file could not be read or parsed (exit 3).
    #[error("{path}: {reason}")]
    Input { path: String, reason: String },
    /// An I/O error, with what was being done (exit 4).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A protocol error from the `acip` core (exit 5).
    #[error(transparent)]
    Acip(#[from] acip::Error),
    /// The run completed but its verdict is a failure (exit 1): lost frames, a regression, a failed scenario.
    #[error("{0}")]
    Verdict(String),
    /// Nothing accepts connections at the target (exit 6): no case was run.
    #[error("target unreachable: nothing accepts connections at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    /// A soak whose load generator fell behind its schedule (exit 7): its latencies measure the harness,
    /// not the server (`--allow-behind` accepts such a run).
    #[error("{0}")]
    Behind(String),
}

/// Exit code of [`Error::Unreachable`].
pub const EXIT_UNREACHABLE: u8 = 6;
/// Exit code of [`Error::Behind`].
pub const EXIT_BEHIND: u8 = 7;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Verdict(_) => 1,
            Error::Usage(_) => 2,
            Error::Input { .. } => 3,
            Error::Io { .. } => 4,
            Error::Acip(_) => 5,
            Error::Unreachable { .. } => EXIT_UNREACHABLE,
            Error::Behind(_) => EXIT_BEHIND,
        })
    }
}
