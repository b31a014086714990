//! The dashboard in a real browser: a headless Chromium loads the page from a real server
//! with agents, allocations and a queue, and the test checks what it draws, a live update,
//! the filters, a release from the page, and the token form; it saves screenshots to
//! `target/dashboard.png`, `target/dashboard-phone.png` and `target/dashboard-dark.png`.
//!
//! Needs Chromium, so it is ignored by a plain `cargo test`: `make test-browser` installs
//! Chromium when it is missing and runs it (`make test` does too).

#[path = "../common/mod.rs"]
mod common;

mod cdp;

use allocate_http::{ServerConfig, Tokens};
use cdp::{Browser, Page};
use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const PASSWORD: &str = "hunter2";
const ADMIN: &str = "0123456789abcdef0123456789abcdef";
const ALICE: &str = "fedcba9876543210fedcba9876543210";
const AGENT: &str = "a9e1t0123456789abcdef0123456789ab";
/// Valid, but `/` and `=` cannot travel in a websocket subprotocol.
const POLLER: &str = "poll/admin+token/0123456789=";

/// How long the page may take to show something.
const SHOW: Duration = Duration::from_secs(10);

/// A resource as its agent registers it; `host` makes it static.
fn machine(
    labels: &[&str],
    cpu_count: u64,
    memory_gb: u64,
    gpus: &[(&str, u64)],
    kind: &str,
    host: Option<&str>,
) -> Value {
    let gpu: Vec<Value> = gpus
        .iter()
        .map(|(label, memory_gb)| json!({"label": label, "memory_gb": memory_gb}))
        .collect();
    let mut r = json!({"labels": labels, "cpu_count": cpu_count, "memory_gb": memory_gb,
                       "gpu": gpu, "type": kind});
    if let Some(host) = host {
        r["connection"] = json!({"host": host, "username": "lab", "password": PASSWORD});
    }
    r
}

/// Where cargo puts build outputs (`target/`), for the screenshots.
fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(PathBuf::from).unwrap_or(tmp)
}

/// Rows of one table, as `[data-id, data-state, text]`.
async fn rows(page: &mut Page, table: &str) -> Vec<Value> {
    let script = format!(
        "[...document.querySelectorAll('#{table} tbody tr')]\
           .map(tr => [tr.dataset.id, tr.dataset.state, tr.innerText])"
    );
    page.eval(&script)
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The row of `table` whose text contains `needle`.
async fn row_with(page: &mut Page, table: &str, needle: &str) -> Value {
    let rows = rows(page, table).await;
    rows.into_iter()
        .find(|r| r[2].as_str().is_some_and(|t| t.contains(needle)))
        .unwrap_or_else(|| panic!("no row of #{table} shows {needle}"))
}

/// JavaScript: whether `table` has a row whose text contains `needle`.
fn has_row(table: &str, needle: &str) -> String {
    format!(
        "[...document.querySelectorAll('#{table} tbody tr')].some(tr => tr.innerText.includes({}))",
        json!(needle)
    )
}

#[tokio::test]
#[ignore = "needs Chromium: run `make test-browser`"]
async fn the_dashboard_in_a_real_browser() {
    let binary = cdp::chromium()
        .expect("Chromium is not installed: `make test-browser` installs it (apt: chromium)");
    let (browser, mut page) = Browser::launch(&binary).await;
    open_lab(&mut page).await;
    guarded_lab(&mut page).await;
    // The page asks for the snapshot without a token first: a 401 there is how it learns
    // that it needs one, and Chromium logs it.
    let problems: Vec<String> = page
        .problems
        .iter()
        .filter(|p| !(p.contains("status of 401") && p.contains("/dashboard/feed")))
        .cloned()
        .collect();
    browser.close(page).await;
    assert!(
        problems.is_empty(),
        "the page reported problems: {problems:#?}"
    );
}

/// The text of a JSON string.
fn text(value: &Value) -> &str {
    value.as_str().expect("a string")
}

/// A lab on an open server (no tokens), with one resource in each state, two holders and
/// two waiting requests. The sockets are kept so that the allocations live on.
struct OpenLab {
    server: Server,
    /// A100 server (free), RTX 2080 VM (alice), T4 VM (maintenance), Jetson (bob),
    /// MI210 (offline), FPGA board (error).
    ids: Vec<String>,
    alice: Ws,
    alice_id: String,
    _keep: Vec<Ws>,
    _agents: Vec<Agent>,
}

/// Registers the lab's six resources (see [`OpenLab::ids`]); returns their ids and the
/// agents still connected.
async fn register_open_lab(server: &Server) -> (Vec<String>, Vec<Agent>) {
    let mut lab = Agent::connect(server).await;
    let mut ids = lab
        .register(vec![
            machine(
                &["nvidia", "cuda"],
                32,
                128,
                &[("NVIDIA A100", 80), ("NVIDIA A100", 80)],
                "server-onsite",
                Some("10.0.0.1"),
            ),
            machine(
                &["nvidia", "cuda"],
                12,
                32,
                &[("GeForce RTX 2080", 8)],
                "VM",
                Some("10.0.0.2"),
            ),
            machine(
                &["nvidia"],
                8,
                16,
                &[("Tesla T4", 16)],
                "VM",
                Some("10.0.0.3"),
            ),
            machine(&["arm", "jetson"], 6, 8, &[], "device", Some("10.0.0.4")),
        ])
        .await;
    let mut gone = Agent::connect(server).await;
    let mi210 = machine(
        &["amd", "rocm"],
        16,
        64,
        &[("Instinct MI210", 64)],
        "server-onsite",
        Some("10.0.1.1"),
    );
    ids.extend(gone.register(vec![mi210]).await);
    drop(gone); // its resource goes offline
    let mut fpga = Agent::connect(server).await;
    ids.extend(
        fpga.register(vec![machine(&["fpga"], 4, 16, &[], "device", None)])
            .await,
    );
    let reason = json!({"maintenance": true, "reason": "fan replacement"});
    let (status, _) = server
        .call("PATCH", &format!("/inventory/{}", ids[2]), Some(reason))
        .await;
    assert_eq!(status, 200);
    (ids, vec![lab, fpga])
}

async fn start_open_lab() -> OpenLab {
    let server = Server::start().await;
    let (ids, mut agents) = register_open_lab(&server).await;
    let mut alice = allocate(&server, json!({"tags": ["cuda"], "username": "alice"})).await;
    let alice_ready = recv_status(&mut alice, "ready").await;
    assert_eq!(alice_ready["inventory_id"], ids[1].as_str(), "best fit");
    let soon = unix_now() + 240;
    let mut bob = allocate(
        &server,
        json!({"tags": ["jetson"], "username": "bob", "expires": soon}),
    )
    .await;
    recv_status(&mut bob, "ready").await;
    // dave's provision fails: the FPGA board goes to `error` and dave waits again.
    let dave = allocate(
        &server,
        json!({"tags": ["fpga"], "username": "dave", "allocation_timeout_seconds": 900}),
    )
    .await;
    let fpga = &mut agents[1];
    let provision = fpga.expect("provision").await;
    let failed =
        json!({"allocation_id": provision["allocation_id"], "error": "bitstream flash failed"});
    send(&mut fpga.ws, failed).await;
    server.wait_state(&ids[5], "error").await;
    let mut erin = allocate(
        &server,
        json!({"tags": ["rocm"], "username": "erin", "allocation_timeout_seconds": 600}),
    )
    .await;
    recv_status(&mut erin, "queued").await;
    server.wait_state(&ids[4], "offline").await;
    OpenLab {
        server,
        ids,
        alice,
        alice_id: text(&alice_ready["allocation_id"]).to_owned(),
        _keep: vec![bob, dave, erin],
        _agents: agents,
    }
}

/// An open server: the whole lab at a glance, a live update, filters, the screenshots, and
/// a release from the page.
async fn open_lab(page: &mut Page) {
    let mut lab = start_open_lab().await;
    page.viewport(1280, 900, 1.0, false).await;
    page.goto(&lab.server.url("/")).await;
    let six = "document.querySelectorAll('#inventory tbody tr').length === 6";
    page.wait_for("six resources", six, SHOW).await;
    let live = "document.getElementById('live').dataset.state === 'live'";
    page.wait_for("the live feed", live, SHOW).await;
    check_inventory(page, &lab.ids).await;
    check_allocations_and_queue(page).await;
    let frank = check_live_update(page, &lab).await;
    check_charts(page).await;
    check_filters(page, &lab.ids).await;
    let shots = target_dir();
    page.screenshot(&shots.join("dashboard.png"), 1280, 1.0, false)
        .await;
    page.screenshot(&shots.join("dashboard-phone.png"), 390, 2.0, true)
        .await;
    page.dark(true).await;
    page.screenshot(&shots.join("dashboard-dark.png"), 1280, 1.0, false)
        .await;
    page.dark(false).await;

    page.viewport(1280, 900, 1.0, false).await;
    release_from_the_page(page, &mut lab).await;
    drop(frank);
    lab.server.stop().await;
}

async fn check_inventory(page: &mut Page, ids: &[String]) {
    let inventory = rows(page, "inventory").await;
    let states: Vec<(&str, &str)> = inventory
        .iter()
        .map(|r| (text(&r[0]), text(&r[1])))
        .collect();
    let expected = [
        "free",
        "allocated",
        "maintenance",
        "allocated",
        "offline",
        "error",
    ];
    let expected: Vec<(&str, &str)> = ids.iter().map(String::as_str).zip(expected).collect();
    assert_eq!(states, expected);
    let a100 = text(&inventory[0][2]);
    for shown in [
        "server-onsite",
        "nvidia",
        "cuda",
        "32",
        "128 GB",
        "2× NVIDIA A100",
        "80 GB",
    ] {
        assert!(a100.contains(shown), "{shown} not in {a100:?}");
    }
    assert!(text(&inventory[1][2]).contains("alice"), "the holder");
    assert!(
        text(&inventory[2][2]).contains("fan replacement"),
        "the reason"
    );
    assert!(text(&inventory[5][2]).contains("bitstream flash failed"));
    let counts = page
        .eval("document.getElementById('counts').innerText")
        .await;
    let counts = text(&counts).to_lowercase().replace('\n', " ");
    for shown in [
        "1 free",
        "2 allocated",
        "1 offline",
        "1 error",
        "1 maintenance",
        "2 waiting",
    ] {
        assert!(counts.contains(shown), "{shown} not in {counts:?}");
    }
    let html = page.eval("document.documentElement.outerHTML").await;
    assert!(!text(&html).contains(PASSWORD), "never a password");
}

async fn check_allocations_and_queue(page: &mut Page) {
    let held = rows(page, "allocations").await;
    assert_eq!(held.len(), 2);
    assert!(text(&held[0][2]).contains("bob"), "soonest lease first");
    assert!(text(&held[1][2]).contains("alice"));
    let left = page
        .eval("document.querySelector('#allocations tbody tr [data-until]').innerText")
        .await;
    assert!(text(&left).ends_with('s'), "a countdown: {left}");
    let queue = rows(page, "queue").await;
    assert_eq!(queue.len(), 2, "{queue:?}");
    let dave = text(&queue[0][2]);
    for shown in ["#1", "dave", "fpga"] {
        assert!(dave.contains(shown), "{shown} not in {dave:?}");
    }
    assert!(text(&queue[1][2]).contains("erin"));
}

/// A new allocation shows up live: no reload (the marker survives), a new snapshot.
async fn check_live_update(page: &mut Page, lab: &OpenLab) -> Ws {
    let before = page
        .eval("window.__marker = 42; Number(document.body.dataset.updates)")
        .await;
    let wants = json!({"tags": ["nvidia"], "min_cpu_count": 16, "username": "frank"});
    let mut frank = allocate(&lab.server, wants).await;
    recv_status(&mut frank, "ready").await;
    page.wait_for("frank's allocation", &has_row("allocations", "frank"), SHOW)
        .await;
    let a100 = format!(
        "document.querySelector('#inventory tr[data-id=\"{}\"]').dataset.state",
        lab.ids[0]
    );
    assert_eq!(page.eval(&a100).await, "allocated");
    assert_eq!(
        page.eval("window.__marker").await,
        42,
        "the page did not reload"
    );
    let after = page.eval("Number(document.body.dataset.updates)").await;
    assert!(after.as_u64() > before.as_u64(), "{before} then {after}");
    frank
}

/// The last day's charts, drawn from the server's own history: a line per GPU model (and
/// `no GPU`), the queue, the waits; this minute's sample follows the lab (frank's A100 is
/// held: 100%).
async fn check_charts(page: &mut Page) {
    let drawn = "Number(document.body.dataset.historySamples || 0) > 0 \
                 && document.querySelectorAll('#chart-utilization polyline').length === 5";
    page.wait_for("the last day's charts", drawn, SHOW).await;
    let legend = page
        .eval("document.getElementById('chart-utilization').innerText")
        .await;
    for model in [
        "no GPU",
        "GeForce RTX 2080",
        "Instinct MI210",
        "NVIDIA A100",
        "Tesla T4",
    ] {
        assert!(text(&legend).contains(model), "{model} not in {legend}");
    }
    let a100_full =
        "(document.querySelector('#chart-utilization polyline[data-series=\"NVIDIA A100\"]')\
                     .getAttribute('points').trim().split(' ').pop().split(',')[1]) === '8.0'";
    page.wait_for("the A100 held", a100_full, SHOW).await;
    let series = "[...document.querySelectorAll('.chart polyline')]\
                  .map(p => p.dataset.series + ':' + p.points.length)";
    let series = page.eval(series).await;
    let series: Vec<&str> = series
        .as_array()
        .expect("a list")
        .iter()
        .map(text)
        .collect();
    assert_eq!(series.len(), 8, "{series:?}");
    assert!(series.iter().all(|s| !s.ends_with(":0")), "{series:?}");
    let queue = page
        .eval(
            "[...document.querySelectorAll('#chart-queue text')].map(t => t.textContent).join(' ')",
        )
        .await;
    assert!(text(&queue).starts_with("0 1 2"), "two waiting: {queue}");
}

/// Filters: by label (typed), then by state (a count tile), then cleared.
async fn check_filters(page: &mut Page, ids: &[String]) {
    let typed = "const f = document.getElementById('f-labels'); f.value = 'cuda'; \
                 f.dispatchEvent(new Event('input'))";
    page.eval(typed).await;
    assert_eq!(rows(page, "inventory").await.len(), 2);
    assert_eq!(page.eval("location.hash").await, "#labels=cuda");
    page.eval("document.querySelector('.tile[data-state=\"allocated\"]').click()")
        .await;
    let shown: Vec<Value> = rows(page, "inventory")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(shown, [json!(ids[0]), json!(ids[1])]);
    page.eval("document.getElementById('f-clear').click()")
        .await;
    assert_eq!(rows(page, "inventory").await.len(), 6);
}

/// The DELETE button of an allocation's row, clicked.
fn click_release(allocation_id: &str) -> String {
    format!(
        "document.querySelector('#allocations tr[data-id=\"{allocation_id}\"] \
         button[data-release]').click()"
    )
}

/// Release alice's allocation from the page, after the confirmation.
async fn release_from_the_page(page: &mut Page, lab: &mut OpenLab) {
    page.eval("window.confirm = (q) => { window.__asked = q; return true; }")
        .await;
    page.eval(&click_release(&lab.alice_id)).await;
    recv_status(&mut lab.alice, "released").await;
    let asked = page.eval("window.__asked").await;
    assert!(text(&asked).contains("alice"), "{asked}");
    let gone = format!("!{}", has_row("allocations", "alice"));
    page.wait_for("alice's row gone", &gone, SHOW).await;
    let row = row_with(page, "inventory", "RTX 2080").await;
    assert_eq!(row[1], "free");
}

/// Opens a websocket to `path` as the bearer of `token`.
async fn ws_as(server: &Server, path: &str, token: &str) -> Ws {
    let mut request = format!("ws://{}{path}", server.addr)
        .into_client_request()
        .expect("request");
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    request.headers_mut().insert("authorization", bearer);
    bounded(connect_async(request)).await.expect("upgrade").0
}

/// A server with tokens: the page asks for one, refuses a wrong one, and with an admin
/// token follows the feed over the `bearer.` subprotocol and releases another's allocation.
async fn guarded_lab(page: &mut Page) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tokens");
    let text_of_file =
        format!("{ADMIN} admin root\n{ALICE} user alice\n{AGENT} agent\n{POLLER} admin poller\n");
    std::fs::write(&file, text_of_file).expect("tokens");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = ServerConfig {
        tokens: Tokens::load(&file).expect("load tokens"),
        ..test_config()
    };
    let server = Server::with(config).await;
    let mut agent = Agent {
        ws: ws_as(&server, "/agent/", AGENT).await,
        id: uuid::Uuid::new_v4().to_string(),
    };
    let vm = |host| {
        machine(
            &["nvidia"],
            12,
            32,
            &[("GeForce RTX 2080", 8)],
            "VM",
            Some(host),
        )
    };
    agent.register(vec![vm("10.0.0.2"), vm("10.0.0.3")]).await;
    let mut alice = ws_as(&server, "/allocate/", ALICE).await;
    send(&mut alice, json!({"requirements": {"username": "alice"}})).await;
    let ready = recv_status(&mut alice, "ready").await;

    page.goto(&server.url("/")).await;
    sign_in(page).await;
    let mut root = ws_as(&server, "/allocate/", ADMIN).await;
    send(
        &mut root,
        json!({"requirements": {"username": "ci-runner-7"}}),
    )
    .await;
    recv_status(&mut root, "ready").await;
    page.wait_for(
        "ci-runner-7 live",
        &has_row("allocations", "ci-runner-7"),
        SHOW,
    )
    .await;

    page.eval("window.confirm = () => true").await;
    page.eval(&click_release(text(&ready["allocation_id"])))
        .await;
    recv_status(&mut alice, "released").await;
    let gone = format!("!{}", has_row("allocations", "alice"));
    page.wait_for("alice's row gone", &gone, SHOW).await;
    as_a_user_and_polling(page, &server).await;
    drop((root, agent));
    server.stop().await;
}

/// Signs out (the Forget button) and in again with `token`.
async fn switch_token(page: &mut Page, token: &str) {
    page.eval("document.getElementById('forget').click()").await;
    page.wait_for(
        "the token form",
        "!document.getElementById('auth').hidden",
        SHOW,
    )
    .await;
    page.eval(&submit_token(token)).await;
}

/// JavaScript: types `token` into the token form and submits it.
fn submit_token(token: &str) -> String {
    format!(
        "document.getElementById('token').value = {}; \
         document.getElementById('token-form').requestSubmit()",
        json!(token)
    )
}

/// A user sees a release button on its own allocation only; a token that a websocket
/// subprotocol cannot carry makes the page poll, and it still follows the lab.
async fn as_a_user_and_polling(page: &mut Page, server: &Server) {
    let mut mine = ws_as(server, "/allocate/", ALICE).await;
    send(&mut mine, json!({"requirements": {"username": "alice"}})).await;
    let ready = recv_status(&mut mine, "ready").await;
    let id = text(&ready["allocation_id"]);
    switch_token(page, ALICE).await;
    let signed_in = "document.getElementById('who').innerText === 'user alice'";
    page.wait_for("alice signed in", signed_in, SHOW).await;
    page.wait_for("alice's allocation", &has_row("allocations", "alice"), SHOW)
        .await;
    assert_eq!(
        page.eval("document.getElementById('who').innerText").await,
        "user alice"
    );
    let buttons = "[...document.querySelectorAll('#allocations button[data-release]')]\
                   .map(b => b.dataset.release)";
    assert_eq!(page.eval(buttons).await, json!([id]), "only on her own row");

    switch_token(page, POLLER).await;
    let polling = "document.getElementById('live').dataset.state === 'polling'";
    page.wait_for("polling", polling, SHOW).await;
    let (status, _) = server_call_as(server, ADMIN, "DELETE", &format!("/allocate/{id}")).await;
    assert_eq!(status, 200);
    recv_status(&mut mine, "released").await;
    let gone = format!("!{}", has_row("allocations", "alice"));
    page.wait_for("the release, polled", &gone, SHOW).await;
}

/// An HTTP request as the bearer of `token`: the status and the body.
async fn server_call_as(server: &Server, token: &str, method: &str, path: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let request = server
        .http
        .request(method, server.url(path))
        .header("authorization", format!("Bearer {token}"));
    let response = bounded(request.send()).await.expect("request");
    let status = response.status().as_u16();
    (status, bounded(response.json()).await.expect("JSON"))
}

/// The token form: a wrong token is refused, the admin's is kept for the tab.
async fn sign_in(page: &mut Page) {
    page.wait_for(
        "the token form",
        "!document.getElementById('auth').hidden",
        SHOW,
    )
    .await;
    page.eval(&submit_token("not-a-token-0123456789")).await;
    let refused = "document.getElementById('auth-error').innerText.includes('not accepted')";
    page.wait_for("the refusal", refused, SHOW).await;
    page.eval(&submit_token(ADMIN)).await;
    let two = "document.querySelectorAll('#inventory tbody tr').length === 2";
    page.wait_for("two resources", two, SHOW).await;
    let live = "document.getElementById('live').dataset.state === 'live'";
    page.wait_for("the live feed", live, SHOW).await;
    assert_eq!(
        page.eval("document.getElementById('who').innerText").await,
        "admin root"
    );
    assert_eq!(
        page.eval("sessionStorage.getItem('allocate.token')").await,
        ADMIN
    );
}
