//! The outbound side of a connection: exactly one writer task per connection owns the socket's write half
//! (issue 4, "Connections"; the SIGABRT of ACIP-SPEC.md 8 came from two threads writing fragments to one
//! socket). Everything else hands packets to the writer through an [`Outbox`]:
//!
//! - control packets (PONG, SERVER_STATE, CLEAR_CONSOLE, handshake, ERROR_MESSAGE, close) go through a
//!   bounded FIFO; a sender on the packet path waits for room, a broadcaster never waits and counts a drop;
//! - ASCII_FRAMEs go through a one-deep video slot where the latest frame wins; a frame replaced before the
//!   writer took it is counted as a drop (`video_replaced`).
//!
//! The writer prefers the FIFO, so a CLEAR_CONSOLE queued before a frame is written before it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use acip::stats::Stage;
use acip::ws::{encode_frame, OpCode};
use acip::{Packet, PacketType};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, Notify};

use crate::conninfo::ConnInfo;
use crate::crypto::OutboundCrypto;
use crate::sync::lock;

/// A message for the writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An ACIP packet (encrypted by the writer once a session key is installed, unless handshake-class).
    Packet { packet: Packet, queued: Instant },
    /// One packet already encoded by the session's `acip` connection (a plain handshake packet): written
    /// as it is, never sealed.
    Wire { packet_type: PacketType, bytes: Bytes, queued: Instant },
    /// A WebSocket PONG control frame answering a PING (ignored on TCP).
    WsPong(Bytes),
    /// From here on, encrypt non-handshake packets with this.
    StartEncryption(Box<OutboundCrypto>),
    /// Write a WebSocket close frame (code, reason) or, on TCP, shut down; then stop.
    Close { code: u16, reason: String },
}

impl Outbound {
    /// A [`Outbound::Wire`] for the encoded packet `bytes`.
    pub fn wire(bytes: Bytes) -> Outbound {
        let packet_type = acip::Header::decode(&bytes, &acip::codec::Limits::default())
            .map_or(PacketType::Unknown(0), |h| h.packet_type);
        Outbound::Wire { packet_type, bytes, queued: Instant::now() }
    }
}

#[derive(Debug, Default)]
struct VideoSlot {
    frame: Mutex<Option<(Packet, Instant)>>,
    notify: Notify,
}

/// The handle every task uses to send to one connection.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Outbound>,
    video: Arc<VideoSlot>,
    conn: Arc<ConnInfo>,
}

/// The writer's end of an [`Outbox`].
pub(crate) struct OutboxRx {
    rx: mpsc::Receiver<Outbound>,
    video: Arc<VideoSlot>,
}

impl Outbox {
    pub fn new(conn: Arc<ConnInfo>, depth: usize) -> (Outbox, OutboxRx) {
        let (tx, rx) = mpsc::channel(depth);
        let video = Arc::new(VideoSlot::default());
        (Outbox { tx, video: video.clone(), conn }, OutboxRx { rx, video })
    }

    /// Queues a packet, waiting for room. `false` if the writer has gone.
    pub async fn send(&self, packet: Packet) -> bool {
        self.send_msg(Outbound::Packet { packet, queued: Instant::now() }).await
    }

    pub async fn send_msg(&self, m: Outbound) -> bool {
        self.tx.send(m).await.is_ok()
    }

    /// Queues a packet without waiting; a full queue drops it and counts the drop.
    pub fn try_send(&self, packet: Packet) -> bool {
        let name = packet.packet_type.name();
        match self.tx.try_send(Outbound::Packet { packet, queued: Instant::now() }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.conn.count_drop(&format!("tx_queue_full_{name}"));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Offers a video frame: it replaces any frame the writer has not taken yet (counted as a drop).
    pub fn offer_video(&self, packet: Packet) {
        let replaced = lock(&self.video.frame).replace((packet, Instant::now())).is_some();
        if replaced {
            self.conn.count_drop("video_replaced");
        }
        self.video.notify.notify_one();
    }

    /// Asks the writer to close after everything queued so far.
    pub async fn close(&self, code: u16, reason: impl Into<String>) {
        let _ = self.tx.send(Outbound::Close { code, reason: reason.into() }).await;
    }
}

/// How packets are framed on the wire.
pub(crate) enum Sink {
    Tcp(OwnedWriteHalf),
    /// WebSocket server → client: unmasked frames; messages split at `fragment` bytes if set.
    Ws {
        w: OwnedWriteHalf,
        fragment: Option<usize>,
    },
}

impl Sink {
    async fn write_message(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Tcp(w) => {
                w.write_all(bytes).await?;
                Ok(bytes.len())
            }
            Sink::Ws { w, fragment } => {
                let mut out = Vec::with_capacity(bytes.len() + 14);
                for (op, fin, chunk) in acip::ws::fragment(bytes, fragment.unwrap_or(0)) {
                    encode_frame(op, fin, None, chunk, &mut out);
                }
                w.write_all(&out).await?;
                Ok(out.len())
            }
        }
    }

    async fn write_control(&mut self, op: OpCode, payload: &[u8]) -> std::io::Result<()> {
        if let Sink::Ws { w, .. } = self {
            let mut out = Vec::new();
            encode_frame(
                op,
                true,
                None,
                &payload[..payload.len().min(acip::ws::MAX_CONTROL_PAYLOAD)],
                &mut out,
            );
            w.write_all(&out).await?;
        }
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &str) {
        match self {
            Sink::Tcp(w) => {
                let _ = w.shutdown().await;
            }
            Sink::Ws { w, .. } => {
                let payload = acip::ws::close_payload(code, reason);
                let mut out = Vec::new();
                encode_frame(OpCode::Close, true, None, &payload, &mut out);
                let _ = w.write_all(&out).await;
                let _ = w.shutdown().await;
            }
        }
    }
}

/// What the writer writes next.
enum Item {
    Packet(Packet),
    Wire(PacketType, Bytes),
}

/// The writer task: the only code that writes to this connection's socket. Ends on `Close`, when every
/// [`Outbox`] is gone, on a write error, or when the connection is closing.
pub(crate) async fn run_writer(mut sink: Sink, mut rx: OutboxRx, conn: Arc<ConnInfo>) {
    let mut crypto: Option<Box<OutboundCrypto>> = None;
    let mut closing = conn.closing.subscribe();
    let mut last_video: Option<Instant> = None;
    loop {
        let (item, queued, is_video) = tokio::select! {
            biased;
            m = rx.rx.recv() => match m {
                Some(Outbound::Packet { packet, queued }) => (Item::Packet(packet), queued, false),
                Some(Outbound::Wire { packet_type, bytes, queued }) => (Item::Wire(packet_type, bytes), queued, false),
                Some(Outbound::WsPong(payload)) => {
                    if sink.write_control(OpCode::Pong, &payload).await.is_err() {
                        conn.count_error("write_failed");
                        break;
                    }
                    continue;
                }
                Some(Outbound::StartEncryption(c)) => {
                    crypto = Some(c);
                    continue;
                }
                Some(Outbound::Close { code, reason }) => {
                    sink.close(code, &reason).await;
                    conn.close();
                    return;
                }
                None => break,
            },
            _ = rx.video.notify.notified() => match lock(&rx.video.frame).take() {
                Some((p, q)) => (Item::Packet(p), q, true),
                None => continue,
            },
            _ = crate::sync::until_true(&mut closing) => break,
        };
        let (t, bytes) = match item {
            Item::Wire(t, bytes) => (t, bytes),
            Item::Packet(packet) => {
                let t = packet.packet_type;
                match crypto.as_mut() {
                    Some(c) if !t.is_handshake() => match c.seal(&packet) {
                        Ok(b) => (t, Bytes::from(b)),
                        Err(e) => {
                            conn.count_error(&format!("encrypt_failed: {e}"));
                            break;
                        }
                    },
                    _ => (t, Bytes::from(packet.encode())),
                }
            }
        };
        match sink.write_message(&bytes).await {
            Ok(wire) => {
                let now = Instant::now();
                conn.record(Stage::ServerWrite, now - queued);
                conn.count_tx(t, wire);
                if is_video && t == PacketType::ASCII_FRAME {
                    if let Some(prev) = last_video.replace(now) {
                        conn.record(Stage::AsciiInterval, now - prev);
                    }
                }
            }
            Err(_) => {
                conn.count_error("write_failed");
                break;
            }
        }
    }
    // Ended without a Close message (peer gone, outboxes dropped or closing): shut the write side.
    sink.close(1001, "server closing").await;
    conn.close();
}
