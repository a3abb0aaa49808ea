//! The command-line vocabulary shared by the three binaries (`harness`, `reference-server`,
//! `reference-client`): one duration grammar, one target URL, one report-directory stamp. Pure functions:
//! no clock is read and no name is resolved here (the callers pass `now` and resolve [`TargetUrl::authority`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::crypto::Transport;

/// Longest duration any option takes (7 days): a typo such as `30000m` is refused, not waited out.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// Units of the duration grammar, with their length in seconds.
const UNITS: [(&str, f64); 5] = [("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

/// Parses a duration option: a non-negative decimal number and a unit, `us`, `ms`, `s`, `m` or `h`
/// (`500us`, `20ms`, `2s`, `1.5s`, `1m`), at most [`MAX_DURATION`]. A bare number is refused with a message
/// that says what to write, since `20` could mean 20 ms as well as 20 s.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("{s:?}: expected a number and a unit, e.g. 20ms, 2s, 1.5s or 1m"));
    }
    if unit.is_empty() {
        return Err(format!(
            "{s:?}: a duration needs a unit: write {num}ms, {num}s or {num}m (units: us, ms, s, m, h)"
        ));
    }
    let value: f64 = num.parse().map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
    let scale = UNITS
        .iter()
        .find(|(u, _)| *u == unit.trim())
        .map(|(_, scale)| *scale)
        .ok_or_else(|| format!("{s:?}: unknown unit {unit:?} (us, ms, s, m, h)"))?;
    let secs = value * scale;
    if !(secs.is_finite() && secs <= MAX_DURATION.as_secs_f64()) {
        return Err(format!("{s:?}: out of range (0 to {} days)", MAX_DURATION.as_secs() / 86_400));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Default TCP port of ascii-chat (ACIP-SPEC.md 6.3).
pub const DEFAULT_TCP_PORT: u16 = 27224;
/// Default WebSocket port of ascii-chat (ACIP-SPEC.md 6.3).
pub const DEFAULT_WS_PORT: u16 = 27226;

/// A server address as every binary takes it: `tcp://HOST[:PORT]`, `ws://HOST[:PORT][/PATH]` or a bare
/// `HOST[:PORT]` (TCP). A missing port is ascii-chat's default for the scheme. Not resolved: `authority()`
/// is what a caller hands to the resolver.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetUrl {
    pub transport: Transport,
    /// Host as written (a name, an IPv4 address or a bracketed IPv6 address).
    pub host: String,
    pub port: u16,
    /// Path of the WebSocket upgrade request (`/` when none was given); always `/` for TCP.
    pub path: String,
}

impl TargetUrl {
    /// `HOST:PORT`, for the resolver and the `Host` header.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn is_ws(&self) -> bool {
        self.transport == Transport::WebSocket
    }

    /// A URL for a transport and an already known socket address (`ws://ADDR/`, `tcp://ADDR`).
    pub fn for_addr(transport: Transport, addr: std::net::SocketAddr) -> TargetUrl {
        let host = match addr {
            std::net::SocketAddr::V4(a) => a.ip().to_string(),
            std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        TargetUrl { transport, host, port: addr.port(), path: "/".into() }
    }
}

impl fmt::Display for TargetUrl {
    /// `tcp://HOST:PORT` or `ws://HOST:PORT/PATH`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Transport::Tcp => write!(f, "tcp://{}:{}", self.host, self.port),
            Transport::WebSocket => write!(f, "ws://{}:{}{}", self.host, self.port, self.path),
        }
    }
}

impl FromStr for TargetUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<TargetUrl, String> {
        let (transport, rest) = if let Some(r) = s.strip_prefix("ws://") {
            (Transport::WebSocket, r)
        } else if let Some(r) = s.strip_prefix("tcp://") {
            (Transport::Tcp, r)
        } else if s.contains("://") {
            return Err(format!("{s:?}: unsupported URL scheme (use tcp://HOST:PORT or ws://HOST:PORT)"));
        } else {
            (Transport::Tcp, s)
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if transport == Transport::Tcp && !path.trim_end_matches('/').is_empty() {
            return Err(format!("{s:?}: a tcp:// target has no path (tcp://HOST:PORT)"));
        }
        let (host, port) = match authority.rfind(':') {
            // "[::1]" has a colon inside the brackets only.
            Some(i) if !authority[i..].contains(']') => {
                let port = &authority[i + 1..];
                let port: u16 =
                    port.parse().map_err(|_| format!("{s:?}: port {port:?} is not a number 0-65535"))?;
                (&authority[..i], port)
            }
            _ => (authority, if transport == Transport::Tcp { DEFAULT_TCP_PORT } else { DEFAULT_WS_PORT }),
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host (expected tcp://HOST:PORT or ws://HOST:PORT)"));
        }
        if !host.starts_with('[') && host.contains(':') {
            return Err(format!("{s:?}: an IPv6 host goes in brackets, e.g. ws://[::1]:27226"));
        }
        let path = if transport == Transport::Tcp { "/" } else { path };
        Ok(TargetUrl { transport, host: host.to_string(), port, path: path.to_string() })
    }
}

/// `YYYYMMDDTHHMMSSZ` for a UNIX time: the name of a report directory, so that directories sort by time.
pub fn utc_stamp(unix_secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a UNIX time, for reports.
pub fn rfc3339(unix_secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Days-to-civil conversion (H. Hinnant's algorithm, proleptic Gregorian, UTC), so that two timestamps do
/// not need a date crate.
fn civil(unix_secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `<base>/harness/<command>/<stamp>[-<suffix>]`: where a command's report goes when `--out` is not given.
pub fn report_dir(
    base: &std::path::Path,
    command: &str,
    unix_secs: u64,
    suffix: Option<&str>,
) -> std::path::PathBuf {
    let stamp = utc_stamp(unix_secs);
    let name = match suffix {
        Some(s) => format!("{stamp}-{s}"),
        None => stamp,
    };
    base.join("harness").join(command).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_of_every_unit() {
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        // Every valid value the five former copies' tests checked.
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5h"), Ok(Duration::from_secs(5 * 3600)));
        assert_eq!(parse_duration(" 30s "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn a_bare_number_says_what_to_write() {
        let e = parse_duration("20").unwrap_err();
        assert!(e.contains("needs a unit") && e.contains("20ms") && e.contains("20s"), "{e}");
        assert!(parse_duration("1.5").is_err());
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in ["", "fast", "-1s", "2 weeks", "1.2.3s", "5d", "ms", "8d", "169h", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(parse_duration("168h"), Ok(MAX_DURATION));
    }

    #[test]
    fn target_urls() {
        let t: TargetUrl = "ws://127.0.0.1:9/x".parse().unwrap();
        assert_eq!(
            (t.transport, t.host.as_str(), t.port, t.path.as_str()),
            (Transport::WebSocket, "127.0.0.1", 9, "/x")
        );
        assert_eq!(t.to_string(), "ws://127.0.0.1:9/x");
        let t: TargetUrl = "ws://localhost".parse().unwrap();
        assert_eq!((t.port, t.path.as_str()), (DEFAULT_WS_PORT, "/"));
        assert_eq!(t.to_string(), "ws://localhost:27226/");
        let t: TargetUrl = "tcp://[::1]:5/".parse().unwrap();
        assert_eq!((t.transport, t.authority()), (Transport::Tcp, "[::1]:5".to_string()));
        assert_eq!(t.to_string(), "tcp://[::1]:5");
        let t: TargetUrl = "example.org".parse().unwrap();
        assert_eq!((t.transport, t.port), (Transport::Tcp, DEFAULT_TCP_PORT));
        let t: TargetUrl = "[::1]".parse().unwrap();
        assert_eq!(t.authority(), "[::1]:27224");
        let a: std::net::SocketAddr = "[::1]:7".parse().unwrap();
        assert_eq!(TargetUrl::for_addr(Transport::WebSocket, a).to_string(), "ws://[::1]:7/");
    }

    #[test]
    fn bad_target_urls_are_refused() {
        for bad in ["http://x:1", "ws://", "tcp://:1", "tcp://h:1/path", "ws://h:99999", "ws://h:x", "::1:5"]
        {
            assert!(bad.parse::<TargetUrl>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_700_000_000), "20231114T221320Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_365_263), "2026-11-22T16:34:23Z");
        assert_eq!(utc_stamp(1_795_365_263), "20261122T163423Z");
        let base = std::path::Path::new("t");
        assert_eq!(report_dir(base, "soak", 0, Some("7")), base.join("harness/soak/19700101T000000Z-7"));
        assert_eq!(
            report_dir(base, "conformance", 0, None),
            base.join("harness/conformance/19700101T000000Z")
        );
    }
}
