//! The server under test of `harness check`: started under `harness supervise` (its own process group,
//! its output kept, a crash captured from outside), waited for until ready, probed for hangs, snapshotted
//! and stopped, and restarted. Each start is one generation with its own supervise directory.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::peer;
use acip::cli::TargetUrl;

/// Server log lines kept in memory (the full logs are in each generation's supervise directory).
pub const LOG_RING: usize = 2_000;
/// Longest log line kept in memory (longer ones are cut).
pub const MAX_LOG_LINE: usize = 1_000;
/// Lines of the server's log shown when it fails to start.
pub const START_TAIL: usize = 15;
/// Pause between readiness probes while a server starts.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long a server that crashed while being stopped may take to be captured by supervise.
const CAPTURE_LIMIT: Duration = Duration::from_secs(60);
/// How long a hang snapshot (SIGQUIT to the supervisor) may take to appear.
const SNAPSHOT_LIMIT: Duration = Duration::from_secs(10);

/// One line of the server's output, with when it arrived.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub at: Instant,
    pub stream: &'static str,
    pub text: String,
}

/// What the check needs to start the server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The command and its arguments.
    pub command: Vec<String>,
    pub targets: Vec<TargetUrl>,
    pub ready_line: Option<regex::Regex>,
    pub ready_timeout: Duration,
    /// Between SIGTERM and SIGKILL when stopping it.
    pub grace: Duration,
    /// Where the generations' supervise directories go.
    pub dir: PathBuf,
}

/// How a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// `SIGABRT`, `exit 41`, ...
    pub how: String,
    /// Died of a signal or exited non-zero on its own (not stopped by the check).
    pub crashed: bool,
    /// The supervise directory of the generation (crash.md, crash.json, logs).
    pub dir: PathBuf,
    /// The crashing thread's frames from crash.md (empty when there is no crash report).
    pub backtrace: Vec<String>,
}

/// Did a server the check stopped on purpose (SIGTERM) die of something else on the way out?
pub fn crashed_on_shutdown(e: &Ended) -> bool {
    e.how.starts_with("SIG") && !["SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT"].contains(&e.how.as_str())
}

/// Why a start failed.
#[derive(Debug, Clone)]
pub struct StartFailure {
    pub reason: String,
    /// The server's own diagnosis when it could not bind (exit 41 of the reference server, or a log line
    /// about the address), so the check reports a bind finding rather than a harness error.
    pub bind: Option<String>,
    pub tail: Vec<String>,
}

/// A running generation.
pub struct Server {
    pub generation: u32,
    pub dir: PathBuf,
    pub started: Instant,
    child: Child,
    pid: u32,
    log: Arc<Mutex<VecDeque<LogLine>>>,
    lines: watch::Receiver<u64>,
    ended: Option<Ended>,
    /// The check stopped it on purpose (a hang, the end of the run).
    stopping: bool,
}

impl Server {
    /// Starts generation `generation` and waits until it is ready.
    pub async fn start(spec: &ServerSpec, generation: u32) -> Result<Server, StartFailure> {
        let dir = spec.dir.join(format!("server-{generation}"));
        let exe = std::env::current_exe().map_err(|e| StartFailure {
            reason: format!("cannot find the harness executable: {e}"),
            bind: None,
            tail: Vec::new(),
        })?;
        let mut cmd = Command::new(exe);
        cmd.arg("supervise")
            .arg("--out")
            .arg(&dir)
            .args(["--grace", &spec.grace.as_secs().max(1).to_string(), "--"])
            .args(&spec.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| StartFailure {
            reason: format!("cannot start harness supervise: {e}"),
            bind: None,
            tail: Vec::new(),
        })?;
        let pid = child.id().unwrap_or_default();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, lines) = watch::channel(0u64);
        let tx = Arc::new(tx);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, "stdout", log.clone(), tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, "stderr", log.clone(), tx.clone()));
        }
        let mut server = Server {
            generation,
            dir,
            started: Instant::now(),
            child,
            pid,
            log,
            lines,
            ended: None,
            stopping: false,
        };
        match server.wait_ready(spec).await {
            Ok(()) => Ok(server),
            Err(reason) => {
                let exited = server.ended.clone();
                let _ = server.stop(spec.grace).await;
                let tail = server.tail(START_TAIL);
                let bind = bind_diagnosis(exited.as_ref(), &tail);
                Err(StartFailure { reason, bind, tail })
            }
        }
    }

    async fn wait_ready(&mut self, spec: &ServerSpec) -> Result<(), String> {
        let deadline = Instant::now() + spec.ready_timeout;
        let what = match &spec.ready_line {
            Some(re) => format!("a log line matching /{re}/"),
            None => format!(
                "{} to accept a connection{}",
                spec.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" and "),
                if spec.targets.iter().any(TargetUrl::is_ws) {
                    " (and answer the WebSocket upgrade)"
                } else {
                    ""
                }
            ),
        };
        let mut seen_lines = 0usize;
        loop {
            if let Some(e) = self.poll_ended() {
                return Err(format!("the server ended while starting ({}), before {what}", e.how));
            }
            let ready = match &spec.ready_line {
                Some(re) => {
                    let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
                    let found = log.iter().skip(seen_lines).any(|l| re.is_match(&l.text));
                    seen_lines = log.len();
                    found
                }
                None => probe_all(&spec.targets, READY_POLL.max(Duration::from_millis(500))).await.is_ok(),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {:?}: waited for {what}", spec.ready_timeout));
            }
            // A new log line or the poll interval, whichever first.
            let _ = tokio::time::timeout(READY_POLL, self.lines.changed()).await;
        }
    }

    /// The generation's end, if it has ended (without waiting).
    pub fn poll_ended(&mut self) -> Option<Ended> {
        if self.ended.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.ended = Some(self.ending(status));
            }
        }
        self.ended.clone()
    }

    /// Waits for the generation to end (cancel-safe).
    pub async fn wait_ended(&mut self) -> Ended {
        if let Some(e) = &self.ended {
            return e.clone();
        }
        let status = self.child.wait().await;
        let e = match status {
            Ok(s) => self.ending(s),
            Err(e) => Ended {
                how: format!("unknown ({e})"),
                crashed: false,
                dir: self.dir.clone(),
                backtrace: Vec::new(),
            },
        };
        self.ended = Some(e.clone());
        e
    }

    /// Turns the supervisor's exit into the server's: supervise writes crash.md when its child did not exit 0.
    fn ending(&self, _supervisor: std::process::ExitStatus) -> Ended {
        let (how, backtrace) = read_crash(&self.dir);
        let crashed = !self.stopping && how.as_deref().is_some_and(|h| h != "exit 0");
        Ended { how: how.unwrap_or_else(|| "exit 0".into()), crashed, dir: self.dir.clone(), backtrace }
    }

    /// Is the server dying rather than hung? Held by supervise at a fatal signal (a process under it in
    /// ptrace's "tracing stop": being captured, its report is coming), or no process under the supervisor
    /// is running any more (exited, or a zombie not yet reaped).
    pub fn dying(&self) -> bool {
        let states: Vec<String> =
            descendants(self.pid).into_iter().flat_map(crate::supervise::thread_states).collect();
        states.iter().any(|s| crate::supervise::is_tracing_stop(s))
            || !states.iter().any(|s| !s.contains("Z (zombie)") && !s.contains("X (dead)"))
    }

    /// Is the server still answering? A connection to every target (and the WebSocket upgrade) within
    /// `timeout`.
    pub async fn probe(&self, targets: &[TargetUrl], timeout: Duration) -> Result<(), String> {
        probe_all(targets, timeout).await
    }

    /// A hung server: stack snapshot through supervise (SIGQUIT), then stop. Returns the snapshot file and
    /// how the server ended.
    pub async fn snapshot_and_stop(&mut self, grace: Duration) -> (Option<PathBuf>, Option<Ended>) {
        let before = hang_files(&self.dir);
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGQUIT);
        let deadline = Instant::now() + SNAPSHOT_LIMIT;
        let mut snapshot = None;
        while Instant::now() < deadline && self.poll_ended().is_none() {
            if let Some(f) = hang_files(&self.dir).into_iter().find(|f| !before.contains(f)) {
                snapshot = Some(f);
                break;
            }
            let _ = tokio::time::timeout(READY_POLL, self.lines.changed()).await;
        }
        let ended = self.stop(grace).await;
        (snapshot, ended)
    }

    /// Stops the server: SIGTERM to the supervisor (which forwards it), SIGKILL after `grace`. Returns how
    /// it ended when it was still running (`None` when it had already ended).
    pub async fn stop(&mut self, grace: Duration) -> Option<Ended> {
        if self.poll_ended().is_some() {
            self.stopping = true;
            return None;
        }
        self.stopping = true;
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        // supervise itself escalates to SIGKILL after its own grace; this bounds the supervisor too.
        if tokio::time::timeout(grace + Duration::from_secs(2), self.wait_ended()).await.is_err() {
            // A server that crashed on the way out is being captured by supervise: let it finish.
            let capture = if self.dying() { CAPTURE_LIMIT } else { Duration::ZERO };
            if tokio::time::timeout(capture, self.wait_ended()).await.is_err() {
                let _ = self.child.start_kill();
                let _ = self.wait_ended().await;
            }
        }
        self.ended.clone()
    }

    /// The server's log lines that arrived in `[from, to]`, at most `max` (the first ones).
    pub fn lines_between(&self, from: Instant, to: Instant, max: usize) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter()
            .filter(|l| l.at >= from && l.at <= to)
            .take(max)
            .map(|l| format!("[{}] {}", l.stream, l.text))
            .collect()
    }

    /// The last `n` log lines.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let skip = log.len().saturating_sub(n);
        log.iter().skip(skip).map(|l| format!("[{}] {}", l.stream, l.text)).collect()
    }
}

/// Reads the supervisor's output line by line into the ring (the server's own lines, as supervise echoes
/// them, and supervise's closing line).
async fn pump(
    stream: impl AsyncRead + Unpin,
    name: &'static str,
    log: Arc<Mutex<VecDeque<LogLine>>>,
    tx: Arc<watch::Sender<u64>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(mut text)) = lines.next_line().await {
        if text.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" …");
        }
        {
            let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
            if l.len() == LOG_RING {
                l.pop_front();
            }
            l.push_back(LogLine { at: Instant::now(), stream: name, text });
        }
        tx.send_modify(|n| *n += 1);
    }
}

/// Every target accepts a connection (and answers the WebSocket upgrade) within `timeout`.
pub async fn probe_all(targets: &[TargetUrl], timeout: Duration) -> Result<(), String> {
    for t in targets {
        let target = peer_target(t)?;
        match tokio::time::timeout(timeout, peer::open_stream(&target, false)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("{t}: {e}")),
            Err(_) => return Err(format!("{t}: no answer within {timeout:?}")),
        }
    }
    Ok(())
}

/// The harness peer's target for a URL (resolving its host).
pub fn peer_target(t: &TargetUrl) -> Result<reference_client::Target, String> {
    t.to_string().parse::<reference_client::Target>().map_err(|e| format!("{t}: {e}"))
}

/// Every process under `pid` (from /proc/PID/task/TID/children), at most a few hundred.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else { continue };
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse::<u32>().ok()) {
                if out.len() < 512 && !out.contains(&k) {
                    out.push(k);
                    todo.push(k);
                }
            }
        }
    }
    out
}

fn hang_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("hang-") && n.ends_with(".md"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// From a supervise directory: how the child ended (`SIGABRT`, `exit 41`) and the crashing thread's frames
/// (from crash.md). `None` when supervise wrote no report (the child exited 0).
pub fn read_crash(dir: &Path) -> (Option<String>, Vec<String>) {
    let json = std::fs::read_to_string(dir.join("crash.json")).ok();
    let how = json.as_deref().and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()).and_then(|v| {
        let exit = v.get("exit")?;
        match exit.get("kind")?.as_str()? {
            "signal" => exit.get("name")?.as_str().map(str::to_string),
            _ => exit.get("code")?.as_i64().map(|c| format!("exit {c}")),
        }
    });
    let md = std::fs::read_to_string(dir.join("crash.md")).unwrap_or_default();
    (how, crashing_thread_frames(&md, 16))
}

/// The frame lines of the crashed thread's section of a crash.md (`### Thread N `name` (crashed...)`).
pub fn crashing_thread_frames(md: &str, max: usize) -> Vec<String> {
    let mut lines = md.lines().skip_while(|l| !(l.starts_with("### Thread") && l.contains("(crashed")));
    let Some(header) = lines.next() else { return Vec::new() };
    let mut out = vec![header.trim_start_matches("### ").to_string()];
    out.extend(
        lines
            .skip_while(|l| !l.starts_with("```"))
            .skip(1)
            .take_while(|l| !l.starts_with("```"))
            .take(max)
            .map(str::to_string),
    );
    out
}

/// The bind diagnosis of a failed start: the reference server's exit 41, or a log line about the address.
fn bind_diagnosis(ended: Option<&Ended>, tail: &[String]) -> Option<String> {
    let line = tail.iter().rev().find(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("bind") || l.contains("address already in use") || l.contains("address in use")
    });
    match (ended.map(|e| e.how.as_str()), line) {
        (_, Some(l)) => Some(l.clone()),
        (Some("exit 41"), None) => Some("exit 41 (the reference server's bind failure)".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_crashing_thread_from_a_crash_report() {
        let md = "# crash\n\n## Threads\n\n### Thread 11 `main`\n\n```\n#0 a\n```\n\n### Thread 12 `worker` (crashed: SIGSEGV)\n\n```\n#0   boom at x.c:3\n#1   run at x.c:9\n```\n";
        assert_eq!(
            crashing_thread_frames(md, 16),
            vec!["Thread 12 `worker` (crashed: SIGSEGV)", "#0   boom at x.c:3", "#1   run at x.c:9"]
        );
        assert_eq!(crashing_thread_frames(md, 1).len(), 2);
        assert!(crashing_thread_frames("nothing", 4).is_empty());
        let tail =
            vec!["[stderr] reference-server: cannot bind 127.0.0.1:1: Address already in use".to_string()];
        assert!(bind_diagnosis(None, &tail).unwrap().contains("Address already in use"));
        assert_eq!(bind_diagnosis(None, &["[stdout] hello".into()]), None);
        let ended =
            |how: &str| Ended { how: how.into(), crashed: false, dir: PathBuf::new(), backtrace: Vec::new() };
        assert!(crashed_on_shutdown(&ended("SIGABRT")) && crashed_on_shutdown(&ended("SIGSEGV")));
        for clean in ["SIGTERM", "SIGKILL", "exit 0", "exit 1"] {
            assert!(!crashed_on_shutdown(&ended(clean)), "{clean}");
        }
    }
}
