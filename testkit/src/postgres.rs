//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, `postgres`
//! on a free loopback port with its socket in that directory, stopped by its PID when
//! dropped (also when the test panics). Never a system-wide cluster.
//!
//! The binaries come from Debian's `postgresql` package (`make test` installs it when
//! missing): the newest `/usr/lib/postgresql/<version>/bin`, or `ALLOCATE_PG_BIN`. PostgreSQL
//! refuses to run as root, so as root the cluster runs as `nobody`.
//! Behind the cargo feature `postgres`.

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take before the test fails.
const START_MAX: Duration = Duration::from_secs(30);
/// How long a statement through `psql` may take.
const STATEMENT_MAX_SECS: u32 = 10;

/// A PostgreSQL cluster of this test, stopped and removed when dropped.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    /// Holds the data directory, the socket and the log; removed last.
    dir: tempfile::TempDir,
    port: u16,
    /// The user and group it runs as, when this process is root.
    run_as: Option<(u32, u32)>,
    postmaster: Option<Child>,
}

impl Cluster {
    /// Creates a cluster and starts it; panics, with its log, when it cannot.
    pub fn start() -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("allocate-pg-")
            .tempdir()
            .expect("a temporary directory");
        let run_as = (is_root()).then(nobody);
        let home = dir.path().join("pg");
        fs::create_dir(&home).expect("create the cluster's directory");
        if let Some((uid, gid)) = run_as {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
                .expect("open the temporary directory to the cluster's user");
            std::os::unix::fs::chown(&home, Some(uid), Some(gid))
                .expect("chown the cluster's directory");
        }
        let mut cluster = Cluster {
            bin,
            dir,
            port: free_port(),
            run_as,
            postmaster: None,
        };
        let initdb = cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.data())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("run initdb");
        check(&initdb, "initdb");
        cluster.spawn();
        cluster
    }

    /// The URL a server connects with.
    pub fn url(&self) -> String {
        self.url_via(self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the cluster's database through `port` on loopback (a proxy's, which
    /// forwards to [`Cluster::port`]).
    pub fn url_via(&self, port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }

    /// Runs `sql` through `psql`; returns its output, unaligned, tuples only. Panics on an
    /// error.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url())
            .arg("-c")
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", STATEMENT_MAX_SECS.to_string())
            .env(
                "PGOPTIONS",
                format!("-c statement_timeout={}s", STATEMENT_MAX_SECS),
            )
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        check(&out, &format!("psql -c {sql:?}"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops it (a fast shutdown, as an operator's restart does) and starts it again on the
    /// same port.
    pub fn restart(&mut self) {
        self.stop("fast");
        self.spawn();
    }

    /// The data directory.
    fn data(&self) -> PathBuf {
        self.dir.path().join("pg").join("data")
    }

    /// A command running one of the cluster's binaries as the cluster's user.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command.stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts the postmaster (a child of this process) and waits until it accepts connections.
    fn spawn(&mut self) {
        let log_path = self.dir.path().join("postgres.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the cluster's log");
        let socket_dir = self.dir.path().join("pg");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&socket_dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=50",
            ])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.postmaster = Some(child);
        let deadline = Instant::now() + START_MAX;
        loop {
            let ready = self
                .command("pg_isready")
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-t",
                    "1",
                    "-p",
                    &self.port.to_string(),
                ])
                .status()
                .expect("run pg_isready");
            if ready.success() {
                return;
            }
            let exited = self
                .postmaster
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                panic!("postgres did not start ({exited:?}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the postmaster by its PID (`pg_ctl stop`, which signals the PID in its
    /// `postmaster.pid`), and reaps it; a SIGKILL when that fails.
    fn stop(&mut self, mode: &str) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        let stopped = self
            .command("pg_ctl")
            .args(["stop", "-w", "-t", "20", "-m", mode, "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}

/// Panics with the output of a failed command.
fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ALLOCATE_PG_BIN`, or the newest `/usr/lib/postgresql/<version>/bin` with an `initdb`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ALLOCATE_PG_BIN") {
        return dir.into();
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL under {} (install Debian's postgresql package, as `make test` \
             does, or set ALLOCATE_PG_BIN)",
            root.display()
        ),
    }
}

/// Whether this process runs as root (it owns its `/proc/self`).
fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of `nobody`, from `/etc/passwd`.
fn nobody() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"nobody") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .expect("a user nobody in /etc/passwd, to run PostgreSQL as (it refuses root)")
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
