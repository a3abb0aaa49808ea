//! `harness`: ACIP diagnostics over the `acip` core and the reference peers. Each subcommand is a module
//! with an `Args` struct and a `run` function; measurement is kept apart from reporting.
