//! From a soak's raw records to its [`Report`]: stages, counters, the verdict and the load assessment. A
//! pure function (no sockets, no clock), so verdicts are tested on hand-made records.

use std::collections::BTreeMap;
use std::time::Duration;

use acip::stats::Counters;
use hdrhistogram::Histogram;
use reference_client::ClientReport;

use super::{load, raw_tcp, schedule, Args, Transport};
use crate::report::{HistogramSummary, Ratio, Report, Series, StageReport, Verdict};
use acip::stats::{StageRow, REPORT_STAGES as STAGES};

/// How long to wait for the server to release every slot after the clients closed.
pub const SLOT_RELEASE_LIMIT: Duration = Duration::from_secs(5);
/// Wire size of one IMAGE_FRAME packet: 22-byte header, 24-byte IMAGE_FRAME header, RGB24 pixels.
pub fn wire_frame_bytes(args: &Args) -> usize {
    acip::codec::HEADER_LEN + 24 + args.frame.0 as usize * args.frame.1 as usize * 3
}

/// The server's state after every client closed (embedded server only).
#[derive(Debug, Clone, Default)]
pub struct ServerEnd {
    pub counters: Counters,
    pub slots_in_use: u64,
    /// Why its shutdown failed, if it did.
    pub failure: Option<String>,
}

/// Everything a soak measured, before any judgement.
#[derive(Debug, Default)]
pub struct Records {
    /// From the first scheduled send to the end of the drain.
    pub duration: Duration,
    /// Cumulative histograms by report stage name.
    pub totals: BTreeMap<String, Histogram<u64>>,
    pub baseline: Option<raw_tcp::RawTcpResult>,
    pub frames_sent: u64,
    pub frames_unsent: u64,
    /// Frames sent by the end of the schedule (the rest went out late, in the drain).
    pub sent_in_schedule: u64,
    pub ascii_frames: u64,
    pub reconnects: u64,
    pub recoveries: u64,
    /// Errors by kind, and example messages.
    pub errors: BTreeMap<String, u64>,
    pub error_examples: BTreeMap<String, Vec<String>>,
    pub client_reports: Vec<ClientReport>,
    pub server: Option<ServerEnd>,
    pub series: Vec<Series>,
    pub peak_rss_bytes: Option<u64>,
}

/// Turns the records into the report (whose header, settings and notes the caller started).
pub fn assemble(mut report: Report, records: Records, args: &Args) -> Report {
    let Records {
        duration,
        totals,
        baseline,
        frames_sent,
        frames_unsent,
        sent_in_schedule,
        ascii_frames,
        reconnects,
        recoveries,
        errors,
        error_examples: examples,
        client_reports,
        server,
        series,
        peak_rss_bytes,
    } = records;
    report.duration_s = (duration.as_secs_f64() * 1000.0).round() / 1000.0;
    let external = args.target.is_some();
    for &StageRow { name, side, description, .. } in STAGES {
        let histogram = totals.get(name).and_then(HistogramSummary::of);
        let absent = histogram.is_none().then(|| absent_reason(name, side, args, external));
        if name == "raw_tcp_end_to_end" && baseline.is_none() {
            continue;
        }
        report.stages.push(StageReport {
            name: name.into(),
            side: side.into(),
            description: description.into(),
            histogram,
            absent,
        });
    }

    let mut c = BTreeMap::new();
    c.insert("clients".to_string(), u64::from(args.clients));
    c.insert("frames_scheduled".to_string(), frames_sent + frames_unsent);
    c.insert("frames_sent".to_string(), frames_sent);
    c.insert("frames_unsent".to_string(), frames_unsent);
    c.insert("ascii_frames_received".to_string(), ascii_frames);
    c.insert("reconnects".to_string(), reconnects);
    c.insert("reconnects_after_failure".to_string(), recoveries);
    let client_bytes: u64 = client_reports.iter().map(|r| r.counters.bytes_tx).sum();
    c.insert("client_bytes_sent".to_string(), client_bytes);
    let mut errors = errors;
    for r in &client_reports {
        for (k, v) in &r.counters.errors {
            *errors.entry(format!("client_{k}")).or_default() += v;
        }
    }
    let mut verdict = Vec::new();
    if let Some(s) = &server {
        let k = &s.counters;
        let lost = frames_sent.saturating_sub(k.frames_received + k.frames_corrupt).max(k.frames_lost);
        c.insert("frames_received".to_string(), k.frames_received);
        c.insert("frames_lost".to_string(), lost);
        c.insert("frames_corrupt".to_string(), k.frames_corrupt);
        c.insert("frames_reordered".to_string(), k.frames_reordered);
        c.insert("server_drops".to_string(), k.total_drops());
        c.insert("server_connections_opened".to_string(), k.connections_opened);
        c.insert("server_bytes_received".to_string(), k.bytes_rx);
        for (reason, n) in &k.drops {
            c.insert(format!("server_drops_{reason}"), *n);
        }
        for (kind, n) in &k.errors {
            *errors.entry(format!("server_{kind}")).or_default() += n;
        }
        if lost > 0 {
            verdict.push(format!(
                "{lost} frames lost: {frames_sent} sent, {} received intact by the server",
                k.frames_received
            ));
        }
        if k.frames_corrupt > 0 {
            verdict.push(format!("{} frames arrived corrupt (test-pattern checksum)", k.frames_corrupt));
        }
    }
    if let Some(slots) = server.as_ref().map(|s| s.slots_in_use) {
        c.insert("slots_in_use_end".to_string(), slots);
        if slots > 0 {
            verdict.push(format!(
                "{slots} server slots still in use {} s after every client closed",
                SLOT_RELEASE_LIMIT.as_secs()
            ));
        }
    }
    if let Some(f) = server.as_ref().and_then(|s| s.failure.as_ref()) {
        verdict.push(format!("the server failed: {f}"));
    }
    if frames_unsent > 0 {
        verdict.push(format!("{frames_unsent} scheduled frames were never sent (connection down)"));
    }
    for (kind, n) in &errors {
        let example =
            examples.get(kind).and_then(|v| v.first()).map(|e| format!(" (e.g. {e})")).unwrap_or_default();
        verdict.push(format!("{n} × error {kind}{example}"));
    }
    if let Some(peak) = peak_rss_bytes {
        c.insert("peak_rss_bytes".to_string(), peak);
    }
    report.counters = c;
    report.errors = errors;
    report.series = series;

    if let Some(b) = &baseline {
        add_baseline(&mut report, b, args);
    }
    report.counters.insert("frames_sent_in_schedule".to_string(), sent_in_schedule);
    let p = |name: &str, q: fn(&crate::report::Percentiles) -> u64| {
        report.stage(name).and_then(|s| s.histogram.as_ref()).map(|h| q(&h.percentiles_us))
    };
    let fps = f64::from(args.fps);
    let limits = load::BehindLimits {
        fps_ratio: args.behind_fps_ratio,
        lag_p99: args.behind_lag_p99.unwrap_or_else(|| schedule::period(fps)),
    };
    let send_lag_p99 = p("send_lag", |p| p.p99);
    let ascii_p50 = p("ascii_interval", |p| p.p50);
    let load =
        load::assess(fps, sent_in_schedule, args.clients, args.duration, send_lag_p99, ascii_p50, limits);
    if let Some(why) = &load.behind {
        report.notes.push(format!(
            "{why}: this machine did not sustain {} clients × {}x{} × {} fps here, and end-to-end latencies \
             include the wait behind the schedule (coordinated omission corrected)",
            args.clients, args.frame.0, args.frame.1, args.fps
        ));
    }
    let behind = load.behind.clone().filter(|_| !args.allow_behind);
    report.load = Some(load);
    if cfg!(debug_assertions) {
        report.notes.push("debug build: latencies are not representative (use --release)".into());
    }
    report.verdict = Verdict::from_reasons(verdict);
    report.verdict.behind = behind;
    report
}

fn add_baseline(report: &mut Report, b: &raw_tcp::RawTcpResult, args: &Args) {
    let raw = |q: f64| b.end_to_end.value_at_quantile(q) as f64;
    if let Some(e2e) = report.stage("end_to_end").and_then(|s| s.histogram.clone()) {
        let p = e2e.percentiles_us;
        report.ratios.push(Ratio::new("end_to_end p50 / raw-tcp p50", p.p50 as f64, raw(0.5)));
        report.ratios.push(Ratio::new("end_to_end p99 / raw-tcp p99", p.p99 as f64, raw(0.99)));
    }
    let secs = report.duration_s.max(1e-9);
    let acip_fps = report.counters.get("frames_received").copied().unwrap_or(0) as f64 / secs;
    let raw_fps = b.frames_received as f64 / b.elapsed.as_secs_f64().max(1e-9);
    report.ratios.push(Ratio::new("delivered frames/s: ACIP / raw-tcp", acip_fps.round(), raw_fps.round()));
    report.counters.insert("raw_tcp_frames_sent".into(), b.frames_sent);
    report.counters.insert("raw_tcp_frames_received".into(), b.frames_received);
    report.counters.insert("raw_tcp_bytes_received".into(), b.bytes_received);
    report.notes.push(format!(
        "raw-TCP baseline: {} clients × {} bytes × {} fps over plain TCP on loopback, run after the soak \
         for the same duration and schedule",
        args.clients,
        wire_frame_bytes(args),
        args.fps
    ));
}

fn absent_reason(name: &str, side: &str, args: &Args, external: bool) -> String {
    if (side == "server" || name == "end_to_end") && external {
        return "external target: only the server can measure this".into();
    }
    match name {
        "client_encrypt" | "server_decrypt" if !args.encrypt => "plaintext run (no --encrypt)".into(),
        "fragment_gap" if args.ws_fragment.is_none() => "no fragmented messages (see --ws-fragment)".into(),
        "fragment_gap" | "server_assembly" if args.transport == Transport::Tcp && args.target.is_none() => {
            "TCP transport: no WebSocket fragments".into()
        }
        _ => "no samples in this run".into(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let argv = ["soak", "--clients", "2", "--fps", "10", "--duration", "10s"];
        Cli::parse_from(argv.iter().chain(extra)).args
    }

    /// A clean embedded-server run: 2 clients x 10 fps x 10 s, every frame sent on time and received.
    fn clean() -> Records {
        let mut lag = Histogram::<u64>::new(3).unwrap();
        lag.record(500).unwrap();
        let mut totals = BTreeMap::new();
        totals.insert("send_lag".to_string(), lag);
        let counters = Counters { frames_received: 200, ..Counters::default() };
        Records {
            duration: Duration::from_secs(10),
            totals,
            frames_sent: 200,
            sent_in_schedule: 200,
            server: Some(ServerEnd { counters, ..ServerEnd::default() }),
            ..Records::default()
        }
    }

    fn report() -> Report {
        Report::new("soak", "t", vec![], 1)
    }

    #[test]
    fn a_clean_run_passes() {
        let r = assemble(report(), clean(), &args(&[]));
        assert_eq!(r.verdict.outcome(), "PASS", "{:?}", r.verdict);
        assert_eq!(r.counters["frames_lost"], 0);
        assert_eq!(r.load.as_ref().map(|l| l.achieved_fps), Some(10.0));
    }

    #[test]
    fn lost_frames_leaked_slots_and_errors_fail_with_their_reasons() {
        let mut rec = clean();
        let server = rec.server.as_mut().unwrap();
        server.counters.frames_received = 190;
        server.slots_in_use = 3;
        rec.errors.insert("client_io".into(), 2);
        let r = assemble(report(), rec, &args(&[]));
        assert_eq!(r.verdict.outcome(), "FAIL");
        let reasons = r.verdict.reasons.join("\n");
        assert!(reasons.contains("10 frames lost: 200 sent, 190 received"), "{reasons}");
        assert!(reasons.contains("3 server slots still in use"), "{reasons}");
        assert!(reasons.contains("2 × error client_io"), "{reasons}");
    }

    #[test]
    fn a_late_schedule_is_behind_unless_allowed() {
        let mut rec = clean();
        rec.sent_in_schedule = 150; // 7.5 fps of 10
        let r = assemble(report(), rec, &args(&[]));
        assert_eq!(r.verdict.outcome(), "BEHIND");
        assert!(r.verdict.behind.as_deref().unwrap_or_default().contains("7.50 fps per client"));
        let mut rec = clean();
        rec.sent_in_schedule = 150;
        let r = assemble(report(), rec, &args(&["--allow-behind"]));
        assert_eq!(r.verdict.outcome(), "PASS");
        assert!(r.notes.iter().any(|n| n.contains("fell behind")), "{:?}", r.notes);
    }
}
