//! Malformed input (ACIP-SPEC.md 1.4, RFC 6455 5): each case gets its typed error (counted by kind in the
//! server's stats) and a close, while a bystander keeps streaming undisturbed: its frame counter keeps
//! rising and nothing of it is lost.

use std::time::Duration;

use acip::codec::payloads::{ClientCapabilities, ClientJoin, ImageFrame, ProtocolVersion, StreamStart};
use acip::crypto::CryptoMode;
use acip::ws::OpCode;
use acip::{Dialect, Header, Packet, PacketType};
use reference_server::{ServerHandle, ERROR_NETWORK_PROTOCOL};
use tokio::io::AsyncWriteExt;

use crate::util::*;

/// What the bad peer must see.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// TCP close without an error packet (ACIP-SPEC.md 1.4 (b)).
    Eof,
    /// ERROR_MESSAGE 44 (after REMOTE_LOG on TCP), then the close (1.4 (c)).
    ErrorMessage,
    /// A WebSocket close frame with this code.
    WsClose(u16),
}

fn error_count(server: &ServerHandle, kind: &str) -> u64 {
    server.stats().counters.errors.get(kind).copied().unwrap_or(0)
}

/// Checks one case: the peer is closed as expected, the error kind is counted, the bystander moves on.
async fn check(
    server: &ServerHandle,
    by: &Bystander,
    name: &str,
    kind: &str,
    before: u64,
    p: &mut Peer,
    e: Expect,
) {
    let (closed, packets) = p.expect_close().await;
    match e {
        Expect::Eof => {
            assert_eq!(closed, Closed::Eof, "{name}");
            assert!(!types(&packets).contains(&PacketType::ERROR_MESSAGE), "{name}: {:?}", types(&packets));
        }
        Expect::ErrorMessage => {
            let err = packets.iter().find(|p| p.packet_type == PacketType::ERROR_MESSAGE);
            let err = err.unwrap_or_else(|| panic!("{name}: no ERROR_MESSAGE in {:?}", types(&packets)));
            let msg = acip::codec::payloads::ErrorMessage::decode(&err.payload).unwrap();
            assert_eq!(msg.error_code, ERROR_NETWORK_PROTOCOL, "{name}");
            if !p.ws {
                let t = types(&packets);
                let log = t.iter().position(|t| *t == PacketType::REMOTE_LOG);
                let err = t.iter().position(|t| *t == PacketType::ERROR_MESSAGE);
                assert!(log.is_some() && log < err, "{name}: REMOTE_LOG before ERROR_MESSAGE: {t:?}");
            }
        }
        Expect::WsClose(code) => match &closed {
            Closed::Ws { code: c, reason } => {
                assert_eq!(*c, code, "{name}: {reason}");
                assert!(!reason.is_empty(), "{name}: the close names the violation");
            }
            other => panic!("{name}: {other:?}"),
        },
    }
    let ok = server.wait_until(WAIT, |s| error_count(s, kind) > before).await;
    assert!(ok, "{name}: error kind {kind} not counted: {:?}", server.stats().counters.errors);
    let (frames, _) = by.frames(server);
    by.wait_past(server, frames).await;
}

fn header(t: PacketType, length: u32, crc: u32) -> Vec<u8> {
    Header { packet_type: t, length, crc32: crc, client_id: 0 }.to_bytes().to_vec()
}

fn caps_with(f: impl FnOnce(&mut ClientCapabilities)) -> Packet {
    let mut c = ClientCapabilities::new(Dialect::Feb, 80, 24, 30);
    f(&mut c);
    c.to_packet()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_inputs_are_rejected_while_a_bystander_streams() {
    let server = server(|c| {
        c.dialect = Dialect::Feb;
        c.tcp_idle_timeout = Duration::from_millis(500);
        c.reassembly_timeout = Duration::from_millis(100);
    })
    .await;
    let (tcp, ws) = (server.tcp_addr().unwrap(), server.ws_addr().unwrap());
    let by = Bystander::start(&server).await;
    by.wait_past(&server, 2).await;

    // A slowloris HTTP client, checked at the end: it holds its connection for the head timeout.
    let slowloris = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(ws).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n").await.unwrap();
        read_to_end(s).await
    });

    let mut cases = 0;
    macro_rules! case {
        ($name:expr, $kind:expr, $peer:expr, $expect:expr, |$p:ident| $body:block) => {{
            let before = error_count(&server, $kind);
            let mut $p = $peer;
            $body
            check(&server, &by, $name, $kind, before, &mut $p, $expect).await;
            cases += 1;
        }};
    }
    let tcp_peer = || Peer::tcp(tcp, Dialect::Feb);
    let ws_peer = || async { Peer::ws(ws, Dialect::Feb, Some("acip")).await.0 };

    case!("bad magic", "bad_magic", tcp_peer().await, Expect::Eof, |p| {
        p.send_raw(b"GARBAGE!\0\0\0\0\0\0\0\0\0\0\0\0\0\0").await;
    });
    case!("bad CRC", "crc_mismatch", tcp_peer().await, Expect::Eof, |p| {
        let mut b = caps_with(|_| {}).encode();
        b[30] ^= 0xFF;
        p.send_raw(&b).await;
    });
    case!("oversized length", "packet_too_large", tcp_peer().await, Expect::Eof, |p| {
        p.send_raw(&header(PacketType::IMAGE_FRAME, 5 * 1024 * 1024 + 1, 0)).await;
    });
    case!("length 0xFFFFFFFF", "length_sentinel", tcp_peer().await, Expect::Eof, |p| {
        p.send_raw(&header(PacketType::IMAGE_FRAME, u32::MAX, 0)).await;
    });
    case!("empty payload with a CRC", "nonzero_crc_for_empty", tcp_peer().await, Expect::Eof, |p| {
        p.send_raw(&header(PacketType::PING, 0, 1)).await;
    });
    case!("unknown type", "unhandled_type", tcp_peer().await, Expect::Eof, |p| {
        p.join(20, 5, 10).await;
        p.send(&Packet::new(PacketType::from_u16(4242), vec![1, 2, 3])).await;
    });
    case!(
        "CAPS of the wrong size (168 B to a feb server)",
        "violation",
        tcp_peer().await,
        Expect::ErrorMessage,
        |p| {
            p.send(&ClientCapabilities::new(Dialect::Head, 80, 24, 30).to_packet()).await;
        }
    );
    case!("CAPS width 0", "violation", tcp_peer().await, Expect::ErrorMessage, |p| {
        p.send(&caps_with(|c| c.width = 0)).await;
    });
    case!("CAPS desired_fps 200", "violation", tcp_peer().await, Expect::ErrorMessage, |p| {
        p.send(&caps_with(|c| c.desired_fps = 200)).await;
    });
    case!("IMAGE_FRAME width 0", "violation", tcp_peer().await, Expect::ErrorMessage, |p| {
        p.join(20, 5, 10).await;
        let mut f = ImageFrame::rgb24(1, 1, vec![0, 0, 0]);
        f.width = 0;
        p.send(&f.to_packet()).await;
    });
    case!("STREAM_START unknown bit", "violation", tcp_peer().await, Expect::ErrorMessage, |p| {
        p.join(20, 5, 10).await;
        p.send(&StreamStart::new(0x80).to_packet()).await;
    });
    case!("CLIENT_JOIN empty name", "violation", tcp_peer().await, Expect::ErrorMessage, |p| {
        p.join(20, 5, 10).await;
        p.send(&ClientJoin::new("", 1).to_packet()).await;
    });
    case!("media as the first packet", "handshake", tcp_peer().await, Expect::Eof, |p| {
        p.send(&pattern_frame(32, 24, 0)).await;
    });
    case!(
        "media before CLIENT_CAPABILITIES after the handshake",
        "caps_not_first",
        tcp_peer().await,
        Expect::Eof,
        |p| {
            p.handshake(CryptoMode::Encrypt).await;
            p.send(&pattern_frame(32, 24, 0)).await;
        }
    );
    case!("handshake out of order", "handshake", tcp_peer().await, Expect::Eof, |p| {
        p.send(&ProtocolVersion::new(1).to_packet()).await;
        p.recv_type(PacketType::PROTOCOL_VERSION).await;
        p.send(&Packet::new(PacketType::CRYPTO_KEY_EXCHANGE_RESP, vec![9u8; 32])).await;
    });
    case!("PROTOCOL_VERSION with mode NONE", "handshake", tcp_peer().await, Expect::Eof, |p| {
        p.send(&ProtocolVersion::new(0).to_packet()).await;
    });
    case!(
        "plaintext after an encrypted handshake",
        "plaintext_after_handshake",
        tcp_peer().await,
        Expect::Eof,
        |p| {
            p.handshake(CryptoMode::Encrypt).await;
            let caps = caps_with(|_| {});
            p.send_raw(&caps.encode()).await;
        }
    );
    case!("ENCRYPTED that does not decrypt", "decrypt_failed", tcp_peer().await, Expect::Eof, |p| {
        p.handshake(CryptoMode::Encrypt).await;
        p.send_raw(&Packet::new(PacketType::ENCRYPTED, vec![7u8; 80]).encode()).await;
    });
    case!("silent peer", "idle_timeout", tcp_peer().await, Expect::Eof, |p| {});
    case!("unmasked client frame", "unmasked_frame", ws_peer().await, Expect::WsClose(1002), |p| {
        p.send_frame(OpCode::Binary, true, &caps_with(|_| {}).encode(), false).await;
    });
    case!(
        "continuation without start",
        "continuation_without_start",
        ws_peer().await,
        Expect::WsClose(1002),
        |p| {
            p.send_frame(OpCode::Continuation, true, &[1, 2, 3], true).await;
        }
    );
    case!("BINARY before FIN", "data_frame_before_fin", ws_peer().await, Expect::WsClose(1002), |p| {
        let b = pattern_frame(64, 48, 0).encode();
        p.send_frame(OpCode::Binary, false, &b[..4096], true).await;
        p.send_frame(OpCode::Binary, false, &b[..4096], true).await;
    });
    case!(
        "message shorter than its packet",
        "message_shorter_than_packet",
        ws_peer().await,
        Expect::WsClose(1002),
        |p| {
            let b = pattern_frame(64, 48, 0).encode();
            p.send_frame(OpCode::Binary, true, &b[..100], true).await;
        }
    );
    case!("reserved opcode", "reserved_opcode", ws_peer().await, Expect::WsClose(1002), |p| {
        p.send_frame(OpCode::Reserved(0x3), true, &[0], true).await;
    });
    case!("fragmented control frame", "fragmented_control", ws_peer().await, Expect::WsClose(1002), |p| {
        p.send_frame(OpCode::Ping, false, &[0], true).await;
    });
    case!("reassembly timeout (100 ms)", "reassembly_timeout", ws_peer().await, Expect::WsClose(1002), |p| {
        let b = pattern_frame(64, 48, 0).encode();
        p.send_frame(OpCode::Binary, false, &b[..4096], true).await;
    });
    case!("bad magic over WebSocket", "bad_magic", ws_peer().await, Expect::WsClose(1002), |p| {
        let mut b = Packet::empty(PacketType::PING).encode();
        b[0] = 0xFF;
        p.send_frame(OpCode::Binary, true, &b, true).await;
    });
    case!("bad CRC over WebSocket", "crc_mismatch", ws_peer().await, Expect::WsClose(1002), |p| {
        let mut b = caps_with(|_| {}).encode();
        b[40] ^= 1;
        p.send_frame(OpCode::Binary, true, &b, true).await;
    });
    case!("CAPS height 5000 over WebSocket", "violation", ws_peer().await, Expect::ErrorMessage, |p| {
        p.send(&caps_with(|c| c.height = 5000)).await;
    });

    // HTTP before the upgrade: an oversized head gets 400 and a close; the slowloris head is cut off.
    let before = error_count(&server, "http_head_too_large");
    let mut s = tokio::net::TcpStream::connect(ws).await.unwrap();
    let big = format!("GET / HTTP/1.1\r\nX-Filler: {}\r\n", "a".repeat(10_000));
    s.write_all(big.as_bytes()).await.unwrap();
    let answer = read_to_end(s).await;
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(error_count(&server, "http_head_too_large"), before + 1);
    assert!(slowloris.await.unwrap().is_empty(), "no answer to an unfinished head");
    let ok = server.wait_until(WAIT, |s| error_count(s, "http_head_timeout") == 1).await;
    assert!(ok);
    cases += 2;
    assert!(cases >= 20, "{cases} cases");

    let (frames, lost) = by.frames(&server);
    assert!(frames > 10, "{frames}");
    assert_eq!(lost, 0, "the bystander lost nothing");
    by.stop().await;
    settle(&server).await;
    assert_eq!(server.stats().double_releases, 0);
    server.shutdown().await;
}

/// `head` WebSocket (RFC 6455 5.4, conformance 4.1.1 and 4.1.3): message boundaries mean nothing to ACIP
/// there, but frame order still does. A CONTINUATION with no message open, a CONTINUATION right after a
/// message that had FIN, and a BINARY before the open message's FIN each close with 1002 naming the
/// violation; a correctly fragmented packet (with a PING between fragments) is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_websocket_frame_order_is_checked() {
    let server = server(|c| c.dialect = Dialect::Head).await;
    let ws = server.ws_addr().unwrap();
    let ping = Packet::empty(PacketType::PING).encode();
    let expect_1002 = |name: &str, closed: Closed, words: &str| match closed {
        Closed::Ws { code, reason } => {
            assert_eq!(code, 1002, "{name}: {reason}");
            assert!(reason.contains(words), "{name}: {reason}");
        }
        other => panic!("{name}: {other:?}"),
    };

    let (mut p, _) = Peer::ws(ws, Dialect::Head, Some("acip")).await;
    p.send_frame(OpCode::Continuation, true, &ping, true).await;
    expect_1002("continuation first", p.expect_close().await.0, "no message in progress");

    let (mut p, _) = Peer::ws(ws, Dialect::Head, Some("acip")).await;
    p.send_frame(OpCode::Binary, true, &ping, true).await;
    p.recv_type(PacketType::PONG).await;
    p.send_frame(OpCode::Continuation, true, &ping, true).await;
    expect_1002("continuation after FIN", p.expect_close().await.0, "no message in progress");

    let (mut p, _) = Peer::ws(ws, Dialect::Head, Some("acip")).await;
    p.send_frame(OpCode::Binary, false, &ping[..10], true).await;
    p.send_frame(OpCode::Binary, true, &ping[10..], true).await;
    expect_1002("binary before FIN", p.expect_close().await.0, "before the previous message's FIN");

    let (mut p, _) = Peer::ws(ws, Dialect::Head, Some("acip")).await;
    p.send_frame(OpCode::Binary, false, &ping[..10], true).await;
    p.send_frame(OpCode::Ping, true, b"x", true).await;
    p.send_frame(OpCode::Continuation, true, &ping[10..], true).await;
    p.recv_type(PacketType::PONG).await;

    let ok = server
        .wait_until(WAIT, |s| {
            let e = &s.stats().counters.errors;
            e.get("continuation_without_start") == Some(&2) && e.get("data_frame_before_fin") == Some(&1)
        })
        .await;
    assert!(ok, "{:?}", server.stats().counters.errors);
    server.shutdown().await;
}

/// CRYPTO_NO_ENCRYPTION (1109) to an encrypting WebSocket server, after its opening KEY_EXCHANGE_INIT
/// (4.4): answered with CRYPTO_AUTH_FAILED (reason 0, 3.15) before the close, as the real server does
/// (ACIP-SPEC.md 2), not with a bare close (conformance 8.1.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_encryption_during_the_websocket_handshake_gets_auth_failed_then_close() {
    let server = server(|c| c.encrypt = true).await;
    let (mut p, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await;
    p.recv_type(PacketType::CRYPTO_KEY_EXCHANGE_INIT).await;
    p.send(&Packet::empty(PacketType::CRYPTO_NO_ENCRYPTION)).await;
    let (closed, packets) = p.expect_close().await;
    let failed = packets.iter().find(|p| p.packet_type == PacketType::CRYPTO_AUTH_FAILED);
    let failed = failed.unwrap_or_else(|| panic!("no AUTH_FAILED before the close: {:?}", types(&packets)));
    assert_eq!(&failed.payload[..], &[0u8; 8]);
    match closed {
        Closed::Ws { code, reason } => assert_eq!(code, 1008, "{reason}"),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}
