//! The environment a report records: versions of what was measured and the machine it ran on. Reads
//! /proc (Linux) and asks git; anything unavailable is `None`, never an error, so a report can always be
//! written.

use std::process::Command;

use serde::{Deserialize, Serialize};

/// What built the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// `harness` crate version.
    pub harness: String,
    /// `git describe --always --dirty` of the working tree, when git and the repository are available.
    pub git_describe: Option<String>,
    /// `debug` or `release`: latencies of a debug build are not comparable with a release build.
    pub profile: String,
}

/// The machine the run was measured on (read from /proc where available).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: u32,
    pub memory_total_bytes: Option<u64>,
    pub kernel: Option<String>,
    pub cpu_model: Option<String>,
    pub os: String,
    pub arch: String,
}

/// The harness version, `git describe` of the source tree it was built from (if git can tell), and the
/// build profile.
pub fn versions() -> Versions {
    Versions {
        harness: env!("CARGO_PKG_VERSION").to_string(),
        git_describe: git_describe(),
        profile: if cfg!(debug_assertions) { "debug" } else { "release" }.to_string(),
    }
}

fn git_describe() -> Option<String> {
    // The manifest directory is where this binary was built from; on a fresh clone it is the clone.
    let out = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "describe", "--always", "--dirty", "--tags"])
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// CPUs available to this process, total memory, kernel and CPU model.
pub fn machine() -> Machine {
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_total_bytes: std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| meminfo_total(&s)),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        cpu_model: std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| cpu_model(&s)),
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
    }
}

/// `MemTotal:  16318480 kB` → bytes.
fn meminfo_total(meminfo: &str) -> Option<u64> {
    kib_field(meminfo, "MemTotal:")
}

/// The value of a `Name:   1234 kB` line, in bytes (the format of /proc/meminfo and /proc/self/status).
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    let line = cpuinfo.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let meminfo = "MemTotal:       16318480 kB\nMemFree:  1 kB\n";
        assert_eq!(meminfo_total(meminfo), Some(16_318_480 * 1024));
        assert_eq!(kib_field("VmRSS:\t   2048 kB\n", "VmRSS:"), Some(2048 * 1024));
        assert_eq!(kib_field("VmRSS: lots\n", "VmRSS:"), None);
        assert_eq!(kib_field("", "VmRSS:"), None);
        assert_eq!(
            cpu_model("processor: 0\nmodel name\t: Some CPU @ 2GHz\n").as_deref(),
            Some("Some CPU @ 2GHz")
        );
    }

    #[test]
    fn machine_is_plausible_here() {
        let m = machine();
        assert!(m.cpus >= 1);
        assert!(!m.os.is_empty());
        assert!(!versions().harness.is_empty());
    }
}
