//! Per-stage timing and counters shared by the reference peers and the harness (issue 4; the stages follow
//! the path of one packet through ACIP-SPEC.md sections 6.1/6.2 and the measurements of section 8).
//!
//! Sans-IO like the rest of the crate: nothing here reads a clock. Callers measure a [`Duration`] with
//! their own clock and hand it to [`StageHistograms::record`]. Histograms are `hdrhistogram` in
//! microseconds with 3 significant figures; they start small and grow on demand, so one per connection is
//! cheap. [`StageHistograms::snapshot`] and [`Counters`] serialise with serde for `GET /stats` and for
//! harness records.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::codec::PacketType;

/// Significant figures kept by every stage histogram.
pub const SIGFIG: u8 = 3;

/// One measured stage of a packet's life. The serde and [`Stage::name`] strings are stable: reports and
/// golden files key on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Client: building a packet (test pattern, header, CRC).
    ClientBuild,
    /// Client: encrypting a packet.
    ClientEncrypt,
    /// Client: writing a packet's bytes (or WebSocket frames) to the socket.
    ClientWrite,
    /// Client: flushing the socket after a write.
    ClientFlush,
    /// Server: first byte (TCP) or first fragment (WebSocket) of a packet to its last byte or fragment.
    ServerAssembly,
    /// Server: time a decoded packet waited in the connection's receive queue.
    ServerQueueWait,
    /// Server: decrypting one packet.
    ServerDecrypt,
    /// Server: handling one packet (validation, storing the frame, answering).
    ServerHandler,
    /// Server: rendering one ASCII_FRAME for one client.
    ServerRender,
    /// Server: an outbound packet waited in the writer queue, then was written.
    ServerWrite,
    /// End to end: the send time embedded in a frame to its arrival at the peer's handler.
    EndToEnd,
    /// Gap between two consecutive fragments of one WebSocket message.
    FragmentGap,
    /// Interval between two ASCII_FRAMEs sent to (or received by) one client.
    AsciiInterval,
    /// A round trip PING → PONG.
    PingRtt,
    /// Handshake: connect (or accept) to session ready.
    Handshake,
}

impl Stage {
    /// Every stage, in declaration order.
    pub const ALL: &'static [Stage] = &[
        Stage::ClientBuild,
        Stage::ClientEncrypt,
        Stage::ClientWrite,
        Stage::ClientFlush,
        Stage::ServerAssembly,
        Stage::ServerQueueWait,
        Stage::ServerDecrypt,
        Stage::ServerHandler,
        Stage::ServerRender,
        Stage::ServerWrite,
        Stage::EndToEnd,
        Stage::FragmentGap,
        Stage::AsciiInterval,
        Stage::PingRtt,
        Stage::Handshake,
    ];

    /// The stable name (the same string serde writes).
    pub const fn name(self) -> &'static str {
        match self {
            Stage::ClientBuild => "client_build",
            Stage::ClientEncrypt => "client_encrypt",
            Stage::ClientWrite => "client_write",
            Stage::ClientFlush => "client_flush",
            Stage::ServerAssembly => "server_assembly",
            Stage::ServerQueueWait => "server_queue_wait",
            Stage::ServerDecrypt => "server_decrypt",
            Stage::ServerHandler => "server_handler",
            Stage::ServerRender => "server_render",
            Stage::ServerWrite => "server_write",
            Stage::EndToEnd => "end_to_end",
            Stage::FragmentGap => "fragment_gap",
            Stage::AsciiInterval => "ascii_interval",
            Stage::PingRtt => "ping_rtt",
            Stage::Handshake => "handshake",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of the soak report's stage table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageRow {
    /// The name reports use (`report.json`, `stages.hlog`, summaries).
    pub name: &'static str,
    /// Who measures it: `client`, `server`, `end_to_end` or `baseline`.
    pub side: &'static str,
    pub description: &'static str,
    /// The server-side [`Stage`] this row is fed from, when the server measures it. The client's view of
    /// the same [`Stage`] keeps the plain name (`ascii_interval`); the server's gets its own row.
    pub server: Option<Stage>,
}

/// The one stage-name table: what a soak report lists, in order.
pub const REPORT_STAGES: &[StageRow] = &[
    StageRow { name: "end_to_end", side: "end_to_end", description: "intended send time (embedded in the frame) to the server's handler: coordinated-omission corrected", server: Some(Stage::EndToEnd) },
    StageRow { name: "send_lag", side: "client", description: "intended send time to the moment the client started building the frame (the scheduler's lateness)", server: None },
    StageRow { name: "client_build", side: "client", description: "building one IMAGE_FRAME: test pattern, header, CRC", server: None },
    StageRow { name: "client_encrypt", side: "client", description: "encrypting one IMAGE_FRAME (encrypted sessions only)", server: None },
    StageRow { name: "client_write_flush", side: "client", description: "writing one IMAGE_FRAME to the socket and flushing it", server: None },
    StageRow { name: "server_assembly", side: "server", description: "first byte or WebSocket fragment of a packet to its last", server: Some(Stage::ServerAssembly) },
    StageRow { name: "fragment_gap", side: "server", description: "gap between consecutive WebSocket fragments of one message", server: Some(Stage::FragmentGap) },
    StageRow { name: "server_queue_wait", side: "server", description: "time a decoded packet waited in the connection's receive queue", server: Some(Stage::ServerQueueWait) },
    StageRow { name: "server_decrypt", side: "server", description: "decrypting one packet", server: Some(Stage::ServerDecrypt) },
    StageRow { name: "server_handler", side: "server", description: "handling one packet (validation, storing the frame)", server: Some(Stage::ServerHandler) },
    StageRow { name: "server_render", side: "server", description: "rendering one ASCII_FRAME for one client", server: Some(Stage::ServerRender) },
    StageRow { name: "server_write", side: "server", description: "an outbound packet's wait in the writer queue plus its write", server: Some(Stage::ServerWrite) },
    StageRow { name: "ascii_interval", side: "client", description: "interval between consecutive ASCII_FRAMEs received by one client", server: None },
    StageRow { name: "server_ascii_interval", side: "server", description: "interval between consecutive ASCII_FRAMEs sent to one client", server: Some(Stage::AsciiInterval) },
    StageRow { name: "ping_rtt", side: "client", description: "PING to PONG round trip", server: None },
    StageRow { name: "handshake", side: "client", description: "connect to session ready (transport, crypto handshake, capabilities)", server: None },
    StageRow { name: "raw_tcp_end_to_end", side: "baseline", description: "raw-TCP baseline: intended send time to the last byte received", server: None },
];

/// The report's name for a server-side [`Stage`], if the report lists it.
pub fn report_stage_of_server(s: Stage) -> Option<&'static str> {
    REPORT_STAGES.iter().find(|r| r.server == Some(s)).map(|r| r.name)
}

/// One histogram per stage, created when the stage is first recorded.
#[derive(Debug, Clone, Default)]
pub struct StageHistograms {
    stages: BTreeMap<Stage, Histogram<u64>>,
}

impl StageHistograms {
    pub fn new() -> Self {
        Self::default()
    }

    fn histogram(&mut self, stage: Stage) -> &mut Histogram<u64> {
        self.stages.entry(stage).or_insert_with(|| {
            // Auto-resizing from [1, 2]: never fails to record and stays small when values are small.
            Histogram::new(SIGFIG).expect("3 significant figures is a valid hdrhistogram precision")
        })
    }

    /// Records one duration, in whole microseconds (sub-microsecond durations count as 0).
    pub fn record(&mut self, stage: Stage, d: Duration) {
        self.record_micros(stage, u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one value already in microseconds.
    pub fn record_micros(&mut self, stage: Stage, micros: u64) {
        let h = self.histogram(stage);
        // `record` grows the auto-resizing histogram; `saturating_record` would clamp to the current range.
        if h.record(micros).is_err() {
            h.saturating_record(micros);
        }
    }

    /// Adds every sample of `other` into `self`.
    pub fn merge(&mut self, other: &StageHistograms) {
        for (&stage, h) in &other.stages {
            // Both sides auto-resize, so `add` cannot fail on range; ignore the impossible error.
            let _ = self.histogram(stage).add(h);
        }
    }

    /// Samples recorded for `stage`.
    pub fn count(&self, stage: Stage) -> u64 {
        self.stages.get(&stage).map_or(0, |h| h.len())
    }

    /// The raw histogram of a stage, if any sample was recorded.
    pub fn get(&self, stage: Stage) -> Option<&Histogram<u64>> {
        self.stages.get(&stage)
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.stages.values().all(|h| h.is_empty())
    }

    /// Serde-friendly percentiles of every recorded stage, keyed by [`Stage::name`].
    pub fn snapshot(&self) -> BTreeMap<String, StageSummary> {
        self.stages
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(s, h)| (s.name().to_string(), StageSummary::of(h)))
            .collect()
    }
}

/// Summary of one stage histogram, all values in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl StageSummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        StageSummary {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Event counters of one peer or one connection. Maps are keyed by stable strings (packet type names such
/// as `IMAGE_FRAME`, drop reasons, error kinds) so the JSON is readable and diffable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets received, by type name.
    pub packets_rx: BTreeMap<String, u64>,
    /// Packets sent, by type name.
    pub packets_tx: BTreeMap<String, u64>,
    /// Bytes received and sent on the wire (including headers and WebSocket framing).
    pub bytes_rx: u64,
    pub bytes_tx: u64,
    /// Items dropped on purpose (queue full, latest-frame-wins replacement, ...), by reason. None is silent.
    pub drops: BTreeMap<String, u64>,
    /// Errors, by kind (e.g. `bad_magic`, `crc_mismatch`, `unmasked_frame`, `idle_timeout`).
    pub errors: BTreeMap<String, u64>,
    /// Test-pattern frames sent and received, and the receiver's verdicts.
    pub frames_sent: u64,
    pub frames_received: u64,
    pub frames_lost: u64,
    pub frames_corrupt: u64,
    pub frames_reordered: u64,
    /// Connections accepted (or made) and closed.
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Slots in use at the time of the snapshot (a gauge, not summed by [`Counters::merge`]).
    pub slots_in_use: u64,
}

impl Counters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one received packet of `t` and its wire size.
    pub fn count_rx(&mut self, t: PacketType, wire_bytes: usize) {
        *self.packets_rx.entry(t.name().to_string()).or_default() += 1;
        self.bytes_rx += wire_bytes as u64;
    }

    /// Counts one sent packet of `t` and its wire size.
    pub fn count_tx(&mut self, t: PacketType, wire_bytes: usize) {
        *self.packets_tx.entry(t.name().to_string()).or_default() += 1;
        self.bytes_tx += wire_bytes as u64;
    }

    /// Counts one deliberate drop.
    pub fn count_drop(&mut self, reason: &str) {
        *self.drops.entry(reason.to_string()).or_default() += 1;
    }

    /// Counts one error.
    pub fn count_error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    /// Received packets of type `t` so far.
    pub fn rx(&self, t: PacketType) -> u64 {
        self.packets_rx.get(t.name()).copied().unwrap_or(0)
    }

    /// Sent packets of type `t` so far.
    pub fn tx(&self, t: PacketType) -> u64 {
        self.packets_tx.get(t.name()).copied().unwrap_or(0)
    }

    /// Sum of all drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }

    /// Sum of all errors.
    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other` into `self` (the `slots_in_use` gauge takes the larger value).
    pub fn merge(&mut self, other: &Counters) {
        let add = |a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
            for (k, v) in b {
                *a.entry(k.clone()).or_default() += v;
            }
        };
        add(&mut self.packets_rx, &other.packets_rx);
        add(&mut self.packets_tx, &other.packets_tx);
        add(&mut self.drops, &other.drops);
        add(&mut self.errors, &other.errors);
        self.bytes_rx += other.bytes_rx;
        self.bytes_tx += other.bytes_tx;
        self.frames_sent += other.frames_sent;
        self.frames_received += other.frames_received;
        self.frames_lost += other.frames_lost;
        self.frames_corrupt += other.frames_corrupt;
        self.frames_reordered += other.frames_reordered;
        self.connections_opened += other.connections_opened;
        self.connections_closed += other.connections_closed;
        self.slots_in_use = self.slots_in_use.max(other.slots_in_use);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_table_names_each_stage_once() {
        let mut names: Vec<&str> = REPORT_STAGES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a report stage name appears twice");
        for s in Stage::ALL {
            assert!(REPORT_STAGES.iter().filter(|r| r.server == Some(*s)).count() <= 1, "{s} feeds two rows");
        }
        assert_eq!(report_stage_of_server(Stage::AsciiInterval), Some("server_ascii_interval"));
        assert_eq!(report_stage_of_server(Stage::EndToEnd), Some("end_to_end"));
        assert_eq!(report_stage_of_server(Stage::PingRtt), None);
    }

    #[test]
    fn stage_names_match_serde() {
        for &s in Stage::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.name()));
        }
    }

    #[test]
    fn record_merge_and_snapshot() {
        let mut a = StageHistograms::new();
        for us in 1..=1000 {
            a.record(Stage::ServerHandler, Duration::from_micros(us));
        }
        let mut b = StageHistograms::new();
        b.record(Stage::ServerHandler, Duration::from_secs(3));
        b.record(Stage::FragmentGap, Duration::from_nanos(10));
        a.merge(&b);
        assert_eq!(a.count(Stage::ServerHandler), 1001);
        assert_eq!(a.count(Stage::FragmentGap), 1);
        let snap = a.snapshot();
        let h = &snap["server_handler"];
        assert_eq!(h.count, 1001);
        assert!((499..=501).contains(&h.p50_us), "{h:?}");
        assert!(h.max_us >= 2_999_000, "{h:?}");
        assert_eq!(snap["fragment_gap"].max_us, 0);
        assert!(!snap.contains_key("end_to_end"));
        let json = serde_json::to_string(&snap).unwrap();
        let back: BTreeMap<String, StageSummary> = serde_json::from_str(&json).unwrap();
        assert_eq!(back["server_handler"].count, 1001);
    }

    #[test]
    fn counters_merge() {
        let mut a = Counters::new();
        a.count_rx(PacketType::PING, 22);
        a.count_drop("video_replaced");
        a.slots_in_use = 3;
        let mut b = Counters::new();
        b.count_rx(PacketType::PING, 22);
        b.count_error("bad_magic");
        b.slots_in_use = 1;
        a.merge(&b);
        assert_eq!(a.rx(PacketType::PING), 2);
        assert_eq!(a.bytes_rx, 44);
        assert_eq!((a.total_drops(), a.total_errors(), a.slots_in_use), (1, 1, 3));
        let back: Counters = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
}
