//! `harness symbolize` (being written).

use std::process::ExitCode;

/// Arguments of `harness symbolize`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::Usage("harness symbolize is not built yet".into()))
}
