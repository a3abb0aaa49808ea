//! `harness replay` (being written).

use std::process::ExitCode;

/// Arguments of `harness replay`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::Usage("harness replay is not built yet".into()))
}
