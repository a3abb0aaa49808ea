//! The client role (ACIP-SPEC.md 4.3 client steps, 4.4 WebSocket, 3.1-3.3 checks).

use std::time::Instant;

use ed25519_dalek::{Signer, VerifyingKey};
use x25519_dalek::{PublicKey, StaticSecret};

use super::{verify_signature, Core, HandshakeEvent, SignatureCheck};
use crate::codec::payloads::{
    AuthChallenge, AuthFailed, CryptoCapabilities, CryptoParameters, ProtocolVersion,
};
use crate::codec::{Dialect, Packet, PacketType, SizeRule};
use crate::crypto::messages::{
    AuthResponse, KeyExchangeInit, KeyExchangeResp, RespExtension, SignedIdentity,
};
use crate::crypto::primitives::{hmac_sha256, hmac_sha256_verify, session_key};
use crate::crypto::{AuthFailReason, CryptoMode, HandshakeConfig, HandshakeError, Session, Transport};

/// What CRYPTO_PARAMETERS told the client (or the `feb` WebSocket defaults when none came).
#[derive(Clone, Copy)]
struct Selected {
    auth: bool,
    verification: bool,
}

#[allow(clippy::large_enum_variant)] // one State per handshake; boxing would only add allocations
enum State {
    WaitProtocolVersion,
    WaitParameters,
    WaitKeyExchangeInit {
        selected: Option<Selected>,
    },
    WaitAuthOrComplete {
        key: [u8; 32],
        server: Option<VerifyingKey>,
    },
    WaitServerAuth {
        key: [u8; 32],
        server: Option<VerifyingKey>,
        client_nonce: [u8; 32],
        proof_key: [u8; 32],
    },
    Done {
        key: Option<[u8; 32]>,
    },
}

impl State {
    fn waiting_for(&self) -> &'static str {
        match self {
            State::WaitProtocolVersion => "PROTOCOL_VERSION",
            State::WaitParameters => "CRYPTO_PARAMETERS",
            State::WaitKeyExchangeInit { .. } => "CRYPTO_KEY_EXCHANGE_INIT",
            State::WaitAuthOrComplete { .. } => "CRYPTO_AUTH_CHALLENGE or CRYPTO_HANDSHAKE_COMPLETE",
            State::WaitServerAuth { .. } => "CRYPTO_SERVER_AUTH_RESP",
            State::Done { .. } => "nothing (complete)",
        }
    }
}

/// The client side of the handshake. See the module docs for the calling contract.
pub struct ClientHandshake {
    core: Core,
    state: State,
    ephemeral: StaticSecret,
    /// Whether traffic is encrypted afterwards: the mode's ENCRYPT bit (always on WebSocket).
    encrypt: bool,
}

impl ClientHandshake {
    /// Starts a client handshake. Mode NONE completes at once as plaintext (no handshake is sent, 4.2).
    /// On TCP, PROTOCOL_VERSION is queued at once; on WebSocket the client waits for the server.
    pub fn new(config: HandshakeConfig, now: Instant) -> Self {
        let mut core = Core::new(config, now);
        let ephemeral = StaticSecret::random_from_rng(&mut core.rng);
        let mode = core.config.mode;
        let (state, encrypt) = match (core.config.transport, mode) {
            (_, CryptoMode::None) => (State::Done { key: None }, false),
            (Transport::Tcp, _) => (State::WaitProtocolVersion, mode.encrypts()),
            // The `feb` WS server sends no CRYPTO_PARAMETERS; `head` sends them first (4.4).
            (Transport::WebSocket, _) => (State::WaitKeyExchangeInit { selected: None }, true),
        };
        let mut c = ClientHandshake { core, state, ephemeral, encrypt };
        match (c.core.config.transport, mode) {
            (_, CryptoMode::None) => {
                c.core.events.push_back(HandshakeEvent::Completed { encrypted: false, peer_identity: None })
            }
            (Transport::Tcp, _) => {
                let pv = ProtocolVersion::new(mode.to_u8());
                c.core.send(PacketType::PROTOCOL_VERSION, pv.encode());
            }
            (Transport::WebSocket, _) => {}
        }
        c
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
        match self.dispatch(packet) {
            Ok(()) => {
                if t.is_handshake() || t == PacketType::PROTOCOL_VERSION {
                    self.core.last_accepted = Some(t);
                }
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
        let ws = self.core.config.transport == Transport::WebSocket;
        match (&self.state, t) {
            (_, PacketType::CRYPTO_AUTH_FAILED) => {
                let reason = AuthFailReason(AuthFailed::decode(p)?.reason);
                self.core.events.push_back(HandshakeEvent::AuthFailed { reason });
                Err(HandshakeError::AuthFailed { reason })
            }
            (_, _) if ws && !t.is_handshake() && t != PacketType::PROTOCOL_VERSION => {
                self.core.events.push_back(HandshakeEvent::EarlyPacket(packet));
                Ok(())
            }
            (State::WaitProtocolVersion, PacketType::PROTOCOL_VERSION) => {
                let pv = ProtocolVersion::decode(p)?;
                let sent = self.core.config.mode.to_u8();
                if pv.supports_encryption != sent {
                    return Err(HandshakeError::ModeMismatch { sent, echoed: pv.supports_encryption });
                }
                let caps = CryptoCapabilities::for_mode(sent);
                self.core.send(PacketType::CRYPTO_CAPABILITIES, caps.encode());
                self.state = State::WaitParameters;
                Ok(())
            }
            (State::WaitParameters, PacketType::CRYPTO_PARAMETERS)
            | (State::WaitKeyExchangeInit { selected: None }, PacketType::CRYPTO_PARAMETERS) => {
                let selected = self.check_parameters(p)?;
                self.state = State::WaitKeyExchangeInit { selected: Some(selected) };
                Ok(())
            }
            (&State::WaitKeyExchangeInit { selected }, PacketType::CRYPTO_KEY_EXCHANGE_INIT) => {
                if ws && self.core.config.dialect == Dialect::Head && selected.is_none() {
                    // A `head` WS server always sends CRYPTO_PARAMETERS first (4.4).
                    return Err(self.core.unexpected("CRYPTO_PARAMETERS", t));
                }
                self.handle_key_exchange_init(p, selected)
            }
            (&State::WaitAuthOrComplete { key, server }, PacketType::CRYPTO_HANDSHAKE_COMPLETE) => {
                if !p.is_empty() {
                    return Err(crate::codec::CodecError::WrongSize {
                        packet_type: t,
                        expected: SizeRule::Exactly(0),
                        actual: p.len(),
                    }
                    .into());
                }
                self.complete(key, server);
                Ok(())
            }
            (&State::WaitAuthOrComplete { key, server }, PacketType::CRYPTO_AUTH_CHALLENGE) => {
                self.handle_challenge(p, key, server)
            }
            (
                &State::WaitServerAuth { key, server, client_nonce, proof_key },
                PacketType::CRYPTO_SERVER_AUTH_RESP,
            ) => {
                let resp = crate::crypto::messages::ServerAuthResp::decode(p)?;
                if !hmac_sha256_verify(&proof_key, &client_nonce, &key, &resp.hmac) {
                    return Err(HandshakeError::ServerProofMismatch);
                }
                self.complete(key, server);
                Ok(())
            }
            _ => {
                let state = self.state.waiting_for();
                Err(self.core.unexpected(state, t))
            }
        }
    }

    fn check_parameters(&self, p: &[u8]) -> Result<Selected, HandshakeError> {
        let params = CryptoParameters::decode(p)?;
        if params.selected_kex != 1 {
            return Err(HandshakeError::UnsupportedParameters {
                field: "selected_kex",
                value: params.selected_kex.into(),
            });
        }
        if params.selected_cipher != self.encrypt as u8 {
            return Err(HandshakeError::UnsupportedParameters {
                field: "selected_cipher",
                value: params.selected_cipher.into(),
            });
        }
        if params.kex_public_key_size != 32 {
            return Err(HandshakeError::UnsupportedParameters {
                field: "kex_public_key_size",
                value: params.kex_public_key_size.into(),
            });
        }
        Ok(Selected { auth: params.selected_auth != 0, verification: params.verification_enabled != 0 })
    }

    fn handle_key_exchange_init(
        &mut self,
        p: &[u8],
        selected: Option<Selected>,
    ) -> Result<(), HandshakeError> {
        let init = KeyExchangeInit::decode(p)?;
        let server = match &init.signed {
            Some(s) => match verify_signature(&s.identity, &init.ephemeral, &s.signature) {
                Ok(vk) => Some(vk),
                Err(SignatureCheck::BadKey) => return Err(HandshakeError::InvalidIdentityKey("server")),
                Err(SignatureCheck::BadSignature) => return Err(HandshakeError::BadServerSignature),
            },
            None => None,
        };
        if let Some(expected) = &self.core.config.expected_server_key {
            if server.as_ref() != Some(expected) {
                return Err(HandshakeError::ServerKeyMismatch);
            }
        }
        let key = session_key(self.core.config.dialect, &self.ephemeral, &init.ephemeral)?;
        let ephemeral = PublicKey::from(&self.ephemeral).to_bytes();
        // The extended form goes out when the server asked for authentication or verification, or when
        // this client has an identity to prove; a client without one fills it with zeros (4.3 step 6).
        let server_wants = selected.is_some_and(|s| s.auth || s.verification) || server.is_some();
        let extension = match &self.core.config.identity {
            Some(id) => Some(RespExtension {
                signed: SignedIdentity {
                    identity: id.verifying_key().to_bytes(),
                    signature: id.sign(&ephemeral).to_bytes(),
                },
                gpg_key_id: Vec::new(),
            }),
            None if server_wants => Some(RespExtension::anonymous()),
            None => None,
        };
        self.core
            .send(PacketType::CRYPTO_KEY_EXCHANGE_RESP, KeyExchangeResp { ephemeral, extension }.encode());
        self.state = State::WaitAuthOrComplete { key, server };
        Ok(())
    }

    fn handle_challenge(
        &mut self,
        p: &[u8],
        key: [u8; 32],
        server: Option<VerifyingKey>,
    ) -> Result<(), HandshakeError> {
        let challenge = AuthChallenge::decode(p)?;
        let client_nonce = self.core.random32();
        let (resp, proof_key) = if challenge.flags & AuthChallenge::PASSWORD_REQUIRED != 0 {
            let pw = *self.core.config.password.as_ref().ok_or(HandshakeError::PasswordRequired)?.key();
            let hmac = hmac_sha256(&pw, &challenge.nonce, &key);
            (AuthResponse::password(hmac, client_nonce), pw)
        } else if let Some(id) = &self.core.config.identity {
            (AuthResponse::key(id.sign(&challenge.nonce).to_bytes(), client_nonce), key)
        } else if challenge.flags & AuthChallenge::CLIENT_KEY_REQUIRED != 0 {
            return Err(HandshakeError::ClientKeyRequired);
        } else if let Some(pw) = &self.core.config.password {
            // A challenge with no flags to a client without a key: answer with the password proof.
            let pw = *pw.key();
            (AuthResponse::password(hmac_sha256(&pw, &challenge.nonce, &key), client_nonce), pw)
        } else {
            return Err(HandshakeError::ClientKeyRequired);
        };
        self.core.send(PacketType::CRYPTO_AUTH_RESPONSE, resp.encode());
        self.state = State::WaitServerAuth { key, server, client_nonce, proof_key };
        Ok(())
    }

    fn complete(&mut self, key: [u8; 32], server: Option<VerifyingKey>) {
        let key = self.encrypt.then_some(key);
        self.state = State::Done { key };
        self.core
            .events
            .push_back(HandshakeEvent::Completed { encrypted: key.is_some(), peer_identity: server });
    }

    /// The next packet to send, in order.
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        self.core.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<HandshakeEvent> {
        self.core.events.pop_front()
    }

    /// When [`ClientHandshake::handle_timeout`] must be called; `None` once complete or failed.
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

    /// Whether the handshake finished.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    /// Whether the handshake failed.
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
