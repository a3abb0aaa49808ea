//! The receive side of a connection on its own: bytes in, packets and WebSocket control messages out, in
//! wire order. [`super::Conn`] is built on it; a shell that reads on one task and handles packets on
//! another (the reference server) uses it directly in its reader and feeds the packets to a
//! [`super::Conn`] in packet mode.
//!
//! ```text
//!   TCP: StreamDecoder ─────────────────────────────────────────────────────────► Packet
//!   WS:  FrameDecoder ─► PING / CLOSE (validated, RFC 6455 5.5.1, 7.4)  ───────► Ping / Close
//!                      └► TEXT: UTF-8 checked per fragment (8.1)
//!                      └► feb: Reassembler (one message = one packet) ──────────► Packet (+ gaps)
//!                      └► head: HeadFrameOrder (5.4) ─► StreamDecoder ───────────► Packet
//! ```
//!
//! The first error ends the receiver: [`Receiver::poll`] returns it once, then `None` for ever.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{Limits, Packet};
use crate::crypto::Transport;
use crate::stream::StreamDecoder;
use crate::ws::{
    feed_head_stream, parse_close, read_close_lossy, CloseFrame, FrameDecoder, FrameDecoderConfig,
    FrameError, HeadFrameOrder, OpCode, Reassembler, ReassemblerConfig, ReassemblyEvent, Utf8Validator,
};
use crate::{Dialect, Error};

/// What the receive side produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A whole packet. `wire` is its size on the wire: header + payload (the whole message for `feb`);
    /// `gaps` are the times between its WebSocket fragments (`feb` only; empty otherwise).
    Packet { packet: Packet, wire: usize, gaps: Vec<Duration> },
    /// A WebSocket PING with its payload: answer it with a PONG carrying the same bytes.
    Ping(Bytes),
    /// A WebSocket PONG with its payload (nothing to do; an observer may count it).
    Pong(Bytes),
    /// A valid WebSocket CLOSE. Nothing is read after it.
    Close(CloseFrame),
}

enum Framing {
    Tcp(StreamDecoder),
    Ws { frames: FrameDecoder, data: WsData, text: Option<Utf8Validator> },
}

enum WsData {
    Feb(Reassembler),
    Head { order: HeadFrameOrder, stream: StreamDecoder },
}

/// The receive side of one connection (see the module docs).
pub struct Receiver {
    framing: Framing,
    limits: Limits,
    /// An error or a CLOSE was returned: nothing more comes out.
    done: bool,
    /// `false` for an observer ([`Receiver::observer`]): no judgement beyond what reading needs.
    strict: bool,
    /// The verified CRC-32C of the last packet [`Receiver::poll`] returned.
    last_crc: Option<u32>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("buffered", &self.buffered()).field("done", &self.done).finish()
    }
}

impl Receiver {
    /// A receiver for `transport` and `dialect`. `is_client` decides the WebSocket masking rule: a server
    /// reads masked client frames, a client unmasked server frames (RFC 6455 5.1).
    pub fn new(
        transport: Transport,
        dialect: Dialect,
        limits: Limits,
        reassembly: ReassemblerConfig,
        is_client: bool,
    ) -> Receiver {
        let framing = match transport {
            Transport::Tcp => Framing::Tcp(StreamDecoder::new(limits)),
            Transport::WebSocket => Framing::Ws {
                frames: FrameDecoder::with_config(FrameDecoderConfig {
                    max_frame: limits.max_ws_frame,
                    require_mask: Some(!is_client),
                    strict_length: false,
                    observe: false,
                }),
                data: match dialect {
                    Dialect::Feb => WsData::Feb(Reassembler::new(reassembly)),
                    Dialect::Head => {
                        WsData::Head { order: HeadFrameOrder::default(), stream: StreamDecoder::new(limits) }
                    }
                },
                text: None,
            },
        };
        Receiver { framing, limits, done: false, strict: true, last_crc: None }
    }

    /// A receiver that reads what a server sends without judging it, for a probe that reports what it
    /// saw: client role, every data frame one byte stream whatever the dialect (a `feb` message is one
    /// packet of it), a CLOSE read lossily (code 1005 when absent, reason with invalid UTF-8 replaced),
    /// no TEXT or frame-order checks. Frames must still parse and packets still decode.
    pub fn observer(transport: Transport, limits: Limits) -> Receiver {
        let reassembly = ReassemblerConfig::from_limits(&limits);
        let mut r = Receiver::new(transport, Dialect::Head, limits, reassembly, true);
        r.strict = false;
        r
    }

    /// Appends bytes read from the socket; drain [`Receiver::poll`] afterwards.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.done {
            return;
        }
        match &mut self.framing {
            Framing::Tcp(s) => s.handle_bytes(bytes),
            Framing::Ws { frames, .. } => frames.handle_bytes(bytes),
        }
    }

    /// How many bytes to read next so that the buffer [`Receiver::recv_buf`] lends never regrows under a
    /// partial packet or frame (see [`StreamDecoder::read_hint`], [`FrameDecoder::read_hint`]).
    pub fn read_hint(&self) -> usize {
        match &self.framing {
            Framing::Tcp(s) => s.read_hint(),
            Framing::Ws { frames, .. } => frames.read_hint(),
        }
    }

    /// The receive buffer with room for `room` more bytes, for a socket read straight into it (no copy
    /// from a read buffer): what is appended counts as received, as with [`Receiver::handle_bytes`].
    /// After the receiver is done, what is appended is ignored.
    pub fn recv_buf(&mut self, room: usize) -> &mut bytes::BytesMut {
        let buf = match &mut self.framing {
            Framing::Tcp(s) => s.recv_buf(room),
            Framing::Ws { frames, .. } => frames.recv_buf(room),
        };
        if self.done {
            buf.clear();
        }
        buf
    }

    /// The CRC-32C of the payload of the last packet [`Receiver::poll`] returned, already checked against
    /// its bytes: a receiver can derive other checksums of the payload from it without another pass
    /// ([`crate::pattern::PatternChecker`]).
    pub fn last_packet_crc(&self) -> Option<u32> {
        self.last_crc
    }

    /// The next packet or control message from what was fed, `now` being the time the bytes arrived
    /// (`feb` fragment timing). `None`: more bytes are needed (or the receiver is done).
    pub fn poll(&mut self, now: Instant) -> Option<Result<Received, Error>> {
        self.last_crc = None;
        if self.done {
            return None;
        }
        let r = self.next(now);
        if matches!(r, Some(Err(_)) | Some(Ok(Received::Close(_)))) {
            self.done = true;
        }
        r
    }

    fn next(&mut self, now: Instant) -> Option<Result<Received, Error>> {
        let (limits, strict) = (self.limits, self.strict);
        match &mut self.framing {
            Framing::Tcp(stream) => stream_packet(stream, &mut self.last_crc),
            Framing::Ws { frames, data, text } => loop {
                if let WsData::Head { stream, .. } = data {
                    if let Some(r) = stream_packet(stream, &mut self.last_crc) {
                        return Some(r);
                    }
                }
                let frame = match frames.poll_frame()? {
                    Ok(f) => f,
                    Err(e) => return Some(Err(e.into())),
                };
                match frame.opcode {
                    OpCode::Ping => return Some(Ok(Received::Ping(frame.payload))),
                    OpCode::Pong => return Some(Ok(Received::Pong(frame.payload))),
                    OpCode::Close if !strict => {
                        let (code, reason) = read_close_lossy(&frame.payload);
                        return Some(Ok(Received::Close(CloseFrame { code, reason })));
                    }
                    OpCode::Close => {
                        return Some(
                            parse_close(&frame.payload)
                                .map(Received::Close)
                                .map_err(|e| FrameError::from(e).into()),
                        )
                    }
                    _ => {}
                }
                // RFC 6455 8.1: TEXT is checked fragment by fragment and failed at the bad one.
                if frame.opcode == OpCode::Text && strict {
                    *text = Some(Utf8Validator::new());
                } else if frame.opcode == OpCode::Binary {
                    *text = None;
                }
                if let Some(v) = text.as_mut() {
                    if let Err(e) = v.push(&frame.payload, frame.fin) {
                        return Some(Err(FrameError::from(e).into()));
                    }
                    if frame.fin {
                        *text = None;
                    }
                }
                match data {
                    WsData::Feb(reasm) => match reasm.handle_frame(frame, now) {
                        Ok(Some(ReassemblyEvent::Message(m))) => {
                            let wire = m.data.len();
                            self.last_crc =
                                crate::codec::Header::decode(&m.data, &limits).ok().map(|h| h.crc32);
                            return Some(
                                Packet::decode_exact(m.data, &limits)
                                    .map(|packet| Received::Packet { packet, wire, gaps: m.gaps })
                                    .map_err(Error::from),
                            );
                        }
                        Ok(_) => {}
                        Err(e) => return Some(Err(e.into())),
                    },
                    WsData::Head { order, stream } => {
                        if let Err(e) = order.check(&frame) {
                            if strict {
                                return Some(Err(e.into()));
                            }
                        }
                        feed_head_stream(&frame, stream);
                    }
                }
            },
        }
    }

    /// The `feb` reassembly deadline of a message in progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.framing {
            Framing::Ws { data: WsData::Feb(r), .. } if !self.done => r.poll_timeout(),
            _ => None,
        }
    }

    /// The deadline of [`Receiver::poll_timeout`] passed: a `feb` message still incomplete is an error.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if let Framing::Ws { data: WsData::Feb(r), .. } = &mut self.framing {
            if !self.done {
                if let Err(e) = r.handle_timeout(now) {
                    self.done = true;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Bytes held that are not yet a whole packet (frames, fragments, stream bytes).
    pub fn buffered(&self) -> usize {
        match &self.framing {
            Framing::Tcp(s) => s.buffered(),
            Framing::Ws { frames, data, .. } => {
                frames.buffered()
                    + match data {
                        WsData::Feb(r) => r.buffered(),
                        WsData::Head { stream, .. } => stream.buffered(),
                    }
            }
        }
    }

    /// Whether the input so far ended exactly at a packet (and frame, message) boundary: an end of stream
    /// here is clean.
    pub fn is_at_boundary(&self) -> bool {
        match &self.framing {
            Framing::Tcp(s) => s.is_at_boundary(),
            Framing::Ws { frames, data, .. } => {
                frames.is_at_boundary()
                    && match data {
                        WsData::Feb(r) => !r.in_progress(),
                        WsData::Head { stream, .. } => stream.is_at_boundary(),
                    }
            }
        }
    }
}

fn stream_packet(stream: &mut StreamDecoder, last_crc: &mut Option<u32>) -> Option<Result<Received, Error>> {
    stream.poll_packet_crc().map(|r| {
        r.map(|(packet, crc)| {
            *last_crc = Some(crc);
            Received::Packet { wire: packet.wire_len(), packet, gaps: Vec::new() }
        })
        .map_err(Error::from)
    })
}
