//! Replaying the client side of captured sessions against a live server (`--against`), with the captured
//! timing (`--speed X` scales it, `--fast` drops it), and comparing what the server answers with what the
//! captured server answered: packet types, their first-seen order, and how the connection ended.
//!
//! Each session is a fresh plaintext session (ACIP-SPEC.md 4.6: a client whose first packet is
//! CLIENT_CAPABILITIES is served in plaintext by any server). Plaintext captures are replayed packet for
//! packet. Encrypted captures are replayed in plaintext too: this harness does not run `acip::crypto`'s
//! handshake yet, so the captured handshake is skipped and every ENCRYPTED packet is replaced by a plaintext
//! packet of the inner size, its type inferred from that size (160/168 CLIENT_CAPABILITIES, 4 STREAM_START,
//! 0 PING, w*h*3+24 IMAGE_FRAME); the report says so per session. Sessions run one after the other.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use acip::codec::payloads::{ClientCapabilities, ImageFrame, StreamStart};
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

/// Where to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `tcp://HOST:PORT`
    Tcp(String),
    /// `ws://HOST:PORT[/path]`
    Ws(String),
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        if let Some(rest) = url.strip_prefix("tcp://") {
            if rest.is_empty() || !rest.contains(':') {
                return Err(format!("--against {url:?}: expected tcp://HOST:PORT"));
            }
            Ok(Target::Tcp(rest.trim_end_matches('/').to_string()))
        } else if url.starts_with("ws://") {
            Ok(Target::Ws(url.to_string()))
        } else {
            Err(format!("--against {url:?}: expected tcp://HOST:PORT or ws://HOST:PORT"))
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Tcp(a) => format!("tcp://{a}"),
            Target::Ws(u) => u.clone(),
        }
    }
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
    /// The capture was encrypted: replayed in plaintext with inferred types (see the module docs).
    pub plaintext_substitute: bool,
    pub sent: u64,
    /// Client packets not sent (handshake of an encrypted capture, broken captured packets).
    pub skipped: u64,
    pub sent_types: BTreeMap<String, u64>,
    pub expected_types: BTreeMap<String, u64>,
    pub received_types: BTreeMap<String, u64>,
    /// Packet types in the order each was first seen.
    pub expected_order: Vec<String>,
    pub received_order: Vec<String>,
    pub captured_end: String,
    pub live_end: String,
    pub duration_ms: f64,
    pub divergences: Vec<String>,
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
                if r.plaintext_substitute { ", encrypted capture replayed in plaintext" } else { "" },
                r.sent,
                r.skipped,
                r.duration_ms
            );
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
        target: target.describe(),
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
        // Encrypted capture: the handshake is not replayed; ENCRYPTED becomes a plaintext packet.
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

enum Conn {
    Tcp(tokio::net::TcpStream),
    Ws(Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>),
}

async fn connect(target: &Target) -> crate::Result<Conn> {
    let io = |what: String| move |e: std::io::Error| crate::Error::io(what, e);
    match target {
        Target::Tcp(addr) => {
            let s = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr.as_str()))
                .await
                .map_err(|_| crate::Error::Verdict(format!("connecting to {addr}: timed out")))?
                .map_err(io(format!("connecting to {addr}")))?;
            let _ = s.set_nodelay(true);
            Ok(Conn::Tcp(s))
        }
        Target::Ws(url) => {
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
    let conn = connect(target).await?;
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Packet>(64);
    let sent_count = script.len();
    let sender = async move {
        for (t, p) in script {
            tokio::time::sleep_until((started + scale(t)).into()).await;
            if tx.send(p).await.is_err() {
                break;
            }
        }
    };
    let mut sent = 0u64;
    let mut sent_types: BTreeMap<String, u64> = BTreeMap::new();
    let mut received = Received::default();
    let tail = scale(captured_tail).max(Duration::from_millis(200));
    match conn {
        Conn::Tcp(stream) => {
            let (mut rd, mut wr) = stream.into_split();
            let reader = async {
                let mut dec = StreamDecoder::new(acip::Limits::default());
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) => return "server closed (FIN)".to_string(),
                        Ok(n) => {
                            dec.handle_bytes(&buf[..n]);
                            while let Some(r) = dec.poll_packet() {
                                match r {
                                    Ok(p) => received.types.push(p.packet_type),
                                    Err(e) => return format!("undecodable server stream: {e}"),
                                }
                            }
                        }
                        Err(e) => return format!("server reset ({e})"),
                    }
                }
            };
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let writer = async {
                while let Some(p) = rx.recv().await {
                    if wr.write_all(&p.encode()).await.is_err() {
                        break;
                    }
                    sent += 1;
                    *sent_types.entry(p.packet_type.to_string()).or_default() += 1;
                }
                tokio::time::sleep(tail).await;
                let _ = wr.shutdown().await;
                let _ = done_tx.send(());
            };
            let (_, end, _) = tokio::join!(sender, bounded(reader, done_rx, Duration::from_secs(1)), writer);
            received.end = Some(end);
        }
        Conn::Ws(ws) => {
            let (mut sink, mut stream) = (*ws).split();
            let reader = async {
                let mut dec = StreamDecoder::new(acip::Limits::default());
                while let Some(m) = stream.next().await {
                    match m {
                        Ok(Message::Binary(b)) => {
                            dec.handle_bytes(&b);
                            while let Some(r) = dec.poll_packet() {
                                match r {
                                    Ok(p) => received.types.push(p.packet_type),
                                    Err(e) => return format!("undecodable server message: {e}"),
                                }
                            }
                        }
                        Ok(Message::Close(c)) => {
                            return match c {
                                Some(f) => format!("server sent close {}", u16::from(f.code)),
                                None => "server sent close (no code)".to_string(),
                            }
                        }
                        Ok(_) => {}
                        Err(e) => return format!("connection error: {e}"),
                    }
                }
                "server closed without a close frame (1006)".to_string()
            };
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let writer = async {
                while let Some(p) = rx.recv().await {
                    if sink.send(Message::Binary(p.encode().into())).await.is_err() {
                        break;
                    }
                    sent += 1;
                    *sent_types.entry(p.packet_type.to_string()).or_default() += 1;
                }
                tokio::time::sleep(tail).await;
                let _ = sink.send(Message::Close(None)).await;
                let _ = done_tx.send(());
            };
            let (_, end, _) = tokio::join!(sender, bounded(reader, done_rx, Duration::from_secs(1)), writer);
            received.end = Some(end);
        }
    }
    let duration_ms = started.elapsed().as_secs_f64() * 1e3;
    let expected: Vec<PacketType> =
        flow.script.iter().filter(|p| p.dir == Dir::ServerToClient).map(|p| p.packet.packet_type).collect();
    let mut r = SessionReplay {
        flow: flow.id,
        captured_transport: flow.transport,
        plaintext_substitute: flow.encrypted,
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
/// done, or client packets that could not be sent.
fn divergences(r: &SessionReplay, planned: u64, encrypted: bool) -> Vec<String> {
    let mut d = Vec::new();
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
        // The captured answers are ENCRYPTED; only their presence can be compared.
        if r.received_types.is_empty() && !r.expected_types.is_empty() {
            d.push("the captured server answered, the live one sent nothing".into());
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
        assert_eq!(Target::parse("tcp://127.0.0.1:27224"), Ok(Target::Tcp("127.0.0.1:27224".into())));
        assert_eq!(Target::parse("ws://[::1]:27226"), Ok(Target::Ws("ws://[::1]:27226".into())));
        assert!(Target::parse("http://x:1").is_err());
        assert!(Target::parse("tcp://nohost").is_err());
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
