//! The in-process reference server a soak runs against when no `--target` is given: loopback,
//! ephemeral ports, sized for the number of clients. The only place the soak touches the server's API.

use acip::stats::{Counters, StageHistograms};
use reference_client::Target;
use reference_server::{ServerConfig, ServerHandle};

use super::{Args, Transport};

/// `--max-clients` of the reference server is limited to 1..=99 (ACIP-SPEC.md 7.1).
pub const MAX_EMBEDDED_CLIENTS: u32 = 99;

/// The server's statistics at one instant.
pub struct ServerSample {
    pub stages: StageHistograms,
    pub counters: Counters,
    /// Releases of an already free slot (must stay 0).
    pub double_releases: u64,
}

pub struct Embedded {
    handle: ServerHandle,
}

impl Embedded {
    /// Starts the server for `args` and returns once it accepts connections.
    pub async fn start(args: &Args) -> crate::Result<Self> {
        if args.clients == 0 || args.clients > MAX_EMBEDDED_CLIENTS {
            return Err(crate::Error::Usage(format!(
                "--clients {}: the embedded server takes 1..={MAX_EMBEDDED_CLIENTS} clients (its --max-clients \
                 limit); use --target for more",
                args.clients
            )));
        }
        let mut cfg = ServerConfig::loopback();
        cfg.dialect = args.dialect.into();
        cfg.encrypt = args.encrypt;
        // With churn a client reconnects while the server may still be tearing its previous session
        // down; headroom keeps that race from being refused as "server full".
        let headroom = if args.churn > 0.0 { args.clients } else { 0 };
        cfg.max_clients = (args.clients + headroom).min(MAX_EMBEDDED_CLIENTS) as usize;
        // The real server's 32 slots, or one per client when there are more.
        cfg.slot_capacity = cfg.slot_capacity.max(cfg.max_clients);
        for f in &args.faults {
            cfg.faults.enable(f).map_err(crate::Error::Usage)?;
        }
        let handle = reference_server::start(cfg)
            .await
            .map_err(|e| crate::Error::Verdict(format!("the embedded server failed to start: {e}")))?;
        Ok(Embedded { handle })
    }

    /// Where clients connect for `transport`.
    pub fn target(&self, transport: Transport) -> Target {
        match transport {
            Transport::WebSocket => {
                Target::ws(self.handle.ws_addr().expect("loopback config has a WebSocket listener"))
            }
            Transport::Tcp => {
                Target::tcp(self.handle.tcp_addr().expect("loopback config has a TCP listener"))
            }
        }
    }

    pub fn sample(&self) -> ServerSample {
        let stats = self.handle.stats();
        ServerSample {
            stages: self.handle.stage_histograms(),
            counters: stats.counters,
            double_releases: stats.double_releases,
        }
    }

    pub fn slots_in_use(&self) -> u64 {
        self.handle.slots_in_use() as u64
    }

    /// Shuts down, joining every task. `Err` says how the server failed during the run.
    pub async fn shutdown(self) -> Result<(), String> {
        let double = self.handle.stats().double_releases;
        self.handle.shutdown().await;
        if double > 0 {
            return Err(format!("{double} slot releases of an already free slot"));
        }
        Ok(())
    }
}

impl From<super::DialectArg> for acip::Dialect {
    fn from(d: super::DialectArg) -> Self {
        match d {
            super::DialectArg::Feb => acip::Dialect::Feb,
            super::DialectArg::Head => acip::Dialect::Head,
        }
    }
}
