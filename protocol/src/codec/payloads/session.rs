//! Session payloads: CLIENT_CAPABILITIES (ACIP-SPEC.md 3.4), CLIENT_JOIN (3.5), CLIENT_LEAVE and
//! STREAM_START/STOP (3.6), ERROR_MESSAGE (3.12), REMOTE_LOG (3.13), SERVER_STATE (3.14).

use bytes::{Buf, BufMut};

use super::{array, fixed, nul_padded, payload_boilerplate, utf8};
use crate::codec::validate::check_size;
use crate::codec::{CodecError, Dialect, Packet, PacketType, SizeRule};

/// CLIENT_CAPABILITIES (3.4): 160 bytes in [`Dialect::Feb`], 168 in [`Dialect::Head`] (two codec words
/// appended). The receiver checks the exact size, so each dialect rejects the other's packet.
///
/// Every field is kept as sent, including bytes after the NUL of the string fields (the real FEB client
/// leaves garbage there) and `utf8_support`, which that client writes in host order (`01 00 00 00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientCapabilities {
    /// Which layout: decides the encoded size.
    pub dialect: Dialect,
    /// TERM_CAP_* bits.
    pub capabilities: u32,
    /// 0..=3.
    pub color_level: u32,
    pub color_count: u32,
    /// 0 foreground, 1 background, 2 half-block.
    pub render_mode: u32,
    /// Terminal width in characters, 1..=4096.
    pub width: u16,
    /// Terminal height in characters, 1..=4096.
    pub height: u16,
    /// NUL-padded `$TERM`.
    pub term_type: [u8; 32],
    /// NUL-padded `$COLORTERM`.
    pub colorterm: [u8; 32],
    pub detection_reliable: u8,
    pub utf8_support: u32,
    /// 0..=5.
    pub palette_type: u32,
    pub palette_custom: [u8; 64],
    /// 1..=144.
    pub desired_fps: u8,
    pub color_filter: u8,
    pub wants_padding: u8,
    /// HEAD only: bit 0 RGBA, bit 1 H.265, bit 2 JPEG. Not on the wire in FEB, where it decodes as 0 and
    /// is not encoded.
    pub codec_capabilities_video: u32,
    /// HEAD only: bit 0 RAW, bit 1 OPUS.
    pub codec_capabilities_audio: u32,
}

impl ClientCapabilities {
    pub const FEB_LEN: usize = 160;
    pub const HEAD_LEN: usize = 168;
    pub const MAX_DIMENSION: u16 = 4096;
    pub const MAX_COLOR_LEVEL: u32 = 3;
    pub const MAX_RENDER_MODE: u32 = 2;
    pub const MAX_PALETTE_TYPE: u32 = 5;
    pub const MAX_FPS: u8 = 144;

    /// The size of this layout in a dialect.
    pub const fn len_for(dialect: Dialect) -> usize {
        match dialect {
            Dialect::Feb => Self::FEB_LEN,
            Dialect::Head => Self::HEAD_LEN,
        }
    }

    /// Capabilities like those of the real native client in snapshot mode (as captured in
    /// `tcp_plaintext.pcap`: TERM_CAP bits 0x18, monochrome, `xterm`, palette 1), for a `width` x `height`
    /// character terminal at `fps`. In HEAD the codec words are the real client's (0x7 video, 0x3 audio).
    pub fn new(dialect: Dialect, width: u16, height: u16, fps: u8) -> Self {
        let head = dialect == Dialect::Head;
        ClientCapabilities {
            dialect,
            capabilities: 0x18,
            color_level: 0,
            color_count: 0,
            render_mode: 0,
            width,
            height,
            term_type: nul_padded("xterm"),
            colorterm: [0; 32],
            detection_reliable: 1,
            // Host order, as the real client writes it (the receiver does not check this field).
            utf8_support: 0x0100_0000,
            palette_type: 1,
            palette_custom: [0; 64],
            desired_fps: fps,
            color_filter: 0,
            wants_padding: 0,
            codec_capabilities_video: if head { 0x7 } else { 0 },
            codec_capabilities_audio: if head { 0x3 } else { 0 },
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(Self::len_for(self.dialect));
        out.put_u32(self.capabilities);
        out.put_u32(self.color_level);
        out.put_u32(self.color_count);
        out.put_u32(self.render_mode);
        out.put_u16(self.width);
        out.put_u16(self.height);
        out.put_slice(&self.term_type);
        out.put_slice(&self.colorterm);
        out.put_u8(self.detection_reliable);
        out.put_u32(self.utf8_support);
        out.put_u32(self.palette_type);
        out.put_slice(&self.palette_custom);
        out.put_slice(&[self.desired_fps, self.color_filter, self.wants_padding]);
        if self.dialect == Dialect::Head {
            out.put_u32(self.codec_capabilities_video);
            out.put_u32(self.codec_capabilities_audio);
        }
    }

    /// Decodes the layout of `dialect`; any other size is [`CodecError::WrongSize`], as in the C server.
    pub fn decode(payload: &[u8], dialect: Dialect) -> Result<Self, CodecError> {
        let mut r = fixed(Self::PACKET_TYPE, payload, Self::len_for(dialect))?;
        let mut caps = ClientCapabilities {
            dialect,
            capabilities: r.get_u32(),
            color_level: r.get_u32(),
            color_count: r.get_u32(),
            render_mode: r.get_u32(),
            width: r.get_u16(),
            height: r.get_u16(),
            term_type: array(&mut r),
            colorterm: array(&mut r),
            detection_reliable: r.get_u8(),
            utf8_support: r.get_u32(),
            palette_type: r.get_u32(),
            palette_custom: array(&mut r),
            desired_fps: r.get_u8(),
            color_filter: r.get_u8(),
            wants_padding: r.get_u8(),
            codec_capabilities_video: 0,
            codec_capabilities_audio: 0,
        };
        if dialect == Dialect::Head {
            caps.codec_capabilities_video = r.get_u32();
            caps.codec_capabilities_audio = r.get_u32();
        }
        Ok(caps)
    }

    /// The real server's semantic checks (1.4 (c), `src/server/protocol.c`), in its order. Each rule
    /// fails with [`CodecError::OutOfRange`] naming its field.
    pub fn validate(&self) -> Result<(), CodecError> {
        let rules: [(&'static str, u64, u64, u64); 6] = [
            ("width", self.width.into(), 1, Self::MAX_DIMENSION.into()),
            ("height", self.height.into(), 1, Self::MAX_DIMENSION.into()),
            ("color_level", self.color_level.into(), 0, Self::MAX_COLOR_LEVEL.into()),
            ("render_mode", self.render_mode.into(), 0, Self::MAX_RENDER_MODE.into()),
            ("palette_type", self.palette_type.into(), 0, Self::MAX_PALETTE_TYPE.into()),
            ("desired_fps", self.desired_fps.into(), 1, Self::MAX_FPS.into()),
        ];
        for (field, value, min, max) in rules {
            if !(min..=max).contains(&value) {
                return Err(CodecError::OutOfRange {
                    packet_type: Self::PACKET_TYPE,
                    field,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}
payload_boilerplate!(ClientCapabilities, PacketType::CLIENT_CAPABILITIES);

/// CLIENT_JOIN (40 B, 3.5). Decoding applies the server's rules: a non-empty name, known capability bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientJoin {
    /// Written 0 by senders.
    pub client_id: u32,
    /// NUL-padded; must not be empty.
    pub display_name: [u8; 32],
    /// [`ClientJoin::VIDEO`] | [`ClientJoin::AUDIO`] | [`ClientJoin::COLOR`] | [`ClientJoin::STRETCH`].
    pub capabilities: u32,
}

impl ClientJoin {
    pub const LEN: usize = 40;
    pub const VIDEO: u32 = 0x01;
    pub const AUDIO: u32 = 0x02;
    pub const COLOR: u32 = 0x04;
    pub const STRETCH: u32 = 0x08;
    pub const KNOWN_BITS: u32 = 0x0F;

    pub fn new(display_name: &str, capabilities: u32) -> Self {
        ClientJoin { client_id: 0, display_name: nul_padded(display_name), capabilities }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u32(self.client_id);
        out.put_slice(&self.display_name);
        out.put_u32(self.capabilities);
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let mut r = fixed(Self::PACKET_TYPE, payload, Self::LEN)?;
        let join =
            ClientJoin { client_id: r.get_u32(), display_name: array(&mut r), capabilities: r.get_u32() };
        if join.display_name[0] == 0 {
            return Err(CodecError::Empty { packet_type: Self::PACKET_TYPE, field: "display_name" });
        }
        if join.capabilities & !Self::KNOWN_BITS != 0 {
            return Err(CodecError::UnknownBits {
                packet_type: Self::PACKET_TYPE,
                field: "capabilities",
                value: join.capabilities,
                allowed: Self::KNOWN_BITS,
            });
        }
        Ok(join)
    }
}
payload_boilerplate!(ClientJoin, PacketType::CLIENT_JOIN);

/// CLIENT_LEAVE (3.6): an optional UTF-8 reason of 0..=256 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ClientLeave {
    pub reason: String,
}

impl ClientLeave {
    pub const MAX_REASON: usize = 256;

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_slice(self.reason.as_bytes());
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        check_size(Self::PACKET_TYPE, payload.len(), SizeRule::AtMost(Self::MAX_REASON))?;
        Ok(ClientLeave { reason: utf8(Self::PACKET_TYPE, "reason", payload)? })
    }
}
payload_boilerplate!(ClientLeave, PacketType::CLIENT_LEAVE);

/// STREAM_START and STREAM_STOP (3.6): exactly 4 bytes, u32 BE stream bits; other bits are rejected.
macro_rules! stream_bits {
    ($(#[$m:meta])* $name:ident, $packet_type:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name {
            /// [`StreamStart::VIDEO`] | [`StreamStart::AUDIO`].
            pub streams: u32,
        }

        impl $name {
            pub const LEN: usize = 4;
            pub const VIDEO: u32 = 0x01;
            pub const AUDIO: u32 = 0x02;
            pub const KNOWN_BITS: u32 = 0x03;

            pub fn new(streams: u32) -> Self {
                $name { streams }
            }

            pub fn encode_into(&self, out: &mut Vec<u8>) {
                out.put_u32(self.streams);
            }

            pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
                let streams = fixed(Self::PACKET_TYPE, payload, Self::LEN)?.get_u32();
                if streams & !Self::KNOWN_BITS != 0 {
                    return Err(CodecError::UnknownBits {
                        packet_type: Self::PACKET_TYPE,
                        field: "streams",
                        value: streams,
                        allowed: Self::KNOWN_BITS,
                    });
                }
                Ok($name { streams })
            }
        }
        payload_boilerplate!($name, $packet_type);
    };
}
stream_bits!(
    /// STREAM_START: send with AUDIO before any AUDIO_OPUS_BATCH (the server makes its decoder then).
    StreamStart,
    PacketType::STREAM_START
);
stream_bits!(
    /// STREAM_STOP.
    StreamStop,
    PacketType::STREAM_STOP
);

/// Truncates `s` to at most `max` bytes at a char boundary; says whether it cut.
fn truncate(s: &str, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s.to_owned(), false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_owned(), true)
}

/// Decodes `[u32 message_length][message]` at the end of ERROR_MESSAGE and REMOTE_LOG.
fn decode_message(packet_type: PacketType, mut r: &[u8]) -> Result<String, CodecError> {
    let declared = r.get_u32();
    if declared as usize > MAX_MESSAGE {
        return Err(CodecError::OutOfRange {
            packet_type,
            field: "message_length",
            value: declared.into(),
            min: 0,
            max: MAX_MESSAGE as u64,
        });
    }
    if declared as usize != r.len() {
        return Err(CodecError::FieldMismatch {
            packet_type,
            field: "message_length",
            declared: declared.into(),
            actual: r.len() as u64,
        });
    }
    utf8(packet_type, "message", r)
}

/// The text cap of ERROR_MESSAGE and REMOTE_LOG.
pub const MAX_MESSAGE: usize = 512;

/// ERROR_MESSAGE (3.12): `[error_code u32][message_length u32][message]`, message at most 512 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorMessage {
    pub error_code: u32,
    pub message: String,
}

impl ErrorMessage {
    pub const HEADER_LEN: usize = 8;
    pub const MAX_MESSAGE: usize = MAX_MESSAGE;
    pub const NETWORK: u32 = 40;
    pub const NETWORK_BIND: u32 = 41;
    pub const NETWORK_PROTOCOL: u32 = 44;
    pub const CRYPTO: u32 = 60;
    pub const CRYPTO_AUTH: u32 = 62;
    pub const INVALID_PARAM: u32 = 86;

    /// An error message, truncated to 512 bytes as the C sender does.
    pub fn new(error_code: u32, message: &str) -> Self {
        ErrorMessage { error_code, message: truncate(message, MAX_MESSAGE).0 }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u32(self.error_code);
        out.put_u32(self.message.len() as u32);
        out.put_slice(self.message.as_bytes());
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let rule = SizeRule::Between(Self::HEADER_LEN, Self::HEADER_LEN + MAX_MESSAGE);
        check_size(Self::PACKET_TYPE, payload.len(), rule)?;
        let mut r = payload;
        let error_code = r.get_u32();
        Ok(ErrorMessage { error_code, message: decode_message(Self::PACKET_TYPE, r)? })
    }
}
payload_boilerplate!(ErrorMessage, PacketType::ERROR_MESSAGE);

/// REMOTE_LOG (3.13): `[log_level u8][direction u8][flags u16][message_length u32][message]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteLog {
    /// 0 DEV, 1 DEBUG, 2 INFO, 3 WARN, 4 ERROR, 5 FATAL.
    pub log_level: u8,
    /// 0 unknown, 1 server to client, 2 client to server.
    pub direction: u8,
    /// [`RemoteLog::TRUNCATED`].
    pub flags: u16,
    pub message: String,
}

impl RemoteLog {
    pub const HEADER_LEN: usize = 8;
    pub const LEVEL_ERROR: u8 = 4;
    pub const TO_CLIENT: u8 = 1;
    pub const TO_SERVER: u8 = 2;
    pub const TRUNCATED: u16 = 0x0001;

    /// A log line, truncated to 512 bytes with the TRUNCATED flag if it was longer.
    pub fn new(log_level: u8, direction: u8, message: &str) -> Self {
        let (message, cut) = truncate(message, MAX_MESSAGE);
        let flags = if cut { Self::TRUNCATED } else { 0 };
        RemoteLog { log_level, direction, flags, message }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(self.log_level);
        out.put_u8(self.direction);
        out.put_u16(self.flags);
        out.put_u32(self.message.len() as u32);
        out.put_slice(self.message.as_bytes());
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let rule = SizeRule::Between(Self::HEADER_LEN, Self::HEADER_LEN + MAX_MESSAGE);
        check_size(Self::PACKET_TYPE, payload.len(), rule)?;
        let mut r = payload;
        let (log_level, direction, flags) = (r.get_u8(), r.get_u8(), r.get_u16());
        Ok(RemoteLog { log_level, direction, flags, message: decode_message(Self::PACKET_TYPE, r)? })
    }
}
payload_boilerplate!(RemoteLog, PacketType::REMOTE_LOG);

/// SERVER_STATE (32 B, 3.14): client counts plus six reserved words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ServerState {
    pub connected_client_count: u32,
    pub active_client_count: u32,
    pub reserved: [u32; 6],
}

impl ServerState {
    pub const LEN: usize = 32;

    pub fn new(connected_client_count: u32, active_client_count: u32) -> Self {
        ServerState { connected_client_count, active_client_count, reserved: [0; 6] }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u32(self.connected_client_count);
        out.put_u32(self.active_client_count);
        for w in self.reserved {
            out.put_u32(w);
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Self, CodecError> {
        let mut r = fixed(Self::PACKET_TYPE, payload, Self::LEN)?;
        let (connected_client_count, active_client_count) = (r.get_u32(), r.get_u32());
        Ok(ServerState {
            connected_client_count,
            active_client_count,
            reserved: std::array::from_fn(|_| r.get_u32()),
        })
    }
}
payload_boilerplate!(ServerState, PacketType::SERVER_STATE);
