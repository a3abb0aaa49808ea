//! Real-socket and end-to-end tests of the `harness` binary and library (one test binary, one module per
//! subcommand).

mod browser;
mod check;
mod conformance;
mod deploy;
mod diag;
mod dissector;
mod docs;
mod replay;
mod report;
mod repro;
mod shard;
mod soak;
mod unreachable;
