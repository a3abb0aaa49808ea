//! `harness repro`: reproduce each known ascii-chat failure on demand, beside its fix, with a verdict
//! (issue 6; the failures are those of ACIP-SPEC.md sections 6.2, 7 and 8).
//!
//! Every scenario runs the broken configuration (a fault of the reference peers) and the fixed one side
//! by side, measures both and grades each row against what the real bug did. A scenario passes only when
//! the broken side fails the way the bug did *and* the fixed side holds: one that cannot tell them apart
//! fails. Scenarios never return `Err` for a measurement that went wrong; that becomes a failed row, so
//! `harness repro all` always prints every table.
//!
//! | scenario | broken side | fixed side |
//! |---|---|---|
//! | [`fragment`] `fragment-interleave` | two writers share one WebSocket, per-fragment locking | one writer |
//! | [`stall`] `stall` | Nagle + delayed ACK; server `rx_pause` | TCP_NODELAY; no fault |
//! | [`bind`] `bind-flake` | no SO_REUSEADDR; dual-stack `[::]`; READY before listen | the fixes |
//! | [`slots`] `slot-exhaustion` | server `slot_leak` | fixed server |
//! | [`reassembly`] `reassembly-timeout` | 100 ms reassembly timeout | 2 s |
//! | [`teardown`] `teardown-race` | server `stale_callback` (a late receive frees a reused slot by index) | fixed server: invariants hold |
//!
//! Output: one table per scenario on stdout, and `report.json` + `summary.md` (+ `report.html`) written
//! by the shared [`crate::report`] code into `--out` (default `target/harness/repro/<UTC time>-<seed>`).
//! Exit 0 only when every selected scenario gives its expected verdict, 1 otherwise.
//!
//! # Commands and run times
//!
//! Measured on the 2-core CI-like machine (release build, `--seed 42`):
//!
//! ```text
//! cargo run --release -p harness -- repro all                  # 48 s: every scenario, full counts
//! cargo run --release -p harness -- repro fragment-interleave  # 0.1 s (100 frames per side)
//! cargo run --release -p harness -- repro stall                # 30 s (200 round trips x2, 10 s of 30 fps x2)
//! cargo run --release -p harness -- repro bind-flake           # 0.1 s (20 trials per row)
//! cargo run --release -p harness -- repro slot-exhaustion      # 0.7 s (100 sessions per side)
//! cargo run --release -p harness -- repro reassembly-timeout   # 17 s (57 fragments 150 ms apart, x2)
//! cargo run --release -p harness -- repro teardown-race        # 1.2 s (1,000 vanishing clients x2)
//! cargo run -p harness -- repro all --quick                    # ~7 s in a debug build: what `cargo test` checks
//! cargo run --release -p harness -- repro fragment-interleave --target ws://127.0.0.1:27226
//! ```

pub mod bind;
pub mod fragment;
pub mod peer;
pub mod reassembly;
pub mod slots;
pub mod stall;
pub mod teardown;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::report::{Report, Table, Verdict};

/// Arguments of `harness repro`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario to run, or `all`.
    #[arg(value_enum)]
    pub name: Name,
    /// Point the probes at another server (`ws://host:port` or `tcp://host:port`) instead of the in-process
    /// reference server. Used by fragment-interleave, reassembly-timeout and slot-exhaustion; the other
    /// scenarios need to control the server (its faults, its port, its restarts) and ignore it.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Seed of every random choice (teardown-race's client behaviours, WebSocket masks). Default: from
    /// the clock, printed so a failure replays.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Small counts (seconds instead of tens of seconds); what `cargo test` runs.
    #[arg(long)]
    pub quick: bool,
    /// Report directory (default: a new folder under target/harness/repro/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `harness repro NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Name {
    FragmentInterleave,
    Stall,
    BindFlake,
    SlotExhaustion,
    ReassemblyTimeout,
    TeardownRace,
    All,
}

/// One scenario (every [`Name`] but `All`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    FragmentInterleave,
    Stall,
    BindFlake,
    SlotExhaustion,
    ReassemblyTimeout,
    TeardownRace,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::FragmentInterleave,
        Scenario::Stall,
        Scenario::BindFlake,
        Scenario::SlotExhaustion,
        Scenario::ReassemblyTimeout,
        Scenario::TeardownRace,
    ];

    /// The CLI name.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::FragmentInterleave => "fragment-interleave",
            Scenario::Stall => "stall",
            Scenario::BindFlake => "bind-flake",
            Scenario::SlotExhaustion => "slot-exhaustion",
            Scenario::ReassemblyTimeout => "reassembly-timeout",
            Scenario::TeardownRace => "teardown-race",
        }
    }
}

impl Name {
    /// The scenarios this name selects.
    pub fn scenarios(self) -> Vec<Scenario> {
        match self {
            Name::FragmentInterleave => vec![Scenario::FragmentInterleave],
            Name::Stall => vec![Scenario::Stall],
            Name::BindFlake => vec![Scenario::BindFlake],
            Name::SlotExhaustion => vec![Scenario::SlotExhaustion],
            Name::ReassemblyTimeout => vec![Scenario::ReassemblyTimeout],
            Name::TeardownRace => vec![Scenario::TeardownRace],
            Name::All => Scenario::ALL.to_vec(),
        }
    }
}

/// What a scenario run is given.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub quick: bool,
    pub seed: u64,
    /// `--target URL`, for the scenarios that can probe another server.
    pub target: Option<String>,
}

/// One row of a scenario's table: a configuration, what was measured, what the real bug (or its fix)
/// makes us expect, and whether the measurement matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub config: String,
    pub measured: String,
    pub expected: String,
    pub ok: bool,
}

impl Row {
    pub fn new(
        config: impl Into<String>,
        measured: impl Into<String>,
        expected: impl Into<String>,
        ok: bool,
    ) -> Row {
        Row { config: config.into(), measured: measured.into(), expected: expected.into(), ok }
    }

    /// A row for a step that could not be measured at all: always a failure.
    pub fn error(config: impl Into<String>, what: impl std::fmt::Display) -> Row {
        Row::new(config, format!("ERROR: {what}"), "a measurement", false)
    }
}

/// What one scenario measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub rows: Vec<Row>,
    /// Raw figures (also in report.json), keyed `<scenario>.<name>`.
    pub figures: BTreeMap<String, u64>,
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn new(scenario: Scenario) -> Outcome {
        Outcome {
            scenario,
            rows: Vec::new(),
            figures: BTreeMap::new(),
            notes: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Passed: at least one row, and every row as expected.
    pub fn passed(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.ok)
    }

    pub fn row(&mut self, r: Row) {
        self.rows.push(r);
    }

    pub fn figure(&mut self, name: &str, v: u64) {
        self.figures.insert(format!("{}.{name}", self.scenario.name()), v);
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    /// The scenario's table (the same for stdout, report.json and summary.md).
    pub fn table(&self) -> Table {
        Table {
            title: format!(
                "{}: {} ({:.1} s)",
                self.scenario.name(),
                if self.passed() { "PASS" } else { "FAIL" },
                self.elapsed.as_secs_f64()
            ),
            columns: ["configuration", "measured", "expected", "verdict"].map(String::from).to_vec(),
            rows: self
                .rows
                .iter()
                .map(|r| {
                    vec![
                        r.config.clone(),
                        r.measured.clone(),
                        r.expected.clone(),
                        if r.ok { "ok" } else { "FAIL" }.to_string(),
                    ]
                })
                .collect(),
        }
    }
}

/// Runs one scenario. Never fails: a measurement that could not be made is a failed row.
pub async fn run_scenario(s: Scenario, opts: &Options) -> Outcome {
    let t0 = Instant::now();
    let mut o = match s {
        Scenario::FragmentInterleave => fragment::run(opts).await,
        Scenario::Stall => stall::run(opts).await,
        Scenario::BindFlake => bind::run(opts).await,
        Scenario::SlotExhaustion => slots::run(opts).await,
        Scenario::ReassemblyTimeout => reassembly::run(opts).await,
        Scenario::TeardownRace => teardown::run(opts).await,
    };
    o.elapsed = t0.elapsed();
    o
}

/// The scenarios' outcomes as one `report.json` (kind `repro`): a table per scenario, the raw figures
/// as counters, and a verdict listing every failed row.
pub fn build_report(
    outcomes: &[Outcome],
    arguments: Vec<String>,
    opts: &Options,
    started_unix_us: u64,
) -> Report {
    let names: Vec<&str> = outcomes.iter().map(|o| o.scenario.name()).collect();
    let mut r = Report::new("repro", format!("harness repro {}", names.join(", ")), arguments, opts.seed);
    r.started_unix_us = started_unix_us;
    r.duration_s = outcomes.iter().map(|o| o.elapsed.as_secs_f64()).sum();
    r.settings.insert("quick".into(), opts.quick.to_string());
    r.settings.insert("scenarios".into(), names.join(","));
    if let Some(t) = &opts.target {
        r.settings.insert("target".into(), t.clone());
    }
    let mut reasons = Vec::new();
    for o in outcomes {
        r.tables.push(o.table());
        r.counters.extend(o.figures.clone());
        r.counters.insert(format!("{}.passed", o.scenario.name()), u64::from(o.passed()));
        for n in &o.notes {
            r.notes.push(format!("{}: {n}", o.scenario.name()));
        }
        if o.rows.is_empty() {
            reasons.push(format!("{}: nothing measured", o.scenario.name()));
        }
        for row in o.rows.iter().filter(|r| !r.ok) {
            reasons.push(format!(
                "{}: {}: measured {}, expected {}",
                o.scenario.name(),
                row.config,
                row.measured,
                row.expected
            ));
        }
    }
    r.verdict = Verdict::from_reasons(reasons);
    r
}

/// A plain-text rendering of a table for the terminal (columns padded, long cells kept whole).
pub fn render_table(t: &Table) -> String {
    let mut widths: Vec<usize> = t.columns.iter().map(|c| c.chars().count()).collect();
    for row in &t.rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut s = format!("== {}\n", t.title);
    s.push_str(&line(&t.columns));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    s.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in &t.rows {
        s.push_str(&line(row));
    }
    s
}

pub fn run(args: Args) -> crate::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    if let Some(url) = &args.target {
        let t = url
            .parse::<reference_client::Target>()
            .map_err(|e| crate::Error::Usage(format!("--target {url}: {e}")))?;
        crate::probe::probe(url, t.addr())?;
    }
    let opts = Options { quick: args.quick, seed, target: args.target.clone() };
    let out =
        args.out.clone().unwrap_or_else(|| crate::paths::default_out_dir("repro", Some(&seed.to_string())));
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "harness repro: seed {seed} (rerun with --seed {seed}){}",
        if opts.quick { ", quick" } else { "" }
    );
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::io("starting the tokio runtime", e))?;
    let mut outcomes = Vec::new();
    for s in args.name.scenarios() {
        let o = rt.block_on(run_scenario(s, &opts));
        print!("{}", render_table(&o.table()));
        for n in &o.notes {
            println!("   note: {n}");
        }
        println!();
        outcomes.push(o);
    }
    drop(rt);
    let report = build_report(&outcomes, arguments, &opts, started.as_micros() as u64);
    crate::report::write_dir(&out, &report)?;
    println!("report: {}", out.display());
    if report.verdict.passed {
        println!("verdict: PASS ({} scenario(s))", outcomes.len());
        Ok(ExitCode::SUCCESS)
    } else {
        Err(crate::Error::Verdict(format!(
            "{} of {} scenario(s) failed (seed {seed}): {}",
            outcomes.iter().filter(|o| !o.passed()).count(),
            outcomes.len(),
            report.verdict.reasons.join("; ")
        )))
    }
}

/// Longest wait for a server to settle (connections closed, slots released) or to shut down.
pub const SETTLE: Duration = Duration::from_secs(10);

/// The in-process reference server the scenarios start: FEB dialect, plaintext (the faults under test are
/// below the crypto layer, and plaintext keeps raw probes simple), loopback, ephemeral ports, seeded.
pub fn server_config(seed: u64) -> reference_server::ServerConfig {
    reference_server::ServerConfig {
        encrypt: false,
        rng_seed: Some(seed),
        ..reference_server::ServerConfig::loopback()
    }
}

/// Shuts a server down; `false` when it did not finish within `bound` (a task left running).
pub async fn shutdown_within(server: reference_server::ServerHandle, bound: Duration) -> bool {
    tokio::time::timeout(bound, server.shutdown()).await.is_ok()
}

/// Waits (bounded) until the server has no connection and no slot in use; returns whether it did.
pub async fn settle(server: &reference_server::ServerHandle) -> bool {
    server.wait_until(SETTLE, |s| s.connections() == 0 && s.slots_in_use() == 0).await
}

/// Errors by kind as `kind=n, ...` (or `none`).
pub(crate) fn kinds(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".into();
    }
    errors.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// Formats microseconds as milliseconds with one decimal.
pub(crate) fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_without_rows_fails_and_a_failed_row_is_a_reason() {
        let mut o = Outcome::new(Scenario::Stall);
        assert!(!o.passed());
        o.row(Row::new("a", "1", "1", true));
        assert!(o.passed());
        o.row(Row::error("b", "boom"));
        assert!(!o.passed());
        let r = build_report(&[o], vec![], &Options::default(), 0);
        assert!(!r.verdict.passed);
        assert_eq!(r.verdict.reasons.len(), 1);
        assert!(r.verdict.reasons[0].contains("stall: b: measured ERROR: boom"), "{:?}", r.verdict.reasons);
        assert_eq!(r.tables[0].rows[1][3], "FAIL");
        assert!(render_table(&r.tables[0]).contains("| b "));
    }

    #[test]
    fn all_selects_every_scenario_once() {
        assert_eq!(Name::All.scenarios(), Scenario::ALL.to_vec());
        assert_eq!(Name::Stall.scenarios(), vec![Scenario::Stall]);
    }
}
