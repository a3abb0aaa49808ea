//! Recording relayed TCP connections as a classic pcap while they run: a relay hands every chunk it
//! forwards (with the time it read it) to a [`Recorder`], whose writer thread scripts each connection as a
//! [`SyntheticSession`] with the connection's real addresses and writes its frames to the file as they
//! come, so a long session is never held whole. The bytes are exactly those the relay forwarded; the TCP
//! segmentation is the writer's ([`super::writer::SYNTHETIC_MSS`]), the timestamps are the relay's reads.
//!
//! Named limits: [`RecordLimits::max_payload_bytes`] (past it, data is no longer written and the summary
//! says the file is truncated) and [`RecordLimits::queue_chunks`] (chunks in flight to the writer; a full
//! queue makes the relay wait rather than grow memory).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::tcp::Dir;
use super::writer::{CaptureWriter, SyntheticLink, SyntheticSession};

/// Limits of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// TCP payload bytes written, both directions and all connections together. What comes after is
    /// forwarded but not recorded.
    pub max_payload_bytes: u64,
    /// Chunks queued for the writer thread before a relay waits.
    pub queue_chunks: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits { max_payload_bytes: 1 << 30, queue_chunks: 64 }
    }
}

/// What a finished recording holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecordSummary {
    pub path: PathBuf,
    pub connections: u64,
    pub frames: u64,
    pub payload_bytes: u64,
    /// Payload bytes forwarded but not written because of [`RecordLimits::max_payload_bytes`].
    pub truncated_bytes: u64,
}

/// Why a recording could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Pcap { path: String, source: pcap_file::PcapError },
    #[error("connection {client} -> {server}: the capture records IPv4 connections only")]
    NotIpv4 { client: SocketAddr, server: SocketAddr },
    #[error("the capture writer thread stopped unexpectedly")]
    WriterGone,
}

enum Event {
    /// Stop now: connections still open end the file as a capture stopped mid-connection does.
    Finish,
    Open {
        conn: u32,
        client: SocketAddrV4,
        server: SocketAddrV4,
        at: Duration,
    },
    Data {
        conn: u32,
        at: Duration,
        dir: Dir,
        bytes: Vec<u8>,
    },
    Close {
        conn: u32,
        at: Duration,
        first: Dir,
    },
}

/// The time a chunk was read, as a capture timestamp (since the Unix epoch).
pub fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// A recording in progress; [`Recorder::finish`] waits for the file to be complete.
pub struct Recorder {
    opener: Opener,
    writer: JoinHandle<Result<RecordSummary, RecordError>>,
}

/// Opens connections on a recording (cheap to clone into every relay).
#[derive(Clone)]
pub struct Opener {
    tx: mpsc::Sender<Event>,
}

/// One relayed connection's side of a recording (cheap to clone into both relay directions).
#[derive(Clone)]
pub struct ConnRecorder {
    tx: mpsc::Sender<Event>,
    conn: u32,
}

impl Recorder {
    /// Creates `path` (a pcap with Ethernet framing) and starts its writer thread.
    pub fn create(path: &Path, limits: RecordLimits) -> Result<Recorder, RecordError> {
        let name = path.display().to_string();
        let file = File::create(path).map_err(|source| RecordError::Io { path: name.clone(), source })?;
        let writer = CaptureWriter::with_link(BufWriter::new(file), SyntheticLink::Ethernet)
            .map_err(|source| RecordError::Pcap { path: name.clone(), source })?;
        let (tx, rx) = mpsc::channel(limits.queue_chunks.max(1));
        let path = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("capture-writer".into())
            .spawn(move || write_all(rx, writer, path, limits))
            .map_err(|source| RecordError::Io { path: name, source })?;
        Ok(Recorder { opener: Opener { tx }, writer })
    }

    /// A handle that opens connections on this recording.
    pub fn opener(&self) -> Opener {
        self.opener.clone()
    }

    /// Stops recording (what relays send after this is forwarded but not recorded) and waits until the
    /// file is written and flushed.
    pub async fn finish(self) -> Result<RecordSummary, RecordError> {
        let _ = self.opener.tx.send(Event::Finish).await;
        let writer = self.writer;
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|_| RecordError::WriterGone)?
            .map_err(|_| RecordError::WriterGone)?
    }
}

impl Opener {
    /// Starts recording connection `conn` between `client` and `server` (both IPv4).
    pub async fn open(
        &self,
        conn: u32,
        client: SocketAddr,
        server: SocketAddr,
    ) -> Result<ConnRecorder, RecordError> {
        let (SocketAddr::V4(c), SocketAddr::V4(s)) = (client, server) else {
            return Err(RecordError::NotIpv4 { client, server });
        };
        self.tx
            .send(Event::Open { conn, client: c, server: s, at: now() })
            .await
            .map_err(|_| RecordError::WriterGone)?;
        Ok(ConnRecorder { tx: self.tx.clone(), conn })
    }
}

impl ConnRecorder {
    /// Records `bytes` read at `at` going `dir`. A stopped writer is not the relay's problem: the
    /// bytes are still forwarded, and [`Recorder::finish`] reports the error.
    pub async fn data(&self, at: Duration, dir: Dir, bytes: &[u8]) {
        let _ = self.tx.send(Event::Data { conn: self.conn, at, dir, bytes: bytes.to_vec() }).await;
    }

    /// Records the end of the connection, `first` closing first.
    pub async fn close(&self, first: Dir) {
        let _ = self.tx.send(Event::Close { conn: self.conn, at: now(), first }).await;
    }
}

fn write_all(
    mut rx: mpsc::Receiver<Event>,
    mut out: CaptureWriter<BufWriter<File>>,
    path: PathBuf,
    limits: RecordLimits,
) -> Result<RecordSummary, RecordError> {
    let name = path.display().to_string();
    let pcap_err = |source| RecordError::Pcap { path: name.clone(), source };
    let mut sessions: BTreeMap<u32, SyntheticSession> = BTreeMap::new();
    let mut summary = RecordSummary { path: path.clone(), ..RecordSummary::default() };
    while let Some(event) = rx.blocking_recv() {
        let conn = match event {
            Event::Finish => break,
            Event::Open { conn, client, server, at } => {
                sessions.insert(conn, SyntheticSession::new(client, server, at));
                summary.connections += 1;
                conn
            }
            Event::Data { conn, at, dir, bytes } => {
                let room = limits.max_payload_bytes.saturating_sub(summary.payload_bytes);
                let keep = (bytes.len() as u64).min(room) as usize;
                summary.truncated_bytes += (bytes.len() - keep) as u64;
                if let (Some(s), true) = (sessions.get_mut(&conn), keep > 0) {
                    s.send(at, dir, &bytes[..keep]);
                    summary.payload_bytes += keep as u64;
                }
                conn
            }
            Event::Close { conn, at, first } => {
                if let Some(s) = sessions.get_mut(&conn) {
                    s.close(at, first);
                }
                conn
            }
        };
        if let Some(s) = sessions.get_mut(&conn) {
            for (at, frame) in s.take_frames() {
                out.write_frame(at, &frame).map_err(pcap_err)?;
                summary.frames += 1;
            }
        }
    }
    out.into_inner().flush().map_err(|source| RecordError::Io { path: name.clone(), source })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureReader, StreamEvent, TcpReassembler, TcpReassemblerConfig};

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("record-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Reads a recording back through the capture reader and TCP reassembly: the byte streams per direction.
    fn streams(data: &[u8]) -> [Vec<u8>; 2] {
        let mut tcp = TcpReassembler::new(TcpReassemblerConfig::default());
        let mut out = [Vec::new(), Vec::new()];
        let mut events = Vec::new();
        for frame in CaptureReader::new(data).expect("pcap") {
            let seg = crate::capture::decode_tcp(&frame).expect("tcp");
            tcp.handle_segment(&seg, frame.ts, frame.number, &mut events);
            for e in events.drain(..) {
                if let StreamEvent::Data { dir, data, .. } = e {
                    out[dir.index()].extend_from_slice(&data);
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn a_recording_holds_each_direction_byte_for_byte_and_respects_its_limit() {
        let dir = scratch("limit");
        let path = dir.join("rec.pcap");
        let limits = RecordLimits { max_payload_bytes: 200_000, queue_chunks: 2 };
        let rec = Recorder::create(&path, limits).expect("create");
        let c = rec.opener().open(0, addr(40_000), addr(27_226)).await.expect("open");
        let up: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let down: Vec<u8> = (0..30_000u32).map(|i| (i % 13) as u8).collect();
        for chunk in up.chunks(40_000) {
            c.data(now(), Dir::ClientToServer, chunk).await;
        }
        c.data(now(), Dir::ServerToClient, &down).await;
        // Past the limit: 20,000 of these are recorded, the rest only counted.
        c.data(now(), Dir::ClientToServer, &[9u8; 50_000]).await;
        c.close(Dir::ClientToServer).await;
        let summary = rec.finish().await.expect("finish");
        assert_eq!(summary.connections, 1);
        assert_eq!(summary.payload_bytes, 200_000);
        assert_eq!(summary.truncated_bytes, 30_000);
        let data = std::fs::read(&path).expect("read back");
        let [c2s, s2c] = streams(&data);
        let mut want = up.clone();
        want.extend_from_slice(&[9u8; 20_000]);
        assert_eq!(c2s, want);
        assert_eq!(s2c, down);
        // After finish, a relay still running forwards without recording and without waiting.
        c.data(now(), Dir::ClientToServer, &[1; 10]).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn ipv6_connections_are_refused_with_a_typed_error() {
        let dir = scratch("v6");
        let rec = Recorder::create(&dir.join("v6.pcap"), RecordLimits::default()).expect("create");
        let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 9));
        assert!(matches!(rec.opener().open(0, v6, addr(1)).await, Err(RecordError::NotIpv4 { .. })));
        assert_eq!(rec.finish().await.expect("finish").connections, 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
