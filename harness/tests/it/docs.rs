//! Docs that cannot go stale silently: every command line in README.md and the crates' READMEs parses with
//! the current command lines (clap's `try_parse_from`); synopsis lines (`[--flag X]`, `a|b`) name only
//! options that exist; every subcommand's `--help` has examples, and the examples parse too; the fuzz
//! command works as typed from `fuzz/`.

use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README.md and every crate's or directory's README.md (one level down, and `reports/baseline/`).
fn readmes() -> Vec<PathBuf> {
    let mut v = vec![root().join("README.md")];
    for dir in
        ["protocol", "reference-server", "reference-client", "harness", "fuzz", "corpus", "reports/baseline"]
    {
        let p = root().join(dir).join("README.md");
        if p.exists() {
            v.push(p);
        }
    }
    v
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Harness,
    Server,
    Client,
}

/// Lines of a document that run one of the three programs: `cargo run [--release] -p NAME -- ARGS` or a
/// line starting with the program's name, continuation backslashes joined, trailing `# comments` cut.
fn command_lines(text: &str) -> Vec<(Program, String)> {
    let mut joined = Vec::new();
    let mut acc = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(stripped) = t.strip_suffix('\\') {
            acc.push_str(stripped);
            acc.push(' ');
            continue;
        }
        acc.push_str(t);
        joined.push(std::mem::take(&mut acc));
    }
    let mut out = Vec::new();
    for l in joined {
        let l = match l.find(" #") {
            Some(i) => l[..i].trim().to_string(),
            None => l.trim().to_string(),
        };
        let l = l.trim_start_matches('`').trim_end_matches('`').to_string();
        let found = if let Some(rest) = l.strip_prefix("cargo run") {
            if rest.contains("--example") {
                None
            } else if let Some(i) = rest.find(" -- ") {
                let args = rest[i + 4..].trim().to_string();
                let prog = if rest.contains("-p harness") {
                    Some(Program::Harness)
                } else if rest.contains("-p reference-server") {
                    Some(Program::Server)
                } else if rest.contains("-p reference-client") {
                    Some(Program::Client)
                } else {
                    None
                };
                prog.map(|p| (p, args))
            } else {
                None
            }
        } else {
            [
                ("harness ", Program::Harness),
                ("reference-server ", Program::Server),
                ("reference-client ", Program::Client),
            ]
            .into_iter()
            .find_map(|(name, prog)| l.strip_prefix(name).map(|a| (prog, a.to_string())))
        };
        if let Some((prog, args)) = found {
            out.push((prog, args.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
    }
    out
}

fn is_synopsis(args: &str) -> bool {
    args.contains('[')
        || args.contains('|')
        || args.contains("...")
        || args.split_whitespace().any(is_placeholder)
}

/// `DIR`, `URL`, `FILE`, `BASE`, `NEW`, `D`, `N`: an upper-case word standing for a value.
fn is_placeholder(w: &str) -> bool {
    w.len() <= 8 && w.chars().all(|c| c.is_ascii_uppercase()) && !w.is_empty()
}

fn parse(prog: Program, args: &str) -> Result<(), String> {
    // As a shell splits it (`--server 'CMD ARGS'` is one argument).
    let words = shlex::split(args).ok_or_else(|| format!("unbalanced quotes in {args:?}"))?;
    let argv: Vec<&str> = words.iter().map(String::as_str).collect();
    let r = match prog {
        Program::Harness => {
            harness::cli::Cli::try_parse_from(std::iter::once("harness").chain(argv)).map(drop)
        }
        Program::Server => {
            reference_server::cli::Args::try_parse_from(std::iter::once("reference-server").chain(argv))
                .map(drop)
        }
        Program::Client => {
            reference_client::cli::Args::try_parse_from(std::iter::once("reference-client").chain(argv))
                .map(drop)
        }
    };
    r.map_err(|e| e.to_string())
}

fn command(prog: Program) -> clap::Command {
    match prog {
        Program::Harness => harness::cli::Cli::command(),
        Program::Server => reference_server::cli::Args::command(),
        Program::Client => reference_client::cli::Args::command(),
    }
}

/// A synopsis names only options and subcommands that exist.
fn check_synopsis(prog: Program, args: &str) -> Result<(), String> {
    let mut cmd = command(prog);
    let words: Vec<&str> = args.split_whitespace().collect();
    // Descend through the subcommands named at the start (`report compare`).
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let sub = w.split('|').find_map(|alt| cmd.find_subcommand(alt).cloned());
        match sub {
            Some(s) => {
                cmd = s;
                i += 1;
            }
            None => break,
        }
    }
    for w in &words[i..] {
        for alt in w.split('|') {
            let flag = alt.trim_matches(|c| c == '[' || c == ']');
            let Some(name) = flag.strip_prefix("--") else { continue };
            let name = name.split('=').next().unwrap_or(name);
            if name.is_empty() {
                continue; // `-- CMD ARGS...`
            }
            if !cmd.get_arguments().any(|a| a.get_long() == Some(name)) {
                return Err(format!("--{name} is not an option of `{}`", cmd.get_name()));
            }
        }
    }
    Ok(())
}

#[test]
fn every_documented_command_line_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for path in readmes() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (prog, args) in command_lines(&text) {
            let r = if is_synopsis(&args) { check_synopsis(prog, &args) } else { parse(prog, &args) };
            if let Err(e) = r {
                failures.push(format!(
                    "{}: {prog:?} {args}\n    {}",
                    path.display(),
                    e.lines().next().unwrap_or("")
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} documented command lines do not parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 20, "only {checked} command lines found: the extraction broke");
    println!("{checked} documented command lines checked");
}

/// The checker itself catches a stale line (a model that cannot fail proves nothing).
#[test]
fn a_stale_command_line_is_caught() {
    assert!(parse(Program::Harness, "soak --clients 64 --duration 30").is_err(), "bare duration");
    assert!(parse(Program::Harness, "soak --no-such-flag").is_err());
    assert!(check_synopsis(Program::Harness, "replay FILE [--timelines]").is_err());
    assert!(check_synopsis(Program::Client, "URL [--encrypt|--no-encryption]").is_err());
    assert!(parse(Program::Harness, "soak --clients 64 --duration 30s").is_ok());
    assert!(check_synopsis(Program::Harness, "report compare BASE NEW [--max-regression p99=10%] [--json]")
        .is_ok());
    let lines = command_lines("    cargo run --release -p harness -- soak \\\n        --clients 2   # two\n");
    assert_eq!(lines, vec![(Program::Harness, "soak --clients 2".to_string())]);
}

fn help_examples(cmd: &mut clap::Command) -> Vec<String> {
    let help = cmd.render_long_help().to_string();
    let Some(i) = help.find("Examples:") else { return Vec::new() };
    help[i..].lines().skip(1).take_while(|l| l.starts_with("  ")).map(|l| l.trim().to_string()).collect()
}

/// Every (sub)command's `--help` has at least one example, and each example is a command line that parses.
#[test]
fn every_help_has_examples_that_parse() {
    let mut missing = Vec::new();
    let mut bad = Vec::new();
    let mut check = |prog: Program, path: &str, cmd: &mut clap::Command| {
        let examples = help_examples(cmd);
        if examples.is_empty() {
            missing.push(path.to_string());
        }
        for e in examples {
            let args = e.split_once(' ').map(|x| x.1).unwrap_or("");
            if let Err(err) = parse(prog, args) {
                bad.push(format!("{path}: {e}: {}", err.lines().next().unwrap_or("")));
            }
        }
    };
    let mut h = harness::cli::Cli::command();
    for sub in h.get_subcommands_mut() {
        let name = sub.get_name().to_string();
        if sub.has_subcommands() {
            for s in sub.get_subcommands_mut() {
                let n = format!("harness {name} {}", s.get_name());
                check(Program::Harness, &n, s);
            }
        } else {
            check(Program::Harness, &format!("harness {name}"), sub);
        }
    }
    check(Program::Server, "reference-server", &mut reference_server::cli::Args::command());
    check(Program::Client, "reference-client", &mut reference_client::cli::Args::command());
    assert!(missing.is_empty(), "no examples in the --help of: {missing:?}");
    assert!(bad.is_empty(), "examples that do not parse:\n{}", bad.join("\n"));
    let top = harness::cli::Cli::command().render_long_help().to_string();
    assert!(top.contains("6 target unreachable") && top.contains("7 soak"), "{top}");
}

/// `cargo fuzz run reassembly`, as README gives it, works from `fuzz/` whatever the default toolchain:
/// `fuzz/rust-toolchain.toml` selects nightly, README's line is that command, and CI runs the same one.
#[test]
fn the_fuzz_command_works_as_typed() {
    let toolchain =
        std::fs::read_to_string(root().join("fuzz/rust-toolchain.toml")).expect("fuzz/rust-toolchain.toml");
    assert!(toolchain.lines().any(|l| l.replace(' ', "") == "channel=\"nightly\""), "{toolchain}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.lines().any(|l| l.trim() == "cd fuzz")
            && readme.lines().any(|l| l.trim() == "cargo fuzz run reassembly")
    );
    assert!(!readme.contains("+nightly fuzz"), "README still asks for +nightly");
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.contains("cargo fuzz run \"$target\"") && !ci.contains("+\"$NIGHTLY\" fuzz"), "{ci}");
    // The toolchain file takes effect: cargo inside fuzz/ is a nightly cargo.
    let out = std::process::Command::new("cargo")
        .arg("--version")
        .current_dir(root().join("fuzz"))
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .output()
        .expect("cargo runs");
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.contains("nightly"), "cargo in fuzz/ is not nightly: {v}");
}
