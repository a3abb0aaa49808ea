//! `harness symbolize`: turn raw backtrace addresses into `[object] function (file:line)`, for the
//! main executable and every shared library alike (issue 8).
//!
//! ```text
//! harness symbolize [--pid PID | --maps FILE] [--log FILE] [--json] [ADDR...]
//! ```
//!
//! Addresses come from the arguments, else from `--log FILE`, else from stdin, in the forms
//! [`extract`] knows. Each one is placed in the executable mapping that holds it ([`maps`]), then
//! named from DWARF or the symbol tables ([`resolve`]). Without a maps snapshot (or when no mapping
//! holds the address) the `object(symbol+0x..)` text of glibc's `backtrace_symbols` is used instead.
//!
//! Output, one line per frame (inlined frames get their own line, innermost first):
//!
//! ```text
//! 0x7f3a2b1c1139 [libcrash.so] crash_in_lib (/tmp/t/crash_lib.c:9)
//! 0x7f3a2b0a1234 [libc.so.6] abort
//! 0x7f3a2b1c1139 [CONFLICT] liba.so:f | libb.so:g
//! 0x7f3a2b0f0000 [libx.so+0x1000] ??
//! 0x00000001234 [?] ?? (address 0x1234 is not in any executable mapping: no mapping holds it)
//! ```
//!
//! Exit status: 0 when at least one address was placed and none conflicts; 1 when none could be placed
//! or any conflicts (everything is still printed); 2 for unusable arguments (bad address, no address);
//! 3 for an unreadable or unparseable maps file (the message names the line).

pub mod extract;
pub mod maps;
pub mod resolve;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use extract::{RawFrame, TextHint};
pub use maps::{Mapping, Maps};
pub use resolve::{Outcome, Placement, SourceFrame, SymbolizedFrame, Symbolizer, Via};

/// Most addresses one run symbolizes.
pub const MAX_ADDRESSES: usize = 100_000;

/// Arguments of `harness symbolize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Use the mappings of this running process (/proc/PID/maps).
    #[arg(long, conflicts_with = "maps")]
    pub pid: Option<u32>,
    /// Use a saved maps file (/proc/PID/maps format), e.g. the maps.txt of a crash report.
    #[arg(long)]
    pub maps: Option<PathBuf>,
    /// Extract addresses from this log file (ignored when ADDRs are given).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Directory that relative object paths in backtrace text are relative to [default: current dir].
    #[arg(long)]
    pub base_dir: Option<PathBuf>,
    /// Look up each address itself instead of the call instruction before it (for exact PCs, not
    /// return addresses).
    #[arg(long)]
    pub no_adjust: bool,
    /// Print JSON instead of one line per frame.
    #[arg(long)]
    pub json: bool,
    /// Addresses in hex (`0x` optional). With none, addresses are extracted from --log or stdin.
    pub addrs: Vec<String>,
}

/// What can go wrong while symbolizing. Per-address problems (not in a mapping, object missing or not
/// ELF) end up in that address's [`Outcome::Failed`]; input problems end the run.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolizeError {
    #[error("maps line {line}: {reason}: {text:?}")]
    MapsLine { line: usize, text: String, reason: String },
    #[error("maps text of {bytes} bytes is over the {limit}-byte limit")]
    MapsTooLarge { bytes: usize, limit: usize },
    #[error("address {addr:#x} is not in any executable mapping: {note}")]
    NotInMapping { addr: u64, note: String },
    #[error("address {addr:#x}: no maps snapshot given and its line names no object")]
    NoMaps { addr: u64 },
    #[error("object {path} is missing: {reason}")]
    ObjectMissing { path: String, reason: String },
    #[error("object {path} is not an ELF file")]
    NotElf { path: String },
    #[error("object {path} could not be read: {reason}")]
    ObjectUnreadable { path: String, reason: String },
    #[error("object {path}: file offset {offset:#x} is in no PT_LOAD segment")]
    OffsetOutsideSegments { path: String, offset: u64 },
    #[error("object {path} has no symbol {symbol:?}")]
    UnknownSymbol { path: String, symbol: String },
    #[error("{token:?} is not a hex address")]
    BadAddress { token: String },
    #[error("no addresses found in the input")]
    NoAddresses,
    #[error("more than {limit} addresses in the input")]
    TooManyAddresses { limit: usize },
}

impl SymbolizeError {
    /// A stable short name for JSON output and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            SymbolizeError::MapsLine { .. } => "maps_line",
            SymbolizeError::MapsTooLarge { .. } => "maps_too_large",
            SymbolizeError::NotInMapping { .. } => "not_in_mapping",
            SymbolizeError::NoMaps { .. } => "no_maps",
            SymbolizeError::ObjectMissing { .. } => "object_missing",
            SymbolizeError::NotElf { .. } => "not_elf",
            SymbolizeError::ObjectUnreadable { .. } => "object_unreadable",
            SymbolizeError::OffsetOutsideSegments { .. } => "offset_outside_segments",
            SymbolizeError::UnknownSymbol { .. } => "unknown_symbol",
            SymbolizeError::BadAddress { .. } => "bad_address",
            SymbolizeError::NoAddresses => "no_addresses",
            SymbolizeError::TooManyAddresses { .. } => "too_many_addresses",
        }
    }
}

/// Extracts every frame address from text, in order, at most [`MAX_ADDRESSES`].
pub fn frames_in_text(
    reader: impl std::io::BufRead,
) -> std::io::Result<Result<Vec<RawFrame>, SymbolizeError>> {
    let mut frames = Vec::new();
    let mut too_many = false;
    extract::for_each_line(reader, |n, line| {
        if !too_many {
            frames.extend(extract::frames_in_line(line, n));
            too_many = frames.len() > MAX_ADDRESSES;
        }
    })?;
    Ok(if too_many { Err(SymbolizeError::TooManyAddresses { limit: MAX_ADDRESSES }) } else { Ok(frames) })
}

/// Counts of a symbolized list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub placed: usize,
    pub named: usize,
    pub conflicts: usize,
    pub failed: usize,
}

impl Summary {
    pub fn of(frames: &[SymbolizedFrame]) -> Summary {
        let mut s = Summary::default();
        for f in frames {
            match &f.outcome {
                Outcome::Placed(p) => {
                    s.placed += 1;
                    s.named += usize::from(p.function().is_some());
                }
                Outcome::Conflict { .. } => s.conflicts += 1,
                Outcome::Failed { .. } => s.failed += 1,
            }
        }
        s
    }
}

fn object_name(path: &str) -> &str {
    Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or(path)
}

/// The text lines for one frame: one per function frame (inlined ones first), or one for a conflict,
/// an unnamed placement or a failure.
pub fn render_frame(f: &SymbolizedFrame) -> Vec<String> {
    let addr = format!("{:#014x}", f.addr);
    match &f.outcome {
        Outcome::Placed(p) if !p.frames.is_empty() => p
            .frames
            .iter()
            .map(|sf| {
                let name = sf.function.as_deref().unwrap_or("??");
                let place = match (&sf.file, sf.line) {
                    (Some(file), Some(line)) => format!(" ({file}:{line})"),
                    (Some(file), None) => format!(" ({file})"),
                    _ => String::new(),
                };
                let inlined = if sf.inlined { " [inlined]" } else { "" };
                let replaced = if p.warning.is_some() { " [object replaced?]" } else { "" };
                let route = match &p.debug {
                    resolve::DebugInfo::Embedded => "",
                    resolve::DebugInfo::Debuglink { .. } => " {debuglink}",
                    resolve::DebugInfo::BuildId { .. } => " {build-id}",
                };
                format!("{addr} [{}] {name}{place}{inlined}{replaced}{route}", object_name(&p.object))
            })
            .collect(),
        Outcome::Placed(p) => {
            vec![format!("{addr} [{}+{:#x}] ??", object_name(&p.object), p.file_offset.unwrap_or(p.vaddr))]
        }
        Outcome::Conflict { candidates } => {
            let names: Vec<String> = candidates
                .iter()
                .map(|p| format!("{}:{}", object_name(&p.object), p.function().unwrap_or("??")))
                .collect();
            vec![format!("{addr} [CONFLICT] {}", names.join(" | "))]
        }
        Outcome::Failed { error, .. } => vec![format!("{addr} [?] ?? ({error})")],
    }
}

/// Reads `/proc/PID/maps`.
pub fn read_pid_maps(pid: u32) -> crate::Result<Maps> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(format!("reading {path}"), e))?;
    if text.is_empty() {
        return Err(crate::Error::Input { path, reason: "empty: the process has exited".into() });
    }
    Maps::parse(&text).map_err(|e| crate::Error::Input { path, reason: e.to_string() })
}

pub fn run(args: Args) -> crate::Result<ExitCode> {
    let maps = match (&args.pid, &args.maps) {
        (Some(pid), _) => Some(read_pid_maps(*pid)?),
        (None, Some(path)) => {
            let shown = path.display().to_string();
            let mut text = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| {
                    std::io::Read::read_to_end(
                        &mut std::io::Read::take(f, maps::MAX_MAPS_BYTES as u64 + 1),
                        &mut text,
                    )
                })
                .map_err(|e| crate::Error::io(format!("reading {shown}"), e))?;
            let maps = Maps::parse(&String::from_utf8_lossy(&text))
                .map_err(|e| crate::Error::Input { path: shown, reason: e.to_string() })?;
            Some(maps)
        }
        (None, None) => None,
    };
    let raw = if !args.addrs.is_empty() {
        args.addrs
            .iter()
            .map(|t| {
                extract::parse_address(t).map(|addr| RawFrame { addr, hint: None, line: 0 }).ok_or_else(
                    || crate::Error::Usage(SymbolizeError::BadAddress { token: t.clone() }.to_string()),
                )
            })
            .collect::<crate::Result<Vec<_>>>()?
    } else {
        let read = match &args.log {
            Some(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| crate::Error::io(format!("opening {}", path.display()), e))?;
                frames_in_text(std::io::BufReader::new(file))
            }
            None => frames_in_text(std::io::stdin().lock()),
        };
        read.map_err(|e| crate::Error::io("reading the backtrace text", e))?
            .map_err(|e| crate::Error::Usage(e.to_string()))?
    };
    if raw.is_empty() {
        return Err(crate::Error::Usage(SymbolizeError::NoAddresses.to_string()));
    }
    let base_dir = match args.base_dir {
        Some(d) => d,
        None => std::env::current_dir().map_err(|e| crate::Error::io("reading the current directory", e))?,
    };
    let mut symbolizer = Symbolizer::new(base_dir);
    symbolizer.adjust_return_addresses = !args.no_adjust;
    let frames: Vec<SymbolizedFrame> = raw.iter().map(|r| symbolizer.symbolize(r, maps.as_ref())).collect();
    let summary = Summary::of(&frames);

    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let doc = serde_json::json!({ "summary": summary, "frames": frames });
        serde_json::to_writer_pretty(&mut out, &doc)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        frames.iter().flat_map(render_frame).try_for_each(|l| writeln!(out, "{l}"))
    };
    written.map_err(|e| crate::Error::io("writing the output", e))?;
    Ok(if summary.placed == 0 || summary.conflicts > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
