//! The `reference-client` command line: [`Args`] (clap) and its mapping to a [`ClientConfig`]. In the
//! library so that tests can check every documented command line against it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::{ClientConfig, ClientError, ClientFaults, Dialect, StopAfter, Target};

#[derive(Debug, Parser)]
#[command(
    name = "reference-client",
    version,
    about = "Byte-compatible ACIP (ascii-chat) test client",
    after_help = "Examples:
  reference-client tcp://127.0.0.1:27224 --dialect feb --frames 90
  reference-client ws://127.0.0.1:27226 --dialect head --ws-fragment 4096 --duration 10s
  reference-client --bench-raw-tcp 5s"
)]
pub struct Args {
    /// tcp://host:port, ws://host:port[/path], or host:port (TCP)
    pub url: Option<String>,
    /// Protocol generation: feb (Feb 2026) or head
    #[arg(long, default_value = "feb")]
    pub dialect: Dialect,
    /// Encrypt after the handshake (the default)
    #[arg(long, overrides_with = "no_encrypt")]
    pub encrypt: bool,
    /// No encryption (mode NONE, or AUTH with --password/--key)
    #[arg(long)]
    pub no_encrypt: bool,
    /// Shared password (8..=256 bytes)
    #[arg(long)]
    pub password: Option<String>,
    /// Ed25519 identity: a file of 32 raw bytes or 64 hex digits
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// IMAGE_FRAME size in pixels, WxH
    #[arg(long, default_value = "320x240", value_parser = parse_size)]
    pub frame: (u16, u16),
    /// Terminal size in characters asked for in CLIENT_CAPABILITIES, WxH
    #[arg(long, default_value = "80x24", value_parser = parse_size)]
    pub term: (u16, u16),
    /// Frames per second
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Stop after N frames
    #[arg(long, conflicts_with = "duration")]
    pub frames: Option<u64>,
    /// Stop after this long (e.g. 500ms, 10s, 2m)
    #[arg(long, value_parser = acip::cli::parse_duration)]
    pub duration: Option<Duration>,
    /// WebSocket: send each packet as a BINARY frame then CONTINUATION frames of N bytes
    #[arg(long)]
    pub ws_fragment: Option<usize>,
    /// Inject a fault: concurrent-writers
    #[arg(long = "fault")]
    pub faults: Vec<String>,
    /// Connect/disconnect cycles
    #[arg(long, default_value_t = 0)]
    pub reconnect: u32,
    /// Print the first ASCII frame received and exit (like the real client's -S)
    #[arg(long, short = 'S')]
    pub snapshot: bool,
    /// Seed of the handshake RNG (recorded in the report)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tag embedded in every test-pattern frame
    #[arg(long, default_value_t = 0)]
    pub tag: u32,
    /// Keep receiving this long after the last frame
    #[arg(long, value_parser = acip::cli::parse_duration)]
    pub linger: Option<Duration>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Instead of a session: measure raw TCP on loopback moving 921,646-byte records for this long
    #[arg(long, value_parser = acip::cli::parse_duration)]
    pub bench_raw_tcp: Option<Duration>,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?} is not WxH"))?;
    let n = |v: &str| v.parse::<u16>().map_err(|e| format!("{v:?}: {e}"));
    Ok((n(w)?, n(h)?))
}

pub fn config(args: &Args) -> Result<ClientConfig, ClientError> {
    let url = args.url.as_deref().ok_or_else(|| ClientError::Config("a URL is required".into()))?;
    let mut faults = ClientFaults::default();
    for f in &args.faults {
        match f.as_str() {
            "concurrent-writers" => faults.concurrent_writers = true,
            other => {
                return Err(ClientError::Config(format!("unknown fault {other:?} (concurrent-writers)")))
            }
        }
    }
    let stop = match (args.frames, args.duration) {
        (Some(n), _) => StopAfter::Frames(n),
        (None, Some(d)) => StopAfter::Duration(d),
        (None, None) => StopAfter::Never,
    };
    Ok(ClientConfig {
        target: url.parse::<Target>()?,
        dialect: args.dialect,
        encrypt: !args.no_encrypt,
        password: args.password.clone(),
        key: args.key.clone(),
        frame: args.frame,
        term: args.term,
        fps: args.fps,
        ws_fragment: args.ws_fragment,
        faults,
        stop,
        snapshot: args.snapshot,
        reconnect: args.reconnect,
        seed: args.seed,
        tag: args.tag,
        linger: args.linger.unwrap_or_default(),
        ..ClientConfig::default()
    })
}
