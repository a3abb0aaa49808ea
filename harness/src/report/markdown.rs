//! `summary.md`: the report as markdown, a pure function of [`Report`]. It computes nothing: every number
//! printed is a field of `report.json`.

use std::fmt::Write;

use super::schema::{Percentiles, Report, Series, Table};

/// Renders `summary.md`.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = write_report(&mut s, r);
    s
}

/// Settings shown in the report's first table rather than in "Settings".
const HEADER_SETTINGS: [&str; 2] = ["seed", "duration"];

fn write_report(s: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(s, "# {}\n", r.title)?;
    writeln!(s, "**Verdict: {}**", r.verdict.outcome())?;
    if let Some(why) = &r.verdict.behind {
        writeln!(s, "- {why}")?;
    }
    for reason in &r.verdict.reasons {
        writeln!(s, "- {reason}")?;
    }
    if let Some(l) = &r.load {
        writeln!(s, "\nLoad: {}.", l.describe())?;
    }
    writeln!(s)?;
    writeln!(s, "| | |\n|---|---|")?;
    writeln!(s, "| kind | {} |", r.kind)?;
    writeln!(s, "| command | `harness {}` |", r.arguments.join(" "))?;
    writeln!(s, "| seed | {} |", r.seed)?;
    match r.settings.get("duration") {
        Some(asked) => writeln!(s, "| duration | {:.3} s (asked: {}) |", r.duration_s, cell(asked))?,
        None => writeln!(s, "| duration | {:.3} s |", r.duration_s)?,
    }
    let v = &r.versions;
    let git = v.git_describe.as_deref().unwrap_or("unknown");
    writeln!(s, "| versions | harness {} ({}), git {} |", v.harness, v.profile, git)?;
    let m = &r.machine;
    let mem = m.memory_total_bytes.map_or("unknown".to_string(), |b| format!("{} MiB", b / (1024 * 1024)));
    writeln!(
        s,
        "| machine | {} CPUs, {} memory, {} {}, kernel {}, {} |",
        m.cpus,
        mem,
        m.os,
        m.arch,
        m.kernel.as_deref().unwrap_or("unknown"),
        m.cpu_model.as_deref().unwrap_or("unknown CPU")
    )?;
    writeln!(s, "| schema | {} |", r.schema_version)?;
    writeln!(s)?;

    if !r.settings.is_empty() {
        writeln!(s, "## Settings\n\n| setting | value |\n|---|---|")?;
        // Seed and duration are in the table above; a setting is listed once.
        for (k, v) in r.settings.iter().filter(|(k, _)| !HEADER_SETTINGS.contains(&k.as_str())) {
            writeln!(s, "| {k} | {} |", cell(v))?;
        }
        writeln!(s)?;
    }

    if !r.stages.is_empty() {
        writeln!(s, "## Latency per stage (µs)\n")?;
        write!(s, "| stage | side | count |")?;
        for n in Percentiles::NAMES {
            write!(s, " {n} |")?;
        }
        writeln!(s, " mean |")?;
        writeln!(s, "|---|---|---:|{}---:|", "---:|".repeat(Percentiles::NAMES.len()))?;
        for st in &r.stages {
            match &st.histogram {
                Some(h) => {
                    write!(s, "| {} | {} | {} |", st.name, st.side, h.count)?;
                    for n in Percentiles::NAMES {
                        write!(s, " {} |", h.percentiles_us.by_name(n).unwrap_or(0))?;
                    }
                    writeln!(s, " {:.1} |", h.mean_us)?;
                }
                None => {
                    let why = st.absent.as_deref().unwrap_or("no samples");
                    writeln!(
                        s,
                        "| {} | {} | — | absent: {} |{}",
                        st.name,
                        st.side,
                        cell(why),
                        " |".repeat(5)
                    )?;
                }
            }
        }
        writeln!(s)?;
        writeln!(s, "<details><summary>What each stage measures</summary>\n")?;
        for st in &r.stages {
            writeln!(s, "- `{}`: {}", st.name, st.description)?;
        }
        writeln!(s, "\n</details>\n")?;
    }

    if !r.counters.is_empty() {
        writeln!(s, "## Counters\n\n| counter | value |\n|---|---:|")?;
        for (k, v) in &r.counters {
            writeln!(s, "| {k} | {v} |")?;
        }
        writeln!(s)?;
    }
    writeln!(s, "## Errors\n")?;
    if r.errors.is_empty() {
        writeln!(s, "None.\n")?;
    } else {
        writeln!(s, "| kind | count |\n|---|---:|")?;
        for (k, v) in &r.errors {
            writeln!(s, "| {k} | {v} |")?;
        }
        writeln!(s)?;
    }

    if !r.ratios.is_empty() {
        writeln!(s, "## Ratios\n\n| ratio | numerator | denominator | value |\n|---|---:|---:|---:|")?;
        for q in &r.ratios {
            let v = q.value.map_or("—".to_string(), |v| format!("{v:.3}"));
            writeln!(s, "| {} | {} | {} | {} |", q.name, q.numerator, q.denominator, v)?;
        }
        writeln!(s)?;
    }

    for t in &r.tables {
        write_table(s, t)?;
    }

    if !r.series.is_empty() {
        write_series(s, &r.series)?;
    }

    if let Some(svg) = super::html::profile_file(r) {
        writeln!(s, "## CPU profile\n")?;
        let what = "flame graph of every thread of the harness process during the run (open in a browser)";
        writeln!(s, "- `{svg}`: {what}\n")?;
    }
    if !r.notes.is_empty() {
        writeln!(s, "## Notes\n")?;
        for n in &r.notes {
            writeln!(s, "- {n}")?;
        }
        writeln!(s)?;
    }
    if !r.hlog_files.is_empty() {
        writeln!(s, "## Raw records\n")?;
        for f in &r.hlog_files {
            writeln!(s, "- `{f}` (HdrHistogram interval log, µs, one tag per stage)")?;
        }
        writeln!(s)?;
    }
    Ok(())
}

/// Writes a [`Table`] as a markdown table (also used by other subcommands' summaries).
pub fn write_table(s: &mut String, t: &Table) -> std::fmt::Result {
    writeln!(s, "## {}\n", t.title)?;
    writeln!(s, "| {} |", t.columns.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "))?;
    writeln!(s, "|{}", "---|".repeat(t.columns.len().max(1)))?;
    for row in &t.rows {
        writeln!(s, "| {} |", row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "))?;
    }
    writeln!(s)
}

/// One table, time down the rows, one column per series (series sampled on the same ticks share rows).
fn write_series(s: &mut String, series: &[Series]) -> std::fmt::Result {
    writeln!(s, "## Time series\n")?;
    write!(s, "| t (s) |")?;
    for x in series {
        write!(s, " {} ({}) |", x.name, x.unit)?;
    }
    writeln!(s, "\n|---:|{}", "---:|".repeat(series.len()))?;
    let rows = series.iter().map(|x| x.points.len()).max().unwrap_or(0);
    for i in 0..rows {
        let t = series.iter().find_map(|x| x.points.get(i)).map_or(0.0, |p| p.0);
        write!(s, "| {t:.1} |")?;
        for x in series {
            match x.points.get(i) {
                Some(&(_, v)) if v.fract() == 0.0 => write!(s, " {v:.0} |")?,
                Some(&(_, v)) => write!(s, " {v:.1} |")?,
                None => write!(s, " |")?,
            }
        }
        writeln!(s)?;
    }
    writeln!(s)
}

/// A table cell: pipes escaped, newlines flattened.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_setting_is_printed_twice() {
        let mut r = Report::new("soak", "t", vec![], 7);
        r.duration_s = 10.25;
        for (k, v) in [("seed", "7"), ("duration", "10s"), ("clients", "64"), ("fps", "30")] {
            r.settings.insert(k.into(), v.into());
        }
        let md = render(&r);
        for key in ["seed", "duration", "clients", "fps"] {
            let rows = md.lines().filter(|l| l.starts_with(&format!("| {key} |"))).count();
            assert_eq!(rows, 1, "{key} appears in {rows} rows:\n{md}");
        }
        assert!(md.contains("| duration | 10.250 s (asked: 10s) |"), "{md}");
    }
}
