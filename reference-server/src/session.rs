//! The transport-independent session of one client (ACIP-SPEC.md 4.3/4.4 handshake, 7.2-7.4 steady
//! state, 1.4 (c) violations): the dispatch task drains the connection's receive queue, drives the
//! `acip` handshake, decrypts, and handles each packet. Readers (TCP, WebSocket) only frame bytes into
//! packets; the writer only writes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acip::codec::payloads::{
    ClientCapabilities, ClientJoin, ClientLeave, ErrorMessage, ImageFrame, RemoteLog, StreamStart, StreamStop,
};
use acip::conn::{ConnConfig, Event, Input as ConnInput, Output, ServerConn};
use acip::crypto::CryptoMode;
use acip::pattern::{PatternChecker, PatternError, SequenceTracker};
use acip::stats::Stage;
use acip::{Packet, PacketType};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::RX_PAUSE_DELAY;
use crate::conn::{Outbound, Outbox};
use crate::conninfo::ConnInfo;
use crate::crypto::{OutboundCrypto, ServerCrypto};
use crate::end::End;
use crate::hub::{ClientEntry, RenderCaps, Shared, Transport};
use crate::render::{render_grid, RgbFrame};
use crate::slots::SlotLease;
use crate::sync::lock;

/// ERROR_NETWORK_PROTOCOL, the code of every protocol-violation ERROR_MESSAGE (ACIP-SPEC.md 3.12): the
/// one constant in `acip`, re-exported under the server's name.
pub const ERROR_NETWORK_PROTOCOL: u32 = ErrorMessage::NETWORK_PROTOCOL;
/// ERROR_CRYPTO_AUTH (ACIP-SPEC.md 3.12), likewise.
pub const ERROR_CRYPTO_AUTH: u32 = ErrorMessage::CRYPTO_AUTH;

/// A decoded packet waiting in the receive queue, with its receive-side timestamps.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub packet: Packet,
    /// Wire bytes of the packet (header, payload and, on WebSocket, frame headers).
    pub wire: usize,
    /// The payload's CRC-32C, verified by the reader's decoder (`None` when it had none to give).
    pub crc: Option<u32>,
    /// When the packet entered the receive queue.
    pub queued: Instant,
    /// The packet's share of the receive queue's byte budget, returned when it is dropped (handled).
    pub budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// What the dispatch task shares with the connection task.
pub(crate) struct SessionCtx {
    pub shared: Arc<Shared>,
    pub conn: Arc<ConnInfo>,
    pub outbox: Outbox,
    pub lease: Arc<SlotLease>,
    pub crypto: ServerCrypto,
    /// The renderer of this client, once CLIENT_CAPABILITIES arrived; joined by the connection task.
    pub renderer: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Packets queued by the reader and not yet handled (see [`crate::tasks::RxSender`]): what teardown
    /// counts as `teardown_discarded` if this task ends (or is aborted) before handling them.
    pub pending: Arc<std::sync::atomic::AtomicUsize>,
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Runs the session until the queue ends (reader gone), the connection closes, or the client breaks a
/// rule. Returns why it ended.
pub(crate) async fn run_session(ctx: SessionCtx, mut rx: mpsc::Receiver<Inbound>) -> End {
    let mut s = SessionState::new(&ctx);
    let mut closing = ctx.conn.closing.subscribe();
    if let Err(end) = s.pump(&ctx, None).await {
        return s.fail(&ctx, end).await;
    }
    // Once the connection is closing, the queue is closed to the reader and what it holds is still
    // handled: those packets were received before the close, and a clean close must lose none of them.
    let mut draining = false;
    loop {
        let deadline = s.acip.poll_timeout();
        let inbound = if draining {
            rx.recv().await
        } else {
            tokio::select! {
                m = rx.recv() => m,
                _ = sleep_until(deadline) => {
                    s.acip.handle_input(ConnInput::Timeout, Instant::now());
                    if let Err(end) = s.pump(&ctx, None).await {
                        return s.fail(&ctx, end).await;
                    }
                    continue;
                }
                _ = crate::sync::until_true(&mut closing) => {
                    rx.close();
                    draining = true;
                    continue;
                }
            }
        };
        let Some(inb) = inbound else {
            return if draining { End::Closing } else { End::ReaderDone };
        };
        let now = Instant::now();
        ctx.conn.record(Stage::ServerQueueWait, now - inb.queued);
        if ctx.shared.config.faults.rx_pause {
            // The slow consumer of --fault rx-pause: with a tiny queue the reader stops reading (on top
            // of the reader's own per-batch pause, `serve::RxPacer`): a pipelined burst of small packets
            // is held ~30 ms per packet.
            tokio::time::sleep(RX_PAUSE_DELAY).await;
        }
        let handled = s.handle(&ctx, inb).await;
        ctx.pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        if let Err(end) = handled {
            return s.fail(&ctx, end).await;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The dispatch task's state: the `acip` server connection (packet mode: the reader frames, the writer
/// seals) for the handshake, decryption and the encryption rule, and what the server keeps per client.
struct SessionState {
    transport: Transport,
    acip: ServerConn,
    handshake_started: Instant,
    /// CRYPTO_AUTH_FAILED went out (counted once as `auth_failed`).
    auth_failed_sent: bool,
    /// A packet arrived: a handshake that times out before any is a silent peer (`idle_timeout`).
    received_any: bool,
    client: Option<Arc<ClientEntry>>,
    tracker: SequenceTracker,
    /// Checks test patterns from the verified packet CRC (no second pass over the pixels).
    checker: PatternChecker,
    /// The verified CRC of the packet being handled, and the payload it belongs to: used only for a
    /// packet that comes out of the connection with this very payload (a plaintext one, not decrypted).
    fed_crc: Option<(u32, Bytes)>,
}

impl SessionState {
    fn new(ctx: &SessionCtx) -> Self {
        let cfg = &ctx.shared.config;
        let transport = ctx.conn.transport;
        let hs_transport = match transport {
            Transport::Tcp => acip::crypto::Transport::Tcp,
            Transport::WebSocket => acip::crypto::Transport::WebSocket,
        };
        let mut cc = ConnConfig::new(cfg.dialect, hs_transport, ctx.crypto.seed_for(ctx.conn.id));
        cc.handshake.mode = if cfg.encrypt { CryptoMode::Encrypt } else { CryptoMode::None };
        cc.handshake.password = ctx.crypto.password.clone();
        cc.handshake.identity = ctx.crypto.identity.clone();
        cc.handshake.client_whitelist = ctx.crypto.whitelist.clone();
        cc.handshake.header_timeout = cfg.tcp_idle_timeout;
        cc.limits = cfg.limits;
        // The reader frames (acip::conn::Receiver) and the writer seals and frames: packets go in whole.
        cc.frame_ws = false;
        // PING is answered in `handle_plain` through the writer, which seals it.
        cc.answer_pings = false;
        // This server's failure policy (`fail`: REMOTE_LOG + ERROR_MESSAGE, or a plain close) is its own.
        cc.notify_failure = false;
        // ACIP-SPEC.md 1.4 (c): WebSocket drops what it cannot decrypt and stays up; TCP disconnects.
        cc.drop_unusable = transport == Transport::WebSocket;
        let now = Instant::now();
        SessionState {
            transport,
            acip: ServerConn::server(cc, now),
            handshake_started: now,
            auth_failed_sent: false,
            received_any: false,
            client: None,
            tracker: SequenceTracker::new(),
            checker: PatternChecker::new(),
            fed_crc: None,
        }
    }

    /// Drains the connection: handshake packets to the writer, events handled in order. `fed` is the type
    /// of the packet just fed, if any.
    async fn pump(&mut self, ctx: &SessionCtx, fed: Option<PacketType>) -> Result<(), End> {
        while let Some(out) = self.acip.poll_output() {
            match out {
                Output::Transmit(wire) => {
                    ctx.outbox.send_msg(Outbound::wire(wire)).await;
                }
                Output::Event(ev) => self.on_event(ctx, ev, fed).await?,
            }
        }
        Ok(())
    }

    async fn on_event(&mut self, ctx: &SessionCtx, ev: Event, fed: Option<PacketType>) -> Result<(), End> {
        match ev {
            Event::HandshakePacket { sent: true, packet_type: PacketType::CRYPTO_AUTH_FAILED } => {
                if !self.auth_failed_sent {
                    self.auth_failed_sent = true;
                    ctx.conn.count_error("auth_failed");
                }
            }
            Event::HandshakePacket { .. } => {}
            Event::HandshakeDone { encrypted } => {
                ctx.conn.record(Stage::Handshake, self.handshake_started.elapsed());
                if encrypted {
                    if let Some(session) = self.acip.take_sealer() {
                        let out = OutboundCrypto::new(session);
                        ctx.outbox.send_msg(Outbound::StartEncryption(Box::new(out))).await;
                    }
                }
            }
            Event::Packet(p) => {
                if fed == Some(PacketType::ENCRYPTED) {
                    // Counted under ENCRYPTED (with its bytes) on arrival and under its inner type here.
                    ctx.conn.count_rx(p.packet_type, 0);
                }
                return self.handle_plain(ctx, p).await;
            }
            // After an encrypted handshake: the same rule as a plaintext REKEY (first packet, then ignored).
            Event::RekeyIgnored(t) => return self.handle_plain(ctx, Packet::empty(t)).await,
            Event::Dropped(e) => ctx.conn.count_drop(self.unusable_kind(&e)),
            Event::PeerClosed { .. } => {}
            Event::Violation(acip::Error::Handshake(e)) => {
                if fed == Some(PacketType::CRYPTO_NO_ENCRYPTION) && !self.auth_failed_sent {
                    // The real server answers CRYPTO_NO_ENCRYPTION with AUTH_FAILED and drops the client
                    // in every handshake state (ACIP-SPEC.md 2, 1109). `acip`'s handshake queues it only
                    // before the key exchange; on WebSocket the server opens with KEY_EXCHANGE_INIT (4.4),
                    // so a 1109 there is an "unexpected packet" to it. No 3.15 reason bit fits: 0.
                    let payload = acip::codec::payloads::AuthFailed::new(0).encode();
                    ctx.outbox.send(Packet::new(PacketType::CRYPTO_AUTH_FAILED, payload)).await;
                    self.auth_failed_sent = true;
                    ctx.conn.count_error("auth_failed");
                }
                if !self.received_any && matches!(e, acip::crypto::HandshakeError::Timeout { .. }) {
                    // Nothing ever arrived: the reader's idle timer and this one race to say so; the
                    // answer is the same whichever fires first (ACIP-SPEC.md 1.4 (b)).
                    let cfg = &ctx.shared.config;
                    let idle = match self.transport {
                        Transport::Tcp => cfg.tcp_idle_timeout,
                        Transport::WebSocket => cfg.ws_idle_timeout,
                    };
                    return Err(End::IdleTimeout(idle));
                }
                return Err(End::Handshake(e.to_string()));
            }
            // TCP (ACIP-SPEC.md 1.4 (b)): a packet the session cannot use disconnects.
            Event::Violation(e) => {
                return Err(End::Unusable { kind: self.unusable_kind(&e), reason: e.to_string() })
            }
        }
        Ok(())
    }

    /// The stats name of a packet the session could not use.
    fn unusable_kind(&self, e: &acip::Error) -> &'static str {
        match e {
            // A handshake packet after an encrypted handshake, other than REKEY_*: no handler for it.
            acip::Error::Crypto(acip::crypto::CryptoError::UnexpectedHandshakePacket(_)) => {
                match (&self.client, self.transport) {
                    (Some(_), _) => "unhandled_type",
                    (None, Transport::Tcp) => "caps_not_first",
                    (None, Transport::WebSocket) => "before_capabilities",
                }
            }
            e => e.kind(),
        }
    }

    async fn handle(&mut self, ctx: &SessionCtx, inb: Inbound) -> Result<(), End> {
        let Inbound { packet, wire, budget, crc, .. } = inb;
        // Handling holds the budget: the bytes are still in memory until the packet is stored or dropped.
        let _budget = budget;
        let t = packet.packet_type;
        self.received_any = true;
        ctx.conn.count_rx(t, wire);
        let open = self.acip.state() == acip::conn::State::Open;
        let t0 = Instant::now();
        self.fed_crc = crc.filter(|_| t != PacketType::ENCRYPTED).map(|c| (c, packet.payload.clone()));
        self.acip.handle_input(ConnInput::Packet(packet), t0);
        if open && t == PacketType::ENCRYPTED {
            ctx.conn.record(Stage::ServerDecrypt, t0.elapsed());
        }
        let r = self.pump(ctx, Some(t)).await;
        self.fed_crc = None;
        r
    }

    /// The verified CRC of `payload`, if it is the payload that was fed or the one it decrypted to.
    fn known_crc(&self, payload: &Bytes) -> Option<u32> {
        let fed = self.fed_crc.as_ref().and_then(|(crc, fed)| {
            (fed.as_ptr() == payload.as_ptr() && fed.len() == payload.len()).then_some(*crc)
        });
        // Or the inner CRC of the packet it was decrypted from.
        fed.or_else(|| self.acip.opened_crc(payload))
    }

    /// A packet the transport cannot use: TCP disconnects (ACIP-SPEC.md 1.4 (b)); WebSocket drops it and
    /// stays up (1.4 (c)).
    fn unusable(&self, ctx: &SessionCtx, kind: &'static str, why: &str) -> Result<(), End> {
        match self.transport {
            Transport::Tcp => Err(End::Unusable { kind, reason: why.to_string() }),
            Transport::WebSocket => {
                ctx.conn.count_drop(kind);
                Ok(())
            }
        }
    }

    async fn handle_plain(&mut self, ctx: &SessionCtx, packet: Packet) -> Result<(), End> {
        use PacketType as T;
        let t0 = Instant::now();
        let t = packet.packet_type;
        if self.client.is_none() && !matches!(t, T::CLIENT_CAPABILITIES | T::PING | T::PONG) {
            // TCP: the first packet after the handshake must be CLIENT_CAPABILITIES (ACIP-SPEC.md 4.3 step
            // 10); WebSocket: nothing to render yet, so media before it is dropped.
            if self.transport == Transport::Tcp {
                return Err(End::Unusable {
                    kind: "caps_not_first",
                    reason: format!("first packet after the handshake is {t}, not CLIENT_CAPABILITIES"),
                });
            }
            ctx.conn.count_drop("before_capabilities");
            return Ok(());
        }
        let dialect = ctx.shared.config.dialect;
        let violation = |e: acip::codec::CodecError| End::Violation(e.to_string());
        match t {
            T::PING => {
                ctx.outbox.send(Packet::empty(T::PONG)).await;
            }
            T::PONG | T::REMOTE_LOG | T::ERROR_MESSAGE | T::AUDIO_BATCH | T::AUDIO_OPUS_BATCH => {}
            T::CLIENT_CAPABILITIES => {
                let caps = ClientCapabilities::decode(&packet.payload, dialect).map_err(violation)?;
                caps.validate().map_err(violation)?;
                self.set_caps(ctx, &caps)?;
            }
            T::IMAGE_FRAME => {
                let frame = ImageFrame::decode_bytes(&packet.payload).map_err(violation)?;
                let crc = self.known_crc(&packet.payload);
                self.store_frame(ctx, frame, crc.map(|c| (c, &packet.payload)));
            }
            T::IMAGE_FRAME_H265 if dialect == acip::Dialect::Head => {
                // Accepted like the real HEAD server, but this server has no HEVC decoder.
                ctx.conn.count_drop("h265_not_decoded");
            }
            T::STREAM_START => {
                StreamStart::decode(&packet.payload).map_err(violation)?;
            }
            T::STREAM_STOP => {
                StreamStop::decode(&packet.payload).map_err(violation)?;
            }
            T::CLIENT_JOIN => {
                ClientJoin::decode(&packet.payload).map_err(violation)?;
            }
            T::CLIENT_LEAVE => {
                let leave = ClientLeave::decode(&packet.payload).map_err(violation)?;
                return Err(End::ClientLeave(leave.reason));
            }
            // The rekey always fails in the real code; never answer it (ACIP-SPEC.md 4.8).
            T::CRYPTO_REKEY_REQUEST | T::CRYPTO_REKEY_RESPONSE | T::CRYPTO_REKEY_COMPLETE => {
                ctx.conn.count_drop("rekey_ignored");
            }
            other => {
                return self.unusable(ctx, "unhandled_type", &format!("no handler for {other}"));
            }
        }
        ctx.conn.record(Stage::ServerHandler, t0.elapsed());
        Ok(())
    }

    fn set_caps(&mut self, ctx: &SessionCtx, caps: &ClientCapabilities) -> Result<(), End> {
        let rc = RenderCaps {
            width: caps.width,
            height: caps.height,
            fps: caps.desired_fps.min(ctx.shared.config.max_fps),
        };
        if let Some(c) = &self.client {
            *lock(&c.caps) = rc;
            return Ok(());
        }
        // The accept-time check races with other activations; this one is exact.
        if let Err(full) = ctx.lease.activate() {
            return Err(End::Unusable { kind: "server_full", reason: format!("SERVER_FULL: {full}") });
        }
        let entry = Arc::new(ClientEntry {
            conn: ctx.conn.clone(),
            caps: Mutex::new(rc),
            latest: Mutex::new(None),
            outbox: ctx.outbox.clone(),
        });
        ctx.conn.set_phase("active");
        ctx.shared.add_client(entry.clone());
        let handle = tokio::spawn(run_renderer(ctx.shared.clone(), entry.clone()));
        *lock(&ctx.renderer) = Some(handle);
        self.client = Some(entry);
        ctx.shared.broadcast_state();
        Ok(())
    }

    /// `verified`: the payload the frame came in and its CRC, checked by the decoder; the pattern's
    /// checksum is then derived from it instead of summing the pixels again.
    fn store_frame(&mut self, ctx: &SessionCtx, frame: ImageFrame, verified: Option<(u32, &Bytes)>) {
        let inspected = match verified {
            Some((crc, payload)) => self.checker.inspect_verified(payload, ImageFrame::HEADER_LEN, crc),
            None => acip::pattern::inspect(&frame.pixels),
        };
        match inspected {
            Ok(info) => {
                let now_us = unix_micros();
                ctx.conn
                    .record(Stage::EndToEnd, Duration::from_micros(now_us.saturating_sub(info.send_time_us)));
                self.tracker.handle_seq(info.seq);
                let mut st = lock(&ctx.conn.stats);
                st.counters.frames_received = self.tracker.received;
                st.counters.frames_lost = self.tracker.lost;
                st.counters.frames_reordered = self.tracker.reordered;
            }
            // Not a test pattern (a real camera): nothing to check.
            Err(PatternError::BadMagic { .. } | PatternError::TooShort { .. }) => {}
            Err(_) => lock(&ctx.conn.stats).counters.frames_corrupt += 1,
        }
        let rgb = RgbFrame { width: frame.width, height: frame.height, pixels: frame.pixels };
        if let Some(c) = &self.client {
            *lock(&c.latest) = Some(Arc::new(rgb));
        }
    }

    /// Ends the session because of `end`, telling the client what the real server tells it.
    async fn fail(&mut self, ctx: &SessionCtx, end: End) -> End {
        match &end {
            End::Violation(reason) => {
                // disconnect_client_for_bad_data (ACIP-SPEC.md 1.4 (c)): REMOTE_LOG on TCP, then
                // ERROR_MESSAGE 44, then close.
                let text = format!("Protocol violation: {reason}");
                if self.transport == Transport::Tcp {
                    ctx.outbox.send(RemoteLog::new(4, 1, &text).to_packet()).await;
                }
                ctx.outbox.send(ErrorMessage::new(ERROR_NETWORK_PROTOCOL, reason).to_packet()).await;
                ctx.outbox.close(1002, reason.clone()).await;
            }
            End::Handshake(reason) => {
                ctx.outbox.close(1008, format!("handshake failed: {reason}")).await;
            }
            End::ClientLeave(_) => ctx.outbox.close(1000, "client left").await,
            other => ctx.outbox.close(1002, other.to_string()).await,
        }
        ctx.conn.close();
        end
    }
}

/// Sends ASCII_FRAMEs to one client at its fps: CLEAR_CONSOLE first whenever the number of sources in the
/// grid changes (ACIP-SPEC.md 7.4). Ends when the connection closes.
async fn run_renderer(shared: Arc<Shared>, entry: Arc<ClientEntry>) {
    let mut closing = entry.conn.closing.subscribe();
    let mut fps = 0u8;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut sources_seen: Option<usize> = None;
    loop {
        let caps = *lock(&entry.caps);
        if caps.fps != fps {
            fps = caps.fps.max(1);
            ticker = tokio::time::interval(Duration::from_secs(1) / fps as u32);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = crate::sync::until_true(&mut closing) => return,
        }
        let sources = shared.grid_sources();
        if sources.is_empty() {
            continue;
        }
        if sources_seen != Some(sources.len()) {
            sources_seen = Some(sources.len());
            entry.outbox.send(Packet::empty(PacketType::CLEAR_CONSOLE)).await;
        }
        let t0 = Instant::now();
        let refs: Vec<&RgbFrame> = sources.iter().map(|f| f.as_ref()).collect();
        let text = render_grid(&refs, caps.width as usize, caps.height as usize);
        let frame = acip::codec::payloads::AsciiFrame::new(caps.width as u32, caps.height as u32, text);
        entry.conn.record(Stage::ServerRender, t0.elapsed());
        entry.outbox.offer_video(frame.to_packet());
    }
}
