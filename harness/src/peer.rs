//! The harness's one client driver: a TCP socket (and, for WebSocket, the HTTP upgrade) around an
//! `acip::conn::Conn` in the client role. The connection decides everything about bytes (framing, the
//! handshake, PING/PONG, CLOSE); this driver only moves bytes and time. Probes that must misbehave on
//! purpose write hand-made bytes or frames beside it with [`Peer::send_raw`] / [`Peer::send_frame`].
//! Every wait is bounded, so a silent server is an answer ([`Seen::Timeout`]), never a hang.

use std::collections::VecDeque;
use std::time::Duration;

use acip::conn::{Conn, ConnConfig, Event, Input, Output, Received, Receiver};
use acip::crypto::Transport;
use acip::ws::{encode_frame, MaskKeys, OpCode};
use acip::{Limits, Packet, PacketType};
use bytes::Bytes;
use reference_client::Target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Longest wait for a connect or the upgrade response.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest upgrade response head read.
pub const MAX_UPGRADE_HEAD: usize = 16 * 1024;
/// Read buffer of one peer.
const READ_BUF: usize = 64 * 1024;

/// What the server did next.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Packet(Packet),
    /// A close frame: code (1005 when absent) and reason.
    Close {
        code: u16,
        reason: String,
    },
    /// EOF or a reset without a close frame.
    Eof(String),
    /// Bytes that are neither a WebSocket frame nor an ACIP packet (the connection's violation).
    Garbage(String),
    Timeout,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::Packet(p) => write!(f, "packet {}", p.packet_type.name()),
            Seen::Close { code, reason } => write!(f, "close {code} {reason:?}"),
            Seen::Eof(why) => write!(f, "connection ended without a close frame ({why})"),
            Seen::Garbage(why) => write!(f, "undecodable bytes ({why})"),
            Seen::Timeout => f.write_str("nothing (timeout)"),
        }
    }
}

/// The HTTP upgrade (RFC 6455 4.1) asking for subprotocol `acip` (ACIP-SPEC.md 6.2): checks the 101
/// status and `Sec-WebSocket-Accept`, and returns the bytes that followed the response head (a first frame).
pub async fn upgrade(stream: &mut TcpStream, host: &str, path: &str) -> Result<Vec<u8>, String> {
    let key = tungstenite::handshake::client::generate_key();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: acip\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.map_err(|e| format!("upgrade request: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("upgrade response: {e}"))?;
        if n == 0 {
            return Err(format!("closed during the upgrade: {:?}", String::from_utf8_lossy(&buf)));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_UPGRADE_HEAD {
            return Err("upgrade response head over 16 KiB".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("upgrade refused: {status:?}"));
    }
    let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("sec-websocket-accept").then(|| v.trim().to_string())
    });
    if accept.as_deref() != Some(want.as_str()) {
        return Err(format!("bad Sec-WebSocket-Accept {accept:?}"));
    }
    Ok(buf[end..].to_vec())
}

/// TCP connect (bounded by [`CONNECT_TIMEOUT`]), with `TCP_NODELAY`.
pub async fn connect_tcp(addr: std::net::SocketAddr) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Connects to `target` and, for WebSocket, upgrades; returns the stream and the bytes that followed the
/// upgrade response. `small_buffers`: tiny socket buffers, so a server that stops reading (or a probe
/// that stops reading the server) is felt quickly.
pub async fn open_stream(target: &Target, small_buffers: bool) -> Result<(TcpStream, Vec<u8>), String> {
    let addr = target.addr();
    let sock = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
        .map_err(|e| format!("socket: {e}"))?;
    if small_buffers {
        let _ = sock.set_recv_buffer_size(4096);
        let _ = sock.set_send_buffer_size(16 * 1024);
    }
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let leftover = if target.is_ws() {
        tokio::time::timeout(CONNECT_TIMEOUT, upgrade(&mut stream, &target.host(), target.path()))
            .await
            .map_err(|_| "HTTP upgrade timed out".to_string())??
    } else {
        Vec::new()
    };
    Ok((stream, leftover))
}

/// What a [`Listener`] heard from the server, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// A packet (as sent: an ENCRYPTED one is not opened here).
    Packet(Packet),
    WsPing,
    WsPong,
    /// A CLOSE frame, read lossily: code (`None` when absent) and reason.
    Close(Option<u16>, String),
    Eof,
    /// A read error, or bytes that are no frame or packet (the reading stops).
    Error(String),
}

/// A background reader of what a server sends, for probes that write on their own schedule (and may
/// stop reading on purpose): `acip::conn::Receiver::observer` in a task, nothing answered.
pub struct Listener {
    heard: mpsc::UnboundedReceiver<Heard>,
    pause: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Starts reading `r` (after `leftover`, the bytes that came with the upgrade response); frames up
    /// to `max_frame` bytes.
    pub fn spawn(r: OwnedReadHalf, leftover: Vec<u8>, transport: Transport, max_frame: usize) -> Listener {
        let (tx, heard) = mpsc::unbounded_channel();
        let (pause, paused) = watch::channel(false);
        let limits = Limits { max_ws_frame: max_frame, ..Limits::default() };
        let task = tokio::spawn(listen(r, leftover, Receiver::observer(transport, limits), tx, paused));
        Listener { heard, pause, task }
    }

    /// Stops (`true`) or resumes reading the socket.
    pub fn pause(&self, paused: bool) {
        self.pause.send_replace(paused);
    }

    /// What was heard and not taken yet, without waiting.
    pub fn try_next(&mut self) -> Option<Heard> {
        self.heard.try_recv().ok()
    }

    /// The next thing heard, waiting until `deadline`; `None` at the deadline or when reading ended.
    pub async fn next_before(&mut self, deadline: tokio::time::Instant) -> Option<Heard> {
        tokio::time::timeout_at(deadline, self.heard.recv()).await.ok().flatten()
    }
}

async fn listen(
    mut r: OwnedReadHalf,
    leftover: Vec<u8>,
    mut rx: Receiver,
    tx: mpsc::UnboundedSender<Heard>,
    mut paused: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; READ_BUF];
    let mut bytes = leftover;
    loop {
        rx.handle_bytes(&bytes);
        while let Some(item) = rx.poll(std::time::Instant::now()) {
            let heard = match item {
                Ok(Received::Packet { packet, .. }) => Heard::Packet(packet),
                Ok(Received::Ping(_)) => Heard::WsPing,
                Ok(Received::Pong(_)) => Heard::WsPong,
                Ok(Received::Close(c)) => Heard::Close(c.code, c.reason),
                Err(e @ acip::Error::Codec(_)) => {
                    Heard::Error(format!("undecodable bytes from the server: {e}"))
                }
                Err(e) => Heard::Error(format!("bad frame from the server: {e}")),
            };
            let stop = matches!(heard, Heard::Error(_));
            let _ = tx.send(heard);
            if stop {
                return;
            }
        }
        while *paused.borrow() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        let n = match r.read(&mut buf).await {
            Ok(0) => {
                let _ = tx.send(Heard::Eof);
                return;
            }
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Heard::Error(e.to_string()));
                return;
            }
        };
        bytes = buf[..n].to_vec();
    }
}

/// One client connection driven through `acip::conn`.
pub struct Peer {
    pub stream: TcpStream,
    conn: Conn,
    events: VecDeque<Event>,
    buf: Vec<u8>,
    /// Masks of hand-made frames (seeded: reproducible).
    masks: MaskKeys,
    ended: Option<String>,
    /// Handshake packets in order: (sent by us, type).
    handshake_log: Vec<(bool, PacketType)>,
}

impl Peer {
    /// Connects to `target` (and upgrades, for WebSocket); `config.handshake.transport` follows the target.
    pub async fn connect(target: &Target, mut config: ConnConfig) -> Result<Peer, String> {
        let mut stream = connect_tcp(target.addr()).await?;
        config.handshake.transport = target.transport();
        let leftover = if target.is_ws() {
            tokio::time::timeout(CONNECT_TIMEOUT, upgrade(&mut stream, &target.host(), target.path()))
                .await
                .map_err(|_| "no upgrade response in time".to_string())??
        } else {
            Vec::new()
        };

        let masks = MaskKeys::new(config.mask_seed as u32);
        let conn = Conn::client(config, std::time::Instant::now());
        let mut peer = Peer {
            stream,
            conn,
            events: VecDeque::new(),
            buf: vec![0u8; READ_BUF],
            masks,
            ended: None,
            handshake_log: Vec::new(),
        };
        if !leftover.is_empty() {
            peer.conn.handle_input(Input::Bytes(Bytes::from(leftover)), std::time::Instant::now());
        }
        peer.flush().await.map_err(|e| format!("writing the first handshake packet: {e}"))?;
        Ok(peer)
    }

    /// The connection state machine (for its state and whether it is encrypted).
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// The handshake packets so far, in order: (sent by us, type).
    pub fn handshake_log(&self) -> &[(bool, PacketType)] {
        &self.handshake_log
    }

    /// Writes what the connection wants sent and keeps its events for [`Peer::next`].
    async fn flush(&mut self) -> std::io::Result<()> {
        while let Some(o) = self.conn.poll_output() {
            match o {
                Output::Transmit(b) => self.stream.write_all(&b).await?,
                Output::Event(Event::HandshakePacket { sent, packet_type }) => {
                    self.handshake_log.push((sent, packet_type))
                }
                Output::Event(e) => self.events.push_back(e),
            }
        }
        Ok(())
    }

    /// Shuts down our sending side (TCP FIN) after what was queued.
    pub async fn shutdown_write(&mut self) -> std::io::Result<()> {
        self.stream.shutdown().await
    }

    /// Runs the handshake to its end within `wait`: `Ok(encrypted)`, or what ended it instead.
    pub async fn handshake(&mut self, wait: Duration) -> Result<bool, Seen> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let done = self.events.iter().enumerate().find_map(|(i, e)| match e {
                Event::HandshakeDone { encrypted } => Some((i, *encrypted)),
                _ => None,
            });
            if let Some((i, encrypted)) = done {
                self.events.remove(i);
                return Ok(encrypted);
            }
            if let Some(e) = self.events.iter().find_map(|e| match e {
                Event::Violation(e) => Some(Seen::Garbage(e.to_string())),
                Event::PeerClosed { code, reason } => Some(Seen::Close {
                    code: code.unwrap_or(acip::ws::close_code::NO_STATUS),
                    reason: reason.clone(),
                }),
                _ => None,
            }) {
                return Err(e);
            }
            if let Some(s) = self.read_some(deadline).await {
                return Err(s);
            }
        }
    }

    /// Reads once (or fires the connection's timer) before `deadline`; `Some` when the wait ended otherwise.
    async fn read_some(&mut self, deadline: tokio::time::Instant) -> Option<Seen> {
        if let Some(why) = &self.ended {
            return Some(Seen::Eof(why.clone()));
        }
        let timer = self.conn.poll_timeout().map(tokio::time::Instant::from_std);
        let until = timer.map_or(deadline, |t| t.min(deadline));
        match tokio::time::timeout_at(until, self.stream.read(&mut self.buf)).await {
            Err(_) if timer.is_some_and(|t| t <= deadline) => {
                self.conn.handle_input(Input::Timeout, std::time::Instant::now());
            }
            Err(_) => return Some(Seen::Timeout),
            Ok(Ok(0)) => {
                self.ended = Some("eof".into());
                return Some(Seen::Eof("eof".into()));
            }
            Ok(Ok(n)) => {
                let bytes = Bytes::copy_from_slice(&self.buf[..n]);
                self.conn.handle_input(Input::Bytes(bytes), std::time::Instant::now());
            }
            Ok(Err(e)) => {
                self.ended = Some(e.to_string());
                return Some(Seen::Eof(e.to_string()));
            }
        }
        if let Err(e) = self.flush().await {
            self.ended = Some(e.to_string());
        }
        None
    }

    /// The next thing the server did, waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Seen {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(e) = self.events.pop_front() {
                match e {
                    Event::Packet(p) => return Seen::Packet(p),
                    Event::PeerClosed { code, reason } => {
                        return Seen::Close { code: code.unwrap_or(acip::ws::close_code::NO_STATUS), reason }
                    }
                    Event::Violation(e) => return Seen::Garbage(e.to_string()),
                    Event::HandshakeDone { .. }
                    | Event::HandshakePacket { .. }
                    | Event::RekeyIgnored(_)
                    | Event::Dropped(_) => {}
                }
            }
            if let Some(s) = self.read_some(deadline).await {
                return s;
            }
        }
    }

    /// Reads until a packet of type `t` (other packets are skipped); `Err` is whatever ended the wait.
    pub async fn until(&mut self, t: PacketType, wait: Duration) -> Result<Packet, Seen> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Seen::Packet(p) if p.packet_type == t => return Ok(p),
                Seen::Packet(_) => {}
                other => return Err(other),
            }
        }
    }

    /// Reads until the connection ends; returns how (skipping packets).
    pub async fn until_end(&mut self, wait: Duration) -> Seen {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Seen::Packet(_) => {}
                other => return other,
            }
        }
    }

    /// Sends a packet through the connection (sealed when the session is encrypted).
    pub async fn send(&mut self, p: Packet) -> std::io::Result<()> {
        if self.conn.state() == acip::conn::State::Closed {
            return Err(std::io::Error::new(std::io::ErrorKind::NotConnected, "the connection is closed"));
        }
        self.conn.handle_input(Input::Send(p), std::time::Instant::now());
        self.flush().await
    }

    /// Starts a close (WebSocket CLOSE with `code`), then waits for the server's answer.
    pub async fn close(&mut self, code: u16, wait: Duration) -> Seen {
        self.conn.handle_input(Input::Close { code, reason: String::new() }, std::time::Instant::now());
        if let Err(e) = self.flush().await {
            return Seen::Eof(e.to_string());
        }
        self.until_end(wait).await
    }

    /// Writes bytes as they are, beside the connection (e.g. a captured or deliberately broken frame).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// A fresh masking key for a hand-made frame.
    pub fn mask(&mut self) -> [u8; 4] {
        self.masks.next_key()
    }

    /// Writes one hand-made masked frame.
    pub async fn send_frame(&mut self, op: OpCode, fin: bool, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        let mask = self.mask();
        encode_frame(op, fin, Some(mask), payload, &mut out);
        self.stream.write_all(&out).await
    }

    /// Sends one hand-made message as `fragment`-byte frames (BINARY, then CONTINUATIONs), or whole.
    pub async fn send_message(&mut self, msg: &[u8], fragment: Option<usize>) -> std::io::Result<()> {
        let size = fragment.unwrap_or(msg.len()).max(1);
        let chunks: Vec<&[u8]> = if msg.is_empty() { vec![msg] } else { msg.chunks(size).collect() };
        let mut out = Vec::with_capacity(msg.len() + 14 * chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            let op = if i == 0 { OpCode::Binary } else { OpCode::Continuation };
            let mask = self.mask();
            encode_frame(op, i + 1 == chunks.len(), Some(mask), c, &mut out);
        }
        self.stream.write_all(&out).await
    }
}
