//! The page the browser opens, served on loopback: `GET /` (the page), `GET /acip.js` (the ACIP client
//! in JavaScript) and, when the server was given libsodium.js (`--encrypt`), `GET /sodium/libsodium.js`
//! and `/sodium/libsodium-wrappers.js`. Every request is bounded: 8 KiB of head, 5 s to send it, one
//! response, then close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::sodium::Sodium;

/// The page: a status line and the `<pre id="ascii">` the ASCII frames are rendered into.
pub const INDEX_HTML: &str = include_str!("../../assets/browser/index.html");
/// The ACIP client of the page (`window.Acip`).
pub const ACIP_JS: &str = include_str!("../../assets/browser/acip.js");

const MAX_HEAD: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A running page server; stops when dropped.
pub struct PageServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PageServer {
    /// Binds 127.0.0.1 on an ephemeral port and serves until dropped.
    pub async fn start() -> std::io::Result<PageServer> {
        PageServer::start_with(None).await
    }

    /// As [`PageServer::start`], also serving libsodium.js under `/sodium/` when given.
    pub async fn start_with(sodium: Option<Arc<Sodium>>) -> std::io::Result<PageServer> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sodium = sodium.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(HEAD_TIMEOUT, serve(stream, sodium.as_deref())).await;
                });
            }
        });
        Ok(PageServer { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, sodium: Option<&Sodium>) -> std::io::Result<()> {
    let parsed = match crate::http::read_head(&mut stream, MAX_HEAD).await {
        Ok(head) => crate::http::request_line(&head),
        Err(e) if e.starts_with("connection closed") => return Ok(()),
        Err(e) => Err(e),
    };
    let Ok((_, path)) = parsed else {
        return respond(&mut stream, "400 Bad Request", "text/plain", b"bad request\n").await;
    };
    let path = path.split('?').next().unwrap_or("/");
    match path {
        "/" | "/index.html" => {
            respond(&mut stream, "200 OK", "text/html; charset=utf-8", INDEX_HTML.as_bytes()).await
        }
        "/acip.js" => {
            respond(&mut stream, "200 OK", "text/javascript; charset=utf-8", ACIP_JS.as_bytes()).await
        }
        _ => match path.strip_prefix("/sodium/").and_then(|name| sodium?.file(name)) {
            Some(body) => respond(&mut stream, "200 OK", "text/javascript; charset=utf-8", body).await,
            None => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n").await,
        },
    }
}

async fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    crate::http::respond(stream, status, ctype, body).await
}
