//! The versioned `report.json` schema shared by every harness subcommand that measures (soak, repro,
//! conformance). Measurement fills a [`Report`] from raw records; everything a reader sees (HTML, markdown,
//! compare) is a pure function of this type (STYLE.md 23-24), so a report can be re-rendered or compared
//! long after the run without measuring again.
//!
//! All latencies are whole microseconds. Fields that a given run cannot know are `None` or absent from
//! the maps, and [`StageReport::absent`] says why a stage has no samples.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Bumped whenever a field changes meaning or is removed (adding optional fields keeps the version).
pub const SCHEMA_VERSION: u32 = 1;

/// One run's report: `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// The subcommand that produced it: `soak`, `repro`, `conformance`, ...
    pub kind: String,
    /// A one-line title for humans.
    pub title: String,
    /// The command line, as given (argv without the program name).
    pub arguments: Vec<String>,
    /// The parsed settings that shaped the run (key → value), e.g. clients, fps, transport.
    pub settings: BTreeMap<String, String>,
    /// The seed of every random choice in the run; rerunning with `--seed` repeats them.
    pub seed: u64,
    /// Wall-clock start, UNIX microseconds.
    pub started_unix_us: u64,
    /// Measured duration in seconds (from the first scheduled send to the end of the drain).
    pub duration_s: f64,
    pub versions: Versions,
    pub machine: Machine,
    /// Per-stage latency distributions, in a stable order.
    pub stages: Vec<StageReport>,
    /// Event counters (frames sent, received, lost, ...), keyed by stable names.
    pub counters: BTreeMap<String, u64>,
    /// Errors by kind; every error counted, none silent.
    pub errors: BTreeMap<String, u64>,
    /// Time series (frames per second, memory, ...), one point per sampling interval.
    pub series: Vec<Series>,
    /// Derived ratios written at measurement time (e.g. the overhead of a layer over raw TCP).
    #[serde(default)]
    pub ratios: Vec<Ratio>,
    /// Free-form tables (a repro scenario's configurations, a conformance catalogue, ...).
    #[serde(default)]
    pub tables: Vec<Table>,
    /// Remarks a reader needs (e.g. "external target: server stages absent").
    #[serde(default)]
    pub notes: Vec<String>,
    /// Names of the HdrHistogram interval logs written beside the report, if any.
    #[serde(default)]
    pub hlog_files: Vec<String>,
    /// Soak: the requested and the achieved load (absent in other reports and in older soak reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<Load>,
    pub verdict: Verdict,
}

/// What a soak asked of its load generator and what it achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Frames per second per client, as asked (`--fps`).
    pub requested_fps: f64,
    /// Frames per second per client actually sent within the schedule.
    pub achieved_fps: f64,
    /// ASCII_FRAMEs per second reaching one client (from the `ascii_interval` p50), if measured.
    pub ascii_fps: Option<f64>,
    pub send_lag_p99_us: Option<u64>,
    /// The limits of "kept its schedule".
    pub fps_ratio_limit: f64,
    pub lag_p99_limit_us: u64,
    /// Which limit was crossed, if one was.
    pub behind: Option<String>,
}

impl Load {
    /// `achieved 28.70 of 30 fps per client (95.7 %); ASCII delivered 29.9 fps per client`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "achieved {:.2} of {} fps per client ({:.1} %)",
            self.achieved_fps,
            self.requested_fps,
            100.0 * self.achieved_fps / self.requested_fps.max(f64::MIN_POSITIVE)
        );
        if let Some(a) = self.ascii_fps {
            s.push_str(&format!("; ASCII frames reached each client at {a:.1} fps (p50 interval)"));
        }
        s
    }
}

pub use super::env::{Machine, Versions};

/// One stage's distribution, or the reason it has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// Stable name (e.g. `end_to_end`, `server_assembly`); compare and the hlog tags key on it.
    pub name: String,
    /// Who measures it: `client`, `server`, `end_to_end`, `baseline`.
    pub side: String,
    /// One line saying what is measured between which two instants.
    pub description: String,
    /// `None` when the stage has no samples; then `absent` says why.
    pub histogram: Option<HistogramSummary>,
    pub absent: Option<String>,
}

/// Percentiles and the percentile distribution of one histogram (µs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub stdev_us: f64,
    pub percentiles_us: Percentiles,
    /// (percentile in [0, 100], value µs) points for the percentile-distribution plot, percentile
    /// ascending, up to the maximum (100).
    pub distribution: Vec<(f64, u64)>,
}

/// The named percentiles every report carries; `compare` thresholds use these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    #[serde(rename = "p99.9")]
    pub p99_9: u64,
    #[serde(rename = "p99.99")]
    pub p99_99: u64,
    pub max: u64,
}

impl Percentiles {
    /// The names, in ascending order, as they appear in JSON and on the command line.
    pub const NAMES: [&'static str; 6] = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];

    pub fn by_name(&self, name: &str) -> Option<u64> {
        Some(match name {
            "p50" => self.p50,
            "p90" => self.p90,
            "p99" => self.p99,
            "p99.9" => self.p99_9,
            "p99.99" => self.p99_99,
            "max" => self.max,
            _ => return None,
        })
    }
}

/// Percentiles at which the distribution plot is sampled: 1 - 10^(-k/4) for k = 0..=20 (0 % to
/// 99.999 %), which spaces the points evenly on the usual log "1/(1-p)" axis, then the maximum.
pub fn distribution_percentiles() -> impl Iterator<Item = f64> {
    (0..=20).map(|k| 100.0 * (1.0 - 10f64.powf(-(k as f64) / 4.0))).chain(std::iter::once(100.0))
}

impl HistogramSummary {
    /// Summarises a histogram of microseconds; `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let q = |p: f64| h.value_at_quantile(p);
        Some(HistogramSummary {
            count: h.len(),
            min_us: h.min(),
            mean_us: round3(h.mean()),
            stdev_us: round3(h.stdev()),
            percentiles_us: Percentiles {
                p50: q(0.50),
                p90: q(0.90),
                p99: q(0.99),
                p99_9: q(0.999),
                p99_99: q(0.9999),
                max: h.max(),
            },
            distribution: distribution_percentiles()
                .map(|p| (round3(p), if p >= 100.0 { h.max() } else { h.value_at_percentile(p) }))
                .collect(),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One time series: `points` are (seconds since the start of the run, value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Stable name, e.g. `fps_received`, `rss_bytes`.
    pub name: String,
    /// Unit for axis labels, e.g. `frames/s`, `bytes`.
    pub unit: String,
    pub points: Vec<(f64, f64)>,
}

/// A ratio computed while measuring, e.g. ACIP end-to-end p50 over raw-TCP p50.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub name: String,
    pub numerator: f64,
    pub denominator: f64,
    /// numerator / denominator (absent when the denominator is 0).
    pub value: Option<f64>,
}

impl Ratio {
    pub fn new(name: impl Into<String>, numerator: f64, denominator: f64) -> Self {
        let value = (denominator != 0.0).then(|| round3(numerator / denominator));
        Ratio { name: name.into(), numerator, denominator, value }
    }
}

/// A plain table, rendered as-is by markdown and HTML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Pass or fail, with every reason for a failure.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub passed: bool,
    pub reasons: Vec<String>,
    /// Soak: the load generator fell behind its schedule (which limit was crossed). Such a run measures
    /// the harness, not the server: its verdict is BEHIND unless `--allow-behind`, and `report compare`
    /// refuses it unless told to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<String>,
}

impl Verdict {
    pub fn from_reasons(reasons: Vec<String>) -> Self {
        Verdict { passed: reasons.is_empty(), reasons, behind: None }
    }

    /// `PASS`, `FAIL` or `BEHIND` (a failure outranks falling behind).
    pub fn outcome(&self) -> &'static str {
        match (self.passed, &self.behind) {
            (false, _) => "FAIL",
            (true, Some(_)) => "BEHIND",
            (true, None) => "PASS",
        }
    }
}

impl Report {
    /// An empty report of `kind` with the environment filled in; callers add stages, counters, series.
    pub fn new(kind: &str, title: impl Into<String>, arguments: Vec<String>, seed: u64) -> Self {
        Report {
            schema_version: SCHEMA_VERSION,
            kind: kind.to_string(),
            title: title.into(),
            arguments,
            settings: BTreeMap::new(),
            seed,
            started_unix_us: 0,
            duration_s: 0.0,
            versions: super::env::versions(),
            machine: super::env::machine(),
            stages: Vec::new(),
            counters: BTreeMap::new(),
            errors: BTreeMap::new(),
            series: Vec::new(),
            ratios: Vec::new(),
            tables: Vec::new(),
            notes: Vec::new(),
            hlog_files: Vec::new(),
            load: None,
            verdict: Verdict { passed: true, reasons: Vec::new(), behind: None },
        }
    }

    /// The stage called `name`, if reported.
    pub fn stage(&self, name: &str) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The series called `name`, if reported.
    pub fn series(&self, name: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.name == name)
    }

    /// Parses `report.json`, refusing a schema version this build does not know.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match v.get("schema_version").and_then(|s| s.as_u64()) {
            Some(n) if n == u64::from(SCHEMA_VERSION) => {}
            Some(n) => return Err(format!("schema_version {n}, this harness reads {SCHEMA_VERSION}")),
            None => return Err("no schema_version: not a harness report".into()),
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises (no non-string map keys)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_known_histogram() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let s = HistogramSummary::of(&h).unwrap();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1);
        assert!((4995..=5005).contains(&s.percentiles_us.p50), "{:?}", s.percentiles_us);
        assert!((9895..=9905).contains(&s.percentiles_us.p99), "{:?}", s.percentiles_us);
        assert_eq!(s.percentiles_us.by_name("max"), Some(h.max()));
        assert_eq!(s.percentiles_us.by_name("p42"), None);
        assert_eq!(s.distribution.first().unwrap().0, 0.0);
        assert_eq!(s.distribution.last().unwrap(), &(100.0, h.max()));
        assert!(s.distribution.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert!(HistogramSummary::of(&Histogram::<u64>::new(3).unwrap()).is_none());
    }

    #[test]
    fn json_round_trip_and_version_check() {
        let mut r = Report::new("soak", "t", vec!["--clients".into(), "2".into()], 7);
        r.ratios.push(Ratio::new("x", 3.0, 2.0));
        r.ratios.push(Ratio::new("zero", 3.0, 0.0));
        let json = r.to_json();
        assert!(json.contains("\"p99.9\"") || r.stages.is_empty());
        assert_eq!(Report::from_json(&json).unwrap(), r);
        assert_eq!(r.ratios[0].value, Some(1.5));
        assert_eq!(r.ratios[1].value, None);
        let newer = json.replacen("\"schema_version\": 1", "\"schema_version\": 99", 1);
        assert!(Report::from_json(&newer).unwrap_err().contains("schema_version 99"));
        assert!(Report::from_json("{}").unwrap_err().contains("not a harness report"));
        assert!(Report::from_json("not json").is_err());
    }
}
