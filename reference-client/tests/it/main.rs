//! Real-socket tests of `reference-client` on loopback (ephemeral ports, no sleeps to synchronise):
//! against a minimal in-test peer built on `acip` (`peer`), so every client path is covered on its own, and
//! against the reference server in-process (`server`).

mod cli;
mod peer;
mod server;
mod sessions;
