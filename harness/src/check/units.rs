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
    Replay,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::Conformance => "conformance",
            Suite::Repro => "repro",
            Suite::Soak => "soak",
            Suite::Replay => "replay",
        }
    }
}

/// The repro scenarios that can run against another server (`repro --target`).
pub const REPRO_AGAINST_TARGET: [Scenario; 3] =
    [Scenario::FragmentInterleave, Scenario::ReassemblyTimeout, Scenario::SlotExhaustion];

/// What a unit does.
#[derive(Debug, Clone)]
pub enum Work {
    Conformance {
        case: Case,
        target: TargetUrl,
    },
    Repro {
        scenario: Scenario,
        target: TargetUrl,
    },
    Soak {
        target: TargetUrl,
    },
    /// Replay the client side of a capture's sessions (at full speed) against the server.
    Replay {
        capture: PathBuf,
        target: TargetUrl,
    },
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

/// The captures of the replay suite: the `.pcap`/`.pcapng` files of `dir`, by name (none when it is absent).
pub fn captures(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Lists the units of `suites` for `targets` (conformance cases filtered by `cases`; replay units from
/// `captures`).
pub fn plan(suites: &[Suite], targets: &[TargetUrl], cases: Option<&str>, captures: &[PathBuf]) -> Vec<Unit> {
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
            Suite::Replay => {
                for c in captures {
                    let name = c.file_stem().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                    // A capture replays over the transport it was captured on when the server has it.
                    let is_ws = name.contains("ws");
                    let t = targets.iter().find(|t| t.is_ws() == is_ws).or(ws_first);
                    if let Some(t) = t.filter(|_| cases.is_none_or(|p| p.split(',').any(|x| x == name))) {
                        units.push(Unit {
                            suite: *suite,
                            id: name.clone(),
                            description: format!("replay {} against the server", c.display()),
                            work: Work::Replay { capture: c.clone(), target: t.clone() },
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
        Work::Replay { capture, target } => replay(capture, target).await,
    }
}

async fn replay(capture: &std::path::Path, target: &TargetUrl) -> Done {
    use crate::replay::{dissect, live, DissectConfig};
    let fail = |detail: String| Done { passed: false, detail, report: None, wire: None };
    let data = match std::fs::read(capture) {
        Ok(d) => d,
        Err(e) => return fail(format!("reading {}: {e}", capture.display())),
    };
    let name = capture.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let config = DissectConfig { collect_packets: true, ..DissectConfig::default() };
    let d = match dissect(&name, &data, &config) {
        Ok(d) => d,
        Err(e) => return fail(format!("dissecting {name}: {e}")),
    };
    let t = match live::parse_target(&target.to_string()) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    match live::replay_async(&d, &data, &config, &t, live::Pace::Fast).await {
        Ok(r) => {
            let divergences: Vec<String> = r
                .sessions
                .iter()
                .flat_map(|s| s.divergences.iter().map(move |x| format!("flow {}: {x}", s.flow.0)))
                .collect();
            let sent: u64 = r.sessions.iter().map(|s| s.sent).sum();
            let wire = r
                .sessions
                .iter()
                .map(|s| {
                    format!(
                        "flow {}: sent {:?}; received {:?}; ended {}",
                        s.flow.0, s.sent_types, s.received_types, s.live_end
                    )
                })
                .collect::<Vec<_>>()
                .join(" | ");
            // What a replay judges here is the server surviving real captured traffic (a crash or hang is
            // found around the unit); how its answers differ from the captured server's is listed, not failed:
            // another build, dialect or crypto mode answers differently.
            Done {
                passed: true,
                detail: if divergences.is_empty() {
                    format!("{} session(s), {sent} packets replayed, no divergence", r.sessions.len())
                } else {
                    format!(
                        "{} session(s), {sent} packets replayed; differs from the captured server: {}",
                        r.sessions.len(),
                        divergences.join("; ")
                    )
                },
                report: None,
                wire: Some(wire),
            }
        }
        Err(e) => fail(e.to_string()),
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
        let caps = vec![PathBuf::from("x/ws_plaintext.pcap"), PathBuf::from("x/tcp_plaintext.pcap")];
        let all = plan(
            &[Suite::Conformance, Suite::Repro, Suite::Soak, Suite::Replay],
            std::slice::from_ref(&ws),
            None,
            &caps,
        );
        assert_eq!(all.iter().filter(|u| u.suite == Suite::Replay).count(), 2);
        assert!(all.iter().filter(|u| u.suite == Suite::Conformance).count() > 20);
        assert_eq!(all.iter().filter(|u| u.suite == Suite::Repro).count(), 3);
        assert_eq!(all.iter().filter(|u| u.suite == Suite::Soak).count(), 1);
        let both = plan(&[Suite::Conformance, Suite::Replay], &[ws.clone(), tcp], None, &caps);
        let target_of = |id: &str| match &both.iter().find(|u| u.id == id).unwrap().work {
            Work::Replay { target, .. } => target.clone(),
            _ => unreachable!(),
        };
        assert!(target_of("ws_plaintext").is_ws() && !target_of("tcp_plaintext").is_ws());
        assert!(
            both.iter().any(|u| u.id.starts_with("ws:")) && both.iter().any(|u| u.id.starts_with("tcp:"))
        );
        let ids: std::collections::BTreeSet<&str> = both.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids.len(), both.len(), "ids are unique");
        let one =
            plan(&[Suite::Conformance, Suite::Repro, Suite::Soak, Suite::Replay], &[ws], Some("2.1"), &caps);
        assert!(
            one.iter().all(|u| u.suite == Suite::Conformance && u.id.starts_with("2.1")),
            "{:?}",
            one.iter().map(|u| &u.id).collect::<Vec<_>>()
        );
    }
}
