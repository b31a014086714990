//! The `allocate-http` binary as a child process, for the tests of what only the binary does
//! (flags, signals, its log). Test binaries that use it declare `mod common;` too.
#![allow(dead_code)] // each test binary uses its own subset of the helpers

use crate::common::STEP;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

const SERVER_BIN: &str = env!("CARGO_BIN_EXE_allocate-http");

/// The server binary as a child, its stderr read line by line, in a scratch working
/// folder (for whatever it writes by default); killed, and the folder removed, on drop.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    dir: PathBuf,
}

impl Proc {
    /// Starts the binary with `args` (every `ALLOCATE_*` variable removed).
    pub fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_env(args, &[])
    }

    /// [`Proc::spawn`] with `env` set (every other `ALLOCATE_*` variable removed).
    pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let dir = std::env::temp_dir().join(format!("allocate-auth-cwd-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).expect("scratch dir");
        let mut command = Command::new(SERVER_BIN);
        command
            .current_dir(&dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        testkit::env::without_allocate_vars(&mut command);
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("start allocate-http");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            log: Vec::new(),
            dir,
        }
    }

    /// The first new log line containing `needle`; panics after [`STEP`].
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; the log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The address from the "listening" line.
    pub fn address(&mut self) -> SocketAddr {
        let line = self.wait_for("allocate-http listening");
        let (_, address) = line.rsplit_once("address=").expect("address in the line");
        address.trim().parse().expect("a socket address")
    }

    /// Waits for the process to exit by itself; its status and whole log.
    pub fn exit(mut self) -> (ExitStatus, String) {
        let deadline = std::time::Instant::now() + STEP;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "allocate-http did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        (status, self.drain())
    }

    /// Kills the process; its whole log.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain()
    }

    fn drain(&mut self) -> String {
        while let Ok(line) = self.lines.recv_timeout(STEP) {
            self.log.push(line);
        }
        self.log.join("\n")
    }

    /// Sends the signal `name` (`HUP`, `TERM`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("sh")
            .args([
                "-c",
                "kill -s \"$1\" \"$2\"",
                "sh",
                name,
                &self.child.id().to_string(),
            ])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh folder holding a tokens file, removed on drop.
pub struct TokensFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TokensFile {
    /// A tokens file holding `text`, with permissions `mode`.
    pub fn new(text: &str, mode: u32) -> TokensFile {
        let dir = std::env::temp_dir().join(format!("allocate-auth-proc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).expect("temp dir");
        let path = dir.join("tokens");
        let file = TokensFile { dir, path };
        file.write(text, mode);
        file
    }

    /// Replaces the file's text and permissions.
    pub fn write(&self, text: &str, mode: u32) {
        std::fs::write(&self.path, text).expect("write tokens");
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Its path, as a flag's value.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TokensFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
