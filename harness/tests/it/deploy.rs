//! The deployment files cannot drift silently. deploy/k8s/: every manifest parses (all documents of
//! every file), and the run's pieces agree with each other and with the `harness` command line: the
//! shard count N of the Indexed soak Job (completions, parallelism, `--shard I/N`), the start gate's
//! `--expect N` and the merge Job's shard directories; one seed and one set of settings for every shard;
//! `--target` and `--wait-start` reach a Service port that leads to the port the server or gate listens
//! on; one shared report volume; non-root, restricted pods; the Dockerfile's stages and user. Every
//! harness command line in them parses with the current `harness` (clap) and uses only flags that its
//! `--help` shows. Mutated copies of the manifests show that the checker rejects each kind of mistake.
//! Where `kubernetes-validate` is installed, the manifests are also checked against the Kubernetes
//! OpenAPI schemas. .clusterfuzzlite/: the files ClusterFuzzLite reads are there and consistent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ is inside the repository").to_path_buf()
}

fn k8s_dir() -> PathBuf {
    root().join("deploy/k8s")
}

/// The files of deploy/k8s the checker reads: every `*.yaml`/`*.yml` and the Dockerfile, as (name, text).
fn k8s_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(k8s_dir()).expect("deploy/k8s exists") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.ends_with(".yaml") || name.ends_with(".yml") || name == "Dockerfile" {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {name}: {e}"));
            files.push((name, text));
        }
    }
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------------------------
// A little of sh: enough to read the `sh -c` scripts of the manifests.

/// The simple commands a `sh -c` script runs, each as its words after quote removal and expansion of
/// `$NAME` / `${NAME}` (from `env` and from earlier `NAME=value` commands; unknown names stay as written).
/// Separators: newline, `;`, `&`, `|`; `#` starts a comment; a leading `exec` is dropped.
fn shell_commands(script: &str, env: &BTreeMap<String, String>) -> Vec<Vec<String>> {
    let mut vars = env.clone();
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;

    fn is_name_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }
    // Expands the parameter at chars[i] == '$'; returns the text and the index after it.
    fn expand(chars: &[char], i: usize, vars: &BTreeMap<String, String>) -> (String, usize) {
        let (name, end, written) = if chars.get(i + 1) == Some(&'{') {
            match chars[i + 2..].iter().position(|&c| c == '}') {
                Some(p) => {
                    let name: String = chars[i + 2..i + 2 + p].iter().collect();
                    (name, i + 3 + p, chars[i..i + 3 + p].iter().collect::<String>())
                }
                None => return ("$".into(), i + 1),
            }
        } else if chars.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') {
            let mut j = i + 1;
            while j < chars.len() && is_name_char(chars[j]) {
                j += 1;
            }
            (chars[i + 1..j].iter().collect(), j, chars[i..j].iter().collect())
        } else {
            return ("$".into(), i + 1);
        };
        (vars.get(&name).cloned().unwrap_or(written), end)
    }
    fn end_command(words: &mut Vec<String>, vars: &mut BTreeMap<String, String>, out: &mut Vec<Vec<String>>) {
        let assignment = |w: &str| {
            w.split_once('=').is_some_and(|(n, _)| {
                !n.is_empty() && n.chars().all(is_name_char) && !n.starts_with(|c: char| c.is_ascii_digit())
            })
        };
        let mut ws = std::mem::take(words);
        if ws.is_empty() {
            return;
        }
        if ws.iter().all(|w| assignment(w)) {
            for w in ws {
                let (n, v) = w.split_once('=').expect("an assignment");
                vars.insert(n.to_string(), v.to_string());
            }
            return;
        }
        let skip = ws.iter().take_while(|w| assignment(w)).count();
        ws.drain(..skip);
        if ws.first().map(String::as_str) == Some("exec") {
            ws.remove(0);
        }
        if !ws.is_empty() {
            out.push(ws);
        }
    }

    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    w.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                word.get_or_insert_with(String::new);
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if matches!(chars.get(i + 1), Some('$' | '"' | '\\' | '`')) => {
                            word.as_mut().expect("started").push(chars[i + 1]);
                            i += 2;
                        }
                        '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
                        '$' => {
                            let (text, next) = expand(&chars, i, &vars);
                            word.as_mut().expect("started").push_str(&text);
                            i = next;
                        }
                        ch => {
                            word.as_mut().expect("started").push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some('\n') | None => {}
                    Some(&next) => word.get_or_insert_with(String::new).push(next),
                }
                i += 2;
            }
            '$' => {
                let (text, next) = expand(&chars, i, &vars);
                word.get_or_insert_with(String::new).push_str(&text);
                i = next;
            }
            '#' if word.is_none() => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ' ' | '\t' => {
                words.extend(word.take());
                i += 1;
            }
            '\n' | ';' | '&' | '|' => {
                words.extend(word.take());
                end_command(&mut words, &mut vars, &mut commands);
                i += 1;
            }
            ch => {
                word.get_or_insert_with(String::new).push(ch);
                i += 1;
            }
        }
    }
    words.extend(word.take());
    end_command(&mut words, &mut vars, &mut commands);
    commands
}

/// Kubernetes' own expansion of `$(NAME)` in command and args (`$$` escapes), from the container's env.
fn k8s_expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find('$') {
        out.push_str(&rest[..p]);
        let tail = &rest[p..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some((name, after)) = tail.strip_prefix("$(").and_then(|t| t.split_once(')')) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..name.len() + 3]),
            }
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------------------------
// The checker.

const PART_OF: &str = "acip-harness";

/// One YAML document of deploy/k8s.
struct Doc {
    file: String,
    yaml: Yaml,
}

impl Doc {
    fn kind(&self) -> &str {
        self.yaml["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.yaml["metadata"]["name"].as_str().unwrap_or("")
    }
    fn what(&self) -> String {
        format!("{}: {} {}", self.file, self.kind(), self.name())
    }
    /// The pod spec of a Pod, Deployment or Job.
    fn pod_spec(&self) -> Option<&Yaml> {
        match self.kind() {
            "Pod" => Some(&self.yaml["spec"]),
            "Deployment" | "Job" | "StatefulSet" | "DaemonSet" => {
                Some(&self.yaml["spec"]["template"]["spec"])
            }
            _ => None,
        }
    }
}

/// A program a container runs: `harness`, `reference-server`, or another.
#[derive(Debug, Clone)]
struct Invocation {
    program: String,
    /// The words after the program name.
    args: Vec<String>,
}

/// One container of a workload, with what it runs for one completion index (Indexed Jobs) or once.
struct Run<'a> {
    doc: &'a Doc,
    container: &'a Yaml,
    init: bool,
    index: Option<u32>,
    invocations: Vec<Invocation>,
}

fn strs(y: &Yaml) -> Option<Vec<String>> {
    match y {
        Yaml::BadValue | Yaml::Null => Some(Vec::new()),
        Yaml::Array(a) => a.iter().map(|v| v.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

fn int(y: &Yaml) -> Option<i64> {
    y.as_i64()
}

/// The programs a container runs, for the completion index `index`: its command and args after
/// Kubernetes' `$(VAR)` expansion, read through `sh -c` / `bash -c` when it is a shell.
fn invocations(
    container: &Yaml,
    index: Option<u32>,
    errors: &mut Vec<String>,
    what: &str,
) -> Vec<Invocation> {
    let mut env = BTreeMap::new();
    if let Some(i) = index {
        env.insert("JOB_COMPLETION_INDEX".to_string(), i.to_string());
    }
    if let Some(list) = container["env"].as_vec() {
        for e in list {
            if let (Some(n), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
                env.insert(n.to_string(), v.to_string());
            }
        }
    }
    let (Some(command), Some(args)) = (strs(&container["command"]), strs(&container["args"])) else {
        errors.push(format!("{what}: command and args must be lists of strings"));
        return Vec::new();
    };
    let argv: Vec<String> = command.iter().chain(&args).map(|s| k8s_expand(s, &env)).collect();
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let lines = match argv.first().map(|p| base(p)) {
        Some(sh) if (sh == "sh" || sh == "bash") && argv.get(1).map(String::as_str) == Some("-c") => {
            match argv.get(2) {
                Some(script) => shell_commands(script, &env),
                None => {
                    errors.push(format!("{what}: {sh} -c without a script"));
                    Vec::new()
                }
            }
        }
        Some(_) => vec![argv],
        None => Vec::new(),
    };
    lines
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|l| Invocation { program: base(&l[0]), args: l[1..].to_vec() })
        .collect()
}

/// `harness ARGS` parsed by the current `harness` command line: the subcommand path (`soak`,
/// `start-gate`, `report merge`) and its matches.
fn harness_matches(args: &[String]) -> Result<(String, clap::ArgMatches), String> {
    let m = harness::cli::Cli::command()
        .try_get_matches_from(std::iter::once("harness".to_string()).chain(args.iter().cloned()))
        .map_err(|e| e.render().to_string())?;
    let mut path = Vec::new();
    let mut cur = m;
    while let Some((name, sub)) = cur.remove_subcommand() {
        path.push(name);
        cur = sub;
    }
    Ok((path.join(" "), cur))
}

fn server_matches(args: &[String]) -> Result<clap::ArgMatches, String> {
    reference_server::cli::Args::command()
        .try_get_matches_from(std::iter::once("reference-server".to_string()).chain(args.iter().cloned()))
        .map_err(|e| e.render().to_string())
}

/// The values given for argument `id` (a clap id: the field name), as written.
fn raw(m: &clap::ArgMatches, id: &str) -> Vec<String> {
    if m.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
        return Vec::new();
    }
    match m.try_get_raw(id) {
        Ok(Some(vals)) => vals.map(|v| v.to_string_lossy().into_owned()).collect(),
        _ => Vec::new(),
    }
}

fn one(m: &clap::ArgMatches, id: &str) -> Option<String> {
    raw(m, id).into_iter().next()
}

/// `scheme://HOST:PORT[/PATH]` → (scheme, host, port, path-and-query).
fn split_url(url: &str) -> Option<(String, String, u16, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(p) => (&rest[..p], rest[p..].to_string()),
        None => (rest, String::new()),
    };
    let (host, port) = authority.rsplit_once(':')?;
    Some((scheme.to_string(), host.to_string(), port.parse().ok()?, path))
}

/// `HOST:PORT` of a listen address → (host, port).
fn split_listen(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host.trim_matches(['[', ']']).to_string(), port.parse().ok()?))
}

fn loopback(host: &str) -> bool {
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

/// What the checker found out about the run (for the summary the test prints).
#[derive(Debug, Default)]
struct Plan {
    shards: u32,
    clients: u64,
    seed: String,
    target: String,
    gate: String,
    claim: String,
    merged: String,
}

/// Checks the deploy/k8s files (name, text): every problem found, or what the run is.
fn check(files: &[(String, String)]) -> Result<Plan, Vec<String>> {
    let mut errors = Vec::new();
    let mut docs = Vec::new();
    let mut dockerfile = None;
    for (name, text) in files {
        if name == "Dockerfile" {
            dockerfile = Some(text.as_str());
            continue;
        }
        match YamlLoader::load_from_str(text) {
            Ok(ys) => docs
                .extend(ys.into_iter().filter(|y| !y.is_null()).map(|yaml| Doc { file: name.clone(), yaml })),
            Err(e) => errors.push(format!("{name}: not YAML: {e}")),
        }
    }
    match dockerfile {
        Some(d) => check_dockerfile(d, &mut errors),
        None => errors.push("deploy/k8s/Dockerfile is missing".into()),
    }
    let plan = check_docs(&docs, files, &mut errors);
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors)
    }
}

fn check_dockerfile(text: &str, errors: &mut Vec<String>) {
    let lines: Vec<String> = {
        // Join continuation lines; drop comments and parser directives.
        let mut v = Vec::new();
        let mut acc = String::new();
        for l in text.lines() {
            let t = l.trim();
            if t.starts_with('#') || t.is_empty() {
                continue;
            }
            if let Some(s) = t.strip_suffix('\\') {
                acc.push_str(s);
                acc.push(' ');
            } else {
                acc.push_str(t);
                v.push(std::mem::take(&mut acc));
            }
        }
        v
    };
    let instr = |l: &str| l.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    let froms: Vec<usize> = (0..lines.len()).filter(|&i| instr(&lines[i]) == "FROM").collect();
    if froms.len() < 2 {
        errors.push(format!(
            "Dockerfile: {} FROM stage(s), want a build stage and a runtime stage",
            froms.len()
        ));
        return;
    }
    let last = &lines[*froms.last().expect("two stages")..];
    if !lines.iter().any(|l| {
        instr(l) == "RUN"
            && l.contains("cargo build")
            && l.contains("--release")
            && l.contains("--locked")
            && l.contains("-p harness")
            && l.contains("-p reference-server")
    }) {
        errors.push("Dockerfile: no `cargo build --release --locked -p harness -p reference-server`".into());
    }
    for bin in ["harness", "reference-server"] {
        if !last.iter().any(|l| instr(l) == "COPY" && l.contains("--from=") && l.contains(bin)) {
            errors.push(format!("Dockerfile: the runtime stage does not copy {bin} from the build stage"));
        }
    }
    match last.iter().rev().find(|l| instr(l) == "USER") {
        None => errors.push("Dockerfile: the runtime stage has no USER (it would run as root)".into()),
        Some(l) => {
            let user = l.split_whitespace().nth(1).unwrap_or("").split(':').next().unwrap_or("");
            if user.is_empty() || user == "0" || user == "root" {
                errors.push(format!("Dockerfile: `{l}` runs as root"));
            } else if !user.chars().all(|c| c.is_ascii_digit()) {
                errors.push(format!(
                    "Dockerfile: `{l}`: use a numeric uid, so that runAsNonRoot can be checked without /etc/passwd"
                ));
            }
        }
    }
}

/// A `harness` command line of the manifests, parsed by the current `harness` when it parses.
struct Call<'a> {
    run: &'a Run<'a>,
    /// `soak`, `start-gate`, `report merge`, ... (the words before the first flag, at most two for `report`).
    path: String,
    matches: Option<clap::ArgMatches>,
}

impl Call<'_> {
    fn one(&self, id: &str) -> Option<String> {
        self.matches.as_ref().and_then(|m| one(m, id))
    }
    fn what(&self) -> String {
        match self.run.index {
            Some(i) => format!("{} (index {i})", self.run.doc.what()),
            None => self.run.doc.what(),
        }
    }
}

/// The subcommand path of `harness ARGS` as written (`report merge DIR...` → `report merge`).
fn subcommand_path(args: &[String]) -> String {
    let words: Vec<&str> = args.iter().map(String::as_str).take_while(|a| !a.starts_with('-')).collect();
    let depth = if words.first() == Some(&"report") { 2 } else { 1 };
    words.into_iter().take(depth).collect::<Vec<_>>().join(" ")
}

fn check_docs(docs: &[Doc], files: &[(String, String)], errors: &mut Vec<String>) -> Plan {
    let mut plan = Plan::default();
    for d in docs {
        if d.kind().is_empty() || d.yaml["apiVersion"].as_str().is_none() {
            errors.push(format!("{}: a document without apiVersion/kind", d.file));
            continue;
        }
        if d.kind() == "Kustomization" {
            check_kustomization(d, files, errors);
            continue;
        }
        if d.name().is_empty() {
            errors.push(format!("{}: no metadata.name", d.what()));
        }
        if !d.yaml["metadata"]["namespace"].is_badvalue() {
            errors.push(format!(
                "{}: sets metadata.namespace (the manifests are namespace-agnostic)",
                d.what()
            ));
        }
        let labels = &d.yaml["metadata"]["labels"];
        if labels["app.kubernetes.io/name"].as_str().is_none() {
            errors.push(format!("{}: no app.kubernetes.io/name label", d.what()));
        }
        if labels["app.kubernetes.io/part-of"].as_str() != Some(PART_OF) {
            errors.push(format!("{}: label app.kubernetes.io/part-of is not {PART_OF}", d.what()));
        }
        if let Some(pod) = d.pod_spec() {
            check_pod(d, pod, errors);
        }
    }
    check_services(docs, errors);

    // What every container runs (for Indexed Jobs: for every completion index).
    let mut runs = Vec::new();
    for d in docs {
        let Some(pod) = d.pod_spec() else { continue };
        let indexed = d.kind() == "Job" && d.yaml["spec"]["completionMode"].as_str() == Some("Indexed");
        let indexes: Vec<Option<u32>> = if indexed {
            let n = int(&d.yaml["spec"]["completions"]).unwrap_or(0).clamp(0, 1000) as u32;
            (0..n).map(Some).collect()
        } else {
            vec![None]
        };
        for (list, init) in [("initContainers", true), ("containers", false)] {
            for c in pod[list].as_vec().into_iter().flatten() {
                for &index in &indexes {
                    let what = format!("{} container {}", d.what(), c["name"].as_str().unwrap_or("?"));
                    let invocations = invocations(c, index, errors, &what);
                    runs.push(Run { doc: d, container: c, init, index, invocations });
                }
            }
        }
    }

    // A container that waits for a port (bash's /dev/tcp/HOST/PORT) waits for one that a Service serves.
    for r in runs.iter().filter(|r| r.index.unwrap_or(0) == 0) {
        for w in r.invocations.iter().flat_map(|i| &i.args) {
            if let Some(rest) = w.split("/dev/tcp/").nth(1) {
                let mut parts = rest.trim_end_matches(')').splitn(2, '/');
                let host = parts.next().unwrap_or("");
                match parts.next().and_then(|p| p.parse::<u16>().ok()) {
                    Some(port) => {
                        follow_service(docs, host, port, &format!("{} waits for", r.doc.what()), errors);
                    }
                    None => errors.push(format!("{}: cannot read the port of {w}", r.doc.what())),
                }
            }
        }
    }

    // Every harness command line: expanded, and parsed by the current harness.
    let mut calls = Vec::new();
    for r in &runs {
        for inv in r.invocations.iter().filter(|i| i.program == "harness") {
            let what = match r.index {
                Some(i) => format!("{} (index {i})", r.doc.what()),
                None => r.doc.what(),
            };
            for a in inv.args.iter().filter(|a| a.contains('$')) {
                errors.push(format!(
                    "{what}: `{a}` is not expanded (only an Indexed Job's $JOB_COMPLETION_INDEX is known)"
                ));
            }
            // The subcommand as clap sees it; as written when the line does not parse.
            let (path, matches) = match harness_matches(&inv.args) {
                Ok((path, m)) => (path, Some(m)),
                Err(e) => {
                    errors.push(format!(
                        "{what}: `harness {}` does not parse: {}",
                        inv.args.join(" "),
                        e.lines().next().unwrap_or("")
                    ));
                    (subcommand_path(&inv.args), None)
                }
            };
            calls.push(Call { run: r, path, matches });
        }
    }
    let of = |path: &str| calls.iter().filter(|c| c.path == path && !c.run.init).collect::<Vec<_>>();
    let workloads = |cs: &[&Call]| cs.iter().map(|c| c.run.doc.what()).collect::<BTreeSet<_>>();
    let soaks = of("soak");
    let gates = of("start-gate");
    let merges = of("report merge");

    // The soak Job.
    if workloads(&soaks).len() != 1 {
        errors
            .push(format!("want exactly one workload running `harness soak`, found {:?}", workloads(&soaks)));
        return plan;
    }
    let soak_doc = soaks[0].run.doc;
    let spec = &soak_doc.yaml["spec"];
    if soak_doc.yaml["apiVersion"].as_str() != Some("batch/v1") || soak_doc.kind() != "Job" {
        errors.push(format!("{}: the soak must be a batch/v1 Job", soak_doc.what()));
    }
    if spec["completionMode"].as_str() != Some("Indexed") {
        errors.push(format!("{}: completionMode must be Indexed (the shard index)", soak_doc.what()));
    }
    let Some(n) = int(&spec["completions"]).filter(|&n| n >= 1) else {
        errors.push(format!("{}: no completions", soak_doc.what()));
        return plan;
    };
    plan.shards = n as u32;
    if int(&spec["parallelism"]) != Some(n) {
        errors.push(format!(
            "{}: parallelism {:?} != completions {n}: every shard must run at once (they wait for each \
             other at the gate)",
            soak_doc.what(),
            int(&spec["parallelism"])
        ));
    }
    if int(&spec["backoffLimit"]) != Some(0) {
        errors.push(format!(
            "{}: backoffLimit must be 0: a shard started again after the gate released would begin late",
            soak_doc.what()
        ));
    }
    if spec["template"]["spec"]["restartPolicy"].as_str() != Some("Never") {
        errors.push(format!(
            "{}: restartPolicy must be Never (a restarted shard would begin late)",
            soak_doc.what()
        ));
    }
    if soaks.len() != n as usize {
        errors.push(format!("{}: {} `harness soak` runs for {n} completions", soak_doc.what(), soaks.len()));
    }
    let parsed: Vec<(&Call, &clap::ArgMatches)> =
        soaks.iter().filter_map(|c| c.matches.as_ref().map(|m| (*c, m))).collect();
    if parsed.len() != soaks.len() {
        return plan;
    }

    // Everything but the per-shard flags is the same for every shard: one seed, one set of settings.
    const PER_SHARD: [&str; 3] = ["shard", "wait_start", "out"];
    let common = |m: &clap::ArgMatches| -> BTreeMap<String, Vec<String>> {
        m.ids()
            .map(|id| id.as_str().to_string())
            .filter(|id| !PER_SHARD.contains(&id.as_str()))
            .map(|id| {
                let v = raw(m, &id);
                (id, v)
            })
            .filter(|(_, v)| !v.is_empty())
            .collect()
    };
    let first = common(parsed[0].1);
    let mut outs = Vec::new();
    let mut targets = BTreeSet::new();
    let mut wait_hosts = BTreeSet::new();
    for (c, m) in &parsed {
        let i = c.run.index.unwrap_or(0);
        let what = c.what();
        if common(m) != first {
            errors.push(format!(
                "{what}: settings differ from the first shard's: {:?} vs {first:?} (every shard must run \
                 the same settings and seed)",
                common(m)
            ));
        }
        if one(m, "seed").is_none() {
            errors
                .push(format!("{what}: no --seed: each shard would draw its own and the merge refuses them"));
        }
        if one(m, "shard") != Some(format!("{i}/{n}")) {
            errors.push(format!("{what}: --shard {:?}, want \"{i}/{n}\"", one(m, "shard")));
        }
        match one(m, "wait_start").as_deref().and_then(split_url) {
            Some((scheme, host, port, path)) if scheme == "http" => {
                if path != format!("/start?shard={i}") {
                    errors.push(format!("{what}: --wait-start path {path:?}, want \"/start?shard={i}\""));
                }
                wait_hosts.insert((host, port));
            }
            _ => errors
                .push(format!("{what}: --wait-start {:?} is not http://HOST:PORT/...", one(m, "wait_start"))),
        }
        match one(m, "target").as_deref().and_then(split_url) {
            Some((scheme, host, port, _)) => {
                targets.insert((scheme, host, port));
            }
            None => errors.push(format!("{what}: --target {:?} is not ws://HOST:PORT", one(m, "target"))),
        }
        let out = one(m, "out").unwrap_or_default();
        check_under_mount(c.run, &out, &what, errors);
        outs.push(out);
    }
    if outs.iter().collect::<BTreeSet<_>>().len() != outs.len() || outs.iter().any(String::is_empty) {
        errors.push(format!("{}: the shards' --out must all differ: {outs:?}", soak_doc.what()));
    }
    plan.seed = one(parsed[0].1, "seed").unwrap_or_default();
    plan.clients = one(parsed[0].1, "clients").and_then(|c| c.parse().ok()).unwrap_or(64);

    // --target: a Service port leading to the port the server listens on.
    if targets.len() == 1 {
        let (scheme, host, port) = targets.iter().next().expect("one").clone();
        plan.target = format!("{scheme}://{host}:{port}");
        check_target(docs, &runs, &scheme, &host, port, plan.clients, errors);
    } else {
        errors.push(format!("the shards' --target differ or are missing: {targets:?}"));
    }

    // --wait-start: the gate Service, the gate's --listen, and --expect N.
    if workloads(&gates).len() != 1 {
        errors.push(format!(
            "want exactly one workload running `harness start-gate`, found {:?}",
            workloads(&gates)
        ));
    } else {
        let gate = gates[0];
        if gate.one("expect") != Some(n.to_string()) {
            errors.push(format!(
                "{}: start-gate --expect {:?} != the soak's {n} shards",
                gate.what(),
                gate.one("expect")
            ));
        }
        if wait_hosts.len() == 1 {
            let (host, port) = wait_hosts.iter().next().expect("one").clone();
            plan.gate = format!("{host}:{port}");
            if let Some((container, cport)) = follow_service(docs, &host, port, "--wait-start", errors) {
                if !std::ptr::eq(container, gate.run.container) {
                    errors.push(format!(
                        "--wait-start {host}:{port} does not lead to the start-gate container"
                    ));
                }
                let listen = gate.one("listen").unwrap_or_else(|| "127.0.0.1:8080".into());
                match split_listen(&listen) {
                    Some((h, p)) if !loopback(&h) && p == cport => {}
                    _ => errors.push(format!(
                        "start-gate --listen {listen}: must listen on all interfaces on container port {cport}"
                    )),
                }
            }
        } else {
            errors.push(format!("the shards' --wait-start hosts differ: {wait_hosts:?}"));
        }
    }

    // The merge: the N shard directories, each once, on the soak's volume.
    if workloads(&merges).len() != 1 {
        errors.push(format!(
            "want exactly one workload running `harness report merge`, found {:?}",
            workloads(&merges)
        ));
        return plan;
    }
    let merge = merges[0];
    let dirs = merge.matches.as_ref().map(|m| raw(m, "dirs")).unwrap_or_default();
    let (mut want, mut got) = (outs.clone(), dirs.clone());
    want.sort();
    got.sort();
    if dirs.len() != n as usize || got != want {
        errors.push(format!(
            "{}: merges {} directories {dirs:?}, want the {n} shards' --out {outs:?}",
            merge.what(),
            dirs.len()
        ));
    }
    let out = merge.one("out").unwrap_or_default();
    if outs.contains(&out) {
        errors.push(format!("{}: --out {out} is a shard's directory", merge.what()));
    }
    for d in dirs.iter().chain([&out]) {
        check_under_mount(merge.run, d, &merge.what(), errors);
    }
    plan.merged = out;
    let claim_of = |r: &Run| -> Option<String> {
        r.doc.pod_spec()?["volumes"]
            .as_vec()?
            .iter()
            .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str().map(str::to_string))
    };
    let soak_claim = claim_of(soaks[0].run);
    let merge_claim = claim_of(merge.run);
    match (soak_claim, merge_claim) {
        (Some(s), Some(m)) if s == m => {
            match docs.iter().find(|d| d.kind() == "PersistentVolumeClaim" && d.name() == s) {
                None => errors.push(format!("PersistentVolumeClaim {s} is not defined in deploy/k8s")),
                Some(pvc) => {
                    let modes = strs(&pvc.yaml["spec"]["accessModes"]).unwrap_or_default();
                    if n > 1 && !modes.iter().any(|m| m == "ReadWriteMany") {
                        errors.push(format!(
                            "{}: accessModes {modes:?}: shards on several nodes need ReadWriteMany",
                            pvc.what()
                        ));
                    }
                }
            }
            plan.claim = s;
        }
        (s, m) => errors
            .push(format!("the soak and the merge must mount one PersistentVolumeClaim: {s:?} vs {m:?}")),
    }

    // The harness containers share one image (one `images:` override in kustomization.yaml moves all).
    let images: BTreeSet<&str> = calls.iter().filter_map(|c| c.run.container["image"].as_str()).collect();
    if images.len() != 1 {
        errors.push(format!("the containers running harness use different images: {images:?}"));
    }
    plan
}

/// `--target SCHEME://HOST:PORT` reaches, through the Service HOST, the port the server listens on for
/// SCHEME (for reference-server: its --ws or --tcp, on all interfaces), which admits `clients`.
fn check_target(
    docs: &[Doc],
    runs: &[Run],
    scheme: &str,
    host: &str,
    port: u16,
    clients: u64,
    errors: &mut Vec<String>,
) {
    let listen_id = match scheme {
        "ws" => "ws",
        "tcp" => "tcp",
        other => {
            errors.push(format!("--target scheme {other}: want ws or tcp"));
            return;
        }
    };
    let Some((container, cport)) = follow_service(docs, host, port, "--target", errors) else { return };
    let server = runs
        .iter()
        .filter(|r| std::ptr::eq(r.container, container))
        .flat_map(|r| &r.invocations)
        .find(|i| i.program == "reference-server");
    // Another server (the real ascii-chat) is checked only as far as the Service and container port.
    let Some(inv) = server else { return };
    let m = match server_matches(&inv.args) {
        Ok(m) => m,
        Err(e) => {
            errors.push(format!(
                "`reference-server {}` does not parse: {}",
                inv.args.join(" "),
                e.lines().next().unwrap_or("")
            ));
            return;
        }
    };
    let listen = one(&m, listen_id).unwrap_or_else(|| "127.0.0.1 (the default)".into());
    match split_listen(&listen) {
        Some((h, p)) if !loopback(&h) && p == cport => {}
        _ => errors.push(format!(
            "reference-server --{listen_id} {listen}: must listen on all interfaces on container port {cport}, \
             which {scheme}://{host}:{port} reaches"
        )),
    }
    let max: u64 = one(&m, "max_clients").and_then(|v| v.parse().ok()).unwrap_or(99);
    if clients > max {
        errors.push(format!("soak --clients {clients} is over the server's --max-clients {max}"));
    }
}

/// `path` (an absolute directory of a report) lies on the volume mounted in the run's container.
fn check_under_mount(r: &Run, path: &str, what: &str, errors: &mut Vec<String>) {
    let mounted = r.container["volumeMounts"].as_vec().into_iter().flatten().any(|m| {
        m["mountPath"].as_str().is_some_and(|mp| {
            let mp = mp.trim_end_matches('/');
            path.starts_with(&format!("{mp}/")) && path.len() > mp.len() + 1
        })
    });
    if !mounted {
        errors.push(format!("{what}: {path:?} is not on a mounted volume (the report would be lost)"));
    }
}

/// The container and container port that `HOST:PORT` reaches through the Service named HOST.
fn follow_service<'a>(
    docs: &'a [Doc],
    host: &str,
    port: u16,
    flag: &str,
    errors: &mut Vec<String>,
) -> Option<(&'a Yaml, u16)> {
    let short = host.split('.').next().unwrap_or(host);
    let Some(svc) = docs.iter().find(|d| d.kind() == "Service" && d.name() == short) else {
        errors.push(format!("{flag} {host}:{port}: no Service named {short}"));
        return None;
    };
    let Some(sp) = svc.yaml["spec"]["ports"]
        .as_vec()
        .into_iter()
        .flatten()
        .find(|p| int(&p["port"]) == Some(port as i64))
    else {
        errors.push(format!("{flag} {host}:{port}: {} has no port {port}", svc.what()));
        return None;
    };
    let selector = &svc.yaml["spec"]["selector"];
    for d in docs.iter().filter(|d| d.kind() == "Deployment" || d.kind() == "StatefulSet") {
        if !selects(selector, &d.yaml["spec"]["template"]["metadata"]["labels"]) {
            continue;
        }
        for c in d.yaml["spec"]["template"]["spec"]["containers"].as_vec().into_iter().flatten() {
            for cp in c["ports"].as_vec().into_iter().flatten() {
                let number = int(&cp["containerPort"]);
                let hit = match &sp["targetPort"] {
                    Yaml::Integer(t) => number == Some(*t),
                    Yaml::String(name) => cp["name"].as_str() == Some(name),
                    // No targetPort: the same as port.
                    _ => number == Some(port as i64),
                };
                if hit {
                    return number.map(|n| (c, n as u16));
                }
            }
        }
    }
    errors.push(format!("{flag} {host}:{port}: {} port {port} leads to no container port", svc.what()));
    None
}

/// Every label of `selector` is in `labels` (and there is at least one).
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    match selector.as_hash() {
        Some(h) if !h.is_empty() => h.iter().all(|(k, v)| k.as_str().is_some_and(|k| labels[k] == *v)),
        _ => false,
    }
}

fn check_services(docs: &[Doc], errors: &mut Vec<String>) {
    for d in docs.iter().filter(|d| d.kind() == "Deployment") {
        let sel = &d.yaml["spec"]["selector"]["matchLabels"];
        if !selects(sel, &d.yaml["spec"]["template"]["metadata"]["labels"]) {
            errors
                .push(format!("{}: selector.matchLabels does not match the pod template's labels", d.what()));
        }
    }
    for s in docs.iter().filter(|d| d.kind() == "Service") {
        let sel = &s.yaml["spec"]["selector"];
        let targets: Vec<&Doc> = docs
            .iter()
            .filter(|d| {
                d.kind() == "Deployment" && selects(sel, &d.yaml["spec"]["template"]["metadata"]["labels"])
            })
            .collect();
        if targets.len() != 1 {
            errors.push(format!(
                "{}: its selector matches the pods of {} Deployments, want 1",
                s.what(),
                targets.len()
            ));
        }
    }
}

/// Non-root and the rest of the "restricted" Pod Security Standard, resources on every container.
fn check_pod(d: &Doc, pod: &Yaml, errors: &mut Vec<String>) {
    let psc = &pod["securityContext"];
    let containers: Vec<&Yaml> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod[*l].as_vec().into_iter().flatten())
        .collect();
    if containers.is_empty() {
        errors.push(format!("{}: no containers", d.what()));
    }
    for c in containers {
        let what = format!("{} container {}", d.what(), c["name"].as_str().unwrap_or("?"));
        let csc = &c["securityContext"];
        // A container's securityContext overrides the pod's, field by field.
        let pick = |key: &str| -> Yaml {
            if csc[key].is_badvalue() {
                psc[key].clone()
            } else {
                csc[key].clone()
            }
        };
        let non_root = pick("runAsNonRoot").as_bool() == Some(true);
        let uid = int(&pick("runAsUser"));
        if uid == Some(0) || (!non_root && uid.is_none()) {
            errors.push(format!(
                "{what}: may run as root (want runAsNonRoot: true or a non-zero runAsUser), runAsUser {uid:?}"
            ));
        }
        if csc["allowPrivilegeEscalation"].as_bool() != Some(false) {
            errors.push(format!("{what}: allowPrivilegeEscalation must be false"));
        }
        let drops = strs(&csc["capabilities"]["drop"]).unwrap_or_default();
        if !drops.iter().any(|c| c == "ALL") {
            errors.push(format!("{what}: capabilities.drop must include ALL"));
        }
        if pick("seccompProfile")["type"].as_str() != Some("RuntimeDefault") {
            errors.push(format!("{what}: seccompProfile must be RuntimeDefault"));
        }
        for kind in ["requests", "limits"] {
            for res in ["cpu", "memory"] {
                if c["resources"][kind][res].is_badvalue() {
                    errors.push(format!("{what}: no resources.{kind}.{res}"));
                }
            }
        }
    }
}

fn check_kustomization(d: &Doc, files: &[(String, String)], errors: &mut Vec<String>) {
    for r in d.yaml["resources"].as_vec().into_iter().flatten() {
        match r.as_str() {
            Some(f) if files.iter().any(|(name, _)| name == f) => {}
            other => errors.push(format!("{}: resource {other:?} is not a file of deploy/k8s", d.file)),
        }
        if r.as_str() == Some("merge-job.yaml") {
            errors.push(format!(
                "{}: merge-job.yaml must not be applied with the rest: it merges the shards' finished reports",
                d.file
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Tests.

#[test]
fn sh_reader_expands_the_index_and_assignments() {
    let env = BTreeMap::from([("JOB_COMPLETION_INDEX".to_string(), "3".to_string())]);
    let script = "out=\"/r/shard-$JOB_COMPLETION_INDEX\" # the report\nexec harness soak --seed 42 \\\n  \
                  --shard \"${JOB_COMPLETION_INDEX}/4\" --out \"$out\" --x '$out' ; code=$?\n\
                  case \"$code\" in 0|1) exit 0 ;; esac";
    let cmds = shell_commands(script, &env);
    assert_eq!(
        cmds[0],
        ["harness", "soak", "--seed", "42", "--shard", "3/4", "--out", "/r/shard-3", "--x", "$out"],
        "{cmds:?}"
    );
    assert!(cmds.iter().all(|c| c[0] != "out=/r/shard-3"), "assignments are not commands: {cmds:?}");
    assert_eq!(k8s_expand("a$(JOB_COMPLETION_INDEX)b$$(X)$(Y)", &env), "a3b$(X)$(Y)");
}

/// The manifests in deploy/k8s agree with each other and with the harness command line.
#[test]
fn k8s_manifests_agree() {
    match check(&k8s_files()) {
        Ok(plan) => eprintln!("deploy/k8s: {plan:?}"),
        Err(errors) => panic!("deploy/k8s is inconsistent:\n  {}", errors.join("\n  ")),
    }
}

/// The checker's errors for deploy/k8s with `from` replaced by `to` in `file` (which must contain it).
fn mutated(file: &str, from: &str, to: &str) -> Vec<String> {
    let mut files = k8s_files();
    let (_, text) =
        files.iter_mut().find(|(n, _)| n == file).unwrap_or_else(|| panic!("no deploy/k8s/{file}"));
    assert!(text.contains(from), "{file} does not contain {from:?}: the mutation would test nothing");
    *text = text.replacen(from, to, 1);
    match check(&files) {
        Ok(plan) => panic!("{file} with {from:?} -> {to:?} was accepted: {plan:?}"),
        Err(e) => e,
    }
}

fn assert_rejected(file: &str, from: &str, to: &str, expect: &str) {
    let errors = mutated(file, from, to);
    assert!(
        errors.iter().any(|e| e.contains(expect)),
        "{file} with {from:?} -> {to:?}: no error mentioning {expect:?} among:\n  {}",
        errors.join("\n  ")
    );
}

#[test]
fn a_wrong_shard_count_is_rejected_wherever_it_is() {
    assert_rejected("soak-job.yaml", "completions: 4", "completions: 3", "parallelism");
    assert_rejected("soak-job.yaml", "completions: 4", "completions: 3", "--shard");
    assert_rejected("soak-job.yaml", "parallelism: 4", "parallelism: 2", "parallelism");
    assert_rejected("soak-job.yaml", "$JOB_COMPLETION_INDEX/4", "$JOB_COMPLETION_INDEX/5", "--shard");
    assert_rejected("start-gate.yaml", "\"--expect\", \"4\"", "\"--expect\", \"3\"", "--expect");
    assert_rejected("merge-job.yaml", "            - /reports/shard-3\n", "", "merges 3 directories");
    assert_rejected("merge-job.yaml", "/reports/shard-3", "/reports/shard-2", "merges 4 directories");
    assert_rejected("soak-job.yaml", "completionMode: Indexed", "completionMode: NonIndexed", "Indexed");
    assert_rejected("soak-job.yaml", "backoffLimit: 0", "backoffLimit: 3", "backoffLimit");
}

#[test]
fn shards_of_different_runs_are_rejected() {
    assert_rejected("soak-job.yaml", "--seed 42", "--seed 4$JOB_COMPLETION_INDEX", "settings differ");
    assert_rejected("soak-job.yaml", "--seed 42", "--seed $SEED", "not expanded");
    assert_rejected("soak-job.yaml", "--seed 42 ", "", "no --seed");
    assert_rejected("soak-job.yaml", "--shard \"$JOB_COMPLETION_INDEX/4\"", "--shard 0/4", "--shard");
    assert_rejected(
        "soak-job.yaml",
        "start?shard=$JOB_COMPLETION_INDEX",
        "start?shard=0",
        "--wait-start path",
    );
}

#[test]
fn unreachable_targets_and_gates_are_rejected() {
    assert_rejected(
        "soak-job.yaml",
        "ws://acip-server:27226",
        "ws://acip-srv:27226",
        "no Service named acip-srv",
    );
    // The TCP port of the Service is there, but a ws:// target must reach the server's --ws port.
    assert_rejected(
        "soak-job.yaml",
        "ws://acip-server:27226",
        "ws://acip-server:27224",
        "reference-server --ws",
    );
    assert_rejected("server.yaml", "- 0.0.0.0:27226", "- 127.0.0.1:27226", "reference-server --ws");
    assert_rejected(
        "server.yaml",
        "      targetPort: ws\n",
        "      targetPort: 9999\n",
        "leads to no container port",
    );
    assert_rejected("soak-job.yaml", "acip-start-gate:8080", "acip-start-gate:8081", "has no port 8081");
    assert_rejected("start-gate.yaml", "0.0.0.0:8080", "127.0.0.1:8080", "--listen");
    assert_rejected("soak-job.yaml", "--clients 32", "--clients 120", "--max-clients");
    assert_rejected(
        "server.yaml",
        "  selector:\n    app.kubernetes.io/name: acip-server\n    app.kubernetes.io/part-of: acip-harness\n  ports:",
        "  selector:\n    app.kubernetes.io/name: acip-srv\n  ports:",
        "matches the pods of 0 Deployments",
    );
}

#[test]
fn lost_reports_and_unknown_flags_are_rejected() {
    assert_rejected(
        "merge-job.yaml",
        "claimName: acip-reports",
        "claimName: acip-report",
        "one PersistentVolumeClaim",
    );
    assert_rejected("reports-pvc.yaml", "name: acip-reports", "name: reports", "is not defined");
    assert_rejected("reports-pvc.yaml", "- ReadWriteMany", "- ReadWriteOnce", "ReadWriteMany");
    assert_rejected(
        "soak-job.yaml",
        "--out \"$out\"",
        "--out \"/tmp/$JOB_COMPLETION_INDEX\"",
        "not on a mounted volume",
    );
    assert_rejected("soak-job.yaml", "--quiet", "--quite", "does not parse");
    assert_rejected("merge-job.yaml", "- merge\n", "- merges\n", "does not parse");
    assert_rejected(
        "kustomization.yaml",
        "  - soak-job.yaml\n",
        "  - soak-job.yaml\n  - merge-job.yaml\n",
        "merge-job",
    );
}

#[test]
fn root_containers_are_rejected() {
    assert_rejected(
        "merge-job.yaml",
        "runAsNonRoot: true\n        runAsUser: 10001",
        "runAsUser: 0",
        "may run as root",
    );
    assert_rejected(
        "server.yaml",
        "runAsNonRoot: true\n        runAsUser: 10001",
        "fsGroup: 10001",
        "may run as root",
    );
    assert_rejected(
        "start-gate.yaml",
        "allowPrivilegeEscalation: false",
        "allowPrivilegeEscalation: true",
        "Escalation",
    );
    assert_rejected("soak-job.yaml", "              cpu: 100m\n", "", "limits.cpu");
    assert_rejected("Dockerfile", "USER 10001:10001", "USER root", "runs as root");
    assert_rejected("Dockerfile", "USER 10001:10001\n", "", "no USER");
    assert_rejected("Dockerfile", "FROM rust:1-bookworm AS build\n", "", "FROM stage");
}

/// Every `--flag` of a harness command line in the manifests appears in that subcommand's `--help`.
#[test]
fn manifest_flags_are_in_the_help_texts() {
    let mut errors = Vec::new();
    let mut flags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, text) in k8s_files().iter().filter(|(n, _)| n.ends_with(".yaml")) {
        for yaml in YamlLoader::load_from_str(text).expect("YAML (see k8s_manifests_agree)") {
            let doc = Doc { file: name.clone(), yaml };
            let Some(pod) = doc.pod_spec() else { continue };
            for c in
                ["initContainers", "containers"].iter().flat_map(|l| pod[*l].as_vec().into_iter().flatten())
            {
                for inv in invocations(c, Some(0), &mut errors, &doc.what()) {
                    if inv.program != "harness" {
                        continue;
                    }
                    let entry = flags.entry(subcommand_path(&inv.args)).or_default();
                    for a in inv.args.iter().filter(|a| a.starts_with("--")) {
                        entry.insert(a.split('=').next().expect("split").to_string());
                    }
                }
            }
        }
    }
    assert!(errors.is_empty(), "{errors:?}");
    for path in ["soak", "start-gate", "report merge"] {
        assert!(flags.contains_key(path), "no `harness {path}` in deploy/k8s: {flags:?}");
    }
    let mut missing = Vec::new();
    for (path, used) in &flags {
        let out = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(path.split(' '))
            .arg("--help")
            .output()
            .expect("run harness");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "harness {path} --help failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for flag in used {
            let shown = help.match_indices(flag.as_str()).any(|(at, _)| {
                let before = help[..at].chars().next_back().unwrap_or(' ');
                let after = help[at + flag.len()..].chars().next().unwrap_or(' ');
                (before.is_whitespace() || before == '[' || before == ',')
                    && (after.is_whitespace() || matches!(after, '=' | '<' | ']' | ','))
            });
            if !shown {
                missing.push(format!("harness {path} {flag}"));
            }
        }
    }
    assert!(missing.is_empty(), "flags used in deploy/k8s that --help does not show: {missing:?}");
}

/// With `kubernetes-validate` installed (pip), the manifests validate against the Kubernetes OpenAPI
/// schemas (strict: unknown fields are errors), for the oldest supported and the newest known version; a
/// copy with a misspelled field shows that the validator does reject.
#[test]
fn k8s_manifests_match_the_kubernetes_schemas() {
    let Ok(v) = Command::new("kubernetes-validate").arg("--version").output() else {
        eprintln!(
            "kubernetes-validate is not installed (pip install kubernetes-validate): schema check skipped"
        );
        return;
    };
    if !v.status.success() {
        eprintln!("kubernetes-validate does not run: schema check skipped");
        return;
    }
    let manifests: Vec<PathBuf> = k8s_files()
        .into_iter()
        .filter(|(n, _)| n.ends_with(".yaml") && n != "kustomization.yaml")
        .map(|(n, _)| k8s_dir().join(n))
        .collect();
    for version in [None, Some("1.27.0")] {
        let mut cmd = Command::new("kubernetes-validate");
        cmd.args(["--strict", "--quiet"]);
        if let Some(v) = version {
            cmd.args(["--kubernetes-version", v]);
        }
        let o = cmd.args(&manifests).output().expect("run kubernetes-validate");
        assert!(
            o.status.success(),
            "kubernetes-validate ({version:?}) rejects deploy/k8s:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let dir = std::env::temp_dir().join(format!("acip-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("soak-job.yaml");
    let text = std::fs::read_to_string(k8s_dir().join("soak-job.yaml")).expect("soak-job.yaml");
    std::fs::write(&bad, text.replacen("completionMode:", "completionMod:", 1)).expect("write");
    let o =
        Command::new("kubernetes-validate").args(["--strict", "--quiet"]).arg(&bad).output().expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!o.status.success(), "kubernetes-validate accepted a misspelled field: {o:?}");
}

/// The ClusterFuzzLite files: project.yaml says rust, the Dockerfile puts the repository and build.sh
/// where build.sh looks, build.sh is valid bash and builds every target of fuzz/Cargo.toml with the flags
/// of `cargo fuzz run` (so that .ci/run's fuzz runs reuse the build), and .ci/run runs it before them.
#[test]
fn clusterfuzzlite_files_are_consistent() {
    let dir = root().join(".clusterfuzzlite");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let project = YamlLoader::load_from_str(&read(&dir.join("project.yaml"))).expect("project.yaml is YAML");
    assert_eq!(project[0]["language"].as_str(), Some("rust"), "project.yaml");

    let docker = read(&dir.join("Dockerfile"));
    let instrs: Vec<&str> =
        docker.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(instrs[0].starts_with("FROM gcr.io/oss-fuzz-base/base-builder-rust"), "{instrs:?}");
    for want in
        ["COPY . $SRC/acip-harness", "WORKDIR $SRC/acip-harness", "COPY .clusterfuzzlite/build.sh $SRC/"]
    {
        assert!(instrs.contains(&want), ".clusterfuzzlite/Dockerfile lacks `{want}`: {instrs:?}");
    }

    let build = dir.join("build.sh");
    let o = Command::new("bash").arg("-n").arg(&build).output().expect("bash");
    assert!(o.status.success(), "bash -n build.sh: {}", String::from_utf8_lossy(&o.stderr));
    let script = read(&build);
    assert!(script.contains("cargo fuzz build -O --debug-assertions\n"), "build.sh's cargo fuzz build flags");
    for want in ["_seed_corpus.zip", "corpus/seeds/", "$SRC/acip-harness", ".options", ".dict"] {
        assert!(script.contains(want), "build.sh lacks {want:?}");
    }

    let ci = read(&root().join(".ci/run"));
    let step = ci.find("step \"ClusterFuzzLite build.sh outside Docker\"").expect(".ci/run runs build.sh");
    let fuzz = ci.find("step \"fuzz smoke runs\"").expect(".ci/run has fuzz smoke runs");
    assert!(step < fuzz, ".ci/run must build with build.sh before the fuzz runs (they reuse its build)");
    assert!(ci[step..fuzz].contains("bash .clusterfuzzlite/build.sh"), "{}", &ci[step..fuzz]);
    // The fuzz runs use cargo-fuzz's default build, which -O --debug-assertions reproduces exactly.
    let runs: Vec<&str> = ci[fuzz..].lines().filter(|l| l.contains("cargo fuzz run")).collect();
    assert!(
        !runs.is_empty() && runs.iter().all(|l| !l.contains(" -O") && !l.contains("--release")),
        "{runs:?}"
    );

    let workflow = root().join(".github/workflows/cflite_pr.yml");
    if workflow.exists() {
        let w = YamlLoader::load_from_str(&read(&workflow)).expect("cflite_pr.yml is YAML");
        let steps = w[0]["jobs"]["PR"]["steps"].as_vec().expect("jobs.PR.steps");
        let uses: Vec<&str> = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
        assert!(
            uses.iter().any(|u| u.starts_with("google/clusterfuzzlite/actions/build_fuzzers@")),
            "{uses:?}"
        );
        assert!(steps.iter().any(|s| s["with"]["language"].as_str() == Some("rust")), "language: rust");
    }
}
