//! A minimal ACIP server for testing the client on its own (real sockets on loopback): the `acip`
//! server handshake, then CLIENT_CAPABILITIES → SERVER_STATE, IMAGE_FRAME → pattern check + an
//! ASCII_FRAME, PING → PONG. Its WebSocket side is tungstenite's, which rejects a BINARY frame that
//! arrives before the previous message's FIN, so the concurrent-writers fault shows up in `errors`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acip::codec::payloads::{AsciiFrame, ImageFrame, ServerState};
use acip::crypto::{CryptoMode, HandshakeConfig, HandshakeEvent, ServerHandshake, Session, Transport};
use acip::pattern::{self, PatternInfo};
use acip::stream::StreamDecoder;
use acip::{Dialect, Limits, Packet, PacketType};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tungstenite::Message;

#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub ws: bool,
    pub dialect: Dialect,
    /// Server side: `None` expects a plaintext TCP client; anything else answers the client's handshake.
    pub mode: CryptoMode,
    pub password: Option<acip::crypto::Password>,
    /// Close every connection after this many IMAGE_FRAMEs (to test the client's close handling).
    pub close_after_frames: Option<u64>,
    /// Send ASCII frames whose checksum field is wrong (the packet CRC is still right).
    pub corrupt_ascii: bool,
    /// Answer CLIENT_CAPABILITIES with a 31-byte SERVER_STATE (the client requires 32, 3.14).
    pub short_server_state: bool,
    /// After SERVER_STATE, send the audio the real FEB server (4e18ed310) sends every client: a 4001 whose
    /// payload is one bare 3-byte Opus frame, then a well-formed one-frame AUDIO_OPUS_BATCH (3.11).
    pub feb_audio: bool,
}

impl PeerConfig {
    pub fn new(ws: bool, dialect: Dialect) -> Self {
        PeerConfig {
            ws,
            dialect,
            mode: CryptoMode::Encrypt,
            password: None,
            close_after_frames: None,
            corrupt_ascii: false,
            short_server_state: false,
            feb_audio: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PeerStats {
    pub connections: u64,
    pub handshakes: u64,
    pub encrypted_sessions: u64,
    pub caps: u64,
    pub stream_starts: u64,
    pub frames: Vec<PatternInfo>,
    pub frame_wire_sizes: Vec<usize>,
    pub pattern_errors: Vec<String>,
    pub pings: u64,
    pub errors: Vec<String>,
    pub ended: u64,
}

pub struct Peer {
    pub addr: SocketAddr,
    stats: Arc<Mutex<PeerStats>>,
    version: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Ctx {
    cfg: PeerConfig,
    stats: Arc<Mutex<PeerStats>>,
    version: Arc<watch::Sender<u64>>,
}

impl Ctx {
    fn update(&self, f: impl FnOnce(&mut PeerStats)) {
        f(&mut self.stats.lock().unwrap());
        self.version.send_modify(|v| *v += 1);
    }
}

impl Peer {
    pub async fn start(cfg: PeerConfig) -> Peer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, version) = watch::channel(0);
        let stats = Arc::new(Mutex::new(PeerStats::default()));
        let ctx = Ctx { cfg, stats: stats.clone(), version: Arc::new(tx) };
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { return };
                s.set_nodelay(true).unwrap();
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    ctx.update(|s| s.connections += 1);
                    if let Err(e) = serve(s, &ctx).await {
                        ctx.update(|s| s.errors.push(e));
                    }
                    ctx.update(|s| s.ended += 1);
                });
            }
        });
        Peer { addr, stats, version, task }
    }

    pub fn stats(&self) -> PeerStats {
        self.stats.lock().unwrap().clone()
    }

    /// Waits (no sleeping) until `cond` holds for the stats, or panics after `timeout`.
    pub async fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&PeerStats) -> bool) -> PeerStats {
        let mut v = self.version.clone();
        let fut = async {
            loop {
                {
                    let s = self.stats.lock().unwrap();
                    if cond(&s) {
                        return s.clone();
                    }
                }
                v.changed().await.unwrap();
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(s) => s,
            Err(_) => panic!("timed out waiting for {what}: {:?}", self.stats()),
        }
    }
}

enum Conn {
    Tcp { s: TcpStream, dec: StreamDecoder, buf: Vec<u8> },
    Ws { ws: Box<tokio_tungstenite::WebSocketStream<TcpStream>>, feb: bool, dec: StreamDecoder },
}

impl Conn {
    async fn recv(&mut self) -> Result<Option<Packet>, String> {
        match self {
            Conn::Tcp { s, dec, buf } => loop {
                if let Some(p) = dec.poll_packet() {
                    return p.map(Some).map_err(|e| e.to_string());
                }
                let n = s.read(buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Ok(None);
                }
                dec.handle_bytes(&buf[..n]);
            },
            Conn::Ws { ws, feb, dec } => loop {
                if !*feb {
                    if let Some(p) = dec.poll_packet() {
                        return p.map(Some).map_err(|e| e.to_string());
                    }
                }
                match ws.next().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(format!("ws: {e}")),
                    Some(Ok(Message::Binary(b))) if *feb => {
                        return Packet::decode_exact(b, &Limits::default())
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }
                    Some(Ok(Message::Binary(b))) => dec.handle_bytes(&b),
                    Some(Ok(Message::Close(_))) => return Ok(None),
                    Some(Ok(_)) => {}
                }
            },
        }
    }

    async fn send(&mut self, wire: Vec<u8>) -> Result<(), String> {
        match self {
            Conn::Tcp { s, .. } => s.write_all(&wire).await.map_err(|e| e.to_string()),
            Conn::Ws { ws, .. } => ws.send(Message::Binary(wire.into())).await.map_err(|e| e.to_string()),
        }
    }

    async fn close(&mut self) {
        match self {
            Conn::Tcp { s, .. } => {
                let _ = s.shutdown().await;
            }
            Conn::Ws { ws, .. } => {
                let _ = ws.close(None).await;
            }
        }
    }
}

async fn send(conn: &mut Conn, session: &mut Option<Session>, p: Packet) -> Result<(), String> {
    let p = match session {
        Some(s) if Session::wants_encryption(p.packet_type) => s.encrypt(&p).map_err(|e| e.to_string())?,
        _ => p,
    };
    conn.send(p.encode()).await
}

async fn serve(s: TcpStream, ctx: &Ctx) -> Result<(), String> {
    let cfg = &ctx.cfg;
    let mut conn = if cfg.ws {
        #[allow(clippy::result_large_err)] // tungstenite's callback signature
        let callback = |_req: &tungstenite::handshake::server::Request,
                        mut resp: tungstenite::handshake::server::Response| {
            resp.headers_mut().insert("Sec-WebSocket-Protocol", "acip".parse().unwrap());
            Ok(resp)
        };
        let ws = tokio_tungstenite::accept_hdr_async(s, callback).await.map_err(|e| e.to_string())?;
        Conn::Ws {
            ws: Box::new(ws),
            feb: cfg.dialect == Dialect::Feb,
            dec: StreamDecoder::new(Limits::default()),
        }
    } else {
        Conn::Tcp { s, dec: StreamDecoder::new(Limits::default()), buf: vec![0; 256 * 1024] }
    };
    let transport = if cfg.ws { Transport::WebSocket } else { Transport::Tcp };
    let mut hc = HandshakeConfig::new(cfg.dialect, transport, 7);
    hc.mode = cfg.mode;
    hc.password = cfg.password.clone();
    let mut hs = ServerHandshake::new(hc, Instant::now());
    let mut pending: Vec<Packet> = Vec::new();
    loop {
        while let Some(p) = hs.poll_transmit() {
            conn.send(p.encode()).await?;
        }
        while let Some(ev) = hs.poll_event() {
            match ev {
                HandshakeEvent::PlaintextClient { first_packet } => pending.push(first_packet),
                HandshakeEvent::AuthFailed { reason } => return Err(format!("auth failed: {reason}")),
                _ => {}
            }
        }
        if hs.is_complete() || !pending.is_empty() {
            break;
        }
        let Some(p) = conn.recv().await? else { return Ok(()) };
        hs.handle_packet(p, Instant::now()).map_err(|e| format!("handshake: {e}"))?;
    }
    let mut session = if hs.is_complete() { hs.into_session() } else { None };
    let encrypted = session.is_some();
    ctx.update(|s| {
        s.handshakes += 1;
        s.encrypted_sessions += u64::from(encrypted);
    });
    let mut frames = 0u64;
    loop {
        let p = match pending.pop() {
            Some(p) => p,
            None => match conn.recv().await? {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        let wire = p.wire_len();
        let p = match (&session, p.packet_type) {
            (Some(s), PacketType::ENCRYPTED) => s.decrypt(&p).map_err(|e| e.to_string())?,
            _ => p,
        };
        match p.packet_type {
            PacketType::CLIENT_CAPABILITIES => {
                ctx.update(|s| s.caps += 1);
                let state = if cfg.short_server_state {
                    Packet::new(PacketType::SERVER_STATE, vec![0u8; 31])
                } else {
                    ServerState::new(1, 1).to_packet()
                };
                send(&mut conn, &mut session, state).await?;
                if cfg.feb_audio {
                    // A bare Opus silence frame, as src/server/render.c queues it.
                    send(
                        &mut conn,
                        &mut session,
                        Packet::new(PacketType::AUDIO_OPUS_BATCH, vec![0xf8, 0xff, 0xfe]),
                    )
                    .await?;
                    // 48 kHz, 20 ms, one frame, reserved 0, its u16 size, the frame.
                    let mut batch = Vec::new();
                    for v in [48_000u32, 20, 1, 0] {
                        batch.extend_from_slice(&v.to_be_bytes());
                    }
                    batch.extend_from_slice(&3u16.to_be_bytes());
                    batch.extend_from_slice(&[0xf8, 0xff, 0xfe]);
                    send(&mut conn, &mut session, Packet::new(PacketType::AUDIO_OPUS_BATCH, batch)).await?;
                }
            }
            PacketType::STREAM_START => ctx.update(|s| s.stream_starts += 1),
            PacketType::PING => {
                ctx.update(|s| s.pings += 1);
                send(&mut conn, &mut session, Packet::empty(PacketType::PONG)).await?;
            }
            PacketType::IMAGE_FRAME => {
                let f = ImageFrame::decode_bytes(&p.payload).map_err(|e| e.to_string())?;
                match pattern::inspect(&f.pixels) {
                    Ok(info) => ctx.update(|s| {
                        s.frames.push(info);
                        s.frame_wire_sizes.push(wire);
                    }),
                    Err(e) => ctx.update(|s| s.pattern_errors.push(e.to_string())),
                }
                let text = format!("frame {frames}\n");
                let mut ascii = AsciiFrame::new(8, 2, text.into_bytes()).encode();
                if cfg.corrupt_ascii {
                    ascii[16] ^= 0xFF; // the checksum field (3.9)
                }
                send(&mut conn, &mut session, Packet::new(PacketType::ASCII_FRAME, ascii)).await?;
                frames += 1;
                if cfg.close_after_frames == Some(frames) {
                    conn.close().await;
                    return Ok(());
                }
            }
            other => ctx.update(|s| s.errors.push(format!("unexpected {other}"))),
        }
    }
}
