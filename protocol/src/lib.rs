//! `acip`: the sans-IO core of ACIP, the wire protocol of ascii-chat (see `../shared/ACIP-SPEC.md`).
//!
//! Contract: this crate does no I/O, never reads a clock and starts no threads. Bytes and `now` go in;
//! packets, events, bytes to transmit and deadlines come out. The tokio shells (`reference-server`,
//! `reference-client`) and the `harness` own sockets, tasks and timers.
//!
//! ```text
//!   bytes from a socket ──► stream::StreamDecoder ──► codec::Packet ──► crypto::Session (decrypt)
//!   ws frames ───────────► ws::FrameDecoder ─► ws::Reassembler(now) ─┘
//!   codec::Packet ──► crypto::Session (encrypt) ──► codec::encode ──► ws::Fragmenter ──► bytes out
//!   handshake messages ◄──► crypto::handshake::{ClientHandshake, ServerHandshake}(now) ──► deadlines
//!   slots::SlotPool: reserve / activate / drain / release, each release exactly once
//! ```

pub mod cli;
pub mod codec;
pub mod conn;
pub mod crc;
pub mod crypto;
pub mod error;
pub mod resync;
pub mod slots;
pub mod stream;
pub mod sync;
pub mod ws;

#[doc(hidden)]
pub mod fuzzing;
pub mod pattern;
pub mod stats;

pub use codec::{Dialect, Header, Limits, Packet, PacketType};
pub use crypto::Transport;
pub use error::{Error, Result};
