//! Dissecting a capture: TCP streams (from [`crate::capture`]) into ACIP over raw TCP (ACIP-SPEC.md 6.1) or
//! over WebSocket (6.2), with the `acip` decoders doing all packet and frame parsing.
//!
//! Per direction a small state machine sniffs the first bytes: the ACIP magic (raw TCP), a `SERVER_FULL`
//! line followed by raw TCP, `GET` / `HTTP/1.1 101` (WebSocket after the HTTP head), or something else. Then:
//! - raw TCP: `acip::resync::ResyncDecoder`, which never gives up: after a bad magic, an impossible length
//!   or a CRC mismatch it reports exactly which bytes it skipped and goes on from the next valid packet;
//!   packets of two writers interleaved on one socket are recognised and all recovered.
//! - WebSocket: `acip::ws::FrameDecoder` and `acip::ws::Reassembler` for messages; in `feb` every message is
//!   decoded as exactly one packet (so a short or long message is flagged and the next message is still
//!   decoded), in `head` the data frames feed a `ResyncDecoder` (10, row 6).
//!
//! The dialect is chosen per flow from evidence (CLIENT_CAPABILITIES 160 vs 168 bytes; WebSocket messages that
//! split or coalesce packets; the byte order of the first nonce counter), `feb` by default. When WebSocket
//! evidence says `head` after a flow was decoded as `feb`, the capture is dissected a second time with the
//! dialect fixed for that flow: message framing cannot be changed halfway.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use acip::codec::{CodecError, Header, Payload, HEADER_LEN, MAGIC};
use acip::resync::{Item, Located, ResyncDecoder};
use acip::ws::{
    FrameDecoder, FrameDecoderConfig, OpCode, Reassembler, ReassemblerConfig, ReassemblyError,
    ReassemblyEvent, REASSEMBLY_TIMEOUT_FIXED,
};
use acip::{Dialect, Limits, Packet, PacketType};

mod describe;
mod websocket;

use describe::{assembly, codec_kind, describe, gap_histogram};

use super::model::*;
use crate::capture::{
    decode_tcp, CaptureReader, Dir, FlowId, LinkError, ReadError, StreamEvent, TcpReassembler,
    TcpReassemblerConfig,
};

/// Named limits and options of a dissection.
#[derive(Debug, Clone)]
pub struct DissectConfig {
    /// `--dialect`: forces the dialect of every flow.
    pub dialect: Option<Dialect>,
    /// A gap between two fragments of one message above this is a stall (`--stall-threshold`, 20 ms).
    pub stall_threshold: Duration,
    /// Keep the timeline (`--timeline`).
    pub timeline: bool,
    /// Packet, frame and message limits of the decoders. `max_ascii_text` is lowered to 16 MiB so a
    /// hostile capture cannot make ASCII_FRAME decompression allocate 256 MiB per packet.
    pub limits: Limits,
    pub tcp: TcpReassemblerConfig,
    /// Anomalies stored per flow; the rest are counted.
    pub max_anomalies_per_flow: usize,
    /// Longest HTTP head (request or response) accepted before the WebSocket frames.
    pub max_http_head: usize,
    /// Packets listed in a flow's `opening`.
    pub max_opening: usize,
    /// Keep every whole packet in [`FlowReport::script`] (for `--against`).
    pub collect_packets: bool,
}

impl Default for DissectConfig {
    fn default() -> Self {
        DissectConfig {
            dialect: None,
            stall_threshold: Duration::from_millis(20),
            timeline: false,
            limits: Limits { max_ascii_text: 16 * 1024 * 1024, ..Limits::default() },
            tcp: TcpReassemblerConfig::default(),
            max_anomalies_per_flow: 256,
            max_http_head: 16 * 1024,
            max_opening: 12,
            collect_packets: false,
        }
    }
}

/// Bytes kept from the start of the packet in progress: its header, and enough after it to recognise a second
/// header where the payload should be (two writers interleaving their packets on one socket).
const HEAD_KEEP: usize = 2 * HEADER_LEN;
/// Messages remembered per direction for the tshark cross-check.
const MAX_MESSAGE_LENGTHS: usize = 10_000;
/// Reassembly timeout used for `head` flows, where the receiver had none (any finite value avoids overflow).
const HEAD_NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Dissects a whole capture held in memory.
pub fn dissect(file: &str, data: &[u8], config: &DissectConfig) -> Result<Dissection, ReadError> {
    let first = run(file, data, config, &BTreeMap::new())?;
    if config.dialect.is_some() {
        return Ok(first.dissection);
    }
    // Flows whose WebSocket framing turned out to be `head` are decoded again with that dialect fixed.
    let redo: BTreeMap<FlowId, (Dialect, String)> = first.redo;
    if redo.is_empty() {
        return Ok(first.dissection);
    }
    Ok(run(file, data, config, &redo)?.dissection)
}

struct RunResult {
    dissection: Dissection,
    redo: BTreeMap<FlowId, (Dialect, String)>,
}

fn run(
    file: &str,
    data: &[u8],
    config: &DissectConfig,
    fixed: &BTreeMap<FlowId, (Dialect, String)>,
) -> Result<RunResult, ReadError> {
    let mut reader = CaptureReader::new(data)?;
    let format = reader.format();
    let mut tcp = TcpReassembler::new(config.tcp);
    let mut ctx =
        Ctx { config, first_ts: None, base: Instant::now(), timeline: Vec::new(), flows: Vec::new(), fixed };
    let mut frames = 0u64;
    let mut segments = 0u64;
    let mut skipped: BTreeMap<String, u64> = BTreeMap::new();
    let mut events = Vec::new();
    let (mut last_ts, mut last_frame) = (Duration::ZERO, 0u64);
    for frame in reader.by_ref() {
        frames += 1;
        if ctx.first_ts.is_none() {
            ctx.first_ts = Some(frame.ts);
        }
        last_ts = last_ts.max(frame.ts);
        last_frame = frame.number;
        match decode_tcp(&frame) {
            Ok(seg) => {
                segments += 1;
                tcp.handle_segment(&seg, frame.ts, frame.number, &mut events);
            }
            Err(e) => {
                let reason = match e {
                    LinkError::Malformed(_) => "malformed IP/TCP headers".to_string(),
                    other => other.to_string(),
                };
                *skipped.entry(reason).or_default() += 1;
            }
        }
        for ev in events.drain(..) {
            ctx.handle_event(ev);
        }
    }
    tcp.finish(last_ts, last_frame, &mut events);
    for ev in events.drain(..) {
        ctx.handle_event(ev);
    }
    if tcp.dropped_segments > 0 {
        skipped.insert(format!("over {} flows", config.tcp.max_flows), tcp.dropped_segments);
    }
    let mut redo = BTreeMap::new();
    let mut flows = Vec::with_capacity(ctx.flows.len());
    let flow_states = std::mem::take(&mut ctx.flows);
    for f in flow_states {
        if let Some(r) = f.redo() {
            redo.insert(f.id, r);
        }
        flows.push(f.finish(&mut ctx));
    }
    let mut timeline = std::mem::take(&mut ctx.timeline);
    timeline.sort_by(|a, b| a.t_s.total_cmp(&b.t_s).then(a.frame.cmp(&b.frame)));
    let first = ctx.first_ts.unwrap_or_default();
    Ok(RunResult {
        dissection: Dissection {
            file: file.to_string(),
            format,
            frames,
            tcp_segments: segments,
            skipped_frames: skipped,
            file_note: reader.end_note().map(str::to_string),
            duration_s: last_ts.saturating_sub(first).as_secs_f64(),
            stall_threshold_ms: config.stall_threshold.as_secs_f64() * 1e3,
            flows,
            timeline,
        },
        redo,
    })
}

/// State shared by all flows of one run.
struct Ctx<'c> {
    config: &'c DissectConfig,
    first_ts: Option<Duration>,
    /// Anchor for the `now: Instant` the `acip` reassembler wants: capture time maps to `base + (ts - first)`.
    base: Instant,
    timeline: Vec<TimelineEntry>,
    flows: Vec<FlowState>,
    fixed: &'c BTreeMap<FlowId, (Dialect, String)>,
}

impl Ctx<'_> {
    fn t(&self, ts: Duration) -> f64 {
        ts.saturating_sub(self.first_ts.unwrap_or_default()).as_secs_f64()
    }

    fn instant(&self, ts: Duration) -> Instant {
        // Capped so hostile timestamps cannot overflow `Instant` (here or in the reassembler's deadline).
        const MAX_SPAN: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        let d = ts.saturating_sub(self.first_ts.unwrap_or_default()).min(MAX_SPAN);
        self.base.checked_add(d).unwrap_or(self.base)
    }

    fn handle_event(&mut self, ev: StreamEvent<'_>) {
        match ev {
            StreamEvent::Open { flow, client, server, syn_seen } => {
                let (dialect, reason, locked) = match (self.config.dialect, self.fixed.get(&flow)) {
                    (Some(d), _) => (d, "--dialect".to_string(), true),
                    (None, Some((d, r))) => (*d, r.clone(), true),
                    (None, None) => (Dialect::Feb, "default (no evidence)".to_string(), false),
                };
                self.flows.push(FlowState::new(flow, client, server, syn_seen, dialect, reason, locked));
            }
            StreamEvent::Data { flow, dir, ts, frame, offset, data } => {
                self.with_flow(flow, |f, ctx| f.handle_data(ctx, dir, ts, frame, offset, data));
            }
            StreamEvent::Gap { flow, dir, ts, frame, offset, len, reason } => {
                self.with_flow(flow, |f, ctx| {
                    f.touch_frame(ts, frame);
                    let d = &mut f.dirs[dir.index()];
                    d.report.tcp.gaps += 1;
                    d.report.tcp.gap_bytes += len;
                    let why = match reason {
                        crate::capture::tcp::GapReason::NotCaptured => "not captured (snaplen)",
                        crate::capture::tcp::GapReason::Missing => "missing from the capture",
                    };
                    // Raw TCP resynchronises after the gap; a WebSocket frame stream has no way to find
                    // the next frame boundary, so it stops.
                    let then = if let Decoder::Raw(raw) = &mut d.decoder {
                        raw.stream.handle_gap(len);
                        raw.track = PacketTrack::default();
                        "; the packet it cuts is lost and decoding resumes at the next valid packet"
                    } else if d.stop(format!("TCP gap of {len} bytes at offset {offset}")) {
                        "; dissection of this direction stops"
                    } else {
                        ""
                    };
                    let detail = format!("{len} bytes at stream offset {offset} {why}{then}");
                    f.anomaly(ctx, ts, frame, dir, Some(offset), AnomalyKind::TcpGap, detail);
                });
            }
            StreamEvent::Retransmit { flow, dir, len, conflict, ts, frame } => {
                self.with_flow(flow, |f, ctx| {
                    let tcp = &mut f.dirs[dir.index()].report.tcp;
                    tcp.retransmitted_bytes += len;
                    if let Some(at) = conflict {
                        tcp.retransmit_conflicts += 1;
                        let detail = format!(
                            "a {len}-byte retransmission carries different bytes than were first sent \
                             (from stream offset {at}); the first copy was dissected"
                        );
                        f.anomaly(ctx, ts, frame, dir, Some(at), AnomalyKind::RetransmitConflict, detail);
                    }
                });
            }
            StreamEvent::Syn { flow, dir, ts, frame } => {
                self.with_flow(flow, |f, ctx| {
                    f.touch_frame(ts, frame);
                    f.dirs[dir.index()].report.tcp.syn += 1;
                    ctx.push(ts, frame, f.id, dir, What::Tcp { flag: "SYN".into() });
                });
            }
            StreamEvent::Fin { flow, dir, ts, frame } => {
                self.with_flow(flow, |f, ctx| {
                    f.touch_frame(ts, frame);
                    f.dirs[dir.index()].report.tcp.fin += 1;
                    f.closed.get_or_insert((dir, "FIN"));
                    ctx.push(ts, frame, f.id, dir, What::Tcp { flag: "FIN".into() });
                });
            }
            StreamEvent::Rst { flow, dir, ts, frame } => {
                self.with_flow(flow, |f, ctx| {
                    f.touch_frame(ts, frame);
                    f.dirs[dir.index()].report.tcp.rst += 1;
                    f.closed.get_or_insert((dir, "RST"));
                    ctx.push(ts, frame, f.id, dir, What::Tcp { flag: "RST".into() });
                });
            }
            StreamEvent::ZeroWindow { flow, dir, ts, frame, first } => {
                self.with_flow(flow, |f, ctx| {
                    f.touch_frame(ts, frame);
                    f.dirs[dir.index()].report.tcp.zero_windows += 1;
                    // One anomaly per episode (window open -> zero); every advertisement is counted.
                    if first {
                        let detail = format!("{} advertised a zero receive window", side(dir));
                        f.anomaly(ctx, ts, frame, dir, None, AnomalyKind::ZeroWindow, detail);
                    }
                });
            }
        }
    }

    fn with_flow(&mut self, id: FlowId, f: impl FnOnce(&mut FlowState, &mut Ctx<'_>)) {
        // Flows are pushed in id order, so the id is the index. Taken out so the closure can use `self`.
        let Some(slot) = self.flows.get_mut(id.0 as usize) else { return };
        let mut flow = std::mem::replace(slot, FlowState::placeholder());
        f(&mut flow, self);
        self.flows[id.0 as usize] = flow;
    }

    fn push(&mut self, ts: Duration, frame: u64, flow: FlowId, dir: Dir, what: What) {
        if self.config.timeline {
            let t_s = self.t(ts);
            self.timeline.push(TimelineEntry { t_s, frame, flow, dir, what });
        }
    }
}

fn side(dir: Dir) -> &'static str {
    match dir {
        Dir::ClientToServer => "the client",
        Dir::ServerToClient => "the server",
    }
}

/// Where a packet or message came from, for reports.
#[derive(Debug, Clone, Copy)]
struct At {
    ts: Duration,
    frame: u64,
    offset: u64,
}

/// The fragments a packet (raw TCP: segments) or message (WebSocket: frames) arrived in.
#[derive(Debug, Default)]
struct Fragments {
    count: u64,
    first: Option<Duration>,
    last: Duration,
    gaps: Vec<Duration>,
}

impl Fragments {
    fn add(&mut self, ts: Duration) {
        if self.first.is_some() {
            self.gaps.push(ts.saturating_sub(self.last));
        } else {
            self.first = Some(ts);
        }
        self.count += 1;
        self.last = ts;
    }
}

/// Which decoder a direction is in.
enum Decoder {
    /// Waiting for enough bytes to tell what the stream is.
    Sniff(Vec<u8>),
    /// The server's `SERVER_FULL: ...\n` text (ACIP-SPEC.md 6.1), then raw ACIP.
    ServerFull(Vec<u8>),
    /// An HTTP request or response head, then WebSocket frames.
    Http(Vec<u8>),
    Raw(Box<RawDecoder>),
    Ws(Box<WsDecoder>),
    /// Not decoding any more (error, gap, not ACIP); bytes are only counted.
    Stopped(String),
    /// Taken out while it is being fed (so the feeding code can borrow the flow).
    Taken,
}

struct RawDecoder {
    stream: ResyncDecoder,
    track: PacketTrack,
}

/// Follows the packet being received by a `ResyncDecoder`: where it started, its first header bytes, and the
/// fragments (TCP segments or WebSocket frames) it came in.
#[derive(Default)]
struct PacketTrack {
    at: Option<At>,
    head: Vec<u8>,
    frags: Fragments,
}

struct WsDecoder {
    frames: FrameDecoder,
    reassembler: Reassembler,
    /// The message in progress started with RSV1 under a negotiated permessage-deflate.
    msg_compressed: bool,
    /// permessage-deflate state of this direction (created at its first compressed message).
    inflater: Option<flate2::Decompress>,
    /// This side sent a CLOSE.
    close_seen: bool,
    /// `head` only: the byte stream of all data frames.
    stream: Option<ResyncDecoder>,
    track: PacketTrack,
    /// Frames and offset of the message in progress.
    msg_at: Option<At>,
    /// `feb`: the previous message was shorter than its packet (if the next one does not start with the magic,
    /// the sender was splitting packets across messages: `head`).
    prev_short: bool,
}

struct DirState {
    decoder: Decoder,
    report: DirReport,
    gaps: Vec<Duration>,
    assembly: Vec<Duration>,
    last_counter: Option<u64>,
    /// The last thing decoded was skipped damage: (offset, length).
    tail_skip: Option<(u64, u64)>,
}

impl DirState {
    fn new() -> Self {
        DirState {
            decoder: Decoder::Sniff(Vec::new()),
            report: DirReport::default(),
            gaps: Vec::new(),
            assembly: Vec::new(),
            last_counter: None,
            tail_skip: None,
        }
    }

    /// Stops decoding; returns whether it was decoding something.
    fn stop(&mut self, why: String) -> bool {
        let was = !matches!(self.decoder, Decoder::Stopped(_) | Decoder::Sniff(_));
        if !matches!(self.decoder, Decoder::Stopped(_)) {
            self.decoder = Decoder::Stopped(why);
        }
        was
    }

    /// Takes the decoder out to feed it.
    fn take(&mut self) -> Decoder {
        std::mem::replace(&mut self.decoder, Decoder::Taken)
    }

    /// Puts a fed decoder back, unless feeding stopped the direction meanwhile.
    fn put(&mut self, decoder: Decoder) {
        if matches!(self.decoder, Decoder::Taken) {
            self.decoder = decoder;
        }
    }
}

struct FlowState {
    id: FlowId,
    client: SocketAddr,
    server: SocketAddr,
    syn_seen: bool,
    dialect: Dialect,
    dialect_reason: String,
    /// Dialect fixed by `--dialect` or by a previous run.
    locked: bool,
    /// Strength of the evidence behind `dialect` (0 none, 1 nonce order, 2 WebSocket framing, 3 CAPS size).
    evidence: u8,
    /// The WebSocket framing of this flow was decoded as `feb` but evidence says `head`.
    ws_head_evidence: Option<String>,
    transport: Transport,
    dirs: [DirState; 2],
    anomalies: Vec<Anomaly>,
    anomalies_dropped: u64,
    opening: Vec<String>,
    encrypted: bool,
    start: Option<Duration>,
    end: Duration,
    /// Last frame number that touched this flow (where end-of-flow anomalies are reported).
    last_frame: u64,
    /// The client's first packet, and a key exchange the server started (ACIP-SPEC.md 4.4, 4.6).
    client_first: Option<PacketType>,
    server_kex: Option<(At, PacketType)>,
    /// The first FIN or RST.
    closed: Option<(Dir, &'static str)>,
    script: Vec<ScriptPacket>,
    /// The WebSocket opening handshake, once an upgrade request or response was seen.
    ws_handshake: Option<WsHandshake>,
    /// permessage-deflate negotiated: (client_no_context_takeover, server_no_context_takeover).
    deflate: Option<(bool, bool)>,
}

impl FlowState {
    fn new(
        id: FlowId,
        client: SocketAddr,
        server: SocketAddr,
        syn_seen: bool,
        dialect: Dialect,
        dialect_reason: String,
        locked: bool,
    ) -> Self {
        FlowState {
            id,
            client,
            server,
            syn_seen,
            dialect,
            dialect_reason,
            locked,
            evidence: 0,
            ws_head_evidence: None,
            transport: Transport::Unknown,
            dirs: [DirState::new(), DirState::new()],
            anomalies: Vec::new(),
            anomalies_dropped: 0,
            opening: Vec::new(),
            encrypted: false,
            start: None,
            end: Duration::ZERO,
            last_frame: 0,
            client_first: None,
            server_kex: None,
            closed: None,
            script: Vec::new(),
            ws_handshake: None,
            deflate: None,
        }
    }

    fn placeholder() -> Self {
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        FlowState::new(FlowId(u32::MAX), any, any, false, Dialect::Feb, String::new(), true)
    }

    fn touch(&mut self, ts: Duration) {
        if self.start.is_none() {
            self.start = Some(ts);
        }
        self.end = self.end.max(ts);
    }

    fn touch_frame(&mut self, ts: Duration, frame: u64) {
        self.touch(ts);
        self.last_frame = self.last_frame.max(frame);
    }

    #[allow(clippy::too_many_arguments)] // the location of an anomaly, kept flat
    fn anomaly(
        &mut self,
        ctx: &mut Ctx<'_>,
        ts: Duration,
        frame: u64,
        dir: Dir,
        offset: Option<u64>,
        kind: AnomalyKind,
        detail: String,
    ) {
        ctx.push(ts, frame, self.id, dir, What::Anomaly { kind, detail: detail.clone() });
        if self.anomalies.len() >= ctx.config.max_anomalies_per_flow {
            self.anomalies_dropped += 1;
            return;
        }
        self.anomalies.push(Anomaly { t_s: ctx.t(ts), frame, dir, offset, kind, detail });
    }

    /// Records dialect evidence of a given strength (stronger evidence wins; `--dialect` always wins).
    fn evidence(&mut self, dialect: Dialect, strength: u8, reason: String) {
        if self.locked || strength <= self.evidence {
            return;
        }
        self.evidence = strength;
        self.dialect = dialect;
        self.dialect_reason = reason;
    }

    /// Whether this flow must be decoded again with its dialect fixed.
    fn redo(&self) -> Option<(Dialect, String)> {
        if self.locked || self.dialect != Dialect::Head || self.transport != Transport::WebSocket {
            return None;
        }
        self.ws_head_evidence.as_ref().map(|r| (Dialect::Head, r.clone()))
    }

    fn handle_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: Dir,
        ts: Duration,
        frame: u64,
        offset: u64,
        data: Cow<'_, [u8]>,
    ) {
        self.touch_frame(ts, frame);
        {
            let tcp = &mut self.dirs[dir.index()].report.tcp;
            tcp.segments += 1;
            tcp.bytes += data.len() as u64;
        }
        let mut input: Vec<u8>;
        let mut rest: &[u8] = &data;
        let mut at = At { ts, frame, offset };
        loop {
            let decoder = self.dirs[dir.index()].take();
            let (next, leftover): (Decoder, Option<Vec<u8>>) = match decoder {
                Decoder::Sniff(mut buf) => {
                    buf.extend_from_slice(rest);
                    match sniff(&buf, dir) {
                        Sniffed::Wait => (Decoder::Sniff(buf), None),
                        Sniffed::Raw => {
                            if self.transport == Transport::Unknown {
                                self.transport = Transport::Tcp;
                            }
                            at.offset = at.offset.saturating_sub(buf.len().saturating_sub(rest.len()) as u64);
                            let raw = RawDecoder {
                                stream: ResyncDecoder::new(ctx.config.limits),
                                track: Default::default(),
                            };
                            (Decoder::Raw(Box::new(raw)), Some(buf))
                        }
                        Sniffed::Http => (Decoder::Http(Vec::new()), Some(buf)),
                        Sniffed::ServerFull => (Decoder::ServerFull(Vec::new()), Some(buf)),
                        Sniffed::Other => {
                            let shown: Vec<u8> = buf.iter().take(16).copied().collect();
                            let detail = format!(
                                "stream starts with {shown:02X?} ({:?}): neither the ACIP magic nor HTTP",
                                String::from_utf8_lossy(&shown)
                            );
                            self.anomaly(ctx, ts, frame, dir, Some(offset), AnomalyKind::NotAcip, detail);
                            (Decoder::Stopped("not ACIP".into()), None)
                        }
                    }
                }
                Decoder::ServerFull(mut buf) => {
                    let take = rest.iter().position(|&b| b == b'\n').map(|p| p + 1);
                    let n = take.unwrap_or(rest.len());
                    buf.extend_from_slice(&rest[..n]);
                    let after = rest[n..].to_vec();
                    if take.is_some() || buf.len() > 256 {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        self.anomaly(
                            ctx,
                            ts,
                            frame,
                            dir,
                            Some(offset),
                            AnomalyKind::ServerFull,
                            line.clone(),
                        );
                        ctx.push(ts, frame, self.id, dir, What::Http { line });
                        (Decoder::Sniff(Vec::new()), Some(after))
                    } else {
                        (Decoder::ServerFull(buf), None)
                    }
                }
                Decoder::Http(mut buf) => {
                    let before = buf.len();
                    buf.extend_from_slice(rest);
                    match find_head_end(&buf, before) {
                        Some(end) => {
                            let after = buf.split_off(end);
                            let next = self.http_head(ctx, dir, ts, frame, offset, &buf);
                            (next, Some(after))
                        }
                        None if buf.len() > ctx.config.max_http_head => {
                            let detail = format!("HTTP head longer than {} bytes", ctx.config.max_http_head);
                            self.anomaly(ctx, ts, frame, dir, Some(offset), AnomalyKind::HttpUpgrade, detail);
                            (Decoder::Stopped("HTTP head too long".into()), None)
                        }
                        None => (Decoder::Http(buf), None),
                    }
                }
                Decoder::Raw(mut raw) => {
                    self.feed_raw(ctx, dir, at, &mut raw, rest);
                    (Decoder::Raw(raw), None)
                }
                Decoder::Ws(mut ws) => {
                    self.feed_ws(ctx, dir, at, &mut ws, rest);
                    (Decoder::Ws(ws), None)
                }
                Decoder::Stopped(why) => (Decoder::Stopped(why), None),
                Decoder::Taken => (Decoder::Stopped("internal: decoder re-entered".into()), None),
            };
            self.dirs[dir.index()].put(next);
            if matches!(self.dirs[dir.index()].decoder, Decoder::Stopped(_)) {
                break;
            }
            match leftover {
                Some(bytes) if !bytes.is_empty() => {
                    input = bytes;
                    rest = &input;
                }
                _ => break,
            }
        }
    }

    /// A complete HTTP head: the Upgrade request or the server's answer.
    fn http_head(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: Dir,
        ts: Duration,
        frame: u64,
        offset: u64,
        head: &[u8],
    ) -> Decoder {
        let text = String::from_utf8_lossy(head);
        let line = text.lines().next().unwrap_or("").to_string();
        ctx.push(ts, frame, self.id, dir, What::Http { line: line.clone() });
        self.dirs[dir.index()].report.http = Some(line.clone());
        let lower = text.to_ascii_lowercase();
        let upgrade = lower.lines().any(|l| l.starts_with("upgrade:") && l.contains("websocket"));
        let ok = match dir {
            Dir::ClientToServer => line.starts_with("GET ") && upgrade,
            Dir::ServerToClient => line.split_whitespace().nth(1) == Some("101"),
        };
        if !ok {
            let detail = match dir {
                Dir::ClientToServer => format!("HTTP request is not a WebSocket upgrade: {line:?}"),
                Dir::ServerToClient => format!("server refused the WebSocket upgrade: {line:?}"),
            };
            self.anomaly(ctx, ts, frame, dir, Some(offset), AnomalyKind::HttpUpgrade, detail);
            return Decoder::Stopped("no WebSocket upgrade".into());
        }
        for problem in self.upgrade_headers(dir, &text) {
            self.anomaly(ctx, ts, frame, dir, Some(offset), AnomalyKind::HttpUpgrade, problem);
        }
        self.transport = Transport::WebSocket;
        let limits = ctx.config.limits;
        let timeout = match self.dialect {
            Dialect::Feb => REASSEMBLY_TIMEOUT_FIXED,
            Dialect::Head => HEAD_NO_TIMEOUT,
        };
        let reassembly =
            ReassemblerConfig { check_packet_length: false, ..ReassemblerConfig::from_limits(&limits) }
                .with_timeout(timeout);
        let frames = FrameDecoderConfig { observe: true, ..FrameDecoderConfig::new(limits.max_ws_frame) };
        Decoder::Ws(Box::new(WsDecoder {
            frames: FrameDecoder::with_config(frames),
            reassembler: Reassembler::new(reassembly),
            msg_compressed: false,
            inflater: None,
            close_seen: false,
            stream: (self.dialect == Dialect::Head).then(|| ResyncDecoder::new(limits)),
            track: PacketTrack::default(),
            msg_at: None,
            prev_short: false,
        }))
    }

    /// Records the WebSocket headers of an upgrade request or response; returns what is wrong with them.
    fn upgrade_headers(&mut self, dir: Dir, head: &str) -> Vec<String> {
        let values = |name: &str| -> Vec<String> {
            head.lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split(',').map(|x| x.trim().to_string()).collect::<Vec<_>>())
                .filter(|v| !v.is_empty())
                .collect()
        };
        let single = |name: &str| -> Option<String> {
            head.lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        };
        let hs = self.ws_handshake.get_or_insert_with(WsHandshake::default);
        let mut problems = Vec::new();
        match dir {
            Dir::ClientToServer => {
                hs.subprotocols_requested = values("sec-websocket-protocol");
                hs.key = single("sec-websocket-key");
                // Each offer is one extension with its parameters ("permessage-deflate; client_max_window_bits").
                hs.extensions_offered = single("sec-websocket-extensions")
                    .map(|v| v.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
                    .unwrap_or_default();
                if hs.key.is_none() {
                    problems.push("upgrade request without Sec-WebSocket-Key (RFC 6455 4.1)".to_string());
                }
            }
            Dir::ServerToClient => {
                hs.subprotocol_accepted = single("sec-websocket-protocol");
                hs.accept = single("sec-websocket-accept");
                hs.extensions_accepted = single("sec-websocket-extensions")
                    .map(|v| v.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
                    .unwrap_or_default();
                if let Some(p) = &hs.subprotocol_accepted {
                    if !hs.subprotocols_requested.iter().any(|r| r == p) {
                        problems.push(format!(
                            "server accepted subprotocol {p:?}, which the client did not request ({:?}; RFC 6455 4.1)",
                            hs.subprotocols_requested
                        ));
                    }
                }
                if let Some(deflate) =
                    hs.extensions_accepted.iter().find(|e| e.starts_with("permessage-deflate"))
                {
                    let params = deflate.to_ascii_lowercase();
                    self.deflate = Some((
                        params.contains("client_no_context_takeover"),
                        params.contains("server_no_context_takeover"),
                    ));
                }
            }
        }
        let hs = self.ws_handshake.get_or_insert_with(WsHandshake::default);
        if let (Some(key), Some(accept)) = (&hs.key, &hs.accept) {
            let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
            hs.accept_valid = Some(*accept == want);
            if *accept != want {
                problems.push(format!(
                    "Sec-WebSocket-Accept {accept:?} is not the one for the request's key (expected {want:?}; \
                     RFC 6455 4.2.2)"
                ));
            }
        }
        problems
    }

    /// Raw TCP: bytes into the stream decoder, packets (and skipped damage) out.
    fn feed_raw(&mut self, ctx: &mut Ctx<'_>, dir: Dir, at: At, raw: &mut RawDecoder, data: &[u8]) {
        let consumed_before = raw.stream.consumed();
        let buffered_before = raw.stream.buffered() as u64;
        raw.stream.handle_bytes(data);
        let chunk_start = consumed_before + buffered_before;
        self.drain_stream(ctx, dir, at, &mut raw.stream, &mut raw.track, data, chunk_start);
    }

    /// Drains a `ResyncDecoder` after `data` (which starts at stream offset `chunk_start`) was fed to it,
    /// following where each packet started and what fragments it came in.
    #[allow(clippy::too_many_arguments)]
    fn drain_stream(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: Dir,
        at: At,
        stream: &mut ResyncDecoder,
        track: &mut PacketTrack,
        data: &[u8],
        chunk_start: u64,
    ) {
        // The packet in progress (if any) got one more fragment.
        if track.at.is_some() && !data.is_empty() {
            track.frags.add(at.ts);
            let need = HEAD_KEEP.saturating_sub(track.head.len());
            track.head.extend_from_slice(&data[..need.min(data.len())]);
        }
        while let Some(item) = stream.poll() {
            match item {
                Item::Packet(Located { offset, client_id, packet }) => {
                    let t = std::mem::take(track);
                    let (p_at, frags) = match t.at {
                        Some(a) if a.offset == offset => (a, t.frags),
                        _ => {
                            let mut f = Fragments::default();
                            f.add(at.ts);
                            (At { ts: at.ts, frame: at.frame, offset }, f)
                        }
                    };
                    let wire = packet.wire_len() as u64;
                    self.packet(ctx, dir, at, p_at.offset, client_id, &packet, wire, CrcStatus::Ok);
                    // Over WebSocket the fragments are counted per message (`ws_frame`), not per packet.
                    if !matches!(self.transport, Transport::WebSocket) {
                        self.fragments_done(ctx, dir, at, frags, "packet");
                    }
                }
                Item::Skipped { offset, len, error } => {
                    let t = std::mem::take(track);
                    self.skipped(ctx, dir, at, offset, len, &error, &t);
                }
                Item::Interleaved { offset, len, packets, reversed } => {
                    *track = PacketTrack::default();
                    self.interleaved(ctx, dir, at, offset, len, &packets, reversed);
                }
            }
        }
        // Bytes left over start a new packet in this chunk (unless the old one is still in progress).
        if stream.buffered() > 0 && track.at.is_none() {
            let start = stream.consumed();
            let skip = start.saturating_sub(chunk_start) as usize;
            let mut frags = Fragments::default();
            frags.add(at.ts);
            let head = data.get(skip..).unwrap_or(&[]);
            track.at = Some(At { ts: at.ts, frame: at.frame, offset: start });
            track.head = head[..head.len().min(HEAD_KEEP)].to_vec();
            track.frags = frags;
        }
    }

    /// Damaged bytes the decoder skipped to reach the next valid packet.
    #[allow(clippy::too_many_arguments)]
    fn skipped(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: Dir,
        at: At,
        offset: u64,
        len: u64,
        e: &CodecError,
        track: &PacketTrack,
    ) {
        let kind = codec_kind(e);
        if let CodecError::CrcMismatch { packet_type, .. } = e {
            let claimed = Header::peek_length(&track.head).map(u64::from).unwrap_or(0);
            let what = What::Acip {
                packet_type: packet_type.to_string(),
                len: claimed + HEADER_LEN as u64,
                crc: CrcStatus::Bad,
                client_id: Header::decode(&track.head, &ctx.config.limits).map_or(0, |h| h.client_id),
                info: String::new(),
            };
            ctx.push(at.ts, at.frame, self.id, dir, what);
        }
        let interleaved = matches!(e, CodecError::CrcMismatch { .. })
            && track.head.get(HEADER_LEN..HEADER_LEN + 8) == Some(&MAGIC.to_be_bytes()[..]);
        let hint = if interleaved {
            "; another packet header starts where this payload should: two writers interleaved their packets"
        } else {
            ""
        };
        {
            let d = &mut self.dirs[dir.index()];
            d.report.skipped_bytes += len;
            d.report.resyncs += 1;
            d.tail_skip = Some((offset, len));
        }
        let (ts, frame) = track.at.map(|a| (a.ts, a.frame)).unwrap_or((at.ts, at.frame));
        let detail = format!(
            "{e}{hint}; skipped {len} bytes (stream offsets {offset}..{}) to the next valid packet",
            offset + len
        );
        self.anomaly(ctx, ts, frame, dir, Some(offset), kind, detail);
    }

    /// Packets of several writers interleaved on one socket, all recovered with valid CRCs.
    #[allow(clippy::too_many_arguments)]
    fn interleaved(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: Dir,
        at: At,
        offset: u64,
        len: u64,
        packets: &[Located],
        reversed: bool,
    ) {
        let names: Vec<String> = packets
            .iter()
            .map(|l| format!("{} ({} B) @{}", l.packet.packet_type, l.packet.wire_len(), l.offset))
            .collect();
        let detail = format!(
            "{} packet headers back to back at stream offset {offset}, then their payloads in {} order \
             ({len} bytes): two writers interleaved their packets on one socket; recovered with valid CRCs: {}",
            packets.len(),
            if reversed { "reversed" } else { "header" },
            names.join(", ")
        );
        self.dirs[dir.index()].report.interleaved += packets.len() as u64;
        self.anomaly(ctx, at.ts, at.frame, dir, Some(offset), AnomalyKind::Interleaved, detail);
        for l in packets {
            let wire = l.packet.wire_len() as u64;
            self.packet(ctx, dir, at, l.offset, l.client_id, &l.packet, wire, CrcStatus::Ok);
        }
    }

    /// Statistics of a finished packet or message made of `frags`.
    fn fragments_done(&mut self, ctx: &mut Ctx<'_>, dir: Dir, at: At, frags: Fragments, what: &str) {
        let threshold = ctx.config.stall_threshold;
        let count = frags.count;
        let mut stalls = Vec::new();
        {
            let d = &mut self.dirs[dir.index()];
            if count > 1 {
                d.assembly.push(frags.last.saturating_sub(frags.first.unwrap_or(frags.last)));
            }
            for (i, g) in frags.gaps.iter().enumerate() {
                d.gaps.push(*g);
                if *g > threshold {
                    d.report.stalls += 1;
                    stalls.push((i, *g));
                }
            }
        }
        for (i, g) in stalls {
            let detail = format!(
                "{:.3} ms between fragments {} and {} of a {count}-fragment {what} (threshold {:.3} ms)",
                g.as_secs_f64() * 1e3,
                i + 1,
                i + 2,
                threshold.as_secs_f64() * 1e3
            );
            self.anomaly(ctx, at.ts, at.frame, dir, Some(at.offset), AnomalyKind::Stall, detail);
        }
    }

    /// One whole packet: statistics, dialect evidence, payload decoding, timeline.
    #[allow(clippy::too_many_arguments)]
    fn packet(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: Dir,
        at: At,
        offset: u64,
        client_id: u32,
        packet: &Packet,
        wire: u64,
        crc: CrcStatus,
    ) {
        let ty = packet.packet_type;
        let len = packet.payload.len();
        {
            let d = &mut self.dirs[dir.index()];
            d.tail_skip = None;
            *d.report.client_ids.entry(client_id).or_default() += 1;
        }
        if ty == PacketType::CLIENT_CAPABILITIES {
            match len {
                160 => self.evidence(Dialect::Feb, 3, "CLIENT_CAPABILITIES is 160 bytes".into()),
                168 => self.evidence(Dialect::Head, 3, "CLIENT_CAPABILITIES is 168 bytes".into()),
                _ => {}
            }
        }
        match dir {
            Dir::ClientToServer => {
                self.client_first.get_or_insert(ty);
            }
            Dir::ServerToClient => {
                if matches!(ty, PacketType::CRYPTO_KEY_EXCHANGE_INIT | PacketType::CRYPTO_PARAMETERS) {
                    self.server_kex.get_or_insert((At { ts: at.ts, frame: at.frame, offset }, ty));
                }
            }
        }
        let mut info = String::new();
        if ty == PacketType::ENCRYPTED {
            self.encrypted = true;
            if len >= 24 {
                let b: [u8; 8] = packet.payload[16..24].try_into().unwrap_or([0; 8]);
                let (le, be) = (u64::from_le_bytes(b), u64::from_be_bytes(b));
                if le < be {
                    self.evidence(Dialect::Feb, 1, "nonce counter is little-endian".into());
                } else if be < le {
                    self.evidence(Dialect::Head, 1, "nonce counter is big-endian".into());
                }
                let counter = match self.dialect {
                    Dialect::Feb => le,
                    Dialect::Head => be,
                };
                let d = &mut self.dirs[dir.index()];
                let e = d
                    .report
                    .encrypted
                    .get_or_insert_with(|| EncryptedStats { first_counter: counter, ..Default::default() });
                e.packets += 1;
                e.bytes += wire;
                e.last_counter = counter;
                let previous = d.last_counter;
                if previous.is_some_and(|c| c.wrapping_add(1) != counter) {
                    e.counter_jumps += 1;
                }
                if let Some(prev) = previous.filter(|&c| counter <= c) {
                    e.counter_backwards += 1;
                    let detail = format!(
                        "nonce counter {counter} after {prev}: out of order (a sender's counter only grows; \
                         the mark of encrypted records written by two threads without a lock)"
                    );
                    self.anomaly(ctx, at.ts, at.frame, dir, Some(offset), AnomalyKind::NonceOrder, detail);
                }
                let d = &mut self.dirs[dir.index()];
                d.last_counter = Some(counter);
                info = format!("nonce counter {counter}, inner packet {} B", len.saturating_sub(40));
            } else {
                info = format!("{len} B: too short for a nonce");
            }
        } else if !ty.is_known() {
            let detail = format!("unknown packet type {} ({len}-byte payload)", ty.to_u16());
            self.anomaly(ctx, at.ts, at.frame, dir, Some(offset), AnomalyKind::UnknownType, detail);
        } else {
            let limits = ctx.config.limits;
            match Payload::decode_with_limits(packet, self.dialect, &limits) {
                Ok(p) => info = describe(&p),
                Err(e) => {
                    let detail = e.to_string();
                    self.anomaly(ctx, at.ts, at.frame, dir, Some(offset), codec_kind(&e), detail);
                }
            }
        }
        {
            let d = &mut self.dirs[dir.index()].report;
            d.packets += 1;
            d.packet_bytes += wire;
            let st = d.by_type.entry(ty.to_string()).or_default();
            if st.count == 0 || (len as u64) < st.min_len {
                st.min_len = len as u64;
            }
            st.max_len = st.max_len.max(len as u64);
            st.count += 1;
            st.bytes += wire;
        }
        if ctx.config.collect_packets {
            self.script.push(ScriptPacket { at: at.ts, dir, packet: packet.clone() });
        }
        if self.opening.len() < ctx.config.max_opening {
            self.opening.push(format!("{} {ty} {len} B", dir.arrow()));
        }
        ctx.push(
            at.ts,
            at.frame,
            self.id,
            dir,
            What::Acip { packet_type: ty.to_string(), len: wire, crc, client_id, info },
        );
    }

    fn finish(mut self, ctx: &mut Ctx<'_>) -> FlowReport {
        let (end_ts, last_frame) = (self.end, self.last_frame);
        let ending = match self.closed {
            Some((dir, how)) => format!("{how} from {} first", side(dir)),
            None => "still open when the capture ends".to_string(),
        };
        let open = self.closed.is_none();
        for dir in [Dir::ClientToServer, Dir::ServerToClient] {
            let decoder = self.dirs[dir.index()].take();
            let where_ = if open { "the capture ends" } else { "the connection ends" };
            let state = match decoder {
                Decoder::Sniff(buf) if buf.is_empty() => "no data".to_string(),
                Decoder::Sniff(buf) => {
                    let detail =
                        format!("{where_} after {} bytes that do not identify a protocol", buf.len());
                    self.anomaly(
                        ctx,
                        end_ts,
                        last_frame,
                        dir,
                        Some(0),
                        AnomalyKind::TruncatedStream,
                        detail.clone(),
                    );
                    detail
                }
                Decoder::Http(buf) | Decoder::ServerFull(buf) => {
                    let detail = format!("{where_} inside a {}-byte text head", buf.len());
                    self.anomaly(
                        ctx,
                        end_ts,
                        last_frame,
                        dir,
                        None,
                        AnomalyKind::TruncatedStream,
                        detail.clone(),
                    );
                    detail
                }
                Decoder::Raw(mut raw) => {
                    let at = At { ts: end_ts, frame: last_frame, offset: raw.stream.consumed() };
                    raw.stream.finish();
                    let chunk_start = raw.stream.consumed() + raw.stream.buffered() as u64;
                    self.drain_stream(ctx, dir, at, &mut raw.stream, &mut raw.track, &[], chunk_start);
                    let state = self.truncation(ctx, dir, where_, &raw.stream, &raw.track, None);
                    self.damaged_end(dir, state)
                }
                Decoder::Ws(mut ws) => {
                    if let Some(stream) = ws.stream.as_mut() {
                        let at = At { ts: end_ts, frame: last_frame, offset: stream.consumed() };
                        stream.finish();
                        let chunk_start = stream.consumed() + stream.buffered() as u64;
                        let mut track = std::mem::take(&mut ws.track);
                        self.drain_stream(ctx, dir, at, stream, &mut track, &[], chunk_start);
                        ws.track = track;
                    }
                    let mut parts = Vec::new();
                    if ws.frames.buffered() > 0 {
                        parts
                            .push(format!("{} bytes of an unfinished WebSocket frame", ws.frames.buffered()));
                    }
                    if ws.reassembler.in_progress() {
                        parts.push(format!(
                            "a message in progress ({} bytes so far)",
                            ws.reassembler.buffered()
                        ));
                    }
                    let mut state = if parts.is_empty() {
                        "clean".to_string()
                    } else {
                        let detail = format!("{where_} with {}", parts.join(" and "));
                        let kind = AnomalyKind::TruncatedStream;
                        self.anomaly(ctx, end_ts, last_frame, dir, None, kind, detail.clone());
                        detail
                    };
                    if let Some(stream) = &ws.stream {
                        let s = self.truncation(
                            ctx,
                            dir,
                            where_,
                            stream,
                            &ws.track,
                            Some("in the WebSocket byte stream"),
                        );
                        let s = self.damaged_end(dir, s);
                        if s != "clean" {
                            state = s;
                        }
                    }
                    state
                }
                Decoder::Stopped(why) => format!("stopped: {why}"),
                Decoder::Taken => "stopped".to_string(),
            };
            self.dirs[dir.index()].report.end_state = state;
        }
        if let (Some(PacketType::CLIENT_CAPABILITIES), Some((at, ty))) = (self.client_first, self.server_kex)
        {
            let detail = format!(
                "the server sent {ty} (a key exchange) to a client that talks plaintext \
                 (its first packet was CLIENT_CAPABILITIES; ACIP-SPEC.md 4.4, 4.6)"
            );
            let kind = AnomalyKind::HandshakeMismatch;
            self.anomaly(ctx, at.ts, at.frame, Dir::ServerToClient, Some(at.offset), kind, detail);
        }
        if self.transport == Transport::WebSocket && !open {
            let closes = [Dir::ClientToServer, Dir::ServerToClient]
                .map(|d| self.dirs[d.index()].report.ws.as_ref().is_some_and(|w| w.close.is_some()));
            if !closes.contains(&true) {
                let (dir, how) = self.closed.unwrap_or((Dir::ClientToServer, "FIN"));
                let detail = format!(
                    "1006 (abnormal closure): the TCP connection ended ({how} from {}) without a WebSocket close frame",
                    side(dir)
                );
                self.anomaly(ctx, end_ts, last_frame, dir, None, AnomalyKind::AbnormalClose, detail);
            }
        }
        self.anomalies.sort_by(|a, b| a.t_s.total_cmp(&b.t_s).then(a.frame.cmp(&b.frame)));
        let threshold = ctx.config.stall_threshold;
        let mut reports = [Dir::ClientToServer, Dir::ServerToClient].map(|d| {
            let s = &mut self.dirs[d.index()];
            let mut r = std::mem::take(&mut s.report);
            r.fragment_gaps = gap_histogram(&s.gaps, threshold);
            r.assembly = assembly(&mut s.assembly);
            r
        });
        let [c2s, s2c] = std::mem::take(&mut reports);
        FlowReport {
            id: self.id,
            client: self.client.to_string(),
            server: self.server.to_string(),
            syn_seen: self.syn_seen,
            transport: self.transport,
            dialect: self.dialect,
            dialect_reason: self.dialect_reason,
            encrypted: self.encrypted,
            start_s: ctx.t(self.start.unwrap_or_default()),
            end_s: ctx.t(self.end),
            ending,
            opening: self.opening,
            websocket: self.ws_handshake,
            client_to_server: c2s,
            server_to_client: s2c,
            anomalies: self.anomalies,
            anomalies_dropped: self.anomalies_dropped,
            script: self.script,
        }
    }

    /// A stream that ended right after skipped damage says so instead of "clean".
    fn damaged_end(&self, dir: Dir, state: String) -> String {
        match self.dirs[dir.index()].tail_skip {
            Some((offset, len)) if state == "clean" => {
                format!("ends in {len} damaged bytes (skipped from stream offset {offset})")
            }
            _ => state,
        }
    }

    /// Reports a packet cut off by the end of the stream.
    fn truncation(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: Dir,
        where_: &str,
        stream: &ResyncDecoder,
        track: &PacketTrack,
        context: Option<&str>,
    ) -> String {
        if stream.buffered() == 0 {
            return "clean".to_string();
        }
        let have = stream.buffered();
        let claimed = match (track.head.get(8..10), Header::peek_length(&track.head)) {
            (Some(t), Some(len)) => format!(
                " {}-byte {} packet",
                HEADER_LEN as u64 + u64::from(len),
                PacketType::from_u16(u16::from_be_bytes([t[0], t[1]]))
            ),
            _ => String::new(),
        };
        let claimed = if claimed.is_empty() { " packet".to_string() } else { format!(" a{claimed}") };
        let detail = format!(
            "{where_} {have} bytes into{claimed}{}",
            context.map(|c| format!(" ({c})")).unwrap_or_default()
        );
        let (ts, frame, offset) =
            track.at.map(|a| (a.ts, a.frame, Some(a.offset))).unwrap_or((self.end, 0, None));
        self.anomaly(ctx, ts, frame, dir, offset, AnomalyKind::TruncatedStream, detail.clone());
        detail
    }
}

/// The first bytes of a direction decide its decoder.
#[derive(Clone, Copy)]
enum Sniffed {
    Wait,
    Raw,
    Http,
    ServerFull,
    Other,
}

fn sniff(buf: &[u8], dir: Dir) -> Sniffed {
    let magic = MAGIC.to_be_bytes();
    let http: &[u8] = match dir {
        Dir::ClientToServer => b"GET ",
        Dir::ServerToClient => b"HTTP/",
    };
    let candidates: [(&[u8], Sniffed); 3] =
        [(&magic, Sniffed::Raw), (http, Sniffed::Http), (b"SERVER_FULL", Sniffed::ServerFull)];
    let mut could = false;
    for (prefix, verdict) in candidates {
        let n = buf.len().min(prefix.len());
        if buf[..n] == prefix[..n] {
            if buf.len() >= prefix.len() {
                return verdict;
            }
            could = true;
        }
    }
    if could {
        Sniffed::Wait
    } else {
        Sniffed::Other
    }
}

/// End of an HTTP head (`\r\n\r\n`), searching from a little before the newly added bytes.
fn find_head_end(buf: &[u8], new_from: usize) -> Option<usize> {
    let from = new_from.saturating_sub(3);
    buf[from..].windows(4).position(|w| w == b"\r\n\r\n").map(|p| from + p + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert!(matches!(sniff(&[0, 0, 0], Dir::ClientToServer), Sniffed::Wait));
        assert!(matches!(sniff(&MAGIC.to_be_bytes(), Dir::ServerToClient), Sniffed::Raw));
        assert!(matches!(sniff(b"GET / HTTP/1.1", Dir::ClientToServer), Sniffed::Http));
        assert!(matches!(sniff(b"GET / HTTP/1.1", Dir::ServerToClient), Sniffed::Other));
        assert!(matches!(sniff(b"SERVER_FULL: x", Dir::ServerToClient), Sniffed::ServerFull));
        assert!(matches!(sniff(b"SSH-2.0", Dir::ServerToClient), Sniffed::Other));
    }

    #[test]
    fn gap_buckets() {
        let h = gap_histogram(
            &[Duration::from_micros(50), Duration::from_millis(30), Duration::from_secs(3)],
            Duration::ZERO,
        );
        assert_eq!(h.len(), 3);
        assert_eq!(h["e 20-100ms"], 1);
        assert_eq!(h["g >=1s"], 1);
    }
}
