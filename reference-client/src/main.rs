//! Binary entry point of `reference-client`: parses the command line into a [`ClientConfig`], runs it and
//! prints the [`reference_client::ClientReport`] (a summary, or JSON with `--json`). Exit codes are those
//! of [`ClientError::exit_code`], plus [`reference_client::EXIT_VALIDATION`] when the run finished but
//! something received failed validation.

use std::process::ExitCode;

use clap::Parser;
use reference_client::cli::{config, Args};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(d) = args.bench_raw_tcp {
        return match reference_client::bench::raw_tcp(d, 921_646).await {
            Ok(r) => {
                println!(
                    "{}",
                    if args.json { serde_json::to_string(&r).unwrap_or_default() } else { r.to_string() }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("reference-client: raw TCP bench: {e}");
                ExitCode::from(9)
            }
        };
    }
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reference-client: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        eprintln!("reference-client: interrupted, closing");
    };
    let (report, outcome) = reference_client::run_until(config, None, interrupted).await;
    if args.snapshot {
        if let Some(text) = &report.snapshot {
            println!("{text}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        eprint!("{}", report.summary());
    }
    match outcome {
        Err(e) => {
            eprintln!("reference-client: {e}");
            ExitCode::from(e.exit_code())
        }
        Ok(()) if report.has_validation_errors() => ExitCode::from(reference_client::EXIT_VALIDATION),
        Ok(()) => ExitCode::SUCCESS,
    }
}
