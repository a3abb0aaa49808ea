//! Incremental decoding of a byte stream of back-to-back packets (raw TCP, ACIP-SPEC.md 6.1; and the `head`
//! dialect's WebSocket byte stream, 6.2). Bytes come in arbitrary chunks; packets come out.
//!
//! Memory is bounded by one header plus `Limits::max_packet`: a bad magic is an error after at most 8 bytes
//! and an oversized length after 14, before any payload is buffered. Payloads are handed out as `Bytes`
//! slices of the receive buffer (no copy after the first).
//!
//! Three ways in, so that a packet's bytes are copied at most once on the way (issue 15):
//! - [`StreamDecoder::handle_bytes`] copies a slice in;
//! - [`StreamDecoder::recv_buf`] lends the receive buffer itself, for a socket read straight into it
//!   ([`StreamDecoder::read_hint`] says how much to read so that it never grows under a partial packet);
//! - [`StreamDecoder::handle_shared`] takes a buffer the caller already owns (a WebSocket frame payload):
//!   whole packets are sliced out of it without a copy, and only a partial packet at its end is copied.

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{CodecError, Header, Limits, Packet, HEADER_LEN};

/// A sans-IO stream decoder. Feed with [`StreamDecoder::handle_bytes`], drain with
/// [`StreamDecoder::poll_packet`] until it returns `None`. After an error the stream is unusable (there is no
/// way to find the next packet boundary) and every later poll returns the same error.
#[derive(Debug)]
pub struct StreamDecoder {
    buf: BytesMut,
    /// Bytes handed over by [`StreamDecoder::handle_shared`] while `buf` was empty: packets are sliced out
    /// of it. Invariant: `buf` is empty while `chunk` is not (its bytes come first).
    chunk: Bytes,
    limits: Limits,
    failed: Option<CodecError>,
    /// Total bytes consumed as whole packets, so a caller can say where an error happened.
    consumed: u64,
}

impl StreamDecoder {
    pub fn new(limits: Limits) -> Self {
        StreamDecoder { buf: BytesMut::new(), chunk: Bytes::new(), limits, failed: None, consumed: 0 }
    }

    /// Appends bytes received from the peer.
    pub fn handle_bytes(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.spill();
            self.buf.extend_from_slice(data);
        }
    }

    /// Appends bytes the caller already owns: no copy while they hold whole packets.
    pub fn handle_shared(&mut self, data: Bytes) {
        if self.failed.is_some() || data.is_empty() {
            return;
        }
        if self.buf.is_empty() && self.chunk.is_empty() {
            self.chunk = data;
        } else {
            self.spill();
            self.buf.extend_from_slice(&data);
        }
    }

    /// How many bytes to read next so the receive buffer never has to grow (and copy) under a partial
    /// packet: the rest of the header, then the rest of the packet. At least 1.
    pub fn read_hint(&self) -> usize {
        let held = self.buffered();
        let have = if self.chunk.is_empty() { &self.buf[..] } else { &self.chunk[..] };
        match Header::peek_length(have) {
            Some(len) if held >= HEADER_LEN && len <= self.limits.max_packet => {
                (HEADER_LEN + len as usize).saturating_sub(held).max(1)
            }
            _ => HEADER_LEN.saturating_sub(held).max(1),
        }
    }

    /// The receive buffer, with room for at least `room` more bytes, to read into directly (e.g. tokio's
    /// `read_buf`): whatever is appended counts as received, as with [`StreamDecoder::handle_bytes`].
    /// Reading [`StreamDecoder::read_hint`] bytes at a time keeps it within one packet, so it stays
    /// bounded by the packet limit.
    pub fn recv_buf(&mut self, room: usize) -> &mut BytesMut {
        if self.failed.is_some() {
            self.buf.clear();
        }
        self.spill();
        self.buf.reserve(room);
        &mut self.buf
    }

    /// Moves a partial packet left in `chunk` into `buf` (one copy of those bytes).
    fn spill(&mut self) {
        if !self.chunk.is_empty() {
            debug_assert!(self.buf.is_empty());
            self.buf.extend_from_slice(&self.chunk);
            self.chunk = Bytes::new();
        }
    }

    /// The next whole packet, an error, or `None` when more bytes are needed.
    pub fn poll_packet(&mut self) -> Option<Result<Packet, CodecError>> {
        self.poll_packet_crc().map(|r| r.map(|(p, _)| p))
    }

    /// [`StreamDecoder::poll_packet`] with the packet's CRC-32C (verified against its payload), for a
    /// receiver that derives other checksums from it instead of another pass (see
    /// [`crate::pattern::PatternChecker`]).
    pub fn poll_packet_crc(&mut self) -> Option<Result<(Packet, u32), CodecError>> {
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        let r = if self.chunk.is_empty() { self.try_decode() } else { self.try_decode_chunk() };
        match r {
            Ok(p) => p.map(Ok),
            Err(e) => {
                self.buf = BytesMut::new();
                self.chunk = Bytes::new();
                self.failed = Some(e.clone());
                Some(Err(e))
            }
        }
    }

    /// Checks what the first bytes of `have` allow; the header once it is complete.
    fn check_start(have: &[u8], limits: &Limits) -> Result<Option<Header>, CodecError> {
        Header::check_magic_prefix(have)?;
        if have.len() < HEADER_LEN {
            if let Some(length) = Header::peek_length(have) {
                probe_length(length, have, limits)?;
            }
            return Ok(None);
        }
        Header::decode(have, limits).map(Some)
    }

    fn try_decode(&mut self) -> Result<Option<(Packet, u32)>, CodecError> {
        let Some(header) = Self::check_start(&self.buf, &self.limits)? else { return Ok(None) };
        let total = HEADER_LEN + header.length as usize;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mut whole = self.buf.split_to(total);
        whole.advance(HEADER_LEN);
        let payload = whole.freeze();
        header.check_crc(&payload)?;
        self.consumed += total as u64;
        Ok(Some((Packet { packet_type: header.packet_type, payload }, header.crc32)))
    }

    /// As [`StreamDecoder::try_decode`] from `chunk`: a whole packet is a slice of it; a partial one
    /// moves to `buf`.
    fn try_decode_chunk(&mut self) -> Result<Option<(Packet, u32)>, CodecError> {
        let header = Self::check_start(&self.chunk, &self.limits)?;
        let total = header.map(|h| HEADER_LEN + h.length as usize);
        match (header, total) {
            (Some(header), Some(total)) if self.chunk.len() >= total => {
                let payload = self.chunk.slice(HEADER_LEN..total);
                header.check_crc(&payload)?;
                self.chunk.advance(total);
                self.consumed += total as u64;
                Ok(Some((Packet { packet_type: header.packet_type, payload }, header.crc32)))
            }
            _ => {
                self.buf.reserve(total.unwrap_or(HEADER_LEN));
                self.spill();
                Ok(None)
            }
        }
    }

    /// Bytes held that do not yet form a whole packet.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.chunk.len()
    }

    /// Bytes consumed as whole packets so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether the stream ended cleanly (no partial packet pending) if it were closed now.
    pub fn is_at_boundary(&self) -> bool {
        self.buf.is_empty() && self.chunk.is_empty() && self.failed.is_none()
    }
}

/// Rejects an oversized length as soon as the length field is complete.
fn probe_length(length: u32, buf: &[u8], limits: &Limits) -> Result<(), CodecError> {
    let packet_type = crate::codec::PacketType::from_u16(u16::from_be_bytes([buf[8], buf[9]]));
    Header { packet_type, length, crc32: 0, client_id: 0 }.check_length(limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{PacketType, HEADER_LEN};

    #[test]
    fn packets_split_at_every_byte() {
        let mut wire = Packet::new(PacketType::STREAM_START, vec![0, 0, 0, 1]).encode();
        Packet::empty(PacketType::PING).encode_into(&mut wire);
        let mut d = StreamDecoder::new(Limits::default());
        let mut got = vec![];
        for b in &wire {
            d.handle_bytes(std::slice::from_ref(b));
            while let Some(p) = d.poll_packet() {
                got.push(p.unwrap().packet_type);
            }
        }
        assert_eq!(got, [PacketType::STREAM_START, PacketType::PING]);
        assert!(d.is_at_boundary());
    }

    /// A stream of packets and one of its corruptions, for the proptest below.
    fn wire_of(sizes: &[usize], corrupt: Option<usize>) -> Vec<u8> {
        let mut wire = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            Packet::new(PacketType::IMAGE_FRAME, vec![i as u8; n]).encode_into(&mut wire);
        }
        if let Some(at) = corrupt.filter(|_| !wire.is_empty()) {
            let at = at % wire.len();
            wire[at] ^= 0x5A;
        }
        wire
    }

    /// Everything a decoder put out, in order; the first error ends it.
    fn drain(d: &mut StreamDecoder, out: &mut Vec<Result<(Packet, u32), CodecError>>) {
        while let Some(p) = d.poll_packet_crc() {
            let failed = p.is_err();
            out.push(p);
            if failed {
                break;
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

        /// Fed through `handle_shared` (zero copy), `recv_buf` (read-into) or `handle_bytes` in any mix and
        /// any split, the decoder puts out exactly what the plain copying path puts out, and the CRC it
        /// gives is the one of the payload.
        #[test]
        fn proptest_every_way_in_decodes_the_same(
            sizes in proptest::collection::vec(0usize..300, 0..6),
            corrupt in proptest::option::of(0usize..2000),
            cuts in proptest::collection::vec((1usize..400, 0u8..3), 1..40),
        ) {
            let wire = wire_of(&sizes, corrupt);
            let mut reference = StreamDecoder::new(Limits::default());
            reference.handle_bytes(&wire);
            let mut want = Vec::new();
            drain(&mut reference, &mut want);

            let mut d = StreamDecoder::new(Limits::default());
            let mut got = Vec::new();
            let (mut off, mut i) = (0, 0);
            while off < wire.len() {
                let (len, how) = cuts[i % cuts.len()];
                i += 1;
                let len = match how {
                    1 => d.read_hint().min(len),
                    _ => len,
                };
                let piece = &wire[off..(off + len).min(wire.len())];
                off += piece.len();
                match how {
                    0 => d.handle_shared(Bytes::copy_from_slice(piece)),
                    1 => d.recv_buf(piece.len()).extend_from_slice(piece),
                    _ => d.handle_bytes(piece),
                }
                drain(&mut d, &mut got);
                if got.last().is_some_and(|r| r.is_err()) {
                    break;
                }
            }
            // A bad magic is reported with the bytes seen so far, which depend on the split.
            let kind = |r: &Result<(Packet, u32), CodecError>| match r {
                Err(CodecError::BadMagic { .. }) => Err(None),
                r => r.clone().map_err(Some),
            };
            proptest::prop_assert_eq!(got.iter().map(kind).collect::<Vec<_>>(), want.iter().map(kind).collect::<Vec<_>>());
            for (p, crc) in got.iter().flatten() {
                proptest::prop_assert_eq!(*crc, p.header().crc32);
            }
            if corrupt.is_none() {
                proptest::prop_assert!(d.is_at_boundary());
                proptest::prop_assert_eq!(d.consumed(), wire.len() as u64);
            }
        }
    }

    #[test]
    fn a_shared_frame_of_whole_packets_is_not_copied() {
        let mut wire = Packet::new(PacketType::IMAGE_FRAME, vec![9u8; 5000]).encode();
        Packet::empty(PacketType::PING).encode_into(&mut wire);
        let shared = Bytes::from(wire);
        let mut d = StreamDecoder::new(Limits::default());
        d.handle_shared(shared.clone());
        let p = d.poll_packet().unwrap().unwrap();
        // The payload points into the caller's buffer.
        assert_eq!(p.payload.as_ptr(), shared[HEADER_LEN..].as_ptr());
        assert_eq!(d.poll_packet().unwrap().unwrap().packet_type, PacketType::PING);
        assert!(d.poll_packet().is_none());
        assert!(d.is_at_boundary());
    }

    #[test]
    fn read_hint_reads_the_header_then_the_rest_of_the_packet() {
        let wire = Packet::new(PacketType::IMAGE_FRAME, vec![1u8; 1000]).encode();
        let mut d = StreamDecoder::new(Limits::default());
        assert_eq!(d.read_hint(), HEADER_LEN);
        d.handle_bytes(&wire[..5]);
        assert_eq!(d.read_hint(), HEADER_LEN - 5);
        d.handle_bytes(&wire[5..HEADER_LEN]);
        assert_eq!(d.read_hint(), 1000);
        assert!(d.poll_packet().is_none());
        let cap = d.recv_buf(0).capacity();
        d.recv_buf(1000).extend_from_slice(&wire[HEADER_LEN..]);
        assert_eq!(d.recv_buf(0).capacity(), cap, "the packet was reserved whole: no regrowth");
        assert!(d.poll_packet().unwrap().is_ok());
    }

    #[test]
    fn bad_magic_fails_on_the_first_wrong_byte() {
        let mut d = StreamDecoder::new(Limits::default());
        d.handle_bytes(b"SERV");
        assert!(matches!(d.poll_packet(), Some(Err(CodecError::BadMagic { .. }))));
    }

    #[test]
    fn oversized_length_fails_before_the_header_is_complete() {
        let mut h = Packet::empty(PacketType::IMAGE_FRAME).header();
        h.length = 5 * 1024 * 1024 + 1;
        let mut d = StreamDecoder::new(Limits::default());
        d.handle_bytes(&h.to_bytes()[..14]);
        assert!(matches!(d.poll_packet(), Some(Err(CodecError::PacketTooLarge { .. }))));
        assert_eq!(d.buffered(), 0);
    }
}
