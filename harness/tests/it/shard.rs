//! Sharded soaks end to end, as a user runs them: a start gate and N `harness soak --shard I/N` processes
//! on loopback against one reference server, `harness report merge`, and the same run unsharded with the
//! same seed beside it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use harness::report::{self, hlog, Report};
use hdrhistogram::Histogram;

const SHARDS: u32 = 4;
const SEED: &str = "11";

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harness-it-shard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

/// The soak every run here shares (the whole run's settings; shards add --shard and --wait-start).
fn soak_args(target: &str, out: &Path) -> Vec<String> {
    let mut a: Vec<String> =
        ["soak", "--clients", "8", "--frame", "160x120", "--fps", "20", "--duration", "2s"]
            .map(String::from)
            .to_vec();
    a.extend(["--seed", SEED, "--quiet", "--allow-behind", "--target", target].map(String::from));
    a.push("--out".into());
    a.push(out.display().to_string());
    a
}

fn counter(r: &Report, name: &str) -> u64 {
    *r.counters.get(name).unwrap_or_else(|| panic!("counter {name} missing: {:?}", r.counters))
}

/// Every stage's histogram from the shards' own interval logs, summed here independently of the merge.
fn summed_from_logs(dirs: &[PathBuf]) -> std::collections::BTreeMap<String, Histogram<u64>> {
    let mut out = std::collections::BTreeMap::new();
    for d in dirs {
        for i in hlog::read_log(&d.join("stages.hlog")).unwrap().intervals {
            out.entry(i.tag).or_insert_with(hlog::new_histogram).add(&i.histogram).unwrap();
        }
    }
    out
}

#[test]
fn four_shards_merged_equal_the_unsharded_run_with_the_same_seed() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut cfg = reference_server::ServerConfig::loopback();
    cfg.encrypt = false;
    cfg.max_clients = 16;
    let server = rt.block_on(reference_server::start(cfg)).unwrap();
    let target = format!("ws://{}", server.ws_addr().unwrap());
    let dir = temp_dir("merge");

    // The start gate, released by itself once all four shards wait; its address from its readiness line.
    let mut gate = harness()
        .args(["start-gate", "--listen", "127.0.0.1:0", "--expect", &SHARDS.to_string(), "--lead", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start harness start-gate");
    let mut lines = BufReader::new(gate.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("a readiness line").unwrap();
    let addr = ready.strip_prefix("listening on ").unwrap_or_else(|| panic!("readiness line: {ready:?}"));

    let shard_dirs: Vec<PathBuf> = (0..SHARDS).map(|i| dir.join(format!("shard-{i}"))).collect();
    let shards: Vec<_> = (0..SHARDS)
        .map(|i| {
            harness()
                .args(soak_args(&target, &shard_dirs[i as usize]))
                .args(["--shard", &format!("{i}/{SHARDS}")])
                .args(["--wait-start", &format!("http://{addr}/start?shard={i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a shard")
        })
        .collect();
    let outputs: Vec<Output> = shards.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for (i, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "shard {i}: {}\n{}", text(&o.stdout), text(&o.stderr));
    }
    let released = lines.next().expect("the release line").unwrap();
    assert!(released.contains("shards waiting: [0, 1, 2, 3]"), "{released}");
    let _ = gate.kill();
    let _ = gate.wait();
    let server_after_shards = server.stats().counters.frames_received;

    let merged = dir.join("merged");
    let o = harness().args(["report", "merge"]).args(&shard_dirs).arg("--out").arg(&merged).output().unwrap();
    assert!(o.status.success(), "merge: {}\n{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("merged report in"), "{}", text(&o.stdout));
    let (_, m) = report::read(&merged).unwrap();

    // Every shard ran its share of one run: the same seed and settings, one common start.
    let shard_reports: Vec<Report> = shard_dirs.iter().map(|d| report::read(d).unwrap().1).collect();
    let start = &shard_reports[0].settings["schedule_start_unix_ms"];
    assert!(shard_reports.iter().all(|r| &r.settings["schedule_start_unix_ms"] == start));
    assert_eq!(shard_reports.iter().map(|r| counter(r, "clients")).collect::<Vec<_>>(), vec![2, 2, 2, 2]);

    // The unsharded run of the same seed, against the same server.
    let whole = dir.join("whole");
    let o = harness().args(soak_args(&target, &whole)).output().unwrap();
    assert!(o.status.success(), "unsharded: {}", text(&o.stderr));
    let (_, w) = report::read(&whole).unwrap();
    let server_whole = server.stats().counters.frames_received - server_after_shards;

    // The same clients and schedules: equal frame counts, all of them seen by the server.
    for name in ["clients", "frames_scheduled", "frames_sent"] {
        assert_eq!(counter(&m, name), counter(&w, name), "{name}");
    }
    assert_eq!(counter(&m, "clients"), 8);
    assert_eq!(counter(&m, "frames_unsent"), 0);
    assert_eq!(server_after_shards, counter(&m, "frames_sent"), "the server got every shard's frames");
    assert_eq!(server_whole, counter(&w, "frames_sent"));
    assert_eq!(m.settings["shards"], SHARDS.to_string());
    assert!(!m.settings.contains_key("shard"));
    assert_eq!(m.seed, w.seed);
    assert_eq!(m.verdict.outcome(), "PASS", "{:?}", m.verdict);

    // Exact: the merged percentiles are those of all the shards' raw intervals together (summed here from
    // their .hlog files), and of the merged .hlog read back; never an average of the shards' percentiles.
    let from_shards = summed_from_logs(&shard_dirs);
    let from_merged = summed_from_logs(std::slice::from_ref(&merged));
    assert_eq!(from_shards, from_merged);
    let send_lag = &from_shards["send_lag"];
    assert_eq!(send_lag.len(), counter(&m, "frames_sent"));
    for st in &m.stages {
        let Some(h) = &st.histogram else { continue };
        let raw = &from_shards[&st.name];
        assert_eq!(h.count, raw.len(), "{}", st.name);
        assert_eq!(h.percentiles_us.p50, raw.value_at_quantile(0.5), "{}", st.name);
        assert_eq!(h.percentiles_us.p99, raw.value_at_quantile(0.99), "{}", st.name);
        assert_eq!(h.percentiles_us.max, raw.max(), "{}", st.name);
    }
    // Beside the unsharded run: the same stages measured, with the same number of samples per frame.
    assert_eq!(
        m.stage("send_lag").unwrap().histogram.as_ref().unwrap().count,
        w.stage("send_lag").unwrap().histogram.as_ref().unwrap().count
    );

    // `report compare` reads a merged report like any other.
    let o = harness()
        .args(["report", "compare"])
        .arg(&whole)
        .arg(&merged)
        .arg("--allow-behind")
        .output()
        .unwrap();
    assert!(o.status.success(), "compare: {}\n{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("send_lag"), "{}", text(&o.stdout));

    // A missing shard, a repeated one, and an unsharded report are refused with exit 2 and a reason.
    let refuse = |dirs: &[&PathBuf], want: &str| {
        let o = harness()
            .args(["report", "merge"])
            .args(dirs)
            .arg("--out")
            .arg(dir.join("refused"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains(want), "want {want:?}: {}", text(&o.stderr));
    };
    let d = &shard_dirs;
    refuse(&[&d[0], &d[1], &d[3]], "shard 2/4 missing");
    refuse(&[&d[0], &d[1], &d[2], &d[3], &d[1]], "shard 1/4 given twice");
    let o = harness()
        .args(["report", "merge"])
        .arg(&whole)
        .arg("--out")
        .arg(dir.join("refused"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("not a shard"), "{}", text(&o.stderr));

    rt.block_on(server.shutdown());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_shard_whose_common_start_has_passed_refuses_to_run_late() {
    let dir = temp_dir("late");
    let o = harness()
        .args(["soak", "--clients", "2", "--frame", "160x120", "--fps", "20", "--duration", "1s", "--quiet"])
        .args(["--shard", "0/2", "--start-at", "1000", "--out"])
        .arg(dir.join("r"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("the common start (UNIX ms 1000) passed"), "{}", text(&o.stderr));
    let o = harness().args(["soak", "--shard", "2/2"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("numbered from 0"), "{}", text(&o.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}
