//! Key derivation and proofs (ACIP-SPEC.md 4.1), each a thin call into an audited crate: X25519
//! (`x25519-dalek`), HSalsa20 (`salsa20`), Argon2id (`argon2`), HMAC-SHA256 (`hmac` + `sha2`).
//! Nothing here implements a primitive by hand.

use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use super::HandshakeError;
use crate::codec::Dialect;

/// The project's Argon2id salt: ASCII `ascii-chat-password-salt-v1`, zero-padded to 32 bytes.
pub const PASSWORD_SALT: [u8; 32] = {
    let text = *b"ascii-chat-password-salt-v1";
    let mut salt = [0u8; 32];
    let mut i = 0;
    while i < text.len() {
        salt[i] = text[i];
        i += 1;
    }
    salt
};
/// libsodium's `crypto_pwhash_SALTBYTES`: `crypto_pwhash` reads only this many bytes from its salt
/// pointer, so of the 32-byte padded salt only `ascii-chat-passw` reaches Argon2id. Pinned by the
/// known-answer test against libsodium (`fixtures/libsodium_kat.json`).
pub const LIBSODIUM_SALTBYTES: usize = 16;
/// libsodium `crypto_pwhash_OPSLIMIT_INTERACTIVE`.
pub const ARGON2_OPSLIMIT: u32 = 2;
/// libsodium `crypto_pwhash_MEMLIMIT_INTERACTIVE`: 64 MiB, in KiB as the `argon2` crate counts.
pub const ARGON2_MEMLIMIT_KIB: u32 = 64 * 1024;

/// `crypto_scalarmult(sk, pk)`: the raw X25519 output. `None` when it is all zeros (low-order point),
/// which libsodium refuses with -1.
pub fn x25519(secret: &StaticSecret, peer: &[u8; 32]) -> Option<[u8; 32]> {
    let shared = secret.diffie_hellman(&PublicKey::from(*peer));
    if !shared.was_contributory() {
        return None;
    }
    Some(*shared.as_bytes())
}

/// `crypto_box_beforenm(pk, sk)`: HSalsa20 keyed with the X25519 output over a zero 16-byte input.
pub fn box_beforenm(secret: &StaticSecret, peer: &[u8; 32]) -> Option<[u8; 32]> {
    let shared = x25519(secret, peer)?;
    Some(hsalsa20(&shared))
}

/// HSalsa20 (20 rounds) of `key` over 16 zero bytes.
pub fn hsalsa20(key: &[u8; 32]) -> [u8; 32] {
    use salsa20::cipher::consts::U10;
    let out = salsa20::hsalsa::<U10>(key.into(), &Default::default());
    out.into()
}

/// The traffic key of a dialect (ACIP-SPEC.md 4.1, section 10 row 1): `feb` HSalsa20(X25519), `head`
/// the raw X25519 output.
pub fn session_key(
    dialect: Dialect,
    secret: &StaticSecret,
    peer: &[u8; 32],
) -> Result<[u8; 32], HandshakeError> {
    match dialect {
        Dialect::Feb => box_beforenm(secret, peer),
        Dialect::Head => x25519(secret, peer),
    }
    .ok_or(HandshakeError::LowOrderKey)
}

/// `crypto_pwhash` with Argon2id, OPSLIMIT/MEMLIMIT_INTERACTIVE and the project salt (its first
/// [`LIBSODIUM_SALTBYTES`] bytes, as libsodium reads it): the password key.
pub fn password_key(password: &str) -> [u8; 32] {
    let params = Params::new(ARGON2_MEMLIMIT_KIB, ARGON2_OPSLIMIT, 1, Some(32))
        .expect("constant Argon2 parameters are valid");
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), &PASSWORD_SALT[..LIBSODIUM_SALTBYTES], &mut out)
        .expect("password length 8..=256 and a 16-byte salt are within Argon2's limits");
    out
}

/// `crypto_auth_hmacsha256(key, a ‖ b)`.
pub fn hmac_sha256(key: &[u8; 32], a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(a);
    mac.update(b);
    mac.finalize().into_bytes().into()
}

/// Constant-time check of an HMAC proof over `a ‖ b`.
pub fn hmac_sha256_verify(key: &[u8; 32], a: &[u8], b: &[u8], tag: &[u8; 32]) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(a);
    mac.update(b);
    mac.verify_slice(tag).is_ok()
}
