//! Tests of the codec (ACIP-SPEC.md sections 1-3): known answers, proptest round trips of the header and of
//! every payload, golden encodings and error texts as insta snapshots (in `snapshots/`), the decoders'
//! rejections, and the CLIENT_CAPABILITIES dialect split (section 10 row 3).

use bytes::Bytes;
use proptest::prelude::*;

use super::payloads::*;
use super::*;
use crate::crypto::messages::{
    KeyExchangeInit, KeyExchangeResp, RespExtension, ServerAuthResp, SignedIdentity,
};
use crate::fuzzing::packet::examples;

// ---- known answers (1.1, 1.2) ----

#[test]
fn ping_bytes_match_the_spec() {
    let ping = Packet::empty(PacketType::PING).encode();
    assert_eq!(
        ping,
        [0x00, 0x00, 0x00, 0x0A, 0x5C, 0x11, 0xC4, 0xA1, 0x13, 0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    let (p, used) = Packet::decode(&Bytes::from(ping), &Limits::default()).unwrap();
    assert_eq!((p.packet_type, used), (PacketType::PING, 22));
}

#[test]
fn crc_mismatch_carries_both_values() {
    let mut bytes = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]).encode();
    bytes[25] ^= 1;
    let err = Packet::decode(&Bytes::from(bytes), &Limits::default()).unwrap_err();
    assert_eq!(
        err,
        CodecError::CrcMismatch {
            packet_type: PacketType::STREAM_START,
            expected: 0xBA0C_C8C4,
            actual: crate::crc::crc32c(&[0, 0, 0, 0])
        }
    );
}

/// CLIENT_CAPABILITIES as the real FEB client sent it in `../shared/captures/tcp_plaintext.pcap` (the first
/// packet of the TCP stream, payload only; extracted by searching the pcap for the magic followed by
/// type 0x1388). Note the garbage after `xterm\0` and the host-order `utf8_support`.
const CAPTURED_FEB_CAPS: &str = "0000001800000000000000000000000000500018787465726d007d2d5c787b666666667d5d5b612d7a302d395c787b3030613100005c787b666666667d5f2d5d2c30303025303030302c30303003000000000000010100000000000001000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000003c0000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn captured_feb_capabilities_decode_and_re_encode() {
    let wire = unhex(CAPTURED_FEB_CAPS);
    let caps = ClientCapabilities::decode(&wire, Dialect::Feb).unwrap();
    assert_eq!((caps.width, caps.height, caps.desired_fps, caps.capabilities), (80, 24, 60, 0x18));
    assert_eq!(until_nul(&caps.term_type), "xterm");
    assert_eq!(caps.utf8_support, 0x0100_0000);
    assert_eq!(caps.validate(), Ok(()));
    assert_eq!(caps.encode(), wire);
    // The HEAD server's exact-size check rejects the FEB packet.
    assert_eq!(
        ClientCapabilities::decode(&wire, Dialect::Head),
        Err(CodecError::WrongSize {
            packet_type: PacketType::CLIENT_CAPABILITIES,
            expected: SizeRule::Exactly(168),
            actual: 160
        })
    );
}

#[test]
fn each_dialect_rejects_the_others_capabilities() {
    for (sent, read, expected, actual) in
        [(Dialect::Feb, Dialect::Head, 168, 160), (Dialect::Head, Dialect::Feb, 160, 168)]
    {
        let packet = ClientCapabilities::new(sent, 80, 24, 60).to_packet();
        assert_eq!(packet.payload.len(), actual);
        assert_eq!(
            Payload::decode(&packet, read),
            Err(CodecError::WrongSize {
                packet_type: PacketType::CLIENT_CAPABILITIES,
                expected: SizeRule::Exactly(expected),
                actual
            })
        );
        assert!(Payload::decode(&packet, sent).is_ok());
    }
}

type Breakage = (&'static str, fn(&mut ClientCapabilities), u64);

#[test]
fn capabilities_validation_one_rule_each() {
    let ok = ClientCapabilities::new(Dialect::Head, 80, 24, 60);
    assert_eq!(ok.validate(), Ok(()));
    let cases: [Breakage; 8] = [
        ("width", |c| c.width = 0, 0),
        ("width", |c| c.width = 4097, 4097),
        ("height", |c| c.height = 0, 0),
        ("color_level", |c| c.color_level = 4, 4),
        ("render_mode", |c| c.render_mode = 3, 3),
        ("palette_type", |c| c.palette_type = 6, 6),
        ("desired_fps", |c| c.desired_fps = 0, 0),
        ("desired_fps", |c| c.desired_fps = 145, 145),
    ];
    for (field, break_it, value) in cases {
        let mut caps = ok;
        break_it(&mut caps);
        match caps.validate() {
            Err(CodecError::OutOfRange { field: f, value: v, .. }) => assert_eq!((f, v), (field, value)),
            other => panic!("{field}: {other:?}"),
        }
    }
}

// ---- the decoders' rejections ----

fn decode(packet_type: PacketType, payload: Vec<u8>) -> Result<Payload, CodecError> {
    Payload::decode(&Packet::new(packet_type, payload), Dialect::Feb)
}

#[test]
fn ascii_frame_checks() {
    let frame = AsciiFrame::new(2, 1, &b"ab"[..]);
    let mut wire = frame.encode();
    assert_eq!(wire[16..20], crate::crc::crc32c(b"ab").to_be_bytes());
    wire[24] = b'x';
    assert_eq!(
        AsciiFrame::decode(&wire),
        Err(CodecError::ChecksumMismatch {
            packet_type: PacketType::ASCII_FRAME,
            expected: crate::crc::crc32c(b"ab"),
            actual: crate::crc::crc32c(b"xb")
        })
    );
    let mut wire = frame.encode();
    wire[0..4].copy_from_slice(&0u32.to_be_bytes());
    assert!(matches!(
        AsciiFrame::decode(&wire),
        Err(CodecError::OutOfRange { field: "width", value: 0, .. })
    ));
    let mut wire = frame.encode();
    wire[8..12].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(
        AsciiFrame::decode(&wire),
        Err(CodecError::FieldMismatch { field: "original_size", declared: 3, actual: 2, .. })
    ));
    let mut wire = frame.encode();
    wire[12..16].copy_from_slice(&5u32.to_be_bytes());
    assert!(matches!(
        AsciiFrame::decode(&wire),
        Err(CodecError::FieldMismatch { field: "compressed_size", .. })
    ));
}

#[test]
fn ascii_frame_zstd_is_bounded() {
    // 8 MiB of spaces compress to a few hundred bytes.
    let big = AsciiFrame::new(80, 24, vec![b' '; 8 << 20]).with_zstd(3);
    let wire = Bytes::from(big.encode());
    assert!(wire.len() < 4096, "{}", wire.len());
    assert_eq!(AsciiFrame::decode_with_limit(&wire, 16 << 20).unwrap().text.len(), 8 << 20);
    // Over the configured limit: refused from the header, nothing inflated.
    assert!(matches!(
        AsciiFrame::decode_with_limit(&wire, 1 << 20),
        Err(CodecError::OutOfRange { field: "original_size", value, max, .. }) if value == 8 << 20 && max == 1 << 20
    ));
    // A frame that needs a larger window than its declared size: refused before anything is inflated.
    let mut lying = wire.to_vec();
    lying[8..12].copy_from_slice(&1000u32.to_be_bytes());
    assert!(matches!(
        AsciiFrame::decode_with_limit(&Bytes::from(lying), 1 << 20),
        Err(CodecError::Decompress { reason, .. }) if reason.contains("memory")
    ));
    // A frame that inflates to more than it declares stops one byte past the declared size.
    let mut lying = AsciiFrame::new(1, 1, vec![b'a'; 1020]).with_zstd(3).encode();
    lying[8..12].copy_from_slice(&1000u32.to_be_bytes());
    assert!(matches!(
        AsciiFrame::decode_with_limit(&Bytes::from(lying), 1 << 20),
        Err(CodecError::FieldMismatch { field: "original_size", declared: 1000, actual: 1001, .. })
    ));
    // Not zstd at all.
    let mut junk = AsciiFrame::new(1, 1, &b"x"[..]).encode();
    junk[12..16].copy_from_slice(&4u32.to_be_bytes());
    junk[20..24].copy_from_slice(&AsciiFrame::IS_COMPRESSED.to_be_bytes());
    junk.truncate(24);
    junk.extend_from_slice(b"junk");
    assert!(matches!(AsciiFrame::decode(&junk), Err(CodecError::Decompress { .. })));
}

#[test]
fn image_frame_checks_and_zero_copy() {
    let frame = ImageFrame::rgb24(2, 2, vec![7u8; 12]);
    let packet = frame.to_packet();
    let Payload::ImageFrame(decoded) = Payload::decode(&packet, Dialect::Feb).unwrap() else { panic!() };
    // The pixels are the packet's own bytes.
    assert_eq!(decoded.pixels.as_ptr(), packet.payload[24..].as_ptr());
    for (offset, value, field) in
        [(0, 0u32, "width"), (4, 8193, "height"), (8, 0, "pixel_format"), (8, 5, "pixel_format")]
    {
        let mut wire = frame.encode();
        wire[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
        match ImageFrame::decode(&wire) {
            Err(CodecError::OutOfRange { field: f, value: v, .. }) => {
                assert_eq!((f, v), (field, u64::from(value)))
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut wire = frame.encode();
    wire.push(0);
    assert!(matches!(
        ImageFrame::decode(&wire),
        Err(CodecError::WrongSize { expected: SizeRule::Between(24, 36), actual: 37, .. })
    ));
    assert!(matches!(
        ImageFrame::decode(&wire[..23]),
        Err(CodecError::WrongSize { expected: SizeRule::AtLeast(24), .. })
    ));
}

#[test]
fn audio_checks() {
    let batch = AudioBatch::from_f32(1, 48_000, 2, &[1.0, -1.0, 0.0]);
    assert_eq!(batch.samples, [i32::MAX, -i32::MAX, 0]);
    let mut wire = batch.encode();
    wire.pop();
    assert!(matches!(
        AudioBatch::decode(&wire),
        Err(CodecError::FieldMismatch { field: "4 x total_samples", declared: 12, actual: 11, .. })
    ));
    let mut wire = batch.encode();
    wire[8..12].copy_from_slice(&44_000u32.to_be_bytes());
    assert!(matches!(
        AudioBatch::decode(&wire),
        Err(CodecError::Unsupported { field: "sample_rate", value: 44_000, .. })
    ));
    let mut wire = batch.encode();
    wire[12..16].copy_from_slice(&9u32.to_be_bytes());
    assert!(matches!(
        AudioBatch::decode(&wire),
        Err(CodecError::OutOfRange { field: "channels", value: 9, .. })
    ));

    let opus = AudioOpusBatch::new(vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de")]);
    let mut wire = opus.encode();
    wire.push(0);
    assert!(matches!(
        AudioOpusBatch::decode(&wire),
        Err(CodecError::FieldMismatch { field: "sum of frame sizes", declared: 5, actual: 6, .. })
    ));
    let mut wire = opus.encode();
    wire[8..12].copy_from_slice(&0u32.to_be_bytes());
    assert!(matches!(
        AudioOpusBatch::decode(&wire),
        Err(CodecError::OutOfRange { field: "frame_count", .. })
    ));
    let mut wire = opus.encode();
    wire[4..8].copy_from_slice(&100u32.to_be_bytes());
    assert!(matches!(
        AudioOpusBatch::decode(&wire),
        Err(CodecError::OutOfRange { field: "samples per frame", value: 4800, .. })
    ));
}

#[test]
fn session_payload_checks() {
    use PacketType as T;
    assert!(matches!(
        decode(T::STREAM_START, vec![0, 0, 0, 4]),
        Err(CodecError::UnknownBits { value: 4, allowed: 3, .. })
    ));
    assert!(matches!(decode(T::STREAM_STOP, vec![0, 0, 1]), Err(CodecError::WrongSize { .. })));
    let mut join = ClientJoin::new("bob", ClientJoin::VIDEO).encode();
    join[4] = 0;
    assert_eq!(
        decode(T::CLIENT_JOIN, join),
        Err(CodecError::Empty { packet_type: T::CLIENT_JOIN, field: "display_name" })
    );
    let join = ClientJoin::new("bob", 0x10).encode();
    assert!(matches!(decode(T::CLIENT_JOIN, join), Err(CodecError::UnknownBits { value: 0x10, .. })));
    assert!(matches!(
        decode(T::CLIENT_LEAVE, vec![b'x'; 257]),
        Err(CodecError::WrongSize { actual: 257, .. })
    ));
    assert!(matches!(decode(T::CLIENT_LEAVE, vec![0xFF]), Err(CodecError::NotUtf8 { valid_up_to: 0, .. })));
    let mut err = ErrorMessage::new(44, "hi").encode();
    err[7] = 3;
    assert!(matches!(
        decode(T::ERROR_MESSAGE, err),
        Err(CodecError::FieldMismatch { field: "message_length", declared: 3, actual: 2, .. })
    ));
    let mut log = RemoteLog::new(4, 1, "hi").encode();
    log[4..8].copy_from_slice(&513u32.to_be_bytes());
    assert!(matches!(
        decode(T::REMOTE_LOG, log),
        Err(CodecError::OutOfRange { field: "message_length", value: 513, .. })
    ));
    let long = RemoteLog::new(4, 1, &"é".repeat(300));
    assert_eq!((long.message.len(), long.flags), (512, RemoteLog::TRUNCATED));
    assert_eq!(ErrorMessage::new(44, &"x".repeat(600)).message.len(), 512);
    assert!(matches!(decode(T::SERVER_STATE, vec![0; 31]), Err(CodecError::WrongSize { .. })));
    assert!(matches!(
        decode(T::PING, vec![0]),
        Err(CodecError::WrongSize { expected: SizeRule::Exactly(0), .. })
    ));
    assert!(matches!(decode(T::PROTOCOL_VERSION, vec![0; 17]), Err(CodecError::WrongSize { .. })));
    assert_eq!(decode(T::Unknown(9), vec![1]), Ok(Payload::Unknown(Packet::new(T::Unknown(9), vec![1]))));
    assert_eq!(decode(T::ENCRYPTED, vec![1]), Ok(Payload::Raw(Packet::new(T::ENCRYPTED, vec![1]))));
}

#[test]
fn nul_padding() {
    assert_eq!(nul_padded::<4>("abcdef"), *b"abc\0");
    assert_eq!(nul_padded::<4>("aé"), *b"a\xC3\xA9\0");
    assert_eq!(nul_padded::<3>("aé"), *b"a\0\0");
    assert_eq!(until_nul(b"ab\0cd"), "ab");
}

// ---- golden encodings and error texts (insta, `snapshots/`) ----

fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String =
            line.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
        out += &format!("{:06x}  {:<47}  |{ascii}|\n", i * 16, hex.join(" "));
    }
    out
}

#[test]
fn golden_encodings() {
    for (name, payload) in examples() {
        let packet = payload.to_packet();
        let dump = format!(
            "{} ({} + {} bytes)\n{}",
            packet.packet_type,
            HEADER_LEN,
            packet.payload.len(),
            hexdump(&packet.encode())
        );
        insta::assert_snapshot!(format!("golden_{name}"), dump);
    }
}

/// One example of every [`CodecError`] variant; [`variant_index`] fails to compile when a variant is added
/// and the assertion below fails when it is missing here.
fn every_error() -> Vec<CodecError> {
    use PacketType as T;
    vec![
        CodecError::BadMagic { found: 0x4745_5420_2F20_4854 },
        CodecError::CrcMismatch { packet_type: T::IMAGE_FRAME, expected: 0xE306_9283, actual: 0xBA0C_C8C4 },
        CodecError::PacketTooLarge { packet_type: T::IMAGE_FRAME, length: 5_242_881, limit: 5_242_880 },
        CodecError::LengthSentinel { packet_type: T::PING },
        CodecError::NonZeroCrcForEmpty { packet_type: T::PING, crc: 1 },
        CodecError::Truncated { needed: 22, have: 10 },
        CodecError::WrongSize {
            packet_type: T::CLIENT_CAPABILITIES,
            expected: SizeRule::Exactly(168),
            actual: 160,
        },
        CodecError::UnknownType(7),
        CodecError::OutOfRange {
            packet_type: T::CLIENT_CAPABILITIES,
            field: "desired_fps",
            value: 0,
            min: 1,
            max: 144,
        },
        CodecError::Invalid {
            packet_type: T::CRYPTO_KEY_EXCHANGE_INIT,
            field: "length",
            reason: "33 bytes".into(),
        },
        CodecError::Decompress { packet_type: T::ASCII_FRAME, reason: "Unknown frame descriptor".into() },
        CodecError::TypeMismatch { packet_type: T::PING, wanted: T::PONG },
        CodecError::ChecksumMismatch { packet_type: T::ASCII_FRAME, expected: 1, actual: 2 },
        CodecError::FieldMismatch {
            packet_type: T::ERROR_MESSAGE,
            field: "message_length",
            declared: 3,
            actual: 2,
        },
        CodecError::UnknownBits { packet_type: T::STREAM_START, field: "streams", value: 4, allowed: 3 },
        CodecError::Unsupported { packet_type: T::AUDIO_BATCH, field: "sample_rate", value: 44_000 },
        CodecError::Empty { packet_type: T::CLIENT_JOIN, field: "display_name" },
        CodecError::NotUtf8 { packet_type: T::CLIENT_LEAVE, field: "reason", valid_up_to: 3 },
        CodecError::NotAllowedInHandshake { packet_type: T::CRYPTO_CLIENT_HELLO },
    ]
}

fn variant_index(e: &CodecError) -> usize {
    match e {
        CodecError::BadMagic { .. } => 0,
        CodecError::CrcMismatch { .. } => 1,
        CodecError::PacketTooLarge { .. } => 2,
        CodecError::LengthSentinel { .. } => 3,
        CodecError::NonZeroCrcForEmpty { .. } => 4,
        CodecError::Truncated { .. } => 5,
        CodecError::WrongSize { .. } => 6,
        CodecError::UnknownType(_) => 7,
        CodecError::OutOfRange { .. } => 8,
        CodecError::Invalid { .. } => 9,
        CodecError::Decompress { .. } => 10,
        CodecError::TypeMismatch { .. } => 11,
        CodecError::ChecksumMismatch { .. } => 12,
        CodecError::FieldMismatch { .. } => 13,
        CodecError::UnknownBits { .. } => 14,
        CodecError::Unsupported { .. } => 15,
        CodecError::Empty { .. } => 16,
        CodecError::NotUtf8 { .. } => 17,
        CodecError::NotAllowedInHandshake { .. } => 18,
    }
}

#[test]
fn error_messages() {
    let errors = every_error();
    let indices: Vec<usize> = errors.iter().map(variant_index).collect();
    assert_eq!(indices, (0..errors.len()).collect::<Vec<_>>(), "one example per variant, in order");
    let text: Vec<String> = errors.iter().map(|e| format!("{e:?}\n  {e}")).collect();
    insta::assert_snapshot!(text.join("\n"));
}

// ---- proptest round trips ----

fn arr<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    prop::collection::vec(any::<u8>(), N).prop_map(|v| v.try_into().unwrap())
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn header() -> impl Strategy<Value = Header> {
    (any::<u16>(), 0..=Limits::default().max_packet, any::<u32>(), any::<u32>()).prop_map(
        |(t, length, crc32, client_id)| Header {
            packet_type: PacketType::from_u16(t),
            length,
            crc32,
            client_id,
        },
    )
}

fn protocol_version() -> impl Strategy<Value = ProtocolVersion> {
    (any::<(u16, u16, u8, u8, u8, u16)>(), arr()).prop_map(|((v, r, e, a, t, f), reserved)| ProtocolVersion {
        protocol_version: v,
        protocol_revision: r,
        supports_encryption: e,
        compression_algorithms: a,
        compression_threshold: t,
        feature_flags: f,
        reserved,
    })
}

fn crypto_capabilities() -> impl Strategy<Value = CryptoCapabilities> {
    any::<(u16, u16, u16, u8, u8, u8, u8)>().prop_map(|(k, a, c, v, pk, pa, pc)| CryptoCapabilities {
        supported_kex: k,
        supported_auth: a,
        supported_cipher: c,
        requires_verification: v,
        preferred_kex: pk,
        preferred_auth: pa,
        preferred_cipher: pc,
    })
}

fn crypto_parameters() -> impl Strategy<Value = CryptoParameters> {
    (any::<([u8; 4], u16, u16, u16, u16, [u8; 3])>(), arr()).prop_map(|((s, k, a, g, x, n), reserved)| {
        CryptoParameters {
            selected_kex: s[0],
            selected_auth: s[1],
            selected_cipher: s[2],
            verification_enabled: s[3],
            kex_public_key_size: k,
            auth_public_key_size: a,
            signature_size: g,
            shared_secret_size: x,
            nonce_size: n[0],
            mac_size: n[1],
            hmac_size: n[2],
            reserved,
        }
    })
}

fn client_capabilities() -> impl Strategy<Value = ClientCapabilities> {
    (
        prop_oneof![Just(Dialect::Feb), Just(Dialect::Head)],
        any::<(u32, u32, u32, u32, u16, u16)>(),
        (arr(), arr(), arr()),
        any::<(u8, u32, u32, u8, u8, u8, u32, u32)>(),
    )
        .prop_map(|(dialect, a, (term_type, colorterm, palette_custom), b)| {
            let head = dialect == Dialect::Head;
            ClientCapabilities {
                dialect,
                capabilities: a.0,
                color_level: a.1,
                color_count: a.2,
                render_mode: a.3,
                width: a.4,
                height: a.5,
                term_type,
                colorterm,
                detection_reliable: b.0,
                utf8_support: b.1,
                palette_type: b.2,
                palette_custom,
                desired_fps: b.3,
                color_filter: b.4,
                wants_padding: b.5,
                // Not on the FEB wire, so only HEAD can carry them.
                codec_capabilities_video: if head { b.6 } else { 0 },
                codec_capabilities_audio: if head { b.7 } else { 0 },
            }
        })
}

fn image_frame() -> impl Strategy<Value = ImageFrame> {
    (1u32..=64, 1u32..=64, 1u32..=4, any::<(u32, u32, u32)>())
        .prop_flat_map(|(w, h, f, rest)| (Just((w, h, f, rest)), bytes((w * h * 3) as usize)))
        .prop_map(|((width, height, pixel_format, (c, k, t)), pixels)| ImageFrame {
            width,
            height,
            pixel_format,
            compressed_size: c,
            checksum: k,
            timestamp: t,
            pixels,
        })
}

fn image_frame_h265() -> impl Strategy<Value = ImageFrameH265> {
    (any::<u8>(), 1u16..=8192, 1u16..=8192, bytes(300))
        .prop_map(|(flags, width, height, data)| ImageFrameH265 { flags, width, height, data })
}

fn ascii_frame() -> impl Strategy<Value = AsciiFrame> {
    (1u32..=16384, 1u32..=16384, any::<u32>(), bytes(400), prop::option::of(1i32..=9)).prop_map(
        |(width, height, flags, text, level)| {
            let frame = AsciiFrame { width, height, flags, text, compressed: None };
            match level {
                Some(level) => frame.with_zstd(level),
                None => frame,
            }
        },
    )
}

fn audio_batch() -> impl Strategy<Value = AudioBatch> {
    (
        any::<u32>(),
        prop::sample::select(AudioBatch::SAMPLE_RATES.to_vec()),
        1u32..=8,
        prop::collection::vec(any::<i32>(), 0..64),
    )
        .prop_map(|(batch_count, sample_rate, channels, samples)| AudioBatch {
            batch_count,
            sample_rate,
            channels,
            samples,
        })
}

fn audio_opus_batch() -> impl Strategy<Value = AudioOpusBatch> {
    (1u32..=200_000, 1u32..=100, any::<u32>(), prop::collection::vec(bytes(80), 1..12))
        .prop_filter("1..=4096 samples per frame", |(rate, ms, _, _)| {
            (1..=4096).contains(&(u64::from(*rate) * u64::from(*ms) / 1000))
        })
        .prop_map(|(sample_rate, frame_duration_ms, reserved, frames)| AudioOpusBatch {
            sample_rate,
            frame_duration_ms,
            reserved,
            frames,
        })
}

fn client_join() -> impl Strategy<Value = ClientJoin> {
    (any::<u32>(), 1u8..=255, arr::<31>(), 0u32..=0x0F).prop_map(|(client_id, first, rest, capabilities)| {
        let mut display_name = [first; 32];
        display_name[1..].copy_from_slice(&rest);
        ClientJoin { client_id, display_name, capabilities }
    })
}

fn key_exchange() -> impl Strategy<Value = Payload> {
    let signed = || (arr(), arr()).prop_map(|(identity, signature)| SignedIdentity { identity, signature });
    prop_oneof![
        (arr(), prop::option::of(signed())).prop_map(|(ephemeral, signed)| KeyExchangeInit {
            ephemeral,
            signed
        }
        .into()),
        (arr(), prop::option::of((signed(), prop::collection::vec(any::<u8>(), 0..=40)))).prop_map(
            |(ephemeral, ext)| KeyExchangeResp {
                ephemeral,
                extension: ext.map(|(signed, gpg_key_id)| RespExtension { signed, gpg_key_id }),
            }
            .into()
        ),
        arr().prop_map(|hmac| ServerAuthResp { hmac }.into()),
    ]
}

/// Every payload type, valid by construction.
fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        protocol_version().prop_map(Payload::from),
        crypto_capabilities().prop_map(Payload::from),
        crypto_parameters().prop_map(Payload::from),
        (any::<u8>(), arr()).prop_map(|(flags, nonce)| AuthChallenge { flags, nonce }.into()),
        (any::<u8>(), arr()).prop_map(|(reason, reserved)| AuthFailed { reason, reserved }.into()),
        key_exchange(),
        (any::<u32>(), "\\PC{0,120}").prop_map(|(c, m): (u32, String)| ErrorMessage::new(c, &m).into()),
        (any::<(u8, u8, u16)>(), "\\PC{0,120}").prop_map(|((l, d, f), m): ((u8, u8, u16), String)| {
            RemoteLog { log_level: l, direction: d, flags: f, message: ErrorMessage::new(0, &m).message }
                .into()
        }),
        ascii_frame().prop_map(Payload::from),
        image_frame().prop_map(Payload::from),
        image_frame_h265().prop_map(Payload::from),
        audio_batch().prop_map(Payload::from),
        audio_opus_batch().prop_map(Payload::from),
        client_capabilities().prop_map(Payload::from),
        client_join().prop_map(Payload::from),
        "\\PC{0,60}".prop_map(|reason: String| ClientLeave { reason }.into()),
        (0u32..=3).prop_map(|s| StreamStart::new(s).into()),
        (0u32..=3).prop_map(|s| StreamStop::new(s).into()),
        (any::<(u32, u32)>(), any::<[u32; 6]>()).prop_map(|((c, a), reserved)| ServerState {
            connected_client_count: c,
            active_client_count: a,
            reserved
        }
        .into()),
        prop::sample::select(vec![
            Payload::HandshakeComplete,
            Payload::NoEncryption,
            Payload::Ping,
            Payload::Pong,
            Payload::ClearConsole
        ]),
        (prop::sample::select(vec![1000u16, 1105, 1200, 1201, 1202, 1203, 2000, 2001, 2002]), bytes(100))
            .prop_map(|(t, p)| Payload::Raw(Packet::new(PacketType::from_u16(t), p))),
        (6000u16..=6199, bytes(100))
            .prop_map(|(t, p)| Payload::Unknown(Packet::new(PacketType::from_u16(t), p))),
    ]
}

fn dialect_of(p: &Payload) -> Dialect {
    match p {
        Payload::ClientCapabilities(c) => c.dialect,
        _ => Dialect::Feb,
    }
}

proptest! {
    #[test]
    fn header_round_trip(h in header()) {
        prop_assert_eq!(Header::decode(&h.to_bytes(), &Limits::default()), Ok(h));
    }

    /// decode(encode(x)) == x for every payload type, through the whole wire: typed struct, packet bytes,
    /// `Packet::decode`, `Payload::decode`; and the bytes survive a second encoding unchanged.
    #[test]
    fn payload_round_trip(p in payload()) {
        let dialect = dialect_of(&p);
        let wire = p.to_packet().encode();
        let (packet, used) = Packet::decode(&Bytes::from(wire.clone()), &Limits::default()).unwrap();
        prop_assert_eq!(used, wire.len());
        let decoded = Payload::decode(&packet, dialect).unwrap();
        prop_assert_eq!(&decoded, &p);
        prop_assert_eq!(decoded.to_packet().encode(), wire);
    }

    #[test]
    fn struct_round_trips(
        v in protocol_version(), cc in crypto_capabilities(), cp in crypto_parameters(), caps in client_capabilities(),
        img in image_frame(), h265 in image_frame_h265(), ascii in ascii_frame(), audio in audio_batch(),
        opus in audio_opus_batch(), join in client_join(),
    ) {
        prop_assert_eq!(ProtocolVersion::decode(&v.encode()), Ok(v));
        prop_assert_eq!(CryptoCapabilities::decode(&cc.encode()), Ok(cc));
        prop_assert_eq!(CryptoParameters::decode(&cp.encode()), Ok(cp));
        prop_assert_eq!(ClientCapabilities::decode(&caps.encode(), caps.dialect), Ok(caps));
        prop_assert_eq!(ImageFrame::decode(&img.encode()), Ok(img));
        prop_assert_eq!(ImageFrameH265::decode(&h265.encode()), Ok(h265));
        prop_assert_eq!(AsciiFrame::decode(&ascii.encode()), Ok(ascii));
        prop_assert_eq!(AudioBatch::decode(&audio.encode()), Ok(audio));
        prop_assert_eq!(AudioOpusBatch::decode(&opus.encode()), Ok(opus));
        prop_assert_eq!(ClientJoin::decode(&join.encode()), Ok(join));
    }

    /// Any payload bytes under any type: a typed error or a payload that re-encodes to the same bytes.
    #[test]
    fn arbitrary_payloads_decode_losslessly_or_fail(t in prop::sample::select(PacketType::ALL.to_vec()), body in bytes(300)) {
        let packet = Packet::new(t, body);
        for dialect in [Dialect::Feb, Dialect::Head] {
            if let Ok(p) = Payload::decode(&packet, dialect) {
                prop_assert_eq!(p.to_packet(), packet.clone());
            }
        }
    }
}

// ---- real captures ----

/// Every CRC-valid packet that lies whole in one pcap record of the committed captures (found by scanning
/// for the magic; packets split across TCP segments fail the length or CRC check and are skipped, they are
/// the pcap reader's business in `harness`) decodes to a typed payload in FEB or HEAD, or is a type kept raw
/// on purpose. The per-type counts are snapshotted, so a decoder that starts rejecting real traffic shows.
#[test]
fn captured_packets_decode() {
    use std::collections::BTreeMap;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/captures");
    let mut report = String::new();
    for name in ["tcp_plaintext.pcap", "ws_plaintext.pcap", "tcp_encrypted.pcap", "reconnect10_tcp.pcap"] {
        let data = Bytes::from(std::fs::read(format!("{dir}/{name}")).unwrap());
        let magic = MAGIC.to_be_bytes();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut at = 0;
        // Look for the magic's last byte first: a plain byte search stays fast in debug builds.
        while let Some(i) = data.get(at + 7..).and_then(|rest| rest.iter().position(|&b| b == 0xA1)) {
            let start = at + i;
            at = start + 1;
            if data[start..start + 8] != magic {
                continue;
            }
            let Ok((packet, used)) = Packet::decode(&data.slice(start..), &Limits::default()) else {
                continue;
            };
            at = start + used;
            let typed =
                [Dialect::Feb, Dialect::Head].into_iter().find_map(|d| Payload::decode(&packet, d).ok());
            let kind = match typed {
                Some(Payload::Raw(_) | Payload::Unknown(_)) => "raw",
                Some(_) => "typed",
                None => panic!(
                    "{name}: {} failed to decode: {:?}",
                    packet.packet_type,
                    Payload::decode(&packet, Dialect::Feb)
                ),
            };
            *counts.entry(format!("{} {kind}", packet.packet_type)).or_default() += 1;
        }
        assert!(!counts.is_empty(), "{name}: no whole packets found");
        report += &format!("{name}\n");
        for (k, n) in counts {
            report += &format!("  {k}: {n}\n");
        }
    }
    insta::assert_snapshot!(report);
}
