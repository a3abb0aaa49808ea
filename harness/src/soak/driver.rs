//! The soak itself: connect the clients, send on the fixed schedule (`schedule`), sample the server's
//! statistics and this process's memory once a second, drain, and turn the raw records into a
//! [`Report`]. Each client is one task driving one `reference_client::Client`; the clients' own
//! per-frame timings arrive through a [`ClientObserver`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acip::stats::Stage;
use reference_client::{ClientConfig, ClientEvent, ClientObserver, ClientReport, Target};
use tokio::sync::watch;

use super::embedded::{Embedded, ServerSample};
use super::progress::{Progress, Tick};
use super::schedule::{self, ChurnEvent, Schedule};
use super::{memory, raw_tcp, Args, Baseline};
use crate::report::hlog::IntervalRecorder;
use crate::report::{HistogramSummary, Ratio, Report, Series, StageReport, Verdict};

/// Time between the last client connecting and the common start, so no client begins late.
const START_LEAD: Duration = Duration::from_millis(100);
/// Sampling interval of progress, series and interval logs.
const TICK: Duration = Duration::from_secs(1);
/// How long the drain waits, beyond half the run's duration, for clients that fell behind their
/// schedule to send their last frame and for the server to account for every frame sent.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long to wait for the server to release every slot after the clients closed.
const SLOT_RELEASE_LIMIT: Duration = Duration::from_secs(5);
/// Pause before retrying a failed (re)connect; frames due meanwhile are counted as unsent.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Clients connecting at once during start-up (a server's accept queue is finite).
const CONNECT_CONCURRENCY: usize = 16;
/// Example messages kept per error kind (the counts are complete; the texts are samples).
const ERROR_EXAMPLES: usize = 1;

pub use acip::stats::{StageRow, REPORT_STAGES as STAGES};

/// The report's stage name for a server-side `acip::stats::Stage` (from the one stage table).
fn server_stage_name(s: Stage) -> Option<&'static str> {
    acip::stats::report_stage_of_server(s)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Everything the clients and the ticker share.
struct Live {
    inner: Mutex<LiveInner>,
}

#[derive(Default)]
struct LiveInner {
    rec: Option<IntervalRecorder>,
    frames_sent: u64,
    frames_unsent: u64,
    ascii_frames: u64,
    connected: u64,
    reconnects: u64,
    /// Connects after a failure (a refused connect, a session the server ended), beyond the planned ones.
    recoveries: u64,
    errors: BTreeMap<String, u64>,
    error_examples: BTreeMap<String, Vec<String>>,
}

impl Live {
    fn with<R>(&self, f: impl FnOnce(&mut LiveInner) -> R) -> R {
        f(&mut lock(&self.inner))
    }

    fn record(&self, stage: &str, d: Duration) {
        self.with(|l| {
            if let Some(r) = l.rec.as_mut() {
                r.record(stage, d.as_micros() as u64);
            }
        });
    }

    fn error(&self, kind: &str, text: String) {
        self.with(|l| {
            *l.errors.entry(kind.to_string()).or_default() += 1;
            let ex = l.error_examples.entry(kind.to_string()).or_default();
            if ex.len() < ERROR_EXAMPLES {
                ex.push(text);
            }
        });
    }
}

impl ClientObserver for Live {
    fn on_event(&self, _tag: u32, event: &ClientEvent) {
        match event {
            ClientEvent::FrameSent { build, encrypt, write, .. } => self.with(|l| {
                l.frames_sent += 1;
                if let Some(r) = l.rec.as_mut() {
                    r.record("client_build", build.as_micros() as u64);
                    if !encrypt.is_zero() {
                        r.record("client_encrypt", encrypt.as_micros() as u64);
                    }
                    r.record("client_write_flush", write.as_micros() as u64);
                }
            }),
            ClientEvent::AsciiFrame { interval, .. } => self.with(|l| {
                l.ascii_frames += 1;
                if let (Some(r), Some(i)) = (l.rec.as_mut(), interval) {
                    r.record("ascii_interval", i.as_micros() as u64);
                }
            }),
            ClientEvent::Pong { rtt: Some(rtt) } => self.record("ping_rtt", *rtt),
            ClientEvent::Connected { handshake, .. } => self.with(|l| {
                l.connected += 1;
                if let Some(r) = l.rec.as_mut() {
                    r.record("handshake", handshake.as_micros() as u64);
                }
            }),
            ClientEvent::Invalid { kind, detail } => self.error(&format!("client_rx_{kind}"), detail.clone()),
            ClientEvent::ErrorMessage { code, message } => {
                self.error("server_error_message", format!("ERROR_MESSAGE {code}: {message}"))
            }
            ClientEvent::Closed(_) => self.with(|l| l.connected = l.connected.saturating_sub(1)),
            _ => {}
        }
    }
}

/// Everything about the run the report needs beyond the records.
pub struct RunSetup {
    pub seed: u64,
    pub argv: Vec<String>,
    pub out: std::path::PathBuf,
    pub progress: Progress,
}

/// Runs a soak and returns its report (already containing the verdict). Writes the `.hlog` into
/// `setup.out` (which must exist).
pub async fn soak(args: &Args, setup: &RunSetup) -> crate::Result<Report> {
    let seed = setup.seed;
    let mut report = Report::new("soak", title(args), setup.argv.clone(), seed);
    report.settings = settings(args, seed);

    // The server: embedded on loopback, or the given target.
    let (server, target) = match &args.target {
        Some(url) => {
            let t: Target = url.parse().map_err(|e| crate::Error::Usage(format!("--target {url}: {e}")))?;
            crate::probe::probe(url, t.addr())?;
            report.notes.push(format!(
                "external target {t}: server-side stages, frame loss and slot accounting are measured only \
                 by the embedded server and are absent"
            ));
            (None, t)
        }
        None => {
            let e = Embedded::start(args).await?;
            let t = e.target(args.transport);
            (Some(e), t)
        }
    };
    report.settings.insert("target".into(), target.to_string());

    let mut cfg = ClientConfig::new(target.clone());
    cfg.dialect = args.dialect.into();
    cfg.encrypt = args.encrypt;
    cfg.frame = args.frame;
    cfg.fps = args.fps;
    cfg.ws_fragment = args.ws_fragment;
    cfg.seed = seed;
    cfg.validate().map_err(|e| crate::Error::Usage(e.to_string()))?;
    let creds = reference_client::Credentials::load(&cfg)
        .await
        .map_err(|e| crate::Error::Usage(format!("client credentials: {e}")))?;

    // The interval log's BaseTime: its interval timestamps are seconds since this instant.
    let (started, started_wall) = (Instant::now(), SystemTime::now());
    report.started_unix_us = unix_us(started_wall);
    let hlog_name = "stages.hlog";
    let hlog = crate::report::hlog::HlogWriter::create(
        &setup.out.join(hlog_name),
        started_wall,
        &[format!("harness soak seed={seed} {}", setup.argv.join(" "))],
    )
    .map_err(|e| crate::Error::io("creating stages.hlog", e))?;
    report.hlog_files.push(hlog_name.into());

    let live = Arc::new(Live {
        inner: Mutex::new(LiveInner { rec: Some(IntervalRecorder::new(Some(hlog))), ..LiveInner::default() }),
    });
    let observer: reference_client::SharedObserver = live.clone();

    // Connect every client first (bounded concurrency), then start the common schedule.
    let period = schedule::period(f64::from(args.fps));
    let schedules = schedule::schedules(seed, args.clients, period);
    let churn = schedule::churn_plan(seed, args.clients, args.duration, args.churn);
    let mut clients = Vec::with_capacity(args.clients as usize);
    for chunk_start in (0..args.clients).step_by(CONNECT_CONCURRENCY) {
        let chunk_end = (chunk_start + CONNECT_CONCURRENCY as u32).min(args.clients);
        let mut pending = Vec::new();
        for i in chunk_start..chunk_end {
            let c = client_config(&cfg, i, 0);
            let (creds, obs) = (creds.clone(), observer.clone());
            pending.push(tokio::spawn(async move {
                reference_client::Client::connect_with(&c, &creds, Some(obs)).await
            }));
        }
        for p in pending {
            clients.push(match p.await {
                Ok(Ok(c)) => Some(c),
                Ok(Err(e)) => {
                    live.error(&format!("connect_{}", e.kind()), e.to_string());
                    None
                }
                Err(e) => {
                    live.error("connect_task", e.to_string());
                    None
                }
            });
        }
    }

    let t0 = Instant::now() + START_LEAD;
    let t0_unix_us = unix_us(SystemTime::now()) + START_LEAD.as_micros() as u64;
    let (close_tx, close_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(clients.len());
    for (i, client) in clients.into_iter().enumerate() {
        let mine: Vec<Duration> =
            churn.iter().filter(|e: &&ChurnEvent| e.client == i as u32).map(|e| e.at).collect();
        let job = ClientJob {
            index: i as u32,
            config: cfg.clone(),
            creds: creds.clone(),
            observer: observer.clone(),
            live: live.clone(),
            schedule: schedules[i],
            churn: mine,
            t0,
            t0_unix_us,
            duration: args.duration,
            close: close_rx.clone(),
        };
        tasks.push(job.run(client));
    }

    // Sample once a second until the schedule ends.
    let mut series = SeriesSet::default();
    let mut last = (0u64, 0u64, 0u64); // frames sent, frames received by the server, ASCII frames
    let mut ticks = tokio::time::interval_at((t0 + TICK).into(), TICK);
    loop {
        ticks.tick().await;
        let elapsed = t0.elapsed();
        let sample = server.as_ref().map(Embedded::sample);
        let t = sample_tick(&live, sample.as_ref(), elapsed, started.elapsed(), &mut last, &mut series)?;
        setup.progress.tick(&t);
        if elapsed >= args.duration {
            break;
        }
    }
    // What the clients managed to send within their schedule (the rest went out late, in the drain).
    let sent_in_schedule = live.with(|l| l.frames_sent);

    // Drain: wait for the clients to finish their schedules and the server to see every frame sent.
    let drain_start = Instant::now();
    let drain_limit = DRAIN_LIMIT + args.duration / 2;
    let all_sent = async {
        for t in &tasks {
            // Err: the task ended without saying so (it panicked); its join below reports that.
            let _ = t.done.clone().wait_for(|d| *d).await;
        }
    };
    if tokio::time::timeout(drain_limit, all_sent).await.is_err() {
        live.error(
            "drain_timeout",
            format!("clients still sending {drain_limit:?} after the schedule ended"),
        );
    }
    if let Some(s) = &server {
        let sent = live.with(|l| l.frames_sent);
        while s.sample().counters.frames_received + s.sample().counters.frames_corrupt < sent
            && drain_start.elapsed() < drain_limit
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _ = close_tx.send(true);
    let mut client_reports = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        // A client still inside its schedule after the drain limit is blocked in a write the server does
        // not drain (the real HEAD server stops reading a connection it rejected but keeps it open): joining
        // it would wait forever, so it is abandoned and counted. Aborting a finished task changes nothing.
        if !*t.done.borrow() {
            t.handle.abort();
        }
        match t.handle.await {
            Ok(reports) => client_reports.extend(reports),
            Err(e) if e.is_cancelled() => live.error(
                "client_stuck",
                format!(
                    "client {i} still blocked in a write {drain_limit:?} after the schedule ended; abandoned"
                ),
            ),
            Err(e) => live.error("client_task_panicked", e.to_string()),
        }
    }
    let duration = t0.elapsed();

    // Server's final state: every slot released?
    let (final_sample, slots_end, server_failure) = match server {
        Some(s) => {
            let limit = Instant::now() + SLOT_RELEASE_LIMIT;
            while s.slots_in_use() > 0 && Instant::now() < limit {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let sample = s.sample();
            let slots = s.slots_in_use();
            let failure = s.shutdown().await.err();
            (Some(sample), Some(slots), failure)
        }
        None => (None, None, None),
    };

    // Final interval and the cumulative histograms.
    let mut rec = live.with(|l| l.rec.take()).expect("the recorder is taken once");
    if let Some(s) = &final_sample {
        apply_server_stages(&mut rec, s);
    }
    rec.rotate(started.elapsed()).map_err(|e| crate::Error::io("writing stages.hlog", e))?;
    let mut totals = rec.finish().map_err(|e| crate::Error::io("writing stages.hlog", e))?;

    // The raw-TCP baseline runs after the soak, on the same schedule, so the two do not share the CPU.
    let mut baseline = None;
    if args.baseline == Some(Baseline::RawTcp) {
        setup.progress.println("raw-TCP baseline: moving the same bytes over plain TCP ...");
        let frame_bytes = wire_frame_bytes(args);
        let r = raw_tcp::run(raw_tcp::RawTcpConfig {
            clients: args.clients,
            frame_bytes,
            fps: f64::from(args.fps),
            duration: args.duration,
            seed,
        })
        .await
        .map_err(|e| crate::Error::io("raw-TCP baseline", e))?;
        totals.insert("raw_tcp_end_to_end".into(), r.end_to_end.clone());
        baseline = Some(r);
    }

    // Assemble the report from the records.
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

    let (frames_sent, frames_unsent, ascii_frames, reconnects, recoveries, errors, examples) =
        live.with(|l| {
            let e = (l.errors.clone(), l.error_examples.clone());
            (l.frames_sent, l.frames_unsent, l.ascii_frames, l.reconnects, l.recoveries, e.0, e.1)
        });
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
    if let Some(s) = &final_sample {
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
    if let Some(slots) = slots_end {
        c.insert("slots_in_use_end".to_string(), slots);
        if slots > 0 {
            verdict.push(format!(
                "{slots} server slots still in use {} s after every client closed",
                SLOT_RELEASE_LIMIT.as_secs()
            ));
        }
    }
    if let Some(f) = server_failure {
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
    if let Some(peak) = memory::peak_rss_bytes() {
        c.insert("peak_rss_bytes".to_string(), peak);
    }
    report.counters = c;
    report.errors = errors;
    report.series = series.into_series();

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
    Ok(report)
}

/// Wire size of one IMAGE_FRAME packet: 22-byte header, 24-byte IMAGE_FRAME header, RGB24 pixels.
fn wire_frame_bytes(args: &Args) -> usize {
    acip::codec::HEADER_LEN + 24 + args.frame.0 as usize * args.frame.1 as usize * 3
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

use super::{load, Transport};

fn title(args: &Args) -> String {
    let (w, h) = args.frame;
    format!(
        "soak: {} clients × {w}x{h} @ {} fps over {}{}",
        args.clients,
        args.fps,
        match (&args.target, args.transport) {
            (Some(t), _) => t.clone(),
            (None, Transport::WebSocket) => "WebSocket".into(),
            (None, Transport::Tcp) => "TCP".into(),
        },
        if args.encrypt { ", encrypted" } else { ", plaintext" }
    )
}

/// The transport the clients really use: with `--target` the URL scheme decides and `--transport` is
/// ignored, so recording the flag would label a `tcp://` run "ws" (and `report compare` compares it).
fn transport_name(args: &Args) -> String {
    match &args.target {
        Some(url) => {
            url.parse::<acip::cli::TargetUrl>().map_or("unknown".into(), |u| u.transport.to_string())
        }
        None => args.transport.to_string(),
    }
}

fn settings(args: &Args, seed: u64) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    s.insert("clients".into(), args.clients.to_string());
    s.insert("duration".into(), format!("{:?}", args.duration));
    s.insert("transport".into(), transport_name(args));
    s.insert("dialect".into(), format!("{:?}", args.dialect).to_lowercase());
    s.insert("encrypt".into(), args.encrypt.to_string());
    s.insert("frame".into(), format!("{}x{}", args.frame.0, args.frame.1));
    s.insert("fps".into(), args.fps.to_string());
    s.insert("ws_fragment".into(), args.ws_fragment.map_or("none".into(), |n| n.to_string()));
    s.insert("churn".into(), format!("{}/s", args.churn));
    s.insert("seed".into(), seed.to_string());
    s.insert("server".into(), if args.target.is_some() { "external".into() } else { "embedded".into() });
    if !args.faults.is_empty() {
        s.insert("faults".into(), args.faults.join(","));
    }
    s
}

fn client_config(base: &ClientConfig, index: u32, session: u32) -> ClientConfig {
    let mut c = base.clone();
    c.tag = index;
    // Distinct, reproducible handshake randomness per client and per session.
    c.seed = base.seed ^ (u64::from(index) << 32) ^ u64::from(session);
    c
}

fn apply_server_stages(rec: &mut IntervalRecorder, s: &ServerSample) {
    for &stage in Stage::ALL {
        if let (Some(name), Some(h)) = (server_stage_name(stage), s.stages.get(stage)) {
            rec.set_cumulative(name, h);
        }
    }
}

/// Time series collected once a tick.
#[derive(Default)]
struct SeriesSet {
    fps_sent: Vec<(f64, f64)>,
    fps_received: Vec<(f64, f64)>,
    ascii_fps: Vec<(f64, f64)>,
    rss: Vec<(f64, f64)>,
    e2e_p99: Vec<(f64, f64)>,
}

impl SeriesSet {
    fn into_series(self) -> Vec<Series> {
        let mut v = vec![Series { name: "fps_sent".into(), unit: "frames/s".into(), points: self.fps_sent }];
        if !self.fps_received.is_empty() {
            v.push(Series {
                name: "fps_received".into(),
                unit: "frames/s".into(),
                points: self.fps_received,
            });
        }
        v.push(Series { name: "ascii_fps".into(), unit: "frames/s".into(), points: self.ascii_fps });
        if !self.e2e_p99.is_empty() {
            v.push(Series {
                name: "end_to_end_p99_cumulative".into(),
                unit: "µs".into(),
                points: self.e2e_p99,
            });
        }
        if !self.rss.is_empty() {
            v.push(Series { name: "rss_bytes".into(), unit: "bytes".into(), points: self.rss });
        }
        v
    }
}

fn sample_tick(
    live: &Live,
    sample: Option<&ServerSample>,
    elapsed: Duration,
    since_log_base: Duration,
    last: &mut (u64, u64, u64),
    series: &mut SeriesSet,
) -> crate::Result<Tick> {
    let t = (elapsed.as_secs_f64() * 10.0).round() / 10.0;
    let (sent, ascii, connected, client_errors) =
        live.with(|l| (l.frames_sent, l.ascii_frames, l.connected, l.errors.values().sum::<u64>()));
    let dt = TICK.as_secs_f64();
    let fps_sent = (sent - last.0) as f64 / dt;
    series.fps_sent.push((t, fps_sent));
    series.ascii_fps.push((t, (ascii - last.2) as f64 / dt));
    let mut fps = fps_sent;
    let mut p99 = None;
    let mut errors = client_errors;
    if let Some(s) = sample {
        let received = s.counters.frames_received;
        fps = received.saturating_sub(last.1) as f64 / dt;
        series.fps_received.push((t, fps));
        last.1 = received;
        errors += s.counters.total_errors();
        p99 = s.stages.get(Stage::EndToEnd).filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(0.99));
        if let Some(p) = p99 {
            series.e2e_p99.push((t, p as f64));
        }
        live.with(|l| {
            if let Some(r) = l.rec.as_mut() {
                apply_server_stages(r, s);
            }
        });
    }
    if let Some(rss) = memory::rss_bytes() {
        series.rss.push((t, rss as f64));
    }
    last.0 = sent;
    last.2 = ascii;
    live.with(|l| l.rec.as_mut().map(|r| r.rotate(since_log_base)).transpose())
        .map_err(|e| crate::Error::io("writing stages.hlog", e))?;
    Ok(Tick { elapsed_s: t, fps, p99_us: p99, errors, clients_connected: connected })
}

/// One client's whole run: its schedule, planned reconnects, and recovery from failures.
struct ClientJob {
    index: u32,
    config: ClientConfig,
    creds: reference_client::Credentials,
    observer: reference_client::SharedObserver,
    live: Arc<Live>,
    schedule: Schedule,
    churn: Vec<Duration>,
    t0: Instant,
    t0_unix_us: u64,
    duration: Duration,
    close: watch::Receiver<bool>,
}

/// A running client task and whether it has finished its schedule.
struct ClientTask {
    handle: tokio::task::JoinHandle<Vec<ClientReport>>,
    done: watch::Receiver<bool>,
}

impl ClientJob {
    fn run(self, first: Option<reference_client::Client>) -> ClientTask {
        let (done_tx, done) = watch::channel(false);
        let handle = tokio::spawn(self.drive(first, done_tx));
        ClientTask { handle, done }
    }

    async fn connect(&self, session: u32) -> Option<reference_client::Client> {
        let cfg = client_config(&self.config, self.index, session);
        match reference_client::Client::connect_with(&cfg, &self.creds, Some(self.observer.clone())).await {
            Ok(c) => Some(c),
            Err(e) => {
                self.live.error(&format!("connect_{}", e.kind()), e.to_string());
                None
            }
        }
    }

    async fn drive(
        self,
        mut client: Option<reference_client::Client>,
        done: watch::Sender<bool>,
    ) -> Vec<ClientReport> {
        let mut reports = Vec::new();
        let frames = self.schedule.frames_in(self.duration);
        let mut churn = self.churn.iter().copied().peekable();
        let mut session = 0u32;
        let mut seq_in_session = 0u64;
        let mut retry_at: Option<Instant> = None;
        for k in 0..frames {
            let intended = self.schedule.intended(k);
            let due = self.t0 + intended;
            // A planned reconnect due before this frame: close, then connect again.
            if churn.peek().is_some_and(|&at| at <= intended) {
                while churn.peek().is_some_and(|&at| at <= intended) {
                    churn.next();
                }
                tokio::time::sleep_until(
                    (self.t0 + intended.saturating_sub(self.schedule.period / 2)).into(),
                )
                .await;
                if let Some(c) = client.take() {
                    reports.push(c.close().await);
                }
                session += 1;
                self.live.with(|l| l.reconnects += 1);
                client = self.connect(session).await;
                seq_in_session = 0;
            }
            if client.as_ref().is_some_and(|c| c.is_closed()) {
                if let Some(c) = client.take() {
                    reports.push(c.close().await);
                }
            }
            if client.is_none() {
                let now = Instant::now();
                if retry_at.is_none_or(|r| now >= r) {
                    session += 1;
                    self.live.with(|l| l.recoveries += 1);
                    client = self.connect(session).await;
                    seq_in_session = 0;
                    if client.is_none() {
                        retry_at = Some(Instant::now() + RECONNECT_BACKOFF);
                    }
                }
            }
            let Some(c) = client.as_ref() else {
                self.live.with(|l| l.frames_unsent += 1);
                continue;
            };
            tokio::time::sleep_until(due.into()).await;
            self.live.record("send_lag", due.elapsed());
            let intended_us = self.t0_unix_us + intended.as_micros() as u64;
            if let Err(e) = c.send_frame(seq_in_session, intended_us).await {
                self.live.error(&format!("send_{}", e.kind()), e.to_string());
                self.live.with(|l| l.frames_unsent += 1);
                if let Some(c) = client.take() {
                    reports.push(c.close().await);
                }
                continue;
            }
            seq_in_session += 1;
        }
        let _ = done.send(true);
        let mut close = self.close.clone();
        let _ = close.wait_for(|c| *c).await;
        if let Some(c) = client.take() {
            reports.push(c.close().await);
        }
        reports
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

    fn args(argv: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("soak").chain(argv.iter().copied())).unwrap().args
    }

    #[test]
    fn settings_record_the_transport_of_the_target_url() {
        // Seen against the real server: `--target tcp://...` was reported as transport "ws" (the default
        // of the ignored --transport flag).
        assert_eq!(settings(&args(&["--target", "tcp://127.0.0.1:27224"]), 1)["transport"], "tcp");
        assert_eq!(
            settings(&args(&["--target", "tcp://127.0.0.1:27224", "--transport", "ws"]), 1)["transport"],
            "tcp"
        );
        assert_eq!(settings(&args(&["--target", "ws://127.0.0.1:27226"]), 1)["transport"], "ws");
        assert_eq!(settings(&args(&["--transport", "tcp"]), 1)["transport"], "tcp");
        assert_eq!(settings(&args(&[]), 1)["transport"], "ws");
    }
}
