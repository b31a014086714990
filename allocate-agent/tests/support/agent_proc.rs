//! The real `allocate-agent` binary as a child of a test: a scratch directory for its scripts
//! and logs, the child itself (killed by PID and reaped when its guard drops, so a failing test
//! leaves no process behind), and an allocation client whose socket is read all the time (so it
//! answers the server's pings however long the test looks elsewhere).

use crate::common::{Received, Server, STEP};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

/// The agent binary cargo built for these tests.
pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_allocate-agent");

/// How long an agent may take to start and register (or come back after a restart).
pub const AGENT_START: Duration = Duration::from_secs(5);

/// Held while this test binary writes an executable or forks. A child forked while another
/// thread still has a script open for writing inherits that descriptor until its `exec`,
/// and running the script then fails with "text file busy" (ETXTBSY).
static FORK_LOCK: Mutex<()> = Mutex::new(());

fn fork_lock() -> std::sync::MutexGuard<'static, ()> {
    // A test that panicked while holding it left nothing half done that matters here.
    FORK_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    /// Creates `<tmp>/allocate-e2e-<tag>-<uuid>`.
    pub fn new(tag: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("allocate-e2e-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create the scratch directory");
        Scratch { path }
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes an executable file `name` (its directories created) holding `body`.
    pub fn executable(&self, name: &str, body: &str) -> PathBuf {
        let path = self.join(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the script's directory");
        }
        let _forks = fork_lock();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        file.write_all(body.as_bytes()).expect("write the script");
        drop(file);
        path
    }

    /// The lines of a file the scripts append to (none when it does not exist yet).
    pub fn lines(&self, name: &str) -> Vec<String> {
        match std::fs::read_to_string(self.join(name)) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read {name}: {e}"),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `path` quoted for `sh -c`.
pub fn sh_quote(path: &Path) -> String {
    let text = path.to_str().expect("a UTF-8 path");
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A running `allocate-agent`. Dropping it kills it (SIGKILL, by PID) and reaps it; when the
/// test is failing, its log is printed too.
#[derive(Debug)]
pub struct AgentProc {
    child: Child,
    log: PathBuf,
    reaped: Option<ExitStatus>,
}

impl AgentProc {
    /// Starts the agent binary against `server` with these flags and variables. Its
    /// environment holds no `ALLOCATE_*` variable of the test's own; it reconnects quickly
    /// (50 ms, at most 500 ms) and logs at debug level to `log_name` in `scratch`.
    pub fn spawn(
        server: &Server,
        scratch: &Scratch,
        log_name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> AgentProc {
        let url = format!("ws://{}/agent/", server.addr);
        AgentProc::spawn_for(&url, scratch, log_name, args, envs)
    }

    /// [`AgentProc::spawn`] against the server at `url` (a TLS front, say).
    pub fn spawn_for(
        url: &str,
        scratch: &Scratch,
        log_name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> AgentProc {
        let log = scratch.join(log_name);
        let log_file = std::fs::File::create(&log).expect("create the agent's log");
        let mut command = Command::new(AGENT_BIN);
        command
            .arg("--server")
            .arg(url)
            .args(["--reconnect-min-ms", "50", "--reconnect-max-ms", "500"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        testkit::env::without_allocate_vars(&mut command);
        command.env("RUST_LOG", "allocate_agent=debug,info");
        command.envs(envs.iter().copied());
        let child = {
            let _forks = fork_lock();
            command.spawn().expect("start allocate-agent")
        };
        AgentProc {
            child,
            log,
            reaped: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the agent has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the log, when the agent has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_wait() {
            panic!("allocate-agent exited ({status}); its log:\n{}", self.log());
        }
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait().expect("wait for allocate-agent");
        }
        self.reaped
    }

    /// Sends a signal (`TERM`, `STOP`, `CONT`, ...) to the agent, by PID.
    pub fn signal(&self, name: &str) {
        assert!(self.reaped.is_none(), "the agent has exited already");
        let status = {
            let _forks = fork_lock();
            Command::new("kill")
                .args(["-s", name, &self.pid().to_string()])
                .status()
                .expect("run kill")
        };
        assert!(status.success(), "kill -s {name} {}: {status}", self.pid());
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        self.kill_and_reap().expect("reap allocate-agent")
    }

    /// [`AgentProc::kill`] without panicking (it also runs while a failing test unwinds).
    fn kill_and_reap(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.reaped {
            return Ok(status);
        }
        // Fails only if it has exited already; `wait` tells either way.
        let _ = self.child.kill();
        let status = self.child.wait()?;
        self.reaped = Some(status);
        Ok(status)
    }

    /// Waits, at most `bound`, for the agent to exit by itself.
    pub async fn exited(&mut self, bound: Duration) -> ExitStatus {
        let waited = timeout(bound, async {
            loop {
                if let Some(status) = self.try_wait() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("allocate-agent still runs; its log:\n{}", self.log()))
    }

    /// Waits, at most [`AGENT_START`], until the agent has logged `text`; fails at once, with
    /// its log, if it exits meanwhile.
    pub async fn wait_log(&mut self, text: &str) {
        let found = timeout(AGENT_START, async {
            while !self.log().contains(text) {
                self.assert_running();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "no {text:?} logged within {AGENT_START:?}; its log:\n{}",
            self.log()
        );
    }

    /// Waits until the inventory holds a resource of `agent_id` in `state`; returns it.
    /// Fails at once, with the agent's log, if the agent exits meanwhile.
    pub async fn wait_resource(&mut self, server: &Server, agent_id: &str, state: &str) -> Value {
        let found = timeout(AGENT_START, async {
            loop {
                self.assert_running();
                let inventory = server.get("/inventory/").await;
                let entry = inventory
                    .as_array()
                    .expect("the inventory is a list")
                    .iter()
                    .find(|r| r["agent_id"] == agent_id && r["state"] == state)
                    .cloned();
                if let Some(entry) = entry {
                    return entry;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "no {state} resource of agent {agent_id} within {AGENT_START:?}; its log:\n{}",
                self.log()
            )
        })
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Err(e) = self.kill_and_reap() {
            eprintln!("could not reap allocate-agent (pid {}): {e}", self.pid());
        }
        if std::thread::panicking() {
            eprintln!(
                "--- allocate-agent (pid {}) log ---\n{}--- end of log ---",
                self.pid(),
                self.log()
            );
        }
    }
}

/// An allocation client whose socket a task reads all the time (answering the server's pings),
/// queueing what arrives for [`Client::next`]. Dropping it stops the task, closing the socket.
#[derive(Debug)]
pub struct Client {
    received: mpsc::UnboundedReceiver<Received>,
    reader: JoinHandle<()>,
}

impl Client {
    /// Opens `/allocate/` and sends these requirements.
    pub async fn open(server: &Server, requirements: Value) -> Client {
        let mut ws = crate::common::allocate(server, requirements).await;
        let (tx, received) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            loop {
                let next = match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        Received::Json(serde_json::from_str(&text).expect("server sends JSON"))
                    }
                    Some(Ok(Message::Close(frame))) => {
                        Received::Closed(frame.map(|f| u16::from(f.code)))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => Received::Closed(None),
                };
                let closed = matches!(next, Received::Closed(_));
                if tx.send(next).is_err() || closed {
                    return;
                }
            }
        });
        Client { received, reader }
    }

    /// The next message or close, waiting at most `bound`.
    pub async fn next_within(&mut self, bound: Duration) -> Received {
        match timeout(bound, self.received.recv()).await {
            Ok(Some(received)) => received,
            Ok(None) => Received::Closed(None),
            Err(_) => panic!("the client heard nothing within {bound:?}"),
        }
    }

    /// The next message's `data`, asserting a success envelope with this `data.status`,
    /// within `bound`.
    pub async fn status_within(&mut self, status: &str, bound: Duration) -> Value {
        match self.next_within(bound).await {
            Received::Json(msg) => {
                assert_eq!(msg["status"], 200, "{msg}");
                assert_eq!(msg["data"]["status"], status, "{msg}");
                msg["data"].clone()
            }
            Received::Closed(code) => panic!("closed ({code:?}) instead of {status:?}"),
        }
    }

    /// Like [`Client::status_within`], within [`STEP`].
    pub async fn status(&mut self, status: &str) -> Value {
        self.status_within(status, STEP).await
    }

    /// Expects the socket to close next, with this code.
    pub async fn closed(&mut self, code: u16) {
        match self.next_within(STEP).await {
            Received::Closed(got) => assert_eq!(got, Some(code), "close code"),
            Received::Json(msg) => panic!("expected a close, got {msg}"),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Requirements for `username`, with a short queue wait.
pub fn requirements(username: &str, extra: Value) -> Value {
    let mut r = json!({"username": username, "allocation_timeout_seconds": 5});
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        r.extend(extra.clone());
    }
    r
}
