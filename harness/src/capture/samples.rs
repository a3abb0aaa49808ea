//! Reference sessions scripted with the `acip` encoders and recorded by [`super::writer`]: the synthetic
//! captures committed to `corpus/captures/` (regenerated and compared by a test) and the `pcap` fuzz seeds.
//! Every byte is deterministic (fixed payloads, addresses, timestamps and masks).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use acip::codec::payloads::{AsciiFrame, ClientCapabilities, ImageFrame, ServerState, StreamStart};
use acip::ws::{encode_frame, OpCode};
use acip::{Dialect, Packet, PacketType};

use super::tcp::Dir;
use super::writer::SyntheticSession;

const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 40_000);
const TCP_SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 27_224);
const WS_SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 27_226);

/// A mask key for client frames (deterministic, as a recorded capture must be).
const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn ms(n: u64) -> Duration {
    Duration::from_secs(1_700_000_000) + Duration::from_millis(n)
}

/// A `width`x`height` RGB test frame with a simple gradient.
fn image(width: u32, height: u32) -> Packet {
    let pixels: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
    ImageFrame::rgb24(width, height, pixels).to_packet()
}

fn ascii() -> Packet {
    AsciiFrame::new(8, 2, &b"\x1b[0m#.#.#.#.\n.#.#.#.#"[..]).to_packet()
}

/// The plaintext TCP path of ACIP-SPEC.md 9.1 (feb): CLIENT_CAPABILITIES first, STREAM_START, IMAGE_FRAMEs
/// up, SERVER_STATE / ASCII_FRAME down, PING/PONG, then both sides close. `frames` IMAGE_FRAMEs of
/// `width`x`height`.
pub fn plaintext_tcp(frames: u32, width: u32, height: u32) -> SyntheticSession {
    let mut s = SyntheticSession::new(CLIENT, TCP_SERVER, ms(0));
    let c = Dir::ClientToServer;
    let sv = Dir::ServerToClient;
    s.send(ms(1), c, &ClientCapabilities::new(Dialect::Feb, 80, 24, 60).to_packet().encode());
    s.send(ms(2), c, &StreamStart::new(StreamStart::VIDEO).to_packet().encode());
    let state = ServerState { connected_client_count: 1, active_client_count: 1, reserved: [0; 6] };
    s.send(ms(3), sv, &state.to_packet().encode());
    for i in 0..u64::from(frames) {
        s.send(ms(10 + 17 * i), c, &image(width, height).encode());
        s.send(ms(12 + 17 * i), sv, &ascii().encode());
    }
    let end = 20 + 17 * u64::from(frames);
    s.send(ms(end), c, &Packet::empty(PacketType::PING).encode());
    s.send(ms(end + 1), sv, &Packet::empty(PacketType::PONG).encode());
    s.close(ms(end + 5), c);
    s
}

fn ws_frame(out: &mut Vec<u8>, opcode: OpCode, fin: bool, masked: bool, payload: &[u8]) {
    encode_frame(opcode, fin, masked.then_some(MASK), payload, out);
}

/// One ACIP packet as one WebSocket message of `fragment`-byte frames (the old native client's manual
/// fragmentation, ACIP-SPEC.md 6.2 feb), masked as a client must.
fn fragmented(packet: &Packet, fragment: usize) -> Vec<u8> {
    let bytes = packet.encode();
    let chunks: Vec<&[u8]> = bytes.chunks(fragment.max(1)).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 { OpCode::Binary } else { OpCode::Continuation };
        ws_frame(&mut out, opcode, i + 1 == chunks.len(), true, chunk);
    }
    out
}

/// WebSocket (feb): `GET` Upgrade and `101`, CLIENT_CAPABILITIES, then `frames` IMAGE_FRAMEs of
/// `width`x`height`, each one message of `fragment`-byte frames (320x240 in 4096: 57 fragments,
/// 56 x 4096 + 1070),
/// the server's single-frame ASCII_FRAMEs, then a close handshake (1000) and FIN.
pub fn ws_fragmented(frames: u32, width: u32, height: u32, fragment: usize) -> SyntheticSession {
    let mut s = SyntheticSession::new(CLIENT, WS_SERVER, ms(0));
    let c = Dir::ClientToServer;
    let sv = Dir::ServerToClient;
    s.send(
        ms(1),
        c,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:27226\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: acip\r\n\r\n",
    );
    s.send(
        ms(2),
        sv,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: acip\r\n\r\n",
    );
    s.send(ms(3), c, &fragmented(&ClientCapabilities::new(Dialect::Feb, 80, 24, 60).to_packet(), 4096));
    for i in 0..u64::from(frames) {
        s.send(ms(10 + 40 * i), c, &fragmented(&image(width, height), fragment));
        let mut down = Vec::new();
        ws_frame(&mut down, OpCode::Binary, true, false, &ascii().encode());
        s.send(ms(15 + 40 * i), sv, &down);
    }
    let end = 20 + 40 * u64::from(frames);
    let mut close = Vec::new();
    ws_frame(&mut close, OpCode::Close, true, true, &1000u16.to_be_bytes());
    s.send(ms(end), c, &close);
    let mut close = Vec::new();
    ws_frame(&mut close, OpCode::Close, true, false, &1000u16.to_be_bytes());
    s.send(ms(end + 1), sv, &close);
    s.close(ms(end + 2), sv);
    s
}

/// WebSocket in the `head` dialect (ACIP-SPEC.md 10, row 6): message boundaries mean nothing. The client
/// sends CLIENT_CAPABILITIES (168 B), an IMAGE_FRAME split across two messages, and two PINGs coalesced in
/// one message; the server answers a SERVER_STATE; both close with 1000.
pub fn ws_head_stream(width: u32, height: u32) -> SyntheticSession {
    let mut s = SyntheticSession::new(CLIENT, WS_SERVER, ms(0));
    let c = Dir::ClientToServer;
    let sv = Dir::ServerToClient;
    s.send(ms(1), c, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    s.send(ms(2), sv, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    let mut up = Vec::new();
    ws_frame(
        &mut up,
        OpCode::Binary,
        true,
        true,
        &ClientCapabilities::new(Dialect::Head, 80, 24, 60).to_packet().encode(),
    );
    let img = image(width, height).encode();
    let (a, b) = img.split_at(img.len() / 2);
    ws_frame(&mut up, OpCode::Binary, true, true, a);
    ws_frame(&mut up, OpCode::Binary, true, true, b);
    let mut pings = Packet::empty(PacketType::PING).encode();
    pings.extend_from_slice(&Packet::empty(PacketType::PING).encode());
    ws_frame(&mut up, OpCode::Binary, true, true, &pings);
    s.send(ms(3), c, &up);
    let state = ServerState { connected_client_count: 1, active_client_count: 1, reserved: [0; 6] };
    let mut down = Vec::new();
    ws_frame(&mut down, OpCode::Binary, true, false, &state.to_packet().encode());
    s.send(ms(4), sv, &down);
    let mut close = Vec::new();
    ws_frame(&mut close, OpCode::Close, true, true, &1000u16.to_be_bytes());
    s.send(ms(5), c, &close);
    let mut close = Vec::new();
    ws_frame(&mut close, OpCode::Close, true, false, &1000u16.to_be_bytes());
    s.send(ms(6), sv, &close);
    s.close(ms(7), sv);
    s
}

/// A WebSocket session (feb) with one of each framing anomaly the dissector names, in this order: a
/// CONTINUATION with no message started, a BINARY frame before the previous message's FIN, an unknown packet
/// type, a CRC mismatch, a message longer than its packet, a server close with code 1011, and finally a frame
/// header claiming 6 MiB (over the frame limit: the client direction stops there).
pub fn ws_anomalies() -> SyntheticSession {
    let mut s = SyntheticSession::new(CLIENT, WS_SERVER, ms(0));
    let c = Dir::ClientToServer;
    let sv = Dir::ServerToClient;
    s.send(ms(1), c, b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    s.send(ms(2), sv, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    let ping = Packet::empty(PacketType::PING).encode();
    let mut up = Vec::new();
    ws_frame(&mut up, OpCode::Continuation, true, true, &ping);
    ws_frame(&mut up, OpCode::Binary, false, true, &ping[..10]);
    ws_frame(&mut up, OpCode::Binary, true, true, &ping);
    ws_frame(&mut up, OpCode::Binary, true, true, &Packet::empty(PacketType::Unknown(4242)).encode());
    let mut bad_crc = StreamStart::new(StreamStart::VIDEO).to_packet().encode();
    bad_crc[25] ^= 0x01;
    ws_frame(&mut up, OpCode::Binary, true, true, &bad_crc);
    let mut long = ping.clone();
    long.extend_from_slice(b"trailing");
    ws_frame(&mut up, OpCode::Binary, true, true, &long);
    s.send(ms(3), c, &up);
    let mut close = Vec::new();
    ws_frame(&mut close, OpCode::Close, true, false, &1011u16.to_be_bytes());
    s.send(ms(4), sv, &close);
    // 127 = 64-bit length: 6 MiB, then the capture ends.
    let mut huge = vec![0x82, 0x80 | 127];
    huge.extend_from_slice(&(6u64 * 1024 * 1024).to_be_bytes());
    huge.extend_from_slice(&MASK);
    s.send(ms(5), c, &huge);
    s.close(ms(6), c);
    s
}

/// Small captures for the `pcap` fuzz target's seed corpus: (file name, bytes).
pub fn fuzz_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use super::writer::{sessions_to_pcap, sessions_to_pcapng, SyntheticLink};
    let tcp = plaintext_tcp(1, 4, 2);
    let ws = ws_fragmented(1, 20, 20, 512);
    let mut gap = plaintext_tcp(2, 4, 2);
    gap.drop_segments = vec![3];
    vec![
        ("tcp_ethernet.pcap", sessions_to_pcap(&[&tcp], SyntheticLink::Ethernet)),
        ("tcp_sll.pcap", sessions_to_pcap(&[&tcp], SyntheticLink::LinuxSll)),
        ("tcp_sll2.pcap", sessions_to_pcap(&[&tcp], SyntheticLink::LinuxSll2)),
        ("tcp_null.pcap", sessions_to_pcap(&[&tcp], SyntheticLink::Null)),
        ("tcp_raw.pcap", sessions_to_pcap(&[&tcp], SyntheticLink::RawIp)),
        ("tcp_gap.pcap", sessions_to_pcap(&[&gap], SyntheticLink::Ethernet)),
        ("ws_fragments.pcap", sessions_to_pcap(&[&ws], SyntheticLink::Ethernet)),
        ("ws_fragments.pcapng", sessions_to_pcapng(&[&ws])),
        ("ws_anomalies.pcap", sessions_to_pcap(&[&ws_anomalies()], SyntheticLink::Ethernet)),
        ("ws_head.pcap", sessions_to_pcap(&[&ws_head_stream(4, 4)], SyntheticLink::Ethernet)),
    ]
}
