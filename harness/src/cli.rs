//! The `harness` command line ([`Cli`], one variant per subcommand, each `--help` with examples), in the
//! library so that tests can check every documented command line against it. What the subcommands share on
//! the command line is `acip::cli` (durations, target URLs, the directory stamp) and [`crate::paths`].

use clap::{Parser, Subcommand};

use crate::{browser, check, conformance, dissector, replay, report, repro, soak, supervise, symbolize};

/// Exit codes, as `harness --help` prints them (README, "Exit codes").
pub const EXIT_CODES: &str = "Exit codes: 0 success; 1 a verdict failed; 2 usage; 3 bad input file; 4 I/O; \
5 protocol error; 6 target unreachable (nothing accepts connections there, no case was run); 7 soak: the \
load generator fell behind its schedule (see --allow-behind).";

#[derive(Debug, Parser)]
#[command(name = "harness", version, about = "Diagnostics and test harness for ACIP (ascii-chat)", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Many reference clients against a server, with per-stage latency histograms and reports.
    #[command(after_help = "Examples:
  harness soak --clients 64 --duration 30s
  harness soak --clients 8 --encrypt --transport tcp --duration 10s --seed 1
  harness soak --clients 16 --target ws://127.0.0.1:27226 --dialect head --duration 20s
  harness soak --clients 64 --target ws://server:27226 --seed 42 --shard 0/4 --wait-start http://gate:8080/start?shard=0")]
    Soak(soak::Args),
    /// Diagnose a server build: run the suites against it under supervise, attribute each crash to the
    /// case that caused it (with a backtrace), restart it, detect hangs, and give one verdict.
    #[command(after_help = "Examples:
  harness check --server 'reference-server --tcp 127.0.0.1:27224 --ws 127.0.0.1:27226' --target ws://127.0.0.1:27226
  harness check --server './ascii-chat server --port 27224' --target ws://127.0.0.1:27226 --rerun-crashers 3 --junit check.xml
  harness check --server 'reference-server --fault abort-on-interleave' --target ws://127.0.0.1:27226 --suites conformance --cases 2")]
    Check(check::Args),
    /// Dissect pcap/pcapng captures of ACIP, flag anomalies, and replay them against a live server.
    #[command(after_help = "Examples:
  harness replay corpus/captures/old087fa71_ws_fragment_sigabrt.pcap --timeline
  harness replay capture.pcap --json --stall-threshold 20ms
  harness replay capture.pcap --against ws://127.0.0.1:27226 --fast")]
    Replay(replay::Args),
    /// Write a Wireshark/tshark dissector for ACIP, generated from this build's codec tables.
    #[command(after_help = "Examples:
  harness dissector --lua --out acip.lua
  harness dissector --lua --out ~/.local/lib/wireshark/plugins/acip.lua")]
    Dissector(dissector::Args),
    /// Reproduce each known ascii-chat failure beside its fix, with a verdict.
    #[command(after_help = "Examples:
  harness repro all --quick
  harness repro teardown-race --seed 42
  harness repro fragment-interleave --target ws://127.0.0.1:27226")]
    Repro(repro::Args),
    /// A WebSocket fragmentation and robustness suite for any ACIP server.
    #[command(after_help = "Examples:
  harness conformance ws://127.0.0.1:27226
  harness conformance tcp://127.0.0.1:27224 --dialect head --encrypting-server --cases 1.1,2.1 --json")]
    Conformance(conformance::Args),
    /// A real browser as an ACIP client: headless Chromium streams the test pattern over its own WebSocket
    /// (plaintext), renders the ASCII it gets back, and the report shows its own fragment pattern.
    #[command(after_help = "Examples:
  harness browser --duration 10s --screenshot
  harness browser --frame 640x480 --fps 30 --duration 10s --fault rx-pause
  harness browser --target ws://127.0.0.1:27226 --dialect head --duration 20s")]
    Browser(browser::Args),
    /// Render, compare or merge reports.
    #[command(after_help = "Examples:
  harness report render target/harness/soak/20261203T120000Z-1
  harness report compare reports/baseline/soak-ws-16 target/new --max-regression p99=10%
  harness report merge shard-0 shard-1 shard-2 shard-3 --out merged")]
    Report(report::Args),
    /// The start gate of a sharded soak: holds every `harness soak --wait-start` until released (by
    /// POST /release, or once --expect shards wait), then gives them all one start instant.
    #[command(after_help = "Examples:
  harness start-gate --listen 0.0.0.0:8080 --expect 4
  harness start-gate --listen 127.0.0.1:0 --lead 5s
Release by hand with: curl -X POST http://ADDR/release")]
    StartGate(soak::gate::Args),
    /// Run a system under test under ptrace; if it dies, unwind every thread from outside and write a crash
    /// report (SIGQUIT or --hang-after snapshots a live one).
    #[command(after_help = "Examples:
  harness supervise --out target/crash -- ./ascii-chat server --port 27224
  harness supervise -- cargo run -p reference-server -- --fault stale-callback
  harness supervise --hang-after 30s -- ./ascii-chat server --port 27224")]
    Supervise(supervise::Args),
    /// Turn raw backtrace addresses into object, function, file and line.
    #[command(after_help = "Examples:
  harness symbolize --pid 4242 0x5555555551a9 0x7ffff7a2d0b3
  harness symbolize --maps target/crash/maps.txt --log server.log --json")]
    Symbolize(symbolize::Args),
    /// Internal: the reference server itself (the same program as the `reference-server` binary), so that
    /// tests of `check` can start it as a child process from this executable.
    #[command(
        name = "__reference-server",
        hide = true,
        after_help = "Examples:
  harness __reference-server -- --tcp off --ws 127.0.0.1:27226"
    )]
    ReferenceServer {
        #[arg(last = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Internal: how `supervise` starts a traced child (stops itself, then execs the command).
    #[command(
        name = "__trace-exec",
        hide = true,
        after_help = "Examples:
  harness __trace-exec -- ./server --port 27224"
    )]
    TraceExec {
        #[arg(required = true, last = true)]
        command: Vec<std::ffi::OsString>,
    },
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> crate::Result<std::process::ExitCode> {
        match self.command {
            Command::Soak(a) => soak::run(a),
            Command::Check(a) => check::run(a),
            Command::Replay(a) => replay::run(a),
            Command::Dissector(a) => dissector::run(a),
            Command::Repro(a) => repro::run(a),
            Command::Conformance(a) => conformance::run(a),
            Command::Browser(a) => browser::run(a),
            Command::Report(a) => report::run(a, soak::merge::run),
            Command::StartGate(a) => soak::gate::run(a),
            Command::Supervise(a) => supervise::run(a),
            Command::Symbolize(a) => symbolize::run(a),
            Command::ReferenceServer { args } => {
                let argv = std::iter::once(std::ffi::OsString::from("reference-server")).chain(args);
                match <reference_server::cli::Args as clap::Parser>::try_parse_from(argv) {
                    Ok(a) => Ok(reference_server::cli::main_with(a)),
                    Err(e) => Err(crate::Error::Usage(e.to_string())),
                }
            }
            Command::TraceExec { command } => {
                let e = supervise::trace::trampoline(&command);
                let shown = command.first().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
                Err(crate::Error::io(format!("starting {shown}"), e))
            }
        }
    }
}
