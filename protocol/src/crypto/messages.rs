//! Handshake payloads of ACIP-SPEC.md 4.3 (steps 5, 6, 8, 9): KEY_EXCHANGE_INIT, KEY_EXCHANGE_RESP,
//! AUTH_RESPONSE and SERVER_AUTH_RESP. Every `decode` checks the sizes the real code checks and returns a
//! typed [`CodecError`]; every `encode` writes the exact bytes the real code writes.

use crate::codec::{CodecError, PacketType, SizeRule};

/// Most bytes of a GPG key id appended to KEY_EXCHANGE_RESP / AUTH_RESPONSE (the resp is 129..=169 B).
pub const MAX_GPG_KEY_ID: usize = 40;

fn wrong_size(packet_type: PacketType, expected: SizeRule, actual: usize) -> CodecError {
    CodecError::WrongSize { packet_type, expected, actual }
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// An Ed25519 identity and its detached signature, as carried in the authenticated messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedIdentity {
    /// Ed25519 public key (32 B).
    pub identity: [u8; 32],
    /// Ed25519 signature over the sender's ephemeral X25519 key (64 B).
    pub signature: [u8; 64],
}

/// CRYPTO_KEY_EXCHANGE_INIT (S→C): `eph_pk[32]`, or `eph_pk ‖ id_pk[32] ‖ sig(eph_pk)[64]` (128 B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyExchangeInit {
    pub ephemeral: [u8; 32],
    pub signed: Option<SignedIdentity>,
}

impl KeyExchangeInit {
    pub const SIMPLE_LEN: usize = 32;
    pub const AUTHENTICATED_LEN: usize = 128;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::AUTHENTICATED_LEN);
        b.extend_from_slice(&self.ephemeral);
        if let Some(s) = &self.signed {
            b.extend_from_slice(&s.identity);
            b.extend_from_slice(&s.signature);
        }
        b
    }

    pub fn decode(p: &[u8]) -> Result<Self, CodecError> {
        match p.len() {
            Self::SIMPLE_LEN => Ok(KeyExchangeInit { ephemeral: arr(p), signed: None }),
            Self::AUTHENTICATED_LEN => Ok(KeyExchangeInit {
                ephemeral: arr(p),
                signed: Some(SignedIdentity { identity: arr(&p[32..]), signature: arr(&p[64..]) }),
            }),
            n => Err(CodecError::Invalid {
                packet_type: PacketType::CRYPTO_KEY_EXCHANGE_INIT,
                field: "length",
                reason: format!("{n} bytes, expected 32 (simple) or 128 (authenticated)"),
            }),
        }
    }
}

/// The extension of an extended KEY_EXCHANGE_RESP: identity, signature over the client's ephemeral key,
/// GPG key id. With no client key, identity and signature are all zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespExtension {
    pub signed: SignedIdentity,
    /// 0..=40 bytes (the `gpg_len` byte is derived from it).
    pub gpg_key_id: Vec<u8>,
}

impl RespExtension {
    /// The extension a client without an identity key sends: zeros and no GPG id (129 B resp).
    pub fn anonymous() -> Self {
        RespExtension {
            signed: SignedIdentity { identity: [0; 32], signature: [0; 64] },
            gpg_key_id: Vec::new(),
        }
    }

    /// Whether a (non-zero) identity is present.
    pub fn has_identity(&self) -> bool {
        self.signed.identity != [0u8; 32]
    }
}

/// CRYPTO_KEY_EXCHANGE_RESP (C→S): `eph_pk[32]` (simple), or extended
/// `eph_pk ‖ id_pk[32] ‖ sig(eph_pk)[64] ‖ gpg_len u8 ‖ gpg_id[gpg_len]` (129..=169 B).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExchangeResp {
    pub ephemeral: [u8; 32],
    pub extension: Option<RespExtension>,
}

impl KeyExchangeResp {
    pub const SIMPLE_LEN: usize = 32;
    pub const EXTENDED_MIN: usize = 129;
    pub const EXTENDED_MAX: usize = 129 + MAX_GPG_KEY_ID;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::EXTENDED_MAX);
        b.extend_from_slice(&self.ephemeral);
        if let Some(x) = &self.extension {
            b.extend_from_slice(&x.signed.identity);
            b.extend_from_slice(&x.signed.signature);
            let gpg = &x.gpg_key_id[..x.gpg_key_id.len().min(MAX_GPG_KEY_ID)];
            b.push(gpg.len() as u8);
            b.extend_from_slice(gpg);
        }
        b
    }

    pub fn decode(p: &[u8]) -> Result<Self, CodecError> {
        let t = PacketType::CRYPTO_KEY_EXCHANGE_RESP;
        if p.len() == Self::SIMPLE_LEN {
            return Ok(KeyExchangeResp { ephemeral: arr(p), extension: None });
        }
        if !(Self::EXTENDED_MIN..=Self::EXTENDED_MAX).contains(&p.len()) {
            return Err(CodecError::Invalid {
                packet_type: t,
                field: "length",
                reason: format!("{} bytes, expected 32 (simple) or 129..=169 (extended)", p.len()),
            });
        }
        let gpg_len = p[128] as usize;
        if gpg_len > MAX_GPG_KEY_ID || p.len() != Self::EXTENDED_MIN + gpg_len {
            return Err(CodecError::Invalid {
                packet_type: t,
                field: "gpg_len",
                reason: format!("gpg_len {gpg_len} does not fit a {}-byte message", p.len()),
            });
        }
        Ok(KeyExchangeResp {
            ephemeral: arr(p),
            extension: Some(RespExtension {
                signed: SignedIdentity { identity: arr(&p[32..]), signature: arr(&p[64..]) },
                gpg_key_id: p[129..].to_vec(),
            }),
        })
    }
}

/// CRYPTO_AUTH_RESPONSE (C→S). Which layout applies depends on the challenge, so there are two decoders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResponse {
    /// `HMAC(password_key, nonce ‖ K)[32] ‖ client_nonce[32]`; the server accepts 64..=105 bytes and
    /// ignores anything after byte 64 (kept in `trailing`).
    Password { hmac: [u8; 32], client_nonce: [u8; 32], trailing: Vec<u8> },
    /// `Ed25519sig(nonce)[64] ‖ client_nonce[32] ‖ gpg_len ‖ gpg_id`; any length >= 97. `tail` is
    /// everything from byte 96 (the `gpg_len` byte and what follows).
    Key { signature: [u8; 64], client_nonce: [u8; 32], tail: Vec<u8> },
}

impl AuthResponse {
    pub const PASSWORD_MIN: usize = 64;
    pub const PASSWORD_MAX: usize = 105;
    pub const KEY_MIN: usize = 97;

    /// The password form with nothing after the client nonce (64 B, as the real client sends).
    pub fn password(hmac: [u8; 32], client_nonce: [u8; 32]) -> Self {
        AuthResponse::Password { hmac, client_nonce, trailing: Vec::new() }
    }

    /// The key form with `gpg_len = 0` (97 B).
    pub fn key(signature: [u8; 64], client_nonce: [u8; 32]) -> Self {
        AuthResponse::Key { signature, client_nonce, tail: vec![0] }
    }

    /// The client nonce the server's proof must cover.
    pub fn client_nonce(&self) -> &[u8; 32] {
        match self {
            AuthResponse::Password { client_nonce, .. } | AuthResponse::Key { client_nonce, .. } => {
                client_nonce
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::KEY_MIN);
        match self {
            AuthResponse::Password { hmac, client_nonce, trailing } => {
                b.extend_from_slice(hmac);
                b.extend_from_slice(client_nonce);
                b.extend_from_slice(trailing);
            }
            AuthResponse::Key { signature, client_nonce, tail } => {
                b.extend_from_slice(signature);
                b.extend_from_slice(client_nonce);
                b.extend_from_slice(tail);
            }
        }
        b
    }

    /// Decodes the password form (the server challenged with the password flag).
    pub fn decode_password(p: &[u8]) -> Result<Self, CodecError> {
        if !(Self::PASSWORD_MIN..=Self::PASSWORD_MAX).contains(&p.len()) {
            return Err(wrong_size(
                PacketType::CRYPTO_AUTH_RESPONSE,
                SizeRule::Between(Self::PASSWORD_MIN, Self::PASSWORD_MAX),
                p.len(),
            ));
        }
        Ok(AuthResponse::Password { hmac: arr(p), client_nonce: arr(&p[32..]), trailing: p[64..].to_vec() })
    }

    /// Decodes the key form (no password flag; the client has an identity).
    pub fn decode_key(p: &[u8]) -> Result<Self, CodecError> {
        if p.len() < Self::KEY_MIN {
            return Err(wrong_size(
                PacketType::CRYPTO_AUTH_RESPONSE,
                SizeRule::AtLeast(Self::KEY_MIN),
                p.len(),
            ));
        }
        Ok(AuthResponse::Key { signature: arr(p), client_nonce: arr(&p[64..]), tail: p[96..].to_vec() })
    }
}

/// CRYPTO_SERVER_AUTH_RESP (S→C): `HMAC(key, client_nonce ‖ K)` (32 B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerAuthResp {
    pub hmac: [u8; 32],
}

impl ServerAuthResp {
    pub const LEN: usize = 32;

    pub fn encode(&self) -> Vec<u8> {
        self.hmac.to_vec()
    }

    pub fn decode(p: &[u8]) -> Result<Self, CodecError> {
        if p.len() != Self::LEN {
            return Err(wrong_size(
                PacketType::CRYPTO_SERVER_AUTH_RESP,
                SizeRule::Exactly(Self::LEN),
                p.len(),
            ));
        }
        Ok(ServerAuthResp { hmac: arr(p) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signed() -> impl Strategy<Value = SignedIdentity> {
        (any::<[u8; 32]>(), prop::collection::vec(any::<u8>(), 64))
            .prop_map(|(identity, s)| SignedIdentity { identity, signature: arr(&s) })
    }

    proptest! {
        #[test]
        fn kex_init_round_trips(ephemeral in any::<[u8; 32]>(), signed in prop::option::of(signed())) {
            let m = KeyExchangeInit { ephemeral, signed };
            let b = m.encode();
            prop_assert!(b.len() == 32 || b.len() == 128);
            prop_assert_eq!(KeyExchangeInit::decode(&b).unwrap(), m);
        }

        #[test]
        fn kex_resp_round_trips(
            ephemeral in any::<[u8; 32]>(),
            ext in prop::option::of((signed(), prop::collection::vec(any::<u8>(), 0..=MAX_GPG_KEY_ID))),
        ) {
            let m = KeyExchangeResp {
                ephemeral,
                extension: ext.map(|(signed, gpg_key_id)| RespExtension { signed, gpg_key_id }),
            };
            prop_assert_eq!(KeyExchangeResp::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn auth_response_round_trips(
            a in any::<[u8; 32]>(), n in any::<[u8; 32]>(), s in prop::collection::vec(any::<u8>(), 64),
            trailing in prop::collection::vec(any::<u8>(), 0..=41), tail in prop::collection::vec(any::<u8>(), 1..60),
        ) {
            let p = AuthResponse::Password { hmac: a, client_nonce: n, trailing };
            prop_assert_eq!(AuthResponse::decode_password(&p.encode()).unwrap(), p);
            let k = AuthResponse::Key { signature: arr(&s), client_nonce: n, tail };
            prop_assert_eq!(AuthResponse::decode_key(&k.encode()).unwrap(), k);
        }

        #[test]
        fn server_auth_resp_round_trips(hmac in any::<[u8; 32]>()) {
            let m = ServerAuthResp { hmac };
            prop_assert_eq!(ServerAuthResp::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn decoders_never_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = KeyExchangeInit::decode(&b);
            let _ = KeyExchangeResp::decode(&b);
            let _ = AuthResponse::decode_password(&b);
            let _ = AuthResponse::decode_key(&b);
            let _ = ServerAuthResp::decode(&b);
        }
    }

    #[test]
    fn sizes_follow_the_spec() {
        let anon = KeyExchangeResp { ephemeral: [1; 32], extension: Some(RespExtension::anonymous()) };
        assert_eq!(anon.encode().len(), 129);
        assert_eq!(AuthResponse::key([0; 64], [0; 32]).encode().len(), 97);
        assert_eq!(AuthResponse::password([0; 32], [0; 32]).encode().len(), 64);
        assert!(matches!(
            KeyExchangeResp::decode(&[0; 130]),
            Err(CodecError::Invalid { field: "gpg_len", .. })
        ));
        assert!(matches!(
            KeyExchangeResp::decode(&[0; 31]),
            Err(CodecError::Invalid { field: "length", .. })
        ));
        assert!(matches!(AuthResponse::decode_password(&[0; 106]), Err(CodecError::WrongSize { .. })));
        assert!(AuthResponse::decode_key(&[0; 2000]).is_ok());
    }
}
