//! Running the operator's provision and release commands, and reading what they print.
//!
//! Each command runs as `sh -c '<command>'` in its own process group with stdin closed (a
//! provision's holds the order, see below) and these variables set: `ALLOCATE_ALLOCATION_ID`,
//! `ALLOCATE_INVENTORY_ID`, `ALLOCATE_USERNAME`, `ALLOCATE_EXPIRES` (unix seconds),
//! `ALLOCATE_AGENT_ID` and, when known, `ALLOCATE_HOST`. A release gets the username and expiry only when this agent ran the provision. The agent's own
//! token variable is removed from the command's environment.
//!
//! The provision command also gets what the user sent for the machine: `ALLOCATE_SSH_KEYS`, the
//! request's public keys one per line (the format of `authorized_keys`; empty when none, left
//! out when longer than [`SSH_KEYS_ENV_BYTES_MAX`]), `ALLOCATE_PROVISION`, the request's
//! `provision` object as compact JSON (`{}` when none), and on stdin one JSON object with all of
//! the order: `{"allocation_id", "inventory_id", "username", "expires", "ssh_keys": [...],
//! "provision": {...}}` (the same keys and object, never truncated). A command may ignore stdin.
//!
//! The provision command prints `{"host", "username", "password", "port"}` on stdout (`host`
//! may be left out, then the agent's `--host` is used; `password` for a key login and `port`
//! for SSH's default). A command that exits non-zero, runs past the
//! timeout (its whole process group is then killed) or prints something else fails; the last
//! line of its stderr becomes part of the error the server shows as the resource's reason.

use allocate_core::wire::{ProvisionOrder, ReleaseOrder};
use allocate_core::Connection;
use serde_json::Value;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use uuid::Uuid;

/// Most bytes read from a command's stdout; more is an error.
pub const STDOUT_BYTES_MAX: usize = 64 * 1024;

/// Most bytes of a command's stderr kept (the end of it).
const STDERR_BYTES_MAX: usize = 16 * 1024;

/// Most bytes of `ALLOCATE_SSH_KEYS`: one environment string may not exceed 128 KiB on Linux,
/// and the contract allows 16 keys of 16 KiB. Longer key lists are on stdin only.
pub const SSH_KEYS_ENV_BYTES_MAX: usize = 64 * 1024;

/// Most characters of stderr quoted in an error.
const STDERR_QUOTE_CHARS_MAX: usize = 160;

/// Environment variables a command must not inherit from the agent.
const HIDDEN_ENV: [&str; 2] = ["ALLOCATE_AGENT_TOKEN", "ALLOCATE_AGENT_STATIC_PASSWORD"];

/// Why a command did not give a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// `sh` could not be started.
    #[error("{what} command could not start: {source}")]
    Spawn {
        /// `provision` or `release`.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The command ran past its timeout and was killed.
    #[error("{what} command did not finish within {after:?} and was killed")]
    TimedOut {
        /// `provision` or `release`.
        what: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The command exited with an error.
    #[error("{what} command failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        /// `provision` or `release`.
        what: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// The last line of its stderr (shortened).
        stderr: String,
    },
    /// The command printed more than [`STDOUT_BYTES_MAX`] bytes.
    #[error("{what} command printed more than {STDOUT_BYTES_MAX} bytes on stdout")]
    TooMuchOutput {
        /// `provision` or `release`.
        what: &'static str,
    },
    /// The provision command's stdout is not a connection object.
    #[error("provision command's stdout is not a connection object {{\"host\", \"username\", \"password\"}}: {0}")]
    BadConnection(String),
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// The operator's commands and how to run them.
#[derive(Clone, Debug)]
pub struct Commands {
    /// Run for each provision; prints the connection JSON.
    pub provision: String,
    /// Run for each release, if any; without one a release is acknowledged at once.
    pub release: Option<String>,
    /// How long one command may run.
    pub timeout: Duration,
    /// The address users reach this machine by (`ALLOCATE_HOST`, and the default `host`).
    pub host: Option<String>,
    /// This agent's id (`ALLOCATE_AGENT_ID`).
    pub agent_id: Uuid,
}

/// What the agent remembers of an allocation it provisioned, for its release command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Who held it.
    pub username: String,
    /// When its lease ended.
    pub expires: u64,
}

impl Commands {
    /// Runs the provision command for `order` and reads the connection it prints.
    pub async fn provision(&self, order: &ProvisionOrder) -> Result<Connection, CommandError> {
        let mut env = self.env(
            order.allocation_id,
            order.inventory_id,
            Some(&Holder {
                username: order.username.clone(),
                expires: order.expires,
            }),
        );
        let keys = order.ssh_keys.join("\n");
        if keys.len() <= SSH_KEYS_ENV_BYTES_MAX {
            env.push(("ALLOCATE_SSH_KEYS", keys));
        }
        let empty = serde_json::Map::new();
        let provision = order.provision.as_ref().unwrap_or(&empty);
        env.push((
            "ALLOCATE_PROVISION",
            Value::from(provision.clone()).to_string(),
        ));
        let stdin = serde_json::json!({
            "allocation_id": order.allocation_id,
            "inventory_id": order.inventory_id,
            "username": order.username,
            "expires": order.expires,
            "ssh_keys": order.ssh_keys,
            "provision": provision,
        });
        let stdin = Some(stdin.to_string().into_bytes());
        let stdout = self.run("provision", &self.provision, &env, stdin).await?;
        parse_connection(&stdout, self.host.as_deref()).map_err(CommandError::BadConnection)
    }

    /// Runs the release command, if there is one, for `order`.
    pub async fn release(
        &self,
        order: &ReleaseOrder,
        holder: Option<&Holder>,
    ) -> Result<(), CommandError> {
        let Some(command) = &self.release else {
            return Ok(());
        };
        let env = self.env(order.allocation_id, order.inventory_id, holder);
        self.run("release", command, &env, None).await.map(|_| ())
    }

    fn env(
        &self,
        allocation_id: Uuid,
        inventory_id: Uuid,
        holder: Option<&Holder>,
    ) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("ALLOCATE_ALLOCATION_ID", allocation_id.to_string()),
            ("ALLOCATE_INVENTORY_ID", inventory_id.to_string()),
            ("ALLOCATE_AGENT_ID", self.agent_id.to_string()),
        ];
        if let Some(h) = holder {
            env.push(("ALLOCATE_USERNAME", h.username.clone()));
            env.push(("ALLOCATE_EXPIRES", h.expires.to_string()));
        }
        if let Some(host) = &self.host {
            env.push(("ALLOCATE_HOST", host.clone()));
        }
        env
    }

    /// Runs `sh -c command` with `env` and `stdin` (closed when `None`), bounded by the timeout;
    /// returns its stdout.
    async fn run(
        &self,
        what: &'static str,
        command: &str,
        env: &[(&'static str, String)],
        stdin: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, CommandError> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout can kill whatever the script started too.
            .process_group(0)
            .kill_on_drop(true);
        for name in HIDDEN_ENV {
            cmd.env_remove(name);
        }
        let mut child = cmd
            .spawn()
            .map_err(|source| CommandError::Spawn { what, source })?;
        let pid = child.id();
        if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
            // Apart from the wait below: a command that never reads stdin (or leaves it to
            // something it starts in the background) must not hold up its own answer.
            let timeout = self.timeout;
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                // A command that exits without reading closes the pipe: not an error.
                let _ = tokio::time::timeout(timeout, pipe.write_all(&bytes)).await;
            });
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let finished = async {
            let (out, err, status) = tokio::join!(
                read_head(stdout, STDOUT_BYTES_MAX),
                read_tail(stderr, STDERR_BYTES_MAX),
                child.wait()
            );
            (out, err, status)
        };
        let Ok((out, err, status)) = tokio::time::timeout(self.timeout, finished).await else {
            if let Some(pid) = pid {
                kill_group(pid).await;
            }
            return Err(CommandError::TimedOut {
                what,
                after: self.timeout,
            });
        };
        let status = status.map_err(|source| CommandError::Spawn { what, source })?;
        let err = String::from_utf8_lossy(&err);
        if !err.trim().is_empty() {
            tracing::debug!(command = what, stderr = %err.trim_end(), "command stderr");
        }
        if !status.success() {
            let last = err.lines().rev().map(str::trim).find(|l| !l.is_empty());
            return Err(CommandError::Failed {
                what,
                status,
                stderr: clip(last.unwrap_or(""), STDERR_QUOTE_CHARS_MAX),
            });
        }
        match out {
            Some(out) => Ok(out),
            None => Err(CommandError::TooMuchOutput { what }),
        }
    }
}

/// Kills the process group `pgid` (the command and everything it started).
async fn kill_group(pgid: u32) {
    // The shell's `kill` does this without unsafe code or another dependency (and, being a
    // builtin, is there even where no `kill` program is installed).
    let result = tokio::process::Command::new("sh")
        .args(["-c", &format!("kill -s KILL -- -{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(e) = result {
        tracing::warn!(pgid, error = %e, "could not kill a timed-out command's process group");
    }
}

/// Reads all of `pipe`; `None` when it holds more than `max` bytes (the rest is drained).
async fn read_head(mut pipe: impl AsyncRead + Unpin, max: usize) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut over = false;
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) if !over && buf.len() + n <= max => buf.extend_from_slice(&chunk[..n]),
            // Keep reading so the command is not blocked on a full pipe; drop what comes.
            Ok(_) => over = true,
        }
    }
    (!over).then_some(buf)
}

/// Reads all of `pipe`, keeping its last `max` bytes.
async fn read_tail(mut pipe: impl AsyncRead + Unpin, max: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > max {
                    buf.drain(..buf.len() - max);
                }
            }
        }
    }
    buf
}

/// Reads `{"host", "username", "password"}`; a missing `host` is `default_host`.
///
/// Errors name fields and kinds, never values: the text holds a password, and the error
/// travels to the server, which shows it as the resource's reason.
pub fn parse_connection(text: &[u8], default_host: Option<&str>) -> Result<Connection, String> {
    let text = std::str::from_utf8(text).map_err(|_| "it is not UTF-8".to_owned())?;
    let value: Value = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Eof if text.trim().is_empty() => "it is empty".to_owned(),
        _ => format!(
            "it is not JSON (error at line {} column {})",
            e.line(),
            e.column()
        ),
    })?;
    let Value::Object(map) = value else {
        return Err("it is JSON but not an object".to_owned());
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !["host", "username", "password", "port"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field `{}`; expected host, username, password, port",
            clip(unknown, 40)
        ));
    }
    let field = |name: &str| -> Result<Option<String>, String> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{name} must be a string")),
        }
    };
    let (host, username, password) = (field("host")?, field("username")?, field("password")?);
    let host = match host {
        Some(h) => h,
        None => default_host
            .map(str::to_owned)
            .ok_or("host is missing and the agent has no --host")?,
    };
    let username = username.ok_or("username is missing")?;
    let port = match map.get("port") {
        None | Some(Value::Null) => None,
        Some(p) => Some(
            p.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or("port must be an integer between 1 and 65535")?,
        ),
    };
    if host.trim().is_empty() {
        return Err("host must not be empty".into());
    }
    if username.trim().is_empty() {
        return Err("username must not be empty".into());
    }
    Ok(Connection {
        host,
        username,
        password,
        port,
    })
}

/// `text` cut to at most `chars_max` characters, with `…` when cut.
pub fn clip(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(chars_max.saturating_sub(1)).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_parse_without_quoting_values() {
        let c = parse_connection(
            br#"{"host":"10.0.0.7","username":"u","password":"p"}"#,
            None,
        )
        .unwrap();
        assert_eq!(c.host, "10.0.0.7");
        let c = parse_connection(br#"{"username":"u","password":"p"}"#, Some("lab-3")).unwrap();
        assert_eq!(c.host, "lab-3");
        let cases: [(&[u8], &str); 7] = [
            (b"", "it is empty"),
            (
                b"secret-ish garbage",
                "it is not JSON (error at line 1 column 1)",
            ),
            (b"[1]", "it is JSON but not an object"),
            (
                br#"{"username":"u","password":7777}"#,
                "password must be a string",
            ),
            (br#"{"username":"u","pass":"x"}"#, "unknown field `pass`"),
            (br#"{"username":"u"}"#, "host is missing"),
            (br#"{"host":"h","password":"x"}"#, "username is missing"),
        ];
        for (text, want) in cases {
            let err = parse_connection(text, None).unwrap_err();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
            assert!(!err.contains("7777"));
        }
    }

    #[test]
    fn failed_error_quotes_stderr() {
        let status = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .status()
            .unwrap();
        let err = CommandError::Failed {
            what: "provision",
            status,
            stderr: "disk full".into(),
        };
        assert_eq!(
            err.to_string(),
            "provision command failed (exit status: 3): disk full"
        );
    }
}
