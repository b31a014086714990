//! The real `allocate` binary against a real server on an ephemeral port (testkit's, feature
//! `server`), with resources registered over a real agent socket (static connections).

mod common;

use allocate_client::{AgentSession, Client, ClientOptions};
use allocate_http::{ServerConfig, Tokens};
use serde_json::Value;
use std::process::{Output, Stdio};
use std::time::Duration;
use testkit::server::{Server, TlsFront};
use testkit::tls::TestCa;
use uuid::Uuid;

/// Exit codes the binary documents (src/exit.rs).
const REFUSED: i32 = 5;
const TIMED_OUT: i32 = 4;
const CONNECTION: i32 = 6;
const USAGE: i32 = 2;

/// The longest any single step may take.
const STEP: Duration = Duration::from_secs(20);

/// A server with one agent holding one static GPU machine, `host`.
struct Lab {
    server: Server,
    client: Client,
    _agent: AgentSession,
    /// Its own config directory, so that no user's config file is read.
    config_home: std::path::PathBuf,
}

/// The tokens of [`Lab::with_tokens`]: `TOKEN ROLE NAME`.
const TOKENS: &str = "admin-secret-0123456789abcdef admin root\n\
                      agent-secret-0123456789abcdef agent 00000000-0000-0000-0000-00000000000a\n\
                      alice-secret-0123456789abcdef user alice\n\
                      bob-secret-0123456789abcdef user bob\n";

/// A client of `url` presenting `token`, if any.
fn client_with(url: &str, token: Option<&str>) -> Client {
    let options = ClientOptions {
        token: token.map(str::to_owned),
        ..ClientOptions::default()
    };
    Client::new(url, options).expect("client")
}

impl Lab {
    async fn start() -> Lab {
        Lab::start_with(|_| {}, None, None).await
    }

    /// A lab whose server requires [`TOKENS`]; its agent and the test's own checks present
    /// the agent's and the admin's.
    async fn with_tokens() -> Lab {
        let path = write_private(&config_home_for("tokens", 0).join("tokens"), TOKENS);
        let tokens = Tokens::load(&path).expect("tokens");
        let configure = move |config: &mut ServerConfig| config.tokens = tokens;
        Lab::start_with(
            configure,
            Some("admin-secret-0123456789abcdef"),
            Some("agent-secret-0123456789abcdef"),
        )
        .await
    }

    async fn start_with(
        configure: impl FnOnce(&mut ServerConfig),
        admin: Option<&str>,
        agent: Option<&str>,
    ) -> Lab {
        let server = Server::start_with(configure).await;
        let client = client_with(&server.url(), admin);
        let agent =
            common::register_machine(&client_with(&server.url(), agent), 0xa, "x", "gpu-1.lab")
                .await;
        let config_home = config_home_for("lab", server.addr.port());
        Lab {
            server,
            client,
            _agent: agent,
            config_home,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        command_for(&self.server.url(), &self.config_home, args)
    }

    /// [`Lab::command`] presenting `token` in `ALLOCATE_TOKEN`, if any.
    fn command_as(&self, token: Option<&str>, args: &[&str]) -> tokio::process::Command {
        let mut command = self.command(args);
        if let Some(token) = token {
            command.env("ALLOCATE_TOKEN", token);
        }
        command
    }

    /// Runs `allocate ARGS` presenting `token` to its end, expecting exit code `code`.
    async fn exits_as(&self, token: Option<&str>, args: &[&str], code: i32) -> Output {
        let out = tokio::time::timeout(STEP, self.command_as(token, args).output())
            .await
            .expect("allocate took too long")
            .expect("allocate runs");
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        out
    }

    /// Runs `allocate ARGS` to its end.
    async fn allocate(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::time::timeout(STEP, command.output())
            .await
            .expect("allocate took too long")
            .expect("allocate runs")
    }

    /// The live allocations, as the server says.
    async fn live(&self) -> Vec<Uuid> {
        let list = self.client.allocations().await.expect("allocations");
        list.iter()
            .filter(|a| matches!(a.state.as_str(), "queued" | "provisioning" | "ready"))
            .map(|a| a.allocation_id)
            .collect()
    }

    /// `allocate release ID` as the lab's default user, which must succeed and leave
    /// nothing live.
    async fn release_ok(&self, id: &str) {
        let released = self.allocate(&["release", id]).await;
        assert_eq!(
            released.status.code(),
            Some(0),
            "{}",
            text(&released.stderr)
        );
        assert!(self.live().await.is_empty());
    }
}

/// A directory of this test process's own, under the temporary directory.
fn config_home_for(what: &str, port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "allocate-cli-test-{what}-{}-{port}",
        std::process::id()
    ))
}

/// Writes `text` to `path`, readable by this user only; returns the path.
fn write_private(path: &std::path::Path, text: &str) -> std::path::PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("directory");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create");
    file.write_all(text.as_bytes()).expect("write");
    path.to_owned()
}

fn command_for(url: &str, config_home: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_allocate"));
    c.args(args)
        .env("ALLOCATE_URL", url)
        .env("XDG_CONFIG_HOME", config_home)
        .env("USER", "tester")
        .env_remove("ALLOCATE_TOKEN")
        .env_remove("ALLOCATE_TOKEN_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(output: &Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_ls_extend_release() {
    let lab = Lab::start().await;
    let got = json(
        &lab.allocate(&["get", "--gpu", "RTX 2080", "--for", "2h", "-o", "json"])
            .await,
    );
    assert_eq!(got["status"], "ready");
    assert_eq!(got["connection"]["host"], "gpu-1.lab");
    let id = got["allocation_id"].as_str().expect("id").to_owned();
    let expires = got["expires"].as_u64().expect("expires");

    let human = lab.allocate(&["show", &id]).await;
    let shown = text(&human.stdout);
    assert!(shown.contains("ssh dev@gpu-1.lab"), "{shown}");
    assert!(
        shown.contains("(in 1h 59m)") || shown.contains("(in 2h 0m)"),
        "{shown}"
    );

    let listed = json(&lab.allocate(&["ls", "-o", "json"]).await);
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["allocation_id"], id.as_str());
    assert_eq!(listed[0]["state"], "ready");
    assert_eq!(listed[0]["username"], "tester");

    let extended = json(
        &lab.allocate(&["extend", &id, "--for", "1h", "-o", "json"])
            .await,
    );
    assert_eq!(extended["expires"].as_u64(), Some(expires + 3600));

    lab.release_ok(&id).await;
    let again = lab.allocate(&["release", &id]).await;
    assert_eq!(again.status.code(), Some(3), "not found the second time");

    let used = json(&lab.allocate(&["usage", "--by", "user", "-o", "json"]).await);
    assert_eq!(used[0]["key"], "tester", "{used}");
    assert_eq!(used[0]["allocations"], 1, "{used}");
    let from = (unix_now() - 60).to_string();
    let by_label = lab
        .allocate(&["usage", "--by", "label", "--from", &from])
        .await;
    let table = text(&by_label.stdout);
    assert!(
        table.starts_with("LABEL") && table.contains("\nx "),
        "{table}"
    );
    let bad = lab.allocate(&["usage", "--from", "someday"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("--from"),
        "{}",
        text(&bad.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_passes_the_lease_on_exits_with_its_status_and_releases() {
    let lab = Lab::start().await;
    let out = lab
        .allocate(&[
            "run",
            "--tags",
            "x",
            "--",
            "sh",
            "-c",
            "echo $ALLOCATE_HOST $ALLOCATE_USERNAME $ALLOCATE_PASSWORD; exit 3",
        ])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "gpu-1.lab dev pw");
    assert!(lab.live().await.is_empty(), "released after the command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_and_mistyped_requests_are_refused_naming_the_field() {
    let lab = Lab::start().await;
    let out = lab.allocate(&["get", "--gpu", "RTX 2090"]).await;
    assert_eq!(out.status.code(), Some(REFUSED));
    let said = text(&out.stderr);
    assert!(said.contains("--gpu \"RTX 2090\""), "{said}");
    // The first `queued` message says why (API.md, "Why not"); `get` shows it.
    assert!(
        said.contains("gpu_label: 0 of 1 registered resources have a GPU whose label contains \"RTX 2090\"; GPU labels seen: NVIDIA GeForce RTX 2080"),
        "{said}"
    );

    let out = lab.allocate(&["get", "--gpus", "0"]).await;
    assert_eq!(out.status.code(), Some(REFUSED));
    let said = text(&out.stderr);
    assert!(said.contains("gpu.count"), "{said}");

    let out = lab.allocate(&["get", "--gpu-mem", "8"]).await;
    assert_eq!(out.status.code(), Some(USAGE));
    assert!(text(&out.stderr).contains("--gpu-mem"));
    assert!(lab.live().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_keys_go_to_the_server_which_checks_them() {
    let lab = Lab::start().await;
    std::fs::create_dir_all(&lab.config_home).unwrap();
    let good = lab.config_home.join("good.pub");
    std::fs::write(&good, "ssh-ed25519 AAAAC3Nza tester@laptop\n").unwrap();
    let got = json(
        &lab.allocate(&["get", "--ssh-key", good.to_str().unwrap(), "-o", "json"])
            .await,
    );
    assert_eq!(got["status"], "ready");
    let released = lab
        .allocate(&["release", got["allocation_id"].as_str().unwrap()])
        .await;
    assert_eq!(released.status.code(), Some(0));

    let huge = lab.config_home.join("huge.pub");
    std::fs::write(&huge, format!("ssh-rsa {}\n", "A".repeat(20_000))).unwrap();
    let out = lab
        .allocate(&["get", "--ssh-key", huge.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(REFUSED));
    let said = text(&out.stderr);
    assert!(said.contains("requirements.ssh_keys[0]"), "{said}");

    let out = lab
        .allocate(&["get", "--ssh-key", "/nonexistent/id.pub"])
        .await;
    assert_eq!(out.status.code(), Some(USAGE));
    assert!(text(&out.stderr).contains("--ssh-key /nonexistent/id.pub"));
    assert!(lab.live().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_runs_out_exits_timed_out() {
    let lab = Lab::start().await;
    let held = json(&lab.allocate(&["get", "-o", "json"]).await);
    let out = lab.allocate(&["get", "--tags", "x", "--wait", "1s"]).await;
    assert_eq!(out.status.code(), Some(TIMED_OUT), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("queued: position 1, 1 matching resource"));
    assert_eq!(
        lab.live().await,
        vec![held["allocation_id"]
            .as_str()
            .unwrap()
            .parse::<Uuid>()
            .unwrap()]
    );
}

/// A port where nothing listens.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_exits_with_the_connection_code() {
    let port = dead_port();
    let home = std::env::temp_dir().join("allocate-cli-test-none");
    let mut command = command_for(&format!("http://127.0.0.1:{port}"), &home, &["ls"]);
    let out = command.output().await.expect("runs");
    assert_eq!(out.status.code(), Some(CONNECTION), "{}", text(&out.stderr));
    let mut command = command_for(&format!("http://127.0.0.1:{port}"), &home, &["get"]);
    let out = command.output().await.expect("runs");
    assert_eq!(out.status.code(), Some(CONNECTION), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_servers_reaches_the_one_up_and_a_bad_url_names_the_flag() {
    let lab = Lab::start().await;
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let urls = format!("{dead},{}", lab.server.url());
    let mut command = command_for(&urls, &lab.config_home, &["get", "-o", "json"]);
    let out = command.output().await.expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(json(&out)["status"], "ready");

    let out = lab
        .command(&["ls", "--url", &dead, "--url", "ftp://lab"])
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(USAGE));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--url") && stderr.contains("ftp://lab"),
        "{stderr}"
    );
}

/// Sends `signal` to process `pid`.
fn kill(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(pid, signal).expect("kill");
}

/// Waits until the server lists a live allocation in `state`.
async fn wait_for_state(lab: &Lab, state: &str) {
    tokio::time::timeout(STEP, async {
        loop {
            let list = lab.client.allocations().await.expect("allocations");
            if list.iter().any(|a| a.state.as_str() == state) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the allocation reached the state");
}

/// `run -- sleep 30` gets `signal` once its command runs: the command gets it too, `run`
/// exits with 128 + its number and the lease is released.
async fn a_signal_to_run_ends_the_command_and_releases(signal: rustix::process::Signal) {
    let lab = Lab::start().await;
    let child = lab
        .command(&["run", "--tags", "x", "--", "sleep", "30"])
        .spawn()
        .expect("spawn");
    wait_for_state(&lab, "ready").await;
    // Ready is not enough: wait until `sleep` has started (the lease is handed over first).
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(child.id().expect("pid"), signal);
    let out = tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .expect("run ended")
        .expect("output");
    assert_eq!(
        out.status.code(),
        Some(128 + signal.as_raw()),
        "{}",
        text(&out.stderr)
    );
    assert!(lab.live().await.is_empty(), "released on {signal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_run_ends_the_command_and_releases() {
    a_signal_to_run_ends_the_command_and_releases(rustix::process::Signal::TERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_of_run_ends_the_command_and_releases() {
    a_signal_to_run_ends_the_command_and_releases(rustix::process::Signal::HUP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_waiting_cancels_the_request() {
    let lab = Lab::start().await;
    let held = json(&lab.allocate(&["get", "-o", "json"]).await);
    let waiting = lab
        .command(&["get", "--tags", "x", "--wait", "20s"])
        .spawn()
        .expect("spawn");
    wait_for_state(&lab, "queued").await;
    kill(waiting.id().expect("pid"), rustix::process::Signal::INT);
    let out = tokio::time::timeout(STEP, waiting.wait_with_output())
        .await
        .expect("get ended")
        .expect("output");
    assert_eq!(out.status.code(), Some(128 + 2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("the request was cancelled"));
    let held: Uuid = held["allocation_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    assert_eq!(lab.live().await, vec![held], "only the held lease is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_get_becomes_ready_when_the_machine_is_released() {
    let lab = Lab::start().await;
    let held = json(&lab.allocate(&["get", "-q", "-o", "json"]).await);
    let held = held["allocation_id"].as_str().expect("id").to_owned();
    let waiting = lab
        .command(&[
            "get", "--tags", "x", "--wait", "20s", "--for", "30m", "-o", "json",
        ])
        .spawn()
        .expect("spawn");
    wait_for_state(&lab, "queued").await;
    let queued = lab
        .live()
        .await
        .into_iter()
        .map(|id| id.to_string())
        .find(|id| *id != held)
        .expect("the queued request");
    let why = lab.allocate(&["why", &queued]).await;
    assert_eq!(why.status.code(), Some(0), "{}", text(&why.stderr));
    assert_eq!(
        text(&why.stdout),
        "1 matching resource, 0 free\n  allocated: 1 of 1 matching resources are allocated\n"
    );
    let why = json(&lab.allocate(&["explain", &queued, "-o", "json"]).await);
    assert_eq!(why["matching_resources"], 1);
    assert_eq!(why["explain"][0]["reason"], "allocated");
    let released = lab.allocate(&["release", &held]).await;
    assert_eq!(released.status.code(), Some(0));
    let out = tokio::time::timeout(STEP, waiting.wait_with_output())
        .await
        .expect("get ended")
        .expect("output");
    let got = json(&out);
    assert_eq!(got["status"], "ready");
    let expires = got["expires"].as_u64().expect("expires");
    let now = unix_now();
    assert!(
        (now + 1790..=now + 1800).contains(&expires),
        "30 minutes from ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_the_man_page_come_from_the_definitions() {
    let lab = Lab::start().await;
    let out = lab.allocate(&["completions", "bash"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("--gpu-memory"));
    let out = lab.allocate(&["man"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(".TH allocate"));
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_needs_ca_file() {
    let lab = Lab::start().await;
    let front = TlsFront::start(lab.server.addr).await;
    let url = format!("https://localhost:{}", front.addr.port());
    let ca = front.ca_file.to_string_lossy().into_owned();
    let mut trusted = command_for(
        &url,
        &lab.config_home,
        &["--ca-file", &ca, "inventory", "-o", "json"],
    );
    let listed = json(&trusted.output().await.expect("runs"));
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let mut untrusted = command_for(&url, &lab.config_home, &["inventory"]);
    let out = untrusted.output().await.expect("runs");
    assert_eq!(out.status.code(), Some(CONNECTION), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_over_the_servers_own_tls_with_ca_file() {
    let ca = TestCa::new();
    let server = Server::start_tls(&ca.issue("server")).await;
    let url = format!("https://localhost:{}", server.addr.port());
    let options = ClientOptions {
        ca_file: Some(ca.ca_file.clone()),
        ..ClientOptions::default()
    };
    let agent_client = Client::new(&url, options).expect("client");
    let _agent = common::register_machine(&agent_client, 0xa, "x", "gpu-1.lab").await;
    let config_home = config_home_for("tls", server.addr.port());
    let ca_file = ca.ca_file.to_string_lossy().into_owned();
    let args = ["--ca-file", &ca_file, "get", "--for", "1h", "-o", "json"];
    let got = tokio::time::timeout(STEP, command_for(&url, &config_home, &args).output())
        .await
        .expect("get took too long")
        .expect("get runs");
    let got = json(&got);
    assert_eq!(got["status"], "ready");
    assert_eq!(got["connection"]["host"], "gpu-1.lab");
    let mut untrusted = command_for(&url, &config_home, &["inventory"]);
    let out = untrusted.output().await.expect("runs");
    assert_eq!(out.status.code(), Some(CONNECTION), "{}", text(&out.stderr));
}

/// `allocate ARGS` started, with a reader of its stdout's lines.
struct Watching {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Watching {
    fn start(lab: &Lab, args: &[&str]) -> Watching {
        use tokio::io::AsyncBufReadExt;
        let mut child = lab.command(args).spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let lines = tokio::io::BufReader::new(stdout).lines();
        Watching { child, lines }
    }

    /// The next line it prints.
    async fn line(&mut self) -> String {
        tokio::time::timeout(STEP, self.lines.next_line())
            .await
            .expect("a line in time")
            .expect("stdout")
            .expect("a line before the end")
    }

    /// Its exit code, once it ends.
    async fn exit(mut self) -> Option<i32> {
        let status = tokio::time::timeout(STEP, self.child.wait()).await;
        status.expect("watch ended").expect("status").code()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_the_state_then_each_event_until_the_end() {
    let lab = Lab::start().await;
    let held = json(&lab.allocate(&["get", "-o", "json"]).await);
    let held = held["allocation_id"].as_str().expect("id").to_owned();
    let _waiting = lab
        .command(&["get", "--tags", "x", "--wait", "20s"])
        .spawn()
        .expect("spawn");
    wait_for_state(&lab, "queued").await;
    let queued = lab.client.allocations().await.expect("allocations");
    let queued = queued
        .iter()
        .find(|a| a.state.as_str() == "queued")
        .expect("queued")
        .allocation_id
        .to_string();

    let mut human = Watching::start(&lab, &["watch", &queued]);
    let line = human.line().await;
    assert!(
        line.starts_with("queued: position 1, 1 matching resource"),
        "{line}"
    );
    let mut scripted = Watching::start(&lab, &["watch", &held, "-o", "json"]);
    let ready: Value = serde_json::from_str(&scripted.line().await).expect("JSON line");
    assert_eq!(
        (ready["status"].as_str(), ready["allocation_id"].as_str()),
        (Some("ready"), Some(held.as_str()))
    );
    assert_eq!(ready["connection"]["host"], "gpu-1.lab");

    assert_eq!(
        lab.allocate(&["release", &held]).await.status.code(),
        Some(0)
    );
    let released: Value = serde_json::from_str(&scripted.line().await).expect("JSON line");
    assert_eq!(released["status"], "released");
    assert_eq!(scripted.exit().await, Some(0));
    assert_eq!(human.line().await, "ready");
    let mut block = String::new();
    while !block.contains("expires") {
        block += &human.line().await;
    }
    assert!(block.contains("gpu-1.lab"), "{block}");
    assert_eq!(
        lab.allocate(&["release", &queued]).await.status.code(),
        Some(0)
    );
    assert_eq!(human.line().await, "released");
    assert_eq!(human.exit().await, Some(0));

    let ended = lab.allocate(&["watch", &held]).await;
    assert_eq!(ended.status.code(), Some(3), "{}", text(&ended.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_flags_environment_or_config_and_bound_what_a_user_does() {
    let lab = Lab::with_tokens().await;
    let home = &lab.config_home;
    let as_user = |token: Option<&str>, args: &[&str]| lab.command_as(token, args);
    let anonymous = as_user(None, &["inventory"]).output().await.expect("runs");
    assert_eq!(anonymous.status.code(), Some(REFUSED), "no token");
    assert!(
        text(&anonymous.stderr).contains("bearer token"),
        "{}",
        text(&anonymous.stderr)
    );

    // Alice's token, with $USER (tester) as the username: not hers to ask for.
    let impostor = as_user(
        Some("alice-secret-0123456789abcdef"),
        &["get", "--wait", "0"],
    )
    .output()
    .await
    .expect("runs");
    assert_eq!(
        impostor.status.code(),
        Some(REFUSED),
        "{}",
        text(&impostor.stderr)
    );
    assert!(lab.live().await.is_empty());

    // Alice's config file names her token file and her username.
    let alice_token = write_private(&home.join("alice-token"), "alice-secret-0123456789abcdef\n");
    let config_dir = home.join("allocate");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    std::fs::write(
        config_dir.join("config.toml"),
        format!(
            "username = \"alice\"\ntoken_file = \"{}\"\n",
            alice_token.display()
        ),
    )
    .expect("config");
    let got = json(&lab.allocate(&["get", "-o", "json"]).await);
    let id = got["allocation_id"].as_str().expect("id").to_owned();
    let mine = json(&lab.allocate(&["ls", "-o", "json"]).await);
    assert_eq!(mine[0]["username"], "alice");

    // Bob, by the environment over the config file: sees none of it, frees none of it.
    let bob = |args: &[&str]| {
        let mut c = as_user(Some("bob-secret-0123456789abcdef"), args);
        c.args(["--username", "bob"]);
        c
    };
    let listed = bob(&["ls", "-o", "json"]).output().await.expect("runs");
    assert_eq!(json(&listed).as_array().map(Vec::len), Some(0));
    // The server shows everyone's only to an admin.
    let everyone = bob(&["ls", "--all", "-o", "json"])
        .output()
        .await
        .expect("runs");
    assert_eq!(json(&everyone).as_array().map(Vec::len), Some(0));
    let taken = bob(&["release", &id]).output().await.expect("runs");
    assert_eq!(
        taken.status.code(),
        Some(REFUSED),
        "{}",
        text(&taken.stderr)
    );
    assert!(text(&taken.stderr).contains("belongs to another user"));
    assert_eq!(lab.live().await.len(), 1, "still Alice's");

    // The admin sees everyone's; a flag's token file beats the rest.
    let admin_token = write_private(&home.join("admin-token"), "admin-secret-0123456789abcdef\n");
    let mut admin = as_user(
        Some("bob-secret-0123456789abcdef"),
        &["ls", "--all", "-o", "json"],
    );
    admin.arg("--token-file").arg(&admin_token);
    let all = json(&admin.output().await.expect("runs"));
    assert_eq!(all[0]["allocation_id"], id.as_str());

    lab.release_ok(&id).await;
}

/// A directory holding a stand-in `ssh` that says its arguments and whether it has a
/// terminal, then exits with the status read from its input (0 at its end), to put first on
/// `PATH`.
fn fake_ssh(lab: &Lab) -> std::path::PathBuf {
    let bin = lab.config_home.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let ssh = bin.join("ssh");
    std::fs::write(
        &ssh,
        "#!/bin/sh\n\
         if [ -t 0 ]; then t=yes; else t=no; fi\n\
         echo \"ssh to $*, terminal: $t\"\n\
         read -r code || code=0\n\
         exit \"$code\"\n",
    )
    .expect("ssh");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_inventory_filters_and_ssh_to_a_lease() {
    let lab = Lab::with_tokens().await;
    let as_user = |token: &str, args: &[&str]| lab.command_as(Some(token), args);
    let admin = "admin-secret-0123456789abcdef";
    let alice = "alice-secret-0123456789abcdef";
    let inventory = |args: &[&str]| {
        let c = as_user(alice, &[&["inventory", "-o", "json"], args].concat());
        async move { json(&{ c }.output().await.expect("runs")) }
    };
    let all = inventory(&[]).await;
    let rid = all[0]["inventory_id"].as_str().expect("id").to_owned();
    assert_eq!(inventory(&["--tags", "x", "--state", "free"]).await, all);
    assert_eq!(inventory(&["--tags", "nope"]).await, Value::Array(vec![]));

    // Only an admin takes a machine out; it says why, and nothing is handed out meanwhile.
    let refused = as_user(alice, &["maintenance", &rid, "on"])
        .output()
        .await
        .expect("runs");
    assert_eq!(
        refused.status.code(),
        Some(REFUSED),
        "{}",
        text(&refused.stderr)
    );
    let on = as_user(admin, &["maintenance", &rid, "on", "--reason", "fan noise"])
        .output()
        .await
        .expect("runs");
    assert_eq!(on.status.code(), Some(0), "{}", text(&on.stderr));
    let out = inventory(&["--state", "maintenance"]).await;
    assert_eq!(out[0]["inventory_id"], rid.as_str());
    assert_eq!(inventory(&["--state", "free"]).await, Value::Array(vec![]));
    let human = as_user(alice, &["inventory"]).output().await.expect("runs");
    assert!(
        text(&human.stdout).contains("fan noise"),
        "{}",
        text(&human.stdout)
    );
    let waited = as_user(alice, &["get", "--username", "alice", "--wait", "1s"])
        .output()
        .await
        .expect("runs");
    assert_eq!(
        waited.status.code(),
        Some(TIMED_OUT),
        "{}",
        text(&waited.stderr)
    );
    let off = as_user(admin, &["maintenance", &rid, "off"])
        .output()
        .await
        .expect("runs");
    assert_eq!(off.status.code(), Some(0), "{}", text(&off.stderr));
    assert_eq!(
        inventory(&["--state", "free"]).await[0]["inventory_id"],
        rid.as_str()
    );

    // `allocate ssh ID` runs ssh to the lease's host as its user, with the extra arguments.
    let got = json(
        &as_user(alice, &["get", "--username", "alice", "-o", "json"])
            .output()
            .await
            .expect("runs"),
    );
    let id = got["allocation_id"].as_str().expect("id").to_owned();
    let path = format!(
        "{}:{}",
        fake_ssh(&lab).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ssh = as_user(alice, &["ssh", &id, "--", "uname", "-a"])
        .env("PATH", path)
        .output()
        .await
        .expect("runs");
    assert_eq!(ssh.status.code(), Some(0), "{}", text(&ssh.stderr));
    let said = text(&ssh.stdout);
    assert!(
        said.contains("dev@gpu-1.lab") && said.contains("uname -a"),
        "{said}"
    );
    let released = as_user(alice, &["release", &id, "--username", "alice"])
        .output()
        .await
        .expect("runs");
    assert_eq!(
        released.status.code(),
        Some(0),
        "{}",
        text(&released.stderr)
    );
    assert!(lab.live().await.is_empty());
}

/// `allocate ARGS` in a pseudo-terminal of its own (util-linux `script`), with a stand-in
/// `ssh` first on `PATH` that reports whether it has a terminal, then exits with the status
/// typed into it.
struct Terminal {
    child: tokio::process::Child,
    input: tokio::process::ChildStdin,
    output: tokio::process::ChildStdout,
    seen: String,
}

impl Terminal {
    fn start(lab: &Lab, args: &[&str]) -> Terminal {
        let bin = fake_ssh(lab);
        let line = std::iter::once(env!("CARGO_BIN_EXE_allocate"))
            .chain(args.iter().copied())
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = tokio::process::Command::new("script");
        command
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .env("SHELL", "/bin/sh")
            .env("PATH", path)
            .env("ALLOCATE_URL", lab.server.url())
            .env("XDG_CONFIG_HOME", &lab.config_home)
            .env("USER", "tester")
            .env_remove("ALLOCATE_TOKEN")
            .env_remove("ALLOCATE_TOKEN_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("util-linux script runs");
        let input = child.stdin.take().expect("stdin");
        let output = child.stdout.take().expect("stdout");
        Terminal {
            child,
            input,
            output,
            seen: String::new(),
        }
    }

    /// Reads the terminal until `what` has appeared on it.
    async fn expect(&mut self, what: &str) {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout(STEP, async {
            while !self.seen.contains(what) {
                let n = self.output.read(&mut buf).await.expect("read");
                assert!(n > 0, "the terminal closed before {what:?}: {}", self.seen);
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await;
        assert!(read.is_ok(), "no {what:?} on the terminal: {}", self.seen);
    }

    /// Types `keys`.
    async fn type_keys(&mut self, keys: &str) {
        use tokio::io::AsyncWriteExt;
        self.input.write_all(keys.as_bytes()).await.expect("type");
        self.input.flush().await.expect("flush");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_in_a_terminal_gets_one_and_exits_with_its_status_releasing() {
    let lab = Lab::start().await;
    let mut terminal = Terminal::start(&lab, &["shell", "--tags", "x", "--wait", "0"]);
    terminal.expect("ssh to dev@gpu-1.lab, terminal: yes").await;
    assert_eq!(lab.live().await.len(), 1, "held while the shell runs");
    terminal.type_keys("7\n").await;
    let status = tokio::time::timeout(STEP, terminal.child.wait())
        .await
        .expect("shell ended")
        .expect("status");
    assert_eq!(status.code(), Some(7), "{}", terminal.seen);
    assert!(lab.live().await.is_empty(), "released when the shell ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_closing_under_shell_releases_the_lease() {
    let lab = Lab::start().await;
    let mut terminal = Terminal::start(&lab, &["shell", "--tags", "x", "--wait", "0"]);
    terminal.expect("terminal: yes").await;
    assert_eq!(lab.live().await.len(), 1);
    // The window goes away: the terminal's master side closes and the session hangs up.
    terminal.child.start_kill().expect("kill");
    tokio::time::timeout(STEP, async {
        while !lab.live().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("released after the hang-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_back_up_the_server_into_a_directory_or_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::with_tokens().await;
    let admin = Some("admin-secret-0123456789abcdef");
    let dir = lab.config_home.join("backups");
    std::fs::create_dir_all(&dir).expect("backups dir");
    let to_dir = dir.to_str().expect("utf-8 path");
    let alice = Some("alice-secret-0123456789abcdef");
    lab.exits_as(alice, &["backup", "--to", to_dir], REFUSED)
        .await;

    // Into a directory: under the name a data directory gives it (an in-memory server's
    // state follows record 0).
    let out = lab
        .exits_as(admin, &["backup", "--to", to_dir, "-o", "json"], 0)
        .await;
    let out: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let path = dir.join("snapshot-00000000000000000000.snap");
    assert_eq!(out["path"], path.to_str().expect("utf-8 path"));
    let contents = std::fs::read(&path).expect("the backup");
    assert_eq!(out["bytes"], contents.len());
    assert!(contents.starts_with(b"ALCSNAP1"), "a snapshot file");
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "it holds credentials");

    // Into a file, quietly: only the path.
    let file = dir.join("lab.snap");
    let file_arg = file.to_str().expect("utf-8 path");
    let quiet = lab
        .exits_as(admin, &["backup", "--to", file_arg, "-q"], 0)
        .await;
    assert_eq!(text(&quiet.stdout).trim(), file_arg);
    assert!(std::fs::read(&file)
        .expect("the file")
        .starts_with(b"ALCSNAP1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_asks_for_several_machines_and_every_one_is_printed() {
    let lab = Lab::start().await;
    let _second =
        common::register_machine(&client_with(&lab.server.url(), None), 0xb, "x", "gpu-2.lab")
            .await;
    let inventory = lab
        .client
        .inventory(&allocate_client::InventoryFilter::default())
        .await
        .expect("inventory");
    let mut ids: Vec<String> = inventory
        .iter()
        .map(|r| r.inventory_id.to_string())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2);

    // JSON: the contract's `ready`, with `resources`.
    let got = json(&lab.allocate(&["get", "--count", "2", "-o", "json"]).await);
    assert_eq!(got["status"], "ready");
    let resources = got["resources"].as_array().expect("resources");
    let mut granted: Vec<String> = resources
        .iter()
        .map(|r| r["inventory_id"].as_str().expect("inventory_id").to_owned())
        .collect();
    granted.sort();
    assert_eq!(granted, ids, "{got}");
    assert_eq!(got["inventory_id"], resources[0]["inventory_id"]);
    lab.release_ok(got["allocation_id"].as_str().expect("id"))
        .await;

    // People: a table with a row per resource.
    let out = lab.allocate(&["get", "--count", "2"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("RESOURCE"), "{shown}");
    for id in &ids {
        assert!(shown.contains(id.as_str()), "{shown}");
    }
    assert!(shown.contains("ssh dev@gpu-1.lab") && shown.contains("ssh dev@gpu-2.lab"));
    let id = shown
        .lines()
        .find_map(|l| l.strip_prefix("allocation"))
        .expect("the allocation line")
        .trim()
        .to_owned();
    lab.release_ok(&id).await;

    // Scripts: the allocation id, then each resource's id and host.
    let out = lab.allocate(&["get", "--count", "2", "-q"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let quiet = text(&out.stdout);
    let lines: Vec<&str> = quiet.lines().collect();
    assert_eq!(lines.len(), 3, "{quiet}");
    let mut listed: Vec<String> = lines[1..]
        .iter()
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ids, "{quiet}");
    lab.release_ok(lines[0]).await;

    // `run`: every host in ALLOCATE_HOSTS, the first one also in ALLOCATE_HOST.
    let out = lab
        .allocate(&[
            "run",
            "--count",
            "2",
            "--",
            "sh",
            "-c",
            "echo $ALLOCATE_HOST; echo $ALLOCATE_HOSTS",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let (first, all) = said.trim().split_once('\n').expect("two lines");
    let mut hosts: Vec<&str> = all.split(' ').collect();
    assert_eq!(hosts[0], first, "{said}");
    hosts.sort_unstable();
    assert_eq!(hosts, ["gpu-1.lab", "gpu-2.lab"], "{said}");
    assert!(lab.live().await.is_empty());

    // More than can ever match: refused with the findings; 0: a usage error naming the flag.
    let out = lab.allocate(&["get", "--count", "3"]).await;
    assert_eq!(out.status.code(), Some(REFUSED));
    let said = text(&out.stderr);
    assert!(
        said.contains(
            "only 2 registered resources could ever satisfy (no requirement), fewer than --count 3"
        ),
        "{said}"
    );
    assert!(
        said.contains(
            "count: 2 of 2 registered resources satisfy every requirement, fewer than the 3"
        ),
        "the server's finding: {said}"
    );
    let out = lab.allocate(&["get", "--count", "0"]).await;
    assert_eq!(out.status.code(), Some(USAGE));
    let said = text(&out.stderr);
    assert!(said.contains("--count must be at least 1, got 0"), "{said}");
    assert!(lab.live().await.is_empty());
}
