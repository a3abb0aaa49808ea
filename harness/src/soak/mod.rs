//! `harness soak`: many reference clients against one server on a fixed send schedule, with per-stage
//! latency histograms corrected for coordinated omission, and reports (see `crate::report`).

pub mod assemble;
pub mod driver;
pub mod embedded;
pub mod gate;
pub mod load;
pub mod memory;
pub mod merge;
pub mod profile;
pub mod progress;
pub mod raw_tcp;
pub mod schedule;
pub mod shard;
pub mod timer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `harness soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Number of concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: u32,
    /// How long the clients send (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = acip::cli::parse_duration)]
    pub duration: Duration,
    /// Transport to the embedded server (ignored with --target, whose URL scheme decides).
    #[arg(long, default_value = "ws", value_parser = parse_transport)]
    pub transport: Transport,
    /// ACIP dialect of the peers (ACIP-SPEC.md section 10).
    #[arg(long, value_enum, default_value_t = DialectArg::Feb)]
    pub dialect: DialectArg,
    /// Encrypt sessions (the ACIP crypto handshake, ACIP-SPEC.md section 4). Plaintext without it.
    #[arg(long)]
    pub encrypt: bool,
    /// IMAGE_FRAME size in pixels (RGB24), WIDTHxHEIGHT.
    #[arg(long, default_value = "320x240", value_parser = parse_frame)]
    pub frame: (u16, u16),
    /// Frames per second per client.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// WebSocket only: send each message as a BINARY frame then CONTINUATION frames of N bytes.
    #[arg(long, value_name = "N")]
    pub ws_fragment: Option<usize>,
    /// Reconnects per second across all clients (seeded Poisson process); 0 = none.
    #[arg(long, default_value_t = 0.0, value_name = "RATE")]
    pub churn: f64,
    /// Load this ACIP server (tcp://HOST:PORT or ws://HOST:PORT) instead of the embedded one.
    /// Stages only a server can see are then absent from the report.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Seed of every random choice (start offsets, churn, handshakes); random when absent, and always
    /// written into the report so the run can be repeated.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Report directory (default: a new folder under target/harness/soak/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No progress bar; print only the verdict and the report path.
    #[arg(long)]
    pub quiet: bool,
    /// Progress as JSON lines on stderr, and the final report.json on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also move the same bytes over plain TCP on loopback in this run, for overhead ratios.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Sample the CPU of the whole harness process (clients and embedded server) at 999 Hz during the
    /// run and write a flame graph, flamegraph.svg, beside report.html (Linux only).
    #[arg(long)]
    pub profile: bool,
    /// Accept a run whose load generator fell behind its schedule (verdict PASS with a note instead of
    /// BEHIND, exit 0 instead of 7).
    #[arg(long)]
    pub allow_behind: bool,
    /// "Behind" when the achieved frame rate per client is below this fraction of --fps.
    #[arg(long, default_value_t = load::DEFAULT_FPS_RATIO, value_name = "RATIO")]
    pub behind_fps_ratio: f64,
    /// "Behind" when send_lag p99 (intended send time to the start of building a frame) is over this
    /// (default: one frame period, 1/fps).
    #[arg(long, value_parser = acip::cli::parse_duration, value_name = "DURATION")]
    pub behind_lag_p99: Option<Duration>,
    /// Switch on a fault of the embedded reference server (slot-leak, rx-pause, no-reuseaddr,
    /// early-ready); repeatable.
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<String>,
    /// Run shard I of N (0-based) of this run: the clients i with i % N == I, with the start offsets,
    /// reconnects and handshake seeds they have in the unsharded run of the same --seed. Merge the N
    /// report directories with `harness report merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<shard::Shard>,
    /// Begin the schedule at this wall-clock instant (UNIX milliseconds), after connecting the clients: the
    /// common start of all shards.
    #[arg(long, value_name = "UNIX_MS", conflicts_with = "wait_start")]
    pub start_at: Option<u64>,
    /// After connecting the clients, ask this start gate (`harness start-gate`) for the common start and
    /// begin then, e.g. http://gate:8080/start?shard=0.
    #[arg(long, value_name = "URL")]
    pub wait_start: Option<gate::HttpUrl>,
}

impl Args {
    /// When this run begins its schedule.
    pub fn start_rule(&self) -> StartRule {
        match (&self.start_at, &self.wait_start) {
            (Some(ms), _) => StartRule::At(*ms),
            (None, Some(url)) => StartRule::Gate(url.clone()),
            (None, None) => StartRule::Now,
        }
    }

    /// This run's shard (the whole run when not sharded).
    pub fn shard(&self) -> shard::Shard {
        self.shard.unwrap_or(shard::Shard::WHOLE)
    }

    /// How many clients this process runs (its shard's share of --clients).
    pub fn local_clients(&self) -> u32 {
        self.shard().clients(self.clients).len() as u32
    }
}

pub use acip::Transport;

/// When a run begins its schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartRule {
    /// As soon as its clients are connected (plus a short lead): the unsharded default.
    Now,
    /// At this wall-clock instant, UNIX milliseconds (`--start-at`).
    At(u64),
    /// At the instant a start gate answers (`--wait-start URL`).
    Gate(gate::HttpUrl),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DialectArg {
    Feb,
    Head,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    /// Plain TCP on loopback, same bytes and schedule, no ACIP.
    RawTcp,
}

/// `ws` or `tcp`.
fn parse_transport(s: &str) -> Result<Transport, String> {
    s.parse()
}

/// Parses `320x240`.
pub fn parse_frame(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?}: expected WIDTHxHEIGHT"))?;
    let dim = |d: &str| match d.trim().parse::<u16>() {
        Ok(v) if (1..=8192).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: each dimension must be 1..=8192 (ACIP-SPEC.md 3.7)")),
    };
    Ok((dim(w)?, dim(h)?))
}

pub fn run(args: Args) -> crate::Result<ExitCode> {
    if args.shard.is_some() && args.baseline.is_some() {
        return Err(crate::Error::Usage(
            "--baseline raw-tcp is not sharded: run the baseline once, unsharded, beside the merged report"
                .into(),
        ));
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let seed = args.seed.unwrap_or_else(rand::random);
    let out = match &args.out {
        Some(d) => d.clone(),
        None => crate::paths::default_out_dir("soak", Some(&seed.to_string())),
    };
    std::fs::create_dir_all(&out).map_err(|e| crate::Error::io(format!("creating {}", out.display()), e))?;
    let mode = if args.json {
        progress::Mode::Json
    } else if args.quiet {
        progress::Mode::Quiet
    } else {
        progress::Mode::Bar
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::io("starting the tokio runtime", e))?;
    let setup = driver::RunSetup {
        seed,
        argv,
        out: out.clone(),
        progress: progress::Progress::new(mode, args.duration),
    };
    if mode == progress::Mode::Bar {
        setup.progress.println(&format!("harness soak: seed {seed}, report in {}", out.display()));
    }
    // Started before the run and stopped after it, so the flame graph covers connecting, the schedule
    // and the drain; a run that fails drops the sampler without drawing.
    let profiler = if args.profile { Some(profile::Profiler::start()?) } else { None };
    let report = runtime.block_on(driver::soak(&args, &setup));
    setup.progress.finish();
    let mut report = report?;
    let threads = if args.target.is_some() { "the clients" } else { "the clients and the embedded server" };
    match profiler.map(|p| p.finish(&out)) {
        None => {}
        // A run too short or idle to be sampled is still a run: say so rather than fail it.
        Some(Err(profile::ProfileError::NoSamples)) => report.notes.push(profile::no_samples_note()),
        Some(Err(e)) => return Err(e.into()),
        Some(Ok(written)) => {
            report.settings.insert(profile::SETTING.into(), profile::FLAMEGRAPH_SVG.into());
            report.notes.push(written.note(threads));
        }
    }
    crate::report::write_dir(&out, &report)?;
    match mode {
        progress::Mode::Json => println!("{}", serde_json::to_string(&report).expect("reports serialise")),
        progress::Mode::Quiet => {}
        progress::Mode::Bar => print!("{}", console_summary(&report)),
    }
    if let (true, Some(why)) = (report.verdict.passed, &report.verdict.behind) {
        return Err(crate::Error::Behind(format!(
            "soak BEHIND (report in {}): {why}; the latencies measure the load generator, not the server \
             (fewer clients, --release, or --allow-behind to accept it)",
            out.display()
        )));
    }
    if report.verdict.passed {
        if mode != progress::Mode::Json {
            println!("PASS: report in {}", out.display());
        }
        Ok(ExitCode::SUCCESS)
    } else {
        Err(crate::Error::Verdict(format!(
            "soak FAILED (report in {}): {}",
            out.display(),
            report.verdict.reasons.join("; ")
        )))
    }
}

/// The few lines printed after a run: a pure function of the report (the same data as summary.md).
pub fn console_summary(r: &crate::report::Report) -> String {
    use std::fmt::Write;
    let mut s = format!("{}\n", r.title);
    let _ = writeln!(
        s,
        "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "stage (µs)", "count", "p50", "p99", "p99.9", "max"
    );
    for st in &r.stages {
        if let Some(h) = &st.histogram {
            let p = &h.percentiles_us;
            let _ = writeln!(
                s,
                "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>10}",
                st.name, h.count, p.p50, p.p99, p.p99_9, p.max
            );
        }
    }
    let get = |k: &str| r.counters.get(k).map_or("-".to_string(), |v| v.to_string());
    let _ = writeln!(
        s,
        "  frames: sent {} received {} lost {} corrupt {} unsent {}; reconnects {}; slots in use at end {}",
        get("frames_sent"),
        get("frames_received"),
        get("frames_lost"),
        get("frames_corrupt"),
        get("frames_unsent"),
        get("reconnects"),
        get("slots_in_use_end")
    );
    if let Some(l) = &r.load {
        let _ = writeln!(s, "  load: {}", l.describe());
    }
    for q in &r.ratios {
        let _ = writeln!(s, "  {}: {}", q.name, q.value.map_or("-".to_string(), |v| format!("{v:.2}")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arguments() {
        assert_eq!(parse_frame("320x240"), Ok((320, 240)));
        assert!(parse_frame("0x240").is_err());
        assert!(parse_frame("320").is_err());
        assert!(parse_frame("9000x1").is_err());
    }
}
