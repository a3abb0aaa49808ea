//! `harness conformance` (being written).

use std::process::ExitCode;

/// Arguments of `harness conformance`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::Usage("harness conformance is not built yet".into()))
}
