//! `slot-exhaustion`: the WebSocket slot leak fixed in 4dce9818 (ACIP-SPEC.md 7.1). Disconnected WS
//! clients were never removed, so the 33rd sequential reconnect failed with "No available client slots
//! (all 32 array slots are in use)". Broken side: the reference server's `slot_leak` fault; fixed side:
//! the same server without it. Each session joins, closes, and the next starts only once the server has
//! finished tearing the previous one down (its connection count is back to 0: a readiness condition,
//! not a sleep), because a leak can only show when teardown has run.

use std::time::Duration;

use acip::Dialect;
use reference_server::ServerHandle;

use super::peer::{ws_target, Seen, WsPeer};
use super::{server_config, shutdown_within, Options, Outcome, Row, Scenario, SETTLE};

/// The slot array (`MAX_CLIENTS`).
const SLOTS: usize = reference_server::SLOT_CAPACITY;
/// Per-session wait for the join and for the close handshake.
const SESSION_WAIT: Duration = Duration::from_secs(5);

/// How the run of sequential sessions went.
#[derive(Debug, Default)]
struct Cycles {
    ok: u64,
    failures: u64,
    /// 1-based index and message of the first failure.
    first_failure: Option<(u64, String)>,
    /// Sessions after which teardown did not finish in time.
    unsettled: u64,
}

/// One session: upgrade, join, close. `Err` is the server's refusal (or whatever went wrong).
async fn session(addr: std::net::SocketAddr, mask: [u8; 4]) -> Result<(), String> {
    let mut p = WsPeer::ws_plain(addr, mask).await?;
    match p.join(Dialect::Feb, (80, 24), 30, SESSION_WAIT).await {
        Ok(()) => {}
        Err(Seen::Close { code, reason }) => return Err(format!("close {code} {reason:?}")),
        Err(other) => return Err(other.to_string()),
    }
    p.close_normally(SESSION_WAIT).await;
    Ok(())
}

async fn cycles(addr: std::net::SocketAddr, n: u64, seed: u64, server: Option<&ServerHandle>) -> Cycles {
    let mut c = Cycles::default();
    for i in 0..n {
        let mask = (seed.wrapping_add(i) as u32).to_be_bytes();
        match session(addr, mask).await {
            Ok(()) => c.ok += 1,
            Err(e) => {
                c.failures += 1;
                c.first_failure.get_or_insert((i + 1, e));
            }
        }
        if let Some(s) = server {
            if !s.wait_until(SETTLE, |s| s.connections() == 0).await {
                c.unsettled += 1;
            }
        }
    }
    c
}

pub async fn run(opts: &Options) -> Outcome {
    let mut o = Outcome::new(Scenario::SlotExhaustion);
    // Quick still goes past the 33rd session: that is where the bug shows.
    let n: u64 = if opts.quick { SLOTS as u64 + 4 } else { 100 };
    o.figure("sessions", n);
    if let Some(url) = &opts.target {
        let config = format!("target {url}: {n} sequential WebSocket sessions");
        match ws_target(url) {
            Ok(addr) => {
                o.note(
                    "external target: run it plaintext (--no-encrypt); the probe joins without a handshake",
                );
                let c = cycles(addr, n, opts.seed, None).await;
                let first = c.first_failure.map_or("none".into(), |(i, m)| format!("session {i}: {m}"));
                o.row(Row::new(
                    config,
                    format!("{} ok, {} failed; first failure: {first}", c.ok, c.failures),
                    "0 failures (a leaking server fails from the 33rd)",
                    c.failures == 0,
                ));
            }
            Err(e) => o.row(Row::error(config, e)),
        }
        return o;
    }
    for leak in [true, false] {
        let config = if leak {
            format!("{n} sequential WS sessions, 32 slots, fault slot_leak")
        } else {
            format!("{n} sequential WS sessions, 32 slots, fixed server")
        };
        let mut cfg = server_config(opts.seed);
        cfg.faults.slot_leak = leak;
        let srv = match reference_server::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                o.row(Row::error(config, e));
                continue;
            }
        };
        let addr = srv.ws_addr().expect("ws listener");
        let c = cycles(addr, n, opts.seed, Some(&srv)).await;
        let in_use = srv.slots_in_use();
        let st = srv.stats();
        let down = shutdown_within(srv, SETTLE).await;
        let side = if leak { "leak" } else { "fixed" };
        o.figure(&format!("{side}.failures"), c.failures);
        o.figure(&format!("{side}.slots_in_use_after"), in_use as u64);
        let first = c.first_failure.clone().map_or("none".into(), |(i, m)| format!("session {i}: {m}"));
        let measured = format!(
            "{} ok, {} failed; first failure: {first}; slots in use after: {in_use}; teardown waits \
             timed out: {}; shutdown {}",
            c.ok,
            c.failures,
            c.unsettled,
            if down { "clean" } else { "TIMED OUT" }
        );
        let (expected, ok) = if leak {
            let at_33 = matches!(&c.first_failure, Some((33, m)) if m.contains("No available client slots"));
            (
                "first failure at session 33, \"No available client slots (all 32 array slots are in use)\"",
                at_33 && c.ok == SLOTS as u64 && in_use == SLOTS,
            )
        } else {
            ("0 failures, 0 slots in use after", c.failures == 0 && in_use == 0 && st.double_releases == 0)
        };
        o.row(Row::new(config, measured, expected, ok && c.unsettled == 0 && down));
        if leak && c.first_failure.is_none() {
            o.note(
                "slot_leak did not exhaust the slots: reference-server serve.rs ConnTasks::finish calls \
                 lease.leak() only for WebSocket connections that reach teardown; see the row",
            );
        }
    }
    o
}
