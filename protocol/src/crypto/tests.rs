//! Handshake and session tests in virtual time (STYLE.md rule 13): a [`Pair`] driver moves packets
//! between the two sans-IO roles and jumps to the next deadline instead of sleeping.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::session::{MAX_PLAINTEXT, OVERHEAD};
use super::*;
use crate::codec::{Dialect, Limits, Packet, PacketType, HEADER_LEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ClientToServer,
    ServerToClient,
}

/// How the driver treats each packet in flight: passes through, changed, dropped or duplicated.
type Filter = Box<dyn FnMut(Dir, Packet) -> Vec<Packet>>;

/// Two handshakes wired together in virtual time.
struct Pair {
    now: Instant,
    start: Instant,
    server: ServerHandshake,
    client: ClientHandshake,
    server_err: Option<HandshakeError>,
    client_err: Option<HandshakeError>,
    server_events: Vec<HandshakeEvent>,
    client_events: Vec<HandshakeEvent>,
    /// Every packet that crossed, after the filter.
    log: Vec<(Dir, Packet)>,
    /// Packets that reached a side after its handshake completed (the session's, not the handshake's).
    server_app: Vec<Packet>,
    client_app: Vec<Packet>,
    filter: Filter,
}

impl Pair {
    fn new(server: HandshakeConfig, client: HandshakeConfig) -> Pair {
        let start = Instant::now_for_tests();
        Pair {
            now: start,
            start,
            server: ServerHandshake::new(server, start),
            client: ClientHandshake::new(client, start),
            server_err: None,
            client_err: None,
            server_events: Vec::new(),
            client_events: Vec::new(),
            log: Vec::new(),
            server_app: Vec::new(),
            client_app: Vec::new(),
            filter: Box::new(|_, p| vec![p]),
        }
    }

    fn with_filter(mut self, f: impl FnMut(Dir, Packet) -> Vec<Packet> + 'static) -> Pair {
        self.filter = Box::new(f);
        self
    }

    fn deliver(&mut self, dir: Dir, p: Packet) {
        for q in (self.filter)(dir, p) {
            self.log.push((dir, q.clone()));
            match dir {
                Dir::ClientToServer if self.server.is_complete() => self.server_app.push(q),
                Dir::ClientToServer if self.server_err.is_none() => {
                    if let Err(e) = self.server.handle_packet(q, self.now) {
                        self.server_err = Some(e);
                    }
                }
                Dir::ServerToClient if self.client.is_complete() => self.client_app.push(q),
                Dir::ServerToClient if self.client_err.is_none() => {
                    if let Err(e) = self.client.handle_packet(q, self.now) {
                        self.client_err = Some(e);
                    }
                }
                _ => {}
            }
        }
    }

    /// One round: move every queued packet; if none moved, jump to the next deadline. `false` when quiet.
    fn step(&mut self) -> bool {
        let mut moved = false;
        while let Some(p) = self.client.poll_transmit() {
            self.deliver(Dir::ClientToServer, p);
            moved = true;
        }
        while let Some(p) = self.server.poll_transmit() {
            self.deliver(Dir::ServerToClient, p);
            moved = true;
        }
        self.server_events.extend(std::iter::from_fn(|| self.server.poll_event()));
        self.client_events.extend(std::iter::from_fn(|| self.client.poll_event()));
        if moved {
            return true;
        }
        let s = self.server.poll_timeout().filter(|_| self.server_err.is_none());
        let c = self.client.poll_timeout().filter(|_| self.client_err.is_none());
        let Some(next) = [s, c].into_iter().flatten().min() else { return false };
        self.now = self.now.max(next);
        if self.server_err.is_none() {
            if let Err(e) = self.server.handle_timeout(self.now) {
                self.server_err = Some(e);
            }
        }
        if self.client_err.is_none() {
            if let Err(e) = self.client.handle_timeout(self.now) {
                self.client_err = Some(e);
            }
        }
        true
    }

    fn run(&mut self) -> &mut Self {
        for _ in 0..1000 {
            if !self.step() {
                return self;
            }
        }
        panic!("handshake did not settle in 1000 steps");
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn types(&self, dir: Dir) -> Vec<(u16, usize)> {
        self.log
            .iter()
            .filter(|(d, _)| *d == dir)
            .map(|(_, p)| (p.packet_type.to_u16(), p.payload.len()))
            .collect()
    }
}

/// The core bans `Instant::now`; tests need one arbitrary base instant, and virtual time runs from it.
trait TestClock {
    fn now_for_tests() -> Instant;
}

impl TestClock for Instant {
    #[allow(clippy::disallowed_methods)] // the base of virtual time; nothing measures wall time
    fn now_for_tests() -> Instant {
        Instant::now()
    }
}

fn password(text: &str) -> Password {
    // Argon2id costs 64 MiB per derivation: derive each test password once per process.
    static RIGHT: OnceLock<Password> = OnceLock::new();
    static WRONG: OnceLock<Password> = OnceLock::new();
    match text {
        "right password" => RIGHT.get_or_init(|| Password::derive(text).unwrap()).clone(),
        "wrong password" => WRONG.get_or_init(|| Password::derive(text).unwrap()).clone(),
        _ => unreachable!("tests use two passwords"),
    }
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

#[derive(Debug, Clone, Copy)]
enum Variant {
    None,
    Encrypt,
    Password,
    IdentityWithWhitelist,
    ClientKeyOnly,
    ServerKeyOnly,
    AuthMode,
}

fn configs(dialect: Dialect, transport: Transport, v: Variant) -> (HandshakeConfig, HandshakeConfig) {
    let mut s = HandshakeConfig::new(dialect, transport, 1);
    let mut c = HandshakeConfig::new(dialect, transport, 2);
    match v {
        Variant::None => c.mode = CryptoMode::None,
        Variant::Encrypt => {}
        Variant::Password => {
            c.mode = CryptoMode::Full;
            s.password = Some(password("right password"));
            c.password = Some(password("right password"));
        }
        Variant::IdentityWithWhitelist => {
            c.mode = CryptoMode::Full;
            s.identity = Some(key(1));
            s.client_whitelist = vec![key(9).verifying_key(), key(2).verifying_key()];
            c.identity = Some(key(2));
            c.expected_server_key = Some(key(1).verifying_key());
        }
        Variant::ClientKeyOnly => {
            c.mode = CryptoMode::Full;
            c.identity = Some(key(2));
        }
        Variant::ServerKeyOnly => {
            s.identity = Some(key(1));
            c.expected_server_key = Some(key(1).verifying_key());
        }
        Variant::AuthMode => {
            c.mode = CryptoMode::Auth;
            s.password = Some(password("right password"));
            c.password = Some(password("right password"));
        }
    }
    (s, c)
}

fn completed(events: &[HandshakeEvent]) -> Option<(bool, Option<ed25519_dalek::VerifyingKey>)> {
    events.iter().find_map(|e| match e {
        HandshakeEvent::Completed { encrypted, peer_identity } => Some((*encrypted, *peer_identity)),
        _ => None,
    })
}

fn caps_packet() -> Packet {
    Packet::new(PacketType::CLIENT_CAPABILITIES, vec![0u8; 160])
}

#[test]
fn every_dialect_transport_and_mode_completes() {
    use Variant::*;
    for dialect in [Dialect::Feb, Dialect::Head] {
        for transport in [Transport::Tcp, Transport::WebSocket] {
            for v in [None, Encrypt, Password, IdentityWithWhitelist, ClientKeyOnly, ServerKeyOnly, AuthMode]
            {
                if matches!(v, AuthMode) && transport == Transport::WebSocket {
                    continue; // no mode negotiation on WebSocket: it always encrypts (4.4)
                }
                let ctx = format!("{dialect} {transport:?} {v:?}");
                let (s, c) = configs(dialect, transport, v);
                let mut pair = Pair::new(s, c);
                if matches!(v, None) {
                    // The plaintext client speaks first with CLIENT_CAPABILITIES (TCP) or ignores the
                    // WS opener and does the same (4.4 inferred, 4.6).
                    assert!(pair.client.is_complete(), "{ctx}");
                    assert!(!pair.server.is_complete(), "{ctx}");
                    pair.deliver(Dir::ClientToServer, caps_packet());
                    pair.run();
                    assert!(pair.server.is_complete(), "{ctx}");
                    assert_eq!(pair.server_err, Option::None, "{ctx}");
                    assert!(
                        pair.server_events
                            .iter()
                            .any(|e| matches!(e, HandshakeEvent::PlaintextClient { first_packet } if *first_packet == caps_packet())),
                        "{ctx}"
                    );
                    assert!(pair.client.into_session().is_none() && pair.server.into_session().is_none());
                    continue;
                }
                pair.run();
                assert_eq!((&pair.server_err, &pair.client_err), (&Option::None, &Option::None), "{ctx}");
                assert!(pair.server.is_complete() && pair.client.is_complete(), "{ctx}");
                assert_eq!(pair.elapsed(), Duration::ZERO, "{ctx}: no timer should fire");
                let encrypted = !matches!(v, AuthMode);
                let (s_enc, s_peer) = completed(&pair.server_events).expect("server Completed");
                let (c_enc, c_peer) = completed(&pair.client_events).expect("client Completed");
                assert_eq!((s_enc, c_enc), (encrypted, encrypted), "{ctx}");
                let client_has_key = matches!(v, IdentityWithWhitelist | ClientKeyOnly);
                let server_has_key = matches!(v, IdentityWithWhitelist | ServerKeyOnly);
                assert_eq!(s_peer, client_has_key.then(|| key(2).verifying_key()), "{ctx}");
                assert_eq!(c_peer, server_has_key.then(|| key(1).verifying_key()), "{ctx}");
                check_openers(&pair, dialect, transport, v);
                let (mut ss, mut cs) = match (pair.server.into_session(), pair.client.into_session()) {
                    (Some(s), Some(c)) => (s, c),
                    (Option::None, Option::None) if !encrypted => continue,
                    other => panic!("{ctx}: sessions {:?}", (other.0.is_some(), other.1.is_some())),
                };
                let ping = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]);
                assert_eq!(ss.decrypt(&cs.encrypt(&ping).unwrap()).unwrap(), ping, "{ctx}");
                assert_eq!(cs.decrypt(&ss.encrypt(&ping).unwrap()).unwrap(), ping, "{ctx}");
            }
        }
    }
}

/// The message sequence of each variant, as ACIP-SPEC.md 4.3 / 4.4 give it.
fn check_openers(pair: &Pair, dialect: Dialect, transport: Transport, v: Variant) {
    let s2c: Vec<u16> = pair.types(Dir::ServerToClient).iter().map(|t| t.0).collect();
    let c2s: Vec<u16> = pair.types(Dir::ClientToServer).iter().map(|t| t.0).collect();
    let ctx = format!("{dialect} {transport:?} {v:?}");
    let mut expect_s2c = match (transport, dialect) {
        (Transport::Tcp, _) => vec![1, 1101, 1102],
        (Transport::WebSocket, Dialect::Feb) => vec![1102],
        (Transport::WebSocket, Dialect::Head) => vec![1101, 1102],
    };
    let mut expect_c2s = match transport {
        Transport::Tcp => vec![1, 1100, 1103],
        Transport::WebSocket => vec![1103],
    };
    if matches!(v, Variant::Encrypt | Variant::ServerKeyOnly) {
        expect_s2c.push(1108);
    } else {
        expect_s2c.extend([1104, 1107]);
        expect_c2s.push(1105);
    }
    assert_eq!((s2c, c2s), (expect_s2c, expect_c2s), "{ctx}");
    let sizes: Vec<(u16, usize)> = pair.types(Dir::ServerToClient);
    let kex_init = sizes.iter().find(|t| t.0 == 1102).unwrap().1;
    let has_server_key = matches!(v, Variant::IdentityWithWhitelist | Variant::ServerKeyOnly);
    assert_eq!(kex_init, if has_server_key { 128 } else { 32 }, "{ctx}");
}

fn run_with(s: HandshakeConfig, c: HandshakeConfig) -> Pair {
    let mut pair = Pair::new(s, c);
    pair.run();
    pair
}

#[test]
fn wrong_password_fails_on_both_sides_with_its_own_error() {
    let (mut s, mut c) = configs(Dialect::Feb, Transport::Tcp, Variant::Password);
    s.password = Some(password("wrong password"));
    c.password = Some(password("right password"));
    let pair = run_with(s, c);
    let reason = AuthFailReason::PASSWORD_INCORRECT;
    assert_eq!(pair.server_err, Some(HandshakeError::Rejected { reason }));
    assert_eq!(pair.client_err, Some(HandshakeError::AuthFailed { reason }));
    assert_eq!(pair.types(Dir::ServerToClient).last(), Some(&(1106, 8)));
    assert!(pair.client_events.contains(&HandshakeEvent::AuthFailed { reason }));
}

#[test]
fn unknown_client_key_is_rejected() {
    let (mut s, c) = configs(Dialect::Head, Transport::WebSocket, Variant::IdentityWithWhitelist);
    s.client_whitelist = vec![key(7).verifying_key()];
    let pair = run_with(s, c);
    let reason = AuthFailReason::CLIENT_KEY_REJECTED;
    assert_eq!(pair.server_err, Some(HandshakeError::Rejected { reason }));
    assert_eq!(pair.client_err, Some(HandshakeError::AuthFailed { reason }));
}

#[test]
fn missing_client_key_is_required_by_a_whitelist() {
    let (s, mut c) = configs(Dialect::Feb, Transport::Tcp, Variant::IdentityWithWhitelist);
    c.identity = None;
    let pair = run_with(s, c);
    let reason = AuthFailReason::CLIENT_KEY_REQUIRED;
    assert_eq!(pair.server_err, Some(HandshakeError::Rejected { reason }));
    assert_eq!(pair.client_err, Some(HandshakeError::AuthFailed { reason }));
}

#[test]
fn client_without_password_stops_and_server_times_out_after_one_second() {
    let (s, mut c) = configs(Dialect::Feb, Transport::Tcp, Variant::Password);
    c.password = None;
    let pair = run_with(s, c);
    assert_eq!(pair.client_err, Some(HandshakeError::PasswordRequired));
    assert_eq!(pair.server_err, Some(HandshakeError::Timeout { waiting_for: "CRYPTO_AUTH_RESPONSE" }));
    assert_eq!(pair.elapsed(), DEFAULT_HEADER_TIMEOUT);
}

#[test]
fn wrong_expected_server_key_fails_on_the_client() {
    let (s, mut c) = configs(Dialect::Head, Transport::Tcp, Variant::ServerKeyOnly);
    c.expected_server_key = Some(key(5).verifying_key());
    let pair = run_with(s, c);
    assert_eq!(pair.client_err, Some(HandshakeError::ServerKeyMismatch));
    // The client goes quiet; the server gives up after its 1 s per-packet wait.
    assert_eq!(pair.server_err, Some(HandshakeError::Timeout { waiting_for: "CRYPTO_KEY_EXCHANGE_RESP" }));
}

#[test]
fn tampered_server_signature_fails_on_the_client() {
    let (s, c) = configs(Dialect::Feb, Transport::WebSocket, Variant::ServerKeyOnly);
    let pair = Pair::new(s, c).with_filter(|dir, mut p| {
        if dir == Dir::ServerToClient && p.packet_type == PacketType::CRYPTO_KEY_EXCHANGE_INIT {
            let mut b = p.payload.to_vec();
            b[100] ^= 1;
            p.payload = b.into();
        }
        vec![p]
    });
    let mut pair = pair;
    pair.run();
    assert_eq!(pair.client_err, Some(HandshakeError::BadServerSignature));
}

#[test]
fn tampered_server_proof_fails_on_the_client() {
    let (s, c) = configs(Dialect::Feb, Transport::Tcp, Variant::ClientKeyOnly);
    let mut pair = Pair::new(s, c).with_filter(|dir, mut p| {
        if dir == Dir::ServerToClient && p.packet_type == PacketType::CRYPTO_SERVER_AUTH_RESP {
            let mut b = p.payload.to_vec();
            b[0] ^= 1;
            p.payload = b.into();
        }
        vec![p]
    });
    pair.run();
    assert_eq!(pair.server_err, None);
    assert_eq!(pair.client_err, Some(HandshakeError::ServerProofMismatch));
}

#[test]
fn forged_client_auth_signature_is_rejected() {
    let (s, c) = configs(Dialect::Head, Transport::Tcp, Variant::ClientKeyOnly);
    let mut pair = Pair::new(s, c).with_filter(|dir, mut p| {
        if dir == Dir::ClientToServer && p.packet_type == PacketType::CRYPTO_AUTH_RESPONSE {
            let mut b = p.payload.to_vec();
            b[3] ^= 1;
            p.payload = b.into();
        }
        vec![p]
    });
    pair.run();
    let reason = AuthFailReason::SIGNATURE_INVALID;
    assert_eq!(pair.server_err, Some(HandshakeError::Rejected { reason }));
    assert_eq!(pair.client_err, Some(HandshakeError::AuthFailed { reason }));
}

#[test]
fn truncated_key_exchange_resp_is_malformed() {
    let (s, c) = configs(Dialect::Feb, Transport::Tcp, Variant::Encrypt);
    let mut pair = Pair::new(s, c).with_filter(|dir, mut p| {
        if dir == Dir::ClientToServer && p.packet_type == PacketType::CRYPTO_KEY_EXCHANGE_RESP {
            p.payload = p.payload.slice(..31);
        }
        vec![p]
    });
    pair.run();
    assert!(
        matches!(
            pair.server_err,
            Some(HandshakeError::Malformed(crate::codec::CodecError::Invalid { field: "length", .. }))
        ),
        "{:?}",
        pair.server_err
    );
}

#[test]
fn truncated_protocol_version_is_malformed() {
    let (s, c) = configs(Dialect::Head, Transport::Tcp, Variant::Encrypt);
    let mut pair = Pair::new(s, c).with_filter(|_, mut p| {
        if p.packet_type == PacketType::PROTOCOL_VERSION {
            p.payload = p.payload.slice(..15);
        }
        vec![p]
    });
    pair.run();
    assert!(matches!(pair.server_err, Some(HandshakeError::Malformed(_))), "{:?}", pair.server_err);
}

#[test]
fn duplicated_messages_are_named_duplicates() {
    // Client side duplicate: PROTOCOL_VERSION sent twice.
    let (s, c) = configs(Dialect::Feb, Transport::Tcp, Variant::Encrypt);
    let mut pair = Pair::new(s, c).with_filter(|dir, p| {
        if dir == Dir::ClientToServer && p.packet_type == PacketType::PROTOCOL_VERSION {
            vec![p.clone(), p]
        } else {
            vec![p]
        }
    });
    pair.run();
    let dup = |t| Some(HandshakeError::Duplicate { state: "CRYPTO_CAPABILITIES", packet_type: t });
    assert_eq!(pair.server_err, dup(PacketType::PROTOCOL_VERSION));

    // Server side duplicate: KEY_EXCHANGE_INIT sent twice on WebSocket.
    let (s, c) = configs(Dialect::Head, Transport::WebSocket, Variant::Password);
    let mut pair = Pair::new(s, c).with_filter(|dir, p| {
        if dir == Dir::ServerToClient && p.packet_type == PacketType::CRYPTO_KEY_EXCHANGE_INIT {
            vec![p.clone(), p]
        } else {
            vec![p]
        }
    });
    pair.run();
    assert!(
        matches!(
            pair.client_err,
            Some(HandshakeError::Duplicate { packet_type: PacketType::CRYPTO_KEY_EXCHANGE_INIT, .. })
        ),
        "{:?}",
        pair.client_err
    );
}

#[test]
fn reordered_messages_are_unexpected() {
    for transport in [Transport::Tcp, Transport::WebSocket] {
        let (s, c) = configs(Dialect::Head, transport, Variant::Encrypt);
        // Hold CRYPTO_PARAMETERS back and deliver it after KEY_EXCHANGE_INIT.
        let mut held: Option<Packet> = None;
        let mut pair = Pair::new(s, c).with_filter(move |dir, p| match (dir, p.packet_type) {
            (Dir::ServerToClient, PacketType::CRYPTO_PARAMETERS) => {
                held = Some(p);
                vec![]
            }
            (Dir::ServerToClient, PacketType::CRYPTO_KEY_EXCHANGE_INIT) => {
                let mut v = vec![p];
                v.extend(held.take());
                v
            }
            _ => vec![p],
        });
        pair.run();
        assert!(
            matches!(
                pair.client_err,
                Some(HandshakeError::UnexpectedPacket {
                    packet_type: PacketType::CRYPTO_KEY_EXCHANGE_INIT,
                    ..
                })
            ),
            "{transport:?}: {:?}",
            pair.client_err
        );
    }
}

#[test]
fn server_role_packet_sent_to_server_is_unexpected() {
    let now = Instant::now_for_tests();
    let mut s = ServerHandshake::new(HandshakeConfig::new(Dialect::Feb, Transport::Tcp, 1), now);
    let p = Packet::new(PacketType::CRYPTO_KEY_EXCHANGE_INIT, vec![0u8; 32]);
    assert_eq!(
        s.handle_packet(p, now),
        Err(HandshakeError::UnexpectedPacket {
            state: "PROTOCOL_VERSION",
            packet_type: PacketType::CRYPTO_KEY_EXCHANGE_INIT
        })
    );
    assert_eq!(s.handle_packet(caps_packet(), now), Err(HandshakeError::AlreadyFailed));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn client_mode_none_in_protocol_version_is_refused() {
    let now = Instant::now_for_tests();
    let mut s = ServerHandshake::new(HandshakeConfig::new(Dialect::Feb, Transport::Tcp, 1), now);
    let pv = crate::codec::payloads::ProtocolVersion::new(0).to_packet();
    assert_eq!(s.handle_packet(pv, now), Err(HandshakeError::ClientModeNone));
    let mut s = ServerHandshake::new(HandshakeConfig::new(Dialect::Feb, Transport::Tcp, 1), now);
    let pv = crate::codec::payloads::ProtocolVersion::new(9).to_packet();
    assert_eq!(s.handle_packet(pv, now), Err(HandshakeError::UnknownMode(9)));
}

#[test]
fn no_encryption_request_gets_auth_failed() {
    let now = Instant::now_for_tests();
    let mut s = ServerHandshake::new(HandshakeConfig::new(Dialect::Head, Transport::Tcp, 1), now);
    let r = s.handle_packet(Packet::empty(PacketType::CRYPTO_NO_ENCRYPTION), now);
    assert_eq!(r, Err(HandshakeError::NoEncryptionRequested));
    assert_eq!(s.poll_transmit().map(|p| p.packet_type), Some(PacketType::CRYPTO_AUTH_FAILED));
}

#[test]
fn low_order_client_key_is_refused() {
    let (s, c) = configs(Dialect::Feb, Transport::WebSocket, Variant::Encrypt);
    let mut pair = Pair::new(s, c).with_filter(|dir, mut p| {
        if dir == Dir::ClientToServer && p.packet_type == PacketType::CRYPTO_KEY_EXCHANGE_RESP {
            p.payload = Bytes::from(vec![0u8; 32]);
        }
        vec![p]
    });
    pair.run();
    assert_eq!(pair.server_err, Some(HandshakeError::LowOrderKey));
}

#[test]
fn silent_tcp_client_times_out_after_one_second_and_ws_after_thirty() {
    let now = Instant::now_for_tests();
    let mut s = ServerHandshake::new(HandshakeConfig::new(Dialect::Feb, Transport::Tcp, 1), now);
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline - now, Duration::from_secs(1));
    assert_eq!(s.handle_timeout(deadline - Duration::from_millis(1)), Ok(()));
    assert_eq!(s.handle_timeout(deadline), Err(HandshakeError::Timeout { waiting_for: "PROTOCOL_VERSION" }));

    let mut s = ServerHandshake::new(HandshakeConfig::new(Dialect::Head, Transport::WebSocket, 1), now);
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline - now, DEFAULT_TOTAL_TIMEOUT);
    assert!(matches!(s.handle_timeout(deadline), Err(HandshakeError::Timeout { .. })));

    // A packet arriving after the deadline is a timeout too, not a success.
    let mut s = ServerHandshake::new(HandshakeConfig::new(Dialect::Feb, Transport::Tcp, 1), now);
    let late = now + Duration::from_secs(2);
    let pv = crate::codec::payloads::ProtocolVersion::new(1).to_packet();
    assert!(matches!(s.handle_packet(pv, late), Err(HandshakeError::Timeout { .. })));
}

#[test]
fn slow_but_steady_tcp_client_hits_the_total_timeout() {
    // Each packet within the 1 s wait, but the whole exchange over a shortened total limit.
    let mut sc = HandshakeConfig::new(Dialect::Feb, Transport::Tcp, 1);
    sc.total_timeout = Duration::from_millis(1500);
    let now = Instant::now_for_tests();
    let mut s = ServerHandshake::new(sc, now);
    let t1 = now + Duration::from_millis(900);
    s.handle_packet(crate::codec::payloads::ProtocolVersion::new(1).to_packet(), t1).unwrap();
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_millis(1500)));
    assert!(matches!(
        s.handle_timeout(now + Duration::from_millis(1500)),
        Err(HandshakeError::Timeout { waiting_for: "CRYPTO_CAPABILITIES" })
    ));
}

#[test]
fn tcp_plaintext_client_is_accepted_with_its_first_packet_kept() {
    let now = Instant::now_for_tests();
    let mut s = ServerHandshake::new(HandshakeConfig::new(Dialect::Feb, Transport::Tcp, 1), now);
    s.handle_packet(caps_packet(), now).unwrap();
    assert!(s.is_complete());
    assert_eq!(s.poll_event(), Some(HandshakeEvent::PlaintextClient { first_packet: caps_packet() }));
    assert_eq!(s.poll_transmit(), None);
    assert!(s.into_session().is_none());
}

#[test]
fn ws_client_passes_early_plaintext_packets_through() {
    let (s, c) = configs(Dialect::Head, Transport::WebSocket, Variant::Encrypt);
    let now = Instant::now_for_tests();
    let mut server = ServerHandshake::new(s, now);
    let mut client = ClientHandshake::new(c, now);
    let state = Packet::new(PacketType::SERVER_STATE, vec![0u8; 32]);
    client.handle_packet(server.poll_transmit().unwrap(), now).unwrap();
    client.handle_packet(state.clone(), now).unwrap();
    client.handle_packet(server.poll_transmit().unwrap(), now).unwrap();
    assert_eq!(client.poll_event(), Some(HandshakeEvent::EarlyPacket(state)));
    server.handle_packet(client.poll_transmit().unwrap(), now).unwrap();
    client.handle_packet(server.poll_transmit().unwrap(), now).unwrap();
    assert!(client.is_complete() && server.is_complete());
}

#[test]
fn same_seeds_give_the_same_handshake_bytes() {
    let run = || {
        let (s, c) = configs(Dialect::Head, Transport::Tcp, Variant::IdentityWithWhitelist);
        let pair = run_with(s, c);
        pair.log.iter().map(|(_, p)| p.encode()).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

// ---- captures -------------------------------------------------------------------------------------------

fn capture_records() -> Vec<(Dir, Packet)> {
    let bytes = include_bytes!("../../../corpus/captures/tcp_encrypted_handshake.bin");
    let mut out = Vec::new();
    let mut rest = Bytes::from_static(bytes);
    while !rest.is_empty() {
        let dir = if rest[0] == 0 { Dir::ClientToServer } else { Dir::ServerToClient };
        let body = rest.slice(1..);
        let (p, used) = Packet::decode(&body, &Limits::default()).expect("capture packet decodes");
        out.push((dir, p));
        rest = body.slice(used..);
    }
    out
}

#[test]
fn capture_handshake_drives_server_to_the_real_replies() {
    let records = capture_records();
    assert_eq!(records.len(), 7);
    let real: Vec<&Packet> =
        records.iter().filter(|(d, _)| *d == Dir::ServerToClient).map(|(_, p)| p).collect();
    let now = Instant::now_for_tests();
    let mut server = ServerHandshake::new(HandshakeConfig::new(Dialect::Feb, Transport::Tcp, 7), now);
    let mut ours = Vec::new();
    for (i, (dir, p)) in records.iter().enumerate() {
        if *dir == Dir::ClientToServer {
            server.handle_packet(p.clone(), now + Duration::from_millis(i as u64)).unwrap();
            ours.extend(std::iter::from_fn(|| server.poll_transmit()));
        }
    }
    let shape = |v: &[&Packet]| v.iter().map(|p| (p.packet_type, p.payload.len())).collect::<Vec<_>>();
    assert_eq!(shape(&ours.iter().collect::<Vec<_>>()), shape(&real));
    // PROTOCOL_VERSION and CRYPTO_PARAMETERS carry no randomness: byte-identical to the real server's.
    assert_eq!(ours[0], *real[0]);
    assert_eq!(ours[1], *real[1]);
    assert!(server.is_complete());
    assert!(server.into_session().is_some());
}

#[test]
fn capture_server_packets_drive_client_to_the_real_requests() {
    let records = capture_records();
    let real: Vec<&Packet> =
        records.iter().filter(|(d, _)| *d == Dir::ClientToServer).map(|(_, p)| p).collect();
    let now = Instant::now_for_tests();
    let mut client = ClientHandshake::new(HandshakeConfig::new(Dialect::Feb, Transport::Tcp, 7), now);
    let mut ours: Vec<Packet> = std::iter::from_fn(|| client.poll_transmit()).collect();
    for (dir, p) in &records {
        if *dir == Dir::ServerToClient {
            client.handle_packet(p.clone(), now).unwrap();
            ours.extend(std::iter::from_fn(|| client.poll_transmit()));
        }
    }
    let shape = |v: Vec<&Packet>| v.iter().map(|p| (p.packet_type, p.payload.len())).collect::<Vec<_>>();
    assert_eq!(shape(ours.iter().collect()), shape(real.clone()));
    assert_eq!(ours[0], *real[0]);
    assert_eq!(ours[1], *real[1]);
    assert!(client.is_complete());
}

// ---- sessions -------------------------------------------------------------------------------------------

fn session_pair(dialect: Dialect) -> (Session, Session) {
    (Session::new(dialect, [3u8; 32], [1u8; 16]), Session::new(dialect, [3u8; 32], [2u8; 16]))
}

/// Seals an arbitrary inner plaintext the way a sender would, to forge bad inner packets.
fn seal(plaintext: &[u8], nonce: [u8; 24]) -> Packet {
    use crypto_secretbox::aead::AeadInPlace;
    use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
    let cipher = XSalsa20Poly1305::new(&[3u8; 32].into());
    let mut body = plaintext.to_vec();
    let tag = cipher.encrypt_in_place_detached(&nonce.into(), b"", &mut body).unwrap();
    Packet::new(PacketType::ENCRYPTED, [&nonce[..], &tag[..], &body[..]].concat())
}

#[test]
fn tampered_ciphertext_is_a_bad_mac() {
    let (mut a, b) = session_pair(Dialect::Feb);
    let wrapped = a.encrypt(&Packet::new(PacketType::PING, vec![])).unwrap();
    for i in [0, 23, 24, 39, 40, wrapped.payload.len() - 1] {
        let mut bytes = wrapped.payload.to_vec();
        bytes[i] ^= 0x80;
        assert_eq!(
            b.decrypt(&Packet::new(PacketType::ENCRYPTED, bytes)),
            Err(CryptoError::BadMac),
            "byte {i}"
        );
    }
    let other = Session::new(Dialect::Feb, [4u8; 32], [1u8; 16]);
    assert_eq!(other.decrypt(&wrapped), Err(CryptoError::BadMac));
}

#[test]
fn wrong_inner_length_is_its_own_error() {
    let (_, b) = session_pair(Dialect::Head);
    let mut inner = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]).encode();
    inner[13] = 5; // length field says 5, plaintext carries 4
    let err = b.decrypt(&seal(&inner, [9u8; 24])).unwrap_err();
    assert_eq!(err, CryptoError::InnerLengthMismatch { declared: 5, actual: 4 });
}

#[test]
fn bad_inner_crc_is_its_own_error() {
    let (_, b) = session_pair(Dialect::Feb);
    let mut inner = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]).encode();
    inner[25] = 2; // payload changed after the CRC was computed
    let err = b.decrypt(&seal(&inner, [9u8; 24])).unwrap_err();
    assert!(
        matches!(err, CryptoError::InnerCrcMismatch { packet_type: PacketType::STREAM_START, .. }),
        "{err}"
    );
}

#[test]
fn short_inputs_have_their_own_errors() {
    let (_, b) = session_pair(Dialect::Feb);
    assert_eq!(b.decrypt(&seal(&[0u8; 21], [9u8; 24])), Err(CryptoError::InnerTooShort { len: 21 }));
    let short = Packet::new(PacketType::ENCRYPTED, vec![0u8; 39]);
    assert_eq!(b.decrypt(&short), Err(CryptoError::CiphertextTooShort { len: 39 }));
    assert_eq!(b.decrypt(&Packet::empty(PacketType::PING)), Err(CryptoError::NotEncrypted(PacketType::PING)));
}

#[test]
fn handshake_class_packets_stay_plain() {
    let (mut a, _) = session_pair(Dialect::Feb);
    for t in [PacketType::CRYPTO_REKEY_REQUEST, PacketType::CRYPTO_CLIENT_HELLO, PacketType::ENCRYPTED] {
        assert!(!Session::wants_encryption(t));
        assert_eq!(a.encrypt(&Packet::empty(t)), Err(CryptoError::MustStayPlain(t)));
    }
    assert!(Session::wants_encryption(PacketType::PROTOCOL_VERSION));
    assert!(Session::wants_encryption(PacketType::IMAGE_FRAME));
    assert_eq!(a.next_counter(), 1, "refusals use no nonce");
}

#[test]
fn nonce_counter_starts_at_one_in_the_dialects_byte_order() {
    for (dialect, expected) in
        [(Dialect::Feb, [1, 0, 0, 0, 0, 0, 0, 0]), (Dialect::Head, [0, 0, 0, 0, 0, 0, 0, 1])]
    {
        let (mut a, b) = session_pair(dialect);
        let p = Packet::empty(PacketType::PING);
        let w1 = a.encrypt(&p).unwrap();
        assert_eq!(&w1.payload[..16], &[1u8; 16]);
        assert_eq!(&w1.payload[16..24], &expected);
        let w2 = a.encrypt(&p).unwrap();
        assert_eq!(&w2.payload[16..24], &a.nonce(2)[16..]);
        // Like the real receivers: no replay or order check, the nonce comes from the packet.
        assert_eq!(b.decrypt(&w2).unwrap(), p);
        assert_eq!(b.decrypt(&w1).unwrap(), p);
        assert_eq!(b.decrypt(&w1).unwrap(), p);
    }
}

#[test]
fn rekey_request_is_ignored_and_the_old_key_kept() {
    let (mut a, mut b) = session_pair(Dialect::Head);
    let req = Packet::new(PacketType::CRYPTO_REKEY_REQUEST, vec![5u8; 32]);
    assert_eq!(b.handle_rekey(&req), Ok(RekeyOutcome::Ignored));
    let complete = Packet::new(PacketType::CRYPTO_REKEY_COMPLETE, vec![0u8]);
    assert_eq!(b.handle_rekey(&complete), Ok(RekeyOutcome::Ignored));
    let p = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]);
    assert_eq!(b.decrypt(&a.encrypt(&p).unwrap()).unwrap(), p);
    assert_eq!(a.decrypt(&b.encrypt(&p).unwrap()).unwrap(), p);
    assert_eq!(
        b.handle_rekey(&Packet::empty(PacketType::CRYPTO_HANDSHAKE_COMPLETE)),
        Err(CryptoError::UnexpectedHandshakePacket(PacketType::CRYPTO_HANDSHAKE_COMPLETE))
    );
}

#[test]
fn one_byte_over_the_plaintext_limit_is_refused_before_sending() {
    let (mut a, _) = session_pair(Dialect::Feb);
    let too_big = Packet::new(PacketType::IMAGE_FRAME, vec![0u8; MAX_PLAINTEXT - HEADER_LEN + 1]);
    assert_eq!(
        a.encrypt(&too_big),
        Err(CryptoError::PlaintextTooLarge { size: MAX_PLAINTEXT + 1, limit: MAX_PLAINTEXT })
    );
    assert_eq!(a.next_counter(), 1);
    let limit = Packet::new(PacketType::IMAGE_FRAME, vec![0u8; MAX_PLAINTEXT - HEADER_LEN]);
    assert_eq!(a.encrypt(&limit).unwrap().payload.len(), MAX_PLAINTEXT + OVERHEAD);
}

fn payload_of(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn encrypt_decrypt_round_trips_small(
        len in 0usize..4096, seed in any::<u64>(), t in any::<u16>(), head in any::<bool>(),
    ) {
        let t = PacketType::from_u16(t);
        prop_assume!(Session::wants_encryption(t));
        let dialect = if head { Dialect::Head } else { Dialect::Feb };
        let (mut a, b) = session_pair(dialect);
        let p = Packet::new(t, payload_of(len, seed));
        let wire = a.encrypt(&p).unwrap();
        prop_assert_eq!(wire.payload.len(), len + HEADER_LEN + OVERHEAD);
        // Through the codec too: outer header and CRC.
        let outer = Packet::decode_exact(Bytes::from(wire.encode()), &Limits::default()).unwrap();
        prop_assert_eq!(b.decrypt(&outer).unwrap(), p);
    }
}

proptest! {
    // Up to the 1 MiB limit: few cases, the payloads are big.
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn encrypt_decrypt_round_trips_up_to_the_limit(
        len in (MAX_PLAINTEXT - HEADER_LEN - 65536)..=(MAX_PLAINTEXT - HEADER_LEN), seed in any::<u64>(),
        over in 1usize..100_000,
    ) {
        let (mut a, b) = session_pair(Dialect::Head);
        let p = Packet::new(PacketType::IMAGE_FRAME, payload_of(len, seed));
        prop_assert_eq!(b.decrypt(&a.encrypt(&p).unwrap()).unwrap(), p);
        let big = Packet::new(PacketType::IMAGE_FRAME, vec![0u8; MAX_PLAINTEXT - HEADER_LEN + over]);
        let refused = matches!(a.encrypt(&big), Err(CryptoError::PlaintextTooLarge { .. }));
        prop_assert!(refused);
    }
}

/// The error texts a user sees for each way a handshake or a decryption ends (insta, no timestamps).
#[test]
fn error_texts_snapshot() {
    let mut lines = Vec::new();
    let mut record = |name: &str, pair: &Pair| {
        lines.push(format!(
            "{name}: server: {} | client: {}",
            pair.server_err.as_ref().map_or("-".to_string(), |e| e.to_string()),
            pair.client_err.as_ref().map_or("-".to_string(), |e| e.to_string()),
        ));
    };
    let (mut s, c) = configs(Dialect::Feb, Transport::Tcp, Variant::Password);
    s.password = Some(password("wrong password"));
    record("wrong password", &run_with(s, c));
    let (mut s, c) = configs(Dialect::Head, Transport::WebSocket, Variant::IdentityWithWhitelist);
    s.client_whitelist = vec![key(7).verifying_key()];
    record("unknown client key", &run_with(s, c));
    let (s, mut c) = configs(Dialect::Feb, Transport::Tcp, Variant::IdentityWithWhitelist);
    c.identity = None;
    record("no client key", &run_with(s, c));
    let (s, mut c) = configs(Dialect::Head, Transport::Tcp, Variant::ServerKeyOnly);
    c.expected_server_key = Some(key(5).verifying_key());
    record("other server key", &run_with(s, c));
    let (s, c) = configs(Dialect::Feb, Transport::Tcp, Variant::Encrypt);
    let mut pair = Pair::new(s, c).with_filter(|_, mut p| {
        if p.packet_type == PacketType::CRYPTO_KEY_EXCHANGE_RESP {
            p.payload = p.payload.slice(..31);
        }
        vec![p]
    });
    pair.run();
    record("truncated KEY_EXCHANGE_RESP", &pair);
    let (mut a, b) = session_pair(Dialect::Feb);
    let mut wrapped = a.encrypt(&Packet::empty(PacketType::PING)).unwrap().payload.to_vec();
    wrapped[30] ^= 1;
    let tampered = b.decrypt(&Packet::new(PacketType::ENCRYPTED, wrapped)).unwrap_err();
    lines.push(format!("tampered ciphertext: {tampered}"));
    let mut inner = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]).encode();
    inner[13] = 5;
    lines.push(format!("wrong inner length: {}", b.decrypt(&seal(&inner, [9u8; 24])).unwrap_err()));
    let mut inner = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]).encode();
    inner[25] = 2;
    lines.push(format!("bad inner CRC: {}", b.decrypt(&seal(&inner, [9u8; 24])).unwrap_err()));
    insta::assert_snapshot!(lines.join("\n"));
}
