//! Fuzz logic as library code (STYLE.md rule 18): each target in `fuzz/` is a thin wrapper over one
//! function here, so the logic is compiled, linted and replayed over `corpus/` by plain `cargo test`.

pub mod handshake;
pub mod packet;
pub mod reassembly;
pub mod stream;
