//! The agent's connection to its server: allocate-client's [`AgentSession`], which connects
//! (`ws://` or `wss://`), registers, pings, reconnects with a jittered, doubling delay and keeps
//! the answers that outlive a connection, driven until `shutdown` resolves. Each order goes to
//! the `Dispatcher`, which answers it in its own task; every other event is logged here.

use crate::orders::{Dispatcher, Responder};
use allocate_client::{AgentEvent, AgentOptions, AgentSession, Client, ClientOptions};
use allocate_core::wire::{AgentMessage, WireError};
use allocate_core::{Limits, ResourceSpec};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long shutting down waits for the socket's close (the session's own bounds are shorter
/// once connected; a connection still being opened is dropped).
const STOP_WAIT: Duration = Duration::from_secs(3);

/// The agent's registration: who it is and what it offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The agent's stable id.
    pub agent_id: uuid::Uuid,
    /// Its resources (the reference agent offers its own machine, one resource).
    pub resources: Vec<ResourceSpec>,
}

impl Registration {
    /// The message that carries it.
    pub fn to_message(&self) -> AgentMessage {
        AgentMessage::Register {
            agent_id: self.agent_id,
            resources: self.resources.clone(),
        }
    }

    /// The JSON text sent to the server (with any static password in it).
    pub fn to_text(&self) -> String {
        self.to_message().to_text()
    }

    /// Pretty JSON for people, with every password replaced by `<redacted>`.
    pub fn to_redacted_pretty(&self) -> String {
        let mut shown = self.clone();
        for r in &mut shown.resources {
            if let Some(password) = r
                .connection
                .as_mut()
                .and_then(|c| Arc::make_mut(c).password.as_mut())
            {
                "<redacted>".clone_into(password);
            }
        }
        serde_json::to_string_pretty(&shown.to_message()).expect("a registration always serializes")
    }

    /// Checks it with the server's own rules (allocate-core's parser and default limits).
    pub fn validate(&self) -> Result<(), allocate_core::Error> {
        AgentMessage::parse(&self.to_text(), &Limits::default()).map(|_| ())
    }
}

/// Everything the agent's session needs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The server: its agent endpoint (`ws://127.0.0.1:8080/agent/`) or its base URL, with
    /// `ws://`, `wss://`, `http://` or `https://`; the replicas of one store separated by
    /// commas.
    pub server: String,
    /// Bearer token for the upgrade request.
    pub token: Option<String>,
    /// A PEM file of CA certificates trusted besides the system's roots (`wss://`).
    pub ca_file: Option<PathBuf>,
    /// What the agent registers.
    pub registration: Registration,
    /// How it answers orders.
    pub responder: Responder,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
}

/// The base URL of the server that `server` names: an agent endpoint (`.../agent/`) without
/// its `agent/`; any other URL as it is.
pub fn server_base(server: &str) -> String {
    match server.trim_end_matches('/').strip_suffix("/agent") {
        Some(base)
            if base
                .split_once("://")
                .is_some_and(|(_, host)| !host.is_empty()) =>
        {
            format!("{base}/")
        }
        _ => server.to_owned(),
    }
}

/// The running agent.
#[derive(Debug)]
pub struct Agent {
    settings: Settings,
    client: Client,
}

impl Agent {
    /// An agent for `settings`; checks the URL, the token and the CA file.
    pub fn new(settings: Settings) -> Result<Self, allocate_client::Error> {
        let options = ClientOptions {
            token: settings.token.clone(),
            ca_file: settings.ca_file.clone(),
            ..ClientOptions::default()
        };
        let servers = settings.server.split(',').map(|s| server_base(s.trim()));
        let client = Client::with_urls(servers, options)?;
        Ok(Agent { settings, client })
    }

    /// Runs until `shutdown` resolves: connects, registers, answers, reconnects. A server
    /// that is down or refuses the agent is retried like a lost connection.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let options = AgentOptions {
            reconnect: true,
            reconnect_min: self.settings.reconnect_min,
            reconnect_max: self.settings.reconnect_max,
            ..AgentOptions::default()
        };
        let registration = &self.settings.registration;
        let mut session = AgentSession::start(
            &self.client,
            registration.agent_id,
            registration.resources.clone(),
            options,
        );
        let handle = session.handle().clone();
        let dispatcher = Dispatcher::new(self.settings.responder.clone(), handle.clone());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                event = session.next_event() => match event {
                    Some(event) => self.on_event(event, &dispatcher),
                    None => return,
                },
            }
        }
        // Closes the socket; orders that still come are left to the server's timeouts.
        let stopped = async {
            handle.stop().await;
            while session.next_event().await.is_some() {}
        };
        if tokio::time::timeout(STOP_WAIT, stopped).await.is_err() {
            tracing::warn!(
                "the connection did not close within {} s",
                STOP_WAIT.as_secs()
            );
        }
    }

    fn on_event(&self, event: AgentEvent, dispatcher: &Dispatcher) {
        match event {
            AgentEvent::Order(order) => dispatcher.dispatch(order),
            AgentEvent::Registered {
                inventory_ids,
                connection,
            } => {
                let ids: Vec<String> = inventory_ids.iter().map(ToString::to_string).collect();
                let server = self.client.url();
                tracing::info!(%server, connection, inventory_ids = %ids.join(","), "registered");
            }
            AgentEvent::Disconnected { error, retry_in } => on_disconnected(&error, retry_in),
            AgentEvent::Refused(refusal) => {
                let (status, code, message) = (refusal.status, &refusal.code, &refusal.message);
                tracing::warn!(status, %code, %message, "server refused a message");
            }
            AgentEvent::Unreadable(error) => on_unreadable(&error),
        }
    }
}

/// Logs a lost connection, and when the next try comes (`None`: no more tries).
fn on_disconnected(error: &impl std::fmt::Display, retry_in: Option<Duration>) {
    match retry_in {
        Some(delay) => tracing::warn!("{error}; reconnecting in {:.1} s", delay.as_secs_f64()),
        None => tracing::warn!("{error}"),
    }
}

/// Logs a message the agent could not read (allocate-client has answered a provision that
/// names its allocation with an error already).
fn on_unreadable(error: &WireError) {
    match error {
        WireError::Malformed {
            kind,
            allocation_id: Some(allocation_id),
            source,
        } if kind == "provision" => on_malformed_provision(allocation_id, source),
        WireError::Unknown {
            key: "action",
            value: action,
        } => on_unknown_action(action),
        error => tracing::warn!(%error, "ignoring a server message"),
    }
}

/// Logs a provision the agent could not read, which allocate-client answered with an error.
fn on_malformed_provision(allocation_id: &impl std::fmt::Display, source: &impl std::fmt::Display) {
    tracing::warn!(%allocation_id, error = %source, "malformed provision; answered with an error");
}

/// Logs an order of an action this agent does not know.
fn on_unknown_action(action: &impl std::fmt::Display) {
    tracing::warn!(%action, "ignoring an unknown action from the server");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::Commands;

    fn settings(server: &str) -> Settings {
        Settings {
            server: server.into(),
            token: None,
            ca_file: None,
            registration: Registration {
                agent_id: uuid::Uuid::nil(),
                resources: Vec::new(),
            },
            responder: Responder::Commands(Commands {
                provision: "true".into(),
                release: None,
                timeout: Duration::from_secs(1),
                host: None,
                agent_id: uuid::Uuid::nil(),
            }),
            reconnect_min: Duration::from_millis(1),
            reconnect_max: Duration::from_millis(1),
        }
    }

    #[test]
    fn the_agent_endpoint_names_the_server() {
        let cases = [
            ("ws://127.0.0.1:8080/agent/", "ws://127.0.0.1:8080/"),
            ("wss://lab/prefix/agent", "wss://lab/prefix/"),
            ("https://lab/", "https://lab/"),
            ("ws://agent/", "ws://agent/"),
        ];
        for (server, base) in cases {
            assert_eq!(server_base(server), base, "{server}");
        }
    }

    #[test]
    fn urls_tokens_and_ca_files_are_checked() {
        for good in [
            "ws://127.0.0.1:8080/agent/",
            "wss://lab/agent/",
            "http://lab",
            "https://lab",
        ] {
            let agent = Agent::new(settings(good));
            assert!(agent.is_ok(), "{good}: {agent:?}");
        }
        let two = Agent::new(settings("ws://a:1/agent/, http://b:2")).unwrap();
        assert_eq!(two.client.urls(), ["http://a:1", "http://b:2"]);
        for bad in [
            "ftp://lab/agent/",
            "ws://",
            "lab:8080",
            "ws://a/agent/,ftp://b",
        ] {
            let err = Agent::new(settings(bad)).unwrap_err();
            assert_eq!(err.code(), "url", "{bad}: {err}");
        }
        let mut s = settings("ws://lab/agent/");
        s.token = Some("two\nlines".into());
        assert_eq!(Agent::new(s).unwrap_err().code(), "token");
        let mut s = settings("wss://lab/agent/");
        s.ca_file = Some("no-such-dir/ca.pem".into());
        let err = Agent::new(s).unwrap_err();
        assert!(err.to_string().contains("no-such-dir/ca.pem"), "{err}");
    }
}
