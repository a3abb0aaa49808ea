//! `harness browser` (issue 17): a real headless Chromium as an ACIP client. The page's JavaScript encoder
//! must produce exactly the Rust codec's bytes, and a short session against the in-process reference server
//! must get every frame validated, ASCII rendered back in the page, and the browser's fragments measured.
//! With `--encrypt`, the page's key derivation and sealing must equal `acip::crypto` byte for byte, and an
//! encrypted session must get the same results. Skipped, with a message, when no Chromium is installed (CI
//! installs Debian's `chromium`) or, for encryption, when libsodium.js has not been fetched
//! (`harness/assets/browser/fetch-sodium.sh`, which CI runs).

use std::time::Duration;

use acip::codec::payloads::{ClientCapabilities, ImageFrame, StreamStart};
use acip::{Dialect, Packet, PacketType};
use base64::Engine;
use harness::browser::{self, cdp, page, SessionConfig};

fn chrome_or_skip(test: &str) -> bool {
    match cdp::find_chrome() {
        Some(_) => true,
        None => {
            eprintln!(
                "SKIPPED {test}: no Chromium found (set CHROME or install it: apt-get install chromium)"
            );
            false
        }
    }
}

/// One sample as the Rust codec encodes it: CLIENT_CAPABILITIES, STREAM_START(VIDEO), the pattern frame, PING.
struct Sample {
    dialect: Dialect,
    width: u16,
    height: u16,
    seq: u64,
    send_time_us: u64,
    tag: u32,
    cols: u16,
    rows: u16,
    fps: u8,
}

impl Sample {
    fn rust_bytes(&self) -> Vec<u8> {
        let mut px = Vec::new();
        acip::pattern::render(self.width, self.height, self.seq, self.send_time_us, self.tag, &mut px)
            .unwrap();
        let mut out = Vec::new();
        ClientCapabilities::new(self.dialect, self.cols, self.rows, self.fps)
            .to_packet()
            .encode_into(&mut out);
        StreamStart::new(StreamStart::VIDEO).to_packet().encode_into(&mut out);
        ImageFrame::rgb24(self.width.into(), self.height.into(), px).to_packet().encode_into(&mut out);
        Packet::empty(PacketType::PING).encode_into(&mut out);
        out
    }

    fn js_call(&self) -> String {
        format!(
            "Acip.encodeSample({})",
            serde_json::json!({
                "dialect": self.dialect.to_string(), "width": self.width, "height": self.height,
                "seq": self.seq, "sendTimeUs": self.send_time_us, "tag": self.tag,
                "cols": self.cols, "rows": self.rows, "fps": self.fps,
            })
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_encodes_exactly_what_the_rust_codec_encodes() {
    if !chrome_or_skip("the_page_encodes_exactly_what_the_rust_codec_encodes") {
        return;
    }
    let pages = page::PageServer::start().await.unwrap();
    let b = cdp::Browser::launch((800, 600)).await.unwrap();
    let p = b.open(&pages.url(), (800, 600)).await.unwrap();
    let t = 1_765_000_000_123_456u64;
    let samples = [
        Sample {
            dialect: Dialect::Feb,
            width: 64,
            height: 48,
            seq: 0,
            send_time_us: t,
            tag: 7,
            cols: 80,
            rows: 24,
            fps: 30,
        },
        // HEAD's 168-byte capabilities; a sequence number past 2^32 (bar shift and band position).
        Sample {
            dialect: Dialect::Head,
            width: 320,
            height: 240,
            seq: (1 << 40) + 3,
            send_time_us: t + 33_333,
            tag: 0xDEAD_BEEF,
            cols: 120,
            rows: 45,
            fps: 144,
        },
        // The smallest frame that holds the pattern header (11 pixels), and odd dimensions.
        Sample {
            dialect: Dialect::Feb,
            width: 11,
            height: 1,
            seq: 5,
            send_time_us: 1,
            tag: 0,
            cols: 1,
            rows: 1,
            fps: 1,
        },
        Sample {
            dialect: Dialect::Head,
            width: 33,
            height: 17,
            seq: 999,
            send_time_us: t,
            tag: 1,
            cols: 4096,
            rows: 4096,
            fps: 60,
        },
        Sample {
            dialect: Dialect::Feb,
            width: 640,
            height: 480,
            seq: 123,
            send_time_us: t,
            tag: 0xB0B0,
            cols: 120,
            rows: 45,
            fps: 30,
        },
    ];
    for s in &samples {
        let v = p.evaluate(&s.js_call(), Duration::from_secs(30)).await.unwrap();
        let js =
            base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("a base64 string")).unwrap();
        let rust = s.rust_bytes();
        let first_diff = js.iter().zip(&rust).position(|(a, b)| a != b);
        assert!(
            js.len() == rust.len() && first_diff.is_none(),
            "{}x{} seq {} ({}): page gave {} bytes, codec {}; first difference at byte {:?}",
            s.width,
            s.height,
            s.seq,
            s.dialect,
            js.len(),
            rust.len(),
            first_diff
        );
        // And the frame is one the server's check accepts.
        let img_at = 22 + ClientCapabilities::len_for(s.dialect) + 22 + 4;
        let info = acip::pattern::inspect(&js[img_at + 22 + 24..js.len() - 22]).unwrap();
        assert_eq!((info.seq, info.send_time_us, info.tag), (s.seq, s.send_time_us, s.tag));
    }
    // The CRC of the page is CRC-32C, not IEEE CRC-32 (ACIP-SPEC.md 1.2 test vectors).
    let v = p
        .evaluate("Acip.crc32c(new TextEncoder().encode('123456789'))", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(v.as_u64(), Some(0xE306_9283));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_streams_to_the_reference_server_and_renders_its_ascii() {
    if !chrome_or_skip("a_real_browser_streams_to_the_reference_server_and_renders_its_ascii") {
        return;
    }
    let pcap = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-session.pcap");
    let cfg = SessionConfig {
        screenshot: true,
        ascii: (80, 30),
        capture: Some(pcap.clone()),
        ..SessionConfig::embedded(Dialect::Feb, (320, 240), 10, Duration::from_secs(3))
    };
    let r = browser::run_session(&cfg).await.unwrap();
    for line in browser::summary_lines(&cfg, &r) {
        println!("{line}");
    }
    assert!(r.page.ok, "page error: {:?}", r.page.error);
    let server = r.server.as_ref().expect("the embedded server's view");
    let k = &server.stats.counters;
    let sent = r.page.frames.len() as u64;
    // ~30 frames in 3 s at 10 fps; every one the page sent was validated, none corrupt, lost or reordered.
    assert!(sent >= 20, "the page sent only {sent} frames");
    assert_eq!(k.frames_received, sent, "server validated {} of {sent} frames", k.frames_received);
    assert_eq!((k.frames_corrupt, k.frames_lost, k.frames_reordered), (0, 0, 0));
    assert!(server.stages.count(acip::stats::Stage::EndToEnd) >= sent);

    // ASCII came back and was rendered in the <pre>: the server's 80x30 grid, as text lines.
    assert!(r.page.ascii_frames > 0 && r.page.ascii_checksum_bad == 0, "{:?}", r.page);
    assert_eq!((r.page.ascii_width, r.page.ascii_height), (80, 30));
    let lines: Vec<&str> = r.pre_text.lines().collect();
    assert!(lines.len() >= 30 && lines.iter().any(|l| l.trim().len() >= 40), "pre holds {:?}", r.pre_text);
    assert!(r.pre_text.chars().any(|c| !c.is_whitespace()));
    let png = r.screenshot.as_ref().expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000);

    // Fragment data: the tap saw every IMAGE_FRAME as whole messages of 230,446 bytes; Chromium splits
    // these (over 64 KiB) into several WebSocket frames.
    let image = r.image_messages(&cfg);
    assert_eq!(image.len() as u64, sent);
    assert!(image.iter().all(|m| m.fragments.iter().sum::<u64>() == 230_446));
    assert!(
        image.iter().any(|m| m.fragments.len() > 1),
        "no message was fragmented: {:?}",
        image[0].fragments
    );
    assert!(server.stages.count(acip::stats::Stage::FragmentGap) > 0);

    // The report carries the measurements and passes.
    let rep = browser::build_report(&cfg, &r, vec!["test".into()]);
    assert!(rep.verdict.passed, "{:?}", rep.verdict);
    for stage in ["browser_send_interval", "browser_fragment_gap", "tap_assembly", "server_assembly"] {
        let s = rep.stage(stage).unwrap_or_else(|| panic!("no {stage} stage"));
        assert!(s.histogram.as_ref().is_some_and(|h| h.count > 0), "{stage} is empty: {:?}", s.absent);
    }
    let sizes = rep.tables.iter().find(|t| t.title.starts_with("Browser WebSocket frame sizes")).unwrap();
    let total: u64 = sizes.rows.iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
    assert_eq!(total, image.iter().map(|m| m.fragments.len() as u64).sum::<u64>());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-report");
    harness::report::write_dir(&dir, &rep).unwrap();
    let (_, back) = harness::report::read(&dir).unwrap();
    assert_eq!(back.counters.get("server_frames_received"), Some(&sent));

    // --capture: the pcap the tap recorded, read back by replay's dissector, holds the same session: one
    // WebSocket flow whose client side carries every frame the tap timed (two independent parsers of the
    // same bytes), every IMAGE_FRAME the server validated, intact, and the ASCII frames the page got.
    let view = r.capture.as_ref().expect("the capture");
    assert_eq!(view.error, None);
    assert_eq!((view.summary.connections, view.summary.truncated_bytes), (1, 0));
    assert!(view.summary.payload_bytes > sent * 230_446);
    assert_eq!(std::fs::read(&pcap).unwrap()[..4], [0xD4, 0xC3, 0xB2, 0xA1], "a classic pcap");
    let d = view.dissection.as_ref().expect("the dissection");
    assert_eq!(d.flows.len(), 1, "{:?}", d.flows.iter().map(|f| &f.client).collect::<Vec<_>>());
    let f = &d.flows[0];
    assert_eq!(f.transport, harness::replay::model::Transport::WebSocket);
    let ws = f.client_to_server.ws.as_ref().expect("client WebSocket frames");
    assert_eq!(ws.frames, r.fragments.len() as u64);
    assert_eq!(f.client_to_server.by_type.get("IMAGE_FRAME(3001)").map(|t| t.count), Some(sent));
    // Nothing wrong with the frames themselves: the only anomalies are the key exchange a WebSocket server
    // always offers (ACIP-SPEC.md 4.4), which the plaintext page ignores, and stalls, which depend on the
    // machine's load.
    use harness::replay::model::AnomalyKind;
    let kinds: Vec<_> = f.anomalies.iter().map(|a| a.kind).filter(|k| *k != AnomalyKind::Stall).collect();
    assert_eq!(kinds, [AnomalyKind::HandshakeMismatch], "{:?}", f.anomalies);
    let ascii = f.server_to_client.by_type.get("ASCII_FRAME(3000)").map_or(0, |t| t.count);
    assert!(ascii >= r.page.ascii_frames, "capture {ascii} ASCII frames, page {}", r.page.ascii_frames);
    assert!(rep.tables.iter().any(|t| t.title.starts_with("Capture ")));
    assert_eq!(rep.counters.get("capture_image_frames"), Some(&sent));
}

fn sodium_or_skip(test: &str) -> bool {
    match browser::sodium::Sodium::locate() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            false
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("a base64 string")).unwrap()
}

/// X25519 public key of a secret, as `acip` computes it (the scalar times the base point 9).
fn public_key(secret: [u8; 32]) -> [u8; 32] {
    let mut base = [0u8; 32];
    base[0] = 9;
    acip::crypto::primitives::x25519(&From::from(secret), &base).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_derives_keys_and_seals_exactly_what_the_rust_session_does() {
    let name = "the_page_derives_keys_and_seals_exactly_what_the_rust_session_does";
    if !chrome_or_skip(name) || !sodium_or_skip(name) {
        return;
    }
    let sodium = browser::sodium::Sodium::locate().unwrap();
    let pages = page::PageServer::start_with(Some(std::sync::Arc::new(sodium))).await.unwrap();
    let b = cdp::Browser::launch((800, 600)).await.unwrap();
    let p = b.open(&pages.url(), (800, 600)).await.unwrap();

    let page_secret: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(1));
    let server_secret: [u8; 32] = std::array::from_fn(|i| 0xA5 ^ (i as u8).wrapping_mul(13));
    let (page_public, server_public) = (public_key(page_secret), public_key(server_secret));
    let key: [u8; 32] = std::array::from_fn(|i| 0x40 + i as u8);
    let session_id: [u8; 16] = std::array::from_fn(|i| 0xF0 ^ i as u8);

    // What the page sends (its counters 1..=5) and what the server sends it (sealed under another id).
    let mut px = Vec::new();
    acip::pattern::render(64, 48, 9, 1_765_000_000_000_000, 0xB0B0, &mut px).unwrap();
    let outgoing = [
        ClientCapabilities::new(Dialect::Head, 120, 45, 30).to_packet(),
        StreamStart::new(StreamStart::VIDEO).to_packet(),
        ImageFrame::rgb24(64, 48, px).to_packet(),
        Packet::empty(PacketType::PING),
        Packet::empty(PacketType::PONG),
    ];
    let ascii = acip::codec::payloads::AsciiFrame::new(4, 2, &b"ab\ncd\n"[..]).to_packet();
    let incoming = [ascii, Packet::empty(PacketType::PONG)];

    for dialect in [Dialect::Feb, Dialect::Head] {
        let rust_key =
            acip::crypto::primitives::session_key(dialect, &From::from(page_secret), &server_public).unwrap();
        // Both ends derive the same key.
        assert_eq!(
            acip::crypto::primitives::session_key(dialect, &From::from(server_secret), &page_public).unwrap(),
            rust_key
        );
        let mut rust_sealer = acip::crypto::Session::new(dialect, key, session_id);
        let mut server = acip::crypto::Session::new(dialect, key, [0x33; 16]);
        let sealed_by_server: Vec<String> =
            incoming.iter().map(|q| b64(&server.encrypt(q).unwrap().encode())).collect();
        let call = format!(
            "Acip.cryptoSample({})",
            serde_json::json!({
                "dialect": dialect.to_string(),
                "secretKey": hex(&page_secret),
                "peerPublic": hex(&server_public),
                "key": hex(&key),
                "sessionId": hex(&session_id),
                "seal": outgoing.iter().map(|q| b64(&q.encode())).collect::<Vec<_>>(),
                "open": sealed_by_server,
            })
        );
        let v = p.evaluate(&call, Duration::from_secs(30)).await.unwrap();
        assert_eq!(v["publicKey"].as_str(), Some(hex(&page_public).as_str()), "{dialect}: X25519 public key");
        assert_eq!(v["sessionKey"].as_str(), Some(hex(&rust_key).as_str()), "{dialect}: session key");
        let sealed = v["sealed"].as_array().unwrap();
        assert_eq!(sealed.len(), outgoing.len());
        for (i, (js, q)) in sealed.iter().zip(&outgoing).enumerate() {
            let js = unb64(js);
            let rust = rust_sealer.encrypt(q).unwrap().encode();
            let first_diff = js.iter().zip(&rust).position(|(a, b)| a != b);
            assert!(
                js.len() == rust.len() && first_diff.is_none(),
                "{dialect}, packet {i} ({}): page gave {} bytes, acip {}; first difference at byte {first_diff:?}",
                q.packet_type,
                js.len(),
                rust.len()
            );
        }
        let opened = v["opened"].as_array().unwrap();
        assert_eq!(
            opened.iter().map(unb64).collect::<Vec<_>>(),
            incoming.iter().map(|q| q.encode()).collect::<Vec<_>>()
        );
    }

    // A low-order peer key is refused on both sides.
    assert!(acip::crypto::primitives::session_key(Dialect::Head, &From::from(page_secret), &[0; 32]).is_err());
    let low = format!(
        "Acip.cryptoSample({})",
        serde_json::json!({ "dialect": "head", "secretKey": hex(&page_secret), "peerPublic": hex(&[0; 32]),
                            "key": hex(&key), "sessionId": hex(&session_id) })
    );
    assert!(p.evaluate(&low, Duration::from_secs(10)).await.is_err());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_streams_encrypted_to_the_reference_server() {
    let name = "a_real_browser_streams_encrypted_to_the_reference_server";
    if !chrome_or_skip(name) || !sodium_or_skip(name) {
        return;
    }
    for dialect in [Dialect::Feb, Dialect::Head] {
        let cfg = SessionConfig {
            encrypt: true,
            ascii: (80, 30),
            ..SessionConfig::embedded(dialect, (320, 240), 10, Duration::from_secs(2))
        };
        let r = browser::run_session(&cfg).await.unwrap();
        for line in browser::summary_lines(&cfg, &r) {
            println!("{dialect}: {line}");
        }
        assert!(r.page.ok, "{dialect}: page error: {:?}", r.page.error);
        assert!(r.page.encrypted && r.page.handshake_ms.is_some(), "{dialect}: {:?}", r.page);
        let server = r.server.as_ref().expect("the embedded server's view");
        let k = &server.stats.counters;
        let sent = r.page.frames.len() as u64;
        assert!(sent >= 12, "{dialect}: the page sent only {sent} frames");
        assert_eq!(k.frames_received, sent, "{dialect}: server validated {} of {sent}", k.frames_received);
        assert_eq!((k.frames_corrupt, k.frames_lost, k.frames_reordered), (0, 0, 0));
        // The server opened every packet after the handshake: CLIENT_CAPABILITIES, STREAM_START, the frames
        // and the PINGs all came in ENCRYPTED packets, and nothing failed to decrypt.
        let encrypted_rx = k.packets_rx.get("ENCRYPTED").copied().unwrap_or(0);
        assert_eq!(encrypted_rx, 2 + sent + r.page.pings_sent, "{dialect}: {:?}", k.packets_rx);
        assert!(k.errors.is_empty() && k.drops.is_empty(), "{dialect}: {:?} {:?}", k.errors, k.drops);

        // The server's replies came back encrypted, were opened, and the ASCII was rendered.
        assert!(r.page.encrypted_received > 0 && r.page.decrypt_failed == 0, "{dialect}: {:?}", r.page);
        assert!(r.page.ascii_frames > 0 && r.page.ascii_checksum_bad == 0, "{dialect}: {:?}", r.page);
        assert_eq!((r.page.ascii_width, r.page.ascii_height), (80, 30));
        let lines: Vec<&str> = r.pre_text.lines().collect();
        assert!(lines.len() >= 30 && r.pre_text.chars().any(|c| !c.is_whitespace()), "{:?}", r.pre_text);

        // At the tap every IMAGE_FRAME is one ENCRYPTED message: 230,446 bytes + 22 (outer header) + 40.
        let image = r.image_messages(&cfg);
        assert_eq!(image.len() as u64, sent);
        assert!(image.iter().all(|m| m.fragments.iter().sum::<u64>() == 230_446 + 62));

        let rep = browser::build_report(&cfg, &r, vec!["test".into()]);
        assert!(rep.verdict.passed, "{dialect}: {:?}", rep.verdict);
        assert_eq!(rep.settings.get("session_encrypted").map(String::as_str), Some("true"));
        let enc = rep.stage("browser_encrypt").expect("a browser_encrypt stage");
        assert_eq!(enc.histogram.as_ref().map(|h| h.count), Some(sent), "{:?}", enc.absent);
        assert!(rep.notes.iter().any(|n| n.starts_with("session encrypted")), "{:?}", rep.notes);
    }
}

#[test]
fn encrypt_without_libsodium_js_fails_naming_the_fetch_script() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["browser", "--encrypt", "--duration", "1s"])
        .env(browser::sodium::ENV, "/nonexistent/acip-sodium")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("harness/assets/browser/fetch-sodium.sh") && err.contains("ACIP_SODIUM_JS"),
        "{err}"
    );
}
