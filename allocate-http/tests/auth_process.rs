//! The `allocate-http` binary's side of security: the refusal of a non-loopback address with
//! no tokens, the log line saying it runs open, a tokens file others may read, SIGHUP
//! reloads, and no token or password in its log even at trace level.

mod common;
mod process;

use common::{bounded, recv_status, resource, send, ws_at};
use process::{Proc, TokensFile};
use serde_json::json;
use std::net::SocketAddr;

const AGENT: &str = "agent-token-0123456789";
const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";
const UNKNOWN: &str = "unknown-token-0123456789";

#[test]
fn a_non_loopback_address_without_tokens_is_refused() {
    let (status, log) = Proc::spawn(&["--listen", "0.0.0.0:0"]).exit();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("refusing to listen on 0.0.0.0:0"), "{log}");
    assert!(
        log.contains("--tokens-file") && log.contains("--allow-open"),
        "{log}"
    );
}

#[test]
fn boolean_variables_take_what_people_type() {
    for yes in ["1", "yes", "true", "on"] {
        let mut server =
            Proc::spawn_env(&["--listen", "127.0.0.1:0"], &[("ALLOCATE_IN_MEMORY", yes)]);
        server.wait_for("running in memory");
        server.kill();
    }
    // Off is off: a non-loopback address is still refused, before anything is bound.
    for no in ["0", "no", "false", "off"] {
        let env = [("ALLOCATE_ALLOW_OPEN", no)];
        let (status, log) = Proc::spawn_env(&["--listen", "0.0.0.0:0"], &env).exit();
        assert_eq!(status.code(), Some(2), "{no}: {log}");
        assert!(log.contains("refusing to listen"), "{no}: {log}");
    }
    let env = [("ALLOCATE_IN_MEMORY", "maybe")];
    let (status, log) = Proc::spawn_env(&["--listen", "127.0.0.1:0"], &env).exit();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("maybe") && log.contains("--in-memory"),
        "{log}"
    );
}

#[test]
fn without_tokens_the_log_says_it_runs_open() {
    let mut server = Proc::spawn(&["--listen", "127.0.0.1:0"]);
    let line = server.wait_for("runs open");
    assert!(line.contains("WARN"), "{line}");
    server.address();
    server.kill();
}

#[test]
fn a_tokens_file_others_can_read_is_refused() {
    let file = TokensFile::new(&format!("{ALICE} user alice\n"), 0o644);
    let (status, log) =
        Proc::spawn(&["--listen", "127.0.0.1:0", "--tokens-file", file.arg()]).exit();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("chmod 600") && log.contains("mode 644"),
        "{log}"
    );
    assert!(!log.contains(ALICE), "{log}");
    file.write(&format!("{ALICE} root\n"), 0o600);
    let (status, log) =
        Proc::spawn(&["--listen", "127.0.0.1:0", "--tokens-file", file.arg()]).exit();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("line 1") && !log.contains(ALICE), "{log}");
}

async fn status_of(http: &reqwest::Client, addr: SocketAddr, token: &str, path: &str) -> u16 {
    let request = http.get(format!("http://{addr}{path}")).bearer_auth(token);
    bounded(request.send())
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn sighup_reloads_the_tokens_and_no_secret_reaches_the_log() {
    let tokens = format!("{AGENT} agent\n{ALICE} user alice\n");
    let file = TokensFile::new(&tokens, 0o600);
    let mut server = Proc::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--tokens-file",
        file.arg(),
        "--log-level",
        "trace",
    ]);
    server.wait_for("bearer tokens loaded");
    let addr = server.address();
    let http = reqwest::Client::new();

    // A whole allocation, whose `ready` carries a password.
    let mut agent = ws_at(addr, "/agent/", Some(AGENT)).await;
    let machine = resource(&["nvidia"], 4, Some("10.0.0.7"));
    send(
        &mut agent,
        json!({"agent_id": uuid::Uuid::new_v4(), "resources": [machine]}),
    )
    .await;
    recv_status(&mut agent, "ok").await;
    let mut client = ws_at(addr, "/allocate/", Some(ALICE)).await;
    send(&mut client, json!({"requirements": {"username": "alice"}})).await;
    let ready = recv_status(&mut client, "ready").await;
    assert_eq!(ready["connection"]["password"], "hunter2");
    assert_eq!(status_of(&http, addr, ALICE, "/allocate/").await, 200);
    assert_eq!(status_of(&http, addr, UNKNOWN, "/allocate/").await, 401);

    // Bob's token works only once the file has it and the server heard SIGHUP.
    assert_eq!(status_of(&http, addr, BOB, "/inventory").await, 401);
    file.write(&format!("{tokens}{BOB} user bob\n"), 0o600);
    server.signal("HUP");
    let reloaded = server.wait_for("tokens file reloaded");
    assert!(reloaded.contains("tokens=3"), "{reloaded}");
    assert_eq!(status_of(&http, addr, BOB, "/inventory").await, 200);
    file.write("broken", 0o600);
    server.signal("HUP");
    server.wait_for("keeping the tokens loaded before");
    assert_eq!(status_of(&http, addr, BOB, "/inventory").await, 200);

    let _ = client.close(None).await;
    let _ = agent.close(None).await;
    let log = server.kill();
    assert!(
        log.contains("unauthorized") && log.contains("allocation ready"),
        "{log}"
    );
    for secret in [AGENT, ALICE, BOB, UNKNOWN, "hunter2"] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}
