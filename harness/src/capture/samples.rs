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

/// A minimal valid upgrade (RFC 6455 4.1's example key) and the 101 that accepts it.
const UPGRADE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const UPGRADE_RESPONSE: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

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
    s.send(ms(1), c, UPGRADE_REQUEST);
    s.send(ms(2), sv, UPGRADE_RESPONSE);
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
    s.send(ms(1), c, UPGRADE_REQUEST);
    s.send(ms(2), sv, UPGRADE_RESPONSE);
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

/// An ENCRYPTED packet as it looks on the wire (the dissector reads only the nonce): session ID, the
/// counter (little-endian: feb), a zero MAC and `body` bytes of "ciphertext".
fn encrypted(counter: u64, body: usize) -> Packet {
    let mut p = vec![0xA5u8; 16];
    p.extend_from_slice(&counter.to_le_bytes());
    p.extend_from_slice(&[0u8; 16]);
    p.extend((0..body).map(|i| (i * 13 % 256) as u8));
    Packet::new(PacketType::ENCRYPTED, p)
}

/// Raw TCP (feb) with one of each kind of byte-stream damage the dissector resynchronises after, in order:
/// client to server, garbage before a packet (bad magic), an IMAGE_FRAME with one payload byte flipped
/// (CRC mismatch), a header with an impossible length; server to client, two ENCRYPTED packets
/// interleaved by two writers (both headers, then the payloads in reversed order), then ENCRYPTED packets
/// whose nonce counters go backwards, and a retransmission that carries different bytes. Every packet
/// around the damage is valid and must be recovered.
pub fn tcp_damage() -> SyntheticSession {
    let mut s = SyntheticSession::new(CLIENT, TCP_SERVER, ms(0));
    let c = Dir::ClientToServer;
    let sv = Dir::ServerToClient;
    let ping = Packet::empty(PacketType::PING).encode();
    s.send(ms(1), c, &ClientCapabilities::new(Dialect::Feb, 80, 24, 60).to_packet().encode());
    s.send(ms(2), c, b"garbage, not a packet");
    s.send(ms(3), c, &ping);
    let mut flipped = image(16, 8).encode();
    flipped[40] ^= 0x01;
    s.send(ms(4), c, &flipped);
    s.send(ms(5), c, &StreamStart::new(StreamStart::VIDEO).to_packet().encode());
    let mut impossible = Packet::empty(PacketType::IMAGE_FRAME).header().to_bytes();
    impossible[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
    s.send(ms(6), c, &impossible);
    s.send(ms(7), c, &ping);
    let (a, b) = (encrypted(1, 60).encode(), encrypted(2, 30).encode());
    let mut inter = a[..22].to_vec();
    inter.extend_from_slice(&b[..22]);
    inter.extend_from_slice(&b[22..]);
    inter.extend_from_slice(&a[22..]);
    s.send(ms(8), sv, &inter);
    for counter in [3, 5, 4] {
        s.send(ms(9), sv, &encrypted(counter, 20).encode());
    }
    let last = encrypted(6, 20).encode();
    s.send(ms(10), sv, &last);
    let mut changed = last.clone();
    changed[50] ^= 0xFF;
    s.resend(ms(11), sv, &changed);
    s.close(ms(12), c);
    s
}

/// WebSocket details the dissector reports: the client asks for subprotocol `acip` and offers
/// permessage-deflate; the server accepts both but answers with a wrong `Sec-WebSocket-Accept`. Then, client
/// to server: a deflate-compressed message (RSV1) carrying CLIENT_CAPABILITIES, a PING packet in a frame
/// whose length uses the 16-bit form (not minimal), a CONTINUATION frame with RSV1, a fragmented WebSocket
/// PING, a message of 4 junk bytes then a PING packet (recovered), a CLOSE with code 1005 (never sent on
/// the wire), and a frame after that CLOSE. The server closes
/// with 1000.
pub fn ws_details() -> SyntheticSession {
    use std::io::Write;
    let mut s = SyntheticSession::new(CLIENT, WS_SERVER, ms(0));
    let c = Dir::ClientToServer;
    let sv = Dir::ServerToClient;
    s.send(
        ms(1),
        c,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:27226\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: acip\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
    );
    s.send(
        ms(2),
        sv,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\nSec-WebSocket-Protocol: acip\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    );
    let caps = ClientCapabilities::new(Dialect::Feb, 80, 24, 60).to_packet().encode();
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = z.write_all(&caps);
    let _ = z.flush();
    let mut deflated = z.get_ref().clone();
    if deflated.ends_with(&[0, 0, 0xFF, 0xFF]) {
        deflated.truncate(deflated.len() - 4);
    }
    let mut up = Vec::new();
    let start = up.len();
    ws_frame(&mut up, OpCode::Binary, true, true, &deflated);
    up[start] |= 0x40; // RSV1: compressed (RFC 7692)
    let ping = Packet::empty(PacketType::PING).encode();
    up.extend_from_slice(&[0x82, 0x80 | 126, 0, ping.len() as u8]);
    up.extend_from_slice(&MASK);
    up.extend(ping.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    ws_frame(&mut up, OpCode::Binary, false, true, &ping[..10]);
    let cont = up.len();
    ws_frame(&mut up, OpCode::Continuation, true, true, &ping[10..]);
    up[cont] |= 0x40;
    ws_frame(&mut up, OpCode::Ping, false, true, b"hi");
    let mut junk_then_ping = b"JUNK".to_vec();
    junk_then_ping.extend_from_slice(&ping);
    ws_frame(&mut up, OpCode::Binary, true, true, &junk_then_ping);
    ws_frame(&mut up, OpCode::Close, true, true, &1005u16.to_be_bytes());
    ws_frame(&mut up, OpCode::Binary, true, true, &ping);
    s.send(ms(3), c, &up);
    let mut close = Vec::new();
    ws_frame(&mut close, OpCode::Close, true, false, &1000u16.to_be_bytes());
    s.send(ms(4), sv, &close);
    s.close(ms(5), sv);
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
        ("tcp_damage.pcap", sessions_to_pcap(&[&tcp_damage()], SyntheticLink::Ethernet)),
        ("ws_details.pcap", sessions_to_pcap(&[&ws_details()], SyntheticLink::Ethernet)),
    ]
}
