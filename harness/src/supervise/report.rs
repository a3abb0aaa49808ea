//! The crash report of `harness supervise`: built from what the run recorded (exit status, log files,
//! the maps snapshot), written as `crash.json` (machine) and `crash.md` (human) from the same
//! [`CrashReport`] value.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::symbolize::{self, extract, Maps, Outcome, Summary, SymbolizedFrame, Symbolizer, Via};

/// Most backtrace frames a report lists; when the logs hold more, the latest are kept (a crash
/// backtrace is at the end of the output).
pub const MAX_REPORT_FRAMES: usize = 1000;

/// How the child ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Exit {
    /// Terminated by a signal.
    Signal { signal: i32, name: String, core_dumped: bool },
    /// Exited with a status code.
    Code { code: i32 },
}

impl Exit {
    pub fn from_status(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.signal(), status.code()) {
            (Some(signal), _) => {
                Exit::Signal { signal, name: signal_name(signal), core_dumped: status.core_dumped() }
            }
            (None, Some(code)) => Exit::Code { code },
            // Stopped/continued statuses are not returned by wait() for a child we do not trace.
            (None, None) => Exit::Code { code: -1 },
        }
    }

    pub fn is_clean(&self) -> bool {
        *self == Exit::Code { code: 0 }
    }

    pub fn describe(&self) -> String {
        match self {
            Exit::Signal { signal, name, core_dumped } => {
                let core = if *core_dumped { ", core dumped" } else { "" };
                format!("killed by signal {signal} ({name}{core})")
            }
            Exit::Code { code } => format!("exited with status {code}"),
        }
    }
}

pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// One line of the child's output, in arrival order across both streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub stream: &'static str,
    pub text: String,
}

/// A saved `/proc/PID/maps` text and when it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapsSnapshot {
    #[serde(skip)]
    pub text: String,
    /// Milliseconds after the child was spawned.
    pub taken_at_ms: u64,
    /// `start`, `periodic` or `output` (read as soon as the output looked like a backtrace).
    pub reason: &'static str,
    pub mappings: usize,
}

/// A symbolized frame and the log it was found in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportFrame {
    pub stream: &'static str,
    #[serde(flatten)]
    pub frame: SymbolizedFrame,
}

/// Everything a crash report says.
#[derive(Debug, Clone, Serialize)]
pub struct CrashReport {
    pub command: Vec<String>,
    pub pid: u32,
    /// UTC, RFC 3339.
    pub started_at: String,
    pub duration_ms: u64,
    pub exit: Exit,
    /// Signals the supervisor forwarded to the child before it ended.
    pub forwarded_signals: Vec<String>,
    /// File names of the full logs, relative to the report directory.
    pub stdout_log: String,
    pub stderr_log: String,
    pub tail: Vec<LogLine>,
    /// The snapshot used for symbolizing (also saved as `maps.txt`), if any could be read.
    pub maps: Option<MapsSnapshot>,
    pub maps_snapshots_taken: usize,
    /// Why `maps` is missing or partial, when it is.
    pub maps_note: Option<String>,
    pub frames: Vec<ReportFrame>,
    pub frames_dropped: usize,
    pub summary: Summary,
    /// Hex values in the output that no executable mapping holds and no backtrace text explains
    /// (usually data pointers); counted, not listed.
    pub other_hex_values: usize,
    /// Every thread as captured from outside at the fatal signal (the crashing one first); empty when the
    /// child did not die of a fatal signal or could not be traced (`capture_note` says why).
    pub threads: Vec<ThreadReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_note: Option<String>,
    /// Processes the child forked, and how they ended.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildExit>,
    /// Snapshots of the live child taken before it ended (`hang-N.md`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hang_snapshots: Vec<String>,
    /// The printed backtrace against the captured stacks (when there are both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_check: Option<CrossCheck>,
    /// The crashing thread and what the kernel said about the signal, when a fatal signal was captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash: Option<CrashSite>,
    /// The minidump written beside the report (`crash.dmp`), when a fatal signal was captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minidump: Option<MinidumpFile>,
}

/// Where and how the process crashed: the thread and the signal's details.
#[derive(Debug, Clone, Serialize)]
pub struct CrashSite {
    pub tid: u32,
    pub thread_name: String,
    pub signal: String,
    pub signo: i32,
    /// `si_code` and its name and meaning (e.g. `SEGV_MAPERR`: address not mapped to object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub si_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub si_code_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub si_code_meaning: Option<String>,
    /// `si_addr` in hex, for a fault raised by the kernel (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_address: Option<String>,
    /// The crashing thread's general-purpose registers in hex (the same values as in the minidump).
    pub registers: std::collections::BTreeMap<String, String>,
}

/// The minidump file and its size.
#[derive(Debug, Clone, Serialize)]
pub struct MinidumpFile {
    pub file: String,
    pub bytes: usize,
}

/// The name and meaning of a `si_code` for a signal (`siginfo(2)`), if it is a known one.
pub fn si_code_name(signo: i32, code: i32) -> Option<(&'static str, &'static str)> {
    use nix::libc;
    let specific: &[(&str, &str)] = match signo {
        libc::SIGSEGV => &[
            ("SEGV_MAPERR", "address not mapped to object"),
            ("SEGV_ACCERR", "invalid permissions for mapped object"),
            ("SEGV_BNDERR", "failed address bound checks"),
            ("SEGV_PKUERR", "access denied by memory protection keys"),
        ],
        libc::SIGBUS => &[
            ("BUS_ADRALN", "invalid address alignment"),
            ("BUS_ADRERR", "nonexistent physical address"),
            ("BUS_OBJERR", "object-specific hardware error"),
            ("BUS_MCEERR_AR", "hardware memory error consumed on a machine check"),
            ("BUS_MCEERR_AO", "hardware memory error detected in process but not consumed"),
        ],
        libc::SIGILL => &[
            ("ILL_ILLOPC", "illegal opcode"),
            ("ILL_ILLOPN", "illegal operand"),
            ("ILL_ILLADR", "illegal addressing mode"),
            ("ILL_ILLTRP", "illegal trap"),
            ("ILL_PRVOPC", "privileged opcode"),
            ("ILL_PRVREG", "privileged register"),
            ("ILL_COPROC", "coprocessor error"),
            ("ILL_BADSTK", "internal stack error"),
        ],
        libc::SIGFPE => &[
            ("FPE_INTDIV", "integer divide by zero"),
            ("FPE_INTOVF", "integer overflow"),
            ("FPE_FLTDIV", "floating-point divide by zero"),
            ("FPE_FLTOVF", "floating-point overflow"),
            ("FPE_FLTUND", "floating-point underflow"),
            ("FPE_FLTRES", "floating-point inexact result"),
            ("FPE_FLTINV", "floating-point invalid operation"),
            ("FPE_FLTSUB", "subscript out of range"),
        ],
        libc::SIGTRAP => &[
            ("TRAP_BRKPT", "process breakpoint"),
            ("TRAP_TRACE", "process trace trap"),
            ("TRAP_BRANCH", "process taken branch trap"),
            ("TRAP_HWBKPT", "hardware breakpoint or watchpoint"),
        ],
        _ => &[],
    };
    match code {
        1.. if (code as usize) <= specific.len() => Some(specific[code as usize - 1]),
        libc::SI_USER => Some(("SI_USER", "sent by kill or raise")),
        libc::SI_KERNEL => Some(("SI_KERNEL", "sent by the kernel")),
        libc::SI_QUEUE => Some(("SI_QUEUE", "sent by sigqueue")),
        libc::SI_TIMER => Some(("SI_TIMER", "POSIX timer expired")),
        libc::SI_MESGQ => Some(("SI_MESGQ", "POSIX message queue state changed")),
        libc::SI_ASYNCIO => Some(("SI_ASYNCIO", "asynchronous I/O completed")),
        libc::SI_SIGIO => Some(("SI_SIGIO", "queued SIGIO")),
        libc::SI_TKILL => Some(("SI_TKILL", "sent by tkill or tgkill (abort, raise, pthread_kill)")),
        _ => None,
    }
}

/// How the addresses the program printed itself compare with the stacks captured from outside.
///
/// A printed backtrace starts with the printer's own frames (the signal handler, `backtrace()`), which
/// are not on the stack captured at the signal, then follows the stack that crashed. So the two are
/// aligned at the first printed address that is on a captured stack, and compared frame by frame from
/// there: agreement confirms both routes, a different address at the same depth is a CONFLICT (one of the
/// two is wrong: a corrupt stack, a printer that skipped or invented frames, a stale maps snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrossCheck {
    /// The captured thread the printed backtrace matched (the crashing one when it matches).
    pub thread: Option<u32>,
    /// Printed frames before the first match (the printer's own frames).
    pub printer_frames: usize,
    /// Printed frames equal to the captured frame at the same depth.
    pub confirmed: usize,
    /// Depths where the two disagree: `printed 0x.. (name) vs captured 0x.. (name)`.
    pub conflicts: Vec<String>,
}

/// Compares the printed frames (in the order printed) with the captured threads' frames. `None` when there
/// is nothing to compare (no printed address or no capture).
pub fn cross_check(printed: &[ReportFrame], threads: &[ThreadReport]) -> Option<CrossCheck> {
    if printed.is_empty() || threads.is_empty() {
        return None;
    }
    let near = |a: u64, b: u64| a.abs_diff(b) <= 1;
    let name = |f: &SymbolizedFrame| match &f.outcome {
        Outcome::Placed(p) => p.function().map_or_else(|| p.object.clone(), str::to_string),
        _ => "?".to_string(),
    };
    // The crashing thread first (threads are listed crashing first).
    for t in threads {
        let Some((i0, j0)) = printed
            .iter()
            .enumerate()
            .find_map(|(i, p)| t.frames.iter().position(|c| near(c.addr, p.frame.addr)).map(|j| (i, j)))
        else {
            continue;
        };
        let mut check =
            CrossCheck { thread: Some(t.tid), printer_frames: i0, confirmed: 0, conflicts: Vec::new() };
        for (p, c) in printed[i0..].iter().zip(&t.frames[j0..]) {
            if near(p.frame.addr, c.addr) {
                check.confirmed += 1;
            } else {
                check.conflicts.push(format!(
                    "printed {:#x} ({}) vs captured {:#x} ({})",
                    p.frame.addr,
                    name(&p.frame),
                    c.addr,
                    name(c)
                ));
            }
        }
        return Some(check);
    }
    Some(CrossCheck {
        thread: None,
        printer_frames: printed.len(),
        confirmed: 0,
        conflicts: vec![format!(
            "none of the {} printed addresses is on a stack captured at the signal",
            printed.len()
        )],
    })
}

/// A process the child forked.
#[derive(Debug, Clone, Serialize)]
pub struct ChildExit {
    pub pid: u32,
    pub exit: Exit,
}

/// A `##` section listing threads and their frames.
pub fn threads_markdown(title: &str, threads: &[ThreadReport], note: Option<&str>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\n## {title}\n");
    if let Some(note) = note {
        let _ = writeln!(md, "{note}\n");
    }
    for t in threads {
        let what = match (&t.signal, t.crashed) {
            (Some(sig), _) => format!(" (crashed: {sig})"),
            (None, true) => " (crashed)".to_string(),
            (None, false) => String::new(),
        };
        let _ = writeln!(md, "### Thread {} `{}`{what}\n\n```", t.tid, t.name);
        for (i, f) in t.frames.iter().enumerate() {
            for line in symbolize::render_frame(f) {
                let _ = writeln!(md, "#{i:<3} {line}");
            }
        }
        if let Some(note) = &t.note {
            let _ = writeln!(md, "({note})");
        }
        let _ = writeln!(md, "```\n");
    }
    md
}

/// One thread at the fatal signal: its frames from the instruction pointer outwards, symbolized.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadReport {
    pub tid: u32,
    pub name: String,
    pub crashed: bool,
    /// The fatal signal, on the crashing thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    pub frames: Vec<SymbolizedFrame>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Extracts the frames of the report from the two log files and symbolizes them with `maps`.
/// Returns `(frames, dropped, other_hex_values)`.
pub fn collect_frames(
    logs: [(&'static str, &Path); 2],
    maps: Option<&Maps>,
    symbolizer: &mut Symbolizer,
) -> std::io::Result<(Vec<ReportFrame>, usize, usize)> {
    let mut frames = VecDeque::new();
    let mut dropped = 0;
    let mut other = 0;
    for (stream, path) in logs {
        let file = std::fs::File::open(path)?;
        extract::for_each_line(std::io::BufReader::new(file), |n, line| {
            for raw in extract::frames_in_line(line, n) {
                let frame = symbolizer.symbolize(&raw, maps);
                let noise = raw.hint.is_none()
                    && matches!(&frame.outcome, Outcome::Failed { kind, .. } if *kind == "not_in_mapping");
                if noise {
                    other += 1;
                    continue;
                }
                if frames.len() == MAX_REPORT_FRAMES {
                    frames.pop_front();
                    dropped += 1;
                }
                frames.push_back(ReportFrame { stream, frame });
            }
        })?;
    }
    Ok((frames.into(), dropped, other))
}

impl CrashReport {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a CrashReport always serializes");
        s.push('\n');
        s
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let cmd = self.command.join(" ");
        let _ = writeln!(md, "# Crash report: `{cmd}`\n");
        let _ = writeln!(md, "- **Outcome**: {}", self.exit.describe());
        if !self.forwarded_signals.is_empty() {
            let _ =
                writeln!(md, "- Signals forwarded by the supervisor: {}", self.forwarded_signals.join(", "));
        }
        let _ = writeln!(md, "- pid {}, started {}, ran {} ms", self.pid, self.started_at, self.duration_ms);
        let _ = writeln!(md, "- Logs: `{}`, `{}`", self.stdout_log, self.stderr_log);
        if let Some(d) = &self.minidump {
            let _ = writeln!(
                md,
                "- Minidump: `{}` ({} bytes; `minidump-stackwalk --use-local-debuginfo {}` reads it)",
                d.file, d.bytes, d.file
            );
        }
        match &self.maps {
            Some(m) => {
                let _ = writeln!(
                    md,
                    "- Maps snapshot: `maps.txt`, {} mappings, read {} ms after start ({}; {} snapshots taken)",
                    m.mappings, m.taken_at_ms, m.reason, self.maps_snapshots_taken
                );
            }
            None => {
                let _ = writeln!(md, "- Maps snapshot: none could be read");
            }
        }
        if let Some(note) = &self.maps_note {
            let _ = writeln!(md, "- Note: {note}");
        }
        if let Some(c) = &self.crash {
            let code = match (&c.si_code_name, &c.si_code_meaning, c.si_code) {
                (Some(name), Some(meaning), _) => format!(" ({name}: {meaning})"),
                (_, _, Some(code)) => format!(" (si_code {code})"),
                _ => String::new(),
            };
            let fault = c.fault_address.as_ref().map(|a| format!(", fault address {a}")).unwrap_or_default();
            let _ = writeln!(
                md,
                "- **Crashing thread**: {} `{}`, {}{code}{fault}",
                c.tid, c.thread_name, c.signal
            );
            let order = super::trace::Registers::default().named().map(|(name, _)| name);
            let regs: Vec<String> =
                order.iter().filter_map(|k| Some(format!("{k}={}", c.registers.get(*k)?))).collect();
            let _ = writeln!(md, "- Registers: {}", regs.join(" "));
        }
        let s = &self.summary;
        let via_text = self
            .frames
            .iter()
            .filter(|f| matches!(&f.frame.outcome, Outcome::Placed(p) if p.via == Via::BacktraceText))
            .count();
        let _ = writeln!(
            md,
            "\n## Backtrace addresses, symbolized\n\n{} addresses: {} placed in an object ({} through the maps snapshot, {} from the backtrace text alone; {} named), {} conflicts, {} unplaced; {} other hex values (not code) left out.{}\n",
            self.frames.len(),
            s.placed,
            s.placed - via_text,
            via_text,
            s.named,
            s.conflicts,
            s.failed,
            self.other_hex_values,
            if self.frames_dropped > 0 {
                format!(" The {} earliest were dropped (limit {MAX_REPORT_FRAMES}).", self.frames_dropped)
            } else {
                String::new()
            }
        );
        if !self.threads.is_empty() || self.capture_note.is_some() {
            let title = "Threads at the fatal signal, captured from outside";
            md.push_str(&threads_markdown(title, &self.threads, self.capture_note.as_deref()));
            let _ = writeln!(md, "## Addresses the program printed itself\n");
        }
        if let Some(x) = &self.cross_check {
            let verdict = if x.conflicts.is_empty() { "agree".to_string() } else { "CONFLICT".to_string() };
            let _ = writeln!(
                md,
                "Cross-check with the captured stacks: {verdict}: {} printed frames confirmed{}, {} printer \
                 frames before the first match{}.\n",
                x.confirmed,
                x.thread.map(|t| format!(" on thread {t}")).unwrap_or_default(),
                x.printer_frames,
                if x.conflicts.is_empty() {
                    String::new()
                } else {
                    format!("; CONFLICT: {}", x.conflicts.join("; "))
                }
            );
        }
        for c in &self.children {
            let _ = writeln!(md, "- Forked child {}: {}", c.pid, c.exit.describe());
        }
        if !self.hang_snapshots.is_empty() {
            let _ = writeln!(md, "- Snapshots of the live child: {}", self.hang_snapshots.join(", "));
        }
        if self.frames.is_empty() {
            let _ = writeln!(md, "No backtrace addresses were found in the output.");
        } else {
            let _ = writeln!(md, "```");
            for f in &self.frames {
                for line in symbolize::render_frame(&f.frame) {
                    let _ = writeln!(md, "{}:{:<4} {line}", f.stream, f.frame.line);
                }
            }
            let _ = writeln!(md, "```");
        }
        let _ = writeln!(md, "\n## Last {} log lines\n\n```", self.tail.len());
        for l in &self.tail {
            let _ = writeln!(md, "[{}] {}", l.stream, l.text.replace("```", "'''"));
        }
        let _ = writeln!(md, "```");
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(addr: u64) -> SymbolizedFrame {
        SymbolizedFrame {
            addr,
            line: 1,
            hint: None,
            outcome: Outcome::Failed { kind: "test", error: String::new() },
        }
    }

    fn thread(tid: u32, crashed: bool, pcs: &[u64]) -> ThreadReport {
        ThreadReport {
            tid,
            name: "t".into(),
            crashed,
            signal: None,
            frames: pcs.iter().map(|&a| frame(a)).collect(),
            note: None,
        }
    }

    fn printed(addrs: &[u64]) -> Vec<ReportFrame> {
        addrs.iter().map(|&a| ReportFrame { stream: "stderr", frame: frame(a) }).collect()
    }

    #[test]
    fn a_printed_backtrace_is_aligned_with_the_capture_and_disagreement_is_a_conflict() {
        let threads =
            [thread(7, true, &[0x1000, 0x2000, 0x3000, 0x4000]), thread(8, false, &[0x9000, 0x9100])];
        // Two printer frames (handler, backtrace()), then the crashed stack (a call site one byte off).
        let agree = cross_check(&printed(&[0xa0, 0xb0, 0x1000, 0x2001, 0x3000]), &threads).unwrap();
        assert_eq!(
            agree,
            CrossCheck { thread: Some(7), printer_frames: 2, confirmed: 3, conflicts: Vec::new() }
        );
        // A frame the capture does not have at that depth.
        let bad = cross_check(&printed(&[0xa0, 0x2000, 0x3333, 0x4000]), &threads).unwrap();
        assert_eq!((bad.confirmed, bad.conflicts.len()), (2, 1));
        assert!(bad.conflicts[0].starts_with("printed 0x3333"), "{:?}", bad.conflicts);
        // Printed from another thread: matched there.
        assert_eq!(cross_check(&printed(&[0x9100]), &threads).unwrap().thread, Some(8));
        // Nothing in common: one conflict saying so. Nothing to compare: none.
        let none = cross_check(&printed(&[0x5]), &threads).unwrap();
        assert_eq!((none.thread, none.conflicts.len()), (None, 1));
        assert_eq!(cross_check(&[], &threads), None);
        assert_eq!(cross_check(&printed(&[0x5]), &[]), None);
    }

    #[test]
    fn exit_descriptions() {
        use std::os::unix::process::ExitStatusExt;
        let abrt = Exit::from_status(std::process::ExitStatus::from_raw(6));
        assert_eq!(abrt, Exit::Signal { signal: 6, name: "SIGABRT".into(), core_dumped: false });
        assert_eq!(abrt.describe(), "killed by signal 6 (SIGABRT)");
        let three = Exit::from_status(std::process::ExitStatus::from_raw(3 << 8));
        assert_eq!(three, Exit::Code { code: 3 });
        assert!(!three.is_clean());
        assert!(Exit::from_status(std::process::ExitStatus::from_raw(0)).is_clean());
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(99), "signal 99");
    }

    #[test]
    fn si_code_names() {
        assert_eq!(si_code_name(11, 1), Some(("SEGV_MAPERR", "address not mapped to object")));
        assert_eq!(si_code_name(11, 2).map(|n| n.0), Some("SEGV_ACCERR"));
        assert_eq!(si_code_name(7, 2).map(|n| n.0), Some("BUS_ADRERR"));
        assert_eq!(si_code_name(8, 1).map(|n| n.0), Some("FPE_INTDIV"));
        assert_eq!(si_code_name(6, -6).map(|n| n.0), Some("SI_TKILL"));
        assert_eq!(si_code_name(5, 0x80).map(|n| n.0), Some("SI_KERNEL"));
        assert_eq!(si_code_name(11, 0).map(|n| n.0), Some("SI_USER"));
        assert_eq!(si_code_name(11, 9), None);
        assert_eq!(si_code_name(6, 1), None, "abort has no kernel-specific codes");
    }
}
