//! Parsing of the Linux `/proc/PID/maps` format (proc(5)): one mapping per line,
//! `start-end perms offset dev inode [path]`, all numbers in hex except the inode.

use std::fmt;

use super::SymbolizeError;

/// Longest maps text we accept (a large server has a few thousand mappings of ~100 bytes each).
pub const MAX_MAPS_BYTES: usize = 64 << 20;

/// One line of a maps file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// The four permission characters, e.g. `r-xp`.
    pub perms: String,
    /// Offset of `start` in the mapped file.
    pub offset: u64,
    /// Device `major:minor` in hex, as printed.
    pub dev: String,
    pub inode: u64,
    /// The mapped file, or a pseudo-name such as `[vdso]`, or `None` for anonymous memory.
    pub path: Option<String>,
}

impl Mapping {
    pub fn is_executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The file behind this mapping, if any: pseudo-mappings (`[vdso]`, `[heap]`) have none.
    pub fn file(&self) -> Option<&str> {
        self.path.as_deref().filter(|p| p.starts_with('/'))
    }

    /// The offset in the mapped file of a runtime address inside this mapping.
    pub fn file_offset(&self, addr: u64) -> u64 {
        addr - self.start + self.offset
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:x}-{:x} {} {:08x} {} {}",
            self.start, self.end, self.perms, self.offset, self.dev, self.inode
        )?;
        if let Some(p) = &self.path {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

/// A parsed maps file.
#[derive(Debug, Clone, Default)]
pub struct Maps {
    pub mappings: Vec<Mapping>,
}

impl Maps {
    /// Parses maps text. Blank lines are skipped; any other line that does not parse is an error that
    /// names its 1-based line number.
    pub fn parse(text: &str) -> Result<Maps, SymbolizeError> {
        if text.len() > MAX_MAPS_BYTES {
            return Err(SymbolizeError::MapsTooLarge { bytes: text.len(), limit: MAX_MAPS_BYTES });
        }
        let mut mappings = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let m = parse_line(line).map_err(|reason| SymbolizeError::MapsLine {
                line: i + 1,
                text: truncate(line, 120),
                reason,
            })?;
            mappings.push(m);
        }
        Ok(Maps { mappings })
    }

    /// Every executable, file-backed mapping containing `addr`. More than one is only possible in a
    /// crafted or merged maps file; the caller reports that as a conflict if the candidates disagree.
    pub fn executable_candidates(&self, addr: u64) -> Vec<&Mapping> {
        self.mappings.iter().filter(|m| m.is_executable() && m.contains(addr)).collect()
    }

    /// Any mapping (executable or not) containing `addr`, for explaining why it is not code.
    pub fn any_containing(&self, addr: u64) -> Option<&Mapping> {
        self.mappings.iter().find(|m| m.contains(addr))
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn hex(field: &str, what: &str) -> Result<u64, String> {
    u64::from_str_radix(field, 16).map_err(|_| format!("{what} {field:?} is not a hex number"))
}

fn parse_line(line: &str) -> Result<Mapping, String> {
    // The path is everything after the fifth field and may contain spaces (` (deleted)` too).
    let mut rest = line.trim_start();
    let mut fields = [""; 5];
    for (i, slot) in fields.iter_mut().enumerate() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return Err(format!("expected 5 fields before the path, found {i}"));
        }
        *slot = &rest[..end];
        rest = rest[end..].trim_start();
    }
    let [range, perms, offset, dev, inode] = fields;
    let (start, end) = range.split_once('-').ok_or_else(|| format!("address range {range:?} lacks '-'"))?;
    let (start, end) = (hex(start, "start address")?, hex(end, "end address")?);
    if start >= end {
        return Err(format!("empty or reversed range {range}"));
    }
    if perms.len() != 4 || !perms.bytes().all(|b| b"rwxps-".contains(&b)) {
        return Err(format!("permissions {perms:?} are not four of r/w/x/p/s/-"));
    }
    let offset = hex(offset, "offset")?;
    if !dev.contains(':') || dev.split(':').any(|h| u32::from_str_radix(h, 16).is_err()) {
        return Err(format!("device {dev:?} is not major:minor in hex"));
    }
    let inode = inode.parse::<u64>().map_err(|_| format!("inode {inode:?} is not a decimal number"))?;
    let path = (!rest.is_empty()).then(|| rest.trim_end().to_string());
    Ok(Mapping { start, end, perms: perms.to_string(), offset, dev: dev.to_string(), inode, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /tmp/my prog
55d0c0a01000-55d0c0a02000 r-xp 00001000 08:01 1234 /tmp/my prog
7f0000000000-7f0000021000 rw-p 00000000 00:00 0
7ffd1000000-7ffd1002000 r-xp 00000000 00:00 0                          [vdso]

7f1000001000-7f1000002000 r-xp 00001000 fd:00 99 /usr/lib/libx.so (deleted)
";

    #[test]
    fn parses_paths_with_spaces_and_pseudo_names() {
        let maps = Maps::parse(SAMPLE).unwrap();
        assert_eq!(maps.mappings.len(), 5);
        assert_eq!(maps.mappings[1].path.as_deref(), Some("/tmp/my prog"));
        assert!(maps.mappings[1].is_executable());
        assert_eq!(maps.mappings[1].file_offset(0x55d0c0a01234), 0x1234);
        assert_eq!(maps.mappings[2].path, None);
        assert_eq!(maps.mappings[3].file(), None);
        assert_eq!(maps.mappings[4].path.as_deref(), Some("/usr/lib/libx.so (deleted)"));
        let c = maps.executable_candidates(0x55d0c0a01010);
        assert_eq!(c.len(), 1);
        assert!(maps.executable_candidates(0x55d0c0a00010).is_empty());
    }

    #[test]
    fn garbage_names_the_line() {
        let text = "55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /x\nhello world\n";
        match Maps::parse(text) {
            Err(SymbolizeError::MapsLine { line: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
        for bad in [
            "zz-10 r-xp 0 08:01 1 /x",
            "10-5 r-xp 0 08:01 1 /x",
            "5-10 rwzp 0 08:01 1 /x",
            "5-10 r-xp 0 0801 1 /x",
            "5-10 r-xp 0 08:01 x /x",
            "5-10 r-xp 0",
        ] {
            let e = Maps::parse(bad).unwrap_err();
            assert!(matches!(e, SymbolizeError::MapsLine { line: 1, .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn display_round_trips() {
        let maps = Maps::parse(SAMPLE).unwrap();
        let again: String = maps.mappings.iter().map(|m| format!("{m}\n")).collect();
        assert_eq!(Maps::parse(&again).unwrap().mappings, maps.mappings);
    }
}
