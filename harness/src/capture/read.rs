//! Classic pcap and pcapng records as [`Frame`]s, over a borrowed slice of the whole file (pcap-file's
//! slice parsers, so frame data is never copied).
//!
//! Lenient where captures are often odd and strict where a length would make us read past the data:
//! a record whose `orig_len` exceeds the snaplen is accepted (pcap-file's own check refuses it), pcapng
//! timestamps honour `if_tsresol` (pcap-file 2 assumes nanoseconds), and a record cut by the end of the
//! file ends the iteration with [`CaptureReader::end_note`] saying so instead of an error.

use std::time::Duration;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::{
    Block, ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, PACKET_BLOCK, SECTION_HEADER_BLOCK,
    SIMPLE_PACKET_BLOCK,
};
use pcap_file::pcapng::PcapNgParser;
use pcap_file::{DataLink, TsResolution};

/// The link layers the dissector understands (the rest are kept as `Other` and skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113), Linux cooked capture v1.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276), Linux cooked capture v2.
    LinuxSll2,
    /// LINKTYPE_NULL (0): BSD loopback, 4-byte address family in the capturing host's byte order.
    Null,
    /// LINKTYPE_LOOP (108): OpenBSD loopback, address family big-endian.
    Loop,
    /// LINKTYPE_RAW (101) and DLT_RAW (12/14): a bare IPv4 or IPv6 packet.
    RawIp,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// Anything else, with its number.
    Other(u32),
}

impl LinkType {
    fn from_datalink(d: DataLink) -> LinkType {
        match d {
            DataLink::ETHERNET => LinkType::Ethernet,
            DataLink::LINUX_SLL => LinkType::LinuxSll,
            DataLink::LINUX_SLL2 => LinkType::LinuxSll2,
            DataLink::NULL => LinkType::Null,
            DataLink::LOOP => LinkType::Loop,
            DataLink::RAW => LinkType::RawIp,
            DataLink::IPV4 => LinkType::Ipv4,
            DataLink::IPV6 => LinkType::Ipv6,
            other => match u32::from(other) {
                // DLT_RAW has other numbers on some BSDs.
                12 | 14 => LinkType::RawIp,
                n => LinkType::Other(n),
            },
        }
    }
}

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 1-based position in the file, as Wireshark numbers frames.
    pub number: u64,
    /// Capture time since the Unix epoch.
    pub ts: Duration,
    pub link: LinkType,
    /// The captured bytes (possibly fewer than `orig_len`: snaplen truncation).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub orig_len: u32,
}

/// Which container the file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureFormat {
    Pcap,
    Pcapng,
}

/// Why a file could not be opened as a capture at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("not a pcap or pcapng file (first bytes {0:02X?})")]
    NotACapture(Vec<u8>),
    #[error("bad {format:?} file header: {reason}")]
    BadHeader { format: CaptureFormat, reason: String },
}

/// pcapng interface: link type and timestamp resolution (`if_tsresol`, default 10^-6).
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    tsresol: u8,
}

enum Inner {
    Pcap(PcapParser),
    Pcapng { parser: PcapNgParser, interfaces: Vec<Interface> },
}

/// Iterates over the frames of a pcap or pcapng file held in memory.
pub struct CaptureReader<'a> {
    inner: Inner,
    rest: &'a [u8],
    number: u64,
    last_ts: Duration,
    end_note: Option<String>,
    done: bool,
}

/// pcapng magic of the Section Header Block type.
const PCAPNG_SHB: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];

impl<'a> CaptureReader<'a> {
    /// Opens `data` as a classic pcap (any byte order, micro- or nanosecond) or pcapng file.
    pub fn new(data: &'a [u8]) -> Result<Self, ReadError> {
        if data.len() < 4 {
            return Err(ReadError::NotACapture(data.to_vec()));
        }
        let (inner, rest) = if data[..4] == PCAPNG_SHB {
            let (rest, parser) = PcapNgParser::new(data)
                .map_err(|e| ReadError::BadHeader { format: CaptureFormat::Pcapng, reason: e.to_string() })?;
            (Inner::Pcapng { parser, interfaces: Vec::new() }, rest)
        } else {
            let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            if !matches!(magic, 0xA1B2_C3D4 | 0xD4C3_B2A1 | 0xA1B2_3C4D | 0x4D3C_B2A1) {
                return Err(ReadError::NotACapture(data[..4].to_vec()));
            }
            let (rest, parser) = PcapParser::new(data)
                .map_err(|e| ReadError::BadHeader { format: CaptureFormat::Pcap, reason: e.to_string() })?;
            (Inner::Pcap(parser), rest)
        };
        Ok(CaptureReader { inner, rest, number: 0, last_ts: Duration::ZERO, end_note: None, done: false })
    }

    pub fn format(&self) -> CaptureFormat {
        match self.inner {
            Inner::Pcap(_) => CaptureFormat::Pcap,
            Inner::Pcapng { .. } => CaptureFormat::Pcapng,
        }
    }

    /// The link type of a classic pcap file (pcapng has one per interface).
    pub fn pcap_link(&self) -> Option<LinkType> {
        match &self.inner {
            Inner::Pcap(p) => Some(LinkType::from_datalink(p.header().datalink)),
            Inner::Pcapng { .. } => None,
        }
    }

    /// After iteration: why it stopped early (a record cut by the end of the file, a corrupt block).
    pub fn end_note(&self) -> Option<&str> {
        self.end_note.as_deref()
    }

    fn stop(&mut self, note: String) -> Option<Frame<'a>> {
        self.done = true;
        self.end_note = Some(note);
        None
    }

    fn next_pcap(&mut self) -> Option<Frame<'a>> {
        let Inner::Pcap(parser) = &self.inner else { return None };
        let header = parser.header();
        match parser.next_raw_packet(self.rest) {
            Ok((rest, raw)) => {
                self.rest = rest;
                let nanos = match header.ts_resolution {
                    TsResolution::MicroSecond => u64::from(raw.ts_frac).saturating_mul(1000),
                    TsResolution::NanoSecond => u64::from(raw.ts_frac),
                };
                let ts = Duration::from_secs(u64::from(raw.ts_sec)) + Duration::from_nanos(nanos);
                let data = match raw.data {
                    std::borrow::Cow::Borrowed(d) => d,
                    // The slice parser always borrows; an owned buffer would outlive nothing here.
                    std::borrow::Cow::Owned(_) => return self.stop("unexpected owned record".into()),
                };
                self.number += 1;
                Some(Frame {
                    number: self.number,
                    ts,
                    link: LinkType::from_datalink(header.datalink),
                    data,
                    orig_len: raw.orig_len.max(data.len() as u32),
                })
            }
            Err(e) => {
                let note = if self.rest.len() < 16 {
                    format!("file ends {} bytes into a record header", self.rest.len())
                } else {
                    format!("record {} is cut by the end of the file ({e})", self.number + 1)
                };
                self.stop(note)
            }
        }
    }

    fn next_pcapng(&mut self) -> Option<Frame<'a>> {
        loop {
            if self.rest.is_empty() {
                self.done = true;
                return None;
            }
            let Inner::Pcapng { parser, interfaces } = &mut self.inner else { return None };
            let before = self.rest;
            let (rest, raw) = match parser.next_raw_block(before) {
                Ok(x) => x,
                Err(e) => {
                    let n = self.number;
                    return self.stop(format!("pcapng block after frame {n} unreadable: {e}"));
                }
            };
            self.rest = rest;
            let type_ = raw.type_;
            if type_ == SECTION_HEADER_BLOCK {
                interfaces.clear();
                continue;
            }
            let wanted =
                [INTERFACE_DESCRIPTION_BLOCK, ENHANCED_PACKET_BLOCK, SIMPLE_PACKET_BLOCK, PACKET_BLOCK];
            if !wanted.contains(&type_) {
                continue;
            }
            // Parse the same block again, typed this time (pcap-file's typed parse needs a byte-order type
            // from a crate we do not depend on; re-parsing a block already framed is cheap).
            let block = parser.next_block(before).map(|(_, b)| b);
            // A malformed block of a known kind is skipped: the next one may be fine.
            let Ok(block) = block else { continue };
            let (iface, ts_units, data, orig_len) = match block {
                Block::InterfaceDescription(idb) => {
                    let tsresol = idb
                        .options
                        .into_iter()
                        .find_map(|o| match o {
                            InterfaceDescriptionOption::IfTsResol(r) => Some(r),
                            _ => None,
                        })
                        .unwrap_or(6);
                    interfaces.push(Interface { link: LinkType::from_datalink(idb.linktype), tsresol });
                    continue;
                }
                Block::EnhancedPacket(epb) => {
                    // pcap-file stores the raw 64-bit timestamp units as nanoseconds; take them back.
                    let units = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                    (epb.interface_id as usize, Some(units), epb.data, epb.original_len)
                }
                Block::Packet(pb) => (pb.interface_id as usize, Some(pb.timestamp), pb.data, pb.original_len),
                Block::SimplePacket(spb) => (0, None, spb.data, spb.original_len),
                _ => continue,
            };
            let Some(iface) = interfaces.get(iface).copied() else { continue };
            let data = match data {
                std::borrow::Cow::Borrowed(d) => d,
                std::borrow::Cow::Owned(_) => continue,
            };
            let ts = ts_units.map(|u| units_to_duration(u, iface.tsresol)).unwrap_or(self.last_ts);
            self.last_ts = ts;
            self.number += 1;
            return Some(Frame {
                number: self.number,
                ts,
                link: iface.link,
                data,
                orig_len: orig_len.max(data.len() as u32),
            });
        }
    }
}

/// Converts pcapng timestamp units to a duration: `if_tsresol` bit 7 clear means 10^-v s, set means 2^-v s.
fn units_to_duration(units: u64, tsresol: u8) -> Duration {
    let v = u32::from(tsresol & 0x7F);
    let nanos: u128 = if tsresol & 0x80 == 0 {
        if v <= 9 {
            u128::from(units) * 10u128.pow(9 - v)
        } else {
            u128::from(units) / 10u128.pow((v - 9).min(38))
        }
    } else if v >= 127 {
        0
    } else {
        (u128::from(units) * 1_000_000_000) >> v
    };
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

impl<'a> Iterator for CaptureReader<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.done {
            return None;
        }
        match self.inner {
            Inner::Pcap(_) => {
                if self.rest.is_empty() {
                    self.done = true;
                    return None;
                }
                self.next_pcap()
            }
            Inner::Pcapng { .. } => self.next_pcapng(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_units() {
        assert_eq!(units_to_duration(1_500_000, 6), Duration::from_millis(1500));
        assert_eq!(units_to_duration(1_500_000_000, 9), Duration::from_millis(1500));
        assert_eq!(units_to_duration(3, 0x81), Duration::from_millis(1500));
        assert_eq!(units_to_duration(u64::MAX, 0xFF), Duration::ZERO);
    }

    #[test]
    fn garbage_is_not_a_capture() {
        assert!(matches!(CaptureReader::new(b"GET / HTTP/1.1"), Err(ReadError::NotACapture(_))));
        assert!(matches!(CaptureReader::new(b"ab"), Err(ReadError::NotACapture(_))));
    }
}
