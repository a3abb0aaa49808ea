//! Length rules by packet type (ACIP-SPEC.md 1.4).
//!
//! [`check_handshake_phase`] is the table of 1.4 (a): the only receive path of the C code that checks
//! lengths by type (`packet_validate_header`, used while the server reads the TCP handshake). It rejects
//! every type it has no row for, including types that are valid later (CLIENT_HELLO, rekey, H.265,
//! Opus, CLEAR_CONSOLE, SERVER_STATE), which is how the real server drops a client that sends them early.
//! The other paths (1.4 (b), (c)) check no lengths by type; the typed decoders in `payloads` check the
//! section 3 layouts instead. [`check_size`] is the one place a [`SizeRule`] becomes an error.

use super::{CodecError, Header, PacketType, SizeRule};

/// The 1.4 (a) cap for the crypto handshake types and the ACDS types.
pub const HANDSHAKE_AUX_MAX: usize = 65_536;

/// The rule of the 1.4 (a) table for a type; `None` when the table has no row for it.
pub fn handshake_phase_rule(packet_type: PacketType) -> Option<SizeRule> {
    use PacketType as T;
    use SizeRule::*;
    Some(match packet_type {
        T::PROTOCOL_VERSION => Exactly(16),
        T::ASCII_FRAME | T::IMAGE_FRAME => AtLeast(24),
        T::AUDIO_BATCH => AtLeast(20),
        T::PING | T::PONG => Exactly(0),
        T::CLIENT_CAPABILITIES => AtMost(1024),
        T::CLIENT_JOIN => Exactly(40),
        T::CLIENT_LEAVE => AtMost(256),
        T::STREAM_START | T::STREAM_STOP => Exactly(4),
        T::SIZE_MESSAGE | T::AUDIO_MESSAGE => Between(1, 32),
        T::TEXT_MESSAGE => AtMost(1024),
        T::ERROR_MESSAGE => Between(8, 520),
        t if matches!(t.to_u16(), 1100..=1109 | 1200) => AtMost(HANDSHAKE_AUX_MAX),
        // The spec says "a subset of 6000-6199" without listing it; the whole range is accepted here,
        // which can only make this check more lenient than the C one for ACDS numbers.
        t if t.is_acds() => AtMost(HANDSHAKE_AUX_MAX),
        _ => return None,
    })
}

/// The handshake-phase receive path's per-type rule (1.4 (a)) for a header whose magic and 5 MiB limit
/// were already checked by [`Header::decode`]. Known types without a row give
/// [`CodecError::NotAllowedInHandshake`], unknown numbers [`CodecError::UnknownType`].
pub fn check_handshake_phase(header: &Header) -> Result<(), CodecError> {
    let packet_type = header.packet_type;
    let Some(rule) = handshake_phase_rule(packet_type) else {
        return Err(match packet_type {
            PacketType::Unknown(n) if !packet_type.is_acds() => CodecError::UnknownType(n),
            _ => CodecError::NotAllowedInHandshake { packet_type },
        });
    };
    check_size(packet_type, header.length as usize, rule)
}

/// Whether `len` satisfies `rule`.
pub fn size_allows(rule: SizeRule, len: usize) -> bool {
    match rule {
        SizeRule::Exactly(n) => len == n,
        SizeRule::AtLeast(n) => len >= n,
        SizeRule::AtMost(n) => len <= n,
        SizeRule::Between(a, b) => (a..=b).contains(&len),
    }
}

/// [`CodecError::WrongSize`] unless `len` satisfies `rule`.
pub fn check_size(packet_type: PacketType, len: usize, rule: SizeRule) -> Result<(), CodecError> {
    if size_allows(rule, len) {
        Ok(())
    } else {
        Err(CodecError::WrongSize { packet_type, expected: rule, actual: len })
    }
}

/// For a path that receives whole packets in whole messages (the `feb` WebSocket dialect, an encrypted
/// packet's plaintext): the header's length must account for exactly the bytes after the header.
pub fn check_exact_length(header: &Header, bytes_after_header: usize) -> Result<(), CodecError> {
    if header.length as usize != bytes_after_header {
        return Err(CodecError::FieldMismatch {
            packet_type: header.packet_type,
            field: "length",
            declared: u64::from(header.length),
            actual: bytes_after_header as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(packet_type: PacketType, length: u32) -> Header {
        Header { packet_type, length, crc32: 0, client_id: 0 }
    }

    #[test]
    fn handshake_table_rows() {
        use PacketType as T;
        let ok = [
            (T::PROTOCOL_VERSION, 16),
            (T::IMAGE_FRAME, 24),
            (T::ASCII_FRAME, 1000),
            (T::AUDIO_BATCH, 20),
            (T::PING, 0),
            (T::PONG, 0),
            (T::CLIENT_CAPABILITIES, 1024),
            (T::CLIENT_CAPABILITIES, 160),
            (T::CLIENT_JOIN, 40),
            (T::CLIENT_LEAVE, 0),
            (T::CLIENT_LEAVE, 256),
            (T::STREAM_START, 4),
            (T::STREAM_STOP, 4),
            (T::SIZE_MESSAGE, 1),
            (T::AUDIO_MESSAGE, 32),
            (T::TEXT_MESSAGE, 1024),
            (T::ERROR_MESSAGE, 8),
            (T::ERROR_MESSAGE, 520),
            (T::CRYPTO_CAPABILITIES, 10),
            (T::CRYPTO_NO_ENCRYPTION, 0),
            (T::ENCRYPTED, 65_536),
            (T::Unknown(6190), 12),
        ];
        for (t, len) in ok {
            assert_eq!(check_handshake_phase(&header(t, len)), Ok(()), "{t} {len}");
        }
        let bad = [
            (T::PROTOCOL_VERSION, 15),
            (T::IMAGE_FRAME, 23),
            (T::AUDIO_BATCH, 19),
            (T::PING, 1),
            (T::CLIENT_CAPABILITIES, 1025),
            (T::CLIENT_JOIN, 1),
            (T::CLIENT_LEAVE, 257),
            (T::STREAM_START, 5),
            (T::SIZE_MESSAGE, 0),
            (T::AUDIO_MESSAGE, 33),
            (T::TEXT_MESSAGE, 1025),
            (T::ERROR_MESSAGE, 7),
            (T::ERROR_MESSAGE, 521),
            (T::CRYPTO_KEY_EXCHANGE_RESP, 65_537),
        ];
        for (t, len) in bad {
            assert!(
                matches!(check_handshake_phase(&header(t, len)), Err(CodecError::WrongSize { actual, .. }) if actual == len as usize),
                "{t} {len}"
            );
        }
    }

    #[test]
    fn types_without_a_row_are_rejected() {
        use PacketType as T;
        for t in [
            T::CRYPTO_CLIENT_HELLO,
            T::CRYPTO_REKEY_REQUEST,
            T::CRYPTO_REKEY_RESPONSE,
            T::CRYPTO_REKEY_COMPLETE,
            T::IMAGE_FRAME_H265,
            T::AUDIO_OPUS_BATCH,
            T::CLEAR_CONSOLE,
            T::SERVER_STATE,
            T::REMOTE_LOG,
        ] {
            assert_eq!(
                check_handshake_phase(&header(t, 0)),
                Err(CodecError::NotAllowedInHandshake { packet_type: t })
            );
        }
        assert_eq!(check_handshake_phase(&header(T::Unknown(7), 0)), Err(CodecError::UnknownType(7)));
    }

    #[test]
    fn exact_length() {
        let h = header(PacketType::PING, 3);
        assert_eq!(check_exact_length(&h, 3), Ok(()));
        assert!(matches!(
            check_exact_length(&h, 2),
            Err(CodecError::FieldMismatch { declared: 3, actual: 2, .. })
        ));
    }
}
