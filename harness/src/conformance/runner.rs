//! The one interpreter of the case catalogue: opens a connection per case through the harness driver
//! (`harness::peer`: a TCP stream, or a WebSocket after its HTTP upgrade), performs the case's steps with
//! the sans-IO core (`acip::ws::encode_frame` with client masking, `acip::codec` packets, the handshake
//! through `acip::conn`, `Session`), collects what the server sends (`peer::Listener`: a background task
//! over `acip::conn::Receiver::observer`, which reports without judging), and grades the observation
//! against the case's expectation for the target (ACIP-SPEC.md 1.4, 4, 6.2).
//!
//! Every wait is bounded (settle time, write timeout, a hard per-case limit), so a server that hangs
//! makes a case FAILED, never the suite stuck.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acip::conn::{ConnConfig, Event as ConnEvent, Input as ConnInput, Output};
use acip::crypto::Session;
use acip::ws::{encode_frame, OpCode};
use acip::{Dialect, Packet, PacketType};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;

use crate::peer::{Heard, Listener};

use super::cases::{Case, Expect, Frag, Outcome, Params, Pkt, Setup, Step, Transport, F};

/// Longest wait for a TCP connect or the HTTP upgrade.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A socket write that makes no progress for this long counts as stalled.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the crypto handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the server's answer to our close (WebSocket CLOSE or TCP FIN).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// A case that has not finished after this long (plus its own waits) is a hang: FAILED.
pub const CASE_LIMIT: Duration = Duration::from_secs(30);
/// The stop-reading flood: bytes the server may swallow without back-pressure before it counts as
/// buffering without bound.
pub const FLOOD_LIMIT: usize = 256 * 1024 * 1024;
/// The flood counts as stalled (back-pressure) when one write makes no progress for this long.
pub const FLOOD_STALL: Duration = Duration::from_millis(500);
/// Pause between the sessions of the reconnect case.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(30);
/// Per-connection retry time in the reconnect case.
pub const RECONNECT_PATIENCE: Duration = Duration::from_millis(500);
/// Largest server frame the reader accepts.
const MAX_SERVER_FRAME: usize = 64 * 1024 * 1024;

/// The server under test: where it is (the workspace's one target type) and what it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoint: reference_client::Target,
    pub dialect: Dialect,
    /// The server runs the crypto handshake (`--encrypting-server`).
    pub encrypting: bool,
}

impl Target {
    /// `ws://HOST:PORT[/path]` or `tcp://HOST:PORT` (resolved now).
    pub fn parse(url: &str, dialect: Dialect, encrypting: bool) -> Result<Target, String> {
        let endpoint = url.parse::<reference_client::Target>().map_err(|e| format!("{url:?}: {e}"))?;
        Ok(Target { endpoint, dialect, encrypting })
    }

    pub fn transport(&self) -> Transport {
        self.endpoint.transport()
    }

    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr()
    }

    /// `Host` header of the upgrade request.
    pub fn host(&self) -> String {
        self.endpoint.host()
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.transport(), self.host())
    }
}

/// The verdict of one case, as Autobahn names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Behaviour {
    #[serde(rename = "OK")]
    Ok,
    /// Accepted, but not as the spec prefers.
    #[serde(rename = "NON-STRICT")]
    NonStrict,
    #[serde(rename = "INFORMATIONAL")]
    Informational,
    /// The target lacks what the case needs (e.g. an encrypting server).
    #[serde(rename = "UNIMPLEMENTED")]
    Unimplemented,
    #[serde(rename = "FAILED")]
    Failed,
}

impl Behaviour {
    pub const ALL: [Behaviour; 5] = [
        Behaviour::Ok,
        Behaviour::NonStrict,
        Behaviour::Informational,
        Behaviour::Unimplemented,
        Behaviour::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Ok => "OK",
            Behaviour::NonStrict => "NON-STRICT",
            Behaviour::Informational => "INFORMATIONAL",
            Behaviour::Unimplemented => "UNIMPLEMENTED",
            Behaviour::Failed => "FAILED",
        }
    }
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one case did: the rows of index.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    pub id: String,
    pub group: String,
    pub description: String,
    pub spec: String,
    /// The expectation for this target, in words.
    pub expected: String,
    pub behaviour: Behaviour,
    /// How the connection ended: `OK` (close handshake or, on TCP, a close), `UNCLEAN` (WebSocket without
    /// a close frame, 1006), `FAILED` (the server did not close after ours).
    pub behaviour_close: String,
    pub duration_ms: u64,
    /// The WebSocket close code the server sent (or echoed); `None` on TCP or without a close frame.
    pub close_code: Option<u16>,
    pub close_reason: Option<String>,
    pub sent: String,
    pub received: String,
    /// Why this behaviour.
    pub detail: String,
}

#[derive(Debug, Clone)]
struct Closed {
    code: Option<u16>,
    reason: String,
    frame: bool,
}

/// Everything observed on one connection.
#[derive(Debug, Default)]
struct Obs {
    log: Vec<String>,
    counts: BTreeMap<PacketType, usize>,
    ws_pongs: usize,
    pings_sent: usize,
    probe_sent: bool,
    closed: Option<Closed>,
    write_error: Option<String>,
    /// Hard failures found by a step (a missed deadline, a failed reconnect).
    violations: Vec<String>,
    notes: Vec<String>,
    sent: Vec<String>,
    flood: Option<FloodResult>,
    /// Packets kept for the handshake driver.
    keep: bool,
    inbox: VecDeque<Packet>,
}

#[derive(Debug, Clone, PartialEq)]
enum FloodResult {
    /// Writes stopped making progress after this many bytes: back-pressure.
    Stalled(usize),
    /// The server ended the connection.
    Closed(usize, String),
    /// The server swallowed the limit without back-pressure.
    Unbounded(usize),
    /// Neither within the flood duration.
    Inconclusive(usize),
    /// The flood connection could not be set up.
    NoConnection(String),
}

impl Obs {
    fn count(&self, t: PacketType) -> usize {
        self.counts.get(&t).copied().unwrap_or(0)
    }

    fn usable(&self) -> bool {
        // A failed write (e.g. a reset after a refusal) makes a connection unusable even if no PING was
        // counted as sent.
        self.closed.is_none()
            && self.write_error.is_none()
            && self.probe_sent
            && self.count(PacketType::PONG) >= self.pings_sent
    }

    fn received_summary(&self) -> String {
        // Runs of the same event are folded: "ASCII_FRAME x12".
        let mut out: Vec<(String, usize)> = Vec::new();
        for e in &self.log {
            match out.last_mut() {
                Some((last, n)) if last == e => *n += 1,
                _ => out.push((e.clone(), 1)),
            }
        }
        let parts: Vec<String> =
            out.into_iter().map(|(e, n)| if n > 1 { format!("{e} x{n}") } else { e }).collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One connection to the target.
struct Conn {
    w: OwnedWriteHalf,
    /// What the server sends, read in the background (`harness::peer::Listener`).
    heard: Listener,
    transport: Transport,
    dialect: Dialect,
    session: Option<Session>,
    masks: acip::ws::MaskKeys,
    obs: Obs,
}

impl Conn {
    /// Connects (and upgrades, for WebSocket). `small_buffers`: tiny socket buffers, so a peer that
    /// stops reading is felt quickly.
    async fn open(target: &Target, small_buffers: bool, seed: u32) -> Result<Conn, String> {
        let (stream, leftover) = crate::peer::open_stream(&target.endpoint, small_buffers).await?;
        let (r, w) = stream.into_split();
        Ok(Conn {
            w,
            heard: Listener::spawn(r, leftover, target.transport(), MAX_SERVER_FRAME),
            transport: target.transport(),
            dialect: target.dialect,
            session: None,
            masks: acip::ws::MaskKeys::new(seed),
            obs: Obs::default(),
        })
    }

    /// A fresh masking key.
    fn mask(&mut self) -> [u8; 4] {
        self.masks.next_key()
    }

    fn frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8], out: &mut Vec<u8>) {
        let m = self.mask();
        encode_frame(opcode, fin, Some(m), payload, out);
    }

    fn absorb(&mut self, ev: Heard) {
        match ev {
            Heard::Packet(p) => {
                let p = match (&self.session, p.packet_type) {
                    (Some(s), PacketType::ENCRYPTED) => match s.decrypt(&p) {
                        Ok(inner) => inner,
                        Err(e) => {
                            self.obs.log.push(format!("undecryptable ENCRYPTED ({e})"));
                            return;
                        }
                    },
                    _ => p,
                };
                *self.obs.counts.entry(p.packet_type).or_default() += 1;
                self.obs.log.push(p.packet_type.name().to_string());
                if self.obs.keep {
                    self.obs.inbox.push_back(p);
                }
            }
            Heard::WsPing => self.obs.log.push("WS PING".into()),
            Heard::WsPong => {
                self.obs.ws_pongs += 1;
                self.obs.log.push("WS PONG".into());
            }
            Heard::Close(code, reason) => {
                self.obs.log.push(match code {
                    Some(c) => format!("CLOSE {c} {reason:?}"),
                    None => "CLOSE (no code)".into(),
                });
                if self.obs.closed.is_none() {
                    self.obs.closed = Some(Closed { code: code.or(Some(1005)), reason, frame: true });
                }
            }
            Heard::Eof | Heard::Error(_) => {
                let reason = match ev {
                    Heard::Error(e) => e,
                    _ => "EOF".into(),
                };
                self.obs.log.push(reason.clone());
                if self.obs.closed.is_none() {
                    self.obs.closed = Some(Closed { code: None, reason, frame: false });
                }
            }
        }
    }

    fn pump(&mut self) {
        while let Some(ev) = self.heard.try_next() {
            self.absorb(ev);
        }
    }

    /// Absorbs events until `done` holds or `deadline` passes; returns whether `done` held.
    async fn wait_until(&mut self, deadline: Instant, done: impl Fn(&Obs) -> bool) -> bool {
        loop {
            self.pump();
            if done(&self.obs) {
                return true;
            }
            match self.heard.next_before(deadline.into()).await {
                Some(ev) => self.absorb(ev),
                None => {
                    self.pump();
                    return done(&self.obs);
                }
            }
        }
    }

    /// Writes `bytes`, at most `chop` bytes per write. `false` (and the error recorded) if the socket
    /// refused or stalled.
    async fn write(&mut self, bytes: &[u8], chop: Option<usize>) -> bool {
        if self.obs.write_error.is_some() {
            return false;
        }
        let size = chop.unwrap_or(bytes.len()).max(1);
        for chunk in bytes.chunks(size) {
            let r = tokio::time::timeout(WRITE_TIMEOUT, self.w.write_all(chunk)).await;
            let err = match r {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("write stalled for {} ms", WRITE_TIMEOUT.as_millis()),
            };
            self.obs.write_error = Some(err);
            return false;
        }
        true
    }

    /// The bytes of one packet as sent: encrypted once a session exists (unless the case says plain).
    fn packet_bytes(&mut self, pkt: &Pkt) -> Vec<u8> {
        if pkt.encryptable() {
            if let (Some(s), Some(p)) = (self.session.as_mut(), pkt.packet(self.dialect)) {
                if Session::wants_encryption(p.packet_type) {
                    if let Ok(e) = s.encrypt(&p) {
                        return e.encode();
                    }
                }
            }
        }
        pkt.bytes(self.dialect)
    }

    /// Sends one packet as a whole message (WebSocket) or on the stream (TCP).
    async fn send_packet(&mut self, pkt: &Pkt) -> bool {
        let b = self.packet_bytes(pkt);
        let wire = self.whole_message(&b);
        let ok = self.write(&wire, None).await;
        if ok {
            self.obs.pings_sent += pkt.pings();
        }
        ok
    }

    fn whole_message(&mut self, b: &[u8]) -> Vec<u8> {
        match self.transport {
            Transport::Tcp => b.to_vec(),
            Transport::WebSocket => {
                let mut out = Vec::with_capacity(b.len() + 14);
                self.frame(OpCode::Binary, true, b, &mut out);
                out
            }
        }
    }

    fn pause_reading(&self, paused: bool) {
        self.heard.pause(paused);
    }

    /// The crypto handshake as a client (4.3 on TCP, 4.4 on WebSocket) through `acip::conn` (packets in and
    /// out whole: this connection frames its own messages), leaving `session` set. Only the suite's own
    /// deadline applies ([`HANDSHAKE_TIMEOUT`]), not the connection's per-packet timers.
    async fn handshake(&mut self, seed: u64) -> Result<(), String> {
        let mut cfg = ConnConfig::new(self.dialect, self.transport, seed);
        cfg.frame_ws = false;
        cfg.answer_pings = false;
        let mut conn = acip::conn::Conn::client(cfg, Instant::now());
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        self.obs.keep = true;
        let result = loop {
            let (mut done, mut failed) = (false, None);
            while let Some(out) = conn.poll_output() {
                match out {
                    Output::Transmit(b) => {
                        let wire = self.whole_message(&b);
                        if !self.write(&wire, None).await {
                            break;
                        }
                    }
                    Output::Event(ConnEvent::HandshakeDone { .. }) => done = true,
                    Output::Event(ConnEvent::Violation(e)) => failed = Some(format!("handshake failed: {e}")),
                    Output::Event(_) => {}
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
            if done {
                break Ok(());
            }
            if let Some(e) = &self.obs.write_error {
                break Err(format!("write failed during the handshake: {e}"));
            }
            if !self.wait_until(deadline, |o| !o.inbox.is_empty() || o.closed.is_some()).await {
                break Err("no handshake packet from the server within 5 s".into());
            }
            let Some(p) = self.obs.inbox.pop_front() else {
                break Err("connection closed during the handshake".into());
            };
            conn.handle_input(ConnInput::Packet(p), Instant::now());
        };
        self.obs.keep = false;
        self.obs.inbox.clear();
        result?;
        self.session = conn.into_session();
        if self.session.is_none() {
            return Err("the handshake completed without a session key".into());
        }
        Ok(())
    }
}

/// Frame payload ranges of a message cut by `frag`.
fn cut(len: usize, frag: Frag) -> Vec<(usize, usize)> {
    match frag {
        Frag::Whole | Frag::PerPacket => vec![(0, len)],
        Frag::Size(n) => {
            let n = n.max(1);
            if len == 0 {
                return vec![(0, 0)];
            }
            (0..len).step_by(n).map(|a| (a, (a + n).min(len))).collect()
        }
        Frag::Count(k) => {
            let k = k.max(1);
            let (base, extra) = (len / k, len % k);
            let mut at = 0;
            (0..k)
                .map(|i| {
                    let n = base + usize::from(i < extra);
                    let r = (at, at + n);
                    at += n;
                    r
                })
                .collect()
        }
    }
}

/// Runs one case against the target. Never panics on server behaviour; every wait is bounded.
pub async fn run_case(case: &Case, target: &Target, params: &Params, seed: u64) -> CaseResult {
    let expect = case.expect_for(target.dialect, target.transport());
    let mut result = CaseResult {
        id: case.id.to_string(),
        group: case.group().to_string(),
        description: case.title.to_string(),
        spec: case.spec.to_string(),
        expected: expect.to_string(),
        behaviour: Behaviour::Failed,
        behaviour_close: "-".into(),
        duration_ms: 0,
        close_code: None,
        close_reason: None,
        sent: case.describe_steps(target.dialect, target.transport(), params),
        received: String::new(),
        detail: String::new(),
    };
    if case.needs_encryption && !target.encrypting {
        result.behaviour = Behaviour::Unimplemented;
        result.detail = "needs a server that runs the crypto handshake (--encrypting-server)".into();
        return result;
    }
    let t0 = Instant::now();
    let limit = CASE_LIMIT + params.idle + params.flood + params.reassembly_timeout * 4 + params.settle * 2;
    match tokio::time::timeout(limit, execute(case, &expect, target, params, seed)).await {
        Ok(Ok(done)) => {
            result.behaviour = done.behaviour;
            result.behaviour_close = done.behaviour_close;
            result.close_code = done.close_code;
            result.close_reason = done.close_reason;
            result.received = done.received;
            result.detail = done.detail;
            if !done.sent_notes.is_empty() {
                result.sent.push_str(&format!(" [{}]", done.sent_notes.join("; ")));
            }
        }
        Ok(Err(e)) => result.detail = e,
        Err(_) => {
            result.detail = format!("the case did not finish within {} s: the server hangs", limit.as_secs())
        }
    }
    result.duration_ms = t0.elapsed().as_millis() as u64;
    result
}

struct Done {
    behaviour: Behaviour,
    behaviour_close: String,
    close_code: Option<u16>,
    close_reason: Option<String>,
    received: String,
    detail: String,
    sent_notes: Vec<String>,
}

async fn execute(
    case: &Case,
    expect: &Expect,
    target: &Target,
    params: &Params,
    seed: u64,
) -> Result<Done, String> {
    let mut c = Conn::open(target, false, seed as u32).await?;
    match case.setup {
        Setup::None => {}
        Setup::Hello => {
            c.send_packet(&Pkt::Caps).await;
        }
        Setup::Handshake => {
            c.handshake(seed).await?;
            c.send_packet(&Pkt::Caps).await;
        }
    }
    for step in &case.steps {
        if c.obs.write_error.is_some() {
            let note = "later steps skipped: the connection refused writes".to_string();
            c.obs.sent.push(note);
            break;
        }
        run_step(&mut c, step, target, params, seed).await;
        c.pump();
    }
    if case.probe && c.obs.closed.is_none() && c.obs.write_error.is_none() {
        // The probe: the connection is usable if this PING (and every earlier one) is answered.
        c.obs.probe_sent = c.send_packet(&Pkt::Ping).await;
    }
    let settle = Instant::now() + params.settle;
    let prefer = expect.prefer.clone();
    c.wait_until(settle, |o| {
        o.closed.is_some()
            || match &prefer {
                Outcome::Usable | Outcome::Bounded => o.usable(),
                Outcome::UsableWsPong => o.usable() && o.ws_pongs > 0,
                Outcome::Any => o.probe_sent && o.usable(),
                Outcome::Reply(t, n) => o.count(*t) >= *n,
                Outcome::Close { .. } | Outcome::Silent => false,
            }
    })
    .await;
    let (behaviour, detail) = grade(expect, &c.obs, target.transport());
    // The close phase: who closed, and how.
    let (behaviour_close, close_code, close_reason) = match c.obs.closed.clone() {
        Some(cl) => {
            let b = if cl.frame || target.transport() == Transport::Tcp { "OK" } else { "UNCLEAN" };
            (b.to_string(), cl.code.filter(|_| cl.frame), Some(cl.reason))
        }
        None => close_ours(&mut c).await,
    };
    let mut detail = detail;
    if let Some(e) = &c.obs.write_error {
        detail.push_str(&format!("; a write failed: {e}"));
    }
    if !c.obs.notes.is_empty() {
        detail.push_str(&format!("; {}", c.obs.notes.join("; ")));
    }
    Ok(Done {
        behaviour,
        behaviour_close,
        close_code,
        close_reason,
        received: c.obs.received_summary(),
        detail,
        sent_notes: std::mem::take(&mut c.obs.sent),
    })
}

/// Ends a connection the server left open: WebSocket CLOSE 1000 (expect the echo), TCP FIN (expect EOF).
async fn close_ours(c: &mut Conn) -> (String, Option<u16>, Option<String>) {
    let sent = match c.transport {
        Transport::WebSocket => {
            let mut out = Vec::new();
            c.frame(OpCode::Close, true, &1000u16.to_be_bytes(), &mut out);
            c.write(&out, None).await
        }
        Transport::Tcp => c.w.shutdown().await.is_ok(),
    };
    if !sent {
        return ("UNCLEAN".into(), None, Some("our close could not be written".into()));
    }
    c.pause_reading(false);
    c.wait_until(Instant::now() + CLOSE_TIMEOUT, |o| o.closed.is_some()).await;
    match c.obs.closed.clone() {
        Some(cl) if cl.frame || c.transport == Transport::Tcp => {
            ("OK".into(), cl.code.filter(|_| cl.frame), Some(cl.reason))
        }
        Some(cl) => ("UNCLEAN".into(), None, Some(cl.reason)),
        None => ("FAILED".into(), None, Some("the server did not close after our close".into())),
    }
}

async fn run_step(c: &mut Conn, step: &Step, target: &Target, params: &Params, seed: u64) {
    match step {
        Step::Send { pkt, frag, gap, chop } => {
            let messages: Vec<Vec<u8>> = match (frag, pkt) {
                (Frag::PerPacket, Pkt::Concat(ps)) => ps.iter().map(|p| c.packet_bytes(p)).collect(),
                _ => vec![c.packet_bytes(pkt)],
            };
            let mut frames: Vec<Vec<u8>> = Vec::new();
            for m in &messages {
                match c.transport {
                    Transport::Tcp => frames.push(m.clone()),
                    Transport::WebSocket => {
                        let ranges = cut(m.len(), *frag);
                        let last = ranges.len() - 1;
                        for (i, (a, b)) in ranges.into_iter().enumerate() {
                            let op = if i == 0 { OpCode::Binary } else { OpCode::Continuation };
                            let mut out = Vec::new();
                            c.frame(op, i == last, &m[a..b], &mut out);
                            frames.push(out);
                        }
                    }
                }
            }
            let ok = match gap {
                None => {
                    let all: Vec<u8> = frames.concat();
                    c.write(&all, *chop).await
                }
                Some(g) => {
                    let g = g.resolve(params);
                    let n = frames.len();
                    let mut ok = true;
                    for (i, f) in frames.iter().enumerate() {
                        if !c.write(f, *chop).await {
                            ok = false;
                            break;
                        }
                        if i + 1 < n && c.wait_until(Instant::now() + g, |o| o.closed.is_some()).await {
                            c.obs.sent.push(format!("closed by the server after frame {} of {n}", i + 1));
                            ok = false;
                            break;
                        }
                    }
                    ok
                }
            };
            if ok {
                c.obs.pings_sent += pkt.pings();
            }
        }
        Step::Frames { pkt, frames } => {
            if c.transport != Transport::WebSocket {
                c.obs.sent.push("hand-made frames skipped on TCP".into());
                return;
            }
            let bytes = c.packet_bytes(pkt);
            let mut out = Vec::new();
            let mut data_bytes = 0;
            for f in frames {
                match f {
                    F::Data { opcode, fin, part } => {
                        let p = part.slice(&bytes);
                        data_bytes += p.len();
                        c.frame(*opcode, *fin, p, &mut out);
                    }
                    F::Control { opcode, payload } => c.frame(*opcode, true, payload, &mut out),
                    F::Odd { b0, masked, part } => {
                        let p = part.slice(&bytes);
                        data_bytes += p.len();
                        let at = out.len();
                        let mask = if *masked { Some(c.mask()) } else { None };
                        encode_frame(OpCode::from_u8(*b0), b0 & 0x80 != 0, mask, p, &mut out);
                        out[at] = *b0;
                    }
                }
            }
            if c.write(&out, None).await && data_bytes == bytes.len() {
                c.obs.pings_sent += pkt.pings();
            }
        }
        Step::Wire { bytes, .. } => {
            c.write(bytes, None).await;
        }
        Step::Wait(d) => {
            let until = Instant::now() + d.resolve(params);
            c.wait_until(until, |o| o.closed.is_some()).await;
        }
        Step::Await(t) => {
            let t = *t;
            if !c.wait_until(Instant::now() + params.settle, |o| o.count(t) > 0 || o.closed.is_some()).await
                || c.obs.count(t) == 0
            {
                c.obs.sent.push(format!("{} never came", t.name()));
            }
        }
        Step::Close(code) => match c.transport {
            Transport::WebSocket => {
                let mut out = Vec::new();
                c.frame(OpCode::Close, true, &code.to_be_bytes(), &mut out);
                c.write(&out, None).await;
            }
            Transport::Tcp => {
                let _ = c.w.shutdown().await;
            }
        },
        Step::ShutdownWrite => {
            let _ = c.w.shutdown().await;
        }
        Step::Pipeline { count, within } => {
            let one = c.packet_bytes(&Pkt::Ping);
            let mut all = Vec::with_capacity(count * 32);
            for _ in 0..*count {
                let m = c.whole_message(&one);
                all.extend_from_slice(&m);
            }
            let before = c.obs.count(PacketType::PONG);
            let t0 = Instant::now();
            if !c.write(&all, None).await {
                return;
            }
            c.obs.pings_sent += count;
            let want = before + count;
            let got_all =
                c.wait_until(t0 + *within, |o| o.count(PacketType::PONG) >= want || o.closed.is_some()).await
                    && c.obs.count(PacketType::PONG) >= want;
            let got = c.obs.count(PacketType::PONG) - before;
            if got_all {
                c.obs.notes.push(format!("{count} PONGs in {} ms", t0.elapsed().as_millis()));
            } else {
                c.obs.violations.push(format!("{got} of {count} PONGs within {} ms", within.as_millis()));
            }
        }
        Step::Flood => {
            // The case's own connection keeps talking while the other one floods, so an idle timeout
            // does not end it and its PONGs show the server still serves others.
            let r = keepalive(c, flood(target, params, seed)).await;
            c.obs.notes.push(match &r {
                FloodResult::Stalled(n) => format!("flood: back-pressure after {} KiB", n / 1024),
                FloodResult::Closed(n, e) => format!("flood: server closed after {} KiB ({e})", n / 1024),
                FloodResult::Unbounded(n) => {
                    format!("flood: {} MiB swallowed without back-pressure", n >> 20)
                }
                FloodResult::Inconclusive(n) => format!(
                    "flood: {} MiB in {} ms, no back-pressure and no close",
                    n >> 20,
                    params.flood.as_millis()
                ),
                FloodResult::NoConnection(e) => format!("flood: no connection: {e}"),
            });
            c.obs.flood = Some(r);
        }
        Step::Reconnect { count } => {
            let count = *count;
            let all = async {
                for i in 0..count {
                    if let Err(e) = reconnect_once(target, seed.wrapping_add(i as u64 + 1)).await {
                        return Err(format!("connection {} of {count} failed: {e}", i + 1));
                    }
                    // Like the sequential clients of reconnect10_tcp.pcap: the next one starts a moment
                    // after the previous one has gone, once the server had time to tear it down.
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
                Ok(())
            };
            match keepalive(c, all).await {
                Ok(()) => c.obs.notes.push(format!("{count} of {count} sequential connections served")),
                Err(e) => c.obs.violations.push(e),
            }
        }
    }
}

/// Runs `fut` while the case's own connection sends a PING every 500 ms, so a server's idle timeout
/// (1 s on TCP, 1.4 (b)) does not end it and its PONGs show the server still serves it.
async fn keepalive<T>(c: &mut Conn, fut: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                c.send_packet(&Pkt::Ping).await;
                c.pump();
            }
        }
    }
}

/// A second connection that stops reading and floods: PINGs (whose PONGs pile up server-side) and
/// WebSocket PINGs (whose PONG frames the server must write or refuse to read more).
async fn flood(target: &Target, params: &Params, seed: u64) -> FloodResult {
    let mut c = match Conn::open(target, true, seed as u32 ^ 0x5A5A).await {
        Ok(c) => c,
        Err(e) => return FloodResult::NoConnection(e),
    };
    if !c.send_packet(&Pkt::Caps).await {
        return FloodResult::NoConnection("CLIENT_CAPABILITIES refused".into());
    }
    c.pause_reading(true);
    // Requests whose answers pile up: ACIP PINGs (PONGs) and, on WebSocket, 125-byte WS PINGs (PONG
    // frames), which a server answers from its reader, so its back-pressure shows within a second.
    let mut batch = Vec::new();
    let ping = Pkt::Ping.bytes(target.dialect);
    for _ in 0..200 {
        let m = c.whole_message(&ping);
        batch.extend_from_slice(&m);
        if target.transport() == Transport::WebSocket {
            let mut out = Vec::new();
            c.frame(OpCode::Ping, true, &[0x5A; 125], &mut out);
            batch.extend_from_slice(&out);
        }
    }
    let t0 = Instant::now();
    let mut sent = 0usize;
    loop {
        if sent >= FLOOD_LIMIT {
            return FloodResult::Unbounded(sent);
        }
        if t0.elapsed() >= params.flood {
            return FloodResult::Inconclusive(sent);
        }
        match tokio::time::timeout(FLOOD_STALL, c.w.write_all(&batch)).await {
            Err(_) => return FloodResult::Stalled(sent),
            Ok(Err(e)) => return FloodResult::Closed(sent, e.to_string()),
            Ok(Ok(())) => sent += batch.len(),
        }
    }
}

/// One short session of the reconnect case, retried until [`RECONNECT_PATIENCE`] runs out (a server
/// still tearing down the previous session may refuse briefly; a leaked slot refuses for good).
async fn reconnect_once(target: &Target, seed: u64) -> Result<(), String> {
    let deadline = Instant::now() + RECONNECT_PATIENCE;
    let mut last = String::new();
    while Instant::now() < deadline {
        match session_once(target, seed).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}

async fn session_once(target: &Target, seed: u64) -> Result<(), String> {
    let mut c = Conn::open(target, false, seed as u32).await?;
    c.send_packet(&Pkt::Caps).await;
    c.obs.probe_sent = c.send_packet(&Pkt::Ping).await;
    c.wait_until(Instant::now() + Duration::from_secs(1), |o| o.usable() || o.closed.is_some()).await;
    if !c.obs.usable() {
        return Err(match &c.obs.closed {
            Some(cl) => {
                format!("closed ({}): {}", cl.code.map_or("no code".into(), |x| x.to_string()), cl.reason)
            }
            None => "PING not answered within 1 s".into(),
        });
    }
    let (b, ..) = close_ours(&mut c).await;
    if b == "FAILED" {
        return Err("the server did not close after our close".into());
    }
    Ok(())
}

/// How well an outcome matches.
enum Grade {
    Exact,
    Loose(String),
    Unknown(String),
    Miss(String),
}

fn describe_close(cl: &Closed, t: Transport) -> String {
    match (t, cl.frame, cl.code) {
        (Transport::WebSocket, true, Some(c)) => format!("closed with {c} {:?}", cl.reason),
        (Transport::WebSocket, _, _) => format!("closed without a close frame (1006): {}", cl.reason),
        (Transport::Tcp, _, _) => format!("closed ({})", cl.reason),
    }
}

fn grade_one(o: &Outcome, obs: &Obs, t: Transport) -> Grade {
    let closed = obs.closed.as_ref().map(|cl| describe_close(cl, t));
    match o {
        Outcome::Usable | Outcome::UsableWsPong => {
            if let Some(c) = closed {
                return Grade::Miss(c);
            }
            if !obs.probe_sent {
                return Grade::Miss("the probe PING could not be sent".into());
            }
            if !obs.usable() {
                return Grade::Miss(format!(
                    "{} of {} PINGs answered",
                    obs.count(PacketType::PONG),
                    obs.pings_sent
                ));
            }
            if matches!(o, Outcome::UsableWsPong) && obs.ws_pongs == 0 {
                return Grade::Miss("no WebSocket PONG".into());
            }
            Grade::Exact
        }
        Outcome::Reply(pt, n) => {
            let got = obs.count(*pt);
            if got >= *n {
                Grade::Exact
            } else {
                Grade::Miss(format!(
                    "{got} of {n} {} ({})",
                    pt.name(),
                    closed.unwrap_or_else(|| "still open".into())
                ))
            }
        }
        Outcome::Close { codes, after } => {
            let Some(cl) = &obs.closed else {
                return Grade::Miss("the server kept the connection open".into());
            };
            let text = describe_close(cl, t);
            let mut loose = Vec::new();
            if t == Transport::WebSocket && !codes.is_empty() {
                match (cl.frame, cl.code) {
                    (true, Some(c)) if codes.contains(&c) => {}
                    (true, _) => loose.push(format!("{text}, not the code expected")),
                    (false, _) => loose.push(text.clone()),
                }
            }
            if let Some(a) = after {
                if obs.count(*a) == 0 {
                    loose.push(format!("no {} before the close", a.name()));
                }
            }
            if loose.is_empty() {
                Grade::Exact
            } else {
                Grade::Loose(loose.join("; "))
            }
        }
        Outcome::Silent => match closed {
            Some(c) => Grade::Miss(c),
            None => Grade::Exact,
        },
        Outcome::Bounded => match &obs.flood {
            Some(FloodResult::Stalled(_) | FloodResult::Closed(..)) => {
                match grade_one(&Outcome::Usable, obs, t) {
                    Grade::Exact => Grade::Exact,
                    Grade::Miss(m) | Grade::Loose(m) | Grade::Unknown(m) => {
                        Grade::Miss(format!("bounded, but the other connection was not served: {m}"))
                    }
                }
            }
            Some(FloodResult::Unbounded(n)) => {
                Grade::Miss(format!("{} MiB swallowed without back-pressure", n >> 20))
            }
            Some(FloodResult::Inconclusive(_)) => {
                Grade::Unknown("no back-pressure and no close within the flood time".into())
            }
            Some(FloodResult::NoConnection(e)) => Grade::Miss(format!("flood connection failed: {e}")),
            None => Grade::Miss("no flood ran".into()),
        },
        Outcome::Any => Grade::Unknown(match closed {
            Some(c) => c,
            None if obs.usable() => "stayed usable".into(),
            None => "stayed open".into(),
        }),
    }
}

/// OK for the preferred outcome, NON-STRICT for a loose match or the tolerated outcome, INFORMATIONAL
/// where the spec leaves it open, FAILED otherwise (and always when a step found a hard failure).
fn grade(e: &Expect, obs: &Obs, t: Transport) -> (Behaviour, String) {
    if !obs.violations.is_empty() {
        return (Behaviour::Failed, obs.violations.join("; "));
    }
    match grade_one(&e.prefer, obs, t) {
        Grade::Exact => (Behaviour::Ok, format!("as expected: {}", e.prefer)),
        Grade::Loose(why) => (Behaviour::NonStrict, why),
        Grade::Unknown(why) => (Behaviour::Informational, why),
        Grade::Miss(why) => match e.tolerate.as_ref().map(|o| grade_one(o, obs, t)) {
            Some(Grade::Exact | Grade::Loose(_)) => (
                Behaviour::NonStrict,
                format!("tolerated: {} (preferred: {}; {why})", e.tolerate.as_ref().expect("some"), e.prefer),
            ),
            _ => (Behaviour::Failed, format!("expected {}: {why}", e.prefer)),
        },
    }
}

/// Runs the selected cases that apply to the target, `jobs` at a time (each on its own connection),
/// and returns their results in catalogue order.
pub async fn run_cases(
    cases: &[Case],
    target: &Target,
    params: &Params,
    jobs: usize,
    seed: u64,
) -> Vec<CaseResult> {
    let sem = Arc::new(Semaphore::new(jobs.max(1)));
    let mut handles = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (case, target, params, sem) = (case.clone(), target.clone(), *params, sem.clone());
        let case_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i as u64);
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("the semaphore is never closed");
            run_case(&case, &target, &params, case_seed).await
        }));
    }
    let mut out = Vec::with_capacity(handles.len());
    for (h, case) in handles.into_iter().zip(cases) {
        out.push(match h.await {
            Ok(r) => r,
            Err(e) => CaseResult {
                id: case.id.into(),
                group: case.group().into(),
                description: case.title.into(),
                spec: case.spec.into(),
                expected: case.expect_for(target.dialect, target.transport()).to_string(),
                behaviour: Behaviour::Failed,
                behaviour_close: "-".into(),
                duration_ms: 0,
                close_code: None,
                close_reason: None,
                sent: String::new(),
                received: String::new(),
                detail: format!("the case task failed: {e}"),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_exact() {
        assert_eq!(cut(22, Frag::Count(2)), [(0, 11), (11, 22)]);
        assert_eq!(cut(10, Frag::Count(3)), [(0, 4), (4, 7), (7, 10)]);
        assert_eq!(cut(230_446, Frag::Size(4096)).len(), 57);
        assert_eq!(cut(230_446, Frag::Count(1000)).len(), 1000);
        assert_eq!(cut(22, Frag::Size(1)).len(), 22);
        assert_eq!(cut(0, Frag::Size(4)), [(0, 0)]);
        let c = cut(9262, Frag::Count(4097));
        assert_eq!(c.len(), 4097);
        assert_eq!(c.last().unwrap().1, 9262);
    }

    #[test]
    fn targets_parse() {
        let t = Target::parse("ws://127.0.0.1:27226", Dialect::Feb, false).unwrap();
        assert_eq!((t.transport(), t.addr().port()), (Transport::WebSocket, 27226));
        assert_eq!(t.url(), "ws://127.0.0.1:27226");
        assert!(Target::parse("http://x:1", Dialect::Feb, false).is_err());
        assert!(Target::parse("tcp://127.0.0.1:1/path", Dialect::Feb, false).is_err());
    }

    fn obs_closed(code: Option<u16>, frame: bool) -> Obs {
        Obs { closed: Some(Closed { code, reason: "x".into(), frame }), ..Obs::default() }
    }

    #[test]
    fn grading_rules() {
        let close = Expect { prefer: Outcome::close(&[1002]), tolerate: Some(Outcome::Usable) };
        assert_eq!(grade(&close, &obs_closed(Some(1002), true), Transport::WebSocket).0, Behaviour::Ok);
        assert_eq!(
            grade(&close, &obs_closed(Some(1011), true), Transport::WebSocket).0,
            Behaviour::NonStrict
        );
        assert_eq!(grade(&close, &obs_closed(None, false), Transport::WebSocket).0, Behaviour::NonStrict);
        assert_eq!(grade(&close, &obs_closed(None, false), Transport::Tcp).0, Behaviour::Ok);
        let usable =
            Obs { probe_sent: true, pings_sent: 2, counts: [(PacketType::PONG, 2)].into(), ..Obs::default() };
        assert_eq!(grade(&close, &usable, Transport::WebSocket).0, Behaviour::NonStrict);
        let strict = Expect { prefer: Outcome::close(&[1002]), tolerate: None };
        assert_eq!(grade(&strict, &usable, Transport::WebSocket).0, Behaviour::Failed);
        let want_usable = Expect { prefer: Outcome::Usable, tolerate: None };
        assert_eq!(grade(&want_usable, &usable, Transport::WebSocket).0, Behaviour::Ok);
        let half =
            Obs { probe_sent: true, pings_sent: 2, counts: [(PacketType::PONG, 1)].into(), ..Obs::default() };
        assert_eq!(grade(&want_usable, &half, Transport::WebSocket).0, Behaviour::Failed);
        let mut v = Obs { violations: vec!["slow".into()], ..usable };
        assert_eq!(grade(&want_usable, &v, Transport::WebSocket).0, Behaviour::Failed);
        v.violations.clear();
        let any = Expect { prefer: Outcome::Any, tolerate: None };
        assert_eq!(grade(&any, &v, Transport::WebSocket).0, Behaviour::Informational);
    }
}
