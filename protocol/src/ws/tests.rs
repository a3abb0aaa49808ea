//! Tests of the WebSocket message layer across its parts: frame round trips (and agreement with
//! tungstenite's header code), reassembly properties, every error, and the real captures in `corpus/`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::codec::{Limits, Packet, PacketType};

#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    // Virtual time origin for tests; only offsets from it matter.
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Decodes all frames of `wire`, fed in chunks of `chunk` bytes.
fn decode_all(wire: &[u8], chunk: usize, config: FrameDecoderConfig) -> Result<Vec<Frame>, FrameError> {
    let mut d = FrameDecoder::with_config(config);
    let mut out = Vec::new();
    for piece in wire.chunks(chunk.max(1)) {
        d.handle_bytes(piece);
        while let Some(f) = d.poll_frame() {
            out.push(f?);
        }
    }
    assert!(d.is_at_boundary(), "{} bytes left over", d.buffered());
    assert_eq!(d.consumed(), wire.len() as u64);
    Ok(out)
}

fn first_error(wire: &[u8], config: FrameDecoderConfig) -> FrameError {
    let mut d = FrameDecoder::with_config(config);
    d.handle_bytes(wire);
    loop {
        match d.poll_frame() {
            Some(Err(e)) => return e,
            Some(Ok(_)) => continue,
            None => panic!("no error for {wire:02X?}"),
        }
    }
}

/// An IMAGE_FRAME packet of `width` x `height` RGB24 pixels (pattern bytes).
fn image_frame(width: u32, height: u32) -> Vec<u8> {
    let mut payload = Vec::with_capacity(24 + (width * height * 3) as usize);
    for v in [width, height, 1, 0, 0, 0] {
        payload.extend_from_slice(&v.to_be_bytes());
    }
    payload.extend((0..width * height * 3).map(|i| (i % 251) as u8));
    Packet::new(PacketType::IMAGE_FRAME, payload).encode()
}

fn opcode_strategy() -> impl Strategy<Value = OpCode> {
    (0u8..16).prop_map(OpCode::from_u8)
}

#[test]
fn opcode_wire_values_round_trip() {
    for v in 0u8..16 {
        let op = OpCode::from_u8(v);
        assert_eq!(op.to_u8(), v);
        assert_eq!(op.is_control(), v >= 8);
        assert_eq!(op.is_reserved(), matches!(v, 3..=7 | 0xB..=0xF));
    }
}

#[test]
fn length_encodings_at_their_boundaries() {
    for (len, header) in [(0usize, 2usize), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
        let mut out = Vec::new();
        encode_frame(OpCode::Binary, true, None, &vec![0; len], &mut out);
        assert_eq!(out.len(), header + len, "payload {len}");
        let mut masked = Vec::new();
        encode_frame(OpCode::Binary, true, Some([1, 2, 3, 4]), &vec![0; len], &mut masked);
        assert_eq!(masked.len(), header + 4 + len);
    }
}

#[test]
fn rfc6455_masked_hello_example() {
    // RFC 6455 5.7: a single-frame masked text message "Hello".
    let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    let frames = decode_all(&wire, 1, FrameDecoderConfig::new(1000)).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].opcode, frames[0].fin), (OpCode::Text, true));
    assert_eq!(&frames[0].payload[..], b"Hello");
    let mut again = Vec::new();
    frames[0].encode_into(&mut again);
    assert_eq!(again, wire);
}

proptest! {
    /// decode(encode(frame)) == frame at any chunking, and the header bytes equal tungstenite's.
    #[test]
    fn frame_round_trip_any_chunking(
        opcode in opcode_strategy().prop_filter("valid", |o| !o.is_reserved()),
        fin in any::<bool>(),
        mask in proptest::option::of(any::<[u8; 4]>()),
        // Length across all three length encodings; contents from a seed (random 70 KB vectors are slow in
        // debug builds and add nothing: the codec never looks at payload values).
        len in prop_oneof![0usize..130, 130usize..70_000],
        seed in any::<u8>(),
        chunk in 1usize..5000,
    ) {
        let payload: Vec<u8> = (0..len).map(|i| seed.wrapping_add((i * 31 % 256) as u8)).collect();
        let fin = fin || opcode.is_control();
        let payload = if opcode.is_control() { payload[..payload.len().min(125)].to_vec() } else { payload };
        let mut wire = Vec::new();
        encode_frame(opcode, fin, mask, &payload, &mut wire);

        let header = tungstenite::protocol::frame::FrameHeader {
            is_final: fin,
            opcode: tungstenite::protocol::frame::coding::OpCode::from(opcode.to_u8()),
            mask,
            ..Default::default()
        };
        let mut theirs = Vec::new();
        header.format(payload.len() as u64, &mut theirs).unwrap();
        prop_assert_eq!(&wire[..theirs.len()], &theirs[..]);

        let frames = decode_all(&wire, chunk, FrameDecoderConfig::new(1 << 20)).unwrap();
        prop_assert_eq!(frames, vec![Frame { opcode, fin, mask, payload: Bytes::from(payload) }]);
    }

    /// Any message cut into any fragment sizes, with control frames anywhere between fragments, comes out
    /// identical, with the control frames in order around it.
    #[test]
    fn any_fragmentation_with_interleaved_control_frames_reassembles_identically(
        declared in 0usize..20_000,
        sizes in proptest::collection::vec(1usize..3000, 1..40),
        pings in proptest::collection::vec((0usize..40, 0usize..126), 0..6),
        gap_ms in 0u64..1999,
    ) {
        let payload: Vec<u8> = (0..declared).map(|i| (i % 253) as u8).collect();
        let message = Packet::new(PacketType::IMAGE_FRAME, payload).encode();
        // Cut points from the size list, cycling until the message is used up.
        let mut frames = Vec::new();
        let mut off = 0;
        for size in sizes.iter().cycle() {
            let end = (off + size).min(message.len());
            let op = if off == 0 { OpCode::Binary } else { OpCode::Continuation };
            frames.push(Frame::new(op, end == message.len(), message[off..end].to_vec()));
            off = end;
            if off == message.len() {
                break;
            }
        }
        let fragments = frames.len();
        for (at, len) in &pings {
            let at = (*at).min(frames.len() - 1);
            frames.insert(at, Frame::ping(vec![0x11; *len]));
        }
        let mut r = Reassembler::new(ReassemblerConfig::default().with_timeout(ms(2000)));
        let start = t0();
        let mut now = start;
        let mut controls = 0;
        let mut got = None;
        for f in frames {
            // Data frames `gap_ms` apart (under the 2 s timeout); control frames arrive in between.
            if !f.opcode.is_control() {
                now += ms(gap_ms);
            }
            match r.handle_frame(f, now).unwrap() {
                Some(ReassemblyEvent::Control(c)) => {
                    prop_assert_eq!(c.opcode, OpCode::Ping);
                    controls += 1;
                }
                Some(ReassemblyEvent::Message(m)) => {
                    prop_assert!(got.is_none());
                    got = Some(m);
                }
                None => {}
            }
        }
        let m = got.expect("message completed");
        prop_assert_eq!(controls, pings.len());
        prop_assert_eq!(&m.data[..], &message[..]);
        prop_assert_eq!(m.fragments, fragments);
        prop_assert_eq!(m.gaps.len(), fragments - 1);
        prop_assert!(!r.in_progress());
        prop_assert_eq!(Packet::decode_exact(m.data, &Limits::default()).unwrap().payload.len(), declared);
    }

    /// Any bytes in any chunks through FrameDecoder + Reassembler: messages or typed errors, never a panic.
    #[test]
    fn any_bytes_any_chunks_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        chunks in proptest::collection::vec(1usize..300, 1..20),
        check in any::<bool>(),
    ) {
        let config = ReassemblerConfig {
            max_message: 4096,
            max_fragments: 8,
            check_packet_length: check,
            ..Default::default()
        };
        let mut d = MessageDecoder::new(FrameDecoderConfig::new(2048), config);
        let mut now = t0();
        let mut off = 0;
        for size in chunks.iter().cycle() {
            let end = (off + size).min(bytes.len());
            d.handle_bytes(&bytes[off..end]);
            off = end;
            now += ms(30);
            while let Some(event) = d.poll_event(now) {
                match event {
                    Ok(ReassemblyEvent::Message(m)) => prop_assert!(m.data.len() <= 4096),
                    Ok(ReassemblyEvent::Control(c)) => prop_assert!(c.payload.len() <= 125),
                    Err(crate::Error::Frame(_)) => break,
                    Err(crate::Error::Reassembly(_)) => {}
                    Err(other) => prop_assert!(false, "unexpected error {other}"),
                }
            }
            if off == bytes.len() {
                break;
            }
        }
    }

    /// The fuzz target's differential check (reassembler against its model) on random inputs.
    #[test]
    fn reassembler_agrees_with_its_model(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        crate::fuzzing::reassembly::run(&data);
    }
}

#[test]
fn fragmenter_output_decodes_and_reassembles() {
    let message = image_frame(64, 48);
    let mut wire = Vec::new();
    Fragmenter::NATIVE_CLIENT.encode(&message, Some([9, 8, 7, 6]), &mut wire);
    let mut d = MessageDecoder::new(
        FrameDecoderConfig { require_mask: Some(true), ..FrameDecoderConfig::default() },
        ReassemblerConfig::default(),
    );
    d.handle_bytes(&wire);
    let Some(Ok(ReassemblyEvent::Message(m))) = d.poll_event(t0()) else { panic!("no message") };
    assert_eq!(m.fragments, message.len().div_ceil(4096));
    assert_eq!(&m.data[..], &message[..]);
    assert!(d.poll_event(t0()).is_none());
}

#[test]
fn single_frame_message_is_not_copied() {
    let payload = Bytes::from(Packet::empty(PacketType::PING).encode());
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let Ok(Some(ReassemblyEvent::Message(m))) = r.handle_frame(Frame::binary(payload.clone()), t0()) else {
        panic!()
    };
    assert_eq!(m.data.as_ptr(), payload.as_ptr());
}

#[test]
fn timeout_is_reset_by_each_fragment_and_control_frames_do_not_reset_it() {
    let start = t0();
    let cfg = ReassemblerConfig { check_packet_length: false, ..Default::default() };
    // 100 ms (the old code) fails a message whose fragments are 150 ms apart; 2 s (the fix) does not.
    for (timeout, ok) in [(REASSEMBLY_TIMEOUT_OLD, false), (REASSEMBLY_TIMEOUT_FIXED, true)] {
        let mut r = Reassembler::new(cfg.with_timeout(timeout));
        r.handle_frame(Frame::new(OpCode::Binary, false, vec![1; 10]), start).unwrap();
        assert_eq!(r.poll_timeout(), Some(start + timeout));
        r.handle_frame(Frame::ping(vec![]), start + ms(50)).unwrap();
        assert_eq!(r.poll_timeout(), Some(start + timeout), "a PING must not extend the deadline");
        let res = r.handle_frame(Frame::continuation(true, vec![2; 10]), start + ms(150));
        if ok {
            assert!(matches!(res, Ok(Some(ReassemblyEvent::Message(ref m))) if m.gaps == [ms(150)]));
        } else {
            assert_eq!(
                res,
                Err(ReassemblyError::Timeout { after: REASSEMBLY_TIMEOUT_OLD, fragments: 1, bytes: 10 })
            );
        }
        assert!(!r.in_progress());
    }
    // The ~30 ms batches of ACIP-SPEC.md 8 pass even the old timeout, fragment by fragment.
    let mut r = Reassembler::new(cfg.with_timeout(REASSEMBLY_TIMEOUT_OLD));
    let mut now = start;
    r.handle_frame(Frame::new(OpCode::Binary, false, vec![0; 4096]), now).unwrap();
    for i in 0..20 {
        now += ms(30);
        assert_eq!(r.handle_timeout(now), Ok(()));
        r.handle_frame(Frame::continuation(i == 19, vec![0; 4096]), now).unwrap();
    }
    // handle_timeout fires exactly at the deadline.
    let mut r = Reassembler::new(cfg);
    r.handle_frame(Frame::new(OpCode::Binary, false, vec![0; 3]), start).unwrap();
    assert_eq!(r.handle_timeout(start + ms(1999)), Ok(()));
    assert!(matches!(
        r.handle_timeout(start + ms(2000)),
        Err(ReassemblyError::Timeout { fragments: 1, bytes: 3, .. })
    ));
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn huge_timeout_means_no_deadline() {
    let cfg =
        ReassemblerConfig { check_packet_length: false, ..Default::default() }.with_timeout(Duration::MAX);
    let mut r = Reassembler::new(cfg);
    let start = t0();
    r.handle_frame(Frame::new(OpCode::Binary, false, vec![1]), start).unwrap();
    assert_eq!(r.poll_timeout(), None);
    let late = start + Duration::from_secs(86_400);
    assert_eq!(r.handle_timeout(late), Ok(()));
    assert!(r.handle_frame(Frame::continuation(true, vec![2]), late).unwrap().is_some());
}

#[test]
fn reassembler_recovers_after_an_error() {
    let mut r = Reassembler::new(ReassemblerConfig { check_packet_length: false, ..Default::default() });
    let now = t0();
    r.handle_frame(Frame::new(OpCode::Binary, false, vec![1]), now).unwrap();
    assert!(r.handle_frame(Frame::new(OpCode::Binary, false, vec![2]), now).is_err());
    assert!(!r.in_progress());
    let m = r.handle_frame(Frame::binary(vec![3]), now).unwrap();
    assert!(matches!(m, Some(ReassemblyEvent::Message(m)) if m.data[..] == [3]));
}

#[test]
fn head_dialect_frames_feed_the_stream_decoder() {
    // HEAD: packets split and coalesced across frames regardless of message boundaries.
    let mut bytes = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]).encode();
    Packet::empty(PacketType::PING).encode_into(&mut bytes);
    let mut stream = crate::stream::StreamDecoder::new(Limits::default());
    let mut got = Vec::new();
    for (i, chunk) in bytes.chunks(7).enumerate() {
        let op = if i % 2 == 0 { OpCode::Binary } else { OpCode::Continuation };
        assert!(feed_head_stream(&Frame::new(op, true, chunk.to_vec()), &mut stream));
        assert!(!feed_head_stream(&Frame::ping(vec![1]), &mut stream));
        while let Some(p) = stream.poll_packet() {
            got.push(p.unwrap().packet_type);
        }
    }
    assert_eq!(got, [PacketType::STREAM_START, PacketType::PING]);
}

fn corpus(path: &str) -> Vec<u8> {
    let full = format!("{}/../corpus/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

#[test]
fn capture_57_fragments_reassemble_into_one_image_frame() {
    let wire = corpus("captures/old9850bc9_57_fragments.bin");
    assert_eq!(wire.len(), 230_902);
    let frames_cfg =
        FrameDecoderConfig { require_mask: Some(true), strict_length: true, ..Default::default() };
    let frames = decode_all(&wire, 1448, frames_cfg).unwrap();
    assert_eq!(frames.len(), 57);
    assert_eq!(frames.iter().filter(|f| f.opcode == OpCode::Continuation).count(), 56);
    assert!(frames.iter().take(56).all(|f| !f.fin && f.payload.len() == 4096));
    assert_eq!((frames[56].fin, frames[56].payload.len()), (true, 1070));

    let mut r = Reassembler::new(ReassemblerConfig::default());
    let start = t0();
    let mut message = None;
    for (i, f) in frames.into_iter().enumerate() {
        if let Some(ReassemblyEvent::Message(m)) = r.handle_frame(f, start + ms(i as u64)).unwrap() {
            message = Some(m);
        }
    }
    let m = message.expect("one message");
    assert_eq!((m.opcode, m.fragments, m.data.len()), (OpCode::Binary, 57, 230_446));
    let packet = Packet::decode_exact(m.data, &Limits::default()).expect("valid packet, CRC ok");
    assert_eq!(packet.packet_type, PacketType::IMAGE_FRAME);
    assert_eq!(packet.payload.len(), 230_424);
    assert_eq!(&packet.payload[..12], &[0, 0, 1, 64, 0, 0, 0, 240, 0, 0, 0, 1], "320x240 RGB24");
}

#[test]
fn sigabrt_087fa71_message_is_shorter_than_its_packet() {
    let wire = corpus("regressions/sigabrt-087fa71-short-message.bin");
    let frames = decode_all(&wire, 4104, FrameDecoderConfig::default()).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].opcode, frames[0].fin, frames[0].payload.len()), (OpCode::Binary, true, 4096));
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let err = r.handle_frame(frames[0].clone(), t0()).unwrap_err();
    assert_eq!(err, ReassemblyError::MessageShorterThanPacket { message: 4096, packet: 230_446 });
    insta::assert_snapshot!("sigabrt_087fa71", err.to_string());
    assert_eq!(crate::Error::from(err).close().ws_close_code, 1002);
    // What the client tried next (CONTINUATION after a FIN) is the other half of the bug.
    assert_eq!(
        r.handle_frame(Frame::continuation(false, vec![0; 4096]), t0()),
        Err(ReassemblyError::ContinuationWithoutStart { fin: false })
    );
}

/// Every error, triggered from real input where one exists, with its message: the texts are API.
#[test]
fn every_error_message() {
    let lenient = FrameDecoderConfig::new(1000);
    let mut lines = Vec::new();
    let mut frame_err = |name: &str, wire: &[u8], cfg: FrameDecoderConfig| {
        lines.push(format!("FrameError::{name}: {}", first_error(wire, cfg)));
    };
    frame_err("ReservedBits", &[0xC2, 0x00], lenient);
    frame_err("ReservedOpcode", &[0x83, 0x00], lenient);
    frame_err("FragmentedControl", &[0x09, 0x00], lenient);
    frame_err("ControlTooLong", &[0x89, 126, 0x00, 200], lenient);
    frame_err("FrameTooLarge", &[0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0], lenient);
    frame_err(
        "NonMinimalLength",
        &[0x82, 126, 0x00, 0x05],
        FrameDecoderConfig { strict_length: true, ..lenient },
    );
    frame_err("Unmasked", &[0x82, 0x00], FrameDecoderConfig { require_mask: Some(true), ..lenient });
    frame_err(
        "UnexpectedMask",
        &[0x82, 0x80, 1, 2, 3, 4],
        FrameDecoderConfig { require_mask: Some(false), ..lenient },
    );

    let now = t0();
    let cfg = ReassemblerConfig { max_message: 100, max_fragments: 3, ..Default::default() };
    let run = |cfg: ReassemblerConfig, frames: Vec<(Frame, u64)>| -> ReassemblyError {
        let mut r = Reassembler::new(cfg);
        for (f, at) in frames {
            if let Err(e) = r.handle_frame(f, now + ms(at)) {
                return e;
            }
        }
        r.handle_timeout(now + ms(60_000)).unwrap_err()
    };
    let packet = |declared: u32, extra: usize| {
        let mut h = Packet::empty(PacketType::IMAGE_FRAME).header();
        h.length = declared;
        let mut v = h.to_bytes().to_vec();
        v.extend(vec![0; extra]);
        v
    };
    let bin = |fin, data: Vec<u8>| (Frame::new(OpCode::Binary, fin, data), 0);
    let cont = |fin, data: Vec<u8>| (Frame::continuation(fin, data), 0);
    let errors = [
        ("ContinuationWithoutStart", run(cfg, vec![cont(true, vec![1])])),
        ("DataFrameBeforeFin", run(cfg, vec![bin(false, vec![1; 30]), bin(true, vec![1])])),
        ("MessageTooLarge", run(cfg, vec![bin(false, vec![1; 60]), cont(true, vec![1; 60])])),
        (
            "TooManyFragments",
            run(
                cfg,
                vec![bin(false, packet(8, 0)), cont(false, vec![]), cont(false, vec![]), cont(true, vec![])],
            ),
        ),
        ("Timeout", run(cfg, vec![bin(false, packet(8, 4))])),
        ("HeaderIncomplete", run(cfg, vec![bin(true, vec![0; 10])])),
        ("MessageShorterThanPacket", run(cfg, vec![bin(false, packet(50, 4)), cont(true, vec![0; 4])])),
        ("MessageLongerThanPacket", run(cfg, vec![bin(true, packet(2, 4))])),
        ("ReservedOpcode", run(cfg, vec![(Frame::new(OpCode::Reserved(0xB), true, vec![]), 0)])),
    ];
    for (name, e) in errors {
        lines.push(format!("ReassemblyError::{name}: {e}"));
    }
    insta::assert_snapshot!("error_messages", lines.join("\n"));
}

/// A dissector's decoder (`observe`) returns what a strict one refuses, with the facts: RSV bits, a
/// non-minimal length, a fragmented or over-long control frame, a reserved opcode. The strict default
/// still refuses each.
#[test]
fn observe_mode_reports_what_strict_mode_refuses() {
    let mut wire = Vec::new();
    encode_frame(OpCode::Binary, true, None, b"abc", &mut wire);
    wire[0] |= 0x40; // RSV1
    wire.extend_from_slice(&[0x82, 126, 0, 3, b'x', b'y', b'z']); // length 3 in the 16-bit form
    encode_frame(OpCode::Ping, false, None, b"p", &mut wire);
    let mut long = Vec::new();
    encode_frame(OpCode::Binary, true, None, &[7u8; 130], &mut long);
    long[0] = 0x89; // a PING of 130 bytes
    wire.extend_from_slice(&long);
    wire.extend_from_slice(&[0x83, 0]); // reserved opcode 0x3
    let mut d =
        FrameDecoder::with_config(FrameDecoderConfig { observe: true, ..FrameDecoderConfig::default() });
    d.handle_bytes(&wire);
    let mut got = Vec::new();
    while let Some(r) = d.poll_observed() {
        let (f, facts) = r.unwrap();
        got.push((f.opcode, f.fin, f.payload.len(), facts.rsv, facts.non_minimal_length));
    }
    assert_eq!(
        got,
        vec![
            (OpCode::Binary, true, 3, 0b100, false),
            (OpCode::Binary, true, 3, 0, true),
            (OpCode::Ping, false, 1, 0, false),
            (OpCode::Ping, true, 130, 0, false),
            (OpCode::Reserved(3), true, 0, 0, false),
        ]
    );
    let mut strict = FrameDecoder::with_config(FrameDecoderConfig::default());
    strict.handle_bytes(&wire);
    assert!(matches!(strict.poll_frame(), Some(Err(FrameError::ReservedBits { .. }))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A header from `encode_frame_header` followed by the payload masked in place is what `encode_frame`
    /// writes (the in-place sender's wire equals the copying one's).
    #[test]
    fn header_plus_in_place_mask_equals_encode_frame(
        opcode in opcode_strategy().prop_filter("valid", |o| !o.is_reserved()),
        fin: bool,
        mask in proptest::option::of(any::<[u8; 4]>()),
        len in prop_oneof![0usize..130, 130usize..70_000],
        seed: u8,
    ) {
        let payload: Vec<u8> = (0..len).map(|i| seed.wrapping_add((i * 31 % 256) as u8)).collect();
        let mut want = Vec::new();
        encode_frame(opcode, fin, mask, &payload, &mut want);
        let mut got = Vec::new();
        encode_frame_header(opcode, fin, mask, payload.len(), &mut got);
        let mut body = payload.clone();
        if let Some(key) = mask {
            apply_mask(&mut body, key);
        }
        got.extend_from_slice(&body);
        prop_assert_eq!(got, want);
    }

    /// Reading `read_hint` bytes at a time straight into `recv_buf` decodes the same frames as feeding
    /// slices, and never regrows the buffer under a frame.
    #[test]
    fn read_hint_and_recv_buf_decode_the_same_frames(
        sizes in proptest::collection::vec(0usize..70_000, 1..5),
        mask in proptest::option::of(any::<[u8; 4]>()),
        cap in 1usize..100_000,
    ) {
        let mut wire = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            encode_frame(OpCode::Binary, true, mask, &vec![i as u8; n], &mut wire);
        }
        let want = decode_all(&wire, wire.len(), FrameDecoderConfig::new(1 << 20)).unwrap();
        let mut d = FrameDecoder::with_config(FrameDecoderConfig::new(1 << 20));
        let (mut off, mut got) = (0, Vec::new());
        while off < wire.len() {
            let n = d.read_hint().min(cap).min(wire.len() - off);
            d.recv_buf(n).extend_from_slice(&wire[off..off + n]);
            off += n;
            while let Some(f) = d.poll_frame() {
                got.push(f.unwrap());
            }
        }
        prop_assert_eq!(got, want);
        prop_assert!(d.is_at_boundary());
    }
}
