//! RFC 6455 section 5.2 frame encoding and incremental decoding. The decoder checks everything that can be
//! checked from the header (reserved bits, opcode, control-frame rules, size limit, masking) as soon as those
//! header bytes are there, so a bad frame is refused before its payload is buffered.

use std::time::Instant;

use bytes::{Buf, BytesMut};

use super::{
    Frame, FrameError, OpCode, Reassembler, ReassemblerConfig, ReassemblyEvent, MAX_CONTROL_PAYLOAD,
};

/// Appends one frame to `out`: the header (minimal length encoding, RFC 6455 5.2) and the payload, masked
/// with `mask` if given. Client-to-server frames must be masked (5.3); server-to-client frames must not.
pub fn encode_frame(opcode: OpCode, fin: bool, mask: Option<[u8; 4]>, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(14 + payload.len());
    encode_frame_header(opcode, fin, mask, payload.len(), out);
    if let Some(key) = mask {
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], key);
    } else {
        out.extend_from_slice(payload);
    }
}

/// Appends only the header of a frame with a `len`-byte payload (2 to 14 bytes): for a sender that
/// masks the payload where it lies ([`apply_mask`]) and writes header and payload one after the other,
/// with no copy. Header + masked payload are byte for byte what [`encode_frame`] writes.
pub fn encode_frame_header(opcode: OpCode, fin: bool, mask: Option<[u8; 4]>, len: usize, out: &mut Vec<u8>) {
    let len = len as u64;
    out.push(if fin { 0x80 } else { 0 } | opcode.to_u8());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// XORs `data` with the 4-byte key (masking and unmasking are the same operation, RFC 6455 5.3), in
/// place. Eight bytes at a time: the loop vectorises, which matters for 921 KB messages.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let key8 = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ key8).to_ne_bytes());
    }
    // Chunks start at multiples of 8, so the remainder starts at key phase 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// What a [`FrameDecoder`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoderConfig {
    /// Largest frame payload accepted ([`crate::Limits::max_ws_frame`]).
    pub max_frame: usize,
    /// `Some(true)`: every frame must be masked (a server reading a client); `Some(false)`: no frame may be
    /// masked (a client reading a server); `None`: either (a dissector).
    pub require_mask: Option<bool>,
    /// Refuse a length not in its shortest encoding. RFC 6455 requires the minimal form, but real peers are
    /// not known to break it and a dissector wants to see the frame, so the default is lenient.
    pub strict_length: bool,
    /// A dissector's view: RSV bits, reserved opcodes, fragmented or over-long control frames and
    /// non-minimal lengths (when not `strict_length`) are not errors, since the frame boundary holds; they
    /// are reported in [`FrameFacts`] by [`FrameDecoder::poll_observed`].
    pub observe: bool,
}

impl FrameDecoderConfig {
    /// Lenient defaults with the given frame limit.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoderConfig { max_frame, require_mask: None, strict_length: false, observe: false }
    }
}

/// What a frame's header said beyond [`Frame`], for a dissector ([`FrameDecoderConfig::observe`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameFacts {
    /// RSV1-3 (bit 2 = RSV1): set only by a negotiated extension (permessage-deflate: RSV1).
    pub rsv: u8,
    /// The payload length was not in its shortest encoding (RFC 6455 5.2).
    pub non_minimal_length: bool,
    /// The header length: 2, 4 or 10 bytes, plus 4 for a mask.
    pub header_len: usize,
}

impl Default for FrameDecoderConfig {
    fn default() -> Self {
        FrameDecoderConfig::new(crate::Limits::default().max_ws_frame)
    }
}

/// A sans-IO frame decoder. Feed bytes with [`FrameDecoder::handle_bytes`], drain
/// [`FrameDecoder::poll_frame`] until it returns `None`. After an error every later poll returns the same
/// error: a byte stream with a broken frame has no boundary to resume at.
///
/// Memory: the buffer holds what the caller fed and has not been polled; for a frame being received it
/// grows to at most one header plus `max_frame` (checked before the payload is awaited).
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    config: FrameDecoderConfig,
    failed: Option<FrameError>,
    consumed: u64,
}

impl FrameDecoder {
    /// A lenient decoder (either masking accepted) refusing frames over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder::with_config(FrameDecoderConfig::new(max_frame))
    }

    /// A decoder with explicit checks.
    pub fn with_config(config: FrameDecoderConfig) -> Self {
        FrameDecoder { buf: BytesMut::new(), config, failed: None, consumed: 0 }
    }

    /// Appends bytes received from the peer (ignored after an error).
    pub fn handle_bytes(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// How many bytes to read next so the buffer never regrows under a partial frame: the rest of the
    /// header (as far as it is known), then the rest of the frame. At least 1.
    pub fn read_hint(&self) -> usize {
        let have = self.buf.len();
        if have < 2 {
            return 2 - have;
        }
        let b1 = self.buf[1];
        let width = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + width + if b1 & 0x80 != 0 { 4 } else { 0 };
        let Some(ext) = self.buf.get(2..2 + width) else { return header_len - have };
        let len = match width {
            0 => u64::from(b1 & 0x7F),
            _ => ext.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)),
        };
        // An oversized frame is refused at the next poll; until then ask for a header's worth.
        let len = if len > self.config.max_frame as u64 { 0 } else { len as usize };
        (header_len + len).saturating_sub(have).max(1)
    }

    /// The receive buffer with room for `room` more bytes, to read into directly: whatever is appended
    /// counts as received, as with [`FrameDecoder::handle_bytes`]. Reading [`FrameDecoder::read_hint`]
    /// bytes at a time keeps it within one frame.
    pub fn recv_buf(&mut self, room: usize) -> &mut BytesMut {
        if self.failed.is_some() {
            self.buf.clear();
        }
        self.buf.reserve(room);
        &mut self.buf
    }

    /// The next whole frame, an error, or `None` when more bytes are needed.
    pub fn poll_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        self.poll_observed().map(|r| r.map(|(f, _)| f))
    }

    /// [`FrameDecoder::poll_frame`] with what the header said beyond the frame ([`FrameFacts`]).
    pub fn poll_observed(&mut self) -> Option<Result<(Frame, FrameFacts), FrameError>> {
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        match self.try_decode() {
            Ok(f) => f.map(Ok),
            Err(e) => {
                self.buf = BytesMut::new();
                self.failed = Some(e.clone());
                Some(Err(e))
            }
        }
    }

    /// Bytes held that do not yet form a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes consumed as whole frames so far (the stream offset of the next frame).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether the stream is between frames and has not failed.
    pub fn is_at_boundary(&self) -> bool {
        self.buf.is_empty() && self.failed.is_none()
    }

    fn try_decode(&mut self) -> Result<Option<(Frame, FrameFacts)>, FrameError> {
        let observe = self.config.observe;
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        let opcode = OpCode::from_u8(b0);
        let masked = b1 & 0x80 != 0;
        if rsv != 0 && !observe {
            return Err(FrameError::ReservedBits { opcode, bits: rsv });
        }
        if let OpCode::Reserved(v) = opcode {
            if !observe {
                return Err(FrameError::ReservedOpcode(v));
            }
        }
        if opcode.is_control() && !fin && !observe {
            return Err(FrameError::FragmentedControl { opcode });
        }
        match (self.config.require_mask, masked) {
            (Some(true), false) => return Err(FrameError::Unmasked { opcode }),
            (Some(false), true) => return Err(FrameError::UnexpectedMask { opcode }),
            _ => {}
        }
        let width: usize = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let Some(ext) = self.buf.get(2..2 + width) else {
            return Ok(None);
        };
        let len = match width {
            0 => u64::from(b1 & 0x7F),
            _ => ext.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)),
        };
        let minimal = match width {
            2 => len >= 126,
            8 => len > u64::from(u16::MAX),
            _ => true,
        };
        if !minimal && self.config.strict_length {
            return Err(FrameError::NonMinimalLength { opcode, len, width: width as u8 });
        }
        if opcode.is_control() && len > MAX_CONTROL_PAYLOAD as u64 && !observe {
            return Err(FrameError::ControlTooLong { opcode, len });
        }
        if len > self.config.max_frame as u64 {
            return Err(FrameError::FrameTooLarge { opcode, len, limit: self.config.max_frame });
        }
        let header_len = 2 + width + if masked { 4 } else { 0 };
        // `len <= max_frame: usize`, so this cannot overflow.
        let total = header_len + len as usize;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mask = if masked {
            let m = &self.buf[2 + width..header_len];
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        let mut whole = self.buf.split_to(total);
        whole.advance(header_len);
        if let Some(key) = mask {
            apply_mask(&mut whole, key);
        }
        self.consumed += total as u64;
        let facts = FrameFacts { rsv, non_minimal_length: !minimal, header_len };
        Ok(Some((Frame { opcode, fin, mask, payload: whole.freeze() }, facts)))
    }
}

/// A [`FrameDecoder`] and a [`Reassembler`] in one: bytes in, messages and control frames out (the `feb`
/// receive path). Drain [`MessageDecoder::poll_event`] until `None`; arm a timer for
/// [`MessageDecoder::poll_timeout`] and call [`MessageDecoder::handle_timeout`] when it fires.
#[derive(Debug)]
pub struct MessageDecoder {
    frames: FrameDecoder,
    reassembler: Reassembler,
}

impl MessageDecoder {
    /// A decoder with the given frame checks and reassembly limits.
    pub fn new(frames: FrameDecoderConfig, reassembly: ReassemblerConfig) -> Self {
        MessageDecoder {
            frames: FrameDecoder::with_config(frames),
            reassembler: Reassembler::new(reassembly),
        }
    }

    /// Appends bytes received from the peer.
    pub fn handle_bytes(&mut self, data: &[u8]) {
        self.frames.handle_bytes(data);
    }

    /// The next message or control frame, an error, or `None` when more bytes are needed. A frame error is
    /// sticky (see [`FrameDecoder`]): it is returned again on every poll, so stop polling (and close) after
    /// one. A reassembly error discards the message in progress only; polling may go on.
    pub fn poll_event(&mut self, now: Instant) -> Option<crate::Result<ReassemblyEvent>> {
        loop {
            let frame = match self.frames.poll_frame()? {
                Ok(f) => f,
                Err(e) => return Some(Err(e.into())),
            };
            match self.reassembler.handle_frame(frame, now) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e.into())),
            }
        }
    }

    /// When [`MessageDecoder::handle_timeout`] must be called, if a message is in progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reassembler.poll_timeout()
    }

    /// Expires the message in progress if its deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> crate::Result<()> {
        Ok(self.reassembler.handle_timeout(now)?)
    }

    /// The frame layer (offsets, buffered bytes).
    pub fn frames(&self) -> &FrameDecoder {
        &self.frames
    }

    /// The message layer (whether a message is in progress).
    pub fn reassembler(&self) -> &Reassembler {
        &self.reassembler
    }
}

/// Masking keys for a client's frames (RFC 6455 5.3): a seeded xorshift32 sequence, reproducible, which is
/// all a test client needs (the RFC's unpredictability matters against proxies, not here).
#[derive(Debug, Clone)]
pub struct MaskKeys(u32);

impl MaskKeys {
    pub fn new(seed: u32) -> Self {
        MaskKeys(seed | 1)
    }

    /// The next key.
    pub fn next_key(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x.to_be_bytes()
    }
}
