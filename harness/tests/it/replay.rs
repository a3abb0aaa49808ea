//! `harness replay`: every capture in `corpus/captures/` dissected and snapshotted (durations and
//! timestamps stripped, STYLE.md rules 17 and 25) with its story asserted; the committed synthetic captures
//! regenerated from code; the `pcap` fuzz seeds replayed; the WebSocket numbers cross-checked with tshark
//! where it is installed; and a live replay against a real listener.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::capture::samples;
use harness::capture::{sessions_to_pcap, SyntheticLink};
use harness::replay::model::{AnomalyKind, Dissection, FlowReport, Transport};
use harness::replay::{dissect, DissectConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ is inside the repository").to_path_buf()
}

fn captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("corpus/captures"))
        .expect("corpus/captures exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")))
        .collect();
    v.sort();
    v
}

fn dissect_file(path: &Path) -> Dissection {
    let data = std::fs::read(path).expect("capture readable");
    let name = path.file_name().expect("file name").to_string_lossy();
    dissect(&name, &data, &DissectConfig::default()).expect("a capture")
}

/// Replaces every duration and timestamp (`*_s`, `*_ms` fields, "12.345 ms" in texts) so snapshots
/// only change when the dissection does.
fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k.ends_with("_s") || k.ends_with("_ms") {
                    *v = serde_json::Value::String("[redacted]".into());
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        serde_json::Value::String(s) => {
            let words: Vec<&str> = s.split(' ').collect();
            let mut out = Vec::with_capacity(words.len());
            for (i, w) in words.iter().enumerate() {
                let next_is_ms = words.get(i + 1).is_some_and(|n| n.trim_end_matches([',', ')']) == "ms");
                if next_is_ms && w.parse::<f64>().is_ok() {
                    out.push("[t]");
                } else {
                    out.push(w);
                }
            }
            *s = out.join(" ");
        }
        _ => {}
    }
}

fn anomalies(f: &FlowReport, kind: AnomalyKind) -> Vec<&str> {
    f.anomalies.iter().filter(|a| a.kind == kind).map(|a| a.detail.as_str()).collect()
}

#[test]
fn every_corpus_capture_is_dissected_and_snapshotted() {
    let started = Instant::now();
    let all = captures();
    assert!(all.len() >= 6, "expected the shared captures in corpus/captures, found {all:?}");
    for path in &all {
        let one = Instant::now();
        let d = dissect_file(path);
        eprintln!("{}: {} frames, {:?}", d.file, d.frames, one.elapsed());
        assert!(!d.flows.is_empty(), "{}: no TCP flow", d.file);
        let mut v = serde_json::to_value(&d).expect("serialisable");
        redact(&mut v);
        let name = path.file_name().expect("file name").to_string_lossy().replace('.', "_");
        insta::assert_json_snapshot!(name, v);
        // The human rendering is made from the same data and names every flow.
        let text = d.render();
        for f in &d.flows {
            assert!(text.contains(&format!("flow {}:", f.id.0)));
        }
    }
    eprintln!("dissected {} captures in {:?}", all.len(), started.elapsed());
}

#[test]
fn sigabrt_capture_shows_a_4096_byte_message_claiming_a_230446_byte_packet() {
    let d = dissect_file(&repo().join("corpus/captures/old087fa71_ws_fragment_sigabrt.pcap"));
    let f = &d.flows[0];
    assert_eq!(f.transport, Transport::WebSocket);
    assert_eq!(f.dialect, acip::Dialect::Feb);
    let short = anomalies(f, AnomalyKind::MessageShorterThanPacket);
    assert_eq!(short.len(), 1, "{short:?}");
    assert!(short[0].contains("IMAGE_FRAME(3001)"), "{}", short[0]);
    assert!(short[0].contains("4096 bytes") && short[0].contains("230446-byte"), "{}", short[0]);
    assert_eq!(anomalies(f, AnomalyKind::AbnormalClose).len(), 1);
}

#[test]
fn the_57_fragment_messages_reassemble() {
    let d = dissect_file(&repo().join("corpus/captures/old9850bc9_ws_plaintext.pcap"));
    let f = &d.flows[0];
    let ws = f.client_to_server.ws.as_ref().expect("WebSocket statistics");
    assert_eq!(ws.fragments_per_message.get(&57), Some(&5));
    assert_eq!(f.client_to_server.by_type["IMAGE_FRAME(3001)"].count, 5);
    assert_eq!(f.client_to_server.by_type["IMAGE_FRAME(3001)"].max_len, 230_424);
    assert!(anomalies(f, AnomalyKind::CrcMismatch).is_empty());
    assert!(!anomalies(f, AnomalyKind::Stall).is_empty(), "30+ ms gaps inside messages are stalls");
}

#[test]
fn encrypted_session_shows_its_handshake_then_1200_packets() {
    let d = dissect_file(&repo().join("corpus/captures/tcp_encrypted.pcap"));
    let f = &d.flows[0];
    assert!(f.encrypted);
    let names: Vec<&str> = f.opening.iter().map(|o| o.split(' ').nth(1).expect("dir type len")).collect();
    assert_eq!(
        &names[..8],
        [
            "PROTOCOL_VERSION(1)",
            "PROTOCOL_VERSION(1)",
            "CRYPTO_CAPABILITIES(1100)",
            "CRYPTO_PARAMETERS(1101)",
            "CRYPTO_KEY_EXCHANGE_INIT(1102)",
            "CRYPTO_KEY_EXCHANGE_RESP(1103)",
            "CRYPTO_HANDSHAKE_COMPLETE(1108)",
            "ENCRYPTED(1200)",
        ]
    );
    let enc = f.client_to_server.encrypted.as_ref().expect("encrypted packets up");
    assert_eq!(enc.first_counter, 1, "feb nonce counters are little-endian and start at 1");
    assert_eq!(f.client_to_server.by_type["ENCRYPTED(1200)"].max_len, 230_486);
    // The server interleaved two packets (two headers back to back at offset 648, then the payloads in
    // reversed order): both are recovered with valid CRCs, and every packet after them is decoded.
    let inter = anomalies(f, AnomalyKind::Interleaved);
    assert_eq!(inter.len(), 1);
    assert!(inter[0].contains("interleaved") && inter[0].contains("reversed"), "{}", inter[0]);
    assert!(inter[0].contains("@648") && inter[0].contains("@670"), "{}", inter[0]);
    assert!(anomalies(f, AnomalyKind::CrcMismatch).is_empty());
    let down = &f.server_to_client;
    assert_eq!((down.packets, down.interleaved, down.resyncs), (34, 2, 0));
    let enc = down.encrypted.as_ref().expect("encrypted packets down");
    assert_eq!((enc.first_counter, enc.last_counter, enc.counter_jumps), (1, 30, 0));
    // How the stream ends: a last header whose payload never came (the client had hung up).
    assert_eq!(down.end_state, "the connection ends 22 bytes into a 963-byte ENCRYPTED(1200) packet");
}

#[test]
fn ws_plaintext_shows_the_key_exchange_to_a_plaintext_client_and_1006() {
    let d = dissect_file(&repo().join("corpus/captures/ws_plaintext.pcap"));
    let f = &d.flows[0];
    let kex = anomalies(f, AnomalyKind::HandshakeMismatch);
    assert_eq!(kex.len(), 1);
    assert!(kex[0].contains("CRYPTO_KEY_EXCHANGE_INIT(1102)"));
    assert!(anomalies(f, AnomalyKind::AbnormalClose)[0].starts_with("1006"));
    let ws = f.client_to_server.ws.as_ref().expect("WebSocket statistics");
    assert_eq!(ws.fragments_per_message.get(&1), Some(&10), "every IMAGE_FRAME is one frame");
    assert!(f.server_to_client.tcp.zero_windows > 0);
}

/// Our reference client against the real FEB server (4e18ed310), captured here: every packet of both sides
/// decodes with valid CRCs and payloads, the only anomalies being the real server's own.
#[test]
fn reference_client_and_the_real_server_understand_each_other() {
    let d = dissect_file(&repo().join("corpus/captures/interop_refclient_vs_real4e18ed310_ws.pcap"));
    assert_eq!(d.flows.len(), 1);
    let f = &d.flows[0];
    assert_eq!((f.transport, f.dialect), (Transport::WebSocket, acip::Dialect::Feb));
    let up = &f.client_to_server.by_type;
    assert_eq!(up["CLIENT_CAPABILITIES(5000)"].min_len, 160);
    assert_eq!(up["IMAGE_FRAME(3001)"].count, 3);
    let down = &f.server_to_client.by_type;
    assert_eq!(down["ASCII_FRAME(3000)"].count, 6);
    assert_eq!(down["SERVER_STATE(5008)"].count, 4);
    for kind in [AnomalyKind::CrcMismatch, AnomalyKind::InvalidPayload, AnomalyKind::UnknownType] {
        assert!(anomalies(f, kind).is_empty(), "{kind:?}: {:?}", anomalies(f, kind));
    }
    assert_eq!(anomalies(f, AnomalyKind::HandshakeMismatch).len(), 1);
    assert_eq!(f.client_to_server.ws.as_ref().expect("WebSocket statistics").masked, 5);
}

#[test]
fn cut_capture_reports_the_truncated_packet() {
    let d = dissect_file(&repo().join("corpus/captures/tcp_plaintext.pcap"));
    let f = &d.flows[0];
    let t = anomalies(f, AnomalyKind::TruncatedStream);
    assert_eq!(t.len(), 1);
    assert!(t[0].contains("230446-byte IMAGE_FRAME(3001)"), "{}", t[0]);
    assert_eq!(f.ending, "still open when the capture ends");
}

/// The synthetic captures in `corpus/captures/` are what the writer produces today
/// (`UPDATE_CORPUS=1 cargo test -p harness synthetic` rewrites them).
#[test]
fn synthetic_captures_are_regenerated_from_code() {
    let tcp = samples::plaintext_tcp(3, 320, 240);
    let ws = samples::ws_fragmented(2, 320, 240, 4096);
    let files = [
        ("synthetic_tcp_plaintext.pcap", sessions_to_pcap(&[&tcp], SyntheticLink::Ethernet)),
        ("synthetic_ws_57_fragments.pcap", sessions_to_pcap(&[&ws], SyntheticLink::Ethernet)),
        ("synthetic_tcp_damage.pcap", sessions_to_pcap(&[&samples::tcp_damage()], SyntheticLink::Ethernet)),
        ("synthetic_ws_details.pcap", sessions_to_pcap(&[&samples::ws_details()], SyntheticLink::Ethernet)),
    ];
    for (name, bytes) in files {
        let path = repo().join("corpus/captures").join(name);
        if std::env::var_os("UPDATE_CORPUS").is_some() {
            std::fs::write(&path, &bytes).expect("corpus writable");
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == bytes,
            "{name} differs from what the writer produces (UPDATE_CORPUS=1 to rewrite)"
        );
    }
    let d = dissect("ws", &sessions_to_pcap(&[&ws], SyntheticLink::Ethernet), &DissectConfig::default())
        .expect("own capture");
    let f = &d.flows[0];
    assert!(f.anomalies.is_empty(), "{:?}", f.anomalies);
    let w = f.client_to_server.ws.as_ref().expect("ws");
    assert_eq!(w.fragments_per_message.get(&57), Some(&2));
    assert_eq!(w.close.as_ref().and_then(|c| c.code), Some(1000));
}

#[test]
fn every_link_type_and_pcapng_give_the_same_dissection() {
    let tcp = samples::plaintext_tcp(2, 16, 16);
    let reference =
        dissect("x", &sessions_to_pcap(&[&tcp], SyntheticLink::Ethernet), &DissectConfig::default())
            .expect("capture");
    let summary = |d: &Dissection| {
        let f = &d.flows[0];
        (f.client_to_server.packets, f.server_to_client.packets, f.client_to_server.tcp.bytes, d.duration_s)
    };
    assert_eq!(summary(&reference).0, 5);
    for link in [SyntheticLink::LinuxSll, SyntheticLink::LinuxSll2, SyntheticLink::Null, SyntheticLink::RawIp]
    {
        let d = dissect("x", &sessions_to_pcap(&[&tcp], link), &DissectConfig::default()).expect("capture");
        assert_eq!(summary(&d), summary(&reference), "{link:?}");
    }
    let ng = harness::capture::sessions_to_pcapng(&[&tcp]);
    let d = dissect("x", &ng, &DissectConfig::default()).expect("pcapng");
    assert_eq!(summary(&d), summary(&reference), "pcapng with if_tsresol 9");
}

#[test]
fn head_websocket_byte_stream_is_detected_and_decoded() {
    let data = sessions_to_pcap(&[&samples::ws_head_stream(64, 48)], SyntheticLink::Ethernet);
    let d = dissect("head", &data, &DissectConfig::default()).expect("capture");
    let f = &d.flows[0];
    assert_eq!(f.dialect, acip::Dialect::Head, "{}", f.dialect_reason);
    assert!(f.dialect_reason.contains("WebSocket"), "{}", f.dialect_reason);
    assert!(f.anomalies.is_empty(), "{:?}", f.anomalies);
    let up = &f.client_to_server;
    assert_eq!(up.by_type["CLIENT_CAPABILITIES(5000)"].min_len, 168);
    assert_eq!(up.by_type["IMAGE_FRAME(3001)"].count, 1);
    assert_eq!(up.by_type["PING(5001)"].count, 2);
    assert_eq!(up.ws.as_ref().map(|w| w.messages), Some(4));
    // Forced to feb, the same capture is full of framing anomalies.
    let feb = DissectConfig { dialect: Some(acip::Dialect::Feb), ..DissectConfig::default() };
    let d = dissect("head", &data, &feb).expect("capture");
    let kinds: Vec<AnomalyKind> = d.flows[0].anomalies.iter().map(|a| a.kind).collect();
    assert!(kinds.contains(&AnomalyKind::MessageShorterThanPacket), "{kinds:?}");
    assert!(kinds.contains(&AnomalyKind::MessageLongerThanPacket), "{kinds:?}");
}

#[test]
fn each_websocket_anomaly_is_named_and_dissection_goes_on() {
    let data = sessions_to_pcap(&[&samples::ws_anomalies()], SyntheticLink::Ethernet);
    let d = dissect("anomalies", &data, &DissectConfig::default()).expect("capture");
    let f = &d.flows[0];
    let kinds: Vec<AnomalyKind> = f.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AnomalyKind::ContinuationWithoutStart,
            AnomalyKind::DataFrameBeforeFin,
            AnomalyKind::UnknownType,
            AnomalyKind::CrcMismatch,
            AnomalyKind::MessageLongerThanPacket,
            AnomalyKind::Close,
            AnomalyKind::WsFrame,
        ],
        "{:#?}",
        f.anomalies
    );
    assert!(f.anomalies[5].detail.contains("1011"));
    assert!(f.anomalies[6].detail.contains("over the limit"), "{}", f.anomalies[6].detail);
    // Each bad message was flagged and the next one still decoded: the PING after the unfinished message,
    // the unknown type, the bad CRC, and the long message's packet.
    let up = &f.client_to_server;
    assert_eq!(up.packets, 4, "{:?}", up.by_type);
    assert!(up.end_state.starts_with("stopped: WebSocket frame error"), "{}", up.end_state);
    assert_eq!(
        f.server_to_client.ws.as_ref().and_then(|w| w.close.as_ref()).and_then(|c| c.code),
        Some(1011)
    );
}

#[test]
fn raw_tcp_server_full_unknown_type_and_oversize() {
    use harness::capture::{Dir, SyntheticSession};
    use std::net::SocketAddrV4;
    let at = |ms: u64| Duration::from_secs(1_700_000_000) + Duration::from_millis(ms);
    let server: SocketAddrV4 = "127.0.0.1:27224".parse().expect("address");
    // A full server: the text line, then the connection closes.
    let mut full = SyntheticSession::new("127.0.0.1:40001".parse().expect("address"), server, at(0));
    full.send(at(1), Dir::ServerToClient, b"SERVER_FULL: Maximum client limit reached\n");
    full.close(at(2), Dir::ServerToClient);
    // A client with an unknown type (reported, decoding goes on) then a 6 MiB length: damage, skipped to
    // the end of the stream (no valid packet follows it).
    let mut bad = SyntheticSession::new("127.0.0.1:40002".parse().expect("address"), server, at(10));
    let mut up = acip::Packet::empty(acip::PacketType::Unknown(4242)).encode();
    up.extend_from_slice(&acip::Packet::empty(acip::PacketType::PING).encode());
    let mut huge = acip::Packet::empty(acip::PacketType::IMAGE_FRAME).header();
    huge.length = 6 * 1024 * 1024;
    up.extend_from_slice(&huge.to_bytes());
    bad.send(at(11), Dir::ClientToServer, &up);
    bad.close(at(12), Dir::ClientToServer);
    let data = sessions_to_pcap(&[&full, &bad], SyntheticLink::Ethernet);
    let d = dissect("raw", &data, &DissectConfig::default()).expect("capture");
    assert_eq!(d.flows.len(), 2);
    let full = &d.flows[0];
    assert_eq!(anomalies(full, AnomalyKind::ServerFull), ["SERVER_FULL: Maximum client limit reached"]);
    let bad = &d.flows[1];
    let kinds: Vec<AnomalyKind> = bad.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [AnomalyKind::UnknownType, AnomalyKind::Oversize], "{:#?}", bad.anomalies);
    assert_eq!(bad.client_to_server.packets, 2, "the unknown type and the PING after it");
    assert!(
        bad.anomalies[1].detail.contains("skipped 22 bytes (stream offsets 44..66)"),
        "{:?}",
        bad.anomalies
    );
    assert_eq!(bad.client_to_server.end_state, "ends in 22 damaged bytes (skipped from stream offset 44)");
}

#[test]
fn a_lost_segment_is_a_gap_and_raw_tcp_resynchronises_after_it() {
    let mut tcp = samples::plaintext_tcp(3, 320, 240);
    let whole =
        dissect("whole", &sessions_to_pcap(&[&tcp], SyntheticLink::Ethernet), &DissectConfig::default())
            .expect("capture");
    tcp.drop_segments = vec![4];
    let d = dissect("gap", &sessions_to_pcap(&[&tcp], SyntheticLink::Ethernet), &DissectConfig::default())
        .expect("capture");
    let f = &d.flows[0];
    let gaps = anomalies(f, AnomalyKind::TcpGap);
    assert_eq!(gaps.len(), 1, "{:?}", f.anomalies);
    assert!(gaps[0].contains("missing from the capture"));
    assert!(gaps[0].contains("decoding resumes at the next valid packet"), "{}", gaps[0]);
    // Only the packet the gap cut is lost; the direction is decoded to its end.
    let (up, all) = (&f.client_to_server, &whole.flows[0].client_to_server);
    assert_eq!(up.packets + 1, all.packets, "{:?} vs {:?}", up.by_type, all.by_type);
    assert_eq!(up.by_type["IMAGE_FRAME(3001)"].count + 1, all.by_type["IMAGE_FRAME(3001)"].count);
    assert_eq!(up.end_state, "clean");
    assert_eq!(up.resyncs, 1);
    // The other direction is unaffected.
    assert_eq!(f.server_to_client.end_state, "clean");
}

#[test]
fn fuzz_seeds_replay() {
    let dir = repo().join("corpus/seeds/pcap");
    if std::env::var_os("UPDATE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).expect("seed directory");
        for (name, bytes) in samples::fuzz_seeds() {
            std::fs::write(dir.join(name), bytes).expect("seed writable");
        }
    }
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus/seeds/pcap exists") {
        let data = std::fs::read(entry.expect("entry").path()).expect("seed readable");
        harness::fuzzing::pcap(&data);
        // Every prefix too: cut captures must never panic.
        for cut in (0..data.len()).step_by(97) {
            harness::fuzzing::pcap(&data[..cut]);
        }
        n += 1;
    }
    assert!(n >= 10, "expected the generated seeds in {dir:?}");
}

/// tshark's WebSocket frame count and reassembled message lengths equal ours, for every capture with a
/// WebSocket flow (the TCP-only ones are left out: tshark on 8 MB takes seconds and finds nothing).
/// Skipped (with the reason printed) where tshark is not installed. The command, for README:
/// `tshark -r FILE -d tcp.port==27226,http -Y websocket -T fields -E occurrence=a -e websocket.opcode
///  -e websocket.fin -e websocket.reassembled.length -e websocket.payload_length
///  -e websocket.payload_length_ext_16 -e websocket.payload_length_ext_64`
#[test]
fn websocket_numbers_match_tshark() {
    if std::process::Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("SKIPPED websocket_numbers_match_tshark: tshark is not on PATH");
        return;
    }
    let ws_captures: Vec<(PathBuf, Dissection)> = captures()
        .into_iter()
        .map(|p| {
            let d = dissect_file(&p);
            (p, d)
        })
        .filter(|(_, d)| d.flows.iter().any(|f| f.transport == Transport::WebSocket))
        .collect();
    assert!(ws_captures.len() >= 4, "the WebSocket captures are in the corpus");
    // Two at a time: tshark is single-threaded and CI has two cores.
    for pair in ws_captures.chunks(2) {
        std::thread::scope(|scope| {
            for (path, d) in pair {
                scope.spawn(move || compare_with_tshark(path, d));
            }
        });
    }
}

/// Our WebSocket frame count and message lengths of one capture against tshark's.
fn compare_with_tshark(path: &Path, d: &Dissection) {
    let out = std::process::Command::new("tshark")
        .args(["-r"])
        .arg(path)
        .args(["-d", "tcp.port==27226,http", "-Y", "websocket", "-T", "fields", "-E", "occurrence=a"])
        .args(["-e", "websocket.opcode", "-e", "websocket.fin", "-e", "websocket.reassembled.length"])
        .args(["-e", "websocket.payload_length", "-e", "websocket.payload_length_ext_16"])
        .args(["-e", "websocket.payload_length_ext_64"])
        .output()
        .expect("tshark runs");
    assert!(out.status.success(), "tshark failed on {path:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut frames = 0u64;
    let mut lengths = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let field = |i: usize| cols.get(i).copied().unwrap_or("");
        let opcodes: Vec<&str> = field(0).split(',').filter(|s| !s.is_empty()).collect();
        let fins: Vec<&str> = field(1).split(',').collect();
        frames += opcodes.len() as u64;
        let short: Vec<u64> = field(3).split(',').filter_map(|s| s.parse().ok()).collect();
        let mut ext16 = field(4).split(',').filter_map(|s| s.parse::<u64>().ok());
        let mut ext64 = field(5).split(',').filter_map(|s| s.parse::<u64>().ok());
        let mut reassembled = field(2).split(',').filter_map(|s| s.parse::<u64>().ok());
        for (i, op) in opcodes.iter().enumerate() {
            let len = match short.get(i) {
                Some(126) => ext16.next().unwrap_or(0),
                Some(127) => ext64.next().unwrap_or(0),
                Some(n) => *n,
                None => 0,
            };
            let fin = matches!(fins.get(i), Some(&"1") | Some(&"True"));
            // Unfragmented data messages: the frame's own length; fragmented ones: tshark's reassembled total.
            match (*op, fin) {
                ("2", true) => lengths.push(len),
                ("0", true) => lengths.push(reassembled.next().unwrap_or(0)),
                _ => {}
            }
        }
    }
    let dirs = || {
        d.flows.iter().flat_map(|f| [&f.client_to_server, &f.server_to_client]).filter_map(|r| r.ws.as_ref())
    };
    let ours: u64 = dirs().map(|w| w.frames).sum();
    assert_eq!(ours, frames, "{path:?}: WebSocket frames (ours vs tshark)");
    let mut our_lengths: Vec<u64> = dirs().flat_map(|w| w.message_lengths.iter().copied()).collect();
    our_lengths.sort_unstable();
    lengths.sort_unstable();
    assert_eq!(our_lengths, lengths, "{path:?}: reassembled message lengths (ours vs tshark)");
    eprintln!("{}: {frames} frames, {} messages agree with tshark", d.file, lengths.len());
}

#[test]
fn dissection_is_fast_enough() {
    // The largest capture (8 MB) must dissect well within the suite's budget even in a debug build.
    let started = Instant::now();
    let d = dissect_file(&repo().join("corpus/captures/tcp_plaintext.pcap"));
    assert!(d.frames > 0);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

/// `--against`: the client side of real and synthetic plaintext captures replayed into the in-process
/// reference server (real sockets on 127.0.0.1, ephemeral ports), over TCP and over WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_captures_replay_against_the_reference_server() {
    use harness::replay::live::{replay_async, Pace, Target};
    let server =
        reference_server::start(reference_server::ServerConfig::loopback()).await.expect("server starts");
    let tcp = Target::Tcp(server.tcp_addr().expect("tcp listener"));
    let ws = Target::ws(server.ws_addr().expect("ws listener"));
    let config = DissectConfig { collect_packets: true, ..DissectConfig::default() };
    for (file, target) in [
        ("tcp_plaintext.pcap", &tcp),
        ("synthetic_ws_57_fragments.pcap", &ws),
        ("ws_plaintext.pcap", &ws),
        ("tcp_encrypted.pcap", &tcp),
    ] {
        let data = std::fs::read(repo().join("corpus/captures").join(file)).expect("capture");
        let d = dissect(file, &data, &config).expect("dissection");
        let report = replay_async(&d, &data, &config, target, Pace::Fast).await.expect("replay runs");
        eprintln!("{}", report.render());
        let s = &report.sessions[0];
        assert!(s.sent > 0, "{file}: nothing sent");
        assert!(s.sent + s.skipped >= 3, "{file}: a session has at least three client packets");
        // The server took the plaintext path and answered.
        assert!(s.received_types.contains_key("SERVER_STATE(5008)"), "{file}: {:?}", s.received_types);
        if file == "tcp_plaintext.pcap" {
            assert_eq!(s.sent, 39, "every whole client packet of the cut capture");
            assert!(s.divergences.is_empty(), "{file}: {:?}", s.divergences);
        }
        if file == "tcp_encrypted.pcap" {
            assert!(s.fresh_handshake);
            assert_eq!(s.sent_types.get("CLIENT_CAPABILITIES(5000)"), Some(&1));
        }
    }
    server.shutdown().await;
}

/// `--against` with an encrypted capture: a fresh ENCRYPT handshake with the reference server (encryption
/// on), over TCP (client speaks first) and WebSocket (server speaks first), then the captured packet types
/// and sizes as synthetic packets sealed with the new session; the server decrypts and counts every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_capture_replays_after_a_fresh_handshake() {
    use harness::replay::live::{replay_async, Pace, Target};
    let config =
        reference_server::ServerConfig { encrypt: true, ..reference_server::ServerConfig::loopback() };
    let server = reference_server::start(config).await.expect("server starts");
    let tcp = Target::Tcp(server.tcp_addr().expect("tcp listener"));
    let ws = Target::ws(server.ws_addr().expect("ws listener"));
    let dissect_config = DissectConfig { collect_packets: true, ..DissectConfig::default() };
    let data = std::fs::read(repo().join("corpus/captures/tcp_encrypted.pcap")).expect("capture");
    let d = dissect("tcp_encrypted.pcap", &data, &dissect_config).expect("dissection");
    let up = &d.flows[0].client_to_server.by_type;
    let client_encrypted = up["ENCRYPTED(1200)"].count;
    // The captured handshake's client packets are replaced by the fresh handshake (counted as skipped).
    let captured_handshake: u64 = up
        .iter()
        .filter(|(t, _)| t.starts_with("CRYPTO_") || t.starts_with("PROTOCOL_VERSION"))
        .map(|(_, s)| s.count)
        .sum();
    let mut sealed = 0;
    for target in [&tcp, &ws] {
        let report = replay_async(&d, &data, &dissect_config, target, Pace::Fast).await.expect("replay runs");
        eprintln!("{}", report.render());
        let s = &report.sessions[0];
        assert!(s.fresh_handshake);
        let h = s.handshake.as_ref().expect("a handshake report");
        assert!(h.completed, "{target:?}: {:?}", h.error);
        assert_eq!(h.dialect, d.flows[0].dialect);
        assert!(h.received.iter().any(|t| t == "CRYPTO_KEY_EXCHANGE_INIT(1102)"), "{:?}", h.received);
        assert!(h.sent.iter().any(|t| t == "CRYPTO_KEY_EXCHANGE_RESP(1103)"), "{:?}", h.sent);
        // Every captured ENCRYPTED client packet whose inner size has a known type went out sealed.
        assert_eq!(s.sent + s.skipped, client_encrypted + captured_handshake, "{:?}", s.sent_types);
        assert!(s.sent > 0);
        assert_eq!(s.sent_types.get("CLIENT_CAPABILITIES(5000)"), Some(&1));
        assert!(s.sent_types.get("IMAGE_FRAME(3001)").is_some_and(|n| *n > 0), "{:?}", s.sent_types);
        // The server's ENCRYPTED answers were decrypted with the new session.
        assert!(s.received_types.contains_key("SERVER_STATE(5008)"), "{:?}", s.received_types);
        assert!(!s.live_end.starts_with("undecodable"), "{}", s.live_end);
        assert!(s.divergences.is_empty(), "{target:?}: {:?}", s.divergences);
        sealed += s.sent;
    }
    let st = server.stats();
    assert!(st.counters.packets_rx.get("ENCRYPTED").is_some_and(|n| *n >= sealed), "{:?}", st.counters);
    assert!(st.stages.get("server_decrypt").is_some_and(|s| s.count >= sealed), "{:?}", st.stages.keys());
    assert_eq!(st.counters.drops.get("decrypt_failed"), None, "{:?}", st.counters.drops);
    assert_eq!(st.counters.errors.get("handshake"), None, "{:?}", st.counters.errors);
    server.shutdown().await;

    // A server without encryption cannot complete the handshake: reported as a divergence, nothing sent.
    let plain =
        reference_server::ServerConfig { encrypt: false, ..reference_server::ServerConfig::loopback() };
    let server = reference_server::start(plain).await.expect("server starts");
    let tcp = Target::Tcp(server.tcp_addr().expect("tcp listener"));
    let report = replay_async(&d, &data, &dissect_config, &tcp, Pace::Fast).await.expect("replay runs");
    eprintln!("{}", report.render());
    let s = &report.sessions[0];
    let h = s.handshake.as_ref().expect("a handshake report");
    assert!(!h.completed && h.error.is_some());
    assert_eq!(s.sent, 0);
    assert!(s.divergences[0].starts_with("the fresh handshake failed"), "{:?}", s.divergences);
    server.shutdown().await;
}

/// Every kind of byte-stream damage is skipped with its exact extent and the valid packets around it are
/// all recovered: garbage (bad magic), a flipped payload byte (CRC), an impossible length, two interleaved
/// writers, nonce counters going backwards, and a retransmission that carries other bytes.
#[test]
fn byte_stream_damage_is_skipped_and_every_valid_packet_recovered() {
    let d = dissect_file(&repo().join("corpus/captures/synthetic_tcp_damage.pcap"));
    let f = &d.flows[0];
    let kinds: Vec<AnomalyKind> = f.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AnomalyKind::BadMagic,
            AnomalyKind::CrcMismatch,
            AnomalyKind::Oversize,
            AnomalyKind::Interleaved,
            AnomalyKind::NonceOrder,
            AnomalyKind::RetransmitConflict,
        ],
        "{:#?}",
        f.anomalies
    );
    assert!(
        f.anomalies[0].detail.contains("skipped 21 bytes (stream offsets 182..203)"),
        "{}",
        f.anomalies[0].detail
    );
    assert!(f.anomalies[3].detail.contains("reversed order"), "{}", f.anomalies[3].detail);
    assert!(f.anomalies[4].detail.contains("nonce counter 4 after 5"), "{}", f.anomalies[4].detail);
    let up = &f.client_to_server;
    assert_eq!((up.packets, up.resyncs, up.skipped_bytes), (4, 3, 473));
    assert_eq!(up.by_type["PING(5001)"].count, 2, "the PINGs after the garbage and after the bad length");
    assert_eq!(up.by_type["STREAM_START(5005)"].count, 1, "the packet after the flipped byte");
    assert_eq!(up.end_state, "clean");
    let down = &f.server_to_client;
    assert_eq!((down.packets, down.interleaved), (6, 2));
    let enc = down.encrypted.as_ref().expect("encrypted");
    assert_eq!(enc.counter_backwards, 1);
    assert_eq!(down.tcp.retransmit_conflicts, 1);
    assert_eq!(down.client_ids.get(&0), Some(&6), "client IDs are summarised per direction");
}

/// The WebSocket details of RFC 6455 and 7692, each reported: subprotocol and extensions of both sides,
/// a wrong accept key, a permessage-deflate message inflated and decoded, RSV1 on a CONTINUATION, a
/// non-minimal length, a fragmented control frame, an invalid close code and a frame after CLOSE.
#[test]
fn websocket_details_are_reported() {
    let d = dissect_file(&repo().join("corpus/captures/synthetic_ws_details.pcap"));
    let f = &d.flows[0];
    let hs = f.websocket.as_ref().expect("handshake facts");
    assert_eq!(hs.subprotocols_requested, ["acip"]);
    assert_eq!(hs.subprotocol_accepted.as_deref(), Some("acip"));
    assert_eq!(hs.accept_valid, Some(false));
    assert_eq!(hs.extensions_offered, ["permessage-deflate; client_max_window_bits"]);
    assert_eq!(hs.extensions_accepted, ["permessage-deflate"]);
    let kinds: Vec<AnomalyKind> = f.anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AnomalyKind::HttpUpgrade,
            AnomalyKind::WsFrame,
            AnomalyKind::WsFrame,
            AnomalyKind::WsFrame,
            AnomalyKind::BadMagic,
            AnomalyKind::Close,
            AnomalyKind::WsFrame,
        ],
        "{:#?}",
        f.anomalies
    );
    let w = f.client_to_server.ws.as_ref().expect("ws");
    assert_eq!(
        (
            w.compressed_messages,
            w.rsv_frames,
            w.non_minimal_lengths,
            w.bad_control_frames,
            w.frames_after_close
        ),
        (1, 1, 1, 1, 1)
    );
    let close = w.close.as_ref().expect("client close");
    assert_eq!((close.code, close.valid), (Some(1005), false));
    // The compressed message is the CLIENT_CAPABILITIES, decoded after inflating (and it names the dialect).
    assert_eq!(f.client_to_server.by_type["CLIENT_CAPABILITIES(5000)"].min_len, 160);
    // The junk-prefixed message keeps the one-message-one-packet verdict (bad magic) and its PING is
    // recovered: 4 PINGs in all.
    assert!(
        f.anomalies[4].detail.contains("recovered inside the message with valid CRCs: PING(5001) @+4"),
        "{}",
        f.anomalies[4].detail
    );
    assert_eq!(f.client_to_server.by_type["PING(5001)"].count, 4);
    // The same capture with a correct accept key and no extension has no handshake anomaly: the samples
    // that upgrade properly stay clean.
    let clean = dissect_file(&repo().join("corpus/captures/synthetic_ws_57_fragments.pcap"));
    assert_eq!(clean.flows[0].websocket.as_ref().and_then(|h| h.accept_valid), Some(true));
}

/// A `feb` message that holds two writers' interleaved records (both headers, then the payloads) fails its
/// CRC as one packet; like a byte stream, both records are recovered from inside it with valid CRCs.
#[test]
fn interleaved_records_inside_one_feb_message_are_recovered() {
    use harness::capture::{Dir, SyntheticSession};
    let at = |ms: u64| Duration::from_secs(1_700_000_000) + Duration::from_millis(ms);
    let mut s = SyntheticSession::new(
        "127.0.0.1:40003".parse().expect("address"),
        "127.0.0.1:27226".parse().expect("address"),
        at(0),
    );
    s.send(
        at(1),
        Dir::ClientToServer,
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    s.send(
        at(2),
        Dir::ServerToClient,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    );
    let a = acip::Packet::new(acip::PacketType::ENCRYPTED, vec![1u8; 70]).encode();
    let b = acip::Packet::new(acip::PacketType::ENCRYPTED, vec![2u8; 50]).encode();
    let message = [&a[..22], &b[..22], &b[22..], &a[22..]].concat();
    let mut frame = Vec::new();
    acip::ws::encode_frame(acip::ws::OpCode::Binary, true, None, &message, &mut frame);
    s.send(at(3), Dir::ServerToClient, &frame);
    s.close(at(4), Dir::ServerToClient);
    let d = dissect(
        "feb-interleaved",
        &sessions_to_pcap(&[&s], SyntheticLink::Ethernet),
        &DissectConfig::default(),
    )
    .expect("capture");
    let f = &d.flows[0];
    let crc = anomalies(f, AnomalyKind::CrcMismatch);
    assert_eq!(crc.len(), 1, "{:?}", f.anomalies);
    assert!(
        crc[0].contains(
            "recovered inside the message with valid CRCs: ENCRYPTED(1200) @+0, ENCRYPTED(1200) @+22"
        ),
        "{}",
        crc[0]
    );
    let down = &f.server_to_client;
    assert_eq!(down.by_type["ENCRYPTED(1200)"].count, 2, "{:?}", down.by_type);
    assert_eq!(down.packets, 2, "the damaged whole is not counted beside its parts");
}
