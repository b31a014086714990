//! The provision and release commands: environment, output, failures and timeouts.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers, like the tests, panic on failure"
)]

use allocate_agent::commands::{CommandError, Commands, Holder};
use allocate_core::wire::{ProvisionOrder, ReleaseOrder};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

const ALLOC: Uuid = Uuid::from_u128(0x8a526e72_bcde_45e6_8a5f_f598b350f093);
const INV: Uuid = Uuid::from_u128(0xd4863713_1388_4297_a479_a582b306f5cb);

fn commands(provision: &str, release: Option<&str>, timeout_ms: u64) -> Commands {
    Commands {
        provision: provision.into(),
        release: release.map(Into::into),
        timeout: Duration::from_millis(timeout_ms),
        host: Some("lab-3".into()),
        agent_id: Uuid::from_u128(1),
    }
}

fn order(username: &str) -> ProvisionOrder {
    ProvisionOrder {
        allocation_id: ALLOC,
        inventory_id: INV,
        username: username.into(),
        expires: 1576688942,
        ssh_keys: vec![],
        provision: None,
    }
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("allocate-agent-test-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn provision_sees_the_order_in_its_environment() {
    let c = commands(
        r#"printf '{"host":"%s","username":"%s","password":"%s %s %s"}' "$ALLOCATE_HOST" "$ALLOCATE_USERNAME" "$ALLOCATE_ALLOCATION_ID" "$ALLOCATE_INVENTORY_ID" "$ALLOCATE_EXPIRES""#,
        None,
        5000,
    );
    let conn = c.provision(&order("ci-runner-7")).await.unwrap();
    assert_eq!(conn.host, "lab-3");
    assert_eq!(conn.username, "ci-runner-7");
    assert_eq!(
        conn.password.as_deref(),
        Some(format!("{ALLOC} {INV} 1576688942").as_str())
    );
}

#[tokio::test]
async fn provision_gets_the_keys_and_data_on_stdin_and_in_its_environment() {
    let dir = scratch();
    let c = commands(
        &format!(
            r#"cat > '{0}/stdin'; printf '%s' "$ALLOCATE_SSH_KEYS" > '{0}/keys'; printf '%s' "$ALLOCATE_PROVISION" > '{0}/data'; echo '{{"username":"u","password":"p"}}'"#,
            dir.display()
        ),
        None,
        5000,
    );
    let keys = vec![
        "ssh-ed25519 AAAAC3Nza u@laptop".to_owned(),
        "ssh-rsa AAAAB3Nza u@desk".to_owned(),
    ];
    let mut with_keys = order("u");
    with_keys.ssh_keys = keys.clone();
    with_keys.provision = serde_json::json!({"image": "ubuntu-24.04"})
        .as_object()
        .cloned();
    c.provision(&with_keys).await.unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read("keys"), keys.join("\n"));
    assert_eq!(read("data"), r#"{"image":"ubuntu-24.04"}"#);
    let stdin: serde_json::Value = serde_json::from_str(&read("stdin")).unwrap();
    assert_eq!(
        stdin,
        serde_json::json!({
            "allocation_id": ALLOC, "inventory_id": INV, "username": "u",
            "expires": 1576688942, "ssh_keys": keys, "provision": {"image": "ubuntu-24.04"}
        })
    );
    // Without keys or data: empty keys, an empty object.
    c.provision(&order("u")).await.unwrap();
    assert_eq!(read("keys"), "");
    assert_eq!(read("data"), "{}");
    let stdin: serde_json::Value = serde_json::from_str(&read("stdin")).unwrap();
    assert_eq!(stdin["ssh_keys"], serde_json::json!([]));
    // A command that never reads stdin still answers at once, even with a big key list.
    let ignores_stdin = commands(r#"echo '{"username":"u","password":"p"}'"#, None, 5000);
    let mut big = order("u");
    big.ssh_keys = vec![format!("ssh-rsa {}", "A".repeat(16 * 1024 - 8)); 16];
    ignores_stdin.provision(&big).await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn failures_become_errors() {
    let failing = commands(
        "echo 'step 1' >&2; echo 'no such user' >&2; exit 3",
        None,
        5000,
    );
    let err = failing.provision(&order("u")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "provision command failed (exit status: 3): no such user"
    );

    let bad_json = commands("echo 'ok, ready'", None, 5000);
    let err = bad_json.provision(&order("u")).await.unwrap_err();
    assert!(matches!(err, CommandError::BadConnection(_)), "{err}");

    let chatty = commands("head -c 100000 /dev/zero", None, 5000);
    let err = chatty.provision(&order("u")).await.unwrap_err();
    assert!(matches!(err, CommandError::TooMuchOutput { .. }), "{err}");
}

#[tokio::test]
async fn a_timed_out_command_is_killed_with_what_it_started() {
    let dir = scratch();
    let marker = dir.join("still-running");
    // The script starts a child that would leave a mark after a second; the timeout kills both.
    let c = commands(
        &format!("(sleep 1; touch '{}') & wait", marker.display()),
        None,
        200,
    );
    let started = std::time::Instant::now();
    let err = c.provision(&order("u")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "{err}");
    assert_eq!(
        err.to_string(),
        "provision command did not finish within 200ms and was killed"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "the command's child outlived the timeout");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn release_runs_with_the_holder_it_knows() {
    let dir = scratch();
    let log = dir.join("released");
    let c = commands(
        "exit 1",
        Some(&format!(
            "echo \"$ALLOCATE_ALLOCATION_ID ${{ALLOCATE_USERNAME:-?}} ${{ALLOCATE_EXPIRES:-?}}\" >> '{}'",
            log.display()
        )),
        5000,
    );
    let release = ReleaseOrder {
        allocation_id: ALLOC,
        inventory_id: INV,
    };
    let holder = Holder {
        username: "ci".into(),
        expires: 7,
    };
    c.release(&release, Some(&holder)).await.unwrap();
    c.release(&release, None).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{ALLOC} ci 7\n{ALLOC} ? ?\n")
    );
    let failing = commands("true", Some("exit 4"), 5000);
    let err = failing.release(&release, None).await.unwrap_err();
    assert_eq!(err.to_string(), "release command failed (exit status: 4)");
    // Without a release command a release simply succeeds.
    commands("true", None, 5000)
        .release(&release, None)
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
