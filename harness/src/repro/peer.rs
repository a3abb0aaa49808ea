//! A raw WebSocket peer for the scenarios (RFC 6455; ACIP-SPEC.md 6.2): the HTTP upgrade, masked frames
//! written exactly as a scenario wants them (including broken fragmentation), and the server's packets
//! and close frame read back through the sans-IO `acip::ws::FrameDecoder` / `acip::stream::StreamDecoder`.
//! Every wait is bounded, so a silent server is an answer ([`Seen::Timeout`]), never a hang.

use std::net::SocketAddr;
use std::time::Duration;

use acip::codec::payloads::{ClientCapabilities, ImageFrame, StreamStart};
use acip::stream::StreamDecoder;
use acip::ws::{encode_frame, feed_head_stream, FrameDecoder, FrameDecoderConfig, OpCode};
use acip::{Dialect, Limits, Packet, PacketType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for a connect or the upgrade response.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest upgrade response head read.
const MAX_HEAD: usize = 16 * 1024;

/// What the server sent next.
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
    /// Bytes that are neither a WebSocket frame nor an ACIP packet.
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

/// One WebSocket connection driven byte by byte.
pub struct WsPeer {
    pub stream: TcpStream,
    frames: FrameDecoder,
    packets: StreamDecoder,
    mask: [u8; 4],
    buf: Vec<u8>,
}

impl WsPeer {
    /// TCP connect and the HTTP upgrade (subprotocol `acip`). `Err` says what the server answered instead.
    pub async fn connect(addr: SocketAddr, mask: [u8; 4]) -> Result<WsPeer, String> {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr} timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        stream.write_all(upgrade_request(addr).as_bytes()).await.map_err(|e| format!("upgrade: {e}"))?;
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        // Byte by byte so nothing after the head (a first frame) is consumed here.
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > MAX_HEAD {
                return Err("upgrade response head over 16 KiB".into());
            }
            match tokio::time::timeout(CONNECT_TIMEOUT, stream.read(&mut b)).await {
                Err(_) => return Err("no upgrade response in time".into()),
                Ok(Ok(0)) => {
                    return Err(format!("closed during the upgrade: {:?}", String::from_utf8_lossy(&head)))
                }
                Ok(Ok(_)) => head.push(b[0]),
                Ok(Err(e)) => return Err(format!("reading the upgrade response: {e}")),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("upgrade refused: {}", head.lines().next().unwrap_or_default()));
        }
        Ok(WsPeer {
            stream,
            frames: FrameDecoder::with_config(FrameDecoderConfig {
                max_frame: Limits::default().max_ws_frame,
                require_mask: Some(false),
                strict_length: false,
            }),
            packets: StreamDecoder::new(Limits::default()),
            mask,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Writes bytes as they are (e.g. a captured frame).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Writes one masked frame.
    pub async fn send_frame(&mut self, op: OpCode, fin: bool, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        encode_frame(op, fin, Some(self.mask), payload, &mut out);
        self.stream.write_all(&out).await
    }

    /// Sends one message as `fragment`-byte frames (BINARY, then CONTINUATIONs), or whole (`None`).
    pub async fn send_message(&mut self, msg: &[u8], fragment: Option<usize>) -> std::io::Result<()> {
        let size = fragment.unwrap_or(msg.len()).max(1);
        let chunks: Vec<&[u8]> = if msg.is_empty() { vec![msg] } else { msg.chunks(size).collect() };
        let mut out = Vec::with_capacity(msg.len() + 14 * chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            let op = if i == 0 { OpCode::Binary } else { OpCode::Continuation };
            encode_frame(op, i + 1 == chunks.len(), Some(self.mask), c, &mut out);
        }
        self.stream.write_all(&out).await
    }

    pub async fn send_packet(&mut self, p: &Packet) -> std::io::Result<()> {
        self.send_message(&p.encode(), None).await
    }

    /// The next thing the server sent, waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Seen {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = self.packets.poll_packet() {
                return match p {
                    Ok(p) => Seen::Packet(p),
                    Err(e) => Seen::Garbage(e.to_string()),
                };
            }
            while let Some(f) = self.frames.poll_frame() {
                let frame = match f {
                    Ok(f) => f,
                    Err(e) => return Seen::Garbage(e.to_string()),
                };
                match frame.opcode {
                    OpCode::Close => {
                        let (code, reason) = acip::ws::read_close_lossy(&frame.payload);
                        return Seen::Close { code: code.unwrap_or(acip::ws::close_code::NO_STATUS), reason };
                    }
                    op if op.is_control() => {}
                    _ => {
                        feed_head_stream(&frame, &mut self.packets);
                    }
                }
                if let Some(p) = self.packets.poll_packet() {
                    return match p {
                        Ok(p) => Seen::Packet(p),
                        Err(e) => Seen::Garbage(e.to_string()),
                    };
                }
            }
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)).await {
                Err(_) => return Seen::Timeout,
                Ok(Ok(0)) => return Seen::Eof("eof".into()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Seen::Eof(e.to_string()),
            };
            self.frames.handle_bytes(&self.buf[..n]);
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

    /// Plaintext join (ACIP-SPEC.md 7.3/7.4): CLIENT_CAPABILITIES and STREAM_START, then SERVER_STATE.
    pub async fn join(
        &mut self,
        dialect: Dialect,
        term: (u16, u16),
        fps: u8,
        wait: Duration,
    ) -> Result<(), Seen> {
        let caps = ClientCapabilities::new(dialect, term.0, term.1, fps).to_packet();
        let start = StreamStart::new(1).to_packet();
        for p in [caps, start] {
            if let Err(e) = self.send_packet(&p).await {
                // A server that refuses right after the upgrade (e.g. full: close 1013) may have closed
                // before our write; its close frame can still be read.
                return Err(match self.until_end(Duration::from_secs(1)).await {
                    Seen::Close { code, reason } => Seen::Close { code, reason },
                    _ => Seen::Eof(e.to_string()),
                });
            }
        }
        self.until(PacketType::SERVER_STATE, wait).await.map(|_| ())
    }

    /// Sends a close frame (1000) and waits for the server's answer.
    pub async fn close(&mut self, wait: Duration) -> Seen {
        if let Err(e) = self.send_frame(OpCode::Close, true, &1000u16.to_be_bytes()).await {
            return Seen::Eof(e.to_string());
        }
        self.until_end(wait).await
    }
}

/// The upgrade request of a browser-like client asking for the `acip` subprotocol.
pub fn upgrade_request(addr: SocketAddr) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: acip\r\n\r\n"
    )
}

/// An IMAGE_FRAME carrying test-pattern frame `seq` (`w`x`h` RGB24: 320x240 is the captures' 230,446
/// bytes on the wire, 640x480 the browser's 921,646).
pub fn pattern_frame(w: u16, h: u16, seq: u64, tag: u32) -> Packet {
    let mut pixels = Vec::new();
    let now_us =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros()
            as u64;
    // The pattern needs at least MIN_PIXELS; every caller passes a real frame size.
    if acip::pattern::render(w, h, seq, now_us, tag, &mut pixels).is_err() {
        pixels = vec![0; w as usize * h as usize * 3];
    }
    ImageFrame::rgb24(u32::from(w), u32::from(h), pixels).to_packet()
}

/// Parses `ws://host:port[/path]` (the only form the raw probes speak) into a socket address.
pub fn ws_target(url: &str) -> Result<SocketAddr, String> {
    match url.parse::<reference_client::Target>() {
        Ok(reference_client::Target::Ws { addr, .. }) => Ok(addr),
        Ok(reference_client::Target::Tcp(_)) => Err(format!("{url}: this probe needs a ws:// target")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_sized_frames() {
        assert_eq!(pattern_frame(320, 240, 0, 0).wire_len(), 230_446);
        assert_eq!(pattern_frame(640, 480, 0, 0).wire_len(), 921_646);
    }

    #[test]
    fn targets() {
        assert_eq!(ws_target("ws://127.0.0.1:9").unwrap(), "127.0.0.1:9".parse().unwrap());
        assert!(ws_target("tcp://127.0.0.1:9").is_err());
    }
}
