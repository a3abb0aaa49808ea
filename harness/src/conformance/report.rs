//! The reports of a conformance run, as Autobahn writes them: `index.json` (one row per case: id,
//! behaviour, close behaviour, duration, close code, spec section, what was sent and received) and a
//! self-contained `index.html` with a section per case, made with the shared report page
//! ([`crate::report::cases`]). Both are pure functions of [`SuiteReport`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::runner::{Behaviour, CaseResult};
use crate::report::cases::{render_page, CaseRow};
use crate::report::{Machine, Report, Verdict, Versions, SCHEMA_VERSION};

pub const INDEX_JSON: &str = "index.json";
pub const INDEX_HTML: &str = "index.html";

/// Everything a run produced: `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuiteReport {
    pub schema_version: u32,
    pub kind: String,
    /// `ws://...` or `tcp://...`.
    pub target: String,
    pub transport: String,
    pub dialect: String,
    pub encrypting_server: bool,
    pub arguments: Vec<String>,
    /// Target parameters (reassembly timeout, idle, settle, flood), as given.
    pub params: BTreeMap<String, String>,
    pub seed: u64,
    pub started_unix_us: u64,
    pub duration_s: f64,
    pub versions: Versions,
    pub machine: Machine,
    /// Cases per behaviour.
    pub summary: BTreeMap<String, usize>,
    pub cases: Vec<CaseResult>,
}

impl SuiteReport {
    /// Ids of FAILED cases (behaviour or close behaviour).
    pub fn failed(&self) -> Vec<&CaseResult> {
        self.cases
            .iter()
            .filter(|c| c.behaviour == Behaviour::Failed || c.behaviour_close == "FAILED")
            .collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serialises")
    }

    /// Behaviour counts from the cases.
    pub fn count(cases: &[CaseResult]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for b in Behaviour::ALL {
            m.insert(b.as_str().to_string(), cases.iter().filter(|c| c.behaviour == b).count());
        }
        m
    }

    /// The shared report type, for the page head.
    fn as_report(&self) -> Report {
        let mut settings = BTreeMap::new();
        settings.insert("target".into(), self.target.clone());
        settings.insert("dialect".into(), self.dialect.clone());
        settings.insert("encrypting server".into(), self.encrypting_server.to_string());
        for (k, v) in &self.params {
            settings.insert(k.clone(), v.clone());
        }
        let failed: Vec<String> =
            self.failed().iter().map(|c| format!("{} FAILED: {}", c.id, c.detail)).collect();
        Report {
            schema_version: SCHEMA_VERSION,
            kind: self.kind.clone(),
            title: format!("ACIP conformance: {} ({})", self.target, self.dialect),
            arguments: self.arguments.clone(),
            settings,
            seed: self.seed,
            started_unix_us: self.started_unix_us,
            duration_s: self.duration_s,
            versions: self.versions.clone(),
            machine: self.machine.clone(),
            stages: vec![],
            counters: self.summary.iter().map(|(k, v)| (k.clone(), *v as u64)).collect(),
            errors: BTreeMap::new(),
            series: vec![],
            ratios: vec![],
            tables: vec![],
            notes: vec![
                "Behaviours: OK = as the spec prefers; NON-STRICT = accepted but not as preferred; \
                 INFORMATIONAL = the spec leaves it open; UNIMPLEMENTED = the target lacks what the case needs; \
                 FAILED = against the spec. Close: OK = close frame (or TCP close), UNCLEAN = no close frame \
                 (1006), FAILED = the server did not close after ours."
                    .into(),
            ],
            hlog_files: vec![],
            load: None,
            verdict: Verdict::from_reasons(failed),
        }
    }

    /// `index.html`.
    pub fn to_html(&self) -> String {
        let rows: Vec<CaseRow> = self
            .cases
            .iter()
            .map(|c| CaseRow {
                id: c.id.clone(),
                title: c.description.clone(),
                behaviour: c.behaviour.as_str().to_string(),
                behaviour_close: c.behaviour_close.clone(),
                duration_ms: c.duration_ms,
                close_code: c.close_code,
                details: vec![
                    ("spec".into(), c.spec.clone()),
                    ("expected".into(), c.expected.clone()),
                    ("sent".into(), c.sent.clone()),
                    ("received".into(), c.received.clone()),
                    ("close reason".into(), c.close_reason.clone().unwrap_or_default()),
                    ("detail".into(), c.detail.clone()),
                ],
            })
            .collect();
        render_page(&self.as_report(), "Cases", &rows)
    }

    /// Writes index.json and index.html into `dir` (created if needed).
    pub fn write_dir(&self, dir: &Path) -> crate::Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::Error::io(format!("creating {}", dir.display()), e))?;
        for (name, text) in [(INDEX_JSON, self.to_json()), (INDEX_HTML, self.to_html())] {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| crate::Error::io(format!("writing {}", p.display()), e))?;
        }
        Ok(())
    }
}
