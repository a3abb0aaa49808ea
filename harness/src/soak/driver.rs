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

use super::assemble::{self, wire_frame_bytes, SLOT_RELEASE_LIMIT};
use super::embedded::{Embedded, ServerSample};
use super::progress::{Progress, Tick};
use super::schedule::{self, ChurnEvent, Schedule};
use super::timer::Timer;
use super::{gate, memory, raw_tcp, shard, Args, Baseline, StartRule};
use crate::report::hlog::IntervalRecorder;
use crate::report::{Report, Series};

/// Time between the last client connecting and the common start, so no client begins late.
const START_LEAD: Duration = Duration::from_millis(100);
/// Sampling interval of progress, series and interval logs.
const TICK: Duration = Duration::from_secs(1);
/// How long the drain waits, beyond half the run's duration, for clients that fell behind their
/// schedule to send their last frame and for the server to account for every frame sent.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Pause before retrying a failed (re)connect; frames due meanwhile are counted as unsent.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Clients connecting at once during start-up (a server's accept queue is finite).
const CONNECT_CONCURRENCY: usize = 16;
/// Example messages kept per error kind (the counts are complete; the texts are samples).
const ERROR_EXAMPLES: usize = 1;
/// How long a shard waits at its start gate (`--wait-start`) before giving up.
pub const START_WAIT_LIMIT: Duration = Duration::from_secs(30 * 60);

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
    /// Frames each client (by global index) finished sending within the schedule.
    sent_in_schedule_by_client: BTreeMap<u32, u64>,
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
    // The whole run's schedules and churn plan, of which a shard keeps its own clients' (by global index).
    let schedules = schedule::schedules(seed, args.clients, period);
    let churn = schedule::churn_plan(seed, args.clients, args.duration, args.churn);
    let mine = args.shard().clients(args.clients);
    let mut clients = Vec::with_capacity(mine.len());
    for chunk in mine.chunks(CONNECT_CONCURRENCY) {
        let mut pending = Vec::new();
        for &i in chunk {
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

    // The common start: now (plus a lead), a given instant, or the start gate's answer.
    let start_ms = match args.start_rule() {
        StartRule::Now => None,
        StartRule::At(ms) => Some(ms),
        StartRule::Gate(url) => Some(gate::wait_start(&url, START_WAIT_LIMIT).await?),
    };
    let (t0, t0_unix_us) = match start_ms {
        None => (Instant::now() + START_LEAD, unix_us(SystemTime::now()) + START_LEAD.as_micros() as u64),
        Some(ms) => {
            let wait = shard::until_start(ms, SystemTime::now()).map_err(crate::Error::Usage)?;
            (Instant::now() + wait, ms * 1000)
        }
    };
    if let Some(ms) = start_ms {
        report.settings.insert("schedule_start_unix_ms".into(), ms.to_string());
    }
    let (close_tx, close_rx) = watch::channel(false);
    let timer = Timer::start().map_err(|e| crate::Error::io("starting the soak timer thread", e))?;
    let mut tasks = Vec::with_capacity(clients.len());
    for (&i, client) in mine.iter().zip(clients) {
        let my_churn: Vec<Duration> =
            churn.iter().filter(|e: &&ChurnEvent| e.client == i).map(|e| e.at).collect();
        let job = ClientJob {
            index: i,
            config: cfg.clone(),
            creds: creds.clone(),
            observer: observer.clone(),
            live: live.clone(),
            schedule: schedules[i as usize],
            timer: timer.clone(),
            churn: my_churn,
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

    let by_client = live.with(|l| l.sent_in_schedule_by_client.clone());
    let sent: Vec<u64> = mine.iter().map(|i| by_client.get(i).copied().unwrap_or(0)).collect();
    if let Some(note) = per_client_fps_note(&sent, args.duration, args.fps) {
        report.notes.push(note);
    }

    // Measurement ends here: the rest is a pure function of the records (soak::assemble).
    let (frames_sent, frames_unsent, ascii_frames, reconnects, recoveries, errors, error_examples) = live
        .with(|l| {
            let e = (l.errors.clone(), l.error_examples.clone());
            (l.frames_sent, l.frames_unsent, l.ascii_frames, l.reconnects, l.recoveries, e.0, e.1)
        });
    let records = assemble::Records {
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
        error_examples,
        client_reports,
        server: final_sample.map(|s| assemble::ServerEnd {
            counters: s.counters,
            slots_in_use: slots_end.unwrap_or_default(),
            failure: server_failure.map(|f| f.to_string()),
        }),
        series: series.into_series(),
        peak_rss_bytes: memory::peak_rss_bytes(),
    };
    let report = assemble::assemble(report, records, &local_args(args));
    Ok(report)
}

use super::Transport;

/// The spread of the frame rate each client achieved within the schedule (the load verdict judges the
/// mean; one starved client hides in it).
fn per_client_fps_note(sent_in_schedule: &[u64], duration: Duration, fps: u32) -> Option<String> {
    let secs = duration.as_secs_f64();
    if sent_in_schedule.is_empty() || secs <= 0.0 {
        return None;
    }
    let mut rates: Vec<f64> = sent_in_schedule.iter().map(|&n| n as f64 / secs).collect();
    rates.sort_by(f64::total_cmp);
    // Nearest rank: the smallest rate with at least a fraction q of the clients at or below it.
    let n = rates.len();
    let at = |q: f64| rates[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Some(format!(
        "achieved fps per client within the schedule: min {:.2}, p50 {:.2}, max {:.2} of {fps} requested \
         ({} clients)",
        at(0.0),
        at(0.5),
        at(1.0),
        rates.len()
    ))
}

/// The arguments as this process ran them: a shard judges its load by its own share of the clients.
pub fn local_args(args: &Args) -> Args {
    let mut a = args.clone();
    a.clients = args.local_clients();
    a
}

pub(crate) fn title(args: &Args) -> String {
    let (w, h) = args.frame;
    let clients = match args.shard {
        Some(s) => format!("shard {s} ({} of {} clients)", args.local_clients(), args.clients),
        None => format!("{} clients", args.clients),
    };
    format!(
        "soak: {clients} × {w}x{h} @ {} fps over {}{}",
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
    if let Some(shard) = args.shard {
        s.insert("shard".into(), shard.to_string());
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
    /// Wakes the client at each frame's intended time (tokio's own timer is up to 1 ms late).
    timer: Timer,
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
        let end = self.t0 + self.duration;
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
            self.timer.sleep_until(due).await;
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
            if Instant::now() <= end {
                self.live.with(|l| *l.sent_in_schedule_by_client.entry(self.index).or_default() += 1);
            }
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
    fn per_client_fps_shows_the_slowest_client() {
        let note = per_client_fps_note(&[300, 297, 150, 300], Duration::from_secs(10), 30).expect("note");
        assert_eq!(
            note,
            "achieved fps per client within the schedule: min 15.00, p50 29.70, max 30.00 of 30 requested \
             (4 clients)"
        );
        assert_eq!(per_client_fps_note(&[], Duration::from_secs(10), 30), None);
        assert_eq!(per_client_fps_note(&[1], Duration::ZERO, 30), None);
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
