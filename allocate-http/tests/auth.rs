//! Who may do what, over real HTTP and real websockets: a server with a tokens file, and
//! every role boundary (no token 401, wrong role 403, another user's allocation 403).

mod common;

use allocate_http::{ServerConfig, Tokens};
use common::*;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{connect_async, tungstenite};

const AGENT: &str = "agent-token-0123456789";
const BOUND: &str = "bound-agent-token-0123456789";
const BOUND_ID: &str = "d4863713-1388-4297-a479-a582b306f5cb";
const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const UNKNOWN: &str = "unknown-token-0123456789";
const SOME_ID: &str = "8a526e72-bcde-45e6-8a5f-f598b350f093";

/// A server whose tokens come from a 0600 file in a fresh folder (removed on drop).
struct Lab {
    server: Server,
    tokens: Tokens,
    file: PathBuf,
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tokens_text() -> String {
    format!(
        "# role tokens for the tests\n\
         {AGENT} agent\n\
         {BOUND} agent {BOUND_ID}\n\
         {ALICE} user alice\n\
         {BOB} user bob\n\
         {ADMIN} admin root\n"
    )
}

impl Lab {
    async fn start() -> Lab {
        let dir = std::env::temp_dir().join(format!("allocate-auth-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).expect("temp dir");
        let file = dir.join("tokens");
        std::fs::write(&file, tokens_text()).expect("write tokens");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let tokens = Tokens::load(&file).expect("load tokens");
        let config = ServerConfig {
            tokens: tokens.clone(),
            ..test_config()
        };
        Lab {
            server: Server::with(config).await,
            tokens,
            file,
            dir,
        }
    }
}

/// An HTTP request with this `Authorization` header (if any): status, JSON body, headers.
async fn call_with(
    server: &Server,
    authorization: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, HeaderMap) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = server.http.request(method, server.url(path));
    if let Some(value) = authorization {
        req = req.header(AUTHORIZATION, value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = bounded(req.send()).await.expect("http request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = bounded(resp.text()).await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value, headers)
}

/// An HTTP request as the bearer of `token` (none: no header): status and JSON body.
async fn call_as(
    server: &Server,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let header = token.map(|t| format!("Bearer {t}"));
    let (status, value, _) = call_with(server, header.as_deref(), method, path, body).await;
    (status, value)
}

/// `GET path` as `token`, expecting 200; returns `data`.
async fn get_as(server: &Server, token: &str, path: &str) -> Value {
    let (status, body) = call_as(server, Some(token), "GET", path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body["data"].clone()
}

/// Asserts an error envelope with this status and code.
fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["status"], status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
}

/// Opens a websocket with these extra headers; the handshake's HTTP status on a refusal.
async fn ws_with(
    server: &Server,
    path: &str,
    headers: &[(&'static str, String)],
) -> Result<Ws, u16> {
    let mut request = format!("ws://{}{path}", server.addr)
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).expect("header"));
    }
    match bounded(connect_async(request)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("websocket connect: {e}"),
    }
}

/// Opens a websocket as the bearer of `token` (none: no header).
async fn ws_as(server: &Server, path: &str, token: Option<&str>) -> Result<Ws, u16> {
    let headers: Vec<(&'static str, String)> = token
        .map(|t| ("authorization", format!("Bearer {t}")))
        .into_iter()
        .collect();
    ws_with(server, path, &headers).await
}

/// Registers `resources` as `agent_id` on an agent socket opened with `token`.
async fn agent_as(server: &Server, token: &str, agent_id: &str, resources: Vec<Value>) -> Agent {
    let ws = ws_as(server, "/agent/", Some(token))
        .await
        .expect("agent upgrade");
    let mut agent = Agent {
        ws,
        id: agent_id.to_owned(),
    };
    agent.register(resources).await;
    agent
}

/// A fresh agent (general agent token) with `n` static machines.
async fn machines(server: &Server, n: usize) -> Agent {
    let agent_id = uuid::Uuid::new_v4().to_string();
    agent_as(server, AGENT, &agent_id, static_machines(n)).await
}

/// Opens an allocation as `token` for `username`; returns the socket and the `ready` data.
async fn ready_as(server: &Server, token: &str, username: &str) -> (Ws, Value) {
    let mut ws = ws_as(server, "/allocate/", Some(token))
        .await
        .expect("allocate upgrade");
    let requirements = json!({"username": username, "allocation_timeout_seconds": 0});
    send(&mut ws, json!({ "requirements": requirements })).await;
    let ready = recv_status(&mut ws, "ready").await;
    (ws, ready)
}

fn static_machines(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| resource(&["nvidia"], 4 + i as u64, Some(&format!("10.0.0.{i}"))))
        .collect()
}

fn ids_of(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|a| a["allocation_id"].as_str().expect("id"))
        .collect()
}

#[tokio::test]
async fn no_or_an_unknown_token_is_401_everywhere_but_the_open_endpoints() {
    let lab = Lab::start().await;
    let server = &lab.server;
    let guarded = [
        ("GET", "/inventory".to_owned()),
        ("GET", "/inventory/?state=free".to_owned()),
        ("GET", format!("/inventory/{SOME_ID}")),
        ("PATCH", format!("/inventory/{SOME_ID}")),
        ("GET", "/allocate/".to_owned()),
        ("GET", format!("/allocate/{SOME_ID}")),
        ("DELETE", format!("/allocate/{SOME_ID}/")),
        ("PATCH", format!("/allocate/{SOME_ID}")),
        ("GET", "/agent/".to_owned()),
        ("POST", "/match".to_owned()),
        ("GET", format!("/allocate/{SOME_ID}/explain")),
        ("POST", "/admin/backup".to_owned()),
        ("GET", "/usage?by=label".to_owned()),
        ("GET", "/dashboard/history".to_owned()),
    ];
    let body = || Some(json!({"maintenance": true}));
    for (method, path) in &guarded {
        let (status, envelope, headers) = call_with(server, None, method, path, body()).await;
        assert_error(&(status, envelope), 401, "unauthorized");
        assert_eq!(
            headers[WWW_AUTHENTICATE], "Bearer realm=\"allocate\"",
            "{method} {path}"
        );
        for authorization in [
            format!("Bearer {UNKNOWN}"),
            format!("Basic {ALICE}"),
            "Bearer".to_owned(),
        ] {
            let (status, envelope, headers) =
                call_with(server, Some(&authorization), method, path, body()).await;
            assert!(
                !envelope.to_string().contains(UNKNOWN) && !envelope.to_string().contains(ALICE)
            );
            assert_error(&(status, envelope), 401, "unauthorized");
            let challenge = headers[WWW_AUTHENTICATE].to_str().expect("text");
            assert!(challenge.contains("invalid_token"), "{challenge}");
        }
    }
    for path in ["/healthz", "/metrics", "/"] {
        let (status, _) = call_as(server, None, "GET", path, None).await;
        assert_eq!(status, 200, "{path} is open");
    }
    for path in ["/agent/", "/allocate/"] {
        assert_eq!(ws_as(server, path, None).await.err(), Some(401), "{path}");
        assert_eq!(
            ws_as(server, path, Some(UNKNOWN)).await.err(),
            Some(401),
            "{path}"
        );
    }
}

#[tokio::test]
async fn agents_register_only_their_own_agent_id() {
    let lab = Lab::start().await;
    let server = &lab.server;
    // An agent token bound to one agent_id may register that one only.
    let mut other = ws_as(server, "/agent/", Some(BOUND))
        .await
        .expect("upgrade");
    let stranger = uuid::Uuid::new_v4().to_string();
    send(
        &mut other,
        json!({"agent_id": stranger, "resources": static_machines(1)}),
    )
    .await;
    let message = recv_error(&mut other, 403, "forbidden").await;
    assert!(
        message.contains(BOUND_ID) && !message.contains(BOUND),
        "{message}"
    );
    expect_close(&mut other, 1008).await;
    let bound = agent_as(server, BOUND, BOUND_ID, static_machines(1)).await;
    // An unbound agent token, or an admin's, may register any agent_id.
    let _any = agent_as(server, AGENT, &stranger, static_machines(1)).await;
    let by_admin = uuid::Uuid::new_v4().to_string();
    let _admin = agent_as(server, ADMIN, &by_admin, static_machines(1)).await;
    assert_eq!(
        get_as(server, ADMIN, "/inventory")
            .await
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // A user token is refused at the upgrade.
    assert_eq!(ws_as(server, "/agent/", Some(ALICE)).await.err(), Some(403));
    // Agents read the inventory, and nothing about allocations.
    let inventory = get_as(server, AGENT, "/inventory/").await;
    assert!(inventory.as_array().is_some_and(|l| l.len() == 3));
    for path in ["/allocate/".to_owned(), format!("/allocate/{SOME_ID}")] {
        assert_error(
            &call_as(server, Some(BOUND), "GET", &path, None).await,
            403,
            "forbidden",
        );
    }
    assert_eq!(
        ws_as(server, "/allocate/", Some(AGENT)).await.err(),
        Some(403)
    );
    drop(bound);
}

#[tokio::test]
async fn users_allocate_only_as_themselves_and_admins_as_anyone() {
    let lab = Lab::start().await;
    let server = &lab.server;
    let _agent = machines(server, 3).await;

    let mut impostor = ws_as(server, "/allocate/", Some(ALICE))
        .await
        .expect("upgrade");
    send(&mut impostor, json!({"requirements": {"username": "bob"}})).await;
    let message = recv_error(&mut impostor, 403, "forbidden").await;
    assert!(
        message.contains("requirements.username") && !message.contains(ALICE),
        "{message}"
    );
    expect_close(&mut impostor, 1008).await;

    let (_alice_ws, ready) = ready_as(server, ALICE, "alice").await;
    assert_eq!(
        ready["connection"]["password"], "hunter2",
        "credentials come in `ready`"
    );
    let (_carol_ws, carol) = ready_as(server, ADMIN, "carol").await;
    let info = get_as(
        server,
        ADMIN,
        &format!("/allocate/{}", carol["allocation_id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(info["username"], "carol");
}

#[tokio::test]
async fn users_see_extend_and_free_only_their_own_allocations() {
    let lab = Lab::start().await;
    let server = &lab.server;
    let _agent = machines(server, 2).await;
    let (mut alice_ws, alice) = ready_as(server, ALICE, "alice").await;
    let (_bob_ws, bob) = ready_as(server, BOB, "bob").await;
    let alice_id = alice["allocation_id"].as_str().expect("id").to_owned();
    let bob_id = bob["allocation_id"].as_str().expect("id").to_owned();
    let alice_path = format!("/allocate/{alice_id}");

    // Lists: one's own for a user, all for an admin; connections only to those who see them.
    let mine = get_as(server, ALICE, "/allocate/").await;
    assert_eq!(ids_of(&mine), [alice_id.as_str()]);
    assert_eq!(mine[0]["connection"]["password"], "hunter2");
    assert_eq!(
        ids_of(&get_as(server, BOB, "/allocate").await),
        [bob_id.as_str()]
    );
    let all = get_as(server, ADMIN, "/allocate/").await;
    assert_eq!(ids_of(&all), [alice_id.as_str(), bob_id.as_str()]);

    // Another user's allocation: 403 to see, extend or free it; it stays as it was.
    let later = json!({"expires": unix_now() + 60});
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(later.clone())),
        ("DELETE", None),
    ] {
        let got = call_as(server, Some(BOB), method, &alice_path, body).await;
        assert_error(&got, 403, "forbidden");
        assert!(!got.1.to_string().contains("hunter2"));
    }
    let own = get_as(server, ALICE, &alice_path).await;
    assert_eq!(own["state"], "ready");
    assert_eq!(own["connection"]["password"], "hunter2");
    assert_eq!(
        get_as(server, ADMIN, &alice_path).await["connection"]["password"],
        "hunter2"
    );
    let unknown = format!("/allocate/{SOME_ID}");
    assert_error(
        &call_as(server, Some(ALICE), "GET", &unknown, None).await,
        404,
        "not_found",
    );

    // The owner extends and frees; an admin frees anyone's.
    let patched = call_as(server, Some(ALICE), "PATCH", &alice_path, Some(later)).await;
    assert_eq!(patched.0, 200, "{}", patched.1);
    let deleted = call_as(server, Some(ALICE), "DELETE", &alice_path, None).await;
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    recv_status(&mut alice_ws, "released").await;
    let bob_path = format!("/allocate/{bob_id}");
    let deleted = call_as(server, Some(ADMIN), "DELETE", &bob_path, None).await;
    assert_eq!(deleted.0, 200, "{}", deleted.1);
}

#[tokio::test]
async fn users_and_admins_ask_why_not_and_only_of_their_own_allocations() {
    let lab = Lab::start().await;
    let server = &lab.server;
    let _agent = machines(server, 1).await;
    let (_alice_ws, alice) = ready_as(server, ALICE, "alice").await;
    let alice_id = alice["allocation_id"].as_str().expect("id").to_owned();
    let explain = format!("/allocate/{alice_id}/explain");
    let dry_run = || Some(json!({"requirements": {"tags": ["nvidia"]}}));
    for token in [ALICE, BOB, ADMIN] {
        let (status, body) = call_as(server, Some(token), "POST", "/match", dry_run()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["matching_resources"], 1);
    }
    assert_error(
        &call_as(server, Some(AGENT), "POST", "/match", dry_run()).await,
        403,
        "forbidden",
    );
    for token in [ALICE, ADMIN] {
        let data = get_as(server, token, &explain).await;
        assert_eq!(data["explain"][0]["reason"], "allocated", "{data}");
    }
    for (token, code) in [(BOB, "forbidden"), (AGENT, "forbidden")] {
        assert_error(
            &call_as(server, Some(token), "GET", &explain, None).await,
            403,
            code,
        );
    }
    assert_error(
        &call_as(
            server,
            Some(ALICE),
            "GET",
            &format!("/allocate/{SOME_ID}/explain"),
            None,
        )
        .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn only_admins_take_resources_out_of_service_and_no_one_sees_credentials_there() {
    let lab = Lab::start().await;
    let server = &lab.server;
    let mut agent = machines(server, 1).await;
    let inventory_id = get_as(server, ADMIN, "/inventory").await[0]["inventory_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/inventory/{inventory_id}");
    let out = json!({"maintenance": true, "reason": "fan broken"});
    for token in [ALICE, AGENT, BOUND] {
        let got = call_as(server, Some(token), "PATCH", &path, Some(out.clone())).await;
        assert_error(&got, 403, "forbidden");
    }
    let (status, body) = call_as(server, Some(ADMIN), "PATCH", &path, Some(out)).await;
    assert_eq!(
        (status, body["data"]["state"].clone()),
        (200, json!("maintenance"))
    );
    let back = call_as(
        server,
        Some(ADMIN),
        "PATCH",
        &path,
        Some(json!({"maintenance": false})),
    )
    .await;
    assert_eq!(back.0, 200, "{}", back.1);

    let (_ws, _) = ready_as(server, ALICE, "alice").await;
    for token in [AGENT, ALICE, BOB, ADMIN] {
        for path in ["/inventory".to_owned(), path.clone()] {
            let text = get_as(server, token, &path).await.to_string();
            assert!(
                !text.contains("hunter2") && !text.contains("connection"),
                "{text}"
            );
        }
    }
    for token in [ALICE, AGENT, BOUND] {
        let got = call_as(server, Some(token), "POST", "/admin/backup", None).await;
        assert_error(&got, 403, "forbidden");
    }
    let backup = call_with(
        server,
        Some(&format!("Bearer {ADMIN}")),
        "POST",
        "/admin/backup",
        None,
    )
    .await;
    assert_eq!(backup.0, 200);
    assert_eq!(backup.2[CONTENT_TYPE], "application/octet-stream");
    let (status, metrics) = call_as(server, None, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("text").to_owned();
    for secret in ["hunter2", "alice", ALICE, ADMIN, AGENT] {
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
    agent.ws.close(None).await.expect("close");
}

#[tokio::test]
async fn a_browser_sends_its_token_as_a_websocket_subprotocol() {
    let lab = Lab::start().await;
    let server = &lab.server;
    let _agent = machines(server, 1).await;
    let mut request = format!("ws://{}/allocate/", server.addr)
        .into_client_request()
        .expect("request");
    let offered = format!("allocate, bearer.{ALICE}");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&offered).expect("header"),
    );
    let (mut ws, response) = bounded(connect_async(request)).await.expect("upgrade");
    let selected = &response.headers()["sec-websocket-protocol"];
    assert_eq!(selected, "allocate", "the token is never echoed");
    send(
        &mut ws,
        json!({"requirements": {"username": "alice", "allocation_timeout_seconds": 0}}),
    )
    .await;
    recv_status(&mut ws, "ready").await;
    let unknown = [(
        "sec-websocket-protocol",
        format!("allocate, bearer.{UNKNOWN}"),
    )];
    assert_eq!(
        ws_with(server, "/allocate/", &unknown).await.err(),
        Some(401)
    );
}

#[tokio::test]
async fn a_reload_replaces_the_tokens() {
    let lab = Lab::start().await;
    let server = &lab.server;
    assert_eq!(
        call_as(server, Some(ALICE), "GET", "/inventory", None)
            .await
            .0,
        200
    );
    let renewed = "alice-renewed-token-0123456789";
    std::fs::write(&lab.file, tokens_text().replace(ALICE, renewed)).expect("rewrite");
    assert_eq!(lab.tokens.reload().expect("reload"), 5);
    assert_eq!(
        call_as(server, Some(ALICE), "GET", "/inventory", None)
            .await
            .0,
        401
    );
    assert_eq!(
        call_as(server, Some(renewed), "GET", "/inventory", None)
            .await
            .0,
        200
    );
    std::fs::write(&lab.file, "not a tokens file").expect("rewrite");
    assert!(lab.tokens.reload().is_err());
    assert_eq!(
        call_as(server, Some(renewed), "GET", "/inventory", None)
            .await
            .0,
        200,
        "kept"
    );
}

#[tokio::test]
async fn with_no_tokens_the_server_runs_open() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    agent.register(static_machines(1)).await;
    for token in [None, Some(UNKNOWN)] {
        assert_eq!(
            call_as(&server, token, "GET", "/allocate/", None).await.0,
            200
        );
        let patch = json!({"maintenance": false});
        let id = get_as(&server, "anything", "/inventory").await[0]["inventory_id"].clone();
        let path = format!("/inventory/{}", id.as_str().expect("id"));
        assert_eq!(
            call_as(&server, token, "PATCH", &path, Some(patch)).await.0,
            200
        );
    }
    let mut client = allocate(
        &server,
        json!({"username": "anyone", "allocation_timeout_seconds": 0}),
    )
    .await;
    let ready = recv_status(&mut client, "ready").await;
    let all = get_as(&server, "anything", "/allocate/").await;
    assert_eq!(ids_of(&all), [ready["allocation_id"].as_str().expect("id")]);
    server.stop().await;
}

#[tokio::test]
async fn only_the_owner_or_an_admin_follows_an_allocation() {
    let lab = Lab::start().await;
    let server = &lab.server;
    let _agent = machines(server, 1).await;
    let (_alice, ready) = ready_as(server, ALICE, "alice").await;
    let path = format!("/allocate/{}", ready["allocation_id"].as_str().expect("id"));

    let mut bob = ws_as(server, &path, Some(BOB)).await.expect("upgrade");
    let message = recv_error(&mut bob, 403, "forbidden").await;
    assert!(message.contains("another user"), "{message}");
    expect_close(&mut bob, 1008).await;
    assert_eq!(ws_as(server, &path, Some(AGENT)).await.err(), Some(403));
    assert_eq!(ws_as(server, &path, None).await.err(), Some(401));

    for token in [ALICE, ADMIN] {
        let mut follower = ws_as(server, &path, Some(token)).await.expect("upgrade");
        assert_eq!(recv_status(&mut follower, "ready").await, ready, "{token}");
    }
}

/// Waits until what an admin reads at `path` shows `state` at `pointer`.
async fn wait_for_state(server: &Server, path: &str, pointer: &str, state: &str) {
    bounded(async {
        while get_as(server, ADMIN, path).await.pointer(pointer) != Some(&json!(state)) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Expects the refusal that a revoked token's socket gets, then its close.
async fn expect_revoked(ws: &mut Ws) {
    let message = recv_error(ws, 401, "unauthorized").await;
    assert!(message.contains("revoked"), "{message}");
    expect_close(ws, 1008).await;
}

#[tokio::test]
async fn revoking_a_token_closes_the_sockets_opened_with_it() {
    let lab = Lab::start().await;
    let server = &lab.server;
    let mut agent = machines(server, 1).await;
    let (mut holder, ready) = ready_as(server, ALICE, "alice").await;
    let id = ready["allocation_id"].as_str().expect("id").to_owned();
    let mut follower = ws_as(server, &format!("/allocate/{id}"), Some(ALICE))
        .await
        .expect("follow upgrade");
    recv_status(&mut follower, "ready").await;
    let mut waiting = ws_as(server, "/allocate/", Some(ALICE))
        .await
        .expect("allocate upgrade");
    send(&mut waiting, json!({"requirements": {"username": "alice"}})).await;
    let queued = recv_status(&mut waiting, "queued").await;
    let mut bob = ws_as(server, "/allocate/", Some(BOB))
        .await
        .expect("allocate upgrade");
    send(&mut bob, json!({"requirements": {"username": "bob"}})).await;
    recv_status(&mut bob, "queued").await;
    let mut feed = ws_as(server, "/dashboard/feed", Some(ALICE))
        .await
        .expect("feed upgrade");

    // Alice's token goes: every socket it opened closes; Bob's stays.
    std::fs::write(
        &lab.file,
        tokens_text().replace(&format!("{ALICE} user alice\n"), ""),
    )
    .expect("rewrite");
    assert_eq!(lab.tokens.reload().expect("reload"), 4);
    for ws in [&mut holder, &mut follower, &mut waiting] {
        expect_revoked(ws).await;
    }
    let feed_closed = bounded(async {
        loop {
            if let Received::Closed(code) = receive(&mut feed).await {
                return code;
            }
        }
    })
    .await;
    assert_eq!(feed_closed, Some(1008));
    // The waiting request left with its socket; the lease lives on, as after any close.
    let waiting_id = queued["allocation_id"].as_str().expect("id");
    wait_for_state(
        server,
        &format!("/allocate/{waiting_id}"),
        "/state",
        "cancelled",
    )
    .await;
    assert_eq!(
        get_as(server, ADMIN, &format!("/allocate/{id}")).await["state"],
        "ready"
    );
    let quiet = std::time::Duration::from_millis(300);
    match tokio::time::timeout(quiet, receive(&mut bob)).await {
        Err(_) => {}
        Ok(Received::Json(moved)) => assert_eq!(moved["data"]["status"], "queued", "{moved}"),
        Ok(Received::Closed(code)) => panic!("bob's socket closed ({code:?})"),
    }

    // A token whose role changes is revoked too: the agent's machine goes offline.
    std::fs::write(
        &lab.file,
        tokens_text()
            .replace(&format!("{ALICE} user alice\n"), "")
            .replace(
                &format!("{AGENT} agent\n"),
                &format!("{AGENT} user carol\n"),
            ),
    )
    .expect("rewrite");
    lab.tokens.reload().expect("reload");
    expect_revoked(&mut agent.ws).await;
    let inventory_id = ready["inventory_id"].as_str().expect("inventory id");
    let path = format!("/inventory/{inventory_id}");
    wait_for_state(server, &path, "/0/state", "offline").await;
}

#[tokio::test]
async fn usage_is_everyone_s_for_an_admin_a_user_s_own_and_no_agent_s() {
    let lab = Lab::start().await;
    let server = &lab.server;
    let _agent = machines(server, 2).await;
    let (_alice, _) = ready_as(server, ALICE, "alice").await;
    let (_bob, _) = ready_as(server, BOB, "bob").await;
    let keys = |data: &Value| -> Vec<String> {
        let mut keys: Vec<String> = data
            .as_array()
            .expect("a list")
            .iter()
            .map(|row| row["key"].as_str().expect("key").to_owned())
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&get_as(server, ADMIN, "/usage?by=user").await),
        ["alice", "bob"]
    );
    assert_eq!(
        keys(&get_as(server, ALICE, "/usage?by=user").await),
        ["alice"]
    );
    assert_eq!(keys(&get_as(server, BOB, "/usage/").await), ["bob"]);
    assert_eq!(
        get_as(server, BOB, "/usage?by=label").await[0]["key"],
        "nvidia"
    );
    let refused = call_as(server, Some(AGENT), "GET", "/usage", None).await;
    assert_error(&refused, 403, "forbidden");
    assert_error(
        &call_as(server, None, "GET", "/usage", None).await,
        401,
        "unauthorized",
    );
}
