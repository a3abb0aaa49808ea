//! Headless Chromium and a minimal Chrome DevTools Protocol client over the workspace's tokio-tungstenite
//! and serde_json: enough to open a page, evaluate JavaScript (awaiting promises), receive binding calls
//! from the page and take a screenshot. The browser is found on `CHROME` or `PATH`; nothing is downloaded.
//!
//! Flattened sessions: one browser-level socket; commands for the page carry its `sessionId`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Names tried on `PATH` when `CHROME` is not set.
pub const CANDIDATES: &[&str] =
    &["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"];
/// How long the browser may take to print its DevTools address.
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on any one DevTools command that does not say otherwise.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the browser's stderr kept for error messages.
const STDERR_TAIL: usize = 40;

/// Why the browser could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    #[error("no Chromium found: set CHROME or put one of {CANDIDATES:?} on PATH (Debian: apt-get install chromium)")]
    NotFound,
    #[error("starting {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("the browser did not print its DevTools address within {secs} s; its stderr ends with:\n{tail}")]
    NoDevTools { secs: u64, tail: String },
    #[error("DevTools connection: {0}")]
    Socket(String),
    #[error("DevTools {method}: {message}")]
    Command { method: String, message: String },
    #[error("DevTools {method}: no answer within {secs} s")]
    Timeout { method: String, secs: u64 },
    #[error("JavaScript exception: {0}")]
    Exception(String),
}

/// The browser to launch: `CHROME` if set, else the first of [`CANDIDATES`] on `PATH`.
pub fn find_chrome() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROME").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.components().count() > 1 { p.is_file().then_some(p) } else { which(&p) };
    }
    CANDIDATES.iter().find_map(|c| which(Path::new(c)))
}

fn which(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A fresh profile directory, removed when dropped.
struct Profile(PathBuf);

impl Profile {
    fn create() -> std::io::Result<Profile> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "harness-browser-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Profile(dir))
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// The DevTools socket: commands by id, events on a channel.
struct Connection {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
}

impl Connection {
    async fn open(url: &str) -> Result<Connection, CdpError> {
        // Screenshots and evaluation results can be megabytes.
        let config =
            WebSocketConfig::default().max_message_size(Some(256 << 20)).max_frame_size(Some(256 << 20));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| CdpError::Socket(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let pending: Pending = Arc::default();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let p = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    let answer = match v.get("error") {
                        Some(e) => {
                            Err(e.get("message").and_then(Value::as_str).unwrap_or("error").to_string())
                        }
                        None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    if let Some(tx) = p.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                        let _ = tx.send(answer);
                    }
                } else if v.get("method").is_some() {
                    let _ = ev_tx.send(v);
                }
            }
            // The socket is gone: every waiting command fails now rather than at its timeout.
            p.lock().unwrap_or_else(|e| e.into_inner()).clear();
        });
        Ok(Connection { out, pending, next_id: AtomicU64::new(1), events: tokio::sync::Mutex::new(ev_rx) })
    }

    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = Value::String(s.to_string());
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        let cmd_err = |message: String| CdpError::Command { method: method.to_string(), message };
        self.out
            .send(Message::text(msg.to_string()))
            .map_err(|_| cmd_err("DevTools socket closed".into()))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r.map_err(cmd_err),
            Ok(Err(_)) => Err(cmd_err("DevTools socket closed".into())),
            Err(_) => {
                self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                Err(CdpError::Timeout { method: method.to_string(), secs: timeout.as_secs() })
            }
        }
    }
}

/// A running headless Chromium.
pub struct Browser {
    child: Child,
    conn: Arc<Connection>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    version: String,
    _profile: Profile,
}

/// The fixed command line (ACIP needs no GPU, no sandbox as root, and no outgoing connections of the
/// browser's own).
pub fn chrome_flags(profile: &Path, window: (u32, u32)) -> Vec<String> {
    let mut f: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        "--mute-audio",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    f.push(format!("--user-data-dir={}", profile.display()));
    f.push(format!("--window-size={},{}", window.0, window.1));
    f.push("about:blank".into());
    f
}

impl Browser {
    /// Starts the browser found by [`find_chrome`] and connects to its DevTools socket.
    pub async fn launch(window: (u32, u32)) -> Result<Browser, CdpError> {
        let exe = find_chrome().ok_or(CdpError::NotFound)?;
        let profile =
            Profile::create().map_err(|e| CdpError::Spawn { exe: exe.display().to_string(), source: e })?;
        let mut child = Command::new(&exe)
            .args(chrome_flags(&profile.0, window))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CdpError::Spawn { exe: exe.display().to_string(), source: e })?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let (url_tx, url_rx) = oneshot::channel();
        let t = tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut url_tx = Some(url_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(tx) = url_tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
                let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        let no_devtools = |tail: &Arc<Mutex<VecDeque<String>>>| CdpError::NoDevTools {
            secs: LAUNCH_TIMEOUT.as_secs(),
            tail: tail
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let url = match tokio::time::timeout(LAUNCH_TIMEOUT, url_rx).await {
            Ok(Ok(url)) => url,
            _ => {
                let _ = child.kill().await;
                return Err(no_devtools(&tail));
            }
        };
        let conn = Arc::new(Connection::open(&url).await?);
        let version = conn
            .call(None, "Browser.getVersion", json!({}), CALL_TIMEOUT)
            .await?
            .get("product")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        Ok(Browser { child, conn, stderr_tail: tail, version, _profile: profile })
    }

    /// The browser's product string, e.g. `Chrome/156.0.8078.114` (headless reports `HeadlessChrome/...`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The last lines the browser wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Opens a new tab at `url`, waits for its load event, and exposes `window.acipEvent(json)` to it.
    pub async fn open(&self, url: &str, viewport: (u32, u32)) -> Result<Page, CdpError> {
        let c = &self.conn;
        let target =
            c.call(None, "Target.createTarget", json!({ "url": "about:blank" }), CALL_TIMEOUT).await?;
        let target_id = str_field(&target, "targetId", "Target.createTarget")?;
        let attached = c
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
                CALL_TIMEOUT,
            )
            .await?;
        let session = str_field(&attached, "sessionId", "Target.attachToTarget")?;
        let page = Page { conn: c.clone(), session };
        page.call("Page.enable", json!({})).await?;
        page.call("Runtime.enable", json!({})).await?;
        page.call("Runtime.addBinding", json!({ "name": "acipEvent" })).await?;
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": viewport.0, "height": viewport.1, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        let nav = page.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(e) = nav.get("errorText").and_then(Value::as_str) {
            return Err(CdpError::Command { method: "Page.navigate".into(), message: format!("{url}: {e}") });
        }
        page.next_event(|m, _| m == "Page.loadEventFired", CALL_TIMEOUT).await?;
        Ok(page)
    }

    /// Closes the browser (Browser.close, then waits for the process, bounded; kills it if it lingers).
    pub async fn close(mut self) {
        let _ = self.conn.call(None, "Browser.close", json!({}), Duration::from_secs(5)).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

fn str_field(v: &Value, field: &str, method: &str) -> Result<String, CdpError> {
    v.get(field).and_then(Value::as_str).map(str::to_string).ok_or_else(|| CdpError::Command {
        method: method.into(),
        message: format!("answer without {field}: {v}"),
    })
}

/// One tab, attached with a flattened session.
pub struct Page {
    conn: Arc<Connection>,
    session: String,
}

impl Page {
    /// A DevTools command for this tab.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CdpError> {
        self.conn.call(Some(&self.session), method, params, CALL_TIMEOUT).await
    }

    /// Evaluates `expression` (awaiting a promise it returns) and returns its value as JSON.
    pub async fn evaluate(&self, expression: &str, timeout: Duration) -> Result<Value, CdpError> {
        let r = self
            .conn
            .call(
                Some(&self.session),
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
                timeout,
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex
                .pointer("/exception/description")
                .and_then(Value::as_str)
                .or_else(|| ex.get("text").and_then(Value::as_str))
                .unwrap_or("exception");
            return Err(CdpError::Exception(text.to_string()));
        }
        Ok(r.pointer("/result/value").cloned().unwrap_or(Value::Null))
    }

    /// The next event of this tab whose method and params satisfy `want`, within `timeout`.
    pub async fn next_event(
        &self,
        mut want: impl FnMut(&str, &Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        let mut events = self.conn.events.lock().await;
        let wait = async {
            while let Some(ev) = events.recv().await {
                let method = ev.get("method").and_then(Value::as_str).unwrap_or("");
                let ours = ev.get("sessionId").and_then(Value::as_str) == Some(self.session.as_str());
                let params = ev.get("params").cloned().unwrap_or(Value::Null);
                if ours && want(method, &params) {
                    return Ok(params);
                }
            }
            Err(CdpError::Socket("DevTools socket closed".into()))
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => {
                Err(CdpError::Timeout { method: "waiting for an event".into(), secs: timeout.as_secs() })
            }
        }
    }

    /// The next `window.acipEvent(json)` call of the page, parsed.
    pub async fn next_binding(&self, timeout: Duration) -> Result<Value, CdpError> {
        let p =
            self.next_event(|m, p| m == "Runtime.bindingCalled" && p["name"] == "acipEvent", timeout).await?;
        let payload = p.get("payload").and_then(Value::as_str).unwrap_or("null");
        serde_json::from_str(payload).map_err(|e| CdpError::Exception(format!("bad acipEvent payload: {e}")))
    }

    /// A PNG of the viewport.
    pub async fn screenshot_png(&self) -> Result<Vec<u8>, CdpError> {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" })).await?;
        let data = str_field(&r, "data", "Page.captureScreenshot")?;
        base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| CdpError::Command {
            method: "Page.captureScreenshot".into(),
            message: format!("bad base64: {e}"),
        })
    }
}
