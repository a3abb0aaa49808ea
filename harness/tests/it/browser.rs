//! `harness browser` (issue 17): a real headless Chromium as an ACIP client. The page's JavaScript encoder
//! must produce exactly the Rust codec's bytes, and a short session against the in-process reference server
//! must get every frame validated, ASCII rendered back in the page, and the browser's fragments measured.
//! Skipped, with a message, when no Chromium is installed (CI installs Debian's `chromium`).

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
    let cfg = SessionConfig {
        screenshot: true,
        ascii: (80, 30),
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
}

#[test]
fn encrypt_is_refused_with_a_clear_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["browser", "--encrypt", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--encrypt is not implemented"), "{err}");
}
