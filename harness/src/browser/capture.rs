//! `harness browser --capture FILE`: the tap records the session it relays as a pcap (see
//! [`crate::capture::record`]), and after the session `replay`'s dissector reads it back, so the report
//! carries what a server received (frame sizes, fragments per message, gaps between fragments, assembly,
//! packets per type, anomalies) for any `--target`, including servers that measure none of it themselves.
//! The whole dissection is written beside the report as `capture.json` (what `harness replay FILE --json`
//! prints).

use std::path::Path;

use acip::Dialect;

use crate::capture::record::{RecordSummary, Recorder};
use crate::replay::model::{DirReport, Dissection};
use crate::replay::{dissect, DissectConfig};
use crate::report::{Report, Table};

/// The recording and its dissection, once the session is over.
#[derive(Debug, Clone)]
pub struct CaptureView {
    pub summary: RecordSummary,
    /// `None` when the file could not be read back or dissected: see `error`.
    pub dissection: Option<Dissection>,
    pub error: Option<String>,
}

/// Stops the recording, then dissects the file as `harness replay FILE --dialect DIALECT` would.
pub async fn finish(recorder: Recorder, dialect: Dialect) -> CaptureView {
    let summary = match recorder.finish().await {
        Ok(s) => s,
        Err(e) => {
            return CaptureView {
                summary: RecordSummary::default(),
                dissection: None,
                error: Some(e.to_string()),
            }
        }
    };
    let path = summary.path.clone();
    let dissected = tokio::task::spawn_blocking(move || dissect_file(&path, dialect)).await;
    match dissected {
        Ok(Ok(d)) => CaptureView { summary, dissection: Some(d), error: None },
        Ok(Err(e)) => CaptureView { summary, dissection: None, error: Some(e) },
        Err(e) => CaptureView { summary, dissection: None, error: Some(format!("dissecting: {e}")) },
    }
}

fn dissect_file(path: &Path, dialect: Dialect) -> Result<Dissection, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let config = DissectConfig { dialect: Some(dialect), ..DissectConfig::default() };
    dissect(&name, &data, &config).map_err(|e| format!("{}: {e}", path.display()))
}

/// Packets of a type whose name starts with `name` (e.g. `IMAGE_FRAME`), whatever its number.
fn packets_of(d: &DirReport, name: &str) -> u64 {
    d.by_type.iter().filter(|(k, _)| k.split('(').next() == Some(name)).map(|(_, t)| t.count).sum()
}

fn histogram<K: std::fmt::Display>(h: &std::collections::BTreeMap<K, u64>) -> String {
    if h.is_empty() {
        return "-".into();
    }
    h.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
}

/// One row per figure and direction of every ACIP flow in the capture.
fn flow_rows(d: &Dissection, window_s: f64) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for f in &d.flows {
        let id = format!("{} -> {}", f.client, f.server);
        let mut row = |figure: &str, c2s: String, s2c: String| {
            rows.push(vec![id.clone(), figure.to_string(), c2s, s2c]);
        };
        let (c, s) = (&f.client_to_server, &f.server_to_client);
        row("transport / dialect", format!("{:?} / {}", f.transport, f.dialect), f.ending.clone());
        row("TCP bytes", c.tcp.bytes.to_string(), s.tcp.bytes.to_string());
        let ws = |d: &DirReport, pick: &dyn Fn(&crate::replay::model::WsStats) -> String| {
            d.ws.as_ref().map_or("-".to_string(), pick)
        };
        row("WebSocket frames", ws(c, &|w| w.frames.to_string()), ws(s, &|w| w.frames.to_string()));
        row("messages", ws(c, &|w| w.messages.to_string()), ws(s, &|w| w.messages.to_string()));
        row(
            "fragments per message",
            ws(c, &|w| histogram(&w.fragments_per_message)),
            ws(s, &|w| histogram(&w.fragments_per_message)),
        );
        row("gaps between fragments", histogram(&c.fragment_gaps), histogram(&s.fragment_gaps));
        row(
            &format!("stalls (gaps over {} ms)", d.stall_threshold_ms),
            c.stalls.to_string(),
            s.stalls.to_string(),
        );
        let asm = |d: &DirReport| {
            d.assembly.as_ref().map_or("-".to_string(), |a| {
                format!(
                    "{} messages: min {:.2} / median {:.2} / max {:.2} ms",
                    a.multi_fragment, a.min_ms, a.median_ms, a.max_ms
                )
            })
        };
        row("assembly (first to last fragment)", asm(c), asm(s));
        row("ACIP packets", c.packets.to_string(), s.packets.to_string());
        let image = packets_of(c, "IMAGE_FRAME");
        row(
            "IMAGE_FRAME / ASCII_FRAME packets",
            format!("{image} ({:.1} per second of the window)", image as f64 / window_s.max(1e-3)),
            packets_of(s, "ASCII_FRAME").to_string(),
        );
        let enc = |d: &DirReport| d.encrypted.as_ref().map_or("-".to_string(), |e| e.packets.to_string());
        row("ENCRYPTED packets", enc(c), enc(s));
        let kinds = |dir: crate::capture::Dir| {
            let mut by: std::collections::BTreeMap<String, u64> = Default::default();
            for a in f.anomalies.iter().filter(|a| a.dir == dir) {
                *by.entry(format!("{:?}", a.kind)).or_default() += 1;
            }
            histogram(&by)
        };
        row(
            "anomalies",
            kinds(crate::capture::Dir::ClientToServer),
            kinds(crate::capture::Dir::ServerToClient),
        );
        row("decoder end state", c.end_state.clone(), s.end_state.clone());
    }
    rows
}

/// Adds the capture's table, counters and notes to a browser report.
pub fn add_to_report(rep: &mut Report, view: &CaptureView, window_s: f64) {
    let s = &view.summary;
    rep.settings.insert("capture".into(), s.path.display().to_string());
    let c = &mut rep.counters;
    c.insert("capture_connections".into(), s.connections);
    c.insert("capture_frames".into(), s.frames);
    c.insert("capture_payload_bytes".into(), s.payload_bytes);
    c.insert("capture_truncated_bytes".into(), s.truncated_bytes);
    if s.truncated_bytes > 0 {
        rep.notes.push(format!(
            "capture: {} bytes were forwarded but not recorded (over the recording limit)",
            s.truncated_bytes
        ));
    }
    if let Some(e) = &view.error {
        rep.notes.push(format!("capture: {e}"));
    }
    let Some(d) = &view.dissection else { return };
    let flow_anomalies: usize = d.flows.iter().map(|f| f.anomalies.len()).sum();
    rep.counters.insert("capture_flows".into(), d.flows.len() as u64);
    rep.counters.insert("capture_anomalies".into(), flow_anomalies as u64);
    for f in &d.flows {
        let (cs, sc) = (&f.client_to_server, &f.server_to_client);
        rep.counters.insert("capture_image_frames".into(), packets_of(cs, "IMAGE_FRAME"));
        rep.counters.insert("capture_ascii_frames".into(), packets_of(sc, "ASCII_FRAME"));
        if let Some(w) = &cs.ws {
            rep.counters.insert("capture_client_ws_frames".into(), w.frames);
        }
    }
    rep.tables.push(Table {
        title: format!(
            "Capture {} ({} frames, dissected by replay; c>s is what the server received, in the order \
             and at the times the tap forwarded it)",
            s.path.display(),
            s.frames
        ),
        columns: vec!["flow".into(), "figure".into(), "c>s (page to server)".into(), "s>c".into()],
        rows: flow_rows(d, window_s),
    });
}

/// Terminal lines about the capture.
pub fn summary_lines(view: &CaptureView) -> Vec<String> {
    let s = &view.summary;
    let mut out = vec![format!(
        "capture {}: {} connection(s), {} frames, {} payload bytes{}",
        s.path.display(),
        s.connections,
        s.frames,
        s.payload_bytes,
        if s.truncated_bytes > 0 {
            format!(", {} bytes over the limit not recorded", s.truncated_bytes)
        } else {
            String::new()
        }
    )];
    if let Some(e) = &view.error {
        out.push(format!("capture: {e}"));
    }
    if let Some(d) = &view.dissection {
        for f in &d.flows {
            let c = &f.client_to_server;
            let frames = c.ws.as_ref().map_or(0, |w| w.frames);
            out.push(format!(
                "capture flow {} -> {}: {} WebSocket frames, {} IMAGE_FRAME, {} stalls, {} anomalies",
                f.client,
                f.server,
                frames,
                packets_of(c, "IMAGE_FRAME"),
                c.stalls,
                f.anomalies.len()
            ));
        }
    }
    out
}

/// Writes the whole dissection as `capture.json` in the report directory.
pub fn write_json(dir: &Path, view: &CaptureView) -> crate::Result<()> {
    let Some(d) = &view.dissection else { return Ok(()) };
    let path = dir.join("capture.json");
    let json = serde_json::to_vec_pretty(d).map_err(|e| crate::Error::Usage(format!("serialising: {e}")))?;
    std::fs::write(&path, json).map_err(|e| crate::Error::io(format!("writing {}", path.display()), e))
}
