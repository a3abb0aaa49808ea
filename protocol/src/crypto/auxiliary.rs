//! Minimal private parsing of PROTOCOL_VERSION (3.1), CRYPTO_CAPABILITIES (3.2), CRYPTO_PARAMETERS (3.3),
//! AUTH_CHALLENGE and AUTH_FAILED (3.15). The public, documented versions of these structs belong to
//! `codec::payloads`; this module exists only until they land there and is not exported.

use crate::codec::{CodecError, PacketType, SizeRule};

fn exact(packet_type: PacketType, payload: &[u8], n: usize) -> Result<(), CodecError> {
    if payload.len() != n {
        return Err(CodecError::WrongSize {
            packet_type,
            expected: SizeRule::Exactly(n),
            actual: payload.len(),
        });
    }
    Ok(())
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

/// PROTOCOL_VERSION (16 B): only the fields the handshake reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProtocolVersion {
    pub version: u16,
    pub revision: u16,
    pub supports_encryption: u8,
}

impl ProtocolVersion {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; Self::LEN];
        b[0..2].copy_from_slice(&self.version.to_be_bytes());
        b[2..4].copy_from_slice(&self.revision.to_be_bytes());
        b[4] = self.supports_encryption;
        b
    }

    pub fn decode(p: &[u8]) -> Result<Self, CodecError> {
        exact(PacketType::PROTOCOL_VERSION, p, Self::LEN)?;
        Ok(ProtocolVersion { version: be16(p, 0), revision: be16(p, 2), supports_encryption: p[4] })
    }
}

/// CRYPTO_CAPABILITIES (10 B) as the real client fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CryptoCapabilities {
    pub supported_kex: u16,
    pub supported_auth: u16,
    pub supported_cipher: u16,
    pub requires_verification: u8,
    pub preferred_kex: u8,
    pub preferred_auth: u8,
    pub preferred_cipher: u8,
}

impl CryptoCapabilities {
    pub const LEN: usize = 10;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::LEN);
        b.extend_from_slice(&self.supported_kex.to_be_bytes());
        b.extend_from_slice(&self.supported_auth.to_be_bytes());
        b.extend_from_slice(&self.supported_cipher.to_be_bytes());
        b.extend_from_slice(&[
            self.requires_verification,
            self.preferred_kex,
            self.preferred_auth,
            self.preferred_cipher,
        ]);
        b
    }

    pub fn decode(p: &[u8]) -> Result<Self, CodecError> {
        exact(PacketType::CRYPTO_CAPABILITIES, p, Self::LEN)?;
        Ok(CryptoCapabilities {
            supported_kex: be16(p, 0),
            supported_auth: be16(p, 2),
            supported_cipher: be16(p, 4),
            requires_verification: p[6],
            preferred_kex: p[7],
            preferred_auth: p[8],
            preferred_cipher: p[9],
        })
    }
}

/// CRYPTO_PARAMETERS (18 B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CryptoParameters {
    pub selected_kex: u8,
    pub selected_auth: u8,
    pub selected_cipher: u8,
    pub verification_enabled: u8,
    pub kex_public_key_size: u16,
    pub auth_public_key_size: u16,
    pub signature_size: u16,
    pub shared_secret_size: u16,
    pub nonce_size: u8,
    pub mac_size: u8,
    pub hmac_size: u8,
}

impl CryptoParameters {
    pub const LEN: usize = 18;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::LEN);
        b.extend_from_slice(&[
            self.selected_kex,
            self.selected_auth,
            self.selected_cipher,
            self.verification_enabled,
        ]);
        b.extend_from_slice(&self.kex_public_key_size.to_be_bytes());
        b.extend_from_slice(&self.auth_public_key_size.to_be_bytes());
        b.extend_from_slice(&self.signature_size.to_be_bytes());
        b.extend_from_slice(&self.shared_secret_size.to_be_bytes());
        b.extend_from_slice(&[self.nonce_size, self.mac_size, self.hmac_size, 0, 0, 0]);
        b
    }

    pub fn decode(p: &[u8]) -> Result<Self, CodecError> {
        exact(PacketType::CRYPTO_PARAMETERS, p, Self::LEN)?;
        Ok(CryptoParameters {
            selected_kex: p[0],
            selected_auth: p[1],
            selected_cipher: p[2],
            verification_enabled: p[3],
            kex_public_key_size: be16(p, 4),
            auth_public_key_size: be16(p, 6),
            signature_size: be16(p, 8),
            shared_secret_size: be16(p, 10),
            nonce_size: p[12],
            mac_size: p[13],
            hmac_size: p[14],
        })
    }
}

/// AUTH_CHALLENGE (33 B): `[flags][nonce 32]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthChallenge {
    pub flags: u8,
    pub nonce: [u8; 32],
}

impl AuthChallenge {
    pub const LEN: usize = 33;
    pub const PASSWORD_REQUIRED: u8 = 0x01;
    pub const CLIENT_KEY_REQUIRED: u8 = 0x02;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::LEN);
        b.push(self.flags);
        b.extend_from_slice(&self.nonce);
        b
    }

    pub fn decode(p: &[u8]) -> Result<Self, CodecError> {
        exact(PacketType::CRYPTO_AUTH_CHALLENGE, p, Self::LEN)?;
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&p[1..33]);
        Ok(AuthChallenge { flags: p[0], nonce })
    }
}

/// AUTH_FAILED (8 B): `[reason][7 x 0]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthFailed {
    pub reason: u8,
}

impl AuthFailed {
    pub const LEN: usize = 8;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; Self::LEN];
        b[0] = self.reason;
        b
    }

    pub fn decode(p: &[u8]) -> Result<Self, CodecError> {
        exact(PacketType::CRYPTO_AUTH_FAILED, p, Self::LEN)?;
        Ok(AuthFailed { reason: p[0] })
    }
}
