//! `stall`: the ~30 ms stalls of ACIP-SPEC.md 8 (`notes/BUG_REPORT_FRAME_LOSS.md`: a 921 KB browser frame
//! arrived in 131 KB batches ~30 ms apart, 188 ms per frame, ~4 fps), in two parts:
//!
//! - (a) the classic write-write-read stall on TCP: a 22-byte header and the payload in two more small
//!   writes, then a blocking read of the reply. With Nagle on, the later writes wait for the ACK of the
//!   first, which the receiver delays (Linux: ~40 ms) because it has nothing to send until it has the
//!   whole request. TCP_NODELAY (what ascii-chat sets, 6.1/6.2) removes it. Real loopback sockets,
//!   blocking std I/O on threads so tokio's scheduling does not blur the figures.
//! - (b) 921,646-byte IMAGE_FRAMEs at 30 fps over WebSocket (131,072-byte fragments) against the
//!   reference server with `rx_pause` and without. The fault paces the server's reader as lws rx flow
//!   control did: at most `RX_PAUSE_BATCH` (131,072) bytes per read batch, then `RX_PAUSE_INTERVAL`
//!   (30 ms) without reading. A 921 KB frame then spans ~7 batches, so it takes ~210-220 ms from first
//!   to last byte and delivery collapses to ~4-5 fps (the reader drains ~4.4 MB/s whatever the sender
//!   offers); without the fault the same stream is delivered at ~30 fps. The verdict grades delivered
//!   fps and server assembly time per frame; the table also shows fragment gaps, queue wait, scheduled
//!   send to handler (from the send time embedded in each frame) and the client's write time (the
//!   back-pressure the sender sees). Quick mode (`cargo test`) uses 230,446-byte frames: ~1.8 batches per
//!   frame, so the broken side is capped near 19 fps and each frame waits 30-60 ms.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use acip::Dialect;
use hdrhistogram::Histogram;
use reference_client::{Client, ClientConfig, Target};

use super::{ms, server_config, settle, shutdown_within, Options, Outcome, Row, Scenario, SETTLE};

/// The request of (a): header, then the payload in two writes.
const HEADER: usize = 22;
const PAYLOAD: (usize, usize) = (50, 50);
/// The reply of (a).
const REPLY: usize = 22;
/// A round trip slower than this is the delayed-ACK stall (Linux's minimum delayed ACK is 40 ms).
pub const STALL_FLOOR_US: u64 = 20_000;
/// Socket timeouts of (a): a lost reply is an error, not a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Round trips of `iters` write-write-read requests, in microseconds.
pub fn write_write_read(nodelay: bool, iters: usize) -> std::io::Result<Histogram<u64>> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut req = vec![0u8; HEADER + PAYLOAD.0 + PAYLOAD.1];
        loop {
            match s.read_exact(&mut req) {
                Ok(()) => s.write_all(&[0x5a; REPLY])?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(nodelay)?;
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut h = Histogram::<u64>::new(3).map_err(|e| std::io::Error::other(e.to_string()))?;
    let (header, p1, p2) = ([0xa5u8; HEADER], [1u8; PAYLOAD.0], [2u8; PAYLOAD.1]);
    let mut reply = [0u8; REPLY];
    // Two warm-up rounds: the first exchanges of a connection run in quick-ACK mode.
    for i in 0..iters + 2 {
        let t0 = Instant::now();
        c.write_all(&header)?;
        c.write_all(&p1)?;
        c.write_all(&p2)?;
        c.read_exact(&mut reply)?;
        if i >= 2 {
            let _ = h.record(t0.elapsed().as_micros() as u64);
        }
    }
    drop(c);
    server.join().map_err(|_| std::io::Error::other("server thread panicked"))??;
    Ok(h)
}

/// What (b) measured on one server.
struct Streamed {
    sent: u64,
    received: u64,
    window: Duration,
    assembly: Option<acip::stats::StageSummary>,
    gaps: Option<acip::stats::StageSummary>,
    queue: Option<acip::stats::StageSummary>,
    /// Scheduled send time (embedded in the frame) to the server's handler.
    end_to_end: Option<acip::stats::StageSummary>,
    /// The sender's side: time to write one frame's fragments (back-pressure shows here).
    client_write: Option<acip::stats::StageSummary>,
}

impl Streamed {
    fn fps(&self) -> f64 {
        self.received as f64 / self.window.as_secs_f64().max(1e-3)
    }
}

/// Streams 640x480 frames at 30 fps for `window`; delivered fps = frames the server had whole at the
/// end of the window / window.
async fn stream_big(
    rx_pause: bool,
    frame: (u16, u16),
    window: Duration,
    seed: u64,
) -> Result<Streamed, String> {
    let mut cfg = server_config(seed);
    cfg.faults.rx_pause = rx_pause;
    let srv = reference_server::start(cfg).await.map_err(|e| e.to_string())?;
    let ccfg = ClientConfig {
        dialect: Dialect::Feb,
        encrypt: false,
        frame,
        fps: 30,
        ws_fragment: Some(131_072),
        seed,
        ..ClientConfig::new(Target::ws(srv.ws_addr().expect("ws listener")))
    };
    let res = async {
        let client = Client::connect(&ccfg, None).await.map_err(|e| format!("connect: {e}"))?;
        let start = Instant::now();
        let start_unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let mut sent = 0u64;
        loop {
            let due = start + Duration::from_nanos(sent * 1_000_000_000 / 30);
            // The scheduled send time goes into the frame: the server's end-to-end stage then measures
            // from the schedule to the handler, stalls included (no coordinated omission).
            let intended_us = start_unix_us + (due - start).as_micros() as u64;
            if due >= start + window {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            // A write blocked by back-pressure past the window ends the run: that is the stall.
            match tokio::time::timeout_at((start + window).into(), client.send_frame(sent, intended_us)).await
            {
                Ok(Ok(())) => sent += 1,
                Ok(Err(e)) => return Err(format!("send: {e}")),
                Err(_) => break,
            }
        }
        // One frame period of grace for the frame sent just before the window closed.
        tokio::time::sleep(Duration::from_millis(33)).await;
        let elapsed = window;
        let st = srv.stats();
        let report = client.close().await;
        let client_write =
            report.stages.get(acip::stats::Stage::ClientWrite).map(acip::stats::StageSummary::of);
        Ok(Streamed {
            sent,
            received: st.counters.frames_received,
            window: elapsed,
            assembly: st.stages.get("server_assembly").copied(),
            gaps: st.stages.get("fragment_gap").copied(),
            queue: st.stages.get("server_queue_wait").copied(),
            end_to_end: st.stages.get("end_to_end").copied(),
            client_write,
        })
    }
    .await;
    settle(&srv).await;
    shutdown_within(srv, SETTLE).await;
    res
}

/// Wire size of a `w`x`h` RGB24 IMAGE_FRAME (22-byte header, 24-byte frame header, pixels).
fn pattern_wire_len((w, h): (u16, u16)) -> usize {
    22 + 24 + w as usize * h as usize * 3
}

fn pcts(s: &Option<acip::stats::StageSummary>) -> String {
    s.map_or("-".into(), |s| format!("p50 {} p99 {}", ms(s.p50_us), ms(s.p99_us)))
}

pub async fn run(opts: &Options) -> Outcome {
    let mut o = Outcome::new(Scenario::Stall);
    if opts.target.is_some() {
        o.note("--target ignored: both parts need to control the receiving side");
    }
    let iters = if opts.quick { 20 } else { 200 };
    for nodelay in [false, true] {
        let config = format!(
            "(a) TCP write-write-read x{iters}, {}",
            if nodelay { "TCP_NODELAY" } else { "Nagle on" }
        );
        match tokio::task::spawn_blocking(move || write_write_read(nodelay, iters)).await {
            Ok(Ok(h)) => {
                let (p50, p90, p99) =
                    (h.value_at_quantile(0.5), h.value_at_quantile(0.9), h.value_at_quantile(0.99));
                let side = if nodelay { "nodelay" } else { "nagle" };
                o.figure(&format!("wwr.{side}.p50_us"), p50);
                o.figure(&format!("wwr.{side}.p99_us"), p99);
                let measured = format!("round trip p50 {} p90 {} p99 {}", ms(p50), ms(p90), ms(p99));
                let (expected, ok) = if nodelay {
                    (
                        "sub-ms p50, no delayed-ACK stall (p90 < 40 ms)",
                        p50 < 5_000 && p90 < 2 * STALL_FLOOR_US,
                    )
                } else {
                    ("delayed-ACK stall: p50 tens of ms (>= 20 ms)", p50 >= STALL_FLOOR_US)
                };
                o.row(Row::new(config, measured, expected, ok));
            }
            Ok(Err(e)) => o.row(Row::error(config, e)),
            Err(e) => o.row(Row::error(config, e)),
        }
    }
    let window = if opts.quick { Duration::from_secs(2) } else { Duration::from_secs(10) };
    // Quick (what `cargo test` runs, a debug build on a loaded machine): the captures' 230,446-byte frames,
    // which a debug server sustains at 30 fps; full: the bug report's 921,646-byte frames.
    let frame: (u16, u16) = if opts.quick { (320, 240) } else { (640, 480) };
    let wire = pattern_wire_len(frame);
    // A debug build on a loaded 2-core machine (the quick run of `cargo test`) gets some slack.
    let min_fps = if opts.quick { 24.0 } else { 27.0 };
    // The broken side's ceiling is one RX_PAUSE_BATCH per RX_PAUSE_INTERVAL (~4.4 MB/s): ~4.7 fps of
    // 921 KB frames, ~19 fps of 230 KB frames. Thresholds sit between that and the fixed side's floor.
    let (max_broken_fps, min_broken_assembly_us) = if opts.quick { (20.0, 25_000) } else { (10.0, 100_000) };
    for rx_pause in [true, false] {
        let config = format!(
            "(b) {wire}-byte frames, 30 fps, 131,072-byte fragments, {} s, server {}",
            window.as_secs(),
            if rx_pause { "rx_pause" } else { "without fault" }
        );
        match stream_big(rx_pause, frame, window, opts.seed).await {
            Ok(s) => {
                let fps = s.fps();
                let side = if rx_pause { "rx_pause" } else { "fixed" };
                o.figure(&format!("ws.{side}.frames_sent"), s.sent);
                o.figure(&format!("ws.{side}.frames_received"), s.received);
                o.figure(&format!("ws.{side}.fps_x10"), (fps * 10.0).round() as u64);
                let assembly_p50 = s.assembly.map_or(0, |a| a.p50_us);
                let queue_p50 = s.queue.map_or(0, |a| a.p50_us);
                // No sample at all is no evidence either way: count it as a stall on the fixed side.
                let e2e_p50 = s.end_to_end.map_or(u64::MAX, |a| a.p50_us);
                let measured = format!(
                    "{} sent, {} delivered = {fps:.1} fps; send-to-handler {}; assembly {}; fragment gaps {}; \
                     queue wait {}; client write {}",
                    s.sent,
                    s.received,
                    pcts(&s.end_to_end),
                    pcts(&s.assembly),
                    pcts(&s.gaps),
                    pcts(&s.queue),
                    pcts(&s.client_write)
                );
                o.figure(&format!("ws.{side}.assembly_p50_us"), assembly_p50);
                o.figure(&format!("ws.{side}.fragment_gap_p50_us"), s.gaps.map_or(0, |g| g.p50_us));
                let (expected, ok) = if rx_pause {
                    let expected = if opts.quick {
                        "fps collapse: < 20 fps (ceiling ~19), assembly p50 > 25 ms (1-2 pauses of 30 ms)"
                    } else {
                        "fps collapse: < 10 fps (~4-5, bug report ~4), assembly p50 > 100 ms (~210; report 188)"
                    };
                    (expected, fps < max_broken_fps && assembly_p50 > min_broken_assembly_us)
                } else {
                    (
                        "~30 fps (>= 27; quick >= 24), no hold: send-to-handler, queue wait and assembly p50 < 20 ms",
                        fps >= min_fps
                            && e2e_p50 < STALL_FLOOR_US
                            && queue_p50 < STALL_FLOOR_US
                            && assembly_p50 < STALL_FLOOR_US,
                    )
                };
                if rx_pause && s.gaps.is_some_and(|g| g.p50_us < STALL_FLOOR_US) {
                    o.note(format!(
                        "rx_pause fragment gaps p50 {} below {}: batches of {} bytes should leave ~{} ms \
                         between most 131,072-byte fragments",
                        pcts(&s.gaps),
                        ms(STALL_FLOOR_US),
                        reference_server::RX_PAUSE_BATCH,
                        reference_server::RX_PAUSE_INTERVAL.as_millis()
                    ));
                }
                o.row(Row::new(config, measured, expected, ok));
            }
            Err(e) => o.row(Row::error(config, e)),
        }
    }
    browser_rows(&mut o, frame, window, min_fps, max_broken_fps).await;
    o
}

/// (c) The same stream from a real browser (headless Chromium, its own WebSocket and its own fragmenting),
/// without and with the server's rx_pause: does the browser's fragment pattern alone leave gaps, and what
/// does each side deliver? Without Chromium the rows are left out with a note (the tests install it).
async fn browser_rows(
    o: &mut Outcome,
    frame: (u16, u16),
    window: Duration,
    min_fps: f64,
    max_broken_fps: f64,
) {
    use crate::browser::{analyze, cdp, run_session, SessionConfig};
    if cdp::find_chrome().is_none() {
        o.note("(c) skipped: no Chromium (install Debian's chromium, or set CHROME)");
        return;
    }
    for rx_pause in [false, true] {
        let mut cfg = SessionConfig::embedded(Dialect::Feb, frame, 30, window);
        if rx_pause {
            cfg.faults.push("rx-pause".into());
        }
        let config = format!(
            "(c) headless Chromium, {}-byte frames, 30 fps, its own fragments, {} s, server {}",
            pattern_wire_len(frame),
            window.as_secs(),
            if rx_pause { "rx_pause" } else { "without fault" }
        );
        let r = match run_session(&cfg).await {
            Ok(r) => r,
            Err(e) => {
                o.row(Row::error(config, e));
                continue;
            }
        };
        let fps = r.delivered_fps().unwrap_or(0.0);
        let msgs = r.image_messages(&cfg);
        let per_msg: Vec<usize> = msgs.iter().map(|m| m.fragments.len()).collect();
        let idle =
            analyze::histogram_of(msgs.iter().flat_map(|m| m.idle_gaps().map(|d| d.as_micros() as u64)));
        let tap_gap_p99 = if idle.is_empty() { 0 } else { idle.value_at_quantile(0.99) };
        let stage = |st: acip::stats::Stage| {
            r.server
                .as_ref()
                .and_then(|s| s.stages.get(st))
                .filter(|h| !h.is_empty())
                .map(acip::stats::StageSummary::of)
        };
        let (gaps, assembly) =
            (stage(acip::stats::Stage::FragmentGap), stage(acip::stats::Stage::ServerAssembly));
        let side = if rx_pause { "rx_pause" } else { "fixed" };
        o.figure(&format!("browser.{side}.fps_x10"), (fps * 10.0).round() as u64);
        o.figure(&format!("browser.{side}.frames_sent"), r.page.frames.len() as u64);
        o.figure(&format!("browser.{side}.tap_gap_p99_us"), tap_gap_p99);
        let measured = format!(
            "Chromium {}: {} frames sent, delivered {fps:.1} fps; {}-{} WebSocket frames per message; gaps between \
             the browser's own frames p99 {}; server fragment gaps {}; assembly {}",
            r.browser_version,
            r.page.frames.len(),
            per_msg.iter().min().copied().unwrap_or(0),
            per_msg.iter().max().copied().unwrap_or(0),
            ms(tap_gap_p99),
            pcts(&gaps),
            pcts(&assembly)
        );
        let (expected, ok) = if rx_pause {
            ("the same collapse as our client: delivered fps < the (b) ceiling", fps < max_broken_fps)
        } else {
            (
                "~30 fps (>= 27; quick >= 24), and no ~30 ms gap of the browser's own making (p99 < 20 ms)",
                fps >= min_fps && tap_gap_p99 < STALL_FLOOR_US,
            )
        };
        o.row(Row::new(config, measured, expected, ok));
    }
}
