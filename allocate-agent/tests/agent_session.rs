//! The agent's session against a stand-in allocate server: a websocket listener on
//! 127.0.0.1:0 that checks what the agent sends and sends what the server would (the server's
//! own wire forms, from allocate-core's `Output::to_wire`).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers, like the tests, panic on failure"
)]

use allocate_agent::commands::Commands;
use allocate_agent::{Agent, Registration, Responder, Settings};
use allocate_core::wire::Envelope;
use allocate_core::{AgentMessage, Connection, Limits, Output, ResourceSpec};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

/// The longest any one step may take.
const STEP: Duration = Duration::from_secs(10);
/// The longest a whole test may take.
const TEST: Duration = Duration::from_secs(60);

const AGENT_ID: Uuid = Uuid::from_u128(0xd4863713_1388_4297_a479_a582b306f5cb);
const INVENTORY_ID: Uuid = Uuid::from_u128(0x8a526e72_bcde_45e6_8a5f_f598b350f093);

type Ws = WebSocketStream<TcpStream>;

/// What the agent's upgrade request carried.
#[derive(Debug, Default, Clone)]
struct Upgrade {
    path: String,
    authorization: Option<String>,
}

struct FakeServer {
    listener: TcpListener,
}

impl FakeServer {
    async fn start() -> Self {
        FakeServer {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/agent/", self.listener.local_addr().unwrap())
    }

    /// Accepts the agent's next connection.
    #[allow(
        clippy::result_large_err,
        reason = "the handshake callback's error type is tungstenite's"
    )]
    async fn accept(&self) -> (Ws, Upgrade) {
        let (stream, _) = timeout(STEP, self.listener.accept())
            .await
            .expect("the agent did not connect in time")
            .unwrap();
        let seen = Arc::new(Mutex::new(Upgrade::default()));
        let record = seen.clone();
        let ws =
            tokio_tungstenite::accept_hdr_async(stream, move |req: &Request, resp: Response| {
                let mut up = record.lock().unwrap();
                up.path = req.uri().path().to_owned();
                up.authorization = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                Ok(resp)
            })
            .await
            .unwrap();
        let upgrade = seen.lock().unwrap().clone();
        (ws, upgrade)
    }
}

/// The agent's next text message, as JSON (it must also be a message the server accepts).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let message = timeout(STEP, ws.next())
            .await
            .expect("no message from the agent in time")
            .expect("the agent closed the connection")
            .unwrap();
        if let Message::Text(text) = message {
            AgentMessage::parse(&text, &Limits::default())
                .unwrap_or_else(|e| panic!("the server would refuse {text}: {e}"));
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// Receives the registration and accepts it; returns what was registered.
async fn register(ws: &mut Ws) -> Value {
    let registration = recv(ws).await;
    send(
        ws,
        Envelope::Ok(json!({"status": "ok", "inventory_ids": [INVENTORY_ID]})).to_value(),
    )
    .await;
    registration
}

fn provision(allocation_id: Uuid, username: &str) -> Value {
    Output::Provision {
        agent_id: AGENT_ID,
        allocation_id,
        inventory_id: INVENTORY_ID,
        username: username.into(),
        expires: 1576688942,
        ssh_keys: vec![],
        provision: None,
    }
    .to_wire()
}

fn release(allocation_id: Uuid) -> Value {
    Output::Release {
        agent_id: AGENT_ID,
        allocation_id,
        inventory_id: INVENTORY_ID,
    }
    .to_wire()
}

fn machine(connection: Option<Connection>) -> ResourceSpec {
    ResourceSpec {
        inventory_id: None,
        labels: vec!["nvidia".into()],
        cpu_count: 12,
        memory_gb: 32,
        gpu: vec![allocate_core::Gpu {
            label: "NVIDIA GeForce RTX 2080".into(),
            memory_gb: 8,
        }],
        kind: "VM".into(),
        connection: connection.map(Into::into),
    }
}

/// The provision command: `fail` fails, `slow` takes a second, everyone else gets a password.
const PROVISION: &str = r#"
case "$ALLOCATE_USERNAME" in
  fail) echo 'useradd: no such group' >&2; exit 3 ;;
  slow) sleep 1 ;;
esac
printf '{"username":"%s","password":"pw-%s"}' "$ALLOCATE_USERNAME" "$ALLOCATE_ALLOCATION_ID"
"#;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("allocate-agent-test-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settings(server: &FakeServer, responder: Responder, connection: Option<Connection>) -> Settings {
    Settings {
        server: server.url(),
        token: Some("agent-token".into()),
        ca_file: None,
        registration: Registration {
            agent_id: AGENT_ID,
            resources: vec![machine(connection)],
        },
        responder,
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
    }
}

fn commands(release: Option<String>) -> Responder {
    Responder::Commands(Commands {
        provision: PROVISION.into(),
        release,
        timeout: Duration::from_secs(10),
        host: Some("lab-3".into()),
        agent_id: AGENT_ID,
    })
}

/// Runs the agent in a task; dropping or firing the sender stops it.
fn spawn_agent(settings: Settings) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let agent = Agent::new(settings).unwrap();
    let task = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn bounded(test: impl Future<Output = ()>) {
    timeout(TEST, test).await.expect("the test took too long");
}

#[tokio::test]
async fn registers_then_answers_provisions_and_releases() {
    bounded(async {
        let server = FakeServer::start().await;
        let dir = scratch();
        let log = dir.join("released");
        let release_cmd = format!(
            "echo \"$ALLOCATE_ALLOCATION_ID $ALLOCATE_USERNAME\" >> '{}'",
            log.display()
        );
        let s = settings(&server, commands(Some(release_cmd)), None);
        let expected_registration: Value = serde_json::from_str(&s.registration.to_text()).unwrap();
        let (stop, task) = spawn_agent(s);

        let (mut ws, upgrade) = server.accept().await;
        assert_eq!(upgrade.path, "/agent/");
        assert_eq!(upgrade.authorization.as_deref(), Some("Bearer agent-token"));
        let registration = register(&mut ws).await;
        assert_eq!(registration, expected_registration);
        assert_eq!(
            registration,
            json!({"agent_id": AGENT_ID, "resources": [{"labels": ["nvidia"], "cpu_count": 12,
                   "memory_gb": 32, "gpu": [{"label": "NVIDIA GeForce RTX 2080", "memory_gb": 8}],
                   "type": "VM"}]})
        );

        // A provision answered from the command's stdout, with --host filling in the host.
        let a = Uuid::from_u128(0xa);
        send(&mut ws, provision(a, "ci-runner-7")).await;
        assert_eq!(
            recv(&mut ws).await,
            json!({"allocation_id": a, "connection":
                   {"host": "lab-3", "username": "ci-runner-7", "password": format!("pw-{a}")}})
        );

        // A failing command: an error answer with the exit status and the last stderr line.
        let b = Uuid::from_u128(0xb);
        send(&mut ws, provision(b, "fail")).await;
        assert_eq!(
            recv(&mut ws).await,
            json!({"allocation_id": b,
                   "error": "provision command failed (exit status: 3): useradd: no such group"})
        );

        // A slow provision does not hold up a later one.
        let (slow, fast) = (Uuid::from_u128(0xc), Uuid::from_u128(0xd));
        send(&mut ws, provision(slow, "slow")).await;
        send(&mut ws, provision(fast, "quick")).await;
        assert_eq!(recv(&mut ws).await["allocation_id"], json!(fast));
        assert_eq!(recv(&mut ws).await["allocation_id"], json!(slow));

        // An allocation deleted while its provision still runs: the release waits for it.
        let g = Uuid::from_u128(0x10);
        send(&mut ws, provision(g, "slow")).await;
        send(&mut ws, release(g)).await;
        let first = recv(&mut ws).await;
        assert!(first.get("connection").is_some(), "{first}");
        assert_eq!(
            recv(&mut ws).await,
            json!({"allocation_id": g, "released": true})
        );

        // An unknown action is ignored; a provision the agent cannot read gets an error answer.
        send(
            &mut ws,
            Envelope::Ok(json!({"action": "reboot", "allocation_id": a})).to_value(),
        )
        .await;
        let e = Uuid::from_u128(0xe);
        let mut malformed = provision(e, "ci");
        malformed["data"]["expires"] = json!("soon");
        send(&mut ws, malformed).await;
        let answer = recv(&mut ws).await;
        assert_eq!(answer["allocation_id"], json!(e));
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("agent could not read the provision: "),
            "{answer}"
        );

        // A release runs the release command, which knows who held the allocation.
        send(&mut ws, release(a)).await;
        assert_eq!(
            recv(&mut ws).await,
            json!({"allocation_id": a, "released": true})
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("{g} slow\n{a} ci-runner-7\n")
        );

        // A server error envelope after registration is logged, not fatal.
        send(
            &mut ws,
            json!({"status": 409, "error": {"code": "conflict", "message": "late answer"}}),
        )
        .await;
        send(&mut ws, provision(Uuid::from_u128(0xf), "ci")).await;
        assert!(recv(&mut ws).await.get("connection").is_some());

        // Shutting down closes the socket.
        stop.send(()).unwrap();
        timeout(STEP, task).await.unwrap().unwrap();
        let end = timeout(STEP, ws.next()).await.unwrap();
        assert!(matches!(end, Some(Ok(Message::Close(_))) | None), "{end:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    })
    .await;
}

#[tokio::test]
async fn reconnects_after_the_server_drops_it() {
    bounded(async {
        let server = FakeServer::start().await;
        let dir = scratch();
        let marker = dir.join("release-started");
        // The release takes a while, so that its connection can drop before it finishes.
        let release_cmd = format!("touch '{}'; sleep 0.5", marker.display());
        let s = settings(&server, commands(Some(release_cmd)), None);
        let (stop, task) = spawn_agent(s);

        // The server drops the connection right after registering the agent.
        let (mut ws, _) = server.accept().await;
        let first = register(&mut ws).await;
        drop(ws);

        // The agent comes back with the same registration; this time it is refused.
        let (mut ws, _) = server.accept().await;
        assert_eq!(recv(&mut ws).await, first);
        send(
            &mut ws,
            json!({"status": 401, "error": {"code": "unauthorized", "message": "bad token"}}),
        )
        .await;

        // Then it tries again, and works as before.
        let (mut ws, _) = server.accept().await;
        assert_eq!(register(&mut ws).await, first);
        let a = Uuid::from_u128(0xa);
        send(&mut ws, provision(a, "ci")).await;
        assert_eq!(recv(&mut ws).await["allocation_id"], json!(a));

        // A release that finishes while the agent is disconnected is answered after the
        // next registration, without the server asking again.
        send(&mut ws, release(a)).await;
        timeout(STEP, async {
            while !marker.exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        drop(ws);
        let (mut ws, _) = server.accept().await;
        assert_eq!(register(&mut ws).await, first);
        assert_eq!(
            recv(&mut ws).await,
            json!({"allocation_id": a, "released": true})
        );
        // The server resends a release it did not see answered: acknowledged again at once.
        send(&mut ws, release(a)).await;
        assert_eq!(
            recv(&mut ws).await,
            json!({"allocation_id": a, "released": true})
        );

        stop.send(()).unwrap();
        timeout(STEP, task).await.unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_failed_release_is_not_acknowledged_and_runs_again_when_resent() {
    bounded(async {
        let server = FakeServer::start().await;
        let dir = scratch();
        let tries = dir.join("tries");
        // Fails the first time, cleans up the second.
        let release_cmd = format!(
            "echo x >> '{0}'; [ \"$(wc -l < '{0}')\" -ge 2 ]",
            tries.display()
        );
        let (stop, task) = spawn_agent(settings(&server, commands(Some(release_cmd)), None));
        let (mut ws, _) = server.accept().await;
        register(&mut ws).await;
        let a = Uuid::from_u128(0xa);
        send(&mut ws, release(a)).await;
        // No answer to the failed release; the server resends it (until the agent answers,
        // since the agent may not have given the first one up yet).
        let answer = loop {
            let waited = timeout(Duration::from_millis(300), recv(&mut ws)).await;
            match waited {
                Ok(answer) => break answer,
                Err(_) => send(&mut ws, release(a)).await,
            }
        };
        assert_eq!(answer, json!({"allocation_id": a, "released": true}));
        assert_eq!(std::fs::read_to_string(&tries).unwrap(), "x\nx\n");
        stop.send(()).unwrap();
        timeout(STEP, task).await.unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    })
    .await;
}

#[tokio::test]
async fn keeps_trying_while_the_server_is_down() {
    bounded(async {
        // Reserve a port, then close it: the first attempts are refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("ws://127.0.0.1:{port}/agent/");
        let mut s = settings(&FakeServer::start().await, commands(None), None);
        s.server = url;
        let (stop, task) = spawn_agent(s);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let server = FakeServer { listener };
        let (mut ws, _) = server.accept().await;
        assert_eq!(recv(&mut ws).await["agent_id"], json!(AGENT_ID));
        stop.send(()).unwrap();
        timeout(STEP, task).await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_static_connection_is_registered() {
    bounded(async {
        let server = FakeServer::start().await;
        let conn = Connection {
            host: "10.0.0.7".into(),
            username: "lab".into(),
            password: Some("static-pw".into()),
            port: None,
        };
        let s = settings(&server, Responder::Static(conn.clone()), Some(conn));
        let (stop, task) = spawn_agent(s);
        let (mut ws, _) = server.accept().await;
        let registration = register(&mut ws).await;
        assert_eq!(
            registration["resources"][0]["connection"],
            json!({"host": "10.0.0.7", "username": "lab", "password": "static-pw"})
        );
        // The server sends no orders for such a resource; one that comes anyway is answered.
        let a = Uuid::from_u128(0xa);
        send(&mut ws, provision(a, "ci")).await;
        assert_eq!(recv(&mut ws).await["connection"]["password"], "static-pw");
        send(&mut ws, release(a)).await;
        assert_eq!(recv(&mut ws).await["released"], true);
        stop.send(()).unwrap();
        timeout(STEP, task).await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_binary_runs_from_flags_and_environment() {
    bounded(async {
        let server = FakeServer::start().await;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_allocate-agent"))
            .args([
                "--agent-id",
                &AGENT_ID.to_string(),
                "--no-gpu",
                "--cpu-count",
                "2",
                "--memory-gb",
                "4",
                "--host",
                "lab-9",
                "--provision-command",
                // The agent's own token must not reach the command.
                r#"printf '{"username":"%s","password":"s3cret[%s]"}' "$ALLOCATE_USERNAME" "${ALLOCATE_AGENT_TOKEN:-}""#,
            ])
            .env("ALLOCATE_AGENT_SERVER", server.url())
            .env("ALLOCATE_AGENT_TOKEN", "tok-123")
            .env("ALLOCATE_AGENT_LABELS", "lab,cpu-only")
            // Even the most detailed logs show no password and no token.
            .env("RUST_LOG", "trace")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (mut ws, upgrade) = server.accept().await;
        assert_eq!(upgrade.authorization.as_deref(), Some("Bearer tok-123"));
        let registration = register(&mut ws).await;
        assert_eq!(
            registration,
            json!({"agent_id": AGENT_ID, "resources": [{"labels": ["lab", "cpu-only"],
                   "cpu_count": 2, "memory_gb": 4, "gpu": [], "type": "server-onsite"}]})
        );
        let a = Uuid::from_u128(0xa);
        send(&mut ws, provision(a, "ci")).await;
        assert_eq!(
            recv(&mut ws).await,
            json!({"allocation_id": a, "connection":
                   {"host": "lab-9", "username": "ci", "password": "s3cret[]"}})
        );
        // SIGTERM: the agent closes its socket and exits cleanly.
        let pid = child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let output = timeout(STEP, child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let logs = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}: {logs}", output.status);
        assert!(logs.contains("provisioned"), "{logs}");
        assert!(!logs.contains("s3cret") && !logs.contains("tok-123"), "{logs}");
        let end = timeout(STEP, ws.next()).await.unwrap();
        assert!(
            matches!(end, Some(Ok(Message::Close(_))) | None),
            "{end:?}"
        );
    })
    .await;
}
