//! `harness report compare BASE NEW`: per-stage, per-percentile deltas between two reports, and a
//! verdict against regression thresholds. A pure function of two [`Report`]s.
//!
//! A threshold `p99=10%` says: in every stage present in both reports, the new p99 may exceed the
//! base p99 by at most 10 %. `end_to_end.p99=10%` limits one stage only (a stage-specific threshold
//! overrides the general one for that percentile). Because tiny latencies are noisy in relative terms
//! (a 20 µs stage moving to 26 µs is +30 % and meaningless), an increase is a regression only if it
//! also exceeds the absolute noise floor (`--noise-floor`, in µs).

use std::fmt::Write;

use super::schema::{Percentiles, Report};

/// One `[STAGE.]PERCENTILE=N%` limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// `None`: every stage.
    pub stage: Option<String>,
    /// One of [`Percentiles::NAMES`].
    pub percentile: String,
    /// Allowed relative increase, e.g. 0.10 for 10 %.
    pub max_increase: f64,
}

impl std::str::FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, pct) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected [STAGE.]PERCENTILE=N%"))?;
        let pct = pct.trim().strip_suffix('%').ok_or_else(|| format!("{s:?}: the limit needs a % sign"))?;
        let max_increase: f64 = pct.parse().map_err(|_| format!("{s:?}: {pct:?} is not a number"))?;
        if !(0.0..=100_000.0).contains(&max_increase) {
            return Err(format!("{s:?}: the limit must be between 0% and 100000%"));
        }
        // The percentile is the part after the last '.' that names one, so "p99.9" and "stage.p99.9" parse.
        let (stage, percentile) = Percentiles::NAMES
            .iter()
            .rev()
            .find_map(|&n| {
                if key == n {
                    Some((None, n))
                } else {
                    key.strip_suffix(n)
                        .and_then(|st| st.strip_suffix('.'))
                        .map(|st| (Some(st.to_string()), n))
                }
            })
            .ok_or_else(|| format!("{s:?}: unknown percentile (one of {})", Percentiles::NAMES.join(", ")))?;
        Ok(Threshold { stage, percentile: percentile.to_string(), max_increase: max_increase / 100.0 })
    }
}

/// Options of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareConfig {
    pub thresholds: Vec<Threshold>,
    /// Increases smaller than this many µs never count as regressions.
    pub noise_floor_us: u64,
}

/// One stage × percentile line of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub stage: String,
    pub percentile: String,
    pub base_us: u64,
    pub new_us: u64,
    /// (new - base) / base; `None` when base is 0.
    pub change: Option<f64>,
    /// The limit that applied, if any.
    pub limit: Option<f64>,
    /// Whether both reports had enough samples to judge this percentile ([`enough_samples`]).
    pub judged: bool,
    pub regression: bool,
}

/// The result of comparing two reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Comparison {
    pub deltas: Vec<Delta>,
    /// Why the comparison fails (empty: it passes).
    pub regressions: Vec<String>,
    /// Things a reader should know (differing builds, stages only in one report, ...).
    pub notes: Vec<String>,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.regressions.is_empty()
    }
}

/// Compares `new` against `base`.
pub fn compare(base: &Report, new: &Report, cfg: &CompareConfig) -> Comparison {
    let mut c = Comparison::default();
    if base.kind != new.kind {
        c.notes.push(format!("comparing a {} report with a {} report", base.kind, new.kind));
    }
    if base.versions.profile != new.versions.profile {
        c.notes.push(format!(
            "build profiles differ ({} vs {}): latencies are not comparable",
            base.versions.profile, new.versions.profile
        ));
    }
    // `target` is left out: an embedded server's ephemeral port differs on every run.
    for key in
        ["clients", "transport", "frame", "fps", "encrypt", "dialect", "ws_fragment", "churn", "server"]
    {
        let (b, n) = (base.settings.get(key), new.settings.get(key));
        if b != n {
            c.notes.push(format!(
                "setting {key} differs: {} vs {}",
                b.map_or("-", |s| s.as_str()),
                n.map_or("-", |s| s.as_str())
            ));
        }
    }
    if !new.verdict.passed {
        c.regressions.push(format!("the new run itself failed: {}", new.verdict.reasons.join("; ")));
    }
    for t in &cfg.thresholds {
        if let Some(st) = &t.stage {
            if base.stage(st).is_none() && new.stage(st).is_none() {
                c.notes.push(format!("threshold names stage {st}, which neither report has"));
            }
        }
    }

    for bs in &base.stages {
        let Some(ns) = new.stage(&bs.name) else {
            c.notes.push(format!("stage {} is only in the base report", bs.name));
            continue;
        };
        let (Some(bh), Some(nh)) = (&bs.histogram, &ns.histogram) else {
            if bs.histogram.is_some() != ns.histogram.is_some() {
                c.notes.push(format!("stage {} has samples in only one report", bs.name));
            }
            continue;
        };
        for p in Percentiles::NAMES {
            let (b, n) =
                (bh.percentiles_us.by_name(p).unwrap_or(0), nh.percentiles_us.by_name(p).unwrap_or(0));
            let change = (b != 0).then(|| (n as f64 - b as f64) / b as f64);
            let limit = limit_for(&cfg.thresholds, &bs.name, p);
            let over_floor = n.saturating_sub(b) > cfg.noise_floor_us;
            let enough = enough_samples(p, bh.count.min(nh.count));
            let regression = enough
                && match (limit, change) {
                    (Some(l), Some(ch)) => ch > l && over_floor,
                    (Some(_), None) => over_floor,
                    (None, _) => false,
                };
            if regression {
                c.regressions.push(format!(
                    "{} {p}: {b} µs → {n} µs ({}), limit +{:.1}%",
                    bs.name,
                    fmt_change(change),
                    limit.unwrap_or(0.0) * 100.0
                ));
            }
            c.deltas.push(Delta {
                stage: bs.name.clone(),
                percentile: p.to_string(),
                base_us: b,
                new_us: n,
                change,
                limit,
                judged: enough,
                regression,
            });
        }
    }
    for ns in &new.stages {
        if base.stage(&ns.name).is_none() {
            c.notes.push(format!("stage {} is only in the new report", ns.name));
        }
    }
    c
}

/// Whether `count` samples say anything about `percentile`: at least 1 / (1 - q) of them, so that one
/// sample lies beyond it (p99 needs 100, p99.9 needs 1,000). A p99 of 16 handshakes is its maximum, and
/// judging it would turn noise into regressions. `max` is judged whenever it was asked for.
pub fn enough_samples(percentile: &str, count: u64) -> bool {
    let q: f64 = match percentile {
        "p50" => 0.5,
        "p90" => 0.9,
        "p99" => 0.99,
        "p99.9" => 0.999,
        "p99.99" => 0.9999,
        _ => return count > 0,
    };
    count as f64 >= (1.0 / (1.0 - q)).round()
}

/// The most specific limit for `stage` at `percentile`.
fn limit_for(thresholds: &[Threshold], stage: &str, percentile: &str) -> Option<f64> {
    let matching = thresholds.iter().filter(|t| t.percentile == percentile);
    let specific =
        matching.clone().filter(|t| t.stage.as_deref() == Some(stage)).map(|t| t.max_increase).next_back();
    specific.or_else(|| matching.filter(|t| t.stage.is_none()).map(|t| t.max_increase).next_back())
}

fn fmt_change(change: Option<f64>) -> String {
    change.map_or("new".to_string(), |c| format!("{:+.1}%", c * 100.0))
}

/// The comparison as a markdown table plus notes and the verdict.
pub fn render_markdown(c: &Comparison, base_name: &str, new_name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Compare\n\nbase: `{base_name}`  \nnew: `{new_name}`\n");
    let _ = writeln!(
        s,
        "| stage | percentile | base µs | new µs | change | limit | |\n|---|---|---:|---:|---:|---:|---|"
    );
    for d in &c.deltas {
        let limit = d.limit.map_or(String::new(), |l| format!("+{:.1}%", l * 100.0));
        let mark = match (d.regression, d.limit.is_some() && !d.judged) {
            (true, _) => "REGRESSION",
            (false, true) => "too few samples to judge",
            _ => "",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {limit} | {mark} |",
            d.stage,
            d.percentile,
            d.base_us,
            d.new_us,
            fmt_change(d.change)
        );
    }
    if !c.notes.is_empty() {
        let _ = writeln!(s, "\nNotes:");
        for n in &c.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    if c.passed() {
        let _ = writeln!(s, "\nVerdict: PASS (no regression beyond the limits)");
    } else {
        let _ = writeln!(s, "\nVerdict: FAIL");
        for r in &c.regressions {
            let _ = writeln!(s, "- {r}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thresholds() {
        let t: Threshold = "p99=10%".parse().unwrap();
        assert_eq!(t, Threshold { stage: None, percentile: "p99".into(), max_increase: 0.10 });
        let t: Threshold = "end_to_end.p99.9=25%".parse().unwrap();
        assert_eq!((t.stage.as_deref(), t.percentile.as_str()), (Some("end_to_end"), "p99.9"));
        let t: Threshold = "p99.99=5.5%".parse().unwrap();
        assert_eq!((t.stage, t.percentile.as_str(), t.max_increase), (None, "p99.99", 0.055));
        assert!("max=0%".parse::<Threshold>().is_ok());
        for bad in ["p99", "p99=10", "p42=10%", "p99=x%", "p99=-1%", "x.p98=1%"] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad}");
        }
    }

    #[test]
    fn specific_limits_override_general_ones() {
        let ts: Vec<Threshold> =
            ["p99=10%", "end_to_end.p99=50%"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(limit_for(&ts, "end_to_end", "p99"), Some(0.5));
        assert_eq!(limit_for(&ts, "client_build", "p99"), Some(0.1));
        assert_eq!(limit_for(&ts, "client_build", "p50"), None);
    }

    #[test]
    fn few_samples_are_not_judged() {
        assert!(enough_samples("p50", 2) && !enough_samples("p50", 1));
        assert!(enough_samples("p99", 100) && !enough_samples("p99", 99));
        assert!(!enough_samples("p99.9", 999) && enough_samples("p99.99", 10_000));
        assert!(enough_samples("max", 1) && !enough_samples("max", 0));
    }
}
