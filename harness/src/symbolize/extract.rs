//! Finding code addresses in backtrace text, in the forms crash output usually takes:
//!
//! - glibc `backtrace_symbols`: `/path/lib.so(+0x1234) [0x7f...]`, `./exe(func+0x10) [0x55...]`
//!   (with or without the space before `[`); the part in parentheses is kept as a [`TextHint`];
//! - gdb-like `#3  0x00007f... in func () from /lib/...`;
//! - sanitizer (ASan, UBSan, LSan) `#3 0x7f... in func (/path/lib.so+0x8aeec)`, where the
//!   `(module+offset)` part is kept as a [`TextHint`] as well;
//! - Rust std `   3:     0x55... - crate::func`;
//! - any other bare `0x...` token of at least [`MIN_CODE_ADDRESS`].

use std::io::BufRead;

/// Addresses below this are never code on Linux (`vm.mmap_min_addr` defaults to 64 KiB); smaller hex
/// values in logs are lengths, flags and offsets.
pub const MIN_CODE_ADDRESS: u64 = 0x10000;

/// Longest line kept whole; the rest of a longer line is dropped (bounded memory on binary garbage).
pub const MAX_LINE_BYTES: usize = 16 << 10;

/// What a glibc `backtrace_symbols` line says about its frame, independent of any maps file:
/// `object(symbol+offset)` or `object(+offset)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TextHint {
    /// The object path as printed (relative to the crashed process's working directory if relative).
    pub object: String,
    /// The dynamic symbol the offset is relative to; `None` for `(+0x...)`, where the offset is
    /// relative to the object's load bias, i.e. it is the ELF virtual address.
    pub symbol: Option<String>,
    /// Signed offset from the symbol (or from the load bias).
    pub offset: i64,
}

/// One address found in text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RawFrame {
    pub addr: u64,
    pub hint: Option<TextHint>,
    /// 1-based line number in the text it came from (0 for command-line arguments).
    pub line: usize,
}

/// Parses one address given on its own (command line): `0x7f12...` or bare hex digits.
pub fn parse_address(token: &str) -> Option<u64> {
    let t = token.trim();
    let digits = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Every frame address in one line of text, in order of appearance.
pub fn frames_in_line(text: &str, line: usize) -> Vec<RawFrame> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    // Byte ranges already claimed by a glibc-form match, so their offsets are not read as addresses.
    let mut claimed: Vec<(usize, usize)> = Vec::new();
    let mut search = 0;
    while let Some(pos) = text[search..].find("[0x").map(|p| p + search) {
        search = pos + 3;
        let Some((addr, close)) = hex_at(bytes, pos + 1) else { continue };
        if bytes.get(close) != Some(&b']') {
            continue;
        }
        if let Some((start, hint)) = glibc_hint_before(text, pos) {
            claimed.push((start, close + 1));
            out.push((start, RawFrame { addr, hint: Some(hint), line }));
        }
    }
    let mut i = 0;
    while i + 2 < bytes.len() {
        if let Some(&(_, end)) = claimed.iter().find(|(s, e)| (*s..*e).contains(&i)) {
            i = end;
            continue;
        }
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || b"_+-".contains(&bytes[i - 1]));
        if boundary && (bytes[i] == b'0') && matches!(bytes[i + 1], b'x' | b'X') {
            if let Some((addr, end)) = hex_at(bytes, i) {
                let clean_end =
                    end == bytes.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_');
                if clean_end && addr >= MIN_CODE_ADDRESS {
                    let hint = module_offset_hint(&text[end..]);
                    out.push((i, RawFrame { addr, hint, line }));
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.sort_by_key(|(pos, _)| *pos);
    out.into_iter().map(|(_, f)| f).collect()
}

/// Reads `0x` + 1..=16 hex digits at `at`; returns the value and the index after the digits.
fn hex_at(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    if bytes.get(at) != Some(&b'0') || !matches!(bytes.get(at + 1), Some(b'x' | b'X')) {
        return None;
    }
    let digits_start = at + 2;
    let mut end = digits_start;
    while end < bytes.len() && bytes[end].is_ascii_hexdigit() {
        end += 1;
    }
    if end == digits_start || end - digits_start > 16 {
        return None;
    }
    let s = std::str::from_utf8(&bytes[digits_start..end]).ok()?;
    Some((u64::from_str_radix(s, 16).ok()?, end))
}

/// Given the index of `[0x` in `text`, parses a preceding `object(sym+0xoff)` with an optional single
/// space. Returns the start index of the object token and the hint.
fn glibc_hint_before(text: &str, bracket: usize) -> Option<(usize, TextHint)> {
    let before = text[..bracket].strip_suffix(' ').unwrap_or(&text[..bracket]);
    let inner_end = before.strip_suffix(')')?;
    let open = inner_end.rfind('(')?;
    let object_part = &inner_end[..open];
    let object_start = object_part.rfind(char::is_whitespace).map_or(0, |p| p + 1);
    let object = &object_part[object_start..];
    if object.is_empty() {
        return None;
    }
    let inner = &inner_end[open + 1..];
    let (symbol, offset) = match inner.rfind(['+', '-']) {
        Some(sign_at) => {
            let (sym, off) = inner.split_at(sign_at);
            let magnitude = parse_address(&off[1..]).filter(|_| off[1..].starts_with("0x"))?;
            let magnitude = i64::try_from(magnitude).ok()?;
            (sym, if off.starts_with('-') { -magnitude } else { magnitude })
        }
        // `obj() [0x...]`: nothing known beyond the object.
        None if inner.is_empty() => return None,
        None => (inner, 0),
    };
    let symbol = (!symbol.is_empty()).then(|| symbol.to_string());
    Some((object_start, TextHint { object: object.to_string(), symbol, offset }))
}

/// The sanitizer form `(/path/module+0x1234)` in the rest of a line, before any other address. The offset
/// is from the module's load base, i.e. the ELF virtual address for a PIE or a `.so`.
fn module_offset_hint(rest: &str) -> Option<TextHint> {
    let open = rest.find('(')?;
    if rest[..open].contains("0x") {
        return None;
    }
    let inner = &rest[open + 1..];
    let inner = &inner[..inner.find(')')?];
    let (object, offset) = inner.rsplit_once("+0x")?;
    if object.is_empty() || object.contains(char::is_whitespace) || !object.contains('/') {
        return None;
    }
    let offset = i64::try_from(parse_address(offset)?).ok()?;
    Some(TextHint { object: object.to_string(), symbol: None, offset })
}

/// Calls `f(line_number, line)` for every line of `reader`, lossily decoded, each cut to
/// [`MAX_LINE_BYTES`]. Returns the number of lines read.
pub fn for_each_line(mut reader: impl BufRead, mut f: impl FnMut(usize, &str)) -> std::io::Result<usize> {
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        let mut truncated = false;
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(p) => (p + 1, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..take.min(room)]);
            truncated |= take > room;
            reader.consume(take);
            if done {
                break;
            }
        }
        if buf.is_empty() && !truncated {
            return Ok(n);
        }
        n += 1;
        let text = String::from_utf8_lossy(&buf);
        f(n, text.trim_end_matches(['\n', '\r']));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(object: &str, symbol: Option<&str>, offset: i64) -> Option<TextHint> {
        Some(TextHint { object: object.into(), symbol: symbol.map(Into::into), offset })
    }

    #[test]
    fn glibc_forms() {
        let f = frames_in_line("/tmp/x/libcrash.so(crash_here+0x1f) [0x7f0a12345678]", 4);
        assert_eq!(
            f,
            vec![RawFrame {
                addr: 0x7f0a12345678,
                hint: hint("/tmp/x/libcrash.so", Some("crash_here"), 0x1f),
                line: 4
            }]
        );
        let f = frames_in_line("./prog(+0x1189)[0x5555555551189]", 1);
        assert_eq!(f[0].hint, hint("./prog", None, 0x1189));
        let f = frames_in_line("[stderr] /lib/libc.so.6(__sym-0x10) [0x7fff00001000]", 1);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].hint, hint("/lib/libc.so.6", Some("__sym"), -0x10));
    }

    #[test]
    fn gdb_rust_and_bare_forms() {
        let f = frames_in_line("#3  0x00007ffff7a42e97 in raise () from /lib/libc.so.6", 1);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].addr, 0x7ffff7a42e97);
        let f = frames_in_line("   3:     0x55d5c7e0b1c9 - std::rt::lang_start", 1);
        assert_eq!(f[0].addr, 0x55d5c7e0b1c9);
        // Small values, offsets after '+', and hex glued into identifiers are not addresses.
        assert!(frames_in_line("len=0x10 flags 0xff func+0x123456 ab0x123456", 1).is_empty());
        let f = frames_in_line("a 0x400000, b 0x7f0000001000", 1);
        assert_eq!(f.iter().map(|f| f.addr).collect::<Vec<_>>(), vec![0x400000, 0x7f0000001000]);
    }

    #[test]
    fn sanitizer_forms() {
        let f = frames_in_line(
            "    #2 0x7f8e9b0aeec  (/lib/x86_64-linux-gnu/libc.so.6+0x8aeec) (BuildId: 1a2b)",
            9,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].addr, 0x7f8e9b0aeec);
        assert_eq!(f[0].hint, hint("/lib/x86_64-linux-gnu/libc.so.6", None, 0x8aeec));
        let f = frames_in_line("    #0 0x55d1c2a0 in main /src/a.c:5:3", 1);
        assert_eq!(f[0].hint, None);
        let f = frames_in_line("    #1 0x55d1c2a0 in lws_x (./build/libwebsockets.so.19+0x1f00)", 1);
        assert_eq!(f[0].hint, hint("./build/libwebsockets.so.19", None, 0x1f00));
        // A parenthesis that is not a module: no hint.
        assert_eq!(frames_in_line("at 0x7f0000001000 (something else+0x10)", 1)[0].hint, None);
    }

    #[test]
    fn addresses_from_arguments() {
        assert_eq!(parse_address("0x7f12"), Some(0x7f12));
        assert_eq!(parse_address("deadbeef"), Some(0xdeadbeef));
        assert_eq!(parse_address("0x"), None);
        assert_eq!(parse_address("0x1ffffffffffffffff"), None);
        assert_eq!(parse_address("main"), None);
    }

    #[test]
    fn long_lines_are_cut_not_buffered() {
        let mut text = vec![b'a'; MAX_LINE_BYTES * 3];
        text.extend_from_slice(b"\nsecond 0x7f0000001000\n");
        let mut lines = Vec::new();
        let n = for_each_line(&text[..], |i, l| lines.push((i, l.len()))).unwrap();
        assert_eq!(n, 2);
        assert_eq!(lines, vec![(1, MAX_LINE_BYTES), (2, 21)]);
    }
}
