//! `reassembly-timeout`: FEB's `MAX_REASSEMBLY_TIME` (ACIP-SPEC.md 6.2) was 100 ms until 3a4707c3 raised
//! it to 2 s; a sender whose fragments came more than 100 ms apart (a busy browser, a congested link) had
//! its frames dropped. Fragments of one 230,446-byte message go out 150 ms apart against a 100 ms timeout
//! (broken: the server gives up on the message) and a 2 s one (fixed: delivered). The 150 ms pacing is
//! the workload being reproduced, not synchronisation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use acip::ws::OpCode;
use acip::{Dialect, Packet, PacketType};

use super::peer::{pattern_frame, ws_target, Seen, WsPeer};
use super::{kinds, ms, server_config, settle, shutdown_within, Options, Outcome, Row, Scenario, SETTLE};

/// Spacing of the fragments.
pub const GAP: Duration = Duration::from_millis(150);

/// What the sender saw.
struct Sent {
    fragments: usize,
    /// Fragments whose write failed (the server had already closed).
    write_errors: usize,
    /// The server's answer to a PING sent after the message: PONG (the connection survived) or its close.
    answer: Seen,
    took: Duration,
}

async fn slow_message(addr: SocketAddr, fragment: usize, seed: u64) -> Result<Sent, String> {
    let mut p = WsPeer::ws_plain(addr, (seed as u32).to_be_bytes()).await?;
    p.join(Dialect::Feb, (80, 24), 30, SETTLE).await.map_err(|s| format!("join: {s}"))?;
    let bytes = pattern_frame(320, 240, 0, 0).encode();
    let chunks: Vec<&[u8]> = bytes.chunks(fragment).collect();
    let t0 = Instant::now();
    let mut write_errors = 0;
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(GAP).await;
        }
        let op = if i == 0 { OpCode::Binary } else { OpCode::Continuation };
        if p.send_frame(op, i + 1 == chunks.len(), c).await.is_err() {
            write_errors += 1;
        }
    }
    let took = t0.elapsed();
    let _ = p.send_packet(&Packet::empty(PacketType::PING)).await;
    let answer = match p.until(PacketType::PONG, SETTLE).await {
        Ok(pong) => Seen::Packet(pong),
        Err(other) => other,
    };
    if matches!(answer, Seen::Packet(_)) {
        p.close_normally(SETTLE).await;
    }
    Ok(Sent { fragments: chunks.len(), write_errors, answer, took })
}

pub async fn run(opts: &Options) -> Outcome {
    let mut o = Outcome::new(Scenario::ReassemblyTimeout);
    // Quick: 4 fragments (3 gaps); full: the native client's 4096-byte fragments (57, 56 gaps, ~8.4 s).
    let fragment = if opts.quick { 230_446usize.div_ceil(4) } else { acip::ws::FRAGMENT_SIZE_NATIVE_CLIENT };
    o.figure("fragment_bytes", fragment as u64);
    if let Some(url) = &opts.target {
        let config = format!("target {url}: fragments {} ms apart", GAP.as_millis());
        match ws_target(url) {
            Ok(addr) => match slow_message(addr, fragment, opts.seed).await {
                Ok(s) => {
                    let kept = matches!(s.answer, Seen::Packet(_));
                    o.row(Row::new(
                        config,
                        format!(
                            "{} fragments over {}; answer: {}",
                            s.fragments,
                            ms(s.took.as_micros() as u64),
                            s.answer
                        ),
                        "delivered (PONG after the message) on a server with the 2 s timeout",
                        kept,
                    ));
                }
                Err(e) => o.row(Row::error(config, e)),
            },
            Err(e) => o.row(Row::error(config, e)),
        }
        return o;
    }
    for timeout in [acip::ws::REASSEMBLY_TIMEOUT_OLD, acip::ws::REASSEMBLY_TIMEOUT_FIXED] {
        let broken = timeout < GAP;
        let config = format!(
            "fragments of {fragment} B, {} ms apart, reassembly timeout {}",
            GAP.as_millis(),
            ms(timeout.as_micros() as u64)
        );
        let mut cfg = server_config(opts.seed);
        cfg.reassembly_timeout = timeout;
        let srv = match reference_server::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                o.row(Row::error(config, e));
                continue;
            }
        };
        let res = slow_message(srv.ws_addr().expect("ws listener"), fragment, opts.seed).await;
        let settled = settle(&srv).await;
        let st = srv.stats();
        let down = shutdown_within(srv, SETTLE).await;
        let s = match res {
            Ok(s) => s,
            Err(e) => {
                o.row(Row::error(config, e));
                continue;
            }
        };
        let side = if broken { "old_timeout" } else { "fixed_timeout" };
        o.figure(&format!("{side}.frames_received"), st.counters.frames_received);
        let gap = st.stages.get("fragment_gap").map_or("-".into(), |g| ms(g.p50_us));
        let measured = format!(
            "{} fragments ({} writes failed), server received {} frame(s), fragment gap p50 {gap}; answer: {}; \
             server errors: {}",
            s.fragments,
            s.write_errors,
            st.counters.frames_received,
            s.answer,
            kinds(&st.counters.errors)
        );
        let (expected, ok) = if broken {
            let timed_out = matches!(&s.answer, Seen::Close { code: 1002, reason } if reason.contains("reassembly timeout"))
                || st.counters.errors.contains_key("reassembly_timeout");
            (
                "message dropped: close 1002 \"reassembly timeout\", 0 frames",
                timed_out && st.counters.frames_received == 0,
            )
        } else {
            (
                "delivered: 1 frame, connection kept (PONG)",
                matches!(s.answer, Seen::Packet(_))
                    && st.counters.frames_received == 1
                    && st.counters.errors.is_empty(),
            )
        };
        o.row(Row::new(config, measured, expected, ok && settled && down));
    }
    o
}
