//! HdrHistogram interval logs (`.hlog`): the raw per-interval records of a run, one tag per stage, in the
//! format HdrHistogram's own tools read (`HistogramLogProcessor -i x.hlog -tag end_to_end`, or
//! hdrhistogram's `IntervalLogIterator`). Values are microseconds.
//!
//! [`IntervalRecorder`] keeps one cumulative histogram per stage and, at each [`IntervalRecorder::rotate`],
//! writes what was added since the previous rotation as one interval per stage. Sources that only hand
//! out cumulative snapshots (the reference server's stats) are diffed against the previous snapshot.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

/// Significant figures of every histogram the harness creates (as `acip::stats::SIGFIG`).
pub const SIGFIG: u8 = 3;

/// Largest value a harness histogram tracks without resizing: one hour in µs.
pub const HIGHEST_US: u64 = 3_600_000_000;

/// A new histogram of microseconds, 1 µs to [`HIGHEST_US`], growing beyond that if it must.
///
/// Explicit bounds matter for the logs: an auto-resized histogram (`Histogram::new`) serialises its
/// *initial* highest trackable value, and readers then decode its larger values wrongly.
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG).expect("valid hdrhistogram bounds");
    h.auto(true);
    h
}

/// Writes an interval log to a file.
pub struct HlogWriter {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl HlogWriter {
    /// Creates `path` and writes the header: comments, StartTime and BaseTime (interval timestamps are
    /// then seconds since `start`).
    pub fn create(path: &Path, start: SystemTime, comments: &[String]) -> io::Result<Self> {
        let mut w =
            HlogWriter { out: BufWriter::new(File::create(path)?), serializer: V2DeflateSerializer::new() };
        let mut builder = IntervalLogWriterBuilder::new();
        for c in comments {
            builder.add_comment(c);
        }
        builder.add_comment("values in microseconds; one tag per stage");
        builder.with_start_time(start).with_base_time(start);
        builder.begin_log_with(&mut w.out, &mut w.serializer)?;
        // The legend line the Java HistogramLogWriter writes; its reader skips it.
        writeln!(
            w.out,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        Ok(w)
    }

    /// Appends one interval histogram tagged `tag` (a stage name: no commas, spaces or '=').
    pub fn write(
        &mut self,
        tag: &str,
        start: Duration,
        length: Duration,
        h: &Histogram<u64>,
    ) -> io::Result<()> {
        let tag = Tag::new(tag).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad hlog tag"))?;
        // An empty builder writes no header: this only borrows our writer and serializer for one line.
        let mut log = IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        log.write_histogram(h, start, length, Some(tag)).map_err(|e| io::Error::other(format!("{e:?}")))
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Largest interval log [`read_log`] reads.
pub const MAX_HLOG_BYTES: u64 = 256 * 1024 * 1024;

/// One interval of a log, on the wall clock.
#[derive(Debug, Clone, PartialEq)]
pub struct LogInterval {
    pub tag: String,
    /// Start of the interval (the log's BaseTime plus its start timestamp).
    pub start: SystemTime,
    pub length: Duration,
    pub histogram: Histogram<u64>,
}

/// An interval log as read back: its BaseTime and its intervals in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub base: SystemTime,
    pub intervals: Vec<LogInterval>,
}

/// Reads an interval log written by [`HlogWriter`] (or any log with a BaseTime or StartTime and tagged
/// intervals); untagged intervals get the tag `""`. Errors name what is wrong and where.
pub fn read_log(path: &Path) -> Result<Log, String> {
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > MAX_HLOG_BYTES {
        return Err(format!("{size} bytes: over the {MAX_HLOG_BYTES}-byte limit of an interval log"));
    }
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut base = None;
    let mut start_time = None;
    let mut raw = Vec::new();
    for (n, entry) in IntervalLogIterator::new(&text).enumerate() {
        match entry.map_err(|e| format!("entry {}: {e:?}", n + 1))? {
            LogEntry::BaseTime(t) => base = Some(t),
            LogEntry::StartTime(t) => start_time = Some(t),
            LogEntry::Interval(i) => raw.push((
                i.tag().map_or(String::new(), |t| t.as_str().to_string()),
                i.start_timestamp(),
                i.duration(),
                i.encoded_histogram().to_string(),
            )),
        }
    }
    let base = base.or(start_time).ok_or("no BaseTime or StartTime: interval times cannot be placed")?;
    let mut de = Deserializer::new();
    let mut intervals = Vec::with_capacity(raw.len());
    for (n, (tag, start, length, encoded)) in raw.into_iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| format!("interval {} ({tag}): not base64: {e}", n + 1))?;
        let h: Histogram<u64> = de
            .deserialize(&mut &bytes[..])
            .map_err(|e| format!("interval {} ({tag}): not a histogram: {e:?}", n + 1))?;
        let mut histogram = new_histogram();
        histogram.add(&h).map_err(|e| format!("interval {} ({tag}): {e:?}", n + 1))?;
        intervals.push(LogInterval { tag, start: SystemTime::UNIX_EPOCH + base + start, length, histogram });
    }
    Ok(Log { base: SystemTime::UNIX_EPOCH + base, intervals })
}

/// Cumulative histograms per stage, with interval logging.
pub struct IntervalRecorder {
    cumulative: BTreeMap<String, Histogram<u64>>,
    /// The cumulative histogram at the previous rotation, per stage.
    written: BTreeMap<String, Histogram<u64>>,
    last_rotation: Duration,
    hlog: Option<HlogWriter>,
}

impl IntervalRecorder {
    /// A recorder that writes intervals to `hlog` (or only accumulates, with `None`).
    pub fn new(hlog: Option<HlogWriter>) -> Self {
        IntervalRecorder {
            cumulative: BTreeMap::new(),
            written: BTreeMap::new(),
            last_rotation: Duration::ZERO,
            hlog,
        }
    }

    /// Records one value (µs) into `stage`.
    pub fn record(&mut self, stage: &str, micros: u64) {
        self.entry(stage).saturating_record(micros);
    }

    /// Adds a batch of samples into `stage`.
    pub fn add(&mut self, stage: &str, h: &Histogram<u64>) {
        // Both sides auto-resize, so adding cannot fail on range.
        let _ = self.entry(stage).add(h);
    }

    /// Replaces `stage` with a cumulative snapshot from a source that only reports totals so far.
    pub fn set_cumulative(&mut self, stage: &str, h: &Histogram<u64>) {
        self.cumulative.insert(stage.to_string(), h.clone());
    }

    fn entry(&mut self, stage: &str) -> &mut Histogram<u64> {
        self.cumulative.entry(stage.to_string()).or_insert_with(new_histogram)
    }

    /// The cumulative histogram of `stage`.
    pub fn get(&self, stage: &str) -> Option<&Histogram<u64>> {
        self.cumulative.get(stage)
    }

    pub fn stages(&self) -> impl Iterator<Item = (&str, &Histogram<u64>)> {
        self.cumulative.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Ends the current interval at `now` (time since the run's start): writes, per stage, the samples
    /// added since the previous rotation. Stages with nothing new write nothing.
    pub fn rotate(&mut self, now: Duration) -> io::Result<()> {
        let start = self.last_rotation;
        let length = now.saturating_sub(start);
        self.last_rotation = now;
        for (stage, cum) in &self.cumulative {
            let interval = difference(cum, self.written.get(stage));
            if !interval.is_empty() {
                if let Some(w) = self.hlog.as_mut() {
                    w.write(stage, start, length, &interval)?;
                }
            }
            self.written.insert(stage.clone(), cum.clone());
        }
        Ok(())
    }

    /// Flushes the log and returns the cumulative histograms.
    pub fn finish(self) -> io::Result<BTreeMap<String, Histogram<u64>>> {
        if let Some(w) = self.hlog {
            w.finish()?;
        }
        Ok(self.cumulative)
    }
}

/// The samples of `cum` that are not in `prev` (an earlier snapshot of the same cumulative source).
/// Built value by value: `Histogram::subtract` keeps a stale maximum, which would corrupt the logged
/// `Interval_Max`. A value whose count went down (a source that restarted) contributes nothing.
fn difference(cum: &Histogram<u64>, prev: Option<&Histogram<u64>>) -> Histogram<u64> {
    let mut out = new_histogram();
    for v in cum.iter_recorded() {
        let value = v.value_iterated_to();
        // `count_at` clamps values beyond the histogram's range to its last bucket: guard with max().
        let before = match prev {
            Some(p) if !p.is_empty() && value <= p.max() => p.count_at(value),
            _ => 0,
        };
        let n = v.count_at_value().saturating_sub(before);
        if n > 0 {
            out.saturating_record_n(value, n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn intervals_are_readable_by_the_standard_parser() {
        let dir = std::env::temp_dir().join(format!("hlog-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.hlog");
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let w = HlogWriter::create(&path, start, &["soak seed=7".into()]).unwrap();
        let mut rec = IntervalRecorder::new(Some(w));
        for v in 1..=100 {
            rec.record("end_to_end", v);
        }
        rec.rotate(Duration::from_secs(1)).unwrap();
        rec.record("end_to_end", 5000);
        let mut server = new_histogram();
        server.record(42).unwrap();
        rec.set_cumulative("server_handler", &server);
        rec.rotate(Duration::from_secs(2)).unwrap();
        server.record(43).unwrap();
        rec.set_cumulative("server_handler", &server);
        rec.rotate(Duration::from_millis(2500)).unwrap();
        let totals = rec.finish().unwrap();
        assert_eq!(totals["end_to_end"].len(), 101);

        let text = std::fs::read(&path).unwrap();
        let s = String::from_utf8(text.clone()).unwrap();
        assert!(s.contains("#soak seed=7"), "{s}");
        assert!(s.contains("#[BaseTime: 1700000000.000"), "{s}");
        let mut got = Vec::new();
        let mut de = Deserializer::new();
        for entry in IntervalLogIterator::new(&text) {
            if let LogEntry::Interval(i) = entry.unwrap() {
                let bytes = base64_decode(i.encoded_histogram());
                let h: Histogram<u64> = de.deserialize(&mut &bytes[..]).unwrap();
                got.push((i.tag().unwrap().as_str().to_string(), i.start_timestamp(), h.len(), h.max()));
            }
        }
        assert_eq!(
            got,
            vec![
                ("end_to_end".into(), Duration::ZERO, 100, 100),
                ("end_to_end".into(), Duration::from_secs(1), 1, 5003),
                ("server_handler".into(), Duration::from_secs(1), 1, 42),
                ("server_handler".into(), Duration::from_secs(2), 1, 43),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn logs_read_back_as_written() {
        let dir = std::env::temp_dir().join(format!("hlog-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.hlog");
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let mut w = HlogWriter::create(&path, start, &[]).unwrap();
        let mut h = new_histogram();
        h.record_n(700, 3).unwrap();
        h.record(HIGHEST_US * 2).unwrap(); // beyond the initial range: the histogram grew
        w.write("end_to_end", Duration::from_millis(1500), Duration::from_secs(1), &h).unwrap();
        w.finish().unwrap();
        let log = read_log(&path).unwrap();
        assert_eq!(log.base, start);
        assert_eq!(log.intervals.len(), 1);
        let i = &log.intervals[0];
        assert_eq!(
            (i.tag.as_str(), i.start, i.length),
            ("end_to_end", start + Duration::from_millis(1500), Duration::from_secs(1))
        );
        assert_eq!(i.histogram, h);

        std::fs::write(&path, "#[BaseTime: 1.000 (seconds since epoch)]\nTag=x,0.0,1.0,1.0,!!!notbase64\n")
            .unwrap();
        assert!(read_log(&path).unwrap_err().contains("interval 1 (x)"), "{:?}", read_log(&path));
        std::fs::write(&path, "").unwrap();
        assert!(read_log(&path).unwrap_err().contains("no BaseTime"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Minimal standard base64 decoding for the test (the crate's own dependency is not re-exported).
    fn base64_decode(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
        let mut out = Vec::new();
        for chunk in bytes.chunks(4) {
            let mut acc = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                acc |= u32::from(val(c)) << (18 - 6 * i);
            }
            out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
        }
        out
    }
}
