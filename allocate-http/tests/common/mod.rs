//! Shared helpers: a real server on 127.0.0.1:0, a websocket client and an HTTP client.
//! allocate-agent's end-to-end test uses them too (by path, so there is one copy).
#![allow(dead_code)] // each test binary uses its own subset of the helpers

use allocate_http::{run, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(5);

/// A websocket client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Settings with short timeouts, so tests are quick.
pub fn test_config() -> ServerConfig {
    let mut config = ServerConfig {
        ping_interval: Duration::from_millis(100),
        // Longer than any test, so a test that is not reading a socket does not lose it.
        idle_timeout: Duration::from_secs(10),
        close_wait: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    config.engine.provision_timeout_ms = 400;
    config.engine.release_timeout_ms = 400;
    config
}

/// A server running in this process until [`Server::stop`] (or the test ends).
pub struct Server {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Starts a server with [`test_config`].
    pub async fn start() -> Server {
        Server::with(test_config()).await
    }

    /// Starts a server with these settings.
    pub async fn with(config: ServerConfig) -> Server {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("allocate_http=debug")
            .with_test_writer()
            .try_init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, config, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task,
        }
    }

    /// Asks the server to shut down and waits until `run` returns.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        bounded(&mut self.task)
            .await
            .expect("server task")
            .expect("server result");
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Opens a websocket to `path`.
    pub async fn ws(&self, path: &str) -> Ws {
        let url = format!("ws://{}{path}", self.addr);
        bounded(connect_async(url))
            .await
            .expect("websocket connect")
            .0
    }

    /// A plain HTTP request; returns the status and the JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = bounded(req.send()).await.expect("http request");
        let status = resp.status().as_u16();
        let text = bounded(resp.text()).await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("body of {path} is not JSON ({e}): {text:?}"));
        (status, value)
    }

    /// `GET path`, expecting 200; returns `data`.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        assert_eq!(body["status"], 200);
        body["data"].clone()
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let resp = bounded(self.http.get(self.url("/metrics")).send())
            .await
            .expect("/metrics");
        bounded(resp.text()).await.expect("/metrics text")
    }

    /// The value of one sample of `/metrics`, such as `allocate_connections_open` or
    /// `allocate_http_requests_total{method="GET",route="/healthz",status="200"}`; `None`
    /// when the series is not there (yet).
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics().await;
        let value = text
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))?;
        Some(value.parse().expect("a number"))
    }

    /// The inventory entry of one resource.
    pub async fn resource(&self, inventory_id: &str) -> Value {
        self.get(&format!("/inventory/{inventory_id}")).await[0].clone()
    }

    /// Waits until a resource is in `state` (deadlines fire on the server's own clock).
    pub async fn wait_state(&self, inventory_id: &str, state: &str) -> Value {
        timeout(STEP, async {
            loop {
                let entry = self.resource(inventory_id).await;
                if entry["state"] == state {
                    return entry;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("resource {inventory_id} never became {state}"))
    }
}

/// Checks a `/metrics` exposition with `promtool check metrics` (Debian's `prometheus`
/// package; `make promtool` installs it). Where promtool is missing the check is skipped
/// with a message, unless `CI` is set: there it must run.
pub fn promtool_check(exposition: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED promtool check: promtool is not installed (make promtool)");
            return;
        }
        Err(e) => panic!("promtool check metrics: {e} (make promtool installs it)"),
    };
    let mut stdin = child.stdin.take().expect("promtool's stdin");
    stdin
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("promtool's answer");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{exposition}"
    );
}

/// A websocket to `path` on the server at `addr` (a process of its own), presenting `token` as
/// its bearer token if given.
pub async fn ws_at(addr: SocketAddr, path: &str, token: Option<&str>) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    if let Some(token) = token {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
        request.headers_mut().insert("authorization", bearer);
    }
    bounded(connect_async(request)).await.expect("upgrade").0
}

/// Bounds a step by [`STEP`]; panics when it takes longer.
pub async fn bounded<F: Future>(f: F) -> F::Output {
    timeout(STEP, f)
        .await
        .expect("a test step took longer than its bound")
}

/// Now in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Sends a JSON message.
pub async fn send(ws: &mut Ws, value: Value) {
    bounded(ws.send(Message::Text(value.to_string().into())))
        .await
        .expect("send");
}

/// What the server sent next, other than pings: a JSON message, or the close code.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Closed(Option<u16>),
}

/// The next message or close (pings are answered by the client library and skipped).
pub async fn receive(ws: &mut Ws) -> Received {
    let next = bounded(async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value = serde_json::from_str(&text).expect("server sends JSON");
                    return Received::Json(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected message {other:?}"),
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    })
    .await;
    next
}

/// The next JSON message; panics on close.
pub async fn recv(ws: &mut Ws) -> Value {
    match receive(ws).await {
        Received::Json(value) => value,
        Received::Closed(code) => panic!("socket closed ({code:?}) instead of a message"),
    }
}

/// Expects the socket to close next, with this code.
pub async fn expect_close(ws: &mut Ws, code: u16) {
    match receive(ws).await {
        Received::Closed(got) => assert_eq!(got, Some(code), "close code"),
        Received::Json(value) => panic!("expected a close, got {value}"),
    }
}

/// The next message's `data`, asserting a success envelope with this `data.status`.
pub async fn recv_status(ws: &mut Ws, status: &str) -> Value {
    let msg = recv(ws).await;
    assert_eq!(msg["status"], 200, "{msg}");
    assert_eq!(msg["data"]["status"], status, "{msg}");
    msg["data"].clone()
}

/// The next message, asserting an error envelope with this status and code.
pub async fn recv_error(ws: &mut Ws, status: u16, code: &str) -> String {
    let msg = recv(ws).await;
    assert_eq!(msg["status"], status, "{msg}");
    assert_eq!(msg["error"]["code"], code, "{msg}");
    msg["error"]["message"]
        .as_str()
        .expect("message is a string")
        .to_owned()
}

/// A resource as an agent registers it; `host` makes it static (no provisioning).
pub fn resource(labels: &[&str], cpu_count: u64, host: Option<&str>) -> Value {
    let mut r = json!({"labels": labels, "cpu_count": cpu_count, "memory_gb": 16,
                       "gpu": [{"label": "GeForce RTX 2080", "memory_gb": 8}], "type": "VM"});
    if let Some(host) = host {
        r["connection"] = json!({"host": host, "username": "lab", "password": "hunter2"});
    }
    r
}

/// A connected agent.
pub struct Agent {
    pub ws: Ws,
    pub id: String,
}

impl Agent {
    /// Connects as a fresh agent id.
    pub async fn connect(server: &Server) -> Agent {
        Agent::connect_as(server, &uuid::Uuid::new_v4().to_string()).await
    }

    /// Connects as the given agent id.
    pub async fn connect_as(server: &Server, id: &str) -> Agent {
        Agent {
            ws: server.ws("/agent/").await,
            id: id.to_owned(),
        }
    }

    /// Registers resources; returns their inventory ids.
    pub async fn register(&mut self, resources: Vec<Value>) -> Vec<String> {
        send(
            &mut self.ws,
            json!({"agent_id": self.id, "resources": resources}),
        )
        .await;
        let reply = recv(&mut self.ws).await;
        assert_eq!(reply["status"], 200, "{reply}");
        assert_eq!(reply["data"]["status"], "ok", "{reply}");
        reply["data"]["inventory_ids"]
            .as_array()
            .expect("inventory_ids")
            .iter()
            .map(|v| v.as_str().expect("id").to_owned())
            .collect()
    }

    /// Expects the next message to be this action; returns its data.
    pub async fn expect(&mut self, action: &str) -> Value {
        let msg = recv(&mut self.ws).await;
        assert_eq!(msg["status"], 200, "{msg}");
        assert_eq!(msg["data"]["action"], action, "{msg}");
        msg["data"].clone()
    }

    /// Answers a provision with connection details.
    pub async fn provisioned(&mut self, allocation_id: &Value, host: &str) {
        let answer = json!({"allocation_id": allocation_id,
                            "connection": {"host": host, "username": "u", "password": "p"}});
        send(&mut self.ws, answer).await;
    }

    /// Acknowledges a release.
    pub async fn released(&mut self, allocation_id: &Value) {
        send(
            &mut self.ws,
            json!({"allocation_id": allocation_id, "released": true}),
        )
        .await;
    }
}

/// Opens an allocation socket and sends requirements.
pub async fn allocate(server: &Server, requirements: Value) -> Ws {
    let mut ws = server.ws("/allocate/").await;
    send(&mut ws, json!({ "requirements": requirements })).await;
    ws
}

/// The file name a `POST /admin/backup` answer gives its snapshot (`Content-Disposition`).
pub fn backup_file_name(response: &reqwest::Response) -> String {
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    disposition
        .strip_prefix("attachment; filename=\"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{disposition}"))
        .to_owned()
}
