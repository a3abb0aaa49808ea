//! The `reference-client` binary against the in-process reference server: JSON report, snapshot output
//! and exit codes.

use std::process::Output;

use reference_server::ServerConfig;
use tokio::process::Command;

async fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reference-client")).args(args).output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_streams_and_prints_a_json_report() {
    let srv = reference_server::start(ServerConfig::loopback()).await.unwrap();
    let url = format!("tcp://{}", srv.tcp_addr().unwrap());
    let out =
        client(&[&url, "--frames", "5", "--fps", "100", "--frame", "64x48", "--seed", "17", "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counters"]["frames_sent"], 5);
    assert_eq!(report["seed"], 17);
    assert_eq!(report["encrypted"], true);
    assert!(report["stages"]["client_build"]["count"].as_u64() == Some(5), "{report}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_snapshot_prints_the_first_ascii_frame() {
    let srv =
        reference_server::start(ServerConfig { dialect: acip::Dialect::Head, ..ServerConfig::loopback() })
            .await
            .unwrap();
    let url = format!("ws://{}", srv.ws_addr().unwrap());
    let out = client(&[&url, "-S", "--dialect", "head", "--term", "40x10", "--frame", "64x48"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() >= 10, "{text}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_name_the_failure() {
    assert_eq!(client(&["tcp://127.0.0.1:1", "--frame", "1x1"]).await.status.code(), Some(2));
    assert_eq!(client(&["--fault", "nope", "tcp://127.0.0.1:1"]).await.status.code(), Some(2));
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = client(&[&format!("tcp://127.0.0.1:{port}"), "--frames", "1"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}
