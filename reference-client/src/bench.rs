//! Throughput baselines for the report of issue 4: what one client sustains, beside raw TCP on loopback
//! moving records of the same size in the same run.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{Client, ClientConfig, Result};

/// Records (frames) moved in a measured interval.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub label: String,
    pub record_bytes: usize,
    pub records: u64,
    pub seconds: f64,
    /// The client's per-stage timings (empty for raw TCP).
    pub stages: std::collections::BTreeMap<String, acip::stats::StageSummary>,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    pub fn mbytes_per_second(&self) -> f64 {
        self.per_second() * self.record_bytes as f64 / 1e6
    }
}

impl std::fmt::Display for Throughput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<28} {:>9.1} records/s of {} bytes ({:>8.1} MB/s, {} in {:.2}s)",
            self.label,
            self.per_second(),
            self.record_bytes,
            self.mbytes_per_second(),
            self.records,
            self.seconds
        )?;
        for name in ["client_build", "client_encrypt", "client_write", "client_flush"] {
            if let Some(st) = self.stages.get(name) {
                write!(f, "\n    {name:<15} p50 {:>6} us  p99 {:>6} us", st.p50_us, st.p99_us)?;
            }
        }
        Ok(())
    }
}

/// Raw TCP on loopback: one connection, TCP_NODELAY, one task writing `record_bytes`-byte buffers as fast
/// as it can for `duration`, another reading and discarding. Counts records fully read by the receiver.
pub async fn raw_tcp(duration: Duration, record_bytes: usize) -> std::io::Result<Throughput> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let receiver = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total: u64 = 0;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok::<u64, std::io::Error>(total);
            }
            total += n as u64;
        }
    });
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let record = vec![0x5Au8; record_bytes];
    let start = Instant::now();
    while start.elapsed() < duration {
        s.write_all(&record).await?;
    }
    s.shutdown().await?;
    let bytes = receiver.await.map_err(std::io::Error::other)??;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Throughput {
        label: "raw TCP loopback".into(),
        record_bytes,
        records: bytes / record_bytes as u64,
        seconds,
        stages: Default::default(),
    })
}

/// One [`Client`] sending frames back to back (no schedule) for `duration`: the most it sustains.
/// `send_frame` returns once a frame is written and flushed, so this counts frames the socket accepted.
pub async fn client_max_rate(config: &ClientConfig, label: &str, duration: Duration) -> Result<Throughput> {
    let client = Client::connect(config, None).await?;
    let start = Instant::now();
    let mut seq = 0;
    while start.elapsed() < duration {
        client.send_frame(seq, 0).await?;
        seq += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    // Header + IMAGE_FRAME header + pixels, plus nonce, MAC and inner header when encrypted (3.7, 4.5).
    let (w, h) = config.frame;
    let plain = acip::codec::HEADER_LEN + 24 + w as usize * h as usize * 3;
    let record_bytes = if client.is_encrypted() { plain + 40 + acip::codec::HEADER_LEN } else { plain };
    let report = client.close().await;
    if report.has_validation_errors() {
        return Err(crate::ClientError::Protocol(format!("{:?}", report.counters.errors)));
    }
    let stages = report.stages.snapshot();
    Ok(Throughput { label: label.into(), record_bytes, records: seq, seconds, stages })
}

/// A sink that completes the server side of the handshake (any mode the client asks for, via
/// [`acip::crypto::ServerHandshake`]) and then reads and discards everything: what one client sustains
/// when the peer costs nothing beyond reading. Returns its address; it serves until the runtime ends.
pub async fn discard_sink(ws: bool, dialect: acip::Dialect) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let _ = discard_one(s, ws, dialect).await;
            });
        }
    });
    Ok(addr)
}

async fn discard_one(s: TcpStream, ws: bool, dialect: acip::Dialect) -> std::result::Result<(), String> {
    use acip::crypto::{HandshakeConfig, HandshakeEvent, ServerHandshake, Transport};
    use futures_util::{SinkExt, StreamExt};
    use tungstenite::Message;

    let transport = if ws { Transport::WebSocket } else { Transport::Tcp };
    let mut hs = ServerHandshake::new(HandshakeConfig::new(dialect, transport, 1), Instant::now());
    let limits = acip::Limits::default();
    let mut dec = acip::stream::StreamDecoder::new(limits);
    if ws {
        #[allow(clippy::result_large_err)] // tungstenite's callback signature
        let callback = |_: &tungstenite::handshake::server::Request,
                        mut resp: tungstenite::handshake::server::Response| {
            resp.headers_mut().insert("Sec-WebSocket-Protocol", "acip".parse().expect("static header"));
            Ok(resp)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(s, callback).await.map_err(|e| e.to_string())?;
        loop {
            while let Some(p) = hs.poll_transmit() {
                ws.send(Message::Binary(p.encode().into())).await.map_err(|e| e.to_string())?;
            }
            while hs.poll_event().is_some() {}
            let Some(msg) = ws.next().await else { return Ok(()) };
            let Message::Binary(b) = msg.map_err(|e| e.to_string())? else { continue };
            if hs.is_complete() || hs.is_failed() {
                continue; // discard
            }
            // Handshake messages are single packets in both dialects.
            let p = acip::Packet::decode_exact(b, &limits).map_err(|e| e.to_string())?;
            let _ = hs.handle_packet(p, Instant::now());
        }
    }
    let (mut rd, mut wr) = s.into_split();
    let mut buf = vec![0u8; 256 * 1024];
    let mut plaintext = false;
    loop {
        while let Some(p) = hs.poll_transmit() {
            wr.write_all(&p.encode()).await.map_err(|e| e.to_string())?;
        }
        while let Some(ev) = hs.poll_event() {
            plaintext |= matches!(ev, HandshakeEvent::PlaintextClient { .. });
        }
        let n = rd.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        if hs.is_complete() || hs.is_failed() || plaintext {
            continue; // discard
        }
        dec.handle_bytes(&buf[..n]);
        while let Some(p) = dec.poll_packet() {
            let _ = hs.handle_packet(p.map_err(|e| e.to_string())?, Instant::now());
        }
    }
}
