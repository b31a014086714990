//! The dashboard over real HTTP and websockets: the page and its files, the snapshot, the
//! live feed (hello, updates, coalescing, shutdown), and who may read it.

mod common;

use allocate_http::{ServerConfig, Tokens};
use common::*;
use reqwest::header::{
    AUTHORIZATION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    SEC_WEBSOCKET_PROTOCOL,
};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{connect_async, tungstenite};

const PASSWORD: &str = "hunter2";
const ALICE: &str = "alice-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const AGENT: &str = "agent-token-0123456789";

/// A server whose tokens come from a 0600 file (removed with the folder when dropped).
struct Guarded {
    server: Server,
    dir: tempfile::TempDir,
}

impl Guarded {
    async fn start() -> Guarded {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("tokens");
        let text = format!("{ALICE} user alice\n{ADMIN} admin root\n{AGENT} agent\n");
        std::fs::write(&file, text).expect("write tokens");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let config = ServerConfig {
            tokens: Tokens::load(&file).expect("load tokens"),
            ..test_config()
        };
        Guarded {
            server: Server::with(config).await,
            dir,
        }
    }
}

/// `GET /dashboard/feed` as `token` (none: no header): the status and the body.
async fn snapshot_as(server: &Server, token: Option<&str>) -> (u16, Value) {
    let mut req = server.http.get(server.url("/dashboard/feed"));
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let resp = bounded(req.send()).await.expect("feed");
    let status = resp.status().as_u16();
    let body = bounded(resp.json::<Value>()).await.expect("JSON");
    (status, body)
}

/// Opens the feed, offering these subprotocols; the socket and the one the server chose,
/// or the handshake's HTTP status on a refusal.
async fn feed(server: &Server, protocols: Option<&str>) -> Result<(Ws, Option<String>), u16> {
    let mut request = format!("ws://{}/dashboard/feed", server.addr)
        .into_client_request()
        .expect("request");
    if let Some(protocols) = protocols {
        request.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(protocols).expect("header"),
        );
    }
    match bounded(connect_async(request)).await {
        Ok((ws, response)) => {
            let chosen = response
                .headers()
                .get(SEC_WEBSOCKET_PROTOCOL)
                .map(|v| v.to_str().expect("ascii").to_owned());
            Ok((ws, chosen))
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("feed connect: {e}"),
    }
}

/// The next feed message's `data`, which must be of this `type`.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    let message = recv(ws).await;
    assert_eq!(message["status"], 200, "{message}");
    assert_eq!(message["data"]["type"], kind, "{message}");
    message["data"].clone()
}

/// Snapshots until one satisfies `done` (each within [`STEP`]); returns it.
async fn snapshot_until(ws: &mut Ws, what: &str, mut done: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + STEP;
    loop {
        assert!(Instant::now() < deadline, "no snapshot showed {what}");
        let snapshot = next_of(ws, "snapshot").await;
        if done(&snapshot) {
            return snapshot;
        }
    }
}

fn list<'a>(snapshot: &'a Value, key: &str) -> &'a Vec<Value> {
    snapshot[key].as_array().expect("a list")
}

fn ready_allocations(snapshot: &Value) -> usize {
    list(snapshot, "allocations")
        .iter()
        .filter(|a| a["state"] == "ready")
        .count()
}

#[tokio::test]
async fn the_page_and_its_files_are_served_open_with_a_strict_policy() {
    let lab = Guarded::start().await;
    let server = &lab.server;
    let page = bounded(server.http.get(server.url("/")).send())
        .await
        .expect("page");
    assert_eq!(page.status(), 200, "no token needed for the page");
    let headers = page.headers().clone();
    assert!(headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let policy = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"));
    let html = page.text().await.expect("html");
    assert!(html.contains("/dashboard/app.js") && html.contains("/dashboard/style.css"));
    for (path, kind) in [
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ] {
        let resp = bounded(server.http.get(server.url(path)).send())
            .await
            .expect("asset");
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
        let etag = resp.headers()[ETAG].clone();
        let again = server
            .http
            .get(server.url(path))
            .header(IF_NONE_MATCH, etag)
            .send();
        assert_eq!(bounded(again).await.expect("asset").status(), 304, "{path}");
    }
    let (status, body) = snapshot_as(server, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized"))
    );
    lab.server.stop().await;
    drop(lab.dir);
}

#[tokio::test]
async fn the_snapshot_shows_resources_the_queue_and_holders_but_never_a_password() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent
        .register(vec![
            resource(&["nvidia", "cuda"], 12, Some("10.0.0.1")),
            resource(&["nvidia"], 8, Some("10.0.0.2")),
        ])
        .await;
    let mut holders = Vec::new();
    for user in ["alice", "bob"] {
        let mut ws = allocate(&server, json!({"tags": ["nvidia"], "username": user})).await;
        let ready = recv_status(&mut ws, "ready").await;
        assert_eq!(
            ready["connection"]["password"], PASSWORD,
            "the client gets it"
        );
        holders.push(ws);
    }
    let wants = json!({"tags": ["nvidia"], "username": "carol", "min_cpu_count": 8,
                       "gpu": {"label": "RTX", "min_memory_gb": 8, "count": 1}});
    let mut waiting = allocate(&server, wants).await;
    assert_eq!(recv_status(&mut waiting, "queued").await["position"], 1);

    let (status, body) = snapshot_as(&server, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains(PASSWORD), "{body}");
    let snapshot = &body["data"];
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["caller"], json!({"role": "open"}));
    assert!(snapshot["at"].as_u64().unwrap().abs_diff(unix_now()) <= 2);
    let resources = list(snapshot, "resources");
    assert_eq!(resources.len(), 2);
    assert_eq!(resources[0]["inventory_id"], ids[0].as_str());
    assert_eq!(resources[0]["labels"], json!(["nvidia", "cuda"]));
    assert_eq!(resources[0]["cpu_count"], 12);
    assert_eq!(resources[0]["type"], "VM");
    assert_eq!(resources[0]["agent_id"], agent.id.as_str());
    assert!(resources.iter().all(|r| r["state"] == "allocated"));
    let allocations = list(snapshot, "allocations");
    assert_eq!(allocations.len(), 3, "{allocations:?}");
    let users: Vec<&str> = allocations
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "bob", "carol"]);
    assert!(allocations[..2]
        .iter()
        .all(|a| a["state"] == "ready" && a["inventory_id"].is_string()));
    for a in allocations {
        assert!(a.get("connection").is_none(), "{a}");
        assert!(a["created"].as_u64().unwrap().abs_diff(unix_now()) <= 2);
    }
    let queued = &allocations[2];
    assert_eq!(queued["state"], "queued");
    assert_eq!(queued["position"], 1);
    assert!(queued.get("inventory_id").is_none());
    assert_eq!(
        queued["wants"],
        json!({"tags": ["nvidia"], "min_cpu_count": 8, "allocation_timeout_seconds": 60,
               "gpu": {"label": "RTX", "min_memory_gb": 8, "count": 1}})
    );
    // Ended allocations leave the picture.
    let id = allocations[0]["allocation_id"].as_str().unwrap();
    server
        .call("DELETE", &format!("/allocate/{id}"), None)
        .await;
    recv_status(&mut holders[0], "released").await;
    let freed = &allocations[0]["inventory_id"];
    assert_eq!(
        &recv_status(&mut waiting, "ready").await["inventory_id"],
        freed
    );
    let (_, body) = snapshot_as(&server, None).await;
    let users: Vec<&str> = list(&body["data"], "allocations")
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["bob", "carol"]);
    server.stop().await;
}

#[tokio::test]
async fn the_feed_says_hello_then_sends_each_change_coalesced() {
    let server = Server::start().await;
    let (mut ws, chosen) = feed(&server, None).await.expect("open feed");
    assert_eq!(chosen, None, "nothing offered, nothing chosen");
    let hello = next_of(&mut ws, "hello").await;
    assert_eq!(hello["caller"]["role"], "open");
    assert!(hello["now"].as_u64().unwrap().abs_diff(unix_now()) <= 2);
    let first = next_of(&mut ws, "snapshot").await;
    assert_eq!(list(&first, "resources").len(), 0);

    let mut agent = Agent::connect(&server).await;
    let machines = (0..4)
        .map(|i| resource(&["x"], 4, Some(&format!("10.0.0.{i}"))))
        .collect();
    agent.register(machines).await;
    snapshot_until(&mut ws, "four resources", |s| {
        list(s, "resources").len() == 4
    })
    .await;

    // Forty changes in a burst arrive as a few snapshots, the last showing all of them.
    let started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..40 {
        let wants = json!({"tags": ["x"], "username": format!("user-{i}")});
        clients.push(allocate(&server, wants).await);
    }
    let mut snapshots = 0;
    let last = snapshot_until(&mut ws, "4 ready and 36 queued", |s| {
        snapshots += 1;
        ready_allocations(s) == 4 && list(s, "allocations").len() == 40
    })
    .await;
    let elapsed_ms = started.elapsed().as_millis() as usize;
    assert!(
        snapshots <= elapsed_ms / 250 + 2,
        "{snapshots} snapshots in {elapsed_ms} ms"
    );
    let queued: Vec<u64> = list(&last, "allocations")
        .iter()
        .filter_map(|a| a["position"].as_u64())
        .collect();
    assert_eq!(queued, (1..=36).collect::<Vec<u64>>());
    assert!(!last.to_string().contains(PASSWORD));
    assert!(last["version"].as_u64() > first["version"].as_u64());
    let (_, now) = snapshot_as(&server, None).await;
    assert!(now["data"]["version"].as_u64() >= last["version"].as_u64());

    // Nothing changes: nothing is sent (pings aside).
    let quiet = timeout(Duration::from_millis(700), recv(&mut ws)).await;
    assert!(quiet.is_err(), "an unchanged lab sent {quiet:?}");
    drop(clients);
    snapshot_until(&mut ws, "the waiting requests cancelled", |s| {
        list(s, "allocations").len() == 4
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_second_feed_gets_the_current_picture_at_once_and_shutdown_closes_both_1001() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    agent.register(vec![resource(&["x"], 4, Some("h"))]).await;
    let (mut one, _) = feed(&server, Some("allocate")).await.expect("feed");
    next_of(&mut one, "hello").await;
    next_of(&mut one, "snapshot").await;
    let (mut two, chosen) = feed(&server, Some("allocate")).await.expect("feed");
    assert_eq!(chosen.as_deref(), Some("allocate"));
    next_of(&mut two, "hello").await;
    let now = next_of(&mut two, "snapshot").await;
    assert_eq!(list(&now, "resources").len(), 1);
    let stopping = tokio::spawn(server.stop());
    expect_close(&mut one, 1001).await;
    expect_close(&mut two, 1001).await;
    bounded(stopping).await.expect("stopped");
}

#[tokio::test]
async fn with_tokens_the_feed_needs_a_user_or_admin_token() {
    let lab = Guarded::start().await;
    let server = &lab.server;
    let (status, body) = snapshot_as(server, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = snapshot_as(server, Some(AGENT)).await;
    assert_eq!((status, &body["error"]["code"]), (403, &json!("forbidden")));
    let (status, body) = snapshot_as(server, Some(ALICE)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["caller"],
        json!({"role": "user", "name": "alice"})
    );

    assert_eq!(feed(server, None).await.err(), Some(401));
    assert_eq!(
        feed(server, Some("allocate, bearer.unknown-token-0123456789"))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        feed(server, Some(&format!("allocate, bearer.{AGENT}")))
            .await
            .err(),
        Some(403)
    );
    let (mut ws, chosen) = feed(server, Some(&format!("allocate, bearer.{ADMIN}")))
        .await
        .expect("admin feed");
    assert_eq!(
        chosen.as_deref(),
        Some("allocate"),
        "the token is never echoed"
    );
    let hello = next_of(&mut ws, "hello").await;
    assert_eq!(hello["caller"], json!({"role": "admin", "name": "root"}));
    next_of(&mut ws, "snapshot").await;
    drop(ws);
    lab.server.stop().await;
}

#[tokio::test]
async fn one_token_opens_a_few_feeds_and_leaves_the_rest_to_others() {
    let lab = Guarded::start().await;
    let server = &lab.server;
    let as_alice = format!("allocate, bearer.{ALICE}");
    let mut open = Vec::new();
    for _ in 0..8 {
        let (mut ws, _) = feed(server, Some(&as_alice)).await.expect("a feed");
        next_of(&mut ws, "hello").await;
        open.push(ws);
    }
    assert_eq!(feed(server, Some(&as_alice)).await.err(), Some(409));
    let (mut admin, _) = feed(server, Some(&format!("allocate, bearer.{ADMIN}")))
        .await
        .expect("another token still gets one");
    next_of(&mut admin, "hello").await;
    let mut closed = open.pop().expect("a feed");
    closed.close(None).await.expect("close");
    let again = timeout(STEP, async {
        loop {
            if let Ok(ws) = feed(server, Some(&as_alice)).await {
                return ws;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    again.await.expect("a place comes back once a feed closes");
    drop(open);
    lab.server.stop().await;
}
