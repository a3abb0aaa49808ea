//! The server role (ACIP-SPEC.md 4.3 server sketch, 4.4 WebSocket opener, 3.15 AUTH_FAILED reasons).

use std::time::Instant;

use ed25519_dalek::{Signer, VerifyingKey};
use x25519_dalek::{PublicKey, StaticSecret};

use super::{verify_signature, Core, HandshakeEvent, SignatureCheck};
use crate::codec::payloads::{
    AuthChallenge, AuthFailed, CryptoCapabilities, CryptoParameters, ProtocolVersion,
};
use crate::codec::{Dialect, Packet, PacketType};
use crate::crypto::messages::{
    AuthResponse, KeyExchangeInit, KeyExchangeResp, ServerAuthResp, SignedIdentity,
};
use crate::crypto::primitives::{hmac_sha256, hmac_sha256_verify, session_key};
use crate::crypto::{AuthFailReason, CryptoMode, HandshakeConfig, HandshakeError, Session, Transport};

#[allow(clippy::large_enum_variant)] // one State per handshake; boxing would only add allocations
enum State {
    /// TCP, server mode NONE: only a plaintext client (first packet CLIENT_CAPABILITIES) is accepted.
    WaitPlaintextCaps,
    WaitProtocolVersion,
    WaitCapabilities {
        encrypt: bool,
    },
    WaitKeyExchangeResp {
        encrypt: bool,
    },
    WaitAuthResponse {
        encrypt: bool,
        key: [u8; 32],
        nonce: [u8; 32],
        client: Option<VerifyingKey>,
    },
    Done {
        key: Option<[u8; 32]>,
    },
}

impl State {
    fn waiting_for(&self) -> &'static str {
        match self {
            State::WaitPlaintextCaps => "CLIENT_CAPABILITIES",
            State::WaitProtocolVersion => "PROTOCOL_VERSION",
            State::WaitCapabilities { .. } => "CRYPTO_CAPABILITIES",
            State::WaitKeyExchangeResp { .. } => "CRYPTO_KEY_EXCHANGE_RESP",
            State::WaitAuthResponse { .. } => "CRYPTO_AUTH_RESPONSE",
            State::Done { .. } => "nothing (complete)",
        }
    }
}

/// The server side of the handshake. See the module docs for the calling contract.
pub struct ServerHandshake {
    core: Core,
    state: State,
    ephemeral: StaticSecret,
}

impl ServerHandshake {
    /// Starts a server handshake. On WebSocket the opener is queued at once (`feb`: KEY_EXCHANGE_INIT;
    /// `head`: CRYPTO_PARAMETERS then KEY_EXCHANGE_INIT, 4.4); on TCP the server waits for the client.
    pub fn new(config: HandshakeConfig, now: Instant) -> Self {
        let mut core = Core::new(config, now);
        let ephemeral = StaticSecret::random_from_rng(&mut core.rng);
        let state = match (core.config.transport, core.config.mode) {
            (Transport::Tcp, CryptoMode::None) => State::WaitPlaintextCaps,
            (Transport::Tcp, _) => State::WaitProtocolVersion,
            // The real WS server ignores `--no-encrypt` and always offers the handshake (4.4).
            (Transport::WebSocket, _) => State::WaitKeyExchangeResp { encrypt: true },
        };
        let mut s = ServerHandshake { core, state, ephemeral };
        if s.core.config.transport == Transport::WebSocket {
            if s.core.config.dialect == Dialect::Head {
                s.send_parameters(true);
            }
            s.send_key_exchange_init();
        }
        s
    }

    /// Feeds one received packet. See the module docs.
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) -> Result<(), HandshakeError> {
        if matches!(self.state, State::Done { .. }) {
            return Err(HandshakeError::UnexpectedPacket {
                state: "complete",
                packet_type: packet.packet_type,
            });
        }
        self.core.arrive(now, self.state.waiting_for())?;
        let t = packet.packet_type;
        let result = self.dispatch(packet);
        match result {
            Ok(()) => {
                self.core.last_accepted = Some(t);
                Ok(())
            }
            Err(e) => {
                self.core.failed = true;
                Err(e)
            }
        }
    }

    fn dispatch(&mut self, packet: Packet) -> Result<(), HandshakeError> {
        let t = packet.packet_type;
        let p = &packet.payload[..];
        match (&self.state, t) {
            (State::WaitPlaintextCaps | State::WaitProtocolVersion, PacketType::CLIENT_CAPABILITIES) => {
                // Any server accepts a client whose first TCP packet is CLIENT_CAPABILITIES (4.6).
                self.finish_plaintext(packet);
                Ok(())
            }
            (State::WaitProtocolVersion, PacketType::PROTOCOL_VERSION) => {
                let pv = ProtocolVersion::decode(p)?;
                let mode = match CryptoMode::from_u8(pv.supports_encryption) {
                    Some(CryptoMode::None) => return Err(HandshakeError::ClientModeNone),
                    Some(m) => m,
                    None => return Err(HandshakeError::UnknownMode(pv.supports_encryption)),
                };
                let echo = ProtocolVersion::new(mode.to_u8());
                self.core.send(PacketType::PROTOCOL_VERSION, echo.encode());
                self.state = State::WaitCapabilities { encrypt: mode.encrypts() };
                Ok(())
            }
            (
                State::WaitProtocolVersion | State::WaitCapabilities { .. },
                PacketType::CRYPTO_NO_ENCRYPTION,
            ) => {
                // The real server answers AUTH_FAILED and drops the client (section 2); no reason bit fits.
                self.send_auth_failed(AuthFailReason(0));
                Err(HandshakeError::NoEncryptionRequested)
            }
            (&State::WaitCapabilities { encrypt }, PacketType::CRYPTO_CAPABILITIES) => {
                // The real server only logs the capabilities; the size must be exact (3.2).
                CryptoCapabilities::decode(p)?;
                self.send_parameters(encrypt);
                self.send_key_exchange_init();
                self.state = State::WaitKeyExchangeResp { encrypt };
                Ok(())
            }
            (State::WaitKeyExchangeResp { .. }, PacketType::CRYPTO_CLIENT_HELLO)
                if self.core.last_accepted != Some(PacketType::CRYPTO_CLIENT_HELLO) =>
            {
                // Optional: the server key the client expects. Checked by the client on KEY_EXCHANGE_INIT.
                if p.len() != 32 {
                    return Err(crate::codec::CodecError::WrongSize {
                        packet_type: t,
                        expected: crate::codec::SizeRule::Exactly(32),
                        actual: p.len(),
                    }
                    .into());
                }
                Ok(())
            }
            (&State::WaitKeyExchangeResp { encrypt }, PacketType::CRYPTO_KEY_EXCHANGE_RESP) => {
                self.handle_key_exchange_resp(p, encrypt)
            }
            (State::WaitKeyExchangeResp { .. }, _)
                if self.core.config.transport == Transport::WebSocket && !t.is_handshake() =>
            {
                // A WS peer may ignore 1101/1102 and talk plaintext (4.4): the real server lets it.
                self.finish_plaintext(packet);
                Ok(())
            }
            (&State::WaitAuthResponse { encrypt, key, nonce, client }, PacketType::CRYPTO_AUTH_RESPONSE) => {
                self.handle_auth_response(p, encrypt, key, nonce, client)
            }
            _ => {
                let state = self.state.waiting_for();
                Err(self.core.unexpected(state, t))
            }
        }
    }

    fn finish_plaintext(&mut self, first_packet: Packet) {
        self.state = State::Done { key: None };
        self.core.events.push_back(HandshakeEvent::PlaintextClient { first_packet });
    }

    fn send_parameters(&mut self, encrypt: bool) {
        let config = &self.core.config;
        let params =
            CryptoParameters::new(config.identity.is_some(), encrypt, !config.client_whitelist.is_empty());
        self.core.send(PacketType::CRYPTO_PARAMETERS, params.encode());
    }

    fn send_key_exchange_init(&mut self) {
        let ephemeral = PublicKey::from(&self.ephemeral).to_bytes();
        let signed = self.core.config.identity.as_ref().map(|id| SignedIdentity {
            identity: id.verifying_key().to_bytes(),
            signature: id.sign(&ephemeral).to_bytes(),
        });
        self.core.send(PacketType::CRYPTO_KEY_EXCHANGE_INIT, KeyExchangeInit { ephemeral, signed }.encode());
    }

    fn send_auth_failed(&mut self, reason: AuthFailReason) {
        self.core.send(PacketType::CRYPTO_AUTH_FAILED, AuthFailed::new(reason.0).encode());
        self.core.events.push_back(HandshakeEvent::AuthFailed { reason });
    }

    /// Queues AUTH_FAILED and returns the error that ends the handshake.
    fn reject(&mut self, reason: AuthFailReason) -> HandshakeError {
        self.send_auth_failed(reason);
        HandshakeError::Rejected { reason }
    }

    fn handle_key_exchange_resp(&mut self, p: &[u8], encrypt: bool) -> Result<(), HandshakeError> {
        let resp = KeyExchangeResp::decode(p)?;
        let mut client = None;
        if let Some(ext) = resp.extension.as_ref().filter(|x| x.has_identity()) {
            match verify_signature(&ext.signed.identity, &resp.ephemeral, &ext.signed.signature) {
                Ok(vk) => client = Some(vk),
                Err(SignatureCheck::BadKey) => return Err(HandshakeError::InvalidIdentityKey("client")),
                Err(SignatureCheck::BadSignature) => {
                    return Err(self.reject(AuthFailReason::SIGNATURE_INVALID))
                }
            }
        }
        let key = session_key(self.core.config.dialect, &self.ephemeral, &resp.ephemeral)?;
        let whitelist = &self.core.config.client_whitelist;
        if !whitelist.is_empty() {
            // The identity arrives here, so a missing or unlisted one can be refused before any challenge.
            match client {
                None => return Err(self.reject(AuthFailReason::CLIENT_KEY_REQUIRED)),
                Some(vk) if !whitelist.contains(&vk) => {
                    return Err(self.reject(AuthFailReason::CLIENT_KEY_REJECTED))
                }
                Some(_) => {}
            }
        }
        let password = self.core.config.password.is_some();
        if client.is_none() && !password && whitelist.is_empty() {
            self.core.send(PacketType::CRYPTO_HANDSHAKE_COMPLETE, Vec::new());
            self.complete(encrypt.then_some(key), None);
            return Ok(());
        }
        let flags = if password { AuthChallenge::PASSWORD_REQUIRED } else { 0 }
            | if whitelist.is_empty() { 0 } else { AuthChallenge::CLIENT_KEY_REQUIRED };
        let nonce = self.core.random32();
        self.core.send(PacketType::CRYPTO_AUTH_CHALLENGE, AuthChallenge { flags, nonce }.encode());
        self.state = State::WaitAuthResponse { encrypt, key, nonce, client };
        Ok(())
    }

    fn handle_auth_response(
        &mut self,
        p: &[u8],
        encrypt: bool,
        key: [u8; 32],
        nonce: [u8; 32],
        client: Option<VerifyingKey>,
    ) -> Result<(), HandshakeError> {
        let password = self.core.config.password.as_ref().map(|pw| *pw.key());
        // The layout depends on the challenge: password form if a password is set, else the key form
        // (a challenge without a password was sent because the client has an identity).
        let resp = match password {
            Some(_) => AuthResponse::decode_password(p)?,
            None => AuthResponse::decode_key(p)?,
        };
        let proof_key = match (&resp, password, client) {
            (AuthResponse::Password { hmac, .. }, Some(pw), _) => {
                if !hmac_sha256_verify(&pw, &nonce, &key, hmac) {
                    return Err(self.reject(AuthFailReason::PASSWORD_INCORRECT));
                }
                pw
            }
            (AuthResponse::Key { signature, .. }, None, Some(vk)) => {
                let sig = ed25519_dalek::Signature::from_bytes(signature);
                if vk.verify_strict(&nonce, &sig).is_err() {
                    return Err(self.reject(AuthFailReason::SIGNATURE_INVALID));
                }
                key
            }
            _ => return Err(self.reject(AuthFailReason::CLIENT_KEY_REQUIRED)),
        };
        let hmac = hmac_sha256(&proof_key, resp.client_nonce(), &key);
        self.core.send(PacketType::CRYPTO_SERVER_AUTH_RESP, ServerAuthResp { hmac }.encode());
        self.complete(encrypt.then_some(key), client);
        Ok(())
    }

    fn complete(&mut self, key: Option<[u8; 32]>, peer_identity: Option<VerifyingKey>) {
        self.state = State::Done { key };
        self.core.events.push_back(HandshakeEvent::Completed { encrypted: key.is_some(), peer_identity });
    }

    /// The next packet to send, in order.
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        self.core.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<HandshakeEvent> {
        self.core.events.pop_front()
    }

    /// When [`ServerHandshake::handle_timeout`] must be called; `None` once complete or failed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.core.failed && !self.is_complete()).then(|| self.core.deadline())
    }

    /// Fails with [`HandshakeError::Timeout`] once a deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if self.is_complete() {
            return Ok(());
        }
        self.core.timeout(now, self.state.waiting_for())
    }

    /// Whether the handshake finished (encrypted, or a plaintext client).
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    /// Whether the handshake failed (the connection should be closed after sending what is queued).
    pub fn is_failed(&self) -> bool {
        self.core.failed
    }

    /// The traffic session, once complete and only if traffic is encrypted.
    pub fn into_session(self) -> Option<Session> {
        match self.state {
            State::Done { key: Some(key) } => {
                Some(Session::new(self.core.config.dialect, key, self.core.session_id))
            }
            _ => None,
        }
    }

    /// The configuration this handshake runs with.
    pub fn config(&self) -> &HandshakeConfig {
        &self.core.config
    }
}
