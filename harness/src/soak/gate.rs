//! The start gate of a sharded soak (`harness start-gate`), and the shard's side of it (`--wait-start`).
//!
//! Shards connect their clients, then long-poll `GET /start?shard=I`; the gate holds every such request
//! until it is released, by one `POST /release` or by itself once `--expect N` distinct shards wait, and
//! then answers all of them with the same start instant (release time + `--lead`, UNIX milliseconds), as
//! k6-operator's paused runners are started together. `GET /status` shows who waits. HTTP/1.1 with
//! `Connection: close`, parsed by `httparse`; every request is bounded in size and in time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::shard::unix_ms;

/// Largest request or response head (request line or status line plus headers) either side reads.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Largest response body the shard side reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long the gate waits for a request head once a connection is open.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Most shards the gate keeps track of (distinct `shard=` values).
pub const MAX_WAITERS: usize = super::shard::MAX_SHARDS as usize;
/// Default delay between the release and the common start: time for every held request to be answered
/// and for every shard to arm its schedule.
pub const DEFAULT_LEAD: Duration = Duration::from_secs(2);
/// Pause before a shard asks again after the gate could not be reached (it may not be up yet).
pub const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Arguments of `harness start-gate`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free one; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Release on its own once this many distinct shards wait (without it: only POST /release releases).
    #[arg(long, value_name = "N")]
    pub expect: Option<u32>,
    /// Time from the release to the common start.
    #[arg(long, default_value = "2s", value_parser = acip::cli::parse_duration)]
    pub lead: Duration,
    /// Exit this long after the release (the answers are out); without it the gate serves until killed.
    #[arg(long, value_parser = acip::cli::parse_duration, value_name = "DURATION")]
    pub linger: Option<Duration>,
}

/// What `GET /start` answers, and `POST /release` / `GET /status` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateState {
    pub released: bool,
    /// The common start, UNIX milliseconds, once released.
    pub start_unix_ms: Option<u64>,
    /// Shards that asked for the start (their `shard=` values), ascending.
    pub waiting: Vec<u32>,
    pub expect: Option<u32>,
}

struct Shared {
    state: Mutex<GateState>,
    released: watch::Sender<Option<u64>>,
    /// How many distinct shards wait (for [`Gate::waiting_at_least`]).
    arrivals: watch::Sender<usize>,
    lead: Duration,
}

impl Shared {
    fn snapshot(&self) -> GateState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Releases (once): the start is now + lead. Returns the state after.
    fn release(&self) -> GateState {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !s.released {
            let start = unix_ms(SystemTime::now()) + self.lead.as_millis() as u64;
            s.released = true;
            s.start_unix_ms = Some(start);
            self.released.send_replace(Some(start));
        }
        s.clone()
    }

    /// Records a waiting shard; releases when the expected number is reached.
    fn arrive(&self, shard: Option<u32>) {
        let full = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = shard {
                if !s.waiting.contains(&i) && s.waiting.len() < MAX_WAITERS {
                    s.waiting.push(i);
                    s.waiting.sort_unstable();
                }
            }
            self.arrivals.send_replace(s.waiting.len());
            !s.released && s.expect.is_some_and(|n| s.waiting.len() >= n as usize)
        };
        if full {
            self.release();
        }
    }
}

/// A running start gate.
pub struct Gate {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    /// Binds and serves in the background.
    pub async fn start(listen: SocketAddr, expect: Option<u32>, lead: Duration) -> std::io::Result<Gate> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (released, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            state: Mutex::new(GateState {
                released: false,
                start_unix_ms: None,
                waiting: Vec::new(),
                expect,
            }),
            released,
            arrivals: watch::channel(0).0,
            lead,
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        Ok(Gate { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL shards give to `--wait-start` (without the `?shard=` query).
    pub fn start_url(&self) -> String {
        format!("http://{}/start", self.addr)
    }

    pub fn state(&self) -> GateState {
        self.shared.snapshot()
    }

    /// Releases the shards (as `POST /release`).
    pub fn release(&self) -> GateState {
        self.shared.release()
    }

    /// Waits until at least `n` distinct shards wait at the gate.
    pub async fn waiting_at_least(&self, n: usize) {
        let _ = self.shared.arrivals.subscribe().wait_for(|&w| w >= n).await;
    }

    /// Waits until the gate has been released.
    pub async fn released(&self) -> u64 {
        let mut rx = self.shared.released.subscribe();
        let start = rx.wait_for(Option::is_some).await.map(|v| *v);
        start.ok().flatten().unwrap_or_default()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection: one request, one answer, close.
async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let head =
        match tokio::time::timeout(HEAD_TIMEOUT, crate::http::read_head(&mut stream, MAX_HEAD_BYTES)).await {
            Ok(Ok(h)) => h,
            Ok(Err(why)) => return respond(&mut stream, 400, &serde_json::json!({ "error": why })).await,
            Err(_) => return,
        };
    let (method, target) = match crate::http::request_line(&head) {
        Ok(line) => line,
        Err(why) => return respond(&mut stream, 400, &serde_json::json!({ "error": why })).await,
    };
    let (method, target) = (method.as_str(), target.as_str());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/start") => {
            let shard = match shard_of(query) {
                Ok(s) => s,
                Err(why) => return respond(&mut stream, 400, &serde_json::json!({ "error": why })).await,
            };
            let mut rx = shared.released.subscribe();
            shared.arrive(shard);
            // Held until the release; a shard that gives up simply closes, and asks again later.
            let _ = rx.wait_for(Option::is_some).await;
            respond(&mut stream, 200, &shared.snapshot()).await
        }
        ("POST", "/release") => respond(&mut stream, 200, &shared.release()).await,
        ("GET", "/status") => respond(&mut stream, 200, &shared.snapshot()).await,
        ("GET", _) | ("POST", _) => {
            respond(&mut stream, 404, &serde_json::json!({ "error": format!("no such path: {path}") })).await
        }
        _ => respond(&mut stream, 405, &serde_json::json!({ "error": format!("method {method}") })).await,
    }
}

/// `shard=I` from a query string (absent: an anonymous waiter, not counted towards `--expect`).
fn shard_of(query: &str) -> Result<Option<u32>, String> {
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("shard=") {
            return v.parse::<u32>().map(Some).map_err(|_| format!("shard={v:?} is not a shard number"));
        }
    }
    Ok(None)
}

async fn respond(stream: &mut TcpStream, status: u16, body: &impl Serialize) {
    let body = serde_json::to_string(body).unwrap_or_default();
    let status = match status {
        200 => "200 OK",
        400 => "400 Bad Request",
        404 => "404 Not Found",
        _ => "405 Method Not Allowed",
    };
    let _ = crate::http::respond(stream, status, "application/json", body.as_bytes()).await;
}

/// `harness start-gate`: serves until killed (or `--linger` after the release).
pub fn run(args: Args) -> crate::Result<std::process::ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::io("starting the tokio runtime", e))?;
    rt.block_on(async {
        let gate = Gate::start(args.listen, args.expect, args.lead)
            .await
            .map_err(|e| crate::Error::io(format!("binding the start gate to {}", args.listen), e))?;
        println!("listening on {}", gate.addr());
        let start = gate.released().await;
        println!("released: common start at UNIX ms {start}; shards waiting: {:?}", gate.state().waiting);
        match args.linger {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
        Ok(std::process::ExitCode::SUCCESS)
    })
}

/// A parsed `http://HOST:PORT/PATH?QUERY` URL (the only form `--wait-start` takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub authority: String,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl std::str::FromStr for HttpUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest =
            s.strip_prefix("http://").ok_or_else(|| format!("{s:?}: expected http://HOST:PORT/PATH"))?;
        let (authority, target) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{s:?}: expected http://HOST:PORT/PATH"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpUrl { authority, target: target.to_string() })
    }
}

/// The shard side: asks the gate at `url` for the common start, waiting as long as it holds the request,
/// and asking again (after [`RETRY_PAUSE`]) when it cannot be reached, for at most `limit` in all.
pub async fn wait_start(url: &HttpUrl, limit: Duration) -> crate::Result<u64> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_error = String::from("no answer");
    loop {
        let attempt = tokio::time::timeout_at(deadline, ask(url)).await;
        match attempt {
            Ok(Ok(state)) => {
                return state.start_unix_ms.ok_or_else(|| crate::Error::Input {
                    path: format!("http://{}{}", url.authority, url.target),
                    reason: "the gate answered without a start time".into(),
                })
            }
            Ok(Err(Ask::Refused(why))) => {
                return Err(crate::Error::Input {
                    path: format!("http://{}{}", url.authority, url.target),
                    reason: why,
                })
            }
            Ok(Err(Ask::Unreachable(why))) => last_error = why,
            Err(_) => break,
        }
        if tokio::time::Instant::now() + RETRY_PAUSE >= deadline {
            break;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    Err(crate::Error::Unreachable {
        target: format!("http://{}{}", url.authority, url.target),
        reason: format!("no start from the gate within {limit:?} (last: {last_error})"),
    })
}

enum Ask {
    /// Worth asking again (not listening yet, connection cut).
    Unreachable(String),
    /// The gate answered, but not with a start.
    Refused(String),
}

async fn ask(url: &HttpUrl) -> Result<GateState, Ask> {
    let mut s = TcpStream::connect(&url.authority).await.map_err(|e| Ask::Unreachable(e.to_string()))?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        url.target, url.authority
    );
    s.write_all(req.as_bytes()).await.map_err(|e| Ask::Unreachable(e.to_string()))?;
    let mut buf = Vec::new();
    let mut limited = (&mut s).take((MAX_HEAD_BYTES + MAX_BODY_BYTES) as u64 + 1);
    limited.read_to_end(&mut buf).await.map_err(|e| Ask::Unreachable(e.to_string()))?;
    if buf.is_empty() {
        return Err(Ask::Unreachable("connection closed without an answer".into()));
    }
    if buf.len() > MAX_HEAD_BYTES + MAX_BODY_BYTES {
        return Err(Ask::Refused(format!("answer over {} bytes", MAX_HEAD_BYTES + MAX_BODY_BYTES)));
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let body_at = match resp.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(Ask::Refused("not an HTTP answer".into())),
    };
    let status = resp.code.unwrap_or(0);
    let body = String::from_utf8_lossy(&buf[body_at..]).into_owned();
    if status != 200 {
        return Err(Ask::Refused(format!("HTTP {status}: {}", body.trim())));
    }
    serde_json::from_str(&body)
        .map_err(|e| Ask::Refused(format!("answer is not the gate's JSON ({e}): {body}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gate_urls() {
        let u: HttpUrl = "http://gate:8080/start?shard=3".parse().unwrap();
        assert_eq!((u.authority.as_str(), u.target.as_str()), ("gate:8080", "/start?shard=3"));
        let u: HttpUrl = "http://gate".parse().unwrap();
        assert_eq!((u.authority.as_str(), u.target.as_str()), ("gate:80", "/"));
        let u: HttpUrl = "http://[::1]:9/start".parse().unwrap();
        assert_eq!(u.authority, "[::1]:9");
        assert!("https://gate/start".parse::<HttpUrl>().is_err());
        assert!("http:///start".parse::<HttpUrl>().is_err());
        assert_eq!(shard_of("shard=2&x=1"), Ok(Some(2)));
        assert_eq!(shard_of(""), Ok(None));
        assert!(shard_of("shard=two").is_err());
    }

    /// Real sockets on loopback: four shards held until the fourth arrives, all given the same start; a
    /// late shard gets the same answer; `POST /release` releases a gate without `--expect`.
    #[tokio::test]
    async fn holds_every_shard_until_the_expected_number_then_answers_one_start() {
        let gate =
            Gate::start("127.0.0.1:0".parse().unwrap(), Some(4), Duration::from_millis(500)).await.unwrap();
        let base = gate.start_url();
        let mut waiting = Vec::new();
        for i in 0..3 {
            let url: HttpUrl = format!("{base}?shard={i}").parse().unwrap();
            waiting.push(tokio::spawn(async move { wait_start(&url, Duration::from_secs(30)).await }));
        }
        // Three shards wait (seen by the gate) and none is answered yet.
        gate.waiting_at_least(3).await;
        assert!(!gate.state().released);
        assert!(waiting.iter().all(|t| !t.is_finished()));
        // A repeated shard number does not count twice.
        let again: HttpUrl = format!("{base}?shard=0").parse().unwrap();
        let again = tokio::spawn(async move { wait_start(&again, Duration::from_secs(30)).await });
        let last: HttpUrl = format!("{base}?shard=3").parse().unwrap();
        let before = unix_ms(SystemTime::now());
        let start = wait_start(&last, Duration::from_secs(30)).await.unwrap();
        assert!(start >= before + 500, "start {start} is release + lead");
        for t in waiting {
            assert_eq!(t.await.unwrap().unwrap(), start);
        }
        assert_eq!(again.await.unwrap().unwrap(), start);
        assert_eq!(gate.state().waiting, vec![0, 1, 2, 3]);
        // A late shard is told the same start.
        let late: HttpUrl = format!("{base}?shard=9").parse().unwrap();
        assert_eq!(wait_start(&late, Duration::from_secs(5)).await.unwrap(), start);

        let manual = Gate::start("127.0.0.1:0".parse().unwrap(), None, Duration::ZERO).await.unwrap();
        let url: HttpUrl = format!("{}?shard=0", manual.start_url()).parse().unwrap();
        let held = tokio::spawn(async move { wait_start(&url, Duration::from_secs(30)).await });
        let mut s = TcpStream::connect(manual.addr()).await.unwrap();
        s.write_all(b"POST /release HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let released: GateState = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(held.await.unwrap().unwrap(), released.start_unix_ms.unwrap());
    }

    #[tokio::test]
    async fn bad_requests_get_errors_and_an_absent_gate_times_out() {
        let gate = Gate::start("127.0.0.1:0".parse().unwrap(), None, Duration::ZERO).await.unwrap();
        let addr = gate.addr();
        let ask_raw = |req: Vec<u8>| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(&req).await;
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        };
        let a = ask_raw(b"GET /start?shard=x HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(a.starts_with("HTTP/1.1 400") && a.contains("not a shard number"), "{a}");
        let a = ask_raw(b"GET /nope HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(a.starts_with("HTTP/1.1 404"), "{a}");
        let a = ask_raw(b"DELETE /start HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(a.starts_with("HTTP/1.1 405"), "{a}");
        // One byte over the limit and no end of head: refused once every byte is read.
        let mut huge = b"GET /status HTTP/1.1\r\n".to_vec();
        huge.resize(MAX_HEAD_BYTES + 1, b'a');
        let a = ask_raw(huge).await;
        assert!(a.starts_with("HTTP/1.1 400") && a.contains("over"), "{a}");
        let a = ask_raw(b"GET /status HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(a.contains("\"released\":false"), "{a}");
        // The shard side refuses a 404 at once instead of retrying it.
        let url: HttpUrl = format!("http://{addr}/nope").parse().unwrap();
        let e = wait_start(&url, Duration::from_secs(30)).await.unwrap_err();
        assert!(e.to_string().contains("HTTP 404"), "{e}");

        // Nothing listening: bounded by the limit, then "unreachable".
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = free.local_addr().unwrap();
        drop(free);
        let url: HttpUrl = format!("http://{dead}/start").parse().unwrap();
        let e = wait_start(&url, Duration::from_millis(600)).await.unwrap_err();
        assert!(matches!(e, crate::Error::Unreachable { .. }), "{e}");
    }
}
