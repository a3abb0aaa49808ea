//! Fuzz logic for the `handshake` target: a [`ServerHandshake`] (ACIP-SPEC.md 4.3, 4.4) fed arbitrary
//! packet sequences in virtual time. A real [`ClientHandshake`] runs beside it, so the fuzzer can reach the
//! deep states (challenge, auth response) and then disturb them: packets are forwarded, mutated, truncated,
//! duplicated, dropped, replayed, or replaced by raw packets of any type.
//!
//! Properties: no panic; a handshake that failed stays failed ([`HandshakeError::AlreadyFailed`], no
//! deadline); each input produces at most three packets; at most one completion event; when both sides
//! complete with a key, their sessions interoperate in both directions, provided either nothing was
//! injected or the client had to authenticate (password or whitelist: then no injected message can make
//! the two sides agree on different keys; without client authentication an injected KEY_EXCHANGE_RESP
//! legitimately does, which is the known limit of unauthenticated mode ENCRYPT); memory is bounded (raw payloads are
//! at most 4 KiB, and every state machine holds O(1) state).
//!
//! Input format (parsed with [`arbitrary::Unstructured`] as a byte cursor, so seeds can be written by
//! [`encode`]): one config byte (see [`configs`]), then ops of one tag byte plus fields; see [`Op`].

use std::time::{Duration, Instant};

use arbitrary::{Result as ArbResult, Unstructured};

use super::u16_of;
use ed25519_dalek::SigningKey;

use crate::codec::{Dialect, Packet, PacketType};
use crate::crypto::{
    ClientHandshake, CryptoMode, HandshakeConfig, HandshakeError, HandshakeEvent, Password, ServerHandshake,
    Transport,
};

/// Largest raw payload an op can carry.
pub const MAX_RAW: usize = 4096;

/// One fuzz event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Deliver everything queued: client packets to the server (through the pending disturbance), server
    /// packets to the client.
    Forward,
    /// A packet of any type and payload, straight to the server.
    Raw { packet_type: u16, payload: Vec<u8> },
    /// Virtual time moves on; both timers are checked.
    Advance { ms: u16 },
    /// The next forwarded client packet has byte `offset % len` XORed with `xor`.
    Mutate { offset: u8, xor: u8 },
    /// The next forwarded client packet keeps only `keep % (len + 1)` payload bytes.
    Truncate { keep: u8 },
    /// The next forwarded client packet arrives twice.
    Duplicate,
    /// The next forwarded client packet is lost.
    Drop,
    /// The `index`-th client packet seen so far is sent again.
    Replay { index: u8 },
}

/// Server and client configs for a config byte: bit 0 dialect (feb/head), bit 1 transport (TCP/WS),
/// bits 2-3 the server's auth (none, password, identity + whitelist, identity only), bits 4-5 the client
/// (matching, mode NONE, wrong password / unknown key, mode AUTH), bit 6 server mode NONE.
pub fn configs(byte: u8) -> (HandshakeConfig, HandshakeConfig) {
    let dialect = if byte & 1 != 0 { Dialect::Head } else { Dialect::Feb };
    let transport = if byte & 2 != 0 { Transport::WebSocket } else { Transport::Tcp };
    let mut s = HandshakeConfig::new(dialect, transport, u64::from(byte));
    let mut c = HandshakeConfig::new(dialect, transport, u64::from(byte) + 1000);
    // Derived keys stand in for Argon2id, which would cost 64 MiB per input.
    let right = Password::from_derived_key([0x11; 32]);
    let wrong = Password::from_derived_key([0x12; 32]);
    let server_key = SigningKey::from_bytes(&[1; 32]);
    let client_key = SigningKey::from_bytes(&[2; 32]);
    let other_key = SigningKey::from_bytes(&[3; 32]);
    let client_kind = byte >> 4 & 3;
    match byte >> 2 & 3 {
        0 => {}
        1 => {
            s.password = Some(right.clone());
            c.mode = CryptoMode::Full;
            c.password = Some(if client_kind == 2 { wrong } else { right });
        }
        2 => {
            s.identity = Some(server_key.clone());
            s.client_whitelist = vec![client_key.verifying_key()];
            c.mode = CryptoMode::Full;
            c.identity = Some(if client_kind == 2 { other_key } else { client_key });
            c.expected_server_key = Some(server_key.verifying_key());
        }
        _ => {
            s.identity = Some(server_key.clone());
            c.expected_server_key = Some(server_key.verifying_key());
        }
    }
    match client_kind {
        1 => c.mode = CryptoMode::None,
        3 => c.mode = CryptoMode::Auth,
        _ => {}
    }
    if byte & 0x40 != 0 {
        s.mode = CryptoMode::None;
    }
    (s, c)
}

/// Parses the input: the config byte and the ops (a truncated last op is dropped).
pub fn parse(data: &[u8]) -> (u8, Vec<Op>) {
    super::parse_ops(data, parse_op)
}

fn parse_op(u: &mut Unstructured<'_>) -> ArbResult<Op> {
    let tag: u8 = u.arbitrary()?;
    Ok(match tag & 7 {
        0 => Op::Forward,
        1 => {
            let packet_type = u16_of(u)?;
            let n = usize::from(u16_of(u)?) % (MAX_RAW + 1);
            Op::Raw { packet_type, payload: u.bytes(n.min(u.len()))?.to_vec() }
        }
        2 => Op::Advance { ms: u16_of(u)? },
        3 => Op::Mutate { offset: u.arbitrary()?, xor: u.arbitrary()? },
        4 => Op::Truncate { keep: u.arbitrary()? },
        5 => Op::Duplicate,
        6 => Op::Drop,
        _ => Op::Replay { index: u.arbitrary()? },
    })
}

/// The bytes that [`parse`] turns back into `cfg` and `ops` (for generating seeds from code).
pub fn encode(cfg: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![cfg];
    for op in ops {
        match op {
            Op::Forward => out.push(0),
            Op::Raw { packet_type, payload } => {
                out.push(1);
                out.extend_from_slice(&packet_type.to_be_bytes());
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                out.extend_from_slice(payload);
            }
            Op::Advance { ms } => {
                out.push(2);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            Op::Mutate { offset, xor } => out.extend_from_slice(&[3, *offset, *xor]),
            Op::Truncate { keep } => out.extend_from_slice(&[4, *keep]),
            Op::Duplicate => out.push(5),
            Op::Drop => out.push(6),
            Op::Replay { index } => out.extend_from_slice(&[7, *index]),
        }
    }
    out
}

/// The server under test plus its bookkeeping for the properties.
struct Driver {
    now: Instant,
    server: ServerHandshake,
    client: ClientHandshake,
    server_failed: bool,
    client_failed: bool,
    /// Completion events seen from the server (must stay <= 1).
    server_completions: usize,
    client_session_ready: bool,
    seen: Vec<Packet>,
    pending: Option<Op>,
    /// Whether the server got anything but the client's own packets, unchanged.
    disturbed: bool,
}

impl Driver {
    fn send_to_server(&mut self, p: Packet) {
        if self.server.is_complete() {
            return; // a shell would hand it to the session
        }
        let r = self.server.handle_packet(p, self.now);
        if self.server_failed {
            assert_eq!(r, Err(HandshakeError::AlreadyFailed), "a failed handshake stays failed");
        }
        if r.is_err() {
            self.server_failed = true;
            assert_eq!(self.server.poll_timeout(), None, "no deadline after failure");
        }
        self.drain_server();
    }

    fn drain_server(&mut self) {
        let mut sent = 0;
        while let Some(p) = self.server.poll_transmit() {
            sent += 1;
            assert!(sent <= 3, "one input produced more than three packets");
            if !self.client_failed
                && !self.client.is_complete()
                && self.client.handle_packet(p, self.now).is_err()
            {
                self.client_failed = true;
            }
        }
        while let Some(e) = self.server.poll_event() {
            if matches!(e, HandshakeEvent::Completed { .. } | HandshakeEvent::PlaintextClient { .. }) {
                self.server_completions += 1;
                assert_eq!(self.server_completions, 1, "completed twice");
                assert!(self.server.is_complete());
            }
        }
        while let Some(e) = self.client.poll_event() {
            if let HandshakeEvent::Completed { encrypted, .. } = e {
                self.client_session_ready = encrypted;
            }
        }
    }

    fn forward(&mut self) {
        let queued: Vec<Packet> = std::iter::from_fn(|| self.client.poll_transmit()).collect();
        for mut p in queued {
            self.seen.push(p.clone());
            match self.pending.take() {
                Some(Op::Mutate { offset, xor }) if !p.payload.is_empty() => {
                    self.disturbed = true;
                    let mut b = p.payload.to_vec();
                    let i = usize::from(offset) % b.len();
                    b[i] ^= xor;
                    p.payload = b.into();
                }
                Some(Op::Truncate { keep }) => {
                    self.disturbed = true;
                    p.payload = p.payload.slice(..usize::from(keep) % (p.payload.len() + 1));
                }
                Some(Op::Duplicate) => self.send_to_server(p.clone()),
                Some(Op::Drop) => continue,
                _ => {}
            }
            self.send_to_server(p);
        }
        self.drain_server();
    }
}

/// Runs one input; panics only when a property is broken.
pub fn run(data: &[u8]) {
    let (cfg, ops) = parse(data);
    let (server_config, client_config) = configs(cfg);
    let start = origin();
    let mut d = Driver {
        now: start,
        server: ServerHandshake::new(server_config, start),
        client: ClientHandshake::new(client_config, start),
        server_failed: false,
        client_failed: false,
        server_completions: 0,
        client_session_ready: false,
        seen: Vec::new(),
        pending: None,
        disturbed: false,
    };
    let client_authenticates =
        d.server.config().password.is_some() || !d.server.config().client_whitelist.is_empty();
    d.drain_server();
    for op in ops {
        match op {
            Op::Forward => d.forward(),
            Op::Raw { packet_type, payload } => {
                d.disturbed = true;
                d.send_to_server(Packet::new(PacketType::from_u16(packet_type), payload))
            }
            Op::Advance { ms } => {
                d.now += Duration::from_millis(u64::from(ms));
                if let Some(deadline) = d.server.poll_timeout() {
                    let r = d.server.handle_timeout(d.now);
                    assert_eq!(r.is_err(), d.now >= deadline, "timeout fires exactly at the deadline");
                    d.server_failed |= r.is_err();
                }
                if d.client.handle_timeout(d.now).is_err() {
                    d.client_failed = true;
                }
                d.drain_server();
            }
            Op::Replay { index } => {
                if !d.seen.is_empty() {
                    d.disturbed = true;
                    let p = d.seen[usize::from(index) % d.seen.len()].clone();
                    d.send_to_server(p);
                }
            }
            other => d.pending = Some(other),
        }
    }
    let keys_must_agree = !d.disturbed || client_authenticates;
    if d.server.is_complete() && d.client.is_complete() && d.client_session_ready && keys_must_agree {
        if let (Some(mut s), Some(mut c)) = (d.server.into_session(), d.client.into_session()) {
            let p = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]);
            let from_client = c.encrypt(&p).expect("small packet encrypts");
            assert_eq!(s.decrypt(&from_client).as_ref(), Ok(&p), "client -> server after the handshake");
            let from_server = s.encrypt(&p).expect("small packet encrypts");
            assert_eq!(c.decrypt(&from_server).as_ref(), Ok(&p), "server -> client after the handshake");
        }
    }
}

/// The origin of virtual time. `Instant` has no constructor, so the fuzz driver (not the sans-IO core it
/// drives) reads the clock once; every later instant is this plus virtual offsets.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

/// Seeds for `corpus/seeds/handshake/`, one per path through the handshake (regenerated by a test).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use Op::*;
    let fw = |n: usize| vec![Forward; n];
    let with = |mut a: Vec<Op>, b: Vec<Op>| {
        a.extend(b);
        a
    };
    vec![
        ("tcp-feb-encrypt", encode(0x00, &fw(6))),
        ("tcp-head-encrypt", encode(0x01, &fw(6))),
        ("ws-feb-encrypt", encode(0x02, &fw(4))),
        ("ws-head-encrypt", encode(0x03, &fw(4))),
        ("tcp-feb-password", encode(0x04, &fw(8))),
        ("ws-head-password", encode(0x07, &fw(6))),
        ("tcp-head-identity-whitelist", encode(0x09, &fw(8))),
        ("ws-feb-identity-whitelist", encode(0x0A, &fw(6))),
        ("tcp-feb-server-identity", encode(0x0C, &fw(6))),
        ("tcp-feb-wrong-password", encode(0x24, &fw(8))),
        ("tcp-head-unknown-client-key", encode(0x29, &fw(8))),
        ("tcp-auth-mode", encode(0x34, &fw(8))),
        ("tcp-plaintext-client", encode(0x10, &[Raw { packet_type: 5000, payload: vec![0; 160] }, Forward])),
        ("tcp-server-mode-none", encode(0x40, &[Raw { packet_type: 5000, payload: vec![0; 168] }, Forward])),
        ("ws-plaintext-client", encode(0x12, &[Raw { packet_type: 5000, payload: vec![0; 160] }, Forward])),
        ("tcp-duplicate-version", encode(0x00, &with(vec![Duplicate], fw(6)))),
        ("tcp-truncated-kex-resp", encode(0x00, &with(fw(2), with(vec![Truncate { keep: 31 }], fw(4))))),
        (
            "tcp-mutated-auth-response",
            encode(0x04, &with(fw(3), with(vec![Mutate { offset: 5, xor: 1 }], fw(4)))),
        ),
        ("tcp-dropped-caps-timeout", encode(0x00, &with(fw(1), vec![Drop, Forward, Advance { ms: 1000 }]))),
        ("ws-silent-client-timeout", encode(0x03, &[Advance { ms: 29_999 }, Advance { ms: 1 }])),
        ("tcp-replayed-version", encode(0x01, &with(fw(3), vec![Replay { index: 0 }, Forward]))),
        ("tcp-no-encryption", encode(0x00, &[Raw { packet_type: 1109, payload: vec![] }, Forward])),
        (
            "tcp-raw-garbage",
            encode(
                0x00,
                &[
                    Raw { packet_type: 1, payload: vec![0, 1, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
                    Raw { packet_type: 1100, payload: vec![0; 10] },
                    Raw { packet_type: 1103, payload: vec![9; 169] },
                ],
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{check_seed_dir, replay_seed_dir};

    const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/seeds/handshake");

    /// The committed seeds are the ones [`seeds`] generates (`ACIP_REGEN_SEEDS=1` rewrites them), and each
    /// round-trips through `parse` and `encode`.
    #[test]
    fn seeds_match_the_code_that_generates_them() {
        check_seed_dir(SEEDS, &seeds());
        for (name, bytes) in seeds() {
            let (cfg, ops) = parse(&bytes);
            assert_eq!(encode(cfg, &ops), bytes, "{name} round-trips");
        }
    }

    /// Every file in `corpus/seeds/handshake` (seeds and any minimized finding added there) replays.
    #[test]
    fn replay_seed_corpus() {
        replay_seed_dir(SEEDS, seeds().len(), run);
    }

    /// The happy-path seeds really complete the handshake (so the fuzzer starts from deep states).
    #[test]
    fn happy_seeds_complete_both_sides() {
        let happy = [
            "tcp-feb-encrypt",
            "tcp-head-encrypt",
            "ws-feb-encrypt",
            "ws-head-encrypt",
            "tcp-feb-password",
            "ws-head-password",
            "tcp-head-identity-whitelist",
            "ws-feb-identity-whitelist",
            "tcp-feb-server-identity",
            "tcp-auth-mode",
        ];
        for (name, bytes) in seeds().into_iter().filter(|(n, _)| happy.contains(n)) {
            let (cfg, ops) = parse(&bytes);
            let (s, c) = configs(cfg);
            let now = origin();
            let mut server = ServerHandshake::new(s, now);
            let mut client = ClientHandshake::new(c, now);
            for _ in &ops {
                while let Some(p) = client.poll_transmit() {
                    server.handle_packet(p, now).unwrap_or_else(|e| panic!("{name}: server {e}"));
                }
                while let Some(p) = server.poll_transmit() {
                    client.handle_packet(p, now).unwrap_or_else(|e| panic!("{name}: client {e}"));
                }
            }
            assert!(server.is_complete() && client.is_complete(), "{name}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x1234_5678u32;
        for len in 0..400 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            run(&data);
        }
    }
}
