//! Large frames (ACIP-SPEC.md 3.7, 8): the 230,446-byte IMAGE_FRAME of the SIGABRT analysis in 4096-byte
//! WebSocket fragments, and a 921,646-byte 640x480 frame, delivered intact and counted.

use acip::crypto::CryptoMode;
use acip::stats::Stage;
use acip::{Dialect, PacketType};

use crate::util::*;

#[tokio::test]
async fn frame_230446_in_4096_byte_fragments_over_feb_ws() {
    let server = server(|c| c.dialect = Dialect::Feb).await;
    for mode in [CryptoMode::None, CryptoMode::Encrypt] {
        let (mut p, _) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await;
        if mode == CryptoMode::Encrypt {
            p.handshake(mode).await;
        }
        p.join(80, 24, 30).await;
        let frame = pattern_frame(320, 240, 0);
        assert_eq!(frame.wire_len(), 230_446);
        for seq in 0..3 {
            p.send_fragmented(&pattern_frame(320, 240, seq), 4096).await;
        }
        p.send(&acip::Packet::empty(PacketType::PING)).await;
        p.recv_type(PacketType::PONG).await;
        let st = server.stats();
        let c = st.per_connection.iter().find(|c| c.counters.frames_received > 0).expect("the client");
        assert_eq!(
            (c.counters.frames_received, c.counters.frames_corrupt, c.counters.frames_lost),
            (3, 0, 0)
        );
        // 230,446 plain bytes = 57 fragments (encrypted: 230,508 = 57 too), so 56 gaps per frame.
        assert_eq!(c.stages[Stage::FragmentGap.name()].count, 3 * 56, "{mode:?}");
        drop(p);
        settle(&server).await;
    }
    server.shutdown().await;
}

async fn vga_frame(ws: bool, mode: CryptoMode, dialect: Dialect) {
    // The sender is a debug build sealing 921 KB frames on a possibly loaded machine: the 1 s idle timeout
    // is lifted because it is not what this test is about.
    let server = server(|c| {
        c.dialect = dialect;
        c.tcp_idle_timeout = WAIT;
    })
    .await;
    let mut p = if ws {
        Peer::ws(server.ws_addr().unwrap(), dialect, Some("acip")).await.0
    } else {
        Peer::tcp(server.tcp_addr().unwrap(), dialect).await
    };
    if mode == CryptoMode::Encrypt || ws {
        p.handshake(mode).await;
    }
    p.join(80, 24, 30).await;
    let frame = pattern_frame(640, 480, 0);
    assert_eq!(frame.wire_len(), 921_646);
    for seq in 0..2 {
        p.send(&pattern_frame(640, 480, seq)).await;
    }
    p.send(&acip::Packet::empty(PacketType::PING)).await;
    p.recv_type(PacketType::PONG).await;
    let st = server.stats();
    assert_eq!((st.counters.frames_received, st.counters.frames_corrupt), (2, 0), "{ws} {mode:?}");
    assert_eq!(st.counters.rx(PacketType::IMAGE_FRAME), 2);
    let f = p.recv_type(PacketType::ASCII_FRAME).await;
    acip::codec::payloads::AsciiFrame::decode(&f.payload).unwrap();
    drop(p);
    settle(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn frame_921646_tcp_plaintext() {
    vga_frame(false, CryptoMode::None, Dialect::Feb).await;
}

#[tokio::test]
async fn frame_921646_tcp_encrypted() {
    vga_frame(false, CryptoMode::Encrypt, Dialect::Head).await;
}

#[tokio::test]
async fn frame_921646_ws_encrypted_feb() {
    vga_frame(true, CryptoMode::Encrypt, Dialect::Feb).await;
}

#[tokio::test]
async fn frame_921646_ws_encrypted_head() {
    vga_frame(true, CryptoMode::Encrypt, Dialect::Head).await;
}
