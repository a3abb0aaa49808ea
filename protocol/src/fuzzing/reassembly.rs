//! Fuzz logic for the `reassembly` target: a sequence of frame events with virtual time, fed to
//! [`Reassembler`] and, in lockstep, to a plain model of RFC 6455 5.4 plus the `feb` rules (ACIP-SPEC.md
//! 6.2). Every outcome must equal the model's: completed messages conserve their bytes exactly (same bytes,
//! same order, same fragment count), and each error is the one the model predicts. A second lane feeds raw
//! bytes to a [`MessageDecoder`], which must never panic.
//!
//! Input format (parsed with [`arbitrary::Unstructured`] as a byte cursor, so seeds can be written by
//! [`encode`]): one config byte, then ops of one tag byte plus fields; see [`Op`].

use std::time::{Duration, Instant};

use arbitrary::{Result as ArbResult, Unstructured};

use super::u16_of;
use bytes::Bytes;

use crate::codec::{Header, PacketType, HEADER_LEN};
use crate::ws::{
    Frame, FrameDecoderConfig, MessageDecoder, OpCode, Reassembler, ReassemblerConfig, ReassemblyError,
    ReassemblyEvent, REASSEMBLY_TIMEOUT_FIXED, REASSEMBLY_TIMEOUT_OLD,
};

/// One fuzz event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A data frame (BINARY, TEXT or CONTINUATION) of `len` pattern bytes starting at `fill`.
    Data { opcode: OpCode, fin: bool, len: u16, fill: u8 },
    /// A BINARY frame starting with an ACIP header declaring `declared` payload bytes, then `chunk` bytes.
    PacketStart { fin: bool, declared: u16, chunk: u16, fill: u8 },
    /// A PING of `len` bytes (at most 125).
    Ping { len: u8 },
    /// Virtual time moves on.
    Advance { ms: u16 },
    /// The caller's timer fires.
    Timeout,
    /// A frame with a reserved opcode (0x3-0x7 or 0xB-0xF).
    Reserved { opcode: u8 },
    /// Raw bytes for the byte-level lane.
    Raw(Vec<u8>),
}

/// The reassembler configuration selected by the config byte.
pub fn config(byte: u8) -> ReassemblerConfig {
    ReassemblerConfig {
        timeout: if byte & 2 != 0 { REASSEMBLY_TIMEOUT_OLD } else { REASSEMBLY_TIMEOUT_FIXED },
        max_message: [256, 4096, 65_536, 1 << 20][usize::from(byte >> 4 & 3)],
        max_fragments: [4, 16, 64, 4096][usize::from(byte >> 2 & 3)],
        check_packet_length: byte & 1 != 0,
    }
}

/// Parses the input: the config byte and the ops (a truncated last op is dropped).
pub fn parse(data: &[u8]) -> (u8, Vec<Op>) {
    super::parse_ops(data, parse_op)
}

fn parse_op(u: &mut Unstructured<'_>) -> ArbResult<Op> {
    let tag: u8 = u.arbitrary()?;
    let fin = tag & 0x80 != 0;
    Ok(match tag & 0x0F {
        0..=2 => {
            let opcode = [OpCode::Binary, OpCode::Continuation, OpCode::Text][usize::from(tag & 0x0F)];
            Op::Data { opcode, fin, len: u16_of(u)? % 8192, fill: u.arbitrary()? }
        }
        3 => Op::PacketStart { fin, declared: u16_of(u)?, chunk: u16_of(u)? % 8192, fill: u.arbitrary()? },
        4 => Op::Ping { len: u.arbitrary::<u8>()? % 126 },
        5 => Op::Advance { ms: u16_of(u)? },
        6 => Op::Timeout,
        7 => Op::Reserved { opcode: [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF][usize::from(tag >> 4 & 7)] },
        _ => {
            let n = usize::from(u16_of(u)? % 4096);
            Op::Raw(u.bytes(n.min(u.len()))?.to_vec())
        }
    })
}

/// The bytes that [`parse`] turns back into `cfg` and `ops` (for generating seeds from code).
pub fn encode(cfg: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![cfg];
    for op in ops {
        let fin = |f: bool| if f { 0x80u8 } else { 0 };
        match op {
            Op::Data { opcode, fin: f, len, fill } => {
                let t = match opcode {
                    OpCode::Continuation => 1,
                    OpCode::Text => 2,
                    _ => 0,
                };
                out.push(t | fin(*f));
                out.extend_from_slice(&len.to_be_bytes());
                out.push(*fill);
            }
            Op::PacketStart { fin: f, declared, chunk, fill } => {
                out.push(3 | fin(*f));
                out.extend_from_slice(&declared.to_be_bytes());
                out.extend_from_slice(&chunk.to_be_bytes());
                out.push(*fill);
            }
            Op::Ping { len } => out.extend_from_slice(&[4, *len]),
            Op::Advance { ms } => {
                out.push(5);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            Op::Timeout => out.push(6),
            Op::Reserved { opcode } => {
                let i =
                    [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF].iter().position(|o| o == opcode).unwrap_or(0);
                out.push(7 | (i as u8) << 4);
            }
            Op::Raw(bytes) => {
                out.push(8);
                out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    out
}

fn pattern(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

/// The frame an op stands for (None for time, timer and raw ops).
pub fn frame_of(op: &Op) -> Option<Frame> {
    Some(match op {
        Op::Data { opcode, fin, len, fill } => Frame::new(*opcode, *fin, pattern(usize::from(*len), *fill)),
        Op::PacketStart { fin, declared, chunk, fill } => {
            let mut header = Header::for_payload(PacketType::IMAGE_FRAME, &[]);
            header.length = u32::from(*declared);
            let mut payload = header.to_bytes().to_vec();
            payload.extend(pattern(usize::from(*chunk), *fill));
            Frame::new(OpCode::Binary, *fin, payload)
        }
        Op::Ping { len } => Frame::ping(pattern(usize::from(*len), 0x50)),
        Op::Reserved { opcode } => Frame::new(OpCode::from_u8(*opcode), true, Bytes::new()),
        Op::Advance { .. } | Op::Timeout | Op::Raw(_) => return None,
    })
}

/// The plain model: what the reassembler must do, restated without any optimisation.
#[derive(Debug, Default)]
struct Model {
    /// Open message: opcode, bytes, fragments, time of the last fragment.
    open: Option<(OpCode, Vec<u8>, usize, Instant)>,
}

/// What the model expects for one frame (messages compared by opcode, bytes and fragment count).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Nothing,
    Message(OpCode, Vec<u8>, usize),
    Control(Frame),
    Error(ReassemblyError),
}

impl Model {
    fn expired(&mut self, cfg: &ReassemblerConfig, now: Instant) -> Option<ReassemblyError> {
        let (_, bytes, fragments, last) = self.open.as_ref()?;
        if now < *last + cfg.timeout {
            return None;
        }
        let e = ReassemblyError::Timeout { after: cfg.timeout, fragments: *fragments, bytes: bytes.len() };
        self.open = None;
        Some(e)
    }

    fn frame(&mut self, cfg: &ReassemblerConfig, f: &Frame, now: Instant) -> Outcome {
        if let Some(e) = self.expired(cfg, now) {
            return Outcome::Error(e);
        }
        let (opcode, mut bytes, count) = match f.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => return Outcome::Control(f.clone()),
            OpCode::Reserved(v) => {
                self.open = None;
                return Outcome::Error(ReassemblyError::ReservedOpcode(v));
            }
            OpCode::Text | OpCode::Binary => {
                if let Some((_, b, n, _)) = self.open.take() {
                    return Outcome::Error(ReassemblyError::DataFrameBeforeFin {
                        opcode: f.opcode,
                        fragments: n,
                        bytes: b.len(),
                    });
                }
                (f.opcode, Vec::new(), 1)
            }
            OpCode::Continuation => match self.open.take() {
                None => return Outcome::Error(ReassemblyError::ContinuationWithoutStart { fin: f.fin }),
                Some((op, b, n, _)) => (op, b, n + 1),
            },
        };
        let size = bytes.len() + f.payload.len();
        if size > cfg.max_message {
            return Outcome::Error(ReassemblyError::MessageTooLarge { size, limit: cfg.max_message });
        }
        if count > cfg.max_fragments {
            return Outcome::Error(ReassemblyError::TooManyFragments { count, limit: cfg.max_fragments });
        }
        bytes.extend_from_slice(&f.payload);
        if !f.fin {
            self.open = Some((opcode, bytes, count, now));
            return Outcome::Nothing;
        }
        if cfg.check_packet_length {
            let message = bytes.len();
            if message < HEADER_LEN {
                return Outcome::Error(ReassemblyError::HeaderIncomplete { message });
            }
            let packet =
                HEADER_LEN + u32::from_be_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
            if message < packet {
                return Outcome::Error(ReassemblyError::MessageShorterThanPacket { message, packet });
            }
            if message > packet {
                return Outcome::Error(ReassemblyError::MessageLongerThanPacket { message, packet });
            }
        }
        Outcome::Message(opcode, bytes, count)
    }
}

fn outcome_of(r: Result<Option<ReassemblyEvent>, ReassemblyError>) -> Outcome {
    match r {
        Ok(None) => Outcome::Nothing,
        Ok(Some(ReassemblyEvent::Control(f))) => Outcome::Control(f),
        Ok(Some(ReassemblyEvent::Message(m))) => {
            assert_eq!(m.gaps.len(), m.fragments - 1, "one gap between each pair of fragments");
            assert!(m.first_at <= m.last_at);
            Outcome::Message(m.opcode, m.data.to_vec(), m.fragments)
        }
        Err(e) => Outcome::Error(e),
    }
}

/// Runs one input. Panics (a fuzz finding) if the reassembler disagrees with the model or panics itself.
pub fn run(data: &[u8]) {
    let (cfg_byte, ops) = parse(data);
    let cfg = config(cfg_byte);
    let start = origin();
    let mut now = start;
    let mut r = Reassembler::new(cfg);
    let mut model = Model::default();
    let mut raw = MessageDecoder::new(FrameDecoderConfig::new(cfg.max_message), cfg);
    for op in &ops {
        match op {
            Op::Advance { ms } => now += Duration::from_millis(u64::from(*ms)),
            Op::Timeout => {
                let expected = model.expired(&cfg, now);
                assert_eq!(r.handle_timeout(now).err(), expected, "handle_timeout at {:?}", now - start);
            }
            Op::Raw(bytes) => {
                raw.handle_bytes(bytes);
                while let Some(event) = raw.poll_event(now) {
                    // A frame error is sticky: the lane is finished.
                    if matches!(event, Err(crate::Error::Frame(_))) {
                        break;
                    }
                }
                let _ = raw.handle_timeout(now);
            }
            op => {
                let frame = frame_of(op).expect("every other op is a frame");
                let expected = model.frame(&cfg, &frame, now);
                let actual = outcome_of(r.handle_frame(frame, now));
                assert_eq!(actual, expected, "op {op:?} at {:?}", now - start);
            }
        }
        assert_eq!(r.in_progress(), model.open.is_some());
        assert_eq!(r.buffered(), model.open.as_ref().map_or(0, |o| o.1.len()));
        assert_eq!(r.poll_timeout(), model.open.as_ref().map(|o| o.3 + cfg.timeout));
    }
}

/// The origin of virtual time. `Instant` has no constructor, so the fuzz driver (not the sans-IO core it
/// drives) reads the clock once; every later instant is this plus virtual offsets, so outcomes do not depend
/// on the reading.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

/// Seeds for `corpus/seeds/reassembly/`, one per behaviour (regenerated from code by a test).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use Op::*;
    let data = |opcode, fin, len| Data { opcode, fin, len, fill: 7 };
    // An IMAGE_FRAME-like packet of 20,000 payload bytes in 4096-byte fragments with a PING in between.
    let packet_ops = {
        let total = HEADER_LEN + 20_000;
        let mut ops = vec![PacketStart { fin: false, declared: 20_000, chunk: 4096 - 22, fill: 1 }];
        let mut sent = 4096;
        while sent < total {
            let n = (total - sent).min(4096);
            sent += n;
            ops.push(Advance { ms: 30 });
            if sent == 8192 {
                ops.push(Ping { len: 4 });
            }
            ops.push(data(OpCode::Continuation, sent == total, n as u16));
        }
        ops
    };
    let mut raw = Vec::new();
    crate::ws::Fragmenter::binary(100).encode(&[0xAB; 250], Some([1, 2, 3, 4]), &mut raw);
    vec![
        ("packet-4096-fragments", encode(0x3D, &packet_ops)),
        (
            "short-message-sigabrt",
            encode(0x3D, &[PacketStart { fin: true, declared: 20_000, chunk: 4074, fill: 1 }]),
        ),
        ("continuation-without-start", encode(0x0C, &[data(OpCode::Continuation, true, 10)])),
        (
            "binary-before-fin",
            encode(0x0C, &[data(OpCode::Binary, false, 10), data(OpCode::Binary, true, 10)]),
        ),
        (
            "timeout-old-100ms",
            encode(
                0x0E,
                &[
                    data(OpCode::Binary, false, 10),
                    Advance { ms: 150 },
                    Timeout,
                    data(OpCode::Continuation, true, 1),
                ],
            ),
        ),
        (
            "too-many-fragments",
            encode(
                0x00,
                &[
                    data(OpCode::Binary, false, 1),
                    data(OpCode::Continuation, false, 1),
                    data(OpCode::Continuation, false, 1),
                    data(OpCode::Continuation, false, 1),
                    data(OpCode::Continuation, true, 1),
                ],
            ),
        ),
        (
            "too-large",
            encode(0x0C, &[data(OpCode::Binary, false, 200), data(OpCode::Continuation, true, 200)]),
        ),
        ("reserved-opcode", encode(0x0C, &[Reserved { opcode: 0xB }])),
        ("raw-frames", encode(0x2C, &[Raw(raw)])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{check_seed_dir, replay_seed_dir};

    const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/seeds/reassembly");

    /// The committed seeds are the ones [`seeds`] generates (`ACIP_REGEN_SEEDS=1` rewrites them), and each
    /// round-trips through `parse` and `encode`.
    #[test]
    fn seeds_match_the_code_that_generates_them() {
        check_seed_dir(SEEDS, &seeds());
        for (name, bytes) in seeds() {
            let (cfg, ops) = parse(&bytes);
            assert_eq!(encode(cfg, &ops), bytes, "{name} round-trips");
        }
    }

    /// Every file in `corpus/seeds/reassembly` (seeds and any minimized finding added there) replays.
    #[test]
    fn replay_seed_corpus() {
        replay_seed_dir(SEEDS, seeds().len(), run);
    }

    #[test]
    fn seeds_reach_the_behaviour_they_are_named_after() {
        // Spot checks that the model path is exercised, not just parsed.
        let all = seeds();
        let (cfg, ops) = parse(&all[0].1);
        assert!(config(cfg).check_packet_length);
        assert!(ops.iter().filter(|o| matches!(o, Op::Data { .. })).count() >= 4);
        assert!(ops.contains(&Op::Ping { len: 4 }));
        let (_, ops) = parse(&all.iter().find(|s| s.0 == "raw-frames").unwrap().1);
        assert!(matches!(&ops[0], Op::Raw(b) if b.len() == 3 * 6 + 250));
    }
}
