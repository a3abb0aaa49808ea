//! Recording a synthetic TCP session as a classic pcap (Ethernet + IPv4 + TCP, microsecond timestamps)
//! that Wireshark and tshark open: pcap-file's `PcapWriter` for the container, etherparse's
//! `PacketBuilder` for headers with correct checksums. Used to commit small reference captures to
//! `corpus/captures/` and by tests that need a capture with known contents.

use std::net::SocketAddrV4;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, TsResolution};

use super::tcp::Dir;

/// Largest TCP payload per synthetic segment (the loopback MSS of the real captures is 65 483; a smaller
/// one keeps the frames ordinary).
pub const SYNTHETIC_MSS: usize = 32_768;

/// A TCP connection being scripted: handshake, data both ways (each data segment is ACKed), FIN.
#[derive(Debug)]
pub struct SyntheticSession {
    client: SocketAddrV4,
    server: SocketAddrV4,
    seq: [u32; 2],
    frames: Vec<(Duration, Vec<u8>)>,
    /// For each frame, the index of the data segment it carries (counted from 0), if any.
    data_index: Vec<Option<usize>>,
    /// Data segments (by index) left out when the session is written: for captures with gaps.
    pub drop_segments: Vec<usize>,
    data_segments: usize,
}

impl SyntheticSession {
    /// Starts with SYN, SYN+ACK, ACK at `at`.
    pub fn new(client: SocketAddrV4, server: SocketAddrV4, at: Duration) -> Self {
        let mut s = SyntheticSession {
            client,
            server,
            seq: [1000, 5000],
            frames: Vec::new(),
            data_index: Vec::new(),
            drop_segments: Vec::new(),
            data_segments: 0,
        };
        s.push(at, Dir::ClientToServer, "S", &[]);
        s.seq[0] += 1;
        s.push(at, Dir::ServerToClient, "SA", &[]);
        s.seq[1] += 1;
        s.push(at, Dir::ClientToServer, "A", &[]);
        s
    }

    fn push(&mut self, at: Duration, dir: Dir, flags: &str, payload: &[u8]) {
        let (src, dst) = match dir {
            Dir::ClientToServer => (self.client, self.server),
            Dir::ServerToClient => (self.server, self.client),
        };
        let (me, peer) = (dir.index(), 1 - dir.index());
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1 + me as u8], [2, 0, 0, 0, 0, 1 + peer as u8])
            .ipv4(src.ip().octets(), dst.ip().octets(), 64)
            .tcp(src.port(), dst.port(), self.seq[me], 65_535);
        if flags.contains('S') {
            b = b.syn();
        }
        if flags.contains('A') {
            b = b.ack(self.seq[peer]);
        }
        if flags.contains('F') {
            b = b.fin();
        }
        if flags.contains('P') {
            b = b.psh();
        }
        let mut frame = Vec::with_capacity(b.size(payload.len()));
        // Writing into a Vec cannot fail; the only other error is a payload over 64 KiB, which `send` avoids.
        if b.write(&mut frame, payload).is_ok() {
            self.frames.push((at, frame));
            self.data_index.push((!payload.is_empty()).then_some(self.data_segments));
        }
    }

    /// Sends `data` in direction `dir` at time `at`, in segments of at most [`SYNTHETIC_MSS`] bytes, each
    /// acknowledged by the peer.
    pub fn send(&mut self, at: Duration, dir: Dir, data: &[u8]) {
        for chunk in data.chunks(SYNTHETIC_MSS) {
            self.push(at, dir, "PA", chunk);
            self.data_segments += 1;
            self.seq[dir.index()] = self.seq[dir.index()].wrapping_add(chunk.len() as u32);
            let back = match dir {
                Dir::ClientToServer => Dir::ServerToClient,
                Dir::ServerToClient => Dir::ClientToServer,
            };
            self.push(at, back, "A", &[]);
        }
    }

    /// Sends `data` again as a retransmission of the last `data.len()` bytes of `dir` (one segment; the
    /// bytes may differ from the first copy, as a buggy or hostile sender's would).
    pub fn resend(&mut self, at: Duration, dir: Dir, data: &[u8]) {
        let me = dir.index();
        let len = data.len().min(SYNTHETIC_MSS);
        let saved = self.seq[me];
        self.seq[me] = saved.wrapping_sub(len as u32);
        self.push(at, dir, "PA", &data[..len]);
        self.data_segments += 1;
        self.seq[me] = saved;
    }

    /// Both sides close (FIN from `first`, then from the other side).
    pub fn close(&mut self, at: Duration, first: Dir) {
        let other = match first {
            Dir::ClientToServer => Dir::ServerToClient,
            Dir::ServerToClient => Dir::ClientToServer,
        };
        self.push(at, first, "FA", &[]);
        self.seq[first.index()] = self.seq[first.index()].wrapping_add(1);
        self.push(at, other, "FA", &[]);
        self.seq[other.index()] = self.seq[other.index()].wrapping_add(1);
        self.push(at, first, "A", &[]);
    }

    /// Takes the frames scripted so far (without the dropped data segments), so a long session can be
    /// written as it goes instead of held whole; later frames continue the same TCP sequence numbers.
    pub fn take_frames(&mut self) -> Vec<(Duration, Vec<u8>)> {
        let index = std::mem::take(&mut self.data_index);
        std::mem::take(&mut self.frames)
            .into_iter()
            .zip(index)
            .filter(|(_, i)| !i.is_some_and(|i| self.drop_segments.contains(&i)))
            .map(|(f, _)| f)
            .collect()
    }

    /// The frames to write (capture time, Ethernet frame), without the dropped data segments.
    pub fn frames(&self) -> impl Iterator<Item = &(Duration, Vec<u8>)> {
        self.frames
            .iter()
            .zip(&self.data_index)
            .filter(|(_, i)| !i.is_some_and(|i| self.drop_segments.contains(&i)))
            .map(|(f, _)| f)
    }
}

/// Link layers the writer can produce (the synthetic frames are Ethernet; the others are rewritten from it),
/// so the reader's link decoding can be tested on every type it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntheticLink {
    Ethernet,
    LinuxSll,
    LinuxSll2,
    /// BSD loopback, address family in little-endian (as written on x86).
    Null,
    RawIp,
}

impl SyntheticLink {
    fn datalink(self) -> DataLink {
        match self {
            SyntheticLink::Ethernet => DataLink::ETHERNET,
            SyntheticLink::LinuxSll => DataLink::LINUX_SLL,
            SyntheticLink::LinuxSll2 => DataLink::LINUX_SLL2,
            SyntheticLink::Null => DataLink::NULL,
            SyntheticLink::RawIp => DataLink::RAW,
        }
    }

    /// Rewrites an Ethernet II frame (14-byte header, IPv4 or IPv6) into this link type.
    pub fn rewrite(self, ethernet: &[u8]) -> Vec<u8> {
        let (head, ip) = ethernet.split_at(14.min(ethernet.len()));
        let ether_type = [head.get(12).copied().unwrap_or(8), head.get(13).copied().unwrap_or(0)];
        let mut out = Vec::with_capacity(ethernet.len() + 6);
        match self {
            SyntheticLink::Ethernet => return ethernet.to_vec(),
            SyntheticLink::LinuxSll => {
                // packet type 0 (to us), ARPHRD_LOOPBACK 772, address length 6, address, protocol.
                out.extend_from_slice(&[0, 0, 0x03, 0x04, 0, 6]);
                out.extend_from_slice(&head[6..12]);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ether_type);
            }
            SyntheticLink::LinuxSll2 => {
                // protocol, reserved, interface index, ARPHRD, packet type, address length, address (8).
                out.extend_from_slice(&ether_type);
                out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6]);
                out.extend_from_slice(&head[6..12]);
                out.extend_from_slice(&[0, 0]);
            }
            SyntheticLink::Null => {
                let af: u32 = if ether_type == [0x86, 0xDD] { 30 } else { 2 };
                out.extend_from_slice(&af.to_le_bytes());
            }
            SyntheticLink::RawIp => {}
        }
        out.extend_from_slice(ip);
        out
    }
}

/// Writes frames into a classic little-endian microsecond pcap.
pub struct CaptureWriter<W: std::io::Write> {
    inner: PcapWriter<W>,
}

impl<W: std::io::Write> CaptureWriter<W> {
    /// An Ethernet capture.
    pub fn new(out: W) -> Result<Self, pcap_file::PcapError> {
        Self::with_link(out, SyntheticLink::Ethernet)
    }

    pub fn with_link(out: W, link: SyntheticLink) -> Result<Self, pcap_file::PcapError> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: 262_144,
            datalink: link.datalink(),
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::Little,
        };
        Ok(CaptureWriter { inner: PcapWriter::with_header(out, header)? })
    }

    pub fn write_frame(&mut self, at: Duration, frame: &[u8]) -> Result<(), pcap_file::PcapError> {
        // Microsecond resolution: round the timestamp down so what is read back equals what was written.
        let at = Duration::from_micros(at.as_micros() as u64);
        self.inner.write_packet(&PcapPacket::new(at, frame.len() as u32, frame))?;
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.inner.into_writer()
    }
}

fn ordered<'s>(sessions: &[&'s SyntheticSession]) -> Vec<&'s (Duration, Vec<u8>)> {
    let mut frames: Vec<&(Duration, Vec<u8>)> = sessions.iter().flat_map(|s| s.frames()).collect();
    // Stable: the frames of one instant keep their script order.
    frames.sort_by_key(|(at, _)| *at);
    frames
}

/// Writes whole sessions as one classic pcap file in memory, frames ordered by time.
pub fn sessions_to_pcap(sessions: &[&SyntheticSession], link: SyntheticLink) -> Vec<u8> {
    let mut w =
        CaptureWriter::with_link(Vec::new(), link).expect("writing a pcap header into a Vec cannot fail");
    for (at, frame) in ordered(sessions) {
        let frame = link.rewrite(frame);
        w.write_frame(*at, &frame).expect("writing a frame under the snaplen into a Vec cannot fail");
    }
    w.into_inner()
}

/// The same as a pcapng file: one Ethernet interface with `if_tsresol` = 10^-9 (nanosecond timestamps, not
/// pcapng's default microseconds, so a reader that ignores the option gets the times wrong).
pub fn sessions_to_pcapng(sessions: &[&SyntheticSession]) -> Vec<u8> {
    let mut w = PcapNgWriter::new(Vec::new()).expect("writing a section header into a Vec cannot fail");
    let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 262_144);
    idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
    w.write_pcapng_block(idb).expect("writing into a Vec cannot fail");
    for (at, frame) in ordered(sessions) {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            // pcap-file writes the duration's nanoseconds as the raw 64-bit timestamp: with if_tsresol 9
            // they are nanoseconds indeed.
            timestamp: *at,
            original_len: frame.len() as u32,
            data: std::borrow::Cow::Borrowed(frame),
            options: Vec::new(),
        };
        w.write_pcapng_block(epb).expect("writing into a Vec cannot fail");
    }
    w.into_inner()
}
