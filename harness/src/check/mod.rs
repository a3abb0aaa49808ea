//! `harness check`: diagnose a server build in one command. The server under test runs under `harness
//! supervise`; the chosen suites run against it unit by unit (a conformance case, a repro scenario, a short
//! soak); a crash is attributed to the unit in flight, with its backtrace captured from outside, and the
//! server is restarted; a server that stops answering is a hang (stacks snapshotted, stopped, restarted);
//! a restart that cannot bind is a finding. Crashing units are rerun alone on fresh servers to say how
//! reproducible they are, and units run in parallel are rerun alone after a crash to find the one
//! responsible. One report (`index.json`, `index.html`, `summary.md`), JUnit XML for CI, and a comparison
//! with an earlier check.

pub mod report;
pub mod server;
pub mod units;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use acip::cli::TargetUrl;
use acip::Dialect;

use server::{Ended, Server, ServerSpec};
use units::{Suite, Unit, UnitSettings};

/// Most units a crash is attributed to at once before they are rerun alone.
pub const MAX_JOBS: usize = 16;
/// Longest a single unit may run before it counts as hung.
pub const UNIT_LIMIT: Duration = Duration::from_secs(180);
/// How many times a failed restart is retried (with a growing pause) before the rest of the run is given up.
pub const RESTART_ATTEMPTS: u32 = 3;
/// Server log lines kept per unit in the report.
pub const LOG_LINES_PER_UNIT: usize = 20;
/// How long a server that stopped answering a probe is given to be seen exiting before it counts as hung.
const REAP_WAIT: Duration = Duration::from_millis(500);
/// How long units still running when the server died are given to notice and finish (for their wire record).
const WIRE_WAIT: Duration = Duration::from_secs(5);
/// How long a server whose listener is gone is given to end (supervise unwinds and symbolizes every
/// thread before it lets the fatal signal through) before it counts as hung.
const CAPTURE_WAIT: Duration = Duration::from_secs(60);

/// Arguments of `harness check`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The server under test: its command line, as one shell-quoted string.
    #[arg(long, value_name = "'CMD ARGS...'")]
    pub server: String,
    /// Where the server listens (ws://HOST:PORT, tcp://HOST:PORT); repeatable. Readiness and hang probes
    /// connect to every one of them.
    #[arg(long = "target", value_name = "URL", required = true)]
    pub targets: Vec<TargetUrl>,
    /// Ready when a log line of the server matches this regular expression (default: when every target
    /// accepts a connection and answers the WebSocket upgrade).
    #[arg(long, value_name = "REGEX")]
    pub ready_line: Option<String>,
    /// How long the server may take to become ready.
    #[arg(long, default_value = "30s", value_parser = acip::cli::parse_duration)]
    pub ready_timeout: Duration,
    /// Suites to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "conformance,repro,soak,replay")]
    pub suites: Vec<Suite>,
    /// The captures the replay suite replays (every .pcap/.pcapng there; none when absent).
    #[arg(long, default_value = "corpus/captures", value_name = "DIR")]
    pub captures: PathBuf,
    /// ACIP dialect of the server.
    #[arg(long, default_value = "feb")]
    pub dialect: Dialect,
    /// The server runs the crypto handshake.
    #[arg(long)]
    pub encrypting_server: bool,
    /// Only these units: conformance case ids or prefixes, repro scenario names, `soak`; comma-separated.
    #[arg(long, value_name = "PATTERN")]
    pub cases: Option<String>,
    /// Rerun each crashing unit alone on a fresh server this many times ("crashed 3/3").
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub rerun_crashers: u32,
    /// Conformance cases run at once (the server must take several clients). After a crash, the cases
    /// that were in flight are rerun alone to find the one responsible.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Stop starting new units after this long (the rest are reported NOT RUN).
    #[arg(long, default_value = "15m", value_parser = acip::cli::parse_duration)]
    pub budget: Duration,
    /// The server is hung when a probe gets no answer within this long.
    #[arg(long, default_value = "5s", value_parser = acip::cli::parse_duration)]
    pub hang_timeout: Duration,
    /// Between SIGTERM and SIGKILL when stopping the server.
    #[arg(long, default_value = "3s", value_parser = acip::cli::parse_duration)]
    pub grace: Duration,
    /// Clients and duration of the soak unit.
    #[arg(long, default_value_t = 4)]
    pub soak_clients: u32,
    #[arg(long, default_value = "5s", value_parser = acip::cli::parse_duration)]
    pub soak_duration: Duration,
    /// Shorter repro scenarios and conformance waits (what the tests run).
    #[arg(long)]
    pub quick: bool,
    /// Seed of every unit's random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Compare with an earlier check's directory: exit 1 on a new failure, crash or hang.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// Report directory [default: target/harness/check/<UTC time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write JUnit XML here (one testcase per unit; crashes and hangs as errors).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print index.json on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The verdict of one unit, crashes and hangs included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "FAIL")]
    Fail,
    #[serde(rename = "CRASH")]
    Crash,
    #[serde(rename = "HANG")]
    Hang,
    #[serde(rename = "NOT RUN")]
    NotRun,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Crash => "CRASH",
            Verdict::Hang => "HANG",
            Verdict::NotRun => "NOT RUN",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        [Verdict::Pass, Verdict::Fail, Verdict::Crash, Verdict::Hang, Verdict::NotRun]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A crash attributed to a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// `SIGABRT`, `exit 134`, ...
    pub how: String,
    /// The supervise directory with crash.md / crash.json.
    pub report_dir: PathBuf,
    /// The crashing thread's frames.
    pub backtrace: Vec<String>,
    /// Reruns alone on a fresh server: (crashed, runs).
    pub reruns: Option<(u32, u32)>,
    /// Found by rerunning alone the units that were in flight together.
    pub isolated: bool,
}

/// What happened to one unit.
#[derive(Debug, Clone)]
pub struct UnitResult {
    pub suite: Suite,
    pub id: String,
    pub description: String,
    pub verdict: Verdict,
    pub detail: String,
    pub duration: Duration,
    pub crash: Option<Crash>,
    /// The hang snapshot (hang-N.md) of the server, if one was taken.
    pub hang_snapshot: Option<PathBuf>,
    /// The server's log lines while the unit ran.
    pub log: Vec<String>,
    /// The unit's last wire events (what it sent and received), when known.
    pub wire: Option<String>,
    pub server_generation: u32,
}

/// Something about the server that is not a unit's verdict (a restart that could not bind, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub what: String,
    pub detail: String,
}

/// Everything a check run found.
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub results: Vec<UnitResult>,
    pub findings: Vec<Finding>,
    pub generations: Vec<(u32, String)>,
    pub elapsed: Duration,
}

/// The runner: the server under test and the run's state.
struct Checker {
    spec: ServerSpec,
    settings: UnitSettings,
    targets: Vec<TargetUrl>,
    hang_timeout: Duration,
    grace: Duration,
    server: Option<Server>,
    next_generation: u32,
    findings: Vec<Finding>,
    generations: Vec<(u32, String)>,
    /// The server could not be restarted: the rest is not run.
    gave_up: Option<String>,
    /// Crashes while being stopped on purpose, by how it ended: (count, the first one).
    shutdown_crashes: std::collections::BTreeMap<String, (u32, Ended)>,
    /// Stops on purpose of a running server.
    stops: u32,
}

impl Checker {
    /// Stops the current server on purpose (`why` goes into the starts table); a crash on the way out is kept
    /// for a finding.
    async fn stop_server(&mut self, why: &str) {
        if let Some(mut s) = self.server.take() {
            let ended = s.stop(self.grace).await;
            self.note_stop(ended.as_ref());
            self.generations.push((
                s.generation,
                ended.map_or_else(|| why.to_string(), |e| format!("{why} ({})", e.how)),
            ));
        }
    }

    fn note_stop(&mut self, ended: Option<&Ended>) {
        if let Some(e) = ended {
            self.stops += 1;
            if server::crashed_on_shutdown(e) {
                self.shutdown_crashes.entry(e.how.clone()).or_insert_with(|| (0, e.clone())).0 += 1;
            }
        }
    }

    /// A running server, restarting if needed (a failed restart is a finding; after
    /// [`RESTART_ATTEMPTS`] the run gives up).
    async fn ensure_server(&mut self) -> Option<&mut Server> {
        if self.gave_up.is_some() {
            return None;
        }
        if let Some(s) = &mut self.server {
            if s.poll_ended().is_none() {
                return self.server.as_mut();
            }
            self.retire();
        }
        for attempt in 1..=RESTART_ATTEMPTS {
            self.next_generation += 1;
            match Server::start(&self.spec, self.next_generation).await {
                Ok(s) => {
                    self.server = Some(s);
                    return self.server.as_mut();
                }
                Err(f) => {
                    let what = match &f.bind {
                        Some(_) => format!("server start {} could not bind", self.next_generation),
                        None => format!("server start {} failed", self.next_generation),
                    };
                    let mut detail = f.reason.clone();
                    if let Some(b) = &f.bind {
                        detail.push_str(&format!("; bind diagnosis: {b}"));
                    }
                    if !f.tail.is_empty() {
                        detail.push_str(&format!("; last log lines: {}", f.tail.join(" | ")));
                    }
                    self.generations.push((self.next_generation, format!("did not start: {}", f.reason)));
                    self.findings.push(Finding { what, detail });
                    if attempt < RESTART_ATTEMPTS {
                        // Backoff for a port still held (TIME_WAIT, a process still exiting).
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    }
                }
            }
        }
        self.gave_up = Some(format!("the server could not be started after {RESTART_ATTEMPTS} attempts"));
        None
    }

    /// Records how the current generation ended and drops it.
    fn retire(&mut self) {
        if let Some(mut s) = self.server.take() {
            let how = s.poll_ended().map_or_else(|| "stopped".to_string(), |e| e.how);
            self.generations.push((s.generation, how));
        }
    }

    /// Runs `batch` (one unit, or several at once) on the current server. Returns each unit's result
    /// and whether the server crashed during the batch (the crash not yet attributed when several ran).
    async fn run_batch(&mut self, batch: &[Unit]) -> Vec<UnitResult> {
        let settings = self.settings.clone();
        let (targets, hang_timeout, grace) = (self.targets.clone(), self.hang_timeout, self.grace);
        let Some(server) = self.ensure_server().await else {
            let why = self.gave_up.clone().unwrap_or_default();
            return batch.iter().map(|u| not_run(u, &why)).collect();
        };
        let generation = server.generation;
        let t0 = Instant::now();
        let work = futures_util::future::join_all(batch.iter().map(|u| {
            let s = settings.clone();
            async move {
                let start = Instant::now();
                let r = tokio::time::timeout(UNIT_LIMIT, units::run(u, &s)).await;
                (r, start.elapsed())
            }
        }));
        // The units, or the server's death, whichever first.
        let mut work = Box::pin(work);
        let (done, died) = tokio::select! {
            d = &mut work => (Some(d), None),
            e = server.wait_ended() => (None, Some(e)),
        };
        // After a death the units see their connections end: their wire records are the crash's last events.
        let done = match done {
            None => tokio::time::timeout(WIRE_WAIT, work).await.ok(),
            d => d,
        };
        // A crash can follow a unit's last bytes: the probe both gives it time to show and finds a hang.
        let (died, unanswered) = match died {
            Some(e) => (Some(e), None),
            None => {
                let unanswered = server.probe(&targets, hang_timeout).await.err();
                let died = match server.poll_ended() {
                    Some(e) => Some(e),
                    // Not answering: dying or hung. Nothing listening means dying (supervise is still
                    // capturing it): wait for its report; otherwise give it a moment to be reaped.
                    None if unanswered.is_some() => {
                        // Refused, reset or closed: its sockets are going away with it.
                        let gone = unanswered.as_deref().is_some_and(|e| {
                            ["refused", "reset", "closed", "broken pipe"]
                                .iter()
                                .any(|w| e.to_lowercase().contains(w))
                        });
                        let wait = if gone || server.dying() { CAPTURE_WAIT } else { REAP_WAIT };
                        tokio::time::timeout(wait, server.wait_ended()).await.ok()
                    }
                    None => None,
                };
                (died, unanswered)
            }
        };
        // No answer in time is a hang; a wrong answer (a refused upgrade, garbage) is a server that still
        // runs but no longer serves: the unit fails and the server is restarted.
        let silent =
            unanswered.as_deref().is_some_and(|e| e.contains("no answer within") || e.contains("timed out"));
        let hung = died.is_none() && unanswered.is_some() && silent;
        let broken = died.is_none() && unanswered.is_some() && !silent;
        let end = Instant::now();
        let log = server.lines_between(t0, end, LOG_LINES_PER_UNIT);
        let mut snapshot = None;
        let mut stopped = None;
        if hung {
            (snapshot, stopped) = server.snapshot_and_stop(grace).await;
        } else if broken {
            stopped = server.stop(grace).await;
        }
        self.note_stop(stopped.as_ref());
        let results = batch
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let (verdict, detail, duration) = match (&died, hung, &done) {
                    (Some(e), _, _) if e.crashed => {
                        (Verdict::Crash, format!("server crashed: {}", e.how), end - t0)
                    }
                    (Some(e), _, _) => (Verdict::Fail, format!("server ended: {}", e.how), end - t0),
                    (None, true, _) => (
                        Verdict::Hang,
                        format!("server stopped answering: {}", unanswered.clone().unwrap_or_default()),
                        end - t0,
                    ),
                    (None, false, _) if broken => (
                        Verdict::Fail,
                        format!(
                            "after this unit the server no longer serves (restarted): {}",
                            unanswered.clone().unwrap_or_default()
                        ),
                        end - t0,
                    ),
                    (None, false, Some(d)) => match &d[i] {
                        (Ok(done), took) => (
                            if done.passed { Verdict::Pass } else { Verdict::Fail },
                            done.detail.clone(),
                            *took,
                        ),
                        (Err(_), took) => {
                            (Verdict::Hang, format!("the unit did not finish within {UNIT_LIMIT:?}"), *took)
                        }
                    },
                    (None, false, None) => (Verdict::Fail, "no result".into(), end - t0),
                };
                UnitResult {
                    suite: u.suite,
                    id: u.id.clone(),
                    description: u.description.clone(),
                    verdict,
                    detail,
                    duration,
                    crash: died.as_ref().filter(|e| e.crashed).map(crash_of),
                    hang_snapshot: snapshot.clone(),
                    log: log.clone(),
                    wire: done.as_ref().and_then(|d| d[i].0.as_ref().ok()).and_then(|d| d.wire.clone()),
                    server_generation: generation,
                }
            })
            .collect();
        if died.is_some() || hung || broken {
            self.retire();
        }
        results
    }

    /// Reruns a crashing unit alone `n` times, each on a fresh server: how many crashed.
    async fn rerun(&mut self, unit: &Unit, n: u32) -> (u32, u32) {
        let mut crashed = 0;
        let mut runs = 0;
        for _ in 0..n {
            // A fresh server for each run: stop the current one if it still runs.
            self.stop_server("stopped for a rerun").await;
            let r = self.run_batch(std::slice::from_ref(unit)).await;
            if r[0].verdict == Verdict::NotRun {
                break;
            }
            runs += 1;
            if r[0].verdict == Verdict::Crash {
                crashed += 1;
            }
        }
        (crashed, runs)
    }
}

fn crash_of(e: &Ended) -> Crash {
    Crash {
        how: e.how.clone(),
        report_dir: e.dir.clone(),
        backtrace: e.backtrace.clone(),
        reruns: None,
        isolated: false,
    }
}

fn not_run(u: &Unit, why: &str) -> UnitResult {
    UnitResult {
        suite: u.suite,
        id: u.id.clone(),
        description: u.description.clone(),
        verdict: Verdict::NotRun,
        detail: why.to_string(),
        duration: Duration::ZERO,
        crash: None,
        hang_snapshot: None,
        log: Vec::new(),
        wire: None,
        server_generation: 0,
    }
}

/// Runs the whole check (the library form of `harness check`).
pub async fn check(args: &Args, out: &std::path::Path) -> crate::Result<CheckRun> {
    let command = shlex::split(&args.server)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| crate::Error::Usage(format!("--server {:?}: not a command line", args.server)))?;
    if args.jobs == 0 || args.jobs > MAX_JOBS {
        return Err(crate::Error::Usage(format!("--jobs must be 1..={MAX_JOBS}")));
    }
    let ready_line = match &args.ready_line {
        Some(r) => Some(regex::Regex::new(r).map_err(|e| crate::Error::Usage(format!("--ready-line: {e}")))?),
        None => None,
    };
    let units =
        units::plan(&args.suites, &args.targets, args.cases.as_deref(), &units::captures(&args.captures));
    if units.is_empty() {
        return Err(crate::Error::Usage(format!("no unit matches --cases {:?}", args.cases)));
    }
    let t0 = Instant::now();
    let quick = args.quick;
    let mut checker = Checker {
        spec: ServerSpec {
            command,
            targets: args.targets.clone(),
            ready_line,
            ready_timeout: args.ready_timeout,
            grace: args.grace,
            dir: out.join("servers"),
        },
        settings: UnitSettings {
            dialect: args.dialect,
            encrypting_server: args.encrypting_server,
            params: crate::conformance::Params {
                reassembly_timeout: Duration::from_secs(2),
                idle: if quick { Duration::from_secs(2) } else { Duration::from_secs(5) },
                settle: if quick { Duration::from_millis(800) } else { Duration::from_secs(2) },
                flood: if quick { Duration::from_secs(2) } else { Duration::from_secs(5) },
            },
            seed: args.seed,
            soak_clients: args.soak_clients,
            soak_duration: args.soak_duration,
            quick,
            out: out.to_path_buf(),
        },
        targets: args.targets.clone(),
        hang_timeout: args.hang_timeout,
        grace: args.grace,
        server: None,
        next_generation: 0,
        findings: Vec::new(),
        generations: Vec::new(),
        gave_up: None,
        shutdown_crashes: std::collections::BTreeMap::new(),
        stops: 0,
    };
    // The first start must work: without a server there is nothing to check.
    if checker.ensure_server().await.is_none() {
        let f = checker.findings.last().cloned();
        return Err(crate::Error::Unreachable {
            target: args.server.clone(),
            reason: f
                .map_or_else(|| "the server did not start".into(), |f| format!("{}: {}", f.what, f.detail)),
        });
    }

    let mut results: Vec<UnitResult> = Vec::new();
    let mut i = 0;
    while i < units.len() {
        if t0.elapsed() > args.budget {
            results
                .extend(units[i..].iter().map(|u| not_run(u, &format!("budget of {:?} spent", args.budget))));
            break;
        }
        // Parallel batches only within the conformance suite.
        let width = if units[i].suite == Suite::Conformance { args.jobs } else { 1 };
        let mut end = i + 1;
        while end < units.len() && end - i < width && units[end].suite == units[i].suite {
            end += 1;
        }
        let batch = &units[i..end];
        let mut got = checker.run_batch(batch).await;
        if batch.len() > 1 && got.iter().any(|r| r.verdict == Verdict::Crash || r.verdict == Verdict::Hang) {
            // Which one? Each alone on a fresh server.
            let mut alone = Vec::with_capacity(batch.len());
            for u in batch {
                checker.stop_server("stopped to isolate a crash").await;
                let mut r = checker.run_batch(std::slice::from_ref(u)).await.remove(0);
                if let Some(c) = &mut r.crash {
                    c.isolated = true;
                }
                r.detail = format!(
                    "{} (rerun alone after a crash or hang while {} units ran at once)",
                    r.detail,
                    batch.len()
                );
                alone.push(r);
            }
            got = alone;
        }
        for (u, r) in batch.iter().zip(got.iter_mut()) {
            if r.verdict == Verdict::Crash && args.rerun_crashers > 0 {
                let reruns = checker.rerun(u, args.rerun_crashers).await;
                if let Some(c) = &mut r.crash {
                    c.reruns = Some(reruns);
                }
            }
        }
        results.extend(got);
        i = end;
    }
    checker.stop_server("stopped at the end of the check").await;
    let stops = checker.stops;
    for (how, (n, e)) in std::mem::take(&mut checker.shutdown_crashes) {
        checker.findings.push(Finding {
            what: format!("the server crashes when stopped with SIGTERM: {how} ({n} of {stops} stops)"),
            detail: format!(
                "crash report {}; {}",
                e.dir.join("crash.md").display(),
                e.backtrace.iter().take(8).cloned().collect::<Vec<_>>().join(" | ")
            ),
        });
    }
    Ok(CheckRun {
        results,
        findings: checker.findings,
        generations: checker.generations,
        elapsed: t0.elapsed(),
    })
}

/// `harness check`.
pub fn run(args: Args) -> crate::Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| crate::paths::default_out_dir("check", None));
    std::fs::create_dir_all(&out).map_err(|e| crate::Error::io(format!("creating {}", out.display()), e))?;
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Runtime::new().map_err(|e| crate::Error::io("starting the tokio runtime", e))?;
    let run = rt.block_on(check(&args, &out))?;
    let baseline = match &args.baseline {
        Some(d) => Some(report::read_baseline(d)?),
        None => None,
    };
    let r = report::build(&run, &args, argv, baseline.as_ref());
    report::write(&out, &r)?;
    if let Some(path) = &args.junit {
        std::fs::write(path, report::junit(&run, &args.server))
            .map_err(|e| crate::Error::io(format!("writing {}", path.display()), e))?;
    }
    if args.json {
        println!("{}", r.to_json());
    } else {
        print!("{}", report::console(&run));
        println!("report: {}", out.join(report::INDEX_HTML).display());
    }
    if r.verdict.passed {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(crate::Error::Verdict(format!("check FAILED: {}", r.verdict.reasons.join("; "))))
    }
}
