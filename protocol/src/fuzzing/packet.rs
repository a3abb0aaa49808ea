//! Fuzz logic for the `packet` target: one packet's bytes in. Whenever [`Packet::decode`] and
//! [`Payload::decode_with_limits`] accept them, encoding the result again must give the input bytes back
//! (ACIP-SPEC.md 1.1 and section 3; the typed decoders are lossless by design). Also runs the 1.4 (a) table
//! and the CLIENT_CAPABILITIES checks, which must never panic.
//!
//! [`examples`] is one fixed, valid example of every payload type: the seeds of this target and of
//! `stream`, and the golden encodings snapshotted in `codec::tests`.

use bytes::Bytes;

use crate::codec::payloads::*;
use crate::codec::{validate, Dialect, Header, Limits, Packet, PacketType};
use crate::crypto::messages::{
    KeyExchangeInit, KeyExchangeResp, RespExtension, ServerAuthResp, SignedIdentity,
};

/// Limits for fuzzing: the real ones, except that ASCII_FRAME text may inflate to 1 MiB only, so a zstd
/// bomb costs milliseconds.
pub fn limits() -> Limits {
    Limits { max_ascii_text: 1 << 20, ..Limits::default() }
}

pub fn run(data: &[u8]) {
    let limits = limits();
    let buf = Bytes::copy_from_slice(data);
    let Ok((packet, used)) = Packet::decode(&buf, &limits) else { return };
    let header = Header::decode(data, &limits).expect("Packet::decode accepted this header");
    assert_eq!(header.to_bytes()[..], data[..crate::codec::HEADER_LEN], "header re-encoding differs");
    if header.client_id == 0 {
        assert_eq!(packet.encode(), data[..used], "packet re-encoding differs");
    }
    let _ = validate::check_handshake_phase(&header);
    for dialect in [Dialect::Feb, Dialect::Head] {
        let Ok(payload) = Payload::decode_with_limits(&packet, dialect, &limits) else { continue };
        let again = payload.to_packet();
        assert_eq!(again, packet, "{dialect}: payload re-encoding differs for {payload:?}");
        assert_eq!(Payload::decode_with_limits(&again, dialect, &limits), Ok(payload.clone()));
        if let Payload::ClientCapabilities(caps) = &payload {
            let _ = caps.validate();
        }
    }
}

/// One fixed, valid example of every payload type, named.
pub fn examples() -> Vec<(&'static str, Payload)> {
    let text = Bytes::from_static(b"\x1b[31m@@\x1b[0m\n ,d\n");
    let signed = SignedIdentity { identity: [0x22; 32], signature: [0x33; 64] };
    vec![
        ("protocol_version", ProtocolVersion::new(ProtocolVersion::MODE_ENCRYPT).into()),
        ("crypto_capabilities", CryptoCapabilities::for_mode(ProtocolVersion::MODE_ENCRYPT).into()),
        ("crypto_parameters", CryptoParameters::new(false, true, false).into()),
        ("key_exchange_init", KeyExchangeInit { ephemeral: [0x11; 32], signed: Some(signed) }.into()),
        (
            "key_exchange_resp",
            KeyExchangeResp { ephemeral: [0x44; 32], extension: Some(RespExtension::anonymous()) }.into(),
        ),
        (
            "auth_challenge",
            AuthChallenge { flags: AuthChallenge::PASSWORD_REQUIRED, nonce: [0x55; 32] }.into(),
        ),
        ("auth_failed", AuthFailed::new(AuthFailed::PASSWORD_INCORRECT).into()),
        ("server_auth_resp", ServerAuthResp { hmac: [0x66; 32] }.into()),
        ("handshake_complete", Payload::HandshakeComplete),
        ("no_encryption", Payload::NoEncryption),
        (
            "error_message",
            ErrorMessage::new(ErrorMessage::NETWORK_PROTOCOL, "Protocol violation: width 0").into(),
        ),
        (
            "remote_log",
            RemoteLog::new(RemoteLog::LEVEL_ERROR, RemoteLog::TO_CLIENT, "Protocol violation: width 0")
                .into(),
        ),
        ("ascii_frame", AsciiFrame::new(3, 2, text.clone()).into()),
        ("ascii_frame_zstd", AsciiFrame::new(3, 2, text).with_zstd(3).into()),
        ("image_frame", ImageFrame::rgb24(2, 2, (0u8..12).collect::<Vec<u8>>()).into()),
        (
            "image_frame_h265",
            ImageFrameH265 {
                flags: 1,
                width: 64,
                height: 48,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x40, 0x01]),
            }
            .into(),
        ),
        ("audio_batch", AudioBatch::from_f32(1, 48_000, 1, &[0.0, 0.5, -0.5, 1.0]).into()),
        (
            "audio_opus_batch",
            AudioOpusBatch::new(vec![Bytes::from_static(&[0xF8, 0xFF, 0xFE]), Bytes::from_static(&[0xF8])])
                .into(),
        ),
        ("client_capabilities_feb", ClientCapabilities::new(Dialect::Feb, 80, 24, 60).into()),
        ("client_capabilities_head", ClientCapabilities::new(Dialect::Head, 80, 24, 60).into()),
        ("ping", Payload::Ping),
        ("pong", Payload::Pong),
        ("client_join", ClientJoin::new("alice", ClientJoin::VIDEO | ClientJoin::COLOR).into()),
        ("client_leave", ClientLeave { reason: "bye".into() }.into()),
        ("stream_start", StreamStart::new(StreamStart::VIDEO | StreamStart::AUDIO).into()),
        ("stream_stop", StreamStop::new(StreamStop::AUDIO).into()),
        ("clear_console", Payload::ClearConsole),
        ("server_state", ServerState::new(2, 1).into()),
        ("raw_encrypted", Payload::Raw(Packet::new(PacketType::ENCRYPTED, vec![0xAB; 40]))),
        ("unknown_acds", Payload::Unknown(Packet::new(PacketType::from_u16(6190), vec![1, 2, 3]))),
    ]
}

/// The seed files of this target: each example's packet bytes.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    examples().into_iter().map(|(name, p)| (format!("{name}.bin"), p.to_packet().encode())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{check_seed_dir, replay_seed_dir};

    const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/seeds/packet");

    #[test]
    fn seeds_are_current() {
        check_seed_dir(SEEDS, &seeds());
    }

    #[test]
    fn replay_seeds() {
        replay_seed_dir(SEEDS, examples().len(), run);
    }

    #[test]
    fn every_example_decodes_to_itself() {
        for (name, payload) in examples() {
            let dialect = if name.ends_with("_head") { Dialect::Head } else { Dialect::Feb };
            let packet = payload.to_packet();
            assert_eq!(Payload::decode(&packet, dialect), Ok(payload), "{name}");
        }
    }
}
