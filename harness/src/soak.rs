//! `harness soak` (being written).

use std::process::ExitCode;

/// Arguments of `harness soak`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> crate::Result<ExitCode> {
    Err(crate::Error::Usage("harness soak is not built yet".into()))
}
