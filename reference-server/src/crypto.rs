//! Crypto material of the server, prepared once at start (ACIP-SPEC.md 4.1-4.3): the Argon2id password
//! key, the Ed25519 identity and client whitelist, and the seed of each handshake's RNG; plus the writer's
//! half of a traffic key.

use acip::crypto::{CryptoError, Password, Session};
use acip::Packet;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::path::Path;

use crate::error::ServerError;

/// Server-wide crypto inputs of every handshake.
#[derive(Clone)]
pub(crate) struct ServerCrypto {
    pub password: Option<Password>,
    pub identity: Option<SigningKey>,
    pub whitelist: Vec<VerifyingKey>,
    pub seed: u64,
}

impl ServerCrypto {
    pub fn new(config: &crate::ServerConfig) -> Result<Self, ServerError> {
        let password = match &config.password {
            Some(p) => Some(Password::derive(p).map_err(|e| ServerError::Config(e.to_string()))?),
            None => None,
        };
        let identity = config.identity_seed.map(|s| SigningKey::from_bytes(&s));
        let whitelist = config
            .client_keys
            .iter()
            .map(|k| {
                VerifyingKey::from_bytes(k)
                    .map_err(|e| ServerError::Config(format!("client key {}: {e}", hex(k))))
            })
            .collect::<Result<_, _>>()?;
        let seed = config.rng_seed.unwrap_or_else(rand::random);
        Ok(ServerCrypto { password, identity, whitelist, seed })
    }

    /// A distinct, reproducible RNG seed per connection.
    pub fn seed_for(&self, conn_id: u64) -> u64 {
        // splitmix64 of (seed + id): neighbouring ids give unrelated seeds.
        let mut z = self.seed.wrapping_add(conn_id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Lower-case hex of a key, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a 32-byte key from a file: 64 hex digits (whitespace ignored) or 32 raw bytes. A file of several
/// keys (`--client-keys`) has one hex key per line; `#` starts a comment.
pub fn read_keys(path: &Path) -> Result<Vec<[u8; 32]>, ServerError> {
    let bad = |reason: String| ServerError::KeyFile { path: path.to_path_buf(), reason };
    let data = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if data.len() == 32 && std::str::from_utf8(&data).is_err() {
        return Ok(vec![data.try_into().expect("32 bytes")]);
    }
    let text = String::from_utf8(data).map_err(|_| bad("neither 32 raw bytes nor hex text".into()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let word = line.split_whitespace().next().unwrap_or("");
        keys.push(parse_hex32(word).map_err(|e| bad(format!("line {}: {e}", n + 1)))?);
    }
    if keys.is_empty() {
        return Err(bad("no key found".into()));
    }
    Ok(keys)
}

fn parse_hex32(s: &str) -> Result<[u8; 32], String> {
    if s.len() != 64 {
        return Err(format!("expected 64 hex digits, found {} characters", s.len()));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| format!("not hex: {e}"))?;
    }
    Ok(out)
}

/// The writer's side of a traffic key: seals outgoing packets. The dispatch task's `acip` connection keeps
/// the decrypting half (`Conn::take_sealer`); one key serves both directions (ACIP-SPEC.md 4.1), and the
/// nonce counter lives here alone.
#[derive(Debug)]
pub(crate) struct OutboundCrypto {
    session: Session,
}

impl OutboundCrypto {
    pub fn new(session: Session) -> Self {
        OutboundCrypto { session }
    }

    /// The wire bytes of `packet` wrapped in ENCRYPTED.
    pub fn seal(&mut self, packet: &Packet) -> Result<Vec<u8>, CryptoError> {
        Ok(self.session.encrypt(packet)?.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_hex_and_raw() {
        let dir = std::env::temp_dir().join(format!("acip-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hex_file = dir.join("keys.txt");
        std::fs::write(&hex_file, format!("# whitelist\n{} alice\n\n{}\n", "ab".repeat(32), "01".repeat(32)))
            .unwrap();
        let keys = read_keys(&hex_file).unwrap();
        assert_eq!(keys, vec![[0xAB; 32], [0x01; 32]]);
        let raw = dir.join("key.bin");
        std::fs::write(&raw, [0xFFu8; 32]).unwrap();
        assert_eq!(read_keys(&raw).unwrap(), vec![[0xFF; 32]]);
        std::fs::write(&raw, "zz").unwrap();
        assert!(read_keys(&raw).unwrap_err().to_string().contains("64 hex digits"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
