//! Message reassembly for the `feb` dialect (ACIP-SPEC.md 6.2: "a message ends at the final fragment, and one
//! message = one ACIP packet"; RFC 6455 5.4). Frames go in with `now`; messages, pass-through control frames,
//! deadlines and typed errors come out.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Frame, OpCode, ReassemblyError, REASSEMBLY_TIMEOUT_FIXED};
use crate::codec::{Header, Limits, HEADER_LEN};

/// Reassembly limits and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblerConfig {
    /// MAX_REASSEMBLY_TIME: the longest wait for the next fragment, reset on every data fragment (2 s, the
    /// fix; [`super::REASSEMBLY_TIMEOUT_OLD`] = 100 ms reproduces the old code).
    pub timeout: Duration,
    /// Largest message ([`Limits::max_ws_message`]).
    pub max_message: usize,
    /// Most fragments per message ([`Limits::max_ws_fragments`]; FEB's queue had 4096 slots).
    pub max_fragments: usize,
    /// `feb`: a message must be exactly one ACIP packet: its first 22 bytes are a header whose length field
    /// gives the packet size, and the message must be that long. Only lengths are compared (the C WebSocket
    /// path checked neither magic nor CRC, ACIP-SPEC.md 1.4 (c)); decode the packet to check those.
    pub check_packet_length: bool,
}

impl ReassemblerConfig {
    /// The fixed `feb` receiver with the given limits.
    pub fn from_limits(limits: &Limits) -> Self {
        ReassemblerConfig {
            timeout: REASSEMBLY_TIMEOUT_FIXED,
            max_message: limits.max_ws_message,
            max_fragments: limits.max_ws_fragments,
            check_packet_length: true,
        }
    }

    /// The same with another timeout.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        ReassemblerConfig { timeout, ..self }
    }
}

impl Default for ReassemblerConfig {
    fn default() -> Self {
        ReassemblerConfig::from_limits(&Limits::default())
    }
}

/// What [`Reassembler::handle_frame`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassemblyEvent {
    /// A complete message.
    Message(Message),
    /// A control frame (PING, PONG, CLOSE), passed through even between fragments of a message (5.4).
    Control(Frame),
}

/// A reassembled message and how it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// TEXT or BINARY (the first frame's opcode).
    pub opcode: OpCode,
    /// The whole message. For a single-frame message this shares the frame's buffer (no copy).
    pub data: Bytes,
    /// Number of data frames it came in.
    pub fragments: usize,
    /// `now` of the first fragment.
    pub first_at: Instant,
    /// `now` of the last fragment (the one with FIN).
    pub last_at: Instant,
    /// Time between consecutive fragments (`fragments - 1` entries): the ~30 ms stalls of ACIP-SPEC.md 8
    /// show up here.
    pub gaps: Vec<Duration>,
}

/// A message being received.
#[derive(Debug)]
struct Partial {
    opcode: OpCode,
    buf: BytesMut,
    fragments: usize,
    first_at: Instant,
    last_at: Instant,
    gaps: Vec<Duration>,
    /// Packet size from the ACIP header's length field, once 14 bytes are in.
    packet_len: Option<usize>,
}

/// The `feb` reassembler: a sans-IO state machine over frame events.
///
/// Contract: call [`Reassembler::handle_frame`] for every frame in order with the time it arrived; arm a
/// timer for [`Reassembler::poll_timeout`] (it changes after every call) and call
/// [`Reassembler::handle_timeout`] when it fires. A frame that arrives after the deadline gets the timeout
/// error too, so a late timer cannot let a stalled message complete. Any error discards the message in
/// progress (and the frame that caused it); the next BINARY frame starts afresh.
///
/// Copies: a single-frame message is handed out without copying; a fragmented one is appended into one
/// buffer reserved from the ACIP header's length (capped at `max_message`), so each byte is copied once
/// (only when a first fragment is shorter than the 14 bytes up to the length field are those few bytes
/// moved again, by the reservation).
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblerConfig,
    partial: Option<Partial>,
}

impl Reassembler {
    /// An idle reassembler.
    pub fn new(config: ReassemblerConfig) -> Self {
        Reassembler { config, partial: None }
    }

    /// The limits it runs with.
    pub fn config(&self) -> &ReassemblerConfig {
        &self.config
    }

    /// Whether a message has started and not finished.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Bytes of the message in progress.
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.buf.len())
    }

    /// When the message in progress times out (last fragment + timeout), if one is in progress and the
    /// timeout is not so large (e.g. `Duration::MAX`, HEAD's "wait forever") that no deadline exists.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.partial.as_ref().and_then(|p| p.last_at.checked_add(self.config.timeout))
    }

    /// Expires the message in progress if `now` is at or past its deadline.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ReassemblyError> {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => Err(self.fail_timeout()),
            _ => Ok(()),
        }
    }

    fn fail_timeout(&mut self) -> ReassemblyError {
        let p = self.partial.take();
        ReassemblyError::Timeout {
            after: self.config.timeout,
            fragments: p.as_ref().map_or(0, |p| p.fragments),
            bytes: p.as_ref().map_or(0, |p| p.buf.len()),
        }
    }

    /// Handles one frame received at `now`.
    pub fn handle_frame(
        &mut self,
        frame: Frame,
        now: Instant,
    ) -> Result<Option<ReassemblyEvent>, ReassemblyError> {
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            return Err(self.fail_timeout());
        }
        match frame.opcode {
            OpCode::Text | OpCode::Binary => self.start(frame, now),
            OpCode::Continuation => self.continue_with(frame, now),
            OpCode::Close | OpCode::Ping | OpCode::Pong => Ok(Some(ReassemblyEvent::Control(frame))),
            OpCode::Reserved(v) => {
                self.partial = None;
                Err(ReassemblyError::ReservedOpcode(v))
            }
        }
    }

    fn start(&mut self, frame: Frame, now: Instant) -> Result<Option<ReassemblyEvent>, ReassemblyError> {
        if let Some(p) = self.partial.take() {
            return Err(ReassemblyError::DataFrameBeforeFin {
                opcode: frame.opcode,
                fragments: p.fragments,
                bytes: p.buf.len(),
            });
        }
        let size = frame.payload.len();
        if size > self.config.max_message {
            return Err(ReassemblyError::MessageTooLarge { size, limit: self.config.max_message });
        }
        if self.config.max_fragments == 0 {
            return Err(ReassemblyError::TooManyFragments { count: 1, limit: 0 });
        }
        if frame.fin {
            self.check_packet(&frame.payload)?;
            return Ok(Some(ReassemblyEvent::Message(Message {
                opcode: frame.opcode,
                data: frame.payload,
                fragments: 1,
                first_at: now,
                last_at: now,
                gaps: Vec::new(),
            })));
        }
        let mut p = Partial {
            opcode: frame.opcode,
            buf: BytesMut::new(),
            fragments: 1,
            first_at: now,
            last_at: now,
            gaps: Vec::new(),
            packet_len: None,
        };
        self.append(&mut p, &frame.payload);
        self.partial = Some(p);
        Ok(None)
    }

    fn continue_with(
        &mut self,
        frame: Frame,
        now: Instant,
    ) -> Result<Option<ReassemblyEvent>, ReassemblyError> {
        let Some(mut p) = self.partial.take() else {
            return Err(ReassemblyError::ContinuationWithoutStart { fin: frame.fin });
        };
        let size = p.buf.len() + frame.payload.len();
        if size > self.config.max_message {
            return Err(ReassemblyError::MessageTooLarge { size, limit: self.config.max_message });
        }
        let count = p.fragments + 1;
        if count > self.config.max_fragments {
            return Err(ReassemblyError::TooManyFragments { count, limit: self.config.max_fragments });
        }
        p.fragments = count;
        p.gaps.push(now.saturating_duration_since(p.last_at));
        p.last_at = now;
        self.append(&mut p, &frame.payload);
        if !frame.fin {
            self.partial = Some(p);
            return Ok(None);
        }
        let data = p.buf.freeze();
        self.check_packet(&data)?;
        Ok(Some(ReassemblyEvent::Message(Message {
            opcode: p.opcode,
            data,
            fragments: p.fragments,
            first_at: p.first_at,
            last_at: p.last_at,
            gaps: p.gaps,
        })))
    }

    /// Appends a fragment, reserving the whole packet once its length field is known.
    fn append(&self, p: &mut Partial, payload: &[u8]) {
        if p.packet_len.is_none() {
            let len_now = p.buf.len() + payload.len();
            let peek = if p.buf.len() >= 14 {
                Header::peek_length(&p.buf)
            } else if len_now >= 14 {
                let mut head = [0u8; 14];
                let have = p.buf.len();
                head[..have].copy_from_slice(&p.buf);
                head[have..].copy_from_slice(&payload[..14 - have]);
                Header::peek_length(&head)
            } else {
                None
            };
            if let Some(len) = peek {
                let packet = HEADER_LEN + len as usize;
                p.packet_len = Some(packet);
                let want = packet.max(len_now).min(self.config.max_message);
                p.buf.reserve(want.saturating_sub(p.buf.len()));
            }
        }
        p.buf.extend_from_slice(payload);
    }

    fn check_packet(&self, data: &[u8]) -> Result<(), ReassemblyError> {
        if !self.config.check_packet_length {
            return Ok(());
        }
        feb_message_rule(data).map(drop)
    }
}

/// `feb`'s rule, "one WebSocket message carries exactly one ACIP packet", for a whole message: `Ok` with the
/// packet's length when the message is exactly as long as the packet its header announces; otherwise why
/// not (header incomplete, message shorter or longer than the packet). Only lengths are compared (the C
/// WebSocket path checked neither magic nor CRC, ACIP-SPEC.md 1.4 (c)). The one place this rule is written:
/// the reassembler and the capture dissector both apply it.
pub fn feb_message_rule(message: &[u8]) -> Result<usize, ReassemblyError> {
    let size = message.len();
    let Some(len) = Header::peek_length(message).filter(|_| size >= HEADER_LEN) else {
        return Err(ReassemblyError::HeaderIncomplete { message: size });
    };
    let packet = HEADER_LEN + len as usize;
    match size.cmp(&packet) {
        std::cmp::Ordering::Less => Err(ReassemblyError::MessageShorterThanPacket { message: size, packet }),
        std::cmp::Ordering::Greater => {
            Err(ReassemblyError::MessageLongerThanPacket { message: size, packet })
        }
        std::cmp::Ordering::Equal => Ok(packet),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Packet, PacketType};

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    /// Each byte is copied once: the buffer is reserved for the whole packet when the header arrives (even
    /// split across fragments) and never moves while fragments are appended.
    #[test]
    fn buffer_is_reserved_from_the_header_and_never_moves() {
        let message = Packet::new(PacketType::IMAGE_FRAME, vec![7u8; 50_000]).encode();
        for first in [3usize, 13, 14, 100, 4096] {
            let mut r = Reassembler::new(ReassemblerConfig::default());
            let now = t0();
            r.handle_frame(Frame::new(OpCode::Binary, false, message[..first].to_vec()), now).unwrap();
            let mut off = first;
            let mut ptr = None;
            while off < message.len() {
                let end = (off + 4096).min(message.len());
                let fin = end == message.len();
                let p = r.partial.as_ref().unwrap();
                if p.buf.len() >= 14 {
                    assert_eq!(p.packet_len, Some(message.len()));
                    assert!(p.buf.capacity() >= message.len(), "reserved for the whole packet");
                    let here = p.buf.as_ptr();
                    assert_eq!(*ptr.get_or_insert(here), here, "buffer moved: bytes copied twice");
                }
                let out = r.handle_frame(Frame::continuation(fin, message[off..end].to_vec()), now).unwrap();
                if fin {
                    let Some(ReassemblyEvent::Message(m)) = out else { panic!("no message") };
                    assert_eq!(m.data, message);
                    assert_eq!(Some(m.data.as_ptr()), ptr);
                }
                off = end;
            }
        }
    }

    /// A header claiming a huge packet reserves no more than `max_message`.
    #[test]
    fn reservation_is_capped_at_max_message() {
        let mut header = Packet::empty(PacketType::IMAGE_FRAME).header();
        header.length = u32::MAX - 1;
        let cfg = ReassemblerConfig { max_message: 10_000, ..Default::default() };
        let mut r = Reassembler::new(cfg);
        r.handle_frame(Frame::new(OpCode::Binary, false, header.to_bytes().to_vec()), t0()).unwrap();
        let cap = r.partial.as_ref().unwrap().buf.capacity();
        assert!((22..=10_000 * 2).contains(&cap), "capacity {cap}");
    }
}
