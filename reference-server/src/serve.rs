//! Accept loops and the life of one connection (ACIP-SPEC.md 7.2 TCP connect, 7.3 WS connect, 7.5
//! disconnect). Per connection: one reader (this task), one dispatch task ([`crate::session`]), one writer
//! task ([`crate::conn`]) and, once the client is active, one renderer. Teardown runs in one place,
//! [`ConnTasks::finish`], whatever ended the connection, and releases the slot exactly once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acip::conn::{Received, Receiver};
use acip::stats::Stage;
use bytes::BufMut;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::conn::Sink;
use crate::conninfo::ConnInfo;
use crate::crypto::ServerCrypto;
use crate::end::End;
use crate::hub::{Shared, Transport};
use crate::sync::lock;
use crate::tasks::{linger_after_refusal, ConnTasks, RxPacer, RxSender, READ_BUF, TASK_GRACE};

/// The text line the real server writes to a TCP client when it is full (ACIP-SPEC.md 6.1).
pub const SERVER_FULL_LINE: &[u8] = b"SERVER_FULL: Maximum client limit reached\n";
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    crypto: ServerCrypto,
    listener: TcpListener,
    transport: Transport,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut hung = shared.hung.subscribe();
    loop {
        // `--fault hang-on-interleave`: once hung, nothing is accepted (clients pile up in the backlog).
        let is_hung = *hung.borrow_and_update();
        tokio::select! {
            _ = hung.changed(), if !is_hung => {}
            r = listener.accept(), if !is_hung => match r {
                Ok((stream, peer)) => {
                    crate::listen::tune_accepted(&stream);
                    let (shared, crypto) = (shared.clone(), crypto.clone());
                    match transport {
                        Transport::Tcp => conns.spawn(serve_tcp(shared, crypto, stream, peer)),
                        Transport::WebSocket => conns.spawn(crate::ws::serve_ws(shared, crypto, stream, peer)),
                    };
                }
                Err(e) => {
                    shared.count_error("accept_failed");
                    // EMFILE and friends: back off instead of spinning.
                    if e.raw_os_error().is_some() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = crate::sync::until_true(&mut shutdown) => break,
        }
    }
    drop(listener);
    let open: Vec<Arc<ConnInfo>> =
        lock(&shared.conns).values().filter(|c| c.transport == transport).cloned().collect();
    for c in open {
        c.close();
    }
    while conns.join_next().await.is_some() {}
}

/// One TCP client: slot, tasks, reader loop, teardown.
async fn serve_tcp(shared: Arc<Shared>, crypto: ServerCrypto, stream: TcpStream, peer: SocketAddr) {
    let lease = match shared.reserve_slot() {
        Ok(l) => l,
        Err(full) => {
            shared.count_error(match full {
                crate::slots::SlotFull::ActiveLimit { .. } => "server_full",
                crate::slots::SlotFull::NoSlots { .. } => "no_slots",
            });
            let mut stream = stream;
            let _ = tokio::time::timeout(TASK_GRACE, async {
                use tokio::io::AsyncWriteExt;
                stream.write_all(SERVER_FULL_LINE).await?;
                stream.shutdown().await
            })
            .await;
            linger_after_refusal(&shared, &mut stream, false).await;
            return;
        }
    };
    let conn = shared.open_conn(Transport::Tcp, peer);
    let (r, w) = stream.into_split();
    let (tasks, itx) = ConnTasks::start(&shared, crypto, conn.clone(), lease, Sink::Tcp(w));
    let end = read_tcp(r, &itx, &conn, &shared).await;
    drop(itx);
    tasks.finish(&shared, end).await;
}

/// Reads the TCP byte stream into packets (ACIP-SPEC.md 6.1, `acip::conn::Receiver`) with the idle timeout
/// of 1.4 (b).
async fn read_tcp(mut r: OwnedReadHalf, itx: &RxSender, conn: &ConnInfo, shared: &Shared) -> End {
    let idle = shared.config.tcp_idle_timeout;
    let limits = shared.config.limits;
    let reassembly = acip::ws::ReassemblerConfig::from_limits(&limits);
    let mut rx =
        Receiver::new(acip::crypto::Transport::Tcp, shared.config.dialect, limits, reassembly, false);
    let mut closing = conn.closing.subscribe();
    // When the first byte of the packet being assembled arrived.
    let mut first: Option<Instant> = None;
    let mut pacer = RxPacer::new(shared.config.faults.rx_pause);
    let mut hung = shared.hung.subscribe();
    loop {
        pacer.before_read().await;
        // Read straight into the decoder's buffer (no copy out of a read buffer), at most the rest of the
        // packet being assembled, so that buffer never regrows under it.
        let lim = pacer.limit(rx.read_hint().min(READ_BUF));
        let is_hung = *hung.borrow_and_update();
        let mut into = rx.recv_buf(lim).limit(lim);
        // The idle timer is armed per read, after every push (and after an rx-pause interval): it
        // measures only the wait for the peer's bytes, never the time the reader spent blocked on a full
        // receive queue (back-pressure is not peer silence; test
        // back_pressure_is_not_counted_as_peer_silence).
        let read = tokio::select! {
            // `--fault hang-on-interleave`: a hung server reads nothing, and times nothing out either.
            _ = hung.changed(), if !is_hung => None,
            r = tokio::time::timeout(idle, r.read_buf(&mut into)), if !is_hung => Some(r),
            _ = crate::sync::until_true(&mut closing) => return End::Closing,
        };
        let n = match End::from_read(read, idle, &rx) {
            Ok(n) => n,
            Err(end) => return end,
        };
        pacer.consumed(n);
        let now = Instant::now();
        first.get_or_insert(now);
        while let Some(item) = rx.poll(now) {
            match item {
                Ok(Received::Packet { packet, wire, .. }) => {
                    if let Some(f) = first.take() {
                        conn.record(Stage::ServerAssembly, now - f);
                    }
                    if !itx.push(conn, packet, wire, rx.last_packet_crc()).await {
                        return End::ReaderDone;
                    }
                }
                // TCP has no control frames.
                Ok(Received::Ping(_) | Received::Pong(_) | Received::Close(_)) => {}
                Err(e) => return End::from_receive(e),
            }
        }
        if rx.buffered() > 0 {
            first.get_or_insert(now);
        }
    }
}
