//! Real-socket tests of `reference-client` on loopback (ephemeral ports, no sleeps to synchronise):
//! against a minimal in-test peer built on `acip` (`peer`), so every client path is covered on its own.

mod peer;
mod sessions;
