//! WebSocket message layer (RFC 6455 section 5; ACIP-SPEC.md 6.2 and 10 rows 6-7).
//!
//! ```text
//!   bytes ──► FrameDecoder ──► Frame ──► Reassembler(now) ──► ReassemblyEvent::{Message, Control}
//!   message ──► Fragmenter ──► (OpCode, fin, &[u8]) ──► encode_frame ──► bytes
//! ```
//!
//! Two dialects use WebSocket differently:
//! - `feb`: one binary message carries exactly one ACIP packet; the old senders fragmented by hand (native
//!   client 4096-byte frames, server 256 KiB frames) and the receiver reassembled with a timeout reset on
//!   every fragment (100 ms, raised to 2 s in 3a4707c3). [`Reassembler`] is that receiver, with a typed
//!   error for each way the old code broke, and [`ReassemblerConfig::check_packet_length`] for "one message =
//!   one packet".
//! - `head`: message boundaries mean nothing; the payloads of all data frames form one byte stream of
//!   back-to-back packets. Feed every data frame's payload to [`crate::stream::StreamDecoder`] (see
//!   [`feed_head_stream`]); no reassembler and no timeout are involved.
//!
//! Everything here is sans-IO: bytes and `now` come in as arguments.

mod close;
mod fragment;
mod frame;
mod order;
mod reassembly;

#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;

pub use close::{
    close_payload, code as close_code, is_valid_close_code, parse_close, read_close_lossy, CloseError,
    CloseFrame, NotUtf8, Utf8Validator,
};
pub use fragment::{fragment, Fragmenter, Fragments};
pub use frame::{
    apply_mask, encode_frame, encode_frame_header, FrameDecoder, FrameDecoderConfig, FrameFacts, MaskKeys,
    MessageDecoder,
};
pub use order::HeadFrameOrder;
pub use reassembly::{feb_message_rule, Message, Reassembler, ReassemblerConfig, ReassemblyEvent};

use crate::stream::StreamDecoder;

/// Fragment size of the old native client's hand-made frames (ACIP-SPEC.md 6.2, FEB).
pub const FRAGMENT_SIZE_NATIVE_CLIENT: usize = 4096;
/// Fragment size of the old server's hand-made frames (256 KiB, ACIP-SPEC.md 6.2, FEB).
pub const FRAGMENT_SIZE_SERVER: usize = 262_144;
/// MAX_REASSEMBLY_TIME after the fix in 3a4707c3 (reset on every fragment).
pub const REASSEMBLY_TIMEOUT_FIXED: Duration = Duration::from_secs(2);
/// MAX_REASSEMBLY_TIME before 3a4707c3: too short for a 921 KB browser frame arriving in ~30 ms batches.
pub const REASSEMBLY_TIMEOUT_OLD: Duration = Duration::from_millis(100);
/// Largest payload of a control frame (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (RFC 6455 5.2). Unknown values are kept as `Reserved` so a dissector can show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues the message started by a TEXT or BINARY frame.
    Continuation,
    /// 0x1
    Text,
    /// 0x2: the only data opcode ACIP uses.
    Binary,
    /// 0x8
    Close,
    /// 0x9
    Ping,
    /// 0xA
    Pong,
    /// 0x3-0x7 (data) and 0xB-0xF (control): no meaning without an extension.
    Reserved(u8),
}

impl OpCode {
    /// The opcode of the low 4 bits of `v`.
    pub const fn from_u8(v: u8) -> OpCode {
        match v & 0x0F {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => OpCode::Reserved(other),
        }
    }

    /// The 4-bit wire value.
    pub const fn to_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
            OpCode::Reserved(v) => v & 0x0F,
        }
    }

    /// Control frames (CLOSE, PING, PONG and reserved 0xB-0xF) have the high opcode bit set.
    pub const fn is_control(self) -> bool {
        self.to_u8() & 0x8 != 0
    }

    /// TEXT or BINARY: a frame that starts a message.
    pub const fn starts_message(self) -> bool {
        matches!(self, OpCode::Text | OpCode::Binary)
    }

    /// Whether this is one of the reserved opcodes.
    pub const fn is_reserved(self) -> bool {
        matches!(self, OpCode::Reserved(_))
    }
}

impl std::fmt::Display for OpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpCode::Continuation => f.write_str("CONTINUATION"),
            OpCode::Text => f.write_str("TEXT"),
            OpCode::Binary => f.write_str("BINARY"),
            OpCode::Close => f.write_str("CLOSE"),
            OpCode::Ping => f.write_str("PING"),
            OpCode::Pong => f.write_str("PONG"),
            OpCode::Reserved(v) => write!(f, "RESERVED(0x{v:X})"),
        }
    }
}

/// One decoded WebSocket frame (RFC 6455 5.2). The payload is already unmasked; `mask` records the key the
/// peer used (clients must mask, servers must not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub opcode: OpCode,
    /// FIN bit: the last frame of its message (always set on control frames).
    pub fin: bool,
    pub mask: Option<[u8; 4]>,
    /// Unmasked payload.
    pub payload: Bytes,
}

impl Frame {
    /// An unmasked frame.
    pub fn new(opcode: OpCode, fin: bool, payload: impl Into<Bytes>) -> Frame {
        Frame { opcode, fin, mask: None, payload: payload.into() }
    }

    /// A complete single-frame binary message.
    pub fn binary(payload: impl Into<Bytes>) -> Frame {
        Frame::new(OpCode::Binary, true, payload)
    }

    /// A CONTINUATION frame.
    pub fn continuation(fin: bool, payload: impl Into<Bytes>) -> Frame {
        Frame::new(OpCode::Continuation, fin, payload)
    }

    /// A PING control frame.
    pub fn ping(payload: impl Into<Bytes>) -> Frame {
        Frame::new(OpCode::Ping, true, payload)
    }

    /// Appends this frame's wire bytes (header and, if `mask` is set, masked payload) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_frame(self.opcode, self.fin, self.mask, &self.payload, out);
    }
}

/// Feeds a `head`-dialect frame to the packet stream decoder: every data frame's payload (BINARY, TEXT or
/// CONTINUATION, FIN or not) continues one byte stream, because HEAD's receivers append chunks and cut
/// packets by their length field (ACIP-SPEC.md 6.2, 194329e2). Returns `false` for a control frame, which
/// carries no stream bytes. Drain `stream.poll_packet()` afterwards. The payload is shared, not copied:
/// packets that lie whole in one frame are slices of it.
pub fn feed_head_stream(frame: &Frame, stream: &mut StreamDecoder) -> bool {
    if frame.opcode.is_control() {
        return false;
    }
    stream.handle_shared(frame.payload.clone());
    true
}

/// Errors in RFC 6455 frames (section 5.2 and 5.5). After one, the byte stream has no usable frame boundary.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// RSV1-3 set: they belong to extensions (permessage-deflate, which the FEB server offered, is not
    /// supported here).
    #[error("{opcode} frame has reserved bits RSV=0b{bits:03b} set, but no extension was negotiated")]
    ReservedBits { opcode: OpCode, bits: u8 },
    /// Opcode 0x3-0x7 or 0xB-0xF.
    #[error("frame with reserved opcode 0x{0:X}")]
    ReservedOpcode(u8),
    /// A control frame without FIN (RFC 6455 5.5).
    #[error("control frame ({opcode}) with FIN=0: control frames must not be fragmented")]
    FragmentedControl { opcode: OpCode },
    /// A control frame payload over 125 bytes (RFC 6455 5.5).
    #[error("control frame ({opcode}) with a {len}-byte payload: the limit is 125")]
    ControlTooLong { opcode: OpCode, len: u64 },
    /// A frame over [`FrameDecoderConfig::max_frame`], refused from its header.
    #[error("{opcode} frame payload of {len} bytes is over the limit of {limit} bytes")]
    FrameTooLarge { opcode: OpCode, len: u64, limit: usize },
    /// A length not in its shortest form (only with [`FrameDecoderConfig::strict_length`]).
    #[error("{opcode} frame encodes its {len}-byte length in {width} bytes: not the minimal encoding")]
    NonMinimalLength { opcode: OpCode, len: u64, width: u8 },
    /// A client frame without a mask (with `require_mask: Some(true)`, RFC 6455 5.1).
    #[error("{opcode} frame is not masked, but every client-to-server frame must be")]
    Unmasked { opcode: OpCode },
    /// A server frame with a mask (with `require_mask: Some(false)`, RFC 6455 5.1).
    #[error("{opcode} frame is masked, but server-to-client frames must not be")]
    UnexpectedMask { opcode: OpCode },
    /// An invalid CLOSE payload (RFC 6455 5.5.1, 7.4): fails the connection with 1002.
    #[error(transparent)]
    Close(#[from] CloseError),
    /// A TEXT message that is not UTF-8 (RFC 6455 8.1): fails the connection with 1007.
    #[error(transparent)]
    NotUtf8(#[from] NotUtf8),
}

/// Errors while reassembling a message from fragments (`feb` dialect, RFC 6455 5.4). Each one discards the
/// message in progress; the reassembler itself stays usable, and closing the connection is the caller's call
/// (`Error::close` maps these to 1002, or 1009 for size).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// A CONTINUATION frame with no message open (also what followed the 087fa71 short message).
    #[error("CONTINUATION frame (FIN={}) with no message in progress to continue", u8::from(*fin))]
    ContinuationWithoutStart { fin: bool },
    /// TEXT/BINARY while a message is open (what libwebsockets called "BINARY after previous frame that
    /// lacked FIN", ACIP-SPEC.md 8).
    #[error(
        "data frame ({opcode}) before the previous message's FIN \
         (message in progress: {fragments} fragments, {bytes} bytes)"
    )]
    DataFrameBeforeFin { opcode: OpCode, fragments: usize, bytes: usize },
    /// The message would exceed [`ReassemblerConfig::max_message`].
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    /// The message would exceed [`ReassemblerConfig::max_fragments`].
    #[error("message has {count} fragments, over the limit of {limit}")]
    TooManyFragments { count: usize, limit: usize },
    /// No data fragment within [`ReassemblerConfig::timeout`] of the previous one.
    #[error(
        "reassembly timeout: no fragment within {after:?} of the last one \
         ({fragments} fragments, {bytes} bytes received)"
    )]
    Timeout { after: Duration, fragments: usize, bytes: usize },
    /// `feb`: a message too short to hold the 22-byte header (or its length field).
    #[error("message of {message} bytes ends inside the 22-byte ACIP header")]
    HeaderIncomplete { message: usize },
    /// `feb`: the message ends before the packet its header announces (the 087fa71 4096-byte message).
    #[error(
        "message of {message} bytes is shorter than the {packet}-byte ACIP packet it starts \
         (one message must carry exactly one packet)"
    )]
    MessageShorterThanPacket { message: usize, packet: usize },
    /// `feb`: the message goes on past the packet its header announces.
    #[error(
        "message of {message} bytes is longer than the {packet}-byte ACIP packet it starts \
         (one message must carry exactly one packet)"
    )]
    MessageLongerThanPacket { message: usize, packet: usize },
    /// A hand-made [`Frame`] with a reserved opcode.
    #[error("frame with reserved opcode 0x{0:X} cannot be part of a message")]
    ReservedOpcode(u8),
}
