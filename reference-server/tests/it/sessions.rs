//! Handshakes per dialect x transport x mode, and a session that streams, renders and tears down
//! (ACIP-SPEC.md 4.3, 4.4, 7.2-7.5).

use acip::codec::payloads::{AsciiFrame, ServerState};
use acip::crypto::CryptoMode;
use acip::{Dialect, PacketType};

use crate::util::*;

/// Joins, streams a few frames and checks SERVER_STATE, CLEAR_CONSOLE and a rendered ASCII_FRAME.
async fn stream_and_render(p: &mut Peer) {
    p.join(40, 12, 60).await;
    for seq in 0..3 {
        p.send(&pattern_frame(64, 48, seq)).await;
    }
    p.recv_type(PacketType::CLEAR_CONSOLE).await;
    let f = p.recv_type(PacketType::ASCII_FRAME).await;
    let frame = AsciiFrame::decode(&f.payload).expect("valid ASCII_FRAME with a correct CRC-32C");
    assert_eq!((frame.width, frame.height), (40, 12));
    assert_eq!(frame.text.len(), 40 * 12 + 11);
    assert!(frame.text.iter().any(|&c| c != b' ' && c != b'\n'), "the picture is not blank");
    p.send(&acip::Packet::empty(PacketType::PING)).await;
    p.recv_type(PacketType::PONG).await;
}

async fn session(dialect: Dialect, ws: bool, mode: CryptoMode) {
    let server = server(|c| c.dialect = dialect).await;
    let mut p = if ws {
        Peer::ws(server.ws_addr().unwrap(), dialect, Some("acip")).await.0
    } else {
        Peer::tcp(server.tcp_addr().unwrap(), dialect).await
    };
    p.handshake(mode).await;
    assert_eq!(p.session.is_some(), mode.encrypts() || (ws && mode != CryptoMode::None));
    stream_and_render(&mut p).await;
    let stats = server.stats();
    assert_eq!(stats.active_clients, 1);
    assert!(stats.counters.frames_received >= 3, "{:?}", stats.counters);
    assert_eq!(stats.counters.frames_corrupt, 0);
    drop(p);
    settle(&server).await;
    let stats = server.stats();
    assert_eq!((stats.active_clients, stats.double_releases), (0, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn feb_tcp_plaintext() {
    session(Dialect::Feb, false, CryptoMode::None).await;
}
#[tokio::test]
async fn feb_tcp_encrypted() {
    session(Dialect::Feb, false, CryptoMode::Encrypt).await;
}
#[tokio::test]
async fn head_tcp_plaintext() {
    session(Dialect::Head, false, CryptoMode::None).await;
}
#[tokio::test]
async fn head_tcp_encrypted() {
    session(Dialect::Head, false, CryptoMode::Encrypt).await;
}
#[tokio::test]
async fn feb_ws_encrypted() {
    session(Dialect::Feb, true, CryptoMode::Encrypt).await;
}
#[tokio::test]
async fn head_ws_encrypted() {
    session(Dialect::Head, true, CryptoMode::Encrypt).await;
}

/// A WebSocket client may ignore the server's key exchange and talk plaintext (ACIP-SPEC.md 4.4).
#[tokio::test]
async fn ws_plaintext_client_ignores_the_key_exchange() {
    for dialect in [Dialect::Feb, Dialect::Head] {
        let server = server(|c| c.dialect = dialect).await;
        let (mut p, head) = Peer::ws(server.ws_addr().unwrap(), dialect, None).await;
        assert!(!head.contains("Sec-WebSocket-Protocol"), "no subprotocol offered, none answered");
        stream_and_render(&mut p).await;
        drop(p);
        settle(&server).await;
        server.shutdown().await;
    }
}

/// SERVER_STATE goes to everyone on join and leave; CLEAR_CONSOLE when the grid's source count changes.
#[tokio::test]
async fn join_and_leave_broadcast_server_state() {
    let server = server(|_| {}).await;
    let addr = server.tcp_addr().unwrap();
    let mut a = Peer::tcp(addr, Dialect::Feb).await;
    a.join(20, 5, 30).await;
    a.send(&pattern_frame(32, 32, 0)).await;
    let mut b = Peer::tcp(addr, Dialect::Feb).await;
    b.join(20, 5, 30).await;
    let st = loop {
        let p = a.recv_type(PacketType::SERVER_STATE).await;
        let st = ServerState::decode(&p.payload).unwrap();
        if st.active_client_count == 2 {
            break st;
        }
    };
    assert_eq!(st.connected_client_count, 2);
    b.send(&pattern_frame(32, 32, 0)).await;
    // Two sources now: a CLEAR_CONSOLE precedes the first two-source frame.
    a.recv_type(PacketType::CLEAR_CONSOLE).await;
    drop(b);
    loop {
        let p = a.recv_type(PacketType::SERVER_STATE).await;
        let st = ServerState::decode(&p.payload).unwrap();
        if st.active_client_count == 1 {
            assert_eq!(st.connected_client_count, 1, "the leaving client is not counted");
            break;
        }
    }
    drop(a);
    settle(&server).await;
    server.shutdown().await;
}

/// Password mode (ACIP-SPEC.md 4.3 steps 7b-9): the right password completes, a wrong one gets
/// AUTH_FAILED and a close; on both transports.
#[tokio::test]
async fn password_mode_accepts_the_right_password_only() {
    use acip::crypto::Password;
    let server = server(|c| c.password = Some("correct horse".into())).await;
    let right = Password::derive("correct horse").unwrap();
    let wrong = Password::derive("wrong battery").unwrap();
    for ws in [false, true] {
        let mut p = if ws {
            Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await.0
        } else {
            Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await
        };
        let r = right.clone();
        p.handshake_with(CryptoMode::Full, |c| c.password = Some(r)).await.expect("right password");
        stream_and_render(&mut p).await;
        let mut p = if ws {
            Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await.0
        } else {
            Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await
        };
        let w = wrong.clone();
        let err = p.handshake_with(CryptoMode::Full, |c| c.password = Some(w)).await.unwrap_err();
        assert!(err.contains("AUTH_FAILED") || err.contains("proof"), "{err}");
    }
    settle(&server).await;
    assert!(server.stats().counters.errors.get("handshake").copied().unwrap_or(0) >= 2);
    server.shutdown().await;
}

/// Identity key and client whitelist (ACIP-SPEC.md 4.3 steps 5-9): the client verifies the server's
/// signed key; a whitelisted client key gets in, another one does not.
#[tokio::test]
async fn identity_key_and_client_whitelist() {
    use ed25519_dalek::SigningKey;
    let server_key = SigningKey::from_bytes(&[7u8; 32]);
    let alice = SigningKey::from_bytes(&[1u8; 32]);
    let mallory = SigningKey::from_bytes(&[2u8; 32]);
    let server = server(|c| {
        c.identity_seed = Some([7u8; 32]);
        c.client_keys = vec![alice.verifying_key().to_bytes()];
    })
    .await;
    let addr = server.tcp_addr().unwrap();
    let mut p = Peer::tcp(addr, Dialect::Feb).await;
    let (sk, ak) = (server_key.verifying_key(), alice.clone());
    p.handshake_with(CryptoMode::Full, |c| {
        c.identity = Some(ak);
        c.expected_server_key = Some(sk);
    })
    .await
    .expect("whitelisted client");
    stream_and_render(&mut p).await;
    let mut q = Peer::tcp(addr, Dialect::Feb).await;
    let err = q.handshake_with(CryptoMode::Full, |c| c.identity = Some(mallory)).await.unwrap_err();
    assert!(err.contains("AUTH_FAILED") || err.contains("ended"), "{err}");
    drop(p);
    settle(&server).await;
    server.shutdown().await;
}

/// IPv6 loopback listeners (IPV6_V6ONLY set explicitly), skipped where the host has no IPv6.
#[tokio::test]
async fn ipv6_loopback_session() {
    let any6: std::net::SocketAddr = "[::1]:0".parse().unwrap();
    if std::net::TcpListener::bind(any6).is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let server = server(|c| {
        c.dialect = Dialect::Head;
        c.tcp = Some(any6);
        c.ws = Some(any6);
    })
    .await;
    assert!(server.ready_line().contains("tcp=[::1]:"), "{}", server.ready_line());
    let mut p = Peer::tcp(server.tcp_addr().unwrap(), Dialect::Head).await;
    p.handshake(CryptoMode::Encrypt).await;
    stream_and_render(&mut p).await;
    let (mut q, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Head, Some("acip")).await;
    q.handshake(CryptoMode::Encrypt).await;
    drop((p, q));
    settle(&server).await;
    server.shutdown().await;
}

/// ASCII frames follow the client's desired fps, capped at 60 (ACIP-SPEC.md 7.4).
#[tokio::test]
async fn ascii_frames_follow_the_desired_fps_capped_at_60() {
    let server = server(|_| {}).await;
    for (fps, lo, hi) in [(20u8, 35_000u64, 150_000u64), (144, 12_000, 60_000)] {
        let mut p = Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await;
        p.join(20, 5, fps).await;
        p.send(&pattern_frame(32, 24, 0)).await;
        for _ in 0..12 {
            p.recv_type(PacketType::ASCII_FRAME).await;
            p.send(&acip::Packet::empty(PacketType::PING)).await;
        }
        let st = server.stats();
        let c = st.per_connection.iter().find(|c| c.phase == "active").unwrap();
        let iv = c.stages["ascii_interval"];
        assert!((lo..=hi).contains(&iv.p50_us), "fps {fps}: {iv:?}");
        drop(p);
        settle(&server).await;
    }
    server.shutdown().await;
}

/// WebSocket drops what it cannot use and stays up (ACIP-SPEC.md 1.4 (c)): an unknown type and an
/// ENCRYPTED packet that does not decrypt are counted as drops, then PING still gets PONG.
#[tokio::test]
async fn websocket_drops_unknown_and_undecryptable_packets_and_stays_up() {
    let server = server(|_| {}).await;
    let (mut p, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await;
    p.handshake(CryptoMode::Encrypt).await;
    p.join(20, 5, 10).await;
    p.send(&acip::Packet::new(PacketType::from_u16(6190), vec![1])).await;
    let junk = acip::Packet::new(PacketType::ENCRYPTED, vec![7u8; 80]).encode();
    p.send_frame(acip::ws::OpCode::Binary, true, &junk, true).await;
    p.send(&acip::Packet::empty(PacketType::PING)).await;
    p.recv_type(PacketType::PONG).await;
    let st = server.stats();
    assert_eq!(st.counters.drops.get("unhandled_type"), Some(&1), "{:?}", st.counters.drops);
    assert_eq!(st.counters.drops.get("decrypt_failed"), Some(&1), "{:?}", st.counters.drops);
    drop(p);
    settle(&server).await;
    server.shutdown().await;
}
