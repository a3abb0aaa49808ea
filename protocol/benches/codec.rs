//! Criterion benchmarks of the receive path for one 640x480 RGB24 IMAGE_FRAME (921,646 bytes on the wire,
//! ACIP-SPEC.md 3.7), beside a plain memcpy of the same bytes so the ratio to the machine's limit shows.
//!
//! The `conn_*` rows run the same bytes through `acip::conn` (the receive side alone, and a whole server
//! connection), so the cost of the connection object over the bare decoders shows in the same run.
//!
//! The `frame_*` rows are the send side of the test pattern (issue 15): the reference client's frame build
//! as it was (zeroed buffer, render, the pattern's checksum pass, the packet CRC pass) beside the lean one
//! (rows appended into a reused buffer, every CRC from the rows' CRCs), and the receiver's pattern check
//! as a pass beside the one derived from the verified packet CRC.
//!
//! `cargo bench -p acip --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Instant;

use acip::codec::{Limits, Packet, PacketType};
use acip::conn::{Conn, ConnConfig, Event, Input, Output, Received, Receiver, State};
use acip::crypto::{CryptoMode, Transport};
use acip::ws::{
    fragment, Fragmenter, Frame, FrameDecoderConfig, MessageDecoder, Reassembler, ReassemblerConfig,
    ReassemblyEvent, FRAGMENT_SIZE_NATIVE_CLIENT,
};
use acip::Dialect;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

fn image_frame() -> Vec<u8> {
    let pixels = (WIDTH * HEIGHT * 3) as usize;
    let mut payload = Vec::with_capacity(24 + pixels);
    for v in [WIDTH, HEIGHT, 1, 0, 0, 0] {
        payload.extend_from_slice(&v.to_be_bytes());
    }
    payload.extend((0..pixels).map(|i| (i * 7 % 251) as u8));
    Packet::new(PacketType::IMAGE_FRAME, payload).encode()
}

#[allow(clippy::disallowed_methods)] // a benchmark, not the sans-IO core: one reading for virtual time
fn origin() -> Instant {
    Instant::now()
}

fn bench(c: &mut Criterion) {
    let wire = image_frame();
    assert_eq!(wire.len(), 921_646);
    let limits = Limits::default();
    let packet_bytes = Bytes::from(wire.clone());
    let frames: Vec<Frame> = fragment(&packet_bytes, FRAGMENT_SIZE_NATIVE_CLIENT)
        .map(|(op, fin, chunk)| Frame::new(op, fin, packet_bytes.slice_ref(chunk)))
        .collect();
    let mut ws_wire = Vec::new();
    Fragmenter::NATIVE_CLIENT.encode(&wire, Some([0x6D, 0x3F, 0x41, 0x52]), &mut ws_wire);
    let now = origin();

    let mut group = c.benchmark_group("image_frame_921646");
    group.throughput(Throughput::Bytes(wire.len() as u64));

    group.bench_function("memcpy", |b| {
        let mut dst = vec![0u8; wire.len()];
        b.iter(|| {
            dst.copy_from_slice(black_box(&wire));
            black_box(&dst);
        })
    });

    group.bench_function("packet_decode_crc32c", |b| {
        b.iter(|| {
            let (p, used) = Packet::decode(black_box(&packet_bytes), &limits).unwrap();
            black_box((p, used))
        })
    });

    group.bench_function("reassemble_4096_fragments", |b| {
        b.iter(|| {
            let mut r = Reassembler::new(ReassemblerConfig::default());
            let mut out = None;
            for f in &frames {
                out = r.handle_frame(f.clone(), now).unwrap();
            }
            let Some(ReassemblyEvent::Message(m)) = out else { unreachable!() };
            black_box(m)
        })
    });

    // The whole feb receive path as a server sees it: socket reads of 64 KiB, masked 4096-byte frames,
    // unmasking, reassembly, then packet decode with its CRC-32C check.
    group.bench_function("ws_reads_unmask_reassemble_decode_4096", |b| {
        b.iter(|| {
            let mut d = MessageDecoder::new(
                FrameDecoderConfig { require_mask: Some(true), ..FrameDecoderConfig::default() },
                ReassemblerConfig::default(),
            );
            let mut message = None;
            for read in black_box(&ws_wire).chunks(65_536) {
                d.handle_bytes(read);
                while let Some(event) = d.poll_event(now) {
                    if let Ok(ReassemblyEvent::Message(m)) = event {
                        message = Some(m);
                    }
                }
            }
            black_box(Packet::decode_exact(message.unwrap().data, &limits).unwrap())
        })
    });

    // The same bytes through `acip::conn`: the receive side alone (what the reference server's reader
    // runs), and a whole open server connection (receive side, plaintext session, event queue).
    group.bench_function("conn_receiver_ws_feb_4096", |b| {
        b.iter(|| {
            let mut rx = Receiver::new(
                Transport::WebSocket,
                Dialect::Feb,
                limits,
                ReassemblerConfig::from_limits(&limits),
                false,
            );
            let mut packet = None;
            for read in black_box(&ws_wire).chunks(65_536) {
                rx.handle_bytes(read);
                while let Some(r) = rx.poll(now) {
                    if let Ok(Received::Packet { packet: p, .. }) = r {
                        packet = Some(p);
                    }
                }
            }
            black_box(packet.unwrap())
        })
    });

    group.bench_function("conn_server_ws_feb_4096", |b| {
        let mut cfg = ConnConfig::new(Dialect::Feb, Transport::WebSocket, 1);
        cfg.handshake.mode = CryptoMode::None;
        let mut conn = Conn::server(cfg, now);
        // A client that ignores the key exchange and talks plaintext opens the session (ACIP-SPEC.md 4.4).
        let mut first = Vec::new();
        Fragmenter::NATIVE_CLIENT.encode(
            &Packet::empty(PacketType::PING).encode(),
            Some([1, 2, 3, 4]),
            &mut first,
        );
        conn.handle_input(Input::Bytes(Bytes::from(first)), now);
        while conn.poll_output().is_some() {}
        assert_eq!(conn.state(), State::Open);
        let reads: Vec<Bytes> = ws_wire.chunks(65_536).map(Bytes::copy_from_slice).collect();
        b.iter(|| {
            let mut packet = None;
            for read in black_box(&reads) {
                conn.handle_input(Input::Bytes(read.clone()), now);
                while let Some(o) = conn.poll_output() {
                    if let Output::Event(Event::Packet(p)) = o {
                        packet = Some(p);
                    }
                }
            }
            black_box(packet.unwrap())
        })
    });
    group.bench_function("frame_build_zeroed_render_two_crcs", |b| {
        b.iter(|| {
            let pixels = (WIDTH * HEIGHT * 3) as usize;
            let mut buf = vec![0u8; 22 + 24 + pixels];
            acip::pattern::render_into(WIDTH as u16, HEIGHT as u16, 7, 0, 1, &mut buf[46..]).unwrap();
            let h = acip::Header::for_payload(PacketType::IMAGE_FRAME, &buf[22..]);
            buf[..22].copy_from_slice(&h.to_bytes());
            black_box(buf)
        })
    });

    group.bench_function("frame_build_renderer_reused_buffer", |b| {
        let mut r = acip::pattern::PatternRenderer::new(WIDTH as u16, HEIGHT as u16).unwrap();
        let mut pool = bytes::BytesMut::new();
        let mut seq = 0;
        b.iter(|| {
            pool.reserve(46 + r.frame_len());
            pool.extend_from_slice(&[0u8; 46]);
            seq += 1;
            let crc = r.render_append(seq, 0, 1, acip::crc::crc32c(&[0u8; 24]), &mut pool);
            black_box((crc, pool.split()))
        })
    });

    let pattern_packet = {
        let mut pixels = Vec::new();
        acip::pattern::render(WIDTH as u16, HEIGHT as u16, 3, 0, 1, &mut pixels).unwrap();
        let mut payload = vec![0u8; 24];
        payload.extend_from_slice(&pixels);
        Packet::new(PacketType::IMAGE_FRAME, payload)
    };
    let pattern_crc = pattern_packet.header().crc32;
    group.bench_function("frame_check_pattern_pass", |b| {
        b.iter(|| black_box(acip::pattern::inspect(&black_box(&pattern_packet).payload[24..]).unwrap()))
    });
    group.bench_function("frame_check_pattern_from_packet_crc", |b| {
        let mut checker = acip::pattern::PatternChecker::new();
        b.iter(|| {
            black_box(checker.inspect_verified(&black_box(&pattern_packet).payload, 24, pattern_crc).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
