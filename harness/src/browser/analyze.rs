//! From what a browser session recorded to figures: the browser's WebSocket messages rebuilt from the tap's
//! frame records (sizes, fragments, gaps, assembly), the page's send timing, and the report.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::tap::FrameRecord;
use super::PageResult;
use crate::report::{HistogramSummary, StageReport, Table};

/// One WebSocket data message of the browser, as its frames reached the tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapMessage {
    pub conn: u32,
    /// Payload bytes of the message (the ACIP packet bytes in it).
    pub size: u64,
    /// Payload bytes of each frame, in order.
    pub fragments: Vec<u64>,
    /// Start of the first frame's header; end of each frame.
    pub first_start: Duration,
    pub ends: Vec<Duration>,
    /// Start of each frame (header arrival).
    pub starts: Vec<Duration>,
}

impl TapMessage {
    /// First header byte to the last payload byte.
    pub fn assembly(&self) -> Duration {
        self.ends.last().copied().unwrap_or(self.first_start).saturating_sub(self.first_start)
    }

    /// Idle time between fragments: end of one frame to the header of the next.
    pub fn idle_gaps(&self) -> impl Iterator<Item = Duration> + '_ {
        self.ends.iter().zip(self.starts.iter().skip(1)).map(|(e, s)| s.saturating_sub(*e))
    }

    /// Completion of one frame to the completion of the next.
    pub fn intervals(&self) -> impl Iterator<Item = Duration> + '_ {
        self.ends.windows(2).map(|w| w[1].saturating_sub(w[0]))
    }
}

/// Rebuilds the data messages (BINARY or TEXT, then CONTINUATIONs up to FIN) of every connection; control
/// frames are skipped, and a message still open at the end is dropped.
pub fn messages(records: &[FrameRecord]) -> Vec<TapMessage> {
    let mut open: BTreeMap<u32, TapMessage> = BTreeMap::new();
    let mut done = Vec::new();
    for r in records {
        if r.opcode & 0x08 != 0 {
            continue;
        }
        if r.opcode != 0 {
            open.insert(
                r.conn,
                TapMessage {
                    conn: r.conn,
                    size: 0,
                    fragments: Vec::new(),
                    first_start: r.start,
                    ends: Vec::new(),
                    starts: Vec::new(),
                },
            );
        }
        let Some(m) = open.get_mut(&r.conn) else { continue };
        m.size += r.payload_len;
        m.fragments.push(r.payload_len);
        m.starts.push(r.start);
        m.ends.push(r.end);
        if r.fin {
            done.extend(open.remove(&r.conn));
        }
    }
    done
}

/// The size buckets of the fragment-size table: (label, lowest size, highest size), inclusive.
pub const SIZE_BUCKETS: &[(&str, u64, u64)] = &[
    ("0-4 KiB", 0, 4096),
    ("4-64 KiB", 4097, 65_536),
    ("64 KiB-130,999", 65_537, 130_999),
    ("131,000", 131_000, 131_000),
    ("131,001-128 KiB", 131_001, 131_072),
    ("128-256 KiB", 131_073, 262_144),
    ("over 256 KiB", 262_145, u64::MAX),
];

/// Fragments per size bucket (every bucket listed, zeros included).
pub fn size_buckets(sizes: impl IntoIterator<Item = u64>) -> Vec<(&'static str, u64)> {
    let mut counts = vec![0u64; SIZE_BUCKETS.len()];
    for s in sizes {
        if let Some(i) = SIZE_BUCKETS.iter().position(|&(_, lo, hi)| (lo..=hi).contains(&s)) {
            counts[i] += 1;
        }
    }
    SIZE_BUCKETS.iter().zip(counts).map(|(&(l, _, _), c)| (l, c)).collect()
}

/// The most frequent exact sizes, most frequent first (ties: smaller size first).
pub fn top_sizes(sizes: impl IntoIterator<Item = u64>, n: usize) -> Vec<(u64, u64)> {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for s in sizes {
        *counts.entry(s).or_default() += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// A histogram of microseconds (3 significant figures, auto-resizing).
pub fn histogram_of(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
    let mut h = crate::report::hlog::new_histogram();
    for v in values {
        if h.record(v).is_err() {
            h.saturating_record(v);
        }
    }
    h
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn ms_to_us(ms: f64) -> u64 {
    (ms.max(0.0) * 1000.0).round() as u64
}

/// The browser-side and tap-side histograms of a session, by report stage name.
pub fn histograms(
    page: &PageResult,
    image: &[TapMessage],
) -> Vec<(&'static str, &'static str, &'static str, Histogram<u64>)> {
    let f = &page.frames;
    let send_interval = histogram_of(f.windows(2).map(|w| ms_to_us(w[1].sent_ms - w[0].sent_ms)));
    let build = histogram_of(f.iter().map(|x| ms_to_us(x.built_ms - x.start_ms)));
    let encrypt = histogram_of(f.iter().filter_map(|x| x.sealed_ms.map(|s| ms_to_us(s - x.built_ms))));
    let send_call = histogram_of(f.iter().map(|x| ms_to_us(x.sent_ms - x.sealed_ms.unwrap_or(x.built_ms))));
    let lag = histogram_of(f.iter().map(|x| ms_to_us(x.start_ms - x.due_ms)));
    let ascii = histogram_of(page.ascii_at_ms.windows(2).map(|w| ms_to_us(w[1] - w[0])));
    let rtt = histogram_of(page.ping_rtt_ms.iter().map(|&x| ms_to_us(x)));
    let gaps = histogram_of(image.iter().flat_map(|m| m.idle_gaps().map(us).collect::<Vec<_>>()));
    let intervals = histogram_of(image.iter().flat_map(|m| m.intervals().map(us).collect::<Vec<_>>()));
    let assembly = histogram_of(image.iter().map(|m| us(m.assembly())));
    vec![
        ("browser_send_interval", "client", "interval between consecutive IMAGE_FRAMEs handed to WebSocket.send by the page", send_interval),
        ("browser_send_lag", "client", "a frame's scheduled send time to the page starting to build it (timer lateness)", lag),
        ("browser_build", "client", "the page building one IMAGE_FRAME in JavaScript: test pattern, two CRC-32C passes", build),
        ("browser_encrypt", "client", "the page sealing one IMAGE_FRAME in an ENCRYPTED packet (XSalsa20-Poly1305 in libsodium.js, outer header and CRC-32C); encrypted sessions only", encrypt),
        ("browser_send_call", "client", "the WebSocket.send call for one IMAGE_FRAME (the copy into the browser)", send_call),
        ("browser_fragment_gap", "tap", "idle time between WebSocket frames of one IMAGE_FRAME message at the tap: last byte of a frame to the header of the next", gaps),
        ("browser_fragment_interval", "tap", "last byte of a WebSocket frame to the last byte of the next frame of the same message, at the tap", intervals),
        ("tap_assembly", "tap", "first header byte to last payload byte of one IMAGE_FRAME message, at the tap", assembly),
        ("browser_ascii_interval", "client", "interval between consecutive ASCII_FRAMEs the page received", ascii),
        ("browser_ping_rtt", "client", "PING to PONG round trip seen by the page", rtt),
    ]
}

/// A stage row from a histogram, or with the reason it has none.
pub fn stage(name: &str, side: &str, description: &str, h: &Histogram<u64>, absent: &str) -> StageReport {
    let histogram = HistogramSummary::of(h);
    StageReport {
        name: name.into(),
        side: side.into(),
        description: description.into(),
        absent: histogram.is_none().then(|| absent.to_string()),
        histogram,
    }
}

/// The fragment-size tables of the image messages.
pub fn fragment_tables(image: &[TapMessage]) -> Vec<Table> {
    let sizes = || image.iter().flat_map(|m| m.fragments.iter().copied());
    let buckets = Table {
        title: "Browser WebSocket frame sizes of IMAGE_FRAME messages (payload bytes per frame, at the tap)"
            .into(),
        columns: vec!["size".into(), "frames".into()],
        rows: size_buckets(sizes()).into_iter().map(|(l, c)| vec![l.to_string(), c.to_string()]).collect(),
    };
    let top = Table {
        title: "Most common exact frame sizes".into(),
        columns: vec!["bytes".into(), "frames".into()],
        rows: top_sizes(sizes(), 10).into_iter().map(|(s, c)| vec![s.to_string(), c.to_string()]).collect(),
    };
    let mut per: BTreeMap<usize, u64> = BTreeMap::new();
    for m in image {
        *per.entry(m.fragments.len()).or_default() += 1;
    }
    let per_msg = Table {
        title: "Frames per IMAGE_FRAME message".into(),
        columns: vec!["frames".into(), "messages".into()],
        rows: per.into_iter().map(|(k, v)| vec![k.to_string(), v.to_string()]).collect(),
    };
    vec![buckets, top, per_msg]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(conn: u32, opcode: u8, fin: bool, len: u64, start_ms: u64, end_ms: u64) -> FrameRecord {
        FrameRecord {
            conn,
            opcode,
            fin,
            payload_len: len,
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(end_ms),
        }
    }

    #[test]
    fn messages_group_frames_per_connection_and_skip_control_frames() {
        let r = [
            rec(0, 2, true, 182, 0, 0),
            rec(0, 2, false, 131_000, 10, 12),
            rec(1, 2, true, 26, 11, 11),
            rec(0, 9, true, 0, 13, 13),
            rec(0, 0, false, 131_000, 20, 25),
            rec(0, 0, true, 500, 30, 30),
            rec(0, 2, false, 7, 40, 40),
        ];
        let m = messages(&r);
        assert_eq!(m.iter().map(|m| (m.conn, m.size)).collect::<Vec<_>>(), [(0, 182), (1, 26), (0, 262_500)]);
        let big = &m[2];
        assert_eq!(big.fragments, [131_000, 131_000, 500]);
        assert_eq!(big.assembly(), Duration::from_millis(20));
        assert_eq!(big.idle_gaps().collect::<Vec<_>>(), [Duration::from_millis(8), Duration::from_millis(5)]);
        assert_eq!(
            big.intervals().collect::<Vec<_>>(),
            [Duration::from_millis(13), Duration::from_millis(5)]
        );
    }

    #[test]
    fn buckets_and_top_sizes_count_every_fragment() {
        let sizes = [131_000, 131_000, 131_072, 4096, 4097, 65_536, 65_537, 300_000, 131_000, 9_000];
        let b = size_buckets(sizes);
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), sizes.len() as u64);
        assert_eq!(b[3], ("131,000", 3));
        assert_eq!(b[0].1, 1);
        assert_eq!(b[1].1, 3);
        assert_eq!(top_sizes(sizes, 2), [(131_000, 3), (4096, 1)]);
    }
}
