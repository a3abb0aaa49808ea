//! From a captured frame to a TCP segment: link layer (Ethernet, Linux SLL/SLL2, BSD NULL/LOOP, raw IP),
//! then IPv4/IPv6 and TCP with etherparse's lax slicer, so a frame cut by the snaplen still yields its
//! headers and the bytes that were captured.

use std::net::{IpAddr, SocketAddr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use super::read::{Frame, LinkType};

/// One TCP segment as captured.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub ack_flag: bool,
    /// Advertised window, unscaled (0 means zero window whatever the scale).
    pub window: u16,
    /// The payload bytes that were captured.
    pub payload: &'a [u8],
    /// Payload bytes the segment carried on the wire but the capture did not keep (snaplen).
    pub missing: u32,
}

/// Why a frame carries no TCP segment we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("link type {0:?} is not supported")]
    UnsupportedLink(LinkType),
    #[error("frame too short for its link header")]
    ShortLink,
    #[error("not IPv4/IPv6")]
    NotIp,
    #[error("not TCP")]
    NotTcp,
    #[error("IP fragment (not reassembled)")]
    IpFragment,
    #[error("malformed: {0}")]
    Malformed(String),
}

/// BSD address family values for IPv4 and the several IPv6 ones (Linux/BSD/Darwin differ).
fn af_to_ether_type(af: u32) -> Option<EtherType> {
    match af {
        2 => Some(EtherType::IPV4),
        10 | 24 | 28 | 30 => Some(EtherType::IPV6),
        _ => None,
    }
}

/// Decodes a frame down to TCP.
pub fn decode_tcp<'a>(frame: &Frame<'a>) -> Result<TcpSegment<'a>, LinkError> {
    let data = frame.data;
    let sliced = match frame.link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(data).map_err(|_| LinkError::ShortLink)?,
        LinkType::LinuxSll => {
            // 16-byte header; protocol (ether type) at offset 14.
            let (head, rest) = split(data, 16)?;
            ether(u16::from_be_bytes([head[14], head[15]]), rest)
        }
        LinkType::LinuxSll2 => {
            // 20-byte header; protocol (ether type) at offset 0.
            let (head, rest) = split(data, 20)?;
            ether(u16::from_be_bytes([head[0], head[1]]), rest)
        }
        LinkType::Null | LinkType::Loop => {
            let (head, rest) = split(data, 4)?;
            let b = [head[0], head[1], head[2], head[3]];
            // NULL is in the capturing host's byte order: accept whichever reading is a known family.
            let af = if frame.link == LinkType::Loop {
                u32::from_be_bytes(b)
            } else if af_to_ether_type(u32::from_le_bytes(b)).is_some() {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            };
            let et = af_to_ether_type(af).ok_or(LinkError::NotIp)?;
            LaxSlicedPacket::from_ether_type(et, rest)
        }
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => {
            LaxSlicedPacket::from_ip(data).map_err(|e| LinkError::Malformed(e.to_string()))?
        }
        other @ LinkType::Other(_) => return Err(LinkError::UnsupportedLink(other)),
    };
    let net = sliced.net.as_ref().ok_or(LinkError::NotIp)?;
    let (src_ip, dst_ip, ip_payload) = match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), v4.payload())
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), v6.payload())
        }
    };
    if ip_payload.fragmented {
        return Err(LinkError::IpFragment);
    }
    let tcp = match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => t,
        Some(_) => return Err(LinkError::NotTcp),
        None => {
            if ip_payload.ip_number != etherparse::IpNumber::TCP {
                return Err(LinkError::NotTcp);
            }
            let reason = sliced.stop_err.as_ref().map(|(e, _)| e.to_string()).unwrap_or_default();
            return Err(LinkError::Malformed(format!("TCP header: {reason}")));
        }
    };
    // A frame cut short by the snaplen: the bytes past the capture still occupied sequence space.
    let missing = if ip_payload.incomplete { frame.orig_len.saturating_sub(data.len() as u32) } else { 0 };
    Ok(TcpSegment {
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        ack_flag: tcp.ack(),
        window: tcp.window_size(),
        payload: tcp.payload(),
        missing: missing.min(u32::from(u16::MAX)),
    })
}

fn split(data: &[u8], n: usize) -> Result<(&[u8], &[u8]), LinkError> {
    if data.len() < n {
        return Err(LinkError::ShortLink);
    }
    Ok(data.split_at(n))
}

fn ether(ether_type: u16, rest: &[u8]) -> LaxSlicedPacket<'_> {
    LaxSlicedPacket::from_ether_type(EtherType(ether_type), rest)
}
