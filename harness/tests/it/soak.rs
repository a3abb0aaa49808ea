//! `harness soak` end to end, as a user runs it: the binary against the embedded reference server (and
//! against an external one), checking the report's schema, counters, interval log and exit status.
//! Kept small (2 clients, small frames, about 2 s) because it runs in a debug build beside other tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::report::{self, Report, SCHEMA_VERSION, SUMMARY_MD};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harness-it-soak-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn soak(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["soak", "--clients", "2", "--frame", "160x120", "--fps", "20", "--quiet", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .expect("run harness soak")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn counter(r: &Report, name: &str) -> u64 {
    *r.counters.get(name).unwrap_or_else(|| panic!("counter {name} missing: {:?}", r.counters))
}

/// summary.md with every number and every machine-specific line redacted, for the snapshot.
fn redact(md: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in md.lines() {
        if line.starts_with("## ") {
            // Row counts of the time series depend on timing, and notes on the build profile; both
            // sections' presence is checked elsewhere.
            skipping = line == "## Time series" || line == "## Notes";
        }
        if skipping
            || line.starts_with("| versions |")
            || line.starts_with("| machine |")
            || line.starts_with("| command |")
            // Drops by reason (e.g. ASCII frames replaced, latest wins) appear only when they happen.
            || line.starts_with("| server_drops_")
        {
            continue;
        }
        let mut prev_digit = false;
        for c in line.chars() {
            if c.is_ascii_digit() {
                if !prev_digit {
                    out.push('#');
                }
                prev_digit = true;
            } else {
                out.push(c);
                prev_digit = false;
            }
        }
        out.push('\n');
    }
    out
}

#[test]
fn short_soak_writes_a_complete_report() {
    let dir = temp_dir("ok");
    let out = soak(&dir, &["--duration", "2s", "--seed", "7", "--transport", "ws"]);
    assert!(out.status.success(), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("PASS"), "{}", text(&out.stdout));

    let (_, r) = report::read(&dir).unwrap();
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    assert_eq!((r.kind.as_str(), r.seed), ("soak", 7));
    assert_eq!(r.settings["clients"], "2");
    assert_eq!(r.settings["frame"], "160x120");
    assert!(r.verdict.passed, "{:?}", r.verdict);
    assert!(r.machine.cpus >= 1 && !r.versions.harness.is_empty());

    // 2 clients × 20 fps × 2 s, every one delivered intact and accounted for.
    let sent = counter(&r, "frames_sent");
    assert_eq!(sent, 80);
    assert_eq!(counter(&r, "frames_scheduled"), sent);
    assert_eq!(counter(&r, "frames_received"), sent);
    assert_eq!(counter(&r, "frames_lost"), 0);
    assert_eq!(counter(&r, "frames_corrupt"), 0);
    assert_eq!(counter(&r, "slots_in_use_end"), 0);
    assert!(counter(&r, "ascii_frames_received") > 0);
    assert!(r.errors.is_empty(), "{:?}", r.errors);

    // The end-to-end stage saw each frame once; client stages too; server stages are present.
    let e2e = r.stage("end_to_end").and_then(|s| s.histogram.as_ref()).expect("end_to_end samples");
    assert_eq!(e2e.count, sent);
    let p = e2e.percentiles_us;
    assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p99_9 && p.p99_9 <= p.max, "{p:?}");
    assert_eq!(r.stage("client_build").unwrap().histogram.as_ref().unwrap().count, sent);
    assert!(r.stage("server_handler").unwrap().histogram.is_some());
    let enc = r.stage("client_encrypt").unwrap();
    assert!(enc.histogram.is_none() && enc.absent.as_deref().unwrap().contains("plaintext"));
    assert!(r.series("fps_sent").is_some_and(|s| !s.points.is_empty()));
    assert!(r.series("rss_bytes").is_some_and(|s| s.points.iter().all(|p| p.1 > 0.0)));

    // The interval log: one tag per stage, readable by the standard parser.
    assert_eq!(r.hlog_files, vec!["stages.hlog".to_string()]);
    let hlog = std::fs::read(dir.join("stages.hlog")).unwrap();
    let mut tags = std::collections::BTreeSet::new();
    for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&hlog) {
        if let hdrhistogram::serialization::interval_log::LogEntry::Interval(i) = entry.unwrap() {
            tags.insert(i.tag().unwrap().as_str().to_string());
        }
    }
    for t in ["end_to_end", "client_build", "client_write_flush", "server_handler", "send_lag"] {
        assert!(tags.contains(t), "{t} not in {tags:?}");
    }

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("end_to_end"));
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("## Time series"));
    insta::assert_snapshot!("soak_summary_md_redacted", redact(&md));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn slot_leak_with_churn_fails_and_says_why() {
    // WebSocket slots are never released (--fault slot-leak) while clients reconnect about 20 times a
    // second: the server runs out of its 32 slots and leaves slots in use; the soak must fail and say so.
    let dir = temp_dir("leak");
    let out = soak(
        &dir,
        &["--duration", "2s", "--seed", "11", "--transport", "ws", "--churn", "20", "--fault", "slot-leak"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("soak FAILED"), "{stderr}");
    assert!(stderr.contains("server slots still in use"), "{stderr}");

    let (_, r) = report::read(&dir).unwrap();
    assert!(!r.verdict.passed);
    assert!(counter(&r, "slots_in_use_end") > 0);
    assert!(counter(&r, "reconnects") > 20);
    assert_eq!(r.settings["faults"], "slot-leak");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn external_target_reports_server_stages_absent() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut cfg = reference_server::ServerConfig::loopback();
    cfg.encrypt = false;
    let server = rt.block_on(reference_server::start(cfg)).unwrap();
    let url = format!("tcp://{}", server.tcp_addr().unwrap());

    let dir = temp_dir("external");
    let out = soak(&dir, &["--duration", "1s", "--seed", "3", "--target", &url]);
    assert!(out.status.success(), "stderr:\n{}", text(&out.stderr));
    let (_, r) = report::read(&dir).unwrap();
    assert_eq!(r.settings["server"], "external");
    for name in ["end_to_end", "server_handler", "server_queue_wait"] {
        let st = r.stage(name).unwrap();
        assert!(st.histogram.is_none(), "{name}");
        assert!(st.absent.as_deref().unwrap().contains("external target"), "{name}: {:?}", st.absent);
    }
    assert!(r.notes.iter().any(|n| n.contains("external target")));
    assert_eq!(counter(&r, "frames_sent"), 40);
    assert!(!r.counters.contains_key("slots_in_use_end"));
    // The server saw the clients' frames even though the soak could not ask it.
    assert!(server.stats().counters.frames_received >= 40);
    rt.block_on(server.shutdown());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_server_that_stops_reading_fails_the_soak_instead_of_hanging_it() {
    // Seen against the real HEAD server (73fe49337): it rejected the plaintext clients' CLIENT_CAPABILITIES
    // but kept their sockets open without reading them, the clients blocked in a frame write forever and
    // `harness soak` never ended. Here a listener that accepts and never reads (small receive buffer).
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        s.listen(16).unwrap()
    });
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let _silent = rt.spawn(async move {
        let mut kept = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            kept.push(stream);
        }
    });

    let dir = temp_dir("silent");
    std::fs::create_dir_all(&dir).unwrap();
    let stderr_path = dir.join("stderr.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["soak", "--clients", "2", "--frame", "640x480", "--fps", "30", "--duration", "1s"])
        .args(["--seed", "5", "--quiet", "--target", &url, "--out"])
        .arg(dir.join("report"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("run harness soak");
    // A bound on a hang, not a synchronisation: the soak itself takes about 1 s + its 10.5 s drain limit.
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(19);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "harness soak still running 19 s after a 1 s soak: it hangs on a server that stops reading"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!status.success(), "stderr:\n{stderr}");
    let (_, r) = report::read(&dir.join("report")).unwrap();
    assert!(!r.verdict.passed);
    assert_eq!(r.errors.get("client_stuck"), Some(&2), "errors: {:?}", r.errors);
    assert!(stderr.contains("client_stuck"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run whose load generator misses a limit is not a PASS: the verdict is BEHIND (exit 7) with a first
/// line naming the limit crossed, the achieved rate is reported beside the requested one, and `report
/// compare` refuses the run; `--allow-behind` accepts it. The limits are set so that a light, healthy run
/// crosses them (a requested 150 % of the rate; a 1 µs lag), which makes the outcome certain on any machine;
/// the thresholds' arithmetic on real figures is unit-tested in `soak::load`.
#[test]
fn a_load_generator_that_falls_behind_is_not_a_pass() {
    let dir = temp_dir("behind");
    let run = |out: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["soak", "--clients", "2", "--frame", "160x120", "--fps", "20", "--duration", "1s"])
            .args(["--seed", "3", "--quiet", "--out"])
            .arg(out)
            .args(extra)
            .output()
            .expect("run harness soak")
    };
    let lag = run(&dir.join("lag"), &["--behind-lag-p99", "1us"]);
    assert_eq!(lag.status.code(), Some(7), "{}", text(&lag.stderr));
    assert!(text(&lag.stderr).contains("send_lag p99"), "{}", text(&lag.stderr));
    let o = run(&dir.join("strict"), &["--behind-fps-ratio", "1.5"]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(7), "stdout {} stderr {stderr}", text(&o.stdout));
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("soak BEHIND") && first.contains("fell behind") && first.contains("of 20 requested"),
        "{stderr}"
    );
    let (_, r) = report::read(&dir.join("strict")).unwrap();
    assert_eq!(r.verdict.outcome(), "BEHIND");
    let load = r.load.clone().expect("load figures");
    assert_eq!(load.requested_fps, 20.0);
    assert!(load.achieved_fps > 0.0 && load.achieved_fps < 30.0, "{load:?}");
    let md = std::fs::read_to_string(dir.join("strict").join(SUMMARY_MD)).unwrap();
    assert!(md.contains("**Verdict: BEHIND**") && md.contains("of 20 fps per client"), "{md}");
    let html = std::fs::read_to_string(dir.join("strict").join("report.html")).unwrap();
    assert!(html.contains("Verdict: BEHIND") && html.contains("of 20 fps per client"));

    let o = run(&dir.join("allowed"), &["--behind-fps-ratio", "1.5", "--allow-behind"]);
    assert!(o.status.success(), "--allow-behind: {}", text(&o.stderr));
    let (_, allowed) = report::read(&dir.join("allowed")).unwrap();
    assert_eq!(allowed.verdict.outcome(), "PASS");
    assert!(allowed.load.as_ref().and_then(|l| l.behind.as_ref()).is_some());

    let compare = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["report", "compare"])
            .arg(dir.join("allowed"))
            .arg(dir.join("strict"))
            .args(extra)
            .output()
            .expect("run harness report compare")
    };
    let refused = compare(&[]);
    assert_eq!(refused.status.code(), Some(7), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("fell behind"), "{}", text(&refused.stderr));
    let forced = compare(&["--allow-behind"]);
    assert_ne!(forced.status.code(), Some(7), "{}", text(&forced.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--profile` samples the whole process (clients and embedded server) and writes a flame graph beside
/// report.html, which links it; summary.md names it.
#[test]
fn profile_writes_a_flame_graph_the_report_links() {
    let dir = temp_dir("profile");
    // Full-size frames, so the server's checks of them take enough CPU time to be sampled many times
    // (SIGPROF follows the kernel tick: 250 a second at most here); a debug build may fall behind.
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["soak", "--clients", "2", "--frame", "640x480", "--fps", "30", "--duration", "2s"])
        .args(["--seed", "9", "--quiet", "--allow-behind", "--profile", "--out"])
        .arg(&dir)
        .output()
        .expect("run harness soak --profile");
    assert!(out.status.success(), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));

    let svg = std::fs::read_to_string(dir.join("flamegraph.svg")).expect("flamegraph.svg beside the report");
    assert!(svg.starts_with("<?xml"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("<svg") && svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count(), "unbalanced groups");
    // One <title> per frame ("name (N samples, P%)"); a 2 s run of 2 clients and the server has many.
    let frames = svg.matches(" samples, ").count();
    assert!(frames >= 20, "{frames} frames");
    // The embedded server (same process) decodes every 921,646-byte frame and checks its CRC-32C: about a
    // quarter of the samples in a debug build.
    assert!(
        svg.contains("acip::codec::Packet::decode"),
        "no acip::codec::Packet::decode frame in the flame graph"
    );
    assert!(svg.contains("reference_server::"), "no reference_server frame in the flame graph");
    if let Ok(o) = Command::new("python3")
        .args(["-c", "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])"])
        .arg(dir.join("flamegraph.svg"))
        .output()
    {
        // A real XML parser where one is installed.
        assert!(o.status.success(), "flamegraph.svg is not well-formed XML: {}", text(&o.stderr));
    }

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<a href=\"flamegraph.svg\">"), "report.html does not link the flame graph");
    let md = std::fs::read_to_string(dir.join(SUMMARY_MD)).unwrap();
    assert!(md.contains("## CPU profile") && md.contains("`flamegraph.svg`"), "{md}");
    let (_, r) = report::read(&dir).unwrap();
    assert_eq!(r.settings.get("profile").map(String::as_str), Some("flamegraph.svg"));
    assert!(r.notes.iter().any(|n| n.starts_with("CPU profile in flamegraph.svg: ")), "{:?}", r.notes);
    std::fs::remove_dir_all(&dir).unwrap();
}
