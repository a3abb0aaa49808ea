//! `harness supervise` and `harness symbolize` against a real crash (issue 8): a C program and a shared
//! library, both with debug info, built here with `cc`; the library aborts, a SIGABRT handler in the
//! program prints a glibc `backtrace_symbols_fd` backtrace, and the frames of both objects must come
//! back with the right function names and source lines. Skipped (passing, with a printed reason) only
//! when `cc` is missing.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const LIB_C: &str = r#"#include <stdlib.h>

typedef void (*hook_fn)(void);

static inline __attribute__((always_inline)) void inlined_abort(void)
{
    abort(); /* MARK:inlined-abort */
}

void crash_in_lib(hook_fn before_abort)
{
    if (before_abort)
        before_abort(); /* MARK:lib-hook */
    inlined_abort(); /* MARK:lib-abort */
}
"#;

const MAIN_C: &str = r#"#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef void (*hook_fn)(void);
void crash_in_lib(hook_fn before_abort);

static void print_backtrace(void)
{
    void *frames[64];
    int n = backtrace(frames, 64); /* MARK:backtrace */
    static const char head[] = "Backtrace:\n";
    write(2, head, sizeof head - 1);
    backtrace_symbols_fd(frames, n, 2);
}

static void on_abort(int sig)
{
    print_backtrace(); /* MARK:handler */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Prints a backtrace from inside the library, then waits for stdin to close: a live process whose
   maps can be read while its backtrace is symbolized. */
static void hold(void)
{
    print_backtrace(); /* MARK:hold */
    printf("holding\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
    _exit(0);
}

int call_into_lib(hook_fn hook)
{
    crash_in_lib(hook); /* MARK:call */
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGABRT, on_abort);
    int delay_ms = argc > 1 ? atoi(argv[1]) : 0;
    int holding = argc > 2;
    printf("server: up\n");
    fflush(stdout);
    usleep(delay_ms * 1000); /* a server runs a while before it crashes */
    return call_into_lib(holding ? hold : NULL); /* MARK:main */
}
"#;

/// Loads the library only after a while, so the periodic maps snapshots taken before do not hold it.
const DL_MAIN_C: &str = r#"#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static void on_abort(int sig)
{
    void *frames[64];
    int n = backtrace(frames, 64);
    backtrace_symbols_fd(frames, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv)
{
    signal(SIGABRT, on_abort);
    usleep(200 * 1000);
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib)
        return 2;
    void (*crash_in_lib)(void *) = (void (*)(void *))dlsym(lib, "crash_in_lib");
    crash_in_lib(NULL); /* MARK:dl-call */
    return 0;
}
"#;

/// The built program, library and their sources, or why the tests are skipped.
struct Fixture {
    dir: PathBuf,
    exe: PathBuf,
    lib: PathBuf,
}

impl Fixture {
    fn main_c(&self) -> String {
        self.dir.join("crash_main.c").display().to_string()
    }

    fn lib_c(&self) -> String {
        self.dir.join("crash_lib.c").display().to_string()
    }
}

/// 1-based line of `MARK:name` in `src`.
fn line_of(src: &str, mark: &str) -> usize {
    let needle = format!("MARK:{mark} ");
    src.lines().position(|l| l.contains(&needle)).map(|i| i + 1).expect("marker present")
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("diag-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            if Command::new("cc").arg("--version").output().is_err() {
                eprintln!("SKIP: `cc` is not installed; the crash fixture cannot be built");
                return None;
            }
            let dir = scratch("fixture");
            std::fs::write(dir.join("crash_lib.c"), LIB_C).unwrap();
            std::fs::write(dir.join("crash_main.c"), MAIN_C).unwrap();
            std::fs::write(dir.join("dl_main.c"), DL_MAIN_C).unwrap();
            let lib = dir.join("libcrash.so");
            let exe = dir.join("crash_main");
            let cc = |args: &[&str]| {
                let out = Command::new("cc").current_dir(&dir).args(args).output().unwrap();
                assert!(out.status.success(), "cc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            };
            cc(&["-g", "-O0", "-fPIC", "-shared", "-o", "libcrash.so", "crash_lib.c"]);
            let rpath = format!("-Wl,-rpath,{}", dir.display());
            cc(&["-g", "-O0", "-rdynamic", "-o", "crash_main", "crash_main.c", "-L.", "-lcrash", &rpath]);
            cc(&["-g", "-O0", "-rdynamic", "-o", "dl_main", "dl_main.c", "-ldl"]);
            Some(Fixture { dir, exe, lib })
        })
        .as_ref()
}

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_harness"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Finds the symbolized line for `function`, whatever its address.
fn line_for<'a>(lines: &'a [String], object: &str, function: &str) -> &'a str {
    let needle = format!("[{object}] {function} (");
    lines.iter().find(|l| l.contains(&needle)).unwrap_or_else(|| panic!("no {needle:?} in {lines:#?}"))
}

fn assert_crash_frames(lines: &[String], fx: &Fixture, handler_mark: &str) {
    let (main_src, lib_src) = (fx.main_c(), fx.lib_c());
    let frames = [
        ("crash_main", "print_backtrace", format!("{main_src}:{}", line_of(MAIN_C, "backtrace"))),
        (
            "crash_main",
            if handler_mark == "hold" { "hold" } else { "on_abort" },
            format!("{main_src}:{}", line_of(MAIN_C, handler_mark)),
        ),
        (
            "libcrash.so",
            "crash_in_lib",
            format!(
                "{lib_src}:{}",
                line_of(LIB_C, if handler_mark == "hold" { "lib-hook" } else { "lib-abort" })
            ),
        ),
        ("crash_main", "call_into_lib", format!("{main_src}:{}", line_of(MAIN_C, "call"))),
        ("crash_main", "main", format!("{main_src}:{}", line_of(MAIN_C, "main"))),
    ];
    for (object, function, place) in frames {
        let line = line_for(lines, object, function);
        assert!(line.contains(&format!("({place})")), "{function}: expected {place} in {line:?}");
    }
    // libc has no DWARF here, but its symbol table still names abort on the way down; the frame in
    // the library shows the inlined function first, then the one it was inlined into.
    if handler_mark == "handler" {
        let inlined = line_for(lines, "libcrash.so", "inlined_abort");
        let place = format!("({lib_src}:{}) [inlined]", line_of(LIB_C, "inlined-abort"));
        assert!(inlined.ends_with(&place), "expected {place} in {inlined:?}");
        let at = lines.iter().position(|l| l == inlined).unwrap();
        assert!(lines[at + 1].contains("[libcrash.so] crash_in_lib ("), "{lines:#?}");
        // libc's abort is named: from its symbol table (`abort`), or, where Debian's libc6-dbg is
        // installed, from its build-ID debug file (`__GI_abort`, with file and line).
        let libc_abort =
            |l: &&String| l.contains("[libc.so.6] abort") || l.contains("[libc.so.6] __GI_abort (");
        assert!(lines.iter().any(|l| libc_abort(&l)), "{lines:#?}");
    }
}

#[test]
fn supervised_abort_in_a_shared_library_is_symbolized_in_both_objects() {
    let Some(fx) = fixture() else { return };
    let out = scratch("supervise-abort");
    let run = harness()
        .args(["supervise", "--quiet", "--maps-interval", "10", "--out"])
        .arg(&out)
        .arg("--")
        .arg(&fx.exe)
        .arg("300")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "stderr: {}", text(&run.stderr));

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("crash.json")).unwrap()).unwrap();
    assert_eq!(report["exit"]["kind"], "signal");
    assert_eq!(report["exit"]["name"], "SIGABRT");
    assert_eq!(report["exit"]["signal"], 6);
    // The program ran 300 ms, so periodic snapshots saw the library loaded.
    let maps = std::fs::read_to_string(out.join("maps.txt")).unwrap();
    assert!(maps.contains(&fx.lib.display().to_string()), "{maps}");
    assert!(maps.contains(&fx.exe.display().to_string()), "{maps}");
    assert!(out.join("maps-start.txt").exists());
    assert!(std::fs::read_to_string(out.join("stderr.log")).unwrap().contains("Backtrace:"));
    assert_eq!(std::fs::read_to_string(out.join("stdout.log")).unwrap(), "server: up\n");
    let tail: Vec<&str> =
        report["tail"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert!(tail.contains(&"server: up") && tail.contains(&"Backtrace:"), "{tail:?}");

    // Every frame of the executable and the library was placed through the maps snapshot.
    let frames = report["frames"].as_array().unwrap();
    assert!(frames.len() >= 8, "{frames:#?}");
    for f in frames {
        let object = f["outcome"]["object"].as_str().unwrap_or_default();
        if object.ends_with("crash_main") || object.ends_with("libcrash.so") {
            assert_eq!(f["outcome"]["via"], "maps", "{f:#}");
        }
    }

    let md = std::fs::read_to_string(out.join("crash.md")).unwrap();
    assert!(md.contains("killed by signal 6 (SIGABRT)"), "{md}");
    let lines: Vec<String> = md.lines().map(str::to_owned).collect();
    assert_crash_frames(&lines, fx, "handler");
    assert!(!md.contains("[CONFLICT]"), "{md}");

    // The program's own backtrace (printed by its handler, after the capture) against the stack captured
    // at the signal: its handler frames first, then the same frames as the crashing thread's.
    let x = &report["cross_check"];
    assert_eq!(x["thread"], report["threads"][0]["tid"], "{x:#}");
    assert!(x["confirmed"].as_u64().unwrap() >= 4, "{x:#}");
    assert!(x["printer_frames"].as_u64().unwrap() >= 2, "{x:#}");
    assert_eq!(x["conflicts"].as_array().unwrap().len(), 0, "{x:#}");
    assert!(md.contains("Cross-check with the captured stacks: agree"), "{md}");
}

#[test]
fn symbolize_with_live_maps_of_a_held_process() {
    let Some(fx) = fixture() else { return };
    let mut child = Command::new(&fx.exe)
        .args(["0", "hold"])
        .current_dir(&fx.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it has printed its backtrace and is holding (stdout says so after stderr is done).
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "holding" {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the fixture ended early");
    }
    let stdin = child.stdin.take().unwrap();
    let pid = child.id().to_string();

    // Backtrace text read so far: the whole backtrace was written before "holding".
    let mut backtrace = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut l = String::new();
    while stderr.read_line(&mut l).unwrap() > 0 {
        backtrace.push_str(&l);
        if l.contains("(_start+") {
            break;
        }
        l.clear();
    }
    // Bare addresses only: placement must come from the live maps, not from the text.
    let addrs: Vec<String> = backtrace
        .lines()
        .filter_map(|l| l.rsplit_once("[0x").map(|(_, a)| format!("0x{}", a.trim_end_matches(']'))))
        .collect();
    assert!(addrs.len() >= 8, "{backtrace}");
    let run = harness().args(["symbolize", "--pid", &pid]).args(&addrs).output().unwrap();
    let maps_text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let json = harness().args(["symbolize", "--json", "--pid", &pid]).args(&addrs).output().unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());

    assert_eq!(run.status.code(), Some(0), "stderr: {}", text(&run.stderr));
    let lines: Vec<String> = text(&run.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), addrs.len(), "{lines:#?}");
    assert_crash_frames(&lines, fx, "hold");

    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["summary"]["failed"], 0, "{doc:#}");
    assert_eq!(doc["summary"]["conflicts"], 0);
    for f in doc["frames"].as_array().unwrap() {
        assert_eq!(f["outcome"]["via"], "maps", "{f:#}");
        assert!(f["outcome"]["file_offset"].is_u64(), "{f:#}");
        assert!(f["outcome"].get("warning").is_none(), "the mapped inode is the file's: {f:#}");
    }

    // Same addresses, from the saved maps and the backtrace text on stdin.
    let saved = scratch("held-maps").join("maps.txt");
    std::fs::write(&saved, &maps_text).unwrap();
    let mut piped = harness()
        .args(["symbolize", "--maps"])
        .arg(&saved)
        .current_dir(&fx.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    piped.stdin.take().unwrap().write_all(backtrace.as_bytes()).unwrap();
    let piped = piped.wait_with_output().unwrap();
    let piped_lines: Vec<String> = text(&piped.stdout).lines().map(str::to_owned).collect();
    assert_eq!(piped_lines, lines);
}

#[test]
fn backtrace_text_alone_is_enough_without_maps() {
    let Some(fx) = fixture() else { return };
    let run = Command::new(&fx.exe).current_dir(&fx.dir).output().unwrap();
    assert!(run.status.code().is_none(), "the fixture must die by a signal");
    let log = scratch("text-only").join("stderr.log");
    std::fs::write(&log, &run.stderr).unwrap();
    let out = harness().args(["symbolize", "--log"]).arg(&log).current_dir(&fx.dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_crash_frames(&lines, fx, "handler");
}

/// The `(file_offset, object)` of the frame naming `function`, from `symbolize --json`.
fn offset_of(doc: &serde_json::Value, function: &str) -> (u64, String) {
    let f = doc["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["outcome"]["frames"].as_array().is_some_and(|v| v.iter().any(|s| s["function"] == function))
        })
        .unwrap_or_else(|| panic!("{function} not in {doc:#}"));
    (f["outcome"]["file_offset"].as_u64().unwrap(), f["outcome"]["object"].as_str().unwrap().to_owned())
}

#[test]
fn overlapping_mappings_that_disagree_are_a_conflict() {
    let Some(fx) = fixture() else { return };
    // Real file offsets of a library frame and an executable frame: from the held fixture's maps.
    let dir = scratch("conflict");
    let real_maps = dir.join("real.txt");
    let mut child = Command::new(&fx.exe)
        .args(["0", "hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "holding" {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0);
    }
    std::fs::write(&real_maps, std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap())
        .unwrap();
    drop(child.stdin.take());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(child.wait().unwrap().success());
    let mut sym = harness()
        .args(["symbolize", "--json", "--maps"])
        .arg(&real_maps)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sym.stdin.take().unwrap().write_all(stderr.as_bytes()).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&sym.wait_with_output().unwrap().stdout).unwrap();
    let (lib_off, lib_path) = offset_of(&doc, "crash_in_lib");
    let (exe_off, exe_path) = offset_of(&doc, "call_into_lib");

    // Two executable mappings over the same range; at 0x10000100 one holds the library's
    // crash_in_lib, the other the executable's call_into_lib.
    let crafted = dir.join("crafted.txt");
    std::fs::write(
        &crafted,
        format!(
            "10000000-10100000 r-xp {:08x} 00:00 1 {lib_path}\n10000000-10100000 r-xp {:08x} 00:00 2 {exe_path}\n",
            lib_off - 0x100,
            exe_off - 0x100
        ),
    )
    .unwrap();
    let out = harness().args(["symbolize", "--maps"]).arg(&crafted).arg("0x10000100").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a conflict is a failed verdict");
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "0x000010000100 [CONFLICT] libcrash.so:crash_in_lib | crash_main:call_into_lib"
    );

    // Two candidates that agree are not a conflict. Inode 1 is not the library's real inode, so the
    // line also says that the file on disk may not be the one that was mapped.
    let agree = dir.join("agree.txt");
    std::fs::write(
        &agree,
        format!(
            "10000000-10100000 r-xp {:08x} 00:00 1 {lib_path}\n10000000-10100000 r-xp {:08x} 00:00 1 {lib_path}\n",
            lib_off - 0x100,
            lib_off - 0x100
        ),
    )
    .unwrap();
    let out = harness().args(["symbolize", "--maps"]).arg(&agree).arg("0x10000100").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("[libcrash.so] crash_in_lib ("), "{stdout}");
    assert!(stdout.trim_end().ends_with("[object replaced?]"), "{stdout}");
}

fn symbolize(args: &[&str], stdin: &str, dir: &Path) -> Output {
    let mut child = harness()
        .arg("symbolize")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn garbage_input_gives_clear_errors() {
    // These need no compiler: they run on every machine.
    let dir = scratch("garbage");
    let maps = dir.join("bad-maps.txt");
    std::fs::write(&maps, "10000-20000 r-xp 00000000 00:00 1 /bin/true\n\nthis is not a maps line\n")
        .unwrap();
    let out = symbolize(&["--maps", maps.to_str().unwrap(), "0x10010"], "", &dir);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("maps line 3") && err.contains("this is not a maps line"), "{err}");

    let out = symbolize(&["0xnothex"], "", &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("\"0xnothex\" is not a hex address"), "{}", text(&out.stderr));

    let out = symbolize(&[], "nothing to see here\n", &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no addresses found"), "{}", text(&out.stderr));

    let crafted = dir.join("maps.txt");
    let not_elf = dir.join("not-elf.so");
    std::fs::write(&not_elf, "just text\n").unwrap();
    std::fs::write(
        &crafted,
        format!(
            "10000-20000 r-xp 00000000 00:00 1 {}/missing.so\n30000-40000 r-xp 00000000 00:00 2 {}\n50000-60000 rw-p 00000000 00:00 0 [heap]\n",
            dir.display(),
            not_elf.display()
        ),
    )
    .unwrap();
    let out = symbolize(
        &["--maps", crafted.to_str().unwrap(), "0x10010", "0x30010", "0x50010", "0x90000"],
        "",
        &dir,
    );
    assert_eq!(out.status.code(), Some(1), "nothing could be placed");
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].contains("[?] ??") && lines[0].contains("missing.so is missing"), "{}", lines[0]);
    assert!(lines[1].contains("not-elf.so is not an ELF file"), "{}", lines[1]);
    assert!(
        lines[2].contains("0x50010 is not in any executable mapping: it is in non-executable rw-p [heap]"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("0x90000 is not in any executable mapping: no mapping holds it"),
        "{}",
        lines[3]
    );

    let out = harness().args(["symbolize", "--maps", "/nonexistent/maps", "0x10000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(text(&out.stderr).contains("reading /nonexistent/maps"), "{}", text(&out.stderr));
}

#[test]
fn a_clean_exit_writes_no_crash_report() {
    let out = scratch("supervise-true");
    let run =
        harness().args(["supervise", "--quiet", "--out"]).arg(&out).args(["--", "true"]).output().unwrap();
    assert_eq!(run.status.code(), Some(0), "stderr: {}", text(&run.stderr));
    assert!(text(&run.stderr).contains("no crash report"));
    assert!(!out.join("crash.json").exists() && !out.join("crash.md").exists());
    assert!(out.join("stdout.log").exists());
}

#[test]
fn a_non_zero_exit_writes_a_report_with_its_status() {
    let out = scratch("supervise-exit3");
    let run = harness()
        .args(["supervise", "--quiet", "--out"])
        .arg(&out)
        .args(["--", "sh", "-c", "echo going down; echo 'bad thing' >&2; exit 3"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "stderr: {}", text(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("crash.json")).unwrap()).unwrap();
    assert_eq!(report["exit"], serde_json::json!({ "kind": "code", "code": 3 }));
    let md = std::fs::read_to_string(out.join("crash.md")).unwrap();
    assert!(md.contains("exited with status 3"), "{md}");
    assert!(md.contains("[stdout] going down") && md.contains("[stderr] bad thing"), "{md}");
    assert!(md.contains("No backtrace addresses were found"), "{md}");
}

#[test]
fn a_missing_command_is_an_io_error() {
    let out = scratch("supervise-missing");
    let run = harness()
        .args(["supervise", "--quiet", "--out"])
        .arg(&out)
        .args(["--", "/nonexistent/program"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(4));
    assert!(text(&run.stderr).contains("starting /nonexistent/program"), "{}", text(&run.stderr));
}

#[test]
fn sigterm_is_forwarded_and_the_child_does_not_outlive_the_supervisor() {
    let out = scratch("supervise-term");
    let pidfile = out.join("child.pid");
    let script = format!("echo $$ > {}; echo ready; exec sleep 30", pidfile.display());
    let mut sup = harness()
        .args(["supervise", "--out"])
        .arg(&out)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The supervisor echoes the child's stdout: "ready" means the child runs and its pid is written.
    let mut echoed = BufReader::new(sup.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        assert!(echoed.read_line(&mut line).unwrap() > 0, "the child never started");
    }
    let child_pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let sup_pid = nix::unistd::Pid::from_raw(sup.id() as i32);
    nix::sys::signal::kill(sup_pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = sup.wait().unwrap();
    assert_eq!(status.code(), Some(1), "the child died by the forwarded SIGTERM");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("crash.json")).unwrap()).unwrap();
    assert_eq!(report["exit"]["name"], "SIGTERM");
    assert_eq!(report["forwarded_signals"], serde_json::json!(["SIGTERM"]));
    // The child (sleep, exec'd from sh) is gone: signal 0 finds no such process.
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_pid), None).is_err());
}

#[test]
fn unsymbolized_sanitizer_output_is_resolved_from_its_module_offsets() {
    let Some(fx) = fixture() else { return };
    let dir = scratch("asan");
    let src = "#include <stdlib.h>\nint boom(int *p) { return p[10]; } /* MARK:boom */\nint main(void) { int *p = malloc(16); int r = boom(p); free(p); return r; } /* MARK:amain */\n";
    std::fs::write(dir.join("asan.c"), src).unwrap();
    let built = Command::new("cc")
        .current_dir(&dir)
        .args(["-g", "-O0", "-fsanitize=address", "-o", "asan", "asan.c"])
        .output()
        .unwrap();
    if !built.status.success() {
        eprintln!("SKIP: cc cannot build with -fsanitize=address here: {}", text(&built.stderr));
        return;
    }
    let run = Command::new(dir.join("asan")).env("ASAN_OPTIONS", "symbolize=0").output().unwrap();
    assert!(!run.status.success());
    let log = dir.join("asan.txt");
    std::fs::write(&log, &run.stderr).unwrap();
    let out = harness().args(["symbolize", "--log"]).arg(&log).current_dir(&fx.dir).output().unwrap();
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    let asan_c = dir.join("asan.c").display().to_string();
    let boom = line_for(&lines, "asan", "boom");
    assert!(boom.contains(&format!("({asan_c}:{})", line_of(src, "boom"))), "{boom}");
    let main = line_for(&lines, "asan", "main");
    assert!(main.contains(&format!("({asan_c}:{})", line_of(src, "amain"))), "{main}");
}

#[test]
fn processes_the_child_left_behind_are_killed() {
    let out = scratch("supervise-orphan");
    let pidfile = out.join("orphan.pid");
    let script = format!("sleep 30 & echo $! > {}; exit 3", pidfile.display());
    let run = harness()
        .args(["supervise", "--quiet", "--out"])
        .arg(&out)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "stderr: {}", text(&run.stderr));
    let orphan: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // Gone, or a zombie waiting for init to reap it. Its pipes close early in its exit, so the supervisor
    // can return while it is still finishing to die: allow that a moment (SIGKILL is not ignorable).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next().unwrap_or('?'));
        if matches!(state, None | Some('Z' | 'X')) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "sleep {orphan} is still running: {state:?}");
        std::thread::yield_now();
    }
}

#[test]
fn a_library_loaded_after_the_last_snapshot_is_placed_from_the_backtrace_text() {
    let Some(fx) = fixture() else { return };
    let out = scratch("supervise-dlopen");
    let run = harness()
        .args(["supervise", "--quiet", "--maps-interval", "20", "--out"])
        .arg(&out)
        .arg("--")
        .arg(fx.dir.join("dl_main"))
        .arg(&fx.lib)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "stderr: {}", text(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("crash.json")).unwrap()).unwrap();
    assert_eq!(report["exit"]["name"], "SIGABRT");
    let md = std::fs::read_to_string(out.join("crash.md")).unwrap();
    let lines: Vec<String> = md.lines().map(str::to_owned).collect();
    let lib_src = fx.lib_c();
    let lib_line = line_for(&lines, "libcrash.so", "crash_in_lib");
    assert!(lib_line.contains(&format!("({lib_src}:{})", line_of(LIB_C, "lib-abort"))), "{lib_line}");
    let main_line = line_for(&lines, "dl_main", "main");
    let dl_src = fx.dir.join("dl_main.c").display().to_string();
    assert!(main_line.contains(&format!("({dl_src}:{})", line_of(DL_MAIN_C, "dl-call"))), "{main_line}");
    // Usually no snapshot holds the library (it crashes right after dlopen); when the read triggered
    // by its output wins the race, the maps do. Both must name it; which one was used is reported.
    let lib_frame = report["frames"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["outcome"]["object"].as_str().is_some_and(|o| o.ends_with("libcrash.so")))
        .unwrap();
    let via = lib_frame["outcome"]["via"].as_str().unwrap();
    assert!(via == "backtrace_text" || via == "maps", "{via}");
}

/// A program that calls into the library and aborts at once, printing nothing (no handler, no backtrace).
const QUICK_C: &str = r#"typedef void (*hook_fn)(void);
void crash_in_lib(hook_fn before_abort);
static void call_into_lib(void) { crash_in_lib(0); } /* MARK:quick-call */
int main(void) { call_into_lib(); return 0; } /* MARK:quick-main */
"#;

/// SIGSEGV in one thread while 8 others block on a pipe that never gets data: the faulting thread writes to
/// address 0x10, which nothing maps.
const THREADS_C: &str = r#"#include <pthread.h>
#include <unistd.h>
static int fds[2];
static void *blocker(void *arg) { char c; (void)arg; read(fds[0], &c, 1); return 0; } /* MARK:blocker */
static void *faulter(void *arg) { volatile int *p = (volatile int *)arg + 4; usleep(20000); *p = 1; return 0; } /* MARK:fault */
int main(void) {
    pthread_t t[9];
    pipe(fds);
    for (int i = 0; i < 8; i++) pthread_create(&t[i], 0, blocker, 0);
    pthread_create(&t[8], 0, faulter, 0);
    pthread_join(t[8], 0);
    return 0;
}
"#;

fn build(fx: &Fixture, name: &str, source: &str, extra: &[&str]) -> PathBuf {
    std::fs::write(fx.dir.join(format!("{name}.c")), source).unwrap();
    let rpath = format!("-Wl,-rpath,{}", fx.dir.display());
    let mut args = vec!["-g", "-O0", "-o", name];
    let src = format!("{name}.c");
    args.push(&src);
    args.extend_from_slice(extra);
    args.push(&rpath);
    let out = Command::new("cc").current_dir(&fx.dir).args(&args).output().unwrap();
    assert!(out.status.success(), "cc: {}", text(&out.stderr));
    fx.dir.join(name)
}

/// The threads of a crash report: (crashed, signal, frames as "function file:line").
fn threads_of(report: &serde_json::Value) -> Vec<(bool, String, Vec<String>)> {
    report["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let frames = t["frames"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|f| f["outcome"]["frames"].as_array().cloned().unwrap_or_default())
                .map(|sf| {
                    let file = sf["file"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("").to_string();
                    format!(
                        "{} {file}:{}",
                        sf["function"].as_str().unwrap_or("??"),
                        sf["line"].as_u64().unwrap_or(0)
                    )
                })
                .collect();
            (t["crashed"].as_bool().unwrap(), t["signal"].as_str().unwrap_or("").to_string(), frames)
        })
        .collect()
}

/// Issue 13: an abort inside a `.so` right after start, with no printing at all, is captured from outside:
/// the crashing thread's frames are named with file and line in the library and in the executable.
#[test]
fn an_abort_with_no_printing_is_unwound_from_outside() {
    let Some(fx) = fixture() else { return };
    let exe = build(fx, "quick", QUICK_C, &["-L.", "-lcrash"]);
    let out = scratch("quick-abort");
    let run =
        harness().args(["supervise", "--quiet", "--out"]).arg(&out).arg("--").arg(&exe).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "stderr: {}", text(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("crash.json")).unwrap()).unwrap();
    assert_eq!(report["exit"]["name"], "SIGABRT", "the real exit status");
    let threads = threads_of(&report);
    let (crashed, signal, frames) = &threads[0];
    assert!(*crashed && signal == "SIGABRT", "{threads:?}");
    let want = [
        format!("crash_in_lib crash_lib.c:{}", line_of(LIB_C, "lib-abort")),
        format!("call_into_lib quick.c:{}", line_of(QUICK_C, "quick-call")),
        format!("main quick.c:{}", line_of(QUICK_C, "quick-main")),
    ];
    for w in &want {
        assert!(frames.contains(w), "{w} missing from {frames:#?}");
    }
    let md = std::fs::read_to_string(out.join("crash.md")).unwrap();
    assert!(md.contains("Threads at the fatal signal, captured from outside"), "{md}");

    // The same crash as a standard minidump.
    let dump = std::fs::read(out.join("crash.dmp")).unwrap();
    assert!(dump.starts_with(b"MDMP"), "not a minidump");
    assert_eq!(report["minidump"]["file"], "crash.dmp");
    assert_eq!(report["minidump"]["bytes"], dump.len());
    assert_eq!(report["crash"]["si_code_name"], "SI_TKILL", "abort raises with tgkill");
    assert!(report["crash"].get("fault_address").is_none(), "no fault address for a sent signal");
    stackwalk_agrees(&out, &report);
}

/// `minidump-stackwalk` (rust-minidump) reads `crash.dmp` as we captured it: the crash reason, the crashing
/// thread, and its frames address for address (from the dump's own registers, stack memory and modules,
/// unwound with the objects' call frame information). Skipped with a note when the tool is missing.
fn stackwalk_agrees(out: &Path, report: &serde_json::Value) {
    const TOOL: &str = "minidump-stackwalk";
    if Command::new(TOOL).arg("--version").output().is_err() {
        eprintln!(
            "SKIP: `{TOOL}` is not on PATH (`cargo install {TOOL} --locked`); crash.dmp not cross-checked"
        );
        return;
    }
    let run = Command::new(TOOL)
        .args(["--json", "--use-local-debuginfo"])
        .arg(out.join("crash.dmp"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{TOOL}: {}", text(&run.stderr));
    let walked: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let reason = walked["crash_info"]["type"].as_str().unwrap_or_default();
    assert!(reason.starts_with("SIGABRT"), "{reason}");
    let thread = &walked["crashing_thread"];
    assert_eq!(thread["thread_id"], report["crash"]["tid"], "{thread:#}");
    assert_eq!(walked["system_info"]["os"], "Linux");

    let ours = report["threads"][0]["frames"].as_array().unwrap();
    let theirs = thread["frames"].as_array().unwrap();
    let hex = |v: &serde_json::Value| {
        u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    // Inlined calls are folded into their frame there (`inlines`), as here: frame for frame.
    let n = ours.len().min(theirs.len()).min(6);
    assert!(n >= 5, "ours {ours:#?} theirs {theirs:#?}");
    for (i, (o, t)) in ours.iter().zip(theirs).take(n).enumerate() {
        // The walker names a caller by the byte before its return address.
        let (addr, at) = (hex(&o["addr"]), hex(&t["offset"]));
        assert!(at == addr || (i > 0 && at + 1 == addr), "frame {i}: {o:#} vs {t:#}");
        let object = o["outcome"]["object"].as_str().unwrap_or_default();
        assert!(
            object.ends_with(&format!("/{}", t["module"].as_str().unwrap())),
            "frame {i}: {o:#} vs {t:#}"
        );
    }
    let functions: Vec<&str> = theirs.iter().filter_map(|f| f["function"].as_str()).collect();
    let at = |name: &str| {
        functions.iter().position(|f| *f == name).unwrap_or_else(|| panic!("{name}: {functions:?}"))
    };
    assert!(at("crash_in_lib") < at("call_into_lib") && at("call_into_lib") < at("main"), "{functions:?}");
    assert_eq!(theirs[0]["trust"], "context", "frame 0 comes from the dump's register context");
}

/// Issue 13: SIGSEGV in a non-main thread while 8 others block: every thread is reported, the crashing one
/// first with its faulting function, the blocked ones inside their `read` called from `blocker`.
#[test]
fn a_segfault_in_one_thread_reports_every_thread() {
    let Some(fx) = fixture() else { return };
    let exe = build(fx, "threads", THREADS_C, &["-pthread"]);
    let out = scratch("threads-segv");
    let run =
        harness().args(["supervise", "--quiet", "--out"]).arg(&out).arg("--").arg(&exe).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "stderr: {}", text(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("crash.json")).unwrap()).unwrap();
    assert_eq!(report["exit"]["name"], "SIGSEGV");
    let threads = threads_of(&report);
    assert_eq!(threads.len(), 10, "main + 8 blockers + the faulting thread: {threads:#?}");
    let (crashed, signal, frames) = &threads[0];
    assert!(*crashed && signal == "SIGSEGV", "{threads:#?}");
    assert_eq!(frames[0], format!("faulter threads.c:{}", line_of(THREADS_C, "fault")), "{frames:#?}");
    let blocker = format!("blocker threads.c:{}", line_of(THREADS_C, "blocker"));
    let blocked = threads.iter().filter(|(c, _, f)| !c && f.contains(&blocker)).count();
    assert_eq!(blocked, 8, "{threads:#?}");
    // The kernel's word on the fault: the address written to, and why it faulted.
    let crash = &report["crash"];
    assert_eq!(crash["fault_address"], "0x10", "{crash:#}");
    assert_eq!(crash["signal"], "SIGSEGV");
    assert_eq!(crash["si_code_name"], "SEGV_MAPERR", "{crash:#}");
    assert_eq!(crash["tid"], report["threads"][0]["tid"], "the crashing thread is the first one listed");
    assert_eq!(crash["thread_name"], report["threads"][0]["name"]);
    assert_eq!(crash["registers"]["rip"], report["threads"][0]["frames"][0]["addr"], "{crash:#}");
    let md = std::fs::read_to_string(out.join("crash.md")).unwrap();
    assert!(md.contains("SIGSEGV (SEGV_MAPERR: address not mapped to object), fault address 0x10"), "{md}");
    assert!(std::fs::read(out.join("crash.dmp")).unwrap().starts_with(b"MDMP"));
}

/// Three threads blocked on a pipe and a main thread joining them: a hang.
const HANG_C: &str = r#"#include <pthread.h>
#include <unistd.h>
static int fds[2];
static void *blocker(void *arg) { char c; (void)arg; read(fds[0], &c, 1); return 0; } /* MARK:hang-read */
int main(void) {
    pthread_t t[3];
    pipe(fds);
    for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, blocker, 0);
    pthread_join(t[0], 0); /* MARK:hang-join */
    return 0;
}
"#;

/// Forks a child that exits 3, waits for it, then aborts.
const FORK_C: &str = r#"#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    pid_t p = fork();
    if (p == 0) _exit(3);
    waitpid(p, 0, 0);
    abort();
}
"#;

/// Issue 13: `--hang-after` snapshots every thread of a live process without killing it: the blocked
/// threads are inside `read` called from `blocker`, main is in `pthread_join`; the child runs on until the
/// supervisor is told to stop.
#[test]
fn a_hang_is_snapshotted_without_killing_the_child() {
    use std::io::BufRead;
    let Some(fx) = fixture() else { return };
    let exe = build(fx, "hang", HANG_C, &["-pthread"]);
    let out = scratch("hang");
    let mut sup = harness()
        .args(["supervise", "--quiet", "--hang-after", "300ms", "--out"])
        .arg(&out)
        .arg("--")
        .arg(&exe)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(sup.stderr.take().unwrap()).lines();
    // The supervisor says when the snapshot is written: that line is the signal to go on.
    let said = lines.by_ref().map_while(Result::ok).find(|l| l.contains("snapshot of the live child"));
    assert!(said.is_some(), "no snapshot line");
    let pid = sup.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = sup.wait().unwrap();
    assert_eq!(status.code(), Some(1), "the child was killed by the forwarded SIGTERM, not before");
    let snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("hang-1.json")).unwrap()).unwrap();
    let threads = threads_of(&serde_json::json!({ "threads": snap }));
    assert_eq!(threads.len(), 4, "{threads:#?}");
    assert!(threads.iter().all(|(crashed, _, _)| !crashed));
    let read = format!("blocker hang.c:{}", line_of(HANG_C, "hang-read"));
    assert_eq!(threads.iter().filter(|(_, _, f)| f.contains(&read)).count(), 3, "{threads:#?}");
    let join = format!("main hang.c:{}", line_of(HANG_C, "hang-join"));
    assert!(threads.iter().any(|(_, _, f)| f.contains(&join)), "{threads:#?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("crash.json")).unwrap()).unwrap();
    assert_eq!(report["hang_snapshots"][0], "hang-1.md");
    assert!(std::fs::read(out.join("hang-1.dmp")).unwrap().starts_with(b"MDMP"), "the snapshot's minidump");
}

/// Issue 13: processes the child forks are reported with how they ended.
#[test]
fn a_forked_childs_exit_is_reported() {
    let Some(fx) = fixture() else { return };
    let exe = build(fx, "forker", FORK_C, &[]);
    let out = scratch("fork");
    let run =
        harness().args(["supervise", "--quiet", "--out"]).arg(&out).arg("--").arg(&exe).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "stderr: {}", text(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("crash.json")).unwrap()).unwrap();
    assert_eq!(report["exit"]["name"], "SIGABRT");
    let children = report["children"].as_array().expect("children reported");
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(children[0]["exit"]["code"], 3, "{children:?}");
}

/// Issue 13: a stripped executable with a `.gnu_debuglink` file beside it, captured from outside: its frames
/// are named with file and line from the debug file, and say so.
#[test]
fn a_stripped_executable_is_named_from_its_debuglink_file() {
    let Some(fx) = fixture() else { return };
    let exe = build(fx, "stripped", QUICK_C, &["-L.", "-lcrash"]);
    let tool = |args: &[&str]| {
        let ok =
            Command::new(args[0]).current_dir(&fx.dir).args(&args[1..]).status().is_ok_and(|s| s.success());
        assert!(ok, "{args:?}");
    };
    tool(&["objcopy", "--only-keep-debug", "stripped", "stripped.debug"]);
    tool(&["strip", "--strip-all", "stripped"]);
    tool(&["objcopy", "--add-gnu-debuglink=stripped.debug", "stripped"]);
    let out = scratch("stripped");
    let run =
        harness().args(["supervise", "--quiet", "--out"]).arg(&out).arg("--").arg(&exe).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "stderr: {}", text(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("crash.json")).unwrap()).unwrap();
    let (_, _, frames) = &threads_of(&report)[0];
    let main = format!("main stripped.c:{}", line_of(QUICK_C, "quick-main"));
    assert!(frames.contains(&main), "{frames:#?}");
    let routes: Vec<String> = report["threads"][0]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["outcome"]["object"].as_str().is_some_and(|o| o.ends_with("/stripped")))
        .map(|f| f["outcome"]["debug"]["route"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!routes.is_empty() && routes.iter().all(|r| r == "debuglink"), "{routes:?}");
    assert!(std::fs::read_to_string(out.join("crash.md")).unwrap().contains("{debuglink}"));
}
