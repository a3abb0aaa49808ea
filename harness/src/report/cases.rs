//! Pages for case catalogues (conformance suites, scenario lists): the shared report page of
//! [`super::html::render`] (title, verdict, command, versions, machine, counters, notes) followed by a
//! summary table with one coloured behaviour cell per case, linked to one section per case. Autobahn's
//! report layout, self-contained (no scripts, no network).

use std::fmt::Write;

use super::html::{esc, render};
use super::schema::Report;

/// One case on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    pub id: String,
    pub title: String,
    /// OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED (coloured by name).
    pub behaviour: String,
    pub behaviour_close: String,
    pub duration_ms: u64,
    pub close_code: Option<u16>,
    /// Everything else shown in the case's section, in order.
    pub details: Vec<(String, String)>,
}

/// The page: `report` rendered by the shared template, then the case table and per-case sections.
pub fn render_page(report: &Report, heading: &str, rows: &[CaseRow]) -> String {
    let page = render(report);
    let body_end = page.rfind("</body>").unwrap_or(page.len());
    let mut s = page[..body_end].to_string();
    let _ = write_cases(&mut s, heading, rows);
    s.push_str("</body></html>\n");
    s
}

fn class(behaviour: &str) -> &'static str {
    match behaviour {
        "OK" => "b-ok",
        "NON-STRICT" => "b-nonstrict",
        "INFORMATIONAL" => "b-info",
        "UNIMPLEMENTED" => "b-unimpl",
        _ => "b-failed",
    }
}

fn anchor(id: &str) -> String {
    format!("case-{}", id.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
}

fn write_cases(s: &mut String, heading: &str, rows: &[CaseRow]) -> std::fmt::Result {
    writeln!(s, "<style>{CSS}</style>")?;
    writeln!(s, "<h2>{}</h2>\n<table class=\"cases\">", esc(heading))?;
    writeln!(s, "<tr><th>case</th><th>description</th><th>behaviour</th><th>close</th><th>close code</th><th>ms</th></tr>")?;
    for r in rows {
        writeln!(
            s,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            anchor(&r.id),
            esc(&r.id),
            esc(&r.title),
            class(&r.behaviour),
            esc(&r.behaviour),
            if r.behaviour_close == "FAILED" { "b-failed" } else { "" },
            esc(&r.behaviour_close),
            r.close_code.map_or("—".to_string(), |c| c.to_string()),
            r.duration_ms
        )?;
    }
    writeln!(s, "</table>")?;
    for r in rows {
        writeln!(s, "<section id=\"{}\" class=\"case\">", anchor(&r.id))?;
        writeln!(s, "<h3>Case {} — {}</h3>", esc(&r.id), esc(&r.title))?;
        writeln!(s, "<table class=\"kv\">")?;
        writeln!(
            s,
            "<tr><th>behaviour</th><td class=\"{}\">{}</td></tr>",
            class(&r.behaviour),
            esc(&r.behaviour)
        )?;
        writeln!(s, "<tr><th>close behaviour</th><td>{}</td></tr>", esc(&r.behaviour_close))?;
        let code = r.close_code.map_or("—".to_string(), |c| c.to_string());
        writeln!(s, "<tr><th>close code</th><td>{code}</td></tr>")?;
        writeln!(s, "<tr><th>duration</th><td>{} ms</td></tr>", r.duration_ms)?;
        for (k, v) in &r.details {
            writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v))?;
        }
        writeln!(s, "</table><p><a href=\"#\">top</a></p></section>")?;
    }
    Ok(())
}

const CSS: &str = ".cases td{text-align:left}.b-ok{background:#dafbe1}.b-nonstrict{background:#fff8c5}\
.b-info{background:#ddf4ff}.b-unimpl{background:#eaeef2}.b-failed{background:#ffebe9;font-weight:bold}\
section.case{border-top:1px solid #ddd;margin-top:1.5em}section.case td{text-align:left;max-width:900px;\
word-break:break-word}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::env;
    use crate::report::schema::{Verdict, SCHEMA_VERSION};

    #[test]
    fn page_has_the_shared_head_a_linked_table_and_sections() {
        let report = Report {
            schema_version: SCHEMA_VERSION,
            kind: "conformance".into(),
            title: "t <1>".into(),
            arguments: vec!["conformance".into()],
            settings: Default::default(),
            seed: 1,
            started_unix_us: 0,
            duration_s: 0.5,
            versions: env::versions(),
            machine: env::machine(),
            stages: vec![],
            counters: Default::default(),
            errors: Default::default(),
            series: vec![],
            ratios: vec![],
            tables: vec![],
            notes: vec![],
            hlog_files: vec![],
            load: None,
            verdict: Verdict { passed: true, reasons: vec![], behind: None },
        };
        let rows = vec![CaseRow {
            id: "2.1.3".into(),
            title: "x & y".into(),
            behaviour: "FAILED".into(),
            behaviour_close: "OK".into(),
            duration_ms: 12,
            close_code: Some(1002),
            details: vec![("sent".into(), "<frames>".into())],
        }];
        let html = render_page(&report, "Cases", &rows);
        assert!(html.contains("<title>t &lt;1&gt;</title>"));
        assert!(html.contains("href=\"#case-2_1_3\""));
        assert!(html.contains("<section id=\"case-2_1_3\""));
        assert!(html.contains("class=\"b-failed\">FAILED"));
        assert!(html.contains("&lt;frames&gt;"));
        assert!(html.trim_end().ends_with("</body></html>"));
        assert_eq!(html.matches("</body>").count(), 1);
    }
}
