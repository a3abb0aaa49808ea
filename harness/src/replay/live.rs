//! Replaying the client side of captured sessions against a live server (`--against`), with the captured
//! timing (`--speed X` scales it, `--fast` drops it), and comparing what the server answers with what the
//! captured server answered: packet types, their first-seen order, and how the connection ended.
//!
//! Plaintext captures are replayed packet for packet as a fresh plaintext session (ACIP-SPEC.md 4.6: a
//! client whose first packet is CLIENT_CAPABILITIES is served in plaintext by any server).
//!
//! Encrypted captures cannot be replayed byte for byte (the keys are gone), so each is replayed as a fresh
//! encrypted session: `acip::conn`'s client connection in [`CryptoMode::Encrypt`], in the capture's
//! dialect, over the target's transport (TCP: the client speaks first, 4.3; WebSocket: the server does,
//! 4.4), instead of the captured handshake; then every captured ENCRYPTED packet becomes a synthetic packet
//! of the same inner size, its type inferred from that size (160/168 CLIENT_CAPABILITIES, 4 STREAM_START,
//! 0 PING, w*h*3+24 IMAGE_FRAME), sealed with the new session (4.5) at the captured time. The server's
//! ENCRYPTED answers are decrypted so their inner types are compared. The report flags such sessions
//! `fresh_handshake`. Sessions run one after the other.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use acip::codec::payloads::{ClientCapabilities, ImageFrame, StreamStart};
use acip::conn::ConnConfig;
use acip::crypto::CryptoMode;
use acip::{Dialect, Packet, PacketType};
use serde::Serialize;

use crate::peer::{Peer, Seen};

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

/// How the replay's client tells the session's end, in the words the report and its divergences use.
fn end_text(seen: &Seen, ws: bool) -> String {
    match (seen, ws) {
        (Seen::Close { code, .. }, _) => format!("server sent close {code}"),
        (Seen::Eof(why), false) if why == "eof" => "server closed (FIN)".into(),
        (Seen::Eof(why), true) if why == "eof" => "server closed without a close frame (1006)".into(),
        (Seen::Eof(why), false) => format!("server reset ({why})"),
        (Seen::Eof(why), true) => format!("connection error: {why}"),
        (Seen::Garbage(why), false) => format!("undecodable server stream: {why}"),
        (Seen::Garbage(why), true) => format!("undecodable server message: {why}"),
        (Seen::Timeout, _) => "still open when the replay stopped listening".into(),
        (Seen::Packet(p), _) => format!("still open (last seen: {})", p.packet_type),
    }
}

/// How long the replay listens for the server's end after closing its own side.
const CLOSE_LISTEN: Duration = Duration::from_secs(1);

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
    let ws = target.is_ws();
    // One connection through acip::conn: plaintext captures as a plaintext client, encrypted ones with a
    // fresh ENCRYPT handshake (fresh keys per replay: the seed comes from the OS). The replay sends only
    // the captured client packets, so the connection does not answer PINGs by itself.
    let mut config = ConnConfig::new(flow.dialect, target.transport(), rand::random());
    config.handshake.mode = if flow.encrypted { CryptoMode::Encrypt } else { CryptoMode::None };
    config.answer_pings = false;
    let mut peer =
        Peer::connect(target, config).await.map_err(|e| crate::Error::Verdict(format!("{target}: {e}")))?;
    let started = Instant::now();
    let mut received: Vec<PacketType> = Vec::new();
    let mut end: Option<String> = None;
    let handshake = if flow.encrypted {
        let r = peer.handshake(acip::crypto::DEFAULT_TOTAL_TIMEOUT + Duration::from_secs(1)).await;
        let log = peer.handshake_log();
        let names = |sent: bool| log.iter().filter(|(s, _)| *s == sent).map(|(_, t)| t.to_string()).collect();
        received.extend(log.iter().filter(|(s, _)| !*s).map(|(_, t)| *t));
        let error = match &r {
            Ok(true) => None,
            Ok(false) => Some("the handshake completed without a traffic key".to_string()),
            Err(Seen::Garbage(e)) => Some(format!("handshake error: {e}")),
            Err(seen) => {
                let e = end_text(seen, ws);
                end = Some(e.clone());
                Some(e)
            }
        };
        Some(HandshakeReplay {
            dialect: flow.dialect,
            transport: if ws { Transport::WebSocket } else { Transport::Tcp },
            sent: names(true),
            received: names(false),
            completed: error.is_none(),
            error,
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    } else {
        None
    };
    let handshake_failed = handshake.as_ref().is_some_and(|h| !h.completed);
    let sent_count = script.len();
    let mut sent = 0u64;
    let mut sent_types: BTreeMap<String, u64> = BTreeMap::new();
    let tail = scale(captured_tail).max(Duration::from_millis(200));
    if !handshake_failed {
        // Offsets count from the captured session start, so a fresh handshake takes the captured one's
        // place in the schedule. Until each packet is due, what the server says is read; once the server
        // has ended the session the remaining packets are still written while the socket takes them.
        for (t, p) in script {
            let due = tokio::time::Instant::from_std(started + scale(t));
            while end.is_none() {
                let left = due.saturating_duration_since(tokio::time::Instant::now());
                match peer.next(left).await {
                    Seen::Timeout => break,
                    Seen::Packet(p) => received.push(p.packet_type),
                    other => end = Some(end_text(&other, ws)),
                }
            }
            tokio::time::sleep_until(due).await;
            let t = p.packet_type.to_string();
            if peer.send(p).await.is_err() {
                break;
            }
            sent += 1;
            *sent_types.entry(t).or_default() += 1;
        }
        // The captured tail, then our close, then at most CLOSE_LISTEN for the server's end.
        let tail_end = tokio::time::Instant::now() + tail;
        while end.is_none() {
            match peer.next(tail_end.saturating_duration_since(tokio::time::Instant::now())).await {
                Seen::Timeout => break,
                Seen::Packet(p) => received.push(p.packet_type),
                other => end = Some(end_text(&other, ws)),
            }
        }
        if end.is_none() {
            let closing = if ws {
                peer.close(acip::ws::close_code::NORMAL, CLOSE_LISTEN).await
            } else {
                let _ = peer.shutdown_write().await;
                let deadline = tokio::time::Instant::now() + CLOSE_LISTEN;
                loop {
                    match peer.next(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
                        Seen::Packet(p) => received.push(p.packet_type),
                        other => break other,
                    }
                }
            };
            end = Some(end_text(&closing, ws));
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
        received_types: count(&received),
        expected_order: first_seen(&expected),
        received_order: first_seen(&received),
        captured_end: flow.ending.clone(),
        live_end: end.unwrap_or_default(),
        duration_ms,
        divergences: Vec::new(),
    };
    r.divergences = divergences(&r, sent_count as u64, flow.encrypted);
    Ok(r)
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
