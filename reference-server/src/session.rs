//! The transport-independent session of one client (ACIP-SPEC.md 4.3/4.4 handshake, 7.2-7.4 steady
//! state, 1.4 (c) violations): the dispatch task drains the connection's receive queue, drives the
//! `acip` handshake, decrypts, and handles each packet. Readers (TCP, WebSocket) only frame bytes into
//! packets; the writer only writes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acip::codec::payloads::{
    ClientCapabilities, ClientJoin, ClientLeave, ErrorMessage, ImageFrame, RemoteLog, StreamStart, StreamStop,
};
use acip::crypto::{CryptoMode, HandshakeConfig, HandshakeEvent, ServerHandshake, Session};
use acip::pattern::{PatternError, SequenceTracker};
use acip::stats::Stage;
use acip::{Packet, PacketType};
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

/// ERROR_NETWORK_PROTOCOL, the code of every protocol-violation ERROR_MESSAGE (ACIP-SPEC.md 3.12).
pub const ERROR_NETWORK_PROTOCOL: u32 = 44;
/// ERROR_CRYPTO_AUTH (ACIP-SPEC.md 3.12).
pub const ERROR_CRYPTO_AUTH: u32 = 62;

/// A decoded packet waiting in the receive queue, with its receive-side timestamps.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub packet: Packet,
    /// Wire bytes of the packet (header, payload and, on WebSocket, frame headers).
    pub wire: usize,
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
    s.flush_handshake(&ctx).await;
    // Once the connection is closing, the queue is closed to the reader and what it holds is still
    // handled: those packets were received before the close, and a clean close must lose none of them.
    let mut draining = false;
    loop {
        let deadline = s.handshake.as_ref().and_then(|h| h.poll_timeout());
        let inbound = if draining {
            rx.recv().await
        } else {
            tokio::select! {
                m = rx.recv() => m,
                _ = sleep_until(deadline) => {
                    let h = s.handshake.as_mut().expect("a deadline comes only from a running handshake");
                    if let Err(e) = h.handle_timeout(Instant::now()) {
                        s.flush_handshake(&ctx).await;
                        return End::Handshake(e.to_string());
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

struct SessionState {
    transport: Transport,
    handshake: Option<ServerHandshake>,
    handshake_started: Instant,
    /// Decrypting side of the traffic key (shared with the writer, which encrypts).
    session: Option<Arc<Mutex<Session>>>,
    /// TCP after an encrypted handshake rejects plaintext non-handshake packets (ACIP-SPEC.md 4.5).
    enforce_encryption: bool,
    client: Option<Arc<ClientEntry>>,
    tracker: SequenceTracker,
}

impl SessionState {
    fn new(ctx: &SessionCtx) -> Self {
        let cfg = &ctx.shared.config;
        let transport = ctx.conn.transport;
        let hs_transport = match transport {
            Transport::Tcp => acip::crypto::Transport::Tcp,
            Transport::WebSocket => acip::crypto::Transport::WebSocket,
        };
        let mut hc = HandshakeConfig::new(cfg.dialect, hs_transport, ctx.crypto.seed_for(ctx.conn.id));
        hc.mode = if cfg.encrypt { CryptoMode::Encrypt } else { CryptoMode::None };
        hc.password = ctx.crypto.password.clone();
        hc.identity = ctx.crypto.identity.clone();
        hc.client_whitelist = ctx.crypto.whitelist.clone();
        hc.header_timeout = cfg.tcp_idle_timeout;
        let now = Instant::now();
        SessionState {
            transport,
            handshake: Some(ServerHandshake::new(hc, now)),
            handshake_started: now,
            session: None,
            enforce_encryption: false,
            client: None,
            tracker: SequenceTracker::new(),
        }
    }

    /// Sends what the handshake queued; `true` if that included CRYPTO_AUTH_FAILED.
    async fn flush_handshake(&mut self, ctx: &SessionCtx) -> bool {
        let mut auth_failed = false;
        if let Some(h) = self.handshake.as_mut() {
            while let Some(p) = h.poll_transmit() {
                auth_failed |= p.packet_type == PacketType::CRYPTO_AUTH_FAILED;
                ctx.outbox.send(p).await;
            }
        }
        auth_failed
    }

    async fn handle(&mut self, ctx: &SessionCtx, inb: Inbound) -> Result<(), End> {
        let Inbound { packet, wire, budget, .. } = inb;
        // Handling holds the budget: the bytes are still in memory until the packet is stored or dropped.
        let _budget = budget;
        ctx.conn.count_rx(packet.packet_type, wire);
        if let Some(h) = self.handshake.as_mut() {
            let no_encryption = packet.packet_type == PacketType::CRYPTO_NO_ENCRYPTION;
            let r = h.handle_packet(packet, Instant::now());
            let auth_failed = self.flush_handshake(ctx).await;
            if let Err(e) = r {
                if no_encryption && !auth_failed {
                    // The real server answers CRYPTO_NO_ENCRYPTION with AUTH_FAILED and drops the client
                    // in every handshake state (ACIP-SPEC.md 2, 1109). `acip`'s handshake queues it only
                    // before the key exchange; on WebSocket the server opens with KEY_EXCHANGE_INIT (4.4),
                    // so a 1109 there is an "unexpected packet" to it. No 3.15 reason bit fits: 0.
                    let payload = acip::codec::payloads::AuthFailed::new(0).encode();
                    ctx.outbox.send(Packet::new(PacketType::CRYPTO_AUTH_FAILED, payload)).await;
                    ctx.conn.count_error("auth_failed");
                }
                return Err(End::Handshake(e.to_string()));
            }
            let mut first = None;
            let h = self.handshake.as_mut().expect("still there");
            while let Some(ev) = h.poll_event() {
                match ev {
                    HandshakeEvent::PlaintextClient { first_packet } => first = Some(first_packet),
                    HandshakeEvent::AuthFailed { .. } => ctx.conn.count_error("auth_failed"),
                    HandshakeEvent::Completed { .. } | HandshakeEvent::EarlyPacket(_) => {}
                }
            }
            if h.is_complete() {
                let h = self.handshake.take().expect("still there");
                ctx.conn.record(Stage::Handshake, self.handshake_started.elapsed());
                if let Some(session) = h.into_session() {
                    let session = Arc::new(Mutex::new(session));
                    let out = OutboundCrypto::new(session.clone());
                    ctx.outbox.send_msg(Outbound::StartEncryption(Box::new(out))).await;
                    self.session = Some(session);
                    self.enforce_encryption = self.transport == Transport::Tcp;
                }
            }
            if let Some(p) = first {
                return self.handle_plain(ctx, p).await;
            }
            return Ok(());
        }
        let packet = if packet.packet_type == PacketType::ENCRYPTED {
            let Some(session) = &self.session else {
                return self.unusable(ctx, "encrypted_without_key", "ENCRYPTED packet but no session key");
            };
            let t0 = Instant::now();
            let r = lock(session).decrypt(&packet);
            ctx.conn.record(Stage::ServerDecrypt, t0.elapsed());
            match r {
                Ok(inner) => {
                    // Counted under ENCRYPTED (with its bytes) above and under its inner type here.
                    ctx.conn.count_rx(inner.packet_type, 0);
                    inner
                }
                Err(e) => return self.unusable(ctx, "decrypt_failed", &e.to_string()),
            }
        } else {
            if self.enforce_encryption && !packet.packet_type.is_handshake() {
                return self.unusable(
                    ctx,
                    "plaintext_after_handshake",
                    &format!("plaintext {} after an encrypted handshake", packet.packet_type),
                );
            }
            packet
        };
        self.handle_plain(ctx, packet).await
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
                self.store_frame(ctx, frame);
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

    fn store_frame(&mut self, ctx: &SessionCtx, frame: ImageFrame) {
        match acip::pattern::inspect(&frame.pixels) {
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
