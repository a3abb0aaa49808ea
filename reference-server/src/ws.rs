//! WebSocket connections (ACIP-SPEC.md 6.2, 7.3; RFC 6455): the HTTP upgrade, then `acip::conn::Receiver`
//! (client frames must be masked: an unmasked one is closed with 1002; CLOSE and TEXT checked as RFC 6455
//! says). The `feb` dialect reassembles one message = one packet (fragment timing, gaps, the reassembly
//! timeout); `head` treats all data frames as one byte stream after checking their RFC 6455 5.4 order
//! (1002 on a CONTINUATION with no message open or a new message before FIN, with the same typed errors
//! as `feb`).
//!
//! Deliberately stricter than the real WebSocket path, which checks neither magic nor CRC (1.4 (c)): a
//! packet with a bad magic or CRC closes the connection with 1002 and a reason naming the error, so a
//! harness sees malformed input rejected on both transports. Unknown packet types are dropped and counted,
//! as the real server does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use acip::conn::{Received, Receiver};
use acip::stats::Stage;
use acip::ws::{encode_frame, OpCode, ReassemblerConfig, ReassemblyError};
use bytes::BufMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use crate::conn::{Outbound, Sink};
use crate::conninfo::ConnInfo;
use crate::crypto::ServerCrypto;
use crate::end::End;
use crate::http::{self, Route};
use crate::hub::{Shared, Transport};
use crate::tasks::{ConnTasks, RxPacer, RxSender, READ_BUF};

/// Close code for "try again later" (RFC 6455 7.4.1, registered 1013): the server is full.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// One connection on the WebSocket port.
pub(crate) async fn serve_ws(
    shared: Arc<Shared>,
    crypto: ServerCrypto,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let (req, leftover) = match http::read_head(&mut stream).await {
        Ok(r) => r,
        Err(e) => {
            shared.count_error(e.kind());
            if matches!(e, http::HeadError::Malformed(_) | http::HeadError::TooLarge) {
                let _ =
                    http::respond(&mut stream, "400 Bad Request", "text/plain", "", "bad request\n").await;
            }
            return;
        }
    };
    let (accept, acip) = match http::route(&req) {
        Route::Upgrade { accept, acip } => (accept, acip),
        Route::Health => {
            let _ = http::respond(&mut stream, "200 OK", "application/json", "", &http::health_json()).await;
            return;
        }
        Route::Stats => {
            let body = serde_json::to_string(&crate::stats::snapshot(&shared)).unwrap_or_default();
            let _ = http::respond(&mut stream, "200 OK", "application/json", "", &body).await;
            return;
        }
        Route::Reply { status, body, extra } => {
            shared.count_error("http_rejected");
            let _ = http::respond(&mut stream, status, "text/plain", extra, &body).await;
            return;
        }
    };
    if stream.write_all(http::upgrade_response(&accept, acip).as_bytes()).await.is_err() {
        return;
    }
    if shared.config.echo {
        crate::echo::run(stream, leftover, &shared).await;
        return;
    }
    let lease = match shared.reserve_slot() {
        Ok(l) => l,
        Err(full) => {
            shared.count_error(match full {
                crate::slots::SlotFull::ActiveLimit { .. } => "server_full",
                crate::slots::SlotFull::NoSlots { .. } => "no_slots",
            });
            let payload = acip::ws::close_payload(CLOSE_TRY_AGAIN_LATER, &format!("SERVER_FULL: {full}"));
            let mut out = Vec::new();
            encode_frame(OpCode::Close, true, None, &payload, &mut out);
            let _ = tokio::time::timeout(crate::tasks::TASK_GRACE, async {
                stream.write_all(&out).await?;
                stream.shutdown().await
            })
            .await;
            crate::tasks::linger_after_refusal(&shared, &mut stream, true).await;
            return;
        }
    };
    let conn = shared.open_conn(Transport::WebSocket, peer);
    let (r, w) = stream.into_split();
    let sink = Sink::Ws { w, fragment: shared.config.ws_fragment };
    let (tasks, itx) = ConnTasks::start(&shared, crypto, conn.clone(), lease, sink);
    let end = read_ws(r, leftover, &itx, &tasks, &shared).await;
    drop(itx);
    tasks.finish(&shared, end).await;
}

/// Reads frames until the connection ends: `acip::conn::Receiver` frames, reassembles and checks; this
/// loop times the packets, answers PING through the writer and queues packets for the dispatch task.
async fn read_ws(
    mut r: OwnedReadHalf,
    leftover: Vec<u8>,
    itx: &RxSender,
    tasks: &ConnTasks,
    shared: &Shared,
) -> End {
    let cfg = &shared.config;
    let conn: &ConnInfo = &tasks.conn;
    let mut rx = Receiver::new(
        acip::crypto::Transport::WebSocket,
        cfg.dialect,
        cfg.limits,
        ReassemblerConfig::from_limits(&cfg.limits).with_timeout(cfg.reassembly_timeout),
        false,
    );
    // When the first byte of the packet being assembled arrived (first byte to last fragment is
    // ServerAssembly; the reassembler adds the gaps between fragments).
    let mut first_byte: Option<Instant> = if leftover.is_empty() { None } else { Some(Instant::now()) };
    let mut closing = conn.closing.subscribe();
    rx.handle_bytes(&leftover);
    let idle = cfg.ws_idle_timeout;
    let mut pacer = RxPacer::new(cfg.faults.rx_pause);
    let mut hung = shared.hung.subscribe();
    loop {
        let now = Instant::now();
        while let Some(item) = rx.poll(now) {
            match item {
                Ok(Received::Packet { packet, wire, gaps }) => {
                    if let Some(f) = first_byte.take() {
                        conn.record(Stage::ServerAssembly, now - f);
                    }
                    for g in &gaps {
                        conn.record(Stage::FragmentGap, *g);
                    }
                    if !itx.push(conn, packet, wire, rx.last_packet_crc()).await {
                        return End::ReaderDone;
                    }
                }
                Ok(Received::Ping(payload)) => {
                    tasks.outbox.send_msg(Outbound::WsPong(payload)).await;
                }
                Ok(Received::Pong(_)) => {}
                Ok(Received::Close(close)) => {
                    tasks.outbox.close(1000, "bye").await;
                    return End::PeerClose(close.code_or_no_status());
                }
                Err(e) => {
                    if let acip::Error::Reassembly(ReassemblyError::DataFrameBeforeFin { .. }) = &e {
                        interleave_fault(shared, &e);
                        if *shared.hung.borrow() {
                            // A hung server closes nothing: this connection just stops being read.
                            crate::sync::until_true(&mut closing).await;
                            return End::Closing;
                        }
                    }
                    return End::from_receive(e);
                }
            }
        }
        if !rx.is_at_boundary() {
            first_byte.get_or_insert(now);
        }
        // Under --fault rx-pause: the batch just handled was full, so stop reading for one interval.
        pacer.before_read().await;
        // Read straight into the frame decoder's buffer, at most the rest of the frame being assembled.
        let lim = pacer.limit(rx.read_hint().min(READ_BUF));
        let is_hung = *hung.borrow_and_update();
        let deadline = if is_hung { None } else { rx.poll_timeout() };
        let mut into = rx.recv_buf(lim).limit(lim);
        // Armed per read, after the pushes above: time blocked on a full receive queue is not counted as
        // peer silence (as in `read_tcp`).
        let read = tokio::select! {
            // `--fault hang-on-interleave`: a hung server reads nothing, and times nothing out either.
            _ = hung.changed(), if !is_hung => None,
            res = tokio::time::timeout(idle, r.read_buf(&mut into)), if !is_hung => Some(res),
            _ = sleep_until(deadline) => {
                if let Err(e) = rx.handle_timeout(Instant::now()) {
                    return End::from_receive(e);
                }
                None
            }
            _ = crate::sync::until_true(&mut closing) => return End::Closing,
        };
        let n = match End::from_read(read, idle, &rx) {
            Ok(n) => n,
            Err(end) => return end,
        };
        pacer.consumed(n);
        if n > 0 {
            first_byte.get_or_insert_with(Instant::now);
        }
    }
}

/// The interleaving faults (a data frame before the previous message's FIN): `abort-on-interleave` kills
/// the process with SIGABRT as libwebsockets did at 087fa71; `hang-on-interleave` makes the whole server
/// stop accepting and reading.
fn interleave_fault(shared: &Shared, e: &acip::Error) {
    if shared.config.faults.abort_on_interleave {
        eprintln!("reference-server: --fault abort-on-interleave: {e}: abort()");
        std::process::abort();
    }
    if shared.config.faults.hang_on_interleave {
        eprintln!("reference-server: --fault hang-on-interleave: {e}: no longer accepting or reading");
        shared.hung.send_replace(true);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
