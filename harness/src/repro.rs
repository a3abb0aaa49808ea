//! `harness repro` (being written).

use std::process::ExitCode;

/// Arguments of `harness repro`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::Usage("harness repro is not built yet".into()))
}
