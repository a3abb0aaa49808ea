//! `harness conformance`: a WebSocket fragmentation and robustness suite for any ACIP server (issue 9), in
//! the manner of Autobahn|Testsuite (its sections 5 and 9: fragmentation, control frames between
//! fragments, continuation without start, tiny and huge fragments, chopped writes), for ACIP.
//!
//! - [`cases`]: the catalogue. Each case is data: steps (packets, how they are framed and cut, waits),
//!   and the expected outcome per dialect and transport, with the ACIP-SPEC.md section it comes from.
//! - [`runner`]: one interpreter over the sans-IO core, one connection per case, cases run concurrently.
//! - [`report`]: `index.json` and `index.html`, via the shared report page.
//!
//! ```text
//! harness conformance ws://127.0.0.1:27226 --dialect feb --encrypting-server
//! harness conformance tcp://127.0.0.1:27224 --cases 6,7 --json
//! ```

pub mod cases;
pub mod catalogue;
pub mod report;
pub mod runner;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use acip::Dialect;

pub use cases::{Case, Params, Transport};
pub use catalogue::catalogue;
pub use report::SuiteReport;
pub use runner::{Behaviour, CaseResult, Target};

/// Arguments of `harness conformance`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The server: `ws://HOST:PORT` or `tcp://HOST:PORT`.
    pub target: String,
    /// The dialect the server speaks (ACIP-SPEC.md section 10): `feb` or `head`.
    #[arg(long, default_value = "feb")]
    pub dialect: Dialect,
    /// Only these cases: comma-separated ids or prefixes (`2`, `2.1`, `2.1.3`, `2.*`).
    #[arg(long, value_name = "PATTERN")]
    pub cases: Option<String>,
    /// Report directory [default: target/harness/conformance/<UTC time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The server runs the crypto handshake (enables the section 8 cases).
    #[arg(long)]
    pub encrypting_server: bool,
    /// Print index.json to stdout instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// The server's `feb` reassembly timeout (e.g. `2s`, `200ms`): the slow-fragment cases space their
    /// fragments 0.75 and 1.5 times this apart.
    #[arg(long, default_value = "2s", value_parser = acip::cli::parse_duration)]
    pub reassembly_timeout: Duration,
    /// How long the idle-client case stays silent.
    #[arg(long, default_value = "5s", value_parser = acip::cli::parse_duration)]
    pub idle: Duration,
    /// How long to wait for an answer or a close after a case's last step.
    #[arg(long, default_value = "2s", value_parser = acip::cli::parse_duration)]
    pub settle: Duration,
    /// How long the stop-reading case floods at most.
    #[arg(long, default_value = "5s", value_parser = acip::cli::parse_duration)]
    pub flood: Duration,
    /// Cases run at once (each on its own connection). The real server admits 9 active clients.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Seed of the masking keys and handshake randomness.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What a suite run needs (the library form of [`Args`]).
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    pub target: Target,
    pub cases: Option<String>,
    pub params: Params,
    pub jobs: usize,
    pub seed: u64,
    /// Recorded in the report.
    pub arguments: Vec<String>,
}

/// Runs the selected cases that apply to the target and builds the report.
pub async fn run_suite(cfg: &SuiteConfig) -> SuiteReport {
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let t0 = Instant::now();
    let selected: Vec<Case> = catalogue()
        .into_iter()
        .filter(|c| c.applies.includes(cfg.target.transport()) && cases::selected(c.id, cfg.cases.as_deref()))
        .collect();
    let results = runner::run_cases(&selected, &cfg.target, &cfg.params, cfg.jobs, cfg.seed).await;
    let ms = |d: Duration| format!("{} ms", d.as_millis());
    let mut params = BTreeMap::new();
    params.insert("reassembly timeout".into(), ms(cfg.params.reassembly_timeout));
    params.insert("idle".into(), ms(cfg.params.idle));
    params.insert("settle".into(), ms(cfg.params.settle));
    params.insert("flood".into(), ms(cfg.params.flood));
    params.insert("jobs".into(), cfg.jobs.to_string());
    if let Some(p) = &cfg.cases {
        params.insert("cases".into(), p.clone());
    }
    SuiteReport {
        schema_version: crate::report::SCHEMA_VERSION,
        kind: "conformance".into(),
        target: cfg.target.url(),
        transport: cfg.target.transport().to_string(),
        dialect: cfg.target.dialect.to_string(),
        encrypting_server: cfg.target.encrypting,
        arguments: cfg.arguments.clone(),
        params,
        seed: cfg.seed,
        started_unix_us: started.as_micros() as u64,
        duration_s: t0.elapsed().as_secs_f64(),
        versions: crate::report::env::versions(),
        machine: crate::report::env::machine(),
        summary: SuiteReport::count(&results),
        cases: results,
    }
}

/// The summary table printed after a run.
pub fn summary_text(r: &SuiteReport) -> String {
    let mut s = format!("{} ({}, encrypting server: {})\n", r.target, r.dialect, r.encrypting_server);
    s.push_str(&format!(
        "{:<8} {:<14} {:<8} {:>5} {:>7}  description\n",
        "case", "behaviour", "close", "code", "ms"
    ));
    for c in &r.cases {
        s.push_str(&format!(
            "{:<8} {:<14} {:<8} {:>5} {:>7}  {}\n",
            c.id,
            c.behaviour.as_str(),
            c.behaviour_close,
            c.close_code.map_or("-".into(), |x| x.to_string()),
            c.duration_ms,
            c.description
        ));
    }
    let counts: Vec<String> =
        r.summary.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    s.push_str(&format!("{} cases: {}\n", r.cases.len(), counts.join(", ")));
    s
}

pub fn run(args: Args) -> crate::Result<ExitCode> {
    let target =
        Target::parse(&args.target, args.dialect, args.encrypting_server).map_err(crate::Error::Usage)?;
    crate::probe::probe(&args.target, target.addr())?;
    if args.jobs == 0 {
        return Err(crate::Error::Usage("--jobs must be at least 1".into()));
    }
    let cfg = SuiteConfig {
        target,
        cases: args.cases.clone(),
        params: Params {
            reassembly_timeout: args.reassembly_timeout,
            idle: args.idle,
            settle: args.settle,
            flood: args.flood,
        },
        jobs: args.jobs,
        seed: args.seed,
        arguments: std::env::args().skip(1).collect(),
    };
    let rt = tokio::runtime::Runtime::new().map_err(|e| crate::Error::io("starting the tokio runtime", e))?;
    let report = rt.block_on(run_suite(&cfg));
    if report.cases.is_empty() {
        return Err(crate::Error::Usage(format!("no case matches {:?} on {}", args.cases, report.transport)));
    }
    let out = args.out.clone().unwrap_or_else(|| crate::paths::default_out_dir("conformance", None));
    report.write_dir(&out)?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", summary_text(&report));
        println!("report: {}", out.join(report::INDEX_HTML).display());
    }
    let failed = report.failed();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        let ids: Vec<&str> = failed.iter().map(|c| c.id.as_str()).collect();
        Err(crate::Error::Verdict(format!("{} case(s) FAILED: {}", ids.len(), ids.join(", "))))
    }
}
