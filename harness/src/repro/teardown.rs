//! `teardown-race`: the teardown races of ACIP-SPEC.md 7.5/7.6 (RECEIVE after CLOSED, a handler blocking
//! the event loop, a capture thread using a freed transport). Many clients vanish at random points —
//! during the HTTP upgrade, right after it (before joining), mid-fragment, while the server is writing
//! ASCII frames to them, right after their close frame, mid-header on TCP — half of them with a reset
//! (SO_LINGER 0) instead of a FIN, against one server while two well-behaved clients stream. Every choice
//! comes from `--seed` (printed), so a failure replays. Afterwards: no panic, no connection or slot left,
//! no task left running (server shutdown within a bound, the runtime's live task count back to where it
//! was), and every well-behaved client's frames intact (the server's sequence tracker: no loss, no
//! corruption, no reordering).
//!
//! This scenario has no broken configuration of its own: the reference server has no fault that
//! reintroduces these races, so it checks the invariants the fixes established.

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
            if let Ok(p) = WsPeer::connect(ws, mask).await {
                vanish(p.stream, reset);
            }
        }
        Vanish::MidFragment => {
            let Ok(mut p) = WsPeer::connect(ws, mask).await else { return };
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
            let Ok(mut p) = WsPeer::connect(ws, mask).await else { return };
            // A large terminal at 60 fps: the server renders the streamers' frames for us; we stop
            // reading and vanish while it writes.
            if p.join(Dialect::Feb, (200, 60), 60, STEP).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
            }
            vanish(p.stream, reset);
        }
        Vanish::AfterClose => {
            let Ok(mut p) = WsPeer::connect(ws, mask).await else { return };
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

pub async fn run(opts: &Options) -> Outcome {
    count_panics();
    let mut o = Outcome::new(Scenario::TeardownRace);
    if opts.target.is_some() {
        o.note("--target ignored: the checks read the server's own state (slots, tasks, panics)");
    }
    let n: u64 = if opts.quick { 100 } else { 1000 };
    o.figure("clients", n);
    o.note(format!("seed {} (rerun with --seed {})", opts.seed, opts.seed));
    let panics_before = PANICS.load(Ordering::SeqCst);
    let tasks_before = alive_tasks();
    let mut cfg = server_config(opts.seed);
    // Room for every vanishing client: refusals would hide the paths under test.
    cfg.max_clients = 99;
    cfg.slot_capacity = 256;
    let srv = match reference_server::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            o.row(Row::error("server", e));
            return o;
        }
    };
    let (ws, tcp) = (srv.ws_addr().expect("ws listener"), srv.tcp_addr().expect("tcp listener"));

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
    let tasks_left = alive_tasks().saturating_sub(tasks_before);
    let panics = PANICS.load(Ordering::SeqCst) - panics_before;

    let c = &st.counters;
    let mix = by_kind.iter().map(|(k, v)| format!("{}={v}", k.name())).collect::<Vec<_>>().join(", ");
    for (k, v) in &by_kind {
        o.figure(&format!("vanish.{}", k.name()), *v);
    }
    o.figure("panics", panics);
    o.figure("streamer_frames_sent", sent);
    o.figure("server_frames_received", c.frames_received);
    o.figure("tasks_left", tasks_left as u64);
    o.row(Row::new(
        format!("{n} clients vanish at random points ({CONCURRENCY} at a time), seed {}", opts.seed),
        format!(
            "{mix}; churn {:.1} s; panics {panics} (vanisher tasks {vanisher_panics}); server errors: {}",
            churn.as_secs_f64(),
            kinds(&c.errors)
        ),
        "no panic; every teardown finishes (only the 2 streamers left)",
        panics == 0 && vanisher_panics == 0 && drained && joined,
    ));
    o.row(Row::new(
        "2 well-behaved clients streaming 160x120 at 30 fps (WS + TCP) meanwhile",
        format!(
            "sent {sent}, server received {} (lost {}, corrupt {}, reordered {}); client errors: {}",
            c.frames_received,
            c.frames_lost,
            c.frames_corrupt,
            c.frames_reordered,
            if streamer_errors.is_empty() { "none".into() } else { streamer_errors.join("; ") }
        ),
        "every frame intact: received = sent, 0 lost / corrupt / reordered",
        delivered
            && sent > 0
            && c.frames_received == sent
            && c.frames_lost + c.frames_corrupt + c.frames_reordered == 0
            && streamer_errors.is_empty(),
    ));
    o.row(Row::new(
        "after the run",
        format!(
            "{} connections, {} slots in use, {} double releases; shutdown {}; tasks left {tasks_left}",
            st.connections,
            st.slots_in_use,
            st.double_releases,
            if down { "within 10 s" } else { "TIMED OUT" }
        ),
        "0 connections, 0 slots, 0 double releases, shutdown within 10 s, 0 tasks left",
        settled
            && st.connections == 0
            && st.slots_in_use == 0
            && st.double_releases == 0
            && down
            && tasks_left == 0,
    ));
    o
}
