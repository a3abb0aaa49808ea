//! `--baseline raw-tcp`: the same bytes as the soak (clients × packet size × fps, on the same seeded
//! schedule) moved over plain TCP on loopback with no ACIP, no WebSocket and no crypto, so each layer's
//! cost is a ratio against what the kernel and tokio alone cost on this machine.
//!
//! Each "frame" is `frame_bytes` long and starts with its intended send time (UNIX µs, big-endian); the
//! receiver records arrival of the last byte minus that time, like the soak's end-to-end stage.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::schedule::{self, Schedule};
use super::timer::Timer;
use crate::report::hlog::new_histogram;

/// What the baseline moves.
#[derive(Debug, Clone, Copy)]
pub struct RawTcpConfig {
    pub clients: u32,
    /// Bytes per frame (the ACIP packet's wire size, so the same bytes move).
    pub frame_bytes: usize,
    pub fps: f64,
    pub duration: Duration,
    pub seed: u64,
}

/// What the baseline measured.
#[derive(Debug, Clone)]
pub struct RawTcpResult {
    /// Intended send time to last byte received, µs.
    pub end_to_end: Histogram<u64>,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub bytes_received: u64,
    pub elapsed: Duration,
}

/// Smallest frame: the 8-byte timestamp.
const MIN_FRAME: usize = 8;

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Runs the baseline on 127.0.0.1 with an ephemeral port.
pub async fn run(cfg: RawTcpConfig) -> std::io::Result<RawTcpResult> {
    let frame_bytes = cfg.frame_bytes.max(MIN_FRAME);
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let clients = cfg.clients as usize;

    let receivers = tokio::spawn(async move {
        let mut tasks = Vec::with_capacity(clients);
        for _ in 0..clients {
            let (sock, _) = listener.accept().await?;
            sock.set_nodelay(true)?;
            tasks.push(tokio::spawn(receive(sock, frame_bytes)));
        }
        Ok::<_, std::io::Error>(tasks)
    });

    let start = Instant::now();
    // Start a little ahead so every client has connected before its first frame is due.
    let t0 = start + Duration::from_millis(50);
    let t0_unix_us = unix_us() + 50_000;
    let schedules = schedule::schedules(cfg.seed, cfg.clients, schedule::period(cfg.fps));
    // The same precise timer as the ACIP senders, so the baseline is not ~1 ms late where they are not.
    let timer = Timer::start()?;
    let mut senders = Vec::with_capacity(clients);
    for s in schedules {
        let sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let timer = timer.clone();
        senders.push(tokio::spawn(send(sock, s, t0, t0_unix_us, frame_bytes, cfg.duration, timer)));
    }
    let mut frames_sent = 0;
    for s in senders {
        frames_sent += s.await.map_err(std::io::Error::other)??;
    }
    let mut end_to_end = new_histogram();
    let (mut frames_received, mut bytes_received) = (0, 0);
    for r in receivers.await.map_err(std::io::Error::other)?? {
        let (h, n) = r.await.map_err(std::io::Error::other)??;
        let _ = end_to_end.add(&h);
        frames_received += n;
        bytes_received += n * frame_bytes as u64;
    }
    Ok(RawTcpResult { end_to_end, frames_sent, frames_received, bytes_received, elapsed: start.elapsed() })
}

async fn send(
    mut sock: TcpStream,
    s: Schedule,
    t0: Instant,
    t0_unix_us: u64,
    frame_bytes: usize,
    duration: Duration,
    timer: Timer,
) -> std::io::Result<u64> {
    let mut buf = vec![0x5Au8; frame_bytes];
    let n = s.frames_in(duration);
    for seq in 0..n {
        let intended = s.intended(seq);
        timer.sleep_until(t0 + intended).await;
        let intended_us = t0_unix_us + intended.as_micros() as u64;
        buf[..8].copy_from_slice(&intended_us.to_be_bytes());
        sock.write_all(&buf).await?;
    }
    sock.shutdown().await?;
    Ok(n)
}

async fn receive(mut sock: TcpStream, frame_bytes: usize) -> std::io::Result<(Histogram<u64>, u64)> {
    let mut h = new_histogram();
    let mut buf = vec![0u8; frame_bytes];
    let mut n = 0;
    loop {
        match sock.read_exact(&mut buf).await {
            Ok(_) => {
                let intended = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                h.saturating_record(schedule::corrected_latency_us(intended, unix_us()));
                n += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok((h, n)),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moves_every_frame_and_measures_it() {
        let cfg = RawTcpConfig {
            clients: 3,
            frame_bytes: 10_000,
            fps: 50.0,
            duration: Duration::from_millis(300),
            seed: 1,
        };
        let r = run(cfg).await.unwrap();
        assert!(r.frames_sent >= 3 * 14, "{}", r.frames_sent);
        assert_eq!(r.frames_sent, r.frames_received);
        assert_eq!(r.end_to_end.len(), r.frames_received);
        assert_eq!(r.bytes_received, r.frames_received * 10_000);
        // Loopback in a debug build: well under a second even on a loaded machine.
        assert!(r.end_to_end.value_at_quantile(0.5) < 1_000_000);
    }
}
