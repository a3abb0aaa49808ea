//! One sans-IO ACIP connection for either role: bytes and time in, bytes to transmit and events out.
//!
//! ```text
//!   handle_input(Input::Bytes) ─► TCP: StreamDecoder ───────────────────────────┐
//!                               └► WS: FrameDecoder ─► control: PING→PONG, CLOSE (validated)
//!                                                   └► data: feb Reassembler / head HeadFrameOrder+StreamDecoder
//!                                                                                 ▼
//!   packets ─► handshake (ClientHandshake / ServerHandshake) ─► Session (decrypt) ─► Event::Packet
//!   handle_input(Input::Send) ─► Session (encrypt) ─► encode ─► WS: fragment + mask ─► Output::Transmit
//! ```
//!
//! The receive side (everything left of "packets") is [`Receiver`], usable alone by a shell that reads on
//! one task and handles packets on another.
//!
//! A WebSocket connection starts after the HTTP upgrade (the shell does it: see [`crate::ws`] for frames).
//! The first error is a [`Event::Violation`]: a WebSocket peer is sent a CLOSE with the code
//! [`crate::Error::close`] gives; on TCP a server sends an ERROR_MESSAGE with its code (except after a
//! framing error, which leaves no packet boundary) and a client just closes. The connection is then dead:
//! later input is ignored and nothing more is transmitted.
//!
//! Drain order, documented because shells rely on it: after each `handle_input`, call
//! [`Conn::poll_output`] until it returns `None`. It yields every pending [`Output::Transmit`] first (in
//! the order the bytes must go out), then the [`Output::Event`]s in the order they happened. Then arm a
//! timer for [`Conn::poll_timeout`] and call `handle_input(Input::Timeout, now)` when it fires.

mod receive;
#[cfg(test)]
mod tests;

pub use receive::{Received, Receiver};

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::codec::payloads::ErrorMessage;
use crate::codec::{Limits, Packet, PacketType};
use crate::crypto::{
    ClientHandshake, CryptoError, HandshakeConfig, HandshakeError, HandshakeEvent, Opener, ServerHandshake,
    Session, Transport,
};
use crate::ws::{close_code, close_payload, encode_frame, MaskKeys, OpCode, ReassemblerConfig};
use crate::{Dialect, Error};

/// Settings of one connection.
#[derive(Clone, Debug)]
pub struct ConnConfig {
    /// Dialect, transport and crypto settings of the handshake; `handshake.transport` is the transport.
    pub handshake: HandshakeConfig,
    pub limits: Limits,
    /// `feb` WebSocket reassembly (timeout, sizes).
    pub reassembly: ReassemblerConfig,
    /// WebSocket: cut outgoing messages into frames of at most this many payload bytes (`None`: one frame).
    pub ws_fragment: Option<usize>,
    /// Answer ACIP PING packets with PONG (the PING is still reported as an event).
    pub answer_pings: bool,
    /// Seed of the WebSocket masking keys a client uses.
    pub mask_seed: u64,
    /// Who frames WebSocket messages: `true` (default) this connection (bytes in, frames out); `false` a
    /// WebSocket library in the shell, which then feeds whole packets ([`Input::Packet`]) and sends each
    /// [`Output::Transmit`] (one encoded packet) as one binary message.
    pub frame_ws: bool,
    /// On failure, tell the peer why (module docs). `false`: the shell has its own failure policy (the
    /// reference server's REMOTE_LOG + ERROR_MESSAGE, or a plain close) and only gets the
    /// [`Event::Violation`].
    pub notify_failure: bool,
    /// ACIP-SPEC.md 1.4 (c): a packet the connection cannot use (an ENCRYPTED one that does not decrypt or
    /// comes without a key, a handshake packet other than REKEY_* after an encrypted handshake) is reported as [`Event::Dropped`] and the connection stays up, as the real
    /// WebSocket server does. `false` (default): it fails the connection.
    pub drop_unusable: bool,
}

impl ConnConfig {
    /// The real defaults for a dialect, transport and handshake seed.
    pub fn new(dialect: Dialect, transport: Transport, seed: u64) -> Self {
        let limits = Limits::default();
        ConnConfig {
            handshake: HandshakeConfig::new(dialect, transport, seed),
            limits,
            reassembly: ReassemblerConfig::from_limits(&limits),
            ws_fragment: None,
            answer_pings: true,
            mask_seed: seed ^ 0x6d61_736b,
            frame_ws: true,
            notify_failure: true,
            drop_unusable: false,
        }
    }

    fn transport(&self) -> Transport {
        self.handshake.transport
    }
}

/// What goes into a connection.
#[derive(Debug, Clone)]
pub enum Input {
    /// Bytes read from the socket.
    Bytes(Bytes),
    /// A whole packet the shell already decoded (a WebSocket library's message, with
    /// [`ConnConfig::frame_ws`] off).
    Packet(Packet),
    /// The deadline of [`Conn::poll_timeout`] passed.
    Timeout,
    /// A packet to send (encrypted when the session is; queued until the handshake is done).
    Send(Packet),
    /// Close the connection: a WebSocket CLOSE with this code and reason (TCP: nothing is sent; the shell
    /// shuts the socket down after draining).
    Close { code: u16, reason: String },
}

/// What comes out of a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Bytes to write to the socket, in order.
    Transmit(Bytes),
    Event(Event),
}

/// What happened on a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A handshake packet went out (`sent`) or came in: for reports that show the handshake step by step.
    HandshakePacket { sent: bool, packet_type: PacketType },
    /// The handshake ended: `encrypted` says whether packets are now sealed.
    HandshakeDone { encrypted: bool },
    /// A packet from the peer (decrypted when it came as ENCRYPTED).
    Packet(Packet),
    /// The peer sent a WebSocket CLOSE (answered already) or, on TCP, an ERROR_MESSAGE it closes after.
    PeerClosed { code: Option<u16>, reason: String },
    /// The peer broke the protocol; the connection is failed (see the module docs).
    Violation(Error),
    /// A packet the connection could not use was dropped and the connection stays up
    /// ([`ConnConfig::drop_unusable`]).
    Dropped(Error),
    /// A REKEY_* packet after an encrypted handshake was ignored and the old key kept (ACIP-SPEC.md 4.8).
    RekeyIgnored(PacketType),
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Handshake,
    Open,
    /// We sent a CLOSE and wait for the peer's.
    Closing,
    /// Nothing more is read or sent.
    Closed,
}

enum Handshake {
    Client(Box<ClientHandshake>),
    Server(Box<ServerHandshake>),
}

impl Handshake {
    fn handle_packet(&mut self, p: Packet, now: Instant) -> Result<(), HandshakeError> {
        match self {
            Handshake::Client(h) => h.handle_packet(p, now),
            Handshake::Server(h) => h.handle_packet(p, now),
        }
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        match self {
            Handshake::Client(h) => h.handle_timeout(now),
            Handshake::Server(h) => h.handle_timeout(now),
        }
    }
    fn poll_transmit(&mut self) -> Option<Packet> {
        match self {
            Handshake::Client(h) => h.poll_transmit(),
            Handshake::Server(h) => h.poll_transmit(),
        }
    }
    fn poll_event(&mut self) -> Option<HandshakeEvent> {
        match self {
            Handshake::Client(h) => h.poll_event(),
            Handshake::Server(h) => h.poll_event(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Handshake::Client(h) => h.poll_timeout(),
            Handshake::Server(h) => h.poll_timeout(),
        }
    }
    fn is_complete(&self) -> bool {
        match self {
            Handshake::Client(h) => h.is_complete(),
            Handshake::Server(h) => h.is_complete(),
        }
    }
    fn into_session(self) -> Option<Session> {
        match self {
            Handshake::Client(h) => h.into_session(),
            Handshake::Server(h) => h.into_session(),
        }
    }
}

/// One ACIP connection, either role. See the module docs for the drain order.
pub struct Conn {
    config: ConnConfig,
    is_client: bool,
    state: State,
    receiver: Receiver,
    handshake: Option<Handshake>,
    session: Option<Session>,
    /// The decrypting half left after [`Conn::take_sealer`].
    opener: Option<Opener>,
    /// TCP after an encrypted handshake: plaintext non-handshake packets are a violation (the real server).
    enforce_encryption: bool,
    /// Packets to send once the handshake is done.
    queued: Vec<Packet>,
    transmits: VecDeque<Bytes>,
    events: VecDeque<Event>,
    /// The inner CRC of the packet the last [`Input::Packet`] decrypted to, and its payload.
    opened_crc: Option<(u32, bytes::Bytes)>,
    masks: MaskKeys,
    now: Instant,
    /// Test-only broken variant: forget buffered partial input before every read.
    #[cfg(test)]
    pub(crate) broken_forget_partial: bool,
}

/// A connection in the client role.
pub type ClientConn = Conn;
/// A connection in the server role.
pub type ServerConn = Conn;

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("client", &self.is_client)
            .field("state", &self.state)
            .field("encrypted", &self.is_encrypted())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// A client connection; its first handshake packets (if the transport has the client speak first) are
    /// ready in [`Conn::poll_output`] at once.
    pub fn client(config: ConnConfig, now: Instant) -> Conn {
        let hs = ClientHandshake::new(config.handshake.clone(), now);
        Conn::new(config, true, Handshake::Client(Box::new(hs)), now)
    }

    /// A server connection.
    pub fn server(config: ConnConfig, now: Instant) -> Conn {
        let hs = ServerHandshake::new(config.handshake.clone(), now);
        Conn::new(config, false, Handshake::Server(Box::new(hs)), now)
    }

    fn new(config: ConnConfig, is_client: bool, hs: Handshake, now: Instant) -> Conn {
        let receiver = Conn::receiver(&config, is_client);
        let masks = MaskKeys::new((config.mask_seed ^ (config.mask_seed >> 32)) as u32);
        let mut c = Conn {
            config,
            is_client,
            state: State::Handshake,
            receiver,
            handshake: Some(hs),
            session: None,
            opener: None,
            enforce_encryption: false,
            queued: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            opened_crc: None,
            masks,
            now,
            #[cfg(test)]
            broken_forget_partial: false,
        };
        c.drive_handshake();
        c
    }

    fn receiver(config: &ConnConfig, is_client: bool) -> Receiver {
        Receiver::new(
            config.transport(),
            config.handshake.dialect,
            config.limits,
            config.reassembly,
            is_client,
        )
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The verified inner CRC-32C of `payload` if it is the payload of the packet the last
    /// [`Input::Packet`] decrypted to (an [`Event::Packet`] just drained): lets the caller check
    /// checksums inside it without another pass ([`crate::pattern::PatternChecker`]).
    pub fn opened_crc(&self, payload: &bytes::Bytes) -> Option<u32> {
        let (crc, opened) = self.opened_crc.as_ref()?;
        (opened.as_ptr() == payload.as_ptr() && opened.len() == payload.len()).then_some(*crc)
    }

    /// Whether packets are sealed with a session key.
    pub fn is_encrypted(&self) -> bool {
        self.session.is_some() || self.opener.is_some()
    }

    pub fn is_client(&self) -> bool {
        self.is_client
    }

    /// The traffic session, for a shell that seals and opens packets itself after the handshake.
    pub fn into_session(self) -> Option<Session> {
        self.session
    }

    /// Takes the sealing half of the traffic key, for a shell that encrypts on another task (the reference
    /// server's writer). The connection keeps decrypting; from now on it sends only handshake-class
    /// packets itself: asking it to send another one fails it with [`crate::crypto::CryptoError::SealerMoved`],
    /// so the two never share a nonce counter. `None` before the handshake, on a plaintext session, or
    /// when already taken.
    pub fn take_sealer(&mut self) -> Option<Session> {
        let s = self.session.take()?;
        self.opener = Some(s.opener());
        Some(s)
    }

    /// Feeds one input at `now`.
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        self.now = now;
        if self.state == State::Closed {
            return;
        }
        match input {
            Input::Bytes(b) => self.on_bytes(&b),
            Input::Packet(p) => self.on_packet(p),
            Input::Timeout => self.on_timeout(),
            Input::Send(p) => {
                if self.state == State::Handshake {
                    self.queued.push(p);
                } else if self.state == State::Open {
                    self.send_packet(p);
                }
            }
            Input::Close { code, reason } => self.close(code, &reason),
        }
    }

    /// The next output; see the module docs for the order.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(Output::Transmit(t));
        }
        self.events.pop_front().map(Output::Event)
    }

    /// When to call `handle_input(Input::Timeout, ..)`: the handshake's next deadline or the `feb`
    /// reassembly timeout of a message in progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let hs = self.handshake.as_ref().and_then(Handshake::poll_timeout);
        [hs, self.receiver.poll_timeout()].into_iter().flatten().min()
    }

    fn on_timeout(&mut self) {
        let now = self.now;
        if let Some(hs) = self.handshake.as_mut() {
            if let Err(e) = hs.handle_timeout(now) {
                return self.fail_handshake(e);
            }
        }
        if let Err(e) = self.receiver.handle_timeout(now) {
            self.fail(e);
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        #[cfg(test)]
        if self.broken_forget_partial {
            self.receiver = Conn::receiver(&self.config, self.is_client);
        }
        self.receiver.handle_bytes(bytes);
        // In wire order: a CLOSE or an error ends the read; the packets before it are handled first.
        while self.state != State::Closed {
            match self.receiver.poll(self.now) {
                None => break,
                Some(Ok(Received::Packet { packet, .. })) => self.on_packet(packet),
                Some(Ok(Received::Ping(payload))) => self.push_frame(OpCode::Pong, true, &payload),
                Some(Ok(Received::Pong(_))) => {}
                Some(Ok(Received::Close(c))) => {
                    if self.state != State::Closing {
                        // Echo the code (an empty CLOSE is answered with 1000: 1005 is never sent).
                        let reply = close_payload(c.code.unwrap_or(close_code::NORMAL), "");
                        self.push_frame(OpCode::Close, true, &reply);
                    }
                    self.events.push_back(Event::PeerClosed { code: c.code, reason: c.reason });
                    self.state = State::Closed;
                }
                Some(Err(e)) => self.fail(e),
            }
        }
    }

    fn on_packet(&mut self, p: Packet) {
        self.opened_crc = None;
        if let Some(hs) = self.handshake.as_mut() {
            self.events.push_back(Event::HandshakePacket { sent: false, packet_type: p.packet_type });
            if let Err(e) = hs.handle_packet(p, self.now) {
                return self.fail_handshake(e);
            }
            return self.drive_handshake();
        }
        let keyed = self.is_encrypted();
        let p = if p.packet_type == PacketType::ENCRYPTED {
            let opened = match (&self.session, &self.opener) {
                (Some(s), _) => s.decrypt_with_crc(&p),
                (None, Some(o)) => o.decrypt_with_crc(&p),
                (None, None) => Err(CryptoError::NoSessionKey),
            };
            match opened {
                Ok((inner, crc)) => {
                    self.opened_crc = Some((crc, inner.payload.clone()));
                    inner
                }
                Err(e) if self.config.drop_unusable => {
                    return self.events.push_back(Event::Dropped(e.into()))
                }
                Err(e) => return self.fail(e.into()),
            }
        } else if keyed && p.packet_type.is_handshake() {
            // REKEY_* after the handshake: ignored, the old key is kept (4.8); other handshake types fail.
            match p.packet_type {
                PacketType::CRYPTO_REKEY_REQUEST
                | PacketType::CRYPTO_REKEY_RESPONSE
                | PacketType::CRYPTO_REKEY_COMPLETE => {
                    return self.events.push_back(Event::RekeyIgnored(p.packet_type))
                }
                other => {
                    let e = CryptoError::UnexpectedHandshakePacket(other).into();
                    if self.config.drop_unusable {
                        return self.events.push_back(Event::Dropped(e));
                    }
                    return self.fail(e);
                }
            }
        } else if self.enforce_encryption {
            return self.fail(CryptoError::PlaintextAfterHandshake(p.packet_type).into());
        } else {
            p
        };
        self.deliver(p);
    }

    fn deliver(&mut self, p: Packet) {
        if p.packet_type == PacketType::PING && self.config.answer_pings {
            self.send_packet(Packet::empty(PacketType::PONG));
        }
        if p.packet_type == PacketType::ERROR_MESSAGE && self.config.transport() == Transport::Tcp {
            if let Ok(m) = ErrorMessage::decode(&p.payload) {
                self.events.push_back(Event::Packet(p));
                self.events.push_back(Event::PeerClosed { code: None, reason: m.message });
                return;
            }
        }
        self.events.push_back(Event::Packet(p));
    }

    /// Sends what the handshake has queued and reports its events; on completion, takes the session.
    fn drive_handshake(&mut self) {
        let Some(hs) = self.handshake.as_mut() else { return };
        let mut out = Vec::new();
        while let Some(p) = hs.poll_transmit() {
            out.push(p);
        }
        let mut early = Vec::new();
        let mut failed = None;
        while let Some(ev) = hs.poll_event() {
            match ev {
                HandshakeEvent::EarlyPacket(p) => early.push(p),
                HandshakeEvent::PlaintextClient { first_packet } => early.push(first_packet),
                HandshakeEvent::AuthFailed { reason } => failed = Some(HandshakeError::AuthFailed { reason }),
                HandshakeEvent::Completed { .. } => {}
            }
        }
        let complete = hs.is_complete();
        for p in out {
            self.events.push_back(Event::HandshakePacket { sent: true, packet_type: p.packet_type });
            self.push_packet(&p);
        }
        if let Some(e) = failed {
            return self.fail(e.into());
        }
        if complete {
            self.session = self.handshake.take().and_then(Handshake::into_session);
            self.enforce_encryption =
                self.session.is_some() && self.config.transport() == Transport::Tcp && !self.is_client;
            self.state = State::Open;
            self.events.push_back(Event::HandshakeDone { encrypted: self.session.is_some() });
        }
        for p in early {
            self.deliver(p);
        }
        if complete {
            for p in std::mem::take(&mut self.queued) {
                self.send_packet(p);
            }
        }
    }

    /// A failed handshake still sends what it queued on the way out (CRYPTO_AUTH_FAILED), then fails.
    fn fail_handshake(&mut self, e: HandshakeError) {
        if let Some(hs) = self.handshake.as_mut() {
            let mut out = Vec::new();
            while let Some(p) = hs.poll_transmit() {
                out.push(p);
            }
            for p in out {
                self.events.push_back(Event::HandshakePacket { sent: true, packet_type: p.packet_type });
                self.push_packet(&p);
            }
        }
        self.fail(e.into());
    }

    /// Sends an application packet: sealed when the session is encrypted and the type is not plain-only.
    fn send_packet(&mut self, p: Packet) {
        let p = match self.session.as_mut() {
            Some(s) if !p.packet_type.is_handshake() => match s.encrypt(&p) {
                Ok(e) => e,
                Err(e) => return self.fail(e.into()),
            },
            None if self.opener.is_some() && !p.packet_type.is_handshake() => {
                return self.fail(CryptoError::SealerMoved(p.packet_type).into())
            }
            _ => p,
        };
        self.push_packet(&p);
    }

    fn push_packet(&mut self, p: &Packet) {
        let wire = p.encode();
        match self.config.transport() {
            Transport::WebSocket if !self.config.frame_ws => self.transmits.push_back(Bytes::from(wire)),
            Transport::Tcp => self.transmits.push_back(Bytes::from(wire)),
            Transport::WebSocket => {
                let size = self.config.ws_fragment.unwrap_or(usize::MAX).max(1);
                let mut out = Vec::with_capacity(wire.len() + 14 * (wire.len() / size + 1));
                let mut chunks = wire.chunks(size).peekable();
                let mut op = OpCode::Binary;
                while let Some(c) = chunks.next() {
                    let mask = self.mask();
                    encode_frame(op, chunks.peek().is_none(), mask, c, &mut out);
                    op = OpCode::Continuation;
                }
                self.transmits.push_back(Bytes::from(out));
            }
        }
    }

    fn mask(&mut self) -> Option<[u8; 4]> {
        self.is_client.then(|| self.masks.next_key())
    }

    fn push_frame(&mut self, op: OpCode, fin: bool, payload: &[u8]) {
        if !self.config.frame_ws {
            return; // the shell's WebSocket library sends its own control frames
        }
        let mask = self.mask();
        let mut out = Vec::with_capacity(payload.len() + 14);
        encode_frame(op, fin, mask, payload, &mut out);
        self.transmits.push_back(Bytes::from(out));
    }

    fn close(&mut self, code: u16, reason: &str) {
        match self.config.transport() {
            Transport::WebSocket if self.state != State::Closing => {
                self.push_frame(OpCode::Close, true, &close_payload(code, reason));
                self.state = State::Closing;
            }
            Transport::WebSocket => {}
            Transport::Tcp => self.state = State::Closed,
        }
    }

    /// Fails the connection: tells the peer why (WebSocket CLOSE or TCP ERROR_MESSAGE) and stops.
    fn fail(&mut self, e: Error) {
        if self.state == State::Closed {
            return;
        }
        let advice = e.close();
        match self.config.transport() {
            _ if !self.config.notify_failure => {}
            Transport::WebSocket => {
                if self.state != State::Closing {
                    self.push_frame(
                        OpCode::Close,
                        true,
                        &close_payload(advice.ws_close_code, &e.to_string()),
                    );
                }
            }
            // Framing errors close a TCP connection silently, as the real peers do (ACIP-SPEC.md 1.4): the
            // byte stream has no boundary left to put a packet on.
            Transport::Tcp if matches!(e, Error::Codec(_)) => {}
            // ERROR_MESSAGE is the server's word (ACIP-SPEC.md 3.12); a client just closes.
            Transport::Tcp if self.is_client => {}
            Transport::Tcp => {
                let mut payload = Vec::new();
                ErrorMessage::new(advice.error_code, &e.to_string()).encode_into(&mut payload);
                // Plain: an ERROR_MESSAGE about a failed session cannot rely on it.
                self.transmits
                    .push_back(Bytes::from(Packet::new(PacketType::ERROR_MESSAGE, payload).encode()));
            }
        }
        self.events.push_back(Event::Violation(e));
        self.state = State::Closed;
        self.handshake = None;
    }
}
