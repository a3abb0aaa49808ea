//! The generated Wireshark dissector (`harness::dissector::lua()`) loaded into tshark: the packet-type
//! value table Wireshark registers from it is `acip`'s, and over every capture in `corpus/captures/`
//! (plus a synthetic one for what the corpus lacks: several packets per TCP segment, a header cut between
//! segments, WebSocket without the `acip` subprotocol, so through the heuristic) the ACIP packets it
//! finds per flow direction, type and CRC verdict are the ones `harness replay --json` reports.
//! Skipped, with a printed note, where tshark is not on PATH. The command, for README:
//! `tshark -r FILE -X lua_script:acip.lua -o tcp.desegment_tcp_streams:TRUE -Y acip -T fields
//!  -E occurrence=a -E aggregator=, -e tcp.srcport -e tcp.dstport -e acip.type -e acip.crc_ok
//!  -e acip.interleaved`

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use acip::codec::payloads::{ClientCapabilities, ErrorMessage, ImageFrame, ServerState};
use acip::ws::{encode_frame, OpCode};
use acip::{Dialect, Packet, PacketType};
use harness::capture::{sessions_to_pcap, Dir, SyntheticLink, SyntheticSession};

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

fn tshark_missing(test: &str) -> bool {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return false;
    }
    eprintln!("SKIPPED {test}: tshark is not on PATH (apt-get install tshark)");
    true
}

/// A scratch directory with the generated script in it; also tshark's configuration directory, so that
/// the user's preferences cannot change what it shows. Removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("harness-it-dissector-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("acip.lua"), harness::dissector::lua()).expect("script written");
        Scratch(dir)
    }

    fn script(&self) -> PathBuf {
        self.0.join("acip.lua")
    }

    /// tshark's standard output, after checking that it succeeded.
    fn tshark<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = Command::new("tshark")
            .args(args)
            .env("WIRESHARK_CONFIG_DIR", &self.0)
            .output()
            .expect("tshark runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tshark failed: {stderr}");
        assert!(!stderr.contains("Lua"), "the script did not load cleanly: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `acip.type`'s value table as Wireshark registered it from the script (`tshark -G values`).
    fn type_names(&self) -> BTreeMap<u16, String> {
        let lua = format!("lua_script:{}", self.script().display());
        let out = self.tshark(&["-G", "values", "-X", &lua]);
        out.lines()
            .filter_map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                match cols[..] {
                    ["V", "acip.type", n, name] => Some((n.parse().expect("a type number"), name.to_owned())),
                    _ => None,
                }
            })
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One direction of one flow: (flow index, "c>s" or "s>c").
type DirKey = (u64, &'static str);

/// What one side (tshark with the script, or `harness replay`) counts in one flow direction, in terms
/// both can state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    /// Whole packets by "NAME(number)": harness's `by_type`. From tshark: `acip.crc_ok` 1, plus 0 over
    /// WebSocket, where harness counts a message's packet whatever its CRC; over TCP harness skips a packet
    /// whose CRC fails and resynchronises after it.
    packets: BTreeMap<String, u64>,
    /// Packets whose CRC-32C fails: `acip.crc_ok` 0; harness's `crc_mismatch` anomalies.
    crc_bad: u64,
    /// Packets not whole: `acip.crc_ok` 2. Over WebSocket a message shorter than the packet its header
    /// announces (harness: `message_shorter_than_packet`); over TCP a length over the 5 MiB limit, which no
    /// receiver waits for (harness: `oversize`). A packet cut by the end of a TCP capture is in neither:
    /// tshark waits for its bytes, harness reports `truncated_stream`.
    not_whole: u64,
    /// Packets recovered from two writers interleaved on one socket (harness's `interleaved`; tshark's
    /// `acip.interleaved` marks each recovered pair).
    interleaved: u64,
}

/// The flows of `harness replay FILE --json`: each direction's counts, and each flow's ports.
struct Report {
    counts: BTreeMap<DirKey, Counts>,
    /// (client port, server port, transport) per flow index.
    flows: Vec<(u16, u16, String)>,
}

fn port(addr: &str) -> u16 {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("a port in {addr:?}"))
}

fn harness_report(capture: &Path) -> Report {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("replay")
        .arg(capture)
        .arg("--json")
        .output()
        .expect("harness runs");
    assert!(out.status.success(), "harness replay {capture:?}: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut report = Report { counts: BTreeMap::new(), flows: Vec::new() };
    for (i, flow) in json["flows"].as_array().expect("flows").iter().enumerate() {
        let transport = flow["transport"].as_str().expect("transport").to_owned();
        let client = port(flow["client"].as_str().expect("client"));
        let server = port(flow["server"].as_str().expect("server"));
        for (dir, field) in [("c>s", "client_to_server"), ("s>c", "server_to_client")] {
            let d = &flow[field];
            let anomalies = |kind: &str| {
                let all = flow["anomalies"].as_array().expect("anomalies");
                all.iter().filter(|a| a["dir"] == dir && a["kind"] == kind).count() as u64
            };
            let packets = d["by_type"]
                .as_object()
                .expect("by_type")
                .iter()
                .map(|(name, st)| (name.clone(), st["count"].as_u64().expect("count")))
                .collect();
            let not_whole = if transport == "websocket" {
                anomalies("message_shorter_than_packet")
            } else {
                anomalies("oversize")
            };
            let counts = Counts {
                packets,
                crc_bad: anomalies("crc_mismatch"),
                not_whole,
                interleaved: d["interleaved"].as_u64().expect("interleaved"),
            };
            report.counts.insert((i as u64, dir), counts);
        }
        report.flows.push((client, server, transport));
    }
    report
}

/// Runs the script over `capture` and counts per flow direction of `report`. Every ACIP packet tshark
/// shows must belong to one of harness's flows.
fn tshark_counts(
    scratch: &Scratch,
    names: &BTreeMap<u16, String>,
    capture: &Path,
    report: &Report,
) -> BTreeMap<DirKey, Counts> {
    let mut args: Vec<String> = vec!["-r".into(), capture.display().to_string()];
    args.extend(["-X".into(), format!("lua_script:{}", scratch.script().display())]);
    args.extend(["-o".into(), "tcp.desegment_tcp_streams:TRUE".into()]);
    // The script registers ascii-chat's default ports; a capture on another port is decoded as asked.
    for (_, server, transport) in &report.flows {
        if ![acip::cli::DEFAULT_TCP_PORT, acip::cli::DEFAULT_WS_PORT].contains(server) {
            let as_what = if transport == "websocket" { "http" } else { "acip" };
            args.extend(["-d".into(), format!("tcp.port=={server},{as_what}")]);
        }
    }
    args.extend(["-Y", "acip", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"].map(String::from));
    // Last, the expert messages: a Lua runtime error in the script shows up there, not on stderr.
    let fields =
        ["tcp.srcport", "tcp.dstport", "acip.type", "acip.crc_ok", "acip.interleaved", "_ws.expert.message"];
    for field in fields {
        args.extend(["-e".into(), field.into()]);
    }
    let out = scratch.tshark(&args);

    let mut counts: BTreeMap<DirKey, Counts> =
        report.counts.keys().map(|k| (*k, Counts::default())).collect();
    for line in out.lines() {
        let cols: Vec<&str> = line.splitn(6, '\t').collect();
        let [src, dst, types, crcs, interleaved, experts] = cols[..] else {
            panic!("{capture:?}: a line of 6 fields: {line:?}")
        };
        assert!(!experts.contains("Lua Error"), "{capture:?}: the script failed: {experts}");
        let (src, dst): (u16, u16) = (src.parse().expect("port"), dst.parse().expect("port"));
        let key = report
            .flows
            .iter()
            .enumerate()
            .find_map(|(i, (c, s, _))| match (src == *c && dst == *s, src == *s && dst == *c) {
                (true, _) => Some((i as u64, "c>s")),
                (_, true) => Some((i as u64, "s>c")),
                _ => None,
            })
            .unwrap_or_else(|| {
                panic!("{capture:?}: tshark shows ACIP on {src} -> {dst}, a flow harness does not have")
            });
        let websocket = report.flows[key.0 as usize].2 == "websocket";
        let c = counts.entry(key).or_default();
        let types: Vec<u16> =
            types.split(',').filter(|s| !s.is_empty()).map(|t| t.parse().expect("type")).collect();
        let crcs: Vec<u8> =
            crcs.split(',').filter(|s| !s.is_empty()).map(|v| v.parse().expect("crc_ok")).collect();
        assert_eq!(
            types.len(),
            crcs.len(),
            "{capture:?}: every packet has a type and a CRC verdict: {line:?}"
        );
        for (t, crc) in types.into_iter().zip(crcs) {
            // Named by the script's own table, as Wireshark registered it: a wrong number there shows here.
            let name = format!("{}({t})", names.get(&t).map_or("UNKNOWN", String::as_str));
            match crc {
                1 => *c.packets.entry(name).or_default() += 1,
                0 => {
                    c.crc_bad += 1;
                    if websocket {
                        *c.packets.entry(name).or_default() += 1;
                    }
                }
                2 => c.not_whole += 1,
                other => panic!("{capture:?}: acip.crc_ok {other}"),
            }
        }
        c.interleaved += 2 * interleaved.split(',').filter(|v| *v == "1").count() as u64;
    }
    counts
}

/// Where tshark with the script and harness legitimately disagree, per capture: (capture, direction,
/// type, harness's count, tshark's count, why). Both are Wireshark 4.0's WebSocket layer withholding a
/// message from every subdissector, the script included. Any other difference fails the comparison; one of
/// these may be absent (a Wireshark that hands the message on agrees with harness).
const KNOWN_DIFFERENCES: &[(&str, DirKey, &str, u64, u64, &str)] = &[
    (
        "old9850bc9_ws_plaintext.pcap",
        (0, "c>s"),
        "PING(5001)",
        1,
        0,
        "the PING is a one-frame message in the TCP segment (frame 77) that also carries the last fragments \
         of a 57-fragment IMAGE_FRAME message and the first of the next: Wireshark 4.0's WebSocket dissector \
         never calls a subdissector for it (checked: the script is not called; pinfo->fragmented, left set \
         by the non-final fragments before it in that segment, makes dissect_websocket_data_frame return)",
    ),
    (
        "synthetic_ws_details.pcap",
        (0, "c>s"),
        "PING(5001)",
        4,
        3,
        "one PING travels as a two-frame message whose CONTINUATION has RSV1 set (permessage-deflate's bit, \
         only allowed on a message's first frame, RFC 7692 6): harness reassembles it and flags the frame; \
         Wireshark 4.0 reassembles it, takes it for compressed, fails to inflate it (\"Decompression \
         failed\") and hands nothing to a subdissector",
    ),
];

/// The differences between the two sides' counts of one capture, as (direction, type, harness, tshark);
/// the packet types by name, the other counts under "crc_bad", "not_whole", "interleaved".
fn differences(
    harness: &BTreeMap<DirKey, Counts>,
    tshark: &BTreeMap<DirKey, Counts>,
) -> Vec<(DirKey, String, u64, u64)> {
    let mut out = Vec::new();
    for (key, h) in harness {
        let t = tshark.get(key).cloned().unwrap_or_default();
        let mut names: Vec<&String> = h.packets.keys().chain(t.packets.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let (a, b) =
                (h.packets.get(name).copied().unwrap_or(0), t.packets.get(name).copied().unwrap_or(0));
            if a != b {
                out.push((*key, name.clone(), a, b));
            }
        }
        for (what, a, b) in [
            ("crc_bad", h.crc_bad, t.crc_bad),
            ("not_whole", h.not_whole, t.not_whole),
            ("interleaved", h.interleaved, t.interleaved),
        ] {
            if a != b {
                out.push((*key, what.to_owned(), a, b));
            }
        }
    }
    out
}

/// Compares one capture; returns a line for the log.
fn compare(scratch: &Scratch, names: &BTreeMap<u16, String>, capture: &Path) -> String {
    let file = capture.file_name().expect("file name").to_string_lossy().into_owned();
    let report = harness_report(capture);
    let seen = tshark_counts(scratch, names, capture, &report);
    let expected: Vec<(DirKey, String, u64, u64)> = KNOWN_DIFFERENCES
        .iter()
        .filter(|d| d.0 == file)
        .map(|(_, key, name, h, t, _)| (*key, (*name).to_owned(), *h, *t))
        .collect();
    let found = differences(&report.counts, &seen);
    let unexplained: Vec<&(DirKey, String, u64, u64)> =
        found.iter().filter(|d| !expected.contains(d)).collect();
    assert!(
        unexplained.is_empty(),
        "{file}: (direction, what, harness, tshark) differences between harness replay and the dissector: \
         {unexplained:?} (harness: {:#?}, tshark: {seen:#?})",
        report.counts
    );
    let total: u64 = seen.values().flat_map(|c| c.packets.values()).sum();
    let bad: u64 = seen.values().map(|c| c.crc_bad).sum();
    let partial: u64 = seen.values().map(|c| c.not_whole).sum();
    format!(
        "{file}: {total} packets by type, {bad} with a bad CRC, {partial} not whole: as harness counts{}{}",
        if found.is_empty() { String::new() } else { format!(", except {found:?} (known)") },
        if found.len() < expected.len() { " (a known difference is absent)" } else { "" }
    )
}

#[test]
fn wireshark_registers_acips_packet_types_and_fields() {
    if tshark_missing("wireshark_registers_acips_packet_types_and_fields") {
        return;
    }
    let scratch = Scratch::new("tables");
    let expected: BTreeMap<u16, String> =
        PacketType::ALL.iter().map(|t| (t.to_u16(), t.name().to_owned())).collect();
    assert_eq!(scratch.type_names(), expected, "acip.type's value table in Wireshark");

    let lua = format!("lua_script:{}", scratch.script().display());
    let fields = scratch.tshark(&["-G", "fields", "-X", &lua]);
    let registered: BTreeMap<&str, &str> = fields
        .lines()
        .filter_map(|line| match line.split('\t').collect::<Vec<_>>()[..] {
            ["F", _, abbrev, ftype, ..] => Some((abbrev, ftype)),
            _ => None,
        })
        .collect();
    for (abbrev, ftype) in [
        ("acip.magic", "FT_UINT64"),
        ("acip.type", "FT_UINT16"),
        ("acip.length", "FT_UINT32"),
        ("acip.crc", "FT_UINT32"),
        ("acip.client_id", "FT_UINT32"),
        ("acip.crc_ok", "FT_UINT8"),
        ("acip.payload", "FT_BYTES"),
        ("acip.encrypted.nonce", "FT_BYTES"),
        ("acip.encrypted.mac", "FT_BYTES"),
        ("acip.encrypted.ciphertext", "FT_BYTES"),
        ("acip.error.code", "FT_UINT32"),
        ("acip.error.message", "FT_STRING"),
        ("acip.image.width", "FT_UINT32"),
        ("acip.ascii.flags", "FT_UINT32"),
        ("acip.caps.codec_audio", "FT_UINT32"),
        ("acip.dialect", "FT_STRING"),
    ] {
        assert_eq!(registered.get(abbrev).copied(), Some(ftype), "field {abbrev}");
    }
}

/// Every corpus capture, two at a time (tshark is single-threaded and CI has two cores).
#[test]
fn dissector_agrees_with_replay_on_every_capture() {
    if tshark_missing("dissector_agrees_with_replay_on_every_capture") {
        return;
    }
    let scratch = Scratch::new("corpus");
    let names = scratch.type_names();
    let all = captures();
    assert!(all.len() >= 9, "the corpus captures are there");
    for known in KNOWN_DIFFERENCES {
        assert!(all.iter().any(|p| p.ends_with(known.0)), "{} is in the corpus", known.0);
    }
    for pair in all.chunks(2) {
        let lines: Vec<String> = std::thread::scope(|scope| {
            let running: Vec<_> = pair.iter().map(|p| scope.spawn(|| compare(&scratch, &names, p))).collect();
            running.into_iter().map(|h| h.join().expect("comparison passed")).collect()
        });
        for line in lines {
            eprintln!("{line}");
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_secs(1_700_000_000) + Duration::from_millis(n)
}

fn ws_frame(opcode: OpCode, fin: bool, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(opcode, fin, masked.then_some([0x0A, 0x0B, 0x0C, 0x0D]), payload, &mut out);
    out
}

/// What the corpus lacks. Raw TCP: three packets in one segment; a header cut after 10 bytes, the rest of
/// its packet coalesced with two more; an IMAGE_FRAME over several segments followed in its last segment
/// by an ERROR_MESSAGE. WebSocket without `Sec-WebSocket-Protocol` (so only the heuristic finds ACIP):
/// CLIENT_CAPABILITIES, an IMAGE_FRAME as a three-frame message, PING; SERVER_STATE and PONG down.
fn synthetic_sessions() -> Vec<u8> {
    let (c, s) = (Dir::ClientToServer, Dir::ServerToClient);
    let caps = ClientCapabilities::new(Dialect::Feb, 80, 24, 60).to_packet().encode();
    let ping = Packet::empty(PacketType::PING).encode();
    let pong = Packet::empty(PacketType::PONG).encode();
    let state = ServerState::new(1, 1).to_packet().encode();
    let image = ImageFrame::rgb24(160, 120, vec![7u8; 160 * 120 * 3]).to_packet().encode();
    let error = ErrorMessage::new(ErrorMessage::NETWORK_PROTOCOL, "test").to_packet().encode();

    let client = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 41_000);
    let tcp_server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, acip::cli::DEFAULT_TCP_PORT);
    let mut tcp = SyntheticSession::new(client, tcp_server, ms(0));
    tcp.send(ms(1), c, &[caps.clone(), ping.clone(), ping.clone()].concat());
    tcp.send(ms(2), s, &state[..10]);
    tcp.send(ms(3), s, &[&state[10..], &pong[..], &pong[..]].concat());
    tcp.send(ms(4), c, &[image.clone(), error].concat());
    tcp.close(ms(5), c);

    let client = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 41_001);
    let ws_server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, acip::cli::DEFAULT_WS_PORT);
    let mut ws = SyntheticSession::new(client, ws_server, ms(10));
    ws.send(
        ms(11),
        c,
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:27226\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    ws.send(
        ms(12),
        s,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    );
    ws.send(ms(13), c, &ws_frame(OpCode::Binary, true, true, &caps));
    ws.send(ms(14), s, &ws_frame(OpCode::Binary, true, false, &state));
    let third = image.len() / 3;
    let up = [
        ws_frame(OpCode::Binary, false, true, &image[..third]),
        ws_frame(OpCode::Continuation, false, true, &image[third..2 * third]),
        ws_frame(OpCode::Continuation, true, true, &image[2 * third..]),
        ws_frame(OpCode::Binary, true, true, &ping),
    ]
    .concat();
    ws.send(ms(15), c, &up);
    ws.send(ms(16), s, &ws_frame(OpCode::Binary, true, false, &pong));
    ws.close(ms(17), c);
    sessions_to_pcap(&[&tcp, &ws], SyntheticLink::Ethernet)
}

#[test]
fn dissector_agrees_with_replay_on_coalesced_split_and_heuristic_packets() {
    if tshark_missing("dissector_agrees_with_replay_on_coalesced_split_and_heuristic_packets") {
        return;
    }
    let scratch = Scratch::new("synthetic");
    let names = scratch.type_names();
    let capture = scratch.0.join("synthetic_dissector.pcap");
    std::fs::write(&capture, synthetic_sessions()).expect("capture written");
    let report = harness_report(&capture);
    assert_eq!(report.flows.iter().map(|f| f.2.as_str()).collect::<Vec<_>>(), ["tcp", "websocket"]);
    // Everything sent is there, so agreeing with harness means tshark found all of it.
    let n = |key: DirKey| report.counts[&key].packets.values().sum::<u64>();
    assert_eq!([n((0, "c>s")), n((0, "s>c")), n((1, "c>s")), n((1, "s>c"))], [5, 3, 3, 2]);
    eprintln!("{}", compare(&scratch, &names, &capture));
}
