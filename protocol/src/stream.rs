//! Incremental decoding of a byte stream of back-to-back packets (raw TCP, ACIP-SPEC.md 6.1; and the `head`
//! dialect's WebSocket byte stream, 6.2). Bytes come in arbitrary chunks; packets come out.
//!
//! Memory is bounded by one header plus `Limits::max_packet`: a bad magic is an error after at most 8 bytes
//! and an oversized length after 14, before any payload is buffered. Payloads are handed out as `Bytes`
//! slices of the receive buffer (no copy after the first).

use bytes::{Buf, BytesMut};

use crate::codec::{CodecError, Header, Limits, Packet, HEADER_LEN};

/// A sans-IO stream decoder. Feed with [`StreamDecoder::handle_bytes`], drain with
/// [`StreamDecoder::poll_packet`] until it returns `None`. After an error the stream is unusable (there is no
/// way to find the next packet boundary) and every later poll returns the same error.
#[derive(Debug)]
pub struct StreamDecoder {
    buf: BytesMut,
    limits: Limits,
    failed: Option<CodecError>,
    /// Total bytes consumed as whole packets, so a caller can say where an error happened.
    consumed: u64,
}

impl StreamDecoder {
    pub fn new(limits: Limits) -> Self {
        StreamDecoder { buf: BytesMut::new(), limits, failed: None, consumed: 0 }
    }

    /// Appends bytes received from the peer.
    pub fn handle_bytes(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next whole packet, an error, or `None` when more bytes are needed.
    pub fn poll_packet(&mut self) -> Option<Result<Packet, CodecError>> {
        if let Some(e) = &self.failed {
            return Some(Err(e.clone()));
        }
        match self.try_decode() {
            Ok(p) => p.map(Ok),
            Err(e) => {
                self.buf = BytesMut::new();
                self.failed = Some(e.clone());
                Some(Err(e))
            }
        }
    }

    fn try_decode(&mut self) -> Result<Option<Packet>, CodecError> {
        Header::check_magic_prefix(&self.buf)?;
        if self.buf.len() < HEADER_LEN {
            if let Some(length) = Header::peek_length(&self.buf) {
                probe_length(length, &self.buf, &self.limits)?;
            }
            return Ok(None);
        }
        let header = Header::decode(&self.buf, &self.limits)?;
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
        Ok(Some(Packet { packet_type: header.packet_type, payload }))
    }

    /// Bytes held that do not yet form a whole packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes consumed as whole packets so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether the stream ended cleanly (no partial packet pending) if it were closed now.
    pub fn is_at_boundary(&self) -> bool {
        self.buf.is_empty() && self.failed.is_none()
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
    use crate::codec::PacketType;

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
