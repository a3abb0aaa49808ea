//! Per-direction TCP stream reassembly (RFC 9293 sequence space) for the dissector.
//!
//! Segments are put in sequence order; retransmitted and overlapping bytes are dropped (counted); bytes
//! that never appear are reported as a [`StreamEvent::Gap`], never invented. A gap is declared when the
//! data after it can no longer wait: at the end of the capture, or when the out-of-order buffer of a
//! direction passes [`TcpReassemblerConfig::max_pending_bytes`]. Bytes the capture did not keep (snaplen)
//! are a gap at once. SYN, FIN, RST and zero-window advertisements come out as events in capture order.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use super::link::TcpSegment;

/// Index of a TCP connection in the capture, in order of first appearance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct FlowId(pub u32);

/// Direction within a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Dir {
    /// Client to server (the side that sent the SYN).
    #[serde(rename = "c>s")]
    ClientToServer,
    /// Server to client.
    #[serde(rename = "s>c")]
    ServerToClient,
}

impl Dir {
    pub fn index(self) -> usize {
        match self {
            Dir::ClientToServer => 0,
            Dir::ServerToClient => 1,
        }
    }

    pub fn arrow(self) -> &'static str {
        match self {
            Dir::ClientToServer => "c>s",
            Dir::ServerToClient => "s>c",
        }
    }
}

/// Why bytes are missing from a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The segment was on the wire but the capture kept only its start (snaplen).
    NotCaptured,
    /// Later data was captured but these bytes never were (lost by the capture, or cut off at its start).
    Missing,
}

/// What the reassembler reports, in capture order (data in sequence order within a direction).
#[derive(Debug, Clone)]
pub enum StreamEvent<'a> {
    /// A new connection. `syn_seen` false: the capture started mid-connection and client/server were
    /// guessed from the ports.
    Open {
        flow: FlowId,
        client: SocketAddr,
        server: SocketAddr,
        syn_seen: bool,
    },
    /// In-order bytes at stream offset `offset` (0 = first byte after the SYN).
    Data {
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
        offset: u64,
        data: Cow<'a, [u8]>,
    },
    /// Bytes `offset..offset + len` will never be delivered.
    Gap {
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
        offset: u64,
        len: u64,
        reason: GapReason,
    },
    /// Bytes seen again (retransmission or overlap), dropped. `conflict`: the stream offset of the first
    /// byte that differs from what was delivered there (checked over the last [`RECENT_WINDOW`] bytes).
    Retransmit {
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
        len: u64,
        conflict: Option<u64>,
    },
    Syn {
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
    },
    Fin {
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
    },
    Rst {
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
    },
    /// `dir`'s sender advertised a zero receive window (it cannot take more data). `first`: the window was
    /// open before (the start of a zero-window episode).
    ZeroWindow {
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
        first: bool,
    },
}

/// Named limits of the reassembler.
#[derive(Debug, Clone, Copy)]
pub struct TcpReassemblerConfig {
    /// Out-of-order bytes held per direction before the hole in front of them is declared a gap.
    pub max_pending_bytes: usize,
    /// Connections tracked; segments of further connections are counted and ignored.
    pub max_flows: usize,
}

impl Default for TcpReassemblerConfig {
    fn default() -> Self {
        TcpReassemblerConfig { max_pending_bytes: 16 * 1024 * 1024, max_flows: 65_536 }
    }
}

#[derive(Debug)]
struct Pending {
    ts: Duration,
    frame: u64,
    data: Vec<u8>,
    missing: u64,
}

/// Bytes of each direction kept after delivery, to compare retransmissions with.
pub const RECENT_WINDOW: usize = 256 * 1024;

#[derive(Debug, Default)]
struct Half {
    /// Sequence number of stream offset 0.
    base: Option<u32>,
    next: u64,
    /// The last delivered bytes: stream offsets `next - recent.len() .. next`.
    recent: std::collections::VecDeque<u8>,
    pending: BTreeMap<u64, Pending>,
    pending_bytes: usize,
    fin: bool,
    rst: bool,
    /// The last window this side advertised was zero.
    zero_window: bool,
}

#[derive(Debug)]
struct Flow {
    client: SocketAddr,
    halves: [Half; 2],
    /// A FIN or RST was seen: a new SYN on the same addresses starts a new flow.
    ended: bool,
}

/// The reassembler over all flows of a capture. Feed segments with [`TcpReassembler::handle_segment`]
/// (events are appended to `out`), then call [`TcpReassembler::finish`] once.
#[derive(Debug, Default)]
pub struct TcpReassembler {
    config: TcpReassemblerConfig,
    by_addr: HashMap<(SocketAddr, SocketAddr), FlowId>,
    flows: Vec<Flow>,
    /// Segments ignored because `max_flows` was reached.
    pub dropped_segments: u64,
}

/// Guesses the server of a connection whose SYN was not captured: ACIP's ports first, then the lower port.
fn guess_server(a: SocketAddr, b: SocketAddr) -> bool {
    const ACIP_PORTS: [u16; 2] = [27224, 27226];
    if ACIP_PORTS.contains(&a.port()) != ACIP_PORTS.contains(&b.port()) {
        return ACIP_PORTS.contains(&a.port());
    }
    a.port() < b.port()
}

impl TcpReassembler {
    pub fn new(config: TcpReassemblerConfig) -> Self {
        TcpReassembler { config, ..Default::default() }
    }

    /// Handles one captured segment.
    pub fn handle_segment<'a>(
        &mut self,
        seg: &TcpSegment<'a>,
        ts: Duration,
        frame: u64,
        out: &mut Vec<StreamEvent<'a>>,
    ) {
        let key = if seg.src <= seg.dst { (seg.src, seg.dst) } else { (seg.dst, seg.src) };
        let new_syn = seg.syn && !seg.ack_flag;
        let existing = self.by_addr.get(&key).copied();
        let id = match existing {
            Some(id) if !(new_syn && self.flows[id.0 as usize].ended) => id,
            _ => {
                if self.flows.len() >= self.config.max_flows {
                    self.dropped_segments += 1;
                    return;
                }
                let id = FlowId(self.flows.len() as u32);
                let (client, server) = if seg.syn {
                    // SYN comes from the client, SYN+ACK from the server.
                    if seg.ack_flag {
                        (seg.dst, seg.src)
                    } else {
                        (seg.src, seg.dst)
                    }
                } else if guess_server(seg.src, seg.dst) {
                    (seg.dst, seg.src)
                } else {
                    (seg.src, seg.dst)
                };
                self.flows.push(Flow { client, halves: Default::default(), ended: false });
                self.by_addr.insert(key, id);
                out.push(StreamEvent::Open { flow: id, client, server, syn_seen: seg.syn });
                id
            }
        };
        let max_pending = self.config.max_pending_bytes;
        let flow = &mut self.flows[id.0 as usize];
        let dir = if seg.src == flow.client { Dir::ClientToServer } else { Dir::ServerToClient };
        let half = &mut flow.halves[dir.index()];

        if seg.syn {
            out.push(StreamEvent::Syn { flow: id, dir, ts, frame });
            if half.base.is_none() {
                half.base = Some(seg.seq.wrapping_add(1));
            }
        }
        if seg.window == 0 && !seg.rst && !seg.syn {
            out.push(StreamEvent::ZeroWindow { flow: id, dir, ts, frame, first: !half.zero_window });
            half.zero_window = true;
        } else if seg.window > 0 {
            half.zero_window = false;
        }
        let base = *half.base.get_or_insert(seg.seq);
        let data_seq = if seg.syn { seg.seq.wrapping_add(1) } else { seg.seq };
        let total = seg.payload.len() as u64 + u64::from(seg.missing);
        if total > 0 {
            // Place the segment relative to the next expected byte (handles 32-bit wrap-around).
            let next_seq = base.wrapping_add(half.next as u32);
            let delta = i64::from(data_seq.wrapping_sub(next_seq) as i32);
            let off = half.next as i64 + delta;
            half.accept(id, dir, ts, frame, off, seg.payload, u64::from(seg.missing), max_pending, out);
        }
        if seg.fin {
            half.fin = true;
            flow.ended = true;
            out.push(StreamEvent::Fin { flow: id, dir, ts, frame });
        }
        if seg.rst {
            flow.halves[dir.index()].rst = true;
            flow.ended = true;
            out.push(StreamEvent::Rst { flow: id, dir, ts, frame });
        }
    }

    /// End of the capture: whatever waits behind a hole is delivered after a gap.
    pub fn finish<'a>(&mut self, ts: Duration, frame: u64, out: &mut Vec<StreamEvent<'a>>) {
        for (i, flow) in self.flows.iter_mut().enumerate() {
            for dir in [Dir::ClientToServer, Dir::ServerToClient] {
                flow.halves[dir.index()].flush_all(FlowId(i as u32), dir, ts, frame, out);
            }
        }
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }
}

impl Half {
    #[allow(clippy::too_many_arguments)] // one segment's fields, kept flat on purpose
    fn accept<'a>(
        &mut self,
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
        off: i64,
        payload: &'a [u8],
        missing: u64,
        max_pending: usize,
        out: &mut Vec<StreamEvent<'a>>,
    ) {
        let total = payload.len() as u64 + missing;
        let end = off + total as i64;
        if end <= self.next as i64 {
            let conflict = self.conflict(off, payload);
            out.push(StreamEvent::Retransmit { flow, dir, ts, frame, len: total, conflict });
            return;
        }
        if off > self.next as i64 {
            let off = off as u64;
            let keep = match self.pending.get(&off) {
                Some(p) => (p.data.len() as u64 + p.missing) < total,
                None => true,
            };
            if keep {
                if let Some(old) =
                    self.pending.insert(off, Pending { ts, frame, data: payload.to_vec(), missing })
                {
                    self.pending_bytes -= old.data.len();
                }
                self.pending_bytes += payload.len();
            } else {
                out.push(StreamEvent::Retransmit { flow, dir, ts, frame, len: total, conflict: None });
            }
            while self.pending_bytes > max_pending {
                self.gap_to_first_pending(flow, dir, ts, frame, out);
                self.drain(flow, dir, out);
            }
            return;
        }
        let skip = (self.next as i64 - off) as u64;
        if skip > 0 {
            let conflict = self.conflict(off, &payload[..(skip as usize).min(payload.len())]);
            out.push(StreamEvent::Retransmit { flow, dir, ts, frame, len: skip, conflict });
        }
        self.deliver(flow, dir, ts, frame, Cow::Borrowed(payload), missing, skip, out);
        self.drain(flow, dir, out);
    }

    /// The first stream offset where `bytes` (seen again at `off`) differ from the delivered ones still in
    /// the recent window.
    fn conflict(&self, off: i64, bytes: &[u8]) -> Option<u64> {
        let start = self.next as i64 - self.recent.len() as i64;
        bytes.iter().enumerate().find_map(|(i, b)| {
            let at = off + i as i64;
            if at < start || at >= self.next as i64 {
                return None;
            }
            (self.recent.get((at - start) as usize) != Some(b)).then_some(at as u64)
        })
    }

    /// Delivers a segment starting at `self.next - skip`.
    #[allow(clippy::too_many_arguments)]
    fn deliver<'a>(
        &mut self,
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
        data: Cow<'a, [u8]>,
        missing: u64,
        skip: u64,
        out: &mut Vec<StreamEvent<'a>>,
    ) {
        let captured = data.len() as u64;
        // The segment may start before offset 0 (bytes before the first one seen): signed arithmetic.
        let seg_end = self.next as i128 - i128::from(skip) + i128::from(captured) + i128::from(missing);
        if skip < captured {
            let offset = self.next;
            let data = match data {
                Cow::Borrowed(d) => Cow::Borrowed(&d[skip as usize..]),
                Cow::Owned(mut v) => {
                    v.drain(..skip as usize);
                    Cow::Owned(v)
                }
            };
            self.next += data.len() as u64;
            self.recent.extend(data.iter().copied());
            let excess = self.recent.len().saturating_sub(RECENT_WINDOW);
            self.recent.drain(..excess);
            out.push(StreamEvent::Data { flow, dir, ts, frame, offset, data });
        }
        // The not-captured tail, where not already covered, is a gap right away: it will never come.
        if seg_end > i128::from(self.next) {
            let seg_end = seg_end as u64;
            let len = seg_end - self.next;
            let offset = self.next;
            out.push(StreamEvent::Gap { flow, dir, ts, frame, offset, len, reason: GapReason::NotCaptured });
            self.next = seg_end;
        }
    }

    /// Delivers pending segments that have become contiguous.
    fn drain<'a>(&mut self, flow: FlowId, dir: Dir, out: &mut Vec<StreamEvent<'a>>) {
        while let Some(entry) = self.pending.first_entry() {
            let off = *entry.key();
            if off > self.next {
                break;
            }
            let p = entry.remove();
            self.pending_bytes -= p.data.len();
            let total = p.data.len() as u64 + p.missing;
            if off + total <= self.next {
                let conflict = self.conflict(off as i64, &p.data);
                out.push(StreamEvent::Retransmit {
                    flow,
                    dir,
                    ts: p.ts,
                    frame: p.frame,
                    len: total,
                    conflict,
                });
                continue;
            }
            let skip = self.next - off;
            self.deliver(flow, dir, p.ts, p.frame, Cow::Owned(p.data), p.missing, skip, out);
        }
    }

    fn gap_to_first_pending<'a>(
        &mut self,
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
        out: &mut Vec<StreamEvent<'a>>,
    ) {
        if let Some((&off, p)) = self.pending.first_key_value() {
            if off > self.next {
                let (ts, frame) = if p.frame > 0 { (p.ts, p.frame) } else { (ts, frame) };
                let len = off - self.next;
                out.push(StreamEvent::Gap {
                    flow,
                    dir,
                    ts,
                    frame,
                    offset: self.next,
                    len,
                    reason: GapReason::Missing,
                });
                self.next = off;
            }
        }
    }

    fn flush_all<'a>(
        &mut self,
        flow: FlowId,
        dir: Dir,
        ts: Duration,
        frame: u64,
        out: &mut Vec<StreamEvent<'a>>,
    ) {
        while !self.pending.is_empty() {
            self.gap_to_first_pending(flow, dir, ts, frame, out);
            self.drain(flow, dir, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(src: u16, dst: u16, seq: u32, flags: &str, payload: &'static [u8]) -> TcpSegment<'static> {
        TcpSegment {
            src: SocketAddr::from(([127, 0, 0, 1], src)),
            dst: SocketAddr::from(([127, 0, 0, 1], dst)),
            seq,
            ack: 0,
            syn: flags.contains('S'),
            fin: flags.contains('F'),
            rst: flags.contains('R'),
            ack_flag: flags.contains('A'),
            window: if flags.contains('0') { 0 } else { 1000 },
            payload,
            missing: 0,
        }
    }

    /// Runs segments through a reassembler; returns the delivered bytes and a compact event log.
    fn run(segs: &[TcpSegment<'static>]) -> (Vec<u8>, Vec<String>) {
        let mut r = TcpReassembler::new(TcpReassemblerConfig { max_pending_bytes: 8, max_flows: 4 });
        let mut out = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            r.handle_segment(s, Duration::ZERO, i as u64 + 1, &mut out);
        }
        r.finish(Duration::ZERO, 0, &mut out);
        let mut bytes = Vec::new();
        let mut log = Vec::new();
        let mut next = 0u64;
        for e in out {
            match e {
                StreamEvent::Data { dir: Dir::ClientToServer, offset, data, .. } => {
                    assert_eq!(offset, next, "data in sequence order, after the gaps");
                    next += data.len() as u64;
                    bytes.extend_from_slice(&data);
                }
                StreamEvent::Gap { offset, len, reason, .. } => {
                    assert_eq!(offset, next);
                    next += len;
                    log.push(format!("gap {offset}+{len} {reason:?}"));
                }
                StreamEvent::Retransmit { len, .. } => log.push(format!("retx {len}")),
                StreamEvent::Fin { dir, .. } => log.push(format!("fin {}", dir.arrow())),
                StreamEvent::ZeroWindow { dir, .. } => log.push(format!("zero {}", dir.arrow())),
                StreamEvent::Open { syn_seen, .. } => log.push(format!("open syn={syn_seen}")),
                _ => {}
            }
        }
        (bytes, log)
    }

    #[test]
    fn out_of_order_retransmitted_and_overlapping_segments() {
        let (bytes, log) = run(&[
            seg(5000, 27224, 100, "S", b""),
            seg(27224, 5000, 900, "SA", b""),
            seg(5000, 27224, 105, "A", b"efgh"),
            seg(5000, 27224, 101, "A", b"abcd"),
            seg(5000, 27224, 101, "A", b"abcd"),
            seg(5000, 27224, 103, "A", b"cdefghij"),
            seg(27224, 5000, 901, "A0", b""),
            seg(5000, 27224, 111, "FA", b"k"),
        ]);
        assert_eq!(bytes, b"abcdefghijk");
        assert_eq!(log, ["open syn=true", "retx 4", "retx 6", "zero s>c", "fin c>s"]);
    }

    #[test]
    fn a_hole_is_a_gap_not_a_guess() {
        let (bytes, log) = run(&[
            seg(5000, 27224, 100, "S", b""),
            seg(5000, 27224, 101, "A", b"ab"),
            seg(5000, 27224, 105, "A", b"ef"),
        ]);
        assert_eq!(bytes, b"abef");
        assert_eq!(log, ["open syn=true", "gap 2+2 Missing"]);
    }

    #[test]
    fn pending_over_the_limit_forces_the_gap() {
        let (bytes, log) = run(&[
            seg(5000, 27224, 100, "S", b""),
            seg(5000, 27224, 103, "A", b"cdefg"),
            seg(5000, 27224, 108, "A", b"hijkl"),
            seg(5000, 27224, 101, "A", b"ab"),
        ]);
        assert_eq!(bytes, b"cdefghijkl");
        assert_eq!(log, ["open syn=true", "gap 0+2 Missing", "retx 2"]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let (bytes, _) = run(&[
            seg(5000, 27224, u32::MAX - 1, "S", b""),
            seg(5000, 27224, u32::MAX, "A", b"ab"),
            seg(5000, 27224, 1, "A", b"cd"),
        ]);
        assert_eq!(bytes, b"abcd");
    }

    #[test]
    fn not_captured_tail_is_a_gap() {
        let mut s = seg(5000, 27224, 101, "A", b"ab");
        s.missing = 3;
        let (bytes, log) = run(&[seg(5000, 27224, 100, "S", b""), s, seg(5000, 27224, 106, "A", b"f")]);
        assert_eq!(bytes, b"abf");
        assert_eq!(log, ["open syn=true", "gap 2+3 NotCaptured"]);
    }

    #[test]
    fn segments_before_the_first_one_seen_are_trimmed() {
        // No SYN: offset 0 is the first segment seen; an older segment overlapping it must not underflow.
        let mut s = seg(5000, 27224, 96, "A", b"wxyzab");
        s.missing = 2;
        let (bytes, log) = run(&[seg(5000, 27224, 100, "A", b"ab"), s, seg(5000, 27224, 102, "A", b"cd")]);
        // The old segment's not-captured tail is declared at once (a snaplen never lets it arrive), so the
        // later copy of those offsets counts as a retransmission.
        assert_eq!(bytes, b"ab");
        assert_eq!(log, ["open syn=false", "retx 6", "gap 2+2 NotCaptured", "retx 2"]);
    }

    #[test]
    fn mid_stream_capture_guesses_the_server_by_port() {
        let mut r = TcpReassembler::default();
        let mut out = Vec::new();
        r.handle_segment(&seg(27226, 40000, 7, "A", b"x"), Duration::ZERO, 1, &mut out);
        match &out[0] {
            StreamEvent::Open { server, syn_seen: false, .. } => assert_eq!(server.port(), 27226),
            e => panic!("{e:?}"),
        }
    }
}
