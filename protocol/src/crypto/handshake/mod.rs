//! The handshake state machines (ACIP-SPEC.md 4.3 TCP, 4.4 WebSocket), sans-IO.
//!
//! Calling contract, the same for [`ServerHandshake`] and [`ClientHandshake`]:
//!
//! 1. `new(config, now)`: a server on WebSocket and a client on TCP queue their opening packets at once.
//! 2. Feed every packet received (plain, already CRC-checked by the codec) to `handle_packet(packet, now)`.
//! 3. After each call, drain `poll_transmit()` (send in order) and then `poll_event()`.
//! 4. Wake up at `poll_timeout()` and call `handle_timeout(now)`; `None` means no deadline (done or failed).
//! 5. Once `is_complete()`, take the traffic key with `into_session()`; `None` means plaintext.
//!
//! An `Err` from `handle_packet` or `handle_timeout` is final: packets queued before it (an AUTH_FAILED)
//! should still be sent, then the connection closed. Every later call returns
//! [`HandshakeError::AlreadyFailed`].
//!
//! Deviation from the real server, on purpose: a server with an identity key does not wait for the optional
//! CRYPTO_CLIENT_HELLO (which the real one waits for and then rejects by type, 4.3 step 4b); it sends
//! KEY_EXCHANGE_INIT at once and accepts and ignores a CLIENT_HELLO that arrives before the response.

mod client;
mod server;

use std::collections::VecDeque;
use std::time::Instant;

use ed25519_dalek::VerifyingKey;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

pub use client::ClientHandshake;
pub use server::ServerHandshake;

use super::{AuthFailReason, HandshakeConfig, HandshakeError, Transport};
use crate::codec::{Packet, PacketType};

/// Something the caller should know about, from `poll_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeEvent {
    /// The handshake finished. `encrypted`: whether traffic is now wrapped in ENCRYPTED packets
    /// (`into_session` returns `Some`). `peer_identity`: the peer's proven Ed25519 key, if it had one.
    Completed { encrypted: bool, peer_identity: Option<VerifyingKey> },
    /// Server: the client skipped the handshake; `first_packet` (CLIENT_CAPABILITIES on TCP, any
    /// non-handshake packet on WebSocket) belongs to the plaintext session and must be processed as such.
    PlaintextClient { first_packet: Packet },
    /// WebSocket client: a non-handshake packet the server sent in plaintext before the handshake ended
    /// (the real server starts its send threads right after KEY_EXCHANGE_INIT, 4.4). Deliver it as usual.
    EarlyPacket(Packet),
    /// AUTH_FAILED was queued (server) or received (client).
    AuthFailed { reason: AuthFailReason },
}

/// State shared by both roles: clock, RNG, queues, duplicate detection.
struct Core {
    config: HandshakeConfig,
    rng: ChaCha20Rng,
    start: Instant,
    /// When the peer last sent a packet (or the handshake started): the per-packet wait runs from here.
    last_activity: Instant,
    outbox: VecDeque<Packet>,
    events: VecDeque<HandshakeEvent>,
    /// The last handshake packet type accepted, to tell a duplicate from a reordered message.
    last_accepted: Option<PacketType>,
    failed: bool,
    /// 16-byte nonce prefix for the [`crate::crypto::Session`] this side will send with.
    session_id: [u8; 16],
}

impl Core {
    fn new(config: HandshakeConfig, now: Instant) -> Core {
        let mut rng = ChaCha20Rng::seed_from_u64(config.rng_seed);
        let mut session_id = [0u8; 16];
        rng.fill_bytes(&mut session_id);
        Core {
            config,
            rng,
            start: now,
            last_activity: now,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            last_accepted: None,
            failed: false,
            session_id,
        }
    }

    fn random32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.rng.fill_bytes(&mut b);
        b
    }

    fn send(&mut self, packet_type: PacketType, payload: Vec<u8>) {
        self.outbox.push_back(Packet::new(packet_type, payload));
    }

    /// The next deadline while the handshake is under way: the overall limit, and on TCP also the
    /// per-packet wait.
    fn deadline(&self) -> Instant {
        let total = self.start + self.config.total_timeout;
        match self.config.transport {
            Transport::Tcp => total.min(self.last_activity + self.config.header_timeout),
            Transport::WebSocket => total,
        }
    }

    /// Checks a packet's arrival time and records it. `Err` when a deadline had already passed.
    fn arrive(&mut self, now: Instant, waiting_for: &'static str) -> Result<(), HandshakeError> {
        if self.failed {
            return Err(HandshakeError::AlreadyFailed);
        }
        if now >= self.deadline() {
            return Err(self.fail(HandshakeError::Timeout { waiting_for }));
        }
        self.last_activity = now;
        Ok(())
    }

    fn fail(&mut self, e: HandshakeError) -> HandshakeError {
        self.failed = true;
        e
    }

    /// A duplicate if `t` is the handshake message accepted last, otherwise out of order.
    fn unexpected(&mut self, state: &'static str, t: PacketType) -> HandshakeError {
        let e = if self.last_accepted == Some(t) {
            HandshakeError::Duplicate { state, packet_type: t }
        } else {
            HandshakeError::UnexpectedPacket { state, packet_type: t }
        };
        self.fail(e)
    }

    fn timeout(&mut self, now: Instant, waiting_for: &'static str) -> Result<(), HandshakeError> {
        if self.failed {
            return Err(HandshakeError::AlreadyFailed);
        }
        if now >= self.deadline() {
            return Err(self.fail(HandshakeError::Timeout { waiting_for }));
        }
        Ok(())
    }
}

/// Verifies an Ed25519 signature over `msg` by the 32-byte key `key` (`Err` names the bad part).
fn verify_signature(
    key: &[u8; 32],
    msg: &[u8],
    signature: &[u8; 64],
) -> Result<VerifyingKey, SignatureCheck> {
    let vk = VerifyingKey::from_bytes(key).map_err(|_| SignatureCheck::BadKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    vk.verify_strict(msg, &sig).map_err(|_| SignatureCheck::BadSignature)?;
    Ok(vk)
}

enum SignatureCheck {
    BadKey,
    BadSignature,
}
