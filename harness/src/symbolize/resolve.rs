//! From a runtime address to object, function, file and line.
//!
//! A runtime address inside an executable mapping gives a file offset (`addr - start + offset`); the
//! object's `PT_LOAD` program headers turn that file offset into the ELF virtual address that DWARF
//! and the symbol tables use (for a PIE or a `.so` this removes the load bias; for a fixed-address
//! executable it gives back the address itself). addr2line then walks DWARF, inlined frames included,
//! and falls back to `.symtab`/`.dynsym` for objects without debug info (a stripped libc).
//!
//! Backtrace addresses are return addresses: the call that led to the next frame is the instruction
//! *before* them, and after a call to a `noreturn` function (abort) the return address may already lie
//! in the next function. So lookups use `vaddr - 1` ([`Symbolizer::adjust_return_addresses`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use object::{Object, ObjectSegment, ObjectSymbol};
use serde::Serialize;

use super::extract::{RawFrame, TextHint};
use super::maps::{Mapping, Maps};
use super::SymbolizeError;

/// Largest object file we read into memory to parse its headers and symbols.
pub const MAX_OBJECT_BYTES: u64 = 1 << 30;

/// How many distinct objects one symbolizer keeps open.
pub const MAX_OBJECTS: usize = 512;

/// One function frame at an address: several when calls were inlined, innermost first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFrame {
    /// Demangled function name (DWARF, else the nearest symbol).
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// True for a frame that was inlined into the next one.
    pub inlined: bool,
    /// True when the name came from a symbol table rather than DWARF (no line then).
    pub from_symbol_table: bool,
}

/// How the object of a frame was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The address was inside an executable mapping of the maps snapshot.
    Maps,
    /// No mapping held the address; the object and offset printed by `backtrace_symbols` were used.
    BacktraceText,
}

/// Where the names of an object came from (issue 13: Debian's `-dbgsym` convention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "route", rename_all = "snake_case")]
pub enum DebugInfo {
    /// DWARF (or at least the symbol table) inside the object itself.
    Embedded,
    /// A separate file named by the object's `.gnu_debuglink` (CRC checked), found beside it, in its
    /// `.debug/` directory or under `/usr/lib/debug`.
    Debuglink { file: String },
    /// `/usr/lib/debug/.build-id/xx/rest.debug`, from the object's GNU build ID.
    BuildId { file: String },
}

/// The address placed in one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// Object path as found (maps path, or the backtrace text's path resolved against the base dir).
    pub object: String,
    /// Offset in the object file (known when placed through maps).
    pub file_offset: Option<u64>,
    /// ELF virtual address of the frame.
    pub vaddr: u64,
    pub via: Via,
    /// Empty when neither DWARF nor a symbol table covers the address.
    pub frames: Vec<SourceFrame>,
    /// Which file the names came from.
    pub debug: DebugInfo,
    /// Set when the file on disk is not the one that was mapped (its inode differs from the maps
    /// line's): it was probably rebuilt since, and the names may be wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl Placement {
    /// The name this placement gives the address, for conflict detection.
    pub fn function(&self) -> Option<&str> {
        self.frames.last().and_then(|f| f.function.as_deref())
    }
}

/// The outcome for one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Placed in one object (and named, if `frames` is not empty).
    Placed(Placement),
    /// Two or more candidate objects give different names.
    Conflict { candidates: Vec<Placement> },
    /// Could not even be placed in an object.
    Failed { kind: &'static str, error: String },
}

/// One symbolized address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SymbolizedFrame {
    #[serde(serialize_with = "hex_u64")]
    pub addr: u64,
    /// Line of the input the address came from (0: command line).
    pub line: usize,
    pub hint: Option<TextHint>,
    pub outcome: Outcome,
}

fn hex_u64<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#x}"))
}

struct Segment {
    file_offset: u64,
    file_size: u64,
    vaddr: u64,
}

/// An object file opened for lookups.
struct ObjectInfo {
    loader: addr2line::Loader,
    inode: u64,
    segments: Vec<Segment>,
    /// Defined symbols by name (`.symtab` and `.dynsym`), for `func+0x10` backtrace text.
    symbols: HashMap<String, u64>,
    debug: DebugInfo,
}

/// Resolves addresses, caching opened objects.
pub struct Symbolizer {
    objects: HashMap<PathBuf, Result<Rc<ObjectInfo>, SymbolizeError>>,
    /// Base for relative object paths in backtrace text (the crashed process's working directory).
    pub base_dir: PathBuf,
    /// Look up `vaddr - 1` (the call instruction) rather than the return address itself.
    pub adjust_return_addresses: bool,
    /// Root of separate debug files ([`DEBUG_ROOT`] unless a test points it elsewhere).
    pub debug_root: PathBuf,
}

impl Symbolizer {
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        Symbolizer {
            objects: HashMap::new(),
            base_dir: base_dir.into(),
            adjust_return_addresses: true,
            debug_root: PathBuf::from(DEBUG_ROOT),
        }
    }

    /// Symbolizes one address found in text, with or without a maps snapshot.
    pub fn symbolize(&mut self, raw: &RawFrame, maps: Option<&Maps>) -> SymbolizedFrame {
        let outcome = self.outcome(raw, maps);
        SymbolizedFrame { addr: raw.addr, line: raw.line, hint: raw.hint.clone(), outcome }
    }

    fn outcome(&mut self, raw: &RawFrame, maps: Option<&Maps>) -> Outcome {
        let candidates = maps.map(|m| m.executable_candidates(raw.addr)).unwrap_or_default();
        if !candidates.is_empty() {
            return self.place_among_candidates(raw.addr, &candidates);
        }
        if let Some(hint) = &raw.hint {
            return match self.place_by_hint(hint) {
                Ok(p) => Outcome::Placed(p),
                Err(e) => failed(e),
            };
        }
        let err = match maps {
            None => SymbolizeError::NoMaps { addr: raw.addr },
            Some(m) => SymbolizeError::NotInMapping {
                addr: raw.addr,
                note: match m.any_containing(raw.addr) {
                    Some(map) => format!(
                        "it is in non-executable {} {}",
                        map.perms,
                        map.path.as_deref().unwrap_or("anonymous memory")
                    ),
                    None => "no mapping holds it".into(),
                },
            },
        };
        failed(err)
    }

    fn place_among_candidates(&mut self, addr: u64, candidates: &[&Mapping]) -> Outcome {
        let mut placed = Vec::new();
        let mut first_err = None;
        for m in candidates {
            match self.place_by_mapping(addr, m) {
                Ok(p) => placed.push(p),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if placed.is_empty() {
            return failed(first_err.expect("at least one candidate failed"));
        }
        let first_name = placed[0].function().map(str::to_owned);
        if placed.iter().all(|p| p.function() == first_name.as_deref()) {
            return Outcome::Placed(placed.swap_remove(0));
        }
        Outcome::Conflict { candidates: placed }
    }

    fn place_by_mapping(&mut self, addr: u64, m: &Mapping) -> Result<Placement, SymbolizeError> {
        let path = m.file().ok_or_else(|| SymbolizeError::ObjectMissing {
            path: m.path.clone().unwrap_or_default(),
            reason: "the mapping is not backed by a file".into(),
        })?;
        if path.ends_with(" (deleted)") {
            return Err(SymbolizeError::ObjectMissing {
                path: path.into(),
                reason: "the file was deleted after it was mapped".into(),
            });
        }
        let info = self.open(Path::new(path))?;
        let file_offset = m.file_offset(addr);
        let vaddr = info
            .segments
            .iter()
            .find(|s| (s.file_offset..s.file_offset + s.file_size).contains(&file_offset))
            .map(|s| file_offset - s.file_offset + s.vaddr)
            .ok_or_else(|| SymbolizeError::OffsetOutsideSegments {
                path: path.into(),
                offset: file_offset,
            })?;
        let frames = self.lookup(&info, vaddr);
        let warning = (m.inode != 0 && m.inode != info.inode).then(|| {
            format!(
                "{path} now has inode {} but inode {} was mapped: it was replaced since (or lives on an overlay \
                 filesystem); names may be wrong",
                info.inode, m.inode
            )
        });
        Ok(Placement {
            object: path.into(),
            file_offset: Some(file_offset),
            vaddr,
            via: Via::Maps,
            frames,
            debug: info.debug.clone(),
            warning,
        })
    }

    fn place_by_hint(&mut self, hint: &TextHint) -> Result<Placement, SymbolizeError> {
        let path = self.base_dir.join(&hint.object);
        let info = self.open(&path)?;
        let base = match &hint.symbol {
            None => 0,
            Some(sym) => *info.symbols.get(sym).ok_or_else(|| SymbolizeError::UnknownSymbol {
                path: path.display().to_string(),
                symbol: sym.clone(),
            })?,
        };
        let vaddr = base.wrapping_add_signed(hint.offset);
        let frames = self.lookup(&info, vaddr);
        let object = path.display().to_string();
        Ok(Placement {
            object,
            file_offset: None,
            vaddr,
            via: Via::BacktraceText,
            frames,
            debug: info.debug.clone(),
            warning: None,
        })
    }

    fn lookup(&self, info: &ObjectInfo, vaddr: u64) -> Vec<SourceFrame> {
        let probe = if self.adjust_return_addresses { vaddr.saturating_sub(1) } else { vaddr };
        let mut out = Vec::new();
        if let Ok(mut iter) = info.loader.find_frames(probe) {
            // A malformed DWARF entry ends the walk; what was found so far is kept.
            while let Ok(Some(frame)) = iter.next() {
                let function =
                    frame.function.as_ref().and_then(|f| f.demangle().ok()).map(|n| n.into_owned());
                let (file, line) = match &frame.location {
                    Some(loc) => (loc.file.map(str::to_owned), loc.line),
                    None => (None, None),
                };
                out.push(SourceFrame { function, file, line, inlined: true, from_symbol_table: false });
            }
        }
        if let Some(last) = out.last_mut() {
            last.inlined = false;
        }
        if out.iter().all(|f| f.function.is_none()) {
            // No DWARF function here: name it from the symbol table, keep any line-table location.
            let location = out.pop();
            out.clear();
            if let Some(sym) = info.loader.find_symbol(probe) {
                let name = addr2line::demangle_auto(sym.into(), None).into_owned();
                out.push(SourceFrame {
                    function: Some(name),
                    file: location.as_ref().and_then(|l| l.file.clone()),
                    line: location.and_then(|l| l.line),
                    inlined: false,
                    from_symbol_table: true,
                });
            }
        }
        out
    }

    fn open(&mut self, path: &Path) -> Result<Rc<ObjectInfo>, SymbolizeError> {
        if let Some(r) = self.objects.get(path) {
            return r.clone();
        }
        if self.objects.len() >= MAX_OBJECTS {
            self.objects.clear();
        }
        let r = open_object(path, &self.debug_root).map(Rc::new);
        self.objects.insert(path.to_path_buf(), r.clone());
        r
    }
}

fn failed(e: SymbolizeError) -> Outcome {
    Outcome::Failed { kind: e.kind(), error: e.to_string() }
}

fn open_object(path: &Path, debug_root: &Path) -> Result<ObjectInfo, SymbolizeError> {
    let shown = || path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| SymbolizeError::ObjectMissing { path: shown(), reason: e.to_string() })?;
    if !meta.is_file() {
        return Err(SymbolizeError::ObjectMissing { path: shown(), reason: "not a regular file".into() });
    }
    if meta.len() > MAX_OBJECT_BYTES {
        return Err(SymbolizeError::ObjectUnreadable {
            path: shown(),
            reason: format!("{} bytes is over the {MAX_OBJECT_BYTES}-byte limit", meta.len()),
        });
    }
    let data = std::fs::read(path)
        .map_err(|e| SymbolizeError::ObjectMissing { path: shown(), reason: e.to_string() })?;
    if !data.starts_with(b"\x7fELF") {
        return Err(SymbolizeError::NotElf { path: shown() });
    }
    let file = object::File::parse(&*data)
        .map_err(|e| SymbolizeError::ObjectUnreadable { path: shown(), reason: e.to_string() })?;
    let segments = file
        .segments()
        .map(|s| {
            let (file_offset, file_size) = s.file_range();
            Segment { file_offset, file_size, vaddr: s.address() }
        })
        .collect();
    let mut symbols = HashMap::new();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.is_definition() {
            if let Ok(name) = sym.name() {
                symbols.entry(name.to_owned()).or_insert(sym.address());
            }
        }
    }
    // Stripped of DWARF: look for the separate debug file (build ID first, as gdb does, then debuglink).
    let (names_from, debug) = match file.section_by_name(".debug_info") {
        Some(_) => (path.to_path_buf(), DebugInfo::Embedded),
        None => match separate_debug_file(path, &file, debug_root) {
            Some((found, debug)) => {
                // The debug file keeps the full symbol table the stripped object lost.
                if let Ok(bytes) = std::fs::read(&found) {
                    if let Ok(dbg) = object::File::parse(&*bytes) {
                        for sym in dbg.symbols() {
                            if sym.is_definition() {
                                if let Ok(name) = sym.name() {
                                    symbols.entry(name.to_owned()).or_insert(sym.address());
                                }
                            }
                        }
                    }
                }
                (found, debug)
            }
            None => (path.to_path_buf(), DebugInfo::Embedded),
        },
    };
    let loader = addr2line::Loader::new(&names_from)
        .map_err(|e| SymbolizeError::ObjectUnreadable { path: shown(), reason: e.to_string() })?;
    Ok(ObjectInfo { loader, inode: std::os::unix::fs::MetadataExt::ino(&meta), segments, symbols, debug })
}

/// Where separate debug files live (Debian's `-dbgsym` packages install under it).
pub const DEBUG_ROOT: &str = "/usr/lib/debug";

/// The separate debug file of a stripped object: `/usr/lib/debug/.build-id/xx/rest.debug` for its build ID,
/// else the `.gnu_debuglink` name beside it, in `.debug/` beside it, or under `/usr/lib/debug/<its dir>`,
/// accepted only when its CRC-32 matches the link's.
fn separate_debug_file(
    path: &Path,
    file: &object::File<'_>,
    debug_root: &Path,
) -> Option<(PathBuf, DebugInfo)> {
    if let Ok(Some(id)) = file.build_id() {
        if id.len() >= 2 {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let candidate = debug_root.join(".build-id").join(&hex[..2]).join(format!("{}.debug", &hex[2..]));
            if candidate.is_file() {
                let file = candidate.display().to_string();
                return Some((candidate, DebugInfo::BuildId { file }));
            }
        }
    }
    let (name, crc) = file.gnu_debuglink().ok().flatten()?;
    let name = Path::new(std::str::from_utf8(name).ok()?);
    let dir = path.parent().unwrap_or(Path::new("/"));
    let rooted = debug_root.join(dir.strip_prefix("/").unwrap_or(dir));
    [dir.join(name), dir.join(".debug").join(name), rooted.join(name)]
        .into_iter()
        .filter(|c| c.is_file() && c != path)
        .find(|c| std::fs::read(c).is_ok_and(|bytes| crc32fast::hash(&bytes) == crc))
        .map(|c| {
            let file = c.display().to_string();
            (c, DebugInfo::Debuglink { file })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker_function_for_symbolize() -> u32 {
        std::hint::black_box(42)
    }

    fn self_maps() -> Maps {
        Maps::parse(&std::fs::read_to_string("/proc/self/maps").unwrap()).unwrap()
    }

    #[test]
    fn resolves_a_function_of_this_test_binary_through_its_own_maps() {
        let addr = marker_function_for_symbolize as *const () as usize as u64;
        let mut s = Symbolizer::new("/");
        s.adjust_return_addresses = false;
        let f = s.symbolize(&RawFrame { addr, hint: None, line: 0 }, Some(&self_maps()));
        let Outcome::Placed(p) = &f.outcome else { panic!("{f:?}") };
        assert_eq!(p.via, Via::Maps);
        let name = p.function().unwrap();
        assert!(name.ends_with("tests::marker_function_for_symbolize"), "{name}");
        let frame = p.frames.last().unwrap();
        assert!(frame.file.as_deref().unwrap().ends_with("resolve.rs"), "{frame:?}");
        assert!(!frame.from_symbol_table);
    }

    /// Builds `prog` (with a GNU build ID and DWARF) in a fresh directory; `None` without a C toolchain.
    fn stripped_program(name: &str) -> Option<(PathBuf, PathBuf)> {
        let run = |dir: &Path, cmd: &str, args: &[&str]| {
            std::process::Command::new(cmd).current_dir(dir).args(args).status().is_ok_and(|s| s.success())
        };
        let dir = std::env::temp_dir().join(format!("acip-debuginfo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("prog.c"),
            "int twice(int x) {\n    return 2 * x;\n}\nint main(void) { return twice(1); }\n",
        )
        .unwrap();
        if !run(&dir, "cc", &["-g", "-O0", "-Wl,--build-id", "-o", "prog", "prog.c"])
            || !run(&dir, "objcopy", &["--only-keep-debug", "prog", "prog.debug"])
            || !run(&dir, "strip", &["--strip-all", "prog"])
        {
            eprintln!("SKIP: cc/objcopy/strip unavailable");
            return None;
        }
        Some((dir.clone(), dir.join("prog")))
    }

    /// `twice+4` in `prog`, as a backtrace would print it, symbolized with a fresh symbolizer over `root`.
    fn twice(root: &Path, prog: &Path) -> Outcome {
        let mut s = Symbolizer::new("/");
        s.debug_root = root.to_path_buf();
        let hint = TextHint { object: prog.display().to_string(), symbol: Some("twice".into()), offset: 4 };
        s.symbolize(&RawFrame { addr: 0, hint: Some(hint), line: 1 }, None).outcome
    }

    fn placed(o: Outcome) -> Placement {
        let Outcome::Placed(p) = o else { panic!("{o:?}") };
        p
    }

    /// Issue 13, separate debug info: a stripped program whose `.gnu_debuglink` names a file beside it is
    /// named with file and line from that file (its CRC is checked: a different file is not used), and one
    /// whose build ID has a file under the debug root is named from there; each placement says the route.
    #[test]
    fn stripped_objects_are_named_from_their_separate_debug_files() {
        let Some((dir, prog)) = stripped_program("link") else { return };
        let no_root = dir.join("no-such-root");
        // Stripped and unlinked: not even the symbol is known.
        assert!(matches!(twice(&no_root, &prog), Outcome::Failed { kind: "unknown_symbol", .. }));
        let ok = std::process::Command::new("objcopy")
            .current_dir(&dir)
            .args(["--add-gnu-debuglink=prog.debug", "prog"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok);
        let p = placed(twice(&no_root, &prog));
        assert_eq!(p.debug, DebugInfo::Debuglink { file: dir.join("prog.debug").display().to_string() });
        let f = p.frames.last().unwrap();
        assert!(f.function.as_deref() == Some("twice") && matches!(f.line, Some(1 | 2)), "{p:?}");
        assert!(f.file.as_deref().unwrap().ends_with("prog.c"));
        // A file of that name whose CRC-32 differs from the link's is not used.
        let good = std::fs::read(dir.join("prog.debug")).unwrap();
        std::fs::write(dir.join("prog.debug"), b"corrupted").unwrap();
        assert!(matches!(twice(&no_root, &prog), Outcome::Failed { kind: "unknown_symbol", .. }));
        std::fs::write(dir.join("prog.debug"), good).unwrap();
        let _ = std::fs::remove_dir_all(&dir);

        let Some((dir, prog)) = stripped_program("buildid") else { return };
        let bytes = std::fs::read(&prog).unwrap();
        let id = object::File::parse(&*bytes).unwrap().build_id().unwrap().unwrap().to_vec();
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let root = dir.join("debug-root");
        let at = root.join(".build-id").join(&hex[..2]);
        std::fs::create_dir_all(&at).unwrap();
        std::fs::rename(dir.join("prog.debug"), at.join(format!("{}.debug", &hex[2..]))).unwrap();
        let p = placed(twice(&root, &prog));
        assert!(matches!(&p.debug, DebugInfo::BuildId { file } if file.ends_with(".debug")), "{p:?}");
        let f = p.frames.last().unwrap();
        assert!(f.function.as_deref() == Some("twice") && matches!(f.line, Some(1 | 2)), "{p:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unplaceable_addresses_say_why() {
        let maps = self_maps();
        let mut s = Symbolizer::new("/");
        let heap = Box::new(7u64);
        let addr = &*heap as *const u64 as u64;
        let f = s.symbolize(&RawFrame { addr, hint: None, line: 1 }, Some(&maps));
        assert!(
            matches!(&f.outcome, Outcome::Failed { kind: "not_in_mapping", error } if error.contains("non-executable")),
            "{f:?}"
        );
        let f = s.symbolize(&RawFrame { addr: 0x10, hint: None, line: 1 }, None);
        assert!(matches!(&f.outcome, Outcome::Failed { kind: "no_maps", .. }), "{f:?}");
        let hint = TextHint { object: "/nonexistent/libnope.so".into(), symbol: None, offset: 0x10 };
        let f = s.symbolize(&RawFrame { addr: 0x7f00_0000_1000, hint: Some(hint), line: 1 }, None);
        assert!(matches!(&f.outcome, Outcome::Failed { kind: "object_missing", .. }), "{f:?}");
    }

    #[test]
    fn a_non_elf_object_is_named_as_such() {
        // This source file: certainly a file, certainly not ELF.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/symbolize/resolve.rs");
        let maps = Maps::parse(&format!("10000-20000 r-xp 00000000 00:00 1 {}\n", path.display())).unwrap();
        let mut s = Symbolizer::new("/");
        let f = s.symbolize(&RawFrame { addr: 0x10010, hint: None, line: 1 }, Some(&maps));
        assert!(matches!(&f.outcome, Outcome::Failed { kind: "not_elf", .. }), "{f:?}");
    }
}
