//! The two transports as a write half ([`WireSink`]) and a read half ([`WireSource`]) carrying whole ACIP
//! packets (ACIP-SPEC.md 6.1 raw TCP, 6.2 WebSocket).
//!
//! Receive framing: TCP and the `head` WebSocket dialect are byte streams of back-to-back packets
//! ([`acip::stream::StreamDecoder`]); in the `feb` dialect one WebSocket message is one packet
//! ([`acip::Packet::decode_exact`]). Send framing on WebSocket: one BINARY frame per packet, or a first
//! BINARY frame then CONTINUATION frames of a fixed size, masked as a client must (RFC 6455 5.3).
//!
//! WebSocket split (issue 15, the lean frame path): tungstenite does the upgrade and reads, but does not
//! write data frames. Its writer copied each 921 KB message into its own buffer, masked it there and
//! shifted the unwritten rest down after every partial socket write; here the write half encodes the
//! frame header itself ([`acip::ws::encode_frame_header`]), masks the packet buffer in place and writes
//! header and payload with one vectored write. What tungstenite still writes while reading (PONG
//! answers, the CLOSE reply) goes to [`Control`], and the one writer task writes those whole frames
//! between packets, so the socket keeps exactly one writer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use acip::stream::StreamDecoder;
use acip::{Dialect, Limits, Packet};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::Message;

use crate::{ClientError, Result, Target};

/// The read side as tungstenite sees it.
type Ws = WebSocketStream<ReadSide>;

/// Most control bytes held for the writer (PONGs of 125 bytes at most, one CLOSE reply): a peer pinging
/// faster than the writer drains cannot make it grow.
const MAX_CONTROL_BYTES: usize = 64 * 1024;

/// Whole control frames tungstenite produced while reading, waiting for the writer task.
#[derive(Debug, Default)]
pub(crate) struct Control {
    bytes: Mutex<Vec<u8>>,
    ready: tokio::sync::Notify,
}

impl Control {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.bytes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Resolves when control bytes are waiting.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await
    }
}

/// The socket's read half for tungstenite: reads pass through; its writes (whole frames, since every
/// write is accepted in full) are handed to [`Control`].
pub(crate) struct ReadSide {
    rd: OwnedReadHalf,
    ctrl: Arc<Control>,
}

impl AsyncRead for ReadSide {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.rd).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadSide {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut held = self.ctrl.bytes.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() + buf.len() <= MAX_CONTROL_BYTES {
            held.extend_from_slice(buf);
        }
        drop(held);
        self.ctrl.ready.notify_one();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The TCP stream during the upgrade: gives tungstenite the response head and not a byte past its blank
/// line (it peeks, then reads only up to there), so no frame the server sends right after it is left in
/// tungstenite's buffer, and the stream can be taken back whole.
struct Upgrade {
    tcp: Option<TcpStream>,
    /// The last four bytes handed out.
    tail: [u8; 4],
}

impl AsyncRead for Upgrade {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        const END: &[u8; 4] = b"\r\n\r\n";
        if &self.tail == END || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let tail = self.tail;
        let Some(tcp) = self.tcp.as_mut() else { return Poll::Ready(Ok(())) };
        let mut peek = [0u8; 4096];
        let mut pb = ReadBuf::new(&mut peek);
        std::task::ready!(tcp.poll_peek(cx, &mut pb))?;
        let peeked = pb.filled();
        if peeked.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let mut seen = tail.to_vec();
        seen.extend_from_slice(peeked);
        let head_end = seen.windows(4).position(|w| w == END).map(|i| i + 4 - tail.len());
        let n = head_end.unwrap_or(peeked.len()).min(buf.remaining());
        let mut take = vec![0u8; n];
        let mut tb = ReadBuf::new(&mut take);
        std::task::ready!(Pin::new(&mut *tcp).poll_read(cx, &mut tb))?;
        let got = tb.filled();
        let mut t = tail.to_vec();
        t.extend_from_slice(got);
        let last = &t[t.len() - 4..];
        self.tail = [last[0], last[1], last[2], last[3]];
        buf.put_slice(got);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Upgrade {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.tcp.as_mut() {
            Some(tcp) => Pin::new(tcp).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.tcp.as_mut() {
            Some(tcp) => Pin::new(tcp).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.tcp.as_mut() {
            Some(tcp) => Pin::new(tcp).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

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
            let upgrade = Upgrade { tcp: Some(tcp), tail: [0; 4] };
            let (mut ws, _response) =
                tokio_tungstenite::client_async_with_config(request, upgrade, Some(config))
                    .await
                    .map_err(|e| ClientError::WsUpgrade { url: url.clone(), source: Box::new(e) })?;
            let tcp = ws
                .get_mut()
                .tcp
                .take()
                .ok_or_else(|| ClientError::Config("upgrade lost its stream".into()))?;
            drop(ws);
            let (rd, w) = tcp.into_split();
            let ctrl = Arc::new(Control::default());
            let stream = WebSocketStream::from_raw_socket(
                ReadSide { rd, ctrl: ctrl.clone() },
                Role::Client,
                Some(config),
            )
            .await;
            Ok((WireSink::Ws { w, ctrl }, WireSource::ws(stream, dialect, limits)))
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
    /// The socket's write half and the control frames tungstenite (reading) wants written.
    Ws {
        w: OwnedWriteHalf,
        ctrl: Arc<Control>,
    },
}

/// A fresh masking key per frame (RFC 6455 5.3: unpredictable; not part of any replayable record).
fn mask_key() -> [u8; 4] {
    rand::random()
}

impl WireSink {
    /// The control queue to watch, on WebSocket.
    pub(crate) fn control(&self) -> Option<Arc<Control>> {
        match self {
            WireSink::Ws { ctrl, .. } => Some(ctrl.clone()),
            WireSink::Tcp(_) => None,
        }
    }

    /// Writes the control frames waiting (whole frames: never in the middle of a data frame).
    pub(crate) async fn write_control(&mut self) -> Result<()> {
        if let WireSink::Ws { w, ctrl } = self {
            let bytes = ctrl.take();
            if !bytes.is_empty() {
                w.write_all(&bytes).await?;
                w.flush().await?;
            }
        }
        Ok(())
    }

    /// Writes one encoded packet (all of it, flushed): on WebSocket as one message, or fragmented when
    /// `fragment` is `Some(n)`. One message is masked in place in `wire` (which is consumed) and written
    /// behind its header with one vectored write: no copy of the packet.
    pub(crate) async fn write_packet(
        &mut self,
        mut wire: BytesMut,
        fragment: Option<usize>,
    ) -> Result<WriteTiming> {
        let start = Instant::now();
        self.write_control().await?;
        match self {
            WireSink::Tcp(w) => {
                w.write_all(&wire).await?;
                let wrote = Instant::now();
                w.flush().await?;
                Ok(WriteTiming { write: wrote - start, flush: wrote.elapsed() })
            }
            WireSink::Ws { w, .. } => {
                match fragment.filter(|&n| n > 0 && n < wire.len()) {
                    None => {
                        let key = mask_key();
                        let mut head = Vec::with_capacity(14);
                        acip::ws::encode_frame_header(
                            acip::ws::OpCode::Binary,
                            true,
                            Some(key),
                            wire.len(),
                            &mut head,
                        );
                        acip::ws::apply_mask(&mut wire, key);
                        w.write_all_buf(&mut Buf::chain(&head[..], &wire[..])).await?;
                    }
                    Some(size) => {
                        let mut out = Vec::with_capacity(wire.len() + 14 * wire.len().div_ceil(size));
                        for (op, fin, chunk) in acip::ws::fragment(&wire, size) {
                            acip::ws::encode_frame(op, fin, Some(mask_key()), chunk, &mut out);
                        }
                        w.write_all(&out).await?;
                    }
                }
                let wrote = Instant::now();
                w.flush().await?;
                Ok(WriteTiming { write: wrote - start, flush: wrote.elapsed() })
            }
        }
    }

    /// Writes and flushes one WebSocket frame (the concurrent-writers fault locks per fragment).
    pub(crate) async fn write_ws_frame(&mut self, frame: Message) -> Result<()> {
        self.write_control().await?;
        let WireSink::Ws { w, .. } = self else {
            return Err(ClientError::Config("WebSocket frame on a TCP connection".into()));
        };
        let (op, fin, payload) = match &frame {
            Message::Frame(f) => (u8::from(f.header().opcode), f.header().is_final, f.payload()),
            Message::Binary(b) => (0x2, true, &b[..]),
            other => return Err(ClientError::Config(format!("not a data frame: {other:?}"))),
        };
        let mut out = Vec::with_capacity(payload.len() + 14);
        acip::ws::encode_frame(acip::ws::OpCode::from_u8(op), fin, Some(mask_key()), payload, &mut out);
        w.write_all(&out).await?;
        Ok(w.flush().await?)
    }

    /// Ends the session from this side: a TCP FIN, or a WebSocket close 1000.
    pub(crate) async fn close(&mut self) -> Result<()> {
        self.write_control().await?;
        match self {
            WireSink::Tcp(w) => Ok(w.shutdown().await?),
            WireSink::Ws { w, .. } => {
                let payload = acip::ws::close_payload(1000, "");
                let mut out = Vec::new();
                acip::ws::encode_frame(acip::ws::OpCode::Close, true, Some(mask_key()), &payload, &mut out);
                w.write_all(&out).await?;
                Ok(w.flush().await?)
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
    Ws { stream: Box<Ws>, feb: bool, dec: StreamDecoder, limits: Limits },
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

    fn ws(stream: Ws, dialect: Dialect, limits: Limits) -> Self {
        WireSource::Ws {
            stream: Box::new(stream),
            feb: dialect == Dialect::Feb,
            dec: StreamDecoder::new(limits),
            limits,
        }
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

    /// A peer pinging faster than the writer drains: the control bytes held stop at
    /// [`MAX_CONTROL_BYTES`], whole writes only (a write that does not fit is left out, never cut).
    #[tokio::test]
    async fn held_control_bytes_stop_at_their_limit() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (client, _server) =
            tokio::join!(TcpStream::connect(listener.local_addr().unwrap()), listener.accept());
        let (rd, _wr) = client.unwrap().into_split();
        let ctrl = Arc::new(Control::default());
        let mut side = ReadSide { rd, ctrl: ctrl.clone() };
        let pong = [0x8A_u8; 127]; // a PONG with the largest control payload: 2 + 125 bytes
        for _ in 0..1000 {
            side.write_all(&pong).await.unwrap();
        }
        let held = ctrl.take();
        assert_eq!(held.len(), MAX_CONTROL_BYTES / pong.len() * pong.len());
        assert!(held.len() <= MAX_CONTROL_BYTES);
        // Drained, it holds again.
        side.write_all(&pong).await.unwrap();
        assert_eq!(ctrl.take().len(), pong.len());
    }
}
