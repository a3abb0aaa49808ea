//! HTTP/1.1 on the WebSocket port (RFC 6455 section 4; ACIP-SPEC.md 6.2): the upgrade, answered with
//! subprotocol `acip` when the client asks for it (and accepted when it does not), plus HEAD's
//! `GET /health` and `GET /stats` JSON endpoints; everything else is 404. The request head is bounded in
//! size ([`MAX_HTTP_HEAD`]) and time ([`HTTP_HEAD_TIMEOUT`]), so a slowloris client is cut off.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{HTTP_HEAD_TIMEOUT, MAX_HTTP_HEAD};

/// The protocol version HEAD's `/health` reports (ACIP-SPEC.md 6.2).
pub const HEALTH_PROTOCOL: &str = "2.2.1";
/// Headers parsed per request.
const MAX_HEADERS: usize = 64;

/// The parts of a request head the server uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub upgrade_websocket: bool,
    pub connection_upgrade: bool,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`.
    pub protocols: Vec<String>,
}

/// Why no usable request head arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Connection closed before the head was complete.
    Eof,
    /// The head did not complete within [`HTTP_HEAD_TIMEOUT`] (slowloris).
    Timeout,
    /// Over [`MAX_HTTP_HEAD`] bytes.
    TooLarge,
    /// Not HTTP/1.x.
    Malformed(String),
    Io(String),
}

impl HeadError {
    pub fn kind(&self) -> &'static str {
        match self {
            HeadError::Eof => "http_eof",
            HeadError::Timeout => "http_head_timeout",
            HeadError::TooLarge => "http_head_too_large",
            HeadError::Malformed(_) => "http_malformed",
            HeadError::Io(_) => "io",
        }
    }
}

/// Reads a request head. Returns it and the bytes that followed it (the first WebSocket frames).
pub(crate) async fn read_head(stream: &mut TcpStream) -> Result<(Request, Vec<u8>), HeadError> {
    let deadline = Instant::now() + HTTP_HEAD_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = match tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await {
            Err(_) => return Err(HeadError::Timeout),
            Ok(Err(e)) => return Err(HeadError::Io(e.to_string())),
            Ok(Ok(0)) => return Err(HeadError::Eof),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some((req, used)) = parse(&buf)? {
            return Ok((req, buf.split_off(used)));
        }
        if buf.len() > MAX_HTTP_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Parses a complete head; `None` if more bytes are needed.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    if used > MAX_HTTP_HEAD {
        return Err(HeadError::TooLarge);
    }
    let mut out = Request {
        method: req.method.unwrap_or("").to_string(),
        path: req.path.unwrap_or("").to_string(),
        ..Request::default()
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        let tokens = || value.split(',').map(|t| t.trim().to_ascii_lowercase());
        match h.name.to_ascii_lowercase().as_str() {
            "upgrade" => out.upgrade_websocket |= tokens().any(|t| t == "websocket"),
            "connection" => out.connection_upgrade |= tokens().any(|t| t == "upgrade"),
            "sec-websocket-key" => out.ws_key = Some(value.clone()),
            "sec-websocket-version" => out.ws_version = Some(value.clone()),
            "sec-websocket-protocol" => {
                out.protocols.extend(value.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
            }
            _ => {}
        }
    }
    Ok(Some((out, used)))
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A valid WebSocket upgrade; `acip`: answer with the `acip` subprotocol.
    Upgrade {
        accept: String,
        acip: bool,
    },
    Health,
    Stats,
    /// Any other answer: status line and body.
    Reply {
        status: &'static str,
        body: String,
        extra: &'static str,
    },
}

pub(crate) fn route(req: &Request) -> Route {
    if req.method != "GET" {
        return Route::Reply {
            status: "405 Method Not Allowed",
            body: "only GET\n".into(),
            extra: "Allow: GET\r\n",
        };
    }
    if req.upgrade_websocket {
        if !req.connection_upgrade {
            return bad("Connection header lacks \"Upgrade\"");
        }
        if req.ws_version.as_deref() != Some("13") {
            return Route::Reply {
                status: "426 Upgrade Required",
                body: "Sec-WebSocket-Version must be 13\n".into(),
                extra: "Sec-WebSocket-Version: 13\r\n",
            };
        }
        let Some(key) = req.ws_key.as_deref().filter(|k| !k.is_empty()) else {
            return bad("missing Sec-WebSocket-Key");
        };
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        return Route::Upgrade { accept, acip: req.protocols.iter().any(|p| p == "acip") };
    }
    match req.path.split('?').next().unwrap_or("") {
        "/health" => Route::Health,
        "/stats" => Route::Stats,
        _ => Route::Reply { status: "404 Not Found", body: "not found\n".into(), extra: "" },
    }
}

fn bad(why: &str) -> Route {
    Route::Reply { status: "400 Bad Request", body: format!("{why}\n"), extra: "" }
}

/// The 101 response.
pub(crate) fn upgrade_response(accept: &str, acip: bool) -> String {
    let proto = if acip { "Sec-WebSocket-Protocol: acip\r\n" } else { "" };
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{proto}\r\n"
    )
}

/// Writes a complete response and closes the write side.
pub(crate) async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    extra: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The `/health` body.
pub(crate) fn health_json() -> String {
    serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": HEALTH_PROTOCOL,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str =
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Protocol: chat, acip\r\n\r\n";

    #[test]
    fn upgrade_with_acip_subprotocol() {
        let mut bytes = UPGRADE.as_bytes().to_vec();
        bytes.extend_from_slice(&[0x82, 0x80]);
        let (req, used) = parse(&bytes).unwrap().unwrap();
        assert_eq!(&bytes[used..], &[0x82, 0x80]);
        // RFC 6455 section 1.3's example key and answer.
        let accept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string();
        assert_eq!(route(&req), Route::Upgrade { accept, acip: true });
    }

    #[test]
    fn partial_heads_wait_and_other_paths_are_404() {
        assert_eq!(parse(&UPGRADE.as_bytes()[..40]).unwrap(), None);
        let (req, _) = parse(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert_eq!(route(&req), Route::Health);
        let (req, _) = parse(b"GET /nope HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert!(matches!(route(&req), Route::Reply { status: "404 Not Found", .. }));
        let (req, _) =
            parse(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").unwrap().unwrap();
        assert!(matches!(route(&req), Route::Reply { status: "426 Upgrade Required", .. }));
        assert!(parse(b"\x00\x01garbage\r\n\r\n").is_err());
    }
}
