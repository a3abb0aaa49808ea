//! A byte-stream decoder that never gives up: after damage (a bad magic, an impossible length, a CRC
//! mismatch) it finds where the next valid packet starts, says exactly which bytes it skipped, and goes on
//! to the end. For readers of captures (`harness replay`), where the damaged part is the part that matters;
//! a live peer uses [`crate::stream::StreamDecoder`], which stops at the first error as the real peers do.
//!
//! A packet counts as found only when it is whole and its CRC-32C checks (an empty payload: CRC 0), so a
//! magic number inside a payload is not taken for a packet. Two writers that share a socket without a lock
//! around whole packets leave a recognisable mark: two or more headers back to back, then the payloads, in
//! the order the headers came or reversed (a whole packet written between another one's header and its
//! payload). Both orders are tried; when every CRC checks, all packets are recovered as one
//! [`Item::Interleaved`].
//!
//! Memory is bounded by [`max_held`]: a length over `Limits::max_packet` is damage, one header plus its
//! payload is held while waiting for a candidate to complete, and an interleaving is only waited for while
//! it fits in two packets' worth of bytes. Every decision waits for the bytes it looks at, so how the
//! stream was cut into reads never changes the items (the `resync` fuzz target checks it).

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};

use crate::codec::{CodecError, Header, Limits, Packet, HEADER_LEN, MAGIC};

/// Most headers in a row tried as one interleaving.
pub const MAX_INTERLEAVED: usize = 8;

/// The most bytes a decoder with these limits holds.
pub fn max_held(limits: &Limits) -> usize {
    2 * (HEADER_LEN + limits.max_packet as usize)
}

/// A packet found in the stream: where its header starts, and the header's client ID (which [`Packet`]
/// does not keep).
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub offset: u64,
    pub client_id: u32,
    pub packet: Packet,
}

/// What the decoder found, in stream order. Offsets count bytes from the start of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A whole packet whose CRC checks.
    Packet(Located),
    /// Bytes that are no valid packet, skipped to reach the next one; `error` is why decoding at `offset`
    /// failed.
    Skipped { offset: u64, len: u64, error: CodecError },
    /// Packets of two or more writers interleaved: their headers back to back at `offset`, the payloads
    /// after them (`reversed`: in the opposite order of the headers). Each packet comes with the offset of
    /// its header; `len` covers the whole region.
    Interleaved { offset: u64, len: u64, packets: Vec<Located>, reversed: bool },
}

/// See the module docs.
#[derive(Debug)]
pub struct ResyncDecoder {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    base: u64,
    limits: Limits,
    eof: bool,
    /// Damage being skipped: where it started and why.
    skipping: Option<(u64, CodecError)>,
    ready: VecDeque<Item>,
    /// Test-only broken variant: trusts every header (no resynchronisation, no CRC confirmation).
    #[cfg(test)]
    broken_trust_headers: bool,
}

enum Step {
    /// More bytes are needed.
    Need,
    /// Something was found at offset 0 and is `len` bytes long.
    Found(Item, usize),
    /// Offset 0 is damage: skip `n` bytes.
    Skip(usize, CodecError),
}

impl ResyncDecoder {
    pub fn new(limits: Limits) -> Self {
        ResyncDecoder {
            buf: BytesMut::new(),
            base: 0,
            limits,
            eof: false,
            skipping: None,
            ready: VecDeque::new(),
            #[cfg(test)]
            broken_trust_headers: false,
        }
    }

    /// Appends bytes of the stream.
    pub fn handle_bytes(&mut self, data: &[u8]) {
        if !self.eof {
            self.buf.extend_from_slice(data);
        }
    }

    /// `len` bytes of the stream are missing (lost from a capture): the packet in progress is damaged, and
    /// decoding goes on with the bytes after the gap (skipping to the next valid packet). The skip reported
    /// covers the held bytes and the gap, with [`CodecError::Truncated`] (what the held packet needed).
    pub fn handle_gap(&mut self, len: u64) {
        if self.eof || (len == 0 && self.buf.is_empty()) {
            return;
        }
        // What is whole before the gap is decided first (queued for `poll`).
        loop {
            match self.step() {
                Step::Need => break,
                step => self.apply(step),
            }
        }
        let needed = Header::peek_length(&self.buf).map_or(HEADER_LEN, |l| HEADER_LEN + l as usize);
        let have = self.buf.len();
        if !self.buf.is_empty() || len > 0 {
            self.skipping.get_or_insert((self.base, CodecError::Truncated { needed, have }));
        }
        self.consume(have);
        self.base += len;
    }

    /// The stream ended: what is left is decided now (packets inside a damaged tail are still found).
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// The next item, or `None` when more bytes are needed (or, after [`ResyncDecoder::finish`], when
    /// only a truncated packet is left: see [`ResyncDecoder::buffered`]).
    pub fn poll(&mut self) -> Option<Item> {
        loop {
            if let Some(i) = self.ready.pop_front() {
                return Some(i);
            }
            match self.step() {
                Step::Need => {
                    if self.eof {
                        if let Some((start, error)) = self.skipping.take() {
                            // The stream ends after damage. Less than a header left is part of it; a
                            // header whose payload never came is a truncated packet, for the caller.
                            if self.buf.len() < HEADER_LEN {
                                self.consume(self.buf.len());
                            }
                            return Some(Item::Skipped { offset: start, len: self.base - start, error });
                        }
                    }
                    return None;
                }
                step => self.apply(step),
            }
        }
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Need => {}
            Step::Skip(n, error) => {
                self.skipping.get_or_insert((self.base, error));
                self.consume(n.max(1));
            }
            Step::Found(item, len) => {
                if let Some((start, error)) = self.skipping.take() {
                    self.ready.push_back(Item::Skipped { offset: start, len: self.base - start, error });
                }
                self.ready.push_back(item);
                self.consume(len);
            }
        }
    }

    /// Bytes held that are not decided yet (at the end: a truncated packet).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset of the first byte not decided yet.
    pub fn consumed(&self) -> u64 {
        self.base
    }

    /// Whether the stream ended cleanly if it ended now.
    pub fn is_at_boundary(&self) -> bool {
        self.buf.is_empty() && self.skipping.is_none()
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.advance(n);
        self.base += n as u64;
    }

    fn step(&self) -> Step {
        let buf = &self.buf[..];
        if buf.is_empty() {
            return Step::Need;
        }
        if let Err(e) = Header::check_magic_prefix(buf) {
            // The error names the 8 bytes found: wait for them, so the report does not depend on the reads.
            if buf.len() < 8 && !self.eof {
                return Step::Need;
            }
            return Step::Skip(next_magic(buf, 1), e);
        }
        if buf.len() < HEADER_LEN {
            if let Some(length) = Header::peek_length(buf) {
                if let Err(e) = self.length_ok(buf, length) {
                    return Step::Skip(next_magic(buf, 1), e);
                }
            }
            return self.need_or_tail(buf);
        }
        let header = match Header::decode(buf, &self.limits) {
            Ok(h) => h,
            Err(e) => return Step::Skip(next_magic(buf, 1), e),
        };
        let total = HEADER_LEN + header.length as usize;
        if buf.len() < total {
            return self.need_or_tail(buf);
        }
        let payload = &buf[HEADER_LEN..total];
        #[cfg(test)]
        if self.broken_trust_headers {
            let packet = Packet::new(header.packet_type, payload.to_vec());
            let found = Located { offset: self.base, client_id: header.client_id, packet };
            return Step::Found(Item::Packet(found), total);
        }
        match header.check_crc(payload) {
            Ok(()) => {
                let packet = Packet::new(header.packet_type, payload.to_vec());
                let found = Located { offset: self.base, client_id: header.client_id, packet };
                Step::Found(Item::Packet(found), total)
            }
            Err(e) => {
                if let Some(step) = self.interleaved(buf) {
                    return step;
                }
                // The boundary held (the next bytes are a header, or the stream ends here): only this
                // packet's bytes are damaged. Decided on the next 8 bytes, so wait for them.
                if buf.len() < total + 8 && !self.eof {
                    return Step::Need;
                }
                let boundary = buf.get(total..total + 8).is_some_and(|m| m == MAGIC.to_be_bytes())
                    || (self.eof && buf.len() == total);
                if boundary {
                    Step::Skip(total, e)
                } else {
                    Step::Skip(next_magic(buf, 1), e)
                }
            }
        }
    }

    fn length_ok(&self, buf: &[u8], length: u32) -> Result<(), CodecError> {
        let packet_type = crate::codec::PacketType::from_u16(u16::from_be_bytes([buf[8], buf[9]]));
        Header { packet_type, length, crc32: 0, client_id: 0 }.check_length(&self.limits)
    }

    /// A candidate at offset 0 that is not whole yet. Before the end: wait. At the end: if a whole valid
    /// packet starts later in the tail, the candidate was damage; otherwise it is a truncated packet.
    fn need_or_tail(&self, buf: &[u8]) -> Step {
        if !self.eof {
            return Step::Need;
        }
        let mut at = 1;
        while at < buf.len() {
            let q = next_magic(buf, at);
            if q >= buf.len() {
                break;
            }
            if self.valid_packet_at(buf, q) {
                let have = buf.len();
                let needed = Header::peek_length(buf).map_or(HEADER_LEN, |l| HEADER_LEN + l as usize);
                return Step::Skip(q, CodecError::Truncated { needed, have });
            }
            at = q + 1;
        }
        Step::Need
    }

    fn valid_packet_at(&self, buf: &[u8], at: usize) -> bool {
        let Some(rest) = buf.get(at..) else { return false };
        let Ok(h) = Header::decode(rest, &self.limits) else { return false };
        let total = HEADER_LEN + h.length as usize;
        rest.len() >= total && h.check_crc(&rest[HEADER_LEN..total]).is_ok()
    }

    /// Two or more headers back to back at offset 0, then their payloads in header order or reversed.
    fn interleaved(&self, buf: &[u8]) -> Option<Step> {
        let mut headers = Vec::new();
        while headers.len() < MAX_INTERLEAVED {
            let at = headers.len() * HEADER_LEN;
            let rest = buf.get(at..).unwrap_or(&[]);
            match Header::decode(rest, &self.limits) {
                Ok(h) => headers.push(h),
                // Not enough bytes to tell whether another header starts here: wait for them.
                Err(CodecError::Truncated { .. })
                    if !self.eof && Header::check_magic_prefix(rest).is_ok() && !rest.is_empty() =>
                {
                    return Some(Step::Need)
                }
                Err(CodecError::Truncated { .. }) if !self.eof && rest.is_empty() => return Some(Step::Need),
                Err(_) => break,
            }
        }
        if headers.len() < 2 {
            return None;
        }
        // The longest run first: a shorter one is tried when the longer one does not check.
        for n in (2..=headers.len()).rev() {
            let hs = &headers[..n];
            let total = n * HEADER_LEN + hs.iter().map(|h| h.length as usize).sum::<usize>();
            if total > max_held(&self.limits) {
                continue;
            }
            if buf.len() < total {
                if self.eof {
                    continue;
                }
                return Some(Step::Need);
            }
            for reversed in [false, true] {
                let order: Vec<usize> = if reversed { (0..n).rev().collect() } else { (0..n).collect() };
                let mut at = n * HEADER_LEN;
                let mut payloads = vec![None; n];
                let mut ok = true;
                for &i in &order {
                    let len = hs[i].length as usize;
                    let p = &buf[at..at + len];
                    if hs[i].check_crc(p).is_err() {
                        ok = false;
                        break;
                    }
                    payloads[i] = Some(p.to_vec());
                    at += len;
                }
                if ok {
                    let packets = hs
                        .iter()
                        .zip(payloads)
                        .enumerate()
                        .map(|(i, (h, p))| Located {
                            offset: self.base + (i * HEADER_LEN) as u64,
                            client_id: h.client_id,
                            packet: Packet::new(h.packet_type, p.unwrap_or_default()),
                        })
                        .collect();
                    let item = Item::Interleaved { offset: self.base, len: total as u64, packets, reversed };
                    return Some(Step::Found(item, total));
                }
            }
        }
        None
    }
}

/// The first offset at or after `from` where the magic starts (or, at the end of `buf`, where a prefix of
/// it does); `buf.len()` if nowhere.
fn next_magic(buf: &[u8], from: usize) -> usize {
    let magic = MAGIC.to_be_bytes();
    (from..buf.len())
        .find(|&p| {
            let n = (buf.len() - p).min(8);
            buf[p..p + n] == magic[..n]
        })
        .unwrap_or(buf.len())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::PacketType;

    fn pkt(t: PacketType, n: usize, fill: u8) -> Packet {
        Packet::new(t, vec![fill; n])
    }

    fn items(wire: &[u8], chunk: usize, broken: bool) -> Vec<Item> {
        let mut d = ResyncDecoder::new(Limits::default());
        d.broken_trust_headers = broken;
        let mut out = Vec::new();
        for c in wire.chunks(chunk.max(1)) {
            d.handle_bytes(c);
            while let Some(i) = d.poll() {
                out.push(i);
            }
        }
        d.finish();
        while let Some(i) = d.poll() {
            out.push(i);
        }
        out
    }

    fn packets(items: &[Item]) -> Vec<Packet> {
        let mut v = Vec::new();
        for i in items {
            match i {
                Item::Packet(l) => v.push(l.packet.clone()),
                Item::Interleaved { packets, .. } => v.extend(packets.iter().map(|l| l.packet.clone())),
                Item::Skipped { .. } => {}
            }
        }
        v
    }

    #[test]
    fn a_crc_mismatch_skips_exactly_the_damaged_packet() {
        let (a, b, c) = (
            pkt(PacketType::PING, 0, 0),
            pkt(PacketType::IMAGE_FRAME, 300, 7),
            pkt(PacketType::STREAM_START, 4, 1),
        );
        let mut wire = a.encode();
        let at = wire.len();
        let mut bad = b.encode();
        bad[HEADER_LEN + 10] ^= 0xFF;
        wire.extend_from_slice(&bad);
        wire.extend_from_slice(&c.encode());
        for chunk in [1, 7, 64, usize::MAX] {
            let got = items(&wire, chunk, false);
            assert_eq!(packets(&got), vec![a.clone(), c.clone()], "chunk {chunk}");
            let skipped: Vec<_> = got
                .iter()
                .filter_map(|i| match i {
                    Item::Skipped { offset, len, error } => Some((*offset, *len, error.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(skipped.len(), 1, "chunk {chunk}: {got:?}");
            assert_eq!((skipped[0].0, skipped[0].1), (at as u64, bad.len() as u64));
            assert!(matches!(skipped[0].2, CodecError::CrcMismatch { .. }));
        }
    }

    #[test]
    fn garbage_and_a_broken_length_are_skipped_to_the_next_packet() {
        let a = pkt(PacketType::PING, 0, 0);
        let mut wire = b"SERVER_FULL: junk\n".to_vec();
        wire.extend_from_slice(&a.encode());
        let mut huge = Header::for_payload(PacketType::IMAGE_FRAME, &[]).to_bytes();
        huge[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
        wire.extend_from_slice(&huge);
        wire.extend_from_slice(&a.encode());
        let got = items(&wire, 5, false);
        assert_eq!(packets(&got), vec![a.clone(), a.clone()]);
        let kinds: Vec<_> = got
            .iter()
            .map(|i| match i {
                Item::Skipped { offset, len, error } => format!("skip {offset}+{len} {}", error.kind()),
                Item::Packet(l) => format!("packet {}", l.offset),
                Item::Interleaved { .. } => "interleaved".into(),
            })
            .collect();
        assert_eq!(
            kinds,
            vec!["skip 0+18 bad_magic", "packet 18", "skip 40+22 length_sentinel", "packet 62"]
        );
    }

    #[test]
    fn interleaved_writers_are_recovered_in_either_payload_order() {
        let (a, b) = (pkt(PacketType::ENCRYPTED, 500, 3), pkt(PacketType::ENCRYPTED, 90, 4));
        let (ea, eb) = (a.encode(), b.encode());
        let before = pkt(PacketType::PING, 0, 0).encode();
        for reversed in [false, true] {
            let mut wire = before.clone();
            wire.extend_from_slice(&ea[..HEADER_LEN]);
            wire.extend_from_slice(&eb[..HEADER_LEN]);
            let (first, second) = if reversed { (&eb, &ea) } else { (&ea, &eb) };
            wire.extend_from_slice(&first[HEADER_LEN..]);
            wire.extend_from_slice(&second[HEADER_LEN..]);
            wire.extend_from_slice(&before);
            let got = items(&wire, 33, false);
            let inter = got.iter().find_map(|i| match i {
                Item::Interleaved { offset, len, packets, reversed } => {
                    Some((*offset, *len, packets.clone(), *reversed))
                }
                _ => None,
            });
            let (offset, len, ps, rev) = inter.unwrap_or_else(|| panic!("{got:?}"));
            assert_eq!((offset, len, rev), (22, (ea.len() + eb.len()) as u64, reversed));
            let located: Vec<(u64, Packet)> = ps.iter().map(|l| (l.offset, l.packet.clone())).collect();
            assert_eq!(located, vec![(22, a.clone()), (44, b.clone())]);
            assert_eq!(packets(&got).len(), 4, "the packets before and after are kept");
            assert!(!got.iter().any(|i| matches!(i, Item::Skipped { .. })));
        }
    }

    #[test]
    fn a_truncated_tail_stays_buffered_unless_a_valid_packet_follows() {
        let a = pkt(PacketType::IMAGE_FRAME, 100, 1);
        let p = pkt(PacketType::PING, 0, 0);
        let cut = &a.encode()[..60];
        let mut d = ResyncDecoder::new(Limits::default());
        d.handle_bytes(cut);
        d.finish();
        assert_eq!(d.poll(), None);
        assert_eq!(d.buffered(), 60, "a plain truncation is left for the caller to report");
        let mut wire = cut.to_vec();
        wire.extend_from_slice(&p.encode());
        let got = items(&wire, usize::MAX, false);
        assert_eq!(packets(&got), vec![p]);
        assert!(matches!(got[0], Item::Skipped { offset: 0, len: 60, error: CodecError::Truncated { .. } }));
    }

    #[test]
    fn a_gap_loses_the_packet_it_cuts_and_decoding_goes_on() {
        let (a, b, c) = (
            pkt(PacketType::PING, 0, 0),
            pkt(PacketType::IMAGE_FRAME, 1000, 9),
            pkt(PacketType::STREAM_START, 4, 1),
        );
        let eb = b.encode();
        let mut d = ResyncDecoder::new(Limits::default());
        d.handle_bytes(&a.encode());
        d.handle_bytes(&eb[..300]);
        d.handle_gap(200);
        d.handle_bytes(&eb[500..]);
        d.handle_bytes(&c.encode());
        d.finish();
        let got: Vec<Item> = std::iter::from_fn(|| d.poll()).collect();
        assert_eq!(packets(&got), vec![a, c]);
        let skip = got.iter().find_map(|i| match i {
            Item::Skipped { offset, len, error } => Some((*offset, *len, error.clone())),
            _ => None,
        });
        assert_eq!(skip, Some((22, eb.len() as u64, CodecError::Truncated { needed: eb.len(), have: 300 })));
        assert_eq!(d.consumed(), (22 + eb.len() + 26) as u64, "offsets count the missing bytes");
    }

    /// Any damage to one packet (bytes flipped, cut out, or garbage inserted) loses that packet only: every
    /// other packet comes out, whatever the read sizes. The broken variant (trusting headers) is caught.
    fn damaged_stream() -> impl Strategy<Value = (Vec<Packet>, usize, u8, usize, usize)> {
        let one = (0usize..3, 0usize..2000, any::<u8>()).prop_map(|(t, n, fill)| {
            let t = [PacketType::IMAGE_FRAME, PacketType::ENCRYPTED, PacketType::ASCII_FRAME][t];
            Packet::new(t, vec![fill; n])
        });
        (proptest::collection::vec(one, 3..8), 0usize..8, 0u8..3, any::<usize>(), 1usize..5000)
    }

    fn damage_survives(ps: &[Packet], victim: usize, how: u8, at: usize, chunk: usize, broken: bool) -> bool {
        let victim = victim % ps.len();
        let mut wire = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            let mut e = p.encode();
            if i == victim {
                let pos = HEADER_LEN + at % (e.len() - HEADER_LEN + 1);
                match how {
                    0 if pos < e.len() => e[pos] ^= 0x5A,
                    0 => e[4] ^= 0x5A,
                    1 => e.truncate(pos.max(HEADER_LEN - 1)),
                    _ => e
                        .splice(pos.min(e.len())..pos.min(e.len()), b"garbage!".iter().copied())
                        .for_each(drop),
                }
            }
            wire.extend_from_slice(&e);
        }
        let want: Vec<Packet> =
            ps.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, p)| p.clone()).collect();
        let got = packets(&items(&wire, chunk, broken));
        // The victim may survive (garbage appended after a whole packet is only skipped bytes).
        let without_victim: Vec<Packet> = got.iter().filter(|p| **p != ps[victim]).cloned().collect();
        let expected_without: Vec<Packet> = want.iter().filter(|p| **p != ps[victim]).cloned().collect();
        without_victim == expected_without
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
        #[test]
        fn damage_to_one_packet_loses_only_that_packet((ps, victim, how, at, chunk) in damaged_stream()) {
            prop_assert!(damage_survives(&ps, victim, how, at, chunk, false));
        }
    }

    #[test]
    fn the_damage_model_catches_a_decoder_that_trusts_headers() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let r = runner.run(&damaged_stream(), |(ps, victim, how, at, chunk)| {
            prop_assert!(damage_survives(&ps, victim, how, at, chunk, true));
            Ok(())
        });
        assert!(r.is_err(), "the broken variant must be caught");
    }
}
