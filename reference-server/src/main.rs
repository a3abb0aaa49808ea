//! Binary entry point of `reference-server`: parses the command line into a [`ServerConfig`], starts the
//! server, prints the READY line once every listener accepts, and runs until SIGINT/SIGTERM. Exit codes
//! are documented in the library (`reference_server::exit_code`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use reference_server::cli::{config, Args};
use reference_server::{exit_code, ServerError};

async fn run(args: Args) -> Result<(), ServerError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before READY: a supervisor may send SIGTERM the moment it reads the line, and a signal
    // arriving before its handler would kill the process instead of shutting it down cleanly.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let server = reference_server::start(config(args)?).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", server.ready_line())?;
        out.flush()?;
    }
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reference-server: cannot start the runtime: {e}");
            return ExitCode::from(exit_code::NETWORK as u8);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reference-server: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
