//! What every connection's tasks share, whatever the listener: the read buffer size and pacing, the
//! writer and dispatch tasks beside the reader ([`ConnTasks`]), the bounded receive queue ([`RxSender`]),
//! and the linger after a refusal. Below `serve` (TCP), `ws` and `echo` in the module graph.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acip::Packet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::config::{RX_PAUSE_BATCH, RX_PAUSE_INTERVAL, RX_PAUSE_QUEUE};
use crate::conn::{run_writer, Outbox, Sink};
use crate::conninfo::ConnInfo;
use crate::crypto::ServerCrypto;
use crate::end::End;
use crate::hub::{Shared, Transport};
use crate::session::{run_session, Inbound, SessionCtx};
use crate::slots::SlotLease;
use crate::sync::lock;

/// Socket read buffer.
pub const READ_BUF: usize = 256 * 1024;
/// How long teardown waits for a task before aborting it (a peer that stopped reading can block a write).
pub const TASK_GRACE: Duration = Duration::from_secs(2);

/// The read pacing of `--fault rx-pause` (ACIP-SPEC.md 8): lws rx flow control stopped reading the socket
/// once a batch of ~131 KB was in, and the next batch came one ~30 ms service round later. With the
/// fault on, a read takes at most what is left of the current [`RX_PAUSE_BATCH`], and once a batch is
/// full the reader waits [`RX_PAUSE_INTERVAL`] before reading again: the drain rate is then capped at one
/// batch per interval (~4.4 MB/s), whatever the sender offers. The sleep *is* the emulated bug, not a way
/// of synchronising with anything. Off, reads are unrestricted and nothing waits.
#[derive(Debug)]
pub(crate) struct RxPacer {
    on: bool,
    /// Bytes read in the current batch.
    in_batch: usize,
}

impl RxPacer {
    pub fn new(on: bool) -> Self {
        RxPacer { on, in_batch: 0 }
    }

    /// How much of a `buf`-byte buffer the next read may fill.
    pub fn limit(&self, buf: usize) -> usize {
        if self.on {
            buf.min(RX_PAUSE_BATCH - self.in_batch).max(1)
        } else {
            buf
        }
    }

    /// Counts `n` bytes just read into the current batch.
    pub fn consumed(&mut self, n: usize) {
        if self.on {
            self.in_batch = (self.in_batch + n).min(RX_PAUSE_BATCH);
        }
    }

    /// Before a read: if the current batch is full, stop reading for one interval and start a new batch.
    /// Called after the previous batch's bytes were handled, as lws paused after its callback ran.
    pub async fn before_read(&mut self) {
        if self.on && self.in_batch >= RX_PAUSE_BATCH {
            tokio::time::sleep(RX_PAUSE_INTERVAL).await;
            self.in_batch = 0;
        }
    }
}

/// Accepts connections until shutdown, then closes every connection it started and joins it.
/// The tasks of one connection besides its reader.
pub(crate) struct ConnTasks {
    pub conn: Arc<ConnInfo>,
    pub outbox: Outbox,
    writer: JoinHandle<()>,
    session: JoinHandle<End>,
    renderer: Arc<Mutex<Option<JoinHandle<()>>>>,
    lease: Arc<SlotLease>,
    /// Packets in the receive queue not yet handled by the dispatch task.
    pending: Arc<AtomicUsize>,
}

impl ConnTasks {
    /// Starts the writer and the dispatch task; returns the receive queue's sender for the reader.
    pub fn start(
        shared: &Arc<Shared>,
        crypto: ServerCrypto,
        conn: Arc<ConnInfo>,
        lease: SlotLease,
        sink: Sink,
    ) -> (ConnTasks, RxSender) {
        let cfg = &shared.config;
        let (outbox, orx) = Outbox::new(conn.clone(), cfg.tx_queue);
        let writer = tokio::spawn(run_writer(sink, orx, conn.clone()));
        let depth = if cfg.faults.rx_pause { RX_PAUSE_QUEUE } else { cfg.rx_queue };
        let (itx, irx) = mpsc::channel(depth);
        let lease = Arc::new(lease);
        let renderer = Arc::new(Mutex::new(None));
        let pending = Arc::new(AtomicUsize::new(0));
        let ctx = SessionCtx {
            shared: shared.clone(),
            conn: conn.clone(),
            outbox: outbox.clone(),
            lease: lease.clone(),
            crypto,
            renderer: renderer.clone(),
            pending: pending.clone(),
        };
        let session = tokio::spawn(run_session(ctx, irx));
        let itx = RxSender::new(itx, cfg.rx_queue_bytes, pending.clone());
        (ConnTasks { conn, outbox, writer, session, renderer, lease, pending }, itx)
    }

    /// Teardown, whatever ended the connection: tell a WebSocket peer why (if the reader found the
    /// problem), stop every task, drop the client from the grid, release the slot once, keep the stats.
    pub async fn finish(self, shared: &Shared, reader_end: End) {
        let ConnTasks { conn, outbox, writer, session, renderer, lease, pending } = self;
        conn.set_phase("closing");
        lease.drain();
        if let Some(kind) = reader_end.kind() {
            conn.count_error(kind);
            if !conn.is_closing() {
                let (code, reason) = reader_end.ws_close();
                let _ = tokio::time::timeout(TASK_GRACE, outbox.close(code, reason)).await;
            }
        }
        // The dispatch task sees `closing`, closes the receive queue and still handles every packet the
        // reader queued before the end (`run_session`), so a client that closes straight after a burst
        // loses nothing. It gets TASK_GRACE; whatever it has not handled when it ends or is aborted is
        // counted as `teardown_discarded` below, never dropped silently.
        conn.close();
        if let Some(end) = join_or_abort(session).await {
            if let Some(kind) = end.kind() {
                conn.count_error(kind);
            }
        }
        let discarded = pending.swap(0, Ordering::AcqRel);
        for _ in 0..discarded {
            conn.count_drop("teardown_discarded");
        }
        if shared.remove_client(conn.id) {
            shared.broadcast_state();
        }
        let r = lock(&renderer).take();
        if let Some(r) = r {
            join_or_abort(r).await;
        }
        drop(outbox);
        join_or_abort(writer).await;
        if conn.transport == Transport::WebSocket && shared.config.faults.slot_leak {
            lease.leak();
        } else if !lease.release() {
            conn.count_error("double_release");
        }
        shared.retire_conn(&conn);
    }
}

async fn join_or_abort<T>(mut h: JoinHandle<T>) -> Option<T> {
    match tokio::time::timeout(TASK_GRACE, &mut h).await {
        Ok(r) => r.ok(),
        Err(_) => {
            h.abort();
            None
        }
    }
}

/// The reader's end of the receive queue: bounded in packets and in bytes.
pub(crate) struct RxSender {
    tx: mpsc::Sender<Inbound>,
    bytes: Arc<Semaphore>,
    budget: usize,
    /// Queued and not yet handled (decremented by the dispatch task after handling).
    pending: Arc<AtomicUsize>,
}

impl RxSender {
    fn new(tx: mpsc::Sender<Inbound>, budget: usize, pending: Arc<AtomicUsize>) -> Self {
        RxSender { tx, bytes: Arc::new(Semaphore::new(budget)), budget, pending }
    }

    /// Hands a decoded packet to the dispatch task; waits (back-pressure: the reader stops reading, so the
    /// peer's writes stall) while the queue is full in packets or bytes. `false` when the dispatch task
    /// has gone. Waiting is counted as `rx_queue_full_stall`; nothing is ever dropped here.
    /// `crc` is the packet's verified payload CRC, when the reader has it.
    pub async fn push(&self, conn: &ConnInfo, packet: Packet, wire: usize, crc: Option<u32>) -> bool {
        let want = packet.payload.len().clamp(1, self.budget) as u32;
        let permit = match self.bytes.clone().try_acquire_many_owned(want) {
            Ok(p) => p,
            Err(_) => {
                conn.count_error("rx_queue_full_stall");
                match self.bytes.clone().acquire_many_owned(want).await {
                    Ok(p) => p,
                    Err(_) => return false,
                }
            }
        };
        let inb = Inbound { packet, wire, crc, queued: Instant::now(), budget: Some(permit) };
        // Counted before the send so the dispatch task's decrement can never come first.
        self.pending.fetch_add(1, Ordering::AcqRel);
        let sent = match self.tx.try_send(inb) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(inb)) => {
                conn.count_error("rx_queue_full_stall");
                self.tx.send(inb).await.is_ok()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if !sent {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }
}

/// After a refusal (SERVER_FULL line or WebSocket full-close) and the write-side shutdown: reads and
/// discards what the client still sends until its EOF, or on WebSocket its CLOSE frame (RFC 6455 7.1.1:
/// the server closes TCP once it has sent and received a Close), for at most [`TASK_GRACE`]. Dropping
/// the socket with the client's CAPS/PING unread made the kernel send a reset, so a client writing
/// straight after the upgrade could see its writes fail, or lose the refusal, instead of reading why it
/// was refused. Server shutdown ends the wait at once.
pub(crate) async fn linger_after_refusal(shared: &Shared, stream: &mut TcpStream, ws: bool) {
    let mut shutdown = shared.shutdown.clone();
    let mut frames = acip::ws::FrameDecoder::with_config(acip::ws::FrameDecoderConfig {
        max_frame: acip::ws::MAX_CONTROL_PAYLOAD.max(64 * 1024),
        require_mask: None,
        strict_length: false,
        observe: false,
    });
    let mut buf = vec![0u8; 16 * 1024];
    // Frames are looked at until one does not parse (e.g. over 64 KiB); after that bytes are only
    // discarded until EOF, so nothing here grows.
    let mut parse = ws;
    let discard = async {
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !parse {
                continue;
            }
            frames.handle_bytes(&buf[..n]);
            while let Some(f) = frames.poll_frame() {
                match f {
                    Ok(f) if f.opcode == acip::ws::OpCode::Close => return,
                    Ok(_) => {}
                    Err(_) => {
                        parse = false;
                        break;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(TASK_GRACE, discard) => {}
        _ = crate::sync::until_true(&mut shutdown) => {}
    }
}
