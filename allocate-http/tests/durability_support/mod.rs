//! The `allocate-http` binary over a data directory, for the durability tests: started on
//! 127.0.0.1:0 (its address read from its log), killed with SIGKILL through its own child
//! handle, and always killed and reaped on drop.
#![allow(dead_code)] // each test binary uses its own subset of the helpers

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The server binary cargo built for these tests.
pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_allocate-http");

/// How long a start (recovery included) may take.
const START_MAX: Duration = Duration::from_secs(15);

/// A running server process.
pub struct ServerProc {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

/// How a start went.
pub enum Started {
    /// It is serving.
    Running(ServerProc),
    /// It exited before serving: its exit code and its whole log.
    Exited(Option<i32>, String),
}

/// Starts the server on `data_dir` (plus `extra` flags) and waits until it listens or exits.
pub fn start(data_dir: &Path, extra: &[&str]) -> Started {
    start_limited(data_dir, extra, None)
}

/// [`start`], with the soft and hard limits on open files set to `open_files` when given
/// (through the shell's `ulimit`, which then execs the server in its place).
pub fn start_limited(data_dir: &Path, extra: &[&str], open_files: Option<u64>) -> Started {
    let mut command = server_command(ANY_PORT, extra, open_files);
    command.arg("--data-dir").arg(data_dir);
    if let Some(parent) = data_dir.parent() {
        command.current_dir(parent);
    }
    Launched::new(command).wait_listening()
}

/// Starts the server on the PostgreSQL store at `url` (plus `extra` flags), without waiting.
pub fn launch_store(url: &str, extra: &[&str]) -> Launched {
    launch_store_at(url, ANY_PORT, extra)
}

/// [`launch_store`] listening on `listen` (an address known before the start, for
/// `--advertise-url`).
pub fn launch_store_at(url: &str, listen: &str, extra: &[&str]) -> Launched {
    let mut command = server_command(listen, extra, None);
    command.args(["--store", url]);
    Launched::new(command)
}

/// A loopback port that was free a moment ago (bound, then let go), for a server that must
/// know its address before it starts.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind(ANY_PORT).expect("bind");
    listener.local_addr().expect("address").port()
}

/// Starts the server on the PostgreSQL store at `url`, which must come up.
pub fn start_store_ok(url: &str, extra: &[&str]) -> ServerProc {
    launch_store(url, extra).running()
}

/// Where a server listens unless told: a port of the system's choosing.
const ANY_PORT: &str = "127.0.0.1:0";

/// The binary on `listen` with `extra` flags, its log on a pipe, no `ALLOCATE_*` variable
/// of the environment; its open-files limits set to `open_files` when given.
fn server_command(listen: &str, extra: &[&str], open_files: Option<u64>) -> Command {
    let mut command = match open_files {
        None => Command::new(SERVER_BIN),
        Some(n) => {
            let mut shell = Command::new("sh");
            shell.args([
                "-c",
                &format!("ulimit -n {n} && exec \"$0\" \"$@\""),
                SERVER_BIN,
            ]);
            shell
        }
    };
    command
        .args(["--listen", listen, "--log-level", "info"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    testkit::env::without_allocate_vars(&mut command);
    command
}

/// A server process that was started, before it listens (a standby waits here).
pub struct Launched {
    /// Taken out once it listens.
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    lines: mpsc::Receiver<String>,
}

impl Launched {
    /// Spawns `command`; a thread keeps its log.
    fn new(mut command: Command) -> Launched {
        let mut child = command.spawn().expect("start allocate-http");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines) = mpsc::channel();
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().expect("log lock").push(line.clone());
                let _ = lines_tx.send(line);
            }
        });
        Launched {
            child: Some(child),
            log,
            lines,
        }
    }

    /// Waits (at most `within`) for a log line containing `needle`; returns it.
    pub fn wait_for_line(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Sends it a signal (`STOP`, `CONT`) with `kill`, by its PID.
    pub fn signal(&self, name: &str) {
        signal(self.child.as_ref().expect("not yet listening").id(), name);
    }

    /// Waits until it listens, which it must (not exit).
    pub fn running(self) -> ServerProc {
        match self.wait_listening() {
            Started::Running(server) => server,
            Started::Exited(code, log) => panic!("allocate-http exited ({code:?}):\n{log}"),
        }
    }

    /// Waits until it listens or exits.
    pub fn wait_listening(mut self) -> Started {
        let mut child = self.child.take().expect("not yet taken");
        let deadline = Instant::now() + START_MAX;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some((_, address)) = line.split_once("allocate-http listening address=")
                    {
                        let addr = address.trim().parse().expect("a socket address");
                        let http = reqwest::Client::builder()
                            .timeout(Duration::from_secs(3))
                            .build()
                            .expect("http client");
                        return Started::Running(ServerProc {
                            child,
                            addr,
                            log: self.log.clone(),
                            http,
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait for allocate-http");
                    return Started::Exited(status.code(), self.log());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "allocate-http neither listened nor exited within {START_MAX:?}:\n{}",
                        self.log()
                    );
                }
            }
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends the signal `name` (`STOP`, `CONT`) to the process `pid` with `kill`; after `STOP`,
/// waits until every thread of it is stopped (the signal is only queued when `kill` returns).
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name}");
    if name == "STOP" {
        let deadline = Instant::now() + START_MAX;
        while !stopped(pid) {
            assert!(Instant::now() < deadline, "process {pid} did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Whether every thread of the process `pid` is stopped (state `T` in `/proc`).
fn stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state follows the command's closing parenthesis.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
    })
}

/// Starts the server (plus `extra` flags), which must come up.
pub fn start_ok(data_dir: &Path, extra: &[&str]) -> ServerProc {
    match start(data_dir, extra) {
        Started::Running(server) => server,
        Started::Exited(code, log) => panic!("allocate-http exited ({code:?}) on start:\n{log}"),
    }
}

impl ServerProc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Waits (at most `within`) for it to exit by itself; its exit code, `None` if it did not.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends it a signal (`STOP`, `CONT`) with `kill`, by its PID.
    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// `kill -9`; returns its log.
    pub fn kill9(mut self) -> String {
        let _ = self.child.kill(); // SIGKILL on unix
        let _ = self.child.wait();
        self.log()
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://addr{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// `GET path`, which must answer 200; returns `data`.
    pub async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("a JSON body");
        assert_eq!(status, 200, "GET {path}: {body}");
        body["data"].clone()
    }

    /// `DELETE path`: the status, or the transport error.
    pub async fn delete(&self, path: &str) -> Result<u16, reqwest::Error> {
        Ok(self
            .http
            .delete(self.url(path))
            .send()
            .await?
            .status()
            .as_u16())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small deterministic generator (xorshift64*), so a failing run can be repeated from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A seed from the clock, or from `ALLOCATE_TEST_SEED` to repeat a run.
    pub fn seed() -> u64 {
        std::env::var("ALLOCATE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_nanos() as u64
            })
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `range`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }

    /// `true` with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next() % n == 0
    }
}

/// Now in unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// How many records of `epoch` the journal table in `cluster` holds after record `seq`.
pub fn appended_since(cluster: &testkit::postgres::Cluster, epoch: &str, seq: &str) -> String {
    cluster.sql(&format!(
        "SELECT count(*) FROM allocate_journal WHERE epoch = {epoch} AND seq > {seq}"
    ))
}
