//! Replaying the client side of captured sessions against a live server (`--against`), with the captured
//! timing (`--speed X` scales it, `--fast` drops it), and comparing what the server answers with what the
//! captured server answered: packet types, their first-seen order, and how the connection ended.
//!
//! Plaintext captures are replayed packet for packet as a fresh plaintext session (ACIP-SPEC.md 4.6: a
//! client whose first packet is CLIENT_CAPABILITIES is served in plaintext by any server).
//!
//! Encrypted captures cannot be replayed byte for byte (the keys are gone), so each is replayed as a fresh
//! encrypted session: `acip::crypto`'s [`ClientHandshake`] in [`CryptoMode::Encrypt`], in the capture's
//! dialect, over the target's transport (TCP: the client speaks first, 4.3; WebSocket: the server does,
//! 4.4), instead of the captured handshake; then every captured ENCRYPTED packet becomes a synthetic packet
//! of the same inner size, its type inferred from that size (160/168 CLIENT_CAPABILITIES, 4 STREAM_START,
//! 0 PING, w*h*3+24 IMAGE_FRAME), sealed with the new [`Session`] (4.5) at the captured time. The server's
//! ENCRYPTED answers are decrypted so their inner types are compared. The report flags such sessions
//! `fresh_handshake`. Sessions run one after the other.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use acip::codec::payloads::{ClientCapabilities, ImageFrame, StreamStart};
use acip::crypto::{ClientHandshake, CryptoMode, HandshakeConfig, HandshakeEvent, Session};
use acip::stream::StreamDecoder;
use acip::{Dialect, Packet, PacketType};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::model::{FlowReport, ScriptPacket, Transport};
use super::{DissectConfig, Dissection};
use crate::capture::{Dir, FlowId};

/// How long to keep listening after the last client packet (or the captured tail, if shorter).
pub const MAX_TAIL: Duration = Duration::from_secs(2);
/// How long a connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to replay: the workspace's one target type (`tcp://HOST:PORT` or `ws://HOST:PORT[/path]`).
pub use reference_client::Target;

/// Parses `--against URL` (resolved now).
pub fn parse_target(url: &str) -> Result<Target, String> {
    url.parse::<Target>().map_err(|e| format!("--against {url:?}: {e}"))
}

/// Replay timing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    Fast,
    /// Multiple of the captured speed.
    Speed(f64),
}

/// The result of a replay (the same type for text and `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub file: String,
    pub target: String,
    pub pace: String,
    pub sessions: Vec<SessionReplay>,
}

/// One captured session replayed.
#[derive(Debug, Clone, Serialize)]
pub struct SessionReplay {
    pub flow: FlowId,
    pub captured_transport: Transport,
    /// The capture was encrypted: replayed after a fresh encrypted handshake, with synthetic packets of the
    /// captured inner sizes and inferred types, each sealed with the new session (see the module docs).
    pub fresh_handshake: bool,
    /// The fresh handshake, for encrypted captures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<HandshakeReplay>,
    pub sent: u64,
    /// Client packets not sent (handshake of an encrypted capture, replaced by the fresh one; encrypted
    /// packets whose inner size matches no known type).
    pub skipped: u64,
    /// Sent packets by type (the inner type of encrypted ones).
    pub sent_types: BTreeMap<String, u64>,
    pub expected_types: BTreeMap<String, u64>,
    /// What the live server sent, by type: its handshake packets, then the inner types of its ENCRYPTED
    /// packets once decrypted.
    pub received_types: BTreeMap<String, u64>,
    /// Packet types in the order each was first seen.
    pub expected_order: Vec<String>,
    pub received_order: Vec<String>,
    pub captured_end: String,
    pub live_end: String,
    pub duration_ms: f64,
    pub divergences: Vec<String>,
}

/// The fresh handshake of an encrypted session.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeReplay {
    /// The capture's dialect, which the handshake runs in.
    pub dialect: Dialect,
    /// The target's transport, which decides the handshake's shape (ACIP-SPEC.md 4.3 vs 4.4).
    pub transport: Transport,
    /// Packet types the client sent, in order.
    pub sent: Vec<String>,
    /// Packet types the server sent until the handshake completed, in order.
    pub received: Vec<String>,
    pub completed: bool,
    /// Why the handshake failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: f64,
}

impl ReplayReport {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "replay of {} against {} ({})", self.file, self.target, self.pace);
        for r in &self.sessions {
            let _ = writeln!(
                s,
                "\nflow {} ({:?}{}): sent {} packets (skipped {}) in {:.1} ms",
                r.flow.0,
                r.captured_transport,
                if r.fresh_handshake { ", encrypted capture replayed after a fresh handshake" } else { "" },
                r.sent,
                r.skipped,
                r.duration_ms
            );
            if let Some(h) = &r.handshake {
                let _ = writeln!(
                    s,
                    "  handshake ({} over {:?}): {} in {:.1} ms; sent {}; received {}",
                    h.dialect,
                    h.transport,
                    match &h.error {
                        None => "completed".to_string(),
                        Some(e) => format!("FAILED ({e})"),
                    },
                    h.duration_ms,
                    list(&h.sent),
                    list(&h.received)
                );
            }
            let _ = writeln!(s, "  sent:     {}", types(&r.sent_types));
            let _ = writeln!(s, "  captured: {} | {}", types(&r.expected_types), r.captured_end);
            let _ = writeln!(s, "  live:     {} | {}", types(&r.received_types), r.live_end);
            if r.divergences.is_empty() {
                let _ = writeln!(s, "  no divergence");
            }
            for d in &r.divergences {
                let _ = writeln!(s, "  DIVERGES: {d}");
            }
        }
        s
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        return "nothing".into();
    }
    v.join(" ")
}

fn types(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "nothing".into();
    }
    m.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ")
}

/// Replays every session of `dissection` (which must have been made with `collect_packets`; if not, the
/// capture `data` is dissected again with it).
pub fn replay(
    dissection: &Dissection,
    data: &[u8],
    config: &DissectConfig,
    target: &Target,
    pace: Pace,
) -> crate::Result<ReplayReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::io("starting the tokio runtime", e))?;
    rt.block_on(replay_async(dissection, data, config, target, pace))
}

/// [`replay`] for callers that already run tokio.
pub async fn replay_async(
    dissection: &Dissection,
    data: &[u8],
    config: &DissectConfig,
    target: &Target,
    pace: Pace,
) -> crate::Result<ReplayReport> {
    let owned;
    let d = if config.collect_packets {
        dissection
    } else {
        let c = DissectConfig { collect_packets: true, timeline: false, ..config.clone() };
        owned = super::dissect(&dissection.file, data, &c)
            .map_err(|e| crate::Error::Input { path: dissection.file.clone(), reason: e.to_string() })?;
        &owned
    };
    let mut sessions = Vec::new();
    for flow in &d.flows {
        if flow.transport == Transport::Unknown || !flow.script.iter().any(|p| p.dir == Dir::ClientToServer) {
            continue;
        }
        sessions.push(replay_flow(flow, target, pace).await?);
    }
    Ok(ReplayReport {
        file: d.file.clone(),
        target: target.to_string(),
        pace: match pace {
            Pace::Fast => "as fast as possible".into(),
            Pace::Speed(x) => format!("{x}x the captured speed"),
        },
        sessions,
    })
}

/// The client packets to send, with their offsets from the session start.
fn client_script(flow: &FlowReport) -> (Vec<(Duration, Packet)>, u64) {
    let start = flow.script.first().map(|p| p.at).unwrap_or_default();
    let mut out = Vec::new();
    let mut skipped = 0;
    for ScriptPacket { at, dir, packet } in &flow.script {
        if *dir != Dir::ClientToServer {
            continue;
        }
        let t = at.saturating_sub(start);
        if !flow.encrypted {
            out.push((t, packet.clone()));
            continue;
        }
        // Encrypted capture: the fresh handshake replaces the captured one; ENCRYPTED becomes a synthetic
        // packet of its inner size (sealed when sent).
        match packet.packet_type {
            PacketType::ENCRYPTED => {
                match substitute(packet.payload.len().saturating_sub(40 + 22), flow.dialect) {
                    Some(p) => out.push((t, p)),
                    None => skipped += 1,
                }
            }
            t if t.is_handshake() || t == PacketType::PROTOCOL_VERSION => skipped += 1,
            _ => out.push((t, packet.clone())),
        }
    }
    (out, skipped)
}

/// A plaintext packet standing in for an encrypted one whose inner payload had `len` bytes.
fn substitute(len: usize, dialect: Dialect) -> Option<Packet> {
    Some(match len {
        0 => Packet::empty(PacketType::PING),
        4 => StreamStart::new(StreamStart::VIDEO).to_packet(),
        160 => ClientCapabilities::new(Dialect::Feb, 80, 24, 60).to_packet(),
        168 => ClientCapabilities::new(Dialect::Head, 80, 24, 60).to_packet(),
        n if n > 24 && (n - 24) % 3 == 0 => {
            let (w, h) = dimensions((n - 24) / 3)?;
            let pixels: Vec<u8> = (0..n - 24).map(|i| (i % 253) as u8).collect();
            ImageFrame::rgb24(w, h, pixels).to_packet()
        }
        _ => {
            let _ = dialect;
            return None;
        }
    })
}

/// Width and height (each 1..=8192) with `w * h == pixels`, closest to 4:3.
fn dimensions(pixels: usize) -> Option<(u32, u32)> {
    let mut best: Option<(u32, u32)> = None;
    for h in 1..=8192usize {
        if !pixels.is_multiple_of(h) || pixels / h > 8192 {
            continue;
        }
        let w = pixels / h;
        let score = |w: usize, h: usize| ((w as f64 / h as f64) - 4.0 / 3.0).abs();
        if best.is_none_or(|(bw, bh)| score(w, h) < score(bw as usize, bh as usize)) {
            best = Some((w as u32, h as u32));
        }
    }
    best
}

/// What the server said.
#[derive(Default)]
struct Received {
    types: Vec<PacketType>,
    end: Option<String>,
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Conn {
    Tcp(tokio::net::TcpStream),
    Ws(Box<WsStream>),
}

/// Bytes read from a TCP socket at a time.
const READ_CHUNK: usize = 64 * 1024;

impl Conn {
    /// Sends one packet (one binary message on WebSocket); the error says how the connection failed.
    async fn send(&mut self, p: &Packet) -> Result<(), String> {
        match self {
            Conn::Tcp(s) => s.write_all(&p.encode()).await.map_err(|e| format!("write failed ({e})")),
            Conn::Ws(ws) => ws
                .send(Message::Binary(p.encode().into()))
                .await
                .map_err(|e| format!("connection error: {e}")),
        }
    }

    /// The next packet from the server, through `dec` (whose leftover bytes the reader takes over after the
    /// handshake); the error says how the server ended the session, in the reader's words.
    async fn recv(&mut self, dec: &mut StreamDecoder) -> Result<Packet, String> {
        let mut buf = Vec::new();
        loop {
            if let Some(r) = dec.poll_packet() {
                return r.map_err(|e| format!("undecodable server stream: {e}"));
            }
            match self {
                Conn::Tcp(s) => {
                    buf.resize(READ_CHUNK, 0);
                    match s.read(&mut buf).await {
                        Ok(0) => return Err("server closed (FIN)".into()),
                        Ok(n) => dec.handle_bytes(&buf[..n]),
                        Err(e) => return Err(format!("server reset ({e})")),
                    }
                }
                Conn::Ws(ws) => match ws.next().await {
                    Some(Ok(Message::Binary(b))) => dec.handle_bytes(&b),
                    Some(Ok(Message::Close(c))) => return Err(close_text(c)),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("connection error: {e}")),
                    None => return Err("server closed without a close frame (1006)".into()),
                },
            }
        }
    }
}

fn close_text(c: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match c {
        Some(f) => format!("server sent close {}", u16::from(f.code)),
        None => "server sent close (no code)".to_string(),
    }
}

async fn connect(target: &Target) -> crate::Result<Conn> {
    let io = |what: String| move |e: std::io::Error| crate::Error::io(what, e);
    match target {
        Target::Tcp(addr) => {
            let s = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(*addr))
                .await
                .map_err(|_| crate::Error::Verdict(format!("connecting to {addr}: timed out")))?
                .map_err(io(format!("connecting to {addr}")))?;
            let _ = s.set_nodelay(true);
            Ok(Conn::Tcp(s))
        }
        Target::Ws { url, .. } => {
            let mut req = url
                .as_str()
                .into_client_request()
                .map_err(|e| crate::Error::Usage(format!("--against {url}: {e}")))?;
            req.headers_mut().insert("Sec-WebSocket-Protocol", http_value("acip"));
            let (ws, _resp) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(req))
                .await
                .map_err(|_| crate::Error::Verdict(format!("connecting to {url}: timed out")))?
                .map_err(|e| crate::Error::Verdict(format!("WebSocket connect to {url}: {e}")))?;
            Ok(Conn::Ws(Box::new(ws)))
        }
    }
}

fn http_value(s: &'static str) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_static(s)
}

/// Runs a fresh client handshake (mode ENCRYPT, the capture's `dialect`) on `conn`, within the handshake's
/// own deadlines (1 s per packet on TCP, 30 s overall; ACIP-SPEC.md 4.7). The server's packets, handshake
/// and early plaintext ones (4.4), are added to `received`. Returns the traffic session, if one was made.
async fn fresh_handshake(
    conn: &mut Conn,
    dec: &mut StreamDecoder,
    target: &Target,
    dialect: Dialect,
    received: &mut Received,
) -> (Option<Session>, HandshakeReplay) {
    let (transport, over) = match target {
        Target::Tcp(_) => (acip::crypto::Transport::Tcp, Transport::Tcp),
        Target::Ws { .. } => (acip::crypto::Transport::WebSocket, Transport::WebSocket),
    };
    // Fresh keys per replay: the seed of the handshake's ChaCha20Rng comes from the OS.
    let mut config = HandshakeConfig::new(dialect, transport, rand::random());
    config.mode = CryptoMode::Encrypt;
    let started = Instant::now();
    let mut hs = ClientHandshake::new(config, started);
    let mut report = HandshakeReplay {
        dialect,
        transport: over,
        sent: Vec::new(),
        received: Vec::new(),
        completed: false,
        error: None,
        duration_ms: 0.0,
    };
    let error = loop {
        while let Some(p) = hs.poll_transmit() {
            report.sent.push(p.packet_type.to_string());
            if let Err(e) = conn.send(&p).await {
                received.end = Some(e.clone());
                break;
            }
        }
        if received.end.is_some() {
            break received.end.clone();
        }
        while let Some(ev) = hs.poll_event() {
            match ev {
                HandshakeEvent::EarlyPacket(p) => received.types.push(p.packet_type),
                HandshakeEvent::AuthFailed { reason } => {
                    received.end = Some(format!("AUTH_FAILED ({reason})"))
                }
                HandshakeEvent::Completed { .. } | HandshakeEvent::PlaintextClient { .. } => {}
            }
        }
        if let Some(e) = &received.end {
            break Some(e.clone());
        }
        if hs.is_complete() {
            break None;
        }
        let deadline = hs.poll_timeout().unwrap_or(started + acip::crypto::DEFAULT_TOTAL_TIMEOUT);
        tokio::select! {
            r = conn.recv(dec) => match r {
                Ok(p) => {
                    report.received.push(p.packet_type.to_string());
                    received.types.push(p.packet_type);
                    if let Err(e) = hs.handle_packet(p, Instant::now()) {
                        break Some(format!("handshake error: {e}"));
                    }
                }
                Err(end) => {
                    received.end = Some(end.clone());
                    break Some(end);
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                if let Err(e) = hs.handle_timeout(Instant::now()) {
                    break Some(format!("handshake error: {e}"));
                }
            }
        }
    };
    report.duration_ms = started.elapsed().as_secs_f64() * 1e3;
    let session = match error {
        None => hs.into_session(),
        Some(_) => None,
    };
    report.completed = session.is_some();
    report.error = match (error, &session) {
        (Some(e), _) => Some(e),
        (None, None) => Some("the handshake completed without a traffic key".into()),
        (None, Some(_)) => None,
    };
    (session, report)
}

/// The type to report for a server packet: an ENCRYPTED one is decrypted (with the replay's session) and
/// reported by its inner type; the error says why it could not be.
fn answer_type(p: &Packet, session: Option<&Mutex<Session>>) -> Result<PacketType, String> {
    match session {
        Some(s) if p.packet_type == PacketType::ENCRYPTED => {
            let s = s.lock().map_err(|_| "the session lock is poisoned".to_string())?;
            s.decrypt(p).map(|inner| inner.packet_type).map_err(|e| format!("undecodable server packet: {e}"))
        }
        _ => Ok(p.packet_type),
    }
}

async fn replay_flow(flow: &FlowReport, target: &Target, pace: Pace) -> crate::Result<SessionReplay> {
    let (script, skipped) = client_script(flow);
    let captured_tail = {
        let last_client = script.last().map(|(t, _)| *t).unwrap_or_default();
        let start = flow.script.first().map(|p| p.at).unwrap_or_default();
        let last_any = flow.script.last().map(|p| p.at.saturating_sub(start)).unwrap_or_default();
        last_any.saturating_sub(last_client).min(MAX_TAIL)
    };
    let scale = |d: Duration| match pace {
        Pace::Fast => Duration::ZERO,
        Pace::Speed(x) => d.div_f64(x),
    };
    let mut conn = connect(target).await?;
    let started = Instant::now();
    let mut dec = StreamDecoder::new(acip::Limits::default());
    let mut received = Received::default();
    let (session, handshake) = if flow.encrypted {
        let (s, h) = fresh_handshake(&mut conn, &mut dec, target, flow.dialect, &mut received).await;
        (s.map(Mutex::new), Some(h))
    } else {
        (None, None)
    };
    let handshake_failed = handshake.as_ref().is_some_and(|h| !h.completed);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Packet>(64);
    let sent_count = script.len();
    let sender = async move {
        if handshake_failed {
            return;
        }
        for (t, p) in script {
            // Offsets count from the captured session start, so a fresh handshake takes the captured one's
            // place in the schedule.
            tokio::time::sleep_until((started + scale(t)).into()).await;
            if tx.send(p).await.is_err() {
                break;
            }
        }
    };
    // The wire form of a script packet: sealed when the session is encrypted.
    let seal = |p: &Packet| -> Option<Packet> {
        match &session {
            None => Some(p.clone()),
            Some(s) => s.lock().ok()?.encrypt(p).ok(),
        }
    };
    let mut sent = 0u64;
    let mut sent_types: BTreeMap<String, u64> = BTreeMap::new();
    let tail = scale(captured_tail).max(Duration::from_millis(200));
    let session_ref = session.as_ref();
    if handshake_failed {
        // The handshake's own verdict is the session's end; nothing more is sent.
    } else {
        match conn {
            Conn::Tcp(stream) => {
                let (mut rd, mut wr) = stream.into_split();
                let types = &mut received.types;
                let reader = async {
                    let mut buf = vec![0u8; READ_CHUNK];
                    loop {
                        while let Some(r) = dec.poll_packet() {
                            match r.map_err(|e| format!("undecodable server stream: {e}")) {
                                Ok(p) => match answer_type(&p, session_ref) {
                                    Ok(t) => types.push(t),
                                    Err(e) => return e,
                                },
                                Err(e) => return e,
                            }
                        }
                        match rd.read(&mut buf).await {
                            Ok(0) => return "server closed (FIN)".to_string(),
                            Ok(n) => dec.handle_bytes(&buf[..n]),
                            Err(e) => return format!("server reset ({e})"),
                        }
                    }
                };
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                let writer = async {
                    while let Some(p) = rx.recv().await {
                        let Some(wire) = seal(&p) else { continue };
                        if wr.write_all(&wire.encode()).await.is_err() {
                            break;
                        }
                        sent += 1;
                        *sent_types.entry(p.packet_type.to_string()).or_default() += 1;
                    }
                    tokio::time::sleep(tail).await;
                    let _ = wr.shutdown().await;
                    let _ = done_tx.send(());
                };
                let (_, end, _) =
                    tokio::join!(sender, bounded(reader, done_rx, Duration::from_secs(1)), writer);
                received.end = Some(end);
            }
            Conn::Ws(ws) => {
                let (mut sink, mut stream) = (*ws).split();
                let types = &mut received.types;
                let reader = async {
                    loop {
                        while let Some(r) = dec.poll_packet() {
                            match r.map_err(|e| format!("undecodable server message: {e}")) {
                                Ok(p) => match answer_type(&p, session_ref) {
                                    Ok(t) => types.push(t),
                                    Err(e) => return e,
                                },
                                Err(e) => return e,
                            }
                        }
                        match stream.next().await {
                            Some(Ok(Message::Binary(b))) => dec.handle_bytes(&b),
                            Some(Ok(Message::Close(c))) => return close_text(c),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return format!("connection error: {e}"),
                            None => return "server closed without a close frame (1006)".to_string(),
                        }
                    }
                };
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                let writer = async {
                    while let Some(p) = rx.recv().await {
                        let Some(wire) = seal(&p) else { continue };
                        if sink.send(Message::Binary(wire.encode().into())).await.is_err() {
                            break;
                        }
                        sent += 1;
                        *sent_types.entry(p.packet_type.to_string()).or_default() += 1;
                    }
                    tokio::time::sleep(tail).await;
                    let _ = sink.send(Message::Close(None)).await;
                    let _ = done_tx.send(());
                };
                let (_, end, _) =
                    tokio::join!(sender, bounded(reader, done_rx, Duration::from_secs(1)), writer);
                received.end = Some(end);
            }
        }
    }
    let duration_ms = started.elapsed().as_secs_f64() * 1e3;
    let expected: Vec<PacketType> =
        flow.script.iter().filter(|p| p.dir == Dir::ServerToClient).map(|p| p.packet.packet_type).collect();
    let mut r = SessionReplay {
        flow: flow.id,
        captured_transport: flow.transport,
        fresh_handshake: flow.encrypted,
        handshake,
        sent,
        skipped,
        sent_types,
        expected_types: count(&expected),
        received_types: count(&received.types),
        expected_order: first_seen(&expected),
        received_order: first_seen(&received.types),
        captured_end: flow.ending.clone(),
        live_end: received.end.unwrap_or_default(),
        duration_ms,
        divergences: Vec::new(),
    };
    r.divergences = divergences(&r, sent_count as u64, flow.encrypted);
    Ok(r)
}

/// Runs the reader until the server ends the connection, or until `limit` after the writer is done (it has
/// closed its half by then): the reader's verdict on how the session ended.
async fn bounded(
    reader: impl std::future::Future<Output = String>,
    writer_done: tokio::sync::oneshot::Receiver<()>,
    limit: Duration,
) -> String {
    tokio::select! {
        end = reader => end,
        _ = async {
            let _ = writer_done.await;
            tokio::time::sleep(limit).await;
        } => "still open when the replay stopped listening".into(),
    }
}

fn count(types: &[PacketType]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for t in types {
        *m.entry(t.to_string()).or_default() += 1;
    }
    m
}

fn first_seen(types: &[PacketType]) -> Vec<String> {
    let mut seen = Vec::new();
    for t in types {
        let s = t.to_string();
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen
}

/// Differences worth a developer's attention: types the captured server sent that the live one never did
/// (and the reverse), a different first-seen order, a session the live server ended before the client was
/// done, or client packets that could not be sent; for an encrypted capture, a failed fresh handshake.
fn divergences(r: &SessionReplay, planned: u64, encrypted: bool) -> Vec<String> {
    let mut d = Vec::new();
    if let Some(e) = r.handshake.as_ref().and_then(|h| h.error.as_ref()) {
        d.push(format!("the fresh handshake failed: {e}"));
        return d;
    }
    if r.sent < planned {
        d.push(format!("only {} of {planned} client packets could be sent", r.sent));
    }
    if r.live_end.starts_with("server") && r.sent < planned {
        d.push(format!("the live server ended the session early: {}", r.live_end));
    }
    if r.live_end.starts_with("undecodable") || r.live_end.starts_with("connection error") {
        d.push(r.live_end.clone());
    }
    if encrypted {
        // The captured answers after the handshake are ENCRYPTED (their inner types are unknown): compare
        // the handshake packet types (when the transport, which shapes the handshake, is the captured one),
        // and that the live server answered at all once it was done.
        let hs = |t: &str| t.starts_with("CRYPTO_") || t.starts_with("PROTOCOL_VERSION");
        let same_transport = r.handshake.as_ref().is_some_and(|h| h.transport == r.captured_transport);
        let missing: Vec<&String> =
            r.expected_types.keys().filter(|t| hs(t) && !r.received_types.contains_key(*t)).collect();
        if same_transport && !missing.is_empty() {
            d.push(format!("handshake types the captured server sent but the live one did not: {missing:?}"));
        }
        let answered = |m: &BTreeMap<String, u64>| m.keys().any(|t| !hs(t));
        if answered(&r.expected_types) && !answered(&r.received_types) {
            d.push("the captured server answered after the handshake, the live one sent nothing".into());
        }
        return d;
    }
    // The real server's handshake offers and media pacing vary; compare what a plaintext session must see.
    let ignorable =
        |t: &str| t.starts_with("CRYPTO_") || t.starts_with("ASCII_FRAME") || t.starts_with("CLEAR_CONSOLE");
    let missing: Vec<&String> =
        r.expected_types.keys().filter(|t| !ignorable(t) && !r.received_types.contains_key(*t)).collect();
    if !missing.is_empty() {
        d.push(format!("types the captured server sent but the live one did not: {missing:?}"));
    }
    let extra: Vec<&String> =
        r.received_types.keys().filter(|t| !r.expected_types.contains_key(*t)).collect();
    if !extra.is_empty() {
        d.push(format!("types the live server sent that the captured one did not: {extra:?}"));
    }
    let order = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|t| {
                !ignorable(t) && r.expected_types.contains_key(*t) && r.received_types.contains_key(*t)
            })
            .cloned()
            .collect()
    };
    let (e, g) = (order(&r.expected_order), order(&r.received_order));
    if e != g {
        d.push(format!("first-seen order differs: captured {e:?}, live {g:?}"));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("tcp://127.0.0.1:27224"),
            Ok(Target::Tcp("127.0.0.1:27224".parse().unwrap()))
        );
        assert_eq!(
            parse_target("ws://[::1]:27226"),
            Ok(Target::Ws { addr: "[::1]:27226".parse().unwrap(), url: "ws://[::1]:27226/".into() })
        );
        assert!(parse_target("http://x:1").is_err());
        assert!(parse_target("tcp://nohost.invalid").is_err());
    }

    #[test]
    fn substitutes_by_inner_size() {
        assert_eq!(
            substitute(160, Dialect::Feb).map(|p| p.packet_type),
            Some(PacketType::CLIENT_CAPABILITIES)
        );
        let img = substitute(230_424, Dialect::Feb).expect("an image size");
        assert_eq!(img.payload.len(), 230_424);
        assert_eq!(&img.payload[..8], &[0, 0, 1, 64, 0, 0, 0, 240], "320x240");
        assert_eq!(substitute(7, Dialect::Feb), None);
        assert_eq!(dimensions(921_600 / 3), Some((640, 480)));
    }
}
