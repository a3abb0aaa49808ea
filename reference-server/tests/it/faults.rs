//! Fault emulation beyond slots and readiness (ACIP-SPEC.md 6.2, 7.6, 8): `--fault rx-pause` back-pressure,
//! the old 100 ms reassembly timeout against a slow sender, 256 KiB-style server fragmentation, and
//! `--fault stale-callback` (a late receive callback acting on a reused slot by index).

use std::time::{Duration, Instant};

use acip::ws::OpCode;
use acip::{Dialect, Packet, PacketType};

use crate::util::*;

/// Sends `n` 230 KB frames back to back; returns how long the writes took.
async fn blast(p: &mut Peer, n: u64) -> Duration {
    let t0 = Instant::now();
    for seq in 0..n {
        p.send(&pattern_frame(320, 240, seq)).await;
    }
    t0.elapsed()
}

/// `rx-pause` reads at most `RX_PAUSE_BATCH` bytes and then stops reading for `RX_PAUSE_INTERVAL`
/// (lws rx flow control, ACIP-SPEC.md 8): every 230 KB frame spans a batch boundary, so it takes at least
/// one interval to assemble, the whole stream drains no faster than one batch per interval, and the
/// sender's writes stall once the socket buffers are full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rx_pause_stops_reading_and_the_sender_stalls() {
    let server = server(|c| {
        c.faults.rx_pause = true;
        c.tcp_idle_timeout = WAIT;
    })
    .await;
    let mut p = Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await;
    p.join(20, 5, 10).await;
    // 18 MB: more than loopback socket buffers hold, so the writes must wait for the paused reader.
    let n = 80;
    let t0 = Instant::now();
    let took = blast(&mut p, n).await;
    p.send(&Packet::empty(PacketType::PING)).await;
    p.recv_type(PacketType::PONG).await;
    let drained = t0.elapsed();
    let st = server.stats();
    assert_eq!(st.counters.frames_received, n, "back-pressure loses nothing");
    // One batch per interval at most: 18 MB is ~140 batches, so at least ~139 pauses.
    let batches = (st.counters.bytes_rx as usize / reference_server::RX_PAUSE_BATCH) as u32;
    let floor = reference_server::RX_PAUSE_INTERVAL * batches.saturating_sub(2);
    assert!(drained >= floor, "drained in {drained:?} < {floor:?} ({batches} batches)");
    // Each frame waited at least one pause between its first and last byte.
    let asm = st.stages["server_assembly"];
    assert!(asm.p50_us >= 25_000, "{asm:?}");
    assert!(took >= Duration::from_millis(300), "writes took only {took:?}");
    drop(p);
    settle(&server).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rx_pause_the_queue_does_not_stall() {
    let server = server(|c| c.tcp_idle_timeout = WAIT).await;
    let mut p = Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await;
    p.join(20, 5, 10).await;
    blast(&mut p, 40).await;
    p.send(&Packet::empty(PacketType::PING)).await;
    p.recv_type(PacketType::PONG).await;
    let st = server.stats();
    assert_eq!(st.counters.frames_received, 40);
    assert_eq!(st.counters.errors.get("rx_queue_full_stall"), None, "{:?}", st.counters.errors);
    drop(p);
    settle(&server).await;
    server.shutdown().await;
}

/// Sends a 230 KB frame in 4096-byte fragments with one 150 ms pause in the middle (a browser's ~30 ms
/// batches, stretched). Returns how the server answered the PING sent after it.
async fn slow_fragments(reassembly: Duration) -> Result<(), Closed> {
    let server = server(|c| c.reassembly_timeout = reassembly).await;
    let (mut p, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await;
    p.join(20, 5, 10).await;
    let bytes = pattern_frame(320, 240, 0).encode();
    let chunks: Vec<&[u8]> = bytes.chunks(4096).collect();
    for (i, c) in chunks.iter().enumerate() {
        let op = if i == 0 { OpCode::Binary } else { OpCode::Continuation };
        p.send_frame(op, i + 1 == chunks.len(), c, true).await;
        if i == chunks.len() / 2 {
            tokio::time::sleep(Duration::from_millis(150)).await; // the sender's stall being reproduced
        }
    }
    p.send(&Packet::empty(PacketType::PING)).await;
    let r = loop {
        match p.recv().await {
            Recv::Packet(pk) if pk.packet_type == PacketType::PONG => break Ok(()),
            Recv::Packet(_) => {}
            Recv::Closed(c) => break Err(c),
            Recv::NotAcip(b) => panic!("{b:?}"),
        }
    };
    if r.is_ok() {
        assert_eq!(server.stats().counters.frames_received, 1);
    }
    drop(p);
    settle(&server).await;
    server.shutdown().await;
    r
}

#[tokio::test]
async fn old_100ms_reassembly_timeout_breaks_a_slow_frame_and_2s_does_not() {
    match slow_fragments(Duration::from_millis(100)).await {
        Err(Closed::Ws { code: 1002, reason }) => assert!(reason.contains("reassembly timeout"), "{reason}"),
        other => panic!("{other:?}"),
    }
    slow_fragments(Duration::from_secs(2)).await.expect("the fixed timeout lets the frame through");
}

#[tokio::test]
async fn server_side_fragmentation_is_reassembled_by_the_peer() {
    let server = server(|c| c.ws_fragment = Some(100)).await;
    let (mut p, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await;
    p.join(80, 24, 30).await;
    p.send(&pattern_frame(64, 48, 0)).await;
    let f = p.recv_type(PacketType::ASCII_FRAME).await;
    let frame = acip::codec::payloads::AsciiFrame::decode(&f.payload).unwrap();
    assert_eq!(frame.text.len(), 80 * 24 + 23);
    // 22 + 24 + 1943 bytes in 100-byte frames: at least 20 frames for this one packet.
    assert!(p.data_frames >= 20, "{} frames", p.data_frames);
    drop(p);
    settle(&server).await;
    server.shutdown().await;
}

/// Streams `n` `w`x`h` test-pattern frames back to back through `rx-pause` (131 KB read batches 30 ms
/// apart, then a 2-deep, 30 ms-per-packet queue) with a 200 ms idle timeout on TCP or WebSocket, then
/// PING/PONG; returns the server's counters. The sender never pauses, so however long the reader waits
/// (pausing between batches or on the full queue), the peer is not silent.
async fn stream_through_rx_pause(ws: bool, n: u64, (w, h): (u16, u16)) -> reference_server::StatsSnapshot {
    let idle = Duration::from_millis(200);
    let server = server(|c| {
        c.faults.rx_pause = true;
        c.tcp_idle_timeout = idle;
        c.ws_idle_timeout = idle;
    })
    .await;
    let mut p = if ws {
        Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await.0
    } else {
        Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await
    };
    p.join(20, 5, 10).await;
    let t0 = Instant::now();
    for seq in 0..n {
        p.send(&pattern_frame(w, h, seq)).await;
    }
    p.send(&Packet::empty(PacketType::PING)).await;
    p.recv_type(PacketType::PONG).await;
    // 30 ms per packet: the reader spent several idle timeouts in all blocked on the full queue.
    let took = t0.elapsed();
    assert!(took > idle * 4, "the stream took only {took:?}");
    let st = server.stats();
    drop(p);
    settle(&server).await;
    server.shutdown().await;
    st
}

/// Back-pressure is not peer silence (tcp_idle_timeout / ws_idle_timeout measure only the reader's wait
/// for bytes): 40 frames of 230 KB (paced by the reader's 131 KB batches and 30 ms pauses) and 40
/// frames of 1.2 KB (many per read, so one read's packets wait on the queue for longer than the idle
/// timeout), on TCP and WebSocket, all arrive and nobody is dropped for `idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_is_not_counted_as_peer_silence() {
    let n = 40;
    for ws in [false, true] {
        for size in [(320, 240), (20, 20)] {
            let st = stream_through_rx_pause(ws, n, size).await;
            let errors = &st.counters.errors;
            assert_eq!(errors.get("idle_timeout"), None, "ws={ws} {size:?}: {errors:?}");
            assert_eq!(st.counters.frames_received, n, "ws={ws} {size:?}: back-pressure loses nothing");
            if size == (20, 20) {
                // Many small packets per read: the 2-deep, 30 ms-per-packet queue fills and the reader
                // blocks on it for longer than the idle timeout.
                assert!(errors.get("rx_queue_full_stall").copied().unwrap_or(0) > 0, "ws={ws} {size:?}");
            } else {
                // Big frames: the reader's own batch pauses pace them (every frame waits >= 1 interval).
                let asm = st.stages["server_assembly"];
                assert!(asm.p50_us >= 25_000, "ws={ws} {size:?}: {asm:?}");
            }
        }
    }
}

/// What [`stale_callback_sequence`] saw while the two clients were connected, and after.
struct StaleRun {
    during: reference_server::StatsSnapshot,
    after: reference_server::StatsSnapshot,
}

/// A client joins and leaves (with `--fault stale-callback` its teardown parks a late callback on slot
/// 0); then `tenant` joins (gets slot 0, becomes active) and `second` joins while `tenant` is still
/// connected and served (PING answered). Then both leave.
async fn stale_callback_sequence(fault: bool) -> StaleRun {
    let server = server(|c| {
        c.faults.stale_callback = fault;
        c.tcp_idle_timeout = WAIT;
    })
    .await;
    let addr = server.tcp_addr().unwrap();
    let mut gone = Peer::tcp(addr, Dialect::Feb).await;
    gone.join(20, 5, 10).await;
    drop(gone);
    assert!(server.wait_until(WAIT, |s| s.connections() == 0).await);
    let mut tenant = Peer::tcp(addr, Dialect::Feb).await;
    tenant.join(20, 5, 10).await;
    let mut second = Peer::tcp(addr, Dialect::Feb).await;
    second.join(20, 5, 10).await;
    tenant.send(&Packet::empty(PacketType::PING)).await;
    tenant.recv_type(PacketType::PONG).await;
    let during = server.stats();
    drop(tenant);
    assert!(server.wait_until(WAIT, |s| s.connections() == 1).await);
    drop(second);
    settle(&server).await;
    let after = server.stats();
    server.shutdown().await;
    StaleRun { during, after }
}

/// `--fault stale-callback` (ACIP-SPEC.md 7.5/7.6): the late callback of a finished connection frees its
/// old slot by index once the next client there is active, so the pool hands that slot to a second client
/// while the first is still connected, and the first one's release at teardown is a double release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_callback_hands_one_slot_to_two_clients() {
    let StaleRun { during, after } = stale_callback_sequence(true).await;
    assert_eq!(during.faults, ["stale-callback"]);
    assert_eq!(during.late_callbacks, 1, "the late callback freed the active tenant's slot");
    assert_eq!(during.slots_shared, 1, "slot 0 handed to the second client while the tenant held it");
    assert_eq!(during.connections, 2);
    assert_eq!(during.slots_in_use, 1, "two connected clients, one slot counted");
    assert_eq!(after.double_releases, 1, "the tenant's own release found its slot gone");
    assert_eq!(after.counters.errors.get("double_release"), Some(&1));
    assert_eq!(after.slots_in_use, 0, "the counts stay consistent with the slots");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stale_callback_each_client_keeps_its_own_slot() {
    let StaleRun { during, after } = stale_callback_sequence(false).await;
    assert_eq!((during.late_callbacks, during.slots_shared, during.slots_in_use), (0, 0, 2));
    assert_eq!((after.double_releases, after.slots_in_use), (0, 0));
    assert_eq!(after.counters.errors.get("double_release"), None);
}

/// How long a hung server is given to answer (absence is asserted over a bounded wait).
const SILENCE: Duration = Duration::from_millis(300);

/// The interleaving of the fragment bug (ACIP-SPEC.md 8): a BINARY frame before the previous message's FIN.
async fn interleave(p: &mut Peer) {
    let b = pattern_frame(64, 48, 0).encode();
    p.send_frame(acip::ws::OpCode::Binary, false, &b[..4096], true).await;
    p.send_frame(acip::ws::OpCode::Binary, false, &b[..4096], true).await;
}

/// `--fault hang-on-interleave`: after the interleaving the server stays alive but answers nothing: a
/// bystander's PING gets no PONG, a new client's upgrade gets no answer (the kernel still completes its
/// TCP handshake into the backlog), and the interleaving connection is not closed. Shutdown still works.
/// Without the fault the same interleaving is a 1002 close and the bystander is answered.
#[tokio::test]
async fn hang_on_interleave_stops_accepting_and_reading() {
    for fault in [false, true] {
        let server = server(|c| c.faults.hang_on_interleave = fault).await;
        let ws = server.ws_addr().unwrap();
        let (mut by, _) = Peer::ws(ws, Dialect::Feb, Some("acip")).await;
        by.join(20, 5, 10).await;
        let (mut bad, _) = Peer::ws(ws, Dialect::Feb, Some("acip")).await;
        interleave(&mut bad).await;
        if !fault {
            let (closed, _) = bad.expect_close().await;
            assert!(matches!(closed, Closed::Ws { code: 1002, .. }), "{closed:?}");
            by.send(&acip::Packet::empty(PacketType::PING)).await;
            by.recv_type(PacketType::PONG).await;
        } else {
            // The interleaving is seen (the fault fires in its reader) before the bystander asks.
            assert!(server.wait_until(WAIT, |s| s.stats().hung).await, "the fault fired");
            by.send(&acip::Packet::empty(PacketType::PING)).await;
            let mut buf = [0u8; 64];
            // Absence is asserted over a bounded wait: no byte at all arrives for the PING, ...
            let answered = tokio::time::timeout(SILENCE, async {
                loop {
                    match tokio::io::AsyncReadExt::read(&mut by.stream, &mut buf).await {
                        // ASCII frames rendered before the hang may still be written: only a PONG counts.
                        Ok(n) if n > 0 && buf[..n].windows(2).any(|w| w == 5002u16.to_be_bytes()) => {
                            return true
                        }
                        Ok(0) | Err(_) => return false,
                        Ok(_) => {}
                    }
                }
            })
            .await
            .unwrap_or(false);
            assert!(!answered, "a hung server answered a PING");
            // ... and a new client's upgrade is never answered, though its TCP connect succeeds.
            let mut fresh = tokio::net::TcpStream::connect(ws).await.expect("the backlog takes it");
            tokio::io::AsyncWriteExt::write_all(&mut fresh, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let got =
                tokio::time::timeout(SILENCE, tokio::io::AsyncReadExt::read(&mut fresh, &mut buf)).await;
            assert!(got.is_err(), "a hung server answered /health: {got:?}");
        }
        drop((by, bad));
        tokio::time::timeout(WAIT, server.shutdown()).await.expect("a hung server still shuts down");
    }
}
