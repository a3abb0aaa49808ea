//! `harness`: setup plus one `match` over the subcommand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use harness::{conformance, replay, report, repro, soak, supervise, symbolize};

#[derive(Debug, Parser)]
#[command(name = "harness", version, about = "Diagnostics and test harness for ACIP (ascii-chat)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Many reference clients against a server, with per-stage latency histograms and reports.
    Soak(soak::Args),
    /// Dissect pcap/pcapng captures of ACIP, flag anomalies, and replay them against a live server.
    Replay(replay::Args),
    /// Reproduce each known ascii-chat failure beside its fix, with a verdict.
    Repro(repro::Args),
    /// A WebSocket fragmentation and robustness suite for any ACIP server.
    Conformance(conformance::Args),
    /// Render or compare reports.
    Report(report::Args),
    /// Run a system under test and write a crash report if it dies.
    Supervise(supervise::Args),
    /// Turn raw backtrace addresses into object, function, file and line.
    Symbolize(symbolize::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Soak(a) => soak::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Repro(a) => repro::run(a),
        Command::Conformance(a) => conformance::run(a),
        Command::Report(a) => report::run(a),
        Command::Supervise(a) => supervise::run(a),
        Command::Symbolize(a) => symbolize::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e}");
            e.exit_code()
        }
    }
}
