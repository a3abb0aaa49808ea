//! The ACIP crypto handshake and packet encryption (ACIP-SPEC.md section 4). (Being written: see issue 3.)

/// Errors of the handshake state machines.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {}

/// Errors of packet encryption and decryption.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {}
