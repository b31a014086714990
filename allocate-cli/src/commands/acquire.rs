//! `get`, `run` and `shell`: ask for a machine, wait showing the queue, then print how to reach
//! it (`get`) or use it and release it (`run`, `shell`).

use super::Ctx;
use crate::args::Request;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{
    findings_lines, lease_block, lease_json, lease_quiet, print_json, ssh_command, waiting_line,
    Progress,
};
use crate::signals::{forward, Signals};
use crate::units::{parse_time, unix_now};
use allocate_client::{Allocation, GpuRequirement, Lease, Requirements};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a command is given to exit after a forwarded signal before it is killed.
const CHILD_GRACE: Duration = Duration::from_secs(10);

/// How often the waiting line is redrawn.
const REDRAW: Duration = Duration::from_millis(500);

/// The requirements for the flags of `request`.
pub fn requirements(username: &str, request: &Request, now: u64) -> CliResult<Requirements> {
    let mut r = Requirements::for_user(username);
    r.tags.clone_from(&request.tags);
    r.exclude_tags.clone_from(&request.exclude_tags);
    r.kind.clone_from(&request.kind);
    r.min_cpu_count = request.cpus;
    r.min_memory_gb = request.memory;
    r.count = request.count.unwrap_or(1);
    if request.gpu.is_some() || request.gpu_memory.is_some() || request.gpus.is_some() {
        r.gpu = Some(GpuRequirement {
            label: request.gpu.clone(),
            min_memory_gb: request.gpu_memory.unwrap_or(0),
            count: request.gpus.unwrap_or(1),
        });
    }
    r.duration_seconds = request.for_secs;
    if let Some(until) = &request.until {
        r.expires =
            Some(parse_time(until, now).map_err(|e| CliError::usage(format!("--until: {e}")))?);
    }
    if let Some(wait) = request.wait {
        r.allocation_timeout_seconds = wait;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    r.ssh_keys = ssh_keys(&request.ssh_keys, home.as_deref())?;
    Ok(r)
}

/// The default public keys, in `~/.ssh`: the first of these that exists.
const DEFAULT_KEYS: [&str; 2] = ["id_ed25519.pub", "id_rsa.pub"];

/// The public keys in `files` (one per non-empty line, `#` comments skipped), or without files
/// the user's default key under `home`, if there is one.
pub fn ssh_keys(files: &[PathBuf], home: Option<&Path>) -> CliResult<Vec<String>> {
    let default = || {
        let dir = home?.join(".ssh");
        DEFAULT_KEYS
            .iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
    };
    let files = if files.is_empty() {
        default().into_iter().collect()
    } else {
        files.to_vec()
    };
    let mut keys = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::usage(format!("--ssh-key {}: {e}", file.display())))?;
        let before = keys.len();
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
        if keys.len() == before {
            return Err(CliError::usage(format!(
                "--ssh-key {}: no public key in it",
                file.display()
            )));
        }
    }
    Ok(keys)
}

/// The flags that narrow the request, for a message about a request nothing can satisfy.
fn named_flags(request: &Request) -> String {
    let mut flags = Vec::new();
    let mut push = |flag: &str, value: Option<String>| {
        if let Some(v) = value {
            flags.push(format!("{flag} {v:?}"));
        }
    };
    push(
        "--tags",
        (!request.tags.is_empty()).then(|| request.tags.join(",")),
    );
    push(
        "--exclude-tags",
        (!request.exclude_tags.is_empty()).then(|| request.exclude_tags.join(",")),
    );
    push("--gpu", request.gpu.clone());
    push("--gpu-memory", request.gpu_memory.map(|g| g.to_string()));
    push("--gpus", request.gpus.map(|g| g.to_string()));
    push("--cpus", request.cpus.map(|c| c.to_string()));
    push("--memory", request.memory.map(|m| m.to_string()));
    push("--type", request.kind.clone());
    if flags.is_empty() {
        "(no requirement)".to_owned()
    } else {
        flags.join(" ")
    }
}

/// How a wait ended without a lease.
enum Interrupted {
    Failed(CliError),
    Signal(i32),
}

/// Asks for `request` and waits until it is ready, showing progress; a signal cancels the
/// request. The allocation is returned so that its socket stays open as long as needed.
async fn acquire(
    ctx: &Ctx,
    request: &Request,
    release_on_disconnect: bool,
    signals: &mut Signals,
) -> CliResult<(Allocation, Lease)> {
    let mut wants = requirements(&ctx.settings.username, request, unix_now())?;
    wants.release_on_disconnect = release_on_disconnect;
    let allocation = ctx.client.allocate(&wants).await?;
    let mut progress = Progress::new(ctx.quiet || ctx.json());
    let result = wait(&allocation, request, &mut progress, signals).await;
    progress.done();
    match result {
        Ok(lease) => Ok((allocation, lease)),
        Err(stop) => {
            // Cancel the request (DELETE; closing the socket would too).
            let _ = allocation.release().await;
            allocation.close();
            Err(match stop {
                Interrupted::Failed(e) => e,
                Interrupted::Signal(signo) => CliError::signal(
                    signo,
                    format!("interrupted by signal {signo}: the request was cancelled"),
                ),
            })
        }
    }
}

async fn wait(
    allocation: &Allocation,
    request: &Request,
    progress: &mut Progress,
    signals: &mut Signals,
) -> Result<Lease, Interrupted> {
    let started = Instant::now();
    let mut tick = tokio::time::interval(REDRAW);
    loop {
        tokio::select! {
            ready = allocation.wait_ready() => {
                return ready.map_err(|e| Interrupted::Failed(e.into()));
            }
            signo = signals.recv() => return Err(Interrupted::Signal(signo)),
            _ = tick.tick() => {}
        }
        let state = allocation.state();
        // The server says in the first `queued` when no set of registered resources could
        // ever serve the request (its `explain`): the CLI words that, it does not judge it.
        if let (Some(findings), Some(_)) = (state.explain(), state.position()) {
            let count = u64::from(request.count.unwrap_or(1));
            let matching = state.matching_resources().unwrap_or(0);
            let what = if matching == 0 {
                format!(
                    "no registered resource could ever satisfy {}: check the names (allocate inventory lists them)",
                    named_flags(request)
                )
            } else {
                format!(
                    "only {matching} registered resource{} could ever satisfy {}, fewer than --count {count}",
                    if matching == 1 { "" } else { "s" },
                    named_flags(request)
                )
            };
            return Err(Interrupted::Failed(CliError::new(
                Exit::Refused,
                format!("{what}{}", findings_lines(findings)),
            )));
        }
        // Nothing to show before the server has queued the request.
        if state.position().is_some() {
            progress.show(&waiting_line(
                &state,
                started.elapsed().as_secs(),
                unix_now(),
            ));
        }
    }
}

/// `allocate get`: print the lease and leave it held.
pub async fn get(ctx: &Ctx, request: &Request) -> CliResult {
    let mut signals = Signals::new().map_err(|e| CliError::new(Exit::Failure, e.to_string()))?;
    let (allocation, lease) = acquire(ctx, request, false, &mut signals).await?;
    if ctx.json() {
        print_json(&lease_json(&lease));
    } else if ctx.quiet {
        print!("{}", lease_quiet(&lease));
    } else {
        print!("{}", lease_block(&lease, unix_now()));
        eprintln!(
            "The lease is yours until it expires; give it back with: allocate release {}",
            lease.allocation_id
        );
    }
    // Closing the socket leaves a ready lease held.
    allocation.close();
    Ok(())
}

/// `allocate run -- CMD`: run CMD with the lease in its environment; release after.
pub async fn run(ctx: &Ctx, request: &Request, command: Vec<String>) -> CliResult<i32> {
    let mut signals = Signals::new().map_err(|e| CliError::new(Exit::Failure, e.to_string()))?;
    // Released by the server too if this process dies without releasing.
    let (allocation, lease) = acquire(ctx, request, true, &mut signals).await?;
    if !ctx.quiet && !ctx.json() {
        eprint!("{}", lease_block(&lease, unix_now()));
    }
    let status = run_child(&command, &lease, &mut signals).await;
    let released = allocation.release().await;
    allocation.close();
    let code = status?;
    match released {
        // Already over (expired, or released by someone else): nothing left to give back.
        Err(e) if e.code() == "not_found" => {}
        Err(e) => return Err(e.into()),
        Ok(()) => {
            if !ctx.quiet && !ctx.json() {
                eprintln!("released {}", lease.allocation_id);
            }
        }
    }
    Ok(code)
}

/// `allocate shell`: `ssh` to the machine; release when it exits.
pub async fn shell(ctx: &Ctx, request: &Request, ssh_args: Vec<String>) -> CliResult<i32> {
    // The connection is only known once ready: run `ssh` through `sh` with the host from the
    // environment `run` sets.
    let mut command = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "exec ssh \"$@\" \"$ALLOCATE_USERNAME@$ALLOCATE_HOST\"".to_owned(),
        "ssh".to_owned(),
    ];
    command.extend(ssh_args);
    run(ctx, request, command).await
}

/// Runs `command` with the lease's `ALLOCATE_*` variables; a signal is passed on to it. Its
/// exit status (128 + the signal's number if a signal ended it).
async fn run_child(command: &[String], lease: &Lease, signals: &mut Signals) -> CliResult<i32> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| CliError::usage("run: no command given after --"))?;
    let c = &lease.connection;
    let hosts: Vec<&str> = match lease.resources.as_slice() {
        [] => vec![c.host.as_str()],
        several => several.iter().map(|r| r.connection.host.as_str()).collect(),
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("ALLOCATE_ID", lease.allocation_id.to_string())
        .env("ALLOCATE_INVENTORY_ID", lease.inventory_id.to_string())
        .env("ALLOCATE_HOST", &c.host)
        .env("ALLOCATE_HOSTS", hosts.join(" "))
        .env("ALLOCATE_USERNAME", &c.username)
        .env("ALLOCATE_PASSWORD", c.password.as_deref().unwrap_or(""))
        .env("ALLOCATE_EXPIRES", lease.expires.to_string())
        .env("ALLOCATE_SSH", ssh_command(c).join(" "))
        .spawn()
        .map_err(|e| CliError::usage(format!("cannot run {program:?}: {e}")))?;
    let status = tokio::select! {
        status = child.wait() => status,
        signo = signals.recv() => {
            if let Some(pid) = child.id() {
                forward(pid, signo);
            }
            match tokio::time::timeout(CHILD_GRACE, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    let _ = child.kill().await;
                    child.wait().await
                }
            }
        }
    }
    .map_err(|e| CliError::new(Exit::Failure, format!("waiting for {program:?}: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_files_named_or_the_default_one() {
        let dir = std::env::temp_dir().join(format!("allocate-cli-keys-{}", std::process::id()));
        let ssh = dir.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        assert_eq!(ssh_keys(&[], Some(&dir)).unwrap(), Vec::<String>::new());
        assert_eq!(ssh_keys(&[], None).unwrap(), Vec::<String>::new());
        std::fs::write(ssh.join("id_rsa.pub"), "ssh-rsa AAAAB3 me@desk\n").unwrap();
        assert_eq!(
            ssh_keys(&[], Some(&dir)).unwrap(),
            ["ssh-rsa AAAAB3 me@desk"]
        );
        std::fs::write(ssh.join("id_ed25519.pub"), "ssh-ed25519 AAAAC3 me@laptop\n").unwrap();
        assert_eq!(
            ssh_keys(&[], Some(&dir)).unwrap(),
            ["ssh-ed25519 AAAAC3 me@laptop"]
        );
        let two = dir.join("two.pub");
        std::fs::write(
            &two,
            "# team keys\nssh-ed25519 A a@x\n\nssh-ed25519 B b@x\n",
        )
        .unwrap();
        let named = ssh_keys(&[two, ssh.join("id_rsa.pub")], Some(&dir)).unwrap();
        assert_eq!(
            named,
            [
                "ssh-ed25519 A a@x",
                "ssh-ed25519 B b@x",
                "ssh-rsa AAAAB3 me@desk"
            ]
        );
        let empty = dir.join("empty.pub");
        std::fs::write(&empty, "\n").unwrap();
        let err = ssh_keys(&[empty], None).unwrap_err();
        assert!(
            err.message.ends_with("empty.pub: no public key in it"),
            "{}",
            err.message
        );
        let err = ssh_keys(&[dir.join("missing.pub")], None).unwrap_err();
        assert!(err.message.starts_with("--ssh-key "), "{}", err.message);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
