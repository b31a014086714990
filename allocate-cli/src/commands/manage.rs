//! `extend`, `release` and `maintenance`: changing what is held.

use super::list::live_allocations;
use super::Ctx;
use crate::args::Switch;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::{allocation_block, print_json};
use crate::units::{parse_time, unix_now};
use uuid::Uuid;

/// `allocate extend ID --for 1h` (added to the current end) or `--until TIME`.
pub async fn extend(
    ctx: &Ctx,
    id: Uuid,
    for_secs: Option<u64>,
    until: Option<String>,
) -> CliResult {
    let now = unix_now();
    let expires = match (for_secs, until) {
        (_, Some(until)) => {
            parse_time(&until, now).map_err(|e| CliError::usage(format!("--until: {e}")))?
        }
        (Some(secs), None) => {
            let current = ctx.client.allocation(id).await?;
            current.expires.max(now) + secs
        }
        (None, None) => return Err(CliError::usage("extend: give --for or --until")),
    };
    let info = ctx.client.extend(id, expires).await?;
    if ctx.json() {
        print_json(&info);
    } else if ctx.quiet {
        println!("{}", info.expires);
    } else {
        print!("{}", allocation_block(&info, now));
    }
    Ok(())
}

/// `allocate release ID...`; with no id, the caller's only live allocation. Every id is
/// tried; the first failure decides the exit code.
pub async fn release(ctx: &Ctx, ids: Vec<Uuid>) -> CliResult {
    let ids = if ids.is_empty() {
        let live = live_allocations(ctx, false).await?;
        match live.as_slice() {
            [one] => vec![one.allocation_id],
            [] => {
                return Err(CliError::new(
                    Exit::NotFound,
                    format!("{} holds no live allocation", ctx.settings.username),
                ))
            }
            many => {
                let list: Vec<String> = many.iter().map(|a| a.allocation_id.to_string()).collect();
                return Err(CliError::usage(format!(
                    "several live allocations; name the ones to release: {}",
                    list.join(" ")
                )));
            }
        }
    } else {
        ids
    };
    let mut first_error = None;
    for id in ids {
        match ctx.client.release(id).await {
            Ok(()) => {
                if !ctx.quiet && !ctx.json() {
                    eprintln!("released {id}");
                }
            }
            Err(e) => {
                let e = CliError::from(e);
                eprintln!("allocate: release {id}: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        // Already said above.
        Some(e) => Err(CliError {
            message: String::new(),
            ..e
        }),
        None => Ok(()),
    }
}

/// `allocate maintenance ID on|off [--reason ...]` (admin).
pub async fn maintenance(ctx: &Ctx, id: Uuid, mode: Switch, reason: Option<String>) -> CliResult {
    let reason = match mode {
        // The contract wants a reason to take a resource out; say something if none is given.
        Switch::On => Some(reason.unwrap_or_else(|| format!("by {}", ctx.settings.username))),
        Switch::Off => None,
    };
    let entry = ctx.client.set_maintenance(id, reason.as_deref()).await?;
    if ctx.json() {
        print_json(&entry);
    } else if !ctx.quiet {
        let state = match &entry.reason {
            Some(why) => format!("{} ({why})", entry.state.as_str()),
            None => entry.state.as_str().to_owned(),
        };
        println!("{id}: {state}");
    }
    Ok(())
}
