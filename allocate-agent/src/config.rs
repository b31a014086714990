//! The agent's command line (every flag also reads an `ALLOCATE_AGENT_*` variable), and turning
//! it into a registration and a responder.

use crate::commands::{parse_connection, Commands};
use crate::detect::{self, DetectError};
use crate::orders::Responder;
use allocate_core::{Connection, Gpu, ResourceSpec};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

/// Where a machine's stable id is read from, in order, when no agent id is given.
const MACHINE_ID_FILES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

/// The name of the file in `--state-dir` that holds the agent id.
pub const AGENT_ID_FILE: &str = "agent-id";

/// The namespace for agent ids derived from a machine id (UUID v5 of this name, so the
/// machine id itself is never sent).
const AGENT_ID_NAMESPACE_NAME: &[u8] = b"urn:allocate:agent-id";

/// `allocate-agent`: registers this machine with an allocate server and prepares it for users.
#[derive(Debug, Parser)]
#[command(name = "allocate-agent", version)]
pub struct Cli {
    /// The server's agent endpoint (ws:// or wss://; http:// and https:// name the same). The
    /// replicas of one store: repeat it or separate the URLs with commas; the agent
    /// registers with whichever leads.
    #[arg(
        long,
        visible_alias = "url",
        env = "ALLOCATE_AGENT_SERVER",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080/agent/"
    )]
    pub server: Vec<String>,

    /// Bearer token (role `agent`) sent on the websocket upgrade.
    #[arg(long, env = "ALLOCATE_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// A file holding the bearer token (keeps it out of `ps`).
    #[arg(long, env = "ALLOCATE_AGENT_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// A PEM file of CA certificates to trust for wss:// besides the system's roots.
    #[arg(long, env = "ALLOCATE_AGENT_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// The agent's id; default: the id in --state-dir, else one derived from /etc/machine-id.
    #[arg(long, env = "ALLOCATE_AGENT_ID")]
    pub agent_id: Option<Uuid>,

    /// A directory for the agent's state: its id is kept in `agent-id` there (created if absent).
    #[arg(long, env = "ALLOCATE_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// A label that requests' tags match (repeatable; the variable is comma-separated).
    #[arg(
        long = "label",
        env = "ALLOCATE_AGENT_LABELS",
        value_delimiter = ',',
        value_name = "LABEL"
    )]
    pub labels: Vec<String>,

    /// The resource's type, free text such as `VM`, `device`, `server-onsite`.
    #[arg(
        long = "type",
        env = "ALLOCATE_AGENT_TYPE",
        default_value = "server-onsite"
    )]
    pub kind: String,

    /// The address users reach this machine by (default: its host name).
    #[arg(long, env = "ALLOCATE_AGENT_HOST")]
    pub host: Option<String>,

    /// The resource's own inventory id (default: the server assigns a stable one).
    #[arg(long, env = "ALLOCATE_AGENT_INVENTORY_ID")]
    pub inventory_id: Option<Uuid>,

    /// Register this many CPUs instead of detecting them.
    #[arg(long, env = "ALLOCATE_AGENT_CPU_COUNT")]
    pub cpu_count: Option<u64>,

    /// Register this much memory (GiB) instead of reading /proc/meminfo.
    #[arg(long, env = "ALLOCATE_AGENT_MEMORY_GB")]
    pub memory_gb: Option<u64>,

    /// Register this GPU instead of asking nvidia-smi, as LABEL:MEMORY_GB (repeatable).
    #[arg(long = "gpu", env = "ALLOCATE_AGENT_GPUS", value_delimiter = ',',
          value_name = "LABEL:MEMORY_GB", value_parser = parse_gpu)]
    pub gpus: Vec<Gpu>,

    /// Register no GPUs and do not run nvidia-smi.
    #[arg(long, env = "ALLOCATE_AGENT_NO_GPU", conflicts_with = "gpus",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_gpu: bool,

    /// The nvidia-smi program to run (default: `nvidia-smi` on PATH, none if absent).
    #[arg(long, env = "ALLOCATE_AGENT_NVIDIA_SMI", value_name = "PATH")]
    pub nvidia_smi: Option<PathBuf>,

    /// Shell command run for each provision; prints {"host","username","password"} on stdout.
    #[arg(long, env = "ALLOCATE_AGENT_PROVISION_COMMAND", value_name = "COMMAND")]
    pub provision_command: Option<String>,

    /// Shell command run for each release (default: acknowledge at once).
    #[arg(
        long,
        env = "ALLOCATE_AGENT_RELEASE_COMMAND",
        value_name = "COMMAND",
        requires = "provision_command"
    )]
    pub release_command: Option<String>,

    /// Seconds a provision or release command may run before it is killed.
    #[arg(
        long,
        env = "ALLOCATE_AGENT_COMMAND_TIMEOUT_SECS",
        default_value_t = 25
    )]
    pub command_timeout_secs: u64,

    /// Static connection: the host (default: --host).
    #[arg(long, env = "ALLOCATE_AGENT_STATIC_HOST", conflicts_with_all = ["provision_command", "connection_file"])]
    pub static_host: Option<String>,

    /// Static connection: the login name.
    #[arg(long, env = "ALLOCATE_AGENT_STATIC_USERNAME", conflicts_with_all = ["provision_command", "connection_file"])]
    pub static_username: Option<String>,

    /// Static connection: the SSH port, when not 22.
    #[arg(long, env = "ALLOCATE_AGENT_STATIC_PORT", value_parser = clap::value_parser!(u16).range(1..),
          conflicts_with_all = ["provision_command", "connection_file"])]
    pub static_port: Option<u16>,

    /// Static connection: the password (prefer the variable or --connection-file); none for
    /// a key login.
    #[arg(long, env = "ALLOCATE_AGENT_STATIC_PASSWORD", hide_env_values = true,
          conflicts_with_all = ["provision_command", "connection_file"])]
    pub static_password: Option<String>,

    /// Static connection from a JSON file {"host","username","password"} ("host" optional).
    #[arg(
        long,
        env = "ALLOCATE_AGENT_CONNECTION_FILE",
        conflicts_with = "provision_command"
    )]
    pub connection_file: Option<PathBuf>,

    /// First reconnect delay in milliseconds (doubles with jitter after each failure).
    #[arg(long, env = "ALLOCATE_AGENT_RECONNECT_MIN_MS", default_value_t = 500)]
    pub reconnect_min_ms: u64,

    /// Longest reconnect delay in milliseconds.
    #[arg(
        long,
        env = "ALLOCATE_AGENT_RECONNECT_MAX_MS",
        default_value_t = 30_000
    )]
    pub reconnect_max_ms: u64,

    /// Print the registration this agent would send (passwords redacted) and exit.
    #[arg(long)]
    pub print_resources: bool,
}

/// Why the agent's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The agent id file could not be written.
    #[error("could not write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The agent id file does not hold a UUID.
    #[error("{path} does not hold an agent id (a UUID)")]
    BadAgentIdFile {
        /// The file.
        path: PathBuf,
    },
    /// No agent id was given and none can be derived.
    #[error("no agent id: give --agent-id or --state-dir (this machine has no /etc/machine-id)")]
    NoAgentId,
    /// The token file is empty.
    #[error("token file {path} is empty")]
    EmptyToken {
        /// The file.
        path: PathBuf,
    },
    /// The machine's resources could not be detected.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// The registration breaks the contract's rules.
    #[error("the registration would be refused: {0}")]
    Invalid(allocate_core::Error),
    /// The connection file is not a connection object.
    #[error("connection file {path}: {why}")]
    ConnectionFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Some but not all static connection details were given.
    #[error("a static connection needs --static-username")]
    IncompleteStatic,
    /// A static connection has no host.
    #[error("a static connection needs a host: give --static-host or --host")]
    NoStaticHost,
    /// Nothing says how to answer a provision.
    #[error("nothing to answer provisions with: give --provision-command, or a static connection (--static-username, or --connection-file)")]
    NoResponder,
    /// A server URL cannot be used.
    #[error("--server (or ALLOCATE_AGENT_SERVER): {0}")]
    Server(allocate_client::Error),
    /// The token or the CA file cannot be used.
    #[error(transparent)]
    Client(allocate_client::Error),
}

/// Reads `LABEL:MEMORY_GB` (the label may itself hold colons).
pub fn parse_gpu(text: &str) -> Result<Gpu, String> {
    let (label, gb) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not LABEL:MEMORY_GB"))?;
    let memory_gb = gb
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: memory {gb:?} is not a whole number of GiB"))?;
    let label = label.trim();
    if label.is_empty() {
        return Err(format!("{text:?}: the label is empty"));
    }
    Ok(Gpu {
        label: label.to_owned(),
        memory_gb,
    })
}

/// The agent id derived from the text of a machine-id file, if it holds one.
pub fn agent_id_from_machine_id(text: &str) -> Option<Uuid> {
    let id = text.trim();
    if id.is_empty() {
        return None;
    }
    let namespace = Uuid::new_v5(&Uuid::NAMESPACE_URL, AGENT_ID_NAMESPACE_NAME);
    Some(Uuid::new_v5(&namespace, id.as_bytes()))
}

/// Reads the agent id kept in `dir`, creating the directory and a new random id if needed.
pub fn agent_id_in_state_dir(dir: &Path) -> Result<Uuid, ConfigError> {
    let path = dir.join(AGENT_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| ConfigError::BadAgentIdFile { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Uuid::new_v4();
            let write = |path: &Path| {
                std::fs::create_dir_all(dir)?;
                std::fs::write(path, format!("{id}\n"))
            };
            write(&path).map_err(|source| ConfigError::Write {
                path: path.clone(),
                source,
            })?;
            tracing::info!(agent_id = %id, path = %path.display(), "created a new agent id");
            Ok(id)
        }
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

impl Cli {
    /// The agent id: the flag, else the state directory's, else one derived from the machine id.
    pub fn resolve_agent_id(&self) -> Result<Uuid, ConfigError> {
        if let Some(id) = self.agent_id {
            return Ok(id);
        }
        if let Some(dir) = &self.state_dir {
            return agent_id_in_state_dir(dir);
        }
        MACHINE_ID_FILES
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .find_map(|text| agent_id_from_machine_id(&text))
            .ok_or(ConfigError::NoAgentId)
    }

    /// The host users reach this machine by: `--host`, else the machine's host name.
    pub fn resolve_host(&self) -> Option<String> {
        self.host.clone().or_else(detect::hostname)
    }

    /// The bearer token from `--token` or `--token-file`.
    pub fn resolve_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.token_file else {
            return Ok(self.token.clone());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ConfigError::EmptyToken { path: path.clone() });
        }
        Ok(Some(token.to_owned()))
    }

    /// The static connection, if one is configured.
    pub fn static_connection(&self, host: Option<&str>) -> Result<Option<Connection>, ConfigError> {
        if let Some(path) = &self.connection_file {
            let text = std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            warn_if_readable_by_others(path);
            return parse_connection(&text, host).map(Some).map_err(|why| {
                ConfigError::ConnectionFile {
                    path: path.clone(),
                    why,
                }
            });
        }
        match (&self.static_username, &self.static_password) {
            (None, None) if self.static_host.is_none() && self.static_port.is_none() => Ok(None),
            (Some(username), password) => {
                let host = self
                    .static_host
                    .as_deref()
                    .or(host)
                    .ok_or(ConfigError::NoStaticHost)?;
                Ok(Some(Connection {
                    host: host.to_owned(),
                    username: username.clone(),
                    password: password.clone(),
                    port: self.static_port,
                }))
            }
            (None, _) => Err(ConfigError::IncompleteStatic),
        }
    }

    /// How provisions are answered, if configured: a static connection or the commands.
    pub fn responder(
        &self,
        agent_id: Uuid,
        host: Option<&str>,
        static_connection: Option<&Connection>,
    ) -> Option<Responder> {
        if let Some(c) = static_connection {
            return Some(Responder::Static(c.clone()));
        }
        let provision = self.provision_command.clone()?;
        Some(Responder::Commands(Commands {
            provision,
            release: self.release_command.clone(),
            timeout: Duration::from_secs(self.command_timeout_secs),
            host: host.map(str::to_owned),
            agent_id,
        }))
    }

    /// The machine as one resource: flags where given, detection for the rest.
    pub async fn resource(
        &self,
        connection: Option<Connection>,
    ) -> Result<ResourceSpec, ConfigError> {
        let cpu_count = self.cpu_count.unwrap_or_else(detect::cpu_count);
        let memory_gb = match self.memory_gb {
            Some(gb) => gb,
            None => detect::memory_gb()?,
        };
        let gpu = if self.no_gpu {
            Vec::new()
        } else if !self.gpus.is_empty() {
            self.gpus.clone()
        } else {
            detect::nvidia_gpus(self.nvidia_smi.as_deref()).await?
        };
        Ok(ResourceSpec {
            inventory_id: self.inventory_id,
            labels: self
                .labels
                .iter()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect(),
            cpu_count,
            memory_gb,
            gpu,
            kind: self.kind.clone(),
            connection: connection.map(Into::into),
        })
    }

    /// The first reconnect delay and the longest.
    pub fn reconnect(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.reconnect_min_ms.max(1)),
            Duration::from_millis(self.reconnect_max_ms.max(1)),
        )
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the connection file holds a password but others may read it; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("allocate-agent").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_replicas_of_a_store_are_repeated_or_comma_separated() {
        let urls = ["ws://a:1/agent/", "ws://b:2/agent/", "ws://c:3/agent/"];
        let given = cli(&[
            "--server",
            "ws://a:1/agent/,ws://b:2/agent/",
            "--url",
            urls[2],
        ]);
        assert_eq!(given.server, urls);
        assert_eq!(cli(&[]).server, ["ws://127.0.0.1:8080/agent/"]);
    }

    #[test]
    fn gpu_flags_parse() {
        assert_eq!(
            parse_gpu("NVIDIA H100 80GB HBM3:80").unwrap(),
            Gpu {
                label: "NVIDIA H100 80GB HBM3".into(),
                memory_gb: 80
            }
        );
        assert!(parse_gpu("no memory").is_err());
        assert!(parse_gpu(":8").is_err());
        assert!(parse_gpu("x:eight").is_err());
    }

    #[test]
    fn machine_ids_give_stable_agent_ids() {
        let a = agent_id_from_machine_id("0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(
            a,
            agent_id_from_machine_id("0123456789abcdef0123456789abcdef").unwrap()
        );
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(
            a,
            agent_id_from_machine_id("fedcba9876543210fedcba9876543210").unwrap()
        );
        assert_eq!(agent_id_from_machine_id(" \n"), None);
    }

    #[test]
    fn state_dir_keeps_the_id() {
        let dir = std::env::temp_dir().join(format!("allocate-agent-state-{}", Uuid::new_v4()));
        let first = agent_id_in_state_dir(&dir).unwrap();
        assert_eq!(agent_id_in_state_dir(&dir).unwrap(), first);
        std::fs::write(dir.join(AGENT_ID_FILE), "nope").unwrap();
        assert!(matches!(
            agent_id_in_state_dir(&dir),
            Err(ConfigError::BadAgentIdFile { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn static_connections_and_responders() {
        let c = cli(&["--static-username", "lab", "--static-password", "pw"]);
        let conn = c.static_connection(Some("box-1")).unwrap().unwrap();
        assert_eq!(conn.host, "box-1");
        assert!(matches!(
            c.responder(Uuid::nil(), None, Some(&conn)),
            Some(Responder::Static(_))
        ));
        assert!(matches!(
            cli(&["--static-password", "pw"]).static_connection(Some("h")),
            Err(ConfigError::IncompleteStatic)
        ));
        // A key login: no password, perhaps another port.
        let keys = cli(&["--static-username", "lab", "--static-port", "2222"])
            .static_connection(Some("h"))
            .unwrap()
            .unwrap();
        assert_eq!((keys.password, keys.port), (None, Some(2222)));
        for port in ["0", "65536", "ssh"] {
            let parsed = Cli::try_parse_from(["allocate-agent", "--static-port", port]);
            assert!(parsed.is_err_and(|e| e.to_string().contains("--static-port")));
        }
        assert!(matches!(
            c.static_connection(None),
            Err(ConfigError::NoStaticHost)
        ));
        let none = cli(&[]);
        assert!(none.static_connection(Some("h")).unwrap().is_none());
        assert!(none.responder(Uuid::nil(), None, None).is_none());
        let cmd = cli(&["--provision-command", "true", "--release-command", "true"]);
        assert!(matches!(
            cmd.responder(Uuid::nil(), None, None),
            Some(Responder::Commands(_))
        ));
        assert!(Cli::try_parse_from([
            "allocate-agent",
            "--provision-command",
            "x",
            "--static-username",
            "u"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["allocate-agent", "--release-command", "x"]).is_err());
    }

    #[test]
    fn labels_split_on_commas() {
        let c = cli(&["--label", "nvidia,cuda", "--label", "lab-3"]);
        assert_eq!(c.labels, ["nvidia", "cuda", "lab-3"]);
    }
}
