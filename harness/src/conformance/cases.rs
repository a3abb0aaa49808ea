//! The case catalogue of `harness conformance`: every case is data (what to send, how to cut it, what the
//! spec expects per dialect and transport, and the section that says so), interpreted by one runner
//! ([`super::runner`]). Ids are Autobahn-style `group.subgroup.case`.
//!
//! Expected outcomes come from ACIP-SPEC.md (1.1-1.4 validation, 3.4 CLIENT_CAPABILITIES, 4.3-4.6
//! handshake and plaintext peers, 6.1/6.2 transports, 7.1 slots, 8 the recorded failures, 10 the dialect
//! differences) and RFC 6455 (5.2 framing, 5.4 fragmentation, 5.5 control frames).

use std::time::Duration;

use acip::codec::payloads::{ClientCapabilities, ImageFrame, ProtocolVersion};
use acip::ws::OpCode;
use acip::{Dialect, Packet, PacketType};

pub use acip::Transport;

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
    fn matches(self, d: Dialect, t: Transport) -> bool {
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

/// The exact 4096-byte FIN=1 message of the SIGABRT capture (corpus/regressions, ACIP-SPEC.md 8).
pub const SIGABRT_MESSAGE: &[u8] =
    include_bytes!("../../../corpus/regressions/sigabrt-087fa71-short-message.bin");

/// The IMAGE_FRAME of the captures: 320x240 RGB24, 230,446 bytes on the wire.
const CAPTURE_FRAME: Pkt = Pkt::Image(320, 240);

fn send(pkt: Pkt) -> Step {
    Step::Send { pkt, frag: Frag::Whole, gap: None, chop: None }
}
fn send_frag(pkt: Pkt, frag: Frag) -> Step {
    Step::Send { pkt, frag, gap: None, chop: None }
}
fn send_chop(pkt: Pkt, chop: usize) -> Step {
    Step::Send { pkt, frag: Frag::Whole, gap: None, chop: Some(chop) }
}
fn all(o: Outcome) -> Vec<(Sel, Expect)> {
    vec![(Sel::All, Expect { prefer: o, tolerate: None })]
}
fn exp(prefer: Outcome) -> Expect {
    Expect { prefer, tolerate: None }
}
fn exp_or(prefer: Outcome, tolerate: Outcome) -> Expect {
    Expect { prefer, tolerate: Some(tolerate) }
}
fn data(opcode: OpCode, fin: bool, part: Part) -> F {
    F::Data { opcode, fin, part }
}

const C1002: &[u16] = &[1002];
const C_PROTO: &[u16] = &[1002, 1008];
const C_BIG: &[u16] = &[1009, 1002];
const C1000: &[u16] = &[1000];
const C_ANY: &[u16] = &[];

/// A case with the usual defaults (both transports, plaintext hello, probe).
fn case(id: &'static str, title: &'static str, spec: &'static str) -> Case {
    Case {
        id,
        title,
        spec,
        applies: Applies::Both,
        needs_encryption: false,
        setup: Setup::Hello,
        steps: Vec::new(),
        probe: true,
        expect: all(Outcome::Usable),
    }
}

impl Case {
    fn ws(mut self) -> Self {
        self.applies = Applies::Ws;
        self
    }
    fn tcp(mut self) -> Self {
        self.applies = Applies::Tcp;
        self
    }
    fn steps(mut self, s: Vec<Step>) -> Self {
        self.steps = s;
        self
    }
    fn no_probe(mut self) -> Self {
        self.probe = false;
        self
    }
    fn setup(mut self, s: Setup) -> Self {
        self.setup = s;
        self
    }
    fn encrypting(mut self) -> Self {
        self.needs_encryption = true;
        self
    }
    fn expect(mut self, e: Vec<(Sel, Expect)>) -> Self {
        self.expect = e;
        self
    }
}

/// Every case, in id order.
pub fn catalogue() -> Vec<Case> {
    use OpCode::{Binary, Continuation as Cont, Ping as WsPing, Pong as WsPong, Text};
    let ping = Pkt::Ping;
    let feb_close_head =
        |head: Outcome| vec![(Sel::FebWs, exp(Outcome::close(C1002))), (Sel::HeadWs, exp(head))];
    let close_frame = |code: u16| F::Control { opcode: OpCode::Close, payload: code.to_be_bytes().to_vec() };
    vec![
        // 1: single-frame messages and whole packets.
        case("1.1.1", "PING in one frame (one write on TCP)", "6.1; 6.2").steps(vec![send(ping.clone())]),
        case("1.1.2", "320x240 IMAGE_FRAME (230,446 B) in one frame", "3.7; 6.2 (HEAD sends one frame)")
            .steps(vec![send(CAPTURE_FRAME)]),
        case("1.1.3", "PING in a TEXT message instead of BINARY", "6.2 (message type binary); RFC 6455 5.6")
            .ws()
            .steps(vec![Step::Frames { pkt: ping.clone(), frames: vec![data(Text, true, Part::All)] }])
            .expect(vec![(Sel::All, exp_or(Outcome::Usable, Outcome::close(&[1003, 1002, 1007])))]),
        case("1.1.4", "empty BINARY message", "6.2 (feb: one message = one packet; head: byte stream)")
            .ws()
            .steps(vec![Step::Frames { pkt: ping.clone(), frames: vec![data(Binary, true, Part::Nothing)] }])
            .expect(vec![
                (Sel::FebWs, exp_or(Outcome::close(C1002), Outcome::Usable)),
                (Sel::HeadWs, exp(Outcome::Usable)),
            ]),
        // 2: fragmentation.
        case("2.1.1", "PING in 2 fragments", "6.2; RFC 6455 5.4")
            .ws()
            .steps(vec![send_frag(ping.clone(), Frag::Count(2))]),
        case(
            "2.1.2",
            "230,446-byte IMAGE_FRAME in 57 fragments of 4096 B (old native client)",
            "6.2; 8 (old9850bc9 capture)",
        )
        .ws()
        .steps(vec![send_frag(CAPTURE_FRAME, Frag::Size(4096))]),
        case("2.1.3", "230,446-byte IMAGE_FRAME in 1,000 fragments", "6.2; RFC 6455 5.4")
            .ws()
            .steps(vec![send_frag(CAPTURE_FRAME, Frag::Count(1000))]),
        case("2.1.4", "PING in 22 fragments of 1 byte", "6.2; RFC 6455 5.4")
            .ws()
            .steps(vec![send_frag(ping.clone(), Frag::Size(1))]),
        case("2.1.5", "IMAGE_FRAME whose first fragment ends inside the ACIP header (10 B)", "1.1; 6.2")
            .ws()
            .steps(vec![Step::Frames {
                pkt: Pkt::Image(64, 48),
                frames: vec![data(Binary, false, Part::Head(10)), data(Cont, true, Part::Tail(10))],
            }]),
        case(
            "2.1.6",
            "empty first and last fragments around a PING",
            "RFC 6455 5.4 (empty fragments are legal)",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![
                data(Binary, false, Part::Nothing),
                data(Cont, false, Part::All),
                data(Cont, true, Part::Nothing),
            ],
        }]),
        case(
            "2.1.7",
            "IMAGE_FRAME in 4,097 fragments (one over FEB's 4096-slot queue)",
            "6.2 (recv queue 4096, queue full breaks reassembly)",
        )
        .ws()
        .steps(vec![send_frag(Pkt::Image(64, 48), Frag::Count(4097))])
        .expect(vec![
            (Sel::FebWs, exp_or(Outcome::close(C_BIG), Outcome::Usable)),
            (Sel::HeadWs, exp(Outcome::Usable)),
        ]),
        case("2.1.8", "5 MiB + 1 packet in 64 KiB fragments", "1.3 (MAX_PACKET_SIZE); 6.2")
            .ws()
            .steps(vec![send_frag(Pkt::Oversize, Frag::Size(65_536))])
            .no_probe()
            .expect(all(Outcome::close(C_BIG))),
        // 3: control frames.
        case("3.1.1", "WebSocket PING between the fragments of a PING packet", "RFC 6455 5.4, 5.5.2")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![
                    data(Binary, false, Part::Head(11)),
                    F::Control { opcode: WsPing, payload: b"between".to_vec() },
                    data(Cont, true, Part::Tail(11)),
                ],
            }])
            .expect(all(Outcome::UsableWsPong)),
        case("3.1.2", "unsolicited WebSocket PONG between fragments", "RFC 6455 5.4, 5.5.3").ws().steps(
            vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![
                    data(Binary, false, Part::Head(11)),
                    F::Control { opcode: WsPong, payload: b"unsolicited".to_vec() },
                    data(Cont, true, Part::Tail(11)),
                ],
            }],
        ),
        case("3.1.3", "WebSocket CLOSE between fragments, then the rest", "RFC 6455 5.4, 5.5.1")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![
                    data(Binary, false, Part::Head(11)),
                    close_frame(1000),
                    data(Cont, true, Part::Tail(11)),
                ],
            }])
            .no_probe()
            .expect(all(Outcome::close(C1000))),
        case(
            "3.1.4",
            "fragmented WebSocket PING (FIN=0)",
            "RFC 6455 5.5 (control frames must not be fragmented)",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![F::Odd { b0: 0x09, masked: true, part: Part::Head(4) }],
        }])
        .no_probe()
        .expect(all(Outcome::close(C1002))),
        case("3.1.5", "WebSocket PING with a 126-byte payload", "RFC 6455 5.5 (control payload <= 125)")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![F::Control { opcode: WsPing, payload: vec![0x55; 126] }],
            }])
            .no_probe()
            .expect(all(Outcome::close(C1002))),
        case("3.1.6", "WebSocket PING with a 125-byte payload", "RFC 6455 5.5.2")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![F::Control { opcode: WsPing, payload: vec![0x55; 125] }],
            }])
            .expect(all(Outcome::UsableWsPong)),
        // 4: invalid fragment sequences.
        case(
            "4.1.1",
            "CONTINUATION with nothing to continue",
            "1.4 (c) reassembly errors disconnect; RFC 6455 5.4",
        )
        .ws()
        .steps(vec![Step::Frames { pkt: ping.clone(), frames: vec![data(Cont, true, Part::All)] }])
        .no_probe()
        .expect(all(Outcome::close(C1002))),
        case(
            "4.1.2",
            "BINARY frame before the previous message's FIN",
            "8 (\"BINARY after previous frame that lacked FIN\"); RFC 6455 5.4",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![data(Binary, false, Part::Head(11)), data(Binary, true, Part::All)],
        }])
        .no_probe()
        .expect(all(Outcome::close(C1002))),
        case(
            "4.1.3",
            "CONTINUATION after a message that had FIN",
            "8 (\"CONTINUATION after previous frame that had FIN\")",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![data(Binary, true, Part::All), data(Cont, true, Part::All)],
        }])
        .no_probe()
        .expect(all(Outcome::close(C1002))),
        case("4.1.4", "frame with reserved opcode 0x3", "RFC 6455 5.2")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![F::Odd { b0: 0x83, masked: true, part: Part::All }],
            }])
            .no_probe()
            .expect(all(Outcome::close(C1002))),
        case(
            "4.1.5",
            "BINARY frame with RSV1 set and no extension",
            "RFC 6455 5.2; 5 (HEAD: no permessage-deflate)",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![F::Odd { b0: 0xC2, masked: true, part: Part::All }],
        }])
        .no_probe()
        .expect(all(Outcome::close(C1002))),
        case("4.1.6", "unmasked client frame", "RFC 6455 5.1")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![F::Odd { b0: 0x82, masked: false, part: Part::All }],
            }])
            .no_probe()
            .expect(all(Outcome::close(C1002))),
        // 5: message and packet boundaries.
        case("5.1.1", "message shorter than its packet (STREAM_START without 2 bytes)", "6.2; 10 row 6")
            .ws()
            .steps(vec![send(Pkt::truncated(Pkt::StreamStart, 2))])
            .no_probe()
            .expect(feb_close_head(Outcome::Silent)),
        case("5.1.2", "message longer than its packet (PING + 4 bytes of the next header)", "6.2; 10 row 6")
            .ws()
            .steps(vec![send(Pkt::trailing(ping.clone(), 4))])
            .no_probe()
            .expect(feb_close_head(Outcome::Reply(PacketType::PONG, 1))),
        case("5.1.3", "two packets in one message", "6.2; 10 row 6")
            .ws()
            .steps(vec![send(Pkt::Concat(vec![ping.clone(), ping.clone()]))])
            .expect(feb_close_head(Outcome::Usable)),
        case(
            "5.1.4",
            "one packet split across two messages (at byte 11)",
            "6.2; 10 row 6 (head accepts, feb does not)",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![data(Binary, true, Part::Head(11)), data(Binary, true, Part::Tail(11))],
        }])
        .expect(feb_close_head(Outcome::Usable)),
        case("5.1.5", "three packets across two messages (cut inside the second)", "6.2; 10 row 6")
            .ws()
            .steps(vec![Step::Frames {
                pkt: Pkt::Concat(vec![ping.clone(), ping.clone(), ping.clone()]),
                frames: vec![data(Binary, true, Part::Head(30)), data(Binary, true, Part::Tail(30))],
            }])
            .expect(feb_close_head(Outcome::Usable)),
        case("5.1.6", "10-byte message that ends inside the ACIP header", "1.1; 6.2")
            .ws()
            .steps(vec![Step::Frames { pkt: ping.clone(), frames: vec![data(Binary, true, Part::Head(10))] }])
            .no_probe()
            .expect(feb_close_head(Outcome::Silent)),
        // 6: packet validation.
        case("6.1.1", "bad magic", "1.1; 1.4 (b) TCP disconnects; 1.4 (c) WS does not check magic")
            .steps(vec![send(Pkt::bad_magic(Pkt::StreamStart))])
            .expect(vec![
                (Sel::Tcp, exp(Outcome::close(C_ANY))),
                (Sel::Ws, exp_or(Outcome::close(C1002), Outcome::Usable)),
            ]),
        case("6.1.2", "bad CRC", "1.2; 1.4 (b); 1.4 (c)")
            .steps(vec![send(Pkt::bad_crc(Pkt::StreamStart))])
            .expect(vec![
                (Sel::Tcp, exp(Outcome::close(C_ANY))),
                (Sel::Ws, exp_or(Outcome::close(C1002), Outcome::Usable)),
            ]),
        case("6.1.3", "unknown packet type 0x7777", "1.4 (b) TCP disconnects; 1.4 (c) WS drops and stays up")
            .steps(vec![send(Pkt::Unknown(0x7777))])
            .expect(vec![
                (Sel::Tcp, exp(Outcome::close(C_ANY))),
                (Sel::Ws, exp_or(Outcome::Usable, Outcome::close(&[1002, 1003, 1008]))),
            ]),
        case(
            "6.1.4",
            "CLIENT_CAPABILITIES of the other dialect's size",
            "3.4 (exact size); 1.4 (c) protocol violation",
        )
        .setup(Setup::None)
        .steps(vec![send(Pkt::CapsOtherDialect)])
        .no_probe()
        .expect(all(Outcome::close_after(C_PROTO, PacketType::ERROR_MESSAGE))),
        case("6.1.5", "CLIENT_CAPABILITIES with width 0", "3.4; 1.4 (c) disconnect_client_for_bad_data")
            .setup(Setup::None)
            .steps(vec![send(Pkt::CapsZeroWidth)])
            .no_probe()
            .expect(all(Outcome::close_after(C_PROTO, PacketType::ERROR_MESSAGE))),
        case("6.1.6", "5 MiB + 1 packet in one frame / one write", "1.3 MAX_PACKET_SIZE")
            .steps(vec![send(Pkt::Oversize)])
            .no_probe()
            .expect(vec![(Sel::Tcp, exp(Outcome::close(C_ANY))), (Sel::Ws, exp(Outcome::close(C_BIG)))]),
        case("6.1.7", "length field 0xFFFFFFFF", "1.3 (rejected)")
            .steps(vec![send(Pkt::LengthSentinel)])
            .no_probe()
            .expect(vec![(Sel::Tcp, exp(Outcome::close(C_ANY))), (Sel::Ws, exp(Outcome::close(C_BIG)))]),
        case("6.1.8", "empty payload with a non-zero CRC", "1.1 (CRC must be 0 when length is 0)")
            .steps(vec![send(Pkt::EmptyWithCrc)])
            .expect(vec![
                (Sel::Tcp, exp_or(Outcome::close(C_ANY), Outcome::Usable)),
                (Sel::Ws, exp_or(Outcome::close(C1002), Outcome::Usable)),
            ]),
        case("6.1.9", "IMAGE_FRAME of 0x0 pixels", "3.7; 1.4 (c) (frame dimensions 0 disconnect)")
            .steps(vec![send(Pkt::Image(0, 0))])
            .no_probe()
            .expect(all(Outcome::close_after(C_PROTO, PacketType::ERROR_MESSAGE))),
        // 7: the byte stream under the messages.
        case(
            "7.1.1",
            "PING + STREAM_START + 64x48 IMAGE_FRAME in 1-byte socket writes",
            "6.1 (plain records may be split)",
        )
        .steps(vec![Step::Send {
            pkt: Pkt::Concat(vec![ping.clone(), Pkt::StreamStart, Pkt::Image(64, 48)]),
            frag: Frag::PerPacket,
            gap: None,
            chop: Some(1),
        }]),
        case("7.1.2", "320x240 IMAGE_FRAME in 1,000-byte socket writes", "6.1; 6.2")
            .steps(vec![send_chop(CAPTURE_FRAME, 1000)]),
        case("7.1.3", "WebSocket frames of a PING in 1-byte socket writes", "6.2; RFC 6455 5.2")
            .ws()
            .steps(vec![Step::Send { pkt: ping.clone(), frag: Frag::Count(3), gap: None, chop: Some(1) }]),
        case(
            "7.1.4",
            "100 PINGs coalesced in one write (WebSocket: one message each)",
            "6.1; 6.2 (coalesced packets)",
        )
        .steps(vec![send_frag(Pkt::Concat(vec![Pkt::Ping; 100]), Frag::PerPacket)]),
        // 8: handshake and encryption.
        case(
            "8.1.1",
            "plaintext client on an encrypting server",
            "4.6 (any server accepts CAPS first); 4.4 (WS peer may ignore 1101/1102)",
        )
        .encrypting()
        .steps(vec![send(Pkt::StreamStart)]),
        case("8.1.2", "full crypto handshake, encrypted CAPS and PING", "4.3; 4.4; 4.5")
            .encrypting()
            .setup(Setup::Handshake)
            .steps(vec![send(Pkt::StreamStart)]),
        case(
            "8.1.3",
            "TCP handshake out of order: KEY_EXCHANGE_RESP right after PROTOCOL_VERSION",
            "4.3 (steps 1-6 in order)",
        )
        .tcp()
        .encrypting()
        .setup(Setup::None)
        .steps(vec![
            send(Pkt::ProtocolVersion(1)),
            Step::Await(PacketType::PROTOCOL_VERSION),
            send(Pkt::KexRespZero),
        ])
        .no_probe()
        .expect(all(Outcome::close(C_ANY))),
        case("8.1.4", "WebSocket handshake out of order: AUTH_RESPONSE instead of KEY_EXCHANGE_RESP", "4.4")
            .ws()
            .encrypting()
            .setup(Setup::None)
            .steps(vec![Step::Await(PacketType::CRYPTO_KEY_EXCHANGE_INIT), send(Pkt::AuthResponseZero)])
            .no_probe()
            .expect(all(Outcome::close(C_PROTO))),
        case("8.1.5", "PROTOCOL_VERSION asking for crypto mode NONE", "3.1 (the server drops mode 0)")
            .tcp()
            .encrypting()
            .setup(Setup::None)
            .steps(vec![send(Pkt::ProtocolVersion(0))])
            .no_probe()
            .expect(all(Outcome::close(C_ANY))),
        case(
            "8.1.6",
            "CRYPTO_NO_ENCRYPTION during the handshake",
            "2 (1109: the server answers AUTH_FAILED and drops)",
        )
        .ws()
        .encrypting()
        .setup(Setup::None)
        .steps(vec![Step::Await(PacketType::CRYPTO_KEY_EXCHANGE_INIT), send(Pkt::NoEncryption)])
        .no_probe()
        .expect(vec![(
            Sel::All,
            exp_or(Outcome::close_after(C_PROTO, PacketType::CRYPTO_AUTH_FAILED), Outcome::close(C_ANY)),
        )]),
        case(
            "8.1.7",
            "plaintext PING after an encrypted handshake",
            "4.5 (TCP enforces encryption; WS accepts mixed)",
        )
        .encrypting()
        .setup(Setup::Handshake)
        .steps(vec![send(Pkt::plain(ping.clone()))])
        .expect(vec![(Sel::Tcp, exp(Outcome::close(C_ANY))), (Sel::Ws, exp(Outcome::Usable))]),
        // 9: timing and resources.
        case(
            "9.1.1",
            "PING in 3 fragments, 0.75 x the reassembly timeout apart",
            "6.2 (MAX_REASSEMBLY_TIME reset per fragment)",
        )
        .ws()
        .steps(vec![Step::Send {
            pkt: ping.clone(),
            frag: Frag::Count(3),
            gap: Some(Dur::Reassembly(0.75)),
            chop: None,
        }]),
        case(
            "9.1.2",
            "PING in 2 fragments, 1.5 x the reassembly timeout apart",
            "6.2; 10 row 6 (head: no timeout)",
        )
        .ws()
        .steps(vec![Step::Send {
            pkt: ping.clone(),
            frag: Frag::Count(2),
            gap: Some(Dur::Reassembly(1.5)),
            chop: None,
        }])
        .expect(vec![(Sel::FebWs, exp(Outcome::close(C1002))), (Sel::HeadWs, exp(Outcome::Usable))]),
        case(
            "9.1.3",
            "client sends nothing for the idle duration",
            "1.4 (b) (TCP peer silent ~1 s is dropped); 6.2 (WS keepalive 30 s)",
        )
        .steps(vec![Step::Wait(Dur::Idle)])
        .expect(vec![
            (Sel::Tcp, exp_or(Outcome::close(C_ANY), Outcome::Usable)),
            (Sel::Ws, exp(Outcome::Any)),
        ]),
        case(
            "9.1.4",
            "a peer that stops reading: no unbounded growth, others still served",
            "6.2 (queues bounded); 8 (flow control)",
        )
        .steps(vec![Step::Flood])
        .expect(all(Outcome::Bounded)),
        case("9.1.5", "100 pipelined PINGs all answered within 1.5 s", "7.4 (server PONGs every PING)")
            .steps(vec![Step::Pipeline { count: 100, within: Duration::from_millis(1500) }]),
        case(
            "9.1.6",
            "40 sequential connections (more than the 32 slots)",
            "7.1 (slot exhaustion bug fixed in 4dce9818)",
        )
        .steps(vec![Step::Reconnect { count: 40 }]),
        case("9.1.7", "WebSocket CLOSE after the first fragment of a message", "7.5; RFC 6455 5.5.1")
            .ws()
            .steps(vec![Step::Frames {
                pkt: CAPTURE_FRAME,
                frames: vec![data(Binary, false, Part::Head(4096)), close_frame(1000)],
            }])
            .no_probe()
            .expect(all(Outcome::close(C1000))),
        case("9.1.8", "TCP FIN in the middle of a packet", "7.5 (EOF mid-packet ends the session)")
            .tcp()
            .steps(vec![send(Pkt::truncated(CAPTURE_FRAME, 100_000)), Step::ShutdownWrite])
            .no_probe()
            .expect(all(Outcome::close(C_ANY))),
        case(
            "9.1.9",
            "TCP FIN in the middle of a fragmented message, no close frame",
            "7.5; RFC 6455 7.1.5 (1006)",
        )
        .ws()
        .steps(vec![
            Step::Frames { pkt: CAPTURE_FRAME, frames: vec![data(Binary, false, Part::Head(4096))] },
            Step::ShutdownWrite,
        ])
        .no_probe()
        .expect(all(Outcome::close(C_ANY))),
        // 10: regressions from the captures.
        case(
            "10.1.1",
            "the exact 4096-byte FIN=1 message of the SIGABRT capture",
            "8 (SIGABRT on fragment 2); 6.2; 10 row 6",
        )
        .ws()
        .steps(vec![Step::Wire { name: "sigabrt-087fa71-short-message.bin", bytes: SIGABRT_MESSAGE }])
        .no_probe()
        .expect(feb_close_head(Outcome::Silent)),
        case(
            "10.1.2",
            "the SIGABRT message, then the CONTINUATION that aborted libwebsockets",
            "8; RFC 6455 5.4",
        )
        .ws()
        .steps(vec![
            Step::Wire { name: "sigabrt-087fa71-short-message.bin", bytes: SIGABRT_MESSAGE },
            Step::Frames { pkt: Pkt::Image(64, 48), frames: vec![data(Cont, false, Part::All)] },
        ])
        .no_probe()
        .expect(vec![(Sel::FebWs, exp(Outcome::close(C1002))), (Sel::HeadWs, exp(Outcome::Any))]),
    ]
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
    fn catalogue_is_well_formed() {
        let cases = catalogue();
        assert!(cases.len() >= 40, "{} cases", cases.len());
        let mut ids: Vec<&str> = cases.iter().map(|c| c.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), cases.len(), "duplicate ids");
        for c in &cases {
            assert!(!c.spec.is_empty() && !c.title.is_empty(), "{}", c.id);
            for t in [Transport::WebSocket, Transport::Tcp] {
                if c.applies.includes(t) {
                    for d in [Dialect::Feb, Dialect::Head] {
                        // Every applicable target has a row.
                        assert!(c.expect.iter().any(|(s, _)| s.matches(d, t)), "{} {t} {d}", c.id);
                    }
                }
            }
        }
    }

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
