//! The two transports as a write half ([`WireSink`]) and a read half ([`WireSource`]) carrying whole ACIP
//! packets (ACIP-SPEC.md 6.1 raw TCP, 6.2 WebSocket).
//!
//! Receive framing: TCP and the `head` WebSocket dialect are byte streams of back-to-back packets
//! ([`acip::stream::StreamDecoder`]); in the `feb` dialect one WebSocket message is one packet
//! ([`acip::Packet::decode_exact`]). Send framing on WebSocket: one BINARY frame per packet, or a first
//! BINARY frame then CONTINUATION frames of a fixed size written as raw frames through tungstenite
//! (`Message::Frame`), which masks them as a client must.

use std::time::{Duration, Instant};

use acip::stream::StreamDecoder;
use acip::{Dialect, Limits, Packet};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::Message;

use crate::{ClientError, Result, Target};

type Ws = WebSocketStream<TcpStream>;

/// The `SERVER_FULL` line a full TCP server writes instead of a packet (ACIP-SPEC.md 6.1).
const SERVER_FULL_PREFIX: &[u8] = b"SERVER_FULL";

/// Opens the transport: TCP connect with TCP_NODELAY, then the WebSocket upgrade with
/// `Sec-WebSocket-Protocol: acip` for a `ws://` target.
pub(crate) async fn connect(
    target: &Target,
    dialect: Dialect,
    limits: Limits,
) -> Result<(WireSink, WireSource)> {
    let addr = target.addr();
    let tcp = TcpStream::connect(addr).await.map_err(|e| ClientError::connect(addr, e))?;
    tcp.set_nodelay(true)?;
    match target {
        Target::Tcp(_) => {
            let (rd, wr) = tcp.into_split();
            Ok((WireSink::Tcp(wr), WireSource::tcp(rd, limits)))
        }
        Target::Ws { url, .. } => {
            let mut request = url
                .as_str()
                .into_client_request()
                .map_err(|e| ClientError::Config(format!("bad WebSocket URL {url:?}: {e}")))?;
            request.headers_mut().insert("Sec-WebSocket-Protocol", "acip".parse().expect("static header"));
            let config = WebSocketConfig::default()
                .max_message_size(Some(limits.max_ws_message))
                .max_frame_size(Some(limits.max_ws_frame));
            let (ws, _response) = tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
                .await
                .map_err(|e| ClientError::WsUpgrade { url: url.clone(), source: Box::new(e) })?;
            let (sink, stream) = ws.split();
            Ok((WireSink::Ws(sink), WireSource::ws(stream, dialect, limits)))
        }
    }
}

/// Time spent in one packet write: handing the bytes to the socket, and flushing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WriteTiming {
    pub write: Duration,
    pub flush: Duration,
}

/// The write half.
pub(crate) enum WireSink {
    Tcp(OwnedWriteHalf),
    Ws(SplitSink<Ws, Message>),
}

impl WireSink {
    /// Writes one encoded packet (all of it, flushed): on WebSocket as one message, or fragmented when
    /// `fragment` is `Some(n)`.
    pub(crate) async fn write_packet(&mut self, wire: Bytes, fragment: Option<usize>) -> Result<WriteTiming> {
        let start = Instant::now();
        match self {
            WireSink::Tcp(w) => {
                w.write_all(&wire).await?;
                let wrote = Instant::now();
                w.flush().await?;
                Ok(WriteTiming { write: wrote - start, flush: wrote.elapsed() })
            }
            WireSink::Ws(sink) => {
                for frame in ws_frames(wire, fragment) {
                    sink.feed(frame).await.map_err(ws_io)?;
                }
                let wrote = Instant::now();
                sink.flush().await.map_err(ws_io)?;
                Ok(WriteTiming { write: wrote - start, flush: wrote.elapsed() })
            }
        }
    }

    /// Writes and flushes one WebSocket frame (the concurrent-writers fault locks per fragment).
    pub(crate) async fn write_ws_frame(&mut self, frame: Message) -> Result<()> {
        match self {
            WireSink::Ws(sink) => sink.send(frame).await.map_err(ws_io),
            WireSink::Tcp(_) => Err(ClientError::Config("WebSocket frame on a TCP connection".into())),
        }
    }

    /// Ends the session from this side: a TCP FIN, or a WebSocket close 1000.
    pub(crate) async fn close(&mut self) -> Result<()> {
        match self {
            WireSink::Tcp(w) => Ok(w.shutdown().await?),
            WireSink::Ws(sink) => {
                let frame = CloseFrame {
                    code: tungstenite::protocol::frame::coding::CloseCode::Normal,
                    reason: "".into(),
                };
                sink.send(Message::Close(Some(frame))).await.map_err(ws_io)
            }
        }
    }
}

/// The WebSocket messages of one packet: one BINARY message, or raw frames — a first BINARY without FIN,
/// CONTINUATIONs, FIN on the last — each sharing `wire` (no copy).
pub(crate) fn ws_frames(wire: Bytes, fragment: Option<usize>) -> Vec<Message> {
    let Some(size) = fragment.filter(|&n| n > 0 && n < wire.len()) else {
        return vec![Message::Binary(wire)];
    };
    let mut frames = Vec::with_capacity(wire.len().div_ceil(size));
    let mut off = 0;
    while off < wire.len() {
        let end = (off + size).min(wire.len());
        let opcode = if off == 0 { OpCode::Data(Data::Binary) } else { OpCode::Data(Data::Continue) };
        frames.push(Message::Frame(Frame::message(wire.slice(off..end), opcode, end == wire.len())));
        off = end;
    }
    frames
}

fn ws_io(e: tungstenite::Error) -> ClientError {
    match e {
        tungstenite::Error::Io(io) => ClientError::Io(io),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            ClientError::Closed { code: None, reason: "WebSocket already closed".into() }
        }
        other => ClientError::Protocol(format!("WebSocket: {other}")),
    }
}

/// What the read half produced.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// One packet (still possibly ENCRYPTED) and its size on the wire.
    Packet(Packet, usize),
    /// The server closed: WebSocket close code and reason, or TCP EOF (`None`, "eof").
    Closed { code: Option<u16>, reason: String },
}

/// The read half.
pub(crate) enum WireSource {
    Tcp { rd: OwnedReadHalf, dec: StreamDecoder, buf: Box<[u8]>, head: Vec<u8> },
    Ws { stream: SplitStream<Ws>, feb: bool, dec: StreamDecoder, limits: Limits },
}

impl WireSource {
    fn tcp(rd: OwnedReadHalf, limits: Limits) -> Self {
        WireSource::Tcp {
            rd,
            dec: StreamDecoder::new(limits),
            buf: vec![0; 256 * 1024].into(),
            head: Vec::new(),
        }
    }

    fn ws(stream: SplitStream<Ws>, dialect: Dialect, limits: Limits) -> Self {
        WireSource::Ws { stream, feb: dialect == Dialect::Feb, dec: StreamDecoder::new(limits), limits }
    }

    /// The next packet or the end of the session. A byte-level protocol error is final.
    pub(crate) async fn next(&mut self) -> Result<Incoming> {
        match self {
            WireSource::Tcp { rd, dec, buf, head } => loop {
                if let Some(p) = dec.poll_packet() {
                    return match p {
                        Ok(p) => {
                            let n = p.wire_len();
                            Ok(Incoming::Packet(p, n))
                        }
                        Err(e) if head.starts_with(SERVER_FULL_PREFIX) => {
                            let _ = e;
                            let line = String::from_utf8_lossy(head);
                            Err(ClientError::ServerFull(line.lines().next().unwrap_or_default().to_string()))
                        }
                        Err(e) => Err(ClientError::Protocol(e.to_string())),
                    };
                }
                let n = rd.read(buf).await?;
                if n == 0 {
                    if head.starts_with(SERVER_FULL_PREFIX) {
                        let line = String::from_utf8_lossy(head);
                        return Err(ClientError::ServerFull(line.trim_end().to_string()));
                    }
                    return Ok(Incoming::Closed { code: None, reason: "eof".into() });
                }
                // Keep the first bytes of the stream: a full server sends a text line, not a packet.
                if head.len() < 128 {
                    let take = n.min(128 - head.len());
                    head.extend_from_slice(&buf[..take]);
                }
                dec.handle_bytes(&buf[..n]);
            },
            WireSource::Ws { stream, feb, dec, limits } => loop {
                if !*feb {
                    if let Some(p) = dec.poll_packet() {
                        let p = p.map_err(|e| ClientError::Protocol(e.to_string()))?;
                        let n = p.wire_len();
                        return Ok(Incoming::Packet(p, n));
                    }
                }
                let msg = match stream.next().await {
                    None => return Ok(Incoming::Closed { code: None, reason: "eof".into() }),
                    Some(Err(tungstenite::Error::ConnectionClosed)) => {
                        return Ok(Incoming::Closed { code: None, reason: "eof".into() })
                    }
                    Some(Err(tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ))) => return Ok(Incoming::Closed { code: None, reason: "reset without close".into() }),
                    Some(Err(e)) => return Err(ws_io(e)),
                    Some(Ok(m)) => m,
                };
                match msg {
                    Message::Binary(b) if *feb => {
                        let n = b.len();
                        let p = Packet::decode_exact(b, limits)
                            .map_err(|e| ClientError::Protocol(e.to_string()))?;
                        return Ok(Incoming::Packet(p, n));
                    }
                    Message::Binary(b) => dec.handle_bytes(&b),
                    Message::Close(frame) => {
                        let (code, reason) = match frame {
                            Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                            None => (None, String::new()),
                        };
                        return Ok(Incoming::Closed { code, reason });
                    }
                    Message::Text(t) => {
                        return Err(ClientError::Protocol(format!(
                            "unexpected text message of {} bytes",
                            t.len()
                        )))
                    }
                    // Pings are answered by tungstenite; pongs and raw frames carry nothing for us.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(m: &Message) -> (u8, bool, usize) {
        match m {
            Message::Frame(f) => (u8::from(f.header().opcode), f.header().is_final, f.payload().len()),
            Message::Binary(b) => (2, true, b.len()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fragments_are_binary_then_continuations_with_fin_last() {
        let wire = Bytes::from(vec![7u8; 230_446]);
        let frames = ws_frames(wire.clone(), Some(4096));
        assert_eq!(frames.len(), 57);
        assert_eq!(shape(&frames[0]), (2, false, 4096));
        assert!(frames[1..56].iter().all(|f| shape(f) == (0, false, 4096)));
        assert_eq!(shape(&frames[56]), (0, true, 230_446 - 56 * 4096));
        assert_eq!(ws_frames(wire.clone(), None).len(), 1);
        // A fragment size of 0 or at least the message means one frame.
        assert_eq!(shape(&ws_frames(wire.clone(), Some(0))[0]), (2, true, 230_446));
        assert_eq!(shape(&ws_frames(wire, Some(230_446))[0]), (2, true, 230_446));
    }
}
