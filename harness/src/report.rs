//! `harness report` (being written).

use std::process::ExitCode;

/// Arguments of `harness report`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::Usage("harness report is not built yet".into()))
}
