//! `teardown-race`: the teardown races of ACIP-SPEC.md 7.5/7.6 (RECEIVE after CLOSED on a client looked up
//! by slot after `remove_client`, double frees of a connection's state, a handler blocking the event loop,
//! a capture thread using a freed transport). Many clients vanish at random points — during the HTTP
//! upgrade, right after it (before joining), mid-fragment, while the server is writing ASCII frames to
//! them, right after their close frame, mid-header on TCP — half of them with a reset (SO_LINGER 0)
//! instead of a FIN, against one server while two well-behaved clients stream. Every choice comes from
//! `--seed` (printed), so a failure replays.
//!
//! Both sides run the same sequence: one client joins and leaves (a finished connection whose slot, 0, is
//! free again), the two streamers join, the vanishing clients churn, the streamers stop and leave.
//! - Broken side: the reference server with `--fault stale-callback` (reference-server `slots.rs`): each
//!   finished connection leaves one late receive callback that, once the next client on its slot is
//!   active, frees that slot by index without the generation check, as the old server's late RECEIVE
//!   acted on whatever client then had the slot. The first streamer on slot 0 loses its slot while it
//!   streams, the pool hands slot 0 to a vanishing client while the streamer still holds it, and the
//!   streamer's own release at its close is refused (a double release). The side passes when all of that
//!   shows (late callbacks > 0, slots handed to a second client > 0, double releases > 0, a streamer's
//!   slot freed under it).
//! - Fixed side: the same server without the fault (generation-checked handles, `acip::slots`).
//!   Afterwards: no panic, no connection or slot left, no slot handed to two clients, no double release,
//!   no task left running (server shutdown within a bound, the runtime's live task count back to where
//!   it was), and every well-behaved client's frames intact (the server's sequence tracker: no loss, no
//!   corruption, no reordering).
//!
//! The broken side damages slot ownership, not frames: the server tracks frames per connection, so the
//! streamers' frames stay intact there too, and the table says so.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use acip::codec::payloads::ClientCapabilities;
use acip::ws::OpCode;
use acip::Dialect;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reference_client::{Client, ClientConfig, Target};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::peer::{pattern_frame, upgrade_request, WsPeer};
use super::{kinds, server_config, shutdown_within, Options, Outcome, Row, Scenario, SETTLE};

/// Vanishing clients alive at once.
const CONCURRENCY: usize = 12;
/// Bound on the server's shutdown.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);
/// How long a vanishing step may take before it is abandoned (the client vanishes anyway).
const STEP: Duration = Duration::from_secs(5);

/// Where a client vanishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vanish {
    MidUpgrade,
    AfterUpgrade,
    MidFragment,
    WhileServerWrites,
    AfterClose,
    TcpMidHeader,
}

impl Vanish {
    const ALL: [Vanish; 6] = [
        Vanish::MidUpgrade,
        Vanish::AfterUpgrade,
        Vanish::MidFragment,
        Vanish::WhileServerWrites,
        Vanish::AfterClose,
        Vanish::TcpMidHeader,
    ];

    fn name(self) -> &'static str {
        match self {
            Vanish::MidUpgrade => "mid_upgrade",
            Vanish::AfterUpgrade => "after_upgrade",
            Vanish::MidFragment => "mid_fragment",
            Vanish::WhileServerWrites => "while_server_writes",
            Vanish::AfterClose => "after_close",
            Vanish::TcpMidHeader => "tcp_mid_header",
        }
    }
}

static PANICS: AtomicU64 = AtomicU64::new(0);
static HOOK: Once = Once::new();

/// Counts panics of any thread (server tasks swallow theirs into a JoinError), keeping the previous
/// hook's output.
fn count_panics() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            prev(info);
        }));
    });
}

/// Ends a socket abruptly (RST) when `reset`, else with a FIN on drop.
fn vanish(stream: TcpStream, reset: bool) {
    if reset {
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
    drop(stream);
}

/// One vanishing client.
async fn vanisher(ws: SocketAddr, tcp: SocketAddr, kind: Vanish, mut rng: ChaCha8Rng) {
    let reset = rng.gen_bool(0.5);
    let mask: [u8; 4] = rng.gen();
    match kind {
        Vanish::MidUpgrade => {
            let Ok(mut s) = TcpStream::connect(ws).await else { return };
            let req = upgrade_request(ws);
            let cut = rng.gen_range(1..req.len());
            let _ = s.write_all(&req.as_bytes()[..cut]).await;
            vanish(s, reset);
        }
        Vanish::AfterUpgrade => {
            if let Ok(p) = WsPeer::ws_plain(ws, mask).await {
                vanish(p.stream, reset);
            }
        }
        Vanish::MidFragment => {
            let Ok(mut p) = WsPeer::ws_plain(ws, mask).await else { return };
            if p.join(Dialect::Feb, (80, 24), 30, STEP).await.is_ok() {
                let frame = pattern_frame(320, 240, 0, 0xdead).encode();
                let n = rng.gen_range(1..20usize);
                for (i, c) in frame.chunks(4096).take(n).enumerate() {
                    let op = if i == 0 { OpCode::Binary } else { OpCode::Continuation };
                    if p.send_frame(op, false, c).await.is_err() {
                        break;
                    }
                }
            }
            vanish(p.stream, reset);
        }
        Vanish::WhileServerWrites => {
            let Ok(mut p) = WsPeer::ws_plain(ws, mask).await else { return };
            // A large terminal at 60 fps: the server renders the streamers' frames for us; we stop
            // reading and vanish while it writes.
            if p.join(Dialect::Feb, (200, 60), 60, STEP).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
            }
            vanish(p.stream, reset);
        }
        Vanish::AfterClose => {
            let Ok(mut p) = WsPeer::ws_plain(ws, mask).await else { return };
            if p.join(Dialect::Feb, (80, 24), 30, STEP).await.is_ok() {
                let _ = p.send_frame(OpCode::Close, true, &1000u16.to_be_bytes()).await;
            }
            vanish(p.stream, reset);
        }
        Vanish::TcpMidHeader => {
            let Ok(mut s) = TcpStream::connect(tcp).await else { return };
            let caps = ClientCapabilities::new(Dialect::Feb, 80, 24, 30).to_packet().encode();
            let cut = rng.gen_range(1..caps.len());
            let _ = s.write_all(&caps[..cut]).await;
            vanish(s, reset);
        }
    }
}

/// A well-behaved client streaming at 30 fps until `stop`. Returns the still-open client and the frames
/// it sent: the caller closes it only once the server has every frame (frames still queued at the
/// server when a client hangs up are not counted as received).
async fn streamer(cfg: ClientConfig, mut stop: watch::Receiver<bool>) -> Result<(Client, u64), String> {
    let client = Client::connect(&cfg, None).await.map_err(|e| format!("streamer connect: {e}"))?;
    let start = Instant::now();
    let mut seq = 0u64;
    loop {
        let due = start + Duration::from_nanos(seq * 1_000_000_000 / u64::from(cfg.fps));
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if let Err(e) = client.send_frame(seq, 0).await {
            let _ = client.close().await;
            return Err(format!("streamer send {seq}: {e}"));
        }
        seq += 1;
    }
    Ok((client, seq))
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// What one side measured.
struct SideRun {
    n: u64,
    /// The streamers were both active before the churn.
    joined: bool,
    /// The warm-up client joined and left.
    warmed: bool,
    /// Every vanished client's teardown finished (only the streamers left).
    drained: bool,
    /// The server counted every frame the streamers sent.
    delivered: bool,
    settled: bool,
    down: bool,
    churn: Duration,
    by_kind: BTreeMap<Vanish, u64>,
    panics: u64,
    vanisher_panics: u64,
    tasks_left: usize,
    sent: u64,
    streamer_errors: Vec<String>,
    /// Late callbacks run by the time both streamers were active (they hit a streamer).
    late_on_streamers: u64,
    /// Double releases counted when the streamers left: streamers whose slot had been freed under them.
    streamer_slots_lost: u64,
    st: reference_server::StatsSnapshot,
}

impl SideRun {
    fn mix(&self) -> String {
        self.by_kind.iter().map(|(k, v)| format!("{}={v}", k.name())).collect::<Vec<_>>().join(", ")
    }

    fn frames(&self) -> String {
        let c = &self.st.counters;
        format!(
            "sent {}, server received {} (lost {}, corrupt {}, reordered {}); client errors: {}",
            self.sent,
            c.frames_received,
            c.frames_lost,
            c.frames_corrupt,
            c.frames_reordered,
            if self.streamer_errors.is_empty() { "none".into() } else { self.streamer_errors.join("; ") }
        )
    }

    fn frames_intact(&self) -> bool {
        let c = &self.st.counters;
        self.delivered
            && self.sent > 0
            && c.frames_received == self.sent
            && c.frames_lost + c.frames_corrupt + c.frames_reordered == 0
            && self.streamer_errors.is_empty()
    }

    fn after(&self) -> String {
        format!(
            "{} connections, {} slots in use, {} double releases, {} slots handed to a second client; \
             shutdown {}; tasks left {}",
            self.st.connections,
            self.st.slots_in_use,
            self.st.double_releases,
            self.st.slots_shared,
            if self.down { "within 10 s" } else { "TIMED OUT" },
            self.tasks_left
        )
    }

    fn figures(&self, o: &mut Outcome, side: &str) {
        let c = &self.st.counters;
        for (name, v) in [
            ("panics", self.panics + self.vanisher_panics),
            ("tasks_left", self.tasks_left as u64),
            ("streamer_frames_sent", self.sent),
            ("server_frames_received", c.frames_received),
            ("frames_lost_corrupt_reordered", c.frames_lost + c.frames_corrupt + c.frames_reordered),
            ("slots_in_use_after", self.st.slots_in_use as u64),
            ("double_releases", self.st.double_releases),
            ("slots_shared", self.st.slots_shared),
            ("late_callbacks", self.st.late_callbacks),
            ("streamer_slots_lost", self.streamer_slots_lost),
        ] {
            o.figure(&format!("{side}.{name}"), v);
        }
    }
}

/// One client that joins and leaves cleanly over WebSocket; `true` once the server has torn it down.
async fn warm_up(srv: &reference_server::ServerHandle, ws: SocketAddr, seed: u64) -> bool {
    let Ok(mut p) = WsPeer::ws_plain(ws, (seed as u32).to_be_bytes()).await else { return false };
    let joined = p.join(Dialect::Feb, (80, 24), 30, STEP).await.is_ok();
    p.close_normally(STEP).await;
    joined && srv.wait_until(SETTLE, |s| s.connections() == 0).await
}

/// Runs one side: the server with `--fault stale-callback` when `stale_callback`, else the fixed one.
async fn run_side(opts: &Options, n: u64, stale_callback: bool) -> Result<SideRun, String> {
    let panics_before = PANICS.load(Ordering::SeqCst);
    let tasks_before = alive_tasks();
    let mut cfg = server_config(opts.seed);
    // Room for every vanishing client: refusals would hide the paths under test.
    cfg.max_clients = 99;
    cfg.slot_capacity = 256;
    cfg.faults.stale_callback = stale_callback;
    let srv = reference_server::start(cfg).await.map_err(|e| e.to_string())?;
    let (ws, tcp) = (srv.ws_addr().expect("ws listener"), srv.tcp_addr().expect("tcp listener"));
    // A finished connection before anyone else: under the fault its late callback waits on slot 0.
    let warmed = warm_up(&srv, ws, opts.seed).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut streamers = Vec::new();
    for (i, target) in [Target::ws(ws), Target::tcp(tcp)].into_iter().enumerate() {
        let cfg = ClientConfig {
            dialect: Dialect::Feb,
            encrypt: false,
            frame: (160, 120),
            fps: 30,
            tag: 1000 + i as u32,
            seed: opts.seed.wrapping_add(i as u64),
            ..ClientConfig::new(target)
        };
        streamers.push(tokio::spawn(streamer(cfg, stop_rx.clone())));
    }
    // The streamers are in (two active clients) before the churn starts.
    let joined = srv.wait_until(SETTLE, |s| s.active_clients() >= 2).await;
    let late_on_streamers = srv.stats().late_callbacks;

    let t0 = Instant::now();
    let mut by_kind: BTreeMap<Vanish, u64> = BTreeMap::new();
    let mut set = JoinSet::new();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    for i in 0..n {
        if set.len() >= CONCURRENCY {
            let _ = set.join_next().await;
        }
        let kind = Vanish::ALL[rng.gen_range(0..Vanish::ALL.len())];
        *by_kind.entry(kind).or_default() += 1;
        let child = ChaCha8Rng::seed_from_u64(opts.seed ^ (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        set.spawn(vanisher(ws, tcp, kind, child));
    }
    let mut vanisher_panics = 0u64;
    while let Some(r) = set.join_next().await {
        if r.is_err() {
            vanisher_panics += 1;
        }
    }
    let churn = t0.elapsed();
    // Every vanished client's teardown has finished: only the two streamers are left.
    let drained = srv.wait_until(SETTLE, |s| s.connections() == 2).await;
    let double_before = srv.stats().double_releases;
    stop_tx.send_replace(true);
    let mut sent = 0u64;
    let mut streamer_errors = Vec::new();
    let mut clients = Vec::new();
    for (i, h) in streamers.into_iter().enumerate() {
        match h.await {
            Ok(Ok((client, n))) => {
                sent += n;
                clients.push((i, client));
            }
            Ok(Err(e)) => streamer_errors.push(format!("streamer {i}: {e}")),
            Err(e) => streamer_errors.push(format!("streamer {i} task: {e}")),
        }
    }
    let delivered = srv.wait_until(SETTLE, |s| s.stats().counters.frames_received >= sent).await;
    for (i, client) in clients {
        let r = client.close().await;
        if r.counters.total_errors() > 0 {
            streamer_errors.push(format!("streamer {i}: {}", kinds(&r.counters.errors)));
        }
    }
    let settled = super::settle(&srv).await;
    let st = srv.stats();
    let down = shutdown_within(srv, SHUTDOWN_BOUND).await;
    // Client and server tasks end asynchronously after their handles finish: wait (bounded) for the
    // runtime's count to come back.
    let deadline = Instant::now() + SETTLE;
    while alive_tasks() > tasks_before && Instant::now() < deadline {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(SideRun {
        n,
        joined,
        warmed,
        drained,
        delivered,
        settled,
        down,
        churn,
        by_kind,
        panics: PANICS.load(Ordering::SeqCst) - panics_before,
        vanisher_panics,
        tasks_left: alive_tasks().saturating_sub(tasks_before),
        sent,
        streamer_errors,
        late_on_streamers,
        streamer_slots_lost: st.double_releases.saturating_sub(double_before),
        st,
    })
}

/// The broken side's row: the race must show.
fn broken_row(o: &mut Outcome, r: &SideRun, seed: u64) {
    let st = &r.st;
    let c = &st.counters;
    let measured = format!(
        "late callbacks freed {} live slots ({} a streamer's, on its join); slots handed to a second client \
         while held: {}; double releases {} (streamers' own releases refused: {} of 2); streamers sent {}, \
         server received {} (lost {}, corrupt {}, reordered {}); after: {} connections, {} slots in use, \
         shutdown {}, tasks left {}; panics {}; churn {:.1} s",
        st.late_callbacks,
        r.late_on_streamers,
        st.slots_shared,
        st.double_releases,
        r.streamer_slots_lost,
        r.sent,
        c.frames_received,
        c.frames_lost,
        c.frames_corrupt,
        c.frames_reordered,
        st.connections,
        st.slots_in_use,
        if r.down { "within 10 s" } else { "TIMED OUT" },
        r.tasks_left,
        r.panics + r.vanisher_panics,
        r.churn.as_secs_f64(),
    );
    o.row(Row::new(
        format!(
            "fault stale-callback: {} clients vanish at random points ({CONCURRENCY} at a time), 2 streamers, \
             seed {seed}",
            r.n
        ),
        measured,
        "the race shows: a streamer's slot freed under it while it streams, a slot handed to a second \
         client, double releases",
        r.warmed
            && r.joined
            && r.drained
            && r.late_on_streamers >= 1
            && st.slots_shared > 0
            && st.double_releases > 0
            && r.streamer_slots_lost >= 1,
    ));
}

/// The fixed side's rows: every invariant holds.
fn fixed_rows(o: &mut Outcome, r: &SideRun, seed: u64) {
    let st = &r.st;
    o.row(Row::new(
        format!(
            "fixed server: {} clients vanish at random points ({CONCURRENCY} at a time), seed {seed}",
            r.n
        ),
        format!(
            "{}; churn {:.1} s; panics {} (vanisher tasks {}); server errors: {}",
            r.mix(),
            r.churn.as_secs_f64(),
            r.panics,
            r.vanisher_panics,
            kinds(&st.counters.errors)
        ),
        "no panic; every teardown finishes (only the 2 streamers left)",
        r.panics == 0 && r.vanisher_panics == 0 && r.drained && r.joined && r.warmed,
    ));
    o.row(Row::new(
        "fixed server: 2 well-behaved clients streaming 160x120 at 30 fps (WS + TCP) meanwhile",
        r.frames(),
        "every frame intact: received = sent, 0 lost / corrupt / reordered",
        r.frames_intact(),
    ));
    o.row(Row::new(
        "fixed server: after the run",
        format!("{}; late callbacks {}", r.after(), st.late_callbacks),
        "0 connections, 0 slots, 0 double releases, 0 slots handed to a second client, shutdown within 10 \
         s, 0 tasks left",
        r.settled
            && st.connections == 0
            && st.slots_in_use == 0
            && st.double_releases == 0
            && st.slots_shared == 0
            && st.late_callbacks == 0
            && r.down
            && r.tasks_left == 0,
    ));
}

pub async fn run(opts: &Options) -> Outcome {
    count_panics();
    let mut o = Outcome::new(Scenario::TeardownRace);
    if opts.target.is_some() {
        o.note("--target ignored: the checks read the server's own state (slots, tasks, panics)");
    }
    let n: u64 = if opts.quick { 100 } else { 1000 };
    o.figure("clients", n);
    o.note(format!("seed {} (rerun with --seed {})", opts.seed, opts.seed));
    for stale_callback in [true, false] {
        let side = if stale_callback { "stale_callback" } else { "fixed" };
        match run_side(opts, n, stale_callback).await {
            Ok(r) => {
                r.figures(&mut o, side);
                if stale_callback {
                    for (k, v) in &r.by_kind {
                        o.figure(&format!("vanish.{}", k.name()), *v);
                    }
                    broken_row(&mut o, &r, opts.seed);
                } else {
                    fixed_rows(&mut o, &r, opts.seed);
                }
            }
            Err(e) => o.row(Row::error(format!("{side} server"), e)),
        }
    }
    o
}
