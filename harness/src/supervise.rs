//! `harness supervise`: run a system under test, notice how it dies, and write a crash report with its
//! backtrace symbolized across the executable and every shared library (issue 8).
//!
//! ```text
//! harness supervise [--out DIR] [--maps-interval MS] [--tail N] [--grace S] [--quiet] -- CMD ARGS...
//! ```
//!
//! - The child runs in its own process group with stdin from /dev/null; its stdout and stderr are
//!   piped, tee'd to `stdout.log` / `stderr.log` in the output directory and echoed to ours.
//! - `/proc/PID/maps` is read at spawn, every `--maps-interval` ms, and at once whenever a chunk of
//!   output looks like a backtrace or an abort (the child is usually still alive while it prints its
//!   backtrace). The maps of a dead process cannot be read (the kernel drops them before the parent can
//!   reap it), so the report uses the *last non-empty snapshot*: a library loaded after it is missing
//!   there, and its frames then fall back to the `object(+offset)` text of `backtrace_symbols`.
//! - SIGINT and SIGTERM are forwarded to the child; if it is still alive `--grace` seconds after the
//!   first one, or on a second one, it gets SIGKILL. When the child has exited, its process group
//!   is killed too, so nothing it started is left running.
//! - On a death by signal or a non-zero exit status, `crash.json`, `crash.md` and `maps.txt`
//!   (plus `maps-start.txt`) are written; see [`report`]. A zero exit writes no report.
//!
//! Exit status of `harness supervise`: 0 when the child exited 0; 1 when it died by a signal or exited
//! non-zero (report written); 2 for bad arguments; 4 when the child could not be started or the report
//! could not be written. The default output directory is `target/harness/supervise/<UTC time>-<pid>`.
//!
//! - The child runs under ptrace ([`trace`]): at a fatal signal it is held before it dies, its maps are
//!   read and every thread is unwound from the unwind tables and symbolized (`threads` in the report,
//!   crashing thread first), with no help from the program; then the signal is delivered. The child dies
//!   with the supervisor (parent-death signal, set by the trampoline that execs it).
//! - With a captured fatal signal, `crash.dmp` is written beside the report: a standard minidump of the
//!   same threads, registers, stacks and modules ([`minidump`]), and the report names the crashing
//!   thread, the signal's `si_code` and, for a fault, the faulting address. Hang snapshots get one too
//!   (`hang-N.dmp`).

pub mod minidump;
pub mod report;
pub mod trace;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::signal::unix::{signal, SignalKind};

use crate::symbolize::{Maps, Summary, Symbolizer};
use report::{CrashReport, Exit, LogLine, MapsSnapshot};

/// Shortest accepted `--maps-interval`: reading maps more often costs the child real time.
pub const MIN_MAPS_INTERVAL_MS: u64 = 5;

/// Output-triggered maps reads are at most this frequent, so a chatty child is not slowed down.
const OUTPUT_SNAPSHOT_SPACING: Duration = Duration::from_millis(10);

/// How long to wait for the pipes to close after the child has exited.
const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest log line kept in the tail.
const MAX_TAIL_LINE: usize = 4096;

/// While the child is held at a fatal signal, the grace period's SIGKILL waits this long at a time ...
const KILL_POSTPONE: Duration = Duration::from_millis(500);
/// ... at most this many times (60 s): a capture that takes longer is abandoned.
const MAX_KILL_POSTPONES: u32 = 120;

/// The `State:` line of every thread of `pid` (`/proc/PID/task/TID/status`); empty when it is gone.
pub fn thread_states(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|t| {
            let st = std::fs::read_to_string(t.path().join("status")).ok()?;
            st.lines().find(|l| l.starts_with("State:")).map(str::to_string)
        })
        .collect()
}

/// Is a thread in this `State:` line held by a tracer (ptrace's "tracing stop")?
pub fn is_tracing_stop(state: &str) -> bool {
    state.contains("t (tracing stop)")
}

/// Is any thread of `pid` held by our tracer?
fn held_by_tracer(pid: u32) -> bool {
    thread_states(pid).iter().any(|s| is_tracing_stop(s))
}

/// Largest accepted `--tail` (lines of at most [`MAX_TAIL_LINE`] bytes are held in memory).
pub const MAX_TAIL: usize = 10_000;

/// Arguments of `harness supervise`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for logs and the crash report [default: target/harness/supervise/<UTC time>-<pid>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Milliseconds between /proc/PID/maps snapshots.
    #[arg(long, default_value_t = 100)]
    pub maps_interval: u64,
    /// Number of last log lines in the report.
    #[arg(long, default_value_t = 50)]
    pub tail: usize,
    /// Seconds between forwarding SIGINT/SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
    /// Do not echo the child's output.
    #[arg(long)]
    pub quiet: bool,
    /// Once the child has run this long, snapshot every thread's stack without killing it (a hang):
    /// `hang-N.md` / `hang-N.json`. A SIGQUIT to the supervisor takes one at any time.
    #[arg(long, value_parser = acip::cli::parse_duration, value_name = "DURATION")]
    pub hang_after: Option<Duration>,
    /// The command to run and its arguments (after `--`).
    #[arg(required = true, last = true)]
    pub command: Vec<OsString>,
}

/// What one supervised run observed.
#[derive(Debug)]
pub struct Run {
    pub out_dir: PathBuf,
    pub exit: Exit,
    /// Written only when the child did not exit 0.
    pub report: Option<CrashReport>,
}

pub fn run(args: Args) -> crate::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::io("starting the tokio runtime", e))?;
    let run = rt.block_on(supervise(&args))?;
    match &run.report {
        None => {
            eprintln!(
                "harness supervise: child {}; no crash report ({})",
                run.exit.describe(),
                run.out_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(r) => {
            let Summary { placed, named, conflicts, .. } = r.summary;
            eprintln!(
                "harness supervise: child {}; crash report in {} ({} backtrace addresses, {placed} placed, {named} named, {conflicts} conflicts)",
                run.exit.describe(),
                run.out_dir.join("crash.md").display(),
                r.frames.len(),
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// State shared by the output pumps and the maps sampler.
struct Shared {
    pid: u32,
    start: Instant,
    tail_len: usize,
    tail: Mutex<VecDeque<LogLine>>,
    maps: Mutex<MapsState>,
}

#[derive(Default)]
struct MapsState {
    first: Option<MapsSnapshot>,
    last: Option<MapsSnapshot>,
    taken: usize,
    last_read: Option<Instant>,
    /// The child's working directory at the last good snapshot: relative object paths in its
    /// backtrace text (`./server(+0x1234)`) are relative to it.
    cwd: Option<PathBuf>,
}

impl Shared {
    /// Reads the child's maps now; keeps the text if it maps any file-backed code.
    fn snapshot(&self, reason: &'static str) {
        let now = Instant::now();
        {
            let state = self.maps.lock().expect("maps lock");
            if reason == "output" && state.last_read.is_some_and(|t| now - t < OUTPUT_SNAPSHOT_SPACING) {
                return;
            }
        }
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)) else { return };
        let mut state = self.maps.lock().expect("maps lock");
        state.last_read = Some(now);
        // An exited child's maps read as empty; one read in the middle of exec holds only the stack.
        // Neither can place a single frame, so neither replaces a real snapshot.
        let has_code = text.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.nth(1).is_some_and(|perms| perms.as_bytes().get(2) == Some(&b'x'))
                && f.nth(3).is_some_and(|p| p.starts_with('/'))
        });
        if !has_code {
            return;
        }
        let cwd = std::fs::read_link(format!("/proc/{}/cwd", self.pid)).ok();
        let snap = MapsSnapshot {
            mappings: text.lines().filter(|l| !l.trim().is_empty()).count(),
            text,
            taken_at_ms: ms(now - self.start),
            reason,
        };
        state.taken += 1;
        state.cwd = cwd.or(state.cwd.take());
        if state.first.is_none() {
            state.first = Some(snap.clone());
        }
        // A read while the process is being torn down (after the fatal signal) can list only part of its
        // mappings: what the last snapshot mapped and this one lost is kept where nothing new took its
        // addresses.
        let snap = match &state.last {
            Some(last) => {
                let text = merge_lost(&snap.text, &last.text);
                MapsSnapshot { mappings: text.lines().count(), text, ..snap }
            }
            None => snap,
        };
        state.last = Some(snap);
    }

    /// The maps read at the fatal signal, while the process was alive and stopped: they replace every
    /// earlier snapshot.
    fn keep_capture_maps(&self, text: &str) {
        let mut state = self.maps.lock().expect("maps lock");
        state.taken += 1;
        state.last = Some(MapsSnapshot {
            mappings: text.lines().filter(|l| !l.trim().is_empty()).count(),
            text: text.to_string(),
            taken_at_ms: ms(self.start.elapsed()),
            reason: "fatal signal (ptrace)",
        });
    }

    fn push_line(&self, stream: &'static str, bytes: &[u8]) {
        if self.tail_len == 0 {
            return;
        }
        let cut = &bytes[..bytes.len().min(MAX_TAIL_LINE)];
        let text = String::from_utf8_lossy(cut).trim_end_matches(['\n', '\r']).to_string();
        let mut tail = self.tail.lock().expect("tail lock");
        if tail.len() == self.tail_len {
            tail.pop_front();
        }
        tail.push_back(LogLine { stream, text });
    }
}

/// The address range of one maps line.
fn range(line: &str) -> Option<(u64, u64)> {
    let (a, b) = line.split_whitespace().next()?.split_once('-')?;
    Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
}

/// `new` plus the file-backed mappings of `old` whose object `new` no longer maps and whose addresses
/// nothing in `new` overlaps, in address order. A process that is being torn down loses mappings from
/// its maps file before it is gone; the frames of its crash still point into them.
fn merge_lost(new: &str, old: &str) -> String {
    let object = |l: &str| l.split_whitespace().nth(5).filter(|p| p.starts_with('/')).map(str::to_string);
    let objects: std::collections::BTreeSet<String> = new.lines().filter_map(object).collect();
    let taken: Vec<(u64, u64)> = new.lines().filter_map(range).collect();
    let mut lines: Vec<&str> = new.lines().filter(|l| !l.trim().is_empty()).collect();
    for l in old.lines() {
        let (Some(obj), Some((a, b))) = (object(l), range(l)) else { continue };
        if !objects.contains(&obj) && !taken.iter().any(|&(x, y)| a < y && x < b) {
            lines.push(l);
        }
    }
    lines.sort_by_key(|l| range(l).map_or(0, |r| r.0));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Does this chunk of output look like the start of a crash dump? Then the maps are read right away.
fn looks_like_crash_output(chunk: &[u8]) -> bool {
    const NEEDLES: [&[u8]; 8] =
        [b"[0x", b"acktrace", b"abort", b"Abort", b"SIG", b"panicked", b"Assertion", b"double free"];
    NEEDLES.iter().any(|n| chunk.windows(n.len()).any(|w| w == *n))
}

/// Copies one output stream of the child to its log file and to ours, line by line into the tail.
async fn pump(
    mut src: impl AsyncRead + Unpin,
    stream: &'static str,
    mut log: std::fs::File,
    echo: bool,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut line = Vec::new();
    loop {
        let n = src.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if looks_like_crash_output(chunk) {
            shared.snapshot("output");
        }
        log.write_all(chunk)?;
        if echo {
            // Echo failures (a closed terminal) must not stop the logging.
            let _ = if stream == "stdout" {
                std::io::stdout().lock().write_all(chunk)
            } else {
                std::io::stderr().lock().write_all(chunk)
            };
        }
        for piece in chunk.split_inclusive(|&b| b == b'\n') {
            if line.len() < MAX_TAIL_LINE {
                line.extend_from_slice(&piece[..piece.len().min(MAX_TAIL_LINE - line.len())]);
            }
            if piece.ends_with(b"\n") {
                shared.push_line(stream, &line);
                line.clear();
            }
        }
    }
    if !line.is_empty() {
        shared.push_line(stream, &line);
    }
    log.flush()
}

/// Every thread of a capture, symbolized (the first address of each is the instruction itself, the others
/// return addresses).
fn thread_reports(
    c: &trace::Capture,
    symbolizer: &mut Symbolizer,
    maps: Option<&Maps>,
) -> Vec<report::ThreadReport> {
    let reports = c
        .threads
        .iter()
        .map(|t| report::ThreadReport {
            tid: t.tid,
            name: t.name.clone(),
            crashed: t.crashed,
            signal: t.crashed.then(|| c.signal.as_str().to_string()),
            frames: t
                .pcs
                .iter()
                .enumerate()
                .map(|(i, &addr)| {
                    symbolizer.adjust_return_addresses = i > 0;
                    symbolizer.symbolize(&crate::symbolize::RawFrame { addr, hint: None, line: 0 }, maps)
                })
                .collect(),
            note: t.note.clone(),
        })
        .collect();
    symbolizer.adjust_return_addresses = true;
    reports
}

/// The crashing thread of a capture, with the signal's details and its registers.
fn crash_site(c: &trace::Capture) -> Option<report::CrashSite> {
    let t = c.threads.iter().find(|t| t.crashed)?;
    let named = c.siginfo.and_then(|i| report::si_code_name(i.signo, i.code));
    Some(report::CrashSite {
        tid: t.tid,
        thread_name: t.name.clone(),
        signal: c.signal.as_str().to_string(),
        signo: c.signal as i32,
        si_code: c.siginfo.map(|i| i.code),
        si_code_name: named.map(|n| n.0.to_string()),
        si_code_meaning: named.map(|n| n.1.to_string()),
        fault_address: c.siginfo.and_then(|i| i.addr).map(|a| format!("{a:#x}")),
        registers: t
            .regs
            .iter()
            .flat_map(|r| r.named())
            .map(|(name, v)| (name.to_string(), format!("{v:#x}")))
            .collect(),
    })
}

/// A snapshot of the live child (`--hang-after`, SIGQUIT): written as `hang-N.md` / `hang-N.json`, and as a
/// minidump, `hang-N.dmp`.
async fn snapshot_live(
    snapshots: &trace::Snapshots,
    pid: u32,
    out_dir: &std::path::Path,
    files: &mut Vec<String>,
) {
    let s = snapshots.clone();
    let Ok(Some(capture)) = tokio::task::spawn_blocking(move || s.take(Duration::from_secs(5))).await else {
        eprintln!("harness supervise: could not snapshot the child (gone, or not traced)");
        return;
    };
    let maps = Maps::parse(&capture.maps).ok();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|_| PathBuf::from("/"));
    let mut symbolizer = Symbolizer::new(cwd);
    let threads = thread_reports(&capture, &mut symbolizer, maps.as_ref());
    let n = files.len() + 1;
    let md = report::threads_markdown(&format!("Snapshot {n} of the live child (pid {pid})"), &threads, None);
    let json = serde_json::to_string_pretty(&threads).unwrap_or_default();
    let (md_name, json_name) = (format!("hang-{n}.md"), format!("hang-{n}.json"));
    let written = std::fs::write(out_dir.join(&md_name), md)
        .and_then(|()| std::fs::write(out_dir.join(&json_name), json))
        .and_then(|()| std::fs::write(out_dir.join(format!("hang-{n}.dmp")), minidump::write(&capture)));
    match written {
        Ok(()) => {
            eprintln!(
                "harness supervise: snapshot of the live child in {}",
                out_dir.join(&md_name).display()
            );
            files.push(md_name);
        }
        Err(e) => eprintln!("harness supervise: writing the snapshot: {e}"),
    }
}

/// The program as `exec` would find it (a path, or the first executable of that name on `PATH`), so a
/// missing program is an error here rather than in the traced child.
fn resolve_program(program: &std::ffi::OsStr) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let path = PathBuf::from(program);
    if path.components().count() > 1 || program.to_string_lossy().contains('/') {
        return if executable(&path) {
            Ok(path)
        } else {
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such executable file"))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&path))
        .find(|p| executable(p))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not found on PATH"))
}

/// Kills the child's process group when dropped, so no exit path (error, panic) leaves it running.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    /// Kills the group now, once: later the group id may name nothing or, in theory, a new group.
    fn kill_now(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (nothing left in the group) is the normal case.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Runs the child to its end and writes the report if it crashed.
pub async fn supervise(args: &Args) -> crate::Result<Run> {
    let (program, rest) =
        args.command.split_first().ok_or_else(|| crate::Error::Usage("no command given after --".into()))?;
    if args.tail > MAX_TAIL {
        return Err(crate::Error::Usage(format!("--tail must be at most {MAX_TAIL} lines")));
    }
    if args.maps_interval < MIN_MAPS_INTERVAL_MS {
        return Err(crate::Error::Usage(format!(
            "--maps-interval must be at least {MIN_MAPS_INTERVAL_MS} ms"
        )));
    }
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| crate::paths::default_out_dir("supervise", Some(&std::process::id().to_string())));
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| crate::Error::io(format!("creating {}", out_dir.display()), e))?;
    let create = |name: &str| {
        let p = out_dir.join(name);
        std::fs::File::create(&p).map_err(|e| crate::Error::io(format!("creating {}", p.display()), e))
    };
    let (stdout_log, stderr_log) = (create("stdout.log")?, create("stderr.log")?);
    let command_shown: Vec<String> = args.command.iter().map(|s| s.to_string_lossy().into_owned()).collect();

    // Install the handlers before spawning so a signal in between is not lost.
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| crate::Error::io("installing SIGINT", e))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| crate::Error::io("installing SIGTERM", e))?;
    let mut sigquit = signal(SignalKind::quit()).map_err(|e| crate::Error::io("installing SIGQUIT", e))?;

    let started_wall = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let start = Instant::now();
    // Under ptrace (see `trace`): the child is held at a fatal signal and captured from outside.
    let starting = |e| crate::Error::io(format!("starting {}", program.to_string_lossy()), e);
    let resolved = resolve_program(program).map_err(starting)?;
    let command: Vec<OsString> =
        std::iter::once(resolved.into_os_string()).chain(rest.iter().cloned()).collect();
    let (spawned, ended_rx) = trace::spawn(&command).map_err(starting)?;
    let pid = spawned.pid;
    let child_pid = Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"));
    let mut group = GroupGuard(Some(child_pid));
    let child_stdout = tokio::process::ChildStdout::from_std(spawned.stdout)
        .map_err(|e| crate::Error::io("child stdout", e))?;
    let child_stderr = tokio::process::ChildStderr::from_std(spawned.stderr)
        .map_err(|e| crate::Error::io("child stderr", e))?;
    let mut ended = tokio::task::spawn_blocking(move || ended_rx.recv());
    let snapshots = spawned.snapshots.clone();
    let mut hang_at = args.hang_after.map(|d| tokio::time::Instant::now() + d);
    let mut hang_files: Vec<String> = Vec::new();

    let shared = Arc::new(Shared {
        pid,
        start,
        tail_len: args.tail,
        tail: Mutex::new(VecDeque::new()),
        maps: Mutex::new(MapsState::default()),
    });
    shared.snapshot("start");

    let out_pump = tokio::spawn(pump(child_stdout, "stdout", stdout_log, !args.quiet, shared.clone()));
    let err_pump = tokio::spawn(pump(child_stderr, "stderr", stderr_log, !args.quiet, shared.clone()));
    let sampler = {
        let shared = shared.clone();
        let every = Duration::from_millis(args.maps_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                shared.snapshot("periodic");
            }
        })
    };

    let mut forwarded = Vec::new();
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut postponed = 0u32;
    let status = loop {
        let forward = tokio::select! {
            r = &mut ended => match r {
                Ok(Ok(end)) => break end,
                _ => return Err(crate::Error::io("waiting for the child", std::io::Error::other("the tracer thread ended"))),
            },
            _ = sigint.recv() => Signal::SIGINT,
            _ = sigterm.recv() => Signal::SIGTERM,
            _ = sigquit.recv() => {
                snapshot_live(&snapshots, pid, &out_dir, &mut hang_files).await;
                continue;
            }
            _ = async { tokio::time::sleep_until(hang_at.expect("guarded")).await }, if hang_at.is_some() => {
                hang_at = None;
                snapshot_live(&snapshots, pid, &out_dir, &mut hang_files).await;
                continue;
            }
            _ = async { tokio::time::sleep_until(kill_at.expect("guarded")).await }, if kill_at.is_some() => {
                // A child held at a fatal signal is being captured (unwinding every thread of a large
                // program takes seconds): its crash is what the grace period was waiting for, so wait on.
                if held_by_tracer(pid) && postponed < MAX_KILL_POSTPONES {
                    postponed += 1;
                    kill_at = Some(tokio::time::Instant::now() + KILL_POSTPONE);
                    continue;
                }
                let _ = kill(child_pid, Signal::SIGKILL);
                kill_at = None;
                forwarded.push("SIGKILL (grace period over)".to_string());
                continue;
            }
        };
        if kill_at.is_some() {
            // A second request: stop waiting.
            let _ = kill(child_pid, Signal::SIGKILL);
            forwarded.push(format!("SIGKILL (second {forward})"));
        } else {
            let _ = kill(child_pid, forward);
            forwarded.push(forward.as_str().to_string());
            kill_at = Some(tokio::time::Instant::now() + Duration::from_secs(args.grace));
        }
    };
    let duration_ms = ms(start.elapsed());
    sampler.abort();
    // Whatever the child left in its group goes now; then the pipes close.
    group.kill_now();
    for pump in [out_pump, err_pump] {
        match tokio::time::timeout(PIPE_DRAIN_TIMEOUT, pump).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(crate::Error::io("copying the child's output", e)),
            Ok(Err(join)) => {
                return Err(crate::Error::io("copying the child's output", std::io::Error::other(join)))
            }
            // A pipe still held open by an escaped process: the report uses what arrived.
            Err(_) => {}
        }
    }

    let trace::Ended { status, capture, traced, children } = status;
    let children: Vec<report::ChildExit> = children
        .into_iter()
        .map(|(pid, status)| report::ChildExit { pid, exit: Exit::from_status(status) })
        .collect();
    if let Some(c) = &capture {
        // Read while the process was alive and stopped at its fatal signal: the best snapshot there is.
        shared.keep_capture_maps(&c.maps);
    }
    let exit = Exit::from_status(status);
    if exit.is_clean() {
        return Ok(Run { out_dir, exit, report: None });
    }
    let (first, last, taken, child_cwd) = {
        let state = shared.maps.lock().expect("maps lock");
        (state.first.clone(), state.last.clone(), state.taken, state.cwd.clone())
    };
    let write = |name: &str, text: &str| {
        let p = out_dir.join(name);
        std::fs::write(&p, text).map_err(|e| crate::Error::io(format!("writing {}", p.display()), e))
    };
    let mut maps_note = None;
    let maps = match &last {
        Some(snap) => {
            write("maps.txt", &snap.text)?;
            if let Some(first) = &first {
                write("maps-start.txt", &first.text)?;
            }
            match Maps::parse(&snap.text) {
                Ok(m) => Some(m),
                Err(e) => {
                    maps_note =
                        Some(format!("the maps snapshot did not parse ({e}); symbolized from text only"));
                    None
                }
            }
        }
        None => {
            maps_note = Some("no maps snapshot could be read (the child ended before the first read)".into());
            None
        }
    };
    if let (Some(snap), None) = (&last, &maps_note) {
        if snap.reason == "start" {
            maps_note = Some(
                "only the spawn-time snapshot exists (the child died before the first periodic read), so shared \
                 libraries are missing from it; their frames were placed from the backtrace text"
                    .into(),
            );
        }
    }
    let base_dir = match child_cwd {
        Some(dir) => dir,
        None => std::env::current_dir().map_err(|e| crate::Error::io("reading the current directory", e))?,
    };
    let mut symbolizer = Symbolizer::new(base_dir);
    let (frames, frames_dropped, other_hex_values) = report::collect_frames(
        [("stdout", &out_dir.join("stdout.log")), ("stderr", &out_dir.join("stderr.log"))],
        maps.as_ref(),
        &mut symbolizer,
    )
    .map_err(|e| crate::Error::io("reading the logs back", e))?;
    let summary = Summary::of(&frames.iter().map(|f| f.frame.clone()).collect::<Vec<_>>());
    let threads =
        capture.as_ref().map(|c| thread_reports(c, &mut symbolizer, maps.as_ref())).unwrap_or_default();
    let capture_note = match (&traced, &capture) {
        (Err(why), _) => Some(why.clone()),
        (Ok(()), None) => {
            Some("no fatal signal was seen (the child exited or was killed): no threads captured".into())
        }
        (Ok(()), Some(_)) => None,
    };
    let tail = shared.tail.lock().expect("tail lock").iter().cloned().collect();
    let crash = capture.as_ref().and_then(crash_site);
    let dump = match &capture {
        Some(c) => {
            let bytes = minidump::write(c);
            let p = out_dir.join("crash.dmp");
            std::fs::write(&p, &bytes)
                .map_err(|e| crate::Error::io(format!("writing {}", p.display()), e))?;
            Some(report::MinidumpFile { file: "crash.dmp".into(), bytes: bytes.len() })
        }
        None => None,
    };
    let cross_check = report::cross_check(&frames, &threads);
    let report = CrashReport {
        command: command_shown,
        pid,
        started_at: acip::cli::rfc3339(started_wall),
        duration_ms,
        exit: exit.clone(),
        forwarded_signals: forwarded,
        stdout_log: "stdout.log".into(),
        stderr_log: "stderr.log".into(),
        tail,
        maps: last,
        maps_snapshots_taken: taken,
        maps_note,
        frames,
        frames_dropped,
        summary,
        other_hex_values,
        threads,
        capture_note,
        children,
        hang_snapshots: hang_files,
        cross_check,
        crash,
        minidump: dump,
    };
    write("crash.json", &report.to_json())?;
    write("crash.md", &report.to_markdown())?;
    Ok(Run { out_dir, exit, report: Some(report) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_torn_down_maps_read_keeps_what_it_lost() {
        let whole = "5555-6666 r-xp 0 fe:00 1 /bin/app\n7000-8000 r-xp 0 fe:00 2 /lib/libcrash.so\n\
                     9000-a000 r-xp 0 fe:00 3 /lib/libc.so.6\n";
        // Read during teardown: the crash path loaded libgcc_s, and the rest is already gone.
        let partial = "5555-6666 r-xp 0 fe:00 1 /bin/app\nb000-c000 r-xp 0 fe:00 4 /lib/libgcc_s.so.1\n";
        let merged = super::merge_lost(partial, whole);
        let objects: Vec<&str> = merged.lines().filter_map(|l| l.split_whitespace().nth(5)).collect();
        assert_eq!(objects, ["/bin/app", "/lib/libcrash.so", "/lib/libc.so.6", "/lib/libgcc_s.so.1"]);
        // A lost object whose addresses something new took is not brought back.
        let reused = "5555-6666 r-xp 0 fe:00 1 /bin/app\n7000-8000 r-xp 0 fe:00 5 /lib/libother.so\n";
        assert!(!super::merge_lost(reused, whole).contains("libcrash"));
        assert_eq!(super::merge_lost(whole, whole), whole);
    }
}
