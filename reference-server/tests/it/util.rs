//! A raw test peer over real loopback sockets: sends exactly the bytes a test wants (including malformed
//! ones), drives `acip`'s client handshake, and reports how the server closed the connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use acip::crypto::{ClientHandshake, CryptoMode, HandshakeConfig, Session, Transport as HsTransport};
use acip::stream::StreamDecoder;
use acip::ws::{encode_frame, FrameDecoder, FrameDecoderConfig, OpCode};
use acip::{Dialect, Limits, Packet, PacketType};
use reference_server::{ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for anything in a test.
pub const WAIT: Duration = Duration::from_secs(10);
/// Mask key used for client frames.
pub const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

pub async fn server(f: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut c = ServerConfig::loopback();
    c.rng_seed = Some(7);
    f(&mut c);
    reference_server::start(c).await.expect("server starts")
}

/// How the server ended a connection, as the peer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// TCP EOF (or reset) without a close frame.
    Eof,
    /// A WebSocket close frame.
    Ws { code: u16, reason: String },
}

/// What `recv` produced.
#[derive(Debug)]
pub enum Recv {
    Packet(Packet),
    Closed(Closed),
    /// Bytes that are not ACIP (e.g. the SERVER_FULL line).
    NotAcip(Vec<u8>),
}

pub struct Peer {
    pub stream: TcpStream,
    pub ws: bool,
    pub dialect: Dialect,
    frames: FrameDecoder,
    packets: StreamDecoder,
    raw: Vec<u8>,
    pub session: Option<Session>,
    /// ERROR_MESSAGE / REMOTE_LOG etc. seen while waiting for something else.
    pub seen: Vec<Packet>,
    /// WebSocket data frames received (to see server-side fragmentation).
    pub data_frames: u64,
}

impl Peer {
    pub async fn tcp(addr: SocketAddr, dialect: Dialect) -> Peer {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Peer::wrap(stream, false, dialect)
    }

    fn wrap(stream: TcpStream, ws: bool, dialect: Dialect) -> Peer {
        Peer {
            stream,
            ws,
            dialect,
            frames: FrameDecoder::with_config(FrameDecoderConfig {
                max_frame: Limits::default().max_ws_frame,
                require_mask: Some(false),
                strict_length: false,
                observe: false,
            }),
            packets: StreamDecoder::new(Limits::default()),
            raw: Vec::new(),
            session: None,
            seen: Vec::new(),
            data_frames: 0,
        }
    }

    /// Connects and upgrades, asking for subprotocol `protocol` if given. Returns the peer and the 101
    /// response head.
    pub async fn ws(addr: SocketAddr, dialect: Dialect, protocol: Option<&str>) -> (Peer, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let proto = protocol.map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n")).unwrap_or_default();
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(WAIT, stream.read(&mut b)).await.expect("101 in time").unwrap();
            assert_eq!(n, 1, "connection closed during the upgrade: {}", String::from_utf8_lossy(&head));
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        (Peer::wrap(stream, true, dialect), head)
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Sends one WebSocket frame.
    pub async fn send_frame(&mut self, op: OpCode, fin: bool, payload: &[u8], masked: bool) {
        let mut out = Vec::new();
        encode_frame(op, fin, masked.then_some(MASK), payload, &mut out);
        self.send_raw(&out).await;
    }

    /// Bytes of a packet as this peer sends it (encrypted once a session exists).
    pub fn wire(&mut self, p: &Packet) -> Vec<u8> {
        match self.session.as_mut() {
            Some(s) if !p.packet_type.is_handshake() => s.encrypt(p).unwrap().encode(),
            _ => p.encode(),
        }
    }

    /// Sends a packet: raw on TCP, one masked BINARY frame on WebSocket (or `fragment`-byte frames).
    pub async fn send(&mut self, p: &Packet) {
        self.send_fragmented(p, 0).await
    }

    pub async fn send_fragmented(&mut self, p: &Packet, fragment: usize) {
        let bytes = self.wire(p);
        if self.ws {
            let mut out = Vec::new();
            for (op, fin, chunk) in acip::ws::fragment(&bytes, fragment) {
                encode_frame(op, fin, Some(MASK), chunk, &mut out);
            }
            self.send_raw(&out).await;
        } else {
            self.send_raw(&bytes).await;
        }
    }

    /// The next packet (decrypted), a close, or non-ACIP bytes. Panics after [`WAIT`].
    pub async fn recv(&mut self) -> Recv {
        tokio::time::timeout(WAIT, self.recv_inner()).await.expect("server answered in time")
    }

    async fn recv_inner(&mut self) -> Recv {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            if let Some(p) = self.packets.poll_packet() {
                match p {
                    Ok(p) => return Recv::Packet(self.open(p)),
                    Err(_) => return Recv::NotAcip(std::mem::take(&mut self.raw)),
                }
            }
            if self.ws {
                while let Some(f) = self.frames.poll_frame() {
                    let f = f.expect("server frames are valid");
                    match f.opcode {
                        OpCode::Close => {
                            let code = f.payload.get(..2).map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                            let reason =
                                String::from_utf8_lossy(f.payload.get(2..).unwrap_or(&[])).to_string();
                            return Recv::Closed(Closed::Ws { code, reason });
                        }
                        op if op.is_control() => {}
                        _ => {
                            self.data_frames += 1;
                            self.packets.handle_bytes(&f.payload);
                            if let Some(Ok(p)) = self.packets.poll_packet() {
                                return Recv::Packet(self.open(p));
                            }
                        }
                    }
                }
            }
            let n = self.stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                if !self.raw.is_empty() && self.packets.buffered() > 0 && !self.ws {
                    return Recv::NotAcip(std::mem::take(&mut self.raw));
                }
                return Recv::Closed(Closed::Eof);
            }
            if self.ws {
                self.frames.handle_bytes(&buf[..n]);
            } else {
                self.raw.extend_from_slice(&buf[..n]);
                self.packets.handle_bytes(&buf[..n]);
            }
        }
    }

    fn open(&mut self, p: Packet) -> Packet {
        self.raw.clear();
        match (&self.session, p.packet_type) {
            (Some(s), PacketType::ENCRYPTED) => s.decrypt(&p).expect("server packets decrypt"),
            _ => p,
        }
    }

    /// Waits for a packet of type `t`, keeping the others in `seen`. Panics on a close.
    pub async fn recv_type(&mut self, t: PacketType) -> Packet {
        loop {
            match self.recv().await {
                Recv::Packet(p) if p.packet_type == t => return p,
                Recv::Packet(p) => self.seen.push(p),
                other => panic!("waiting for {t}, got {other:?} (seen {:?})", types(&self.seen)),
            }
        }
    }

    /// Reads until the server closes; returns how, with the packets seen on the way.
    pub async fn expect_close(&mut self) -> (Closed, Vec<Packet>) {
        let mut got = Vec::new();
        loop {
            match self.recv().await {
                Recv::Packet(p) => got.push(p),
                Recv::Closed(c) => return (c, got),
                Recv::NotAcip(b) => panic!("non-ACIP bytes {:?}", String::from_utf8_lossy(&b)),
            }
        }
    }

    /// Runs `acip`'s client handshake in `mode`; panics if it fails.
    pub async fn handshake(&mut self, mode: CryptoMode) -> Duration {
        self.handshake_with(mode, |_| {}).await.expect("handshake succeeds")
    }

    /// Runs `acip`'s client handshake with a tuned config. `Err` says why it failed (a client-side error,
    /// an AUTH_FAILED, or the server closing).
    pub async fn handshake_with(
        &mut self,
        mode: CryptoMode,
        tune: impl FnOnce(&mut HandshakeConfig),
    ) -> Result<Duration, String> {
        let t0 = Instant::now();
        let transport = if self.ws { HsTransport::WebSocket } else { HsTransport::Tcp };
        let mut cfg = HandshakeConfig::new(self.dialect, transport, 99);
        cfg.mode = mode;
        tune(&mut cfg);
        let mut hs = ClientHandshake::new(cfg, Instant::now());
        loop {
            while let Some(p) = hs.poll_transmit() {
                self.send(&p).await;
            }
            if hs.is_complete() {
                break;
            }
            if hs.is_failed() {
                return Err("client handshake failed".into());
            }
            let p = match self.recv().await {
                Recv::Packet(p) if p.packet_type == PacketType::CRYPTO_AUTH_FAILED => {
                    return Err(format!("AUTH_FAILED {:?}", p.payload.first()));
                }
                Recv::Packet(p) => p,
                other => return Err(format!("server ended the handshake: {other:?}")),
            };
            hs.handle_packet(p, Instant::now()).map_err(|e| e.to_string())?;
        }
        self.session = hs.into_session();
        Ok(t0.elapsed())
    }

    /// CLIENT_CAPABILITIES for this dialect.
    pub fn caps(&self, w: u16, h: u16, fps: u8) -> Packet {
        acip::codec::payloads::ClientCapabilities::new(self.dialect, w, h, fps).to_packet()
    }

    /// Plaintext join: CAPS, STREAM_START, then wait for SERVER_STATE.
    pub async fn join(&mut self, w: u16, h: u16, fps: u8) {
        let caps = self.caps(w, h, fps);
        self.send(&caps).await;
        self.send(&acip::codec::payloads::StreamStart::new(1).to_packet()).await;
        self.recv_type(PacketType::SERVER_STATE).await;
    }
}

pub fn types(ps: &[Packet]) -> Vec<PacketType> {
    ps.iter().map(|p| p.packet_type).collect()
}

/// An IMAGE_FRAME carrying test-pattern frame `seq`.
pub fn pattern_frame(w: u16, h: u16, seq: u64) -> Packet {
    let mut pixels = Vec::new();
    let now_us =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    acip::pattern::render(w, h, seq, now_us, 1, &mut pixels).unwrap();
    acip::codec::payloads::ImageFrame::rgb24(w as u32, h as u32, pixels).to_packet()
}

/// Waits until the server has no connection left and no slot in use.
pub async fn settle(server: &ServerHandle) {
    let ok = server.wait_until(WAIT, |s| s.connections() == 0 && s.slots_in_use() == 0).await;
    assert!(
        ok,
        "server did not settle: {} connections, {} slots",
        server.connections(),
        server.slots_in_use()
    );
}

/// A well-behaved TCP client streaming small test-pattern frames every 5 ms (and discarding what it
/// receives) while a test throws bad input at the same server.
pub struct Bystander {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub conn_id: u64,
}

impl Bystander {
    pub async fn start(server: &ServerHandle) -> Bystander {
        let before = server.connection_ids();
        let mut p = Peer::tcp(server.tcp_addr().unwrap(), Dialect::Feb).await;
        p.join(20, 5, 10).await;
        let conn_id =
            *server.connection_ids().iter().find(|id| !before.contains(id)).expect("its connection");
        let (mut r, mut w) = p.stream.into_split();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        let s = stop.clone();
        let writer = tokio::spawn(async move {
            let mut seq = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if w.write_all(&pattern_frame(32, 24, seq).encode()).await.is_err() {
                    return;
                }
                seq += 1;
                // Pacing of the stream, not synchronisation.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Bystander { stop, tasks: vec![reader, writer], conn_id }
    }

    /// Frames the server has received from the bystander (its per-connection counter).
    pub fn frames(&self, server: &ServerHandle) -> (u64, u64) {
        let st = server.stats();
        let c = st.per_connection.iter().find(|c| c.id == self.conn_id).expect("bystander still connected");
        (c.counters.frames_received, c.counters.frames_lost + c.counters.frames_corrupt)
    }

    /// Waits until the bystander's frame counter passes `n`.
    pub async fn wait_past(&self, server: &ServerHandle, n: u64) {
        let ok = server.wait_until(WAIT, |s| self.frames(s).0 > n).await;
        assert!(ok, "bystander stalled at {n} frames");
    }

    pub async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Reads until the peer closes (bounded by [`WAIT`]).
pub async fn read_to_end(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await.expect("server closes in time");
    out
}
