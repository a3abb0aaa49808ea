//! The units of work of `harness check`: one conformance case, one repro scenario, or one short soak, each
//! run against the server under test with a verdict of its own. Crashes and hangs are found around them
//! (in `super`), not inside.

use std::path::PathBuf;
use std::time::Duration;

use acip::cli::TargetUrl;
use acip::Dialect;

use crate::conformance::{self, Behaviour, Case, Params};
use crate::repro::{self, Scenario};

/// The suites `check` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Suite {
    Conformance,
    Repro,
    Soak,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::Conformance => "conformance",
            Suite::Repro => "repro",
            Suite::Soak => "soak",
        }
    }
}

/// The repro scenarios that can run against another server (`repro --target`).
pub const REPRO_AGAINST_TARGET: [Scenario; 3] =
    [Scenario::FragmentInterleave, Scenario::ReassemblyTimeout, Scenario::SlotExhaustion];

/// What a unit does.
#[derive(Debug, Clone)]
pub enum Work {
    Conformance { case: Case, target: TargetUrl },
    Repro { scenario: Scenario, target: TargetUrl },
    Soak { target: TargetUrl },
}

/// One unit: a suite, an id unique in the run, and what it does.
#[derive(Debug, Clone)]
pub struct Unit {
    pub suite: Suite,
    pub id: String,
    pub description: String,
    pub work: Work,
}

/// Settings every unit shares.
#[derive(Debug, Clone)]
pub struct UnitSettings {
    pub dialect: Dialect,
    pub encrypting_server: bool,
    pub params: Params,
    pub seed: u64,
    pub soak_clients: u32,
    pub soak_duration: Duration,
    pub quick: bool,
    /// Where a soak unit writes its report.
    pub out: PathBuf,
}

/// A unit's own verdict (before crashes and hangs around it are considered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub passed: bool,
    /// One line: why (the case's behaviour and detail, the scenario's failed rows, the soak's reasons).
    pub detail: String,
    /// The unit's own report directory, if it wrote one.
    pub report: Option<PathBuf>,
    /// What went over the wire (a conformance case's sent and received summary), when known.
    pub wire: Option<String>,
}

/// Lists the units of `suites` for `targets` (conformance cases filtered by `cases`).
pub fn plan(suites: &[Suite], targets: &[TargetUrl], cases: Option<&str>) -> Vec<Unit> {
    let mut units = Vec::new();
    let many = targets.len() > 1;
    let prefix = |t: &TargetUrl| if many { format!("{}:", t.transport) } else { String::new() };
    let ws_first = targets.iter().find(|t| t.is_ws()).or(targets.first());
    for suite in suites {
        match suite {
            Suite::Conformance => {
                for t in targets {
                    let transport = t.transport;
                    for case in conformance::catalogue() {
                        if case.applies.includes(transport) && conformance::cases::selected(case.id, cases) {
                            units.push(Unit {
                                suite: *suite,
                                id: format!("{}{}", prefix(t), case.id),
                                description: case.title.to_string(),
                                work: Work::Conformance { case, target: t.clone() },
                            });
                        }
                    }
                }
            }
            Suite::Repro => {
                for s in REPRO_AGAINST_TARGET {
                    if let Some(t) =
                        ws_first.filter(|_| cases.is_none_or(|p| p.split(',').any(|x| x == s.name())))
                    {
                        units.push(Unit {
                            suite: *suite,
                            id: s.name().to_string(),
                            description: format!("repro {} against the server", s.name()),
                            work: Work::Repro { scenario: s, target: t.clone() },
                        });
                    }
                }
            }
            Suite::Soak => {
                if let Some(t) = ws_first.filter(|_| cases.is_none_or(|p| p.split(',').any(|x| x == "soak")))
                {
                    units.push(Unit {
                        suite: *suite,
                        id: "soak".into(),
                        description: format!("short soak against {t}"),
                        work: Work::Soak { target: t.clone() },
                    });
                }
            }
        }
    }
    units
}

/// Runs one unit to its own verdict.
pub async fn run(unit: &Unit, s: &UnitSettings) -> Done {
    match &unit.work {
        Work::Conformance { case, target } => {
            let t = match conformance::Target::parse(&target.to_string(), s.dialect, s.encrypting_server) {
                Ok(t) => t,
                Err(e) => {
                    return Done { passed: false, detail: format!("target: {e}"), report: None, wire: None }
                }
            };
            let r = conformance::runner::run_case(case, &t, &s.params, s.seed).await;
            let passed = r.behaviour != Behaviour::Failed && r.behaviour_close != "FAILED";
            Done {
                passed,
                detail: format!("{} (close {}): {}", r.behaviour, r.behaviour_close, r.detail),
                report: None,
                wire: Some(format!("sent: {}; received: {}", r.sent, r.received)),
            }
        }
        Work::Repro { scenario, target } => {
            let opts = repro::Options { quick: s.quick, seed: s.seed, target: Some(target.to_string()) };
            let o = repro::run_scenario(*scenario, &opts).await;
            let failed: Vec<String> = o
                .rows
                .iter()
                .filter(|r| !r.ok)
                .map(|r| format!("{}: {} (expected {})", r.config, r.measured, r.expected))
                .collect();
            let detail = if o.passed() {
                format!("{} rows as expected", o.rows.len())
            } else if failed.is_empty() {
                "no measurement".into()
            } else {
                failed.join("; ")
            };
            Done { passed: o.passed(), detail, report: None, wire: None }
        }
        Work::Soak { target } => soak(target, s).await,
    }
}

async fn soak(target: &TargetUrl, s: &UnitSettings) -> Done {
    use clap::Parser;
    let out = s.out.join("soak");
    let mut argv: Vec<String> = vec!["harness".into(), "soak".into(), "--target".into(), target.to_string()];
    argv.extend(["--clients".into(), s.soak_clients.to_string()]);
    argv.extend(["--duration".into(), format!("{}ms", s.soak_duration.as_millis())]);
    argv.extend(["--frame".into(), "320x240".into(), "--seed".into(), s.seed.to_string()]);
    argv.extend(["--dialect".into(), s.dialect.to_string(), "--allow-behind".into(), "--quiet".into()]);
    if s.encrypting_server {
        argv.push("--encrypt".into());
    }
    let args = match crate::cli::Cli::try_parse_from(&argv).map(|c| c.command) {
        Ok(crate::cli::Command::Soak(a)) => a,
        Ok(_) => unreachable!("the argv names soak"),
        Err(e) => {
            return Done { passed: false, detail: format!("soak arguments: {e}"), report: None, wire: None }
        }
    };
    if let Err(e) = std::fs::create_dir_all(&out) {
        return Done {
            passed: false,
            detail: format!("creating {}: {e}", out.display()),
            report: None,
            wire: None,
        };
    }
    let setup = crate::soak::driver::RunSetup {
        seed: s.seed,
        argv: argv[1..].to_vec(),
        out: out.clone(),
        progress: crate::soak::progress::Progress::new(crate::soak::progress::Mode::Quiet, args.duration),
    };
    match crate::soak::driver::soak(&args, &setup).await {
        Ok(report) => {
            let _ = crate::report::write_dir(&out, &report);
            let detail = if report.verdict.passed {
                format!(
                    "{} frames sent, {} ASCII frames back",
                    report.counters.get("frames_sent").copied().unwrap_or(0),
                    report.counters.get("ascii_frames_received").copied().unwrap_or(0)
                )
            } else {
                report.verdict.reasons.join("; ")
            };
            Done { passed: report.verdict.passed, detail, report: Some(out), wire: None }
        }
        Err(e) => Done { passed: false, detail: e.to_string(), report: Some(out), wire: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_the_cases_of_each_target_and_the_scenarios_once() {
        let ws: TargetUrl = "ws://127.0.0.1:27226".parse().unwrap();
        let tcp: TargetUrl = "tcp://127.0.0.1:27224".parse().unwrap();
        let all = plan(&[Suite::Conformance, Suite::Repro, Suite::Soak], std::slice::from_ref(&ws), None);
        assert!(all.iter().filter(|u| u.suite == Suite::Conformance).count() > 20);
        assert_eq!(all.iter().filter(|u| u.suite == Suite::Repro).count(), 3);
        assert_eq!(all.iter().filter(|u| u.suite == Suite::Soak).count(), 1);
        let both = plan(&[Suite::Conformance], &[ws.clone(), tcp], None);
        assert!(
            both.iter().any(|u| u.id.starts_with("ws:")) && both.iter().any(|u| u.id.starts_with("tcp:"))
        );
        let ids: std::collections::BTreeSet<&str> = both.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids.len(), both.len(), "ids are unique");
        let one = plan(&[Suite::Conformance, Suite::Repro, Suite::Soak], &[ws], Some("2.1"));
        assert!(
            one.iter().all(|u| u.suite == Suite::Conformance && u.id.starts_with("2.1")),
            "{:?}",
            one.iter().map(|u| &u.id).collect::<Vec<_>>()
        );
    }
}
