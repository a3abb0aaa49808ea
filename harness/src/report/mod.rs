//! Reports: the `report.json` schema every measuring subcommand writes, its renderings (`summary.md`,
//! a self-contained `report.html`), HdrHistogram interval logs, and `harness report render|compare`.
//!
//! Measuring code builds a [`Report`] (plus `.hlog` raw records through [`hlog::IntervalRecorder`]) and
//! calls [`write_dir`]; everything else is a pure function of `report.json` (STYLE.md 23-24), so
//! `harness report render DIR` reproduces the same HTML and markdown without measuring again. Other
//! subcommands (repro, conformance) use the same types: put scenario tables in [`Report::tables`].

pub mod cases;
pub mod compare;
pub mod env;
pub mod hlog;
pub mod html;
pub mod markdown;
pub mod schema;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use schema::{
    HistogramSummary, Load, Machine, Percentiles, Ratio, Report, Series, StageReport, Table, Verdict,
    Versions, SCHEMA_VERSION,
};

/// File names inside a report directory.
pub const REPORT_JSON: &str = "report.json";
pub const SUMMARY_MD: &str = "summary.md";
pub const REPORT_HTML: &str = "report.html";

/// Arguments of `harness report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Re-render report.html and summary.md from DIR/report.json (no measuring).
    #[command(after_help = "Examples:\n  harness report render target/harness/soak/20261203T120000Z-1")]
    Render {
        /// A report directory (or a report.json file).
        dir: PathBuf,
    },
    /// Compare two reports: per-stage, per-percentile deltas; exit 1 on a regression.
    #[command(after_help = "Examples:
  harness report compare reports/baseline/soak-ws-16 target/new --max-regression p99=10%
  harness report compare base new --max-regression end_to_end.p99.9=25% --noise-floor 200 --json")]
    Compare {
        /// The baseline report (directory or report.json).
        base: PathBuf,
        /// The new report (directory or report.json).
        new: PathBuf,
        /// `[STAGE.]PERCENTILE=N%`, repeatable (e.g. `p99=10%`, `end_to_end.p99.9=25%`). Percentiles:
        /// p50, p90, p99, p99.9, p99.99, max. Without any, deltas are shown and only the new run's own
        /// verdict can fail the comparison.
        #[arg(long = "max-regression", value_name = "[STAGE.]P=N%")]
        max_regression: Vec<compare::Threshold>,
        /// Increases of at most this many microseconds are noise, never regressions.
        #[arg(long, default_value_t = DEFAULT_NOISE_FLOOR_US, value_name = "MICROS")]
        noise_floor: u64,
        /// Print the comparison as JSON instead of a markdown table.
        #[arg(long)]
        json: bool,
        /// Compare even when a report's load generator fell behind its schedule (verdict BEHIND), whose
        /// latencies measure the harness rather than the server.
        #[arg(long)]
        allow_behind: bool,
    },
    /// Merge the report directories of a sharded soak (`harness soak --shard I/N`) into one report of
    /// the whole run: histograms summed interval by interval, counters and series added, verdict on the
    /// union. Refuses shards of different runs, a missing shard and a shard given twice.
    #[command(after_help = "Examples:
  harness report merge shard-0 shard-1 shard-2 shard-3 --out merged
  harness report merge /reports/shard-* --out /reports/merged --json")]
    Merge {
        /// The shards' report directories (every shard 0..N-1 once, any order).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Directory of the merged report (report.json, stages.hlog, summary.md, report.html).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Print the merged report.json on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Merges a sharded soak's reports (`report merge`): given by the caller, so that the report module does
/// not depend on the soak whose verdict it re-judges.
pub type MergeFn = fn(&[PathBuf], &Path, bool) -> crate::Result<ExitCode>;

/// The default absolute noise floor of `compare` (see README, "Regression thresholds").
pub const DEFAULT_NOISE_FLOOR_US: u64 = 200;

pub fn run(args: Args, merge: MergeFn) -> crate::Result<ExitCode> {
    match args.command {
        Command::Merge { dirs, out, json } => merge(&dirs, &out, json),
        Command::Render { dir } => {
            let (dir, report) = read(&dir)?;
            render_dir(&dir, &report)?;
            println!("rendered {} and {}", dir.join(REPORT_HTML).display(), dir.join(SUMMARY_MD).display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare { base, new, max_regression, noise_floor, json, allow_behind } => {
            let (_, b) = read(&base)?;
            let (_, n) = read(&new)?;
            if !allow_behind {
                refuse_behind(&base, &b)?;
                refuse_behind(&new, &n)?;
            }
            let cfg = compare::CompareConfig { thresholds: max_regression, noise_floor_us: noise_floor };
            let c = compare::compare(&b, &n, &cfg);
            if json {
                println!("{}", comparison_json(&c));
            } else {
                print!(
                    "{}",
                    compare::render_markdown(&c, &base.display().to_string(), &new.display().to_string())
                );
            }
            if c.passed() {
                Ok(ExitCode::SUCCESS)
            } else {
                Err(crate::Error::Verdict(format!("regression: {}", c.regressions.join("; "))))
            }
        }
    }
}

/// A run whose load generator fell behind is no basis for a comparison (unless `--allow-behind`).
fn refuse_behind(path: &std::path::Path, r: &Report) -> crate::Result<()> {
    let why = r.verdict.behind.as_ref().or_else(|| r.load.as_ref().and_then(|l| l.behind.as_ref()));
    match why {
        Some(why) => Err(crate::Error::Behind(format!(
            "{} is a run whose load generator fell behind ({why}): its latencies measure the harness; \
             compare with --allow-behind to do it anyway",
            path.display()
        ))),
        None => Ok(()),
    }
}

fn comparison_json(c: &compare::Comparison) -> String {
    let deltas: Vec<_> = c
        .deltas
        .iter()
        .map(|d| {
            serde_json::json!({
                "stage": d.stage, "percentile": d.percentile, "base_us": d.base_us, "new_us": d.new_us,
                "change": d.change, "limit": d.limit, "judged": d.judged, "regression": d.regression,
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "passed": c.passed(), "regressions": c.regressions, "notes": c.notes, "deltas": deltas,
    }))
    .expect("json values serialise")
}

/// Reads a report from a directory (its report.json) or a report.json path.
pub fn read(path: &Path) -> crate::Result<(PathBuf, Report)> {
    let (dir, file) = if path.is_dir() {
        (path.to_path_buf(), path.join(REPORT_JSON))
    } else {
        (path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf), path.to_path_buf())
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| crate::Error::Input { path: file.display().to_string(), reason: e.to_string() })?;
    let report = Report::from_json(&text)
        .map_err(|reason| crate::Error::Input { path: file.display().to_string(), reason })?;
    Ok((dir, report))
}

/// Writes report.json, summary.md and report.html into `dir` (created if needed).
pub fn write_dir(dir: &Path, report: &Report) -> crate::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(format!("creating {}", dir.display()), e))?;
    write_file(&dir.join(REPORT_JSON), &report.to_json())?;
    render_dir(dir, report)
}

/// Writes the renderings (summary.md, report.html) of `report` into `dir`.
pub fn render_dir(dir: &Path, report: &Report) -> crate::Result<()> {
    write_file(&dir.join(SUMMARY_MD), &markdown::render(report))?;
    write_file(&dir.join(REPORT_HTML), &html::render(report))
}

fn write_file(path: &Path, text: &str) -> crate::Result<()> {
    std::fs::write(path, text).map_err(|e| crate::Error::io(format!("writing {}", path.display()), e))
}
