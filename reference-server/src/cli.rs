//! The `reference-server` command line: [`Args`] (clap) and its mapping to a [`ServerConfig`]. In the
//! library so that tests can check every documented command line against it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::{read_keys, ServerConfig, ServerError};

/// A byte-compatible ACIP (ascii-chat) server with fault emulation and per-stage timing.
#[derive(Debug, Parser)]
#[command(
    name = "reference-server",
    version,
    after_help = "Examples:
  reference-server --tcp 127.0.0.1:0 --ws 127.0.0.1:0
  reference-server --dialect head --no-encrypt --ws off
  reference-server --echo --tcp off --ws 127.0.0.1:27226
  reference-server --fault stale-callback --reassembly-timeout 100ms

Exit codes: 0, 2 usage, 40 network, 41 bind failure, 86 invalid parameter."
)]
pub struct Args {
    /// TCP listen address ("off" disables it).
    #[arg(long, default_value = "127.0.0.1:27224")]
    pub tcp: String,
    /// WebSocket listen address, also serving GET /health and /stats ("off" disables it).
    #[arg(long, default_value = "127.0.0.1:27226")]
    pub ws: String,
    /// Which ascii-chat generation to speak: feb or head.
    #[arg(long, default_value = "feb")]
    pub dialect: acip::Dialect,
    /// Offer the crypto handshake (default).
    #[arg(long, overrides_with = "no_encrypt")]
    pub encrypt: bool,
    /// Plaintext only on TCP (the real `--no-encrypt --no-auth`).
    #[arg(long)]
    pub no_encrypt: bool,
    /// Password authentication (8..=256 bytes).
    #[arg(long)]
    pub password: Option<String>,
    /// Ed25519 identity seed: a file of 64 hex digits or 32 raw bytes.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Client whitelist: one hex Ed25519 public key per line.
    #[arg(long)]
    pub client_keys: Option<PathBuf>,
    /// Active-client limit (1..=99).
    #[arg(long, default_value_t = crate::DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,
    /// Drop a silent peer after this long (TCP and WebSocket), e.g. 1s, 500ms.
    #[arg(long, value_parser = acip::cli::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// FEB WebSocket reassembly timeout, e.g. 100ms (the old value) or 2s (the fix, default).
    #[arg(long, value_parser = acip::cli::parse_duration)]
    pub reassembly_timeout: Option<Duration>,
    /// Split outbound WebSocket messages into frames of this many bytes (the FEB server used 262144).
    #[arg(long)]
    pub ws_fragment: Option<usize>,
    /// Fault to emulate: slot-leak, rx-pause, no-reuseaddr, early-ready, stale-callback,
    /// abort-on-interleave (SIGABRT), hang-on-interleave (stops accepting and reading) (repeatable).
    #[arg(long = "fault")]
    pub faults: Vec<String>,
    /// Plain RFC 6455 echo on the WebSocket port (no ACIP).
    #[arg(long)]
    pub echo: bool,
    /// Also write the READY line to this file.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Retry a failed bind this many times with backoff.
    #[arg(long, default_value_t = 0)]
    pub bind_retries: u32,
    /// IPV6_V6ONLY for IPv6 listeners (always set explicitly).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    v6only: bool,
    /// Seed of the handshake RNGs (default: from the OS).
    #[arg(long)]
    pub seed: Option<u64>,
}

fn parse_addr(s: &str) -> Result<Option<SocketAddr>, ServerError> {
    if s == "off" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| ServerError::Config(format!("bad address {s:?}: {e}")))
}

pub fn config(args: Args) -> Result<ServerConfig, ServerError> {
    let mut c = ServerConfig::standard_ports();
    c.tcp = parse_addr(&args.tcp)?;
    c.ws = parse_addr(&args.ws)?;
    c.dialect = args.dialect;
    c.encrypt = !args.no_encrypt;
    c.password = args.password;
    if let Some(path) = &args.key {
        c.identity_seed = Some(read_keys(path)?[0]);
    }
    if let Some(path) = &args.client_keys {
        c.client_keys = read_keys(path)?;
    }
    c.max_clients = args.max_clients;
    if let Some(d) = args.idle_timeout {
        c.tcp_idle_timeout = d;
        c.ws_idle_timeout = d;
    }
    if let Some(d) = args.reassembly_timeout {
        c.reassembly_timeout = d;
    }
    c.ws_fragment = args.ws_fragment;
    for f in &args.faults {
        c.faults.enable(f).map_err(ServerError::Config)?;
    }
    c.echo = args.echo;
    c.ready_file = args.ready_file;
    c.bind_retries = args.bind_retries;
    c.v6only = args.v6only;
    c.rng_seed = args.seed;
    Ok(c)
}

/// The whole program of `reference-server`: starts the server, prints the READY line once every listener
/// accepts, and runs until SIGINT/SIGTERM; returns the documented exit code. In the library so that
/// other binaries (`harness check` tests) can run exactly this server as a child process.
pub fn main_with(args: Args) -> std::process::ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reference-server: cannot start the runtime: {e}");
            return std::process::ExitCode::from(crate::exit_code::NETWORK as u8);
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reference-server: {e}");
            std::process::ExitCode::from(e.exit_code() as u8)
        }
    }
}

async fn serve(args: Args) -> Result<(), ServerError> {
    use std::io::Write;
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before READY: a supervisor may send SIGTERM the moment it reads the line, and a signal
    // arriving before its handler would kill the process instead of shutting it down cleanly.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let server = crate::start(config(args)?).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", server.ready_line())?;
        out.flush()?;
    }
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}
