//! `harness repro` (issue 6): the quick version of every scenario, in-process against the reference
//! server, must give its expected verdict (broken side fails the way the bug did, fixed side holds), and
//! the binary must write report.json + summary.md and exit 0 only on a pass. Scenarios run as separate
//! tests so the test harness runs them in parallel; the slowest (stall, teardown-race) take a few
//! seconds in a debug build.

use std::path::PathBuf;
use std::process::Command;

use harness::report::{self, REPORT_JSON, SUMMARY_MD};
use harness::repro::{render_table, run_scenario, Options, Outcome, Scenario};

const SEED: u64 = 6;

async fn quick(s: Scenario) -> Outcome {
    let o = run_scenario(s, &Options { quick: true, seed: SEED, target: None }).await;
    println!("{}", render_table(&o.table()));
    o
}

fn assert_passed(o: &Outcome) {
    assert!(
        o.passed(),
        "{} did not give its expected verdict:\n{}",
        o.scenario.name(),
        render_table(&o.table())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_interleave_is_named_and_a_single_writer_delivers() {
    let o = quick(Scenario::FragmentInterleave).await;
    assert_passed(&o);
    assert_eq!(o.figures["fragment-interleave.one_writer.server_frames_received"], 10);
    assert_eq!(o.rows.len(), 3);
    assert!(o.rows[0].measured.contains("data_frame_before_fin"), "{:?}", o.rows[0]);
    assert!(o.rows[2].measured.contains("close 1002"), "{:?}", o.rows[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_shows_the_delayed_ack_and_the_paused_reader() {
    let o = quick(Scenario::Stall).await;
    assert_passed(&o);
    assert!(o.figures["stall.wwr.nagle.p50_us"] >= 20_000);
    assert!(o.figures["stall.wwr.nodelay.p50_us"] < 5_000);
    // (b): 230 KB frames at 30 fps; rx_pause reads 131 KB per 30 ms, so delivery is capped near 19 fps
    // and every frame waits at least one pause; without the fault ~30 fps.
    assert!(o.figures["stall.ws.rx_pause.fps_x10"] < 200, "{:?}", o.figures);
    assert!(o.figures["stall.ws.rx_pause.assembly_p50_us"] > 25_000, "{:?}", o.figures);
    assert!(o.figures["stall.ws.fixed.fps_x10"] >= 240, "{:?}", o.figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_flake_counts_os_errors_of_each_cause() {
    let o = quick(Scenario::BindFlake).await;
    assert_passed(&o);
    assert_eq!(o.rows.len(), 7);
    assert!(o.rows[0].measured.contains("EADDRINUSE (98)"), "{:?}", o.rows[0]);
    assert!(o.rows[5].measured.contains("ECONNREFUSED (111)"), "{:?}", o.rows[5]);
    assert_eq!(o.figures["bind-flake.restart.no_reuseaddr_no_holders.failures"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_exhaustion_fails_at_the_33rd_only_with_the_leak() {
    let o = quick(Scenario::SlotExhaustion).await;
    assert_passed(&o);
    assert!(o.rows[0].measured.contains("session 33"), "{:?}", o.rows[0]);
    assert_eq!(o.figures["slot-exhaustion.fixed.slots_in_use_after"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassembly_timeout_drops_slow_fragments_only_at_100ms() {
    let o = quick(Scenario::ReassemblyTimeout).await;
    assert_passed(&o);
    assert_eq!(o.figures["reassembly-timeout.old_timeout.frames_received"], 0);
    assert_eq!(o.figures["reassembly-timeout.fixed_timeout.frames_received"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_race_stale_callback_shares_slots_and_the_fixed_server_leaves_nothing_behind() {
    let o = quick(Scenario::TeardownRace).await;
    assert_passed(&o);
    assert_eq!(o.figures["teardown-race.clients"], 100);
    // Broken side (`--fault stale-callback`): its row reproduces the race.
    let broken: Vec<_> = o.rows.iter().filter(|r| r.config.starts_with("fault stale-callback")).collect();
    assert_eq!(broken.len(), 1, "{:?}", o.rows);
    assert!(broken[0].ok, "{broken:?}");
    let f = |name: &str| o.figures[&format!("teardown-race.{name}")];
    assert!(f("stale_callback.late_callbacks") > 0);
    assert!(f("stale_callback.slots_shared") > 0);
    assert!(f("stale_callback.double_releases") > 0);
    assert_eq!(f("stale_callback.streamer_slots_lost"), 1, "the streamer on the warm-up client's slot");
    // Fixed side: every invariant holds.
    let fixed: Vec<_> = o.rows.iter().filter(|r| r.config.starts_with("fixed server")).collect();
    assert_eq!(fixed.len(), 3, "{:?}", o.rows);
    assert!(fixed.iter().all(|r| r.ok), "{fixed:?}");
    for name in [
        "panics",
        "tasks_left",
        "slots_in_use_after",
        "double_releases",
        "slots_shared",
        "late_callbacks",
        "streamer_slots_lost",
        "frames_lost_corrupt_reordered",
    ] {
        assert_eq!(f(&format!("fixed.{name}")), 0, "fixed.{name}");
    }
    assert!(f("fixed.server_frames_received") > 0);
    assert_eq!(f("fixed.server_frames_received"), f("fixed.streamer_frames_sent"));
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harness-it-repro-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn the_binary_writes_the_shared_report_and_exits_0_on_a_pass() {
    let out = temp_dir("pass");
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["repro", "bind-flake", "--quick", "--seed", "3", "--out"])
        .arg(&out)
        .output()
        .expect("run harness repro");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("seed 3"), "{stdout}");
    assert!(stdout.contains("== bind-flake: PASS"), "{stdout}");
    let (_, r) = report::read(&out).unwrap();
    assert_eq!((r.kind.as_str(), r.seed, r.verdict.passed), ("repro", 3, true));
    assert_eq!(r.tables.len(), 1);
    assert_eq!(r.tables[0].columns, ["configuration", "measured", "expected", "verdict"]);
    assert_eq!(r.counters["bind-flake.passed"], 1);
    assert!(out.join(REPORT_JSON).is_file());
    let md = std::fs::read_to_string(out.join(SUMMARY_MD)).unwrap();
    assert!(md.contains("EADDRINUSE (98)"), "{md}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// A probe that cannot measure (the target accepts every connection and closes it at once, so no
/// WebSocket session exists) is a failed scenario: exit 1, the reason in the report. (A target where
/// nothing listens at all is "unreachable", exit 6: see `unreachable.rs`.)
#[test]
fn a_scenario_that_cannot_measure_fails_with_exit_1() {
    let out = temp_dir("fail");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", dead.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in dead.incoming() {
            drop(s);
        }
    });
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["repro", "reassembly-timeout", "--quick", "--target", &url, "--out"])
        .arg(&out)
        .output()
        .expect("run harness repro");
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stdout));
    let (_, r) = report::read(&out).unwrap();
    assert!(!r.verdict.passed);
    assert!(r.verdict.reasons[0].contains("ERROR"), "{:?}", r.verdict.reasons);
    std::fs::remove_dir_all(&out).unwrap();
}
