//! Real-socket tests of `reference-server` on loopback with ephemeral ports (issue 4, "Tests"). Nothing
//! sleeps to synchronise: tests wait for packets, closes or the server's own counters.

mod util;

mod echo_close;
mod faults;
mod http;
mod large;
mod lifecycle;
mod malformed;
mod process;
mod sessions;
