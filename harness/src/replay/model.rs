//! The one result type of a dissection ([`Dissection`]): serialised as is for `--json`, rendered as text for
//! people by [`Dissection::render`] (STYLE.md rule 24). Times are seconds since the first frame (`t_s`) or
//! milliseconds (`*_ms`), so a golden comparison can strip every field with those suffixes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use acip::Dialect;
use serde::Serialize;

use crate::capture::{CaptureFormat, Dir, FlowId};

/// Everything `harness replay FILE` finds in a capture.
#[derive(Debug, Clone, Serialize)]
pub struct Dissection {
    /// File name (no directory).
    pub file: String,
    pub format: CaptureFormat,
    pub frames: u64,
    pub tcp_segments: u64,
    /// Frames not used, by reason ("not TCP", "link type ... not supported", ...).
    pub skipped_frames: BTreeMap<String, u64>,
    /// Why reading stopped before the end of the file, if it did.
    pub file_note: Option<String>,
    pub duration_s: f64,
    pub stall_threshold_ms: f64,
    pub flows: Vec<FlowReport>,
    /// Present with `--timeline`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineEntry>,
}

/// What carries ACIP in a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Back-to-back packets on the TCP stream (ACIP-SPEC.md 6.1).
    Tcp,
    /// HTTP Upgrade, then RFC 6455 frames (6.2).
    #[serde(rename = "websocket")]
    WebSocket,
    /// Neither direction looked like ACIP.
    Unknown,
}

/// One TCP connection.
#[derive(Debug, Clone, Serialize)]
pub struct FlowReport {
    pub id: FlowId,
    pub client: String,
    pub server: String,
    /// false: the capture started mid-connection; client and server were guessed from the ports.
    pub syn_seen: bool,
    pub transport: Transport,
    pub dialect: Dialect,
    /// Why this dialect: the evidence, "--dialect", or "default".
    pub dialect_reason: String,
    /// Whether ENCRYPTED (1200) packets were seen.
    pub encrypted: bool,
    pub start_s: f64,
    pub end_s: f64,
    /// How the connection ended: FIN/RST per side, or still open when the capture stopped.
    pub ending: String,
    /// The first packets of the session in order ("c>s CLIENT_CAPABILITIES(5000) 160 B"): the handshake.
    pub opening: Vec<String>,
    /// WebSocket flows: the opening handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WsHandshake>,
    pub client_to_server: DirReport,
    pub server_to_client: DirReport,
    pub anomalies: Vec<Anomaly>,
    /// Anomalies past [`super::dissect::DissectConfig::max_anomalies_per_flow`], counted only.
    pub anomalies_dropped: u64,
    /// Whole packets in order with their capture time, kept only with
    /// [`super::dissect::DissectConfig::collect_packets`] (the input of a live replay).
    #[serde(skip)]
    pub script: Vec<ScriptPacket>,
}

/// A whole packet of a flow, as captured.
#[derive(Debug, Clone)]
pub struct ScriptPacket {
    /// Capture time (since the Unix epoch).
    pub at: std::time::Duration,
    pub dir: Dir,
    pub packet: acip::Packet,
}

/// One direction of a flow.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DirReport {
    pub tcp: TcpStats,
    /// HTTP request or status line (WebSocket flows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws: Option<WsStats>,
    /// Whole ACIP packets decoded.
    pub packets: u64,
    /// Their bytes, headers included.
    pub packet_bytes: u64,
    /// Per type ("IMAGE_FRAME(3001)").
    pub by_type: BTreeMap<String, TypeStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<EncryptedStats>,
    /// Time from the first to the last fragment of each message (WS frames, or TCP segments of a packet).
    pub assembly: Option<AssemblyStats>,
    /// Histogram of the time between consecutive fragments of one message.
    pub fragment_gaps: BTreeMap<String, u64>,
    /// Fragment gaps over the stall threshold.
    pub stalls: u64,
    /// Resynchronisations after damage on a byte stream, and the bytes they skipped.
    pub resyncs: u64,
    pub skipped_bytes: u64,
    /// Packets recovered from interleaved writers.
    pub interleaved: u64,
    /// Packets per header client ID (ACIP-SPEC.md 1.1: the sender's ID, 0 when unset).
    pub client_ids: BTreeMap<u32, u64>,
    /// The decoder's state at the end: "clean", or why it stopped / what was left over.
    pub end_state: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TcpStats {
    pub segments: u64,
    /// Stream bytes delivered in order.
    pub bytes: u64,
    pub retransmitted_bytes: u64,
    /// Retransmissions whose bytes differ from the first copy.
    pub retransmit_conflicts: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub syn: u64,
    pub fin: u64,
    pub rst: u64,
    /// Zero-window advertisements sent by this side.
    pub zero_windows: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WsStats {
    pub frames: u64,
    pub by_opcode: BTreeMap<String, u64>,
    pub masked: u64,
    pub unmasked: u64,
    /// Complete data messages.
    pub messages: u64,
    pub message_bytes: u64,
    /// Histogram: fragments per message -> messages.
    pub fragments_per_message: BTreeMap<u64, u64>,
    /// Lengths of the reassembled messages in order (for the tshark cross-check), up to 10 000.
    #[serde(skip_serializing)]
    pub message_lengths: Vec<u64>,
    /// Close frame (code, reason) if this side sent one.
    pub close: Option<CloseInfo>,
    /// Frames with RSV bits set (outside a negotiated permessage-deflate message start).
    pub rsv_frames: u64,
    /// Frames whose payload length was not in its shortest encoding (RFC 6455 5.2).
    pub non_minimal_lengths: u64,
    /// Control frames over 125 bytes or without FIN (RFC 6455 5.5).
    pub bad_control_frames: u64,
    /// Frames this side sent after its own CLOSE (RFC 6455 5.5.1).
    pub frames_after_close: u64,
    /// permessage-deflate messages inflated (RFC 7692).
    pub compressed_messages: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CloseInfo {
    pub code: Option<u16>,
    pub reason: String,
    /// Whether the CLOSE payload is valid (RFC 6455 5.5.1, 7.4: code, length, UTF-8).
    pub valid: bool,
}

/// The WebSocket opening handshake as both sides wrote it (RFC 6455 4; RFC 7692 for extensions).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WsHandshake {
    /// `Sec-WebSocket-Protocol` of the request (ACIP-SPEC.md 6.2: `acip`).
    pub subprotocols_requested: Vec<String>,
    /// `Sec-WebSocket-Protocol` of the 101 response.
    pub subprotocol_accepted: Option<String>,
    pub key: Option<String>,
    pub accept: Option<String>,
    /// Whether `Sec-WebSocket-Accept` is the one derived from the key (`None`: one of them missing).
    pub accept_valid: Option<bool>,
    pub extensions_offered: Vec<String>,
    pub extensions_accepted: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeStats {
    pub count: u64,
    pub bytes: u64,
    pub min_len: u64,
    pub max_len: u64,
}

/// ENCRYPTED (1200) packets of one direction.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EncryptedStats {
    pub packets: u64,
    pub bytes: u64,
    /// Nonce counter (ciphertext bytes 16..24, LE in `feb`, BE in `head`) of the first and last packet.
    pub first_counter: u64,
    pub last_counter: u64,
    /// Packets whose counter is not the previous one plus 1.
    pub counter_jumps: u64,
    /// Packets whose counter is not above the previous one (each also a `nonce_order` anomaly).
    pub counter_backwards: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssemblyStats {
    /// Messages made of more than one fragment.
    pub multi_fragment: u64,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

/// What is wrong, where.
#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    pub t_s: f64,
    /// Frame number in the capture (as Wireshark numbers them).
    pub frame: u64,
    pub dir: Dir,
    /// Offset of the packet, frame or message in the byte stream of its layer, where known: the TCP stream
    /// for raw TCP, the WebSocket frame stream (which starts after the HTTP head) for frames and `feb`
    /// messages, the data-frame payload stream for `head` packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub kind: AnomalyKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    CrcMismatch,
    BadMagic,
    ContinuationWithoutStart,
    DataFrameBeforeFin,
    MessageShorterThanPacket,
    MessageLongerThanPacket,
    Oversize,
    UnknownType,
    InvalidPayload,
    TruncatedStream,
    /// WebSocket close frame with a code other than 1000/1001.
    Close,
    /// 1006: the TCP connection ended without a close frame.
    AbnormalClose,
    Stall,
    ZeroWindow,
    TcpGap,
    WsFrame,
    WsMasking,
    ReassemblyTimeout,
    HttpUpgrade,
    NotAcip,
    ServerFull,
    /// One side runs a handshake the other does not (e.g. a key exchange offered to a plaintext client).
    HandshakeMismatch,
    /// Packets of two or more writers interleaved on one socket (headers back to back, payloads after),
    /// recovered.
    Interleaved,
    /// An ENCRYPTED packet's nonce counter is not above the previous one's.
    NonceOrder,
    /// A TCP retransmission carries bytes that differ from the first copy.
    RetransmitConflict,
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub t_s: f64,
    pub frame: u64,
    pub flow: FlowId,
    pub dir: Dir,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum What {
    Tcp { flag: String },
    Http { line: String },
    Ws { opcode: String, fin: bool, masked: bool, len: u64 },
    Acip { packet_type: String, len: u64, crc: CrcStatus, client_id: u32, info: String },
    Anomaly { kind: AnomalyKind, detail: String },
}

/// The CRC-32C verdict of a packet (ACIP-SPEC.md 1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrcStatus {
    Ok,
    Bad,
    /// Not checked: the packet was not whole.
    Unchecked,
}

impl Dissection {
    /// The human rendering: per-flow summary, then the timeline if it was asked for.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} ({:?}): {} frames, {} TCP segments, {} flows, {:.3} s",
            self.file,
            self.format,
            self.frames,
            self.tcp_segments,
            self.flows.len(),
            self.duration_s
        );
        for (reason, n) in &self.skipped_frames {
            let _ = writeln!(s, "  skipped {n} frames: {reason}");
        }
        if let Some(note) = &self.file_note {
            let _ = writeln!(s, "  file: {note}");
        }
        for f in &self.flows {
            f.render_into(&mut s);
        }
        if !self.timeline.is_empty() {
            let _ = writeln!(s, "\ntimeline:");
            for e in &self.timeline {
                let what = match &e.what {
                    What::Tcp { flag } => format!("TCP {flag}"),
                    What::Http { line } => format!("HTTP {line}"),
                    What::Ws { opcode, fin, masked, len } => format!(
                        "WS {opcode} fin={} {}len={len}",
                        u8::from(*fin),
                        if *masked { "masked " } else { "" }
                    ),
                    What::Acip { packet_type, len, crc, info, .. } => {
                        format!("ACIP {packet_type} len={len} crc={crc:?} {info}")
                    }
                    What::Anomaly { kind, detail } => format!("!! {kind:?}: {detail}"),
                };
                let _ = writeln!(
                    s,
                    "{:>10.6} #{:<6} flow {} {} {}",
                    e.t_s,
                    e.frame,
                    e.flow.0,
                    e.dir.arrow(),
                    what
                );
            }
        }
        s
    }
}

impl FlowReport {
    fn render_into(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\nflow {}: {} -> {} {:?} dialect={} ({}){}{} {:.3}..{:.3} s, {}",
            self.id.0,
            self.client,
            self.server,
            self.transport,
            self.dialect,
            self.dialect_reason,
            if self.encrypted { " encrypted" } else { "" },
            if self.syn_seen { "" } else { " (no SYN: started mid-connection)" },
            self.start_s,
            self.end_s,
            self.ending
        );
        if !self.opening.is_empty() {
            let _ = writeln!(s, "  opening: {}", self.opening.join(", "));
        }
        if let Some(h) = &self.websocket {
            let _ = writeln!(
                s,
                "  websocket: subprotocol requested {:?} accepted {:?}; accept key {}; extensions offered {:?} accepted {:?}",
                h.subprotocols_requested,
                h.subprotocol_accepted,
                match h.accept_valid {
                    Some(true) => "valid",
                    Some(false) => "WRONG",
                    None => "not checked (missing)",
                },
                h.extensions_offered,
                h.extensions_accepted
            );
        }
        for (dir, d) in
            [(Dir::ClientToServer, &self.client_to_server), (Dir::ServerToClient, &self.server_to_client)]
        {
            let t = &d.tcp;
            let _ = writeln!(
                s,
                "  {}: tcp {} segs {} B (retx {} B, {} gaps {} B, syn {} fin {} rst {} zero-win {}); {} packets {} B; end: {}",
                dir.arrow(),
                t.segments,
                t.bytes,
                t.retransmitted_bytes,
                t.gaps,
                t.gap_bytes,
                t.syn,
                t.fin,
                t.rst,
                t.zero_windows,
                d.packets,
                d.packet_bytes,
                d.end_state
            );
            if let Some(h) = &d.http {
                let _ = writeln!(s, "    http: {h}");
            }
            if let Some(w) = &d.ws {
                let ops: Vec<String> = w.by_opcode.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let frags: Vec<String> =
                    w.fragments_per_message.iter().map(|(k, v)| format!("{k} frag x{v}")).collect();
                let _ = writeln!(
                    s,
                    "    ws: {} frames ({}; masked {}, unmasked {}), {} messages {} B ({}){}",
                    w.frames,
                    ops.join(", "),
                    w.masked,
                    w.unmasked,
                    w.messages,
                    w.message_bytes,
                    frags.join(", "),
                    match &w.close {
                        Some(c) => format!(
                            ", close {:?} {:?}{}",
                            c.code,
                            c.reason,
                            if c.valid { "" } else { " (invalid)" }
                        ),
                        None => String::new(),
                    }
                );
                let odd = [
                    (w.compressed_messages, "compressed messages inflated"),
                    (w.rsv_frames, "frames with stray RSV bits"),
                    (w.non_minimal_lengths, "non-minimal lengths"),
                    (w.bad_control_frames, "malformed control frames"),
                    (w.frames_after_close, "frames after CLOSE"),
                ];
                let odd: Vec<String> =
                    odd.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
                if !odd.is_empty() {
                    let _ = writeln!(s, "    ws details: {}", odd.join(", "));
                }
            }
            for (ty, st) in &d.by_type {
                let _ = writeln!(
                    s,
                    "    {ty:<32} x{:<6} {:>10} B (len {}..{})",
                    st.count, st.bytes, st.min_len, st.max_len
                );
            }
            if let Some(e) = &d.encrypted {
                let _ = writeln!(
                    s,
                    "    encrypted: {} packets {} B, nonce counter {}..{} ({} jumps)",
                    e.packets, e.bytes, e.first_counter, e.last_counter, e.counter_jumps
                );
            }
            if d.resyncs > 0 || d.interleaved > 0 {
                let _ = writeln!(
                    s,
                    "    damage: {} resynchronisations skipped {} B; {} packets recovered from interleaved writers",
                    d.resyncs, d.skipped_bytes, d.interleaved
                );
            }
            if let Some(a) = &d.assembly {
                let _ = writeln!(
                    s,
                    "    assembly of {} multi-fragment messages: min {:.3} ms, median {:.3} ms, max {:.3} ms",
                    a.multi_fragment, a.min_ms, a.median_ms, a.max_ms
                );
            }
            if !d.fragment_gaps.is_empty() {
                let h: Vec<String> = d.fragment_gaps.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                let _ = writeln!(s, "    fragment gaps: {} (stalls {})", h.join(", "), d.stalls);
            }
        }
        if !self.anomalies.is_empty() {
            let _ = writeln!(s, "  anomalies:");
            for a in &self.anomalies {
                let _ = writeln!(
                    s,
                    "    {:>10.6} #{} {}{} {:?}: {}",
                    a.t_s,
                    a.frame,
                    a.dir.arrow(),
                    a.offset.map(|o| format!(" @{o}")).unwrap_or_default(),
                    a.kind,
                    a.detail
                );
            }
            if self.anomalies_dropped > 0 {
                let _ = writeln!(s, "    ... and {} more", self.anomalies_dropped);
            }
        }
    }
}
