//! Binary entry point of `reference-client`: parses the command line into a [`ClientConfig`], runs it and
//! prints the [`reference_client::ClientReport`] (a summary, or JSON with `--json`). Exit codes are those
//! of [`ClientError::exit_code`], plus [`reference_client::EXIT_VALIDATION`] when the run finished but
//! something received failed validation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use reference_client::{ClientConfig, ClientError, ClientFaults, Dialect, StopAfter, Target};

#[derive(Debug, Parser)]
#[command(name = "reference-client", version, about = "Byte-compatible ACIP (ascii-chat) test client")]
struct Args {
    /// tcp://host:port, ws://host:port[/path], or host:port (TCP)
    url: Option<String>,
    /// Protocol generation: feb (Feb 2026) or head
    #[arg(long, default_value = "feb")]
    dialect: Dialect,
    /// Encrypt after the handshake (the default)
    #[arg(long, overrides_with = "no_encrypt")]
    encrypt: bool,
    /// No encryption (mode NONE, or AUTH with --password/--key)
    #[arg(long)]
    no_encrypt: bool,
    /// Shared password (8..=256 bytes)
    #[arg(long)]
    password: Option<String>,
    /// Ed25519 identity: a file of 32 raw bytes or 64 hex digits
    #[arg(long)]
    key: Option<PathBuf>,
    /// IMAGE_FRAME size in pixels, WxH
    #[arg(long, default_value = "320x240", value_parser = parse_size)]
    frame: (u16, u16),
    /// Terminal size in characters asked for in CLIENT_CAPABILITIES, WxH
    #[arg(long, default_value = "80x24", value_parser = parse_size)]
    term: (u16, u16),
    /// Frames per second
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Stop after N frames
    #[arg(long, conflicts_with = "duration")]
    frames: Option<u64>,
    /// Stop after this long (e.g. 500ms, 10s, 2m)
    #[arg(long, value_parser = acip::cli::parse_duration)]
    duration: Option<Duration>,
    /// WebSocket: send each packet as a BINARY frame then CONTINUATION frames of N bytes
    #[arg(long)]
    ws_fragment: Option<usize>,
    /// Inject a fault: concurrent-writers
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Connect/disconnect cycles
    #[arg(long, default_value_t = 0)]
    reconnect: u32,
    /// Print the first ASCII frame received and exit (like the real client's -S)
    #[arg(long, short = 'S')]
    snapshot: bool,
    /// Seed of the handshake RNG (recorded in the report)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tag embedded in every test-pattern frame
    #[arg(long, default_value_t = 0)]
    tag: u32,
    /// Keep receiving this long after the last frame
    #[arg(long, value_parser = acip::cli::parse_duration)]
    linger: Option<Duration>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Instead of a session: measure raw TCP on loopback moving 921,646-byte records for this long
    #[arg(long, value_parser = acip::cli::parse_duration)]
    bench_raw_tcp: Option<Duration>,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?} is not WxH"))?;
    let n = |v: &str| v.parse::<u16>().map_err(|e| format!("{v:?}: {e}"));
    Ok((n(w)?, n(h)?))
}

fn config(args: &Args) -> Result<ClientConfig, ClientError> {
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

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(d) = args.bench_raw_tcp {
        return match reference_client::bench::raw_tcp(d, 921_646).await {
            Ok(r) => {
                println!(
                    "{}",
                    if args.json { serde_json::to_string(&r).unwrap_or_default() } else { r.to_string() }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("reference-client: raw TCP bench: {e}");
                ExitCode::from(9)
            }
        };
    }
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reference-client: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        eprintln!("reference-client: interrupted, closing");
    };
    let (report, outcome) = reference_client::run_until(config, None, interrupted).await;
    if args.snapshot {
        if let Some(text) = &report.snapshot {
            println!("{text}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        eprint!("{}", report.summary());
    }
    match outcome {
        Err(e) => {
            eprintln!("reference-client: {e}");
            ExitCode::from(e.exit_code())
        }
        Ok(()) if report.has_validation_errors() => ExitCode::from(reference_client::EXIT_VALIDATION),
        Ok(()) => ExitCode::SUCCESS,
    }
}
