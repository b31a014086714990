//! The server's settings: command-line flags (each also read from an `ALLOCATE_*` variable).

use crate::auth::tokens::{Tokens, TokensError};
use crate::connections::Caps;
use crate::journal::{JournalConfig, JournalStore};
use crate::quotas::{PolicyFile, PolicyFileError};
use crate::tls::{Tls, TlsError};
use clap::builder::BoolishValueParser;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Flags of the `allocate-http` binary.
#[derive(Clone, Debug, Parser)]
#[command(name = "allocate-http", version, about = "Serves the allocate API")]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "ALLOCATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve on a non-loopback address although no tokens are configured (anyone can use it).
    #[arg(long, env = "ALLOCATE_ALLOW_OPEN", value_parser = BoolishValueParser::new())]
    pub allow_open: bool,
    /// File of bearer tokens, one `TOKEN ROLE [NAME]` per line, readable by this user only;
    /// without it the server runs open. Read again on SIGHUP.
    #[arg(long, env = "ALLOCATE_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// File of quotas (JSON; see the README's "Quotas"): limits per user, per group and by
    /// default. Read again on SIGHUP.
    #[arg(long, env = "ALLOCATE_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// Serve HTTPS and WSS with this certificate chain (PEM, the server's certificate first);
    /// needs --tls-key. Read again on SIGHUP.
    #[arg(long, env = "ALLOCATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1). Read again on SIGHUP.
    #[arg(long, env = "ALLOCATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Lease length when a request names no `expires`.
    #[arg(long, env = "ALLOCATE_LEASE_SECS_DEFAULT", default_value_t = 3600)]
    pub lease_secs_default: u64,
    /// Longest lease; a later `expires` is capped to now plus this.
    #[arg(long, env = "ALLOCATE_LEASE_SECS_MAX", default_value_t = 7 * 24 * 3600)]
    pub lease_secs_max: u64,
    /// How long an agent has to answer a provision before the resource goes to `error`.
    #[arg(long, env = "ALLOCATE_PROVISION_TIMEOUT_MS", default_value_t = 30_000)]
    pub provision_timeout_ms: u64,
    /// How long an agent has to acknowledge a release before the resource goes to `error`.
    #[arg(long, env = "ALLOCATE_RELEASE_TIMEOUT_MS", default_value_t = 30_000)]
    pub release_timeout_ms: u64,
    /// The order of waiting requests: `arrival`, or `fair-share` (the user holding the fewest
    /// resources first, ties by arrival); see the README's "Order and starvation".
    #[arg(long, env = "ALLOCATE_ORDER", value_enum, default_value_t = OrderArg::Arrival)]
    pub order: OrderArg,
    /// How many days the usage of an ended allocation is kept (for `GET /usage`).
    #[arg(long, env = "ALLOCATE_USAGE_RETENTION_DAYS", default_value_t = 90)]
    pub usage_retention_days: u64,
    /// Moves in the queue are reported to waiting clients at most this often (a new
    /// request hears its place at once); 0 reports every move batch at once.
    #[arg(long, env = "ALLOCATE_POSITION_REPORT_MS", default_value_t = 250)]
    pub position_report_ms: u64,
    /// How often each websocket is pinged.
    #[arg(long, env = "ALLOCATE_PING_INTERVAL_MS", default_value_t = 5_000)]
    pub ping_interval_ms: u64,
    /// A websocket silent this long (no message, no pong) is dropped; also the time a new
    /// socket has to send its first message.
    #[arg(long, env = "ALLOCATE_IDLE_TIMEOUT_MS", default_value_t = 15_000)]
    pub idle_timeout_ms: u64,
    /// Time a client has to send a request's head (request line and headers), counted
    /// from the connection's start or the end of the previous answer; then it is closed.
    #[arg(
        long,
        env = "ALLOCATE_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in progress and no byte moving for this long is closed.
    #[arg(long, env = "ALLOCATE_KEEP_ALIVE_TIMEOUT_MS", default_value_t = 5_000)]
    pub keep_alive_timeout_ms: u64,
    /// A write (an HTTP answer, a websocket message) that makes no progress for this long,
    /// because the client does not read, closes the connection.
    #[arg(long, env = "ALLOCATE_WRITE_TIMEOUT_MS", default_value_t = 15_000)]
    pub write_timeout_ms: u64,
    /// Open connections at most (HTTP and websockets); more are answered 503. Lowered to
    /// what the open-files limit allows.
    #[arg(long, env = "ALLOCATE_CONNECTIONS_MAX", default_value_t = 16_384)]
    pub connections_max: usize,
    /// Open connections at most from one peer address; more are answered 503.
    #[arg(
        long,
        env = "ALLOCATE_CONNECTIONS_PER_PEER_MAX",
        default_value_t = 1_024
    )]
    pub connections_per_peer_max: usize,
    /// Directory of the journal and snapshots (created readable by this user only).
    #[arg(long, env = "ALLOCATE_DATA_DIR", default_value = "./allocate-data")]
    pub data_dir: PathBuf,
    /// Keep the journal and snapshots in PostgreSQL instead (`postgres://user@host/db`):
    /// one server writes, others on the same store wait as standbys.
    #[arg(long, env = "ALLOCATE_STORE", value_parser = postgres_url, conflicts_with = "in_memory")]
    pub store: Option<String>,
    /// With `--store`: the URL clients reach this server at, which standbys name in their
    /// `503 not_leader` answers while this server leads.
    #[arg(long, env = "ALLOCATE_ADVERTISE_URL", requires = "store")]
    pub advertise_url: Option<String>,
    /// With `--store`: PostgreSQL ends the writer's session once it is silent this long
    /// (paused, cut off), which lets a standby take over; at least 2 (the writer's
    /// heartbeat runs every second).
    #[arg(
        long,
        env = "ALLOCATE_STORE_SESSION_TIMEOUT_SECS",
        default_value_t = JournalConfig::SESSION_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(2..)
    )]
    pub store_session_timeout_secs: u64,
    /// Keep no journal: a restart forgets every allocation.
    #[arg(long, env = "ALLOCATE_IN_MEMORY", value_parser = BoolishValueParser::new())]
    pub in_memory: bool,
    /// Write a snapshot (and start a new journal file) after this many records...
    #[arg(long, env = "ALLOCATE_SNAPSHOT_EVERY_RECORDS", default_value_t = JournalConfig::SNAPSHOT_EVERY_RECORDS)]
    pub snapshot_every_records: u64,
    /// ... or this many seconds after the last one, if anything was recorded since.
    #[arg(long, env = "ALLOCATE_SNAPSHOT_EVERY_SECS", default_value_t = JournalConfig::SNAPSHOT_EVERY_SECS)]
    pub snapshot_every_secs: u64,
    /// Log filter, such as `info` or `allocate_http=debug` (tracing's `EnvFilter` syntax).
    #[arg(long, env = "ALLOCATE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log lines as text, or as JSON objects, one a line.
    #[arg(long, env = "ALLOCATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The order of waiting requests (`--order`), as the engine's [`allocate_core::Order`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OrderArg {
    /// Earliest arrival first.
    Arrival,
    /// The user holding the fewest resources first; ties by arrival.
    FairShare,
}

impl From<OrderArg> for allocate_core::Order {
    fn from(order: OrderArg) -> Self {
        match order {
            OrderArg::Arrival => allocate_core::Order::Arrival,
            OrderArg::FairShare => allocate_core::Order::FairShare,
        }
    }
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people: time, level, target, message, then `field=value` pairs.
    Text,
    /// For machines: one JSON object per line (tracing-subscriber's JSON layer), the fields
    /// at its top level.
    Json,
}

/// `--store`: a `postgres://` (or `postgresql://`) URL that the client can read.
fn postgres_url(url: &str) -> Result<String, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("the store must be a postgres:// URL".to_owned());
    }
    url.parse::<postgres::Config>()
        .map(|_| url.to_owned())
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))
}

/// Why the flags cannot be served.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A non-loopback address while the server runs open (no tokens) and `--allow-open` is off.
    #[error(
        "refusing to listen on {0}: no tokens are configured, so anyone who can reach it could \
         allocate; listen on a loopback address, pass --tokens-file, or pass --allow-open"
    )]
    OpenToNetwork(SocketAddr),
    /// A timeout or cap that would refuse or close every connection.
    #[error("{0} must be greater than 0")]
    Zero(&'static str),
    /// The tokens file cannot be used.
    #[error(transparent)]
    Tokens(#[from] TokensError),
    /// The certificate or key cannot be served.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The policy file cannot be used.
    #[error(transparent)]
    Policy(#[from] PolicyFileError),
}

impl Args {
    /// Checks that the flags are safe to serve.
    pub fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("--header-read-timeout-ms", self.header_read_timeout_ms),
            ("--keep-alive-timeout-ms", self.keep_alive_timeout_ms),
            ("--write-timeout-ms", self.write_timeout_ms),
            ("--connections-max", self.connections_max as u64),
            (
                "--connections-per-peer-max",
                self.connections_per_peer_max as u64,
            ),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero(flag));
        }
        if self.listen.ip().is_loopback() || self.allow_open || self.tokens_file.is_some() {
            Ok(())
        } else {
            Err(ConfigError::OpenToNetwork(self.listen))
        }
    }

    /// The settings to serve: [`Args::check`], then every flag, the tokens file and the
    /// certificate included.
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        self.check()?;
        let mut config = ServerConfig::from(self);
        if let Some(path) = &self.tokens_file {
            config.tokens = Tokens::load(path)?;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(Tls::load(cert, key)?);
        }
        if let Some(path) = &self.policy_file {
            config.quotas = Some(PolicyFile::load(path)?);
        }
        Ok(config)
    }
}

/// Everything [`crate::run`] needs to know; [`Default`] gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The engine's settings (leases, timeouts, limits).
    pub engine: allocate_core::Config,
    /// Largest websocket message or HTTP body; a larger message closes the socket with 1009.
    pub message_bytes_max: usize,
    /// Moves in the queue are reported at most this often (zero: at once); a new request
    /// hears its place at once.
    pub position_report: Duration,
    /// How often each websocket is pinged.
    pub ping_interval: Duration,
    /// How long a websocket may stay silent before it is dropped.
    pub idle_timeout: Duration,
    /// Outgoing messages a client socket may have waiting; a client that falls further
    /// behind is dropped rather than waited for.
    pub client_queue_len: usize,
    /// How long a websocket close waits for the other side's close reply.
    pub close_wait: Duration,
    /// How long shutdown waits for sockets to close before giving up on them.
    pub shutdown_grace: Duration,
    /// Time a client has to send a request's head, from the connection's start or the end
    /// of the previous answer.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request in progress and no byte moving.
    pub keep_alive_timeout: Duration,
    /// How long a write may make no progress before its connection is closed.
    pub write_timeout: Duration,
    /// Open connections at most, in total and per peer address.
    pub connections: Caps,
    /// The bearer tokens; none (the default) runs the server open.
    pub tokens: Tokens,
    /// The certificate and key of HTTPS and WSS; none (the default) serves plain HTTP.
    pub tls: Option<Tls>,
    /// The policy file whose quotas the engine enforces; none (the default): no quotas.
    pub quotas: Option<PolicyFile>,
    /// The write-ahead journal; `None` (the default here, `--in-memory` for the binary)
    /// keeps everything in memory only.
    pub journal: Option<JournalConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            engine: allocate_core::Config::default(),
            message_bytes_max: 1 << 20,
            position_report: Duration::from_millis(250),
            ping_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            client_queue_len: 64,
            close_wait: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(15),
            connections: Caps {
                total_max: 16_384,
                per_peer_max: 1_024,
            },
            tokens: Tokens::default(),
            tls: None,
            quotas: None,
            journal: None,
        }
    }
}

impl ServerConfig {
    /// Outgoing messages an agent socket may have waiting. An agent can be owed one
    /// provision and one release per resource at once, so a healthy agent never reaches
    /// this bound; one that does is dropped like a slow client.
    pub fn agent_queue_len(&self) -> usize {
        2 * self.engine.limits.resources_per_registration_max + self.client_queue_len
    }
}

/// Every setting but the tokens, the certificate and the policy, which [`Args::server_config`] reads
/// from their files.
impl From<&Args> for ServerConfig {
    fn from(args: &Args) -> Self {
        let defaults = ServerConfig::default();
        ServerConfig {
            engine: allocate_core::Config {
                lease_secs_default: args.lease_secs_default,
                lease_secs_max: args.lease_secs_max,
                provision_timeout_ms: args.provision_timeout_ms,
                release_timeout_ms: args.release_timeout_ms,
                usage_retention_secs: args.usage_retention_days.saturating_mul(24 * 3600),
                order: args.order.into(),
                ..defaults.engine
            },
            position_report: Duration::from_millis(args.position_report_ms),
            ping_interval: Duration::from_millis(args.ping_interval_ms),
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
            header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
            keep_alive_timeout: Duration::from_millis(args.keep_alive_timeout_ms),
            write_timeout: Duration::from_millis(args.write_timeout_ms),
            connections: Caps {
                total_max: args.connections_max,
                per_peer_max: args.connections_per_peer_max,
            },
            journal: (!args.in_memory).then(|| JournalConfig {
                store: match &args.store {
                    Some(url) => JournalStore::Postgres(url.clone()),
                    None => JournalStore::Dir(args.data_dir.clone()),
                },
                snapshot_every_records: args.snapshot_every_records,
                snapshot_every: Duration::from_secs(args.snapshot_every_secs),
                advertise_url: args.advertise_url.clone(),
                session_timeout: Duration::from_secs(args.store_session_timeout_secs),
            }),
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let args = Args::parse_from(["allocate-http"]);
        assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
        let config = ServerConfig::from(&args);
        let journal = Some(JournalConfig::new("./allocate-data"));
        assert_eq!(
            config.journal, journal,
            "the binary keeps a journal by default"
        );
        assert_eq!(
            config,
            ServerConfig {
                journal,
                ..ServerConfig::default()
            }
        );
        assert_eq!(config.message_bytes_max, 1024 * 1024);
        let in_memory = Args::parse_from(["allocate-http", "--in-memory"]);
        assert_eq!(ServerConfig::from(&in_memory).journal, None);
        assert!(args.check().is_ok());
        let open = Args::parse_from(["allocate-http", "--listen", "[::]:80", "--allow-open"]);
        assert!(open.check().is_ok());
        let zero = Args::parse_from(["allocate-http", "--write-timeout-ms", "0"]);
        assert_eq!(
            zero.check().unwrap_err().to_string(),
            "--write-timeout-ms must be greater than 0"
        );
    }

    #[test]
    fn store_takes_a_postgres_url_instead_of_the_data_directory() {
        let url = "postgres://allocate:secret@db.lab/allocate";
        let args = Args::parse_from(["allocate-http", "--store", url]);
        let journal = ServerConfig::from(&args).journal.expect("a journal");
        assert_eq!(journal.store, JournalStore::Postgres(url.to_owned()));
        assert_eq!(journal.session_timeout, Duration::from_secs(10));
        let args = Args::parse_from([
            "allocate-http",
            "--store",
            url,
            "--store-session-timeout-secs",
            "3",
        ]);
        let journal = ServerConfig::from(&args).journal.expect("a journal");
        assert_eq!(journal.session_timeout, Duration::from_secs(3));
        assert!(
            !format!("{journal:?}").contains("secret"),
            "the password stays out of logs"
        );
        for bad in [
            &["--store", "http://db.lab/allocate"][..],
            &["--store", "postgres://db.lab:port/x"],
            &["--store", url, "--in-memory"],
            &["--store", url, "--store-session-timeout-secs", "1"],
        ] {
            let parsed =
                Args::try_parse_from(std::iter::once("allocate-http").chain(bad.iter().copied()));
            assert!(parsed.is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn flags_reach_the_engine() {
        let args = Args::parse_from([
            "allocate-http",
            "--listen",
            "0.0.0.0:9000",
            "--lease-secs-max",
            "60",
            "--provision-timeout-ms",
            "250",
            "--idle-timeout-ms",
            "900",
            "--header-read-timeout-ms",
            "300",
            "--write-timeout-ms",
            "400",
            "--connections-per-peer-max",
            "7",
            "--usage-retention-days",
            "2",
        ]);
        assert!(matches!(args.check(), Err(ConfigError::OpenToNetwork(_))));
        let config = ServerConfig::from(&args);
        assert_eq!(config.engine.lease_secs_max, 60);
        assert_eq!(config.engine.provision_timeout_ms, 250);
        assert_eq!(config.engine.usage_retention_secs, 2 * 24 * 3600);
        assert_eq!(config.idle_timeout, Duration::from_millis(900));
        assert_eq!(config.header_read_timeout, Duration::from_millis(300));
        assert_eq!(config.write_timeout, Duration::from_millis(400));
        assert_eq!(config.connections.per_peer_max, 7);
        assert_eq!(config.connections.total_max, 16_384);
        assert_eq!(args.log_format, LogFormat::Text);
        let json = Args::try_parse_from(["allocate-http", "--log-format", "json"]).unwrap();
        assert_eq!(json.log_format, LogFormat::Json);
        assert!(Args::try_parse_from(["allocate-http", "--log-format", "xml"]).is_err());
        assert_eq!(config.engine.order, allocate_core::Order::Arrival);
        let fair = Args::try_parse_from(["allocate-http", "--order", "fair-share"]).unwrap();
        let order = ServerConfig::from(&fair).engine.order;
        assert_eq!(order, allocate_core::Order::FairShare);
        assert!(Args::try_parse_from(["allocate-http", "--order", "fair"]).is_err());
    }

    #[test]
    fn a_tokens_file_allows_any_address_and_must_be_readable() {
        let missing = std::env::temp_dir().join(format!("no-such-tokens-{}", uuid::Uuid::new_v4()));
        let args = Args::parse_from([
            "allocate-http".as_ref(),
            "--listen".as_ref(),
            "0.0.0.0:9000".as_ref(),
            "--tokens-file".as_ref(),
            missing.as_os_str(),
        ]);
        assert!(args.check().is_ok());
        assert!(matches!(
            args.server_config(),
            Err(ConfigError::Tokens(TokensError::Read { .. }))
        ));
        let open = Args::parse_from(["allocate-http"]).server_config().unwrap();
        assert!(open.tokens.is_open());
    }
}
