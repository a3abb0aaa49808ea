//! Client-server conversations in virtual time: every dialect x transport x crypto mode, close from either
//! side, each violation with its close code, and a proptest that any chunking of a conversation's bytes gives
//! the same events (with a broken connection the model is shown to catch).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::crypto::{CryptoMode, Password};
use crate::stream::StreamDecoder;
use crate::ws::{parse_close, FrameDecoder, FrameDecoderConfig, FrameError, ReassemblyError};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Encrypt,
    Password,
}

fn password() -> Password {
    static P: OnceLock<Password> = OnceLock::new();
    P.get_or_init(|| Password::derive("right password").unwrap()).clone()
}

fn configs(dialect: Dialect, transport: Transport, mode: Mode) -> (ConnConfig, ConnConfig) {
    let mut c = ConnConfig::new(dialect, transport, 2);
    let mut s = ConnConfig::new(dialect, transport, 1);
    match mode {
        Mode::Plain => c.handshake.mode = CryptoMode::None,
        Mode::Encrypt => {}
        Mode::Password => {
            c.handshake.mode = CryptoMode::Full;
            c.handshake.password = Some(password());
            s.handshake.password = Some(password());
        }
    }
    (c, s)
}

/// Two connections wired back to back; every transmit is delivered to the other side, cut by `chunk`.
struct Pair {
    now: Instant,
    client: Conn,
    server: Conn,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    /// Every byte the client transmitted, in order.
    c2s: Vec<u8>,
    chunk: usize,
}

impl Pair {
    fn new(c: ConnConfig, s: ConnConfig) -> Pair {
        let now = Instant::now_for_tests();
        Pair {
            now,
            client: Conn::client(c, now),
            server: Conn::server(s, now),
            client_events: Vec::new(),
            server_events: Vec::new(),
            c2s: Vec::new(),
            chunk: usize::MAX,
        }
    }

    /// Moves bytes until neither side has anything to say.
    fn run(&mut self) {
        loop {
            let mut moved = false;
            while let Some(o) = self.client.poll_output() {
                match o {
                    Output::Transmit(b) => {
                        moved = true;
                        self.c2s.extend_from_slice(&b);
                        for c in b.chunks(self.chunk) {
                            self.server.handle_input(Input::Bytes(Bytes::copy_from_slice(c)), self.now);
                        }
                    }
                    Output::Event(e) => self.client_events.push(e),
                }
            }
            while let Some(o) = self.server.poll_output() {
                match o {
                    Output::Transmit(b) => {
                        moved = true;
                        for c in b.chunks(self.chunk) {
                            self.client.handle_input(Input::Bytes(Bytes::copy_from_slice(c)), self.now);
                        }
                    }
                    Output::Event(e) => self.server_events.push(e),
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn send(&mut self, p: Packet) {
        self.client.handle_input(Input::Send(p), self.now);
        self.run();
    }

    /// Advances virtual time to the earliest deadline of either side and fires it.
    fn advance(&mut self) -> Duration {
        let start = self.now;
        let next = [self.client.poll_timeout(), self.server.poll_timeout()].into_iter().flatten().min();
        let Some(t) = next else { return Duration::ZERO };
        self.now = t;
        self.client.handle_input(Input::Timeout, t);
        self.server.handle_input(Input::Timeout, t);
        self.run();
        t - start
    }
}

fn packets(events: &[Event]) -> Vec<Packet> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Packet(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn violation(events: &[Event]) -> Option<&Error> {
    events.iter().find_map(|e| match e {
        Event::Violation(e) => Some(e),
        _ => None,
    })
}

fn app_packets() -> Vec<Packet> {
    vec![
        Packet::new(PacketType::CLIENT_CAPABILITIES, vec![0u8; 160]),
        Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]),
        Packet::new(PacketType::IMAGE_FRAME, vec![7u8; 40_000]),
        Packet::empty(PacketType::PING),
    ]
}

/// One whole conversation: handshake, four packets, the server's automatic PONG.
fn converse(
    dialect: Dialect,
    transport: Transport,
    mode: Mode,
    fragment: Option<usize>,
    chunk: usize,
) -> Pair {
    let (mut c, s) = configs(dialect, transport, mode);
    c.ws_fragment = fragment;
    let mut pair = Pair::new(c, s);
    pair.chunk = chunk;
    pair.run();
    for p in app_packets() {
        pair.send(p);
    }
    pair
}

fn modes(transport: Transport) -> Vec<Mode> {
    match transport {
        Transport::Tcp => vec![Mode::Plain, Mode::Encrypt, Mode::Password],
        // WebSocket always runs the key exchange (4.4); a plaintext client just ignores it.
        Transport::WebSocket => vec![Mode::Plain, Mode::Encrypt, Mode::Password],
    }
}

#[test]
fn every_dialect_transport_and_mode_converses() {
    for dialect in [Dialect::Feb, Dialect::Head] {
        for transport in [Transport::Tcp, Transport::WebSocket] {
            for mode in modes(transport) {
                for fragment in [None, Some(4096)] {
                    if fragment.is_some() && transport == Transport::Tcp {
                        continue;
                    }
                    let ctx = format!("{dialect} {transport} {mode:?} fragment {fragment:?}");
                    let pair = converse(dialect, transport, mode, fragment, 1000);
                    let encrypted = mode != Mode::Plain;
                    assert_eq!(violation(&pair.server_events), None, "{ctx}: server");
                    assert_eq!(violation(&pair.client_events), None, "{ctx}: client");
                    assert!(
                        pair.server_events.contains(&Event::HandshakeDone { encrypted }),
                        "{ctx}: {:?}",
                        pair.server_events
                    );
                    assert!(pair.client_events.contains(&Event::HandshakeDone { encrypted }), "{ctx}");
                    assert_eq!(packets(&pair.server_events), app_packets(), "{ctx}");
                    // A plaintext WebSocket client sees the server's unanswered key-exchange opener (4.4).
                    let to_client: Vec<Packet> = packets(&pair.client_events)
                        .into_iter()
                        .filter(|p| !p.packet_type.is_handshake())
                        .collect();
                    assert_eq!(to_client, vec![Packet::empty(PacketType::PONG)], "{ctx}");
                    assert_eq!(
                        (pair.client.state(), pair.server.state()),
                        (State::Open, State::Open),
                        "{ctx}"
                    );
                    assert_eq!(pair.client.is_encrypted(), encrypted, "{ctx}");
                    // On a TCP wire the IMAGE_FRAME is readable exactly when the session is plaintext.
                    let plain_image = Packet::new(PacketType::IMAGE_FRAME, vec![7u8; 40_000]).encode();
                    let on_wire = pair.c2s.windows(64).any(|w| w == &plain_image[22..86]);
                    if transport == Transport::Tcp {
                        assert_eq!(on_wire, !encrypted, "{ctx}");
                    }
                }
            }
        }
    }
}

#[test]
fn packets_sent_before_the_handshake_ends_wait_for_it() {
    let (c, s) = configs(Dialect::Head, Transport::Tcp, Mode::Encrypt);
    let mut pair = Pair::new(c, s);
    pair.client.handle_input(Input::Send(Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1])), pair.now);
    pair.run();
    assert_eq!(packets(&pair.server_events), vec![Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1])]);
}

#[test]
fn close_from_either_side_is_answered_and_reported() {
    for dialect in [Dialect::Feb, Dialect::Head] {
        for client_closes in [true, false] {
            let mut pair = converse(dialect, Transport::WebSocket, Mode::Encrypt, None, usize::MAX);
            let (closer, other) =
                if client_closes { (&mut pair.client, "server") } else { (&mut pair.server, "client") };
            closer.handle_input(Input::Close { code: 1001, reason: "going".into() }, pair.now);
            assert_eq!(closer.state(), State::Closing);
            pair.run();
            let (closer_events, other_events) = if client_closes {
                (&pair.client_events, &pair.server_events)
            } else {
                (&pair.server_events, &pair.client_events)
            };
            assert!(
                other_events.contains(&Event::PeerClosed { code: Some(1001), reason: "going".into() }),
                "{other}: {other_events:?}"
            );
            // The answer echoes the code.
            assert!(closer_events.contains(&Event::PeerClosed { code: Some(1001), reason: String::new() }));
            assert_eq!((pair.client.state(), pair.server.state()), (State::Closed, State::Closed));
            // Nothing more goes out after the close.
            pair.client.handle_input(Input::Send(Packet::empty(PacketType::PING)), pair.now);
            assert_eq!(pair.client.poll_output(), None);
        }
    }
}

/// A server connection after a completed plaintext-client WebSocket handshake, plus what it said so far.
fn open_ws_server(dialect: Dialect) -> (Conn, Instant) {
    let (c, s) = configs(dialect, Transport::WebSocket, Mode::Plain);
    let mut pair = Pair::new(c, s);
    pair.send(Packet::new(PacketType::CLIENT_CAPABILITIES, vec![0u8; 160]));
    assert_eq!(pair.server.state(), State::Open);
    (pair.server, pair.now)
}

fn client_frame(op: OpCode, fin: bool, payload: &[u8]) -> Bytes {
    let mut out = Vec::new();
    encode_frame(op, fin, Some([1, 2, 3, 4]), payload, &mut out);
    Bytes::from(out)
}

/// Feeds `bytes` and returns the violation and the close code the connection sent.
fn fails_with(conn: &mut Conn, now: Instant, inputs: Vec<Input>) -> (Error, Option<u16>) {
    for i in inputs {
        conn.handle_input(i, now);
    }
    let mut close = None;
    let mut error = None;
    while let Some(o) = conn.poll_output() {
        match o {
            Output::Transmit(b) => {
                let mut d = FrameDecoder::new(1 << 20);
                d.handle_bytes(&b);
                while let Some(Ok(f)) = d.poll_frame() {
                    if f.opcode == OpCode::Close {
                        close = parse_close(&f.payload).unwrap().code;
                    }
                }
            }
            Output::Event(Event::Violation(e)) => error = Some(e),
            Output::Event(_) => {}
        }
    }
    assert_eq!(conn.state(), State::Closed);
    (error.expect("a violation"), close)
}

#[test]
fn every_websocket_violation_gets_its_close_code() {
    let image = Packet::new(PacketType::IMAGE_FRAME, vec![1u8; 100]).encode();
    let cases: Vec<(&str, Dialect, Vec<Input>, &str, u16)> = vec![
        (
            "unmasked frame",
            Dialect::Feb,
            vec![Input::Bytes({
                let mut out = Vec::new();
                encode_frame(OpCode::Binary, true, None, &image, &mut out);
                out.into()
            })],
            "unmasked_frame",
            1002,
        ),
        (
            "close code 999",
            Dialect::Feb,
            vec![Input::Bytes(client_frame(OpCode::Close, true, &999u16.to_be_bytes()))],
            "invalid_close",
            1002,
        ),
        (
            "1-byte close",
            Dialect::Head,
            vec![Input::Bytes(client_frame(OpCode::Close, true, &[3]))],
            "invalid_close",
            1002,
        ),
        (
            "close reason not UTF-8",
            Dialect::Feb,
            vec![Input::Bytes(client_frame(OpCode::Close, true, &[3, 232, 0xff]))],
            "invalid_close",
            1002,
        ),
        (
            "bad UTF-8 in the 2nd TEXT fragment",
            Dialect::Head,
            vec![
                // The magic is valid UTF-8 (00 00 00 0A 5C 11 C4 A1): only the 2nd fragment is wrong.
                Input::Bytes(client_frame(OpCode::Text, false, &image[..8])),
                Input::Bytes(client_frame(OpCode::Continuation, false, &[0xc0, 0x80])),
            ],
            "invalid_utf8",
            1007,
        ),
        (
            "BINARY before FIN (feb)",
            Dialect::Feb,
            vec![
                Input::Bytes(client_frame(OpCode::Binary, false, &image[..50])),
                Input::Bytes(client_frame(OpCode::Binary, true, &image)),
            ],
            "data_frame_before_fin",
            1002,
        ),
        (
            "BINARY before FIN (head)",
            Dialect::Head,
            vec![
                Input::Bytes(client_frame(OpCode::Binary, false, &image[..50])),
                Input::Bytes(client_frame(OpCode::Binary, true, &image)),
            ],
            "data_frame_before_fin",
            1002,
        ),
        (
            "CONTINUATION without a message",
            Dialect::Feb,
            vec![Input::Bytes(client_frame(OpCode::Continuation, true, &image))],
            "continuation_without_start",
            1002,
        ),
        (
            "bad magic",
            Dialect::Feb,
            vec![Input::Bytes(client_frame(OpCode::Binary, true, &[0u8; 22]))],
            "bad_magic",
            1002,
        ),
        (
            "two packets in one feb message",
            Dialect::Feb,
            vec![Input::Bytes(client_frame(OpCode::Binary, true, &[image.clone(), image.clone()].concat()))],
            "message_longer_than_packet",
            1002,
        ),
        (
            "message over the limit",
            Dialect::Feb,
            vec![Input::Bytes({
                // Two 3 MiB fragments: each frame is allowed, the message is not (5 MiB + 22).
                let big = vec![0u8; 3 * 1024 * 1024];
                let mut out = Vec::new();
                encode_frame(OpCode::Binary, false, Some([1, 2, 3, 4]), &big, &mut out);
                encode_frame(OpCode::Continuation, false, Some([1, 2, 3, 4]), &big, &mut out);
                out.into()
            })],
            "message_too_large",
            1009,
        ),
    ];
    for (what, dialect, inputs, kind, code) in cases {
        let (mut conn, now) = open_ws_server(dialect);
        let (e, close) = fails_with(&mut conn, now, inputs);
        assert_eq!((e.kind(), close), (kind, Some(code)), "{what}: {e}");
    }
}

#[test]
fn feb_reassembly_times_out_in_virtual_time() {
    let (c, mut s) = configs(Dialect::Feb, Transport::WebSocket, Mode::Plain);
    s.reassembly = s.reassembly.with_timeout(Duration::from_millis(100));
    let mut pair = Pair::new(c, s);
    pair.send(Packet::new(PacketType::CLIENT_CAPABILITIES, vec![0u8; 160]));
    let image = Packet::new(PacketType::IMAGE_FRAME, vec![1u8; 100]).encode();
    pair.server.handle_input(Input::Bytes(client_frame(OpCode::Binary, false, &image[..30])), pair.now);
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + Duration::from_millis(100)));
    assert_eq!(pair.advance(), Duration::from_millis(100));
    let e = violation(&pair.server_events).expect("timeout");
    assert!(matches!(e, Error::Reassembly(ReassemblyError::Timeout { fragments: 1, bytes: 30, .. })), "{e}");
    assert!(pair.client_events.iter().any(|e| matches!(e, Event::PeerClosed { code: Some(1002), .. })));
}

#[test]
fn a_silent_tcp_client_fails_the_handshake_after_one_second_with_an_error_message() {
    let (_, s) = configs(Dialect::Head, Transport::Tcp, Mode::Encrypt);
    let now = Instant::now_for_tests();
    let mut server = Conn::server(s, now);
    let deadline = server.poll_timeout().expect("a handshake deadline");
    assert_eq!(deadline - now, Duration::from_secs(1));
    server.handle_input(Input::Timeout, deadline);
    let mut sent = Vec::new();
    let mut err = None;
    while let Some(o) = server.poll_output() {
        match o {
            Output::Transmit(b) => sent.extend_from_slice(&b),
            Output::Event(Event::Violation(e)) => err = Some(e),
            Output::Event(_) => {}
        }
    }
    assert_eq!(err.map(|e| e.kind()), Some("handshake"));
    let mut d = StreamDecoder::new(Limits::default());
    d.handle_bytes(&sent);
    let p = d.poll_packet().expect("an ERROR_MESSAGE").unwrap();
    assert_eq!(p.packet_type, PacketType::ERROR_MESSAGE);
    assert_eq!(ErrorMessage::decode(&p.payload).unwrap().error_code, ErrorMessage::CRYPTO_AUTH);
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn tcp_framing_errors_close_silently() {
    let (c, s) = configs(Dialect::Head, Transport::Tcp, Mode::Plain);
    let mut pair = Pair::new(c, s);
    pair.send(Packet::new(PacketType::CLIENT_CAPABILITIES, vec![0u8; 160]));
    let (e, close) = fails_with(&mut pair.server, pair.now, vec![Input::Bytes(Bytes::from(vec![0u8; 30]))]);
    assert_eq!((e.kind(), close), ("bad_magic", None));
    assert!(matches!(e, Error::Codec(_)));
}

#[test]
fn websocket_ping_is_answered_with_pong() {
    let (mut conn, now) = open_ws_server(Dialect::Feb);
    conn.handle_input(Input::Bytes(client_frame(OpCode::Ping, true, b"hi")), now);
    let Some(Output::Transmit(b)) = conn.poll_output() else { panic!("no PONG") };
    let mut d = FrameDecoder::with_config(FrameDecoderConfig {
        require_mask: Some(false),
        ..FrameDecoderConfig::default()
    });
    d.handle_bytes(&b);
    let f = d.poll_frame().unwrap().unwrap();
    assert_eq!((f.opcode, &f.payload[..]), (OpCode::Pong, &b"hi"[..]));
    assert_eq!(conn.state(), State::Open);
    let _ = FrameError::ReservedOpcode(3); // the error type every frame violation above comes from
}

/// The reference events of a server fed a conversation's client bytes in `chunks`.
fn server_events_for(c2s: &[u8], cuts: &[usize], s: ConnConfig, broken: bool) -> Vec<Event> {
    let now = Instant::now_for_tests();
    let mut server = Conn::server(s, now);
    server.broken_forget_partial = broken;
    let mut last = 0;
    let mut events = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (c2s.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(c2s.len());
    for c in cuts {
        server.handle_input(Input::Bytes(Bytes::copy_from_slice(&c2s[last..c])), now);
        last = c;
        while let Some(o) = server.poll_output() {
            if let Output::Event(e) = o {
                events.push(e);
            }
        }
    }
    events
}

fn recorded(dialect: Dialect, transport: Transport, mode: Mode) -> (Vec<u8>, ConnConfig, Vec<Event>) {
    type Recordings = Vec<((Dialect, Transport, Mode), Vec<u8>)>;
    static CACHE: OnceLock<std::sync::Mutex<Recordings>> = OnceLock::new();
    let (_, s) = configs(dialect, transport, mode);
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    let key = (dialect, transport, mode);
    let c2s = match cache.iter().find(|(k, _)| *k == key) {
        Some((_, b)) => b.clone(),
        None => {
            let b = converse(dialect, transport, mode, Some(1000), usize::MAX).c2s;
            cache.push((key, b.clone()));
            b
        }
    };
    let whole = server_events_for(&c2s, &[], s.clone(), false);
    (c2s, s, whole)
}

fn any_conversation() -> impl Strategy<Value = (Dialect, Transport, Mode, Vec<usize>)> {
    (
        prop_oneof![Just(Dialect::Feb), Just(Dialect::Head)],
        prop_oneof![Just(Transport::Tcp), Just(Transport::WebSocket)],
        prop_oneof![Just(Mode::Plain), Just(Mode::Encrypt)],
        proptest::collection::vec(any::<usize>(), 0..24),
    )
}

fn chunking_model(
    (dialect, transport, mode, cuts): (Dialect, Transport, Mode, Vec<usize>),
    broken: bool,
) -> Result<(), TestCaseError> {
    let (c2s, s, whole) = recorded(dialect, transport, mode);
    prop_assert_eq!(packets(&whole), app_packets());
    let chunked = server_events_for(&c2s, &cuts, s, broken);
    prop_assert_eq!(chunked, whole);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Any chunking of a whole recorded conversation gives the same events.
    #[test]
    fn any_chunking_gives_the_same_events(conv in any_conversation()) {
        chunking_model(conv, false)?;
    }
}

/// The broken variant forgets a partial packet or frame between reads; the model must catch it.
#[test]
fn the_chunking_model_catches_a_connection_that_forgets_partial_input() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let result = runner.run(&any_conversation(), |conv| chunking_model(conv, true));
    assert!(result.is_err(), "the chunking model did not catch a connection that drops partial reads");
}

/// With `frame_ws` off (a WebSocket library in the shell), packets go in and out whole, and the same
/// conversation gives the same packets and handshake result.
#[test]
fn a_shell_that_frames_messages_itself_gets_the_same_conversation() {
    for dialect in [Dialect::Feb, Dialect::Head] {
        for transport in [Transport::Tcp, Transport::WebSocket] {
            for mode in [Mode::Plain, Mode::Encrypt] {
                let ctx = format!("{dialect} {transport} {mode:?}");
                let (mut c, mut s) = configs(dialect, transport, mode);
                c.frame_ws = false;
                s.frame_ws = false;
                let now = Instant::now_for_tests();
                let (mut client, mut server) = (Conn::client(c, now), Conn::server(s, now));
                let (mut cev, mut sev) = (Vec::new(), Vec::new());
                fn drain(from: &mut Conn, to: &mut Conn, evs: &mut Vec<Event>, now: Instant) -> bool {
                    let mut moved = false;
                    while let Some(o) = from.poll_output() {
                        match o {
                            Output::Transmit(b) => {
                                moved = true;
                                let p =
                                    Packet::decode_exact(b, &Limits::default()).expect("one whole packet");
                                to.handle_input(Input::Packet(p), now);
                            }
                            Output::Event(e) => evs.push(e),
                        }
                    }
                    moved
                }
                let mut pump = |client: &mut Conn, server: &mut Conn| {
                    while drain(client, server, &mut cev, now) | drain(server, client, &mut sev, now) {}
                };
                pump(&mut client, &mut server);
                for p in app_packets() {
                    client.handle_input(Input::Send(p), now);
                    pump(&mut client, &mut server);
                }
                let encrypted = mode != Mode::Plain;
                assert!(sev.contains(&Event::HandshakeDone { encrypted }), "{ctx}: {sev:?}");
                assert_eq!(packets(&sev), app_packets(), "{ctx}");
                assert_eq!(client.into_session().is_some(), encrypted, "{ctx}");
            }
        }
    }
}

/// After an encrypted TCP handshake a server refuses plaintext application packets (the real server's
/// rule) and ignores REKEY_* (4.8), keeping the session.
#[test]
fn an_encrypted_tcp_server_refuses_plaintext_and_ignores_rekeys() {
    let pair = converse(Dialect::Head, Transport::Tcp, Mode::Encrypt, None, usize::MAX);
    let Pair { mut server, now, .. } = pair;
    server.handle_input(
        Input::Bytes(Bytes::from(Packet::empty(PacketType::CRYPTO_REKEY_REQUEST).encode())),
        now,
    );
    assert_eq!(server.state(), State::Open);
    while server.poll_output().is_some() {}
    let plain = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]).encode();
    let (e, _) = fails_with(&mut server, now, vec![Input::Bytes(Bytes::from(plain))]);
    assert_eq!(e.kind(), "plaintext_after_handshake", "{e}");
}

/// A TCP peer's ERROR_MESSAGE is reported as the packet it is and as the peer closing, with its text.
#[test]
fn an_error_message_on_tcp_is_the_peer_closing() {
    let (c, s) = configs(Dialect::Feb, Transport::Tcp, Mode::Plain);
    let mut pair = Pair::new(c, s);
    pair.send(Packet::new(PacketType::CLIENT_CAPABILITIES, vec![0u8; 160]));
    let mut payload = Vec::new();
    ErrorMessage::new(ErrorMessage::NETWORK, "server full").encode_into(&mut payload);
    let p = Packet::new(PacketType::ERROR_MESSAGE, payload);
    pair.client.handle_input(Input::Bytes(Bytes::from(p.encode())), pair.now);
    let mut events = Vec::new();
    while let Some(o) = pair.client.poll_output() {
        if let Output::Event(e) = o {
            events.push(e);
        }
    }
    assert_eq!(
        events,
        vec![Event::Packet(p), Event::PeerClosed { code: None, reason: "server full".into() }]
    );
}

/// A wrong password: the server's CRYPTO_AUTH_FAILED still goes out before the connection fails, so the
/// client learns why (the handshake queued it on the way out).
#[test]
fn a_refused_client_is_told_auth_failed_before_the_close() {
    for transport in [Transport::Tcp, Transport::WebSocket] {
        let (mut c, s) = configs(Dialect::Feb, transport, Mode::Password);
        c.handshake.password = Some(Password::derive("wrong password").unwrap());
        let mut pair = Pair::new(c, s);
        pair.run();
        let sent = pair.server_events.iter().any(|e| {
            matches!(e, Event::HandshakePacket { sent: true, packet_type: PacketType::CRYPTO_AUTH_FAILED })
        });
        assert!(sent, "{transport:?}: {:?}", pair.server_events);
        assert!(matches!(violation(&pair.server_events), Some(Error::Handshake(_))), "{transport:?}");
        let told = violation(&pair.client_events).map(|e| e.to_string()).unwrap_or_default();
        assert!(told.contains("refused authentication"), "{transport:?}: {told}");
    }
}

/// A shell that seals on another task takes the sealing half: the connection still decrypts what the
/// peer sends, and refuses to seal anything itself (no shared nonce counter).
#[test]
fn after_take_sealer_the_connection_decrypts_and_refuses_to_seal() {
    let (c, s) = configs(Dialect::Head, Transport::Tcp, Mode::Encrypt);
    let mut pair = Pair::new(c, s);
    pair.run();
    assert_eq!(pair.server.take_sealer().map(|_| ()), Some(()));
    assert!(pair.server.take_sealer().is_none(), "taken once");
    assert!(pair.server.is_encrypted());
    let caps = Packet::new(PacketType::CLIENT_CAPABILITIES, vec![0u8; 160]);
    pair.send(caps.clone());
    assert_eq!(packets(&pair.server_events), vec![caps]);
    let (e, _) = fails_with(&mut pair.server, pair.now, vec![Input::Send(Packet::empty(PacketType::PONG))]);
    assert_eq!(e, Error::Crypto(CryptoError::SealerMoved(PacketType::PONG)));
}

/// ACIP-SPEC.md 1.4 (c) with `drop_unusable`: an ENCRYPTED packet that does not decrypt and a stray
/// handshake packet are dropped and reported, and the connection carries on; without it they fail it.
#[test]
fn drop_unusable_keeps_the_connection_up() {
    for drop in [true, false] {
        let (c, mut s) = configs(Dialect::Feb, Transport::WebSocket, Mode::Encrypt);
        s.drop_unusable = drop;
        let mut pair = Pair::new(c, s);
        pair.run();
        let junk = Packet::new(PacketType::ENCRYPTED, vec![7u8; 80]).encode();
        let init = Packet::new(PacketType::CRYPTO_KEY_EXCHANGE_INIT, vec![0u8; 32]).encode();
        for wire in [junk, init] {
            pair.server.handle_input(Input::Bytes(client_frame(OpCode::Binary, true, &wire)), pair.now);
        }
        pair.run();
        let dropped: Vec<&str> = pair
            .server_events
            .iter()
            .filter_map(|e| match e {
                Event::Dropped(e) => Some(e.kind()),
                _ => None,
            })
            .collect();
        if drop {
            assert_eq!(dropped, vec!["decrypt_failed", "crypto"]);
            let ping = Packet::empty(PacketType::PING);
            pair.send(ping.clone());
            assert!(packets(&pair.server_events).contains(&ping), "still up");
            assert_eq!(pair.server.state(), State::Open);
        } else {
            assert!(dropped.is_empty());
            assert_eq!(violation(&pair.server_events).map(Error::kind), Some("decrypt_failed"));
            assert_eq!(pair.server.state(), State::Closed);
        }
    }
}

/// The receive side alone, in wire order: two `head` packets in one frame, a PING between frames, a
/// CLOSE that ends it, and nothing after.
#[test]
fn the_receiver_yields_packets_and_controls_in_wire_order() {
    let limits = Limits::default();
    let mut rx = Receiver::new(
        Transport::WebSocket,
        Dialect::Head,
        limits,
        ReassemblerConfig::from_limits(&limits),
        false,
    );
    let a = Packet::empty(PacketType::PING);
    let b = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]);
    let mut two = a.encode();
    two.extend_from_slice(&b.encode());
    let now = Instant::now_for_tests();
    let mut wire = Vec::new();
    wire.extend_from_slice(&client_frame(OpCode::Binary, false, &two[..10]));
    wire.extend_from_slice(&client_frame(OpCode::Ping, true, b"hi"));
    wire.extend_from_slice(&client_frame(OpCode::Continuation, true, &two[10..]));
    wire.extend_from_slice(&client_frame(OpCode::Close, true, &close_payload(1001, "bye")));
    wire.extend_from_slice(&client_frame(OpCode::Binary, true, &a.encode()));
    // Byte by byte: the cut never matters.
    let mut got = Vec::new();
    for byte in wire {
        rx.handle_bytes(&[byte]);
        while let Some(r) = rx.poll(now) {
            got.push(r.unwrap());
        }
    }
    let close = parse_close(&close_payload(1001, "bye")).unwrap();
    assert_eq!(
        got,
        vec![
            Received::Ping(Bytes::from_static(b"hi")),
            Received::Packet { packet: a, wire: 22, gaps: vec![] },
            Received::Packet { packet: b.clone(), wire: b.wire_len(), gaps: vec![] },
            Received::Close(close),
        ]
    );
    assert!(rx.poll(now).is_none());
}

/// Read straight into the receiver's buffer, `read_hint` bytes at a time, on every framing: the same
/// packets come out, each with its verified payload CRC.
#[test]
fn reading_into_the_receiver_gives_packets_and_their_crcs() {
    let limits = Limits::default();
    let packets = [
        Packet::new(PacketType::IMAGE_FRAME, vec![7u8; 70_000]),
        Packet::empty(PacketType::PING),
        Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]),
    ];
    for (transport, dialect) in [
        (Transport::Tcp, Dialect::Head),
        (Transport::WebSocket, Dialect::Head),
        (Transport::WebSocket, Dialect::Feb),
    ] {
        let mut wire = Vec::new();
        for p in &packets {
            match transport {
                Transport::Tcp => p.encode_into(&mut wire),
                Transport::WebSocket => {
                    wire.extend_from_slice(&client_frame(OpCode::Binary, true, &p.encode()))
                }
            }
        }
        let mut rx =
            Receiver::new(transport, dialect, limits, ReassemblerConfig::from_limits(&limits), false);
        let now = Instant::now_for_tests();
        let (mut off, mut got) = (0, Vec::new());
        while off < wire.len() {
            let n = rx.read_hint().min(4096).min(wire.len() - off);
            rx.recv_buf(n).extend_from_slice(&wire[off..off + n]);
            off += n;
            while let Some(r) = rx.poll(now) {
                let Received::Packet { packet, .. } = r.unwrap() else { panic!("not a packet") };
                assert_eq!(rx.last_packet_crc(), Some(packet.header().crc32), "{transport:?} {dialect}");
                got.push(packet);
            }
        }
        assert_eq!(got, packets, "{transport:?} {dialect}");
        assert!(rx.is_at_boundary());
        assert_eq!(rx.last_packet_crc(), None);
    }
}
