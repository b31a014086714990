//! The reference agent, `allocate-agent`: puts this machine into an allocate server's inventory.
//!
//! It detects the machine ([`detect`]), registers it over `WEBSOCKET /agent/` (`ws://` or
//! `wss://`), and answers the server's provision and release orders, either with the
//! operator's commands ([`commands`], run by [`orders`]) or with static connection details
//! sent in the registration. The protocol (connecting, registering, pings, reconnects with
//! backoff) and the order bookkeeping are allocate-client's `AgentSession`, which [`session`]
//! drives. `allocate-agent/AGENT.md` is the operator's guide.
//!
//! The `cli` feature (on by default) adds the command line (`config`, [`run`]) and the
//! `allocate-agent` binary. Without it the crate is the session and the orders, with neither
//! clap nor a log subscriber. Every message it reads or writes is `allocate_core::wire`'s.

pub mod commands;
#[cfg(feature = "cli")]
pub mod config;
pub mod detect;
pub mod orders;
pub mod session;

#[cfg(feature = "cli")]
pub use config::{Cli, ConfigError};
pub use orders::Responder;
pub use session::{Agent, Registration, Settings};

#[cfg(feature = "cli")]
use std::future::Future;

/// Runs the agent that `cli` describes until `shutdown` resolves (or, with
/// `--print-resources`, prints the registration and returns).
#[cfg(feature = "cli")]
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> Result<(), ConfigError> {
    let agent_id = cli.resolve_agent_id()?;
    let host = cli.resolve_host();
    let static_connection = cli.static_connection(host.as_deref())?;
    let responder = cli.responder(agent_id, host.as_deref(), static_connection.as_ref());
    let resource = cli.resource(static_connection).await?;
    let registration = Registration {
        agent_id,
        resources: vec![resource],
    };
    registration.validate().map_err(ConfigError::Invalid)?;
    if cli.print_resources {
        println!("{}", registration.to_redacted_pretty());
        return Ok(());
    }
    let responder = responder.ok_or(ConfigError::NoResponder)?;
    let (reconnect_min, reconnect_max) = cli.reconnect();
    let settings = Settings {
        server: cli.server.join(","),
        token: cli.resolve_token()?,
        ca_file: cli.ca_file.clone(),
        registration,
        responder,
        reconnect_min,
        reconnect_max,
    };
    let agent = Agent::new(settings).map_err(|e| match e {
        allocate_client::Error::Url { .. } => ConfigError::Server(e),
        other => ConfigError::Client(other),
    })?;
    tracing::info!(%agent_id, server = %cli.server.join(","), "agent starting");
    agent.run(shutdown).await;
    tracing::info!("agent stopped");
    Ok(())
}
