//! The report of `harness check`, in the shared report code: `index.json` (a [`Report`] of kind `check`),
//! `index.html` and `summary.md`; JUnit XML for CI dashboards; and the comparison with an earlier check.
//! Pure functions of the [`CheckRun`] (and the baseline's report).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::{Args, CheckRun, Verdict};
use crate::report::{Report, Table, Verdict as ReportVerdict};

pub const INDEX_JSON: &str = "index.json";
pub const INDEX_HTML: &str = "index.html";
pub const SUMMARY_MD: &str = "summary.md";
/// Title of the table with one row per unit (the baseline comparison reads it back).
pub const UNITS_TABLE: &str = "Units";
const UNIT_COLUMNS: [&str; 7] = ["suite", "unit", "verdict", "detail", "ms", "server", "description"];

/// Builds the report; `baseline` is an earlier check's report.
pub fn build(run: &CheckRun, args: &Args, argv: Vec<String>, baseline: Option<&Report>) -> Report {
    let title = format!(
        "check: {} against {}",
        args.server,
        args.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
    );
    let mut r = Report::new("check", title, argv, args.seed);
    r.duration_s = (run.elapsed.as_secs_f64() * 1000.0).round() / 1000.0;
    r.started_unix_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
        .saturating_sub(run.elapsed.as_micros() as u64);
    r.settings.insert("server".into(), args.server.clone());
    r.settings
        .insert("targets".into(), args.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(","));
    r.settings.insert("suites".into(), args.suites.iter().map(|s| s.name()).collect::<Vec<_>>().join(","));
    r.settings.insert("dialect".into(), args.dialect.to_string());
    r.settings.insert("encrypting_server".into(), args.encrypting_server.to_string());
    r.settings.insert("jobs".into(), args.jobs.to_string());
    r.settings.insert("rerun_crashers".into(), args.rerun_crashers.to_string());
    if let Some(c) = &args.cases {
        r.settings.insert("cases".into(), c.clone());
    }

    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for u in &run.results {
        *counts.entry(u.verdict.as_str()).or_default() += 1;
    }
    r.counters.insert("units".into(), run.results.len() as u64);
    for v in [Verdict::Pass, Verdict::Fail, Verdict::Crash, Verdict::Hang, Verdict::NotRun] {
        r.counters.insert(
            v.as_str().to_lowercase().replace(' ', "_"),
            counts.get(v.as_str()).copied().unwrap_or(0),
        );
    }
    r.counters.insert("server_starts".into(), run.generations.iter().map(|g| g.0).max().unwrap_or(0).into());
    r.counters.insert("findings".into(), run.findings.len() as u64);

    r.tables.push(Table {
        title: UNITS_TABLE.into(),
        columns: UNIT_COLUMNS.map(String::from).to_vec(),
        rows: run
            .results
            .iter()
            .map(|u| {
                vec![
                    u.suite.name().to_string(),
                    u.id.clone(),
                    u.verdict.as_str().to_string(),
                    u.detail.clone(),
                    u.duration.as_millis().to_string(),
                    u.server_generation.to_string(),
                    u.description.clone(),
                ]
            })
            .collect(),
    });
    let crashes: Vec<_> = run.results.iter().filter_map(|u| u.crash.as_ref().map(|c| (u, c))).collect();
    if !crashes.is_empty() {
        r.tables.push(Table {
            title: "Crashes".into(),
            columns: ["unit", "server ended", "reproduced alone", "crash report", "crashing thread"]
                .map(String::from)
                .to_vec(),
            rows: crashes
                .iter()
                .map(|(u, c)| {
                    vec![
                        format!("{} {}", u.suite.name(), u.id),
                        c.how.clone(),
                        match c.reruns {
                            Some((k, n)) => format!("crashed {k}/{n}"),
                            None if c.isolated => "isolated by a rerun alone".into(),
                            None => "not rerun (--rerun-crashers N)".into(),
                        },
                        c.report_dir.join("crash.md").display().to_string(),
                        c.backtrace.join("\n"),
                        u.wire.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect(),
        });
    }
    let hangs: Vec<_> = run.results.iter().filter(|u| u.verdict == Verdict::Hang).collect();
    if !hangs.is_empty() {
        r.tables.push(Table {
            title: "Hangs".into(),
            columns: ["unit", "detail", "stack snapshot"].map(String::from).to_vec(),
            rows: hangs
                .iter()
                .map(|u| {
                    vec![
                        format!("{} {}", u.suite.name(), u.id),
                        u.detail.clone(),
                        u.hang_snapshot
                            .as_ref()
                            .map_or("none (the supervisor could not take one)".into(), |p| {
                                p.display().to_string()
                            }),
                    ]
                })
                .collect(),
        });
    }
    if !run.findings.is_empty() {
        r.tables.push(Table {
            title: "Findings".into(),
            columns: ["finding", "detail"].map(String::from).to_vec(),
            rows: run.findings.iter().map(|f| vec![f.what.clone(), f.detail.clone()]).collect(),
        });
    }
    r.tables.push(Table {
        title: "Server starts".into(),
        columns: ["start", "how it ended"].map(String::from).to_vec(),
        rows: run.generations.iter().map(|(g, how)| vec![g.to_string(), how.clone()]).collect(),
    });
    let logs: Vec<Vec<String>> = run
        .results
        .iter()
        .filter(|u| u.verdict != Verdict::Pass)
        .flat_map(|u| u.log.iter().map(move |l| vec![format!("{} {}", u.suite.name(), u.id), l.clone()]))
        .collect();
    if !logs.is_empty() {
        r.tables.push(Table {
            title: "Server log while each unit that did not pass ran".into(),
            columns: ["unit", "line"].map(String::from).to_vec(),
            rows: logs,
        });
    }

    let mut reasons: Vec<String> = run
        .results
        .iter()
        .filter(|u| !matches!(u.verdict, Verdict::Pass | Verdict::NotRun))
        .map(|u| format!("{} {} {}: {}", u.suite.name(), u.id, u.verdict.as_str(), u.detail))
        .collect();
    reasons.extend(run.findings.iter().map(|f| format!("{}: {}", f.what, f.detail)));
    reasons.extend(
        run.results
            .iter()
            .filter(|u| u.verdict == Verdict::NotRun)
            .map(|u| format!("{} {} NOT RUN: {}", u.suite.name(), u.id, u.detail)),
    );
    if let Some(b) = baseline {
        let cmp = compare(b, &r);
        if !cmp.new_problems.is_empty() || !cmp.fixed.is_empty() {
            r.tables.push(Table {
                title: "Against the baseline".into(),
                columns: ["unit", "baseline", "now"].map(String::from).to_vec(),
                rows: cmp.new_problems.iter().chain(&cmp.fixed).cloned().collect(),
            });
        }
        r.notes.push(format!(
            "baseline: {} new problem(s), {} fixed; the verdict fails only on new problems",
            cmp.new_problems.len(),
            cmp.fixed.len()
        ));
        // With a baseline, known problems are context, not failures.
        reasons = cmp
            .new_problems
            .iter()
            .map(|row| format!("new: {} {} (was {})", row[0], row[2], row[1]))
            .collect();
    }
    r.notes.push(
        "a crash is attributed to the unit in flight when the server died (or, with --jobs > 1, to the one that \
         crashes when rerun alone); a hang is a server that does not answer a connection and, for WebSocket \
         targets, the upgrade, within --hang-timeout"
            .into(),
    );
    r.verdict = ReportVerdict::from_reasons(reasons);
    r
}

/// What changed since a baseline: rows `[unit, baseline verdict, new verdict]`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub new_problems: Vec<Vec<String>>,
    pub fixed: Vec<Vec<String>>,
}

fn verdicts(r: &Report) -> BTreeMap<String, String> {
    r.tables
        .iter()
        .filter(|t| t.title == UNITS_TABLE)
        .flat_map(|t| t.rows.iter())
        .filter(|row| row.len() >= 3)
        .map(|row| (format!("{} {}", row[0], row[1]), row[2].clone()))
        .collect()
}

/// Compares two checks unit by unit: a unit that passed (or was absent) and now fails, crashes or hangs is
/// new; one that failed and now passes is fixed.
pub fn compare(base: &Report, new: &Report) -> Comparison {
    let (b, n) = (verdicts(base), verdicts(new));
    let bad = |v: &str| matches!(Verdict::parse(v), Some(Verdict::Fail | Verdict::Crash | Verdict::Hang));
    let mut c = Comparison::default();
    for (unit, now) in &n {
        let was = b.get(unit).map_or("absent", String::as_str);
        if bad(now) && (!bad(was) || (was != now && *now == "CRASH")) {
            c.new_problems.push(vec![unit.clone(), was.to_string(), now.clone()]);
        } else if bad(was) && now == "PASS" {
            c.fixed.push(vec![unit.clone(), was.to_string(), now.clone()]);
        }
    }
    c
}

/// Reads an earlier check's report (a directory with index.json, or the file).
pub fn read_baseline(path: &Path) -> crate::Result<Report> {
    let file = if path.is_dir() { path.join(INDEX_JSON) } else { path.to_path_buf() };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| crate::Error::Input { path: file.display().to_string(), reason: e.to_string() })?;
    let r = Report::from_json(&text)
        .map_err(|reason| crate::Error::Input { path: file.display().to_string(), reason })?;
    if r.kind != "check" {
        return Err(crate::Error::Input {
            path: file.display().to_string(),
            reason: format!("a {} report, not a check", r.kind),
        });
    }
    Ok(r)
}

/// Writes index.json, index.html and summary.md.
pub fn write(dir: &Path, r: &Report) -> crate::Result<()> {
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| crate::Error::io(format!("writing {}", p.display()), e))
    };
    w(INDEX_JSON, r.to_json())?;
    w(SUMMARY_MD, crate::report::markdown::render(r))?;
    w(INDEX_HTML, crate::report::html::render(r))
}

/// The lines printed after a run.
pub fn console(run: &CheckRun) -> String {
    let mut s = String::new();
    for u in &run.results {
        if u.verdict != Verdict::Pass {
            let _ = writeln!(s, "{:<8} {:<12} {:<24} {}", u.verdict.as_str(), u.suite.name(), u.id, u.detail);
            if let Some(c) = &u.crash {
                for l in c.backtrace.iter().take(6) {
                    let _ = writeln!(s, "           {l}");
                }
                if let Some((k, n)) = c.reruns {
                    let _ = writeln!(s, "           reproduced alone: crashed {k}/{n}");
                }
            }
        }
    }
    for f in &run.findings {
        let _ = writeln!(s, "FINDING  {}: {}", f.what, f.detail);
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &run.results {
        *counts.entry(u.verdict.as_str()).or_default() += 1;
    }
    let _ = writeln!(
        s,
        "{} units in {:.1} s: {}; {} server start(s)",
        run.results.len(),
        run.elapsed.as_secs_f64(),
        counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        run.generations.iter().map(|g| g.0).max().unwrap_or(0)
    );
    s
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // Characters XML 1.0 cannot hold at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                o.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML (the Ant/Surefire form CI tools read): one `testsuite` per suite, one `testcase` per unit;
/// FAIL is a `failure`, CRASH and HANG are `error`s with the backtrace, NOT RUN is `skipped`.
pub fn junit(run: &CheckRun, server: &str) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total = |v: Verdict| run.results.iter().filter(|u| u.verdict == v).count();
    let _ = writeln!(
        x,
        "<testsuites name=\"harness check\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        run.results.len(),
        total(Verdict::Fail),
        total(Verdict::Crash) + total(Verdict::Hang),
        total(Verdict::NotRun),
        run.elapsed.as_secs_f64()
    );
    let mut suites: Vec<_> = run.results.iter().map(|u| u.suite).collect();
    suites.dedup();
    for suite in suites {
        let units: Vec<_> = run.results.iter().filter(|u| u.suite == suite).collect();
        let count = |v: Verdict| units.iter().filter(|u| u.verdict == v).count();
        let time: f64 = units.iter().map(|u| u.duration.as_secs_f64()).sum();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{time:.3}\">",
            suite.name(),
            units.len(),
            count(Verdict::Fail),
            count(Verdict::Crash) + count(Verdict::Hang),
            count(Verdict::NotRun)
        );
        let _ = writeln!(
            x,
            "    <properties><property name=\"server\" value=\"{}\"/></properties>",
            xml_escape(server)
        );
        for u in units {
            let _ = write!(
                x,
                "    <testcase classname=\"check.{}\" name=\"{}\" time=\"{:.3}\"",
                suite.name(),
                xml_escape(&u.id),
                u.duration.as_secs_f64()
            );
            let body = match u.verdict {
                Verdict::Pass => None,
                Verdict::Fail => {
                    Some(format!("<failure message=\"{}\" type=\"FAIL\"/>", xml_escape(&u.detail)))
                }
                Verdict::Crash | Verdict::Hang => {
                    let mut text = u.detail.clone();
                    if let Some(c) = &u.crash {
                        text.push('\n');
                        text.push_str(&c.backtrace.join("\n"));
                        text.push_str(&format!(
                            "\ncrash report: {}",
                            c.report_dir.join("crash.md").display()
                        ));
                    }
                    Some(format!(
                        "<error message=\"{}\" type=\"{}\">{}</error>",
                        xml_escape(&u.detail),
                        u.verdict.as_str(),
                        xml_escape(&text)
                    ))
                }
                Verdict::NotRun => Some(format!("<skipped message=\"{}\"/>", xml_escape(&u.detail))),
            };
            match body {
                None => x.push_str("/>\n"),
                Some(b) => {
                    let log = if u.log.is_empty() {
                        String::new()
                    } else {
                        format!("<system-out>{}</system-out>", xml_escape(&u.log.join("\n")))
                    };
                    let _ = writeln!(x, ">{b}{log}</testcase>");
                }
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_units(rows: &[(&str, &str)]) -> Report {
        let mut r = Report::new("check", "t", vec![], 1);
        r.tables.push(Table {
            title: UNITS_TABLE.into(),
            columns: UNIT_COLUMNS.map(String::from).to_vec(),
            rows: rows
                .iter()
                .map(|(id, v)| vec!["conformance".into(), id.to_string(), v.to_string()])
                .collect(),
        });
        r
    }

    #[test]
    fn a_baseline_comparison_names_new_problems_and_fixes() {
        let base = with_units(&[("1.1", "PASS"), ("1.2", "FAIL"), ("1.3", "FAIL"), ("1.4", "PASS")]);
        let new = with_units(&[
            ("1.1", "CRASH"),
            ("1.2", "PASS"),
            ("1.3", "CRASH"),
            ("1.4", "PASS"),
            ("1.5", "HANG"),
        ]);
        let c = compare(&base, &new);
        let ids = |rows: &[Vec<String>]| rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&c.new_problems), ["conformance 1.1", "conformance 1.3", "conformance 1.5"]);
        assert_eq!(c.new_problems[2][1], "absent");
        assert_eq!(ids(&c.fixed), ["conformance 1.2"]);
        assert_eq!(compare(&new, &new), Comparison::default());
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml_escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;\\x01");
    }
}
