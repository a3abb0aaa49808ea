//! A pass-through TCP tap between the browser and the server that times every WebSocket frame the browser
//! sends: the server sees the same bytes, and the harness learns the browser's own fragment pattern
//! (frame sizes, FIN bits, gaps) whatever the server records. Bytes are forwarded as soon as they are
//! read, one read at a time, so back-pressure from the server still reaches the browser (through one more
//! pair of socket buffers).
//!
//! Frames are parsed from their headers only (RFC 6455 5.2): the payload is neither copied nor unmasked.
//! With a capture [`Opener`], every chunk the tap forwards, both ways, is also recorded to a pcap with the
//! addresses of the tap's connection to the server (what the server saw), after it was forwarded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::capture::record::{self, ConnRecorder, Opener};
use crate::capture::Dir;

/// Bytes per read of the tap, in both directions.
const READ_BUF: usize = 256 * 1024;
/// SO_SNDBUF of the tap's connection to the server.
const UPSTREAM_SNDBUF: usize = 64 * 1024;
/// Longest HTTP upgrade request accepted before the frames start.
const MAX_HTTP_HEAD: usize = 16 * 1024;

/// One WebSocket frame from the browser, as the tap saw it arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRecord {
    /// Which accepted connection (0, 1, ...).
    pub conn: u32,
    /// RFC 6455 opcode (0 continuation, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    pub fin: bool,
    /// Payload bytes (the frame header is not counted).
    pub payload_len: u64,
    /// When the read holding the frame's first header byte returned, since the tap started.
    pub start: Duration,
    /// When the read holding the frame's last byte returned, since the tap started.
    pub end: Duration,
}

/// Incremental RFC 6455 frame-header tracker over a byte stream.
#[derive(Debug, Default)]
struct FrameTracker {
    /// Header bytes of the frame being read (up to 14).
    head: Vec<u8>,
    /// Payload bytes of the current frame still to come (after its header was complete).
    remaining: u64,
    /// The current frame once its header is complete.
    current: Option<(u8, bool, u64, Duration)>,
    /// When the current frame's first header byte arrived.
    started: Option<Duration>,
}

/// The length of a frame header from its first two bytes (with the extended length and the mask key).
fn header_len(b0_b1: [u8; 2]) -> usize {
    let masked = b0_b1[1] & 0x80 != 0;
    let ext = match b0_b1[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if masked { 4 } else { 0 }
}

impl FrameTracker {
    /// Feeds one read; pushes a record for every frame that ends in it.
    fn feed(&mut self, mut data: &[u8], at: Duration, conn: u32, out: &mut Vec<FrameRecord>) {
        while !data.is_empty() {
            if let Some((opcode, fin, len, start)) = self.current {
                let take = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= take as u64;
                data = &data[take..];
                if self.remaining == 0 {
                    out.push(FrameRecord { conn, opcode, fin, payload_len: len, start, end: at });
                    self.current = None;
                }
                continue;
            }
            self.started.get_or_insert(at);
            let need = if self.head.len() < 2 { 2 } else { header_len([self.head[0], self.head[1]]) };
            let take = (need - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.head.len() < 2 || self.head.len() < header_len([self.head[0], self.head[1]]) {
                continue;
            }
            let (b0, b1) = (self.head[0], self.head[1]);
            let len = match b1 & 0x7F {
                126 => u16::from_be_bytes([self.head[2], self.head[3]]) as u64,
                127 => u64::from_be_bytes(self.head[2..10].try_into().expect("8 bytes")),
                n => n as u64,
            };
            let start = self.started.take().unwrap_or(at);
            self.head.clear();
            if len == 0 {
                out.push(FrameRecord {
                    conn,
                    opcode: b0 & 0x0F,
                    fin: b0 & 0x80 != 0,
                    payload_len: 0,
                    start,
                    end: at,
                });
            } else {
                self.current = Some((b0 & 0x0F, b0 & 0x80 != 0, len, start));
                self.remaining = len;
            }
        }
    }
}

/// A running tap; stops accepting when dropped (open connections end with their peers).
pub struct Tap {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<FrameRecord>>>,
    accept: JoinHandle<()>,
    /// Connections being relayed.
    active: tokio::sync::watch::Receiver<usize>,
}

impl Tap {
    /// Listens on 127.0.0.1 (ephemeral port) and forwards every connection to `upstream`, recording each
    /// to `capture` when given.
    pub async fn start(upstream: SocketAddr, capture: Option<Opener>) -> std::io::Result<Tap> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let records: Arc<Mutex<Vec<FrameRecord>>> = Arc::default();
        let origin = Instant::now();
        let recs = records.clone();
        let (active_tx, active) = tokio::sync::watch::channel(0usize);
        let active_tx = Arc::new(active_tx);
        let accept = tokio::spawn(async move {
            let mut n = 0u32;
            while let Ok((client, _)) = listener.accept().await {
                let recs = recs.clone();
                let capture = capture.clone();
                let conn = n;
                n += 1;
                active_tx.send_modify(|n| *n += 1);
                let active_tx = active_tx.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        // Bytes held in the tap's own send buffer are buffering the direct path does not
                        // have: keep it small, so back-pressure from the server reaches the browser about
                        // as it would without the tap.
                        let _ = socket2::SockRef::from(&server).set_send_buffer_size(UPSTREAM_SNDBUF);
                        let rec = match (&capture, server.local_addr()) {
                            // A connection the capture cannot hold (IPv6) is still relayed; the
                            // recording's summary counts the connections it holds.
                            (Some(c), Ok(local)) => c.open(conn, local, upstream).await.ok(),
                            _ => None,
                        };
                        relay(client, server, conn, origin, recs, rec).await;
                    }
                    active_tx.send_modify(|n| *n -= 1);
                });
            }
        });
        Ok(Tap { addr, records, accept, active })
    }

    /// Waits (at most `limit`) until no connection is being relayed, so everything the tap forwarded is
    /// in its records and its capture. Returns whether it got there.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let mut active = self.active.clone();
        let idle = matches!(tokio::time::timeout(limit, active.wait_for(|n| *n == 0)).await, Ok(Ok(_)));
        idle
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every frame seen so far, in arrival order.
    pub fn records(&self) -> Vec<FrameRecord> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    conn: u32,
    origin: Instant,
    recs: Arc<Mutex<Vec<FrameRecord>>>,
    rec: Option<ConnRecorder>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down_rec = rec.clone();
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; READ_BUF];
        while let Ok(n) = sr.read(&mut buf).await {
            let at = record::now();
            if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if let Some(r) = &down_rec {
                r.data(at, Dir::ServerToClient, &buf[..n]).await;
            }
        }
        let _ = cw.shutdown().await;
    });
    let mut buf = vec![0u8; READ_BUF];
    let mut head: Vec<u8> = Vec::new();
    let mut in_http = true;
    let mut tracker = FrameTracker::default();
    let mut found = Vec::new();
    while let Ok(n) = cr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let at = origin.elapsed();
        let captured_at = record::now();
        let mut data = &buf[..n];
        if in_http {
            // The upgrade request ends at the first blank line; frames follow it.
            let before = head.len();
            head.extend_from_slice(data);
            match head.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(p) => {
                    in_http = false;
                    data = &data[(p + 4 - before)..];
                }
                None if head.len() > MAX_HTTP_HEAD => in_http = false,
                None => data = &[],
            }
        }
        if !in_http && !data.is_empty() {
            tracker.feed(data, at, conn, &mut found);
            if !found.is_empty() {
                recs.lock().unwrap_or_else(|e| e.into_inner()).append(&mut found);
            }
        }
        if sw.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if let Some(r) = &rec {
            r.data(captured_at, Dir::ClientToServer, &buf[..n]).await;
        }
    }
    let server_first = down.is_finished();
    let _ = sw.shutdown().await;
    let _ = down.await;
    if let Some(r) = &rec {
        r.close(if server_first { Dir::ServerToClient } else { Dir::ClientToServer }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acip::ws::{encode_frame, OpCode};

    #[test]
    fn tracker_finds_every_frame_whatever_the_read_boundaries() {
        let mut wire = Vec::new();
        let sizes = [
            (OpCode::Binary, false, 131_000usize),
            (OpCode::Continuation, false, 70_000),
            (OpCode::Continuation, true, 5),
        ];
        for (op, fin, n) in sizes {
            encode_frame(op, fin, Some([1, 2, 3, 4]), &vec![7u8; n], &mut wire);
        }
        encode_frame(OpCode::Ping, true, Some([9, 9, 9, 9]), &[], &mut wire);
        encode_frame(OpCode::Binary, true, None, &[1; 200], &mut wire);
        for chunk in [1usize, 3, 7, 1000, 65_536, wire.len()] {
            let mut t = FrameTracker::default();
            let mut out = Vec::new();
            for (i, c) in wire.chunks(chunk).enumerate() {
                t.feed(c, Duration::from_micros(i as u64), 0, &mut out);
            }
            let got: Vec<_> = out.iter().map(|r| (r.opcode, r.fin, r.payload_len)).collect();
            assert_eq!(
                got,
                [(2, false, 131_000), (0, false, 70_000), (0, true, 5), (9, true, 0), (2, true, 200)],
                "chunk {chunk}"
            );
            assert!(out.iter().all(|r| r.start <= r.end));
        }
    }
}
