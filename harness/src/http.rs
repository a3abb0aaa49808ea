//! The little HTTP/1.1 the harness serves on loopback (the sharded soak's start gate, the browser's page):
//! one request head read within a bound, one answer, close. Heads are parsed by `httparse`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads up to the end of a request head (`\r\n\r\n`), refusing one over `max` bytes.
pub async fn read_head(stream: &mut TcpStream, max: usize) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the end of the request head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(buf);
        }
        if buf.len() > max {
            return Err(format!("request head over {max} bytes"));
        }
    }
}

/// The method and target (path and query) of a complete request head.
pub fn request_line(head: &[u8]) -> Result<(String, String), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            Ok((req.method.unwrap_or("").to_string(), req.path.unwrap_or("/").to_string()))
        }
        _ => Err("malformed request".into()),
    }
}

/// Writes one answer (`status` is e.g. `200 OK`) and closes the connection.
pub async fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}
