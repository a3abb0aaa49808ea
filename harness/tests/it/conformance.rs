//! `harness conformance` against the reference server in-process (issue 9): every case on WebSocket
//! `feb`, WebSocket `head` and TCP passes (no FAILED outside reports/conformance/known-deviations.md),
//! and each fault of the reference server makes the case that should catch it FAILED. Servers run with
//! short timeouts (200 ms reassembly, 1.5 s idle case) so the whole module takes seconds.

use std::time::Duration;

use acip::Dialect;
use harness::conformance::{run_suite, Behaviour, Params, SuiteConfig, SuiteReport, Target};
use reference_server::{Faults, ServerConfig, ServerHandle};

/// Cases allowed to fail against the reference server: (target, case, reason). Mirrors
/// reports/conformance/known-deviations.md.
const KNOWN_DEVIATIONS: &[(&str, &str, &str)] = &[];

/// The in-test servers' reassembly timeout: short, but long enough that a loaded 2-core machine does not
/// stall 200 ms between two reads of one burst of fragments.
const REASSEMBLY_MS: u64 = 500;

fn params() -> Params {
    Params {
        reassembly_timeout: Duration::from_millis(REASSEMBLY_MS),
        idle: Duration::from_millis(1500),
        settle: Duration::from_secs(1),
        flood: Duration::from_secs(2),
    }
}

async fn server(dialect: Dialect, faults: Faults, reassembly_ms: u64) -> ServerHandle {
    let cfg = ServerConfig {
        dialect,
        faults,
        reassembly_timeout: Duration::from_millis(reassembly_ms),
        max_clients: if faults.slot_leak { 9 } else { 99 },
        slot_capacity: if faults.slot_leak { 32 } else { 256 },
        ..ServerConfig::loopback()
    };
    reference_server::start(cfg).await.expect("reference server starts")
}

fn suite(url: String, dialect: Dialect, cases: Option<&str>) -> SuiteConfig {
    SuiteConfig {
        target: Target::parse(&url, dialect, true).expect("target parses"),
        cases: cases.map(str::to_string),
        params: params(),
        jobs: 8,
        seed: 7,
        arguments: vec!["conformance".into(), url],
    }
}

fn ws(s: &ServerHandle) -> String {
    format!("ws://{}", s.ws_addr().expect("ws listener"))
}

fn tcp(s: &ServerHandle) -> String {
    format!("tcp://{}", s.tcp_addr().expect("tcp listener"))
}

fn unexpected_failures(r: &SuiteReport) -> Vec<String> {
    r.failed()
        .into_iter()
        .filter(|c| {
            let t = format!("{}-{}", r.transport, r.dialect);
            let t = if r.transport == "tcp" { "tcp".to_string() } else { t };
            !KNOWN_DEVIATIONS.iter().any(|(target, id, _)| *target == t && *id == c.id)
        })
        .map(|c| {
            format!("{} {} [{}]: {} (close {})", r.target, c.id, c.description, c.detail, c.behaviour_close)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_server_passes_every_case_on_ws_feb_ws_head_and_tcp() {
    let feb = server(Dialect::Feb, Faults::default(), REASSEMBLY_MS).await;
    let head = server(Dialect::Head, Faults::default(), REASSEMBLY_MS).await;
    let (a, b, c) = (
        suite(ws(&feb), Dialect::Feb, None),
        suite(ws(&head), Dialect::Head, None),
        suite(tcp(&feb), Dialect::Feb, None),
    );
    let (ra, rb, rc) = tokio::join!(run_suite(&a), run_suite(&b), run_suite(&c));
    let mut failures = Vec::new();
    for r in [&ra, &rb, &rc] {
        failures.extend(unexpected_failures(r));
        // No case hangs, and none is skipped: the in-test servers encrypt, so section 8 runs.
        assert!(r.cases.iter().all(|c| c.behaviour != Behaviour::Unimplemented), "{}", r.target);
    }
    assert!(failures.is_empty(), "FAILED cases:\n{}", failures.join("\n"));
    let mut ids: Vec<&str> =
        [&ra, &rb, &rc].iter().flat_map(|r| r.cases.iter().map(|c| c.id.as_str())).collect();
    ids.sort_unstable();
    ids.dedup();
    assert!(ids.len() >= 40, "{} distinct cases", ids.len());
    assert!(ra.cases.len() >= 40 && rb.cases.len() >= 40, "{} / {}", ra.cases.len(), rb.cases.len());
    // The dialect difference the issue names: one packet split across messages.
    let verdict =
        |r: &SuiteReport, id: &str| r.cases.iter().find(|c| c.id == id).map(|c| (c.behaviour, c.close_code));
    assert_eq!(verdict(&ra, "5.1.4"), Some((Behaviour::Ok, Some(1002))));
    assert_eq!(verdict(&rb, "5.1.4").map(|v| v.0), Some(Behaviour::Ok));
    // Reports: index.json and a self-contained index.html with one section per case.
    let dir = std::env::temp_dir().join(format!("harness-it-conformance-{}", std::process::id()));
    ra.write_dir(&dir).expect("reports written");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let first = &json["cases"][0];
    for key in [
        "id",
        "description",
        "behaviour",
        "behaviour_close",
        "duration_ms",
        "close_code",
        "spec",
        "sent",
        "received",
    ] {
        assert!(first.get(key).is_some(), "index.json case lacks {key}: {first}");
    }
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(html.contains("id=\"case-2_1_2\"") && html.contains("href=\"#case-10_1_1\""));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    let _ = std::fs::remove_dir_all(&dir);
    feb.shutdown().await;
    head.shutdown().await;
}

/// A reassembly timeout shorter than the suite assumes (100 ms, the pre-3a4707c3 value, against fragments
/// 150 ms apart) breaks the slow-but-legal fragments case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_reassembly_timeout_fails_the_slow_fragments_case() {
    let s = server(Dialect::Feb, Faults::default(), 100).await;
    let mut cfg = suite(ws(&s), Dialect::Feb, Some("9.1.1"));
    // The suite believes the timeout is 200 ms, so it spaces fragments 150 ms apart.
    cfg.params.reassembly_timeout = Duration::from_millis(200);
    let r = run_suite(&cfg).await;
    assert_eq!(r.cases.len(), 1);
    assert_eq!(r.cases[0].behaviour, Behaviour::Failed, "{:?}", r.cases[0]);
    assert_eq!(r.cases[0].close_code, Some(1002), "{:?}", r.cases[0]);
    s.shutdown().await;
}

/// `slot_leak` (WebSocket slots never released, ACIP-SPEC.md 7.1) breaks the reconnect case at the 33rd
/// connection; TCP slots are released, so the TCP run of the same case (on a server whose slots the
/// WebSocket run has not used up) passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_leak_fails_the_reconnect_case() {
    let s = server(Dialect::Feb, Faults { slot_leak: true, ..Faults::default() }, 200).await;
    let r = run_suite(&suite(ws(&s), Dialect::Feb, Some("9.1.6"))).await;
    assert_eq!(r.cases[0].behaviour, Behaviour::Failed, "{:?}", r.cases[0]);
    assert!(r.cases[0].detail.contains("of 40 failed"), "{}", r.cases[0].detail);
    s.shutdown().await;
    // A fresh server: the WebSocket run above leaked all 32 slots, which TCP clients share.
    let s = server(Dialect::Feb, Faults { slot_leak: true, ..Faults::default() }, 200).await;
    let t = run_suite(&suite(tcp(&s), Dialect::Feb, Some("9.1.6"))).await;
    assert_eq!(t.cases[0].behaviour, Behaviour::Ok, "{:?}", t.cases[0]);
    assert_eq!(s.slots_in_use(), 0);
    s.shutdown().await;
}

/// `rx_pause` (a slow consumer behind a tiny queue, ACIP-SPEC.md 8) breaks the pipelined-PING case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rx_pause_fails_the_pipeline_case() {
    let s = server(Dialect::Feb, Faults { rx_pause: true, ..Faults::default() }, 200).await;
    let (sw, st) = (suite(ws(&s), Dialect::Feb, Some("9.1.5")), suite(tcp(&s), Dialect::Feb, Some("9.1.5")));
    let (w, t) = tokio::join!(run_suite(&sw), run_suite(&st));
    for r in [w, t] {
        assert_eq!(r.cases[0].behaviour, Behaviour::Failed, "{:?}", r.cases[0]);
        assert!(r.cases[0].detail.contains("PONGs within"), "{}", r.cases[0].detail);
    }
    s.shutdown().await;
}

/// The binary as a user runs it: exit 0, index.json on stdout with --json, reports in --out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_writes_reports_and_exits_by_verdict() {
    let s = server(Dialect::Head, Faults::default(), 200).await;
    let out = std::env::temp_dir().join(format!("harness-it-conformance-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let url = ws(&s);
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["conformance", &url, "--dialect", "head", "--cases", "1.1.1,2.1", "--json", "--out"])
        .arg(&out)
        .output()
        .await
        .expect("harness runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is index.json");
    assert_eq!(json["dialect"], "head");
    assert_eq!(json["cases"].as_array().map(Vec::len), Some(9));
    assert!(out.join("index.json").is_file() && out.join("index.html").is_file());
    // A usage error exits 2.
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["conformance", "http://127.0.0.1:1"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&out);
    s.shutdown().await;
}
