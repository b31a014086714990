//! A headless Chromium driven over the DevTools protocol: just enough to load a page,
//! evaluate JavaScript in it, wait for conditions and take screenshots.
//!
//! Chromium runs in its own process group with a fresh profile folder; [`Browser::close`]
//! (or dropping the [`Browser`]) ends that group by its id and removes the folder.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

/// How long Chromium may take to start and open its DevTools port.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long one DevTools command may take.
const CALL_LIMIT: Duration = Duration::from_secs(15);

/// The flags of a quiet, headless Chromium on a machine without network or display: no
/// sandbox (containers run as root), no GPU, and none of the background connections that a
/// closed network would answer with floods of refusals.
const FLAGS: &[&str] = &[
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
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--password-store=basic",
    "--remote-debugging-port=0",
    "--window-size=1280,900",
];

/// The Chromium binary: `$ALLOCATE_CHROMIUM`, else the first of the usual names on `PATH`.
pub fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ALLOCATE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A running Chromium.
pub struct Browser {
    child: Child,
    profile: tempfile::TempDir,
    ended: bool,
}

/// One page (tab) of it.
pub struct Page {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// JavaScript exceptions and console errors seen so far.
    pub problems: Vec<String>,
}

impl Browser {
    /// Starts Chromium on `about:blank` and connects to its page.
    pub async fn launch(binary: &Path) -> (Browser, Page) {
        let profile = tempfile::tempdir().expect("profile folder");
        let log = std::fs::File::create(profile.path().join("chromium.log")).expect("log");
        let mut command = Command::new(binary);
        command
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Its own group: closing it ends the renderer and helper processes too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("start chromium");
        let mut browser = Browser {
            child,
            profile,
            ended: false,
        };
        let port = browser.devtools_port().await;
        let page = browser.page(port).await;
        (browser, page)
    }

    /// The DevTools port, from the `DevToolsActivePort` file Chromium writes when ready.
    async fn devtools_port(&mut self) -> u16 {
        let file = self.profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Some(port) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                    return port;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromium exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port:\n{}",
                self.log_tail()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Connects to the page target that Chromium opened.
    async fn page(&self, port: u16) -> Page {
        let list_url = format!("http://127.0.0.1:{port}/json/list");
        let deadline = Instant::now() + START_LIMIT;
        let url = loop {
            let targets: Vec<Value> = match reqwest::get(&list_url).await {
                Ok(resp) => resp.json().await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            let page = targets.iter().find(|t| t["type"] == "page");
            if let Some(url) = page.and_then(|t| t["webSocketDebuggerUrl"].as_str()) {
                break url.to_owned();
            }
            assert!(Instant::now() < deadline, "chromium opened no page");
            sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = timeout(CALL_LIMIT, connect_async(url))
            .await
            .expect("devtools connect in time")
            .expect("devtools connect");
        let mut page = Page {
            ws,
            next_id: 0,
            problems: Vec::new(),
        };
        page.call("Page.enable", json!({})).await;
        page.call("Runtime.enable", json!({})).await;
        page.call("Log.enable", json!({})).await;
        page
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Asks Chromium to quit, waits for it, and ends whatever is left of its group.
    pub async fn close(mut self, mut page: Page) {
        let _ = timeout(
            Duration::from_secs(5),
            page.call("Browser.close", json!({})),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            sleep(Duration::from_millis(50)).await;
        }
        self.end();
    }

    /// Kills the process group (by the id of the process we started) and reaps it.
    fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.end();
    }
}

impl Page {
    /// Sends one DevTools command and returns its result; panics on a protocol error.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        timeout(
            CALL_LIMIT,
            self.ws.send(Message::Text(request.to_string().into())),
        )
        .await
        .expect("devtools send in time")
        .expect("devtools send");
        let deadline = Instant::now() + CALL_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method} took longer than {CALL_LIMIT:?}"));
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                other => panic!("devtools socket ended during {method}: {other:?}"),
            };
            let message: Value = serde_json::from_str(&text).expect("devtools JSON");
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            self.note_event(&message);
        }
    }

    /// Remembers exceptions and console errors, to be checked at the end.
    fn note_event(&mut self, event: &Value) {
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &event["params"]["exceptionDetails"];
                self.problems.push(format!("exception: {details}"));
            }
            Some("Log.entryAdded") if event["params"]["entry"]["level"] == "error" => {
                let entry = &event["params"]["entry"];
                self.problems
                    .push(format!("console: {} {}", entry["text"], entry["url"]));
            }
            Some("Runtime.consoleAPICalled") if event["params"]["type"] == "error" => {
                self.problems
                    .push(format!("console.error: {}", event["params"]["args"]));
            }
            _ => {}
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.call("Runtime.evaluate", params).await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{expression} threw: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy; panics naming `what` after `limit`.
    pub async fn wait_for(&mut self, what: &str, expression: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(expression).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            if truthy {
                return value;
            }
            assert!(Instant::now() < deadline, "the page never showed {what}");
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Loads `url` and waits until its document has loaded.
    pub async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            &format!("{url} loaded"),
            &format!(
                "location.href.startsWith({}) && document.readyState === 'complete'",
                json!(url)
            ),
            CALL_LIMIT,
        )
        .await;
    }

    /// Sets the viewport: CSS pixels, scale, and whether it is a phone.
    pub async fn viewport(&mut self, width: u32, height: u32, scale: f64, mobile: bool) {
        let params = json!({"width": width, "height": height,
                            "deviceScaleFactor": scale, "mobile": mobile});
        self.call("Emulation.setDeviceMetricsOverride", params)
            .await;
    }

    /// Emulates `prefers-color-scheme: dark` (or stops emulating it).
    pub async fn dark(&mut self, on: bool) {
        let features = if on {
            json!([{"name": "prefers-color-scheme", "value": "dark"}])
        } else {
            json!([])
        };
        let params = json!({ "features": features });
        self.call("Emulation.setEmulatedMedia", params).await;
    }

    /// Saves a PNG of the whole page at `width` CSS pixels to `path`.
    pub async fn screenshot(&mut self, path: &Path, width: u32, scale: f64, mobile: bool) {
        self.viewport(width, 900, scale, mobile).await;
        let height = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(300, 4000) as u32;
        self.viewport(width, height, scale, mobile).await;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    fn value(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    }
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        let [_, a, b, c] = acc.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..chunk.len().saturating_sub(1)]);
    }
    out
}

#[test]
fn base64_decodes_with_and_without_padding() {
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("aGkh"), b"hi!");
    assert_eq!(base64_decode("aA=="), b"h");
    assert_eq!(base64_decode(""), b"");
}
