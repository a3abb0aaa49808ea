//! Handshake payloads with fixed layouts: PROTOCOL_VERSION (ACIP-SPEC.md 3.1), CRYPTO_CAPABILITIES (3.2),
//! CRYPTO_PARAMETERS (3.3), CRYPTO_AUTH_CHALLENGE and CRYPTO_AUTH_FAILED (3.15).

use bytes::{Buf, BufMut};

use super::{array, fixed, payload_boilerplate};
use crate::codec::{CodecError, Packet, PacketType};

/// PROTOCOL_VERSION (16 B, 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolVersion {
    /// 1 on the wire (the handshake hard-codes it, whatever `PROTOCOL_VERSION_MAJOR` says).
    pub protocol_version: u16,
    pub protocol_revision: u16,
    /// Crypto-mode bits ([`ProtocolVersion::MODE_ENCRYPT`], [`ProtocolVersion::MODE_AUTH`]); the server
    /// echoes the client's value and rejects 0.
    pub supports_encryption: u8,
    pub compression_algorithms: u8,
    pub compression_threshold: u8,
    pub feature_flags: u16,
    pub reserved: [u8; 7],
}

impl ProtocolVersion {
    pub const LEN: usize = 16;
    pub const MODE_NONE: u8 = 0;
    pub const MODE_ENCRYPT: u8 = 0x01;
    pub const MODE_AUTH: u8 = 0x02;
    pub const MODE_FULL: u8 = 0x03;

    /// What the C client and server send: version 1.0, the given crypto mode, everything else 0.
    pub fn new(supports_encryption: u8) -> Self {
        ProtocolVersion {
            protocol_version: 1,
            protocol_revision: 0,
            supports_encryption,
            compression_algorithms: 0,
            compression_threshold: 0,
            feature_flags: 0,
            reserved: [0; 7],
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u16(self.protocol_version);
        out.put_u16(self.protocol_revision);
        out.put_u8(self.supports_encryption);
        out.put_u8(self.compression_algorithms);
        out.put_u8(self.compression_threshold);
        out.put_u16(self.feature_flags);
        out.put_slice(&self.reserved);
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let mut r = fixed(Self::PACKET_TYPE, payload, Self::LEN)?;
        Ok(ProtocolVersion {
            protocol_version: r.get_u16(),
            protocol_revision: r.get_u16(),
            supports_encryption: r.get_u8(),
            compression_algorithms: r.get_u8(),
            compression_threshold: r.get_u8(),
            feature_flags: r.get_u16(),
            reserved: array(&mut r),
        })
    }
}
payload_boilerplate!(ProtocolVersion, PacketType::PROTOCOL_VERSION);

/// CRYPTO_CAPABILITIES (10 B, 3.2), client to server; the server only logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CryptoCapabilities {
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

    /// What the C client sends for a crypto mode (bits of [`ProtocolVersion::supports_encryption`]).
    pub fn for_mode(mode: u8) -> Self {
        CryptoCapabilities {
            supported_kex: 0x0001,
            supported_auth: 0x0001,
            supported_cipher: 0x0001,
            requires_verification: 0,
            preferred_kex: 1,
            preferred_auth: u8::from(mode & ProtocolVersion::MODE_AUTH != 0),
            preferred_cipher: u8::from(mode & ProtocolVersion::MODE_ENCRYPT != 0),
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u16(self.supported_kex);
        out.put_u16(self.supported_auth);
        out.put_u16(self.supported_cipher);
        out.put_slice(&[
            self.requires_verification,
            self.preferred_kex,
            self.preferred_auth,
            self.preferred_cipher,
        ]);
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let mut r = fixed(Self::PACKET_TYPE, payload, Self::LEN)?;
        Ok(CryptoCapabilities {
            supported_kex: r.get_u16(),
            supported_auth: r.get_u16(),
            supported_cipher: r.get_u16(),
            requires_verification: r.get_u8(),
            preferred_kex: r.get_u8(),
            preferred_auth: r.get_u8(),
            preferred_cipher: r.get_u8(),
        })
    }
}
payload_boilerplate!(CryptoCapabilities, PacketType::CRYPTO_CAPABILITIES);

/// CRYPTO_PARAMETERS (18 B, 3.3), server to client. The sizes tell the client how to parse the later
/// handshake packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CryptoParameters {
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
    pub reserved: [u8; 3],
}

impl CryptoParameters {
    pub const LEN: usize = 18;

    /// What the C server sends: X25519, with or without an Ed25519 identity, with or without a cipher.
    pub fn new(with_identity: bool, with_cipher: bool, verification_enabled: bool) -> Self {
        CryptoParameters {
            selected_kex: 1,
            selected_auth: u8::from(with_identity),
            selected_cipher: u8::from(with_cipher),
            verification_enabled: u8::from(verification_enabled),
            kex_public_key_size: 32,
            auth_public_key_size: if with_identity { 32 } else { 0 },
            signature_size: if with_identity { 64 } else { 0 },
            shared_secret_size: 32,
            nonce_size: 24,
            mac_size: 16,
            hmac_size: 32,
            reserved: [0; 3],
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_slice(&[
            self.selected_kex,
            self.selected_auth,
            self.selected_cipher,
            self.verification_enabled,
        ]);
        out.put_u16(self.kex_public_key_size);
        out.put_u16(self.auth_public_key_size);
        out.put_u16(self.signature_size);
        out.put_u16(self.shared_secret_size);
        out.put_slice(&[self.nonce_size, self.mac_size, self.hmac_size]);
        out.put_slice(&self.reserved);
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let mut r = fixed(Self::PACKET_TYPE, payload, Self::LEN)?;
        Ok(CryptoParameters {
            selected_kex: r.get_u8(),
            selected_auth: r.get_u8(),
            selected_cipher: r.get_u8(),
            verification_enabled: r.get_u8(),
            kex_public_key_size: r.get_u16(),
            auth_public_key_size: r.get_u16(),
            signature_size: r.get_u16(),
            shared_secret_size: r.get_u16(),
            nonce_size: r.get_u8(),
            mac_size: r.get_u8(),
            hmac_size: r.get_u8(),
            reserved: array(&mut r),
        })
    }
}
payload_boilerplate!(CryptoParameters, PacketType::CRYPTO_PARAMETERS);

/// CRYPTO_AUTH_CHALLENGE (33 B, 3.15): `[flags u8][nonce 32]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthChallenge {
    pub flags: u8,
    pub nonce: [u8; 32],
}

impl AuthChallenge {
    pub const LEN: usize = 33;
    pub const PASSWORD_REQUIRED: u8 = 0x01;
    pub const CLIENT_KEY_REQUIRED: u8 = 0x02;

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(self.flags);
        out.put_slice(&self.nonce);
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let mut r = fixed(Self::PACKET_TYPE, payload, Self::LEN)?;
        Ok(AuthChallenge { flags: r.get_u8(), nonce: array(&mut r) })
    }
}
payload_boilerplate!(AuthChallenge, PacketType::CRYPTO_AUTH_CHALLENGE);

/// CRYPTO_AUTH_FAILED (8 B, 3.15): `[reason u8][7 reserved]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthFailed {
    pub reason: u8,
    pub reserved: [u8; 7],
}

impl AuthFailed {
    pub const LEN: usize = 8;
    pub const PASSWORD_REQUIRED: u8 = 0x01;
    pub const PASSWORD_INCORRECT: u8 = 0x02;
    pub const CLIENT_KEY_REQUIRED: u8 = 0x04;
    pub const CLIENT_KEY_REJECTED: u8 = 0x08;
    pub const SIGNATURE_INVALID: u8 = 0x10;

    pub fn new(reason: u8) -> Self {
        AuthFailed { reason, reserved: [0; 7] }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(self.reason);
        out.put_slice(&self.reserved);
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let mut r = fixed(Self::PACKET_TYPE, payload, Self::LEN)?;
        Ok(AuthFailed { reason: r.get_u8(), reserved: array(&mut r) })
    }
}
payload_boilerplate!(AuthFailed, PacketType::CRYPTO_AUTH_FAILED);
