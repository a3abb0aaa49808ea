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
}
