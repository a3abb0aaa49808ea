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
//! Each thread's full register set and the top of its stack ([`MAX_STACK_COPY`]) are kept too, and the
//! crashing thread's siginfo (the faulting address), so that a standard minidump can be written from the
//! capture afterwards ([`super::minidump`]).
//!
//! Not done yet (issue 13): x86-64 only. Group stops are not kept (a SIGSTOP sent to the child is
//! delivered and the child continued).

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use nix::errno::Errno;
use nix::libc;
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
    /// Every register as read at the stop (the walk started from these).
    pub regs: Option<Registers>,
    /// The stack from just below the stack pointer upwards (see [`MAX_STACK_COPY`]).
    pub stack: Option<StackCopy>,
}

/// Most bytes of each thread's stack kept (for the minidump), from the red zone below the stack pointer
/// upwards, within the stack's mapping.
pub const MAX_STACK_COPY: u64 = 64 * 1024;

/// Bytes below the stack pointer a leaf function may use without moving it (the x86-64 red zone).
const RED_ZONE: u64 = 128;

/// A copy of part of a thread's stack.
#[derive(Debug, Clone)]
pub struct StackCopy {
    pub start: u64,
    pub bytes: Vec<u8>,
}

/// The registers of a stopped thread (x86-64), as `PTRACE_GETREGS` and `PTRACE_GETREGSET` (`NT_PRFPREG`)
/// give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub eflags: u64,
    pub cs: u64,
    pub ss: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    /// The x87/SSE state in the 512-byte `FXSAVE` layout, when it could be read.
    pub fxsave: Option<Vec<u8>>,
}

impl Registers {
    /// The general-purpose registers by name, in the order debuggers list them.
    pub fn named(&self) -> [(&'static str, u64); 26] {
        [
            ("rax", self.rax),
            ("rbx", self.rbx),
            ("rcx", self.rcx),
            ("rdx", self.rdx),
            ("rsi", self.rsi),
            ("rdi", self.rdi),
            ("rbp", self.rbp),
            ("rsp", self.rsp),
            ("r8", self.r8),
            ("r9", self.r9),
            ("r10", self.r10),
            ("r11", self.r11),
            ("r12", self.r12),
            ("r13", self.r13),
            ("r14", self.r14),
            ("r15", self.r15),
            ("rip", self.rip),
            ("eflags", self.eflags),
            ("cs", self.cs),
            ("ss", self.ss),
            ("ds", self.ds),
            ("es", self.es),
            ("fs", self.fs),
            ("gs", self.gs),
            ("fs_base", self.fs_base),
            ("gs_base", self.gs_base),
        ]
    }
}

/// What the kernel said about the fatal signal (`PTRACE_GETSIGINFO` on the crashing thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalInfo {
    pub signo: i32,
    pub code: i32,
    pub errno: i32,
    /// `si_addr`: the faulting address, for a fault the kernel raised (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
    /// SIGTRAP with a positive `si_code`); `None` for a signal sent by a process (`abort`, `kill`).
    pub addr: Option<u64>,
}

/// The process at its fatal signal.
#[derive(Debug, Clone)]
pub struct Capture {
    pub pid: u32,
    pub signal: Signal,
    /// The crashing thread's signal details (`None` for a snapshot, or when they were unreadable).
    pub siginfo: Option<SignalInfo>,
    /// `/proc/PID/cmdline` (NUL-separated).
    pub cmdline: Vec<u8>,
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
    let siginfo = if fatal { signal_info(crashed) } else { None };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
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
        let (mut regs, mut stack) = (None, None);
        let pcs = match (note.is_none(), regs_of(tid)) {
            (true, Ok(r)) => {
                let pcs = unwind(&unwinder, mem.as_ref(), r.rip, r.rsp, r.rbp, &mut note);
                stack = mem.as_ref().and_then(|m| copy_stack(m, &maps, r.rsp));
                regs = Some(r);
                pcs
            }
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
        threads.push(ThreadCapture { tid: tid.as_raw() as u32, name, crashed, pcs, note, regs, stack });
    }
    for (tid, sig) in resume {
        let _ = ptrace::cont(tid, sig);
    }
    Capture { pid: pid.as_raw() as u32, signal, siginfo, cmdline, maps, threads }
}

/// Every register of a stopped thread: the general-purpose ones, then the x87/SSE state.
#[cfg(target_arch = "x86_64")]
fn regs_of(tid: Pid) -> nix::Result<Registers> {
    let r = ptrace::getregs(tid)?;
    let fxsave = fxsave_of(tid);
    Ok(Registers {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rbp: r.rbp,
        rsp: r.rsp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        eflags: r.eflags,
        cs: r.cs,
        ss: r.ss,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        fxsave,
    })
}

/// The x87/SSE state of a stopped thread as the 512-byte `FXSAVE` area.
#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
fn fxsave_of(tid: Pid) -> Option<Vec<u8>> {
    let f = ptrace::getregset::<ptrace::regset::NT_PRFPREG>(tid).ok()?;
    // The kernel's `user_fpregs_struct` is the FXSAVE area, field for field.
    let mut b = Vec::with_capacity(512);
    for v in [f.cwd, f.swd, f.ftw, f.fop] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [f.rip, f.rdp] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [f.mxcsr, f.mxcr_mask].iter().chain(&f.st_space).chain(&f.xmm_space) {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.resize(512, 0);
    Some(b)
}

/// `nix` reads register sets only on glibc targets.
#[cfg(all(target_arch = "x86_64", not(target_env = "gnu")))]
fn fxsave_of(_tid: Pid) -> Option<Vec<u8>> {
    None
}

/// Only x86-64 is unwound so far.
#[cfg(not(target_arch = "x86_64"))]
fn regs_of(_tid: Pid) -> nix::Result<Registers> {
    Err(Errno::ENOSYS)
}

/// The stack of a stopped thread from the red zone below `sp` up to the end of its mapping, at most
/// [`MAX_STACK_COPY`] bytes.
fn copy_stack(mem: &File, maps: &str, sp: u64) -> Option<StackCopy> {
    let (low, end) = maps
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
        })
        .find(|&(a, b)| (a..b).contains(&sp))?;
    let start = (sp.saturating_sub(RED_ZONE) & !0xf).max(low);
    let len = (end - start).min(MAX_STACK_COPY);
    let mut bytes = vec![0u8; usize::try_from(len).ok()?];
    let mut got = 0;
    while got < bytes.len() {
        match mem.read_at(&mut bytes[got..], start + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    bytes.truncate(got);
    (!bytes.is_empty()).then_some(StackCopy { start, bytes })
}

/// The crashing thread's siginfo. `si_addr` sits in a union that `libc` only opens through an `unsafe`
/// accessor, and `unsafe` is forbidden here, so the struct's bytes are read back through
/// `/proc/self/mem` (our own memory, read by the kernel) and the address taken from its x86-64 Linux
/// offset (16). The bytes are checked against `si_signo` and `si_code`, read through their safe fields,
/// before the address is believed.
fn signal_info(tid: Pid) -> Option<SignalInfo> {
    let si = ptrace::getsiginfo(tid).ok()?;
    let (signo, code, errno) = (si.si_signo, si.si_code, si.si_errno);
    let raw = own_bytes(&si);
    let word = |at: usize| raw.as_ref()?.get(at..at + 4).map(|b| i32::from_le_bytes(b.try_into().unwrap()));
    let consistent = word(0) == Some(signo) && word(8) == Some(code);
    let faulting = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGTRAP].contains(&signo)
        && code > 0
        && code < libc::SI_KERNEL;
    let addr = match (&raw, consistent && faulting && cfg!(target_arch = "x86_64")) {
        (Some(b), true) => b.get(16..24).map(|b| u64::from_le_bytes(b.try_into().unwrap())),
        _ => None,
    };
    Some(SignalInfo { signo, code, errno, addr })
}

/// The bytes of a value in our own memory, read through `/proc/self/mem`.
fn own_bytes<T>(value: &T) -> Option<Vec<u8>> {
    let at = std::hint::black_box(value as *const T as usize) as u64;
    let mut bytes = vec![0u8; std::mem::size_of::<T>()];
    File::open("/proc/self/mem").ok()?.read_exact_at(&mut bytes, at).ok()?;
    std::hint::black_box(value);
    Some(bytes)
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
