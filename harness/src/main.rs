//! `harness`: parse the command line ([`harness::cli::Cli`]) and run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use harness::cli::Cli;

fn main() -> ExitCode {
    match Cli::parse().run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: error: {e}");
            e.exit_code()
        }
    }
}
