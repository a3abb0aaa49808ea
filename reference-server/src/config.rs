//! Server configuration: listeners, dialect and crypto mode, limits, timeouts and fault switches
//! (ACIP-SPEC.md sections 6.2, 6.3, 7.1; issue 4, "Fault emulation").

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use acip::{Dialect, Limits};

/// The real server's TCP port (ACIP-SPEC.md 6.3).
pub const DEFAULT_TCP_PORT: u16 = 27224;
/// The real server's WebSocket port (ACIP-SPEC.md 6.3).
pub const DEFAULT_WS_PORT: u16 = 27226;
/// `MAX_CLIENTS`: the slot array (ACIP-SPEC.md 7.1).
pub const SLOT_CAPACITY: usize = 32;
/// `--max-clients` default (ACIP-SPEC.md 7.1).
pub const DEFAULT_MAX_CLIENTS: usize = 9;
/// ASCII_FRAME pacing cap: 60 fps (ACIP-SPEC.md 7.4).
pub const MAX_RENDER_FPS: u8 = 60;
/// FEB's `MAX_REASSEMBLY_TIME` (ACIP-SPEC.md 6.2).
pub const DEFAULT_REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(2);
/// HEAD's header receive timeout: a silent TCP peer is dropped after 1 s (ACIP-SPEC.md 1.4b).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// WebSocket peers get longer: the real server leaves WS silence to lws (30 s ping, 35 s hang-up); 5 s keeps
/// tests and soaks quick to notice a vanished peer.
pub const DEFAULT_WS_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// The FEB server's manual WebSocket fragment size, 256 KiB (ACIP-SPEC.md 6.2).
pub const FEB_SERVER_FRAGMENT: usize = 256 * 1024;
/// Bounded per-connection receive queue of decoded packets (FEB's dispatch queue held 100 packets).
pub const DEFAULT_RX_QUEUE: usize = 100;
/// Bounded per-connection queue of outbound control packets (the video slot is separate).
pub const DEFAULT_TX_QUEUE: usize = 256;
/// Bytes of decoded packets the receive queue may hold per connection: with the packet-count bound this
/// keeps a connection's buffered input at 16 MiB, not 100 x 5 MiB.
pub const DEFAULT_RX_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Receive queue depth under `--fault rx-pause` (with [`RX_PAUSE_DELAY`] per packet: small pipelined
/// packets back up; large frames are paced by [`RX_PAUSE_BATCH`] / [`RX_PAUSE_INTERVAL`] in the reader).
pub const RX_PAUSE_QUEUE: usize = 2;
/// Time the slow consumer spends per packet under `--fault rx-pause` (about one lws service round).
pub const RX_PAUSE_DELAY: Duration = Duration::from_millis(30);
/// Bytes the reader takes per read batch under `--fault rx-pause` (ACIP-SPEC.md 8: the bug report's
/// browser frames arrived in 131 KB batches while lws rx flow control paused reading in between).
pub const RX_PAUSE_BATCH: usize = 131_072;
/// How long the reader stops reading after each full batch under `--fault rx-pause` (the report's ~30 ms
/// between batches; 921 KB frames then take ~210 ms each, ~4.5 fps).
pub const RX_PAUSE_INTERVAL: Duration = Duration::from_millis(30);
/// How long `--fault early-ready` waits between announcing READY and calling `listen()`.
pub const EARLY_READY_DELAY: Duration = Duration::from_secs(1);
/// Largest HTTP request head accepted on the WebSocket port before the upgrade.
pub const MAX_HTTP_HEAD: usize = 8 * 1024;
/// Time allowed for the whole HTTP request head (a slowloris client is cut off after this).
pub const HTTP_HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Fault switches, each reproducing one documented failure of the real server. All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// WebSocket slots are never released (the exhaustion bug fixed in 4dce9818, ACIP-SPEC.md 7.1): the
    /// 33rd WebSocket connection fails.
    pub slot_leak: bool,
    /// Stop reading while a tiny receive queue is full and consume it slowly, as `lws_rx_flow_control` did
    /// (ACIP-SPEC.md 8, "~30 ms stalls"): the sender sees TCP back-pressure.
    pub rx_pause: bool,
    /// Listeners without SO_REUSEADDR, so a port in TIME_WAIT cannot be rebound (ACIP-SPEC.md 8, error 41).
    pub no_reuseaddr: bool,
    /// Announce READY before the listeners accept (ACIP-SPEC.md 8: "run 3 reports success but the client
    /// gets ECONNREFUSED").
    pub early_ready: bool,
    /// The teardown races of ACIP-SPEC.md 7.5/7.6 (RECEIVE after CLOSED on a client looked up by slot
    /// after `remove_client`): each connection's teardown leaves one receive callback queued after its
    /// slot is released; it runs once the slot's next tenant is active and frees that slot by index,
    /// without the generation check. The tenant loses its slot while connected, the pool hands the slot to
    /// a second client, and the tenant's own release counts as a double release (`crate::slots`).
    pub stale_callback: bool,
    /// A WebSocket data frame before the previous message's FIN aborts the whole process (SIGABRT), as
    /// libwebsockets did at 087fa71 (ACIP-SPEC.md 8): a server that really crashes, for crash capture and
    /// `harness check`. Process-wide: use it with the binary, not with an in-process server.
    pub abort_on_interleave: bool,
    /// A WebSocket data frame before the previous message's FIN makes the server hang: it stops accepting
    /// and stops reading every connection (the process stays alive and keeps its sockets), as a deadlocked
    /// event loop would. Shutdown still works.
    pub hang_on_interleave: bool,
}

impl Faults {
    /// The CLI names, in the order [`Faults::enable`] accepts them.
    pub const NAMES: &'static [&'static str] = &[
        "slot-leak",
        "rx-pause",
        "no-reuseaddr",
        "early-ready",
        "stale-callback",
        "abort-on-interleave",
        "hang-on-interleave",
    ];

    /// Turns on the fault called `name` (a `--fault` value).
    pub fn enable(&mut self, name: &str) -> Result<(), String> {
        match name {
            "slot-leak" => self.slot_leak = true,
            "rx-pause" => self.rx_pause = true,
            "no-reuseaddr" => self.no_reuseaddr = true,
            "early-ready" => self.early_ready = true,
            "stale-callback" => self.stale_callback = true,
            "abort-on-interleave" => self.abort_on_interleave = true,
            "hang-on-interleave" => self.hang_on_interleave = true,
            other => return Err(format!("unknown fault {other:?} (known: {})", Faults::NAMES.join(", "))),
        }
        Ok(())
    }

    /// Names of the faults that are on.
    pub fn enabled(&self) -> Vec<&'static str> {
        let on = [
            self.slot_leak,
            self.rx_pause,
            self.no_reuseaddr,
            self.early_ready,
            self.stale_callback,
            self.abort_on_interleave,
            self.hang_on_interleave,
        ];
        Faults::NAMES.iter().zip(on).filter(|(_, on)| *on).map(|(n, _)| *n).collect()
    }
}

/// Everything [`crate::start`] needs. `Default` is an in-process server on loopback with ephemeral ports
/// (the same as [`ServerConfig::loopback`]); the binary starts from [`ServerConfig::standard_ports`].
/// `Debug` leaves out the password and the identity seed.
#[derive(Clone)]
pub struct ServerConfig {
    /// TCP listener; `None` disables it.
    pub tcp: Option<SocketAddr>,
    /// WebSocket listener (also serves `GET /health` and `GET /stats`); `None` disables it.
    pub ws: Option<SocketAddr>,
    pub dialect: Dialect,
    /// Offer the crypto handshake (TCP: answer PROTOCOL_VERSION; WS: open with the server's key exchange).
    /// A client whose first TCP packet is CLIENT_CAPABILITIES is served in plaintext either way, as the real
    /// server does (ACIP-SPEC.md 4.6).
    pub encrypt: bool,
    /// Password authentication (8..=256 bytes, ACIP-SPEC.md 4.1).
    pub password: Option<String>,
    /// Ed25519 identity (32-byte seed) for the authenticated key exchange.
    pub identity_seed: Option<[u8; 32]>,
    /// Client whitelist: Ed25519 public keys allowed to connect (empty = no whitelist).
    pub client_keys: Vec<[u8; 32]>,
    /// Active-client limit (`--max-clients`, 1..=99).
    pub max_clients: usize,
    /// Slot array size (`MAX_CLIENTS`).
    pub slot_capacity: usize,
    /// Drop a TCP peer that sends nothing for this long.
    pub tcp_idle_timeout: Duration,
    /// Drop a WebSocket peer that sends nothing for this long.
    pub ws_idle_timeout: Duration,
    /// FEB dialect: give up on a fragmented WebSocket message when no fragment arrives for this long.
    pub reassembly_timeout: Duration,
    /// Split outbound WebSocket messages into frames of this many bytes (FEB server: 256 KiB); `None` sends
    /// one frame per message (HEAD).
    pub ws_fragment: Option<usize>,
    pub faults: Faults,
    /// Plain RFC 6455 echo on the WebSocket port instead of ACIP.
    pub echo: bool,
    /// Retries (with backoff) of a failed bind.
    pub bind_retries: u32,
    /// IPV6_V6ONLY for IPv6 listeners, always set explicitly.
    pub v6only: bool,
    /// Packet size limits.
    pub limits: Limits,
    /// Receive queue depth (decoded packets) per connection.
    pub rx_queue: usize,
    /// Receive queue budget in bytes per connection (a larger packet takes the whole budget).
    pub rx_queue_bytes: usize,
    /// Outbound control queue depth per connection.
    pub tx_queue: usize,
    /// Upper bound on ASCII_FRAME rate per client (the client's `desired_fps` is capped by this).
    pub max_fps: u8,
    /// Also write the READY line to this file.
    pub ready_file: Option<PathBuf>,
    /// Seed of the handshake RNGs (each connection derives its own); `None` draws one from the OS.
    pub rng_seed: Option<u64>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("tcp", &self.tcp)
            .field("ws", &self.ws)
            .field("dialect", &self.dialect)
            .field("encrypt", &self.encrypt)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("identity_seed", &self.identity_seed.as_ref().map(|_| "<set>"))
            .field("client_keys", &self.client_keys.len())
            .field("max_clients", &self.max_clients)
            .field("slot_capacity", &self.slot_capacity)
            .field("tcp_idle_timeout", &self.tcp_idle_timeout)
            .field("ws_idle_timeout", &self.ws_idle_timeout)
            .field("reassembly_timeout", &self.reassembly_timeout)
            .field("ws_fragment", &self.ws_fragment)
            .field("faults", &self.faults)
            .field("echo", &self.echo)
            .field("bind_retries", &self.bind_retries)
            .field("v6only", &self.v6only)
            .field("limits", &self.limits)
            .field("rx_queue", &self.rx_queue)
            .field("rx_queue_bytes", &self.rx_queue_bytes)
            .field("tx_queue", &self.tx_queue)
            .field("max_fps", &self.max_fps)
            .field("ready_file", &self.ready_file)
            .field("rng_seed", &self.rng_seed)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::loopback()
    }
}

impl ServerConfig {
    /// TCP and WebSocket on 127.0.0.1 with ephemeral ports: for tests and in-process harness runs.
    pub fn loopback() -> Self {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        ServerConfig {
            tcp: Some(any),
            ws: Some(any),
            dialect: Dialect::Feb,
            encrypt: true,
            password: None,
            identity_seed: None,
            client_keys: Vec::new(),
            max_clients: DEFAULT_MAX_CLIENTS,
            slot_capacity: SLOT_CAPACITY,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            ws_idle_timeout: DEFAULT_WS_IDLE_TIMEOUT,
            reassembly_timeout: DEFAULT_REASSEMBLY_TIMEOUT,
            ws_fragment: None,
            faults: Faults::default(),
            echo: false,
            bind_retries: 0,
            v6only: true,
            limits: Limits::default(),
            rx_queue: DEFAULT_RX_QUEUE,
            rx_queue_bytes: DEFAULT_RX_QUEUE_BYTES,
            tx_queue: DEFAULT_TX_QUEUE,
            max_fps: MAX_RENDER_FPS,
            ready_file: None,
            rng_seed: None,
        }
    }

    /// The real server's ports on 127.0.0.1 (27224 TCP, 27226 WebSocket).
    pub fn standard_ports() -> Self {
        ServerConfig {
            tcp: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_TCP_PORT))),
            ws: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_WS_PORT))),
            ..ServerConfig::loopback()
        }
    }

    /// Checks ranges that the real server checks at startup.
    pub fn validate(&self) -> Result<(), String> {
        if self.tcp.is_none() && self.ws.is_none() {
            return Err("no listener: give --tcp and/or --ws".into());
        }
        if !(1..=99).contains(&self.max_clients) {
            return Err(format!("--max-clients {} is outside 1..=99", self.max_clients));
        }
        if self.slot_capacity == 0 || self.slot_capacity > 1024 {
            return Err(format!("slot capacity {} is outside 1..=1024", self.slot_capacity));
        }
        if let Some(p) = &self.password {
            if !(8..=256).contains(&p.len()) {
                return Err(format!("password of {} bytes is outside 8..=256", p.len()));
            }
        }
        if self.ws_fragment == Some(0) {
            return Err("WebSocket fragment size 0".into());
        }
        if self.rx_queue == 0 || self.tx_queue == 0 || self.rx_queue_bytes == 0 {
            return Err("queue depth 0".into());
        }
        if self.rx_queue_bytes > u32::MAX as usize {
            return Err("receive queue budget over 4 GiB".into());
        }
        if self.max_fps == 0 {
            return Err("max fps 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_by_name() {
        let mut f = Faults::default();
        for n in Faults::NAMES {
            f.enable(n).unwrap();
        }
        assert_eq!(f.enabled(), Faults::NAMES);
        assert!(f.enable("nope").unwrap_err().contains("slot-leak"));
    }

    #[test]
    fn debug_hides_secrets() {
        let c = ServerConfig { password: Some("hunter2hunter2".into()), ..ServerConfig::default() };
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2") && text.contains("<set>"), "{text}");
    }

    #[test]
    fn defaults_validate() {
        ServerConfig::default().validate().unwrap();
        let c = ServerConfig { max_clients: 100, ..ServerConfig::default() };
        assert!(c.validate().is_err());
    }
}
