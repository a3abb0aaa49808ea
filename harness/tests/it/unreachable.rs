//! Every subcommand that takes a target stops with one "target unreachable" error (exit 6) when nothing
//! accepts connections there, instead of running (and failing) every case; a target that accepts and then
//! closes every connection is still tested.

use std::process::Command;

/// A loopback port that was just free: bound, read back, released.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_harness")).args(args).output().expect("harness runs");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn every_target_taking_subcommand_says_once_that_nothing_listens() {
    let port = closed_port();
    let ws = format!("ws://127.0.0.1:{port}");
    let tcp = format!("tcp://127.0.0.1:{port}");
    let out = std::env::temp_dir().join(format!("acip-unreachable-{}", std::process::id()));
    let out = out.to_str().unwrap();
    let capture = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/captures/old9850bc9_ws_plaintext.pcap");
    let cases: Vec<Vec<&str>> = vec![
        vec!["conformance", &ws],
        vec!["conformance", &tcp],
        vec!["repro", "slot-exhaustion", "--quick", "--target", &ws, "--out", out],
        vec!["replay", capture, "--against", &ws, "--fast"],
        vec!["soak", "--clients", "2", "--duration", "1s", "--target", &ws, "--out", out, "--quiet"],
    ];
    for args in cases {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, Some(6), "{args:?}: stdout {stdout} stderr {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one error line, got {stderr}");
        assert!(
            lines[0].contains("target unreachable")
                && lines[0].contains(&format!("127.0.0.1:{port}"))
                && lines[0].contains("connection refused"),
            "{args:?}: {stderr}"
        );
        assert!(!stdout.contains("FAILED"), "{args:?}: no case may run: {stdout}");
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn a_target_that_accepts_then_closes_is_still_tested_case_by_case() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept every connection and close it at once, until the test ends.
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let (code, stdout, stderr) =
        run(&["conformance", &format!("tcp://127.0.0.1:{port}"), "--cases", "1.1", "--jobs", "2"]);
    assert_eq!(code, Some(1), "a failed verdict, not unreachable: {stdout} {stderr}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(!stderr.contains("unreachable"), "{stderr}");
}
