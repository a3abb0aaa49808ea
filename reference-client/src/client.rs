//! One client session ([`Client`]) and the whole-run driver ([`run`]).
//!
//! Session start (ACIP-SPEC.md 4.3/4.4 and 9): transport connect, the crypto handshake driven through the
//! sans-IO `acip::conn` client connection (TCP: the client speaks first; WebSocket: the server does),
//! then CLIENT_CAPABILITIES and STREAM_START(VIDEO). After that, tasks, each owning its state:
//!
//! ```text
//!   caller ── send_frame(seq, intended) ──► build ──► queue ──► writer task (owns the sealing key) ──► socket
//!   pinger task (PING every ping_interval) ──────────► queue ─┘
//!   socket ──► reader task (owns the acip connection: decrypt, rules) ──► validate, count
//!                                                                       ──► ClientReport + ClientObserver
//! ```
//!
//! No session state is shared: the key is split by `Conn::take_sealer` (the writer seals, the reader's
//! connection decrypts), PING send times reach the reader over a bounded channel, and the report is the
//! one measurement sink (one lock per packet). Exactly one writer task owns the write half; with the
//! concurrent-writers fault there are two, locking the socket per fragment.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acip::codec::payloads::{ClientCapabilities, ImageFrame, Payload, StreamStart};
use acip::conn::{Conn, ConnConfig, Event as ConnEvent, Input as ConnInput, Output};
use acip::crypto::{CryptoError, Password, Session, Transport};
use acip::pattern::PatternRenderer;
use acip::stats::Stage;
use acip::{Dialect, Header, Limits, Packet, PacketType};
use bytes::{Buf, BufMut, BytesMut};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::report::{ClientEvent, ClientReport, CloseInfo};
use crate::transport::{self, Incoming, WireSink, WireSource, WriteTiming};
use crate::{ClientConfig, ClientError, Result, SharedObserver, StopAfter};

const HEADER_LEN: usize = acip::codec::HEADER_LEN;
/// Packets waiting for the writer. Small: `send_frame` waits for its own write anyway, so the queue only
/// absorbs PINGs (and, with concurrent writers, the fault's second message).
const QUEUE_DEPTH: usize = 8;
/// PINGs remembered while their PONG is outstanding.
const MAX_PINGS_IN_FLIGHT: usize = 64;
/// How long [`Client::close`] waits for the writer to finish and for the server to close its side.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Secrets prepared once per run: the Argon2id-stretched password (64 MiB, tens of ms) and the identity.
#[derive(Clone, Default)]
pub struct Credentials {
    pub password: Option<Password>,
    pub identity: Option<ed25519_dalek::SigningKey>,
}

impl Credentials {
    /// Derives the password and reads the key file of `config`.
    pub async fn load(config: &ClientConfig) -> Result<Credentials> {
        let password = match config.password.clone() {
            None => None,
            Some(p) => Some(
                tokio::task::spawn_blocking(move || Password::derive(&p))
                    .await
                    .map_err(|e| ClientError::Config(format!("password derivation task: {e}")))??,
            ),
        };
        let identity = match &config.key {
            None => None,
            Some(path) => {
                let raw = tokio::fs::read(path)
                    .await
                    .map_err(|e| ClientError::Config(format!("cannot read key {}: {e}", path.display())))?;
                Some(
                    parse_key(&raw)
                        .map_err(|why| ClientError::Config(format!("key {}: {why}", path.display())))?,
                )
            }
        };
        Ok(Credentials { password, identity })
    }
}

/// An Ed25519 secret seed: 32 raw bytes, or 64 hex digits (surrounding whitespace ignored).
fn parse_key(raw: &[u8]) -> std::result::Result<ed25519_dalek::SigningKey, &'static str> {
    if raw.len() == 32 {
        let seed: [u8; 32] = raw.try_into().expect("32 bytes");
        return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
    }
    let text = std::str::from_utf8(raw).map_err(|_| "neither 32 raw bytes nor hex text")?.trim();
    if text.len() != 64 {
        return Err("expected 32 raw bytes or 64 hex digits");
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| "not hex")?;
    }
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// What the writer puts on the wire for one packet.
enum Body {
    /// Already encoded (a plaintext session, or a handshake-class packet). Mutable: on WebSocket the writer
    /// masks it in place.
    Wire(BytesMut),
    /// To be sealed by the writer, which alone owns the session's sealing key.
    Seal(Packet),
    /// An encoded packet behind [`Session::SEAL_PREFIX`] bytes of room, sealed where it lies by the
    /// writer ([`Session::encrypt_in_place`]): the frame path, with no copy of the pixels.
    SealInPlace(BytesMut),
}

/// Builds IMAGE_FRAMEs with one pass over the pixels (writing them): the pattern's CRCs come from its rows'
/// CRCs ([`PatternRenderer`]), and the buffer of the previous frame is reused once the writer has
/// dropped it (nothing is zeroed or allocated per frame).
struct FrameBuilder {
    renderer: PatternRenderer,
    /// Empty; its capacity is reclaimed from the last frame handed out once that one is dropped.
    pool: BytesMut,
}

impl FrameBuilder {
    fn new(w: u16, h: u16) -> Result<FrameBuilder> {
        let renderer = PatternRenderer::new(w, h).map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(FrameBuilder { renderer, pool: BytesMut::new() })
    }

    /// Frame `seq` as an encoded IMAGE_FRAME behind `room` free bytes (for the sealing prefix).
    /// IMAGE_FRAME header (3.7): width, height, pixel_format RGB24, compressed_size 0, checksum 0,
    /// timestamp 0; the packet CRC is the one the renderer returns.
    fn build(&mut self, room: usize, seq: u64, intended_us: u64, tag: u32) -> BytesMut {
        let FrameBuilder { renderer, pool } = self;
        let payload_len = ImageFrame::HEADER_LEN + renderer.frame_len();
        pool.reserve(room + HEADER_LEN + payload_len);
        pool.put_bytes(0, room + HEADER_LEN);
        let mut img = [0u8; ImageFrame::HEADER_LEN];
        let (w, h) = renderer.size();
        img[0..4].copy_from_slice(&u32::from(w).to_be_bytes());
        img[4..8].copy_from_slice(&u32::from(h).to_be_bytes());
        img[8..12].copy_from_slice(&ImageFrame::RGB24.to_be_bytes());
        pool.put_slice(&img);
        let crc = renderer.render_append(seq, intended_us, tag, acip::crc::crc32c(&img), pool);
        let header = Header {
            packet_type: PacketType::IMAGE_FRAME,
            length: payload_len as u32,
            crc32: crc,
            client_id: 0,
        };
        pool[room..room + HEADER_LEN].copy_from_slice(&header.to_bytes());
        pool.split()
    }
}

/// One packet for the writer.
struct Outgoing {
    /// Type of the (inner) packet, for counting.
    packet_type: PacketType,
    body: Body,
    done: Option<oneshot::Sender<std::result::Result<Sent, String>>>,
}

/// How one waited-for packet went out.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    /// Time to seal it (zero for a plaintext packet).
    encrypt: Duration,
    timing: WriteTiming,
}

/// What the client's tasks share: the measurement sink and the lifecycle signals. No session state: the
/// receive state machine (the `acip` connection, which decrypts) is owned by the reader task
/// ([`Receiving`]), the sealing key by the writer.
struct Shared {
    tag: u32,
    report: Mutex<ClientReport>,
    observer: Option<SharedObserver>,
    /// Verified ASCII frames so far.
    ascii: watch::Sender<u64>,
    /// Set once the read side ended (server close, EOF or a fatal receive error).
    closed: watch::Sender<Option<CloseInfo>>,
    /// The first fatal error of a task.
    fatal: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another task while holding a lock must not hide the measurements: take the data anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn emit(&self, event: ClientEvent) {
        if let Some(o) = &self.observer {
            o.on_event(self.tag, &event);
        }
    }

    fn set_fatal(&self, e: &ClientError) {
        lock(&self.report).counters.count_error(e.kind());
        lock(&self.fatal).get_or_insert_with(|| e.to_string());
    }

    fn close_info(&self) -> Option<CloseInfo> {
        self.closed.borrow().clone()
    }
}

/// The receive side of one session, owned by the reader task: the `acip` client connection after the
/// handshake (packet mode: it decrypts and applies the post-handshake rules), the send times of PINGs in
/// flight and the time of the last ASCII frame. Each packet takes the report lock once.
struct Receiving {
    conn: Conn,
    dialect: Dialect,
    limits: Limits,
    shared: Arc<Shared>,
    /// Send times of PINGs, from whoever sends them (bounded: see [`PingClock`]).
    ping_times: mpsc::Receiver<Instant>,
    in_flight: VecDeque<Instant>,
    last_ascii: Option<Instant>,
}

impl Receiving {
    /// One packet from the server, as it came off the wire.
    fn on_wire(&mut self, packet: Packet) {
        self.conn.handle_input(ConnInput::Packet(packet), Instant::now());
        while let Some(out) = self.conn.poll_output() {
            match out {
                Output::Event(ConnEvent::Packet(p)) => self.on_packet(p),
                Output::Event(ConnEvent::RekeyIgnored(_)) => self.drop_packet("handshake_packet_ignored"),
                Output::Event(ConnEvent::Dropped(acip::Error::Crypto(e))) => match e {
                    // Handshake packets after the handshake: a rekey is ignored (4.8), and so is the rest.
                    CryptoError::UnexpectedHandshakePacket(_) => self.drop_packet("handshake_packet_ignored"),
                    CryptoError::NoSessionKey => self.invalid("encrypted_without_key".into(), e.to_string()),
                    e => self.invalid("decrypt".into(), e.to_string()),
                },
                Output::Event(ConnEvent::Dropped(e) | ConnEvent::Violation(e)) => {
                    self.invalid(e.kind().into(), e.to_string())
                }
                // An ERROR_MESSAGE is handled as the packet it is; the transport reports the close itself.
                Output::Event(_) | Output::Transmit(_) => {}
            }
        }
    }

    fn drop_packet(&self, reason: &str) {
        lock(&self.shared.report).counters.count_drop(reason);
    }

    fn invalid(&self, kind: String, detail: String) {
        lock(&self.shared.report).counters.count_error(&kind);
        self.shared.emit(ClientEvent::Invalid { kind, detail });
    }

    /// Handles one (decrypted) packet from the server: validate, count, report.
    fn on_packet(&mut self, packet: Packet) {
        let t = packet.packet_type;
        // This client plays no audio, like the native client's default (`--audio` off), which drops 4000 and
        // 4001 before parsing them. The real FEB server (4e18ed310) sends every client 4001 packets whose
        // payload is one bare Opus frame (often 3 bytes of silence) instead of the 16-byte batch layout of
        // ACIP-SPEC.md 3.11: counted as a drop so it stays visible without failing the session.
        if matches!(t, PacketType::AUDIO_BATCH | PacketType::AUDIO_OPUS_BATCH) {
            let reason = match Payload::decode_with_limits(&packet, self.dialect, &self.limits) {
                Ok(_) => "audio_not_played",
                Err(_) => "audio_not_a_batch",
            };
            let mut r = lock(&self.shared.report);
            r.counters.count_rx(t, 0);
            r.counters.count_drop(reason);
            return;
        }
        let payload = Payload::decode_with_limits(&packet, self.dialect, &self.limits);
        let mut r = lock(&self.shared.report);
        r.counters.count_rx(t, 0);
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                drop(r);
                return self.invalid(format!("invalid_{}", t.name().to_ascii_lowercase()), e.to_string());
            }
        };
        match payload {
            Payload::AsciiFrame(f) => {
                let now = Instant::now();
                let interval = self.last_ascii.replace(now).map(|prev| now - prev);
                r.ascii_frames += 1;
                r.last_ascii_size = Some((f.width, f.height));
                if let Some(i) = interval {
                    r.record(Stage::AsciiInterval, i);
                }
                if r.snapshot.is_none() {
                    r.snapshot = Some(String::from_utf8_lossy(&f.text).into_owned());
                }
                let count = r.ascii_frames;
                drop(r);
                self.shared.ascii.send_replace(count);
                self.shared.emit(ClientEvent::AsciiFrame {
                    width: f.width,
                    height: f.height,
                    text_bytes: f.text.len(),
                    interval,
                });
            }
            Payload::ServerState(s) => {
                let (connected, active) = (s.connected_client_count, s.active_client_count);
                r.last_server_state = Some((connected, active));
                drop(r);
                self.shared.emit(ClientEvent::ServerState { connected, active });
            }
            Payload::Pong => {
                while let Ok(sent) = self.ping_times.try_recv() {
                    if self.in_flight.len() >= MAX_PINGS_IN_FLIGHT {
                        self.in_flight.pop_front();
                    }
                    self.in_flight.push_back(sent);
                }
                let rtt = self.in_flight.pop_front().map(|sent| sent.elapsed());
                if let Some(rtt) = rtt {
                    r.record(Stage::PingRtt, rtt);
                }
                drop(r);
                self.shared.emit(ClientEvent::Pong { rtt });
            }
            Payload::ClearConsole => {
                drop(r);
                self.shared.emit(ClientEvent::ClearConsole)
            }
            Payload::ErrorMessage(e) => {
                r.error_messages.push((e.error_code, e.message.clone()));
                drop(r);
                self.shared.emit(ClientEvent::ErrorMessage { code: e.error_code, message: e.message });
            }
            Payload::RemoteLog(l) => r.remote_logs.push(l.message),
            // Handshake packets after a plaintext handshake: the server's WebSocket opener when this client
            // runs without encryption (4.4: a foreign peer may ignore them), or a rekey (4.8).
            _ if t.is_handshake() => r.counters.count_drop("handshake_packet_ignored"),
            // The server never sends these to a client (section 2, "Not dispatched by the client").
            _ => {
                drop(r);
                self.invalid(format!("unexpected_{}", t.name().to_ascii_lowercase()), t.to_string())
            }
        }
    }
}

/// Notes when a PING went out, for the RTT of its PONG. Bounded: a server that never answers cannot make
/// the queue grow (a time that does not fit is not kept, and that RTT is not measured).
#[derive(Clone)]
struct PingClock(mpsc::Sender<Instant>);

impl PingClock {
    fn sent(&self) {
        let _ = self.0.try_send(Instant::now());
    }
}

/// A connected ACIP client session. See the module docs for its tasks.
pub struct Client {
    config: ClientConfig,
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Outgoing>>,
    pings: PingClock,
    encrypted: bool,
    writers: Vec<JoinHandle<()>>,
    pinger: JoinHandle<()>,
    reader: JoinHandle<()>,
    started: Instant,
    fragment: Option<usize>,
    /// The frame path's renderer and buffer (only `send_frame` takes it, once per frame).
    frames: Mutex<FrameBuilder>,
}

impl Client {
    /// Connects, runs the handshake, sends CLIENT_CAPABILITIES and STREAM_START, and starts the tasks.
    /// Derives the password first; use [`Client::connect_with`] to reuse [`Credentials`] across sessions.
    pub async fn connect(config: &ClientConfig, observer: Option<SharedObserver>) -> Result<Client> {
        config.validate()?;
        let creds = Credentials::load(config).await?;
        Client::connect_with(config, &creds, observer).await
    }

    /// [`Client::connect`] with credentials prepared once by the caller.
    pub async fn connect_with(
        config: &ClientConfig,
        creds: &Credentials,
        observer: Option<SharedObserver>,
    ) -> Result<Client> {
        config.validate()?;
        let frames = FrameBuilder::new(config.frame.0, config.frame.1)?;
        let started = Instant::now();
        let limit = config.connect_timeout;
        let (sink, source, mut conn, early) = tokio::time::timeout(limit, open(config, creds))
            .await
            .map_err(|_| ClientError::Timeout { what: "connect and handshake", after: limit })??;
        let encrypted = conn.is_encrypted();
        // The writer seals; the connection keeps the decrypting half for the reader.
        let sealer = conn.take_sealer();
        let report = ClientReport {
            target: config.target.to_string(),
            dialect: config.dialect.to_string(),
            mode: config.crypto_mode().to_u8(),
            encrypted,
            tag: config.tag,
            seed: config.seed,
            ..ClientReport::default()
        };
        let shared = Arc::new(Shared {
            tag: config.tag,
            report: Mutex::new(report),
            observer,
            ascii: watch::channel(0).0,
            closed: watch::channel(None).0,
            fatal: Mutex::new(None),
        });
        {
            let mut r = lock(&shared.report);
            r.counters.connections_opened += 1;
            for (t, n) in &early.tx {
                r.counters.count_tx(*t, *n);
            }
            r.counters.bytes_rx += early.rx_bytes;
        }
        let (ping_tx, ping_times) = mpsc::channel(MAX_PINGS_IN_FLIGHT);
        let mut receiving = Receiving {
            conn,
            dialect: config.dialect,
            limits: config.limits,
            shared: shared.clone(),
            ping_times,
            in_flight: VecDeque::new(),
            last_ascii: None,
        };
        for p in early.packets {
            receiving.on_packet(p);
        }

        let fragment = if config.target.is_ws() { config.effective_ws_fragment() } else { None };
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writers = if config.faults.concurrent_writers {
            spawn_concurrent_writers(sink, rx, sealer, shared.clone(), fragment.unwrap_or(4096))
        } else {
            vec![tokio::spawn(writer(sink, rx, sealer, shared.clone(), fragment))]
        };
        let reader = tokio::spawn(reader(source, receiving));
        let pings = PingClock(ping_tx);
        let mut client = Client {
            config: config.clone(),
            shared: shared.clone(),
            tx: Some(tx.clone()),
            pings: pings.clone(),
            encrypted,
            writers,
            pinger: tokio::spawn(async {}),
            reader,
            started,
            fragment,
            frames: Mutex::new(frames),
        };

        // CLIENT_CAPABILITIES is the first post-handshake packet (4.3 step 10), then STREAM_START (9).
        let fps = config.fps.clamp(1, u32::from(ClientCapabilities::MAX_FPS)) as u8;
        let caps = ClientCapabilities::new(config.dialect, config.term.0, config.term.1, fps).to_packet();
        client.send_packet(&caps).await?;
        client.send_packet(&StreamStart::new(StreamStart::VIDEO).to_packet()).await?;

        let handshake = started.elapsed();
        {
            let mut r = lock(&shared.report);
            r.sessions += 1;
            r.record(Stage::Handshake, handshake);
        }
        shared.emit(ClientEvent::Connected { handshake, encrypted });
        client.pinger = tokio::spawn(pinger(tx, pings, config.ping_interval));
        Ok(client)
    }

    /// Sends one packet through the writer and waits until it is written.
    async fn send_packet(&self, packet: &Packet) -> Result<Sent> {
        self.enqueue(packet.packet_type, self.body(packet.clone()), true).await.map(|t| t.unwrap_or_default())
    }

    /// What the writer gets for `packet`: sealed there once the session is encrypted.
    fn body(&self, packet: Packet) -> Body {
        if self.encrypted && Session::wants_encryption(packet.packet_type) {
            Body::Seal(packet)
        } else {
            Body::Wire(BytesMut::from(&packet.encode()[..]))
        }
    }

    async fn enqueue(&self, packet_type: PacketType, body: Body, wait: bool) -> Result<Option<Sent>> {
        let tx = self.tx.as_ref().ok_or_else(|| ClientError::Config("client already closed".into()))?;
        let (done, rx) = if wait {
            let (a, b) = oneshot::channel();
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        if tx.send(Outgoing { packet_type, body, done }).await.is_err() {
            return Err(self.ended_error());
        }
        match rx {
            None => Ok(None),
            Some(rx) => match rx.await {
                Ok(Ok(t)) => Ok(Some(t)),
                Ok(Err(_)) | Err(_) => Err(self.ended_error()),
            },
        }
    }

    /// Why the session cannot send any more.
    fn ended_error(&self) -> ClientError {
        if let Some(c) = self.shared.close_info() {
            return ClientError::Closed { code: c.code, reason: c.reason };
        }
        let why = lock(&self.shared.fatal).clone().unwrap_or_else(|| "writer stopped".into());
        ClientError::Closed { code: None, reason: why }
    }

    /// Builds frame `seq` of the test pattern with `intended_us` (UNIX µs: the *schedule* time, not the
    /// time of the write) embedded, encrypts it if the session is encrypted, and writes it. Returns when
    /// the frame is on the socket (flushed), so a slow write delays the caller's next frame visibly.
    /// With the concurrent-writers fault it returns once queued, and a PING is queued beside it for the
    /// second writer.
    pub async fn send_frame(&self, seq: u64, intended_us: u64) -> Result<()> {
        if let Some(c) = self.shared.close_info() {
            return Err(ClientError::Closed { code: c.code, reason: c.reason });
        }
        let t0 = Instant::now();
        let (body, wire_bytes) = {
            let mut frames = lock(&self.frames);
            if self.encrypted {
                // ENCRYPTED header + nonce + MAC in front of the inner packet (ACIP-SPEC.md 4.5), filled
                // in by the writer when it seals.
                let b = frames.build(Session::SEAL_PREFIX, seq, intended_us, self.config.tag);
                let n = b.len();
                (Body::SealInPlace(b), n)
            } else {
                let b = frames.build(0, seq, intended_us, self.config.tag);
                let n = b.len();
                (Body::Wire(b), n)
            }
        };
        let build = t0.elapsed();
        let concurrent = self.config.faults.concurrent_writers;
        let sent = self.enqueue(PacketType::IMAGE_FRAME, body, !concurrent).await?.unwrap_or_default();
        if concurrent {
            self.pings.sent();
            self.enqueue(PacketType::PING, self.body(Packet::empty(PacketType::PING)), false).await?;
        }
        let (encrypt, timing) = (sent.encrypt, sent.timing);
        {
            let mut r = lock(&self.shared.report);
            r.counters.frames_sent += 1;
            r.record(Stage::ClientBuild, build);
            // Waited-for frames only: with the concurrent-writers fault the writer records it.
            if self.encrypted && !concurrent {
                r.record(Stage::ClientEncrypt, encrypt);
            }
        }
        self.shared.emit(ClientEvent::FrameSent {
            seq,
            intended_us,
            wire_bytes,
            build,
            encrypt,
            write: timing.write + timing.flush,
        });
        Ok(())
    }

    /// Waits until at least `n` verified ASCII frames have arrived (in total); returns the count.
    pub async fn wait_ascii_frames(&self, n: u64, timeout: Duration) -> Result<u64> {
        let mut rx = self.shared.ascii.subscribe();
        let mut closed = self.shared.closed.subscribe();
        let wait = async {
            loop {
                let have = *rx.borrow_and_update();
                if have >= n {
                    return Ok(have);
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return Err(self.ended_error()) },
                    _ = closed.wait_for(|c| c.is_some()) => {
                        let have = *rx.borrow();
                        return if have >= n { Ok(have) } else { Err(self.ended_error()) };
                    }
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ClientError::Timeout { what: "ASCII frames", after: timeout })?
    }

    /// Resolves when the server has ended the session (close, EOF or a fatal receive error).
    pub async fn wait_closed(&self) -> CloseInfo {
        let mut closed = self.shared.closed.subscribe();
        let info = match closed.wait_for(|c| c.is_some()).await {
            Ok(c) => c.clone().unwrap_or_default(),
            Err(_) => CloseInfo::default(),
        };
        info
    }

    /// Whether the server has ended the session.
    pub fn is_closed(&self) -> bool {
        self.shared.close_info().is_some()
    }

    /// A copy of everything measured so far.
    pub fn report(&self) -> ClientReport {
        let mut r = lock(&self.shared.report).clone();
        r.elapsed = self.started.elapsed();
        r
    }

    /// Whether traffic is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The WebSocket fragment size in use (`None`: one frame per message, or TCP).
    pub fn ws_fragment(&self) -> Option<usize> {
        self.fragment
    }

    /// Closes from the client side (TCP FIN / WebSocket close 1000), waits briefly for the server to close
    /// its side, and returns the final report.
    pub async fn close(mut self) -> ClientReport {
        self.pinger.abort();
        let _ = (&mut self.pinger).await;
        // Read before the writers are released: once they are, the server may answer the close and the
        // reader record it before this line would run.
        let by_client = self.shared.close_info().is_none();
        self.tx = None;
        for w in self.writers.drain(..) {
            let _ = tokio::time::timeout(CLOSE_WAIT, w).await;
        }
        if tokio::time::timeout(CLOSE_WAIT, &mut self.reader).await.is_err() {
            self.reader.abort();
        }
        let mut r = self.report();
        r.counters.connections_closed += 1;
        let info = self.shared.close_info().map(|mut c| {
            c.by_client = by_client;
            c
        });
        r.close = info.or(Some(CloseInfo { code: None, reason: "closed by client".into(), by_client: true }));
        self.shared.emit(ClientEvent::Closed(r.close.clone().unwrap_or_default()));
        r
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.pinger.abort();
        self.reader.abort();
        for w in &self.writers {
            w.abort();
        }
    }
}

/// What the handshake phase sent and received besides the handshake itself.
#[derive(Default)]
struct Early {
    /// Packets the server sent in plaintext before the handshake ended (WebSocket, 4.4), to handle later.
    packets: Vec<Packet>,
    tx: Vec<(PacketType, usize)>,
    rx_bytes: u64,
}

/// Connects the transport and runs the handshake through `acip::conn` (the one client connection state
/// machine; the WebSocket library frames messages, so packets go in and out whole).
async fn open(config: &ClientConfig, creds: &Credentials) -> Result<(WireSink, WireSource, Conn, Early)> {
    let (mut sink, mut source) = transport::connect(&config.target, config.dialect, config.limits).await?;
    let transport = if config.target.is_ws() { Transport::WebSocket } else { Transport::Tcp };
    let mut cc = ConnConfig::new(config.dialect, transport, config.seed);
    cc.handshake.mode = config.crypto_mode();
    cc.handshake.password = creds.password.clone();
    cc.handshake.identity = creds.identity.clone();
    cc.limits = config.limits;
    cc.frame_ws = false;
    // PINGs are the session's business once it runs; the handshake phase answers nothing by itself.
    cc.answer_pings = false;
    // After the handshake the reader counts what it cannot decrypt and carries on (as it always has).
    cc.drop_unusable = true;
    let fragment = if config.target.is_ws() { config.effective_ws_fragment() } else { None };
    let mut conn = Conn::client(cc, Instant::now());
    let mut early = Early::default();
    loop {
        let mut done = false;
        while let Some(out) = conn.poll_output() {
            match out {
                Output::Transmit(wire) => {
                    let t = Header::decode(&wire, &config.limits)
                        .map_or(PacketType::Unknown(0), |h| h.packet_type);
                    early.tx.push((t, wire.len()));
                    sink.write_packet(BytesMut::from(wire), fragment).await?;
                }
                Output::Event(ConnEvent::HandshakeDone { .. }) => done = true,
                // Packets the server sent in plaintext before the handshake ended (WebSocket, 4.4).
                Output::Event(ConnEvent::Packet(p)) => early.packets.push(p),
                Output::Event(ConnEvent::Violation(acip::Error::Handshake(e))) => {
                    return Err(ClientError::Handshake(e))
                }
                Output::Event(ConnEvent::Violation(e)) => return Err(ClientError::Protocol(e.to_string())),
                Output::Event(ConnEvent::PeerClosed { code, reason }) => {
                    return Err(ClientError::Closed { code, reason: closed_reason(code, reason) })
                }
                Output::Event(
                    ConnEvent::HandshakePacket { .. } | ConnEvent::Dropped(_) | ConnEvent::RekeyIgnored(_),
                ) => {}
            }
        }
        if done {
            return Ok((sink, source, conn, early));
        }
        let deadline = conn.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            incoming = source.next() => match incoming? {
                Incoming::Packet(p, n) => {
                    early.rx_bytes += n as u64;
                    conn.handle_input(ConnInput::Packet(p), Instant::now());
                }
                Incoming::Closed { code, reason } => return Err(ClientError::Closed { code, reason: closed_reason(code, reason) }),
            },
            _ = sleep_until_opt(deadline) => conn.handle_input(ConnInput::Timeout, Instant::now()),
        }
    }
}

fn closed_reason(code: Option<u16>, reason: String) -> String {
    match (code, reason.is_empty()) {
        (_, false) => reason,
        (Some(c), true) => format!("close code {c}"),
        (None, true) => "connection closed during the handshake".into(),
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Encodes one outgoing packet for the wire, sealing it with the session's key when asked; returns the
/// bytes and the time sealing took. A sealed IMAGE_FRAME's time also goes to the report here when nobody
/// waits for it (the concurrent-writers fault).
fn to_wire(
    sealer: &mut Option<Session>,
    out: &mut Outgoing,
    shared: &Shared,
) -> std::result::Result<(BytesMut, Duration), ClientError> {
    match std::mem::replace(&mut out.body, Body::Wire(BytesMut::new())) {
        Body::Wire(b) => Ok((b, Duration::ZERO)),
        Body::Seal(p) => {
            let t = Instant::now();
            let sealed = match sealer.as_mut() {
                Some(s) => {
                    s.encrypt(&p).map_err(|e| ClientError::Protocol(format!("encrypt: {e}")))?.encode()
                }
                None => p.encode(),
            };
            let d = t.elapsed();
            if out.done.is_none() && p.packet_type == PacketType::IMAGE_FRAME {
                lock(&shared.report).record(Stage::ClientEncrypt, d);
            }
            Ok((BytesMut::from(&sealed[..]), d))
        }
        Body::SealInPlace(mut b) => {
            let t = Instant::now();
            match sealer.as_mut() {
                Some(s) => {
                    s.encrypt_in_place(&mut b).map_err(|e| ClientError::Protocol(format!("encrypt: {e}")))?
                }
                None => b.advance(Session::SEAL_PREFIX),
            }
            let d = t.elapsed();
            if out.done.is_none() && out.packet_type == PacketType::IMAGE_FRAME {
                lock(&shared.report).record(Stage::ClientEncrypt, d);
            }
            Ok((b, d))
        }
    }
}

/// A write failed: record why (unless the server already closed) and tell a waiting sender.
fn write_failed(shared: &Shared, out: Outgoing, e: &ClientError) {
    if shared.close_info().is_none() {
        shared.set_fatal(e);
    }
    if let Some(done) = out.done {
        let _ = done.send(Err(e.to_string()));
    }
}

/// The one writer task: owns the write half and the session's sealing key; seals and writes queued
/// packets in order, then closes the connection when the queue ends.
async fn writer(
    mut sink: WireSink,
    mut rx: mpsc::Receiver<Outgoing>,
    mut sealer: Option<Session>,
    shared: Arc<Shared>,
    fragment: Option<usize>,
) {
    let control = sink.control();
    loop {
        // Control frames tungstenite produced while reading (PONG, the CLOSE reply) go out between packets.
        let next = tokio::select! {
            m = rx.recv() => m,
            () = wait_control(control.as_deref()) => {
                if let Err(e) = sink.write_control().await {
                    shared.set_fatal(&e);
                    return;
                }
                continue;
            }
        };
        let Some(mut out) = next else { break };
        let (wire, encrypt) = match to_wire(&mut sealer, &mut out, &shared) {
            Ok(w) => w,
            Err(e) => return write_failed(&shared, out, &e),
        };
        let len = wire.len();
        match sink.write_packet(wire, fragment).await {
            Ok(t) => {
                {
                    let mut r = lock(&shared.report);
                    r.counters.count_tx(out.packet_type, len);
                    r.record(Stage::ClientWrite, t.write);
                    r.record(Stage::ClientFlush, t.flush);
                }
                if let Some(done) = out.done {
                    let _ = done.send(Ok(Sent { encrypt, timing: t }));
                }
            }
            Err(e) => return write_failed(&shared, out, &e),
        }
    }
    let _ = sink.close().await;
}

async fn wait_control(control: Option<&transport::Control>) {
    match control {
        Some(c) => c.ready().await,
        None => std::future::pending().await,
    }
}

/// The queue and the sealing key of the concurrent-writers fault: whichever writer takes a packet seals
/// it under the same lock, so the key still has one user at a time and its nonces stay in order.
struct SealingQueue {
    rx: mpsc::Receiver<Outgoing>,
    sealer: Option<Session>,
}

/// The concurrent-writers fault: two tasks take packets from one queue and write their fragments,
/// locking the socket per fragment (not per message) and yielding in between, so fragments of different
/// messages interleave on the wire as they did with the old native client's capture thread.
fn spawn_concurrent_writers(
    sink: WireSink,
    rx: mpsc::Receiver<Outgoing>,
    sealer: Option<Session>,
    shared: Arc<Shared>,
    fragment: usize,
) -> Vec<JoinHandle<()>> {
    let sink = Arc::new(tokio::sync::Mutex::new(sink));
    let queue = Arc::new(tokio::sync::Mutex::new(SealingQueue { rx, sealer }));
    let one = |sink: Arc<tokio::sync::Mutex<WireSink>>, queue: Arc<tokio::sync::Mutex<SealingQueue>>| {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                let (mut out, wire) = {
                    let mut q = queue.lock().await;
                    let Some(mut out) = q.rx.recv().await else { return };
                    match to_wire(&mut q.sealer, &mut out, &shared) {
                        Ok((wire, _)) => (out, wire),
                        Err(e) => return write_failed(&shared, out, &e),
                    }
                };
                let (len, start) = (wire.len(), Instant::now());
                let mut result = Ok(());
                for frame in transport::ws_frames(wire.freeze(), Some(fragment)) {
                    result = sink.lock().await.write_ws_frame(frame).await;
                    if result.is_err() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                match result {
                    Ok(()) => {
                        let mut r = lock(&shared.report);
                        r.counters.count_tx(out.packet_type, len);
                        r.record(Stage::ClientWrite, start.elapsed());
                        drop(r);
                        if let Some(done) = out.done.take() {
                            let timing = WriteTiming { write: start.elapsed(), flush: Duration::ZERO };
                            let _ = done.send(Ok(Sent { encrypt: Duration::ZERO, timing }));
                        }
                    }
                    Err(e) => return write_failed(&shared, out, &e),
                }
            }
        })
    };
    let a = one(sink.clone(), queue.clone());
    let b = one(sink.clone(), queue);
    // A third task closes the connection once both writers are done (the queue ended or a write failed).
    vec![tokio::spawn(async move {
        let _ = a.await;
        let _ = b.await;
        let _ = sink.lock().await.close().await;
    })]
}

/// PING every `interval` (the real client: 1 s), through the writer queue (which seals it).
async fn pinger(tx: mpsc::Sender<Outgoing>, pings: PingClock, interval: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        pings.sent();
        let ping = Outgoing {
            packet_type: PacketType::PING,
            body: Body::Seal(Packet::empty(PacketType::PING)),
            done: None,
        };
        if tx.send(ping).await.is_err() {
            return;
        }
    }
}

/// The reader task: every packet through the session's receive state machine ([`Receiving`]) until the
/// server closes or breaks the protocol.
async fn reader(mut source: WireSource, mut receiving: Receiving) {
    let shared = receiving.shared.clone();
    loop {
        match source.next().await {
            Ok(Incoming::Packet(p, n)) => {
                lock(&shared.report).counters.bytes_rx += n as u64;
                receiving.on_wire(p);
            }
            Ok(Incoming::Closed { code, reason }) => {
                // An ERROR_MESSAGE before the close says more than an empty close reason.
                let reason = match (
                    reason.is_empty() || reason == "eof",
                    lock(&shared.report).error_messages.last(),
                ) {
                    (true, Some((c, text))) => format!("ERROR_MESSAGE {c}: {text}"),
                    _ => reason,
                };
                shared.closed.send_replace(Some(CloseInfo { code, reason, by_client: false }));
                return;
            }
            Err(e) => {
                shared.set_fatal(&e);
                shared.closed.send_replace(Some(CloseInfo {
                    code: None,
                    reason: e.to_string(),
                    by_client: false,
                }));
                return;
            }
        }
    }
}

/// Microseconds since the UNIX epoch of `at`, given one reading of both clocks (`base`).
fn unix_us(base: (Instant, SystemTime), at: Instant) -> u64 {
    let since_epoch = base.1.duration_since(UNIX_EPOCH).unwrap_or_default() + (at - base.0);
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

/// Runs the configured sessions: `reconnect` (at least one) connect / stream / close cycles, frames on a
/// fixed schedule. In snapshot mode each session streams until the first ASCII frame arrives.
pub async fn run(config: ClientConfig, observer: Option<SharedObserver>) -> Result<ClientReport> {
    let (report, outcome) = run_until(config, observer, std::future::pending()).await;
    outcome.map(|()| report)
}

/// [`run`] that also ends, gracefully (the session is closed and counted), when `stop` resolves, e.g. on
/// Ctrl-C. Returns the report of everything done so far together with the outcome, so a run that failed
/// half-way still reports what it measured.
pub async fn run_until(
    config: ClientConfig,
    observer: Option<SharedObserver>,
    stop: impl Future<Output = ()>,
) -> (ClientReport, Result<()>) {
    let start = Instant::now();
    let mut total = ClientReport {
        target: config.target.to_string(),
        dialect: config.dialect.to_string(),
        mode: config.crypto_mode().to_u8(),
        tag: config.tag,
        seed: config.seed,
        ..ClientReport::default()
    };
    let mut stop = std::pin::pin!(stop);
    let outcome = async {
        config.validate()?;
        let creds = Credentials::load(&config).await?;
        for i in 0..config.reconnect.max(1) {
            let mut cfg = config.clone();
            cfg.seed = config.seed.wrapping_add(u64::from(i));
            let client = tokio::select! {
                c = Client::connect_with(&cfg, &creds, observer.clone()) => c?,
                _ = stop.as_mut() => return Ok(()),
            };
            // `drive` watches `stop` only between frames, so a frame is never cut off mid-write or
            // written without being counted.
            let outcome = drive(&client, &cfg, stop.as_mut()).await;
            let report = client.close().await;
            total.merge(&report);
            if outcome? {
                return Ok(());
            }
        }
        Ok::<(), ClientError>(())
    }
    .await;
    if let Err(e) = &outcome {
        total.counters.count_error(e.kind());
    }
    total.elapsed = start.elapsed();
    (total, outcome)
}

/// One session's sending schedule: frame `seq` is due at `start + seq / fps`, and that due time (not the
/// moment of the write) is the intended send time embedded in the frame. A late frame is sent at once
/// (no skipping), so a stall shows up as latency against the schedule. Returns `true` when `stop` ended it.
async fn drive<F: Future<Output = ()>>(
    client: &Client,
    config: &ClientConfig,
    mut stop: std::pin::Pin<&mut F>,
) -> Result<bool> {
    let start = Instant::now();
    let base = (start, SystemTime::now());
    let fps = u64::from(config.fps.max(1));
    let mut ascii = client.shared.ascii.subscribe();
    let mut seq: u64 = 0;
    loop {
        let due = start + Duration::from_nanos(seq.saturating_mul(1_000_000_000) / fps);
        let done = match config.stop {
            StopAfter::Frames(n) => seq >= n,
            StopAfter::Duration(d) => due >= start + d,
            StopAfter::Never => false,
        };
        if done || (config.snapshot && *ascii.borrow() > 0) {
            break;
        }
        if config.snapshot && start.elapsed() > config.snapshot_timeout {
            return Err(ClientError::Timeout {
                what: "the first ASCII frame",
                after: config.snapshot_timeout,
            });
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            c = client.wait_closed() => return Err(ClientError::Closed { code: c.code, reason: c.reason }),
            _ = ascii.changed(), if config.snapshot => continue,
            _ = stop.as_mut() => return Ok(true),
        }
        client.send_frame(seq, unix_us(base, due)).await?;
        seq += 1;
    }
    if config.snapshot && *ascii.borrow() == 0 {
        // Frames were limited: keep waiting for the first ASCII frame.
        tokio::select! {
            r = client.wait_ascii_frames(1, config.snapshot_timeout) => { r?; }
            _ = stop.as_mut() => return Ok(true),
        }
    } else if !config.linger.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(config.linger) => {}
            _ = client.wait_closed() => {}
            _ = stop.as_mut() => return Ok(true),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_raw_or_hex_seeds() {
        let seed = [0x42u8; 32];
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let a = parse_key(&seed).unwrap();
        let b = parse_key(format!("  {hex}\n").as_bytes()).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
        assert!(parse_key(b"not a key").is_err());
        assert!(parse_key(&[0xFF; 64]).is_err());
        assert!(parse_key("zz".repeat(32).as_bytes()).is_err());
    }

    #[test]
    fn frames_are_the_reference_packet_and_reuse_one_buffer() {
        use bytes::Bytes;
        let mut fb = FrameBuilder::new(64, 48).unwrap();
        let mut want_pixels = Vec::new();
        for seq in 0..3 {
            let frame = fb.build(0, seq, 1_000 + seq, 7).freeze();
            acip::pattern::render(64, 48, seq, 1_000 + seq, 7, &mut want_pixels).unwrap();
            let img = ImageFrame::rgb24(64, 48, want_pixels.clone());
            assert_eq!(frame, Bytes::from(img.to_packet().encode()), "frame {seq}");
            let ptr = frame.as_ptr();
            drop(frame);
            // The writer dropped it: the next frame is drawn into the same memory.
            assert_eq!(fb.build(0, seq, 0, 0).as_ptr(), ptr);
        }
        // Behind the sealing prefix, the same packet.
        let sealed = fb.build(Session::SEAL_PREFIX, 2, 1_002, 7);
        acip::pattern::render(64, 48, 2, 1_002, 7, &mut want_pixels).unwrap();
        let img = ImageFrame::rgb24(64, 48, want_pixels.clone());
        assert_eq!(&sealed[Session::SEAL_PREFIX..], &img.to_packet().encode()[..]);
    }

    #[test]
    fn unix_time_follows_the_schedule_not_the_clock() {
        let now = Instant::now();
        let base = (now, UNIX_EPOCH + Duration::from_secs(1_000));
        assert_eq!(unix_us(base, now), 1_000_000_000);
        assert_eq!(unix_us(base, now + Duration::from_millis(33)), 1_000_033_000);
    }
}
