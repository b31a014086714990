//! Every kind of bad input gets the documented error envelope, and clients that behave carry
//! on unaffected.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const MIB: usize = 1 << 20;

/// `method path` (with a JSON body) must fail with this status, code and part of the message.
async fn expect_error(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
    (status, code, want): (u16, &str, &str),
) {
    let (got, envelope) = server.call(method, path, body).await;
    assert_eq!(got, status, "{method} {path}: {envelope}");
    assert_eq!(envelope["status"], status, "{method} {path}: {envelope}");
    assert_eq!(
        envelope["error"]["code"], code,
        "{method} {path}: {envelope}"
    );
    let message = envelope["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(want),
        "{method} {path}: {message:?} should contain {want:?}"
    );
}

/// Sends raw text as a client's first message; expects 400 naming `want`, then close 1008.
async fn refused(server: &Server, text: &str, want: &str) {
    let mut ws = server.ws("/allocate/").await;
    ws.send(Message::Text(text.to_owned().into()))
        .await
        .expect("send");
    let message = recv_error(&mut ws, 400, "invalid_request").await;
    assert!(
        message.contains(want),
        "{message:?} should contain {want:?}"
    );
    expect_close(&mut ws, 1008).await;
}

#[tokio::test]
async fn bad_allocation_requests_are_refused_while_good_clients_carry_on() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    agent
        .register(vec![
            resource(&["x"], 1, Some("a")),
            resource(&["x"], 1, Some("b")),
        ])
        .await;
    let mut holder = allocate(&server, json!({"tags": ["x"], "username": "good"})).await;
    let held = recv_status(&mut holder, "ready").await;
    let mut other = allocate(&server, json!({"tags": ["x"], "username": "good"})).await;
    recv_status(&mut other, "ready").await;
    let mut waiting = allocate(&server, json!({"tags": ["x"], "username": "good"})).await;
    recv_status(&mut waiting, "queued").await;

    let past = unix_now() - 10;
    let cases = [
        ("{", "message is not valid JSON"),
        ("[]", "message must be an object"),
        (
            r#"{"requirement": {"username": "u"}}"#,
            "unknown field `requirement`",
        ),
        (
            r#"{"requirements": {"tag": ["x"], "username": "u"}}"#,
            "unknown field `tag` in requirements",
        ),
        (
            r#"{"requirements": {"tags": ["x"]}}"#,
            "requirements.username is required",
        ),
        (
            r#"{"requirements": {"username": "u", "allocation_timeout_seconds": "5"}}"#,
            "requirements.allocation_timeout_seconds must be a non-negative integer, got a string",
        ),
        (
            r#"{"requirements": {"username": "u", "allocation_timeout_seconds": 1.5}}"#,
            "got a float",
        ),
        (
            r#"{"requirements": {"username": "u", "min_cpu_count": true}}"#,
            "got a boolean",
        ),
        (
            r#"{"requirements": {"username": "u", "tags": "x"}}"#,
            "requirements.tags must be a list",
        ),
        (
            r#"{"requirements": {"username": "u", "gpu": {"count": 0}}}"#,
            "requirements.gpu.count",
        ),
        (
            r#"{"requirements": {"username": "u", "tags": ["x"], "username": "v"}}"#,
            "duplicate field `username` in requirements",
        ),
        (
            r#"{"requirements": {"username": "u", "expires": 1e400}}"#,
            "requirements.expires is a number out of range",
        ),
        (
            r#"{"requirements": {"username": "u", "expires": 99999999999999999999}}"#,
            "requirements.expires must be a non-negative integer, got a number out of range",
        ),
    ];
    for (text, want) in cases {
        refused(&server, text, want).await;
    }
    let expired = json!({"requirements": {"username": "u", "expires": past}}).to_string();
    refused(&server, &expired, "is in the past").await;
    let long = json!({"requirements": {"username": "u".repeat(300)}}).to_string();
    refused(
        &server,
        &long,
        "requirements.username is 300 characters long",
    )
    .await;

    let mut binary = server.ws("/allocate/").await;
    binary
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    recv_error(&mut binary, 400, "invalid_request").await;
    expect_close(&mut binary, 1008).await;

    // The good clients never noticed; a freed resource still goes to the waiting one.
    let id = held["allocation_id"].as_str().expect("id");
    assert_eq!(
        server
            .call("DELETE", &format!("/allocate/{id}"), None)
            .await
            .0,
        200
    );
    recv_status(&mut holder, "released").await;
    assert_eq!(
        recv_status(&mut waiting, "ready").await["inventory_id"],
        held["inventory_id"]
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_messages_close_with_1009_and_others_carry_on() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    agent.register(vec![resource(&["x"], 1, None)]).await;

    let mut client = server.ws("/allocate/").await;
    let padding = "x".repeat(MIB);
    let big = json!({"requirements": {"username": "u", "type": padding}}).to_string();
    assert!(big.len() > MIB);
    let _ = client.send(Message::Text(big.into())).await;
    expect_close(&mut client, 1009).await;

    let mut big_agent = Agent::connect(&server).await;
    let _ = big_agent
        .ws
        .send(Message::Text("y".repeat(MIB + 1).into()))
        .await;
    expect_close(&mut big_agent.ws, 1009).await;

    // Exactly at the limit is fine (and then refused for what it says, not its size).
    let mut at_limit = server.ws("/allocate/").await;
    let mut text = json!({"requirements": {"username": "u", "type": ""}}).to_string();
    let fill = MIB - text.len();
    text = text.replace(r#""type":"""#, &format!(r#""type":"{}""#, "z".repeat(fill)));
    assert_eq!(text.len(), MIB);
    at_limit
        .send(Message::Text(text.into()))
        .await
        .expect("send");
    recv_error(&mut at_limit, 400, "invalid_request").await;

    // The agent that behaved still provisions for a client that behaves.
    let mut good = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    let provision = agent.expect("provision").await;
    agent.provisioned(&provision["allocation_id"], "h").await;
    recv_status(&mut good, "ready").await;
    server.stop().await;
}

#[tokio::test]
async fn bad_agent_messages_get_errors_and_only_a_bad_registration_closes() {
    let server = Server::start().await;

    let mut early = server.ws("/agent/").await;
    send(
        &mut early,
        json!({"allocation_id": uuid::Uuid::new_v4(), "released": true}),
    )
    .await;
    let message = recv_error(&mut early, 400, "invalid_request").await;
    assert!(
        message.contains("first message must be a registration"),
        "{message}"
    );
    expect_close(&mut early, 1008).await;

    let mut typo = server.ws("/agent/").await;
    let bad = json!({"agent_id": uuid::Uuid::new_v4(), "resources": [{"cpu_count": 1, "memory_gb": 1, "labelz": []}]});
    send(&mut typo, bad).await;
    let message = recv_error(&mut typo, 400, "invalid_request").await;
    assert!(
        message.contains("unknown field `labelz` in resources[0]"),
        "{message}"
    );
    expect_close(&mut typo, 1008).await;

    let mut agent = Agent::connect(&server).await;
    let ids = agent.register(vec![resource(&["x"], 1, None)]).await;
    let unknown = uuid::Uuid::new_v4();
    let later: [(Value, u16, &str); 4] = [
        (
            json!({"allocation_id": unknown, "released": true}),
            404,
            "not_found",
        ),
        (
            json!({"allocation_id": unknown, "connection": {"host": "h", "username": "u", "password": "p"}}),
            404,
            "not_found",
        ),
        (
            json!({"allocation_id": "nope", "error": "x"}),
            400,
            "invalid_request",
        ),
        (
            json!({"agent_id": uuid::Uuid::new_v4(), "resources": []}),
            400,
            "invalid_request",
        ),
    ];
    for (message, status, code) in later {
        send(&mut agent.ws, message).await;
        recv_error(&mut agent.ws, status, code).await;
    }
    assert_eq!(
        server.resource(&ids[0]).await["state"],
        "free",
        "the agent is still connected"
    );
    let mut client = allocate(&server, json!({"username": "u"})).await;
    let provision = agent.expect("provision").await;
    agent.provisioned(&provision["allocation_id"], "h").await;
    recv_status(&mut client, "ready").await;
    server.stop().await;
}

#[tokio::test]
async fn registration_limits_and_silent_sockets_are_refused() {
    let mut config = test_config();
    config.engine.limits.resources_per_registration_max = 2;
    config.idle_timeout = std::time::Duration::from_millis(300);
    let server = Server::with(config).await;
    let mut greedy = server.ws("/agent/").await;
    let three = vec![resource(&["x"], 1, None); 3];
    send(
        &mut greedy,
        json!({"agent_id": uuid::Uuid::new_v4(), "resources": three}),
    )
    .await;
    let message = recv_error(&mut greedy, 400, "invalid_request").await;
    assert!(
        message.contains("resources has 3 entries, more than the limit of 2"),
        "{message}"
    );
    expect_close(&mut greedy, 1008).await;

    let mut silent = server.ws("/allocate/").await;
    let message = recv_error(&mut silent, 400, "invalid_request").await;
    assert!(
        message.contains("no message arrived within 300 ms"),
        "{message}"
    );
    expect_close(&mut silent, 1008).await;
    server.stop().await;
}

#[tokio::test]
async fn http_errors_are_envelopes() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent.register(vec![resource(&["x"], 1, Some("h"))]).await;
    let mut client = allocate(&server, json!({"username": "u"})).await;
    let ready = recv_status(&mut client, "ready").await;
    let id = ready["allocation_id"].as_str().expect("id");
    let unknown = uuid::Uuid::new_v4();
    let past = unix_now() - 5;

    expect_error(
        &server,
        "GET",
        "/nope",
        None,
        (404, "not_found", "no endpoint at /nope"),
    )
    .await;
    let wrong_method = [
        ("PUT", "/healthz"),
        ("POST", "/inventory/"),
        ("DELETE", "/agent"),
    ];
    for (method, path) in wrong_method {
        let want = (405, "method_not_allowed", method);
        expect_error(&server, method, path, None, want).await;
    }
    let not_found = [
        ("GET", format!("/inventory/{unknown}"), None),
        ("GET", format!("/allocate/{unknown}/"), None),
        ("DELETE", format!("/allocate/{unknown}"), None),
        (
            "PATCH",
            format!("/allocate/{unknown}"),
            Some(json!({"expires": past + 100})),
        ),
        (
            "PATCH",
            format!("/inventory/{unknown}"),
            Some(json!({"maintenance": true})),
        ),
    ];
    for (method, path, body) in not_found {
        expect_error(
            &server,
            method,
            &path,
            body,
            (404, "not_found", "not found"),
        )
        .await;
    }
    let mine = format!("/allocate/{id}");
    let invalid = [
        (
            "GET",
            "/inventory/?tag=x".to_owned(),
            None,
            "unknown query parameter `tag`",
        ),
        (
            "GET",
            "/inventory/?state=busy".to_owned(),
            None,
            "state must be one of",
        ),
        (
            "GET",
            "/inventory/not-a-uuid".to_owned(),
            None,
            "inventory_id must be a hyphenated UUID",
        ),
        (
            "GET",
            "/allocate/123".to_owned(),
            None,
            "allocation_id must be a hyphenated UUID",
        ),
        ("DELETE", "/allocate/zz".to_owned(), None, "allocation_id"),
        (
            "PATCH",
            mine.clone(),
            Some(json!({"expire": 5})),
            "unknown field `expire`",
        ),
        (
            "PATCH",
            mine.clone(),
            Some(json!({"expires": "5"})),
            "got a string",
        ),
        (
            "PATCH",
            mine.clone(),
            Some(json!({"expires": past})),
            "is in the past",
        ),
        (
            "PATCH",
            format!("/inventory/{}", ids[0]),
            Some(json!({"reason": "x"})),
            "maintenance is required",
        ),
        ("GET", "/agent/".to_owned(), None, "websocket"),
    ];
    for (method, path, body, want) in invalid {
        expect_error(&server, method, &path, body, (400, "invalid_request", want)).await;
    }

    let patch = server.url(&format!("/allocate/{id}"));
    let raw = [
        (
            Some("application/json"),
            "{\"expires\": ",
            "message is not valid JSON",
        ),
        (
            Some("application/json"),
            "{\"expires\": 5, \"expires\": 6}",
            "duplicate field `expires` in message",
        ),
        (
            Some("application/json"),
            "{\"expires\": 1e999}",
            "expires is a number out of range",
        ),
        (
            Some("text/plain"),
            "{\"expires\": 5}",
            "content-type must be application/json",
        ),
        (
            None,
            "{\"expires\": 5}",
            "content-type must be application/json, got none",
        ),
    ];
    for (content_type, body, want) in raw {
        let mut req = server.http.patch(&patch).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("patch");
        assert_eq!(resp.status(), 400);
        let envelope: Value = resp.json().await.expect("json");
        assert_eq!(envelope["error"]["code"], "invalid_request");
        let message = envelope["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(want),
            "{message:?} should contain {want:?}"
        );
    }
    let huge = format!("{{\"expires\": \"{}\"}}", "9".repeat(MIB));
    let resp = server
        .http
        .patch(&patch)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 400);

    // After all that, the allocation is untouched.
    assert_eq!(
        server.get(&format!("/allocate/{id}")).await["state"],
        "ready"
    );
    server.stop().await;
}

/// A websocket handshake on a plain TCP connection, so that a test can send frames no
/// client library would.
async fn raw_websocket(server: &Server, path: &str) -> TcpStream {
    let mut tcp = bounded(TcpStream::connect(server.addr))
        .await
        .expect("connect");
    let handshake = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(handshake.as_bytes())
        .await
        .expect("handshake");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(
            bounded(tcp.read_u8())
                .await
                .expect("the handshake's answer"),
        );
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    tcp
}

/// A masked client frame of at most 125 bytes; `first` holds the FIN bit, the reserved bits
/// and the opcode.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![first, 0x80 | payload.len() as u8];
    out.extend(mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

/// The code of the close frame the server sends next, skipping the frames before it.
async fn close_code(tcp: &mut TcpStream) -> u16 {
    bounded(async {
        loop {
            let mut head = [0u8; 2];
            tcp.read_exact(&mut head).await.expect("a frame");
            let len = match head[1] & 0x7f {
                126 => u64::from(tcp.read_u16().await.expect("its length")),
                127 => tcp.read_u64().await.expect("its length"),
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).expect("a length")];
            tcp.read_exact(&mut payload).await.expect("its payload");
            if head[0] & 0x0f == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    })
    .await
}

#[tokio::test]
async fn websocket_protocol_errors_close_with_1002_and_text_that_is_not_utf8_with_1007() {
    let server = Server::start().await;
    let mut reserved_bits = raw_websocket(&server, "/allocate/").await;
    reserved_bits
        .write_all(&frame(0x80 | 0x40 | 0x1, b"{}"))
        .await
        .expect("send");
    assert_eq!(close_code(&mut reserved_bits).await, 1002);
    let mut unknown_opcode = raw_websocket(&server, "/agent/").await;
    unknown_opcode
        .write_all(&frame(0x80 | 0x3, b"{}"))
        .await
        .expect("send");
    assert_eq!(close_code(&mut unknown_opcode).await, 1002);
    let mut not_utf8 = raw_websocket(&server, "/agent/").await;
    not_utf8
        .write_all(&frame(0x81, &[b'{', 0xff, 0xfe, b'}']))
        .await
        .expect("send");
    assert_eq!(close_code(&mut not_utf8).await, 1007);
    let mut feed = raw_websocket(&server, "/dashboard/feed").await;
    feed.write_all(&frame(0x80 | 0x20 | 0x9, b""))
        .await
        .expect("send");
    assert_eq!(close_code(&mut feed).await, 1002);
    // A client that keeps to the protocol is served as ever.
    let mut agent = Agent::connect(&server).await;
    agent.register(vec![resource(&["x"], 1, Some("h"))]).await;
    let mut client = allocate(&server, json!({"username": "u"})).await;
    recv_status(&mut client, "ready").await;
    server.stop().await;
}
