//! WebSocket message layer (RFC 6455; ACIP-SPEC.md 6.2). (Being written: see issue 2.)

/// Errors in RFC 6455 frames.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {}

/// Errors while reassembling a message from fragments.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("message of {size} bytes is over the limit of {limit}")]
    MessageTooLarge { size: usize, limit: usize },
}
