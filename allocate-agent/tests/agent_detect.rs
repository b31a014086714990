//! Detection from recorded outputs: nvidia-smi's CSV, /proc/meminfo and /proc/cpuinfo, and the
//! `allocate-agent --print-resources` binary run against a stand-in nvidia-smi.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers, like the tests, panic on failure"
)]

use allocate_agent::detect::{parse_cpuinfo, parse_meminfo, parse_nvidia_smi, DetectError};
use allocate_core::Gpu;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap()
}

fn gpu(label: &str, memory_gb: u64) -> Gpu {
    Gpu {
        label: label.into(),
        memory_gb,
    }
}

#[test]
fn one_gpu() {
    let gpus = parse_nvidia_smi(&fixture("nvidia-smi/one-gpu-rtx-2080.csv")).unwrap();
    assert_eq!(gpus, [gpu("NVIDIA GeForce RTX 2080", 8)]);
}

#[test]
fn eight_h100s() {
    let gpus = parse_nvidia_smi(&fixture("nvidia-smi/eight-gpu-h100.csv")).unwrap();
    assert_eq!(gpus, vec![gpu("NVIDIA H100 80GB HBM3", 80); 8]);
}

#[test]
fn mixed_gpus_round_up_to_whole_gib() {
    let gpus = parse_nvidia_smi(&fixture("nvidia-smi/mixed.csv")).unwrap();
    assert_eq!(
        gpus,
        [
            gpu("NVIDIA GeForce RTX 2080", 8),
            gpu("NVIDIA H100 80GB HBM3", 80),
            gpu("Tesla T4", 15),
            gpu("NVIDIA A100-SXM4-40GB", 40),
            gpu("NVIDIA GeForce RTX 4090", 24),
        ]
    );
}

#[test]
fn no_gpus() {
    assert!(parse_nvidia_smi(&fixture("nvidia-smi/empty.csv"))
        .unwrap()
        .is_empty());
    assert!(parse_nvidia_smi(&fixture("nvidia-smi/no-devices.txt"))
        .unwrap()
        .is_empty());
}

#[test]
fn garbage_lines_are_errors_that_name_the_line() {
    let err = parse_nvidia_smi(&fixture("nvidia-smi/garbage-driver-message.csv")).unwrap_err();
    let DetectError::NvidiaSmiLine { line, text } = &err else {
        panic!("unexpected error {err}")
    };
    assert_eq!(*line, 2);
    assert!(text.starts_with("NVIDIA-SMI has failed"), "{text}");
    let err = parse_nvidia_smi(&fixture("nvidia-smi/memory-not-available.csv")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "nvidia-smi output line 2 is not `name, memory.total in MiB`: \"NVIDIA A10, [N/A]\""
    );
}

#[test]
fn proc_files() {
    assert_eq!(parse_meminfo(&fixture("proc/meminfo-32gib")).unwrap(), 32);
    assert_eq!(parse_cpuinfo(&fixture("proc/cpuinfo-12-threads")), Some(12));
}

/// A stand-in `nvidia-smi` in a fresh directory: checks its arguments, prints `fixture`, and
/// exits with `code`.
fn fake_nvidia_smi(fixture_name: &str, code: i32) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("allocate-agent-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nvidia-smi");
    let script = format!(
        "#!/bin/sh\n\
         [ \"$1\" = --query-gpu=name,memory.total ] && [ \"$2\" = --format=csv,noheader,nounits ] || {{ echo \"bad arguments: $*\" >&2; exit 2; }}\n\
         cat '{}'\n\
         exit {code}\n",
        fixture_path(fixture_name).display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_allocate-agent"));
    cmd.env_remove("RUST_LOG");
    cmd
}

#[test]
fn print_resources_shows_the_registration() {
    let smi = fake_nvidia_smi("nvidia-smi/mixed.csv", 0);
    let out = agent()
        .args([
            "--print-resources",
            "--agent-id",
            "d4863713-1388-4297-a479-a582b306f5cb",
            "--type",
            "VM",
            "--cpu-count",
            "12",
            "--memory-gb",
            "32",
            "--static-host",
            "10.0.0.7",
            "--static-username",
            "lab",
        ])
        .arg("--nvidia-smi")
        .arg(&smi)
        .env("ALLOCATE_AGENT_LABELS", "nvidia,cuda")
        .env("ALLOCATE_AGENT_STATIC_PASSWORD", "hunter2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        printed,
        json!({
            "agent_id": "d4863713-1388-4297-a479-a582b306f5cb",
            "resources": [{
                "labels": ["nvidia", "cuda"], "cpu_count": 12, "memory_gb": 32, "type": "VM",
                "gpu": [
                    {"label": "NVIDIA GeForce RTX 2080", "memory_gb": 8},
                    {"label": "NVIDIA H100 80GB HBM3", "memory_gb": 80},
                    {"label": "Tesla T4", "memory_gb": 15},
                    {"label": "NVIDIA A100-SXM4-40GB", "memory_gb": 40},
                    {"label": "NVIDIA GeForce RTX 4090", "memory_gb": 24}
                ],
                "connection": {"host": "10.0.0.7", "username": "lab", "password": "<redacted>"}
            }]
        })
    );
    std::fs::remove_dir_all(smi.parent().unwrap()).unwrap();
}

#[test]
fn print_resources_detects_this_machine() {
    // No GPU flags and a stand-in nvidia-smi with no devices: CPUs and memory come from /proc.
    let smi = fake_nvidia_smi("nvidia-smi/no-devices.txt", 6);
    let out = agent()
        .args([
            "--print-resources",
            "--agent-id",
            "d4863713-1388-4297-a479-a582b306f5cb",
        ])
        .arg("--nvidia-smi")
        .arg(&smi)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let resource = &printed["resources"][0];
    assert!(resource["cpu_count"].as_u64().unwrap() >= 1);
    assert!(resource["memory_gb"].as_u64().unwrap() >= 1);
    assert_eq!(resource["gpu"], json!([]));
    assert_eq!(resource["type"], "server-onsite");
    assert!(resource.get("connection").is_none());
    std::fs::remove_dir_all(smi.parent().unwrap()).unwrap();
}

#[test]
fn broken_nvidia_smi_stops_the_agent_with_a_clear_error() {
    let smi = fake_nvidia_smi("nvidia-smi/garbage-driver-message.csv", 0);
    let out = agent()
        .args([
            "--print-resources",
            "--agent-id",
            "d4863713-1388-4297-a479-a582b306f5cb",
        ])
        .arg("--nvidia-smi")
        .arg(&smi)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nvidia-smi output line 2"), "{stderr}");
    std::fs::remove_dir_all(smi.parent().unwrap()).unwrap();

    // A driver failure: nvidia-smi exits 9 with its message.
    let smi = fake_nvidia_smi("nvidia-smi/garbage-driver-message.csv", 9);
    let out = agent()
        .args([
            "--print-resources",
            "--agent-id",
            "d4863713-1388-4297-a479-a582b306f5cb",
        ])
        .arg("--nvidia-smi")
        .arg(&smi)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exit status: 9") && stderr.contains("--no-gpu"),
        "{stderr}"
    );
    std::fs::remove_dir_all(smi.parent().unwrap()).unwrap();

    // --no-gpu skips it.
    let out = agent()
        .args([
            "--print-resources",
            "--agent-id",
            "d4863713-1388-4297-a479-a582b306f5cb",
            "--no-gpu",
            "--nvidia-smi",
            "/nonexistent/nvidia-smi",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn running_needs_a_way_to_answer_provisions() {
    let out = agent()
        .args([
            "--agent-id",
            "d4863713-1388-4297-a479-a582b306f5cb",
            "--no-gpu",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--provision-command"), "{stderr}");
}

#[test]
fn an_unusable_server_url_or_ca_file_stops_the_agent() {
    let run = |server: &str, ca_file: &str| {
        let mut agent = agent();
        if !ca_file.is_empty() {
            agent.env("ALLOCATE_AGENT_CA_FILE", ca_file);
        }
        agent
            .args([
                "--agent-id",
                "d4863713-1388-4297-a479-a582b306f5cb",
                "--no-gpu",
                "--provision-command",
                "true",
                "--server",
                server,
            ])
            .output()
            .unwrap()
    };
    let out = run("wss://allocate.lab/agent/", "/nonexistent/lab-ca.pem");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CA file /nonexistent/lab-ca.pem"),
        "{stderr}"
    );
    let out = run("ftp://allocate.lab/agent/", "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--server") && stderr.contains("ftp://allocate.lab/"),
        "{stderr}"
    );
}

#[test]
fn boolean_variables_take_what_people_type() {
    // nvidia-smi fails: only a run that skips it succeeds.
    let smi = fake_nvidia_smi("nvidia-smi/empty.csv", 1);
    let run = |value: &str| {
        agent()
            .args(["--print-resources", "--cpu-count", "1", "--memory-gb", "1"])
            .args(["--static-username", "lab", "--static-host", "h"])
            .arg("--nvidia-smi")
            .arg(&smi)
            .env("ALLOCATE_AGENT_NO_GPU", value)
            .output()
            .unwrap()
    };
    for yes in ["1", "yes", "true", "on", "YES", "True"] {
        let out = run(yes);
        assert!(
            out.status.success(),
            "{yes}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed["resources"][0]["gpu"], json!([]), "{yes}");
    }
    for no in ["0", "no", "false", "off"] {
        assert_eq!(
            run(no).status.code(),
            Some(1),
            "{no}: nvidia-smi is asked, and fails"
        );
    }
    let bad = run("maybe");
    assert_eq!(bad.status.code(), Some(2));
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("maybe") && said.contains("no-gpu"), "{said}");
}
