//! `reference-server`: a byte-compatible ACIP server (ACIP-SPEC.md sections 4, 6, 7) as a thin tokio shell
//! over the sans-IO `acip` crate, with fault emulation and per-stage timing (issue 4). Use it in-process:
//!
//! ```no_run
//! # async fn demo() -> Result<(), reference_server::ServerError> {
//! let server = reference_server::start(reference_server::ServerConfig::loopback()).await?;
//! println!("{}", server.ready_line()); // READY tcp=127.0.0.1:41234 ws=127.0.0.1:41235
//! let stats = server.stats();          // serde: the same JSON as GET /stats
//! server.shutdown().await;             // graceful: every task joined
//! # Ok(()) }
//! ```
//!
//! Per connection there is one reader (the connection task), one dispatch task (handshake, decrypt,
//! handlers), one writer (the only code writing to the socket) and, once the client is active, one
//! renderer. Queues are bounded: the receive queue applies back-pressure (the reader stops reading), the
//! outbound control queue makes packet-path senders wait and broadcasters drop (counted), and ASCII frames
//! use a one-deep latest-wins slot (replacements counted as `video_replaced`).
//!
//! # What is measured ([`StatsSnapshot`], `GET /stats`)
//!
//! Per packet, globally and per live connection, in `acip::stats::Stage` histograms (µs):
//! `server_assembly` (first byte or fragment to the last), `fragment_gap` (between fragments of one
//! `feb` WebSocket message), `server_queue_wait` (receive queue entry to exit), `server_decrypt`,
//! `server_handler`, `end_to_end` (the test pattern's intended send time to the handler), `handshake`;
//! per ASCII frame `server_render`, `server_write` (outbound queue entry to written) and
//! `ascii_interval`. Counters: packets and bytes by type in each direction (a wrapped packet counts under
//! ENCRYPTED and under its inner type), drops by reason (`video_replaced`, `tx_queue_full_*`,
//! `before_capabilities`, `unhandled_type`, `decrypt_failed`, `teardown_discarded` (received, but not
//! handled before the dispatch task ended or exceeded its teardown grace), ...), errors by kind
//! (`bad_magic`, `crc_mismatch`, `unmasked_frame`, `reassembly_timeout`, `idle_timeout`, `violation`,
//! `handshake`, `server_full`, `no_slots`, `rx_queue_full_stall`, ...), test-pattern frames received,
//! lost, reordered and corrupt, connections opened and closed, slots in use. Teardown handles every
//! packet queued before a close or EOF, so a clean close loses none.
//!
//! # Exit codes of the binary ([`exit_code`])
//!
//! | Code | Meaning |
//! |---:|---|
//! | 0 | clean shutdown (SIGINT, SIGTERM) |
//! | 2 | command-line usage error |
//! | 40 | ERROR_NETWORK: socket error other than bind, or the READY file could not be written |
//! | 41 | ERROR_NETWORK_BIND: a listener could not bind after `--bind-retries` (message names the address, the OS error and the likely cause) |
//! | 86 | ERROR_INVALID_PARAM: configuration out of range, unreadable key file |
//!
//! # Pointing the real ascii-chat client at this server (ACIP-SPEC.md 9)
//!
//! Not verified against a build here (no ascii-chat binary on this machine); the commands follow 9.1/9.2.
//!
//! ```text
//! reference-server --dialect feb                      # TCP 127.0.0.1:27224, WS 127.0.0.1:27226
//! ascii-chat client 127.0.0.1:27224 --test-pattern -S -D 3 [--no-encrypt]           # FEB client, TCP
//! ascii-chat client ws://localhost:27226 -S -D 1                                     # FEB client, WS
//! reference-server --dialect head
//! ascii-chat client 127.0.0.1:27224 --no-encrypt --video-codec raw --test-pattern -S -D 3   # HEAD, TCP
//! ascii-chat client ws://localhost:27226 --video-codec raw --test-pattern -S -D 3           # HEAD, WS
//! ```
//!
//! Without `--video-codec raw` a HEAD client sends IMAGE_FRAME_H265, which this server accepts and counts
//! (`h265_not_decoded`) but cannot render. Do not give this server `--key` for the real client unless the
//! client passes `--server-key` (4.3 step 4b).
//!
//! # Deliberate differences from the real server
//!
//! - Bad magic or CRC on WebSocket closes the connection (1002) instead of being ignored.
//! - The ASCII rendering is plain luminance art without ANSI colour (ACIP-SPEC.md 11.4 is open).
//! - The identity-key server does not wait for CRYPTO_CLIENT_HELLO (see `acip::crypto::handshake`).

pub mod cli;
mod config;
mod conn;
mod conninfo;
mod crypto;
mod echo;
mod end;
mod error;
mod http;
mod hub;
mod listen;
pub mod render;
mod serve;
mod session;
mod slots;
mod stats;
mod sync;
mod tasks;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::*;
pub use crypto::read_keys;
pub use error::{exit_code, BindCause, ServerError};
pub use hub::Transport;
pub use serve::SERVER_FULL_LINE;
pub use session::{ERROR_CRYPTO_AUTH, ERROR_NETWORK_PROTOCOL};
pub use slots::SlotFull;
pub use stats::{ConnectionSnapshot, StatsSnapshot};
pub use ws::CLOSE_TRY_AGAIN_LATER;

use hub::Shared;
use sync::lock;

/// Binds the listeners, starts accepting and returns once every listener accepts connections (or, under
/// `--fault early-ready`, right after binding and before `listen()`, reproducing the race of
/// ACIP-SPEC.md 8). Writes the READY line to `config.ready_file` if set; printing it is the caller's job.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let crypto = crypto::ServerCrypto::new(&config)?;
    let reuse = !config.faults.no_reuseaddr;
    let mut bound = Vec::new();
    for (addr, transport) in [(config.tcp, Transport::Tcp), (config.ws, Transport::WebSocket)] {
        if let Some(addr) = addr {
            bound.push((listen::bind(addr, reuse, config.v6only, config.bind_retries).await?, transport));
        }
    }
    let addr_of = |t: Transport| bound.iter().find(|(_, bt)| *bt == t).map(|(b, _)| b.local);
    let (tcp_addr, ws_addr) = (addr_of(Transport::Tcp), addr_of(Transport::WebSocket));
    let ready_line = ready_line(tcp_addr, ws_addr);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let early = config.faults.early_ready;
    let ready_file = config.ready_file.clone();
    let shared = Arc::new(Shared::new(config, shutdown_rx.clone()));
    let mut tasks = Vec::new();
    if early {
        // READY goes out now; the sockets only start listening after a delay, so a client that connects
        // on READY gets ECONNREFUSED.
        for (b, transport) in bound {
            let (shared, crypto, shutdown) = (shared.clone(), crypto.clone(), shutdown_rx.clone());
            tasks.push(tokio::spawn(async move {
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(EARLY_READY_DELAY) => {}
                    _ = sync::until_true(&mut stop) => return,
                }
                match b.listen() {
                    Ok(l) => serve::accept_loop(shared, crypto, l, transport, shutdown).await,
                    Err(_) => shared.count_error("listen_failed"),
                }
            }));
        }
    } else {
        let mut listeners = Vec::new();
        for (b, transport) in bound {
            listeners.push((b.listen()?, transport));
        }
        for (l, transport) in listeners {
            let (shared, crypto, shutdown) = (shared.clone(), crypto.clone(), shutdown_rx.clone());
            tasks.push(tokio::spawn(serve::accept_loop(shared, crypto, l, transport, shutdown)));
        }
    }
    if let Some(path) = ready_file {
        std::fs::write(&path, format!("{ready_line}\n"))
            .map_err(|source| ServerError::ReadyFile { path, source })?;
    }
    Ok(ServerHandle { shared, tcp_addr, ws_addr, ready_line, shutdown: shutdown_tx, tasks })
}

/// `READY tcp=ADDR ws=ADDR` (a disabled listener is left out).
fn ready_line(tcp: Option<SocketAddr>, ws: Option<SocketAddr>) -> String {
    let mut s = String::from("READY");
    if let Some(a) = tcp {
        s.push_str(&format!(" tcp={a}"));
    }
    if let Some(a) = ws {
        s.push_str(&format!(" ws={a}"));
    }
    s
}

/// A running server. Dropping it without [`ServerHandle::shutdown`] leaves the tasks running until the
/// runtime ends.
#[derive(Debug)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    tcp_addr: Option<SocketAddr>,
    ws_addr: Option<SocketAddr>,
    ready_line: String,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The TCP listener's real address (port 0 resolved).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The WebSocket listener's real address.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// `READY tcp=... ws=...`, the line the binary prints.
    pub fn ready_line(&self) -> &str {
        &self.ready_line
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Statistics now (the same as `GET /stats`).
    pub fn stats(&self) -> StatsSnapshot {
        stats::snapshot(&self.shared)
    }

    /// The raw per-stage histograms behind [`StatsSnapshot::stages`] (ended and live connections merged),
    /// for harness reports that need every percentile and interval logs. (Added by the soak helper.)
    pub fn stage_histograms(&self) -> acip::stats::StageHistograms {
        let (retired, conns) = self.shared.retired_and_live();
        let mut all = retired.stages;
        for c in conns {
            all.merge(&lock(&c.stats).stages);
        }
        all
    }

    /// Array slots not free (reserved, active, draining or leaked).
    pub fn slots_in_use(&self) -> usize {
        self.shared.slots.in_use()
    }

    /// Clients past CLIENT_CAPABILITIES.
    pub fn active_clients(&self) -> usize {
        self.shared.active_clients()
    }

    /// Open connections, any phase.
    pub fn connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// Ids of open connections (as in [`StatsSnapshot::per_connection`]).
    pub fn connection_ids(&self) -> Vec<u64> {
        lock(&self.shared.conns).keys().copied().collect()
    }

    /// Ends one connection as the server's decision (a kick). `false` if no such connection is open.
    pub fn kick(&self, connection_id: u64) -> bool {
        match lock(&self.shared.conns).get(&connection_id) {
            Some(c) => {
                c.close();
                true
            }
            None => false,
        }
    }

    /// Waits until `pred(self)` holds, checking after every 5 ms; `false` on timeout. For tests and
    /// harness scenarios that wait for teardown to finish.
    pub async fn wait_until(
        &self,
        timeout: std::time::Duration,
        pred: impl Fn(&ServerHandle) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Stops accepting, closes every connection, and joins every task.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
