//! `harness check` end to end against the reference server started as a child process (the same program
//! as the `reference-server` binary, run as `harness __reference-server`), with faults that really crash
//! (SIGABRT), really hang, and a restart that really cannot bind.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::report::{Report, Table};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harness-it-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A port nothing listens on now (the server binds it with SO_REUSEADDR).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn server_cmd(port: u16, fault: &str) -> String {
    format!(
        "{} __reference-server -- --no-encrypt --tcp off --ws 127.0.0.1:{port} --max-clients 16 --fault {fault}",
        env!("CARGO_BIN_EXE_harness")
    )
}

fn check(server: &str, port: u16, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["check", "--server", server, "--target", &format!("ws://127.0.0.1:{port}"), "--quick"])
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run harness check")
}

fn index(out: &Path) -> Report {
    Report::from_json(&std::fs::read_to_string(out.join("index.json")).unwrap()).unwrap()
}

fn table<'a>(r: &'a Report, title: &str) -> &'a Table {
    r.tables.iter().find(|t| t.title == title).unwrap_or_else(|| panic!("no table {title}"))
}

/// unit id -> (verdict, detail).
fn verdicts(r: &Report) -> std::collections::BTreeMap<String, (String, String)> {
    table(r, "Units").rows.iter().map(|row| (row[1].clone(), (row[2].clone(), row[3].clone()))).collect()
}

/// Reads a JUnit file the way CI tools do: Python's XML parser (always there) for the structure, and the
/// `junitparser` package (installed by .ci/run) when present.
fn junit_counts(path: &Path) -> String {
    let script = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
cases = root.findall("./testsuite/testcase")
kinds = {k: sum(1 for c in cases if c.find(k) is not None) for k in ("failure", "error", "skipped")}
assert int(root.get("tests")) == len(cases)
assert int(root.get("errors")) == kinds["error"] and int(root.get("failures")) == kinds["failure"]
try:
    import junitparser
    x = junitparser.JUnitXml.fromfile(sys.argv[1])
    n = sum(s.tests for s in x)
    assert n == len(cases), (n, len(cases))
    reader = "junitparser"
except ImportError:
    reader = "etree only"
print(f"tests={len(cases)} failures={kinds['failure']} errors={kinds['error']} skipped={kinds['skipped']} ({reader})")
"#;
    let o = Command::new("python3").args(["-c", script]).arg(path).output().expect("python3");
    assert!(o.status.success(), "JUnit file does not read back: {}", text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn a_crash_is_attributed_to_its_case_the_server_restarted_and_the_rest_still_runs() {
    let dir = temp_dir("crash");
    let port = free_port();
    let junit = dir.join("check.xml");
    let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/captures");
    let o = check(
        &server_cmd(port, "abort-on-interleave"),
        port,
        &dir.join("out"),
        &[
            "--suites",
            "conformance,soak,replay",
            "--cases",
            "4.1,soak,ws_plaintext",
            "--captures",
            captures.to_str().unwrap(),
            "--soak-duration",
            "1s",
            "--soak-clients",
            "2",
            "--rerun-crashers",
            "2",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("CRASH") && stdout.contains("4.1.2") && stdout.contains("SIGABRT"), "{stdout}");

    let r = index(&dir.join("out"));
    let v = verdicts(&r);
    assert_eq!(v["4.1.2"].0, "CRASH", "{v:?}");
    assert!(v["4.1.2"].1.contains("server crashed: SIGABRT"), "{v:?}");
    // The cases after the crash ran on a restarted server, and so did the soak.
    for id in ["4.1.1", "4.1.3", "4.1.4", "4.1.5", "4.1.6", "soak", "ws_plaintext"] {
        assert_eq!(v[id].0, "PASS", "{id}: {:?}", v[id]);
    }
    let crashes = table(&r, "Crashes");
    assert_eq!(crashes.rows.len(), 1);
    let row = &crashes.rows[0];
    assert_eq!(
        (row[0].as_str(), row[1].as_str(), row[2].as_str()),
        ("conformance 4.1.2", "SIGABRT", "crashed 2/2")
    );
    // The backtrace captured from outside: the crashing thread, through abort, into the server's code.
    assert!(row[4].contains("(crashed: SIGABRT)") && row[4].contains("abort"), "{}", row[4]);
    assert!(Path::new(&row[3]).exists(), "crash report {}", row[3]);
    // The case's last wire events: the BINARY frame that arrived before the previous message's FIN.
    assert!(row[5].contains("BINARY fin=0") && row[5].contains("EOF"), "{}", row[5]);
    // Started once, restarted after the crash, and once for each of the two reruns.
    assert!(r.counters["server_starts"] >= 4, "{:?}", r.counters);
    assert_eq!(r.counters["crash"], 1);
    // The server's own last words are kept with the case.
    let logs = table(&r, "Server log while each unit that did not pass ran");
    assert!(
        logs.rows.iter().any(|l| l[0] == "conformance 4.1.2" && l[1].contains("abort-on-interleave")),
        "{:?}",
        logs.rows
    );
    for f in ["index.html", "summary.md"] {
        assert!(dir.join("out").join(f).exists(), "{f}");
    }
    let counts = junit_counts(&junit);
    assert!(counts.starts_with("tests=8 failures=0 errors=1 skipped=0"), "{counts}");

    // Against itself as the baseline nothing is new: exit 0. Against a clean baseline the crash is new.
    let again = check(
        &server_cmd(port, "abort-on-interleave"),
        port,
        &dir.join("again"),
        &["--suites", "conformance", "--cases", "4.1", "--baseline", dir.join("out").to_str().unwrap()],
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_hung_server_is_detected_snapshotted_and_restarted_and_parallel_cases_are_isolated() {
    let dir = temp_dir("hang");
    let port = free_port();
    let o = check(
        &server_cmd(port, "hang-on-interleave"),
        port,
        &dir.join("out"),
        &["--suites", "conformance", "--cases", "4.1", "--jobs", "3", "--hang-timeout", "2s"],
    );
    assert_eq!(o.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let r = index(&dir.join("out"));
    let v = verdicts(&r);
    assert_eq!(v["4.1.2"].0, "HANG", "{v:?}");
    assert!(v["4.1.2"].1.contains("rerun alone"), "{v:?}");
    for id in ["4.1.1", "4.1.3", "4.1.4", "4.1.5", "4.1.6"] {
        assert_eq!(v[id].0, "PASS", "{id}: {:?}", v[id]);
    }
    let hangs = table(&r, "Hangs");
    let snapshot = PathBuf::from(&hangs.rows[0][2]);
    let md = std::fs::read_to_string(&snapshot).unwrap_or_else(|e| panic!("{}: {e}", snapshot.display()));
    assert!(md.contains("### Thread"), "{md}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_restart_that_cannot_bind_is_a_finding_not_a_harness_error() {
    let dir = temp_dir("bind");
    let port = free_port();
    // The port every restart asks for is held by this test.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let flag = dir.join("started-once");
    let harness = env!("CARGO_BIN_EXE_harness");
    let server = format!(
        "sh -c 'if [ -e {flag} ]; then exec {harness} __reference-server -- --no-encrypt --tcp off --ws 127.0.0.1:{held_port}; \
         else touch {flag}; exec {harness} __reference-server -- --no-encrypt --tcp off --ws 127.0.0.1:{port} --fault abort-on-interleave; fi'",
        flag = flag.display()
    );
    let o = check(
        &server,
        port,
        &dir.join("out"),
        &["--suites", "conformance", "--cases", "4.1.1,4.1.2,4.1.3", "--ready-timeout", "5s"],
    );
    assert_eq!(o.status.code(), Some(1), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let r = index(&dir.join("out"));
    let v = verdicts(&r);
    assert_eq!(
        (v["4.1.1"].0.as_str(), v["4.1.2"].0.as_str(), v["4.1.3"].0.as_str()),
        ("PASS", "CRASH", "NOT RUN")
    );
    let findings = table(&r, "Findings");
    assert_eq!(findings.rows.len(), 3, "{:?}", findings.rows);
    assert!(findings.rows[0][0].contains("could not bind"), "{:?}", findings.rows);
    assert!(findings.rows[0][1].contains(&held_port.to_string()), "{:?}", findings.rows);
    assert!(v["4.1.3"].1.contains("could not be started"), "{v:?}");
    drop(held);
    std::fs::remove_dir_all(&dir).unwrap();
}
