//! The cases of `harness conformance`, written in the case language of [`super::cases`], in id order.
//!
//! Expected outcomes come from ACIP-SPEC.md (1.1-1.4 validation, 3.4 CLIENT_CAPABILITIES, 4.3-4.6
//! handshake and plaintext peers, 6.1/6.2 transports, 7.1 slots, 8 the recorded failures, 10 the dialect
//! differences) and RFC 6455 (5.2 framing, 5.4 fragmentation, 5.5 control frames).

use acip::ws::OpCode;
use std::time::Duration;

use acip::PacketType;

use super::cases::*;

/// The exact 4096-byte FIN=1 message of the SIGABRT capture (corpus/regressions, ACIP-SPEC.md 8).
pub const SIGABRT_MESSAGE: &[u8] =
    include_bytes!("../../../corpus/regressions/sigabrt-087fa71-short-message.bin");

/// The IMAGE_FRAME of the captures: 320x240 RGB24, 230,446 bytes on the wire.
const CAPTURE_FRAME: Pkt = Pkt::Image(320, 240);

fn send(pkt: Pkt) -> Step {
    Step::Send { pkt, frag: Frag::Whole, gap: None, chop: None }
}
fn send_frag(pkt: Pkt, frag: Frag) -> Step {
    Step::Send { pkt, frag, gap: None, chop: None }
}
fn send_chop(pkt: Pkt, chop: usize) -> Step {
    Step::Send { pkt, frag: Frag::Whole, gap: None, chop: Some(chop) }
}
fn all(o: Outcome) -> Vec<(Sel, Expect)> {
    vec![(Sel::All, Expect { prefer: o, tolerate: None })]
}
fn exp(prefer: Outcome) -> Expect {
    Expect { prefer, tolerate: None }
}
fn exp_or(prefer: Outcome, tolerate: Outcome) -> Expect {
    Expect { prefer, tolerate: Some(tolerate) }
}
fn data(opcode: OpCode, fin: bool, part: Part) -> F {
    F::Data { opcode, fin, part }
}

const C1002: &[u16] = &[1002];
const C_PROTO: &[u16] = &[1002, 1008];
const C_BIG: &[u16] = &[1009, 1002];
const C1000: &[u16] = &[1000];
const C_ANY: &[u16] = &[];

/// A case with the usual defaults (both transports, plaintext hello, probe).
fn case(id: &'static str, title: &'static str, spec: &'static str) -> Case {
    Case {
        id,
        title,
        spec,
        applies: Applies::Both,
        needs_encryption: false,
        setup: Setup::Hello,
        steps: Vec::new(),
        probe: true,
        expect: all(Outcome::Usable),
    }
}

impl Case {
    fn ws(mut self) -> Self {
        self.applies = Applies::Ws;
        self
    }
    fn tcp(mut self) -> Self {
        self.applies = Applies::Tcp;
        self
    }
    fn steps(mut self, s: Vec<Step>) -> Self {
        self.steps = s;
        self
    }
    fn no_probe(mut self) -> Self {
        self.probe = false;
        self
    }
    fn setup(mut self, s: Setup) -> Self {
        self.setup = s;
        self
    }
    fn encrypting(mut self) -> Self {
        self.needs_encryption = true;
        self
    }
    fn expect(mut self, e: Vec<(Sel, Expect)>) -> Self {
        self.expect = e;
        self
    }
}

/// Every case, in id order.
pub fn catalogue() -> Vec<Case> {
    use OpCode::{Binary, Continuation as Cont, Ping as WsPing, Pong as WsPong, Text};
    let ping = Pkt::Ping;
    let feb_close_head =
        |head: Outcome| vec![(Sel::FebWs, exp(Outcome::close(C1002))), (Sel::HeadWs, exp(head))];
    let close_frame = |code: u16| F::Control { opcode: OpCode::Close, payload: code.to_be_bytes().to_vec() };
    vec![
        // 1: single-frame messages and whole packets.
        case("1.1.1", "PING in one frame (one write on TCP)", "6.1; 6.2").steps(vec![send(ping.clone())]),
        case("1.1.2", "320x240 IMAGE_FRAME (230,446 B) in one frame", "3.7; 6.2 (HEAD sends one frame)")
            .steps(vec![send(CAPTURE_FRAME)]),
        case("1.1.3", "PING in a TEXT message instead of BINARY", "6.2 (message type binary); RFC 6455 5.6")
            .ws()
            .steps(vec![Step::Frames { pkt: ping.clone(), frames: vec![data(Text, true, Part::All)] }])
            .expect(vec![(Sel::All, exp_or(Outcome::Usable, Outcome::close(&[1003, 1002, 1007])))]),
        case("1.1.4", "empty BINARY message", "6.2 (feb: one message = one packet; head: byte stream)")
            .ws()
            .steps(vec![Step::Frames { pkt: ping.clone(), frames: vec![data(Binary, true, Part::Nothing)] }])
            .expect(vec![
                (Sel::FebWs, exp_or(Outcome::close(C1002), Outcome::Usable)),
                (Sel::HeadWs, exp(Outcome::Usable)),
            ]),
        // 2: fragmentation.
        case("2.1.1", "PING in 2 fragments", "6.2; RFC 6455 5.4")
            .ws()
            .steps(vec![send_frag(ping.clone(), Frag::Count(2))]),
        case(
            "2.1.2",
            "230,446-byte IMAGE_FRAME in 57 fragments of 4096 B (old native client)",
            "6.2; 8 (old9850bc9 capture)",
        )
        .ws()
        .steps(vec![send_frag(CAPTURE_FRAME, Frag::Size(4096))]),
        case("2.1.3", "230,446-byte IMAGE_FRAME in 1,000 fragments", "6.2; RFC 6455 5.4")
            .ws()
            .steps(vec![send_frag(CAPTURE_FRAME, Frag::Count(1000))]),
        case("2.1.4", "PING in 22 fragments of 1 byte", "6.2; RFC 6455 5.4")
            .ws()
            .steps(vec![send_frag(ping.clone(), Frag::Size(1))]),
        case("2.1.5", "IMAGE_FRAME whose first fragment ends inside the ACIP header (10 B)", "1.1; 6.2")
            .ws()
            .steps(vec![Step::Frames {
                pkt: Pkt::Image(64, 48),
                frames: vec![data(Binary, false, Part::Head(10)), data(Cont, true, Part::Tail(10))],
            }]),
        case(
            "2.1.6",
            "empty first and last fragments around a PING",
            "RFC 6455 5.4 (empty fragments are legal)",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![
                data(Binary, false, Part::Nothing),
                data(Cont, false, Part::All),
                data(Cont, true, Part::Nothing),
            ],
        }]),
        case(
            "2.1.7",
            "IMAGE_FRAME in 4,097 fragments (one over FEB's 4096-slot queue)",
            "6.2 (recv queue 4096, queue full breaks reassembly)",
        )
        .ws()
        .steps(vec![send_frag(Pkt::Image(64, 48), Frag::Count(4097))])
        .expect(vec![
            (Sel::FebWs, exp_or(Outcome::close(C_BIG), Outcome::Usable)),
            (Sel::HeadWs, exp(Outcome::Usable)),
        ]),
        case("2.1.8", "5 MiB + 1 packet in 64 KiB fragments", "1.3 (MAX_PACKET_SIZE); 6.2")
            .ws()
            .steps(vec![send_frag(Pkt::Oversize, Frag::Size(65_536))])
            .no_probe()
            .expect(all(Outcome::close(C_BIG))),
        // 3: control frames.
        case("3.1.1", "WebSocket PING between the fragments of a PING packet", "RFC 6455 5.4, 5.5.2")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![
                    data(Binary, false, Part::Head(11)),
                    F::Control { opcode: WsPing, payload: b"between".to_vec() },
                    data(Cont, true, Part::Tail(11)),
                ],
            }])
            .expect(all(Outcome::UsableWsPong)),
        case("3.1.2", "unsolicited WebSocket PONG between fragments", "RFC 6455 5.4, 5.5.3").ws().steps(
            vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![
                    data(Binary, false, Part::Head(11)),
                    F::Control { opcode: WsPong, payload: b"unsolicited".to_vec() },
                    data(Cont, true, Part::Tail(11)),
                ],
            }],
        ),
        case("3.1.3", "WebSocket CLOSE between fragments, then the rest", "RFC 6455 5.4, 5.5.1")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![
                    data(Binary, false, Part::Head(11)),
                    close_frame(1000),
                    data(Cont, true, Part::Tail(11)),
                ],
            }])
            .no_probe()
            .expect(all(Outcome::close(C1000))),
        case(
            "3.1.4",
            "fragmented WebSocket PING (FIN=0)",
            "RFC 6455 5.5 (control frames must not be fragmented)",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![F::Odd { b0: 0x09, masked: true, part: Part::Head(4) }],
        }])
        .no_probe()
        .expect(all(Outcome::close(C1002))),
        case("3.1.5", "WebSocket PING with a 126-byte payload", "RFC 6455 5.5 (control payload <= 125)")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![F::Control { opcode: WsPing, payload: vec![0x55; 126] }],
            }])
            .no_probe()
            .expect(all(Outcome::close(C1002))),
        case("3.1.6", "WebSocket PING with a 125-byte payload", "RFC 6455 5.5.2")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![F::Control { opcode: WsPing, payload: vec![0x55; 125] }],
            }])
            .expect(all(Outcome::UsableWsPong)),
        // 4: invalid fragment sequences.
        case(
            "4.1.1",
            "CONTINUATION with nothing to continue",
            "1.4 (c) reassembly errors disconnect; RFC 6455 5.4",
        )
        .ws()
        .steps(vec![Step::Frames { pkt: ping.clone(), frames: vec![data(Cont, true, Part::All)] }])
        .no_probe()
        .expect(all(Outcome::close(C1002))),
        case(
            "4.1.2",
            "BINARY frame before the previous message's FIN",
            "8 (\"BINARY after previous frame that lacked FIN\"); RFC 6455 5.4",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![data(Binary, false, Part::Head(11)), data(Binary, true, Part::All)],
        }])
        .no_probe()
        .expect(all(Outcome::close(C1002))),
        case(
            "4.1.3",
            "CONTINUATION after a message that had FIN",
            "8 (\"CONTINUATION after previous frame that had FIN\")",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![data(Binary, true, Part::All), data(Cont, true, Part::All)],
        }])
        .no_probe()
        .expect(all(Outcome::close(C1002))),
        case("4.1.4", "frame with reserved opcode 0x3", "RFC 6455 5.2")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![F::Odd { b0: 0x83, masked: true, part: Part::All }],
            }])
            .no_probe()
            .expect(all(Outcome::close(C1002))),
        case(
            "4.1.5",
            "BINARY frame with RSV1 set and no extension",
            "RFC 6455 5.2; 5 (HEAD: no permessage-deflate)",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![F::Odd { b0: 0xC2, masked: true, part: Part::All }],
        }])
        .no_probe()
        .expect(all(Outcome::close(C1002))),
        case("4.1.6", "unmasked client frame", "RFC 6455 5.1")
            .ws()
            .steps(vec![Step::Frames {
                pkt: ping.clone(),
                frames: vec![F::Odd { b0: 0x82, masked: false, part: Part::All }],
            }])
            .no_probe()
            .expect(all(Outcome::close(C1002))),
        // 5: message and packet boundaries.
        case("5.1.1", "message shorter than its packet (STREAM_START without 2 bytes)", "6.2; 10 row 6")
            .ws()
            .steps(vec![send(Pkt::truncated(Pkt::StreamStart, 2))])
            .no_probe()
            .expect(feb_close_head(Outcome::Silent)),
        case("5.1.2", "message longer than its packet (PING + 4 bytes of the next header)", "6.2; 10 row 6")
            .ws()
            .steps(vec![send(Pkt::trailing(ping.clone(), 4))])
            .no_probe()
            .expect(feb_close_head(Outcome::Reply(PacketType::PONG, 1))),
        case("5.1.3", "two packets in one message", "6.2; 10 row 6")
            .ws()
            .steps(vec![send(Pkt::Concat(vec![ping.clone(), ping.clone()]))])
            .expect(feb_close_head(Outcome::Usable)),
        case(
            "5.1.4",
            "one packet split across two messages (at byte 11)",
            "6.2; 10 row 6 (head accepts, feb does not)",
        )
        .ws()
        .steps(vec![Step::Frames {
            pkt: ping.clone(),
            frames: vec![data(Binary, true, Part::Head(11)), data(Binary, true, Part::Tail(11))],
        }])
        .expect(feb_close_head(Outcome::Usable)),
        case("5.1.5", "three packets across two messages (cut inside the second)", "6.2; 10 row 6")
            .ws()
            .steps(vec![Step::Frames {
                pkt: Pkt::Concat(vec![ping.clone(), ping.clone(), ping.clone()]),
                frames: vec![data(Binary, true, Part::Head(30)), data(Binary, true, Part::Tail(30))],
            }])
            .expect(feb_close_head(Outcome::Usable)),
        case("5.1.6", "10-byte message that ends inside the ACIP header", "1.1; 6.2")
            .ws()
            .steps(vec![Step::Frames { pkt: ping.clone(), frames: vec![data(Binary, true, Part::Head(10))] }])
            .no_probe()
            .expect(feb_close_head(Outcome::Silent)),
        // 6: packet validation.
        case("6.1.1", "bad magic", "1.1; 1.4 (b) TCP disconnects; 1.4 (c) WS does not check magic")
            .steps(vec![send(Pkt::bad_magic(Pkt::StreamStart))])
            .expect(vec![
                (Sel::Tcp, exp(Outcome::close(C_ANY))),
                (Sel::Ws, exp_or(Outcome::close(C1002), Outcome::Usable)),
            ]),
        case("6.1.2", "bad CRC", "1.2; 1.4 (b); 1.4 (c)")
            .steps(vec![send(Pkt::bad_crc(Pkt::StreamStart))])
            .expect(vec![
                (Sel::Tcp, exp(Outcome::close(C_ANY))),
                (Sel::Ws, exp_or(Outcome::close(C1002), Outcome::Usable)),
            ]),
        case("6.1.3", "unknown packet type 0x7777", "1.4 (b) TCP disconnects; 1.4 (c) WS drops and stays up")
            .steps(vec![send(Pkt::Unknown(0x7777))])
            .expect(vec![
                (Sel::Tcp, exp(Outcome::close(C_ANY))),
                (Sel::Ws, exp_or(Outcome::Usable, Outcome::close(&[1002, 1003, 1008]))),
            ]),
        case(
            "6.1.4",
            "CLIENT_CAPABILITIES of the other dialect's size",
            "3.4 (exact size); 1.4 (c) protocol violation",
        )
        .setup(Setup::None)
        .steps(vec![send(Pkt::CapsOtherDialect)])
        .no_probe()
        .expect(all(Outcome::close_after(C_PROTO, PacketType::ERROR_MESSAGE))),
        case("6.1.5", "CLIENT_CAPABILITIES with width 0", "3.4; 1.4 (c) disconnect_client_for_bad_data")
            .setup(Setup::None)
            .steps(vec![send(Pkt::CapsZeroWidth)])
            .no_probe()
            .expect(all(Outcome::close_after(C_PROTO, PacketType::ERROR_MESSAGE))),
        case("6.1.6", "5 MiB + 1 packet in one frame / one write", "1.3 MAX_PACKET_SIZE")
            .steps(vec![send(Pkt::Oversize)])
            .no_probe()
            .expect(vec![(Sel::Tcp, exp(Outcome::close(C_ANY))), (Sel::Ws, exp(Outcome::close(C_BIG)))]),
        case("6.1.7", "length field 0xFFFFFFFF", "1.3 (rejected)")
            .steps(vec![send(Pkt::LengthSentinel)])
            .no_probe()
            .expect(vec![(Sel::Tcp, exp(Outcome::close(C_ANY))), (Sel::Ws, exp(Outcome::close(C_BIG)))]),
        case("6.1.8", "empty payload with a non-zero CRC", "1.1 (CRC must be 0 when length is 0)")
            .steps(vec![send(Pkt::EmptyWithCrc)])
            .expect(vec![
                (Sel::Tcp, exp_or(Outcome::close(C_ANY), Outcome::Usable)),
                (Sel::Ws, exp_or(Outcome::close(C1002), Outcome::Usable)),
            ]),
        case("6.1.9", "IMAGE_FRAME of 0x0 pixels", "3.7; 1.4 (c) (frame dimensions 0 disconnect)")
            .steps(vec![send(Pkt::Image(0, 0))])
            .no_probe()
            .expect(all(Outcome::close_after(C_PROTO, PacketType::ERROR_MESSAGE))),
        // 7: the byte stream under the messages.
        case(
            "7.1.1",
            "PING + STREAM_START + 64x48 IMAGE_FRAME in 1-byte socket writes",
            "6.1 (plain records may be split)",
        )
        .steps(vec![Step::Send {
            pkt: Pkt::Concat(vec![ping.clone(), Pkt::StreamStart, Pkt::Image(64, 48)]),
            frag: Frag::PerPacket,
            gap: None,
            chop: Some(1),
        }]),
        case("7.1.2", "320x240 IMAGE_FRAME in 1,000-byte socket writes", "6.1; 6.2")
            .steps(vec![send_chop(CAPTURE_FRAME, 1000)]),
        case("7.1.3", "WebSocket frames of a PING in 1-byte socket writes", "6.2; RFC 6455 5.2")
            .ws()
            .steps(vec![Step::Send { pkt: ping.clone(), frag: Frag::Count(3), gap: None, chop: Some(1) }]),
        case(
            "7.1.4",
            "100 PINGs coalesced in one write (WebSocket: one message each)",
            "6.1; 6.2 (coalesced packets)",
        )
        .steps(vec![send_frag(Pkt::Concat(vec![Pkt::Ping; 100]), Frag::PerPacket)]),
        // 8: handshake and encryption.
        case(
            "8.1.1",
            "plaintext client on an encrypting server",
            "4.6 (any server accepts CAPS first); 4.4 (WS peer may ignore 1101/1102)",
        )
        .encrypting()
        .steps(vec![send(Pkt::StreamStart)]),
        case("8.1.2", "full crypto handshake, encrypted CAPS and PING", "4.3; 4.4; 4.5")
            .encrypting()
            .setup(Setup::Handshake)
            .steps(vec![send(Pkt::StreamStart)]),
        case(
            "8.1.3",
            "TCP handshake out of order: KEY_EXCHANGE_RESP right after PROTOCOL_VERSION",
            "4.3 (steps 1-6 in order)",
        )
        .tcp()
        .encrypting()
        .setup(Setup::None)
        .steps(vec![
            send(Pkt::ProtocolVersion(1)),
            Step::Await(PacketType::PROTOCOL_VERSION),
            send(Pkt::KexRespZero),
        ])
        .no_probe()
        .expect(all(Outcome::close(C_ANY))),
        case("8.1.4", "WebSocket handshake out of order: AUTH_RESPONSE instead of KEY_EXCHANGE_RESP", "4.4")
            .ws()
            .encrypting()
            .setup(Setup::None)
            .steps(vec![Step::Await(PacketType::CRYPTO_KEY_EXCHANGE_INIT), send(Pkt::AuthResponseZero)])
            .no_probe()
            .expect(all(Outcome::close(C_PROTO))),
        case("8.1.5", "PROTOCOL_VERSION asking for crypto mode NONE", "3.1 (the server drops mode 0)")
            .tcp()
            .encrypting()
            .setup(Setup::None)
            .steps(vec![send(Pkt::ProtocolVersion(0))])
            .no_probe()
            .expect(all(Outcome::close(C_ANY))),
        case(
            "8.1.6",
            "CRYPTO_NO_ENCRYPTION during the handshake",
            "2 (1109: the server answers AUTH_FAILED and drops)",
        )
        .ws()
        .encrypting()
        .setup(Setup::None)
        .steps(vec![Step::Await(PacketType::CRYPTO_KEY_EXCHANGE_INIT), send(Pkt::NoEncryption)])
        .no_probe()
        .expect(vec![(
            Sel::All,
            exp_or(Outcome::close_after(C_PROTO, PacketType::CRYPTO_AUTH_FAILED), Outcome::close(C_ANY)),
        )]),
        case(
            "8.1.7",
            "plaintext PING after an encrypted handshake",
            "4.5 (TCP enforces encryption; WS accepts mixed)",
        )
        .encrypting()
        .setup(Setup::Handshake)
        .steps(vec![send(Pkt::plain(ping.clone()))])
        .expect(vec![(Sel::Tcp, exp(Outcome::close(C_ANY))), (Sel::Ws, exp(Outcome::Usable))]),
        // 9: timing and resources.
        case(
            "9.1.1",
            "PING in 3 fragments, 0.75 x the reassembly timeout apart",
            "6.2 (MAX_REASSEMBLY_TIME reset per fragment)",
        )
        .ws()
        .steps(vec![Step::Send {
            pkt: ping.clone(),
            frag: Frag::Count(3),
            gap: Some(Dur::Reassembly(0.75)),
            chop: None,
        }]),
        case(
            "9.1.2",
            "PING in 2 fragments, 1.5 x the reassembly timeout apart",
            "6.2; 10 row 6 (head: no timeout)",
        )
        .ws()
        .steps(vec![Step::Send {
            pkt: ping.clone(),
            frag: Frag::Count(2),
            gap: Some(Dur::Reassembly(1.5)),
            chop: None,
        }])
        .expect(vec![(Sel::FebWs, exp(Outcome::close(C1002))), (Sel::HeadWs, exp(Outcome::Usable))]),
        case(
            "9.1.3",
            "client sends nothing for the idle duration",
            "1.4 (b) (TCP peer silent ~1 s is dropped); 6.2 (WS keepalive 30 s)",
        )
        .steps(vec![Step::Wait(Dur::Idle)])
        .expect(vec![
            (Sel::Tcp, exp_or(Outcome::close(C_ANY), Outcome::Usable)),
            (Sel::Ws, exp(Outcome::Any)),
        ]),
        case(
            "9.1.4",
            "a peer that stops reading: no unbounded growth, others still served",
            "6.2 (queues bounded); 8 (flow control)",
        )
        .steps(vec![Step::Flood])
        .expect(all(Outcome::Bounded)),
        case("9.1.5", "100 pipelined PINGs all answered within 1.5 s", "7.4 (server PONGs every PING)")
            .steps(vec![Step::Pipeline { count: 100, within: Duration::from_millis(1500) }]),
        case(
            "9.1.6",
            "40 sequential connections (more than the 32 slots)",
            "7.1 (slot exhaustion bug fixed in 4dce9818)",
        )
        .steps(vec![Step::Reconnect { count: 40 }]),
        case("9.1.7", "WebSocket CLOSE after the first fragment of a message", "7.5; RFC 6455 5.5.1")
            .ws()
            .steps(vec![Step::Frames {
                pkt: CAPTURE_FRAME,
                frames: vec![data(Binary, false, Part::Head(4096)), close_frame(1000)],
            }])
            .no_probe()
            .expect(all(Outcome::close(C1000))),
        case("9.1.8", "TCP FIN in the middle of a packet", "7.5 (EOF mid-packet ends the session)")
            .tcp()
            .steps(vec![send(Pkt::truncated(CAPTURE_FRAME, 100_000)), Step::ShutdownWrite])
            .no_probe()
            .expect(all(Outcome::close(C_ANY))),
        case(
            "9.1.9",
            "TCP FIN in the middle of a fragmented message, no close frame",
            "7.5; RFC 6455 7.1.5 (1006)",
        )
        .ws()
        .steps(vec![
            Step::Frames { pkt: CAPTURE_FRAME, frames: vec![data(Binary, false, Part::Head(4096))] },
            Step::ShutdownWrite,
        ])
        .no_probe()
        .expect(all(Outcome::close(C_ANY))),
        // 10: regressions from the captures.
        case(
            "10.1.1",
            "the exact 4096-byte FIN=1 message of the SIGABRT capture",
            "8 (SIGABRT on fragment 2); 6.2; 10 row 6",
        )
        .ws()
        .steps(vec![Step::Wire { name: "sigabrt-087fa71-short-message.bin", bytes: SIGABRT_MESSAGE }])
        .no_probe()
        .expect(feb_close_head(Outcome::Silent)),
        case(
            "10.1.2",
            "the SIGABRT message, then the CONTINUATION that aborted libwebsockets",
            "8; RFC 6455 5.4",
        )
        .ws()
        .steps(vec![
            Step::Wire { name: "sigabrt-087fa71-short-message.bin", bytes: SIGABRT_MESSAGE },
            Step::Frames { pkt: Pkt::Image(64, 48), frames: vec![data(Cont, false, Part::All)] },
        ])
        .no_probe()
        .expect(vec![(Sel::FebWs, exp(Outcome::close(C1002))), (Sel::HeadWs, exp(Outcome::Any))]),
    ]
}

#[cfg(test)]
mod tests {
    use acip::Dialect;

    use super::*;

    #[test]
    fn catalogue_is_well_formed() {
        let cases = catalogue();
        assert!(cases.len() >= 40, "{} cases", cases.len());
        let mut ids: Vec<&str> = cases.iter().map(|c| c.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), cases.len(), "duplicate ids");
        for c in &cases {
            assert!(!c.spec.is_empty() && !c.title.is_empty(), "{}", c.id);
            for t in [Transport::WebSocket, Transport::Tcp] {
                if c.applies.includes(t) {
                    for d in [Dialect::Feb, Dialect::Head] {
                        // Every applicable target has a row.
                        assert!(c.expect.iter().any(|(s, _)| s.matches(d, t)), "{} {t} {d}", c.id);
                    }
                }
            }
        }
    }
}
