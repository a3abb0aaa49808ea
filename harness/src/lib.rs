//! `harness`: ACIP diagnostics over the `acip` core and the reference peers. Each subcommand is a module
//! with an `Args` struct and a `run` function; measurement is kept apart from reporting (`report`).

pub mod browser;
pub mod capture;
pub mod check;
pub mod cli;
pub mod conformance;
pub mod dissector;
pub mod error;
pub mod http;
pub mod paths;
pub mod peer;
pub mod probe;
pub mod replay;
pub mod report;
pub mod repro;
pub mod soak;
pub mod supervise;
pub mod symbolize;

#[doc(hidden)]
pub mod fuzzing;

pub use error::{Error, Result};
