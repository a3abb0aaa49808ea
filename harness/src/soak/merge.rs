//! `harness report merge`: the report of a whole run from its shards' report directories (`--shard I/N`).
//!
//! HdrHistograms add exactly, so the union is computed, never estimated: the shards' interval logs are
//! summed interval by interval (intervals are matched by their end on the common schedule clock), every
//! stage's totals are the sum of all intervals, counters and errors are added, per-second series are added
//! second by second (percentile series are recomputed from the summed intervals), and the verdict and load
//! assessment are judged again on the union by the same code that judges one run
//! ([`super::assemble`]). Percentiles are never averaged.
//!
//! Before anything is merged the shards must be shown to be one run: soak reports with the same seed and
//! settings, one shard count N, and each shard 0..N-1 present exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::assemble::{self, Records, ServerEnd};
use super::shard::Shard;
use super::Args;
use crate::report::hlog::{self, HlogWriter, Log};
use crate::report::{Report, Series, Table};

/// Name of the merged interval log.
pub const MERGED_HLOG: &str = "stages.hlog";
/// Length of the per-second intervals and series the soak writes (and the merge matches on).
const TICK: Duration = Duration::from_secs(1);
/// Settings that differ between the shards of one run.
const PER_SHARD_SETTINGS: [&str; 1] = ["shard"];

/// One shard's report and raw records.
pub struct ShardInput {
    pub dir: PathBuf,
    pub report: Report,
    pub shard: Shard,
    pub log: Log,
}

/// Reads the shards' report directories and checks that they are one run.
pub fn read_shards(dirs: &[PathBuf]) -> crate::Result<Vec<ShardInput>> {
    if dirs.is_empty() {
        return Err(crate::Error::Usage("report merge: give the shards' report directories".into()));
    }
    let mut shards = Vec::with_capacity(dirs.len());
    for d in dirs {
        let (dir, report) = crate::report::read(d)?;
        let bad = |reason: String| crate::Error::Input { path: dir.display().to_string(), reason };
        if report.kind != "soak" {
            return Err(bad(format!("a {} report, not a soak shard", report.kind)));
        }
        let shard: Shard = report
            .settings
            .get("shard")
            .ok_or_else(|| bad("not a shard: its soak ran without --shard I/N".into()))?
            .parse()
            .map_err(|e: String| bad(format!("setting shard: {e}")))?;
        let hlog_name = report.hlog_files.first().cloned().unwrap_or_else(|| MERGED_HLOG.into());
        let path = dir.join(&hlog_name);
        let log = hlog::read_log(&path)
            .map_err(|reason| crate::Error::Input { path: path.display().to_string(), reason })?;
        shards.push(ShardInput { dir, report, shard, log });
    }
    check_one_run(&shards)?;
    shards.sort_by_key(|s| s.shard.index);
    Ok(shards)
}

/// Same seed, same settings (but the shard), one N, every shard once.
pub fn check_one_run(shards: &[ShardInput]) -> crate::Result<()> {
    let first = &shards[0];
    let usage = |s: String| crate::Error::Usage(format!("report merge: {s}"));
    for s in &shards[1..] {
        if s.report.seed != first.report.seed {
            return Err(usage(format!(
                "not one run: seed {} in {} but {} in {}",
                first.report.seed,
                first.dir.display(),
                s.report.seed,
                s.dir.display()
            )));
        }
        let keys = first.report.settings.keys().chain(s.report.settings.keys());
        for key in keys.filter(|k| !PER_SHARD_SETTINGS.contains(&k.as_str())) {
            let (a, b) = (first.report.settings.get(key), s.report.settings.get(key));
            if a != b {
                let show = |v: Option<&String>| v.map_or("absent".to_string(), |v| format!("{v:?}"));
                return Err(usage(format!(
                    "not one run: setting {key} is {} in {} but {} in {}",
                    show(a),
                    first.dir.display(),
                    show(b),
                    s.dir.display()
                )));
            }
        }
        if s.shard.count != first.shard.count {
            return Err(usage(format!(
                "not one run: {} is shard {} but {} is shard {}",
                first.dir.display(),
                first.shard,
                s.dir.display(),
                s.shard
            )));
        }
    }
    let n = first.shard.count;
    let mut seen: BTreeMap<u32, &Path> = BTreeMap::new();
    for s in shards {
        if let Some(other) = seen.insert(s.shard.index, &s.dir) {
            return Err(usage(format!(
                "shard {} given twice: {} and {}",
                s.shard,
                other.display(),
                s.dir.display()
            )));
        }
    }
    let missing: Vec<String> = (0..n).filter(|i| !seen.contains_key(i)).map(|i| format!("{i}/{n}")).collect();
    if !missing.is_empty() {
        return Err(usage(format!(
            "shard{} {} missing (have {} of {n}); a merge of part of a run would under-count it",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            seen.len()
        )));
    }
    Ok(())
}

/// Where shard `s`'s schedule clock starts: the common start when it had one.
fn origin(s: &ShardInput) -> SystemTime {
    let ms = s.report.settings.get("schedule_start_unix_ms").and_then(|v| v.parse::<u64>().ok());
    match ms {
        Some(ms) => UNIX_EPOCH + Duration::from_millis(ms),
        None => UNIX_EPOCH + Duration::from_micros(s.report.started_unix_us),
    }
}

/// One merged interval: the union of the shards' intervals that end in the same tick.
#[derive(Debug, Clone)]
pub struct MergedInterval {
    pub start: SystemTime,
    pub end: SystemTime,
    pub stages: BTreeMap<String, Histogram<u64>>,
}

/// Sums the shards' intervals tick by tick: an interval belongs to the tick nearest its end on its shard's
/// schedule clock. Returns the intervals by tick, ascending.
pub fn merge_intervals(shards: &[ShardInput]) -> BTreeMap<i64, MergedInterval> {
    let mut out: BTreeMap<i64, MergedInterval> = BTreeMap::new();
    for s in shards {
        let o = origin(s);
        for i in &s.log.intervals {
            let end = i.start + i.length;
            let from_origin = match end.duration_since(o) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            let tick = (from_origin / TICK.as_secs_f64()).round() as i64;
            let m = out.entry(tick).or_insert_with(|| MergedInterval {
                start: i.start,
                end,
                stages: BTreeMap::new(),
            });
            m.start = m.start.min(i.start);
            m.end = m.end.max(end);
            // Both sides auto-resize: adding cannot fail on range.
            let _ = m.stages.entry(i.tag.clone()).or_insert_with(hlog::new_histogram).add(&i.histogram);
        }
    }
    out
}

/// Writes the merged intervals as an interval log whose BaseTime is `base`.
pub fn write_merged_log(
    path: &Path,
    base: SystemTime,
    intervals: &BTreeMap<i64, MergedInterval>,
    comments: &[String],
) -> std::io::Result<()> {
    let mut w = HlogWriter::create(path, base, comments)?;
    for m in intervals.values() {
        let start = m.start.duration_since(base).unwrap_or_default();
        let length = m.end.duration_since(m.start).unwrap_or_default();
        for (tag, h) in &m.stages {
            w.write(tag, start, length, h)?;
        }
    }
    w.finish()
}

/// Adds per-second series point by point (seconds rounded to whole ticks); `µs` series are percentiles and
/// are not added: `end_to_end_p99_cumulative` is recomputed from the merged intervals, others are dropped
/// (named in the returned notes).
fn merge_series(
    shards: &[ShardInput],
    intervals: &BTreeMap<i64, MergedInterval>,
) -> (Vec<Series>, Vec<String>) {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut sums: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut notes = Vec::new();
    for s in shards {
        for series in &s.report.series {
            if !order.iter().any(|(n, _)| n == &series.name) {
                order.push((series.name.clone(), series.unit.clone()));
            }
            if series.unit == "µs" {
                continue;
            }
            let by_tick = sums.entry(series.name.clone()).or_default();
            for &(t, v) in &series.points {
                *by_tick.entry(t.round() as i64).or_default() += v;
            }
        }
    }
    let mut out = Vec::new();
    for (name, unit) in order {
        if unit != "µs" {
            let points =
                sums.remove(&name).unwrap_or_default().into_iter().map(|(t, v)| (t as f64, v)).collect();
            out.push(Series { name, unit, points });
        } else if name == "end_to_end_p99_cumulative" {
            let mut cum = hlog::new_histogram();
            let mut points = Vec::new();
            for (&tick, m) in intervals {
                if let Some(h) = m.stages.get("end_to_end") {
                    let _ = cum.add(h);
                }
                if !cum.is_empty() {
                    points.push((tick as f64, cum.value_at_quantile(0.99) as f64));
                }
            }
            out.push(Series { name, unit, points });
        } else {
            notes.push(format!(
                "series {name} ({unit}) is a percentile per shard and cannot be added: left out"
            ));
        }
    }
    (out, notes)
}

/// The soak arguments of a shard, read back from its command line, as the whole run's (no shard).
fn run_args(s: &ShardInput) -> crate::Result<Args> {
    let argv = std::iter::once("harness".to_string()).chain(s.report.arguments.iter().cloned());
    let bad = |reason: String| crate::Error::Input {
        path: s.dir.join(crate::report::REPORT_JSON).display().to_string(),
        reason,
    };
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(argv)
        .map_err(|e| bad(format!("its command line cannot be read back as a soak's: {}", e.kind())))?;
    match cli.command {
        crate::cli::Command::Soak(mut a) => {
            a.shard = None;
            Ok(a)
        }
        _ => Err(bad("its command line is not a soak's".into())),
    }
}

/// The error kinds and example texts a report's verdict names ("N × error KIND (e.g. TEXT)").
fn error_examples(r: &Report) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for reason in &r.verdict.reasons {
        if let Some((_, rest)) = reason.split_once(" × error ") {
            if let Some((kind, example)) = rest.split_once(" (e.g. ") {
                let example = example.strip_suffix(')').unwrap_or(example);
                out.entry(kind.to_string()).or_default().push(example.to_string());
            }
        }
    }
    out
}

/// Merges shards (already checked by [`read_shards`]) into the report of the whole run and its interval log.
pub fn merge(
    shards: &[ShardInput],
    argv: Vec<String>,
) -> crate::Result<(Report, BTreeMap<i64, MergedInterval>)> {
    let first = &shards[0];
    let args = run_args(first)?;
    let n = first.shard.count;
    let intervals = merge_intervals(shards);

    // Totals: every interval of every shard.
    let mut totals: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for m in intervals.values() {
        for (tag, h) in &m.stages {
            let _ = totals.entry(tag.clone()).or_insert_with(hlog::new_histogram).add(h);
        }
    }
    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut examples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut server_failure = None;
    for s in shards {
        for (k, v) in &s.report.counters {
            *counters.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &s.report.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in error_examples(&s.report) {
            examples.entry(k).or_default().extend(v.into_iter().take(1));
        }
        if server_failure.is_none() {
            server_failure = s
                .report
                .verdict
                .reasons
                .iter()
                .find_map(|r| r.strip_prefix("the server failed: ").map(str::to_string));
        }
    }
    let get = |k: &str| counters.get(k).copied().unwrap_or(0);
    let has_server = shards.iter().all(|s| s.report.counters.contains_key("frames_received"));
    let server = has_server.then(|| {
        let mut k = acip::stats::Counters {
            frames_received: get("frames_received"),
            frames_corrupt: get("frames_corrupt"),
            frames_lost: get("frames_lost"),
            frames_reordered: get("frames_reordered"),
            connections_opened: get("server_connections_opened"),
            bytes_rx: get("server_bytes_received"),
            ..acip::stats::Counters::default()
        };
        for (name, v) in &counters {
            if let Some(reason) = name.strip_prefix("server_drops_") {
                k.drops.insert(reason.to_string(), *v);
            }
        }
        ServerEnd { counters: k, slots_in_use: get("slots_in_use_end"), failure: server_failure.clone() }
    });
    let (series, series_notes) = merge_series(shards, &intervals);
    let duration_s = shards.iter().map(|s| s.report.duration_s).fold(0.0, f64::max);
    let records = Records {
        duration: Duration::from_secs_f64(duration_s),
        totals,
        baseline: None,
        frames_sent: get("frames_sent"),
        frames_unsent: get("frames_unsent"),
        sent_in_schedule: get("frames_sent_in_schedule"),
        ascii_frames: get("ascii_frames_received"),
        reconnects: get("reconnects"),
        recoveries: get("reconnects_after_failure"),
        errors,
        error_examples: examples,
        client_reports: Vec::new(),
        server,
        series,
        peak_rss_bytes: counters.get("peak_rss_bytes").copied(),
    };

    let mut report = Report::new(
        "soak",
        format!("{} (merged from {n} shards)", super::driver::title(&args)),
        argv,
        first.report.seed,
    );
    report.settings = first.report.settings.clone();
    report.settings.remove("shard");
    report.settings.insert("shards".into(), n.to_string());
    // Flame graphs are per process: the merged report links none, and says where each shard's is.
    if report.settings.remove(crate::report::html::PROFILE_SETTING).is_some() {
        let dirs: Vec<String> =
            shards.iter().map(|s| s.dir.join("flamegraph.svg").display().to_string()).collect();
        report.notes.push(format!("CPU profiles are per shard, not merged: {}", dirs.join(", ")));
    }
    report.started_unix_us = shards.iter().map(|s| s.report.started_unix_us).min().unwrap_or_default();
    report.hlog_files.push(MERGED_HLOG.into());
    report.notes.push(format!(
        "merged from {n} shards by `harness report merge`: histograms summed interval by interval, counters \
         and per-second series added, verdict judged on the union; peak_rss_bytes is the sum of each shard's \
         peak"
    ));
    if !shards.iter().all(|s| s.report.settings.contains_key("schedule_start_unix_ms")) {
        report.notes.push(
            "the shards had no common start (--start-at or --wait-start): their intervals are matched on each \
             shard's own clock"
                .into(),
        );
    }
    report.notes.extend(series_notes);
    for s in shards {
        for note in &s.report.notes {
            let n = format!("shard {}: {note}", s.shard);
            if !report.notes.iter().any(|x| x.ends_with(note.as_str())) {
                report.notes.push(n);
            }
        }
    }
    report.tables.push(Table {
        title: "Shards".into(),
        columns: ["shard", "report", "clients", "frames sent", "verdict", "duration (s)"]
            .map(String::from)
            .to_vec(),
        rows: shards
            .iter()
            .map(|s| {
                vec![
                    s.shard.to_string(),
                    s.dir.display().to_string(),
                    s.report.counters.get("clients").map_or("-".into(), u64::to_string),
                    s.report.counters.get("frames_sent").map_or("-".into(), u64::to_string),
                    s.report.verdict.outcome().to_string(),
                    format!("{:.3}", s.report.duration_s),
                ]
            })
            .collect(),
    });
    let mut report = assemble::assemble(report, records, &args);
    // The sums are the union's counters; assemble recomputed those it judges from the same sums.
    for (k, v) in counters {
        report.counters.insert(k, v);
    }
    report.duration_s = duration_s;
    report.notes.dedup();
    Ok((report, intervals))
}

/// `harness report merge DIR... --out DIR`.
pub fn run(dirs: &[PathBuf], out: &Path, json: bool) -> crate::Result<std::process::ExitCode> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let shards = read_shards(dirs)?;
    let (report, intervals) = merge(&shards, argv)?;
    std::fs::create_dir_all(out).map_err(|e| crate::Error::io(format!("creating {}", out.display()), e))?;
    let base = shards.iter().map(|s| s.log.base).min().unwrap_or(UNIX_EPOCH);
    let comment = format!("harness report merge of {} shards, seed {}", shards.len(), report.seed);
    write_merged_log(&out.join(MERGED_HLOG), base, &intervals, &[comment])
        .map_err(|e| crate::Error::io(format!("writing {}", out.join(MERGED_HLOG).display()), e))?;
    crate::report::write_dir(out, &report)?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", super::console_summary(&report));
        println!("{}: merged report in {}", report.verdict.outcome(), out.display());
    }
    if report.verdict.passed && report.verdict.behind.is_none() {
        Ok(std::process::ExitCode::SUCCESS)
    } else if report.verdict.passed {
        Err(crate::Error::Behind(format!(
            "merged soak BEHIND (report in {}): {}",
            out.display(),
            report.verdict.behind.clone().unwrap_or_default()
        )))
    } else {
        Err(crate::Error::Verdict(format!(
            "merged soak FAILED (report in {}): {}",
            out.display(),
            report.verdict.reasons.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START_MS: u64 = 1_700_000_000_000;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// A shard report with the settings of one run; `log` written to and read back from a real file.
    fn shard(dir: &Path, index: u32, count: u32, seed: u64, values: &[(u64, &str, u64)]) -> ShardInput {
        let mut report = Report::new("soak", "t", vec![], seed);
        report.settings.insert("fps".into(), "30".into());
        report.settings.insert("shard".into(), format!("{index}/{count}"));
        report.settings.insert("schedule_start_unix_ms".into(), START_MS.to_string());
        let sdir = dir.join(format!("shard-{index}-{seed}"));
        std::fs::create_dir_all(&sdir).unwrap();
        let path = sdir.join(MERGED_HLOG);
        // Each shard's log starts at its own (earlier, different) instant; its ticks are on the common clock.
        let base = at(START_MS - 300 - 10 * u64::from(index));
        let mut w = HlogWriter::create(&path, base, &[]).unwrap();
        let mut by_tick: BTreeMap<(u64, &str), Histogram<u64>> = BTreeMap::new();
        for &(tick, tag, v) in values {
            by_tick.entry((tick, tag)).or_insert_with(hlog::new_histogram).record(v).unwrap();
        }
        for ((tick, tag), h) in &by_tick {
            let end = at(START_MS + tick * 1000);
            let start = if *tick == 1 { base } else { at(START_MS + (tick - 1) * 1000) };
            w.write(tag, start.duration_since(base).unwrap(), end.duration_since(start).unwrap(), h).unwrap();
        }
        w.finish().unwrap();
        ShardInput { dir: sdir, report, shard: Shard { index, count }, log: hlog::read_log(&path).unwrap() }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("merge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Two shards' logs merged equal the log of all their values written as one run: per interval and per
    /// stage the same histograms (HdrHistograms add exactly).
    #[test]
    fn merging_two_logs_equals_the_log_of_all_values() {
        let dir = temp("exact");
        let a: Vec<(u64, &str, u64)> = (0..500)
            .map(|v| (1 + v % 3, if v % 2 == 0 { "end_to_end" } else { "send_lag" }, 100 + v * 37))
            .collect();
        let b: Vec<(u64, &str, u64)> = (0..300).map(|v| (1 + v % 4, "end_to_end", 5_000 + v * v)).collect();
        let shards = vec![shard(&dir, 0, 2, 7, &a), shard(&dir, 1, 2, 7, &b)];
        check_one_run(&shards).unwrap();
        let merged = merge_intervals(&shards);
        let path = dir.join("merged.hlog");
        write_merged_log(&path, at(START_MS - 310), &merged, &[]).unwrap();
        let got = hlog::read_log(&path).unwrap();

        let all: Vec<(u64, &str, u64)> = a.iter().chain(&b).copied().collect();
        let whole = shard(&dir, 0, 1, 7, &all);
        let key = |l: &Log| -> BTreeMap<(u64, String), Histogram<u64>> {
            l.intervals
                .iter()
                .map(|i| {
                    let end = (i.start + i.length).duration_since(at(START_MS)).unwrap().as_millis() as u64;
                    ((end / 1000, i.tag.clone()), i.histogram.clone())
                })
                .collect()
        };
        assert_eq!(key(&got), key(&whole.log));
        assert_eq!(key(&got).len(), 4 + 3, "4 ticks of end_to_end, 3 of send_lag");
        // And every merged interval's length covers its shards' intervals.
        assert!(got.intervals.iter().all(|i| i.length >= Duration::from_millis(1000)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shards_of_different_runs_and_missing_or_repeated_shards_are_refused() {
        let dir = temp("refuse");
        let v = [(1, "end_to_end", 10)];
        let err = |s: Vec<ShardInput>| check_one_run(&s).unwrap_err().to_string();
        let e = err(vec![shard(&dir, 0, 3, 1, &v), shard(&dir, 2, 3, 1, &v)]);
        assert!(e.contains("shard 1/3 missing (have 2 of 3)"), "{e}");
        let e = err(vec![shard(&dir, 0, 2, 1, &v), shard(&dir, 0, 2, 1, &v), shard(&dir, 1, 2, 1, &v)]);
        assert!(e.contains("shard 0/2 given twice"), "{e}");
        let e = err(vec![shard(&dir, 0, 2, 1, &v), shard(&dir, 1, 2, 2, &v)]);
        assert!(e.contains("seed 1 in") && e.contains("but 2 in"), "{e}");
        let e = err(vec![shard(&dir, 0, 2, 1, &v), shard(&dir, 1, 3, 1, &v)]);
        assert!(e.contains("is shard 1/3"), "{e}");
        let mut other = shard(&dir, 1, 2, 1, &v);
        other.report.settings.insert("fps".into(), "15".into());
        let e = err(vec![shard(&dir, 0, 2, 1, &v), other]);
        assert!(e.contains("setting fps is \"30\"") && e.contains("but \"15\""), "{e}");
        let mut late = shard(&dir, 1, 2, 1, &v);
        late.report.settings.insert("schedule_start_unix_ms".into(), "1".into());
        assert!(err(vec![shard(&dir, 0, 2, 1, &v), late]).contains("schedule_start_unix_ms"));
        check_one_run(&[shard(&dir, 1, 2, 1, &v), shard(&dir, 0, 2, 1, &v)]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn per_second_series_add_and_percentile_series_are_recomputed() {
        let dir = temp("series");
        let mut a = shard(&dir, 0, 2, 1, &[(1, "end_to_end", 100), (2, "end_to_end", 100)]);
        let mut b = shard(&dir, 1, 2, 1, &[(1, "end_to_end", 9_000), (2, "end_to_end", 9_000)]);
        for (s, fps) in [(&mut a, 10.0), (&mut b, 20.0)] {
            s.report.series.push(Series {
                name: "fps_sent".into(),
                unit: "frames/s".into(),
                points: vec![(1.0, fps), (2.1, fps)],
            });
            s.report.series.push(Series {
                name: "end_to_end_p99_cumulative".into(),
                unit: "µs".into(),
                points: vec![(1.0, 1.0)],
            });
            s.report.series.push(Series {
                name: "other_p50".into(),
                unit: "µs".into(),
                points: vec![(1.0, 1.0)],
            });
        }
        let shards = vec![a, b];
        let (series, notes) = merge_series(&shards, &merge_intervals(&shards));
        assert_eq!(series[0].points, vec![(1.0, 30.0), (2.0, 30.0)]);
        let p99 = &series[1];
        assert_eq!(p99.name, "end_to_end_p99_cumulative");
        assert_eq!(p99.points.len(), 2);
        assert!((8_990.0..=9_010.0).contains(&p99.points[0].1), "{:?}", p99.points);
        assert_eq!(series.len(), 2);
        assert!(notes[0].contains("other_p50"), "{notes:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
