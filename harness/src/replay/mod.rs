//! `harness replay`: dissect a pcap/pcapng capture of ACIP (ACIP-SPEC.md 1, 6, 10) and flag what is wrong
//! in it, or replay its client side against a live server and report where the answers diverge.
//!
//! ```text
//!   FILE ──► capture (pcap/pcapng, link layers, TCP reassembly) ──► dissect ──► Dissection ──► text | --json
//!   FILE --against URL ──► dissect ──► client script per flow ──► live (tokio) ──► divergences
//! ```

pub mod dissect;
pub mod live;
pub mod model;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub use dissect::{dissect, DissectConfig};
pub use model::Dissection;

/// Arguments of `harness replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A pcap or pcapng capture.
    pub file: PathBuf,
    /// Machine-readable output (the same data as the text).
    #[arg(long)]
    pub json: bool,
    /// Include the timeline (one line per TCP flag, HTTP line, WebSocket frame, ACIP packet, anomaly).
    #[arg(long)]
    pub timeline: bool,
    /// Decode every flow in this dialect instead of detecting it.
    #[arg(long, value_parser = parse_dialect)]
    pub dialect: Option<acip::Dialect>,
    /// A gap between two fragments of one message above this is a stall (e.g. 20ms, 1s, 500us).
    #[arg(long, default_value = "20ms", value_parser = acip::cli::parse_duration)]
    pub stall_threshold: Duration,
    /// Replay the client side of each session against this server: tcp://HOST:PORT or ws://HOST:PORT.
    #[arg(long)]
    pub against: Option<String>,
    /// Replay at this multiple of the original speed (2 = twice as fast).
    #[arg(long, conflicts_with = "fast")]
    pub speed: Option<f64>,
    /// Replay as fast as possible.
    #[arg(long)]
    pub fast: bool,
}

fn parse_dialect(s: &str) -> Result<acip::Dialect, String> {
    s.parse()
}

pub fn run(args: Args) -> crate::Result<ExitCode> {
    let path = args.file.display().to_string();
    let data = std::fs::read(&args.file).map_err(|e| crate::Error::io(format!("reading {path}"), e))?;
    let name = args.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(path.clone());
    let config = DissectConfig {
        dialect: args.dialect,
        stall_threshold: args.stall_threshold,
        timeline: args.timeline,
        collect_packets: args.against.is_some(),
        ..DissectConfig::default()
    };
    let dissection =
        dissect(&name, &data, &config).map_err(|e| crate::Error::Input { path, reason: e.to_string() })?;
    if let Some(url) = &args.against {
        let pace = match (args.fast, args.speed) {
            (true, _) => live::Pace::Fast,
            (false, Some(x)) if x > 0.0 && x.is_finite() => live::Pace::Speed(x),
            (false, Some(x)) => return Err(crate::Error::Usage(format!("--speed {x}: must be positive"))),
            (false, None) => live::Pace::Speed(1.0),
        };
        let target = live::parse_target(url).map_err(crate::Error::Usage)?;
        crate::probe::probe(url, target.addr())?;
        let report = live::replay(&dissection, &data, &config, &target, pace)?;
        emit(args.json, &report, || report.render())?;
        return Ok(if report.sessions.iter().all(|s| s.divergences.is_empty()) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    emit(args.json, &dissection, || dissection.render())?;
    Ok(ExitCode::SUCCESS)
}

fn emit<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> crate::Result<()> {
    let out = if json {
        serde_json::to_string_pretty(value).map_err(|e| crate::Error::Usage(format!("serialising: {e}")))?
            + "\n"
    } else {
        text()
    };
    std::io::stdout().lock().write_all(out.as_bytes()).map_err(|e| crate::Error::io("writing stdout", e))
}
