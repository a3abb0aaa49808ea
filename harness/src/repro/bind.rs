//! `bind-flake`: the port-bind flakiness of ACIP-SPEC.md 8 (exit 41 = ERROR_NETWORK_BIND; "run 2 cannot
//! bind, run 3 reports success but the client gets ECONNREFUSED"), split into its three suspected causes,
//! each beside its fix:
//!
//! - (a) quick restarts on one fixed port while clients hold connections. The server closes first, so
//!   its side of each connection (local port = the listening port) sits in TIME_WAIT; without
//!   SO_REUSEADDR (`no_reuseaddr`) the next bind fails with EADDRINUSE.
//! - (b) a dual-stack conflict: `[::]` bound without IPV6_V6ONLY also takes the IPv4 port, so the IPv4
//!   listener of `server 0.0.0.0 ::` fails. With V6ONLY set explicitly both bind. The IPv4 bind here is
//!   127.0.0.1 (any IPv4 address on the port conflicts the same way as 0.0.0.0).
//! - (c) READY announced before `listen()` (`early_ready`): a client that connects on READY gets
//!   ECONNREFUSED; a server that announces READY after listening does not.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reference_server::{ServerConfig, ServerError, ServerHandle};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{server_config, shutdown_within, Options, Outcome, Row, Scenario, SETTLE};

/// Connections held open across each restart.
const HOLDERS: usize = 3;

/// Linux errno names for the errors this scenario can meet.
fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(98) => "EADDRINUSE (98)".into(),
        Some(99) => "EADDRNOTAVAIL (99)".into(),
        Some(111) => "ECONNREFUSED (111)".into(),
        Some(22) => "EINVAL (22)".into(),
        Some(97) => "EAFNOSUPPORT (97)".into(),
        Some(n) => format!("os error {n}"),
        None => e.to_string(),
    }
}

fn server_errno(e: &ServerError) -> String {
    match e {
        ServerError::Bind { source, .. } => errno_name(source),
        other => other.to_string(),
    }
}

/// Runs `trial` `n` times and counts the failures by OS error; a setup error (the outer `Err`) stops the
/// trials and is returned instead.
async fn trials<F, Fut>(n: u64, mut trial: F) -> Result<(u64, BTreeMap<String, u64>), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<(), String>, String>>,
{
    let mut failures = 0u64;
    let mut errors = BTreeMap::new();
    for _ in 0..n {
        if let Err(e) = trial().await? {
            failures += 1;
            *errors.entry(e).or_insert(0u64) += 1;
        }
    }
    Ok((failures, errors))
}

fn tally(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".into();
    }
    errors.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ")
}

fn tcp_only(seed: u64, addr: SocketAddr) -> ServerConfig {
    ServerConfig {
        tcp: Some(addr),
        ws: None,
        // Held connections stay until the server closes them at shutdown.
        tcp_idle_timeout: Duration::from_secs(30),
        ..server_config(seed)
    }
}

/// Opens `holders` connections and waits until the server has accepted them all.
async fn hold(srv: &ServerHandle, holders: usize) -> Result<Vec<TcpStream>, String> {
    let addr = srv.tcp_addr().expect("tcp listener");
    let mut held = Vec::new();
    for _ in 0..holders {
        held.push(TcpStream::connect(addr).await.map_err(|e| format!("holder connect: {}", errno_name(&e)))?);
    }
    if !srv.wait_until(SETTLE, |s| s.connections() == holders).await {
        return Err("the server did not accept the holders".into());
    }
    Ok(held)
}

/// Each holder reads until the server's FIN, then closes: the server closed first, so TIME_WAIT is on
/// the server's side (the listening port).
async fn release(held: Vec<TcpStream>) {
    for mut s in held {
        let mut b = [0u8; 256];
        let _ = tokio::time::timeout(SETTLE, async {
            while let Ok(n) = s.read(&mut b).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

struct Restarts {
    attempts: u64,
    failures: u64,
    errors: BTreeMap<String, u64>,
}

/// `n` restarts of a TCP server on one port, `holders` connections held across each.
async fn restarts(n: u64, no_reuseaddr: bool, holders: usize, seed: u64) -> Result<Restarts, String> {
    let mut cfg = tcp_only(seed, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    cfg.faults.no_reuseaddr = no_reuseaddr;
    let first = reference_server::start(cfg.clone()).await.map_err(|e| format!("first start: {e}"))?;
    cfg.tcp = first.tcp_addr();
    let mut current = Some(first);
    let mut r = Restarts { attempts: 0, failures: 0, errors: BTreeMap::new() };
    for _ in 0..n {
        if let Some(srv) = current.take() {
            let held = match hold(&srv, holders).await {
                Ok(h) => h,
                Err(e) => {
                    shutdown_within(srv, SETTLE).await;
                    return Err(e);
                }
            };
            if !shutdown_within(srv, SETTLE).await {
                return Err("shutdown did not finish".into());
            }
            release(held).await;
        }
        r.attempts += 1;
        match reference_server::start(cfg.clone()).await {
            Ok(s) => current = Some(s),
            Err(e) => {
                r.failures += 1;
                *r.errors.entry(server_errno(&e)).or_default() += 1;
            }
        }
    }
    if let Some(s) = current {
        shutdown_within(s, SETTLE).await;
    }
    Ok(r)
}

/// `[::]` with the given V6ONLY, listening, then the reference server on 127.0.0.1 at the same port.
/// The port is one that was free on 127.0.0.1 a moment before (an ephemeral IPv6 port may be taken on
/// IPv4 by an unrelated socket, which would look like the conflict under test).
async fn dual_stack(v6only: bool, seed: u64) -> Result<Result<(), String>, String> {
    let mut attempt = 0;
    let (s, port) = loop {
        attempt += 1;
        let port = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("probing a free IPv4 port: {e}"))?
            .port();
        let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| format!("IPv6 socket: {e}"))?;
        s.set_reuse_address(true).map_err(|e| e.to_string())?;
        s.set_only_v6(v6only).map_err(|e| e.to_string())?;
        match s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into()) {
            Ok(()) => break (s, port),
            // Taken again between the probe and this bind: setup, not a trial; pick another port.
            Err(_) if attempt < 5 => continue,
            Err(e) => return Err(format!("bind [::]:{port}: {e}")),
        }
    };
    s.listen(16).map_err(|e| e.to_string())?;
    let v4 = tcp_only(seed, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let r = match reference_server::start(v4).await {
        Ok(srv) => {
            shutdown_within(srv, SETTLE).await;
            Ok(())
        }
        Err(e) => Err(server_errno(&e)),
    };
    drop(s);
    Ok(r)
}

/// A client that connects the moment `start` returns (the READY line), once.
async fn connect_on_ready(early: bool, seed: u64) -> Result<Result<(), String>, String> {
    let mut cfg = tcp_only(seed, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    cfg.faults.early_ready = early;
    let srv = reference_server::start(cfg).await.map_err(|e| e.to_string())?;
    let r = match TcpStream::connect(srv.tcp_addr().expect("tcp listener")).await {
        Ok(s) => {
            drop(s);
            Ok(())
        }
        Err(e) => Err(errno_name(&e)),
    };
    shutdown_within(srv, SETTLE).await;
    Ok(r)
}

pub async fn run(opts: &Options) -> Outcome {
    let mut o = Outcome::new(Scenario::BindFlake);
    if opts.target.is_some() {
        o.note("--target ignored: this scenario restarts and rebinds the server itself");
    }
    let n: u64 = if opts.quick { 3 } else { 20 };
    o.figure("trials", n);

    // (a) restarts over TIME_WAIT, and a control without held connections (no TIME_WAIT): the fault alone
    // must not fail, or the row would not show that TIME_WAIT is the cause.
    for (no_reuse, holders) in [(true, HOLDERS), (false, HOLDERS), (true, 0)] {
        let config = format!(
            "(a) {n} restarts on one port, {holders} connections held, {}",
            if no_reuse { "no SO_REUSEADDR (fault no_reuseaddr)" } else { "SO_REUSEADDR" }
        );
        match restarts(n, no_reuse, holders, opts.seed).await {
            Ok(r) => {
                let side = match (no_reuse, holders) {
                    (true, 0) => "no_reuseaddr_no_holders",
                    (true, _) => "no_reuseaddr",
                    (false, _) => "reuseaddr",
                };
                o.figure(&format!("restart.{side}.failures"), r.failures);
                let measured =
                    format!("{} of {} restarts failed; errors: {}", r.failures, r.attempts, tally(&r.errors));
                let (expected, ok) = if no_reuse && holders > 0 {
                    let only_in_use = r.errors.keys().all(|k| k.starts_with("EADDRINUSE"));
                    (
                        "every restart fails with EADDRINUSE (98) while TIME_WAIT holds the port",
                        r.failures == r.attempts && only_in_use,
                    )
                } else if no_reuse {
                    ("control, nothing in TIME_WAIT: 0 failures", r.failures == 0)
                } else {
                    ("0 failures", r.failures == 0)
                };
                o.row(Row::new(config, measured, expected, ok && r.attempts == n));
            }
            Err(e) => o.row(Row::error(config, e)),
        }
    }

    // (b) dual stack.
    for v6only in [false, true] {
        let config = format!(
            "(b) [::] {} then 127.0.0.1 on the same port, {n} trials",
            if v6only { "with IPV6_V6ONLY" } else { "without IPV6_V6ONLY" }
        );
        let (failures, errors) = match trials(n, || dual_stack(v6only, opts.seed)).await {
            Ok(counts) => counts,
            Err(e) => {
                o.row(Row::error(config, e));
                continue;
            }
        };
        let side = if v6only { "v6only" } else { "dual_stack" };
        o.figure(&format!("dual.{side}.failures"), failures);
        let measured = format!("{failures} of {n} IPv4 binds failed; errors: {}", tally(&errors));
        let (expected, ok) = if v6only {
            ("0 failures", failures == 0)
        } else {
            (
                "every IPv4 bind fails with EADDRINUSE (98)",
                failures == n && errors.keys().all(|k| k.starts_with("EADDRINUSE")),
            )
        };
        o.row(Row::new(config, measured, expected, ok));
    }

    // (c) READY before listen.
    for early in [true, false] {
        let config = format!(
            "(c) connect on READY, {n} trials, {}",
            if early { "READY before listen (fault early_ready)" } else { "READY after listen" }
        );
        let (failures, errors) = match trials(n, || connect_on_ready(early, opts.seed)).await {
            Ok(counts) => counts,
            Err(e) => {
                o.row(Row::error(config, e));
                continue;
            }
        };
        let side = if early { "early_ready" } else { "ready_after_listen" };
        o.figure(&format!("ready.{side}.failures"), failures);
        let measured = format!("{failures} of {n} connects failed; errors: {}", tally(&errors));
        let (expected, ok) = if early {
            (
                "every connect fails with ECONNREFUSED (111)",
                failures == n && errors.keys().all(|k| k.starts_with("ECONNREFUSED")),
            )
        } else {
            ("0 failures", failures == 0)
        };
        o.row(Row::new(config, measured, expected, ok));
    }
    o
}
