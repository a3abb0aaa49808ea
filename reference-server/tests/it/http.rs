//! The WebSocket port's HTTP side (ACIP-SPEC.md 6.2): `/health`, `/stats`, 404, the subprotocol answer,
//! and `--echo` (RFC 6455 echo without ACIP).

use acip::ws::{FrameDecoder, OpCode};
use acip::{Dialect, PacketType};
use reference_server::StatsSnapshot;
use tokio::io::AsyncWriteExt;

use crate::util::*;

async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let text = String::from_utf8(read_to_end(s).await).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[tokio::test]
async fn health_stats_and_404() {
    let server = server(|_| {}).await;
    let ws = server.ws_addr().unwrap();
    let mut p = Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await;
    p.join(20, 5, 30).await;
    p.send(&pattern_frame(32, 24, 0)).await;
    p.recv_type(PacketType::ASCII_FRAME).await;

    let (status, body) = get(ws, "/health").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["protocol"], "2.2.1");
    assert!(v["version"].is_string());

    let (status, body) = get(ws, "/stats").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let st: StatsSnapshot = serde_json::from_str(&body).unwrap();
    assert_eq!((st.active_clients, st.slots_in_use, st.slot_capacity, st.max_clients), (1, 1, 32, 9));
    assert_eq!(st.counters.frames_received, 1);
    for stage in ["server_assembly", "server_queue_wait", "server_handler", "server_render", "server_write"] {
        assert!(st.stages.contains_key(stage), "{stage} missing from {:?}", st.stages.keys());
    }
    assert_eq!(st.per_connection.len(), 1);
    assert_eq!(st.per_connection[0].phase, "active");

    let (status, _) = get(ws, "/nope").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    drop(p);
    settle(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn echo_mode_echoes_messages_and_answers_ping_and_close() {
    let server = server(|c| c.echo = true).await;
    let (mut p, head) = Peer::ws(server.ws_addr().unwrap(), Dialect::Feb, Some("acip")).await;
    assert!(head.contains("Sec-WebSocket-Protocol: acip"), "{head}");
    let mut frames = FrameDecoder::new(1 << 20);
    let next = |p_frames: &mut FrameDecoder| p_frames.poll_frame().map(|f| f.unwrap());
    // A fragmented text message, a ping in between, then a binary message.
    p.send_frame(OpCode::Text, false, b"hello ", true).await;
    p.send_frame(OpCode::Ping, true, b"p", true).await;
    p.send_frame(OpCode::Continuation, true, b"world", true).await;
    p.send_frame(OpCode::Binary, true, &[0, 1, 2, 255], true).await;
    p.send_frame(OpCode::Close, true, &1000u16.to_be_bytes(), true).await;
    let bytes = read_to_end(p.stream).await;
    frames.handle_bytes(&bytes);
    let got: Vec<(OpCode, Vec<u8>)> =
        std::iter::from_fn(|| next(&mut frames)).map(|f| (f.opcode, f.payload.to_vec())).collect();
    assert_eq!(
        got,
        vec![
            (OpCode::Pong, b"p".to_vec()),
            (OpCode::Text, b"hello world".to_vec()),
            (OpCode::Binary, vec![0, 1, 2, 255]),
            (OpCode::Close, 1000u16.to_be_bytes().to_vec()),
        ]
    );
    server.shutdown().await;
}
