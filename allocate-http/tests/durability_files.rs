//! The binary against damaged data directories: a torn last record (cut short, or garbage
//! after it) is cut off with a log line and the rest served; damage anywhere else refuses to
//! start with an error that names the file and the byte, and changes nothing on disk.
//! The files are read here as `docs/durability.md` describes them.

mod durability_support;

use durability_support::{start, start_ok, unix_now, ServerProc, Started};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const STEP: Duration = Duration::from_secs(5);
const HEADER_BYTES: usize = 16;

/// A data directory where an agent registered two static machines and two clients got
/// them (`first`, then `second`, whose request is the journal's last record); the server
/// was then killed with `kill -9`.
struct Pristine {
    _scratch: tempfile::TempDir,
    dir: PathBuf,
    first: String,
    second: String,
}

async fn pristine() -> Pristine {
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join("data");
    let server = start_ok(&dir, &[]);
    let agent = agent(&server).await;
    let (first, a) = allocate(&server, "alice").await;
    let (second, b) = allocate(&server, "bob").await;
    // Killed with every socket open: their closing is not recorded after `second`.
    server.kill9();
    drop((agent, a, b));
    Pristine {
        _scratch: scratch,
        dir,
        first,
        second,
    }
}

/// A copy of the pristine directory to damage.
fn copy(from: &Path, scratch: &Path, name: &str) -> PathBuf {
    let to = scratch.join(name);
    fs::create_dir(&to).expect("create copy");
    for entry in fs::read_dir(from).expect("list") {
        let path = entry.expect("entry").path();
        fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
    to
}

fn file_with(dir: &Path, extension: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no .{extension} file"))
}

/// Where each record of a journal file starts: `[len u32 LE][crc u32 LE][len bytes]`.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = HEADER_BYTES;
    while at < bytes.len() {
        offsets.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        at += 8 + len as usize;
    }
    assert_eq!(at, bytes.len(), "whole records");
    offsets
}

async fn agent(server: &ServerProc) -> Ws {
    let (mut ws, _) = timeout(STEP, connect_async(server.ws_url("/agent/")))
        .await
        .expect("bounded")
        .expect("connect");
    let machine = |host: &str| {
        json!({"labels": ["x"], "cpu_count": 4, "memory_gb": 8, "gpu": [], "type": "VM",
               "connection": {"host": host, "username": "lab", "password": "pw"}})
    };
    let hello = json!({"agent_id": "d4863713-1388-4297-a479-a582b306f5cb",
                       "resources": [machine("10.0.0.1"), machine("10.0.0.2")]});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .expect("send");
    next_json(&mut ws).await;
    ws
}

/// Allocates and keeps the socket open (so that its closing is not recorded after it).
async fn allocate(server: &ServerProc, user: &str) -> (String, Ws) {
    let (mut ws, _) = timeout(STEP, connect_async(server.ws_url("/allocate/")))
        .await
        .expect("bounded")
        .expect("connect");
    let request = json!({"requirements": {"tags": ["x"], "username": user,
                         "allocation_timeout_seconds": 0, "expires": unix_now() + 3600}});
    ws.send(Message::Text(request.to_string().into()))
        .await
        .expect("send");
    let ready = next_json(&mut ws).await;
    assert_eq!(ready["data"]["status"], "ready", "{ready}");
    let id = ready["data"]["allocation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    (id, ws)
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match timeout(STEP, ws.next()).await.expect("bounded") {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("JSON"),
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// The states of `ids` on a server started over `dir`, and its log.
async fn states(dir: &Path, ids: &[&str]) -> (Vec<Option<String>>, String) {
    let server = start_ok(dir, &[]);
    let all = server.get("/allocate/").await;
    let states = ids
        .iter()
        .map(|id| {
            all.as_array()
                .expect("a list")
                .iter()
                .find(|a| a["allocation_id"] == *id)
                .map(|a| a["state"].as_str().expect("state").to_owned())
        })
        .collect();
    (states, server.kill9())
}

/// Starts over `dir`, which must refuse; returns the log.
fn refused(dir: &Path) -> String {
    match start(dir, &[]) {
        Started::Exited(code, log) => {
            assert_eq!(code, Some(1), "{log}");
            assert!(log.contains("refusing to start"), "{log}");
            log
        }
        Started::Running(server) => panic!("started over damage:\n{}", server.kill9()),
    }
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_with_a_log_line() {
    let p = pristine().await;
    let scratch = tempfile::tempdir().expect("temp dir");
    let ready = Some("ready".to_owned());
    let segment = file_with(&p.dir, "log");
    let bytes = fs::read(&segment).expect("read");
    let last = *record_offsets(&bytes).last().expect("records");

    // Cut inside the last record's header, and inside its payload.
    for (name, keep) in [("cut-header", last + 3), ("cut-payload", bytes.len() - 10)] {
        let dir = copy(&p.dir, scratch.path(), name);
        let segment = file_with(&dir, "log");
        fs::write(&segment, &bytes[..keep]).expect("write");
        let (found, log) = states(&dir, &[&p.first, &p.second]).await;
        assert_eq!(found, [ready.clone(), None], "{name}");
        let line = format!(
            "cut off a torn last record at byte {last} ({} bytes",
            keep - last
        );
        assert!(log.contains(&line), "{name}: {log}");
        assert!(log.contains(&segment.display().to_string()), "{log}");
    }

    // Garbage after the last whole record: zeros (a file extended by a crash), a few bytes.
    let tails: [(&str, Vec<u8>); 2] = [("zeros", vec![0; 4096]), ("bytes", vec![0x7f, 1, 2])];
    for (name, tail) in tails {
        let dir = copy(&p.dir, scratch.path(), name);
        let segment = file_with(&dir, "log");
        let mut damaged = bytes.clone();
        damaged.extend_from_slice(&tail);
        fs::write(&segment, &damaged).expect("write");
        let (found, log) = states(&dir, &[&p.first, &p.second]).await;
        assert_eq!(found, [ready.clone(), ready.clone()], "{name}");
        assert!(
            log.contains(&format!(
                "cut off a torn last record at byte {}",
                bytes.len()
            )),
            "{name}: {log}"
        );
    }
}

#[tokio::test]
async fn damage_elsewhere_refuses_to_start_and_says_where() {
    let p = pristine().await;
    let scratch = tempfile::tempdir().expect("temp dir");
    let segment = file_with(&p.dir, "log");
    let bytes = fs::read(&segment).expect("read");
    let offsets = record_offsets(&bytes);

    // A flipped bit in an earlier record's length, checksum or payload.
    for (name, flip) in [
        ("length", offsets[0] + 1),
        ("checksum", offsets[0] + 6),
        ("payload", offsets[1] + 30),
    ] {
        let dir = copy(&p.dir, scratch.path(), name);
        let damaged_file = file_with(&dir, "log");
        let mut damaged = bytes.clone();
        damaged[flip] ^= 0x10;
        fs::write(&damaged_file, &damaged).expect("write");
        let log = refused(&dir);
        let record = offsets.iter().rev().find(|&&o| o <= flip).expect("record");
        let place = format!("{} is damaged at byte {record}", damaged_file.display());
        assert!(log.contains(&place), "{name}: {log}");
        assert!(log.contains("an intact record follows"), "{name}: {log}");
        assert_eq!(fs::read(&damaged_file).expect("read"), damaged, "untouched");
    }

    // A damaged snapshot.
    let dir = copy(&p.dir, scratch.path(), "snapshot");
    let snapshot = file_with(&dir, "snap");
    let mut damaged = fs::read(&snapshot).expect("read");
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    fs::write(&snapshot, &damaged).expect("write");
    let log = refused(&dir);
    let place = format!(
        "{} is damaged at byte {HEADER_BYTES}: checksum mismatch",
        snapshot.display()
    );
    assert!(log.contains(&place), "{log}");

    // Records that no file holds: the snapshot before the journal is gone.
    let dir = copy(&p.dir, scratch.path(), "gap");
    // One clean restart first: the journal then starts after a snapshot.
    states(&dir, &[]).await;
    fs::remove_file(file_with(&dir, "snap")).expect("remove");
    let log = refused(&dir);
    assert!(log.contains("records 1 to"), "{log}");
    assert!(log.contains("are missing"), "{log}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_readable_by_the_server_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let p = pristine().await;
    let mode = |path: &Path| fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&p.dir), 0o700);
    for entry in fs::read_dir(&p.dir).expect("list") {
        let path = entry.expect("entry").path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    let journal = fs::read(file_with(&p.dir, "log")).expect("read");
    assert!(
        String::from_utf8_lossy(&journal).contains("\"password\":\"pw\""),
        "the journal holds credentials, which is why it is private"
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_directory_is_refused() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join("data");
    let server = start_ok(&dir, &[]);
    match start(&dir, &[]) {
        Started::Exited(code, log) => {
            assert_eq!(code, Some(1), "{log}");
            assert!(log.contains("is in use by another allocate-http"), "{log}");
        }
        Started::Running(other) => panic!("two servers on one journal:\n{}", other.kill9()),
    }
    let _ = server.kill9();
}

#[tokio::test]
async fn in_memory_writes_nothing() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join("data");
    match start(&dir, &["--in-memory"]) {
        Started::Running(server) => {
            assert!(server.log().contains("running in memory"));
            server.kill9();
        }
        Started::Exited(code, log) => panic!("exited {code:?}:\n{log}"),
    }
    assert!(!dir.exists());
}
