//! The only import path for `Arc`, `Mutex` and atomics in this crate, switched to loom's under `cfg(loom)`
//! so the loom models check the real code (STYLE.md rule 16).

#[cfg(loom)]
pub use loom::sync::{atomic, Arc, Mutex};
#[cfg(not(loom))]
pub use std::sync::{atomic, Arc, Mutex};
