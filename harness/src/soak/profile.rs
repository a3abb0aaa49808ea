//! `harness soak --profile`: a CPU flame graph of the whole harness process during the run.
//!
//! The profiler (pprof-rs) samples the process's CPU time with `setitimer(ITIMER_PROF)` at
//! [`FREQUENCY_HZ`]: the kernel sends SIGPROF to whichever thread is running, so every thread is sampled:
//! the clients, the tokio workers and the embedded reference server, which runs in this process. The
//! stacks are folded into an SVG flame graph (inferno) written beside report.html as [`FLAMEGRAPH_SVG`],
//! and the report names it in its `profile` setting so that report.html links it and summary.md lists it.
//! In-process sampling needs no `perf` binary nor perf_event permissions (containers often deny both) and
//! names inlined Rust frames from the harness's own debug info. Its limit: CPU-time timers fire on the
//! kernel tick, so a process gets at most CONFIG_HZ samples per second of wall time whatever the request
//! (250 on this machine kind: a 30 s soak still draws thousands); the note in the report gives the count.
//! Samples that interrupt libc, the unwinder or the vDSO are dropped (see [`Profiler::start`]), so time
//! inside `memcpy` shows as fewer samples, not under another name. Linux only (the signal-based sampler
//! is what is tested); elsewhere `--profile` fails at once with a usage error (exit 2).
//! Tested end to end in `tests/it/soak.rs`, in a process of its own: SIGPROF would interrupt the system
//! calls of unrelated unit tests running beside it.

use std::path::Path;

/// File name of the flame graph inside the soak's report directory.
pub const FLAMEGRAPH_SVG: &str = "flamegraph.svg";
/// Samples per second of CPU time: 999 rather than 1000 so that sampling does not run in lockstep with
/// periodic work (the 1 ms timers of the schedule).
pub const FREQUENCY_HZ: i32 = 999;
/// The report setting whose value is the flame graph's file name.
pub const SETTING: &str = crate::report::html::PROFILE_SETTING;

/// Why `--profile` could not profile the run.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The platform has no in-process sampler the harness supports.
    #[error("--profile is supported on Linux only (this is {os}): run without --profile")]
    Unsupported { os: &'static str },
    /// The sampler could not start (e.g. another profiler holds SIGPROF).
    #[error("starting the CPU sampler: {0}")]
    Start(String),
    /// The run gave no sample to draw (it used almost no CPU time).
    #[error("no CPU samples were taken during the run: nothing to draw")]
    NoSamples,
    /// Folding the samples or drawing the SVG failed.
    #[error("drawing the flame graph: {0}")]
    Render(String),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<ProfileError> for crate::Error {
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::Unsupported { .. } => crate::Error::Usage(e.to_string()),
            ProfileError::Write { path, source } => {
                crate::Error::io(format!("--profile: writing {path}"), source)
            }
            other => crate::Error::io("--profile", std::io::Error::other(other.to_string())),
        }
    }
}

/// What [`Profiler::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Samples drawn (each a stack seen at one SIGPROF).
    pub samples: u64,
}

impl Written {
    /// The report's note on the profile; `threads` says whose threads the process ran.
    pub fn note(&self, threads: &str) -> String {
        format!(
            "CPU profile in {FLAMEGRAPH_SVG}: {} samples of every thread of the harness process ({threads}), \
             asked at {FREQUENCY_HZ} Hz of CPU time (the kernel tick bounds the rate actually taken)",
            self.samples
        )
    }
}

/// The report's note when the run gave the sampler nothing to draw.
pub fn no_samples_note() -> String {
    format!("CPU profile: no samples were taken (the run used too little CPU time), so no {FLAMEGRAPH_SVG}")
}

#[cfg(target_os = "linux")]
pub use linux::Profiler;

#[cfg(not(target_os = "linux"))]
pub use other::Profiler;

#[cfg(target_os = "linux")]
mod linux {
    use super::*;

    /// A running sampler; [`Profiler::finish`] stops it and writes the flame graph. Dropping it stops it
    /// without writing anything (a run that failed).
    pub struct Profiler {
        guard: pprof::ProfilerGuard<'static>,
    }

    impl Profiler {
        /// Starts sampling every thread of this process.
        pub fn start() -> Result<Profiler, ProfileError> {
            let guard = pprof::ProfilerGuardBuilder::default()
                .frequency(FREQUENCY_HZ)
                // Unwinding from a signal that interrupted the C library, the unwinder or the vDSO can
                // deadlock on their locks: such samples are dropped, as pprof-rs recommends.
                .blocklist(&["libc", "libgcc", "pthread", "vdso"])
                .build()
                .map_err(|e| ProfileError::Start(e.to_string()))?;
            Ok(Profiler { guard })
        }

        /// Stops sampling and writes [`FLAMEGRAPH_SVG`] into `dir`.
        pub fn finish(self, dir: &Path) -> Result<Written, ProfileError> {
            let report = self.guard.report().build().map_err(|e| ProfileError::Render(e.to_string()))?;
            drop(self.guard);
            let samples: u64 = report.data.values().map(|&n| n.max(0) as u64).sum();
            if samples == 0 {
                return Err(ProfileError::NoSamples);
            }
            let mut svg = Vec::new();
            report.flamegraph(&mut svg).map_err(|e| ProfileError::Render(e.to_string()))?;
            let path = dir.join(FLAMEGRAPH_SVG);
            std::fs::write(&path, svg)
                .map_err(|source| ProfileError::Write { path: path.display().to_string(), source })?;
            Ok(Written { samples })
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod other {
    use super::*;

    /// No sampler on this platform: [`Profiler::start`] always fails.
    pub struct Profiler(());

    impl Profiler {
        pub fn start() -> Result<Profiler, ProfileError> {
            Err(ProfileError::Unsupported { os: std::env::consts::OS })
        }

        pub fn finish(self, _dir: &Path) -> Result<Written, ProfileError> {
            Err(ProfileError::Unsupported { os: std::env::consts::OS })
        }
    }
}
