//! Binary entry point of `reference-server`: parses the command line and runs
//! [`reference_server::cli::main_with`] (start, READY line once every listener accepts, run until
//! SIGINT/SIGTERM). Exit codes are documented in the library (`reference_server::exit_code`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    reference_server::cli::main_with(reference_server::cli::Args::parse())
}
