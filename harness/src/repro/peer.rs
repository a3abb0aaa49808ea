//! The scenarios' WebSocket peer: the harness's one client driver ([`crate::peer::Peer`], over
//! `acip::conn`) as a plaintext client, plus the scenario steps (join, close) and hand-made frames written
//! exactly as a scenario wants them (including broken fragmentation) beside it.

use std::net::SocketAddr;
use std::time::Duration;

use acip::codec::payloads::{ClientCapabilities, ImageFrame, StreamStart};
use acip::conn::ConnConfig;
use acip::crypto::CryptoMode;
use acip::{Dialect, Packet, PacketType};

pub use crate::peer::{Peer as WsPeer, Seen, CONNECT_TIMEOUT};

impl WsPeer {
    /// TCP connect and the HTTP upgrade (subprotocol `acip`) as a plaintext client. Server-to-client
    /// traffic is read as one byte stream whatever the dialect (one packet per message is a special case of
    /// it), as every probe here did. `Err` says what the server answered instead.
    pub async fn ws_plain(addr: SocketAddr, mask: [u8; 4]) -> Result<WsPeer, String> {
        let mut config =
            ConnConfig::new(Dialect::Head, acip::Transport::WebSocket, u64::from(u32::from_be_bytes(mask)));
        config.handshake.mode = CryptoMode::None;
        WsPeer::connect(&reference_client::Target::ws(addr), config).await
    }

    /// Sends one packet as a whole message.
    pub async fn send_packet(&mut self, p: &Packet) -> std::io::Result<()> {
        self.send(p.clone()).await
    }

    /// Plaintext join (ACIP-SPEC.md 7.3/7.4): CLIENT_CAPABILITIES and STREAM_START, then SERVER_STATE.
    pub async fn join(
        &mut self,
        dialect: Dialect,
        term: (u16, u16),
        fps: u8,
        wait: Duration,
    ) -> Result<(), Seen> {
        let caps = ClientCapabilities::new(dialect, term.0, term.1, fps).to_packet();
        let start = StreamStart::new(1).to_packet();
        for p in [caps, start] {
            if let Err(e) = self.send_packet(&p).await {
                // A server that refuses right after the upgrade (e.g. full: close 1013) may have closed
                // before our write; its close frame can still be read.
                return Err(match self.until_end(Duration::from_secs(1)).await {
                    Seen::Close { code, reason } => Seen::Close { code, reason },
                    _ => Seen::Eof(e.to_string()),
                });
            }
        }
        self.until(PacketType::SERVER_STATE, wait).await.map(|_| ())
    }

    /// Sends a close frame (1000) and waits for the server's answer.
    pub async fn close_normally(&mut self, wait: Duration) -> Seen {
        self.close(acip::ws::close_code::NORMAL, wait).await
    }
}

/// The upgrade request of a browser-like client asking for the `acip` subprotocol, for probes that write
/// it by hand and vanish before the answer.
pub fn upgrade_request(addr: SocketAddr) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: acip\r\n\r\n"
    )
}

/// An IMAGE_FRAME carrying test-pattern frame `seq` (`w`x`h` RGB24: 320x240 is the captures' 230,446
/// bytes on the wire, 640x480 the browser's 921,646).
pub fn pattern_frame(w: u16, h: u16, seq: u64, tag: u32) -> Packet {
    let mut pixels = Vec::new();
    let now_us =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros()
            as u64;
    // The pattern needs at least MIN_PIXELS; every caller passes a real frame size.
    if acip::pattern::render(w, h, seq, now_us, tag, &mut pixels).is_err() {
        pixels = vec![0; w as usize * h as usize * 3];
    }
    ImageFrame::rgb24(u32::from(w), u32::from(h), pixels).to_packet()
}

/// Parses `ws://host:port[/path]` (the only form the raw probes speak) into a socket address.
pub fn ws_target(url: &str) -> Result<SocketAddr, String> {
    match url.parse::<reference_client::Target>() {
        Ok(reference_client::Target::Ws { addr, .. }) => Ok(addr),
        Ok(reference_client::Target::Tcp(_)) => Err(format!("{url}: this probe needs a ws:// target")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_sized_frames() {
        assert_eq!(pattern_frame(320, 240, 0, 0).wire_len(), 230_446);
        assert_eq!(pattern_frame(640, 480, 0, 0).wire_len(), 921_646);
    }

    #[test]
    fn targets() {
        assert_eq!(ws_target("ws://127.0.0.1:9").unwrap(), "127.0.0.1:9".parse().unwrap());
        assert!(ws_target("tcp://127.0.0.1:9").is_err());
    }
}
