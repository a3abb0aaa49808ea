//! Reading captures of ACIP traffic (ACIP-SPEC.md 6: raw TCP and WebSocket over TCP).
//!
//! ```text
//!   pcap / pcapng bytes ──► CaptureReader ──► Frame (link type, timestamp, bytes)
//!                              link::decode_tcp ──► TcpSegment (addresses, seq, flags, window, payload)
//!                              tcp::TcpReassembler ──► per flow, per direction: in-order data, gaps, flags
//! ```
//!
//! Everything works on a borrowed slice of the whole file (no copies of frame data) and never trusts a
//! length field further than the bytes that are there. `writer` is the other way round: it records a
//! synthetic session as a classic pcap that Wireshark opens.

pub mod link;
pub mod read;
pub mod record;
pub mod samples;
pub mod tcp;
pub mod writer;

pub use link::{decode_tcp, LinkError, TcpSegment};
pub use read::{CaptureFormat, CaptureReader, Frame, LinkType, ReadError};
pub use tcp::{Dir, FlowId, StreamEvent, TcpReassembler, TcpReassemblerConfig};
pub use writer::{sessions_to_pcap, sessions_to_pcapng, CaptureWriter, SyntheticLink, SyntheticSession};
