//! `harness supervise` (being written).

use std::process::ExitCode;

/// Arguments of `harness supervise`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::Usage("harness supervise is not built yet".into()))
}
