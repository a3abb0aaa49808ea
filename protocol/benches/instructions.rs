//! Instruction counts (Valgrind's callgrind, through gungraun) of the hot paths, for a noise-free
//! regression gate: the same binary gives the same count on any load, where the criterion benches
//! (`codec.rs`, `crypto.rs`) swing by tens of percent on this shared machine. Each benchmark runs once
//! under callgrind; only the benchmark function is counted, not its setup.
//!
//! * `decode_crc`: `Packet::decode` + CRC-32C of the 921,646-byte IMAGE_FRAME packet.
//! * `reassembly`: the same packet reassembled from its 225 WebSocket fragments of 4096 bytes.
//! * `encrypt` / `decrypt`: `Session::encrypt` / `decrypt` of it on the default cipher backend.
//! * `handshake`: a whole TCP key exchange (`head`, mode ENCRYPT, no password: Argon2id would swamp it).
//! * `soak_iteration`: one frame's whole round as a `harness soak` client and the server do it, through the
//!   sans-IO `acip::conn::Conn` of each role on an encrypted `feb` WebSocket session set up beforehand:
//!   render the 320x240 test pattern into an IMAGE_FRAME, encrypt, encode, cut into masked 4096-byte
//!   fragments (the native client's size); then reassemble, unmask, decrypt, decode and check the pattern.
//!
//! Needs valgrind and `gungraun-runner` of the same version as the `gungraun` dev-dependency.
//! Under valgrind the CPU shows no AVX-512, so the cipher's AVX2 kernels are the ones counted.
//!
//!     cargo bench -p acip --bench instructions            # counts, compared with the previous run
//!     bash protocol/benches/instructions.sh check         # the CI gate: against the committed baseline
//!     bash protocol/benches/instructions.sh refresh       # rewrite the committed baseline

use std::hint::black_box;
use std::time::Instant;

use acip::codec::payloads::ImageFrame;
use acip::codec::{Limits, Packet, PacketType};
use acip::conn::{Conn, ConnConfig, Event, Input, Output, State};
use acip::crypto::{ClientHandshake, HandshakeConfig, ServerHandshake, Session, Transport};
use acip::pattern::PatternInfo;
use acip::ws::{
    fragment, Frame, Reassembler, ReassemblerConfig, ReassemblyEvent, FRAGMENT_SIZE_NATIVE_CLIENT,
};
use acip::Dialect;
use bytes::Bytes;
use gungraun::{library_benchmark, library_benchmark_group, main};

fn image_frame() -> Packet {
    let pixels = 640 * 480 * 3;
    let mut payload = Vec::with_capacity(24 + pixels);
    for v in [640u32, 480, 1, 0, 0, 0] {
        payload.extend_from_slice(&v.to_be_bytes());
    }
    payload.extend((0..pixels).map(|i| (i * 7 % 251) as u8));
    Packet::new(PacketType::IMAGE_FRAME, payload)
}

#[allow(clippy::disallowed_methods)] // a benchmark, not the sans-IO core: the base of virtual time
fn origin() -> Instant {
    Instant::now()
}

fn wire() -> Bytes {
    Bytes::from(image_frame().encode())
}

fn fragments() -> (Vec<Frame>, Instant) {
    let bytes = wire();
    let frames = fragment(&bytes, FRAGMENT_SIZE_NATIVE_CLIENT)
        .map(|(op, fin, chunk)| Frame::new(op, fin, bytes.slice_ref(chunk)))
        .collect();
    (frames, origin())
}

fn sender() -> (Session, Packet) {
    (Session::new(Dialect::Head, [0x42; 32], [1; 16]), image_frame())
}

fn sealed() -> (Session, Packet) {
    let mut s = Session::new(Dialect::Head, [0x42; 32], [1; 16]);
    let wrapped = s.encrypt(&image_frame()).unwrap();
    (Session::new(Dialect::Head, [0x42; 32], [2; 16]), wrapped)
}

fn handshakes() -> (ServerHandshake, ClientHandshake, Instant) {
    let now = origin();
    let server = ServerHandshake::new(HandshakeConfig::new(Dialect::Head, Transport::Tcp, 1), now);
    let client = ClientHandshake::new(HandshakeConfig::new(Dialect::Head, Transport::Tcp, 2), now);
    (server, client, now)
}

/// A client and a server connection after an encrypted `feb` WebSocket handshake, with nothing in flight.
struct SoakPair {
    client: Conn,
    server: Conn,
    now: Instant,
}

/// Moves every transmit of `from` into `to`; returns whether anything moved.
fn deliver(from: &mut Conn, to: &mut Conn, now: Instant) -> bool {
    let mut moved = false;
    while let Some(out) = from.poll_output() {
        if let Output::Transmit(bytes) = out {
            to.handle_input(Input::Bytes(bytes), now);
            moved = true;
        }
    }
    moved
}

fn soak_pair() -> SoakPair {
    let now = origin();
    let mut client_config = ConnConfig::new(Dialect::Feb, Transport::WebSocket, 2);
    client_config.ws_fragment = Some(FRAGMENT_SIZE_NATIVE_CLIENT);
    let mut client = Conn::client(client_config, now);
    let mut server = Conn::server(ConnConfig::new(Dialect::Feb, Transport::WebSocket, 1), now);
    while deliver(&mut client, &mut server, now) | deliver(&mut server, &mut client, now) {}
    assert!(client.state() == State::Open && server.state() == State::Open, "handshake did not finish");
    assert!(client.is_encrypted() && server.is_encrypted(), "session not encrypted");
    SoakPair { client, server, now }
}

#[library_benchmark]
#[bench::feb_ws_encrypted_320x240(setup = soak_pair)]
fn soak_iteration(SoakPair { mut client, mut server, now }: SoakPair) -> PatternInfo {
    let (w, h) = (320u16, 240u16);
    let mut payload = vec![0u8; ImageFrame::HEADER_LEN + w as usize * h as usize * 3];
    payload[0..4].copy_from_slice(&u32::from(w).to_be_bytes());
    payload[4..8].copy_from_slice(&u32::from(h).to_be_bytes());
    payload[8..12].copy_from_slice(&ImageFrame::RGB24.to_be_bytes());
    acip::pattern::render_into(w, h, 1, 1_000_000, 7, &mut payload[ImageFrame::HEADER_LEN..]).unwrap();
    client.handle_input(Input::Send(Packet::new(PacketType::IMAGE_FRAME, payload)), now);
    deliver(&mut client, &mut server, now);
    let mut info = None;
    while let Some(out) = server.poll_output() {
        if let Output::Event(Event::Packet(p)) = out {
            let frame = ImageFrame::decode_bytes(&p.payload).unwrap();
            info = Some(acip::pattern::inspect(&frame.pixels).unwrap());
        }
    }
    black_box(info.expect("the server received no IMAGE_FRAME"))
}

#[library_benchmark]
#[bench::image_frame(setup = wire)]
fn decode_crc(bytes: Bytes) -> (Packet, usize) {
    black_box(Packet::decode(&bytes, &Limits::default()).unwrap())
}

#[library_benchmark]
#[bench::image_frame_4096(setup = fragments)]
fn reassembly((frames, now): (Vec<Frame>, Instant)) -> Bytes {
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let mut out = None;
    for f in frames {
        out = r.handle_frame(f, now).unwrap();
    }
    let Some(ReassemblyEvent::Message(m)) = out else { panic!("no message") };
    black_box(m.data)
}

#[library_benchmark]
#[bench::image_frame(setup = sender)]
fn encrypt((mut session, frame): (Session, Packet)) -> Packet {
    black_box(session.encrypt(&frame).unwrap())
}

#[library_benchmark]
#[bench::image_frame(setup = sealed)]
fn decrypt((session, wrapped): (Session, Packet)) -> Packet {
    black_box(session.decrypt(&wrapped).unwrap())
}

#[library_benchmark]
#[bench::tcp_head_encrypt(setup = handshakes)]
fn handshake(
    (mut server, mut client, now): (ServerHandshake, ClientHandshake, Instant),
) -> (Session, Session) {
    while !(server.is_complete() && client.is_complete()) {
        let mut moved = false;
        while let Some(p) = client.poll_transmit() {
            server.handle_packet(p, now).unwrap();
            moved = true;
        }
        while let Some(p) = server.poll_transmit() {
            client.handle_packet(p, now).unwrap();
            moved = true;
        }
        assert!(moved, "handshake stalled");
    }
    black_box((server.into_session().unwrap(), client.into_session().unwrap()))
}

library_benchmark_group!(
    name = acip_hot_paths;
    benchmarks = decode_crc, reassembly, encrypt, decrypt, handshake, soak_iteration
);

main!(library_benchmark_groups = acip_hot_paths);
