//! `harness report`: compare verdicts on crafted reports, re-rendering from report.json, and the
//! summary.md format (insta snapshot of a crafted report, so every number is fixed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::report::compare::{compare, CompareConfig, Threshold};
use harness::report::hlog::new_histogram;
use harness::report::{
    self, HistogramSummary, Machine, Ratio, Report, Series, StageReport, Table, Verdict, Versions,
};

/// A report with fixed environment fields and one end-to-end stage whose samples are 1..=n µs scaled by
/// `scale` (so p99 ≈ 0.99 · n · scale).
pub fn crafted(scale: f64) -> Report {
    let mut r = Report::new("soak", "crafted soak", vec!["soak".into(), "--clients".into(), "2".into()], 42);
    r.versions =
        Versions { harness: "0.1.0".into(), git_describe: Some("abc1234".into()), profile: "release".into() };
    r.machine = Machine {
        cpus: 2,
        memory_total_bytes: Some(4 << 30),
        kernel: Some("6.1.0".into()),
        cpu_model: Some("Test CPU".into()),
        os: "linux".into(),
        arch: "x86_64".into(),
    };
    r.started_unix_us = 1_700_000_000_000_000;
    r.duration_s = 2.0;
    r.settings = BTreeMap::from([("clients".into(), "2".into()), ("transport".into(), "ws".into())]);
    let mut h = new_histogram();
    for v in 1..=10_000u64 {
        h.record((v as f64 * scale) as u64).unwrap();
    }
    let mut small = new_histogram();
    for v in 1..=100u64 {
        small.record((v as f64 * scale) as u64 + 1).unwrap();
    }
    r.stages = vec![
        StageReport {
            name: "end_to_end".into(),
            side: "end_to_end".into(),
            description: "intended send time to the server's handler".into(),
            histogram: HistogramSummary::of(&h),
            absent: None,
        },
        StageReport {
            name: "client_build".into(),
            side: "client".into(),
            description: "building one IMAGE_FRAME".into(),
            histogram: HistogramSummary::of(&small),
            absent: None,
        },
        StageReport {
            name: "server_decrypt".into(),
            side: "server".into(),
            description: "decrypting one packet".into(),
            histogram: None,
            absent: Some("plaintext run".into()),
        },
    ];
    r.counters = BTreeMap::from([("frames_sent".into(), 120), ("frames_received".into(), 120)]);
    r.series = vec![
        Series {
            name: "fps_received".into(),
            unit: "frames/s".into(),
            points: vec![(1.0, 60.0), (2.0, 60.0)],
        },
        Series {
            name: "rss_bytes".into(),
            unit: "bytes".into(),
            points: vec![(1.0, 1048576.0), (2.0, 2097152.0)],
        },
    ];
    r.ratios = vec![Ratio::new("end_to_end p50 / raw-tcp p50", 500.0, 100.0)];
    r.tables = vec![Table {
        title: "Extra".into(),
        columns: vec!["a".into(), "b".into()],
        rows: vec![vec!["1".into(), "x|y".into()]],
    }];
    r.notes = vec!["crafted for tests".into()];
    r.hlog_files = vec!["stages.hlog".into()];
    r.verdict = Verdict::from_reasons(vec![]);
    r
}

fn cfg(thresholds: &[&str], floor: u64) -> CompareConfig {
    CompareConfig {
        thresholds: thresholds.iter().map(|t| t.parse::<Threshold>().unwrap()).collect(),
        noise_floor_us: floor,
    }
}

#[test]
fn compare_identical_reports_passes() {
    let c = compare(&crafted(1.0), &crafted(1.0), &cfg(&["p99=10%", "max=0%"], 0));
    assert!(c.passed(), "{:?}", c.regressions);
    assert!(c.deltas.iter().all(|d| d.change == Some(0.0)));
    // Both present stages × 6 percentiles; the absent stage yields no rows.
    assert_eq!(c.deltas.len(), 12);
}

#[test]
fn compare_flags_a_p99_regression_beyond_the_limit() {
    let c = compare(&crafted(1.0), &crafted(1.2), &cfg(&["p99=10%"], 0));
    assert!(!c.passed());
    assert!(c.regressions.iter().any(|r| r.starts_with("end_to_end p99:")), "{:?}", c.regressions);
    let d = c.deltas.iter().find(|d| d.stage == "end_to_end" && d.percentile == "p99").unwrap();
    assert!(d.regression && (d.change.unwrap() - 0.2).abs() < 0.01, "{d:?}");
    // Percentiles without a limit are reported but never fail.
    assert!(c.deltas.iter().filter(|d| d.percentile == "p50").all(|d| !d.regression));
}

#[test]
fn compare_tolerates_changes_within_the_limit_or_the_noise_floor() {
    assert!(compare(&crafted(1.0), &crafted(1.05), &cfg(&["p99=10%"], 0)).passed());
    // +20 % on a ~10 ms p99 is ~2,000 µs: inside a 5,000 µs noise floor.
    assert!(compare(&crafted(1.0), &crafted(1.2), &cfg(&["p99=10%"], 5_000)).passed());
    // Getting faster is never a regression.
    assert!(compare(&crafted(1.0), &crafted(0.5), &cfg(&["p99=0%", "max=0%"], 0)).passed());
}

#[test]
fn compare_stage_specific_limits_override_general_ones() {
    let c = compare(&crafted(1.0), &crafted(1.2), &cfg(&["p99=10%", "end_to_end.p99=30%"], 0));
    // end_to_end is allowed +30 %; client_build (+~20 % on ~100 µs) still trips the general 10 %.
    assert!(c.regressions.iter().all(|r| !r.starts_with("end_to_end")), "{:?}", c.regressions);
    assert!(c.regressions.iter().any(|r| r.starts_with("client_build p99")), "{:?}", c.regressions);
}

#[test]
fn compare_fails_when_the_new_run_failed_and_notes_differences() {
    let mut new = crafted(1.0);
    new.verdict = Verdict::from_reasons(vec!["3 frames lost".into()]);
    new.settings.insert("clients".into(), "64".into());
    new.versions.profile = "debug".into();
    new.stages.retain(|s| s.name != "client_build");
    let c = compare(&crafted(1.0), &new, &cfg(&[], 0));
    assert!(!c.passed());
    assert!(c.regressions[0].contains("3 frames lost"));
    let notes = c.notes.join("\n");
    assert!(notes.contains("setting clients differs: 2 vs 64"), "{notes}");
    assert!(notes.contains("build profiles differ"), "{notes}");
    assert!(notes.contains("stage client_build is only in the base report"), "{notes}");
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harness-it-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn harness(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_harness")).args(args).output().expect("run harness")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn compare_command_exits_1_on_regression_and_0_otherwise() {
    let dir = temp_dir("cmp");
    let (a, b) = (dir.join("a"), dir.join("b"));
    report::write_dir(&a, &crafted(1.0)).unwrap();
    report::write_dir(&b, &crafted(1.5)).unwrap();

    let out = harness(&["report", "compare", path(&a), path(&b), "--max-regression", "p99=10%"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("| end_to_end | p99 |") && stdout.contains("REGRESSION"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("regression: end_to_end p99"));

    let out = harness(&[
        "report",
        "compare",
        path(&a),
        path(&a.join("report.json")),
        "--max-regression",
        "p99=10%",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    let out = harness(&["report", "compare", path(&a), path(&b), "--max-regression", "p99=10"]);
    assert_eq!(out.status.code(), Some(2), "a malformed threshold is a usage error");
    let out = harness(&["report", "compare", path(&a), path(&dir.join("missing"))]);
    assert_eq!(out.status.code(), Some(3), "a missing report is an input error");

    let out = harness(&["report", "compare", path(&a), path(&b), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true, "no thresholds: only deltas");
    assert!(v["deltas"].as_array().unwrap().len() >= 12);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn render_reproduces_the_same_files_from_report_json() {
    let dir = temp_dir("render");
    report::write_dir(&dir, &crafted(1.0)).unwrap();
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    std::fs::remove_file(dir.join("summary.md")).unwrap();
    std::fs::write(dir.join("report.html"), "stale").unwrap();

    let out = harness(&["report", "render", path(&dir)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("summary.md")).unwrap(), md);
    assert_eq!(std::fs::read_to_string(dir.join("report.html")).unwrap(), html);

    // Self-contained: inline SVG, no scripts, no external references.
    assert!(html.contains("<svg") && html.contains("<polyline"));
    assert!(!html.contains("<script"));
    assert_eq!(html.matches("http://").count(), html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());
    assert!(!html.contains("src=") && !html.contains("<link"));
    assert!(html.contains("absent: plaintext run"));

    std::fs::write(dir.join("report.json"), "{\"schema_version\": 999}").unwrap();
    let out = harness(&["report", "render", path(&dir)]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("schema_version 999"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn summary_markdown_snapshot() {
    insta::assert_snapshot!("crafted_summary_md", report::markdown::render(&crafted(1.0)));
}

/// Reads an interval log with the Python `hdrh` package (an independent port of the reference
/// HdrHistogram) and prints, per tag, the merged count and every recorded bucket as JSON.
const HDRH_READER: &str = r#"
import json, sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 3600 * 10**6, 3))
tags = {}
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    tag = h.get_tag()
    if tag not in tags:
        tags[tag] = HdrHistogram(1, 3600 * 10**6, 3)
    tags[tag].add(h)
out = {}
for tag, h in tags.items():
    buckets = [[i.value_iterated_to, i.count_at_value_iterated_to] for i in h.get_recorded_iterator()]
    out[tag] = {"count": h.get_total_count(), "buckets": buckets}
print(json.dumps(out))
"#;

/// The committed baseline's `stages.hlog`, decoded by another implementation than ours, holds exactly
/// the histograms whose percentiles `report.json` states: every stage's count, p50, p90, p99 and max.
/// Skipped (with the reason printed) where python3 or its `hdrhistogram` package is missing; `.ci/run`
/// installs it.
#[test]
fn baseline_hlog_is_read_by_an_independent_hdrhistogram_implementation() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/baseline/soak-ws-16");
    let out = match Command::new("python3").arg("-c").arg(HDRH_READER).arg(dir.join("stages.hlog")).output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("skipped: python3 hdrh reader failed: {}", String::from_utf8_lossy(&o.stderr));
            return;
        }
        Err(e) => {
            eprintln!("skipped: no python3 ({e})");
            return;
        }
    };
    let decoded: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("the reader prints JSON");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let mut checked = 0;
    for stage in report["stages"].as_array().expect("stages") {
        let h = &stage["histogram"];
        if h.is_null() {
            continue;
        }
        let name = stage["name"].as_str().unwrap();
        let tag = decoded.get(name).unwrap_or_else(|| panic!("stage {name} is not in stages.hlog"));
        let count = tag["count"].as_u64().unwrap();
        assert_eq!(count, h["count"].as_u64().unwrap(), "{name}: count");
        let buckets: Vec<(u64, u64)> = tag["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b[0].as_u64().unwrap(), b[1].as_u64().unwrap()))
            .collect();
        // The value at rank ceil(q * count), the rule of the report (and of the Rust hdrhistogram crate).
        let at = |q: f64| {
            let rank = ((q * count as f64).ceil() as u64).max(1);
            let mut seen = 0;
            buckets.iter().find(|(_, n)| {
                seen += n;
                seen >= rank
            })
        };
        let p = &h["percentiles_us"];
        for (key, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
            let ours = p[key].as_u64().unwrap();
            let theirs = at(q).expect("a bucket at every rank").0;
            assert_eq!(theirs, ours, "{name} {key}");
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} stages checked");
}
