//! The binary's log as JSON (`--log-format json`): every line of stderr is one object, each
//! HTTP request and each websocket has an access line (method, path, status, duration, peer,
//! caller once authenticated, request id), the request id is the answer's `x-request-id`,
//! rejections carry their error code, and no field is an empty string.

mod common;
mod process;

use common::bounded;
use process::{Proc, TokensFile};
use serde_json::Value;
use std::net::SocketAddr;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const ALICE: &str = "alice-token-0123456789";

/// `GET path` with `token`; its status and `x-request-id`.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = bounded(request.send()).await.expect("an answer");
    let id = response
        .headers()
        .get("x-request-id")
        .expect("an x-request-id header")
        .to_str()
        .expect("ASCII")
        .to_owned();
    (response.status().as_u16(), id)
}

/// The access line of request `id` in `lines`.
fn access_line<'a>(lines: &'a [Value], id: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["request_id"] == id)
        .unwrap_or_else(|| panic!("no access line for {id} in {lines:#?}"))
}

#[tokio::test]
async fn every_line_is_json_and_every_request_has_an_access_line() {
    let tokens = TokensFile::new(&format!("{ALICE} user alice\n"), 0o600);
    let mut server = Proc::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--in-memory",
        "--log-format",
        "json",
        "--tokens-file",
        tokens.arg(),
    ]);
    let listening: Value =
        serde_json::from_str(&server.wait_for("allocate-http listening")).expect("a JSON line");
    let addr: SocketAddr = listening["address"]
        .as_str()
        .expect("the address")
        .parse()
        .expect("a socket address");

    let (status, open) = get(addr, "/healthz", None).await;
    assert_eq!(status, 200);
    let (status, listed) = get(addr, "/inventory/", Some(ALICE)).await;
    assert_eq!(status, 200);
    let (status, anonymous) = get(addr, "/inventory/", None).await;
    assert_eq!(status, 401);
    let (status, missing) = get(addr, "/no-such-page", None).await;
    assert_eq!(status, 404);

    let mut request = format!("ws://{addr}/allocate/")
        .into_client_request()
        .expect("request");
    let bearer = HeaderValue::from_str(&format!("Bearer {ALICE}")).expect("header");
    request.headers_mut().insert("authorization", bearer);
    let (mut ws, response) = bounded(connect_async(request)).await.expect("upgrade");
    let socket = response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    ws.close(None).await.expect("close");
    drop(ws);
    server.wait_for("\"message\":\"websocket\"");

    server.signal("TERM");
    let (status, log) = server.exit();
    assert_eq!(status.code(), Some(0), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for line in &lines {
        let object = line.as_object().expect("an object");
        assert!(object.contains_key("timestamp") && object.contains_key("level"));
        for (name, value) in object {
            assert_ne!(value, "", "an empty {name} in {line}");
        }
    }

    let line = access_line(&lines, &open);
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "request");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/healthz");
    assert_eq!(line["status"], 200);
    assert!(
        line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    assert!(
        line["peer"]
            .as_str()
            .expect("a peer")
            .starts_with("127.0.0.1:"),
        "{line}"
    );
    assert!(line.get("caller").is_none() && line.get("error").is_none());

    let line = access_line(&lines, &listed);
    assert_eq!(line["caller"], "user alice");
    assert_eq!(line["status"], 200);
    let line = access_line(&lines, &anonymous);
    assert_eq!(
        (line["status"].as_u64(), line["level"].as_str()),
        (Some(401), Some("INFO"))
    );
    assert_eq!(line["error"], "unauthorized");
    let line = access_line(&lines, &missing);
    assert_eq!(line["error"], "not_found");
    assert_eq!(line["path"], "/no-such-page");

    let line = access_line(&lines, &socket);
    assert_eq!(line["message"], "websocket");
    assert_eq!(line["status"], 101);
    assert_eq!(line["path"], "/allocate/");
    assert_eq!(line["caller"], "user alice");

    let ids = [&open, &listed, &anonymous, &missing, &socket];
    for (i, id) in ids.iter().enumerate() {
        assert!(
            !id.is_empty() && !ids[..i].contains(id),
            "ids differ: {ids:?}"
        );
    }
}
