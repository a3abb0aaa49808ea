//! The case language of `harness conformance`: every case is data (what to send, how to cut it, what the
//! spec expects per dialect and transport, and the section that says so), interpreted by one runner
//! ([`super::runner`]); the cases themselves are in [`super::catalogue`]. Ids are Autobahn-style
//! `group.subgroup.case`.
//!
//! Expected outcomes come from ACIP-SPEC.md (1.1-1.4 validation, 3.4 CLIENT_CAPABILITIES, 4.3-4.6
//! handshake and plaintext peers, 6.1/6.2 transports, 7.1 slots, 8 the recorded failures, 10 the dialect
//! differences) and RFC 6455 (5.2 framing, 5.4 fragmentation, 5.5 control frames).

use std::time::Duration;

use acip::codec::payloads::{ClientCapabilities, ImageFrame, ProtocolVersion};
use acip::ws::OpCode;
use acip::{Dialect, Packet, PacketType};

pub use acip::Transport;

pub use super::catalogue::SIGABRT_MESSAGE;

/// Which transports a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    Both,
    Ws,
    Tcp,
}

impl Applies {
    pub fn includes(self, t: Transport) -> bool {
        matches!(
            (self, t),
            (Applies::Both, _) | (Applies::Ws, Transport::WebSocket) | (Applies::Tcp, Transport::Tcp)
        )
    }
}

/// Target-dependent durations, resolved against [`Params`] when the case runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dur {
    Ms(u64),
    /// A multiple of the target's reassembly timeout (`--reassembly-timeout`).
    Reassembly(f64),
    /// The idle duration (`--idle`).
    Idle,
}

/// Knobs of a run that describe the target rather than the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The target's `feb` reassembly timeout (2 s in the real FEB server, ACIP-SPEC.md 6.2).
    pub reassembly_timeout: Duration,
    /// How long the idle case stays silent (5 s by default).
    pub idle: Duration,
    /// How long to wait for an answer or a close after the last step.
    pub settle: Duration,
    /// How long the stop-reading case floods before it calls the result inconclusive.
    pub flood: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            reassembly_timeout: Duration::from_secs(2),
            idle: Duration::from_secs(5),
            settle: Duration::from_secs(2),
            flood: Duration::from_secs(5),
        }
    }
}

impl Dur {
    pub fn resolve(self, p: &Params) -> Duration {
        match self {
            Dur::Ms(ms) => Duration::from_millis(ms),
            Dur::Reassembly(f) => p.reassembly_timeout.mul_f64(f),
            Dur::Idle => p.idle,
        }
    }

    fn describe(self) -> String {
        match self {
            Dur::Ms(ms) => format!("{ms} ms"),
            Dur::Reassembly(f) => format!("{f} x the reassembly timeout"),
            Dur::Idle => "the idle duration".into(),
        }
    }
}

/// What a step sends: a packet, or bytes broken on purpose.
#[derive(Debug, Clone, PartialEq)]
pub enum Pkt {
    Ping,
    /// Valid CLIENT_CAPABILITIES for the dialect (80x24, 10 fps).
    Caps,
    /// CLIENT_CAPABILITIES in the other dialect's size (168 B to `feb`, 160 B to `head`, 3.4).
    CapsOtherDialect,
    /// CLIENT_CAPABILITIES with width 0 (outside 1..4096, 1.4 (c)).
    CapsZeroWidth,
    StreamStart,
    /// An RGB24 IMAGE_FRAME of this many pixels (a gradient, not the test pattern).
    Image(u16, u16),
    /// A packet of a type number section 2 does not define, empty payload.
    Unknown(u16),
    /// The packet with its magic's last byte changed.
    BadMagic(Box<Pkt>),
    /// The packet with its CRC field changed.
    BadCrc(Box<Pkt>),
    /// IMAGE_FRAME whose payload is MAX_PACKET_SIZE + 1 (5 MiB + 1) bytes, with a correct header.
    Oversize,
    /// A header whose length field is 0xFFFFFFFF, nothing after it.
    LengthSentinel,
    /// PING (empty payload) whose CRC field is not 0.
    EmptyWithCrc,
    /// Several packets back to back.
    Concat(Vec<Pkt>),
    /// The packet without its last `n` bytes.
    Truncated(Box<Pkt>, usize),
    /// The packet followed by the first `n` (at most 8) bytes of another header's magic.
    Trailing(Box<Pkt>, usize),
    /// Never encrypted, even after an encrypted handshake.
    Plain(Box<Pkt>),
    /// PROTOCOL_VERSION asking for this crypto mode (3.1).
    ProtocolVersion(u8),
    /// CRYPTO_KEY_EXCHANGE_RESP with an all-zero 32-byte key.
    KexRespZero,
    /// CRYPTO_AUTH_RESPONSE, 64 zero bytes.
    AuthResponseZero,
    /// CRYPTO_NO_ENCRYPTION (0 B).
    NoEncryption,
}

/// MAX_PACKET_SIZE (ACIP-SPEC.md 1.3).
pub const MAX_PACKET: usize = 5 * 1024 * 1024;

impl Pkt {
    /// Boxes for the wrapping variants.
    pub fn bad_magic(p: Pkt) -> Pkt {
        Pkt::BadMagic(Box::new(p))
    }
    pub fn bad_crc(p: Pkt) -> Pkt {
        Pkt::BadCrc(Box::new(p))
    }
    pub fn truncated(p: Pkt, n: usize) -> Pkt {
        Pkt::Truncated(Box::new(p), n)
    }
    pub fn trailing(p: Pkt, n: usize) -> Pkt {
        Pkt::Trailing(Box::new(p), n)
    }
    pub fn plain(p: Pkt) -> Pkt {
        Pkt::Plain(Box::new(p))
    }

    /// The packet, when this is one well-formed packet (only those are encrypted after a handshake).
    pub fn packet(&self, dialect: Dialect) -> Option<Packet> {
        use PacketType as T;
        Some(match self {
            Pkt::Ping => Packet::empty(T::PING),
            Pkt::Caps => ClientCapabilities::new(dialect, 80, 24, 10).to_packet(),
            Pkt::CapsOtherDialect => {
                let other = match dialect {
                    Dialect::Feb => Dialect::Head,
                    Dialect::Head => Dialect::Feb,
                };
                ClientCapabilities::new(other, 80, 24, 10).to_packet()
            }
            Pkt::CapsZeroWidth => ClientCapabilities::new(dialect, 0, 24, 10).to_packet(),
            Pkt::StreamStart => Packet::new(T::STREAM_START, vec![0, 0, 0, 1]),
            Pkt::Image(w, h) => {
                let pixels: Vec<u8> =
                    (0..usize::from(*w) * usize::from(*h) * 3).map(|i| (i % 251) as u8).collect();
                ImageFrame::rgb24(u32::from(*w), u32::from(*h), pixels).to_packet()
            }
            Pkt::Unknown(t) => Packet::empty(T::from_u16(*t)),
            Pkt::ProtocolVersion(mode) => ProtocolVersion::new(*mode).to_packet(),
            Pkt::KexRespZero => Packet::new(T::CRYPTO_KEY_EXCHANGE_RESP, vec![0u8; 32]),
            Pkt::AuthResponseZero => Packet::new(T::CRYPTO_AUTH_RESPONSE, vec![0u8; 64]),
            Pkt::NoEncryption => Packet::empty(T::CRYPTO_NO_ENCRYPTION),
            _ => return None,
        })
    }

    /// The wire bytes.
    pub fn bytes(&self, dialect: Dialect) -> Vec<u8> {
        if let Some(p) = self.packet(dialect) {
            return p.encode();
        }
        match self {
            Pkt::BadMagic(p) => {
                let mut b = p.bytes(dialect);
                b[7] ^= 0xFF;
                b
            }
            Pkt::BadCrc(p) => {
                let mut b = p.bytes(dialect);
                b[14] ^= 0xFF;
                b
            }
            Pkt::Oversize => {
                let mut b = Packet::new(PacketType::IMAGE_FRAME, vec![0u8; MAX_PACKET + 1]).encode();
                // Valid-looking frame header (320x240 RGB24) in front of the oversize pixel data.
                b[22..26].copy_from_slice(&320u32.to_be_bytes());
                b[26..30].copy_from_slice(&240u32.to_be_bytes());
                b
            }
            Pkt::LengthSentinel => {
                let mut h = Packet::empty(PacketType::IMAGE_FRAME).header();
                h.length = u32::MAX;
                h.to_bytes().to_vec()
            }
            Pkt::EmptyWithCrc => {
                let mut h = Packet::empty(PacketType::PING).header();
                h.crc32 = 0xDEAD_BEEF;
                h.to_bytes().to_vec()
            }
            Pkt::Concat(ps) => ps.iter().flat_map(|p| p.bytes(dialect)).collect(),
            Pkt::Truncated(p, n) => {
                let mut b = p.bytes(dialect);
                b.truncate(b.len().saturating_sub(*n));
                b
            }
            Pkt::Trailing(p, n) => {
                let mut b = p.bytes(dialect);
                b.extend_from_slice(&acip::codec::MAGIC.to_be_bytes()[..(*n).min(8)]);
                b
            }
            Pkt::Plain(p) => p.bytes(dialect),
            _ => unreachable!("every other variant is a packet"),
        }
    }

    /// Well-formed PINGs in it: the PONGs a conforming server owes.
    pub fn pings(&self) -> usize {
        match self {
            Pkt::Ping => 1,
            Pkt::Concat(ps) => ps.iter().map(Pkt::pings).sum(),
            Pkt::Plain(p) => p.pings(),
            _ => 0,
        }
    }

    /// Whether it may be wrapped in ENCRYPTED after a handshake.
    pub fn encryptable(&self) -> bool {
        !matches!(self, Pkt::Plain(_))
            && !matches!(self, Pkt::ProtocolVersion(_) | Pkt::KexRespZero)
            && !matches!(self, Pkt::AuthResponseZero | Pkt::NoEncryption)
    }

    /// A short human description.
    pub fn describe(&self, dialect: Dialect) -> String {
        let len = self.bytes_len(dialect);
        match self {
            Pkt::Ping => "PING (22 B)".into(),
            Pkt::Caps => format!("CLIENT_CAPABILITIES ({len} B)"),
            Pkt::CapsOtherDialect => format!("CLIENT_CAPABILITIES of the other dialect's size ({len} B)"),
            Pkt::CapsZeroWidth => format!("CLIENT_CAPABILITIES with width 0 ({len} B)"),
            Pkt::StreamStart => "STREAM_START (26 B)".into(),
            Pkt::Image(w, h) => format!("IMAGE_FRAME {w}x{h} ({len} B)"),
            Pkt::Unknown(t) => format!("unknown type {t} (0x{t:04X}, 22 B)"),
            Pkt::BadMagic(p) => format!("{} with a bad magic", p.describe(dialect)),
            Pkt::BadCrc(p) => format!("{} with a bad CRC", p.describe(dialect)),
            Pkt::Oversize => format!("IMAGE_FRAME of 5 MiB + 1 payload ({len} B)"),
            Pkt::LengthSentinel => "header with length 0xFFFFFFFF (22 B)".into(),
            Pkt::EmptyWithCrc => "PING with CRC 0xDEADBEEF on an empty payload (22 B)".into(),
            Pkt::Concat(ps) => {
                let parts: Vec<String> = ps.iter().map(|p| p.describe(dialect)).collect();
                if parts.len() > 4 && parts.iter().all(|p| *p == parts[0]) {
                    format!("{} x {}", parts.len(), parts[0])
                } else {
                    parts.join(" + ")
                }
            }
            Pkt::Truncated(p, n) => format!("{} without its last {n} B ({len} B)", p.describe(dialect)),
            Pkt::Trailing(p, n) => {
                format!("{} followed by {n} bytes of another header ({len} B)", p.describe(dialect))
            }
            Pkt::Plain(p) => format!("plaintext {}", p.describe(dialect)),
            Pkt::ProtocolVersion(m) => format!("PROTOCOL_VERSION mode {m} (38 B)"),
            Pkt::KexRespZero => "CRYPTO_KEY_EXCHANGE_RESP, zero key (54 B)".into(),
            Pkt::AuthResponseZero => "CRYPTO_AUTH_RESPONSE, zeros (86 B)".into(),
            Pkt::NoEncryption => "CRYPTO_NO_ENCRYPTION (22 B)".into(),
        }
    }

    fn bytes_len(&self, dialect: Dialect) -> usize {
        match self {
            Pkt::Oversize => 22 + MAX_PACKET + 1,
            Pkt::Concat(ps) => ps.iter().map(|p| p.bytes_len(dialect)).sum(),
            Pkt::Truncated(p, n) => p.bytes_len(dialect).saturating_sub(*n),
            Pkt::Trailing(p, n) => p.bytes_len(dialect) + (*n).min(8),
            Pkt::Plain(p) | Pkt::BadMagic(p) | Pkt::BadCrc(p) => p.bytes_len(dialect),
            Pkt::Image(w, h) => 22 + 24 + usize::from(*w) * usize::from(*h) * 3,
            other => other.bytes(dialect).len(),
        }
    }
}

/// How a WebSocket message is cut into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    /// One frame.
    Whole,
    /// Frames of this many payload bytes (the last may be shorter).
    Size(usize),
    /// Exactly this many frames, sizes as even as possible.
    Count(usize),
    /// Each packet of a [`Pkt::Concat`] in its own single-frame message.
    PerPacket,
}

/// A slice of the step's packet bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    All,
    /// The first n bytes.
    Head(usize),
    /// From byte n to the end.
    Tail(usize),
    /// Bytes a..b.
    Mid(usize, usize),
    Nothing,
}

impl Part {
    pub fn slice(self, b: &[u8]) -> &[u8] {
        let c = |n: usize| n.min(b.len());
        match self {
            Part::All => b,
            Part::Head(n) => &b[..c(n)],
            Part::Tail(n) => &b[c(n)..],
            Part::Mid(a, e) => &b[c(a)..c(e).max(c(a))],
            Part::Nothing => &[],
        }
    }
}

/// One hand-made WebSocket frame.
#[derive(Debug, Clone, PartialEq)]
pub enum F {
    /// A data frame carrying part of the step's packet.
    Data { opcode: OpCode, fin: bool, part: Part },
    /// A control frame (always FIN) with a literal payload.
    Control { opcode: OpCode, payload: Vec<u8> },
    /// Any first header byte (FIN, RSV, opcode) with part of the packet; `masked: false` breaks RFC 6455 5.1.
    Odd { b0: u8, masked: bool, part: Part },
}

/// What the runner does, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// One packet (or broken bytes). WebSocket: one message cut by `frag`, with `gap` between frames;
    /// TCP: the bytes on the stream. `chop`: write at most this many bytes per socket write.
    Send { pkt: Pkt, frag: Frag, gap: Option<Dur>, chop: Option<usize> },
    /// Hand-made WebSocket frames over `pkt`'s bytes (WebSocket only).
    Frames { pkt: Pkt, frames: Vec<F> },
    /// Raw bytes as they were on the wire (a corpus file: already framed and masked).
    Wire { name: &'static str, bytes: &'static [u8] },
    /// Send nothing for a while.
    Wait(Dur),
    /// Wait (up to the settle time) for the server to send a packet of this type.
    Await(PacketType),
    /// WebSocket: a CLOSE frame with this code; TCP: shut down the write side.
    Close(u16),
    /// TCP FIN on the write side without a close frame.
    ShutdownWrite,
    /// `count` PINGs in one write (WebSocket: one message each); every PONG must arrive within `within`.
    Pipeline { count: usize, within: Duration },
    /// A second connection that stops reading while it floods PINGs: the server must apply back-pressure
    /// or close it, not buffer without bound.
    Flood,
    /// `count` sequential connections, each CLIENT_CAPABILITIES, PING, PONG, close.
    Reconnect { count: usize },
}

/// How the connection is set up before the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Nothing (the steps open the session themselves).
    None,
    /// A plaintext session: CLIENT_CAPABILITIES first (4.6; on WebSocket the server's handshake opener is
    /// ignored, 4.4).
    Hello,
    /// The full crypto handshake (4.3 TCP, 4.4 WebSocket), then encrypted CLIENT_CAPABILITIES.
    Handshake,
}

/// An outcome the spec allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The connection stays up and every PING sent (the probe included) is answered.
    Usable,
    /// As [`Outcome::Usable`], and WebSocket PINGs are answered with PONG frames.
    UsableWsPong,
    /// At least `n` packets of this type come back (the server may close afterwards).
    Reply(PacketType, usize),
    /// The server ends the connection. WebSocket: a close frame with a code in `codes` (empty: any code).
    /// `after`: a packet the server should send before closing (ERROR_MESSAGE, AUTH_FAILED).
    Close { codes: &'static [u16], after: Option<PacketType> },
    /// Neither an answer nor a close within the settle time (a partial packet waits for its rest).
    Silent,
    /// Back-pressure or a close instead of unbounded buffering (with [`Step::Flood`]).
    Bounded,
    /// Anything but a hang: recorded as INFORMATIONAL.
    Any,
}

impl Outcome {
    pub const fn close(codes: &'static [u16]) -> Outcome {
        Outcome::Close { codes, after: None }
    }
    pub const fn close_after(codes: &'static [u16], after: PacketType) -> Outcome {
        Outcome::Close { codes, after: Some(after) }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Usable => f.write_str("stays usable (PING answered)"),
            Outcome::UsableWsPong => f.write_str("WebSocket PONG, and stays usable"),
            Outcome::Reply(t, n) => write!(f, "{n} x {} back", t.name()),
            Outcome::Close { codes, after } => {
                f.write_str("closed")?;
                if !codes.is_empty() {
                    let c: Vec<String> = codes.iter().map(u16::to_string).collect();
                    write!(f, " (WebSocket code {})", c.join(" or "))?;
                }
                if let Some(t) = after {
                    write!(f, " after {}", t.name())?;
                }
                Ok(())
            }
            Outcome::Silent => f.write_str("no answer and no close (waits for the rest)"),
            Outcome::Bounded => f.write_str("back-pressure or close, no unbounded buffering"),
            Outcome::Any => f.write_str("anything but a hang (informational)"),
        }
    }
}

/// The preferred outcome and, optionally, one the spec tolerates (graded NON-STRICT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub prefer: Outcome,
    pub tolerate: Option<Outcome>,
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.prefer)?;
        if let Some(t) = &self.tolerate {
            write!(f, "; tolerated: {t}")?;
        }
        Ok(())
    }
}

/// Which targets an expectation row is for (the first matching row wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sel {
    All,
    Ws,
    Tcp,
    FebWs,
    HeadWs,
}

impl Sel {
    pub(crate) fn matches(self, d: Dialect, t: Transport) -> bool {
        match self {
            Sel::All => true,
            Sel::Ws => t == Transport::WebSocket,
            Sel::Tcp => t == Transport::Tcp,
            Sel::FebWs => t == Transport::WebSocket && d == Dialect::Feb,
            Sel::HeadWs => t == Transport::WebSocket && d == Dialect::Head,
        }
    }
}

/// One case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: &'static str,
    pub title: &'static str,
    /// The spec sections the expectation comes from.
    pub spec: &'static str,
    pub applies: Applies,
    /// Needs a server that runs the crypto handshake (`--encrypting-server`).
    pub needs_encryption: bool,
    pub setup: Setup,
    pub steps: Vec<Step>,
    /// Send a PING after the steps and expect its PONG (when the expectation is about usability).
    pub probe: bool,
    pub expect: Vec<(Sel, Expect)>,
}

impl Case {
    /// The expectation for a target.
    pub fn expect_for(&self, d: Dialect, t: Transport) -> Expect {
        self.expect
            .iter()
            .find(|(s, _)| s.matches(d, t))
            .map(|(_, e)| e.clone())
            .unwrap_or(Expect { prefer: Outcome::Any, tolerate: None })
    }

    /// The group id (`2.1` of `2.1.3`).
    pub fn group(&self) -> &'static str {
        self.id.rsplit_once('.').map_or(self.id, |(g, _)| g)
    }

    /// What the steps send, in words.
    pub fn describe_steps(&self, d: Dialect, t: Transport, p: &Params) -> String {
        let mut parts = Vec::new();
        match self.setup {
            Setup::None => {}
            Setup::Hello => parts.push(format!("plaintext {}", Pkt::Caps.describe(d))),
            Setup::Handshake => parts.push("crypto handshake, then encrypted CLIENT_CAPABILITIES".into()),
        }
        for s in &self.steps {
            parts.push(describe_step(s, d, t, p));
        }
        if self.probe {
            parts.push("probe PING".into());
        }
        parts.join("; ")
    }
}

fn describe_step(s: &Step, d: Dialect, t: Transport, p: &Params) -> String {
    match s {
        Step::Send { pkt, frag, gap, chop } => {
            let mut x = pkt.describe(d);
            if t == Transport::WebSocket {
                x.push_str(&match frag {
                    Frag::Whole => " in one frame".to_string(),
                    Frag::Size(n) => format!(" in frames of {n} B"),
                    Frag::Count(n) => format!(" in {n} frames"),
                    Frag::PerPacket => ", one message per packet".to_string(),
                });
            }
            if let Some(g) = gap {
                x.push_str(&format!(", {} ms between frames", g.resolve(p).as_millis()));
            }
            if let Some(c) = chop {
                x.push_str(&format!(", {c}-byte socket writes"));
            }
            x
        }
        Step::Frames { pkt, frames } => {
            let fs: Vec<String> = frames
                .iter()
                .map(|f| match f {
                    F::Data { opcode, fin, part } => {
                        format!("{opcode} fin={} {}", u8::from(*fin), describe_part(*part))
                    }
                    F::Control { opcode, payload } => format!("{opcode} ({} B)", payload.len()),
                    F::Odd { b0, masked, part } => {
                        format!(
                            "first byte 0x{b0:02X}{} {}",
                            if *masked { "" } else { " unmasked" },
                            describe_part(*part)
                        )
                    }
                })
                .collect();
            format!("{} as frames [{}]", pkt.describe(d), fs.join(", "))
        }
        Step::Wire { name, bytes } => format!("{} wire bytes of {name}", bytes.len()),
        Step::Wait(w) => format!("nothing for {} ms ({})", w.resolve(p).as_millis(), w.describe()),
        Step::Await(pt) => format!("wait for {}", pt.name()),
        Step::Close(code) if t == Transport::WebSocket => format!("CLOSE {code}"),
        Step::Close(_) | Step::ShutdownWrite => "TCP FIN (shutdown of the write side)".into(),
        Step::Pipeline { count, within } => {
            format!("{count} PINGs in one write, all PONGs within {} ms", within.as_millis())
        }
        Step::Flood => format!(
            "second connection stops reading and floods PINGs (and WebSocket PINGs) for up to {} ms",
            p.flood.as_millis()
        ),
        Step::Reconnect { count } => format!("{count} sequential connections (CAPS, PING, PONG, close)"),
    }
}

fn describe_part(p: Part) -> String {
    match p {
        Part::All => "all".into(),
        Part::Head(n) => format!("bytes 0..{n}"),
        Part::Tail(n) => format!("bytes {n}.."),
        Part::Mid(a, b) => format!("bytes {a}..{b}"),
        Part::Nothing => "empty".into(),
    }
}

/// Whether `id` is selected by `pattern`: comma-separated ids or prefixes (`2`, `2.1`, `2.1.3`, `2.*`).
pub fn selected(id: &str, pattern: Option<&str>) -> bool {
    let Some(pattern) = pattern else { return true };
    pattern.split(',').map(str::trim).filter(|t| !t.is_empty()).any(|t| {
        let t = t.trim_end_matches('*').trim_end_matches('.');
        t.is_empty() || id == t || id.starts_with(&format!("{t}."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_and_parts() {
        assert_eq!(Pkt::Ping.bytes(Dialect::Feb).len(), 22);
        assert_eq!(Pkt::Caps.bytes(Dialect::Feb).len(), 22 + 160);
        assert_eq!(Pkt::CapsOtherDialect.bytes(Dialect::Feb).len(), 22 + 168);
        assert_eq!(Pkt::Image(320, 240).bytes(Dialect::Head).len(), 230_446);
        assert_eq!(Pkt::Oversize.bytes(Dialect::Feb).len(), 22 + MAX_PACKET + 1);
        assert_eq!(Pkt::truncated(Pkt::StreamStart, 2).bytes(Dialect::Feb).len(), 24);
        assert_eq!(Pkt::Concat(vec![Pkt::Ping; 3]).pings(), 3);
        assert_eq!(Part::Mid(2, 5).slice(b"abcdefg"), b"cde");
        assert_eq!(Part::Tail(10).slice(b"abc"), b"");
        // The corpus message: one masked BINARY frame, FIN=1, 4096-byte payload.
        assert_eq!(SIGABRT_MESSAGE.len(), 4104);
        assert_eq!(SIGABRT_MESSAGE[0], 0x82);
        for (d, t, n) in [(Dialect::Feb, Transport::WebSocket, 22), (Dialect::Feb, Transport::Tcp, 22)] {
            assert_eq!(Pkt::Ping.describe(d).contains("22"), n == 22, "{t}");
        }
    }

    #[test]
    fn selection_patterns() {
        assert!(selected("2.1.3", None));
        assert!(selected("2.1.3", Some("2")));
        assert!(selected("2.1.3", Some("2.1")));
        assert!(selected("2.1.3", Some("1.1.1, 2.1.3")));
        assert!(selected("2.1.3", Some("2.*")));
        assert!(!selected("2.1.3", Some("2.1.30")));
        assert!(!selected("10.1.1", Some("1")));
        assert!(selected("10.1.1", Some("*")));
    }
}
