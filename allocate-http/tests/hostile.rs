//! Hostile and faulty peers against the connection timeouts and caps: a client trickling
//! its headers (slowloris), connections left idle, a client that never reads its answer, a
//! peer over its cap, and a flood of connections against the binary under a low open-files
//! limit while an honest client still allocates. Every timeout is set small, so each test
//! takes about a second.

mod common;
mod durability_support;

use common::{bounded, recv_status, resource, send, test_config, Agent, Server, STEP};
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::connect_async;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A TCP connection to `server` from `source`, an address of the loopback network (all of
/// 127.0.0.0/8 reaches the server, each as a peer of its own).
async fn connect_from(source: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((source, 0))).expect("bind");
    bounded(socket.connect(server)).await.expect("connect")
}

/// What the server sends on `tcp` until it closes it (end of stream or reset), or `None`
/// if it is still open after `within`.
async fn read_until_closed(tcp: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    timeout(within, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
}

/// The value of one sample of `/metrics`, such as `allocate_connections_open`.
async fn metric(server: &Server, sample: &str) -> u64 {
    let value = server.metric(sample).await;
    value.unwrap_or_else(|| panic!("no {sample} in /metrics")) as u64
}

/// Waits until `/metrics` shows `open` connections (its own included).
async fn wait_open(server: &Server, open: u64) {
    let reached = timeout(STEP, async {
        while metric(server, "allocate_connections_open").await != open {
            sleep(ms(20)).await;
        }
    });
    if reached.await.is_err() {
        let now = metric(server, "allocate_connections_open").await;
        panic!("connections open: {now}, never {open}");
    }
}

/// Sends a request head a header line at a time, every 50 ms, never finishing it; returns
/// how long the server kept the connection.
async fn trickle(server: SocketAddr) -> Duration {
    let mut tcp = bounded(TcpStream::connect(server)).await.expect("connect");
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let mut next = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    while started.elapsed() < STEP {
        if tcp.write_all(&next).await.is_err() {
            return started.elapsed();
        }
        next = b"X-Slow: 1\r\n".to_vec();
        if let Ok(read) = timeout(ms(50), tcp.read(&mut buf)).await {
            assert!(
                !matches!(read, Ok(n) if n > 0),
                "an answer to an unfinished request"
            );
            return started.elapsed();
        }
    }
    panic!("a trickling connection was still open after {STEP:?}");
}

#[tokio::test]
async fn a_slowloris_is_closed_after_the_header_read_timeout() {
    let config = allocate_http::ServerConfig {
        header_read_timeout: ms(300),
        ..test_config()
    };
    let server = Server::with(config).await;
    let kept = join_all((0..20).map(|_| trickle(server.addr))).await;
    for lasted in kept {
        assert!(
            lasted >= ms(250) && lasted < ms(2000),
            "a trickling connection lasted {lasted:?}"
        );
    }
    wait_open(&server, 1).await;
    assert_eq!(server.get("/healthz").await, "ok", "honest requests go on");
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_keep_alive_timeout() {
    let config = allocate_http::ServerConfig {
        keep_alive_timeout: ms(300),
        ..test_config()
    };
    let server = Server::with(config).await;
    // One that never sends anything, and one that sent a request and read its answer.
    let mut silent = bounded(TcpStream::connect(server.addr))
        .await
        .expect("connect");
    let mut kept_alive = bounded(TcpStream::connect(server.addr))
        .await
        .expect("connect");
    let started = Instant::now();
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 4096];
    let n = bounded(kept_alive.read(&mut buf)).await.expect("an answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    for tcp in [&mut silent, &mut kept_alive] {
        let rest = read_until_closed(tcp, ms(2000))
            .await
            .expect("closed when idle");
        assert!(rest.is_empty(), "nothing more is sent");
    }
    let lasted = started.elapsed();
    assert!(lasted >= ms(250), "closed after {lasted:?}");
}

/// How many answers a client that never reads asks for.
const ASKED: usize = 40;

#[tokio::test]
async fn a_client_that_never_reads_its_answer_is_dropped_after_the_write_timeout() {
    let config = allocate_http::ServerConfig {
        write_timeout: ms(1000),
        ..test_config()
    };
    let server = Server::with(config).await;
    // An inventory of about 200 KiB, asked for 40 times in a row on each connection: more
    // than a small receive buffer and the kernel's send buffer hold.
    let mut agent = Agent::connect(&server).await;
    let machines: Vec<Value> = (0..800)
        .map(|i| resource(&["nvidia", "cuda"], i % 64 + 1, Some("10.0.0.7")))
        .collect();
    agent.register(machines).await;
    wait_open(&server, 2).await; // the agent and /metrics
    let requests = b"GET /inventory/ HTTP/1.1\r\nHost: x\r\n\r\n".repeat(ASKED);
    let mut stalled = Vec::new();
    let started = Instant::now();
    for _ in 0..10 {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("a small buffer");
        let mut tcp = bounded(socket.connect(server.addr)).await.expect("connect");
        tcp.write_all(&requests).await.expect("requests");
        stalled.push(tcp);
    }
    // Nobody reads: after the write timeout the server gives every one of them up.
    wait_open(&server, 2).await;
    assert!(started.elapsed() >= ms(1000), "given up before the timeout");
    for mut tcp in stalled {
        let got = read_until_closed(&mut tcp, STEP).await.expect("closed");
        let text = String::from_utf8_lossy(&got);
        let (head, _) = text.split_once("\r\n\r\n").expect("a head was sent");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a content length")
            .parse()
            .expect("a number");
        assert!(got.len() < ASKED * length, "all {ASKED} answers went out");
    }
    assert_eq!(server.get("/healthz").await, "ok");
}

#[tokio::test]
async fn a_peer_over_its_cap_is_answered_503_and_others_are_served() {
    let mut config = test_config();
    config.connections.per_peer_max = 3;
    let server = Server::with(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from([127, 0, 0, 2], server.addr).await);
    }
    let mut over = connect_from([127, 0, 0, 2], server.addr).await;
    over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let answer = read_until_closed(&mut over, STEP)
        .await
        .expect("answered and closed");
    let text = String::from_utf8(answer).expect("text");
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    let (_, body) = text.split_once("\r\n\r\n").expect("a body");
    let envelope: Value = serde_json::from_str(body).expect("an envelope");
    assert_eq!(envelope["status"], 503);
    assert_eq!(envelope["error"]["code"], "overloaded");
    let message = envelope["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("127.0.0.2 holds 3 connections"),
        "{message}"
    );
    assert_eq!(
        metric(&server, "allocate_connections_refused_total{cap=\"peer\"}").await,
        1
    );
    // Another address is served meanwhile, and a place freed is taken again.
    assert_eq!(server.get("/healthz").await, "ok");
    drop(held.pop());
    wait_open(&server, 3).await;
    let mut again = connect_from([127, 0, 0, 2], server.addr).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let answer = read_until_closed(&mut again, STEP).await.expect("answered");
    assert!(answer.starts_with(b"HTTP/1.1 200 OK"));
}

/// Opens `n` connections from `source`, each sending the start of a request head; returns
/// those the server kept, and how many it refused (answered 503, or closed at once when
/// too many refusals were being answered).
async fn flood(server: SocketAddr, source: [u8; 4], n: usize) -> (Vec<TcpStream>, usize) {
    let mut opened = Vec::new();
    for _ in 0..n {
        let mut tcp = connect_from(source, server).await;
        let _ = tcp.write_all(b"GET /inventory/ HTTP/1.1\r\n").await;
        opened.push(tcp);
    }
    let answers = join_all(opened.iter_mut().map(|tcp| read_until_closed(tcp, ms(300)))).await;
    let mut kept = Vec::new();
    let mut refused = 0;
    for (tcp, answer) in opened.into_iter().zip(answers) {
        match answer {
            None => kept.push(tcp),
            Some(answer) => {
                assert!(
                    answer.is_empty() || answer.starts_with(b"HTTP/1.1 503 "),
                    "{answer:?}"
                );
                refused += 1;
            }
        }
    }
    (kept, refused)
}

/// The server's open file descriptors.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's /proc entry")
        .count()
}

#[tokio::test]
async fn a_connection_flood_finds_the_caps_and_an_honest_client_still_allocates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let open_files = 300;
    let server = durability_support::start_limited(
        &dir.path().join("data"),
        &[
            "--in-memory",
            "--connections-per-peer-max",
            "60",
            "--header-read-timeout-ms",
            "60000",
            "--keep-alive-timeout-ms",
            "60000",
        ],
        Some(open_files),
    );
    let durability_support::Started::Running(server) = server else {
        panic!("the server did not start");
    };
    let log = server.log();
    let caps = log
        .lines()
        .find(|l| l.contains("connection caps"))
        .expect("the caps are logged");
    // 300 files, less 128 kept for the listener, the journal, the runtime and refusals.
    assert!(caps.contains("connections_max=172"), "{caps}");
    assert!(log.contains("open-files limit allows"), "{log}");

    // Three addresses flood; each keeps at most its 60, together at most the 172.
    let mut kept = Vec::new();
    let mut refused = 0;
    for source in [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]] {
        let (held, turned_away) = flood(server.addr, source, 100).await;
        assert!(held.len() <= 60, "{} kept from {source:?}", held.len());
        kept.push(held);
        refused += turned_away;
    }
    let held: usize = kept.iter().map(Vec::len).sum();
    assert_eq!(held, 172, "the total cap is reached");
    assert_eq!(refused, 300 - 172);
    let reserve = 64;
    assert!(open_fds(server.pid()) < open_files as usize - reserve);

    // One address's connections go; an honest client allocates while the rest stay.
    drop(kept.pop());
    sleep(ms(200)).await;
    let agent_id = uuid::Uuid::new_v4();
    let (mut agent, _) = bounded(connect_async(server.ws_url("/agent/")))
        .await
        .expect("the agent connects");
    let machine = resource(&["nvidia"], 8, Some("10.0.0.7"));
    send(
        &mut agent,
        json!({"agent_id": agent_id, "resources": [machine]}),
    )
    .await;
    recv_status(&mut agent, "ok").await;
    let (mut client, _) = bounded(connect_async(server.ws_url("/allocate/")))
        .await
        .expect("the client connects");
    send(
        &mut client,
        json!({"requirements": {"username": "alice", "tags": ["nvidia"]}}),
    )
    .await;
    let ready = recv_status(&mut client, "ready").await;
    assert_eq!(ready["connection"]["host"], "10.0.0.7");
    assert!(open_fds(server.pid()) < open_files as usize - reserve);

    let log = server.kill9();
    assert!(!log.contains("cannot accept"), "{log}");
    let refusals = log.matches("connection refused with 503").count();
    assert!(
        (1..=2).contains(&refusals),
        "one line per cap, not one per refusal:\n{log}"
    );
    drop(kept);
}
