//! Slots and teardown (ACIP-SPEC.md 7.1, 7.5, 7.6): 1,000 connect/disconnect cycles against 32 slots, the
//! slot leak of 4dce9818 reproduced with `--fault slot-leak`, clients killed mid-fragment and
//! mid-handshake, kicks, and SERVER_FULL.

use acip::crypto::CryptoMode;
use acip::ws::OpCode;
use acip::{Dialect, Packet, PacketType};
use reference_server::SERVER_FULL_LINE;

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_cycles_against_32_slots_leave_nothing_behind() {
    let server = server(|c| c.max_clients = 32).await;
    let addr = server.tcp_addr().unwrap();
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8 {
        let failures = failures.clone();
        workers.push(tokio::spawn(async move {
            for _ in 0..125 {
                let mut p = Peer::tcp(addr, Dialect::Feb).await;
                let caps = p.caps(20, 5, 10);
                p.send(&caps).await;
                match p.recv().await {
                    Recv::Packet(pk) if pk.packet_type == PacketType::SERVER_STATE => {}
                    other => {
                        eprintln!("worker {w}: {other:?}");
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    settle(&server).await;
    let st = server.stats();
    assert_eq!(failures.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!((st.slots_in_use, st.double_releases), (0, 0));
    assert_eq!((st.counters.connections_opened, st.counters.connections_closed), (1000, 1000));
    assert_eq!(st.counters.rx(PacketType::CLIENT_CAPABILITIES), 1000);
    server.shutdown().await;
}

/// One WebSocket cycle: upgrade, plaintext CAPS, SERVER_STATE, close. `Err` with the close if refused.
async fn ws_cycle(server: &reference_server::ServerHandle) -> Result<(), Closed> {
    let (mut p, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await;
    let caps = p.caps(20, 5, 10);
    p.send(&caps).await;
    loop {
        match p.recv().await {
            Recv::Packet(pk) if pk.packet_type == PacketType::SERVER_STATE => break,
            Recv::Packet(_) => {}
            Recv::Closed(c) => return Err(c),
            Recv::NotAcip(b) => panic!("{b:?}"),
        }
    }
    p.send_frame(OpCode::Close, true, &1000u16.to_be_bytes(), true).await;
    let _ = p.expect_close().await;
    Ok(())
}

#[tokio::test]
async fn slot_leak_fault_fails_at_the_33rd_websocket_client() {
    let server = server(|c| c.faults.slot_leak = true).await;
    for i in 0..32 {
        ws_cycle(&server).await.unwrap_or_else(|c| panic!("cycle {i}: {c:?}"));
        let ok = server.wait_until(WAIT, |s| s.connections() == 0).await;
        assert!(ok);
    }
    assert_eq!(server.slots_in_use(), 32);
    let refused = ws_cycle(&server).await.unwrap_err();
    match refused {
        Closed::Ws { code, reason } => {
            assert_eq!(code, reference_server::CLOSE_TRY_AGAIN_LATER);
            assert!(reason.contains("No available client slots"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.stats().counters.errors["no_slots"], 1);
    server.shutdown().await;
}

/// `--fault slot-leak` leaks every WebSocket slot whatever the timing: 32 clients back to back (each one
/// connecting before the previous teardown has finished) take all 32 slots. The 33rd writes CAPS and PING
/// straight after the upgrade, as `harness conformance` 9.1.6 does: both writes succeed, it reads the
/// full-close (1013, "No available client slots"), and after its own CLOSE it sees a clean EOF. Before,
/// the server dropped the socket with those bytes unread, so the kernel reset the connection and a client
/// could see its write fail before reading why (the harness then took the refused session for served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_leak_refuses_the_33rd_back_to_back_client_with_a_readable_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = server(|c| c.faults.slot_leak = true).await;
    for i in 0..32 {
        ws_cycle(&server).await.unwrap_or_else(|c| panic!("cycle {i}: {c:?}"));
    }
    assert!(server.wait_until(WAIT, |s| s.connections() == 0).await);
    assert_eq!(server.slots_in_use(), 32);
    let (mut p, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await;
    let caps = p.caps(20, 5, 10).encode();
    let ping = Packet::empty(PacketType::PING).encode();
    for (name, bytes) in [("CAPS", caps), ("PING", ping)] {
        let mut out = Vec::new();
        acip::ws::encode_frame(OpCode::Binary, true, Some([1, 2, 3, 4]), &bytes, &mut out);
        p.stream.write_all(&out).await.unwrap_or_else(|e| panic!("{name} write: {e}"));
    }
    match p.expect_close().await.0 {
        Closed::Ws { code, reason } => {
            assert_eq!(code, reference_server::CLOSE_TRY_AGAIN_LATER);
            assert!(reason.contains("No available client slots"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let mut out = Vec::new();
    acip::ws::encode_frame(OpCode::Close, true, Some([1, 2, 3, 4]), &1000u16.to_be_bytes(), &mut out);
    p.stream.write_all(&out).await.expect("our CLOSE is written");
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(WAIT, p.stream.read(&mut rest)).await.expect("EOF in time");
    assert_eq!(n.expect("clean EOF, not a reset"), 0);
    assert_eq!(server.stats().counters.errors["no_slots"], 1);
    server.shutdown().await;
}

#[tokio::test]
async fn without_the_fault_websocket_cycles_release_their_slots() {
    let server = server(|_| {}).await;
    for i in 0..40 {
        ws_cycle(&server).await.unwrap_or_else(|c| panic!("cycle {i}: {c:?}"));
    }
    settle(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn client_killed_mid_fragment_frees_its_slot() {
    let server = server(|_| {}).await;
    let (mut p, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await;
    p.join(20, 5, 10).await;
    let frame = p.wire(&pattern_frame(320, 240, 0));
    p.send_frame(OpCode::Binary, false, &frame[..4096], true).await;
    p.send_frame(OpCode::Continuation, false, &frame[4096..8192], true).await;
    drop(p);
    settle(&server).await;
    let st = server.stats();
    assert_eq!(st.counters.errors.get("eof_mid_packet").copied(), Some(1), "{:?}", st.counters.errors);
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_client_killed_mid_packet_frees_its_slot() {
    let server = server(|_| {}).await;
    let mut p = Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await;
    p.join(20, 5, 10).await;
    let frame = pattern_frame(320, 240, 0).encode();
    p.send_raw(&frame[..100_000]).await;
    // The PING after the partial frame is never seen: the server is still inside the frame's payload.
    p.send(&Packet::empty(PacketType::PING)).await;
    drop(p);
    settle(&server).await;
    assert_eq!(server.stats().counters.errors.get("eof_mid_packet").copied(), Some(1));
    server.shutdown().await;
}

#[tokio::test]
async fn clients_killed_mid_handshake_free_their_slots() {
    let server = server(|_| {}).await;
    // TCP: PROTOCOL_VERSION sent, PROTOCOL_VERSION received, then gone.
    let mut p = Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await;
    let pv = acip::codec::payloads::ProtocolVersion::new(1).to_packet();
    p.send(&pv).await;
    p.recv_type(PacketType::PROTOCOL_VERSION).await;
    drop(p);
    // WebSocket: KEY_EXCHANGE_INIT received, then gone.
    let (mut q, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Head, Some("acip")).await;
    q.recv_type(PacketType::CRYPTO_KEY_EXCHANGE_INIT).await;
    drop(q);
    settle(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn kicked_client_is_closed_and_its_slot_freed() {
    let server = server(|_| {}).await;
    let mut p = Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await;
    p.handshake(CryptoMode::Encrypt).await;
    p.join(20, 5, 10).await;
    let id = server.connection_ids()[0];
    assert!(server.kick(id));
    let (closed, _) = p.expect_close().await;
    assert_eq!(closed, Closed::Eof);
    settle(&server).await;
    server.shutdown().await;
}

/// SERVER_FULL on TCP and the full-close on WebSocket (ACIP-SPEC.md 6.1, 7.2).
#[tokio::test]
async fn full_server_sends_the_server_full_line_to_tcp_and_a_close_to_ws() {
    let server = server(|c| c.max_clients = 2).await;
    let addr = server.tcp_addr().unwrap();
    let mut a = Peer::tcp(addr, Dialect::Feb).await;
    a.join(20, 5, 10).await;
    let mut b = Peer::tcp(addr, Dialect::Feb).await;
    b.join(20, 5, 10).await;
    let mut c = Peer::tcp(addr, Dialect::Feb).await;
    match c.recv().await {
        Recv::NotAcip(bytes) => assert_eq!(bytes, SERVER_FULL_LINE),
        other => panic!("{other:?}"),
    }
    let (mut d, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, None).await;
    match d.recv().await {
        Recv::Closed(Closed::Ws { code, reason }) => {
            assert_eq!(code, 1013);
            assert!(reason.starts_with("SERVER_FULL"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.stats().counters.errors["server_full"], 2);
    drop((a, b));
    settle(&server).await;
    // The refused c and d are still open: the server waits for their EOF/CLOSE after refusing them, but
    // shutdown ends that wait at once (it would otherwise take the 2 s grace).
    let t = std::time::Instant::now();
    server.shutdown().await;
    assert!(t.elapsed() < std::time::Duration::from_secs(1), "shutdown took {:?}", t.elapsed());
    drop((c, d));
}

#[tokio::test]
async fn shutdown_closes_every_connection_and_joins() {
    let server = server(|_| {}).await;
    let mut a = Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await;
    a.join(20, 5, 10).await;
    let (mut b, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await;
    b.handshake(CryptoMode::Encrypt).await;
    b.join(20, 5, 10).await;
    tokio::time::timeout(WAIT, server.shutdown()).await.expect("shutdown joins in time");
    assert_eq!(a.expect_close().await.0, Closed::Eof);
    match b.expect_close().await.0 {
        Closed::Ws { code, .. } => assert_eq!(code, 1001),
        other => panic!("{other:?}"),
    }
}

/// A client that closes straight after a burst which filled the receive queue (2 packets deep here,
/// `rx_pause` off): every frame it flushed is counted as received, on TCP (EOF) and on WebSocket (CLOSE),
/// because teardown lets the dispatch task handle the whole queue before it releases the slot; nothing
/// is counted as `teardown_discarded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_then_close_loses_no_frame() {
    const N: u64 = 400;
    let server = server(|c| c.rx_queue = 2).await;
    for (i, ws) in [false, true].into_iter().enumerate() {
        let mut p = if ws {
            Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await.0
        } else {
            Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await
        };
        p.join(32, 24, 10).await;
        for seq in 0..N {
            p.send(&pattern_frame(32, 24, seq)).await;
        }
        if ws {
            p.send_frame(OpCode::Close, true, &1000u16.to_be_bytes(), true).await;
        } else {
            tokio::io::AsyncWriteExt::shutdown(&mut p.stream).await.unwrap();
        }
        // Read what the server sent until it closes, so our socket does not reset the connection.
        read_to_end(p.stream).await;
        settle(&server).await;
        let c = server.stats().counters;
        let want = N * (i as u64 + 1);
        assert_eq!(c.frames_received, want, "ws={ws}: drops {:?}, errors {:?}", c.drops, c.errors);
        assert_eq!(c.drops.get("teardown_discarded"), None, "ws={ws}");
    }
    server.shutdown().await;
}
