//! Crash capture from outside the crashing program (issue 13, first part): the child runs under ptrace,
//! and at a fatal signal (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGTRAP) it is held before it dies:
//! its maps are read while it is alive, every thread is stopped and its registers read, and each thread
//! is unwound from the unwind tables (`.eh_frame` of the executable and of every shared object, with
//! framehop); then the signal is delivered, so the exit status is the real one. Nothing is asked of the
//! program: no printing, no handler, no frame pointers.
//!
//! How the child starts traced without `pre_exec` (unsafe code is forbidden here): `harness` runs itself
//! as a trampoline ([`TRAMPOLINE`]) that sets the parent-death signal (so the child dies with the
//! supervisor), stops itself with SIGSTOP and then `exec`s the command; the tracer thread seizes the
//! stopped trampoline and lets it go. If ptrace is not permitted (a container without CAP_SYS_PTRACE, a
//! Yama setting), the child runs untraced and the report says so.
//!
//! Not done yet (issue 13): minidumps, hang snapshots, the fault address of a SIGSEGV, the exits of
//! processes the child forks, x86-64 only. Group stops are not kept (a SIGSTOP sent to the child is
//! delivered and the child continued).

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The hidden `harness` subcommand that stops itself and then execs the command (see the module docs).
pub const TRAMPOLINE: &str = "__trace-exec";

/// Signals at which the child is captured before it dies.
pub const FATAL: [Signal; 6] =
    [Signal::SIGSEGV, Signal::SIGABRT, Signal::SIGBUS, Signal::SIGFPE, Signal::SIGILL, Signal::SIGTRAP];

/// Most frames walked per thread.
pub const MAX_FRAMES: usize = 128;

/// Most threads captured.
pub const MAX_THREADS: usize = 1024;

/// One thread as it was at the fatal signal.
#[derive(Debug, Clone)]
pub struct ThreadCapture {
    pub tid: u32,
    /// `/proc/PID/task/TID/comm`.
    pub name: String,
    /// The thread the fatal signal was for.
    pub crashed: bool,
    /// The instruction pointer, then the return addresses of the frame-pointer chain.
    pub pcs: Vec<u64>,
    /// Why the walk stopped early or could not start, if it did.
    pub note: Option<String>,
}

/// The process at its fatal signal.
#[derive(Debug, Clone)]
pub struct Capture {
    pub signal: Signal,
    /// `/proc/PID/maps`, read while the process was alive and stopped.
    pub maps: String,
    /// The crashing thread first.
    pub threads: Vec<ThreadCapture>,
}

/// How the child ended, and what was captured on the way.
#[derive(Debug)]
pub struct Ended {
    pub status: ExitStatus,
    pub capture: Option<Capture>,
    /// Processes the child forked (traced too), with how each ended, in the order they ended.
    pub children: Vec<(u32, ExitStatus)>,
    /// `false` when ptrace was refused and the child ran untraced (with the reason).
    pub traced: Result<(), String>,
}

/// A started child: its pid and output pipes.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
    /// Asks the tracer for a snapshot of the live child ([`Snapshots::take`]).
    pub snapshots: Snapshots,
}

/// Snapshots of a live, traced child: every thread unwound without killing it (a hang).
#[derive(Debug, Clone)]
pub struct Snapshots {
    pid: Pid,
    requests: mpsc::Sender<mpsc::SyncSender<Capture>>,
}

impl Snapshots {
    /// Stops the child for a moment, unwinds every thread and lets it go on. The tracer is woken by a
    /// SIGSTOP it then swallows. `None` if the child is gone or did not stop within `wait`.
    pub fn take(&self, wait: std::time::Duration) -> Option<Capture> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.requests.send(tx).ok()?;
        kill(self.pid, Signal::SIGSTOP).ok()?;
        rx.recv_timeout(wait).ok()
    }
}

/// The trampoline, run in the child (`harness __trace-exec -- CMD ARGS`): dies with its parent, stops
/// until the tracer has seized it, then becomes the command. Returns only if `exec` failed.
pub fn trampoline(command: &[OsString]) -> std::io::Error {
    let Some((program, rest)) = command.split_first() else {
        return std::io::Error::other("no command given");
    };
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let _ = nix::sys::signal::raise(Signal::SIGSTOP);
    Command::new(program).args(rest).exec()
}

/// Starts `command` traced (see the module docs) in its own process group with stdin from /dev/null. The
/// tracer is a thread of its own (ptrace requests must come from the thread that attached); its result
/// arrives on the returned channel when the child has ended.
pub fn spawn(command: &[OsString]) -> std::io::Result<(Spawned, mpsc::Receiver<Ended>)> {
    let exe = std::env::current_exe()?;
    let command = command.to_vec();
    let (started_tx, started_rx) = mpsc::sync_channel(1);
    let (ended_tx, ended_rx) = mpsc::sync_channel(1);
    let (requests, requests_rx) = mpsc::channel();
    std::thread::Builder::new().name("harness-tracer".into()).spawn(move || {
        let child = Command::new(exe)
            .arg(TRAMPOLINE)
            .arg("--")
            .args(&command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = started_tx.send(Err(e));
                return;
            }
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = started_tx.send(Err(std::io::Error::other("child pipes missing")));
            return;
        };
        let pid = child.id();
        // The child is reaped below with waitpid; `child` is never waited on (dropping it does not wait).
        drop(child);
        let snapshots = Snapshots { pid: Pid::from_raw(pid as i32), requests };
        let _ = started_tx.send(Ok(Spawned { pid, stdout, stderr, snapshots }));
        let _ = ended_tx.send(trace(Pid::from_raw(pid as i32), &requests_rx));
    })?;
    let spawned = started_rx.recv().map_err(|_| std::io::Error::other("the tracer thread ended"))??;
    Ok((spawned, ended_rx))
}

fn raw_status(status: WaitStatus) -> Option<ExitStatus> {
    match status {
        WaitStatus::Exited(_, code) => Some(ExitStatus::from_raw((code & 0xff) << 8)),
        WaitStatus::Signaled(_, sig, core) => {
            Some(ExitStatus::from_raw(sig as i32 | if core { 0x80 } else { 0 }))
        }
        _ => None,
    }
}

/// Follows the child from its self-stop to its end.
fn trace(pid: Pid, requests: &mpsc::Receiver<mpsc::SyncSender<Capture>>) -> Ended {
    // 1. The trampoline stops itself before exec (or fails to start at all).
    loop {
        match waitpid(pid, Some(WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Stopped(_, _)) => break,
            Ok(s) => {
                if let Some(status) = raw_status(s) {
                    return Ended {
                        status,
                        capture: None,
                        children: Vec::new(),
                        traced: Err("the child ended before exec".into()),
                    };
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => return lost(e),
        }
    }
    // 2. Seize it, then let it go.
    let options = Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_TRACEVFORK
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_EXITKILL;
    let traced = ptrace::seize(pid, options).map_err(|e| format!("ptrace refused ({e}): captured nothing"));
    let _ = kill(pid, Signal::SIGCONT);
    if traced.is_err() {
        loop {
            match waitpid(pid, None) {
                Ok(s) => {
                    if let Some(status) = raw_status(s) {
                        return Ended { status, capture: None, children: Vec::new(), traced };
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return lost(e),
            }
        }
    }
    // 3. Every stop of every thread of the child comes here.
    let mut capture: Option<Capture> = None;
    let mut forked: std::collections::BTreeSet<Pid> = std::collections::BTreeSet::new();
    let mut children = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)) {
            Ok(s @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _))) if p == pid => {
                let status = raw_status(s).unwrap_or(ExitStatus::from_raw(0));
                return Ended { status, capture, children, traced };
            }
            Ok(s @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _))) if forked.remove(&p) => {
                if let Some(status) = raw_status(s) {
                    children.push((p.as_raw() as u32, status));
                }
            }
            Ok(WaitStatus::Stopped(tid, sig)) => {
                let ours = std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists();
                if sig == Signal::SIGSTOP && ours {
                    if let Ok(reply) = requests.try_recv() {
                        // A snapshot was asked for: the SIGSTOP was only the doorbell.
                        let _ = reply.send(capture_process(pid, tid, sig, false));
                        let _ = ptrace::cont(tid, None);
                        continue;
                    }
                }
                if FATAL.contains(&sig) && capture.is_none() && ours {
                    capture = Some(capture_process(pid, tid, sig, true));
                }
                // Deliver the signal: a fatal one then ends the process with its real status.
                let _ = ptrace::cont(tid, sig);
            }
            Ok(WaitStatus::PtraceEvent(tid, _, event)) => {
                let fork =
                    [ptrace::Event::PTRACE_EVENT_FORK as i32, ptrace::Event::PTRACE_EVENT_VFORK as i32];
                if fork.contains(&event) {
                    if let Ok(child) = ptrace::getevent(tid) {
                        forked.insert(Pid::from_raw(child as i32));
                    }
                }
                let _ = ptrace::cont(tid, None);
            }
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(e) => return lost(e),
        }
    }
}

fn lost(e: Errno) -> Ended {
    Ended {
        status: ExitStatus::from_raw(0xff << 8),
        capture: None,
        children: Vec::new(),
        traced: Err(format!("waiting for the child: {e}")),
    }
}

/// Stops every thread of `pid` (the crashing one, `crashed`, is already stopped), reads maps, registers
/// and frame-pointer chains, and lets the other threads go on.
fn capture_process(pid: Pid, crashed: Pid, signal: Signal, fatal: bool) -> Capture {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mem = File::open(format!("/proc/{pid}/mem")).ok();
    let mut tids: Vec<Pid> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .map(Pid::from_raw)
                .take(MAX_THREADS)
                .collect()
        })
        .unwrap_or_default();
    tids.sort_by_key(|t| (*t != crashed, t.as_raw()));
    if !tids.contains(&crashed) {
        tids.insert(0, crashed);
    }
    let unwinder = unwinder_for(&maps);
    let mut threads = Vec::new();
    let mut resume: Vec<(Pid, Option<Signal>)> = Vec::new();
    for tid in tids {
        let is_crashed = tid == crashed;
        let mut note = None;
        if !is_crashed {
            match stop_thread(tid) {
                Ok(pending) => resume.push((tid, pending)),
                Err(why) => note = Some(why),
            }
        }
        let pcs = match (note.is_none(), regs_of(tid)) {
            (true, Ok((pc, sp, fp))) => unwind(&unwinder, mem.as_ref(), pc, sp, fp, &mut note),
            (true, Err(e)) => {
                note = Some(format!("registers unreadable: {e}"));
                Vec::new()
            }
            (false, _) => Vec::new(),
        };
        let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let crashed = is_crashed && fatal;
        threads.push(ThreadCapture { tid: tid.as_raw() as u32, name, crashed, pcs, note });
    }
    for (tid, sig) in resume {
        let _ = ptrace::cont(tid, sig);
    }
    Capture { signal, maps, threads }
}

/// The instruction pointer, stack pointer and frame pointer of a stopped thread.
#[cfg(target_arch = "x86_64")]
fn regs_of(tid: Pid) -> nix::Result<(u64, u64, u64)> {
    ptrace::getregs(tid).map(|r| (r.rip, r.rsp, r.rbp))
}

/// Only x86-64 is unwound so far.
#[cfg(not(target_arch = "x86_64"))]
fn regs_of(_tid: Pid) -> nix::Result<(u64, u64, u64)> {
    Err(Errno::ENOSYS)
}

type Unwinder = framehop::x86_64::UnwinderX86_64<Vec<u8>>;

/// An unwinder over every file-backed executable mapping of `maps`, from each object's `.eh_frame`
/// (with `.eh_frame_hdr` and `.text`), placed at its load address.
fn unwinder_for(maps: &str) -> Unwinder {
    use framehop::Unwinder as _;
    use object::{Object, ObjectSection, ObjectSegment};
    let mut unwinder = Unwinder::new();
    let mut seen = std::collections::BTreeSet::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(perms), Some(offset), Some(path)) = (f.first(), f.get(1), f.get(2), f.get(5))
        else {
            continue;
        };
        if !perms.contains('x') || !path.starts_with('/') || !seen.insert(path.to_string()) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end), Ok(offset)) =
            (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16), u64::from_str_radix(offset, 16))
        else {
            continue;
        };
        let Ok(data) = std::fs::read(path) else { continue };
        let Ok(file) = object::File::parse(&*data) else { continue };
        // The load bias: the executable mapping's file offset lies in one segment, whose address it has.
        let Some(seg) = file.segments().find(|s| {
            let (o, n) = s.file_range();
            (o..o + n).contains(&offset)
        }) else {
            continue;
        };
        let bias = start.wrapping_sub(seg.address() + (offset - seg.file_range().0));
        let section = |name: &str| {
            file.section_by_name(name)
                .and_then(|s| Some((s.address()..s.address() + s.size(), s.data().ok()?.to_vec())))
        };
        let (text, eh_frame, eh_frame_hdr) =
            (section(".text"), section(".eh_frame"), section(".eh_frame_hdr"));
        let info = framehop::ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: text.as_ref().map(|t| t.0.clone()),
            text: text.map(|t| t.1),
            eh_frame_svma: eh_frame.as_ref().map(|t| t.0.clone()),
            eh_frame: eh_frame.map(|t| t.1),
            eh_frame_hdr_svma: eh_frame_hdr.as_ref().map(|t| t.0.clone()),
            eh_frame_hdr: eh_frame_hdr.map(|t| t.1),
            ..Default::default()
        };
        unwinder.add_module(framehop::Module::new(path.to_string(), start..end, bias, info));
    }
    unwinder
}

/// The instruction pointer, then each caller's return address, unwound from the unwind tables
/// (`.eh_frame`), with the frame-pointer chain where a table has no entry.
fn unwind(
    unwinder: &Unwinder,
    mem: Option<&File>,
    pc: u64,
    sp: u64,
    fp: u64,
    note: &mut Option<String>,
) -> Vec<u64> {
    use framehop::Unwinder as _;
    let Some(mem) = mem else {
        *note = Some("memory unreadable: only the instruction pointer".into());
        return vec![pc];
    };
    let mut read_stack = |addr: u64| {
        let mut word = [0u8; 8];
        mem.read_exact_at(&mut word, addr).map(|()| u64::from_le_bytes(word)).map_err(|_| ())
    };
    let mut cache = framehop::x86_64::CacheX86_64::new();
    let regs = framehop::x86_64::UnwindRegsX86_64::new(pc, sp, fp);
    let mut iter = unwinder.iter_frames(pc, regs, &mut cache, &mut read_stack);
    let mut pcs = Vec::new();
    loop {
        match iter.next() {
            Ok(Some(frame)) => {
                pcs.push(frame.address());
                if pcs.len() >= MAX_FRAMES {
                    *note = Some(format!("walk cut at {MAX_FRAMES} frames"));
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                *note = Some(format!("unwinding stopped: {e}"));
                break;
            }
        }
    }
    if pcs.is_empty() {
        pcs.push(pc);
    }
    pcs
}

/// Interrupts one thread and waits for it to stop; returns a signal it was about to receive, to deliver
/// when it is continued.
fn stop_thread(tid: Pid) -> Result<Option<Signal>, String> {
    ptrace::interrupt(tid).map_err(|e| format!("could not stop the thread: {e}"))?;
    loop {
        match waitpid(tid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::PtraceEvent(_, _, _)) => return Ok(None),
            Ok(WaitStatus::Stopped(_, sig)) => return Ok(Some(sig)),
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Err("the thread ended".into()),
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("waiting for the thread: {e}")),
        }
    }
}
