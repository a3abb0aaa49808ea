//! The ACIP crypto handshake and packet encryption (ACIP-SPEC.md section 4, payloads 3.1-3.3 and 3.15,
//! dialect differences section 10).
//!
//! * [`handshake`]: the sans-IO [`ServerHandshake`] and [`ClientHandshake`] state machines, TCP
//!   (client speaks first, 4.3) and WebSocket (server speaks first, 4.4).
//! * [`session`]: [`Session`], XSalsa20-Poly1305 packet encryption in the 1200 wrapper (4.5).
//! * [`secretbox`]: [`SecretBox`], the one seam to the XSalsa20-Poly1305 implementation; the
//!   [`Backend`] (pure-Rust SIMD `dryoc` by default, libsodium, RustCrypto) is chosen by cargo feature.
//! * [`messages`]: the handshake payloads (KEY_EXCHANGE_INIT/RESP, AUTH_RESPONSE, SERVER_AUTH_RESP).
//! * [`primitives`]: key derivation, Argon2id password key and HMAC proofs, all from audited crates.
//!
//! Randomness is an input, like time: every state machine draws from a `ChaCha20Rng` seeded from
//! [`HandshakeConfig::rng_seed`], so a run can be replayed. The shells pass real entropy as the seed.

pub mod handshake;
#[cfg(test)]
mod kat_tests;
pub mod messages;
pub mod primitives;
pub mod secretbox;
pub mod session;
#[cfg(test)]
mod tests;

use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::codec::{CodecError, Dialect, PacketType};

pub use handshake::{ClientHandshake, HandshakeEvent, ServerHandshake};
pub use secretbox::{Backend, SecretBox};
pub use session::{Opener, RekeyOutcome, Session};

/// The crypto mode a client asks for in PROTOCOL_VERSION's `supports_encryption` byte (ACIP-SPEC.md 4.2).
/// Bit 0x01 is ENCRYPT, bit 0x02 is AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CryptoMode {
    /// 0: no handshake at all; the client's first packet is CLIENT_CAPABILITIES.
    None,
    /// 1: key exchange and encryption (the real client's default).
    #[default]
    Encrypt,
    /// 2: authentication without encryption (unreliable in the real code, 4.2).
    Auth,
    /// 3: authentication and encryption (`--key` or `--password`).
    Full,
}

impl CryptoMode {
    /// The wire value (0..=3).
    pub const fn to_u8(self) -> u8 {
        match self {
            CryptoMode::None => 0,
            CryptoMode::Encrypt => 1,
            CryptoMode::Auth => 2,
            CryptoMode::Full => 3,
        }
    }

    /// The mode for a wire value; `None` for values above 3.
    pub const fn from_u8(v: u8) -> Option<CryptoMode> {
        match v {
            0 => Some(CryptoMode::None),
            1 => Some(CryptoMode::Encrypt),
            2 => Some(CryptoMode::Auth),
            3 => Some(CryptoMode::Full),
            _ => None,
        }
    }

    /// Whether traffic is encrypted after the handshake (bit 0x01).
    pub const fn encrypts(self) -> bool {
        self.to_u8() & 0x01 != 0
    }
}

/// Which transport the handshake runs over: it decides who speaks first (ACIP-SPEC.md 4.3 vs 4.4).
/// The one transport enum of the workspace: written `tcp` / `ws` in URLs, options and reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Transport {
    /// The client speaks first (PROTOCOL_VERSION ...).
    #[default]
    #[serde(rename = "tcp")]
    Tcp,
    /// The server speaks first (`feb`: KEY_EXCHANGE_INIT; `head`: CRYPTO_PARAMETERS + KEY_EXCHANGE_INIT).
    #[serde(rename = "ws")]
    WebSocket,
}

impl Transport {
    /// `tcp` or `ws`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::WebSocket => "ws",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Transport {
    type Err = String;

    /// `tcp`, or `ws` (also `websocket`).
    fn from_str(s: &str) -> Result<Transport, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Transport::Tcp),
            "ws" | "websocket" => Ok(Transport::WebSocket),
            _ => Err(format!("{s:?}: expected tcp or ws")),
        }
    }
}

/// Password length the real client accepts (ACIP-SPEC.md 4.1).
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=256;
/// Default per-packet wait of the TCP handshake (HEAD RECV_TIMEOUT, 4.7).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Default overall handshake limit (the 30 s socket timeout, 4.7).
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Configuration of either handshake role. Fields a role does not use are ignored by it.
#[derive(Clone)]
pub struct HandshakeConfig {
    pub dialect: Dialect,
    pub transport: Transport,
    /// Client: the mode it asks for. Server: [`CryptoMode::None`] means "expect a plaintext client"
    /// on TCP (the real `--no-encrypt --no-auth`); any other value runs the handshake the client asks for.
    pub mode: CryptoMode,
    /// Shared password, already stretched with Argon2id ([`Password::derive`]): the key of the HMAC
    /// proofs in both directions (4.1). Derived once by the caller because Argon2id costs 64 MiB.
    pub password: Option<Password>,
    /// This side's Ed25519 identity (`--key`): the server signs its ephemeral key with it; the client
    /// signs its ephemeral key and the server's challenge.
    pub identity: Option<SigningKey>,
    /// Server: client identities allowed in (`--client-keys`). Empty means no whitelist.
    pub client_whitelist: Vec<VerifyingKey>,
    /// Client: the server identity it expects (`--server-key`); a different or missing one fails.
    pub expected_server_key: Option<VerifyingKey>,
    /// Longest wait for the peer's next handshake packet on TCP (1 s). Not applied on WebSocket,
    /// where the real code has no per-read timeout.
    pub header_timeout: Duration,
    /// Longest whole handshake (30 s).
    pub total_timeout: Duration,
    /// Seed of the `ChaCha20Rng` for ephemeral keys, nonces and the nonce session id.
    pub rng_seed: u64,
}

impl HandshakeConfig {
    /// A config with the real defaults: mode ENCRYPT, no password, no identity, 1 s / 30 s timeouts.
    pub fn new(dialect: Dialect, transport: Transport, rng_seed: u64) -> Self {
        HandshakeConfig {
            dialect,
            transport,
            mode: CryptoMode::Encrypt,
            password: None,
            identity: None,
            client_whitelist: Vec::new(),
            expected_server_key: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            rng_seed,
        }
    }
}

/// A password stretched into its 32-byte Argon2id key (ACIP-SPEC.md 4.1). The password itself is not kept.
#[derive(Clone, PartialEq, Eq)]
pub struct Password {
    key: [u8; 32],
}

impl Password {
    /// Runs Argon2id (OPSLIMIT/MEMLIMIT_INTERACTIVE, the project salt) over `password`, which must be
    /// 8..=256 bytes like the real client requires. Takes 64 MiB and tens of milliseconds (optimised).
    pub fn derive(password: &str) -> Result<Password, HandshakeError> {
        if !PASSWORD_LEN.contains(&password.len()) {
            return Err(HandshakeError::Config("password must be 8..=256 bytes"));
        }
        Ok(Password { key: primitives::password_key(password) })
    }

    /// A password from an already derived key (for fuzzing and replays, which must not pay for Argon2id).
    pub fn from_derived_key(key: [u8; 32]) -> Password {
        Password { key }
    }

    /// The derived key.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl std::fmt::Debug for HandshakeConfig {
    // Hand-written so that a password or signing key never ends up in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("dialect", &self.dialect)
            .field("transport", &self.transport)
            .field("mode", &self.mode)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("identity", &self.identity.as_ref().map(|k| k.verifying_key()))
            .field("client_whitelist", &self.client_whitelist.len())
            .field("expected_server_key", &self.expected_server_key)
            .field("header_timeout", &self.header_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("rng_seed", &self.rng_seed)
            .finish()
    }
}

/// AUTH_FAILED reason bits (ACIP-SPEC.md 3.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthFailReason(pub u8);

impl AuthFailReason {
    pub const PASSWORD_REQUIRED: AuthFailReason = AuthFailReason(0x01);
    pub const PASSWORD_INCORRECT: AuthFailReason = AuthFailReason(0x02);
    pub const CLIENT_KEY_REQUIRED: AuthFailReason = AuthFailReason(0x04);
    pub const CLIENT_KEY_REJECTED: AuthFailReason = AuthFailReason(0x08);
    pub const SIGNATURE_INVALID: AuthFailReason = AuthFailReason(0x10);
}

impl std::fmt::Display for AuthFailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (0x01, "PASSWORD_REQUIRED"),
            (0x02, "PASSWORD_INCORRECT"),
            (0x04, "CLIENT_KEY_REQUIRED"),
            (0x08, "CLIENT_KEY_REJECTED"),
            (0x10, "SIGNATURE_INVALID"),
        ];
        let set: Vec<&str> = names.iter().filter(|(b, _)| self.0 & b != 0).map(|(_, n)| *n).collect();
        if set.is_empty() {
            write!(f, "0x{:02X}", self.0)
        } else {
            write!(f, "{} (0x{:02X})", set.join("|"), self.0)
        }
    }
}

/// Errors of the handshake state machines: one variant per way the peer (or the clock) can end it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A handshake payload broke its size or field rules (e.g. a truncated message).
    #[error("malformed handshake message: {0}")]
    Malformed(#[from] CodecError),
    /// A packet arrived that the current state does not expect (reordered, or from the wrong role).
    #[error("unexpected {packet_type} while {state}")]
    UnexpectedPacket { state: &'static str, packet_type: PacketType },
    /// The same handshake message arrived twice in a row.
    #[error("duplicate {packet_type} while {state}")]
    Duplicate { state: &'static str, packet_type: PacketType },
    /// The client asked for mode 0 in PROTOCOL_VERSION; the real server drops it (3.1).
    #[error("client asked for crypto mode NONE in PROTOCOL_VERSION")]
    ClientModeNone,
    /// The client asked for a mode value above 3.
    #[error("unknown crypto mode {0}")]
    UnknownMode(u8),
    /// The server did not echo the client's mode (3.1).
    #[error("server echoed crypto mode {echoed}, client sent {sent}")]
    ModeMismatch { sent: u8, echoed: u8 },
    /// CRYPTO_PARAMETERS selected something this client cannot use (3.3).
    #[error("unsupported CRYPTO_PARAMETERS: {field} = {value}")]
    UnsupportedParameters { field: &'static str, value: u32 },
    /// A public key did not decode as an Ed25519 point.
    #[error("invalid Ed25519 public key from the {0}")]
    InvalidIdentityKey(&'static str),
    /// The X25519 exchange gave an all-zero secret (low-order peer key; libsodium refuses it too).
    #[error("peer X25519 key is of low order (shared secret would be zero)")]
    LowOrderKey,
    /// The server's signature over its ephemeral key did not verify.
    #[error("server signature over its ephemeral key is invalid")]
    BadServerSignature,
    /// The server's identity is not the one the client expects (or it has none).
    #[error("server identity does not match the expected key")]
    ServerKeyMismatch,
    /// The server's SERVER_AUTH_RESP HMAC did not verify: it does not know the password / session key.
    #[error("server's authentication proof is wrong")]
    ServerProofMismatch,
    /// The server challenged for a password and the client has none.
    #[error("server requires a password and none is configured")]
    PasswordRequired,
    /// The server requires a client key and the client has none.
    #[error("server requires a client key and none is configured")]
    ClientKeyRequired,
    /// Server side: the client failed authentication; AUTH_FAILED with `reason` was queued.
    #[error("client rejected: {reason}")]
    Rejected { reason: AuthFailReason },
    /// Client side: the server sent AUTH_FAILED.
    #[error("server refused authentication: {reason}")]
    AuthFailed { reason: AuthFailReason },
    /// The client sent CRYPTO_NO_ENCRYPTION; the server answers AUTH_FAILED and drops it (section 2).
    #[error("client asked for no encryption (CRYPTO_NO_ENCRYPTION)")]
    NoEncryptionRequested,
    /// A deadline passed (`now` is an input: see `handle_timeout`).
    #[error("handshake timed out waiting for {waiting_for}")]
    Timeout { waiting_for: &'static str },
    /// The state machine already failed; it accepts nothing more.
    #[error("handshake already failed")]
    AlreadyFailed,
    /// The caller's configuration is invalid (not the peer's fault).
    #[error("handshake configuration: {0}")]
    Config(&'static str),
}

/// Errors of packet encryption and decryption (ACIP-SPEC.md 4.5 and 1.4b): one variant per check.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Inner header + payload over CRYPTO_MAX_PLAINTEXT_SIZE; refused before any work is done.
    #[error("plaintext of {size} bytes is over the encryption limit of {limit} bytes")]
    PlaintextTooLarge { size: usize, limit: usize },
    /// `decrypt` was given something other than an ENCRYPTED (1200) packet.
    #[error("{0} is not an ENCRYPTED packet")]
    NotEncrypted(PacketType),
    /// `encrypt` was given a handshake-class packet, which always travels plain, or a 1200 packet.
    #[error("{0} is never encrypted")]
    MustStayPlain(PacketType),
    /// Ciphertext shorter than nonce + MAC (40 bytes).
    #[error("ciphertext of {len} bytes is shorter than nonce + MAC (40)")]
    CiphertextTooShort { len: usize },
    /// Poly1305 verification failed (tampered, or another key).
    #[error("MAC verification failed (wrong key or tampered ciphertext)")]
    BadMac,
    /// The decrypted plaintext is shorter than a packet header.
    #[error("decrypted plaintext of {len} bytes is shorter than a header (22)")]
    InnerTooShort { len: usize },
    /// The inner header's length field disagrees with the plaintext size.
    #[error("inner length field {declared} != plaintext - 22 = {actual}")]
    InnerLengthMismatch { declared: u32, actual: usize },
    /// The inner header's CRC-32C does not match the inner payload.
    #[error("inner {packet_type}: CRC-32C 0x{expected:08X} in header, payload gives 0x{actual:08X}")]
    InnerCrcMismatch { packet_type: PacketType, expected: u32, actual: u32 },
    /// The 8-byte nonce counter would wrap (2^64 packets): the session must end.
    #[error("nonce counter exhausted")]
    CounterExhausted,
    /// A handshake-class packet arrived after the handshake that this session does not handle.
    #[error("unexpected {0} after the handshake")]
    UnexpectedHandshakePacket(PacketType),
    /// An ENCRYPTED packet on a connection that has no traffic key (a plaintext handshake).
    #[error("ENCRYPTED packet but no session key")]
    NoSessionKey,
    /// A plaintext application packet after an encrypted TCP handshake (the real server's rule, 4.5).
    #[error("plaintext {0} after an encrypted handshake")]
    PlaintextAfterHandshake(PacketType),
    /// A connection was asked to seal a packet after its shell took the sealing half of the key
    /// ([`crate::conn::Conn::take_sealer`]): the shell must seal it itself.
    #[error("{0} must be sealed by the shell that took the session's sealing half")]
    SealerMoved(PacketType),
}
