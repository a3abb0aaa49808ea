//! What a client measured: [`ClientReport`] (counters, per-stage histograms from `acip::stats`, close
//! details) and the [`ClientObserver`] hook through which a harness sees each event as it happens. Human
//! and JSON output of the binary both come from the report (STYLE.md rule 24).

use std::collections::BTreeMap;
use std::time::Duration;

use acip::stats::{Counters, Stage, StageHistograms, StageSummary};
use acip::PacketType;
use serde::Serialize;

/// How a session ended, as far as the client could tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CloseInfo {
    /// The WebSocket close code the server sent, if any.
    pub code: Option<u16>,
    /// The close reason, or the text of an ERROR_MESSAGE / SERVER_FULL line, or "eof".
    pub reason: String,
    /// Whether the client closed first (a normal end of a run).
    pub by_client: bool,
}

/// Everything measured over a [`crate::run`] or over one [`crate::Client`]'s life.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientReport {
    pub target: String,
    pub dialect: String,
    /// The crypto mode asked for (0 NONE .. 3 FULL) and whether traffic was actually encrypted.
    pub mode: u8,
    pub encrypted: bool,
    pub tag: u32,
    pub seed: u64,
    /// Sessions that completed the handshake.
    pub sessions: u64,
    /// Packets and bytes by type in each direction, test-pattern frames sent, and errors by kind. Receive
    /// validation failures (`ascii_checksum`, `server_state_size`, ...) are counted here, never silent.
    pub counters: Counters,
    /// ASCII_FRAMEs that passed every check (checksum included).
    pub ascii_frames: u64,
    /// Size in characters of the last ASCII frame.
    pub last_ascii_size: Option<(u32, u32)>,
    /// The last SERVER_STATE: (connected, active).
    pub last_server_state: Option<(u32, u32)>,
    /// ERROR_MESSAGEs received: (code, text).
    pub error_messages: Vec<(u32, String)>,
    /// REMOTE_LOG texts received.
    pub remote_logs: Vec<String>,
    /// How the last session ended.
    pub close: Option<CloseInfo>,
    /// The text of the first ASCII frame received (what snapshot mode prints).
    pub snapshot: Option<String>,
    /// Wall time of the run.
    #[serde(serialize_with = "micros")]
    pub elapsed: Duration,
    /// ClientBuild, ClientEncrypt, ClientWrite, ClientFlush, AsciiInterval, PingRtt, Handshake.
    #[serde(serialize_with = "stage_snapshot")]
    pub stages: StageHistograms,
}

fn micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn stage_snapshot<S: serde::Serializer>(h: &StageHistograms, s: S) -> Result<S::Ok, S::Error> {
    let snap: BTreeMap<String, StageSummary> = h.snapshot();
    snap.serialize(s)
}

impl ClientReport {
    /// IMAGE_FRAMEs sent.
    pub fn frames_sent(&self) -> u64 {
        self.counters.frames_sent
    }

    /// Packets of `t` received (decrypted type).
    pub fn received(&self, t: PacketType) -> u64 {
        self.counters.rx(t)
    }

    /// Whether anything received failed validation (exit code 1 of the binary).
    pub fn has_validation_errors(&self) -> bool {
        self.counters.total_errors() > 0
    }

    /// Adds another session's report into this one (counters and histograms summed, last values kept).
    pub fn merge(&mut self, other: &ClientReport) {
        self.sessions += other.sessions;
        self.counters.merge(&other.counters);
        self.ascii_frames += other.ascii_frames;
        self.last_ascii_size = other.last_ascii_size.or(self.last_ascii_size);
        self.last_server_state = other.last_server_state.or(self.last_server_state);
        self.error_messages.extend(other.error_messages.iter().cloned());
        self.remote_logs.extend(other.remote_logs.iter().cloned());
        self.close = other.close.clone().or(self.close.take());
        if self.snapshot.is_none() {
            self.snapshot = other.snapshot.clone();
        }
        self.encrypted |= other.encrypted;
        self.stages.merge(&other.stages);
    }

    /// A short human summary (the binary's default output).
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} dialect={} mode={} encrypted={} sessions={} frames_sent={} ascii_frames={} pongs={} \
             server_states={} clear_console={} bytes_tx={} bytes_rx={} elapsed={:.3}s\n",
            self.target,
            self.dialect,
            self.mode,
            self.encrypted,
            self.sessions,
            self.frames_sent(),
            self.ascii_frames,
            self.received(PacketType::PONG),
            self.received(PacketType::SERVER_STATE),
            self.received(PacketType::CLEAR_CONSOLE),
            self.counters.bytes_tx,
            self.counters.bytes_rx,
            self.elapsed.as_secs_f64(),
        );
        for (name, st) in self.stages.snapshot() {
            s += &format!(
                "  {name:<15} n={:<7} p50={}us p99={}us max={}us\n",
                st.count, st.p50_us, st.p99_us, st.max_us
            );
        }
        for (kind, n) in &self.counters.errors {
            s += &format!("  error {kind}: {n}\n");
        }
        for (code, text) in &self.error_messages {
            s += &format!("  ERROR_MESSAGE {code}: {text}\n");
        }
        if let Some(c) = &self.close {
            s += &format!(
                "  closed by {}: code={:?} reason={:?}\n",
                if c.by_client { "client" } else { "server" },
                c.code,
                c.reason
            );
        }
        s
    }

    pub(crate) fn record(&mut self, stage: Stage, d: Duration) {
        self.stages.record(stage, d);
    }
}

/// One thing that happened in a client, as a [`ClientObserver`] sees it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Handshake and CLIENT_CAPABILITIES done.
    Connected {
        handshake: Duration,
        encrypted: bool,
    },
    /// One IMAGE_FRAME written (and flushed). `intended_us` is the schedule time embedded in the frame.
    FrameSent {
        seq: u64,
        intended_us: u64,
        wire_bytes: usize,
        build: Duration,
        encrypt: Duration,
        write: Duration,
    },
    /// A verified ASCII_FRAME; `interval` since the previous one.
    AsciiFrame {
        width: u32,
        height: u32,
        text_bytes: usize,
        interval: Option<Duration>,
    },
    ServerState {
        connected: u32,
        active: u32,
    },
    Pong {
        rtt: Option<Duration>,
    },
    ClearConsole,
    ErrorMessage {
        code: u32,
        message: String,
    },
    /// Something received failed a check (`kind` as in [`ClientReport::counters`]`.errors`).
    Invalid {
        kind: String,
        detail: String,
    },
    Closed(CloseInfo),
}

/// A sink for [`ClientEvent`]s, called from the client's tasks (keep it cheap and non-blocking).
pub trait ClientObserver: Send + Sync + 'static {
    /// `tag` is [`crate::ClientConfig::tag`], so one observer can serve many clients.
    fn on_event(&self, tag: u32, event: &ClientEvent);
}
