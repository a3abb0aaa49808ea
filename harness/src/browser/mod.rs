//! `harness browser`: a real browser as an ACIP client. Headless Chromium opens a page served on loopback
//! whose JavaScript (`assets/browser/acip.js`) speaks ACIP over the browser's own `WebSocket`:
//! CLIENT_CAPABILITIES, STREAM_START, IMAGE_FRAMEs of the harness's test pattern (byte-identical to
//! `acip::pattern`, so the reference server validates every frame) and a PING a second; it renders the
//! ASCII_FRAMEs it receives in a `<pre>`. With `--encrypt` the page answers the server's WebSocket
//! handshake (ACIP-SPEC.md 4.4) and sends everything after it as ENCRYPTED packets (4.5), with
//! libsodium.js from the npm registry (`sodium.rs`: fetched by a script, served to the page, not committed).
//!
//! ```text
//!  Chromium page ──ws──► tap (times each WebSocket frame) ──► server (embedded reference server, or --target)
//!        ▲ DevTools (cdp.rs): open, Runtime.evaluate(Acip.run), acipEvent bindings, screenshot
//! ```
//!
//! Measured: the page's send timing per frame; the browser's own fragment pattern (WebSocket frame sizes,
//! idle gaps between frames, first-to-last byte per message) at the tap, for any server; and, against the
//! embedded reference server, its stage histograms (assembly, fragment gaps in `feb`, queue wait, end to
//! end) and validated / corrupt frame counts. Delivered fps = frames the server had validated when the page
//! stopped sending / the sending window (with `--target`: IMAGE_FRAME messages that had passed the tap).
//!
//! The page skips a frame while more than two frames wait in its socket's send buffer (`bufferedAmount`),
//! as a real-time sender would; skipped frames are counted and keep the sequence numbers contiguous.
//!
//! Why not a DevTools crate: the client needs five commands and two events; `cdp.rs` does that over the
//! workspace's tokio-tungstenite and serde_json with no new dependency and no generated protocol types to
//! go stale against the installed Chromium.

pub mod analyze;
pub mod capture;
pub mod cdp;
pub mod page;
pub mod sodium;
pub mod tap;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use acip::cli::TargetUrl;
use acip::Dialect;
use serde::Deserialize;

use crate::report::{Report, StageReport, Table, Verdict};

/// Arguments of `harness browser`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The ACIP server to stream to (ws://HOST:PORT[/PATH]); without it, an embedded reference server.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// ACIP dialect of the page (feb: 160-byte CLIENT_CAPABILITIES; head: 168 bytes).
    #[arg(long, default_value = "feb", value_name = "feb|head")]
    pub dialect: Dialect,
    /// IMAGE_FRAME size in pixels (RGB24), WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480", value_parser = crate::soak::parse_frame)]
    pub frame: (u16, u16),
    /// Frames per second the page sends (1..=144).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(1..=144))]
    pub fps: u8,
    /// How long the page sends (e.g. 20s, 500ms).
    #[arg(long, default_value = "20s", value_parser = acip::cli::parse_duration)]
    pub duration: Duration,
    /// The ASCII grid the page asks for, COLSxROWS (CLIENT_CAPABILITIES width and height).
    #[arg(long, default_value = "120x45", value_parser = crate::soak::parse_frame)]
    pub ascii: (u16, u16),
    /// Encrypted session: the page answers the server's crypto handshake and sends every packet after it
    /// encrypted (XSalsa20-Poly1305, libsodium.js; the embedded server then runs in its encrypting mode).
    #[arg(long)]
    pub encrypt: bool,
    /// Switch on a fault of the embedded reference server (e.g. rx-pause); repeatable.
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<String>,
    /// Connect the browser straight to the server, without the tap that times its WebSocket frames.
    #[arg(long)]
    pub no_tap: bool,
    /// Record the session the tap relays (both directions, as the server received it) to this pcap file,
    /// and add its dissection by `replay` to the report (needs the tap).
    #[arg(long, value_name = "FILE", conflicts_with = "no_tap")]
    pub capture: Option<PathBuf>,
    /// Also save a screenshot of the page (the last ASCII frame it rendered) as page.png.
    #[arg(long)]
    pub screenshot: bool,
    /// Report directory (default: a new folder under target/harness/browser/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// One browser session to run.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `None`: start an embedded reference server (`dialect`, `faults`; encrypting with `encrypt`).
    pub target: Option<TargetUrl>,
    pub dialect: Dialect,
    pub frame: (u16, u16),
    pub fps: u8,
    pub duration: Duration,
    pub ascii: (u16, u16),
    pub faults: Vec<String>,
    /// The page does the crypto handshake and encrypts (the embedded server offers it either way).
    pub encrypt: bool,
    pub tap: bool,
    /// Record what the tap relays to this pcap (needs `tap`).
    pub capture: Option<PathBuf>,
    pub screenshot: bool,
    /// The pattern's tag field.
    pub tag: u32,
}

impl SessionConfig {
    /// An embedded-server session with the tap on and no screenshot.
    pub fn embedded(dialect: Dialect, frame: (u16, u16), fps: u8, duration: Duration) -> Self {
        SessionConfig {
            target: None,
            dialect,
            frame,
            fps,
            duration,
            ascii: (120, 45),
            faults: Vec::new(),
            encrypt: false,
            tap: true,
            capture: None,
            screenshot: false,
            tag: 0xB0B0,
        }
    }

    /// Wire bytes of one IMAGE_FRAME packet of this session (in its ENCRYPTED wrapper with `encrypt`).
    pub fn image_wire_len(&self) -> u64 {
        let plain = 22 + 24 + self.frame.0 as u64 * self.frame.1 as u64 * 3;
        if self.encrypt {
            plain + 22 + acip::crypto::session::OVERHEAD as u64
        } else {
            plain
        }
    }
}

/// One frame the page sent (times in ms since the page's run started).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct PageFrame {
    pub seq: u64,
    pub due_ms: f64,
    pub start_ms: f64,
    pub built_ms: f64,
    /// When the frame was sealed in its ENCRYPTED packet (encrypted sessions only).
    #[serde(default)]
    pub sealed_ms: Option<f64>,
    pub sent_ms: f64,
    /// `bufferedAmount` right after `send`.
    pub buffered: f64,
}

/// How the page's WebSocket closed.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct PageClose {
    pub code: u16,
    pub reason: String,
    pub at_ms: f64,
    pub clean: bool,
}

/// What `Acip.run` resolved to.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct PageResult {
    pub ok: bool,
    pub error: Option<String>,
    pub opened_ms: Option<f64>,
    pub closed: Option<PageClose>,
    pub frames: Vec<PageFrame>,
    pub skipped_backpressure: u64,
    pub max_buffered: f64,
    pub pings_sent: u64,
    pub ping_rtt_ms: Vec<f64>,
    pub ascii_frames: u64,
    pub ascii_at_ms: Vec<f64>,
    pub ascii_checksum_bad: u64,
    pub ascii_compressed: u64,
    pub ascii_width: u32,
    pub ascii_height: u32,
    pub packets_by_type: std::collections::BTreeMap<String, u64>,
    pub handshake_offered: bool,
    pub server_errors: Vec<String>,
    pub window_ms: f64,
    pub pre_text_len: u64,
    /// The page completed the crypto handshake and sealed everything after it.
    #[serde(default)]
    pub encrypted: bool,
    /// WebSocket open to HANDSHAKE_COMPLETE.
    #[serde(default)]
    pub handshake_ms: Option<f64>,
    /// The server's Ed25519 identity (hex), when it signed its key exchange.
    #[serde(default)]
    pub server_identity: Option<String>,
    /// ENCRYPTED packets the page opened.
    #[serde(default)]
    pub encrypted_received: u64,
    /// Plain non-handshake packets received after the handshake (accepted, as WS receivers do).
    #[serde(default)]
    pub plain_received_after_handshake: u64,
    /// ENCRYPTED packets the page could not open, and the first reasons.
    #[serde(default)]
    pub decrypt_failed: u64,
    #[serde(default)]
    pub decrypt_errors: Vec<String>,
    /// REKEY_* packets ignored after the handshake (ACIP-SPEC.md 4.8).
    #[serde(default)]
    pub rekey_ignored: u64,
}

/// The embedded server's view of a session.
#[derive(Debug, Clone)]
pub struct ServerView {
    pub stats: reference_server::StatsSnapshot,
    pub stages: acip::stats::StageHistograms,
    /// Frames validated when the page reported the end of its sending window.
    pub frames_at_window_end: u64,
}

/// Everything one session measured.
#[derive(Debug, Clone)]
pub struct SessionResult {
    pub browser_version: String,
    pub target: String,
    pub page: PageResult,
    /// The tap's frame records (empty without the tap).
    pub fragments: Vec<tap::FrameRecord>,
    /// IMAGE_FRAME messages that had passed the tap at the end of the sending window (with the tap).
    pub tap_messages_at_window_end: Option<u64>,
    pub server: Option<ServerView>,
    /// `document.getElementById('ascii').textContent` after the run.
    pub pre_text: String,
    pub screenshot: Option<Vec<u8>>,
    pub started: SystemTime,
    /// The recording of `--capture` and its dissection.
    pub capture: Option<capture::CaptureView>,
}

impl SessionResult {
    /// The browser's IMAGE_FRAME messages as the tap saw them.
    pub fn image_messages(&self, cfg: &SessionConfig) -> Vec<analyze::TapMessage> {
        let want = cfg.image_wire_len();
        analyze::messages(&self.fragments).into_iter().filter(|m| m.size == want).collect()
    }

    /// Sending window of the page.
    pub fn window(&self) -> Duration {
        Duration::from_secs_f64((self.page.window_ms / 1000.0).max(1e-3))
    }

    /// Frames the server (or, with `--target`, the tap) had whole by the end of the window, per second.
    pub fn delivered_fps(&self) -> Option<f64> {
        let n = match &self.server {
            Some(s) => Some(s.frames_at_window_end),
            None => self.tap_messages_at_window_end,
        }?;
        Some(n as f64 / self.window().as_secs_f64())
    }

    /// Frames the page handed to `WebSocket.send`, per second of its window.
    pub fn sent_fps(&self) -> f64 {
        self.page.frames.len() as f64 / self.window().as_secs_f64()
    }
}

/// Why a session could not run.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Browser(#[from] cdp::CdpError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("embedded reference server: {0}")]
    Server(String),
    #[error(transparent)]
    Sodium(#[from] sodium::SodiumError),
    #[error("{0}")]
    Usage(String),
}

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> SessionError + '_ {
    move |source| SessionError::Io { context: context.to_string(), source }
}

/// Extra time the page gets beyond its window: connecting, draining, closing.
const PAGE_SLACK: Duration = Duration::from_secs(60);
/// Longest wait for the tap's connections to end after the session, before its capture is closed.
const TAP_DRAIN: Duration = Duration::from_secs(5);
/// Browser window and viewport.
const VIEWPORT: (u32, u32) = (1280, 900);

/// Runs one session: server (embedded unless `cfg.target`), page server, tap, browser; returns what it
/// measured. The browser and the embedded server are shut down before it returns.
pub async fn run_session(cfg: &SessionConfig) -> Result<SessionResult, SessionError> {
    let started = SystemTime::now();
    // Before anything starts: an encrypted session cannot run without the page's crypto library.
    let sodium = if cfg.encrypt { Some(std::sync::Arc::new(sodium::Sodium::locate()?)) } else { None };
    let (server, url) = match &cfg.target {
        Some(t) if !t.is_ws() => {
            return Err(SessionError::Usage(format!("{t}: a browser speaks WebSocket only (ws://HOST:PORT)")))
        }
        Some(t) => (None, t.clone()),
        None => {
            let mut sc = reference_server::ServerConfig {
                tcp: None,
                dialect: cfg.dialect,
                encrypt: cfg.encrypt,
                ..reference_server::ServerConfig::loopback()
            };
            for f in &cfg.faults {
                sc.faults.enable(f).map_err(SessionError::Usage)?;
            }
            let srv = reference_server::start(sc).await.map_err(|e| SessionError::Server(e.to_string()))?;
            let addr = srv.ws_addr().expect("the embedded server listens on WebSocket");
            (Some(srv), TargetUrl::for_addr(acip::crypto::Transport::WebSocket, addr))
        }
    };
    let res = async {
        let upstream: SocketAddr = tokio::net::lookup_host(url.authority())
            .await
            .map_err(io_err("resolving the target"))?
            .next()
            .ok_or_else(|| SessionError::Usage(format!("{url}: no address")))?;
        let recorder = match (&cfg.capture, cfg.tap) {
            (Some(path), true) => Some(
                crate::capture::record::Recorder::create(path, Default::default())
                    .map_err(|e| SessionError::Usage(format!("--capture: {e}")))?,
            ),
            (Some(_), false) => {
                return Err(SessionError::Usage("--capture needs the tap (not --no-tap)".into()))
            }
            (None, _) => None,
        };
        let tap = if cfg.tap {
            let opener = recorder.as_ref().map(|r| r.opener());
            Some(tap::Tap::start(upstream, opener).await.map_err(io_err("starting the tap"))?)
        } else {
            None
        };
        let ws_url = match &tap {
            Some(t) => format!("ws://{}{}", t.addr(), url.path),
            None => url.to_string(),
        };
        let pages = page::PageServer::start_with(sodium).await.map_err(io_err("starting the page server"))?;
        let browser = cdp::Browser::launch(VIEWPORT).await?;
        let version = browser.version().to_string();
        let out = drive(&browser, &pages, cfg, &ws_url, server.as_ref(), tap.as_ref()).await;
        browser.close().await;
        let (page, pre_text, screenshot, server_at_end, tap_at_end) = out?;
        Ok::<_, SessionError>((page, pre_text, screenshot, server_at_end, tap_at_end, tap, version, recorder))
    }
    .await;
    let server_view = match server {
        Some(srv) => {
            // The page closed its socket: wait (bounded) for the server to finish that connection, so every
            // frame it received is counted.
            srv.wait_until(Duration::from_secs(10), |s| s.connections() == 0).await;
            let view = (srv.stats(), srv.stage_histograms());
            let _ = tokio::time::timeout(Duration::from_secs(10), srv.shutdown()).await;
            Some(view)
        }
        None => None,
    };
    let (page, pre_text, screenshot, server_at_end, tap_at_end, tap, browser_version, recorder) = res?;
    let capture = match recorder {
        Some(r) => {
            // The browser and the server have closed: let the tap finish relaying (bounded), so the
            // recording holds everything it forwarded.
            if let Some(t) = &tap {
                t.wait_idle(TAP_DRAIN).await;
            }
            Some(capture::finish(r, cfg.dialect).await)
        }
        None => None,
    };
    Ok(SessionResult {
        browser_version,
        target: url.to_string(),
        page,
        fragments: tap.as_ref().map(|t| t.records()).unwrap_or_default(),
        tap_messages_at_window_end: tap_at_end,
        server: server_view.map(|(stats, stages)| ServerView {
            stats,
            stages,
            frames_at_window_end: server_at_end.unwrap_or_default(),
        }),
        pre_text,
        screenshot,
        started,
        capture,
    })
}

type Driven = (PageResult, String, Option<Vec<u8>>, Option<u64>, Option<u64>);

async fn drive(
    browser: &cdp::Browser,
    pages: &page::PageServer,
    cfg: &SessionConfig,
    ws_url: &str,
    server: Option<&reference_server::ServerHandle>,
    tap: Option<&tap::Tap>,
) -> Result<Driven, SessionError> {
    let page = browser.open(&pages.url(), VIEWPORT).await?;
    let opts = serde_json::json!({
        "url": ws_url,
        "dialect": cfg.dialect.to_string(),
        "width": cfg.frame.0,
        "height": cfg.frame.1,
        "fps": cfg.fps,
        "durationMs": cfg.duration.as_millis() as u64,
        "cols": cfg.ascii.0,
        "rows": cfg.ascii.1,
        "tag": cfg.tag,
        "maxBufferedFrames": 2,
        "encrypt": cfg.encrypt,
    });
    let expr = format!("Acip.run({opts})");
    let eval = page.evaluate(&expr, cfg.duration + PAGE_SLACK);
    tokio::pin!(eval);
    let (mut server_at_end, mut tap_at_end) = (None, None);
    let want = cfg.image_wire_len();
    let value = loop {
        tokio::select! {
            r = &mut eval => break r?,
            ev = page.next_binding(cfg.duration + PAGE_SLACK) => {
                if ev.as_ref().ok().and_then(|v| v.get("kind")).and_then(|k| k.as_str()) == Some("window_end") {
                    server_at_end = server.map(|s| s.stats().counters.frames_received);
                    tap_at_end = tap.map(|t| {
                        analyze::messages(&t.records()).iter().filter(|m| m.size == want).count() as u64
                    });
                }
            }
        }
    };
    let result: PageResult = serde_json::from_value(value.clone()).map_err(|e| {
        SessionError::Browser(cdp::CdpError::Exception(format!(
            "unexpected result of Acip.run: {e}: {value}"
        )))
    })?;
    let pre = page
        .evaluate("document.getElementById('ascii').textContent", Duration::from_secs(10))
        .await?
        .as_str()
        .unwrap_or_default()
        .to_string();
    let shot = if cfg.screenshot { Some(page.screenshot_png().await?) } else { None };
    Ok((result, pre, shot, server_at_end, tap_at_end))
}

/// Builds the report of a session.
pub fn build_report(cfg: &SessionConfig, r: &SessionResult, arguments: Vec<String>) -> Report {
    let title = format!(
        "Browser ACIP client: {}x{} at {} fps for {:?} ({}{}), {}",
        cfg.frame.0,
        cfg.frame.1,
        cfg.fps,
        cfg.duration,
        cfg.dialect,
        if cfg.encrypt { ", encrypted" } else { "" },
        if cfg.target.is_some() { r.target.clone() } else { "embedded reference server".into() }
    );
    let mut rep = Report::new("browser", title, arguments, 0);
    rep.started_unix_us =
        r.started.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
    rep.duration_s = r.window().as_secs_f64();
    let s = &mut rep.settings;
    s.insert("target".into(), r.target.clone());
    s.insert("dialect".into(), cfg.dialect.to_string());
    s.insert("frame".into(), format!("{}x{}", cfg.frame.0, cfg.frame.1));
    s.insert("fps".into(), cfg.fps.to_string());
    s.insert("duration".into(), format!("{:?}", cfg.duration));
    s.insert("ascii".into(), format!("{}x{}", cfg.ascii.0, cfg.ascii.1));
    s.insert("tap".into(), cfg.tap.to_string());
    s.insert("encrypt".into(), cfg.encrypt.to_string());
    s.insert("session_encrypted".into(), r.page.encrypted.to_string());
    s.insert("faults".into(), cfg.faults.join(","));
    s.insert("browser".into(), r.browser_version.clone());

    let image = r.image_messages(cfg);
    let no_tap =
        if cfg.tap { "no IMAGE_FRAME message passed the tap" } else { "run without the tap (--no-tap)" };
    for (name, side, desc, h) in analyze::histograms(&r.page, &image) {
        let absent = match (side, name) {
            ("tap", _) => no_tap,
            (_, "browser_encrypt") if !cfg.encrypt => "plaintext session (without --encrypt)",
            _ => "no samples",
        };
        rep.stages.push(analyze::stage(name, side, desc, &h, absent));
    }
    for (name, stage, desc) in [
        (
            "server_assembly",
            acip::stats::Stage::ServerAssembly,
            "server: first byte or WebSocket fragment of a packet to its last",
        ),
        (
            "server_fragment_gap",
            acip::stats::Stage::FragmentGap,
            "server: gap between consecutive WebSocket fragments of one message (feb dialect)",
        ),
        (
            "server_queue_wait",
            acip::stats::Stage::ServerQueueWait,
            "server: time a decoded packet waited in the receive queue",
        ),
        (
            "end_to_end",
            acip::stats::Stage::EndToEnd,
            "intended send time (embedded in the frame by the page) to the server's handler",
        ),
        (
            "server_ascii_interval",
            acip::stats::Stage::AsciiInterval,
            "server: interval between ASCII_FRAMEs sent to the page",
        ),
    ] {
        let h = r.server.as_ref().and_then(|v| v.stages.get(stage).cloned());
        let absent = if r.server.is_some() {
            "no samples"
        } else {
            "only the embedded reference server measures this"
        };
        rep.stages.push(match h {
            Some(h) => analyze::stage(name, "server", desc, &h, absent),
            None => StageReport {
                name: name.into(),
                side: "server".into(),
                description: desc.into(),
                histogram: None,
                absent: Some(absent.into()),
            },
        });
    }

    let c = &mut rep.counters;
    c.insert("page_frames_sent".into(), r.page.frames.len() as u64);
    c.insert("page_frames_skipped_backpressure".into(), r.page.skipped_backpressure);
    c.insert("page_max_buffered_bytes".into(), r.page.max_buffered as u64);
    c.insert("page_ascii_frames".into(), r.page.ascii_frames);
    c.insert("page_ascii_checksum_bad".into(), r.page.ascii_checksum_bad);
    c.insert("page_pings_sent".into(), r.page.pings_sent);
    c.insert("page_pongs".into(), r.page.ping_rtt_ms.len() as u64);
    c.insert("page_encrypted_packets_received".into(), r.page.encrypted_received);
    c.insert("page_decrypt_failed".into(), r.page.decrypt_failed);
    c.insert("page_rekey_ignored".into(), r.page.rekey_ignored);
    c.insert("tap_image_messages".into(), image.len() as u64);
    c.insert("tap_image_fragments".into(), image.iter().map(|m| m.fragments.len() as u64).sum());
    if let Some(v) = &r.server {
        let k = &v.stats.counters;
        c.insert("server_frames_received".into(), k.frames_received);
        c.insert("server_frames_corrupt".into(), k.frames_corrupt);
        c.insert("server_frames_lost".into(), k.frames_lost);
        c.insert("server_frames_reordered".into(), k.frames_reordered);
        c.insert("server_frames_at_window_end".into(), v.frames_at_window_end);
        for (kind, n) in &k.errors {
            rep.errors.insert(kind.clone(), *n);
        }
    }
    if let Some(e) = &r.page.error {
        rep.errors.insert("page".into(), 1);
        rep.notes.push(format!("page: {e}"));
    }
    if r.page.encrypted {
        rep.notes.push(format!(
            "session encrypted: the page completed the WebSocket crypto handshake in {:.1} ms ({} key{}) and \
             sent every packet after it as ENCRYPTED (XSalsa20-Poly1305, libsodium.js); it opened {} ENCRYPTED \
             packets from the server{}",
            r.page.handshake_ms.unwrap_or_default(),
            match cfg.dialect {
                acip::Dialect::Feb => "feb: HSalsa20(X25519)",
                acip::Dialect::Head => "head: raw X25519",
            },
            r.page.server_identity.as_ref().map_or(String::new(), |id| format!(", server identity {id}")),
            r.page.encrypted_received,
            if r.page.plain_received_after_handshake > 0 {
                format!(" and accepted {} plain ones", r.page.plain_received_after_handshake)
            } else {
                String::new()
            },
        ));
    } else if cfg.encrypt {
        rep.notes.push("--encrypt: the page did not complete the crypto handshake".into());
    }
    for e in &r.page.decrypt_errors {
        rep.notes.push(format!("page could not open an ENCRYPTED packet: {e}"));
    }
    if r.page.handshake_offered && !cfg.encrypt {
        rep.notes.push(if r.page.ascii_frames > 0 {
            "the server offered a crypto handshake (CRYPTO_PARAMETERS / KEY_EXCHANGE_INIT) and accepted the \
             plaintext session the page went on with"
                .to_string()
        } else {
            "the server opened a crypto handshake (CRYPTO_PARAMETERS / KEY_EXCHANGE_INIT) and sent no ASCII \
             frame: it may require encryption (try --encrypt)"
                .to_string()
        });
    }
    for (t, n) in &r.page.packets_by_type {
        rep.counters.insert(format!("page_received_type_{t}"), *n);
    }
    for e in &r.page.server_errors {
        rep.notes.push(format!("server said: {e}"));
    }

    let fmt_fps = |x: Option<f64>| x.map_or("-".to_string(), |f| format!("{f:.1}"));
    let ascii_fps = (r.page.ascii_at_ms.len() > 1).then(|| {
        let a = &r.page.ascii_at_ms;
        (a.len() - 1) as f64 / ((a[a.len() - 1] - a[0]) / 1000.0).max(1e-3)
    });
    rep.tables.push(Table {
        title: "Frame rates".into(),
        columns: vec!["figure".into(), "fps".into(), "how".into()],
        rows: vec![
            vec!["requested".into(), cfg.fps.to_string(), "--fps".into()],
            vec![
                "sent by the page".into(),
                format!("{:.1}", r.sent_fps()),
                "frames handed to WebSocket.send / window".into(),
            ],
            vec![
                "delivered".into(),
                fmt_fps(r.delivered_fps()),
                if r.server.is_some() {
                    "frames the server had validated at the end of the window / window".into()
                } else {
                    "IMAGE_FRAME messages through the tap at the end of the window / window".into()
                },
            ],
            vec![
                "ASCII received by the page".into(),
                fmt_fps(ascii_fps),
                "ASCII_FRAMEs received / their span".into(),
            ],
        ],
    });
    rep.tables.extend(analyze::fragment_tables(&image));
    if let Some(view) = &r.capture {
        capture::add_to_report(&mut rep, view, r.window().as_secs_f64());
    }

    let mut reasons = Vec::new();
    if let Some(e) = &r.page.error {
        reasons.push(format!("page: {e}"));
    }
    if r.page.frames.is_empty() {
        reasons.push("the page sent no IMAGE_FRAME".into());
    }
    if cfg.encrypt && !r.page.encrypted {
        reasons.push("--encrypt: the session was not encrypted".into());
    }
    if r.page.decrypt_failed > 0 {
        reasons.push(format!("the page could not open {} ENCRYPTED packets", r.page.decrypt_failed));
    }
    if let Some(v) = &r.server {
        let k = &v.stats.counters;
        if k.frames_received == 0 {
            reasons.push("the server validated no frame".into());
        }
        if cfg.encrypt && k.packets_rx.get("ENCRYPTED").copied().unwrap_or(0) == 0 {
            reasons.push("--encrypt: the server received no ENCRYPTED packet".into());
        }
        if k.frames_corrupt > 0 {
            reasons.push(format!("the server found {} corrupt frames", k.frames_corrupt));
        }
        if r.page.ascii_frames == 0 {
            reasons.push("the page received no ASCII_FRAME".into());
        }
    }
    if r.page.ascii_checksum_bad > 0 {
        reasons.push(format!("{} ASCII_FRAMEs with a bad checksum", r.page.ascii_checksum_bad));
    }
    rep.verdict = Verdict::from_reasons(reasons);
    rep
}

/// The figures a person wants on the terminal.
pub fn summary_lines(cfg: &SessionConfig, r: &SessionResult) -> Vec<String> {
    let image = r.image_messages(cfg);
    let mut out = vec![format!(
        "page sent {} frames ({:.1} fps, {} skipped under back-pressure), received {} ASCII frames",
        r.page.frames.len(),
        r.sent_fps(),
        r.page.skipped_backpressure,
        r.page.ascii_frames
    )];
    if r.page.encrypted {
        let enc = analyze::histogram_of(
            r.page
                .frames
                .iter()
                .filter_map(|f| f.sealed_ms.map(|s| ((s - f.built_ms).max(0.0) * 1000.0).round() as u64)),
        );
        out.push(format!(
            "encrypted session: handshake {:.1} ms; page encrypt time per frame p50 {:.2} ms, p99 {:.2} ms; \
             {} ENCRYPTED packets opened, {} failed",
            r.page.handshake_ms.unwrap_or_default(),
            enc.value_at_quantile(0.5) as f64 / 1000.0,
            enc.value_at_quantile(0.99) as f64 / 1000.0,
            r.page.encrypted_received,
            r.page.decrypt_failed
        ));
    }
    if let Some(v) = &r.server {
        let k = &v.stats.counters;
        out.push(format!(
            "server validated {} frames ({} corrupt, {} lost); delivered {:.1} fps",
            k.frames_received,
            k.frames_corrupt,
            k.frames_lost,
            r.delivered_fps().unwrap_or(0.0)
        ));
    } else if let Some(f) = r.delivered_fps() {
        out.push(format!("IMAGE_FRAME messages through the tap: {f:.1} fps"));
    }
    if !image.is_empty() {
        let sizes = analyze::size_buckets(image.iter().flat_map(|m| m.fragments.iter().copied()));
        let shown: Vec<_> = sizes.iter().filter(|(_, c)| *c > 0).map(|(l, c)| format!("{l}: {c}")).collect();
        out.push(format!("browser frame sizes ({} messages): {}", image.len(), shown.join(", ")));
    }
    if let Some(view) = &r.capture {
        out.extend(capture::summary_lines(view));
    }
    out
}

pub fn run(args: Args) -> crate::Result<ExitCode> {
    let target = match &args.target {
        Some(t) => Some(t.parse::<TargetUrl>().map_err(|e| crate::Error::Usage(format!("--target: {e}")))?),
        None => None,
    };
    if target.is_some() && !args.faults.is_empty() {
        return Err(crate::Error::Usage(
            "--fault applies to the embedded server only (not with --target)".into(),
        ));
    }
    let cfg = SessionConfig {
        target,
        dialect: args.dialect,
        frame: args.frame,
        fps: args.fps,
        duration: args.duration,
        ascii: args.ascii,
        faults: args.faults.clone(),
        encrypt: args.encrypt,
        tap: !args.no_tap,
        capture: args.capture.clone(),
        screenshot: args.screenshot,
        tag: 0xB0B0,
    };
    let out = args.out.clone().unwrap_or_else(|| crate::paths::default_out_dir("browser", None));
    let rt = tokio::runtime::Runtime::new().map_err(|e| crate::Error::io("starting the runtime", e))?;
    let result = rt.block_on(run_session(&cfg)).map_err(|e| match e {
        SessionError::Usage(m) => crate::Error::Usage(m),
        // Exit 2, like any other precondition of the command line that is not met.
        e @ SessionError::Sodium(_) => crate::Error::Usage(e.to_string()),
        SessionError::Io { context, source } => crate::Error::io(context, source),
        other => crate::Error::Verdict(other.to_string()),
    })?;
    let arguments: Vec<String> = std::env::args().collect();
    let mut report = build_report(&cfg, &result, arguments);
    std::fs::create_dir_all(&out).map_err(|e| crate::Error::io(format!("creating {}", out.display()), e))?;
    write_hlog(&out, &cfg, &result)?;
    report.hlog_files.push("stages.hlog".into());
    crate::report::write_dir(&out, &report)?;
    if let Some(view) = &result.capture {
        capture::write_json(&out, view)?;
    }
    if let Some(png) = &result.screenshot {
        std::fs::write(out.join("page.png"), png)
            .map_err(|e| crate::Error::io(format!("writing {}", out.join("page.png").display()), e))?;
    }
    for line in summary_lines(&cfg, &result) {
        println!("{line}");
    }
    println!("{}: report in {}", report.verdict.outcome(), out.display());
    if report.verdict.passed {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(crate::Error::Verdict(report.verdict.reasons.join("; ")))
    }
}

/// stages.hlog: one interval per stage covering the run.
fn write_hlog(dir: &std::path::Path, cfg: &SessionConfig, r: &SessionResult) -> crate::Result<()> {
    let path = dir.join("stages.hlog");
    let io = |e| crate::Error::io(format!("writing {}", path.display()), e);
    let mut w =
        crate::report::hlog::HlogWriter::create(&path, r.started, &[format!("harness browser {}", r.target)])
            .map_err(io)?;
    let image = r.image_messages(cfg);
    for (name, _, _, h) in analyze::histograms(&r.page, &image) {
        if !h.is_empty() {
            w.write(name, Duration::ZERO, r.window(), &h).map_err(io)?;
        }
    }
    if let Some(v) = &r.server {
        for &stage in acip::stats::Stage::ALL {
            if let Some(h) = v.stages.get(stage).filter(|h| !h.is_empty()) {
                w.write(&format!("server_{}", stage.name()), Duration::ZERO, r.window(), h).map_err(io)?;
            }
        }
    }
    w.finish().map_err(io)
}
