//! `report.html`: a self-contained page (inline CSS and SVG, no scripts, no network) over one
//! [`Report`]. It is a static template: every number shown is a field of `report.json`; the only
//! arithmetic here maps those values to plot coordinates.
//!
//! Percentile-distribution plots use the usual HdrHistogram x axis, log10(1 / (1 - percentile)), so
//! 90 %, 99 %, 99.9 % ... are evenly spaced and the tail is visible.

use std::fmt::Write;

use super::schema::{Percentiles, Report, Series, StageReport, Table};

const W: f64 = 560.0;
const H: f64 = 220.0;
const PAD_L: f64 = 64.0;
const PAD_R: f64 = 16.0;
const PAD_T: f64 = 12.0;
const PAD_B: f64 = 34.0;
/// The x axis runs to 99.999 % (5 nines); the maximum sits one step further, labelled "max".
const X_NINES: f64 = 5.5;

/// Renders `report.html`.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = write_page(&mut s, r);
    s
}

fn write_page(s: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(s, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")?;
    writeln!(s, "<title>{}</title>", esc(&r.title))?;
    writeln!(s, "<style>{CSS}</style></head><body>")?;
    writeln!(s, "<h1>{}</h1>", esc(&r.title))?;
    let word = r.verdict.outcome();
    let class = if word == "PASS" { "pass" } else { "fail" };
    writeln!(s, "<p class=\"verdict {class}\">Verdict: {word}</p>")?;
    if let Some(l) = &r.load {
        writeln!(s, "<p>Load: {}.</p>", esc(&l.describe()))?;
    }
    if !r.verdict.reasons.is_empty() || r.verdict.behind.is_some() {
        writeln!(s, "<ul>")?;
        for reason in r.verdict.behind.iter().chain(&r.verdict.reasons) {
            writeln!(s, "<li>{}</li>", esc(reason))?;
        }
        writeln!(s, "</ul>")?;
    }

    writeln!(s, "<table class=\"kv\">")?;
    kv(s, "kind", &r.kind)?;
    kv(s, "command", &format!("harness {}", r.arguments.join(" ")))?;
    kv(s, "seed", &r.seed.to_string())?;
    kv(s, "duration", &format!("{:.3} s", r.duration_s))?;
    let v = &r.versions;
    kv(
        s,
        "versions",
        &format!(
            "harness {} ({}), git {}",
            v.harness,
            v.profile,
            v.git_describe.as_deref().unwrap_or("unknown")
        ),
    )?;
    let m = &r.machine;
    let mem = m.memory_total_bytes.map_or("unknown".to_string(), |b| format!("{} MiB", b / (1024 * 1024)));
    kv(
        s,
        "machine",
        &format!(
            "{} CPUs, {mem}, {} {}, kernel {}, {}",
            m.cpus,
            m.os,
            m.arch,
            m.kernel.as_deref().unwrap_or("unknown"),
            m.cpu_model.as_deref().unwrap_or("unknown CPU")
        ),
    )?;
    for (k, v) in &r.settings {
        kv(s, k, v)?;
    }
    writeln!(s, "</table>")?;

    if !r.stages.is_empty() {
        writeln!(s, "<h2>Latency per stage (µs)</h2>\n<table><tr><th>stage</th><th>side</th><th>count</th>")?;
        for n in Percentiles::NAMES {
            write!(s, "<th>{n}</th>")?;
        }
        writeln!(s, "<th>mean</th></tr>")?;
        for st in &r.stages {
            write!(
                s,
                "<tr><td title=\"{}\">{}</td><td>{}</td>",
                esc(&st.description),
                esc(&st.name),
                esc(&st.side)
            )?;
            match &st.histogram {
                Some(h) => {
                    write!(s, "<td>{}</td>", h.count)?;
                    for n in Percentiles::NAMES {
                        write!(s, "<td>{}</td>", h.percentiles_us.by_name(n).unwrap_or(0))?;
                    }
                    writeln!(s, "<td>{:.1}</td></tr>", h.mean_us)?;
                }
                None => writeln!(
                    s,
                    "<td colspan=\"8\" class=\"absent\">absent: {}</td></tr>",
                    esc(st.absent.as_deref().unwrap_or("no samples"))
                )?,
            }
        }
        writeln!(s, "</table>")?;
        writeln!(s, "<h2>Percentile distributions</h2>\n<div class=\"plots\">")?;
        for st in r.stages.iter().filter(|st| st.histogram.is_some()) {
            distribution_plot(s, st)?;
        }
        writeln!(s, "</div>")?;
    }

    if !r.series.is_empty() {
        writeln!(s, "<h2>Over time</h2>\n<div class=\"plots\">")?;
        for x in &r.series {
            series_plot(s, x)?;
        }
        writeln!(s, "</div>")?;
    }

    if !r.counters.is_empty() {
        writeln!(s, "<h2>Counters</h2>\n<table class=\"kv\">")?;
        for (k, v) in &r.counters {
            kv(s, k, &v.to_string())?;
        }
        writeln!(s, "</table>")?;
    }
    writeln!(s, "<h2>Errors</h2>")?;
    if r.errors.is_empty() {
        writeln!(s, "<p>None.</p>")?;
    } else {
        writeln!(s, "<table class=\"kv\">")?;
        for (k, v) in &r.errors {
            kv(s, k, &v.to_string())?;
        }
        writeln!(s, "</table>")?;
    }
    if !r.ratios.is_empty() {
        writeln!(s, "<h2>Ratios</h2>\n<table><tr><th>ratio</th><th>numerator</th><th>denominator</th><th>value</th></tr>")?;
        for q in &r.ratios {
            let v = q.value.map_or("—".to_string(), |v| format!("{v:.3}"));
            writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{v}</td></tr>",
                esc(&q.name),
                q.numerator,
                q.denominator
            )?;
        }
        writeln!(s, "</table>")?;
    }
    for t in &r.tables {
        write_table(s, t)?;
    }
    if let Some(svg) = profile_file(r) {
        writeln!(
            s,
            "<h2>CPU profile</h2>\n<p>Where the time went: <a href=\"{0}\">{0}</a>, a flame graph of every \
             thread of the harness process during the run (opens in a browser; click a frame to zoom).</p>",
            esc(svg)
        )?;
    }
    if !r.notes.is_empty() {
        writeln!(s, "<h2>Notes</h2>\n<ul>")?;
        for n in &r.notes {
            writeln!(s, "<li>{}</li>", esc(n))?;
        }
        writeln!(s, "</ul>")?;
    }
    if !r.hlog_files.is_empty() {
        writeln!(s, "<h2>Raw records</h2>\n<ul>")?;
        for f in &r.hlog_files {
            writeln!(
                s,
                "<li><code>{}</code>: HdrHistogram interval log (µs, one tag per stage)</li>",
                esc(f)
            )?;
        }
        writeln!(s, "</ul>")?;
    }
    writeln!(s, "</body></html>")
}

/// The setting that names the flame graph written beside the report (`harness soak --profile`).
pub const PROFILE_SETTING: &str = "profile";

/// The flame graph beside the report (`harness soak --profile`), when it has one: a plain file name in the
/// `profile` setting.
pub fn profile_file(r: &Report) -> Option<&str> {
    let name = r.settings.get(PROFILE_SETTING)?.as_str();
    let plain = !name.is_empty() && !name.contains(['/', '\\', ':']) && name != "..";
    plain.then_some(name)
}

/// Writes a [`Table`] as an HTML table (also used by other subcommands' pages).
pub fn write_table(s: &mut String, t: &Table) -> std::fmt::Result {
    writeln!(s, "<h2>{}</h2>\n<table><tr>", esc(&t.title))?;
    for c in &t.columns {
        write!(s, "<th>{}</th>", esc(c))?;
    }
    writeln!(s, "</tr>")?;
    for row in &t.rows {
        write!(s, "<tr>")?;
        for c in row {
            write!(s, "<td>{}</td>", esc(c))?;
        }
        writeln!(s, "</tr>")?;
    }
    writeln!(s, "</table>")
}

fn kv(s: &mut String, k: &str, v: &str) -> std::fmt::Result {
    writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v))
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The x position of a percentile on the "nines" axis.
fn nines(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        X_NINES
    } else {
        (1.0 / (1.0 - percentile / 100.0)).log10().min(X_NINES)
    }
}

fn distribution_plot(s: &mut String, st: &StageReport) -> std::fmt::Result {
    let Some(h) = &st.histogram else { return Ok(()) };
    let ymax = nice_max(h.percentiles_us.max as f64);
    let pw = W - PAD_L - PAD_R;
    let ph = H - PAD_T - PAD_B;
    let px = |p: f64| PAD_L + pw * nines(p) / X_NINES;
    let py = |v: f64| PAD_T + ph * (1.0 - v / ymax);
    writeln!(s, "<figure><figcaption>{} — {}</figcaption>", esc(&st.name), esc(&st.description))?;
    svg_open(s)?;
    // Y grid: 0, 1/4 ... of a round maximum.
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let y = py(v);
        writeln!(
            s,
            "<line class=\"grid\" x1=\"{PAD_L}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/><text class=\"yl\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            W - PAD_R,
            PAD_L - 4.0,
            y + 4.0,
            fmt_us(v)
        )?;
    }
    for (label, p) in [
        ("0%", 0.0),
        ("90%", 90.0),
        ("99%", 99.0),
        ("99.9%", 99.9),
        ("99.99%", 99.99),
        ("99.999%", 99.999),
        ("max", 100.0),
    ] {
        let x = px(p);
        writeln!(
            s,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{PAD_T}\" x2=\"{x:.1}\" y2=\"{:.1}\"/><text class=\"xl\" x=\"{x:.1}\" y=\"{:.1}\">{label}</text>",
            H - PAD_B,
            H - PAD_B + 14.0
        )?;
    }
    let pts: Vec<String> =
        h.distribution.iter().map(|&(p, v)| format!("{:.1},{:.1}", px(p), py(v as f64))).collect();
    writeln!(s, "<polyline class=\"line\" points=\"{}\"/>", pts.join(" "))?;
    writeln!(s, "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\">percentile</text>", W / 2.0, H - 4.0)?;
    writeln!(s, "</svg></figure>")
}

fn series_plot(s: &mut String, x: &Series) -> std::fmt::Result {
    let tmax = x.points.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let ymax = nice_max(x.points.iter().map(|p| p.1).fold(0.0, f64::max));
    let pw = W - PAD_L - PAD_R;
    let ph = H - PAD_T - PAD_B;
    let px = |t: f64| PAD_L + pw * t / tmax;
    let py = |v: f64| PAD_T + ph * (1.0 - v / ymax);
    writeln!(s, "<figure><figcaption>{} ({})</figcaption>", esc(&x.name), esc(&x.unit))?;
    svg_open(s)?;
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let y = py(v);
        writeln!(
            s,
            "<line class=\"grid\" x1=\"{PAD_L}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/><text class=\"yl\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            W - PAD_R,
            PAD_L - 4.0,
            y + 4.0,
            fmt_num(v, &x.unit)
        )?;
    }
    for i in 0..=4 {
        let t = tmax * f64::from(i) / 4.0;
        writeln!(s, "<text class=\"xl\" x=\"{:.1}\" y=\"{:.1}\">{t:.0}s</text>", px(t), H - PAD_B + 14.0)?;
    }
    let pts: Vec<String> = x.points.iter().map(|&(t, v)| format!("{:.1},{:.1}", px(t), py(v))).collect();
    writeln!(s, "<polyline class=\"line\" points=\"{}\"/>", pts.join(" "))?;
    writeln!(s, "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\">seconds since start</text>", W / 2.0, H - 4.0)?;
    writeln!(s, "</svg></figure>")
}

fn svg_open(s: &mut String) -> std::fmt::Result {
    writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">"
    )
}

/// A round upper bound for an axis (1, 2 or 5 times a power of ten), at least 1.
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt_us(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}s", v / 1e6)
    } else if v >= 1000.0 {
        format!("{:.1}ms", v / 1e3)
    } else {
        format!("{v:.0}µs")
    }
}

fn fmt_num(v: f64, unit: &str) -> String {
    if unit == "bytes" {
        format!("{:.0}MiB", v / (1024.0 * 1024.0))
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}\
table.kv th,table.kv td{text-align:left}td:first-child,th:first-child{text-align:left}\
.verdict{font-size:1.4em;font-weight:bold}.pass{color:#1a7f37}.fail{color:#cf222e}.absent{color:#888;text-align:left}\
.plots{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{font-size:.9em;max-width:560px}\
svg{background:#fafafa;border:1px solid #ddd}.grid{stroke:#ddd;stroke-width:1}\
.line{fill:none;stroke:#0969da;stroke-width:2}text{font-size:10px;fill:#555}.yl{text-anchor:end}\
.xl{text-anchor:middle}.axis{text-anchor:middle;font-size:11px}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_helpers() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(4500.0), 5000.0);
        assert_eq!(nice_max(1000.0), 1000.0);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(100.0), X_NINES);
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(fmt_us(2500.0), "2.5ms");
    }

    #[test]
    fn links_only_a_plain_flame_graph_file_name() {
        let mut r = Report::new("soak", "t", vec![], 7);
        assert!(!render(&r).contains("CPU profile"));
        r.settings.insert(PROFILE_SETTING.into(), "flamegraph.svg".into());
        assert!(render(&r).contains("<a href=\"flamegraph.svg\">flamegraph.svg</a>"));
        for odd in ["../x.svg", "/etc/passwd", "javascript:alert(1)", ""] {
            r.settings.insert(PROFILE_SETTING.into(), odd.into());
            assert_eq!(profile_file(&r), None, "{odd}");
            assert!(!render(&r).contains("<h2>CPU profile"), "{odd}");
        }
    }
}
