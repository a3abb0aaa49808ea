//! `reference-client`: a byte-compatible ACIP client as a thin tokio / tokio-tungstenite shell over `acip`
//! (issue 4 items 7-9; ACIP-SPEC.md sections 3, 4.3-4.6, 6 and 9).
//!
//! Two levels of API:
//!
//! * [`run`] runs a whole configured session (or `reconnect` sessions): connect, handshake,
//!   CLIENT_CAPABILITIES, STREAM_START, IMAGE_FRAMEs of the moving [`acip::pattern`] at `fps` on a fixed
//!   schedule, PING about every second, then close; it returns a [`ClientReport`]. [`run_until`] also
//!   stops gracefully when a future resolves (Ctrl-C) and returns the report even when the run failed.
//! * [`Client::connect`] gives a connected session whose owner decides when frames go out
//!   ([`Client::send_frame`] with the *intended* send time of the schedule, so latency measured from the
//!   embedded time is free of coordinated omission). The harness soak drives many of these in-process.
//!
//! Inside one [`Client`]: one reader task (decode, decrypt, validate, count), one pinger task, and exactly
//! one writer task that owns the socket's write half — except with [`ClientFaults::concurrent_writers`],
//! where two writer tasks share it fragment by fragment to reproduce the interleaving behind the old
//! native client's SIGABRT (ACIP-SPEC.md section 8).

pub mod bench;
pub mod cli;
mod client;
mod error;
mod report;
mod transport;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use acip::Dialect;
pub use client::{run, run_until, Client, Credentials};
pub use error::{ClientError, Result, EXIT_VALIDATION};
pub use report::{ClientEvent, ClientObserver, ClientReport, CloseInfo};

pub use acip::cli::{TargetUrl, DEFAULT_TCP_PORT, DEFAULT_WS_PORT};

/// Where to connect: a [`TargetUrl`] resolved to the socket address to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Raw TCP (ACIP-SPEC.md 6.1).
    Tcp(SocketAddr),
    /// WebSocket (6.2): the TCP address to connect to and the URL sent in the upgrade request.
    Ws { addr: SocketAddr, url: String },
}

impl Target {
    pub fn tcp(addr: SocketAddr) -> Self {
        Target::Tcp(addr)
    }

    /// A WebSocket target at `addr` with the URL `ws://addr/`.
    pub fn ws(addr: SocketAddr) -> Self {
        Target::Ws { addr, url: format!("ws://{addr}/") }
    }

    /// Resolves a URL (blocking, once): the first address the resolver gives.
    pub fn resolve(url: &TargetUrl) -> Result<Self> {
        let authority = url.authority();
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| ClientError::Config(format!("cannot resolve {authority:?}: {e}")))?
            .next()
            .ok_or_else(|| ClientError::Config(format!("{authority:?} resolves to no address")))?;
        Ok(match url.transport {
            acip::Transport::WebSocket => Target::Ws { addr, url: url.to_string() },
            acip::Transport::Tcp => Target::Tcp(addr),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::Tcp(a) | Target::Ws { addr: a, .. } => *a,
        }
    }

    pub fn is_ws(&self) -> bool {
        matches!(self, Target::Ws { .. })
    }

    pub fn transport(&self) -> acip::Transport {
        if self.is_ws() {
            acip::Transport::WebSocket
        } else {
            acip::Transport::Tcp
        }
    }

    /// `HOST:PORT` as written in the URL (the `Host` header of the upgrade request), or the TCP address.
    pub fn host(&self) -> String {
        match self {
            Target::Tcp(a) => a.to_string(),
            Target::Ws { url, .. } => {
                let rest = url.strip_prefix("ws://").unwrap_or(url);
                rest.split('/').next().unwrap_or(rest).to_string()
            }
        }
    }

    /// Path of the upgrade request (`/` for TCP).
    pub fn path(&self) -> &str {
        match self {
            Target::Tcp(_) => "/",
            Target::Ws { url, .. } => {
                let rest = url.strip_prefix("ws://").unwrap_or(url);
                rest.find('/').map_or("/", |i| &rest[i..])
            }
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp://{a}"),
            Target::Ws { url, .. } => f.write_str(url),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = ClientError;

    /// `tcp://host:port`, `ws://host[:port][/path]` or a bare `host:port` (TCP), as [`TargetUrl`] reads
    /// them; the host is resolved here (blocking, once).
    fn from_str(s: &str) -> Result<Self> {
        Target::resolve(&s.parse::<TargetUrl>().map_err(ClientError::Config)?)
    }
}

/// Faults the client can inject on purpose, each reproducing one documented failure. All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientFaults {
    /// WebSocket only: two writer tasks write fragments of *different* messages to one connection,
    /// locking the socket per fragment rather than per message, so the server sees a BINARY frame before
    /// the previous message's FIN (the SIGABRT of ACIP-SPEC.md section 8). Implies 4096-byte fragments
    /// unless `ws_fragment` says otherwise.
    pub concurrent_writers: bool,
}

/// When a session stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopAfter {
    /// After this many IMAGE_FRAMEs.
    Frames(u64),
    /// After this long (frames keep their schedule until then).
    Duration(Duration),
    /// Never on its own ([`run`] then stops only when the server closes).
    #[default]
    Never,
}

/// Everything a client session needs. `Default` gives the real client's defaults where they exist.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub target: Target,
    pub dialect: Dialect,
    /// Encrypt traffic after the handshake (`--encrypt`, the default) or not (`--no-encrypt`). Together with
    /// `password`/`key` this picks the crypto mode as the real client does (ACIP-SPEC.md 4.2).
    pub encrypt: bool,
    /// Shared password (8..=256 bytes), stretched with Argon2id before connecting.
    pub password: Option<String>,
    /// Ed25519 identity key file: 32 raw bytes or 64 hex digits of the secret seed.
    pub key: Option<PathBuf>,
    /// IMAGE_FRAME size in pixels (RGB24). Default 320x240.
    pub frame: (u16, u16),
    /// Terminal size in characters sent in CLIENT_CAPABILITIES: the size of the ASCII frames asked for.
    pub term: (u16, u16),
    /// IMAGE_FRAMEs per second, and `desired_fps` in CLIENT_CAPABILITIES (clamped to 1..=144 there).
    pub fps: u32,
    /// WebSocket send framing: `None` one frame per message; `Some(n)` a BINARY frame then CONTINUATION
    /// frames of `n` bytes, as the old native client (n = 4096).
    pub ws_fragment: Option<usize>,
    pub faults: ClientFaults,
    pub stop: StopAfter,
    /// Print (keep in the report) the first ASCII frame received and stop, like the real client's `-S`.
    pub snapshot: bool,
    /// Connect/disconnect cycles for [`run`]: 0 or 1 is one session, N is N sessions one after another.
    pub reconnect: u32,
    /// Seed for the handshake RNG (ephemeral keys, nonces) and WebSocket masks; written into the report.
    pub seed: u64,
    /// Embedded in every frame of the pattern (e.g. the client's index in a soak run).
    pub tag: u32,
    /// PING interval. The real client pings every 1 s (ACIP-SPEC.md 7.4), which races the real server's
    /// 1 s header timeout whenever no frames flow; the default of 900 ms keeps an idle client alive.
    pub ping_interval: Duration,
    /// Limit for TCP connect + WebSocket upgrade + crypto handshake + CLIENT_CAPABILITIES.
    pub connect_timeout: Duration,
    /// How long [`run`] waits for the first ASCII frame in snapshot mode.
    pub snapshot_timeout: Duration,
    /// After the last frame, how long [`run`] keeps the session open to receive (ASCII frames, PONGs).
    pub linger: Duration,
    /// Receive limits (packet size, WebSocket message size).
    pub limits: acip::Limits,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            target: Target::Tcp(SocketAddr::from(([127, 0, 0, 1], DEFAULT_TCP_PORT))),
            dialect: Dialect::default(),
            encrypt: true,
            password: None,
            key: None,
            frame: (320, 240),
            term: (80, 24),
            fps: 30,
            ws_fragment: None,
            faults: ClientFaults::default(),
            stop: StopAfter::Never,
            snapshot: false,
            reconnect: 0,
            seed: 0,
            tag: 0,
            ping_interval: Duration::from_millis(900),
            connect_timeout: Duration::from_secs(15),
            snapshot_timeout: Duration::from_secs(10),
            linger: Duration::ZERO,
            limits: acip::Limits::default(),
        }
    }
}

impl ClientConfig {
    /// A default config for `target`.
    pub fn new(target: Target) -> Self {
        ClientConfig { target, ..Self::default() }
    }

    /// The crypto mode the real client would use for these options (ACIP-SPEC.md 4.2).
    pub fn crypto_mode(&self) -> acip::crypto::CryptoMode {
        use acip::crypto::CryptoMode;
        let secret = self.password.is_some() || self.key.is_some();
        match (self.encrypt, secret) {
            (true, false) => CryptoMode::Encrypt,
            (true, true) => CryptoMode::Full,
            (false, true) => CryptoMode::Auth,
            (false, false) => CryptoMode::None,
        }
    }

    /// The WebSocket fragment size actually used (concurrent writers need fragments to interleave).
    pub fn effective_ws_fragment(&self) -> Option<usize> {
        match self.ws_fragment {
            Some(0) => None,
            Some(n) => Some(n),
            None if self.faults.concurrent_writers => Some(acip::ws::FRAGMENT_SIZE_NATIVE_CLIENT),
            None => None,
        }
    }

    /// Checks what can be checked before connecting.
    pub fn validate(&self) -> Result<()> {
        let (w, h) = self.frame;
        if (w as usize * h as usize) < acip::pattern::MIN_PIXELS {
            return Err(ClientError::Config(format!("frame {w}x{h} is too small for the test pattern")));
        }
        if self.fps == 0 {
            return Err(ClientError::Config("fps must be at least 1".into()));
        }
        if self.term.0 == 0 || self.term.1 == 0 {
            return Err(ClientError::Config("terminal size must be at least 1x1".into()));
        }
        if let Some(p) = &self.password {
            if !acip::crypto::PASSWORD_LEN.contains(&p.len()) {
                return Err(ClientError::Config("password must be 8..=256 bytes".into()));
            }
        }
        if self.faults.concurrent_writers && !self.target.is_ws() {
            return Err(ClientError::Config("--fault concurrent-writers needs a ws:// target".into()));
        }
        Ok(())
    }
}

/// A shared observer, as [`run`] and [`Client::connect`] take it.
pub type SharedObserver = Arc<dyn ClientObserver>;

#[cfg(test)]
mod tests {
    use super::*;
    use acip::crypto::CryptoMode;

    #[test]
    fn targets_parse_with_default_ports() {
        let t: Target = "tcp://127.0.0.1:5000".parse().unwrap();
        assert_eq!(t, Target::Tcp("127.0.0.1:5000".parse().unwrap()));
        let t: Target = "127.0.0.1".parse().unwrap();
        assert_eq!(t.addr().port(), DEFAULT_TCP_PORT);
        let t: Target = "ws://127.0.0.1".parse().unwrap();
        assert_eq!(
            t,
            Target::Ws { addr: "127.0.0.1:27226".parse().unwrap(), url: "ws://127.0.0.1:27226/".into() }
        );
        let t: Target = "ws://[::1]:9/x".parse().unwrap();
        assert_eq!(t, Target::Ws { addr: "[::1]:9".parse().unwrap(), url: "ws://[::1]:9/x".into() });
        assert_eq!(t.to_string(), "ws://[::1]:9/x");
        assert_eq!((t.host().as_str(), t.path()), ("[::1]:9", "/x"));
        for bad in ["wss://127.0.0.1", "tcp://", "http://x:1"] {
            assert!(matches!(bad.parse::<Target>(), Err(ClientError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn crypto_mode_follows_the_real_client() {
        let mut c = ClientConfig::default();
        assert_eq!(c.crypto_mode(), CryptoMode::Encrypt);
        c.password = Some("12345678".into());
        assert_eq!(c.crypto_mode(), CryptoMode::Full);
        c.encrypt = false;
        assert_eq!(c.crypto_mode(), CryptoMode::Auth);
        c.password = None;
        assert_eq!(c.crypto_mode(), CryptoMode::None);
    }

    #[test]
    fn validation_names_the_problem() {
        let bad = [
            ClientConfig { frame: (3, 3), ..ClientConfig::default() },
            ClientConfig { fps: 0, ..ClientConfig::default() },
            ClientConfig { password: Some("short".into()), ..ClientConfig::default() },
            ClientConfig { faults: ClientFaults { concurrent_writers: true }, ..ClientConfig::default() },
        ];
        for c in bad {
            let e = c.validate().unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
        }
        let ws = ClientConfig {
            faults: ClientFaults { concurrent_writers: true },
            ..ClientConfig::new(Target::ws("127.0.0.1:1".parse().unwrap()))
        };
        ws.validate().unwrap();
        assert_eq!(ws.effective_ws_fragment(), Some(4096));
        assert_eq!(ClientConfig { ws_fragment: Some(0), ..ws }.effective_ws_fragment(), None);
    }
}
