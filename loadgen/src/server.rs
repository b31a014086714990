//! The server under test: a separate `allocate-http` process on a loopback port, so that its
//! memory and CPU time can be read from `/proc`.

use crate::failure::Failure;
use crate::http::HttpConn;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

/// How long the server has to start answering `/healthz`.
const START_WAIT: Duration = Duration::from_secs(20);

/// How long the server has to exit after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// How to start the server.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `allocate-http` binary.
    pub bin: PathBuf,
    /// `--log-level` for it.
    pub log_level: String,
    /// Where its stderr (the log) goes; discarded when `None`.
    pub log: Option<PathBuf>,
    /// Further arguments for every start.
    pub args: Vec<String>,
    /// The servers' working directory (a fresh temporary one), and where journals go.
    pub workdir: PathBuf,
    /// Whether the server has a journal (`--data-dir`).
    pub has_journal: bool,
    /// Whether the server needs `--in-memory` to run without one.
    pub has_in_memory: bool,
    /// Whether the server caps connections per peer address (`--connections-per-peer-max`).
    pub has_peer_cap: bool,
}

/// The per-address connection cap given to a server that has one, unless the server's
/// arguments set it: every simulated agent and client connects from 127.0.0.1, as many as
/// 10,000 of them at once. The server lowers it to what its open-files limit allows.
const CONNECTIONS_PER_PEER_MAX: &str = "1048576";

/// Where a started server keeps its journal.
#[derive(Clone, Copy, Debug)]
pub enum Journal<'a> {
    /// None: `--in-memory` (where the server has the flag).
    Off,
    /// `--data-dir` in this directory.
    Dir(&'a Path),
    /// `--store` with this PostgreSQL URL.
    Store(&'a str),
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Launch {
    /// Reads the binary's `--help` to learn its journal flags.
    pub async fn detect(mut self) -> Result<Launch, Failure> {
        // Servers run in `workdir`, so a relative path must be resolved here.
        self.bin = std::fs::canonicalize(&self.bin)
            .map_err(|e| Failure::new("server", format!("{}: {e}", self.bin.display())))?;
        let out = Command::new(&self.bin)
            .arg("--help")
            .output()
            .await
            .map_err(|e| Failure::new("server", format!("{}: {e}", self.bin.display())))?;
        let help = String::from_utf8_lossy(&out.stdout);
        self.has_journal = help.contains("--data-dir");
        self.has_in_memory = help.contains("--in-memory");
        self.has_peer_cap = help.contains("--connections-per-peer-max");
        Ok(self)
    }

    /// Starts the server on a free loopback port, journaling into `journal`, and waits until
    /// it answers.
    pub async fn start(&self, journal: Journal<'_>) -> Result<Server, Failure> {
        self.start_answering(journal, 200).await
    }

    /// Starts a standby of a store: waits until its `/healthz` answers `503` (`not_leader`).
    pub async fn start_standby(&self, store: &str) -> Result<Server, Failure> {
        self.start_answering(Journal::Store(store), 503).await
    }

    /// Starts the server and waits until `/healthz` answers `status`.
    async fn start_answering(&self, journal: Journal<'_>, status: u16) -> Result<Server, Failure> {
        let addr = free_port().map_err(|e| Failure::new("server", e))?;
        let stderr = match &self.log {
            Some(path) => Stdio::from(open_log(path).map_err(|e| Failure::new("server", e))?),
            None => Stdio::null(),
        };
        let mut command = Command::new(&self.bin);
        command
            .current_dir(&self.workdir)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--log-level")
            .arg(&self.log_level);
        let given = |flag: &str| self.args.iter().any(|arg| arg.starts_with(flag));
        if self.has_peer_cap && !given("--connections-per-peer-max") {
            command
                .arg("--connections-per-peer-max")
                .arg(CONNECTIONS_PER_PEER_MAX);
        }
        command.args(&self.args);
        match journal {
            Journal::Dir(dir) => {
                command.arg("--data-dir").arg(dir);
            }
            Journal::Store(url) => {
                command.arg("--store").arg(url);
            }
            Journal::Off if self.has_in_memory => {
                command.arg("--in-memory");
            }
            Journal::Off => {}
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Failure::new("server", format!("{}: {e}", self.bin.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| Failure::new("server", "the server exited at once"))?;
        let mut server = Server { child, pid, addr };
        server.wait_healthz(status).await?;
        Ok(server)
    }
}

impl Server {
    async fn wait_healthz(&mut self, want: u16) -> Result<(), Failure> {
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Failure::new(
                    "server",
                    format!("the server exited: {status}"),
                ));
            }
            let probe = timeout(Duration::from_secs(1), async {
                let mut conn = HttpConn::connect(self.addr).await?;
                conn.request("GET", "/healthz").await
            });
            if probe.await.is_ok_and(|r| r.is_ok_and(|r| r.status == want)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Failure::new("server", "the server did not start answering"));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmHWM:").unwrap_or(0)
    }

    /// The server's resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmRSS:").unwrap_or(0)
    }

    /// CPU time (user and system) the server has used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(&format!("/proc/{}/stat", self.pid)).unwrap_or_default()
    }

    /// Sends `signal` to the server's process (by its PID).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Kills the server (SIGKILL, by its PID) and reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Waits at most `wait` for the server to exit; its exit status, or `None` if it still
    /// runs (it is then killed).
    pub async fn exit_within(mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        match timeout(wait, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = self.child.kill().await;
                None
            }
        }
    }

    /// Asks the server to stop (SIGTERM), kills it if it lingers; returns how long it took.
    pub async fn stop(mut self) -> Duration {
        let start = Instant::now();
        self.signal(rustix::process::Signal::TERM);
        if timeout(STOP_WAIT, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        start.elapsed()
    }
}

/// CPU time (user and system) of this process so far.
pub fn own_cpu_time() -> Duration {
    cpu_time("/proc/self/stat").unwrap_or_default()
}

/// CPU time the whole machine has spent busy (all cores, every process) so far.
pub fn machine_busy_time() -> Duration {
    machine_busy().unwrap_or_default()
}

fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let busy: u64 = fields.iter().take(8).sum::<u64>() - fields.get(3)? - fields.get(4)?;
    let per_sec = rustix::param::clock_ticks_per_second();
    Some(Duration::from_secs_f64(busy as f64 / per_sec as f64))
}

/// A loopback address with a port that was free a moment ago.
fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// A `kB` field of `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// utime + stime of a `/proc/.../stat` file.
fn cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; the fields we need come after its closing ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_sec = rustix::param::clock_ticks_per_second();
    Some(Duration::from_secs_f64(ticks as f64 / per_sec as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_of_this_process() {
        assert!(status_kib(std::process::id(), "VmHWM:").is_some_and(|k| k > 0));
        assert!(own_cpu_time() < Duration::from_secs(3600));
    }
}
